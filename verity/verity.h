/* SPDX-License-Identifier: Apache-2.0 */
/*
 * verity.h - the public interface of libverity, the core: fs-verity Merkle
 * trees (merkle.c), tree files (treefile.c), block verification (verify.c,
 * memtree.c), hashing (hash_algs.c), keys and trust (keys.c, trust.c), DSSE
 * and OMS (OpenSSF Model Signing) bundles and in-toto statements (dsse.c,
 * bundle.c, statement.c), sealing and verifying a model folder (walk.c,
 * seal.c, model_verify.c) and I/O helpers (util.c).
 *
 * libverity knows nothing of FUSE, caches or zstd. Everything here is plain
 * C over OpenSSL's libcrypto and cJSON. Two libraries sit on top of it, each
 * with its own header: libvpack (vpack.h: zstd-packed files, zpack.c) and
 * libvprov (vprov.h: CycloneDX BOM, attestations, trust policies: bom.c,
 * attest.c, policy.c). This header includes both at its end, as an umbrella,
 * except when MODELFS_VERITY_CORE is defined (libverity's own sources), so
 * the core cannot call them. Neither header needs zstd.h.
 *
 * Conventions:
 *   - Functions return 0 on success or a negative errno value on failure.
 *     Verification failures return -EBADMSG, untrusted signers -EKEYREJECTED,
 *     malformed input -EINVAL, I/O errors the errno of the failing call.
 *   - Functions that can fail for reasons a user must see take a
 *     struct mv_err *; on failure it holds one line naming the file and the
 *     reason. The pointer may be NULL.
 *   - Objects returned by *_new / *_load / *_parse are owned by the caller and
 *     released with the matching *_free, which accepts NULL.
 *   - Thread-safety is stated per object. Unless stated otherwise an object
 *     may be read concurrently but not modified concurrently.
 */
#ifndef MODELFS_VERITY_H
#define MODELFS_VERITY_H

#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MV_VERSION "0.1.0"

/* ------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------ */

/* One line for the user: "<file>: <reason>". */
struct mv_err {
	int code; /* negative errno, 0 when unset */
	char msg[1024];
};

/**
 * mv_err_set() - record an error unless one is already recorded
 * @err: out: the error to fill; may be NULL
 * @code: negative errno value
 * @fmt: printf format of the one-line message
 *
 * Return: @code, so callers can write "return mv_err_set(err, -EINVAL, ...)".
 */
int mv_err_set(struct mv_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------------------------
 * Small helpers shared by every layer (util.c)
 * ------------------------------------------------------------------------ */

/* Writes 2*len lowercase hex characters and a NUL to @out. */
void mv_hex_encode(const uint8_t *in, size_t len, char *out);
/* Value of one hex digit (either case), or -1. */
int mv_hex_digit(int c);
/* Returns the number of bytes decoded, or -EINVAL on bad hex or overflow. */
int mv_hex_decode(const char *hex, uint8_t *out, size_t out_max);
/*
 * Strict UTF-8, as Python's decoder: no overlong forms, no surrogates,
 * nothing above U+10FFFF. NUL bytes are valid UTF-8; callers that must
 * refuse them check separately.
 */
bool mv_utf8_valid(const void *s, size_t len);
/*
 * Copies a name from untrusted bytes for a one-line message or a JSON
 * string: control characters and backslashes become \\xNN, and so does every
 * non-ASCII byte if the name is not valid UTF-8. @out_len should be at
 * least 4 * strlen(in) + 6. Thread-safe.
 */
void mv_name_printable(const char *in, char *out, size_t out_len);
/* mv_name_printable() into a malloc'd buffer of the right size; NULL on ENOMEM. */
char *mv_name_printable_dup(const char *in);
/* Base64 (standard alphabet, padded). Returned buffers are malloc'd. */
char *mv_base64_encode(const uint8_t *in, size_t len);
int mv_base64_decode(const char *in, size_t in_len, uint8_t **out, size_t *out_len);

/**
 * mv_write_file_atomic() - write a whole file through a temp file and rename
 * @path: in: final path
 * @data, @len: in: contents
 * @mode: in: permission bits of the new file
 * @err: out: error line naming @path
 *
 * The data is fsync'd before the rename, so @path holds either its old
 * contents or all of @data, never a mix.
 */
int mv_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode,
                         struct mv_err *err);

/*
 * A file written through a temporary file in the same folder and renamed
 * over its final name: readers see the old file or the whole new one.
 * Error messages name the temporary file ("<tmp>: fsync: <reason>"), which
 * starts with the final name when one was given to mv_atomic_open().
 */
struct mv_atomic_file {
	int dirfd;          /* borrowed folder fd (or AT_FDCWD); names are relative to it */
	int fd;             /* the temp file, open O_RDWR; -1 once closed */
	const char *name;   /* borrowed final name; may be set after open, before commit */
	char tmp[PATH_MAX]; /* the temp file's name; "" once renamed or removed */
};

/* mv_atomic_commit() @flags */
#define MV_ATOMIC_NOSYNC  1u /* do not fsync the file before the rename */
#define MV_ATOMIC_KEEP_FD 2u /* leave @fd open; the caller takes it (sets a->fd = -1) */

/**
 * mv_atomic_open() - create the temporary file of an atomic write
 * @a: out: the state; every field is set, even on failure
 * @dirfd: in: folder the names are relative to (borrowed; AT_FDCWD allowed)
 * @name: in: final name (borrowed, must outlive @a); the temp is
 *        "<name>.<random>.tmp" beside it. NULL: the temp is ".tmp.<random>"
 *        and the caller sets a->name before mv_atomic_commit().
 * @mode: in: exact permission bits of the file (umask does not apply)
 * @err: out: error line naming a->tmp
 *
 * The temp is created O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC with an
 * unpredictable suffix. Return: 0, or a negative errno (then a->fd is -1,
 * a->tmp still names the file that could not be made, nothing is left).
 */
int mv_atomic_open(struct mv_atomic_file *a, int dirfd, const char *name, unsigned mode,
                   struct mv_err *err);
/**
 * mv_atomic_commit() - publish the temporary file under a->name
 * @a: in/out: state from mv_atomic_open(), data written to a->fd
 * @flags: in: MV_ATOMIC_* (0: fsync, close, rename)
 * @err: out: error line naming a->tmp
 *
 * Return: 0, or a negative errno; on failure the temp file is removed.
 */
int mv_atomic_commit(struct mv_atomic_file *a, unsigned flags, struct mv_err *err);
/**
 * mv_atomic_abort() - close a->fd and remove the temp file if still there
 * @a: in/out: state from mv_atomic_open(); safe twice, after a failed open
 *     and after mv_atomic_commit() (then it only closes a kept fd)
 */
void mv_atomic_abort(struct mv_atomic_file *a);

/*
 * Positioned I/O that retries short transfers and EINTR.
 * mv_pread_full: reads up to @len bytes, stopping early only at end of file;
 *   returns the count or -errno.
 * mv_pread_exact: reads exactly @len bytes; 0, -EIO if the file ends first
 *   (it shrank or is truncated), or -errno.
 * mv_pwrite_full: writes all @len bytes; 0 or -errno.
 */
ssize_t mv_pread_full(int fd, void *buf, size_t len, uint64_t off);
int mv_pread_exact(int fd, void *buf, size_t len, uint64_t off);
int mv_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
/*
 * mv_buf_reserve: makes *@buf (of *@cap bytes, may be NULL/0) hold at least
 * @need bytes. The old contents are not kept: it is scratch space.
 * 0 or -ENOMEM (then *@buf and *@cap are unchanged).
 */
int mv_buf_reserve(uint8_t **buf, size_t *cap, size_t need);

/**
 * mv_read_file() - read a small whole file (signature, key, JSON)
 * @path: in: path; opened with O_NOFOLLOW
 * @max: in: refuse files larger than this
 * @out, @out_len: out: malloc'd contents, NUL-terminated for convenience
 */
int mv_read_file(const char *path, size_t max, char **out, size_t *out_len, struct mv_err *err);

/* ------------------------------------------------------------------------
 * Hash algorithms (hash_algs.c)
 * ------------------------------------------------------------------------ */

enum mv_hash_alg {
	MV_HASH_SHA256 = 1, /* fs-verity's FS_VERITY_HASH_ALG_SHA256 */
	MV_HASH_SHA512 = 2, /* fs-verity's FS_VERITY_HASH_ALG_SHA512 */
};

#define MV_MAX_DIGEST_SIZE 64
#define MV_MAX_SALT_SIZE   32
#define MV_MIN_LOG_BLOCK   10 /* 1 KiB */
#define MV_MAX_LOG_BLOCK   16 /* 64 KiB */

/* Name ("sha256"), digest size and input block size; NULL/0 if unknown. */
const char *mv_hash_name(enum mv_hash_alg alg);
size_t mv_hash_digest_size(enum mv_hash_alg alg);
size_t mv_hash_block_size(enum mv_hash_alg alg);
/* Parses "sha256" / "sha512"; returns -EINVAL otherwise. */
int mv_hash_parse(const char *name, enum mv_hash_alg *out);

/*
 * A reusable hashing context. Fetching an EVP_MD and creating a context per
 * block costs ~23% of throughput, so each thread keeps one of these.
 * Not thread-safe: one per thread.
 */
struct mv_hasher;
struct mv_hasher *mv_hasher_new(enum mv_hash_alg alg);
void mv_hasher_free(struct mv_hasher *h);
/* Hashes prefix || data into @out (mv_hash_digest_size bytes). */
int mv_hasher_digest(struct mv_hasher *h, const void *prefix, size_t prefix_len, const void *data,
                     size_t len, uint8_t *out);
/*
 * Returns this thread's hasher for @alg, created on first use and freed at
 * thread exit. Lets concurrent verifiers share no hashing state.
 */
struct mv_hasher *mv_hasher_thread(enum mv_hash_alg alg);

/* One-shot SHA-256 (for digests of small things such as keys, statements). */
void mv_sha256(const void *data, size_t len, uint8_t out[32]);

/* ------------------------------------------------------------------------
 * fs-verity Merkle trees (merkle.c)
 * ------------------------------------------------------------------------ */

/* Parameters that, with the data, determine a file's fs-verity digest. */
struct mv_tree_params {
	enum mv_hash_alg alg;
	uint32_t block_size; /* power of two, 1 KiB .. 64 KiB */
	uint8_t salt_size;   /* 0 .. 32 */
	uint8_t salt[MV_MAX_SALT_SIZE];
	uint64_t data_size;
};

#define MV_MAX_LEVELS 8

/*
 * Shape of a tree, derived from its parameters. Level 0 holds the hashes of
 * data blocks; level num_levels-1 is a single block whose hash is the root.
 * As in fs-verity's on-disk layout, levels are stored top level first:
 * level_start[i] is the index (in blocks, from the tree's start) of level i's
 * first block.
 */
struct mv_tree_geometry {
	unsigned num_levels;
	unsigned digest_size;
	unsigned hashes_per_block;
	unsigned log_block_size;
	uint64_t data_blocks;
	uint64_t level_blocks[MV_MAX_LEVELS];
	uint64_t level_start[MV_MAX_LEVELS];
	uint64_t tree_blocks; /* total blocks in all levels */
};

/* Validates @p and fills @g. Returns -EINVAL for bad parameters or overflow. */
int mv_tree_geometry(const struct mv_tree_params *p, struct mv_tree_geometry *g);

/*
 * The measurement of a file: the Merkle root and the fs-verity file digest
 * (hash of struct fsverity_descriptor), exactly as `fsverity digest` prints.
 */
struct mv_measurement {
	struct mv_tree_params params;
	uint8_t root[MV_MAX_DIGEST_SIZE];
	uint8_t digest[MV_MAX_DIGEST_SIZE];
};

/* Computes the file digest from params and root (the 256-byte descriptor). */
void mv_descriptor_digest(const struct mv_tree_params *p, const uint8_t *root, uint8_t *digest_out);

/*
 * Streaming tree builder. Feed the data in order, in pieces of any size;
 * memory is O(levels * block_size), independent of the file size.
 * If a tree sink is given, every tree block is handed to it with its level
 * and index as it completes, so the tree can be written to a file.
 * Not thread-safe: one builder per stream.
 */
typedef int (*mv_tree_sink_fn)(void *ctx, unsigned level, uint64_t index, const void *block,
                               size_t block_size);
struct mv_tree_builder;
int mv_tree_builder_new(const struct mv_tree_params *p, mv_tree_sink_fn sink, void *sink_ctx,
                        struct mv_tree_builder **out);
int mv_tree_builder_update(struct mv_tree_builder *b, const void *data, size_t len);
/* Checks that exactly params.data_size bytes came, and fills @m. */
int mv_tree_builder_final(struct mv_tree_builder *b, struct mv_measurement *m);
void mv_tree_builder_free(struct mv_tree_builder *b);

/*
 * mv_measure_fd() - read a whole file from an fd and measure it.
 * @fd: in: opened file; read with pread from offset 0
 * @p: in: params; p->data_size must be the file's size
 * @sink, @sink_ctx: optional tree sink (may be NULL)
 * @m: out: the measurement
 */
int mv_measure_fd(int fd, const struct mv_tree_params *p, mv_tree_sink_fn sink, void *sink_ctx,
                  struct mv_measurement *m);
/* Reads up to @len bytes at @off into @buf: the count (0 at the end), or -errno. */
typedef ssize_t (*mv_pread_fn)(void *ctx, void *buf, size_t len, uint64_t off);
/*
 * mv_measure_pread() - mv_measure_fd() reading through @rd(@rd_ctx, ...), for
 * data that is not behind a descriptor (a backing store's handle).
 */
int mv_measure_pread(mv_pread_fn rd, void *rd_ctx, const struct mv_tree_params *p,
                     mv_tree_sink_fn sink, void *sink_ctx, struct mv_measurement *m);

/* ------------------------------------------------------------------------
 * Tree files (treefile.c) - the on-disk form of a Merkle tree; see
 * docs/formats.md. Trees are never trusted: the root stored in a tree file
 * is only a hint, and every hash block is checked against the signed root.
 * ------------------------------------------------------------------------ */

#define MV_TREE_MAGIC       "MFSTREE1"
#define MV_TREE_HEADER_SIZE 4096 /* header area; levels follow, block aligned */

struct mv_tree_header {
	struct mv_tree_params params;
	struct mv_tree_geometry geo;
	uint8_t root[MV_MAX_DIGEST_SIZE];
	uint64_t tree_offset; /* file offset of the first tree block */
};

/* Serializes a header into @buf (MV_TREE_HEADER_SIZE bytes). */
void mv_tree_header_encode(const struct mv_tree_header *h, uint8_t *buf);
/*
 * Parses untrusted header bytes. Checks magic, version, algorithm, block
 * size, salt size and that the recorded level offsets equal the geometry
 * derived from the parameters. @file_size, if non-zero, must hold the tree.
 */
int mv_tree_header_decode(const uint8_t *buf, size_t len, uint64_t file_size,
                          struct mv_tree_header *h, struct mv_err *err);

/* Tree files are named after the fs-verity digest: "<hex>.tree". */
#define MV_TREE_NAME_MAX (2 * MV_MAX_DIGEST_SIZE + sizeof(".tree"))
void mv_tree_file_name(const struct mv_measurement *m, char out[MV_TREE_NAME_MAX]);

/*
 * A tree file being written: a temporary file in a folder, filled by the
 * tree builder's sink as blocks complete, then given its header and renamed.
 * Lets a caller build the tree in the same pass as other hashing (seal).
 * One writer per file; not thread-safe.
 */
struct mv_tree_writer {
	int dirfd; /* the folder given to open */
	int fd;    /* af.fd while the temp file is open, else -1: {.fd = -1} is closed */
	struct mv_atomic_file af;
	struct mv_tree_geometry geo;
};

/* Creates the temporary file in @dirfd (may be AT_FDCWD) for a tree of @p. */
int mv_tree_writer_open(struct mv_tree_writer *w, int dirfd, const struct mv_tree_params *p);
/* The mv_tree_sink_fn to give the builder; ctx is the writer. */
int mv_tree_writer_sink(void *ctx, unsigned level, uint64_t index, const void *block,
                        size_t block_size);
/*
 * Writes the header for @m and renames the file to @name in the folder.
 * @created (may be NULL) tells whether no file of that name existed before.
 * @durable: fsync before the rename (trees are derivable caches, so seal
 * skips it; the mount's cache keeps it).
 */
int mv_tree_writer_commit(struct mv_tree_writer *w, const struct mv_measurement *m,
                          const char *name, bool durable, bool *created);
/* Removes the temporary file, if any. Safe after commit. */
void mv_tree_writer_abort(struct mv_tree_writer *w);

/*
 * mv_tree_file_write() - measure @data_fd and write its tree file atomically
 * @data_fd: in: the data, read from offset 0
 * @p: in: tree parameters (data_size set)
 * @tree_path: in: where to write the tree file (temp file + rename)
 * @m: out: the measurement
 * @err: out: error line
 */
int mv_tree_file_write(int data_fd, const struct mv_tree_params *p, const char *tree_path,
                       struct mv_measurement *m, struct mv_err *err);

/* ------------------------------------------------------------------------
 * Block verification (verify.c)
 *
 * The kernel's scheme: a data block is checked against its level-0 hash;
 * each hash block is checked against its parent's hash, climbing only until
 * a hash block that was already verified (or the root). Verified hash blocks
 * are remembered by the hash-block source, which the caller owns, so the
 * same logic serves a simple in-memory tree (CLI, tests) and the mount's
 * bounded cache.
 * ------------------------------------------------------------------------ */

/* A hash block lent out by a source; release it with ops->put. */
struct mv_hblock {
	const uint8_t *data; /* block_size bytes */
	bool verified;       /* already checked against its parent */
	void *priv;          /* owned by the source */
};

/*
 * How the verifier reaches hash blocks. All callbacks must be thread-safe:
 * the verifier calls them concurrently from many threads.
 *   get: lend block @index of @level (index within the level).
 *   put: return a lent block.
 *   mark_verified: record that a lent block checked out; later gets of the
 *                  same block report verified=true until the source drops it.
 */
struct mv_hblock_ops {
	int (*get)(void *ctx, unsigned level, uint64_t index, struct mv_hblock *out);
	void (*put)(void *ctx, struct mv_hblock *hb);
	void (*mark_verified)(void *ctx, struct mv_hblock *hb);
};

/* What the verifier found wrong, for a log line. */
struct mv_verify_failure {
	uint64_t block; /* data block index, or hash block index at @level */
	int level;      /* -1: data block; >= 0: hash block at that level */
	uint8_t expected[MV_MAX_DIGEST_SIZE];
	uint8_t actual[MV_MAX_DIGEST_SIZE];
};

/* A trusted tree: params + signed root. Immutable, shareable across threads. */
struct mv_tree {
	struct mv_tree_params params;
	struct mv_tree_geometry geo;
	uint8_t root[MV_MAX_DIGEST_SIZE];
};

/* True if both describe the same tree (algorithm, block size, salt, size). */
bool mv_tree_params_equal(const struct mv_tree_params *a, const struct mv_tree_params *b);

/* Builds an mv_tree from a measurement taken from a signature. */
int mv_tree_init(struct mv_tree *t, const struct mv_tree_params *p, const uint8_t *root);

/**
 * mv_verify_blocks() - check whole data blocks against a trusted tree
 * @t: in: the trusted tree
 * @ops, @ctx: in: hash-block source
 * @first_block: in: index of the first data block in @data
 * @data: in: the data of blocks first_block.. ; the last block may be short
 *        only if it is the file's last block
 * @len: in: bytes in @data
 * @fail: out (may be NULL): details of the first failure
 *
 * Thread-safe. Return: 0, -EBADMSG on a digest mismatch, -EINVAL on a range
 * outside the file, or the error from ops->get.
 */
int mv_verify_blocks(const struct mv_tree *t, const struct mv_hblock_ops *ops, void *ctx,
                     uint64_t first_block, const uint8_t *data, size_t len,
                     struct mv_verify_failure *fail);

/*
 * Rounds [off, off+len) out to whole blocks, clamped to the file size.
 * Returns -EINVAL on overflow or an offset past the end.
 */
int mv_range_to_blocks(const struct mv_tree *t, uint64_t off, uint64_t len, uint64_t *aligned_off,
                       uint64_t *aligned_len);

/*
 * A simple hash-block source: the whole tree of a tree file held in memory,
 * with an atomic bitmap of verified blocks. Used by the CLI and tests; the
 * mount uses cache/'s bounded source. Thread-safe.
 */
struct mv_mem_tree;
/* Loads a tree file; its header must match @t's params (else -EBADMSG). */
int mv_mem_tree_load(const char *tree_path, const struct mv_tree *t, struct mv_mem_tree **out,
                     struct mv_err *err);
/* Builds the tree from data in memory (tests, small files). */
int mv_mem_tree_build(const struct mv_tree_params *p, int data_fd, struct mv_mem_tree **out,
                      struct mv_measurement *m);
void mv_mem_tree_free(struct mv_mem_tree *mt);
extern const struct mv_hblock_ops mv_mem_tree_ops;
/* Counts for tests: how many hash blocks were hashed (verification work). */
uint64_t mv_mem_tree_hash_checks(const struct mv_mem_tree *mt);

/* ------------------------------------------------------------------------
 * Keys (keys.c)
 * ------------------------------------------------------------------------ */

enum mv_key_type {
	MV_KEY_ECDSA_P256,
	MV_KEY_ECDSA_P384,
	MV_KEY_ECDSA_P521,
	MV_KEY_ED25519, /* modelfs extension: OMS verifiers do not accept it */
};

struct mv_key; /* wraps an EVP_PKEY; immutable after load, thread-safe */

int mv_key_type_parse(const char *name, enum mv_key_type *out);
const char *mv_key_type_name(enum mv_key_type t);

/* Writes PREFIX.key (PKCS#8 PEM, 0600) and PREFIX.pub (SPKI PEM) atomically. */
int mv_keygen(enum mv_key_type type, const char *prefix, struct mv_err *err);
int mv_key_load_private(const char *path, struct mv_key **out, struct mv_err *err);
int mv_key_load_public(const char *path, struct mv_key **out, struct mv_err *err);
/* Public key from SPKI DER or from PEM text (rawBytes of pre-1.1 bundles). */
int mv_key_from_public_bytes(const uint8_t *buf, size_t len, struct mv_key **out,
                             struct mv_err *err);
void mv_key_free(struct mv_key *k);
enum mv_key_type mv_key_get_type(const struct mv_key *k);
/* OMS key hint: hex SHA-256 of the canonical PEM_write_PUBKEY output. */
void mv_key_hint(const struct mv_key *k, char out[65]);
/* modelfs key id: hex SHA-256 of the SPKI DER. */
void mv_key_id(const struct mv_key *k, char out[65]);
/* Sign @msg (ECDSA with the curve's hash, DER; or Ed25519). malloc'd sig. */
int mv_key_sign(const struct mv_key *k, const void *msg, size_t len, uint8_t **sig, size_t *sig_len,
                struct mv_err *err);
/* 0 if @sig is a valid signature of @msg, -EBADMSG otherwise. */
int mv_key_verify(const struct mv_key *k, const void *msg, size_t len, const uint8_t *sig,
                  size_t sig_len);

/* ------------------------------------------------------------------------
 * Trust (trust.c): the keys and CA anchors a verifier accepts.
 * Build once, then share read-only across threads.
 * ------------------------------------------------------------------------ */

struct mv_trust;
struct mv_trust *mv_trust_new(void);
void mv_trust_free(struct mv_trust *t);
int mv_trust_add_key_file(struct mv_trust *t, const char *path, struct mv_err *err);
int mv_trust_add_ca_file(struct mv_trust *t, const char *path, struct mv_err *err);
size_t mv_trust_count(const struct mv_trust *t);

/*
 * Keyless (Sigstore) signers: a certificate identity (the SAN: an email or
 * a URI, exact) and its OIDC issuer (exact), checked against a Sigstore
 * trusted root (Fulcio CAs, Rekor and CT log keys, timestamp authorities).
 * The root is loaded once; without one, no keyless signature verifies.
 */
int mv_trust_add_identity(struct mv_trust *t, const char *identity, const char *issuer,
                          struct mv_err *err);
/* Loads the Sigstore trusted root at @path (application/vnd.dev.sigstore.trustedroot+json). */
int mv_trust_load_sigstore_root(struct mv_trust *t, const char *path, struct mv_err *err);
/* Where the public-good trusted root is installed (tools/bootstrap, meson install). */
const char *mv_sigstore_root_default(void);

/*
 * The user's trust inputs (--trust KEY.pub, --trust-ca CA.pem, keyless
 * identities with their issuers, --trust-root FILE), in the order given.
 * @who names the caller in the errors that name no file ("WHO: out of
 * memory"); @required makes an empty list an error. With identities and no
 * @sigstore_root, mv_sigstore_root_default() is loaded.
 */
struct mv_trust_inputs {
	const char *const *key_files;
	size_t n_key_files;
	const char *const *ca_files;
	size_t n_ca_files;
	const char *const *identities; /* n_identities of each, paired by index */
	const char *const *issuers;
	size_t n_identities;
	const char *sigstore_root;
	const char *who;
	bool required;
};

int mv_trust_load(const struct mv_trust_inputs *in, struct mv_trust **out, struct mv_err *err);

/* ------------------------------------------------------------------------
 * Manifests: the content of a verified model.sig (bundle.c, statement.c)
 * ------------------------------------------------------------------------ */

#define MV_SIG_NAME     "model.sig"
#define MV_HIDDEN_DIR   ".modelfs"       /* modelfs's folder inside a model */
#define MV_TREES_DIR    ".modelfs/trees" /* tree files, named <fsverity hex>.tree */
#define MV_EXT_KEY      "modelfs"        /* member of the predicate we own */
#define MV_MAX_SIG_SIZE (64u << 20)
/*
 * A manifest keeps the statement's bytes only when they are shorter than
 * this: what the mount's user.modelfs.statement can serve (the kernel's
 * XATTR_SIZE_MAX is 64 KiB). Above it, keeping them would cost the daemon
 * ~370 bytes per signed file for nothing. statement_len and
 * statement_sha256 are always kept: what needs the bytes of a bigger
 * statement reads model.sig again and checks them against the digest.
 */
#define MV_STATEMENT_KEEP_MAX (64u << 10)

/* One signed file. */
struct mv_resource {
	char *name; /* POSIX relative path, validated; "." = single file */
	uint8_t sha256[32];
	bool has_merkle;              /* modelfs extension present for this file */
	struct mv_measurement merkle; /* params (incl. data_size), root, digest */
};

struct mv_property {
	char *key;
	char *value;
};

/* Provenance from the modelfs extension; absent fields are NULL. */
struct mv_provenance {
	char *name, *revision, *source, *base_model, *license;
	char **datasets;
	size_t n_datasets;
	char *signed_at; /* RFC 3339 UTC */
	char *tool_version;
	struct mv_property *props;
	size_t n_props;
};

/* How the signer was identified. */
struct mv_signer {
	bool is_certificate;
	bool is_keyless; /* a Sigstore (Fulcio) certificate: identity and issuer set */
	char key_id[65]; /* hex SHA-256 of the SPKI DER of the signing key */
	char *subject;   /* certificate subject (one line), or NULL */
	char *identity;  /* keyless: the certificate's identity (email or URI) */
	char *issuer;    /* keyless: its OIDC issuer */
	enum mv_key_type key_type;
	char hint[65]; /* OMS hint of the signing key ("" if unknown) */
};

/*
 * mv_signer_describe() - one line naming @s for messages and displays:
 * "identity ID (issuer URL)" for keyless signers, "certificate SUBJECT",
 * or "key id HEX". Untrusted text is made printable. Returns @out.
 * Thread-safe.
 */
const char *mv_signer_describe(const struct mv_signer *s, char *out, size_t len);

struct mv_manifest {
	char *subject_name;
	uint8_t subject_sha256[32];
	struct mv_resource *res; /* sorted by name as signed */
	size_t n_res;
	/*
	 * A parsed manifest holds every res[].name in this one block (no
	 * allocation per file); mv_manifest_free() frees a name only if it is
	 * not inside it. NULL in manifests built by hand.
	 */
	char *names;
	size_t names_len;
	char **ignore_paths; /* from predicate.serialization, may be empty */
	size_t n_ignore;
	bool has_extension; /* modelfs member present */
	struct mv_provenance prov;
	/*
	 * The signed in-toto statement JSON (the DSSE payload), NUL-terminated,
	 * or NULL when statement_len >= MV_STATEMENT_KEEP_MAX. Its length and
	 * SHA-256 are always set.
	 */
	char *statement;
	size_t statement_len;
	uint8_t statement_sha256[32];
	struct mv_signer signer;
	bool legacy_key_material; /* publicKey.rawBytes form (pre-1.1) */
};

/* Frees @m; res[].name must be malloc'd or inside @m->names. */
void mv_manifest_free(struct mv_manifest *m);
/* Finds a resource by name (binary search); NULL if absent. */
const struct mv_resource *mv_manifest_find(const struct mv_manifest *m, const char *name);

/*
 * Checks a resource name from an untrusted statement: relative POSIX path,
 * no empty, "." or ".." component, no "//", no leading "/", no NUL, no
 * "./" prefix. "." alone is accepted only when @allow_dot (single file).
 */
bool mv_resource_name_valid(const char *name, bool allow_dot);

/* Warnings that do not fail verification (pre-1.1 key material, ...). */
typedef void (*mv_warn_fn)(void *ctx, const char *line);

/**
 * mv_sig_open() - steps 1-3 of verification: parse a bundle, check its
 *                 signature against @trust, parse the statement and check
 *                 the subject digest
 * @sig_path: in: the model.sig file
 * @trust: in: trusted keys and CAs
 * @warn, @warn_ctx: in: receives warnings (may be NULL)
 * @out: out: the verified manifest
 * @err: out: error line naming @sig_path
 *
 * No data file is read. Return: 0, -EINVAL (malformed), -EKEYREJECTED
 * (no trusted signer), -EBADMSG (bad signature or subject digest).
 */
int mv_sig_open(const char *sig_path, const struct mv_trust *trust, mv_warn_fn warn, void *warn_ctx,
                struct mv_manifest **out, struct mv_err *err);

/* The same, on bundle bytes already in memory (fuzzing, tests). */
int mv_sig_parse(const char *json, size_t len, const struct mv_trust *trust, mv_warn_fn warn,
                 void *warn_ctx, struct mv_manifest **out, struct mv_err *err);

/*
 * Reads a model.sig and parses bundle and statement WITHOUT checking the
 * signature or any trust (inspect). signer holds what the bundle claims:
 * hint (key method) or subject and key_id (certificate). Never use the
 * result to decide what is trusted.
 */
int mv_sig_inspect(const char *sig_path, mv_warn_fn warn, void *warn_ctx, struct mv_manifest **out,
                   struct mv_err *err);

/* Parses a statement payload alone, without any signature (inspect, fuzz). */
int mv_statement_parse(const char *json, size_t len, struct mv_manifest **out, struct mv_err *err);

/*
 * mv_statement_build() - serialize an in-toto Statement v1 for @m
 * @m: in: subject_name, res[] (sorted by name), ignore_paths, prov and, if
 *     has_extension, the per-file Merkle data. subject_sha256 is computed
 *     here and written back into @m, which is why @m is not const.
 * @out, @out_len: out: malloc'd JSON text
 */
int mv_statement_build(struct mv_manifest *m, char **out, size_t *out_len, struct mv_err *err);

/*
 * mv_bundle_build() - sign a statement into a Sigstore bundle v0.3 (DSSE)
 * @statement, @len: in: the payload
 * @key: in: private key; the bundle carries its hint
 * @out, @out_len: out: malloc'd bundle JSON
 */
int mv_bundle_build(const char *statement, size_t len, const struct mv_key *key, char **out,
                    size_t *out_len, struct mv_err *err);

/* DSSE pre-authentication encoding; malloc'd. */
int mv_dsse_pae(const char *type, const void *body, size_t body_len, uint8_t **out,
                size_t *out_len);

/* ------------------------------------------------------------------------
 * Sealing and whole-model verification (seal.c, model_verify.c, walk.c)
 * ------------------------------------------------------------------------ */

/* What a seal covered (for the CLI's summary line). */
struct mv_seal_stats {
	size_t files;
	uint64_t bytes;
};

struct mv_seal_opts {
	const char *name; /* subject name; default: folder's base name */
	struct mv_provenance prov;
	struct mv_tree_params tree;   /* alg, block_size, salt; data_size ignored */
	bool trees_only;              /* rebuild trees for an existing signature */
	const struct mv_trust *trust; /* with trees_only: to check it first */
	unsigned threads;             /* 0 = number of CPUs */
	const char **ignore_paths;    /* extra paths to leave out, relative to the model */
	size_t n_ignore_paths;
	const char *signature;       /* default: MODEL/model.sig; FILE.sig for a single file */
	struct mv_seal_stats *stats; /* out (may be NULL) */
};

/**
 * mv_seal() - sign a model folder (or a single file)
 * @model_path: in: folder to sign
 * @key: in: private key
 * @opts: in: options
 * @err: out: error line naming the offending file
 *
 * Writes the tree files into MV_TREES_DIR, then model.sig atomically. A file
 * that changes while it is hashed (size or mtime) is an error (-EAGAIN).
 * Symlinks and special files are errors (-ELOOP / -EINVAL).
 */
int mv_seal(const char *model_path, const struct mv_key *key, const struct mv_seal_opts *opts,
            struct mv_err *err);

/*
 * Packed copies of signed files (the format and its reader and writer are
 * libvpack's, vpack.h): MODEL/.modelfs/packed/<fs-verity digest hex>.zst.
 * Only their names are in the core, for `modelfs verify` and the mount.
 */
#define MV_PACKED_DIR     ".modelfs/packed" /* packed files, <fsverity hex>.zst */
#define MV_ZPACK_EXT      ".zst"
#define MV_ZPACK_NAME_MAX (2 * MV_MAX_DIGEST_SIZE + sizeof(MV_ZPACK_EXT))

/* "<fs-verity digest hex>.zst": a packed file's name in MV_PACKED_DIR. */
void mv_zpack_file_name(const struct mv_measurement *m, char out[MV_ZPACK_NAME_MAX]);

/* MODEL/.modelfs/packed/<digest>.zst of a resource (-ENAMETOOLONG, -EINVAL). */
int mv_zpack_path(const char *model_dir, const struct mv_resource *r, char *out, size_t out_len);

/* The signature of vpack.h's mv_zpack_measure(), for mv_verify_opts. */
typedef int (*mv_packed_measure_fn)(int fd, const char *name, const struct mv_tree_params *p,
                                    uint8_t *sha256, mv_tree_sink_fn sink, void *sink_ctx,
                                    struct mv_measurement *m, struct mv_err *err);

struct mv_verify_opts {
	const char *signature;     /* default: MODEL/model.sig */
	const char **ignore_paths; /* extra paths to ignore */
	size_t n_ignore_paths;
	bool ignore_unsigned_files;
	bool skip_file_hashes; /* mount: check signature only */
	/*
	 * How to measure a packed copy (MV_PACKED_DIR): vpack.h's
	 * mv_zpack_measure. NULL: packed copies are not looked at, so a file
	 * stored only packed is reported missing. The core links no zstd.
	 */
	mv_packed_measure_fn measure_packed;
};

/* Receives one line per problem found; verification goes on after it. */
typedef void (*mv_problem_fn)(void *ctx, const char *line);

/**
 * mv_model_verify() - all five steps of `modelfs verify`
 * @model_path: in: the folder or single file
 * @trust: in: trust inputs
 * @opts: in: options
 * @problem, @pctx: in: gets one line per problem
 * @warn, @wctx: in: gets warnings
 * @out: out (may be NULL): the manifest on success
 *
 * Return: 0 if all checks passed, -EBADMSG/-EKEYREJECTED/-EINVAL if some
 * failed (each reported through @problem), other negative errno on I/O
 * errors.
 */
int mv_model_verify(const char *model_path, const struct mv_trust *trust,
                    const struct mv_verify_opts *opts, mv_problem_fn problem, void *pctx,
                    mv_warn_fn warn, void *wctx, struct mv_manifest **out);

/* Path of the tree file of a resource: MODEL/.modelfs/trees/<digest>.tree */
int mv_tree_path(const char *model_dir, const struct mv_resource *r, char *out, size_t out_len);

#ifdef __cplusplus
}
#endif

/* The umbrella: packing and provenance, unless building the core itself. */
#ifndef MODELFS_VERITY_CORE
#include "vpack.h"
#include "vprov.h"
#endif

#endif /* MODELFS_VERITY_H */
