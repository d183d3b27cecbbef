// SPDX-License-Identifier: Apache-2.0
/*
 * metrics.c - the mount's metrics in Prometheus text format 0.0.4
 * (MOUNT/.modelfs/metrics.prom, `modelfs metrics`; docs/metrics.md).
 *
 * Every value is read from counters the read path updates with relaxed
 * atomics, so a snapshot never blocks a read; the per-model series walk the
 * model list under the namespace read lock, as status.json does.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mount_int.h"
#include "stats_int.h"

/*
 * Upper bounds of modelfs_read_duration_seconds, in nanoseconds: from a
 * page of cached hash blocks (tens of microseconds) to a cold 1 MiB read
 * that builds or rebuilds a tree (seconds). The last bucket is +Inf.
 */
static const uint64_t bucket_ns[MFS_READ_BUCKETS - 1] = {
    10000,   25000,    50000,    100000,    250000,    500000,     1000000,    2500000,
    5000000, 10000000, 25000000, 100000000, 250000000, 1000000000, 5000000000,
};

/* A growing text buffer; on ENOMEM it keeps failing and the snapshot is dropped. */
struct sbuf {
	char *p;
	size_t len, cap;
	bool failed;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends formatted text to @b, growing it as needed. */
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p ? b->p + b->len : NULL, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = true;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap ? b->cap * 2 : 4096;

		while (cap - b->len <= (size_t)n)
			cap *= 2;
		char *p = realloc(b->p, cap);

		if (!p) {
			b->failed = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
}

/* Appends @s as a label value: backslash, quote and newline escaped. */
static void sb_label(struct sbuf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			sb_printf(b, "\\\\");
		else if (*s == '"')
			sb_printf(b, "\\\"");
		else if (*s == '\n')
			sb_printf(b, "\\n");
		else
			sb_printf(b, "%c", *s);
	}
}

/* HELP and TYPE lines of a family. */
static void family(struct sbuf *b, const char *name, const char *type, const char *help)
{
	sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A family with one unlabelled sample. */
static void single(struct sbuf *b, const char *name, const char *type, const char *help, uint64_t v)
{
	family(b, name, type, help);
	sb_printf(b, "%s %" PRIu64 "\n", name, v);
}

static uint64_t ld(const uint64_t *v)
{
	return __atomic_load_n(v, __ATOMIC_RELAXED);
}

#define COUNTER(field, key_, metric_, help_)                                                       \
	{                                                                                          \
		.key = key_, .metric = metric_, .help = help_,                                     \
		.off = offsetof(struct mfs_counters, field)                                        \
	}

const struct mfs_counter_def mfs_counter_defs[] = {
    COUNTER(reads, "reads", "modelfs_reads_total", "Read requests served from signed files."),
    COUNTER(bytes_served, "bytes_served", "modelfs_read_bytes_total", "Bytes returned to readers."),
    COUNTER(bytes_verified, "bytes_verified", "modelfs_verified_bytes_total",
            "Bytes hashed and checked against the signed Merkle trees."),
    COUNTER(verify_failures, "verify_failures", "modelfs_failed_checks_total",
            "Every failed check of the mount, including transcoded views and tree builds."),
    COUNTER(open_failures, "open_failures", "modelfs_open_failures_total",
            "Opens refused because the backing file was missing or of the wrong type or size."),
    COUNTER(trees_built, "trees_built", "modelfs_trees_built_total",
            "Merkle trees built from the data into the cache folder."),
    COUNTER(tree_rebuilds, "tree_rebuilds", "modelfs_tree_rebuilds_total",
            "Trees rebuilt because a check failed (at most one per file per mount)."),
    COUNTER(transcodes, "transcodes", "modelfs_transcodes_total",
            "Pickle checkpoints transcoded to safetensors into the cache."),
    COUNTER(transcode_reuses, "transcode_reuses", "modelfs_transcode_reuses_total",
            "Cached transcoded outputs checked and reused."),
    COUNTER(transcode_rejected, "transcode_rejected", "modelfs_transcode_rejected_total",
            "Cached transcoded outputs that failed their check."),
    COUNTER(fd_exhausted, "fd_exhausted", "modelfs_fd_exhausted_total",
            "Operations that failed because the daemon ran out of file descriptors "
            "(EMFILE, ENFILE)."),
    COUNTER(fd_cache_evictions, "fd_cache_evictions", "modelfs_fd_cache_evictions_total",
            "Tree file descriptors closed by the fd cache (reopened on demand)."),
    COUNTER(negative_hits, "negative_cache_hits", "modelfs_negative_cache_hits_total",
            "Tree loads refused at once: the file is unchanged since its tree build failed."),
    COUNTER(tree_build_wait_timeouts, "tree_build_wait_timeouts",
            "modelfs_tree_build_wait_timeouts_total",
            "Opens and lookups that waited --tree-build-wait for a tree build and got EIO; "
            "the build went on."),
    COUNTER(tree_builds_refused, "tree_builds_refused", "modelfs_tree_builds_refused_total",
            "Tree builds refused at once (EIO): the build queue was full, or unmounting."),
    COUNTER(versions_freed, "versions_freed", "modelfs_versions_freed_total",
            "Model versions replaced or removed by a reload, freed once nothing used them."),
    COUNTER(prefetch_jobs, "prefetch_jobs", "modelfs_prefetch_windows_total",
            "Read-ahead windows queued for verified prefetch (a sequential reader)."),
    COUNTER(prefetch_bytes, "prefetch_bytes", "modelfs_prefetch_bytes_total",
            "Verified bytes pushed into the kernel's page cache ahead of readers."),
    COUNTER(prefetch_dropped, "prefetch_dropped", "modelfs_prefetch_dropped_total",
            "Read-ahead windows not queued because the prefetch queue was full."),
    COUNTER(prefetch_stopped, "prefetch_stopped", "modelfs_prefetch_stopped_total",
            "Read-ahead windows ended by a failed verified read (nothing of it pushed)."),
    COUNTER(prefetch_files, "prefetch_files", "modelfs_prefetch_files_total",
            "Files of --prefetch patterns read and verified through the mount."),
    COUNTER(prefetch_files_failed, "prefetch_files_failed", "modelfs_prefetch_files_failed_total",
            "Files of --prefetch patterns that could not be read (tampered, missing)."),
    COUNTER(prefetch_file_bytes, "prefetch_file_bytes", "modelfs_prefetch_file_bytes_total",
            "Bytes of --prefetch files read and verified through the mount."),
    COUNTER(remote_requests, "remote_requests", "modelfs_remote_requests_total",
            "Ranged GETs of a registry's blobs for reads (an oci:// store)."),
    COUNTER(remote_bytes, "remote_bytes", "modelfs_remote_bytes_total",
            "Bytes fetched from a registry's blobs for reads (an oci:// store)."),
    COUNTER(remote_failures, "remote_failures", "modelfs_remote_failures_total",
            "Ranged GETs of a registry's blobs that failed after the client's retries (EIO)."),
    COUNTER(remote_retries, "remote_retries", "modelfs_remote_retries_total",
            "Ranged GETs of a registry's blobs sent again after a 429, a 5xx or a dropped "
            "connection."),
    COUNTER(remote_cache_hits, "remote_cache_hits", "modelfs_remote_cache_hits_total",
            "64 KiB chunks of registry blobs read from the remote block cache."),
    COUNTER(remote_cache_misses, "remote_cache_misses", "modelfs_remote_cache_misses_total",
            "64 KiB chunks of registry blobs fetched into the remote block cache."),
    COUNTER(remote_cache_bytes, "remote_cache_bytes", "modelfs_remote_cache_bytes_total",
            "Bytes read from the remote block cache instead of the registry."),
    COUNTER(remote_cache_evictions, "remote_cache_evictions",
            "modelfs_remote_cache_evictions_total",
            "Blobs removed from the remote block cache to keep it under its size."),
    COUNTER(remote_cache_ahead, "remote_cache_ahead", "modelfs_remote_cache_ahead_total",
            "64 KiB chunks fetched into the remote block cache ahead of a sequential reader."),
};
const size_t mfs_n_counter_defs = sizeof(mfs_counter_defs) / sizeof(mfs_counter_defs[0]);

#define CACHE_STAT(field, key_, metric_, type_, help_)                                             \
	{                                                                                          \
		.key = key_, .metric = metric_, .type = type_, .help = help_,                      \
		.off = offsetof(struct mfs_cache_stats, field)                                     \
	}

const struct mfs_cache_stat_def mfs_cache_stat_defs[] = {
    CACHE_STAT(h.hits, "hblock_cache_hits", "modelfs_hblock_cache_hits_total", "counter",
               "Hash-block lookups found in the cache."),
    CACHE_STAT(h.misses, "hblock_cache_misses", "modelfs_hblock_cache_misses_total", "counter",
               "Hash-block lookups read from a tree file."),
    CACHE_STAT(h.evictions, "hblock_cache_evictions", "modelfs_hblock_cache_evictions_total",
               "counter", "Hash blocks evicted to stay within the bound."),
    CACHE_STAT(h.bytes, "hblock_cache_bytes", "modelfs_hblock_cache_bytes", "gauge",
               "Memory charged to the hash-block cache."),
    CACHE_STAT(h.max_bytes, "hblock_cache_max_bytes", "modelfs_hblock_cache_max_bytes", "gauge",
               "Bound of the hash-block cache."),
    CACHE_STAT(f.hits, "frame_cache_hits", "modelfs_frame_cache_hits_total", "counter",
               "Packed-file frame lookups found in the cache (including waits for a load)."),
    CACHE_STAT(f.waits, "frame_cache_waits", "modelfs_frame_cache_waits_total", "counter",
               "Packed-file frame lookups that waited for a load in flight (also counted as "
               "hits)."),
    CACHE_STAT(f.misses, "frame_cache_misses", "modelfs_frame_cache_misses_total", "counter",
               "Packed-file frames decompressed and verified."),
    CACHE_STAT(f.errors, "frame_cache_errors", "modelfs_frame_cache_errors_total", "counter",
               "Packed-file frame loads that failed."),
    CACHE_STAT(f.evictions, "frame_cache_evictions", "modelfs_frame_cache_evictions_total",
               "counter", "Frames evicted to stay within the bound."),
    CACHE_STAT(f.entries, "frame_cache_entries", "modelfs_frame_cache_entries", "gauge",
               "Frames in the frame cache."),
    CACHE_STAT(f.bytes, "frame_cache_bytes", "modelfs_frame_cache_bytes", "gauge",
               "Memory charged to the frame cache."),
    CACHE_STAT(f.max_bytes, "frame_cache_max_bytes", "modelfs_frame_cache_max_bytes", "gauge",
               "Bound of the frame cache."),
};
const size_t mfs_n_cache_stat_defs = sizeof(mfs_cache_stat_defs) / sizeof(mfs_cache_stat_defs[0]);

void mfs_cache_stats(struct mfs_mount *m, struct mfs_cache_stats *out)
{
	mc_hblock_cache_stats(m->hcache, &out->h);
	mc_frame_cache_stats(m->fcache, &out->f);
}

/* The mount-wide counters, one family each. */
static void read_counters(struct sbuf *b, struct mfs_mount *m)
{
	for (size_t i = 0; i < mfs_n_counter_defs; i++) {
		const struct mfs_counter_def *d = &mfs_counter_defs[i];

		single(b, d->metric, "counter", d->help, mfs_counter_get(m, d));
	}
}

/* The per-model failure counters and the exposed/refused gauge. */
static void model_series(struct sbuf *b, struct mfs_mount *m)
{
	uint64_t exposed = 0, refused = 0, last_good = 0;

	family(b, "modelfs_verify_failures_total", "counter",
	       "Blocks (or packed frames) that failed verification, per model.");
	pthread_rwlock_rdlock(&m->ns_lock);
	for (size_t i = 0; i < m->n_models; i++) {
		struct mfs_model *model = m->models[i];
		bool is_refused;

		pthread_mutex_lock(&model->lock);
		is_refused = model->refused != NULL;
		pthread_mutex_unlock(&model->lock);
		if (model->reload_error)
			last_good++;
		if (is_refused) {
			refused++;
			continue;
		}
		exposed++;
		sb_printf(b, "modelfs_verify_failures_total{model=\"");
		sb_label(b, model->path);
		sb_printf(b, "\"} %" PRIu64 "\n", ld(&model->verify_failures));
	}
	pthread_rwlock_unlock(&m->ns_lock);
	family(b, "modelfs_models", "gauge", "Models in the store, by state.");
	sb_printf(b, "modelfs_models{state=\"exposed\"} %" PRIu64 "\n", exposed);
	sb_printf(b, "modelfs_models{state=\"refused\"} %" PRIu64 "\n", refused);
	single(b, "modelfs_models_last_good", "gauge",
	       "Exposed models still serving their last good version: a newer model.sig "
	       "failed to verify.",
	       last_good);
}

/* Live reload: how many ran and when the last one ended (0 before the first). */
static void reload_series(struct sbuf *b, struct mfs_mount *m)
{
	struct mfs_reload_info ri;

	pthread_rwlock_rdlock(&m->ns_lock);
	ri = m->reload_info;
	pthread_rwlock_unlock(&m->ns_lock);
	single(b, "modelfs_reloads_total", "counter", "Store rescans (SIGHUP or --watch).",
	       ri.count);
	family(b, "modelfs_last_reload_timestamp_seconds", "gauge",
	       "When the last rescan ended, in seconds since the Unix epoch; 0 before the first.");
	sb_printf(b, "modelfs_last_reload_timestamp_seconds %lld.%09ld\n",
	          ri.count ? (long long)ri.last.tv_sec : 0LL,
	          ri.count ? (long)ri.last.tv_nsec : 0L);
	single(b, "modelfs_retired_versions", "gauge",
	       "Model versions replaced or removed by a reload and still in use (open files, "
	       "kernel inodes); each is freed when its last user goes.",
	       mfs_store_n_retired(m));
}

/* Hash-block and frame cache statistics, one family each. */
static void cache_series(struct sbuf *b, struct mfs_mount *m)
{
	struct mfs_cache_stats cs;

	mfs_cache_stats(m, &cs);
	for (size_t i = 0; i < mfs_n_cache_stat_defs; i++) {
		const struct mfs_cache_stat_def *d = &mfs_cache_stat_defs[i];

		single(b, d->metric, d->type, d->help, mfs_cache_stat_get(&cs, d));
	}
}

/* The help text of modelfs_fd_exhausted_recent names the window. */
_Static_assert(MFS_FD_ALARM_S == 60, "update modelfs_fd_exhausted_recent's help text");
_Static_assert(MFS_TB_QUEUE_MAX == 64, "update modelfs_tree_builds_queued's help text");

/* File descriptors: the limit, the tree fd cache, the negative cache. */
static void fd_series(struct sbuf *b, struct mfs_mount *m)
{
	struct mfs_fd_stats fs;

	mfs_fd_stats(m, &fs);
	single(b, "modelfs_fd_limit", "gauge",
	       "The daemon's RLIMIT_NOFILE soft limit the fd cache was sized from.", fs.nofile);
	single(b, "modelfs_fd_cache_fds", "gauge", "Tree file descriptors open in the fd cache.",
	       fs.open);
	single(b, "modelfs_fd_cache_max_fds", "gauge", "Bound of the fd cache.", fs.max);
	single(b, "modelfs_fd_exhausted_recent", "gauge",
	       "1 if the daemon ran out of file descriptors in the last 60 seconds: the mount is "
	       "unhealthy.",
	       fs.recent);
	single(b, "modelfs_negative_cache_entries", "gauge",
	       "Files whose data failed their tree build, not hashed again until they change.",
	       ld(&m->negative_entries));
}

/* The tree-build pool: its bound and what it does now. */
static void treebuild_series(struct sbuf *b, struct mfs_mount *m)
{
	struct mfs_tb_stats ts;

	mfs_treebuild_stats(m, &ts);
	single(b, "modelfs_tree_builds_running", "gauge",
	       "Missing trees being built now, by the builder threads.", ts.running);
	single(b, "modelfs_tree_builds_queued", "gauge",
	       "Tree builds waiting for a builder thread (at most 64).", ts.queued);
	single(b, "modelfs_tree_builders", "gauge", "Builder threads started (on demand).",
	       ts.threads);
	single(b, "modelfs_tree_builders_max", "gauge",
	       "Bound of the builder threads (--tree-builders).", ts.max_threads);
}

/* Prints @ns as seconds, exactly (no floating-point rounding). */
static void sb_seconds(struct sbuf *b, uint64_t ns)
{
	sb_printf(b, "%" PRIu64 ".%09" PRIu64, ns / 1000000000u, ns % 1000000000u);
}

/* The read latency histogram: cumulative buckets from the per-bucket counts. */
static void histogram(struct sbuf *b, struct mfs_mount *m)
{
	const char *name = "modelfs_read_duration_seconds";
	uint64_t cum = 0;

	family(b, name, "histogram", "Time to serve a read request, verification included.");
	for (size_t i = 0; i < MFS_READ_BUCKETS; i++) {
		cum += ld(&m->ctr.read_hist[i]);
		sb_printf(b, "%s_bucket{le=\"", name);
		if (i < MFS_READ_BUCKETS - 1)
			sb_seconds(b, bucket_ns[i]);
		else
			sb_printf(b, "+Inf");
		sb_printf(b, "\"} %" PRIu64 "\n", cum);
	}
	sb_printf(b, "%s_sum ", name);
	sb_seconds(b, ld(&m->ctr.read_ns_sum));
	sb_printf(b, "\n%s_count %" PRIu64 "\n", name, cum);
}

char *mfs_metrics_text(struct mfs_mount *m, size_t *len)
{
	struct sbuf b = {0};

	read_counters(&b, m);
	model_series(&b, m);
	reload_series(&b, m);
	cache_series(&b, m);
	fd_series(&b, m);
	treebuild_series(&b, m);
	histogram(&b, m);
	family(&b, "modelfs_start_time_seconds", "gauge",
	       "When the mount started, in seconds since the Unix epoch.");
	sb_printf(&b, "modelfs_start_time_seconds %lld.%09ld\n", (long long)m->started.tv_sec,
	          (long)m->started.tv_nsec);
	family(&b, "modelfs_build_info", "gauge", "Always 1; the version serving the mount.");
	sb_printf(&b, "modelfs_build_info{version=\"");
	sb_label(&b, MV_VERSION);
	sb_printf(&b, "\"} 1\n");
	if (b.failed) {
		free(b.p);
		return NULL;
	}
	*len = b.len;
	return b.p;
}

void mfs_metrics_observe_read(struct mfs_mount *m, uint64_t ns)
{
	size_t i = 0;

	/* Linear: 15 compares, cheaper than the read it measures by far. */
	while (i < MFS_READ_BUCKETS - 1 && ns > bucket_ns[i])
		i++;
	mfs_count(&m->ctr.read_hist[i], 1);
	mfs_count(&m->ctr.read_ns_sum, ns);
}
