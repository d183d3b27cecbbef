// SPDX-License-Identifier: Apache-2.0
/*
 * pickle_lit.c - the pickle opcodes that decode literals: strings and bytes
 * (length-prefixed, or protocol-0 lines with their escapes) and numbers
 * (protocol-0 text, binary integers, LONG1/LONG4, floats).
 *
 * Separate from the machine (pickle.c) because it is pure decoding: none of
 * these opcodes can import or call anything, so none makes a finding; they
 * only push value nodes, with large payloads skipped and kept as offsets.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fmt_internal.h"

/* ---------------------------------------------------------------- strings */

/* Reads a length-prefixed payload of @n bytes into a STR/BYTES node. */
static int pk_payload(struct mfs_pickle *p, uint8_t kind, uint64_t n, uint64_t off)
{
	uint32_t id = 0;
	int rc;

	/*
	 * A length past the end of a file is truncation, not a huge value:
	 * nothing can be loaded from it. Random binary data often claims such
	 * lengths, and must not be taken for an oversized pickle.
	 */
	if (p->src->kind == MFS_STREAM_RAW && n > (p->src->end - p->src->off) + (p->blen - p->bpos))
		return mfs_pk_set_fail(p, MFS_PK_TRUNCATED,
		                       "string of %llu bytes runs past the end",
		                       (unsigned long long)n);
	if (n > p->lim->max_len)
		return mfs_pk_set_fail(p, MFS_PK_TOOBIG, "string of %llu bytes exceeds the limit",
		                       (unsigned long long)n);
	if ((rc = mfs_pk_new(p, kind, off, &id)))
		return rc;
	p->nodes[id].off = p->boff + p->bpos;
	p->nodes[id].len = n;
	if (n <= PK_INLINE) {
		if ((rc = mfs_pk_need(p, (size_t)n)))
			return rc;
		if ((rc = mfs_pk_setstr(p, id, p->buf + p->bpos, (size_t)n)))
			return rc;
		p->bpos += (size_t)n;
	} else {
		p->nodes[id].big = true;
		if ((rc = mfs_pk_skip(p, n)))
			return rc;
	}
	return mfs_pk_push(p, id);
}

/* Appends code point @cp as UTF-8 to @out at *@o (room for 4 bytes assumed). */
static void put_utf8(char *out, size_t *o, uint32_t cp)
{
	if (cp < 0x80) {
		out[(*o)++] = (char)cp;
	} else if (cp < 0x800) {
		out[(*o)++] = (char)(0xc0 | (cp >> 6));
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		out[(*o)++] = (char)(0xe0 | (cp >> 12));
		out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	} else {
		out[(*o)++] = (char)(0xf0 | (cp >> 18));
		out[(*o)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
		out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	}
}

/*
 * Decodes Python's string-escape (STRING opcode) of @in into @out, which has
 * room for @len bytes. Returns the decoded length or -1 on a bad escape.
 */
static ssize_t escape_decode(const char *in, size_t len, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		if (in[i] != '\\') {
			out[o++] = in[i];
			continue;
		}
		if (++i == len)
			return -1; /* trailing backslash */
		char c = in[i];

		switch (c) {
		case '\n': break;
		case '\\': out[o++] = '\\'; break;
		case '\'': out[o++] = '\''; break;
		case '"': out[o++] = '"'; break;
		case 'a': out[o++] = '\a'; break;
		case 'b': out[o++] = '\b'; break;
		case 'f': out[o++] = '\f'; break;
		case 'n': out[o++] = '\n'; break;
		case 'r': out[o++] = '\r'; break;
		case 't': out[o++] = '\t'; break;
		case 'v': out[o++] = '\v'; break;
		case 'x':
			if (i + 2 >= len || mv_hex_digit(in[i + 1]) < 0 ||
			    mv_hex_digit(in[i + 2]) < 0)
				return -1;
			out[o++] = (char)(mv_hex_digit(in[i + 1]) * 16 + mv_hex_digit(in[i + 2]));
			i += 2;
			break;
		default:
			if (c >= '0' && c <= '7') {
				int v = c - '0';

				for (int k = 0;
				     k < 2 && i + 1 < len && in[i + 1] >= '0' && in[i + 1] <= '7';
				     k++)
					v = v * 8 + (in[++i] - '0');
				out[o++] = (char)v;
			} else {
				out[o++] = '\\';
				out[o++] = c;
			}
		}
	}
	return (ssize_t)o;
}

/*
 * Decodes raw-unicode-escape (UNICODE opcode): \uXXXX and \UXXXXXXXX escapes,
 * every other byte is Latin-1. @out needs room for 2 * @len bytes.
 */
static ssize_t rawuni_decode(const unsigned char *in, size_t len, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		if (in[i] == '\\' && i + 1 < len && (in[i + 1] == 'u' || in[i + 1] == 'U')) {
			unsigned nd = in[i + 1] == 'u' ? 4 : 8;
			uint32_t cp = 0;

			if (i + 1 + nd >= len)
				return -1;
			for (unsigned k = 0; k < nd; k++) {
				int h = mv_hex_digit(in[i + 2 + k]);

				if (h < 0)
					return -1;
				cp = cp * 16 + (uint32_t)h;
			}
			if (cp > 0x10ffff)
				return -1;
			put_utf8(out, &o, cp);
			i += 1 + nd;
		} else {
			put_utf8(out, &o, in[i]);
		}
	}
	return (ssize_t)o;
}

/*
 * Pushes a string decoded from a protocol-0 line: @dl bytes of @tmp, or
 * fails with @bad_escape when decoding did (@dl < 0). Frees @tmp.
 */
static int push_decoded(struct mfs_pickle *p, uint64_t off, char *tmp, ssize_t dl,
                        const char *bad_escape)
{
	uint32_t id = 0;
	int rc;

	if (dl < 0) {
		free(tmp);
		return mfs_pk_set_fail(p, MFS_PK_MALFORMED, "%s", bad_escape);
	}
	rc = mfs_pk_new(p, MFS_PK_STR, off, &id);
	if (!rc)
		rc = mfs_pk_setstr(p, id, tmp, (size_t)dl);
	free(tmp);
	return rc ? rc : mfs_pk_push(p, id);
}

/* STRING: a quoted, escaped line. */
int mfs_pk_op_string(struct mfs_pickle *p, uint64_t off)
{
	const char *l;
	size_t n;
	char *tmp;
	int rc = mfs_pk_line(p, &l, &n);

	if (rc)
		return rc;
	if (n < 2 || l[0] != l[n - 1] || (l[0] != '\'' && l[0] != '"'))
		return mfs_pk_set_fail(p, MFS_PK_MALFORMED, "STRING argument must be quoted");
	tmp = malloc(n);
	if (!tmp)
		return mfs_pk_set_fail(p, MFS_PK_TOOBIG, "out of memory");
	return push_decoded(p, off, tmp, escape_decode(l + 1, n - 2, tmp), "bad escape in STRING");
}

/* UNICODE: a raw-unicode-escape line. */
int mfs_pk_op_unicode(struct mfs_pickle *p, uint64_t off)
{
	const char *l;
	size_t n;
	char *tmp;
	int rc = mfs_pk_line(p, &l, &n);

	if (rc)
		return rc;
	tmp = malloc(2 * n + 4);
	if (!tmp)
		return mfs_pk_set_fail(p, MFS_PK_TOOBIG, "out of memory");
	return push_decoded(p, off, tmp, rawuni_decode((const unsigned char *)l, n, tmp),
	                    "bad escape in UNICODE");
}

/* --------------------------------------------------------------- numbers */

/* Parses a protocol-0 integer line (Python's int(s, 0) subset). */
int mfs_pk_parse_int_line(const char *l, size_t n, int64_t *v, bool *big)
{
	char *end;
	size_t i = 0;

	*big = false;
	while (i < n && (l[i] == ' ' || l[i] == '\t'))
		i++;
	if (i == n)
		return -1;
	errno = 0;
	long long x = strtoll(l + i, &end, 0);

	if (end == l + i)
		return -1;
	while (*end == ' ' || *end == '\t' || *end == '\r')
		end++;
	if (*end)
		return -1;
	if (errno == ERANGE) {
		*big = true;
		return 0;
	}
	*v = x;
	return 0;
}

int mfs_pk_op_int(struct mfs_pickle *p, uint64_t off, bool is_long)
{
	const char *l;
	size_t n;
	uint32_t id = 0;
	int64_t v = 0;
	bool big;
	int rc = mfs_pk_line(p, &l, &n);

	if (rc)
		return rc;
	if (is_long && n && l[n - 1] == 'L')
		n--;
	char tmp[PK_MAXLINE + 1];

	memcpy(tmp, l, n);
	tmp[n] = 0;
	if (!is_long && (strcmp(tmp, "00") == 0 || strcmp(tmp, "01") == 0)) {
		if ((rc = mfs_pk_new(p, MFS_PK_BOOL, off, &id)))
			return rc;
		p->nodes[id].i = tmp[1] == '1';
		return mfs_pk_push(p, id);
	}
	if (mfs_pk_parse_int_line(tmp, n, &v, &big))
		return mfs_pk_set_fail(p, MFS_PK_MALFORMED, "bad integer literal");
	if ((rc = mfs_pk_new(p, big ? MFS_PK_LONG : MFS_PK_INT, off, &id)))
		return rc;
	p->nodes[id].i = v;
	if (big) {
		p->nodes[id].text = true;
		if ((rc = mfs_pk_setstr(p, id, tmp, n)))
			return rc;
	}
	return mfs_pk_push(p, id);
}

int mfs_pk_op_float(struct mfs_pickle *p, uint64_t off)
{
	const char *l;
	size_t n;
	uint32_t id = 0;
	char *end;
	int rc = mfs_pk_line(p, &l, &n);

	if (rc)
		return rc;
	double d = strtod(l, &end);

	while (*end == ' ' || *end == '\t' || *end == '\r')
		end++;
	if (end == l || *end)
		return mfs_pk_set_fail(p, MFS_PK_MALFORMED, "bad float literal");
	if ((rc = mfs_pk_new(p, MFS_PK_FLOAT, off, &id)))
		return rc;
	p->nodes[id].f = d;
	return mfs_pk_push(p, id);
}

int mfs_pk_push_int(struct mfs_pickle *p, int64_t v, uint64_t off)
{
	uint32_t id = 0;
	int rc = mfs_pk_new(p, MFS_PK_INT, off, &id);

	if (rc)
		return rc;
	p->nodes[id].i = v;
	return mfs_pk_push(p, id);
}

/* LONG1/LONG4: little-endian two's complement of @n bytes. */
int mfs_pk_op_long_bin(struct mfs_pickle *p, uint64_t n, uint64_t off)
{
	uint32_t id = 0;
	int rc;

	if (n <= 8) {
		uint64_t u;

		if ((rc = mfs_pk_le(p, (unsigned)n, &u)))
			return rc;
		if (n && n < 8 && (u >> (8 * n - 1)) & 1)
			u |= ~0ull << (8 * n); /* sign-extend */
		return mfs_pk_push_int(p, (int64_t)u, off);
	}
	if ((rc = pk_payload(p, MFS_PK_LONG, n, off)))
		return rc;
	id = p->stack[p->sp - 1];
	p->nodes[id].kind = MFS_PK_LONG;
	return 0;
}

/* ----------------------------------------------------- binary literals */

/* Length-prefixed string/bytes opcodes. */
int mfs_pk_op_sized(struct mfs_pickle *p, uint8_t kind, unsigned lenbytes, bool is_signed,
                    uint64_t off)
{
	uint64_t n;
	int rc = mfs_pk_le(p, lenbytes, &n);

	if (rc)
		return rc;
	if (is_signed && (n & 0x80000000u))
		return mfs_pk_set_fail(p, MFS_PK_MALFORMED, "negative byte count");
	return pk_payload(p, kind, n, off);
}

int mfs_pk_op_binfloat(struct mfs_pickle *p, uint64_t off)
{
	uint64_t be = 0;
	uint32_t id = 0;
	double d;
	int rc = mfs_pk_need(p, 8);

	if (rc)
		return rc;
	for (int i = 0; i < 8; i++)
		be = be << 8 | p->buf[p->bpos + i];
	p->bpos += 8;
	memcpy(&d, &be, sizeof(d));
	if ((rc = mfs_pk_new(p, MFS_PK_FLOAT, off, &id)))
		return rc;
	p->nodes[id].f = d;
	return mfs_pk_push(p, id);
}
