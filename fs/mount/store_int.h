/* SPDX-License-Identifier: Apache-2.0 */
/*
 * store_int.h - what the files of the store share, and nothing else uses:
 *
 *   node.c     the node table, inode numbers, the version slabs, children,
 *              and changing the folders outside models
 *   store.c    building a model version, publishing it, walking the store,
 *              the lifetime of versions, unmount
 *   rescan.c   a live reload's rescan and publication
 *   backing.c  opening backing files, the visibility checks of an open
 *
 * Included only by those four files; the rest of the mount goes through
 * mount_int.h. Each function's full comment is at its definition. The
 * locking rules are mount_int.h's: the namespace functions below run with
 * ns_lock held for writing, or alone (at mount).
 */
#ifndef MODELFS_STORE_INT_H
#define MODELFS_STORE_INT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include "mount_int.h"

/* Sizes of log value buffers (mfs_log_value: quoted and escaped, so names cannot forge lines). */
#define LQ_PATH (PATH_MAX + 8)
#define LQ_WHY  1400

/* ---- node.c ---- */

/* Frees what a node holds and the node itself; its slot must be given back first. */
void mfs_node_free(struct mfs_node *n);
/* Frees the inode number of @n, whose version nobody references. */
void mfs_node_slot_give(struct mfs_mount *m, struct mfs_node *n);
/* Frees the chunks holding a version's nodes and names. */
void mfs_slab_free(struct mfs_model *model);
/* Finds or creates folder @name under @dir in a model being built. 0, -EEXIST, -ENOMEM. */
int mfs_dir_get(struct mfs_mount *m, struct mfs_node *dir, const char *name,
                struct mfs_model *model, struct mfs_node **out);
/* Sorts a subtree's children; -EEXIST names a duplicate in *dup. */
int mfs_sort_kids(struct mfs_node *dir, const char **dup);
/* Every inode of a subtree: drop its attributes and pages. */
void mfs_inval_subtree(struct mfs_inval *inv, const struct mfs_node *n);
/* Inserts @kid into @dir's sorted children. 0, -EEXIST (name taken), -ENOMEM. */
int mfs_kid_insert(struct mfs_node *dir, struct mfs_node *kid);
/* Removes @kid from its parent's children; its parent pointer stays. */
void mfs_kid_remove(struct mfs_node *kid, struct mfs_inval *inv);
/* Removes synthesized folders left empty, from @dir up to (not including) @top. */
void mfs_prune_empty(struct mfs_node *dir, const struct mfs_node *top, struct mfs_inval *inv);
/* Links @node at @path below @top. 0, -EEXIST, -ENAMETOOLONG, -ENOMEM. */
int mfs_ns_link(struct mfs_mount *m, struct mfs_node *top, const char *path, struct mfs_node *node,
                struct mfs_inval *inv);
/* Replaces @old by @new (same name) in @old's parent. */
void mfs_ns_swap(struct mfs_node *old, struct mfs_node *new, struct mfs_inval *inv);

/* ---- store.c ---- */

/* Reads model.sig relative to the model folder, refusing links and non-files. */
int mfs_sig_read(struct mfs_mount *m, int dirfd, char **buf, size_t *len, char *why,
                 size_t why_len);
/* Builds a version of the model in folder @rel (see store.c). 0 or -errno; *out owned by the
 * caller. */
int mfs_model_build(struct mfs_mount *m, int dirfd, const char *rel, const struct stat *sig_st,
                    bool log, struct mfs_model **out);
/* Publishes @model in the namespace (or refuses it on a collision). 0 or -ENOMEM. */
int mfs_model_link(struct mfs_mount *m, struct mfs_model *model, struct mfs_inval *inv);
/* Puts exposed @new where exposed @old was. 0 or -ENOMEM. */
int mfs_model_swap(struct mfs_mount *m, struct mfs_model *old, struct mfs_model *new,
                   struct mfs_inval *inv);
/* Takes an exposed model out of the namespace (its nodes stay valid). */
void mfs_model_unlink(struct mfs_mount *m, struct mfs_model *model, struct mfs_inval *inv);
/* qsort() order of models: by path. */
int mfs_model_cmp(const void *a, const void *b);

/* A walk of the store (store.c), at mount and at each rescan (rescan.c). */
struct rescan;
struct scan_ctx;
/* Called for a folder holding model.sig; its insides are the model's business. */
typedef int (*model_fn)(struct scan_ctx *c, int dirfd, const char *rel, const struct stat *sig_st);

struct scan_ctx {
	struct mfs_mount *m;
	model_fn found;
	mfs_dir_fn dir_fn; /* every folder entered (inotify watches), or NULL */
	void *dir_arg;
	struct rescan *rs; /* reload only */
};

/* Walks folder @rel (open as @dirfd) for models, calling c->found for each. 0 or -errno. */
int mfs_store_scan_dir(struct scan_ctx *c, int dirfd, const char *rel, unsigned depth);

#endif
