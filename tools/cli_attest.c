// SPDX-License-Identifier: Apache-2.0
/*
 * cli_attest.c - attestations for the subcommands: signing one into
 * MODEL_DIR/.modelfs/attestations (`modelfs attest`, `modelfs scan --attest`)
 * and printing the verified list as text or JSON (`modelfs verify`,
 * `modelfs inspect`).
 *
 * The attestation's subject is the SHA-256 of model.sig's statement: it
 * vouches for exactly that signed content. model.sig is read, not verified:
 * the caller checks it (or tells the user to) before vouching for it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"

/**
 * sig_path_of() - the model.sig an attestation is about
 * @req: in: the request
 *
 * Return: a malloc'd copy of @req->sig_path, else MODEL/model.sig; NULL when
 * out of memory.
 */
static char *sig_path_of(const struct cli_attest_req *req)
{
	char *sig = NULL;

	if (req->sig_path)
		return strdup(req->sig_path);
	if (asprintf(&sig, "%s/%s", req->model, MV_SIG_NAME) < 0)
		return NULL;
	return sig;
}

/**
 * build_and_write() - sign the attestation and store it beside the model
 * @req: in: the request
 * @sig: in: path of the model.sig it is about
 * @key: in: the signer's private key
 * @name: out: the file written below MODEL/.modelfs/attestations
 * @err: out: why, on failure
 *
 * Return: 0, or a negative errno with @err filled in.
 */
static int build_and_write(const struct cli_attest_req *req, const char *sig,
                           const struct mv_key *key, char name[70], struct mv_err *err)
{
	struct mv_manifest *m = NULL;
	char *bundle = NULL;
	size_t len = 0;
	int ret = mv_sig_inspect(sig, NULL, NULL, &m, err);

	if (!ret)
		ret = mv_attest_build(m, req->type, req->predicate, req->pred_len, key, &bundle,
		                      &len, err);
	if (!ret)
		ret = mv_attest_write(req->model, bundle, len, name, err);
	mv_manifest_free(m);
	free(bundle);
	return ret;
}

/**
 * cli_attest_sign() - sign an attestation about a model and store it
 * @req: in: the model, its model.sig, the key, the predicate type and text
 *
 * Prints "attested: FILE (type T, key id K)" on success, one error line
 * ("modelfs: ...") on failure.
 *
 * Return: EXIT_OK, or EXIT_USAGE_IO on any failure.
 */
int cli_attest_sign(const struct cli_attest_req *req)
{
	struct mv_key *key = NULL;
	struct mv_err err = {0};
	char *sig = sig_path_of(req), name[70], id[65];
	int ret = EXIT_OK;

	if (!sig) {
		cli_error("attest: out of memory");
		return EXIT_USAGE_IO;
	}
	if (mv_key_load_private(req->key_path, &key, &err) ||
	    build_and_write(req, sig, key, name, &err)) {
		cli_error("%s", err.msg);
		ret = EXIT_USAGE_IO;
		goto out;
	}
	mv_key_id(key, id);
	printf("attested: %s/%s/%s (type %s, key id %s)\n", req->model, MV_ATTEST_DIR, name,
	       req->type, id);
out:
	mv_key_free(key);
	free(sig);
	return ret;
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
 * attestation_json() - fill one attestation's JSON object
 * @o: out: the object to fill
 * @a: in: the attestation
 */
static void attestation_json(cJSON *o, const struct mv_attestation *a)
{
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

/**
 * cli_attestations_json() - the attestations as a JSON array
 * @l: in: the list
 *
 * Return: a new cJSON array (the caller owns it), or NULL when out of memory.
 */
struct cJSON *cli_attestations_json(const struct mv_attestation_list *l)
{
	cJSON *arr = cJSON_CreateArray();

	for (size_t i = 0; arr && i < l->n; i++) {
		cJSON *o = cJSON_CreateObject();

		if (!o || !cJSON_AddItemToArray(arr, o)) {
			cJSON_Delete(o);
			break;
		}
		attestation_json(o, &l->a[i]);
	}
	return arr;
}
