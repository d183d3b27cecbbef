// SPDX-License-Identifier: Apache-2.0
/*
 * parse.c - parsers of what a registry sends: OCI image manifests, image
 * indexes (referrers answers) and WWW-Authenticate challenges. Everything
 * here is untrusted input, fuzzed by tests/fuzz/fuzz_oci.c: lengths are
 * bounded, digests must be sha256 and well formed, strings must be UTF-8
 * without NUL.
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fsremote.h"

#define STR_MAX 4096 /* a media type, an annotation we keep */

/* A string member of @o, or NULL if absent or not a bounded string. */
static const char *get_str(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!cJSON_IsString(v) || !v->valuestring || strlen(v->valuestring) > STR_MAX)
		return NULL;
	return v->valuestring;
}

/* Copies an optional string member into *@out (NULL if absent). */
static int dup_opt(const cJSON *o, const char *key, char **out)
{
	const char *s = get_str(o, key);

	*out = NULL;
	if (!s)
		return 0;
	*out = strdup(s);
	return *out ? 0 : -ENOMEM;
}

static void desc_free(struct mfr_desc *d)
{
	free(d->media_type);
	free(d->artifact_type);
	free(d->title);
	free(d->filepath);
	free(d->packed);
	memset(d, 0, sizeof(*d));
}

/* Fills @d from the descriptor object @o: mediaType, digest, size required. */
static int desc_parse(const cJSON *o, struct mfr_desc *d)
{
	const cJSON *size = cJSON_GetObjectItemCaseSensitive(o, "size");
	const cJSON *ann = cJSON_GetObjectItemCaseSensitive(o, "annotations");
	const char *digest = get_str(o, "digest");
	int ret = -EBADMSG;

	memset(d, 0, sizeof(*d));
	if (!cJSON_IsObject(o) || !get_str(o, "mediaType") || !mfr_digest_valid(digest))
		goto out;
	if (!cJSON_IsNumber(size) || size->valuedouble < 0 ||
	    size->valuedouble > 9007199254740992.0 ||
	    size->valuedouble != (double)(uint64_t)size->valuedouble)
		goto out;
	if (ann && !cJSON_IsObject(ann))
		goto out;
	d->size = (uint64_t)size->valuedouble;
	memcpy(d->digest, digest, MFR_DIGEST_LEN + 1);
	ret = dup_opt(o, "mediaType", &d->media_type);
	if (!ret)
		ret = dup_opt(o, "artifactType", &d->artifact_type);
	if (!ret && ann)
		ret = dup_opt(ann, MFR_ANN_TITLE, &d->title);
	if (!ret && ann)
		ret = dup_opt(ann, MFR_ANN_FILEPATH, &d->filepath);
	if (!ret && ann)
		ret = dup_opt(ann, MFR_ANN_PACKED, &d->packed);
out:
	if (ret)
		desc_free(d);
	return ret;
}

/* Parses the array @arr of descriptors into a malloc'd *@out, *@n of them. */
static int descs_parse(const cJSON *arr, struct mfr_desc **out, size_t *n)
{
	int count = cJSON_GetArraySize(arr);
	const cJSON *it;
	size_t i = 0;
	int ret = 0;

	*out = NULL;
	*n = 0;
	if (!cJSON_IsArray(arr))
		return -EBADMSG;
	if ((size_t)count > MFR_MAX_DESCS)
		return -E2BIG;
	*out = calloc((size_t)count + 1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	cJSON_ArrayForEach(it, arr)
	{
		ret = desc_parse(it, &(*out)[i]);
		if (ret)
			break;
		i++;
	}
	*n = i;
	return ret;
}

static void descs_free(struct mfr_desc *d, size_t n)
{
	for (size_t i = 0; d && i < n; i++)
		desc_free(&d[i]);
	free(d);
}

/* Parses @json (not NUL-terminated) as an object with schemaVersion 2. */
static cJSON *parse_root(const char *json, size_t len, int *ret)
{
	const cJSON *sv;
	cJSON *root;

	*ret = -E2BIG;
	if (len > MFR_MANIFEST_MAX)
		return NULL;
	*ret = -EBADMSG;
	if (!mv_utf8_valid(json, len) || memchr(json, '\0', len))
		return NULL;
	root = cJSON_ParseWithLength(json, len);
	sv = cJSON_GetObjectItemCaseSensitive(root, "schemaVersion");
	if (!cJSON_IsObject(root) || !cJSON_IsNumber(sv) || sv->valuedouble != 2) {
		cJSON_Delete(root);
		return NULL;
	}
	*ret = 0;
	return root;
}

/* The manifest's members once @root is known to be a manifest object. */
static int manifest_fill(const cJSON *root, struct mfr_manifest *m)
{
	const cJSON *subject = cJSON_GetObjectItemCaseSensitive(root, "subject");
	int ret;

	ret = dup_opt(root, "mediaType", &m->media_type);
	if (!ret)
		ret = dup_opt(root, "artifactType", &m->artifact_type);
	if (!ret)
		ret = desc_parse(cJSON_GetObjectItemCaseSensitive(root, "config"), &m->config);
	if (!ret)
		ret = descs_parse(cJSON_GetObjectItemCaseSensitive(root, "layers"), &m->layers,
		                  &m->n_layers);
	if (!ret && subject) {
		ret = desc_parse(subject, &m->subject);
		m->has_subject = !ret;
	}
	return ret;
}

int mfr_manifest_parse(const char *json, size_t len, struct mfr_manifest **out, struct mv_err *err)
{
	struct mfr_manifest *m = NULL;
	int ret;
	cJSON *root = parse_root(json, len, &ret);

	*out = NULL;
	if (!root)
		goto out;
	m = calloc(1, sizeof(*m));
	ret = m ? manifest_fill(root, m) : -ENOMEM;
	if (!ret && m->media_type && strcmp(m->media_type, MFR_MT_MANIFEST) != 0)
		ret = -EBADMSG;
out:
	cJSON_Delete(root);
	if (ret) {
		mfr_manifest_free(m);
		return mv_err_set(err, ret, "manifest: %s",
		                  ret == -E2BIG ? "over the size limit"
		                                : "not a valid OCI image manifest");
	}
	*out = m;
	return 0;
}

void mfr_manifest_free(struct mfr_manifest *m)
{
	if (!m)
		return;
	free(m->media_type);
	free(m->artifact_type);
	desc_free(&m->config);
	descs_free(m->layers, m->n_layers);
	desc_free(&m->subject);
	free(m);
}

int mfr_index_parse(const char *json, size_t len, struct mfr_index **out, struct mv_err *err)
{
	struct mfr_index *ix = NULL;
	const char *mt;
	int ret;
	cJSON *root = parse_root(json, len, &ret);

	*out = NULL;
	if (!root)
		goto out;
	mt = get_str(root, "mediaType");
	ret = -EBADMSG;
	if (cJSON_GetObjectItemCaseSensitive(root, "mediaType") &&
	    (!mt || strcmp(mt, MFR_MT_INDEX)))
		goto out;
	ix = calloc(1, sizeof(*ix));
	ret = ix ? descs_parse(cJSON_GetObjectItemCaseSensitive(root, "manifests"), &ix->manifests,
	                       &ix->n)
	         : -ENOMEM;
out:
	cJSON_Delete(root);
	if (ret) {
		mfr_index_free(ix);
		return mv_err_set(err, ret, "index: %s",
		                  ret == -E2BIG ? "over the size limit"
		                                : "not a valid OCI image index");
	}
	*out = ix;
	return 0;
}

void mfr_index_free(struct mfr_index *ix)
{
	if (!ix)
		return;
	descs_free(ix->manifests, ix->n);
	free(ix);
}

/* ------------------------------------------------------------------------
 * WWW-Authenticate: Bearer realm="...",service="...",scope="..."
 * ------------------------------------------------------------------------ */

/* Reads a token or quoted string at *@p (up to @end) into malloc'd *@out. */
static int read_value(const char **p, const char *end, char **out)
{
	const char *s = *p;
	char *buf = malloc((size_t)(end - s) + 1);
	size_t n = 0;

	if (!buf)
		return -ENOMEM;
	if (s < end && *s == '"') {
		for (s++; s < end && *s != '"'; s++) {
			if (*s == '\\' && s + 1 < end)
				s++;
			if ((unsigned char)*s < 0x20)
				goto bad;
			buf[n++] = *s;
		}
		if (s >= end)
			goto bad;
		s++;
	} else {
		while (s < end && *s != ',' && !isspace((unsigned char)*s) &&
		       (unsigned char)*s > 0x20 && *s != '"')
			buf[n++] = *s++;
	}
	buf[n] = '\0';
	*p = s;
	*out = buf;
	return 0;
bad:
	free(buf);
	return -EBADMSG;
}

/* Stores @val under @key if it is one we keep (first one wins); frees it otherwise. */
static void keep_param(struct mfr_challenge *c, const char *key, size_t klen, char *val)
{
	char **slot = NULL;

	if (klen == 5 && strncasecmp(key, "realm", 5) == 0)
		slot = &c->realm;
	else if (klen == 7 && strncasecmp(key, "service", 7) == 0)
		slot = &c->service;
	else if (klen == 5 && strncasecmp(key, "scope", 5) == 0)
		slot = &c->scope;
	if (slot && !*slot) {
		*slot = val;
		return;
	}
	free(val);
}

/* Parses the k=v list of a Bearer challenge from @p to @end. */
static int parse_params(const char *p, const char *end, struct mfr_challenge *c)
{
	while (p < end) {
		const char *key;
		size_t klen;
		char *val;
		int ret;

		while (p < end && (isspace((unsigned char)*p) || *p == ','))
			p++;
		if (p >= end)
			break;
		key = p;
		while (p < end && (isalnum((unsigned char)*p) || *p == '_' || *p == '-'))
			p++;
		klen = (size_t)(p - key);
		if (!klen || p >= end || *p != '=')
			return -EBADMSG;
		p++;
		ret = read_value(&p, end, &val);
		if (ret)
			return ret;
		keep_param(c, key, klen, val);
	}
	return 0;
}

/* A realm must be an absolute https URL (http for a loopback host). */
static bool realm_ok(const char *realm)
{
	const char *h;
	char host[256];
	size_t n;

	if (!realm || strpbrk(realm, " \r\n"))
		return false;
	if (strncmp(realm, "https://", 8) == 0)
		return realm[8] != '\0';
	if (strncmp(realm, "http://", 7) != 0)
		return false;
	h = realm + 7;
	if (*h == '[') {
		n = strcspn(++h, "]");
	} else {
		n = strcspn(h, ":/");
	}
	if (!n || n >= sizeof(host))
		return false;
	memcpy(host, h, n);
	host[n] = '\0';
	return mfr_host_is_loopback(host);
}

int mfr_challenge_parse(const char *value, size_t len, struct mfr_challenge *out)
{
	const char *end = value + len;
	int ret = -EBADMSG;

	memset(out, 0, sizeof(*out));
	if (len > MFR_HEADER_MAX || memchr(value, '\0', len))
		goto out;
	while (value < end && isspace((unsigned char)*value))
		value++;
	if ((size_t)(end - value) >= 5 && strncasecmp(value, "Basic", 5) == 0 &&
	    (end - value == 5 || isspace((unsigned char)value[5]))) {
		ret = 0;
		goto out;
	}
	ret = -ENOTSUP;
	if ((size_t)(end - value) < 7 || strncasecmp(value, "Bearer ", 7) != 0)
		goto out;
	out->bearer = true;
	ret = parse_params(value + 7, end, out);
	if (!ret && !realm_ok(out->realm))
		ret = -EBADMSG;
out:
	if (ret)
		mfr_challenge_free(out);
	return ret;
}

void mfr_challenge_free(struct mfr_challenge *c)
{
	if (!c)
		return;
	free(c->realm);
	free(c->service);
	free(c->scope);
	memset(c, 0, sizeof(*c));
}
