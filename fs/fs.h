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

/* ====================== end section: formats ========================== */

/* ===== section: transcode ===== */
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

/* ===== end section: transcode ===== */

/* ========================= section: mount ============================= */
/* (store scan, inodes, verified reads, FUSE ops, xattrs, status, daemon) */

/* What the mount does with pickle-family files (see docs/mount.md). */
enum mfs_pickle_policy {
	MFS_PICKLE_HIDE = 0,  /* absent from listings and lookups */
	MFS_PICKLE_SHOW,      /* present, user.modelfs.format=pickle */
	MFS_PICKLE_DENY,      /* a model holding one is refused as a whole */
	MFS_PICKLE_TRANSCODE, /* default: safe checkpoints appear as safetensors, others hidden */
};

/* Options of `modelfs mount`; cmd_mount.c fills them, mfs_mount_main obeys. */
struct mfs_mount_opts {
	const char *store;             /* directory of models */
	const char *mountpoint;        /* empty directory */
	const char *const *trust_keys; /* public key files (PEM) */
	size_t n_trust_keys;
	const char *const *trust_cas; /* CA certificate files (PEM) */
	size_t n_trust_cas;
	enum mfs_pickle_policy pickle;
	const char *cache_dir;     /* where built trees go; NULL: default */
	size_t hblock_cache_bytes; /* hash-block cache bound; 0: default */
	size_t frame_cache_bytes;  /* packed files' frame cache bound; 0: default */
	unsigned threads;          /* FUSE workers; 0: number of CPUs */
	bool foreground;           /* -f: no daemon, log to stderr */
	bool nonempty;             /* allow a non-empty mountpoint */
	bool debug;                /* FUSE debug output (implies foreground) */
	const char *fuse_opts;     /* extra comma-separated FUSE mount options, or NULL */
	const char *policy;        /* trust policy file (docs/policy.md), or NULL */
	const char *ready_file;    /* written once the mount answers, removed at unmount */
	bool watch;                /* rescan the store when inotify sees a change */
	unsigned unmount_timeout;  /* seconds from SIGTERM/SIGINT to exit; 0: default (10) */
	/* how a model's signed name must fit its store path; 0: suffix */
	enum mv_name_check name_check;
	/* Owners and modes shown (docs/mount.md, "Owners and permissions"): */
	bool set_uid; /* -o uid=: every node shows owner @uid, not the store's */
	uid_t uid;
	bool set_gid; /* -o gid=: every node shows group @gid */
	gid_t gid;
	unsigned umask;   /* -o umask=: bits cleared from every mode shown */
	bool control_all; /* --control-access=all: .modelfs readable by all, not the owner only */
	/* Missing trees (docs/mount.md, "Missing trees"): */
	unsigned tree_builders;      /* builder threads, 1..16; 0: the default (2) */
	unsigned tree_build_wait_ms; /* an open's wait for a build, ms; 0: the default (30 s) */
};

/* Parses "hide" / "show" / "deny" / "transcode"; -EINVAL otherwise (pickle_policy.c). */
int mfs_pickle_policy_parse(const char *s, enum mfs_pickle_policy *out);
/* The name of @p, as mfs_pickle_policy_parse() reads it. */
const char *mfs_pickle_policy_name(enum mfs_pickle_policy p);

/**
 * mfs_mount_main() - check the options, scan the store, mount and serve
 * @o: in: options
 * @err: out: the one-line reason when setup fails
 *
 * Returns after the file system is unmounted (fusermount3 -u, SIGTERM,
 * SIGINT). Unless @o->foreground, the process daemonizes once the mount is
 * up, so the caller's parent sees success only when the mount is usable.
 * Return: 0 after a clean unmount, or a negative errno with @err set when
 * the mount could not be set up.
 */
int mfs_mount_main(const struct mfs_mount_opts *o, struct mv_err *err);

/* ======================= end section: mount =========================== */

#ifdef __cplusplus
}
#endif
#endif /* MODELFS_FS_H */
