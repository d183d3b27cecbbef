// SPDX-License-Identifier: Apache-2.0
/*
 * store.c - model versions: the store walk, building, publishing, lifetime.
 *
 * At mount the store is walked without following symlinks, every folder
 * holding a model.sig becomes a model, and its signature is checked (no data
 * is hashed). Exposed models contribute their signed files and the folders
 * synthesized from the files' paths; nothing else in the store is visible.
 * A live reload walks the store again with the same code (rescan.c).
 *
 * A replaced or removed version is freed, nodes and all, when its last
 * reference goes (mount_int.h, Lifetime); its inode numbers (node table
 * indexes + 1) are then reused (node.c). Backing files are opened by
 * backing.c. The files of the store share store_int.h.
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
#include "store_int.h"

#define MAX_SCAN_DEPTH 64

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

/* Reads model.sig of model folder @dirfd through the backing store. */
int mfs_sig_read(struct mfs_mount *m, int dirfd, char **buf, size_t *len, char *why, size_t why_len)
{
	return m->bstore.ops->read_sig(&m->bstore, dirfd, buf, len, why, why_len);
}

/*
 * plain_params() - tree parameters for file @r of a plain OMS signature
 * A store that allows it (whole_file_ok: a registry, whose layer digest is
 * the file's SHA-256) serves files signed by SHA-256 alone: the tree is
 * derived from the data at first open, with fs-verity's default parameters
 * (SHA-256, 4 KiB blocks, no salt), and trusted only once the data hashed
 * to the signed SHA-256 (treebuild.c). The size is the store's (unsigned
 * until then: data of another size cannot hash to the signed digest). An
 * empty file must be signed as empty: it is never read.
 * Return: 0 or -EINVAL with @why.
 */
static int plain_params(struct mfs_mount *m, struct mfs_model *model, struct mv_resource *r,
                        char *why, size_t why_len)
{
	static const uint8_t empty[32] = {0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14,
	                                  0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
	                                  0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c,
	                                  0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55};
	const struct mfs_bstore *bs = &m->bstore;
	struct stat st;
	int h, ret;

	h = bs->ops->open(bs, model->dirfd, r->name, O_RDONLY);
	ret = h < 0 ? h : bs->ops->stat(bs, h, NULL, &st);
	if (h >= 0)
		bs->ops->close(bs, h);
	if (!ret && !S_ISREG(st.st_mode))
		ret = -EINVAL;
	if (ret) {
		snprintf(why, why_len, "%.200s: signed by SHA-256 only, and not in the store: %s",
		         r->name, strerror(-ret));
		return -EINVAL;
	}
	memset(&r->merkle, 0, sizeof(r->merkle));
	r->merkle.params.alg = MV_HASH_SHA256;
	r->merkle.params.block_size = 4096;
	r->merkle.params.data_size = (uint64_t)st.st_size;
	if (!st.st_size && memcmp(r->sha256, empty, sizeof(empty)) != 0) {
		snprintf(why, why_len, "%.200s: empty in the store, not signed as empty", r->name);
		return -EINVAL;
	}
	return 0;
}

/*
 * Checks what the mount needs from each signed file. Trees themselves are
 * made at a file's first use (mfs_file_tree()): a signature of many files
 * costs no tree for the files never read.
 */
static int check_resources(struct mfs_mount *m, struct mfs_model *model, char *why, size_t why_len)
{
	struct mv_manifest *man = model->man;

	for (size_t i = 0; i < man->n_res; i++) {
		struct mv_resource *r = &man->res[i];
		uint8_t d[MV_MAX_DIGEST_SIZE];
		struct mv_tree t;
		size_t ds;
		int ret;

		if (!mv_resource_name_valid(r->name, false) || !components_fit(r->name)) {
			snprintf(why, why_len, "invalid file name in signature: %.200s", r->name);
			return -EINVAL;
		}
		if (!r->has_merkle && !m->bstore.whole_file_ok) {
			snprintf(why, why_len,
			         "no Merkle roots (plain OMS signature); seal with modelfs");
			return -EINVAL;
		}
		if (!r->has_merkle) {
			ret = plain_params(m, model, r, why, why_len);
			if (ret)
				return ret;
			continue;
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
			ret = mfs_dir_get(m, dir, comp, model, &dir);
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
		mfs_node_slot_give(model->m, model->all_nodes[i]);
		mfs_node_free(model->all_nodes[i]);
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
	ret = check_resources(m, model, why, sizeof(why));
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
	if (!ret && mfs_sort_kids(model->node, &dup)) {
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
		model->m->bstore.ops->close(&model->m->bstore, model->dirfd);
	mfs_prov_free(model);
	mv_manifest_free(model->man);
	pthread_mutex_destroy(&model->lock);
	pthread_mutex_destroy(&model->prov_lock);
	free(model->all_nodes);
	mfs_slab_free(model);
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
int mfs_model_build(struct mfs_mount *m, int dirfd, const char *rel, const struct stat *sig_st,
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
	model->dirfd = m->bstore.ops->open(&m->bstore, dirfd, ".", O_RDONLY | O_DIRECTORY);
	if (model->dirfd < 0) {
		ret = model->dirfd;
		if (mfs_fd_errno(ret))
			mfs_fd_exhausted(m, "model-folder", ret);
		return ret;
	}
	if (!model->path)
		return -ENOMEM;
	if (m->bstore.ops->stat(&m->bstore, model->dirfd, NULL, &dst) == 0) {
		model->dir_dev = dst.st_dev;
		model->dir_ino = dst.st_ino;
	}
	ret = mfs_sig_read(m, model->dirfd, &buf, &len, why, sizeof(why));
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
	ret = mfs_ns_link(m, bom_dir(m), model->path, model->bom_node, inv);
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
int mfs_model_link(struct mfs_mount *m, struct mfs_model *model, struct mfs_inval *inv)
{
	int ret;

	if (!model->node)
		return 0;
	ret = mfs_ns_link(m, mfs_node_get(m, MFS_ROOT_INO), model->path, model->node, inv);
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
void mfs_model_unlink(struct mfs_mount *m, struct mfs_model *model, struct mfs_inval *inv)
{
	struct mfs_node *up;

	if (model->node && model->node->parent) {
		up = model->node->parent;
		mfs_kid_remove(model->node, inv);
		mfs_prune_empty(up, mfs_node_get(m, MFS_ROOT_INO), inv);
		mfs_inval_subtree(inv, model->node);
		add_total(m, model, false);
	}
	if (model->bom_node && model->bom_node->parent) {
		up = model->bom_node->parent;
		mfs_kid_remove(model->bom_node, inv);
		mfs_prune_empty(up, bom_dir(m), inv);
		mfs_inval_ino(inv, model->bom_node->ino);
	}
}

/* Puts exposed @new where exposed @old was: one swap per folder, nothing in between. */
int mfs_model_swap(struct mfs_mount *m, struct mfs_model *old, struct mfs_model *new,
                   struct mfs_inval *inv)
{
	mfs_ns_swap(old->node, new->node, inv);
	mfs_inval_subtree(inv, old->node);
	add_total(m, old, false);
	add_total(m, new, true);
	if (old->bom_node && new->bom_node && old->bom_node->parent) {
		mfs_ns_swap(old->bom_node, new->bom_node, inv);
		mfs_inval_ino(inv, old->bom_node->ino);
		return 0;
	}
	if (old->bom_node && old->bom_node->parent) {
		struct mfs_node *up = old->bom_node->parent;

		mfs_kid_remove(old->bom_node, inv);
		mfs_prune_empty(up, bom_dir(m), inv);
	}
	return bom_link(m, new, inv);
}

/* ---- walking the store ---- */

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
	const struct mfs_bstore *bs = &c->m->bstore;
	char *sub_rel = NULL;
	int fd, ret;

	if (asprintf(&sub_rel, "%s%s%s", rel, rel[0] ? "/" : "", name) < 0)
		return -ENOMEM;
	fd = bs->ops->open(bs, dirfd, name, O_RDONLY | O_DIRECTORY);
	if (fd < 0) {
		ret = scan_open_failed(c, sub_rel, -fd);
		free(sub_rel);
		return ret;
	}
	ret = mfs_store_scan_dir(c, fd, sub_rel, depth + 1);
	free(sub_rel);
	bs->ops->close(bs, fd);
	return ret;
}

/* One folder's walk: what mfs_bstore_ops.list calls back with. */
struct scan_dir {
	struct scan_ctx *c;
	int dirfd;
	const char *rel;
	unsigned depth;
	bool stopped; /* a subfolder's walk failed (already counted and logged) */
};

/* mfs_bstore_entry_fn: scans entry @name of a store folder if it is a folder. */
static int scan_entry(void *ctx, const char *name, unsigned char d_type)
{
	struct scan_dir *d = ctx;
	int ret;

	/* The control folder owns this name at the root. */
	if (d->depth == 0 && !strcmp(name, MFS_CTL_NAME))
		return 0;
	if (d_type != DT_DIR && d_type != DT_UNKNOWN)
		return 0;
	ret = scan_sub(d->c, d->dirfd, d->rel, name, d->depth);
	d->stopped = ret != 0;
	return ret;
}

/*
 * Scans one store folder: a model if it holds model.sig (its insides are
 * then the model's business), else its subfolders are scanned. The folder
 * is reported to dir_fn first, so that a watch is in place before its
 * contents are read (nothing created after the read goes unnoticed).
 */
int mfs_store_scan_dir(struct scan_ctx *c, int dirfd, const char *rel, unsigned depth)
{
	const struct mfs_bstore *bs = &c->m->bstore;
	struct scan_dir d = {.c = c, .dirfd = dirfd, .rel = rel, .depth = depth};
	struct stat st;
	char q[LQ_PATH];
	int ret;

	if (c->dir_fn)
		c->dir_fn(c->dir_arg, dirfd, rel);
	if (bs->ops->stat(bs, dirfd, MV_SIG_NAME, &st) == 0)
		return c->found(c, dirfd, rel, &st);
	if (depth >= MAX_SCAN_DEPTH) {
		mfs_log(LOG_WARNING, "scan-skip path=%s reason=\"deeper than %d folders\"",
		        mfs_log_value(rel, q, sizeof(q)), MAX_SCAN_DEPTH);
		return 0;
	}
	ret = bs->ops->list(bs, dirfd, scan_entry, &d);
	if (!d.stopped && mfs_fd_errno(ret))
		mfs_fd_exhausted(c->m, "store-scan", ret);
	return ret;
}

int mfs_model_cmp(const void *a, const void *b)
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
	ret = mfs_model_build(m, dirfd, rel, sig_st, true, &model);
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

	return mfs_store_scan_dir(&c, m->store_fd, "", 0);
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
	ret = mfs_kid_insert(ctl, status);
	if (!ret)
		ret = mfs_kid_insert(ctl, metrics);
	if (!ret)
		ret = mfs_kid_insert(ctl, bom);
	if (ret)
		return mv_err_set(err, ret, "%s: out of memory", m->store);

	ret = mfs_store_scan_dir(&c, m->store_fd, "", 0);
	if (ret)
		return mv_err_set(err, ret, "%s: cannot scan the store: %s", m->store,
		                  strerror(-ret));
	if (m->n_models > 1)
		qsort(m->models, m->n_models, sizeof(*m->models), mfs_model_cmp);
	/* Linked in path order: which of two colliding paths wins does not depend on readdir. */
	for (size_t i = 0; i < m->n_models; i++) {
		struct mfs_model *model = m->models[i];

		ret = mfs_model_link(m, model, NULL);
		if (ret)
			return mv_err_set(err, ret, "%s: out of memory", m->store);
		if (model->node)
			mfs_log(LOG_INFO, "model-exposed model=%s files=%zu",
			        mfs_log_value(model->path, q, sizeof(q)), model->n_files);
	}
	return 0;
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
		mfs_node_slot_give(m, n);
		mfs_node_free(n);
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
			mfs_node_free(m->nodes[i]);
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
