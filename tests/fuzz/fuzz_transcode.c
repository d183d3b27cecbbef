// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_transcode.c - libFuzzer target for the transcoder: plans the input as
 * a torch checkpoint (zip or legacy) and, when that succeeds, writes the
 * safetensors output to a memfd and checks it with the strict reader: every
 * output modelfs writes must be valid. The input is also checked as a
 * safetensors file itself.
 */
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fmt_internal.h"

#define MAX_OUT (16u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fdr {
	int fd;
};

static ssize_t fd_read(void *ctx, void *buf, size_t len, uint64_t off)
{
	return pread(((struct fdr *)ctx)->fd, buf, len, (off_t)off);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mfs_membuf mb = {data, size};
	struct mfs_tx_plan *plan = NULL;
	struct mv_err err = {0};
	size_t n;

	(void)mfs_safetensors_check(mfs_mem_pread, &mb, size, &n, &err);
	if (mfs_tx_plan_new(mfs_mem_pread, &mb, size, "fuzz", &plan, &err))
		return 0;
	if (mfs_tx_plan_size(plan) <= MAX_OUT) {
		struct fdr out = {memfd_create("tx", MFD_CLOEXEC)};

		if (out.fd >= 0) {
			if (mfs_tx_plan_write(plan, mfs_mem_pread, &mb, -1, out.fd, &err) == 0 &&
			    mfs_safetensors_check(fd_read, &out, mfs_tx_plan_size(plan), &n, &err))
				abort(); /* modelfs wrote an invalid safetensors file */
			close(out.fd);
		}
	}
	mfs_tx_plan_free(plan);
	return 0;
}
