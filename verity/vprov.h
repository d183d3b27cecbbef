/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vprov.h - the public interface of libvprov, provenance on top of
 * libverity (verity.h): the CycloneDX ML-BOM of a signed model (bom.c),
 * attestations, DSSE-signed in-toto statements about a model.sig
 * (attest.c), and trust policies, with the signed name of a model and its
 * binding to a store path (policy.c). See docs/provenance.md and
 * docs/policy.md. libvprov links libcrypto and cJSON through libverity;
 * no zstd.
 */
#ifndef MODELFS_VPROV_H
#define MODELFS_VPROV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "verity.h"

#ifdef __cplusplus
extern "C" {
#endif

/* CycloneDX ML-BOM (bom.c); see docs/provenance.md. */
struct mv_bom_opts {
	const char *spec;          /* "1.6" (default) or "1.7" */
	const char *serial_number; /* "urn:uuid:..."; NULL: a random v4 UUID */
	const char *timestamp;     /* RFC 3339; NULL: now */
	const char
	    *model_dir; /* for config.json (used only if its SHA-256 is signed); may be NULL */
};

/**
 * mv_bom_build() - the CycloneDX JSON ML-BOM of a signed model
 * @m: in: the manifest (verified, or inspected: the BOM says which in no way)
 * @o: in: options (may be NULL)
 * @out, @out_len: out: malloc'd JSON text ending in a newline
 * @err: out: error line
 *
 * Deterministic apart from serialNumber and timestamp.
 */
int mv_bom_build(const struct mv_manifest *m, const struct mv_bom_opts *o, char **out,
                 size_t *out_len, struct mv_err *err);

/* Attestations (attest.c): DSSE-signed in-toto statements about a model.sig. */
#define MV_ATTEST_DIR       ".modelfs/attestations" /* <sha256 of bundle>.json */
#define MV_ATTEST_MAX_FILES 1024u
#define MV_ATTEST_MAX_SIZE  (16u << 20)

struct mv_attestation {
	char *file;           /* file name in MV_ATTEST_DIR */
	char *predicate_type; /* NULL if the statement could not be read */
	char *predicate;      /* compact predicate JSON, or NULL */
	char *subject_name;
	char subject_sha256[65]; /* hex, "" if unknown */
	char key_id[65];         /* signer key id ("" if the key is unknown) */
	char hint[65];           /* OMS hint the bundle names */
	bool verified;           /* signature good, key trusted, subject = this model.sig */
	char *reason;            /* why not verified (one line), NULL if verified */
};

struct mv_attestation_list {
	struct mv_attestation *a;
	size_t n;
};

void mv_attestations_free(struct mv_attestation_list *l);

/**
 * mv_attest_build() - sign an attestation about the model.sig of @m
 * @m: in: the manifest; the subject is {name, sha256 of its statement}
 * @predicate_type: in: URI
 * @predicate_json, @len: in: the predicate (a JSON object)
 * @key: in: private key (need not be the publisher's)
 * @out, @out_len: out: malloc'd bundle JSON
 */
int mv_attest_build(const struct mv_manifest *m, const char *predicate_type,
                    const char *predicate_json, size_t len, const struct mv_key *key, char **out,
                    size_t *out_len, struct mv_err *err);

/* Writes @bundle to MODEL/.modelfs/attestations/<sha256>.json atomically; @name out (may be NULL).
 */
int mv_attest_write(const char *model_dir, const char *bundle, size_t len, char name[70],
                    struct mv_err *err);

/**
 * mv_attestations_load() - read and check every attestation of a model
 * @model_dir: in: the model folder
 * @m: in: its manifest (the subject every attestation must name)
 * @trust: in: trusted keys; NULL: nothing is verified (inspect)
 * @out: out: one entry per file, sorted by file name; unverifiable ones
 *       have verified=false and a reason
 * @err: out: error line (I/O errors only; bad attestations are entries)
 */
int mv_attestations_load(const char *model_dir, const struct mv_manifest *m,
                         const struct mv_trust *trust, struct mv_attestation_list *out,
                         struct mv_err *err);
/* The same on the attestation folder itself (the mount: a /proc/self/fd path). */
int mv_attestations_load_dir(const char *dir, const struct mv_manifest *m,
                             const struct mv_trust *trust, struct mv_attestation_list *out,
                             struct mv_err *err);

/* Trust policy (policy.c); format in docs/policy.md. Immutable once loaded. */
struct mv_policy;

/* Loads a policy file; key files it names are relative to its folder. */
int mv_policy_load(const char *path, struct mv_policy **out, struct mv_err *err);
void mv_policy_free(struct mv_policy *p);

/*
 * The signed name of a model: its provenance name (seal --name), else the
 * statement's subject name; "" if neither. The one definition every layer
 * uses (policy, name check, xattrs, status, BOM).
 */
const char *mv_model_name(const struct mv_manifest *m);

/*
 * How a model's signed name must match its store path (docs/policy.md,
 * "Names and store paths"). A policy's "names" map overrides it per path.
 */
enum mv_name_check {
	MV_NAME_CHECK_SUFFIX = 0, /* default: the path, or its last components after a '/' */
	MV_NAME_CHECK_EXACT,      /* the name is the path */
	MV_NAME_CHECK_OFF,        /* no check: the store's names carry no meaning */
};

/* Parses "suffix" / "exact" / "off"; -EINVAL otherwise. */
int mv_name_check_parse(const char *s, enum mv_name_check *out);
/* "suffix", "exact" or "off". */
const char *mv_name_check_str(enum mv_name_check mode);

/**
 * mv_name_bind_check() - is a model's signed name bound to its store path?
 * @p: in: the policy, or NULL; its "names" map decides for a path it lists
 * @model_path: in: the model's path relative to the store root ("org/m1")
 * @m: in: the VERIFIED manifest
 * @mode: in: the rule for a path the policy does not map
 * @err: out: on refusal, one line: signed name "…" does not match store
 *       path "…" (--name-check=MODE, or the policy's mapping)
 *
 * Without this, a validly signed model placed at another model's path (an
 * older build, a swapped folder) is served under that path. Return: 0,
 * -EKEYREJECTED refused.
 */
int mv_name_bind_check(const struct mv_policy *p, const char *model_path,
                       const struct mv_manifest *m, enum mv_name_check mode, struct mv_err *err);

/**
 * mv_policy_check() - apply a policy to a verified model
 * @p: in: the policy
 * @model_path: in: the model's path in the store
 * @m: in: the VERIFIED manifest
 * @atts: in: its attestations (only verified ones count; may be NULL)
 * @err: out: on refusal, one line naming the rule that failed
 *
 * A rule (its "path" glob) or a min_signed_at pin applies when it matches
 * @model_path OR the signed name (mv_model_name), so moving a model does
 * not escape it; "default" looks at @model_path only.
 * Return: 0 allowed, -EKEYREJECTED refused, -ENOMEM.
 */
int mv_policy_check(const struct mv_policy *p, const char *model_path, const struct mv_manifest *m,
                    const struct mv_attestation_list *atts, struct mv_err *err);

/*
 * The pickle policy ("transcode", "hide", "show", "deny") for a model: the
 * first rule matching @model_path that sets one, and the first matching
 * @name (may be NULL) that sets one; if both, the stricter. NULL if none.
 */
const char *mv_policy_pickle(const struct mv_policy *p, const char *model_path, const char *name);

/*
 * Whether some rule matching @model_path or @name (may be NULL: a model
 * whose signature did not verify has no name) says "required": true: the
 * model must be served, and `modelfs status` reports the mount unhealthy
 * (exit 1) if it is refused. False for a NULL policy.
 */
bool mv_policy_required(const struct mv_policy *p, const char *model_path, const char *name);

#ifdef __cplusplus
}
#endif
#endif /* MODELFS_VPROV_H */
