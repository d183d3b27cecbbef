/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_files.h - for targets whose parser reads a file by path (policy,
 * trust, attestation): a private scratch folder and whole-file writes.
 * Only used by tests/fuzz.
 */
#ifndef MODELFS_FUZZ_FILES_H
#define MODELFS_FUZZ_FILES_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Writes @len bytes of @buf as the whole file @path (0600); aborts on failure. */
static inline void write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0 || (len && write(fd, buf, len) != (ssize_t)len) || close(fd) != 0)
		abort();
}

/* Makes a private folder $TMPDIR/fuzz-@tag-XXXXXX into @dir (@n bytes); aborts on failure. */
static inline void scratch_dir(char *dir, size_t n, const char *tag)
{
	const char *base = getenv("TMPDIR");

	snprintf(dir, n, "%s/fuzz-%s-XXXXXX", base ? base : "/tmp", tag);
	if (!mkdtemp(dir))
		abort();
}

#endif /* MODELFS_FUZZ_FILES_H */
