// SPDX-License-Identifier: Apache-2.0
/*
 * ss_verify.c - the order of the checks of a Sigstore bundle, as the client
 * specification (§4) lays it out, and the entry point ss_verify():
 *
 *   1. the signer: a certificate for an identity policy, a key that agrees
 *      with the managed key otherwise (and every log entry names that key);
 *      no root certificate in the bundle;
 *   2. a time for the signature (§4.2): every RFC 3161 timestamp over the
 *      signature, every transparency log entry (its inclusion promise gives
 *      a time; ss_tlog_verify() also checks its proof, checkpoint and body,
 *      §4.4); at least one verified time, and an RFC 3161 one when an entry
 *      has no integrated time (Rekor v2);
 *   3. the certificate (§4.3): its chain at every verified time, its SCT,
 *      its identity against the policy;
 *   4. the signature (§4.5): over the artifact (message signature; the
 *      message digest, a hint, must name the artifact) or over the DSSE
 *      pre-authentication encoding, whose in-toto statement must name the
 *      artifact's SHA-256.
 *
 * The first failure ends verification; its message is the one reported.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "sig_internal.h"
#include "sigstore_int.h"
#include "ss_json.h"

#define INTOTO_STATEMENT_V01 "https://in-toto.io/Statement/v0.1"

/* ---- signatures --------------------------------------------------------- */

/*
 * key_md() - the hash a Sigstore signer uses with @key
 * @key: in: the verification key
 * @md: out: SHA-256 (P-256, RSA), SHA-384 (P-384), SHA-512 (P-521), or NULL
 *      for Ed25519, which hashes internally
 *
 * Return: 0, or -EKEYREJECTED for a key type not supported.
 */
static int key_md(EVP_PKEY *key, const EVP_MD **md)
{
	char group[32] = "";
	size_t glen = 0;

	*md = NULL;
	switch (EVP_PKEY_get_base_id(key)) {
	case EVP_PKEY_ED25519: return 0;
	case EVP_PKEY_RSA: *md = EVP_sha256(); return 0;
	case EVP_PKEY_EC: break;
	default: return -EKEYREJECTED;
	}
	if (!EVP_PKEY_get_utf8_string_param(key, "group", group, sizeof(group), &glen))
		return -EKEYREJECTED;
	if (!strcmp(group, "prime256v1"))
		*md = EVP_sha256();
	else if (!strcmp(group, "secp384r1"))
		*md = EVP_sha384();
	else if (!strcmp(group, "secp521r1"))
		*md = EVP_sha512();
	return *md ? 0 : -EKEYREJECTED;
}

/*
 * verify_data() - verifies @sig over @msg with @key, hashing with @md
 * @key: in: the public key
 * @md: in: the hash (NULL for Ed25519)
 * @msg, @len: in: the signed bytes
 * @sig, @sig_len: in: the signature
 *
 * Return: 0, -EKEYREJECTED if it does not verify, or -ENOMEM.
 */
static int verify_data(EVP_PKEY *key, const EVP_MD *md, const uint8_t *msg, size_t len,
                       const uint8_t *sig, size_t sig_len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ret = -EKEYREJECTED;

	if (!ctx)
		return -ENOMEM;
	if (EVP_DigestVerifyInit(ctx, NULL, md, NULL, key) == 1 &&
	    EVP_DigestVerify(ctx, sig, sig_len, msg, len) == 1)
		ret = 0;
	EVP_MD_CTX_free(ctx);
	return ret;
}

/*
 * verify_prehashed() - verifies @sig over a message known only by its digest
 * @key: in: the public key (ECDSA or RSA PKCS#1 v1.5)
 * @md: in: the hash @digest was made with
 * @digest: in: EVP_MD_get_size(@md) bytes
 * @sig, @sig_len: in: the signature
 *
 * Return: 0, -EKEYREJECTED if it does not verify, or -ENOMEM.
 */
static int verify_prehashed(EVP_PKEY *key, const EVP_MD *md, const uint8_t *digest,
                            const uint8_t *sig, size_t sig_len)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
	int ret = -EKEYREJECTED;

	if (!ctx)
		return -ENOMEM;
	if (EVP_PKEY_verify_init(ctx) == 1 && EVP_PKEY_CTX_set_signature_md(ctx, md) == 1 &&
	    EVP_PKEY_verify(ctx, sig, sig_len, digest, (size_t)EVP_MD_get_size(md)) == 1)
		ret = 0;
	EVP_PKEY_CTX_free(ctx);
	return ret;
}

/*
 * check_message_digest() - the bundle's messageDigest, if any, against the
 * artifact
 * @b: in: the bundle (a message signature)
 * @a: in: the artifact
 * @err: out: the message on failure
 *
 * The digest is an unauthenticated hint, but one that disagrees with the
 * artifact means the bundle is not about this artifact.
 *
 * Return: 0, -EKEYREJECTED on a mismatch, -EINVAL if it cannot be checked
 * (another algorithm and only the SHA-256 given) or -ENOMEM.
 */
static int check_message_digest(const struct ss_bundle *b, const struct ss_artifact *a,
                                struct mv_err *err)
{
	uint8_t md_buf[EVP_MAX_MD_SIZE];
	const uint8_t *have = a->sha256;
	unsigned int md_len = 32;
	const EVP_MD *md;

	if (!b->has_digest)
		return 0;
	if (strcmp(b->digest_alg, "SHA2_256")) {
		md = EVP_get_digestbyname(!strcmp(b->digest_alg, "SHA2_384")   ? "SHA384"
		                          : !strcmp(b->digest_alg, "SHA2_512") ? "SHA512"
		                          : !strcmp(b->digest_alg, "SHA3_256") ? "SHA3-256"
		                                                               : "SHA3-384");
		if (!md || !a->data)
			return mv_err_set(
			    err, -EINVAL,
			    "messageSignature: a %s message digest needs the artifact, "
			    "not its SHA-256",
			    b->digest_alg);
		if (!EVP_Digest(a->data, a->len, md_buf, &md_len, md, NULL))
			return mv_err_set(err, -ENOMEM,
			                  "messageSignature: cannot hash the artifact");
		have = md_buf;
	}
	if (md_len != b->digest_len || memcmp(have, b->digest, md_len))
		return mv_err_set(
		    err, -EKEYREJECTED,
		    "messageSignature: message digest does not match the artifact's %s",
		    b->digest_alg);
	return 0;
}

/*
 * verify_message() - a message signature over the artifact
 * @b: in: the bundle
 * @key: in: the signer's key (certificate or managed key)
 * @a: in: the artifact: its bytes, or only its SHA-256
 * @err: out: the message on failure
 *
 * Return: 0, -EKEYREJECTED, -EINVAL (cannot be checked from a digest) or
 * -ENOMEM.
 */
static int verify_message(const struct ss_bundle *b, EVP_PKEY *key, const struct ss_artifact *a,
                          struct mv_err *err)
{
	const EVP_MD *md;
	int ret;

	ret = check_message_digest(b, a, err);
	if (ret)
		return ret;
	if (key_md(key, &md))
		return mv_err_set(err, -EKEYREJECTED, "messageSignature: unsupported key type");
	if (a->data) {
		ret = verify_data(key, md, a->data, a->len, b->sig, b->sig_len);
	} else if (!md) {
		return mv_err_set(err, -EINVAL,
		                  "messageSignature: an Ed25519 signature cannot be checked from a "
		                  "digest alone: give the artifact");
	} else if (EVP_MD_get_type(md) != NID_sha256) {
		return mv_err_set(err, -EINVAL,
		                  "messageSignature: the key signs with %s: give the artifact, not "
		                  "its SHA-256",
		                  EVP_MD_get0_name(md));
	} else {
		ret = verify_prehashed(key, md, a->sha256, b->sig, b->sig_len);
	}
	if (ret == -ENOMEM)
		return mv_err_set(err, ret, "messageSignature: out of memory");
	if (ret)
		return mv_err_set(err, ret, "messageSignature: signature does not verify");
	return 0;
}

/* ---- DSSE --------------------------------------------------------------- */

/*
 * subject_names() - whether one in-toto subject has sha256 @hex
 * @subject: in: a subject object
 * @hex: in: 64 lowercase hex digits
 *
 * Return: true if its digest.sha256 equals @hex (either case).
 */
static bool subject_names(const cJSON *subject, const char *hex)
{
	const cJSON *digest, *sha;

	digest = cJSON_GetObjectItemCaseSensitive(subject, "digest");
	sha = cJSON_GetObjectItemCaseSensitive(digest, "sha256");
	return cJSON_IsString(sha) && strlen(sha->valuestring) == 64 &&
	       !strcasecmp(sha->valuestring, hex);
}

/*
 * check_statement() - the DSSE payload is an in-toto statement naming the
 * artifact
 * @b: in: the bundle (DSSE)
 * @a: in: the artifact's SHA-256
 * @err: out: the message on failure
 *
 * Return: 0, -EBADMSG (not a statement) or -EKEYREJECTED (no subject with
 * the artifact's digest), -ENOMEM.
 */
static int check_statement(const struct ss_bundle *b, const struct ss_artifact *a,
                           struct mv_err *err)
{
	const cJSON *type, *subjects, *s;
	char hex[65];
	cJSON *st = NULL;
	int ret;

	ret = mv_json_parse_strict("dsseEnvelope", "in-toto statement", (const char *)b->payload,
	                           b->payload_len, &st, err);
	if (ret)
		return ret == -ENOMEM ? ret : ss_json_recode(err, -EBADMSG);
	ret = -EBADMSG;
	if (!cJSON_IsObject(st) ||
	    ss_json_member("dsseEnvelope", st, "statement", "_type", cJSON_String, true, &type,
	                   err) ||
	    ss_json_member("dsseEnvelope", st, "statement", "subject", cJSON_Array, true, &subjects,
	                   err)) {
		mv_err_set(err, ret, "dsseEnvelope: payload is not an in-toto statement");
		goto out;
	}
	if (strcmp(type->valuestring, MV_STATEMENT_TYPE) &&
	    strcmp(type->valuestring, INTOTO_STATEMENT_V01)) {
		mv_err_set(err, ret, "dsseEnvelope: statement _type \"%s\" is not in-toto",
		           MV_P(type->valuestring));
		goto out;
	}
	mv_hex_encode(a->sha256, 32, hex);
	ret = -EKEYREJECTED;
	cJSON_ArrayForEach(s, subjects)
	{
		if (subject_names(s, hex)) {
			ret = 0;
			goto out;
		}
	}
	mv_err_set(err, ret, "dsseEnvelope: no statement subject has the artifact's sha256 %s",
	           hex);
out:
	cJSON_Delete(st);
	return ret;
}

/*
 * verify_dsse() - the envelope's signature over its PAE, then its statement
 * @b: in: the bundle
 * @key: in: the signer's key
 * @a: in: the artifact's SHA-256
 * @err: out: the message on failure
 *
 * Return: 0, -EBADMSG, -EKEYREJECTED or -ENOMEM.
 */
static int verify_dsse(const struct ss_bundle *b, EVP_PKEY *key, const struct ss_artifact *a,
                       struct mv_err *err)
{
	const EVP_MD *md;
	uint8_t *pae = NULL;
	size_t pae_len = 0;
	int ret;

	if (strcmp(b->payload_type, MV_DSSE_PAYLOAD_TYPE))
		return mv_err_set(err, -EBADMSG, "dsseEnvelope: payloadType \"%s\" is not \"%s\"",
		                  MV_P(b->payload_type), MV_DSSE_PAYLOAD_TYPE);
	if (key_md(key, &md))
		return mv_err_set(err, -EKEYREJECTED, "dsseEnvelope: unsupported key type");
	ret = mv_dsse_pae(b->payload_type, b->payload, b->payload_len, &pae, &pae_len);
	if (ret)
		return mv_err_set(err, ret, "dsseEnvelope: cannot encode the payload (PAE)");
	ret = verify_data(key, md, pae, pae_len, b->sig, b->sig_len);
	free(pae);
	if (ret == -ENOMEM)
		return mv_err_set(err, ret, "dsseEnvelope: out of memory");
	if (ret)
		return mv_err_set(err, ret, "dsseEnvelope: signature does not verify");
	/* No artifact: the caller reads the statement itself (an OMS model). */
	return a ? check_statement(b, a, err) : 0;
}

/* ---- signer, times, certificate ----------------------------------------- */

/*
 * check_signer() - the bundle's signer against the policy
 * @b: in: the bundle
 * @policy: in: an identity (a certificate is needed) or a managed key (a
 *          certificate, if any, must hold that key)
 * @err: out: the message on failure
 *
 * Also refuses a root (self-signed) certificate among the bundle's
 * intermediates: the anchors come from the trusted root only.
 *
 * Return: 0, -EINVAL (no policy) or -EKEYREJECTED.
 */
static int check_signer(const struct ss_bundle *b, const struct ss_policy *policy,
                        struct mv_err *err)
{
	for (int i = 0; b->chain && i < sk_X509_num(b->chain); i++)
		if (X509_self_signed(sk_X509_value(b->chain, i), 0) == 1)
			return mv_err_set(
			    err, -EKEYREJECTED,
			    "x509CertificateChain: certificate %d is a root certificate", i + 1);
	if (policy->key) {
		if (b->leaf && EVP_PKEY_eq(X509_get0_pubkey(b->leaf), policy->key) != 1)
			return mv_err_set(err, -EKEYREJECTED,
			                  "the bundle's certificate does not hold the given key");
		return 0;
	}
	if (!policy->identity || !policy->issuer)
		return mv_err_set(err, -EINVAL,
		                  "policy: an identity and an issuer, or a key, needed");
	if (!b->leaf)
		return mv_err_set(err, -EKEYREJECTED,
		                  "the bundle has no certificate (signed with a key%s%s): a key is "
		                  "needed to verify it",
		                  b->key_hint ? " " : "", b->key_hint ? MV_P(b->key_hint) : "");
	return 0;
}

/*
 * check_entry_key() - a log entry of a managed-key bundle names the given key
 * @res: in: the entry's finding (res->key_sha256: the key its body names)
 * @key_sha256: in: SHA-256 of the SPKI DER of the policy's key, or NULL
 *              (an identity policy: the body named the bundle's certificate)
 * @i: in: the entry's number, for messages
 * @err: out: the message on failure
 *
 * A log entry for another key must not vouch for this signature.
 *
 * Return: 0 or -EKEYREJECTED.
 */
static int check_entry_key(const struct ss_tlog_result *res, const uint8_t *key_sha256, size_t i,
                           struct mv_err *err)
{
	char got[65], want[65];

	if (!key_sha256 || !memcmp(res->key_sha256, key_sha256, sizeof(res->key_sha256)))
		return 0;
	mv_hex_encode(res->key_sha256, sizeof(res->key_sha256), got);
	mv_hex_encode(key_sha256, 32, want);
	return mv_err_set(err, -EKEYREJECTED,
	                  "tlog entry %zu: body names key sha256:%s, not the given key sha256:%s",
	                  i, got, want);
}

/*
 * collect_times() - verifies every timestamp and log entry; collects the
 * times they prove
 * @b, @root: in: the bundle and trusted root
 * @a: in: the artifact's SHA-256 (for the entries' bodies)
 * @key_sha256: in: SHA-256 of the SPKI DER of the managed key every entry
 *              must name, or NULL for an identity policy
 * @now: in: the current time
 * @out: out: out->times, out->n_times
 * @err: out: the message on failure
 *
 * Return: 0, or the first failure's errno (-EKEYREJECTED when no time
 * verified).
 */
static int collect_times(const struct ss_bundle *b, const struct ss_root *root,
                         const struct ss_artifact *a, const uint8_t *key_sha256, int64_t now,
                         struct ss_result *out, struct mv_err *err)
{
	struct ss_tlog_result res;
	size_t n_tsa = 0, untimed = SIZE_MAX;
	int64_t t;
	int ret;

	for (size_t i = 0; i < b->n_tsa; i++) {
		ret =
		    ss_tsa_verify(b->tsa[i], b->tsa_len[i], b->sig, b->sig_len, root, now, &t, err);
		if (ret)
			return ret;
		out->times[out->n_times++] = t;
		n_tsa++;
	}
	if (!b->n_tlog)
		return mv_err_set(err, -EKEYREJECTED, "the bundle has no transparency log entry");
	for (size_t i = 0; i < b->n_tlog; i++) {
		memset(&res, 0, sizeof(res));
		ret = ss_tlog_verify(b, i, root, a ? a->sha256 : NULL, now, &res, err);
		if (!ret)
			ret = check_entry_key(&res, key_sha256, i, err);
		if (ret)
			return ret;
		if (res.has_time)
			out->times[out->n_times++] = res.time;
		else if (untimed == SIZE_MAX)
			untimed = i;
	}
	if (untimed != SIZE_MAX && !n_tsa)
		return mv_err_set(err, -EKEYREJECTED,
		                  "tlog entry %zu has no integrated time (Rekor v2): an RFC 3161 "
		                  "timestamp is required",
		                  untimed);
	if (!out->n_times)
		return mv_err_set(err, -EKEYREJECTED, "no verified time for the signature");
	return 0;
}

/*
 * check_certificate() - the leaf at every verified time, its SCT, and its
 * identity against the policy
 * @b, @root, @policy: in: the bundle, trusted root and identity policy
 * @now: in: the current time (the SCT may not be later)
 * @out: in/out: the verified times; out->id set
 * @err: out: the message on failure
 *
 * Return: 0, -EKEYREJECTED, -EBADMSG or -ENOMEM.
 */
static int check_certificate(const struct ss_bundle *b, const struct ss_root *root,
                             const struct ss_policy *policy, int64_t now, struct ss_result *out,
                             struct mv_err *err)
{
	X509 *issuer = NULL;
	int ret;

	for (size_t i = 0; i < out->n_times; i++) {
		ret = ss_cert_verify(b->leaf, b->chain, root, out->times[i], &issuer, err);
		if (ret)
			return ret;
	}
	ret = ss_sct_verify(b->leaf, issuer, root, now, err);
	if (!ret)
		ret = ss_identity_get(b->leaf, &out->id, err);
	if (ret)
		return ret;
	if (strcmp(out->id.san, policy->identity))
		return mv_err_set(err, -EKEYREJECTED,
		                  "certificate: identity \"%s\" is not the expected \"%s\"",
		                  MV_P(out->id.san), MV_P(policy->identity));
	if (strcmp(out->id.issuer, policy->issuer))
		return mv_err_set(err, -EKEYREJECTED,
		                  "certificate: OIDC issuer \"%s\" is not the expected \"%s\"",
		                  MV_P(out->id.issuer), MV_P(policy->issuer));
	return 0;
}

/**
 * ss_verify() - verifies a parsed bundle against a trusted root and a policy
 * @b: in: the bundle (ss_bundle_parse())
 * @root: in: the trusted root (ss_root_parse())
 * @policy: in: an identity and issuer, or a managed key
 * @artifact: in: the artifact's bytes (may be NULL) and its SHA-256
 * @now: in: the current time (seconds since the epoch)
 * @out: out: the identity and the verified times; undefined on failure
 * @err: out: one line naming the failed check
 *
 * Thread-safe: reads its inputs only.
 *
 * Return: 0, -EKEYREJECTED (does not verify), -EBADMSG (malformed inside:
 * statement, timestamp, log entry), -EINVAL (cannot be checked as asked) or
 * -ENOMEM.
 */
int ss_verify(const struct ss_bundle *b, const struct ss_root *root, const struct ss_policy *policy,
              const struct ss_artifact *artifact, int64_t now, struct ss_result *out,
              struct mv_err *err)
{
	uint8_t key_sha256[32];
	EVP_PKEY *key;
	int ret;

	memset(out, 0, sizeof(*out));
	if (!artifact && b->content != SS_DSSE)
		return mv_err_set(err, -EINVAL, "messageSignature: no artifact given");
	if (b->n_tlog > SS_MAX_ENTRIES || b->n_tsa > SS_MAX_ENTRIES)
		return mv_err_set(err, -EBADMSG, "bundle: more than %u log entries or timestamps",
		                  SS_MAX_ENTRIES);
	ret = check_signer(b, policy, err);
	if (!ret && policy->key) {
		ret = ss_spki_sha256(policy->key, key_sha256);
		if (ret)
			ret = mv_err_set(err, ret == -ENOMEM ? ret : -EKEYREJECTED,
			                 "policy: the given key cannot be encoded");
	}
	if (!ret)
		ret = collect_times(b, root, artifact, policy->key ? key_sha256 : NULL, now, out,
		                    err);
	if (!ret && !policy->key)
		ret = check_certificate(b, root, policy, now, out, err);
	if (ret)
		return ret;
	key = policy->key ? policy->key : X509_get0_pubkey(b->leaf);
	if (!key)
		return mv_err_set(err, -EKEYREJECTED, "certificate: no usable public key");
	if (b->content == SS_MESSAGE_SIGNATURE)
		return verify_message(b, key, artifact, err);
	return verify_dsse(b, key, artifact, err);
}
