// SPDX-License-Identifier: Apache-2.0
/*
 * tx_names.c - the names of transcoded files: pytorch_model*.bin becomes
 * model*.safetensors (mfs_tx_rename), and a sharded checkpoint's
 * pytorch_model.bin.index.json is rewritten to name the new shards
 * (mfs_tx_index_rewrite).
 *
 * Separate from the transcoder proper: it never reads a checkpoint, only
 * names and the JSON index that lists them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fmt_internal.h"
#include "tx_internal.h"

/* ------------------------------------------------------------------- names */

/* Appends @s (@n bytes) to the malloc'd *@out of length *@len, replacing
 * every "pytorch_model" with "model". */
static int append_renamed(char **out, size_t *len, const char *s, size_t n)
{
	static const char from[] = "pytorch_model";
	const size_t fl = sizeof(from) - 1;

	for (size_t i = 0; i < n;) {
		bool hit = n - i >= fl && memcmp(s + i, from, fl) == 0;
		const char *piece = hit ? "model" : s + i;
		size_t pl = hit ? 5 : 1;
		char *np = realloc(*out, *len + pl + 1);

		if (!np)
			return -ENOMEM;
		*out = np;
		memcpy(*out + *len, piece, pl);
		*len += pl;
		(*out)[*len] = 0;
		i += hit ? fl : 1;
	}
	return 0;
}

char *mfs_tx_rename(const char *name)
{
	static const char idx[] = ".index.json";
	size_t n = strlen(name), il = sizeof(idx) - 1, stem, len = 0;
	const char *base, *dot;
	bool index = n > il && strcmp(name + n - il, idx) == 0;
	char *out = NULL;

	stem = index ? n - il : n;
	/* os.path.splitext: the last dot of the last component, unless all its dots lead */
	base = memrchr(name, '/', stem);
	base = base ? base + 1 : name;
	dot = memrchr(base, '.', stem - (size_t)(base - name));
	if (dot) {
		const char *q = base;

		while (q < dot && *q == '.')
			q++;
		if (q == dot)
			dot = NULL;
	}
	if (append_renamed(&out, &len, name, dot ? (size_t)(dot - name) : stem) ||
	    append_renamed(&out, &len, ".safetensors", 12) ||
	    (index && append_renamed(&out, &len, idx, il))) {
		free(out);
		return NULL;
	}
	return out;
}

/* A shard name from an index: one plain file name, no folders. */
static bool shard_name_ok(const char *s)
{
	return *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

int mfs_tx_index_rewrite(const char *json, size_t len, uint64_t total_size, char **out,
                         struct mv_err *err)
{
	cJSON *root = cJSON_ParseWithLength(json, len), *wm, *nwm = NULL, *it, *meta;
	int rc = 0;

	*out = NULL;
	wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
	if (!cJSON_IsObject(root) || !cJSON_IsObject(wm)) {
		rc = mv_err_set(err, -EBADMSG, "index is not a JSON object with a weight_map");
		goto out;
	}
	if (!(nwm = cJSON_CreateObject())) {
		rc = -ENOMEM;
		goto out;
	}
	cJSON_ArrayForEach(it, wm)
	{
		char *nn;
		cJSON *s;

		if (!cJSON_IsString(it) || !shard_name_ok(it->valuestring)) {
			rc = mv_err_set(err, -EBADMSG,
			                "index: weight_map entry '%s' is not a file name",
			                it->string);
			goto out;
		}
		nn = mfs_tx_rename(it->valuestring);
		s = nn ? cJSON_CreateString(nn) : NULL;
		free(nn);
		if (!s) {
			rc = -ENOMEM;
			goto out;
		}
		cJSON_AddItemToObject(nwm, it->string, s);
	}
	cJSON_ReplaceItemInObjectCaseSensitive(root, "weight_map", nwm);
	nwm = NULL;
	meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
	if (total_size != UINT64_MAX && cJSON_IsObject(meta)) {
		cJSON *ts = cJSON_CreateNumber((double)total_size);

		if (!ts) {
			rc = -ENOMEM;
			goto out;
		}
		if (cJSON_GetObjectItemCaseSensitive(meta, "total_size"))
			cJSON_ReplaceItemInObjectCaseSensitive(meta, "total_size", ts);
		else
			cJSON_AddItemToObject(meta, "total_size", ts);
	}
	if (!(*out = cJSON_Print(root)))
		rc = -ENOMEM;
out:
	if (rc == -ENOMEM)
		mv_err_set(err, rc, "index: out of memory");
	cJSON_Delete(nwm);
	cJSON_Delete(root);
	return rc;
}
