// SPDX-License-Identifier: Apache-2.0
/*
 * ss_x509.c - the Fulcio certificate of a Sigstore bundle: its chain to a
 * certificate authority of the trusted root at a verified time, its key
 * usages, its embedded SCTs (RFC 6962 §3.2) and the identity it carries
 * (Fulcio's docs/oid-info.md). Also the store and time helpers that the
 * timestamp check (ss_tsa.c) shares. See sigstore_int.h.
 *
 * OpenSSL 3.0 has no public way to fill a CTLOG_STORE from memory, so the
 * SCT's signed structure is rebuilt here: the precertificate TBS (the leaf's
 * TBSCertificate without the SCT list), the issuer key hash and the SCT's
 * own fields, extensions included.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/ct.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "sigstore_int.h"

#define OID_FULCIO_ARC    "1.3.6.1.4.1.57264.1."
#define OID_ISSUER_V1     "1.3.6.1.4.1.57264.1.1" /* raw string */
#define OID_SAN_OTHERNAME "1.3.6.1.4.1.57264.1.7" /* UTF8String */
#define OID_ISSUER_V2     "1.3.6.1.4.1.57264.1.8" /* DER UTF8String */

#define SUBJECT_RAW 128                   /* a subject in messages: cut to this */
#define SUBJECT_STR (4 * SUBJECT_RAW + 6) /* ... then made printable */

/* ------------------------------------------------------------------------
 * Time and stores, shared with ss_tsa.c
 * ------------------------------------------------------------------------ */

/**
 * ss_time_format() - RFC 3339 text of a time
 * @t: in: seconds since the epoch, or SS_TIME_OPEN_END
 * @out: out: "2024-03-19T17:26:26Z", "open end", or the number when gmtime
 *       cannot represent it
 */
void ss_time_format(int64_t t, char out[SS_TIME_STR])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t == SS_TIME_OPEN_END)
		snprintf(out, SS_TIME_STR, "open end");
	else if (!gmtime_r(&tt, &tm) || !strftime(out, SS_TIME_STR, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(out, SS_TIME_STR, "%lld", (long long)t);
}

/**
 * ss_asn1_time_get() - seconds since the epoch of an ASN.1 time
 * @a: in: UTCTime or GeneralizedTime; a fraction of a second is dropped
 * @out: out: the time
 *
 * Return: 0, or -EBADMSG for NULL or a malformed time.
 */
int ss_asn1_time_get(const ASN1_TIME *a, int64_t *out)
{
	struct tm tm;

	/* ASN1_TIME_to_tm(NULL) would give the current time. */
	if (!a || !ASN1_TIME_to_tm(a, &tm))
		return -EBADMSG;
	*out = (int64_t)timegm(&tm);
	return 0;
}

/*
 * True if every critical extension of @x that OpenSSL does not handle is
 * one of Fulcio's (1.3.6.1.4.1.57264.1.*), which this file reads itself.
 */
static bool only_fulcio_critical(X509 *x)
{
	char oid[96];

	for (int i = 0; i < X509_get_ext_count(x); i++) {
		X509_EXTENSION *ext = X509_get_ext(x, i);

		if (!X509_EXTENSION_get_critical(ext) || X509_supported_extension(ext))
			continue;
		if (OBJ_obj2txt(oid, sizeof(oid), X509_EXTENSION_get_object(ext), 1) <= 0 ||
		    strncmp(oid, OID_FULCIO_ARC, strlen(OID_FULCIO_ARC)) != 0)
			return false;
	}
	return true;
}

/* True if @x's notAfter is exactly @t (RFC 5280: validity ends inclusive). */
static bool not_after_is(X509 *x, time_t t)
{
	int64_t end;

	return ss_asn1_time_get(X509_get0_notAfter(x), &end) == 0 && end == (int64_t)t;
}

/*
 * Verify callback of ss_ca_store(): @ok as OpenSSL found it, except two
 * findings it overrules: a Fulcio critical extension, and a certificate
 * whose notAfter is the checking time itself (OpenSSL's end is exclusive).
 */
static int ss_verify_cb(int ok, X509_STORE_CTX *ctx)
{
	X509 *x = X509_STORE_CTX_get_current_cert(ctx);
	time_t t = X509_VERIFY_PARAM_get_time(X509_STORE_CTX_get0_param(ctx));

	if (ok || !x)
		return ok;
	switch (X509_STORE_CTX_get_error(ctx)) {
	case X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION: return only_fulcio_critical(x);
	case X509_V_ERR_CERT_HAS_EXPIRED: return not_after_is(x, t);
	default: return 0;
	}
}

/**
 * ss_ca_store() - a verification store anchored at one authority of the root
 * @ca: in: the authority; its last certificate becomes the only anchor
 * @t: in: the time every certificate must be valid at
 *
 * Partial chains are allowed, so the anchor need not be self-signed (the
 * root's list ends at the certificate it trusts).
 *
 * Return: a new store (X509_STORE_free()), or NULL on ENOMEM or no certificate.
 */
X509_STORE *ss_ca_store(const struct ss_ca *ca, int64_t t)
{
	int n = ca && ca->certs ? sk_X509_num(ca->certs) : 0;
	X509_STORE *st = NULL;

	if (n < 1)
		goto out;
	st = X509_STORE_new();
	if (!st || !X509_STORE_add_cert(st, sk_X509_value(ca->certs, n - 1))) {
		X509_STORE_free(st);
		st = NULL;
		goto out;
	}
	X509_STORE_set_flags(st, X509_V_FLAG_PARTIAL_CHAIN | X509_V_FLAG_X509_STRICT);
	X509_VERIFY_PARAM_set_time(X509_STORE_get0_param(st), (time_t)t);
	X509_STORE_set_verify_cb(st, ss_verify_cb);
out:
	return st;
}

/* Writes @x's subject, printable, to @out. */
static void subject_text(X509 *x, char out[SUBJECT_STR])
{
	char raw[SUBJECT_RAW];

	if (!x || !X509_NAME_oneline(X509_get_subject_name(x), raw, sizeof(raw)))
		snprintf(raw, sizeof(raw), "?");
	mv_name_printable(raw, out, SUBJECT_STR);
}

/* Copies a recorded error @from into @err (kept if @err already has one). */
static int err_copy(struct mv_err *err, const struct mv_err *from)
{
	return mv_err_set(err, from->code, "%s", from->msg);
}

/* ------------------------------------------------------------------------
 * The chain
 * ------------------------------------------------------------------------ */

/* True for the verification errors of a chain that does not reach @ca at all. */
static bool is_no_path(int x509_err)
{
	return x509_err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
	       x509_err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
	       x509_err == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE;
}

/*
 * Turns the failure recorded in @ctx into one line naming the certificate
 * (the leaf, or a chain certificate by depth and subject), the time @t and
 * the authority @ca. Returns -EKEYREJECTED.
 */
static int chain_error(X509_STORE_CTX *ctx, const struct ss_ca *ca, int64_t t, struct mv_err *err)
{
	int e = X509_STORE_CTX_get_error(ctx), depth = X509_STORE_CTX_get_error_depth(ctx);
	X509 *x = X509_STORE_CTX_get_current_cert(ctx);
	char who[SUBJECT_STR + 64], subj[SUBJECT_STR], when[SS_TIME_STR], bound[SS_TIME_STR];
	bool expired = e == X509_V_ERR_CERT_HAS_EXPIRED;
	int64_t b = 0;

	subject_text(x, subj);
	if (depth <= 0)
		snprintf(who, sizeof(who), "certificate");
	else
		snprintf(who, sizeof(who), "certificate: chain certificate %d (%s)", depth, subj);
	ss_time_format(t, when);
	if (x && (expired || e == X509_V_ERR_CERT_NOT_YET_VALID)) {
		ss_asn1_time_get(expired ? X509_get0_notAfter(x) : X509_get0_notBefore(x), &b);
		ss_time_format(b, bound);
		return mv_err_set(err, -EKEYREJECTED, "%s: not valid at %s (%s %s)", who, when,
		                  expired ? "notAfter" : "notBefore", bound);
	}
	return mv_err_set(err, -EKEYREJECTED,
	                  "%s: does not verify to certificate authority %s at %s: %s", who,
	                  ca->uri ? ca->uri : "(no uri)", when, X509_verify_cert_error_string(e));
}

/* A new stack borrowing @ca's certificates but the anchor, then @extra's. */
static STACK_OF(X509) * untrusted_new(const struct ss_ca *ca, STACK_OF(X509) * extra)
{
	STACK_OF(X509) *sk = sk_X509_new_null();
	int n = sk_X509_num(ca->certs), m = extra ? sk_X509_num(extra) : 0;

	for (int i = 0; sk && i < n - 1 + m; i++) {
		X509 *x =
		    i < n - 1 ? sk_X509_value(ca->certs, i) : sk_X509_value(extra, i - (n - 1));

		if (!sk_X509_push(sk, x)) {
			sk_X509_free(sk);
			sk = NULL;
		}
	}
	return sk;
}

/*
 * Verifies @leaf (intermediates @extra, may be NULL) to authority @ca at
 * time @t. On success sets *@issuer to the leaf's issuer (borrowed from @ca
 * or @extra). *@x509_err: OpenSSL's verification error, or 0.
 */
static int chain_verify(X509 *leaf, STACK_OF(X509) * extra, const struct ss_ca *ca, int64_t t,
                        X509 **issuer, int *x509_err, struct mv_err *err)
{
	X509_STORE *st = ss_ca_store(ca, t);
	STACK_OF(X509) *untrusted = st ? untrusted_new(ca, extra) : NULL;
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	STACK_OF(X509) * chain;
	int ret = -ENOMEM;

	*x509_err = 0;
	if (!st || !untrusted || !ctx || !X509_STORE_CTX_init(ctx, st, leaf, untrusted)) {
		mv_err_set(err, ret, "certificate: out of memory, or CA %s has no certificate",
		           ca->uri ? ca->uri : "(no uri)");
		goto out;
	}
	X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_ANY);
	if (X509_verify_cert(ctx) != 1) {
		*x509_err = X509_STORE_CTX_get_error(ctx);
		ret = chain_error(ctx, ca, t, err);
		goto out;
	}
	chain = X509_STORE_CTX_get0_chain(ctx);
	*issuer = sk_X509_num(chain) > 1 ? sk_X509_value(chain, 1) : NULL;
	ret = 0;
out:
	X509_STORE_CTX_free(ctx);
	sk_X509_free(untrusted);
	X509_STORE_free(st);
	ERR_clear_error();
	return ret;
}

/*
 * Refuses a bundle chain @extra that is too long or holds a self-signed
 * (root) certificate: roots come from the trusted root only.
 */
static int extra_check(STACK_OF(X509) * extra, struct mv_err *err)
{
	int n = extra ? sk_X509_num(extra) : 0;
	char subj[SUBJECT_STR];

	if (n > (int)SS_MAX_CHAIN)
		return mv_err_set(
		    err, -EBADMSG,
		    "certificate: the bundle's chain has %d certificates (at most %u)", n,
		    SS_MAX_CHAIN);
	for (int i = 0; i < n; i++) {
		X509 *x = sk_X509_value(extra, i);

		if (X509_self_signed(x, 0) == 1) {
			subject_text(x, subj);
			return mv_err_set(
			    err, -EKEYREJECTED,
			    "certificate: the bundle's chain holds a root certificate (%s)", subj);
		}
	}
	return 0;
}

/* True if extended key usage list @eku names codeSigning. */
static bool eku_has_code_signing(const EXTENDED_KEY_USAGE *eku)
{
	for (int i = 0; i < sk_ASN1_OBJECT_num(eku); i++)
		if (OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, i)) == NID_code_sign)
			return true;
	return false;
}

/* The line for an extension X509_get_ext_d2i() did not give (@crit as it set it). */
static int ext_error(int crit, const char *what, struct mv_err *err)
{
	if (crit == -1)
		return mv_err_set(err, -EKEYREJECTED, "certificate: no %s extension", what);
	return mv_err_set(err, -EBADMSG, "certificate: malformed or repeated %s extension", what);
}

/*
 * The leaf's own checks, read from its extensions: not a CA (basicConstraints
 * cA, or a CA by its key usage), key usage digitalSignature, extended key
 * usage codeSigning (anyExtendedKeyUsage is not enough). -EKEYREJECTED, or
 * -EBADMSG for a malformed or repeated extension.
 */
static int leaf_usage_check(X509 *leaf, struct mv_err *err)
{
	ASN1_BIT_STRING *ku = NULL;
	EXTENDED_KEY_USAGE *eku = NULL;
	int crit, ret;

	if ((X509_get_extension_flags(leaf) & EXFLAG_CA) || X509_check_ca(leaf) != 0) {
		ret = mv_err_set(err, -EKEYREJECTED, "certificate: the leaf is a CA certificate");
		goto out;
	}
	ku = X509_get_ext_d2i(leaf, NID_key_usage, &crit, NULL);
	if (!ku) {
		ret = ext_error(crit, "key usage", err);
		goto out;
	}
	if (!ASN1_BIT_STRING_get_bit(ku, 0)) {
		ret =
		    mv_err_set(err, -EKEYREJECTED, "certificate: key usage lacks digitalSignature");
		goto out;
	}
	eku = X509_get_ext_d2i(leaf, NID_ext_key_usage, &crit, NULL);
	if (!eku) {
		ret = ext_error(crit, "extended key usage", err);
		goto out;
	}
	ret = 0;
	if (!eku_has_code_signing(eku))
		ret = mv_err_set(err, -EKEYREJECTED,
		                 "certificate: extended key usage lacks codeSigning");
out:
	ASN1_BIT_STRING_free(ku);
	EXTENDED_KEY_USAGE_free(eku);
	return ret;
}

/*
 * Tries @leaf against every authority of @root whose window holds @t; the
 * first that verifies gives *@issuer. On failure @err tells why for the most
 * telling authority (one the chain reached, before one it did not).
 */
static int ca_find(X509 *leaf, STACK_OF(X509) * extra, const struct ss_root *root, int64_t t,
                   X509 **issuer, struct mv_err *err)
{
	struct mv_err best = {0}, e;
	bool best_no_path = true;
	char when[SS_TIME_STR];
	int x509_err;

	for (size_t i = 0; i < root->n_cas; i++) {
		if (!ss_window_has(&root->cas[i].valid, t))
			continue;
		memset(&e, 0, sizeof(e));
		if (chain_verify(leaf, extra, &root->cas[i], t, issuer, &x509_err, &e) == 0)
			return 0;
		if (!best.code || e.code == -ENOMEM || (best_no_path && !is_no_path(x509_err))) {
			best = e;
			best_no_path = is_no_path(x509_err);
		}
	}
	if (best.code)
		return err_copy(err, &best);
	ss_time_format(t, when);
	return mv_err_set(
	    err, -EKEYREJECTED,
	    "certificate: no certificate authority of the trusted root is valid at %s", when);
}

/**
 * ss_cert_verify() - the Fulcio chain at a verified time
 * @leaf: in: the signing certificate
 * @extra: in: intermediates from the bundle, or NULL; a root among them is refused
 * @root: in: the trusted root; every CA whose window holds @t is tried
 * @t: in: the verified time (timestamp or integrated time)
 * @issuer: out: the certificate that issued @leaf, borrowed from @root or
 *          @extra; NULL on failure (@issuer itself may be NULL)
 * @err: out: the failing check
 *
 * Return: 0; -EKEYREJECTED for a chain, validity or usage that does not
 * hold; -EBADMSG for malformed input; -ENOMEM.
 */
int ss_cert_verify(X509 *leaf, STACK_OF(X509) * extra, const struct ss_root *root, int64_t t,
                   X509 **issuer, struct mv_err *err)
{
	X509 *iss = NULL;
	int ret;

	if (issuer)
		*issuer = NULL;
	if (!leaf || !root)
		return mv_err_set(err, -EBADMSG, "certificate: none to verify");
	ret = extra_check(extra, err);
	if (ret == 0)
		ret = ca_find(leaf, extra, root, t, &iss, err);
	if (ret == 0)
		ret = leaf_usage_check(leaf, err);
	if (ret == 0 && issuer)
		*issuer = iss;
	return ret;
}

/* ------------------------------------------------------------------------
 * SCTs (RFC 6962 §3.2, embedded in the leaf)
 * ------------------------------------------------------------------------ */

/* What every embedded SCT signs besides its own fields. */
struct precert {
	uint8_t *tbs; /* the leaf's TBSCertificate without the SCT list (OPENSSL_free) */
	size_t tbs_len;
	uint8_t issuer_key_hash[32]; /* SHA-256 of the issuer's SubjectPublicKeyInfo */
};

/* Fills @pc from @leaf and @issuer. 0, -ENOMEM or -EBADMSG. */
static int precert_build(X509 *leaf, X509 *issuer, struct precert *pc, struct mv_err *err)
{
	X509 *dup = X509_dup(leaf);
	uint8_t *spki = NULL;
	int idx, len, ret = -ENOMEM;
	int nids[] = {NID_ct_precert_scts, NID_ct_precert_poison};

	if (!dup)
		goto out;
	for (size_t i = 0; i < sizeof(nids) / sizeof(nids[0]); i++)
		while ((idx = X509_get_ext_by_NID(dup, nids[i], -1)) >= 0)
			X509_EXTENSION_free(X509_delete_ext(dup, idx));
	len = i2d_re_X509_tbs(dup, &pc->tbs);
	if (len <= 0)
		goto out;
	pc->tbs_len = (size_t)len;
	len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(issuer), &spki);
	if (len <= 0 ||
	    !EVP_Digest(spki, (size_t)len, pc->issuer_key_hash, NULL, EVP_sha256(), NULL))
		goto out;
	ret = 0;
out:
	if (ret)
		mv_err_set(err, ret, "SCT: cannot rebuild the precertificate");
	OPENSSL_free(spki);
	X509_free(dup);
	return ret;
}

/* The CT log of @root whose log id is @id (@len bytes), or NULL. */
static const struct ss_log *ctlog_find(const struct ss_root *root, const uint8_t *id, size_t len)
{
	for (size_t i = 0; i < root->n_ctlogs; i++) {
		const struct ss_log *log = &root->ctlogs[i];

		if (log->log_id_len == len && len && memcmp(log->log_id, id, len) == 0)
			return log;
	}
	return NULL;
}

/* Appends @n bytes of big-endian @v to *@p. */
static void put_be(uint8_t **p, uint64_t v, int n)
{
	while (n-- > 0)
		*(*p)++ = (uint8_t)(v >> (8 * n));
}

/*
 * The digitally-signed struct of a precert SCT (RFC 6962 §3.2): version,
 * signature_type certificate_timestamp, timestamp, entry_type precert_entry,
 * issuer_key_hash, the TBS (3-byte length), the extensions (2-byte length).
 * Returns a malloc'd buffer of *@len bytes, or NULL.
 */
static uint8_t *sct_signed_data(const SCT *sct, const struct precert *pc, size_t *len)
{
	unsigned char *ext = NULL;
	size_t ext_len = SCT_get0_extensions(sct, &ext);
	uint8_t *buf, *p;

	if (pc->tbs_len > 0xffffff || ext_len > 0xffff)
		return NULL;
	*len = 1 + 1 + 8 + 2 + 32 + 3 + pc->tbs_len + 2 + ext_len;
	buf = malloc(*len);
	if (!buf)
		return NULL;
	p = buf;
	put_be(&p, SCT_VERSION_V1, 1);
	put_be(&p, 0, 1); /* certificate_timestamp */
	put_be(&p, SCT_get_timestamp(sct), 8);
	put_be(&p, CT_LOG_ENTRY_TYPE_PRECERT, 2);
	memcpy(p, pc->issuer_key_hash, 32);
	p += 32;
	put_be(&p, pc->tbs_len, 3);
	memcpy(p, pc->tbs, pc->tbs_len);
	p += pc->tbs_len;
	put_be(&p, ext_len, 2);
	if (ext_len)
		memcpy(p, ext, ext_len);
	return buf;
}

/* True if the SCT's signature algorithm @nid fits @pkey's type. */
static bool sct_alg_fits(int nid, EVP_PKEY *pkey)
{
	int type = EVP_PKEY_get_base_id(pkey);

	return (nid == NID_ecdsa_with_SHA256 && type == EVP_PKEY_EC) ||
	       (nid == NID_sha256WithRSAEncryption && type == EVP_PKEY_RSA);
}

/* Checks the signature of @sct over @data (@len bytes) with @log's key. */
static int sct_sig_check(const SCT *sct, const struct ss_log *log, const uint8_t *data, size_t len,
                         struct mv_err *err)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char *sig = NULL;
	size_t sig_len = SCT_get0_signature(sct, &sig);
	int ret = -EKEYREJECTED;

	if (!md) {
		ret = mv_err_set(err, -ENOMEM, "SCT: out of memory");
		goto out;
	}
	if (!sct_alg_fits(SCT_get_signature_nid(sct), log->pkey)) {
		mv_err_set(err, ret, "SCT: signature algorithm does not fit the key of CT log %s",
		           log->base_url ? log->base_url : "?");
		goto out;
	}
	if (EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, log->pkey) != 1 ||
	    EVP_DigestVerify(md, sig, sig_len, data, len) != 1) {
		mv_err_set(err, ret, "SCT: signature by CT log %s does not verify",
		           log->base_url ? log->base_url : "?");
		goto out;
	}
	ret = 0;
out:
	EVP_MD_CTX_free(md);
	ERR_clear_error();
	return ret;
}

/*
 * sct_time_check() - an SCT's time inside its log's window and not in the future
 * @log: in: the CT log that signed it
 * @when: in: the SCT's timestamp, seconds
 * @now: in: the current time; @when may exceed it by SS_CLOCK_SKEW
 * @err: out: the message on failure
 *
 * Return: 0 or -EKEYREJECTED.
 */
static int sct_time_check(const struct ss_log *log, int64_t when, int64_t now, struct mv_err *err)
{
	char ts[SS_TIME_STR], tn[SS_TIME_STR];

	ss_time_format(when, ts);
	if (!ss_window_has(&log->valid, when))
		return mv_err_set(err, -EKEYREJECTED,
		                  "SCT: time %s outside the validity of CT log %s", ts,
		                  log->base_url ? log->base_url : "?");
	if (when - SS_CLOCK_SKEW > now) {
		ss_time_format(now, tn);
		return mv_err_set(err, -EKEYREJECTED, "SCT: time %s is after the current time %s",
		                  ts, tn);
	}
	return 0;
}

/*
 * Verifies one SCT: -ENOENT (no message) when its log is not in @root;
 * else its version, its time (sct_time_check() at @now) and its signature.
 */
static int sct_check_one(const SCT *sct, const struct precert *pc, const struct ss_root *root,
                         int64_t now, struct mv_err *err)
{
	unsigned char *id = NULL;
	size_t id_len = SCT_get0_log_id(sct, &id), len = 0;
	const struct ss_log *log = ctlog_find(root, id, id_len);
	int64_t when = (int64_t)(SCT_get_timestamp(sct) / 1000);
	uint8_t *data = NULL;
	int ret;

	if (!log)
		return -ENOENT;
	if (SCT_get_version(sct) != SCT_VERSION_V1)
		return mv_err_set(err, -EBADMSG, "SCT: unsupported version");
	ret = sct_time_check(log, when, now, err);
	if (ret)
		return ret;
	data = sct_signed_data(sct, pc, &len);
	ret = data ? sct_sig_check(sct, log, data, len, err)
	           : mv_err_set(err, -ENOMEM, "SCT: out of memory or oversized certificate");
	free(data);
	return ret;
}

/* The "no SCT by a known log" line, naming the first log id in hex. */
static int sct_unknown_error(const STACK_OF(SCT) * scts, struct mv_err *err)
{
	unsigned char *id = NULL;
	size_t len = SCT_get0_log_id(sk_SCT_value(scts, 0), &id);
	char hex[2 * 32 + 1] = "";

	if (len <= 32)
		mv_hex_encode(id, len, hex);
	return mv_err_set(err, -EKEYREJECTED,
	                  "SCT: no SCT by a CT log of the trusted root (%d SCTs; first log id %s)",
	                  sk_SCT_num(scts), hex);
}

/**
 * ss_sct_verify() - the leaf's embedded SCTs
 * @leaf: in: the signing certificate (a final certificate carrying its SCT list)
 * @issuer: in: its issuer (from ss_cert_verify()), for the issuer key hash
 * @root: in: the trusted root's CT logs
 * @now: in: the current time; an SCT may be at most SS_CLOCK_SKEW after it
 * @err: out: the first SCT failure by a known log, else "no SCT by a CT log"
 *
 * SCTs by logs the root does not list are skipped; one that verifies is enough.
 *
 * Return: 0, -EKEYREJECTED, -EBADMSG (malformed list, no issuer) or -ENOMEM.
 */
int ss_sct_verify(X509 *leaf, X509 *issuer, const struct ss_root *root, int64_t now,
                  struct mv_err *err)
{
	struct precert pc = {0};
	struct mv_err first = {0}, e;
	STACK_OF(SCT) *scts = NULL;
	int crit, ret;

	if (!leaf || !issuer || !root)
		return mv_err_set(err, -EBADMSG,
		                  "SCT: no certificate or no issuer to check against");
	scts = X509_get_ext_d2i(leaf, NID_ct_precert_scts, &crit, NULL);
	if (!scts || sk_SCT_num(scts) == 0) {
		ret = crit == -1 || scts
		          ? mv_err_set(err, -EKEYREJECTED, "SCT: the certificate embeds none")
		          : mv_err_set(err, -EBADMSG, "SCT: malformed or repeated SCT list");
		goto out;
	}
	ret = precert_build(leaf, issuer, &pc, err);
	for (int i = 0; ret == 0 && i < sk_SCT_num(scts); i++) {
		memset(&e, 0, sizeof(e));
		if (sct_check_one(sk_SCT_value(scts, i), &pc, root, now, &e) == 0)
			goto out;
		if (e.code && !first.code)
			first = e;
	}
	if (ret == 0)
		ret = first.code ? err_copy(err, &first) : sct_unknown_error(scts, err);
out:
	ERR_clear_error();
	OPENSSL_free(pc.tbs);
	SCT_LIST_free(scts);
	return ret;
}

/* ------------------------------------------------------------------------
 * Identity
 * ------------------------------------------------------------------------ */

/*
 * Copies @len bytes of certificate text @p to @out (@out_len bytes with its
 * NUL): refused when empty, too long, holding a NUL or not UTF-8.
 */
static int text_copy(const char *what, const void *p, int len, char *out, size_t out_len,
                     struct mv_err *err)
{
	if (len <= 0 || (size_t)len >= out_len || memchr(p, 0, (size_t)len) ||
	    !mv_utf8_valid(p, (size_t)len))
		return mv_err_set(err, -EBADMSG,
		                  "identity: %s is empty, too long or not UTF-8 text", what);
	memcpy(out, p, (size_t)len);
	out[len] = '\0';
	return 0;
}

/* True if @obj is the dotted OID @oid. */
static bool oid_is(const ASN1_OBJECT *obj, const char *oid)
{
	char txt[96];

	return OBJ_obj2txt(txt, sizeof(txt), obj, 1) > 0 && strcmp(txt, oid) == 0;
}

/* The identity string of one SAN entry: email, URI or Fulcio otherName; else NULL. */
static const ASN1_STRING *san_value(const GENERAL_NAME *gen)
{
	const OTHERNAME *on;

	switch (gen->type) {
	case GEN_EMAIL: return gen->d.rfc822Name;
	case GEN_URI: return gen->d.uniformResourceIdentifier;
	case GEN_OTHERNAME:
		on = gen->d.otherName;
		if (on && on->value && oid_is(on->type_id, OID_SAN_OTHERNAME) &&
		    on->value->type == V_ASN1_UTF8STRING)
			return on->value->value.utf8string;
		return NULL;
	default: return NULL;
	}
}

/* Reads the one identity of @leaf's SAN into @out (@out_len bytes). */
static int san_get(X509 *leaf, char *out, size_t out_len, struct mv_err *err)
{
	GENERAL_NAMES *gens;
	const ASN1_STRING *found = NULL, *s;
	int crit, n = 0, ret;

	gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, &crit, NULL);
	if (!gens) {
		ret = mv_err_set(err, -EBADMSG, "identity: %s subject alternative name",
		                 crit == -1 ? "no" : "malformed or repeated");
		goto out;
	}
	for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		s = san_value(sk_GENERAL_NAME_value(gens, i));
		if (s) {
			found = s;
			n++;
		}
	}
	if (n != 1) {
		ret = mv_err_set(
		    err, n ? -EKEYREJECTED : -EBADMSG,
		    "identity: %d email, URI or Fulcio otherName SAN entries, expected one", n);
		goto out;
	}
	ret = text_copy("the SAN", ASN1_STRING_get0_data(found), ASN1_STRING_length(found), out,
	                out_len, err);
out:
	GENERAL_NAMES_free(gens);
	return ret;
}

/*
 * Finds the extension @oid of @x: 1 and *@data its value, 0 when absent,
 * -EBADMSG when repeated, -ENOMEM.
 */
static int ext_find(X509 *x, const char *oid, const ASN1_OCTET_STRING **data)
{
	ASN1_OBJECT *obj = OBJ_txt2obj(oid, 1);
	int idx, ret = -ENOMEM;

	if (!obj)
		goto out;
	idx = X509_get_ext_by_OBJ(x, obj, -1);
	if (idx < 0)
		ret = 0;
	else if (X509_get_ext_by_OBJ(x, obj, idx) >= 0)
		ret = -EBADMSG;
	else {
		*data = X509_EXTENSION_get_data(X509_get_ext(x, idx));
		ret = 1;
	}
out:
	ASN1_OBJECT_free(obj);
	return ret;
}

/* The issuer of extension 1.3.6.1.4.1.57264.1.8 (a DER UTF8String); 1, 0 or error. */
static int issuer_v2_get(X509 *leaf, char *out, size_t out_len, struct mv_err *err)
{
	const ASN1_OCTET_STRING *data = NULL;
	ASN1_UTF8STRING *s = NULL;
	const unsigned char *p;
	int ret = ext_find(leaf, OID_ISSUER_V2, &data);

	if (ret <= 0)
		goto out;
	p = ASN1_STRING_get0_data(data);
	s = d2i_ASN1_UTF8STRING(NULL, &p, ASN1_STRING_length(data));
	if (!s || p != ASN1_STRING_get0_data(data) + ASN1_STRING_length(data)) {
		ret = -EBADMSG;
		goto out;
	}
	ret = text_copy("issuer " OID_ISSUER_V2, ASN1_STRING_get0_data(s), ASN1_STRING_length(s),
	                out, out_len, err);
	ret = ret ? ret : 1;
out:
	ASN1_UTF8STRING_free(s);
	ERR_clear_error();
	return ret;
}

/* The issuer of the legacy extension 1.3.6.1.4.1.57264.1.1 (raw bytes); 1, 0 or error. */
static int issuer_v1_get(X509 *leaf, char *out, size_t out_len, struct mv_err *err)
{
	const ASN1_OCTET_STRING *data = NULL;
	int ret = ext_find(leaf, OID_ISSUER_V1, &data);

	if (ret <= 0)
		return ret;
	ret = text_copy("issuer " OID_ISSUER_V1, ASN1_STRING_get0_data(data),
	                ASN1_STRING_length(data), out, out_len, err);
	return ret ? ret : 1;
}

/* Reads the OIDC issuer of @leaf: both extensions must agree when both are there. */
static int issuer_get(X509 *leaf, char *out, size_t out_len, struct mv_err *err)
{
	char v1[sizeof(((struct ss_identity *)0)->issuer)];
	char pv1[400], pv2[400]; /* printable, cut to fit the message */
	int r2 = issuer_v2_get(leaf, out, out_len, err), r1;

	if (r2 < 0)
		return mv_err_set(err, r2, "identity: malformed or repeated extension %s",
		                  OID_ISSUER_V2);
	r1 = issuer_v1_get(leaf, v1, sizeof(v1), err);
	if (r1 < 0)
		return mv_err_set(err, r1, "identity: malformed or repeated extension %s",
		                  OID_ISSUER_V1);
	if (r1 == 0 && r2 == 0)
		return mv_err_set(err, -EBADMSG, "identity: no OIDC issuer extension");
	if (r2 == 0)
		return text_copy("issuer", v1, (int)strlen(v1), out, out_len, err);
	if (r1 && strcmp(v1, out) != 0) {
		mv_name_printable(out, pv2, sizeof(pv2));
		mv_name_printable(v1, pv1, sizeof(pv1));
		return mv_err_set(err, -EKEYREJECTED,
		                  "identity: issuer extensions disagree: %s \"%s\", %s \"%s\"",
		                  OID_ISSUER_V2, pv2, OID_ISSUER_V1, pv1);
	}
	return 0;
}

/**
 * ss_identity_get() - the signer identity of a Fulcio certificate
 * @leaf: in: the certificate
 * @out: out: its SAN (the one email, URI or otherName 1.3.6.1.4.1.57264.1.7)
 *       and its OIDC issuer (1.3.6.1.4.1.57264.1.8, else the legacy .1.1)
 * @err: out: the failing check
 *
 * Return: 0; -EKEYREJECTED when the issuer extensions disagree or the SAN
 * holds more than one identity; -EBADMSG when one is missing or malformed.
 */
int ss_identity_get(X509 *leaf, struct ss_identity *out, struct mv_err *err)
{
	int ret;

	memset(out, 0, sizeof(*out));
	if (!leaf)
		return mv_err_set(err, -EBADMSG, "identity: no certificate");
	ret = san_get(leaf, out->san, sizeof(out->san), err);
	if (ret == 0)
		ret = issuer_get(leaf, out->issuer, sizeof(out->issuer), err);
	if (ret)
		memset(out, 0, sizeof(*out));
	return ret;
}
