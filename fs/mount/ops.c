// SPDX-License-Identifier: Apache-2.0
/*
 * ops.c - the FUSE low-level operations of the mount.
 *
 * What a node is never changes (store.c), so the kernel may cache
 * attributes and pages for a long time, and names inside a model too. Names
 * in folders outside models change at a live reload (reload.c): those
 * folders are read under the namespace lock (for reading, briefly: checks
 * that may read files run after it is dropped), their names get a short
 * entry timeout and their listings are not cached. Every mutating operation
 * answers EROFS. Reads go through vread.c and answer EIO rather than ever
 * returning an unverified byte. Owners and modes are the store's (attr.c);
 * the kernel enforces them (default_permissions), and the daemon checks
 * read permission itself before answering with extended attributes.
 */
#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

#include "mount_int.h"

/* What fi->fh points to. Kept on a list so unmount can free what is open. */
struct mfs_fh {
	struct mfs_fh *prev, *next;
	struct mfs_model *model; /* the version it keeps alive (mfs_model_ref), or NULL */
	bool is_status;
	int fd;                  /* backing file (files) */
	struct mfs_pf_stream pf; /* its sequential run, for verified read-ahead */
	char *status;            /* snapshot (status file) */
	size_t status_len;
};

static struct mfs_mount *mount_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void fh_track(struct mfs_mount *m, struct mfs_fh *fh)
{
	pthread_mutex_lock(&m->fh_lock);
	fh->prev = NULL;
	fh->next = m->open_fhs;
	if (fh->next)
		fh->next->prev = fh;
	m->open_fhs = fh;
	pthread_mutex_unlock(&m->fh_lock);
}

/*
 * Unlinks and frees a handle, closing its backing file. @unref: drop its
 * version reference (not at unmount, where everything is freed at once).
 */
static void fh_free(struct mfs_mount *m, struct mfs_fh *fh, bool unref)
{
	pthread_mutex_lock(&m->fh_lock);
	if (fh->prev)
		fh->prev->next = fh->next;
	else
		m->open_fhs = fh->next;
	if (fh->next)
		fh->next->prev = fh->prev;
	pthread_mutex_unlock(&m->fh_lock);
	mfs_close_backing(m, fh->fd);
	free(fh->status);
	if (unref)
		mfs_model_unref(m, fh->model, 1);
	free(fh);
}

void mfs_ops_cleanup(struct mfs_mount *m)
{
	while (m->open_fhs)
		fh_free(m, m->open_fhs, false);
}

static bool is_dir(const struct mfs_node *n)
{
	return n->kind == MFS_N_DIR || n->kind == MFS_N_MODEL || n->kind == MFS_N_CTL;
}

/* A fresh snapshot of the status or metrics file @n, malloc'd; NULL on ENOMEM. */
static char *snapshot_of(struct mfs_mount *m, const struct mfs_node *n, size_t *len)
{
	if (n->kind == MFS_N_METRICS)
		return mfs_metrics_text(m, len);
	return mfs_status_json(m, len);
}

static bool is_snapshot(const struct mfs_node *n)
{
	return n->kind == MFS_N_STATUS || n->kind == MFS_N_METRICS;
}

/*
 * Fills @st for @n. Owner, group and mode are the store's, as mapped by
 * -o uid=,gid=,umask= (attr.c): the kernel enforces them (default_permissions).
 * A status or metrics file's size is that of a fresh snapshot.
 */
static void node_stat(struct mfs_mount *m, const struct mfs_node *n, struct stat *st)
{
	struct mfs_attr a;

	mfs_node_attr(m, n, &a);
	memset(st, 0, sizeof(*st));
	st->st_ino = n->ino;
	st->st_uid = a.uid;
	st->st_gid = a.gid;
	st->st_blksize = MFS_MAX_READ;
	st->st_mtim = st->st_ctim = st->st_atim = n->model ? n->model->mtime : m->started;
	if (is_dir(n)) {
		st->st_mode = S_IFDIR | a.mode;
		st->st_nlink = 2;
		return;
	}
	st->st_mode = S_IFREG | a.mode;
	st->st_nlink = 1;
	if (n->kind == MFS_N_FILE) {
		st->st_size = (off_t)n->res->merkle.params.data_size;
	} else if (n->kind == MFS_N_TX) {
		/* Decided at lookup, before any stat: the exact size of the output. */
		const struct mfs_txview *v = mfs_tx_view(n);

		if (v)
			st->st_size = (off_t)v->size;
	} else if (n->kind == MFS_N_BOM) {
		const char *bom;
		size_t len = 0;

		/* Built on the first stat, then cached: the size is exact. */
		if (mfs_prov_bom(n->model, &bom, &len) == 0)
			st->st_size = (off_t)len;
	} else {
		size_t len = 0;
		char *s = snapshot_of(m, n, &len);

		free(s);
		st->st_size = (off_t)len;
	}
	st->st_blocks = (st->st_size + 511) / 512;
}

static double node_timeout(const struct mfs_node *n)
{
	return is_snapshot(n) ? 0.0 : MFS_TIMEOUT;
}

/* How long the kernel may keep a name (or its absence) in @dir. */
static double name_timeout(const struct mfs_node *dir)
{
	return mfs_node_ns_dir(dir) ? MFS_NS_ENTRY_TIMEOUT : MFS_TIMEOUT;
}

/* The entry of @n, a child of @dir. */
static void entry_fill(struct mfs_mount *m, const struct mfs_node *dir, const struct mfs_node *n,
                       struct fuse_entry_param *e)
{
	double t = node_timeout(n);

	memset(e, 0, sizeof(*e));
	e->ino = n->ino;
	e->generation = n->gen;
	node_stat(m, n, &e->attr);
	e->attr_timeout = t;
	e->entry_timeout = t < name_timeout(dir) ? t : name_timeout(dir);
}

/*
 * The child @name of @dir, honouring the control folder at the root, with a
 * reference on its version (mfs_model_ref) that the caller hands to the
 * kernel with the entry or drops.
 */
static struct mfs_node *child_of(struct mfs_mount *m, struct mfs_node *dir, const char *name)
{
	struct mfs_node *n;

	if (dir->ino == MFS_ROOT_INO && strcmp(name, MFS_CTL_NAME) == 0)
		return mfs_node_get(m, MFS_CTL_INO);
	/*
	 * A model's own folders never change once published, and the kernel
	 * holds @dir, so its version is alive: no lock needed.
	 */
	if (!mfs_node_ns_dir(dir)) {
		n = mfs_node_child(dir, name);
		if (n)
			mfs_model_ref(n->model, 1);
		return n;
	}
	/* The reference taken under the lock keeps @n past a reload's unlink. */
	pthread_rwlock_rdlock(&m->ns_lock);
	n = mfs_node_child(dir, name);
	if (n)
		mfs_model_ref(n->model, 1);
	pthread_rwlock_unlock(&m->ns_lock);
	return n;
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct mfs_mount *m = userdata;

	/* Readahead is raised further through the bdi after mounting (session.c). */
	conn->max_readahead = 4u << 20;
	/* Must equal the max_read mount option (daemon.c): 1 MiB requests. */
	conn->max_read = MFS_MAX_READ;
	/* Replies come from user memory after hashing: nothing to splice. */
	conn->want &= ~(FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
	/* A node's attributes never change: never drop cached pages. */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	if (m->conn_opts)
		fuse_apply_conn_info_opts(m->conn_opts, conn);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct mfs_mount *m = mount_of(req);
	struct mfs_node *dir = mfs_node_get(m, parent), *n;
	struct fuse_entry_param e;
	int ret;

	if (!dir || !is_dir(dir)) {
		fuse_reply_err(req, dir ? ENOTDIR : ENOENT);
		return;
	}
	n = child_of(m, dir, name);
	ret = n ? mfs_node_check(m, n) : -ENOENT;
	if (ret == -ENOENT) {
		/* A negative entry; a reload that adds the name invalidates it. */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = name_timeout(dir);
		fuse_reply_entry(req, &e);
		goto drop;
	}
	if (ret) {
		fuse_reply_err(req, -ret);
		goto drop;
	}
	entry_fill(m, dir, n, &e);
	/* Delivered, the reference is the kernel's lookup count, until forget. */
	if (fuse_reply_entry(req, &e) == 0)
		return;
drop:
	if (n)
		mfs_model_unref(m, n->model, 1);
}

/* The kernel dropped @nlookup lookups of @ino: so many version references go. */
static void forget_one(struct mfs_mount *m, fuse_ino_t ino, uint64_t nlookup)
{
	struct mfs_node *n = mfs_node_get(m, ino);

	if (n)
		mfs_model_unref(m, n->model, nlookup);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	forget_one(mount_of(req), ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		forget_one(mount_of(req), forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mfs_mount *m = mount_of(req);
	struct mfs_node *n = mfs_node_get(m, ino);
	struct stat st;

	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	node_stat(m, n, &st);
	fuse_reply_attr(req, &st, node_timeout(n));
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	fuse_reply_err(req, EINVAL); /* there are no symlinks */
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mfs_node *n = mfs_node_get(mount_of(req), ino);

	if (!n || !is_dir(n)) {
		fuse_reply_err(req, n ? ENOTDIR : ENOENT);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	/* Listings of folders a reload may change are never cached. */
	fi->cache_readdir = !mfs_node_ns_dir(n);
	fi->keep_cache = !mfs_node_ns_dir(n);
	fi->fh = 0;
	fuse_reply_open(req, fi);
}

/*
 * Adds one entry to a readdir reply. Return: bytes used, or 0 when the
 * entry did not fit (the reply is then complete).
 */
static size_t add_entry(fuse_req_t req, struct mfs_mount *m, char *buf, size_t left,
                        const char *name, const struct mfs_node *dir, const struct mfs_node *n,
                        off_t next, bool plus)
{
	struct fuse_entry_param e;
	size_t need;

	entry_fill(m, dir, n, &e);
	if (plus)
		need = fuse_add_direntry_plus(req, buf, left, name, &e, next);
	else
		need = fuse_add_direntry(req, buf, left, name, &e.attr, next);
	return need > left ? 0 : need;
}

/*
 * A copy of @dir's children from position @from, taken under the namespace
 * lock: the checks below may read files and must not hold it. Each child's
 * version is referenced (kids_release() drops them), so a reload that
 * retires it meanwhile cannot free it. NULL and *@n = 0 when there are
 * none; -ENOMEM.
 */
static int kids_snapshot(struct mfs_mount *m, const struct mfs_node *dir, size_t from,
                         struct mfs_node ***out, size_t *n)
{
	int ret = 0;

	*out = NULL;
	*n = 0;
	pthread_rwlock_rdlock(&m->ns_lock);
	if (from < dir->n_kids) {
		*out = malloc((dir->n_kids - from) * sizeof(**out));
		if (*out) {
			*n = dir->n_kids - from;
			memcpy(*out, dir->kids + from, *n * sizeof(**out));
			for (size_t i = 0; i < *n; i++)
				mfs_model_ref((*out)[i]->model, 1);
		} else {
			ret = -ENOMEM;
		}
	}
	pthread_rwlock_unlock(&m->ns_lock);
	return ret;
}

/* Drops the references of a snapshot and frees it. */
static void kids_release(struct mfs_mount *m, struct mfs_node **kids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		mfs_model_unref(m, kids[i]->model, 1);
	free(kids);
}

/*
 * Offsets are positions in the full, sorted child list (0 ".", 1 "..",
 * 2 + i child i), so they stay valid whatever the pickle policy hides. A
 * reload between two calls may shift them: the listing is then that of a
 * folder that changed while being read, as on any file system. With @plus,
 * the kernel counts a lookup of every entry but "." and ".." that it
 * receives: each takes a version reference, given back if the reply fails.
 */
static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct mfs_mount *m = mount_of(req);
	struct mfs_node *dir = mfs_node_get(m, ino), **kids = NULL;
	struct mfs_node **given = NULL; /* entries in the reply (plus: one lookup each) */
	size_t pos = 0, used, n_kids = 0, n_given = 0, base;
	char *buf;

	if (!dir || !is_dir(dir)) {
		fuse_reply_err(req, dir ? ENOTDIR : ENOENT);
		return;
	}
	if (off < 0) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	base = off > 2 ? (size_t)off - 2 : 0;
	buf = malloc(size ? size : 1);
	if (!buf || kids_snapshot(m, dir, base, &kids, &n_kids) ||
	    !(given = malloc((n_kids ? n_kids : 1) * sizeof(*given)))) {
		kids_release(m, kids, n_kids);
		free(buf);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (uint64_t i = (uint64_t)off;; i++) {
		struct mfs_node *n;
		const char *name;

		if (i >= 2 && i - 2 - base >= n_kids)
			break;
		if (i < 2) {
			name = i == 0 ? "." : "..";
			n = i == 0 ? dir : (dir->parent ? dir->parent : dir);
		} else {
			n = kids[i - 2 - base]; /* kids[0] is child number base */
			name = n->name;
			if (mfs_node_check(m, n) != 0)
				continue;
		}
		used = add_entry(req, m, buf + pos, size - pos, name, dir, n, (off_t)(i + 1), plus);
		if (!used)
			break;
		pos += used;
		if (i >= 2)
			given[n_given++] = n;
	}
	for (size_t k = 0; plus && k < n_given; k++)
		mfs_model_ref(given[k]->model, 1);
	if (fuse_reply_buf(req, buf, pos) != 0 && plus)
		kids_release(m, given, n_given); /* not delivered: no lookups */
	else
		free(given);
	kids_release(m, kids, n_kids);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

/* Opens the status or metrics file: a snapshot taken now, served with direct I/O. */
static void open_status(fuse_req_t req, struct mfs_mount *m, const struct mfs_node *n,
                        struct fuse_file_info *fi)
{
	struct mfs_fh *fh = calloc(1, sizeof(*fh));

	if (fh)
		fh->status = snapshot_of(m, n, &fh->status_len);
	if (!fh || !fh->status) {
		free(fh);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fh->is_status = true;
	fh->fd = -1;
	fh_track(m, fh);
	fi->fh = (uintptr_t)fh;
	fi->direct_io = 1; /* each open is a new snapshot; never cache it */
	fuse_reply_open(req, fi);
}

/*
 * Opens a model's BOM file: a copy of the cached BOM, served like the status
 * snapshot. A BOM node's text never changes (a new model version has a
 * new BOM node), so pages may be cached.
 */
static int open_bom(struct mfs_mount *m, struct mfs_node *n, struct mfs_fh **out)
{
	struct mfs_fh *fh;
	const char *bom;
	size_t len;
	int ret;

	ret = mfs_node_check(m, n);
	if (ret)
		return ret;
	ret = mfs_prov_bom(n->model, &bom, &len);
	if (ret)
		return ret;
	fh = calloc(1, sizeof(*fh));
	if (fh)
		fh->status = malloc(len ? len : 1);
	if (!fh || !fh->status) {
		free(fh);
		return -ENOMEM;
	}
	memcpy(fh->status, bom, len);
	fh->status_len = len;
	fh->is_status = true;
	fh->fd = -1;
	*out = fh;
	return 0;
}

/*
 * Opens a signed file's backing file and loads its tree, so that reads fail
 * only on bad bytes. @fd is -1 for an empty file. 0 or -errno.
 */
static int open_signed(struct mfs_mount *m, struct mfs_node *n, int *fd)
{
	enum mfs_format f;
	int ret;

	*fd = -1;
	/* Hidden pickles must stay hidden even when format detection failed earlier. */
	if (n->model->pickle == MFS_PICKLE_HIDE || n->model->pickle == MFS_PICKLE_TRANSCODE) {
		ret = mfs_file_format(m, n, &f);
		if (ret)
			return -EIO;
		if (f == MFS_FMT_PICKLE)
			return -ENOENT;
	}
	if (!n->res->merkle.params.data_size)
		return 0;
	ret = mfs_open_backing(m, n, fd);
	if (ret)
		return ret;
	ret = mfs_file_prepare(m, n, *fd);
	if (ret) {
		mfs_close_backing(m, *fd);
		*fd = -1;
	}
	return ret;
}

/*
 * Opens a file node: policy check, then a signed file (open_signed) or a
 * transcoded view (its cached output checked or made, txcache.c).
 */
static int open_file(struct mfs_mount *m, struct mfs_node *n, struct mfs_fh **out)
{
	struct mfs_fh *fh;
	int fd = -1, ret;

	ret = mfs_node_check(m, n);
	if (ret)
		return ret;
	ret = n->kind == MFS_N_TX ? mfs_tx_open(m, n) : open_signed(m, n, &fd);
	if (ret)
		return ret;
	fh = calloc(1, sizeof(*fh));
	if (!fh) {
		mfs_close_backing(m, fd);
		return -ENOMEM;
	}
	fh->fd = fd;
	*out = fh;
	return 0;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mfs_mount *m = mount_of(req);
	struct mfs_node *n = mfs_node_get(m, ino);
	struct mfs_fh *fh = NULL;
	int ret;

	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (is_dir(n)) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & (O_TRUNC | O_APPEND | O_CREAT))) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (is_snapshot(n)) {
		open_status(req, m, n, fi);
		return;
	}
	ret = n->kind == MFS_N_BOM ? open_bom(m, n, &fh) : open_file(m, n, &fh);
	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	/* The handle keeps the version alive until release, whatever the kernel forgets. */
	fh->model = n->model;
	mfs_model_ref(fh->model, 1);
	fh_track(m, fh);
	fi->fh = (uintptr_t)fh;
	fi->keep_cache = 1; /* a node's bytes never change: cached pages stay valid */
	fi->noflush = 1;
	if (fuse_reply_open(req, fi) == -ENOENT)
		fh_free(m, fh, true); /* the opener was interrupted: release will never come */
}

/*
 * Serves the status snapshot from a copy: the reader may wake, close the file
 * and have RELEASE free the snapshot while fuse_reply_buf is still returning.
 */
static void read_status(fuse_req_t req, struct mfs_fh *fh, size_t size, off_t off)
{
	size_t len = 0;
	char *copy;

	if ((uint64_t)off < fh->status_len) {
		len = fh->status_len - (size_t)off;
		if (len > size)
			len = size;
	}
	copy = malloc(len ? len : 1);
	if (!copy) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (len)
		memcpy(copy, fh->status + off, len);
	fuse_reply_buf(req, copy, len);
	free(copy);
}

/* Serves a transcoded view from its checked cached output (txview.c). */
static void read_view(fuse_req_t req, struct mfs_mount *m, struct mfs_node *n, size_t size,
                      off_t off)
{
	char *buf;
	ssize_t got;

	if (size > MFS_MAX_READ)
		size = MFS_MAX_READ;
	buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	got = mfs_tx_read(m, n, buf, size, (uint64_t)off);
	if (got < 0) {
		fuse_reply_err(req, EIO);
	} else {
		mfs_count(&m->ctr.bytes_served, (uint64_t)got);
		fuse_reply_buf(req, buf, (size_t)got);
	}
	free(buf);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
	struct mfs_mount *m = mount_of(req);
	struct mfs_fh *fh = (struct mfs_fh *)(uintptr_t)fi->fh;
	struct mfs_node *n = mfs_node_get(m, ino);
	const uint8_t *p = NULL;
	uint64_t start;
	size_t len = 0;
	int ret;

	if (!fh || !n || off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (fh->is_status) {
		read_status(req, fh, size, off);
		return;
	}
	mfs_count(&m->ctr.reads, 1);
	start = now_ns();
	if (n->kind == MFS_N_TX) {
		read_view(req, m, n, size, off);
	} else {
		ret = mfs_file_read(m, n, fh->fd, (uint64_t)off, size, &p, &len);
		if (ret) {
			fuse_reply_err(req, ret == -ENOMEM ? ENOMEM : EIO);
		} else {
			mfs_count(&m->ctr.bytes_served, len);
			/* Before the reply: once it is sent, a RELEASE may free @fh. */
			mfs_prefetch_on_read(m, n, &fh->pf, (uint64_t)off, len);
			fuse_reply_buf(req, (const char *)p, len);
		}
	}
	mfs_metrics_observe_read(m, now_ns() - start);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct mfs_fh *fh = (struct mfs_fh *)(uintptr_t)fi->fh;

	if (fh)
		fh_free(mount_of(req), fh, true);
	fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct mfs_mount *m = mount_of(req);
	struct statvfs sv;

	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	sv.f_blocks = (__atomic_load_n(&m->total_bytes, __ATOMIC_RELAXED) + 4095) / 4096;
	sv.f_files = __atomic_load_n(&m->n_nodes, __ATOMIC_RELAXED);
	sv.f_namemax = NAME_MAX;
	fuse_reply_statfs(req, &sv);
}

/* Answers an xattr request: size 0 asks for the length, too small is ERANGE. */
static void reply_xattr(fuse_req_t req, int ret, char *val, size_t len, size_t size)
{
	if (ret)
		fuse_reply_err(req, -ret);
	else if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, val, len);
	free(val);
}

/*
 * Is the caller of @req in group @gid, through its supplementary groups?
 * libfuse reads them from /proc/PID/task/PID/status: a caller the daemon
 * cannot see there (another PID namespace) counts as not in the group.
 */
static bool in_groups(fuse_req_t req, gid_t gid)
{
	gid_t small[32], *list = small;
	int cap = 32, n = fuse_req_getgroups(req, cap, small);
	bool found = false;

	if (n > cap) {
		cap = n;
		list = malloc((size_t)cap * sizeof(*list));
		n = list ? fuse_req_getgroups(req, cap, list) : -ENOMEM;
	}
	/* The count is the total, even above @cap (the groups may have just grown). */
	if (n > cap)
		n = cap;
	for (int i = 0; i < n && !found; i++)
		found = list[i] == gid;
	if (list != small)
		free(list);
	return found;
}

/**
 * may_read() - may the caller of @req read @n, by the mode @n shows?
 * @req: in: the request, for the caller's uid, gid and groups
 * @m, @n: in: the mount and the node asked about
 * The kernel's default_permissions check covers open and getxattr, but not
 * listxattr; this is the daemon's own check for the attributes, so that
 * provenance never shows past file permissions. The owner class is used
 * when the uid matches, else the group class, else others, as the kernel
 * does; root may read everything.
 * Return: 0 or -EACCES.
 */
static int may_read(fuse_req_t req, struct mfs_mount *m, const struct mfs_node *n)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);
	struct mfs_attr a;
	mode_t bits;

	if (c->uid == 0)
		return 0;
	mfs_node_attr(m, n, &a);
	if (c->uid == a.uid)
		bits = a.mode >> 6;
	else if (c->gid == a.gid)
		bits = a.mode >> 3;
	/* Supplementary groups cost a /proc read: only when they could matter. */
	else if (((a.mode >> 3) & S_IROTH) != (a.mode & S_IROTH) && in_groups(req, a.gid))
		bits = a.mode >> 3;
	else
		bits = a.mode;
	return bits & S_IROTH ? 0 : -EACCES;
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct mfs_mount *m = mount_of(req);
	struct mfs_node *n = mfs_node_get(m, ino);
	char *val = NULL;
	size_t len = 0;
	int ret = n ? 0 : -ENOENT;

	/*
	 * Only user.* names have values. Others (security.selinux, ACLs) are
	 * absent for everyone: `ls -l` asks for them on files it cannot read
	 * and must get ENODATA, not an error it would print.
	 */
	if (!ret && strncmp(name, "user.", 5) == 0)
		ret = may_read(req, m, n);
	if (!ret)
		ret = mfs_xattr_get(m, n, name, &val, &len);
	reply_xattr(req, ret, val, len, size);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct mfs_mount *m = mount_of(req);
	struct mfs_node *n = mfs_node_get(m, ino);
	char *val = NULL;
	size_t len = 0;
	int ret = n ? may_read(req, m, n) : -ENOENT;

	if (!ret)
		ret = mfs_xattr_list(m, n, &val, &len);
	reply_xattr(req, ret, val, len, size);
}

static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	fuse_reply_err(req, (mask & W_OK) ? EROFS : 0);
}

/* ---- every mutating operation: read-only file system ---- */

static void ro_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void ro_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	fuse_reply_err(req, EROFS);
}

static void ro_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	fuse_reply_err(req, EROFS);
}

static void ro_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EROFS);
}

static void ro_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EROFS);
}

static void ro_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
	fuse_reply_err(req, EROFS);
}

static void ro_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	fuse_reply_err(req, EROFS);
}

static void ro_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void ro_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags)
{
	fuse_reply_err(req, EROFS);
}

static void ro_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	fuse_reply_err(req, EROFS);
}

static void ro_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void ro_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                         struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void ro_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
                               struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
                               struct fuse_file_info *fi_out, size_t len, int flags)
{
	fuse_reply_err(req, EROFS);
}

const struct fuse_lowlevel_ops mfs_ll_ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .readlink = op_readlink,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = op_releasedir,
    .open = op_open,
    .read = op_read,
    .release = op_release,
    .statfs = op_statfs,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .access = op_access,
    .setattr = ro_setattr,
    .mknod = ro_mknod,
    .mkdir = ro_mkdir,
    .unlink = ro_unlink,
    .rmdir = ro_unlink,
    .symlink = ro_symlink,
    .rename = ro_rename,
    .link = ro_link,
    .write = ro_write,
    .setxattr = ro_setxattr,
    .removexattr = ro_removexattr,
    .create = ro_create,
    .fallocate = ro_fallocate,
    .copy_file_range = ro_copy_file_range,
};
