// SPDX-License-Identifier: Apache-2.0
/*
 * transcode.c - torch checkpoints (zip and legacy formats) to safetensors,
 * without executing anything (docs/transcode.md).
 *
 * Making a plan parses data.pkl (or the legacy pickles) with the restricted
 * reader of pickle.c and walks its value graph: the root must be a dict or
 * OrderedDict of tensors (or hold one under "state_dict"), each tensor a
 * _rebuild_tensor_v2/v3 call, maybe wrapped in _rebuild_parameter, over a
 * ('storage', type, key, location, numel) persistent id. Anything else is
 * refused. Tensors that share memory are handled as the reference converter
 * (huggingface safetensors convert.py) does. The plan then knows where each
 * storage's bytes are in the file, and the exact output layout.
 *
 * Writing copies contiguous tensors in chunks (copy_file_range when the
 * source is a plain file) and gathers non-contiguous views through bounded
 * buffers, swapping bytes when the checkpoint says it is big-endian.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "fmt_internal.h"
#include "tx_internal.h"

#define PKL_LIMIT     (4ull << 30)   /* most bytes data.pkl may inflate to */
#define CHUNK         (8u << 20)     /* I/O buffer for copies and gathers */
#define GATHER_MEM    (128ull << 20) /* views spanning up to this are gathered in memory */
#define GATHER_WINDOW (64ull << 20)  /* else: source windows of this size */
#define LEGACY_PROTO  1001
#define KICK          (16ull << 20) /* start writeback every this many output bytes */
/*
 * Broadcast views (stride 0) can describe far more elements than their
 * storage holds; the output may exceed the checkpoint by this much at most,
 * so a small file cannot fill a disk.
 */
#define GROWTH_SLACK (256ull << 20)

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

/* State of one plan being made. */
struct walk {
	struct mfs_pickle *pk;
	struct mfs_tx_plan *p;
	struct mv_err *err;
	bool legacy;
	/* storage key -> index (open addressing, 0 = empty, else index + 1) */
	uint32_t *slots;
	size_t nslots;
};

static const struct mfs_pnode *node(const struct walk *w, uint32_t id)
{
	return mfs_pickle_node(w->pk, id);
}

/* The global a GLOBAL node names, or NULL (unresolved or not a global). */
static const struct mfs_pglobal *global_of(const struct walk *w, uint32_t id)
{
	const struct mfs_pnode *n = node(w, id);

	if (!n || n->kind != MFS_PK_GLOBAL || n->a >= w->pk->nglobals)
		return NULL;
	return &w->pk->globals[n->a];
}

static bool is_global(const struct walk *w, uint32_t id, const char *module, const char *name)
{
	const struct mfs_pglobal *g = global_of(w, id);

	return g && strcmp(g->module, module) == 0 && strcmp(g->name, name) == 0;
}

/* A kept str without NUL bytes, or NULL. */
static const char *str_of(const struct walk *w, uint32_t id)
{
	const struct mfs_pnode *n = node(w, id);

	if (!n || n->kind != MFS_PK_STR || n->big || !n->s || strlen(n->s) != n->len ||
	    !mv_utf8_valid(n->s, n->len))
		return NULL;
	return n->s;
}

/* A non-negative int; false otherwise. */
static bool uint_of(const struct walk *w, uint32_t id, uint64_t *v)
{
	const struct mfs_pnode *n = node(w, id);

	if (!n || n->kind != MFS_PK_INT || n->i < 0)
		return false;
	*v = (uint64_t)n->i;
	return true;
}

/* The items of a tuple node (torch.Size(tuple) counts as its tuple). */
static const struct mfs_pnode *tuple_of(const struct walk *w, uint32_t id)
{
	const struct mfs_pnode *n = node(w, id);

	if (n && n->kind == MFS_PK_CALL && is_global(w, n->a, "torch", "Size")) {
		const struct mfs_pnode *args = node(w, n->b);

		if (!args || args->kind != MFS_PK_TUPLE || args->n != 1)
			return NULL;
		n = node(w, args->kids[0]);
	}
	return n && n->kind == MFS_PK_TUPLE ? n : NULL;
}

/* A short description of a value, for "is not a tensor" messages. */
static const char *kind_name(const struct walk *w, uint32_t id)
{
	const struct mfs_pnode *n = node(w, id);

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
static bool dict_items(const struct walk *w, uint32_t id, const uint32_t **kv, uint32_t *n)
{
	const struct mfs_pnode *d = node(w, id), *args;

	if (!d)
		return false;
	if (d->kind != MFS_PK_DICT) {
		if (d->kind != MFS_PK_CALL && d->kind != MFS_PK_OBJ)
			return false;
		if (!is_global(w, d->a, "collections", "OrderedDict"))
			return false;
		/* torch writes OrderedDict() then SETITEMS: no constructor arguments */
		args = node(w, d->b);
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
static size_t key_slot(const struct walk *w, const char *key)
{
	size_t i = (size_t)hash_str(key) & (w->nslots - 1);

	while (w->slots[i] && strcmp(w->p->st[w->slots[i] - 1].key, key) != 0)
		i = (i + 1) & (w->nslots - 1);
	return i;
}

/* Index of storage @key, or -1. */
static ssize_t storage_find(const struct walk *w, const char *key)
{
	size_t i;

	if (!w->nslots)
		return -1;
	i = key_slot(w, key);
	return w->slots[i] ? (ssize_t)w->slots[i] - 1 : -1;
}

/* Rehashes into @n slots (a power of two). */
static int slots_grow(struct walk *w, size_t n)
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
static int storage_add(struct walk *w, const char *key, const char *cls, int dtype, unsigned size,
                       uint64_t numel, uint32_t *idx)
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
static int storage_ref(struct walk *w, uint32_t id, uint32_t *idx)
{
	const struct mfs_pnode *pers = node(w, id), *pid;
	const struct mfs_pglobal *g;
	const char *tag, *key;
	uint64_t numel;
	const struct mfs_torch_type *tt;
	ssize_t have;
	const char *name = w->p->name;

	if (!pers || pers->kind != MFS_PK_PERSID || !(pid = node(w, pers->a)) ||
	    pid->kind != MFS_PK_TUPLE || pid->n != (w->legacy ? 6u : 5u))
		return mv_err_set(w->err, -EBADMSG, "%s: tensor storage is not a persistent id",
		                  name);
	tag = str_of(w, pid->kids[0]);
	key = str_of(w, pid->kids[2]);
	g = global_of(w, pid->kids[1]);
	if (!tag || strcmp(tag, "storage") != 0 || !key || !str_of(w, pid->kids[3]) ||
	    !uint_of(w, pid->kids[4], &numel) || !g || strcmp(g->module, "torch") != 0)
		return mv_err_set(w->err, -EBADMSG, "%s: malformed storage persistent id", name);
	if (w->legacy && (!node(w, pid->kids[5]) || node(w, pid->kids[5])->kind != MFS_PK_NONE))
		return mv_err_set(w->err, -EOPNOTSUPP,
		                  "%s: storage views (legacy view_metadata) "
		                  "are not supported",
		                  name);
	tt = mfs_torch_storage(g->name);
	if (!tt)
		return mv_err_set(w->err, -EOPNOTSUPP, "%s: unknown storage type torch.%s", name,
		                  g->name);
	have = storage_find(w, key);
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
static int int_tuple(const struct walk *w, uint32_t id, uint64_t **out, uint32_t *n)
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
		if (!uint_of(w, t->kids[i], &(*out)[i]))
			return -EBADMSG;
	return 0;
}

/* Element count, byte range and contiguity of @t; checks them against its storage. */
static int tensor_extent(struct walk *w, struct mfs_tx_tensor *t)
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
static int dtype_arg(struct walk *w, uint32_t id, const char *tname, int *dt)
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
static int bad_dtype(struct walk *w, const struct mfs_tx_tensor *t, const struct mfs_tx_storage *s)
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
static int parse_tensor(struct walk *w, uint32_t id, struct mfs_tx_tensor *t, int depth)
{
	const struct mfs_pnode *call = node(w, id), *args;
	const char *nm = w->p->name;
	bool v3;
	uint32_t ns = 0;
	int rc;

	if (!call || call->kind != MFS_PK_CALL || !(args = node(w, call->b)) ||
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
	if ((rc = storage_ref(w, args->kids[0], &t->storage)))
		return rc;
	rc = int_tuple(w, args->kids[2], &t->shape, &t->ndim);
	if (!rc)
		rc = int_tuple(w, args->kids[3], &t->stride, &ns);
	if (rc == -ENOMEM)
		return rc;
	if (rc || ns != t->ndim || !uint_of(w, args->kids[1], &t->offset))
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
static int add_tensor(struct walk *w, const char *key, uint32_t val)
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
static int walk_root(struct walk *w, uint32_t root)
{
	const uint32_t *kv;
	uint32_t n;
	int rc;

	if (!dict_items(w, root, &kv, &n))
		return mv_err_set(w->err, -EOPNOTSUPP,
		                  "%s: not a state_dict (the checkpoint holds %s)", w->p->name,
		                  kind_name(w, root));
	for (uint32_t i = 0; i < n; i++) {
		const char *k = str_of(w, kv[2 * i]);
		const uint32_t *kv2;
		uint32_t n2;

		if (k && strcmp(k, "state_dict") == 0 && dict_items(w, kv[2 * i + 1], &kv2, &n2)) {
			kv = kv2;
			n = n2;
			break;
		}
	}
	for (uint32_t i = 0; i < n; i++) {
		const char *k = str_of(w, kv[2 * i]);

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
static int resolve_group(struct walk *w, const uint32_t *ids, size_t n)
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
static int dedupe_shared(struct walk *w)
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

/* Refuses any global the scanner would not call safe (defense in depth). */
static int check_globals(struct walk *w)
{
	for (uint32_t i = 0; i < w->pk->nglobals; i++)
		if (w->pk->globals[i].cls != MFS_VERDICT_SAFE)
			return mv_err_set(w->err, -EBADMSG, "%s: global %s.%s is not allowed",
			                  w->p->name, w->pk->globals[i].module,
			                  w->pk->globals[i].name);
	return 0;
}

/* Turns a failed pickle parse into an error line. */
static int pickle_error(struct walk *w, int rc)
{
	if (w->pk->fail == MFS_PK_IO && w->pk->fail_errno && w->pk->fail_errno != -EBADMSG)
		return mv_err_set(w->err, w->pk->fail_errno, "%s: read error: %s", w->p->name,
		                  strerror(-w->pk->fail_errno));
	if (rc == 0)
		return mv_err_set(w->err, -EBADMSG, "%s: the pickle stream ends early", w->p->name);
	return mv_err_set(w->err, -EBADMSG, "%s: offset %" PRIu64 ": %s", w->p->name,
	                  w->pk->fail_off, w->pk->fail_msg[0] ? w->pk->fail_msg : "bad pickle");
}

/* ---------------------------------------------------------------- torch zip */

static int cmp_zname(const void *a, const void *b, void *ctx)
{
	const struct mfs_zip *z = ctx;

	return strcmp(z->e[*(const uint32_t *)a].name, z->e[*(const uint32_t *)b].name);
}

/* Zip members sorted by name, for lookups. */
struct zindex {
	const struct mfs_zip *z;
	uint32_t *ids;
	char *prefix; /* "archive/" */
};

/* The entry named prefix + @rel, or -1. */
static ssize_t zfind(const struct zindex *zi, const char *rel)
{
	size_t lo = 0, hi = zi->z->n, pl = strlen(zi->prefix);

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const char *nm = zi->z->e[zi->ids[mid]].name;
		int c = strncmp(nm, zi->prefix, pl);

		if (!c)
			c = strcmp(nm + pl, rel);
		if (!c)
			return zi->ids[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* Sorts the members, refuses duplicate names, finds the archive folder as torch does. */
static int zindex_build(struct walk *w, const struct mfs_zip *z, struct zindex *zi)
{
	const char *slash;

	zi->z = z;
	if (!z->n)
		return mv_err_set(w->err, -EOPNOTSUPP, "%s: empty zip archive", w->p->name);
	/* torch: every record lives in the folder of the first member */
	slash = strchr(z->e[0].name, '/');
	if (!slash)
		return mv_err_set(w->err, -EOPNOTSUPP,
		                  "%s: not a torch checkpoint (first member is not in a folder)",
		                  w->p->name);
	zi->prefix = strndup(z->e[0].name, (size_t)(slash - z->e[0].name) + 1);
	zi->ids = malloc(z->n * sizeof(*zi->ids));
	if (!zi->prefix || !zi->ids)
		return -ENOMEM;
	for (size_t i = 0; i < z->n; i++)
		zi->ids[i] = (uint32_t)i;
	qsort_r(zi->ids, z->n, sizeof(*zi->ids), cmp_zname, (void *)z);
	for (size_t i = 1; i < z->n; i++)
		if (strcmp(z->e[zi->ids[i - 1]].name, z->e[zi->ids[i]].name) == 0)
			return mv_err_set(w->err, -EBADMSG, "%s: zip member %s appears twice",
			                  w->p->name, z->e[zi->ids[i]].name);
	return 0;
}

/* Refuses a member whose headers disagree or whose data is out of the file. */
static int zentry_ok(struct walk *w, const struct mfs_zip *z, size_t i)
{
	const struct mfs_zip_entry *e = &z->e[i];

	if (e->bad_local || e->mismatch)
		return mv_err_set(w->err, -EBADMSG, "%s: zip member %s: %s", w->p->name, e->name,
		                  e->why[0] ? e->why : "inconsistent headers");
	if (e->data_off > z->size || e->comp_size > z->size - e->data_off)
		return mv_err_set(w->err, -EBADMSG, "%s: zip member %s runs past the end",
		                  w->p->name, e->name);
	return 0;
}

/* Reads "<archive>/byteorder" ("little" or "big"); absent means little. */
static int zip_byteorder(struct walk *w, const struct zindex *zi)
{
	ssize_t i = zfind(zi, "byteorder");
	struct mfs_stream s;
	char buf[16] = {0};
	ssize_t r;
	int rc;

	if (i < 0)
		return 0;
	if ((rc = zentry_ok(w, zi->z, (size_t)i)))
		return rc;
	if ((rc = mfs_zip_stream(zi->z, (size_t)i, &s, sizeof(buf))) != 0)
		return mv_err_set(w->err, rc == -ENOMEM ? rc : -EBADMSG,
		                  "%s: unreadable byteorder record", w->p->name);
	r = mfs_stream_read_full(&s, buf, sizeof(buf) - 1);
	mfs_stream_close(&s);
	if (r == 6 && memcmp(buf, "little", 6) == 0)
		return 0;
	if (r == 3 && memcmp(buf, "big", 3) == 0) {
		w->p->swap = true;
		return 0;
	}
	return mv_err_set(w->err, -EBADMSG, "%s: byteorder record is neither 'little' nor 'big'",
	                  w->p->name);
}

/* Locates each referenced storage's record "<archive>/data/<key>". */
static int zip_storages(struct walk *w, const struct zindex *zi)
{
	struct mfs_tx_plan *p = w->p;
	char *rel = NULL;
	int rc = 0;

	for (size_t k = 0; k < p->nst && !rc; k++) {
		struct mfs_tx_storage *s = &p->st[k];
		const struct mfs_zip_entry *e;
		ssize_t i;

		free(rel);
		if (asprintf(&rel, "data/%s", s->key) < 0) {
			rel = NULL;
			rc = -ENOMEM;
			break;
		}
		i = zfind(zi, rel);
		if (i < 0) {
			rc = mv_err_set(w->err, -EBADMSG, "%s: storage record %s%s is missing",
			                p->name, zi->prefix, rel);
			break;
		}
		if ((rc = zentry_ok(w, zi->z, (size_t)i)))
			break;
		e = &zi->z->e[i];
		if (e->method != 0)
			rc = mv_err_set(
			    w->err, -EOPNOTSUPP,
			    "%s: storage record %s is compressed (method %u); only stored "
			    "records are supported",
			    p->name, e->name, e->method);
		else if (e->comp_size != s->nbytes || e->uncomp_size != s->nbytes)
			rc = mv_err_set(w->err, -EBADMSG,
			                "%s: storage record %s holds %" PRIu64
			                " bytes, expected %" PRIu64,
			                p->name, e->name, e->comp_size, s->nbytes);
		s->off = e->data_off;
	}
	free(rel);
	return rc;
}

/* Parses data.pkl of a torch zip checkpoint and walks it. */
static int plan_zip(struct walk *w, mfs_pread_fn rd, void *ctx, uint64_t size)
{
	struct mfs_zip z;
	struct zindex zi = {0};
	struct mfs_stream s = {0};
	struct mfs_pickle pk;
	bool pk_init = false;
	uint32_t root = 0;
	ssize_t i;
	int rc = mfs_zip_open(&z, rd, ctx, size);

	if (rc == -EBADMSG)
		rc = mv_err_set(w->err, rc, "%s: zip: %s", w->p->name, z.anomaly);
	else if (!rc && z.anomaly[0])
		rc = mv_err_set(w->err, -EBADMSG, "%s: zip: %s", w->p->name, z.anomaly);
	if (rc || (rc = zindex_build(w, &z, &zi)))
		goto out;
	i = zfind(&zi, "data.pkl");
	if (i < 0) {
		rc = mv_err_set(w->err, -EOPNOTSUPP, "%s: not a torch checkpoint (no %sdata.pkl)",
		                w->p->name, zi.prefix);
		goto out;
	}
	if ((rc = zentry_ok(w, &z, (size_t)i)) || (rc = zip_byteorder(w, &zi)))
		goto out;
	rc = mfs_zip_stream(&z, (size_t)i, &s, PKL_LIMIT);
	if (rc) {
		rc = mv_err_set(w->err, rc == -ENOMEM ? rc : -EOPNOTSUPP,
		                "%s: data.pkl cannot be read (compression method %u)", w->p->name,
		                z.e[i].method);
		goto out;
	}
	if ((rc = mfs_pickle_init(&pk, &s, NULL)))
		goto out;
	pk_init = true;
	w->pk = &pk;
	rc = mfs_pickle_next(&pk, &root);
	if (rc != 1) {
		rc = pickle_error(w, rc);
		goto out;
	}
	if (!(rc = check_globals(w)) && !(rc = walk_root(w, root)) && !(rc = dedupe_shared(w)))
		rc = zip_storages(w, &zi);
out:
	if (pk_init)
		mfs_pickle_free(&pk);
	w->pk = NULL;
	mfs_stream_close(&s);
	free(zi.ids);
	free(zi.prefix);
	mfs_zip_close(&z);
	return rc;
}

/* ------------------------------------------------------------ torch legacy */

/* The legacy magic number 0x1950a86a20f9469cfc6c (LONG1, little-endian). */
static const uint8_t legacy_magic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9,
                                         0x20, 0x6a, 0xa8, 0x50, 0x19};

static bool is_magic(const struct walk *w, uint32_t id)
{
	const struct mfs_pnode *n = node(w, id);

	if (!n || n->kind != MFS_PK_LONG || n->big || !n->s)
		return false;
	if (n->text)
		return strcmp(n->s, "119547037146038801333356") == 0;
	return n->len == sizeof(legacy_magic) && memcmp(n->s, legacy_magic, n->len) == 0;
}

/* Reads the 8-byte little-endian element count before a legacy storage's data. */
static int read_le64(mfs_pread_fn rd, void *ctx, uint64_t off, uint64_t *v)
{
	uint8_t b[8];
	ssize_t r = rd(ctx, b, sizeof(b), off);

	if (r < 0)
		return (int)r;
	if (r != 8)
		return -EBADMSG;
	*v = 0;
	for (int i = 0; i < 8; i++)
		*v |= (uint64_t)b[i] << (8 * i);
	return 0;
}

/*
 * Lays out the raw storages that follow the five pickles: for each key of
 * the last pickle, in order, 8 bytes of element count then the data. torch
 * writes the data little-endian whatever the machine (sys_info is not
 * consulted when loading), so nothing is swapped here.
 */
static int legacy_layout(struct walk *w, uint32_t keys, uint64_t pos, mfs_pread_fn rd, void *ctx,
                         uint64_t size)
{
	struct mfs_tx_plan *p = w->p;
	const struct mfs_pnode *list = node(w, keys);
	bool *seen;
	int rc = 0;

	if (!list || list->kind != MFS_PK_LIST)
		return mv_err_set(w->err, -EBADMSG, "%s: legacy storage keys are not a list",
		                  p->name);
	seen = calloc(p->nst ? p->nst : 1, sizeof(*seen));
	if (!seen)
		return -ENOMEM;
	for (uint32_t k = 0; k < list->n && !rc; k++) {
		const char *key = str_of(w, list->kids[k]);
		ssize_t si = key ? storage_find(w, key) : -1;
		uint64_t numel = 0;

		if (si < 0 || seen[si]) {
			rc = mv_err_set(w->err, -EBADMSG, "%s: legacy storage key #%u is %s",
			                p->name, k, si < 0 ? "unknown" : "repeated");
			break;
		}
		seen[si] = true;
		rc = size < 8 || pos > size - 8 ? -EBADMSG : read_le64(rd, ctx, pos, &numel);
		if (rc == -EBADMSG || (!rc && numel != p->st[si].numel))
			rc = mv_err_set(w->err, -EBADMSG,
			                "%s: legacy storage '%s' at offset %" PRIu64
			                " has the wrong size",
			                p->name, key, pos);
		else if (rc)
			rc = mv_err_set(w->err, rc, "%s: read error: %s", p->name, strerror(-rc));
		if (rc)
			break;
		p->st[si].off = pos + 8;
		if (p->st[si].nbytes > size - pos - 8)
			rc = mv_err_set(w->err, -EBADMSG,
			                "%s: legacy storage '%s' runs past the end", p->name, key);
		pos += 8 + p->st[si].nbytes;
	}
	for (size_t i = 0; i < p->nst && !rc; i++)
		if (!seen[i])
			rc = mv_err_set(w->err, -EBADMSG, "%s: storage '%s' has no data", p->name,
			                p->st[i].key);
	free(seen);
	return rc;
}

/* Parses the five pickles of a legacy checkpoint and walks the object. */
static int plan_legacy(struct walk *w, mfs_pread_fn rd, void *ctx, uint64_t size)
{
	struct mfs_stream s;
	struct mfs_pickle pk;
	uint32_t root[5] = {0}, before = 0;
	uint64_t v;
	int rc;

	mfs_stream_raw(&s, rd, ctx, 0, size);
	if ((rc = mfs_pickle_init(&pk, &s, NULL)))
		return rc;
	w->pk = &pk;
	w->legacy = true;
	for (int i = 0; i < 5; i++) {
		rc = mfs_pickle_next(&pk, &root[i]);
		if (rc != 1) {
			rc = i == 0 ? mv_err_set(w->err, -EOPNOTSUPP, "%s: not a torch checkpoint",
			                         w->p->name)
			            : pickle_error(w, rc);
			goto out;
		}
		if (i == 0 && !is_magic(w, root[0])) {
			rc =
			    mv_err_set(w->err, -EOPNOTSUPP,
			               "%s: not a torch checkpoint (a pickle without torch's magic "
			               "number)",
			               w->p->name);
			goto out;
		}
		if (i == 1 && (!uint_of(w, root[1], &v) || v != LEGACY_PROTO)) {
			rc = mv_err_set(w->err, -EOPNOTSUPP, "%s: unknown legacy protocol version",
			                w->p->name);
			goto out;
		}
		/* only the object pickle may name storages (torch loads the others plainly) */
		if ((i == 2 || i == 4) && pk.npersids != before) {
			rc = mv_err_set(w->err, -EBADMSG,
			                "%s: persistent id outside the object pickle", w->p->name);
			goto out;
		}
		if (i == 3)
			before = pk.npersids;
	}
	if ((rc = check_globals(w)))
		goto out;
	/* register every storage in stream order, as torch's persistent_load sees them */
	for (uint32_t i = 0; i < pk.npersids && !rc; i++) {
		uint32_t idx;

		rc = storage_ref(w, pk.persids[i], &idx);
	}
	if (!rc && !(rc = walk_root(w, root[3])) && !(rc = dedupe_shared(w)))
		rc = legacy_layout(w, root[4], pk.boff + pk.bpos, rd, ctx, size);
out:
	mfs_pickle_free(&pk);
	mfs_stream_close(&s);
	w->pk = NULL;
	return rc;
}

/* -------------------------------------------------------------------- plan */

int mfs_tx_plan_new(mfs_pread_fn rd, void *ctx, uint64_t size, const char *name,
                    struct mfs_tx_plan **out, struct mv_err *err)
{
	struct mfs_tx_plan *p = calloc(1, sizeof(*p));
	struct walk w = {.p = p, .err = err};
	uint8_t magic[4] = {0};
	ssize_t r;
	int rc;

	*out = NULL;
	if (!p || !(p->name = strdup(name ? name : "checkpoint"))) {
		rc = -ENOMEM;
		goto out;
	}
	r = rd(ctx, magic, sizeof(magic), 0);
	if (r < 0) {
		rc = mv_err_set(err, (int)r, "%s: read error: %s", p->name, strerror((int)-r));
		goto out;
	}
	if (r == 4 && (memcmp(magic, "PK\3\4", 4) == 0 || memcmp(magic, "PK\5\6", 4) == 0))
		rc = plan_zip(&w, rd, ctx, size);
	else if (r >= 2 && mfs_sniff_proto(magic, (size_t)r))
		rc = plan_legacy(&w, rd, ctx, size);
	else
		rc = mv_err_set(err, -EOPNOTSUPP, "%s: not a torch checkpoint", p->name);
	if (!rc) {
		rc = mfs_st_build_header(p);
		if (rc == -EFBIG)
			rc = mv_err_set(err, rc, "%s: the safetensors header would exceed %u bytes",
			                p->name, MFS_ST_MAX_HEADER);
		else if (rc == -EOVERFLOW)
			rc = mv_err_set(err, -EBADMSG, "%s: tensors too large", p->name);
	}
	if (!rc &&
	    (size > (UINT64_MAX - GROWTH_SLACK) / 2 || p->data_len > 2 * size + GROWTH_SLACK))
		rc = mv_err_set(err, -EOPNOTSUPP,
		                "%s: the output would hold %" PRIu64
		                " bytes of tensors from a %" PRIu64
		                "-byte checkpoint (broadcast views); refused",
		                p->name, p->data_len, size);
out:
	if (rc == -ENOMEM)
		mv_err_set(err, rc, "%s: out of memory", name ? name : "checkpoint");
	free(w.slots);
	if (rc)
		mfs_tx_plan_free(p);
	else
		*out = p;
	return rc;
}

/* ------------------------------------------------------------------ writer */

struct txw {
	const struct mfs_tx_plan *p;
	mfs_pread_fn rd;
	void *ctx;
	int src_fd, out_fd;
	bool cfr;        /* copy_file_range still worth trying */
	bool kick;       /* start writeback as output accumulates (durable output) */
	uint64_t pos;    /* next output offset */
	uint64_t kicked; /* output bytes handed to writeback so far */
	uint8_t *buf;    /* CHUNK bytes */
	struct mv_err *err;
};

static int out_write(struct txw *w, const void *data, size_t len)
{
	const uint8_t *d = data;

	while (len) {
		ssize_t r = pwrite(w->out_fd, d, len, (off_t)w->pos);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int e = r < 0 ? -errno : -EIO;

			return mv_err_set(w->err, e, "%s: write failed: %s", w->p->name,
			                  strerror(-e));
		}
		d += r;
		len -= (size_t)r;
		w->pos += (uint64_t)r;
	}
	return 0;
}

/* Reads exactly @len source bytes at @off. */
static int src_read(struct txw *w, void *buf, size_t len, uint64_t off)
{
	uint8_t *b = buf;

	while (len) {
		ssize_t r = w->rd(w->ctx, b, len, off);

		if (r < 0)
			return mv_err_set(w->err, (int)r,
			                  "%s: read failed at offset %" PRIu64 ": %s", w->p->name,
			                  off, strerror((int)-r));
		if (r == 0)
			return mv_err_set(w->err, -EBADMSG,
			                  "%s: the checkpoint ends at offset %" PRIu64
			                  ", before its tensor data",
			                  w->p->name, off);
		b += r;
		len -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

/* Reverses the bytes of each @es-byte element of @buf. */
static void swap_elems(uint8_t *buf, size_t len, unsigned es)
{
	for (size_t i = 0; i + es <= len; i += es)
		for (unsigned a = 0, b = es - 1; a < b; a++, b--) {
			uint8_t t = buf[i + a];

			buf[i + a] = buf[i + b];
			buf[i + b] = t;
		}
}

/*
 * Starts writeback of what was written so far, so the caller's final fsync
 * finds most data already on its way to disk (the copy and the disk then
 * overlap instead of running one after the other). Best effort.
 */
static void kick_writeback(struct txw *w, bool last)
{
	if (!w->kick || (w->pos - w->kicked < KICK && !last))
		return;
	(void)sync_file_range(w->out_fd, (off64_t)w->kicked, (off64_t)(w->pos - w->kicked),
	                      SYNC_FILE_RANGE_WRITE);
	w->kicked = w->pos;
}

/* Copies @len bytes from source offset @off in the kernel; *@done says how many went. */
static int copy_kernel(struct txw *w, uint64_t off, uint64_t len, uint64_t *done)
{
	loff_t in = (loff_t)off, outp = (loff_t)w->pos;

	*done = 0;
	while (*done < len) {
		size_t want = len - *done > KICK ? (size_t)KICK : (size_t)(len - *done);
		ssize_t r = copy_file_range(w->src_fd, &in, w->out_fd, &outp, want, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			/* not possible here (other file systems, pipes): copy through memory */
			w->cfr = false;
			break;
		}
		*done += (uint64_t)r;
		w->pos += (uint64_t)r;
		kick_writeback(w, false);
	}
	return 0;
}

/* A contiguous tensor: its bytes, in chunks, swapped when big-endian. */
static int copy_contig(struct txw *w, const struct mfs_tx_tensor *t)
{
	uint64_t off = w->p->st[t->storage].off + t->lo, left = t->nbytes, done;
	bool swap = w->p->swap && t->elsize > 1;
	int rc;

	if (w->cfr && !swap && w->src_fd >= 0) {
		if ((rc = copy_kernel(w, off, left, &done)))
			return rc;
		off += done;
		left -= done;
	}
	while (left) {
		size_t n = left > CHUNK ? CHUNK : (size_t)left;

		if ((rc = src_read(w, w->buf, n, off)))
			return rc;
		if (swap)
			swap_elems(w->buf, n, t->elsize);
		if ((rc = out_write(w, w->buf, n)))
			return rc;
		kick_writeback(w, false);
		off += n;
		left -= n;
	}
	return 0;
}

/* C-order walk over a tensor's elements; cur is the element offset from t->offset. */
struct nditer {
	const struct mfs_tx_tensor *t;
	uint64_t idx[MFS_TX_MAX_DIMS];
	uint64_t cur;
};

/* Positions @it at linear element @e. */
static void it_seek(struct nditer *it, const struct mfs_tx_tensor *t, uint64_t e)
{
	it->t = t;
	it->cur = 0;
	for (uint32_t d = t->ndim; d-- > 0;) {
		it->idx[d] = e % t->shape[d];
		e /= t->shape[d];
		it->cur += it->idx[d] * t->stride[d];
	}
}

static void it_next(struct nditer *it)
{
	const struct mfs_tx_tensor *t = it->t;

	for (uint32_t d = t->ndim; d-- > 0;) {
		it->cur += t->stride[d];
		if (++it->idx[d] < t->shape[d])
			return;
		it->cur -= t->stride[d] * t->shape[d];
		it->idx[d] = 0;
	}
}

static inline void copy_elem(uint8_t *dst, const uint8_t *src, unsigned es)
{
	switch (es) {
	case 1: *dst = *src; break;
	case 2: memcpy(dst, src, 2); break;
	case 4: memcpy(dst, src, 4); break;
	default: memcpy(dst, src, 8); break;
	}
}

/*
 * Gathers elements [e0, e0+n) of @t into @dst, taking only those whose
 * source bytes (relative to t->lo) lie in [wlo, whi), held in @win.
 */
static void gather(const struct mfs_tx_tensor *t, uint64_t e0, uint64_t n, const uint8_t *win,
                   uint64_t wlo, uint64_t whi, uint8_t *dst)
{
	struct nditer it;
	unsigned es = t->elsize;

	it_seek(&it, t, e0);
	for (uint64_t i = 0; i < n; i++, it_next(&it)) {
		uint64_t b = it.cur * es;

		if (b >= wlo && b < whi)
			copy_elem(dst + i * es, win + (b - wlo), es);
	}
}

/* The lowest and highest source byte (relative to t->lo) elements [e0, e0+n) read. */
static void chunk_span(const struct mfs_tx_tensor *t, uint64_t e0, uint64_t n, uint64_t *lo,
                       uint64_t *hi)
{
	struct nditer it;

	*lo = UINT64_MAX;
	*hi = 0;
	it_seek(&it, t, e0);
	for (uint64_t i = 0; i < n; i++, it_next(&it)) {
		uint64_t b = it.cur * t->elsize;

		*lo = b < *lo ? b : *lo;
		*hi = b + t->elsize > *hi ? b + t->elsize : *hi;
	}
}

/*
 * A non-contiguous view. When its source span fits GATHER_MEM it is read
 * once; otherwise each output chunk reads the source windows it touches, so
 * memory stays bounded (at the cost of reading some windows several times).
 */
static int copy_view(struct txw *w, const struct mfs_tx_tensor *t)
{
	uint64_t base = w->p->st[t->storage].off + t->lo, span = t->hi - t->lo;
	uint64_t per = CHUNK / t->elsize;
	bool inmem = span <= GATHER_MEM;
	uint8_t *win = malloc(inmem ? (size_t)span : (size_t)GATHER_WINDOW);
	int rc = 0;

	if (!win)
		return mv_err_set(w->err, -ENOMEM, "%s: out of memory", w->p->name);
	if (inmem)
		rc = src_read(w, win, (size_t)span, base);
	for (uint64_t e0 = 0; !rc && e0 < t->nelem; e0 += per) {
		uint64_t n = t->nelem - e0 < per ? t->nelem - e0 : per, lo, hi;

		if (inmem) {
			gather(t, e0, n, win, 0, span, w->buf);
		} else {
			chunk_span(t, e0, n, &lo, &hi);
			for (uint64_t wl = lo; !rc && wl < hi; wl += GATHER_WINDOW) {
				uint64_t wh = hi - wl < GATHER_WINDOW ? hi : wl + GATHER_WINDOW;

				rc = src_read(w, win, (size_t)(wh - wl), base + wl);
				if (!rc)
					gather(t, e0, n, win, wl, wh, w->buf);
			}
		}
		if (!rc && w->p->swap && t->elsize > 1)
			swap_elems(w->buf, (size_t)(n * t->elsize), t->elsize);
		if (!rc)
			rc = out_write(w, w->buf, (size_t)(n * t->elsize));
	}
	free(win);
	return rc;
}

/* Writes the output; @kick starts writeback as it goes (for a later fsync). */
static int plan_write(const struct mfs_tx_plan *p, mfs_pread_fn rd, void *ctx, int src_fd,
                      int out_fd, bool kick, struct mv_err *err)
{
	struct txw w = {.p = p,
	                .kick = kick,
	                .rd = rd,
	                .ctx = ctx,
	                .src_fd = src_fd,
	                .out_fd = out_fd,
	                .cfr = src_fd >= 0,
	                .err = err};
	int rc;

	w.buf = malloc(CHUNK);
	if (!w.buf)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", p->name);
	rc = out_write(&w, p->header, p->header_len);
	for (size_t i = 0; !rc && i < p->norder; i++) {
		const struct mfs_tx_tensor *t = &p->t[p->order[i]];

		if (!t->nbytes)
			continue;
		rc = t->contiguous ? copy_contig(&w, t) : copy_view(&w, t);
		kick_writeback(&w, false);
	}
	kick_writeback(&w, true);
	if (!rc && w.pos != mfs_tx_plan_size(p))
		rc = mv_err_set(err, -EIO, "%s: wrote %" PRIu64 " bytes, planned %" PRIu64, p->name,
		                w.pos, mfs_tx_plan_size(p));
	free(w.buf);
	return rc;
}

int mfs_tx_plan_write(const struct mfs_tx_plan *p, mfs_pread_fn rd, void *ctx, int src_fd,
                      int out_fd, struct mv_err *err)
{
	return plan_write(p, rd, ctx, src_fd, out_fd, true, err);
}

/* ------------------------------------------------------------ atomic output */

/* Splits @path into a malloc'd folder ("." when none) and its last component. */
static int split_path(const char *path, char **dir, const char **base)
{
	const char *slash = strrchr(path, '/');

	*base = slash ? slash + 1 : path;
	if (!slash)
		*dir = strdup(".");
	else if (slash == path)
		*dir = strdup("/");
	else
		*dir = strndup(path, (size_t)(slash - path));
	return *dir ? 0 : -ENOMEM;
}

/*
 * Opens an unnamed file in @dir (O_TMPFILE: nothing is left behind if we
 * die), or a named temp file when the file system lacks it (*@tmp names it).
 */
static int open_temp(const char *dir, const char *base, char **tmp)
{
	int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);

	*tmp = NULL;
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd >= 0 ? fd : -errno;
	if (asprintf(tmp, "%s/.%s.XXXXXX", dir, base) < 0) {
		*tmp = NULL;
		return -ENOMEM;
	}
	fd = mkostemp(*tmp, O_CLOEXEC);
	if (fd < 0 || fchmod(fd, 0644) < 0) {
		int e = -errno;

		if (fd >= 0) {
			close(fd);
			unlink(*tmp);
		}
		free(*tmp);
		*tmp = NULL;
		return e;
	}
	return fd;
}

/* Gives the O_TMPFILE @fd a temporary name in @dir, returned in *@tmp. */
static int name_temp(int fd, const char *dir, const char *base, char **tmp)
{
	char proc[64];

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	for (unsigned i = 0; i < 100; i++) {
		if (asprintf(tmp, "%s/.%s.%ld.%u", dir, base, (long)getpid(), i) < 0) {
			*tmp = NULL;
			return -ENOMEM;
		}
		if (linkat(AT_FDCWD, proc, AT_FDCWD, *tmp, AT_SYMLINK_FOLLOW) == 0)
			return 0;
		int e = -errno;

		free(*tmp);
		*tmp = NULL;
		if (e != -EEXIST)
			return e;
	}
	return -EEXIST;
}

static void fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		fsync(fd); /* best effort: the rename itself already happened */
		close(fd);
	}
}

/*
 * Not mv_atomic_open()/mv_atomic_commit(): the output (gigabytes, minutes of
 * work) is written into an unnamed O_TMPFILE and only linked in at the end,
 * so a crash mid-transcode leaves nothing behind; mv_atomic_* names its temp
 * file from the start. The named fallback and the rename mirror it.
 */
int mfs_tx_write_path(const struct mfs_tx_plan *p, mfs_pread_fn rd, void *ctx, int src_fd,
                      const char *path, bool durable, struct mv_err *err)
{
	char *dir = NULL, *tmp = NULL;
	const char *base;
	bool unnamed;
	int fd = -1, rc;

	if ((rc = split_path(path, &dir, &base)))
		return mv_err_set(err, rc, "%s: out of memory", path);
	fd = open_temp(dir, base, &tmp);
	if (fd < 0) {
		rc = mv_err_set(err, fd, "%s: cannot create a file in %s: %s", path, dir,
		                strerror(-fd));
		goto out;
	}
	unnamed = !tmp;
	if ((rc = plan_write(p, rd, ctx, src_fd, fd, durable, err)))
		goto out;
	if (durable && fsync(fd) < 0) {
		rc = mv_err_set(err, -errno, "%s: fsync: %s", path, strerror(errno));
		goto out;
	}
	if (unnamed && (rc = name_temp(fd, dir, base, &tmp))) {
		rc = mv_err_set(err, rc, "%s: cannot link the output: %s", path, strerror(-rc));
		goto out;
	}
	if (rename(tmp, path) < 0) {
		rc = mv_err_set(err, -errno, "%s: rename: %s", path, strerror(errno));
		goto out;
	}
	free(tmp);
	tmp = NULL;
	if (durable)
		fsync_dir(dir);
out:
	if (tmp) {
		unlink(tmp);
		free(tmp);
	}
	if (fd >= 0)
		close(fd);
	free(dir);
	return rc;
}

/* ------------------------------------------------------------------- names */

/* Appends @s (@n bytes) to the malloc'd *@out of length *@len, replacing
 * every "pytorch_model" with "model". */
static int append_renamed(char **out, size_t *len, const char *s, size_t n)
{
	static const char from[] = "pytorch_model";
	const size_t fl = sizeof(from) - 1;

	for (size_t i = 0; i < n;) {
		bool hit = n - i >= fl && memcmp(s + i, from, fl) == 0;
		const char *piece = hit ? "model" : s + i;
		size_t pl = hit ? 5 : 1;
		char *np = realloc(*out, *len + pl + 1);

		if (!np)
			return -ENOMEM;
		*out = np;
		memcpy(*out + *len, piece, pl);
		*len += pl;
		(*out)[*len] = 0;
		i += hit ? fl : 1;
	}
	return 0;
}

char *mfs_tx_rename(const char *name)
{
	static const char idx[] = ".index.json";
	size_t n = strlen(name), il = sizeof(idx) - 1, stem, len = 0;
	const char *base, *dot;
	bool index = n > il && strcmp(name + n - il, idx) == 0;
	char *out = NULL;

	stem = index ? n - il : n;
	/* os.path.splitext: the last dot of the last component, unless all its dots lead */
	base = memrchr(name, '/', stem);
	base = base ? base + 1 : name;
	dot = memrchr(base, '.', stem - (size_t)(base - name));
	if (dot) {
		const char *q = base;

		while (q < dot && *q == '.')
			q++;
		if (q == dot)
			dot = NULL;
	}
	if (append_renamed(&out, &len, name, dot ? (size_t)(dot - name) : stem) ||
	    append_renamed(&out, &len, ".safetensors", 12) ||
	    (index && append_renamed(&out, &len, idx, il))) {
		free(out);
		return NULL;
	}
	return out;
}

/* A shard name from an index: one plain file name, no folders. */
static bool shard_name_ok(const char *s)
{
	return *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

int mfs_tx_index_rewrite(const char *json, size_t len, uint64_t total_size, char **out,
                         struct mv_err *err)
{
	cJSON *root = cJSON_ParseWithLength(json, len), *wm, *nwm = NULL, *it, *meta;
	int rc = 0;

	*out = NULL;
	wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
	if (!cJSON_IsObject(root) || !cJSON_IsObject(wm)) {
		rc = mv_err_set(err, -EBADMSG, "index is not a JSON object with a weight_map");
		goto out;
	}
	if (!(nwm = cJSON_CreateObject())) {
		rc = -ENOMEM;
		goto out;
	}
	cJSON_ArrayForEach(it, wm)
	{
		char *nn;
		cJSON *s;

		if (!cJSON_IsString(it) || !shard_name_ok(it->valuestring)) {
			rc = mv_err_set(err, -EBADMSG,
			                "index: weight_map entry '%s' is not a file name",
			                it->string);
			goto out;
		}
		nn = mfs_tx_rename(it->valuestring);
		s = nn ? cJSON_CreateString(nn) : NULL;
		free(nn);
		if (!s) {
			rc = -ENOMEM;
			goto out;
		}
		cJSON_AddItemToObject(nwm, it->string, s);
	}
	cJSON_ReplaceItemInObjectCaseSensitive(root, "weight_map", nwm);
	nwm = NULL;
	meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
	if (total_size != UINT64_MAX && cJSON_IsObject(meta)) {
		cJSON *ts = cJSON_CreateNumber((double)total_size);

		if (!ts) {
			rc = -ENOMEM;
			goto out;
		}
		if (cJSON_GetObjectItemCaseSensitive(meta, "total_size"))
			cJSON_ReplaceItemInObjectCaseSensitive(meta, "total_size", ts);
		else
			cJSON_AddItemToObject(meta, "total_size", ts);
	}
	if (!(*out = cJSON_Print(root)))
		rc = -ENOMEM;
out:
	if (rc == -ENOMEM)
		mv_err_set(err, rc, "index: out of memory");
	cJSON_Delete(nwm);
	cJSON_Delete(root);
	return rc;
}
