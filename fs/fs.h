/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fs.h - the public interface of libfs: the FUSE daemon that serves a store
 * of signed models, and what a model looks like when mounted (format
 * detection, pickle scanning and views).
 *
 * libfs uses libcache and libverity; nothing below calls up into tools/.
 */
#ifndef MODELFS_FS_H
#define MODELFS_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "verity.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================== section: formats ============================ */
/* (content detection, pickle reader, zip reader, scanner) */

/* What a file is, judged by its bytes, never by its name. */
enum mfs_format {
	MFS_FMT_UNKNOWN = 0, /* binary data of no known kind */
	MFS_FMT_EMPTY,
	MFS_FMT_SAFETENSORS,
	MFS_FMT_GGUF,
	MFS_FMT_ONNX,
	MFS_FMT_JSON,
	MFS_FMT_TEXT,
	MFS_FMT_NPY,     /* numpy .npy without object dtype */
	MFS_FMT_ZIP,     /* a zip holding no pickle */
	MFS_FMT_PICKLE,  /* pickle family: raw pickle, torch zip or legacy, object .npy, joblib */
};

/*
 * Reads up to @len bytes at @off into @buf. Returns the number of bytes read
 * (short only at end of file) or a negative errno. The mount passes its
 * verified read path here, so detection never sees unverified bytes.
 */
typedef ssize_t (*mfs_pread_fn)(void *ctx, void *buf, size_t len, uint64_t off);

/* Name used in user.modelfs.format: "safetensors", "pickle", ... */
const char *mfs_format_name(enum mfs_format f);

/**
 * mfs_format_detect() - classify a file by content
 * @rd, @ctx: in: how to read the file
 * @size: in: the file size
 * @out: out: the format
 *
 * Reads only what it needs (headers, a zip's central directory).
 * Thread-safe. Return: 0, or the negative errno from @rd.
 */
int mfs_format_detect(mfs_pread_fn rd, void *ctx, uint64_t size, enum mfs_format *out);

/* ====================== end section: formats ========================== */

/* ========================= section: mount ============================= */

/* ======================= end section: mount =========================== */

#ifdef __cplusplus
}
#endif
#endif /* MODELFS_FS_H */
