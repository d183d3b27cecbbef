// SPDX-License-Identifier: Apache-2.0
/*
 * dsse.c - DSSE pre-authentication encoding and the strict JSON front end
 * shared by the bundle and statement parsers.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sig_internal.h"

/**
 * mv_dsse_pae() - DSSE v1 pre-authentication encoding
 * @type: in: payload type (NUL-terminated)
 * @body, @body_len: in: payload bytes
 * @out, @out_len: out: malloc'd "DSSEv1 <len> <type> <len> <body>"
 *
 * Return: 0, -EOVERFLOW or -ENOMEM.
 */
int mv_dsse_pae(const char *type, const void *body, size_t body_len, uint8_t **out, size_t *out_len)
{
	size_t type_len = strlen(type), head_len, total;
	char head[64];
	uint8_t *buf;
	int n;

	*out = NULL;
	*out_len = 0;
	n = snprintf(head, sizeof(head), "DSSEv1 %zu ", type_len);
	if (n < 0 || (size_t)n >= sizeof(head))
		return -EOVERFLOW;
	head_len = (size_t)n;
	/* head + type + " " + up to 20 digits + " " + body */
	if (type_len > SIZE_MAX - head_len - 64 || body_len > SIZE_MAX - head_len - type_len - 64)
		return -EOVERFLOW;
	buf = malloc(head_len + type_len + 64 + body_len);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, head, head_len);
	memcpy(buf + head_len, type, type_len);
	total = head_len + type_len;
	n = snprintf((char *)buf + total, 64, " %zu ", body_len);
	if (n < 0 || n >= 64) {
		free(buf);
		return -EOVERFLOW;
	}
	total += (size_t)n;
	if (body_len)
		memcpy(buf + total, body, body_len);
	*out = buf;
	*out_len = total + body_len;
	return 0;
}

/*
 * Scans JSON text for a "\u0000" escape inside a string. cJSON would decode
 * it and silently cut the string at the NUL, so "a\u0000/../b" would be seen
 * as "a" here and as something else by other verifiers.
 */
static bool json_has_nul_escape(const char *s, size_t len)
{
	bool in_str = false;

	for (size_t i = 0; i < len; i++) {
		if (!in_str) {
			in_str = s[i] == '"';
			continue;
		}
		if (s[i] == '"') {
			in_str = false;
		} else if (s[i] == '\\' && i + 1 < len) {
			if (s[i + 1] == 'u' && i + 5 < len && memcmp(s + i + 2, "0000", 4) == 0)
				return true;
			i++; /* skip the escaped character */
		}
	}
	return false;
}

/* Compares member names for qsort. */
static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Finds a member name given twice in any object of the tree. Returns the
 * duplicated name or NULL (and sets *oom on allocation failure). Recursion
 * depth is bounded by cJSON's nesting limit.
 */
static const char *json_find_dup(const cJSON *item, bool *oom)
{
	const char **names = NULL;
	const char *dup = NULL;
	size_t n = 0, i = 0;
	const cJSON *c;

	for (c = item->child; c && !dup; c = c->next) {
		if (cJSON_IsObject(c) || cJSON_IsArray(c))
			dup = json_find_dup(c, oom);
		n++;
	}
	if (dup || *oom || !cJSON_IsObject(item) || n < 2)
		return dup;
	if (n <= 8) {
		/* Small objects (the common case): pairwise, no allocation. */
		for (c = item->child; c && !dup; c = c->next) {
			for (const cJSON *d = c->next; d && !dup; d = d->next) {
				if (c->string && d->string && strcmp(c->string, d->string) == 0)
					dup = d->string;
			}
		}
		return dup;
	}
	names = malloc(n * sizeof(*names));
	if (!names) {
		*oom = true;
		return NULL;
	}
	for (c = item->child; c; c = c->next)
		names[i++] = c->string ? c->string : "";
	qsort(names, n, sizeof(*names), cmp_names);
	for (i = 1; i < n && !dup; i++) {
		if (strcmp(names[i - 1], names[i]) == 0)
			dup = names[i];
	}
	free(names);
	return dup;
}

/**
 * mv_json_parse_strict() - parse untrusted JSON
 * @label: in: file name for messages
 * @what: in: which document ("bundle", "statement")
 * @json, @len: in: text, need not be NUL-terminated
 * @out: out: the tree (cJSON_Delete it)
 * @err: out: error line
 *
 * Return: 0, -EINVAL or -ENOMEM.
 */
int mv_json_parse_strict(const char *label, const char *what, const char *json, size_t len,
                         cJSON **out, struct mv_err *err)
{
	char pbuf[MV_PRINTABLE_SIZE];
	const char *dup;
	bool oom = false;
	char *buf = NULL;
	cJSON *root;
	int ret;

	*out = NULL;
	if (len > MV_MAX_SIG_SIZE)
		return mv_err_set(err, -EINVAL, "%s: %s too large (%zu bytes)", label, what, len);
	if (memchr(json, 0, len))
		return mv_err_set(err, -EINVAL, "%s: %s contains a NUL byte", label, what);
	/*
	 * Other verifiers decode the payload as UTF-8 before parsing; accepting
	 * bytes they refuse would let one signature mean different things to
	 * different verifiers.
	 */
	if (!mv_utf8_valid(json, len))
		return mv_err_set(err, -EINVAL, "%s: %s is not valid UTF-8", label, what);
	if (json_has_nul_escape(json, len))
		return mv_err_set(err, -EINVAL, "%s: %s contains a \\u0000 escape", label, what);
	/* cJSON needs a terminator to reject trailing garbage. */
	buf = malloc(len + 1);
	if (!buf)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", label);
	memcpy(buf, json, len);
	buf[len] = '\0';
	root = cJSON_ParseWithLengthOpts(buf, len + 1, NULL, true);
	if (!root) {
		ret = mv_err_set(err, -EINVAL, "%s: %s is not valid JSON (truncated or malformed)",
		                 label, what);
		goto out;
	}
	dup = json_find_dup(root, &oom);
	if (oom || dup) {
		ret = oom ? mv_err_set(err, -ENOMEM, "%s: out of memory", label)
		          : mv_err_set(err, -EINVAL, "%s: %s has member \"%s\" twice", label, what,
		                       mv_printable(dup, pbuf, sizeof(pbuf)));
		cJSON_Delete(root);
		goto out;
	}
	*out = root;
	ret = 0;
out:
	free(buf);
	return ret;
}

/**
 * mv_printable() - make untrusted text safe for a one-line message
 * @s: in: text (may be NULL)
 * @buf, @size: out: the copy, truncated to fit
 */
const char *mv_printable(const char *s, char *buf, size_t size)
{
	size_t i = 0;

	if (!size)
		return "";
	for (; s && s[i] && i + 1 < size && i < 300; i++)
		buf[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
	buf[i] = '\0';
	return buf;
}

/**
 * mv_json_type_name() - describe JSON type bits for messages
 * @types: in: cJSON type bits
 */
const char *mv_json_type_name(int types)
{
	if (types & cJSON_String)
		return "a string";
	if (types & cJSON_Number)
		return "a number";
	if (types & cJSON_Array)
		return "an array";
	if (types & cJSON_Object)
		return "an object";
	if (types & (cJSON_True | cJSON_False))
		return "a boolean";
	if (types & cJSON_NULL)
		return "null";
	return "a value";
}

/**
 * mv_json_member() - typed member lookup with a precise message
 * @label: in: file name for messages
 * @obj: in: the object (must be a JSON object)
 * @path: in: path of @obj for messages ("" for the root)
 * @key: in: member name
 * @types: in: accepted cJSON type bits
 * @required: in: whether a missing member is an error
 * @out: out: the member, or NULL if absent and optional
 * @err: out: error line, e.g. "model.sig: dsseEnvelope.payload: expected a string"
 */
int mv_json_member(const char *label, const cJSON *obj, const char *path, const char *key,
                   int types, bool required, const cJSON **out, struct mv_err *err)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, key);
	const char *dot = *path ? "." : "";

	*out = NULL;
	if (!m) {
		if (!required)
			return 0;
		return mv_err_set(err, -EINVAL, "%s: %s%s%s: missing", label, path, dot, key);
	}
	if (!(m->type & 0xff & types))
		return mv_err_set(err, -EINVAL, "%s: %s%s%s: expected %s", label, path, dot, key,
		                  mv_json_type_name(types));
	*out = m;
	return 0;
}
