// SPDX-License-Identifier: Apache-2.0
/*
 * metrics.c - the mount's metrics in Prometheus text format
 * (MOUNT/.modelfs/metrics.prom, `modelfs metrics`).
 */
#include <stdio.h>
#include <stdlib.h>

#include "mount_int.h"

char *mfs_metrics_text(struct mfs_mount *m, size_t *len)
{
	char *s = NULL;
	int n = asprintf(&s, "# TYPE modelfs_reads_total counter\nmodelfs_reads_total %llu\n",
	                 (unsigned long long)__atomic_load_n(&m->ctr.reads, __ATOMIC_RELAXED));

	if (n < 0)
		return NULL;
	*len = (size_t)n;
	return s;
}

void mfs_metrics_observe_read(struct mfs_mount *m, uint64_t ns)
{
	mfs_count(&m->ctr.read_ns_sum, ns);
}
