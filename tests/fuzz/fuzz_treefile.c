// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_treefile.c - libFuzzer target for the tree-file header parser and,
 * when a header parses, for verification against the tree that follows it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "verity.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_tree {
	const uint8_t *blocks;
	size_t len;
	const struct mv_tree_geometry *geo;
	uint32_t bs;
};

static int ft_get(void *ctx, unsigned level, uint64_t index, struct mv_hblock *out)
{
	struct fuzz_tree *ft = ctx;
	uint64_t pos = ft->geo->level_start[level] + index;

	if (pos >= ft->len / ft->bs)
		return -5;
	out->data = ft->blocks + pos * ft->bs;
	out->verified = false;
	return 0;
}

static void ft_put(void *ctx, struct mv_hblock *hb)
{
}

static void ft_mark(void *ctx, struct mv_hblock *hb)
{
}

static const struct mv_hblock_ops ft_ops = {ft_get, ft_put, ft_mark};

/* Parses a header and, if it parses, verifies one data block of zeros. */
static void check(const uint8_t *data, size_t size)
{
	static uint8_t block[1 << MV_MAX_LOG_BLOCK];
	struct mv_tree_header h;
	struct mv_err err = {0};
	struct mv_tree t;
	struct fuzz_tree ft;

	if (mv_tree_header_decode(data, size, size, &h, &err))
		return;
	if (mv_tree_init(&t, &h.params, h.root))
		return;
	/* The header promised the file holds the tree: walk it. */
	ft = (struct fuzz_tree){data + h.tree_offset, size - h.tree_offset, &t.geo,
	                        h.params.block_size};
	if (t.geo.data_blocks)
		mv_verify_blocks(&t, &ft_ops, &ft, 0, block,
		                 t.geo.data_blocks == 1 ? h.params.data_size : h.params.block_size,
		                 NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;

	check(data, size);
	/*
	 * Again with a valid header checksum, so the fuzzer also reaches the
	 * field checks behind it instead of stopping at the checksum.
	 */
	if (size >= MV_TREE_HEADER_SIZE) {
		copy = malloc(size);
		memcpy(copy, data, size);
		mv_sha256(copy, 264, copy + 264);
		check(copy, size);
		free(copy);
	}
	return 0;
}
