// SPDX-License-Identifier: Apache-2.0
/*
 * safetensors.c - the safetensors side of transcoding: the dtype table, the
 * header writer (byte-for-byte the reference's layout: compact JSON,
 * "__metadata__" first, tensors sorted by descending dtype alignment then by
 * name, spaces up to a multiple of 8) and a strict header checker.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fmt_internal.h"
#include "tx_internal.h"

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

/* ------------------------------------------------------------------ writer */

/* A growing text buffer; the first failure sticks in err. */
struct sbuf {
	char *p;
	size_t n, cap;
	int err;
};

static void sb_put(struct sbuf *b, const void *s, size_t len)
{
	if (b->err)
		return;
	if (len > MFS_ST_MAX_HEADER || b->n + len > MFS_ST_MAX_HEADER + 16) {
		b->err = -EFBIG;
		return;
	}
	if (b->n + len > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		void *np;

		while (cap < b->n + len)
			cap *= 2;
		np = realloc(b->p, cap);
		if (!np) {
			b->err = -ENOMEM;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, len);
	b->n += len;
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

static void sb_u64(struct sbuf *b, uint64_t v)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof(tmp), "%" PRIu64, v);

	sb_put(b, tmp, (size_t)n);
}

/* A JSON string, escaped as serde_json does (UTF-8 passes through). */
static void sb_json_str(struct sbuf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";

	sb_put(b, "\"", 1);
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		char esc[6] = {'\\', 'u', '0', '0', 0, 0};

		switch (*c) {
		case '"': sb_put(b, "\\\"", 2); break;
		case '\\': sb_put(b, "\\\\", 2); break;
		case '\b': sb_put(b, "\\b", 2); break;
		case '\f': sb_put(b, "\\f", 2); break;
		case '\n': sb_put(b, "\\n", 2); break;
		case '\r': sb_put(b, "\\r", 2); break;
		case '\t': sb_put(b, "\\t", 2); break;
		default:
			if (*c < 0x20) {
				esc[4] = hex[*c >> 4];
				esc[5] = hex[*c & 15];
				sb_put(b, esc, 6);
			} else {
				sb_put(b, c, 1);
			}
		}
	}
	sb_put(b, "\"", 1);
}

/* Output order of the reference: dtype rank descending, then name (bytes). */
static int cmp_out(const void *a, const void *b, void *ctx)
{
	const struct mfs_tx_plan *p = ctx;
	const struct mfs_tx_tensor *x = &p->t[*(const uint32_t *)a];
	const struct mfs_tx_tensor *y = &p->t[*(const uint32_t *)b];

	if (x->dtype != y->dtype)
		return x->dtype > y->dtype ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Removed names, sorted, for a deterministic __metadata__. */
static int cmp_name(const void *a, const void *b, void *ctx)
{
	const struct mfs_tx_plan *p = ctx;

	return strcmp(p->t[*(const uint32_t *)a].name, p->t[*(const uint32_t *)b].name);
}

/* Writes the "__metadata__" object: format first, then removed names sorted. */
static int put_metadata(struct sbuf *b, const struct mfs_tx_plan *p)
{
	uint32_t *rm = NULL;
	size_t nrm = 0;

	for (size_t i = 0; i < p->nt; i++)
		nrm += p->t[i].removed;
	if (nrm && !(rm = malloc(nrm * sizeof(*rm))))
		return -ENOMEM;
	nrm = 0;
	for (size_t i = 0; i < p->nt; i++)
		if (p->t[i].removed)
			rm[nrm++] = (uint32_t)i;
	if (nrm)
		qsort_r(rm, nrm, sizeof(*rm), cmp_name, (void *)p);
	sb_str(b, "\"__metadata__\":{\"format\":\"pt\"");
	for (size_t i = 0; i < nrm; i++) {
		const struct mfs_tx_tensor *t = &p->t[rm[i]];

		/* The reference never overwrites a key already present ("format"). */
		if (strcmp(t->name, "format") == 0)
			continue;
		sb_put(b, ",", 1);
		sb_json_str(b, t->name);
		sb_put(b, ":", 1);
		sb_json_str(b, p->t[t->kept].name);
	}
	sb_put(b, "}", 1);
	free(rm);
	return 0;
}

static void put_tensor(struct sbuf *b, const struct mfs_tx_tensor *t)
{
	sb_put(b, ",", 1);
	sb_json_str(b, t->name);
	sb_str(b, ":{\"dtype\":\"");
	sb_str(b, mfs_st_dtype_name(t->dtype));
	sb_str(b, "\",\"shape\":[");
	for (uint32_t d = 0; d < t->ndim; d++) {
		if (d)
			sb_put(b, ",", 1);
		sb_u64(b, t->shape[d]);
	}
	sb_str(b, "],\"data_offsets\":[");
	sb_u64(b, t->data_off);
	sb_put(b, ",", 1);
	sb_u64(b, t->data_off + t->nbytes);
	sb_str(b, "]}");
}

int mfs_st_build_header(struct mfs_tx_plan *p)
{
	struct sbuf b = {0};
	uint64_t off = 0, hl;
	int rc;

	free(p->order);
	p->order = malloc((p->nt ? p->nt : 1) * sizeof(*p->order));
	if (!p->order)
		return -ENOMEM;
	p->norder = 0;
	for (size_t i = 0; i < p->nt; i++)
		if (!p->t[i].removed)
			p->order[p->norder++] = (uint32_t)i;
	qsort_r(p->order, p->norder, sizeof(*p->order), cmp_out, p);
	for (size_t i = 0; i < p->norder; i++) {
		struct mfs_tx_tensor *t = &p->t[p->order[i]];

		t->data_off = off;
		if (__builtin_add_overflow(off, t->nbytes, &off))
			return -EOVERFLOW;
	}
	p->data_len = off;
	sb_put(&b, "\0\0\0\0\0\0\0\0{", 9);
	rc = put_metadata(&b, p);
	for (size_t i = 0; !rc && i < p->norder; i++)
		put_tensor(&b, &p->t[p->order[i]]);
	sb_put(&b, "}", 1);
	while (!rc && !b.err && (b.n - 8) % 8)
		sb_put(&b, " ", 1);
	rc = rc ? rc : b.err;
	if (!rc && b.n - 8 > MFS_ST_MAX_HEADER)
		rc = -EFBIG;
	if (!rc && __builtin_add_overflow((uint64_t)b.n, p->data_len, &hl))
		rc = -EOVERFLOW;
	if (rc) {
		free(b.p);
		return rc;
	}
	hl = b.n - 8;
	for (int i = 0; i < 8; i++)
		b.p[i] = (char)(hl >> (8 * i));
	free(p->header);
	p->header = (uint8_t *)b.p;
	p->header_len = b.n;
	return 0;
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
