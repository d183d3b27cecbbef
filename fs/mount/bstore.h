/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bstore.h - the backing store interface of the mount (libfs): where the
 * models' bytes come from, and opening backing files (backing.c). Included
 * through mount_int.h by every file of the mount; implemented by
 * bstore_local.c (the local folder) and bstore_oci.c (models in an OCI
 * registry). See docs/architecture.md, "The backing
 * store".
 */
#ifndef MODELFS_BSTORE_H
#define MODELFS_BSTORE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * The backing store: where the models' bytes come from. The mount reaches
 * the store only through these operations, so that another kind of store
 * (an OCI registry) plugs in without touching the namespace or the read
 * path. Nothing a store returns is trusted: a model is built only from a
 * signature that verifies, a file is served only at its signed size, and
 * every byte read is checked against the signed Merkle tree before the
 * reader sees it (vread.c). A store that lies gives EIO, never bad bytes.
 *
 * A handle is an int naming a folder or file of the store, closed with
 * close(); for the local folder it is a file descriptor opened without
 * following links. open() walks a relative path one component at a time and
 * never leaves the store. open_local() returns a descriptor of this machine,
 * for what the libraries below read through descriptors (tree files, packed
 * copies, attestations): a remote store materialises those in the cache
 * folder first (a tree is 1/128 of its file and read at random). Every
 * operation returns 0, a handle or a byte count, or a negative errno, and
 * may be called from any thread.
 */
struct stat;
typedef int (*mfs_bstore_entry_fn)(void *ctx, const char *name, unsigned char d_type);
struct mfs_bstore;
struct mfs_bstore_ops {
	const char *name; /* "local", "oci" */
	/* @rel under folder @dir; @flags: O_RDONLY, O_DIRECTORY, O_PATH. */
	int (*open)(const struct mfs_bstore *s, int dir, const char *rel, int flags);
	int (*open_local)(const struct mfs_bstore *s, int dir, const char *rel, int flags);
	/* @h itself (@name NULL), or entry @name of folder @h, not followed. */
	int (*stat)(const struct mfs_bstore *s, int h, const char *name, struct stat *st);
	/* Calls @fn for each entry of folder @dir; stops at its first non-zero. */
	int (*list)(const struct mfs_bstore *s, int dir, mfs_bstore_entry_fn fn, void *ctx);
	/* All of @len bytes at @off unless the file ends first. */
	ssize_t (*pread)(const struct mfs_bstore *s, int h, void *buf, size_t len, uint64_t off);
	void (*close)(const struct mfs_bstore *s, int h);
	/* A second handle to what @h names, closed separately. */
	int (*dup)(const struct mfs_bstore *s, int h);
	/* MODEL/model.sig of model folder @dir: *@buf (NUL-terminated, caller
	 * frees), *@len; on failure a reason in @why. */
	int (*read_sig)(const struct mfs_bstore *s, int dir, char **buf, size_t *len, char *why,
	                size_t why_len);
	/* Reports changes in folder @dir as inotify events on @notify_fd. */
	int (*watch)(const struct mfs_bstore *s, int dir, int notify_fd, uint32_t mask);
	/*
	 * Bytes [@off, @off + @len) of file @h were consumed (verified and
	 * handed on): the store may drop its cached copy of them. A hint, never
	 * a failure; NULL when the store caches nothing. See mfs_bstore_drop().
	 */
	void (*drop)(const struct mfs_bstore *s, int h, uint64_t off, uint64_t len);
	/*
	 * Bytes [@off, @off + @len) of file @h failed verification: forget any
	 * copy the store keeps of them (a cached chunk), so that the next
	 * pread() fetches them from their source again. Returns 1 if a copy
	 * was forgotten (one more read may succeed), 0 if there was none, or a
	 * negative errno. NULL when the store keeps no copy. See
	 * mfs_bstore_refetch().
	 */
	int (*refetch)(const struct mfs_bstore *s, int h, uint64_t off, uint64_t len);
	/*
	 * Looks for changes the store cannot report as events (a registry's
	 * tags that moved) and makes them visible to the next walk; frees
	 * what earlier changes left unused. Called by the reload thread only,
	 * before a rescan. Returns how many models changed (0: no rescan
	 * needed). NULL: changes come as inotify events (watch).
	 */
	int (*refresh)(struct mfs_bstore *s);
	/* Frees the store's state at unmount, after every handle was closed; NULL: none. */
	void (*fini)(struct mfs_bstore *s);
};
struct mfs_bstore {
	const struct mfs_bstore_ops *ops;
	void *priv;                  /* the store's own state */
	bool keep_cache;             /* --keep-backing-cache: never call ops->drop */
	uint64_t remote_cache_bytes; /* --remote-cache-size (oci:// only); 0: no block cache */
	unsigned poll_s;             /* --watch-interval: seconds between refreshes (oci://) */
	/* Files signed by SHA-256 alone (plain OMS) may be served, their tree derived
	 * from data that hashed to it (store.c, plain_params()); oci:// only. */
	bool whole_file_ok;
};
extern const struct mfs_bstore_ops mfs_bstore_local;
extern const struct mfs_bstore_ops mfs_bstore_oci;

struct mfs_mount;
struct mv_err;

/* Does the STORE argument @store name a registry (oci://...) or a store file (a regular file)? */
bool mfs_bstore_is_oci(const char *store);

/**
 * mfs_bstore_oci_setup() - make the models @store names the mount's store (bstore_oci_setup.c)
 * @m: in/out: m->trust and the cache folder set; sets m->bstore, m->store_fd, m->store
 * @store: in: oci://REGISTRY/REPO:TAG, oci://REGISTRY/REPO@sha256:HEX, or
 *         the path of a store file mapping mount paths to such references
 * @ca_file: in: --ca-cert (PEM CA file), or NULL for the system CAs
 * @insecure: in: --insecure (plain http to any host)
 * @err: out: one line naming the reference or file and the reason
 * Resolves each reference to a manifest digest (a digest is pinned; a tag
 * is resolved again by ops->refresh), checks the layer paths, fetches
 * model.sig and the trees into CACHE/oci/<hex>/model. Credentials come from
 * the auth files only. One reference that fails fails the mount; a model of
 * a store file that fails is refused and the others served.
 * Return: 0 or a negative errno; on failure m->bstore.ops->fini frees
 * what was made.
 */
int mfs_bstore_oci_setup(struct mfs_mount *m, const char *store, const char *ca_file, bool insecure,
                         struct mv_err *err);

/* What an oci:// store fetched at set-up, for mfs_oci_materialise(). */
struct mfs_oci_fetched {
	const char *what;   /* "REGISTRY/REPO@sha256:HEX", for messages */
	const char *digest; /* the pinned manifest digest, "sha256:HEX" */
	const char *sig;    /* the referrer's bundle, checked against its digest */
	size_t sig_len;
	uint64_t tree_bytes; /* bound on the trees fetched: 1/64 of the files + 1 MiB */
};
struct mfr_manifest;
struct mfr_client;
/**
 * mfs_oci_materialise() - model.sig and the trees into CACHE/oci/<hex>/model (bstore_oci_cache.c)
 * @m: in: the mount (its cache folder)
 * @f: in: what was fetched
 * @rm: in: the referrer's manifest: its tree layers (media type
 *      application/vnd.modelfs.merkle-tree.v1, titled with the tree file's
 *      name) are fetched, others ignored
 * @c: in: a registry client of the store's repository
 * @model_fd: out: CACHE/oci/<hex>/model, laid out as a model folder
 * @err: out: one line naming the reference or folder and the reason
 * A tree layer not named like a tree file, or past @f->tree_bytes, is
 * skipped with a log line (the mount then builds that tree from the data).
 * Return: 0, -EBADMSG (a tree's bytes do not match its digest) or -errno.
 */
int mfs_oci_materialise(struct mfs_mount *m, const struct mfs_oci_fetched *f,
                        const struct mfr_manifest *rm, struct mfr_client *c, int *model_fd,
                        struct mv_err *err);

/**
 * mfs_bstore_drop() - tell the store that a range of a file was consumed
 * @s: in: the store
 * @h: in: a file handle of @s
 * @off, @len: in: the bytes consumed
 * Called once bytes read from @h were verified and copied where they are
 * served from (the reply to the kernel, which keeps them in the mount's page
 * cache, or a tree being built), so that the page cache holds a model once,
 * not twice (issue #15). Never called with --keep-backing-cache. Nothing
 * depends on it: a range read again is read, and verified, again.
 */
static inline void mfs_bstore_drop(const struct mfs_bstore *s, int h, uint64_t off, uint64_t len)
{
	if (!s->keep_cache && s->ops->drop && len)
		s->ops->drop(s, h, off, len);
}

/**
 * mfs_bstore_refetch() - after a failed verification, may the read be tried again?
 * @s: in: the store
 * @h: in: a file handle of @s
 * @off, @len: in: the bytes that failed
 * A store that keeps a local copy of remote bytes (the remote block cache)
 * forgets it, and the caller reads and verifies once more: a damaged copy
 * then heals from the source instead of failing every read until it is
 * evicted. The bytes read again are verified like any others.
 * Return: true if the caller should read once more.
 */
static inline bool mfs_bstore_refetch(const struct mfs_bstore *s, int h, uint64_t off, uint64_t len)
{
	return s->ops->refetch && s->ops->refetch(s, h, off, len) > 0;
}

/* ---- backing.c: opening what the store holds ---- */

struct mfs_mount;
struct mfs_node;

/**
 * mfs_open_backing() - open a file node's backing file safely
 * @fd: out: O_RDONLY descriptor, after checking it is a regular file of
 *      the signed size. Every path component is opened with O_NOFOLLOW
 *      relative to the model folder. When the plain file is absent, the
 *      packed copy (MODEL/.modelfs/packed/<digest>.zst) is opened instead,
 *      its seek table checked, and the node marked MFS_STORED_PACKED: reads
 *      then come from the node's packed copy whatever fd they are given.
 *      The caller owns @fd: an open FUSE handle keeps it for its life, so
 *      these are bounded by what readers hold open, not by the store.
 * Out of descriptors (EMFILE, ENFILE), cached tree fds are shed and the open
 * retried once; a second failure is counted in fd_exhausted, not in
 * open_failures (mfs_openat_bounded()).
 * Return: 0, -EIO (wrong type or size, symlink, bad seek table, no fd), or -errno.
 */
int mfs_open_backing(struct mfs_mount *m, struct mfs_node *n, int *fd);
/* Closes handle @fd of mfs_open_backing() (-1: nothing). */
void mfs_close_backing(struct mfs_mount *m, int fd);
/* openat() walking @relpath's components from @dirfd, never following
 * links (bstore_local.c; also for the cache folder). fd or -errno. */
int mfs_openat_nofollow(int dirfd, const char *relpath, int flags);
/* Is @err (a negative errno) "out of file descriptors": EMFILE or ENFILE? */
static inline bool mfs_fd_errno(int err)
{
	return err == -EMFILE || err == -ENFILE;
}
/* Where mfs_openat_bounded() opens: in which namespace @dirfd is a handle. */
enum mfs_at {
	MFS_AT_STORE,       /* the backing store: a store handle (ops->open) */
	MFS_AT_STORE_LOCAL, /* the backing store, as a descriptor of this machine
	                     * (ops->open_local: trees, packed copies) */
	MFS_AT_HOST,        /* a folder of this machine (the cache folder) */
};
/**
 * mfs_openat_bounded() - open without following links, surviving a full fd table
 * @at: in: which namespace @dirfd and the result belong to
 * @what: in: what is opened, for the fd-exhausted log line ("backing", "tree")
 * When the open fails with EMFILE or ENFILE, the fd cache closes every tree
 * fd no reader holds and the open is tried once more; if it fails again,
 * mfs_fd_exhausted() records it.
 * Return: the handle or fd, or -errno.
 */
int mfs_openat_bounded(struct mfs_mount *m, enum mfs_at at, int dirfd, const char *relpath,
                       int flags, const char *what);

#endif /* MODELFS_BSTORE_H */
