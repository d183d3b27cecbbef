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
 * rebuilt from the data, and kept only if the data matches the signature.
 *
 * A file stored packed (MODEL/.modelfs/packed/<digest>.zst, docs/packing.md)
 * is read through the mount's frame cache: each frame is decompressed under
 * its declared size and its blocks verified against the same tree before
 * any byte of it is served (mc_zpack_pread). Its tree, when missing, is
 * rebuilt from the decompressed frames.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

	fd = mfs_openat_nofollow(dirfd, rel, O_RDONLY);
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
	if (!mv_tree_params_equal(&h.params, &n->tree->params)) {
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

/* Counts one failed check of @n, for the mount and for its model (metrics). */
static void count_failure(struct mfs_mount *m, struct mfs_node *n)
{
	mfs_count(&m->ctr.verify_failures, 1);
	mfs_count(&n->model->verify_failures, 1);
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

/*
 * Builds the tree of @n into the cache folder from its data: the plain file
 * @data_fd, or the decompressed frames of its packed copy @zf (bounded, see
 * mv_zpack_measure). The file gets its final name only if the root and
 * digest equal the signed ones; a concurrent builder of the same digest
 * writes identical bytes, and the rename is atomic.
 */
static int tree_build(struct mfs_mount *m, struct mfs_node *n, int data_fd, struct mfs_zfile *zf,
                      const char *why)
{
	size_t ds = mv_hash_digest_size(n->tree->params.alg);
	struct mv_tree_writer w = {.dirfd = m->cache_fd, .fd = -1};
	char name[MV_TREE_NAME_MAX];
	struct mv_measurement meas;
	struct mv_err err = {0};
	int ret;

	mfs_log(LOG_NOTICE,
	        "tree-build model=%s file=%s stored_as=%s reason=\"%s\" bytes=%" PRIu64
	        " note=\"reads the whole file once\"",
	        n->model->path, n->res->name, zf ? "packed" : "plain", why,
	        n->tree->params.data_size);
	ret = mv_tree_writer_open(&w, m->cache_fd, &n->tree->params);
	if (ret) {
		mv_err_set(&err, ret, "cache folder: %s", strerror(-ret));
		goto out;
	}
	if (zf)
		ret = mv_zpack_measure(zf->fd, n->res->name, &n->tree->params, NULL,
		                       mv_tree_writer_sink, &w, &meas, &err);
	else
		ret = mv_measure_fd(data_fd, &n->tree->params, mv_tree_writer_sink, &w, &meas);
	if (ret)
		goto out;
	if (memcmp(meas.root, n->tree->root, ds) != 0 ||
	    memcmp(meas.digest, n->res->merkle.digest, ds) != 0) {
		ret = mv_err_set(&err, -EBADMSG,
		                 "data does not match the signed root; tree not built");
		goto out;
	}
	mv_tree_file_name(&n->res->merkle, name);
	ret = mv_tree_writer_commit(&w, &meas, name, true, NULL);
	if (ret)
		mv_err_set(&err, ret, "cache folder: %s", strerror(-ret));
	else
		mfs_count(&m->ctr.trees_built, 1);
out:
	mv_tree_writer_abort(&w);
	if (ret) {
		char mq[256], fq[256];

		if (ret == -EBADMSG)
			count_failure(m, n);
		mfs_log(LOG_ERR, "%s model=%s file=%s reason=\"%s\"",
		        ret == -EBADMSG ? "verify-failure" : "tree-build-failed",
		        mfs_log_value(n->model->path, mq, sizeof(mq)),
		        mfs_log_value(n->res->name, fq, sizeof(fq)),
		        err.msg[0] ? err.msg : strerror(-ret));
	}
	return ret;
}

static void ftree_free(struct mfs_ftree *ft)
{
	if (!ft)
		return;
	mc_hblock_cache_drop_tree(ft->src.cache, ft->src.tree_id);
	close(ft->fd);
	free(ft);
}

/* Makes @fd (a checked tree file) the node's tree, retiring the old one. */
static int ftree_install(struct mfs_mount *m, struct mfs_node *n, int fd, uint64_t tree_off)
{
	struct mfs_ftree *ft = calloc(1, sizeof(*ft)), *old;
	bool free_old = false;

	if (!ft) {
		close(fd);
		return -ENOMEM;
	}
	ft->fd = fd;
	if (mc_hblock_src_init(&ft->src, m->hcache, fd, tree_off, &n->tree->geo)) {
		close(fd);
		free(ft);
		return -EINVAL;
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
 * Loads the tree of @n, or replaces @bad (a tree that failed a hash-block
 * check) by one rebuilt from the data. Serialized per node.
 */
static int ftree_load(struct mfs_mount *m, struct mfs_node *n, int data_fd, struct mfs_ftree *bad)
{
	char name[MV_TREE_NAME_MAX], rel[sizeof(MV_TREES_DIR) + MV_TREE_NAME_MAX];
	const char *why = "missing";
	uint64_t off = 0;
	int fd = -1, ret = 0;

	pthread_mutex_lock(&n->load_lock);
	if ((!bad && n->ft) || (bad && n->ft != bad))
		goto out; /* another thread got here first */
	if (bad && __atomic_load_n(&n->rebuilt, __ATOMIC_ACQUIRE)) {
		ret = -EBADMSG; /* the one rebuild was tried and the data did not match */
		goto out;
	}
	/* The same content-addressed name in the cache and in the model's trees. */
	mv_tree_file_name(&n->res->merkle, name);
	snprintf(rel, sizeof(rel), "%s/%s", MV_TREES_DIR, name);
	if (!bad) {
		fd = tree_open(m, n, m->cache_fd, name, &off);
		if (fd < 0) {
			fd = tree_open(m, n, n->model->dirfd, rel, &off);
			if (fd == -EBADMSG)
				why = "damaged";
		}
	} else {
		why = "a read failed verification";
		__atomic_store_n(&n->rebuilt, true, __ATOMIC_RELEASE);
		mfs_count(&m->ctr.tree_rebuilds, 1);
	}
	if (fd < 0) {
		struct mfs_zfile *zf = packed_of(n);

		ret = tree_build(m, n, data_fd, zf, why);
		if (ret)
			goto out;
		fd = tree_open(m, n, m->cache_fd, name, &off);
		if (fd < 0) {
			ret = fd;
			goto out;
		}
	}
	ret = ftree_install(m, n, fd, off);
out:
	pthread_mutex_unlock(&n->load_lock);
	return ret;
}

/* Borrows the node's tree, loading it on first use. */
static int ftree_get(struct mfs_mount *m, struct mfs_node *n, int data_fd, struct mfs_ftree **out)
{
	int ret;

	for (int tries = 0; tries < 2; tries++) {
		pthread_mutex_lock(&n->lock);
		*out = n->ft;
		if (*out)
			(*out)->refs++;
		pthread_mutex_unlock(&n->lock);
		if (*out)
			return 0;
		ret = ftree_load(m, n, data_fd, NULL);
		if (ret)
			return ret;
	}
	return -EIO;
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

	if (!n->tree)
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
	size_t ds = mv_hash_digest_size(n->tree->params.alg);
	char exp[2 * MV_MAX_DIGEST_SIZE + 1], act[2 * MV_MAX_DIGEST_SIZE + 1];
	char mq[256], fq[256], sup[48];

	count_failure(m, n);
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
		ret = mv_verify_blocks(n->tree, &mc_hblock_ops, &ft->src, first_block, buf, len,
		                       &fail);
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

	count_failure(m, n);
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

int mfs_file_read(struct mfs_mount *m, struct mfs_node *n, int fd, uint64_t off, size_t len,
                  const uint8_t **out, size_t *out_len)
{
	struct mfs_zfile *zf;
	uint64_t size = n->res->merkle.params.data_size, aoff, alen;
	uint8_t *buf;
	int ret;

	*out_len = 0;
	*out = NULL;
	if (off >= size || len == 0 || !n->tree)
		return 0;
	if (len > size - off)
		len = (size_t)(size - off);
	if (len > MFS_MAX_READ)
		len = MFS_MAX_READ;
	zf = packed_of(n);
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
	ret = mv_range_to_blocks(n->tree, off, len, &aoff, &alen);
	if (ret || alen < len || off - aoff > alen - len)
		return -EIO;
	buf = thread_buf((size_t)alen);
	if (!buf)
		return -ENOMEM;
	ret = mv_pread_exact(fd, buf, (size_t)alen, aoff);
	if (ret) {
		char mq[256], fq[256], sup[48];

		count_failure(m, n);
		if (failure_logged(n, sup, sizeof(sup)))
			mfs_log(LOG_ERR,
			        "read-failure model=%s file=%s offset=%" PRIu64 " reason=\"%s\"%s",
			        mfs_log_value(n->model->path, mq, sizeof(mq)),
			        mfs_log_value(n->res->name, fq, sizeof(fq)), aoff, strerror(-ret),
			        sup);
		return -EIO;
	}
	ret = verify(m, n, fd, aoff >> n->tree->geo.log_block_size, buf, (size_t)alen);
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
	if (zf->fd < 0) {
		ret = -errno;
		goto out;
	}
	ret = mv_zpack_open(zf->fd, n->res->name, size, n->tree->params.block_size, &zf->z, &err);
	if (!ret)
		ret = mc_zpack_file_init(&zf->zf, m->fcache, zf->fd, zf->z, n->tree, &mc_hblock_ops,
		                         NULL, n->res->name);
	if (ret) {
		if (ret != -ENOMEM)
			count_failure(m, n);
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
		return ret == -ENOMEM ? -ENOMEM : -EIO;
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

void mfs_file_trees_free(struct mfs_mount *m)
{
	for (size_t i = 0; i < m->n_nodes; i++) {
		struct mfs_node *n = m->nodes[i];

		ftree_free(n->ft);
		n->ft = NULL;
		zfile_free(m, n->zf);
		n->zf = NULL;
	}
}
