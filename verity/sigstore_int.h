/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sigstore_int.h - private declarations of libverity's Sigstore bundle
 * verifier (issue #14): offline verification of keyless (Fulcio
 * certificate) and managed-key Sigstore bundles against a trusted root, as
 * the Sigstore client specification lays it out.
 *
 * Files, one concern each:
 *   ss_root.c    the trusted root (trustedroot+json v0.1): CAs, TSAs,
 *                transparency logs, CT logs, their validity windows
 *   ss_bundle.c  the bundle (v0.1, v0.2, v0.3, both media type spellings)
 *   ss_rekor.c   transparency log entries: the order of an entry's
 *                checks, signed entry timestamps, the log's signatures
 *   ss_checkpoint.c  RFC 9162 inclusion proofs, signed checkpoints
 *                (C2SP signed notes; Rekor v1 and v2)
 *   ss_rekor_body.c  an entry's canonicalized body against the bundle
 *   ss_tsa.c     RFC 3161 timestamps
 *   ss_x509.c    the Fulcio chain at a time, key usage, SCTs, identity
 *   ss_verify.c  the order of the checks; the entry point
 *
 * Included by those files, by tests/unit/test_sigstore.c and by the
 * Sigstore fuzzer. Not part of any public interface.
 *
 * Conventions: times are seconds since the Unix epoch, UTC. Functions return
 * 0 or a negative errno (-EBADMSG: malformed input; -EKEYREJECTED: a
 * signature, chain, proof or identity that does not verify; -ENOMEM) and on
 * failure set @err to one line that names the check that failed, e.g.
 * "tlog entry 0: inclusion proof: computed root 1a2b... != checkpoint root
 * 3c4d...". Parsed objects are immutable once returned, so they may be
 * shared between threads; they are freed with their *_free(), which takes
 * NULL.
 */
#ifndef MODELFS_SIGSTORE_INT_H
#define MODELFS_SIGSTORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "verity.h"

/* Bounds on untrusted input: larger inputs are refused, not truncated. */
#define SS_MAX_JSON       (16u << 20) /* a bundle or trusted root */
#define SS_MAX_ENTRIES    16u         /* tlog entries, timestamps per bundle */
#define SS_MAX_PROOF      64u         /* hashes in an inclusion proof */
#define SS_MAX_CHAIN      10u         /* certificates in a chain */
#define SS_MAX_ROOT_ITEMS 64u         /* CAs, TSAs, logs per trusted root */
#define SS_TIME_OPEN_END  INT64_MAX   /* a validity window without an end */
/* Seconds a time vouched for by a log, TSA or CT log (integrated time,
 * RFC 3161 genTime, SCT timestamp) may lie after the current time: the
 * clocks of the service and of this machine may differ by that much. */
#define SS_CLOCK_SKEW 60

/* A validity window [start, end], both ends inclusive (the trusted root's
 * "validFor"; end is SS_TIME_OPEN_END when absent). */
struct ss_window {
	int64_t start;
	int64_t end;
};

/* A transparency log or CT log of the trusted root. */
struct ss_log {
	EVP_PKEY *pkey;     /* publicKey.rawBytes (PKIX DER) */
	char *key_details;  /* publicKey.keyDetails, e.g. "PKIX_ECDSA_P256_SHA_256" */
	uint8_t log_id[32]; /* logId.keyId */
	size_t log_id_len;
	char *base_url; /* "https://rekor.sigstore.dev" */
	struct ss_window valid;
};

/* A certificate authority (Fulcio) or timestamp authority of the root. */
struct ss_ca {
	STACK_OF(X509) * certs; /* certChain.certificates, in the root's order
	                         * (the one furthest from the anchor first) */
	char *uri;
	struct ss_window valid;
};

struct ss_root {
	struct ss_ca *cas; /* certificateAuthorities */
	size_t n_cas;
	struct ss_ca *tsas; /* timestampAuthorities */
	size_t n_tsas;
	struct ss_log *tlogs; /* Rekor */
	size_t n_tlogs;
	struct ss_log *ctlogs;
	size_t n_ctlogs;
};

/* ss_root.c */

/*
 * Parses a trusted root (@json, @len bytes, untrusted) into *@out, owned
 * by the caller. Refuses another media type, keys OpenSSL cannot decode,
 * windows without a start, more than SS_MAX_ROOT_ITEMS of anything.
 * @label names the file in messages.
 */
int ss_root_parse(const char *label, const char *json, size_t len, struct ss_root **out,
                  struct mv_err *err);
/* ss_root_parse() of the file at @path (refused over SS_MAX_JSON). */
int ss_root_load(const char *path, struct ss_root **out, struct mv_err *err);
void ss_root_free(struct ss_root *root);
/* True if @t lies in @w (ends inclusive). */
bool ss_window_has(const struct ss_window *w, int64_t t);
/* Parses an RFC 3339 time ("2021-01-12T11:53:27Z", optional fraction, which
 * is dropped: an end of "...:59.999Z" is "...:59"). 0 or -EBADMSG. */
int ss_time_parse(const char *s, int64_t *out);

/* A transparency log entry of a bundle (verificationMaterial.tlogEntries[i]). */
struct ss_tlog_entry {
	int64_t log_index;
	uint8_t log_id[32]; /* logId.keyId */
	size_t log_id_len;
	char kind[32];           /* kindVersion.kind: "hashedrekord", "dsse", "intoto" */
	char version[16];        /* kindVersion.version: "0.0.1", "0.0.2" */
	int64_t integrated_time; /* 0 when absent (Rekor v2) */
	uint8_t *set;            /* inclusionPromise.signedEntryTimestamp, or NULL */
	size_t set_len;
	bool has_proof; /* inclusionProof present */
	int64_t proof_index;
	int64_t tree_size;
	uint8_t root_hash[32];
	uint8_t (*hashes)[32];
	size_t n_hashes;
	char *checkpoint; /* inclusionProof.checkpoint.envelope, or NULL */
	size_t checkpoint_len;
	uint8_t *body; /* canonicalizedBody, decoded */
	size_t body_len;
};

enum ss_content {
	SS_MESSAGE_SIGNATURE, /* messageSignature */
	SS_DSSE,              /* dsseEnvelope */
};

struct ss_bundle {
	int minor; /* media type version 0.<minor>: 1, 2 or 3 */
	/* verificationMaterial: a certificate (v0.3 "certificate", or the
	 * leaf of "x509CertificateChain"), or a public key hint. */
	X509 *leaf;             /* NULL with a public key */
	STACK_OF(X509) * chain; /* the rest of x509CertificateChain, or NULL */
	char *key_hint;         /* publicKey.hint, or NULL */
	struct ss_tlog_entry *tlog;
	size_t n_tlog;
	uint8_t **tsa; /* timestampVerificationData.rfc3161Timestamps[i], DER */
	size_t *tsa_len;
	size_t n_tsa;
	enum ss_content content;
	/* SS_MESSAGE_SIGNATURE: messageDigest (optional) and signature. */
	bool has_digest;
	char digest_alg[16]; /* "SHA2_256", ... */
	uint8_t digest[64];
	size_t digest_len;
	/* SS_DSSE: the envelope; one signature. */
	char *payload_type;
	uint8_t *payload;
	size_t payload_len;
	/* The signature: messageSignature.signature or the envelope's. */
	uint8_t *sig;
	size_t sig_len;
};

/* ss_bundle.c */

/*
 * Parses a Sigstore bundle (@json, @len bytes, untrusted). Checks structure
 * only: every member's type, base64, decimal strings of int64 (negative log
 * indexes refused), the media type and what each version allows
 * (v0.1: x509CertificateChain and an inclusion promise; v0.2: an inclusion
 * proof; v0.3: "certificate", and a chain is refused), exactly one of
 * messageSignature and dsseEnvelope.
 */
int ss_bundle_parse(const char *label, const char *json, size_t len, struct ss_bundle **out,
                    struct mv_err *err);
void ss_bundle_free(struct ss_bundle *b);

/* ss_rekor.c */

/* The finding of one log entry. */
struct ss_tlog_result {
	bool has_time; /* an inclusion promise verified: its integrated time */
	int64_t time;
	const struct ss_log *log;
	/* SHA-256 of the DER SubjectPublicKeyInfo of the key the entry's body
	 * names (a certificate's key). With a certificate in the bundle the
	 * body's certificate was already compared with it; a managed-key bundle
	 * names no key, so the caller compares this with the policy's key. */
	uint8_t key_sha256[32];
};

/*
 * RFC 9162 §2.1.3.2: checks that @leaf (the leaf hash, SHA-256(0x00 ||
 * entry)) at @index of a tree of @size leaves, with audit path @path
 * (@n hashes), yields @root. -EKEYREJECTED otherwise (also for an index
 * outside the tree or a path of the wrong length).
 */
int ss_merkle_inclusion(int64_t index, int64_t size, const uint8_t leaf[32],
                        const uint8_t (*path)[32], size_t n, const uint8_t root[32],
                        struct mv_err *err);

/* A signed checkpoint (C2SP tlog-checkpoint and signed-note). */
struct ss_checkpoint {
	char origin[256];
	int64_t size;
	uint8_t root[32];
};

/*
 * Verifies the signed note @note (@len bytes): a signature line whose key
 * hint and signature verify with @log's key (hint: the first 4 bytes of
 * the log id for ECDSA logs; of SHA-256(origin || "\n" || 0x01 || key)
 * for Ed25519 ones), other signature lines (cosignatures) ignored; then
 * parses its body into *@out.
 */
int ss_checkpoint_verify(const char *note, size_t len, const struct ss_log *log,
                         struct ss_checkpoint *out, struct mv_err *err);

/*
 * Verifies entry @i of bundle @b against @root: the log is in the root,
 * the inclusion promise (Rekor v1: SET over the canonical JSON of body,
 * integratedTime, logID, logIndex) and its time inside the log's window and
 * not after @now; the inclusion proof and its checkpoint (required for
 * v0.2 and later, and for Rekor v2); and the canonicalized body consistent
 * with the bundle's signature, certificate or key, and artifact digest or
 * envelope (hashedrekord 0.0.1/0.0.2, dsse 0.0.1/0.0.2, intoto 0.0.2).
 * @artifact_sha256 is the artifact's digest (message signatures).
 */
int ss_tlog_verify(const struct ss_bundle *b, size_t i, const struct ss_root *root,
                   const uint8_t artifact_sha256[32], int64_t now, struct ss_tlog_result *out,
                   struct mv_err *err);

/*
 * ss_rekor internals: shared by ss_rekor.c, ss_checkpoint.c and
 * ss_rekor_body.c (ss_verify.c uses ss_spki_sha256()). Each returns 0 or a
 * negative errno as its doc comment in the defining file says.
 */

/* ss_rekor.c */
/* SHA-256 of @data (@len bytes) into @out. 0 or -ENOMEM. */
int ss_sha256(const void *data, size_t len, uint8_t out[32]);
/* SHA-256(@prefix || @a || @b) into @out (@b may be NULL). 0 or -ENOMEM. */
int ss_sha256_prefixed(uint8_t prefix, const void *a, size_t a_len, const void *b, size_t b_len,
                       uint8_t out[32]);
/* SHA-256 of the DER SubjectPublicKeyInfo of @pkey. 0, -EBADMSG or -ENOMEM. */
int ss_spki_sha256(EVP_PKEY *pkey, uint8_t out[32]);
/* Verifies @sig over @msg with @log's key (ECDSA or Ed25519). 0,
 * -EKEYREJECTED or -ENOMEM. */
int ss_log_sig_verify(const struct ss_log *log, const void *msg, size_t len, const uint8_t *sig,
                      size_t sig_len);
/* The host of @log's base URL (its checkpoint origin) into @buf; returns @buf. */
const char *ss_log_host(const struct ss_log *log, char *buf, size_t size);

/* ss_rekor_body.c */
struct ss_body_ctx; /* one body check, private to ss_rekor_body.c */
struct cJSON;
/* A supported entry type ("kind" and "apiVersion") and what it binds. */
struct ss_body_type {
	const char *kind;
	const char *version;
	bool v2;   /* a Rekor v2 type: inclusion proof, no promise */
	bool dsse; /* for DSSE bundles (else message signatures) */
	bool any;  /* for both (hashedrekord 0.0.2 logs DSSE by its PAE) */
	int (*check)(struct ss_body_ctx *c, const struct cJSON *spec, struct mv_err *err);
};
/* The type of entry @i (@e), or -EBADMSG for one not supported. */
int ss_body_type_find(const struct ss_tlog_entry *e, size_t i, const struct ss_body_type **out,
                      struct mv_err *err);
/* Entry @i's canonicalized body against bundle @b; sets @key_sha256 to the
 * SHA-256 of the SPKI of the key the body names. */
int ss_body_verify(const struct ss_bundle *b, const struct ss_tlog_entry *e,
                   const struct ss_body_type *t, const uint8_t *artifact, size_t i,
                   uint8_t key_sha256[32], struct mv_err *err);

/* ss_tsa.c */

/*
 * Verifies RFC 3161 timestamp @der (@len bytes): a TSA of @root whose
 * chain (with or without the certificate embedded in the token) signs it,
 * the TSA's window and its certificates' validity containing the time, the
 * time not over SS_CLOCK_SKEW after @now, the message imprint equal to the
 * hash of @sig (@sig_len bytes). Sets *@time.
 */
int ss_tsa_verify(const uint8_t *der, size_t len, const uint8_t *sig, size_t sig_len,
                  const struct ss_root *root, int64_t now, int64_t *time, struct mv_err *err);

/* ss_x509.c */

/*
 * Verifies @leaf (with bundle intermediates @extra, may be NULL) to a
 * certificate authority of @root whose window holds @t, at time @t: chain,
 * validity of every certificate, leaf key usage digitalSignature and
 * extended key usage codeSigning. Sets *@issuer (borrowed from @root or
 * @extra) to the leaf's issuer for the SCT check.
 */
int ss_cert_verify(X509 *leaf, STACK_OF(X509) * extra, const struct ss_root *root, int64_t t,
                   X509 **issuer, struct mv_err *err);
/* Verifies the leaf's embedded SCTs: at least one by a CT log of @root, its
 * time in the log's window and not over SS_CLOCK_SKEW after @now. */
int ss_sct_verify(X509 *leaf, X509 *issuer, const struct ss_root *root, int64_t now,
                  struct mv_err *err);

/* The identity of a Fulcio certificate. */
struct ss_identity {
	char san[1024];    /* the email, URI or Fulcio otherName */
	char issuer[1024]; /* OIDC issuer: extension 1.3.6.1.4.1.57264.1.8,
	                    * else the legacy 1.3.6.1.4.1.57264.1.1 */
};

/* Reads the identity; refuses a certificate whose two issuer extensions
 * disagree, or one without a SAN or issuer. */
int ss_identity_get(X509 *leaf, struct ss_identity *out, struct mv_err *err);

/* Helpers of ss_x509.c that ss_tsa.c (and messages elsewhere) share. */
#define SS_TIME_STR 32 /* room for ss_time_format() */
/* Writes @t as RFC 3339 UTC ("2024-03-19T17:26:26Z"; "open end" for
 * SS_TIME_OPEN_END) to @out. Thread-safe. */
void ss_time_format(int64_t t, char out[SS_TIME_STR]);
/* Converts an ASN.1 UTCTime or GeneralizedTime (a fraction is dropped) to
 * seconds since the epoch. 0 or -EBADMSG. */
int ss_asn1_time_get(const ASN1_TIME *a, int64_t *out);
/*
 * A store that verifies at time @t with @ca's last certificate as the only
 * anchor (the others are untrusted intermediates): every certificate valid
 * at @t (notAfter inclusive), unknown critical extensions refused except
 * Fulcio's (1.3.6.1.4.1.57264.1.*). NULL on ENOMEM or an empty chain; freed
 * with X509_STORE_free().
 */
X509_STORE *ss_ca_store(const struct ss_ca *ca, int64_t t);

/* ss_verify.c */

/* What to verify against: a certificate identity, or a managed key. */
struct ss_policy {
	const char *identity; /* expected SAN (exact match) */
	const char *issuer;   /* expected OIDC issuer (exact match) */
	EVP_PKEY *key;        /* instead of identity and issuer: a managed key */
};

/* The artifact: its bytes, or only its SHA-256. */
struct ss_artifact {
	const uint8_t *data; /* NULL: digest only */
	size_t len;
	uint8_t sha256[32];
};

/* What verified. */
struct ss_result {
	struct ss_identity id; /* keyless */
	int64_t times[2 * SS_MAX_ENTRIES];
	size_t n_times;
};

/*
 * The whole check of a parsed bundle, in the specification's order: at
 * least one verified time (timestamps and inclusion promises), every tlog
 * entry, the certificate at each time with its SCT and identity, or the
 * managed key; then the signature over the artifact (message signature) or
 * the DSSE envelope (PAE), and for DSSE an in-toto statement naming the
 * artifact's digest when one is given.
 */
int ss_verify(const struct ss_bundle *b, const struct ss_root *root, const struct ss_policy *policy,
              const struct ss_artifact *artifact, int64_t now, struct ss_result *out,
              struct mv_err *err);

#endif /* MODELFS_SIGSTORE_INT_H */
