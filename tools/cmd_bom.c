// SPDX-License-Identifier: Apache-2.0
/*
 * cmd_bom.c - `modelfs bom MODEL_DIR`: print the CycloneDX ML-BOM of a
 * signed model on stdout.
 *
 * Without --trust the signature is read but not checked (like inspect): the
 * BOM then says what the signature claims. With --trust KEY.pub /
 * --trust-ca CA.pem the signature is verified first (not the files: that is
 * `modelfs verify`'s job), and an untrusted one gives no BOM.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

struct bom_args {
	struct mv_bom_opts o;
	const char **keys, **cas;
	size_t n_keys, n_cas;
	const char *signature;
	const char *model;
};

/* Parses argv; 1 for --help, -1 on a usage error. */
static int parse_args(int argc, char **argv, struct bom_args *a)
{
	static const struct option opts[] = {
	    {"spec", required_argument, NULL, 'S'},
	    {"serial-number", required_argument, NULL, 'n'},
	    {"timestamp", required_argument, NULL, 'T'},
	    {"trust", required_argument, NULL, 't'},
	    {"trust-ca", required_argument, NULL, 'c'},
	    {"signature", required_argument, NULL, 's'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'S': a->o.spec = optarg; break;
		case 'n': a->o.serial_number = optarg; break;
		case 'T': a->o.timestamp = optarg; break;
		case 't': a->keys[a->n_keys++] = optarg; break;
		case 'c': a->cas[a->n_cas++] = optarg; break;
		case 's': a->signature = optarg; break;
		case 'h': return 1;
		default: return -1;
		}
	}
	if (optind + 1 != argc)
		return -1;
	a->model = argv[optind];
	a->o.model_dir = a->model;
	return 0;
}

/* Reads model.sig: verified against the trust inputs if any were given. */
static int open_sig(const struct bom_args *a, const char *sig, struct mv_manifest **m,
                    struct mv_err *err)
{
	const struct mv_trust_inputs in = {.key_files = a->keys,
	                                   .n_key_files = a->n_keys,
	                                   .ca_files = a->cas,
	                                   .n_ca_files = a->n_cas,
	                                   .who = "bom"};
	struct mv_trust *t;
	int ret;

	if (!a->n_keys && !a->n_cas)
		return mv_sig_inspect(sig, NULL, NULL, m, err);
	ret = mv_trust_load(&in, &t, err);
	if (!ret)
		ret = mv_sig_open(sig, t, NULL, NULL, m, err);
	mv_trust_free(t);
	return ret;
}

int cmd_bom(int argc, char **argv)
{
	struct bom_args a = {0};
	struct mv_manifest *m = NULL;
	struct mv_err err = {0};
	char *sig = NULL, *json = NULL;
	size_t len = 0;
	int ret;

	a.keys = calloc((size_t)argc + 1, sizeof(char *));
	a.cas = calloc((size_t)argc + 1, sizeof(char *));
	if (!a.keys || !a.cas) {
		cli_error("bom: out of memory");
		ret = EXIT_USAGE_IO;
		goto out;
	}
	ret = parse_args(argc, argv, &a);
	if (ret) {
		cli_usage("bom");
		ret = ret > 0 ? EXIT_OK : EXIT_USAGE_IO;
		goto out;
	}
	if (a.signature)
		sig = strdup(a.signature);
	else if (asprintf(&sig, "%s/%s", a.model, MV_SIG_NAME) < 0)
		sig = NULL;
	if (!sig) {
		cli_error("bom: out of memory");
		ret = EXIT_USAGE_IO;
		goto out;
	}
	ret = open_sig(&a, sig, &m, &err);
	if (ret) {
		/* A malformed signature fails like a bad one (as in verify). */
		cli_report(&err);
		ret = ret == -EINVAL || ret == -EBADMSG || ret == -EKEYREJECTED ? EXIT_VERIFY
		                                                                : EXIT_USAGE_IO;
		goto out;
	}
	ret = mv_bom_build(m, &a.o, &json, &len, &err);
	if (ret) {
		ret = cli_report(&err);
		goto out;
	}
	ret = fwrite(json, 1, len, stdout) == len && fflush(stdout) == 0 ? EXIT_OK : EXIT_USAGE_IO;
out:
	mv_manifest_free(m);
	free(json);
	free(sig);
	free(a.keys);
	free(a.cas);
	return ret;
}
