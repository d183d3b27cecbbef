/* SPDX-License-Identifier: Apache-2.0 */
/*
 * stats_int.h - the tables that name the mount's counters and cache
 * statistics for status.json (status.c) and metrics.prom (metrics.c), the
 * only two files that include it: one table each, so that the two outputs
 * can never list different figures. The tables themselves are in metrics.c.
 */
#ifndef MODELFS_STATS_INT_H
#define MODELFS_STATS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "mount_int.h"

/*
 * One struct mfs_counters field as status.json and the metrics name it:
 * one table (metrics.c) so the two can never list different counters.
 */
struct mfs_counter_def {
	const char *key;    /* in status.json's "counters" */
	const char *metric; /* Prometheus counter family */
	const char *help;
	size_t off; /* offsetof(struct mfs_counters, ...) */
};
extern const struct mfs_counter_def mfs_counter_defs[];
extern const size_t mfs_n_counter_defs;

/* The current value of counter @d of @m. */
static inline uint64_t mfs_counter_get(const struct mfs_mount *m, const struct mfs_counter_def *d)
{
	return __atomic_load_n((const uint64_t *)((const char *)&m->ctr + d->off),
	                       __ATOMIC_RELAXED);
}

/* Both caches' statistics, one snapshot for struct mfs_cache_stat_def. */
struct mfs_cache_stats {
	struct mc_hblock_stats h;
	struct mc_frame_stats f;
};

/*
 * One cache statistic as status.json and the metrics name it: one table
 * (metrics.c) so the two can never list different statistics.
 */
struct mfs_cache_stat_def {
	const char *key;    /* in status.json's "counters" */
	const char *metric; /* Prometheus family */
	const char *type;   /* "counter" or "gauge" */
	const char *help;
	size_t off; /* offsetof(struct mfs_cache_stats, ...) */
};
extern const struct mfs_cache_stat_def mfs_cache_stat_defs[];
extern const size_t mfs_n_cache_stat_defs;

/**
 * mfs_cache_stats() - snapshot the statistics of the mount's caches
 * @m: in: the mount
 * @out: out: the hash-block and frame cache statistics
 */
void mfs_cache_stats(struct mfs_mount *m, struct mfs_cache_stats *out);

/* Statistic @d of the snapshot @cs. */
static inline uint64_t mfs_cache_stat_get(const struct mfs_cache_stats *cs,
                                          const struct mfs_cache_stat_def *d)
{
	return *(const uint64_t *)((const char *)cs + d->off);
}

#endif
