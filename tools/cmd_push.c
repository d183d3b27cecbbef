// SPDX-License-Identifier: Apache-2.0
/*
 * cmd_push.c - `modelfs push MODEL_DIR REGISTRY/REPO:TAG`: verify a sealed
 * model, then publish it as a CNCF ModelPack artifact with its signature
 * and Merkle trees attached as a referrer (docs/remote.md).
 *
 * Output: one line "pushed: ..." on stdout and exit 0. A model that does
 * not verify is refused before any connection (exit 1, one line per
 * problem); registry, auth and I/O errors are one line naming the registry
 * and the reason (exit 2). Credentials come from the auth files only.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fsremote.h"

struct push_args {
	struct cli_trust_args trust;
	struct mfr_client_opts copts;
	const char *model, *ref;
};

static void on_line(void *ctx, const char *line)
{
	fprintf(stderr, "%s%s\n", (const char *)ctx, line);
}

/* Parses argv into @a; returns 1 for --help, -1 on a usage error. */
static int parse_args(int argc, char **argv, struct push_args *a)
{
	static const struct option opts[] = {
	    CLI_TRUST_OPTIONS,
	    {"ca-cert", required_argument, NULL, 'C'},
	    {"insecure", no_argument, NULL, 'k'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (cli_trust_option(&a->trust, c, optarg))
			continue;
		switch (c) {
		case 'C': a->copts.ca_file = optarg; break;
		case 'k': a->copts.insecure = true; break;
		case 'h': return 1;
		default: return -1;
		}
	}
	if (optind + 2 != argc || cli_trust_check(&a->trust, "push"))
		return -1;
	a->model = argv[optind];
	a->ref = argv[optind + 1];
	return 0;
}

/* The model must verify as `modelfs verify` checks it; its manifest in *@m. */
static int verify_model(const struct push_args *a, struct mv_manifest **m)
{
	const struct mv_verify_opts o = {.measure_packed = mv_zpack_measure};
	struct mv_trust *trust = NULL;
	int ret;

	ret = cli_trust_load(&a->trust, "push", &trust);
	if (ret)
		goto out;
	ret = mv_model_verify(a->model, trust, &o, on_line, "", on_line, "warning: ", m);
	if (ret) {
		cli_error("push: %s: the model does not verify; nothing pushed", a->model);
		ret = ret == -EBADMSG || ret == -EKEYREJECTED || ret == -EINVAL ? EXIT_VERIFY
		                                                                : EXIT_USAGE_IO;
	}
out:
	mv_trust_free(trust);
	return ret;
}

/* Connects and pushes; one line on failure. */
static int publish(const struct push_args *a, const struct mfr_ref *ref,
                   const struct mv_manifest *m)
{
	struct mfr_client *c = NULL;
	struct mfr_push_result res;
	struct mv_err err = {0};
	int ret;

	ret = mfr_client_new(ref, &a->copts, &c, &err);
	if (!ret)
		ret = mfr_push(c, ref, a->model, m, &res, &err);
	if (ret) {
		cli_error("push: %s", err.msg[0] ? err.msg : strerror(-ret));
		ret = ret == -EBADMSG ? EXIT_VERIFY : EXIT_USAGE_IO;
		goto out;
	}
	printf("pushed: %s/%s:%s@%s (%zu files, %zu blobs uploaded, %llu bytes; referrer %s%s)\n",
	       ref->registry, ref->repo, ref->tag, res.manifest_digest, res.n_layers,
	       res.n_uploaded, (unsigned long long)res.bytes_uploaded, res.referrer_digest,
	       res.tag_schema ? ", referrers tag schema" : "");
out:
	mfr_client_free(c);
	return ret;
}

int cmd_push(int argc, char **argv)
{
	struct push_args a = {0};
	struct mfr_ref ref = {0};
	struct mv_manifest *m = NULL;
	int ret = EXIT_USAGE_IO;

	if (cli_trust_init(&a.trust, argc)) {
		cli_error("push: out of memory");
		goto out;
	}
	ret = parse_args(argc, argv, &a);
	if (ret) {
		cli_usage("push");
		ret = ret > 0 ? EXIT_OK : EXIT_USAGE_IO;
		goto out;
	}
	ret = EXIT_USAGE_IO;
	if (cli_remote_ref("push", a.ref, a.copts.insecure, &ref))
		goto out;
	if (!ref.tag || ref.digest[0]) {
		cli_error("push: %s: give a tag (REGISTRY/REPO:TAG), without a digest", a.ref);
		goto out;
	}
	ret = verify_model(&a, &m);
	if (!ret)
		ret = publish(&a, &ref, m);
out:
	mv_manifest_free(m);
	mfr_ref_free(&ref);
	cli_trust_free(&a.trust);
	return ret;
}
