// SPDX-License-Identifier: Apache-2.0
/*
 * test_util.c - the atomic file writer: mv_atomic_* and mv_write_file_atomic.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tap.h"
#include "verity.h"

static char dir[] = "/tmp/modelfs-test-util.XXXXXX";

/* The number of entries in dir other than "." and "..". */
static int count_entries(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	if (d)
		closedir(d);
	return n;
}

static char *read_all(int dirfd, const char *name)
{
	static char buf[256];
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);

	if (fd >= 0)
		close(fd);
	if (n < 0)
		return NULL;
	buf[n] = '\0';
	return buf;
}

static void test_commit_replaces(void)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct mv_atomic_file a;
	struct mv_err err = {0};
	struct stat st;

	CHECK_EQ_INT(mv_atomic_open(&a, dfd, "f", 0640, &err), 0);
	CHECK_EQ_INT(mv_pwrite_full(a.fd, "old", 3, 0), 0);
	CHECK_EQ_INT(mv_atomic_commit(&a, 0, &err), 0);
	CHECK_EQ_INT(mv_atomic_open(&a, dfd, "f", 0600, &err), 0);
	CHECK(strncmp(a.tmp, "f.", 2) == 0);
	CHECK_EQ_INT(mv_pwrite_full(a.fd, "new", 3, 0), 0);
	CHECK_STR(read_all(dfd, "f"), "old");
	CHECK_EQ_INT(mv_atomic_commit(&a, 0, &err), 0);
	mv_atomic_abort(&a); /* after commit: nothing to do */
	CHECK_STR(read_all(dfd, "f"), "new");
	CHECK(fstatat(dfd, "f", &st, 0) == 0 && (st.st_mode & 07777) == 0600);
	CHECK_EQ_INT(count_entries(), 1);
	CHECK_STR(err.msg, "");
	close(dfd);
}

static void test_abort_keeps_old(void)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct mv_atomic_file a;

	CHECK_EQ_INT(mv_atomic_open(&a, dfd, "f", 0644, NULL), 0);
	CHECK_EQ_INT(count_entries(), 2);
	CHECK_EQ_INT(mv_pwrite_full(a.fd, "gone", 4, 0), 0);
	mv_atomic_abort(&a);
	mv_atomic_abort(&a); /* twice is safe */
	CHECK_STR(read_all(dfd, "f"), "new");
	CHECK_EQ_INT(count_entries(), 1);
	/* unnamed until commit: ".tmp.*", the name given later */
	CHECK_EQ_INT(mv_atomic_open(&a, dfd, NULL, 0644, NULL), 0);
	CHECK(strncmp(a.tmp, ".tmp.", 5) == 0);
	a.name = "g";
	CHECK_EQ_INT(mv_atomic_commit(&a, MV_ATOMIC_NOSYNC, NULL), 0);
	CHECK_EQ_INT(count_entries(), 2);
	CHECK_EQ_INT(unlinkat(dfd, "g", 0), 0);
	close(dfd);
}

static void test_keep_fd(void)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct mv_atomic_file a;
	char c = 0;

	CHECK_EQ_INT(mv_atomic_open(&a, dfd, "k", 0400, NULL), 0);
	CHECK_EQ_INT(mv_pwrite_full(a.fd, "x", 1, 0), 0);
	CHECK_EQ_INT(mv_atomic_commit(&a, MV_ATOMIC_KEEP_FD, NULL), 0);
	CHECK(a.fd >= 0 && pread(a.fd, &c, 1, 0) == 1 && c == 'x');
	mv_atomic_abort(&a); /* closes the kept fd, leaves the file */
	CHECK_EQ_INT(a.fd, -1);
	CHECK_STR(read_all(dfd, "k"), "x");
	CHECK_EQ_INT(unlinkat(dfd, "k", 0), 0);
	close(dfd);
}

static void test_failures_name_the_path(void)
{
	char path[128], missing[128];
	struct mv_atomic_file a;
	struct mv_err err = {0};
	struct stat st;

	snprintf(missing, sizeof(missing), "%s/no/such", dir);
	CHECK_EQ_INT(mv_atomic_open(&a, AT_FDCWD, missing, 0644, &err), -ENOENT);
	CHECK_EQ_INT(a.fd, -1);
	CHECK(strstr(err.msg, missing) != NULL);
	mv_atomic_abort(&a);
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(mv_write_file_atomic(missing, "x", 1, 0644, &err), -ENOENT);
	CHECK(strstr(err.msg, missing) != NULL);
	/* a rename over a folder fails: the temp goes, the error names it */
	snprintf(path, sizeof(path), "%s/d", dir);
	CHECK_EQ_INT(mkdir(path, 0755), 0);
	CHECK(mkdir(strcat(strcpy(missing, path), "/x"), 0755) == 0);
	memset(&err, 0, sizeof(err));
	CHECK(mv_write_file_atomic(path, "x", 1, 0644, &err) < 0);
	CHECK(strstr(err.msg, path) != NULL && strstr(err.msg, ": rename: ") != NULL);
	CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
	CHECK_EQ_INT(count_entries(), 2);
	rmdir(missing);
	rmdir(path);
}

static void test_write_file_mode(void)
{
	char path[128];
	struct mv_err err = {0};
	struct stat st;
	mode_t old = umask(077);

	snprintf(path, sizeof(path), "%s/w", dir);
	CHECK_EQ_INT(mv_write_file_atomic(path, "abc", 3, 0644, &err), 0);
	umask(old);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0644 && st.st_size == 3);
	CHECK_EQ_INT(count_entries(), 2);
	unlink(path);
}

int main(void)
{
	if (!mkdtemp(dir))
		return 1;
	TAP_RUN(test_commit_replaces);
	TAP_RUN(test_abort_keeps_old);
	TAP_RUN(test_keep_fd);
	TAP_RUN(test_failures_name_the_path);
	TAP_RUN(test_write_file_mode);
	{
		char f[128];

		snprintf(f, sizeof(f), "%s/f", dir);
		unlink(f);
		rmdir(dir);
	}
	TAP_DONE();
}
