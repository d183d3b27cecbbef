// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_tar.c - libFuzzer target for the tar reader: the numeric field parser
 * mfs_tar_num (octal and GNU base-256, checked by a round trip through an
 * encoder), the header checksum mfs_tar_header_ok, and the scanner's tar
 * walk (fs/format/scan.c scan_tar, tar_longname for GNU 'L' and pax 'x' headers,
 * members scanned as files, tars nested in tars).
 *
 * A fuzzer cannot guess a 512-byte checksum, so the input is patched before
 * the scan: "ustar" is written into the first header and every header the
 * walk reaches gets its correct checksum, following the sizes the headers
 * declare. The patched archive is scanned as a file and again compressed
 * with zlib, which the scanner inflates into memory (scan_nested).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fmt_internal.h"

#define MAX_ZLIB_IN (256u << 10) /* compress only inputs this small */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The numeric fields of a header: offset and width. */
static const struct {
	unsigned off, len;
} num_fields[] = {
    {100, 8},  /* mode */
    {108, 8},  /* uid */
    {116, 8},  /* gid */
    {124, 12}, /* size */
    {136, 12}, /* mtime */
    {148, 8},  /* chksum */
    {329, 8},  /* devmajor */
    {337, 8},  /* devminor */
};

/* A value parsed from a field must parse back the same once re-encoded. */
static void num_round_trip(const uint8_t *f, size_t n)
{
	uint8_t enc[12];
	uint64_t v, w;

	if (!mfs_tar_num(f, n, &v))
		return;
	if (n <= 12 && v >> (3 * (n - 1)) == 0) {
		/* octal, n - 1 digits and a NUL */
		char txt[16];

		snprintf(txt, sizeof(txt), "%0*llo", (int)(n - 1), (unsigned long long)v);
		memcpy(enc, txt, n);
		if (!mfs_tar_num(enc, n, &w) || w != v)
			__builtin_trap();
	}
	if (n <= 12 && (n - 1 >= 8 || v >> (8 * (n - 1)) == 0) && !(v >> 55)) {
		/* GNU base-256: 0x80, then big-endian bytes */
		memset(enc, 0, n);
		enc[0] = 0x80;
		for (size_t i = 0; i < n - 1 && i < 8; i++)
			enc[n - 1 - i] = (uint8_t)(v >> (8 * i));
		if (!mfs_tar_num(enc, n, &w) || w != v)
			__builtin_trap();
	}
}

/* Writes the checksum a tar writer would put into header @h. */
static void set_checksum(uint8_t *h)
{
	unsigned sum = 0;
	char txt[8];

	memset(h + 148, ' ', 8);
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf(txt, sizeof(txt), "%06o", sum & 0777777);
	memcpy(h + 148, txt, 7); /* six digits and a NUL, then the space */
	if (!mfs_tar_header_ok(h))
		__builtin_trap();
}

/*
 * Follows the headers of @buf as scan_tar does and fixes each checksum; a
 * member that is itself a ustar archive is patched the same way.
 */
static void patch_headers(uint8_t *buf, size_t size, int depth)
{
	static const uint8_t zero[512];
	uint64_t off = 0, len;

	while (size - off >= 512) {
		uint8_t *h = buf + off;

		if (!memcmp(h, zero, sizeof(zero)))
			break;
		set_checksum(h);
		if (!mfs_tar_num(h + 124, 12, &len) || len > size - off - 512)
			break;
		if (len >= 512 && depth < 4 && !memcmp(h + 512 + 257, "ustar", 5))
			patch_headers(h + 512, len, depth + 1);
		off += 512 + ((len + 511) & ~(uint64_t)511);
		if (off > size)
			break;
	}
}

static void scan(const uint8_t *buf, size_t size)
{
	struct mfs_membuf mb = {buf, size};
	struct mfs_scan_report rep;

	if (mfs_scan(mfs_mem_pread, &mb, size, &rep) == 0) {
		if (!rep.nitems)
			__builtin_trap();
		mfs_scan_report_free(&rep);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy, *z;
	uLongf zlen;

	for (size_t i = 0; i < sizeof(num_fields) / sizeof(num_fields[0]); i++)
		if (num_fields[i].off + num_fields[i].len <= size)
			num_round_trip(data + num_fields[i].off, num_fields[i].len);
	if (size >= 512)
		(void)mfs_tar_header_ok(data);

	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	if (size >= 512)
		memcpy(copy + 257, "ustar", 5);
	patch_headers(copy, size, 0);
	scan(copy, size);

	if (size >= 512 && size <= MAX_ZLIB_IN) {
		zlen = compressBound(size);
		z = malloc(zlen);
		if (z && compress2(z, &zlen, copy, size, 1) == Z_OK)
			scan(z, zlen);
		free(z);
	}
	free(copy);
	return 0;
}
