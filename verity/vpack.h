/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vpack.h - the public interface of libvpack: zstd-packed files and
 * `modelfs pack` for a whole model (zpack.c; the format's constants are in
 * zpack_internal.h). libvpack is built on libverity (verity.h) and libzstd,
 * but this header needs no zstd.h. The names of packed copies
 * (MV_PACKED_DIR, mv_zpack_file_name, mv_zpack_path) are the core's, in
 * verity.h, and so is `modelfs verify`, which measures packed copies through
 * mv_verify_opts.measure_packed = mv_zpack_measure.
 *
 *
 * A signed file may also be stored packed, as
 * MODEL/.modelfs/packed/<fs-verity digest hex>.zst, in the zstd seekable
 * format (docs/packing.md): independent zstd frames of frame_size plain bytes
 * each (a multiple of the Merkle block size; the last frame may be shorter),
 * then the seek table in a skippable frame. Plain `zstd -d` decompresses it,
 * unless `pack --tensor-transform` stored frames as byte planes (recorded in
 * a transform table before the seek table; mv_zpack_read_frame joins them
 * back before anything is verified).
 *
 * The signature is untouched: it covers the plain bytes. A packed file is
 * never trusted; each frame is decompressed into a buffer of exactly its
 * declared size and its whole blocks are checked against the same Merkle
 * tree as the plain file. Bad input gives -EBADMSG with a line naming the
 * file; memory stays bounded by the frame size.
 */
#ifndef MODELFS_VPACK_H
#define MODELFS_VPACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "verity.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MV_ZPACK_DEFAULT_FRAME (1u << 20)
#define MV_ZPACK_MAX_FRAME     (16u << 20) /* bound on one frame's plain bytes */
#define MV_ZPACK_DEFAULT_LEVEL 3
#define MV_ZPACK_MIN_SAVING    5 /* percent: pack only files that shrink this much */

/* A parsed, checked seek table. Immutable after mv_zpack_open; shareable. */
struct mv_zpack {
	uint64_t data_size;  /* plain bytes (the signed size) */
	uint64_t file_size;  /* packed bytes, seek table included */
	uint32_t frame_size; /* plain bytes of every frame but the last */
	uint32_t n_frames;
	uint64_t *offset; /* n_frames + 1 compressed offsets; offset[n] = table */
	/* Element width of each frame's byte-plane transform (1: none; 2, 4:
	 * the frame holds byte planes, see mv_zpack_planes_split); NULL when
	 * the file has no transform table (no frame transformed). */
	uint8_t *width;
};

/**
 * mv_zpack_open() - read and check the seek table of a packed file
 * @fd: in: the packed file (pread only; not kept)
 * @name: in: file name for messages
 * @data_size: in: the signed plain size the frames must add up to
 * @block_size: in: the Merkle block size frames must be multiples of
 * @out: out: the table; free with mv_zpack_free()
 * @err: out: error line naming @name
 *
 * The table is untrusted: frame sizes must be equal (but the last), a
 * multiple of @block_size, at most MV_ZPACK_MAX_FRAME, sum to @data_size, and
 * the compressed sizes must tile the file exactly. Memory is bounded by
 * @data_size / @block_size. Return: 0, -EBADMSG (bad table), -ENOMEM, -errno.
 */
int mv_zpack_open(int fd, const char *name, uint64_t data_size, uint32_t block_size,
                  struct mv_zpack **out, struct mv_err *err);

/* The same on the last bytes of a file held in memory (tests, fuzzing). */
int mv_zpack_parse(const uint8_t *tail, size_t tail_len, uint64_t file_size, const char *name,
                   uint64_t data_size, uint32_t block_size, struct mv_zpack **out,
                   struct mv_err *err);

void mv_zpack_free(struct mv_zpack *z);

/* Plain bytes in frame @idx (0 if out of range). */
static inline uint32_t mv_zpack_frame_len(const struct mv_zpack *z, uint32_t idx)
{
	uint64_t start = (uint64_t)idx * z->frame_size;

	if (idx >= z->n_frames)
		return 0;
	return z->data_size - start < z->frame_size ? (uint32_t)(z->data_size - start)
	                                            : z->frame_size;
}

/**
 * mv_zpack_read_frame() - decompress one frame, with a hard output bound
 * @z: in: the seek table
 * @fd: in: the packed file
 * @idx: in: frame index
 * @out: out: mv_zpack_frame_len(z, idx) bytes; never written past that
 * @name: in: file name for messages
 * @err: out: error line
 *
 * The frame must be one zstd frame that declares exactly the table's size
 * and decompresses to it; a byte-planes frame (z->width) is joined back into
 * @out. Thread-safe (per-thread scratch).
 * Return: 0, -EBADMSG (corrupt or lying frame), -EINVAL, -ENOMEM, -errno.
 */
int mv_zpack_read_frame(const struct mv_zpack *z, int fd, uint32_t idx, uint8_t *out,
                        const char *name, struct mv_err *err);

/* The same on a compressed frame already in memory (tests, fuzzing). */
int mv_zpack_decode_frame(const void *src, size_t src_len, uint8_t *out, size_t out_len,
                          const char *name, uint32_t idx, struct mv_err *err);

/**
 * mv_zpack_load_frame() - mv_zpack_read_frame() and mv_verify_blocks() on it
 * @z, @fd, @idx, @out, @name: as for mv_zpack_read_frame()
 * @t: in: the trusted tree of the plain bytes
 * @ops, @ctx: in: hash-block source of @t
 * @err: out: error line ("<name>: frame N (bytes A-B): ...")
 *
 * Only verified bytes are left in @out on success; on failure @out holds
 * garbage. Thread-safe. Return: 0, -EBADMSG, or another negative errno.
 */
int mv_zpack_load_frame(const struct mv_zpack *z, int fd, uint32_t idx, uint8_t *out,
                        const struct mv_tree *t, const struct mv_hblock_ops *ops, void *ctx,
                        const char *name, struct mv_err *err);

/* Options of the writer. */
struct mv_zpack_opts {
	int level;           /* zstd level; 0: MV_ZPACK_DEFAULT_LEVEL */
	uint32_t frame_size; /* 0: MV_ZPACK_DEFAULT_FRAME; multiple of the block size */
	/* Byte-plane transform, chosen per frame by trial compression of a
	 * sample (docs/packing.md). Gives up plain `zstd -d` compatibility for
	 * files where a frame is transformed. */
	bool tensor_transform;
};

/**
 * mv_zpack_planes_split() - byte-plane transform of one frame
 * @width: in: element width: 1 (copy), 2 or 4
 * @src: in: @len plain bytes
 * @dst: out: @len bytes: every byte i of @src with i % @width == 0, then
 *        those with i % @width == 1, ... (a short last element included)
 * @len: in: bytes
 *
 * @src and @dst must not overlap. Return: 0, or -EINVAL for another width.
 */
int mv_zpack_planes_split(unsigned width, const uint8_t *src, uint8_t *dst, size_t len);

/* The inverse of mv_zpack_planes_split(); same arguments and return. */
int mv_zpack_planes_join(unsigned width, const uint8_t *src, uint8_t *dst, size_t len);

/**
 * mv_zpack_write() - compress a plain file into the packed format
 * @in_fd: in: plain data, p->data_size bytes read with pread from 0
 * @p: in: tree parameters of the signature (data_size set)
 * @o: in: options (may be NULL)
 * @out_fd: in: empty file to write from offset 0
 * @name: in: name of the plain file for messages
 * @m: out: measurement of the bytes read (compare with the signed one!)
 * @packed_size: out: bytes written
 * @err: out: error line
 *
 * Reads each byte once: the tree is built in the same pass.
 */
int mv_zpack_write(int in_fd, const struct mv_tree_params *p, const struct mv_zpack_opts *o,
                   int out_fd, const char *name, struct mv_measurement *m, uint64_t *packed_size,
                   struct mv_err *err);

/**
 * mv_zpack_measure() - decompress a whole packed file and measure it
 * @fd: in: the packed file
 * @name: in: for messages
 * @p: in: signed tree parameters (data_size = the signed size)
 * @sha256: out (may be NULL): SHA-256 of the plain bytes
 * @sink, @sink_ctx: optional tree sink (see mv_tree_builder_new)
 * @m: out: fs-verity measurement of the plain bytes
 * @err: out: error line
 *
 * Used by verify (and by pack before removing an original). The caller
 * compares @m and @sha256 with the signature.
 */
int mv_zpack_measure(int fd, const char *name, const struct mv_tree_params *p, uint8_t *sha256,
                     mv_tree_sink_fn sink, void *sink_ctx, struct mv_measurement *m,
                     struct mv_err *err);

/* Options of `modelfs pack`. */
struct mv_pack_opts {
	struct mv_zpack_opts z;
	bool remove_original;  /* delete plain files once their packed copy checks out */
	unsigned threads;      /* 0 = number of CPUs */
	const char *signature; /* default MODEL/model.sig */
};

struct mv_pack_stats {
	size_t packed;  /* files packed now */
	size_t kept;    /* packed copy already there and good */
	size_t plain;   /* left plain: shrink less than MV_ZPACK_MIN_SAVING % */
	size_t removed; /* originals removed */
	size_t failed;
	uint64_t plain_bytes, packed_bytes; /* over packed files */
};

/**
 * mv_model_pack() - pack the signed files of a model folder
 * @model_dir: in: the model folder
 * @o: in: options (may be NULL)
 * @info, @ictx: in: one line per file (what was done)
 * @problem, @pctx: in: one line per failure
 * @stats: out (may be NULL)
 *
 * The signature is read but not checked against any trust: each file is
 * checked against the fs-verity digest the signature lists, so a packed file
 * only ever holds signed bytes. Return: 0, -EBADMSG if some file did not
 * match its signature or a packed copy was damaged, other negative errno on
 * I/O errors (each failure reported through @problem).
 */
int mv_model_pack(const char *model_dir, const struct mv_pack_opts *o, mv_problem_fn info,
                  void *ictx, mv_problem_fn problem, void *pctx, struct mv_pack_stats *stats);

#ifdef __cplusplus
}
#endif
#endif /* MODELFS_VPACK_H */
