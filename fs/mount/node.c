// SPDX-License-Identifier: Apache-2.0
/*
 * node.c - the mount's nodes and the namespace outside models.
 *
 * The node table maps inode numbers (index + 1) to nodes; a number is given
 * back when its version is freed and reused with the next generation. A
 * version's nodes and names are carved from its own chunks (the slab), freed
 * with it. Children are kept sorted by name for lookups. The folders outside
 * models (synthesized from model paths) change only under ns_lock held for
 * writing, and each change records what the kernel must forget (struct
 * mfs_inval).
 */
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "mount_int.h"
#include "store_int.h"

/*
 * Makes room for one more node. A full table is copied into one twice its
 * size; the old one is kept until unmount because a reader may still be
 * indexing it (see mount_int.h). m->node_lock held. 0 or -ENOMEM.
 */
static int node_table_grow(struct mfs_mount *m)
{
	size_t cap = m->cap_nodes ? m->cap_nodes * 2 : 256;
	struct mfs_node **p;
	void **old;

	if (m->n_nodes < m->cap_nodes)
		return 0;
	if (cap < m->cap_nodes || cap > SIZE_MAX / sizeof(*p))
		return -ENOMEM;
	old = realloc(m->old_tables, (m->n_old_tables + 1) * sizeof(*old));
	if (!old)
		return -ENOMEM;
	m->old_tables = old;
	p = malloc(cap * sizeof(*p));
	if (!p)
		return -ENOMEM;
	if (m->n_nodes)
		memcpy(p, m->nodes, m->n_nodes * sizeof(*p));
	if (m->nodes)
		m->old_tables[m->n_old_tables++] = m->nodes;
	__atomic_store_n(&m->nodes, p, __ATOMIC_RELEASE);
	m->cap_nodes = cap;
	return 0;
}

/*
 * Gives @n an inode number: a freed one (next generation) if any, else a
 * new slot at the end. The release stores publish the slot to lock-free
 * mfs_node_get() callers. 0 or -ENOMEM.
 */
static int node_slot_take(struct mfs_mount *m, struct mfs_node *n)
{
	int ret = 0;

	pthread_mutex_lock(&m->node_lock);
	if (m->n_free) {
		struct mfs_free_slot *f = &m->free_slots[--m->n_free];

		n->ino = f->ino;
		n->gen = f->gen + 1;
		__atomic_store_n(&m->nodes[n->ino - 1], n, __ATOMIC_RELEASE);
		goto out;
	}
	ret = node_table_grow(m);
	if (ret)
		goto out;
	n->ino = m->n_nodes + 1;
	n->gen = 1;
	m->nodes[m->n_nodes] = n;
	__atomic_store_n(&m->n_nodes, m->n_nodes + 1, __ATOMIC_RELEASE);
out:
	pthread_mutex_unlock(&m->node_lock);
	return ret;
}

/*
 * Frees the inode number of @n, whose version nobody references: the
 * kernel forgot it, so it may be given to a new node. A full free list
 * leaks the number (never reused) rather than fail.
 */
void mfs_node_slot_give(struct mfs_mount *m, struct mfs_node *n)
{
	pthread_mutex_lock(&m->node_lock);
	__atomic_store_n(&m->nodes[n->ino - 1], NULL, __ATOMIC_RELEASE);
	if (m->n_free == m->cap_free) {
		size_t cap = m->cap_free ? m->cap_free * 2 : 256;
		struct mfs_free_slot *p = realloc(m->free_slots, cap * sizeof(*p));

		if (!p)
			goto out;
		m->free_slots = p;
		m->cap_free = cap;
	}
	m->free_slots[m->n_free++] = (struct mfs_free_slot){.ino = n->ino, .gen = n->gen};
out:
	pthread_mutex_unlock(&m->node_lock);
}

/*
 * The nodes of a model version and their names, carved from 64 KiB chunks
 * freed all at once with the version. A version is built and freed whole,
 * many times over a long mount (each reload that changes a model): per-node
 * malloc()s interleaved with everything else left the heap fragmented, so
 * RSS kept growing for dozens of reloads after the memory was freed.
 */
#define SLAB_CHUNK (64u << 10)

/*
 * ASan builds leave a poisoned gap after each view in a slab, as long as
 * the rest of a full node: code that took a view for another kind of node
 * and touched a field views lack is reported there, not left to read the
 * next node's bytes.
 */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define VIEW_GAP (sizeof(struct mfs_node) - MFS_NODE_VIEW_SIZE)
#else
#define ASAN_POISON_MEMORY_REGION(addr, size)   ((void)(addr), (void)(size))
#define ASAN_UNPOISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#define VIEW_GAP                                0
#endif

struct mfs_slab {
	struct mfs_slab *next;
	size_t used, cap;
	_Alignas(16) unsigned char data[];
};

/* @len zeroed bytes, 16-byte aligned, from @model's chunks; NULL on ENOMEM. */
static void *slab_alloc(struct mfs_model *model, size_t len)
{
	struct mfs_slab *s = model->slab;
	void *p;

	len = (len + 15) & ~(size_t)15;
	if (!s || s->cap - s->used < len) {
		size_t cap = len > SLAB_CHUNK ? len : SLAB_CHUNK;

		s = malloc(sizeof(*s) + cap);
		if (!s)
			return NULL;
		s->next = model->slab;
		s->used = 0;
		s->cap = cap;
		model->slab = s;
	}
	p = s->data + s->used;
	s->used += len;
	return memset(p, 0, len);
}

void mfs_slab_free(struct mfs_model *model)
{
	while (model->slab) {
		struct mfs_slab *s = model->slab;

		model->slab = s->next;
		ASAN_UNPOISON_MEMORY_REGION(s->data, s->cap); /* the gaps after views */
		free(s);
	}
}

/* Frees what a node holds and the node itself; its slot must be given back first. */
void mfs_node_free(struct mfs_node *n)
{
	if (n->kind == MFS_N_TX) {
		mfs_tx_free(n);
	} else {
		pthread_mutex_destroy(&n->lock);
		free(n->tree);
		free(n->derived);
	}
	pthread_mutex_destroy(&n->load_lock);
	free(n->kids);
	if (!n->model) { /* a version's nodes live in its slab */
		free(n->name);
		free(n);
	}
}

/* Remembers @n as one of @model's nodes, to free it with the version. 0 or -ENOMEM. */
static int model_own(struct mfs_model *model, struct mfs_node *n)
{
	if (model->n_all == model->cap_all) {
		size_t cap = model->cap_all ? model->cap_all * 2 : 16;
		struct mfs_node **p = realloc(model->all_nodes, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		model->all_nodes = p;
		model->cap_all = cap;
	}
	model->all_nodes[model->n_all++] = n;
	return 0;
}

/* Bytes of a node of @kind: views have only the fields every node has. */
static size_t node_size(enum mfs_node_kind kind)
{
	return kind == MFS_N_TX ? MFS_NODE_VIEW_SIZE : sizeof(struct mfs_node);
}

/*
 * Makes a new node with an inode number (mfs_node_get() finds it at once).
 * The scan, then the reload thread, make nodes; a node of a model is freed
 * with its version (mfs_model_unref()), others live until unmount.
 */
struct mfs_node *mfs_node_new(struct mfs_mount *m, enum mfs_node_kind kind, const char *name,
                              struct mfs_model *model)
{
	size_t len = strlen(name) + 1, size = node_size(kind);
	struct mfs_node *n =
	    model ? slab_alloc(model, size + (kind == MFS_N_TX ? VIEW_GAP : 0)) : calloc(1, size);

	if (!n)
		return NULL;
	n->name = model ? slab_alloc(model, len) : malloc(len);
	if (!n->name || (model && model_own(model, n))) {
		if (!model) {
			free(n->name);
			free(n);
		}
		return NULL; /* a version's chunks go with it */
	}
	memcpy(n->name, name, len);
	n->kind = kind;
	n->model = model;
	if (kind != MFS_N_TX)
		pthread_mutex_init(&n->lock, NULL);
	else if (model)
		ASAN_POISON_MEMORY_REGION((char *)n + size, VIEW_GAP);
	pthread_mutex_init(&n->load_lock, NULL);
	if (node_slot_take(m, n)) {
		if (model)
			model->n_all--;
		mfs_node_free(n);
		return NULL;
	}
	return n;
}

/* Links @kid under @dir (unsorted until mfs_sort_kids). 0 or -ENOMEM. */
int mfs_node_add_kid(struct mfs_node *dir, struct mfs_node *kid)
{
	if (dir->n_kids == dir->cap_kids) {
		size_t cap = dir->cap_kids ? dir->cap_kids * 2 : 8;
		struct mfs_node **p = realloc(dir->kids, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		dir->kids = p;
		dir->cap_kids = cap;
	}
	dir->kids[dir->n_kids++] = kid;
	kid->parent = dir;
	return 0;
}

/*
 * Finds the child folder @name of @dir inside a model being built, or
 * creates it. Searches from the end: with sorted paths the folder being
 * filled is the last one added.
 * Return: 0, -EEXIST if @name exists but is not a folder, -ENOMEM.
 */
int mfs_dir_get(struct mfs_mount *m, struct mfs_node *dir, const char *name,
                struct mfs_model *model, struct mfs_node **out)
{
	for (size_t i = dir->n_kids; i-- > 0;) {
		struct mfs_node *k = dir->kids[i];

		if (strcmp(k->name, name) != 0)
			continue;
		if (k->kind != MFS_N_DIR)
			return -EEXIST;
		*out = k;
		return 0;
	}
	*out = mfs_node_new(m, MFS_N_DIR, name, model);
	if (!*out)
		return -ENOMEM;
	return mfs_node_add_kid(dir, *out);
}

static int kid_cmp(const void *a, const void *b)
{
	const struct mfs_node *x = *(struct mfs_node *const *)a;
	const struct mfs_node *y = *(struct mfs_node *const *)b;

	return strcmp(x->name, y->name);
}

/* Sorts a subtree's children; -EEXIST names a duplicate in *dup. */
int mfs_sort_kids(struct mfs_node *dir, const char **dup)
{
	int ret;

	if (dir->n_kids > 1)
		qsort(dir->kids, dir->n_kids, sizeof(*dir->kids), kid_cmp);
	for (size_t i = 0; i < dir->n_kids; i++) {
		if (i && strcmp(dir->kids[i - 1]->name, dir->kids[i]->name) == 0) {
			*dup = dir->kids[i]->name;
			return -EEXIST;
		}
		ret = mfs_sort_kids(dir->kids[i], dup);
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * Lock-free: the count is loaded with acquire before the table, so the
 * table seen holds every slot counted (node_slot_take, node_table_grow).
 * A freed slot reads NULL, or a newer node once reused: callers ask only
 * for inode numbers the kernel holds (mount_int.h, Lifetime).
 */
struct mfs_node *mfs_node_get(struct mfs_mount *m, uint64_t ino)
{
	size_t n = __atomic_load_n(&m->n_nodes, __ATOMIC_ACQUIRE);
	struct mfs_node **t;

	if (ino == 0 || ino > n)
		return NULL;
	t = __atomic_load_n(&m->nodes, __ATOMIC_ACQUIRE);
	return t[ino - 1];
}

/* Position of @name in @dir's sorted children: found, or where it would go. */
static size_t kid_pos(const struct mfs_node *dir, const char *name, bool *found)
{
	size_t lo = 0, hi = dir->n_kids;

	*found = false;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, dir->kids[mid]->name);

		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

struct mfs_node *mfs_node_child(struct mfs_node *dir, const char *name)
{
	bool found;
	size_t i = kid_pos(dir, name, &found);

	return found ? dir->kids[i] : NULL;
}

const char *mfs_node_model_path(const struct mfs_node *n)
{
	return n->model ? n->model->path : "";
}

/* ---- what the kernel must forget after a change (best effort: see MFS_NS_ENTRY_TIMEOUT) ---- */

static void inval_name(struct mfs_inval *inv, const struct mfs_node *dir, const char *name)
{
	if (!inv)
		return;
	if (inv->n_ents == inv->cap_ents) {
		size_t cap = inv->cap_ents ? inv->cap_ents * 2 : 16;
		struct mfs_inval_ent *p = realloc(inv->ents, cap * sizeof(*p));

		if (!p)
			return;
		inv->ents = p;
		inv->cap_ents = cap;
	}
	inv->ents[inv->n_ents].parent = dir->ino;
	inv->ents[inv->n_ents++].name = name;
}

static void inval_ino(struct mfs_inval *inv, uint64_t ino)
{
	if (!inv)
		return;
	if (inv->n_inos == inv->cap_inos) {
		size_t cap = inv->cap_inos ? inv->cap_inos * 2 : 16;
		uint64_t *p = realloc(inv->inos, cap * sizeof(*p));

		if (!p)
			return;
		inv->inos = p;
		inv->cap_inos = cap;
	}
	inv->inos[inv->n_inos++] = ino;
}

void mfs_inval_ino(struct mfs_inval *inv, uint64_t ino)
{
	inval_ino(inv, ino);
}

/* Every inode of a subtree (an old model version): drop its attributes and pages. */
void mfs_inval_subtree(struct mfs_inval *inv, const struct mfs_node *n)
{
	inval_ino(inv, n->ino);
	for (size_t i = 0; i < n->n_kids; i++)
		mfs_inval_subtree(inv, n->kids[i]);
}

void mfs_inval_free(struct mfs_inval *inv)
{
	free(inv->ents);
	free(inv->inos);
	memset(inv, 0, sizeof(*inv));
}

/* ---- changing folders outside models (callers hold ns_lock for writing, or are alone) ---- */

/* Inserts @kid into @dir's sorted children. 0, -EEXIST (name taken), -ENOMEM. */
int mfs_kid_insert(struct mfs_node *dir, struct mfs_node *kid)
{
	bool found;
	size_t i = kid_pos(dir, kid->name, &found);

	if (found)
		return -EEXIST;
	if (mfs_node_add_kid(dir, kid))
		return -ENOMEM;
	memmove(&dir->kids[i + 1], &dir->kids[i], (dir->n_kids - 1 - i) * sizeof(*dir->kids));
	dir->kids[i] = kid;
	return 0;
}

/* Removes @kid from its parent's children; its parent pointer stays (for ".."). */
void mfs_kid_remove(struct mfs_node *kid, struct mfs_inval *inv)
{
	struct mfs_node *dir = kid->parent;
	bool found;
	size_t i = kid_pos(dir, kid->name, &found);

	if (!found || dir->kids[i] != kid)
		return;
	memmove(&dir->kids[i], &dir->kids[i + 1], (dir->n_kids - 1 - i) * sizeof(*dir->kids));
	dir->n_kids--;
	inval_name(inv, dir, kid->name);
	inval_ino(inv, dir->ino);
}

/* Removes synthesized folders left empty, from @dir up to (not including) @top. */
void mfs_prune_empty(struct mfs_node *dir, const struct mfs_node *top, struct mfs_inval *inv)
{
	while (dir != top && dir->kind == MFS_N_DIR && !dir->model && dir->n_kids == 0 &&
	       dir->parent) {
		struct mfs_node *up = dir->parent;

		mfs_kid_remove(dir, inv);
		dir = up;
	}
}

/*
 * Links @node at @path below @top: every component but the last is a
 * folder, found or synthesized; @node (named after the last component, plus
 * a suffix for BOM files) goes into the last one, kept sorted.
 * Return: 0, -EEXIST (a component is not a folder, or the name is taken;
 * folders made for it are removed again), -ENAMETOOLONG, -ENOMEM.
 */
int mfs_ns_link(struct mfs_mount *m, struct mfs_node *top, const char *path, struct mfs_node *node,
                struct mfs_inval *inv)
{
	struct mfs_node *dir = top, *k;
	const char *p = path;
	char comp[NAME_MAX + 1];
	bool found;
	size_t i;
	int ret;

	for (;;) {
		size_t l = strcspn(p, "/");

		if (l > NAME_MAX)
			return -ENAMETOOLONG;
		if (!p[l])
			break;
		memcpy(comp, p, l);
		comp[l] = '\0';
		p += l + 1;
		i = kid_pos(dir, comp, &found);
		if (found) {
			k = dir->kids[i];
			if (k->kind != MFS_N_DIR || k->model) {
				ret = -EEXIST;
				goto fail;
			}
		} else {
			k = mfs_node_new(m, MFS_N_DIR, comp, NULL);
			if (!k || mfs_kid_insert(dir, k)) {
				ret = -ENOMEM;
				goto fail;
			}
			mfs_attr_ns_dir(m, k, path, (size_t)(p - 1 - path));
			inval_name(inv, dir, k->name); /* a negative entry may be cached */
			inval_ino(inv, dir->ino);
		}
		dir = k;
	}
	ret = mfs_kid_insert(dir, node);
	if (ret)
		goto fail;
	inval_name(inv, dir, node->name);
	inval_ino(inv, dir->ino);
	return 0;
fail:
	mfs_prune_empty(dir, top, inv);
	return ret;
}

/* Replaces @old by @new (same name) in @old's parent. */
void mfs_ns_swap(struct mfs_node *old, struct mfs_node *new, struct mfs_inval *inv)
{
	struct mfs_node *dir = old->parent;
	bool found;
	size_t i = kid_pos(dir, old->name, &found);

	if (!found || dir->kids[i] != old)
		return;
	dir->kids[i] = new;
	new->parent = dir;
	inval_name(inv, dir, old->name);
	inval_ino(inv, dir->ino);
}
