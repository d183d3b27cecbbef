/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vread_int.h - what the files of the read path share, and nothing else uses:
 *
 *   vread.c    verified reads: plain, packed, files of one block
 *   ftree.c    loaded trees (loading, reopening, rebuilding), the negative cache
 *   fdcache.c  the bounded cache of tree descriptors, fd exhaustion
 *   zfile.c    packed copies attached to file nodes
 *
 * Included only by those four files; the rest of the mount goes through
 * mount_int.h. Each function's full comment is at its definition. The
 * locking rules are mount_int.h's (struct mfs_ftree, struct mfs_fdcache).
 */
#ifndef MODELFS_VREAD_INT_H
#define MODELFS_VREAD_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "mount_int.h"

/* ---- vread.c ---- */

/* May a failure of @n be logged now (rate limit)? @sup gets " suppressed=N" or "". */
bool mfs_failure_logged(struct mfs_node *n, char *sup, size_t len);

/* ---- ftree.c ---- */

/* Borrows the node's tree, loading or reopening it as needed. 0 or -errno. */
int mfs_ftree_get(struct mfs_mount *m, struct mfs_node *n, int data_fd, struct mfs_ftree **out);
/* Gives back a tree borrowed with mfs_ftree_get() (frees it if it was replaced). */
void mfs_ftree_put(struct mfs_node *n, struct mfs_ftree *ft);
/* Loads the tree of @n, or replaces @bad by one rebuilt from the data. 0 or -errno. */
int mfs_ftree_load(struct mfs_mount *m, struct mfs_node *n, int data_fd, struct mfs_ftree *bad);

/* ---- fdcache.c ---- */

/* Gives @ft (no fd now) the open tree file @fd, making room first. 0 or -ENOMEM. */
int mfs_fdcache_add(struct mfs_mount *m, struct mfs_ftree *ft, int fd);
/* Closes the fd of @ft, which no reader can reach any more, and frees its slot. */
void mfs_fdcache_remove(struct mfs_ftree *ft);
/* Frees the fd cache itself, once every tree was freed (unmount). */
void mfs_fdcache_free(struct mfs_mount *m);

/* ---- zfile.c ---- */

/* Frees a packed copy @zf (may be NULL or half set up) and drops its frames. */
void mfs_zfile_free(struct mfs_mount *m, struct mfs_zfile *zf);
/* The packed copy the node's data comes from, or NULL if it is stored plain. */
static inline struct mfs_zfile *mfs_file_packed(struct mfs_node *n)
{
	if (__atomic_load_n(&n->stored, __ATOMIC_ACQUIRE) != MFS_STORED_PACKED)
		return NULL;
	return __atomic_load_n(&n->zf, __ATOMIC_ACQUIRE);
}

/*
 * The trusted measurement (parameters, root) of file node @n: the signed
 * one, or for a file of a plain OMS signature the one its tree build
 * derived from data whose SHA-256 is the signed one (treebuild.c), NULL
 * until then. n->derived is set once (compare-and-swap) and never freed
 * before the node. Lock-free.
 */
static inline const struct mv_measurement *mfs_node_meas(const struct mfs_node *n)
{
	if (n->res->has_merkle)
		return &n->res->merkle;
	return __atomic_load_n(&n->derived, __ATOMIC_ACQUIRE);
}

#endif /* MODELFS_VREAD_INT_H */
