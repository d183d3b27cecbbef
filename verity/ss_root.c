// SPDX-License-Identifier: Apache-2.0
/*
 * ss_root.c - the Sigstore trusted root (trustedroot+json v0.1): its
 * certificate authorities, timestamp authorities, transparency logs and CT
 * logs, each with a validity window, and the RFC 3339 times those windows
 * are written in. See sigstore_int.h.
 *
 * The input is untrusted JSON: every member is type-checked, every list is
 * bounded by SS_MAX_ROOT_ITEMS (chains by SS_MAX_CHAIN), every DER object
 * must be consumed whole, and a window must have a start (a missing start
 * is not "since forever").
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/x509.h>

#include "sig_internal.h"
#include "sigstore_int.h"
#include "ss_json.h"

#define ROOT_MEDIA_TYPE_01     "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
#define ROOT_MEDIA_TYPE_01_NEW "application/vnd.dev.sigstore.trustedroot.v0.1+json"
#define ROOT_MEDIA_TYPE_02     "application/vnd.dev.sigstore.trustedroot.v0.2+json"

/* ---- RFC 3339 times ---------------------------------------------------- */

/*
 * digits() - reads exactly @n decimal digits
 * @s: in: text, at least @n characters or a NUL before
 * @n: in: how many digits
 * @out: out: their value
 *
 * Return: 0, or -EBADMSG if one of them is not a digit.
 */
static int digits(const char *s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EBADMSG;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

/*
 * days_from_civil() - days since 1970-01-01 of a proleptic Gregorian date
 * @y, @m, @d: in: year (1..9999), month (1..12), day (1..31)
 *
 * Return: the day number (negative before 1970).
 */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/*
 * month_days() - number of days of month @m of year @y
 * @y, @m: in: year and month (1..12)
 *
 * Return: 28 to 31.
 */
static int month_days(int y, int m)
{
	static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : days[m - 1];
}

/*
 * time_zone() - parses the end of an RFC 3339 time: "Z" or "+HH:MM"/"-HH:MM"
 * @s: in: the rest of the text after the seconds and fraction
 * @offset: out: seconds to subtract to get UTC
 *
 * Return: 0, or -EBADMSG on anything else (including trailing text).
 */
static int time_zone(const char *s, int64_t *offset)
{
	int hh, mm;

	*offset = 0;
	if (s[0] == 'Z' && s[1] == '\0')
		return 0;
	if ((s[0] != '+' && s[0] != '-') || digits(s + 1, 2, &hh) || s[3] != ':' ||
	    digits(s + 4, 2, &mm) || s[6] != '\0' || hh > 23 || mm > 59)
		return -EBADMSG;
	*offset = (int64_t)(hh * 3600 + mm * 60) * (s[0] == '-' ? -1 : 1);
	return 0;
}

/**
 * ss_time_parse() - parses an RFC 3339 time into seconds since the epoch
 * @s: in: "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)", NUL-terminated
 * @out: out: the time in UTC; the fraction (1 to 9 digits) is dropped
 *
 * Return: 0, or -EBADMSG on any other form or an impossible date.
 */
int ss_time_parse(const char *s, int64_t *out)
{
	int y, mo, d, h, mi, sec, n = 0;
	int64_t offset;

	*out = 0;
	if (strnlen(s, 40) < 20 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) ||
	    s[7] != '-' || digits(s + 8, 2, &d) || s[10] != 'T' || digits(s + 11, 2, &h) ||
	    s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' || digits(s + 17, 2, &sec))
		return -EBADMSG;
	if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > month_days(y, mo) || h > 23 || mi > 59 ||
	    sec > 59)
		return -EBADMSG;
	s += 19;
	if (*s == '.') {
		while (s[1 + n] >= '0' && s[1 + n] <= '9' && n < 10)
			n++;
		if (n < 1 || n > 9)
			return -EBADMSG;
		s += 1 + n;
	}
	if (time_zone(s, &offset))
		return -EBADMSG;
	*out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset;
	return 0;
}

/**
 * ss_window_has() - whether a time lies inside a validity window
 * @w: in: the window, both ends inclusive
 * @t: in: the time
 *
 * Return: true if start <= @t <= end.
 */
bool ss_window_has(const struct ss_window *w, int64_t t)
{
	return t >= w->start && t <= w->end;
}

/* ---- JSON helpers ------------------------------------------------------ */

/*
 * member_strdup() - copies an optional string member
 * @label, @obj, @path, @key: in: as ss_json_bytes()
 * @out: out: malloc'd copy, or NULL when absent
 * @err: out: the message on failure
 *
 * Return: 0, -EBADMSG (not a string) or -ENOMEM.
 */
static int member_strdup(const char *label, const cJSON *obj, const char *path, const char *key,
                         char **out, struct mv_err *err)
{
	const cJSON *m;

	*out = NULL;
	if (ss_json_member(label, obj, path, key, cJSON_String, false, &m, err))
		return -EBADMSG;
	if (!m)
		return 0;
	*out = strdup(m->valuestring);
	if (!*out)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", label);
	return 0;
}

/*
 * parse_window() - parses a "validFor" TimeRange
 * @label: in: the file, for messages
 * @obj: in: the object holding "validFor"
 * @path: in: that object's path, for messages
 * @w: out: the window; end SS_TIME_OPEN_END when absent
 * @err: out: the message on failure
 *
 * Return: 0 or -EBADMSG (validFor or its start missing, a bad time, end
 * before start).
 */
static int parse_window(const char *label, const cJSON *obj, const char *path, struct ss_window *w,
                        struct mv_err *err)
{
	const cJSON *vf, *start, *end;
	char p[SS_PATH_SIZE];

	w->start = 0;
	w->end = SS_TIME_OPEN_END;
	if (ss_json_member(label, obj, path, "validFor", cJSON_Object, true, &vf, err))
		return -EBADMSG;
	ss_json_path(p, "%s.validFor", path);
	if (ss_json_member(label, vf, p, "start", cJSON_String, true, &start, err) ||
	    ss_json_member(label, vf, p, "end", cJSON_String, false, &end, err))
		return -EBADMSG;
	if (ss_time_parse(start->valuestring, &w->start))
		return mv_err_set(err, -EBADMSG, "%s: %s.start: not an RFC 3339 time: \"%s\"",
		                  label, p, MV_P(start->valuestring));
	if (end && ss_time_parse(end->valuestring, &w->end))
		return mv_err_set(err, -EBADMSG, "%s: %s.end: not an RFC 3339 time: \"%s\"", label,
		                  p, MV_P(end->valuestring));
	if (w->end < w->start)
		return mv_err_set(err, -EBADMSG, "%s: %s: end before start", label, p);
	return 0;
}

/* ---- keys -------------------------------------------------------------- */

/*
 * key_matches() - whether a decoded key is of the kind keyDetails names
 * @pkey: in: the key
 * @details: in: publicKey.keyDetails, or NULL
 *
 * Unknown details are not checked here: the users of the key check its
 * type before they verify anything with it.
 *
 * Return: true if it matches or is not one of the details checked.
 */
static bool key_matches(EVP_PKEY *pkey, const char *details)
{
	char group[32] = "";
	size_t glen = 0;

	if (!details)
		return true;
	if (!strncmp(details, "PKIX_ECDSA_P", 12)) {
		if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC ||
		    !EVP_PKEY_get_utf8_string_param(pkey, "group", group, sizeof(group), &glen))
			return false;
		if (!strncmp(details, "PKIX_ECDSA_P256_", 16))
			return !strcmp(group, "prime256v1");
		if (!strncmp(details, "PKIX_ECDSA_P384_", 16))
			return !strcmp(group, "secp384r1");
		if (!strncmp(details, "PKIX_ECDSA_P521_", 16))
			return !strcmp(group, "secp521r1");
		return true;
	}
	if (!strcmp(details, "PKIX_ED25519") || !strcmp(details, "PKIX_ED25519_PH"))
		return EVP_PKEY_get_base_id(pkey) == EVP_PKEY_ED25519;
	if (!strncmp(details, "PKIX_RSA_", 9) || !strncmp(details, "PKCS1_RSA_", 10))
		return EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA;
	return true;
}

/*
 * The SubjectPublicKeyInfo forms of the logs' keys, decoded here without
 * OpenSSL's generic decoders: on OpenSSL 3.0 each d2i_PUBKEY() builds a
 * decoder context (about 150 us), most of the cost of parsing a root. DER
 * is unique, so a key of one of these forms is its fixed prefix followed by
 * the key's bytes; anything else goes to d2i_PUBKEY().
 */
static const struct spki_form {
	const char *group; /* EC group name; NULL for Ed25519 */
	const char *prefix;
	size_t prefix_len;
	size_t key_len;
} spki_forms[] = {
    {NULL, "\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00", 12, 32},
    {"prime256v1",
     "\x30\x59\x30\x13\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x06\x08\x2a\x86\x48\xce"
     "\x3d\x03\x01\x07\x03\x42\x00",
     26, 65},
    {"secp384r1",
     "\x30\x76\x30\x10\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x06\x05\x2b\x81\x04\x00"
     "\x22\x03\x62\x00",
     23, 97},
};

/*
 * ec_key_from_point() - an EC public key from its group and encoded point
 * @group: in: the group's name ("prime256v1")
 * @pt, @n: in: the point (SEC 1 encoding); one not on the curve is refused
 *
 * Return: the key, or NULL.
 */
static EVP_PKEY *ec_key_from_point(const char *group, const uint8_t *pt, size_t n)
{
	OSSL_PARAM params[] = {
	    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)group, 0),
	    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pt, n),
	    OSSL_PARAM_END,
	};
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	EVP_PKEY *pkey = NULL;

	if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pkey = NULL;
	EVP_PKEY_CTX_free(ctx);
	ERR_clear_error();
	return pkey;
}

/*
 * decode_spki_fast() - a key of one of the spki_forms
 * @der, @len: in: the DER bytes
 * @known: out: whether they have one of those forms
 *
 * Return: the key, or NULL (not of those forms, or not a valid key).
 */
static EVP_PKEY *decode_spki_fast(const uint8_t *der, size_t len, bool *known)
{
	const struct spki_form *f;

	*known = false;
	for (size_t i = 0; i < sizeof(spki_forms) / sizeof(spki_forms[0]); i++) {
		f = &spki_forms[i];
		if (len != f->prefix_len + f->key_len || memcmp(der, f->prefix, f->prefix_len))
			continue;
		*known = true;
		if (!f->group)
			return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL,
			                                   der + f->prefix_len, f->key_len);
		return ec_key_from_point(f->group, der + f->prefix_len, f->key_len);
	}
	return NULL;
}

/*
 * decode_key() - decodes publicKey.rawBytes
 * @der, @len: in: the DER bytes
 * @details: in: publicKey.keyDetails, or NULL
 *
 * PKIX SubjectPublicKeyInfo; keys whose details say PKCS1_RSA_* may also be
 * a bare PKCS#1 RSAPublicKey, as in the staging root. Either must be
 * consumed whole.
 *
 * Return: the key, or NULL.
 */
static EVP_PKEY *decode_key(const uint8_t *der, size_t len, const char *details)
{
	const unsigned char *p = der;
	EVP_PKEY *pkey;
	bool known;

	if (len > LONG_MAX)
		return NULL;
	pkey = decode_spki_fast(der, len, &known);
	if (pkey || known) {
		ERR_clear_error();
		return pkey;
	}
	pkey = d2i_PUBKEY(NULL, &p, (long)len);
	if (pkey && p == der + len)
		return pkey;
	EVP_PKEY_free(pkey);
	ERR_clear_error();
	if (!details || strncmp(details, "PKCS1_RSA_", 10))
		return NULL;
	p = der;
	pkey = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, (long)len);
	if (pkey && p == der + len)
		return pkey;
	EVP_PKEY_free(pkey);
	ERR_clear_error();
	return NULL;
}

/*
 * parse_log() - parses one TransparencyLogInstance (a tlog or CT log)
 * @label: in: the file, for messages
 * @item: in: the JSON object
 * @path: in: its path, e.g. "tlogs[1]"
 * @log: out: the log, zeroed by the caller; freed by log_clear() even on
 *       failure
 * @err: out: the message on failure
 *
 * Return: 0, -EBADMSG or -ENOMEM.
 */
static int parse_log(const char *label, const cJSON *item, const char *path, struct ss_log *log,
                     struct mv_err *err)
{
	const cJSON *pk, *lid;
	uint8_t *raw = NULL, *id = NULL;
	size_t raw_len, id_len;
	char p[SS_PATH_SIZE];
	int ret;

	if (!cJSON_IsObject(item))
		return mv_err_set(err, -EBADMSG, "%s: %s: expected an object", label, path);
	ret = member_strdup(label, item, path, "baseUrl", &log->base_url, err);
	if (ret)
		goto out;
	ret = -EBADMSG;
	if (ss_json_member(label, item, path, "publicKey", cJSON_Object, true, &pk, err) ||
	    ss_json_member(label, item, path, "logId", cJSON_Object, true, &lid, err))
		goto out;
	ss_json_path(p, "%s.publicKey", path);
	ret = member_strdup(label, pk, p, "keyDetails", &log->key_details, err);
	if (!ret)
		ret = parse_window(label, pk, p, &log->valid, err);
	if (!ret)
		ret = ss_json_bytes(label, pk, p, "rawBytes", 0, &raw, &raw_len, err);
	if (ret)
		goto out;
	log->pkey = decode_key(raw, raw_len, log->key_details);
	if (!log->pkey) {
		ret = mv_err_set(err, -EBADMSG,
		                 "%s: %s.rawBytes: not a public key OpenSSL can decode", label, p);
		goto out;
	}
	if (!key_matches(log->pkey, log->key_details)) {
		ret = mv_err_set(err, -EBADMSG, "%s: %s: the key is not a %s key", label, p,
		                 MV_P(log->key_details));
		goto out;
	}
	ss_json_path(p, "%s.logId", path);
	ret = ss_json_bytes(label, lid, p, "keyId", 0, &id, &id_len, err);
	if (ret)
		goto out;
	if (id_len > sizeof(log->log_id)) {
		ret = mv_err_set(err, -EBADMSG, "%s: %s.keyId: %zu bytes, at most %zu expected",
		                 label, p, id_len, sizeof(log->log_id));
		goto out;
	}
	memcpy(log->log_id, id, id_len);
	log->log_id_len = id_len;
out:
	free(raw);
	free(id);
	return ret;
}

/*
 * parse_chain() - parses certChain.certificates of a CA or TSA
 * @label: in: the file, for messages
 * @item: in: the CertificateAuthority object
 * @path: in: its path
 * @ca: out: ca->certs, allocated here
 * @err: out: the message on failure
 *
 * Return: 0, -EBADMSG (missing, empty, over SS_MAX_CHAIN, bad DER) or -ENOMEM.
 */
static int parse_chain(const char *label, const cJSON *item, const char *path, struct ss_ca *ca,
                       struct mv_err *err)
{
	char p[SS_PATH_SIZE], pc[SS_PATH_SIZE];
	const cJSON *chain, *certs, *c;
	size_t n, i = 0;
	X509 *x;
	int ret;

	if (ss_json_member(label, item, path, "certChain", cJSON_Object, true, &chain, err))
		return -EBADMSG;
	ss_json_path(p, "%s.certChain", path);
	if (ss_json_array(label, chain, p, "certificates", SS_MAX_CHAIN, &certs, &n, err))
		return -EBADMSG;
	if (n == 0)
		return mv_err_set(err, -EBADMSG, "%s: %s.certificates: missing or empty", label, p);
	ca->certs = sk_X509_new_null();
	if (!ca->certs)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", label);
	cJSON_ArrayForEach(c, certs)
	{
		ss_json_path(pc, "%s.certificates[%zu]", p, i++);
		ret = ss_json_cert(label, pc, c, &x, err);
		if (ret)
			return ret;
		if (!sk_X509_push(ca->certs, x)) {
			X509_free(x);
			return mv_err_set(err, -ENOMEM, "%s: out of memory", label);
		}
	}
	return 0;
}

/*
 * parse_ca() - parses one CertificateAuthority (Fulcio or a TSA)
 * @label, @item, @path: in: as parse_log()
 * @ca: out: zeroed by the caller; freed by ca_clear() even on failure
 * @err: out: the message on failure
 *
 * Return: 0, -EBADMSG or -ENOMEM.
 */
static int parse_ca(const char *label, const cJSON *item, const char *path, struct ss_ca *ca,
                    struct mv_err *err)
{
	int ret;

	if (!cJSON_IsObject(item))
		return mv_err_set(err, -EBADMSG, "%s: %s: expected an object", label, path);
	ret = member_strdup(label, item, path, "uri", &ca->uri, err);
	if (!ret)
		ret = parse_window(label, item, path, &ca->valid, err);
	if (!ret)
		ret = parse_chain(label, item, path, ca, err);
	return ret;
}

static void log_clear(struct ss_log *log)
{
	EVP_PKEY_free(log->pkey);
	free(log->key_details);
	free(log->base_url);
}

static void ca_clear(struct ss_ca *ca)
{
	sk_X509_pop_free(ca->certs, X509_free);
	free(ca->uri);
}

/* Parses one element of a root's array into @elem (parse_log, parse_ca). */
typedef int (*item_fn)(const char *label, const cJSON *item, const char *path, void *elem,
                       struct mv_err *err);

static int log_item(const char *label, const cJSON *item, const char *path, void *elem,
                    struct mv_err *err)
{
	return parse_log(label, item, path, elem, err);
}

static int ca_item(const char *label, const cJSON *item, const char *path, void *elem,
                   struct mv_err *err)
{
	return parse_ca(label, item, path, elem, err);
}

/*
 * parse_items() - parses an optional array of logs ("tlogs", "ctlogs") or
 * certificate authorities ("certificateAuthorities", "timestampAuthorities")
 * @label: in: the file
 * @top: in: the root object
 * @key: in: the member name
 * @size, @fn: in: an element's size and its parser
 * @n: out: the array's length (0 when absent)
 * @ret: out: 0, -EBADMSG or -ENOMEM
 * @err: out: the message on failure
 *
 * Return: the calloc'd array (NULL when absent), also on failure: it holds
 * what was parsed, for ss_root_free().
 */
static void *parse_items(const char *label, const cJSON *top, const char *key, size_t size,
                         item_fn fn, size_t *n, int *ret, struct mv_err *err)
{
	const cJSON *arr, *item;
	size_t count, i = 0;
	char path[SS_PATH_SIZE];
	char *out;

	*ret = 0;
	if (ss_json_array(label, top, "", key, SS_MAX_ROOT_ITEMS, &arr, &count, err)) {
		*ret = -EBADMSG;
		return NULL;
	}
	if (!count)
		return NULL;
	out = calloc(count, size);
	if (!out) {
		*ret = mv_err_set(err, -ENOMEM, "%s: out of memory", label);
		return NULL;
	}
	cJSON_ArrayForEach(item, arr)
	{
		ss_json_path(path, "%s[%zu]", key, i);
		*n = ++i;
		*ret = fn(label, item, path, out + (i - 1) * size, err);
		if (*ret)
			break;
	}
	return out;
}

/*
 * check_media_type() - checks the root's mediaType
 * @label: in: the file
 * @top: in: the root object
 * @err: out: the message on failure
 *
 * Return: 0 or -EBADMSG.
 */
static int check_media_type(const char *label, const cJSON *top, struct mv_err *err)
{
	const cJSON *mt;
	const char *s;

	if (ss_json_member(label, top, "", "mediaType", cJSON_String, true, &mt, err))
		return -EBADMSG;
	s = mt->valuestring;
	if (strcmp(s, ROOT_MEDIA_TYPE_01) && strcmp(s, ROOT_MEDIA_TYPE_01_NEW) &&
	    strcmp(s, ROOT_MEDIA_TYPE_02))
		return mv_err_set(err, -EBADMSG, "%s: mediaType: unsupported trusted root \"%s\"",
		                  label, MV_P(s));
	return 0;
}

/**
 * ss_root_parse() - parses a trusted root
 * @label: in: names the file in messages
 * @json, @len: in: the untrusted JSON text (need not be NUL-terminated)
 * @out: out: the root, owned by the caller (ss_root_free()); NULL on failure
 * @err: out: one line on failure
 *
 * Return: 0, -EBADMSG (malformed: JSON, media type, member types, base64,
 * DER, keys, windows, bounds) or -ENOMEM.
 */
int ss_root_parse(const char *label, const char *json, size_t len, struct ss_root **out,
                  struct mv_err *err)
{
	struct ss_root *r = NULL;
	cJSON *top = NULL;
	int ret;

	*out = NULL;
	if (len > SS_MAX_JSON)
		return mv_err_set(err, -EBADMSG, "%s: trusted root too large (%zu bytes)", label,
		                  len);
	ret = mv_json_parse_strict(label, "trusted root", json, len, &top, err);
	if (ret) {
		ret = ret == -ENOMEM ? ret : ss_json_recode(err, -EBADMSG);
		goto out;
	}
	ret = -EBADMSG;
	if (!cJSON_IsObject(top)) {
		mv_err_set(err, ret, "%s: trusted root is not a JSON object", label);
		goto out;
	}
	if (check_media_type(label, top, err))
		goto out;
	r = calloc(1, sizeof(*r));
	if (!r) {
		ret = mv_err_set(err, -ENOMEM, "%s: out of memory", label);
		goto out;
	}
	r->cas = parse_items(label, top, "certificateAuthorities", sizeof(*r->cas), ca_item,
	                     &r->n_cas, &ret, err);
	if (!ret)
		r->tsas = parse_items(label, top, "timestampAuthorities", sizeof(*r->tsas), ca_item,
		                      &r->n_tsas, &ret, err);
	if (!ret)
		r->tlogs = parse_items(label, top, "tlogs", sizeof(*r->tlogs), log_item,
		                       &r->n_tlogs, &ret, err);
	if (!ret)
		r->ctlogs = parse_items(label, top, "ctlogs", sizeof(*r->ctlogs), log_item,
		                        &r->n_ctlogs, &ret, err);
	if (ret)
		goto out;
	*out = r;
	r = NULL;
out:
	ss_root_free(r);
	cJSON_Delete(top);
	return ret;
}

/**
 * ss_root_load() - reads and parses a trusted root file
 * @path: in: the file (a user-given path, symbolic links followed; refused
 *        over SS_MAX_JSON)
 * @out: out: the root, owned by the caller
 * @err: out: one line on failure
 *
 * Return: 0, a negative errno of the read, -EBADMSG or -ENOMEM.
 */
int ss_root_load(const char *path, struct ss_root **out, struct mv_err *err)
{
	char *buf = NULL, *real;
	size_t len = 0;
	int ret;

	*out = NULL;
	/* mv_read_file() refuses symbolic links; a path the user names may be one. */
	real = realpath(path, NULL);
	if (!real)
		return mv_err_set(err, -errno, "%s: cannot open: %s", path, strerror(errno));
	ret = mv_read_file(real, SS_MAX_JSON, &buf, &len, err);
	if (!ret)
		ret = ss_root_parse(path, buf, len, out, err);
	free(buf);
	free(real);
	return ret;
}

/**
 * ss_root_free() - frees a trusted root
 * @root: in: the root, or NULL
 */
void ss_root_free(struct ss_root *root)
{
	if (!root)
		return;
	for (size_t i = 0; i < root->n_cas; i++)
		ca_clear(&root->cas[i]);
	for (size_t i = 0; i < root->n_tsas; i++)
		ca_clear(&root->tsas[i]);
	for (size_t i = 0; i < root->n_tlogs; i++)
		log_clear(&root->tlogs[i]);
	for (size_t i = 0; i < root->n_ctlogs; i++)
		log_clear(&root->ctlogs[i]);
	free(root->cas);
	free(root->tsas);
	free(root->tlogs);
	free(root->ctlogs);
	free(root);
}
