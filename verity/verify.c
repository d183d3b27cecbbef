// SPDX-License-Identifier: Apache-2.0
/*
 * verify.c - checking data blocks against a trusted Merkle tree.
 *
 * This is the kernel's fs/verity/verify.c scheme: hash the data block, then
 * walk up the tree. At each level the wanted hash is compared with its slot
 * in the hash block; if that hash block was verified before, the walk stops
 * there. Otherwise the block itself is hashed and the walk continues with
 * that hash, up to the signed root. Only once the whole chain checks out are
 * the blocks on it marked verified, so a block is never marked on the
 * strength of an unverified parent.
 */
#include <errno.h>
#include <string.h>

#include "verity.h"
#include "verity_internal.h"

int mv_tree_init(struct mv_tree *t, const struct mv_tree_params *p, const uint8_t *root)
{
	int ret;

	memset(t, 0, sizeof(*t));
	t->params = *p;
	ret = mv_tree_geometry(p, &t->geo);
	if (ret)
		return ret;
	memcpy(t->root, root, t->geo.digest_size);
	return 0;
}

bool mv_tree_params_equal(const struct mv_tree_params *a, const struct mv_tree_params *b)
{
	return mv_params_equal(a, b);
}

int mv_range_to_blocks(const struct mv_tree *t, uint64_t off, uint64_t len, uint64_t *aligned_off,
                       uint64_t *aligned_len)
{
	uint64_t size = t->params.data_size, end, mask = t->params.block_size - 1;

	if (off > size)
		return -EINVAL;
	if (len > size - off)
		len = size - off;
	end = off + len;
	*aligned_off = off & ~mask;
	/* Round the end up to a block, but never past the end of the file. */
	end = (end & mask) ? (end | mask) + 1 : end;
	*aligned_len = (end > size ? size : end) - *aligned_off;
	return 0;
}

static void record_failure(struct mv_verify_failure *fail, int level, uint64_t block,
                           const uint8_t *expected, const uint8_t *actual, size_t ds)
{
	if (!fail)
		return;
	fail->level = level;
	fail->block = block;
	memcpy(fail->expected, expected, ds);
	memcpy(fail->actual, actual, ds);
}

/*
 * Verifies one data block whose hash is @hash. Hash blocks lent on the way
 * up are held in @held until the chain reaches a verified block or the root.
 */
static int verify_one(const struct mv_tree *t, const struct mv_hblock_ops *ops, void *ctx,
                      struct mv_hasher *h, uint64_t block, uint8_t *hash,
                      struct mv_verify_failure *fail)
{
	const struct mv_tree_geometry *g = &t->geo;
	struct mv_hblock held[MV_MAX_LEVELS];
	unsigned ds = g->digest_size, n_held = 0, level;
	uint64_t index = block;
	int ret = 0, fail_level = -1;

	for (level = 0; level < g->num_levels; level++) {
		struct mv_hblock *hb = &held[n_held];
		uint64_t hindex = index / g->hashes_per_block;
		const uint8_t *slot;

		ret = ops->get(ctx, level, hindex, hb);
		if (ret)
			goto out;
		n_held++;
		slot = hb->data + (index % g->hashes_per_block) * ds;
		if (memcmp(slot, hash, ds) != 0) {
			record_failure(fail, fail_level, fail_level < 0 ? block : index, slot, hash,
			               ds);
			ret = -EBADMSG;
			goto out;
		}
		if (hb->verified) {
			n_held--; /* already trusted: nothing to mark */
			ops->put(ctx, hb);
			goto mark;
		}
		ret = mv_hash_block(h, &t->params, hb->data, t->params.block_size, hash);
		if (ret)
			goto out;
		fail_level = (int)level;
		index = hindex;
	}
	if (memcmp(t->root, hash, ds) != 0) {
		record_failure(fail, fail_level, fail_level < 0 ? block : index, t->root, hash, ds);
		ret = -EBADMSG;
		goto out;
	}
mark:
	for (unsigned i = n_held; i-- > 0;)
		ops->mark_verified(ctx, &held[i]);
out:
	for (unsigned i = 0; i < n_held; i++)
		ops->put(ctx, &held[i]);
	return ret;
}

int mv_verify_blocks(const struct mv_tree *t, const struct mv_hblock_ops *ops, void *ctx,
                     uint64_t first_block, const uint8_t *data, size_t len,
                     struct mv_verify_failure *fail)
{
	const struct mv_tree_geometry *g = &t->geo;
	size_t bs = t->params.block_size;
	uint64_t nblocks = len / bs + (len % bs != 0);
	struct mv_hasher *h;
	uint8_t hash[MV_MAX_DIGEST_SIZE];
	int ret;

	/* Every block must be whole, except the file's last one. */
	if (first_block > g->data_blocks || nblocks > g->data_blocks - first_block)
		return -EINVAL;
	if (len % bs && (first_block + nblocks != g->data_blocks ||
	                 (first_block + nblocks - 1) * bs + len % bs != t->params.data_size))
		return -EINVAL;
	h = mv_hasher_thread(t->params.alg);
	if (!h)
		return -ENOMEM;
	for (uint64_t i = 0; i < nblocks; i++) {
		size_t n = len - i * bs < bs ? len - i * bs : bs;

		ret = mv_hash_block(h, &t->params, data + i * bs, n, hash);
		if (ret)
			return ret;
		ret = verify_one(t, ops, ctx, h, first_block + i, hash, fail);
		if (ret)
			return ret;
	}
	return 0;
}
