// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_npy.c - libFuzzer target for the numpy .npy readers: the scanner's
 * header parser mfs_npy_parse (dtype, object detection, header length of
 * versions 1, 2 and 3), the strict recogniser mfs_npy_check (descr, shape
 * and fortran_order, item sizes, data length), and mfs_scan of npy-headed
 * files: plain, object arrays whose data is a pickle, headers longer than
 * the first read, and an npy compressed with zlib (read as a stream).
 *
 * The input always gets the "\x93NUMPY" magic over its first six bytes, so
 * every run reaches the header. Checked: what mfs_npy_parse accepts lies
 * inside the input, and what mfs_npy_check accepts also parses.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fmt_internal.h"

#define MAX_ZLIB_IN (256u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
	struct mfs_npy_info ni;
	struct mfs_membuf mb;
	uint8_t *copy, *z;
	bool ok = false;
	uLongf zlen;

	copy = malloc(size > 6 ? size : 6);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	if (size >= 6)
		memcpy(copy, "\x93NUMPY", 6);
	mb = (struct mfs_membuf){copy, size};

	if (mfs_npy_parse(copy, size, &ni) == 0 && (ni.data_off > size || ni.data_off < 10))
		__builtin_trap();
	if (mfs_npy_check(mfs_mem_pread, &mb, size, &ok) == 0 && ok &&
	    (mfs_npy_parse(copy, size, &ni) != 0 || ni.object))
		__builtin_trap(); /* strict acceptance implies a non-object header */
	scan(copy, size);

	if (size >= 6 && size <= MAX_ZLIB_IN) {
		zlen = compressBound(size);
		z = malloc(zlen);
		if (z && compress2(z, &zlen, copy, size, 1) == Z_OK)
			scan(z, zlen);
		free(z);
	}
	free(copy);
	return 0;
}
