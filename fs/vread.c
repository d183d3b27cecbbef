// SPDX-License-Identifier: Apache-2.0
/*
 * vread.c - verified reads: every byte the mount returns was hashed and
 * checked against the signed Merkle root on this read.
 *
 * A read is widened to whole data blocks, read from the backing file into a
 * per-thread buffer, checked with mv_verify_blocks() (hash blocks come from
 * the bounded cache, verified up to the first verified ancestor) and only
 * then is the requested slice handed out. Nothing is remembered about bad
 * blocks, so a repaired file reads again.
 *
 * Trees are loaded on first use: from the cache folder (trees this mount
 * built), else from MODEL/.modelfs/trees. A missing or damaged tree is
 * rebuilt from the data, and kept only if the data matches the signature;
 * the build runs in the mount's bounded pool (treebuild.c), and the thread
 * that needs the tree waits for it at most --tree-build-wait.
 *
 * A file stored packed (MODEL/.modelfs/packed/<digest>.zst, docs/packing.md)
 * is read through the mount's frame cache: each frame is decompressed under
 * its declared size and its blocks verified against the same tree before
 * any byte of it is served (mc_zpack_pread). Its tree, when missing, is
 * rebuilt from the decompressed frames.
 *
 * Two bounds (docs/mount.md, "File descriptors" and "Negative cache"):
 * the open tree files live in a bounded fd cache that closes unused ones
 * and reopens them with the same checks; and a file whose tree build found
 * data that does not match the signature is not hashed again until its
 * identity (device, inode, size, mtime, ctime) changes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mount_int.h"

/* Room for a 1 MiB read widened by a 64 KiB block at each end. */
#define TBUF_MIN (MFS_MAX_READ + 2 * (1u << MV_MAX_LOG_BLOCK))

struct tbuf {
	uint8_t *p;
	size_t cap;
};

static pthread_key_t tbuf_key;
static pthread_once_t tbuf_once = PTHREAD_ONCE_INIT;

static void tbuf_free(void *p)
{
	struct tbuf *b = p;

	free(b->p);
	free(b);
}

static void tbuf_key_create(void)
{
	pthread_key_create(&tbuf_key, tbuf_free);
}

/* This thread's read buffer, grown to @need bytes. NULL on ENOMEM. */
static uint8_t *thread_buf(size_t need)
{
	struct tbuf *b;

	pthread_once(&tbuf_once, tbuf_key_create);
	b = pthread_getspecific(tbuf_key);
	if (!b) {
		b = calloc(1, sizeof(*b));
		if (!b || pthread_setspecific(tbuf_key, b)) {
			free(b);
			return NULL;
		}
	}
	if (mv_buf_reserve(&b->p, &b->cap, need < TBUF_MIN ? TBUF_MIN : need))
		return NULL;
	return b->p;
}

/*
 * Opens a tree file and checks its header against the signed parameters.
 * The tree's contents are checked later, block by block, at read.
 * Return: the fd, or a negative errno (-EBADMSG: unusable header).
 */
static int tree_open(struct mfs_mount *m, struct mfs_node *n, int dirfd, const char *rel,
                     uint64_t *tree_off)
{
	uint8_t *hdr = NULL;
	struct mv_tree_header h;
	struct mv_err err = {0};
	struct stat st;
	ssize_t got;
	int fd, ret;

	fd = mfs_openat_bounded(m, dirfd, rel, O_RDONLY, "tree");
	if (fd < 0)
		return fd;
	ret = -EBADMSG;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode))
		goto out;
	hdr = malloc(MV_TREE_HEADER_SIZE);
	if (!hdr) {
		ret = -ENOMEM;
		goto out;
	}
	got = pread(fd, hdr, MV_TREE_HEADER_SIZE, 0);
	if (got <= 0 ||
	    mv_tree_header_decode(hdr, (size_t)got, (uint64_t)st.st_size, &h, &err) != 0) {
		mfs_log(LOG_WARNING, "tree-damaged model=%s file=%s tree=%s reason=\"%s\"",
		        n->model->path, n->res->name, rel, err.msg[0] ? err.msg : "short header");
		goto out;
	}
	if (!mv_tree_params_equal(&h.params, &n->res->merkle.params)) {
		mfs_log(LOG_WARNING,
		        "tree-damaged model=%s file=%s tree=%s reason=\"parameters differ from "
		        "the signature\"",
		        n->model->path, n->res->name, rel);
		goto out;
	}
	*tree_off = h.tree_offset;
	ret = 0;
out:
	free(hdr);
	if (ret) {
		close(fd);
		return ret;
	}
	return fd;
}

/*
 * Whether to log a failure of @n now: the first one is, then at most one per
 * MFS_LOG_INTERVAL_S per file, so a reader looping on a bad block cannot
 * flood the log. @sup gets " suppressed=N" when lines were dropped, else "".
 */
static bool failure_logged(struct mfs_node *n, char *sup, size_t len)
{
	uint64_t dropped = 0;

	sup[0] = '\0';
	if (!mfs_log_ratelimit(&n->fail_rl, &dropped))
		return false;
	if (dropped)
		snprintf(sup, len, " suppressed=%" PRIu64, dropped);
	return true;
}

/* Does the node's data come from its packed copy? */
static struct mfs_zfile *packed_of(struct mfs_node *n)
{
	if (__atomic_load_n(&n->stored, __ATOMIC_ACQUIRE) != MFS_STORED_PACKED)
		return NULL;
	return __atomic_load_n(&n->zf, __ATOMIC_ACQUIRE);
}

/* ---- the tree fd cache (struct mfs_fdcache in mount_int.h) ---- */

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
 * fdc_add() - give @ft (no fd now) the open tree file @fd
 * Makes room first, closing unused cached fds beyond the bound, then
 * publishes @fd under the node lock. Called with @ft's node's load_lock
 * held (or before @ft is published). On error @fd is left to the caller.
 * Return: 0 or -ENOMEM.
 */
static int fdc_add(struct mfs_mount *m, struct mfs_ftree *ft, int fd)
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

/* ---- loaded trees ---- */

const struct mv_tree *mfs_file_tree(struct mfs_node *n)
{
	struct mv_tree *t = __atomic_load_n(&n->tree, __ATOMIC_ACQUIRE), *seen = NULL;

	if (t || mfs_file_empty(n))
		return t;
	/* Checked at scan (store.c, check_resources()): only ENOMEM fails here. */
	t = malloc(sizeof(*t));
	if (!t || mv_tree_init(t, &n->res->merkle.params, n->res->merkle.root)) {
		free(t);
		return NULL;
	}
	/* Two first readers may race: one tree wins, the other is freed. */
	if (!__atomic_compare_exchange_n(&n->tree, &seen, t, false, __ATOMIC_ACQ_REL,
	                                 __ATOMIC_ACQUIRE)) {
		free(t);
		return seen;
	}
	return t;
}

/* Frees a tree no reader holds (replaced, or at unmount), closing its fd. */
static void ftree_free(struct mfs_ftree *ft)
{
	struct mfs_fdcache *c;
	int fd;

	if (!ft)
		return;
	c = fdcache(ft->m);
	/* Unreachable now: nobody else reads @fd, but the hand may be near it. */
	pthread_mutex_lock(&c->lock);
	fd = ft->fd;
	if (fd >= 0)
		fdc_unlink(c, ft);
	pthread_mutex_unlock(&c->lock);
	if (fd >= 0)
		close(fd);
	mc_hblock_cache_drop_tree(ft->src.cache, ft->src.tree_id);
	free(ft);
}

/*
 * Makes @fd (a checked tree file, from the model's trees if @in_model, else
 * from the cache folder) the node's tree, retiring the old one. @fd is
 * taken over, also on error. Called with the node's load_lock held.
 */
static int ftree_install(struct mfs_mount *m, struct mfs_node *n, int fd, uint64_t tree_off,
                         bool in_model)
{
	struct mfs_ftree *ft = calloc(1, sizeof(*ft)), *old;
	bool free_old = false;
	int ret;

	if (!ft) {
		close(fd);
		return -ENOMEM;
	}
	ft->m = m;
	ft->node = n;
	ft->in_model = in_model;
	if (!mfs_file_tree(n)) {
		close(fd);
		free(ft);
		return -ENOMEM;
	}
	if (mc_hblock_src_init(&ft->src, m->hcache, -1, tree_off, &n->tree->geo)) {
		close(fd);
		free(ft);
		return -EINVAL;
	}
	ft->fd = -1;
	ret = fdc_add(m, ft, fd);
	if (ret) {
		close(fd);
		free(ft);
		return ret;
	}
	pthread_mutex_lock(&n->lock);
	old = n->ft;
	n->ft = ft;
	if (old) {
		old->replaced = true;
		free_old = old->refs == 0;
	}
	pthread_mutex_unlock(&n->lock);
	if (free_old)
		ftree_free(old);
	return 0;
}

/* The tree file's name in the cache folder (@name) and in the model (@rel). */
static void tree_names(const struct mfs_node *n, char name[MV_TREE_NAME_MAX],
                       char rel[sizeof(MV_TREES_DIR) + MV_TREE_NAME_MAX])
{
	/* The same content-addressed name in both places. */
	mv_tree_file_name(&n->res->merkle, name);
	snprintf(rel, sizeof(MV_TREES_DIR) + MV_TREE_NAME_MAX, "%s/%s", MV_TREES_DIR, name);
}

/* ---- the negative cache ---- */

/* The identity of the file open as @fd. 0 or -errno. */
static int file_id_of(int fd, struct mfs_file_id *id)
{
	struct stat st;

	if (fd < 0 || fstat(fd, &st))
		return -EBADF;
	memset(id, 0, sizeof(*id));
	id->dev = st.st_dev;
	id->ino = st.st_ino;
	id->size = st.st_size;
	id->mtime = st.st_mtim;
	id->ctime = st.st_ctim;
	return 0;
}

static bool file_id_equal(const struct mfs_file_id *a, const struct mfs_file_id *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
	       a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* Remembers (@id) or forgets (NULL) that @n's data failed its tree build. load_lock held. */
static void negative_set(struct mfs_mount *m, struct mfs_node *n, const struct mfs_file_id *id)
{
	if (id && !n->bad_known)
		__atomic_add_fetch(&m->negative_entries, 1, __ATOMIC_RELAXED);
	else if (!id && n->bad_known)
		__atomic_sub_fetch(&m->negative_entries, 1, __ATOMIC_RELAXED);
	n->bad_known = id != NULL;
	if (id)
		n->bad_id = *id;
}

/* A tree load refused by the negative cache: counted, logged (rate-limited). -EBADMSG. */
static int negative_hit(struct mfs_mount *m, struct mfs_node *n)
{
	char mq[256], fq[256], sup[48];

	mfs_count(&m->ctr.negative_hits, 1);
	if (failure_logged(n, sup, sizeof(sup)))
		mfs_log(LOG_ERR,
		        "verify-failure model=%s file=%s reason=\"unchanged since its tree build "
		        "failed: not hashed again\"%s",
		        mfs_log_value(n->model->path, mq, sizeof(mq)),
		        mfs_log_value(n->res->name, fq, sizeof(fq)), sup);
	return -EBADMSG;
}

/* Takes what a finished build found into the negative cache. load_lock held. */
static void negative_apply(struct mfs_mount *m, struct mfs_node *n, const struct mfs_tb_result *res)
{
	if (res->ret == -EBADMSG && res->have_id)
		negative_set(m, n, &res->id);
	else if (!res->ret)
		negative_set(m, n, NULL);
}

/*
 * Builds the tree of @n unless its data is known bad: the negative cache.
 * The build runs in the mount's pool (treebuild.c), not on this thread,
 * which waits for it at most --tree-build-wait. The identity is taken
 * before the build reads, so a file changed during it is seen as new at
 * the next open. Only a mismatch with the signature (-EBADMSG) is
 * remembered: a full cache folder or EMFILE may pass.
 * Called with the node's load_lock held; it is released while waiting, so
 * the caller must look at the node's tree again after a success.
 * Return: 0 (the tree is in the cache folder), -EBADMSG, -ETIMEDOUT (still
 * building), -EAGAIN (not queued), or -errno.
 */
static int tree_build_once(struct mfs_mount *m, struct mfs_node *n, int data_fd,
                           struct mfs_zfile *zf, const char *why)
{
	struct mfs_tb_result res;
	struct mfs_file_id id;
	bool have_id;
	int ret;

	/* A packed node's data is its attached copy, whatever @data_fd is. */
	have_id = file_id_of(zf ? zf->fd : data_fd, &id) == 0;
	if (have_id && n->bad_known && file_id_equal(&id, &n->bad_id))
		return negative_hit(m, n);
	ret = mfs_tree_build_wait(m, n, data_fd, zf, why, have_id ? &id : NULL, &res);
	if (ret)
		return ret;
	negative_apply(m, n, &res);
	return res.ret;
}

/*
 * Opens the tree file of @n from the cache folder, else from the model.
 * @why: out: "damaged" when the model's exists but is unusable.
 * Return: the fd (with *@off, *@in_model), or -errno.
 */
static int tree_find(struct mfs_mount *m, struct mfs_node *n, const char *name, const char *rel,
                     uint64_t *off, bool *in_model, const char **why)
{
	int fd = tree_open(m, n, m->cache_fd, name, off);

	*in_model = false;
	if (fd < 0 && !mfs_fd_errno(fd)) {
		fd = tree_open(m, n, n->model->dirfd, rel, off);
		*in_model = fd >= 0;
		if (fd == -EBADMSG)
			*why = "damaged";
	}
	return fd;
}

/*
 * Claims what a build of @n found after its waiters had given up (the pool
 * keeps it, treebuild.c): a mismatch goes to the negative cache; a success
 * means the tree in the cache folder is fresh from the data.
 * Return: whether such a fresh tree is there. load_lock held.
 */
static bool tree_build_claim(struct mfs_mount *m, struct mfs_node *n)
{
	struct mfs_tb_result res;

	if (!mfs_tree_build_kept(m, n, &res))
		return false;
	negative_apply(m, n, &res);
	return res.ret == 0;
}

/*
 * The one rebuild of @n is spent: its build ended (whatever it found).
 * Counted once, though every reader that waited for it gets here.
 */
static void rebuild_spent(struct mfs_mount *m, struct mfs_node *n)
{
	if (!__atomic_exchange_n(&n->rebuilt, true, __ATOMIC_ACQ_REL))
		mfs_count(&m->ctr.tree_rebuilds, 1);
}

/*
 * ftree_load_as() - load, reload or rebuild the tree of @n
 * @old: in: NULL at first use; else the tree to replace, if it is still
 *       the node's (another thread may have replaced it first)
 * @rebuild: in: @old failed a hash-block check: build from the data (once
 *           per node); else look in the cache folder, then the model, and
 *           build only if both are missing or damaged
 * Serialized per node by its load_lock, except while waiting for a build
 * (tree_build_once()). A rebuild whose wait timed out is not spent: the
 * next failed read joins it, or takes its tree once it is built.
 * Return: 0 or -errno (-ETIMEDOUT: still building).
 */
static int ftree_load_as(struct mfs_mount *m, struct mfs_node *n, int data_fd,
                         struct mfs_ftree *old, bool rebuild)
{
	char name[MV_TREE_NAME_MAX], rel[sizeof(MV_TREES_DIR) + MV_TREE_NAME_MAX];
	const char *why = rebuild ? "a read failed verification" : "missing";
	bool in_model = false, fresh;
	uint64_t off = 0;
	int fd = -1, ret = 0;

	pthread_mutex_lock(&n->load_lock);
	if (n->ft != old)
		goto out; /* another thread got here first */
	fresh = tree_build_claim(m, n);
	if (rebuild && __atomic_load_n(&n->rebuilt, __ATOMIC_ACQUIRE)) {
		ret = -EBADMSG; /* the one rebuild was tried and the data did not match */
		goto out;
	}
	tree_names(n, name, rel);
	if (!rebuild) {
		fd = tree_find(m, n, name, rel, &off, &in_model, &why);
		if (mfs_fd_errno(fd)) {
			ret = fd; /* a build would not get a descriptor either */
			goto out;
		}
	}
	if (fd < 0) {
		ret = fresh ? 0 : tree_build_once(m, n, data_fd, packed_of(n), why);
		if (rebuild && ret != -ETIMEDOUT && ret != -EAGAIN)
			rebuild_spent(m, n);
		if (ret || n->ft != old)
			goto out; /* load_lock was let go: another waiter installed it */
		fd = tree_open(m, n, m->cache_fd, name, &off);
		if (fd < 0) {
			ret = fd;
			goto out;
		}
	}
	ret = ftree_install(m, n, fd, off, in_model);
out:
	pthread_mutex_unlock(&n->load_lock);
	return ret;
}

/*
 * Loads the tree of @n, or replaces @bad (a tree that failed a hash-block
 * check) by one rebuilt from the data. Serialized per node.
 */
static int ftree_load(struct mfs_mount *m, struct mfs_node *n, int data_fd, struct mfs_ftree *bad)
{
	return ftree_load_as(m, n, data_fd, bad, bad != NULL);
}

/*
 * ftree_reopen() - reopen the tree file of @ft, whose fd the cache closed
 * The caller holds a reference. The file is checked as at its first open
 * (tree_open(): every component without following links, a regular file,
 * a header whose parameters equal the signed ones) and must have the same
 * tree offset; its hash blocks are verified up to the signed root at each
 * cache miss, as always, so a reopened file is trusted no more than the
 * first one. Verified blocks already in the hash-block cache stay valid:
 * they are the signed tree's, whichever file they came from.
 * Return: 0, or -errno (-ENOENT, -EBADMSG: gone or changed; load anew).
 */
static int ftree_reopen(struct mfs_mount *m, struct mfs_node *n, struct mfs_ftree *ft)
{
	char name[MV_TREE_NAME_MAX], rel[sizeof(MV_TREES_DIR) + MV_TREE_NAME_MAX];
	uint64_t off = 0;
	int fd, ret = 0;

	pthread_mutex_lock(&n->load_lock);
	pthread_mutex_lock(&n->lock);
	fd = ft->fd;
	pthread_mutex_unlock(&n->lock);
	if (fd >= 0)
		goto out; /* another reader reopened it first */
	tree_names(n, name, rel);
	if (ft->in_model)
		fd = tree_open(m, n, n->model->dirfd, rel, &off);
	else
		fd = tree_open(m, n, m->cache_fd, name, &off);
	if (fd < 0) {
		ret = fd;
		goto out;
	}
	if (off != ft->src.tree_offset) {
		close(fd);
		ret = -EBADMSG;
		goto out;
	}
	ret = fdc_add(m, ft, fd);
	if (ret)
		close(fd);
out:
	pthread_mutex_unlock(&n->load_lock);
	return ret;
}

static void ftree_put(struct mfs_node *n, struct mfs_ftree *ft);

/*
 * Borrows the node's tree, loading it on first use and reopening its file
 * if the fd cache closed it. Cheap when the fd is open: the node lock and
 * one relaxed store; the fd cache lock is never taken here.
 */
static int ftree_get(struct mfs_mount *m, struct mfs_node *n, int data_fd, struct mfs_ftree **out)
{
	struct mfs_ftree *ft;
	int ret, fd = -1;

	for (int tries = 0; tries < 3; tries++) {
		pthread_mutex_lock(&n->lock);
		ft = n->ft;
		if (ft) {
			ft->refs++;
			fd = ft->fd;
		}
		pthread_mutex_unlock(&n->lock);
		if (!ft) {
			ret = ftree_load(m, n, data_fd, NULL);
			if (ret)
				return ret;
			continue;
		}
		__atomic_store_n(&ft->used, true, __ATOMIC_RELAXED);
		if (fd >= 0)
			goto got;
		ret = ftree_reopen(m, n, ft);
		if (!ret)
			goto got;
		/* Gone or changed: load it as at first use (cache, model, build). */
		if (ret != -ENOMEM && !mfs_fd_errno(ret))
			ret = ftree_load_as(m, n, data_fd, ft, false);
		ftree_put(n, ft);
		if (ret)
			return ret;
	}
	return -EIO;
got:
	*out = ft;
	return 0;
}

static void ftree_put(struct mfs_node *n, struct mfs_ftree *ft)
{
	bool free_it;

	pthread_mutex_lock(&n->lock);
	free_it = --ft->refs == 0 && ft->replaced;
	pthread_mutex_unlock(&n->lock);
	if (free_it)
		ftree_free(ft);
}

int mfs_file_prepare(struct mfs_mount *m, struct mfs_node *n, int fd)
{
	struct mfs_ftree *ft;
	int ret;

	if (mfs_file_empty(n) || mfs_file_one_block(n))
		return 0;
	ret = ftree_get(m, n, fd, &ft);
	if (ret)
		return -EIO;
	ftree_put(n, ft);
	return 0;
}

/*
 * Could the tree be at fault, so that one rebuild is worth it? A hash-block
 * failure or a tree read error clearly is. A data mismatch (level -1) may be
 * too: the data hash is compared with its slot in a level-0 block before that
 * block is itself checked, so a damaged slot looks like damaged data. The
 * rebuild settles it: it keeps a new tree only if the data matches the signed
 * root, and it runs at most once per file per mount.
 */
static bool tree_fault(int ret, const struct mv_verify_failure *fail)
{
	return ret != -ENOMEM;
}

static void log_failure(struct mfs_mount *m, struct mfs_node *n, int ret, uint64_t first_block,
                        const struct mv_verify_failure *fail)
{
	size_t ds = mv_hash_digest_size(n->res->merkle.params.alg);
	char exp[2 * MV_MAX_DIGEST_SIZE + 1], act[2 * MV_MAX_DIGEST_SIZE + 1];
	char mq[256], fq[256], sup[48];

	mfs_count_failure(m, n);
	if (!failure_logged(n, sup, sizeof(sup)))
		return;
	mfs_log_value(n->model->path, mq, sizeof(mq));
	mfs_log_value(n->res->name, fq, sizeof(fq));
	if (ret != -EBADMSG) {
		mfs_log(LOG_ERR,
		        "verify-failure model=%s file=%s block=%" PRIu64 " reason=\"tree: %s\"%s",
		        mq, fq, first_block, strerror(-ret), sup);
		return;
	}
	mv_hex_encode(fail->expected, ds, exp);
	mv_hex_encode(fail->actual, ds, act);
	mfs_log(LOG_ERR,
	        "verify-failure model=%s file=%s block=%" PRIu64
	        " level=%d expected=%s actual=%s%s",
	        mq, fq, fail->block, fail->level, exp, act, sup);
}

/* Verifies whole blocks in @buf, rebuilding a faulty tree once per node. */
static int verify(struct mfs_mount *m, struct mfs_node *n, int fd, uint64_t first_block,
                  const uint8_t *buf, size_t len)
{
	struct mv_verify_failure fail;
	struct mfs_ftree *ft;
	int ret;

	for (int attempt = 0;; attempt++) {
		ret = ftree_get(m, n, fd, &ft);
		if (ret)
			return -EIO;
		memset(&fail, 0, sizeof(fail));
		/* Set: the tree was made before @ft was installed (ftree_install()). */
		ret = mv_verify_blocks(mfs_file_tree(n), &mc_hblock_ops, &ft->src, first_block, buf,
		                       len, &fail);
		if (!ret || attempt > 0 || __atomic_load_n(&n->rebuilt, __ATOMIC_ACQUIRE) ||
		    !tree_fault(ret, &fail)) {
			ftree_put(n, ft);
			break;
		}
		log_failure(m, n, ret, first_block, &fail);
		ret = ftree_load(m, n, fd, ft);
		ftree_put(n, ft);
		if (ret)
			return -EIO;
	}
	if (ret) {
		log_failure(m, n, ret, first_block, &fail);
		return -EIO;
	}
	return 0;
}

/* Logs a failed read of a packed node; @err names the frame. */
static void log_packed_failure(struct mfs_mount *m, struct mfs_node *n, ssize_t ret,
                               const struct mv_err *err)
{
	char mq[256], fq[256], rq[512], sup[48];

	mfs_count_failure(m, n);
	if (!failure_logged(n, sup, sizeof(sup)))
		return;
	mfs_log(LOG_ERR, "verify-failure model=%s file=%s stored_as=packed reason=%s%s",
	        mfs_log_value(n->model->path, mq, sizeof(mq)),
	        mfs_log_value(n->res->name, fq, sizeof(fq)),
	        mfs_log_value(err->msg[0] ? err->msg : strerror((int)-ret), rq, sizeof(rq)), sup);
}

/*
 * Reads @len verified plain bytes at @off of a packed node into @buf, through
 * the frame cache. As for plain files, a failure may be the tree's fault, so
 * the tree is rebuilt (from the frames) once per node before giving up.
 */
static int packed_read(struct mfs_mount *m, struct mfs_node *n, struct mfs_zfile *zf, uint64_t off,
                       size_t len, uint8_t *buf)
{
	struct mc_zpack_file f;
	struct mfs_ftree *ft;
	struct mv_err err;
	ssize_t got;
	int ret;

	for (int attempt = 0;; attempt++) {
		ret = ftree_get(m, n, zf->fd, &ft);
		if (ret)
			return -EIO;
		/* The template with the hash-block source of the tree borrowed now. */
		f = zf->zf;
		f.hctx = &ft->src;
		memset(&err, 0, sizeof(err));
		got = mc_zpack_pread(&f, buf, len, off, &err);
		if (got >= 0 || got == -ENOMEM || attempt > 0 ||
		    __atomic_load_n(&n->rebuilt, __ATOMIC_ACQUIRE)) {
			ftree_put(n, ft);
			break;
		}
		log_packed_failure(m, n, got, &err);
		ret = ftree_load(m, n, zf->fd, ft);
		ftree_put(n, ft);
		if (ret)
			return -EIO;
	}
	if (got == -ENOMEM)
		return -ENOMEM;
	if (got < 0 || (size_t)got != len) {
		if (got >= 0)
			mv_err_set(&err, -EIO, "%s: short read at %" PRIu64, n->res->name, off);
		log_packed_failure(m, n, got, &err);
		return -EIO;
	}
	return 0;
}

/*
 * Reads @len bytes at @off of the backing file into @buf, all or nothing.
 * 0, or -EIO (counted, logged) when the read failed or came up short.
 */
static int backing_read(struct mfs_mount *m, struct mfs_node *n, int fd, uint8_t *buf, size_t len,
                        uint64_t off)
{
	char mq[256], fq[256], why[64], sup[48];
	ssize_t got = mv_pread_full(fd, buf, len, off);

	if (got >= 0 && (size_t)got == len)
		return 0;
	/*
	 * A short count means the backing file ended early (truncated under us,
	 * or a file system that gave up): say so, it is not a disk error. Either
	 * way no byte of the range is served.
	 */
	if (got < 0)
		snprintf(why, sizeof(why), "%s", strerror((int)-got));
	else
		snprintf(why, sizeof(why), "short read: %zd of %zu bytes", got, len);
	mfs_count_failure(m, n);
	if (failure_logged(n, sup, sizeof(sup)))
		mfs_log(LOG_ERR, "read-failure model=%s file=%s offset=%" PRIu64 " reason=\"%s\"%s",
		        mfs_log_value(n->model->path, mq, sizeof(mq)),
		        mfs_log_value(n->res->name, fq, sizeof(fq)), off, why, sup);
	return -EIO;
}

/* Hash-block source of a tree without hash blocks: never asked for one. */
static int no_hblock_get(void *ctx, unsigned level, uint64_t index, struct mv_hblock *out)
{
	return -EIO;
}

static void no_hblock_put(void *ctx, struct mv_hblock *hb)
{
}

static const struct mv_hblock_ops no_hblock_ops = {
    .get = no_hblock_get,
    .put = no_hblock_put,
    .mark_verified = no_hblock_put,
};

/*
 * Reads a file of one data block. Its fs-verity root is the hash of that
 * block: the tree has no hash blocks, so neither a tree file, nor a loaded
 * tree, nor a hash-block cache entry is needed, and the tree is made on the
 * stack. This keeps a small file that was listed (format detection reads its
 * head) from costing a tree and a cached descriptor for the life of the
 * mount. A mismatch can only be the data's fault: no rebuild, no negative
 * cache (hashing it again costs one block).
 */
static int one_block_read(struct mfs_mount *m, struct mfs_node *n, int fd, uint64_t off, size_t len,
                          const uint8_t **out, size_t *out_len)
{
	size_t size = (size_t)n->res->merkle.params.data_size;
	struct mv_verify_failure fail = {0};
	struct mv_tree tree;
	uint8_t *buf;
	int ret;

	if (mv_tree_init(&tree, &n->res->merkle.params, n->res->merkle.root))
		return -EIO; /* checked at scan: not reached */
	buf = thread_buf(size);
	if (!buf)
		return -ENOMEM;
	ret = backing_read(m, n, fd, buf, size, 0);
	if (ret)
		return ret;
	ret = mv_verify_blocks(&tree, &no_hblock_ops, NULL, 0, buf, size, &fail);
	if (ret) {
		log_failure(m, n, ret, 0, &fail);
		return -EIO;
	}
	mfs_count(&m->ctr.bytes_verified, size);
	*out = buf + off;
	*out_len = len;
	return 0;
}

int mfs_file_read(struct mfs_mount *m, struct mfs_node *n, int fd, uint64_t off, size_t len,
                  const uint8_t **out, size_t *out_len)
{
	struct mfs_zfile *zf;
	uint64_t size = n->res->merkle.params.data_size, aoff, alen;
	const struct mv_tree *tree;
	uint8_t *buf;
	int ret;

	*out_len = 0;
	*out = NULL;
	if (off >= size || len == 0)
		return 0;
	if (len > size - off)
		len = (size_t)(size - off);
	if (len > MFS_MAX_READ)
		len = MFS_MAX_READ;
	zf = packed_of(n);
	if (!zf && mfs_file_one_block(n))
		return one_block_read(m, n, fd, off, len, out, out_len);
	tree = mfs_file_tree(n);
	if (!tree)
		return -ENOMEM;
	if (zf) {
		buf = thread_buf(len);
		if (!buf)
			return -ENOMEM;
		ret = packed_read(m, n, zf, off, len, buf);
		if (ret)
			return ret;
		mfs_count(&m->ctr.bytes_verified, len);
		*out = buf;
		*out_len = len;
		return 0;
	}
	ret = mv_range_to_blocks(tree, off, len, &aoff, &alen);
	if (ret || alen < len || off - aoff > alen - len)
		return -EIO;
	buf = thread_buf((size_t)alen);
	if (!buf)
		return -ENOMEM;
	ret = backing_read(m, n, fd, buf, (size_t)alen, aoff);
	if (ret)
		return ret;
	ret = verify(m, n, fd, aoff >> tree->geo.log_block_size, buf, (size_t)alen);
	if (ret)
		return ret;
	mfs_count(&m->ctr.bytes_verified, alen);
	*out = buf + (off - aoff);
	*out_len = len;
	return 0;
}

ssize_t mfs_vpread(void *ctx, void *buf, size_t len, uint64_t off)
{
	struct mfs_vctx *v = ctx;
	size_t done = 0;

	while (done < len) {
		const uint8_t *p;
		size_t got;
		int ret = mfs_file_read(v->m, v->n, v->fd, off + done, len - done, &p, &got);

		if (ret)
			return ret;
		if (got == 0)
			break;
		memcpy((uint8_t *)buf + done, p, got);
		done += got;
	}
	return (ssize_t)done;
}

int mfs_file_format(struct mfs_mount *m, struct mfs_node *n, enum mfs_format *out)
{
	struct mfs_vctx v = {.m = m, .n = n, .fd = -1};
	enum mfs_format f;
	int ret;

	if (__atomic_load_n(&n->fmt_known, __ATOMIC_ACQUIRE)) {
		*out = n->fmt;
		return 0;
	}
	if (n->res->merkle.params.data_size) {
		ret = mfs_open_backing(m, n, &v.fd);
		if (ret)
			return ret;
		ret = mfs_file_prepare(m, n, v.fd);
		if (ret)
			goto out;
	}
	ret = mfs_format_detect(mfs_vpread, &v, n->res->merkle.params.data_size, &f);
	if (ret) {
		ret = -EIO;
		goto out;
	}
	n->fmt = f;
	__atomic_store_n(&n->fmt_known, 1, __ATOMIC_RELEASE);
	*out = f;
out:
	if (v.fd >= 0)
		close(v.fd);
	return ret;
}

/* Frees a packed copy @zf (may be NULL or half set up) and drops its frames. */
static void zfile_free(struct mfs_mount *m, struct mfs_zfile *zf)
{
	if (!zf)
		return;
	if (zf->z)
		mc_frame_cache_drop_file(m->fcache, zf->zf.file_id);
	mv_zpack_free(zf->z);
	if (zf->fd >= 0)
		close(zf->fd);
	free(zf);
}

int mfs_zfile_open(struct mfs_mount *m, struct mfs_node *n, int fd)
{
	uint64_t size = n->res->merkle.params.data_size;
	struct mfs_zfile *zf = NULL;
	struct mv_err err = {0};
	int ret = 0;

	if (__atomic_load_n(&n->zf, __ATOMIC_ACQUIRE))
		goto mark;
	pthread_mutex_lock(&n->load_lock);
	if (n->zf)
		goto out;
	zf = calloc(1, sizeof(*zf));
	if (!zf) {
		ret = -ENOMEM;
		goto out;
	}
	/* Our own descriptor: the caller's is closed when its file handle goes. */
	zf->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	ret = zf->fd < 0 ? -errno : 0;
	if (mfs_fd_errno(ret)) {
		/* As mfs_openat_bounded(): cached tree fds give way, then one retry. */
		mfs_fdcache_shed(m);
		zf->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		ret = zf->fd < 0 ? -errno : 0;
		if (mfs_fd_errno(ret))
			mfs_fd_exhausted(m, "packed-copy", ret);
	}
	if (ret)
		goto out;
	ret = mv_zpack_open(zf->fd, n->res->name, size, n->res->merkle.params.block_size, &zf->z,
	                    &err);
	if (!ret && !mfs_file_tree(n))
		ret = -ENOMEM;
	if (!ret)
		ret = mc_zpack_file_init(&zf->zf, m->fcache, zf->fd, zf->z, n->tree, &mc_hblock_ops,
		                         NULL, n->res->name);
	if (ret) {
		if (ret != -ENOMEM)
			mfs_count_failure(m, n);
		mfs_log(LOG_ERR, "packed-damaged model=%s file=%s reason=\"%s\"", n->model->path,
		        n->res->name, err.msg[0] ? err.msg : "seek table does not fit the tree");
		goto out;
	}
	__atomic_store_n(&n->zf, zf, __ATOMIC_RELEASE);
	zf = NULL;
out:
	pthread_mutex_unlock(&n->load_lock);
	zfile_free(m, zf);
	if (ret)
		return ret == -ENOMEM || mfs_fd_errno(ret) ? ret : -EIO;
mark:
	__atomic_store_n(&n->stored, MFS_STORED_PACKED, __ATOMIC_RELEASE);
	return 0;
}

const char *mfs_file_stored_as(struct mfs_mount *m, struct mfs_node *n)
{
	int st = __atomic_load_n(&n->stored, __ATOMIC_ACQUIRE), fd;

	if (st == MFS_STORED_UNKNOWN) {
		if (!n->res->merkle.params.data_size)
			return "plain"; /* empty files are never packed nor opened */
		if (mfs_open_backing(m, n, &fd))
			return NULL;
		close(fd);
		st = __atomic_load_n(&n->stored, __ATOMIC_ACQUIRE);
	}
	return st == MFS_STORED_PACKED ? "packed" : "plain";
}

void mfs_file_node_free(struct mfs_mount *m, struct mfs_node *n)
{
	if (n->kind != MFS_N_FILE)
		return; /* only files hold trees and packed copies (views lack the fields) */
	ftree_free(n->ft);
	n->ft = NULL;
	zfile_free(m, n->zf);
	n->zf = NULL;
}

void mfs_file_trees_free(struct mfs_mount *m)
{
	for (size_t i = 0; i < m->n_nodes; i++)
		if (m->nodes[i])
			mfs_file_node_free(m, m->nodes[i]);
	if (!m->fdc.ready)
		return;
	/* Replaced trees still borrowed at unmount keep their slots: leaked with them. */
	pthread_mutex_destroy(&m->fdc.lock);
	free(m->fdc.slots);
	m->fdc.slots = NULL;
	m->fdc.n = m->fdc.cap = 0;
	m->fdc.ready = 0;
}
