// SPDX-License-Identifier: Apache-2.0
/*
 * store.c - the store scan and the mount's immutable namespace.
 *
 * At mount the store is walked without following symlinks, every folder
 * holding a model.sig becomes a model, and its signature is checked (no data
 * is hashed). Exposed models contribute their signed files and the folders
 * synthesized from the files' paths; nothing else in the store is visible.
 * The resulting node array never changes while mounted: inode numbers are
 * array indexes + 1.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mount_int.h"

#define MAX_SCAN_DEPTH 64

/* Appends a new node; its inode number is its position + 1 (see mount_int.h). */
struct mfs_node *mfs_node_new(struct mfs_mount *m, enum mfs_node_kind kind, const char *name,
                              struct mfs_model *model)
{
	struct mfs_node *n;

	if (m->n_nodes == m->cap_nodes) {
		size_t cap = m->cap_nodes ? m->cap_nodes * 2 : 256;
		struct mfs_node **p = realloc(m->nodes, cap * sizeof(*p));

		if (!p)
			return NULL;
		m->nodes = p;
		m->cap_nodes = cap;
	}
	n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->name = strdup(name);
	if (!n->name) {
		free(n);
		return NULL;
	}
	n->kind = kind;
	n->model = model;
	pthread_mutex_init(&n->lock, NULL);
	pthread_mutex_init(&n->load_lock, NULL);
	m->nodes[m->n_nodes++] = n;
	n->ino = m->n_nodes;
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
 * Finds the child folder @name of @dir, or creates it. Searches from the
 * end: with sorted paths the folder being filled is the last one added.
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

struct mfs_node *mfs_node_get(struct mfs_mount *m, uint64_t ino)
{
	if (ino == 0 || ino > m->n_nodes)
		return NULL;
	return m->nodes[ino - 1];
}

struct mfs_node *mfs_node_child(struct mfs_node *dir, const char *name)
{
	size_t lo = 0, hi = dir->n_kids;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, dir->kids[mid]->name);

		if (c == 0)
			return dir->kids[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

const char *mfs_node_model_path(const struct mfs_node *n)
{
	return n->model ? n->model->path : "";
}

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

	mfs_log(LOG_WARNING, "model=%s warning=\"%s\"", model->path, line);
}

/* Reads model.sig relative to the model folder, refusing links and non-files. */
static int read_sig(struct mfs_model *model, char **buf, size_t *len, char *why, size_t why_len)
{
	struct stat st;
	size_t done = 0;
	int fd, ret = 0;

	*buf = NULL;
	fd = openat(model->dirfd, MV_SIG_NAME, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
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
			snprintf(why, why_len, "%s: short read", MV_SIG_NAME);
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

/* Checks what the mount needs from each signed file; fills model->trees. */
static int check_resources(struct mfs_model *model, char *why, size_t why_len)
{
	const struct mv_manifest *man = model->man;

	model->trees = calloc(man->n_res ? man->n_res : 1, sizeof(*model->trees));
	if (!model->trees) {
		snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < man->n_res; i++) {
		const struct mv_resource *r = &man->res[i];
		uint8_t d[MV_MAX_DIGEST_SIZE];
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
		if (mv_tree_init(&model->trees[i], &r->merkle.params, r->merkle.root)) {
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
		f->tree = r->merkle.params.data_size ? &model->trees[i] : NULL;
		ret = mfs_node_add_kid(dir, f);
		if (ret)
			return ret;
		model->files[model->n_files++] = f;
	}
	return 0;
}

/* Links a model folder node at its store path, creating parent folders. */
static int link_model(struct mfs_mount *m, struct mfs_model *model, char *why, size_t why_len)
{
	struct mfs_node *dir = m->nodes[MFS_ROOT_INO - 1];
	const char *p = model->path;
	char comp[NAME_MAX + 1];
	int ret;

	for (;;) {
		size_t l = strcspn(p, "/");

		if (l > NAME_MAX)
			return -ENAMETOOLONG;
		memcpy(comp, p, l);
		comp[l] = '\0';
		p += l;
		if (*p != '/')
			break;
		p++;
		ret = dir_get(m, dir, comp, NULL, &dir);
		if (ret == -EEXIST)
			snprintf(why, why_len, "path collides with another model");
		if (ret)
			return ret;
	}
	/* Kids are unsorted during the scan: search them all. */
	for (size_t i = 0; i < dir->n_kids; i++) {
		if (strcmp(dir->kids[i]->name, comp) == 0) {
			snprintf(why, why_len, "path collides with another model");
			return -EEXIST;
		}
	}
	return mfs_node_add_kid(dir, model->node);
}

/* Signature check and namespace of one model; refusals are not errors. */
static int model_load(struct mfs_mount *m, struct mfs_model *model)
{
	char why[1100] = "", *buf = NULL;
	const char *dup = NULL;
	struct mv_err err = {0};
	size_t len = 0;
	int ret;

	ret = read_sig(model, &buf, &len, why, sizeof(why));
	if (ret)
		goto refuse;
	ret = mv_sig_parse(buf, len, m->trust, warn_cb, model, &model->man, &err);
	if (ret) {
		snprintf(why, sizeof(why), "%s", err.msg[0] ? err.msg : strerror(-ret));
		goto refuse;
	}
	ret = check_resources(model, why, sizeof(why));
	if (ret)
		goto refuse;
	/* Attestations, then the policy: a refused model gets no nodes at all. */
	ret = mfs_prov_scan(m, model, why, sizeof(why));
	if (ret == -ENOMEM)
		return ret;
	if (ret)
		goto refuse;
	model->node = mfs_node_new(
	    m, MFS_N_MODEL, strrchr(model->path, '/') ? strrchr(model->path, '/') + 1 : model->path,
	    model);
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
	if (!ret)
		ret = link_model(m, model, why, sizeof(why));
	if (ret == -ENOMEM)
		return ret;
	if (ret)
		goto refuse;
	free(buf);
	for (size_t i = 0; i < model->n_files; i++)
		m->total_bytes += model->files[i]->res->merkle.params.data_size;
	mfs_log(LOG_INFO, "model=%s exposed files=%zu", model->path, model->n_files);
	return 0;
refuse:
	free(buf);
	/* Nodes already made stay unreachable in the array; they are freed at unmount. */
	model->node = NULL;
	model->refused = strdup(why[0] ? why : "refused");
	mfs_log(LOG_WARNING, "model=%s refused reason=\"%s\"", model->path, why);
	return model->refused ? 0 : -ENOMEM;
}

/* Records a folder holding model.sig as a model and loads it. */
static int model_add(struct mfs_mount *m, int dirfd, const char *rel, const struct stat *sig_st)
{
	struct mfs_model *model, **p;

	p = realloc(m->models, (m->n_models + 1) * sizeof(*p));
	if (!p)
		return -ENOMEM;
	m->models = p;
	model = calloc(1, sizeof(*model));
	if (!model)
		return -ENOMEM;
	m->models[m->n_models++] = model;
	pthread_mutex_init(&model->lock, NULL);
	pthread_mutex_init(&model->prov_lock, NULL);
	model->mtime = sig_st->st_mtim;
	model->path = strdup(rel[0] ? rel : ".");
	model->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
	if (!model->path || model->dirfd < 0)
		return model->dirfd < 0 ? -errno : -ENOMEM;
	if (!rel[0]) {
		model->refused = strdup("the store itself is a model; mount its parent folder");
		mfs_log(LOG_WARNING, "model=. refused reason=\"%s\"", model->refused);
		return model->refused ? 0 : -ENOMEM;
	}
	return model_load(m, model);
}

static int scan_dir(struct mfs_mount *m, int dirfd, const char *rel, unsigned depth);

/* Scans subfolder @name of @dirfd, never through a symlink. */
static int scan_sub(struct mfs_mount *m, int dirfd, const char *rel, const char *name,
                    unsigned depth)
{
	char *sub_rel = NULL;
	int fd, ret;

	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOTDIR && errno != ELOOP)
			mfs_log(LOG_WARNING, "scan-skip path=%s%s%s reason=\"%s\"", rel,
			        rel[0] ? "/" : "", name, strerror(errno));
		return 0;
	}
	if (asprintf(&sub_rel, "%s%s%s", rel, rel[0] ? "/" : "", name) < 0) {
		close(fd);
		return -ENOMEM;
	}
	ret = scan_dir(m, fd, sub_rel, depth + 1);
	free(sub_rel);
	close(fd);
	return ret;
}

/*
 * Scans one store folder: a model if it holds model.sig (its insides are
 * then the model's business), else its subfolders are scanned.
 */
static int scan_dir(struct mfs_mount *m, int dirfd, const char *rel, unsigned depth)
{
	struct dirent *de;
	struct stat st;
	DIR *d;
	int fd, ret = 0;

	if (fstatat(dirfd, MV_SIG_NAME, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return model_add(m, dirfd, rel, &st);
	if (depth >= MAX_SCAN_DEPTH) {
		mfs_log(LOG_WARNING, "scan-skip path=%s reason=\"deeper than %d folders\"", rel,
		        MAX_SCAN_DEPTH);
		return 0;
	}
	fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
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
		ret = scan_sub(m, dirfd, rel, de->d_name, depth);
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

/* Finds @name among @dir's (unsorted) children, or NULL. */
static struct mfs_node *kid_find(struct mfs_node *dir, const char *name)
{
	for (size_t i = 0; i < dir->n_kids; i++)
		if (strcmp(dir->kids[i]->name, name) == 0)
			return dir->kids[i];
	return NULL;
}

/*
 * Adds MOUNT/.modelfs/bom/<model path>.cdx.json for one exposed model. A
 * name that does not fit, or collides (model "x" and model "x.cdx.json/y"),
 * gets no file: logged, never a mount failure. 0 or -ENOMEM.
 */
static int bom_node_add(struct mfs_mount *m, struct mfs_node *dir, struct mfs_model *model)
{
	const char *p = model->path;
	char comp[NAME_MAX + 1];
	struct mfs_node *f;
	int ret;

	for (;;) {
		size_t l = strcspn(p, "/");

		if (l > NAME_MAX - (p[l] ? 0 : sizeof(MFS_BOM_EXT) - 1))
			goto skip;
		memcpy(comp, p, l);
		comp[l] = '\0';
		p += l;
		if (*p != '/')
			break;
		p++;
		ret = dir_get(m, dir, comp, NULL, &dir);
		if (ret == -EEXIST)
			goto skip;
		if (ret)
			return ret;
	}
	strcat(comp, MFS_BOM_EXT); /* fits: checked above */
	if (kid_find(dir, comp))
		goto skip;
	f = mfs_node_new(m, MFS_N_BOM, comp, model);
	if (!f)
		return -ENOMEM;
	return mfs_node_add_kid(dir, f);
skip:
	mfs_log(LOG_WARNING, "model=%s bom-file-skipped reason=\"name too long or taken\"",
	        model->path);
	return 0;
}

/* The control folder's bom/ tree: one file per exposed model. */
static int bom_nodes_add(struct mfs_mount *m, struct mfs_node *ctl)
{
	struct mfs_node *dir = mfs_node_new(m, MFS_N_DIR, MFS_BOM_DIR, NULL);
	int ret;

	if (!dir)
		return -ENOMEM;
	ret = mfs_node_add_kid(ctl, dir);
	for (size_t i = 0; !ret && i < m->n_models; i++)
		if (m->models[i]->node)
			ret = bom_node_add(m, dir, m->models[i]);
	return ret;
}

int mfs_store_scan(struct mfs_mount *m, struct mv_err *err)
{
	struct mfs_node *root, *ctl, *status, *metrics;
	const char *dup = NULL;
	int ret;

	root = mfs_node_new(m, MFS_N_DIR, "", NULL);
	ctl = mfs_node_new(m, MFS_N_CTL, MFS_CTL_NAME, NULL);
	status = mfs_node_new(m, MFS_N_STATUS, MFS_STATUS_NAME, NULL);
	metrics = mfs_node_new(m, MFS_N_METRICS, MFS_METRICS_NAME, NULL);
	if (!root || !ctl || !status || !metrics)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", m->store);
	/* The control folder is reached by name only (see docs/mount.md). */
	ctl->parent = root;
	ret = mfs_node_add_kid(ctl, status);
	if (!ret)
		ret = mfs_node_add_kid(ctl, metrics);
	if (ret)
		return mv_err_set(err, ret, "%s: out of memory", m->store);

	ret = scan_dir(m, m->store_fd, "", 0);
	if (ret)
		return mv_err_set(err, ret, "%s: cannot scan the store: %s", m->store,
		                  strerror(-ret));
	ret = sort_kids(root, &dup);
	if (ret)
		return mv_err_set(err, ret, "%s: duplicate name %s", m->store, dup);
	ret = bom_nodes_add(m, ctl);
	if (ret)
		return mv_err_set(err, ret, "%s: out of memory", m->store);
	ret = sort_kids(ctl, &dup);
	if (ret)
		return mv_err_set(err, ret, "%s: duplicate name %s", m->store, dup);
	if (m->n_models > 1)
		qsort(m->models, m->n_models, sizeof(*m->models), model_cmp);
	return 0;
}

void mfs_store_free(struct mfs_mount *m)
{
	for (size_t i = 0; i < m->n_nodes; i++) {
		struct mfs_node *n = m->nodes[i];

		if (n->txv)
			mfs_tx_free(n);
		pthread_mutex_destroy(&n->lock);
		pthread_mutex_destroy(&n->load_lock);
		free(n->kids);
		free(n->name);
		free(n);
	}
	free(m->nodes);
	m->nodes = NULL;
	m->n_nodes = 0;
	for (size_t i = 0; i < m->n_models; i++) {
		struct mfs_model *model = m->models[i];

		if (model->dirfd > 0)
			close(model->dirfd);
		mfs_prov_free(model);
		mv_manifest_free(model->man);
		pthread_mutex_destroy(&model->lock);
		free(model->trees);
		free(model->files);
		free(model->refused);
		free(model->path);
		free(model);
	}
	free(m->models);
	m->models = NULL;
	m->n_models = 0;
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

/* Counts and logs a failed open of @n's backing file. Return: -EIO. */
static int open_failed(struct mfs_mount *m, struct mfs_node *n, const char *why)
{
	mfs_count(&m->ctr.open_failures, 1);
	mfs_log(LOG_ERR, "open-failure model=%s file=%s reason=\"%s\"", n->model->path,
	        n->res->name, why);
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

	if (!n->res->has_merkle || !n->tree)
		return open_failed(m, n, strerror(-plain_err));
	mv_zpack_file_name(&n->res->merkle, name);
	snprintf(rel, sizeof(rel), "%s/%s", MV_PACKED_DIR, name);
	f = mfs_openat_nofollow(n->model->dirfd, rel, O_RDONLY);
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
		mfs_count(&m->ctr.open_failures, 1);
		return -EIO; /* logged with the seek table's problem */
	}
	*fd = f;
	return 0;
}

int mfs_open_backing(struct mfs_mount *m, struct mfs_node *n, int *fd)
{
	uint64_t want = n->res->merkle.params.data_size;
	struct stat st;
	int f;

	*fd = -1;
	/* Once a node is served packed it stays so: the store is immutable while mounted. */
	if (__atomic_load_n(&n->stored, __ATOMIC_ACQUIRE) == MFS_STORED_PACKED)
		return open_packed(m, n, -ENOENT, fd);
	f = mfs_openat_nofollow(n->model->dirfd, n->res->name, O_RDONLY);
	if (f == -ENOENT && want)
		return open_packed(m, n, f, fd);
	if (f < 0)
		return open_failed(m, n, f == -ELOOP ? "symlink" : strerror(-f));
	if (!regular_file(f, &st) || (uint64_t)st.st_size != want) {
		mfs_count(&m->ctr.open_failures, 1);
		mfs_log(LOG_ERR,
		        "open-failure model=%s file=%s reason=\"not a regular file of the signed "
		        "size\" size=%lld signed_size=%llu",
		        n->model->path, n->res->name, (long long)st.st_size,
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
	enum mfs_format f;
	char *why = NULL;

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
		mfs_log(LOG_WARNING, "model=%s refused reason=\"%s\"", model->path, why);
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
	if (n->tx && n->tx->txv->is_index && mfs_tx_decide(m, n->tx) == 0)
		return -ENOENT;
	return 0;
}
