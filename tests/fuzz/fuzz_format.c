// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_format.c - libFuzzer target for what the mount and `modelfs scan`
 * decide about a file: the strict recognisers (GGUF, ONNX, npy, JSON,
 * safetensors), the zip reader in tail mode with its hidden-entry search,
 * and the whole scan with its polyglot routing. Seeds: valid files of each
 * format and the polyglot shapes of issue #11 (tests/polyglots.py).
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
	bool ok;

	(void)mfs_format_strict(mfs_mem_pread, &mb, size, &f);
	(void)mfs_gguf_check(mfs_mem_pread, &mb, size, &ok);
	(void)mfs_onnx_check(mfs_mem_pread, &mb, size, &ok);
	(void)mfs_npy_check(mfs_mem_pread, &mb, size, &ok);
	if (mfs_zip_open_mode(&z, mfs_mem_pread, &mb, size, true) == 0) {
		for (size_t i = 0; i < z.nhidden; i++) {
			struct mfs_stream s;
			uint8_t buf[512];

			if (mfs_zip_entry_stream(&z, &z.hidden[i], &s, 1u << 20) == 0) {
				while (mfs_stream_read(&s, buf, sizeof(buf)) > 0)
					;
				mfs_stream_close(&s);
			}
		}
	}
	mfs_zip_close(&z);
	if (mfs_scan(mfs_mem_pread, &mb, size, &rep) == 0) {
		/* the mount's answer must follow from the report, as format.c derives it */
		if (rep.format != MFS_FMT_PICKLE &&
		    (rep.pickle || rep.items[0].verdict > MFS_VERDICT_SAFE))
			__builtin_trap();
		mfs_scan_report_free(&rep);
	}
	return 0;
}
