// SPDX-License-Identifier: Apache-2.0
/*
 * test_ss_parse.c - the Sigstore trusted root and bundle parsers (ss_root.c,
 * ss_bundle.c, ss_json.c): RFC 3339 times and validity windows; the
 * conformance corpus's roots and happy-path bundles, member by member; the
 * corpus's malformed bundles; and malformed inputs of our own, each of
 * which must be refused with -EBADMSG and a message naming the member.
 *
 * The corpus is found under $MODELFS_SHARED (default ../shared, from the
 * repository's top).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "sigstore_int.h"
#include "tap.h"

#define CORPUS       "/corpus/sigstore/"
#define CASES        CORPUS "bundle-verify/"
#define K32          "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" /* 32 zero bytes */
#define K33          "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" /* 33 */
#define K31          "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==" /* 31 */
#define A_TXT_SHA256 "a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf"

static const char *shared;

/* ---- helpers ----------------------------------------------------------- */

/* Path of @rel under the shared corpora; a static buffer rotated among 4. */
static const char *corpus(const char *rel)
{
	static char bufs[4][PATH_MAX];
	static int i;
	char *b = bufs[i++ % 4];

	snprintf(b, PATH_MAX, "%s%s", shared, rel);
	return b;
}

/* The whole file @path (malloc'd), or NULL; *@len its size. */
static char *slurp(const char *path, size_t *len)
{
	char *buf = NULL;

	if (mv_read_file(path, SS_MAX_JSON, &buf, len, NULL))
		return NULL;
	return buf;
}

/* @s with every @from replaced by @to (malloc'd); NULL if @from is absent. */
static char *replace(const char *s, const char *from, const char *to, bool all)
{
	size_t fl = strlen(from), tl = strlen(to), n = 0, len;
	const char *p = s, *q;
	char *out, *o;

	for (q = strstr(p, from); q; q = all ? strstr(q + fl, from) : NULL)
		n++;
	if (!n)
		return NULL;
	len = strlen(s) + n * tl + 1;
	out = malloc(len);
	if (!out)
		return NULL;
	o = out;
	while ((q = strstr(p, from)) && n--) {
		memcpy(o, p, (size_t)(q - p));
		o += q - p;
		memcpy(o, to, tl);
		o += tl;
		p = q + fl;
	}
	strcpy(o, p);
	return out;
}

/* A malformed input, what replaces what in a template, and the message. */
struct mutation {
	const char *from, *to;
	const char *msg; /* a substring of the error line; NULL: must parse */
};

/* Base64 of DER of a freshly made key or certificate (malloc'd). */
static char *b64_of(const unsigned char *der, int len)
{
	return len > 0 ? mv_base64_encode(der, (size_t)len) : NULL;
}

static char *spki_b64(EVP_PKEY *k)
{
	unsigned char *der = NULL;
	int len = i2d_PUBKEY(k, &der);
	char *s = b64_of(der, len);

	OPENSSL_free(der);
	return s;
}

static char *pkcs1_b64(EVP_PKEY *k)
{
	unsigned char *der = NULL;
	int len = i2d_PublicKey(k, &der);
	char *s = b64_of(der, len);

	OPENSSL_free(der);
	return s;
}

/* A self-signed certificate for @k, base64 of its DER. */
static char *cert_b64(EVP_PKEY *k)
{
	unsigned char *der = NULL;
	X509 *x = X509_new();
	char *s = NULL;
	int len;

	if (!x || !X509_set_version(x, 2) || !ASN1_INTEGER_set(X509_get_serialNumber(x), 1) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), 0) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), 3600) || !X509_set_pubkey(x, k) ||
	    !X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	                                (const unsigned char *)"test ca", -1, -1, 0) ||
	    !X509_set_issuer_name(x, X509_get_subject_name(x)) || !X509_sign(x, k, EVP_sha256()))
		goto out;
	len = i2d_X509(x, &der);
	s = b64_of(der, len);
out:
	OPENSSL_free(der);
	X509_free(x);
	return s;
}

/* ---- times and windows -------------------------------------------------- */

static void test_time_parse(void)
{
	static const struct {
		const char *s;
		int64_t t;
	} good[] = {
	    {"1970-01-01T00:00:00Z", 0},
	    {"2021-01-12T11:53:27Z", 1610452407},
	    {"2023-07-12T15:56:36Z", 1689177396},
	    {"2022-12-31T23:59:59.999Z", 1672531199},
	    {"2022-12-31T23:59:59.999000Z", 1672531199},
	    {"2022-12-31T23:59:59.123456789Z", 1672531199},
	    {"2021-01-12T11:53:27+01:00", 1610452407 - 3600},
	    {"2021-01-12T11:53:27-00:30", 1610452407 + 1800},
	    {"2024-02-29T00:00:00Z", 1709164800},
	    {"0001-01-01T00:00:00Z", -62135596800LL},
	    {"9999-12-31T23:59:59Z", 253402300799LL},
	};
	static const char *const bad[] = {
	    "",
	    "2021-01-12",
	    "2021-01-12 11:53:27Z",
	    "2021-01-12T11:53:27",
	    "2021-01-12t11:53:27Z",
	    "2021-01-12T11:53:27z",
	    "2021-1-12T11:53:27Z",
	    "2021-00-12T11:53:27Z",
	    "2021-13-12T11:53:27Z",
	    "2023-02-29T00:00:00Z",
	    "2021-04-31T00:00:00Z",
	    "0000-01-01T00:00:00Z",
	    "2021-01-12T24:00:00Z",
	    "2021-01-12T11:60:00Z",
	    "2021-01-12T11:53:60Z",
	    "2021-01-12T11:53:27.Z",
	    "2021-01-12T11:53:27.1234567890Z",
	    "2021-01-12T11:53:27Zjunk",
	    "2021-01-12T11:53:27+24:00",
	    "2021-01-12T11:53:27+0100",
	    "+2021-01-12T11:53:27Z",
	};
	int64_t t;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		t = -1;
		CHECK_EQ_INT(ss_time_parse(good[i].s, &t), 0);
		if (t != good[i].t)
			printf("# %s\n", good[i].s);
		CHECK_EQ_INT(t, good[i].t);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int ret = ss_time_parse(bad[i], &t);

		if (ret != -EBADMSG)
			printf("# accepted \"%s\"\n", bad[i]);
		CHECK_EQ_INT(ret, -EBADMSG);
	}
}

static void test_window(void)
{
	struct ss_window w = {.start = 10, .end = 20}, open = {.start = 5, .end = SS_TIME_OPEN_END};

	CHECK(!ss_window_has(&w, 9));
	CHECK(ss_window_has(&w, 10));
	CHECK(ss_window_has(&w, 20));
	CHECK(!ss_window_has(&w, 21));
	CHECK(!ss_window_has(&open, 4));
	CHECK(ss_window_has(&open, INT64_MAX));
}

/* ---- trusted roots ------------------------------------------------------ */

/* The public-good root, member by member. */
static void test_root_public_good(void)
{
	const uint8_t rekor_id[4] = {0xc0, 0xd2, 0x3d, 0x6a};
	struct mv_err err = {0};
	struct ss_root *r = NULL;
	int64_t t;

	CHECK_EQ_INT(ss_root_load(corpus(CORPUS "public-good-trusted_root.json"), &r, &err), 0);
	if (!r) {
		printf("# %s\n", err.msg);
		return;
	}
	CHECK_EQ_INT(r->n_cas, 2);
	CHECK_EQ_INT(r->n_tsas, 1);
	CHECK_EQ_INT(r->n_tlogs, 2);
	CHECK_EQ_INT(r->n_ctlogs, 2);
	CHECK_STR(r->tlogs[0].base_url, "https://rekor.sigstore.dev");
	CHECK_STR(r->tlogs[0].key_details, "PKIX_ECDSA_P256_SHA_256");
	CHECK_EQ_INT(EVP_PKEY_get_base_id(r->tlogs[0].pkey), EVP_PKEY_EC);
	CHECK_EQ_INT(r->tlogs[0].log_id_len, 32);
	CHECK(!memcmp(r->tlogs[0].log_id, rekor_id, 4));
	CHECK_EQ_INT(r->tlogs[0].valid.start, 1610452407);
	CHECK(r->tlogs[0].valid.end == SS_TIME_OPEN_END);
	CHECK_STR(r->tlogs[1].key_details, "PKIX_ED25519");
	CHECK_EQ_INT(EVP_PKEY_get_base_id(r->tlogs[1].pkey), EVP_PKEY_ED25519);
	/* "2022-10-31T23:59:59.999Z": the fraction is dropped, the end inclusive */
	CHECK_EQ_INT(r->ctlogs[0].valid.start, 1615680000);
	CHECK_EQ_INT(r->ctlogs[0].valid.end, 1667260799);
	CHECK_EQ_INT(sk_X509_num(r->cas[0].certs), 1);
	CHECK_EQ_INT(sk_X509_num(r->cas[1].certs), 2);
	CHECK_STR(r->cas[1].uri, "https://fulcio.sigstore.dev");
	CHECK_EQ_INT(sk_X509_num(r->tsas[0].certs), 2);
	CHECK_EQ_INT(ss_time_parse("2025-07-04T00:00:00Z", &t), 0);
	CHECK_EQ_INT(r->tsas[0].valid.start, t);
	ss_root_free(r);
}

/* Every trusted root of the corpus parses, except the one without a start. */
static void test_root_corpus(void)
{
	static const char *const ok[] = {
	    "managed-key-and-trusted-root",           /* a PKCS#1 RSA CT log key */
	    "trust-root-tlog-validity-end-inclusive", /* "end": null */
	    "intoto-with-custom-trust-root",          "rekor2-dsse-happy-path",
	    "bundle-with-sct-with-extensions",
	};
	char path[PATH_MAX];
	struct mv_err err = {0};
	struct ss_root *r = NULL;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(path, sizeof(path), "%s%s/trusted_root.json", corpus(CASES), ok[i]);
		memset(&err, 0, sizeof(err));
		CHECK_EQ_INT(ss_root_load(path, &r, &err), 0);
		if (!r)
			printf("# %s\n", err.msg);
		ss_root_free(r);
	}
	snprintf(path, sizeof(path), "%s%s", corpus(CASES),
	         "trust-root-tlog-missing-validity-start_fail/trusted_root.json");
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(ss_root_load(path, &r, &err), -EBADMSG);
	CHECK(r == NULL);
	CHECK(strstr(err.msg, "tlogs[1].publicKey.validFor.start: missing") != NULL);
}

/* A root of our own making: one log, one CA, one TSA. */
static const char root_template[] =
    "{\"mediaType\":\"application/vnd.dev.sigstore.trustedroot+json;version=0.1\","
    "\"tlogs\":[{\"baseUrl\":\"https://log.example\",\"hashAlgorithm\":\"SHA2_256\","
    "\"publicKey\":{\"rawBytes\":\"@KEY@\",\"keyDetails\":\"PKIX_ECDSA_P256_SHA_256\","
    "\"validFor\":{\"start\":\"2021-01-12T11:53:27Z\"}},\"logId\":{\"keyId\":\"" K32 "\"}}],"
    "\"certificateAuthorities\":[{\"subject\":{\"commonName\":\"ca\"},"
    "\"uri\":\"https://ca.example\",\"certChain\":{\"certificates\":[{\"rawBytes\":\"@CERT@\"}]},"
    "\"validFor\":{\"start\":\"2022-04-13T20:06:15Z\",\"end\":\"2031-10-05T13:56:58.999Z\"}}],"
    "\"ctlogs\":[],"
    "\"timestampAuthorities\":[{\"certChain\":{\"certificates\":[{\"rawBytes\":\"@CERT@\"}]},"
    "\"validFor\":{\"start\":\"2025-07-04T00:00:00Z\",\"end\":null}}]}";

/* The template with @KEY@ and @CERT@ filled in (malloc'd). */
static char *make_root(const char *key, const char *cert)
{
	char *a = replace(root_template, "@KEY@", key, true);
	char *b = a ? replace(a, "@CERT@", cert, true) : NULL;

	free(a);
	return b;
}

/* Parses @json; checks -EBADMSG and @msg in the line, or success if !@msg. */
static void check_root(const char *json, size_t len, const char *msg)
{
	struct mv_err err = {0};
	struct ss_root *r = NULL;
	int ret = ss_root_parse("root.json", json, len, &r, &err);

	if (!msg) {
		CHECK_EQ_INT(ret, 0);
		if (ret)
			printf("# refused: %s\n", err.msg);
	} else {
		CHECK_EQ_INT(ret, -EBADMSG);
		CHECK_EQ_INT(err.code, ret);
		CHECK(r == NULL);
		if (!strstr(err.msg, msg) || strncmp(err.msg, "root.json: ", 11))
			printf("# \"%s\" lacks \"%s\"\n", err.msg, msg);
		CHECK(strstr(err.msg, msg) != NULL);
		CHECK(!strchr(err.msg, '\n'));
	}
	ss_root_free(r);
}

/* Applies each mutation to @base and checks the outcome. */
static void check_root_mutations(const char *base, const struct mutation *m, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char *json = replace(base, m[i].from, m[i].to, false);

		CHECK(json != NULL);
		if (!json) {
			printf("# template lacks \"%s\"\n", m[i].from);
			continue;
		}
		check_root(json, strlen(json), m[i].msg);
		free(json);
	}
}

/* Keys and certificates made for the root tests. */
struct root_material {
	EVP_PKEY *ec, *ed, *rsa;
	char *ec_b64, *ed_b64, *rsa_b64, *cert;
	char *base; /* the template with the EC key and certificate */
};

static bool material_make(struct root_material *rm)
{
	memset(rm, 0, sizeof(*rm));
	rm->ec = EVP_EC_gen("P-256");
	rm->ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	rm->rsa = EVP_RSA_gen(2048);
	if (!rm->ec || !rm->ed || !rm->rsa)
		return false;
	rm->ec_b64 = spki_b64(rm->ec);
	rm->ed_b64 = spki_b64(rm->ed);
	rm->rsa_b64 = pkcs1_b64(rm->rsa);
	rm->cert = cert_b64(rm->ec);
	if (!rm->ec_b64 || !rm->ed_b64 || !rm->rsa_b64 || !rm->cert)
		return false;
	rm->base = make_root(rm->ec_b64, rm->cert);
	return rm->base != NULL;
}

static void material_free(struct root_material *rm)
{
	EVP_PKEY_free(rm->ec);
	EVP_PKEY_free(rm->ed);
	EVP_PKEY_free(rm->rsa);
	free(rm->ec_b64);
	free(rm->ed_b64);
	free(rm->rsa_b64);
	free(rm->cert);
	free(rm->base);
}

/* Member by member: each change of the template, and its refusal. */
static void test_root_refusals(void)
{
	static const struct mutation m[] = {
	    {"\"ctlogs\":[],", "\"ctlogs\":[],", NULL}, /* the template itself parses */
	    {"\"end\":null", "\"end\":\"2026-01-01T00:00:00+02:00\"", NULL},
	    {"version=0.1", "version=0.9", "mediaType: unsupported trusted root"},
	    {"\"mediaType\"", "\"mediatype\"", "root.json: mediaType: missing"},
	    {"\"start\":\"2021-01-12T11:53:27Z\"", "\"begin\":\"2021-01-12T11:53:27Z\"",
	     "tlogs[0].publicKey.validFor.start: missing"},
	    {"\"validFor\":{\"start\":\"2021-01-12T11:53:27Z\"}", "\"x\":{}",
	     "tlogs[0].publicKey.validFor: missing"},
	    {"2021-01-12T11:53:27Z", "2021-01-12T11:53:27",
	     "tlogs[0].publicKey.validFor.start: not an RFC 3339 time"},
	    {"2031-10-05T13:56:58.999Z", "2031-13-05T13:56:58Z",
	     "certificateAuthorities[0].validFor.end: not an RFC 3339 time"},
	    {"2031-10-05T13:56:58.999Z", "2022-04-13T20:06:14Z",
	     "certificateAuthorities[0].validFor: end before start"},
	    {"\"end\":\"2031-10-05T13:56:58.999Z\"", "\"end\":5",
	     "certificateAuthorities[0].validFor.end: expected a string"},
	    {"PKIX_ECDSA_P256_SHA_256", "PKIX_ED25519", "the key is not a PKIX_ED25519 key"},
	    {"PKIX_ECDSA_P256_SHA_256", "PKIX_ECDSA_P384_SHA_384", "not a PKIX_ECDSA_P384"},
	    {"PKIX_ECDSA_P256_SHA_256", "PKIX_RSA_PKCS1V15_2048_SHA256", "not a PKIX_RSA"},
	    {"\"keyId\":\"" K32 "\"", "\"keyId\":\"" K33 "\"",
	     "tlogs[0].logId.keyId: 33 bytes, at most 32 expected"},
	    {"\"keyId\":\"" K32 "\"", "\"keyId\":\"***\"",
	     "tlogs[0].logId.keyId: not valid base64"},
	    {"\"keyId\":\"" K32 "\"", "\"keyId\":\"\"", "tlogs[0].logId.keyId: empty"},
	    {",\"logId\":{\"keyId\":\"" K32 "\"}", "", "tlogs[0].logId: missing"},
	    {"\"tlogs\":[", "\"tlogs\":7,\"t\":[", "tlogs: expected an array"},
	    {"\"tlogs\":[{", "\"tlogs\":[1,{", "tlogs[0]: expected an object"},
	    {"\"certificates\":[{\"rawBytes\"", "\"certificates\":[],\"x\":[{\"rawBytes\"",
	     "certificateAuthorities[0].certChain.certificates: missing or empty"},
	    {"\"certificates\":[{", "\"certificates\":[7,{",
	     "certificateAuthorities[0].certChain.certificates[0]: expected an object"},
	    {"\"certChain\"", "\"certchain\"", "certificateAuthorities[0].certChain: missing"},
	    {"\"uri\":\"https://ca.example\"", "\"uri\":7",
	     "certificateAuthorities[0].uri: expected a string"},
	    {"\"ctlogs\":[]", "\"ctlogs\":[],\"ctlogs\":[]", "has member \"ctlogs\" twice"},
	};
	struct root_material rm;

	CHECK(material_make(&rm));
	if (rm.base) {
		check_root_mutations(rm.base, m, sizeof(m) / sizeof(m[0]));
		check_root(rm.base, strlen(rm.base) + 1, "contains a NUL byte");
		check_root(rm.base, strlen(rm.base) - 1, "not valid JSON");
	}
	check_root("[]", 2, "trusted root is not a JSON object");
	material_free(&rm);
}

/* Keys: undecodable, of another type than keyDetails says, bare PKCS#1. */
static void test_root_keys(void)
{
	struct root_material rm;
	char *json, *pkcs1;

	CHECK(material_make(&rm));
	if (!rm.base)
		goto out;
	json = make_root("AAAA", rm.cert);
	check_root(json, strlen(json), "tlogs[0].publicKey.rawBytes: not a public key");
	free(json);
	json = make_root(rm.ed_b64, rm.cert);
	check_root(json, strlen(json), "the key is not a PKIX_ECDSA_P256_SHA_256 key");
	free(json);
	/* a bare PKCS#1 RSA key (as the staging root's CT log): only as PKCS1_RSA_* */
	json = make_root(rm.rsa_b64, rm.cert);
	pkcs1 = replace(json, "PKIX_ECDSA_P256_SHA_256", "PKCS1_RSA_PKCS1V5", false);
	check_root(json, strlen(json), "not a public key OpenSSL can decode");
	check_root(pkcs1, strlen(pkcs1), NULL);
	free(json);
	free(pkcs1);
out:
	material_free(&rm);
}

/* @b64 (DER) with one byte more, in base64 (malloc'd). */
static char *with_trailing_byte(const char *b64)
{
	uint8_t *der = NULL, *more;
	size_t len = 0;
	char *out = NULL;

	if (mv_base64_decode(b64, strlen(b64), &der, &len))
		return NULL;
	more = realloc(der, len + 1);
	if (more) {
		der = more;
		der[len] = 0;
		out = mv_base64_encode(der, len + 1);
	}
	free(der);
	return out;
}

/* Certificates not DER or not consumed whole; lists over their bounds. */
static void test_root_bounds(void)
{
	struct root_material rm;
	char *json, *tmp, *bad, *many = NULL, *p;

	CHECK(material_make(&rm));
	if (!rm.base)
		goto out;
	json = make_root(rm.ec_b64, "AAAA");
	check_root(json, strlen(json), "certificates[0].rawBytes: not a DER certificate");
	free(json);
	bad = with_trailing_byte(rm.cert);
	json = bad ? make_root(rm.ec_b64, bad) : NULL;
	CHECK(json != NULL);
	if (json)
		check_root(json, strlen(json), "certificates[0].rawBytes: not a DER certificate");
	free(json);
	free(bad);
	many = malloc((SS_MAX_ROOT_ITEMS + 1) * (strlen(rm.cert) + 200));
	if (!many)
		goto out;
	p = many;
	for (unsigned i = 0; i <= SS_MAX_CHAIN; i++)
		p += sprintf(p, "{\"rawBytes\":\"%s\"},", rm.cert);
	tmp = replace(rm.base, "\"certificates\":[", "\"certificates\":[@MANY@", false);
	json = tmp ? replace(tmp, "@MANY@", many, false) : NULL;
	CHECK(json != NULL);
	if (json)
		check_root(json, strlen(json),
		           "certificateAuthorities[0].certChain.certificates: more than 10 items");
	free(tmp);
	free(json);
	p = many;
	for (unsigned i = 0; i <= SS_MAX_ROOT_ITEMS; i++)
		p += sprintf(p,
		             "%s{\"publicKey\":{\"rawBytes\":\"%s\",\"validFor\":{\"start\":"
		             "\"2021-01-12T11:53:27Z\"}},\"logId\":{\"keyId\":\"" K32 "\"}}",
		             i ? "," : "", rm.ec_b64);
	tmp = replace(rm.base, "\"ctlogs\":[]", "\"ctlogs\":[@MANY@]", false);
	json = tmp ? replace(tmp, "@MANY@", many, false) : NULL;
	CHECK(json != NULL);
	if (json)
		check_root(json, strlen(json), "ctlogs: more than 64 items");
	free(tmp);
	free(json);
out:
	free(many);
	material_free(&rm);
}

/* ss_root_load(): a missing file, a symbolic link, a file too large. */
static void test_root_load(void)
{
	char dir[] = "/tmp/modelfs-test-ss-XXXXXX", link_path[PATH_MAX], big[PATH_MAX];
	struct mv_err err = {0};
	struct ss_root *r = NULL;
	FILE *f;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(link_path, sizeof(link_path), "%s/root.json", dir);
	snprintf(big, sizeof(big), "%s/big.json", dir);
	CHECK(ss_root_load(link_path, &r, &err) == -ENOENT);
	CHECK(strstr(err.msg, "root.json: cannot open") != NULL);
	CHECK_EQ_INT(symlink(corpus(CORPUS "public-good-trusted_root.json"), link_path), 0);
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(ss_root_load(link_path, &r, &err), 0);
	CHECK(r != NULL);
	ss_root_free(r);
	r = NULL;
	f = fopen(big, "w");
	CHECK(f != NULL);
	if (f) {
		CHECK_EQ_INT(ftruncate(fileno(f), (off_t)SS_MAX_JSON + 1), 0);
		fclose(f);
	}
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(ss_root_load(big, &r, &err), -EFBIG);
	CHECK(strstr(err.msg, "too large") != NULL);
	unlink(big);
	unlink(link_path);
	rmdir(dir);
}

/* ---- bundles ------------------------------------------------------------ */

/* Parses the corpus bundle of case @name (NULL on failure, message shown). */
static struct ss_bundle *corpus_bundle(const char *name, struct mv_err *err)
{
	char path[PATH_MAX], *json;
	struct ss_bundle *b = NULL;
	size_t len = 0;

	snprintf(path, sizeof(path), "%s%s/bundle.sigstore.json", corpus(CASES), name);
	json = slurp(path, &len);
	CHECK(json != NULL);
	if (json && ss_bundle_parse(path, json, len, &b, err))
		printf("# %s\n", err->msg);
	free(json);
	return b;
}

static void test_bundle_v01(void)
{
	uint8_t sha[32];
	char hex[65];
	struct mv_err err = {0};
	struct ss_bundle *b = corpus_bundle("happy-path-v0.1", &err);
	struct ss_tlog_entry *e;

	CHECK(b != NULL);
	if (!b)
		return;
	CHECK_EQ_INT(b->minor, 1);
	CHECK(b->leaf != NULL);
	CHECK(b->chain == NULL);
	CHECK(b->key_hint == NULL);
	CHECK_EQ_INT(b->n_tlog, 1);
	CHECK_EQ_INT(b->n_tsa, 0);
	e = &b->tlog[0];
	CHECK_EQ_INT(e->log_index, 27246492);
	CHECK_EQ_INT(e->log_id_len, 32);
	CHECK_EQ_INT(e->log_id[0], 0xc0);
	CHECK_STR(e->kind, "hashedrekord");
	CHECK_STR(e->version, "0.0.1");
	CHECK_EQ_INT(e->integrated_time, 1689177396);
	CHECK(e->set != NULL && e->set_len > 64);
	CHECK(e->has_proof);
	CHECK_EQ_INT(e->proof_index, 23083061);
	CHECK_EQ_INT(e->tree_size, 23083062);
	CHECK_EQ_INT(e->n_hashes, 10);
	CHECK(e->checkpoint && !strncmp(e->checkpoint, "rekor.sigstore.dev - ", 21));
	CHECK_EQ_INT(e->checkpoint_len, strlen(e->checkpoint));
	CHECK(e->body_len > 100 && e->body[0] == '{');
	CHECK_EQ_INT(b->content, SS_MESSAGE_SIGNATURE);
	CHECK(b->has_digest);
	CHECK_STR(b->digest_alg, "SHA2_256");
	CHECK_EQ_INT(b->digest_len, 32);
	memcpy(sha, b->digest, 32);
	mv_hex_encode(sha, 32, hex);
	CHECK_STR(hex, A_TXT_SHA256);
	CHECK(b->sig_len >= 64 && b->sig_len <= 72);
	ss_bundle_free(b);
}

static void test_bundle_versions(void)
{
	static const struct {
		const char *name;
		int minor;
		bool leaf, tsa, promise;
	} cases[] = {
	    {"happy-path-v0.2", 2, true, false, true},
	    {"happy-path-v0.3", 3, true, false, true},
	    {"happy-path-v0.3-new-mediaType", 3, true, false, true},
	    {"managed-key-happy-path", 3, false, true, true},
	    {"rekor2-happy-path", 3, true, true, false},
	};
	struct mv_err err = {0};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ss_bundle *b = corpus_bundle(cases[i].name, &err);

		CHECK(b != NULL);
		if (!b)
			continue;
		CHECK_EQ_INT(b->minor, cases[i].minor);
		CHECK_EQ_INT(!!b->leaf, cases[i].leaf);
		CHECK_EQ_INT(b->n_tsa, cases[i].tsa);
		CHECK_EQ_INT(!!b->tlog[0].set, cases[i].promise);
		CHECK(b->tlog[0].has_proof && b->tlog[0].checkpoint);
		if (!cases[i].leaf)
			CHECK_STR(b->key_hint, "TLMsSDfG3ajPsWge+z/vX5T/zluXnmvbkTkwLIV68Tk=");
		if (!cases[i].promise) {
			CHECK_EQ_INT(b->tlog[0].integrated_time, 0);
			CHECK_STR(b->tlog[0].version, "0.0.2");
		}
		if (cases[i].tsa)
			CHECK(b->tsa[0] && b->tsa_len[0] > 100 && b->tsa[0][0] == 0x30);
		ss_bundle_free(b);
	}
}

static void test_bundle_dsse(void)
{
	struct mv_err err = {0};
	struct ss_bundle *b = corpus_bundle("happy-path-intoto-in-dsse-v3", &err);

	CHECK(b != NULL);
	if (!b)
		return;
	CHECK_EQ_INT(b->content, SS_DSSE);
	CHECK_STR(b->payload_type, "application/vnd.in-toto+json");
	CHECK(b->payload_len > 100 && !memcmp(b->payload, "{\"_type\"", 8));
	CHECK(!b->has_digest);
	CHECK(b->sig_len >= 64);
	CHECK_STR(b->tlog[0].kind, "dsse");
	ss_bundle_free(b);
}

/* The corpus's bundles that are malformed, with the check that refuses them. */
static void test_bundle_corpus_refusals(void)
{
	static const struct {
		const char *name, *msg;
	} cases[] = {
	    {"bundle-empty-certificate-chain_fail",
	     "verificationMaterial.x509CertificateChain.certificates: missing or empty"},
	    {"bundle-invalid-base64-signature_fail",
	     "messageSignature.signature: not valid base64"},
	    {"bundle-malformed-json_fail", "bundle is not valid JSON"},
	    {"bundle-negative-log-index_fail",
	     "verificationMaterial.tlogEntries[0].logIndex: negative (\"-1\")"},
	    {"bundle-unknown-version_fail", "mediaType: unsupported bundle version"},
	    {"intoto-missing-inclusion-proof_fail",
	     "tlogEntries[0]: a v0.2 bundle needs an inclusion proof with a checkpoint"},
	    {"rekor2-no-inclusion-proof_fail",
	     "tlogEntries[0]: a v0.3 bundle needs an inclusion proof with a checkpoint"},
	};
	char path[PATH_MAX], *json;
	struct ss_bundle *b = NULL;
	size_t len = 0;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mv_err err = {0};

		snprintf(path, sizeof(path), "%s%s/bundle.sigstore.json", corpus(CASES),
		         cases[i].name);
		json = slurp(path, &len);
		CHECK(json != NULL);
		if (!json)
			continue;
		CHECK_EQ_INT(ss_bundle_parse(path, json, len, &b, &err), -EBADMSG);
		CHECK(b == NULL);
		if (!strstr(err.msg, cases[i].msg))
			printf("# %s: \"%s\"\n", cases[i].name, err.msg);
		CHECK(strstr(err.msg, cases[i].msg) != NULL);
		free(json);
	}
}

/* A bundle of our own: v0.3, a key hint, one entry with promise and proof. */
static const char bundle_template[] =
    "{\"mediaType\":\"application/vnd.dev.sigstore.bundle.v0.3+json\","
    "\"verificationMaterial\":{\"publicKey\":{\"hint\":\"aGludA==\"},"
    "\"tlogEntries\":[{\"logIndex\":\"7\",\"logId\":{\"keyId\":\"" K32 "\"},"
    "\"kindVersion\":{\"kind\":\"hashedrekord\",\"version\":\"0.0.1\"},"
    "\"integratedTime\":\"1700000000\","
    "\"inclusionPromise\":{\"signedEntryTimestamp\":\"c2V0\"},"
    "\"inclusionProof\":{\"logIndex\":\"1\",\"rootHash\":\"" K32 "\",\"treeSize\":\"2\","
    "\"hashes\":[\"" K32 "\"],\"checkpoint\":{\"envelope\":\"log\\n2\\nroot\\n\"}},"
    "\"canonicalizedBody\":\"e30=\"}],"
    "\"timestampVerificationData\":{\"rfc3161Timestamps\":[{\"signedTimestamp\":\"dHNh\"}]}},"
    "\"messageSignature\":{\"messageDigest\":{\"algorithm\":\"SHA2_256\",\"digest\":\"" K32 "\"},"
    "\"signature\":\"c2ln\"}}";

#define DSSE_CONTENT                                                                               \
	"\"dsseEnvelope\":{\"payload\":\"e30=\",\"payloadType\":\"application/vnd.in-toto+json\"," \
	"\"signatures\":[{\"sig\":\"c2ln\",\"keyid\":\"\"}]}}"

/* Parses @json; checks -EBADMSG and @msg in the line, or success if !@msg. */
static void check_bundle(const char *json, size_t len, const char *msg)
{
	struct mv_err err = {0};
	struct ss_bundle *b = NULL;
	int ret = ss_bundle_parse("b.json", json, len, &b, &err);

	if (!msg) {
		CHECK_EQ_INT(ret, 0);
		if (ret)
			printf("# refused: %s\n", err.msg);
	} else {
		CHECK_EQ_INT(ret, -EBADMSG);
		CHECK_EQ_INT(err.code, ret);
		CHECK(b == NULL);
		if (!strstr(err.msg, msg) || strncmp(err.msg, "b.json: ", 8))
			printf("# \"%s\" lacks \"%s\"\n", err.msg, msg);
		CHECK(strstr(err.msg, msg) != NULL);
		CHECK(!strchr(err.msg, '\n'));
	}
	ss_bundle_free(b);
}

/* The template itself, member by member. */
static void test_bundle_template(void)
{
	struct mv_err err = {0};
	struct ss_bundle *b = NULL;
	struct ss_tlog_entry *e;
	char *dsse;

	CHECK_EQ_INT(ss_bundle_parse("b.json", bundle_template, strlen(bundle_template), &b, &err),
	             0);
	if (!b) {
		printf("# %s\n", err.msg);
		return;
	}
	e = &b->tlog[0];
	CHECK_EQ_INT(b->minor, 3);
	CHECK_STR(b->key_hint, "aGludA==");
	CHECK(!b->leaf && !b->chain);
	CHECK_EQ_INT(e->log_index, 7);
	CHECK_EQ_INT(e->integrated_time, 1700000000);
	CHECK(e->set_len == 3 && !memcmp(e->set, "set", 3));
	CHECK_EQ_INT(e->proof_index, 1);
	CHECK_EQ_INT(e->tree_size, 2);
	CHECK_EQ_INT(e->n_hashes, 1);
	CHECK_STR(e->checkpoint, "log\n2\nroot\n");
	CHECK(e->body_len == 2 && !memcmp(e->body, "{}", 2));
	CHECK(b->n_tsa == 1 && b->tsa_len[0] == 3 && !memcmp(b->tsa[0], "tsa", 3));
	CHECK(b->sig_len == 3 && !memcmp(b->sig, "sig", 3));
	ss_bundle_free(b);
	dsse = replace(bundle_template, "\"messageSignature\"", "\"x\"", false);
	if (dsse) {
		char *d2 =
		    replace(dsse, "\"signature\":\"c2ln\"}}", "\"x\":0}," DSSE_CONTENT, false);

		b = NULL;
		CHECK(d2 && !ss_bundle_parse("b.json", d2, strlen(d2), &b, &err));
		CHECK(b && b->content == SS_DSSE && b->payload_len == 2 && b->sig_len == 3);
		ss_bundle_free(b);
		free(d2);
	}
	free(dsse);
}

static void test_bundle_refusals(void)
{
	static const char *const ms_sig = "\"signature\":\"c2ln\"}}";
	static const struct mutation m[] = {
	    /* media types */
	    {".v0.3+json", ".v0.4+json", "mediaType: unsupported bundle version"},
	    {".v0.3+json", ".v0.3+jsonx", "unsupported bundle version"},
	    {".v0.3+json", ".v0.0+json", "unsupported bundle version"},
	    {"bundle.v0.3+json", "bundle+json;version=0.3;x", "unsupported bundle version"},
	    {"bundle.v0.3+json", "bundle+json;version=0.1", NULL},
	    {"bundle.v0.3+json", "bundle.v0.1+json", NULL},
	    {"bundle.v0.3+json", "bundle+json;version=0.2", NULL},
	    {"\"mediaType\":\"", "\"mediatype\":\"", "mediaType: missing"},
	    /* int64 members */
	    {"\"logIndex\":\"7\"", "\"logIndex\":\"-7\"", "tlogEntries[0].logIndex: negative"},
	    {"\"logIndex\":\"7\"", "\"logIndex\":\"7a\"", "logIndex: not a decimal string"},
	    {"\"logIndex\":\"7\"", "\"logIndex\":\"\"", "logIndex: not a decimal string"},
	    {"\"logIndex\":\"7\"", "\"logIndex\":\"+7\"", "logIndex: not a decimal string"},
	    {"\"logIndex\":\"7\"", "\"logIndex\":\" 7\"", "logIndex: not a decimal string"},
	    {"\"logIndex\":\"7\"", "\"logIndex\":7", "tlogEntries[0].logIndex: expected a string"},
	    {"\"logIndex\":\"7\"", "\"logIndex\":\"9223372036854775808\"",
	     "logIndex: out of range"},
	    {"\"logIndex\":\"7\"", "\"logIndex\":\"9223372036854775807\"", NULL},
	    {"\"logIndex\":\"7\",", "", NULL}, /* absent: 0, as in proto3 */
	    {"\"integratedTime\":\"1700000000\"", "\"integratedTime\":null", NULL},
	    {"\"integratedTime\":\"1700000000\"", "\"integratedTime\":\"1e9\"",
	     "integratedTime: not a decimal string"},
	    {"\"treeSize\":\"2\"", "\"treeSize\":\"1\"",
	     "inclusionProof: logIndex 1 outside a tree of 1 leaves"},
	    {"\"treeSize\":\"2\"", "\"treeSize\":\"-2\"", "inclusionProof.treeSize: negative"},
	    /* bytes */
	    {"\"keyId\":\"" K32 "\"", "\"keyId\":\"" K33 "\"",
	     "tlogEntries[0].logId.keyId: 33 bytes, at most 32 expected"},
	    {"\"rootHash\":\"" K32 "\"", "\"rootHash\":\"" K31 "\"",
	     "inclusionProof.rootHash: 31 bytes, 32 expected"},
	    {"\"rootHash\":\"" K32 "\"", "\"rootHash\":\"" K33 "\"",
	     "inclusionProof.rootHash: 33 bytes, at most 32 expected"},
	    {"\"hashes\":[\"" K32 "\"]", "\"hashes\":[\"!!!!\"]",
	     "inclusionProof.hashes[0]: not valid base64"},
	    {"\"hashes\":[\"" K32 "\"]", "\"hashes\":[\"" K31 "\"]",
	     "inclusionProof.hashes[0]: 31 bytes, 32 expected"},
	    {"\"hashes\":[\"" K32 "\"]", "\"hashes\":[3]",
	     "inclusionProof.hashes[0]: expected a string"},
	    {"\"hashes\":[\"" K32 "\"]", "\"hashes\":[]", NULL},
	    {"\"canonicalizedBody\":\"e30=\"", "\"canonicalizedBody\":\"e30\"",
	     "canonicalizedBody: not valid base64"},
	    {"\"canonicalizedBody\":\"e30=\"", "\"canonicalizedBody\":\"e3\\t0=\"",
	     "canonicalizedBody: not valid base64"},
	    /* line breaks are skipped (test_bundle_base64_wrapped), nothing else */
	    {"\"canonicalizedBody\":\"e30=\"", "\"canonicalizedBody\":\"e3\\n0=\"", NULL},
	    {",\"canonicalizedBody\":\"e30=\"", "", "canonicalizedBody: missing"},
	    {"\"signedEntryTimestamp\":\"c2V0\"", "\"signedEntryTimestamp\":\"\"",
	     "inclusionPromise.signedEntryTimestamp: empty"},
	    {"\"signedTimestamp\":\"dHNh\"", "\"signedTimestamp\":\"dH!a\"",
	     "rfc3161Timestamps[0].signedTimestamp: not valid base64"},
	    {"[{\"signedTimestamp\"", "[1,{\"signedTimestamp\"",
	     "rfc3161Timestamps[0]: expected an object"},
	    {"\"signature\":\"c2ln\"", "\"signature\":\"c2l\"",
	     "messageSignature.signature: not valid"},
	    {"\"signature\":\"c2ln\"", "\"signature\":\"\"", "messageSignature.signature: empty"},
	    {",\"signature\":\"c2ln\"", "", "messageSignature.signature: missing"},
	    /* strings */
	    {"\"kind\":\"hashedrekord\"", "\"kind\":\"hashedrekordhashedrekordhashedrekord\"",
	     "kindVersion.kind: too long"},
	    {"\"version\":\"0.0.1\"", "\"version\":\"\"", "kindVersion.version: empty"},
	    {"\"kindVersion\"", "\"kindversion\"", "tlogEntries[0].kindVersion: missing"},
	    {"\"logId\"", "\"logID\"", "tlogEntries[0].logId: missing"},
	    {"\"checkpoint\":{\"envelope\":\"log\\n2\\nroot\\n\"}",
	     "\"checkpoint\":{\"envelope\":\"\"}", "checkpoint.envelope: empty"},
	    /* version rules */
	    {",\"checkpoint\":{\"envelope\":\"log\\n2\\nroot\\n\"}", "",
	     "a v0.3 bundle needs an inclusion proof with a checkpoint"},
	    {"\"inclusionProof\"", "\"inclusionproof\"",
	     "a v0.3 bundle needs an inclusion proof with a checkpoint"},
	    /* verification material */
	    {"{\"publicKey\":{\"hint\":\"aGludA==\"},", "{\"publicKey\":{},\"certificate\":{},",
	     "exactly one of publicKey, x509CertificateChain and certificate expected, 2 given"},
	    {"{\"publicKey\":{\"hint\":\"aGludA==\"},", "{",
	     "exactly one of publicKey, x509CertificateChain and certificate expected, 0 given"},
	    {"{\"publicKey\":{\"hint\":\"aGludA==\"},", "{\"publicKey\":{},", NULL},
	    {"{\"publicKey\":{\"hint\":\"aGludA==\"},", "{\"publicKey\":[],",
	     "verificationMaterial.publicKey: expected an object"},
	    {"{\"publicKey\":{\"hint\":\"aGludA==\"},",
	     "{\"x509CertificateChain\":{\"certificates\":[{\"rawBytes\":\"AAAA\"}]},",
	     "x509CertificateChain: not allowed in a v0.3 bundle"},
	    {"{\"publicKey\":{\"hint\":\"aGludA==\"},", "{\"certificate\":{\"rawBytes\":\"AAAA\"},",
	     "verificationMaterial.certificate.rawBytes: not a DER certificate"},
	    {"{\"publicKey\":{\"hint\":\"aGludA==\"},", "{\"certificate\":{\"raw\":\"AAAA\"},",
	     "verificationMaterial.certificate.rawBytes: missing"},
	    {"\"verificationMaterial\":{", "\"verificationmaterial\":{",
	     "verificationMaterial: missing"},
	    {"\"tlogEntries\":[{", "\"tlogEntries\":[0,{", "tlogEntries[0]: expected an object"},
	    /* content */
	    {"\"algorithm\":\"SHA2_256\"", "\"algorithm\":\"MD5\"",
	     "messageDigest.algorithm: unsupported \"MD5\""},
	    {"\"algorithm\":\"SHA2_256\"", "\"algorithm\":\"SHA2_384\"",
	     "messageDigest.digest: 32 bytes, 48 expected"},
	    {"\"messageSignature\"", "\"messagesignature\"",
	     "exactly one of messageSignature and dsseEnvelope expected"},
	    {"\"signature\":\"c2ln\"}}", "\"signature\":\"c2ln\"}," DSSE_CONTENT,
	     "exactly one of messageSignature and dsseEnvelope expected"},
	    /* JSON */
	    {"\"mediaType\"", "\"mediaType\":1,\"mediaType\"", "has member \"mediaType\" twice"},
	    {"{\"mediaType\"", "[{\"mediaType\"", "not valid JSON"},
	};
	static const struct mutation dsse[] = {
	    {"\"payloadType\":\"application/vnd.in-toto+json\",", "",
	     "dsseEnvelope.payloadType: missing"},
	    {"\"payload\":\"e30=\"", "\"payload\":\"\"", "dsseEnvelope.payload: empty"},
	    {"[{\"sig\":\"c2ln\",\"keyid\":\"\"}]", "[]", "0 signatures, exactly one expected"},
	    {"[{\"sig\":\"c2ln\",\"keyid\":\"\"}]", "[{\"sig\":\"c2ln\"},{\"sig\":\"c2ln\"}]",
	     "2 signatures, exactly one expected"},
	    {"[{\"sig\":\"c2ln\",\"keyid\":\"\"}]", "[\"c2ln\"]",
	     "signatures[0]: expected an object"},
	    {"\"sig\":\"c2ln\"", "\"sig\":\"c2l\"", "dsseEnvelope.signatures[0].sig: not valid"},
	};
	char *no_ms = replace(bundle_template, "\"messageSignature\":{", "\"x\":{", false);
	char *dsse_base = no_ms ? replace(no_ms, ms_sig, "\"x\":0}," DSSE_CONTENT, false) : NULL;
	char *v01;

	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		char *json = replace(bundle_template, m[i].from, m[i].to, false);

		CHECK(json != NULL);
		if (json)
			check_bundle(json, strlen(json), m[i].msg);
		else
			printf("# template lacks %s\n", m[i].from);
		free(json);
	}
	CHECK(dsse_base != NULL);
	for (size_t i = 0; dsse_base && i < sizeof(dsse) / sizeof(dsse[0]); i++) {
		char *json = replace(dsse_base, dsse[i].from, dsse[i].to, false);

		CHECK(json != NULL);
		if (json)
			check_bundle(json, strlen(json), dsse[i].msg);
		free(json);
	}
	/* v0.1 needs the inclusion promise */
	v01 = replace(bundle_template, "bundle.v0.3+json", "bundle+json;version=0.1", false);
	if (v01) {
		char *json = replace(v01, "\"inclusionPromise\"", "\"inclusionpromise\"", false);

		check_bundle(json, strlen(json), "a v0.1 bundle needs an inclusion promise");
		free(json);
	}
	check_bundle(bundle_template, strlen(bundle_template) - 1, "not valid JSON");
	check_bundle("\"x\"", 3, "bundle is not a JSON object");
	free(v01);
	free(no_ms);
	free(dsse_base);
}

/* Parses @json (which must parse); the bundle's signature must be "sig". */
static void check_wrapped(const char *json)
{
	struct mv_err err = {0};
	struct ss_bundle *b = NULL;

	CHECK_EQ_INT(ss_bundle_parse("b.json", json, strlen(json), &b, &err), 0);
	if (!b) {
		printf("# refused: %s\n", err.msg);
		return;
	}
	CHECK(b->sig_len == 3 && !memcmp(b->sig, "sig", 3));
	CHECK(b->tlog[0].body_len == 2 && !memcmp(b->tlog[0].body, "{}", 2));
	ss_bundle_free(b);
}

/*
 * Base64 wrapped into lines, as protobuf JSON decoders accept it in bytes
 * fields: "\n" and "\r" anywhere are skipped, in every bytes member.
 */
static void test_bundle_base64_wrapped(void)
{
	static const struct mutation m[] = {
	    {"\"signature\":\"c2ln\"", "\"signature\":\"c2\\nln\""},
	    {"\"signature\":\"c2ln\"", "\"signature\":\"c2ln\\n\""},
	    {"\"signature\":\"c2ln\"", "\"signature\":\"\\nc2ln\""},
	    {"\"signature\":\"c2ln\"", "\"signature\":\"c2\\r\\nln\\r\\n\""},
	    {"\"signature\":\"c2ln\"", "\"signature\":\"c\\r2\\n\\nl\\rn\""},
	    {"\"canonicalizedBody\":\"e30=\"", "\"canonicalizedBody\":\"e3\\n0=\""},
	    {"\"rootHash\":\"" K32 "\"",
	     "\"rootHash\":\"AAAAAAAAAAAAAAAAAAAAAAAA\\nAAAAAAAAAAAAAAAAAAA=\""},
	    {"\"signedTimestamp\":\"dHNh\"", "\"signedTimestamp\":\"dH\\nNh\\n\""},
	};
	struct mv_err err = {0};
	struct ss_bundle *b;

	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		char *json = replace(bundle_template, m[i].from, m[i].to, false);

		CHECK(json != NULL);
		if (json)
			check_wrapped(json);
		free(json);
	}
	/* the corpus case whose timestamp is wrapped at 76 columns */
	b = corpus_bundle("rekor2-timestamp-with-incorrect-time_fail", &err);
	CHECK(b != NULL);
	if (b) {
		CHECK(b->n_tsa == 1 && b->tsa_len[0] > 1000 && b->tsa[0][0] == 0x30);
		ss_bundle_free(b);
	}
}

/* Other whitespace, or anything else that is not base64, stays refused. */
static void test_bundle_base64_strict(void)
{
	static const char *const bad[] = {
	    "c2 ln", "c2\\tln", "c2\\fln", "c2\\u000bln", "c2\\u00a0ln", "c2ln ", " c2ln",
	    "c2-l",  "c2_l",    "c2l",     "c2l=\\n=",    "c2\\n=ln",    "\\n",   "\\r\\n",
	};
	char to[64];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *json;

		snprintf(to, sizeof(to), "\"signature\":\"%s\"", bad[i]);
		json = replace(bundle_template, "\"signature\":\"c2ln\"", to, false);
		CHECK(json != NULL);
		if (json)
			check_bundle(json, strlen(json),
			             i < 12 ? "messageSignature.signature: not valid base64"
			                    : "messageSignature.signature: empty");
		free(json);
	}
}

/* Lists over their bounds: entries, proof hashes, whole inputs. */
static void test_bundle_bounds(void)
{
	const char *entry_start = strstr(bundle_template, "{\"logIndex\":\"7\"");
	const char *entry_end = strstr(bundle_template, "}],\"timestampVerificationData\"");
	size_t entry_len = (size_t)(entry_end - entry_start) + 1, n;
	char *many = malloc((SS_MAX_ENTRIES + 1) * (entry_len + 1) + (SS_MAX_PROOF + 1) * 50);
	char *json, *entry, *p;

	CHECK(many && entry_start && entry_end);
	if (!many || !entry_start || !entry_end)
		goto out;
	entry = strndup(entry_start, entry_len);
	p = many;
	for (n = 0; n <= SS_MAX_ENTRIES; n++)
		p += sprintf(p, "%s%s", n ? "," : "", entry);
	json = replace(bundle_template, entry, many, false);
	CHECK(json != NULL);
	if (json)
		check_bundle(json, strlen(json),
		             "verificationMaterial.tlogEntries: more than 16 items");
	free(json);
	free(entry);
	p = many;
	for (n = 0; n <= SS_MAX_PROOF; n++)
		p += sprintf(p, "%s\"" K32 "\"", n ? "," : "");
	json = replace(bundle_template, "\"hashes\":[\"" K32 "\"]", "\"hashes\":[@H@]", false);
	p = json ? replace(json, "@H@", many, false) : NULL;
	CHECK(p != NULL);
	if (p)
		check_bundle(p, strlen(p), "inclusionProof.hashes: more than 64 items");
	free(p);
	free(json);
	json = malloc((size_t)SS_MAX_JSON + 1);
	if (json) {
		memset(json, ' ', (size_t)SS_MAX_JSON + 1);
		check_bundle(json, (size_t)SS_MAX_JSON + 1, "bundle too large");
	}
	free(json);
out:
	free(many);
}

int main(void)
{
	shared = getenv("MODELFS_SHARED");
	if (!shared)
		shared = "../shared";
	TAP_RUN(test_time_parse);
	TAP_RUN(test_window);
	TAP_RUN(test_root_public_good);
	TAP_RUN(test_root_corpus);
	TAP_RUN(test_root_refusals);
	TAP_RUN(test_root_keys);
	TAP_RUN(test_root_bounds);
	TAP_RUN(test_root_load);
	TAP_RUN(test_bundle_v01);
	TAP_RUN(test_bundle_versions);
	TAP_RUN(test_bundle_dsse);
	TAP_RUN(test_bundle_corpus_refusals);
	TAP_RUN(test_bundle_template);
	TAP_RUN(test_bundle_refusals);
	TAP_RUN(test_bundle_bounds);
	TAP_RUN(test_bundle_base64_wrapped);
	TAP_RUN(test_bundle_base64_strict);
	TAP_DONE();
}
