// SPDX-License-Identifier: Apache-2.0
/*
 * ss_rekor_body.c - the canonicalized body of a transparency log entry
 * checked against the bundle (issue #14): hashedrekord 0.0.1 and 0.0.2,
 * dsse 0.0.1 and 0.0.2, intoto 0.0.2; the signature, the verifier
 * (certificate or key) and the artifact or payload digest each body names.
 * Called by ss_rekor.c ("ss_rekor internals" of sigstore_int.h).
 *
 * Notes on the choices made here:
 *   - The body of a Rekor v2 entry is checked field by field against the
 *     bundle and then hashed as logged ("use the persisted
 *     canonicalized_body", rekor-v2-spec 6.1.4), not rebuilt.
 *   - The DSSE envelope hash of dsse 0.0.1 and the envelope hash of intoto
 *     0.0.2 are hashes of the envelope as it was uploaded, which cannot be
 *     rebuilt from a bundle; the payload hash, the signature and the
 *     verifier are compared instead.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "sig_internal.h"
#include "sigstore_int.h"

#define SS_MAX_BODY_SIGS 16u /* signatures in a dsse/intoto body */

/* ------------------------------------------------------------------------
 * The canonicalized body against the bundle
 * ------------------------------------------------------------------------ */

/* One body check; sigstore_int.h only names it (struct ss_body_type). */
struct ss_body_ctx {
	const struct ss_bundle *b;
	const uint8_t *digest; /* what the entry must name: artifact or PAE digest */
	char label[48];        /* "tlog entry 0: body" */
	uint8_t key_sha256[32];
};

/* A verifier named by the body: a certificate or a public key. */
struct body_key {
	X509 *cert;
	EVP_PKEY *pkey;
	uint8_t *der; /* the certificate's DER as logged */
	size_t der_len;
};

/**
 * body_key_free() - release what a body_key holds
 * @k: in/out: the key, zeroed
 */
static void body_key_free(struct body_key *k)
{
	X509_free(k->cert);
	EVP_PKEY_free(k->pkey);
	free(k->der);
	memset(k, 0, sizeof(*k));
}

/**
 * cert_is_leaf() - whether a certificate is the bundle's, byte for byte
 * @der, @len: in: the body's certificate
 * @leaf: in: the bundle's certificate, or NULL
 *
 * Decoding a certificate again costs a decoder context on OpenSSL 3.0;
 * the bundle's is already decoded.
 *
 * Return: true if @der is @leaf's encoding.
 */
static bool cert_is_leaf(const uint8_t *der, size_t len, X509 *leaf)
{
	unsigned char *enc = NULL;
	bool same;
	int n;

	if (!leaf)
		return false;
	n = i2d_X509(leaf, &enc);
	same = n > 0 && (size_t)n == len && !memcmp(enc, der, len);
	OPENSSL_free(enc);
	return same;
}

/**
 * body_key_der() - a certificate or public key from DER
 * @der, @len: in: the encoding; copied when a certificate
 * @cert: in: whether it is a certificate (else a SubjectPublicKeyInfo)
 * @leaf: in: the bundle's certificate, or NULL: taken (a reference) instead
 *        of decoding @der when @der is its encoding
 * @k: out: the key, to release with body_key_free()
 *
 * Return: 0, -EBADMSG (not exactly one DER object of that kind) or -ENOMEM.
 */
static int body_key_der(const uint8_t *der, size_t len, bool cert, X509 *leaf, struct body_key *k)
{
	const unsigned char *p = der;

	if (!len || len > LONG_MAX)
		return -EBADMSG;
	if (cert && cert_is_leaf(der, len, leaf) && X509_up_ref(leaf) == 1) {
		k->cert = leaf;
		p = der + len;
	} else if (cert) {
		k->cert = d2i_X509(NULL, &p, (long)len);
	}
	if (!cert)
		k->pkey = d2i_PUBKEY(NULL, &p, (long)len);
	ERR_clear_error();
	if ((cert ? !k->cert : !k->pkey) || p != der + len) {
		body_key_free(k);
		return -EBADMSG;
	}
	if (cert) {
		k->der = malloc(len);
		if (!k->der) {
			body_key_free(k);
			return -ENOMEM;
		}
		memcpy(k->der, der, len);
		k->der_len = len;
	}
	return 0;
}

/**
 * body_key_pem() - a certificate or public key from PEM (Rekor v1 bodies)
 * @pem, @len: in: the text ("CERTIFICATE" or "PUBLIC KEY"; the first block)
 * @leaf: in: the bundle's certificate, or NULL (as body_key_der())
 * @k: out: the key, to release with body_key_free()
 *
 * Return: 0, -EBADMSG or -ENOMEM.
 */
static int body_key_pem(const uint8_t *pem, size_t len, X509 *leaf, struct body_key *k)
{
	char *name = NULL, *header = NULL;
	unsigned char *der = NULL;
	long der_len = 0;
	int ret = -EBADMSG;
	BIO *bio;

	if (len > INT_MAX)
		return -EBADMSG;
	bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio)
		return -ENOMEM;
	if (PEM_read_bio(bio, &name, &header, &der, &der_len) != 1 || der_len <= 0)
		goto out;
	if (!strcmp(name, "CERTIFICATE"))
		ret = body_key_der(der, (size_t)der_len, true, leaf, k);
	else if (!strcmp(name, "PUBLIC KEY"))
		ret = body_key_der(der, (size_t)der_len, false, NULL, k);
out:
	OPENSSL_free(name);
	OPENSSL_free(header);
	OPENSSL_free(der);
	BIO_free(bio);
	ERR_clear_error();
	return ret;
}

/**
 * key_match() - the body's verifier against the bundle's
 * @c: in/out: the check; its key_sha256 is set
 * @k: in: the body's certificate or key
 * @where: in: the body member, for messages
 * @err: out: error line
 *
 * With a certificate in the bundle the body must hold the same certificate,
 * byte for byte. A managed-key bundle names no key; the digest of the
 * body's key is handed to the caller, who compares it with the policy's.
 *
 * Return: 0, -EKEYREJECTED or -ENOMEM.
 */
static int key_match(struct ss_body_ctx *c, const struct body_key *k, const char *where,
                     struct mv_err *err)
{
	unsigned char *leaf = NULL;
	EVP_PKEY *pkey = k->cert ? X509_get0_pubkey(k->cert) : k->pkey;
	int n, ret;

	if (c->b->leaf) {
		n = i2d_X509(c->b->leaf, &leaf);
		ret = n <= 0 ? -ENOMEM : 0;
		if (!ret &&
		    (!k->cert || (size_t)n != k->der_len || memcmp(leaf, k->der, (size_t)n)))
			ret = -EKEYREJECTED;
		OPENSSL_free(leaf);
		if (ret)
			return mv_err_set(err, ret, "%s: %s: %s", c->label, where,
			                  ret == -ENOMEM ? "out of memory"
			                                 : "not the certificate of the bundle");
	}
	ret = pkey ? ss_spki_sha256(pkey, c->key_sha256) : -EBADMSG;
	if (ret)
		return mv_err_set(err, ret == -ENOMEM ? ret : -EKEYREJECTED, "%s: %s: unusable key",
		                  c->label, where);
	return 0;
}

/**
 * member() - a required member of a body object, of the given type
 * @c: in: the check (its label prefixes messages)
 * @obj: in: the object
 * @path: in: its path, for messages
 * @key: in: the member's name
 * @types: in: accepted cJSON type bits
 * @out: out: the member
 * @err: out: error line
 *
 * Return: 0 or -EBADMSG.
 */
static int member(const struct ss_body_ctx *c, const cJSON *obj, const char *path, const char *key,
                  int types, const cJSON **out, struct mv_err *err)
{
	struct mv_err sub = {0};

	*out = NULL;
	if (!cJSON_IsObject(obj))
		return mv_err_set(err, -EBADMSG, "%s: %s: expected an object", c->label, path);
	if (mv_json_member(c->label, obj, path, key, types, true, out, &sub))
		return mv_err_set(err, -EBADMSG, "%s", sub.msg);
	return 0;
}

/**
 * member_b64() - a required base64 string member, decoded
 * @c, @obj, @path, @key: in: as member()
 * @out, @out_len: out: malloc'd bytes (NUL-terminated)
 * @err: out: error line
 *
 * Return: 0, -EBADMSG or -ENOMEM.
 */
static int member_b64(const struct ss_body_ctx *c, const cJSON *obj, const char *path,
                      const char *key, uint8_t **out, size_t *out_len, struct mv_err *err)
{
	const cJSON *m;
	int ret;

	*out = NULL;
	ret = member(c, obj, path, key, cJSON_String, &m, err);
	if (ret)
		return ret;
	ret = mv_base64_decode(m->valuestring, strlen(m->valuestring), out, out_len);
	if (ret)
		return mv_err_set(err, ret == -ENOMEM ? ret : -EBADMSG, "%s: %s.%s: not base64",
		                  c->label, path, key);
	return 0;
}

/**
 * member_b64_eq() - a base64 member whose bytes must be @want
 * @c, @obj, @path, @key: in: as member()
 * @want, @want_len: in: the bundle's bytes
 * @twice: in: the member is base64 of base64 (intoto 0.0.2)
 * @err: out: error line
 *
 * Return: 0, -EBADMSG, -EKEYREJECTED (other bytes) or -ENOMEM.
 */
static int member_b64_eq(const struct ss_body_ctx *c, const cJSON *obj, const char *path,
                         const char *key, const uint8_t *want, size_t want_len, bool twice,
                         struct mv_err *err)
{
	uint8_t *raw = NULL, *inner = NULL;
	size_t len = 0, inner_len = 0;
	int ret;

	ret = member_b64(c, obj, path, key, &raw, &len, err);
	if (ret)
		return ret;
	/* base64 of base64: an inner text that is not base64 names other bytes */
	if (twice) {
		ret = mv_base64_decode((const char *)raw, len, &inner, &inner_len);
		free(raw);
		raw = inner;
		if (ret == -ENOMEM)
			return mv_err_set(err, ret, "%s: out of memory", c->label);
		len = inner_len;
	}
	if (ret || len != want_len || (len && memcmp(raw, want, len)))
		ret = mv_err_set(err, -EKEYREJECTED, "%s: %s.%s differs from the bundle", c->label,
		                 path, key);
	free(raw);
	return ret;
}

/**
 * digest_eq() - compare a digest named by the body with the expected one
 * @c: in: the check
 * @got, @got_len: in: the body's digest
 * @want: in: the expected SHA-256
 * @where: in: the body member, for messages
 * @err: out: error line
 *
 * Return: 0 or -EKEYREJECTED.
 */
static int digest_eq(const struct ss_body_ctx *c, const uint8_t *got, size_t got_len,
                     const uint8_t want[32], const char *where, struct mv_err *err)
{
	char a[2 * 64 + 1], b[65];

	if (got_len == 32 && !memcmp(got, want, 32))
		return 0;
	mv_hex_encode(got, got_len > 64 ? 64 : got_len, a);
	mv_hex_encode(want, 32, b);
	return mv_err_set(err, -EKEYREJECTED, "%s: %s %s != %s of the bundle", c->label, where, a,
	                  b);
}

/**
 * hash_v1() - a Rekor v1 hash object {algorithm: "sha256", value: hex}
 * @c: in: the check
 * @obj: in: the object holding it
 * @path, @key: in: where it is
 * @want: in: the expected SHA-256
 * @err: out: error line
 *
 * Return: 0, -EBADMSG or -EKEYREJECTED.
 */
static int hash_v1(const struct ss_body_ctx *c, const cJSON *obj, const char *path, const char *key,
                   const uint8_t want[32], struct mv_err *err)
{
	const cJSON *h, *alg, *val;
	char where[64];
	uint8_t got[32];
	int ret, n;

	snprintf(where, sizeof(where), "%s%s%s", path, *path ? "." : "", key);
	ret = member(c, obj, path, key, cJSON_Object, &h, err);
	if (!ret)
		ret = member(c, h, where, "algorithm", cJSON_String, &alg, err);
	if (!ret)
		ret = member(c, h, where, "value", cJSON_String, &val, err);
	if (ret)
		return ret;
	if (strcmp(alg->valuestring, "sha256"))
		return mv_err_set(err, -EKEYREJECTED, "%s: %s: algorithm \"%s\", not sha256",
		                  c->label, where, MV_P(alg->valuestring));
	n = strlen(val->valuestring) == 64 ? mv_hex_decode(val->valuestring, got, sizeof(got)) : -1;
	if (n != 32)
		return mv_err_set(err, -EBADMSG, "%s: %s.value: not a hex SHA-256", c->label,
		                  where);
	return digest_eq(c, got, 32, want, where, err);
}

/**
 * hash_v2() - a Rekor v2 HashOutput {algorithm: "SHA2_256", digest: base64}
 * @c, @obj, @path, @key, @want, @err: as hash_v1()
 *
 * Return: 0, -EBADMSG, -EKEYREJECTED or -ENOMEM.
 */
static int hash_v2(const struct ss_body_ctx *c, const cJSON *obj, const char *path, const char *key,
                   const uint8_t want[32], struct mv_err *err)
{
	const cJSON *h, *alg;
	uint8_t *got = NULL;
	size_t got_len = 0;
	char where[64];
	int ret;

	snprintf(where, sizeof(where), "%s.%s", path, key);
	ret = member(c, obj, path, key, cJSON_Object, &h, err);
	if (!ret)
		ret = member(c, h, where, "algorithm", cJSON_String, &alg, err);
	if (!ret && strcmp(alg->valuestring, "SHA2_256"))
		ret = mv_err_set(err, -EKEYREJECTED, "%s: %s: algorithm \"%s\", not SHA2_256",
		                 c->label, where, MV_P(alg->valuestring));
	if (!ret)
		ret = member_b64(c, h, where, "digest", &got, &got_len, err);
	if (!ret)
		ret = digest_eq(c, got, got_len, want, where, err);
	free(got);
	return ret;
}

/**
 * verifier_v2() - a Rekor v2 Verifier against the bundle's
 * @c: in/out: the check
 * @v: in: {x509Certificate: {rawBytes}} or {publicKey: {rawBytes}}, keyDetails
 * @path: in: where it is
 * @err: out: error line
 *
 * Return: 0, -EBADMSG, -EKEYREJECTED or -ENOMEM.
 */
static int verifier_v2(struct ss_body_ctx *c, const cJSON *v, const char *path, struct mv_err *err)
{
	const cJSON *cert = cJSON_GetObjectItemCaseSensitive(v, "x509Certificate");
	const cJSON *pub = cJSON_GetObjectItemCaseSensitive(v, "publicKey");
	struct body_key k = {0};
	uint8_t *der = NULL;
	size_t der_len = 0;
	char where[96];
	int ret;

	if (!cJSON_IsObject(v) || !cert == !pub)
		return mv_err_set(err, -EBADMSG,
		                  "%s: %s: expected one of x509Certificate and publicKey", c->label,
		                  path);
	snprintf(where, sizeof(where), "%s.%s", path, cert ? "x509Certificate" : "publicKey");
	ret = member_b64(c, cert ? cert : pub, where, "rawBytes", &der, &der_len, err);
	if (ret)
		return ret;
	ret = body_key_der(der, der_len, cert != NULL, c->b->leaf, &k);
	free(der);
	if (ret)
		return mv_err_set(err, ret, "%s: %s.rawBytes: not a DER %s", c->label, where,
		                  cert ? "certificate" : "public key");
	ret = key_match(c, &k, where, err);
	body_key_free(&k);
	return ret;
}

/**
 * verifier_pem() - a Rekor v1 verifier (base64 of PEM) against the bundle's
 * @c: in/out: the check
 * @obj, @path, @key: in: where the member is
 * @err: out: error line
 *
 * Return: 0, -EBADMSG, -EKEYREJECTED or -ENOMEM.
 */
static int verifier_pem(struct ss_body_ctx *c, const cJSON *obj, const char *path, const char *key,
                        struct mv_err *err)
{
	struct body_key k = {0};
	uint8_t *pem = NULL;
	size_t pem_len = 0;
	char where[96];
	int ret;

	snprintf(where, sizeof(where), "%s.%s", path, key);
	ret = member_b64(c, obj, path, key, &pem, &pem_len, err);
	if (ret)
		return ret;
	ret = body_key_pem(pem, pem_len, c->b->leaf, &k);
	free(pem);
	if (ret)
		return mv_err_set(err, ret, "%s: %s: not a PEM certificate or public key", c->label,
		                  where);
	ret = key_match(c, &k, where, err);
	body_key_free(&k);
	return ret;
}

/**
 * check_hashedrekord_v1() - hashedrekord 0.0.1: signature.content,
 * signature.publicKey.content (PEM), data.hash
 * @c: in/out: the check
 * @spec: in: the body's spec
 * @err: out: error line
 *
 * Return: 0, -EBADMSG, -EKEYREJECTED or -ENOMEM.
 */
static int check_hashedrekord_v1(struct ss_body_ctx *c, const cJSON *spec, struct mv_err *err)
{
	const cJSON *sig, *pub, *data;
	int ret;

	ret = member(c, spec, "spec", "signature", cJSON_Object, &sig, err);
	if (!ret)
		ret = member_b64_eq(c, sig, "spec.signature", "content", c->b->sig, c->b->sig_len,
		                    false, err);
	if (!ret)
		ret = member(c, sig, "spec.signature", "publicKey", cJSON_Object, &pub, err);
	if (!ret)
		ret = verifier_pem(c, pub, "spec.signature.publicKey", "content", err);
	if (!ret)
		ret = member(c, spec, "spec", "data", cJSON_Object, &data, err);
	if (!ret)
		ret = hash_v1(c, data, "spec.data", "hash", c->digest, err);
	return ret;
}

/**
 * check_hashedrekord_v2() - hashedrekord 0.0.2: spec.hashedRekordV002 with
 * data {algorithm, digest} and signature {content, verifier}
 * @c, @spec, @err: as check_hashedrekord_v1()
 *
 * Return: 0, -EBADMSG, -EKEYREJECTED or -ENOMEM.
 */
static int check_hashedrekord_v2(struct ss_body_ctx *c, const cJSON *spec, struct mv_err *err)
{
	const char *p = "spec.hashedRekordV002";
	const cJSON *hr, *sig, *v;
	int ret;

	ret = member(c, spec, "spec", "hashedRekordV002", cJSON_Object, &hr, err);
	if (!ret)
		ret = hash_v2(c, hr, p, "data", c->digest, err);
	if (!ret)
		ret = member(c, hr, p, "signature", cJSON_Object, &sig, err);
	if (!ret)
		ret = member_b64_eq(c, sig, "spec.hashedRekordV002.signature", "content", c->b->sig,
		                    c->b->sig_len, false, err);
	if (!ret)
		ret = member(c, sig, "spec.hashedRekordV002.signature", "verifier", cJSON_Object,
		             &v, err);
	if (!ret)
		ret = verifier_v2(c, v, "spec.hashedRekordV002.signature.verifier", err);
	return ret;
}

/**
 * find_signature() - the element of a signatures array holding the bundle's
 * @c: in: the check
 * @arr: in: the array
 * @path: in: its path
 * @key: in: the member holding a signature, base64
 * @twice: in: base64 of base64 (intoto 0.0.2)
 * @out: out: the element
 * @err: out: error line
 *
 * Return: 0, -EBADMSG, -EKEYREJECTED (not there) or -ENOMEM.
 */
static int find_signature(const struct ss_body_ctx *c, const cJSON *arr, const char *path,
                          const char *key, bool twice, const cJSON **out, struct mv_err *err)
{
	int n = cJSON_GetArraySize(arr);
	const cJSON *s;
	int ret;

	if (n < 1 || (unsigned)n > SS_MAX_BODY_SIGS)
		return mv_err_set(err, -EBADMSG, "%s: %s: %d signatures (1 to %u)", c->label, path,
		                  n, SS_MAX_BODY_SIGS);
	cJSON_ArrayForEach(s, arr)
	{
		struct mv_err sub = {0};

		ret = member_b64_eq(c, s, path, key, c->b->sig, c->b->sig_len, twice, &sub);
		if (!ret) {
			*out = s;
			return 0;
		}
		if (ret != -EKEYREJECTED)
			return mv_err_set(err, ret, "%s", sub.msg);
	}
	return mv_err_set(err, -EKEYREJECTED, "%s: %s: no signature of the bundle's envelope",
	                  c->label, path);
}

/**
 * check_dsse_v1() - dsse 0.0.1: payloadHash, signatures[] {signature,
 * verifier (PEM)}
 * @c, @spec, @err: as check_hashedrekord_v1()
 *
 * Return: 0, -EBADMSG, -EKEYREJECTED or -ENOMEM.
 */
static int check_dsse_v1(struct ss_body_ctx *c, const cJSON *spec, struct mv_err *err)
{
	const cJSON *sigs, *s;
	int ret;

	ret = hash_v1(c, spec, "spec", "payloadHash", c->digest, err);
	if (!ret)
		ret = member(c, spec, "spec", "signatures", cJSON_Array, &sigs, err);
	if (!ret)
		ret = find_signature(c, sigs, "spec.signatures[]", "signature", false, &s, err);
	if (!ret)
		ret = verifier_pem(c, s, "spec.signatures[]", "verifier", err);
	return ret;
}

/**
 * check_dsse_v2() - dsse 0.0.2: spec.dsseV002 with payloadHash and
 * signatures[] {content, verifier}
 * @c, @spec, @err: as check_hashedrekord_v1()
 *
 * Return: 0, -EBADMSG, -EKEYREJECTED or -ENOMEM.
 */
static int check_dsse_v2(struct ss_body_ctx *c, const cJSON *spec, struct mv_err *err)
{
	const cJSON *d, *sigs, *s, *v;
	int ret;

	ret = member(c, spec, "spec", "dsseV002", cJSON_Object, &d, err);
	if (!ret)
		ret = hash_v2(c, d, "spec.dsseV002", "payloadHash", c->digest, err);
	if (!ret)
		ret = member(c, d, "spec.dsseV002", "signatures", cJSON_Array, &sigs, err);
	if (!ret)
		ret = find_signature(c, sigs, "spec.dsseV002.signatures[]", "content", false, &s,
		                     err);
	if (!ret)
		ret = member(c, s, "spec.dsseV002.signatures[]", "verifier", cJSON_Object, &v, err);
	if (!ret)
		ret = verifier_v2(c, v, "spec.dsseV002.signatures[].verifier", err);
	return ret;
}

/**
 * check_intoto_v2() - intoto 0.0.2: content.envelope {payloadType, payload,
 * signatures[] {sig, publicKey}} and content.payloadHash
 * @c, @spec, @err: as check_hashedrekord_v1()
 *
 * The envelope's payload and signatures are base64 of base64 here.
 *
 * Return: 0, -EBADMSG, -EKEYREJECTED or -ENOMEM.
 */
static int check_intoto_v2(struct ss_body_ctx *c, const cJSON *spec, struct mv_err *err)
{
	const char *p = "spec.content.envelope";
	const cJSON *content, *env, *type, *sigs, *s;
	int ret;

	ret = member(c, spec, "spec", "content", cJSON_Object, &content, err);
	if (!ret)
		ret = hash_v1(c, content, "spec.content", "payloadHash", c->digest, err);
	if (!ret)
		ret = member(c, content, "spec.content", "envelope", cJSON_Object, &env, err);
	if (!ret)
		ret = member(c, env, p, "payloadType", cJSON_String, &type, err);
	if (!ret && (!c->b->payload_type || strcmp(type->valuestring, c->b->payload_type)))
		ret = mv_err_set(err, -EKEYREJECTED, "%s: %s.payloadType differs from the bundle",
		                 c->label, p);
	if (!ret && cJSON_GetObjectItemCaseSensitive(env, "payload"))
		ret = member_b64_eq(c, env, p, "payload", c->b->payload, c->b->payload_len, true,
		                    err);
	if (!ret)
		ret = member(c, env, p, "signatures", cJSON_Array, &sigs, err);
	if (!ret)
		ret = find_signature(c, sigs, "spec.content.envelope.signatures[]", "sig", true, &s,
		                     err);
	if (!ret)
		ret = verifier_pem(c, s, "spec.content.envelope.signatures[]", "publicKey", err);
	return ret;
}

/* The entry types (struct ss_body_type in sigstore_int.h): one table for
 * what is supported and what each binds. */
static const struct ss_body_type body_types[] = {
    {"hashedrekord", "0.0.1", false, false, false, check_hashedrekord_v1},
    {"hashedrekord", "0.0.2", true, false, true, check_hashedrekord_v2},
    {"dsse", "0.0.1", false, true, false, check_dsse_v1},
    {"dsse", "0.0.2", true, true, false, check_dsse_v2},
    {"intoto", "0.0.2", false, true, false, check_intoto_v2},
};

/**
 * body_digest() - the digest the entry must name
 * @b: in: the bundle
 * @t: in: the entry's type
 * @artifact: in: SHA-256 of the artifact, or NULL (then the bundle's
 *            messageDigest, if SHA2_256)
 * @out: out: the digest: the artifact's; for DSSE the payload's, or for
 *       hashedrekord 0.0.2 that of PAE(payloadType, payload)
 *
 * Return: 0, -EBADMSG (no digest to compare with) or -ENOMEM.
 */
static int body_digest(const struct ss_bundle *b, const struct ss_body_type *t,
                       const uint8_t *artifact, uint8_t out[32])
{
	uint8_t *pae = NULL;
	size_t pae_len = 0;
	int ret;

	if (b->content == SS_MESSAGE_SIGNATURE) {
		if (!artifact && b->has_digest && !strcmp(b->digest_alg, "SHA2_256") &&
		    b->digest_len == 32)
			artifact = b->digest;
		if (!artifact)
			return -EBADMSG;
		memcpy(out, artifact, 32);
		return 0;
	}
	if (!b->payload_type || (!b->payload && b->payload_len))
		return -EBADMSG;
	if (t->dsse)
		return ss_sha256(b->payload, b->payload_len, out);
	ret = mv_dsse_pae(b->payload_type, b->payload, b->payload_len, &pae, &pae_len);
	if (!ret)
		ret = ss_sha256(pae, pae_len, out);
	free(pae);
	return ret == -EOVERFLOW ? -EBADMSG : ret;
}

/**
 * ss_body_verify() - the canonicalized body against the bundle
 * @b: in: the bundle
 * @e: in: the entry
 * @t: in: its type
 * @artifact: in: SHA-256 of the artifact, or NULL
 * @i: in: the entry's number, for messages
 * @key_sha256: out: SHA-256 of the SPKI of the body's key
 * @err: out: error line
 *
 * Return: 0, -EBADMSG, -EKEYREJECTED or -ENOMEM.
 */
int ss_body_verify(const struct ss_bundle *b, const struct ss_tlog_entry *e,
                   const struct ss_body_type *t, const uint8_t *artifact, size_t i,
                   uint8_t key_sha256[32], struct mv_err *err)
{
	struct ss_body_ctx c = {.b = b};
	const cJSON *kind, *version, *spec;
	struct mv_err sub = {0};
	cJSON *root = NULL;
	uint8_t digest[32];
	int ret;

	snprintf(c.label, sizeof(c.label), "tlog entry %zu: body", i);
	if (!t->any && t->dsse != (b->content == SS_DSSE))
		return mv_err_set(
		    err, -EKEYREJECTED, "%s: a %s entry for a bundle with %s", c.label, t->kind,
		    b->content == SS_DSSE ? "a DSSE envelope" : "a message signature");
	ret = body_digest(b, t, artifact, digest);
	if (ret)
		return mv_err_set(err, ret, "%s: %s", c.label,
		                  ret == -ENOMEM ? "out of memory" : "no digest of the artifact");
	c.digest = digest;
	ret = mv_json_parse_strict(c.label, "canonicalizedBody", (const char *)e->body, e->body_len,
	                           &root, &sub);
	if (ret)
		return mv_err_set(err, ret == -ENOMEM ? ret : -EBADMSG, "%s", sub.msg);
	ret = member(&c, root, "", "kind", cJSON_String, &kind, err);
	if (!ret)
		ret = member(&c, root, "", "apiVersion", cJSON_String, &version, err);
	if (!ret &&
	    (strcmp(kind->valuestring, e->kind) || strcmp(version->valuestring, e->version)))
		ret = mv_err_set(err, -EKEYREJECTED, "%s: %s %s, but the entry says %s %s", c.label,
		                 MV_P(kind->valuestring), MV_P(version->valuestring), e->kind,
		                 e->version);
	if (!ret)
		ret = member(&c, root, "", "spec", cJSON_Object, &spec, err);
	if (!ret)
		ret = t->check(&c, spec, err);
	if (!ret)
		memcpy(key_sha256, c.key_sha256, 32);
	cJSON_Delete(root);
	return ret;
}

/* ------------------------------------------------------------------------
 * The entry types
 * ------------------------------------------------------------------------ */

/**
 * ss_body_type_find() - the supported type of an entry
 * @e: in: the entry
 * @i: in: its number, for messages
 * @out: out: its row of body_types
 * @err: out: error line
 *
 * Return: 0 or -EBADMSG.
 */
int ss_body_type_find(const struct ss_tlog_entry *e, size_t i, const struct ss_body_type **out,
                      struct mv_err *err)
{
	for (size_t k = 0; k < sizeof(body_types) / sizeof(body_types[0]); k++) {
		if (!strcmp(e->kind, body_types[k].kind) &&
		    !strcmp(e->version, body_types[k].version)) {
			*out = &body_types[k];
			return 0;
		}
	}
	return mv_err_set(err, -EBADMSG, "tlog entry %zu: unsupported entry type %s %s", i,
	                  MV_P(e->kind), MV_P(e->version));
}
