// SPDX-License-Identifier: Apache-2.0
/*
 * pickle.c - a restricted pickle reader that never executes anything: the
 * machine.
 *
 * Every opcode of protocols 0-5 is interpreted symbolically: the stack, the
 * marks and the memo hold ids of value nodes (struct mfs_pnode), so that
 * STACK_GLOBAL can be resolved through memo gets and string ops, BINPERSID
 * arguments can be checked, and the transcoder can walk the object graph.
 * Nothing is imported or called: a "call" is a node that records the callable
 * and its arguments.
 *
 * The input is a sequential stream read through a 64 KiB window; large
 * string/bytes payloads are skipped and only their offset and length kept,
 * so memory stays bounded by the limits, not by the file size.
 *
 * This file holds the machine itself: the input window, the value graph,
 * the stack, marks and memo, the container opcodes, the dispatcher and the
 * API. The opcodes that decode literals are in pickle_lit.c, those that
 * import, call and build objects (where findings are made) in pickle_obj.c,
 * and the allowlist of globals in pickle_allow.c.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmt_internal.h"

#define PK_BUF (1u << 16) /* input window */

const struct mfs_pickle_limits mfs_pickle_default_limits = {
    .max_ops = 64u << 20,
    .max_memo = 1u << 20,
    .max_stack = 1u << 20,
    .max_marks = 4096,
    .max_len = 1ull << 40,
    .max_expansion = 512ull << 20,
    .max_globals = 65536,
};

/* ------------------------------------------------------------------ memo */

/* Open addressing map from memo key to node id (0 = empty slot). */
struct mfs_pmemo {
	uint64_t *keys;
	uint32_t *vals;
	size_t cap, n;
};

static void memo_free(struct mfs_pmemo *m)
{
	if (!m)
		return;
	free(m->keys);
	free(m->vals);
	free(m);
}

static size_t memo_slot(const struct mfs_pmemo *m, uint64_t key)
{
	uint64_t h = key * 0x9e3779b97f4a7c15ull;
	size_t i = (size_t)(h >> 7) & (m->cap - 1);

	while (m->vals[i] && m->keys[i] != key)
		i = (i + 1) & (m->cap - 1);
	return i;
}

/* Returns the node id stored under @key, or 0. */
static uint32_t memo_get(const struct mfs_pmemo *m, uint64_t key)
{
	if (!m->cap)
		return 0;
	return m->vals[memo_slot(m, key)];
}

/* Grows the table to @cap slots (a power of two). */
static int memo_grow(struct mfs_pmemo *m, size_t cap)
{
	struct mfs_pmemo nm = {.cap = cap};

	nm.keys = calloc(cap, sizeof(*nm.keys));
	nm.vals = calloc(cap, sizeof(*nm.vals));
	if (!nm.keys || !nm.vals) {
		free(nm.keys);
		free(nm.vals);
		return -ENOMEM;
	}
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->vals[i])
			continue;
		size_t j = memo_slot(&nm, m->keys[i]);

		nm.keys[j] = m->keys[i];
		nm.vals[j] = m->vals[i];
		nm.n++;
	}
	free(m->keys);
	free(m->vals);
	*m = nm;
	return 0;
}

/* ---------------------------------------------------------------- errors */

/* Records the first failure; returns -EBADMSG. */
__attribute__((format(printf, 3, 4))) int
mfs_pk_set_fail(struct mfs_pickle *p, enum mfs_pk_fail kind, const char *fmt, ...)
{
	va_list ap;

	if (p->fail)
		return -EBADMSG;
	p->fail = kind;
	p->fail_off = p->boff + p->bpos;
	va_start(ap, fmt);
	vsnprintf(p->fail_msg, sizeof(p->fail_msg), fmt, ap);
	va_end(ap);
	return -EBADMSG;
}

void mfs_pickle_add_reason(struct mfs_pickle *p, enum mfs_verdict level, const char *fmt, ...)
{
	char line[256];
	va_list ap;

	/* A flood of findings says nothing more than the first few. */
	if (p->nreasons >= 64)
		return;
	if (p->nreasons == p->capreasons) {
		uint32_t cap = p->capreasons ? 2 * p->capreasons : 8;
		void *np = realloc(p->reasons, cap * sizeof(*p->reasons));

		if (!np)
			return;
		p->reasons = np;
		p->capreasons = cap;
	}
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	char *t = strdup(line);

	if (!t)
		return;
	p->reasons[p->nreasons].level = level;
	p->reasons[p->nreasons].text = t;
	p->nreasons++;
}

/* ----------------------------------------------------------------- input */

/*
 * Makes @n bytes available at buf[bpos]. @n is at most PK_BUF. At the end of
 * the stream, fails as truncated.
 */
int mfs_pk_need(struct mfs_pickle *p, size_t n)
{
	if (p->blen - p->bpos >= n)
		return 0;
	if (p->bpos) {
		memmove(p->buf, p->buf + p->bpos, p->blen - p->bpos);
		p->boff += p->bpos;
		p->blen -= p->bpos;
		p->bpos = 0;
	}
	while (p->blen < n) {
		ssize_t r = mfs_stream_read(p->src, p->buf + p->blen, PK_BUF - p->blen);

		if (r < 0) {
			p->fail_errno = (int)r;
			return mfs_pk_set_fail(p, MFS_PK_IO, "read error: %s", strerror((int)-r));
		}
		if (r == 0)
			return mfs_pk_set_fail(p, MFS_PK_TRUNCATED, "stream ends inside a pickle");
		p->blen += (size_t)r;
	}
	return 0;
}

uint64_t mfs_pickle_offset(const struct mfs_pickle *p)
{
	return p->boff + p->bpos;
}

bool mfs_pickle_at_eof(struct mfs_pickle *p)
{
	if (p->bpos < p->blen)
		return false;
	p->boff += p->bpos;
	p->bpos = p->blen = 0;
	ssize_t r = mfs_stream_read(p->src, p->buf, PK_BUF);

	if (r <= 0) {
		if (r < 0)
			p->fail_errno = (int)r;
		return r == 0;
	}
	p->blen = (size_t)r;
	return false;
}

/* Skips @n payload bytes that are not kept. */
int mfs_pk_skip(struct mfs_pickle *p, uint64_t n)
{
	while (n) {
		size_t have = p->blen - p->bpos;

		if (!have) {
			int rc = mfs_pk_need(p, 1);

			if (rc)
				return rc;
			continue;
		}
		size_t k = have < n ? have : (size_t)n;

		p->bpos += k;
		n -= k;
	}
	return 0;
}

/*
 * Reads a protocol-0 argument line (without its '\n') into a NUL-terminated
 * buffer at *@line. Lines longer than PK_MAXLINE are malformed.
 */
int mfs_pk_line(struct mfs_pickle *p, const char **line, size_t *len)
{
	size_t i = 0;

	for (;;) {
		int rc = mfs_pk_need(p, i + 1);

		if (rc)
			return rc;
		if (p->buf[p->bpos + i] == '\n')
			break;
		if (++i > PK_MAXLINE)
			return mfs_pk_set_fail(p, MFS_PK_MALFORMED, "argument line too long");
	}
	p->buf[p->bpos + i] = 0; /* the '\n' is consumed: NUL-terminate in place */
	*line = (const char *)p->buf + p->bpos;
	*len = i;
	p->bpos += i + 1;
	return 0;
}

static int pk_u8(struct mfs_pickle *p, uint64_t *v)
{
	int rc = mfs_pk_need(p, 1);

	if (rc)
		return rc;
	*v = p->buf[p->bpos++];
	return 0;
}

/* Little-endian unsigned integer of @n bytes (n <= 8). */
int mfs_pk_le(struct mfs_pickle *p, unsigned n, uint64_t *v)
{
	int rc = mfs_pk_need(p, n);

	if (rc)
		return rc;
	*v = 0;
	for (unsigned i = 0; i < n; i++)
		*v |= (uint64_t)p->buf[p->bpos + i] << (8 * i);
	p->bpos += n;
	return 0;
}

/* ----------------------------------------------------------------- graph */

int mfs_pk_charge(struct mfs_pickle *p, uint64_t bytes)
{
	if (bytes > p->lim->max_expansion - p->expansion)
		return mfs_pk_set_fail(p, MFS_PK_TOOBIG, "value graph exceeds %llu bytes",
		                       (unsigned long long)p->lim->max_expansion);
	p->expansion += bytes;
	return 0;
}

/* Creates a node of @kind at the current opcode; returns its id in *@id. */
int mfs_pk_new(struct mfs_pickle *p, uint8_t kind, uint64_t off, uint32_t *id)
{
	int rc = mfs_pk_charge(p, sizeof(struct mfs_pnode));

	if (rc)
		return rc;
	if (p->nnodes == p->capnodes) {
		uint32_t cap = p->capnodes * 2;
		void *np;

		if (cap <= p->capnodes)
			return mfs_pk_set_fail(p, MFS_PK_TOOBIG, "too many values");
		np = realloc(p->nodes, (size_t)cap * sizeof(*p->nodes));
		if (!np)
			return mfs_pk_set_fail(p, MFS_PK_TOOBIG, "out of memory");
		p->nodes = np;
		p->capnodes = cap;
	}
	*id = p->nnodes++;
	memset(&p->nodes[*id], 0, sizeof(struct mfs_pnode));
	p->nodes[*id].kind = kind;
	p->nodes[*id].off = off;
	return 0;
}

const struct mfs_pnode *mfs_pickle_node(const struct mfs_pickle *p, uint32_t id)
{
	if (!id || id >= p->nnodes)
		return NULL;
	return &p->nodes[id];
}

/* Appends @kid to node @id's children. */
int mfs_pk_kid(struct mfs_pickle *p, uint32_t id, uint32_t kid)
{
	struct mfs_pnode *n = &p->nodes[id];

	if (n->n == n->cap) {
		uint32_t cap = n->cap ? 2 * n->cap : 4;
		void *np;
		int rc;

		if (cap <= n->cap)
			return mfs_pk_set_fail(p, MFS_PK_TOOBIG, "container too large");
		rc = mfs_pk_charge(p, (uint64_t)(cap - n->cap) * sizeof(uint32_t));
		if (rc)
			return rc;
		np = realloc(n->kids, (size_t)cap * sizeof(uint32_t));
		if (!np)
			return mfs_pk_set_fail(p, MFS_PK_TOOBIG, "out of memory");
		n->kids = np;
		n->cap = cap;
	}
	n->kids[n->n++] = kid;
	return 0;
}

/* Gives node @id a copy of @s (@len bytes, NUL-terminated). */
int mfs_pk_setstr(struct mfs_pickle *p, uint32_t id, const void *s, size_t len)
{
	char *c;
	int rc = mfs_pk_charge(p, len + 1);

	if (rc)
		return rc;
	c = malloc(len + 1);
	if (!c)
		return mfs_pk_set_fail(p, MFS_PK_TOOBIG, "out of memory");
	memcpy(c, s, len);
	c[len] = 0;
	p->nodes[id].s = c;
	p->nodes[id].len = len;
	return 0;
}

/* ----------------------------------------------------------------- stack */

static uint32_t pk_base(const struct mfs_pickle *p)
{
	return p->nmarks ? p->marks[p->nmarks - 1] : 0;
}

/*
 * Appends @v to the array *@arr of *@n items in *@cap slots, doubling it
 * (from @first slots) while it holds fewer than @max items; @what names the
 * array in the limit's message. 0, or the reader's failure.
 */
static int pk_append(struct mfs_pickle *p, uint32_t **arr, uint32_t *n, uint32_t *cap,
                     uint32_t first, uint32_t max, const char *what, uint32_t v)
{
	if (*n == *cap) {
		uint32_t c = *cap ? 2 * *cap : first;
		void *np;

		if (*n >= max)
			return mfs_pk_set_fail(p, MFS_PK_LIMIT, "%s deeper than %u", what, max);
		np = realloc(*arr, (size_t)c * sizeof(uint32_t));
		if (!np)
			return mfs_pk_set_fail(p, MFS_PK_TOOBIG, "out of memory");
		*arr = np;
		*cap = c;
	}
	(*arr)[(*n)++] = v;
	return 0;
}

int mfs_pk_push(struct mfs_pickle *p, uint32_t id)
{
	return pk_append(p, &p->stack, &p->sp, &p->capstack, 64, p->lim->max_stack, "stack", id);
}

int mfs_pk_pop(struct mfs_pickle *p, uint32_t *id)
{
	if (p->sp <= pk_base(p))
		return mfs_pk_set_fail(p, MFS_PK_MALFORMED, "stack underflow");
	*id = p->stack[--p->sp];
	return 0;
}

int mfs_pk_top(struct mfs_pickle *p, uint32_t *id)
{
	if (p->sp <= pk_base(p))
		return mfs_pk_set_fail(p, MFS_PK_MALFORMED, "stack underflow");
	*id = p->stack[p->sp - 1];
	return 0;
}

/* Pops the topmost mark; the items above it are stack[*base .. sp). */
int mfs_pk_popmark(struct mfs_pickle *p, uint32_t *base)
{
	if (!p->nmarks)
		return mfs_pk_set_fail(p, MFS_PK_MALFORMED, "no MARK on the stack");
	*base = p->marks[--p->nmarks];
	return 0;
}

static int pk_mark(struct mfs_pickle *p)
{
	return pk_append(p, &p->marks, &p->nmarks, &p->capmarks, 16, p->lim->max_marks,
	                 "MARKs nested", p->sp);
}

/* Makes a container node of @kind from the items above the topmost mark. */
static int pk_collect(struct mfs_pickle *p, uint8_t kind, uint64_t off)
{
	uint32_t base = 0, id = 0;
	int rc = mfs_pk_popmark(p, &base);

	if (rc || (rc = mfs_pk_new(p, kind, off, &id)))
		return rc;
	for (uint32_t i = base; i < p->sp; i++)
		if ((rc = mfs_pk_kid(p, id, p->stack[i])))
			return rc;
	if (kind == MFS_PK_DICT && (p->sp - base) % 2)
		return mfs_pk_set_fail(p, MFS_PK_MALFORMED, "odd number of items for DICT");
	p->sp = base;
	return mfs_pk_push(p, id);
}

/* Makes a tuple of the top @n items. */
static int pk_tuple_n(struct mfs_pickle *p, uint32_t n, uint64_t off)
{
	uint32_t id = 0;
	int rc;

	if (p->sp - pk_base(p) < n)
		return mfs_pk_set_fail(p, MFS_PK_MALFORMED, "stack underflow");
	if ((rc = mfs_pk_new(p, MFS_PK_TUPLE, off, &id)))
		return rc;
	for (uint32_t i = p->sp - n; i < p->sp; i++)
		if ((rc = mfs_pk_kid(p, id, p->stack[i])))
			return rc;
	p->sp -= n;
	return mfs_pk_push(p, id);
}

/* ------------------------------------------------------------- memo ops */

static int memo_put(struct mfs_pickle *p, uint64_t key, uint32_t id)
{
	struct mfs_pmemo *m = p->memo;
	size_t i;

	if (m->cap == 0 || (m->n + 1) * 2 > m->cap) {
		if (m->n >= p->lim->max_memo)
			return mfs_pk_set_fail(p, MFS_PK_LIMIT, "more than %u memo entries",
			                       p->lim->max_memo);
		if (memo_grow(m, m->cap ? 2 * m->cap : 64))
			return mfs_pk_set_fail(p, MFS_PK_TOOBIG, "out of memory");
	}
	i = memo_slot(m, key);
	if (!m->vals[i])
		m->n++;
	m->keys[i] = key;
	m->vals[i] = id;
	return 0;
}

static int op_put(struct mfs_pickle *p, uint64_t key)
{
	uint32_t id = 0;
	int rc = mfs_pk_top(p, &id);

	return rc ? rc : memo_put(p, key, id);
}

static int op_get(struct mfs_pickle *p, uint64_t key)
{
	uint32_t id = memo_get(p->memo, key);

	if (!id)
		return mfs_pk_set_fail(p, MFS_PK_MALFORMED, "memo key %llu was never stored",
		                       (unsigned long long)key);
	return mfs_pk_push(p, id);
}

/* Protocol-0 memo key line. */
static int line_key(struct mfs_pickle *p, uint64_t *key)
{
	const char *l;
	size_t n;
	int64_t v;
	bool big;
	int rc = mfs_pk_line(p, &l, &n);

	if (rc)
		return rc;
	if (mfs_pk_parse_int_line(l, n, &v, &big) || big || v < 0)
		return mfs_pk_set_fail(p, MFS_PK_MALFORMED, "bad memo key");
	*key = (uint64_t)v;
	return 0;
}

/* ------------------------------------------------------------ containers */

/* May APPEND/SETITEM/ADDITEMS target node @id? */
static bool can_hold(const struct mfs_pickle *p, uint32_t id, uint8_t want)
{
	uint8_t k = p->nodes[id].kind;

	return k == want || k == MFS_PK_CALL || k == MFS_PK_OBJ || k == MFS_PK_PERSID;
}

/* APPEND(S), SETITEM(S), ADDITEMS: move items into the target below. */
static int op_fill(struct mfs_pickle *p, uint8_t want, bool marked, uint32_t pairs)
{
	uint32_t base = 0, target;
	int rc;

	if (marked) {
		if ((rc = mfs_pk_popmark(p, &base)))
			return rc;
	} else {
		if (p->sp - pk_base(p) < pairs)
			return mfs_pk_set_fail(p, MFS_PK_MALFORMED, "stack underflow");
		base = p->sp - pairs;
	}
	if (base <= pk_base(p))
		return mfs_pk_set_fail(p, MFS_PK_MALFORMED, "no container below the items");
	target = p->stack[base - 1];
	if (!can_hold(p, target, want))
		return mfs_pk_set_fail(p, MFS_PK_MALFORMED,
		                       "items added to a value of the wrong type");
	if (want == MFS_PK_DICT && (p->sp - base) % 2)
		return mfs_pk_set_fail(p, MFS_PK_MALFORMED, "odd number of items for SETITEMS");
	for (uint32_t i = base; i < p->sp; i++)
		if ((rc = mfs_pk_kid(p, target, p->stack[i])))
			return rc;
	p->sp = base;
	return 0;
}

static int push_kind(struct mfs_pickle *p, uint8_t kind, int64_t v, uint64_t off)
{
	uint32_t id = 0;
	int rc = mfs_pk_new(p, kind, off, &id);

	if (rc)
		return rc;
	p->nodes[id].i = v;
	return mfs_pk_push(p, id);
}

/* ---------------------------------------------------------- dispatcher */

/* Executes one opcode symbolically. Returns 1 after STOP, 0, or <0. */
static int pk_step(struct mfs_pickle *p, uint32_t *root)
{
	uint64_t off = p->boff + p->bpos, v = 0;
	uint32_t id = 0, id2 = 0;
	int rc;
	uint8_t op;

	if ((rc = mfs_pk_need(p, 1)))
		return rc;
	op = p->buf[p->bpos++];
	if (++p->ops > p->lim->max_ops)
		return mfs_pk_set_fail(p, MFS_PK_TOOBIG, "more than %llu opcodes",
		                       (unsigned long long)p->lim->max_ops);
	p->first_ops++;
	switch (op) {
	case 0x80: /* PROTO */
		if ((rc = pk_u8(p, &v)))
			return rc;
		if (v > 5)
			return mfs_pk_set_fail(p, MFS_PK_MALFORMED, "unsupported protocol %llu",
			                       (unsigned long long)v);
		if (p->first_ops == 1 && !p->pickles)
			p->seen_proto = true;
		return 0;
	case 0x95: /* FRAME: a buffering hint */ return mfs_pk_le(p, 8, &v);
	case '.': /* STOP */
		if ((rc = mfs_pk_pop(p, &id)))
			return rc;
		*root = id;
		return 1;
	case '(': return pk_mark(p);
	case '0': /* POP: an item, or a mark when the top frame is empty */
		if (p->sp > pk_base(p)) {
			p->sp--;
			return 0;
		}
		return mfs_pk_popmark(p, &id);
	case '1': /* POP_MARK */
		if ((rc = mfs_pk_popmark(p, &id)))
			return rc;
		p->sp = id;
		return 0;
	case '2': /* DUP */ return (rc = mfs_pk_top(p, &id)) ? rc : mfs_pk_push(p, id);
	case 'N': return push_kind(p, MFS_PK_NONE, 0, off);
	case 0x88: return push_kind(p, MFS_PK_BOOL, 1, off);
	case 0x89: return push_kind(p, MFS_PK_BOOL, 0, off);
	case 'I': return mfs_pk_op_int(p, off, false);
	case 'L': return mfs_pk_op_int(p, off, true);
	case 'F': return mfs_pk_op_float(p, off);
	case 'G': return mfs_pk_op_binfloat(p, off);
	case 'J':
		if ((rc = mfs_pk_le(p, 4, &v)))
			return rc;
		return mfs_pk_push_int(p, (int32_t)(uint32_t)v, off);
	case 'K': return (rc = mfs_pk_le(p, 1, &v)) ? rc : mfs_pk_push_int(p, (int64_t)v, off);
	case 'M': return (rc = mfs_pk_le(p, 2, &v)) ? rc : mfs_pk_push_int(p, (int64_t)v, off);
	case 0x8a: /* LONG1 */ return (rc = pk_u8(p, &v)) ? rc : mfs_pk_op_long_bin(p, v, off);
	case 0x8b: /* LONG4 */
		if ((rc = mfs_pk_le(p, 4, &v)))
			return rc;
		if (v & 0x80000000u)
			return mfs_pk_set_fail(p, MFS_PK_MALFORMED,
			                       "LONG4 with a negative byte count");
		return mfs_pk_op_long_bin(p, v, off);
	case 'S': return mfs_pk_op_string(p, off);
	case 'V': return mfs_pk_op_unicode(p, off);
	case 'T': return mfs_pk_op_sized(p, MFS_PK_STR, 4, true, off);
	case 'U': return mfs_pk_op_sized(p, MFS_PK_STR, 1, false, off);
	case 'X': return mfs_pk_op_sized(p, MFS_PK_STR, 4, false, off);
	case 0x8c: return mfs_pk_op_sized(p, MFS_PK_STR, 1, false, off);
	case 0x8d: return mfs_pk_op_sized(p, MFS_PK_STR, 8, false, off);
	case 'B': return mfs_pk_op_sized(p, MFS_PK_BYTES, 4, false, off);
	case 'C': return mfs_pk_op_sized(p, MFS_PK_BYTES, 1, false, off);
	case 0x8e: return mfs_pk_op_sized(p, MFS_PK_BYTES, 8, false, off);
	case 0x96: return mfs_pk_op_sized(p, MFS_PK_BYTES, 8, false, off); /* BYTEARRAY8 */
	case 0x97: /* NEXT_BUFFER */ return push_kind(p, MFS_PK_BUFFER, 0, off);
	case 0x98: /* READONLY_BUFFER */ return mfs_pk_top(p, &id);
	case ')': return push_kind(p, MFS_PK_TUPLE, 0, off);
	case ']': return push_kind(p, MFS_PK_LIST, 0, off);
	case '}': return push_kind(p, MFS_PK_DICT, 0, off);
	case 0x8f: return push_kind(p, MFS_PK_SET, 0, off);
	case 't': return pk_collect(p, MFS_PK_TUPLE, off);
	case 'l': return pk_collect(p, MFS_PK_LIST, off);
	case 'd': return pk_collect(p, MFS_PK_DICT, off);
	case 0x91: return pk_collect(p, MFS_PK_FROZENSET, off);
	case 0x85: return pk_tuple_n(p, 1, off);
	case 0x86: return pk_tuple_n(p, 2, off);
	case 0x87: return pk_tuple_n(p, 3, off);
	case 'a': return op_fill(p, MFS_PK_LIST, false, 1);
	case 'e': return op_fill(p, MFS_PK_LIST, true, 0);
	case 's': return op_fill(p, MFS_PK_DICT, false, 2);
	case 'u': return op_fill(p, MFS_PK_DICT, true, 0);
	case 0x90: return op_fill(p, MFS_PK_SET, true, 0);
	case 'g': return (rc = line_key(p, &v)) ? rc : op_get(p, v);
	case 'h': return (rc = mfs_pk_le(p, 1, &v)) ? rc : op_get(p, v);
	case 'j': return (rc = mfs_pk_le(p, 4, &v)) ? rc : op_get(p, v);
	case 'p': return (rc = line_key(p, &v)) ? rc : op_put(p, v);
	case 'q': return (rc = mfs_pk_le(p, 1, &v)) ? rc : op_put(p, v);
	case 'r': return (rc = mfs_pk_le(p, 4, &v)) ? rc : op_put(p, v);
	case 0x94: /* MEMOIZE */ return op_put(p, p->memo->n);
	case 'c': return mfs_pk_op_global(p, off);
	case 0x93: return mfs_pk_op_stack_global(p, off);
	case 'i': return mfs_pk_op_inst(p, off);
	case 'o': return mfs_pk_op_obj(p, off);
	case 'R': return mfs_pk_op_reduce(p, off);
	case 0x81: return mfs_pk_op_newobj(p, off, false);
	case 0x92: return mfs_pk_op_newobj(p, off, true);
	case 'b': return mfs_pk_op_build(p, off);
	case 0x82: return mfs_pk_op_ext(p, 1, off);
	case 0x83: return mfs_pk_op_ext(p, 2, off);
	case 0x84: return mfs_pk_op_ext(p, 4, off);
	case 'P': { /* PERSID: a text id, never what torch writes */
		const char *l;
		size_t n;

		if ((rc = mfs_pk_line(p, &l, &n)))
			return rc;
		if ((rc = mfs_pk_new(p, MFS_PK_STR, off, &id2)) ||
		    (rc = mfs_pk_setstr(p, id2, l, n)))
			return rc;
		return mfs_pk_op_persid(p, id2, off, true);
	}
	case 'Q': /* BINPERSID */
		return (rc = mfs_pk_pop(p, &id)) ? rc : mfs_pk_op_persid(p, id, off, false);
	default:
		p->bpos--;
		return mfs_pk_set_fail(p, MFS_PK_MALFORMED, "invalid opcode 0x%02x", op);
	}
}

/* ------------------------------------------------------------------ API */

int mfs_pickle_init(struct mfs_pickle *p, struct mfs_stream *src,
                    const struct mfs_pickle_limits *lim)
{
	memset(p, 0, sizeof(*p));
	p->lim = lim ? lim : &mfs_pickle_default_limits;
	p->src = src;
	p->buf = malloc(PK_BUF + 1);
	p->memo = calloc(1, sizeof(*p->memo));
	p->capnodes = 64;
	p->nodes = calloc(p->capnodes, sizeof(*p->nodes));
	if (!p->buf || !p->memo || !p->nodes) {
		mfs_pickle_free(p);
		return -ENOMEM;
	}
	p->nnodes = 1; /* id 0 is "none" */
	return 0;
}

void mfs_pickle_free(struct mfs_pickle *p)
{
	for (uint32_t i = 0; p->nodes && i < p->nnodes; i++) {
		free(p->nodes[i].kids);
		free(p->nodes[i].s);
	}
	free(p->nodes);
	for (uint32_t i = 0; i < p->nglobals; i++) {
		free(p->globals[i].module);
		free(p->globals[i].name);
	}
	free(p->globals);
	for (uint32_t i = 0; i < p->nreasons; i++)
		free(p->reasons[i].text);
	free(p->reasons);
	free(p->persids);
	free(p->stack);
	free(p->marks);
	memo_free(p->memo);
	free(p->buf);
	memset(p, 0, sizeof(*p));
}

int mfs_pickle_next(struct mfs_pickle *p, uint32_t *root)
{
	int rc;

	if (p->fail)
		return -EBADMSG;
	if (mfs_pickle_at_eof(p)) {
		if (p->fail_errno)
			return mfs_pk_set_fail(p, MFS_PK_IO, "read error: %s",
			                       strerror(-p->fail_errno));
		return 0;
	}
	/* Each pickle.load() starts with an empty stack, marks and memo. */
	p->sp = 0;
	p->nmarks = 0;
	p->first_ops = 0;
	free(p->memo->keys);
	free(p->memo->vals);
	memset(p->memo, 0, sizeof(*p->memo));
	for (;;) {
		rc = pk_step(p, root);
		if (rc < 0)
			return rc;
		if (rc == 1) {
			p->pickles++;
			return 1;
		}
	}
}

bool mfs_sniff_proto(const uint8_t *buf, size_t len)
{
	return len >= 2 && buf[0] == 0x80 && buf[1] <= 5;
}
