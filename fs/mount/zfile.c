// SPDX-License-Identifier: Apache-2.0
/*
 * zfile.c - packed copies: attaching MODEL/.modelfs/packed/<digest>.zst to
 * a file node (docs/packing.md).
 *
 * When a signed file's plain copy is absent, backing.c opens its packed
 * copy and hands it here: it is duplicated, its seek table checked against
 * the signed size and block size, and kept for the mount (struct
 * mfs_zfile). Reads then go through the mount's frame cache, each frame
 * decompressed under its declared size and its blocks verified against the
 * file's tree before any byte of it is served (vread.c, packed_read()).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "vread_int.h"

/* Frees a packed copy @zf (may be NULL or half set up) and drops its frames. */
void mfs_zfile_free(struct mfs_mount *m, struct mfs_zfile *zf)
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
	mfs_zfile_free(m, zf);
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
		mfs_close_backing(m, fd);
		st = __atomic_load_n(&n->stored, __ATOMIC_ACQUIRE);
	}
	return st == MFS_STORED_PACKED ? "packed" : "plain";
}
