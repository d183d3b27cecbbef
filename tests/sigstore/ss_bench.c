// SPDX-License-Identifier: Apache-2.0
/*
 * ss_bench.c - how long verifying one keyless Sigstore bundle takes
 * (issue #14): the trusted root, the bundle and the artifact are read once;
 * then each iteration parses the root and the bundle and runs ss_verify(),
 * as a client verifying one bundle would. Five runs of N iterations; the
 * medians of the runs' per-verify times are printed in milliseconds: wall
 * clock, and the process's CPU time (which other load on the machine
 * inflates less).
 *
 *   ss_bench [-n N] [-i IDENTITY] [-o ISSUER] ROOT BUNDLE ARTIFACT
 *
 * IDENTITY and ISSUER default to the conformance suite's. Built, not run by
 * any test suite; docs/performance.md records its numbers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "sigstore_int.h"

#define RUNS      5
#define DEFAULT_N 200
#define MAX_N     1000000
#define DEFAULT_ID                                                                                 \
	"https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"          \
	".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
#define DEFAULT_ISSUER "https://token.actions.githubusercontent.com"

/* The files, read once. */
struct bench {
	char *root, *bundle, *data;
	size_t root_len, bundle_len, data_len;
	struct ss_policy policy;
	struct ss_artifact art;
	long n;
};

/*
 * now_ms() - a clock in milliseconds
 * @clock: in: CLOCK_MONOTONIC (wall) or CLOCK_PROCESS_CPUTIME_ID (CPU)
 *
 * Return: milliseconds since an arbitrary start.
 */
static double now_ms(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/*
 * verify_once() - parses the root and the bundle, then verifies
 * @bn: in: the files and the policy
 * @err: out: the message on failure
 *
 * Return: 0 or the failing step's negative errno.
 */
static int verify_once(const struct bench *bn, struct mv_err *err)
{
	struct ss_bundle *b = NULL;
	struct ss_root *root = NULL;
	struct ss_result res;
	int ret;

	ret = ss_root_parse("root", bn->root, bn->root_len, &root, err);
	if (ret)
		goto out;
	ret = ss_bundle_parse("bundle", bn->bundle, bn->bundle_len, &b, err);
	if (ret)
		goto out;
	ret = ss_verify(b, root, &bn->policy, &bn->art, (int64_t)time(NULL), &res, err);
out:
	ss_bundle_free(b);
	ss_root_free(root);
	return ret;
}

/*
 * run() - one timed run of @bn->n verifications
 * @bn: in: the files and the policy
 * @wall, @cpu: out: milliseconds per verification, wall clock and CPU
 * @err: out: the message on failure
 *
 * Return: 0 or the first failure's negative errno.
 */
static int run(const struct bench *bn, double *wall, double *cpu, struct mv_err *err)
{
	double w0 = now_ms(CLOCK_MONOTONIC), c0 = now_ms(CLOCK_PROCESS_CPUTIME_ID);
	int ret = 0;

	for (long i = 0; i < bn->n && !ret; i++)
		ret = verify_once(bn, err);
	*wall = (now_ms(CLOCK_MONOTONIC) - w0) / (double)bn->n;
	*cpu = (now_ms(CLOCK_PROCESS_CPUTIME_ID) - c0) / (double)bn->n;
	return ret;
}

/*
 * cmp_double() - qsort() order of doubles
 * @a, @b: in: the two
 *
 * Return: <0, 0 or >0.
 */
static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/*
 * load() - reads the three files
 * @root, @bundle, @artifact: in: their paths
 * @bn: out: contents and the artifact's SHA-256
 * @err: out: the message on failure
 *
 * Return: 0 or a read error.
 */
static int load(const char *root, const char *bundle, const char *artifact, struct bench *bn,
                struct mv_err *err)
{
	int ret;

	ret = mv_read_file(root, SS_MAX_JSON, &bn->root, &bn->root_len, err);
	if (!ret)
		ret = mv_read_file(bundle, SS_MAX_JSON, &bn->bundle, &bn->bundle_len, err);
	if (!ret)
		ret = mv_read_file(artifact, 1u << 30, &bn->data, &bn->data_len, err);
	if (ret)
		return ret;
	bn->art.data = (const uint8_t *)bn->data;
	bn->art.len = bn->data_len;
	if (EVP_Digest(bn->data, bn->data_len, bn->art.sha256, NULL, EVP_sha256(), NULL) != 1)
		return mv_err_set(err, -ENOMEM, "cannot hash %s", artifact);
	return 0;
}

/*
 * parse_args() - the options and the three paths
 * @argc, @argv: in: the command line
 * @bn: out: n and the policy
 *
 * Return: the index of ROOT in @argv, or -1 on a usage error.
 */
static int parse_args(int argc, char **argv, struct bench *bn)
{
	int c;

	bn->n = DEFAULT_N;
	bn->policy.identity = DEFAULT_ID;
	bn->policy.issuer = DEFAULT_ISSUER;
	while ((c = getopt(argc, argv, "n:i:o:")) != -1) {
		switch (c) {
		case 'n': bn->n = strtol(optarg, NULL, 10); break;
		case 'i': bn->policy.identity = optarg; break;
		case 'o': bn->policy.issuer = optarg; break;
		default: return -1;
		}
	}
	if (argc - optind != 3 || bn->n < 1 || bn->n > MAX_N)
		return -1;
	return optind;
}

int main(int argc, char **argv)
{
	struct bench bn = {0};
	struct mv_err err = {0};
	double wall[RUNS], cpu[RUNS];
	int ret = 1, at;

	at = parse_args(argc, argv, &bn);
	if (at < 0) {
		fprintf(stderr, "usage: ss_bench [-n N] [-i IDENTITY] [-o ISSUER] ROOT BUNDLE "
		                "ARTIFACT\n");
		return 2;
	}
	if (load(argv[at], argv[at + 1], argv[at + 2], &bn, &err) || verify_once(&bn, &err))
		goto out;
	for (int r = 0; r < RUNS; r++)
		if (run(&bn, &wall[r], &cpu[r], &err))
			goto out;
	qsort(wall, RUNS, sizeof(wall[0]), cmp_double);
	qsort(cpu, RUNS, sizeof(cpu[0]), cmp_double);
	printf("%s: %.3f ms per parse+verify (wall, median of %d runs of %ld; min %.3f, max "
	       "%.3f); CPU %.3f ms (min %.3f)\n",
	       argv[at + 1], wall[RUNS / 2], RUNS, bn.n, wall[0], wall[RUNS - 1], cpu[RUNS / 2],
	       cpu[0]);
	ret = 0;
out:
	if (ret)
		fprintf(stderr, "ss_bench: %s\n", err.msg);
	free(bn.root);
	free(bn.bundle);
	free(bn.data);
	return ret;
}
