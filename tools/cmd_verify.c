// SPDX-License-Identifier: Apache-2.0
/*
 * cmd_verify.c - `modelfs verify`: check a signed model folder or file.
 *
 * Output: on success one summary line on stdout and exit 0; otherwise one
 * line per problem on stderr and exit 1 (a malformed, untrusted or
 * mismatching signature, a changed, missing or unsigned file) or 2 (usage
 * and I/O errors). Warnings go to stderr prefixed "warning: ".
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

struct verify_args {
	struct mv_verify_opts o;
	struct cli_trust_args trust; /* --trust, --trust-ca, --identity ..., --trust-root */
	const char **ignores;
	const char *model;
	const char *policy;     /* --policy FILE.json, or NULL */
	const char *model_path; /* --model-path: path matched by policy rules */
	/* --name-check: how the signed name must fit --model-path */
	enum mv_name_check name_check;
};

static void on_problem(void *ctx, const char *line)
{
	fprintf(stderr, "%s\n", line);
}

static void on_warning(void *ctx, const char *line)
{
	fprintf(stderr, "warning: %s\n", line);
}

/* Parses argv; returns 1 for --help, -1 on a usage error. */
static int parse_args(int argc, char **argv, struct verify_args *a)
{
	static const struct option opts[] = {
	    CLI_TRUST_OPTIONS,
	    {"signature", required_argument, NULL, 's'},
	    {"ignore-paths", required_argument, NULL, 'i'},
	    {"ignore-unsigned-files", no_argument, NULL, 'u'},
	    {"policy", required_argument, NULL, 'P'},
	    {"model-path", required_argument, NULL, 'M'},
	    {"name-check", required_argument, NULL, 'N'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (cli_trust_option(&a->trust, c, optarg))
			continue;
		switch (c) {
		case 's': a->o.signature = optarg; break;
		case 'i': a->ignores[a->o.n_ignore_paths++] = optarg; break;
		case 'u': a->o.ignore_unsigned_files = true; break;
		case 'P': a->policy = optarg; break;
		case 'M': a->model_path = optarg; break;
		case 'N':
			if (mv_name_check_parse(optarg, &a->name_check)) {
				cli_error("verify: --name-check must be suffix, exact or off");
				return -1;
			}
			break;
		case 'h': return 1;
		default: return -1;
		}
	}
	a->o.ignore_paths = a->ignores;
	a->o.measure_packed = mv_zpack_measure; /* packed copies (libvpack) */
	if (optind + 1 != argc || cli_trust_check(&a->trust, "verify"))
		return -1;
	a->model = argv[optind];
	return 0;
}

/*
 * The signer for the summary: a keyless identity, a certificate subject, or
 * the OMS hint of the trusted key whose id matches (the hint is what bundles
 * and users quote) followed by its key id (what the mount, status.json,
 * policies and the BOM print).
 */
static void describe_signer(const struct verify_args *a, const struct mv_signer *s, char *out,
                            size_t len)
{
	if (s->is_certificate) {
		memcpy(out, "signer ", 8);
		mv_signer_describe(s, out + 7, len - 7);
		return;
	}
	for (size_t i = 0; i < a->trust.n_keys; i++) {
		struct mv_key *k = NULL;
		char id[65], hint[65];

		if (mv_key_load_public(a->trust.keys[i], &k, NULL))
			continue;
		mv_key_id(k, id);
		mv_key_hint(k, hint);
		mv_key_free(k);
		if (strcmp(id, s->key_id) == 0) {
			/* Both: the mount, status, policy and BOM name keys by id. */
			snprintf(out, len, "signer key %s, key id %s", hint, id);
			return;
		}
	}
	snprintf(out, len, "signer key id %s", s->key_id);
}

/* Total signed bytes: from the signature, or from the files for plain OMS. */
static unsigned long long total_bytes(const char *model, const struct mv_manifest *m)
{
	unsigned long long total = 0;
	struct stat st;

	for (size_t i = 0; i < m->n_res; i++) {
		const struct mv_resource *r = &m->res[i];
		char *path = NULL;

		if (r->has_merkle) {
			total += r->merkle.params.data_size;
			continue;
		}
		if (strcmp(r->name, ".") == 0)
			path = strdup(model);
		else if (asprintf(&path, "%s/%s", model, r->name) < 0)
			path = NULL;
		if (path && lstat(path, &st) == 0)
			total += (unsigned long long)st.st_size;
		free(path);
	}
	return total;
}

static int alloc_args(struct verify_args *a, int argc)
{
	size_t n = (size_t)argc + 1;

	a->ignores = calloc(n, sizeof(char *));
	return a->ignores && !cli_trust_init(&a->trust, argc) ? 0 : -1;
}

/*
 * With --model-path, the store path must fit the signed name as the mount
 * requires (--name-check, the policy's names map): one line and exit 1 if
 * not, so verify and mount agree on a model found at that path.
 */
static int check_name(const struct verify_args *a, const struct mv_policy *pol,
                      const struct mv_manifest *m)
{
	struct mv_err err = {0};

	if (!a->model_path)
		return EXIT_OK;
	if (mv_name_bind_check(pol, a->model_path, m, a->name_check, &err)) {
		fprintf(stderr, "name refused: %s: %s\n", a->model, err.msg);
		return EXIT_VERIFY;
	}
	return EXIT_OK;
}

/*
 * Lists the model's attestations (checked against the same trust inputs),
 * checks the signed name against --model-path and, with --policy, applies
 * the policy. A refusal names the rule (exit 1).
 */
static int check_provenance(const struct verify_args *a, const struct mv_trust *trust,
                            const struct mv_manifest *m)
{
	struct mv_attestation_list atts = {0};
	struct mv_policy *pol = NULL;
	struct mv_err err = {0};
	const char *path = a->model_path;
	struct stat st;
	int ret = EXIT_OK;

	if (a->policy && mv_policy_load(a->policy, &pol, &err)) {
		cli_error("%s", err.msg);
		return EXIT_USAGE_IO;
	}
	/* A single-file signature has no folder to hold attestations. */
	if (stat(a->model, &st) == 0 && S_ISDIR(st.st_mode) &&
	    mv_attestations_load(a->model, m, trust, &atts, &err)) {
		ret = cli_report(&err);
		goto out;
	}
	cli_print_attestations(stdout, &atts);
	ret = check_name(a, pol, m);
	if (ret || !pol)
		goto out;
	if (!path)
		path = mv_model_name(m);
	if (mv_policy_check(pol, path, m, &atts, &err)) {
		fprintf(stderr, "policy refused: %s\n", err.msg);
		ret = err.code == -EKEYREJECTED ? EXIT_VERIFY : EXIT_USAGE_IO;
		goto out;
	}
	printf("policy: allowed by %s (model path \"%s\"", a->policy, path);
	if (mv_policy_pickle(pol, path, mv_model_name(m)))
		printf(", pickle policy %s", mv_policy_pickle(pol, path, mv_model_name(m)));
	printf(")\n");
out:
	mv_attestations_free(&atts);
	mv_policy_free(pol);
	return ret;
}

/* Exit status of a failed verification: see the file comment. */
static int failure_status(int ret)
{
	switch (ret) {
	case -EBADMSG:
	case -EKEYREJECTED:
	case -EINVAL: return EXIT_VERIFY;
	default: return EXIT_USAGE_IO;
	}
}

int cmd_verify(int argc, char **argv)
{
	struct verify_args a = {0};
	struct mv_trust *trust = NULL;
	struct mv_manifest *m = NULL;
	char signer[600];
	int ret;

	if (alloc_args(&a, argc)) {
		cli_error("verify: out of memory");
		ret = EXIT_USAGE_IO;
		goto out;
	}
	ret = parse_args(argc, argv, &a);
	if (ret) {
		cli_usage("verify");
		ret = ret > 0 ? EXIT_OK : EXIT_USAGE_IO;
		goto out;
	}
	ret = cli_trust_load(&a.trust, "verify", &trust);
	if (ret)
		goto out;
	ret = mv_model_verify(a.model, trust, &a.o, on_problem, NULL, on_warning, NULL, &m);
	if (ret) {
		ret = failure_status(ret);
		goto out;
	}
	describe_signer(&a, &m->signer, signer, sizeof(signer));
	printf("verified: %zu files, %llu bytes, %s (%s)\n", m->n_res, total_bytes(a.model, m),
	       signer,
	       m->has_extension ? "SHA-256 and fs-verity digests checked"
	                        : "no Merkle roots: plain OMS signature");
	ret = check_provenance(&a, trust, m);
out:
	mv_manifest_free(m);
	mv_trust_free(trust);
	cli_trust_free(&a.trust);
	free(a.ignores);
	return ret;
}
