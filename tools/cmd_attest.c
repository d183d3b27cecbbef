// SPDX-License-Identifier: Apache-2.0
/*
 * cmd_attest.c - `modelfs attest`: sign an in-toto attestation about a
 * model's signature into MODEL_DIR/.modelfs/attestations, and the same for
 * `modelfs scan --attest` (pickle-scan verdicts).
 *
 * The attestation's subject is the SHA-256 of model.sig's statement: it
 * vouches for exactly that signed content. model.sig is read, not verified:
 * check it with `modelfs verify` before vouching for it.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"

#define PREDICATE_MAX (8u << 20)

struct attest_args {
	const char *key, *type, *predicate, *signature, *model;
};

/* Parses argv; 1 for --help, -1 on a usage error. */
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

/*
 * Signs @predicate (JSON text) of @type about the model.sig of @model and
 * stores it; prints the file written. Returns an exit status.
 */
static int attest(const char *model, const char *sig_path, const char *key_path, const char *type,
                  const char *predicate, size_t pred_len)
{
	struct mv_manifest *m = NULL;
	struct mv_key *key = NULL;
	struct mv_err err = {0};
	char *sig = NULL, *bundle = NULL, name[70], id[65];
	size_t len = 0;
	int ret;

	if (sig_path)
		sig = strdup(sig_path);
	else if (asprintf(&sig, "%s/%s", model, MV_SIG_NAME) < 0)
		sig = NULL;
	if (!sig) {
		cli_error("attest: out of memory");
		return EXIT_USAGE_IO;
	}
	ret = mv_key_load_private(key_path, &key, &err);
	if (!ret)
		ret = mv_sig_inspect(sig, NULL, NULL, &m, &err);
	if (!ret)
		ret = mv_attest_build(m, type, predicate, pred_len, key, &bundle, &len, &err);
	if (!ret)
		ret = mv_attest_write(model, bundle, len, name, &err);
	if (ret) {
		cli_error("%s", err.msg);
		ret = EXIT_USAGE_IO;
		goto out;
	}
	mv_key_id(key, id);
	printf("attested: %s/%s/%s (type %s, key id %s)\n", model, MV_ATTEST_DIR, name, type, id);
out:
	mv_manifest_free(m);
	mv_key_free(key);
	free(bundle);
	free(sig);
	return ret;
}

int cmd_attest(int argc, char **argv)
{
	struct attest_args a = {0};
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
	ret = attest(a.model, a.signature, a.key, a.type, pred, len);
	free(pred);
	return ret;
}

/**
 * cli_attest_scan() - record scan verdicts as an attestation (scan --attest)
 * @model_dir: in: the scanned model folder (holds model.sig)
 * @key_path: in: private key of the scanner
 * @predicate_json: in: {"scanner": ..., "files": [{name, verdict}, ...]}
 *
 * Return: an exit status.
 */
int cli_attest_scan(const char *model_dir, const char *key_path, const char *predicate_json)
{
	return attest(model_dir, NULL, key_path, "https://modelfs.dev/scan/v1", predicate_json,
	              strlen(predicate_json));
}

/**
 * cli_print_attestations() - one line per attestation
 * @f: in: stream
 * @l: in: the list (from mv_attestations_load)
 */
void cli_print_attestations(FILE *f, const struct mv_attestation_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct mv_attestation *a = &l->a[i];

		fprintf(f, "attestation %s: type %s, %s %s: %s%s\n", a->file,
		        a->predicate_type ? a->predicate_type : "(unknown)",
		        a->key_id[0] ? "key id" : "key hint", a->key_id[0] ? a->key_id : a->hint,
		        a->verified ? "verified" : "NOT verified: ",
		        a->verified ? "" : (a->reason ? a->reason : "(no reason)"));
	}
}

/**
 * cli_attestations_json() - the attestations as a JSON array
 * @l: in: the list
 *
 * Return: a new cJSON array, or NULL when out of memory.
 */
struct cJSON *cli_attestations_json(const struct mv_attestation_list *l)
{
	cJSON *arr = cJSON_CreateArray();

	for (size_t i = 0; arr && i < l->n; i++) {
		const struct mv_attestation *a = &l->a[i];
		cJSON *o = cJSON_CreateObject();

		if (!o || !cJSON_AddItemToArray(arr, o)) {
			cJSON_Delete(o);
			break;
		}
		cJSON_AddStringToObject(o, "file", a->file);
		if (a->predicate_type)
			cJSON_AddStringToObject(o, "predicate_type", a->predicate_type);
		if (a->subject_name)
			cJSON_AddStringToObject(o, "subject_name", a->subject_name);
		if (a->subject_sha256[0])
			cJSON_AddStringToObject(o, "subject_sha256", a->subject_sha256);
		if (a->key_id[0])
			cJSON_AddStringToObject(o, "key_id", a->key_id);
		if (a->hint[0])
			cJSON_AddStringToObject(o, "hint", a->hint);
		cJSON_AddBoolToObject(o, "verified", a->verified);
		if (a->reason)
			cJSON_AddStringToObject(o, "reason", a->reason);
		if (a->predicate)
			cJSON_AddRawToObject(o, "predicate", a->predicate);
	}
	return arr;
}
