// SPDX-License-Identifier: Apache-2.0
/*
 * storefile.c - store files: the models of a lazy mount of many (docs/
 * remote.md, "Store files"), JSON mapping mount paths to references,
 *
 *     {"models": {"org/demo": "oci://registry.example/org/demo:v1", ...}}
 *
 * Parsed here, on libfsremote alone, so that tests/fuzz/fuzz_storefile.c
 * reaches every check without FUSE; the mount (fs/mount/bstore_oci_setup.c)
 * reads the file and sets each model up.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fsremote.h"

#define OCI_PREFIX "oci://"

/* Is one of mount paths @a, @b equal to the other, or a folder above it? */
static bool path_nested(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), l = la < lb ? la : lb;

	return !strncmp(a, b, l) && (la == lb || (la < lb ? b[l] : a[l]) == '/');
}

void mfr_store_entries_free(struct mfr_store_entry *e, size_t n)
{
	for (size_t i = 0; e && i < n; i++) {
		free(e[i].path);
		free(e[i].ref);
	}
	free(e);
}

/**
 * entry_check() - is model @it (PATH: REF) of a store file acceptable?
 * @name: in: the file, for messages
 * @it: in: the JSON member
 * @prev, @n_prev: in: the models before it
 * @err: out: the reason
 * Return: 0 or -EINVAL.
 */
static int entry_check(const char *name, const cJSON *it, const struct mfr_store_entry *prev,
                       size_t n_prev, struct mv_err *err)
{
	struct mfr_ref ref = {0};
	struct mv_err e2 = {0};
	char shown[256];
	int ret;

	mv_name_printable(it->string, shown, sizeof(shown));
	if (!mfr_path_ok(it->string))
		return mv_err_set(err, -EINVAL,
		                  "%s: store file: model \"%s\": refused path (absolute, \"..\", "
		                  "empty, or reserved)",
		                  name, shown);
	if (!cJSON_IsString(it) || !it->valuestring)
		return mv_err_set(err, -EINVAL,
		                  "%s: store file: model \"%s\": its reference is not a string",
		                  name, shown);
	for (size_t i = 0; i < n_prev; i++)
		if (path_nested(prev[i].path, it->string))
			return mv_err_set(
			    err, -EINVAL,
			    "%s: store file: model \"%s\" is at or inside model \"%s\"", name,
			    shown, prev[i].path);
	if (strncmp(it->valuestring, OCI_PREFIX, strlen(OCI_PREFIX)) != 0)
		return mv_err_set(err, -EINVAL,
		                  "%s: store file: model \"%s\": not an oci:// reference", name,
		                  shown);
	ret = mfr_ref_parse(it->valuestring + strlen(OCI_PREFIX), &ref, &e2);
	if (!ret && !ref.tag && !ref.digest[0])
		ret = mv_err_set(&e2, -EINVAL, "give a :TAG or an @sha256:DIGEST");
	mfr_ref_free(&ref);
	if (ret)
		return mv_err_set(err, -EINVAL, "%s: store file: model \"%s\": %s", name, shown,
		                  e2.msg);
	return 0;
}

int mfr_store_file_parse(const char *text, size_t len, const char *name,
                         struct mfr_store_entry **out, size_t *n_out, struct mv_err *err)
{
	struct mfr_store_entry *e = NULL;
	cJSON *root = cJSON_ParseWithLength(text, len), *models, *it;
	size_t n = 0, got = 0;
	char shown[256];
	int ret = -EINVAL;

	*out = NULL;
	*n_out = 0;
	models = cJSON_GetObjectItemCaseSensitive(root, "models");
	if (!cJSON_IsObject(root) || !cJSON_IsObject(models)) {
		mv_err_set(
		    err, ret,
		    "%s: store file: not JSON of the form {\"models\": {PATH: REF}} (a STORE "
		    "that is not a folder must be a store file)",
		    name);
		goto out;
	}
	cJSON_ArrayForEach(it, root)
	{
		if (strcmp(it->string, "models") == 0)
			continue;
		mv_name_printable(it->string, shown, sizeof(shown));
		mv_err_set(err, ret, "%s: store file: unknown key \"%s\"", name, shown);
		goto out;
	}
	n = (size_t)cJSON_GetArraySize(models);
	if (!n || n > MFR_STORE_MAX_MODELS) {
		mv_err_set(err, ret, "%s: store file: %zu models (1 to %u)", name, n,
		           MFR_STORE_MAX_MODELS);
		goto out;
	}
	e = calloc(n, sizeof(*e));
	if (!e) {
		ret = mv_err_set(err, -ENOMEM, "%s: out of memory", name);
		goto out;
	}
	cJSON_ArrayForEach(it, models)
	{
		ret = entry_check(name, it, e, got, err);
		if (ret)
			goto out;
		e[got].path = strdup(it->string);
		e[got].ref = strdup(it->valuestring);
		got++;
		if (!e[got - 1].path || !e[got - 1].ref) {
			ret = mv_err_set(err, -ENOMEM, "%s: out of memory", name);
			goto out;
		}
	}
	*out = e;
	*n_out = got;
	e = NULL;
	ret = 0;
out:
	mfr_store_entries_free(e, got);
	cJSON_Delete(root);
	return ret;
}
