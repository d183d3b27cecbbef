// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_zip.c - libFuzzer target for the zip reader, the scanner's container
 * routing and content detection: the whole scan and mfs_format_detect of the
 * input as one file.
 */
#include <stddef.h>
#include <stdint.h>

#include "fmt_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mfs_membuf mb = {data, size};
	struct mfs_scan_report rep;
	enum mfs_format f;
	struct mfs_zip z;

	if (mfs_zip_open(&z, mfs_mem_pread, &mb, size) == 0) {
		for (size_t i = 0; i < z.n && i < 64; i++) {
			struct mfs_stream s;
			uint8_t buf[512];

			if (mfs_zip_stream(&z, i, &s, 1u << 20) == 0) {
				while (mfs_stream_read(&s, buf, sizeof(buf)) > 0)
					;
				mfs_stream_close(&s);
			}
		}
	}
	mfs_zip_close(&z);
	if (mfs_scan(mfs_mem_pread, &mb, size, &rep) == 0)
		mfs_scan_report_free(&rep);
	(void)mfs_format_detect(mfs_mem_pread, &mb, size, &f);
	return 0;
}
