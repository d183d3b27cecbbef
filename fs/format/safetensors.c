// SPDX-License-Identifier: Apache-2.0
/*
 * safetensors.c - the safetensors format: the dtype table and a strict
 * header checker (format detection and the transcoder's self-check). The
 * header writer is the transcoder's (transcode/st_write.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fmt_internal.h"

static const struct {
	const char *name;
	unsigned size;
} dtypes[MFS_ST_NDTYPES] = {
    [MFS_ST_BOOL] = {"BOOL", 1},       [MFS_ST_U8] = {"U8", 1},
    [MFS_ST_I8] = {"I8", 1},           [MFS_ST_F8_E5M2] = {"F8_E5M2", 1},
    [MFS_ST_F8_E4M3] = {"F8_E4M3", 1}, [MFS_ST_I16] = {"I16", 2},
    [MFS_ST_U16] = {"U16", 2},         [MFS_ST_F16] = {"F16", 2},
    [MFS_ST_BF16] = {"BF16", 2},       [MFS_ST_I32] = {"I32", 4},
    [MFS_ST_U32] = {"U32", 4},         [MFS_ST_F32] = {"F32", 4},
    [MFS_ST_F64] = {"F64", 8},         [MFS_ST_I64] = {"I64", 8},
    [MFS_ST_U64] = {"U64", 8},
};

const char *mfs_st_dtype_name(int dt)
{
	return dt >= 0 && dt < MFS_ST_NDTYPES ? dtypes[dt].name : NULL;
}

unsigned mfs_st_dtype_size(int dt)
{
	return dt >= 0 && dt < MFS_ST_NDTYPES ? dtypes[dt].size : 0;
}

int mfs_st_dtype_parse(const char *s, size_t len)
{
	for (int i = 0; i < MFS_ST_NDTYPES; i++)
		if (strlen(dtypes[i].name) == len && memcmp(dtypes[i].name, s, len) == 0)
			return i;
	return -1;
}

/* ----------------------------------------------------------------- checker */

/* Largest integer a double holds exactly: header numbers beyond are refused. */
#define JSON_INT_MAX 9007199254740992.0

/* A non-negative integer JSON number as uint64, or false. */
static bool json_u64(const cJSON *j, uint64_t *v)
{
	double d;

	if (!cJSON_IsNumber(j))
		return false;
	d = j->valuedouble;
	if (!(d >= 0 && d <= JSON_INT_MAX) || (double)(uint64_t)d != d)
		return false;
	*v = (uint64_t)d;
	return true;
}

struct st_entry {
	const char *name;
	uint64_t begin, end;
};

static int cmp_begin(const void *a, const void *b)
{
	const struct st_entry *x = a, *y = b;

	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	return x->end < y->end ? -1 : x->end > y->end;
}

static int cmp_ename(const void *a, const void *b)
{
	return strcmp(((const struct st_entry *)a)->name, ((const struct st_entry *)b)->name);
}

/* Checks one tensor entry of the header into @e. */
static int check_entry(const cJSON *j, struct st_entry *e, struct mv_err *err)
{
	const cJSON *dt = NULL, *shape = NULL, *offs = NULL, *k;
	uint64_t nel = 1, nbytes, v;
	int dtype;

	if (!cJSON_IsObject(j))
		return mv_err_set(err, -EBADMSG, "tensor '%s' is not an object", e->name);
	cJSON_ArrayForEach(k, j)
	{
		const cJSON **slot = strcmp(k->string, "dtype") == 0          ? &dt
		                     : strcmp(k->string, "shape") == 0        ? &shape
		                     : strcmp(k->string, "data_offsets") == 0 ? &offs
		                                                              : NULL;

		if (!slot || *slot)
			return mv_err_set(err, -EBADMSG,
			                  "tensor '%s': unexpected or repeated key '%s'", e->name,
			                  k->string);
		*slot = k;
	}
	if (!cJSON_IsString(dt) ||
	    (dtype = mfs_st_dtype_parse(dt->valuestring, strlen(dt->valuestring))) < 0)
		return mv_err_set(err, -EBADMSG, "tensor '%s': missing or unknown dtype", e->name);
	if (!cJSON_IsArray(shape))
		return mv_err_set(err, -EBADMSG, "tensor '%s': shape is not an array", e->name);
	cJSON_ArrayForEach(k, shape)
	{
		if (!json_u64(k, &v))
			return mv_err_set(err, -EBADMSG, "tensor '%s': bad dimension", e->name);
		if (__builtin_mul_overflow(nel, v, &nel))
			return mv_err_set(err, -EBADMSG, "tensor '%s': shape overflows", e->name);
	}
	if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
	    !json_u64(cJSON_GetArrayItem(offs, 0), &e->begin) ||
	    !json_u64(cJSON_GetArrayItem(offs, 1), &e->end) || e->end < e->begin)
		return mv_err_set(err, -EBADMSG, "tensor '%s': bad data_offsets", e->name);
	if (__builtin_mul_overflow(nel, (uint64_t)mfs_st_dtype_size(dtype), &nbytes) ||
	    nbytes != e->end - e->begin)
		return mv_err_set(err, -EBADMSG,
		                  "tensor '%s': data_offsets do not match dtype and shape",
		                  e->name);
	return 0;
}

static int check_metadata(const cJSON *j, struct mv_err *err)
{
	const cJSON *k;

	if (!cJSON_IsObject(j))
		return mv_err_set(err, -EBADMSG, "__metadata__ is not an object");
	cJSON_ArrayForEach(k, j)
	{
		if (!cJSON_IsString(k))
			return mv_err_set(err, -EBADMSG,
			                  "__metadata__ value of '%s' is not a string", k->string);
	}
	return 0;
}

/* Checks the parsed header against a data section of @data_len bytes. */
static int check_header(const cJSON *root, uint64_t data_len, size_t *ntensors, struct mv_err *err)
{
	struct st_entry *e = NULL;
	size_t n = 0, cap = (size_t)cJSON_GetArraySize(root);
	uint64_t at = 0;
	bool meta = false;
	const cJSON *k;
	int rc = 0;

	if (!cJSON_IsObject(root))
		return mv_err_set(err, -EBADMSG, "header is not a JSON object");
	if (cap && !(e = calloc(cap, sizeof(*e))))
		return -ENOMEM;
	cJSON_ArrayForEach(k, root)
	{
		if (strcmp(k->string, "__metadata__") == 0) {
			if (meta)
				rc = mv_err_set(err, -EBADMSG, "__metadata__ appears twice");
			meta = true;
			rc = rc ? rc : check_metadata(k, err);
		} else if (n < cap) {
			e[n].name = k->string;
			rc = check_entry(k, &e[n++], err);
		}
		if (rc)
			goto out;
	}
	if (n)
		qsort(e, n, sizeof(*e), cmp_ename);
	for (size_t i = 1; i < n; i++)
		if (strcmp(e[i - 1].name, e[i].name) == 0) {
			rc = mv_err_set(err, -EBADMSG, "tensor '%s' appears twice", e[i].name);
			goto out;
		}
	if (n)
		qsort(e, n, sizeof(*e), cmp_begin);
	for (size_t i = 0; i < n; i++) {
		if (e[i].begin != at) {
			rc = mv_err_set(err, -EBADMSG,
			                "tensor '%s': data_offsets leave a gap or overlap",
			                e[i].name);
			goto out;
		}
		at = e[i].end;
	}
	if (at != data_len)
		rc = mv_err_set(err, -EBADMSG,
		                "data section is %" PRIu64 " bytes, tensors cover %" PRIu64,
		                data_len, at);
	if (ntensors)
		*ntensors = n;
out:
	free(e);
	return rc;
}

int mfs_safetensors_check(mfs_pread_fn rd, void *ctx, uint64_t size, size_t *ntensors,
                          struct mv_err *err)
{
	uint8_t len8[8];
	uint64_t hl = 0;
	char *h = NULL;
	const char *end = NULL;
	cJSON *root = NULL;
	ssize_t r;
	int rc;

	if (size < 8)
		return mv_err_set(err, -EBADMSG, "shorter than the 8-byte header length");
	r = rd(ctx, len8, 8, 0);
	if (r < 0)
		return mv_err_set(err, (int)r, "read failed: %s", strerror((int)-r));
	if (r != 8)
		return mv_err_set(err, -EBADMSG, "truncated header length");
	for (int i = 0; i < 8; i++)
		hl |= (uint64_t)len8[i] << (8 * i);
	if (hl < 2 || hl > MFS_ST_MAX_HEADER || hl > size - 8)
		return mv_err_set(err, -EBADMSG, "header length %" PRIu64 " is out of range", hl);
	h = malloc((size_t)hl + 1);
	if (!h)
		return -ENOMEM;
	r = rd(ctx, h, (size_t)hl, 8);
	if (r < 0 || (uint64_t)r != hl) {
		rc = r < 0 ? mv_err_set(err, (int)r, "read failed: %s", strerror((int)-r))
		           : mv_err_set(err, -EBADMSG, "truncated header");
		goto out;
	}
	h[hl] = 0;
	if (h[0] != '{' || !mfs_json_bytes_ok(h, (size_t)hl)) {
		rc = mv_err_set(err, -EBADMSG, "header is not UTF-8 JSON starting with '{'");
		goto out;
	}
	root = cJSON_ParseWithLengthOpts(h, (size_t)hl, &end, false);
	if (!root) {
		rc = mv_err_set(err, -EBADMSG, "header is not valid JSON");
		goto out;
	}
	for (; end && end < h + hl; end++)
		if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r') {
			rc = mv_err_set(err, -EBADMSG, "bytes after the header's JSON");
			goto out;
		}
	rc = check_header(root, size - 8 - hl, ntensors, err);
out:
	cJSON_Delete(root);
	free(h);
	return rc;
}
