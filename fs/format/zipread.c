// SPDX-License-Identifier: Apache-2.0
/*
 * zipread.c - byte streams and a zip reader for the scanner.
 *
 * The zip reader follows torch's loader (miniz): it reads the end of central
 * directory (zip64 too), takes each member's name, sizes and method from the
 * central directory and finds the data through the member's local header.
 * Flag bits (encryption, data descriptor, ...) and CRCs are ignored, as torch
 * ignores them. A local header whose name, method or sizes disagree with the
 * central directory marks the member: scanners have been bypassed by such
 * archives, which different readers interpret differently.
 *
 * Deflated members are inflated with zlib: np.savez_compressed deflates its
 * members (docs/scanner.md).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmt_internal.h"

#define IN_CHUNK (1u << 16)

/* ---------------------------------------------------------------- streams */

ssize_t mfs_mem_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
	const struct mfs_membuf *m = ctx;

	if (off >= m->len)
		return 0;
	if (len > m->len - off)
		len = (size_t)(m->len - off);
	memcpy(buf, m->data + off, len);
	return (ssize_t)len;
}

void mfs_stream_raw(struct mfs_stream *s, mfs_pread_fn rd, void *ctx, uint64_t off, uint64_t len)
{
	memset(s, 0, sizeof(*s));
	s->kind = MFS_STREAM_RAW;
	s->rd = rd;
	s->ctx = ctx;
	s->off = off;
	s->end = len > UINT64_MAX - off ? UINT64_MAX : off + len;
}

int mfs_stream_inflate(struct mfs_stream *s, mfs_pread_fn rd, void *ctx, uint64_t off, uint64_t len,
                       bool zlib, uint64_t out_limit)
{
	mfs_stream_raw(s, rd, ctx, off, len);
	s->kind = zlib ? MFS_STREAM_ZLIB : MFS_STREAM_INFLATE;
	s->out_limit = out_limit;
	s->in = malloc(IN_CHUNK);
	if (!s->in)
		return -ENOMEM;
	/* -15: raw deflate; 15 + 32: zlib or gzip header, auto-detected. */
	if (inflateInit2(&s->z, zlib ? 15 + 32 : -15) != Z_OK) {
		free(s->in);
		s->in = NULL;
		return -ENOMEM;
	}
	s->z_init = true;
	return 0;
}

void mfs_stream_close(struct mfs_stream *s)
{
	if (s->z_init)
		inflateEnd(&s->z);
	s->z_init = false;
	free(s->in);
	s->in = NULL;
}

/* Reads raw input bytes; 0 at the end of the range. */
static ssize_t raw_read(struct mfs_stream *s, void *buf, size_t len)
{
	ssize_t r;

	if (s->off >= s->end)
		return 0;
	if (len > s->end - s->off)
		len = (size_t)(s->end - s->off);
	r = s->rd(s->ctx, buf, len, s->off);
	if (r < 0)
		return r;
	if (r == 0)
		return -EBADMSG; /* the range runs past the end of the file */
	s->off += (uint64_t)r;
	return r;
}

static ssize_t inflate_read(struct mfs_stream *s, void *buf, size_t len)
{
	if (s->z_end)
		return 0;
	if (s->pos >= s->out_limit)
		return -EFBIG;
	if (len > s->out_limit - s->pos)
		len = (size_t)(s->out_limit - s->pos);
	s->z.next_out = buf;
	s->z.avail_out = (uInt)(len > (1u << 30) ? (1u << 30) : len);
	uInt want = s->z.avail_out;

	while (s->z.avail_out == want) {
		if (!s->z.avail_in) {
			ssize_t r = raw_read(s, s->in, IN_CHUNK);

			if (r < 0)
				return r;
			if (r == 0)
				return -EBADMSG; /* input ended before the stream did */
			s->z.next_in = s->in;
			s->z.avail_in = (uInt)r;
		}
		int zr = inflate(&s->z, Z_NO_FLUSH);

		if (zr == Z_STREAM_END) {
			s->z_end = true;
			break;
		}
		if (zr != Z_OK && zr != Z_BUF_ERROR)
			return -EBADMSG;
		if (zr == Z_BUF_ERROR && s->z.avail_in)
			return -EBADMSG;
	}
	return (ssize_t)(want - s->z.avail_out);
}

ssize_t mfs_stream_read(struct mfs_stream *s, void *buf, size_t len)
{
	ssize_t r;

	if (s->err)
		return s->err;
	if (!len)
		return 0;
	r = s->kind == MFS_STREAM_RAW ? raw_read(s, buf, len) : inflate_read(s, buf, len);
	if (r < 0) {
		s->err = (int)r;
		return r;
	}
	s->pos += (uint64_t)r;
	return r;
}

ssize_t mfs_stream_read_full(struct mfs_stream *s, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t r = mfs_stream_read(s, (uint8_t *)buf + got, len - got);

		if (r < 0)
			return r;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/* -------------------------------------------------------------------- zip */

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* Reads exactly @len bytes at @off; -EBADMSG when the file is shorter. */
static int zread(const struct mfs_zip *z, void *buf, size_t len, uint64_t off)
{
	ssize_t r;

	if (off > z->size || len > z->size - off)
		return -EBADMSG;
	r = mfs_read_at(z->rd, z->ctx, buf, len, off);
	if (r < 0)
		return (int)r;
	return (size_t)r == len ? 0 : -EBADMSG;
}

__attribute__((format(printf, 2, 3))) static int zanomaly(struct mfs_zip *z, const char *fmt, ...)
{
	va_list ap;

	if (!z->anomaly[0]) {
		va_start(ap, fmt);
		vsnprintf(z->anomaly, sizeof(z->anomaly), fmt, ap);
		va_end(ap);
	}
	return -EBADMSG;
}

struct cd_loc {
	uint64_t off, size, count;
	uint64_t eocd; /* file offset of the end of central directory record */
};

/*
 * Where the central directory really starts. Python's zipfile takes the
 * distance between where the end record says the directory is and where it
 * actually ends ("concat") as data prepended to the archive, and shifts
 * every offset by it; torch's miniz does not. So a zip appended to another
 * file is readable by zipfile (a polyglot: MFS_ZIP_TAIL mode shifts as
 * zipfile does), and an archive at the head of a file whose offsets need a
 * shift is read differently by the two (an anomaly).
 */
static int place_cd(struct mfs_zip *z, struct cd_loc *cd)
{
	uint64_t rec = z->zip64 ? 56 + 20 : 0, end;

	if (__builtin_add_overflow(cd->off, cd->size, &end) ||
	    __builtin_add_overflow(end, rec, &end) || end > cd->eocd) {
		if (z->tail)
			return zanomaly(z, "central directory overlaps its end record");
		return 0; /* reported below as lying outside the file, or read as miniz does */
	}
	z->base = cd->eocd - end;
	if (!z->base)
		return 0;
	if (!z->tail) {
		zanomaly(z,
		         "the central directory is %llu bytes from where its end record puts "
		         "it (zip readers disagree)",
		         (unsigned long long)z->base);
		z->base = 0;
		return 0;
	}
	cd->off += z->base;
	return 0;
}

/* Finds the end of central directory record (and its zip64 twin). */
static int find_eocd(struct mfs_zip *z, struct cd_loc *cd)
{
	uint64_t tail = z->size < 65557 ? z->size : 65557;
	uint64_t base = z->size - tail;
	uint8_t *buf;
	int rc;
	ssize_t at = -1;

	if (z->size < 22)
		return zanomaly(z, "too short for a zip");
	buf = malloc((size_t)tail);
	if (!buf)
		return -ENOMEM;
	rc = zread(z, buf, (size_t)tail, base);
	if (rc)
		goto out;
	for (ssize_t i = (ssize_t)tail - 22; i >= 0; i--) {
		if (le32(buf + i) == 0x06054b50 && (uint64_t)i + 22 + le16(buf + i + 20) <= tail) {
			at = i;
			break;
		}
	}
	if (at < 0) {
		rc = zanomaly(z, "no end of central directory record");
		goto out;
	}
	cd->eocd = base + (uint64_t)at;
	cd->count = le16(buf + at + 10);
	cd->size = le32(buf + at + 12);
	cd->off = le32(buf + at + 16);
	if (le16(buf + at + 4) != 0 || le16(buf + at + 6) != 0) {
		rc = zanomaly(z, "multi-disk zip archives are not supported");
		goto out;
	}
	/* A zip64 locator sits right before the record. */
	if (at >= 20 && le32(buf + at - 20) == 0x07064b50) {
		uint8_t e64[56];
		/* zipfile reads the zip64 record right before its locator; miniz where it says */
		uint64_t off64 = le64(buf + at - 20 + 8);

		if (z->tail && base + (uint64_t)at < 76) {
			rc = zanomaly(z, "bad zip64 end of central directory");
			goto out;
		}
		if (z->tail)
			off64 = base + (uint64_t)at - 76;

		rc = zread(z, e64, sizeof(e64), off64);
		if (rc || le32(e64) != 0x06064b50) {
			rc = zanomaly(z, "bad zip64 end of central directory");
			goto out;
		}
		z->zip64 = true;
		cd->count = le64(e64 + 32);
		cd->size = le64(e64 + 40);
		cd->off = le64(e64 + 48);
	} else if (cd->count == 0xffff || cd->size == 0xffffffffu || cd->off == 0xffffffffu) {
		rc = zanomaly(z, "zip64 archive without a zip64 locator");
		goto out;
	}
	rc = place_cd(z, cd);
	if (rc)
		goto out;
	if (cd->off > z->size || cd->size > z->size - cd->off)
		rc = zanomaly(z, "central directory lies outside the file");
	else if (cd->size > MFS_ZIP_MAX_CD || cd->count > MFS_ZIP_MAX_ENTRIES)
		rc = zanomaly(z, "central directory too large");
out:
	free(buf);
	return rc;
}

/* Applies a zip64 extra field (id 1) to the sizes and offset set to ~0. */
static void zip64_extra(const uint8_t *ex, size_t exlen, uint64_t *uncomp, uint64_t *comp,
                        uint64_t *off)
{
	size_t i = 0;

	while (i + 4 <= exlen) {
		uint16_t id = le16(ex + i), sz = le16(ex + i + 2);
		const uint8_t *d = ex + i + 4;
		size_t k = 0;

		if (i + 4 + sz > exlen)
			return;
		if (id == 1) {
			if (*uncomp == 0xffffffffu && k + 8 <= sz) {
				*uncomp = le64(d + k);
				k += 8;
			}
			if (*comp == 0xffffffffu && k + 8 <= sz) {
				*comp = le64(d + k);
				k += 8;
			}
			if (off && *off == 0xffffffffu && k + 8 <= sz)
				*off = le64(d + k);
			return;
		}
		i += 4 + (size_t)sz;
	}
}

/* Reads entry @e's local header and compares it with the central directory. */
static int read_local(struct mfs_zip *z, struct mfs_zip_entry *e)
{
	uint8_t h[30];
	uint16_t nlen, xlen;
	uint8_t *var;
	int rc = zread(z, h, sizeof(h), e->header_off);

	if (rc == -EBADMSG || (!rc && le32(h) != 0x04034b50)) {
		e->bad_local = true;
		snprintf(e->why, sizeof(e->why), "no local header at offset %llu",
		         (unsigned long long)e->header_off);
		return 0;
	}
	if (rc)
		return rc;
	nlen = le16(h + 26);
	xlen = le16(h + 28);
	e->local_method = le16(h + 8);
	e->local_comp = le32(h + 18);
	e->local_uncomp = le32(h + 22);
	var = malloc((size_t)nlen + xlen + 1);
	if (!var)
		return -ENOMEM;
	rc = zread(z, var, (size_t)nlen + xlen, e->header_off + 30);
	if (rc == -EBADMSG) {
		free(var);
		e->bad_local = true;
		snprintf(e->why, sizeof(e->why), "local header runs past the end of the file");
		return 0;
	}
	if (rc) {
		free(var);
		return rc;
	}
	zip64_extra(var + nlen, xlen, &e->local_uncomp, &e->local_comp, NULL);
	e->local_name = strndup((char *)var, nlen);
	free(var);
	if (!e->local_name)
		return -ENOMEM;
	e->data_off = e->header_off + 30 + nlen + xlen;
	if (strlen(e->local_name) != nlen || strcmp(e->local_name, e->name) != 0) {
		e->mismatch = true;
		snprintf(e->why, sizeof(e->why), "local header names it '%.60s'", e->local_name);
	} else if (e->local_method != e->method) {
		e->mismatch = true;
		snprintf(e->why, sizeof(e->why), "local header says method %u, directory %u",
		         e->local_method, e->method);
	} else if ((e->local_comp && e->local_comp != e->comp_size) ||
	           (e->local_uncomp && e->local_uncomp != e->uncomp_size)) {
		/* zero sizes: the writer used a data descriptor, as torch does */
		e->mismatch = true;
		snprintf(e->why, sizeof(e->why), "local header sizes differ from the directory");
	}
	return 0;
}

/* Parses one central directory record at @p (with @left bytes left). */
static int parse_cd_entry(struct mfs_zip *z, const uint8_t *p, size_t left, size_t *used)
{
	struct mfs_zip_entry *e = &z->e[z->n];
	uint16_t nlen, xlen, clen;

	if (left < 46 || le32(p) != 0x02014b50)
		return zanomaly(z, "central directory entry %zu is malformed", z->n);
	nlen = le16(p + 28);
	xlen = le16(p + 30);
	clen = le16(p + 32);
	if ((size_t)46 + nlen + xlen + clen > left)
		return zanomaly(z, "central directory entry %zu is truncated", z->n);
	memset(e, 0, sizeof(*e));
	e->flags = le16(p + 8);
	e->method = le16(p + 10);
	e->comp_size = le32(p + 20);
	e->uncomp_size = le32(p + 24);
	e->header_off = le32(p + 42);
	zip64_extra(p + 46 + nlen, xlen, &e->uncomp_size, &e->comp_size, &e->header_off);
	if (e->header_off > UINT64_MAX - z->base)
		return zanomaly(z, "central directory entry %zu has an impossible offset", z->n);
	e->header_off += z->base;
	e->name = strndup((const char *)p + 46, nlen);
	if (!e->name)
		return -ENOMEM;
	z->n++;
	if (strlen(e->name) != nlen) {
		e->mismatch = true;
		snprintf(e->why, sizeof(e->why), "member name contains a NUL byte");
	}
	*used = (size_t)46 + nlen + xlen + clen;
	return 0;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct mfs_zip_entry *x = *(const struct mfs_zip_entry *const *)a;
	const struct mfs_zip_entry *y = *(const struct mfs_zip_entry *const *)b;
	int c = strcmp(x->name, y->name);

	return c ? c : (x < y ? -1 : x > y);
}

static int offset_cmp(const void *a, const void *b)
{
	const struct mfs_zip_entry *x = *(const struct mfs_zip_entry *const *)a;
	const struct mfs_zip_entry *y = *(const struct mfs_zip_entry *const *)b;

	if (x->header_off != y->header_off)
		return x->header_off < y->header_off ? -1 : 1;
	return x < y ? -1 : x > y;
}

/*
 * Flags members whose data overlaps another member's: no writer does that,
 * and it multiplies the work of a scan (a "zip bomb" of shared data).
 */
static void flag_overlaps(struct mfs_zip *z, struct mfs_zip_entry **v)
{
	uint64_t end = 0;

	qsort(v, z->n, sizeof(*v), offset_cmp);
	for (size_t i = 0; i < z->n; i++) {
		struct mfs_zip_entry *e = v[i];

		if (e->bad_local)
			continue;
		if (i && e->header_off < end) {
			e->overlap = true;
			if (!e->mismatch) {
				e->mismatch = true;
				snprintf(e->why, sizeof(e->why), "data overlaps another member");
			}
		}
		if (e->data_off + e->comp_size > end && e->comp_size <= z->size)
			end = e->data_off + e->comp_size;
	}
}

/* Flags members whose names repeat: readers disagree on which one wins. */
static int flag_duplicates(struct mfs_zip *z)
{
	struct mfs_zip_entry **v;

	if (z->n < 2)
		return 0;
	v = malloc(z->n * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < z->n; i++)
		v[i] = &z->e[i];
	qsort(v, z->n, sizeof(*v), entry_cmp);
	for (size_t i = 1; i < z->n; i++) {
		if (strcmp(v[i - 1]->name, v[i]->name) != 0 || v[i]->mismatch)
			continue;
		v[i]->mismatch = true;
		snprintf(v[i]->why, sizeof(v[i]->why), "duplicate member name");
	}
	flag_overlaps(z, v);
	free(v);
	return 0;
}

/* ------------------------------------------------- local entries not in the CD */

struct span {
	uint64_t from, to;
};

static int span_cmp(const void *a, const void *b)
{
	const struct span *x = a, *y = b;

	return x->from < y->from ? -1 : x->from > y->from;
}

/*
 * Records a local header at @off that no central directory entry names.
 * Its sizes come from the local header alone, as a streaming reader takes
 * them. *@next: where the search goes on (after its data when known).
 */
static int add_hidden(struct mfs_zip *z, uint64_t off, uint64_t *next)
{
	struct mfs_zip_entry *e;
	void *np;
	int rc;

	*next = off + 4;
	if (z->nhidden >= MFS_ZIP_MAX_HIDDEN)
		return 0;
	np = realloc(z->hidden, (z->nhidden + 1) * sizeof(*z->hidden));
	if (!np)
		return -ENOMEM;
	z->hidden = np;
	e = &z->hidden[z->nhidden];
	memset(e, 0, sizeof(*e));
	e->header_off = off;
	e->hidden = true;
	e->name = strdup("");
	if (!e->name)
		return -ENOMEM;
	z->nhidden++;
	rc = read_local(z, e);
	if (rc || e->bad_local)
		return rc;
	/* what a streaming reader does: trust the local header */
	free(e->name);
	e->name = strdup(e->local_name);
	if (!e->name)
		return -ENOMEM;
	e->mismatch = false;
	e->why[0] = 0;
	e->method = e->local_method;
	e->comp_size = e->local_comp;
	e->uncomp_size = e->local_uncomp;
	if (e->data_off <= z->size && e->comp_size <= z->size - e->data_off)
		*next = e->data_off + e->comp_size;
	return 0;
}

/* Searches [@from, @to) for local header signatures, in chunks. */
static int search_gap(struct mfs_zip *z, uint64_t from, uint64_t to)
{
	uint8_t buf[IN_CHUNK + 3];
	uint64_t at = from;

	while (at + 4 <= to) {
		size_t n = to - at < sizeof(buf) ? (size_t)(to - at) : sizeof(buf);
		uint64_t next = 0;
		int rc = zread(z, buf, n, at);

		if (rc)
			return rc == -EBADMSG ? 0 : rc;
		for (size_t i = 0; i + 4 <= n; i++) {
			if (le32(buf + i) != 0x04034b50)
				continue;
			if ((rc = add_hidden(z, at + i, &next)))
				return rc;
			break;
		}
		/* overlap by 3 bytes so that a signature across chunks is seen */
		at = next ? next : at + n - 3;
		if (n < 4)
			break;
	}
	return 0;
}

/*
 * Finds local entries that the central directory does not account for: a
 * streaming unzip walks the local headers from the start and extracts them,
 * while torch and zipfile never see them. Only the bytes no listed member
 * covers are searched (the gaps), so member data never raises a false alarm.
 */
static int find_hidden(struct mfs_zip *z, uint64_t cd_off)
{
	struct span *v = malloc((z->n ? z->n : 1) * sizeof(*v));
	uint64_t at = z->base;
	size_t k = 0;
	int rc = 0;

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < z->n; i++) {
		const struct mfs_zip_entry *e = &z->e[i];

		if (e->bad_local || e->data_off > z->size || e->comp_size > z->size - e->data_off)
			continue;
		v[k++] = (struct span){e->header_off, e->data_off + e->comp_size};
	}
	qsort(v, k, sizeof(*v), span_cmp);
	for (size_t i = 0; i <= k && !rc; i++) {
		uint64_t to = i < k ? v[i].from : cd_off;

		if (to > at)
			rc = search_gap(z, at, to > z->size ? z->size : to);
		if (i < k && v[i].to > at)
			at = v[i].to;
	}
	free(v);
	return rc;
}

int mfs_zip_open(struct mfs_zip *z, mfs_pread_fn rd, void *ctx, uint64_t size)
{
	return mfs_zip_open_mode(z, rd, ctx, size, false);
}

int mfs_zip_open_mode(struct mfs_zip *z, mfs_pread_fn rd, void *ctx, uint64_t size, bool tail)
{
	struct cd_loc cd = {0};
	uint8_t *buf = NULL;
	size_t pos = 0;
	int rc;

	memset(z, 0, sizeof(*z));
	z->rd = rd;
	z->ctx = ctx;
	z->size = size;
	z->tail = tail;
	rc = find_eocd(z, &cd);
	if (rc)
		return rc;
	buf = malloc(cd.size ? (size_t)cd.size : 1);
	z->e = calloc(cd.count ? (size_t)cd.count : 1, sizeof(*z->e));
	if (!buf || !z->e) {
		rc = -ENOMEM;
		goto out;
	}
	rc = zread(z, buf, (size_t)cd.size, cd.off);
	if (rc)
		goto out;
	while (z->n < cd.count) {
		size_t used = 0;

		rc = parse_cd_entry(z, buf + pos, (size_t)cd.size - pos, &used);
		if (rc)
			goto out;
		pos += used;
	}
	if (pos != cd.size)
		zanomaly(z, "central directory holds data beyond its %llu entries",
		         (unsigned long long)cd.count);
	for (size_t i = 0; i < z->n; i++)
		if ((rc = read_local(z, &z->e[i])))
			goto out;
	rc = flag_duplicates(z);
	if (!rc)
		rc = find_hidden(z, cd.off);
out:
	free(buf);
	return rc;
}

void mfs_zip_close(struct mfs_zip *z)
{
	for (size_t i = 0; z->e && i < z->n; i++) {
		free(z->e[i].name);
		free(z->e[i].local_name);
	}
	for (size_t i = 0; z->hidden && i < z->nhidden; i++) {
		free(z->hidden[i].name);
		free(z->hidden[i].local_name);
	}
	free(z->e);
	free(z->hidden);
	z->e = z->hidden = NULL;
	z->n = z->nhidden = 0;
}

int mfs_zip_stream(const struct mfs_zip *z, size_t i, struct mfs_stream *s, uint64_t limit)
{
	return mfs_zip_entry_stream(z, &z->e[i], s, limit);
}

int mfs_zip_entry_stream(const struct mfs_zip *z, const struct mfs_zip_entry *e,
                         struct mfs_stream *s, uint64_t limit)
{
	memset(s, 0, sizeof(*s));
	if (e->bad_local)
		return -EBADMSG;
	if (e->data_off > z->size || e->comp_size > z->size - e->data_off)
		return -EBADMSG;
	if (e->method == 0) {
		mfs_stream_raw(s, z->rd, z->ctx, e->data_off, e->comp_size);
		return 0;
	}
	if (e->method == 8)
		return mfs_stream_inflate(s, z->rd, z->ctx, e->data_off, e->comp_size, false,
		                          limit);
	return -EOPNOTSUPP;
}

/* -------------------------------------------------------------------- tar */

/* Parses a tar numeric field: octal text, or GNU base-256 (high bit set). */
bool mfs_tar_num(const uint8_t *f, size_t n, uint64_t *v)
{
	size_t i = 0;

	*v = 0;
	if (f[0] & 0x80) {
		for (i = 1; i < n; i++) {
			if (*v >> 55)
				return false;
			*v = *v << 8 | f[i];
		}
		return !(f[0] & 0x7f);
	}
	while (i < n && f[i] == ' ')
		i++;
	for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
		if (*v >> 60)
			return false;
		*v = *v << 3 | (uint64_t)(f[i] - '0');
	}
	return i == n || f[i] == 0 || f[i] == ' ';
}

bool mfs_tar_header_ok(const uint8_t *h)
{
	uint64_t want, sum = 0;

	for (int i = 0; i < 512; i++)
		sum += (i >= 148 && i < 156) ? ' ' : h[i];
	return mfs_tar_num(h + 148, 8, &want) && want == sum;
}
