// SPDX-License-Identifier: Apache-2.0
/*
 * daemon.c - mfs_mount_main(): checks the options, scans the store, mounts,
 * daemonizes and runs the multi-threaded FUSE loop until unmounted.
 *
 * Everything that can fail for a reason the user must fix (missing or
 * non-empty mountpoint, no /dev/fuse, bad store, unreadable trust files) is
 * checked before mounting, while errors still reach the terminal.
 *
 * Sidecar behaviour (docs/operations.md): a stale mount left by a killed
 * daemon is detached before mounting again; --ready-file is written once the
 * mount answers and removed when it stops; SIGTERM/SIGINT unmount (lazily
 * if busy, with a log line) and exit 0 within --unmount-timeout seconds,
 * even if a worker is stuck in a request.
 */
#define FUSE_USE_VERSION 312

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fuse_lowlevel.h>
#include <openssl/crypto.h>

#include "mount_int.h"

#define BDI_READ_AHEAD_KB       4096 /* +45% cold sequential reads, see docs/performance.md */
#define DEFAULT_CACHE_DIR       "/var/cache/modelfs"
#define FUSE_SUPER_MAGIC        0x65735546
#define DEFAULT_UNMOUNT_TIMEOUT 10 /* seconds from SIGTERM to exit */

/* The mountpoint must be an existing, empty folder (unless nonempty). */
static int check_mountpoint(const struct mfs_mount_opts *o, struct mv_err *err)
{
	struct dirent *de;
	struct stat st;
	DIR *d;
	int ret = 0;

	if (stat(o->mountpoint, &st) != 0)
		return mv_err_set(err, -errno, "%s: mountpoint: %s", o->mountpoint,
		                  strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return mv_err_set(err, -ENOTDIR, "%s: mountpoint is not a directory",
		                  o->mountpoint);
	if (o->nonempty)
		return 0;
	d = opendir(o->mountpoint);
	if (!d)
		return mv_err_set(err, -errno, "%s: mountpoint: %s", o->mountpoint,
		                  strerror(errno));
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			ret = mv_err_set(err, -ENOTEMPTY,
			                 "%s: mountpoint is not empty (use -o nonempty to mount "
			                 "over it)",
			                 o->mountpoint);
			break;
		}
	}
	closedir(d);
	return ret;
}

static int load_trust(struct mfs_mount *m, const struct mfs_mount_opts *o, struct mv_err *err)
{
	/* Required: a mount with no trust could verify nothing. */
	const struct mv_trust_inputs in = {o->trust_keys,  o->n_trust_keys, o->trust_cas,
	                                   o->n_trust_cas, "mount",         true};

	return mv_trust_load(&in, &m->trust, err);
}

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
 * transcoded outputs against their MAC'd records (txview.c).
 */
static int open_cache_dir(struct mfs_mount *m, const struct mfs_mount_opts *o, struct mv_err *err)
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

/*
 * Decompressed frames (1 MiB) and reply buffers are allocated and freed at a
 * high rate. glibc serves blocks that large with mmap and gives them back
 * with munmap, so every reuse pays a page fault per 4 KiB: 21% of the
 * daemon's time on packed reads. Keeping them in the heap measured 17% less
 * CPU and 17% more throughput. What the heap keeps is bounded by the peak
 * the caches' own bounds allow, plus the trim threshold.
 *
 * One arena: model versions are built by the reload thread and freed by
 * whichever thread drops their last reference, and with glibc's default of
 * one arena per thread the freed memory was scattered over several heaps
 * that never shrank. 1,000 replacements of a 2,000-file model grew RSS by
 * 10% with two arenas and by 4.7% with one (600 replacements); threads
 * still allocate small blocks from their own caches (tcache) without the
 * arena lock, and the read path allocates nothing per request.
 */
static void tune_malloc(void)
{
	mallopt(M_MMAP_THRESHOLD, 4 << 20);
	mallopt(M_TRIM_THRESHOLD, 16 << 20);
	mallopt(M_ARENA_MAX, 1);
}

/* Every model keeps a folder open, every loaded tree a file: lift the limit. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/*
 * Runs fusermount3 (-u, with -z when @lazy) on @mp: what a non-root mount
 * owner has to unmount with. Return: 0 if it succeeded, -EBUSY otherwise.
 */
static int run_fusermount(const char *mp, bool lazy)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		execlp("fusermount3", "fusermount3", lazy ? "-uqz" : "-uq", "--", mp, (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EBUSY;
}

/*
 * Unmounts @mp: umount2 (root, or CAP_SYS_ADMIN in the mount's namespace),
 * else fusermount3. @lazy detaches the mount even while files in it are
 * open or are some process's working folder (MNT_DETACH).
 * Return: 0, -EBUSY (not lazy: the mount is in use), or -errno.
 */
static int unmount_path(const char *mp, bool lazy)
{
	if (umount2(mp, lazy ? MNT_DETACH : 0) == 0)
		return 0;
	if (errno != EPERM)
		return -errno;
	return run_fusermount(mp, lazy);
}

/*
 * A mount left behind by a daemon that died (SIGKILL, crash) answers every
 * access with ENOTCONN until it is unmounted. Detach it lazily so that the
 * new mount can take its place; processes still inside see ENOTCONN.
 */
static int detach_stale(const char *mp, struct mv_err *err)
{
	char q[PATH_MAX + 8];
	struct statfs sf;
	struct stat st;
	int ret;

	/*
	 * stat() may still succeed from the kernel's attribute cache (the mount
	 * caches for a day); statfs() always asks the daemon.
	 */
	if ((stat(mp, &st) == 0 && statfs(mp, &sf) == 0) || errno != ENOTCONN)
		return 0;
	mfs_log(LOG_WARNING, "stale-mount mountpoint=%s action=lazy-detach",
	        mfs_log_value(mp, q, sizeof(q)));
	ret = unmount_path(mp, true);
	if (ret)
		return mv_err_set(err, ret,
		                  "%s: stale mount (its daemon is gone) cannot be detached: %s", mp,
		                  strerror(-ret));
	return 0;
}

/* Checks the options and scans the store; nothing is mounted yet. */
static int prepare(struct mfs_mount *m, const struct mfs_mount_opts *o, struct mv_err *err)
{
	int ret;

	if (!o->store || !o->mountpoint)
		return mv_err_set(err, -EINVAL, "mount: STORE and MOUNTPOINT are required");
	ret = load_trust(m, o, err);
	if (ret)
		return ret;
	if (o->policy) {
		/* Loaded before the scan: every model is checked against it. */
		ret = mv_policy_load(o->policy, &m->policy, err);
		if (ret)
			return ret;
		/* Absolute in the status file: the daemon's working folder is "/". */
		m->policy_path = realpath(o->policy, NULL);
		if (!m->policy_path)
			return mv_err_set(err, -ENOMEM, "mount: out of memory");
	}
	m->store_fd = open(o->store, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (m->store_fd < 0)
		return mv_err_set(err, -errno, "%s: store: %s", o->store,
		                  errno == ENOTDIR ? "not a directory" : strerror(errno));
	m->store = realpath(o->store, NULL);
	if (!m->store)
		return mv_err_set(err, -errno, "%s: store: %s", o->store, strerror(errno));
	ret = detach_stale(o->mountpoint, err);
	if (!ret)
		ret = check_mountpoint(o, err);
	if (ret)
		return ret;
	m->mountpoint = realpath(o->mountpoint, NULL);
	if (!m->mountpoint)
		return mv_err_set(err, -errno, "%s: %s", o->mountpoint, strerror(errno));
	if (access("/dev/fuse", R_OK | W_OK) != 0)
		return mv_err_set(err, -errno, "/dev/fuse: %s (is the fuse module loaded?)",
		                  strerror(errno));
	ret = open_cache_dir(m, o, err);
	if (ret)
		return ret;
	ret = mc_hblock_cache_new(o->hblock_cache_bytes, &m->hcache);
	if (!ret)
		ret = mc_frame_cache_new(o->frame_cache_bytes, &m->fcache);
	if (ret)
		return mv_err_set(err, ret, "mount: out of memory");
	raise_nofile();
	tune_malloc();
	ret = mfs_store_scan(m, err);
	malloc_trim(0); /* give back the signature parse's peak (docs/performance.md) */
	return ret;
}

/*
 * What the daemon keeps beside the mount: the ready file, the stop signal
 * and the watchdog that bounds the time from SIGTERM to exit.
 */
struct daemon {
	struct mfs_mount *m;
	struct fuse_session *se;
	char *ready_path;   /* absolute, or NULL */
	bool ready_written; /* atomic */
	unsigned timeout;   /* seconds from the stop signal to exit */
	uint64_t dev;       /* st_dev of the mount once it answered, 0 before (atomic) */
	pthread_t main_thread;
	sem_t stop; /* posted by the signal handler, and by main when done */
	volatile sig_atomic_t signo;
	pthread_mutex_t lock; /* guards done */
	pthread_cond_t cond;  /* signalled when done is set */
	bool done;            /* main finished unmounting */
	bool serving;         /* the main thread is in the FUSE loop (atomic) */
};

/* For the signal handler; set while the handler is installed. */
static struct daemon *the_daemon;

/* SIGTERM, SIGINT: stop the loop and wake the watchdog. Async-signal-safe. */
static void on_stop_signal(int sig)
{
	struct daemon *d = the_daemon;

	if (!d)
		return;
	if (!d->signo)
		d->signo = sig;
	fuse_session_exit(d->se);
	sem_post(&d->stop);
}

/* The ready file as an absolute path (the daemon runs in "/"); its folder must exist. */
static int resolve_ready_file(struct daemon *d, const char *path, struct mv_err *err)
{
	const char *slash = strrchr(path, '/');
	char *dir, *real;
	int ret = 0;

	if (!*path || (slash && !slash[1]))
		return mv_err_set(err, -EINVAL, "%s: ready file: not a file name", path);
	dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
	if (!dir)
		return mv_err_set(err, -ENOMEM, "mount: out of memory");
	real = realpath(dir, NULL);
	if (!real) {
		ret = mv_err_set(err, -errno, "%s: ready file folder: %s", dir, strerror(errno));
		goto out;
	}
	if (asprintf(&d->ready_path, "%s/%s", strcmp(real, "/") ? real : "",
	             slash ? slash + 1 : path) < 0) {
		d->ready_path = NULL;
		ret = mv_err_set(err, -ENOMEM, "mount: out of memory");
	}
out:
	free(real);
	free(dir);
	return ret;
}

/* Writes the ready file atomically (temp file + rename): it is never seen half written. */
static void write_ready_file(struct daemon *d)
{
	struct mfs_mount *m = d->m;
	size_t exposed = 0, refused = 0;
	struct mv_atomic_file a;
	char *line = NULL, q[PATH_MAX + 8];
	int ret;

	pthread_rwlock_rdlock(&m->ns_lock);
	for (size_t i = 0; i < m->n_models; i++) {
		pthread_mutex_lock(&m->models[i]->lock);
		if (m->models[i]->refused)
			refused++;
		else
			exposed++;
		pthread_mutex_unlock(&m->models[i]->lock);
	}
	pthread_rwlock_unlock(&m->ns_lock);
	ret = mv_atomic_open(&a, AT_FDCWD, d->ready_path, 0644, NULL);
	if (!ret && asprintf(&line, "pid=%d mountpoint=%s models=%zu refused=%zu\n", (int)getpid(),
	                     mfs_log_value(m->mountpoint, q, sizeof(q)), exposed, refused) < 0) {
		line = NULL;
		ret = -ENOMEM;
	}
	if (!ret)
		ret = mv_pwrite_full(a.fd, line, strlen(line), 0);
	/* A marker, not data: it was never fsync'd. */
	if (!ret)
		ret = mv_atomic_commit(&a, MV_ATOMIC_NOSYNC, NULL);
	if (!ret)
		__atomic_store_n(&d->ready_written, true, __ATOMIC_RELEASE);
	mv_atomic_abort(&a);
	if (ret)
		mfs_log(LOG_ERR, "ready-file-failed path=%s reason=\"%s\"",
		        mfs_log_value(d->ready_path, q, sizeof(q)), strerror(-ret));
	else
		mfs_log(LOG_INFO, "ready path=%s", mfs_log_value(d->ready_path, q, sizeof(q)));
	free(line);
}

/* Removes the ready file if this daemon wrote it: from now on the mount is not ready. */
static void remove_ready_file(struct daemon *d)
{
	if (d->ready_path && __atomic_exchange_n(&d->ready_written, false, __ATOMIC_ACQ_REL))
		unlink(d->ready_path);
}

/*
 * Runs once the mount is up: stat() of the mountpoint needs the loop to be
 * serving, so when it returns the mount answers and the ready file can say so.
 */
static void *ready_thread(void *arg)
{
	struct daemon *d = arg;
	struct statfs sf;
	struct stat st;

	if (stat(d->m->mountpoint, &st) != 0 || statfs(d->m->mountpoint, &sf) != 0 ||
	    sf.f_type != FUSE_SUPER_MAGIC)
		return NULL; /* unmounted already: do not touch the folder's own disk */
	__atomic_store_n(&d->dev, (uint64_t)st.st_dev, __ATOMIC_RELEASE);
	if (d->ready_path && !d->signo)
		write_ready_file(d);
	return NULL;
}

/* Decodes the octal escapes (\040) of a /proc/self/mountinfo path in place. */
static void unescape_mountinfo(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/*
 * Looks for mounts at @mp in mountinfo, which needs no FUSE request (a
 * stat() would wait for the loop). @top gets the device of the last entry
 * (the mount on top), 0 if none.
 * Return: 1 if an entry has device @match, 0 if not, -errno if unreadable.
 */
static int mountinfo_scan(const char *mp, uint64_t match, uint64_t *top)
{
	unsigned maj, min;
	char *line = NULL, path[PATH_MAX];
	size_t cap = 0;
	int found = 0;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	*top = 0;
	if (!f)
		return -errno;
	for (;;) {
		errno = 0;
		if (getline(&line, &cap, f) < 0) {
			if (errno != EINTR)
				break;
			clearerr(f); /* a stop signal without SA_RESTART: read on */
			continue;
		}
		if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, path) != 3)
			continue;
		unescape_mountinfo(path);
		if (strcmp(path, mp) != 0)
			continue;
		*top = makedev(maj, min);
		if (match && *top == match)
			found = 1;
	}
	free(line);
	fclose(f);
	return found;
}

/* Is our mount (device @dev) still mounted at @mp? (The loop has stopped.) */
static bool still_mounted(const char *mp, uint64_t dev)
{
	uint64_t top;

	return mountinfo_scan(mp, dev, &top) != 0; /* unreadable: let the unmount find out */
}

/*
 * Raises the new mount's readahead through its bdi: the kernel caps a FUSE
 * mount's readahead at 128 KiB whatever INIT asks (+45% cold sequential
 * reads at 4 MiB, docs/performance.md). Done right after mounting, before
 * daemonizing and before the ready file: a file keeps the readahead it was
 * opened with, so a reader that starts at once must already see the new one.
 * @line: out: the key=value log line, logged once logging is set up.
 */
static void raise_readahead(const struct mfs_mount *m, char *line, size_t line_len)
{
	char path[128], val[16];
	uint64_t dev;
	int fd, len;

	if (mountinfo_scan(m->mountpoint, 0, &dev) < 0 || !dev) {
		snprintf(line, line_len, "readahead result=\"mount not found in mountinfo\"");
		return;
	}
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", major(dev), minor(dev));
	len = snprintf(val, sizeof(val), "%d", BDI_READ_AHEAD_KB);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, val, (size_t)len) != len)
		snprintf(line, line_len, "readahead bdi=%s result=\"%s\"", path, strerror(errno));
	else
		snprintf(line, line_len, "readahead bdi=%s read_ahead_kb=%d", path,
		         BDI_READ_AHEAD_KB);
	if (fd >= 0)
		close(fd);
}

/*
 * Unmounts after the loop stopped. libfuse's fuse_session_unmount() always
 * detaches lazily and silently (as root umount2(MNT_DETACH); otherwise
 * umount2, then `fusermount3 -u -q -z`), once the device shows no error.
 * We make that explicit: a plain unmount first; if the mount is busy (an
 * open file, a working folder inside), a log line, and libfuse's lazy
 * detach. After a plain unmount the device reports POLLERR, so
 * fuse_session_unmount() only closes it.
 */
static void unmount_mount(struct daemon *d)
{
	struct mfs_mount *m = d->m;
	uint64_t dev = __atomic_load_n(&d->dev, __ATOMIC_ACQUIRE);
	const char *action = "unmount";
	char q[PATH_MAX + 8];
	int ret;

	mfs_log_value(m->mountpoint, q, sizeof(q));
	if (dev && !still_mounted(m->mountpoint, dev)) {
		action = "none"; /* fusermount3 -u, umount or a lazy detach did it */
	} else if (dev) {
		ret = unmount_path(m->mountpoint, false);
		if (ret) {
			action = "lazy-detach";
			mfs_log(LOG_WARNING,
			        "unmount-busy mountpoint=%s action=lazy-detach reason=\"%s\"", q,
			        strerror(-ret));
		}
	}
	fuse_session_unmount(d->se);
	mfs_log(LOG_INFO, "unmounted mountpoint=%s action=%s", q, action);
}

/*
 * The watchdog: after a stop signal, the loop and the unmount get
 * d->timeout seconds. A worker stuck in a request (a hung backing store)
 * would keep libfuse joining it forever; then the mount is detached here
 * and the process exits with 0, which closes the device: processes still
 * waiting on the mount get ENOTCONN.
 */
static void *watchdog_thread(void *arg)
{
	struct daemon *d = arg;
	struct timespec dl;
	char q[PATH_MAX + 8];
	bool done;

	while (sem_wait(&d->stop) != 0)
		if (errno != EINTR)
			return NULL;
	pthread_mutex_lock(&d->lock);
	done = d->done;
	pthread_mutex_unlock(&d->lock);
	if (done)
		return NULL;
	mfs_log_value(d->m->mountpoint, q, sizeof(q));
	mfs_log(LOG_INFO, "stopping signal=%d mountpoint=%s timeout=%u", (int)d->signo, q,
	        d->timeout);
	remove_ready_file(d);
	/* Workers waiting for a tree build give up now, and builds stop at their next block. */
	mfs_treebuild_cancel(d->m);
	/* The signal may have hit a thread outside the loop: make sure the loop sees it. */
	if (__atomic_load_n(&d->serving, __ATOMIC_ACQUIRE))
		pthread_kill(d->main_thread, SIGTERM);
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += d->timeout;
	pthread_mutex_lock(&d->lock);
	while (!d->done && pthread_cond_timedwait(&d->cond, &d->lock, &dl) != ETIMEDOUT)
		;
	done = d->done;
	pthread_mutex_unlock(&d->lock);
	if (done)
		return NULL;
	mfs_log(LOG_ERR,
	        "unmount-timeout mountpoint=%s timeout=%u action=lazy-detach reason=\"a request "
	        "is stuck\"",
	        q, d->timeout);
	unmount_path(d->m->mountpoint, true);
	mfs_log(LOG_INFO, "unmounted mountpoint=%s action=exit", q);
	_exit(0);
}

/* Sets up the stop semaphore and its condition; 0 or -errno. */
static int daemon_init(struct daemon *d, struct mfs_mount *m, const struct mfs_mount_opts *o,
                       struct mv_err *err)
{
	pthread_condattr_t ca;

	d->m = m;
	d->timeout = o->unmount_timeout ? o->unmount_timeout : DEFAULT_UNMOUNT_TIMEOUT;
	d->main_thread = pthread_self();
	if (sem_init(&d->stop, 0, 0) != 0)
		return mv_err_set(err, -errno, "mount: %s", strerror(errno));
	pthread_mutex_init(&d->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (o->ready_file)
		return resolve_ready_file(d, o->ready_file, err);
	return 0;
}

/* Replaces libfuse's SIGTERM and SIGINT handlers by on_stop_signal. */
static void catch_stop_signals(struct daemon *d)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	/* No SA_RESTART, as libfuse: the loop's waits must end with EINTR. */
	sa.sa_flags = 0;
	sigemptyset(&sa.sa_mask);
	the_daemon = d;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
}

/*
 * Starts @fn in a thread that never takes the stop signals, so that they
 * land in the loop's threads and interrupt it. Return: whether it started.
 */
static bool start_thread(pthread_t *t, void *(*fn)(void *), void *arg, const char *what)
{
	sigset_t block, old;
	bool ok;

	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	ok = pthread_create(t, NULL, fn, arg) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!ok)
		mfs_log(LOG_ERR, "thread-failed thread=%s", what);
	return ok;
}

/* FUSE arguments: the user's -o options first, so that ours (ro) win. */
static int build_args(const struct mfs_mount_opts *o, struct fuse_args *args)
{
	char *opts = NULL;
	int ret;

	ret = asprintf(&opts,
	               "%s%sro,default_permissions,fsname=modelfs,subtype=modelfs,"
	               "max_read=%u",
	               o->fuse_opts ? o->fuse_opts : "", o->fuse_opts && *o->fuse_opts ? "," : "",
	               MFS_MAX_READ);
	if (ret < 0)
		return -ENOMEM;
	if (fuse_opt_add_arg(args, "modelfs") || fuse_opt_add_arg(args, "-o") ||
	    fuse_opt_add_arg(args, opts) || (o->debug && fuse_opt_add_arg(args, "-d")))
		ret = -ENOMEM;
	else
		ret = 0;
	free(opts);
	return ret;
}

static unsigned worker_count(const struct mfs_mount_opts *o)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (o->threads)
		return o->threads;
	return n > 0 ? (unsigned)n : 2;
}

/* Runs the loop with workers = cores; idle workers are never torn down. */
static int serve(struct fuse_session *se, const struct mfs_mount_opts *o)
{
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	unsigned workers = worker_count(o);
	int ret;

	if (!cfg)
		return -ENOMEM;
	fuse_loop_cfg_set_max_threads(cfg, workers);
	fuse_loop_cfg_set_idle_threads(cfg, workers);
	fuse_loop_cfg_set_clone_fd(cfg, 0);
	mfs_log(LOG_INFO, "serving workers=%u", workers);
	ret = fuse_session_loop_mt(se, cfg);
	fuse_loop_cfg_destroy(cfg);
	return ret;
}

static void mount_free(struct mfs_mount *m)
{
	/* Builders first (if mfs_mount_main did not): a build uses its node and the cache fd. */
	mfs_treebuild_stop(m);
	mfs_ops_cleanup(m);
	pthread_mutex_destroy(&m->fh_lock);
	pthread_rwlock_destroy(&m->ns_lock);
	mfs_file_trees_free(m); /* packed copies first: they drop their frames */
	mfs_store_free(m);
	pthread_mutex_destroy(&m->node_lock);
	mc_frame_cache_free(m->fcache);
	mc_hblock_cache_free(m->hcache);
	mv_trust_free(m->trust);
	mv_policy_free(m->policy);
	free(m->policy_path);
	if (m->store_fd > 0)
		close(m->store_fd);
	if (m->cache_fd > 0)
		close(m->cache_fd);
	if (m->cache_base_fd > 0)
		close(m->cache_base_fd);
	if (m->tx_fd > 0)
		close(m->tx_fd);
	OPENSSL_cleanse(m->tx_key, sizeof(m->tx_key));
	free(m->conn_opts);
	free(m->store);
	free(m->mountpoint);
	free(m->cache_dir);
	free(m->cache_base);
	free(m->tx_dir);
	free(m);
}

/* A mount with nothing loaded yet; NULL on ENOMEM. */
static struct mfs_mount *mount_new(const struct mfs_mount_opts *o)
{
	struct mfs_mount *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->store_fd = m->cache_fd = m->cache_base_fd = m->tx_fd = -1;
	pthread_mutex_init(&m->fh_lock, NULL);
	pthread_mutex_init(&m->node_lock, NULL);
	pthread_rwlock_init(&m->ns_lock, NULL);
	m->pickle = o->pickle;
	m->name_check = o->name_check;
	m->uid = getuid();
	m->gid = getgid();
	m->map_uid = o->set_uid;
	m->shown_uid = o->uid;
	m->map_gid = o->set_gid;
	m->shown_gid = o->gid;
	m->umask = o->umask & 0777;
	m->control_all = o->control_all;
	mfs_treebuild_init(m, o->tree_builders, o->tree_build_wait_ms);
	clock_gettime(CLOCK_REALTIME, &m->started);
	return m;
}

/* Tells the watchdog the daemon is done and waits for it (@t). */
static void stop_watchdog(struct daemon *d, pthread_t t)
{
	pthread_mutex_lock(&d->lock);
	d->done = true;
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->lock);
	sem_post(&d->stop);
	pthread_join(t, NULL);
}

int mfs_mount_main(const struct mfs_mount_opts *o, struct mv_err *err)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct daemon d = {0};
	struct mfs_mount *m;
	bool mounted = false, handlers = false, ready = false, reload = false, watchdog = false;
	pthread_t ready_t, watchdog_t;
	char ra_line[256] = "readahead result=\"not raised\"";
	int ret;

	m = mount_new(o);
	if (!m)
		return mv_err_set(err, -ENOMEM, "mount: out of memory");
	ret = daemon_init(&d, m, o, err);
	if (ret)
		goto out;
	ret = prepare(m, o, err);
	if (ret)
		goto out;
	ret = build_args(o, &args);
	if (ret) {
		mv_err_set(err, ret, "mount: out of memory");
		goto out;
	}
	m->conn_opts = fuse_parse_conn_info_opts(&args);
	d.se = fuse_session_new(&args, &mfs_ll_ops, sizeof(mfs_ll_ops), m);
	if (!d.se) {
		ret = mv_err_set(err, -EINVAL, "mount: invalid FUSE options (see above)");
		goto out;
	}
	if (fuse_set_signal_handlers(d.se) != 0) {
		ret = mv_err_set(err, -EIO, "mount: cannot set signal handlers");
		goto out;
	}
	handlers = true;
	if (fuse_session_mount(d.se, m->mountpoint) != 0) {
		ret = mv_err_set(err, -EIO, "%s: mount failed (see above)", m->mountpoint);
		goto out;
	}
	mounted = true;
	raise_readahead(m, ra_line, sizeof(ra_line));
	if (fuse_daemonize(o->foreground || o->debug) != 0) {
		ret = mv_err_set(err, -EIO, "mount: cannot daemonize");
		goto out;
	}
	if (!o->foreground && !o->debug)
		mfs_log_use_syslog();
	mfs_log(LOG_INFO, "%s", ra_line);
	mfs_log(LOG_INFO, "mounted store=%s mountpoint=%s models=%zu cache_dir=%s", m->store,
	        m->mountpoint, m->n_models, m->cache_dir);
	/* Threads start after daemonizing: fork() keeps only the calling thread. */
	d.main_thread = pthread_self();
	watchdog = start_thread(&watchdog_t, watchdog_thread, &d, "watchdog");
	if (watchdog)
		catch_stop_signals(&d);
	ready = start_thread(&ready_t, ready_thread, &d, "ready");
	ret = mfs_reload_start(m, d.se, o->watch);
	if (ret) {
		mv_err_set(err, ret, "mount: cannot arm live reload: %s", strerror(-ret));
		goto out;
	}
	reload = true;
	__atomic_store_n(&d.serving, true, __ATOMIC_RELEASE);
	ret = serve(d.se, o);
	__atomic_store_n(&d.serving, false, __ATOMIC_RELEASE);
	/* A signal ends the loop with a positive value: a clean unmount. */
	ret = ret < 0 ? ret : 0;
	if (ret)
		mv_err_set(err, ret, "mount: FUSE loop failed: %s", strerror(-ret));
out:
	remove_ready_file(&d);
	if (reload)
		mfs_reload_stop(m);
	if (mounted)
		unmount_mount(&d);
	if (ready)
		pthread_join(ready_t, NULL);
	remove_ready_file(&d); /* in case it was written while stopping */
	/*
	 * Tree builders are cancelled and joined while the watchdog still runs:
	 * one stuck in a read of a hung store is then bounded by the unmount
	 * timeout after a stop signal, as a stuck FUSE worker is.
	 */
	mfs_treebuild_stop(m);
	if (watchdog)
		stop_watchdog(&d, watchdog_t);
	/*
	 * Our SIGTERM/SIGINT handler stays installed (libfuse only resets its
	 * own) and now does nothing: a late signal cannot turn the clean exit
	 * into a death by signal.
	 */
	the_daemon = NULL;
	if (handlers)
		fuse_remove_signal_handlers(d.se);
	if (d.se)
		fuse_session_destroy(d.se);
	fuse_opt_free_args(&args);
	mount_free(m);
	free(d.ready_path);
	return ret;
}
