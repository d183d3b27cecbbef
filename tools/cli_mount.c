// SPDX-License-Identifier: Apache-2.0
/*
 * cli_mount.c - reading the control files of a live modelfs mount
 * (MOUNTPOINT/.modelfs/status.json, metrics.prom) for `modelfs status` and
 * `modelfs metrics`, with the exit statuses both share (docs/operations.md):
 * 3 not a modelfs mount, 4 stale mount (the daemon is gone: ENOTCONN).
 *
 * Everything is read through the mount itself: if the daemon cannot
 * answer, neither can these commands.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "cli.h"

#define FUSE_SUPER_MAGIC 0x65735546
#define MOUNT_FILE_MAX   (256u << 20) /* far above any status or metrics snapshot */

/**
 * errno_status() - report an errno of the mountpoint or its control files
 * @path: in: the path that failed, as printed
 * @e: in: the (positive) errno
 *
 * Prints one line saying what it means for the mount.
 *
 * Return: EXIT_STALE, EXIT_NOT_MOUNTED or EXIT_USAGE_IO.
 */
static int errno_status(const char *path, int e)
{
	if (e == ENOTCONN) {
		cli_error("%s: stale mount: its daemon is gone (mount again on it, or "
		          "fusermount3 -uz %s)",
		          path, path);
		return EXIT_STALE;
	}
	if (e == ENOENT || e == ENOTDIR) {
		cli_error("%s: not a modelfs mount (%s)", path, strerror(e));
		return EXIT_NOT_MOUNTED;
	}
	cli_error("%s: %s", path, strerror(e));
	return EXIT_USAGE_IO;
}

/**
 * grow() - double a read buffer, up to MOUNT_FILE_MAX
 * @buf: in/out: the buffer (cap + 1 bytes); unchanged on failure
 * @cap: in/out: its capacity, without the terminating NUL
 *
 * Return: 0, -EFBIG past MOUNT_FILE_MAX, or -ENOMEM.
 */
static int grow(char **buf, size_t *cap)
{
	char *p;

	if (*cap >= MOUNT_FILE_MAX)
		return -EFBIG;
	p = realloc(*buf, 2 * *cap + 1);
	if (!p)
		return -ENOMEM;
	*buf = p;
	*cap *= 2;
	return 0;
}

/**
 * read_all() - read a snapshot file of unknown size
 * @fd: in: the open file
 * @text: out: its bytes, malloc'd and NUL-terminated (on success only)
 * @len: out: their number, without the NUL
 *
 * Return: 0 or a negative errno.
 */
static int read_all(int fd, char **text, size_t *len)
{
	size_t cap = 64u << 10, n = 0;
	char *buf = malloc(cap + 1);
	ssize_t got;
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		if (n == cap && (ret = grow(&buf, &cap)))
			goto out;
		got = read(fd, buf + n, cap - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			ret = -errno;
			goto out;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	buf[n] = '\0';
	*text = buf;
	*len = n;
	buf = NULL;
out:
	free(buf);
	return ret;
}

/**
 * check_mount() - is a live modelfs (FUSE) mount at @mountpoint?
 * @mountpoint: in: the directory as the user gave it
 *
 * statfs() always reaches the daemon; stat() may be answered from the
 * kernel's cache. Prints one line on failure.
 *
 * Return: EXIT_OK, EXIT_NOT_MOUNTED, EXIT_STALE or EXIT_USAGE_IO.
 */
static int check_mount(const char *mountpoint)
{
	struct statfs sf;
	struct stat st;

	if (stat(mountpoint, &st) != 0 || statfs(mountpoint, &sf) != 0)
		return errno_status(mountpoint, errno);
	if (!S_ISDIR(st.st_mode) || sf.f_type != FUSE_SUPER_MAGIC) {
		cli_error("%s: not a modelfs mount (no FUSE file system mounted there)",
		          mountpoint);
		return EXIT_NOT_MOUNTED;
	}
	return EXIT_OK;
}

/**
 * cli_read_mount_file() - read a control file of a live modelfs mount
 * @mountpoint: in: the mountpoint as the user gave it
 * @name: in: the file below MOUNTPOINT/.modelfs ("status.json", "metrics.prom")
 * @text: out: its bytes, malloc'd and NUL-terminated; NULL on failure
 * @len: out: their number, without the NUL
 *
 * Prints one line on failure.
 *
 * Return: EXIT_OK, EXIT_NOT_MOUNTED, EXIT_STALE or EXIT_USAGE_IO.
 */
int cli_read_mount_file(const char *mountpoint, const char *name, char **text, size_t *len)
{
	char *path = NULL;
	int fd = -1, ret;

	*text = NULL;
	ret = check_mount(mountpoint);
	if (ret)
		return ret;
	if (asprintf(&path, "%s/.modelfs/%s", mountpoint, name) < 0) {
		cli_error("out of memory");
		return EXIT_USAGE_IO;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		ret = errno == ENOENT ? EXIT_NOT_MOUNTED : errno_status(path, errno);
		if (ret == EXIT_NOT_MOUNTED)
			cli_error("%s: not a modelfs mount (no .modelfs/%s)", mountpoint, name);
		goto out;
	}
	ret = read_all(fd, text, len);
	if (ret)
		ret = errno_status(path, -ret);
out:
	if (fd >= 0)
		close(fd);
	free(path);
	return ret;
}
