// SPDX-License-Identifier: Apache-2.0
/*
 * store.c - the store scan and the mount's namespace.
 *
 * At mount the store is walked without following symlinks, every folder
 * holding a model.sig becomes a model, and its signature is checked (no data
 * is hashed). Exposed models contribute their signed files and the folders
 * synthesized from the files' paths; nothing else in the store is visible.
 *
 * A live reload (reload.c) walks the store again with the same code: a model
 * whose model.sig bytes (SHA-256) and folder are unchanged is kept as is;
 * a new or changed one is built into new nodes outside any lock, then the
 * changes are published under the namespace write lock by linking,
 * unlinking or swapping whole model folders. A replaced or removed version
 * is freed, nodes and all, when its last reference goes (mount_int.h,
 * Lifetime); its inode numbers (node table indexes + 1) are then reused.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mount_int.h"

#define MAX_SCAN_DEPTH 64
/* Sizes of log value buffers (mfs_log_value: quoted and escaped, so names cannot forge lines). */
#define LQ_PATH (PATH_MAX + 8)
#define LQ_WHY  1400

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
static void node_slot_give(struct mfs_mount *m, struct mfs_node *n)
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

static void slab_free(struct mfs_model *model)
{
	while (model->slab) {
		struct mfs_slab *s = model->slab;

		model->slab = s->next;
		ASAN_UNPOISON_MEMORY_REGION(s->data, s->cap); /* the gaps after views */
		free(s);
	}
}

/* Frees what a node holds and the node itself; its slot must be given back first. */
static void node_free(struct mfs_node *n)
{
	if (n->kind == MFS_N_TX) {
		mfs_tx_free(n);
	} else {
		pthread_mutex_destroy(&n->lock);
		free(n->tree);
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
		node_free(n);
		return NULL;
	}
	return n;
}

/* Links @kid under @dir (unsorted until sort_kids). 0 or -ENOMEM. */
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
static int dir_get(struct mfs_mount *m, struct mfs_node *dir, const char *name,
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
static int sort_kids(struct mfs_node *dir, const char **dup)
{
	int ret;

	if (dir->n_kids > 1)
		qsort(dir->kids, dir->n_kids, sizeof(*dir->kids), kid_cmp);
	for (size_t i = 0; i < dir->n_kids; i++) {
		if (i && strcmp(dir->kids[i - 1]->name, dir->kids[i]->name) == 0) {
			*dup = dir->kids[i]->name;
			return -EEXIST;
		}
		ret = sort_kids(dir->kids[i], dup);
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
static void inval_subtree(struct mfs_inval *inv, const struct mfs_node *n)
{
	inval_ino(inv, n->ino);
	for (size_t i = 0; i < n->n_kids; i++)
		inval_subtree(inv, n->kids[i]);
}

void mfs_inval_free(struct mfs_inval *inv)
{
	free(inv->ents);
	free(inv->inos);
	memset(inv, 0, sizeof(*inv));
}

/* ---- changing folders outside models (callers hold ns_lock for writing, or are alone) ---- */

/* Inserts @kid into @dir's sorted children. 0, -EEXIST (name taken), -ENOMEM. */
static int kid_insert(struct mfs_node *dir, struct mfs_node *kid)
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
static void kid_remove(struct mfs_node *kid, struct mfs_inval *inv)
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
static void prune_empty(struct mfs_node *dir, const struct mfs_node *top, struct mfs_inval *inv)
{
	while (dir != top && dir->kind == MFS_N_DIR && !dir->model && dir->n_kids == 0 &&
	       dir->parent) {
		struct mfs_node *up = dir->parent;

		kid_remove(dir, inv);
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
static int ns_link(struct mfs_mount *m, struct mfs_node *top, const char *path,
                   struct mfs_node *node, struct mfs_inval *inv)
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
			if (!k || kid_insert(dir, k)) {
				ret = -ENOMEM;
				goto fail;
			}
			mfs_attr_ns_dir(m, k, path, (size_t)(p - 1 - path));
			inval_name(inv, dir, k->name); /* a negative entry may be cached */
			inval_ino(inv, dir->ino);
		}
		dir = k;
	}
	ret = kid_insert(dir, node);
	if (ret)
		goto fail;
	inval_name(inv, dir, node->name);
	inval_ino(inv, dir->ino);
	return 0;
fail:
	prune_empty(dir, top, inv);
	return ret;
}

/* Replaces @old by @new (same name) in @old's parent. */
static void ns_swap(struct mfs_node *old, struct mfs_node *new, struct mfs_inval *inv)
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

/* ---- building one model ---- */

/* Files modelfs keeps inside a model never appear, even if signed. */
static bool name_hidden(const char *name)
{
	return strcmp(name, MV_SIG_NAME) == 0 || strcmp(name, MV_HIDDEN_DIR) == 0 ||
	       strncmp(name, MV_HIDDEN_DIR "/", sizeof(MV_HIDDEN_DIR)) == 0;
}

/* Every component must fit a directory entry. */
static bool components_fit(const char *name)
{
	const char *p = name;

	while (*p) {
		size_t l = strcspn(p, "/");

		if (l == 0 || l > NAME_MAX)
			return false;
		p += l;
		if (*p == '/')
			p++;
	}
	return true;
}

static void warn_cb(void *ctx, const char *line)
{
	const struct mfs_model *model = ctx;
	char q[LQ_PATH], w[LQ_WHY];

	mfs_log(LOG_WARNING, "model-warning model=%s reason=%s",
	        mfs_log_value(model->path, q, sizeof(q)), mfs_log_value(line, w, sizeof(w)));
}

/* Reads model.sig relative to the model folder, refusing links and non-files. */
static int read_sig(int dirfd, char **buf, size_t *len, char *why, size_t why_len)
{
	struct stat st;
	size_t done = 0;
	int fd, ret = 0;

	*buf = NULL;
	fd = openat(dirfd, MV_SIG_NAME, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, why_len, "%s: %s", MV_SIG_NAME, strerror(errno));
		return -errno;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
	    (uint64_t)st.st_size > MV_MAX_SIG_SIZE) {
		snprintf(why, why_len, "%s: not a regular file of 1 byte to 64 MiB", MV_SIG_NAME);
		ret = -EINVAL;
		goto out;
	}
	*buf = malloc((size_t)st.st_size + 1);
	if (!*buf) {
		ret = -ENOMEM;
		snprintf(why, why_len, "out of memory");
		goto out;
	}
	while (done < (size_t)st.st_size) {
		ssize_t n = read(fd, *buf + done, (size_t)st.st_size - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -errno : -EIO;
			snprintf(why, why_len, "%s: %s", MV_SIG_NAME,
			         n < 0 ? strerror(-ret) : "short read");
			goto out;
		}
		done += (size_t)n;
	}
	(*buf)[done] = '\0';
	*len = done;
out:
	if (ret) {
		free(*buf);
		*buf = NULL;
	}
	close(fd);
	return ret;
}

/*
 * Checks what the mount needs from each signed file. Trees themselves are
 * made at a file's first use (mfs_file_tree()): a signature of many files
 * costs no tree for the files never read.
 */
static int check_resources(struct mfs_model *model, char *why, size_t why_len)
{
	const struct mv_manifest *man = model->man;

	for (size_t i = 0; i < man->n_res; i++) {
		const struct mv_resource *r = &man->res[i];
		uint8_t d[MV_MAX_DIGEST_SIZE];
		struct mv_tree t;
		size_t ds;

		if (!mv_resource_name_valid(r->name, false) || !components_fit(r->name)) {
			snprintf(why, why_len, "invalid file name in signature: %.200s", r->name);
			return -EINVAL;
		}
		if (!r->has_merkle) {
			snprintf(why, why_len,
			         "no Merkle roots (plain OMS signature); seal with modelfs");
			return -EINVAL;
		}
		if (r->merkle.params.data_size == 0)
			continue;
		if (mv_tree_init(&t, &r->merkle.params, r->merkle.root)) {
			snprintf(why, why_len, "bad Merkle parameters for %.200s", r->name);
			return -EINVAL;
		}
		/* The signed digest must be the digest of the signed root. */
		ds = mv_hash_digest_size(r->merkle.params.alg);
		mv_descriptor_digest(&r->merkle.params, r->merkle.root, d);
		if (memcmp(d, r->merkle.digest, ds) != 0) {
			snprintf(why, why_len, "Merkle root and digest disagree for %.200s",
			         r->name);
			return -EBADMSG;
		}
	}
	return 0;
}

/* Creates the file nodes of a model under its (not yet linked) folder node. */
static int build_files(struct mfs_mount *m, struct mfs_model *model, char *why, size_t why_len)
{
	const struct mv_manifest *man = model->man;
	char comp[NAME_MAX + 1];
	int ret;

	model->files = calloc(man->n_res ? man->n_res : 1, sizeof(*model->files));
	if (!model->files)
		return -ENOMEM;
	for (size_t i = 0; i < man->n_res; i++) {
		const struct mv_resource *r = &man->res[i];
		struct mfs_node *dir = model->node, *f;
		const char *p = r->name;

		if (name_hidden(r->name))
			continue;
		for (;;) {
			size_t l = strcspn(p, "/");

			memcpy(comp, p, l); /* l <= NAME_MAX: components_fit() */
			comp[l] = '\0';
			p += l;
			if (*p != '/')
				break;
			p++;
			ret = dir_get(m, dir, comp, model, &dir);
			if (ret == -EEXIST)
				snprintf(why, why_len, "%.200s is both a file and a folder",
				         r->name);
			if (ret)
				return ret;
		}
		f = mfs_node_new(m, MFS_N_FILE, comp, model);
		if (!f)
			return -ENOMEM;
		f->res = r;
		ret = mfs_node_add_kid(dir, f);
		if (ret)
			return ret;
		model->files[model->n_files++] = f;
	}
	return 0;
}

/* The model's last path component. */
static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

/*
 * Makes the model's (unlinked) BOM file node, MOUNT/.modelfs/bom/<path>.cdx.json.
 * A last component too long for the suffix gets no file: logged, not an error.
 */
static int bom_node_make(struct mfs_mount *m, struct mfs_model *model)
{
	const char *b = base_name(model->path);
	char name[NAME_MAX + 1], q[LQ_PATH];

	if (strlen(b) > NAME_MAX - (sizeof(MFS_BOM_EXT) - 1)) {
		mfs_log(LOG_WARNING, "bom-file-skipped model=%s reason=\"name too long\"",
		        mfs_log_value(model->path, q, sizeof(q)));
		return 0;
	}
	snprintf(name, sizeof(name), "%s%s", b, MFS_BOM_EXT);
	model->bom_node = mfs_node_new(m, MFS_N_BOM, name, model);
	return model->bom_node ? 0 : -ENOMEM;
}

/*
 * Frees the nodes of a model that is being refused: never linked, so no
 * reader or kernel inode can know them.
 */
static void model_drop_nodes(struct mfs_model *model)
{
	for (size_t i = 0; i < model->n_all; i++) {
		node_slot_give(model->m, model->all_nodes[i]);
		node_free(model->all_nodes[i]);
	}
	model->n_all = 0;
	model->node = NULL;
	model->bom_node = NULL;
	free(model->files);
	model->files = NULL;
	model->n_files = 0;
}

/*
 * Marks @model refused for @why. @log: at mount; a reload logs its own
 * event line instead (report_one). 0 or -ENOMEM.
 */
static int model_refuse(struct mfs_model *model, const char *why, bool log)
{
	char q[LQ_PATH], w[LQ_WHY];

	model_drop_nodes(model);
	model->refused = strdup(why[0] ? why : "refused");
	if (log)
		mfs_log(LOG_WARNING, "model-refused model=%s reason=%s",
		        mfs_log_value(model->path, q, sizeof(q)),
		        mfs_log_value(why[0] ? why : "refused", w, sizeof(w)));
	return model->refused ? 0 : -ENOMEM;
}

/**
 * model_name_check() - is the model's signed name bound to its store path?
 * @m: in: the mount (--name-check mode, the policy's names map)
 * @model: in: a model whose signature verified (man set)
 * @why, @why_len: out: on refusal, the one-line reason
 *
 * Without it, any validly signed model put at another model's path (an
 * older build signed under another name, a swapped folder) would be served
 * there, past pins and rules keyed on that path.
 * Return: 0 bound, -EKEYREJECTED not.
 */
static int model_name_check(const struct mfs_mount *m, const struct mfs_model *model, char *why,
                            size_t why_len)
{
	struct mv_err err = {0};
	int ret = mv_name_bind_check(m->policy, model->path, model->man, m->name_check, &err);

	if (ret)
		snprintf(why, why_len, "%s", err.msg[0] ? err.msg : "signed name does not match");
	return ret;
}

/*
 * Signature check and (unlinked) nodes of one model from the model.sig
 * bytes @buf; a refusal is not an error (@log: log it, see model_refuse).
 * Return: 0 or -ENOMEM.
 */
static int model_load(struct mfs_mount *m, struct mfs_model *model, const char *buf, size_t len,
                      bool log)
{
	char why[1100] = "";
	const char *dup = NULL;
	struct mv_err err = {0};
	int ret;

	ret = mv_sig_parse(buf, len, m->trust, warn_cb, model, &model->man, &err);
	if (ret) {
		snprintf(why, sizeof(why), "%s", err.msg[0] ? err.msg : strerror(-ret));
		goto refuse;
	}
	ret = check_resources(model, why, sizeof(why));
	if (!ret)
		ret = model_name_check(m, model, why, sizeof(why));
	if (ret)
		goto refuse;
	/* Attestations, then the policy: a refused model gets no nodes at all. */
	ret = mfs_prov_scan(m, model, why, sizeof(why));
	if (ret == -ENOMEM)
		return ret;
	if (ret)
		goto refuse;
	model->node = mfs_node_new(m, MFS_N_MODEL, base_name(model->path), model);
	if (!model->node)
		return -ENOMEM;
	ret = build_files(m, model, why, sizeof(why));
	if (!ret && model->pickle == MFS_PICKLE_TRANSCODE)
		ret = mfs_tx_nodes_add(m, model);
	if (ret == -ENOMEM)
		return ret;
	if (!ret && sort_kids(model->node, &dup)) {
		snprintf(why, sizeof(why), "duplicate name %.200s", dup);
		ret = -EEXIST;
	}
	if (ret)
		goto refuse;
	mfs_attr_model(m, model, NULL);
	return bom_node_make(m, model);
refuse:
	if (ret == -ENOMEM)
		return ret;
	return model_refuse(model, why, log);
}

/* Frees a model no node points at (never linked), or any model at unmount. */
static void model_free(struct mfs_model *model)
{
	if (!model)
		return;
	if (model->dirfd > 0)
		close(model->dirfd);
	mfs_prov_free(model);
	mv_manifest_free(model->man);
	pthread_mutex_destroy(&model->lock);
	pthread_mutex_destroy(&model->prov_lock);
	free(model->all_nodes);
	slab_free(model);
	free(model->files);
	free(model->refused);
	free(model->reload_error);
	free(model->path);
	free(model);
}

/*
 * Builds the model in folder @dirfd (store path @rel): reads model.sig once,
 * remembers its SHA-256 and the folder's identity (what a reload compares),
 * checks it and makes its unlinked nodes.
 * @log: in: log a refusal (at mount; see model_refuse)
 * @out: out: the model, refused or not; set whenever it was allocated, even
 *       on error (the caller owns it)
 * Return: 0 or -errno (-ENOMEM, or the folder could not be duplicated).
 */
static int model_build(struct mfs_mount *m, int dirfd, const char *rel, const struct stat *sig_st,
                       bool log, struct mfs_model **out)
{
	char why[1100] = "", *buf = NULL;
	struct mfs_model *model;
	struct stat dst;
	size_t len = 0;
	int ret;

	*out = model = calloc(1, sizeof(*model));
	if (!model)
		return -ENOMEM;
	pthread_mutex_init(&model->lock, NULL);
	pthread_mutex_init(&model->prov_lock, NULL);
	model->m = m;
	model->refs = 1; /* the builder's, then the namespace's once published */
	model->mtime = sig_st->st_mtim;
	model->path = strdup(rel[0] ? rel : ".");
	model->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
	if (model->dirfd < 0) {
		ret = -errno;
		if (mfs_fd_errno(ret))
			mfs_fd_exhausted(m, "model-folder", ret);
		return ret;
	}
	if (!model->path)
		return -ENOMEM;
	if (fstat(model->dirfd, &dst) == 0) {
		model->dir_dev = dst.st_dev;
		model->dir_ino = dst.st_ino;
	}
	ret = read_sig(model->dirfd, &buf, &len, why, sizeof(why));
	if (ret == -ENOMEM)
		return ret;
	if (mfs_fd_errno(ret))
		mfs_fd_exhausted(m, "model.sig", ret);
	if (!ret) {
		model->sig_read = true;
		mv_sha256(buf, len, model->sig_sha256);
	}
	if (!rel[0])
		snprintf(why, sizeof(why), "the store itself is a model; mount its parent folder");
	if (ret || !rel[0])
		ret = model_refuse(model, why, log);
	else
		ret = model_load(m, model, buf, len, log);
	free(buf);
	return ret;
}

/* ---- publishing a model in the namespace (ns_lock held for writing, or alone) ---- */

static struct mfs_node *bom_dir(struct mfs_mount *m)
{
	return mfs_node_child(mfs_node_get(m, MFS_CTL_INO), MFS_BOM_DIR);
}

static void add_total(struct mfs_mount *m, const struct mfs_model *model, bool add)
{
	uint64_t t = 0;

	for (size_t i = 0; i < model->n_files; i++)
		t += model->files[i]->res->merkle.params.data_size;
	if (add)
		__atomic_fetch_add(&m->total_bytes, t, __ATOMIC_RELAXED);
	else
		__atomic_fetch_sub(&m->total_bytes, t, __ATOMIC_RELAXED);
}

/* Links the BOM file of @model, if it has one; a taken name is logged, not fatal. */
static int bom_link(struct mfs_mount *m, struct mfs_model *model, struct mfs_inval *inv)
{
	char q[LQ_PATH];
	int ret;

	if (!model->bom_node)
		return 0;
	ret = ns_link(m, bom_dir(m), model->path, model->bom_node, inv);
	if (ret == -ENOMEM)
		return ret;
	if (ret) {
		mfs_log(LOG_WARNING, "bom-file-skipped model=%s reason=\"name too long or taken\"",
		        mfs_log_value(model->path, q, sizeof(q)));
		model->bom_node = NULL;
	}
	return 0;
}

/*
 * Links an exposed model's folder and BOM file into the namespace; a path
 * that collides refuses the model. @inv is NULL at mount (nothing cached
 * yet), where the refusal is logged; a reload logs its own event line.
 * Return: 0 or -ENOMEM.
 */
static int model_link(struct mfs_mount *m, struct mfs_model *model, struct mfs_inval *inv)
{
	int ret;

	if (!model->node)
		return 0;
	ret = ns_link(m, mfs_node_get(m, MFS_ROOT_INO), model->path, model->node, inv);
	if (ret == -ENOMEM)
		return ret;
	if (ret)
		return model_refuse(model,
		                    ret == -EEXIST ? "path collides with another model"
		                                   : "path component too long",
		                    !inv);
	add_total(m, model, true);
	return bom_link(m, model, inv);
}

/* Takes an exposed model out of the namespace (its nodes stay valid). */
static void model_unlink(struct mfs_mount *m, struct mfs_model *model, struct mfs_inval *inv)
{
	struct mfs_node *up;

	if (model->node && model->node->parent) {
		up = model->node->parent;
		kid_remove(model->node, inv);
		prune_empty(up, mfs_node_get(m, MFS_ROOT_INO), inv);
		inval_subtree(inv, model->node);
		add_total(m, model, false);
	}
	if (model->bom_node && model->bom_node->parent) {
		up = model->bom_node->parent;
		kid_remove(model->bom_node, inv);
		prune_empty(up, bom_dir(m), inv);
		inval_ino(inv, model->bom_node->ino);
	}
}

/* Puts exposed @new where exposed @old was: one swap per folder, nothing in between. */
static int model_swap(struct mfs_mount *m, struct mfs_model *old, struct mfs_model *new,
                      struct mfs_inval *inv)
{
	ns_swap(old->node, new->node, inv);
	inval_subtree(inv, old->node);
	add_total(m, old, false);
	add_total(m, new, true);
	if (old->bom_node && new->bom_node && old->bom_node->parent) {
		ns_swap(old->bom_node, new->bom_node, inv);
		inval_ino(inv, old->bom_node->ino);
		return 0;
	}
	if (old->bom_node && old->bom_node->parent) {
		struct mfs_node *up = old->bom_node->parent;

		kid_remove(old->bom_node, inv);
		prune_empty(up, bom_dir(m), inv);
	}
	return bom_link(m, new, inv);
}

/* ---- walking the store ---- */

struct scan_ctx;
/* Called for a folder holding model.sig; its insides are the model's business. */
typedef int (*model_fn)(struct scan_ctx *c, int dirfd, const char *rel, const struct stat *sig_st);

struct scan_ctx {
	struct mfs_mount *m;
	model_fn found;
	mfs_dir_fn dir_fn; /* every folder entered (inotify watches), or NULL */
	void *dir_arg;
	struct rescan *rs; /* reload only */
};

static int scan_dir(struct scan_ctx *c, int dirfd, const char *rel, unsigned depth);

/*
 * A subfolder could not be opened (errno @e). Not a folder, a symlink or
 * gone since the listing (a reload racing a change): skipped. Anything else
 * is skipped with a warning at mount, but stops a reload: a folder it could
 * not read would look removed, and its models would go (nothing changes,
 * the next reload tries again). Out of descriptors is counted.
 * Return: 0 (skip) or -@e.
 */
static int scan_open_failed(struct scan_ctx *c, const char *rel, int e)
{
	char q[LQ_PATH];

	if (e == ENOTDIR || e == ELOOP || e == ENOENT)
		return 0;
	if (mfs_fd_errno(-e))
		mfs_fd_exhausted(c->m, "store-scan", -e);
	mfs_log(LOG_WARNING, "scan-%s path=%s reason=\"%s\"", c->rs ? "failed" : "skip",
	        mfs_log_value(rel, q, sizeof(q)), strerror(e));
	return c->rs ? -e : 0;
}

/* Scans subfolder @name of @dirfd, never through a symlink. */
static int scan_sub(struct scan_ctx *c, int dirfd, const char *rel, const char *name,
                    unsigned depth)
{
	char *sub_rel = NULL;
	int fd, ret, e;

	if (asprintf(&sub_rel, "%s%s%s", rel, rel[0] ? "/" : "", name) < 0)
		return -ENOMEM;
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		e = errno;
		ret = scan_open_failed(c, sub_rel, e);
		free(sub_rel);
		return ret;
	}
	ret = scan_dir(c, fd, sub_rel, depth + 1);
	free(sub_rel);
	close(fd);
	return ret;
}

/*
 * Scans one store folder: a model if it holds model.sig (its insides are
 * then the model's business), else its subfolders are scanned. The folder
 * is reported to dir_fn first, so that a watch is in place before its
 * contents are read (nothing created after the read goes unnoticed).
 */
static int scan_dir(struct scan_ctx *c, int dirfd, const char *rel, unsigned depth)
{
	struct dirent *de;
	struct stat st;
	char q[LQ_PATH];
	DIR *d;
	int fd, ret = 0;

	if (c->dir_fn)
		c->dir_fn(c->dir_arg, dirfd, rel);
	if (fstatat(dirfd, MV_SIG_NAME, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return c->found(c, dirfd, rel, &st);
	if (depth >= MAX_SCAN_DEPTH) {
		mfs_log(LOG_WARNING, "scan-skip path=%s reason=\"deeper than %d folders\"",
		        mfs_log_value(rel, q, sizeof(q)), MAX_SCAN_DEPTH);
		return 0;
	}
	fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		if (mfs_fd_errno(ret))
			mfs_fd_exhausted(c->m, "store-scan", ret);
		return ret;
	}
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		/* The control folder owns this name at the root. */
		if (depth == 0 && !strcmp(de->d_name, MFS_CTL_NAME))
			continue;
		if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
			continue;
		ret = scan_sub(c, dirfd, rel, de->d_name, depth);
		if (ret)
			break;
	}
	closedir(d);
	return ret;
}

static int model_cmp(const void *a, const void *b)
{
	const struct mfs_model *x = *(struct mfs_model *const *)a;
	const struct mfs_model *y = *(struct mfs_model *const *)b;

	return strcmp(x->path, y->path);
}

/* Mount: records the model of a folder holding model.sig and builds it. */
static int mount_found(struct scan_ctx *c, int dirfd, const char *rel, const struct stat *sig_st)
{
	struct mfs_mount *m = c->m;
	struct mfs_model *model = NULL, **p;
	int ret;

	p = realloc(m->models, (m->n_models + 1) * sizeof(*p));
	if (!p)
		return -ENOMEM;
	m->models = p;
	ret = model_build(m, dirfd, rel, sig_st, true, &model);
	if (model)
		m->models[m->n_models++] = model; /* freed with the mount, whatever happened */
	return ret;
}

static int walk_found(struct scan_ctx *c, int dirfd, const char *rel, const struct stat *sig_st)
{
	return 0;
}

int mfs_store_walk_dirs(struct mfs_mount *m, mfs_dir_fn dir_fn, void *dir_arg)
{
	struct scan_ctx c = {.m = m, .found = walk_found, .dir_fn = dir_fn, .dir_arg = dir_arg};

	return scan_dir(&c, m->store_fd, "", 0);
}

int mfs_store_scan(struct mfs_mount *m, struct mv_err *err)
{
	struct scan_ctx c = {.m = m, .found = mount_found};
	struct mfs_node *root, *ctl, *status, *metrics, *bom;
	char q[LQ_PATH];
	int ret;

	root = mfs_node_new(m, MFS_N_DIR, "", NULL);
	ctl = mfs_node_new(m, MFS_N_CTL, MFS_CTL_NAME, NULL);
	status = mfs_node_new(m, MFS_N_STATUS, MFS_STATUS_NAME, NULL);
	metrics = mfs_node_new(m, MFS_N_METRICS, MFS_METRICS_NAME, NULL);
	bom = mfs_node_new(m, MFS_N_DIR, MFS_BOM_DIR, NULL);
	if (!root || !ctl || !status || !metrics || !bom)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", m->store);
	/* The control folder is reached by name only (see docs/mount.md). */
	ctl->parent = root;
	mfs_attr_root(m, root);
	mfs_attr_ctl(ctl);
	mfs_attr_ctl(status);
	mfs_attr_ctl(metrics);
	mfs_attr_ctl(bom);
	ret = kid_insert(ctl, status);
	if (!ret)
		ret = kid_insert(ctl, metrics);
	if (!ret)
		ret = kid_insert(ctl, bom);
	if (ret)
		return mv_err_set(err, ret, "%s: out of memory", m->store);

	ret = scan_dir(&c, m->store_fd, "", 0);
	if (ret)
		return mv_err_set(err, ret, "%s: cannot scan the store: %s", m->store,
		                  strerror(-ret));
	if (m->n_models > 1)
		qsort(m->models, m->n_models, sizeof(*m->models), model_cmp);
	/* Linked in path order: which of two colliding paths wins does not depend on readdir. */
	for (size_t i = 0; i < m->n_models; i++) {
		struct mfs_model *model = m->models[i];

		ret = model_link(m, model, NULL);
		if (ret)
			return mv_err_set(err, ret, "%s: out of memory", m->store);
		if (model->node)
			mfs_log(LOG_INFO, "model-exposed model=%s files=%zu",
			        mfs_log_value(model->path, q, sizeof(q)), model->n_files);
	}
	return 0;
}

/* ---- live reload: rescan, then publish ---- */

enum change_kind {
	CH_REMOVE,   /* the folder or its model.sig is gone */
	CH_REPLACE,  /* a new version verified (or a refused model now verifies, or is refused anew)
	              */
	CH_ADD,      /* a new model folder (exposed or refused) */
	CH_KEEP,     /* a new version was refused: the exposed old one keeps serving */
	CH_RESTORED, /* model.sig is back to the version served: its reload error goes */
};

struct change {
	enum change_kind kind;
	struct mfs_model *old, *new;
	char *error; /* CH_KEEP: the new reload_error; after publishing: the one replaced */
};

struct rescan {
	bool *seen; /* per m->models index */
	struct change *ch;
	size_t n_ch, cap_ch;
};

static int change_add(struct rescan *rs, enum change_kind kind, struct mfs_model *old,
                      struct mfs_model *new)
{
	if (rs->n_ch == rs->cap_ch) {
		size_t cap = rs->cap_ch ? rs->cap_ch * 2 : 16;
		struct change *p = realloc(rs->ch, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		rs->ch = p;
		rs->cap_ch = cap;
	}
	rs->ch[rs->n_ch++] = (struct change){.kind = kind, .old = old, .new = new};
	return 0;
}

/*
 * Retires a model no new lookup can reach any more (unlinked, or never
 * linked): its published reference is dropped by mfs_store_retire() once
 * the kernel was told to forget its names, which the invalidation list
 * still points at. A failed allocation here leaks it rather than free it
 * early.
 */
static void model_discard(struct mfs_mount *m, struct mfs_model *model)
{
	struct mfs_model **p;

	if (!model)
		return;
	p = realloc(m->retiring, (m->n_retiring + 1) * sizeof(*p));
	if (!p)
		return;
	m->retiring = p;
	m->retiring[m->n_retiring++] = model;
}

/* Index of the model at @path in the sorted m->models, or SIZE_MAX. */
static size_t model_find(const struct mfs_mount *m, const char *path)
{
	size_t lo = 0, hi = m->n_models;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(path, m->models[mid]->path);

		if (c == 0)
			return mid;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return SIZE_MAX;
}

static bool same_sig(bool a_read, const uint8_t *a, bool b_read, const uint8_t *b)
{
	return a_read == b_read && (!a_read || memcmp(a, b, 32) == 0);
}

/*
 * Reload: compares the model folder @rel with the model served there.
 * Same folder and same model.sig bytes: kept untouched (same nodes, same
 * inode numbers). Otherwise a new model is built (outside any lock) and
 * recorded as a change.
 */
static int rescan_found(struct scan_ctx *c, int dirfd, const char *rel, const struct stat *sig_st)
{
	struct mfs_mount *m = c->m;
	struct rescan *rs = c->rs;
	struct mfs_model *old = NULL, *new = NULL;
	size_t i = model_find(m, rel[0] ? rel : ".");
	char why[256], *buf = NULL;
	uint8_t h[32];
	bool read_ok = false, same_dir;
	struct stat dst;
	size_t len;
	int ret;

	if (i != SIZE_MAX) {
		old = m->models[i];
		rs->seen[i] = true;
		ret = read_sig(dirfd, &buf, &len, why, sizeof(why));
		if (ret == -ENOMEM)
			return ret;
		if (mfs_fd_errno(ret))
			mfs_fd_exhausted(m, "model.sig", ret);
		if (!ret) {
			read_ok = true;
			mv_sha256(buf, len, h);
			free(buf);
		}
		same_dir = fstat(dirfd, &dst) == 0 && dst.st_dev == old->dir_dev &&
		           dst.st_ino == old->dir_ino;
		if (same_dir && same_sig(old->sig_read, old->sig_sha256, read_ok, h))
			return old->reload_error ? change_add(rs, CH_RESTORED, old, NULL) : 0;
		if (same_dir && old->reload_error &&
		    same_sig(old->failed_read, old->failed_sha256, read_ok, h))
			return 0; /* the version already refused: not retried, not logged again */
	}
	ret = model_build(m, dirfd, rel, sig_st, false, &new);
	if (ret) {
		model_discard(m, new);
		return ret;
	}
	if (!old)
		ret = change_add(rs, CH_ADD, NULL, new);
	else if (new->node || !old->node)
		ret = change_add(rs, CH_REPLACE, old, new);
	else
		ret = change_add(rs, CH_KEEP, old, new);
	if (ret)
		model_discard(m, new);
	return ret;
}

/* Everything built for a rescan that is not published. */
static void rescan_abort(struct mfs_mount *m, struct rescan *rs)
{
	for (size_t i = 0; i < rs->n_ch; i++)
		model_discard(m, rs->ch[i].new);
	rs->n_ch = 0;
}

/* The model list after the changes, sorted; built before taking the lock. */
static int next_models(struct mfs_mount *m, struct rescan *rs, struct mfs_model ***out,
                       size_t *n_out)
{
	struct mfs_model **arr, **cur = calloc(m->n_models ? m->n_models : 1, sizeof(*cur));
	size_t n = 0;

	if (!cur)
		return -ENOMEM;
	memcpy(cur, m->models, m->n_models * sizeof(*cur));
	for (size_t i = 0; i < rs->n_ch; i++) {
		struct change *ch = &rs->ch[i];
		size_t k = ch->old ? model_find(m, ch->old->path) : SIZE_MAX;

		if (k == SIZE_MAX)
			continue;
		if (ch->kind == CH_REMOVE)
			cur[k] = NULL;
		else if (ch->kind == CH_REPLACE)
			cur[k] = ch->new;
	}
	arr = calloc(m->n_models + rs->n_ch + 1, sizeof(*arr));
	if (!arr) {
		free(cur);
		return -ENOMEM;
	}
	for (size_t i = 0; i < m->n_models; i++)
		if (cur[i])
			arr[n++] = cur[i];
	for (size_t i = 0; i < rs->n_ch; i++)
		if (rs->ch[i].kind == CH_ADD)
			arr[n++] = rs->ch[i].new;
	free(cur);
	if (n > 1)
		qsort(arr, n, sizeof(*arr), model_cmp);
	*out = arr;
	*n_out = n;
	return 0;
}

/* Applies one change to the namespace; ns_lock is held for writing. */
static void publish_one(struct mfs_mount *m, struct change *ch, struct mfs_inval *inv)
{
	char *e, q[LQ_PATH];
	int ret = 0;

	switch (ch->kind) {
	case CH_REMOVE: model_unlink(m, ch->old, inv); break;
	case CH_REPLACE:
		if (ch->old->node && ch->new->node)
			ret = model_swap(m, ch->old, ch->new, inv);
		else
			ret = model_link(m, ch->new, inv);
		break;
	case CH_ADD: ret = model_link(m, ch->new, inv); break;
	case CH_KEEP:
		e = ch->old->reload_error;
		ch->old->reload_error = ch->error;
		ch->error = e;
		ch->old->failed_read = ch->new->sig_read;
		memcpy(ch->old->failed_sha256, ch->new->sig_sha256, 32);
		break;
	case CH_RESTORED:
		ch->error = ch->old->reload_error;
		ch->old->reload_error = NULL;
		break;
	}
	if (ret) /* no memory for a folder node: the model stays out of sight */
		mfs_log(LOG_ERR, "reload-failed model=%s reason=\"out of memory\"",
		        mfs_log_value(ch->new->path, q, sizeof(q)));
}

/* One log line per model event (the format of docs/mount.md), and the counts. */
static void report_one(const struct change *ch, struct mfs_rescan_result *res)
{
	const struct mfs_model *mo = ch->new ? ch->new : ch->old;
	char q[LQ_PATH], w[LQ_WHY];
	const char *path = mfs_log_value(mo->path, q, sizeof(q));
	const char *why = mfs_log_value(mo->refused ? mo->refused : "refused", w, sizeof(w));

	switch (ch->kind) {
	case CH_REMOVE:
		res->removed++;
		mfs_log(LOG_NOTICE, "model-removed model=%s", path);
		return;
	case CH_RESTORED:
		mfs_log(
		    LOG_NOTICE,
		    "model-restored model=%s reason=\"model.sig is back to the served version\"",
		    path);
		return;
	case CH_KEEP:
		res->refused++;
		mfs_log(LOG_WARNING, "model-kept-last-good model=%s reason=%s", path, why);
		return;
	default: break;
	}
	if (!mo->node) {
		res->refused++;
		mfs_log(LOG_WARNING, "model-refused model=%s reason=%s", path, why);
	} else if (ch->kind == CH_ADD) {
		res->added++;
		mfs_log(LOG_NOTICE, "model-added model=%s files=%zu", path, mo->n_files);
	} else {
		res->changed++;
		mfs_log(LOG_NOTICE, "model-replaced model=%s files=%zu", path, mo->n_files);
	}
}

/*
 * Publishes the changes: everything that can fail was prepared before, so
 * the write-locked section only relinks nodes (and, for new parent folders,
 * allocates them). Replaced and removed models are retired after it.
 */
static int rescan_publish(struct mfs_mount *m, struct rescan *rs, struct mfs_rescan_result *res,
                          struct mfs_inval *inv)
{
	static const enum change_kind order[] = {CH_REMOVE, CH_REPLACE, CH_ADD, CH_KEEP,
	                                         CH_RESTORED};
	struct mfs_model **arr, **old_arr;
	size_t n;
	int ret;

	for (size_t i = 0; i < rs->n_ch; i++) {
		struct change *ch = &rs->ch[i];

		if (ch->kind == CH_KEEP &&
		    !(ch->error = strdup(ch->new->refused ? ch->new->refused : "refused")))
			return -ENOMEM;
	}
	ret = next_models(m, rs, &arr, &n);
	if (ret)
		return ret;
	pthread_rwlock_wrlock(&m->ns_lock);
	/* Removals first: a path freed by one may be taken by an addition. */
	for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++)
		for (size_t i = 0; i < rs->n_ch; i++)
			if (rs->ch[i].kind == order[k])
				publish_one(m, &rs->ch[i], inv);
	old_arr = m->models;
	m->models = arr;
	m->n_models = n;
	pthread_rwlock_unlock(&m->ns_lock);
	free(old_arr);
	res->models = n;
	for (size_t i = 0; i < rs->n_ch; i++) {
		struct change *ch = &rs->ch[i];

		report_one(ch, res);
		free(ch->error);
		if (ch->kind == CH_KEEP)
			model_discard(m, ch->new);
		else if (ch->kind == CH_REMOVE || ch->kind == CH_REPLACE)
			model_discard(m, ch->old);
	}
	rs->n_ch = 0;
	return 0;
}

int mfs_store_rescan(struct mfs_mount *m, mfs_dir_fn dir_fn, void *dir_arg,
                     struct mfs_rescan_result *res, struct mfs_inval *inv)
{
	struct rescan rs = {0};
	struct scan_ctx c = {
	    .m = m, .found = rescan_found, .dir_fn = dir_fn, .dir_arg = dir_arg, .rs = &rs};
	int ret;

	memset(res, 0, sizeof(*res));
	rs.seen = calloc(m->n_models ? m->n_models : 1, sizeof(*rs.seen));
	if (!rs.seen)
		return -ENOMEM;
	ret = scan_dir(&c, m->store_fd, "", 0);
	for (size_t i = 0; !ret && i < m->n_models; i++)
		if (!rs.seen[i])
			ret = change_add(&rs, CH_REMOVE, m->models[i], NULL);
	if (!ret)
		ret = rescan_publish(m, &rs, res, inv);
	if (ret)
		rescan_abort(m, &rs);
	else
		mfs_attr_refresh(m, inv); /* chmod, chown in the store; docs/mount.md */
	free(rs.ch);
	free(rs.seen);
	return ret;
}

/* ---- the lifetime of a model version (mount_int.h, Lifetime) ---- */

void mfs_model_ref(struct mfs_model *model, uint64_t n)
{
	if (model && n)
		__atomic_fetch_add(&model->refs, n, __ATOMIC_RELAXED);
}

/* Takes @model off the list of retired versions, if it is there. */
static void retired_remove(struct mfs_mount *m, struct mfs_model *model)
{
	pthread_mutex_lock(&m->node_lock);
	for (size_t i = 0; i < m->n_retired; i++)
		if (m->retired[i] == model) {
			m->retired[i] = m->retired[--m->n_retired];
			break;
		}
	pthread_mutex_unlock(&m->node_lock);
}

/*
 * Frees a version nobody references: no published name, no kernel inode,
 * no handle, no job. Its trees' descriptors leave the fd cache and their
 * hash blocks the hash-block cache; its inode numbers become free.
 */
static void version_free(struct mfs_mount *m, struct mfs_model *model)
{
	retired_remove(m, model);
	for (size_t i = 0; i < model->n_all; i++) {
		struct mfs_node *n = model->all_nodes[i];

		mfs_file_node_free(m, n);
		node_slot_give(m, n);
		node_free(n);
	}
	model->n_all = 0;
	mfs_count(&m->ctr.versions_freed, 1);
	model_free(model);
	/* A version is big (a node, a resource and a tree per file): give its pages back. */
	malloc_trim(0);
}

void mfs_model_unref(struct mfs_mount *m, struct mfs_model *model, uint64_t n)
{
	uint64_t left;

	if (!model || !n)
		return;
	left = __atomic_sub_fetch(&model->refs, n, __ATOMIC_ACQ_REL);
	if (left == 0)
		version_free(m, model);
	else if (left > UINT64_MAX / 2)
		/* More dropped than taken: keep it forever rather than free it twice. */
		mfs_log(LOG_CRIT, "model-refs-underflow model=%s refs=%" PRIu64, model->path, left);
}

void mfs_store_retire(struct mfs_mount *m)
{
	size_t n = m->n_retiring;

	for (size_t i = 0; i < n; i++) {
		struct mfs_model *model = m->retiring[i];
		struct mfs_model **p;

		pthread_mutex_lock(&m->node_lock);
		p = realloc(m->retired, (m->n_retired + 1) * sizeof(*p));
		if (p) {
			m->retired = p;
			m->retired[m->n_retired++] = model;
		}
		pthread_mutex_unlock(&m->node_lock);
		if (p)
			mfs_model_unref(m, model, 1);
	}
	m->n_retiring = 0;
}

/*
 * Takes a reference on a listed retired version unless its count already
 * reached 0: its freeing has begun (version_free() waits for node_lock to
 * take it off the list). Called with m->node_lock held.
 */
static bool ref_if_alive(struct mfs_model *model)
{
	uint64_t r = __atomic_load_n(&model->refs, __ATOMIC_RELAXED);

	while (r)
		if (__atomic_compare_exchange_n(&model->refs, &r, r + 1, true, __ATOMIC_ACQUIRE,
		                                __ATOMIC_RELAXED))
			return true;
	return false;
}

int mfs_store_retired_hold(struct mfs_mount *m, struct mfs_model ***out, size_t *n)
{
	int ret = 0;

	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&m->node_lock);
	if (m->n_retired) {
		*out = malloc(m->n_retired * sizeof(**out));
		if (!*out) {
			ret = -ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < m->n_retired; i++)
			if (ref_if_alive(m->retired[i]))
				(*out)[(*n)++] = m->retired[i];
	}
out:
	pthread_mutex_unlock(&m->node_lock);
	return ret;
}

void mfs_store_retired_release(struct mfs_mount *m, struct mfs_model **models, size_t n)
{
	for (size_t i = 0; i < n; i++)
		mfs_model_unref(m, models[i], 1);
	free(models);
}

size_t mfs_store_n_retired(struct mfs_mount *m)
{
	size_t n;

	pthread_mutex_lock(&m->node_lock);
	n = m->n_retired;
	pthread_mutex_unlock(&m->node_lock);
	return n;
}

/* ---- unmount ---- */

void mfs_store_free(struct mfs_mount *m)
{
	for (size_t i = 0; i < m->n_nodes; i++)
		if (m->nodes[i])
			node_free(m->nodes[i]);
	free(m->nodes);
	m->nodes = NULL;
	m->n_nodes = 0;
	for (size_t i = 0; i < m->n_old_tables; i++)
		free(m->old_tables[i]);
	free(m->old_tables);
	m->old_tables = NULL;
	m->n_old_tables = 0;
	free(m->free_slots);
	m->free_slots = NULL;
	m->n_free = 0;
	for (size_t i = 0; i < m->n_models; i++)
		model_free(m->models[i]);
	free(m->models);
	m->models = NULL;
	m->n_models = 0;
	for (size_t i = 0; i < m->n_retired; i++)
		model_free(m->retired[i]);
	free(m->retired);
	m->retired = NULL;
	m->n_retired = 0;
	for (size_t i = 0; i < m->n_retiring; i++)
		model_free(m->retiring[i]);
	free(m->retiring);
	m->retiring = NULL;
	m->n_retiring = 0;
}

int mfs_openat_nofollow(int dirfd, const char *relpath, int flags)
{
	char comp[NAME_MAX + 1];
	const char *p = relpath;
	int cur = dirfd, fd;

	for (;;) {
		size_t l = strcspn(p, "/");

		if (l == 0 || l > NAME_MAX) {
			fd = -1;
			errno = EINVAL;
			break;
		}
		memcpy(comp, p, l);
		comp[l] = '\0';
		p += l;
		if (*p != '/') {
			/* O_NONBLOCK: a FIFO swapped in must not hang the worker. */
			fd = openat(cur, comp, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
			break;
		}
		p++;
		fd = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (cur != dirfd)
			close(cur);
		if (fd < 0)
			return -errno;
		cur = fd;
	}
	if (fd < 0)
		fd = -errno;
	if (cur != dirfd)
		close(cur);
	return fd;
}

int mfs_openat_bounded(struct mfs_mount *m, int dirfd, const char *relpath, int flags,
                       const char *what)
{
	int fd = mfs_openat_nofollow(dirfd, relpath, flags);

	if (!mfs_fd_errno(fd))
		return fd;
	/* Cached tree fds only save reopens: an open that serves a reader comes first. */
	mfs_fdcache_shed(m);
	fd = mfs_openat_nofollow(dirfd, relpath, flags);
	if (mfs_fd_errno(fd))
		mfs_fd_exhausted(m, what, fd);
	return fd;
}

/* Counts and logs a failed open of @n's backing file. Return: -EIO. */
static int open_failed(struct mfs_mount *m, struct mfs_node *n, const char *why)
{
	char q[LQ_PATH], f[LQ_PATH];

	mfs_count(&m->ctr.open_failures, 1);
	mfs_log(LOG_ERR, "open-failure model=%s file=%s reason=\"%s\"",
	        mfs_log_value(n->model->path, q, sizeof(q)),
	        mfs_log_value(n->res->name, f, sizeof(f)), why);
	return -EIO;
}

/* Is @f a regular file? Fills @st. */
static bool regular_file(int f, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	return fstat(f, st) == 0 && S_ISREG(st->st_mode);
}

/*
 * Opens MODEL/.modelfs/packed/<digest>.zst of @n and attaches it to the
 * node (first time only). @plain_err: why the plain file could not be used.
 */
static int open_packed(struct mfs_mount *m, struct mfs_node *n, int plain_err, int *fd)
{
	char name[MV_ZPACK_NAME_MAX], rel[sizeof(MV_PACKED_DIR) + MV_ZPACK_NAME_MAX + 1];
	struct stat st;
	int f, ret;

	if (!n->res->has_merkle || mfs_file_empty(n))
		return open_failed(m, n, strerror(-plain_err));
	mv_zpack_file_name(&n->res->merkle, name);
	snprintf(rel, sizeof(rel), "%s/%s", MV_PACKED_DIR, name);
	f = mfs_openat_bounded(m, n->model->dirfd, rel, O_RDONLY, "backing");
	if (mfs_fd_errno(f))
		return -EIO; /* counted as fd_exhausted, not as a fault of the store */
	if (f == -ENOENT)
		return open_failed(m, n, "missing (no plain file and no packed copy)");
	if (f < 0)
		return open_failed(m, n, f == -ELOOP ? "packed copy: symlink" : strerror(-f));
	if (!regular_file(f, &st)) {
		close(f);
		return open_failed(m, n, "packed copy: not a regular file");
	}
	ret = mfs_zfile_open(m, n, f);
	if (ret) {
		close(f);
		/* Out of fds: counted as fd_exhausted; else logged with the table's problem. */
		if (!mfs_fd_errno(ret))
			mfs_count(&m->ctr.open_failures, 1);
		return -EIO;
	}
	*fd = f;
	return 0;
}

int mfs_open_backing(struct mfs_mount *m, struct mfs_node *n, int *fd)
{
	uint64_t want = n->res->merkle.params.data_size;
	char q[LQ_PATH], fq[LQ_PATH];
	struct stat st;
	int f;

	*fd = -1;
	/*
	 * Once a node is served packed it stays so: a model's files do not change
	 * under a version (a re-seal is a new version with new nodes).
	 */
	if (__atomic_load_n(&n->stored, __ATOMIC_ACQUIRE) == MFS_STORED_PACKED)
		return open_packed(m, n, -ENOENT, fd);
	f = mfs_openat_bounded(m, n->model->dirfd, n->res->name, O_RDONLY, "backing");
	if (mfs_fd_errno(f))
		return -EIO; /* counted as fd_exhausted, not as a fault of the store */
	if (f == -ENOENT && want)
		return open_packed(m, n, f, fd);
	if (f < 0)
		return open_failed(m, n, f == -ELOOP ? "symlink" : strerror(-f));
	if (!regular_file(f, &st) || (uint64_t)st.st_size != want) {
		mfs_count(&m->ctr.open_failures, 1);
		mfs_log(LOG_ERR,
		        "open-failure model=%s file=%s reason=\"not a regular file of the signed "
		        "size\" size=%lld signed_size=%llu",
		        mfs_log_value(n->model->path, q, sizeof(q)),
		        mfs_log_value(n->res->name, fq, sizeof(fq)), (long long)st.st_size,
		        (unsigned long long)want);
		close(f);
		return -EIO;
	}
	/* Only a first decision: a concurrent open may have found the copy packed. */
	__atomic_compare_exchange_n(&n->stored, &(int){MFS_STORED_UNKNOWN}, MFS_STORED_PLAIN, false,
	                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
	*fd = f;
	return 0;
}

/*
 * The --pickle=deny verdict of a model: every file's format is detected
 * (a small verified read each) on first access, then cached. A detection
 * that fails (a damaged file) decides nothing and is retried next time.
 */
static int model_deny_check(struct mfs_mount *m, struct mfs_model *model)
{
	int state = __atomic_load_n(&model->deny_state, __ATOMIC_ACQUIRE), ret = 0;
	char *why = NULL, q[LQ_PATH], w[LQ_WHY];
	enum mfs_format f;

	if (state == MFS_DENY_OK)
		return 0;
	if (state == MFS_DENY_REFUSED)
		return -ENOENT;
	pthread_mutex_lock(&model->lock);
	state = __atomic_load_n(&model->deny_state, __ATOMIC_ACQUIRE);
	if (state != MFS_DENY_UNCHECKED) {
		ret = state == MFS_DENY_OK ? 0 : -ENOENT;
		goto out;
	}
	for (size_t i = 0; i < model->n_files; i++) {
		ret = mfs_file_format(m, model->files[i], &f);
		if (ret) {
			ret = -EIO;
			goto out;
		}
		if (f != MFS_FMT_PICKLE)
			continue;
		if (asprintf(&why, "contains pickle file %s", model->files[i]->res->name) < 0) {
			ret = -ENOMEM;
			goto out;
		}
		model->refused = why;
		mfs_log(LOG_WARNING, "model-refused model=%s reason=%s",
		        mfs_log_value(model->path, q, sizeof(q)), mfs_log_value(why, w, sizeof(w)));
		__atomic_store_n(&model->deny_state, MFS_DENY_REFUSED, __ATOMIC_RELEASE);
		ret = -ENOENT;
		goto out;
	}
	__atomic_store_n(&model->deny_state, MFS_DENY_OK, __ATOMIC_RELEASE);
out:
	pthread_mutex_unlock(&model->lock);
	return ret;
}

int mfs_node_check(struct mfs_mount *m, struct mfs_node *n)
{
	enum mfs_format f;
	int ret;

	if (!n->model)
		return 0;
	if (n->model->pickle == MFS_PICKLE_DENY)
		return model_deny_check(m, n->model);
	if (n->kind == MFS_N_TX)
		return mfs_tx_decide(m, n);
	if (n->kind != MFS_N_FILE || n->model->pickle == MFS_PICKLE_SHOW)
		return 0;
	ret = mfs_file_format(m, n, &f);
	if (ret)
		return 0; /* shown; open and read re-check and fail with EIO */
	if (f == MFS_FMT_PICKLE)
		return -ENOENT;
	/* A checkpoint index is replaced by its rewritten view when that exists. */
	if (n->tx && mfs_tx_is_index(n->tx) && mfs_tx_decide(m, n->tx) == 0)
		return -ENOENT;
	return 0;
}
