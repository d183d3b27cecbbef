// SPDX-License-Identifier: Apache-2.0
/*
 * test_zpack.c - unit tests of zstd-packed files (verity/zpack.c) and the
 * frame cache (cache/frame_cache.c): round trips at many sizes, seek tables
 * that lie, frames that lie, zstd bombs, verification of frames against the
 * Merkle tree, and the cache's bound, single flight and error handling.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <zstd.h>

#include "cache.h"
#include "tap.h"
#include "../../verity/zpack_internal.h"

#define BS 4096u

/* ---- helpers ---- */

static uint32_t mv_get_le32_test(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void mv_put_le32_test(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static int memfd_with(const void *data, size_t len)
{
	int fd = memfd_create("zpack", MFD_CLOEXEC);

	if (fd < 0)
		return -1;
	if (len && pwrite(fd, data, len, 0) != (ssize_t)len) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Model-like bytes: small floats (compressible exponents) and some text. */
static uint8_t *make_data(size_t len, unsigned seed)
{
	uint8_t *d = malloc(len ? len : 1);
	uint32_t x = seed * 2654435761u + 1;

	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		d[i] = i % 4 == 3 ? (uint8_t)(0x3c + (x >> 30)) : (uint8_t)(x >> 16);
	}
	return d;
}

static struct mv_tree_params params(uint64_t size)
{
	struct mv_tree_params p = {.alg = MV_HASH_SHA256, .block_size = BS, .data_size = size};

	return p;
}

/* A plain file, its packed form (in memory and as an fd) and its tree. */
struct fixture {
	uint8_t *data;
	size_t len;
	int plain_fd, packed_fd;
	uint8_t *packed;
	size_t packed_len;
	struct mv_tree_params p;
	struct mv_mem_tree *mt;
	struct mv_measurement m;
	struct mv_tree tree;
};

/* Packs @data (@len bytes, taken over) with @o into @f. */
static int fixture_init_with(struct fixture *f, uint8_t *data, size_t len,
                             const struct mv_zpack_opts *o)
{
	struct mv_measurement wm;
	struct mv_err err = {0};
	uint64_t psize = 0;
	int ret;

	memset(f, 0, sizeof(*f));
	f->len = len;
	f->data = data;
	f->p = params(len);
	f->plain_fd = memfd_with(f->data, len);
	f->packed_fd = memfd_create("packed", MFD_CLOEXEC);
	ret = mv_zpack_write(f->plain_fd, &f->p, o, f->packed_fd, "plain", &wm, &psize, &err);
	if (ret) {
		printf("# write: %s\n", err.msg);
		return ret;
	}
	f->packed_len = (size_t)psize;
	f->packed = malloc(psize ? psize : 1);
	if (pread(f->packed_fd, f->packed, psize, 0) != (ssize_t)psize)
		return -EIO;
	ret = mv_mem_tree_build(&f->p, f->plain_fd, &f->mt, &f->m);
	if (!ret)
		ret = mv_tree_init(&f->tree, &f->p, f->m.root);
	if (!ret && memcmp(wm.digest, f->m.digest, 32) != 0)
		ret = -EBADMSG;
	return ret;
}

static int fixture_init(struct fixture *f, size_t len, uint32_t frame, int level)
{
	struct mv_zpack_opts o = {.level = level, .frame_size = frame};

	return fixture_init_with(f, make_data(len, (unsigned)len), len, &o);
}

static void fixture_free(struct fixture *f)
{
	free(f->data);
	free(f->packed);
	mv_mem_tree_free(f->mt);
	if (f->plain_fd >= 0)
		close(f->plain_fd);
	if (f->packed_fd >= 0)
		close(f->packed_fd);
}

/* Parses @buf as a packed file of @data_size plain bytes. */
static int parse_buf(const uint8_t *buf, size_t len, uint64_t data_size, struct mv_zpack **z,
                     struct mv_err *err)
{
	int fd = memfd_with(buf, len), ret;

	ret = mv_zpack_open(fd, "t.zst", data_size, BS, z, err);
	close(fd);
	return ret;
}

/* Offset of seek table entry @i in a packed buffer without checksums. */
static size_t entry_off(const uint8_t *buf, size_t len, uint32_t i)
{
	uint32_t n = mv_get_le32_test(buf + len - 9);

	return len - 9 - (size_t)n * 8 + (size_t)i * 8;
}

/* ---- round trips ---- */

static void check_round_trip(size_t len, uint32_t frame)
{
	struct fixture f;
	struct mv_zpack *z = NULL;
	struct mv_err err = {0};
	struct mv_measurement m;
	uint8_t sha[32], want[32];
	uint8_t *buf = malloc(frame);
	int ret;

	ret = fixture_init(&f, len, frame, 3);
	CHECK_EQ_INT(ret, 0);
	ret = mv_zpack_open(f.packed_fd, "t.zst", len, BS, &z, &err);
	CHECK_EQ_INT(ret, 0);
	if (ret) {
		printf("# %s\n", err.msg);
		goto out;
	}
	CHECK_EQ_INT(z->n_frames, (len + frame - 1) / frame);
	for (uint32_t i = 0; i < z->n_frames; i++) {
		size_t fl = mv_zpack_frame_len(z, i);

		CHECK_EQ_INT(mv_zpack_load_frame(z, f.packed_fd, i, buf, &f.tree, &mv_mem_tree_ops,
		                                 f.mt, "t.zst", &err),
		             0);
		CHECK(memcmp(buf, f.data + (size_t)i * frame, fl) == 0);
	}
	CHECK_EQ_INT(mv_zpack_measure(f.packed_fd, "t.zst", &f.p, sha, NULL, NULL, &m, &err), 0);
	mv_sha256(f.data, len, want);
	CHECK(memcmp(sha, want, 32) == 0);
	CHECK(memcmp(m.digest, f.m.digest, 32) == 0);
out:
	mv_zpack_free(z);
	free(buf);
	fixture_free(&f);
}

static void test_round_trip_sizes(void)
{
	static const size_t sizes[] = {
	    1, 100, BS - 1, BS, BS + 1, 3 * BS, 65536, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) - 7};

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		check_round_trip(sizes[i], MV_ZPACK_DEFAULT_FRAME);
		check_round_trip(sizes[i], BS);
		check_round_trip(sizes[i], 3 * BS);
	}
}

static void test_empty_file(void)
{
	struct mv_tree_params p = params(0);
	struct mv_measurement m, m2;
	struct mv_zpack *z = NULL;
	struct mv_err err = {0};
	uint64_t psize = 0;
	int in = memfd_with(NULL, 0), out = memfd_create("p", MFD_CLOEXEC);

	CHECK_EQ_INT(mv_zpack_write(in, &p, NULL, out, "e", &m, &psize, &err), 0);
	CHECK_EQ_INT(psize, 17); /* table frame only */
	CHECK_EQ_INT(mv_zpack_open(out, "e.zst", 0, BS, &z, &err), 0);
	CHECK(z && z->n_frames == 0);
	CHECK_EQ_INT(mv_zpack_measure(out, "e.zst", &p, NULL, NULL, NULL, &m2, &err), 0);
	CHECK(memcmp(m.digest, m2.digest, 32) == 0);
	mv_zpack_free(z);
	close(in);
	close(out);
}

static void test_writer_options(void)
{
	struct mv_tree_params p = params(BS * 4);
	struct mv_zpack_opts bad_frame = {.frame_size = BS + 1}, big = {.frame_size = 32u << 20},
			     bad_level = {.level = 99};
	struct mv_measurement m;
	struct mv_err err = {0};
	uint64_t psize;
	uint8_t *d = make_data(BS * 4, 1);
	int in = memfd_with(d, BS * 4), out = memfd_create("p", MFD_CLOEXEC);

	CHECK_EQ_INT(mv_zpack_write(in, &p, &bad_frame, out, "x", &m, &psize, &err), -EINVAL);
	CHECK(strstr(err.msg, "x: frame size") != NULL);
	CHECK_EQ_INT(mv_zpack_write(in, &p, &big, out, "x", &m, &psize, NULL), -EINVAL);
	CHECK_EQ_INT(mv_zpack_write(in, &p, &bad_level, out, "x", &m, &psize, NULL), -EINVAL);
	/* The file is shorter than the signature says: it changed. */
	p.data_size = BS * 5;
	CHECK_EQ_INT(mv_zpack_write(in, &p, NULL, out, "x", &m, &psize, NULL), -EAGAIN);
	free(d);
	close(in);
	close(out);
}

/* The packed file is a valid zstd stream: one decompression gives the data. */
static void test_plain_zstd_compatible(void)
{
	struct fixture f;
	uint8_t *out;
	size_t n;

	CHECK_EQ_INT(fixture_init(&f, 5 * BS + 9, 2 * BS, 3), 0);
	out = malloc(f.len + 1);
	n = ZSTD_decompress(out, f.len + 1, f.packed, f.packed_len);
	CHECK(!ZSTD_isError(n) && n == f.len);
	CHECK(memcmp(out, f.data, f.len) == 0);
	free(out);
	fixture_free(&f);
}

/* ---- seek tables that lie ---- */

/* Parses a mutated copy of @f's packed bytes; returns the result. */
static int parse_mutated(const struct fixture *f, void (*mut)(uint8_t *, size_t *), char *msg,
                         size_t msg_len)
{
	uint8_t *b = malloc(f->packed_len + 64);
	size_t len = f->packed_len;
	struct mv_zpack *z = NULL;
	struct mv_err err = {0};
	int ret;

	memcpy(b, f->packed, len);
	mut(b, &len);
	ret = parse_buf(b, len, f->len, &z, &err);
	snprintf(msg, msg_len, "%s", err.msg);
	mv_zpack_free(z);
	free(b);
	return ret;
}

static void put32(uint8_t *p, uint32_t v)
{
	mv_put_le32_test(p, v);
}

static void mut_dsize_sum(uint8_t *b, size_t *len)
{
	uint32_t n = mv_get_le32_test(b + *len - 9);
	size_t e = entry_off(b, *len, n - 1);

	put32(b + e + 4, mv_get_le32_test(b + e + 4) - 1);
}

static void mut_csize_sum(uint8_t *b, size_t *len)
{
	size_t e = entry_off(b, *len, 0);

	put32(b + e, mv_get_le32_test(b + e) + 1);
}

static void mut_frame_not_block(uint8_t *b, size_t *len)
{
	uint32_t n = mv_get_le32_test(b + *len - 9);

	for (uint32_t i = 0; i + 1 < n; i++)
		put32(b + entry_off(b, *len, i) + 4, 2 * BS - 512);
}

static void mut_last_too_big(uint8_t *b, size_t *len)
{
	uint32_t n = mv_get_le32_test(b + *len - 9);

	put32(b + entry_off(b, *len, n - 1) + 4, 2 * BS + BS);
}

static void mut_middle_differs(uint8_t *b, size_t *len)
{
	put32(b + entry_off(b, *len, 1) + 4, BS);
}

static void mut_huge_count(uint8_t *b, size_t *len)
{
	put32(b + *len - 9, 0xFFFFFFFFu);
}

static void mut_count_minus_one(uint8_t *b, size_t *len)
{
	put32(b + *len - 9, mv_get_le32_test(b + *len - 9) - 1);
}

static void mut_reserved_bits(uint8_t *b, size_t *len)
{
	b[*len - 5] = 0x04;
}

static void mut_magic(uint8_t *b, size_t *len)
{
	b[*len - 1] ^= 0xff;
}

static void mut_skip_size(uint8_t *b, size_t *len)
{
	uint32_t n = mv_get_le32_test(b + *len - 9);
	size_t t = *len - 9 - (size_t)n * 8 - 8;

	put32(b + t + 4, mv_get_le32_test(b + t + 4) + 8);
}

static void mut_skip_magic(uint8_t *b, size_t *len)
{
	uint32_t n = mv_get_le32_test(b + *len - 9);
	size_t t = *len - 9 - (size_t)n * 8 - 8;

	put32(b + t, 0x184D2A50);
}

static void mut_csize_huge(uint8_t *b, size_t *len)
{
	put32(b + entry_off(b, *len, 0), 0xFFFFFFF0u);
}

static void mut_csize_zero(uint8_t *b, size_t *len)
{
	put32(b + entry_off(b, *len, 0), 0);
}

static void mut_truncate(uint8_t *b, size_t *len)
{
	*len = 10;
}

static void mut_drop_first_byte_of_table(uint8_t *b, size_t *len)
{
	/* A frame shorter than the table says: offsets no longer tile the file. */
	memmove(b + 1, b + 2, *len - 2);
	(*len)--;
}

static void test_lying_tables(void)
{
	static const struct {
		const char *name;
		void (*mut)(uint8_t *, size_t *);
		const char *want; /* substring of the message */
	} cases[] = {
	    {"dsize sum", mut_dsize_sum, "plain bytes"},
	    {"csize sum", mut_csize_sum, "before its seek table"},
	    {"frame not block", mut_frame_not_block, "not a multiple"},
	    {"last too big", mut_last_too_big, "declares"},
	    {"middle differs", mut_middle_differs, "declares"},
	    {"huge count", mut_huge_count, "frames"},
	    {"count-1", mut_count_minus_one, "header is wrong"},
	    {"reserved", mut_reserved_bits, "reserved"},
	    {"magic", mut_magic, "not a packed file"},
	    {"skip size", mut_skip_size, "header is wrong"},
	    {"skip magic", mut_skip_magic, "header is wrong"},
	    {"csize huge", mut_csize_huge, "impossible"},
	    {"csize zero", mut_csize_zero, "impossible"},
	    {"truncated", mut_truncate, "too small"},
	    {"shifted", mut_drop_first_byte_of_table, "before its seek table"},
	};
	struct fixture f;
	char msg[1024];

	CHECK_EQ_INT(fixture_init(&f, 7 * BS + 100, 2 * BS, 3), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int ret = parse_mutated(&f, cases[i].mut, msg, sizeof(msg));

		if (ret != -EBADMSG || !strstr(msg, cases[i].want) || strncmp(msg, "t.zst: ", 7)) {
			printf("# case %s: ret %d, msg '%s'\n", cases[i].name, ret, msg);
			tap_cur_failed = 1;
		}
	}
	fixture_free(&f);
}

/* The signed size decides: a table for another size is refused. */
static void test_table_wrong_signed_size(void)
{
	struct fixture f;
	struct mv_zpack *z = NULL;
	struct mv_err err = {0};

	CHECK_EQ_INT(fixture_init(&f, 5 * BS, 2 * BS, 3), 0);
	CHECK_EQ_INT(parse_buf(f.packed, f.packed_len, 5 * BS + 1, &z, &err), -EBADMSG);
	CHECK_EQ_INT(parse_buf(f.packed, f.packed_len, 6 * BS, &z, &err), -EBADMSG);
	CHECK(z == NULL);
	fixture_free(&f);
}

/* A table with the checksum flag (12-byte entries) from another writer parses. */
static void test_checksum_entries(void)
{
	struct fixture f;
	struct mv_zpack *z = NULL;
	struct mv_err err = {0};
	uint8_t *b;
	size_t n, old_t, new_len;

	CHECK_EQ_INT(fixture_init(&f, 5 * BS, 2 * BS, 3), 0);
	n = mv_get_le32_test(f.packed + f.packed_len - 9);
	old_t = f.packed_len - 9 - n * 8 - 8;
	new_len = old_t + 8 + n * 12 + 9;
	b = calloc(1, new_len);
	memcpy(b, f.packed, old_t);
	put32(b + old_t, ZP_SKIPPABLE_MAGIC);
	put32(b + old_t + 4, (uint32_t)(n * 12 + 9));
	for (size_t i = 0; i < n; i++) {
		memcpy(b + old_t + 8 + i * 12, f.packed + old_t + 8 + i * 8, 8);
		put32(b + old_t + 8 + i * 12 + 8, 0x12345678); /* not checked: the tree is */
	}
	put32(b + new_len - 9, (uint32_t)n);
	b[new_len - 5] = 0x80;
	put32(b + new_len - 4, ZP_SEEKABLE_MAGIC);
	CHECK_EQ_INT(parse_buf(b, new_len, 5 * BS, &z, &err), 0);
	CHECK(z && z->n_frames == n && z->frame_size == 2 * BS);
	mv_zpack_free(z);
	free(b);
	fixture_free(&f);
}

/* ---- frames that lie, bombs ---- */

static size_t compress_frame(const void *src, size_t len, void *dst, size_t cap, bool size_flag)
{
	ZSTD_CCtx *c = ZSTD_createCCtx();
	size_t n;

	ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, size_flag);
	if (size_flag) {
		n = ZSTD_compress2(c, dst, cap, src, len);
	} else {
		/* Streaming without a pledged size: no content size in the header. */
		ZSTD_outBuffer out = {dst, cap, 0};
		ZSTD_inBuffer in = {src, len, 0};

		ZSTD_compressStream2(c, &out, &in, ZSTD_e_continue);
		n = ZSTD_compressStream2(c, &out, &in, ZSTD_e_end);
		n = ZSTD_isError(n) || n ? 0 : out.pos;
	}
	ZSTD_freeCCtx(c);
	return ZSTD_isError(n) ? 0 : n;
}

static void test_decode_bounds(void)
{
	size_t big = 64u << 20, cap = ZSTD_compressBound(big), n;
	uint8_t *zeros = calloc(1, big), *dst = malloc(cap), out[BS];
	struct mv_err err = {0};

	/* A bomb: 64 MiB of zeros in a few KiB, claimed to be one block. */
	n = compress_frame(zeros, big, dst, cap, true);
	CHECK(n > 0 && n < 65536);
	CHECK_EQ_INT(mv_zpack_decode_frame(dst, n, out, BS, "b.zst", 0, &err), -EBADMSG);
	CHECK(strstr(err.msg, "b.zst: frame 0 does not declare") != NULL);
	/* The same bomb without a declared size. */
	n = compress_frame(zeros, big, dst, cap, false);
	CHECK(n > 0);
	CHECK_EQ_INT(mv_zpack_decode_frame(dst, n, out, BS, "b.zst", 0, NULL), -EBADMSG);
	/* A frame of 2 blocks whose header is patched to claim one. */
	n = compress_frame(zeros, 2 * BS, dst, cap, true);
	CHECK(ZSTD_getFrameContentSize(dst, n) == 2 * BS);
	{
		/* Find the content size field (2 bytes, value - 256) and lower it. */
		uint8_t fhd = dst[4];
		size_t pos = 5 + !(fhd & 0x20) + ((fhd & 3) ? (1u << ((fhd & 3) - 1)) : 0);

		if ((fhd >> 6) == 1) {
			dst[pos] = (uint8_t)((BS - 256) & 0xff);
			dst[pos + 1] = (uint8_t)((BS - 256) >> 8);
		}
		CHECK(ZSTD_getFrameContentSize(dst, n) == BS);
		CHECK_EQ_INT(mv_zpack_decode_frame(dst, n, out, BS, "b.zst", 0, NULL), -EBADMSG);
	}
	/* Two frames where one is expected; trailing garbage. */
	n = compress_frame(zeros, BS, dst, cap, true);
	memcpy(dst + n, dst, n);
	CHECK_EQ_INT(mv_zpack_decode_frame(dst, 2 * n, out, BS, "b.zst", 0, NULL), -EBADMSG);
	CHECK_EQ_INT(mv_zpack_decode_frame(dst, n + 3, out, BS, "b.zst", 0, NULL), -EBADMSG);
	CHECK_EQ_INT(mv_zpack_decode_frame(dst, n - 1, out, BS, "b.zst", 0, NULL), -EBADMSG);
	CHECK_EQ_INT(mv_zpack_decode_frame(dst, n, out, BS, "b.zst", 0, NULL), 0);
	/* A skippable frame is not a data frame. */
	put32(dst, 0x184D2A50);
	put32(dst + 4, 4);
	CHECK_EQ_INT(mv_zpack_decode_frame(dst, 12, out, BS, "b.zst", 0, NULL), -EBADMSG);
	CHECK_EQ_INT(mv_zpack_decode_frame(dst, 2, out, BS, "b.zst", 0, NULL), -EBADMSG);
	free(zeros);
	free(dst);
}

/* Replaces frame @idx of @f with @data compressed, fixing the table. */
static void splice_frame(struct fixture *f, uint32_t idx, const uint8_t *data, size_t len,
                         int *fd_out, size_t *len_out)
{
	struct mv_zpack *z = NULL;
	uint8_t *c = malloc(ZSTD_compressBound(len)), *b;
	size_t cn = compress_frame(data, len, c, ZSTD_compressBound(len), true), pos = 0;

	CHECK_EQ_INT(parse_buf(f->packed, f->packed_len, f->len, &z, NULL), 0);
	b = malloc(f->packed_len + cn);
	for (uint32_t i = 0; i < z->n_frames; i++) {
		size_t ol = z->offset[i + 1] - z->offset[i];

		if (i == idx) {
			memcpy(b + pos, c, cn);
			pos += cn;
		} else {
			memcpy(b + pos, f->packed + z->offset[i], ol);
			pos += ol;
		}
	}
	memcpy(b + pos, f->packed + z->offset[z->n_frames], f->packed_len - z->offset[z->n_frames]);
	put32(b + entry_off(b, pos + f->packed_len - z->offset[z->n_frames], idx), (uint32_t)cn);
	*len_out = pos + f->packed_len - z->offset[z->n_frames];
	*fd_out = memfd_with(b, *len_out);
	mv_zpack_free(z);
	free(b);
	free(c);
}

/* A well-formed frame with other bytes decompresses but fails verification. */
static void test_frame_verification(void)
{
	struct fixture f;
	struct mv_zpack *z = NULL;
	struct mv_err err = {0};
	uint8_t *other, *buf = malloc(2 * BS);
	size_t plen;
	int fd;

	CHECK_EQ_INT(fixture_init(&f, 7 * BS + 100, 2 * BS, 3), 0);
	other = malloc(2 * BS);
	memcpy(other, f.data + 2 * BS, 2 * BS);
	other[BS + 5] ^= 1; /* second block of frame 1 */
	splice_frame(&f, 1, other, 2 * BS, &fd, &plen);
	CHECK_EQ_INT(mv_zpack_open(fd, "t.zst", f.len, BS, &z, &err), 0);
	if (!z)
		goto out;
	CHECK_EQ_INT(mv_zpack_read_frame(z, fd, 1, buf, "t.zst", &err), 0);
	CHECK_EQ_INT(
	    mv_zpack_load_frame(z, fd, 1, buf, &f.tree, &mv_mem_tree_ops, f.mt, "t.zst", &err),
	    -EBADMSG);
	CHECK(strstr(err.msg,
	             "t.zst: frame 1 (bytes 8192-16383) fails verification at data block 3") !=
	      NULL);
	/* The other frames are still good. */
	CHECK_EQ_INT(
	    mv_zpack_load_frame(z, fd, 0, buf, &f.tree, &mv_mem_tree_ops, f.mt, "t.zst", NULL), 0);
	CHECK_EQ_INT(
	    mv_zpack_load_frame(z, fd, 3, buf, &f.tree, &mv_mem_tree_ops, f.mt, "t.zst", NULL), 0);
	mv_zpack_free(z);
	close(fd);
out:
	free(other);
	free(buf);
	fixture_free(&f);
}

/* Flipped compressed bytes: every frame either fails to decode or to verify. */
static void test_corrupt_bytes(void)
{
	struct fixture f;
	struct mv_zpack *z = NULL;
	uint8_t *buf = malloc(2 * BS), *b;
	int bad = 0, fd;

	CHECK_EQ_INT(fixture_init(&f, 7 * BS + 100, 2 * BS, 3), 0);
	CHECK_EQ_INT(parse_buf(f.packed, f.packed_len, f.len, &z, NULL), 0);
	b = malloc(f.packed_len);
	for (size_t pos = 0; pos < z->offset[z->n_frames]; pos += 7) {
		uint32_t idx = 0;

		while (z->offset[idx + 1] <= pos)
			idx++;
		memcpy(b, f.packed, f.packed_len);
		b[pos] ^= 0x5a;
		fd = memfd_with(b, f.packed_len);
		if (mv_zpack_load_frame(z, fd, idx, buf, &f.tree, &mv_mem_tree_ops, f.mt, "t.zst",
		                        NULL) == 0 &&
		    memcmp(buf, f.data + (size_t)idx * 2 * BS, mv_zpack_frame_len(z, idx)) != 0)
			bad++; /* accepted wrong bytes: must never happen */
		close(fd);
	}
	CHECK_EQ_INT(bad, 0);
	free(b);
	free(buf);
	mv_zpack_free(z);
	fixture_free(&f);
}

/* ---- frame cache ---- */

struct slow_loader {
	_Atomic int calls;
	int fail; /* return this once if non-zero */
	unsigned delay_us;
};

static int slow_load(void *ctx, uint32_t index, uint8_t *buf, size_t len)
{
	struct slow_loader *l = ctx;
	int fail = l->fail;

	atomic_fetch_add(&l->calls, 1);
	if (l->delay_us)
		usleep(l->delay_us);
	if (fail) {
		l->fail = 0;
		return fail;
	}
	memset(buf, (int)(index & 0xff), len);
	return 0;
}

struct flight_arg {
	struct mc_frame_cache *c;
	struct slow_loader *l;
	int ok;
};

static void *flight_thread(void *arg)
{
	struct flight_arg *a = arg;
	struct mc_frame_ref ref;

	if (mc_frame_get(a->c, 7, 3, BS, slow_load, a->l, &ref) == 0) {
		a->ok = ref.len == BS && ref.data[0] == 3 && ref.data[BS - 1] == 3;
		mc_frame_put(a->c, &ref);
	}
	return NULL;
}

static void test_cache_single_flight(void)
{
	struct mc_frame_cache *c;
	struct slow_loader l = {.delay_us = 100000};
	struct flight_arg a[8];
	pthread_t t[8];
	struct mc_frame_stats st;

	CHECK_EQ_INT(mc_frame_cache_new(1 << 20, &c), 0);
	for (int i = 0; i < 8; i++) {
		a[i] = (struct flight_arg){c, &l, 0};
		pthread_create(&t[i], NULL, flight_thread, &a[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		CHECK(a[i].ok);
	}
	CHECK_EQ_INT(atomic_load(&l.calls), 1);
	mc_frame_cache_stats(c, &st);
	CHECK_EQ_INT(st.misses, 1);
	CHECK_EQ_INT(st.hits, 7);
	CHECK(st.waits >= 1);
	mc_frame_cache_free(c);
}

static void test_cache_errors_not_cached(void)
{
	struct mc_frame_cache *c;
	struct slow_loader l = {.fail = -EBADMSG};
	struct mc_frame_ref ref;
	struct mc_frame_stats st;

	CHECK_EQ_INT(mc_frame_cache_new(1 << 20, &c), 0);
	CHECK_EQ_INT(mc_frame_get(c, 1, 0, BS, slow_load, &l, &ref), -EBADMSG);
	CHECK(ref.data == NULL);
	CHECK_EQ_INT(mc_frame_get(c, 1, 0, BS, slow_load, &l, &ref), 0);
	CHECK(ref.data && ref.data[0] == 0);
	mc_frame_put(c, &ref);
	CHECK_EQ_INT(mc_frame_get(c, 1, 0, BS, slow_load, &l, &ref), 0);
	mc_frame_put(c, &ref);
	CHECK_EQ_INT(atomic_load(&l.calls), 2);
	/* Same key, other length: refused, not mixed up. */
	CHECK_EQ_INT(mc_frame_get(c, 1, 0, 2 * BS, slow_load, &l, &ref), -EINVAL);
	mc_frame_cache_stats(c, &st);
	CHECK_EQ_INT(st.errors, 1);
	CHECK_EQ_INT(st.entries, 1);
	mc_frame_cache_drop_file(c, 1);
	mc_frame_cache_stats(c, &st);
	CHECK_EQ_INT(st.entries, 0);
	CHECK_EQ_INT(st.bytes, 0);
	mc_frame_cache_free(c);
}

static void test_cache_bound(void)
{
	struct mc_frame_cache *c;
	struct slow_loader l = {0};
	struct mc_frame_ref ref, held;
	struct mc_frame_stats st;
	size_t max = 256u << 10;

	CHECK_EQ_INT(mc_frame_cache_new(max, &c), 0);
	CHECK_EQ_INT(mc_frame_get(c, 2, 999, BS, slow_load, &l, &held), 0);
	for (uint32_t i = 0; i < 1000; i++) {
		CHECK_EQ_INT(mc_frame_get(c, 2, i, BS, slow_load, &l, &ref), 0);
		CHECK(ref.data[BS / 2] == (uint8_t)i);
		mc_frame_put(c, &ref);
		mc_frame_cache_stats(c, &st);
		if (st.bytes > max) {
			printf("# over bound: %llu\n", (unsigned long long)st.bytes);
			tap_cur_failed = 1;
			break;
		}
	}
	mc_frame_cache_stats(c, &st);
	CHECK(st.evictions > 900);
	CHECK(st.entries < 64);
	/* The held frame was never evicted: still there and intact. */
	CHECK(held.data[0] == (uint8_t)999);
	mc_frame_put(c, &held);
	mc_frame_cache_free(c);
}

/* ---- mc_zpack_pread ---- */

struct reader_arg {
	const struct mc_zpack_file *zf;
	const uint8_t *data;
	size_t len;
	unsigned seed;
	int bad;
};

static void *reader_thread(void *arg)
{
	struct reader_arg *a = arg;
	uint8_t buf[20000];
	uint32_t x = a->seed;

	for (int i = 0; i < 300; i++) {
		size_t off, len;
		ssize_t n;

		x = x * 1103515245u + 12345u;
		off = (x >> 4) % a->len;
		len = (x >> 8) % sizeof(buf);
		n = mc_zpack_pread(a->zf, buf, len, off, NULL);
		if (n < 0 || (size_t)n != (len < a->len - off ? len : a->len - off) ||
		    memcmp(buf, a->data + off, (size_t)n) != 0)
			a->bad++;
	}
	return NULL;
}

static void test_pread(void)
{
	struct fixture f;
	struct mv_zpack *z = NULL;
	struct mc_frame_cache *c = NULL;
	struct mc_zpack_file zf;
	struct mc_frame_stats st;
	struct reader_arg ra[4];
	pthread_t t[4];
	uint8_t *all;
	ssize_t n;

	CHECK_EQ_INT(fixture_init(&f, 40 * BS + 123, 4 * BS, 3), 0);
	CHECK_EQ_INT(mv_zpack_open(f.packed_fd, "t.zst", f.len, BS, &z, NULL), 0);
	CHECK_EQ_INT(mc_frame_cache_new(64u << 10, &c), 0);
	CHECK_EQ_INT(
	    mc_zpack_file_init(&zf, c, f.packed_fd, z, &f.tree, &mv_mem_tree_ops, f.mt, "t.zst"),
	    0);
	all = malloc(f.len + 10);
	n = mc_zpack_pread(&zf, all, f.len + 10, 0, NULL);
	CHECK_EQ_INT(n, f.len);
	CHECK(memcmp(all, f.data, f.len) == 0);
	CHECK_EQ_INT(mc_zpack_pread(&zf, all, 10, f.len, NULL), 0);
	CHECK_EQ_INT(mc_zpack_pread(&zf, all, 10, f.len + 5, NULL), 0);
	for (int i = 0; i < 4; i++) {
		ra[i] = (struct reader_arg){&zf, f.data, f.len, (unsigned)i + 1, 0};
		pthread_create(&t[i], NULL, reader_thread, &ra[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		CHECK_EQ_INT(ra[i].bad, 0);
	}
	mc_frame_cache_stats(c, &st);
	CHECK(st.hits > 0 && st.misses > 0);
	CHECK(st.bytes <= st.max_bytes);
	free(all);
	mc_frame_cache_free(c);
	mv_zpack_free(z);
	fixture_free(&f);
}

/* A tampered frame gives -EIO for its range only, with a line naming the file. */
static void test_pread_tampered(void)
{
	struct fixture f;
	struct mv_zpack *z = NULL;
	struct mc_frame_cache *c = NULL;
	struct mc_zpack_file zf;
	struct mv_err err = {0};
	uint8_t *other, buf[4 * BS];
	size_t plen;
	int fd;

	CHECK_EQ_INT(fixture_init(&f, 12 * BS, 4 * BS, 3), 0);
	other = malloc(4 * BS);
	memcpy(other, f.data + 4 * BS, 4 * BS);
	other[0] ^= 0x80;
	splice_frame(&f, 1, other, 4 * BS, &fd, &plen);
	CHECK_EQ_INT(mv_zpack_open(fd, "t.zst", f.len, BS, &z, NULL), 0);
	CHECK_EQ_INT(mc_frame_cache_new(0, &c), 0);
	CHECK_EQ_INT(mc_zpack_file_init(&zf, c, fd, z, &f.tree, &mv_mem_tree_ops, f.mt, "t.zst"),
	             0);
	CHECK_EQ_INT(mc_zpack_pread(&zf, buf, 100, 4 * BS - 100, NULL), 100);
	CHECK_EQ_INT(mc_zpack_pread(&zf, buf, 100, 4 * BS + 50, &err), -EIO);
	CHECK(strncmp(err.msg, "t.zst: frame 1", 14) == 0);
	CHECK_EQ_INT(mc_zpack_pread(&zf, buf, 100, 4 * BS - 50, NULL), -EIO);
	CHECK_EQ_INT(mc_zpack_pread(&zf, buf, 100, 8 * BS, NULL), 100);
	CHECK(memcmp(buf, f.data + 8 * BS, 100) == 0);
	/* A table that does not fit the tree is refused up front. */
	{
		struct mv_tree t2 = f.tree;

		t2.params.data_size++;
		CHECK_EQ_INT(mc_zpack_file_init(&zf, c, fd, z, &t2, &mv_mem_tree_ops, f.mt, "t"),
		             -EINVAL);
	}
	free(other);
	close(fd);
	mc_frame_cache_free(c);
	mv_zpack_free(z);
	fixture_free(&f);
}

/* ---- --tensor-transform: byte planes ---- */

enum kind { K_BF16, K_F32, K_TEXT };

/* Sign/exponent byte of a small weight, normal(0, 0.02)-like: few values. */
static uint8_t exp_byte(uint32_t x)
{
	return (uint8_t)((x >> 31 ? 0x80 : 0) | (0x3a + ((x >> 28) & 3)));
}

/* Fills @len bytes of @d with data of @k (little-endian elements from 0). */
static void fill_kind(uint8_t *d, size_t len, enum kind k, unsigned seed)
{
	uint32_t x = seed * 2654435761u + 7;
	char word[32];
	size_t i = 0;

	while (i < len) {
		x = x * 1103515245u + 12345u;
		if (k == K_TEXT) {
			int n = snprintf(word, sizeof(word), "\"tok%u\": %zu,\n", x >> 20, i % 977);

			for (int j = 0; j < n && i < len; j++)
				d[i++] = (uint8_t)word[j];
			continue;
		}
		if ((k == K_BF16 && i % 2 == 1) || (k == K_F32 && i % 4 == 3))
			d[i] = exp_byte(x);
		else
			d[i] = (uint8_t)(x >> 16);
		i++;
	}
}

static uint8_t *kind_data(size_t len, enum kind k)
{
	uint8_t *d = malloc(len ? len : 1);

	fill_kind(d, len, k, (unsigned)len);
	return d;
}

static int fixture_xform(struct fixture *f, uint8_t *data, size_t len, uint32_t frame)
{
	struct mv_zpack_opts o = {.frame_size = frame, .tensor_transform = true};

	return fixture_init_with(f, data, len, &o);
}

/* Split and join are inverses at every width and length; the layout is planes. */
static void test_planes(void)
{
	static const unsigned widths[] = {1, 2, 4};
	uint8_t src[19], planes[19], back[19];
	uint8_t abcde[5] = {'a', 'b', 'c', 'd', 'e'};

	for (size_t i = 0; i < sizeof(src); i++)
		src[i] = (uint8_t)(i * 37 + 11);
	for (size_t w = 0; w < 3; w++)
		for (size_t len = 0; len <= sizeof(src); len++) {
			memset(back, 0, sizeof(back));
			CHECK_EQ_INT(mv_zpack_planes_split(widths[w], src, planes, len), 0);
			CHECK_EQ_INT(mv_zpack_planes_join(widths[w], planes, back, len), 0);
			CHECK(memcmp(src, back, len) == 0);
		}
	CHECK_EQ_INT(mv_zpack_planes_split(2, abcde, planes, 5), 0);
	CHECK(memcmp(planes, "acebd", 5) == 0);
	CHECK_EQ_INT(mv_zpack_planes_split(4, abcde, planes, 5), 0);
	CHECK(memcmp(planes, "aebcd", 5) == 0);
	CHECK_EQ_INT(mv_zpack_planes_split(3, abcde, planes, 5), -EINVAL);
	CHECK_EQ_INT(mv_zpack_planes_join(0, abcde, planes, 5), -EINVAL);
	CHECK_EQ_INT(mv_zpack_planes_join(8, abcde, planes, 5), -EINVAL);
}

/* Reads every frame of @f through the verifying path and compares. */
static void check_frames(struct fixture *f, const struct mv_zpack *z)
{
	struct mv_measurement m;
	struct mv_err err = {0};
	uint8_t sha[32], want[32];
	uint8_t *buf = malloc(z->frame_size ? z->frame_size : 1);

	for (uint32_t i = 0; i < z->n_frames; i++) {
		int ret = mv_zpack_load_frame(z, f->packed_fd, i, buf, &f->tree, &mv_mem_tree_ops,
		                              f->mt, "t.zst", &err);

		CHECK_EQ_INT(ret, 0);
		if (ret)
			printf("# %s\n", err.msg);
		CHECK(memcmp(buf, f->data + (size_t)i * z->frame_size, mv_zpack_frame_len(z, i)) ==
		      0);
	}
	CHECK_EQ_INT(mv_zpack_measure(f->packed_fd, "t.zst", &f->p, sha, NULL, NULL, &m, &err), 0);
	mv_sha256(f->data, f->len, want);
	CHECK(memcmp(sha, want, 32) == 0);
	CHECK(memcmp(m.digest, f->m.digest, 32) == 0);
	free(buf);
}

/* Round trip of transformed files; @want: width expected of every whole frame. */
static void check_xform_round_trip(enum kind k, size_t len, uint32_t frame, unsigned want)
{
	struct fixture f;
	struct mv_zpack *z = NULL;
	struct mv_err err = {0};

	CHECK_EQ_INT(fixture_xform(&f, kind_data(len, k), len, frame), 0);
	CHECK_EQ_INT(mv_zpack_open(f.packed_fd, "t.zst", len, BS, &z, &err), 0);
	if (!z) {
		printf("# %s\n", err.msg);
		goto out;
	}
	if (want == 1) {
		CHECK(z->width == NULL);
	} else if (want > 1) {
		CHECK(z->width != NULL);
		for (uint32_t i = 0; z->width && i < z->n_frames; i++)
			if (mv_zpack_frame_len(z, i) >= 1024 && z->width[i] != want) {
				printf("# kind %d len %zu frame %u: width[%u] = %u\n", k, len,
				       frame, i, z->width[i]);
				tap_cur_failed = 1;
			}
	}
	check_frames(&f, z);
out:
	mv_zpack_free(z);
	fixture_free(&f);
}

static void test_xform_round_trip(void)
{
	static const size_t sizes[] = {BS, 5 * BS + 3, 3 * BS - 1, (1 << 20) + 7};
	static const uint32_t frames[] = {BS, 3 * BS, MV_ZPACK_DEFAULT_FRAME};

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		for (size_t j = 0; j < sizeof(frames) / sizeof(frames[0]); j++) {
			check_xform_round_trip(K_BF16, sizes[i], frames[j], 2);
			check_xform_round_trip(K_F32, sizes[i], frames[j], 4);
			check_xform_round_trip(K_TEXT, sizes[i], frames[j], 1);
		}
	/* Tiny files: whatever is chosen reads back. */
	for (size_t len = 1; len < 9; len++) {
		check_xform_round_trip(K_BF16, len, BS, 0);
		check_xform_round_trip(K_F32, len, BS, 0);
	}
}

/* Without a transformed frame, the output is the same as without the option. */
static void test_xform_untouched_when_useless(void)
{
	struct mv_zpack_opts o = {.frame_size = 2 * BS};
	struct fixture a, b;

	CHECK_EQ_INT(fixture_init_with(&a, kind_data(9 * BS + 5, K_TEXT), 9 * BS + 5, &o), 0);
	CHECK_EQ_INT(fixture_xform(&b, kind_data(9 * BS + 5, K_TEXT), 9 * BS + 5, 2 * BS), 0);
	CHECK(a.packed_len == b.packed_len && memcmp(a.packed, b.packed, a.packed_len) == 0);
	fixture_free(&a);
	fixture_free(&b);
}

/* A file like a safetensors one: header text, then bf16, then f32 tensors. */
static void test_xform_mixed(void)
{
	static const unsigned want[] = {1, 2, 2, 4, 4, 4};
	size_t len = 5 * 4 * BS + 1000;
	uint8_t *d = malloc(len);
	struct mv_zpack *z = NULL;
	struct fixture f;

	fill_kind(d, 4 * BS, K_TEXT, 1);
	fill_kind(d + 4 * BS, 8 * BS, K_BF16, 2);
	fill_kind(d + 12 * BS, len - 12 * BS, K_F32, 3);
	CHECK_EQ_INT(fixture_xform(&f, d, len, 4 * BS), 0);
	CHECK_EQ_INT(mv_zpack_open(f.packed_fd, "t.zst", len, BS, &z, NULL), 0);
	if (!z || !z->width) {
		tap_cur_failed = 1;
		goto out;
	}
	CHECK_EQ_INT(z->n_frames, 6);
	for (uint32_t i = 0; i < z->n_frames; i++)
		if (z->width[i] != want[i]) {
			printf("# frame %u: width %u, want %u\n", i, z->width[i], want[i]);
			tap_cur_failed = 1;
		}
	check_frames(&f, z);
out:
	mv_zpack_free(z);
	fixture_free(&f);
}

/* Plain zstd -d gives the byte planes of a transformed file, not its bytes. */
static void test_xform_zstd_d(void)
{
	size_t len = 6 * BS + 10, n;
	struct mv_zpack *z = NULL;
	uint8_t *out, *planes;
	struct fixture f;

	CHECK_EQ_INT(fixture_xform(&f, kind_data(len, K_BF16), len, 2 * BS), 0);
	CHECK_EQ_INT(mv_zpack_open(f.packed_fd, "t.zst", len, BS, &z, NULL), 0);
	out = malloc(len + 1);
	planes = malloc(len);
	n = ZSTD_decompress(out, len + 1, f.packed, f.packed_len);
	CHECK(!ZSTD_isError(n) && n == len);
	CHECK(memcmp(out, f.data, len) != 0);
	for (uint32_t i = 0; z && z->width && i < z->n_frames; i++) {
		size_t off = (size_t)i * z->frame_size, fl = mv_zpack_frame_len(z, i);

		mv_zpack_planes_split(z->width[i], f.data + off, planes + off, fl);
	}
	CHECK(memcmp(out, planes, len) == 0);
	free(out);
	free(planes);
	mv_zpack_free(z);
	fixture_free(&f);
}

/* Offset of the transform table in a packed buffer without checksums. */
static size_t xform_off(const uint8_t *b, size_t len)
{
	uint32_t n = mv_get_le32_test(b + len - 9);

	return len - 17 - (size_t)n * 8 - ZP_XFORM_HEADER - n;
}

static void mut_x_width3(uint8_t *b, size_t *len)
{
	b[xform_off(b, *len) + ZP_XFORM_HEADER + 1] = 3;
}

static void mut_x_width0(uint8_t *b, size_t *len)
{
	b[xform_off(b, *len) + ZP_XFORM_HEADER] = 0;
}

/* One width fewer, with the frame size fixed: a count mismatch. */
static void mut_x_count_short(uint8_t *b, size_t *len)
{
	size_t x = xform_off(b, *len), w = x + ZP_XFORM_HEADER;

	put32(b + x + 4, mv_get_le32_test(b + x + 4) - 1);
	memmove(b + w, b + w + 1, *len - w - 1);
	(*len)--;
}

/* One width more (the caller's buffer has room), with the frame size fixed. */
static void mut_x_count_long(uint8_t *b, size_t *len)
{
	size_t x = xform_off(b, *len), w = x + ZP_XFORM_HEADER;

	put32(b + x + 4, mv_get_le32_test(b + x + 4) + 1);
	memmove(b + w + 1, b + w, *len - w);
	b[w] = 2;
	(*len)++;
}

static void mut_x_id(uint8_t *b, size_t *len)
{
	b[xform_off(b, *len) + 8] ^= 1;
}

static void mut_x_size(uint8_t *b, size_t *len)
{
	size_t x = xform_off(b, *len);

	put32(b + x + 4, mv_get_le32_test(b + x + 4) + 1);
}

static void mut_x_magic(uint8_t *b, size_t *len)
{
	put32(b + xform_off(b, *len), ZP_SKIPPABLE_MAGIC);
}

static void test_xform_lying_tables(void)
{
	static const struct {
		const char *name;
		void (*mut)(uint8_t *, size_t *);
		const char *want; /* substring of the message */
	} cases[] = {
	    {"width 3", mut_x_width3, "transform table gives frame 1 an unknown element width 3"},
	    {"width 0", mut_x_width0, "transform table gives frame 0 an unknown element width 0"},
	    {"count short", mut_x_count_short, "transform table lists 3 frames, the seek table 4"},
	    {"count long", mut_x_count_long, "are not a transform table for 4 frames"},
	    {"id", mut_x_id, "unknown id"},
	    {"size", mut_x_size, "transform table frame size is wrong"},
	    {"magic", mut_x_magic, "are not a transform table"},
	};
	size_t len = 7 * BS + 100;
	struct fixture f;
	char msg[1024];

	CHECK_EQ_INT(fixture_xform(&f, kind_data(len, K_F32), len, 2 * BS), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int ret = parse_mutated(&f, cases[i].mut, msg, sizeof(msg));

		if (ret != -EBADMSG || !strstr(msg, cases[i].want) || strncmp(msg, "t.zst: ", 7)) {
			printf("# case %s: ret %d, msg '%s'\n", cases[i].name, ret, msg);
			tap_cur_failed = 1;
		}
	}
	fixture_free(&f);
}

/* A valid but wrong width decodes to other bytes: verification refuses them. */
static void test_xform_wrong_width(void)
{
	size_t len = 7 * BS + 100, x;
	struct mv_zpack *z = NULL;
	struct mv_err err = {0};
	uint8_t *b, *buf = malloc(2 * BS);
	struct fixture f;
	int fd;

	CHECK_EQ_INT(fixture_xform(&f, kind_data(len, K_F32), len, 2 * BS), 0);
	b = malloc(f.packed_len);
	memcpy(b, f.packed, f.packed_len);
	x = xform_off(b, f.packed_len) + ZP_XFORM_HEADER;
	CHECK_EQ_INT(b[x + 1], 4);
	b[x + 1] = 2;
	b[x + 2] = 1;
	fd = memfd_with(b, f.packed_len);
	CHECK_EQ_INT(mv_zpack_open(fd, "t.zst", len, BS, &z, &err), 0);
	if (!z)
		goto out;
	for (uint32_t i = 1; i <= 2; i++) {
		CHECK_EQ_INT(mv_zpack_load_frame(z, fd, i, buf, &f.tree, &mv_mem_tree_ops, f.mt,
		                                 "t.zst", &err),
		             -EBADMSG);
		CHECK(strstr(err.msg, "t.zst: frame ") && strstr(err.msg, "fails verification"));
	}
	CHECK_EQ_INT(
	    mv_zpack_load_frame(z, fd, 0, buf, &f.tree, &mv_mem_tree_ops, f.mt, "t.zst", NULL), 0);
	CHECK_EQ_INT(
	    mv_zpack_load_frame(z, fd, 3, buf, &f.tree, &mv_mem_tree_ops, f.mt, "t.zst", NULL), 0);
out:
	mv_zpack_free(z);
	close(fd);
	free(b);
	free(buf);
	fixture_free(&f);
}

int main(void)
{
	TAP_RUN(test_round_trip_sizes);
	TAP_RUN(test_empty_file);
	TAP_RUN(test_writer_options);
	TAP_RUN(test_plain_zstd_compatible);
	TAP_RUN(test_lying_tables);
	TAP_RUN(test_table_wrong_signed_size);
	TAP_RUN(test_checksum_entries);
	TAP_RUN(test_decode_bounds);
	TAP_RUN(test_frame_verification);
	TAP_RUN(test_corrupt_bytes);
	TAP_RUN(test_cache_single_flight);
	TAP_RUN(test_cache_errors_not_cached);
	TAP_RUN(test_cache_bound);
	TAP_RUN(test_pread);
	TAP_RUN(test_pread_tampered);
	TAP_RUN(test_planes);
	TAP_RUN(test_xform_round_trip);
	TAP_RUN(test_xform_untouched_when_useless);
	TAP_RUN(test_xform_mixed);
	TAP_RUN(test_xform_zstd_d);
	TAP_RUN(test_xform_lying_tables);
	TAP_RUN(test_xform_wrong_width);
	TAP_DONE();
}
