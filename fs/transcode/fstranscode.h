/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fstranscode.h - the public interface of libfstranscode: torch pickle checkpoints
 * to safetensors (see docs/transcode.md). Uses libfsformat (the pickle and
 * zip readers) and libverity; no FUSE, no cache.
 */
#ifndef MODELFS_FSTRANSCODE_H
#define MODELFS_FSTRANSCODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "verity.h"
#include "fsformat.h"

#ifdef __cplusplus
extern "C" {
#endif

/* (torch pickle checkpoints to safetensors; see docs/transcode.md) */

/*
 * A transcoding plan: the checkpoint's tensors, parsed without executing
 * anything, and the exact layout of the safetensors file they become. Making
 * one reads only the zip central directory and data.pkl (legacy files: the
 * five pickles and each storage's 8-byte size), never the tensor data, so
 * the output size and header are known before anything is written.
 * A plan is immutable once made: several threads may write from one plan.
 */
struct mfs_tx_plan;

/**
 * mfs_tx_plan_new() - parse a torch checkpoint and lay out its safetensors
 * @rd, @ctx, @size: in: the checkpoint (torch zip or legacy format)
 * @name: in: the file name for error messages
 * @out: out: the plan; free with mfs_tx_plan_free()
 * @err: out: one line naming @name and the reason
 *
 * Does not scan: callers decide on mfs_scan()'s verdict first. The walk is
 * strict on its own (only the globals of a state_dict are understood).
 * Return: 0; -EBADMSG for a malformed or inconsistent checkpoint;
 * -EOPNOTSUPP for content safetensors cannot hold (not a state_dict of
 * tensors, complex or quantized dtypes, compressed storages); -EFBIG when
 * the header would exceed safetensors' 100 MB limit; -ENOMEM; or @rd's errno.
 */
int mfs_tx_plan_new(mfs_pread_fn rd, void *ctx, uint64_t size, const char *name,
                    struct mfs_tx_plan **out, struct mv_err *err);
void mfs_tx_plan_free(struct mfs_tx_plan *p);

/* The exact size of the safetensors output. */
uint64_t mfs_tx_plan_size(const struct mfs_tx_plan *p);
/* The output's first bytes (8-byte length + padded JSON header); returns their count. */
size_t mfs_tx_plan_header(const struct mfs_tx_plan *p, const uint8_t **hdr);
/* Tensors in the output, in file order; names removed as shared are not counted. */
size_t mfs_tx_plan_count(const struct mfs_tx_plan *p);
const char *mfs_tx_plan_tensor(const struct mfs_tx_plan *p, size_t i);
/* Bytes of tensor data in the output (the index's total_size). */
uint64_t mfs_tx_plan_data_size(const struct mfs_tx_plan *p);

/**
 * mfs_tx_plan_write() - write the safetensors bytes
 * @p: in: the plan
 * @rd, @ctx: in: the same checkpoint the plan was made from
 * @src_fd: in: a file descriptor @rd reads from directly, or -1; lets
 *   contiguous tensors be copied in the kernel (copy_file_range)
 * @out_fd: in: where the output goes, written with pwrite from offset 0
 * @err: out: one line naming the plan's file and the reason
 *
 * Memory stays bounded whatever the checkpoint size: data moves in chunks,
 * non-contiguous views are gathered through bounded windows.
 * Return: 0, -EBADMSG if the data read disagrees with the plan, or an errno.
 */
int mfs_tx_plan_write(const struct mfs_tx_plan *p, mfs_pread_fn rd, void *ctx, int src_fd,
                      int out_fd, struct mv_err *err);

/**
 * mfs_tx_write_path() - write a plan's output to @path atomically
 * @p, @rd, @ctx, @src_fd: in: as for mfs_tx_plan_write()
 * @path: in: the output file; a temp file in its folder is written and
 *   renamed, so @path never holds a partial file
 * @durable: in: fsync the file before the rename and the folder after, so
 *   the output also survives a crash (false: faster, for scratch outputs)
 * @err: out: one line naming the file and the reason
 */
int mfs_tx_write_path(const struct mfs_tx_plan *p, mfs_pread_fn rd, void *ctx, int src_fd,
                      const char *path, bool durable, struct mv_err *err);

/**
 * mfs_tx_rename() - the safetensors name of a checkpoint file
 * @name: in: a file name ("pytorch_model.bin", "pytorch_model-00001-of-00002.bin",
 *   "pytorch_model.bin.index.json")
 *
 * As the reference converter: the extension becomes ".safetensors" and
 * "pytorch_model" becomes "model"; an index keeps its ".index.json" suffix.
 * Return: a malloc'd name, or NULL (no memory).
 */
char *mfs_tx_rename(const char *name);

/**
 * mfs_tx_index_rewrite() - rewrite a sharded checkpoint's index
 * @json, @len: in: pytorch_model.bin.index.json
 * @total_size: in: the output's total tensor bytes, or UINT64_MAX to keep the old value
 * @out: out: the malloc'd model.safetensors.index.json text
 * @err: out: one line for a malformed index
 *
 * Every weight_map value is renamed with mfs_tx_rename(); shard names that
 * are not plain file names ("/", "..") are refused.
 * Return: 0, -EBADMSG for a malformed index, or -ENOMEM.
 */
int mfs_tx_index_rewrite(const char *json, size_t len, uint64_t total_size, char **out,
                         struct mv_err *err);

#ifdef __cplusplus
}
#endif
#endif /* MODELFS_FSTRANSCODE_H */
