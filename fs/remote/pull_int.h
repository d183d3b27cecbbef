/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pull_int.h - the staging files of a pull (blob.c) for the pull (pull.c).
 * Included by fs/remote only.
 *
 * A blob being fetched is STAGING/blobs/HEX.part (the blob's bytes, written
 * chunk by chunk at their offsets) and STAGING/blobs/HEX.journal: a header
 * (magic "MFRJRNL1", chunk size, blob size: three little-endian u64 and 8
 * zero bytes) and one 40-byte record per chunk written (u64 index, the
 * SHA-256 of the bytes received). On the next run every recorded chunk is
 * read back and hashed again; only chunks that still match are kept.
 */
#ifndef MODELFS_PULL_INT_H
#define MODELFS_PULL_INT_H

#include <pthread.h>

#include "remote_int.h"

#define MFR_JOURNAL_MAGIC "MFRJRNL1"
#define MFR_JOURNAL_HDR   32u
#define MFR_JOURNAL_REC   40u
#define MFR_PULL_PIECE                                                                             \
	(1u << 20)                 /* bytes hashed or copied at a time (any block size divides it) \
	                            */
#define MFR_PULL_MAX_DEPTH 64      /* folders in a path; depth of a folder removed */
#define MFR_PULL_BLOBS     "blobs" /* STAGING/blobs: the .part and .journal files */

/* One blob in the staging folder. */
struct mfr_part {
	char digest[MFR_DIGEST_LEN + 1];
	uint64_t size;     /* the descriptor's size (bounded by the caller) */
	uint32_t chunk;    /* bytes per chunk */
	uint64_t n_chunks; /* ceil(size / chunk) */
	int fd, jfd;       /* HEX.part, HEX.journal; -1 when closed */
	uint8_t *done;     /* n_chunks flags: the chunk's bytes are in the .part */
	uint64_t jlen;     /* the journal's length: where the next record goes */
	uint64_t n_reused; /* chunks kept from an earlier run */
	uint64_t n_bad;    /* recorded chunks that did not match: fetched again */
	pthread_mutex_t lock;
};

/**
 * mfr_part_open() - open or create the staging files of a blob, resuming
 * @p: out: the part (every field set; mfr_part_close() it even on failure)
 * @blobs_fd: in: STAGING/blobs
 * @digest: in: the blob's digest (validated)
 * @size: in: its size
 * @chunk: in: bytes per chunk (> 0)
 * @err: out: one line naming the file
 *
 * Files made by another chunk size or for another size start over.
 * Return: 0, or a negative errno.
 */
int mfr_part_open(struct mfr_part *p, int blobs_fd, const char *digest, uint64_t size,
                  uint32_t chunk, struct mv_err *err);

/**
 * mfr_part_fetch() - GET chunk @idx of @p and write it to the .part
 * @p: in/out: the part; the chunk is journalled and marked done
 * @c: in: this thread's client
 * @idx: in: the chunk index (< n_chunks)
 * @err: out: one line naming the registry and the digest
 *
 * Thread-safe for distinct chunks. Return: 0 or a negative errno.
 */
int mfr_part_fetch(struct mfr_part *p, struct mfr_client *c, uint64_t idx, struct mv_err *err);

/**
 * mfr_content_range_ok() - does a Content-Range value say exactly the range asked?
 * @v: in: the header's value (untrusted; NULL: no header)
 * @off, @len: in: the range asked, @len > 0
 * @total: in: the blob's size
 *
 * Only "bytes A-B/T", T a decimal or an asterisk, with A = @off, B = @off + @len - 1 and
 * a decimal T = @total (so B < T): decimals without sign, leading zero or overflow,
 * nothing else around them (the client trims the value's blanks).
 */
bool mfr_content_range_ok(const char *v, uint64_t off, uint64_t len, uint64_t total);

/* Forgets every chunk of @p (truncates both files). 0 or a negative errno. */
int mfr_part_reset(struct mfr_part *p, struct mv_err *err);

/* Closes the files of @p and frees its state; the files stay. */
void mfr_part_close(struct mfr_part *p);

/* ---- folders of a pull (blob.c) ---- */

/* "sha256:HEX" of @data (@len bytes) into @out. */
void mfr_sha256_digest(const void *data, size_t len, char out[MFR_DIGEST_LEN + 1]);

/**
 * mfr_rm_tree_at() - remove @name in @dfd and everything under it
 * @dfd, @name: in: what to remove (AT_FDCWD and a path allowed); no link followed
 * @depth: in: 0 (the recursion's depth)
 *
 * Return: 0 (also when @name does not exist) or a negative errno.
 */
int mfr_rm_tree_at(int dfd, const char *name, int depth);

/* @dir must not exist, or be an empty folder (not a link): 0, -EEXIST, -ENOTEMPTY, -errno. */
int mfr_dir_check_empty(const char *dir, struct mv_err *err);

/**
 * mfr_open_parents() - open (creating, mode 0755) the folders of @path under @root
 * @root: in: the folder @path is relative to (a checked path: mfr_path_ok())
 * @path: in: "a/b/c"
 * @base: out: points at the last component of @path ("c")
 * @err: out: one line naming @path
 *
 * Every component is opened O_NOFOLLOW | O_DIRECTORY: a link or a file in
 * the way is an error. Return: the folder's fd (close it), or a negative errno.
 */
int mfr_open_parents(int root, const char *path, const char **base, struct mv_err *err);

/* Copies @size bytes of @src into a new file @name of @dfd (O_EXCL, O_NOFOLLOW, 0644). */
int mfr_copy_new(int src, uint64_t size, int dfd, const char *name);

/**
 * mfr_staging_open() - create or re-open the staging folder @path and lock it
 * @path: in: DIR.modelfs-pull
 * @sfd, @bfd: out: the folder and its MFR_PULL_BLOBS folder (close them)
 * @err: out: one line naming @path
 *
 * The folder must be ours (owner) and not locked by another pull (flock):
 * -EPERM, -EBUSY. Return: 0 or a negative errno.
 */
int mfr_staging_open(const char *path, int *sfd, int *bfd, struct mv_err *err);

/* fsyncs the folder that holds @path (after a rename into it); best effort. */
void mfr_sync_parent(const char *path);

#endif /* MODELFS_PULL_INT_H */
