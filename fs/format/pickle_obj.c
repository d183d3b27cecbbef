// SPDX-License-Identifier: Apache-2.0
/*
 * pickle_obj.c - the pickle opcodes that import, call and build objects:
 * GLOBAL, STACK_GLOBAL, INST, OBJ, REDUCE, NEWOBJ(_EX), BUILD, EXT1/2/4
 * and the persistent ids.
 *
 * Separate from the machine (pickle.c) because this is where a stream's
 * findings are made: each global is recorded with its class from the
 * allowlist (pickle_allow.c), and calls of something that is not a global,
 * unresolvable STACK_GLOBALs and extension codes, and persistent ids that are
 * not torch's storages are reasons. Nothing is imported or called.
 */
#include <stdlib.h>
#include <string.h>

#include "fmt_internal.h"

/* --------------------------------------------------------------- globals */

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
		return mfs_pk_set_fail(p, MFS_PK_LIMIT, "more than %u global references",
		                       p->lim->max_globals);
	if (p->nglobals == p->capglobals) {
		uint32_t cap = p->capglobals ? 2 * p->capglobals : 8;
		void *np = realloc(p->globals, cap * sizeof(*p->globals));

		if (!np)
			return mfs_pk_set_fail(p, MFS_PK_TOOBIG, "out of memory");
		p->globals = np;
		p->capglobals = cap;
	}
	if ((rc = mfs_pk_charge(p, mlen + nlen + 2 + sizeof(*g))))
		return rc;
	g = &p->globals[p->nglobals];
	g->module = strndup(m, mlen);
	g->name = strndup(n, nlen);
	if (!g->module || !g->name) {
		free(g->module);
		free(g->name);
		return mfs_pk_set_fail(p, MFS_PK_TOOBIG, "out of memory");
	}
	g->offset = off;
	g->cls = mfs_global_class(g->module, g->name);
	p->nglobals++;
	if (!push)
		return 0;
	if ((rc = mfs_pk_new(p, MFS_PK_GLOBAL, off, &id)))
		return rc;
	p->nodes[id].a = p->nglobals - 1;
	return mfs_pk_push(p, id);
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

int mfs_pk_op_stack_global(struct mfs_pickle *p, uint64_t off)
{
	uint32_t mid, nid, id;
	const char *m, *n;
	int rc;

	if ((rc = mfs_pk_pop(p, &nid)) || (rc = mfs_pk_pop(p, &mid)))
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
		if ((rc = mfs_pk_new(p, MFS_PK_GLOBAL, off, &id)))
			return rc;
		p->nodes[id].a = UINT32_MAX;
		return mfs_pk_push(p, id);
	}
	return pk_global(p, m, strlen(m), n, strlen(n), off, true);
}

/* GLOBAL and INST arguments: "module\nname\n". */
static int read_global_lines(struct mfs_pickle *p, char *m, size_t *mlen, char *n, size_t *nlen)
{
	const char *l;
	size_t len;
	int rc = mfs_pk_line(p, &l, &len);

	if (rc)
		return rc;
	memcpy(m, l, len);
	*mlen = len;
	if ((rc = mfs_pk_line(p, &l, &len)))
		return rc;
	memcpy(n, l, len);
	*nlen = len;
	if (!*mlen || !*nlen || memchr(m, 0, *mlen) || memchr(n, 0, *nlen) ||
	    !mv_utf8_valid(m, *mlen) || !mv_utf8_valid(n, *nlen))
		return mfs_pk_set_fail(p, MFS_PK_MALFORMED, "GLOBAL argument is not a UTF-8 name");
	return 0;
}

int mfs_pk_op_global(struct mfs_pickle *p, uint64_t off)
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
	int rc = mfs_pk_new(p, MFS_PK_OBJ, off, &id);

	if (rc)
		return rc;
	p->nodes[id].a = cls;
	p->nodes[id].b = args;
	p->nodes[id].c = kw;
	return mfs_pk_push(p, id);
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
	int rc = mfs_pk_popmark(p, &base);

	if (rc)
		return rc;
	if (skip) {
		if (p->sp - base < skip)
			return mfs_pk_set_fail(p, MFS_PK_MALFORMED, "OBJ without a class");
		*first = p->stack[base];
	}
	if ((rc = mfs_pk_new(p, MFS_PK_TUPLE, off, tuple)))
		return rc;
	for (uint32_t i = base + skip; i < p->sp; i++)
		if ((rc = mfs_pk_kid(p, *tuple, p->stack[i])))
			return rc;
	p->sp = base;
	return 0;
}

int mfs_pk_op_inst(struct mfs_pickle *p, uint64_t off)
{
	char m[PK_MAXLINE + 1], n[PK_MAXLINE + 1];
	size_t ml, nl;
	uint32_t args, cls, dummy;
	int rc = read_global_lines(p, m, &ml, n, &nl);

	if (rc || (rc = mark_tuple(p, off, 0, &dummy, &args)))
		return rc;
	if ((rc = pk_global(p, m, ml, n, nl, off, false)))
		return rc;
	if ((rc = mfs_pk_new(p, MFS_PK_GLOBAL, off, &cls)))
		return rc;
	p->nodes[cls].a = p->nglobals - 1;
	return push_obj(p, cls, args, 0, off);
}

int mfs_pk_op_obj(struct mfs_pickle *p, uint64_t off)
{
	uint32_t cls = 0, args;
	int rc = mark_tuple(p, off, 1, &cls, &args);

	if (rc)
		return rc;
	check_callable(p, cls, off, "OBJ");
	return push_obj(p, cls, args, 0, off);
}

int mfs_pk_op_reduce(struct mfs_pickle *p, uint64_t off)
{
	uint32_t args, fn, id;
	int rc;

	if ((rc = mfs_pk_pop(p, &args)) || (rc = mfs_pk_pop(p, &fn)))
		return rc;
	check_callable(p, fn, off, "REDUCE");
	if ((rc = mfs_pk_new(p, MFS_PK_CALL, off, &id)))
		return rc;
	p->nodes[id].a = fn;
	p->nodes[id].b = args;
	return mfs_pk_push(p, id);
}

int mfs_pk_op_newobj(struct mfs_pickle *p, uint64_t off, bool ex)
{
	uint32_t cls, args, kw = 0;
	int rc;

	if (ex && (rc = mfs_pk_pop(p, &kw)))
		return rc;
	if ((rc = mfs_pk_pop(p, &args)) || (rc = mfs_pk_pop(p, &cls)))
		return rc;
	check_callable(p, cls, off, ex ? "NEWOBJ_EX" : "NEWOBJ");
	return push_obj(p, cls, args, kw, off);
}

int mfs_pk_op_build(struct mfs_pickle *p, uint64_t off)
{
	uint32_t state, obj;
	int rc;

	if ((rc = mfs_pk_pop(p, &state)) || (rc = mfs_pk_top(p, &obj)))
		return rc;
	p->nodes[obj].st = state;
	return 0;
}

int mfs_pk_op_persid(struct mfs_pickle *p, uint32_t pid, uint64_t off, bool text)
{
	const struct mfs_pnode *t = mfs_pickle_node(p, pid);
	uint32_t id = 0;
	int rc;

	if (p->persid_stops)
		return mfs_pk_set_fail(
		    p, MFS_PK_MALFORMED,
		    "offset %llu: a persistent id, where pickle.load (no persistent_load) stops",
		    (unsigned long long)off);
	if (text || !t || t->kind != MFS_PK_TUPLE || t->n < 1 || !str_of(p, t->kids[0]) ||
	    strcmp(str_of(p, t->kids[0]), "storage") != 0)
		mfs_pickle_add_reason(p, MFS_VERDICT_UNSAFE,
		                      "offset %llu: persistent id is not a ('storage', ...) tuple",
		                      (unsigned long long)off);
	if ((rc = mfs_pk_new(p, MFS_PK_PERSID, off, &id)))
		return rc;
	p->nodes[id].a = pid;
	if (p->npersids == p->cappersids) {
		uint32_t cap = p->cappersids ? 2 * p->cappersids : 16;
		void *np = realloc(p->persids, cap * sizeof(uint32_t));

		if (!np)
			return mfs_pk_set_fail(p, MFS_PK_TOOBIG, "out of memory");
		p->persids = np;
		p->cappersids = cap;
	}
	p->persids[p->npersids++] = id;
	return mfs_pk_push(p, id);
}

int mfs_pk_op_ext(struct mfs_pickle *p, unsigned nbytes, uint64_t off)
{
	uint64_t code;
	uint32_t id = 0;
	int rc = mfs_pk_le(p, nbytes, &code);

	if (rc)
		return rc;
	p->seen_import = true;
	mfs_pickle_add_reason(p, MFS_VERDICT_UNSAFE,
	                      "offset %llu: EXT%u imports extension code %llu (cannot be resolved)",
	                      (unsigned long long)off, nbytes == 4 ? 4u : nbytes,
	                      (unsigned long long)code);
	if ((rc = mfs_pk_new(p, MFS_PK_EXT, off, &id)))
		return rc;
	p->nodes[id].i = (int64_t)code;
	return mfs_pk_push(p, id);
}
