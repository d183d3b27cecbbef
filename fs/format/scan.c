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
 *
 * This file holds the report (its items, reasons and verdicts, and how a
 * container's verdict follows its members'), the scan of pickle streams, the
 * routing of a blob by its first bytes, and mfs_scan(). The containers that
 * hold members, zip, tar and npy, are read by scan_container.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmt_internal.h"

#define SNIFF         4096u
#define MAX_DEPTH     3
#define INFLATE_LIMIT (64ull << 30) /* most bytes a compressed member may expand to */
#define CARVE_WINDOW  (16u << 20)
#define CARVE_MAX     256

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

ssize_t mfs_scan_sub_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
	const struct mfs_subrange *s = ctx;

	if (off >= s->len)
		return 0;
	if (len > s->len - off)
		len = (size_t)(s->len - off);
	return s->rd(s->ctx, buf, len, s->base + off);
}

/* Opens @b from its first byte. */
static int blob_open(const struct mfs_blob *b, struct mfs_stream *s)
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
int mfs_scan_read_upto(const struct mfs_blob *b, size_t max, uint8_t **out, size_t *len, bool *more)
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

struct mfs_scan_item *mfs_scan_item_at(struct mfs_scanner *sc, size_t i)
{
	return &sc->rep->items[i];
}

/*
 * Member names, global names and reasons come from untrusted bytes: each is
 * stored through mv_name_printable_dup(), so that no report line can be
 * forged and the JSON report stays valid UTF-8.
 */
/* Adds an item; returns its index or -ENOMEM. */
ssize_t mfs_scan_item_new(struct mfs_scanner *sc, const char *member, const char *kind)
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

void mfs_scan_item_level(struct mfs_scan_item *it, enum mfs_verdict v)
{
	if (v > it->verdict)
		it->verdict = v;
}

/* Adds a reason line and raises the verdict to @v. */
__attribute__((format(printf, 3, 4))) void
mfs_scan_item_reason(struct mfs_scan_item *it, enum mfs_verdict v, const char *fmt, ...)
{
	char line[320];
	va_list ap;
	void *np;

	mfs_scan_item_level(it, v);
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

/* Marks item @ii as two things at once (docs/scanner.md, "polyglot"). */
__attribute__((format(printf, 3, 4))) void mfs_scan_polyglot(struct mfs_scanner *sc, size_t ii,
                                                             const char *fmt, ...)
{
	char what[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	mfs_scan_item_reason(mfs_scan_item_at(sc, ii), MFS_VERDICT_SUSPICIOUS, "polyglot: %s",
	                     what);
	mfs_scan_item_at(sc, ii)->kind = "polyglot";
	sc->rep->polyglot = true;
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

/* Moves the reader's findings into @it. */
static void pickle_findings(struct mfs_pickle *p, struct mfs_scan_item *it)
{
	for (uint32_t i = 0; i < p->nglobals; i++) {
		const struct mfs_pglobal *g = &p->globals[i];

		item_global(it, g);
		if (g->cls == MFS_VERDICT_UNSAFE)
			mfs_scan_item_reason(it, MFS_VERDICT_UNSAFE,
			                     "global %s.%s at offset %llu is not allowed",
			                     g->module, g->name, (unsigned long long)g->offset);
		else if (g->cls == MFS_VERDICT_SUSPICIOUS)
			mfs_scan_item_reason(
			    it, MFS_VERDICT_SUSPICIOUS,
			    "global %s.%s at offset %llu is a benign type outside the allowlist",
			    g->module, g->name, (unsigned long long)g->offset);
	}
	for (uint32_t i = 0; i < p->nreasons; i++)
		mfs_scan_item_reason(it, p->reasons[i].level, "%s", p->reasons[i].text);
}

/* Turns the reader's failure (if any) into the verdict it implies. */
static void pickle_failure(struct mfs_scanner *sc, struct mfs_pickle *p, struct mfs_scan_item *it,
                           const struct mfs_pk_opts *o)
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
			mfs_scan_item_reason(
			    it, MFS_VERDICT_UNSAFE,
			    "offset %llu: data after the last STOP is not a pickle (%s)", off,
			    p->fail_msg);
		else
			mfs_scan_item_reason(it, MFS_VERDICT_UNSAFE,
			                     "offset %llu: malformed pickle: %s", off, p->fail_msg);
		return;
	case MFS_PK_LIMIT:
		mfs_scan_item_reason(it, MFS_VERDICT_UNSAFE, "offset %llu: limit exceeded: %s", off,
		                     p->fail_msg);
		return;
	case MFS_PK_TOOBIG:
		mfs_scan_item_reason(it, MFS_VERDICT_UNSCANNABLE,
		                     "offset %llu: too large to scan: %s", off, p->fail_msg);
		return;
	case MFS_PK_IO:
		if (p->fail_errno == -EBADMSG)
			mfs_scan_item_reason(it, MFS_VERDICT_UNSAFE,
			                     "corrupt or truncated data near offset %llu", off);
		else if (p->fail_errno == -EFBIG)
			mfs_scan_item_reason(it, MFS_VERDICT_UNSCANNABLE,
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
int mfs_scan_pickles(struct mfs_scanner *sc, const struct mfs_blob *b, size_t ii,
                     const struct mfs_pk_opts *o, char ***keys, size_t *nkeys)
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
			mfs_scan_item_reason(mfs_scan_item_at(sc, ii), MFS_VERDICT_UNSAFE,
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
			mfs_scan_item_at(sc, ii)->kind = "torch-legacy";
			want = 5; /* magic, protocol, sys_info, object, storage keys */
		}
		if (want && (int)p.pickles == want)
			break;
	}
	struct mfs_scan_item *it = mfs_scan_item_at(sc, ii);

	bool no_pickle = (p.fail == MFS_PK_MALFORMED || p.fail == MFS_PK_TRUNCATED) && !p.pickles &&
	                 !p.seen_named_import && (!p.seen_proto || o->lenient);

	if (!no_pickle) {
		sc->rep->pickle = true;
		pickle_findings(&p, it);
		pickle_failure(sc, &p, it, o);
	}
	if (p.pickles && !p.fail) {
		mfs_scan_item_level(it, MFS_VERDICT_SAFE);
		if (!it->kind || strcmp(it->kind, "data") == 0)
			it->kind = "pickle";
	} else if (p.fail && it->verdict > MFS_VERDICT_NOT_PICKLE && !it->kind) {
		it->kind = "pickle";
	}
	if (want && (int)p.pickles < want && !p.fail)
		mfs_scan_item_reason(it, MFS_VERDICT_UNSAFE,
		                     "legacy torch file ends after %u of 5 pickles", p.pickles);
	if (p.pickles && it->verdict == MFS_VERDICT_NOT_PICKLE)
		mfs_scan_item_level(it, MFS_VERDICT_SAFE);
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
static int carve(struct mfs_scanner *sc, const struct mfs_blob *b, size_t ii)
{
	uint8_t *buf = NULL;
	size_t len;
	ssize_t n;
	bool more;
	int found = 0, rc;

	rc = mfs_scan_read_upto(b, CARVE_WINDOW, &buf, &len, &more);
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
				mfs_scan_item_reason(mfs_scan_item_at(sc, ii), MFS_VERDICT_UNSAFE,
				                     "embedded pickle at offset %zd", i);
				pickle_findings(&p, mfs_scan_item_at(sc, ii));
			}
		}
		mfs_pickle_free(&p);
	}
out:
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
static ssize_t sniff(const struct mfs_blob *b, uint8_t *h, size_t n)
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
static int scan_compressed(struct mfs_scanner *sc, const struct mfs_blob *b, size_t ii,
                           const char *prefix, int depth)
{
	struct mfs_blob zb = *b;
	uint8_t h[512];
	ssize_t n;

	if (!b->rd || b->zlib) {
		mfs_scan_item_reason(mfs_scan_item_at(sc, ii), MFS_VERDICT_UNSCANNABLE,
		                     "compressed data inside compressed data");
		return 0;
	}
	zb.zlib = true;
	n = sniff(&zb, h, sizeof(h));
	if (n < 0)
		return 1;
	mfs_scan_item_at(sc, ii)->kind = "compressed";
	if (n >= 6 && memcmp(h, "\x93NUMPY", 6) == 0)
		return mfs_scan_npy(sc, &zb, ii);
	if (zip_head(h, (size_t)n) && !memcmp(h, "PK\3\4", 4))
		return mfs_scan_nested(sc, &zb, ii, prefix, depth, false);
	if (tar_head(h, (size_t)n))
		return mfs_scan_nested(sc, &zb, ii, prefix, depth, true);
	struct mfs_pk_opts o = {.legacy = true};
	int rc = mfs_scan_pickles(sc, &zb, ii, &o, NULL, NULL);

	if (!rc && mfs_scan_item_at(sc, ii)->verdict == MFS_VERDICT_NOT_PICKLE)
		mfs_scan_item_at(sc, ii)->kind = "compressed";
	return rc;
}

/*
 * A container recognised by its first bytes. Returns 1 when the head names
 * no container, 0 or -errno when it was scanned as one.
 */
static int scan_container(struct mfs_scanner *sc, const struct mfs_blob *b, size_t ii,
                          const char *prefix, int depth, const uint8_t *h, size_t n)
{
	bool archive = zip_head(h, n) || tar_head(h, n);

	if (archive && depth >= MAX_DEPTH) {
		mfs_scan_item_reason(mfs_scan_item_at(sc, ii), MFS_VERDICT_UNSCANNABLE,
		                     "archives nested deeper than %d", MAX_DEPTH);
		return 0;
	}
	if (zip_head(h, n))
		return mfs_scan_nested(sc, b, ii, prefix, depth, false);
	if (n >= 6 && memcmp(h, "\x93NUMPY", 6) == 0)
		return mfs_scan_npy(sc, b, ii);
	if (tar_head(h, n))
		return mfs_scan_nested(sc, b, ii, prefix, depth, true);
	if (n >= 6 && memcmp(h, "7z\xbc\xaf\x27\x1c", 6) == 0) {
		mfs_scan_item_at(sc, ii)->kind = "7z";
		mfs_scan_item_reason(mfs_scan_item_at(sc, ii), MFS_VERDICT_UNSCANNABLE,
		                     "7z archives are not scanned");
		return carve(sc, b, ii);
	}
	if (other_compression(h, n)) {
		mfs_scan_item_at(sc, ii)->kind = "compressed";
		mfs_scan_item_reason(
		    mfs_scan_item_at(sc, ii), MFS_VERDICT_UNSCANNABLE,
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
static int blob_format(struct mfs_scanner *sc, const struct mfs_blob *b, size_t ii,
                       const uint8_t *h, size_t n, enum mfs_format *f)
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
static int byte0_pickle(struct mfs_scanner *sc, const struct mfs_blob *b, size_t ii, bool *acts)
{
	struct mfs_pk_opts o = {.lenient = true};
	const char *kind = mfs_scan_item_at(sc, ii)->kind;
	enum mfs_verdict before = mfs_scan_item_at(sc, ii)->verdict;
	int rc = mfs_scan_pickles(sc, b, ii, &o, NULL, NULL);

	*acts = mfs_scan_item_at(sc, ii)->verdict > before;
	mfs_scan_item_at(sc, ii)->kind = kind;
	return rc;
}

/* Bytes no container claims: a pickle stream (several, or legacy torch), or data. */
static int scan_plain(struct mfs_scanner *sc, const struct mfs_blob *b, size_t ii, const uint8_t *h,
                      size_t n)
{
	struct mfs_pk_opts o = {.legacy = true};
	enum mfs_format f;
	int rc = blob_format(sc, b, ii, h, n, &f);

	if (rc)
		return rc;
	/* A valid header whose bytes fail as opcodes before any import is no pickle. */
	o.lenient = carrier_format(f);
	if (f == MFS_FMT_SAFETENSORS || f == MFS_FMT_GGUF || f == MFS_FMT_ONNX)
		mfs_scan_item_at(sc, ii)->kind = mfs_format_name(f);
	rc = mfs_scan_pickles(sc, b, ii, &o, NULL, NULL);
	if (rc || mfs_scan_item_at(sc, ii)->verdict == MFS_VERDICT_NOT_PICKLE)
		return rc;
	if (o.lenient)
		mfs_scan_polyglot(sc, ii, "a valid %s file that pickle.load also runs from byte 0",
		                  mfs_format_name(f));
	else if (looks_like(h, n))
		mfs_scan_polyglot(sc, ii,
		                  "starts like a %s file (not a valid one) and pickle.load runs it "
		                  "from byte 0",
		                  looks_like(h, n));
	return 0;
}

int mfs_scan_blob(struct mfs_scanner *sc, const struct mfs_blob *b, size_t ii, const char *prefix,
                  int depth)
{
	uint8_t h[SNIFF];
	ssize_t n = sniff(b, h, sizeof(h));
	bool acts = false;
	int rc;

	if (n < 0) {
		if (n == -EBADMSG || n == -EFBIG || n == -ENOMEM) {
			mfs_scan_item_reason(mfs_scan_item_at(sc, ii),
			                     n == -EBADMSG ? MFS_VERDICT_UNSAFE
			                                   : MFS_VERDICT_UNSCANNABLE,
			                     "unreadable data (%s)", strerror((int)-n));
			return 0;
		}
		return (int)n;
	}
	if (n == 0) {
		mfs_scan_item_at(sc, ii)->kind = "empty";
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
		item_reset(mfs_scan_item_at(sc, ii));
		rc = scan_plain(sc, b, ii, h, (size_t)n);
	} else if (!rc && acts) {
		mfs_scan_polyglot(sc, ii, "a %s that pickle.load also runs from byte 0",
		                  mfs_scan_item_at(sc, ii)->kind ? mfs_scan_item_at(sc, ii)->kind
		                                                 : "container");
	}
tail:
	/* An archive zipfile finds from the end, behind any other head. */
	if (!rc && !zip_head(h, (size_t)n) && b->rd && !b->zlib && depth < MAX_DEPTH)
		rc = mfs_scan_zip(sc, b, ii, prefix, depth, true);
	return rc;
}

int mfs_scan(mfs_pread_fn rd, void *ctx, uint64_t size, struct mfs_scan_report *out)
{
	struct mfs_scanner sc = {.rep = out};
	struct mfs_blob b = {.rd = rd, .ctx = ctx, .size = size};
	ssize_t ii;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = mfs_format_strict(rd, ctx, size, &sc.top);
	if (rc)
		return rc;
	ii = mfs_scan_item_new(&sc, NULL, NULL);
	if (ii < 0)
		return (int)ii;
	rc = mfs_scan_blob(&sc, &b, 0, "", 0);
	if (!rc)
		rc = sc.err;
	if (rc) {
		mfs_scan_report_free(out);
		return rc;
	}
	/* The file's verdict is the most severe of its members'. */
	for (size_t i = 1; i < out->nitems; i++)
		mfs_scan_item_level(&out->items[0], out->items[i].verdict);
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
