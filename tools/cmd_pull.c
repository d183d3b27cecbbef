// SPDX-License-Identifier: Apache-2.0
/*
 * cmd_pull.c - `modelfs pull REGISTRY/REPO[:TAG][@sha256:HEX] DIR`: download
 * a model pushed by `modelfs push`, verify its signature, every blob and
 * every tree, and install it as a store folder (docs/remote.md "Pull").
 *
 * Output: one line "pulled: ..." on stdout and exit 0; with --progress,
 * lines "pull: X MiB of Y MiB fetched (N%)" on stderr meanwhile. A model that does
 * not verify (untrusted or bad signature, a blob or tree that does not match,
 * a refused layer path) is exit 1 and leaves nothing; registry, auth and I/O
 * errors are one line naming the registry and the reason (exit 2), and the
 * staging folder DIR.modelfs-pull is kept so that the next run resumes.
 * Credentials come from the auth files only.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "fsremote.h"
#include "vpack.h"

struct pull_args {
	struct cli_trust_args trust;
	struct mfr_client_opts copts;
	unsigned jobs;
	unsigned long long chunk;
	bool progress; /* --progress */
	const char *ref, *dir;
};

/* --progress: one line on stderr at most every second, and when all is fetched. */
struct progress {
	pthread_mutex_t lock;
	struct timespec last;
};

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct progress *pr = ctx;
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&pr->lock);
	if (done >= total || now.tv_sec > pr->last.tv_sec) {
		pr->last = now;
		fprintf(stderr, "pull: %.1f MiB of %.1f MiB fetched (%.0f%%)\n",
		        (double)done / 1048576.0, (double)total / 1048576.0,
		        total ? 100.0 * (double)done / (double)total : 100.0);
	}
	pthread_mutex_unlock(&pr->lock);
}

static void on_line(void *ctx, const char *line)
{
	fprintf(stderr, "%s%s\n", (const char *)ctx, line);
}

/* Parses --jobs N and --chunk-size SIZE into @a; -1 with a line on error. */
static int parse_number(int c, const char *arg, struct pull_args *a)
{
	if (c == 'j' && cli_parse_uint(arg, 1, MFR_JOBS_MAX, &a->jobs)) {
		cli_error("pull: --jobs must be 1..%u", MFR_JOBS_MAX);
		return -1;
	}
	if (c == 'z' && (cli_parse_size(arg, &a->chunk) || a->chunk < MFR_CHUNK_MIN ||
	                 a->chunk > MFR_RANGE_MAX)) {
		cli_error("pull: --chunk-size must be %uK..%uM", MFR_CHUNK_MIN >> 10,
		          MFR_RANGE_MAX >> 20);
		return -1;
	}
	return 0;
}

/* Parses argv into @a; returns 1 for --help, -1 on a usage error. */
static int parse_args(int argc, char **argv, struct pull_args *a)
{
	static const struct option opts[] = {
	    CLI_TRUST_OPTIONS,
	    {"ca-cert", required_argument, NULL, 'C'},
	    {"insecure", no_argument, NULL, 'k'},
	    {"jobs", required_argument, NULL, 'j'},
	    {"chunk-size", required_argument, NULL, 'z'},
	    {"progress", no_argument, NULL, 'P'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "hj:", opts, NULL)) != -1) {
		if (cli_trust_option(&a->trust, c, optarg))
			continue;
		switch (c) {
		case 'C': a->copts.ca_file = optarg; break;
		case 'k': a->copts.insecure = true; break;
		case 'P': a->progress = true; break;
		case 'j':
		case 'z':
			if (parse_number(c, optarg, a))
				return -1;
			break;
		case 'h': return 1;
		default: return -1;
		}
	}
	if (optind + 2 != argc || cli_trust_check(&a->trust, "pull"))
		return -1;
	a->ref = argv[optind];
	a->dir = argv[optind + 1];
	return 0;
}

/* Connects, pulls, prints the summary; one line on failure. Returns the exit status. */
static int fetch(const struct pull_args *a, const struct mfr_ref *ref, const struct mv_trust *t)
{
	struct progress pr = {.lock = PTHREAD_MUTEX_INITIALIZER};
	const struct mfr_pull_opts o = {.trust = t,
	                                .copts = &a->copts,
	                                .jobs = a->jobs,
	                                .chunk_size = (uint32_t)a->chunk,
	                                .problem = on_line,
	                                .pctx = "",
	                                .warn = on_line,
	                                .wctx = "warning: ",
	                                .measure_packed = mv_zpack_measure,
	                                .progress = a->progress ? on_progress : NULL,
	                                .prctx = &pr};
	struct mfr_client *c = NULL;
	struct mfr_pull_result res;
	struct mv_err err = {0};
	int ret;

	memset(&res, 0, sizeof(res));
	ret = mfr_client_new(ref, &a->copts, &c, &err);
	if (!ret)
		ret = mfr_pull(c, ref, a->dir, &o, &res, &err);
	if (ret) {
		cli_error("pull: %s", err.msg[0] ? err.msg : strerror(-ret));
		if (ret == -EBADMSG || ret == -EKEYREJECTED) {
			cli_error("pull: %s: the model does not verify; nothing installed", a->ref);
			ret = EXIT_VERIFY;
		} else {
			if (res.staging[0])
				cli_error("pull: partial download kept in %s; run again to resume",
				          res.staging);
			ret = EXIT_USAGE_IO;
		}
		goto out;
	}
	printf("pulled: %s/%s%s%s@%s into %s (%zu files, %llu bytes, %zu trees; %llu chunks "
	       "fetched, %llu bytes; %llu chunks re-used, %llu fetched again; referrer %s)\n",
	       ref->registry, ref->repo, ref->tag ? ":" : "", ref->tag ? ref->tag : "",
	       res.manifest_digest, a->dir, res.n_files, (unsigned long long)res.bytes, res.n_trees,
	       (unsigned long long)res.chunks_fetched, (unsigned long long)res.bytes_fetched,
	       (unsigned long long)res.chunks_reused, (unsigned long long)res.chunks_bad,
	       res.referrer_digest);
out:
	mfr_client_free(c);
	return ret;
}

int cmd_pull(int argc, char **argv)
{
	struct pull_args a = {0};
	struct mfr_ref ref = {0};
	struct mv_trust *trust = NULL;
	int ret = EXIT_USAGE_IO;

	if (cli_trust_init(&a.trust, argc)) {
		cli_error("pull: out of memory");
		goto out;
	}
	ret = parse_args(argc, argv, &a);
	if (ret) {
		cli_usage("pull");
		ret = ret > 0 ? EXIT_OK : EXIT_USAGE_IO;
		goto out;
	}
	ret = EXIT_USAGE_IO;
	if (cli_remote_ref("pull", a.ref, a.copts.insecure, &ref))
		goto out;
	if (!ref.tag && !ref.digest[0]) {
		cli_error("pull: %s: give a tag (REGISTRY/REPO:TAG) or a digest (@sha256:HEX)",
		          a.ref);
		goto out;
	}
	ret = cli_trust_load(&a.trust, "pull", &trust);
	if (!ret)
		ret = fetch(&a, &ref, trust);
out:
	mv_trust_free(trust);
	mfr_ref_free(&ref);
	cli_trust_free(&a.trust);
	return ret;
}
