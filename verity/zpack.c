// SPDX-License-Identifier: Apache-2.0
/*
 * zpack.c - zstd-packed files: the zstd seekable format (zpack_internal.h,
 * docs/packing.md), read under hard bounds and checked against the Merkle
 * tree of the plain bytes, plus `modelfs pack` for a whole model.
 *
 * Nothing in a packed file is trusted. The seek table is checked against
 * the signed size and the Merkle block size before anything is allocated
 * from it, and every frame is decompressed in one shot into a buffer of
 * exactly its declared size, so a zstd bomb stops at that size. What a frame
 * decompresses to is then verified block by block like plain data.
 *
 * `pack --tensor-transform` may store a frame as byte planes (all first
 * bytes of its 2- or 4-byte elements, then all second bytes, ...), which
 * zstd's entropy coder compresses better on weights. Which frames are
 * transformed is recorded in a table of its own (zpack_internal.h); reading
 * undoes the transform right after decompression, before verification, so
 * a lying table costs a failed block check, never wrong bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zstd.h>

#include "model_internal.h"
#include "verity.h"
#include "verity_internal.h"
#include "zpack_internal.h"

/* ------------------------------------------------------------------------
 * Names
 * ------------------------------------------------------------------------ */

void mv_zpack_file_name(const struct mv_measurement *m, char out[MV_ZPACK_NAME_MAX])
{
	size_t ds = mv_hash_digest_size(m->params.alg);

	mv_hex_encode(m->digest, ds, out);
	memcpy(out + 2 * ds, MV_ZPACK_EXT, sizeof(MV_ZPACK_EXT));
}

int mv_zpack_path(const char *model_dir, const struct mv_resource *r, char *out, size_t out_len)
{
	char name[MV_ZPACK_NAME_MAX];
	int n;

	if (!r->has_merkle)
		return -EINVAL;
	mv_zpack_file_name(&r->merkle, name);
	n = snprintf(out, out_len, "%s/%s/%s", model_dir, MV_PACKED_DIR, name);
	return n < 0 || (size_t)n >= out_len ? -ENAMETOOLONG : 0;
}

/* ------------------------------------------------------------------------
 * Per-thread scratch: a decompression context and a compressed-frame buffer
 * ------------------------------------------------------------------------ */

struct zscratch {
	ZSTD_DCtx *dctx;
	uint8_t *cbuf;
	size_t cap;
	uint8_t *pbuf; /* byte planes of a transformed frame, before joining */
	size_t pcap;
};

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p)
{
	struct zscratch *s = p;

	ZSTD_freeDCtx(s->dctx);
	free(s->cbuf);
	free(s->pbuf);
	free(s);
}

static void scratch_key_create(void)
{
	pthread_key_create(&scratch_key, scratch_free);
}

/* This thread's scratch with room for @need compressed bytes; NULL on ENOMEM. */
static struct zscratch *thread_scratch(size_t need)
{
	struct zscratch *s;

	pthread_once(&scratch_once, scratch_key_create);
	s = pthread_getspecific(scratch_key);
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return NULL;
		s->dctx = ZSTD_createDCtx();
		if (!s->dctx || pthread_setspecific(scratch_key, s)) {
			scratch_free(s);
			return NULL;
		}
	}
	return mv_buf_reserve(&s->cbuf, &s->cap, need) ? NULL : s;
}

/* ------------------------------------------------------------------------
 * Byte planes
 * ------------------------------------------------------------------------ */

static bool width_known(unsigned w)
{
	return w == 1 || w == 2 || w == 4;
}

/*
 * Where each plane of a @len-byte frame starts in its planes: plane p holds
 * whole + (p < rem) bytes (the short last element adds to the first rem).
 */
static void plane_starts(unsigned width, size_t len, size_t start[4], size_t *whole, size_t *rem)
{
	size_t o = 0;

	*whole = len / width;
	*rem = len % width;
	for (unsigned p = 0; p < width; p++) {
		start[p] = o;
		o += *whole + (p < *rem);
	}
}

/*
 * One pass over the elements, the width spelled out so that the compiler
 * unrolls it: this runs on every frame read, next to decompression.
 */
int mv_zpack_planes_split(unsigned width, const uint8_t *src, uint8_t *dst, size_t len)
{
	size_t st[4], whole, rem, i;
	uint8_t *a = dst, *b = dst, *c = dst, *d = dst;

	if (!width_known(width))
		return -EINVAL;
	plane_starts(width, len, st, &whole, &rem);
	if (width == 1) {
		memcpy(dst, src, len);
		return 0;
	}
	a += st[0];
	b += st[1];
	if (width == 2) {
		for (i = 0; i < whole; i++, src += 2) {
			a[i] = src[0];
			b[i] = src[1];
		}
	} else {
		c += st[2];
		d += st[3];
		for (i = 0; i < whole; i++, src += 4) {
			a[i] = src[0];
			b[i] = src[1];
			c[i] = src[2];
			d[i] = src[3];
		}
	}
	for (unsigned p = 0; p < rem; p++) /* the short last element */
		dst[st[p] + whole] = src[p];
	return 0;
}

int mv_zpack_planes_join(unsigned width, const uint8_t *src, uint8_t *dst, size_t len)
{
	size_t st[4], whole, rem, i;
	const uint8_t *a = src, *b = src, *c = src, *d = src;

	if (!width_known(width))
		return -EINVAL;
	plane_starts(width, len, st, &whole, &rem);
	if (width == 1) {
		memcpy(dst, src, len);
		return 0;
	}
	a += st[0];
	b += st[1];
	if (width == 2) {
		for (i = 0; i < whole; i++, dst += 2) {
			dst[0] = a[i];
			dst[1] = b[i];
		}
	} else {
		c += st[2];
		d += st[3];
		for (i = 0; i < whole; i++, dst += 4) {
			dst[0] = a[i];
			dst[1] = b[i];
			dst[2] = c[i];
			dst[3] = d[i];
		}
	}
	for (unsigned p = 0; p < rem; p++)
		dst[p] = src[st[p] + whole];
	return 0;
}

/* ------------------------------------------------------------------------
 * Seek table
 * ------------------------------------------------------------------------ */

void mv_zpack_free(struct mv_zpack *z)
{
	if (!z)
		return;
	free(z->offset);
	free(z->width);
	free(z);
}

/* Reads the footer: frame count and entry size. */
static int parse_footer(const uint8_t *f, const char *name, uint32_t *n, size_t *esz,
                        struct mv_err *err)
{
	uint8_t desc = f[4];

	if (mv_get_le32(f + 5) != ZP_SEEKABLE_MAGIC)
		return mv_err_set(err, -EBADMSG, "%s: not a packed file (no zstd seek table)",
		                  name);
	if (desc & ZP_DESC_RESERVED)
		return mv_err_set(err, -EBADMSG, "%s: seek table uses reserved flags 0x%02x", name,
		                  desc);
	*n = mv_get_le32(f);
	*esz = desc & ZP_DESC_CHECKSUM ? ZP_ENTRY_CSUM : ZP_ENTRY;
	return 0;
}

/*
 * Total size of the seek-table frame for @n entries of @esz bytes, after
 * checking that @n is possible for @data_size: every frame but the last
 * holds at least one whole block, so there are at most ceil(size / block).
 */
static int table_size(uint32_t n, size_t esz, uint64_t data_size, uint32_t block_size,
                      uint64_t file_size, const char *name, uint64_t *out, struct mv_err *err)
{
	uint64_t max_frames = data_size / block_size + (data_size % block_size != 0);

	if (n > max_frames)
		return mv_err_set(err, -EBADMSG,
		                  "%s: seek table lists %" PRIu32 " frames, more than %" PRIu64
		                  " bytes can fill",
		                  name, n, data_size);
	*out = ZP_SKIP_HEADER + (uint64_t)n * esz + ZP_FOOTER;
	if (*out > file_size)
		return mv_err_set(err, -EBADMSG, "%s: seek table larger than the file", name);
	return 0;
}

/* Checks one entry's sizes against the frame size; @last: the final frame. */
static int check_entry(uint32_t i, uint32_t csize, uint32_t dsize, uint32_t frame, bool last,
                       const char *name, struct mv_err *err)
{
	if (dsize == 0 || dsize > frame || (!last && dsize != frame))
		return mv_err_set(err, -EBADMSG,
		                  "%s: seek table entry %" PRIu32 " declares %" PRIu32
		                  " plain bytes, frames hold %" PRIu32,
		                  name, i, dsize, frame);
	/* A frame can never need more than this; anything larger is not ours. */
	if (csize == 0 || csize > ZSTD_compressBound(dsize))
		return mv_err_set(err, -EBADMSG,
		                  "%s: seek table entry %" PRIu32
		                  " has an impossible compressed size %" PRIu32,
		                  name, i, csize);
	return 0;
}

/* Checks the frame size of entry 0 against the Merkle block size. */
static int check_frame_size(uint32_t frame, uint32_t n, uint32_t block_size, const char *name,
                            struct mv_err *err)
{
	if (frame == 0 || frame > MV_ZPACK_MAX_FRAME)
		return mv_err_set(err, -EBADMSG, "%s: frame size %" PRIu32 " out of range", name,
		                  frame);
	/* Frames must start on block boundaries; a lone frame may be short. */
	if (n > 1 && frame % block_size)
		return mv_err_set(err, -EBADMSG,
		                  "%s: frame size %" PRIu32 " is not a multiple of the %" PRIu32
		                  "-byte Merkle block",
		                  name, frame, block_size);
	return 0;
}

/*
 * Fills z->offset from the entries; checks their sizes and that the frames
 * end at or before @table_start (parse_gap checks what lies between).
 */
static int parse_entries(struct mv_zpack *z, const uint8_t *e, size_t esz, uint32_t block_size,
                         uint64_t table_start, const char *name, struct mv_err *err)
{
	uint64_t off = 0, plain = 0;
	int ret;

	z->frame_size = z->n_frames ? mv_get_le32(e + 4) : 0;
	if (z->n_frames) {
		ret = check_frame_size(z->frame_size, z->n_frames, block_size, name, err);
		if (ret)
			return ret;
	}
	for (uint32_t i = 0; i < z->n_frames; i++, e += esz) {
		uint32_t csize = mv_get_le32(e), dsize = mv_get_le32(e + 4);

		ret = check_entry(i, csize, dsize, z->frame_size, i + 1 == z->n_frames, name, err);
		if (ret)
			return ret;
		z->offset[i] = off;
		off += csize; /* <= 2^32 frames of < 2^32 bytes: no overflow */
		plain += dsize;
	}
	z->offset[z->n_frames] = off;
	if (plain != z->data_size)
		return mv_err_set(err, -EBADMSG,
		                  "%s: frames hold %" PRIu64
		                  " plain bytes, the signature says %" PRIu64,
		                  name, plain, z->data_size);
	if (off > table_start)
		return mv_err_set(err, -EBADMSG,
		                  "%s: frames take %" PRIu64 " bytes, the file has %" PRIu64
		                  " before its seek table",
		                  name, off, table_start);
	return 0;
}

/* Checks the widths of a transform table @w of z->n_frames bytes and keeps a copy. */
static int parse_widths(struct mv_zpack *z, const uint8_t *w, const char *name, struct mv_err *err)
{
	for (uint32_t i = 0; i < z->n_frames; i++)
		if (!width_known(w[i]))
			return mv_err_set(err, -EBADMSG,
			                  "%s: transform table gives frame %" PRIu32
			                  " an unknown element width %u",
			                  name, i, w[i]);
	z->width = malloc(z->n_frames ? z->n_frames : 1);
	if (!z->width)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", name);
	memcpy(z->width, w, z->n_frames);
	return 0;
}

/*
 * Checks what lies between the last frame and the seek table: nothing, or
 * exactly one transform table for z->n_frames frames. @x: those @gap bytes
 * (within the tail given), or NULL if the tail does not hold them.
 */
static int parse_gap(struct mv_zpack *z, const uint8_t *x, uint64_t gap, const char *name,
                     struct mv_err *err)
{
	uint64_t count;

	if (gap == 0)
		return 0;
	if (!x || gap < ZP_XFORM_HEADER || mv_get_le32(x) != ZP_XFORM_MAGIC)
		return mv_err_set(err, -EBADMSG,
		                  "%s: %" PRIu64 " bytes between the last frame and the seek table "
		                  "are not a transform table for %" PRIu32 " frames",
		                  name, gap, z->n_frames);
	if (mv_get_le32(x + 4) != gap - ZP_SKIP_HEADER)
		return mv_err_set(err, -EBADMSG, "%s: transform table frame size is wrong", name);
	if (mv_get_le32(x + 8) != ZP_XFORM_ID)
		return mv_err_set(err, -EBADMSG,
		                  "%s: transform table has an unknown id 0x%08" PRIx32, name,
		                  mv_get_le32(x + 8));
	count = gap - ZP_XFORM_HEADER;
	if (count != z->n_frames)
		return mv_err_set(err, -EBADMSG,
		                  "%s: transform table lists %" PRIu64
		                  " frames, the seek table %" PRIu32,
		                  name, count, z->n_frames);
	return parse_widths(z, x + ZP_XFORM_HEADER, name, err);
}

int mv_zpack_parse(const uint8_t *tail, size_t tail_len, uint64_t file_size, const char *name,
                   uint64_t data_size, uint32_t block_size, struct mv_zpack **out,
                   struct mv_err *err)
{
	struct mv_zpack *z = NULL;
	uint64_t tsize = 0;
	size_t esz = 0;
	uint32_t n = 0;
	const uint8_t *t;
	int ret;

	*out = NULL;
	if (block_size == 0 || tail_len > file_size)
		return mv_err_set(err, -EINVAL, "%s: bad arguments", name);
	if (tail_len < ZP_SKIP_HEADER + ZP_FOOTER)
		return mv_err_set(err, -EBADMSG, "%s: too small for a zstd seek table", name);
	ret = parse_footer(tail + tail_len - ZP_FOOTER, name, &n, &esz, err);
	if (!ret)
		ret = table_size(n, esz, data_size, block_size, file_size, name, &tsize, err);
	if (ret)
		return ret;
	if (tsize > tail_len)
		return mv_err_set(err, -EINVAL, "%s: seek table not in the bytes given", name);
	t = tail + tail_len - tsize;
	if (mv_get_le32(t) != ZP_SKIPPABLE_MAGIC || mv_get_le32(t + 4) != tsize - ZP_SKIP_HEADER)
		return mv_err_set(err, -EBADMSG, "%s: seek table frame header is wrong", name);
	z = calloc(1, sizeof(*z));
	if (z)
		z->offset = malloc(((size_t)n + 1) * sizeof(*z->offset));
	if (!z || !z->offset) {
		ret = mv_err_set(err, -ENOMEM, "%s: out of memory", name);
		goto out;
	}
	z->data_size = data_size;
	z->file_size = file_size;
	z->n_frames = n;
	ret = parse_entries(z, t + ZP_SKIP_HEADER, esz, block_size, file_size - tsize, name, err);
	if (!ret) {
		/* A transform table, if any, lies right before the seek table. */
		uint64_t gap = file_size - tsize - z->offset[n];

		ret = parse_gap(z, gap <= tail_len - tsize ? t - gap : NULL, gap, name, err);
	}
	if (!ret) {
		*out = z;
		z = NULL;
	}
out:
	mv_zpack_free(z);
	return ret;
}

int mv_zpack_open(int fd, const char *name, uint64_t data_size, uint32_t block_size,
                  struct mv_zpack **out, struct mv_err *err)
{
	uint8_t foot[ZP_FOOTER], *tail = NULL;
	uint64_t tsize = 0;
	struct stat st;
	size_t esz = 0;
	uint32_t n = 0;
	ssize_t got;
	int ret;

	*out = NULL;
	if (fstat(fd, &st) < 0)
		return mv_err_set(err, -errno, "%s: cannot stat: %s", name, strerror(errno));
	if ((uint64_t)st.st_size < ZP_SKIP_HEADER + ZP_FOOTER || block_size == 0)
		return mv_err_set(err, -EBADMSG, "%s: too small for a zstd seek table", name);
	got = mv_pread_full(fd, foot, ZP_FOOTER, (uint64_t)st.st_size - ZP_FOOTER);
	if (got != ZP_FOOTER)
		return mv_err_set(err, got < 0 ? (int)got : -EBADMSG, "%s: cannot read: %s", name,
		                  got < 0 ? strerror((int)-got) : "truncated");
	ret = parse_footer(foot, name, &n, &esz, err);
	if (!ret)
		ret = table_size(n, esz, data_size, block_size, (uint64_t)st.st_size, name, &tsize,
		                 err);
	if (ret)
		return ret;
	/*
	 * With room for a transform table before it: tsize + 12 + n <= 29 + 13 *
	 * (data_size / block_size + 1), bounded by the signed size.
	 */
	tsize += ZP_XFORM_HEADER + (uint64_t)n;
	if (tsize > (uint64_t)st.st_size)
		tsize = (uint64_t)st.st_size;
	if (tsize > SIZE_MAX || !(tail = malloc((size_t)tsize)))
		return mv_err_set(err, -ENOMEM, "%s: out of memory", name);
	got = mv_pread_full(fd, tail, (size_t)tsize, (uint64_t)st.st_size - tsize);
	if (got != (ssize_t)tsize)
		ret = mv_err_set(err, got < 0 ? (int)got : -EBADMSG, "%s: cannot read: %s", name,
		                 got < 0 ? strerror((int)-got) : "truncated");
	else
		ret = mv_zpack_parse(tail, (size_t)tsize, (uint64_t)st.st_size, name, data_size,
		                     block_size, out, err);
	free(tail);
	return ret;
}

/* ------------------------------------------------------------------------
 * Frames
 * ------------------------------------------------------------------------ */

/* Decompresses with @dctx; see mv_zpack_decode_frame. */
static int decode_with(ZSTD_DCtx *dctx, const uint8_t *src, size_t src_len, uint8_t *out,
                       size_t out_len, const char *name, uint32_t idx, struct mv_err *err)
{
	unsigned long long declared;
	size_t n;

	/* Only modern zstd frames: no skippable or legacy-format frames. */
	if (src_len < 4 || mv_get_le32(src) != ZP_ZSTD_MAGIC)
		return mv_err_set(err, -EBADMSG, "%s: frame %" PRIu32 " is not a zstd frame", name,
		                  idx);
	declared = ZSTD_getFrameContentSize(src, src_len);
	if (declared != out_len)
		return mv_err_set(err, -EBADMSG,
		                  "%s: frame %" PRIu32
		                  " does not declare the %zu bytes the seek table says",
		                  name, idx, out_len);
	if (ZSTD_findFrameCompressedSize(src, src_len) != src_len)
		return mv_err_set(err, -EBADMSG,
		                  "%s: frame %" PRIu32 " does not fill its %zu bytes exactly", name,
		                  idx, src_len);
	/* One shot into exactly out_len bytes: zstd cannot write past them. */
	n = ZSTD_decompressDCtx(dctx, out, out_len, src, src_len);
	if (ZSTD_isError(n))
		return mv_err_set(err, -EBADMSG, "%s: frame %" PRIu32 " is corrupt (%s)", name, idx,
		                  ZSTD_getErrorName(n));
	if (n != out_len)
		return mv_err_set(err, -EBADMSG,
		                  "%s: frame %" PRIu32 " decompressed to %zu bytes, not %zu", name,
		                  idx, n, out_len);
	return 0;
}

int mv_zpack_decode_frame(const void *src, size_t src_len, uint8_t *out, size_t out_len,
                          const char *name, uint32_t idx, struct mv_err *err)
{
	struct zscratch *s = thread_scratch(0);

	if (!s)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", name);
	return decode_with(s->dctx, src, src_len, out, out_len, name, idx, err);
}

int mv_zpack_read_frame(const struct mv_zpack *z, int fd, uint32_t idx, uint8_t *out,
                        const char *name, struct mv_err *err)
{
	uint32_t len = mv_zpack_frame_len(z, idx);
	struct zscratch *s;
	unsigned width;
	size_t clen;
	ssize_t got;
	int ret;

	if (idx >= z->n_frames)
		return mv_err_set(err, -EINVAL, "%s: frame %" PRIu32 " out of range", name, idx);
	/* parse_entries bounded this by ZSTD_compressBound(MV_ZPACK_MAX_FRAME). */
	clen = (size_t)(z->offset[idx + 1] - z->offset[idx]);
	s = thread_scratch(clen);
	if (!s)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", name);
	got = mv_pread_full(fd, s->cbuf, clen, z->offset[idx]);
	if (got < 0)
		return mv_err_set(err, (int)got, "%s: cannot read frame %" PRIu32 ": %s", name, idx,
		                  strerror((int)-got));
	if ((size_t)got != clen)
		return mv_err_set(err, -EBADMSG, "%s: frame %" PRIu32 " is truncated", name, idx);
	width = z->width ? z->width[idx] : 1;
	if (width == 1)
		return decode_with(s->dctx, s->cbuf, clen, out, len, name, idx, err);
	/* Byte planes: decompress under the same bound, then put the bytes back. */
	if (mv_buf_reserve(&s->pbuf, &s->pcap, len))
		return mv_err_set(err, -ENOMEM, "%s: out of memory", name);
	ret = decode_with(s->dctx, s->cbuf, clen, s->pbuf, len, name, idx, err);
	if (!ret && mv_zpack_planes_join(width, s->pbuf, out, len))
		ret = mv_err_set(err, -EBADMSG, "%s: frame %" PRIu32 " has an unknown width %u",
		                 name, idx, width);
	return ret;
}

/* True if @z's frames line up with @t's blocks and sizes. */
static bool zpack_fits_tree(const struct mv_zpack *z, const struct mv_tree *t)
{
	return z->data_size == t->params.data_size &&
	       (z->n_frames <= 1 || z->frame_size % t->params.block_size == 0);
}

int mv_zpack_load_frame(const struct mv_zpack *z, int fd, uint32_t idx, uint8_t *out,
                        const struct mv_tree *t, const struct mv_hblock_ops *ops, void *ctx,
                        const char *name, struct mv_err *err)
{
	struct mv_verify_failure fail = {.level = -1};
	uint64_t start = (uint64_t)idx * z->frame_size;
	uint32_t len = mv_zpack_frame_len(z, idx);
	int ret;

	if (!zpack_fits_tree(z, t))
		return mv_err_set(err, -EINVAL, "%s: seek table does not fit the signed tree",
		                  name);
	ret = mv_zpack_read_frame(z, fd, idx, out, name, err);
	if (ret)
		return ret;
	ret = mv_verify_blocks(t, ops, ctx, start >> t->geo.log_block_size, out, len, &fail);
	if (ret == -EBADMSG)
		return mv_err_set(err, ret,
		                  "%s: frame %" PRIu32 " (bytes %" PRIu64 "-%" PRIu64
		                  ") fails verification at %s block %" PRIu64,
		                  name, idx, start, start + len - 1,
		                  fail.level < 0 ? "data" : "hash", fail.block);
	if (ret)
		return mv_err_set(err, ret, "%s: frame %" PRIu32 ": verification error: %s", name,
		                  idx, strerror(-ret));
	return 0;
}

/* ------------------------------------------------------------------------
 * Writer
 * ------------------------------------------------------------------------ */

/*
 * Trial compression for --tensor-transform: a sample of this many bytes from
 * the middle of each frame is compressed as it is and as 2- and 4-byte
 * planes; a width wins only if it saves at least 1/ZP_XFORM_MIN_GAIN of the
 * sample's plain compressed size (below that, zstd -d compatibility is worth
 * more). Measurements in docs/packing.md.
 */
#define ZP_XFORM_SAMPLE   (64u << 10)
#define ZP_XFORM_MIN_GAIN 50
/*
 * zstd level for byte planes (or the user's, if lower): on weights, level 1
 * compresses planes both better and about twice as fast as levels 2-19
 * (the sign/exponent plane is all short matches that higher levels take
 * and pay more for than Huffman-coded literals; docs/packing.md).
 */
#define ZP_PLANES_LEVEL 1

/* State of one mv_zpack_write call. */
struct zwriter {
	int in_fd, out_fd;
	const char *name;
	uint32_t frame;
	uint32_t n_frames;
	uint64_t data_size;
	uint64_t out_off;
	ZSTD_CCtx *cctx;
	ZSTD_CCtx *pctx; /* for byte planes, at ZP_PLANES_LEVEL (xform only) */
	struct mv_tree_builder *tree;
	uint8_t *in, *out, *table;
	size_t out_cap;
	bool xform;      /* --tensor-transform */
	bool any_planes; /* a frame was transformed: write the transform table */
	uint8_t *xtable; /* transform table: header, then n_frames widths (xform only) */
	uint8_t *planes; /* frame_size bytes of planes (xform only) */
};

/* Checks options against the tree; fills frame size and frame count. */
static int writer_params(struct zwriter *zw, const struct mv_tree_params *p,
                         const struct mv_zpack_opts *o, int *level, struct mv_err *err)
{
	uint64_t n;

	zw->frame = o && o->frame_size ? o->frame_size : MV_ZPACK_DEFAULT_FRAME;
	*level = o && o->level ? o->level : MV_ZPACK_DEFAULT_LEVEL;
	if (*level < ZSTD_minCLevel() || *level > ZSTD_maxCLevel())
		return mv_err_set(err, -EINVAL, "%s: zstd level %d out of range (%d..%d)", zw->name,
		                  *level, ZSTD_minCLevel(), ZSTD_maxCLevel());
	if (zw->frame % p->block_size || zw->frame > MV_ZPACK_MAX_FRAME)
		return mv_err_set(err, -EINVAL,
		                  "%s: frame size %" PRIu32 " must be a multiple of the %" PRIu32
		                  "-byte block and at most %u",
		                  zw->name, zw->frame, p->block_size, MV_ZPACK_MAX_FRAME);
	n = p->data_size / zw->frame + (p->data_size % zw->frame != 0);
	/* The table must fit a u32 frame count and the skippable frame's u32 size. */
	if (n > (UINT32_MAX - ZP_FOOTER) / ZP_ENTRY)
		return mv_err_set(err, -EFBIG, "%s: too large for frames of %" PRIu32 " bytes",
		                  zw->name, zw->frame);
	zw->n_frames = (uint32_t)n;
	zw->data_size = p->data_size;
	return 0;
}

/* Content size in every frame header (checked on read); no xxhash: the tree checks. */
static int set_cparams(ZSTD_CCtx *c, int level)
{
	if (ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 0)))
		return -EINVAL;
	return 0;
}

static int writer_init(struct zwriter *zw, const struct mv_tree_params *p,
                       const struct mv_zpack_opts *o, struct mv_err *err)
{
	int level, ret = writer_params(zw, p, o, &level, err);

	if (ret)
		return ret;
	zw->out_cap = ZSTD_compressBound(zw->frame);
	zw->cctx = ZSTD_createCCtx();
	zw->in = malloc(zw->frame);
	zw->out = malloc(zw->out_cap);
	zw->table = malloc((size_t)zw->n_frames * ZP_ENTRY + ZP_SKIP_HEADER + ZP_FOOTER);
	zw->xform = o && o->tensor_transform;
	if (zw->xform) {
		zw->xtable = malloc((size_t)zw->n_frames + ZP_XFORM_HEADER);
		zw->planes = malloc(zw->frame);
		zw->pctx = ZSTD_createCCtx();
	}
	if (!zw->cctx || !zw->in || !zw->out || !zw->table ||
	    (zw->xform && (!zw->xtable || !zw->planes || !zw->pctx)))
		return mv_err_set(err, -ENOMEM, "%s: out of memory", zw->name);
	if (set_cparams(zw->cctx, level) ||
	    (zw->xform && set_cparams(zw->pctx, level < ZP_PLANES_LEVEL ? level : ZP_PLANES_LEVEL)))
		return mv_err_set(err, -EINVAL, "%s: cannot set zstd parameters", zw->name);
	ret = mv_tree_builder_new(p, NULL, NULL, &zw->tree);
	if (ret)
		return mv_err_set(err, ret, "%s: cannot start the tree: %s", zw->name,
		                  strerror(-ret));
	return 0;
}

static void writer_free(struct zwriter *zw)
{
	ZSTD_freeCCtx(zw->cctx);
	ZSTD_freeCCtx(zw->pctx);
	mv_tree_builder_free(zw->tree);
	free(zw->in);
	free(zw->out);
	free(zw->table);
	free(zw->xtable);
	free(zw->planes);
}

/*
 * Compresses the @len bytes of zw->planes, @width planes, into zw->out as one
 * frame that ends a zstd block at every plane boundary (ZSTD_e_flush): each
 * plane then gets entropy tables of its own, which is where the gain is (one
 * block holding all planes would share one Huffman table and gain nothing).
 * Returns the frame's size, or 0 if it does not fit ZSTD_compressBound(@len),
 * the reader's bound on a frame.
 */
static size_t compress_planes(struct zwriter *zw, unsigned width, size_t len)
{
	ZSTD_outBuffer out = {zw->out, ZSTD_compressBound(len), 0};
	size_t whole = len / width, rem = len % width, off = 0, r;

	if (ZSTD_isError(ZSTD_CCtx_reset(zw->pctx, ZSTD_reset_session_only)) ||
	    ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(zw->pctx, len)))
		return 0;
	for (unsigned p = 0; p < width; p++) {
		ZSTD_inBuffer in = {zw->planes + off, whole + (p < rem), 0};
		ZSTD_EndDirective mode = p + 1 == width ? ZSTD_e_end : ZSTD_e_flush;

		/* r > 0: output pending; with out full, no progress is possible. */
		do {
			size_t before = out.pos + in.pos;

			r = ZSTD_compressStream2(zw->pctx, &out, &in, mode);
			if (ZSTD_isError(r) || (r && out.pos + in.pos == before))
				goto fail;
		} while (r || in.pos < in.size);
		off += in.size;
	}
	return out.pos;
fail:
	ZSTD_CCtx_reset(zw->pctx, ZSTD_reset_session_only);
	return 0;
}

/* Compresses @len bytes of @src as @width planes into zw->out; 0 on failure. */
static size_t compress_as(struct zwriter *zw, unsigned width, const uint8_t *src, size_t len)
{
	size_t c;

	if (width > 1) {
		mv_zpack_planes_split(width, src, zw->planes, len);
		return compress_planes(zw, width, len);
	}
	c = ZSTD_compress2(zw->cctx, zw->out, zw->out_cap, src, len);
	return ZSTD_isError(c) ? 0 : c;
}

/*
 * Element width for a frame of @len bytes at @in: the one whose planes
 * compress best on a sample, if it beats narrower ones by the margin. The
 * sample starts at a multiple of 4 from the frame start (frames start at
 * multiples of the block size), so its planes are the frame's planes.
 */
static unsigned choose_width(struct zwriter *zw, const uint8_t *in, size_t len)
{
	static const unsigned widths[] = {2, 4};
	size_t n = len < ZP_XFORM_SAMPLE ? len : ZP_XFORM_SAMPLE;
	const uint8_t *sample = in + (((len - n) / 2) & ~(size_t)3);
	size_t plain = compress_as(zw, 1, sample, n), best;
	unsigned pick = 1;

	if (!plain)
		return 1;
	best = plain - plain / ZP_XFORM_MIN_GAIN;
	for (size_t i = 0; i < sizeof(widths) / sizeof(widths[0]); i++) {
		size_t c = compress_as(zw, widths[i], sample, n);

		/* A wider split must beat a narrower one by the margin too. */
		if (c && c < best) {
			best = c - c / ZP_XFORM_MIN_GAIN;
			pick = widths[i];
		}
	}
	return pick;
}

/* Reads, measures, compresses and writes frame @i. */
static int write_frame(struct zwriter *zw, uint32_t i)
{
	uint64_t start = (uint64_t)i * zw->frame;
	size_t len =
	    zw->data_size - start < zw->frame ? (size_t)(zw->data_size - start) : zw->frame;
	ssize_t got = mv_pread_full(zw->in_fd, zw->in, len, start);
	unsigned width = 1;
	size_t c = 0;
	int ret;

	if (got < 0)
		return (int)got;
	if ((size_t)got != len)
		return -EAGAIN; /* the file shrank under us */
	ret = mv_tree_builder_update(zw->tree, zw->in, len);
	if (ret)
		return ret;
	if (zw->xform) {
		width = choose_width(zw, zw->in, len);
		c = width > 1 ? compress_as(zw, width, zw->in, len) : 0;
		if (!c)
			width = 1; /* planes did not fit the bound: store the frame as it is */
		zw->xtable[ZP_XFORM_HEADER + i] = (uint8_t)width;
		zw->any_planes |= width > 1;
	}
	if (width == 1)
		c = compress_as(zw, 1, zw->in, len);
	if (!c)
		return -EIO;
	ret = mv_pwrite_full(zw->out_fd, zw->out, c, zw->out_off);
	if (ret)
		return ret;
	zw->out_off += c;
	mv_put_le32(zw->table + ZP_SKIP_HEADER + (size_t)i * ZP_ENTRY, (uint32_t)c);
	mv_put_le32(zw->table + ZP_SKIP_HEADER + (size_t)i * ZP_ENTRY + 4, (uint32_t)len);
	return 0;
}

/*
 * Appends the transform table, only if a frame was transformed: a file
 * without one stays a plain seekable file that `zstd -d` restores.
 */
static int write_xform(struct zwriter *zw)
{
	size_t len = ZP_XFORM_HEADER + (size_t)zw->n_frames;
	int ret;

	if (!zw->any_planes)
		return 0;
	/* n_frames <= (UINT32_MAX - 9) / 8 (writer_params): 4 + n fits a u32. */
	mv_put_le32(zw->xtable, ZP_XFORM_MAGIC);
	mv_put_le32(zw->xtable + 4, (uint32_t)(len - ZP_SKIP_HEADER));
	mv_put_le32(zw->xtable + 8, ZP_XFORM_ID);
	ret = mv_pwrite_full(zw->out_fd, zw->xtable, len, zw->out_off);
	if (!ret)
		zw->out_off += len;
	return ret;
}

/* Appends the seek table in its skippable frame. */
static int write_table(struct zwriter *zw)
{
	size_t entries = (size_t)zw->n_frames * ZP_ENTRY;
	uint8_t *t = zw->table, *f = t + ZP_SKIP_HEADER + entries;
	int ret;

	mv_put_le32(t, ZP_SKIPPABLE_MAGIC);
	mv_put_le32(t + 4, (uint32_t)(entries + ZP_FOOTER));
	mv_put_le32(f, zw->n_frames);
	f[4] = 0; /* no checksums */
	mv_put_le32(f + 5, ZP_SEEKABLE_MAGIC);
	ret = mv_pwrite_full(zw->out_fd, t, ZP_SKIP_HEADER + entries + ZP_FOOTER, zw->out_off);
	if (!ret)
		zw->out_off += ZP_SKIP_HEADER + entries + ZP_FOOTER;
	return ret;
}

int mv_zpack_write(int in_fd, const struct mv_tree_params *p, const struct mv_zpack_opts *o,
                   int out_fd, const char *name, struct mv_measurement *m, uint64_t *packed_size,
                   struct mv_err *err)
{
	struct zwriter zw = {.in_fd = in_fd, .out_fd = out_fd, .name = name};
	int ret = writer_init(&zw, p, o, err);

	for (uint32_t i = 0; !ret && i < zw.n_frames; i++) {
		ret = write_frame(&zw, i);
		if (ret == -EAGAIN)
			ret = mv_err_set(err, ret, "%s: changed while packing", name);
		else if (ret)
			ret = mv_err_set(err, ret, "%s: packing failed: %s", name, strerror(-ret));
	}
	if (!ret) {
		ret = write_xform(&zw);
		if (!ret)
			ret = write_table(&zw);
		if (ret)
			mv_err_set(err, ret, "%s: cannot write the packed file: %s", name,
			           strerror(-ret));
	}
	if (!ret)
		ret = mv_tree_builder_final(zw.tree, m);
	if (!ret)
		*packed_size = zw.out_off;
	writer_free(&zw);
	return ret;
}

/* ------------------------------------------------------------------------
 * Measuring a whole packed file
 * ------------------------------------------------------------------------ */

/* Feeds every frame of @z to the hashes. */
static int measure_frames(const struct mv_zpack *z, int fd, const char *name, EVP_MD_CTX *sha,
                          struct mv_tree_builder *tree, struct mv_err *err)
{
	uint8_t *buf = malloc(z->frame_size ? z->frame_size : 1);
	int ret = buf ? 0 : mv_err_set(err, -ENOMEM, "%s: out of memory", name);

	for (uint32_t i = 0; !ret && i < z->n_frames; i++) {
		uint32_t len = mv_zpack_frame_len(z, i);

		ret = mv_zpack_read_frame(z, fd, i, buf, name, err);
		if (!ret && sha && !EVP_DigestUpdate(sha, buf, len))
			ret = mv_err_set(err, -EIO, "%s: SHA-256 failed", name);
		if (!ret)
			ret = mv_tree_builder_update(tree, buf, len);
	}
	free(buf);
	return ret;
}

int mv_zpack_measure(int fd, const char *name, const struct mv_tree_params *p, uint8_t *sha256,
                     mv_tree_sink_fn sink, void *sink_ctx, struct mv_measurement *m,
                     struct mv_err *err)
{
	struct mv_tree_builder *tree = NULL;
	struct mv_zpack *z = NULL;
	EVP_MD_CTX *sha = NULL;
	int ret;

	ret = mv_zpack_open(fd, name, p->data_size, p->block_size, &z, err);
	if (ret)
		return ret;
	if (sha256) {
		sha = EVP_MD_CTX_new();
		if (!sha || !EVP_DigestInit_ex(sha, EVP_sha256(), NULL)) {
			ret = mv_err_set(err, -ENOMEM, "%s: cannot start SHA-256", name);
			goto out;
		}
	}
	ret = mv_tree_builder_new(p, sink, sink_ctx, &tree);
	if (ret) {
		mv_err_set(err, ret, "%s: cannot start the tree: %s", name, strerror(-ret));
		goto out;
	}
	ret = measure_frames(z, fd, name, sha, tree, err);
	if (!ret && sha && !EVP_DigestFinal_ex(sha, sha256, NULL))
		ret = mv_err_set(err, -EIO, "%s: SHA-256 failed", name);
	if (!ret)
		ret = mv_tree_builder_final(tree, m);
	if (ret)
		mv_err_set(err, ret, "%s: %s", name, strerror(-ret));
out:
	mv_tree_builder_free(tree);
	EVP_MD_CTX_free(sha);
	mv_zpack_free(z);
	return ret;
}

/* ------------------------------------------------------------------------
 * Packing a model (modelfs pack)
 * ------------------------------------------------------------------------ */

enum pack_result { PACK_NONE, PACK_PACKED, PACK_KEPT, PACK_PLAIN, PACK_FAILED };

/* One signed file; filled by a worker, reported in name order. */
struct pack_item {
	const struct mv_resource *r;
	enum pack_result what;
	bool removed;
	int ret;
	uint64_t packed_bytes;
	char line[1536];
};

struct pack_ctx {
	const struct mv_walk *w;
	int dirfd; /* MODEL/.modelfs/packed */
	const struct mv_pack_opts *o;
	struct pack_item *items;
	size_t *order; /* largest first, for balance */
};

static void item_line(struct pack_item *it, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void item_line(struct pack_item *it, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(it->line, sizeof(it->line), fmt, ap);
	va_end(ap);
}

/* Records a failure with the error line; returns @ret. */
static int item_fail(struct pack_item *it, int ret, const struct mv_err *err)
{
	it->what = PACK_FAILED;
	it->ret = ret;
	snprintf(it->line, sizeof(it->line), "%s", err->msg[0] ? err->msg : strerror(-ret));
	return ret;
}

/*
 * Decompresses the packed file @zname in full and checks its fs-verity
 * digest against the signed one. *size gets the packed file's size.
 */
static int check_packed(struct pack_ctx *c, const struct mv_resource *r, const char *zname,
                        uint64_t *size, struct mv_err *err)
{
	char shown[sizeof(MV_PACKED_DIR) + MV_ZPACK_NAME_MAX];
	struct mv_measurement m;
	struct stat st;
	int fd, ret;

	snprintf(shown, sizeof(shown), "%s/%s", MV_PACKED_DIR, zname);
	fd = openat(c->dirfd, zname, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return mv_err_set(err, -errno, "%s: cannot open: %s", shown, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		ret = mv_err_set(err, -EINVAL, "%s: not a regular file", shown);
		goto out;
	}
	*size = (uint64_t)st.st_size;
	ret = mv_zpack_measure(fd, shown, &r->merkle.params, NULL, NULL, NULL, &m, err);
	if (!ret && memcmp(m.digest, r->merkle.digest, mv_hash_digest_size(m.params.alg)) != 0)
		ret = mv_err_set(err, -EBADMSG, "%s: fs-verity digest of its contents is wrong",
		                 shown);
out:
	close(fd);
	return ret;
}

/* True if @size shrank to @packed by at least MV_ZPACK_MIN_SAVING percent. */
static bool worth_packing(uint64_t size, uint64_t packed)
{
	uint64_t min_saving =
	    size / 100 * MV_ZPACK_MIN_SAVING + size % 100 * MV_ZPACK_MIN_SAVING / 100;

	return packed < size && size - packed >= min_saving;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/*
 * Removes the plain file @name, walking its folders without following links,
 * and only if it is still the file @was (same inode, size, times).
 */
static int remove_plain(int root_fd, const char *name, const struct stat *was, struct mv_err *err)
{
	char buf[PATH_MAX], *comp, *next;
	struct stat now;
	int cur = root_fd, fd, ret = 0;

	if (strlen(name) >= sizeof(buf))
		return mv_err_set(err, -ENAMETOOLONG, "%s: name too long", name);
	strcpy(buf, name);
	comp = buf;
	while ((next = strchr(comp, '/'))) {
		*next = '\0';
		fd = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (cur != root_fd)
			close(cur);
		if (fd < 0)
			return mv_err_set(err, -errno, "%s: cannot open its folder: %s", name,
			                  strerror(errno));
		cur = fd;
		comp = next + 1;
	}
	if (fstatat(cur, comp, &now, AT_SYMLINK_NOFOLLOW) < 0)
		ret = mv_err_set(err, -errno, "%s: cannot stat: %s", name, strerror(errno));
	else if (!same_file(&now, was))
		ret = mv_err_set(err, -EAGAIN, "%s: changed while packing; not removed", name);
	else if (unlinkat(cur, comp, 0) < 0)
		ret = mv_err_set(err, -errno, "%s: cannot remove: %s", name, strerror(errno));
	if (cur != root_fd)
		close(cur);
	return ret;
}

/* Compresses @fd into the temporary file @a, created here in the packed folder. */
static int pack_to_temp(struct pack_ctx *c, const struct mv_resource *r, int fd,
                        struct mv_atomic_file *a, struct mv_measurement *m, uint64_t *size,
                        struct mv_err *err)
{
	int ret = mv_atomic_open(a, c->dirfd, NULL, 0644, err);

	if (!ret)
		ret = mv_zpack_write(fd, &r->merkle.params, &c->o->z, a->fd, r->name, m, size, err);
	return ret;
}

/*
 * Packs one plain file. Return: 0 packed, 1 left plain (too little saving),
 * or a negative errno (@err set).
 */
static int pack_new(struct pack_ctx *c, struct pack_item *it, int fd, const struct stat *st,
                    const char *zname, struct mv_err *err)
{
	const struct mv_resource *r = it->r;
	struct mv_atomic_file a;
	struct mv_measurement m;
	struct stat now;
	int ret;

	ret = pack_to_temp(c, r, fd, &a, &m, &it->packed_bytes, err);
	if (ret)
		goto out;
	if (fstat(fd, &now) < 0 || !same_file(&now, st)) {
		ret = mv_err_set(err, -EAGAIN, "%s: changed while packing", r->name);
		goto out;
	}
	if (memcmp(m.digest, r->merkle.digest, mv_hash_digest_size(m.params.alg)) != 0) {
		ret = mv_err_set(err, -EBADMSG,
		                 "%s: does not match its signature (fs-verity digest); not packed",
		                 r->name);
		goto out;
	}
	if (!worth_packing(r->merkle.params.data_size, it->packed_bytes)) {
		ret = 1;
		goto out;
	}
	/* Durable before it is renamed into place (and before any original goes). */
	a.name = zname;
	ret = mv_atomic_commit(&a, 0, err);
out:
	mv_atomic_abort(&a);
	return ret;
}

static double ratio(uint64_t plain, uint64_t packed)
{
	return packed ? (double)plain / (double)packed : 0.0;
}

/* Packs or re-checks one file; then removes its original if asked. */
static int pack_present(struct pack_ctx *c, struct pack_item *it, int fd, const struct stat *st,
                        const char *zname, struct mv_err *err)
{
	const struct mv_resource *r = it->r;
	struct mv_err cerr = {0};
	bool repacked = false;
	int ret;

	/* A good packed copy (same content: same name) is kept as it is. */
	ret = check_packed(c, r, zname, &it->packed_bytes, &cerr);
	if (ret) {
		repacked = ret != -ENOENT;
		ret = pack_new(c, it, fd, st, zname, err);
		if (ret < 0)
			return ret;
		if (ret == 1) {
			it->what = PACK_PLAIN;
			item_line(it, "%s: left plain (packed it would save less than %d%%)",
			          r->name, MV_ZPACK_MIN_SAVING);
			return 0;
		}
		/* Before an original goes, check what is on disk under the final name. */
		if (c->o->remove_original) {
			ret = check_packed(c, r, zname, &it->packed_bytes, err);
			if (ret)
				return ret;
		}
		it->what = PACK_PACKED;
	} else {
		it->what = PACK_KEPT;
	}
	if (c->o->remove_original) {
		ret = remove_plain(c->w->dirfd, r->name, st, err);
		if (ret)
			return ret;
		it->removed = true;
	}
	item_line(it, "%s: %s, %" PRIu64 " -> %" PRIu64 " bytes (ratio %.2f)%s", r->name,
	          it->what == PACK_KEPT ? "already packed"
	          : repacked            ? "packed (replaced a damaged packed copy)"
	                                : "packed",
	          r->merkle.params.data_size, it->packed_bytes,
	          ratio(r->merkle.params.data_size, it->packed_bytes),
	          it->removed ? ", original removed" : "");
	return 0;
}

/* Worker: one signed file. */
static void pack_one(void *arg, size_t k)
{
	struct pack_ctx *c = arg;
	struct pack_item *it = &c->items[c->order[k]];
	const struct mv_resource *r = it->r;
	char zname[MV_ZPACK_NAME_MAX];
	struct mv_err err = {0};
	struct stat st;
	int fd, ret;

	if (!r->has_merkle || r->merkle.params.data_size == 0) {
		it->what = PACK_PLAIN;
		item_line(it, "%s: left plain (%s)", r->name,
		          r->has_merkle ? "empty" : "no Merkle root in the signature");
		return;
	}
	mv_zpack_file_name(&r->merkle, zname);
	fd = mv_walk_open_file(c->w, r->name, &st, &err);
	if (fd == -ENOENT) {
		/* Original already removed: the packed copy must be there, and good. */
		struct mv_err zerr = {0}, line = {0};

		ret = check_packed(c, r, zname, &it->packed_bytes, &zerr);
		if (ret == -ENOENT) {
			item_fail(it, -ENOENT, &err);
		} else if (ret) {
			mv_err_set(&line, ret, "%s: packed copy is damaged: %s", r->name, zerr.msg);
			item_fail(it, ret, &line);
		} else {
			it->what = PACK_KEPT;
			item_line(it, "%s: already packed, original removed (ratio %.2f)", r->name,
			          ratio(r->merkle.params.data_size, it->packed_bytes));
		}
		return;
	}
	if (fd < 0) {
		item_fail(it, fd, &err);
		return;
	}
	if ((uint64_t)st.st_size != r->merkle.params.data_size)
		ret = mv_err_set(&err, -EBADMSG,
		                 "%s: size mismatch (signed %" PRIu64 " bytes, found %" PRIu64
		                 "); not packed",
		                 r->name, r->merkle.params.data_size, (uint64_t)st.st_size);
	else
		ret = pack_present(c, it, fd, &st, zname, &err);
	if (ret)
		item_fail(it, ret, &err);
	close(fd);
}

/* Opens (creating) MODEL/.modelfs/packed below the model's folder. */
static int open_packed_dir(const struct mv_walk *w, struct mv_err *err)
{
	int hidden, fd;

	if (mkdirat(w->dirfd, MV_HIDDEN_DIR, 0755) < 0 && errno != EEXIST)
		return mv_err_set(err, -errno, "%s/%s: cannot create: %s", w->root, MV_HIDDEN_DIR,
		                  strerror(errno));
	hidden = openat(w->dirfd, MV_HIDDEN_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (hidden < 0)
		return mv_err_set(err, -errno, "%s/%s: cannot open: %s", w->root, MV_HIDDEN_DIR,
		                  errno == ELOOP ? "symlink, refused" : strerror(errno));
	if (mkdirat(hidden, "packed", 0755) < 0 && errno != EEXIST) {
		fd = -errno;
	} else {
		fd = openat(hidden, "packed", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			fd = -errno;
	}
	close(hidden);
	if (fd < 0)
		return mv_err_set(err, fd, "%s/%s: cannot open: %s", w->root, MV_PACKED_DIR,
		                  fd == -ELOOP ? "symlink, refused" : strerror(-fd));
	return fd;
}

static int by_size_desc(const void *a, const void *b, void *arg)
{
	const struct pack_item *items = arg;
	uint64_t sa = items[*(const size_t *)a].r->merkle.params.data_size;
	uint64_t sb = items[*(const size_t *)b].r->merkle.params.data_size;

	return sa < sb ? 1 : sa > sb ? -1 : 0;
}

/* Reports every item in name order; fills @st. Returns the worst error. */
static int pack_report(const struct pack_ctx *c, size_t n, mv_problem_fn info, void *ictx,
                       mv_problem_fn problem, void *pctx, struct mv_pack_stats *st)
{
	int ret = 0;

	for (size_t i = 0; i < n; i++) {
		const struct pack_item *it = &c->items[i];

		if (it->what == PACK_FAILED) {
			st->failed++;
			if (problem)
				problem(pctx, it->line);
			if (ret != -EBADMSG)
				ret =
				    it->ret == -EBADMSG || it->ret == -EAGAIN ? -EBADMSG : it->ret;
			continue;
		}
		st->packed += it->what == PACK_PACKED;
		st->kept += it->what == PACK_KEPT;
		st->plain += it->what == PACK_PLAIN;
		st->removed += it->removed;
		if (it->what == PACK_PACKED || it->what == PACK_KEPT) {
			st->plain_bytes += it->r->merkle.params.data_size;
			st->packed_bytes += it->packed_bytes;
		}
		if (info && it->line[0])
			info(ictx, it->line);
	}
	return ret;
}

/* Checks the options once against every signed file, before any work. */
static int check_pack_opts(const struct mv_pack_opts *o, const struct mv_manifest *m,
                           const char *model_dir, struct mv_err *err)
{
	uint32_t frame = o->z.frame_size ? o->z.frame_size : MV_ZPACK_DEFAULT_FRAME;
	int level = o->z.level ? o->z.level : MV_ZPACK_DEFAULT_LEVEL;

	if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel())
		return mv_err_set(err, -EINVAL, "%s: zstd level %d out of range (%d..%d)",
		                  model_dir, level, ZSTD_minCLevel(), ZSTD_maxCLevel());
	if (frame > MV_ZPACK_MAX_FRAME)
		return mv_err_set(err, -EINVAL, "%s: frame size %" PRIu32 " above the limit %u",
		                  model_dir, frame, MV_ZPACK_MAX_FRAME);
	for (size_t i = 0; i < m->n_res; i++) {
		const struct mv_resource *r = &m->res[i];

		if (r->has_merkle && (frame == 0 || frame % r->merkle.params.block_size))
			return mv_err_set(err, -EINVAL,
			                  "%s: frame size %" PRIu32
			                  " is not a multiple of its %" PRIu32 "-byte Merkle block",
			                  r->name, frame, r->merkle.params.block_size);
	}
	return 0;
}

/* Reads model.sig (no trust check: files are checked against its digests). */
static int pack_manifest(const struct mv_walk *w, const struct mv_pack_opts *o,
                         struct mv_manifest **m, struct mv_err *err)
{
	char *sig = NULL;
	int ret;

	if (w->single_file)
		return mv_err_set(err, -EINVAL, "%s: pack works on model folders, not single files",
		                  w->root);
	if (o->signature)
		sig = strdup(o->signature);
	else if (asprintf(&sig, "%s/%s", w->root, MV_SIG_NAME) < 0)
		sig = NULL;
	if (!sig)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", w->root);
	ret = mv_sig_inspect(sig, NULL, NULL, m, err);
	free(sig);
	return ret;
}

int mv_model_pack(const char *model_dir, const struct mv_pack_opts *o, mv_problem_fn info,
                  void *ictx, mv_problem_fn problem, void *pctx, struct mv_pack_stats *stats)
{
	static const struct mv_pack_opts defaults;
	struct pack_ctx c = {.dirfd = -1};
	struct mv_pack_stats st = {0};
	struct mv_manifest *m = NULL;
	struct mv_err err = {0};
	struct mv_walk w;
	int ret;

	c.o = o ? o : &defaults;
	ret = mv_walk_open(&w, model_dir, NULL, 0, &err);
	if (ret) {
		if (problem)
			problem(pctx, err.msg);
		return ret;
	}
	c.w = &w;
	ret = pack_manifest(&w, c.o, &m, &err);
	if (!ret)
		ret = check_pack_opts(c.o, m, model_dir, &err);
	if (!ret) {
		c.dirfd = open_packed_dir(&w, &err);
		ret = c.dirfd < 0 ? c.dirfd : 0;
	}
	if (!ret) {
		c.items = calloc(m->n_res + 1, sizeof(*c.items));
		c.order = calloc(m->n_res + 1, sizeof(*c.order));
		if (!c.items || !c.order)
			ret = mv_err_set(&err, -ENOMEM, "%s: out of memory", model_dir);
	}
	if (ret) {
		if (problem)
			problem(pctx, err.msg);
		goto out;
	}
	for (size_t i = 0; i < m->n_res; i++) {
		c.items[i].r = &m->res[i];
		c.order[i] = i;
	}
	qsort_r(c.order, m->n_res, sizeof(*c.order), by_size_desc, c.items);
	mv_run_parallel(m->n_res, c.o->threads, pack_one, &c);
	/* Renames and removals durable together. */
	fsync(c.dirfd);
	ret = pack_report(&c, m->n_res, info, ictx, problem, pctx, &st);
out:
	if (stats)
		*stats = st;
	if (c.dirfd >= 0)
		close(c.dirfd);
	free(c.items);
	free(c.order);
	mv_manifest_free(m);
	mv_walk_free(&w);
	return ret;
}
