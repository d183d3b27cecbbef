// SPDX-License-Identifier: Apache-2.0
/*
 * ss_tsa.c - RFC 3161 timestamps of a Sigstore bundle: the token signed by a
 * timestamp authority of the trusted root, whose chain is judged at the
 * token's own time (so a chain that has expired since still verifies), the
 * time inside the authority's window, the message imprint equal to the hash
 * of the bundle's signature. See sigstore_int.h.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pkcs7.h>
#include <openssl/ts.h>
#include <openssl/x509v3.h>

#include "sigstore_int.h"

/* A parsed timestamp. */
struct tsa_token {
	TS_RESP *resp;    /* the TimeStampResp, or NULL for a bare token */
	PKCS7 *bare;      /* a bare TimeStampToken, or NULL */
	PKCS7 *token;     /* the token: borrowed from resp, or bare */
	TS_TST_INFO *tst; /* its TSTInfo */
	int64_t time;     /* genTime, seconds */
};

/* Frees what token_parse() filled in @tk. */
static void token_free(struct tsa_token *tk)
{
	TS_TST_INFO_free(tk->tst);
	PKCS7_free(tk->bare);
	TS_RESP_free(tk->resp);
	memset(tk, 0, sizeof(*tk));
}

/* Refuses a response whose status is not granted (0) or grantedWithMods (1). */
static int status_check(TS_RESP *resp, struct mv_err *err)
{
	const ASN1_INTEGER *st = TS_STATUS_INFO_get0_status(TS_RESP_get_status_info(resp));
	long v = st ? ASN1_INTEGER_get(st) : -1;

	if (v != 0 && v != 1)
		return mv_err_set(err, -EKEYREJECTED, "timestamp: response status %ld, not granted",
		                  v);
	return 0;
}

/*
 * Parses @der (@len bytes): a whole TimeStampResp (what bundles carry), or
 * a bare TimeStampToken. Fills @tk (token_free() in every case).
 */
static int token_parse(const uint8_t *der, size_t len, struct tsa_token *tk, struct mv_err *err)
{
	const unsigned char *p = der;
	int ret = -EBADMSG;

	if (len == 0 || len > LONG_MAX)
		goto bad;
	tk->resp = d2i_TS_RESP(NULL, &p, (long)len);
	if (tk->resp && p == der + len) {
		ret = status_check(tk->resp, err);
		if (ret)
			goto out;
		tk->token = TS_RESP_get_token(tk->resp);
	} else {
		TS_RESP_free(tk->resp);
		tk->resp = NULL;
		p = der;
		tk->bare = d2i_PKCS7(NULL, &p, (long)len);
		if (!tk->bare || p != der + len)
			goto bad;
		tk->token = tk->bare;
	}
	tk->tst = tk->token ? PKCS7_to_TS_TST_INFO(tk->token) : NULL;
	if (!tk->tst || ss_asn1_time_get(TS_TST_INFO_get_time(tk->tst), &tk->time))
		goto bad;
	ret = 0;
	goto out;
bad:
	ret = mv_err_set(err, -EBADMSG,
	                 "timestamp: not a TimeStampResp or TimeStampToken with a time");
out:
	ERR_clear_error();
	return ret;
}

/* The digest of a message imprint's algorithm @nid; NULL for one not accepted. */
static const EVP_MD *imprint_md(int nid)
{
	switch (nid) {
	case NID_sha256: return EVP_sha256();
	case NID_sha384: return EVP_sha384();
	case NID_sha512: return EVP_sha512();
	default: return NULL;
	}
}

/* Checks that @tst's message imprint is the hash of @sig (@sig_len bytes). */
static int imprint_check(TS_TST_INFO *tst, const uint8_t *sig, size_t sig_len, struct mv_err *err)
{
	TS_MSG_IMPRINT *mi = TS_TST_INFO_get_msg_imprint(tst);
	const ASN1_OCTET_STRING *got = TS_MSG_IMPRINT_get_msg(mi);
	const ASN1_OBJECT *obj = NULL;
	uint8_t want[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	const EVP_MD *md;

	X509_ALGOR_get0(&obj, NULL, NULL, TS_MSG_IMPRINT_get_algo(mi));
	md = imprint_md(OBJ_obj2nid(obj));
	if (!md)
		return mv_err_set(
		    err, -EKEYREJECTED,
		    "timestamp: message imprint hash is not SHA-256, SHA-384 or SHA-512");
	if (!EVP_Digest(sig, sig_len, want, &n, md, NULL))
		return mv_err_set(err, -ENOMEM, "timestamp: cannot hash the signature");
	if (!got || ASN1_STRING_length(got) != (int)n ||
	    memcmp(ASN1_STRING_get0_data(got), want, n))
		return mv_err_set(
		    err, -EKEYREJECTED,
		    "timestamp: message imprint is not the hash of the bundle's signature");
	return 0;
}

/* The TSA's name in messages. */
static const char *tsa_name(const struct ss_ca *tsa)
{
	return tsa->uri && *tsa->uri ? tsa->uri : "(no uri)";
}

/*
 * The line for a token that @tsa's chain does not verify, from OpenSSL's
 * error queue (the reason, and the chain error text when there is one).
 */
static int sig_error(const struct ss_ca *tsa, int64_t t, struct mv_err *err)
{
	const char *data = NULL, *reason = NULL, *d;
	unsigned long e;
	char when[SS_TIME_STR];
	int flags;

	while ((e = ERR_get_error_all(NULL, NULL, NULL, &d, &flags)) != 0) {
		if (!reason || ((flags & ERR_TXT_STRING) && d && *d)) {
			reason = ERR_reason_error_string(e);
			data = (flags & ERR_TXT_STRING) ? d : NULL;
		}
	}
	ss_time_format(t, when);
	return mv_err_set(err, -EKEYREJECTED, "timestamp: does not verify to TSA %s at %s: %s%s%s",
	                  tsa_name(tsa), when, reason ? reason : "signature or chain",
	                  data && *data ? ": " : "", data ? data : "");
}

/* True if @x has an extended key usage extension that lists timeStamping. */
static bool eku_has_timestamping(X509 *x)
{
	EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL);
	bool found = false;

	for (int i = 0; eku && i < sk_ASN1_OBJECT_num(eku); i++)
		found |= OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, i)) == NID_time_stamp;
	EXTENDED_KEY_USAGE_free(eku);
	return found;
}

/*
 * The signer and intermediates of @tsa's list (its first certificate is
 * the TSA's own when it is not a CA; the last is the anchor). The signer
 * must be that certificate; every intermediate must allow timeStamping
 * (EKU chaining, as Sigstore's TSA verification asks). OpenSSL has already
 * checked the signer's own critical timeStamping EKU.
 */
static int tsa_certs_check(const struct ss_ca *tsa, X509 *signer, struct mv_err *err)
{
	int n = sk_X509_num(tsa->certs), first = 0;
	char raw[128], subj[4 * sizeof(raw) + 6];
	X509 *x;

	if (n > 1 && X509_check_ca(sk_X509_value(tsa->certs, 0)) == 0) {
		if (X509_cmp(signer, sk_X509_value(tsa->certs, 0)) != 0)
			return mv_err_set(err, -EKEYREJECTED,
			                  "timestamp: not signed by the certificate of TSA %s",
			                  tsa_name(tsa));
		first = 1;
	}
	for (int i = first; i < n - 1; i++) {
		x = sk_X509_value(tsa->certs, i);
		if (!eku_has_timestamping(x)) {
			X509_NAME_oneline(X509_get_subject_name(x), raw, sizeof(raw));
			mv_name_printable(raw, subj, sizeof(subj));
			return mv_err_set(
			    err, -EKEYREJECTED,
			    "timestamp: intermediate %s of TSA %s lacks the timeStamping "
			    "extended key usage",
			    subj, tsa_name(tsa));
		}
	}
	return 0;
}

/*
 * Verifies @tk with timestamp authority @tsa: the token's signature by a
 * certificate that chains to @tsa's anchor at the token's time, then
 * tsa_certs_check(), then the time inside @tsa's window. *@stage tells how
 * far it got (0 signature, 1 certificates, 2 window), to pick the telling
 * failure among several TSAs.
 */
static int tsa_try(const struct tsa_token *tk, const struct ss_ca *tsa, int *stage,
                   struct mv_err *err)
{
	X509_STORE *st = ss_ca_store(tsa, tk->time);
	STACK_OF(X509) *certs = sk_X509_new_null();
	int n = tsa->certs ? sk_X509_num(tsa->certs) : 0, ret = -ENOMEM;
	char a[SS_TIME_STR], b[SS_TIME_STR], t[SS_TIME_STR];
	X509 *signer = NULL;

	*stage = 0;
	for (int i = 0; certs && i < n - 1; i++)
		if (!sk_X509_push(certs, sk_X509_value(tsa->certs, i)))
			goto out;
	if (!st || !certs) {
		mv_err_set(err, ret, "timestamp: TSA %s has no certificate, or out of memory",
		           tsa_name(tsa));
		goto out;
	}
	if (TS_RESP_verify_signature(tk->token, certs, st, &signer) != 1) {
		ret = sig_error(tsa, tk->time, err);
		goto out;
	}
	*stage = 1;
	ret = tsa_certs_check(tsa, signer, err);
	if (ret)
		goto out;
	*stage = 2;
	if (!ss_window_has(&tsa->valid, tk->time)) {
		ss_time_format(tk->time, t);
		ss_time_format(tsa->valid.start, a);
		ss_time_format(tsa->valid.end, b);
		ret = mv_err_set(err, -EKEYREJECTED,
		                 "timestamp: time %s outside the validity of TSA %s (%s to %s)", t,
		                 tsa_name(tsa), a, b);
		goto out;
	}
	ret = 0;
out:
	X509_free(signer);
	sk_X509_free(certs);
	X509_STORE_free(st);
	ERR_clear_error();
	return ret;
}

/*
 * future_check() - a verified token's time not after the current time
 * @t: in: the token's genTime
 * @now: in: the current time; @t may exceed it by SS_CLOCK_SKEW
 * @err: out: the message on failure
 *
 * Return: 0 or -EKEYREJECTED.
 */
static int future_check(int64_t t, int64_t now, struct mv_err *err)
{
	char a[SS_TIME_STR], b[SS_TIME_STR];

	if (t - SS_CLOCK_SKEW <= now)
		return 0;
	ss_time_format(t, a);
	ss_time_format(now, b);
	return mv_err_set(err, -EKEYREJECTED, "timestamp: time %s is after the current time %s", a,
	                  b);
}

/**
 * ss_tsa_verify() - an RFC 3161 timestamp over a bundle's signature
 * @der: in: the timestamp (TimeStampResp or bare TimeStampToken), untrusted
 * @len: in: its length
 * @sig: in: the bundle's signature bytes, which the imprint must hash
 * @sig_len: in: their length
 * @root: in: the trusted root; each of its TSAs is tried
 * @now: in: the current time; genTime may be at most SS_CLOCK_SKEW after it
 * @time: out: the token's genTime (a fraction dropped), on success
 * @err: out: the failing check (for several TSAs, the one that got furthest)
 *
 * Return: 0; -EKEYREJECTED for a token no TSA of @root verifies, a time
 * outside its TSA's window or its certificates' validity or in the future,
 * an imprint mismatch; -EBADMSG for malformed input; -ENOMEM.
 */
int ss_tsa_verify(const uint8_t *der, size_t len, const uint8_t *sig, size_t sig_len,
                  const struct ss_root *root, int64_t now, int64_t *time, struct mv_err *err)
{
	struct tsa_token tk = {0};
	struct mv_err best = {0}, e;
	int best_stage = -1, stage, ret;

	if (!der || !sig || !root)
		return mv_err_set(err, -EBADMSG, "timestamp: no timestamp, signature or root");
	ret = token_parse(der, len, &tk, err);
	if (ret == 0)
		ret = imprint_check(tk.tst, sig, sig_len, err);
	for (size_t i = 0; ret == 0 && i < root->n_tsas; i++) {
		memset(&e, 0, sizeof(e));
		if (tsa_try(&tk, &root->tsas[i], &stage, &e) == 0) {
			ret = future_check(tk.time, now, err);
			if (!ret)
				*time = tk.time;
			goto out;
		}
		if (stage > best_stage) {
			best = e;
			best_stage = stage;
		}
	}
	if (ret == 0)
		ret = best.code
		          ? mv_err_set(err, best.code, "%s", best.msg)
		          : mv_err_set(err, -EKEYREJECTED,
		                       "timestamp: the trusted root has no timestamp authority");
out:
	token_free(&tk);
	return ret;
}
