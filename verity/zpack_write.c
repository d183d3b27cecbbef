// SPDX-License-Identifier: Apache-2.0
/*
 * zpack_write.c - writing a zstd-packed file (mv_zpack_write): frames of a
 * whole number of Merkle blocks, each compressed on its own so that a read
 * decompresses only the frames it covers, the seek table after them, and
 * with --tensor-transform the byte-plane table of the frames stored as
 * planes. The tree of the plain bytes is built on the way, so the caller
 * can check that the packed file serves exactly the signed bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "verity_internal.h"
#include "vpack.h"
#include "zpack_internal.h"

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
