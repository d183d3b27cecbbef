// SPDX-License-Identifier: Apache-2.0
/*
 * format.c - what a file is, judged by its bytes (user.modelfs.format and
 * the mount's pickle policy).
 *
 * One verdict: the mount and `modelfs scan` decide with the same code.
 * mfs_format_detect() runs the scanner (scan.c), whose first question is
 * always "would pickle.load act on these bytes?", and calls the file a
 * pickle whenever the scanner's verdict is anything but not-pickle (safe,
 * suspicious, polyglot, unscannable or unsafe alike). Only then does the
 * format a strict recogniser found (fmt_strict.c) name the file.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "fmt_internal.h"

#define HEAD 4096u

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

/* Runs one strict recogniser; @f goes to *@out when it accepts. */
static int try_fmt(int (*check)(mfs_pread_fn, void *, uint64_t, bool *), mfs_pread_fn rd, void *ctx,
                   uint64_t size, enum mfs_format f, enum mfs_format *out)
{
	bool ok = false;
	int rc = check(rd, ctx, size, &ok);

	if (!rc && ok)
		*out = f;
	return rc;
}

/* mfs_safetensors_check() in the shape of the other recognisers. */
static int st_check(mfs_pread_fn rd, void *ctx, uint64_t size, bool *ok)
{
	struct mv_err err = {0};
	int rc = mfs_safetensors_check(rd, ctx, size, NULL, &err);

	*ok = rc == 0;
	return rc == -EBADMSG || rc == 0 ? 0 : rc;
}

int mfs_format_strict(mfs_pread_fn rd, void *ctx, uint64_t size, enum mfs_format *out)
{
	uint8_t h[HEAD];
	ssize_t n;
	int rc;

	*out = MFS_FMT_UNKNOWN;
	if (!size) {
		*out = MFS_FMT_EMPTY;
		return 0;
	}
	n = mfs_read_at(rd, ctx, h, size < HEAD ? (size_t)size : HEAD, 0);
	if (n <= 0) {
		*out = n ? MFS_FMT_UNKNOWN : MFS_FMT_EMPTY;
		return n < 0 ? (int)n : 0;
	}
	/* Magic numbers first: each names the one format the file may be. */
	if (n >= 6 && memcmp(h, "\x93NUMPY", 6) == 0)
		return try_fmt(mfs_npy_check, rd, ctx, size, MFS_FMT_NPY, out);
	if (n >= 4 && memcmp(h, "GGUF", 4) == 0)
		return try_fmt(mfs_gguf_check, rd, ctx, size, MFS_FMT_GGUF, out);
	if (n >= 4 && (memcmp(h, "PK\3\4", 4) == 0 || memcmp(h, "PK\5\6", 4) == 0)) {
		*out = MFS_FMT_ZIP;
		return 0;
	}
	if (n >= 10 && h[8] == '{') {
		rc = try_fmt(st_check, rd, ctx, size, MFS_FMT_SAFETENSORS, out);
		if (rc || *out != MFS_FMT_UNKNOWN)
			return rc;
	}
	if (h[0] == 0x08) { /* ModelProto field 1, ir_version, comes first */
		rc = try_fmt(mfs_onnx_check, rd, ctx, size, MFS_FMT_ONNX, out);
		if (rc || *out != MFS_FMT_UNKNOWN)
			return rc;
	}
	if (!mfs_is_text(h, (size_t)n, (uint64_t)n < size))
		return 0;
	*out = MFS_FMT_TEXT;
	for (ssize_t i = 0; i < n; i++) {
		if (h[i] == ' ' || h[i] == '\n' || h[i] == '\r' || h[i] == '\t')
			continue;
		if (h[i] == '{' || h[i] == '[')
			return try_fmt(mfs_json_check, rd, ctx, size, MFS_FMT_JSON, out);
		break;
	}
	return 0;
}

int mfs_format_detect(mfs_pread_fn rd, void *ctx, uint64_t size, enum mfs_format *out)
{
	struct mfs_scan_report rep;
	int rc = mfs_scan(rd, ctx, size, &rep);

	*out = MFS_FMT_UNKNOWN;
	if (rc)
		return rc;
	*out = rep.format;
	mfs_scan_report_free(&rep);
	return 0;
}
