// SPDX-License-Identifier: Apache-2.0
/*
 * cmd_status.c - `modelfs status MOUNTPOINT`: is the mount alive, which
 * models does it serve, and is it healthy? For probes and operators.
 *
 * Exit statuses (docs/operations.md): 0 healthy; 1 mounted but unhealthy
 * (a model the policy marks "required" was refused, or the daemon ran out
 * of file descriptors in the last 60 seconds); 2 usage error; 3 not a
 * modelfs mount; 4 stale mount (the daemon is gone: ENOTCONN).
 *
 * Everything comes from MOUNTPOINT/.modelfs/status.json, read through the
 * mount itself: if the daemon cannot answer, neither can this command. The
 * parse, the health decision and the summary are in status_json.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"

#define FUSE_SUPER_MAGIC 0x65735546
#define MOUNT_FILE_MAX   (256u << 20) /* far above any status or metrics snapshot */

/* Maps an errno of the mountpoint or its control files to an exit status. */
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

/* Reads all of @fd (a snapshot file of unknown size) into a malloc'd string. */
static int read_all(int fd, char **text, size_t *len)
{
	size_t cap = 64u << 10, n = 0;
	char *buf = malloc(cap + 1), *p;
	ssize_t got;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		if (n == cap) {
			if (cap >= MOUNT_FILE_MAX) {
				free(buf);
				return -EFBIG;
			}
			cap *= 2;
			p = realloc(buf, cap + 1);
			if (!p) {
				free(buf);
				return -ENOMEM;
			}
			buf = p;
		}
		got = read(fd, buf + n, cap - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			int e = -errno;

			free(buf);
			return e;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	buf[n] = '\0';
	*text = buf;
	*len = n;
	return 0;
}

int cli_read_mount_file(const char *mountpoint, const char *name, char **text, size_t *len)
{
	struct statfs sf;
	struct stat st;
	char *path = NULL;
	int fd = -1, ret;

	*text = NULL;
	/* statfs() always reaches the daemon; stat() may be answered from the kernel's cache. */
	if (stat(mountpoint, &st) != 0 || statfs(mountpoint, &sf) != 0)
		return errno_status(mountpoint, errno);
	if (!S_ISDIR(st.st_mode) || sf.f_type != FUSE_SUPER_MAGIC) {
		cli_error("%s: not a modelfs mount (no FUSE file system mounted there)",
		          mountpoint);
		return EXIT_NOT_MOUNTED;
	}
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
	if (ret) {
		ret = errno_status(path, -ret);
		goto out;
	}
	ret = EXIT_OK;
out:
	if (fd >= 0)
		close(fd);
	free(path);
	return ret;
}

int cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	bool json = false;
	char *text = NULL;
	cJSON *st = NULL;
	size_t len, n_required;
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'j') {
			json = true;
		} else if (c == 'h') {
			cli_usage("status");
			fputs("Exit status: 0 healthy, 1 unhealthy (a required model was refused, "
			      "or file\ndescriptors ran out in the last 60 s), 2 usage error,\n"
			      "3 not a modelfs mount, 4 stale mount (daemon gone).\n",
			      stderr);
			return EXIT_OK;
		} else {
			return cli_usage("status");
		}
	}
	if (argc - optind != 1)
		return cli_usage("status");
	ret = cli_read_mount_file(argv[optind], "status.json", &text, &len);
	if (ret)
		return ret;
	st = cli_status_parse(text, len, &n_required);
	if (!st) {
		cli_error("%s: not a modelfs mount (.modelfs/status.json is not a status file)",
		          argv[optind]);
		ret = EXIT_NOT_MOUNTED;
		goto out;
	}
	if (json)
		fwrite(text, 1, len, stdout);
	else
		cli_status_print(stdout, argv[optind], st, n_required);
	ret = n_required || cli_status_problems(st) ? EXIT_VERIFY : EXIT_OK;
out:
	cJSON_Delete(st);
	free(text);
	return ret;
}
