// SPDX-License-Identifier: Apache-2.0
/*
 * ss_json.c - the proto3 JSON reading shared by the trusted root and bundle
 * parsers (ss_root.c, ss_bundle.c): typed member look-ups where null means
 * absent, padded standard base64 (line breaks allowed, as protobuf JSON
 * decoders allow them) with size bounds, int64 as decimal
 * strings, bounded arrays, DER certificates consumed whole, and member
 * paths for one-line messages. See ss_json.h.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "sig_internal.h"
#include "ss_json.h"

/**
 * ss_json_recode() - changes the code of a recorded error
 * @err: in/out: the error (may be NULL); its line is kept
 * @code: in: the negative errno to report
 *
 * Return: @code.
 */
int ss_json_recode(struct mv_err *err, int code)
{
	if (err)
		err->code = code;
	return code;
}

/*
 * ss_json_path() - formats a member path for messages into @buf (SS_PATH_SIZE bytes);
 * a path too long is cut, which only shortens a message
 * @buf: out: the path
 * @fmt: in: printf format
 *
 * Return: @buf.
 */
const char *ss_json_path(char *buf, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, SS_PATH_SIZE, fmt, ap);
	va_end(ap);
	return buf;
}

/*
 * ss_json_join() - builds a member path for messages: "@base.@key" or "@key"
 * @buf: out: SS_PATH_SIZE bytes
 * @base, @key: in: the parts
 *
 * Return: @buf.
 */
const char *ss_json_join(char *buf, const char *base, const char *key)
{
	return ss_json_path(buf, "%s%s%s", base, *base ? "." : "", key);
}

/*
 * b64_unwrap() - base64 text without its line breaks
 * @s: in: the text, NUL-terminated
 * @flat: out: a malloc'd copy of @s without "\n" and "\r", or NULL when
 *         @s has none (then @s is the text to decode)
 * @n: out: the length of the text to decode
 *
 * Protobuf JSON decoders (Go's protojson, Python's json_format) accept
 * base64 wrapped into lines in bytes fields, and bundles made with
 * `base64` carry it so. Only line breaks go; any other character is left
 * for the decoder to refuse.
 *
 * Return: 0 or -ENOMEM.
 */
static int b64_unwrap(const char *s, char **flat, size_t *n)
{
	char *d;

	*flat = NULL;
	*n = strlen(s);
	if (!strpbrk(s, "\r\n"))
		return 0;
	*flat = malloc(*n + 1);
	if (!*flat)
		return -ENOMEM;
	d = *flat;
	for (; *s; s++)
		if (*s != '\n' && *s != '\r')
			*d++ = *s;
	*d = '\0';
	*n = (size_t)(d - *flat);
	return 0;
}

/*
 * ss_json_b64() - decodes base64 string @s into exactly or at most some bytes
 * @label, @path: in: for messages (@path names the member)
 * @s: in: the base64 text: padded standard base64, which may be wrapped
 *     into lines ("\n" or "\r\n" anywhere); no other whitespace
 * @max: in: the most bytes allowed; 0 for no bound beyond the input's
 * @out, @len: out: malloc'd bytes
 * @err: out: the message on failure
 *
 * Return: 0, -EBADMSG (bad base64, empty, over @max) or -ENOMEM.
 */
int ss_json_b64(const char *label, const char *path, const char *s, size_t max, uint8_t **out,
                size_t *len, struct mv_err *err)
{
	char *flat = NULL;
	size_t n = 0;
	int ret;

	*out = NULL;
	*len = 0;
	ret = b64_unwrap(s, &flat, &n);
	if (!ret)
		ret = mv_base64_decode(flat ? flat : s, n, out, len);
	free(flat);
	if (ret == -ENOMEM)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", label);
	if (!ret && *len && (!max || *len <= max))
		return 0;
	free(*out);
	*out = NULL;
	if (ret)
		return mv_err_set(err, -EBADMSG, "%s: %s: not valid base64", label, path);
	if (!*len)
		return mv_err_set(err, -EBADMSG, "%s: %s: empty", label, path);
	return mv_err_set(err, -EBADMSG, "%s: %s: %zu bytes, at most %zu expected", label, path,
	                  *len, max);
}

/*
 * ss_json_member() - mv_json_member() where an optional member given as JSON null
 * counts as absent, as proto3 JSON reads it
 * @label, @obj, @path, @key, @types, @required: in: as mv_json_member()
 * @out: out: the member, or NULL when absent or null
 * @err: out: the message on failure
 *
 * Return: 0 or -EBADMSG.
 */
int ss_json_member(const char *label, const cJSON *obj, const char *path, const char *key,
                   int types, bool required, const cJSON **out, struct mv_err *err)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, key);

	*out = NULL;
	if (!required && cJSON_IsNull(m))
		return 0;
	if (mv_json_member(label, obj, path, key, types, required, out, err))
		return ss_json_recode(err, -EBADMSG);
	return 0;
}

/*
 * ss_json_bytes() - decodes a required base64 string member
 * @label: in: the file
 * @obj, @path, @key: in: the object, its path and the member's name
 * @max: in: as ss_json_b64()
 * @out, @len: out: malloc'd bytes
 * @err: out: the message on failure
 *
 * Return: 0, -EBADMSG or -ENOMEM.
 */
int ss_json_bytes(const char *label, const cJSON *obj, const char *path, const char *key,
                  size_t max, uint8_t **out, size_t *len, struct mv_err *err)
{
	char p[SS_PATH_SIZE];
	const cJSON *m;

	*out = NULL;
	*len = 0;
	if (ss_json_member(label, obj, path, key, cJSON_String, true, &m, err))
		return -EBADMSG;
	return ss_json_b64(label, ss_json_join(p, path, key), m->valuestring, max, out, len, err);
}

/*
 * ss_json_fixed() - decodes a required base64 member of exactly @n bytes
 * @label, @obj, @path, @key: in: as ss_json_bytes()
 * @dst: out: @n bytes
 * @n: in: the size expected
 * @err: out: the message on failure
 *
 * Return: 0, -EBADMSG or -ENOMEM.
 */
int ss_json_fixed(const char *label, const cJSON *obj, const char *path, const char *key,
                  uint8_t *dst, size_t n, struct mv_err *err)
{
	char p[SS_PATH_SIZE];
	uint8_t *b;
	size_t len;
	int ret;

	ret = ss_json_bytes(label, obj, path, key, n, &b, &len, err);
	if (ret)
		return ret;
	if (len != n)
		ret = mv_err_set(err, -EBADMSG, "%s: %s: %zu bytes, %zu expected", label,
		                 ss_json_join(p, path, key), len, n);
	else
		memcpy(dst, b, n);
	free(b);
	return ret;
}

/*
 * int64_of() - parses a proto3 JSON int64: a string of decimal digits
 * @label, @path: in: for messages
 * @s: in: the text
 * @out: out: the value
 * @err: out: the message on failure
 *
 * Return: 0, or -EBADMSG for a sign, anything but digits, or overflow.
 */
static int int64_of(const char *label, const char *path, const char *s, int64_t *out,
                    struct mv_err *err)
{
	uint64_t v = 0;
	size_t i;

	*out = 0;
	if (s[0] == '-')
		return mv_err_set(err, -EBADMSG, "%s: %s: negative (\"%s\")", label, path, MV_P(s));
	for (i = 0; s[i]; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		if (d > 9)
			break;
		if (v > ((uint64_t)INT64_MAX - d) / 10)
			return mv_err_set(err, -EBADMSG, "%s: %s: out of range (\"%s\")", label,
			                  path, MV_P(s));
		v = v * 10 + d;
	}
	if (i == 0 || s[i])
		return mv_err_set(err, -EBADMSG, "%s: %s: not a decimal string (\"%s\")", label,
		                  path, MV_P(s));
	*out = (int64_t)v;
	return 0;
}

/*
 * ss_json_int64() - reads an int64 member; absent means 0, as in proto3
 * @label, @obj, @path, @key: in: as ss_json_bytes()
 * @out: out: the value
 * @err: out: the message on failure
 *
 * Return: 0 or -EBADMSG (not a string, not a non-negative decimal int64).
 */
int ss_json_int64(const char *label, const cJSON *obj, const char *path, const char *key,
                  int64_t *out, struct mv_err *err)
{
	char p[SS_PATH_SIZE];
	const cJSON *m;

	*out = 0;
	if (ss_json_member(label, obj, path, key, cJSON_String, false, &m, err))
		return -EBADMSG;
	return m ? int64_of(label, ss_json_join(p, path, key), m->valuestring, out, err) : 0;
}

/*
 * ss_json_array() - looks up an optional array member and bounds it
 * @label, @obj, @path, @key: in: as ss_json_bytes()
 * @max: in: the most items allowed
 * @out, @n: out: the array (NULL when absent) and its size
 * @err: out: the message on failure
 *
 * Return: 0 or -EBADMSG.
 */
int ss_json_array(const char *label, const cJSON *obj, const char *path, const char *key,
                  size_t max, const cJSON **out, size_t *n, struct mv_err *err)
{
	char p[SS_PATH_SIZE];
	int size;

	*n = 0;
	if (ss_json_member(label, obj, path, key, cJSON_Array, false, out, err))
		return -EBADMSG;
	if (!*out)
		return 0;
	size = cJSON_GetArraySize(*out);
	if (size < 0 || (size_t)size > max)
		return mv_err_set(err, -EBADMSG, "%s: %s: more than %zu items", label,
		                  ss_json_join(p, path, key), max);
	*n = (size_t)size;
	return 0;
}

/*
 * ss_json_string() - copies a short required string member into a buffer
 * @label, @obj, @path, @key: in: as ss_json_bytes()
 * @dst, @size: out: the buffer; the string must fit with its NUL
 * @err: out: the message on failure
 *
 * Return: 0 or -EBADMSG (missing, not a string, empty or too long).
 */
int ss_json_string(const char *label, const cJSON *obj, const char *path, const char *key,
                   char *dst, size_t size, struct mv_err *err)
{
	char p[SS_PATH_SIZE];
	const cJSON *m;
	size_t n;

	if (ss_json_member(label, obj, path, key, cJSON_String, true, &m, err))
		return -EBADMSG;
	n = strlen(m->valuestring);
	if (n == 0 || n >= size)
		return mv_err_set(err, -EBADMSG, "%s: %s: %s", label, ss_json_join(p, path, key),
		                  n ? "too long" : "empty");
	memcpy(dst, m->valuestring, n + 1);
	return 0;
}

/*
 * ss_json_cert() - decodes a {"rawBytes": base64 DER} certificate object
 * @label, @path: in: the object's path, for messages
 * @obj: in: the object
 * @out: out: the certificate
 * @err: out: the message on failure
 *
 * Return: 0, -EBADMSG (not an object, bad base64, not DER or bytes left
 * over) or -ENOMEM.
 */
int ss_json_cert(const char *label, const char *path, const cJSON *obj, X509 **out,
                 struct mv_err *err)
{
	const unsigned char *p;
	uint8_t *der;
	size_t len;
	int ret;

	*out = NULL;
	if (!cJSON_IsObject(obj))
		return mv_err_set(err, -EBADMSG, "%s: %s: expected an object", label, path);
	ret = ss_json_bytes(label, obj, path, "rawBytes", 0, &der, &len, err);
	if (ret)
		return ret;
	p = der;
	if (len <= LONG_MAX)
		*out = d2i_X509(NULL, &p, (long)len);
	if (!*out || p != der + len) {
		X509_free(*out);
		*out = NULL;
		ERR_clear_error();
		ret = mv_err_set(err, -EBADMSG, "%s: %s.rawBytes: not a DER certificate", label,
		                 path);
	}
	free(der);
	return ret;
}
