/* SPDX-License-Identifier: Apache-2.0 */
/*
 * verity_internal.h - helpers shared by the Merkle-tree files of libverity
 * (hash_algs.c, merkle.c, treefile.c, verify.c, memtree.c, model_verify.c)
 * and by zpack.c (libvpack). Not part of the public API.
 */
#ifndef MODELFS_VERITY_INTERNAL_H
#define MODELFS_VERITY_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>

#include "verity.h"

/* 64 KiB of zeros: padding for short blocks and salts. */
extern const uint8_t mv_zero_block[1u << MV_MAX_LOG_BLOCK];

/* The EVP objects inside a hasher, for multi-part hashing. */
EVP_MD_CTX *mv_hasher_ctx(struct mv_hasher *h);
const EVP_MD *mv_hasher_md(struct mv_hasher *h);

/*
 * mv_hash_block() - fs-verity block hash: H(padded_salt || data || zeros)
 * @h: in: hasher for p->alg
 * @p: in: params (salt, block size)
 * @data, @len: in: block contents; len < block_size is zero-padded
 * @out: out: digest
 */
int mv_hash_block(struct mv_hasher *h, const struct mv_tree_params *p, const void *data, size_t len,
                  uint8_t *out);

static inline void mv_put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t mv_get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static inline void mv_put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t mv_get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* True if both param sets describe the same tree. */
static inline int mv_params_equal(const struct mv_tree_params *a, const struct mv_tree_params *b)
{
	return a->alg == b->alg && a->block_size == b->block_size && a->salt_size == b->salt_size &&
	       a->data_size == b->data_size && memcmp(a->salt, b->salt, a->salt_size) == 0;
}

#endif /* MODELFS_VERITY_INTERNAL_H */
