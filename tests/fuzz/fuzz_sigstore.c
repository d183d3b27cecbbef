// SPDX-License-Identifier: Apache-2.0
/* fuzz_sigstore.c - skeleton: being written. */
#include <stddef.h>
#include <stdint.h>

#include "sigstore_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	(void)data;
	(void)size;
	return 0;
}
