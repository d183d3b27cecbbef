// SPDX-License-Identifier: Apache-2.0
/*
 * fdcache.c - the mount's bounded cache of tree descriptors (struct
 * mfs_fdcache in mount_int.h; docs/mount.md, "File descriptors").
 *
 * Every loaded tree keeps its tree file open while it is in this cache; a
 * long mount of a large store would otherwise hold one descriptor per file
 * ever read. The cache is sized from RLIMIT_NOFILE, closes the fds of trees
 * no reader holds (second chance) when full, and sheds them all when an open
 * meets EMFILE or ENFILE. The loaded trees themselves, and reopening a
 * closed tree file with the checks of its first open, are ftree.c's; this
 * file also records fd exhaustion for the health rule and status.json.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "vread_int.h"

/* Guards the lazy set-up of every mount's fd cache (one mount per process). */
static pthread_mutex_t fdc_init_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t ts_ns(const struct timespec *ts)
{
	return (uint64_t)ts->tv_sec * 1000000000u + (uint64_t)ts->tv_nsec;
}

/* Descriptors this process has open now; 0 when /proc is not mounted. */
static uint64_t fds_open_now(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	uint64_t n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n ? n - 1 : 0; /* not the one opendir() held */
}

/*
 * Sizes the fd cache from the soft RLIMIT_NOFILE (daemon.c raised it to the
 * hard limit before the scan):
 *
 *   max = nofile - base - headroom, and at least MFS_FD_CACHE_MIN,
 *   headroom = max(64, nofile / 4),
 *
 * where base counts the descriptors open now (standard streams, the FUSE
 * device, the store and cache folders, one folder per model) and headroom
 * is for those that come and go: the backing fd of every open handle, tree
 * builds, transcoding, reload scans, models added later. With about 15 fds
 * at start, a limit of 1,024 gives 753 cached tree fds, 256 gives 177, 64
 * the minimum 16. A shortfall is survived:
 * an open that meets EMFILE sheds the cache and is tried again
 * (mfs_openat_bounded()).
 */
static void fdcache_size(struct mfs_fdcache *c)
{
	uint64_t nofile = 1024, headroom, max = 0;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		nofile = rl.rlim_cur == RLIM_INFINITY ? UINT32_MAX : (uint64_t)rl.rlim_cur;
	c->base = fds_open_now();
	headroom = nofile / 4 > 64 ? nofile / 4 : 64;
	if (nofile > c->base + headroom)
		max = nofile - c->base - headroom;
	c->nofile = nofile;
	c->max = max > MFS_FD_CACHE_MIN ? (size_t)max : MFS_FD_CACHE_MIN;
}

/* The mount's fd cache, set up on first use. */
static struct mfs_fdcache *fdcache(struct mfs_mount *m)
{
	struct mfs_fdcache *c = &m->fdc;

	if (__atomic_load_n(&c->ready, __ATOMIC_ACQUIRE))
		return c;
	pthread_mutex_lock(&fdc_init_lock);
	if (!c->ready) {
		pthread_mutex_init(&c->lock, NULL);
		fdcache_size(c);
		mfs_log(LOG_INFO, "fd-cache nofile=%" PRIu64 " base=%" PRIu64 " max=%zu", c->nofile,
		        c->base, c->max);
		__atomic_store_n(&c->ready, 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&fdc_init_lock);
	return c;
}

/* Takes @ft out of its slot, the last slot moving into it. @c->lock held. */
static void fdc_unlink(struct mfs_fdcache *c, struct mfs_ftree *ft)
{
	struct mfs_ftree *last = c->slots[c->n - 1];

	c->slots[ft->slot] = last;
	last->slot = ft->slot;
	__atomic_store_n(&c->n, c->n - 1, __ATOMIC_RELAXED);
}

/*
 * Closes the fd of @ft if no reader holds the tree, and frees its slot.
 * @c->lock held. Return: whether it was closed.
 */
static bool fdc_close_unused(struct mfs_fdcache *c, struct mfs_ftree *ft)
{
	int fd = -1;

	pthread_mutex_lock(&ft->node->lock);
	if (!ft->refs) {
		fd = ft->fd;
		ft->fd = ft->src.fd = -1;
	}
	pthread_mutex_unlock(&ft->node->lock);
	if (fd < 0)
		return false;
	fdc_unlink(c, ft);
	close(fd);
	return true;
}

/*
 * Closes one cached fd, second-chance order: the hand clears the used flag
 * of trees borrowed since it last passed and closes the first tree found
 * neither used nor held. Two turns at most, so a cache of trees all in use
 * gives up (and grows past its bound) instead of spinning. @c->lock held.
 * Return: whether one was closed.
 */
static bool fdc_evict_one(struct mfs_mount *m, struct mfs_fdcache *c)
{
	for (size_t step = 0; step <= 2 * c->n && c->n; step++) {
		struct mfs_ftree *ft;

		if (c->hand >= c->n)
			c->hand = 0;
		ft = c->slots[c->hand];
		if (__atomic_exchange_n(&ft->used, false, __ATOMIC_RELAXED) ||
		    !fdc_close_unused(c, ft)) {
			c->hand++;
			continue;
		}
		/* The hand now points at the tree moved into the freed slot. */
		mfs_count(&m->ctr.fd_cache_evictions, 1);
		return true;
	}
	return false;
}

/*
 * mfs_fdcache_add() - give @ft (no fd now) the open tree file @fd
 * Makes room first, closing unused cached fds beyond the bound, then
 * publishes @fd under the node lock. Called with @ft's node's load_lock
 * held (or before @ft is published). On error @fd is left to the caller.
 * Return: 0 or -ENOMEM.
 */
int mfs_fdcache_add(struct mfs_mount *m, struct mfs_ftree *ft, int fd)
{
	struct mfs_fdcache *c = fdcache(m);
	int ret = 0;

	pthread_mutex_lock(&c->lock);
	while (c->n >= __atomic_load_n(&c->max, __ATOMIC_RELAXED) && fdc_evict_one(m, c))
		;
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 64;
		struct mfs_ftree **p = realloc(c->slots, cap * sizeof(*p));

		if (!p) {
			ret = -ENOMEM;
			goto out;
		}
		c->slots = p;
		c->cap = cap;
	}
	ft->slot = c->n;
	c->slots[c->n] = ft;
	__atomic_store_n(&c->n, c->n + 1, __ATOMIC_RELAXED);
	/* A fresh fd gets a full turn of the hand before it can be closed. */
	__atomic_store_n(&ft->used, true, __ATOMIC_RELAXED);
	pthread_mutex_lock(&ft->node->lock);
	ft->fd = ft->src.fd = fd;
	pthread_mutex_unlock(&ft->node->lock);
out:
	pthread_mutex_unlock(&c->lock);
	return ret;
}

void mfs_fdcache_remove(struct mfs_ftree *ft)
{
	struct mfs_fdcache *c = fdcache(ft->m);
	int fd;

	/* Unreachable now: nobody else reads @fd, but the hand may be near it. */
	pthread_mutex_lock(&c->lock);
	fd = ft->fd;
	if (fd >= 0)
		fdc_unlink(c, ft);
	pthread_mutex_unlock(&c->lock);
	if (fd >= 0)
		close(fd);
}

size_t mfs_fdcache_shed(struct mfs_mount *m)
{
	struct mfs_fdcache *c = fdcache(m);
	size_t closed = 0, max;
	uint64_t dropped = 0;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n;) {
		/* A closed slot receives the last tree: look at slot i again. */
		if (fdc_close_unused(c, c->slots[i]))
			closed++;
		else
			i++;
	}
	/*
	 * The cache held descriptors the daemon needed: its bound was too high
	 * for what else the daemon holds (many handles open at once, many
	 * models). Halve it, so that it does not fill up straight into the next
	 * EMFILE; it is not raised again. An empty cache was not the cause.
	 */
	max = c->max;
	if (closed)
		max = max / 2 > MFS_FD_CACHE_MIN ? max / 2 : MFS_FD_CACHE_MIN;
	__atomic_store_n(&c->max, max, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&c->lock);
	mfs_count(&m->ctr.fd_cache_evictions, closed);
	if (closed && mfs_log_ratelimit(&m->fd_shed_rl, &dropped))
		mfs_log(LOG_WARNING,
		        "fd-cache-shed closed=%zu max=%zu nofile=%" PRIu64 " suppressed=%" PRIu64,
		        closed, max, c->nofile, dropped);
	return closed;
}

void mfs_fd_exhausted(struct mfs_mount *m, const char *what, int err)
{
	struct timespec mono, real;
	uint64_t dropped = 0, t;
	char sup[48] = "";

	clock_gettime(CLOCK_MONOTONIC, &mono);
	clock_gettime(CLOCK_REALTIME, &real);
	mfs_count(&m->ctr.fd_exhausted, 1);
	/* 0 means "never": a clock reading of 0 is taken as 1 ns. */
	t = ts_ns(&mono);
	__atomic_store_n(&m->fd_exhausted_mono_ns, t ? t : 1, __ATOMIC_RELAXED);
	__atomic_store_n(&m->fd_exhausted_real_ns, ts_ns(&real), __ATOMIC_RELAXED);
	if (!mfs_log_ratelimit(&m->fd_rl, &dropped))
		return;
	if (dropped)
		snprintf(sup, sizeof(sup), " suppressed=%" PRIu64, dropped);
	mfs_log(LOG_ERR,
	        "fd-exhausted where=%s reason=\"%s\" nofile=%" PRIu64 " cached_fds=%zu "
	        "note=\"opens fail with EIO until descriptors are released\"%s",
	        what, strerror(-err), fdcache(m)->nofile,
	        __atomic_load_n(&m->fdc.n, __ATOMIC_RELAXED), sup);
}

void mfs_fd_stats(struct mfs_mount *m, struct mfs_fd_stats *out)
{
	struct mfs_fdcache *c = fdcache(m);
	uint64_t last = __atomic_load_n(&m->fd_exhausted_mono_ns, __ATOMIC_RELAXED);
	struct timespec now;

	memset(out, 0, sizeof(*out));
	/* nofile and base are set once; n and max are read without the lock. */
	out->nofile = c->nofile;
	out->base = c->base;
	out->max = __atomic_load_n(&c->max, __ATOMIC_RELAXED);
	out->open = __atomic_load_n(&c->n, __ATOMIC_RELAXED);
	if (!last)
		return;
	out->last_ns = __atomic_load_n(&m->fd_exhausted_real_ns, __ATOMIC_RELAXED);
	clock_gettime(CLOCK_MONOTONIC, &now);
	out->age_s = ts_ns(&now) > last ? (ts_ns(&now) - last) / 1000000000u : 0;
	out->recent = out->age_s < MFS_FD_ALARM_S;
}

void mfs_fdcache_free(struct mfs_mount *m)
{
	if (!m->fdc.ready)
		return;
	/* Replaced trees still borrowed at unmount keep their slots: leaked with them. */
	pthread_mutex_destroy(&m->fdc.lock);
	free(m->fdc.slots);
	m->fdc.slots = NULL;
	m->fdc.n = m->fdc.cap = 0;
	m->fdc.ready = 0;
}
