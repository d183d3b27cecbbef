// SPDX-License-Identifier: Apache-2.0
/*
 * format.c - what a file is, judged by its bytes (user.modelfs.format and
 * the mount's pickle policy).
 *
 * Detection reads only headers: the first 4 KiB, a zip's central directory
 * and local headers, the first bytes of zip members that could hold a pickle.
 * When a container cannot be read the answer is "pickle": the mount hides
 * pickles by default, so doubt must err on the side of hiding.
 */
#include <errno.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fmt_internal.h"

#define HEAD           4096u
#define MEMBER_SNIFF   4096u
#define MAX_SNIFFED    4096u      /* members whose first bytes are read */
#define JSON_FULLPARSE (1u << 20) /* JSON files up to this size are parsed fully */

const char *mfs_format_name(enum mfs_format f)
{
	switch (f) {
	case MFS_FMT_UNKNOWN: return "unknown";
	case MFS_FMT_EMPTY: return "empty";
	case MFS_FMT_SAFETENSORS: return "safetensors";
	case MFS_FMT_GGUF: return "gguf";
	case MFS_FMT_ONNX: return "onnx";
	case MFS_FMT_JSON: return "json";
	case MFS_FMT_TEXT: return "text";
	case MFS_FMT_NPY: return "npy";
	case MFS_FMT_ZIP: return "zip";
	case MFS_FMT_PICKLE: return "pickle";
	}
	return "unknown";
}

ssize_t mfs_fd_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
	ssize_t r;

	do
		r = pread(*(const int *)ctx, buf, len, (off_t)off);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

/* Reads up to @len bytes at @off; returns the count or a negative errno. */
static ssize_t read_at(mfs_pread_fn rd, void *ctx, void *buf, size_t len, uint64_t off)
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

/* ------------------------------------------------------------------- utf8 */

/* Valid UTF-8 without NUL; a sequence cut by the end of a prefix is fine. */
static bool is_text(const uint8_t *s, size_t n, bool prefix)
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

/* ------------------------------------------------------------------- onnx */

/* Reads a protobuf varint; returns bytes used or 0. */
static size_t varint(const uint8_t *p, size_t n, uint64_t *v)
{
	*v = 0;
	for (size_t i = 0; i < n && i < 10; i++) {
		*v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80))
			return i + 1;
	}
	return 0;
}

/*
 * ONNX ModelProto heuristic: field 1 (ir_version, varint) first with a
 * plausible value, then a known ModelProto field with the right wire type.
 */
static bool is_onnx(const uint8_t *h, size_t n)
{
	uint64_t v, tag;
	size_t k, k2;

	if (n < 4 || h[0] != 0x08)
		return false;
	k = varint(h + 1, n - 1, &v);
	if (!k || v < 1 || v > 64)
		return false;
	k2 = varint(h + 1 + k, n - 1 - k, &tag);
	if (!k2)
		return false;
	switch (tag) {
	case (2 << 3) | 2:  /* producer_name */
	case (3 << 3) | 2:  /* producer_version */
	case (4 << 3) | 2:  /* domain */
	case (5 << 3) | 0:  /* model_version */
	case (6 << 3) | 2:  /* doc_string */
	case (7 << 3) | 2:  /* graph */
	case (8 << 3) | 2:  /* opset_import */
	case (14 << 3) | 2: /* metadata_props */
	case (20 << 3) | 2: /* training_info */
	case (25 << 3) | 2: /* functions */ return true;
	}
	return false;
}

/* ------------------------------------------------------------------- zip */

static bool ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);

	return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Reads the first bytes of member @i (inflating if needed). */
static ssize_t member_head(const struct mfs_zip *z, size_t i, uint8_t *buf, size_t n)
{
	struct mfs_stream s;
	ssize_t r;
	int rc = mfs_zip_stream(z, i, &s, n);

	if (rc)
		return rc;
	r = mfs_stream_read_full(&s, buf, n);
	mfs_stream_close(&s);
	return r;
}

/* Does member @i hold a pickle (or an object npy)? Errors count as yes. */
static int member_is_pickle(const struct mfs_zip *z, size_t i, uint8_t *buf, bool *yes)
{
	const struct mfs_zip_entry *e = &z->e[i];
	struct mfs_npy_info ni;
	ssize_t n;

	*yes = true;
	if (e->mismatch || e->bad_local || (e->method != 0 && e->method != 8))
		return 0;
	n = member_head(z, i, buf, MEMBER_SNIFF);
	if (n < 0 && n != -EBADMSG && n != -EFBIG)
		return (int)n;
	if (n < 0) {
		*yes = n != -EFBIG; /* a short head is fine, corrupt data is not */
		if (*yes)
			return 0;
		n = MEMBER_SNIFF;
	}
	if (n >= 6 && memcmp(buf, "\x93NUMPY", 6) == 0) {
		*yes = mfs_npy_parse(buf, (size_t)n, &ni) != 0 || ni.object;
		return 0;
	}
	if (n >= 4 && memcmp(buf, "PK\3\4", 4) == 0)
		return 0; /* nested archives are not inspected: hide */
	/* an encrypted member could hold anything: err toward hiding */
	*yes = (e->flags & 1) || mfs_sniff_proto(buf, (size_t)n) ||
	       mfs_pickle_probe(buf, (size_t)n, (uint64_t)n == e->uncomp_size);
	return 0;
}

static int detect_zip(mfs_pread_fn rd, void *ctx, uint64_t size, enum mfs_format *out)
{
	struct mfs_zip z;
	uint8_t *buf = NULL;
	int rc = mfs_zip_open(&z, rd, ctx, size);

	*out = MFS_FMT_PICKLE;
	if (rc == -EBADMSG || (!rc && z.anomaly[0])) {
		rc = 0; /* unreadable here may be readable by another reader: hide */
		goto out;
	}
	if (rc)
		goto out;
	buf = malloc(MEMBER_SNIFF);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < z.n; i++) {
		const char *nm = z.e[i].name;
		bool yes;

		if (ends_with(nm, ".pkl") || ends_with(nm, ".pickle") || ends_with(nm, "data.pkl"))
			goto out;
		if (i >= MAX_SNIFFED)
			goto out;
		/* torch tensor storages are raw numbers: skip "*\/data/<n>" */
		if (strstr(nm, "/data/") && !ends_with(nm, ".npy"))
			continue;
		rc = member_is_pickle(&z, i, buf, &yes);
		if (rc || yes)
			goto out;
	}
	*out = MFS_FMT_ZIP;
out:
	free(buf);
	mfs_zip_close(&z);
	return rc;
}

/* Does any regular member of a ustar tar hold a pickle? Errors count as yes. */
static int detect_tar(mfs_pread_fn rd, void *ctx, uint64_t size, enum mfs_format *out)
{
	uint8_t h[512], head[MEMBER_SNIFF];
	uint64_t off = 0, len;

	*out = MFS_FMT_PICKLE;
	for (unsigned i = 0; i < MAX_SNIFFED && size - off >= 512; i++) {
		ssize_t r = read_at(rd, ctx, h, sizeof(h), off);

		if (r < 0)
			return (int)r;
		if (r < 512 || !mfs_tar_header_ok(h) || !mfs_tar_num(h + 124, 12, &len) ||
		    len > size - off - 512)
			return 0;
		if (h[156] == '0' || h[156] == '\0' || h[156] == '7') {
			size_t k = len < sizeof(head) ? (size_t)len : sizeof(head);

			r = read_at(rd, ctx, head, k, off + 512);
			if (r < 0)
				return (int)r;
			if (mfs_sniff_proto(head, (size_t)r) ||
			    mfs_pickle_probe(head, (size_t)r, (uint64_t)r == len) ||
			    (r >= 6 && memcmp(head, "\x93NUMPY", 6) == 0) ||
			    (r >= 4 && memcmp(head, "PK\3\4", 4) == 0))
				return 0;
		}
		off += 512 + ((len + 511) & ~(uint64_t)511);
		if (off >= size || !memcmp(h, (uint8_t[512]){0}, 1))
			break;
	}
	*out = MFS_FMT_UNKNOWN;
	return 0;
}

/* ---------------------------------------------------------- other formats */

static int detect_npy(const uint8_t *h, size_t n, enum mfs_format *out)
{
	struct mfs_npy_info ni;

	/* A header beyond the first 4 KiB is unusual: treat as object. */
	if (mfs_npy_parse(h, n, &ni) || ni.object)
		*out = MFS_FMT_PICKLE;
	else
		*out = MFS_FMT_NPY;
	return 0;
}

static bool detect_safetensors(mfs_pread_fn rd, void *ctx, uint64_t size, const uint8_t *h,
                               size_t n, int *err)
{
	uint64_t hl = 0;
	uint8_t last[64];
	ssize_t r;

	*err = 0;
	if (n < 10 || size < 10)
		return false;
	for (int i = 0; i < 8; i++)
		hl |= (uint64_t)h[i] << (8 * i);
	if (hl < 2 || hl > size - 8 || hl > (100u << 20) || h[8] != '{')
		return false;
	/* The header is a JSON object, padded with spaces. */
	size_t k = hl < sizeof(last) ? (size_t)hl : sizeof(last);

	r = read_at(rd, ctx, last, k, 8 + hl - k);
	if (r < 0) {
		*err = (int)r;
		return false;
	}
	while (r > 0 && last[r - 1] == ' ')
		r--;
	return r > 0 && last[r - 1] == '}';
}

static bool detect_json(mfs_pread_fn rd, void *ctx, uint64_t size, const uint8_t *h, size_t n,
                        int *err)
{
	size_t i = 0;
	char *buf;
	bool ok;

	*err = 0;
	while (i < n && (h[i] == ' ' || h[i] == '\n' || h[i] == '\r' || h[i] == '\t'))
		i++;
	if (i == n || (h[i] != '{' && h[i] != '['))
		return false;
	if (!is_text(h, n, size > n))
		return false;
	if (size > JSON_FULLPARSE)
		return true; /* a large file that starts like JSON */
	buf = malloc((size_t)size + 1);
	if (!buf) {
		*err = -ENOMEM;
		return false;
	}
	ssize_t r = read_at(rd, ctx, buf, (size_t)size, 0);

	if (r < 0) {
		*err = (int)r;
		free(buf);
		return false;
	}
	cJSON *j = cJSON_ParseWithLength(buf, (size_t)r);

	ok = j != NULL;
	cJSON_Delete(j);
	free(buf);
	return ok;
}

/* Is this a zlib/gzip stream whose first bytes are a pickle (joblib)? */
static bool compressed_pickle(mfs_pread_fn rd, void *ctx, uint64_t size, const uint8_t *h, size_t n)
{
	struct mfs_stream s;
	uint8_t out[MEMBER_SNIFF];
	ssize_t r;
	bool gz = n >= 3 && h[0] == 0x1f && h[1] == 0x8b && h[2] == 8;
	bool zl = n >= 2 && (h[0] & 0x0f) == 8 && (h[0] >> 4) <= 7 &&
	          ((h[0] << 8) | h[1]) % 31 == 0 && !(h[1] & 0x20);

	if (!gz && !zl)
		return false;
	if (mfs_stream_inflate(&s, rd, ctx, 0, size, true, sizeof(out)))
		return true;
	r = mfs_stream_read_full(&s, out, sizeof(out));
	mfs_stream_close(&s);
	if (r == -EFBIG)
		r = sizeof(out);
	if (r <= 0)
		return false;
	return mfs_sniff_proto(out, (size_t)r) || mfs_pickle_probe(out, (size_t)r, false) ||
	       (r >= 6 && memcmp(out, "\x93NUMPY", 6) == 0);
}

int mfs_format_detect(mfs_pread_fn rd, void *ctx, uint64_t size, enum mfs_format *out)
{
	uint8_t h[HEAD];
	ssize_t n;
	int err = 0;

	*out = MFS_FMT_UNKNOWN;
	if (size == 0) {
		*out = MFS_FMT_EMPTY;
		return 0;
	}
	n = read_at(rd, ctx, h, size < HEAD ? (size_t)size : HEAD, 0);
	if (n < 0)
		return (int)n;
	if (n == 0) {
		*out = MFS_FMT_EMPTY;
		return 0;
	}
	if (n >= 4 && (memcmp(h, "PK\3\4", 4) == 0 || memcmp(h, "PK\5\6", 4) == 0))
		return detect_zip(rd, ctx, size, out);
	if (n >= 6 && memcmp(h, "\x93NUMPY", 6) == 0)
		return detect_npy(h, (size_t)n, out);
	if (n >= 512 && memcmp(h + 257, "ustar", 5) == 0 && mfs_tar_header_ok(h))
		return detect_tar(rd, ctx, size, out);
	if (n >= 4 && memcmp(h, "GGUF", 4) == 0) {
		*out = MFS_FMT_GGUF;
		return 0;
	}
	if (detect_safetensors(rd, ctx, size, h, (size_t)n, &err)) {
		*out = MFS_FMT_SAFETENSORS;
		return 0;
	}
	if (err)
		return err;
	if ((n >= 2 && h[0] == 0x80 && h[1] >= 2 && h[1] <= 5) ||
	    (mfs_sniff_proto(h, (size_t)n) &&
	     mfs_pickle_probe(h, (size_t)n, (uint64_t)n == size))) {
		*out = MFS_FMT_PICKLE;
		return 0;
	}
	/* joblib's bz2/xz/lz4 files cannot be looked into without more libraries */
	if ((n >= 4 && memcmp(h, "BZh", 3) == 0 && h[3] >= '1' && h[3] <= '9') ||
	    (n >= 6 && memcmp(h,
	                      "\xfd"
	                      "7zXZ\0",
	                      6) == 0) ||
	    (n >= 4 && memcmp(h, "\x04\x22\x4d\x18", 4) == 0)) {
		*out = MFS_FMT_PICKLE;
		return 0;
	}
	if (compressed_pickle(rd, ctx, size, h, (size_t)n)) {
		*out = MFS_FMT_PICKLE;
		return 0;
	}
	if (is_onnx(h, (size_t)n)) {
		*out = MFS_FMT_ONNX;
		return 0;
	}
	/* Protocol 0/1 pickles are text too: they must be tried first. */
	if (mfs_pickle_probe_file(rd, ctx, size, &err)) {
		*out = MFS_FMT_PICKLE;
		return err;
	}
	if (detect_json(rd, ctx, size, h, (size_t)n, &err)) {
		*out = MFS_FMT_JSON;
		return 0;
	}
	if (err)
		return err;
	if (is_text(h, (size_t)n, (uint64_t)n < size))
		*out = MFS_FMT_TEXT;
	return 0;
}
