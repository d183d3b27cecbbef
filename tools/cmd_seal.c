// SPDX-License-Identifier: Apache-2.0
/*
 * cmd_seal.c - `modelfs seal`: sign a model folder (or a single file) into
 * model.sig and write its Merkle trees; with --trees-only, rebuild the
 * trees of an existing signature after checking it.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* Everything the options collect; arrays have room for every argument. */
struct seal_args {
	struct mv_seal_opts o;
	const char *key_path;
	const char **trust_keys, **trust_cas, **ignores;
	size_t n_trust_keys, n_trust_cas;
};

/* --property k=v: the key must be non-empty and given once. */
static int add_property(struct mv_provenance *p, char *arg)
{
	char *eq = strchr(arg, '=');

	if (!eq || eq == arg) {
		cli_error("seal: --property '%s': expected KEY=VALUE", arg);
		return -1;
	}
	*eq = '\0';
	for (size_t i = 0; i < p->n_props; i++) {
		if (strcmp(p->props[i].key, arg) == 0) {
			cli_error("seal: --property '%s' given twice", arg);
			return -1;
		}
	}
	p->props[p->n_props].key = arg;
	p->props[p->n_props].value = eq + 1;
	p->n_props++;
	return 0;
}

/* Options that set tree parameters; returns -1 after printing the error. */
static int tree_option(int c, const char *arg, struct mv_tree_params *t)
{
	switch (c) {
	case 'a':
		if (!cli_parse_hash_alg(arg, t))
			return 0;
		cli_error("seal: unknown hash algorithm '%s' (sha256 or sha512)", arg);
		return -1;
	case 'b':
		if (!cli_parse_block_size(arg, t))
			return 0;
		cli_error("seal: invalid block size '%s' (a power of two, 1K..64K)", arg);
		return -1;
	default:
		if (!cli_parse_salt(arg, t))
			return 0;
		cli_error("seal: invalid salt '%s' (hex, at most 32 bytes)", arg);
		return -1;
	}
}

static int parse_threads(const char *arg, unsigned *out)
{
	unsigned long long v;

	if (cli_parse_size(arg, &v) || v < 1 || v > 64) {
		cli_error("seal: invalid --threads '%s' (1..64)", arg);
		return -1;
	}
	*out = (unsigned)v;
	return 0;
}

/* Parses argv into @a; returns 1 for --help, -1 on a usage error. */
static int parse_args(int argc, char **argv, struct seal_args *a)
{
	static const struct option opts[] = {
	    {"key", required_argument, NULL, 'k'},
	    {"name", required_argument, NULL, 'n'},
	    {"revision", required_argument, NULL, 'r'},
	    {"source", required_argument, NULL, 'S'},
	    {"base-model", required_argument, NULL, 'B'},
	    {"license", required_argument, NULL, 'L'},
	    {"dataset", required_argument, NULL, 'd'},
	    {"property", required_argument, NULL, 'p'},
	    {"hash-alg", required_argument, NULL, 'a'},
	    {"block-size", required_argument, NULL, 'b'},
	    {"salt", required_argument, NULL, 's'},
	    {"trees-only", no_argument, NULL, 'T'},
	    {"trust", required_argument, NULL, 't'},
	    {"trust-ca", required_argument, NULL, 'c'},
	    {"ignore-paths", required_argument, NULL, 'i'},
	    {"signature", required_argument, NULL, 'g'},
	    {"threads", required_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct mv_provenance *p = &a->o.prov;
	int c;

	while ((c = getopt_long(argc, argv, "hk:", opts, NULL)) != -1) {
		switch (c) {
		case 'k': a->key_path = optarg; break;
		case 'n': a->o.name = optarg; break;
		case 'r': p->revision = optarg; break;
		case 'S': p->source = optarg; break;
		case 'B': p->base_model = optarg; break;
		case 'L': p->license = optarg; break;
		case 'd': p->datasets[p->n_datasets++] = optarg; break;
		case 'p':
			if (add_property(p, optarg))
				return -1;
			break;
		case 'a':
		case 'b':
		case 's':
			if (tree_option(c, optarg, &a->o.tree))
				return -1;
			break;
		case 'T': a->o.trees_only = true; break;
		case 't': a->trust_keys[a->n_trust_keys++] = optarg; break;
		case 'c': a->trust_cas[a->n_trust_cas++] = optarg; break;
		case 'i': a->ignores[a->o.n_ignore_paths++] = optarg; break;
		case 'g': a->o.signature = optarg; break;
		case 'j':
			if (parse_threads(optarg, &a->o.threads))
				return -1;
			break;
		case 'h': return 1;
		default: return -1;
		}
	}
	a->o.ignore_paths = a->ignores;
	if (optind + 1 != argc)
		return -1;
	if (a->o.trees_only ? !(a->n_trust_keys + a->n_trust_cas) : !a->key_path) {
		cli_error("seal: %s", a->o.trees_only ? "--trees-only needs --trust or --trust-ca"
		                                      : "--key is required");
		return -1;
	}
	return 0;
}

/* --key PREFIX.key, or PREFIX alone when PREFIX.key exists. */
static int load_key(const char *path, struct mv_key **key)
{
	struct mv_err err = {0};
	char *alt = NULL;
	int ret;

	if (access(path, F_OK) != 0 && asprintf(&alt, "%s.key", path) >= 0 &&
	    access(alt, F_OK) == 0)
		path = alt;
	ret = mv_key_load_private(path, key, &err);
	free(alt);
	return ret ? cli_report(&err) : EXIT_OK;
}

static int load_trust(const struct seal_args *a, struct mv_trust **out)
{
	const struct mv_trust_inputs in = {.key_files = a->trust_keys,
	                                   .n_key_files = a->n_trust_keys,
	                                   .ca_files = a->trust_cas,
	                                   .n_ca_files = a->n_trust_cas,
	                                   .who = "seal"};
	struct mv_err err = {0};

	return mv_trust_load(&in, out, &err) ? cli_report(&err) : EXIT_OK;
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Allocates the option arrays: each repeatable option gets room for all of argv. */
static int alloc_args(struct seal_args *a, int argc)
{
	size_t n = (size_t)argc + 1;

	a->o.prov.datasets = calloc(n, sizeof(char *));
	a->o.prov.props = calloc(n, sizeof(struct mv_property));
	a->trust_keys = calloc(n, sizeof(char *));
	a->trust_cas = calloc(n, sizeof(char *));
	a->ignores = calloc(n, sizeof(char *));
	return a->o.prov.datasets && a->o.prov.props && a->trust_keys && a->trust_cas && a->ignores
	           ? 0
	           : -1;
}

static void free_args(struct seal_args *a)
{
	free(a->o.prov.datasets);
	free(a->o.prov.props);
	free(a->trust_keys);
	free(a->trust_cas);
	free(a->ignores);
}

int cmd_seal(int argc, char **argv)
{
	struct seal_args a = {0};
	struct mv_seal_stats stats = {0};
	struct mv_err err = {0};
	struct mv_key *key = NULL;
	struct mv_trust *trust = NULL;
	const char *model;
	double t0;
	int ret;

	if (alloc_args(&a, argc)) {
		cli_error("seal: out of memory");
		ret = EXIT_USAGE_IO;
		goto out;
	}
	ret = parse_args(argc, argv, &a);
	if (ret) {
		cli_usage("seal");
		ret = ret > 0 ? EXIT_OK : EXIT_USAGE_IO;
		goto out;
	}
	model = argv[optind];
	a.o.stats = &stats;
	ret = a.o.trees_only ? load_trust(&a, &trust) : load_key(a.key_path, &key);
	if (ret)
		goto out;
	a.o.trust = trust;
	t0 = now_seconds();
	if (mv_seal(model, key, &a.o, &err)) {
		ret = cli_report(&err);
		goto out;
	}
	printf("%s %s: %zu files, %llu bytes in %.2f s\n",
	       a.o.trees_only ? "rebuilt trees of" : "sealed", model, stats.files,
	       (unsigned long long)stats.bytes, now_seconds() - t0);
	ret = EXIT_OK;
out:
	mv_key_free(key);
	mv_trust_free(trust);
	free_args(&a);
	return ret;
}
