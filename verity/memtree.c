// SPDX-License-Identifier: Apache-2.0
/*
 * memtree.c - a hash-block source holding a whole tree in memory, with an
 * atomic bitmap of verified blocks. Serves the CLI and tests; the mount uses
 * cache/'s bounded source instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "verity.h"
#include "verity_internal.h"

struct mv_mem_tree {
	struct mv_tree_geometry geo;
	size_t block_size;
	uint8_t *blocks;            /* geo.tree_blocks * block_size */
	_Atomic uint64_t *verified; /* one bit per tree block */
	_Atomic uint64_t checks;    /* hash blocks marked verified */
};

static uint64_t block_pos(const struct mv_mem_tree *mt, unsigned level, uint64_t index)
{
	return mt->geo.level_start[level] + index;
}

static int mem_get(void *ctx, unsigned level, uint64_t index, struct mv_hblock *out)
{
	struct mv_mem_tree *mt = ctx;
	uint64_t pos;

	if (level >= mt->geo.num_levels || index >= mt->geo.level_blocks[level])
		return -EINVAL;
	pos = block_pos(mt, level, index);
	out->data = mt->blocks + pos * mt->block_size;
	out->verified = atomic_load_explicit(&mt->verified[pos / 64], memory_order_acquire) &
	                (1ULL << (pos % 64));
	out->priv = (void *)(uintptr_t)pos;
	return 0;
}

static void mem_put(void *ctx, struct mv_hblock *hb)
{
}

static void mem_mark_verified(void *ctx, struct mv_hblock *hb)
{
	struct mv_mem_tree *mt = ctx;
	uint64_t pos = (uintptr_t)hb->priv;

	atomic_fetch_or_explicit(&mt->verified[pos / 64], 1ULL << (pos % 64), memory_order_release);
	atomic_fetch_add_explicit(&mt->checks, 1, memory_order_relaxed);
}

const struct mv_hblock_ops mv_mem_tree_ops = {
    .get = mem_get,
    .put = mem_put,
    .mark_verified = mem_mark_verified,
};

static int mem_tree_alloc(const struct mv_tree_params *p, struct mv_mem_tree **out)
{
	struct mv_mem_tree *mt = calloc(1, sizeof(*mt));
	int ret;

	if (!mt)
		return -ENOMEM;
	ret = mv_tree_geometry(p, &mt->geo);
	if (ret)
		goto fail;
	ret = -EFBIG;
	if (mt->geo.tree_blocks > SIZE_MAX / p->block_size)
		goto fail;
	ret = -ENOMEM;
	mt->block_size = p->block_size;
	mt->blocks = malloc(mt->geo.tree_blocks * p->block_size + 1);
	mt->verified = calloc(mt->geo.tree_blocks / 64 + 1, sizeof(*mt->verified));
	if (!mt->blocks || !mt->verified)
		goto fail;
	*out = mt;
	return 0;
fail:
	mv_mem_tree_free(mt);
	return ret;
}

void mv_mem_tree_free(struct mv_mem_tree *mt)
{
	if (!mt)
		return;
	free(mt->blocks);
	free((void *)mt->verified);
	free(mt);
}

uint64_t mv_mem_tree_hash_checks(const struct mv_mem_tree *mt)
{
	return atomic_load(&((struct mv_mem_tree *)mt)->checks);
}

static int copy_block(void *ctx, unsigned level, uint64_t index, const void *block, size_t bs)
{
	struct mv_mem_tree *mt = ctx;

	memcpy(mt->blocks + block_pos(mt, level, index) * bs, block, bs);
	return 0;
}

int mv_mem_tree_build(const struct mv_tree_params *p, int data_fd, struct mv_mem_tree **out,
                      struct mv_measurement *m)
{
	struct mv_mem_tree *mt;
	int ret = mem_tree_alloc(p, &mt);

	if (ret)
		return ret;
	ret = mv_measure_fd(data_fd, p, copy_block, mt, m);
	if (ret) {
		mv_mem_tree_free(mt);
		return ret;
	}
	*out = mt;
	return 0;
}

int mv_mem_tree_load(const char *tree_path, const struct mv_tree *t, struct mv_mem_tree **out,
                     struct mv_err *err)
{
	struct mv_mem_tree *mt = NULL;
	struct mv_tree_header h;
	struct mv_err herr = {0};
	uint8_t *hdr = malloc(MV_TREE_HEADER_SIZE);
	struct stat st;
	int fd, ret;

	*out = NULL;
	fd = open(tree_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		free(hdr);
		return mv_err_set(err, -errno, "%s: cannot open: %s", tree_path, strerror(errno));
	}
	ret = !hdr ? -ENOMEM : fstat(fd, &st) < 0 ? -errno : 0;
	if (!ret)
		ret = mv_pread_exact(fd, hdr, MV_TREE_HEADER_SIZE, 0);
	if (ret) {
		mv_err_set(err, ret == -EIO ? -EBADMSG : ret, "%s: cannot read header: %s",
		           tree_path, ret == -EIO ? "truncated" : strerror(-ret));
		ret = ret == -EIO ? -EBADMSG : ret;
		goto out;
	}
	ret = mv_tree_header_decode(hdr, MV_TREE_HEADER_SIZE, (uint64_t)st.st_size, &h, &herr);
	if (ret) {
		mv_err_set(err, ret, "%s: %s", tree_path, herr.msg);
		goto out;
	}
	if (!mv_params_equal(&h.params, &t->params)) {
		ret = mv_err_set(err, -EBADMSG, "%s: tree parameters differ from the signed ones",
		                 tree_path);
		goto out;
	}
	ret = mem_tree_alloc(&t->params, &mt);
	if (!ret)
		ret = mv_pread_exact(fd, mt->blocks, mt->geo.tree_blocks * mt->block_size,
		                     h.tree_offset);
	if (ret) {
		mv_err_set(err, ret, "%s: cannot read tree: %s", tree_path, strerror(-ret));
		goto out;
	}
	*out = mt;
	mt = NULL;
out:
	mv_mem_tree_free(mt);
	free(hdr);
	close(fd);
	return ret;
}
