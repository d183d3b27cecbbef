// SPDX-License-Identifier: Apache-2.0
/*
 * st_write.c - the safetensors header writer of the transcoder:
 * byte-for-byte the reference's layout (compact JSON, "__metadata__" first,
 * tensors sorted by descending dtype alignment then by name, spaces up to a
 * multiple of 8).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tx_internal.h"

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
