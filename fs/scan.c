// SPDX-License-Identifier: Apache-2.0
/*
 * scan.c - the pickle scanner: routes a file by its bytes (never by its
 * name) to the container readers and the restricted pickle reader, and turns
 * what they find into verdicts (docs/scanner.md).
 *
 * Containers: raw pickle streams (several in a row), legacy torch files (the
 * magic-number pickle and the four after it), zip archives (torch
 * checkpoints, .npz, joblib, keras; nested up to MAX_DEPTH), numpy .npy,
 * gzip/zlib streams (compressed joblib), and 7z (unscannable, but searched
 * for stored pickles).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fmt_internal.h"

#define SNIFF          4096u
#define MAX_DEPTH      3
#define INFLATE_LIMIT  (64ull << 30)  /* most bytes a compressed member may expand to */
#define NESTED_INMEM   (256ull << 20) /* deflated nested archives are inflated in memory */
#define NPY_MAX_HEADER (1u << 20)
#define KERAS_MAX_JSON (16u << 20)
#define CARVE_WINDOW   (16u << 20)
#define CARVE_MAX      256

/* The legacy torch magic number 0x1950a86a20f9469cfc6c, little-endian. */
static const uint8_t torch_magic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

const char *mfs_verdict_name(enum mfs_verdict v)
{
	switch (v) {
	case MFS_VERDICT_NOT_PICKLE: return "not-pickle";
	case MFS_VERDICT_SAFE: return "safe";
	case MFS_VERDICT_SUSPICIOUS: return "suspicious";
	case MFS_VERDICT_UNSCANNABLE: return "unscannable";
	case MFS_VERDICT_UNSAFE: return "unsafe";
	}
	return "unknown";
}

/* --------------------------------------------------------------- blobs */

/* What is being scanned: a random-access range, or a zip member's stream. */
struct blob {
	mfs_pread_fn rd; /* random access (NULL for a compressed zip member) */
	void *ctx;
	uint64_t size;
	const struct mfs_zip *z; /* else: member ze of z */
	const struct mfs_zip_entry *ze;
	bool zlib; /* else: a zlib/gzip stream over rd */
};

struct subrange {
	mfs_pread_fn rd;
	void *ctx;
	uint64_t base, len;
};

static ssize_t sub_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
	const struct subrange *s = ctx;

	if (off >= s->len)
		return 0;
	if (len > s->len - off)
		len = (size_t)(s->len - off);
	return s->rd(s->ctx, buf, len, s->base + off);
}

/* Opens @b from its first byte. */
static int blob_open(const struct blob *b, struct mfs_stream *s)
{
	if (b->zlib)
		return mfs_stream_inflate(s, b->rd, b->ctx, 0, b->size, true, INFLATE_LIMIT);
	if (b->rd) {
		mfs_stream_raw(s, b->rd, b->ctx, 0, b->size);
		return 0;
	}
	return mfs_zip_entry_stream(b->z, b->ze, s, INFLATE_LIMIT);
}

/*
 * Reads @b from its start into a malloc'd buffer that grows as data comes,
 * up to @max bytes (plus a NUL). *@more tells whether data was left over.
 * Return: 0, or the negative errno of the stream (-EBADMSG corrupt data).
 */
static int read_upto(const struct blob *b, size_t max, uint8_t **out, size_t *len, bool *more)
{
	struct mfs_stream s;
	size_t cap = 4096, n = 0;
	uint8_t *buf = NULL, probe;
	ssize_t r;
	int rc = blob_open(b, &s);

	*out = NULL;
	*len = 0;
	*more = false;
	if (rc)
		return rc;
	for (;;) {
		if (!buf || n == cap) {
			size_t ncap =
			    buf ? (cap * 2 > max ? max : cap * 2) : (cap > max ? max : cap);
			void *np;

			if (buf && ncap == cap)
				break; /* reached @max */
			np = realloc(buf, ncap + 1);
			if (!np) {
				rc = -ENOMEM;
				goto out;
			}
			buf = np;
			cap = ncap;
		}
		r = mfs_stream_read(&s, buf + n, cap - n);
		if (r < 0) {
			rc = (int)r;
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n == max) {
		r = mfs_stream_read(&s, &probe, 1);
		*more = r != 0;
	}
	buf[n] = 0;
	*out = buf;
	*len = n;
	buf = NULL;
out:
	free(buf);
	mfs_stream_close(&s);
	return rc;
}

/* ---------------------------------------------------------------- report */

struct scanner {
	struct mfs_scan_report *rep;
	int err;             /* first I/O error: the scan fails with it */
	enum mfs_format top; /* strict format of the whole file (mfs_format_strict) */
};

static struct mfs_scan_item *item_at(struct scanner *sc, size_t i)
{
	return &sc->rep->items[i];
}

/*
 * Member names, global names and reasons come from untrusted bytes: each is
 * stored through mv_name_printable_dup(), so that no report line can be
 * forged and the JSON report stays valid UTF-8.
 */
/* Adds an item; returns its index or -ENOMEM. */
static ssize_t item_new(struct scanner *sc, const char *member, const char *kind)
{
	struct mfs_scan_report *r = sc->rep;
	struct mfs_scan_item *it;
	void *np = realloc(r->items, (r->nitems + 1) * sizeof(*r->items));

	if (!np)
		return -ENOMEM;
	r->items = np;
	it = &r->items[r->nitems];
	memset(it, 0, sizeof(*it));
	it->kind = kind;
	it->verdict = MFS_VERDICT_NOT_PICKLE;
	if (member && !(it->member = mv_name_printable_dup(member)))
		return -ENOMEM;
	return (ssize_t)r->nitems++;
}

static void item_level(struct mfs_scan_item *it, enum mfs_verdict v)
{
	if (v > it->verdict)
		it->verdict = v;
}

/* Adds a reason line and raises the verdict to @v. */
__attribute__((format(printf, 3, 4))) static void
item_reason(struct mfs_scan_item *it, enum mfs_verdict v, const char *fmt, ...)
{
	char line[320];
	va_list ap;
	void *np;

	item_level(it, v);
	if (it->nreasons >= 64)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	np = realloc(it->reasons, (it->nreasons + 1) * sizeof(char *));
	if (!np)
		return;
	it->reasons = np;
	if ((it->reasons[it->nreasons] = mv_name_printable_dup(line)))
		it->nreasons++;
}

static void item_global(struct mfs_scan_item *it, const struct mfs_pglobal *g)
{
	struct mfs_scan_global *sg;
	void *np;

	if (it->nglobals >= 4096)
		return;
	np = realloc(it->globals, (it->nglobals + 1) * sizeof(*it->globals));
	if (!np)
		return;
	it->globals = np;
	sg = &it->globals[it->nglobals];
	sg->module = mv_name_printable_dup(g->module);
	sg->name = mv_name_printable_dup(g->name);
	if (!sg->module || !sg->name) {
		free(sg->module);
		free(sg->name);
		return;
	}
	sg->offset = g->offset;
	sg->cls = g->cls;
	it->nglobals++;
}

/* Forgets an item's findings (not its name). */
static void item_reset(struct mfs_scan_item *it)
{
	for (size_t j = 0; j < it->nglobals; j++) {
		free(it->globals[j].module);
		free(it->globals[j].name);
	}
	free(it->globals);
	for (size_t j = 0; j < it->nreasons; j++)
		free(it->reasons[j]);
	free(it->reasons);
	it->globals = NULL;
	it->reasons = NULL;
	it->nglobals = it->nreasons = 0;
	it->kind = NULL;
	it->verdict = MFS_VERDICT_NOT_PICKLE;
}

void mfs_scan_report_free(struct mfs_scan_report *r)
{
	for (size_t i = 0; r->items && i < r->nitems; i++) {
		free(r->items[i].member);
		item_reset(&r->items[i]);
	}
	free(r->items);
	r->items = NULL;
	r->nitems = 0;
}

/* --------------------------------------------------------------- pickles */

/* Options of one pickle-stream scan. */
struct pk_opts {
	uint64_t skip; /* bytes before the pickle (npy header) */
	bool lenient;  /* another format matched: a failed parse without imports is no pickle */
	bool legacy;   /* allow the legacy torch layout */
};

/* Moves the reader's findings into @it. */
static void pickle_findings(struct mfs_pickle *p, struct mfs_scan_item *it)
{
	for (uint32_t i = 0; i < p->nglobals; i++) {
		const struct mfs_pglobal *g = &p->globals[i];

		item_global(it, g);
		if (g->cls == MFS_VERDICT_UNSAFE)
			item_reason(it, MFS_VERDICT_UNSAFE,
			            "global %s.%s at offset %llu is not allowed", g->module,
			            g->name, (unsigned long long)g->offset);
		else if (g->cls == MFS_VERDICT_SUSPICIOUS)
			item_reason(
			    it, MFS_VERDICT_SUSPICIOUS,
			    "global %s.%s at offset %llu is a benign type outside the allowlist",
			    g->module, g->name, (unsigned long long)g->offset);
	}
	for (uint32_t i = 0; i < p->nreasons; i++)
		item_reason(it, p->reasons[i].level, "%s", p->reasons[i].text);
}

/* Turns the reader's failure (if any) into the verdict it implies. */
static void pickle_failure(struct scanner *sc, struct mfs_pickle *p, struct mfs_scan_item *it,
                           const struct pk_opts *o)
{
	unsigned long long off = (unsigned long long)p->fail_off;

	switch (p->fail) {
	case MFS_PK_OK: return;
	case MFS_PK_MALFORMED:
	case MFS_PK_TRUNCATED:
		if (!p->pickles && !p->seen_named_import && (!p->seen_proto || o->lenient)) {
			/* Nothing was imported before the bytes stopped parsing. */
			it->kind = it->kind ? it->kind : "data";
			return;
		}
		if (p->pickles && p->first_ops <= 1)
			item_reason(it, MFS_VERDICT_UNSAFE,
			            "offset %llu: data after the last STOP is not a pickle (%s)",
			            off, p->fail_msg);
		else
			item_reason(it, MFS_VERDICT_UNSAFE, "offset %llu: malformed pickle: %s",
			            off, p->fail_msg);
		return;
	case MFS_PK_LIMIT:
		item_reason(it, MFS_VERDICT_UNSAFE, "offset %llu: limit exceeded: %s", off,
		            p->fail_msg);
		return;
	case MFS_PK_TOOBIG:
		item_reason(it, MFS_VERDICT_UNSCANNABLE, "offset %llu: too large to scan: %s", off,
		            p->fail_msg);
		return;
	case MFS_PK_IO:
		if (p->fail_errno == -EBADMSG)
			item_reason(it, MFS_VERDICT_UNSAFE,
			            "corrupt or truncated data near offset %llu", off);
		else if (p->fail_errno == -EFBIG)
			item_reason(it, MFS_VERDICT_UNSCANNABLE,
			            "decompressed size exceeds the limit");
		else if (!sc->err)
			sc->err = p->fail_errno;
		return;
	}
}

/* Is @root the legacy torch magic number? */
static bool is_torch_magic(struct mfs_pickle *p, uint32_t root)
{
	const struct mfs_pnode *n = mfs_pickle_node(p, root);

	if (!n || n->kind != MFS_PK_LONG || n->big || !n->s)
		return false;
	if (n->text)
		return strcmp(n->s, "119547037146038801333356") == 0;
	return n->len == sizeof(torch_magic) && memcmp(n->s, torch_magic, n->len) == 0;
}

/* Collects the storage keys of BINPERSID ('storage', type, key, ...) tuples. */
static int storage_keys(struct mfs_pickle *p, char ***keys, size_t *nkeys)
{
	for (uint32_t i = 0; i < p->npersids; i++) {
		const struct mfs_pnode *pid = mfs_pickle_node(p, p->nodes[p->persids[i]].a);
		const struct mfs_pnode *k;
		void *np;

		if (!pid || pid->kind != MFS_PK_TUPLE || pid->n < 3)
			continue;
		k = mfs_pickle_node(p, pid->kids[2]);
		if (!k || k->kind != MFS_PK_STR || !k->s || k->big)
			continue;
		np = realloc(*keys, (*nkeys + 1) * sizeof(char *));
		if (!np)
			return -ENOMEM;
		*keys = np;
		if (!((*keys)[*nkeys] = strdup(k->s)))
			return -ENOMEM;
		(*nkeys)++;
	}
	return 0;
}

/*
 * Scans every pickle of @b's stream (from o->skip) into item @ii. For the
 * legacy torch layout stops after the storage-keys pickle: raw storage bytes
 * follow, and torch never unpickles them. When @keys is given, returns the
 * storage keys the pickles reference.
 */
static int scan_pickles(struct scanner *sc, const struct blob *b, size_t ii,
                        const struct pk_opts *o, char ***keys, size_t *nkeys)
{
	struct mfs_stream s;
	struct mfs_pickle p;
	uint8_t junk[4096];
	uint32_t root;
	int rc, want = 0;

	rc = blob_open(b, &s);
	if (rc)
		return rc;
	for (uint64_t left = o->skip; left;) {
		ssize_t r = mfs_stream_read(&s, junk, left < sizeof(junk) ? left : sizeof(junk));

		if (r <= 0) {
			mfs_stream_close(&s);
			item_reason(item_at(sc, ii), MFS_VERDICT_UNSAFE,
			            "truncated before its pickle");
			return 0;
		}
		left -= (uint64_t)r;
	}
	rc = mfs_pickle_init(&p, &s, NULL);
	if (rc) {
		mfs_stream_close(&s);
		return rc;
	}
	p.boff = o->skip;
	p.persid_stops = o->lenient;
	while ((rc = mfs_pickle_next(&p, &root)) == 1) {
		if (p.pickles == 1 && o->legacy && is_torch_magic(&p, root)) {
			item_at(sc, ii)->kind = "torch-legacy";
			want = 5; /* magic, protocol, sys_info, object, storage keys */
		}
		if (want && (int)p.pickles == want)
			break;
	}
	struct mfs_scan_item *it = item_at(sc, ii);

	bool no_pickle = (p.fail == MFS_PK_MALFORMED || p.fail == MFS_PK_TRUNCATED) && !p.pickles &&
	                 !p.seen_named_import && (!p.seen_proto || o->lenient);

	if (!no_pickle) {
		sc->rep->pickle = true;
		pickle_findings(&p, it);
		pickle_failure(sc, &p, it, o);
	}
	if (p.pickles && !p.fail) {
		item_level(it, MFS_VERDICT_SAFE);
		if (!it->kind || strcmp(it->kind, "data") == 0)
			it->kind = "pickle";
	} else if (p.fail && it->verdict > MFS_VERDICT_NOT_PICKLE && !it->kind) {
		it->kind = "pickle";
	}
	if (want && (int)p.pickles < want && !p.fail)
		item_reason(it, MFS_VERDICT_UNSAFE, "legacy torch file ends after %u of 5 pickles",
		            p.pickles);
	if (p.pickles && it->verdict == MFS_VERDICT_NOT_PICKLE)
		item_level(it, MFS_VERDICT_SAFE);
	rc = keys ? storage_keys(&p, keys, nkeys) : 0;
	mfs_pickle_free(&p);
	mfs_stream_close(&s);
	return rc;
}

/* ------------------------------------------------------------------ carve */

/*
 * Looks for complete pickles stored inside an unreadable container (7z
 * "copy" method): any one with a global outside the allowlist makes the file
 * unsafe. Never makes anything safe.
 */
static int carve(struct scanner *sc, const struct blob *b, size_t ii)
{
	uint8_t *buf = NULL;
	size_t len;
	ssize_t n;
	bool more;
	int found = 0, rc;

	rc = read_upto(b, CARVE_WINDOW, &buf, &len, &more);
	if (rc) {
		rc = rc == -ENOMEM ? rc : 0; /* damaged data: nothing to carve */
		goto out;
	}
	n = (ssize_t)len;
	for (ssize_t i = 0; i + 2 < n && found < CARVE_MAX; i++) {
		struct mfs_membuf mb = {buf + i, (size_t)(n - i)};
		struct mfs_stream ms;
		struct mfs_pickle p;
		uint32_t root;

		if (!mfs_sniff_proto(buf + i, (size_t)(n - i)) || buf[i + 1] < 2)
			continue;
		found++;
		mfs_stream_raw(&ms, mfs_mem_pread, &mb, 0, mb.len);
		if (mfs_pickle_init(&p, &ms, NULL)) {
			rc = -ENOMEM;
			goto out;
		}
		p.boff = (uint64_t)i;
		if (mfs_pickle_next(&p, &root) == 1) {
			bool bad = false;

			for (uint32_t g = 0; g < p.nglobals; g++)
				bad |= p.globals[g].cls == MFS_VERDICT_UNSAFE;
			if (bad) {
				item_reason(item_at(sc, ii), MFS_VERDICT_UNSAFE,
				            "embedded pickle at offset %zd", i);
				pickle_findings(&p, item_at(sc, ii));
			}
		}
		mfs_pickle_free(&p);
	}
out:
	free(buf);
	return rc;
}

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

static int scan_npy(struct scanner *sc, const struct blob *b, size_t ii)
{
	struct mfs_npy_info ni;
	uint8_t *buf = NULL;
	size_t n, want = 4096;
	bool more;
	int rc;

	item_at(sc, ii)->kind = "npy";
	rc = read_upto(b, want, &buf, &n, &more);
	/* a header longer than the first read: read exactly what it declares */
	if (!rc && n >= 12 && mfs_npy_parse(buf, n, &ni) && more) {
		uint64_t hl = buf[6] == 1
		                  ? 10u + (buf[8] | (uint64_t)buf[9] << 8)
		                  : 12u + (buf[8] | (uint64_t)buf[9] << 8 |
		                           (uint64_t)buf[10] << 16 | (uint64_t)buf[11] << 24);

		if (hl > want && hl <= NPY_MAX_HEADER) {
			free(buf);
			rc = read_upto(b, (size_t)hl, &buf, &n, &more);
		}
	}
	if (rc == -ENOMEM)
		goto out;
	if (rc) {
		rc = 0;
		item_reason(item_at(sc, ii), MFS_VERDICT_UNSAFE, "unreadable npy data");
		goto out;
	}
	if (mfs_npy_parse(buf, (size_t)n, &ni)) {
		/* numpy would refuse it; still look for a pickle after the magic */
		item_reason(item_at(sc, ii), MFS_VERDICT_UNSAFE, "malformed npy header");
		goto out;
	}
	if (!ni.object) {
		item_level(item_at(sc, ii), MFS_VERDICT_SAFE);
		goto out;
	}
	item_at(sc, ii)->kind = "npy-object";
	struct pk_opts o = {.skip = ni.data_off};

	rc = scan_pickles(sc, b, ii, &o, NULL, NULL);
	if (!rc && item_at(sc, ii)->verdict == MFS_VERDICT_NOT_PICKLE)
		item_reason(item_at(sc, ii), MFS_VERDICT_UNSAFE,
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

static int scan_keras_config(struct scanner *sc, const struct blob *b, size_t ii)
{
	uint8_t *buf = NULL;
	size_t n;
	bool more;
	int rc;

	item_at(sc, ii)->kind = "keras-config";
	rc = read_upto(b, KERAS_MAX_JSON, &buf, &n, &more);
	if (rc) {
		rc = rc == -ENOMEM ? rc : 0;
		goto out;
	}
	cJSON *j = cJSON_ParseWithLength((const char *)buf, n);

	if (has_lambda(j, 0))
		item_reason(item_at(sc, ii), MFS_VERDICT_UNSAFE,
		            "keras config holds a Lambda layer (runs code when loaded)");
	cJSON_Delete(j);
out:
	free(buf);
	return rc;
}

/* ------------------------------------------------------------------- zip */

static int scan_blob(struct scanner *sc, const struct blob *b, size_t ii, const char *prefix,
                     int depth);

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
static int scan_member(struct scanner *sc, const struct mfs_zip *z, const struct mfs_zip_entry *e,
                       const char *prefix, int depth, bool storage, bool *torch_hit, char ***keys,
                       size_t *nkeys)
{
	char *name;
	ssize_t ii;
	int rc = 0;

	if (asprintf(&name, "%s%s", prefix, e->name) < 0)
		return -ENOMEM;
	ii = item_new(sc, name, NULL);
	free(name);
	if (ii < 0)
		return (int)ii;
	if (e->hidden)
		item_reason(item_at(sc, (size_t)ii), MFS_VERDICT_SUSPICIOUS,
		            "local entry at offset %llu is not in the central directory (streaming "
		            "unzip tools extract it; torch and zipfile never see it)",
		            (unsigned long long)e->header_off);
	if (e->mismatch)
		item_reason(item_at(sc, (size_t)ii), MFS_VERDICT_UNSAFE,
		            "central directory and local header disagree: %s", e->why);
	if (e->bad_local || e->overlap) {
		if (e->bad_local)
			item_reason(item_at(sc, (size_t)ii), MFS_VERDICT_UNSAFE, "%s", e->why);
		return 0;
	}
	if (storage) {
		item_at(sc, (size_t)ii)->kind = "tensor-data";
		return 0;
	}
	if (e->method != 0 && e->method != 8) {
		item_reason(item_at(sc, (size_t)ii), MFS_VERDICT_UNSCANNABLE,
		            "compression method %u is not supported", e->method);
		return 0;
	}
	if (e->data_off > z->size || e->comp_size > z->size - e->data_off) {
		item_reason(item_at(sc, (size_t)ii), MFS_VERDICT_UNSAFE,
		            "member data runs past the end of the archive");
		return 0;
	}
	struct subrange sr = {z->rd, z->ctx, e->data_off, e->comp_size};
	struct blob b = {.z = z, .ze = e};

	if (e->method == 0) {
		b.rd = sub_pread;
		b.ctx = &sr;
		b.size = e->comp_size;
	}
	if (strcmp(e->name, "config.json") == 0)
		rc = scan_keras_config(sc, &b, (size_t)ii);
	else if (is_data_pkl(e->name) && !*torch_hit) {
		struct pk_opts o = {0};

		rc = scan_pickles(sc, &b, (size_t)ii, &o, keys, nkeys);
		*torch_hit = true;
	} else {
		rc = scan_blob(sc, &b, (size_t)ii, prefix, depth + 1);
	}
	struct mfs_scan_item *it = item_at(sc, (size_t)ii);

	/* Readers that honour the encryption bit cannot read it; torch reads it as is. */
	if ((e->flags & 1) && it->verdict == MFS_VERDICT_NOT_PICKLE) {
		it->kind = "encrypted";
		item_reason(it, MFS_VERDICT_UNSCANNABLE, "encrypted member");
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

/* Marks item @ii as two things at once (docs/scanner.md, "polyglot"). */
__attribute__((format(printf, 3, 4))) static void polyglot(struct scanner *sc, size_t ii,
                                                           const char *fmt, ...)
{
	char what[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	item_reason(item_at(sc, ii), MFS_VERDICT_SUSPICIOUS, "polyglot: %s", what);
	item_at(sc, ii)->kind = "polyglot";
	sc->rep->polyglot = true;
}

/*
 * Scans a zip archive: at the head of @b, or with @tail, one that Python's
 * zipfile would find at the end of a file that starts as something else
 * (then only a readable archive with members counts, and it is a polyglot).
 */
static int scan_zip(struct scanner *sc, const struct blob *b, size_t ii, const char *prefix,
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
		polyglot(sc, ii,
		         "a zip archive of %zu members (from offset %llu) ends the file behind a "
		         "%s head; zipfile reads it",
		         z.n, (unsigned long long)z.base,
		         item_at(sc, ii)->kind ? item_at(sc, ii)->kind : "data");
	else
		item_at(sc, ii)->kind = "zip";
	if (rc == -EBADMSG) {
		item_reason(item_at(sc, ii), MFS_VERDICT_UNSAFE, "zip: %s", z.anomaly);
		rc = 0;
		goto out;
	}
	if (rc)
		goto out;
	if (z.anomaly[0])
		item_reason(item_at(sc, ii), MFS_VERDICT_UNSAFE, "zip: %s", z.anomaly);
	/* Members of a nested archive are named "outer!inner". */
	if (asprintf(&pfx, "%s%s", depth && item_at(sc, ii)->member ? item_at(sc, ii)->member : "",
	             depth && item_at(sc, ii)->member ? "!" : "") < 0) {
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
		item_at(sc, ii)->kind = zip_kind(&z, torch);
	for (size_t i = first; i < sc->rep->nitems; i++)
		item_level(item_at(sc, ii), item_at(sc, i)->verdict);
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
static void tar_longname(const struct blob *b, uint64_t off, uint64_t len, char type, char *name)
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
static int scan_tar(struct scanner *sc, const struct blob *b, size_t ii, int depth)
{
	char longname[4096] = "", *name = NULL;
	uint8_t h[512];
	uint64_t off = 0, count = 0;
	size_t first = sc->rep->nitems;
	int rc = 0;

	item_at(sc, ii)->kind = "tar";
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
			item_reason(item_at(sc, ii), MFS_VERDICT_UNSAFE,
			            "tar: bad header at offset %llu", (unsigned long long)off);
			break;
		}
		data = off + 512;
		if (len > b->size - data) {
			item_reason(item_at(sc, ii), MFS_VERDICT_UNSAFE,
			            "tar: member at offset %llu runs past the end",
			            (unsigned long long)off);
			break;
		}
		if (++count > MFS_ZIP_MAX_ENTRIES) {
			item_reason(item_at(sc, ii), MFS_VERDICT_UNSCANNABLE,
			            "tar: too many members");
			break;
		}
		char type = (char)h[156];

		if (type == 'L' || type == 'x') {
			tar_longname(b, data, len, type, longname);
		} else if (type == '0' || type == '\0' || type == '7') {
			struct subrange sr = {b->rd, b->ctx, data, len};
			struct blob mb = {.rd = sub_pread, .ctx = &sr, .size = len};
			ssize_t mi;

			if (asprintf(&name, "%s%s%.*s%s%.*s",
			             depth && item_at(sc, ii)->member ? item_at(sc, ii)->member
			                                              : "",
			             depth && item_at(sc, ii)->member ? "!" : "",
			             longname[0] || !h[345] ? 0 : 155, (char *)h + 345,
			             longname[0] || !h[345] ? "" : "/", longname[0] ? 4095 : 100,
			             longname[0] ? longname : (char *)h) < 0)
				return -ENOMEM;
			/* h's name fields may lack a NUL: the precisions bound them */
			mi = item_new(sc, name, NULL);
			free(name);
			if (mi < 0)
				return (int)mi;
			rc = scan_blob(sc, &mb, (size_t)mi, "", depth + 1);
			if (rc)
				return rc;
			longname[0] = 0;
		} else {
			longname[0] = 0; /* directories, links, devices: no data to scan */
		}
		off = data + ((len + 511) & ~(uint64_t)511);
	}
	for (size_t i = first; i < sc->rep->nitems; i++)
		item_level(item_at(sc, ii), item_at(sc, i)->verdict);
	return rc;
}

/*
 * A zip or tar inside a compressed member needs random access: inflate it
 * into memory when small enough.
 */
static int scan_nested(struct scanner *sc, const struct blob *b, size_t ii, const char *prefix,
                       int depth, bool tar)
{
	struct mfs_membuf mb;
	struct blob mbb;
	uint8_t *buf = NULL;
	size_t n;
	bool more;
	int rc;

	if (b->rd && !b->zlib)
		return tar ? scan_tar(sc, b, ii, depth) : scan_zip(sc, b, ii, prefix, depth, false);
	rc = read_upto(b, NESTED_INMEM, &buf, &n, &more);
	if (rc == -ENOMEM)
		return rc;
	if (rc) {
		item_reason(item_at(sc, ii),
		            rc == -EFBIG ? MFS_VERDICT_UNSCANNABLE : MFS_VERDICT_UNSAFE,
		            "corrupt compressed data");
		rc = 0;
	} else if (more) {
		item_reason(item_at(sc, ii), MFS_VERDICT_UNSCANNABLE,
		            "compressed nested archive larger than %llu bytes",
		            (unsigned long long)NESTED_INMEM);
	} else {
		mb = (struct mfs_membuf){buf, n};
		mbb = (struct blob){.rd = mfs_mem_pread, .ctx = &mb, .size = (uint64_t)n};
		rc = tar ? scan_tar(sc, &mbb, ii, depth)
		         : scan_zip(sc, &mbb, ii, prefix, depth, false);
	}
	free(buf);
	return rc;
}

/* --------------------------------------------------------------- routing */

static bool zlib_header(const uint8_t *h, size_t n)
{
	if (n >= 3 && h[0] == 0x1f && h[1] == 0x8b && h[2] == 8)
		return true; /* gzip */
	return n >= 2 && (h[0] & 0x0f) == 8 && (h[0] >> 4) <= 7 && ((h[0] << 8) | h[1]) % 31 == 0 &&
	       !(h[1] & 0x20);
}

static bool zip_head(const uint8_t *h, size_t n)
{
	return n >= 4 && (memcmp(h, "PK\3\4", 4) == 0 || memcmp(h, "PK\5\6", 4) == 0);
}

static bool tar_head(const uint8_t *h, size_t n)
{
	return n >= 512 && memcmp(h + 257, "ustar", 5) == 0 && mfs_tar_header_ok(h);
}

/* bzip2, xz, lz4 frame, zstd: compressions this scanner cannot look into. */
static bool other_compression(const uint8_t *h, size_t n)
{
	return (n >= 3 && memcmp(h, "BZh", 3) == 0) ||
	       (n >= 6 && memcmp(h,
	                         "\xfd"
	                         "7zXZ\0",
	                         6) == 0) ||
	       (n >= 4 && memcmp(h, "\x04\x22\x4d\x18", 4) == 0) ||
	       (n >= 4 && memcmp(h, "\x28\xb5\x2f\xfd", 4) == 0);
}

/* Reads the first bytes of @b. */
static ssize_t sniff(const struct blob *b, uint8_t *h, size_t n)
{
	struct mfs_stream s;
	ssize_t r;
	int rc = blob_open(b, &s);

	if (rc)
		return rc;
	r = mfs_stream_read_full(&s, h, n);
	mfs_stream_close(&s);
	return r;
}

/* Returns 1 when @b is not a zlib/gzip stream after all (scan it as plain bytes). */
static int scan_compressed(struct scanner *sc, const struct blob *b, size_t ii, const char *prefix,
                           int depth)
{
	struct blob zb = *b;
	uint8_t h[512];
	ssize_t n;

	if (!b->rd || b->zlib) {
		item_reason(item_at(sc, ii), MFS_VERDICT_UNSCANNABLE,
		            "compressed data inside compressed data");
		return 0;
	}
	zb.zlib = true;
	n = sniff(&zb, h, sizeof(h));
	if (n < 0)
		return 1;
	item_at(sc, ii)->kind = "compressed";
	if (n >= 6 && memcmp(h, "\x93NUMPY", 6) == 0)
		return scan_npy(sc, &zb, ii);
	if (zip_head(h, (size_t)n) && !memcmp(h, "PK\3\4", 4))
		return scan_nested(sc, &zb, ii, prefix, depth, false);
	if (tar_head(h, (size_t)n))
		return scan_nested(sc, &zb, ii, prefix, depth, true);
	struct pk_opts o = {.legacy = true};
	int rc = scan_pickles(sc, &zb, ii, &o, NULL, NULL);

	if (!rc && item_at(sc, ii)->verdict == MFS_VERDICT_NOT_PICKLE)
		item_at(sc, ii)->kind = "compressed";
	return rc;
}

/*
 * A container recognised by its first bytes. Returns 1 when the head names
 * no container, 0 or -errno when it was scanned as one.
 */
static int scan_container(struct scanner *sc, const struct blob *b, size_t ii, const char *prefix,
                          int depth, const uint8_t *h, size_t n)
{
	bool archive = zip_head(h, n) || tar_head(h, n);

	if (archive && depth >= MAX_DEPTH) {
		item_reason(item_at(sc, ii), MFS_VERDICT_UNSCANNABLE,
		            "archives nested deeper than %d", MAX_DEPTH);
		return 0;
	}
	if (zip_head(h, n))
		return scan_nested(sc, b, ii, prefix, depth, false);
	if (n >= 6 && memcmp(h, "\x93NUMPY", 6) == 0)
		return scan_npy(sc, b, ii);
	if (tar_head(h, n))
		return scan_nested(sc, b, ii, prefix, depth, true);
	if (n >= 6 && memcmp(h, "7z\xbc\xaf\x27\x1c", 6) == 0) {
		item_at(sc, ii)->kind = "7z";
		item_reason(item_at(sc, ii), MFS_VERDICT_UNSCANNABLE,
		            "7z archives are not scanned");
		return carve(sc, b, ii);
	}
	if (other_compression(h, n)) {
		item_at(sc, ii)->kind = "compressed";
		item_reason(item_at(sc, ii), MFS_VERDICT_UNSCANNABLE,
		            "compressed with an unsupported method (bzip2, xz, lz4 or zstd)");
		return 0;
	}
	if (!mfs_sniff_proto(h, n) && zlib_header(h, n))
		return scan_compressed(sc, b, ii, prefix, depth);
	return 1;
}

/* Would scan_container() take these first bytes? */
static bool container_head(const uint8_t *h, size_t n)
{
	return zip_head(h, n) || tar_head(h, n) || (n >= 6 && memcmp(h, "\x93NUMPY", 6) == 0) ||
	       (n >= 6 && memcmp(h, "7z\xbc\xaf\x27\x1c", 6) == 0) || other_compression(h, n) ||
	       (!mfs_sniff_proto(h, n) && zlib_header(h, n));
}

/*
 * The strict format of @b for the polyglot test: the whole file's (computed
 * once by mfs_scan), a random-access member's, or for a compressed member a
 * guess from its head (such members cannot be read out of order).
 */
static int blob_format(struct scanner *sc, const struct blob *b, size_t ii, const uint8_t *h,
                       size_t n, enum mfs_format *f)
{
	if (ii == 0) {
		*f = sc->top;
		return 0;
	}
	if (b->rd && !b->zlib)
		return mfs_format_strict(b->rd, b->ctx, b->size, f);
	*f = MFS_FMT_UNKNOWN;
	if (n >= 4 && memcmp(h, "GGUF", 4) == 0)
		*f = MFS_FMT_GGUF;
	else if (n >= 9 && h[8] == '{')
		*f = MFS_FMT_SAFETENSORS;
	return 0;
}

/* The format a file's first bytes claim (magic number or header shape), if any. */
static const char *looks_like(const uint8_t *h, size_t n)
{
	uint64_t hl = 0;

	if (n >= 4 && memcmp(h, "GGUF", 4) == 0)
		return "gguf";
	for (size_t i = 0; n >= 9 && i < 8; i++)
		hl |= (uint64_t)h[i] << (8 * i);
	if (n >= 9 && h[8] == '{' && hl >= 2 && hl <= (100u << 20))
		return "safetensors";
	return NULL;
}

/* Formats a pickle can hide behind: a file both one of these and a pickle is a polyglot. */
static bool carrier_format(enum mfs_format f)
{
	return f == MFS_FMT_SAFETENSORS || f == MFS_FMT_GGUF || f == MFS_FMT_ONNX ||
	       f == MFS_FMT_NPY || f == MFS_FMT_ZIP || f == MFS_FMT_JSON;
}

/*
 * Pickle-ness first (issue #11): would pickle.load act on @b from byte 0,
 * reaching an import or a STOP before its first invalid opcode, whatever
 * container its first bytes also start? The findings go to item @ii;
 * *@acts tells.
 */
static int byte0_pickle(struct scanner *sc, const struct blob *b, size_t ii, bool *acts)
{
	struct pk_opts o = {.lenient = true};
	const char *kind = item_at(sc, ii)->kind;
	enum mfs_verdict before = item_at(sc, ii)->verdict;
	int rc = scan_pickles(sc, b, ii, &o, NULL, NULL);

	*acts = item_at(sc, ii)->verdict > before;
	item_at(sc, ii)->kind = kind;
	return rc;
}

/* Bytes no container claims: a pickle stream (several, or legacy torch), or data. */
static int scan_plain(struct scanner *sc, const struct blob *b, size_t ii, const uint8_t *h,
                      size_t n)
{
	struct pk_opts o = {.legacy = true};
	enum mfs_format f;
	int rc = blob_format(sc, b, ii, h, n, &f);

	if (rc)
		return rc;
	/* A valid header whose bytes fail as opcodes before any import is no pickle. */
	o.lenient = carrier_format(f);
	if (f == MFS_FMT_SAFETENSORS || f == MFS_FMT_GGUF || f == MFS_FMT_ONNX)
		item_at(sc, ii)->kind = mfs_format_name(f);
	rc = scan_pickles(sc, b, ii, &o, NULL, NULL);
	if (rc || item_at(sc, ii)->verdict == MFS_VERDICT_NOT_PICKLE)
		return rc;
	if (o.lenient)
		polyglot(sc, ii, "a valid %s file that pickle.load also runs from byte 0",
		         mfs_format_name(f));
	else if (looks_like(h, n))
		polyglot(sc, ii,
		         "starts like a %s file (not a valid one) and pickle.load runs it "
		         "from byte 0",
		         looks_like(h, n));
	return 0;
}

static int scan_blob(struct scanner *sc, const struct blob *b, size_t ii, const char *prefix,
                     int depth)
{
	uint8_t h[SNIFF];
	ssize_t n = sniff(b, h, sizeof(h));
	bool acts = false;
	int rc;

	if (n < 0) {
		if (n == -EBADMSG || n == -EFBIG || n == -ENOMEM) {
			item_reason(item_at(sc, ii),
			            n == -EBADMSG ? MFS_VERDICT_UNSAFE : MFS_VERDICT_UNSCANNABLE,
			            "unreadable data (%s)", strerror((int)-n));
			return 0;
		}
		return (int)n;
	}
	if (n == 0) {
		item_at(sc, ii)->kind = "empty";
		return 0;
	}
	if (!container_head(h, (size_t)n)) {
		rc = scan_plain(sc, b, ii, h, (size_t)n);
		goto tail;
	}
	/* Pickle-ness never short-circuits: a container head is checked as opcodes too. */
	rc = byte0_pickle(sc, b, ii, &acts);
	if (!rc)
		rc = scan_container(sc, b, ii, prefix, depth, h, (size_t)n);
	if (rc == 1) {
		/* not a zlib stream after all: redo the byte-0 findings with the plain rules */
		item_reset(item_at(sc, ii));
		rc = scan_plain(sc, b, ii, h, (size_t)n);
	} else if (!rc && acts) {
		polyglot(sc, ii, "a %s that pickle.load also runs from byte 0",
		         item_at(sc, ii)->kind ? item_at(sc, ii)->kind : "container");
	}
tail:
	/* An archive zipfile finds from the end, behind any other head. */
	if (!rc && !zip_head(h, (size_t)n) && b->rd && !b->zlib && depth < MAX_DEPTH)
		rc = scan_zip(sc, b, ii, prefix, depth, true);
	return rc;
}

int mfs_scan(mfs_pread_fn rd, void *ctx, uint64_t size, struct mfs_scan_report *out)
{
	struct scanner sc = {.rep = out};
	struct blob b = {.rd = rd, .ctx = ctx, .size = size};
	ssize_t ii;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = mfs_format_strict(rd, ctx, size, &sc.top);
	if (rc)
		return rc;
	ii = item_new(&sc, NULL, NULL);
	if (ii < 0)
		return (int)ii;
	rc = scan_blob(&sc, &b, 0, "", 0);
	if (!rc)
		rc = sc.err;
	if (rc) {
		mfs_scan_report_free(out);
		return rc;
	}
	/* The file's verdict is the most severe of its members'. */
	for (size_t i = 1; i < out->nitems; i++)
		item_level(&out->items[0], out->items[i].verdict);
	for (size_t i = 0; i < out->nitems; i++)
		if (!out->items[i].kind)
			out->items[i].kind =
			    out->items[i].verdict == MFS_VERDICT_NOT_PICKLE ? "data" : "pickle";
	out->strict = sc.top;
	/* Shown only when nothing would be unpickled and nothing is in doubt. */
	out->format =
	    out->pickle || out->items[0].verdict > MFS_VERDICT_SAFE ? MFS_FMT_PICKLE : sc.top;
	return 0;
}
