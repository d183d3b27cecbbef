// SPDX-License-Identifier: Apache-2.0
/*
 * artifact.c - the layout of a pushed model (docs/remote.md): the ModelPack
 * media type of each file (one table), the layer descriptors with their
 * annotations, the ModelPack config, the model manifest and the referrer
 * that carries model.sig and the Merkle trees.
 *
 * Everything written is a function of the signed statement alone (names,
 * digests, sizes, the signing time), so pushing the same signed model twice
 * gives the same manifest digest.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "push_int.h"

/* The one table: shell patterns on the file's base name, first match wins. */
static const struct {
	const char *pattern;
	const char *media_type;
} media_types[] = {
    {"README*", MFR_MT_DOC},
    {"LICEN[CS]E*", MFR_MT_DOC},
    {"NOTICE*", MFR_MT_DOC},
    {"CITATION*", MFR_MT_DOC},
    {"USE_POLICY*", MFR_MT_DOC},
    {"*.md", MFR_MT_DOC},
    {"*.rst", MFR_MT_DOC},
    {"*.pdf", MFR_MT_DOC},
    {"*.py", MFR_MT_CODE},
    {"*.sh", MFR_MT_CODE},
    {"*.ipynb", MFR_MT_CODE},
    {"*.js", MFR_MT_CODE},
    {"*.[ch]", MFR_MT_CODE},
    {"*.cpp", MFR_MT_CODE},
    {"*.cu", MFR_MT_CODE},
    {"*.go", MFR_MT_CODE},
    {"*.rs", MFR_MT_CODE},
    {"*.json", MFR_MT_WEIGHT_CONFIG},
    {"*.yaml", MFR_MT_WEIGHT_CONFIG},
    {"*.yml", MFR_MT_WEIGHT_CONFIG},
    {"*.txt", MFR_MT_WEIGHT_CONFIG},
    {"*.model", MFR_MT_WEIGHT_CONFIG},
    {"*.tiktoken", MFR_MT_WEIGHT_CONFIG},
    {"*.jinja", MFR_MT_WEIGHT_CONFIG},
    {"vocab.*", MFR_MT_WEIGHT_CONFIG},
    {"merges.*", MFR_MT_WEIGHT_CONFIG},
    {"*.safetensors", MFR_MT_WEIGHT},
    {"*.bin", MFR_MT_WEIGHT},
    {"*.pt", MFR_MT_WEIGHT},
    {"*.pth", MFR_MT_WEIGHT},
    {"*.ckpt", MFR_MT_WEIGHT},
    {"*.gguf", MFR_MT_WEIGHT},
    {"*.onnx", MFR_MT_WEIGHT},
    {"*.h5", MFR_MT_WEIGHT},
    {"*.keras", MFR_MT_WEIGHT},
    {"*.msgpack", MFR_MT_WEIGHT},
    {"*.npy", MFR_MT_WEIGHT},
    {"*.npz", MFR_MT_WEIGHT},
    {"*.pb", MFR_MT_WEIGHT},
    {"*.tflite", MFR_MT_WEIGHT},
    {"*.pkl", MFR_MT_WEIGHT},
    {"*.joblib", MFR_MT_WEIGHT},
};

/* The table's answer for @name, or NULL when no pattern matches (untested). */
static const char *table_lookup(const char *name)
{
	const char *base = strrchr(name, '/');

	base = base ? base + 1 : name;
	for (size_t i = 0; i < sizeof(media_types) / sizeof(media_types[0]); i++)
		if (fnmatch(media_types[i].pattern, base, FNM_CASEFOLD) == 0)
			return media_types[i].media_type;
	return NULL;
}

const char *mfr_file_media_type(const char *name)
{
	const char *mt = table_lookup(name);

	return mt ? mt : MFR_MT_WEIGHT;
}

/* {"mediaType","digest","size"} with @digest as "sha256:HEX". */
cJSON *mfr_desc_json(const char *media_type, const char *digest, uint64_t size)
{
	cJSON *d = cJSON_CreateObject();

	if (!d || !cJSON_AddStringToObject(d, "mediaType", media_type) ||
	    !cJSON_AddStringToObject(d, "digest", digest) ||
	    !cJSON_AddNumberToObject(d, "size", (double)size)) {
		cJSON_Delete(d);
		return NULL;
	}
	return d;
}

/* The ModelPack file metadata, normalised: owner 0, mode 0644, signing time. */
static char *file_metadata(const char *name, uint64_t size, const char *mtime)
{
	cJSON *o = cJSON_CreateObject();
	char *s = NULL;

	if (o && cJSON_AddStringToObject(o, "name", name) &&
	    cJSON_AddNumberToObject(o, "mode", 0644) && cJSON_AddNumberToObject(o, "uid", 0) &&
	    cJSON_AddNumberToObject(o, "gid", 0) &&
	    cJSON_AddNumberToObject(o, "size", (double)size) &&
	    cJSON_AddStringToObject(o, "mtime", mtime) &&
	    cJSON_AddNumberToObject(o, "typeflag", '0'))
		s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return s;
}

cJSON *mfr_layer_json(const struct mv_resource *r, const char *media_type, const char *digest,
                      uint64_t size, const char *mtime)
{
	const char *mt = media_type ? media_type : table_lookup(r->name);
	cJSON *d = mfr_desc_json(mt ? mt : MFR_MT_WEIGHT, digest, size);
	cJSON *ann = cJSON_CreateObject();
	char *meta = file_metadata(r->name, size, mtime), *title = NULL;
	bool packed = media_type && !strcmp(media_type, MFR_MT_PACKED);
	bool ok = d && ann && meta && asprintf(&title, "%s%s", r->name, packed ? ".zst" : "") >= 0;

	char zname[MV_ZPACK_NAME_MAX];

	if (packed) /* where `modelfs pack` keeps it: what the lazy mount asks for */
		mv_zpack_file_name(&r->merkle, zname);
	ok = ok && (!packed || cJSON_AddStringToObject(ann, MFR_ANN_PACKED, zname));
	/* A packed layer's title names what it holds: ORAS writes it under that name. */
	ok = ok && cJSON_AddStringToObject(ann, MFR_ANN_TITLE, title) &&
	     cJSON_AddStringToObject(ann, MFR_ANN_FILEPATH, r->name) &&
	     cJSON_AddStringToObject(ann, MFR_ANN_METADATA, meta) &&
	     cJSON_AddStringToObject(ann, "org.cncf.model.file.mediatype.untested",
	                             mt ? "false" : "true");
	if (ok)
		cJSON_AddItemToObject(d, "annotations", ann);
	else
		cJSON_Delete(ann);
	cJSON_free(meta);
	free(title);
	if (!ok) {
		cJSON_Delete(d);
		return NULL;
	}
	return d;
}

/* Adds @key: @val to @o when @val is set; false only when out of memory. */
static bool add_opt(cJSON *o, const char *key, const char *val)
{
	return !val || cJSON_AddStringToObject(o, key, val);
}

/* The "descriptor" member of the ModelPack config, from the signed provenance. */
static cJSON *config_descriptor(const struct mv_manifest *m)
{
	const struct mv_provenance *p = &m->prov;
	cJSON *d = cJSON_CreateObject(), *lic;
	bool ok = d && add_opt(d, "name", p->name ? p->name : m->subject_name) &&
	          add_opt(d, "revision", p->revision) && add_opt(d, "sourceURL", p->source) &&
	          add_opt(d, "createdAt", p->signed_at);

	if (ok && p->license) {
		lic = cJSON_AddArrayToObject(d, "licenses");
		ok = lic && cJSON_AddItemToArray(lic, cJSON_CreateString(p->license));
	}
	if (!ok) {
		cJSON_Delete(d);
		return NULL;
	}
	return d;
}

char *mfr_config_json(const struct mv_manifest *m, const cJSON *layers)
{
	cJSON *root = cJSON_CreateObject(), *fs, *ids, *l;
	char *out = NULL;

	if (!root || !cJSON_AddItemToObject(root, "descriptor", config_descriptor(m)) ||
	    !cJSON_AddObjectToObject(root, "config") ||
	    !(fs = cJSON_AddObjectToObject(root, "modelfs")) ||
	    !cJSON_AddStringToObject(fs, "type", "layers") ||
	    !(ids = cJSON_AddArrayToObject(fs, "diffIds")))
		goto out;
	cJSON_ArrayForEach(l, layers)
	{
		const cJSON *dg = cJSON_GetObjectItemCaseSensitive(l, "digest");

		if (!cJSON_AddItemToArray(ids, cJSON_CreateString(dg->valuestring)))
			goto out;
	}
	out = cJSON_PrintUnformatted(root);
out:
	cJSON_Delete(root);
	return out;
}

char *mfr_manifest_json(const char *artifact_type, cJSON *config, cJSON *layers, cJSON *subject)
{
	cJSON *root = cJSON_CreateObject();
	char *out = NULL;

	if (root && cJSON_AddNumberToObject(root, "schemaVersion", 2) &&
	    cJSON_AddStringToObject(root, "mediaType", MFR_MT_MANIFEST) &&
	    cJSON_AddStringToObject(root, "artifactType", artifact_type)) {
		cJSON_AddItemReferenceToObject(root, "config", config);
		cJSON_AddItemReferenceToObject(root, "layers", layers);
		if (subject)
			cJSON_AddItemReferenceToObject(root, "subject", subject);
		out = cJSON_PrintUnformatted(root);
	}
	cJSON_Delete(root);
	return out;
}

void mfr_digest_of(const void *data, size_t len, char out[MFR_DIGEST_LEN + 1])
{
	uint8_t sum[32];

	mv_sha256(data, len, sum);
	memcpy(out, "sha256:", 7);
	mv_hex_encode(sum, 32, out + 7);
}
