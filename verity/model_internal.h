/* SPDX-License-Identifier: Apache-2.0 */
/*
 * model_internal.h - helpers shared by walk.c, seal.c and model_verify.c
 * (libverity) and zpack.c (libvpack): listing a model's files, opening them
 * without following symlinks, and hashing files (SHA-256 and fs-verity tree
 * in one read pass) on all CPUs. Not part of the public API.
 */
#ifndef MODELFS_MODEL_INTERNAL_H
#define MODELFS_MODEL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "verity.h"

/* ------------------------------------------------------------------------
 * Walking a model (walk.c)
 * ------------------------------------------------------------------------ */

/* model_signing's default ignores (git metadata), recorded in every seal. */
extern const char *const mv_default_ignores[];
extern const size_t mv_n_default_ignores;

/* One path found in a model. */
struct mv_walk_entry {
	char *name;    /* POSIX path relative to the model; "." for a single file */
	uint64_t size; /* from lstat; 0 for error entries */
	int error;     /* 0, or why the path is refused (-ELOOP, -EINVAL, -EACCES...) */
	char *why;     /* with @error: the reason, e.g. "symlink, refused" */
};

/* The files of a model, sorted bytewise by name. */
struct mv_walk {
	char *root;       /* the model path as given */
	bool single_file; /* root is a regular file: one entry "." */
	int dirfd;        /* root folder (O_PATH-free, O_DIRECTORY), or -1 */
	struct mv_walk_entry *e;
	size_t n, cap;
	char **ignore; /* normalized ignore paths (relative, no "./", no "/" at end) */
	size_t n_ignore;
};

/**
 * mv_walk_open() - open a model path and set up its ignore list
 * @w: out: the walk; release with mv_walk_free()
 * @model_path: in: folder or single file (a symlink here is followed: it is
 *              the user's own argument, not model content)
 * @ignore, @n_ignore: in: extra ignore paths (relative to the model, or
 *                     absolute paths inside it)
 * @err: out: error line naming @model_path
 *
 * model.sig, MV_HIDDEN_DIR and mv_default_ignores are always ignored.
 */
int mv_walk_open(struct mv_walk *w, const char *model_path, const char **ignore, size_t n_ignore,
                 struct mv_err *err);

/**
 * mv_walk_list() - list every file of the model into w->e, sorted
 * @w: in/out: an opened walk
 * @err: out: error line (only for failures that stop the walk)
 *
 * Paths that cannot be signed (symlinks, special files, unreadable folders)
 * become entries with error set, so a caller can report all of them.
 */
int mv_walk_list(struct mv_walk *w, struct mv_err *err);

void mv_walk_free(struct mv_walk *w);

/* Adds more ignore paths (same rules as mv_walk_open's). -ENOMEM on failure. */
int mv_walk_add_ignores(struct mv_walk *w, const char *const *paths, size_t n);

/* True if @rel is an ignore path of @w or lies below one. */
bool mv_walk_ignored(const struct mv_walk *w, const char *rel);

/**
 * mv_walk_open_file() - open a model file for reading, refusing symlinks
 * @w: in: the walk
 * @name: in: relative name ("." for the single file)
 * @st: out: fstat of the opened file, which must be a regular file
 * @err: out: "<name>: <reason>"
 *
 * Every path component is opened with O_NOFOLLOW, so a folder swapped for a
 * symlink after the listing cannot lead outside the model.
 * Return: the fd, or a negative errno.
 */
int mv_walk_open_file(const struct mv_walk *w, const char *name, struct stat *st,
                      struct mv_err *err);

/* ------------------------------------------------------------------------
 * Hashing files (seal.c)
 * ------------------------------------------------------------------------ */

/* Called with every tree block as it completes (see mv_tree_sink_fn). */
struct mv_hash_job {
	/* in */
	const char *name;     /* for messages */
	const char *activity; /* "sealing", "verifying": for "changed while ..." */
	int fd;               /* open regular file, read with pread */
	struct stat st;       /* fstat taken when opened */
	bool want_sha256;
	bool want_tree;
	struct mv_tree_params params; /* with want_tree; data_size = st.st_size */
	mv_tree_sink_fn sink;         /* optional */
	void *sink_ctx;
	/* out */
	uint8_t sha256[32];
	struct mv_measurement m;
	struct mv_err err;
	int ret;
};

/*
 * mv_hash_file() - hash one file: SHA-256 and/or fs-verity tree, reading
 * each byte once. Large files are split over two threads (one reads and
 * SHA-256s, the other builds the tree on the same buffers). Fails with
 * -EAGAIN if the file's size, mtime or ctime changed while it was read.
 * Sets and returns job->ret.
 */
int mv_hash_file(struct mv_hash_job *job);

/* Number of worker threads for @threads (0 = online CPUs). */
unsigned mv_thread_count(unsigned threads);

/*
 * mv_run_parallel() - call fn(ctx, i) for i in [0, n) on up to @threads
 * threads, handing out indexes in order. fn's return value is ignored: it
 * records results itself. If a thread cannot be started, the caller's
 * thread does the remaining work.
 */
void mv_run_parallel(size_t n, unsigned threads, void (*fn)(void *ctx, size_t i), void *ctx);

/* "<fs-verity digest hex>.tree": a tree file's name in MV_TREES_DIR. */

#endif /* MODELFS_MODEL_INTERNAL_H */
