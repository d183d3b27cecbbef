// SPDX-License-Identifier: Apache-2.0
/*
 * transcode.c - torch checkpoints to safetensors, without executing anything
 * (docs/transcode.md): the plan, made from the pickle's value graph.
 *
 * A plan is made by parsing data.pkl (or the legacy pickles) with the
 * restricted reader of pickle.c and walking its value graph: the root must
 * be a dict or OrderedDict of tensors (or hold one under "state_dict"), each
 * tensor a _rebuild_tensor_v2/v3 call, maybe wrapped in _rebuild_parameter,
 * over a ('storage', type, key, location, numel) persistent id. Anything else
 * is refused. Tensors that share memory are handled as the reference
 * converter (huggingface safetensors convert.py) does.
 *
 * This file holds the plan and that walk: storages, tensors, their extents
 * and shared memory. Finding the pickles and each storage's bytes in the
 * file is tx_torch.c's (the zip and legacy containers), writing the output
 * tx_write.c's, names and index.json tx_names.c's.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmt_internal.h"
#include "tx_internal.h"

/* ------------------------------------------------------------- plan basics */

void mfs_tx_plan_free(struct mfs_tx_plan *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nst; i++) {
		free(p->st[i].key);
		free(p->st[i].type);
	}
	free(p->st);
	for (size_t i = 0; i < p->nt; i++) {
		free(p->t[i].name);
		free(p->t[i].shape);
		free(p->t[i].stride);
	}
	free(p->t);
	free(p->order);
	free(p->header);
	free(p->name);
	free(p);
}

uint64_t mfs_tx_plan_size(const struct mfs_tx_plan *p)
{
	return (uint64_t)p->header_len + p->data_len;
}

size_t mfs_tx_plan_header(const struct mfs_tx_plan *p, const uint8_t **hdr)
{
	*hdr = p->header;
	return p->header_len;
}

size_t mfs_tx_plan_count(const struct mfs_tx_plan *p)
{
	return p->norder;
}

const char *mfs_tx_plan_tensor(const struct mfs_tx_plan *p, size_t i)
{
	return i < p->norder ? p->t[p->order[i]].name : NULL;
}

uint64_t mfs_tx_plan_data_size(const struct mfs_tx_plan *p)
{
	return p->data_len;
}

/* ------------------------------------------------------------ graph access */

const struct mfs_pnode *mfs_tx_node(const struct mfs_tx_walk *w, uint32_t id)
{
	return mfs_pickle_node(w->pk, id);
}

/* The global a GLOBAL node names, or NULL (unresolved or not a global). */
static const struct mfs_pglobal *global_of(const struct mfs_tx_walk *w, uint32_t id)
{
	const struct mfs_pnode *n = mfs_tx_node(w, id);

	if (!n || n->kind != MFS_PK_GLOBAL || n->a >= w->pk->nglobals)
		return NULL;
	return &w->pk->globals[n->a];
}

static bool is_global(const struct mfs_tx_walk *w, uint32_t id, const char *module,
                      const char *name)
{
	const struct mfs_pglobal *g = global_of(w, id);

	return g && strcmp(g->module, module) == 0 && strcmp(g->name, name) == 0;
}

/* A kept str without NUL bytes, or NULL. */
const char *mfs_tx_str(const struct mfs_tx_walk *w, uint32_t id)
{
	const struct mfs_pnode *n = mfs_tx_node(w, id);

	if (!n || n->kind != MFS_PK_STR || n->big || !n->s || strlen(n->s) != n->len ||
	    !mv_utf8_valid(n->s, n->len))
		return NULL;
	return n->s;
}

/* A non-negative int; false otherwise. */
bool mfs_tx_uint(const struct mfs_tx_walk *w, uint32_t id, uint64_t *v)
{
	const struct mfs_pnode *n = mfs_tx_node(w, id);

	if (!n || n->kind != MFS_PK_INT || n->i < 0)
		return false;
	*v = (uint64_t)n->i;
	return true;
}

/* The items of a tuple node (torch.Size(tuple) counts as its tuple). */
static const struct mfs_pnode *tuple_of(const struct mfs_tx_walk *w, uint32_t id)
{
	const struct mfs_pnode *n = mfs_tx_node(w, id);

	if (n && n->kind == MFS_PK_CALL && is_global(w, n->a, "torch", "Size")) {
		const struct mfs_pnode *args = mfs_tx_node(w, n->b);

		if (!args || args->kind != MFS_PK_TUPLE || args->n != 1)
			return NULL;
		n = mfs_tx_node(w, args->kids[0]);
	}
	return n && n->kind == MFS_PK_TUPLE ? n : NULL;
}

/* A short description of a value, for "is not a tensor" messages. */
static const char *kind_name(const struct mfs_tx_walk *w, uint32_t id)
{
	const struct mfs_pnode *n = mfs_tx_node(w, id);

	if (!n)
		return "nothing";
	switch (n->kind) {
	case MFS_PK_NONE: return "None";
	case MFS_PK_BOOL: return "a bool";
	case MFS_PK_INT:
	case MFS_PK_LONG: return "an int";
	case MFS_PK_FLOAT: return "a float";
	case MFS_PK_STR: return "a str";
	case MFS_PK_BYTES: return "bytes";
	case MFS_PK_TUPLE: return "a tuple";
	case MFS_PK_LIST: return "a list";
	case MFS_PK_DICT: return "a dict";
	case MFS_PK_SET:
	case MFS_PK_FROZENSET: return "a set";
	default: return "an object";
	}
}

/*
 * The key/value pairs of a dict or OrderedDict node (kids hold key, value,
 * key, value, ...). Return: true when @id is one.
 */
static bool dict_items(const struct mfs_tx_walk *w, uint32_t id, const uint32_t **kv, uint32_t *n)
{
	const struct mfs_pnode *d = mfs_tx_node(w, id), *args;

	if (!d)
		return false;
	if (d->kind != MFS_PK_DICT) {
		if (d->kind != MFS_PK_CALL && d->kind != MFS_PK_OBJ)
			return false;
		if (!is_global(w, d->a, "collections", "OrderedDict"))
			return false;
		/* torch writes OrderedDict() then SETITEMS: no constructor arguments */
		args = mfs_tx_node(w, d->b);
		if (!args || args->kind != MFS_PK_TUPLE || args->n != 0)
			return false;
	}
	if (d->n % 2)
		return false;
	*kv = d->kids;
	*n = d->n / 2;
	return true;
}

/* ---------------------------------------------------------------- storages */

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

/* The slot of @key: its entry, or the empty slot where it would go. */
static size_t key_slot(const struct mfs_tx_walk *w, const char *key)
{
	size_t i = (size_t)hash_str(key) & (w->nslots - 1);

	while (w->slots[i] && strcmp(w->p->st[w->slots[i] - 1].key, key) != 0)
		i = (i + 1) & (w->nslots - 1);
	return i;
}

/* Index of storage @key, or -1. */
ssize_t mfs_tx_storage_find(const struct mfs_tx_walk *w, const char *key)
{
	size_t i;

	if (!w->nslots)
		return -1;
	i = key_slot(w, key);
	return w->slots[i] ? (ssize_t)w->slots[i] - 1 : -1;
}

/* Rehashes into @n slots (a power of two). */
static int slots_grow(struct mfs_tx_walk *w, size_t n)
{
	uint32_t *old = w->slots;
	size_t oldn = w->nslots;

	w->slots = calloc(n, sizeof(*w->slots));
	if (!w->slots) {
		w->slots = old;
		return -ENOMEM;
	}
	w->nslots = n;
	for (size_t i = 0; i < oldn; i++)
		if (old[i])
			w->slots[key_slot(w, w->p->st[old[i] - 1].key)] = old[i];
	free(old);
	return 0;
}

/* Appends a storage; returns its index in *@idx. */
static int storage_add(struct mfs_tx_walk *w, const char *key, const char *cls, int dtype,
                       unsigned size, uint64_t numel, uint32_t *idx)
{
	struct mfs_tx_plan *p = w->p;
	struct mfs_tx_storage *s;
	int rc;

	if (p->nst >= UINT32_MAX / 2)
		return mv_err_set(w->err, -EOPNOTSUPP, "%s: too many storages", p->name);
	if ((p->nst + 1) * 2 > w->nslots && (rc = slots_grow(w, w->nslots ? 2 * w->nslots : 64)))
		return rc;
	if (p->nst == p->capst) {
		size_t cap = p->capst ? 2 * p->capst : 16;
		void *np = realloc(p->st, cap * sizeof(*p->st));

		if (!np)
			return -ENOMEM;
		p->st = np;
		p->capst = cap;
	}
	s = &p->st[p->nst];
	memset(s, 0, sizeof(*s));
	s->key = strdup(key);
	s->type = strdup(cls);
	if (!s->key || !s->type) {
		free(s->key);
		free(s->type);
		return -ENOMEM;
	}
	s->dtype = dtype;
	s->elsize = size;
	s->numel = numel;
	if (__builtin_mul_overflow(numel, (uint64_t)size, &s->nbytes)) {
		free(s->key);
		free(s->type);
		return mv_err_set(w->err, -EBADMSG, "%s: storage '%s' is impossibly large", p->name,
		                  key);
	}
	w->slots[key_slot(w, key)] = (uint32_t)p->nst + 1;
	*idx = (uint32_t)p->nst++;
	return 0;
}

/*
 * Resolves a persistent id ('storage', type, key, location, numel[, view])
 * to a storage, registering it on first sight. As torch does, the first
 * reference to a key fixes its type and size; later ones must agree.
 */
int mfs_tx_storage_ref(struct mfs_tx_walk *w, uint32_t id, uint32_t *idx)
{
	const struct mfs_pnode *pers = mfs_tx_node(w, id), *pid;
	const struct mfs_pglobal *g;
	const char *tag, *key;
	uint64_t numel;
	const struct mfs_torch_type *tt;
	ssize_t have;
	const char *name = w->p->name;

	if (!pers || pers->kind != MFS_PK_PERSID || !(pid = mfs_tx_node(w, pers->a)) ||
	    pid->kind != MFS_PK_TUPLE || pid->n != (w->legacy ? 6u : 5u))
		return mv_err_set(w->err, -EBADMSG, "%s: tensor storage is not a persistent id",
		                  name);
	tag = mfs_tx_str(w, pid->kids[0]);
	key = mfs_tx_str(w, pid->kids[2]);
	g = global_of(w, pid->kids[1]);
	if (!tag || strcmp(tag, "storage") != 0 || !key || !mfs_tx_str(w, pid->kids[3]) ||
	    !mfs_tx_uint(w, pid->kids[4], &numel) || !g || strcmp(g->module, "torch") != 0)
		return mv_err_set(w->err, -EBADMSG, "%s: malformed storage persistent id", name);
	if (w->legacy &&
	    (!mfs_tx_node(w, pid->kids[5]) || mfs_tx_node(w, pid->kids[5])->kind != MFS_PK_NONE))
		return mv_err_set(w->err, -EOPNOTSUPP,
		                  "%s: storage views (legacy view_metadata) "
		                  "are not supported",
		                  name);
	tt = mfs_torch_storage(g->name);
	if (!tt)
		return mv_err_set(w->err, -EOPNOTSUPP, "%s: unknown storage type torch.%s", name,
		                  g->name);
	have = mfs_tx_storage_find(w, key);
	if (have < 0)
		return storage_add(w, key, g->name, tt->st, tt->size, numel, idx);
	*idx = (uint32_t)have;
	if (strcmp(w->p->st[have].type, g->name) != 0 || w->p->st[have].numel != numel)
		return mv_err_set(w->err, -EBADMSG,
		                  "%s: storage '%s' is referenced with two types or sizes", name,
		                  key);
	return 0;
}

/* ----------------------------------------------------------------- tensors */

/* Reads a tuple of non-negative ints into a malloc'd array. */
static int int_tuple(const struct mfs_tx_walk *w, uint32_t id, uint64_t **out, uint32_t *n)
{
	const struct mfs_pnode *t = tuple_of(w, id);

	*out = NULL;
	if (!t || t->n > MFS_TX_MAX_DIMS)
		return -EBADMSG;
	*n = t->n;
	*out = calloc(t->n ? t->n : 1, sizeof(uint64_t));
	if (!*out)
		return -ENOMEM;
	for (uint32_t i = 0; i < t->n; i++)
		if (!mfs_tx_uint(w, t->kids[i], &(*out)[i]))
			return -EBADMSG;
	return 0;
}

/* Element count, byte range and contiguity of @t; checks them against its storage. */
static int tensor_extent(struct mfs_tx_walk *w, struct mfs_tx_tensor *t)
{
	const struct mfs_tx_storage *s = &w->p->st[t->storage];
	uint64_t nel = 1, maxidx = 0, expect = 1, end;
	bool ovf = false;

	t->contiguous = true;
	for (uint32_t d = t->ndim; d-- > 0;) {
		uint64_t span;

		ovf |= __builtin_mul_overflow(nel, t->shape[d], &nel);
		if (t->shape[d] > 1) {
			ovf |= __builtin_mul_overflow(t->shape[d] - 1, t->stride[d], &span);
			ovf |= __builtin_add_overflow(maxidx, span, &maxidx);
			t->contiguous &= t->stride[d] == expect;
		}
		ovf |= __builtin_mul_overflow(expect, t->shape[d], &expect);
	}
	t->nelem = nel;
	ovf |= __builtin_mul_overflow(nel, (uint64_t)t->elsize, &t->nbytes);
	ovf |= __builtin_mul_overflow(t->offset, (uint64_t)t->elsize, &t->lo);
	if (ovf)
		return mv_err_set(w->err, -EBADMSG, "%s: tensor '%s' has an impossible shape",
		                  w->p->name, t->name);
	t->hi = t->lo;
	if (!nel)
		return 0; /* reads nothing: torch does not check its offset either */
	if (__builtin_add_overflow(t->offset, maxidx, &end) || end == UINT64_MAX ||
	    __builtin_mul_overflow(end + 1, (uint64_t)t->elsize, &t->hi) || t->hi > s->nbytes)
		return mv_err_set(w->err, -EBADMSG,
		                  "%s: tensor '%s' reads past the end of its storage", w->p->name,
		                  t->name);
	return 0;
}

/* The safetensors dtype of a torch.<dtype> global, or a refusal. */
static int dtype_arg(struct mfs_tx_walk *w, uint32_t id, const char *tname, int *dt)
{
	const struct mfs_pglobal *g = global_of(w, id);
	const struct mfs_torch_type *tt;

	if (!g || strcmp(g->module, "torch") != 0)
		return mv_err_set(w->err, -EBADMSG, "%s: tensor '%s': dtype is not a torch dtype",
		                  w->p->name, tname);
	tt = mfs_torch_dtype(g->name);
	if (tt && tt->st >= 0) {
		*dt = tt->st;
		return 0;
	}
	return mv_err_set(w->err, -EOPNOTSUPP,
	                  "%s: tensor '%s': dtype torch.%s has no safetensors equivalent",
	                  w->p->name, tname, g->name);
}

/* Refuses tensor @t: safetensors cannot hold the dtype of its storage @s. */
static int bad_dtype(struct mfs_tx_walk *w, const struct mfs_tx_tensor *t,
                     const struct mfs_tx_storage *s)
{
	const struct mfs_torch_type *tt = mfs_torch_storage(s->type);

	if (!tt)
		return -EOPNOTSUPP;
	return mv_err_set(w->err, -EOPNOTSUPP,
	                  "%s: tensor '%s' has dtype %s%s, which safetensors cannot represent",
	                  w->p->name, t->name, tt->dtype ? tt->dtype : "bytes",
	                  tt->quantized ? " (quantized)" : "");
}

/*
 * Fills @t from a _rebuild_tensor_v2/v3 call, unwrapping _rebuild_parameter
 * (nn.Parameter). @t->name is set by the caller.
 */
static int parse_tensor(struct mfs_tx_walk *w, uint32_t id, struct mfs_tx_tensor *t, int depth)
{
	const struct mfs_pnode *call = mfs_tx_node(w, id), *args;
	const char *nm = w->p->name;
	bool v3;
	uint32_t ns = 0;
	int rc;

	if (!call || call->kind != MFS_PK_CALL || !(args = mfs_tx_node(w, call->b)) ||
	    args->kind != MFS_PK_TUPLE)
		goto not_tensor;
	if (depth < 2 &&
	    ((is_global(w, call->a, "torch._utils", "_rebuild_parameter") && args->n == 3) ||
	     (is_global(w, call->a, "torch._utils", "_rebuild_parameter_with_state") &&
	      args->n == 4)))
		return parse_tensor(w, args->kids[0], t, depth + 1);
	v3 = is_global(w, call->a, "torch._utils", "_rebuild_tensor_v3");
	if (!v3 && !is_global(w, call->a, "torch._utils", "_rebuild_tensor_v2"))
		goto not_tensor;
	if (args->n < (v3 ? 7u : 6u) || args->n > (v3 ? 8u : 7u))
		return mv_err_set(w->err, -EBADMSG, "%s: tensor '%s': wrong number of arguments",
		                  nm, t->name);
	if ((rc = mfs_tx_storage_ref(w, args->kids[0], &t->storage)))
		return rc;
	rc = int_tuple(w, args->kids[2], &t->shape, &t->ndim);
	if (!rc)
		rc = int_tuple(w, args->kids[3], &t->stride, &ns);
	if (rc == -ENOMEM)
		return rc;
	if (rc || ns != t->ndim || !mfs_tx_uint(w, args->kids[1], &t->offset))
		return mv_err_set(w->err, -EBADMSG, "%s: tensor '%s': bad offset, size or stride",
		                  nm, t->name);
	const struct mfs_tx_storage *s = &w->p->st[t->storage];

	if (v3 && (rc = dtype_arg(w, args->kids[6], t->name, &t->dtype)))
		return rc;
	if (s->dtype == MFS_TORCH_NO_ST)
		return bad_dtype(w, t, s);
	if (!v3)
		t->dtype = s->dtype == MFS_TORCH_UNTYPED ? MFS_ST_U8 : s->dtype;
	t->elsize = mfs_st_dtype_size(t->dtype);
	return tensor_extent(w, t);
not_tensor:
	return mv_err_set(w->err, -EOPNOTSUPP, "%s: value of '%s' is %s, not a tensor", nm, t->name,
	                  kind_name(w, id));
}

/* Appends a tensor named @key for the value node @val. */
static int add_tensor(struct mfs_tx_walk *w, const char *key, uint32_t val)
{
	struct mfs_tx_plan *p = w->p;
	struct mfs_tx_tensor *t;

	if (p->nt == p->capt) {
		size_t cap = p->capt ? 2 * p->capt : 64;
		void *np = realloc(p->t, cap * sizeof(*p->t));

		if (!np)
			return -ENOMEM;
		p->t = np;
		p->capt = cap;
	}
	t = &p->t[p->nt];
	memset(t, 0, sizeof(*t));
	if (!(t->name = strdup(key)))
		return -ENOMEM;
	p->nt++; /* counted now, so mfs_tx_plan_free releases what parse_tensor allocates */
	return parse_tensor(w, val, t, 0);
}

static int cmp_tname(const void *a, const void *b)
{
	return strcmp(((const struct mfs_tx_tensor *)a)->name,
	              ((const struct mfs_tx_tensor *)b)->name);
}

/*
 * Walks the root object: a state_dict, or a dict holding one under
 * "state_dict" (as the reference converter unwraps it).
 */
int mfs_tx_walk_root(struct mfs_tx_walk *w, uint32_t root)
{
	const uint32_t *kv;
	uint32_t n;
	int rc;

	if (!dict_items(w, root, &kv, &n))
		return mv_err_set(w->err, -EOPNOTSUPP,
		                  "%s: not a state_dict (the checkpoint holds %s)", w->p->name,
		                  kind_name(w, root));
	for (uint32_t i = 0; i < n; i++) {
		const char *k = mfs_tx_str(w, kv[2 * i]);
		const uint32_t *kv2;
		uint32_t n2;

		if (k && strcmp(k, "state_dict") == 0 && dict_items(w, kv[2 * i + 1], &kv2, &n2)) {
			kv = kv2;
			n = n2;
			break;
		}
	}
	for (uint32_t i = 0; i < n; i++) {
		const char *k = mfs_tx_str(w, kv[2 * i]);

		if (!k)
			return mv_err_set(w->err, -EOPNOTSUPP,
			                  "%s: state_dict key #%u is not a text string", w->p->name,
			                  i);
		if ((rc = add_tensor(w, k, kv[2 * i + 1])))
			return rc;
	}
	/* Names must be unique: a pickle repeating one is not what torch.save writes. */
	if (w->p->nt)
		qsort(w->p->t, w->p->nt, sizeof(*w->p->t), cmp_tname);
	for (size_t i = 1; i < w->p->nt; i++)
		if (strcmp(w->p->t[i - 1].name, w->p->t[i].name) == 0)
			return mv_err_set(w->err, -EBADMSG, "%s: key '%s' appears twice",
			                  w->p->name, w->p->t[i].name);
	return 0;
}

/* ----------------------------------------------------------- shared memory */

/* Where a tensor's bytes stop, as the reference computes it (empty: its start). */
static uint64_t area_stop(const struct mfs_tx_tensor *t)
{
	return t->nelem ? t->hi : t->lo;
}

/* Reference order of areas: storage, start, stop, name. */
static int cmp_area(const void *a, const void *b, void *ctx)
{
	const struct mfs_tx_plan *p = ctx;
	const struct mfs_tx_tensor *x = &p->t[*(const uint32_t *)a];
	const struct mfs_tx_tensor *y = &p->t[*(const uint32_t *)b];

	if (x->storage != y->storage)
		return x->storage < y->storage ? -1 : 1;
	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	if (area_stop(x) != area_stop(y))
		return area_stop(x) < area_stop(y) ? -1 : 1;
	return strcmp(x->name, y->name);
}

/*
 * One group of overlapping tensors: keep the first name (in sorted order)
 * among those covering the whole storage, record the others as removed.
 * As the reference, a group where none covers it is refused.
 */
static int resolve_group(struct mfs_tx_walk *w, const uint32_t *ids, size_t n)
{
	struct mfs_tx_plan *p = w->p;
	const struct mfs_tx_storage *s = &p->st[p->t[ids[0]].storage];
	ssize_t keep = -1;

	for (size_t i = 0; i < n; i++) {
		const struct mfs_tx_tensor *t = &p->t[ids[i]];

		if (t->lo != 0 || t->nbytes != s->nbytes)
			continue;
		if (keep < 0 || strcmp(t->name, p->t[keep].name) < 0)
			keep = ids[i];
	}
	if (keep < 0)
		return mv_err_set(
		    w->err, -EOPNOTSUPP,
		    "%s: tensors '%s' and '%s'%s share storage '%s' but none covers it "
		    "whole (the reference converter refuses this too)",
		    p->name, p->t[ids[0]].name, p->t[ids[1]].name, n > 2 ? " (and others)" : "",
		    s->key);
	for (size_t i = 0; i < n; i++)
		if ((ssize_t)ids[i] != keep) {
			p->t[ids[i]].removed = true;
			p->t[ids[i]].kept = (uint32_t)keep;
		}
	return 0;
}

/*
 * Finds tensors sharing memory the way safetensors' _find_shared_tensors and
 * _filter_shared_not_shared do: per non-empty storage, areas sorted by
 * (start, stop, name) join the current group while they start before the
 * previous area's stop.
 */
int mfs_tx_dedupe_shared(struct mfs_tx_walk *w)
{
	struct mfs_tx_plan *p = w->p;
	uint32_t *ids;
	size_t n = 0;
	int rc = 0;

	ids = malloc((p->nt ? p->nt : 1) * sizeof(*ids));
	if (!ids)
		return -ENOMEM;
	for (size_t i = 0; i < p->nt; i++)
		if (p->st[p->t[i].storage].nbytes)
			ids[n++] = (uint32_t)i;
	qsort_r(ids, n, sizeof(*ids), cmp_area, p);
	for (size_t i = 0; i < n && !rc;) {
		size_t j = i + 1;
		uint64_t last_stop = area_stop(&p->t[ids[i]]);

		/* one group: same storage, each area starting before the previous stop */
		while (j < n && p->t[ids[j]].storage == p->t[ids[i]].storage &&
		       p->t[ids[j]].lo < last_stop) {
			last_stop = area_stop(&p->t[ids[j]]);
			j++;
		}
		if (j - i > 1)
			rc = resolve_group(w, ids + i, j - i);
		i = j;
	}
	free(ids);
	return rc;
}