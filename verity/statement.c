// SPDX-License-Identifier: Apache-2.0
/*
 * statement.c - the in-toto Statement v1 of an OMS signature: parsing of
 * untrusted statements into manifests, and deterministic serialization.
 * See docs/formats.md.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sig_internal.h"

#define MV_MAX_NAME_LEN        4095               /* PATH_MAX - 1 */
#define MV_MAX_COMPONENT       255                /* NAME_MAX */
#define MV_MAX_JSON_INT        9007199254740992.0 /* 2^53: doubles are exact below */
#define MV_MODELFS_EXT_VERSION 1

/**
 * mv_resource_name_valid() - check an untrusted resource name
 * @name: in: the name
 * @allow_dot: in: accept "." (a single-file signature)
 *
 * Return: true if @name is a relative POSIX path with no empty, "." or ".."
 * component, no control character, at most PATH_MAX - 1 bytes and NAME_MAX
 * bytes per component.
 */
bool mv_resource_name_valid(const char *name, bool allow_dot)
{
	const char *p = name, *slash;
	size_t len;

	if (!name || !*name)
		return false;
	len = strlen(name);
	if (len > MV_MAX_NAME_LEN)
		return false;
	if (strcmp(name, ".") == 0)
		return allow_dot;
	for (;;) {
		size_t clen;

		slash = strchr(p, '/');
		clen = slash ? (size_t)(slash - p) : strlen(p);
		if (clen == 0 || clen > MV_MAX_COMPONENT)
			return false; /* leading "/", "//" or trailing "/" */
		for (size_t i = 0; i < clen; i++) {
			/* Control characters would forge lines in logs and listings. */
			if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
				return false;
		}
		if ((clen == 1 && p[0] == '.') || (clen == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		if (!slash)
			return true;
		p = slash + 1;
	}
}

/* Frees the members of a provenance record. */
static void prov_clear(struct mv_provenance *p)
{
	free(p->name);
	free(p->revision);
	free(p->source);
	free(p->base_model);
	free(p->license);
	for (size_t i = 0; i < p->n_datasets; i++)
		free(p->datasets[i]);
	free(p->datasets);
	free(p->signed_at);
	free(p->tool_version);
	for (size_t i = 0; i < p->n_props; i++) {
		free(p->props[i].key);
		free(p->props[i].value);
	}
	free(p->props);
	memset(p, 0, sizeof(*p));
}

/* Is @name inside the manifest's block of names (not malloc'd on its own)? */
static bool in_names(const struct mv_manifest *m, const char *name)
{
	uintptr_t p = (uintptr_t)name, base = (uintptr_t)m->names;

	return m->names && p >= base && p - base < m->names_len;
}

/**
 * mv_manifest_free() - release a manifest and everything it points to
 * @m: in: manifest or NULL; all strings and arrays must be malloc'd, except
 *     resource names inside m->names
 */
void mv_manifest_free(struct mv_manifest *m)
{
	if (!m)
		return;
	free(m->subject_name);
	for (size_t i = 0; i < m->n_res; i++)
		if (!in_names(m, m->res[i].name))
			free(m->res[i].name);
	free(m->res);
	free(m->names);
	for (size_t i = 0; i < m->n_ignore; i++)
		free(m->ignore_paths[i]);
	free(m->ignore_paths);
	prov_clear(&m->prov);
	free(m->statement);
	free(m->signer.subject);
	free(m->signer.identity);
	free(m->signer.issuer);
	free(m);
}

static int cmp_res(const void *a, const void *b)
{
	return strcmp(((const struct mv_resource *)a)->name, ((const struct mv_resource *)b)->name);
}

/**
 * mv_manifest_find() - find a resource by name
 * @m: in: manifest with res[] sorted by name
 * @name: in: resource name
 *
 * Return: the resource, or NULL.
 */
const struct mv_resource *mv_manifest_find(const struct mv_manifest *m, const char *name)
{
	struct mv_resource key = {.name = (char *)name};

	if (!m || !m->n_res || !name)
		return NULL;
	return bsearch(&key, m->res, m->n_res, sizeof(*m->res), cmp_res);
}

/* ------------------------------------------------------------------------
 * Parsing
 * ------------------------------------------------------------------------ */

/* Decodes hex of exactly @size bytes; message names @path. */
static int parse_hex_exact(const char *label, const char *path, const char *hex, uint8_t *out,
                           size_t size, struct mv_err *err)
{
	if (strlen(hex) != 2 * size || mv_hex_decode(hex, out, size) != (int)size)
		return mv_err_set(err, -EINVAL, "%s: %s: expected %zu hex digits", label, path,
		                  2 * size);
	return 0;
}

/* Copies a string member, or leaves *out NULL if absent. */
static int dup_string(const char *label, const cJSON *obj, const char *path, const char *key,
                      bool required, char **out, struct mv_err *err)
{
	const cJSON *m;
	int ret = mv_json_member(label, obj, path, key, cJSON_String, required, &m, err);

	*out = NULL;
	if (ret || !m)
		return ret;
	*out = strdup(m->valuestring);
	if (!*out)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", label);
	return 0;
}

/*
 * Reads a non-negative integer. JSON numbers are doubles in cJSON: refuse
 * anything non-integral or at or above 2^53, where distinct integers would
 * collapse to one value.
 */
static int parse_uint(const char *label, const cJSON *obj, const char *path, const char *key,
                      uint64_t *out, struct mv_err *err)
{
	const cJSON *m;
	int ret = mv_json_member(label, obj, path, key, cJSON_Number, true, &m, err);
	double d;

	if (ret)
		return ret;
	d = m->valuedouble;
	if (!(d >= 0) || d >= MV_MAX_JSON_INT || d != floor(d))
		return mv_err_set(err, -EINVAL,
		                  "%s: %s.%s: not an integer in 0..2^53-1 (JSON numbers are "
		                  "doubles)",
		                  label, path, key);
	*out = (uint64_t)d;
	return 0;
}

/* Reads an array of strings into a malloc'd vector. */
static int parse_string_array(const char *label, const cJSON *arr, const char *path, char ***out,
                              size_t *n_out, struct mv_err *err)
{
	size_t n = (size_t)cJSON_GetArraySize(arr), i = 0;
	const cJSON *it;
	char **v;
	int ret;

	*out = NULL;
	*n_out = 0;
	if (n == 0)
		return 0;
	if (n > MV_MAX_RESOURCES)
		return mv_err_set(err, -EINVAL, "%s: %s: too many entries", label, path);
	v = calloc(n, sizeof(*v));
	if (!v)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", label);
	cJSON_ArrayForEach(it, arr)
	{
		if (!cJSON_IsString(it)) {
			ret = mv_err_set(err, -EINVAL, "%s: %s[%zu]: expected a string", label,
			                 path, i);
			goto fail;
		}
		v[i] = strdup(it->valuestring);
		if (!v[i++]) {
			ret = mv_err_set(err, -ENOMEM, "%s: out of memory", label);
			goto fail;
		}
	}
	*out = v;
	*n_out = n;
	return 0;
fail:
	for (size_t j = 0; j < n; j++)
		free(v[j]);
	free(v);
	return ret;
}

/* Checks an equality-constrained string member ("method": "files", ...). */
static int expect_string(const char *label, const cJSON *obj, const char *path, const char *key,
                         const char *want, bool required, struct mv_err *err)
{
	const cJSON *m;
	int ret = mv_json_member(label, obj, path, key, cJSON_String, required, &m, err);

	if (ret || !m)
		return ret;
	if (strcmp(m->valuestring, want) != 0)
		return mv_err_set(err, -EINVAL,
		                  "%s: %s%s%s: unsupported value \"%.100s\" (need %s)", label, path,
		                  *path ? "." : "", key, MV_P(m->valuestring), want);
	return 0;
}

/* predicate.serialization: only the "files" method with SHA-256 is supported. */
static int parse_serialization(const char *label, const cJSON *pred, struct mv_manifest *m,
                               struct mv_err *err)
{
	static const char path[] = "predicate.serialization";
	const cJSON *ser, *sym, *ign;
	int ret;

	ret = mv_json_member(label, pred, "predicate", "serialization", cJSON_Object, true, &ser,
	                     err);
	if (!ret)
		ret = expect_string(label, ser, path, "method", "files", true, err);
	if (!ret)
		ret = expect_string(label, ser, path, "hash_type", "sha256", true, err);
	if (!ret)
		ret = mv_json_member(label, ser, path, "allow_symlinks", cJSON_True | cJSON_False,
		                     false, &sym, err);
	if (!ret)
		ret =
		    mv_json_member(label, ser, path, "ignore_paths", cJSON_Array, false, &ign, err);
	if (!ret && ign)
		ret = parse_string_array(label, ign, "predicate.serialization.ignore_paths",
		                         &m->ignore_paths, &m->n_ignore, err);
	return ret;
}

/*
 * Where resource names are copied: one block for all of them, filled in
 * order. A name that does not fit (the block was sized by names_size() from
 * the same tree, so it always fits) is refused rather than overflowing.
 */
struct names_arena {
	char *buf;
	size_t len, used;
};

/* Bytes of every string "name" member of @arr's objects, NULs included. */
static size_t names_size(const cJSON *arr)
{
	const cJSON *it, *name;
	size_t total = 0;

	cJSON_ArrayForEach(it, arr)
	{
		name = cJSON_GetObjectItemCaseSensitive(it, "name");
		if (cJSON_IsString(name))
			total += strlen(name->valuestring) + 1;
	}
	return total;
}

/* One entry of predicate.resources; feeds its raw digest to @subject. */
static int parse_resource(const char *label, const cJSON *it, size_t i, struct mv_resource *r,
                          struct names_arena *names, EVP_MD_CTX *subject, struct mv_err *err)
{
	const cJSON *name, *dig;
	char path[64];
	size_t nlen;
	int ret;

	snprintf(path, sizeof(path), "predicate.resources[%zu]", i);
	if (!cJSON_IsObject(it))
		return mv_err_set(err, -EINVAL, "%s: %s: expected an object", label, path);
	ret = mv_json_member(label, it, path, "name", cJSON_String, true, &name, err);
	if (!ret)
		ret = expect_string(label, it, path, "algorithm", "sha256", true, err);
	if (!ret)
		ret = mv_json_member(label, it, path, "digest", cJSON_String, true, &dig, err);
	if (ret)
		return ret;
	if (!mv_resource_name_valid(name->valuestring, true))
		return mv_err_set(err, -EINVAL, "%s: %s.name: invalid resource name \"%s\"", label,
		                  path, MV_P(name->valuestring));
	nlen = strlen(name->valuestring) + 1;
	if (nlen > names->len - names->used)
		return mv_err_set(err, -EINVAL, "%s: %s.name: inconsistent names", label, path);
	strncat(path, ".digest", sizeof(path) - strlen(path) - 1);
	ret = parse_hex_exact(label, path, dig->valuestring, r->sha256, 32, err);
	if (ret)
		return ret;
	r->name = memcpy(names->buf + names->used, name->valuestring, nlen);
	names->used += nlen;
	if (EVP_DigestUpdate(subject, r->sha256, 32) != 1)
		return mv_err_set(err, -ENOMEM, "%s: hashing failed", label);
	return 0;
}

/*
 * predicate.resources: names checked, subject digest computed in listed
 * order into @digest, then sorted for lookup. Duplicates are refused.
 */
static int parse_resources(const char *label, const cJSON *pred, struct mv_manifest *m,
                           uint8_t digest[32], struct mv_err *err)
{
	struct names_arena names = {0};
	const cJSON *arr, *it;
	EVP_MD_CTX *ctx = NULL;
	size_t n, i = 0;
	int ret;

	ret = mv_json_member(label, pred, "predicate", "resources", cJSON_Array, true, &arr, err);
	if (ret)
		return ret;
	n = (size_t)cJSON_GetArraySize(arr);
	if (n > MV_MAX_RESOURCES)
		return mv_err_set(err, -EINVAL, "%s: predicate.resources: %zu entries (limit %u)",
		                  label, n, MV_MAX_RESOURCES);
	ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		ret = mv_err_set(err, -ENOMEM, "%s: out of memory", label);
		goto out;
	}
	m->res = calloc(n ? n : 1, sizeof(*m->res));
	/* Names in one block: no allocation (and its malloc overhead) per file. */
	names.len = names_size(arr);
	m->names = names.buf = malloc(names.len ? names.len : 1);
	m->names_len = names.len;
	if (!m->res || !m->names) {
		ret = mv_err_set(err, -ENOMEM, "%s: out of memory", label);
		goto out;
	}
	cJSON_ArrayForEach(it, arr)
	{
		m->n_res = i + 1; /* so that mv_manifest_free sees every name */
		ret = parse_resource(label, it, i, &m->res[i], &names, ctx, err);
		if (ret)
			goto out;
		i++;
	}
	m->n_res = n;
	if (EVP_DigestFinal_ex(ctx, digest, NULL) != 1) {
		ret = mv_err_set(err, -ENOMEM, "%s: hashing failed", label);
		goto out;
	}
	qsort(m->res, n, sizeof(*m->res), cmp_res);
	for (i = 0; i < n; i++) {
		if (i && strcmp(m->res[i - 1].name, m->res[i].name) == 0) {
			ret = mv_err_set(err, -EINVAL,
			                 "%s: predicate.resources: \"%.300s\" listed twice", label,
			                 m->res[i].name);
			goto out;
		}
		if (n > 1 && strcmp(m->res[i].name, ".") == 0) {
			ret = mv_err_set(err, -EINVAL,
			                 "%s: predicate.resources: \".\" (single file) must be the "
			                 "only resource",
			                 label);
			goto out;
		}
	}
	ret = 0;
out:
	EVP_MD_CTX_free(ctx);
	return ret;
}

/* Tree parameters, root and fs-verity digest of one modelfs.files entry. */
static int parse_file_merkle(const char *label, const cJSON *it, const char *path,
                             struct mv_measurement *ms, struct mv_err *err)
{
	struct mv_tree_params *p = &ms->params;
	const cJSON *alg, *salt, *root, *dig;
	struct mv_tree_geometry geo;
	uint8_t want[MV_MAX_DIGEST_SIZE];
	uint64_t bs = 0;
	char sub[96];
	size_t ds;
	int ret;

	ret = parse_uint(label, it, path, "size", &p->data_size, err);
	if (!ret)
		ret = mv_json_member(label, it, path, "hash_algorithm", cJSON_String, true, &alg,
		                     err);
	if (!ret)
		ret = parse_uint(label, it, path, "block_size", &bs, err);
	if (!ret)
		ret = mv_json_member(label, it, path, "salt", cJSON_String, true, &salt, err);
	if (!ret)
		ret =
		    mv_json_member(label, it, path, "merkle_root", cJSON_String, true, &root, err);
	if (!ret)
		ret = mv_json_member(label, it, path, "fsverity_digest", cJSON_String, true, &dig,
		                     err);
	if (ret)
		return ret;
	if (mv_hash_parse(alg->valuestring, &p->alg))
		return mv_err_set(err, -EINVAL, "%s: %s.hash_algorithm: unsupported \"%.50s\"",
		                  label, path, MV_P(alg->valuestring));
	if (bs < (1u << MV_MIN_LOG_BLOCK) || bs > (1u << MV_MAX_LOG_BLOCK) || (bs & (bs - 1)))
		return mv_err_set(err, -EINVAL,
		                  "%s: %s.block_size: %" PRIu64 " is not a power of two in 1K..64K",
		                  label, path, bs);
	p->block_size = (uint32_t)bs;
	if (strlen(salt->valuestring) > 2 * MV_MAX_SALT_SIZE ||
	    mv_hex_decode(salt->valuestring, p->salt, MV_MAX_SALT_SIZE) < 0)
		return mv_err_set(err, -EINVAL, "%s: %s.salt: expected hex of at most %d bytes",
		                  label, path, MV_MAX_SALT_SIZE);
	p->salt_size = (uint8_t)(strlen(salt->valuestring) / 2);
	ds = mv_hash_digest_size(p->alg);
	snprintf(sub, sizeof(sub), "%s.merkle_root", path);
	ret = parse_hex_exact(label, sub, root->valuestring, ms->root, ds, err);
	if (ret)
		return ret;
	snprintf(sub, sizeof(sub), "%s.fsverity_digest", path);
	ret = parse_hex_exact(label, sub, dig->valuestring, ms->digest, ds, err);
	if (ret)
		return ret;
	if (mv_tree_geometry(p, &geo))
		return mv_err_set(err, -EINVAL, "%s: %s: tree parameters out of range", label,
		                  path);
	/* The digest is redundant; a mismatch means a broken or forged signer. */
	mv_descriptor_digest(p, ms->root, want);
	if (memcmp(want, ms->digest, ds) != 0)
		return mv_err_set(err, -EBADMSG,
		                  "%s: %s: fsverity_digest does not match the tree parameters and "
		                  "merkle_root",
		                  label, path);
	return 0;
}

/* predicate.modelfs.files: Merkle data per listed resource, each at most once. */
static int parse_ext_files(const char *label, const cJSON *ext, struct mv_manifest *m,
                           struct mv_err *err)
{
	const cJSON *arr, *it, *name;
	struct mv_resource *r;
	char path[64];
	size_t i = 0;
	int ret;

	ret =
	    mv_json_member(label, ext, "predicate.modelfs", "files", cJSON_Array, true, &arr, err);
	if (ret)
		return ret;
	if ((size_t)cJSON_GetArraySize(arr) > m->n_res)
		return mv_err_set(err, -EINVAL,
		                  "%s: predicate.modelfs.files: more entries than resources",
		                  label);
	cJSON_ArrayForEach(it, arr)
	{
		snprintf(path, sizeof(path), "predicate.modelfs.files[%zu]", i++);
		if (!cJSON_IsObject(it))
			return mv_err_set(err, -EINVAL, "%s: %s: expected an object", label, path);
		ret = mv_json_member(label, it, path, "name", cJSON_String, true, &name, err);
		if (ret)
			return ret;
		r = (struct mv_resource *)mv_manifest_find(m, name->valuestring);
		if (!r)
			return mv_err_set(err, -EINVAL, "%s: %s.name: \"%.300s\" is not a resource",
			                  label, path, MV_P(name->valuestring));
		if (r->has_merkle)
			return mv_err_set(err, -EINVAL, "%s: %s.name: \"%.300s\" listed twice",
			                  label, path, name->valuestring);
		ret = parse_file_merkle(label, it, path, &r->merkle, err);
		if (ret)
			return ret;
		r->has_merkle = true;
	}
	return 0;
}

/* predicate.modelfs.provenance.properties: an object of strings, in order. */
static int parse_props(const char *label, const cJSON *obj, struct mv_provenance *p,
                       struct mv_err *err)
{
	size_t n = (size_t)cJSON_GetArraySize(obj), i = 0;
	const cJSON *it;

	if (!n)
		return 0;
	if (n > MV_MAX_RESOURCES)
		return mv_err_set(err, -EINVAL, "%s: provenance.properties: too many entries",
		                  label);
	p->props = calloc(n, sizeof(*p->props));
	if (!p->props)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", label);
	cJSON_ArrayForEach(it, obj)
	{
		if (!cJSON_IsString(it))
			return mv_err_set(err, -EINVAL,
			                  "%s: predicate.modelfs.provenance.properties.%.100s: "
			                  "expected a string",
			                  label, MV_P(it->string));
		p->n_props = i + 1;
		p->props[i].key = strdup(it->string);
		p->props[i].value = strdup(it->valuestring);
		if (!p->props[i].key || !p->props[i].value)
			return mv_err_set(err, -ENOMEM, "%s: out of memory", label);
		i++;
	}
	return 0;
}

/* predicate.modelfs.provenance: every member optional. */
static int parse_provenance(const char *label, const cJSON *ext, struct mv_provenance *p,
                            struct mv_err *err)
{
	static const char path[] = "predicate.modelfs.provenance";
	const cJSON *prov, *ds, *props;
	int ret;

	ret = mv_json_member(label, ext, "predicate.modelfs", "provenance", cJSON_Object, false,
	                     &prov, err);
	if (ret || !prov)
		return ret;
	ret = dup_string(label, prov, path, "name", false, &p->name, err);
	if (!ret)
		ret = dup_string(label, prov, path, "revision", false, &p->revision, err);
	if (!ret)
		ret = dup_string(label, prov, path, "source", false, &p->source, err);
	if (!ret)
		ret = dup_string(label, prov, path, "base_model", false, &p->base_model, err);
	if (!ret)
		ret = dup_string(label, prov, path, "license", false, &p->license, err);
	if (!ret)
		ret = dup_string(label, prov, path, "signed_at", false, &p->signed_at, err);
	if (!ret)
		ret = dup_string(label, prov, path, "tool_version", false, &p->tool_version, err);
	if (!ret)
		ret = mv_json_member(label, prov, path, "datasets", cJSON_Array, false, &ds, err);
	if (!ret && ds)
		ret = parse_string_array(label, ds, "predicate.modelfs.provenance.datasets",
		                         &p->datasets, &p->n_datasets, err);
	if (!ret)
		ret = mv_json_member(label, prov, path, "properties", cJSON_Object, false, &props,
		                     err);
	if (!ret && props)
		ret = parse_props(label, props, p, err);
	return ret;
}

/* predicate.modelfs: the modelfs extension (absent in plain OMS signatures). */
static int parse_extension(const char *label, const cJSON *pred, struct mv_manifest *m,
                           struct mv_err *err)
{
	const cJSON *ext, *ver;
	int ret;

	ret = mv_json_member(label, pred, "predicate", MV_EXT_KEY, cJSON_Object, false, &ext, err);
	if (ret || !ext)
		return ret;
	ret = mv_json_member(label, ext, "predicate.modelfs", "version", cJSON_Number, true, &ver,
	                     err);
	if (ret)
		return ret;
	if (ver->valuedouble != MV_MODELFS_EXT_VERSION)
		return mv_err_set(err, -EINVAL,
		                  "%s: predicate.modelfs.version: unsupported version %g (need %d)",
		                  label, ver->valuedouble, MV_MODELFS_EXT_VERSION);
	m->has_extension = true;
	ret = parse_ext_files(label, ext, m, err);
	if (!ret)
		ret = parse_provenance(label, ext, &m->prov, err);
	return ret;
}

/* _type, predicateType and the single subject. */
static int parse_header(const char *label, const cJSON *root, struct mv_manifest *m,
                        const cJSON **pred, struct mv_err *err)
{
	const cJSON *subj, *s0, *dig, *sha;
	int ret;

	if (!cJSON_IsObject(root))
		return mv_err_set(err, -EINVAL, "%s: statement: expected a JSON object", label);
	ret = expect_string(label, root, "", "_type", MV_STATEMENT_TYPE, true, err);
	if (!ret)
		ret = expect_string(label, root, "", "predicateType", MV_PREDICATE_TYPE, true, err);
	if (!ret)
		ret = mv_json_member(label, root, "", "subject", cJSON_Array, true, &subj, err);
	if (!ret)
		ret = mv_json_member(label, root, "", "predicate", cJSON_Object, true, pred, err);
	if (ret)
		return ret;
	if (cJSON_GetArraySize(subj) != 1)
		return mv_err_set(err, -EINVAL, "%s: subject: expected exactly one subject, got %d",
		                  label, cJSON_GetArraySize(subj));
	s0 = cJSON_GetArrayItem(subj, 0);
	if (!cJSON_IsObject(s0))
		return mv_err_set(err, -EINVAL, "%s: subject[0]: expected an object", label);
	ret = dup_string(label, s0, "subject[0]", "name", true, &m->subject_name, err);
	if (!ret)
		ret = mv_json_member(label, s0, "subject[0]", "digest", cJSON_Object, true, &dig,
		                     err);
	if (!ret)
		ret = mv_json_member(label, dig, "subject[0].digest", "sha256", cJSON_String, true,
		                     &sha, err);
	if (!ret)
		ret = parse_hex_exact(label, "subject[0].digest.sha256", sha->valuestring,
		                      m->subject_sha256, 32, err);
	return ret;
}

/* Parses @root into @m; the subject digest is checked against the resources. */
static int statement_from_json(const char *label, const cJSON *root, struct mv_manifest *m,
                               struct mv_err *err)
{
	const cJSON *pred = NULL;
	uint8_t digest[32];
	int ret;

	ret = parse_header(label, root, m, &pred, err);
	if (!ret)
		ret = parse_serialization(label, pred, m, err);
	if (!ret)
		ret = parse_resources(label, pred, m, digest, err);
	if (ret)
		return ret;
	if (memcmp(digest, m->subject_sha256, 32) != 0)
		return mv_err_set(err, -EBADMSG,
		                  "%s: subject digest does not match the listed resources", label);
	return parse_extension(label, pred, m, err);
}

/**
 * mv_statement_parse_labeled() - parse an untrusted statement payload
 * @label: in: prefix of error lines (the signature file)
 * @json, @len: in: payload bytes
 * @out: out: the manifest (statement_len, statement_sha256 filled, and
 *       statement when shorter than MV_STATEMENT_KEEP_MAX; signer empty)
 * @err: out: error line
 *
 * Return: 0, -EINVAL (malformed), -EBADMSG (inconsistent digests), -ENOMEM.
 */
int mv_statement_parse_labeled(const char *label, const char *json, size_t len,
                               struct mv_manifest **out, struct mv_err *err)
{
	struct mv_manifest *m = NULL;
	cJSON *root = NULL;
	int ret;

	*out = NULL;
	ret = mv_json_parse_strict(label, "statement", json, len, &root, err);
	if (ret)
		return ret;
	m = calloc(1, sizeof(*m));
	/* A big statement is not kept: only its length and digest are. */
	if (!m || (len < MV_STATEMENT_KEEP_MAX && !(m->statement = malloc(len + 1)))) {
		ret = mv_err_set(err, -ENOMEM, "%s: out of memory", label);
		goto out;
	}
	if (m->statement) {
		memcpy(m->statement, json, len);
		m->statement[len] = '\0';
	}
	m->statement_len = len;
	mv_sha256(json, len, m->statement_sha256);
	ret = statement_from_json(label, root, m, err);
	if (ret)
		goto out;
	*out = m;
	m = NULL;
out:
	mv_manifest_free(m);
	cJSON_Delete(root);
	return ret;
}

/**
 * mv_statement_parse() - parse a statement payload without any signature
 * @json, @len: in: payload bytes (untrusted)
 * @out: out: the manifest
 * @err: out: error line prefixed "statement: "
 */
int mv_statement_parse(const char *json, size_t len, struct mv_manifest **out, struct mv_err *err)
{
	return mv_statement_parse_labeled("statement", json, len, out, err);
}

/* ------------------------------------------------------------------------
 * Building
 * ------------------------------------------------------------------------ */

/* Adds an integer member as raw JSON text: exact, and never in exponent form. */
static bool add_uint(cJSON *obj, const char *key, uint64_t v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	return cJSON_AddRawToObject(obj, key, buf) != NULL;
}

/* Adds a hex string member. */
static bool add_hex(cJSON *obj, const char *key, const uint8_t *b, size_t len)
{
	char hex[2 * 64 + 1];

	mv_hex_encode(b, len, hex);
	return cJSON_AddStringToObject(obj, key, hex) != NULL;
}

/* Adds @s under @key if non-NULL. */
static bool add_opt_string(cJSON *obj, const char *key, const char *s)
{
	return !s || cJSON_AddStringToObject(obj, key, s);
}

/* The "subject" array; also computes the subject digest into m->subject_sha256. */
static cJSON *build_subject(struct mv_manifest *m)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	cJSON *arr = cJSON_CreateArray(), *s = cJSON_CreateObject(), *d;
	bool ok = ctx && arr && s && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;

	for (size_t i = 0; ok && i < m->n_res; i++)
		ok = EVP_DigestUpdate(ctx, m->res[i].sha256, 32) == 1;
	ok = ok && EVP_DigestFinal_ex(ctx, m->subject_sha256, NULL) == 1;
	ok = ok && cJSON_AddItemToArray(arr, s);
	if (!ok)
		cJSON_Delete(s);
	ok = ok && cJSON_AddStringToObject(s, "name", m->subject_name);
	d = ok ? cJSON_AddObjectToObject(s, "digest") : NULL;
	ok = d && add_hex(d, "sha256", m->subject_sha256, 32);
	EVP_MD_CTX_free(ctx);
	if (!ok) {
		cJSON_Delete(arr);
		return NULL;
	}
	return arr;
}

/* predicate.serialization, as model_signing writes it for the files method. */
static bool build_serialization(const struct mv_manifest *m, cJSON *pred)
{
	cJSON *ser = cJSON_AddObjectToObject(pred, "serialization"), *ign;
	bool ok = ser && cJSON_AddStringToObject(ser, "method", "files") &&
	          cJSON_AddStringToObject(ser, "hash_type", "sha256") &&
	          cJSON_AddFalseToObject(ser, "allow_symlinks");

	ign = ok ? cJSON_AddArrayToObject(ser, "ignore_paths") : NULL;
	ok = ign != NULL;
	for (size_t i = 0; ok && i < m->n_ignore; i++) {
		cJSON *s = cJSON_CreateString(m->ignore_paths[i]);

		ok = s && cJSON_AddItemToArray(ign, s);
		if (!ok)
			cJSON_Delete(s);
	}
	return ok;
}

/* predicate.resources in manifest order. */
static bool build_resources(const struct mv_manifest *m, cJSON *pred)
{
	cJSON *arr = cJSON_AddArrayToObject(pred, "resources");
	bool ok = arr != NULL;

	for (size_t i = 0; ok && i < m->n_res; i++) {
		cJSON *r = cJSON_CreateObject();

		ok = r && cJSON_AddItemToArray(arr, r);
		if (!ok) {
			cJSON_Delete(r);
			break;
		}
		ok = cJSON_AddStringToObject(r, "name", m->res[i].name) &&
		     cJSON_AddStringToObject(r, "algorithm", "sha256") &&
		     add_hex(r, "digest", m->res[i].sha256, 32);
	}
	return ok;
}

/* One predicate.modelfs.files entry. */
static bool build_file(const struct mv_resource *r, cJSON *arr)
{
	const struct mv_tree_params *p = &r->merkle.params;
	size_t ds = mv_hash_digest_size(p->alg);
	cJSON *f = cJSON_CreateObject();

	if (!f || !cJSON_AddItemToArray(arr, f)) {
		cJSON_Delete(f);
		return false;
	}
	return cJSON_AddStringToObject(f, "name", r->name) && add_uint(f, "size", p->data_size) &&
	       cJSON_AddStringToObject(f, "hash_algorithm", mv_hash_name(p->alg)) &&
	       add_uint(f, "block_size", p->block_size) &&
	       add_hex(f, "salt", p->salt, p->salt_size) &&
	       add_hex(f, "merkle_root", r->merkle.root, ds) &&
	       add_hex(f, "fsverity_digest", r->merkle.digest, ds);
}

/* predicate.modelfs.provenance; absent fields are omitted. */
static bool build_provenance(const struct mv_provenance *p, cJSON *ext)
{
	cJSON *o = cJSON_AddObjectToObject(ext, "provenance"), *arr, *props;
	bool ok = o && add_opt_string(o, "name", p->name) &&
	          add_opt_string(o, "revision", p->revision) &&
	          add_opt_string(o, "source", p->source) &&
	          add_opt_string(o, "base_model", p->base_model) &&
	          add_opt_string(o, "license", p->license);

	if (ok && p->n_datasets) {
		arr = cJSON_AddArrayToObject(o, "datasets");
		ok = arr != NULL;
		for (size_t i = 0; ok && i < p->n_datasets; i++) {
			cJSON *s = cJSON_CreateString(p->datasets[i]);

			ok = s && cJSON_AddItemToArray(arr, s);
			if (!ok)
				cJSON_Delete(s);
		}
	}
	ok = ok && add_opt_string(o, "signed_at", p->signed_at) &&
	     add_opt_string(o, "tool_version", p->tool_version);
	if (ok && p->n_props) {
		props = cJSON_AddObjectToObject(o, "properties");
		ok = props != NULL;
		for (size_t i = 0; ok && i < p->n_props; i++)
			ok = cJSON_AddStringToObject(props, p->props[i].key, p->props[i].value);
	}
	return ok;
}

/* predicate.modelfs: version, files with Merkle data, provenance. */
static bool build_extension(const struct mv_manifest *m, cJSON *pred)
{
	cJSON *ext = cJSON_AddObjectToObject(pred, MV_EXT_KEY), *files;
	bool ok = ext && add_uint(ext, "version", MV_MODELFS_EXT_VERSION);

	files = ok ? cJSON_AddArrayToObject(ext, "files") : NULL;
	ok = files != NULL;
	for (size_t i = 0; ok && i < m->n_res; i++) {
		if (m->res[i].has_merkle)
			ok = build_file(&m->res[i], files);
	}
	return ok && build_provenance(&m->prov, ext);
}

/* Checks what the builder is given, so that it never signs what the parser would refuse. */
static int check_for_build(const struct mv_manifest *m, struct mv_err *err)
{
	if (!m->subject_name)
		return mv_err_set(err, -EINVAL, "statement: no subject name");
	if (m->n_res > MV_MAX_RESOURCES)
		return mv_err_set(err, -EINVAL, "statement: too many resources (%zu)", m->n_res);
	for (size_t i = 0; i < m->n_res; i++) {
		const struct mv_resource *r = &m->res[i];
		const struct mv_tree_params *p = &r->merkle.params;
		struct mv_tree_geometry geo;

		if (!mv_resource_name_valid(r->name, m->n_res == 1))
			return mv_err_set(err, -EINVAL, "statement: invalid resource name \"%s\"",
			                  r->name ? r->name : "(null)");
		if (i && strcmp(m->res[i - 1].name, r->name) >= 0)
			return mv_err_set(err, -EINVAL,
			                  "statement: resources not sorted or duplicated at \"%s\"",
			                  r->name);
		if (!m->has_extension || !r->has_merkle)
			continue;
		if (!mv_hash_name(p->alg) || p->salt_size > MV_MAX_SALT_SIZE ||
		    (double)p->data_size >= MV_MAX_JSON_INT || mv_tree_geometry(p, &geo))
			return mv_err_set(err, -EINVAL, "statement: %s: bad tree parameters",
			                  r->name);
	}
	for (size_t i = 0; m->has_extension && i < m->prov.n_props; i++) {
		for (size_t j = 0; j < i; j++) {
			if (strcmp(m->prov.props[i].key, m->prov.props[j].key) == 0)
				return mv_err_set(err, -EINVAL,
				                  "statement: property \"%s\" given twice",
				                  m->prov.props[i].key);
		}
	}
	return 0;
}

/**
 * mv_statement_build() - serialize an in-toto Statement v1 (compact JSON)
 * @m: in/out: manifest; subject_sha256 is computed and written back
 * @out, @out_len: out: malloc'd JSON text (no trailing newline)
 * @err: out: error line
 *
 * Members are written in a fixed order, so the same manifest always gives
 * the same bytes.
 */
int mv_statement_build(struct mv_manifest *m, char **out, size_t *out_len, struct mv_err *err)
{
	cJSON *root = NULL, *pred, *subj;
	char *text;
	bool ok;
	int ret;

	*out = NULL;
	*out_len = 0;
	ret = check_for_build(m, err);
	if (ret)
		return ret;
	root = cJSON_CreateObject();
	ok = root && cJSON_AddStringToObject(root, "_type", MV_STATEMENT_TYPE);
	subj = ok ? build_subject(m) : NULL;
	ok = subj != NULL;
	if (ok)
		cJSON_AddItemToObject(root, "subject", subj);
	ok = ok && cJSON_AddStringToObject(root, "predicateType", MV_PREDICATE_TYPE);
	pred = ok ? cJSON_AddObjectToObject(root, "predicate") : NULL;
	ok = pred && build_serialization(m, pred) && build_resources(m, pred);
	if (ok && m->has_extension)
		ok = build_extension(m, pred);
	text = ok ? cJSON_PrintUnformatted(root) : NULL;
	cJSON_Delete(root);
	if (!text)
		return mv_err_set(err, -ENOMEM, "statement: out of memory");
	*out = text;
	*out_len = strlen(text);
	return 0;
}
