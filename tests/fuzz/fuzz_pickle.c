// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_pickle.c - libFuzzer target for the restricted pickle reader: every
 * pickle of the input, then a walk of the value graph as a transcoder would.
 */
#include <stddef.h>
#include <stdint.h>

#include "fmt_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Touches every reference of every node: ids must stay in range. */
static void walk(const struct mfs_pickle *p)
{
	volatile uint64_t sink = 0;

	for (uint32_t i = 1; i < p->nnodes; i++) {
		const struct mfs_pnode *n = mfs_pickle_node(p, i);

		sink += n->kind;
		for (uint32_t k = 0; k < n->n; k++) {
			const struct mfs_pnode *c = mfs_pickle_node(p, n->kids[k]);

			sink += c ? c->kind : 0;
		}
		if (n->kind == MFS_PK_GLOBAL && n->a != UINT32_MAX)
			sink += p->globals[n->a].offset;
		if (n->s)
			sink += (uint8_t)n->s[n->len ? n->len - 1 : 0];
	}
	(void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mfs_pickle_limits lim = mfs_pickle_default_limits;
	struct mfs_membuf mb = {data, size};
	struct mfs_stream s;
	struct mfs_pickle p;
	uint32_t root;

	/* small limits keep each run fast while still reaching them */
	lim.max_ops = 1u << 16;
	lim.max_marks = 256;
	lim.max_memo = 4096;
	lim.max_stack = 4096;
	lim.max_expansion = 4u << 20;
	mfs_stream_raw(&s, mfs_mem_pread, &mb, 0, size);
	if (mfs_pickle_init(&p, &s, &lim))
		return 0;
	while (mfs_pickle_next(&p, &root) == 1)
		(void)mfs_pickle_node(&p, root);
	walk(&p);
	mfs_pickle_free(&p);
	return 0;
}
