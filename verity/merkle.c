// SPDX-License-Identifier: Apache-2.0
/*
 * merkle.c - fs-verity Merkle tree geometry, streaming tree construction and
 * the file digest.
 *
 * The algorithm is fs-verity's (Documentation/filesystems/fsverity.rst):
 * data is split into blocks, the last one zero-padded; each block's hash is
 * H(padded_salt || block); hashes are packed into blocks of the same size,
 * each level's last block zero-padded; levels repeat until one block remains
 * and the root hash is that block's hash. A file of one block has no tree
 * levels at all: its root is the hash of its only data block. An empty file
 * has an all-zero root. The file digest is H(struct fsverity_descriptor).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "verity.h"
#include "verity_internal.h"

const uint8_t mv_zero_block[1u << MV_MAX_LOG_BLOCK];

int mv_tree_geometry(const struct mv_tree_params *p, struct mv_tree_geometry *g)
{
	uint64_t blocks;
	unsigned log_bs = 0;

	memset(g, 0, sizeof(*g));
	g->digest_size = (unsigned)mv_hash_digest_size(p->alg);
	if (!g->digest_size || p->salt_size > MV_MAX_SALT_SIZE)
		return -EINVAL;
	while (log_bs <= MV_MAX_LOG_BLOCK && (1u << log_bs) != p->block_size)
		log_bs++;
	if (log_bs < MV_MIN_LOG_BLOCK || log_bs > MV_MAX_LOG_BLOCK)
		return -EINVAL;
	g->log_block_size = log_bs;
	g->hashes_per_block = p->block_size / g->digest_size;

	/* Rounding up must not overflow: data_size + block_size - 1. */
	blocks = (p->data_size >> log_bs) + ((p->data_size & (p->block_size - 1)) != 0);
	g->data_blocks = blocks;
	while (blocks > 1) {
		if (g->num_levels >= MV_MAX_LEVELS)
			return -EFBIG;
		blocks = blocks / g->hashes_per_block + (blocks % g->hashes_per_block != 0);
		g->level_blocks[g->num_levels++] = blocks;
	}
	/* Levels are stored top level first, as fs-verity lays them out. */
	for (int i = (int)g->num_levels - 1; i >= 0; i--) {
		g->level_start[i] = g->tree_blocks;
		g->tree_blocks += g->level_blocks[i];
	}
	if (g->tree_blocks > (UINT64_MAX >> log_bs))
		return -EFBIG;
	return 0;
}

int mv_hash_block(struct mv_hasher *h, const struct mv_tree_params *p, const void *data, size_t len,
                  uint8_t *out)
{
	EVP_MD_CTX *ctx = mv_hasher_ctx(h);
	size_t salt_block = mv_hash_block_size(p->alg);

	if (len > p->block_size)
		return -EINVAL;
	if (!EVP_DigestInit_ex2(ctx, mv_hasher_md(h), NULL))
		return -EIO;
	if (p->salt_size && (!EVP_DigestUpdate(ctx, p->salt, p->salt_size) ||
	                     !EVP_DigestUpdate(ctx, mv_zero_block, salt_block - p->salt_size)))
		return -EIO;
	if (!EVP_DigestUpdate(ctx, data, len) ||
	    (len < p->block_size && !EVP_DigestUpdate(ctx, mv_zero_block, p->block_size - len)) ||
	    !EVP_DigestFinal_ex(ctx, out, NULL))
		return -EIO;
	return 0;
}

/*
 * struct fsverity_descriptor, little-endian, 256 bytes:
 *   u8 version, hash_algorithm, log_blocksize, salt_size; le32 sig_size (0);
 *   le64 data_size; u8 root_hash[64]; u8 salt[32]; u8 reserved[144].
 */
void mv_descriptor_digest(const struct mv_tree_params *p, const uint8_t *root, uint8_t *digest_out)
{
	uint8_t desc[256] = {0};
	struct mv_tree_geometry g;
	const char *name = mv_hash_name(p->alg);

	mv_tree_geometry(p, &g);
	desc[0] = 1;
	desc[1] = (uint8_t)p->alg;
	desc[2] = (uint8_t)g.log_block_size;
	desc[3] = p->salt_size;
	mv_put_le64(desc + 8, p->data_size);
	memcpy(desc + 16, root, mv_hash_digest_size(p->alg));
	memcpy(desc + 80, p->salt, p->salt_size);
	EVP_Digest(desc, sizeof(desc), digest_out, NULL, EVP_get_digestbyname(name), NULL);
}

/* One partially filled block per level; level num_levels is the root. */
struct mv_tree_builder {
	struct mv_tree_params params;
	struct mv_tree_geometry geo;
	struct mv_hasher *hasher;
	mv_tree_sink_fn sink;
	void *sink_ctx;
	uint64_t data_seen;
	size_t pending_len; /* bytes of a partial data block in pending */
	uint8_t *pending;
	uint8_t *level_buf[MV_MAX_LEVELS];
	size_t level_fill[MV_MAX_LEVELS];    /* bytes used in level_buf */
	uint64_t level_index[MV_MAX_LEVELS]; /* blocks emitted per level */
	uint8_t root[MV_MAX_DIGEST_SIZE];
};

int mv_tree_builder_new(const struct mv_tree_params *p, mv_tree_sink_fn sink, void *sink_ctx,
                        struct mv_tree_builder **out)
{
	struct mv_tree_builder *b;
	int ret;

	*out = NULL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->params = *p;
	ret = mv_tree_geometry(p, &b->geo);
	if (ret)
		goto fail;
	ret = -ENOMEM;
	b->hasher = mv_hasher_new(p->alg);
	b->pending = malloc(p->block_size);
	if (!b->hasher || !b->pending)
		goto fail;
	for (unsigned i = 0; i < b->geo.num_levels; i++) {
		b->level_buf[i] = calloc(1, p->block_size);
		if (!b->level_buf[i])
			goto fail;
	}
	b->sink = sink;
	b->sink_ctx = sink_ctx;
	*out = b;
	return 0;
fail:
	mv_tree_builder_free(b);
	return ret;
}

void mv_tree_builder_free(struct mv_tree_builder *b)
{
	if (!b)
		return;
	for (unsigned i = 0; i < MV_MAX_LEVELS; i++)
		free(b->level_buf[i]);
	free(b->pending);
	mv_hasher_free(b->hasher);
	free(b);
}

static int flush_level(struct mv_tree_builder *b, unsigned level, uint8_t *hash_out);

/*
 * Appends a hash to @level. A full block is emitted to the sink and its own
 * hash climbs to the next level; the hash that reaches level num_levels is
 * the root.
 */
static int push_hash(struct mv_tree_builder *b, unsigned level, const uint8_t *hash)
{
	unsigned ds = b->geo.digest_size;
	uint8_t up[MV_MAX_DIGEST_SIZE];
	int ret;

	if (level == b->geo.num_levels) {
		memcpy(b->root, hash, ds);
		return 0;
	}
	memcpy(b->level_buf[level] + b->level_fill[level], hash, ds);
	b->level_fill[level] += ds;
	if (b->level_fill[level] + ds <= b->params.block_size)
		return 0;
	ret = flush_level(b, level, up);
	return ret ? ret : push_hash(b, level + 1, up);
}

/* Emits @level's block (zero-padded) to the sink and hashes it into @hash_out. */
static int flush_level(struct mv_tree_builder *b, unsigned level, uint8_t *hash_out)
{
	size_t bs = b->params.block_size;
	int ret;

	/* Zero-pad: the tail of a level's last block, and digests not dividing bs. */
	memset(b->level_buf[level] + b->level_fill[level], 0, bs - b->level_fill[level]);
	if (b->sink) {
		ret = b->sink(b->sink_ctx, level, b->level_index[level], b->level_buf[level], bs);
		if (ret)
			return ret;
	}
	b->level_index[level]++;
	b->level_fill[level] = 0;
	return mv_hash_block(b->hasher, &b->params, b->level_buf[level], bs, hash_out);
}

static int hash_data_block(struct mv_tree_builder *b, const uint8_t *data, size_t len)
{
	uint8_t hash[MV_MAX_DIGEST_SIZE];
	int ret = mv_hash_block(b->hasher, &b->params, data, len, hash);

	return ret ? ret : push_hash(b, 0, hash);
}

int mv_tree_builder_update(struct mv_tree_builder *b, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t bs = b->params.block_size;
	int ret;

	if (len > b->params.data_size - b->data_seen)
		return -EFBIG;
	b->data_seen += len;
	if (b->pending_len) {
		size_t n = bs - b->pending_len < len ? bs - b->pending_len : len;

		memcpy(b->pending + b->pending_len, p, n);
		b->pending_len += n;
		p += n;
		len -= n;
		if (b->pending_len < bs)
			return 0;
		b->pending_len = 0;
		ret = hash_data_block(b, b->pending, bs);
		if (ret)
			return ret;
	}
	/* Whole blocks straight from the caller's buffer: no copy. */
	for (; len >= bs; p += bs, len -= bs) {
		ret = hash_data_block(b, p, bs);
		if (ret)
			return ret;
	}
	memcpy(b->pending, p, len);
	b->pending_len = len;
	return 0;
}

int mv_tree_builder_final(struct mv_tree_builder *b, struct mv_measurement *m)
{
	uint8_t hash[MV_MAX_DIGEST_SIZE];
	int ret;

	if (b->data_seen != b->params.data_size)
		return -EIO;
	memset(m, 0, sizeof(*m));
	m->params = b->params;
	if (b->params.data_size == 0)
		goto digest; /* the root of an empty file is all zeros */
	if (b->pending_len) {
		ret = hash_data_block(b, b->pending, b->pending_len);
		if (ret)
			return ret;
		b->pending_len = 0;
	}
	/* Partially filled blocks remain at each level; finish them bottom up. */
	for (unsigned level = 0; level < b->geo.num_levels; level++) {
		if (!b->level_fill[level])
			continue;
		ret = flush_level(b, level, hash);
		if (!ret)
			ret = push_hash(b, level + 1, hash);
		if (ret)
			return ret;
	}
	memcpy(m->root, b->root, b->geo.digest_size);
digest:
	mv_descriptor_digest(&m->params, m->root, m->digest);
	return 0;
}

#define MEASURE_BUF (1u << 20)

/* mv_pread_fn of a descriptor: @ctx points to the int fd. */
static ssize_t fd_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
	ssize_t n;

	do
		n = pread(*(int *)ctx, buf, len, (off_t)off);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

int mv_measure_fd(int fd, const struct mv_tree_params *p, mv_tree_sink_fn sink, void *sink_ctx,
                  struct mv_measurement *m)
{
	return mv_measure_pread(fd_pread, &fd, p, sink, sink_ctx, m);
}

int mv_measure_pread(mv_pread_fn rd, void *rd_ctx, const struct mv_tree_params *p,
                     mv_tree_sink_fn sink, void *sink_ctx, struct mv_measurement *m)
{
	struct mv_tree_builder *b = NULL;
	uint8_t *buf = NULL;
	uint64_t off = 0;
	int ret;

	ret = mv_tree_builder_new(p, sink, sink_ctx, &b);
	if (ret)
		return ret;
	buf = malloc(MEASURE_BUF);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	while (off < p->data_size) {
		size_t want = p->data_size - off < MEASURE_BUF ? p->data_size - off : MEASURE_BUF;
		ssize_t n = rd(rd_ctx, buf, want, off);

		if (n <= 0) {
			ret = n < 0 ? (int)n : -EIO; /* a short file: it changed under us */
			goto out;
		}
		ret = mv_tree_builder_update(b, buf, (size_t)n);
		if (ret)
			goto out;
		off += (uint64_t)n;
	}
	ret = mv_tree_builder_final(b, m);
out:
	free(buf);
	mv_tree_builder_free(b);
	return ret;
}
