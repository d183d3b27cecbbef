// SPDX-License-Identifier: Apache-2.0
/*
 * test_cache.c - unit tests of the hash-block cache (cache/hblock_cache.c):
 * lending, hits and misses, the verified flag, the memory bound, eviction
 * of lent blocks, dropping a tree, bad indexes, short tree files and
 * concurrent use.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "tap.h"

#define BS  1024u
#define OFF 4096u

/* A fake 3-level geometry: 1 + 4 + 64 blocks, stored top level first. */
static void fake_geo(struct mv_tree_geometry *g)
{
	memset(g, 0, sizeof(*g));
	g->num_levels = 3;
	g->log_block_size = 10;
	g->level_blocks[0] = 64;
	g->level_blocks[1] = 4;
	g->level_blocks[2] = 1;
	g->level_start[2] = 0;
	g->level_start[1] = 1;
	g->level_start[0] = 5;
	g->tree_blocks = 69;
}

/* The byte pattern of tree block @blk (absolute index from the tree start). */
static uint8_t pattern(uint64_t blk, size_t i)
{
	return (uint8_t)(blk * 31 + i * 7 + 1);
}

/* Writes a tree file with OFF bytes of header then 69 patterned blocks. */
static int make_tree_file(uint64_t blocks)
{
	char path[] = "/tmp/test_cache.XXXXXX";
	int fd = mkstemp(path);
	uint8_t buf[BS];

	if (fd < 0)
		return -1;
	unlink(path);
	memset(buf, 0xee, sizeof(buf));
	for (unsigned i = 0; i < OFF / BS; i++)
		if (write(fd, buf, BS) != BS)
			return -1;
	for (uint64_t b = 0; b < blocks; b++) {
		for (size_t i = 0; i < BS; i++)
			buf[i] = pattern(b, i);
		if (write(fd, buf, BS) != BS)
			return -1;
	}
	return fd;
}

static bool block_ok(const uint8_t *data, uint64_t blk)
{
	for (size_t i = 0; i < BS; i++)
		if (data[i] != pattern(blk, i))
			return false;
	return true;
}

static void test_get_hit_miss_verified(void)
{
	struct mc_hblock_cache *c = NULL;
	struct mc_hblock_src src;
	struct mv_tree_geometry g;
	struct mc_hblock_stats st;
	struct mv_hblock hb;
	int fd = make_tree_file(69);

	fake_geo(&g);
	CHECK(fd >= 0);
	CHECK_EQ_INT(mc_hblock_cache_new(0, &c), 0);
	CHECK_EQ_INT(mc_hblock_src_init(&src, c, fd, OFF, &g), 0);

	/* level 0 index 3 is absolute block 5 + 3 */
	CHECK_EQ_INT(mc_hblock_ops.get(&src, 0, 3, &hb), 0);
	CHECK(block_ok(hb.data, 8));
	CHECK(!hb.verified);
	mc_hblock_ops.mark_verified(&src, &hb);
	mc_hblock_ops.put(&src, &hb);

	CHECK_EQ_INT(mc_hblock_ops.get(&src, 0, 3, &hb), 0);
	CHECK(hb.verified);
	CHECK(block_ok(hb.data, 8));
	mc_hblock_ops.put(&src, &hb);

	CHECK_EQ_INT(mc_hblock_ops.get(&src, 2, 0, &hb), 0);
	CHECK(block_ok(hb.data, 0));
	CHECK(!hb.verified);
	mc_hblock_ops.put(&src, &hb);
	CHECK_EQ_INT(mc_hblock_ops.get(&src, 1, 3, &hb), 0);
	CHECK(block_ok(hb.data, 4));
	mc_hblock_ops.put(&src, &hb);

	mc_hblock_cache_stats(c, &st);
	CHECK_EQ_INT(st.hits, 1);
	CHECK_EQ_INT(st.misses, 3);
	CHECK_EQ_INT(st.entries, 3);

	/* Out of range: level, index. */
	CHECK_EQ_INT(mc_hblock_ops.get(&src, 3, 0, &hb), -EINVAL);
	CHECK_EQ_INT(mc_hblock_ops.get(&src, 0, 64, &hb), -EINVAL);
	CHECK_EQ_INT(mc_hblock_ops.get(&src, 2, 1, &hb), -EINVAL);
	CHECK_EQ_INT(mc_hblock_ops.get(&src, 0, UINT64_MAX, &hb), -EINVAL);

	mc_hblock_cache_free(c);
	close(fd);
}

static void test_short_tree_file(void)
{
	struct mc_hblock_cache *c = NULL;
	struct mc_hblock_src src;
	struct mv_tree_geometry g;
	struct mv_hblock hb;
	int fd = make_tree_file(40); /* level 0 is cut short */

	fake_geo(&g);
	CHECK_EQ_INT(mc_hblock_cache_new(0, &c), 0);
	CHECK_EQ_INT(mc_hblock_src_init(&src, c, fd, OFF, &g), 0);
	CHECK_EQ_INT(mc_hblock_ops.get(&src, 0, 30, &hb), 0);
	mc_hblock_ops.put(&src, &hb);
	CHECK_EQ_INT(mc_hblock_ops.get(&src, 0, 40, &hb), -EIO);
	CHECK_EQ_INT(mc_hblock_ops.get(&src, 0, 63, &hb), -EIO);
	mc_hblock_cache_free(c);
	close(fd);
}

static void test_bound_and_eviction(void)
{
	struct mc_hblock_cache *c = NULL;
	struct mc_hblock_src src;
	struct mv_tree_geometry g;
	struct mc_hblock_stats st;
	struct mv_hblock hb, held;
	int fd = make_tree_file(69);

	fake_geo(&g);
	/* 16 shards of ~2 entries each: far fewer than the 69 blocks. */
	CHECK_EQ_INT(mc_hblock_cache_new(16 * 2 * (BS + 128), &c), 0);
	CHECK_EQ_INT(mc_hblock_src_init(&src, c, fd, OFF, &g), 0);

	/* Hold one block across heavy eviction: its bytes must stay intact. */
	CHECK_EQ_INT(mc_hblock_ops.get(&src, 0, 0, &held), 0);
	mc_hblock_ops.mark_verified(&src, &held);
	for (int round = 0; round < 3; round++) {
		for (uint64_t i = 0; i < 64; i++) {
			CHECK_EQ_INT(mc_hblock_ops.get(&src, 0, i, &hb), 0);
			CHECK(block_ok(hb.data, 5 + i));
			mc_hblock_ops.mark_verified(&src, &hb);
			mc_hblock_ops.put(&src, &hb);
		}
	}
	CHECK(block_ok(held.data, 5));
	mc_hblock_ops.put(&src, &held);

	mc_hblock_cache_stats(c, &st);
	CHECK(st.bytes <= st.max_bytes);
	CHECK(st.evictions > 0);
	CHECK(st.entries < 64);

	/* Evicted blocks forgot they were verified. */
	int unverified = 0;
	for (uint64_t i = 0; i < 64; i++) {
		CHECK_EQ_INT(mc_hblock_ops.get(&src, 0, i, &hb), 0);
		unverified += !hb.verified;
		mc_hblock_ops.put(&src, &hb);
	}
	CHECK(unverified > 0);
	mc_hblock_cache_free(c);
	close(fd);
}

static void test_drop_tree_and_ids(void)
{
	struct mc_hblock_cache *c = NULL;
	struct mc_hblock_src a, b;
	struct mv_tree_geometry g;
	struct mc_hblock_stats st;
	struct mv_hblock hb;
	int fd = make_tree_file(69);

	fake_geo(&g);
	CHECK_EQ_INT(mc_hblock_cache_new(0, &c), 0);
	CHECK_EQ_INT(mc_hblock_src_init(&a, c, fd, OFF, &g), 0);
	CHECK_EQ_INT(mc_hblock_src_init(&b, c, fd, OFF, &g), 0);
	CHECK(a.tree_id != b.tree_id);

	CHECK_EQ_INT(mc_hblock_ops.get(&a, 1, 1, &hb), 0);
	mc_hblock_ops.mark_verified(&a, &hb);
	mc_hblock_ops.put(&a, &hb);
	/* Same block of another tree id: separate entry, not verified. */
	CHECK_EQ_INT(mc_hblock_ops.get(&b, 1, 1, &hb), 0);
	CHECK(!hb.verified);
	mc_hblock_ops.put(&b, &hb);

	mc_hblock_cache_drop_tree(c, a.tree_id);
	mc_hblock_cache_stats(c, &st);
	CHECK_EQ_INT(st.entries, 1);
	CHECK_EQ_INT(mc_hblock_ops.get(&a, 1, 1, &hb), 0);
	CHECK(!hb.verified);
	/* Dropping a tree while a block is lent: freed on put, no crash. */
	mc_hblock_cache_drop_tree(c, a.tree_id);
	CHECK(block_ok(hb.data, 2));
	mc_hblock_ops.put(&a, &hb);
	mc_hblock_cache_free(c);
	close(fd);
}

struct worker_arg {
	struct mc_hblock_src *src;
	unsigned seed;
	int errors;
};

static void *worker(void *p)
{
	struct worker_arg *w = p;
	struct mv_hblock hb;

	for (int i = 0; i < 20000; i++) {
		uint64_t idx = rand_r(&w->seed) % 64;

		if (mc_hblock_ops.get(w->src, 0, idx, &hb) != 0) {
			w->errors++;
			continue;
		}
		if (!block_ok(hb.data, 5 + idx))
			w->errors++;
		if (i % 3 == 0)
			mc_hblock_ops.mark_verified(w->src, &hb);
		mc_hblock_ops.put(w->src, &hb);
	}
	return NULL;
}

static void test_concurrent(void)
{
	struct mc_hblock_cache *c = NULL;
	struct mc_hblock_src src;
	struct mv_tree_geometry g;
	struct mc_hblock_stats st;
	pthread_t th[8];
	struct worker_arg args[8];
	int fd = make_tree_file(69), errors = 0;

	fake_geo(&g);
	/* Small enough to evict constantly. */
	CHECK_EQ_INT(mc_hblock_cache_new(16 * 3 * (BS + 128), &c), 0);
	CHECK_EQ_INT(mc_hblock_src_init(&src, c, fd, OFF, &g), 0);
	for (int i = 0; i < 8; i++) {
		args[i] = (struct worker_arg){.src = &src, .seed = (unsigned)i * 77 + 1};
		pthread_create(&th[i], NULL, worker, &args[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		errors += args[i].errors;
	}
	CHECK_EQ_INT(errors, 0);
	mc_hblock_cache_stats(c, &st);
	CHECK_EQ_INT(st.hits + st.misses, 8 * 20000);
	CHECK(st.bytes <= st.max_bytes);
	mc_hblock_cache_free(c);
	close(fd);
}

/* Builds a real tree file for random data; returns the data fd and tree fd. */
static int real_tree(size_t size, uint32_t bs, struct mv_tree *t, int *data_fd, int *tree_fd,
                     uint64_t *tree_off)
{
	char dpath[] = "/tmp/test_cache_data.XXXXXX", tpath[64];
	struct mv_tree_params p = {.alg = MV_HASH_SHA256, .block_size = bs, .data_size = size};
	struct mv_measurement m;
	struct mv_tree_header h;
	uint8_t *buf = malloc(size ? size : 1), hdr[MV_TREE_HEADER_SIZE];
	unsigned seed = 7;
	int ret = -1;

	*data_fd = mkstemp(dpath);
	snprintf(tpath, sizeof(tpath), "%s.tree", dpath);
	for (size_t i = 0; i < size; i++)
		buf[i] = (uint8_t)rand_r(&seed);
	if (*data_fd < 0 || write(*data_fd, buf, size) != (ssize_t)size)
		goto out;
	if (mv_tree_file_write(*data_fd, &p, tpath, &m, NULL) != 0)
		goto out;
	*tree_fd = open(tpath, O_RDWR);
	if (*tree_fd < 0 || pread(*tree_fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) ||
	    mv_tree_header_decode(hdr, sizeof(hdr), 0, &h, NULL) != 0)
		goto out;
	*tree_off = h.tree_offset;
	ret = mv_tree_init(t, &p, m.root);
out:
	unlink(dpath);
	unlink(tpath);
	free(buf);
	return ret;
}

static int verify_range(struct mc_hblock_src *src, const struct mv_tree *t, int data_fd,
                        uint64_t first, size_t nblocks, struct mv_verify_failure *fail)
{
	size_t bs = t->params.block_size, len = nblocks * bs;
	uint8_t *buf = malloc(len);
	ssize_t n = pread(data_fd, buf, len, (off_t)(first * bs));
	int ret =
	    n <= 0 ? -EIO : mv_verify_blocks(t, &mc_hblock_ops, src, first, buf, (size_t)n, fail);

	free(buf);
	return ret;
}

static void test_with_verifier(void)
{
	struct mc_hblock_cache *c = NULL;
	struct mc_hblock_src src;
	struct mc_hblock_stats st1, st2;
	struct mv_verify_failure fail;
	struct mv_tree t;
	uint64_t off = 0;
	int dfd = -1, tfd = -1;
	uint8_t b;

	CHECK_EQ_INT(real_tree(3 << 20, 4096, &t, &dfd, &tfd, &off), 0);
	CHECK_EQ_INT(mc_hblock_cache_new(0, &c), 0);
	CHECK_EQ_INT(mc_hblock_src_init(&src, c, tfd, off, &t.geo), 0);
	for (uint64_t blk = 0; blk < 768; blk += 16)
		CHECK_EQ_INT(verify_range(&src, &t, dfd, blk, 16, &fail), 0);
	mc_hblock_cache_stats(c, &st1);
	/* Second pass: every hash block is cached and verified. */
	for (uint64_t blk = 0; blk < 768; blk += 16)
		CHECK_EQ_INT(verify_range(&src, &t, dfd, blk, 16, &fail), 0);
	mc_hblock_cache_stats(c, &st2);
	CHECK_EQ_INT(st2.misses, st1.misses);
	CHECK(st2.hits > st1.hits);

	/* A flipped data byte fails its block, at level -1. */
	CHECK(pread(dfd, &b, 1, 5 * 4096 + 9) == 1);
	b ^= 1;
	CHECK(pwrite(dfd, &b, 1, 5 * 4096 + 9) == 1);
	CHECK_EQ_INT(verify_range(&src, &t, dfd, 4, 4, &fail), -EBADMSG);
	CHECK_EQ_INT(fail.block, 5);
	CHECK_EQ_INT(fail.level, -1);
	b ^= 1;
	CHECK(pwrite(dfd, &b, 1, 5 * 4096 + 9) == 1);
	CHECK_EQ_INT(verify_range(&src, &t, dfd, 4, 4, &fail), 0);
	mc_hblock_cache_free(c);

	/* A damaged level-0 block in a fresh cache fails against its parent. */
	CHECK_EQ_INT(mc_hblock_cache_new(0, &c), 0);
	CHECK_EQ_INT(mc_hblock_src_init(&src, c, tfd, off, &t.geo), 0);
	CHECK(pread(tfd, &b, 1, (off_t)(off + t.geo.level_start[0] * 4096 + 3)) == 1);
	b ^= 1;
	CHECK(pwrite(tfd, &b, 1, (off_t)(off + t.geo.level_start[0] * 4096 + 3)) == 1);
	/*
	 * The byte may sit in a data block's hash slot, which the verifier reports
	 * as a data mismatch (level -1): either way the read must fail.
	 */
	CHECK_EQ_INT(verify_range(&src, &t, dfd, 0, 4, &fail), -EBADMSG);
	/* Blocks under other level-0 blocks still verify. */
	CHECK_EQ_INT(verify_range(&src, &t, dfd, 700, 4, &fail), 0);
	mc_hblock_cache_free(c);

	/* A tiny cache still verifies correctly (everything re-read). */
	CHECK_EQ_INT(mc_hblock_cache_new(16 * 1024, &c), 0);
	CHECK_EQ_INT(mc_hblock_src_init(&src, c, tfd, off, &t.geo), 0);
	CHECK_EQ_INT(verify_range(&src, &t, dfd, 500, 32, &fail), 0);
	mc_hblock_cache_stats(c, &st1);
	CHECK(st1.bytes <= st1.max_bytes);
	mc_hblock_cache_free(c);
	close(dfd);
	close(tfd);
}

int main(void)
{
	TAP_RUN(test_get_hit_miss_verified);
	TAP_RUN(test_short_tree_file);
	TAP_RUN(test_bound_and_eviction);
	TAP_RUN(test_drop_tree_and_ids);
	TAP_RUN(test_concurrent);
	TAP_RUN(test_with_verifier);
	TAP_DONE();
}
