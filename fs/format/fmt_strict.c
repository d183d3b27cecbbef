// SPDX-License-Identifier: Apache-2.0
/*
 * fmt_strict.c - strict recognisers for the formats the mount names
 * (safetensors: mfs_safetensors_check() in safetensors.c).
 *
 * A file is called GGUF, ONNX, npy or JSON only when its header
 * parses completely, to the rule its reference reader applies: a first byte
 * that looks right proves nothing, and polyglot files (issue #11) are made
 * exactly from headers that satisfy a loose check. These functions never
 * decide pickle-ness; mfs_scan() does that first, whatever they say.
 *
 * All readers go through an mfs_pread_fn (the mount's verified read path),
 * check every size against the file size before reading, and bound memory.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fmt_internal.h"

#define JSON_FULLPARSE  (64u << 20) /* larger JSON files are called text */
#define GGUF_MAX_COUNT  (1u << 24)  /* tensors or metadata pairs */
#define GGUF_MAX_STRING (1u << 24)
#define GGUF_MAX_DIMS   4
#define ONNX_MAX_FIELDS 4096

ssize_t mfs_read_at(mfs_pread_fn rd, void *ctx, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;

	while (got < len) {
		ssize_t r = rd(ctx, (uint8_t *)buf + got, len - got, off + got);

		if (r < 0)
			return r;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/* Reads exactly @len bytes at @off: 0, -EBADMSG when the file is shorter, or -errno. */
static int read_exact(mfs_pread_fn rd, void *ctx, void *buf, size_t len, uint64_t off)
{
	ssize_t r = mfs_read_at(rd, ctx, buf, len, off);

	if (r < 0)
		return (int)r;
	return (size_t)r == len ? 0 : -EBADMSG;
}

/* Reads [0, @len) of the file into a malloc'd, NUL-terminated buffer. */
static int read_head(mfs_pread_fn rd, void *ctx, uint64_t off, size_t len, char **out)
{
	char *buf = malloc(len + 1);
	int rc;

	*out = NULL;
	if (!buf)
		return -ENOMEM;
	rc = read_exact(rd, ctx, buf, len, off);
	if (rc) {
		free(buf);
		return rc;
	}
	buf[len] = 0;
	*out = buf;
	return 0;
}

/*
 * Valid UTF-8 without control bytes other than JSON's whitespace: cJSON
 * skips any byte below 0x21 as whitespace, where JSON (and serde_json, the
 * safetensors reference reader) refuses them.
 */
bool mfs_json_bytes_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
			return false;
	}
	return mv_utf8_valid(s, n);
}

/* ------------------------------------------------------------------- GGUF */

/* A bounded little-endian reader over the file (GGUF headers are small). */
struct lecur {
	mfs_pread_fn rd;
	void *ctx;
	uint64_t size, pos;
	int err; /* sticky: -EBADMSG (malformed) or -errno */
};

static bool cur_read(struct lecur *c, void *buf, size_t n)
{
	if (c->err)
		return false;
	if (n > c->size - c->pos) {
		c->err = -EBADMSG;
		return false;
	}
	c->err = read_exact(c->rd, c->ctx, buf, n, c->pos);
	c->pos += n;
	return !c->err;
}

static bool cur_u(struct lecur *c, unsigned n, uint64_t *v)
{
	uint8_t b[8];

	*v = 0;
	if (!cur_read(c, b, n))
		return false;
	for (unsigned i = 0; i < n; i++)
		*v |= (uint64_t)b[i] << (8 * i);
	return true;
}

static bool cur_skip(struct lecur *c, uint64_t n)
{
	if (c->err)
		return false;
	if (n > c->size - c->pos) {
		c->err = -EBADMSG;
		return false;
	}
	c->pos += n;
	return true;
}

/* A GGUF string: u64 length, then that many UTF-8 bytes (kept when @out). */
static bool gguf_string(struct lecur *c, char *out, size_t outlen)
{
	uint64_t n;

	if (!cur_u(c, 8, &n))
		return false;
	if (n > GGUF_MAX_STRING) {
		c->err = -EBADMSG;
		return false;
	}
	if (!out || n >= outlen)
		return cur_skip(c, n);
	if (!cur_read(c, out, (size_t)n))
		return false;
	out[n] = 0;
	return true;
}

enum { GGUF_UINT32 = 4, GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_NTYPES = 13 };

/* Byte size of a fixed-width GGUF value type; 0 for string and array. */
static unsigned gguf_scalar_size(uint32_t t)
{
	static const unsigned sz[GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

	return t < GGUF_NTYPES ? sz[t] : 0;
}

/* One metadata value of type @t; the alignment key's value goes to @align. */
static bool gguf_value(struct lecur *c, uint64_t t, bool is_align, uint64_t *align)
{
	uint64_t et, n, v;

	if (t >= GGUF_NTYPES) {
		c->err = -EBADMSG;
		return false;
	}
	if (t == GGUF_STRING)
		return gguf_string(c, NULL, 0);
	if (t != GGUF_ARRAY) {
		if (!is_align)
			return cur_skip(c, gguf_scalar_size((uint32_t)t));
		/* general.alignment: a u32 power of two, as ggml requires */
		if (t != GGUF_UINT32 || !cur_u(c, 4, &v) || !v || (v & (v - 1))) {
			c->err = c->err ? c->err : -EBADMSG;
			return false;
		}
		*align = v;
		return true;
	}
	if (!cur_u(c, 4, &et) || !cur_u(c, 8, &n))
		return false;
	if (et >= GGUF_NTYPES || et == GGUF_ARRAY || is_align) {
		c->err = -EBADMSG; /* nested arrays are not GGUF */
		return false;
	}
	if (et != GGUF_STRING)
		return n <= c->size && cur_skip(c, n * gguf_scalar_size((uint32_t)et));
	for (uint64_t i = 0; i < n; i++)
		if (!gguf_string(c, NULL, 0))
			return false;
	return true;
}

/*
 * ggml tensor types: elements per block and bytes per block (ggml.c's
 * type_traits). 0 marks ids that were removed from ggml and are invalid.
 */
static const struct {
	uint16_t blck, size;
} ggml_types[] = {
    [0] = {1, 4},      [1] = {1, 2},      [2] = {32, 18},    [3] = {32, 20},    [6] = {32, 22},
    [7] = {32, 24},    [8] = {32, 34},    [9] = {32, 36},    [10] = {256, 84},  [11] = {256, 110},
    [12] = {256, 144}, [13] = {256, 176}, [14] = {256, 210}, [15] = {256, 292}, [16] = {256, 66},
    [17] = {256, 74},  [18] = {256, 98},  [19] = {256, 50},  [20] = {32, 18},   [21] = {256, 110},
    [22] = {256, 82},  [23] = {256, 136}, [24] = {1, 1},     [25] = {1, 2},     [26] = {1, 4},
    [27] = {1, 8},     [28] = {1, 8},     [29] = {256, 56},  [30] = {1, 2},     [34] = {256, 54},
    [35] = {256, 66},  [39] = {32, 17},
};

/* One tensor info: name, dims, type, offset; its byte extent to *@end. */
static bool gguf_tensor(struct lecur *c, uint64_t align, uint64_t *off, uint64_t *end)
{
	uint64_t nd, d, t, numel = 1, bytes;

	if (!gguf_string(c, NULL, 0) || !cur_u(c, 4, &nd))
		return false;
	if (nd == 0 || nd > GGUF_MAX_DIMS)
		goto bad;
	for (uint64_t i = 0; i < nd; i++) {
		if (!cur_u(c, 8, &d))
			return false;
		if (__builtin_mul_overflow(numel, d, &numel))
			goto bad;
	}
	if (!cur_u(c, 4, &t) || !cur_u(c, 8, off))
		return false;
	if (t >= sizeof(ggml_types) / sizeof(ggml_types[0]) || !ggml_types[t].blck ||
	    *off % align || numel % ggml_types[t].blck)
		goto bad;
	if (__builtin_mul_overflow(numel / ggml_types[t].blck, (uint64_t)ggml_types[t].size,
	                           &bytes) ||
	    __builtin_add_overflow(*off, bytes, end))
		goto bad;
	return true;
bad:
	c->err = -EBADMSG;
	return false;
}

int mfs_gguf_check(mfs_pread_fn rd, void *ctx, uint64_t size, bool *ok)
{
	struct lecur c = {.rd = rd, .ctx = ctx, .size = size};
	uint64_t magic, ver, nt, nkv, align = 32, t, off, end, data, max_end = 0;
	char key[32];

	*ok = false;
	if (!cur_u(&c, 4, &magic) || magic != 0x46554747 /* "GGUF" */ || !cur_u(&c, 4, &ver) ||
	    (ver != 2 && ver != 3) || !cur_u(&c, 8, &nt) || !cur_u(&c, 8, &nkv))
		goto out;
	if (nt > GGUF_MAX_COUNT || nkv > GGUF_MAX_COUNT)
		goto out;
	for (uint64_t i = 0; i < nkv; i++) {
		key[0] = 0;
		if (!gguf_string(&c, key, sizeof(key)) || !cur_u(&c, 4, &t) ||
		    !gguf_value(&c, t, strcmp(key, "general.alignment") == 0, &align))
			goto out;
	}
	/* Tensor infos can name the alignment only after it is known: read them now. */
	for (uint64_t i = 0; i < nt; i++) {
		if (!gguf_tensor(&c, align, &off, &end))
			goto out;
		if (end > max_end)
			max_end = end;
	}
	data = (c.pos + align - 1) / align * align;
	*ok = !max_end || (data <= size && max_end <= size - data);
out:
	return c.err == -EBADMSG ? 0 : c.err;
}

/* ------------------------------------------------------------------- ONNX */

/* Reads a protobuf varint at the cursor. */
static bool pb_varint(struct lecur *c, uint64_t *v)
{
	uint8_t b;

	*v = 0;
	for (unsigned i = 0; i < 10; i++) {
		if (!cur_read(c, &b, 1))
			return false;
		*v |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80))
			return true;
	}
	c->err = -EBADMSG;
	return false;
}

/* Wire type of each ModelProto field (onnx.proto); -1 for unknown numbers. */
static int onnx_wire(uint64_t field)
{
	switch (field) {
	case 1: /* ir_version */
	case 5: /* model_version */ return 0;
	case 2:  /* producer_name */
	case 3:  /* producer_version */
	case 4:  /* domain */
	case 6:  /* doc_string */
	case 7:  /* graph */
	case 8:  /* opset_import */
	case 14: /* metadata_props */
	case 20: /* training_info */
	case 25: /* functions */
	case 26: /* configuration */ return 2;
	}
	return -1;
}

int mfs_onnx_check(mfs_pread_fn rd, void *ctx, uint64_t size, bool *ok)
{
	struct lecur c = {.rd = rd, .ctx = ctx, .size = size};
	bool ir = false, graph = false;
	uint64_t tag, v;

	*ok = false;
	/* Every top-level field has its ModelProto wire type, up to the last byte. */
	for (unsigned n = 0; c.pos < size; n++) {
		if (n >= ONNX_MAX_FIELDS || !pb_varint(&c, &tag) ||
		    onnx_wire(tag >> 3) != (int)(tag & 7))
			goto out;
		if (!pb_varint(&c, &v))
			goto out;
		if ((tag & 7) == 2 && !cur_skip(&c, v))
			goto out;
		if (tag >> 3 == 1)
			ir = v >= 1 && v <= 64;
		graph |= tag >> 3 == 7;
	}
	*ok = ir && graph;
out:
	return c.err == -EBADMSG ? 0 : c.err;
}

/* -------------------------------------------------------------------- npy */

/* Item size of a simple numpy dtype string such as "<f4", "|b1", "<U8"; 0 if unknown. */
static uint64_t npy_itemsize(const char *d, size_t n)
{
	uint64_t k = 0;
	size_t i = 0;

	if (n && (d[0] == '<' || d[0] == '>' || d[0] == '|' || d[0] == '='))
		i++;
	if (i >= n || !strchr("biufcmMSUV", d[i]))
		return 0;
	char code = d[i++];

	if (i == n)
		return 0;
	for (; i < n; i++) {
		if (d[i] < '0' || d[i] > '9' || k > (1u << 30))
			return 0;
		k = k * 10 + (uint64_t)(d[i] - '0');
	}
	return code == 'U' ? k * 4 : k;
}

/* Parses "(a, b, )" into the element count; false if malformed. */
static bool npy_shape(const char *s, const char *end, uint64_t *numel)
{
	*numel = 1;
	if (s >= end || *s++ != '(')
		return false;
	while (s < end && *s != ')') {
		uint64_t v = 0;
		bool digit = false;

		while (s < end && *s == ' ')
			s++;
		if (s < end && *s == ')')
			break;
		while (s < end && *s >= '0' && *s <= '9') {
			if (__builtin_mul_overflow(v, 10, &v) ||
			    __builtin_add_overflow(v, (uint64_t)(*s - '0'), &v))
				return false;
			digit = true;
			s++;
		}
		if (s < end && *s == 'L')
			s++; /* Python 2 longs */
		if (!digit || __builtin_mul_overflow(*numel, v, numel))
			return false;
		while (s < end && *s == ' ')
			s++;
		if (s < end && *s == ',')
			s++;
		else if (s < end && *s != ')')
			return false;
	}
	return s < end;
}

/* Finds the value after key @k ('k' or "k") in the header dict. */
static const char *npy_key(const char *h, size_t n, const char *k)
{
	char q1[32], q2[32];
	const char *p;

	snprintf(q1, sizeof(q1), "'%s':", k);
	snprintf(q2, sizeof(q2), "\"%s\":", k);
	p = memmem(h, n, q1, strlen(q1));
	if (!p)
		p = memmem(h, n, q2, strlen(q2));
	if (!p)
		return NULL;
	p += strlen(q1);
	while (p < h + n && *p == ' ')
		p++;
	return p;
}

int mfs_npy_check(mfs_pread_fn rd, void *ctx, uint64_t size, bool *ok)
{
	uint8_t head[4096];
	struct mfs_npy_info ni;
	const char *h, *d, *sh, *e;
	uint64_t numel, item, bytes;
	ssize_t n = mfs_read_at(rd, ctx, head, sizeof(head) < size ? sizeof(head) : size, 0);

	*ok = false;
	if (n < 0)
		return (int)n;
	if (mfs_npy_parse(head, (size_t)n, &ni) || ni.object)
		return 0;
	h = (const char *)head + (head[6] == 1 ? 10 : 12);
	e = (const char *)head + ni.data_off;
	if (ni.data_off < 12 || e[-1] != '\n' || h[0] != '{' || ni.data_off % 16 ||
	    !(d = npy_key(h, (size_t)(e - h), "descr")) ||
	    !(sh = npy_key(h, (size_t)(e - h), "shape")) ||
	    !npy_key(h, (size_t)(e - h), "fortran_order"))
		return 0;
	if (!npy_shape(sh, e, &numel))
		return 0;
	if (*d == '[') {
		*ok = true; /* structured dtype without objects: its size is not checked */
		return 0;
	}
	if (*d != '\'' && *d != '"')
		return 0;
	const char *q = memchr(d + 1, *d, (size_t)(e - d - 1));

	if (!q || !(item = npy_itemsize(d + 1, (size_t)(q - d - 1))) ||
	    __builtin_mul_overflow(numel, item, &bytes))
		return 0;
	*ok = ni.data_off <= size && bytes == size - ni.data_off;
	return 0;
}

/* ------------------------------------------------------------ JSON, text */

/* Valid UTF-8 without NUL or control bytes; a sequence cut by the end of a prefix is fine. */
bool mfs_is_text(const uint8_t *s, size_t n, bool prefix)
{
	for (size_t i = 0; i < n;) {
		unsigned c = s[i], k;

		if (c < 0x80) {
			if (!c || (c < 0x20 && c != '\n' && c != '\r' && c != '\t' && c != '\f'))
				return false;
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			k = 1;
		else if (c >= 0xe0 && c <= 0xef)
			k = 2;
		else if (c >= 0xf0 && c <= 0xf4)
			k = 3;
		else
			return false;
		for (unsigned j = 1; j <= k; j++) {
			if (i + j >= n)
				return prefix;
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
		}
		i += k + 1;
	}
	return true;
}

int mfs_json_check(mfs_pread_fn rd, void *ctx, uint64_t size, bool *ok)
{
	char *buf = NULL;
	cJSON *j;
	int rc;

	*ok = false;
	if (!size || size > JSON_FULLPARSE)
		return 0;
	rc = read_head(rd, ctx, 0, (size_t)size, &buf);
	if (rc)
		return rc == -EBADMSG ? 0 : rc;
	if (mfs_json_bytes_ok(buf, (size_t)size)) {
		j = cJSON_ParseWithLengthOpts(buf, (size_t)size + 1, NULL, true);
		*ok = j && (cJSON_IsObject(j) || cJSON_IsArray(j));
		cJSON_Delete(j);
	}
	free(buf);
	return 0;
}
