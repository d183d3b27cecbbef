/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bstore_oci_int.h - shared by the files of an oci:// store: bstore_oci.c
 * (the virtual store and its reads), bstore_oci_setup.c (models resolved,
 * store files, tags that move), bstore_oci_cache.c (signature and trees in
 * the cache folder) and bstore_oci_blocks.c (the remote block cache,
 * --remote-cache-size). See docs/remote.md, "Lazy mount".
 */
#ifndef MODELFS_BSTORE_OCI_INT_H
#define MODELFS_BSTORE_OCI_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fsremote.h"
#include "verity.h"

struct mfs_mount;
struct mfs_rcache;
struct mfs_bstore;

#define OCI_SCHEME      "oci://"
#define OCI_HANDLE_BASE (1 << 30) /* far above any descriptor: never close()d by mistake */
#define OCI_MAX_HANDLES 4096u     /* store handles open at once; more: -EMFILE */
#define OCI_CLIENTS     8u        /* registry clients (connections) per model */
#define OCI_SPARE_SLOTS 1024u     /* block-cache slots for layers of versions to come */
#define OCI_NO_SLOT     SIZE_MAX  /* a layer read past the block cache */

struct oci_model;

/*
 * One version of a model: the manifest digest its reference resolved to,
 * and what was fetched for it. Immutable once linked, except retired. A
 * version whose set-up failed has no manifest and an error instead: its
 * folder then holds only model.sig, whose read gives the error, so that the
 * store walk refuses the model with that reason.
 */
struct oci_gen {
	struct oci_model *model;
	char *what;                      /* "REGISTRY/REPO@sha256:HEX", for messages */
	char digest[MFR_DIGEST_LEN + 1]; /* "" when resolving failed */
	struct mfr_manifest *man;        /* NULL: failed */
	struct mv_err error;             /* why it failed (or why its signature does not verify) */
	char *sig;                       /* the bundle's bytes */
	size_t sig_len;
	int model_fd;         /* CACHE/oci/<hex>/model (model.sig, .modelfs/trees), or -1 */
	size_t *slots;        /* per layer: its block-cache slot, or OCI_NO_SLOT */
	bool retired;         /* replaced: freed once no handle names its entries */
	struct oci_gen *next; /* the model's list of retired versions */
};

/* A model of the store: a mount path and a reference, resolved again by refresh. */
struct oci_model {
	char *path; /* "org/demo": the model folder's path in the store */
	char *uri;  /* the reference as given ("oci://..."), for log lines */
	struct mfr_ref ref;
	struct oci_gen *gen;     /* the current version (never NULL once set up) */
	struct oci_gen *retired; /* versions replaced, still named by a handle */
	pthread_mutex_t lock;    /* guards pool[] and busy[] */
	pthread_cond_t free_client;
	struct mfr_client *pool[OCI_CLIENTS];
	bool busy[OCI_CLIENTS];
};

/* One folder or file of the virtual store. */
struct oci_ent {
	char *name;                   /* one component ("" for the root) */
	size_t parent;                /* its folder's index (the root's: 0) */
	uint64_t ino;                 /* unique for the mount's life: a new version, a new number */
	bool dir;                     /* a folder */
	bool sig;                     /* a model's model.sig */
	bool top;                     /* a model folder */
	bool gone;                    /* a replaced model folder: found through handles only */
	struct oci_gen *gen;          /* the version it belongs to; NULL above the models */
	const struct mfr_desc *layer; /* a file: its layer in gen->man */
	size_t layer_i;               /* that layer's index */
};

/*
 * The store. Locks, taken in this order: ents_lock, then hlock or a model's
 * lock. Entries are allocated one by one, so a pointer to one stays valid
 * while its version lives; a version is freed only when no handle names an
 * entry of it, checked under ents_lock held for writing, and opening a
 * handle holds ents_lock for reading from lookup to handle.
 */
struct oci_store {
	struct mfs_mount *m;
	struct mfr_client_opts copts;
	char *source; /* the STORE argument, for log lines */
	struct oci_model *models;
	size_t n_models;
	bool store_file; /* STORE named a store file: a model that fails is refused, not fatal */
	pthread_rwlock_t ents_lock;
	struct oci_ent **ents; /* NULL: a free index */
	size_t n_ents, cap_ents;
	uint64_t next_ino;
	pthread_mutex_t hlock;             /* guards handles[] */
	uint32_t handles[OCI_MAX_HANDLES]; /* entry index + 1; 0: free */
	struct mfs_rcache *rc;             /* the remote block cache; NULL: none */
	uint32_t *slot_refs;               /* per block-cache slot: the versions using it */
	size_t cap_slots;
};

/* bstore_oci.c: the virtual store. Callers hold ents_lock as each says. */

/* A new handle naming entry @idx (ents_lock held). Return: the handle, or -EMFILE. */
int mfs_oci_handle_new(struct oci_store *o, size_t idx);
/* The live child @name (@len bytes) of folder @dir, or SIZE_MAX (ents_lock held). */
size_t mfs_oci_child(const struct oci_store *o, size_t dir, const char *name, size_t len);
/**
 * mfs_oci_ent_add() - add an entry under folder @parent (ents_lock held for writing)
 * @o: in/out: the store
 * @parent: in: the folder's index
 * @name, @len: in: the component
 * @gen, @layer, @layer_i, @sig: in: what it is (a folder when neither @layer nor @sig)
 * @idx: out: the entry's index (an existing folder's, for a folder)
 * Return: 0, -EEXIST (taken, or a file in the way), -ENOMEM.
 */
int mfs_oci_ent_add(struct oci_store *o, size_t parent, const char *name, size_t len,
                    struct oci_gen *gen, const struct mfr_desc *layer, size_t layer_i, bool sig,
                    size_t *idx);
/* Removes every entry of version @g (ents_lock held for writing). */
void mfs_oci_ents_drop(struct oci_store *o, const struct oci_gen *g);
/* Does an open handle name an entry of version @g? (ents_lock held for writing) */
bool mfs_oci_gen_in_use(struct oci_store *o, const struct oci_gen *g);
/* Frees model @mo's clients, lock and versions (its entries are the caller's). */
void mfs_oci_model_fini(struct oci_store *o, struct oci_model *mo);
/* Frees version @g and gives back its block-cache slots. */
void mfs_oci_gen_free(struct oci_store *o, struct oci_gen *g);
/* mfs_bstore_ops.refresh of an oci:// store (bstore_oci_setup.c). */
int mfs_oci_refresh(struct mfs_bstore *s);
/* "sha256:HEX" of @len bytes at @data. */
void mfs_oci_digest_of(const void *data, size_t len, char out[MFR_DIGEST_LEN + 1]);

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
 * @ctx_len: in: the bytes of @ctx, copied for a background fill ahead of a
 *           sequential reader (it may point only at what lives as long as
 *           the cache); 0: no background fill
 * Missing chunks are fetched whole (MFS_RC_CHUNK-aligned), written to the
 * data file, then marked in the map. A read inside the window the last
 * fill of the blob made queues the next window (twice as long, up to
 * 16 MiB) on the cache's background thread.
 * Return: 0 or the negative errno of a failed fetch.
 */
int mfs_rcache_read(struct mfs_rcache *rc, size_t slot, const struct mfr_desc *d, void *buf,
                    size_t len, uint64_t off, mfs_rcache_fetch_fn fetch, void *ctx, size_t ctx_len);

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

/*
 * mfs_rcache_release() - close slot @slot's files: it may hold another blob next
 * Called when no version uses the slot any more (no read can be in flight).
 */
void mfs_rcache_release(struct mfs_rcache *rc, size_t slot);

#endif /* MODELFS_BSTORE_OCI_INT_H */
