// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_zpack.c - libFuzzer target for the zstd-packed file reader: the seek
 * table parser, the transform table (--tensor-transform), the bounded frame
 * decoder with the byte-plane inverse, and frame verification.
 *
 * The input is a whole packed file. The signed size a real caller would
 * pass is taken from the input's own table (so the fuzzer reaches the frame
 * reader) and, once more, from a size that disagrees with it. The input is
 * also run through the byte-plane split and join, which must be inverses.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "verity.h"

#define BS         1024u
#define MAX_VERIFY (1u << 20) /* build a tree only for small files */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* What the table claims: the sum of its decompressed sizes (0 if unreadable). */
static uint64_t claimed_size(const uint8_t *d, size_t size)
{
	uint64_t sum = 0, n, esz;

	if (size < 17)
		return 0;
	n = le32(d + size - 9);
	esz = d[size - 5] & 0x80 ? 12 : 8;
	if (n * esz + 17 > size)
		return 0;
	for (uint64_t i = 0; i < n; i++)
		sum += le32(d + size - 9 - (n - i) * esz + 4);
	return sum;
}

/* Reads and verifies every frame against a tree of zeros (mostly failing). */
static void read_frames(int fd, const struct mv_zpack *z)
{
	struct mv_tree_params p = {.alg = MV_HASH_SHA256, .block_size = BS};
	struct mv_mem_tree *mt = NULL;
	struct mv_measurement m;
	struct mv_tree t;
	uint8_t *buf = malloc(z->frame_size ? z->frame_size : 1);
	int zfd = -1;

	p.data_size = z->data_size;
	if (z->data_size <= MAX_VERIFY) {
		zfd = memfd_create("zeros", MFD_CLOEXEC);
		if (zfd >= 0 && ftruncate(zfd, (off_t)z->data_size) == 0 &&
		    mv_mem_tree_build(&p, zfd, &mt, &m) == 0)
			mv_tree_init(&t, &p, m.root);
	}
	for (uint32_t i = 0; buf && i < z->n_frames && i < 64; i++) {
		if (mt)
			mv_zpack_load_frame(z, fd, i, buf, &t, &mv_mem_tree_ops, mt, "f", NULL);
		else
			mv_zpack_read_frame(z, fd, i, buf, "f", NULL);
	}
	mv_mem_tree_free(mt);
	if (zfd >= 0)
		close(zfd);
	free(buf);
}

static void check(int fd, uint64_t data_size)
{
	struct mv_zpack *z = NULL;
	struct mv_err err = {0};

	if (mv_zpack_open(fd, "f", data_size, BS, &z, &err) == 0) {
		read_frames(fd, z);
		mv_zpack_free(z);
	}
}

/* Split then join at the width the first byte picks: must give the input back. */
static void planes_round_trip(const uint8_t *data, size_t size)
{
	static const unsigned widths[] = {1, 2, 4, 3};
	uint8_t *planes, *back;
	unsigned w;

	if (!size)
		return;
	w = widths[data[0] % 4];
	planes = malloc(size);
	back = malloc(size);
	if (planes && back && mv_zpack_planes_split(w, data, planes, size) == 0 &&
	    (mv_zpack_planes_join(w, planes, back, size) != 0 || memcmp(back, data, size) != 0))
		__builtin_trap();
	free(planes);
	free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	uint64_t claimed = claimed_size(data, size);

	planes_round_trip(data, size);
	if (fd < 0)
		fd = memfd_create("fuzz_zpack", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
		return 0;
	check(fd, claimed);
	check(fd, claimed + 1 + (size & 0xfff));
	return 0;
}
