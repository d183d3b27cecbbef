/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fsremote.h - libfsremote: models in OCI registries (docs/remote.md).
 *
 * References (REGISTRY/REPO[:TAG][@sha256:HEX]), an HTTP client on libcurl
 * with TLS, timeouts and bounded responses, registry auth (anonymous, Basic,
 * bearer tokens; credentials from the auth files users already have), the
 * OCI distribution calls a push needs, the parsers of manifests, indexes and
 * WWW-Authenticate challenges (fuzzed by tests/fuzz/fuzz_oci.c), and the
 * push of a verified model as a CNCF ModelPack artifact with its signature
 * and Merkle trees attached as a referrer.
 *
 * Conventions are libverity's: functions return 0 or a negative errno and
 * fill a struct mv_err with one line naming the registry or reference and
 * the reason; objects from *_new / *_parse are freed with the matching
 * *_free, which accepts NULL. A client is not thread-safe: use one per
 * thread. Nothing received from the network is trusted: every size is
 * bounded, every digest checked where the protocol allows it.
 */
#ifndef MODELFS_FSREMOTE_H
#define MODELFS_FSREMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "verity.h"

/* Bounds on what a registry may send (docs/remote.md "Bounds"). */
#define MFR_MANIFEST_MAX (4u << 20)  /* a manifest or index body */
#define MFR_TOKEN_MAX    (64u << 10) /* a token endpoint's answer */
#define MFR_ERRBODY_MAX  (64u << 10) /* an error body (kept for nothing but draining) */
#define MFR_HEADER_MAX   8192u       /* one response header we keep */
#define MFR_AUTHFILE_MAX (1u << 20)  /* an auth.json / config.json */
#define MFR_DIGEST_LEN   71          /* "sha256:" + 64 hex */
#define MFR_MAX_DESCS    65536u      /* layers of a manifest, entries of an index */

/* Media types (OCI image spec, CNCF ModelPack, Sigstore, modelfs). */
#define MFR_MT_MANIFEST      "application/vnd.oci.image.manifest.v1+json"
#define MFR_MT_INDEX         "application/vnd.oci.image.index.v1+json"
#define MFR_MT_EMPTY         "application/vnd.oci.empty.v1+json"
#define MFR_AT_MODEL         "application/vnd.cncf.model.manifest.v1+json"
#define MFR_MT_MODEL_CONFIG  "application/vnd.cncf.model.config.v1+json"
#define MFR_MT_WEIGHT        "application/vnd.cncf.model.weight.v1.raw"
#define MFR_MT_WEIGHT_CONFIG "application/vnd.cncf.model.weight.config.v1.raw"
#define MFR_MT_DOC           "application/vnd.cncf.model.doc.v1.raw"
#define MFR_MT_CODE          "application/vnd.cncf.model.code.v1.raw"
#define MFR_MT_BUNDLE        "application/vnd.dev.sigstore.bundle.v0.3+json"
#define MFR_MT_TREE          "application/vnd.modelfs.merkle-tree.v1"
/* A file stored packed (seekable zstd, MV_PACKED_DIR): its packed bytes as the layer. */
#define MFR_MT_PACKED "application/vnd.modelfs.packed.v1+zstd"

/* Annotations of a layer. */
#define MFR_ANN_TITLE    "org.opencontainers.image.title"
#define MFR_ANN_FILEPATH "org.cncf.model.filepath"
#define MFR_ANN_PACKED   "dev.modelfs.packed.name" /* a packed layer's name in MV_PACKED_DIR */
#define MFR_ANN_METADATA "org.cncf.model.file.metadata+json"
#define MFR_ANN_TREE_OF  "dev.modelfs.tree.of" /* a tree layer: its file's path */

/* ------------------------------------------------------------------------
 * References (ref.c)
 * ------------------------------------------------------------------------ */

/* A parsed reference: [http://|https://]REGISTRY/REPO[:TAG][@sha256:HEX]. */
struct mfr_ref {
	char *registry;                  /* host[:port], as written */
	char *host;                      /* host alone, without brackets or port */
	char *repo;                      /* lowercase path components */
	char *tag;                       /* NULL if absent */
	char digest[MFR_DIGEST_LEN + 1]; /* "sha256:..." or "" */
	bool plain_http;                 /* written with http:// */
};

/**
 * mfr_ref_parse() - parse and validate a reference (distribution's grammar)
 * @s: in: the reference text
 * @out: out: filled on success; free with mfr_ref_free()
 * @err: out: one line naming @s and the reason
 *
 * No registry is implied: "docker.io" short names are refused (no dot,
 * colon or "localhost" in the first component). Return: 0 or -EINVAL.
 */
int mfr_ref_parse(const char *s, struct mfr_ref *out, struct mv_err *err);
/* Frees the strings of @r (not @r itself); @r may be zeroed or NULL. */
void mfr_ref_free(struct mfr_ref *r);

/*
 * Is @s a path a model's file (a layer's) or a model (a store file's) may
 * have: relative, no empty, "." or ".." component, no component over 255
 * bytes, under 4096 bytes, not model.sig and nothing under .modelfs/?
 */
bool mfr_path_ok(const char *s);

/* ---- store files (storefile.c): the models of a lazy mount of many ---- */

#define MFR_STORE_MAX_MODELS 256u
#define MFR_STORE_FILE_MAX   (1u << 20) /* bytes of a store file */

/* One model of a store file: its mount path and its reference ("oci://..."). */
struct mfr_store_entry {
	char *path;
	char *ref;
};

/**
 * mfr_store_file_parse() - the models a store file names
 * @text, @len: in: the file's bytes (not NUL-terminated; untrusted: fuzzed
 *              by tests/fuzz/fuzz_storefile.c)
 * @name: in: the file's name, for messages
 * @out, @n: out: 1 to MFR_STORE_MAX_MODELS entries in file order; free
 *           with mfr_store_entries_free()
 * @err: out: one line naming @name and the reason
 * {"models": {PATH: REF, ...}} and no other key; each PATH mfr_path_ok()
 * and not equal to or inside another; each REF "oci://" and a reference
 * with a tag or a digest.
 * Return: 0, -EINVAL (not such a file) or -ENOMEM.
 */
int mfr_store_file_parse(const char *text, size_t len, const char *name,
                         struct mfr_store_entry **out, size_t *n, struct mv_err *err);
void mfr_store_entries_free(struct mfr_store_entry *e, size_t n);
/* Is @host (no port) a loopback name: 127.0.0.0/8, ::1 or localhost? */
bool mfr_host_is_loopback(const char *host);
/* Is @s "sha256:" followed by 64 lowercase hex digits? */
bool mfr_digest_valid(const char *s);
/* Is @s a valid tag: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}? */
bool mfr_tag_valid(const char *s);

/* ------------------------------------------------------------------------
 * Parsers of what a registry sends (parse.c), fuzzed by fuzz_oci
 * ------------------------------------------------------------------------ */

/* A descriptor of a manifest, config, layer or index entry. */
struct mfr_desc {
	char *media_type;
	char *artifact_type; /* index entries: NULL if absent */
	char digest[MFR_DIGEST_LEN + 1];
	uint64_t size;
	char *title;    /* annotation org.opencontainers.image.title, or NULL */
	char *filepath; /* annotation org.cncf.model.filepath, or NULL */
	char *packed;   /* annotation dev.modelfs.packed.name, or NULL */
};

/* An image manifest. */
struct mfr_manifest {
	char *media_type; /* NULL if absent */
	char *artifact_type;
	struct mfr_desc config;
	struct mfr_desc *layers;
	size_t n_layers;
	bool has_subject;
	struct mfr_desc subject;
};

/* An image index (referrers API answers and the referrers tag schema). */
struct mfr_index {
	struct mfr_desc *manifests;
	size_t n;
};

/**
 * mfr_manifest_parse() - parse an OCI image manifest
 * @json, @len: in: the body (untrusted, at most MFR_MANIFEST_MAX bytes)
 * @out: out: the manifest; free with mfr_manifest_free()
 * @err: out: the reason
 *
 * Requires schemaVersion 2, a valid config descriptor, valid layer
 * descriptors (digest, size, media type), at most MFR_MAX_DESCS layers.
 * Return: 0, -EBADMSG (malformed), -E2BIG, -ENOMEM.
 */
int mfr_manifest_parse(const char *json, size_t len, struct mfr_manifest **out, struct mv_err *err);
void mfr_manifest_free(struct mfr_manifest *m);

/**
 * mfr_index_parse() - parse an OCI image index
 * @json, @len: in: the body (untrusted)
 * @out: out: the index; free with mfr_index_free()
 * @err: out: the reason
 *
 * Return: 0, -EBADMSG, -E2BIG, -ENOMEM.
 */
int mfr_index_parse(const char *json, size_t len, struct mfr_index **out, struct mv_err *err);
void mfr_index_free(struct mfr_index *ix);

/* A WWW-Authenticate challenge. */
struct mfr_challenge {
	bool bearer;                   /* else Basic */
	char *realm, *service, *scope; /* NULL when absent */
};

/**
 * mfr_challenge_parse() - parse a WWW-Authenticate header value
 * @value, @len: in: the value (untrusted, at most MFR_HEADER_MAX bytes)
 * @out: out: the challenge; free its strings with mfr_challenge_free()
 *
 * Accepts "Basic ..." and "Bearer k=v,k="quoted",...". A Bearer challenge
 * needs an https realm (http only for a loopback host). Return: 0,
 * -EBADMSG, -ENOTSUP (another scheme), -ENOMEM.
 */
int mfr_challenge_parse(const char *value, size_t len, struct mfr_challenge *out);
void mfr_challenge_free(struct mfr_challenge *c);

/* ------------------------------------------------------------------------
 * The registry client (http.c, auth.c, oci.c)
 * ------------------------------------------------------------------------ */

struct mfr_client;

struct mfr_client_opts {
	const char *ca_file;    /* --ca-cert: PEM CA file; NULL: the system CAs */
	bool insecure;          /* --insecure: plain http allowed to any host */
	long connect_timeout_s; /* 0: $MODELFS_HTTP_TIMEOUT, else 15 s */
	long low_speed_time_s;  /* 0: $MODELFS_HTTP_TIMEOUT, else 30 s under 1 KiB/s aborts */
	const char *const *auth_files; /* NULL: $REGISTRY_AUTH_FILE, XDG, ~/.docker */
	size_t n_auth_files;
};

/**
 * mfr_client_new() - a client of @ref's registry and repository
 * @ref: in: the reference (copied)
 * @o: in: options (may be NULL)
 * @out: out: the client; free with mfr_client_free()
 * @err: out: one line naming the registry
 *
 * Reads the credentials for the registry from the auth files (never
 * logged). Refuses plain http to a host that is not loopback unless
 * @o->insecure. No network I/O. Return: 0, -EPERM (plain http refused),
 * -EINVAL (bad auth file), -ENOMEM.
 */
int mfr_client_new(const struct mfr_ref *ref, const struct mfr_client_opts *o,
                   struct mfr_client **out, struct mv_err *err);
/*
 * Requests @c resent so far after a 429, a 5xx or a dropped connection
 * (the retries of docs/remote.md "Faults"), for the mount's counters. The
 * client is used by one thread at a time, so is this count.
 */
uint64_t mfr_client_retries(const struct mfr_client *c);
void mfr_client_free(struct mfr_client *c);

/* A request body read in order; @rewind restarts it for a retry (may be NULL). */
struct mfr_body {
	uint64_t size;
	ssize_t (*read)(void *ctx, void *buf, size_t len); /* <0: abort, error in ctx */
	int (*rewind)(void *ctx);
	void *ctx;
};

/**
 * mfr_blob_exists() - HEAD /v2/NAME/blobs/DIGEST
 * @c: in: the client
 * @digest: in: "sha256:..."
 * @size: in: its size (not checked: a blob's digest names its bytes)
 * @exists: out: whether the registry has it
 * @err: out: one line naming the registry
 *
 * Return: 0, or a negative errno (-EACCES auth, -EIO, -ETIMEDOUT ...).
 */
int mfr_blob_exists(struct mfr_client *c, const char *digest, uint64_t size, bool *exists,
                    struct mv_err *err);

/**
 * mfr_blob_upload() - monolithic upload: POST /v2/NAME/blobs/uploads/, PUT ?digest=
 * @c: in: the client
 * @digest: in: the blob's digest; the registry checks it too
 * @body: in: the bytes, @body->size of them
 * @err: out: one line naming the registry and the digest
 *
 * Return: 0, or a negative errno; a body read error aborts the transfer
 * before its last byte, so the registry never commits the blob.
 */
int mfr_blob_upload(struct mfr_client *c, const char *digest, const struct mfr_body *body,
                    struct mv_err *err);
/* The same for bytes in memory. */
int mfr_blob_upload_mem(struct mfr_client *c, const char *digest, const void *data, size_t len,
                        struct mv_err *err);

/**
 * mfr_manifest_put() - PUT /v2/NAME/manifests/REF
 * @c: in: the client
 * @ref: in: a tag or a digest
 * @media_type: in: the Content-Type
 * @body, @len: in: the manifest bytes
 * @err: out: the reason
 *
 * Return: 0 or a negative errno.
 */
int mfr_manifest_put(struct mfr_client *c, const char *ref, const char *media_type,
                     const char *body, size_t len, struct mv_err *err);

/**
 * mfr_manifest_get() - GET /v2/NAME/manifests/REF
 * @c: in: the client
 * @ref: in: a tag or a digest; for a digest the body's SHA-256 must equal it
 * @body, @len: out: the body (malloc'd, NUL-terminated), at most MFR_MANIFEST_MAX
 * @media_type: out (may be NULL): its Content-Type, malloc'd
 * @err: out: the reason
 *
 * Return: 0, -ENOENT (404), -EBADMSG (digest mismatch), -E2BIG, other errno.
 */
int mfr_manifest_get(struct mfr_client *c, const char *ref, char **body, size_t *len,
                     char **media_type, struct mv_err *err);

/**
 * mfr_referrers_get() - the referrers of @digest, as an index
 * @c: in: the client
 * @digest: in: the subject manifest's digest
 * @body, @len: out: index JSON (malloc'd), an empty index if there is none
 * @api: out (may be NULL): true if the registry has the referrers API,
 *       false if the answer came from the tag schema (sha256-HEX)
 * @err: out: the reason
 *
 * Return: 0 or a negative errno.
 */
int mfr_referrers_get(struct mfr_client *c, const char *digest, char **body, size_t *len, bool *api,
                      struct mv_err *err);

/* The registry name of the client ("host:port"), for messages. */
const char *mfr_client_registry(const struct mfr_client *c);

/* ------------------------------------------------------------------------
 * Push (artifact.c, push.c)
 * ------------------------------------------------------------------------ */

/* The ModelPack media type of a signed file, chosen by its name (docs/remote.md). */
const char *mfr_file_media_type(const char *name);

struct mfr_push_result {
	char manifest_digest[MFR_DIGEST_LEN + 1];
	char referrer_digest[MFR_DIGEST_LEN + 1];
	size_t n_layers, n_uploaded; /* uploaded: not already in the registry */
	uint64_t bytes_uploaded;
	bool tag_schema; /* the referrers tag schema index was written */
};

/**
 * mfr_push() - publish a verified model to @ref
 * @c: in: a client of @ref's registry
 * @ref: in: the reference, with a tag
 * @model_dir: in: the model folder
 * @m: in: its manifest, from a successful mv_model_verify() of @model_dir
 * @res: out: digests and counts
 * @err: out: one line naming the reference and the reason
 *
 * Uploads one raw layer per signed file, streaming each file while hashing
 * it and aborting the upload if its SHA-256 differs from the signed one;
 * then the config and the manifest (by tag), then the referrer carrying
 * model.sig and the Merkle trees (by digest), and the referrers tag schema
 * index when the registry lacks the referrers API. Return: 0, -EBADMSG (a
 * file changed since verification), or another negative errno.
 */
int mfr_push(struct mfr_client *c, const struct mfr_ref *ref, const char *model_dir,
             const struct mv_manifest *m, struct mfr_push_result *res, struct mv_err *err);

/* ------------------------------------------------------------------------
 * Pull (blob.c, pull.c): a pushed model back into a local store folder
 * ------------------------------------------------------------------------ */

#define MFR_RANGE_MAX       (256u << 20) /* one ranged GET (a chunk) */
#define MFR_CHUNK_DEFAULT   (8u << 20)   /* bytes per ranged GET */
#define MFR_CHUNK_MIN       (64u << 10)
#define MFR_JOBS_DEFAULT    4u
#define MFR_JOBS_MAX        32u
#define MFR_PULL_MAX_BYTES  (4ull << 40)    /* all the blobs of a pull: 4 TiB */
#define MFR_PULL_MAX_CHUNKS (1u << 20)      /* chunks of a pull; more: bigger chunks */
#define MFR_PULL_STAGING    ".modelfs-pull" /* DIR + this: the staging folder */

/**
 * mfr_blob_get_range() - GET bytes [@off, @off + @len) of a blob (HTTP Range)
 * @c: in: the client (one per thread)
 * @digest: in: the blob's digest
 * @off, @len: in: the range; @len at most MFR_RANGE_MAX
 * @blob_size: in: the blob's size from its descriptor
 * @data: out: exactly @len bytes, malloc'd (unchecked: the caller hashes the blob)
 * @err: out: one line naming the registry and the digest
 *
 * A 206 must carry the Content-Range asked for; a 200 is accepted only for
 * the whole blob. Return: 0, -ENOENT, -EACCES, -EPROTO (wrong
 * Content-Range), -EIO (short body, other status), or another negative errno.
 */
int mfr_blob_get_range(struct mfr_client *c, const char *digest, uint64_t off, size_t len,
                       uint64_t blob_size, char **data, struct mv_err *err);

struct mfr_pull_opts {
	const struct mv_trust *trust;        /* who may have signed the model */
	const struct mfr_client_opts *copts; /* for the clients of the download threads */
	unsigned jobs;                       /* download threads; 0: MFR_JOBS_DEFAULT */
	uint32_t chunk_size;                 /* bytes per ranged GET; 0: MFR_CHUNK_DEFAULT */
	mv_problem_fn problem;               /* the final check's problem lines (may be NULL) */
	void *pctx;
	mv_warn_fn warn; /* warnings (may be NULL) */
	void *wctx;
	/* How to measure a packed layer (vpack.h's mv_zpack_measure); NULL: refused */
	mv_packed_measure_fn measure_packed;
	/*
	 * Called after each chunk fetched, from the download threads (at once:
	 * the callee serializes), with the bytes fetched so far in this run and
	 * the bytes this run has to fetch; NULL: none.
	 */
	void (*progress)(void *ctx, uint64_t done, uint64_t total);
	void *prctx;
};

struct mfr_pull_result {
	char manifest_digest[MFR_DIGEST_LEN + 1];
	char referrer_digest[MFR_DIGEST_LEN + 1];
	size_t n_files, n_trees, n_trees_built;             /* built: not in the referrer */
	uint64_t bytes;                                     /* of the files */
	uint64_t chunks_fetched, chunks_reused, chunks_bad; /* bad: journalled, did not match */
	uint64_t bytes_fetched;
	char staging[4096]; /* the staging folder (kept after a transient failure) */
};

/**
 * mfr_pull() - download, verify and install the model @ref names into @dir
 * @c: in: a client of @ref's registry (the manifests and the signature)
 * @ref: in: REGISTRY/REPO:TAG or @sha256:HEX (the manifest must hash to it)
 * @dir: in: the target folder; must not exist, or be empty
 * @o: in: trust, clients' options, threads, chunk size, report callbacks
 * @res: out: digests and counts
 * @err: out: one line naming the reference (or file) and the reason
 *
 * Order: the model manifest; its layer paths (untrusted: relative, no
 * "..", no duplicates, nothing under .modelfs/ or named model.sig); the
 * referrer's model.sig, verified against @o->trust before any file is
 * downloaded, whose signed files must be exactly the layers (same digests
 * and sizes); then every blob in chunks by @o->jobs threads into the
 * staging folder DIR.modelfs-pull (resumable: docs/remote.md "Pull"); each
 * blob's SHA-256 against its descriptor, each tree against the signed
 * Merkle root (every block); the model assembled in STAGING/model, checked
 * as `modelfs verify` does, and renamed to @dir. Return: 0; -EBADMSG or
 * -EKEYREJECTED (verification failed: the staging folder is removed);
 * other negative errno (registry, I/O: the staging folder is kept for a
 * resume, its path in @res->staging).
 */
int mfr_pull(struct mfr_client *c, const struct mfr_ref *ref, const char *dir,
             const struct mfr_pull_opts *o, struct mfr_pull_result *res, struct mv_err *err);

#endif /* MODELFS_FSREMOTE_H */
