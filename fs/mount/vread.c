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
 * A file stored packed (zfile.c) is read through the mount's frame cache:
 * each frame is decompressed under its declared size and its blocks verified
 * against the same tree before any byte of it is served (mc_zpack_pread).
 * A file of one block needs no tree at all (one_block_read()).
 *
 * The tree a read borrows is ftree.c's; a failure the tree may be at fault
 * for rebuilds it once per file, then tries again (tree_retry()).
 *
 * Once a plain range is verified and about to be handed to the kernel, the
 * store is told it was consumed (mfs_bstore_drop()): the reply lands in the
 * mount's page cache (keep_cache), so the backing file's pages of it would
 * be a second copy of the model (issue #15). The bytes served come from the
 * thread's buffer, never from those pages, so dropping them cannot let an
 * unverified byte through: a range read again is read and verified again.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vread_int.h"

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
 * Whether to log a failure of @n now: the first one is, then at most one per
 * MFS_LOG_INTERVAL_S per file, so a reader looping on a bad block cannot
 * flood the log. @sup gets " suppressed=N" when lines were dropped, else "".
 */
bool mfs_failure_logged(struct mfs_node *n, char *sup, size_t len)
{
	uint64_t dropped = 0;

	sup[0] = '\0';
	if (!mfs_log_ratelimit(&n->fail_rl, &dropped))
		return false;
	if (dropped)
		snprintf(sup, len, " suppressed=%" PRIu64, dropped);
	return true;
}

/*
 * Could the tree be at fault, so that one rebuild is worth it? A hash-block
 * failure or a tree read error clearly is. A data mismatch (level -1) may be
 * too: the data hash is compared with its slot in a level-0 block before that
 * block is itself checked, so a damaged slot looks like damaged data. The
 * rebuild settles it: it keeps a new tree only if the data matches the signed
 * root, and it runs at most once per file per mount.
 */
static bool tree_fault(ssize_t ret)
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
	if (!mfs_failure_logged(n, sup, sizeof(sup)))
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

/* Logs a failed read of a packed node; @err names the frame. */
static void log_packed_failure(struct mfs_mount *m, struct mfs_node *n, ssize_t ret,
                               const struct mv_err *err)
{
	char mq[256], fq[256], rq[512], sup[48];

	mfs_count_failure(m, n);
	if (!mfs_failure_logged(n, sup, sizeof(sup)))
		return;
	mfs_log(LOG_ERR, "verify-failure model=%s file=%s stored_as=packed reason=%s%s",
	        mfs_log_value(n->model->path, mq, sizeof(mq)),
	        mfs_log_value(n->res->name, fq, sizeof(fq)),
	        mfs_log_value(err->msg[0] ? err->msg : strerror((int)-ret), rq, sizeof(rq)), sup);
}

/*
 * One try of a verified read with the borrowed tree @ft: 0 (or the bytes
 * read) on success, else a negative errno, whose details stay in @ctx.
 */
typedef ssize_t (*tree_try_fn)(void *ctx, struct mfs_ftree *ft);
/* Logs the failure of a try that returned @ret, before the tree is rebuilt. */
typedef void (*tree_fault_log_fn)(void *ctx, ssize_t ret);

/*
 * tree_retry() - run a verified read, rebuilding a faulty tree once per node
 * @data_fd: in: the data the tree is rebuilt from (the backing file, or the
 *           packed copy's fd)
 * @try_fn: in: one try of the read, with the tree borrowed for it
 * @log_fn: in: logs the failure that makes the tree be rebuilt
 * @ctx: in/out: the read, for @try_fn and @log_fn
 * @result: out: what the last try returned
 * Borrows the node's tree (mfs_ftree_get()) and tries. A failure the tree may
 * be at fault for (tree_fault()), while the node's one rebuild is not spent,
 * is logged, the tree replaced by one rebuilt from the data
 * (mfs_ftree_load()) and the read tried once more. The caller logs a failure
 * of the last try.
 * Return: 0 (@result set), or -EIO when no tree could be borrowed or rebuilt.
 */
static int tree_retry(struct mfs_mount *m, struct mfs_node *n, int data_fd, tree_try_fn try_fn,
                      tree_fault_log_fn log_fn, void *ctx, ssize_t *result)
{
	struct mfs_ftree *ft;
	ssize_t got;
	int ret;

	for (int attempt = 0;; attempt++) {
		ret = mfs_ftree_get(m, n, data_fd, &ft);
		if (ret)
			return -EIO;
		got = try_fn(ctx, ft);
		if (got >= 0 || attempt > 0 || __atomic_load_n(&n->rebuilt, __ATOMIC_ACQUIRE) ||
		    !tree_fault(got)) {
			mfs_ftree_put(n, ft);
			break;
		}
		log_fn(ctx, got);
		ret = mfs_ftree_load(m, n, data_fd, ft);
		mfs_ftree_put(n, ft);
		if (ret)
			return -EIO;
	}
	*result = got;
	return 0;
}

/* A read of whole plain blocks, for verify(). */
struct verify_ctx {
	struct mfs_mount *m;
	struct mfs_node *n;
	uint64_t first_block;
	const uint8_t *buf;
	size_t len;
	struct mv_verify_failure fail;
};

static ssize_t verify_try(void *ctx, struct mfs_ftree *ft)
{
	struct verify_ctx *c = ctx;

	memset(&c->fail, 0, sizeof(c->fail));
	/* Set: the tree was made before @ft was installed (ftree_install()). */
	return mv_verify_blocks(mfs_file_tree(c->n), &mc_hblock_ops, &ft->src, c->first_block,
	                        c->buf, c->len, &c->fail);
}

static void verify_log(void *ctx, ssize_t ret)
{
	struct verify_ctx *c = ctx;

	log_failure(c->m, c->n, (int)ret, c->first_block, &c->fail);
}

/* Verifies whole blocks in @buf, rebuilding a faulty tree once per node. */
static int verify(struct mfs_mount *m, struct mfs_node *n, int fd, uint64_t first_block,
                  const uint8_t *buf, size_t len)
{
	struct verify_ctx c = {.m = m, .n = n, .first_block = first_block, .buf = buf, .len = len};
	ssize_t ret;

	if (tree_retry(m, n, fd, verify_try, verify_log, &c, &ret))
		return -EIO;
	if (ret) {
		log_failure(m, n, (int)ret, first_block, &c.fail);
		return -EIO;
	}
	return 0;
}

/* A read of a packed node through the frame cache, for packed_read(). */
struct packed_ctx {
	struct mfs_mount *m;
	struct mfs_node *n;
	struct mfs_zfile *zf;
	uint64_t off;
	size_t len;
	uint8_t *buf;
	struct mv_err err;
};

static ssize_t packed_try(void *ctx, struct mfs_ftree *ft)
{
	struct packed_ctx *c = ctx;
	/* The template with the hash-block source of the tree borrowed now. */
	struct mc_zpack_file f = c->zf->zf;

	f.hctx = &ft->src;
	memset(&c->err, 0, sizeof(c->err));
	return mc_zpack_pread(&f, c->buf, c->len, c->off, &c->err);
}

static void packed_log(void *ctx, ssize_t ret)
{
	struct packed_ctx *c = ctx;

	log_packed_failure(c->m, c->n, ret, &c->err);
}

/*
 * Reads @len verified plain bytes at @off of a packed node into @buf, through
 * the frame cache. As for plain files, a failure may be the tree's fault, so
 * the tree is rebuilt (from the frames) once per node before giving up.
 */
static int packed_read(struct mfs_mount *m, struct mfs_node *n, struct mfs_zfile *zf, uint64_t off,
                       size_t len, uint8_t *buf)
{
	struct packed_ctx c = {.m = m, .n = n, .zf = zf, .off = off, .len = len, .buf = buf};
	ssize_t got;

	if (tree_retry(m, n, zf->fd, packed_try, packed_log, &c, &got))
		return -EIO;
	if (got == -ENOMEM)
		return -ENOMEM;
	if (got < 0 || (size_t)got != len) {
		if (got >= 0)
			mv_err_set(&c.err, -EIO, "%s: short read at %" PRIu64, n->res->name, off);
		log_packed_failure(m, n, got, &c.err);
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
	ssize_t got = m->bstore.ops->pread(&m->bstore, fd, buf, len, off);

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
	if (mfs_failure_logged(n, sup, sizeof(sup)))
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
 * Checks the @size bytes of a file of one data block: against its signed
 * root (@tree), or for a plain OMS file against its signed SHA-256, which
 * costs no more than the block's hash. 0 or -EBADMSG (@fail filled).
 */
static int one_block_check(const struct mfs_node *n, const struct mv_tree *tree, const uint8_t *buf,
                           size_t size, struct mv_verify_failure *fail)
{
	uint8_t sum[32];

	if (n->res->has_merkle)
		return mv_verify_blocks(tree, &no_hblock_ops, NULL, 0, buf, size, fail);
	mv_sha256(buf, size, sum);
	if (!memcmp(sum, n->res->sha256, sizeof(sum)))
		return 0;
	memset(fail, 0, sizeof(*fail));
	fail->level = -1;
	memcpy(fail->expected, n->res->sha256, sizeof(sum));
	memcpy(fail->actual, sum, sizeof(sum));
	return -EBADMSG;
}

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
                          bool drop, const uint8_t **out, size_t *out_len)
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
	ret = one_block_check(n, &tree, buf, size, &fail);
	if (ret && mfs_bstore_refetch(&m->bstore, fd, 0, size)) {
		log_failure(m, n, ret, 0, &fail);
		ret = backing_read(m, n, fd, buf, size, 0);
		if (ret)
			return ret;
		ret = one_block_check(n, &tree, buf, size, &fail);
	}
	if (ret) {
		log_failure(m, n, ret, 0, &fail);
		return -EIO;
	}
	mfs_count(&m->ctr.bytes_verified, size);
	if (drop)
		mfs_bstore_drop(&m->bstore, fd, off, len);
	*out = buf + off;
	*out_len = len;
	return 0;
}

/*
 * file_read() - mfs_file_read(), and whether the backing pages may go
 * @drop: in: true when the caller hands the bytes to the kernel, whose page
 *        cache keeps them; false when they are used once in the daemon
 *        (format detection, transcoding), where the backing file's pages
 *        are the only cached copy and dropping them would cost a disk read
 * The other parameters and the return are mfs_file_read()'s.
 */
static int file_read(struct mfs_mount *m, struct mfs_node *n, int fd, uint64_t off, size_t len,
                     bool drop, const uint8_t **out, size_t *out_len)
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
	zf = mfs_file_packed(n);
	if (!zf && mfs_file_one_block(n))
		return one_block_read(m, n, fd, off, len, drop, out, out_len);
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
	if (ret && mfs_bstore_refetch(&m->bstore, fd, aoff, alen)) {
		/* A damaged local copy of remote bytes, forgotten: once more. */
		ret = backing_read(m, n, fd, buf, (size_t)alen, aoff);
		if (!ret)
			ret = verify(m, n, fd, aoff >> tree->geo.log_block_size, buf, (size_t)alen);
	}
	if (ret)
		return ret;
	mfs_count(&m->ctr.bytes_verified, alen);
	/*
	 * Only what is served: the kernel caches [@off, +@len), not the rest of
	 * the blocks it was widened to (a 64 KiB block around a 4 KiB read).
	 */
	if (drop)
		mfs_bstore_drop(&m->bstore, fd, off, len);
	*out = buf + (off - aoff);
	*out_len = len;
	return 0;
}

/*
 * mfs_file_read() (mount_int.h), for op_read(): the bytes go to the kernel,
 * so the backing file's pages of them are dropped (file_read()). A packed
 * copy's compressed pages are kept: see docs/performance.md, issue #15.
 */
int mfs_file_read(struct mfs_mount *m, struct mfs_node *n, int fd, uint64_t off, size_t len,
                  const uint8_t **out, size_t *out_len)
{
	return file_read(m, n, fd, off, len, true, out, out_len);
}

ssize_t mfs_vpread(void *ctx, void *buf, size_t len, uint64_t off)
{
	struct mfs_vctx *v = ctx;
	size_t done = 0;

	while (done < len) {
		const uint8_t *p;
		size_t got;
		int ret = file_read(v->m, v->n, v->fd, off + done, len - done, false, &p, &got);

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
	mfs_close_backing(m, v.fd);
	return ret;
}
