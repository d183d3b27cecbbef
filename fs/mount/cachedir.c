// SPDX-License-Identifier: Apache-2.0
/*
 * cachedir.c - the cache folder (--cache-dir, docs/mount.md, "The cache
 * folder"): found or created, walked from / one folder at a time and
 * checked like ssh's StrictModes before mounting, with its subfolders
 * CACHE/trees and CACHE/transcoded and the records' key (txcache.c).
 * Called once by daemon.c's start-up, while errors still reach the terminal.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon_int.h"

#define DEFAULT_CACHE_DIR "/var/cache/modelfs"

/*
 * The cache folder is trusted as ssh's StrictModes trusts a home folder:
 * whoever can write it, or a folder above it, can replace the trees and
 * transcoded outputs in it. So the cache folder, each subfolder modelfs uses
 * and each folder it creates must be owned by the daemon's user and writable
 * by no one else; each folder above must be owned by root or that user and
 * writable by no one else, except a sticky folder such as /tmp (others can
 * neither rename nor remove our entries there), accepted only when the cache
 * folder is private (0700). See docs/mount.md, "The cache folder".
 */
enum cache_dir_role {
	CACHE_ANCESTOR, /* a folder above the cache folder that was there already */
	CACHE_OWN,      /* the cache folder, a subfolder, or a folder modelfs created */
};

/* Records the one-line refusal of folder @path (stat @st): @what is @why. */
static int cache_refuse(struct mv_err *err, const char *path, const struct stat *st,
                        const char *what, const char *why)
{
	return mv_err_set(err, -EPERM, "%s: untrusted %s (owner uid %u, mode %04o): %s", path, what,
	                  (unsigned)st->st_uid, (unsigned)(st->st_mode & 07777), why);
}

/**
 * cache_dir_check() - may the daemon trust this folder of the cache path?
 * @fd: in: the folder, opened without following links
 * @path: in: its absolute path, for the message
 * @role: in: enum cache_dir_role
 * @sticky: in/out: set by a shared sticky ancestor; own folders must then be 0700
 * @err: out: the refusal, naming the folder, its owner and mode, and why
 * Return: 0, -EPERM (untrusted), -ENOTDIR or -errno.
 */
static int cache_dir_check(int fd, const char *path, enum cache_dir_role role, bool *sticky,
                           struct mv_err *err)
{
	const char *above = "folder above the cache folder", *own = "cache folder";
	uid_t me = geteuid();
	char why[80];
	struct stat st;

	if (fstat(fd, &st) != 0)
		return mv_err_set(err, -errno, "%s: cache folder: %s", path, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return mv_err_set(err, -ENOTDIR, "%s: cache folder: not a directory", path);
	if (role == CACHE_ANCESTOR) {
		snprintf(why, sizeof(why), "owned by neither root nor uid %u (the daemon's user)",
		         (unsigned)me);
		if (st.st_uid != 0 && st.st_uid != me)
			return cache_refuse(err, path, &st, above, why);
		if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX))
			return cache_refuse(err, path, &st, above, "writable by group or others");
		*sticky |= (st.st_mode & (S_IWGRP | S_IWOTH)) != 0;
		return 0;
	}
	snprintf(why, sizeof(why), "not owned by uid %u (the daemon's user)", (unsigned)me);
	if (st.st_uid != me)
		return cache_refuse(err, path, &st, own, why);
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		return cache_refuse(err, path, &st, own, "writable by group or others");
	if (*sticky && (st.st_mode & 077))
		return cache_refuse(err, path, &st, own,
		                    "below a shared sticky folder it must be mode 0700");
	return 0;
}

/**
 * cache_real_path() - @path made absolute, its existing part resolved
 * @path: in: the cache folder as given
 * @out: out: malloc'd: the longest existing prefix through realpath(), then
 *   the missing folders as given (checked by cache_walk)
 * Return: 0, -ENOMEM, or -errno from realpath() or getcwd().
 */
static int cache_real_path(const char *path, char **out)
{
	char *abs = NULL, *head = NULL, *real = NULL, *cwd = NULL, *cut;
	int ret = -ENOMEM;

	if (path[0] != '/' && !(cwd = getcwd(NULL, 0))) {
		ret = -errno;
		goto out;
	}
	if (asprintf(&abs, "%s%s%s", cwd ? cwd : "", cwd ? "/" : "", path) < 0) {
		abs = NULL;
		goto out;
	}
	head = strdup(abs);
	if (!head)
		goto out;
	/* Drop trailing components until what is left exists. */
	while (!(real = realpath(*head ? head : "/", NULL))) {
		cut = strrchr(head, '/');
		if (errno != ENOENT || !cut) {
			ret = -errno;
			goto out;
		}
		*cut = '\0';
	}
	ret = asprintf(out, "%s%s", strcmp(real, "/") ? real : "", abs + strlen(head));
	if (ret < 0) {
		*out = NULL;
		ret = -ENOMEM;
		goto out;
	}
	for (size_t n = strlen(*out); n > 1 && (*out)[n - 1] == '/'; n--)
		(*out)[n - 1] = '\0'; /* "CACHE/" names CACHE in messages */
	if (!**out) {                 /* CACHE is "/" itself */
		free(*out);
		*out = strdup("/");
	}
	ret = *out ? 0 : -ENOMEM;
out:
	free(real);
	free(head);
	free(abs);
	free(cwd);
	return ret;
}

/*
 * Opens folder @name in @dfd without following a link, creating it 0700 if
 * missing (*@created then says so). Return: the fd, or -errno.
 */
static int cache_open_dir(int dfd, const char *name, bool *created)
{
	int fd;

	*created = false;
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0 || errno != ENOENT)
		return fd >= 0 ? fd : -errno;
	if (mkdirat(dfd, name, 0700) == 0)
		*created = true;
	else if (errno != EEXIST)
		return -errno;
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd >= 0 ? fd : -errno;
}

/*
 * One step of the walk: opens (creating it) folder @name of *@dfd, whose
 * full path is @path, checks it, and makes it *@dfd. 0 or -errno.
 */
static int cache_step(int *dfd, const char *path, const char *name, bool last, bool *sticky,
                      struct mv_err *err)
{
	bool created;
	int fd;

	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return mv_err_set(err, -EINVAL,
		                  "%s: cache folder: \".\" or \"..\" after a missing folder", path);
	fd = cache_open_dir(*dfd, name, &created);
	if (fd < 0)
		return mv_err_set(err, fd, "%s: cannot open or create cache folder: %s", path,
		                  strerror(-fd));
	close(*dfd);
	*dfd = fd;
	return cache_dir_check(fd, path, last || created ? CACHE_OWN : CACHE_ANCESTOR, sticky, err);
}

/**
 * cache_walk() - open the cache folder from "/", checking every folder
 * @real: in: absolute, from cache_real_path() (written to, then restored)
 * @out_fd: out: the cache folder
 * @err: out: the one-line reason on failure
 * Each component is opened without following links (a link swapped in after
 * realpath() fails the walk) and created 0700 when missing.
 * Return: 0, -EPERM (untrusted), -EINVAL, or -errno.
 */
static int cache_walk(char *real, int *out_fd, struct mv_err *err)
{
	size_t len = strlen(real), i = 0, j;
	bool sticky = false, last;
	int dfd, ret;
	char c;

	dfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return mv_err_set(err, -errno, "/: cache folder: %s", strerror(errno));
	ret = cache_dir_check(dfd, "/", len <= 1 ? CACHE_OWN : CACHE_ANCESTOR, &sticky, err);
	while (!ret) {
		i += strspn(real + i, "/");
		if (i == len)
			break;
		j = i + strcspn(real + i, "/");
		last = j + strspn(real + j, "/") == len;
		c = real[j];
		real[j] = '\0'; /* real names this folder, for messages */
		ret = cache_step(&dfd, real, real + i, last, &sticky, err);
		real[j] = c;
		i = j;
	}
	if (ret)
		close(dfd);
	else
		*out_fd = dfd;
	return ret;
}

/**
 * cache_subdir() - create (0700) and open CACHE/@name, checked as CACHE is
 * @m: in: cache_base and cache_base_fd set
 * @fd, @path: out: the folder and its absolute path (malloc'd)
 * Return: 0 or -errno, with @err set.
 */
static int cache_subdir(struct mfs_mount *m, const char *name, int *fd, char **path,
                        struct mv_err *err)
{
	bool created, sticky = false; /* CACHE itself was checked against sticky ancestors */
	int ret;

	if (asprintf(path, "%s/%s", m->cache_base, name) < 0) {
		*path = NULL;
		return mv_err_set(err, -ENOMEM, "mount: out of memory");
	}
	ret = cache_open_dir(m->cache_base_fd, name, &created);
	if (ret < 0)
		return mv_err_set(err, ret, "%s: cannot open or create cache folder: %s", *path,
		                  strerror(-ret));
	*fd = ret;
	return cache_dir_check(*fd, *path, CACHE_OWN, &sticky, err);
}

/* The cache folder as given, or the default: malloc'd in *@out. 0 or -ENOMEM. */
static int cache_default_path(const struct mfs_mount_opts *o, char **out)
{
	const char *env;
	int ret;

	if (o->cache_dir)
		ret = asprintf(out, "%s", o->cache_dir);
	else if (geteuid() == 0)
		ret = asprintf(out, "%s", DEFAULT_CACHE_DIR);
	else if ((env = getenv("XDG_CACHE_HOME")) && *env == '/')
		ret = asprintf(out, "%s/modelfs", env);
	else if ((env = getenv("HOME")) && *env == '/')
		ret = asprintf(out, "%s/.cache/modelfs", env);
	else
		ret = asprintf(out, "/tmp/modelfs-%u", (unsigned)geteuid());
	if (ret < 0) {
		*out = NULL;
		return -ENOMEM;
	}
	return 0;
}

/*
 * Opens the cache folder CACHE: --cache-dir, else /var/cache/modelfs (root)
 * or a per-user folder under $XDG_CACHE_HOME, $HOME/.cache or /tmp, with its
 * subfolders trees/ and transcoded/ and the records' key, refusing any of
 * them another user could write (see above). Nothing in it is trusted for
 * its content: trees are verified block by block against the signed roots,
 * transcoded outputs against their MAC'd records (txcache.c).
 */
int mfs_cache_dir_open(struct mfs_mount *m, const struct mfs_mount_opts *o, struct mv_err *err)
{
	char *given = NULL;
	int ret;

	ret = cache_default_path(o, &given);
	if (!ret)
		ret = cache_real_path(given, &m->cache_base);
	if (ret) {
		mv_err_set(err, ret, "%s: cache folder: %s", given ? given : "mount",
		           strerror(-ret));
		goto out;
	}
	ret = cache_walk(m->cache_base, &m->cache_base_fd, err);
	if (!ret)
		ret = cache_subdir(m, MFS_CACHE_TREES, &m->cache_fd, &m->cache_dir, err);
	if (!ret)
		ret = cache_subdir(m, MFS_CACHE_TX, &m->tx_fd, &m->tx_dir, err);
	if (!ret)
		ret = mfs_tx_key_load(m, err);
	if (!ret && faccessat(m->cache_fd, ".", W_OK, AT_EACCESS) != 0)
		mfs_log(LOG_WARNING,
		        "cache-dir-warning path=%s reason=\"not writable: missing trees cannot "
		        "be built\"",
		        m->cache_dir);
out:
	free(given);
	return ret;
}
