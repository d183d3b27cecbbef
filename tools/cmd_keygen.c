// SPDX-License-Identifier: Apache-2.0
/*
 * cmd_keygen.c - `modelfs keygen [--type T] PREFIX`: create PREFIX.key
 * (PKCS#8 PEM, mode 0600) and PREFIX.pub (SPKI PEM), and print the key's
 * OMS hint, the value a bundle signed with it carries.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Prints the summary line: the files written, the type and the hint. */
static int print_summary(const char *prefix, enum mv_key_type type)
{
	struct mv_err err = {0};
	struct mv_key *key = NULL;
	char *pub = NULL, hint[65];
	int ret;

	if (asprintf(&pub, "%s.pub", prefix) < 0) {
		cli_error("keygen: out of memory");
		return EXIT_USAGE_IO;
	}
	ret = mv_key_load_public(pub, &key, &err);
	if (ret) {
		ret = cli_report(&err);
		goto out;
	}
	mv_key_hint(key, hint);
	printf("wrote %s.key and %s (%s, hint %s)\n", prefix, pub, mv_key_type_name(type), hint);
	if (type == MV_KEY_ED25519)
		fprintf(stderr, "warning: ed25519 is a modelfs extension: OMS verifiers such as "
		                "model_signing do not accept it\n");
	ret = EXIT_OK;
out:
	mv_key_free(key);
	free(pub);
	return ret;
}

int cmd_keygen(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"type", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	enum mv_key_type type = MV_KEY_ECDSA_P256;
	struct mv_err err = {0};
	int c;

	while ((c = getopt_long(argc, argv, "ht:", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			if (mv_key_type_parse(optarg, &type)) {
				cli_error("keygen: unknown key type '%s' (ecdsa-p256, ecdsa-p384, "
				          "ecdsa-p521 or ed25519)",
				          optarg);
				return EXIT_USAGE_IO;
			}
			break;
		case 'h': cli_usage("keygen"); return EXIT_OK;
		default: return cli_usage("keygen");
		}
	}
	if (optind + 1 != argc || !argv[optind][0])
		return cli_usage("keygen");
	if (mv_keygen(type, argv[optind], &err))
		return cli_report(&err);
	return print_summary(argv[optind], type);
}
