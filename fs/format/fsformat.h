/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fsformat.h - the public interface of libfsformat: what a file is, judged by
 * its bytes (format detection, strict recognisers), the non-executing pickle
 * reader, the zip reader and the scanner. No FUSE, no cache: it uses
 * libverity only, and reads through a caller's mfs_pread_fn.
 */
#ifndef MODELFS_FSFORMAT_H
#define MODELFS_FSFORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "verity.h"

#ifdef __cplusplus
extern "C" {
#endif

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
	MFS_FMT_NPY,    /* numpy .npy without object dtype */
	MFS_FMT_ZIP,    /* a zip holding no pickle */
	MFS_FMT_PICKLE, /* pickle family: raw pickle, torch zip or legacy, object .npy, joblib */
};

/*
 * Reads up to @len bytes at @off into @buf. Returns the number of bytes read
 * (short only at end of file) or a negative errno. The mount passes its
 * verified read path here, so detection never sees unverified bytes.
 */
typedef ssize_t (*mfs_pread_fn)(void *ctx, void *buf, size_t len, uint64_t off);

/* An mfs_pread_fn over a plain file descriptor; @ctx points to the int fd. */
ssize_t mfs_fd_pread(void *ctx, void *buf, size_t len, uint64_t off);

/* Name used in user.modelfs.format: "safetensors", "pickle", ... */
const char *mfs_format_name(enum mfs_format f);

/**
 * mfs_format_detect() - classify a file by content
 * @rd, @ctx: in: how to read the file
 * @size: in: the file size
 * @out: out: the format
 *
 * The scanner's answer (mfs_scan(), report.format): MFS_FMT_PICKLE for
 * every file the scanner does not call not-pickle, polyglots included;
 * otherwise a format only when its header parses strictly. Reads headers,
 * archive directories and the pickles themselves, never tensor data.
 * Thread-safe. Return: 0, -ENOMEM, or the negative errno from @rd.
 */
int mfs_format_detect(mfs_pread_fn rd, void *ctx, uint64_t size, enum mfs_format *out);

/*
 * Scanner verdicts, ordered by severity: a container's verdict is the most
 * severe of its own and its members'. See docs/scanner.md.
 */
enum mfs_verdict {
	MFS_VERDICT_NOT_PICKLE = 0, /* nothing here is ever unpickled */
	MFS_VERDICT_SAFE,           /* only allowlisted globals */
	MFS_VERDICT_SUSPICIOUS,     /* also known-benign data types outside the allowlist */
	MFS_VERDICT_UNSCANNABLE,    /* cannot be read (encrypted, 7z, unknown compression) */
	MFS_VERDICT_UNSAFE,         /* any other global, malformed stream, container anomaly */
};

/* "not-pickle", "safe", "suspicious", "unscannable", "unsafe". */
const char *mfs_verdict_name(enum mfs_verdict v);

/* One global a pickle references. */
struct mfs_scan_global {
	char *module;
	char *name;
	uint64_t offset;      /* opcode offset inside the file or member */
	enum mfs_verdict cls; /* safe, suspicious or unsafe */
};

/* The result for one file or one archive member. */
struct mfs_scan_item {
	char *member;     /* NULL for the file itself; "a/data.pkl", nested "x.zip!y" */
	const char *kind; /* static: "pickle", "torch-zip", "torch-legacy", "npy", ... */
	enum mfs_verdict verdict;
	struct mfs_scan_global *globals;
	size_t nglobals;
	char **reasons; /* one line each */
	size_t nreasons;
};

struct mfs_scan_report {
	struct mfs_scan_item *items; /* items[0] is the whole file (worst verdict) */
	size_t nitems;
	/*
	 * What the file is, the one answer the mount and `modelfs scan` give:
	 * MFS_FMT_PICKLE when some part holds a pickle that pickle.load would
	 * act on, or the verdict is suspicious or worse (polyglots included);
	 * else the format a strict recogniser accepted (unknown if none). So
	 * not-pickle files and numeric .npy/.npz ("safe", no pickle) are shown.
	 */
	enum mfs_format format;
	bool pickle; /* some item holds a pickle stream (any verdict) */
	/* The format the bytes satisfy besides any pickle (strict), for reports. */
	enum mfs_format strict;
	bool polyglot; /* two things at once: a "polyglot" reason is in items[0] */
};

/**
 * mfs_scan() - classify a file without executing anything
 * @rd, @ctx, @size: in: how to read the file (sequential reads only)
 * @out: out: one item for the file and one per archive member; free with
 * mfs_scan_report_free()
 *
 * Thread-safe. Return: 0 (whatever the verdict), -ENOMEM, or the negative
 * errno of @rd.
 */
int mfs_scan(mfs_pread_fn rd, void *ctx, uint64_t size, struct mfs_scan_report *out);
void mfs_scan_report_free(struct mfs_scan_report *r);

/**
 * mfs_safetensors_check() - strictly validate a safetensors file
 * @rd, @ctx, @size: in: the file
 * @ntensors: out: the number of tensors (may be NULL)
 * @err: out: the first violation
 *
 * Checks the header length, UTF-8 JSON with only known dtypes, shapes that
 * match data_offsets, offsets contiguous from 0 and covering the file to its
 * end, no duplicate names. Reads only the header.
 * Return: 0, -EBADMSG for a violation, or @rd's errno.
 */
int mfs_safetensors_check(mfs_pread_fn rd, void *ctx, uint64_t size, size_t *ntensors,
                          struct mv_err *err);

#ifdef __cplusplus
}
#endif
#endif /* MODELFS_FSFORMAT_H */
