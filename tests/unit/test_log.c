// SPDX-License-Identifier: Apache-2.0
/*
 * test_log.c - the mount's log helpers (fs/mount/log.c) and the metrics text
 * (fs/mount/metrics.c) without a mount: value quoting, the per-file rate limit,
 * histogram buckets and label escaping.
 */
#include <stdlib.h>
#include <string.h>

#include "mount_int.h"
#include "tap.h"

static void test_log_value_plain_and_quoted(void)
{
	char buf[64];

	CHECK_STR(mfs_log_value("org/model-1.bin", buf, sizeof(buf)), "org/model-1.bin");
	CHECK_STR(mfs_log_value("a b", buf, sizeof(buf)), "\"a b\"");
	CHECK_STR(mfs_log_value("", buf, sizeof(buf)), "\"\"");
	CHECK_STR(mfs_log_value("k=v", buf, sizeof(buf)), "\"k=v\"");
	/* a newline cannot start a forged line */
	CHECK_STR(mfs_log_value("x\nverify-failure model=y", buf, sizeof(buf)),
	          "\"x\\nverify-failure model=y\"");
	CHECK_STR(mfs_log_value("q\"b\\s\x01", buf, sizeof(buf)), "\"q\\\"b\\\\s\\x01\"");
	/* UTF-8 stays readable */
	CHECK_STR(mfs_log_value("mod\xc3\xa8le", buf, sizeof(buf)), "mod\xc3\xa8le");
}

static void test_log_value_truncates_inside_quotes(void)
{
	char buf[16], in[100];

	memset(in, ' ', sizeof(in) - 1);
	in[sizeof(in) - 1] = '\0';
	mfs_log_value(in, buf, sizeof(buf));
	CHECK(strlen(buf) < sizeof(buf));
	CHECK(buf[0] == '"' && buf[strlen(buf) - 1] == '"');
	memset(in, 'a', sizeof(in) - 1);
	mfs_log_value(in, buf, sizeof(buf)); /* a plain word too long: quoted and cut */
	CHECK(strlen(buf) < sizeof(buf));
}

static void test_ratelimit_first_then_suppressed(void)
{
	struct mfs_ratelimit rl = {0};
	uint64_t sup = 99;
	int logged = 0;

	CHECK(mfs_log_ratelimit(&rl, &sup));
	CHECK_EQ_INT(sup, 0);
	for (int i = 0; i < 1000; i++)
		logged += mfs_log_ratelimit(&rl, &sup);
	CHECK_EQ_INT(logged, 0);
	CHECK_EQ_INT(rl.suppressed, 1000);
	/* the interval has passed: one line, carrying the count */
	rl.last_ns -= (uint64_t)MFS_LOG_INTERVAL_S * 1000000000u + 1;
	CHECK(mfs_log_ratelimit(&rl, &sup));
	CHECK_EQ_INT(sup, 1000);
	CHECK_EQ_INT(rl.suppressed, 0);
}

/* A mount with caches and one model, enough for mfs_metrics_text(). */
static struct mfs_mount *fake_mount(struct mfs_model *model)
{
	struct mfs_mount *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	pthread_rwlock_init(&m->ns_lock, NULL);
	mc_hblock_cache_new(0, &m->hcache);
	mc_frame_cache_new(0, &m->fcache);
	pthread_mutex_init(&model->lock, NULL);
	m->models = calloc(1, sizeof(*m->models));
	m->models[0] = model;
	m->n_models = 1;
	return m;
}

static void free_mount(struct mfs_mount *m)
{
	mc_hblock_cache_free(m->hcache);
	mc_frame_cache_free(m->fcache);
	pthread_rwlock_destroy(&m->ns_lock);
	free(m->models);
	free(m);
}

static void test_metrics_histogram_and_labels(void)
{
	struct mfs_model model = {.path = (char *)"we\"ird\\na\nme", .verify_failures = 3};
	struct mfs_mount *m = fake_mount(&model);
	size_t len = 0;
	char *t;

	if (!m) {
		CHECK(0);
		return;
	}
	mfs_metrics_observe_read(m, 10000);      /* exactly on the first bound: le="0.00001" */
	mfs_metrics_observe_read(m, 10001);      /* the next bucket */
	mfs_metrics_observe_read(m, 7000000000); /* above 5 s: +Inf only */
	t = mfs_metrics_text(m, &len);
	CHECK(t && len == strlen(t) && t[len - 1] == '\n');
	if (t) {
		CHECK(strstr(t, "modelfs_read_duration_seconds_bucket{le=\"0.000010000\"} 1\n"));
		CHECK(strstr(t, "modelfs_read_duration_seconds_bucket{le=\"0.000025000\"} 2\n"));
		CHECK(strstr(t, "modelfs_read_duration_seconds_bucket{le=\"5.000000000\"} 2\n"));
		CHECK(strstr(t, "modelfs_read_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
		CHECK(strstr(t, "modelfs_read_duration_seconds_count 3\n"));
		CHECK(strstr(t, "modelfs_read_duration_seconds_sum 7.000020001\n"));
		CHECK(
		    strstr(t, "modelfs_verify_failures_total{model=\"we\\\"ird\\\\na\\nme\"} 3\n"));
		CHECK(strstr(t, "modelfs_models{state=\"exposed\"} 1\n"));
		CHECK(strstr(t, "modelfs_models{state=\"refused\"} 0\n"));
	}
	free(t);
	pthread_mutex_destroy(&model.lock);
	free_mount(m);
}

int main(void)
{
	TAP_RUN(test_log_value_plain_and_quoted);
	TAP_RUN(test_log_value_truncates_inside_quotes);
	TAP_RUN(test_ratelimit_first_then_suppressed);
	TAP_RUN(test_metrics_histogram_and_labels);
	TAP_DONE();
}
