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
	const char **trust_keys, **trust_cas;
	size_t n_trust_keys, n_trust_cas;
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
	    {"trust", required_argument, NULL, 't'},   {"trust-ca", required_argument, NULL, 'c'},
	    {"ca-cert", required_argument, NULL, 'C'}, {"insecure", no_argument, NULL, 'k'},
	    {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 't': a->trust_keys[a->n_trust_keys++] = optarg; break;
		case 'c': a->trust_cas[a->n_trust_cas++] = optarg; break;
		case 'C': a->copts.ca_file = optarg; break;
		case 'k': a->copts.insecure = true; break;
		case 'h': return 1;
		default: return -1;
		}
	}
	if (optind + 2 != argc)
		return -1;
	if (!a->n_trust_keys && !a->n_trust_cas) {
		cli_error("push: give at least one --trust KEY.pub or --trust-ca CA.pem");
		return -1;
	}
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

	ret = cli_load_trust(&(const struct mv_trust_inputs){.key_files = a->trust_keys,
	                                                     .n_key_files = a->n_trust_keys,
	                                                     .ca_files = a->trust_cas,
	                                                     .n_ca_files = a->n_trust_cas,
	                                                     .who = "push"},
	                     &trust);
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
	struct mv_err err = {0};
	int ret = EXIT_USAGE_IO;

	a.trust_keys = calloc((size_t)argc + 1, sizeof(char *));
	a.trust_cas = calloc((size_t)argc + 1, sizeof(char *));
	if (!a.trust_keys || !a.trust_cas) {
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
	if (mfr_ref_parse(a.ref, &ref, &err)) {
		cli_error("push: %s", err.msg);
		goto out;
	}
	if (!ref.tag || ref.digest[0]) {
		cli_error("push: %s: give a tag (REGISTRY/REPO:TAG), without a digest", a.ref);
		goto out;
	}
	if (ref.plain_http && !a.copts.insecure && !mfr_host_is_loopback(ref.host)) {
		cli_error("push: %s: plain HTTP refused to a host that is not loopback (--insecure "
		          "allows it)",
		          ref.registry);
		goto out;
	}
	ret = verify_model(&a, &m);
	if (!ret)
		ret = publish(&a, &ref, m);
out:
	mv_manifest_free(m);
	mfr_ref_free(&ref);
	free(a.trust_keys);
	free(a.trust_cas);
	return ret;
}
