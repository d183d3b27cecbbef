// SPDX-License-Identifier: Apache-2.0
/*
 * pickle.c - a restricted pickle reader that never executes anything.
 *
 * Every opcode of protocols 0-5 is interpreted symbolically: the stack, the
 * marks and the memo hold ids of value nodes (struct mfs_pnode), so that
 * STACK_GLOBAL can be resolved through memo gets and string ops, BINPERSID
 * arguments can be checked, and a later transcoder can walk the object graph.
 * Nothing is imported or called: a "call" is a node that records the callable
 * and its arguments.
 *
 * The input is a sequential stream read through a 64 KiB window; large
 * string/bytes payloads are skipped and only their offset and length kept,
 * so memory stays bounded by the limits, not by the file size.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmt_internal.h"
#include "tx_internal.h"

#define PK_BUF     (1u << 16) /* input window */
#define PK_MAXLINE 4096u      /* protocol-0 argument lines */
#define PK_INLINE  4096u      /* strings longer than this are not kept */

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
__attribute__((format(printf, 3, 4))) static int
pk_fail(struct mfs_pickle *p, enum mfs_pk_fail kind, const char *fmt, ...)
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
static int pk_need(struct mfs_pickle *p, size_t n)
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
			return pk_fail(p, MFS_PK_IO, "read error: %s", strerror((int)-r));
		}
		if (r == 0)
			return pk_fail(p, MFS_PK_TRUNCATED, "stream ends inside a pickle");
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
static int pk_skip(struct mfs_pickle *p, uint64_t n)
{
	while (n) {
		size_t have = p->blen - p->bpos;

		if (!have) {
			int rc = pk_need(p, 1);

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
static int pk_line(struct mfs_pickle *p, const char **line, size_t *len)
{
	size_t i = 0;

	for (;;) {
		int rc = pk_need(p, i + 1);

		if (rc)
			return rc;
		if (p->buf[p->bpos + i] == '\n')
			break;
		if (++i > PK_MAXLINE)
			return pk_fail(p, MFS_PK_MALFORMED, "argument line too long");
	}
	p->buf[p->bpos + i] = 0; /* the '\n' is consumed: NUL-terminate in place */
	*line = (const char *)p->buf + p->bpos;
	*len = i;
	p->bpos += i + 1;
	return 0;
}

static int pk_u8(struct mfs_pickle *p, uint64_t *v)
{
	int rc = pk_need(p, 1);

	if (rc)
		return rc;
	*v = p->buf[p->bpos++];
	return 0;
}

/* Little-endian unsigned integer of @n bytes (n <= 8). */
static int pk_le(struct mfs_pickle *p, unsigned n, uint64_t *v)
{
	int rc = pk_need(p, n);

	if (rc)
		return rc;
	*v = 0;
	for (unsigned i = 0; i < n; i++)
		*v |= (uint64_t)p->buf[p->bpos + i] << (8 * i);
	p->bpos += n;
	return 0;
}

/* ----------------------------------------------------------------- graph */

static int pk_charge(struct mfs_pickle *p, uint64_t bytes)
{
	if (bytes > p->lim->max_expansion - p->expansion)
		return pk_fail(p, MFS_PK_TOOBIG, "value graph exceeds %llu bytes",
		               (unsigned long long)p->lim->max_expansion);
	p->expansion += bytes;
	return 0;
}

/* Creates a node of @kind at the current opcode; returns its id in *@id. */
static int pk_new(struct mfs_pickle *p, uint8_t kind, uint64_t off, uint32_t *id)
{
	int rc = pk_charge(p, sizeof(struct mfs_pnode));

	if (rc)
		return rc;
	if (p->nnodes == p->capnodes) {
		uint32_t cap = p->capnodes * 2;
		void *np;

		if (cap <= p->capnodes)
			return pk_fail(p, MFS_PK_TOOBIG, "too many values");
		np = realloc(p->nodes, (size_t)cap * sizeof(*p->nodes));
		if (!np)
			return pk_fail(p, MFS_PK_TOOBIG, "out of memory");
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
static int pk_kid(struct mfs_pickle *p, uint32_t id, uint32_t kid)
{
	struct mfs_pnode *n = &p->nodes[id];

	if (n->n == n->cap) {
		uint32_t cap = n->cap ? 2 * n->cap : 4;
		void *np;
		int rc;

		if (cap <= n->cap)
			return pk_fail(p, MFS_PK_TOOBIG, "container too large");
		rc = pk_charge(p, (uint64_t)(cap - n->cap) * sizeof(uint32_t));
		if (rc)
			return rc;
		np = realloc(n->kids, (size_t)cap * sizeof(uint32_t));
		if (!np)
			return pk_fail(p, MFS_PK_TOOBIG, "out of memory");
		n->kids = np;
		n->cap = cap;
	}
	n->kids[n->n++] = kid;
	return 0;
}

/* Gives node @id a copy of @s (@len bytes, NUL-terminated). */
static int pk_setstr(struct mfs_pickle *p, uint32_t id, const void *s, size_t len)
{
	char *c;
	int rc = pk_charge(p, len + 1);

	if (rc)
		return rc;
	c = malloc(len + 1);
	if (!c)
		return pk_fail(p, MFS_PK_TOOBIG, "out of memory");
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

static int pk_push(struct mfs_pickle *p, uint32_t id)
{
	if (p->sp == p->capstack) {
		uint32_t cap = p->capstack ? 2 * p->capstack : 64;
		void *np;

		if (p->sp >= p->lim->max_stack)
			return pk_fail(p, MFS_PK_LIMIT, "stack deeper than %u", p->lim->max_stack);
		np = realloc(p->stack, (size_t)cap * sizeof(uint32_t));
		if (!np)
			return pk_fail(p, MFS_PK_TOOBIG, "out of memory");
		p->stack = np;
		p->capstack = cap;
	}
	p->stack[p->sp++] = id;
	return 0;
}

static int pk_pop(struct mfs_pickle *p, uint32_t *id)
{
	if (p->sp <= pk_base(p))
		return pk_fail(p, MFS_PK_MALFORMED, "stack underflow");
	*id = p->stack[--p->sp];
	return 0;
}

static int pk_top(struct mfs_pickle *p, uint32_t *id)
{
	if (p->sp <= pk_base(p))
		return pk_fail(p, MFS_PK_MALFORMED, "stack underflow");
	*id = p->stack[p->sp - 1];
	return 0;
}

/* Pops the topmost mark; the items above it are stack[*base .. sp). */
static int pk_popmark(struct mfs_pickle *p, uint32_t *base)
{
	if (!p->nmarks)
		return pk_fail(p, MFS_PK_MALFORMED, "no MARK on the stack");
	*base = p->marks[--p->nmarks];
	return 0;
}

static int pk_mark(struct mfs_pickle *p)
{
	if (p->nmarks == p->capmarks) {
		uint32_t cap = p->capmarks ? 2 * p->capmarks : 16;
		void *np;

		if (p->nmarks >= p->lim->max_marks)
			return pk_fail(p, MFS_PK_LIMIT, "MARKs nested deeper than %u",
			               p->lim->max_marks);
		np = realloc(p->marks, (size_t)cap * sizeof(uint32_t));
		if (!np)
			return pk_fail(p, MFS_PK_TOOBIG, "out of memory");
		p->marks = np;
		p->capmarks = cap;
	}
	p->marks[p->nmarks++] = p->sp;
	return 0;
}

/* Makes a container node of @kind from the items above the topmost mark. */
static int pk_collect(struct mfs_pickle *p, uint8_t kind, uint64_t off)
{
	uint32_t base = 0, id = 0;
	int rc = pk_popmark(p, &base);

	if (rc || (rc = pk_new(p, kind, off, &id)))
		return rc;
	for (uint32_t i = base; i < p->sp; i++)
		if ((rc = pk_kid(p, id, p->stack[i])))
			return rc;
	if (kind == MFS_PK_DICT && (p->sp - base) % 2)
		return pk_fail(p, MFS_PK_MALFORMED, "odd number of items for DICT");
	p->sp = base;
	return pk_push(p, id);
}

/* Makes a tuple of the top @n items. */
static int pk_tuple_n(struct mfs_pickle *p, uint32_t n, uint64_t off)
{
	uint32_t id = 0;
	int rc;

	if (p->sp - pk_base(p) < n)
		return pk_fail(p, MFS_PK_MALFORMED, "stack underflow");
	if ((rc = pk_new(p, MFS_PK_TUPLE, off, &id)))
		return rc;
	for (uint32_t i = p->sp - n; i < p->sp; i++)
		if ((rc = pk_kid(p, id, p->stack[i])))
			return rc;
	p->sp -= n;
	return pk_push(p, id);
}

/* -------------------------------------------------------------- allowlist */

/*
 * Every torch element type: one row per dtype, with the storage class torch
 * writes for it (legacy typed storages) and its safetensors equivalent. The
 * allowlist (mfs_global_class) and the transcoder (transcode.c) both read it.
 */
#define TT(dtype_, alias_, storage_, size_, st_, quantized_)                                       \
	{                                                                                          \
		.dtype = dtype_, .alias = alias_, .storage = storage_, .size = size_, .st = st_,   \
		.quantized = quantized_                                                            \
	}

const struct mfs_torch_type mfs_torch_types[] = {
    TT("float32", "float", "FloatStorage", 4, MFS_ST_F32, false),
    TT("float64", "double", "DoubleStorage", 8, MFS_ST_F64, false),
    TT("float16", "half", "HalfStorage", 2, MFS_ST_F16, false),
    TT("bfloat16", NULL, "BFloat16Storage", 2, MFS_ST_BF16, false),
    TT("int64", "long", "LongStorage", 8, MFS_ST_I64, false),
    TT("int32", "int", "IntStorage", 4, MFS_ST_I32, false),
    TT("int16", "short", "ShortStorage", 2, MFS_ST_I16, false),
    TT("int8", NULL, "CharStorage", 1, MFS_ST_I8, false),
    TT("uint8", NULL, "ByteStorage", 1, MFS_ST_U8, false),
    TT("bool", NULL, "BoolStorage", 1, MFS_ST_BOOL, false),
    TT("uint16", NULL, NULL, 2, MFS_ST_U16, false),
    TT("uint32", NULL, NULL, 4, MFS_ST_U32, false),
    TT("uint64", NULL, NULL, 8, MFS_ST_U64, false),
    TT("complex32", "chalf", NULL, 4, MFS_TORCH_NO_ST, false),
    TT("complex64", "cfloat", "ComplexFloatStorage", 8, MFS_TORCH_NO_ST, false),
    TT("complex128", "cdouble", "ComplexDoubleStorage", 16, MFS_TORCH_NO_ST, false),
    TT("qint8", NULL, "QInt8Storage", 1, MFS_TORCH_NO_ST, true),
    TT("quint8", NULL, "QUInt8Storage", 1, MFS_TORCH_NO_ST, true),
    TT("qint32", NULL, "QInt32Storage", 4, MFS_TORCH_NO_ST, true),
    TT("quint4x2", NULL, "QUInt4x2Storage", 1, MFS_TORCH_NO_ST, true),
    TT("quint2x4", NULL, "QUInt2x4Storage", 1, MFS_TORCH_NO_ST, true),
    TT("float8_e4m3fn", NULL, NULL, 1, MFS_ST_F8_E4M3, false),
    TT("float8_e5m2", NULL, NULL, 1, MFS_ST_F8_E5M2, false),
    TT("float8_e4m3fnuz", NULL, NULL, 1, MFS_TORCH_NO_ST, false),
    TT("float8_e5m2fnuz", NULL, NULL, 1, MFS_TORCH_NO_ST, false),
    TT("bits1x8", NULL, NULL, 1, MFS_TORCH_NO_ST, false),
    TT("bits2x4", NULL, NULL, 1, MFS_TORCH_NO_ST, false),
    TT("bits4x2", NULL, NULL, 1, MFS_TORCH_NO_ST, false),
    TT("bits8", NULL, NULL, 1, MFS_TORCH_NO_ST, false),
    TT("bits16", NULL, NULL, 2, MFS_TORCH_NO_ST, false),
    /* UntypedStorage: plain bytes, typed by each tensor (torch >= 2.0) */
    TT(NULL, NULL, "UntypedStorage", 1, MFS_TORCH_UNTYPED, false),
};
const size_t mfs_n_torch_types = sizeof(mfs_torch_types) / sizeof(mfs_torch_types[0]);

const struct mfs_torch_type *mfs_torch_storage(const char *cls)
{
	for (size_t i = 0; i < mfs_n_torch_types; i++) {
		const struct mfs_torch_type *t = &mfs_torch_types[i];

		if (t->storage && strcmp(t->storage, cls) == 0)
			return t;
	}
	return NULL;
}

const struct mfs_torch_type *mfs_torch_dtype(const char *name)
{
	for (size_t i = 0; i < mfs_n_torch_types; i++) {
		const struct mfs_torch_type *t = &mfs_torch_types[i];

		if ((t->dtype && strcmp(t->dtype, name) == 0) ||
		    (t->alias && strcmp(t->alias, name) == 0))
			return t;
	}
	return NULL;
}

/* module, name pairs; a NULL name ends the list. */
static const char *const allow_pairs[][2] = {
    {"collections", "OrderedDict"},
    {"torch._utils", "_rebuild_tensor_v2"},
    {"torch._utils", "_rebuild_tensor_v3"},
    {"torch._utils", "_rebuild_parameter"},
    {"torch._utils", "_rebuild_parameter_with_state"},
    {"torch", "Size"},
    {"torch", "device"},
    {"numpy", "dtype"},
    {"numpy", "ndarray"},
    {"numpy.core.multiarray", "_reconstruct"},
    {"numpy._core.multiarray", "_reconstruct"}, /* numpy >= 2 */
    {NULL, NULL},
};

/* Known benign data types outside the allowlist (docs/scanner.md). */
static const char *const suspicious_pairs[][2] = {
    {"builtins", "set"},
    {"builtins", "frozenset"},
    {"builtins", "bytearray"},
    {"builtins", "complex"},
    {"builtins", "slice"},
    {"_codecs", "encode"}, /* how protocol 2 pickles bytes */
    {"numpy.core.multiarray", "scalar"},
    {"numpy._core.multiarray", "scalar"},
    {NULL, NULL},
};

static bool in_pairs(const char *const (*pairs)[2], const char *m, const char *n)
{
	for (; pairs[0][0]; pairs++)
		if (strcmp(pairs[0][0], m) == 0 && strcmp(pairs[0][1], n) == 0)
			return true;
	return false;
}

enum mfs_verdict mfs_global_class(const char *module, const char *name)
{
	/* Protocol 0-2 pickles written by Python 2 name builtins this way. */
	if (strcmp(module, "__builtin__") == 0)
		module = "builtins";
	if (in_pairs(allow_pairs, module, name))
		return MFS_VERDICT_SAFE;
	if (strcmp(module, "torch") == 0 && (mfs_torch_storage(name) || mfs_torch_dtype(name)))
		return MFS_VERDICT_SAFE;
	if (in_pairs(suspicious_pairs, module, name))
		return MFS_VERDICT_SUSPICIOUS;
	return MFS_VERDICT_UNSAFE;
}

/* A dotted Python name: what a loader could actually import. */
static bool pk_identifier(const char *s, size_t len)
{
	if (!s || !len)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!(c == '_' || c == '.' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		      (c >= 'A' && c <= 'Z') || c >= 0x80))
			return false;
	}
	return true;
}

/* Records a global and pushes its node. */
static int pk_global(struct mfs_pickle *p, const char *m, size_t mlen, const char *n, size_t nlen,
                     uint64_t off, bool push)
{
	struct mfs_pglobal *g;
	uint32_t id = 0;
	int rc;

	p->seen_import = true;
	if (pk_identifier(m, mlen) && pk_identifier(n, nlen))
		p->seen_named_import = true;
	if (p->nglobals >= p->lim->max_globals)
		return pk_fail(p, MFS_PK_LIMIT, "more than %u global references",
		               p->lim->max_globals);
	if (p->nglobals == p->capglobals) {
		uint32_t cap = p->capglobals ? 2 * p->capglobals : 8;
		void *np = realloc(p->globals, cap * sizeof(*p->globals));

		if (!np)
			return pk_fail(p, MFS_PK_TOOBIG, "out of memory");
		p->globals = np;
		p->capglobals = cap;
	}
	if ((rc = pk_charge(p, mlen + nlen + 2 + sizeof(*g))))
		return rc;
	g = &p->globals[p->nglobals];
	g->module = strndup(m, mlen);
	g->name = strndup(n, nlen);
	if (!g->module || !g->name) {
		free(g->module);
		free(g->name);
		return pk_fail(p, MFS_PK_TOOBIG, "out of memory");
	}
	g->offset = off;
	g->cls = mfs_global_class(g->module, g->name);
	p->nglobals++;
	if (!push)
		return 0;
	if ((rc = pk_new(p, MFS_PK_GLOBAL, off, &id)))
		return rc;
	p->nodes[id].a = p->nglobals - 1;
	return pk_push(p, id);
}

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
		return pk_fail(p, MFS_PK_TRUNCATED, "string of %llu bytes runs past the end",
		               (unsigned long long)n);
	if (n > p->lim->max_len)
		return pk_fail(p, MFS_PK_TOOBIG, "string of %llu bytes exceeds the limit",
		               (unsigned long long)n);
	if ((rc = pk_new(p, kind, off, &id)))
		return rc;
	p->nodes[id].off = p->boff + p->bpos;
	p->nodes[id].len = n;
	if (n <= PK_INLINE) {
		if ((rc = pk_need(p, (size_t)n)))
			return rc;
		if ((rc = pk_setstr(p, id, p->buf + p->bpos, (size_t)n)))
			return rc;
		p->bpos += (size_t)n;
	} else {
		p->nodes[id].big = true;
		if ((rc = pk_skip(p, n)))
			return rc;
	}
	return pk_push(p, id);
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
		return pk_fail(p, MFS_PK_MALFORMED, "%s", bad_escape);
	}
	rc = pk_new(p, MFS_PK_STR, off, &id);
	if (!rc)
		rc = pk_setstr(p, id, tmp, (size_t)dl);
	free(tmp);
	return rc ? rc : pk_push(p, id);
}

/* STRING: a quoted, escaped line. */
static int op_string(struct mfs_pickle *p, uint64_t off)
{
	const char *l;
	size_t n;
	char *tmp;
	int rc = pk_line(p, &l, &n);

	if (rc)
		return rc;
	if (n < 2 || l[0] != l[n - 1] || (l[0] != '\'' && l[0] != '"'))
		return pk_fail(p, MFS_PK_MALFORMED, "STRING argument must be quoted");
	tmp = malloc(n);
	if (!tmp)
		return pk_fail(p, MFS_PK_TOOBIG, "out of memory");
	return push_decoded(p, off, tmp, escape_decode(l + 1, n - 2, tmp), "bad escape in STRING");
}

/* UNICODE: a raw-unicode-escape line. */
static int op_unicode(struct mfs_pickle *p, uint64_t off)
{
	const char *l;
	size_t n;
	char *tmp;
	int rc = pk_line(p, &l, &n);

	if (rc)
		return rc;
	tmp = malloc(2 * n + 4);
	if (!tmp)
		return pk_fail(p, MFS_PK_TOOBIG, "out of memory");
	return push_decoded(p, off, tmp, rawuni_decode((const unsigned char *)l, n, tmp),
	                    "bad escape in UNICODE");
}

/* --------------------------------------------------------------- numbers */

/* Parses a protocol-0 integer line (Python's int(s, 0) subset). */
static int parse_int_line(const char *l, size_t n, int64_t *v, bool *big)
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

static int op_int(struct mfs_pickle *p, uint64_t off, bool is_long)
{
	const char *l;
	size_t n;
	uint32_t id = 0;
	int64_t v = 0;
	bool big;
	int rc = pk_line(p, &l, &n);

	if (rc)
		return rc;
	if (is_long && n && l[n - 1] == 'L')
		n--;
	char tmp[PK_MAXLINE + 1];

	memcpy(tmp, l, n);
	tmp[n] = 0;
	if (!is_long && (strcmp(tmp, "00") == 0 || strcmp(tmp, "01") == 0)) {
		if ((rc = pk_new(p, MFS_PK_BOOL, off, &id)))
			return rc;
		p->nodes[id].i = tmp[1] == '1';
		return pk_push(p, id);
	}
	if (parse_int_line(tmp, n, &v, &big))
		return pk_fail(p, MFS_PK_MALFORMED, "bad integer literal");
	if ((rc = pk_new(p, big ? MFS_PK_LONG : MFS_PK_INT, off, &id)))
		return rc;
	p->nodes[id].i = v;
	if (big) {
		p->nodes[id].text = true;
		if ((rc = pk_setstr(p, id, tmp, n)))
			return rc;
	}
	return pk_push(p, id);
}

static int op_float(struct mfs_pickle *p, uint64_t off)
{
	const char *l;
	size_t n;
	uint32_t id = 0;
	char *end;
	int rc = pk_line(p, &l, &n);

	if (rc)
		return rc;
	double d = strtod(l, &end);

	while (*end == ' ' || *end == '\t' || *end == '\r')
		end++;
	if (end == l || *end)
		return pk_fail(p, MFS_PK_MALFORMED, "bad float literal");
	if ((rc = pk_new(p, MFS_PK_FLOAT, off, &id)))
		return rc;
	p->nodes[id].f = d;
	return pk_push(p, id);
}

static int push_int(struct mfs_pickle *p, int64_t v, uint64_t off)
{
	uint32_t id = 0;
	int rc = pk_new(p, MFS_PK_INT, off, &id);

	if (rc)
		return rc;
	p->nodes[id].i = v;
	return pk_push(p, id);
}

/* LONG1/LONG4: little-endian two's complement of @n bytes. */
static int op_long_bin(struct mfs_pickle *p, uint64_t n, uint64_t off)
{
	uint32_t id = 0;
	int rc;

	if (n <= 8) {
		uint64_t u;

		if ((rc = pk_le(p, (unsigned)n, &u)))
			return rc;
		if (n && n < 8 && (u >> (8 * n - 1)) & 1)
			u |= ~0ull << (8 * n); /* sign-extend */
		return push_int(p, (int64_t)u, off);
	}
	if ((rc = pk_payload(p, MFS_PK_LONG, n, off)))
		return rc;
	id = p->stack[p->sp - 1];
	p->nodes[id].kind = MFS_PK_LONG;
	return 0;
}

/* ------------------------------------------------------------- memo ops */

static int memo_put(struct mfs_pickle *p, uint64_t key, uint32_t id)
{
	struct mfs_pmemo *m = p->memo;
	size_t i;

	if (m->cap == 0 || (m->n + 1) * 2 > m->cap) {
		if (m->n >= p->lim->max_memo)
			return pk_fail(p, MFS_PK_LIMIT, "more than %u memo entries",
			               p->lim->max_memo);
		if (memo_grow(m, m->cap ? 2 * m->cap : 64))
			return pk_fail(p, MFS_PK_TOOBIG, "out of memory");
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
	int rc = pk_top(p, &id);

	return rc ? rc : memo_put(p, key, id);
}

static int op_get(struct mfs_pickle *p, uint64_t key)
{
	uint32_t id = memo_get(p->memo, key);

	if (!id)
		return pk_fail(p, MFS_PK_MALFORMED, "memo key %llu was never stored",
		               (unsigned long long)key);
	return pk_push(p, id);
}

/* Protocol-0 memo key line. */
static int line_key(struct mfs_pickle *p, uint64_t *key)
{
	const char *l;
	size_t n;
	int64_t v;
	bool big;
	int rc = pk_line(p, &l, &n);

	if (rc)
		return rc;
	if (parse_int_line(l, n, &v, &big) || big || v < 0)
		return pk_fail(p, MFS_PK_MALFORMED, "bad memo key");
	*key = (uint64_t)v;
	return 0;
}

/* ------------------------------------------------------------ object ops */

/* Is @id a string node whose text we kept? */
static const char *str_of(const struct mfs_pickle *p, uint32_t id)
{
	const struct mfs_pnode *n = mfs_pickle_node(p, id);

	if (!n || n->kind != MFS_PK_STR || n->big || !n->s || strlen(n->s) != n->len)
		return NULL;
	return n->s;
}

static int op_stack_global(struct mfs_pickle *p, uint64_t off)
{
	uint32_t mid, nid, id;
	const char *m, *n;
	int rc;

	if ((rc = pk_pop(p, &nid)) || (rc = pk_pop(p, &mid)))
		return rc;
	m = str_of(p, mid);
	n = str_of(p, nid);
	if (!m || !n) {
		/* Python would raise; but never call such a stream safe. */
		p->seen_import = true;
		mfs_pickle_add_reason(p, MFS_VERDICT_UNSAFE,
		                      "offset %llu: STACK_GLOBAL with a module or name that is not "
		                      "a known string",
		                      (unsigned long long)off);
		if ((rc = pk_new(p, MFS_PK_GLOBAL, off, &id)))
			return rc;
		p->nodes[id].a = UINT32_MAX;
		return pk_push(p, id);
	}
	return pk_global(p, m, strlen(m), n, strlen(n), off, true);
}

/* GLOBAL and INST arguments: "module\nname\n". */
static int read_global_lines(struct mfs_pickle *p, char *m, size_t *mlen, char *n, size_t *nlen)
{
	const char *l;
	size_t len;
	int rc = pk_line(p, &l, &len);

	if (rc)
		return rc;
	memcpy(m, l, len);
	*mlen = len;
	if ((rc = pk_line(p, &l, &len)))
		return rc;
	memcpy(n, l, len);
	*nlen = len;
	if (!*mlen || !*nlen || memchr(m, 0, *mlen) || memchr(n, 0, *nlen) ||
	    !mv_utf8_valid(m, *mlen) || !mv_utf8_valid(n, *nlen))
		return pk_fail(p, MFS_PK_MALFORMED, "GLOBAL argument is not a UTF-8 name");
	return 0;
}

static int op_global(struct mfs_pickle *p, uint64_t off)
{
	char m[PK_MAXLINE + 1], n[PK_MAXLINE + 1];
	size_t ml, nl;
	int rc = read_global_lines(p, m, &ml, n, &nl);

	return rc ? rc : pk_global(p, m, ml, n, nl, off, true);
}

/* Makes an OBJ node: class @cls, args @args (0 = none), kwargs @kw. */
static int push_obj(struct mfs_pickle *p, uint32_t cls, uint32_t args, uint32_t kw, uint64_t off)
{
	uint32_t id = 0;
	int rc = pk_new(p, MFS_PK_OBJ, off, &id);

	if (rc)
		return rc;
	p->nodes[id].a = cls;
	p->nodes[id].b = args;
	p->nodes[id].c = kw;
	return pk_push(p, id);
}

/* Flags a call whose callable did not come from a global. */
static void check_callable(struct mfs_pickle *p, uint32_t id, uint64_t off, const char *op)
{
	const struct mfs_pnode *n = mfs_pickle_node(p, id);

	if (!n || n->kind != MFS_PK_GLOBAL)
		mfs_pickle_add_reason(p, MFS_VERDICT_UNSAFE,
		                      "offset %llu: %s calls something that is not a global",
		                      (unsigned long long)off, op);
}

/* Turns the items above the topmost mark into a tuple node (for INST/OBJ). */
static int mark_tuple(struct mfs_pickle *p, uint64_t off, uint32_t skip, uint32_t *first,
                      uint32_t *tuple)
{
	uint32_t base = 0;
	int rc = pk_popmark(p, &base);

	if (rc)
		return rc;
	if (skip) {
		if (p->sp - base < skip)
			return pk_fail(p, MFS_PK_MALFORMED, "OBJ without a class");
		*first = p->stack[base];
	}
	if ((rc = pk_new(p, MFS_PK_TUPLE, off, tuple)))
		return rc;
	for (uint32_t i = base + skip; i < p->sp; i++)
		if ((rc = pk_kid(p, *tuple, p->stack[i])))
			return rc;
	p->sp = base;
	return 0;
}

static int op_inst(struct mfs_pickle *p, uint64_t off)
{
	char m[PK_MAXLINE + 1], n[PK_MAXLINE + 1];
	size_t ml, nl;
	uint32_t args, cls, dummy;
	int rc = read_global_lines(p, m, &ml, n, &nl);

	if (rc || (rc = mark_tuple(p, off, 0, &dummy, &args)))
		return rc;
	if ((rc = pk_global(p, m, ml, n, nl, off, false)))
		return rc;
	if ((rc = pk_new(p, MFS_PK_GLOBAL, off, &cls)))
		return rc;
	p->nodes[cls].a = p->nglobals - 1;
	return push_obj(p, cls, args, 0, off);
}

static int op_obj(struct mfs_pickle *p, uint64_t off)
{
	uint32_t cls = 0, args;
	int rc = mark_tuple(p, off, 1, &cls, &args);

	if (rc)
		return rc;
	check_callable(p, cls, off, "OBJ");
	return push_obj(p, cls, args, 0, off);
}

static int op_reduce(struct mfs_pickle *p, uint64_t off)
{
	uint32_t args, fn, id;
	int rc;

	if ((rc = pk_pop(p, &args)) || (rc = pk_pop(p, &fn)))
		return rc;
	check_callable(p, fn, off, "REDUCE");
	if ((rc = pk_new(p, MFS_PK_CALL, off, &id)))
		return rc;
	p->nodes[id].a = fn;
	p->nodes[id].b = args;
	return pk_push(p, id);
}

static int op_newobj(struct mfs_pickle *p, uint64_t off, bool ex)
{
	uint32_t cls, args, kw = 0;
	int rc;

	if (ex && (rc = pk_pop(p, &kw)))
		return rc;
	if ((rc = pk_pop(p, &args)) || (rc = pk_pop(p, &cls)))
		return rc;
	check_callable(p, cls, off, ex ? "NEWOBJ_EX" : "NEWOBJ");
	return push_obj(p, cls, args, kw, off);
}

static int op_build(struct mfs_pickle *p, uint64_t off)
{
	uint32_t state, obj;
	int rc;

	if ((rc = pk_pop(p, &state)) || (rc = pk_top(p, &obj)))
		return rc;
	p->nodes[obj].st = state;
	return 0;
}

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
		if ((rc = pk_popmark(p, &base)))
			return rc;
	} else {
		if (p->sp - pk_base(p) < pairs)
			return pk_fail(p, MFS_PK_MALFORMED, "stack underflow");
		base = p->sp - pairs;
	}
	if (base <= pk_base(p))
		return pk_fail(p, MFS_PK_MALFORMED, "no container below the items");
	target = p->stack[base - 1];
	if (!can_hold(p, target, want))
		return pk_fail(p, MFS_PK_MALFORMED, "items added to a value of the wrong type");
	if (want == MFS_PK_DICT && (p->sp - base) % 2)
		return pk_fail(p, MFS_PK_MALFORMED, "odd number of items for SETITEMS");
	for (uint32_t i = base; i < p->sp; i++)
		if ((rc = pk_kid(p, target, p->stack[i])))
			return rc;
	p->sp = base;
	return 0;
}

static int op_persid(struct mfs_pickle *p, uint32_t pid, uint64_t off, bool text)
{
	const struct mfs_pnode *t = mfs_pickle_node(p, pid);
	uint32_t id = 0;
	int rc;

	if (p->persid_stops)
		return pk_fail(
		    p, MFS_PK_MALFORMED,
		    "offset %llu: a persistent id, where pickle.load (no persistent_load) stops",
		    (unsigned long long)off);
	if (text || !t || t->kind != MFS_PK_TUPLE || t->n < 1 || !str_of(p, t->kids[0]) ||
	    strcmp(str_of(p, t->kids[0]), "storage") != 0)
		mfs_pickle_add_reason(p, MFS_VERDICT_UNSAFE,
		                      "offset %llu: persistent id is not a ('storage', ...) tuple",
		                      (unsigned long long)off);
	if ((rc = pk_new(p, MFS_PK_PERSID, off, &id)))
		return rc;
	p->nodes[id].a = pid;
	if (p->npersids == p->cappersids) {
		uint32_t cap = p->cappersids ? 2 * p->cappersids : 16;
		void *np = realloc(p->persids, cap * sizeof(uint32_t));

		if (!np)
			return pk_fail(p, MFS_PK_TOOBIG, "out of memory");
		p->persids = np;
		p->cappersids = cap;
	}
	p->persids[p->npersids++] = id;
	return pk_push(p, id);
}

static int op_ext(struct mfs_pickle *p, unsigned nbytes, uint64_t off)
{
	uint64_t code;
	uint32_t id = 0;
	int rc = pk_le(p, nbytes, &code);

	if (rc)
		return rc;
	p->seen_import = true;
	mfs_pickle_add_reason(p, MFS_VERDICT_UNSAFE,
	                      "offset %llu: EXT%u imports extension code %llu (cannot be resolved)",
	                      (unsigned long long)off, nbytes == 4 ? 4u : nbytes,
	                      (unsigned long long)code);
	if ((rc = pk_new(p, MFS_PK_EXT, off, &id)))
		return rc;
	p->nodes[id].i = (int64_t)code;
	return pk_push(p, id);
}

static int push_kind(struct mfs_pickle *p, uint8_t kind, int64_t v, uint64_t off)
{
	uint32_t id = 0;
	int rc = pk_new(p, kind, off, &id);

	if (rc)
		return rc;
	p->nodes[id].i = v;
	return pk_push(p, id);
}

/* ---------------------------------------------------------- dispatcher */

/* Length-prefixed string/bytes opcodes. */
static int op_sized(struct mfs_pickle *p, uint8_t kind, unsigned lenbytes, bool is_signed,
                    uint64_t off)
{
	uint64_t n;
	int rc = pk_le(p, lenbytes, &n);

	if (rc)
		return rc;
	if (is_signed && (n & 0x80000000u))
		return pk_fail(p, MFS_PK_MALFORMED, "negative byte count");
	return pk_payload(p, kind, n, off);
}

static int op_binfloat(struct mfs_pickle *p, uint64_t off)
{
	uint64_t be = 0;
	uint32_t id = 0;
	double d;
	int rc = pk_need(p, 8);

	if (rc)
		return rc;
	for (int i = 0; i < 8; i++)
		be = be << 8 | p->buf[p->bpos + i];
	p->bpos += 8;
	memcpy(&d, &be, sizeof(d));
	if ((rc = pk_new(p, MFS_PK_FLOAT, off, &id)))
		return rc;
	p->nodes[id].f = d;
	return pk_push(p, id);
}

/* Executes one opcode symbolically. Returns 1 after STOP, 0, or <0. */
static int pk_step(struct mfs_pickle *p, uint32_t *root)
{
	uint64_t off = p->boff + p->bpos, v = 0;
	uint32_t id = 0, id2 = 0;
	int rc;
	uint8_t op;

	if ((rc = pk_need(p, 1)))
		return rc;
	op = p->buf[p->bpos++];
	if (++p->ops > p->lim->max_ops)
		return pk_fail(p, MFS_PK_TOOBIG, "more than %llu opcodes",
		               (unsigned long long)p->lim->max_ops);
	p->first_ops++;
	switch (op) {
	case 0x80: /* PROTO */
		if ((rc = pk_u8(p, &v)))
			return rc;
		if (v > 5)
			return pk_fail(p, MFS_PK_MALFORMED, "unsupported protocol %llu",
			               (unsigned long long)v);
		if (p->first_ops == 1 && !p->pickles)
			p->seen_proto = true;
		return 0;
	case 0x95: /* FRAME: a buffering hint */ return pk_le(p, 8, &v);
	case '.': /* STOP */
		if ((rc = pk_pop(p, &id)))
			return rc;
		*root = id;
		return 1;
	case '(': return pk_mark(p);
	case '0': /* POP: an item, or a mark when the top frame is empty */
		if (p->sp > pk_base(p)) {
			p->sp--;
			return 0;
		}
		return pk_popmark(p, &id);
	case '1': /* POP_MARK */
		if ((rc = pk_popmark(p, &id)))
			return rc;
		p->sp = id;
		return 0;
	case '2': /* DUP */ return (rc = pk_top(p, &id)) ? rc : pk_push(p, id);
	case 'N': return push_kind(p, MFS_PK_NONE, 0, off);
	case 0x88: return push_kind(p, MFS_PK_BOOL, 1, off);
	case 0x89: return push_kind(p, MFS_PK_BOOL, 0, off);
	case 'I': return op_int(p, off, false);
	case 'L': return op_int(p, off, true);
	case 'F': return op_float(p, off);
	case 'G': return op_binfloat(p, off);
	case 'J':
		if ((rc = pk_le(p, 4, &v)))
			return rc;
		return push_int(p, (int32_t)(uint32_t)v, off);
	case 'K': return (rc = pk_le(p, 1, &v)) ? rc : push_int(p, (int64_t)v, off);
	case 'M': return (rc = pk_le(p, 2, &v)) ? rc : push_int(p, (int64_t)v, off);
	case 0x8a: /* LONG1 */ return (rc = pk_u8(p, &v)) ? rc : op_long_bin(p, v, off);
	case 0x8b: /* LONG4 */
		if ((rc = pk_le(p, 4, &v)))
			return rc;
		if (v & 0x80000000u)
			return pk_fail(p, MFS_PK_MALFORMED, "LONG4 with a negative byte count");
		return op_long_bin(p, v, off);
	case 'S': return op_string(p, off);
	case 'V': return op_unicode(p, off);
	case 'T': return op_sized(p, MFS_PK_STR, 4, true, off);
	case 'U': return op_sized(p, MFS_PK_STR, 1, false, off);
	case 'X': return op_sized(p, MFS_PK_STR, 4, false, off);
	case 0x8c: return op_sized(p, MFS_PK_STR, 1, false, off);
	case 0x8d: return op_sized(p, MFS_PK_STR, 8, false, off);
	case 'B': return op_sized(p, MFS_PK_BYTES, 4, false, off);
	case 'C': return op_sized(p, MFS_PK_BYTES, 1, false, off);
	case 0x8e: return op_sized(p, MFS_PK_BYTES, 8, false, off);
	case 0x96: return op_sized(p, MFS_PK_BYTES, 8, false, off); /* BYTEARRAY8 */
	case 0x97: /* NEXT_BUFFER */ return push_kind(p, MFS_PK_BUFFER, 0, off);
	case 0x98: /* READONLY_BUFFER */ return pk_top(p, &id);
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
	case 'h': return (rc = pk_le(p, 1, &v)) ? rc : op_get(p, v);
	case 'j': return (rc = pk_le(p, 4, &v)) ? rc : op_get(p, v);
	case 'p': return (rc = line_key(p, &v)) ? rc : op_put(p, v);
	case 'q': return (rc = pk_le(p, 1, &v)) ? rc : op_put(p, v);
	case 'r': return (rc = pk_le(p, 4, &v)) ? rc : op_put(p, v);
	case 0x94: /* MEMOIZE */ return op_put(p, p->memo->n);
	case 'c': return op_global(p, off);
	case 0x93: return op_stack_global(p, off);
	case 'i': return op_inst(p, off);
	case 'o': return op_obj(p, off);
	case 'R': return op_reduce(p, off);
	case 0x81: return op_newobj(p, off, false);
	case 0x92: return op_newobj(p, off, true);
	case 'b': return op_build(p, off);
	case 0x82: return op_ext(p, 1, off);
	case 0x83: return op_ext(p, 2, off);
	case 0x84: return op_ext(p, 4, off);
	case 'P': { /* PERSID: a text id, never what torch writes */
		const char *l;
		size_t n;

		if ((rc = pk_line(p, &l, &n)))
			return rc;
		if ((rc = pk_new(p, MFS_PK_STR, off, &id2)) || (rc = pk_setstr(p, id2, l, n)))
			return rc;
		return op_persid(p, id2, off, true);
	}
	case 'Q': /* BINPERSID */ return (rc = pk_pop(p, &id)) ? rc : op_persid(p, id, off, false);
	default: p->bpos--; return pk_fail(p, MFS_PK_MALFORMED, "invalid opcode 0x%02x", op);
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
			return pk_fail(p, MFS_PK_IO, "read error: %s", strerror(-p->fail_errno));
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
