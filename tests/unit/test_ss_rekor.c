// SPDX-License-Identifier: Apache-2.0
/*
 * test_ss_rekor.c - transparency log entries (ss_rekor.c): RFC 9162
 * inclusion proofs against the RFC 6962 test vectors, signed checkpoints
 * (the conformance corpus's and notes signed here), and ss_tlog_verify() on
 * the corpus's bundles, on bundles changed one field at a time, and on a
 * log made up here (Rekor v2 shape, Ed25519 checkpoints).
 *
 * The corpus is reached through $MODELFS_SHARED (corpus/sigstore).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "tap.h"
#include "sigstore_int.h"

#define NOW        1800000000 /* 2027-01-15: after every entry of the corpus */
#define LOG_HOST   "log.test.example"
#define MAX_LEAVES 20

static const char *shared;

/* ---- helpers ------------------------------------------------------------ */

/* "$MODELFS_SHARED/corpus/sigstore/@rel" in a static buffer. */
static const char *corpus(const char *rel)
{
	static char buf[4096];

	snprintf(buf, sizeof(buf), "%s/corpus/sigstore/%s", shared, rel);
	return buf;
}

/* A corpus JSON file, parsed; NULL if it cannot be read. */
static cJSON *read_json(const char *rel)
{
	struct mv_err err = {0};
	size_t len = 0;
	char *text;
	cJSON *j;

	if (mv_read_file(corpus(rel), SS_MAX_JSON, &text, &len, &err))
		return NULL;
	j = cJSON_ParseWithLength(text, len);
	free(text);
	return j;
}

/* Base64 into a malloc'd buffer; NULL on bad input. */
static uint8_t *unb64(const char *s, size_t *len)
{
	uint8_t *out = NULL;

	if (mv_base64_decode(s, strlen(s), &out, len))
		return NULL;
	return out;
}

static void sha(const void *p, size_t n, uint8_t out[32])
{
	EVP_Digest(p, n, out, NULL, EVP_sha256(), NULL);
}

/* SHA-256 of the DER SubjectPublicKeyInfo of @k. */
static void spki_sha(EVP_PKEY *k, uint8_t out[32])
{
	unsigned char *der = NULL;
	int n = i2d_PUBKEY(k, &der);

	sha(der, n > 0 ? (size_t)n : 0, out);
	OPENSSL_free(der);
}

/* The RFC 9162 leaf hash of @p. */
static void leaf_hash(const void *p, size_t n, uint8_t out[32])
{
	uint8_t *buf = malloc(n + 1);

	buf[0] = 0;
	memcpy(buf + 1, p, n);
	sha(buf, n + 1, out);
	free(buf);
}

static void node_hash(const uint8_t l[32], const uint8_t r[32], uint8_t out[32])
{
	uint8_t buf[65];

	buf[0] = 1;
	memcpy(buf + 1, l, 32);
	memcpy(buf + 33, r, 32);
	sha(buf, sizeof(buf), out);
}

static size_t split_point(size_t n)
{
	size_t k = 1;

	while (k * 2 < n)
		k *= 2;
	return k;
}

/* RFC 9162 2.1.1: the root of the tree over leaf hashes @l[0..n). */
static void mth(uint8_t (*l)[32], size_t n, uint8_t out[32])
{
	uint8_t a[32], b[32];
	size_t k;

	if (n == 1) {
		memcpy(out, l[0], 32);
		return;
	}
	k = split_point(n);
	mth(l, k, a);
	mth(l + k, n - k, b);
	node_hash(a, b, out);
}

/* RFC 9162 2.1.3.1: the audit path of leaf @m; returns its length. */
static size_t audit_path(uint8_t (*l)[32], size_t n, size_t m, uint8_t (*out)[32])
{
	size_t k, c;

	if (n == 1)
		return 0;
	k = split_point(n);
	if (m < k) {
		c = audit_path(l, k, m, out);
		mth(l + k, n - k, out[c]);
	} else {
		c = audit_path(l + k, n - k, m - k, out);
		mth(l, k, out[c]);
	}
	return c + 1;
}

/* ---- inclusion proofs --------------------------------------------------- */

/* The leaves and roots of the RFC 6962 test vectors (certificate-transparency
 * and transparency-dev/merkle use the same ones). */
static const char *const rfc6962_root[8] = {
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

/* Leaf hashes: the eight RFC 6962 vectors, then leaves of our own. */
static void make_leaves(uint8_t (*l)[32], size_t n)
{
	static const char *const data[8] = {
	    "",
	    "\x00",
	    "\x10",
	    "\x20\x21",
	    "\x30\x31",
	    "\x40\x41\x42\x43",
	    "\x50\x51\x52\x53\x54\x55\x56\x57",
	    "\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
	};
	static const size_t len[8] = {0, 1, 1, 2, 2, 4, 8, 16};
	char extra[32];

	for (size_t k = 0; k < n; k++) {
		if (k < 8) {
			leaf_hash(data[k], len[k], l[k]);
			continue;
		}
		snprintf(extra, sizeof(extra), "leaf %zu", k);
		leaf_hash(extra, strlen(extra), l[k]);
	}
}

static void test_merkle_vectors(void)
{
	uint8_t l[8][32], root[32], want[32];

	make_leaves(l, 8);
	for (size_t n = 1; n <= 8; n++) {
		mth(l, n, root);
		CHECK_EQ_INT(mv_hex_decode(rfc6962_root[n - 1], want, 32), 32);
		CHECK(!memcmp(root, want, 32));
	}
}

/* Every leaf of every tree up to MAX_LEAVES verifies; any change fails. */
static void check_one_proof(uint8_t (*l)[32], size_t n, size_t m)
{
	uint8_t path[SS_MAX_PROOF + 1][32], root[32];
	struct mv_err err = {0};
	size_t c;

	mth(l, n, root);
	c = audit_path(l, n, m, path);
	CHECK_EQ_INT(ss_merkle_inclusion(m, n, l[m], (const uint8_t(*)[32])path, c, root, &err), 0);
	for (size_t k = 0; k < c; k++) {
		path[k][k % 32] ^= 0x01;
		CHECK_EQ_INT(
		    ss_merkle_inclusion(m, n, l[m], (const uint8_t(*)[32])path, c, root, NULL),
		    -EKEYREJECTED);
		path[k][k % 32] ^= 0x01;
	}
	if (n > 1)
		CHECK_EQ_INT(ss_merkle_inclusion((m + 1) % n, n, l[m], (const uint8_t(*)[32])path,
		                                 c, root, NULL),
		             -EKEYREJECTED);
	/* one hash too many, one too few: refused before the roots are compared */
	memcpy(path[c], l[0], 32);
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(ss_merkle_inclusion(m, n, l[m], (const uint8_t(*)[32])path, c + 1, root, &err),
	             -EKEYREJECTED);
	CHECK(strstr(err.msg, "hashes, more than leaf") != NULL);
	memset(&err, 0, sizeof(err));
	if (c) {
		CHECK_EQ_INT(
		    ss_merkle_inclusion(m, n, l[m], (const uint8_t(*)[32])path, c - 1, root, &err),
		    -EKEYREJECTED);
		CHECK(strstr(err.msg, "hashes, fewer than leaf") != NULL);
	}
	root[31] ^= 0x80;
	CHECK_EQ_INT(ss_merkle_inclusion(m, n, l[m], (const uint8_t(*)[32])path, c, root, NULL),
	             -EKEYREJECTED);
}

static void test_merkle_all_trees(void)
{
	uint8_t l[MAX_LEAVES][32];

	make_leaves(l, MAX_LEAVES);
	for (size_t n = 1; n <= MAX_LEAVES; n++)
		for (size_t m = 0; m < n; m++)
			check_one_proof(l, n, m);
}

static void test_merkle_bounds(void)
{
	uint8_t l[4][32], path[SS_MAX_PROOF + 1][32] = {{0}}, root[32];
	struct mv_err err = {0};

	make_leaves(l, 4);
	mth(l, 4, root);
	CHECK_EQ_INT(ss_merkle_inclusion(4, 4, l[0], NULL, 0, root, &err), -EKEYREJECTED);
	CHECK(strstr(err.msg, "inclusion proof: index 4 outside a tree of 4 leaves"));
	CHECK_EQ_INT(ss_merkle_inclusion(-1, 4, l[0], NULL, 0, root, NULL), -EKEYREJECTED);
	CHECK_EQ_INT(ss_merkle_inclusion(0, 0, l[0], NULL, 0, root, NULL), -EKEYREJECTED);
	CHECK_EQ_INT(ss_merkle_inclusion(0, -5, l[0], NULL, 0, root, NULL), -EKEYREJECTED);
	CHECK_EQ_INT(ss_merkle_inclusion(INT64_MAX - 1, INT64_MAX, l[0], (const uint8_t(*)[32])path,
	                                 SS_MAX_PROOF + 1, root, NULL),
	             -EKEYREJECTED);
	/* a tree of 2^63 - 1 leaves needs 63 hashes; all zero do not make @root */
	CHECK_EQ_INT(ss_merkle_inclusion(INT64_MAX - 1, INT64_MAX, l[0], (const uint8_t(*)[32])path,
	                                 63, root, NULL),
	             -EKEYREJECTED);
	/* a single leaf is its own root */
	CHECK_EQ_INT(ss_merkle_inclusion(0, 1, l[0], NULL, 0, l[0], NULL), 0);
}

/* The inclusion proof of a corpus entry, read with cJSON alone. */
static void test_merkle_corpus(void)
{
	cJSON *b = read_json("bundle-verify/happy-path-v0.3/bundle.sigstore.json");
	const cJSON *e, *p, *h;
	uint8_t hashes[SS_MAX_PROOF][32], leaf[32], *body, *root, *x;
	size_t body_len = 0, root_len = 0, n = 0, len = 0;
	int64_t index, size;

	CHECK(b != NULL);
	if (!b)
		return;
	e = cJSON_GetArrayItem(
	    cJSON_GetObjectItem(cJSON_GetObjectItem(b, "verificationMaterial"), "tlogEntries"), 0);
	p = cJSON_GetObjectItem(e, "inclusionProof");
	body = unb64(cJSON_GetObjectItem(e, "canonicalizedBody")->valuestring, &body_len);
	root = unb64(cJSON_GetObjectItem(p, "rootHash")->valuestring, &root_len);
	index = strtoll(cJSON_GetObjectItem(p, "logIndex")->valuestring, NULL, 10);
	size = strtoll(cJSON_GetObjectItem(p, "treeSize")->valuestring, NULL, 10);
	cJSON_ArrayForEach(h, cJSON_GetObjectItem(p, "hashes"))
	{
		x = unb64(h->valuestring, &len);
		if (x && len == 32 && n < SS_MAX_PROOF)
			memcpy(hashes[n++], x, 32);
		free(x);
	}
	CHECK(body && root && root_len == 32 && n == 11);
	if (body && root) {
		leaf_hash(body, body_len, leaf);
		CHECK_EQ_INT(ss_merkle_inclusion(index, size, leaf, (const uint8_t(*)[32])hashes, n,
		                                 root, NULL),
		             0);
		hashes[5][0] ^= 0x04;
		CHECK_EQ_INT(ss_merkle_inclusion(index, size, leaf, (const uint8_t(*)[32])hashes, n,
		                                 root, NULL),
		             -EKEYREJECTED);
	}
	free(body);
	free(root);
	cJSON_Delete(b);
}

/* ---- checkpoints: the corpus -------------------------------------------- */

static void log_release(struct ss_log *log)
{
	EVP_PKEY_free(log->pkey);
	free(log->key_details);
	free(log->base_url);
	memset(log, 0, sizeof(*log));
}

/* The log of trusted root @rel whose key id is @key_id (base64), by hand. */
static int log_from_root(const char *rel, const char *key_id, struct ss_log *log)
{
	cJSON *r = read_json(rel);
	const cJSON *t;
	uint8_t *der = NULL, *id = NULL;
	size_t der_len = 0, id_len = 0;
	const unsigned char *p;
	int ret = -1;

	memset(log, 0, sizeof(*log));
	cJSON_ArrayForEach(t, cJSON_GetObjectItem(r, "tlogs"))
	{
		const cJSON *pk = cJSON_GetObjectItem(t, "publicKey");

		if (strcmp(
			cJSON_GetObjectItem(cJSON_GetObjectItem(t, "logId"), "keyId")->valuestring,
			key_id))
			continue;
		der = unb64(cJSON_GetObjectItem(pk, "rawBytes")->valuestring, &der_len);
		id = unb64(key_id, &id_len);
		p = der;
		log->pkey = der ? d2i_PUBKEY(NULL, &p, (long)der_len) : NULL;
		log->key_details = strdup(cJSON_GetObjectItem(pk, "keyDetails")->valuestring);
		log->base_url = strdup(cJSON_GetObjectItem(t, "baseUrl")->valuestring);
		memcpy(log->log_id, id, id_len == 32 ? 32 : 0);
		log->log_id_len = id_len;
		log->valid.end = SS_TIME_OPEN_END;
		ret = log->pkey && id_len == 32 ? 0 : -1;
		break;
	}
	free(der);
	free(id);
	cJSON_Delete(r);
	return ret;
}

/* The checkpoint of entry 0 of corpus case @name; malloc'd. */
static char *case_checkpoint(const char *name)
{
	char rel[256];
	cJSON *b, *cp;
	char *out = NULL;

	snprintf(rel, sizeof(rel), "bundle-verify/%s/bundle.sigstore.json", name);
	b = read_json(rel);
	cp = cJSON_GetObjectItem(
	    cJSON_GetObjectItem(
		cJSON_GetObjectItem(
		    cJSON_GetArrayItem(
			cJSON_GetObjectItem(cJSON_GetObjectItem(b, "verificationMaterial"),
	                                    "tlogEntries"),
			0),
		    "inclusionProof"),
		"checkpoint"),
	    "envelope");
	if (cJSON_IsString(cp))
		out = strdup(cp->valuestring);
	cJSON_Delete(b);
	return out;
}

/* ss_checkpoint_verify() of case @name's checkpoint; @msg gets the error. */
static int corpus_checkpoint(const char *name, const struct ss_log *log, struct ss_checkpoint *cp,
                             char *msg, size_t msg_size)
{
	struct mv_err err = {0};
	char *note = case_checkpoint(name);
	int ret;

	if (!note)
		return -ENOENT;
	ret = ss_checkpoint_verify(note, strlen(note), log, cp, &err);
	snprintf(msg, msg_size, "%s", err.msg);
	if (ret)
		printf("# %s: %s\n", name, err.msg);
	free(note);
	return ret;
}

static void test_checkpoint_corpus_v1(void)
{
	struct ss_checkpoint cp;
	struct ss_log log;
	uint8_t root[32];
	char msg[1024];

	CHECK_EQ_INT(log_from_root("public-good-trusted_root.json",
	                           "wNI9atQGlz+VWfO6LRygH4QUfY/8W4RFwiT5i5WRgB0=", &log),
	             0);
	CHECK_EQ_INT(corpus_checkpoint("happy-path-v0.1", &log, &cp, msg, sizeof(msg)), 0);
	CHECK_STR(cp.origin, "rekor.sigstore.dev - 2605736670972794746");
	CHECK_EQ_INT(cp.size, 23083062);
	CHECK_EQ_INT(mv_hex_decode("75aba195e60ae18c80771c300ed4749742a748e59974"
	                           "6d9bc2a1dfb656a7bdc2",
	                           root, 32),
	             32);
	CHECK(!memcmp(cp.root, root, 32));
	CHECK_EQ_INT(corpus_checkpoint("happy-path-intoto-in-dsse-v3", &log, &cp, msg, sizeof(msg)),
	             0);
	CHECK_EQ_INT(corpus_checkpoint("checkpoint-bad-keyhint_fail", &log, &cp, msg, sizeof(msg)),
	             -EKEYREJECTED);
	CHECK_STR(msg, "checkpoint: no signature by log rekor.sigstore.dev (key hint c0d23d6a)");
	CHECK_EQ_INT(
	    corpus_checkpoint("invalid-checkpoint-signature_fail", &log, &cp, msg, sizeof(msg)),
	    -EKEYREJECTED);
	CHECK(strstr(msg, "does not verify") != NULL);
	log_release(&log);
}

static void test_checkpoint_corpus_v2(void)
{
	static const char *const good[] = {
	    "rekor2-happy-path",
	    "rekor2-checkpoint-cosigned",
	    "rekor2-checkpoint-multiple-cosigs",
	    "rekor2-checkpoint-origin-not-first",
	    "rekor2-checkpoint-two-sigs-cosigned",
	    "rekor2-checkpoint-two-sigs-from-origin",
	};
	static const char *const malformed[] = {
	    "rekor2-checkpoint-missing-log-signature_fail",
	    "rekor2-checkpoint-missing-origin_fail",
	    "rekor2-checkpoint-missing-root-hash_fail",
	    "rekor2-checkpoint-missing-size_fail",
	};
	struct ss_checkpoint cp;
	struct ss_log log;
	char msg[1024];

	CHECK_EQ_INT(log_from_root("bundle-verify/rekor2-happy-path/trusted_root.json",
	                           "8w1amZ2S5mJIQkQmPxdMuOrL/oJkvFg9MnQXmeOCXck=", &log),
	             0);
	for (size_t k = 0; k < sizeof(good) / sizeof(good[0]); k++) {
		memset(&cp, 0, sizeof(cp));
		CHECK_EQ_INT(corpus_checkpoint(good[k], &log, &cp, msg, sizeof(msg)), 0);
		CHECK_STR(cp.origin, "log2025-alpha1.rekor.sigstage.dev");
		CHECK_EQ_INT(cp.size, 736);
	}
	for (size_t k = 0; k < sizeof(malformed) / sizeof(malformed[0]); k++)
		CHECK_EQ_INT(corpus_checkpoint(malformed[k], &log, &cp, msg, sizeof(msg)),
		             -EBADMSG);
	CHECK_EQ_INT(corpus_checkpoint("rekor2-checkpoint-no-matching-signature_fail", &log, &cp,
	                               msg, sizeof(msg)),
	             -EKEYREJECTED);
	CHECK(strstr(msg, "no signature by log log2025-alpha1.rekor.sigstage.dev") != NULL);
	log_release(&log);
}

/* ---- checkpoints: notes signed here -------------------------------------- */

/* A key of @type ("ED25519", or "EC" for P-256). */
static EVP_PKEY *gen_key(const char *type)
{
	if (!strcmp(type, "EC"))
		return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	return EVP_PKEY_Q_keygen(NULL, NULL, type);
}

/* The C2SP key ID of @k under @name (Ed25519), or of its SPKI (ECDSA). */
static void key_id(EVP_PKEY *k, const char *name, uint8_t id[4])
{
	uint8_t buf[512], raw[32], md[32];
	size_t raw_len = sizeof(raw), n = strlen(name);

	if (EVP_PKEY_is_a(k, "EC")) {
		spki_sha(k, md);
	} else {
		EVP_PKEY_get_raw_public_key(k, raw, &raw_len);
		memcpy(buf, name, n);
		buf[n] = '\n';
		buf[n + 1] = 1;
		memcpy(buf + n + 2, raw, 32);
		sha(buf, n + 2 + 32, md);
	}
	memcpy(id, md, 4);
}

/* Appends "— @name base64(@id || sig(@text))\n" to @out (size 8192). */
static void sign_line(EVP_PKEY *k, const char *name, const uint8_t id[4], const char *text,
                      char *out)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t sig[4 + 256];
	size_t sig_len = sizeof(sig) - 4;
	char *b64;

	memcpy(sig, id, 4);
	EVP_DigestSignInit(ctx, NULL, EVP_PKEY_is_a(k, "EC") ? EVP_sha256() : NULL, NULL, k);
	EVP_DigestSign(ctx, sig + 4, &sig_len, (const uint8_t *)text, strlen(text));
	EVP_MD_CTX_free(ctx);
	b64 = mv_base64_encode(sig, sig_len + 4);
	snprintf(out + strlen(out), 8192 - strlen(out), "\xe2\x80\x94 %s %s\n", name, b64);
	free(b64);
}

/* A log of our own with key @k. */
static void own_log(EVP_PKEY *k, struct ss_log *log)
{
	memset(log, 0, sizeof(*log));
	log->pkey = k;
	log->key_details = EVP_PKEY_is_a(k, "EC") ? "PKIX_ECDSA_P256_SHA_256" : "PKIX_ED25519";
	log->base_url = "https://" LOG_HOST;
	key_id(k, LOG_HOST, log->log_id);
	log->log_id_len = 32;
	log->valid.end = SS_TIME_OPEN_END;
}

/* "@origin\n@size\n<root>\n" with the root of 32 bytes 0x11. */
static void cp_text(const char *origin, const char *size, char *out, size_t n)
{
	uint8_t root[32];
	char *b64;

	memset(root, 0x11, sizeof(root));
	b64 = mv_base64_encode(root, sizeof(root));
	snprintf(out, n, "%s\n%s\n%s\n", origin, size, b64);
	free(b64);
}

/* ss_checkpoint_verify() of @text + blank line + @sigs. */
static int verify_note(const char *text, const char *sigs, const struct ss_log *log,
                       struct ss_checkpoint *cp, char *msg)
{
	struct mv_err err = {0};
	char note[16384];
	int ret;

	snprintf(note, sizeof(note), "%s\n%s", text, sigs);
	ret = ss_checkpoint_verify(note, strlen(note), log, cp, &err);
	if (msg)
		strcpy(msg, err.msg);
	return ret;
}

static void test_checkpoint_ed25519(void)
{
	EVP_PKEY *k = gen_key("ED25519"), *w = gen_key("ED25519");
	char text[512], other[512], sigs[8192] = "", msg[1024];
	uint8_t id[4], wid[4];
	struct ss_checkpoint cp;
	struct ss_log log;

	own_log(k, &log);
	key_id(k, LOG_HOST, id);
	key_id(w, "witness.example", wid);
	cp_text(LOG_HOST, "12", text, sizeof(text));
	/* the log's line alone, then between cosignatures */
	sign_line(k, LOG_HOST, id, text, sigs);
	CHECK_EQ_INT(verify_note(text, sigs, &log, &cp, NULL), 0);
	CHECK_STR(cp.origin, LOG_HOST);
	CHECK_EQ_INT(cp.size, 12);
	CHECK(cp.root[0] == 0x11 && cp.root[31] == 0x11);
	sigs[0] = '\0';
	sign_line(w, "witness.example", wid, text, sigs);
	sign_line(k, LOG_HOST, id, text, sigs);
	sign_line(w, "witness.example", wid, text, sigs);
	CHECK_EQ_INT(verify_note(text, sigs, &log, &cp, NULL), 0);
	/* cosignatures alone */
	sigs[0] = '\0';
	sign_line(w, "witness.example", wid, text, sigs);
	CHECK_EQ_INT(verify_note(text, sigs, &log, &cp, msg), -EKEYREJECTED);
	CHECK(strstr(msg, "checkpoint: no signature by log " LOG_HOST " (key hint") != NULL);
	/* the log's key ID under another name is another key */
	sigs[0] = '\0';
	sign_line(k, "other.example", id, text, sigs);
	CHECK_EQ_INT(verify_note(text, sigs, &log, &cp, NULL), -EKEYREJECTED);
	/* a line of the log that does not verify, next to one that does */
	cp_text(LOG_HOST, "13", other, sizeof(other));
	sigs[0] = '\0';
	sign_line(k, LOG_HOST, id, text, sigs);
	sign_line(k, LOG_HOST, id, other, sigs);
	CHECK_EQ_INT(verify_note(text, sigs, &log, &cp, msg), -EKEYREJECTED);
	CHECK(strstr(msg, "signature line 2 by log " LOG_HOST) != NULL);
	/* a signature over another text */
	sigs[0] = '\0';
	sign_line(k, LOG_HOST, id, other, sigs);
	CHECK_EQ_INT(verify_note(text, sigs, &log, &cp, NULL), -EKEYREJECTED);
	EVP_PKEY_free(k);
	EVP_PKEY_free(w);
}

static void test_checkpoint_ecdsa(void)
{
	EVP_PKEY *k = gen_key("EC");
	char text[512], sigs[8192] = "";
	struct ss_checkpoint cp;
	struct ss_log log;
	uint8_t id[4];
	char *p;

	own_log(k, &log);
	key_id(k, "", id);
	/* Rekor v1: origin "<host> - <tree id>", extension lines, any line name */
	cp_text("rekor.test.example - 1234", "3", text, sizeof(text));
	strcat(text, "Timestamp: 1689177396617352539\n");
	sign_line(k, "rekor.test.example", id, text, sigs);
	CHECK_EQ_INT(verify_note(text, sigs, &log, &cp, NULL), 0);
	CHECK_STR(cp.origin, "rekor.test.example - 1234");
	/* a flipped signature character */
	p = strrchr(sigs, ' ') + 12;
	*p = *p == 'A' ? 'B' : 'A';
	CHECK_EQ_INT(verify_note(text, sigs, &log, &cp, NULL), -EKEYREJECTED);
	/* a key ID one bit off */
	sigs[0] = '\0';
	id[3] ^= 1;
	sign_line(k, "rekor.test.example", id, text, sigs);
	CHECK_EQ_INT(verify_note(text, sigs, &log, &cp, NULL), -EKEYREJECTED);
	EVP_PKEY_free(k);
}

/* A note whose signature line is right, but whose text is @text. */
static int note_with_text(EVP_PKEY *k, const struct ss_log *log, const char *text)
{
	char sigs[8192] = "";
	struct ss_checkpoint cp;
	uint8_t id[4];

	key_id(k, LOG_HOST, id);
	sign_line(k, LOG_HOST, id, text, sigs);
	return verify_note(text, sigs, log, &cp, NULL);
}

static void test_checkpoint_malformed_text(void)
{
	EVP_PKEY *k = gen_key("ED25519");
	char text[1024], name[300];
	struct ss_log log;

	own_log(k, &log);
	cp_text(LOG_HOST, "05", text, sizeof(text));
	CHECK_EQ_INT(note_with_text(k, &log, text), -EBADMSG);
	cp_text(LOG_HOST, "9223372036854775808", text, sizeof(text));
	CHECK_EQ_INT(note_with_text(k, &log, text), -EBADMSG);
	cp_text(LOG_HOST, "9223372036854775807", text, sizeof(text));
	CHECK_EQ_INT(note_with_text(k, &log, text), 0);
	cp_text(LOG_HOST, "-1", text, sizeof(text));
	CHECK_EQ_INT(note_with_text(k, &log, text), -EBADMSG);
	cp_text(LOG_HOST, "0", text, sizeof(text));
	CHECK_EQ_INT(note_with_text(k, &log, text), 0);
	snprintf(text, sizeof(text),
	         LOG_HOST "\n1\nEREREREREREREREREREREREREREREREREREREREREQ==\n");
	CHECK_EQ_INT(note_with_text(k, &log, text), -EBADMSG); /* a 31-byte root */
	snprintf(text, sizeof(text), LOG_HOST "\n1\n%s\n",
	         "ERERERERERERERERERERERERERERERERERERERERERER");
	CHECK_EQ_INT(note_with_text(k, &log, text), -EBADMSG); /* a 33-byte root */
	cp_text(LOG_HOST, "1", text, sizeof(text));
	strcat(text, "\nextension\n"); /* an empty extension line */
	CHECK_EQ_INT(note_with_text(k, &log, text), -EBADMSG);
	snprintf(text, sizeof(text), LOG_HOST "\n1\n");
	CHECK_EQ_INT(note_with_text(k, &log, text), -EBADMSG);
	memset(name, 'a', 256);
	name[256] = '\0';
	cp_text(name, "1", text, sizeof(text));
	CHECK_EQ_INT(note_with_text(k, &log, text), -EBADMSG); /* origin too long */
	cp_text(LOG_HOST "\t", "1", text, sizeof(text));
	CHECK_EQ_INT(note_with_text(k, &log, text), -EBADMSG); /* a control character */
	cp_text(LOG_HOST "\xff", "1", text, sizeof(text));
	CHECK_EQ_INT(note_with_text(k, &log, text), -EBADMSG); /* not UTF-8 */
	EVP_PKEY_free(k);
}

static void test_checkpoint_malformed_sigs(void)
{
	EVP_PKEY *k = gen_key("ED25519");
	char text[512], sigs[8192] = "", note[16384], msg[1024];
	struct ss_checkpoint cp;
	struct ss_log log;
	uint8_t id[4];

	own_log(k, &log);
	key_id(k, LOG_HOST, id);
	cp_text(LOG_HOST, "1", text, sizeof(text));
	CHECK_EQ_INT(verify_note(text, "", &log, &cp, NULL), -EBADMSG);
	CHECK_EQ_INT(verify_note(text, "\xe2\x80\x94 " LOG_HOST " AAAAAA==\n", &log, &cp, NULL),
	             -EBADMSG); /* four bytes: a key ID, no signature */
	CHECK_EQ_INT(verify_note(text, "- " LOG_HOST " AAAAAAAA\n", &log, &cp, NULL), -EBADMSG);
	CHECK_EQ_INT(verify_note(text, "\xe2\x80\x94 " LOG_HOST "  AAAAAAAA\n", &log, &cp, NULL),
	             -EBADMSG);
	CHECK_EQ_INT(verify_note(text, "\xe2\x80\x94 a+b AAAAAAAA\n", &log, &cp, NULL), -EBADMSG);
	CHECK_EQ_INT(verify_note(text, "\xe2\x80\x94 " LOG_HOST " AAAA*AAA\n", &log, &cp, NULL),
	             -EBADMSG);
	/* the last line without its newline */
	sign_line(k, LOG_HOST, id, text, sigs);
	sigs[strlen(sigs) - 1] = '\0';
	CHECK_EQ_INT(verify_note(text, sigs, &log, &cp, msg), -EBADMSG);
	CHECK_STR(msg, "checkpoint: the last line has no newline");
	/* no blank line at all */
	snprintf(note, sizeof(note), "%s%s\n", text, sigs);
	CHECK_EQ_INT(ss_checkpoint_verify(note, strlen(note), &log, &cp, NULL), -EBADMSG);
	/* more signature lines than SS_MAX_NOTE_SIGS (64) */
	sigs[0] = '\0';
	for (int n = 0; n < 65; n++)
		strcat(sigs, "\xe2\x80\x94 w AAAAAAAA\n");
	sign_line(k, LOG_HOST, id, text, sigs);
	CHECK_EQ_INT(verify_note(text, sigs, &log, &cp, NULL), -EBADMSG);
	EVP_PKEY_free(k);
}

/* ---- ss_tlog_verify() on the corpus --------------------------------------- */

struct tcase {
	struct ss_root *root;
	struct ss_bundle *b;
	uint8_t art[32];
};

/* Loads case @name with the trusted root and artifact the suite would use. */
static int load_case(const char *name, struct tcase *t)
{
	struct mv_err err = {0};
	char rel[512], *json = NULL, *art = NULL;
	size_t len = 0, art_len = 0;
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
	if (mv_read_file(corpus(rel), SS_MAX_JSON, &art, &art_len, NULL))
		mv_read_file(corpus("bundle-verify/a.txt"), SS_MAX_JSON, &art, &art_len, NULL);
	sha(art ? art : "", art_len, t->art);
	free(art);
	free(json);
	if (ret)
		printf("# %s: %s\n", name, err.msg);
	return ret;
}

static void free_case(struct tcase *t)
{
	ss_bundle_free(t->b);
	ss_root_free(t->root);
	memset(t, 0, sizeof(*t));
}

/* ss_tlog_verify() of entry 0 at @now; the message goes to @msg. */
static int tlog(struct tcase *t, int64_t now, struct ss_tlog_result *res, char *msg)
{
	struct ss_tlog_result r;
	struct mv_err err = {0};
	int ret;

	ret = ss_tlog_verify(t->b, 0, t->root, t->art, now, res ? res : &r, &err);
	if (msg)
		strcpy(msg, err.msg);
	return ret;
}

/* What entry 0 of each case must give: 0, or an errno and a message part. */
static const struct {
	const char *name;
	int ret;
	const char *msg;
} corpus_cases[] = {
    {"happy-path-v0.1", 0, NULL},
    {"happy-path-v0.2", 0, NULL},
    {"happy-path-v0.3", 0, NULL},
    {"happy-path-v0.3-new-mediaType", 0, NULL},
    {"happy-path-intoto-in-dsse-v3", 0, NULL},
    {"intoto-with-custom-trust-root", 0, NULL},
    {"managed-key-happy-path", 0, NULL},
    {"managed-key-and-trusted-root", 0, NULL},
    {"trust-root-tlog-validity-end-inclusive", 0, NULL},
    {"bundle-with-sct-with-extensions", 0, NULL},
    {"rekor2-happy-path", 0, NULL},
    {"rekor2-dsse-happy-path", 0, NULL},
    {"rekor2-checkpoint-cosigned", 0, NULL},
    {"rekor2-checkpoint-multiple-cosigs", 0, NULL},
    {"rekor2-checkpoint-origin-not-first", 0, NULL},
    {"rekor2-checkpoint-two-sigs-cosigned", 0, NULL},
    {"rekor2-checkpoint-two-sigs-from-origin", 0, NULL},
    {"bundle-from-wrong-instance_fail", -EKEYREJECTED, "is not in the trusted root"},
    {"checkpoint-bad-keyhint_fail", -EKEYREJECTED,
     "checkpoint: no signature by log rekor.sigstore.dev"},
    {"checkpoint-wrong-roothash_fail", -EKEYREJECTED, "checkpoint: tree size"},
    {"inclusion-proof-corrupted-hash_fail", -EKEYREJECTED, "inclusion proof: computed root"},
    {"invalid-checkpoint-signature_fail", -EKEYREJECTED, "does not verify"},
    {"set-invalid-signature_fail", -EKEYREJECTED, "inclusion promise"},
    {"incorrect-public-key_fail", -EKEYREJECTED, "inclusion promise"},
    {"dsse-invalid-sig_fail", -EKEYREJECTED, "no signature of the bundle's envelope"},
    {"dsse-mismatch-sig_fail", -EKEYREJECTED, "no signature of the bundle's envelope"},
    {"dsse-mismatch-envelope_fail", -EKEYREJECTED, "spec.payloadHash"},
    {"intoto-log-entry-mismatch_fail", -EKEYREJECTED, "no signature of the bundle's envelope"},
    {"wrong-hashedrekord-artifact_fail", -EKEYREJECTED, "body: spec.signature.content"},
    {"wrong-hashedrekord-cert-and-sig_fail", -EKEYREJECTED, "body: spec.signature.content"},
    {"wrong-hashedrekord-entry_fail", -EKEYREJECTED, "body: spec.signature.content"},
    {"signature-mismatch_fail", -EKEYREJECTED, "body: spec.signature.content"},
    {"wrong-material_fail", -EKEYREJECTED, "body: spec.data.hash"},
    {"rekor2-checkpoint-missing-log-signature_fail", -EBADMSG, "checkpoint: no signature lines"},
    {"rekor2-checkpoint-missing-origin_fail", -EBADMSG, "checkpoint:"},
    {"rekor2-checkpoint-missing-root-hash_fail", -EBADMSG, "checkpoint:"},
    {"rekor2-checkpoint-missing-size_fail", -EBADMSG, "checkpoint:"},
    {"rekor2-checkpoint-no-matching-signature_fail", -EKEYREJECTED,
     "checkpoint: no signature by log log2025-alpha1.rekor.sigstage.dev"},
    {"rekor2-dsse-invalid-sig_fail", -EKEYREJECTED, "signature.content differs"},
    {"rekor2-dsse-mismatch-sig_fail", -EKEYREJECTED, "signature.content differs"},
    {"rekor2-dsse-mismatch-envelope_fail", -EKEYREJECTED, "spec.hashedRekordV002.data"},
};

static void test_tlog_corpus(void)
{
	struct tcase t;
	char msg[1024];
	int ret;

	for (size_t k = 0; k < sizeof(corpus_cases) / sizeof(corpus_cases[0]); k++) {
		if (load_case(corpus_cases[k].name, &t)) {
			CHECK(!"corpus case loads");
			continue;
		}
		ret = tlog(&t, NOW, NULL, msg);
		if (ret != corpus_cases[k].ret ||
		    (corpus_cases[k].msg && !strstr(msg, corpus_cases[k].msg)))
			printf("# %s: %d %s\n", corpus_cases[k].name, ret, msg);
		CHECK_EQ_INT(ret, corpus_cases[k].ret);
		CHECK(!corpus_cases[k].msg || strstr(msg, corpus_cases[k].msg));
		CHECK(!ret || !strncmp(msg, "tlog entry 0: ", 14));
		free_case(&t);
	}
}

/* The log, time and key a v0.1 entry yields; the time window and skew. */
static void test_tlog_promise(void)
{
	struct ss_tlog_result res;
	struct ss_tlog_entry *e;
	struct ss_window saved;
	struct tcase t;
	uint8_t want[32], *set;
	char msg[1024];

	if (load_case("happy-path-v0.1", &t)) {
		CHECK(!"happy-path-v0.1 loads");
		return;
	}
	e = &t.b->tlog[0];
	CHECK_EQ_INT(tlog(&t, NOW, &res, NULL), 0);
	CHECK(res.has_time);
	CHECK_EQ_INT(res.time, 1689177396);
	CHECK(res.log && !strcmp(res.log->base_url, "https://rekor.sigstore.dev"));
	spki_sha(X509_get0_pubkey(t.b->leaf), want);
	CHECK(!memcmp(res.key_sha256, want, 32));
	/* the signed entry timestamp covers the time, the index and the body */
	e->set[e->set_len / 2] ^= 0x01;
	CHECK_EQ_INT(tlog(&t, NOW, NULL, msg), -EKEYREJECTED);
	CHECK_STR(msg, "tlog entry 0: inclusion promise: signed entry timestamp does not verify "
	               "with the key of log rekor.sigstore.dev");
	e->set[e->set_len / 2] ^= 0x01;
	e->integrated_time++;
	CHECK_EQ_INT(tlog(&t, NOW, NULL, NULL), -EKEYREJECTED);
	e->integrated_time--;
	e->log_index++;
	CHECK_EQ_INT(tlog(&t, NOW, NULL, NULL), -EKEYREJECTED);
	e->log_index--;
	/* not after now, give or take the 60 s of SS_CLOCK_SKEW */
	CHECK_EQ_INT(tlog(&t, 1689177396 - 60, NULL, NULL), 0);
	CHECK_EQ_INT(tlog(&t, 1689177396 - 61, NULL, msg), -EKEYREJECTED);
	CHECK(strstr(msg, "is after the current time") != NULL);
	/* inside the log key's window, both ends included */
	saved = t.root->tlogs[0].valid;
	CHECK(res.log == &t.root->tlogs[0]);
	t.root->tlogs[0].valid.end = 1689177396;
	CHECK_EQ_INT(tlog(&t, NOW, NULL, NULL), 0);
	t.root->tlogs[0].valid.end = 1689177395;
	CHECK_EQ_INT(tlog(&t, NOW, NULL, msg), -EKEYREJECTED);
	CHECK(strstr(msg, "outside the validity of the key of log rekor.sigstore.dev") != NULL);
	t.root->tlogs[0].valid = saved;
	t.root->tlogs[0].valid.start = 1689177397;
	CHECK_EQ_INT(tlog(&t, NOW, NULL, NULL), -EKEYREJECTED);
	t.root->tlogs[0].valid = saved;
	/* v0.1 needs the promise */
	set = e->set;
	e->set = NULL;
	CHECK_EQ_INT(tlog(&t, NOW, NULL, msg), -EBADMSG);
	CHECK_STR(msg, "tlog entry 0: bundle v0.1 without an inclusion promise");
	e->set = set;
	free_case(&t);
}

/* Proof, checkpoint and shape of a v0.2 entry. */
static void test_tlog_proof(void)
{
	struct ss_tlog_entry *e;
	struct tcase t;
	char msg[1024], *cp;
	uint8_t b;

	if (load_case("happy-path-v0.2", &t)) {
		CHECK(!"happy-path-v0.2 loads");
		return;
	}
	e = &t.b->tlog[0];
	CHECK_EQ_INT(tlog(&t, NOW, NULL, NULL), 0);
	e->hashes[3][7] ^= 0x20;
	CHECK_EQ_INT(tlog(&t, NOW, NULL, msg), -EKEYREJECTED);
	CHECK(strstr(msg, "tlog entry 0: inclusion proof: computed root") != NULL);
	e->hashes[3][7] ^= 0x20;
	e->root_hash[0] ^= 0x01;
	CHECK_EQ_INT(tlog(&t, NOW, NULL, NULL), -EKEYREJECTED);
	e->root_hash[0] ^= 0x01;
	/* the signature of the checkpoint */
	cp = strstr(e->checkpoint, "wNI9aj") + 20;
	b = (uint8_t)*cp;
	*cp = b == 'A' ? 'B' : 'A';
	CHECK_EQ_INT(tlog(&t, NOW, NULL, msg), -EKEYREJECTED);
	CHECK(strstr(msg, "tlog entry 0: checkpoint: signature line 1") != NULL);
	*cp = (char)b;
	/* v0.2 needs the proof, a proof needs its checkpoint */
	e->has_proof = false;
	CHECK_EQ_INT(tlog(&t, NOW, NULL, msg), -EBADMSG);
	CHECK(strstr(msg, "without an inclusion proof") != NULL);
	e->has_proof = true;
	cp = e->checkpoint;
	e->checkpoint = NULL;
	CHECK_EQ_INT(tlog(&t, NOW, NULL, msg), -EBADMSG);
	CHECK(strstr(msg, "inclusion proof without a checkpoint") != NULL);
	e->checkpoint = cp;
	/* an unknown log, an unknown type */
	e->log_id[0] ^= 0x01;
	CHECK_EQ_INT(tlog(&t, NOW, NULL, msg), -EKEYREJECTED);
	CHECK(strstr(msg, "is not in the trusted root") != NULL);
	e->log_id[0] ^= 0x01;
	strcpy(e->version, "0.0.9");
	CHECK_EQ_INT(tlog(&t, NOW, NULL, NULL), -EBADMSG);
	strcpy(e->version, "0.0.1");
	CHECK_EQ_INT(tlog(&t, NOW, NULL, NULL), 0);
	CHECK_EQ_INT(ss_tlog_verify(t.b, 1, t.root, t.art, NOW, &(struct ss_tlog_result){0}, NULL),
	             -EINVAL);
	free_case(&t);
}

/* The body against the bundle: signature, certificate, digest. */
static void test_tlog_body_hashedrekord(void)
{
	struct tcase t, other;
	char msg[1024];
	X509 *leaf;

	if (load_case("happy-path-v0.2", &t) || load_case("happy-path-v0.3", &other)) {
		CHECK(!"cases load");
		return;
	}
	t.b->sig[10] ^= 0x01;
	CHECK_EQ_INT(tlog(&t, NOW, NULL, msg), -EKEYREJECTED);
	CHECK_STR(msg, "tlog entry 0: body: spec.signature.content differs from the bundle");
	t.b->sig[10] ^= 0x01;
	t.art[0] ^= 0x01;
	CHECK_EQ_INT(tlog(&t, NOW, NULL, msg), -EKEYREJECTED);
	CHECK(strstr(msg, "tlog entry 0: body: spec.data.hash ") != NULL);
	t.art[0] ^= 0x01;
	leaf = t.b->leaf;
	t.b->leaf = other.b->leaf;
	CHECK_EQ_INT(tlog(&t, NOW, NULL, msg), -EKEYREJECTED);
	CHECK_STR(msg, "tlog entry 0: body: spec.signature.publicKey.content: not the "
	               "certificate of the bundle");
	t.b->leaf = leaf;
	/* the kind the entry claims is the body's */
	strcpy(t.b->tlog[0].kind, "intoto");
	strcpy(t.b->tlog[0].version, "0.0.2");
	CHECK_EQ_INT(tlog(&t, NOW, NULL, NULL), -EKEYREJECTED);
	strcpy(t.b->tlog[0].kind, "hashedrekord");
	strcpy(t.b->tlog[0].version, "0.0.1");
	/* without the artifact's digest, the bundle's messageDigest */
	CHECK_EQ_INT(ss_tlog_verify(t.b, 0, t.root, NULL, NOW, &(struct ss_tlog_result){0}, NULL),
	             0);
	CHECK_EQ_INT(tlog(&t, NOW, NULL, NULL), 0);
	free_case(&other);
	free_case(&t);
}

/* DSSE bundles: dsse 0.0.1, intoto 0.0.2, hashedrekord 0.0.2 over PAE. */
static void test_tlog_body_dsse(void)
{
	static const char *const names[] = {
	    "happy-path-intoto-in-dsse-v3",
	    "intoto-with-custom-trust-root",
	    "rekor2-dsse-happy-path",
	};
	static const char *const digest_member[] = {
	    "spec.payloadHash",
	    "spec.content.payloadHash",
	    "spec.hashedRekordV002.data",
	};
	struct tcase t;
	char msg[1024], *type;

	for (size_t k = 0; k < 3; k++) {
		if (load_case(names[k], &t)) {
			CHECK(!"case loads");
			continue;
		}
		CHECK_EQ_INT(tlog(&t, NOW, NULL, NULL), 0);
		t.b->payload[3] ^= 0x01;
		CHECK_EQ_INT(tlog(&t, NOW, NULL, msg), -EKEYREJECTED);
		CHECK(strstr(msg, digest_member[k]) != NULL);
		t.b->payload[3] ^= 0x01;
		t.b->sig[t.b->sig_len - 1] ^= 0x01;
		CHECK_EQ_INT(tlog(&t, NOW, NULL, NULL), -EKEYREJECTED);
		t.b->sig[t.b->sig_len - 1] ^= 0x01;
		type = t.b->payload_type;
		t.b->payload_type = "application/vnd.in-toto+jsonx";
		/* dsse 0.0.1 logs the payload's hash alone */
		CHECK_EQ_INT(tlog(&t, NOW, NULL, NULL), k == 0 ? 0 : -EKEYREJECTED);
		t.b->payload_type = type;
		/* a DSSE entry is not a message signature's */
		t.b->content = SS_MESSAGE_SIGNATURE;
		CHECK_EQ_INT(tlog(&t, NOW, NULL, msg), -EKEYREJECTED);
		CHECK(k == 2 || strstr(msg, "entry for a bundle with a message signature"));
		t.b->content = SS_DSSE;
		CHECK_EQ_INT(tlog(&t, NOW, NULL, NULL), 0);
		free_case(&t);
	}
}

/* A managed-key entry reports the key it names. */
static void test_tlog_managed_key(void)
{
	struct mv_err err = {0};
	struct ss_tlog_result res;
	struct mv_key *key = NULL;
	struct tcase t;
	uint8_t want[32];

	if (load_case("managed-key-happy-path", &t)) {
		CHECK(!"managed-key-happy-path loads");
		return;
	}
	CHECK(t.b->leaf == NULL);
	CHECK_EQ_INT(tlog(&t, NOW, &res, NULL), 0);
	CHECK_EQ_INT(
	    mv_key_load_public(corpus("bundle-verify/managed-key-happy-path/key.pub"), &key, &err),
	    0);
	if (key) {
		char id[65];

		mv_key_id(key, id);
		CHECK_EQ_INT(mv_hex_decode(id, want, 32), 32);
		CHECK(!memcmp(res.key_sha256, want, 32));
	}
	mv_key_free(key);
	free_case(&t);
}

/* ---- ss_tlog_verify() on a log of our own (Rekor v2 shape) ---------------- */

struct own {
	EVP_PKEY *log_key, *signer;
	struct ss_log log;
	struct ss_root root;
	struct ss_tlog_entry e;
	struct ss_bundle b;
	uint8_t leaves[5][32];
	uint8_t sig[8];
	uint8_t art[32];
	char body[4096];
};

/* The hashedrekord 0.0.2 body of @o's signature, over digest @art. */
static void own_body(struct own *o)
{
	unsigned char *der = NULL;
	int der_len = i2d_PUBKEY(o->signer, &der);
	char *spki = mv_base64_encode(der, (size_t)der_len);
	char *digest = mv_base64_encode(o->art, 32);
	char *sig = mv_base64_encode(o->sig, sizeof(o->sig));

	snprintf(o->body, sizeof(o->body),
	         "{\"apiVersion\":\"0.0.2\",\"kind\":\"hashedrekord\",\"spec\":{"
	         "\"hashedRekordV002\":{\"data\":{\"algorithm\":\"SHA2_256\",\"digest\":\"%s\"},"
	         "\"signature\":{\"content\":\"%s\",\"verifier\":{\"keyDetails\":"
	         "\"PKIX_ECDSA_P256_SHA_256\",\"publicKey\":{\"rawBytes\":\"%s\"}}}}}}",
	         digest, sig, spki);
	free(spki);
	free(digest);
	free(sig);
	OPENSSL_free(der);
}

/* A checkpoint of @o's tree, sized @size, with root @root, from @origin. */
static void own_checkpoint(struct own *o, const char *origin, int64_t size, const uint8_t *root)
{
	char text[512], sigs[8192] = "", *b64 = mv_base64_encode(root, 32);
	uint8_t id[4];

	snprintf(text, sizeof(text), "%s\n%lld\n%s\n", origin, (long long)size, b64);
	key_id(o->log_key, origin, id);
	sign_line(o->log_key, origin, id, text, sigs);
	free(o->e.checkpoint);
	o->e.checkpoint = malloc(strlen(text) + strlen(sigs) + 2);
	sprintf(o->e.checkpoint, "%s\n%s", text, sigs);
	o->e.checkpoint_len = strlen(o->e.checkpoint);
	free(b64);
}

/* A five-leaf log holding @o's entry at index 2, its proof and checkpoint. */
static void own_setup(struct own *o)
{
	memset(o, 0, sizeof(*o));
	o->log_key = gen_key("ED25519");
	o->signer = gen_key("EC");
	own_log(o->log_key, &o->log);
	o->root.tlogs = &o->log;
	o->root.n_tlogs = 1;
	memcpy(o->sig, "\x30\x06\x02\x01\x01\x02\x01\x01", 8);
	sha("hello", 5, o->art);
	own_body(o);
	make_leaves(o->leaves, 5);
	leaf_hash(o->body, strlen(o->body), o->leaves[2]);
	o->e.log_index = 2;
	memcpy(o->e.log_id, o->log.log_id, 32);
	o->e.log_id_len = 32;
	strcpy(o->e.kind, "hashedrekord");
	strcpy(o->e.version, "0.0.2");
	o->e.has_proof = true;
	o->e.proof_index = 2;
	o->e.tree_size = 5;
	mth(o->leaves, 5, o->e.root_hash);
	o->e.hashes = calloc(SS_MAX_PROOF, 32);
	o->e.n_hashes = audit_path(o->leaves, 5, 2, o->e.hashes);
	own_checkpoint(o, LOG_HOST, 5, o->e.root_hash);
	o->e.body = (uint8_t *)o->body;
	o->e.body_len = strlen(o->body);
	o->b.minor = 3;
	o->b.tlog = &o->e;
	o->b.n_tlog = 1;
	o->b.content = SS_MESSAGE_SIGNATURE;
	o->b.sig = o->sig;
	o->b.sig_len = sizeof(o->sig);
}

static void own_free(struct own *o)
{
	EVP_PKEY_free(o->log_key);
	EVP_PKEY_free(o->signer);
	free(o->e.hashes);
	free(o->e.checkpoint);
}

/* Puts @body in @o's log instead of its own: new leaf, proof, checkpoint. */
static void own_rebody(struct own *o, const char *body)
{
	CHECK(strlen(body) < sizeof(o->body));
	snprintf(o->body, sizeof(o->body), "%.*s", (int)sizeof(o->body) - 1, body);
	o->e.body_len = strlen(o->body);
	leaf_hash(o->body, o->e.body_len, o->leaves[2]);
	mth(o->leaves, 5, o->e.root_hash);
	o->e.n_hashes = audit_path(o->leaves, 5, 2, o->e.hashes);
	own_checkpoint(o, LOG_HOST, 5, o->e.root_hash);
}

static int own_verify(struct own *o, char *msg)
{
	struct ss_tlog_result res;
	struct mv_err err = {0};
	int ret = ss_tlog_verify(&o->b, 0, &o->root, o->art, NOW, &res, &err);

	if (msg)
		strcpy(msg, err.msg);
	return ret;
}

static void test_tlog_own_log(void)
{
	struct ss_tlog_result res;
	uint8_t other[32], want[32];
	char msg[1024];
	struct own o;

	own_setup(&o);
	CHECK_EQ_INT(ss_tlog_verify(&o.b, 0, &o.root, o.art, NOW, &res, NULL), 0);
	CHECK(!res.has_time && res.log == &o.log);
	spki_sha(o.signer, want);
	CHECK(!memcmp(res.key_sha256, want, 32));
	/* Rekor v2: the proof's index is the entry's */
	o.e.log_index = 3;
	CHECK_EQ_INT(own_verify(&o, msg), -EKEYREJECTED);
	CHECK_STR(msg, "tlog entry 0: inclusion proof: index 2 != log index 3");
	o.e.log_index = 2;
	/* the checkpoint's size and root are the proof's */
	own_checkpoint(&o, LOG_HOST, 6, o.e.root_hash);
	CHECK_EQ_INT(own_verify(&o, msg), -EKEYREJECTED);
	CHECK_STR(msg, "tlog entry 0: checkpoint: tree size 6 != inclusion proof tree size 5");
	memcpy(other, o.e.root_hash, 32);
	other[9] ^= 0x01;
	own_checkpoint(&o, LOG_HOST, 5, other);
	CHECK_EQ_INT(own_verify(&o, msg), -EKEYREJECTED);
	CHECK(strstr(msg, "tlog entry 0: checkpoint: root hash ") != NULL);
	/* the origin of a Rekor v2 checkpoint is the log's host */
	own_checkpoint(&o, "other.example", 5, o.e.root_hash);
	CHECK_EQ_INT(own_verify(&o, msg), -EKEYREJECTED);
	CHECK_STR(msg,
	          "tlog entry 0: checkpoint: origin \"other.example\" is not the host \"" LOG_HOST
	          "\" of the log");
	own_checkpoint(&o, LOG_HOST, 5, o.e.root_hash);
	o.log.base_url = "https://" LOG_HOST "/api/v2";
	CHECK_EQ_INT(own_verify(&o, NULL), 0);
	o.log.base_url = "https://" LOG_HOST;
	/* no promise in Rekor v2, and a proof */
	o.e.set = o.sig;
	o.e.set_len = sizeof(o.sig);
	CHECK_EQ_INT(own_verify(&o, NULL), -EBADMSG);
	o.e.set = NULL;
	o.e.set_len = 0;
	o.e.has_proof = false;
	CHECK_EQ_INT(own_verify(&o, msg), -EBADMSG);
	CHECK_STR(msg, "tlog entry 0: a Rekor v2 entry without an inclusion proof");
	o.e.has_proof = true;
	CHECK_EQ_INT(own_verify(&o, NULL), 0);
	own_free(&o);
}

/* Bodies that are not the bundle's, or not well formed. */
static void test_tlog_own_body(void)
{
	char msg[1024], *dup = NULL;
	struct own o;
	X509 *cert;
	struct tcase t;

	own_setup(&o);
	o.art[31] ^= 0x01;
	CHECK_EQ_INT(own_verify(&o, msg), -EKEYREJECTED);
	CHECK(strstr(msg, "tlog entry 0: body: spec.hashedRekordV002.data ") != NULL);
	o.art[31] ^= 0x01;
	o.sig[7] = 2;
	CHECK_EQ_INT(own_verify(&o, msg), -EKEYREJECTED);
	CHECK_STR(msg, "tlog entry 0: body: spec.hashedRekordV002.signature.content differs from "
	               "the bundle");
	o.sig[7] = 1;
	/* a bundle with a certificate, an entry with a key */
	if (!load_case("happy-path-v0.3", &t)) {
		cert = t.b->leaf;
		o.b.leaf = cert;
		CHECK_EQ_INT(own_verify(&o, msg), -EKEYREJECTED);
		CHECK(strstr(msg, "not the certificate of the bundle") != NULL);
		o.b.leaf = NULL;
		free_case(&t);
	}
	/* a member given twice: the body must mean one thing (the leaf is
	 * recomputed so that only the body check can refuse it) */
	CHECK(asprintf(&dup, "{\"kind\":\"dsse\",%s", o.body + 1) > 0);
	own_rebody(&o, dup);
	CHECK_EQ_INT(own_verify(&o, msg), -EBADMSG);
	CHECK(strstr(msg, "has member \"kind\" twice") != NULL);
	free(dup);
	/* a body of another version than the entry says */
	own_body(&o);
	dup = strdup(o.body);
	memcpy(strstr(dup, "0.0.2"), "0.0.1", 5);
	own_rebody(&o, dup);
	CHECK_EQ_INT(own_verify(&o, msg), -EKEYREJECTED);
	CHECK_STR(msg, "tlog entry 0: body: hashedrekord 0.0.1, but the entry says hashedrekord "
	               "0.0.2");
	free(dup);
	own_free(&o);
}

/* dsse 0.0.2 (deprecated in Rekor v2, still a type the spec names). */
static void test_tlog_own_dsse_v2(void)
{
	static char payload[] = "{\"_type\":\"https://in-toto.io/Statement/v1\"}";
	char *body = NULL, *digest, *sig, *spki, msg[1024];
	unsigned char *der = NULL;
	uint8_t md[32];
	struct own o;
	int der_len;

	own_setup(&o);
	sha(payload, strlen(payload), md);
	der_len = i2d_PUBKEY(o.signer, &der);
	spki = mv_base64_encode(der, (size_t)der_len);
	digest = mv_base64_encode(md, 32);
	sig = mv_base64_encode(o.sig, sizeof(o.sig));
	CHECK(asprintf(&body,
	               "{\"apiVersion\":\"0.0.2\",\"kind\":\"dsse\",\"spec\":{\"dsseV002\":{"
	               "\"payloadHash\":{\"algorithm\":\"SHA2_256\",\"digest\":\"%s\"},"
	               "\"signatures\":[{\"content\":\"%s\",\"verifier\":{\"keyDetails\":"
	               "\"PKIX_ECDSA_P256_SHA_256\",\"publicKey\":{\"rawBytes\":\"%s\"}}}]}}}",
	               digest, sig, spki) > 0);
	own_rebody(&o, body);
	strcpy(o.e.kind, "dsse");
	o.b.content = SS_DSSE;
	o.b.payload_type = "application/vnd.in-toto+json";
	o.b.payload = (uint8_t *)payload;
	o.b.payload_len = strlen(payload);
	CHECK_EQ_INT(own_verify(&o, msg), 0);
	payload[3] ^= 0x01;
	CHECK_EQ_INT(own_verify(&o, msg), -EKEYREJECTED);
	CHECK(strstr(msg, "tlog entry 0: body: spec.dsseV002.payloadHash ") != NULL);
	payload[3] ^= 0x01;
	o.sig[7] = 2;
	CHECK_EQ_INT(own_verify(&o, msg), -EKEYREJECTED);
	CHECK_STR(msg, "tlog entry 0: body: spec.dsseV002.signatures[]: no signature of the "
	               "bundle's envelope");
	o.sig[7] = 1;
	/* a dsse entry is not a message signature's */
	o.b.content = SS_MESSAGE_SIGNATURE;
	CHECK_EQ_INT(own_verify(&o, NULL), -EKEYREJECTED);
	free(body);
	free(digest);
	free(sig);
	free(spki);
	OPENSSL_free(der);
	own_free(&o);
}

int main(void)
{
	shared = getenv("MODELFS_SHARED");
	if (!shared) {
		printf("1..0 # SKIP MODELFS_SHARED not set\n");
		return 0;
	}
	TAP_RUN(test_merkle_vectors);
	TAP_RUN(test_merkle_all_trees);
	TAP_RUN(test_merkle_bounds);
	TAP_RUN(test_merkle_corpus);
	TAP_RUN(test_checkpoint_corpus_v1);
	TAP_RUN(test_checkpoint_corpus_v2);
	TAP_RUN(test_checkpoint_ed25519);
	TAP_RUN(test_checkpoint_ecdsa);
	TAP_RUN(test_checkpoint_malformed_text);
	TAP_RUN(test_checkpoint_malformed_sigs);
	TAP_RUN(test_tlog_corpus);
	TAP_RUN(test_tlog_promise);
	TAP_RUN(test_tlog_proof);
	TAP_RUN(test_tlog_body_hashedrekord);
	TAP_RUN(test_tlog_body_dsse);
	TAP_RUN(test_tlog_managed_key);
	TAP_RUN(test_tlog_own_log);
	TAP_RUN(test_tlog_own_body);
	TAP_RUN(test_tlog_own_dsse_v2);
	TAP_DONE();
}
