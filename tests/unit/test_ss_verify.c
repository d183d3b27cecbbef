// SPDX-License-Identifier: Apache-2.0
/*
 * test_ss_verify.c - the whole check of a Sigstore bundle (ss_verify.c):
 * managed-key bundles whose log entries must name the given key (a bundle
 * made here, with a log of its own, where only that check can refuse), the
 * corpus's managed-key and keyless bundles, a line-wrapped timestamp that
 * fails for its time, and times in the future.
 *
 * The corpus is reached through $MODELFS_SHARED (corpus/sigstore).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "tap.h"
#include "sigstore_int.h"

#define NOW      1800000000 /* 2027-01-15: after every entry of the corpus */
#define T_LOGGED 1700000000 /* the integrated time of the entries made here */
#define BEACON_ID                                                                                  \
	"https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"          \
	".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
#define GHA_ISSUER "https://token.actions.githubusercontent.com"

static const char *shared;

/* ---- helpers ------------------------------------------------------------ */

/* "$MODELFS_SHARED/corpus/sigstore/@rel" in a static buffer. */
static const char *corpus(const char *rel)
{
	static char buf[4096];

	snprintf(buf, sizeof(buf), "%s/corpus/sigstore/%s", shared, rel);
	return buf;
}

static void sha(const void *p, size_t n, uint8_t out[32])
{
	EVP_Digest(p, n, out, NULL, EVP_sha256(), NULL);
}

/* SHA-256 of the DER SubjectPublicKeyInfo of @k, in hex. */
static void spki_hex(EVP_PKEY *k, char hex[65])
{
	unsigned char *der = NULL;
	int n = i2d_PUBKEY(k, &der);
	uint8_t md[32];

	sha(der, n > 0 ? (size_t)n : 0, md);
	mv_hex_encode(md, 32, hex);
	OPENSSL_free(der);
}

static EVP_PKEY *p256(void)
{
	return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

/* An ECDSA (SHA-256) signature by @k over @msg, malloc'd; its length in @len. */
static uint8_t *sign(EVP_PKEY *k, const void *msg, size_t n, size_t *len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t *sig = malloc(128);

	*len = 128;
	if (!ctx || !sig || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k) != 1 ||
	    EVP_DigestSign(ctx, sig, len, msg, n) != 1) {
		free(sig);
		sig = NULL;
		*len = 0;
	}
	EVP_MD_CTX_free(ctx);
	return sig;
}

/* Base64 of the PEM ("PUBLIC KEY") of @k, malloc'd. */
static char *pem_b64(EVP_PKEY *k)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data = NULL, *b64 = NULL;
	long n;

	if (bio && PEM_write_bio_PUBKEY(bio, k) == 1) {
		n = BIO_get_mem_data(bio, &data);
		b64 = mv_base64_encode((const uint8_t *)data, (size_t)n);
	}
	BIO_free(bio);
	return b64;
}

/* A PEM public key file of the corpus, or NULL. */
static EVP_PKEY *read_key(const char *rel)
{
	EVP_PKEY *k = NULL;
	char *pem = NULL;
	size_t len = 0;
	BIO *bio;

	if (mv_read_file(corpus(rel), 1 << 20, &pem, &len, NULL))
		return NULL;
	bio = BIO_new_mem_buf(pem, (int)len);
	if (bio)
		k = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	BIO_free(bio);
	free(pem);
	return k;
}

/* ---- a managed-key bundle logged here (Rekor v1 shape) --------------------- */

#define MAX_OWN 2

/* A log of our own, a signer, and a v0.1 bundle of up to MAX_OWN entries. */
struct own {
	EVP_PKEY *log_key, *signer, *other;
	struct ss_log log;
	struct ss_root root;
	struct ss_tlog_entry e[MAX_OWN];
	struct ss_bundle b;
	struct ss_artifact art;
	uint8_t *sig;
};

/* The hashedrekord 0.0.1 body of @o's signature by @k, malloc'd. */
static char *own_body(const struct own *o, EVP_PKEY *k)
{
	char hex[65], *sig64 = mv_base64_encode(o->sig, o->b.sig_len), *pem = pem_b64(k);
	char *body = NULL;

	mv_hex_encode(o->art.sha256, 32, hex);
	if (sig64 && pem &&
	    asprintf(&body,
	             "{\"apiVersion\":\"0.0.1\",\"kind\":\"hashedrekord\",\"spec\":{\"data\":{"
	             "\"hash\":{\"algorithm\":\"sha256\",\"value\":\"%s\"}},\"signature\":{"
	             "\"content\":\"%s\",\"publicKey\":{\"content\":\"%s\"}}}}",
	             hex, sig64, pem) < 0)
		body = NULL;
	free(sig64);
	free(pem);
	return body;
}

/* Logs entry @i of @o with a body naming @k: body, log id, SET. */
static void own_entry(struct own *o, size_t i, EVP_PKEY *k)
{
	struct ss_tlog_entry *e = &o->e[i];
	char id[65], *body64, *msg = NULL;
	int n;

	free(e->body);
	free(e->set);
	memset(e, 0, sizeof(*e));
	e->body = (uint8_t *)own_body(o, k);
	e->body_len = e->body ? strlen((char *)e->body) : 0;
	e->log_index = 7 + (int64_t)i;
	memcpy(e->log_id, o->log.log_id, 32);
	e->log_id_len = 32;
	strcpy(e->kind, "hashedrekord");
	strcpy(e->version, "0.0.1");
	e->integrated_time = T_LOGGED;
	mv_hex_encode(e->log_id, 32, id);
	body64 = mv_base64_encode(e->body, e->body_len);
	n = asprintf(&msg,
	             "{\"body\":\"%s\",\"integratedTime\":%d,\"logID\":\"%s\",\"logIndex\":%d}",
	             body64, T_LOGGED, id, (int)e->log_index);
	CHECK(n > 0);
	e->set = n > 0 ? sign(o->log_key, msg, (size_t)n, &e->set_len) : NULL;
	free(body64);
	free(msg);
}

/* @o: a log, a signer's message signature over "hello", one entry naming it. */
static void own_setup(struct own *o)
{
	static const char hello[] = "hello";
	unsigned char *der = NULL;
	int n;

	memset(o, 0, sizeof(*o));
	o->log_key = p256();
	o->signer = p256();
	o->other = p256();
	o->log.pkey = o->log_key;
	o->log.key_details = "PKIX_ECDSA_P256_SHA_256";
	o->log.base_url = "https://log.test.example";
	n = i2d_PUBKEY(o->log_key, &der);
	sha(der, n > 0 ? (size_t)n : 0, o->log.log_id);
	OPENSSL_free(der);
	o->log.log_id_len = 32;
	o->log.valid.end = SS_TIME_OPEN_END;
	o->root.tlogs = &o->log;
	o->root.n_tlogs = 1;
	o->art.data = (const uint8_t *)hello;
	o->art.len = 5;
	sha(hello, 5, o->art.sha256);
	o->sig = sign(o->signer, hello, 5, &o->b.sig_len);
	o->b.sig = o->sig;
	o->b.minor = 1;
	o->b.content = SS_MESSAGE_SIGNATURE;
	o->b.tlog = o->e;
	o->b.n_tlog = 1;
	own_entry(o, 0, o->signer);
}

static void own_free(struct own *o)
{
	for (size_t i = 0; i < MAX_OWN; i++) {
		free(o->e[i].body);
		free(o->e[i].set);
	}
	free(o->sig);
	EVP_PKEY_free(o->log_key);
	EVP_PKEY_free(o->signer);
	EVP_PKEY_free(o->other);
}

/* ss_verify() of @o with managed key @key; the message into @msg. */
static int own_verify(struct own *o, EVP_PKEY *key, char *msg)
{
	struct ss_policy policy = {.key = key};
	struct mv_err err = {0};
	struct ss_result res;
	int ret;

	ret = ss_verify(&o->b, &o->root, &policy, &o->art, NOW, &res, &err);
	if (msg)
		snprintf(msg, 1024, "%s", err.msg);
	return ret;
}

/* The entry must name the given key; everything else about it is sound. */
static void test_managed_key_entry(void)
{
	char msg[1024], want[1024], a[65], b[65];
	struct own o;

	own_setup(&o);
	CHECK_EQ_INT(own_verify(&o, o.signer, msg), 0);
	if (*msg)
		printf("# %s\n", msg);
	/* an entry for another key, whose signature over the same bytes is
	 * the signer's: the log vouches for nothing about this signature */
	own_entry(&o, 0, o.other);
	CHECK_EQ_INT(own_verify(&o, o.signer, msg), -EKEYREJECTED);
	spki_hex(o.other, a);
	spki_hex(o.signer, b);
	snprintf(want, sizeof(want),
	         "tlog entry 0: body names key sha256:%s, not the given key sha256:%s", a, b);
	CHECK_STR(msg, want);
	/* the entry is valid for the other key: only the signature fails then */
	CHECK_EQ_INT(own_verify(&o, o.other, msg), -EKEYREJECTED);
	CHECK_STR(msg, "messageSignature: signature does not verify");
	own_free(&o);
}

/* Every entry must name the key: a good first one does not cover a second. */
static void test_managed_key_every_entry(void)
{
	char msg[1024];
	struct own o;

	own_setup(&o);
	own_entry(&o, 1, o.signer);
	o.b.n_tlog = 2;
	CHECK_EQ_INT(own_verify(&o, o.signer, msg), 0);
	own_entry(&o, 1, o.other);
	CHECK_EQ_INT(own_verify(&o, o.signer, msg), -EKEYREJECTED);
	CHECK(!strncmp(msg, "tlog entry 1: body names key sha256:", 36));
	CHECK(strchr(msg, '\n') == NULL);
	own_free(&o);
}

/* ---- the corpus ----------------------------------------------------------- */

struct tcase {
	struct ss_root *root;
	struct ss_bundle *b;
	struct ss_artifact art;
	char *data;
};

/* Loads case @name with the trusted root and artifact the suite would use. */
static int load_case(const char *name, struct tcase *t)
{
	struct mv_err err = {0};
	char rel[512], *json = NULL;
	size_t len = 0;
	int ret;

	memset(t, 0, sizeof(*t));
	snprintf(rel, sizeof(rel), "bundle-verify/%s/trusted_root.json", name);
	ret = ss_root_load(corpus(rel), &t->root, &err);
	if (ret == -ENOENT) {
		memset(&err, 0, sizeof(err));
		ret = ss_root_load(corpus("public-good-trusted_root.json"), &t->root, &err);
	}
	snprintf(rel, sizeof(rel), "bundle-verify/%s/bundle.sigstore.json", name);
	if (!ret)
		ret = mv_read_file(corpus(rel), SS_MAX_JSON, &json, &len, &err);
	if (!ret)
		ret = ss_bundle_parse(name, json, len, &t->b, &err);
	snprintf(rel, sizeof(rel), "bundle-verify/%s/artifact", name);
	if (mv_read_file(corpus(rel), SS_MAX_JSON, &t->data, &t->art.len, NULL))
		mv_read_file(corpus("bundle-verify/a.txt"), SS_MAX_JSON, &t->data, &t->art.len,
		             NULL);
	t->art.data = (const uint8_t *)t->data;
	sha(t->data ? t->data : "", t->art.len, t->art.sha256);
	free(json);
	if (ret)
		printf("# %s: %s\n", name, err.msg);
	return ret;
}

static void free_case(struct tcase *t)
{
	ss_bundle_free(t->b);
	ss_root_free(t->root);
	free(t->data);
	memset(t, 0, sizeof(*t));
}

/* ss_verify() of case @name at @now with @policy; the message into @msg. */
static int run_case(const char *name, const struct ss_policy *policy, int64_t now, char *msg)
{
	struct mv_err err = {0};
	struct ss_result res;
	struct tcase t;
	int ret;

	ret = load_case(name, &t);
	if (!ret)
		ret = ss_verify(t.b, t.root, policy, &t.art, now, &res, &err);
	snprintf(msg, 1024, "%s", err.msg);
	free_case(&t);
	return ret;
}

/* The corpus's managed-key bundle: its key verifies, another does not. */
static void test_managed_key_corpus(void)
{
	EVP_PKEY *key = read_key("bundle-verify/managed-key-happy-path/key.pub");
	struct ss_policy policy = {.key = key};
	char msg[1024];

	CHECK(key != NULL);
	CHECK_EQ_INT(run_case("managed-key-happy-path", &policy, NOW, msg), 0);
	if (*msg)
		printf("# %s\n", msg);
	EVP_PKEY_free(key);
	policy.key = p256();
	CHECK_EQ_INT(run_case("managed-key-happy-path", &policy, NOW, msg), -EKEYREJECTED);
	CHECK(!strncmp(msg, "tlog entry 0: body names key sha256:", 36));
	EVP_PKEY_free(policy.key);
}

/* Keyless bundles; a line-wrapped timestamp fails for its time, not its base64. */
static void test_keyless_corpus(void)
{
	static const struct ss_policy policy = {.identity = BEACON_ID, .issuer = GHA_ISSUER};
	char msg[1024];

	CHECK_EQ_INT(run_case("happy-path-v0.3", &policy, NOW, msg), 0);
	CHECK_EQ_INT(run_case("rekor2-happy-path", &policy, NOW, msg), 0);
	CHECK_EQ_INT(run_case("rekor2-timestamp-with-incorrect-time_fail", &policy, NOW, msg),
	             -EKEYREJECTED);
	CHECK_STR(msg, "certificate: not valid at 2025-07-15T10:33:31Z (notAfter "
	               "2025-06-12T12:12:16Z)");
}

/* Times a log, TSA or CT log vouches for may not be after now (+ the skew). */
static void test_future_times(void)
{
	static const struct ss_policy policy = {.identity = BEACON_ID, .issuer = GHA_ISSUER};
	const int64_t gen = 1749729740; /* rekor2-happy-path's genTime */
	char msg[1024];

	CHECK_EQ_INT(run_case("rekor2-happy-path", &policy, gen - SS_CLOCK_SKEW, msg), 0);
	CHECK_EQ_INT(run_case("rekor2-happy-path", &policy, gen - SS_CLOCK_SKEW - 1, msg),
	             -EKEYREJECTED);
	CHECK_STR(msg, "timestamp: time 2025-06-12T12:02:20Z is after the current time "
	               "2025-06-12T12:01:19Z");
}

int main(void)
{
	shared = getenv("MODELFS_SHARED");
	if (!shared) {
		printf("1..0 # SKIP MODELFS_SHARED not set\n");
		return 0;
	}
	TAP_RUN(test_managed_key_entry);
	TAP_RUN(test_managed_key_every_entry);
	TAP_RUN(test_managed_key_corpus);
	TAP_RUN(test_keyless_corpus);
	TAP_RUN(test_future_times);
	TAP_DONE();
}
