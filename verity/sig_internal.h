/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sig_internal.h - private declarations of libverity's signature code: the
 * loaded key (keys.c), trust look-ups and certificate chains (trust.c), the
 * strict JSON front end (dsse.c, statement.c) and labeled statement parsing.
 * Included by keys.c, trust.c, dsse.c, bundle.c and statement.c (libverity),
 * by bom.c, attest.c and policy.c (libvprov, which links these symbols from
 * libverity) and by tests/fuzz/fuzz_trust.c. Not part of any public
 * interface.
 */
#ifndef MODELFS_SIG_INTERNAL_H
#define MODELFS_SIG_INTERNAL_H

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "verity.h"

#define MV_BUNDLE_MEDIA_TYPE "application/vnd.dev.sigstore.bundle.v0.3+json"
#define MV_DSSE_PAYLOAD_TYPE "application/vnd.in-toto+json"
#define MV_STATEMENT_TYPE    "https://in-toto.io/Statement/v1"
#define MV_PREDICATE_TYPE    "https://model_signing/signature/v1.0"
#define MV_MAX_RESOURCES     1000000u
#define MV_MAX_CHAIN_CERTS   10u

/*
 * A loaded key. Everything derived from the key (SPKI DER, hint, key id) is
 * computed once at load time so that the object is immutable afterwards and
 * can be shared across threads without locks.
 */
struct mv_key {
	EVP_PKEY *pkey;
	enum mv_key_type type;
	bool has_private;
	uint8_t *spki; /* SubjectPublicKeyInfo DER */
	size_t spki_len;
	char hint[65]; /* hex SHA-256 of the canonical PEM */
	char id[65];   /* hex SHA-256 of the SPKI DER */
};

/* keys.c: wraps @pkey (taking ownership on success) into a new mv_key. */
int mv_key_wrap(EVP_PKEY *pkey, bool has_private, const char *label, struct mv_key **out,
                struct mv_err *err);

/* trust.c: looks keys up. Return a borrowed pointer or NULL. */
const struct mv_key *mv_trust_find_hint(const struct mv_trust *t, const char *hint);
const struct mv_key *mv_trust_find_spki(const struct mv_trust *t, const uint8_t *spki,
                                        size_t spki_len);
size_t mv_trust_key_count(const struct mv_trust *t);
/* trust.c: keyless signers. The root is NULL when none was loaded. */
struct ss_root;
const struct ss_root *mv_trust_sigstore_root(const struct mv_trust *t);
size_t mv_trust_identity_count(const struct mv_trust *t);
void mv_trust_identity(const struct mv_trust *t, size_t i, const char **identity,
                       const char **issuer);
size_t mv_trust_ca_count(const struct mv_trust *t);

/*
 * trust.c: verifies @leaf with intermediates @chain to a CA anchor of @t and
 * checks that the leaf may sign (EC key, digitalSignature or codeSigning).
 * -EKEYREJECTED with a message prefixed by @label on failure.
 */
int mv_trust_verify_chain(const struct mv_trust *t, X509 *leaf, STACK_OF(X509) * chain,
                          const char *label, struct mv_err *err);

/* keyless.c: a keyless OMS bundle (verificationMaterial.certificate):
 * verified whole against @trust's identities and Sigstore root when
 * @verify, and its signer named in @s. See keyless.c. */
int mv_keyless_resolve(const char *label, const char *json, size_t len,
                       const struct mv_trust *trust, bool verify, struct mv_signer *s,
                       struct mv_err *err);

/* dsse.c / statement.c: strict JSON front end. */

/*
 * Parses untrusted JSON text of @len bytes (need not be NUL-terminated).
 * Rejects NUL bytes, "\u0000" escapes, trailing garbage and objects with a
 * member name given twice (cJSON keeps the first, other parsers the last:
 * a signed document must mean one thing). @what names the document.
 */
int mv_json_parse_strict(const char *label, const char *what, const char *json, size_t len,
                         cJSON **out, struct mv_err *err);

/*
 * Looks up member @key of object @obj (a JSON object reached by @path, used
 * in messages) and checks that its type is one of the cJSON type bits in
 * @types. A missing member is an error only if @required; then *out = NULL.
 */
int mv_json_member(const char *label, const cJSON *obj, const char *path, const char *key,
                   int types, bool required, const cJSON **out, struct mv_err *err);
/* Name of the JSON type of @item for messages ("a string", ...). */
const char *mv_json_type_name(int types);

/*
 * Copies untrusted text for an error line into @buf (@size bytes, at most
 * 300 characters kept): control characters become '?', so that a message
 * stays one line. Returns @buf.
 */
const char *mv_printable(const char *s, char *buf, size_t size);
#define MV_PRINTABLE_SIZE 304
/* mv_printable() with a temporary buffer, for use as a printf argument. */
#define MV_P(s) mv_printable((s), (char[MV_PRINTABLE_SIZE]){0}, MV_PRINTABLE_SIZE)

/* Statement parser; error lines are prefixed with "@label: ". */
int mv_statement_parse_labeled(const char *label, const char *json, size_t len,
                               struct mv_manifest **out, struct mv_err *err);

#endif /* MODELFS_SIG_INTERNAL_H */
