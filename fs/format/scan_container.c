// SPDX-License-Identifier: Apache-2.0
/*
 * scan_container.c - the scanner's readers of the formats that hold other
 * data: numpy .npy (an object array is a pickle), keras configs (Lambda
 * layers), zip archives (torch checkpoints, .npz, joblib, keras, and
 * polyglots) and tar archives, and archives nested in a member.
 *
 * Separate from scan.c, which keeps the report and the routing: each reader
 * here only walks its format's structure, makes an item per member and hands
 * the member back to mfs_scan_blob(); the verdicts come from the report.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fmt_internal.h"

#define NESTED_INMEM   (256ull << 20) /* deflated nested archives are inflated in memory */
#define NPY_MAX_HEADER (1u << 20)
#define KERAS_MAX_JSON (16u << 20)

/* ------------------------------------------------------------------- npy */

int mfs_npy_parse(const uint8_t *buf, size_t len, struct mfs_npy_info *out)
{
	uint64_t hlen, hoff;
	const char *h, *d, *end;

	memset(out, 0, sizeof(*out));
	if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
		return -EBADMSG;
	if (buf[6] == 1) {
		hlen = buf[8] | (uint64_t)buf[9] << 8;
		hoff = 10;
	} else if (buf[6] == 2 || buf[6] == 3) {
		if (len < 12)
			return -EBADMSG;
		hlen = buf[8] | (uint64_t)buf[9] << 8 | (uint64_t)buf[10] << 16 |
		       (uint64_t)buf[11] << 24;
		hoff = 12;
	} else {
		return -EBADMSG;
	}
	if (hlen > len - hoff)
		return -EBADMSG;
	out->data_off = hoff + hlen;
	h = (const char *)buf + hoff;
	end = h + hlen;
	d = memmem(h, hlen, "'descr'", 7);
	if (!d)
		d = memmem(h, hlen, "\"descr\"", 7);
	if (!d)
		return -EBADMSG;
	d += 7;
	while (d < end && (*d == ' ' || *d == ':'))
		d++;
	if (d >= end)
		return -EBADMSG;
	if (*d == '\'' || *d == '"') {
		/* a simple dtype string: object when its type code is 'O' */
		d++;
		if (d < end && (*d == '|' || *d == '<' || *d == '>' || *d == '='))
			d++;
		out->object = d < end && *d == 'O';
		return 0;
	}
	/* A structured dtype: object if any field's type code is 'O'. */
	for (const char *q = d; q + 1 < end; q++) {
		if ((*q == '\'' || *q == '"') && q + 1 < end) {
			const char *t = q + 1;

			if (*t == '|' || *t == '<' || *t == '>' || *t == '=')
				t++;
			if (t < end && *t == 'O' && t + 1 < end &&
			    (t[1] == q[0] || (t[1] >= '0' && t[1] <= '9')))
				out->object = true;
		}
	}
	return 0;
}

int mfs_scan_npy(struct mfs_scanner *sc, const struct mfs_blob *b, size_t ii)
{
	struct mfs_npy_info ni;
	uint8_t *buf = NULL;
	size_t n, want = 4096;
	bool more;
	int rc;

	mfs_scan_item_at(sc, ii)->kind = "npy";
	rc = mfs_scan_read_upto(b, want, &buf, &n, &more);
	/* a header longer than the first read: read exactly what it declares */
	if (!rc && n >= 12 && mfs_npy_parse(buf, n, &ni) && more) {
		uint64_t hl = buf[6] == 1
		                  ? 10u + (buf[8] | (uint64_t)buf[9] << 8)
		                  : 12u + (buf[8] | (uint64_t)buf[9] << 8 |
		                           (uint64_t)buf[10] << 16 | (uint64_t)buf[11] << 24);

		if (hl > want && hl <= NPY_MAX_HEADER) {
			free(buf);
			rc = mfs_scan_read_upto(b, (size_t)hl, &buf, &n, &more);
		}
	}
	if (rc == -ENOMEM)
		goto out;
	if (rc) {
		rc = 0;
		mfs_scan_item_reason(mfs_scan_item_at(sc, ii), MFS_VERDICT_UNSAFE,
		                     "unreadable npy data");
		goto out;
	}
	if (mfs_npy_parse(buf, (size_t)n, &ni)) {
		/* numpy would refuse it; still look for a pickle after the magic */
		mfs_scan_item_reason(mfs_scan_item_at(sc, ii), MFS_VERDICT_UNSAFE,
		                     "malformed npy header");
		goto out;
	}
	if (!ni.object) {
		mfs_scan_item_level(mfs_scan_item_at(sc, ii), MFS_VERDICT_SAFE);
		goto out;
	}
	mfs_scan_item_at(sc, ii)->kind = "npy-object";
	struct mfs_pk_opts o = {.skip = ni.data_off};

	rc = mfs_scan_pickles(sc, b, ii, &o, NULL, NULL);
	if (!rc && mfs_scan_item_at(sc, ii)->verdict == MFS_VERDICT_NOT_PICKLE)
		mfs_scan_item_reason(mfs_scan_item_at(sc, ii), MFS_VERDICT_UNSAFE,
		                     "object array whose data is not a pickle");
out:
	free(buf);
	return rc;
}

/* ---------------------------------------------------------------- keras */

/* Finds a Lambda layer anywhere in a keras config (depth-bounded). */
static bool has_lambda(const cJSON *j, int depth)
{
	const cJSON *c;

	if (!j || depth > 64)
		return false;
	if (cJSON_IsObject(j)) {
		const cJSON *cn = cJSON_GetObjectItemCaseSensitive(j, "class_name");

		if (cJSON_IsString(cn) && (strcmp(cn->valuestring, "Lambda") == 0 ||
		                           strcmp(cn->valuestring, "TFOpLambda") == 0))
			return true;
	}
	cJSON_ArrayForEach(c, j) if (has_lambda(c, depth + 1)) return true;
	return false;
}

static int scan_keras_config(struct mfs_scanner *sc, const struct mfs_blob *b, size_t ii)
{
	uint8_t *buf = NULL;
	size_t n;
	bool more;
	int rc;

	mfs_scan_item_at(sc, ii)->kind = "keras-config";
	rc = mfs_scan_read_upto(b, KERAS_MAX_JSON, &buf, &n, &more);
	if (rc) {
		rc = rc == -ENOMEM ? rc : 0;
		goto out;
	}
	cJSON *j = cJSON_ParseWithLength((const char *)buf, n);

	if (has_lambda(j, 0))
		mfs_scan_item_reason(mfs_scan_item_at(sc, ii), MFS_VERDICT_UNSAFE,
		                     "keras config holds a Lambda layer (runs code when loaded)");
	cJSON_Delete(j);
out:
	free(buf);
	return rc;
}

/* ------------------------------------------------------------------- zip */

static bool ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);

	return a >= b && strcmp(s + a - b, suf) == 0;
}

static bool is_data_pkl(const char *name)
{
	return strcmp(name, "data.pkl") == 0 || ends_with(name, "/data.pkl");
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Is member @name a tensor storage referenced from @pkl? @keys are sorted. */
static bool is_storage(const char *name, const char *pkl, char **keys, size_t nkeys)
{
	size_t dl = strlen(pkl) - strlen("data.pkl");

	if (strncmp(name, pkl, dl) != 0 || strncmp(name + dl, "data/", 5) != 0)
		return false;
	const char *key = name + dl + 5;

	return nkeys && bsearch(&key, keys, nkeys, sizeof(char *), str_cmp) != NULL;
}

/* Scans member @e of @z as item named prefix+name. */
static int scan_member(struct mfs_scanner *sc, const struct mfs_zip *z,
                       const struct mfs_zip_entry *e, const char *prefix, int depth, bool storage,
                       bool *torch_hit, char ***keys, size_t *nkeys)
{
	char *name;
	ssize_t ii;
	int rc = 0;

	if (asprintf(&name, "%s%s", prefix, e->name) < 0)
		return -ENOMEM;
	ii = mfs_scan_item_new(sc, name, NULL);
	free(name);
	if (ii < 0)
		return (int)ii;
	if (e->hidden)
		mfs_scan_item_reason(
		    mfs_scan_item_at(sc, (size_t)ii), MFS_VERDICT_SUSPICIOUS,
		    "local entry at offset %llu is not in the central directory (streaming "
		    "unzip tools extract it; torch and zipfile never see it)",
		    (unsigned long long)e->header_off);
	if (e->mismatch)
		mfs_scan_item_reason(mfs_scan_item_at(sc, (size_t)ii), MFS_VERDICT_UNSAFE,
		                     "central directory and local header disagree: %s", e->why);
	if (e->bad_local || e->overlap) {
		if (e->bad_local)
			mfs_scan_item_reason(mfs_scan_item_at(sc, (size_t)ii), MFS_VERDICT_UNSAFE,
			                     "%s", e->why);
		return 0;
	}
	if (storage) {
		mfs_scan_item_at(sc, (size_t)ii)->kind = "tensor-data";
		return 0;
	}
	if (e->method != 0 && e->method != 8) {
		mfs_scan_item_reason(mfs_scan_item_at(sc, (size_t)ii), MFS_VERDICT_UNSCANNABLE,
		                     "compression method %u is not supported", e->method);
		return 0;
	}
	if (e->data_off > z->size || e->comp_size > z->size - e->data_off) {
		mfs_scan_item_reason(mfs_scan_item_at(sc, (size_t)ii), MFS_VERDICT_UNSAFE,
		                     "member data runs past the end of the archive");
		return 0;
	}
	struct mfs_subrange sr = {z->rd, z->ctx, e->data_off, e->comp_size};
	struct mfs_blob b = {.z = z, .ze = e};

	if (e->method == 0) {
		b.rd = mfs_scan_sub_pread;
		b.ctx = &sr;
		b.size = e->comp_size;
	}
	if (strcmp(e->name, "config.json") == 0)
		rc = scan_keras_config(sc, &b, (size_t)ii);
	else if (is_data_pkl(e->name) && !*torch_hit) {
		struct mfs_pk_opts o = {0};

		rc = mfs_scan_pickles(sc, &b, (size_t)ii, &o, keys, nkeys);
		*torch_hit = true;
	} else {
		rc = mfs_scan_blob(sc, &b, (size_t)ii, prefix, depth + 1);
	}
	struct mfs_scan_item *it = mfs_scan_item_at(sc, (size_t)ii);

	/* Readers that honour the encryption bit cannot read it; torch reads it as is. */
	if ((e->flags & 1) && it->verdict == MFS_VERDICT_NOT_PICKLE) {
		it->kind = "encrypted";
		mfs_scan_item_reason(it, MFS_VERDICT_UNSCANNABLE, "encrypted member");
	}
	return rc;
}

static const char *zip_kind(const struct mfs_zip *z, bool torch)
{
	bool npz = z->n > 0, cfg = false, meta = false;

	if (torch)
		return "torch-zip";
	for (size_t i = 0; i < z->n; i++) {
		npz &= ends_with(z->e[i].name, ".npy");
		cfg |= strcmp(z->e[i].name, "config.json") == 0;
		meta |= strcmp(z->e[i].name, "metadata.json") == 0 ||
		        ends_with(z->e[i].name, ".weights.h5");
	}
	return npz ? "npz" : cfg && meta ? "keras" : "zip";
}

/*
 * Scans a zip archive: at the head of @b, or with @tail, one that Python's
 * zipfile would find at the end of a file that starts as something else
 * (then only a readable archive with members counts, and it is a polyglot).
 */
int mfs_scan_zip(struct mfs_scanner *sc, const struct mfs_blob *b, size_t ii, const char *prefix,
                 int depth, bool tail)
{
	struct mfs_zip z;
	char **keys = NULL, *pfx = NULL;
	size_t nkeys = 0, pkl = SIZE_MAX, first;
	bool torch = false, dummy = true;
	int rc;

	rc = mfs_zip_open_mode(&z, b->rd, b->ctx, b->size, tail);
	if (tail && (rc == -EBADMSG || (!rc && !z.n))) {
		rc = 0; /* no archive is reachable from the end */
		goto out;
	}
	if (tail)
		mfs_scan_polyglot(
		    sc, ii,
		    "a zip archive of %zu members (from offset %llu) ends the file behind a "
		    "%s head; zipfile reads it",
		    z.n, (unsigned long long)z.base,
		    mfs_scan_item_at(sc, ii)->kind ? mfs_scan_item_at(sc, ii)->kind : "data");
	else
		mfs_scan_item_at(sc, ii)->kind = "zip";
	if (rc == -EBADMSG) {
		mfs_scan_item_reason(mfs_scan_item_at(sc, ii), MFS_VERDICT_UNSAFE, "zip: %s",
		                     z.anomaly);
		rc = 0;
		goto out;
	}
	if (rc)
		goto out;
	if (z.anomaly[0])
		mfs_scan_item_reason(mfs_scan_item_at(sc, ii), MFS_VERDICT_UNSAFE, "zip: %s",
		                     z.anomaly);
	/* Members of a nested archive are named "outer!inner". */
	if (asprintf(&pfx, "%s%s",
	             depth && mfs_scan_item_at(sc, ii)->member ? mfs_scan_item_at(sc, ii)->member
	                                                       : "",
	             depth && mfs_scan_item_at(sc, ii)->member ? "!" : "") < 0) {
		pfx = NULL;
		rc = -ENOMEM;
		goto out;
	}
	first = sc->rep->nitems;
	/* torch's data.pkl first: it names the storages, which are raw data. */
	for (size_t i = 0; i < z.n && pkl == SIZE_MAX; i++)
		if (is_data_pkl(z.e[i].name) && !z.e[i].mismatch)
			pkl = i;
	if (pkl != SIZE_MAX &&
	    (rc = scan_member(sc, &z, &z.e[pkl], pfx, depth, false, &torch, &keys, &nkeys)))
		goto out;
	if (nkeys)
		qsort(keys, nkeys, sizeof(char *), str_cmp);
	for (size_t i = 0; i < z.n; i++) {
		bool st = pkl != SIZE_MAX && i != pkl && !z.e[i].mismatch &&
		          is_storage(z.e[i].name, z.e[pkl].name, keys, nkeys);

		if (i == pkl)
			continue;
		rc = scan_member(sc, &z, &z.e[i], pfx, depth, st, &torch, NULL, NULL);
		if (rc)
			goto out;
	}
	for (size_t i = 0; i < z.nhidden; i++)
		if ((rc = scan_member(sc, &z, &z.hidden[i], pfx, depth, false, &dummy, NULL, NULL)))
			goto out;
	if (!tail)
		mfs_scan_item_at(sc, ii)->kind = zip_kind(&z, torch);
	for (size_t i = first; i < sc->rep->nitems; i++)
		mfs_scan_item_level(mfs_scan_item_at(sc, ii), mfs_scan_item_at(sc, i)->verdict);
out:
	for (size_t k = 0; k < nkeys; k++)
		free(keys[k]);
	free(keys);
	free(pfx);
	mfs_zip_close(&z);
	return rc;
}

/* ------------------------------------------------------------------- tar */

/* Reads a GNU long name or a pax "path=" record into @name (size 4096). */
static void tar_longname(const struct mfs_blob *b, uint64_t off, uint64_t len, char type,
                         char *name)
{
	char buf[4096];
	uint64_t n = len < sizeof(buf) - 1 ? len : sizeof(buf) - 1;
	ssize_t r = b->rd(b->ctx, buf, (size_t)n, off);

	if (r <= 0)
		return;
	buf[r] = 0;
	if (type == 'L') {
		snprintf(name, 4096, "%s", buf);
		return;
	}
	for (char *rec = buf; rec < buf + r;) {
		char *sp = memchr(rec, ' ', (size_t)(buf + r - rec)), *end;
		unsigned long rl = strtoul(rec, &end, 10);

		if (!sp || end != sp || rl == 0 || rl > (unsigned long)(buf + r - rec))
			return;
		if (strncmp(sp + 1, "path=", 5) == 0 && rec[rl - 1] == '\n') {
			snprintf(name, 4096, "%.*s", (int)(rec + rl - 1 - (sp + 6)), sp + 6);
			return;
		}
		rec += rl;
	}
}

/* Walks a ustar/pax/GNU tar (random access) and scans each regular file. */
static int scan_tar(struct mfs_scanner *sc, const struct mfs_blob *b, size_t ii, int depth)
{
	char longname[4096] = "", *name = NULL;
	uint8_t h[512];
	uint64_t off = 0, count = 0;
	size_t first = sc->rep->nitems;
	int rc = 0;

	mfs_scan_item_at(sc, ii)->kind = "tar";
	while (off <= b->size && b->size - off >= 512) {
		uint64_t len, data;
		ssize_t r = b->rd(b->ctx, h, sizeof(h), off);

		if (r < 0)
			return (int)r;
		if (r != 512)
			break;
		if (!memcmp(h, (uint8_t[512]){0}, 512))
			break; /* end-of-archive blocks */
		if (!mfs_tar_header_ok(h) || !mfs_tar_num(h + 124, 12, &len)) {
			mfs_scan_item_reason(mfs_scan_item_at(sc, ii), MFS_VERDICT_UNSAFE,
			                     "tar: bad header at offset %llu",
			                     (unsigned long long)off);
			break;
		}
		data = off + 512;
		if (len > b->size - data) {
			mfs_scan_item_reason(mfs_scan_item_at(sc, ii), MFS_VERDICT_UNSAFE,
			                     "tar: member at offset %llu runs past the end",
			                     (unsigned long long)off);
			break;
		}
		if (++count > MFS_ZIP_MAX_ENTRIES) {
			mfs_scan_item_reason(mfs_scan_item_at(sc, ii), MFS_VERDICT_UNSCANNABLE,
			                     "tar: too many members");
			break;
		}
		char type = (char)h[156];

		if (type == 'L' || type == 'x') {
			tar_longname(b, data, len, type, longname);
		} else if (type == '0' || type == '\0' || type == '7') {
			struct mfs_subrange sr = {b->rd, b->ctx, data, len};
			struct mfs_blob mb = {.rd = mfs_scan_sub_pread, .ctx = &sr, .size = len};
			ssize_t mi;

			if (asprintf(&name, "%s%s%.*s%s%.*s",
			             depth && mfs_scan_item_at(sc, ii)->member
			                 ? mfs_scan_item_at(sc, ii)->member
			                 : "",
			             depth && mfs_scan_item_at(sc, ii)->member ? "!" : "",
			             longname[0] || !h[345] ? 0 : 155, (char *)h + 345,
			             longname[0] || !h[345] ? "" : "/", longname[0] ? 4095 : 100,
			             longname[0] ? longname : (char *)h) < 0)
				return -ENOMEM;
			/* h's name fields may lack a NUL: the precisions bound them */
			mi = mfs_scan_item_new(sc, name, NULL);
			free(name);
			if (mi < 0)
				return (int)mi;
			rc = mfs_scan_blob(sc, &mb, (size_t)mi, "", depth + 1);
			if (rc)
				return rc;
			longname[0] = 0;
		} else {
			longname[0] = 0; /* directories, links, devices: no data to scan */
		}
		off = data + ((len + 511) & ~(uint64_t)511);
	}
	for (size_t i = first; i < sc->rep->nitems; i++)
		mfs_scan_item_level(mfs_scan_item_at(sc, ii), mfs_scan_item_at(sc, i)->verdict);
	return rc;
}

/*
 * A zip or tar inside a compressed member needs random access: inflate it
 * into memory when small enough.
 */
int mfs_scan_nested(struct mfs_scanner *sc, const struct mfs_blob *b, size_t ii, const char *prefix,
                    int depth, bool tar)
{
	struct mfs_membuf mb;
	struct mfs_blob mbb;
	uint8_t *buf = NULL;
	size_t n;
	bool more;
	int rc;

	if (b->rd && !b->zlib)
		return tar ? scan_tar(sc, b, ii, depth)
		           : mfs_scan_zip(sc, b, ii, prefix, depth, false);
	rc = mfs_scan_read_upto(b, NESTED_INMEM, &buf, &n, &more);
	if (rc == -ENOMEM)
		return rc;
	if (rc) {
		mfs_scan_item_reason(mfs_scan_item_at(sc, ii),
		                     rc == -EFBIG ? MFS_VERDICT_UNSCANNABLE : MFS_VERDICT_UNSAFE,
		                     "corrupt compressed data");
		rc = 0;
	} else if (more) {
		mfs_scan_item_reason(mfs_scan_item_at(sc, ii), MFS_VERDICT_UNSCANNABLE,
		                     "compressed nested archive larger than %llu bytes",
		                     (unsigned long long)NESTED_INMEM);
	} else {
		mb = (struct mfs_membuf){buf, n};
		mbb = (struct mfs_blob){.rd = mfs_mem_pread, .ctx = &mb, .size = (uint64_t)n};
		rc = tar ? scan_tar(sc, &mbb, ii, depth)
		         : mfs_scan_zip(sc, &mbb, ii, prefix, depth, false);
	}
	free(buf);
	return rc;
}