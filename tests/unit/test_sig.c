// SPDX-License-Identifier: Apache-2.0
/*
 * test_sig.c - keys, trust, DSSE bundles and in-toto statements: the OMS
 * golden corpus, tampering, round trips for every key type, and a list of
 * malformed inputs that must each fail with the right code and a message.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tap.h"
#include "verity.h"

#define GOLDEN_HINT "e8450dec4eb99dae995da9af1bc2cc9f76ed669ee2e744f57abba763df3e3f8e"

static char tmpdir[1024];
static const char *shared;

/* ---- helpers ----------------------------------------------------------- */

/* Path under the OMS corpus; a static buffer rotated among 4. */
static const char *oms(const char *rel)
{
	static char bufs[4][PATH_MAX];
	static int i;
	char *b = bufs[i++ % 4];

	snprintf(b, PATH_MAX, "%s/corpus/oms/%s", shared, rel);
	return b;
}

static const char *tmp(const char *name)
{
	static char bufs[4][PATH_MAX];
	static int i;
	char *b = bufs[i++ % 4];

	snprintf(b, PATH_MAX, "%s/%s", tmpdir, name);
	return b;
}

static char *slurp(const char *path, size_t *len)
{
	char *buf = NULL;
	size_t n = 0;

	if (mv_read_file(path, 64u << 20, &buf, &n, NULL))
		return NULL;
	if (len)
		*len = n;
	return buf;
}

static struct mv_trust *trust_with(const char *key, const char *ca)
{
	struct mv_trust *t = mv_trust_new();
	struct mv_err err = {0};

	if (key && mv_trust_add_key_file(t, key, &err))
		printf("# trust key: %s\n", err.msg);
	if (ca && mv_trust_add_ca_file(t, ca, &err))
		printf("# trust ca: %s\n", err.msg);
	return t;
}

struct warns {
	int n;
	char last[1100];
};

static void on_warn(void *ctx, const char *line)
{
	struct warns *w = ctx;

	w->n++;
	snprintf(w->last, sizeof(w->last), "%s", line);
}

/*
 * Returns a copy of JSON @text with the member at @path replaced by the JSON
 * value @repl (or removed when @repl is NULL). @path is dot-separated;
 * numeric components index arrays.
 */
static char *json_mutate(const char *text, const char *path, const char *repl)
{
	cJSON *root = cJSON_Parse(text), *cur = root, *parent = NULL;
	char buf[256], *save = NULL, *tok, *last = NULL, *out;

	snprintf(buf, sizeof(buf), "%s", path);
	for (tok = strtok_r(buf, ".", &save); tok && cur; tok = strtok_r(NULL, ".", &save)) {
		parent = cur;
		last = tok;
		if (cJSON_IsArray(cur))
			cur = cJSON_GetArrayItem(cur, atoi(tok));
		else
			cur = cJSON_GetObjectItemCaseSensitive(cur, tok);
	}
	if (!parent || !last) {
		cJSON_Delete(root);
		return NULL;
	}
	if (cJSON_IsArray(parent)) {
		if (repl)
			cJSON_ReplaceItemInArray(parent, atoi(last), cJSON_Parse(repl));
		else
			cJSON_DeleteItemFromArray(parent, atoi(last));
	} else if (repl) {
		if (cur)
			cJSON_ReplaceItemInObjectCaseSensitive(parent, last, cJSON_Parse(repl));
		else
			cJSON_AddItemToObject(parent, last, cJSON_Parse(repl));
	} else {
		cJSON_DeleteItemFromObjectCaseSensitive(parent, last);
	}
	out = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return out;
}

/* Decoded payload of a bundle. */
static char *bundle_payload(const char *bundle, size_t *len)
{
	cJSON *root = cJSON_Parse(bundle);
	cJSON *p = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "dsseEnvelope"), "payload");
	uint8_t *out = NULL;

	*len = 0;
	if (cJSON_IsString(p))
		mv_base64_decode(p->valuestring, strlen(p->valuestring), &out, len);
	cJSON_Delete(root);
	return (char *)out;
}

/* The bundle with its payload (or signature when @sig) replaced by @data. */
static char *bundle_replace(const char *bundle, bool sig, const uint8_t *data, size_t len)
{
	char *b64 = mv_base64_encode(data, len), *q = malloc(strlen(b64) + 3), *out;

	sprintf(q, "\"%s\"", b64);
	out =
	    json_mutate(bundle, sig ? "dsseEnvelope.signatures.0.sig" : "dsseEnvelope.payload", q);
	free(b64);
	free(q);
	return out;
}

/* Decoded signature of a bundle. */
static uint8_t *bundle_sig(const char *bundle, size_t *len)
{
	cJSON *root = cJSON_Parse(bundle);
	cJSON *s = cJSON_GetArrayItem(
	    cJSON_GetObjectItem(cJSON_GetObjectItem(root, "dsseEnvelope"), "signatures"), 0);
	cJSON *sig = cJSON_GetObjectItem(s, "sig");
	uint8_t *out = NULL;

	*len = 0;
	if (cJSON_IsString(sig))
		mv_base64_decode(sig->valuestring, strlen(sig->valuestring), &out, len);
	cJSON_Delete(root);
	return out;
}

/* mv_sig_parse on a NUL-terminated text; returns the code, keeps the message. */
static int sig_parse_text(const char *text, const struct mv_trust *t, struct mv_err *err)
{
	struct mv_manifest *m = NULL;
	int ret;

	memset(err, 0, sizeof(*err));
	ret = mv_sig_parse(text, strlen(text), t, NULL, NULL, &m, err);
	mv_manifest_free(m);
	return ret;
}

static int stmt_parse_text(const char *text, struct mv_err *err)
{
	struct mv_manifest *m = NULL;
	int ret;

	memset(err, 0, sizeof(*err));
	ret = mv_statement_parse(text, strlen(text), &m, err);
	mv_manifest_free(m);
	return ret;
}

/* Hex SHA-256 of a file's bytes. */
static void file_sha256(const char *path, uint8_t out[32])
{
	size_t n = 0;
	char *b = slurp(path, &n);

	mv_sha256(b ? b : "", n, out);
	free(b);
}

/* ---- golden corpus ------------------------------------------------------ */

struct golden {
	const char *dir;
	bool cert;
	bool legacy;
	const char *single; /* the signed file of a "." signature */
};

static const struct golden goldens[] = {
    {"v1.1.0-elliptic-key", false, false, NULL},
    {"v1.0.1-elliptic-key", false, true, NULL},
    {"v1.0.0-elliptic-key", false, true, "signme-1"},
    {"v0.3.1-elliptic-key", false, true, "signme-1"},
    {"v1.1.0-certificate", true, false, NULL},
    {"v1.0.1-certificate", true, false, NULL},
    {"v1.0.0-certificate", true, false, NULL},
};

/* Expected key id of the certificate leaf: SHA-256 of its SPKI DER. */
static void leaf_key_id(char out[65])
{
	FILE *f = fopen(oms("keys/certificate/signing-key-cert.pem"), "r");
	X509 *c = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	unsigned char *der = NULL;
	int n = c ? i2d_PUBKEY(X509_get0_pubkey(c), &der) : 0;
	uint8_t md[32];

	mv_sha256(der, n > 0 ? (size_t)n : 0, md);
	mv_hex_encode(md, 32, out);
	OPENSSL_free(der);
	X509_free(c);
	if (f)
		fclose(f);
}

static void test_golden_corpus(void)
{
	struct mv_trust *tk = trust_with(oms("keys/certificate/signing-key-pub.pem"), NULL);
	struct mv_trust *tc = trust_with(NULL, oms("keys/certificate/ca-cert.pem"));
	char path[PATH_MAX], leaf_id[65], pub_id[65];
	struct mv_key *pub = NULL;

	leaf_key_id(leaf_id);
	CHECK(mv_key_load_public(oms("keys/certificate/signing-key-pub.pem"), &pub, NULL) == 0);
	mv_key_id(pub, pub_id);
	for (size_t i = 0; i < sizeof(goldens) / sizeof(goldens[0]); i++) {
		const struct golden *g = &goldens[i];
		struct mv_manifest *m = NULL;
		struct mv_err err = {0};
		struct warns w = {0};
		uint8_t want[32], sub[32];
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		int ret;

		snprintf(path, sizeof(path), "%s/model.sig", oms(g->dir));
		ret = mv_sig_open(path, g->cert ? tc : tk, on_warn, &w, &m, &err);
		if (ret)
			printf("# %s: %d %s\n", g->dir, ret, err.msg);
		CHECK_EQ_INT(ret, 0);
		if (ret) {
			EVP_MD_CTX_free(ctx);
			continue;
		}
		CHECK_EQ_INT(w.n, g->legacy ? 1 : 0);
		CHECK(!g->legacy || strstr(w.last, "pre-1.1 key material (publicKey.rawBytes)"));
		CHECK_EQ_INT(m->legacy_key_material, g->legacy);
		CHECK_EQ_INT(m->signer.is_certificate, g->cert);
		CHECK_STR(m->signer.key_id, g->cert ? leaf_id : pub_id);
		CHECK_EQ_INT(m->signer.key_type, MV_KEY_ECDSA_P384);
		if (g->cert)
			CHECK_STR(m->signer.subject, "CN=intermediate-ca");
		else
			CHECK_STR(m->signer.hint, GOLDEN_HINT);
		CHECK(!m->has_extension);
		/* Subject digest over the resources (listed sorted in the corpus). */
		EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
		for (size_t r = 0; r < m->n_res; r++)
			EVP_DigestUpdate(ctx, m->res[r].sha256, 32);
		EVP_DigestFinal_ex(ctx, sub, NULL);
		EVP_MD_CTX_free(ctx);
		CHECK(memcmp(sub, m->subject_sha256, 32) == 0);
		mv_sha256(m->statement, m->statement_len, want);
		CHECK(memcmp(want, m->statement_sha256, 32) == 0);
		/* The signed digests are those of the files. */
		if (g->single) {
			CHECK_EQ_INT(m->n_res, 1);
			CHECK_STR(m->res[0].name, ".");
			snprintf(path, sizeof(path), "%s/%s", oms(g->dir), g->single);
			file_sha256(path, want);
			CHECK(memcmp(want, m->res[0].sha256, 32) == 0);
		} else {
			const struct mv_resource *r = mv_manifest_find(m, "signme-2");

			CHECK_EQ_INT(m->n_res, 2);
			CHECK(r != NULL);
			snprintf(path, sizeof(path), "%s/signme-2", oms(g->dir));
			file_sha256(path, want);
			CHECK(r && memcmp(want, r->sha256, 32) == 0);
			CHECK(mv_manifest_find(m, "ignore-me") == NULL);
		}
		if (strncmp(g->dir, "v1.1.0", 6) == 0)
			CHECK(m->n_ignore == 6);
		mv_manifest_free(m);
	}
	mv_key_free(pub);
	mv_trust_free(tk);
	mv_trust_free(tc);
}

static void test_hint_and_keys(void)
{
	struct mv_key *pub = NULL, *priv = NULL;
	struct mv_err err = {0};
	char h1[65], h2[65], i1[65], i2[65];

	CHECK_EQ_INT(mv_key_load_public(oms("keys/certificate/signing-key-pub.pem"), &pub, &err),
	             0);
	CHECK_EQ_INT(mv_key_load_private(oms("keys/certificate/signing-key.pem"), &priv, &err), 0);
	if (!pub || !priv) {
		printf("# %s\n", err.msg);
		mv_key_free(pub);
		mv_key_free(priv);
		return;
	}
	mv_key_hint(pub, h1);
	mv_key_hint(priv, h2);
	mv_key_id(pub, i1);
	mv_key_id(priv, i2);
	CHECK_STR(h1, GOLDEN_HINT);
	CHECK_STR(h2, GOLDEN_HINT);
	CHECK_STR(i1, i2);
	CHECK(strcmp(h1, i1) != 0);
	CHECK_EQ_INT(mv_key_get_type(pub), MV_KEY_ECDSA_P384);
	/* A public key cannot sign. */
	{
		uint8_t *sig = NULL;
		size_t n = 0;

		CHECK_EQ_INT(mv_key_sign(pub, "x", 1, &sig, &n, NULL), -EINVAL);
		CHECK_EQ_INT(mv_key_sign(priv, "x", 1, &sig, &n, NULL), 0);
		CHECK_EQ_INT(mv_key_verify(pub, "x", 1, sig, n), 0);
		CHECK_EQ_INT(mv_key_verify(pub, "y", 1, sig, n), -EBADMSG);
		CHECK_EQ_INT(mv_key_verify(pub, "x", 1, sig, n - 1), -EBADMSG);
		free(sig);
	}
	mv_key_free(pub);
	mv_key_free(priv);
}

/* Key types: parse/name, unsupported keys, missing files. */
static void test_key_types(void)
{
	enum mv_key_type t;
	struct mv_key *k = NULL;
	struct mv_err err = {0};
	EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	EVP_PKEY *k1 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1");
	FILE *f;

	CHECK_EQ_INT(mv_key_type_parse("ecdsa-p256", &t), 0);
	CHECK_EQ_INT(t, MV_KEY_ECDSA_P256);
	CHECK_EQ_INT(mv_key_type_parse("ed25519", &t), 0);
	CHECK_EQ_INT(t, MV_KEY_ED25519);
	CHECK_EQ_INT(mv_key_type_parse("rsa", &t), -EINVAL);
	CHECK_STR(mv_key_type_name(MV_KEY_ECDSA_P521), "ecdsa-p521");

	f = fopen(tmp("rsa.pub"), "w");
	PEM_write_PUBKEY(f, rsa);
	fclose(f);
	CHECK_EQ_INT(mv_key_load_public(tmp("rsa.pub"), &k, &err), -EINVAL);
	CHECK(strstr(err.msg, "rsa.pub: unsupported key type RSA") != NULL);
	memset(&err, 0, sizeof(err));
	f = fopen(tmp("k1.pub"), "w");
	PEM_write_PUBKEY(f, k1);
	fclose(f);
	CHECK_EQ_INT(mv_key_load_public(tmp("k1.pub"), &k, &err), -EINVAL);
	CHECK(strstr(err.msg, "unsupported EC curve secp256k1") != NULL);
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(mv_key_load_public(tmp("nope.pub"), &k, &err), -ENOENT);
	CHECK(strstr(err.msg, "nope.pub") != NULL);
	memset(&err, 0, sizeof(err));
	/* A private key file is not a public key file, and vice versa. */
	CHECK_EQ_INT(mv_key_load_public(oms("keys/certificate/signing-key.pem"), &k, &err),
	             -EINVAL);
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(mv_key_load_private(oms("keys/certificate/signing-key-pub.pem"), &k, &err),
	             -EINVAL);
	CHECK(k == NULL);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(k1);
}

static void test_pae(void)
{
	static const char want[] = "DSSEv1 29 http://example.com/HelloWorld 11 hello world";
	uint8_t *out = NULL;
	size_t n = 0;

	CHECK_EQ_INT(mv_dsse_pae("http://example.com/HelloWorld", "hello world", 11, &out, &n), 0);
	CHECK_EQ_INT(n, strlen(want));
	CHECK(out && memcmp(out, want, n) == 0);
	free(out);
	CHECK_EQ_INT(mv_dsse_pae("t", NULL, 0, &out, &n), 0);
	CHECK(n == 13 && memcmp(out, "DSSEv1 1 t 0 ", 13) == 0);
	free(out);
}

static void test_names(void)
{
	static const char *good[] = {"a", "a/b", "a.b/c.d", "..a", "a..", ".hidden/x", "a b/ü"};
	static const char *bad[] = {"",   "/abs", "a//b", "./a",  "a/./b", "../x",    "a/..",
	                            "a/", "..",   "/",    "a\nb", "a\x7f", "\x1b[31m"};
	char longname[300];

	for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
		CHECK(mv_resource_name_valid(good[i], false));
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		if (mv_resource_name_valid(bad[i], true))
			printf("# accepted bad name \"%s\"\n", bad[i]);
		CHECK(!mv_resource_name_valid(bad[i], true));
	}
	CHECK(mv_resource_name_valid(".", true));
	CHECK(!mv_resource_name_valid(".", false));
	memset(longname, 'x', 256);
	longname[256] = 0;
	CHECK(!mv_resource_name_valid(longname, false));
	CHECK(!mv_resource_name_valid(NULL, true));
}

/* ---- tampering and trust ----------------------------------------------- */

static void test_tamper(void)
{
	struct mv_trust *tk = trust_with(oms("keys/certificate/signing-key-pub.pem"), NULL);
	struct mv_trust *tc = trust_with(NULL, oms("keys/certificate/ca-cert.pem"));
	static const char *dirs[] = {"v1.1.0-elliptic-key", "v0.3.1-elliptic-key",
	                             "v1.1.0-certificate", "v1.0.0-certificate"};

	for (size_t i = 0; i < sizeof(dirs) / sizeof(*dirs); i++) {
		char path[PATH_MAX], *bundle, *payload, *bad;
		const struct mv_trust *t = strstr(dirs[i], "cert") ? tc : tk;
		struct mv_err err;
		size_t plen = 0, slen = 0;
		uint8_t *sig;

		snprintf(path, sizeof(path), "%s/model.sig", oms(dirs[i]));
		bundle = slurp(path, NULL);
		CHECK_EQ_INT(sig_parse_text(bundle, t, &err), 0);
		/* A byte of the statement (inside a digest: still valid JSON). */
		payload = bundle_payload(bundle, &plen);
		{
			char *d = strstr(payload, "\"digest\"");
			char *hx = d ? strchr(d + 9, '"') + 5 : payload + 10;

			*hx = *hx == 'a' ? 'b' : 'a';
		}
		bad = bundle_replace(bundle, false, (uint8_t *)payload, plen);
		CHECK_EQ_INT(sig_parse_text(bad, t, &err), -EBADMSG);
		CHECK(strstr(err.msg, "model.sig: signature does not verify") != NULL);
		free(bad);
		/* A byte of the signature, at the start, middle and end. */
		sig = bundle_sig(bundle, &slen);
		for (size_t at = 0; at < 3; at++) {
			size_t pos = at == 0 ? 10 : at == 1 ? slen / 2 : slen - 1;

			sig[pos] ^= 0x01;
			bad = bundle_replace(bundle, true, sig, slen);
			CHECK_EQ_INT(sig_parse_text(bad, t, &err), -EBADMSG);
			sig[pos] ^= 0x01;
			free(bad);
		}
		/* The other method's trust does not help. */
		CHECK_EQ_INT(sig_parse_text(bundle, t == tk ? tc : tk, &err), -EKEYREJECTED);
		free(sig);
		free(payload);
		free(bundle);
	}
	mv_trust_free(tk);
	mv_trust_free(tc);
}

/* mv_trust_load() with one key file and no CA; checks it fails naming @path. */
static void check_trust_load_fails(const char *path, int code)
{
	const char *keys[] = {path};
	const struct mv_trust_inputs in = {.key_files = keys, .n_key_files = 1, .who = "t"};
	struct mv_trust *t = (struct mv_trust *)1;
	struct mv_err err = {0};

	CHECK_EQ_INT(mv_trust_load(&in, &t, &err), code);
	CHECK(t == NULL);
	CHECK(strstr(err.msg, path) != NULL);
	printf("# %s\n", err.msg);
}

static void test_trust_load(void)
{
	const char *keys[] = {oms("keys/certificate/signing-key-pub.pem"), tmp("tl.pub")};
	const char *cas[] = {oms("keys/certificate/ca-cert.pem")};
	struct mv_trust_inputs in = {.key_files = keys,
	                             .n_key_files = 2,
	                             .ca_files = cas,
	                             .n_ca_files = 1,
	                             .who = "t",
	                             .required = true};
	struct mv_trust *t = NULL;
	struct mv_err err = {0};
	FILE *f;

	CHECK_EQ_INT(mv_keygen(MV_KEY_ED25519, tmp("tl"), &err), 0);
	CHECK_EQ_INT(mv_trust_load(&in, &t, &err), 0);
	CHECK_EQ_INT(mv_trust_count(t), 3);
	mv_trust_free(t);
	/* An empty list: an empty set, or an error when trust is required. */
	in.n_key_files = in.n_ca_files = 0;
	CHECK_EQ_INT(mv_trust_load(&in, &t, &err), -EINVAL);
	CHECK(t == NULL && strstr(err.msg, "t: no --trust, --trust-ca or keyless identity given") != NULL);
	in.required = false;
	CHECK_EQ_INT(mv_trust_load(&in, &t, &err), 0);
	CHECK_EQ_INT(mv_trust_count(t), 0);
	mv_trust_free(t);
	f = fopen(tmp("notakey.pub"), "w");
	fputs("hello\n", f);
	fclose(f);
	check_trust_load_fails(tmp("missing.pub"), -ENOENT);
	check_trust_load_fails(tmp("notakey.pub"), -EINVAL);
	check_trust_load_fails(oms("keys/certificate/signing-key.pem"), -EINVAL);
	/* A key file given as a CA: the CA list is loaded after the keys. */
	in.n_key_files = in.n_ca_files = 1;
	cas[0] = keys[0];
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(mv_trust_load(&in, &t, &err), -EINVAL);
	CHECK(t == NULL && strstr(err.msg, "signing-key-pub.pem: no PEM certificate") != NULL);
}

/* A self-signed CA unrelated to the corpus. */
static void write_other_ca(const char *path)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *c = X509_new();
	X509_NAME *n = X509_NAME_new();
	FILE *f = fopen(path, "w");

	X509_set_version(c, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(c), 7);
	X509_gmtime_adj(X509_getm_notBefore(c), -3600);
	X509_gmtime_adj(X509_getm_notAfter(c), 3600 * 24);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"root-ca", -1, -1,
	                           0);
	X509_set_subject_name(c, n);
	X509_set_issuer_name(c, n);
	X509_set_pubkey(c, k);
	X509_sign(c, k, EVP_sha256());
	PEM_write_X509(f, c);
	fclose(f);
	X509_NAME_free(n);
	X509_free(c);
	EVP_PKEY_free(k);
}

static void test_untrusted(void)
{
	struct mv_trust *t = mv_trust_new(), *tca, *tint;
	char path[PATH_MAX], *bundle, *bad;
	struct mv_err err = {0};

	CHECK_EQ_INT(mv_keygen(MV_KEY_ECDSA_P384, tmp("other"), &err), 0);
	CHECK_EQ_INT(mv_trust_add_key_file(t, tmp("other.pub"), &err), 0);
	CHECK_EQ_INT(mv_trust_count(t), 1);
	snprintf(path, sizeof(path), "%s/model.sig", oms("v1.1.0-elliptic-key"));
	bundle = slurp(path, NULL);
	CHECK_EQ_INT(sig_parse_text(bundle, t, &err), -EKEYREJECTED);
	CHECK(strstr(err.msg, "untrusted key (hint " GOLDEN_HINT ")") != NULL);
	bad = json_mutate(bundle, "verificationMaterial.publicKey.hint", "\"00000000\"");
	CHECK_EQ_INT(sig_parse_text(bad, t, &err), -EKEYREJECTED);
	CHECK(strstr(err.msg, "hint 00000000") != NULL);
	free(bad);
	CHECK_EQ_INT(sig_parse_text(bundle, NULL, &err), -EKEYREJECTED);
	free(bundle);
	/* Legacy rawBytes: the key inside must itself be trusted. */
	snprintf(path, sizeof(path), "%s/model.sig", oms("v1.0.1-elliptic-key"));
	bundle = slurp(path, NULL);
	CHECK_EQ_INT(sig_parse_text(bundle, t, &err), -EKEYREJECTED);
	CHECK(strstr(err.msg, "publicKey.rawBytes is not trusted") != NULL);
	free(bundle);
	/* Certificates: a CA that did not issue the chain. */
	write_other_ca(tmp("other-ca.pem"));
	tca = trust_with(NULL, tmp("other-ca.pem"));
	snprintf(path, sizeof(path), "%s/model.sig", oms("v1.1.0-certificate"));
	bundle = slurp(path, NULL);
	CHECK_EQ_INT(sig_parse_text(bundle, tca, &err), -EKEYREJECTED);
	CHECK(strstr(err.msg, "certificate chain does not lead to a trusted CA") != NULL);
	CHECK_EQ_INT(sig_parse_text(bundle, t, &err), -EKEYREJECTED);
	CHECK(strstr(err.msg, "no CA is trusted") != NULL);
	/* Without the intermediate in the bundle the chain is incomplete. */
	bad = json_mutate(bundle, "verificationMaterial.x509CertificateChain.certificates.1", NULL);
	tint = trust_with(NULL, oms("keys/certificate/ca-cert.pem"));
	CHECK_EQ_INT(sig_parse_text(bad, tint, &err), -EKEYREJECTED);
	free(bad);
	/* Trusting the intermediate itself (partial chain) is the user's choice. */
	CHECK_EQ_INT(mv_trust_add_ca_file(tca, oms("keys/certificate/int-ca-cert.pem"), &err), 0);
	CHECK_EQ_INT(sig_parse_text(bundle, tca, &err), 0);
	/* CA file errors. */
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(mv_trust_add_ca_file(tca, oms("keys/certificate/signing-key-pub.pem"), &err),
	             -EINVAL);
	CHECK(strstr(err.msg, "no PEM certificate") != NULL);
	free(bundle);
	mv_trust_free(t);
	mv_trust_free(tca);
	mv_trust_free(tint);
}

/* ---- round trips --------------------------------------------------------- */

/* A manifest with the extension: three files with real measurements. */
static struct mv_manifest *sample_manifest(enum mv_hash_alg alg, bool big)
{
	static const char *names[] = {"a.bin", "config.json", "sub/dir/model.safetensors"};
	struct mv_manifest *m = calloc(1, sizeof(*m));

	m->subject_name = strdup("sample-model");
	m->n_res = 3;
	m->res = calloc(3, sizeof(*m->res));
	for (size_t i = 0; i < 3; i++) {
		struct mv_resource *r = &m->res[i];
		struct mv_tree_params *p = &r->merkle.params;

		r->name = strdup(names[i]);
		mv_sha256(names[i], strlen(names[i]), r->sha256);
		r->has_merkle = i != 1; /* config.json without tree data */
		p->alg = alg;
		p->block_size = i == 2 ? 65536 : 4096;
		p->salt_size = i == 2 ? 3 : 0;
		memcpy(p->salt, "\x01\x02\x03", 3);
		/* 2^53-1: cJSON prints numbers that large inexactly; the builder must not. */
		p->data_size = i == 2 ? (big ? 9007199254740991ull : 123456789012ull) : 12345;
		memset(r->merkle.root, 0x11 * (int)(i + 1), MV_MAX_DIGEST_SIZE);
		mv_descriptor_digest(p, r->merkle.root, r->merkle.digest);
	}
	m->n_ignore = 2;
	m->ignore_paths = calloc(2, sizeof(char *));
	m->ignore_paths[0] = strdup("model.sig");
	m->ignore_paths[1] = strdup(".modelfs");
	m->has_extension = true;
	m->prov.name = strdup("org/sample");
	m->prov.license = strdup("apache-2.0");
	m->prov.n_datasets = 2;
	m->prov.datasets = calloc(2, sizeof(char *));
	m->prov.datasets[0] = strdup("ds-one");
	m->prov.datasets[1] = strdup("ds \"two\"");
	m->prov.signed_at = strdup("2026-11-25T19:00:00Z");
	m->prov.tool_version = strdup(MV_VERSION);
	m->prov.n_props = 2;
	m->prov.props = calloc(2, sizeof(*m->prov.props));
	m->prov.props[0].key = strdup("k");
	m->prov.props[0].value = strdup("v");
	m->prov.props[1].key = strdup("a");
	m->prov.props[1].value = strdup("b");
	return m;
}

static bool same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_same_manifest(const struct mv_manifest *a, const struct mv_manifest *b)
{
	CHECK_STR(a->subject_name, b->subject_name);
	CHECK(memcmp(a->subject_sha256, b->subject_sha256, 32) == 0);
	CHECK_EQ_INT(a->n_res, b->n_res);
	for (size_t i = 0; i < a->n_res && i < b->n_res; i++) {
		const struct mv_resource *x = &a->res[i], *y = &b->res[i];

		CHECK_STR(x->name, y->name);
		CHECK(memcmp(x->sha256, y->sha256, 32) == 0);
		CHECK_EQ_INT(x->has_merkle, y->has_merkle);
		if (!x->has_merkle || !y->has_merkle)
			continue;
		CHECK_EQ_INT(x->merkle.params.alg, y->merkle.params.alg);
		CHECK_EQ_INT(x->merkle.params.block_size, y->merkle.params.block_size);
		CHECK_EQ_INT(x->merkle.params.salt_size, y->merkle.params.salt_size);
		CHECK(memcmp(x->merkle.params.salt, y->merkle.params.salt,
		             x->merkle.params.salt_size) == 0);
		CHECK(x->merkle.params.data_size == y->merkle.params.data_size);
		CHECK(memcmp(x->merkle.root, y->merkle.root, 32) == 0);
		CHECK(memcmp(x->merkle.digest, y->merkle.digest, 32) == 0);
	}
	CHECK_EQ_INT(a->n_ignore, b->n_ignore);
	for (size_t i = 0; i < a->n_ignore && i < b->n_ignore; i++)
		CHECK_STR(a->ignore_paths[i], b->ignore_paths[i]);
	CHECK_EQ_INT(a->has_extension, b->has_extension);
	CHECK(same_str(a->prov.name, b->prov.name));
	CHECK(same_str(a->prov.revision, b->prov.revision));
	CHECK(same_str(a->prov.license, b->prov.license));
	CHECK(same_str(a->prov.signed_at, b->prov.signed_at));
	CHECK(same_str(a->prov.tool_version, b->prov.tool_version));
	CHECK_EQ_INT(a->prov.n_datasets, b->prov.n_datasets);
	for (size_t i = 0; i < a->prov.n_datasets && i < b->prov.n_datasets; i++)
		CHECK_STR(a->prov.datasets[i], b->prov.datasets[i]);
	CHECK_EQ_INT(a->prov.n_props, b->prov.n_props);
	for (size_t i = 0; i < a->prov.n_props && i < b->prov.n_props; i++) {
		CHECK_STR(a->prov.props[i].key, b->prov.props[i].key);
		CHECK_STR(a->prov.props[i].value, b->prov.props[i].value);
	}
}

static void test_round_trip(void)
{
	for (int t = MV_KEY_ECDSA_P256; t <= MV_KEY_ED25519; t++) {
		struct mv_manifest *m =
		    sample_manifest(t == MV_KEY_ECDSA_P521 ? MV_HASH_SHA512 : MV_HASH_SHA256, true);
		struct mv_manifest *back = NULL;
		char prefix[64], *stmt = NULL, *stmt2 = NULL, *bundle = NULL, hint[65];
		size_t slen = 0, slen2 = 0, blen = 0;
		struct mv_key *priv = NULL;
		struct mv_trust *trust = mv_trust_new();
		struct mv_err err = {0};
		struct stat st;

		snprintf(prefix, sizeof(prefix), "rt-%s", mv_key_type_name(t));
		CHECK_EQ_INT(mv_keygen(t, tmp(prefix), &err), 0);
		CHECK_EQ_INT(mv_keygen(t, tmp(prefix), &err), -EEXIST);
		CHECK(strstr(err.msg, "already exists") != NULL);
		memset(&err, 0, sizeof(err));
		snprintf(prefix + strlen(prefix), 8, ".key");
		CHECK(stat(tmp(prefix), &st) == 0 && (st.st_mode & 0777) == 0600);
		CHECK_EQ_INT(mv_key_load_private(tmp(prefix), &priv, &err), 0);
		strcpy(prefix + strlen(prefix) - 4, ".pub");
		CHECK_EQ_INT(mv_trust_add_key_file(trust, tmp(prefix), &err), 0);
		if (!priv) {
			printf("# %s\n", err.msg);
			mv_trust_free(trust);
			mv_manifest_free(m);
			continue;
		}
		CHECK_EQ_INT(mv_key_get_type(priv), t);
		CHECK_EQ_INT(mv_statement_build(m, &stmt, &slen, &err), 0);
		CHECK_EQ_INT(mv_statement_build(m, &stmt2, &slen2, &err), 0);
		CHECK(slen == slen2 && memcmp(stmt, stmt2, slen) == 0);
		CHECK(strstr(stmt, "\"size\":9007199254740991") != NULL);
		CHECK_EQ_INT(mv_bundle_build(stmt, slen, priv, &bundle, &blen, &err), 0);
		mv_key_hint(priv, hint);
		CHECK(bundle && strstr(bundle, hint) != NULL);
		CHECK_EQ_INT(mv_sig_parse(bundle, blen, trust, NULL, NULL, &back, &err), 0);
		if (err.code)
			printf("# %s: %s\n", mv_key_type_name(t), err.msg);
		if (back) {
			check_same_manifest(m, back);
			CHECK_EQ_INT(back->signer.key_type, t);
			CHECK(!back->signer.is_certificate);
			CHECK(back->statement_len == slen &&
			      memcmp(back->statement, stmt, slen) == 0);
		}
		mv_manifest_free(back);
		free(stmt);
		free(stmt2);
		free(bundle);
		mv_key_free(priv);
		mv_trust_free(trust);
		mv_manifest_free(m);
	}
}

/* Signing with the corpus key gives the golden hint; the golden payload re-signed verifies. */
static void test_corpus_key_sign(void)
{
	struct mv_trust *tk = trust_with(oms("keys/certificate/signing-key-pub.pem"), NULL);
	struct mv_key *priv = NULL;
	struct mv_manifest *m = NULL;
	struct mv_err err = {0};
	char path[PATH_MAX], *golden, *payload, *bundle = NULL;
	size_t plen = 0, blen = 0;
	cJSON *root;

	CHECK_EQ_INT(mv_key_load_private(oms("keys/certificate/signing-key.pem"), &priv, &err), 0);
	snprintf(path, sizeof(path), "%s/model.sig", oms("v1.1.0-elliptic-key"));
	golden = slurp(path, NULL);
	payload = bundle_payload(golden, &plen);
	if (priv)
		CHECK_EQ_INT(mv_bundle_build(payload, plen, priv, &bundle, &blen, &err), 0);
	root = bundle ? cJSON_Parse(bundle) : NULL;
	CHECK_STR(
	    cJSON_GetStringValue(cJSON_GetObjectItem(
		cJSON_GetObjectItem(cJSON_GetObjectItem(root, "verificationMaterial"), "publicKey"),
		"hint")),
	    GOLDEN_HINT);
	CHECK_EQ_INT(mv_sig_parse(bundle ? bundle : "", blen, tk, NULL, NULL, &m, &err), 0);
	CHECK(m && m->n_res == 2);
	/* A plain OMS statement builds back to a statement with the same digests. */
	if (m) {
		char *s = NULL;
		size_t sl = 0;
		uint8_t sub[32];

		memcpy(sub, m->subject_sha256, 32);
		CHECK_EQ_INT(mv_statement_build(m, &s, &sl, &err), 0);
		CHECK(memcmp(sub, m->subject_sha256, 32) == 0);
		CHECK(s && strstr(s, "modelfs") == NULL);
		free(s);
	}
	cJSON_Delete(root);
	mv_manifest_free(m);
	free(bundle);
	free(payload);
	free(golden);
	mv_key_free(priv);
	mv_trust_free(tk);
}

/* ---- malformed inputs ----------------------------------------------------- */

struct bad_case {
	const char *path; /* member to replace */
	const char *repl; /* JSON value, NULL = remove */
	int code;
	const char *msg; /* substring of the message */
};

static void run_bad_bundle_cases(const char *bundle, const struct mv_trust *t,
                                 const struct bad_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char *bad = json_mutate(bundle, cases[i].path, cases[i].repl);
		struct mv_err err;
		int ret;

		CHECK(bad != NULL);
		if (!bad)
			continue;
		ret = sig_parse_text(bad, t, &err);
		if (ret != cases[i].code || !strstr(err.msg, cases[i].msg))
			printf("# case %s=%s: %d \"%s\"\n", cases[i].path,
			       cases[i].repl ? cases[i].repl : "(removed)", ret, err.msg);
		CHECK_EQ_INT(ret, cases[i].code);
		CHECK(strstr(err.msg, cases[i].msg) != NULL);
		CHECK(strncmp(err.msg, "model.sig: ", 11) == 0);
		free(bad);
	}
}

static void test_bad_bundles(void)
{
	static const struct bad_case key_cases[] = {
	    {"mediaType", "1", -EINVAL, "mediaType: expected a string"},
	    {"mediaType", "\"application/vnd.dev.sigstore.bundle+json;version=0.3\"", -EINVAL,
	     "mediaType: unsupported"},
	    {"mediaType", NULL, -EINVAL, "mediaType: missing"},
	    {"verificationMaterial", "[]", -EINVAL, "verificationMaterial: expected an object"},
	    {"verificationMaterial.publicKey", "\"x\"", -EINVAL,
	     "verificationMaterial.publicKey: expected an object"},
	    {"verificationMaterial.publicKey", NULL, -EINVAL, "need exactly one of"},
	    {"verificationMaterial.publicKey.hint", "5", -EINVAL, "hint: expected a string"},
	    {"verificationMaterial.publicKey.hint", NULL, -EINVAL, "neither hint nor rawBytes"},
	    {"verificationMaterial.tlogEntries", "{}", -EINVAL, "tlogEntries: expected an array"},
	    {"verificationMaterial.x509CertificateChain", "{\"certificates\":[]}", -EINVAL,
	     "need exactly one of"},
	    {"dsseEnvelope", "\"x\"", -EINVAL, "dsseEnvelope: expected an object"},
	    {"dsseEnvelope.payload", "5", -EINVAL, "dsseEnvelope.payload: expected a string"},
	    {"dsseEnvelope.payload", "\"abc\"", -EINVAL, "dsseEnvelope.payload: invalid base64"},
	    {"dsseEnvelope.payload", "\"ab!d\"", -EINVAL, "dsseEnvelope.payload: invalid base64"},
	    {"dsseEnvelope.payload", "\"YQ==YQ==\"", -EINVAL, "invalid base64"},
	    {"dsseEnvelope.payloadType", "true", -EINVAL, "payloadType: expected a string"},
	    {"dsseEnvelope.payloadType", "\"application/json\"", -EINVAL,
	     "payloadType: unsupported"},
	    {"dsseEnvelope.signatures", "{}", -EINVAL, "signatures: expected an array"},
	    {"dsseEnvelope.signatures", "[]", -EINVAL, "expected exactly one signature"},
	    {"dsseEnvelope.signatures.0", "\"x\"", -EINVAL, "signatures[0]: expected an object"},
	    {"dsseEnvelope.signatures.0.sig", "1", -EINVAL, "sig: expected a string"},
	    {"dsseEnvelope.signatures.0.sig", "\"\"", -EINVAL, "sig: empty"},
	    {"dsseEnvelope.signatures.0.sig", "\"####\"", -EINVAL, "sig: invalid base64"},
	    {"dsseEnvelope.signatures.0.keyid", "7", -EINVAL, "keyid: expected a string"},
	};
	static const struct bad_case legacy_cases[] = {
	    {"verificationMaterial.publicKey.rawBytes", "\"!!\"", -EINVAL,
	     "rawBytes: invalid base64"},
	    {"verificationMaterial.publicKey.rawBytes", "\"AAAA\"", -EINVAL,
	     "publicKey.rawBytes: not a public key"},
	    {"verificationMaterial.publicKey.rawBytes", "[]", -EINVAL,
	     "rawBytes: expected a string"},
	};
	static const struct bad_case cert_cases[] = {
	    {"verificationMaterial.x509CertificateChain", "[]", -EINVAL, "expected an object"},
	    {"verificationMaterial.x509CertificateChain.certificates", "{}", -EINVAL,
	     "certificates: expected an array"},
	    {"verificationMaterial.x509CertificateChain.certificates", "[]", -EINVAL,
	     "expected 1..10 certificates"},
	    {"verificationMaterial.x509CertificateChain.certificates.0", "1", -EINVAL,
	     "certificates[0]: expected an object"},
	    {"verificationMaterial.x509CertificateChain.certificates.1.rawBytes", "\"AAAA\"",
	     -EINVAL, "certificates[1].rawBytes: not a DER certificate"},
	    {"verificationMaterial.x509CertificateChain.certificates.0.rawBytes", "\"A\"", -EINVAL,
	     "certificates[0].rawBytes: invalid base64"},
	};
	struct mv_trust *tk = trust_with(oms("keys/certificate/signing-key-pub.pem"), NULL);
	struct mv_trust *tc = trust_with(NULL, oms("keys/certificate/ca-cert.pem"));
	char path[PATH_MAX], *bundle;
	struct mv_err err;
	size_t len = 0;

	snprintf(path, sizeof(path), "%s/model.sig", oms("v1.1.0-elliptic-key"));
	bundle = slurp(path, &len);
	run_bad_bundle_cases(bundle, tk, key_cases, sizeof(key_cases) / sizeof(*key_cases));
	/* Truncated at every length: never accepted, never a crash. */
	for (size_t n = 0; n + 1 < len; n++) {
		struct mv_manifest *m = NULL;

		memset(&err, 0, sizeof(err));
		if (mv_sig_parse(bundle, n, tk, NULL, NULL, &m, &err) != -EINVAL || !err.msg[0]) {
			printf("# truncated at %zu: %s\n", n, err.msg);
			CHECK(0);
			mv_manifest_free(m);
			break;
		}
	}
	/* Trailing garbage, a NUL byte, a duplicated member. */
	{
		char *g = malloc(len + 8), *dup;
		struct mv_manifest *gm = NULL;

		memcpy(g, bundle, len);
		memcpy(g + len, " {}", 4);
		CHECK_EQ_INT(sig_parse_text(g, tk, &err), -EINVAL);
		g[len] = '\0';
		g[5] = '\0';
		memset(&err, 0, sizeof(err));
		CHECK_EQ_INT(mv_sig_parse(g, len, tk, NULL, NULL, &gm, &err), -EINVAL);
		CHECK(gm == NULL);
		CHECK(strstr(err.msg, "NUL byte") != NULL);
		free(g);
		dup = malloc(len + 100);
		snprintf(dup, len + 100, "{\"mediaType\":\"x\",%s", strchr(bundle, '{') + 1);
		CHECK_EQ_INT(sig_parse_text(dup, tk, &err), -EINVAL);
		CHECK(strstr(err.msg, "has member \"mediaType\" twice") != NULL);
		free(dup);
		CHECK_EQ_INT(sig_parse_text("[]", tk, &err), -EINVAL);
		CHECK_EQ_INT(sig_parse_text("", tk, &err), -EINVAL);
	}
	free(bundle);
	snprintf(path, sizeof(path), "%s/model.sig", oms("v1.0.1-elliptic-key"));
	bundle = slurp(path, &len);
	run_bad_bundle_cases(bundle, tk, legacy_cases,
	                     sizeof(legacy_cases) / sizeof(*legacy_cases));
	free(bundle);
	snprintf(path, sizeof(path), "%s/model.sig", oms("v1.1.0-certificate"));
	bundle = slurp(path, &len);
	run_bad_bundle_cases(bundle, tc, cert_cases, sizeof(cert_cases) / sizeof(*cert_cases));
	free(bundle);
	mv_trust_free(tk);
	mv_trust_free(tc);
}

/* A valid statement with the extension, as mv_statement_build writes it. */
static char *sample_statement(void)
{
	struct mv_manifest *m = sample_manifest(MV_HASH_SHA256, false);
	char *s = NULL;
	size_t n = 0;

	mv_statement_build(m, &s, &n, NULL);
	mv_manifest_free(m);
	return s;
}

/* Replaces the first @old in @s by @new (malloc'd result). */
static char *str_replace(const char *s, const char *old, const char *new)
{
	const char *at = strstr(s, old);
	size_t n = strlen(s) - strlen(old) + strlen(new) + 1;
	char *out;

	if (!at)
		return NULL;
	out = malloc(n);
	snprintf(out, n, "%.*s%s%s", (int)(at - s), s, new, at + strlen(old));
	return out;
}

static void test_bad_statements(void)
{
	static const struct bad_case cases[] = {
	    {"_type", "1", -EINVAL, "_type: expected a string"},
	    {"_type", "\"https://in-toto.io/Statement/v0.1\"", -EINVAL, "_type: unsupported"},
	    {"predicateType", "\"https://model_signing/Digests/v0.1\"", -EINVAL,
	     "predicateType: unsupported"},
	    {"predicateType", NULL, -EINVAL, "predicateType: missing"},
	    {"subject", "{}", -EINVAL, "subject: expected an array"},
	    {"subject", "[]", -EINVAL, "expected exactly one subject"},
	    {"subject.0", "\"x\"", -EINVAL, "subject[0]: expected an object"},
	    {"subject.0.name", "1", -EINVAL, "subject[0].name: expected a string"},
	    {"subject.0.digest", "\"x\"", -EINVAL, "subject[0].digest: expected an object"},
	    {"subject.0.digest.sha256", "1", -EINVAL, "sha256: expected a string"},
	    {"subject.0.digest.sha256", "\"abcd\"", -EINVAL, "expected 64 hex digits"},
	    {"subject.0.digest.sha256",
	     "\"0000000000000000000000000000000000000000000000000000000000000000\"", -EBADMSG,
	     "subject digest does not match"},
	    {"predicate", "[]", -EINVAL, "predicate: expected an object"},
	    {"predicate.serialization", "\"x\"", -EINVAL, "serialization: expected an object"},
	    {"predicate.serialization.method", "1", -EINVAL, "method: expected a string"},
	    {"predicate.serialization.method", "\"shards\"", -EINVAL, "method: unsupported"},
	    {"predicate.serialization.hash_type", "\"blake2\"", -EINVAL, "hash_type: unsupported"},
	    {"predicate.serialization.allow_symlinks", "\"no\"", -EINVAL,
	     "allow_symlinks: expected a boolean"},
	    {"predicate.serialization.ignore_paths", "\"x\"", -EINVAL,
	     "ignore_paths: expected an array"},
	    {"predicate.serialization.ignore_paths.0", "1", -EINVAL,
	     "ignore_paths[0]: expected a string"},
	    {"predicate.resources", "{}", -EINVAL, "resources: expected an array"},
	    {"predicate.resources.0", "1", -EINVAL, "resources[0]: expected an object"},
	    {"predicate.resources.0.name", "1", -EINVAL, "resources[0].name: expected a string"},
	    {"predicate.resources.0.name", "\"../x\"", -EINVAL, "invalid resource name \"../x\""},
	    {"predicate.resources.0.name", "\"/abs\"", -EINVAL, "invalid resource name \"/abs\""},
	    {"predicate.resources.0.name", "\"a//b\"", -EINVAL, "invalid resource name \"a//b\""},
	    {"predicate.resources.0.name", "\"./a\"", -EINVAL, "invalid resource name \"./a\""},
	    {"predicate.resources.0.name", "\"a\\nb\"", -EINVAL, "invalid resource name \"a?b\""},
	    {"predicate.modelfs.files.0.name", "\"\\u001b[2J\"", -EINVAL,
	     "\"?[2J\" is not a resource"},
	    {"predicate.resources.0.name", "\"\"", -EINVAL, "invalid resource name \"\""},
	    {"predicate.resources.0.name", "\"a\\u0000b\"", -EINVAL, "\\u0000"},
	    {"predicate.resources.0.name", "\"config.json\"", -EINVAL, "listed twice"},
	    {"predicate.resources.0.name", "\".\"", -EINVAL, "must be the only resource"},
	    {"predicate.resources.0.algorithm", "\"sha512\"", -EINVAL, "algorithm: unsupported"},
	    {"predicate.resources.0.digest", "\"00\"", -EINVAL,
	     "resources[0].digest: expected 64 hex digits"},
	    {"predicate.resources.0.digest", "7", -EINVAL, "digest: expected a string"},
	    {"predicate.modelfs", "\"x\"", -EINVAL, "predicate.modelfs: expected an object"},
	    {"predicate.modelfs.version", "\"1\"", -EINVAL, "version: expected a number"},
	    {"predicate.modelfs.version", "2", -EINVAL, "unsupported version 2"},
	    {"predicate.modelfs.files", "{}", -EINVAL, "files: expected an array"},
	    {"predicate.modelfs.files.0", "[]", -EINVAL, "files[0]: expected an object"},
	    {"predicate.modelfs.files.0.name", "\"zzz\"", -EINVAL, "\"zzz\" is not a resource"},
	    {"predicate.modelfs.files.1.name", "\"a.bin\"", -EINVAL, "\"a.bin\" listed twice"},
	    {"predicate.modelfs.files.0.size", "\"4096\"", -EINVAL, "size: expected a number"},
	    {"predicate.modelfs.files.0.size", "1e300", -EINVAL, "size: not an integer"},
	    {"predicate.modelfs.files.0.size", "-1", -EINVAL, "size: not an integer"},
	    {"predicate.modelfs.files.0.size", "18446744073709551616", -EINVAL,
	     "size: not an integer"},
	    {"predicate.modelfs.files.0.size", "1e16", -EINVAL, "size: not an integer"},
	    {"predicate.modelfs.files.0.size", "1.5", -EINVAL, "size: not an integer"},
	    {"predicate.modelfs.files.0.size", "12346", -EBADMSG, "fsverity_digest does not match"},
	    {"predicate.modelfs.files.0.block_size", "3000", -EINVAL, "not a power of two"},
	    {"predicate.modelfs.files.0.block_size", "131072", -EINVAL, "not a power of two"},
	    {"predicate.modelfs.files.0.hash_algorithm", "\"md5\"", -EINVAL,
	     "hash_algorithm: unsupported"},
	    {"predicate.modelfs.files.0.salt", "\"0\"", -EINVAL, "salt: expected hex"},
	    {"predicate.modelfs.files.0.salt", "1", -EINVAL, "salt: expected a string"},
	    {"predicate.modelfs.files.0.salt",
	     "\"000000000000000000000000000000000000000000000000000000000000000000\"", -EINVAL,
	     "salt: expected hex of at most 32"},
	    {"predicate.modelfs.files.0.merkle_root", "\"abcd\"", -EINVAL,
	     "merkle_root: expected 64 hex digits"},
	    {"predicate.modelfs.files.0.fsverity_digest", "\"zz\"", -EINVAL,
	     "fsverity_digest: expected 64 hex digits"},
	    {"predicate.modelfs.files.0.fsverity_digest",
	     "\"0000000000000000000000000000000000000000000000000000000000000000\"", -EBADMSG,
	     "fsverity_digest does not match"},
	    {"predicate.modelfs.files.0.merkle_root", NULL, -EINVAL, "merkle_root: missing"},
	    {"predicate.modelfs.provenance", "[]", -EINVAL, "provenance: expected an object"},
	    {"predicate.modelfs.provenance.name", "1", -EINVAL, "name: expected a string"},
	    {"predicate.modelfs.provenance.datasets", "\"x\"", -EINVAL,
	     "datasets: expected an array"},
	    {"predicate.modelfs.provenance.datasets.1", "{}", -EINVAL,
	     "datasets[1]: expected a string"},
	    {"predicate.modelfs.provenance.properties", "[]", -EINVAL,
	     "properties: expected an object"},
	    {"predicate.modelfs.provenance.properties.k", "1", -EINVAL,
	     "properties.k: expected a string"},
	};
	char *good = sample_statement(), *bad;
	struct mv_err err;

	CHECK(good != NULL);
	if (!good)
		return;
	CHECK_EQ_INT(stmt_parse_text(good, &err), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		int ret;

		bad = json_mutate(good, cases[i].path, cases[i].repl);
		if (!bad) {
			printf("# cannot mutate %s\n", cases[i].path);
			CHECK(0);
			continue;
		}
		/* cJSON cannot print a \u0000 name; splice it in by hand. */
		if (strstr(cases[i].repl ? cases[i].repl : "", "\\u0000")) {
			char *b2 = str_replace(good, "\"a.bin\"", "\"a\\u0000b\"");

			free(bad);
			bad = b2;
		}
		ret = stmt_parse_text(bad, &err);
		if (ret != cases[i].code || !strstr(err.msg, cases[i].msg))
			printf("# case %s=%s: %d \"%s\"\n", cases[i].path,
			       cases[i].repl ? cases[i].repl : "(removed)", ret, err.msg);
		CHECK_EQ_INT(ret, cases[i].code);
		CHECK(strstr(err.msg, cases[i].msg) != NULL);
		CHECK(strncmp(err.msg, "statement: ", 11) == 0);
		CHECK(strchr(err.msg, '\n') == NULL && strchr(err.msg, 0x1b) == NULL);
		free(bad);
	}
	/* Invalid UTF-8 (a lone continuation byte, an overlong "/", a surrogate). */
	{
		static const char *seqs[] = {"\x80", "\xc0\xaf", "\xed\xa0\x80",
		                             "\xf5\x80\x80\x80"};

		for (size_t i = 0; i < sizeof(seqs) / sizeof(*seqs); i++) {
			char name[32];

			snprintf(name, sizeof(name), "\"a%sb\"", seqs[i]);
			bad = str_replace(good, "\"a.bin\"", name);
			CHECK_EQ_INT(stmt_parse_text(bad, &err), -EINVAL);
			CHECK(strstr(err.msg, "not valid UTF-8") != NULL);
			free(bad);
		}
		bad = str_replace(good, "\"a.bin\"", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
		/* Valid UTF-8 gets further: to the extension naming the old name. */
		CHECK_EQ_INT(stmt_parse_text(bad, &err), -EINVAL);
		CHECK(strstr(err.msg, "\"a.bin\" is not a resource") != NULL);
		free(bad);
	}
	/* 2^53 exactly (spliced as text: cJSON would print it inexactly). */
	bad = str_replace(good, "\"size\":12345", "\"size\":9007199254740992");
	CHECK_EQ_INT(stmt_parse_text(bad, &err), -EINVAL);
	CHECK(strstr(err.msg, "files[0].size: not an integer in 0..2^53-1") != NULL);
	free(bad);
	/* Truncations of the statement. */
	for (size_t n = 0; n + 1 < strlen(good); n += 7) {
		struct mv_manifest *m = NULL;

		memset(&err, 0, sizeof(err));
		if (mv_statement_parse(good, n, &m, &err) != -EINVAL) {
			printf("# statement truncated at %zu accepted\n", n);
			CHECK(0);
			mv_manifest_free(m);
			break;
		}
	}
	/* Unknown members are ignored (forward compatibility, as model_signing does). */
	bad = json_mutate(good, "predicate.future", "{\"x\":1}");
	CHECK_EQ_INT(stmt_parse_text(bad, &err), 0);
	free(bad);
	/* Without the extension: plain OMS, no Merkle data. */
	bad = json_mutate(good, "predicate.modelfs", NULL);
	{
		struct mv_manifest *m = NULL;

		CHECK_EQ_INT(mv_statement_parse(bad, strlen(bad), &m, &err), 0);
		CHECK(m && !m->has_extension && !m->res[0].has_merkle);
		mv_manifest_free(m);
	}
	free(bad);
	free(good);
}

/* A malformed statement that is correctly signed fails after the signature check. */
static void test_signed_bad_statement(void)
{
	struct mv_key *priv = NULL;
	struct mv_trust *t = trust_with(oms("keys/certificate/signing-key-pub.pem"), NULL);
	char *good = sample_statement(), *bad, *bundle = NULL;
	struct mv_err err = {0};
	size_t blen = 0;

	mv_key_load_private(oms("keys/certificate/signing-key.pem"), &priv, &err);
	bad = json_mutate(good, "predicate.resources.1.name", "\"../etc/passwd\"");
	CHECK_EQ_INT(mv_bundle_build(bad, strlen(bad), priv, &bundle, &blen, &err), 0);
	CHECK_EQ_INT(sig_parse_text(bundle, t, &err), -EINVAL);
	CHECK(strstr(err.msg, "model.sig: predicate.resources[1].name: invalid resource name") !=
	      NULL);
	free(bundle);
	free(bad);
	free(good);
	mv_key_free(priv);
	mv_trust_free(t);
}

/* The builder refuses what the parser would refuse. */
static void test_build_refuses(void)
{
	struct mv_manifest *m = sample_manifest(MV_HASH_SHA256, false);
	struct mv_err err = {0};
	char *s = NULL, *tmpname;
	size_t n = 0;

	tmpname = m->res[0].name;
	m->res[0].name = strdup("../a");
	CHECK_EQ_INT(mv_statement_build(m, &s, &n, &err), -EINVAL);
	free(m->res[0].name);
	m->res[0].name = strdup("zzz");
	CHECK_EQ_INT(mv_statement_build(m, &s, &n, &err), -EINVAL);
	free(m->res[0].name);
	m->res[0].name = tmpname;
	m->res[0].merkle.params.block_size = 3000;
	CHECK_EQ_INT(mv_statement_build(m, &s, &n, &err), -EINVAL);
	m->res[0].merkle.params.block_size = 4096;
	m->res[0].merkle.params.data_size = 1ull << 60;
	CHECK_EQ_INT(mv_statement_build(m, &s, &n, &err), -EINVAL);
	mv_manifest_free(m);
	CHECK(s == NULL);
}

/* ---- self-made certificate chains ---------------------------------------- */

/*
 * A certificate for @key signed by @ikey (self-signed if @issuer is NULL),
 * with keyUsage @ku (NULL: none), valid from now+@from_days to now+@to_days.
 */
static X509 *make_cert(EVP_PKEY *key, EVP_PKEY *ikey, X509 *issuer, const char *cn, bool ca,
                       const char *ku, long from_days, long to_days)
{
	X509 *c = X509_new();
	X509_NAME *n = X509_NAME_new();
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	static long serial = 100;

	X509_set_version(c, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(c), serial++);
	X509_gmtime_adj(X509_getm_notBefore(c), from_days * 86400);
	X509_gmtime_adj(X509_getm_notAfter(c), to_days * 86400);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(c, n);
	X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : n);
	X509_set_pubkey(c, key);
	X509V3_set_ctx(&v3, issuer ? issuer : c, c, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints,
	                          ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
	X509_add_ext(c, ext, -1);
	X509_EXTENSION_free(ext);
	if (ku) {
		ext = X509V3_EXT_conf_nid(NULL, &v3, NID_key_usage, ku);
		X509_add_ext(c, ext, -1);
		X509_EXTENSION_free(ext);
	}
	X509_sign(c, ikey, EVP_sha256());
	X509_NAME_free(n);
	return c;
}

static char *cert_b64(X509 *c)
{
	unsigned char *der = NULL;
	int n = i2d_X509(c, &der);
	char *b = mv_base64_encode(der, (size_t)n);

	OPENSSL_free(der);
	return b;
}

/* A bundle of @stmt signed by @leaf_key, carrying [leaf, inter]. */
static char *cert_bundle(const char *stmt, EVP_PKEY *leaf_key, X509 *leaf, X509 *inter)
{
	struct mv_key *k = NULL;
	char *b64l = cert_b64(leaf), *b64i = cert_b64(inter), *p64, *s64, *out;
	uint8_t *pae = NULL, *sig = NULL;
	size_t pae_len = 0, sig_len = 0, n;
	FILE *f = fopen(tmp("leaf.key"), "w");

	PEM_write_PrivateKey(f, leaf_key, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	mv_key_load_private(tmp("leaf.key"), &k, NULL);
	mv_dsse_pae("application/vnd.in-toto+json", stmt, strlen(stmt), &pae, &pae_len);
	mv_key_sign(k, pae, pae_len, &sig, &sig_len, NULL);
	p64 = mv_base64_encode((const uint8_t *)stmt, strlen(stmt));
	s64 = mv_base64_encode(sig, sig_len);
	n = strlen(b64l) + strlen(b64i) + strlen(p64) + strlen(s64) + 1024;
	out = malloc(n);
	snprintf(
	    out, n,
	    "{\"mediaType\":\"application/vnd.dev.sigstore.bundle.v0.3+json\","
	    "\"verificationMaterial\":{\"x509CertificateChain\":{\"certificates\":["
	    "{\"rawBytes\":\"%s\"},{\"rawBytes\":\"%s\"}]},\"tlogEntries\":[]},"
	    "\"dsseEnvelope\":{\"payload\":\"%s\",\"payloadType\":"
	    "\"application/vnd.in-toto+json\",\"signatures\":[{\"sig\":\"%s\",\"keyid\":\"\"}]}}",
	    b64l, b64i, p64, s64);
	free(b64l);
	free(b64i);
	free(p64);
	free(s64);
	free(pae);
	free(sig);
	mv_key_free(k);
	return out;
}

static char *sample_statement(void);

static void test_cert_rules(void)
{
	EVP_PKEY *rk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	EVP_PKEY *ik = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	EVP_PKEY *lk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	EVP_PKEY *ek = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	X509 *root = make_cert(rk, rk, NULL, "test-root", true, "critical,keyCertSign", -1, 30);
	X509 *inter = make_cert(ik, rk, root, "test-inter", true, "critical,keyCertSign", -1, 30);
	struct {
		const char *what;
		EVP_PKEY *key;
		const char *ku;
		long from, to;
		int code;
		const char *msg;
	} cases[] = {
	    {"good", lk, "critical,digitalSignature", -1, 30, 0, ""},
	    {"no usage", lk, NULL, -1, 30, -EKEYREJECTED, "neither digitalSignature nor"},
	    {"cert sign only", lk, "critical,keyCertSign", -1, 30, -EKEYREJECTED,
	     "neither digitalSignature nor"},
	    {"expired", lk, "critical,digitalSignature", -30, -1, -EKEYREJECTED, "expired"},
	    {"not yet valid", lk, "critical,digitalSignature", 1, 30, -EKEYREJECTED,
	     "not yet valid"},
	    {"ed25519 leaf", ek, "critical,digitalSignature", -1, 30, -EKEYREJECTED, "no EC key"},
	};
	struct mv_trust *t = mv_trust_new();
	char *stmt = sample_statement();
	struct mv_err err = {0};
	FILE *f = fopen(tmp("test-root.pem"), "w");

	PEM_write_X509(f, root);
	fclose(f);
	CHECK_EQ_INT(mv_trust_add_ca_file(t, tmp("test-root.pem"), &err), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		X509 *leaf = make_cert(cases[i].key, ik, inter, "signer@example", false,
		                       cases[i].ku, cases[i].from, cases[i].to);
		char *bundle = cert_bundle(stmt, cases[i].key, leaf, inter);
		int ret = sig_parse_text(bundle, t, &err);

		if (ret != cases[i].code || !strstr(err.msg, cases[i].msg))
			printf("# %s: %d %s\n", cases[i].what, ret, err.msg);
		CHECK_EQ_INT(ret, cases[i].code);
		CHECK(strstr(err.msg, cases[i].msg) != NULL);
		free(bundle);
		X509_free(leaf);
	}
	free(stmt);
	mv_trust_free(t);
	X509_free(root);
	X509_free(inter);
	EVP_PKEY_free(rk);
	EVP_PKEY_free(ik);
	EVP_PKEY_free(lk);
	EVP_PKEY_free(ek);
}

/* Resources listed unsorted by a foreign signer: accepted, looked up sorted. */
static void test_unsorted_resources(void)
{
	char *good = sample_statement(), *text;
	cJSON *root = cJSON_Parse(good), *pred = cJSON_GetObjectItem(root, "predicate");
	cJSON *res = cJSON_GetObjectItem(pred, "resources"), *rev = cJSON_CreateArray(), *it;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	struct mv_manifest *m = NULL;
	struct mv_err err = {0};
	uint8_t d[32], md[32];
	char hex[65];

	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	for (int i = cJSON_GetArraySize(res) - 1; i >= 0; i--) {
		it = cJSON_Duplicate(cJSON_GetArrayItem(res, i), 1);
		mv_hex_decode(cJSON_GetObjectItem(it, "digest")->valuestring, d, 32);
		EVP_DigestUpdate(ctx, d, 32);
		cJSON_AddItemToArray(rev, it);
	}
	EVP_DigestFinal_ex(ctx, md, NULL);
	EVP_MD_CTX_free(ctx);
	mv_hex_encode(md, 32, hex);
	cJSON_ReplaceItemInObject(pred, "resources", rev);
	cJSON_ReplaceItemInObject(
	    cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(root, "subject"), 0),
	                        "digest"),
	    "sha256", cJSON_CreateString(hex));
	text = cJSON_PrintUnformatted(root);
	CHECK_EQ_INT(mv_statement_parse(text, strlen(text), &m, &err), 0);
	CHECK(m && m->n_res == 3 && strcmp(m->res[0].name, "a.bin") == 0);
	CHECK(m && mv_manifest_find(m, "sub/dir/model.safetensors") == &m->res[2]);
	CHECK(m && mv_manifest_find(m, "sub/dir") == NULL);
	CHECK(m && memcmp(m->subject_sha256, md, 32) == 0);
	mv_manifest_free(m);
	free(text);
	cJSON_Delete(root);
	free(good);
}

struct thread_arg {
	const struct mv_trust *tk, *tc;
	char *key_bundle, *cert_bundle;
	int failures;
};

static void *verify_thread(void *p)
{
	struct thread_arg *a = p;

	for (int i = 0; i < 25; i++) {
		struct mv_err err;

		if (sig_parse_text(a->key_bundle, a->tk, &err) != 0 ||
		    sig_parse_text(a->cert_bundle, a->tc, &err) != 0)
			__atomic_add_fetch(&a->failures, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

/* A trust set is shared read-only by concurrent verifiers (the mount does that). */
static void test_threads(void)
{
	struct thread_arg a = {0};
	pthread_t th[8];
	char path[PATH_MAX];

	a.tk = trust_with(oms("keys/certificate/signing-key-pub.pem"), NULL);
	a.tc = trust_with(NULL, oms("keys/certificate/ca-cert.pem"));
	snprintf(path, sizeof(path), "%s/model.sig", oms("v1.1.0-elliptic-key"));
	a.key_bundle = slurp(path, NULL);
	snprintf(path, sizeof(path), "%s/model.sig", oms("v1.1.0-certificate"));
	a.cert_bundle = slurp(path, NULL);
	for (int i = 0; i < 8; i++)
		pthread_create(&th[i], NULL, verify_thread, &a);
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	CHECK_EQ_INT(a.failures, 0);
	free(a.key_bundle);
	free(a.cert_bundle);
	mv_trust_free((struct mv_trust *)a.tk);
	mv_trust_free((struct mv_trust *)a.tc);
}

/* mv_sig_inspect: reads claims without trust. */
static void test_inspect(void)
{
	char path[PATH_MAX];
	struct mv_manifest *m = NULL;
	struct mv_err err = {0};
	struct warns w = {0};

	snprintf(path, sizeof(path), "%s/model.sig", oms("v1.1.0-elliptic-key"));
	CHECK_EQ_INT(mv_sig_inspect(path, NULL, NULL, &m, &err), 0);
	CHECK(m && strcmp(m->signer.hint, GOLDEN_HINT) == 0);
	mv_manifest_free(m);
	m = NULL;
	snprintf(path, sizeof(path), "%s/model.sig", oms("v1.0.0-certificate"));
	CHECK_EQ_INT(mv_sig_inspect(path, NULL, NULL, &m, &err), 0);
	CHECK(m && m->signer.is_certificate && same_str(m->signer.subject, "CN=intermediate-ca"));
	mv_manifest_free(m);
	m = NULL;
	snprintf(path, sizeof(path), "%s/model.sig", oms("v0.3.1-elliptic-key"));
	CHECK_EQ_INT(mv_sig_inspect(path, on_warn, &w, &m, &err), 0);
	CHECK(m && m->legacy_key_material && w.n == 1);
	mv_manifest_free(m);
}

int main(void)
{
	const char *base = getenv("TMPDIR");

	shared = getenv("MODELFS_SHARED");
	if (!shared) {
		printf("1..0 # SKIP MODELFS_SHARED not set\n");
		return 0;
	}
	snprintf(tmpdir, sizeof(tmpdir), "%s/modelfs-test-sig-XXXXXX", base ? base : "/tmp");
	if (!mkdtemp(tmpdir)) {
		printf("Bail out! mkdtemp failed\n");
		return 1;
	}
	TAP_RUN(test_pae);
	TAP_RUN(test_names);
	TAP_RUN(test_hint_and_keys);
	TAP_RUN(test_key_types);
	TAP_RUN(test_golden_corpus);
	TAP_RUN(test_tamper);
	TAP_RUN(test_untrusted);
	TAP_RUN(test_trust_load);
	TAP_RUN(test_round_trip);
	TAP_RUN(test_corpus_key_sign);
	TAP_RUN(test_bad_bundles);
	TAP_RUN(test_bad_statements);
	TAP_RUN(test_signed_bad_statement);
	TAP_RUN(test_build_refuses);
	TAP_RUN(test_inspect);
	TAP_RUN(test_cert_rules);
	TAP_RUN(test_unsorted_resources);
	TAP_RUN(test_threads);
	{
		char cmd[PATH_MAX + 16];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			printf("# could not remove %s\n", tmpdir);
	}
	TAP_DONE();
}
