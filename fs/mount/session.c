// SPDX-License-Identifier: Apache-2.0
/*
 * session.c - what the daemon keeps beside the FUSE session (struct
 * mfs_daemon): the stop signals, the ready file, the watchdog that bounds
 * the time from SIGTERM to exit, raising the mount's readahead, and
 * unmounting, plainly or lazily, a stale mount included.
 *
 * Sidecar behaviour (docs/operations.md): a stale mount left by a killed
 * daemon is detached before mounting again; --ready-file is written once the
 * mount answers and removed when it stops; SIGTERM/SIGINT unmount (lazily
 * if busy, with a log line) and exit 0 within --unmount-timeout seconds,
 * even if a worker is stuck in a request. daemon.c runs the steps in order.
 */
#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

#include "daemon_int.h"

#define BDI_READ_AHEAD_KB       4096 /* +45% cold sequential reads, see docs/performance.md */
#define FUSE_SUPER_MAGIC        0x65735546
#define DEFAULT_UNMOUNT_TIMEOUT 10 /* seconds from SIGTERM to exit */

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
int mfs_detach_stale(const char *mp, struct mv_err *err)
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

/* For the signal handler; set while the handler is installed. */
static struct mfs_daemon *the_daemon;

/* SIGTERM, SIGINT: stop the loop and wake the watchdog. Async-signal-safe. */
static void on_stop_signal(int sig)
{
	struct mfs_daemon *d = the_daemon;

	if (!d)
		return;
	if (!d->signo)
		d->signo = sig;
	fuse_session_exit(d->se);
	sem_post(&d->stop);
}

/* The ready file as an absolute path (the daemon runs in "/"); its folder must exist. */
static int resolve_ready_file(struct mfs_daemon *d, const char *path, struct mv_err *err)
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
static void write_ready_file(struct mfs_daemon *d)
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
void mfs_ready_file_remove(struct mfs_daemon *d)
{
	if (d->ready_path && __atomic_exchange_n(&d->ready_written, false, __ATOMIC_ACQ_REL))
		unlink(d->ready_path);
}

/*
 * Runs once the mount is up: stat() of the mountpoint needs the loop to be
 * serving, so when it returns the mount answers and the ready file can say so.
 */
void *mfs_ready_thread(void *arg)
{
	struct mfs_daemon *d = arg;
	struct statfs sf;
	struct stat st;

	if (stat(d->m->mountpoint, &st) != 0 || statfs(d->m->mountpoint, &sf) != 0 ||
	    sf.f_type != FUSE_SUPER_MAGIC)
		return NULL; /* unmounted already: do not touch the folder's own disk */
	__atomic_store_n(&d->dev, (uint64_t)st.st_dev, __ATOMIC_RELEASE);
	/* --ready-after-prefetch: a startupProbe waiting for the file sees a warm model. */
	if (d->ready_after_prefetch)
		mfs_prefetch_mount_time(d->m);
	if (d->ready_path && !d->signo)
		write_ready_file(d);
	if (!d->ready_after_prefetch)
		mfs_prefetch_mount_time(d->m);
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
void mfs_raise_readahead(const struct mfs_mount *m, char *line, size_t line_len)
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
void mfs_daemon_unmount(struct mfs_daemon *d)
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
void *mfs_watchdog_thread(void *arg)
{
	struct mfs_daemon *d = arg;
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
	mfs_ready_file_remove(d);
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
int mfs_daemon_init(struct mfs_daemon *d, struct mfs_mount *m, const struct mfs_mount_opts *o,
                    struct mv_err *err)
{
	pthread_condattr_t ca;

	d->m = m;
	d->timeout = o->unmount_timeout ? o->unmount_timeout : DEFAULT_UNMOUNT_TIMEOUT;
	d->ready_after_prefetch = o->ready_after_prefetch;
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
void mfs_catch_stop_signals(struct mfs_daemon *d)
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
bool mfs_start_thread(pthread_t *t, void *(*fn)(void *), void *arg, const char *what)
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

void mfs_release_stop_signals(void)
{
	/*
	 * Our SIGTERM/SIGINT handler stays installed (libfuse only resets its
	 * own) and now does nothing: a late signal cannot turn the clean exit
	 * into a death by signal.
	 */
	the_daemon = NULL;
}

/* Tells the watchdog the daemon is done and waits for it (@t). */
void mfs_stop_watchdog(struct mfs_daemon *d, pthread_t t)
{
	pthread_mutex_lock(&d->lock);
	d->done = true;
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->lock);
	sem_post(&d->stop);
	pthread_join(t, NULL);
}
