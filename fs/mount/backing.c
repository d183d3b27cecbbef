// SPDX-License-Identifier: Apache-2.0
/*
 * backing.c - opening what the store holds, and who may see a node.
 *
 * Everything is opened through the backing store's operations
 * (bstore_local.c for a local folder: one component at a time with
 * O_NOFOLLOW, so a symlink anywhere never leads out of the store). A backing
 * file must be a regular file of exactly
 * the signed size, else its packed copy is tried; failures are counted and
 * logged with the file named. Opens that meet EMFILE first shed the fd
 * cache. The visibility checks of an open (deny rules of the trust policy)
 * are here too.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mount_int.h"
#include "store_int.h"

/* One open of mfs_openat_bounded(). */
static int open_at(struct mfs_mount *m, enum mfs_at at, int dirfd, const char *relpath, int flags)
{
	const struct mfs_bstore *st = &m->bstore;

	switch (at) {
	case MFS_AT_STORE: return st->ops->open(st, dirfd, relpath, flags);
	case MFS_AT_STORE_LOCAL: return st->ops->open_local(st, dirfd, relpath, flags);
	default: return mfs_openat_nofollow(dirfd, relpath, flags);
	}
}

int mfs_openat_bounded(struct mfs_mount *m, enum mfs_at at, int dirfd, const char *relpath,
                       int flags, const char *what)
{
	int fd = open_at(m, at, dirfd, relpath, flags);

	if (!mfs_fd_errno(fd))
		return fd;
	/* Cached tree fds only save reopens: an open that serves a reader comes first. */
	mfs_fdcache_shed(m);
	fd = open_at(m, at, dirfd, relpath, flags);
	if (mfs_fd_errno(fd))
		mfs_fd_exhausted(m, what, fd);
	return fd;
}

/* Counts and logs a failed open of @n's backing file. Return: -EIO. */
static int open_failed(struct mfs_mount *m, struct mfs_node *n, const char *why)
{
	char q[LQ_PATH], f[LQ_PATH];

	mfs_count(&m->ctr.open_failures, 1);
	mfs_log(LOG_ERR, "open-failure model=%s file=%s reason=\"%s\"",
	        mfs_log_value(n->model->path, q, sizeof(q)),
	        mfs_log_value(n->res->name, f, sizeof(f)), why);
	return -EIO;
}

/* Is handle @f of the store a regular file? Fills @st. */
static bool regular_file(struct mfs_mount *m, int f, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	return m->bstore.ops->stat(&m->bstore, f, NULL, st) == 0 && S_ISREG(st->st_mode);
}

/*
 * Opens MODEL/.modelfs/packed/<digest>.zst of @n and attaches it to the
 * node (first time only). @plain_err: why the plain file could not be used.
 */
static int open_packed(struct mfs_mount *m, struct mfs_node *n, int plain_err, int *fd)
{
	char name[MV_ZPACK_NAME_MAX], rel[sizeof(MV_PACKED_DIR) + MV_ZPACK_NAME_MAX + 1];
	struct stat st;
	int f, ret;

	if (!n->res->has_merkle || mfs_file_empty(n))
		return open_failed(m, n, strerror(-plain_err));
	mv_zpack_file_name(&n->res->merkle, name);
	snprintf(rel, sizeof(rel), "%s/%s", MV_PACKED_DIR, name);
	f = mfs_openat_bounded(m, MFS_AT_STORE_LOCAL, n->model->dirfd, rel, O_RDONLY, "backing");
	if (mfs_fd_errno(f))
		return -EIO; /* counted as fd_exhausted, not as a fault of the store */
	if (f == -ENOENT)
		return open_failed(m, n, "missing (no plain file and no packed copy)");
	if (f < 0)
		return open_failed(m, n, f == -ELOOP ? "packed copy: symlink" : strerror(-f));
	if (fstat(f, &st) || !S_ISREG(st.st_mode)) {
		close(f);
		return open_failed(m, n, "packed copy: not a regular file");
	}
	ret = mfs_zfile_open(m, n, f);
	if (ret) {
		close(f);
		/* Out of fds: counted as fd_exhausted; else logged with the table's problem. */
		if (!mfs_fd_errno(ret))
			mfs_count(&m->ctr.open_failures, 1);
		return -EIO;
	}
	*fd = f;
	return 0;
}

int mfs_open_backing(struct mfs_mount *m, struct mfs_node *n, int *fd)
{
	uint64_t want = n->res->merkle.params.data_size;
	char q[LQ_PATH], fq[LQ_PATH];
	struct stat st;
	int f;

	*fd = -1;
	/*
	 * Once a node is served packed it stays so: a model's files do not change
	 * under a version (a re-seal is a new version with new nodes).
	 */
	if (__atomic_load_n(&n->stored, __ATOMIC_ACQUIRE) == MFS_STORED_PACKED)
		return open_packed(m, n, -ENOENT, fd);
	f = mfs_openat_bounded(m, MFS_AT_STORE, n->model->dirfd, n->res->name, O_RDONLY, "backing");
	if (mfs_fd_errno(f))
		return -EIO; /* counted as fd_exhausted, not as a fault of the store */
	if (f == -ENOENT && want)
		return open_packed(m, n, f, fd);
	if (f < 0)
		return open_failed(m, n, f == -ELOOP ? "symlink" : strerror(-f));
	if (!regular_file(m, f, &st) || (uint64_t)st.st_size != want) {
		mfs_count(&m->ctr.open_failures, 1);
		mfs_log(LOG_ERR,
		        "open-failure model=%s file=%s reason=\"not a regular file of the signed "
		        "size\" size=%lld signed_size=%llu",
		        mfs_log_value(n->model->path, q, sizeof(q)),
		        mfs_log_value(n->res->name, fq, sizeof(fq)), (long long)st.st_size,
		        (unsigned long long)want);
		m->bstore.ops->close(&m->bstore, f);
		return -EIO;
	}
	/* Only a first decision: a concurrent open may have found the copy packed. */
	__atomic_compare_exchange_n(&n->stored, &(int){MFS_STORED_UNKNOWN}, MFS_STORED_PLAIN, false,
	                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
	*fd = f;
	return 0;
}

void mfs_close_backing(struct mfs_mount *m, int fd)
{
	if (fd >= 0)
		m->bstore.ops->close(&m->bstore, fd);
}

/*
 * The --pickle=deny verdict of a model: every file's format is detected
 * (a small verified read each) on first access, then cached. A detection
 * that fails (a damaged file) decides nothing and is retried next time.
 */
static int model_deny_check(struct mfs_mount *m, struct mfs_model *model)
{
	int state = __atomic_load_n(&model->deny_state, __ATOMIC_ACQUIRE), ret = 0;
	char *why = NULL, q[LQ_PATH], w[LQ_WHY];
	enum mfs_format f;

	if (state == MFS_DENY_OK)
		return 0;
	if (state == MFS_DENY_REFUSED)
		return -ENOENT;
	pthread_mutex_lock(&model->lock);
	state = __atomic_load_n(&model->deny_state, __ATOMIC_ACQUIRE);
	if (state != MFS_DENY_UNCHECKED) {
		ret = state == MFS_DENY_OK ? 0 : -ENOENT;
		goto out;
	}
	for (size_t i = 0; i < model->n_files; i++) {
		ret = mfs_file_format(m, model->files[i], &f);
		if (ret) {
			ret = -EIO;
			goto out;
		}
		if (f != MFS_FMT_PICKLE)
			continue;
		if (asprintf(&why, "contains pickle file %s", model->files[i]->res->name) < 0) {
			ret = -ENOMEM;
			goto out;
		}
		model->refused = why;
		mfs_log(LOG_WARNING, "model-refused model=%s reason=%s",
		        mfs_log_value(model->path, q, sizeof(q)), mfs_log_value(why, w, sizeof(w)));
		__atomic_store_n(&model->deny_state, MFS_DENY_REFUSED, __ATOMIC_RELEASE);
		ret = -ENOENT;
		goto out;
	}
	__atomic_store_n(&model->deny_state, MFS_DENY_OK, __ATOMIC_RELEASE);
out:
	pthread_mutex_unlock(&model->lock);
	return ret;
}

int mfs_node_check(struct mfs_mount *m, struct mfs_node *n)
{
	enum mfs_format f;
	int ret;

	if (!n->model)
		return 0;
	if (n->model->pickle == MFS_PICKLE_DENY)
		return model_deny_check(m, n->model);
	if (n->kind == MFS_N_TX)
		return mfs_tx_decide(m, n);
	if (n->kind != MFS_N_FILE || n->model->pickle == MFS_PICKLE_SHOW)
		return 0;
	ret = mfs_file_format(m, n, &f);
	if (ret)
		return 0; /* shown; open and read re-check and fail with EIO */
	if (f == MFS_FMT_PICKLE)
		return -ENOENT;
	/* A checkpoint index is replaced by its rewritten view when that exists. */
	if (n->tx && mfs_tx_is_index(n->tx) && mfs_tx_decide(m, n->tx) == 0)
		return -ENOENT;
	return 0;
}
