/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cache.h - the public interface of libcache: bounded, thread-safe caches of
 * Merkle hash blocks with their verified state (hblock_cache.c), the mount's
 * hash-block source, and of decompressed, verified frames of zstd-packed
 * files with the read path over them (frame_cache.c, mc_zpack_pread).
 * libcache is built on libverity (verity.h) and libvpack (vpack.h).
 */
#ifndef MODELFS_CACHE_H
#define MODELFS_CACHE_H

#include <stdint.h>
#include <sys/types.h>

#include "verity.h"
#include "vpack.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Hash-block cache (hblock_cache.c)
 *
 * A bounded, sharded LRU of Merkle tree blocks read from tree files. It is
 * the hash-block source (struct mv_hblock_ops) the mount hands to
 * mv_verify_blocks(). Entries are keyed by (tree id, level, index); each
 * remembers whether the verifier has checked it against its parent. An
 * evicted entry forgets that, so the block is read and checked again next
 * time: memory stays bounded and nothing unverified is ever trusted.
 *
 * The bytes of an entry never change after it is inserted, so a block that
 * was verified stays correct even if the tree file changes on disk.
 * ------------------------------------------------------------------------ */

#define MC_HBLOCK_DEFAULT_BYTES (32u << 20)

struct mc_hblock_cache;

/* Counters, for the status file and tests. */
struct mc_hblock_stats {
	uint64_t hits;
	uint64_t misses;
	uint64_t evictions;
	uint64_t entries; /* currently cached */
	uint64_t bytes;   /* currently charged, block data plus overhead */
	uint64_t max_bytes;
};

/*
 * One tree file as seen by the cache: the ctx argument of mc_hblock_ops.
 * Fill it with mc_hblock_src_init(); it must outlive every verification
 * that uses it. The cache does not own @fd.
 */
struct mc_hblock_src {
	struct mc_hblock_cache *cache;
	uint64_t tree_id;     /* unique per loaded tree, from mc_hblock_new_tree_id() */
	int fd;               /* the tree file, read with pread */
	uint64_t tree_offset; /* file offset of the first tree block */
	uint32_t block_size;
	unsigned num_levels;
	uint64_t level_start[MV_MAX_LEVELS];
	uint64_t level_blocks[MV_MAX_LEVELS];
};

/**
 * mc_hblock_cache_new() - create a hash-block cache
 * @max_bytes: in: memory bound (0: MC_HBLOCK_DEFAULT_BYTES)
 * @out: out: the cache
 *
 * Return: 0 or -ENOMEM.
 */
int mc_hblock_cache_new(size_t max_bytes, struct mc_hblock_cache **out);

/* Frees the cache. No block may still be lent out. Accepts NULL. */
void mc_hblock_cache_free(struct mc_hblock_cache *c);

/* A fresh tree id: entries of a reloaded tree never alias the old ones. */
uint64_t mc_hblock_new_tree_id(struct mc_hblock_cache *c);

/**
 * mc_hblock_src_init() - describe a tree file for the cache
 * @src: out: the source
 * @c: in: the cache
 * @fd: in: tree file descriptor (not owned)
 * @tree_offset: in: offset of the first tree block in the file
 * @geo: in: geometry of the trusted tree (from mv_tree_init)
 *
 * Takes a new tree id. Return: 0, or -EINVAL for a bad geometry.
 */
int mc_hblock_src_init(struct mc_hblock_src *src, struct mc_hblock_cache *c, int fd,
                       uint64_t tree_offset, const struct mv_tree_geometry *geo);

/*
 * Drops every unused entry of @tree_id (a tree being replaced). Lent blocks
 * go when they are returned. Optional: unused entries also age out.
 */
void mc_hblock_cache_drop_tree(struct mc_hblock_cache *c, uint64_t tree_id);

/* Snapshot of the counters. */
void mc_hblock_cache_stats(struct mc_hblock_cache *c, struct mc_hblock_stats *out);

/* The hash-block source; ctx is a struct mc_hblock_src *. Thread-safe. */
extern const struct mv_hblock_ops mc_hblock_ops;

/* ---- frame cache (frame_cache.c) ----
 *
 * A bounded, sharded LRU of decompressed, verified frames of zstd-packed
 * files (see mv_zpack_* in vpack.h). Entries are keyed by (file id, frame
 * index). Concurrent misses on one frame load it once: the first caller
 * loads, the others wait on a condition variable (single flight). A frame
 * enters the cache only after its loader returned 0, i.e. after it was
 * verified; failures are never cached, so a repaired file reads again.
 *
 * The bound counts frame bytes plus a per-entry overhead. Frames still lent
 * out cannot be evicted, so the cache may exceed its bound by at most the
 * frames in use (one per reading thread).
 */

#define MC_FRAME_DEFAULT_BYTES (64u << 20)

struct mc_frame_cache;

struct mc_frame_stats {
	uint64_t hits;   /* found ready */
	uint64_t waits;  /* joined a load in flight (also counted as hits) */
	uint64_t misses; /* loaded */
	uint64_t errors; /* loads that failed */
	uint64_t evictions;
	uint64_t entries; /* currently cached */
	uint64_t bytes;   /* currently charged */
	uint64_t max_bytes;
};

/* A frame lent out by mc_frame_get(); return it with mc_frame_put(). */
struct mc_frame_ref {
	const uint8_t *data;
	size_t len;
	void *priv; /* owned by the cache */
};

/*
 * Fills @buf (exactly @len bytes) with frame @index; returns 0 only if the
 * bytes are verified. Called without any cache lock held.
 */
typedef int (*mc_frame_load_fn)(void *ctx, uint32_t index, uint8_t *buf, size_t len);

/**
 * mc_frame_cache_new() - create a frame cache
 * @max_bytes: in: memory bound (0: MC_FRAME_DEFAULT_BYTES)
 * @out: out: the cache
 *
 * Return: 0 or -ENOMEM.
 */
int mc_frame_cache_new(size_t max_bytes, struct mc_frame_cache **out);

/* Frees the cache. No frame may still be lent out. Accepts NULL. */
void mc_frame_cache_free(struct mc_frame_cache *c);

/* A fresh file id: frames of a reopened or replaced file never alias. */
uint64_t mc_frame_new_file_id(struct mc_frame_cache *c);

/**
 * mc_frame_get() - look a frame up, loading it on a miss
 * @c: in: the cache
 * @file_id, @index: in: the key
 * @len: in: the frame's plain size (from the seek table)
 * @load, @ctx: in: loader, called at most once for concurrent misses
 * @ref: out: the frame
 *
 * Thread-safe. Return: 0, the loader's error (to this caller and to every
 * caller that waited for that load), -ENOMEM, or -EINVAL if a cached entry
 * of the key has another length.
 */
int mc_frame_get(struct mc_frame_cache *c, uint64_t file_id, uint32_t index, size_t len,
                 mc_frame_load_fn load, void *ctx, struct mc_frame_ref *ref);

/* Returns a lent frame. */
void mc_frame_put(struct mc_frame_cache *c, struct mc_frame_ref *ref);

/* Drops every unused entry of @file_id (file closed or replaced). */
void mc_frame_cache_drop_file(struct mc_frame_cache *c, uint64_t file_id);

/* Snapshot of the counters. */
void mc_frame_cache_stats(struct mc_frame_cache *c, struct mc_frame_stats *out);

/*
 * One packed file as the mount reads it. Fill with mc_zpack_file_init();
 * every pointer must outlive the reads. Immutable afterwards: shareable.
 */
struct mc_zpack_file {
	struct mc_frame_cache *cache;
	uint64_t file_id;
	int fd;                           /* the packed file (not owned) */
	const struct mv_zpack *z;         /* its seek table (mv_zpack_open) */
	const struct mv_tree *tree;       /* trusted tree of the plain bytes */
	const struct mv_hblock_ops *hops; /* hash-block source of @tree */
	void *hctx;
	const char *name; /* for messages */
};

/*
 * mc_zpack_file_init() - describe a packed file; takes a new file id.
 * Return: 0, or -EINVAL if the seek table does not fit the tree (sizes,
 * frames not on block boundaries).
 */
int mc_zpack_file_init(struct mc_zpack_file *f, struct mc_frame_cache *c, int fd,
                       const struct mv_zpack *z, const struct mv_tree *tree,
                       const struct mv_hblock_ops *hops, void *hctx, const char *name);

/**
 * mc_zpack_pread() - read verified plain bytes of a packed file
 * @f: in: the file
 * @buf: out: @len bytes
 * @len, @off: in: the range; clamped to the plain size
 * @err: out (may be NULL): "<name>: frame N ...: reason"
 *
 * Every byte returned comes from a frame that was decompressed under its
 * declared size and verified against the tree. Thread-safe.
 * Return: bytes read (0 at or past the end), -EIO if a frame is corrupt or
 * fails verification, -ENOMEM, or another negative errno.
 */
ssize_t mc_zpack_pread(const struct mc_zpack_file *f, void *buf, size_t len, uint64_t off,
                       struct mv_err *err);

#ifdef __cplusplus
}
#endif
#endif /* MODELFS_CACHE_H */
