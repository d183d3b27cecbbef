// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_storefile.c - libFuzzer target for store files, the models of a lazy
 * mount of many (fs/remote/storefile.c: mfr_store_file_parse(), and through
 * it mfr_path_ok() and mfr_ref_parse()). The input is the file's bytes. An
 * accepted file is walked, so every path and reference is touched, and its
 * promises checked: 1 to MFR_STORE_MAX_MODELS models, every path acceptable,
 * no path equal to or inside another, every reference "oci://". A broken
 * promise aborts (a finding). Links libfsremote alone.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fsremote.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Is path @a equal to @b or a folder above it? */
static int above(const char *a, const char *b)
{
	size_t l = strlen(a);

	return !strncmp(a, b, l) && (b[l] == '\0' || b[l] == '/');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mfr_store_entry *e = NULL;
	struct mv_err err = {0};
	size_t n = 0;

	if (mfr_store_file_parse((const char *)data, size, "fuzz.json", &e, &n, &err)) {
		if (!err.msg[0] || !strstr(err.msg, "fuzz.json"))
			abort(); /* every refusal names the file */
		return 0;
	}
	if (!n || n > MFR_STORE_MAX_MODELS)
		abort();
	for (size_t i = 0; i < n; i++) {
		if (!mfr_path_ok(e[i].path) || strncmp(e[i].ref, "oci://", 6) != 0)
			abort();
		for (size_t j = 0; j < n; j++)
			if (i != j && above(e[i].path, e[j].path))
				abort();
	}
	mfr_store_entries_free(e, n);
	return 0;
}
