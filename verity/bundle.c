// SPDX-License-Identifier: Apache-2.0
/*
 * bundle.c - Sigstore bundle v0.3 (DSSE) as written by OMS model_signing:
 * parsing and signature check against the trust set, and signing.
 * See docs/formats.md.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "sig_internal.h"

/* What the bundle says about its signer, before any trust decision. */
struct bundle {
	cJSON *root;
	uint8_t *payload; /* decoded DSSE payload: the statement */
	size_t payload_len;
	uint8_t *sig;
	size_t sig_len;
	const char *hint;       /* publicKey.hint, or NULL */
	struct mv_key *raw_key; /* from publicKey.rawBytes (pre-1.1), or NULL */
	X509 *leaf;             /* x509CertificateChain leaf, or NULL */
	STACK_OF(X509) * chain; /* intermediates */
	bool keyless;           /* "certificate": a Sigstore keyless bundle (keyless.c) */
};

static void bundle_clear(struct bundle *b)
{
	cJSON_Delete(b->root);
	free(b->payload);
	free(b->sig);
	mv_key_free(b->raw_key);
	X509_free(b->leaf);
	sk_X509_pop_free(b->chain, X509_free);
}

/* Decodes a base64 string member; "<path>: invalid base64" on bad input. */
static int member_base64(const char *label, const cJSON *obj, const char *path, const char *key,
                         uint8_t **out, size_t *out_len, struct mv_err *err)
{
	const cJSON *m;
	int ret = mv_json_member(label, obj, path, key, cJSON_String, true, &m, err);

	if (ret)
		return ret;
	ret = mv_base64_decode(m->valuestring, strlen(m->valuestring), out, out_len);
	if (ret == -ENOMEM)
		return mv_err_set(err, ret, "%s: out of memory", label);
	if (ret)
		return mv_err_set(err, -EINVAL, "%s: %s.%s: invalid base64", label, path, key);
	return 0;
}

/* A string member that must equal @want exactly. */
static int member_equals(const char *label, const cJSON *obj, const char *path, const char *key,
                         const char *want, struct mv_err *err)
{
	const cJSON *m;
	int ret = mv_json_member(label, obj, path, key, cJSON_String, true, &m, err);

	if (ret)
		return ret;
	if (strcmp(m->valuestring, want) != 0)
		return mv_err_set(err, -EINVAL, "%s: %s%s%s: unsupported \"%s\" (need %s)", label,
		                  path, *path ? "." : "", key, MV_P(m->valuestring), want);
	return 0;
}

/* dsseEnvelope: the in-toto payload and exactly one signature. */
static int parse_envelope(const char *label, struct bundle *b, struct mv_err *err)
{
	static const char path[] = "dsseEnvelope";
	const cJSON *env, *sigs, *s0, *keyid;
	int ret;

	ret = mv_json_member(label, b->root, "", path, cJSON_Object, true, &env, err);
	if (!ret)
		ret = member_equals(label, env, path, "payloadType", MV_DSSE_PAYLOAD_TYPE, err);
	if (!ret)
		ret = member_base64(label, env, path, "payload", &b->payload, &b->payload_len, err);
	if (!ret)
		ret = mv_json_member(label, env, path, "signatures", cJSON_Array, true, &sigs, err);
	if (ret)
		return ret;
	/* model_signing writes one; with several, which one counts would be ambiguous. */
	if (cJSON_GetArraySize(sigs) != 1)
		return mv_err_set(
		    err, -EINVAL,
		    "%s: dsseEnvelope.signatures: expected exactly one signature, got "
		    "%d",
		    label, cJSON_GetArraySize(sigs));
	s0 = cJSON_GetArrayItem(sigs, 0);
	if (!cJSON_IsObject(s0))
		return mv_err_set(err, -EINVAL,
		                  "%s: dsseEnvelope.signatures[0]: expected an object", label);
	ret = member_base64(label, s0, "dsseEnvelope.signatures[0]", "sig", &b->sig, &b->sig_len,
	                    err);
	if (!ret)
		ret = mv_json_member(label, s0, "dsseEnvelope.signatures[0]", "keyid",
		                     cJSON_String | cJSON_NULL, false, &keyid, err);
	if (!ret && b->sig_len == 0)
		ret = mv_err_set(err, -EINVAL, "%s: dsseEnvelope.signatures[0].sig: empty", label);
	return ret;
}

/* publicKey: the v1.1 hint, or the pre-1.1 rawBytes PEM. */
static int parse_public_key(const char *label, const cJSON *pk, struct bundle *b,
                            struct mv_err *err)
{
	static const char path[] = "verificationMaterial.publicKey";
	const cJSON *hint, *raw, *details;
	struct mv_err kerr = {0};
	uint8_t *bytes = NULL;
	size_t len = 0;
	int ret;

	ret = mv_json_member(label, pk, path, "hint", cJSON_String | cJSON_NULL, false, &hint, err);
	if (!ret)
		ret = mv_json_member(label, pk, path, "rawBytes", cJSON_String, false, &raw, err);
	if (!ret)
		ret = mv_json_member(label, pk, path, "keyDetails", cJSON_String, false, &details,
		                     err);
	if (ret)
		return ret;
	if (cJSON_IsString(hint)) {
		/* Like model_signing, the hint wins; rawBytes is then ignored. */
		b->hint = hint->valuestring;
		return 0;
	}
	if (!raw)
		return mv_err_set(err, -EINVAL, "%s: %s: neither hint nor rawBytes", label, path);
	ret = member_base64(label, pk, path, "rawBytes", &bytes, &len, err);
	if (ret)
		return ret;
	ret = mv_key_from_public_bytes(bytes, len, &b->raw_key, &kerr);
	free(bytes);
	if (ret)
		return mv_err_set(err, ret, "%s: verificationMaterial.%s", label, kerr.msg);
	return 0;
}

/* One DER certificate from certificates[i].rawBytes. */
static int parse_cert(const char *label, const cJSON *it, size_t i, X509 **out, struct mv_err *err)
{
	char path[80];
	const unsigned char *p;
	uint8_t *der = NULL;
	size_t len = 0;
	int ret;

	snprintf(path, sizeof(path), "verificationMaterial.x509CertificateChain.certificates[%zu]",
	         i);
	if (!cJSON_IsObject(it))
		return mv_err_set(err, -EINVAL, "%s: %s: expected an object", label, path);
	ret = member_base64(label, it, path, "rawBytes", &der, &len, err);
	if (ret)
		return ret;
	p = der;
	*out = len ? d2i_X509(NULL, &p, (long)len) : NULL;
	if (*out && p != der + len) {
		X509_free(*out);
		*out = NULL;
	}
	free(der);
	ERR_clear_error();
	if (!*out)
		return mv_err_set(err, -EINVAL, "%s: %s.rawBytes: not a DER certificate", label,
		                  path);
	return 0;
}

/* x509CertificateChain: leaf first, then intermediates. */
static int parse_chain(const char *label, const cJSON *xc, struct bundle *b, struct mv_err *err)
{
	const cJSON *certs, *it;
	X509 *c = NULL;
	size_t i = 0;
	int ret;

	ret = mv_json_member(label, xc, "verificationMaterial.x509CertificateChain", "certificates",
	                     cJSON_Array, true, &certs, err);
	if (ret)
		return ret;
	if (cJSON_GetArraySize(certs) < 1 || cJSON_GetArraySize(certs) > (int)MV_MAX_CHAIN_CERTS)
		return mv_err_set(err, -EINVAL,
		                  "%s: verificationMaterial.x509CertificateChain.certificates: "
		                  "expected 1..%u certificates",
		                  label, MV_MAX_CHAIN_CERTS);
	b->chain = sk_X509_new_null();
	if (!b->chain)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", label);
	cJSON_ArrayForEach(it, certs)
	{
		ret = parse_cert(label, it, i, &c, err);
		if (ret)
			return ret;
		if (i++ == 0) {
			b->leaf = c;
		} else if (!sk_X509_push(b->chain, c)) {
			X509_free(c);
			return mv_err_set(err, -ENOMEM, "%s: out of memory", label);
		}
	}
	return 0;
}

/*
 * verificationMaterial: exactly one of publicKey, x509CertificateChain and
 * certificate; the last is a keyless bundle, which keyless.c checks whole.
 */
static int parse_material(const char *label, struct bundle *b, struct mv_err *err)
{
	static const char path[] = "verificationMaterial";
	const cJSON *vm, *pk, *xc, *tlog, *cert;
	int ret;

	ret = mv_json_member(label, b->root, "", path, cJSON_Object, true, &vm, err);
	if (!ret)
		ret =
		    mv_json_member(label, vm, path, "tlogEntries", cJSON_Array, false, &tlog, err);
	if (!ret)
		ret = mv_json_member(label, vm, path, "publicKey", cJSON_Object, false, &pk, err);
	if (!ret)
		ret = mv_json_member(label, vm, path, "x509CertificateChain", cJSON_Object, false,
		                     &xc, err);
	if (!ret)
		ret =
		    mv_json_member(label, vm, path, "certificate", cJSON_Object, false, &cert, err);
	if (ret)
		return ret;
	if (!!pk + !!xc + !!cert != 1)
		return mv_err_set(err, -EINVAL,
		                  "%s: verificationMaterial: need exactly one of publicKey, "
		                  "x509CertificateChain and certificate",
		                  label);
	b->keyless = cert != NULL;
	if (b->keyless)
		return 0;
	return pk ? parse_public_key(label, pk, b, err) : parse_chain(label, xc, b, err);
}

/* Structure of the whole bundle; no trust decision yet. */
static int bundle_parse(const char *label, const char *json, size_t len, struct bundle *b,
                        struct mv_err *err)
{
	int ret;

	memset(b, 0, sizeof(*b));
	ret = mv_json_parse_strict(label, "bundle", json, len, &b->root, err);
	if (ret)
		return ret;
	if (!cJSON_IsObject(b->root))
		return mv_err_set(err, -EINVAL, "%s: bundle: expected a JSON object", label);
	ret = member_equals(label, b->root, "", "mediaType", MV_BUNDLE_MEDIA_TYPE, err);
	if (!ret)
		ret = parse_envelope(label, b, err);
	if (!ret)
		ret = parse_material(label, b, err);
	return ret;
}

/* The one-line subject of a certificate (RFC 2253). */
static char *cert_subject(X509 *cert)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data, *s = NULL;
	long n;

	if (!bio)
		return NULL;
	if (X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
		n = BIO_get_mem_data(bio, &data);
		s = n >= 0 ? strndup(data, (size_t)n) : NULL;
	}
	BIO_free(bio);
	return s;
}

/*
 * Picks the key that must have signed and records the signer. With @verify
 * the key must be trusted by @trust (-EKEYREJECTED otherwise); without, the
 * bundle's own claims are reported (inspect) and *key may stay NULL.
 */
static int resolve_signer(const char *label, struct bundle *b, bool verify,
                          const struct mv_trust *trust, struct mv_key **owned,
                          const struct mv_key **key, struct mv_signer *s, struct mv_err *err)
{
	EVP_PKEY *pub;
	int ret;

	*key = NULL;
	if (b->hint) {
		*key = verify ? mv_trust_find_hint(trust, b->hint) : NULL;
		if (verify && !*key)
			return mv_err_set(err, -EKEYREJECTED,
			                  "%s: signed by an untrusted key (hint %.64s)", label,
			                  MV_P(b->hint));
	} else if (b->raw_key) {
		*key = verify ? mv_trust_find_spki(trust, b->raw_key->spki, b->raw_key->spki_len)
		              : b->raw_key;
		if (!*key)
			return mv_err_set(err, -EKEYREJECTED,
			                  "%s: key in publicKey.rawBytes is not trusted (key id "
			                  "%s)",
			                  label, b->raw_key->id);
	} else {
		if (verify) {
			ret = mv_trust_verify_chain(trust, b->leaf, b->chain, label, err);
			if (ret)
				return ret;
		}
		pub = X509_get_pubkey(b->leaf);
		ret = pub ? mv_key_wrap(pub, false, label, owned, err)
		          : mv_err_set(err, -EKEYREJECTED, "%s: certificate has no usable key",
		                       label);
		if (ret) {
			EVP_PKEY_free(pub);
			return ret == -EINVAL ? -EKEYREJECTED : ret;
		}
		*key = *owned;
		s->is_certificate = true;
		s->subject = cert_subject(b->leaf);
		if (!s->subject)
			return mv_err_set(err, -ENOMEM, "%s: out of memory", label);
	}
	if (*key) {
		memcpy(s->key_id, (*key)->id, sizeof(s->key_id));
		memcpy(s->hint, (*key)->hint, sizeof(s->hint));
		s->key_type = (*key)->type;
	} else {
		snprintf(s->hint, sizeof(s->hint), "%.64s", MV_P(b->hint));
	}
	return 0;
}

/* Checks the DSSE signature over PAE(payloadType, payload). */
static int check_signature(const char *label, const struct bundle *b, const struct mv_key *key,
                           struct mv_err *err)
{
	uint8_t *pae = NULL;
	size_t pae_len = 0;
	int ret;

	ret = mv_dsse_pae(MV_DSSE_PAYLOAD_TYPE, b->payload, b->payload_len, &pae, &pae_len);
	if (ret)
		return mv_err_set(err, ret, "%s: cannot encode the DSSE payload", label);
	ret = mv_key_verify(key, pae, pae_len, b->sig, b->sig_len);
	free(pae);
	if (ret == -EBADMSG)
		return mv_err_set(err, ret, "%s: signature does not verify (%s key %s)", label,
		                  mv_key_type_name(key->type), key->id);
	if (ret)
		return mv_err_set(err, ret, "%s: signature check failed", label);
	return 0;
}

/*
 * The whole pipeline. @verify false (inspect) skips trust and signature but
 * still parses everything.
 */
static int sig_parse(const char *label, const char *json, size_t len, const struct mv_trust *trust,
                     bool verify, mv_warn_fn warn, void *warn_ctx, struct mv_manifest **out,
                     struct mv_err *err)
{
	struct mv_signer signer = {0};
	struct mv_manifest *m = NULL;
	const struct mv_key *key = NULL;
	struct mv_key *owned = NULL;
	struct bundle b;
	char line[1200];
	int ret;

	*out = NULL;
	ret = bundle_parse(label, json, len, &b, err);
	if (!ret && b.keyless) /* signature, chain and log checked there */
		ret = mv_keyless_resolve(label, json, len, trust, verify, &signer, err);
	else if (!ret)
		ret = resolve_signer(label, &b, verify, trust, &owned, &key, &signer, err);
	if (!ret && verify && !b.keyless)
		ret = check_signature(label, &b, key, err);
	if (!ret)
		ret = mv_statement_parse_labeled(label, (const char *)b.payload, b.payload_len, &m,
		                                 err);
	if (ret)
		goto out;
	m->signer = signer;
	signer.subject = signer.identity = signer.issuer = NULL;
	m->legacy_key_material = b.raw_key != NULL;
	if (m->legacy_key_material && warn) {
		snprintf(line, sizeof(line),
		         "%s: pre-1.1 key material (publicKey.rawBytes); accepted", label);
		warn(warn_ctx, line);
	}
	*out = m;
out:
	free(signer.subject);
	free(signer.identity);
	free(signer.issuer);
	mv_key_free(owned);
	bundle_clear(&b);
	return ret;
}

const char *mv_signer_describe(const struct mv_signer *s, char *out, size_t len)
{
	if (s->is_keyless)
		snprintf(out, len, "identity %s (issuer %s)", MV_P(s->identity), MV_P(s->issuer));
	else if (s->is_certificate)
		snprintf(out, len, "certificate %s",
		         s->subject ? MV_P(s->subject) : "(no subject)");
	else
		snprintf(out, len, "key id %s", s->key_id);
	return out;
}

/* Reads a signature file; an oversized one is malformed (-EINVAL), not an I/O error. */
static int read_sig(const char *path, char **buf, size_t *len, struct mv_err *err)
{
	int ret = mv_read_file(path, MV_MAX_SIG_SIZE, buf, len, err);

	if (ret == -EFBIG) {
		if (err)
			err->code = -EINVAL;
		return -EINVAL;
	}
	return ret;
}

/**
 * mv_sig_parse() - verify bundle bytes already in memory
 * @json, @len: in: bundle bytes (untrusted, need not be NUL-terminated)
 * @trust: in: trusted keys and CAs
 * @warn, @warn_ctx: in: warning sink (may be NULL)
 * @out: out: the verified manifest
 * @err: out: error line prefixed "model.sig: "
 */
int mv_sig_parse(const char *json, size_t len, const struct mv_trust *trust, mv_warn_fn warn,
                 void *warn_ctx, struct mv_manifest **out, struct mv_err *err)
{
	return sig_parse(MV_SIG_NAME, json, len, trust, true, warn, warn_ctx, out, err);
}

/**
 * mv_sig_open() - read and verify a model.sig file
 * @sig_path: in: the signature file
 * @trust: in: trusted keys and CAs
 * @warn, @warn_ctx: in: warning sink (may be NULL)
 * @out: out: the verified manifest
 * @err: out: error line naming @sig_path
 */
int mv_sig_open(const char *sig_path, const struct mv_trust *trust, mv_warn_fn warn, void *warn_ctx,
                struct mv_manifest **out, struct mv_err *err)
{
	char *buf = NULL;
	size_t len = 0;
	int ret;

	*out = NULL;
	ret = read_sig(sig_path, &buf, &len, err);
	if (ret)
		return ret;
	ret = sig_parse(sig_path, buf, len, trust, true, warn, warn_ctx, out, err);
	free(buf);
	return ret;
}

/**
 * mv_sig_inspect() - read a model.sig WITHOUT checking signature or trust
 * @sig_path: in: the signature file
 * @warn, @warn_ctx: in: warning sink (may be NULL)
 * @out: out: the manifest; signer holds what the bundle claims
 * @err: out: error line naming @sig_path
 */
int mv_sig_inspect(const char *sig_path, mv_warn_fn warn, void *warn_ctx, struct mv_manifest **out,
                   struct mv_err *err)
{
	char *buf = NULL;
	size_t len = 0;
	int ret;

	*out = NULL;
	ret = read_sig(sig_path, &buf, &len, err);
	if (ret)
		return ret;
	ret = sig_parse(sig_path, buf, len, NULL, false, warn, warn_ctx, out, err);
	free(buf);
	return ret;
}

/* Builds the bundle JSON around a payload and its signature. */
static char *bundle_json(const char *payload_b64, const char *sig_b64, const char *hint)
{
	cJSON *root = cJSON_CreateObject(), *vm, *pk, *env, *sigs, *s;
	char *text = NULL;
	bool ok;

	ok = root && cJSON_AddStringToObject(root, "mediaType", MV_BUNDLE_MEDIA_TYPE);
	vm = ok ? cJSON_AddObjectToObject(root, "verificationMaterial") : NULL;
	pk = vm ? cJSON_AddObjectToObject(vm, "publicKey") : NULL;
	ok = pk && cJSON_AddStringToObject(pk, "hint", hint) &&
	     cJSON_AddArrayToObject(vm, "tlogEntries");
	env = ok ? cJSON_AddObjectToObject(root, "dsseEnvelope") : NULL;
	ok = env && cJSON_AddStringToObject(env, "payload", payload_b64) &&
	     cJSON_AddStringToObject(env, "payloadType", MV_DSSE_PAYLOAD_TYPE);
	sigs = ok ? cJSON_AddArrayToObject(env, "signatures") : NULL;
	s = sigs ? cJSON_CreateObject() : NULL;
	ok = s && cJSON_AddItemToArray(sigs, s);
	if (!ok)
		cJSON_Delete(s);
	ok = ok && cJSON_AddStringToObject(s, "sig", sig_b64) &&
	     cJSON_AddStringToObject(s, "keyid", "");
	if (ok)
		text = cJSON_Print(root);
	cJSON_Delete(root);
	return text;
}

/**
 * mv_bundle_build() - sign a statement into a Sigstore bundle v0.3 (DSSE)
 * @statement, @len: in: the payload
 * @key: in: private key; the bundle carries its hint (OMS v1.1 form)
 * @out, @out_len: out: malloc'd bundle JSON, ending in a newline
 * @err: out: error line
 */
int mv_bundle_build(const char *statement, size_t len, const struct mv_key *key, char **out,
                    size_t *out_len, struct mv_err *err)
{
	uint8_t *pae = NULL, *sig = NULL;
	char *p64 = NULL, *s64 = NULL, *text = NULL, *nl;
	size_t pae_len = 0, sig_len = 0, n;
	int ret;

	*out = NULL;
	*out_len = 0;
	if (len > MV_MAX_SIG_SIZE / 2)
		return mv_err_set(err, -EFBIG, "statement too large to sign (%zu bytes)", len);
	ret = mv_dsse_pae(MV_DSSE_PAYLOAD_TYPE, statement, len, &pae, &pae_len);
	if (ret) {
		ret = mv_err_set(err, ret, "cannot encode the DSSE payload");
		goto out;
	}
	ret = mv_key_sign(key, pae, pae_len, &sig, &sig_len, err);
	if (ret)
		goto out;
	p64 = mv_base64_encode((const uint8_t *)statement, len);
	s64 = mv_base64_encode(sig, sig_len);
	text = p64 && s64 ? bundle_json(p64, s64, key->hint) : NULL;
	n = text ? strlen(text) : 0;
	nl = text ? realloc(text, n + 2) : NULL;
	if (!nl) {
		ret = mv_err_set(err, -ENOMEM, "bundle: out of memory");
		goto out;
	}
	text = NULL;
	nl[n] = '\n';
	nl[n + 1] = '\0';
	*out = nl;
	*out_len = n + 1;
	ret = 0;
out:
	free(text);
	free(pae);
	free(sig);
	free(p64);
	free(s64);
	return ret;
}
