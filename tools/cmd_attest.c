// SPDX-License-Identifier: Apache-2.0
/*
 * cmd_attest.c - `modelfs attest`: sign an in-toto attestation about a
 * model's signature into MODEL_DIR/.modelfs/attestations (cli_attest.c,
 * shared with `modelfs scan --attest`).
 *
 * The attestation's subject is the SHA-256 of model.sig's statement: it
 * vouches for exactly that signed content. model.sig is read, not verified:
 * check it with `modelfs verify` before vouching for it.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

#define PREDICATE_MAX (8u << 20)

struct attest_args {
	const char *key, *type, *predicate, *signature, *model;
};

/**
 * parse_args() - parse `modelfs attest` options
 * @argc, @argv: in: the command line
 * @a: out: the options and MODEL_DIR
 *
 * Return: 0, 1 for --help, -1 on a usage error.
 */
static int parse_args(int argc, char **argv, struct attest_args *a)
{
	static const struct option opts[] = {
	    {"key", required_argument, NULL, 'k'},
	    {"predicate-type", required_argument, NULL, 'T'},
	    {"predicate", required_argument, NULL, 'p'},
	    {"signature", required_argument, NULL, 's'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'k': a->key = optarg; break;
		case 'T': a->type = optarg; break;
		case 'p': a->predicate = optarg; break;
		case 's': a->signature = optarg; break;
		case 'h': return 1;
		default: return -1;
		}
	}
	if (optind + 1 != argc || !a->key || !a->type || !a->predicate)
		return -1;
	a->model = argv[optind];
	return 0;
}

/**
 * cmd_attest() - `modelfs attest --key K --predicate-type URI --predicate FILE
 *                [--signature SIG] MODEL_DIR`
 * @argc: in: argument count
 * @argv: in: arguments; argv[0] is "attest"
 *
 * Return: EXIT_OK, or EXIT_USAGE_IO on a usage, read or signing error.
 */
int cmd_attest(int argc, char **argv)
{
	struct attest_args a = {0};
	struct cli_attest_req req;
	struct mv_err err = {0};
	char *pred = NULL;
	size_t len = 0;
	int ret = parse_args(argc, argv, &a);

	if (ret) {
		cli_usage("attest");
		return ret > 0 ? EXIT_OK : EXIT_USAGE_IO;
	}
	if (mv_read_file(a.predicate, PREDICATE_MAX, &pred, &len, &err)) {
		cli_error("%s", err.msg);
		return EXIT_USAGE_IO;
	}
	req = (struct cli_attest_req){.model = a.model,
	                              .sig_path = a.signature,
	                              .key_path = a.key,
	                              .type = a.type,
	                              .predicate = pred,
	                              .pred_len = len};
	ret = cli_attest_sign(&req);
	free(pred);
	return ret;
}
