// SPDX-License-Identifier: Apache-2.0
/*
 * test_ss_x509.c - the Fulcio certificate checks (ss_cert_verify,
 * ss_sct_verify, ss_identity_get) and RFC 3161 timestamps (ss_tsa_verify):
 * the Sigstore conformance corpus at good and bad times, trusted roots with
 * changed windows, and a test PKI made here for what the corpus lacks (key
 * usages, CA leaves, critical extensions, identity extensions, a TSA).
 * Each negative test fails if its check is removed.
 *
 * Over 1,000 lines: one concern, the certificate and timestamp checks, whose
 * test PKI and TSA builders are shared by every group of tests here.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <openssl/ct.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/ts.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tap.h"
#include "sigstore_int.h"

#define BEACON_ID                                                                                  \
	"https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"          \
	".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
#define GHA_ISSUER "https://token.actions.githubusercontent.com"

static const char *shared;

/* ---- corpus helpers ---------------------------------------------------- */

/* Path under the Sigstore corpus; a static buffer rotated among 4. */
static const char *sig_path(const char *rel)
{
	static char bufs[4][PATH_MAX];
	static int i;
	char *b = bufs[i++ % 4];

	snprintf(b, PATH_MAX, "%s/corpus/sigstore/%s", shared, rel);
	return b;
}

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/* The trusted root of case @name: its own, else the public-good one. */
static struct ss_root *root_of(const char *name)
{
	char rel[512];
	struct ss_root *root = NULL;
	struct mv_err err = {0};

	snprintf(rel, sizeof(rel), "bundle-verify/%s/trusted_root.json", name);
	if (!name || !exists(sig_path(rel)))
		snprintf(rel, sizeof(rel), "public-good-trusted_root.json");
	if (ss_root_load(sig_path(rel), &root, &err))
		printf("# %s: %s\n", rel, err.msg);
	return root;
}

/* The parsed bundle of case @name, or NULL (message in @err). */
static struct ss_bundle *bundle_of(const char *name, struct mv_err *err)
{
	char rel[512], *json = NULL;
	struct ss_bundle *b = NULL;
	size_t len = 0;

	snprintf(rel, sizeof(rel), "bundle-verify/%s/bundle.sigstore.json", name);
	if (mv_read_file(sig_path(rel), SS_MAX_JSON, &json, &len, err) == 0)
		ss_bundle_parse(name, json, len, &b, err);
	free(json);
	return b;
}

/* A file of case @name (identity, issuer) without its newline, or @dflt. */
static void case_text(const char *name, const char *file, const char *dflt, char *out,
                      size_t out_len)
{
	char rel[512], *s = NULL;
	size_t len = 0;

	snprintf(rel, sizeof(rel), "bundle-verify/%s/%s", name, file);
	snprintf(out, out_len, "%s", dflt);
	if (!exists(sig_path(rel)) || mv_read_file(sig_path(rel), 4096, &s, &len, NULL))
		return;
	while (len && (s[len - 1] == '\n' || s[len - 1] == '\r'))
		len--;
	snprintf(out, out_len, "%.*s", (int)len, s);
	free(s);
}

static int64_t not_after(X509 *x)
{
	int64_t t = 0;

	CHECK_EQ_INT(ss_asn1_time_get(X509_get0_notAfter(x), &t), 0);
	return t;
}

static int64_t not_before(X509 *x)
{
	int64_t t = 0;

	CHECK_EQ_INT(ss_asn1_time_get(X509_get0_notBefore(x), &t), 0);
	return t;
}

static bool has(const struct mv_err *e, const char *needle)
{
	bool ok = strstr(e->msg, needle) != NULL;

	if (!ok)
		printf("# message \"%s\" lacks \"%s\"\n", e->msg, needle);
	return ok;
}

/* ---- a test PKI --------------------------------------------------------- */

static long serial = 1;

/* An unsigned certificate for @key, issued by @issuer (NULL: self). */
static X509 *cert_begin(EVP_PKEY *key, const char *cn, X509 *issuer, int64_t nb, int64_t na)
{
	X509 *x = X509_new();
	X509_NAME *name;

	if (!x)
		return NULL;
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	ASN1_TIME_set(X509_getm_notBefore(x), (time_t)nb);
	ASN1_TIME_set(X509_getm_notAfter(x), (time_t)na);
	name = X509_get_subject_name(x);
	if (cn)
		X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1,
		                           -1, 0);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
	X509_set_pubkey(x, key);
	return x;
}

/* Adds the extension @name = @value (OpenSSL config syntax). */
static void ext_add(X509 *x, X509 *issuer, const char *name, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *e;

	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	e = X509V3_EXT_nconf(NULL, &v3, name, value);
	CHECK(e != NULL);
	if (e)
		X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
}

/* Adds extension @oid with raw contents @data (@len bytes). */
static void ext_raw(X509 *x, const char *oid, bool crit, const void *data, int len)
{
	ASN1_OBJECT *obj = OBJ_txt2obj(oid, 1);
	ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
	X509_EXTENSION *e = NULL;

	if (obj && os && ASN1_OCTET_STRING_set(os, data, len))
		e = X509_EXTENSION_create_by_OBJ(NULL, obj, crit, os);
	CHECK(e != NULL);
	if (e)
		X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	ASN1_OCTET_STRING_free(os);
	ASN1_OBJECT_free(obj);
}

/* Adds Fulcio's issuer extension 1.8 (a DER UTF8String) holding @s. */
static void ext_issuer_v2(X509 *x, const char *s)
{
	unsigned char der[300];
	size_t n = strlen(s);

	der[0] = 0x0c; /* UTF8String */
	der[1] = (unsigned char)n;
	memcpy(der + 2, s, n);
	ext_raw(x, "1.3.6.1.4.1.57264.1.8", false, der, (int)n + 2);
}

static void cert_sign(X509 *x, EVP_PKEY *key)
{
	CHECK(X509_sign(x, key, EVP_sha256()) > 0);
}

/* A test CA (self-signed, P-256) and a root holding it alone. */
struct pki {
	EVP_PKEY *ca_key, *leaf_key;
	X509 *ca;
	struct ss_ca ca_entry;
	struct ss_root root;
};

#define T0  1700000000 /* 2023-11-14T22:13:20Z */
#define NOW 1800000000 /* 2027-01-15: after every time of the corpus */

static void pki_init(struct pki *p)
{
	memset(p, 0, sizeof(*p));
	p->ca_key = EVP_EC_gen("P-256");
	p->leaf_key = EVP_EC_gen("P-256");
	p->ca = cert_begin(p->ca_key, "test-fulcio", NULL, T0 - 86400, T0 + 86400);
	ext_add(p->ca, NULL, "basicConstraints", "critical,CA:TRUE");
	ext_add(p->ca, NULL, "keyUsage", "critical,keyCertSign,cRLSign");
	ext_add(p->ca, NULL, "subjectKeyIdentifier", "hash");
	cert_sign(p->ca, p->ca_key);
	p->ca_entry.certs = sk_X509_new_null();
	sk_X509_push(p->ca_entry.certs, p->ca);
	p->ca_entry.valid.start = T0 - 86400;
	p->ca_entry.valid.end = SS_TIME_OPEN_END;
	p->root.cas = &p->ca_entry;
	p->root.n_cas = 1;
}

static void pki_free(struct pki *p)
{
	sk_X509_pop_free(p->ca_entry.certs, X509_free);
	EVP_PKEY_free(p->ca_key);
	EVP_PKEY_free(p->leaf_key);
}

/* What a test leaf carries. */
struct leaf_opts {
	const char *ku, *eku, *bc, *san;
	const char *issuer_v1, *issuer_v2;
	const char *crit_oid; /* a critical extension of this OID, or NULL */
	const char *cn;       /* a subject CN (Fulcio's subject is empty) */
	int64_t not_after;    /* 0: T0 + 300 */
};

/* A Fulcio-like leaf of @p, valid [T0-300, T0+300], or per @o. */
static X509 *leaf_make(struct pki *p, const struct leaf_opts *o)
{
	X509 *x =
	    cert_begin(p->leaf_key, o->cn, p->ca, T0 - 300, o->not_after ? o->not_after : T0 + 300);

	if (o->ku)
		ext_add(x, p->ca, "keyUsage", o->ku);
	if (o->eku)
		ext_add(x, p->ca, "extendedKeyUsage", o->eku);
	if (o->bc)
		ext_add(x, p->ca, "basicConstraints", o->bc);
	ext_add(x, p->ca, "authorityKeyIdentifier", "keyid:always");
	ext_add(x, p->ca, "subjectKeyIdentifier", "hash");
	if (o->san)
		ext_add(x, p->ca, "subjectAltName", o->san);
	if (o->issuer_v1)
		ext_raw(x, "1.3.6.1.4.1.57264.1.1", false, o->issuer_v1, (int)strlen(o->issuer_v1));
	if (o->issuer_v2)
		ext_issuer_v2(x, o->issuer_v2);
	if (o->crit_oid)
		ext_raw(x, o->crit_oid, true, "\x05\x00", 2);
	cert_sign(x, p->ca_key);
	return x;
}

static const struct leaf_opts good_leaf = {
    .ku = "critical,digitalSignature",
    .eku = "codeSigning",
    .san = "critical,email:alice@example.com",
    .issuer_v1 = "https://accounts.example.com",
    .issuer_v2 = "https://accounts.example.com",
};

/* ss_cert_verify() of a leaf made with @o; the error in @err. */
static int leaf_try(struct pki *p, const struct leaf_opts *o, int64_t t, struct mv_err *err)
{
	X509 *leaf = leaf_make(p, o), *issuer = NULL;
	int ret;

	memset(err, 0, sizeof(*err));
	ret = ss_cert_verify(leaf, NULL, &p->root, t, &issuer, err);
	if (ret == 0)
		CHECK(issuer == p->ca);
	X509_free(leaf);
	return ret;
}

/* ---- tests: the chain --------------------------------------------------- */

/* The happy-path bundles: the leaf at its tlog time, SCT, identity. */
static void test_corpus_happy(void)
{
	static const char *const cases[] = {
	    "happy-path-v0.1",
	    "happy-path-v0.2",
	    "happy-path-v0.3",
	    "happy-path-v0.3-new-mediaType",
	    "happy-path-intoto-in-dsse-v3",
	};
	struct ss_root *root = root_of(NULL);

	CHECK(root != NULL);
	for (size_t i = 0; root && i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mv_err err = {0};
		struct ss_bundle *b = bundle_of(cases[i], &err);
		struct ss_identity id;
		X509 *issuer = NULL;

		CHECK(b && b->leaf && b->n_tlog > 0);
		if (!b || !b->leaf || !b->n_tlog) {
			printf("# %s: %s\n", cases[i], err.msg);
			ss_bundle_free(b);
			continue;
		}
		CHECK_EQ_INT(ss_cert_verify(b->leaf, b->chain, root, b->tlog[0].integrated_time,
		                            &issuer, &err),
		             0);
		CHECK(issuer != NULL);
		CHECK_EQ_INT(ss_sct_verify(b->leaf, issuer, root, NOW, &err), 0);
		CHECK_EQ_INT(ss_identity_get(b->leaf, &id, &err), 0);
		CHECK_STR(id.san, BEACON_ID);
		CHECK_STR(id.issuer, GHA_ISSUER);
		if (err.code)
			printf("# %s: %s\n", cases[i], err.msg);
		ss_bundle_free(b);
	}
	ss_root_free(root);
}

/* Validity: both ends inclusive; one second outside each fails. */
static void test_corpus_validity(void)
{
	struct ss_root *root = root_of(NULL);
	struct mv_err err = {0};
	struct ss_bundle *b = bundle_of("happy-path-v0.3", &err);
	int64_t nb, na;
	X509 *issuer;

	CHECK(root && b && b->leaf);
	if (!root || !b || !b->leaf)
		goto out;
	nb = not_before(b->leaf);
	na = not_after(b->leaf);
	CHECK_EQ_INT(ss_cert_verify(b->leaf, NULL, root, nb, &issuer, &err), 0);
	CHECK_EQ_INT(ss_cert_verify(b->leaf, NULL, root, na, &issuer, &err), 0);
	CHECK_EQ_INT(ss_cert_verify(b->leaf, NULL, root, na + 1, &issuer, &err), -EKEYREJECTED);
	CHECK(
	    has(&err,
	        "certificate: not valid at 2024-03-19T17:36:27Z (notAfter 2024-03-19T17:36:26Z)"));
	CHECK(issuer == NULL);
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(ss_cert_verify(b->leaf, NULL, root, nb - 1, &issuer, &err), -EKEYREJECTED);
	CHECK(has(&err, "(notBefore 2024-03-19T17:26:26Z)"));
out:
	ss_bundle_free(b);
	ss_root_free(root);
}

/* The CA's window in the trusted root must hold the time. */
static void test_corpus_ca_window(void)
{
	struct ss_root *root = root_of(NULL);
	struct mv_err err = {0};
	struct ss_bundle *b = bundle_of("happy-path-v0.3", &err);
	int64_t t;
	X509 *issuer;

	CHECK(root && b && b->leaf && b->n_tlog);
	if (!root || !b || !b->leaf || !b->n_tlog)
		goto out;
	t = b->tlog[0].integrated_time;
	CHECK_EQ_INT(ss_cert_verify(b->leaf, NULL, root, t, &issuer, &err), 0);
	for (size_t i = 0; i < root->n_cas; i++)
		root->cas[i].valid.end = t - 1;
	CHECK_EQ_INT(ss_cert_verify(b->leaf, NULL, root, t, &issuer, &err), -EKEYREJECTED);
	CHECK(has(&err,
	          "no certificate authority of the trusted root is valid at 2024-03-19T17:26:26Z"));
	for (size_t i = 0; i < root->n_cas; i++) {
		root->cas[i].valid.end = SS_TIME_OPEN_END;
		root->cas[i].valid.start = t + 1;
	}
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(ss_cert_verify(b->leaf, NULL, root, t, &issuer, &err), -EKEYREJECTED);
	/* the end is inclusive */
	for (size_t i = 0; i < root->n_cas; i++) {
		root->cas[i].valid.start = 0;
		root->cas[i].valid.end = t;
	}
	CHECK_EQ_INT(ss_cert_verify(b->leaf, NULL, root, t, &issuer, &err), 0);
out:
	ss_bundle_free(b);
	ss_root_free(root);
}

/* A leaf of another CA (staging) does not verify to the public-good root. */
static void test_corpus_wrong_ca(void)
{
	struct ss_root *root = root_of(NULL);
	struct mv_err err = {0};
	struct ss_bundle *b = bundle_of("rekor2-happy-path", &err);
	X509 *issuer;

	CHECK(root && b && b->leaf);
	if (root && b && b->leaf) {
		CHECK_EQ_INT(
		    ss_cert_verify(b->leaf, NULL, root, not_before(b->leaf), &issuer, &err),
		    -EKEYREJECTED);
		CHECK(has(&err, "unable to get local issuer certificate"));
	}
	ss_bundle_free(b);
	ss_root_free(root);
}

/* A bundle chain that holds a root certificate is refused. */
static void test_corpus_root_in_chain(void)
{
	struct mv_err err = {0};
	struct ss_bundle *b = bundle_of("bundle-with-root-cert_fail", &err);
	struct ss_root *root = root_of(NULL); /* the leaf is production's; the chain staging's */
	X509 *issuer;

	if (!b) {
		/* refused by the parser already: fine */
		printf("# parser: %s\n", err.msg);
		CHECK(err.code != 0);
		goto out;
	}
	CHECK(b->leaf && b->chain);
	if (!root || !b->leaf || !b->chain)
		goto out;
	CHECK_EQ_INT(ss_cert_verify(b->leaf, b->chain, root, not_before(b->leaf), &issuer, &err),
	             -EKEYREJECTED);
	CHECK(has(&err, "the bundle's chain holds a root certificate"));
	/* the same leaf without the bundle's chain verifies */
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(ss_cert_verify(b->leaf, NULL, root, not_before(b->leaf), &issuer, &err), 0);
	if (err.code)
		printf("# %s\n", err.msg);
out:
	ss_bundle_free(b);
	ss_root_free(root);
}

static void test_null_inputs(void)
{
	struct ss_root root = {0};
	struct mv_err err = {0};
	struct ss_identity id;
	X509 *issuer = (X509 *)&root;
	int64_t t;

	CHECK_EQ_INT(ss_cert_verify(NULL, NULL, &root, 0, &issuer, &err), -EBADMSG);
	CHECK(issuer == NULL);
	CHECK_EQ_INT(ss_sct_verify(NULL, NULL, &root, NOW, &err), -EBADMSG);
	CHECK_EQ_INT(ss_identity_get(NULL, &id, &err), -EBADMSG);
	CHECK_EQ_INT(ss_tsa_verify(NULL, 0, NULL, 0, &root, NOW, &t, &err), -EBADMSG);
	CHECK_EQ_INT(ss_asn1_time_get(NULL, &t), -EBADMSG);
}

static void test_time_helpers(void)
{
	char s[SS_TIME_STR];
	ASN1_TIME *a = ASN1_TIME_new();
	int64_t t = 0;

	ss_time_format(1710869186, s);
	CHECK_STR(s, "2024-03-19T17:26:26Z");
	ss_time_format(SS_TIME_OPEN_END, s);
	CHECK_STR(s, "open end");
	/* a GeneralizedTime with a fraction: the fraction is dropped */
	CHECK(a && ASN1_GENERALIZEDTIME_set_string(a, "20250612120220.999Z"));
	CHECK_EQ_INT(ss_asn1_time_get(a, &t), 0);
	CHECK_EQ_INT(t, 1749729740);
	CHECK(ASN1_UTCTIME_set_string(a, "230712155635Z"));
	CHECK_EQ_INT(ss_asn1_time_get(a, &t), 0);
	CHECK_EQ_INT(t, 1689177395);
	ASN1_TIME_free(a);
}

/* ---- tests: the leaf's usages, with the test PKI ----------------------- */

static void test_pki_good(void)
{
	struct pki p;
	struct mv_err err;

	pki_init(&p);
	CHECK_EQ_INT(leaf_try(&p, &good_leaf, T0, &err), 0);
	CHECK_EQ_INT(leaf_try(&p, &good_leaf, T0 + 300, &err), 0);
	CHECK_EQ_INT(leaf_try(&p, &good_leaf, T0 + 301, &err), -EKEYREJECTED);
	CHECK(has(&err, "not valid at"));
	pki_free(&p);
}

static void test_pki_eku(void)
{
	struct leaf_opts o = good_leaf;
	struct pki p;
	struct mv_err err;

	pki_init(&p);
	o.eku = "serverAuth,emailProtection";
	CHECK_EQ_INT(leaf_try(&p, &o, T0, &err), -EKEYREJECTED);
	CHECK(has(&err, "extended key usage lacks codeSigning"));
	o.eku = "anyExtendedKeyUsage";
	CHECK_EQ_INT(leaf_try(&p, &o, T0, &err), -EKEYREJECTED);
	o.eku = NULL;
	CHECK_EQ_INT(leaf_try(&p, &o, T0, &err), -EKEYREJECTED);
	CHECK(has(&err, "no extended key usage"));
	o.eku = "critical,codeSigning,serverAuth";
	CHECK_EQ_INT(leaf_try(&p, &o, T0, &err), 0);
	pki_free(&p);
}

static void test_pki_key_usage(void)
{
	struct leaf_opts o = good_leaf;
	struct pki p;
	struct mv_err err;

	pki_init(&p);
	o.ku = "critical,keyAgreement";
	CHECK_EQ_INT(leaf_try(&p, &o, T0, &err), -EKEYREJECTED);
	CHECK(has(&err, "key usage lacks digitalSignature"));
	o.ku = NULL;
	CHECK_EQ_INT(leaf_try(&p, &o, T0, &err), -EKEYREJECTED);
	CHECK(has(&err, "no key usage"));
	pki_free(&p);
}

/* A leaf that is itself a CA is refused. */
static void test_pki_ca_leaf(void)
{
	struct leaf_opts o = good_leaf;
	struct pki p;
	struct mv_err err;

	pki_init(&p);
	o.bc = "critical,CA:TRUE";
	o.cn = "a-ca"; /* else the chain check refuses a CA without a subject first */
	CHECK_EQ_INT(leaf_try(&p, &o, T0, &err), -EKEYREJECTED);
	CHECK(has(&err, "the leaf is a CA certificate"));
	o.ku = "critical,digitalSignature,keyCertSign";
	CHECK_EQ_INT(leaf_try(&p, &o, T0, &err), -EKEYREJECTED);
	CHECK(has(&err, "the leaf is a CA certificate"));
	o.ku = good_leaf.ku;
	o.bc = "critical,CA:FALSE";
	CHECK_EQ_INT(leaf_try(&p, &o, T0, &err), 0);
	pki_free(&p);
}

/* Unknown critical extensions: Fulcio's pass, any other is refused. */
static void test_pki_critical(void)
{
	struct leaf_opts o = good_leaf;
	struct pki p;
	struct mv_err err;

	pki_init(&p);
	o.crit_oid = "1.3.6.1.4.1.57264.1.99";
	CHECK_EQ_INT(leaf_try(&p, &o, T0, &err), 0);
	o.crit_oid = "1.3.6.1.4.1.99999.1";
	CHECK_EQ_INT(leaf_try(&p, &o, T0, &err), -EKEYREJECTED);
	CHECK(has(&err, "unhandled critical extension"));
	o.crit_oid = "1.3.6.1.4.1.57264.2";
	CHECK_EQ_INT(leaf_try(&p, &o, T0, &err), -EKEYREJECTED);
	pki_free(&p);
}

/* A CA certificate that has expired at the time fails, naming it. */
static void test_pki_chain_expired(void)
{
	struct leaf_opts o = good_leaf;
	struct pki p;
	struct mv_err err;

	pki_init(&p);
	o.not_after = T0 + 2 * 86400; /* outlives its CA */
	CHECK_EQ_INT(leaf_try(&p, &o, T0 + 86400, &err), 0);
	CHECK_EQ_INT(leaf_try(&p, &o, T0 + 86401, &err), -EKEYREJECTED);
	CHECK(has(&err, "certificate: chain certificate 1 (/CN=test-fulcio): not valid at "
	                "2023-11-15T22:13:21Z (notAfter 2023-11-15T22:13:20Z)"));
	pki_free(&p);
}

/* An intermediate given by the bundle: used, and its issuer reported. */
static void test_pki_intermediate(void)
{
	struct pki p;
	struct mv_err err = {0};
	EVP_PKEY *ik = EVP_EC_gen("P-256");
	X509 *inter, *leaf, *issuer = NULL;
	STACK_OF(X509) *extra = sk_X509_new_null();

	pki_init(&p);
	inter = cert_begin(ik, "test-intermediate", p.ca, T0 - 3600, T0 + 3600);
	ext_add(inter, p.ca, "basicConstraints", "critical,CA:TRUE,pathlen:0");
	ext_add(inter, p.ca, "keyUsage", "critical,keyCertSign");
	ext_add(inter, p.ca, "subjectKeyIdentifier", "hash");
	ext_add(inter, p.ca, "authorityKeyIdentifier", "keyid:always");
	cert_sign(inter, p.ca_key);
	leaf = cert_begin(p.leaf_key, NULL, inter, T0 - 300, T0 + 300);
	ext_add(leaf, inter, "keyUsage", "critical,digitalSignature");
	ext_add(leaf, inter, "extendedKeyUsage", "codeSigning");
	ext_add(leaf, inter, "authorityKeyIdentifier", "keyid:always");
	ext_add(leaf, inter, "subjectAltName", "critical,URI:https://example.com/ci");
	cert_sign(leaf, ik);
	sk_X509_push(extra, inter);
	CHECK_EQ_INT(ss_cert_verify(leaf, NULL, &p.root, T0, &issuer, &err), -EKEYREJECTED);
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(ss_cert_verify(leaf, extra, &p.root, T0, &issuer, &err), 0);
	CHECK(issuer == inter);
	/* the intermediate inside the root's CA instead, the CA's order */
	sk_X509_insert(p.ca_entry.certs, inter, 0);
	X509_up_ref(inter);
	CHECK_EQ_INT(ss_cert_verify(leaf, NULL, &p.root, T0, &issuer, &err), 0);
	CHECK(issuer == inter);
	/* the intermediate expired at the time: named in the message */
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(ss_cert_verify(leaf, NULL, &p.root, T0 + 3601, &issuer, &err), -EKEYREJECTED);
	CHECK(has(&err, "not valid at"));
	X509_free(leaf);
	sk_X509_pop_free(extra, X509_free);
	EVP_PKEY_free(ik);
	pki_free(&p);
}

/* ---- tests: SCTs -------------------------------------------------------- */

/* SCTs with a non-empty extensions field verify (Static CT). */
static void test_sct_extensions(void)
{
	struct ss_root *root = root_of("bundle-with-sct-with-extensions");
	struct mv_err err = {0};
	struct ss_bundle *b = bundle_of("bundle-with-sct-with-extensions", &err);
	X509 *issuer = NULL;

	CHECK(root && b && b->leaf);
	if (root && b && b->leaf) {
		CHECK_EQ_INT(
		    ss_cert_verify(b->leaf, NULL, root, not_before(b->leaf), &issuer, &err), 0);
		CHECK_EQ_INT(ss_sct_verify(b->leaf, issuer, root, NOW, &err), 0);
		if (err.code)
			printf("# %s\n", err.msg);
	}
	ss_bundle_free(b);
	ss_root_free(root);
}

/* invalid-ct-key_fail: the SCT's log is not in the root; also a root without CT logs. */
static void test_sct_unknown_log(void)
{
	struct ss_root *root = root_of("invalid-ct-key_fail"), *pg = root_of(NULL);
	struct mv_err err = {0};
	struct ss_bundle *b = bundle_of("invalid-ct-key_fail", &err);
	X509 *issuer = NULL;
	size_t n;

	CHECK(root && pg && b && b->leaf && b->n_tlog);
	if (!root || !pg || !b || !b->leaf || !b->n_tlog)
		goto out;
	CHECK_EQ_INT(
	    ss_cert_verify(b->leaf, b->chain, root, b->tlog[0].integrated_time, &issuer, &err), 0);
	CHECK_EQ_INT(ss_sct_verify(b->leaf, issuer, root, NOW, &err), -EKEYREJECTED);
	CHECK(has(&err, "SCT: no SCT by a CT log of the trusted root"));
	/* the same leaf against the public-good root verifies, and not without its CT logs */
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(ss_sct_verify(b->leaf, issuer, pg, NOW, &err), 0);
	n = pg->n_ctlogs;
	pg->n_ctlogs = 0;
	CHECK_EQ_INT(ss_sct_verify(b->leaf, issuer, pg, NOW, &err), -EKEYREJECTED);
	pg->n_ctlogs = n;
out:
	ss_bundle_free(b);
	ss_root_free(root);
	ss_root_free(pg);
}

/* An SCT whose time lies outside its CT log's window; a wrong issuer key. */
static void test_sct_window_and_issuer(void)
{
	struct ss_root *root = root_of(NULL);
	struct mv_err err = {0};
	struct ss_bundle *b = bundle_of("happy-path-v0.3", &err);
	X509 *issuer = NULL, *other;
	int64_t t;

	CHECK(root && b && b->leaf && b->n_tlog);
	if (!root || !b || !b->leaf || !b->n_tlog)
		goto out;
	t = b->tlog[0].integrated_time;
	CHECK_EQ_INT(ss_cert_verify(b->leaf, NULL, root, t, &issuer, &err), 0);
	for (size_t i = 0; i < root->n_ctlogs; i++)
		root->ctlogs[i].valid.end = t - 60;
	CHECK_EQ_INT(ss_sct_verify(b->leaf, issuer, root, NOW, &err), -EKEYREJECTED);
	CHECK(has(&err, "outside the validity of CT log https://ctfe.sigstore.dev/2022"));
	for (size_t i = 0; i < root->n_ctlogs; i++)
		root->ctlogs[i].valid.end = SS_TIME_OPEN_END;
	/* the issuer key hash is part of the signed data: another issuer fails */
	other = sk_X509_value(root->cas[0].certs, 0);
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(ss_sct_verify(b->leaf, other, root, NOW, &err), -EKEYREJECTED);
	CHECK(has(&err, "does not verify"));
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(ss_sct_verify(b->leaf, issuer, root, NOW, &err), 0);
out:
	ss_bundle_free(b);
	ss_root_free(root);
}

/* The first embedded SCT's time of @leaf, in seconds; 0 if none. */
static int64_t sct_time(X509 *leaf)
{
	STACK_OF(SCT) *scts = X509_get_ext_d2i(leaf, NID_ct_precert_scts, NULL, NULL);
	int64_t t = 0;

	if (scts && sk_SCT_num(scts) > 0)
		t = (int64_t)(SCT_get_timestamp(sk_SCT_value(scts, 0)) / 1000);
	SCT_LIST_free(scts);
	return t;
}

/* An SCT later than the current time by more than SS_CLOCK_SKEW is refused. */
static void test_sct_future(void)
{
	struct ss_root *root = root_of(NULL);
	struct mv_err err = {0};
	struct ss_bundle *b = bundle_of("happy-path-v0.3", &err);
	X509 *issuer = NULL;
	int64_t when;

	CHECK(root && b && b->leaf && b->n_tlog);
	if (!root || !b || !b->leaf || !b->n_tlog)
		goto out;
	when = sct_time(b->leaf);
	CHECK(when > 0);
	CHECK_EQ_INT(ss_cert_verify(b->leaf, NULL, root, b->tlog[0].integrated_time, &issuer, &err),
	             0);
	CHECK_EQ_INT(ss_sct_verify(b->leaf, issuer, root, when - SS_CLOCK_SKEW, &err), 0);
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(ss_sct_verify(b->leaf, issuer, root, when - SS_CLOCK_SKEW - 1, &err),
	             -EKEYREJECTED);
	CHECK(has(&err, "SCT: time "));
	CHECK(has(&err, " is after the current time "));
	CHECK(strchr(err.msg, '\n') == NULL);
out:
	ss_bundle_free(b);
	ss_root_free(root);
}

/* A certificate without SCTs (the test PKI's) is refused. */
static void test_sct_none(void)
{
	struct pki p;
	struct mv_err err = {0};
	X509 *leaf;

	pki_init(&p);
	leaf = leaf_make(&p, &good_leaf);
	CHECK_EQ_INT(ss_sct_verify(leaf, p.ca, &p.root, NOW, &err), -EKEYREJECTED);
	CHECK(has(&err, "embeds none"));
	X509_free(leaf);
	pki_free(&p);
}

/* ---- tests: identity ---------------------------------------------------- */

static int identity_of(struct pki *p, const struct leaf_opts *o, struct ss_identity *id,
                       struct mv_err *err)
{
	X509 *leaf = leaf_make(p, o);
	int ret;

	memset(err, 0, sizeof(*err));
	ret = ss_identity_get(leaf, id, err);
	X509_free(leaf);
	return ret;
}

static void test_identity(void)
{
	struct leaf_opts o = good_leaf;
	struct ss_identity id;
	struct mv_err err;
	struct pki p;

	pki_init(&p);
	CHECK_EQ_INT(identity_of(&p, &o, &id, &err), 0);
	CHECK_STR(id.san, "alice@example.com");
	CHECK_STR(id.issuer, "https://accounts.example.com");
	/* the issuer extensions disagree */
	o.issuer_v1 = "https://evil.example.com";
	CHECK_EQ_INT(identity_of(&p, &o, &id, &err), -EKEYREJECTED);
	CHECK(has(&err, "issuer extensions disagree"));
	CHECK_STR(id.san, "");
	/* either alone */
	o.issuer_v2 = NULL;
	CHECK_EQ_INT(identity_of(&p, &o, &id, &err), 0);
	CHECK_STR(id.issuer, "https://evil.example.com");
	o.issuer_v1 = NULL;
	o.issuer_v2 = "https://v2.example.com";
	CHECK_EQ_INT(identity_of(&p, &o, &id, &err), 0);
	CHECK_STR(id.issuer, "https://v2.example.com");
	/* neither */
	o.issuer_v2 = NULL;
	CHECK_EQ_INT(identity_of(&p, &o, &id, &err), -EBADMSG);
	CHECK(has(&err, "no OIDC issuer"));
	pki_free(&p);
}

static void test_identity_san(void)
{
	struct leaf_opts o = good_leaf;
	struct ss_identity id;
	struct mv_err err;
	struct pki p;

	pki_init(&p);
	o.san = "critical,URI:https://github.com/org/repo/.github/workflows/x.yml@refs/heads/main";
	CHECK_EQ_INT(identity_of(&p, &o, &id, &err), 0);
	CHECK_STR(id.san, "https://github.com/org/repo/.github/workflows/x.yml@refs/heads/main");
	o.san = "critical,otherName:1.3.6.1.4.1.57264.1.7;UTF8:bob!example.com";
	CHECK_EQ_INT(identity_of(&p, &o, &id, &err), 0);
	CHECK_STR(id.san, "bob!example.com");
	/* another otherName, a DNS name: not identities */
	o.san = "critical,otherName:1.3.6.1.4.1.99999.7;UTF8:mallory,DNS:example.com";
	CHECK_EQ_INT(identity_of(&p, &o, &id, &err), -EBADMSG);
	/* two identities are ambiguous */
	o.san = "critical,email:a@example.com,email:b@example.com";
	CHECK_EQ_INT(identity_of(&p, &o, &id, &err), -EKEYREJECTED);
	o.san = NULL;
	CHECK_EQ_INT(identity_of(&p, &o, &id, &err), -EBADMSG);
	CHECK(has(&err, "no subject alternative name"));
	pki_free(&p);
}

/* A malformed 1.8 extension (not a UTF8String) is refused. */
static void test_identity_malformed(void)
{
	struct leaf_opts o = good_leaf;
	struct ss_identity id;
	struct mv_err err = {0};
	struct pki p;
	X509 *leaf;

	pki_init(&p);
	o.issuer_v2 = NULL;
	leaf = leaf_make(&p, &o);
	ext_raw(leaf, "1.3.6.1.4.1.57264.1.8", false, "https://raw.example.com", 23);
	CHECK_EQ_INT(ss_identity_get(leaf, &id, &err), -EBADMSG);
	CHECK(has(&err, "1.3.6.1.4.1.57264.1.8"));
	X509_free(leaf);
	pki_free(&p);
}

/* ---- tests: RFC 3161 timestamps ---------------------------------------- */

/*
 * Decodes base64 member @key of @obj, dropping line breaks (the base64(1)
 * of one case wraps its lines, which other clients' decoders skip).
 */
static int b64_member(const cJSON *obj, const char *key, uint8_t **out, size_t *len)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	char *s, *d;
	int ret;

	if (!cJSON_IsString(v) || !(s = strdup(v->valuestring)))
		return -EBADMSG;
	d = s;
	for (const char *p = s; *p; p++)
		if (*p != '\n' && *p != '\r')
			*d++ = *p;
	*d = '\0';
	ret = mv_base64_decode(s, strlen(s), out, len);
	free(s);
	return ret;
}

/* The first RFC 3161 timestamp and the signature of case @name, read without the parser. */
static int tsa_raw(const char *name, uint8_t **ts, size_t *ts_len, uint8_t **sig, size_t *sig_len)
{
	char rel[512], *json = NULL;
	cJSON *top = NULL;
	const cJSON *vm, *tvd, *arr, *sigs;
	size_t len = 0;
	int ret = -EBADMSG;

	*ts = *sig = NULL;
	snprintf(rel, sizeof(rel), "bundle-verify/%s/bundle.sigstore.json", name);
	if (mv_read_file(sig_path(rel), SS_MAX_JSON, &json, &len, NULL) ||
	    !(top = cJSON_ParseWithLength(json, len)))
		goto out;
	vm = cJSON_GetObjectItemCaseSensitive(top, "verificationMaterial");
	tvd = cJSON_GetObjectItemCaseSensitive(vm, "timestampVerificationData");
	arr = cJSON_GetObjectItemCaseSensitive(tvd, "rfc3161Timestamps");
	if (b64_member(cJSON_GetArrayItem(arr, 0), "signedTimestamp", ts, ts_len))
		goto out;
	if (cJSON_HasObjectItem(top, "messageSignature"))
		ret = b64_member(cJSON_GetObjectItemCaseSensitive(top, "messageSignature"),
		                 "signature", sig, sig_len);
	else {
		sigs = cJSON_GetObjectItemCaseSensitive(
		    cJSON_GetObjectItemCaseSensitive(top, "dsseEnvelope"), "signatures");
		ret = b64_member(cJSON_GetArrayItem(sigs, 0), "sig", sig, sig_len);
	}
out:
	cJSON_Delete(top);
	free(json);
	return ret;
}

/* ss_tsa_verify() of the first timestamp of case @name against @root (its own when NULL). */
static int tsa_case(const char *name, struct ss_root *root, int64_t *t, struct mv_err *err)
{
	struct ss_root *own = root ? NULL : root_of(name);
	uint8_t *ts = NULL, *sig = NULL;
	size_t ts_len = 0, sig_len = 0;
	int ret = -ENOENT;

	memset(err, 0, sizeof(*err));
	if (tsa_raw(name, &ts, &ts_len, &sig, &sig_len) == 0 && (root || own))
		ret = ss_tsa_verify(ts, ts_len, sig, sig_len, root ? root : own, NOW, t, err);
	else
		printf("# %s: no timestamp, signature or root\n", name);
	free(ts);
	free(sig);
	ss_root_free(own);
	return ret;
}

static void test_tsa_good(void)
{
	static const struct {
		const char *name;
		int64_t time;
	} cases[] = {
	    {"rekor2-happy-path", 1749729740},
	    {"rekor2-timestamp-with-embedded-cert", 1754506296},
	    {"rekor2-timestamp-without-embedded-cert", 1754507031},
	    {"rekor2-timestamp-with-expired-cert-chain", 1754580746},
	    {"trust-root-tsa-validity-end-inclusive", 1749729740},
	    {"intoto-with-custom-trust-root", 1675209600},
	    /* the timestamp itself is fine; the certificate is not valid at its time */
	    {"rekor2-timestamp-with-incorrect-time_fail", 1752575611},
	    {"bundle-with-sct-with-extensions", 1768517366},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mv_err err;
		int64_t t = 0;

		CHECK_EQ_INT(tsa_case(cases[i].name, NULL, &t, &err), 0);
		CHECK_EQ_INT(t, cases[i].time);
		if (err.code)
			printf("# %s: %s\n", cases[i].name, err.msg);
	}
}

static void test_tsa_bad(void)
{
	static const struct {
		const char *name, *msg;
	} cases[] = {
	    {"rekor2-timestamp-outside-trust-root-tsa-validity_fail",
	     "outside the validity of TSA"},
	    {"rekor2-timestamp-outside-tsa-cert-validity_fail", "certificate has expired"},
	    {"rekor2-timestamp-payload-mismatch_fail", "message imprint is not the hash"},
	    {"rekor2-timestamp-untrusted-tsa-with-embedded-cert_fail", "does not verify to TSA"},
	    {"rekor2-timestamp-untrusted-tsa-without-embedded-cert_fail", "does not verify to TSA"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mv_err err;
		int64_t t = 0;

		CHECK_EQ_INT(tsa_case(cases[i].name, NULL, &t, &err), -EKEYREJECTED);
		CHECK(has(&err, cases[i].msg));
		printf("# %s: %s\n", cases[i].name, err.msg);
	}
}

/* The TSA window: end inclusive, one second less fails; start likewise. */
static void test_tsa_window(void)
{
	struct ss_root *root = root_of("rekor2-happy-path");
	struct mv_err err;
	int64_t t = 0, gen = 1749729740;

	CHECK(root && root->n_tsas == 1);
	if (!root || root->n_tsas != 1)
		goto out;
	root->tsas[0].valid.end = gen;
	CHECK_EQ_INT(tsa_case("rekor2-happy-path", root, &t, &err), 0);
	root->tsas[0].valid.end = gen - 1;
	CHECK_EQ_INT(tsa_case("rekor2-happy-path", root, &t, &err), -EKEYREJECTED);
	CHECK(has(&err, "timestamp: time 2025-06-12T12:02:20Z outside the validity of TSA"));
	root->tsas[0].valid.end = SS_TIME_OPEN_END;
	root->tsas[0].valid.start = gen + 1;
	CHECK_EQ_INT(tsa_case("rekor2-happy-path", root, &t, &err), -EKEYREJECTED);
	root->tsas[0].valid.start = gen;
	CHECK_EQ_INT(tsa_case("rekor2-happy-path", root, &t, &err), 0);
out:
	ss_root_free(root);
}

/* A genTime later than the current time by more than SS_CLOCK_SKEW is refused. */
static void test_tsa_future(void)
{
	struct ss_root *root = root_of("rekor2-happy-path");
	uint8_t *ts = NULL, *sig = NULL;
	size_t ts_len = 0, sig_len = 0;
	int64_t t = 0, gen = 1749729740;
	struct mv_err err = {0};

	CHECK(root != NULL);
	CHECK_EQ_INT(tsa_raw("rekor2-happy-path", &ts, &ts_len, &sig, &sig_len), 0);
	if (!root || !ts || !sig)
		goto out;
	CHECK_EQ_INT(ss_tsa_verify(ts, ts_len, sig, sig_len, root, gen - SS_CLOCK_SKEW, &t, &err),
	             0);
	CHECK_EQ_INT(t, gen);
	t = 0;
	CHECK_EQ_INT(
	    ss_tsa_verify(ts, ts_len, sig, sig_len, root, gen - SS_CLOCK_SKEW - 1, &t, &err),
	    -EKEYREJECTED);
	CHECK_EQ_INT(t, 0);
	CHECK_STR(err.msg, "timestamp: time 2025-06-12T12:02:20Z is after the current time "
	                   "2025-06-12T12:01:19Z");
out:
	free(ts);
	free(sig);
	ss_root_free(root);
}

/* The imprint: another signature, a signature one byte short. */
static void test_tsa_imprint(void)
{
	struct ss_root *root = root_of("rekor2-happy-path");
	struct mv_err err = {0};
	struct ss_bundle *b = bundle_of("rekor2-happy-path", &err);
	int64_t t = 0;

	CHECK(root && b && b->n_tsa && b->sig_len > 1);
	if (!root || !b || !b->n_tsa || b->sig_len < 2)
		goto out;
	CHECK_EQ_INT(
	    ss_tsa_verify(b->tsa[0], b->tsa_len[0], b->sig, b->sig_len - 1, root, NOW, &t, &err),
	    -EKEYREJECTED);
	CHECK(has(&err, "message imprint"));
	b->sig[0] ^= 1;
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(
	    ss_tsa_verify(b->tsa[0], b->tsa_len[0], b->sig, b->sig_len, root, NOW, &t, &err),
	    -EKEYREJECTED);
	b->sig[0] ^= 1;
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(
	    ss_tsa_verify(b->tsa[0], b->tsa_len[0], b->sig, b->sig_len, root, NOW, &t, &err), 0);
out:
	ss_bundle_free(b);
	ss_root_free(root);
}

/* Another TSA's root; the TSA's leaf pinned; a root with no TSA; garbage. */
static void test_tsa_trust(void)
{
	struct ss_root *root = root_of("rekor2-happy-path");
	struct ss_root *pg = root_of(NULL); /* the production TSA, not staging */
	struct mv_err err = {0};
	struct ss_bundle *b = bundle_of("rekor2-happy-path", &err);
	uint8_t junk[64] = {0x30, 0x03, 0x02, 0x01, 0x00};
	int64_t t = 0;
	size_t n;
	X509 *leaf;

	CHECK(root && pg && b && b->n_tsa);
	if (!root || !pg || !b || !b->n_tsa)
		goto out;
	CHECK_EQ_INT(ss_tsa_verify(b->tsa[0], b->tsa_len[0], b->sig, b->sig_len, pg, NOW, &t, &err),
	             -EKEYREJECTED);
	CHECK(has(&err, "does not verify to TSA"));
	/* the TSA's listed leaf must be the signer: list another leaf first */
	leaf = sk_X509_value(pg->tsas[0].certs, 0);
	X509_up_ref(leaf);
	sk_X509_unshift(root->tsas[0].certs, leaf);
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(
	    ss_tsa_verify(b->tsa[0], b->tsa_len[0], b->sig, b->sig_len, root, NOW, &t, &err),
	    -EKEYREJECTED);
	CHECK(has(&err, "not signed by the certificate of TSA"));
	X509_free(sk_X509_shift(root->tsas[0].certs));
	n = root->n_tsas;
	root->n_tsas = 0;
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(
	    ss_tsa_verify(b->tsa[0], b->tsa_len[0], b->sig, b->sig_len, root, NOW, &t, &err),
	    -EKEYREJECTED);
	CHECK(has(&err, "no timestamp authority"));
	root->n_tsas = n;
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(ss_tsa_verify(junk, sizeof(junk), b->sig, b->sig_len, root, NOW, &t, &err),
	             -EBADMSG);
	CHECK_EQ_INT(
	    ss_tsa_verify(b->tsa[0], b->tsa_len[0] - 1, b->sig, b->sig_len, root, NOW, &t, &err),
	    -EBADMSG);
out:
	ss_bundle_free(b);
	ss_root_free(root);
	ss_root_free(pg);
}

/* A bare TimeStampToken (no TimeStampResp around it) verifies too. */
static void test_tsa_bare_token(void)
{
	struct ss_root *root = root_of("rekor2-happy-path");
	struct mv_err err = {0};
	struct ss_bundle *b = bundle_of("rekor2-happy-path", &err);
	const unsigned char *p;
	unsigned char *der = NULL;
	TS_RESP *resp = NULL;
	int64_t t = 0;
	int len;

	CHECK(root && b && b->n_tsa);
	if (!root || !b || !b->n_tsa)
		goto out;
	p = b->tsa[0];
	resp = d2i_TS_RESP(NULL, &p, (long)b->tsa_len[0]);
	len = resp ? i2d_PKCS7(TS_RESP_get_token(resp), &der) : -1;
	CHECK(len > 0);
	if (len > 0)
		CHECK_EQ_INT(
		    ss_tsa_verify(der, (size_t)len, b->sig, b->sig_len, root, NOW, &t, &err), 0);
	CHECK_EQ_INT(t, 1749729740);
out:
	OPENSSL_free(der);
	TS_RESP_free(resp);
	ss_bundle_free(b);
	ss_root_free(root);
}

/* ---- tests: a generated timestamp authority ---------------------------- */

/* A TSA: root, intermediate, timestamping leaf; and a root listing them. */
struct tsa_pki {
	EVP_PKEY *root_key, *inter_key, *leaf_key;
	X509 *root, *inter, *leaf;
	struct ss_ca tsa;
	struct ss_root trust;
};

/* @inter_eku: the intermediate's extended key usage, or NULL for none. */
static void tsa_pki_init(struct tsa_pki *p, const char *inter_eku)
{
	memset(p, 0, sizeof(*p));
	p->root_key = EVP_EC_gen("P-256");
	p->inter_key = EVP_EC_gen("P-256");
	p->leaf_key = EVP_EC_gen("P-256");
	p->root = cert_begin(p->root_key, "test-tsa-root", NULL, T0 - 86400, T0 + 86400);
	ext_add(p->root, NULL, "basicConstraints", "critical,CA:TRUE");
	ext_add(p->root, NULL, "keyUsage", "critical,keyCertSign,cRLSign");
	ext_add(p->root, NULL, "subjectKeyIdentifier", "hash");
	cert_sign(p->root, p->root_key);
	p->inter = cert_begin(p->inter_key, "test-tsa-intermediate", p->root, T0 - 3600, T0 + 3600);
	ext_add(p->inter, p->root, "basicConstraints", "critical,CA:TRUE,pathlen:0");
	ext_add(p->inter, p->root, "keyUsage", "critical,keyCertSign");
	if (inter_eku)
		ext_add(p->inter, p->root, "extendedKeyUsage", inter_eku);
	ext_add(p->inter, p->root, "subjectKeyIdentifier", "hash");
	ext_add(p->inter, p->root, "authorityKeyIdentifier", "keyid:always");
	cert_sign(p->inter, p->root_key);
	p->leaf = cert_begin(p->leaf_key, "test-tsa", p->inter, T0 - 600, T0 + 600);
	ext_add(p->leaf, p->inter, "keyUsage", "critical,digitalSignature");
	ext_add(p->leaf, p->inter, "extendedKeyUsage", "critical,timeStamping");
	ext_add(p->leaf, p->inter, "subjectKeyIdentifier", "hash");
	ext_add(p->leaf, p->inter, "authorityKeyIdentifier", "keyid:always");
	cert_sign(p->leaf, p->inter_key);
	p->tsa.certs = sk_X509_new_null();
	sk_X509_push(p->tsa.certs, p->leaf);
	sk_X509_push(p->tsa.certs, p->inter);
	sk_X509_push(p->tsa.certs, p->root);
	p->tsa.valid.start = T0 - 86400;
	p->tsa.valid.end = SS_TIME_OPEN_END;
	p->trust.tsas = &p->tsa;
	p->trust.n_tsas = 1;
}

static void tsa_pki_free(struct tsa_pki *p)
{
	sk_X509_pop_free(p->tsa.certs, X509_free);
	EVP_PKEY_free(p->root_key);
	EVP_PKEY_free(p->inter_key);
	EVP_PKEY_free(p->leaf_key);
}

static int fixed_time(struct TS_resp_ctx *ctx, void *data, long *sec, long *usec)
{
	*sec = (long)*(int64_t *)data;
	*usec = 0;
	return 1;
}

/*
 * A TimeStampResp by @p's leaf at time @t over SHA-256(@sig), embedding
 * the signer (and the intermediate) when @embed. *@der: OPENSSL_free().
 */
static int tsa_stamp(struct tsa_pki *p, int64_t t, bool embed, const uint8_t *sig, size_t sig_len,
                     uint8_t **der)
{
	unsigned char md[32];
	TS_REQ *req = TS_REQ_new();
	TS_MSG_IMPRINT *mi = TS_MSG_IMPRINT_new();
	X509_ALGOR *alg = X509_ALGOR_new();
	ASN1_OBJECT *policy = OBJ_txt2obj("1.3.6.1.4.1.57264.2", 1);
	TS_RESP_CTX *ctx = TS_RESP_CTX_new();
	STACK_OF(X509) *chain = sk_X509_new_null();
	BIO *bio = BIO_new(BIO_s_mem());
	TS_RESP *resp = NULL;
	int len = -1;

	*der = NULL;
	if (!req || !mi || !alg || !policy || !ctx || !chain || !bio)
		goto out;
	EVP_Digest(sig, sig_len, md, NULL, EVP_sha256(), NULL);
	X509_ALGOR_set0(alg, OBJ_nid2obj(NID_sha256), V_ASN1_NULL, NULL);
	TS_MSG_IMPRINT_set_algo(mi, alg);
	TS_MSG_IMPRINT_set_msg(mi, md, sizeof(md));
	TS_REQ_set_version(req, 1);
	TS_REQ_set_msg_imprint(req, mi);
	TS_REQ_set_cert_req(req, embed);
	i2d_TS_REQ_bio(bio, req);
	sk_X509_push(chain, p->inter);
	TS_RESP_CTX_set_signer_cert(ctx, p->leaf);
	TS_RESP_CTX_set_signer_key(ctx, p->leaf_key);
	TS_RESP_CTX_set_certs(ctx, chain);
	TS_RESP_CTX_set_def_policy(ctx, policy);
	TS_RESP_CTX_add_md(ctx, EVP_sha256());
	TS_RESP_CTX_set_time_cb(ctx, fixed_time, &t);
	resp = TS_RESP_create_response(ctx, bio);
	len = resp ? i2d_TS_RESP(resp, der) : -1;
out:
	TS_RESP_free(resp);
	BIO_free(bio);
	sk_X509_free(chain);
	TS_RESP_CTX_free(ctx);
	ASN1_OBJECT_free(policy);
	X509_ALGOR_free(alg);
	TS_MSG_IMPRINT_free(mi);
	TS_REQ_free(req);
	CHECK(len > 0);
	return len;
}

static void test_tsa_generated(void)
{
	static const uint8_t sig[] = "a signature";
	struct tsa_pki p;
	struct mv_err err = {0};
	uint8_t *der = NULL;
	int64_t t = 0;
	int len;

	tsa_pki_init(&p, "timeStamping");
	len = tsa_stamp(&p, T0, true, sig, sizeof(sig), &der);
	CHECK_EQ_INT(ss_tsa_verify(der, (size_t)len, sig, sizeof(sig), &p.trust, NOW, &t, &err), 0);
	CHECK_EQ_INT(t, T0);
	OPENSSL_free(der);
	/* no certificate embedded: the root's list is enough */
	len = tsa_stamp(&p, T0, false, sig, sizeof(sig), &der);
	CHECK_EQ_INT(ss_tsa_verify(der, (size_t)len, sig, sizeof(sig), &p.trust, NOW, &t, &err), 0);
	OPENSSL_free(der);
	/* the leaf's end is inclusive; a second later the chain fails at the token's time */
	len = tsa_stamp(&p, T0 + 600, false, sig, sizeof(sig), &der);
	CHECK_EQ_INT(ss_tsa_verify(der, (size_t)len, sig, sizeof(sig), &p.trust, NOW, &t, &err), 0);
	OPENSSL_free(der);
	len = tsa_stamp(&p, T0 + 601, true, sig, sizeof(sig), &der);
	CHECK_EQ_INT(ss_tsa_verify(der, (size_t)len, sig, sizeof(sig), &p.trust, NOW, &t, &err),
	             -EKEYREJECTED);
	CHECK(has(&err, "certificate has expired"));
	OPENSSL_free(der);
	tsa_pki_free(&p);
}

/* EKU chaining: an intermediate of the TSA must allow timeStamping. */
static void test_tsa_intermediate_eku(void)
{
	static const uint8_t sig[] = "a signature";
	struct tsa_pki p;
	struct mv_err err = {0};
	uint8_t *der = NULL;
	int64_t t = 0;
	int len;

	tsa_pki_init(&p, "codeSigning");
	len = tsa_stamp(&p, T0, true, sig, sizeof(sig), &der);
	CHECK_EQ_INT(ss_tsa_verify(der, (size_t)len, sig, sizeof(sig), &p.trust, NOW, &t, &err),
	             -EKEYREJECTED);
	CHECK(has(&err, "lacks the timeStamping extended key usage"));
	OPENSSL_free(der);
	tsa_pki_free(&p);
	tsa_pki_init(&p, NULL);
	memset(&err, 0, sizeof(err));
	len = tsa_stamp(&p, T0, true, sig, sizeof(sig), &der);
	CHECK_EQ_INT(ss_tsa_verify(der, (size_t)len, sig, sizeof(sig), &p.trust, NOW, &t, &err),
	             -EKEYREJECTED);
	OPENSSL_free(der);
	tsa_pki_free(&p);
}

/* ---- the corpus cases, end to end for this file's checks --------------- */

/*
 * Runs this file's checks on case @name: each verified time (tlog
 * integrated times as given, RFC 3161 timestamps), then the certificate,
 * its SCT and identity at each. Returns 0 or the first failure.
 */
static int case_run(const char *name, struct mv_err *err)
{
	struct ss_root *root = root_of(name);
	struct ss_bundle *b = bundle_of(name, err);
	int64_t times[2 * SS_MAX_ENTRIES];
	size_t n = 0;
	char want_id[1024], want_iss[1024];
	struct ss_identity id;
	X509 *issuer = NULL;
	int ret = -EBADMSG;

	if (!b || !root)
		goto out;
	for (size_t i = 0; i < b->n_tlog; i++)
		if (b->tlog[i].integrated_time)
			times[n++] = b->tlog[i].integrated_time;
	for (size_t i = 0; i < b->n_tsa; i++) {
		ret = ss_tsa_verify(b->tsa[i], b->tsa_len[i], b->sig, b->sig_len, root, NOW,
		                    &times[n++], err);
		if (ret)
			goto out;
	}
	ret = n ? 0 : mv_err_set(err, -EKEYREJECTED, "no verified time");
	for (size_t i = 0; ret == 0 && i < n; i++)
		ret = ss_cert_verify(b->leaf, b->chain, root, times[i], &issuer, err);
	if (ret == 0)
		ret = ss_sct_verify(b->leaf, issuer, root, NOW, err);
	if (ret == 0)
		ret = ss_identity_get(b->leaf, &id, err);
	case_text(name, "identity", BEACON_ID, want_id, sizeof(want_id));
	case_text(name, "issuer", GHA_ISSUER, want_iss, sizeof(want_iss));
	if (ret == 0 && (strcmp(id.san, want_id) || strcmp(id.issuer, want_iss)))
		ret = mv_err_set(err, -EKEYREJECTED, "identity: %s / %s not expected", id.san,
		                 id.issuer);
out:
	ss_bundle_free(b);
	ss_root_free(root);
	return ret;
}

static void test_corpus_cases(void)
{
	static const char *const cases[] = {
	    "happy-path-v0.1",
	    "happy-path-v0.2",
	    "happy-path-v0.3",
	    "happy-path-v0.3-new-mediaType",
	    "happy-path-intoto-in-dsse-v3",
	    "bundle-with-sct-with-extensions",
	    "intoto-with-custom-trust-root",
	    "rekor2-happy-path",
	    "rekor2-timestamp-with-embedded-cert",
	    "rekor2-timestamp-without-embedded-cert",
	    "rekor2-timestamp-with-expired-cert-chain",
	    "trust-root-tsa-validity-end-inclusive",
	    "trust-root-tlog-validity-end-inclusive",
	    "rekor2-dsse-happy-path",
	    "invalid-ct-key_fail",
	    "intoto-expired-certificate_fail",
	    "intoto-set-outside-signing-cert-validity_fail",
	    "intoto-tsa-timestamp-outside-cert-validity_fail",
	    "bundle-with-root-cert_fail",
	    "bundle-empty-certificate-chain_fail",
	    "bundle-from-wrong-instance_fail",
	    "integrated-time-in-future_fail",
	    "rekor2-timestamp-outside-trust-root-tsa-validity_fail",
	    "rekor2-timestamp-outside-tsa-cert-validity_fail",
	    "rekor2-timestamp-payload-mismatch_fail",
	    "rekor2-timestamp-untrusted-tsa-with-embedded-cert_fail",
	    "rekor2-timestamp-untrusted-tsa-without-embedded-cert_fail",
	    "rekor2-timestamp-with-incorrect-time_fail",
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mv_err err = {0};
		bool want_fail = strstr(cases[i], "_fail") != NULL;
		int ret = case_run(cases[i], &err);

		printf("# %-56s %s\n", cases[i], ret ? err.msg : "ok");
		CHECK_EQ_INT(ret != 0, want_fail);
	}
}

int main(void)
{
	shared = getenv("MODELFS_SHARED");
	if (!shared) {
		printf("1..0 # SKIP MODELFS_SHARED is not set\n");
		return 0;
	}
	TAP_RUN(test_time_helpers);
	TAP_RUN(test_null_inputs);
	TAP_RUN(test_corpus_happy);
	TAP_RUN(test_corpus_validity);
	TAP_RUN(test_corpus_ca_window);
	TAP_RUN(test_corpus_wrong_ca);
	TAP_RUN(test_corpus_root_in_chain);
	TAP_RUN(test_pki_good);
	TAP_RUN(test_pki_eku);
	TAP_RUN(test_pki_key_usage);
	TAP_RUN(test_pki_ca_leaf);
	TAP_RUN(test_pki_critical);
	TAP_RUN(test_pki_chain_expired);
	TAP_RUN(test_pki_intermediate);
	TAP_RUN(test_sct_extensions);
	TAP_RUN(test_sct_unknown_log);
	TAP_RUN(test_sct_window_and_issuer);
	TAP_RUN(test_sct_future);
	TAP_RUN(test_sct_none);
	TAP_RUN(test_identity);
	TAP_RUN(test_identity_san);
	TAP_RUN(test_identity_malformed);
	TAP_RUN(test_tsa_good);
	TAP_RUN(test_tsa_bad);
	TAP_RUN(test_tsa_window);
	TAP_RUN(test_tsa_future);
	TAP_RUN(test_tsa_imprint);
	TAP_RUN(test_tsa_trust);
	TAP_RUN(test_tsa_bare_token);
	TAP_RUN(test_tsa_generated);
	TAP_RUN(test_tsa_intermediate_eku);
	TAP_RUN(test_corpus_cases);
	TAP_DONE();
}
