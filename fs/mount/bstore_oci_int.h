/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bstore_oci_int.h - shared by the files of an oci:// store: bstore_oci.c
 * (the store), bstore_oci_cache.c (signature and trees in the cache folder)
 * and bstore_oci_blocks.c (the remote block cache, --remote-cache-size).
 * See docs/remote.md, "Lazy mount".
 */
#ifndef MODELFS_BSTORE_OCI_INT_H
#define MODELFS_BSTORE_OCI_INT_H

#include <stddef.h>
#include <stdint.h>

struct mfs_mount;
struct mfr_desc;
struct mfs_rcache;

/* Opens (creating it 0700) folder @name of @dfd, ours and writable by no one else. fd or -errno. */
int mfs_oci_own_dir(int dfd, const char *name);

/* Fetches @len bytes at @off of blob @d from the registry into @buf. 0 or -errno. */
typedef int (*mfs_rcache_fetch_fn)(void *ctx, const struct mfr_desc *d, void *buf, size_t len,
                                   uint64_t off);

/**
 * mfs_rcache_new() - the remote block cache of a store, CACHE/oci-blobs
 * @m: in: the mount (its cache folder, its counters)
 * @limit: in: --remote-cache-size in bytes (more than 0)
 * @n_blobs: in: how many blob slots (one per layer of the model)
 * @out: out: the cache, or NULL when it cannot be used (logged: reads then
 *       go to the registry only)
 * Return: 0 or -ENOMEM.
 */
int mfs_rcache_new(struct mfs_mount *m, uint64_t limit, size_t n_blobs, struct mfs_rcache **out);

/* Closes the cache's files and frees it (NULL: nothing). */
void mfs_rcache_free(struct mfs_rcache *rc);

/**
 * mfs_rcache_read() - @len bytes at @off of blob @d, from the cache or fetched into it
 * @rc: in: the cache
 * @slot: in: @d's slot, below the n_blobs given to mfs_rcache_new()
 * @d: in: the blob (digest, size); [@off, @off + @len) lies inside it
 * @buf: out: the bytes, as the disk or the registry gave them (unverified:
 *       the caller's caller, vread.c, checks them)
 * @fetch, @ctx: in: how to fetch a range from the registry
 * Missing chunks are fetched whole (MFS_RC_CHUNK-aligned), written to the
 * data file, then marked in the map.
 * Return: 0 or the negative errno of a failed fetch.
 */
int mfs_rcache_read(struct mfs_rcache *rc, size_t slot, const struct mfr_desc *d, void *buf,
                    size_t len, uint64_t off, mfs_rcache_fetch_fn fetch, void *ctx);

/**
 * mfs_rcache_forget() - mark the chunks of [@off, @off + @len) of blob @d missing
 * @rc, @slot, @d: as for mfs_rcache_read()
 * Called when bytes the cache gave failed verification: the next read of
 * them fetches them from the registry again (and refills the chunks).
 * Return: 1 if a chunk was marked present before, 0 if none was (the bytes
 * came from the registry: a retry would not help), or a negative errno.
 */
int mfs_rcache_forget(struct mfs_rcache *rc, size_t slot, const struct mfr_desc *d, uint64_t off,
                      uint64_t len);

#endif /* MODELFS_BSTORE_OCI_INT_H */
