// SPDX-License-Identifier: Apache-2.0
/*
 * ftree.c - the loaded trees of file nodes and the negative cache.
 *
 * Trees are loaded on first use: from the cache folder (trees this mount
 * built), else from MODEL/.modelfs/trees. A missing or damaged tree is
 * rebuilt from the data, and kept only if the data matches the signature;
 * the build runs in the mount's bounded pool (treebuild.c), and the thread
 * that needs the tree waits for it at most --tree-build-wait. A tree file's
 * descriptor lives in the fd cache (fdcache.c); a closed one is reopened
 * here with the checks of its first open.
 *
 * The negative cache (docs/mount.md, "Negative cache"): a file whose tree
 * build found data that does not match the signature is not hashed again
 * until its identity (device, inode, size, mtime, ctime) changes.
 *
 * Readers borrow a tree with mfs_ftree_get() and give it back with
 * mfs_ftree_put(); a tree that failed a check is replaced through
 * mfs_ftree_load() (vread.c, once per file).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vread_int.h"

/*
 * Opens a tree file (@rel under @dirfd, of the cache folder or, as a local
 * descriptor, of the store: @at) and checks its header against the signed
 * parameters.
 * The tree's contents are checked later, block by block, at read.
 * Return: the fd, or a negative errno (-EBADMSG: unusable header).
 */
static int tree_open(struct mfs_mount *m, struct mfs_node *n, enum mfs_at at, int dirfd,
                     const char *rel, uint64_t *tree_off)
{
	uint8_t *hdr = NULL;
	struct mv_tree_header h;
	struct mv_err err = {0};
	struct stat st;
	ssize_t got;
	int fd, ret;

	fd = mfs_openat_bounded(m, at, dirfd, rel, O_RDONLY, "tree");
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

/* ---- loaded trees ---- */

const struct mv_tree *mfs_file_tree(struct mfs_node *n)
{
	struct mv_tree *t = __atomic_load_n(&n->tree, __ATOMIC_ACQUIRE), *seen = NULL;
	const struct mv_measurement *meas;

	if (t || mfs_file_empty(n))
		return t;
	/* Checked at scan (store.c, check_resources()): only ENOMEM fails here. */
	meas = mfs_node_meas(n);
	if (!meas)
		return NULL; /* a plain OMS file whose tree was not built yet */
	t = malloc(sizeof(*t));
	if (!t || mv_tree_init(t, &meas->params, meas->root)) {
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
	if (!ft)
		return;
	mfs_fdcache_remove(ft);
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
	ret = mfs_fdcache_add(m, ft, fd);
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

/*
 * The tree file's name in the cache folder (@name) and in the model (@rel).
 * Return: false for a plain OMS file whose tree was not built yet (no name).
 */
static bool tree_names(const struct mfs_node *n, char name[MV_TREE_NAME_MAX],
                       char rel[sizeof(MV_TREES_DIR) + MV_TREE_NAME_MAX])
{
	const struct mv_measurement *meas = mfs_node_meas(n);

	if (!meas)
		return false;
	/* The same content-addressed name in both places. */
	mv_tree_file_name(meas, name);
	snprintf(rel, sizeof(MV_TREES_DIR) + MV_TREE_NAME_MAX, "%s/%s", MV_TREES_DIR, name);
	return true;
}

/* ---- the negative cache ---- */

/* The identity of the file open as store handle @fd. 0 or -errno. */
static int file_id_of(struct mfs_mount *m, int fd, struct mfs_file_id *id)
{
	struct stat st;

	if (fd < 0 || m->bstore.ops->stat(&m->bstore, fd, NULL, &st))
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
	if (mfs_failure_logged(n, sup, sizeof(sup)))
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
	have_id = file_id_of(m, zf ? zf->fd : data_fd, &id) == 0;
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
	int fd = tree_open(m, n, MFS_AT_HOST, m->cache_fd, name, off);

	*in_model = false;
	if (fd < 0 && !mfs_fd_errno(fd)) {
		fd = tree_open(m, n, MFS_AT_STORE_LOCAL, n->model->dirfd, rel, off);
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
	/* A plain OMS file has no tree to find before its first build derived one. */
	if (!rebuild && !mfs_node_meas(n))
		why = "signed by SHA-256 only (plain OMS): the tree is derived from the data";
	else if (!rebuild && tree_names(n, name, rel)) {
		fd = tree_find(m, n, name, rel, &off, &in_model, &why);
		if (mfs_fd_errno(fd)) {
			ret = fd; /* a build would not get a descriptor either */
			goto out;
		}
	}
	if (fd < 0) {
		ret = fresh ? 0 : tree_build_once(m, n, data_fd, mfs_file_packed(n), why);
		if (rebuild && ret != -ETIMEDOUT && ret != -EAGAIN)
			rebuild_spent(m, n);
		if (ret || n->ft != old)
			goto out; /* load_lock was let go: another waiter installed it */
		if (!tree_names(n, name, rel)) {
			ret = -EIO; /* built, yet nothing derived: not reached */
			goto out;
		}
		fd = tree_open(m, n, MFS_AT_HOST, m->cache_fd, name, &off);
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
int mfs_ftree_load(struct mfs_mount *m, struct mfs_node *n, int data_fd, struct mfs_ftree *bad)
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
	if (!tree_names(n, name, rel)) {
		ret = -ENOENT; /* not reached: a tree was installed, so it has a name */
		goto out;
	}
	if (ft->in_model)
		fd = tree_open(m, n, MFS_AT_STORE_LOCAL, n->model->dirfd, rel, &off);
	else
		fd = tree_open(m, n, MFS_AT_HOST, m->cache_fd, name, &off);
	if (fd < 0) {
		ret = fd;
		goto out;
	}
	if (off != ft->src.tree_offset) {
		close(fd);
		ret = -EBADMSG;
		goto out;
	}
	ret = mfs_fdcache_add(m, ft, fd);
	if (ret)
		close(fd);
out:
	pthread_mutex_unlock(&n->load_lock);
	return ret;
}

/*
 * Borrows the node's tree, loading it on first use and reopening its file
 * if the fd cache closed it. Cheap when the fd is open: the node lock and
 * one relaxed store; the fd cache lock is never taken here.
 */
int mfs_ftree_get(struct mfs_mount *m, struct mfs_node *n, int data_fd, struct mfs_ftree **out)
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
			ret = mfs_ftree_load(m, n, data_fd, NULL);
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
		mfs_ftree_put(n, ft);
		if (ret)
			return ret;
	}
	return -EIO;
got:
	*out = ft;
	return 0;
}

void mfs_ftree_put(struct mfs_node *n, struct mfs_ftree *ft)
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
	ret = mfs_ftree_get(m, n, fd, &ft);
	if (ret)
		return -EIO;
	mfs_ftree_put(n, ft);
	return 0;
}

void mfs_file_node_free(struct mfs_mount *m, struct mfs_node *n)
{
	if (n->kind != MFS_N_FILE)
		return; /* only files hold trees and packed copies (views lack the fields) */
	ftree_free(n->ft);
	n->ft = NULL;
	mfs_zfile_free(m, n->zf);
	n->zf = NULL;
}

void mfs_file_trees_free(struct mfs_mount *m)
{
	for (size_t i = 0; i < m->n_nodes; i++)
		if (m->nodes[i])
			mfs_file_node_free(m, m->nodes[i]);
	mfs_fdcache_free(m);
}
