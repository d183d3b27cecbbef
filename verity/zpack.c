// SPDX-License-Identifier: Apache-2.0
/*
 * zpack.c - reading zstd-packed files: the zstd seekable format
 * (zpack_internal.h, docs/packing.md), read under hard bounds and checked
 * against the Merkle tree of the plain bytes. Writing one is zpack_write.c,
 * `modelfs pack` of a whole model zpack_model.c.
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
 *
 * These three files are libvpack (vpack.h), the only code that uses libzstd. The
 * names of packed copies (mv_zpack_file_name, mv_zpack_path) are the
 * core's, in treefile.c.
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
#include "verity_internal.h"
#include "vpack.h"
#include "zpack_internal.h"

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
