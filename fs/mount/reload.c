// SPDX-License-Identifier: Apache-2.0
/*
 * reload.c - live reload of the store (SIGHUP, --watch); docs/mount.md,
 * "Live reload".
 *
 * One thread does every reload, so the namespace has a single writer. It
 * sleeps in poll() on three descriptors:
 *   - an eventfd the SIGHUP handler writes to (the handler does nothing
 *     else: write() is async-signal-safe, a rescan is not);
 *   - an eventfd mfs_reload_stop() writes to;
 *   - with --watch, an inotify descriptor watching the store root and every
 *     folder of it down to the model folders (not their insides: a model
 *     changes when its model.sig does, and seal replaces that file by
 *     rename). Watches for new folders are added by each rescan's walk.
 * inotify events are debounced: the rescan runs once the store was quiet
 * for DEBOUNCE_QUIET_MS, but at most DEBOUNCE_MAX_MS after the first event,
 * so a seal writing many files costs one rescan, and a store that never
 * stops changing is still rescanned.
 *
 * After a rescan has published its changes (rescan.c), the kernel is told to
 * forget the names and inodes that changed. This runs here, outside any
 * lock and never in a FUSE worker: the kernel may need the parent folder's
 * lock, which a lookup waiting for a worker can hold.
 */
#define FUSE_USE_VERSION 312

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

#include "mount_int.h"

#define DEBOUNCE_QUIET_MS 200
#define DEBOUNCE_MAX_MS   2000
#define SWEEP_MS          5000 /* retired versions alive: invalidate their names again */
/*
 * No IN_ATTRIB (nor IN_OPEN, IN_ACCESS): a rescan reads every model.sig, and
 * what it does must not look like a change. IN_ONLYDIR: never a file.
 */
#define WATCH_MASK                                                                                 \
	(IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE_SELF |   \
	 IN_MOVE_SELF | IN_ONLYDIR)

struct reloader {
	struct mfs_mount *m;
	struct fuse_session *se;
	int stop_fd;      /* eventfd: mfs_reload_stop() */
	int in_fd;        /* inotify (--watch), or -1 */
	bool watch_error; /* a watch could not be added: logged once */
	bool poll;        /* --watch on a store without events: refresh every poll_s */
	uint64_t next_poll;
	pthread_t thread;
	struct sigaction old_hup;
};

/*
 * The SIGHUP eventfd. Created once per process and never closed: a handler
 * running in another thread while the mount stops must never write into a
 * descriptor number that was closed and reused.
 */
static volatile sig_atomic_t hup_fd = -1;

static void on_sighup(int sig)
{
	uint64_t one = 1;
	int saved = errno;

	(void)sig;
	if (hup_fd >= 0) {
		ssize_t r = write(hup_fd, &one, sizeof(one)); /* full counter: nothing lost */

		(void)r;
	}
	errno = saved;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* mfs_dir_fn: watches one store folder (given as a descriptor: no path race). */
static void watch_dir(void *arg, int dirfd, const char *rel)
{
	struct reloader *r = arg;
	const struct mfs_bstore *bs = &r->m->bstore;
	char q[PATH_MAX + 8];
	int ret;

	ret = bs->ops->watch(bs, dirfd, r->in_fd, WATCH_MASK);
	if (!ret || r->watch_error)
		return;
	r->watch_error = true;
	/* e.g. ENOSPC: fs.inotify.max_user_watches is reached */
	mfs_log(LOG_WARNING,
	        "watch-failed path=%s reason=\"%s\" (changes there need SIGHUP or a change "
	        "elsewhere)",
	        mfs_log_value(rel[0] ? rel : ".", q, sizeof(q)), strerror(-ret));
}

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Logs a failed invalidation once per reload; ENOENT (not cached) is the normal case. */
static void inval_failed(bool *logged, int ret, const char *what)
{
	if (ret == 0 || ret == -ENOENT || *logged)
		return;
	*logged = true;
	mfs_log(LOG_NOTICE, "reload-invalidate what=%s reason=\"%s\"", what, strerror(-ret));
}

/*
 * Tells the kernel to forget what changed: names, then attributes, pages and
 * listings. Stops once the session is ending: with no worker left to answer
 * a lookup that holds a folder's lock, an invalidation of that folder could
 * wait until the unmount, which waits for this thread.
 */
static void notify_kernel(struct reloader *r, struct mfs_inval *inv)
{
	bool logged = false;
	int ret;

	for (size_t i = 0; i < inv->n_ents; i++) {
		const char *name = inv->ents[i].name;

		if (fuse_session_exited(r->se))
			return;
		ret = fuse_lowlevel_notify_inval_entry(r->se, inv->ents[i].parent, name,
		                                       strlen(name));
		inval_failed(&logged, ret, "entry");
	}
	if (inv->n_inos > 1)
		qsort(inv->inos, inv->n_inos, sizeof(*inv->inos), u64_cmp);
	for (size_t i = 0; i < inv->n_inos; i++) {
		if (i && inv->inos[i] == inv->inos[i - 1])
			continue;
		if (fuse_session_exited(r->se))
			return;
		ret = fuse_lowlevel_notify_inval_inode(r->se, inv->inos[i], 0, 0);
		inval_failed(&logged, ret, "inode");
	}
}

/*
 * sweep_retired() - ask the kernel again to drop retired versions' names
 * A retired version is freed when the kernel forgets its inodes, which it
 * does once their dentries go. The reload invalidated the version's own
 * name, but a file or folder inside it that was busy then (a lookup or
 * getxattr in flight) keeps its dentry cached, pinning the version until
 * memory pressure. Each sweep invalidates every name inside the versions
 * still alive; idle ones are then dropped and the kernel sends forget.
 * Names outside the version (its folder's own name, now another version's)
 * are left alone.
 */
static void sweep_retired(struct reloader *r)
{
	struct mfs_model **v;
	size_t n;

	if (mfs_store_retired_hold(r->m, &v, &n))
		return;
	for (size_t i = 0; i < n && !fuse_session_exited(r->se); i++)
		for (size_t k = 0; k < v[i]->n_all; k++) {
			const struct mfs_node *node = v[i]->all_nodes[k];

			if (node->parent && node->parent->model == v[i])
				fuse_lowlevel_notify_inval_entry(r->se, node->parent->ino,
				                                 node->name, strlen(node->name));
		}
	mfs_store_retired_release(r->m, v, n);
}

/* One reload: rescan and publish (rescan.c), invalidate, record and log. */
static void do_reload(struct reloader *r, const char *trigger)
{
	struct mfs_mount *m = r->m;
	struct mfs_rescan_result res;
	struct mfs_inval inv = {0};
	struct mfs_reload_info *ri = &m->reload_info;
	uint64_t t0 = now_ms(), ms;
	int ret;

	ret = mfs_store_rescan(m, r->in_fd >= 0 ? watch_dir : NULL, r, &res, &inv);
	if (!ret)
		notify_kernel(r, &inv);
	mfs_inval_free(&inv);
	/* Old versions go once nothing uses them: kernel inodes, handles, jobs. */
	mfs_store_retire(m);
	sweep_retired(r);
	/* Give back what parsing the signatures and freeing versions left in the heap. */
	malloc_trim(0);
	ms = now_ms() - t0;
	/* Recorded after the kernel was told: whoever sees the count sees the change. */
	pthread_rwlock_wrlock(&m->ns_lock);
	ri->count++;
	clock_gettime(CLOCK_REALTIME, &ri->last);
	ri->trigger = trigger;
	ri->error = ret;
	ri->added = ret ? 0 : res.added;
	ri->removed = ret ? 0 : res.removed;
	ri->changed = ret ? 0 : res.changed;
	ri->refused = ret ? 0 : res.refused;
	ri->duration_ms = ms;
	pthread_rwlock_unlock(&m->ns_lock);
	if (ret)
		mfs_log(LOG_ERR,
		        "reload trigger=%s result=failed reason=\"%s\" duration_ms=%llu "
		        "(nothing changed)",
		        trigger, strerror(-ret), (unsigned long long)ms);
	else
		mfs_log(LOG_NOTICE,
		        "reload trigger=%s models=%zu added=%zu removed=%zu changed=%zu "
		        "refused=%zu duration_ms=%llu",
		        trigger, res.models, res.added, res.removed, res.changed, res.refused,
		        (unsigned long long)ms);
}

/* Empties a non-blocking descriptor (eventfd or inotify); what was read does not matter. */
static void drain(int fd)
{
	char buf[4096] __attribute__((aligned(8)));

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

/*
 * Asks a store without events (a registry) for its changes: the tags that
 * moved are linked before the rescan that follows. Return: models changed.
 */
static int refresh(struct reloader *r)
{
	struct mfs_bstore *bs = &r->m->bstore;
	int n = bs->ops->refresh ? bs->ops->refresh(bs) : 0;

	r->next_poll = now_ms() + 1000ull * (bs->poll_s ? bs->poll_s : 60);
	return n;
}

static void *reload_thread(void *arg)
{
	struct reloader *r = arg;
	uint64_t first = 0, last = 0, due = 0, now;
	bool pending = false;

	for (;;) {
		struct pollfd p[3] = {
		    {.fd = r->stop_fd, .events = POLLIN},
		    {.fd = hup_fd, .events = POLLIN},
		    {.fd = r->in_fd, .events = POLLIN}, /* -1: ignored by poll */
		};
		int timeout = mfs_store_n_retired(r->m) ? SWEEP_MS : -1;

		if (pending) {
			now = now_ms();
			timeout = due > now ? (int)(due - now) : 0;
		}
		if (r->poll) {
			now = now_ms();
			if (now >= r->next_poll)
				timeout = 0;
			else if (timeout < 0 || r->next_poll - now < (uint64_t)timeout)
				timeout = (int)(r->next_poll - now);
		}
		if (poll(p, 3, timeout) < 0 && errno != EINTR) {
			mfs_log(LOG_ERR, "reload-stopped reason=\"poll: %s\"", strerror(errno));
			break;
		}
		if (p[0].revents)
			break;
		if (p[1].revents & POLLIN) {
			drain(hup_fd);
			pending = false; /* this rescan sees whatever inotify reported */
			refresh(r);
			do_reload(r, "sighup");
			continue;
		}
		now = now_ms();
		if (r->poll && now >= r->next_poll) {
			if (refresh(r) > 0)
				do_reload(r, "watch");
			continue;
		}
		if (p[2].revents & POLLIN) {
			drain(r->in_fd);
			if (!pending)
				first = now;
			pending = true;
			last = now;
			due = last + DEBOUNCE_QUIET_MS < first + DEBOUNCE_MAX_MS
			          ? last + DEBOUNCE_QUIET_MS
			          : first + DEBOUNCE_MAX_MS;
		}
		if (pending && now >= due) {
			pending = false;
			do_reload(r, "watch");
		} else if (!pending && !(p[2].revents & POLLIN)) {
			sweep_retired(r); /* the timeout: versions still retired */
		}
	}
	return NULL;
}

/* Closes what mfs_reload_start() opened (not the SIGHUP eventfd) and frees @r. */
static void reloader_free(struct reloader *r)
{
	if (r->stop_fd >= 0)
		close(r->stop_fd);
	if (r->in_fd >= 0)
		close(r->in_fd);
	free(r);
}

/*
 * Creates the descriptors; with *@watch, watches the store's folders. The
 * mount is already up when this runs, so a failure of inotify does not stop
 * it: it is logged, *@watch becomes false and SIGHUP still works.
 * Return: 0 or -errno (no eventfd).
 */
static int reloader_open(struct reloader *r, bool *watch)
{
	int ret;

	if (hup_fd < 0) {
		int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

		if (fd < 0)
			return -errno;
		hup_fd = fd;
	}
	r->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->stop_fd < 0)
		return -errno;
	if (!*watch)
		return 0;
	if (r->m->bstore.ops->refresh) { /* a registry: polled, see refresh() */
		r->poll = true;
		r->next_poll =
		    now_ms() + 1000ull * (r->m->bstore.poll_s ? r->m->bstore.poll_s : 60);
		return 0;
	}
	r->in_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (r->in_fd < 0) {
		mfs_log(LOG_ERR, "watch-failed path=. reason=\"inotify: %s\" (use SIGHUP)",
		        strerror(errno));
		*watch = false;
		return 0;
	}
	ret = mfs_store_walk_dirs(r->m, watch_dir, r);
	if (ret) /* the watches in place still work; SIGHUP covers the rest */
		mfs_log(LOG_WARNING,
		        "watch-failed path=. reason=\"%s\" (some folders are not watched)",
		        strerror(-ret));
	return 0;
}

int mfs_reload_start(struct mfs_mount *m, struct fuse_session *se, bool watch)
{
	struct sigaction sa;
	struct reloader *r = calloc(1, sizeof(*r));
	int ret;

	if (!r)
		return -ENOMEM;
	r->m = m;
	r->se = se;
	r->stop_fd = r->in_fd = -1;
	ret = reloader_open(r, &watch);
	if (ret)
		goto fail;
	pthread_rwlock_wrlock(&m->ns_lock);
	m->reload_info.watch = watch;
	pthread_rwlock_unlock(&m->ns_lock);
	/* Stop signals and SIGHUP blocked: they land in the FUSE loop's threads. */
	if (!mfs_start_thread(&r->thread, reload_thread, r, "reload")) {
		ret = -EAGAIN;
		goto fail;
	}
	/* Replaces libfuse's handler, which would end the session on SIGHUP. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sighup;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGHUP, &sa, &r->old_hup);
	m->reloader = r;
	mfs_log(LOG_INFO, "reload armed signal=SIGHUP watch=%s", watch ? "yes" : "no");
	return 0;
fail:
	reloader_free(r);
	return ret;
}

void mfs_reload_stop(struct mfs_mount *m)
{
	struct reloader *r = m->reloader;
	uint64_t one = 1;

	if (!r)
		return;
	/* libfuse's handler again: fuse_remove_signal_handlers() expects to find it. */
	sigaction(SIGHUP, &r->old_hup, NULL);
	if (write(r->stop_fd, &one, sizeof(one)) != sizeof(one))
		mfs_log(LOG_ERR, "reload-stop reason=\"%s\"", strerror(errno));
	pthread_join(r->thread, NULL);
	reloader_free(r);
	m->reloader = NULL;
}
