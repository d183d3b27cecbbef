// SPDX-License-Identifier: Apache-2.0
/*
 * attr.c - who may see what: the owner, group and permission bits of every
 * node (docs/mount.md, "Owners and permissions").
 *
 * The store writer is an adversary for integrity, not for access: who owns
 * a store file and its mode are the operator's access-control intent. So
 * the mount shows them (without write, setuid, setgid or sticky bits) and
 * the kernel enforces them (default_permissions, daemon.c); otherwise
 * -o allow_other would hand a root-only file to every local user. They are
 * read without following links when a model is built and again at each
 * reload (chmod and chown in the store are not watched: SIGHUP picks them
 * up). -o uid=,gid=,umask= then change what is shown, as vfat and sshfs do.
 *
 * A node derived from another is never more visible than its source: a
 * transcoded view shows its source file's attributes, a BOM file the read
 * bits of its model folder. The control folder belongs to the mount's user
 * (0500, files 0400; 0555 and 0444 with --control-access=all).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mount_int.h"

#define SHOWN_BITS 0555 /* read and search/execute: the mount is read-only */
#define READ_BITS  0444

/* The attributes a node keeps for the store object @st. */
static struct mfs_attr attr_of(const struct stat *st)
{
	return (struct mfs_attr){
	    .uid = st->st_uid, .gid = st->st_gid, .mode = st->st_mode & SHOWN_BITS};
}

/* @n's stored attributes, as one consistent copy (a reload may be writing them). */
static struct mfs_attr attr_get(const struct mfs_node *n)
{
	/* The lock is the node's own, not part of what "const" promises about it. */
	pthread_mutex_t *lock = (pthread_mutex_t *)&n->lock;
	struct mfs_attr a;

	pthread_mutex_lock(lock);
	a = n->attr;
	pthread_mutex_unlock(lock);
	return a;
}

/*
 * Stores @a as @n's attributes. When they changed and @inv is given (a
 * reload), the kernel's cached copies go: @n's, its view's and, for a model
 * folder, its BOM file's, which all show attributes derived from @n's.
 */
static void attr_update(struct mfs_node *n, struct mfs_attr a, struct mfs_inval *inv)
{
	bool changed;

	pthread_mutex_lock(&n->lock);
	changed = n->attr.uid != a.uid || n->attr.gid != a.gid || n->attr.mode != a.mode;
	n->attr = a;
	pthread_mutex_unlock(&n->lock);
	if (!changed || !inv)
		return;
	mfs_inval_ino(inv, n->ino);
	if (n->tx)
		mfs_inval_ino(inv, n->tx->ino);
	if (n->kind == MFS_N_MODEL && n->model->bom_node)
		mfs_inval_ino(inv, n->model->bom_node->ino);
}

/* The attributes of the control folder and what is in it. */
static struct mfs_attr ctl_attr(const struct mfs_mount *m, const struct mfs_node *n)
{
	bool dir = n->kind == MFS_N_CTL || n->kind == MFS_N_DIR;

	return (struct mfs_attr){
	    .uid = m->uid,
	    .gid = m->gid,
	    .mode = (dir ? 0555 : READ_BITS) & (m->control_all ? 0777 : 0700),
	};
}

void mfs_node_attr(struct mfs_mount *m, const struct mfs_node *n, struct mfs_attr *out)
{
	const struct mfs_node *src = n;
	mode_t keep = SHOWN_BITS;

	if (n->ctl) {
		*out = ctl_attr(m, n);
		out->mode &= ~m->umask;
		return;
	}
	if (n->kind == MFS_N_TX) {
		src = n->tx; /* a view's @tx is its source file */
	} else if (n->kind == MFS_N_BOM) {
		/* A BOM describes its model: readable by those who may read the folder. */
		src = n->model->node;
		keep = READ_BITS;
	}
	if (src) {
		*out = attr_get(src);
	} else {
		/* A BOM file of a model refused since: its model folder is gone. */
		*out = (struct mfs_attr){.uid = m->uid, .gid = m->gid, .mode = 0400};
	}
	out->mode &= keep & ~m->umask;
	if (m->map_uid)
		out->uid = m->shown_uid;
	if (m->map_gid)
		out->gid = m->shown_gid;
}

void mfs_attr_ctl(struct mfs_node *n)
{
	n->ctl = true;
}

/*
 * The attributes of file node @f whose folder in the store is @dirfd (-1:
 * that folder is missing), @dir those of the folder node: the plain file's,
 * else its packed copy's (what an open would serve), else, with neither,
 * its folder's owner and group with mode 0400 at most (it cannot be read
 * anyway, and must not become readable by more users if it appears).
 */
static struct mfs_attr file_attr(const struct mfs_node *f, int dirfd, struct mfs_attr dir)
{
	char name[MV_ZPACK_NAME_MAX], rel[sizeof(MV_PACKED_DIR) + MV_ZPACK_NAME_MAX + 1];
	struct mfs_attr a = {.uid = dir.uid, .gid = dir.gid, .mode = dir.mode & 0400};
	const struct mfs_bstore *bs = &f->model->m->bstore;
	struct stat st;
	int fd, e = -ENOENT;

	if (dirfd >= 0) {
		e = bs->ops->stat(bs, dirfd, f->name, &st);
		if (e == 0)
			return S_ISREG(st.st_mode) ? attr_of(&st) : a;
	}
	/* As mfs_open_backing(): the packed copy only when the plain file is absent. */
	if (e != -ENOENT || !f->res->has_merkle || mfs_file_empty(f))
		return a;
	mv_zpack_file_name(&f->res->merkle, name);
	snprintf(rel, sizeof(rel), "%s/%s", MV_PACKED_DIR, name);
	fd = bs->ops->open(bs, f->model->dirfd, rel, O_PATH);
	if (fd < 0)
		return a;
	if (bs->ops->stat(bs, fd, NULL, &st) == 0 && S_ISREG(st.st_mode))
		a = attr_of(&st);
	bs->ops->close(bs, fd);
	return a;
}

/*
 * Subfolder @name of store folder @fd, for fstat and as a base for *at()
 * calls only (O_PATH: needs no read permission), never through a link.
 * Return: the descriptor, or -1 (also when @fd is -1).
 */
static int open_sub(const struct mfs_mount *m, int fd, const char *name)
{
	int h;

	if (fd < 0)
		return -1;
	h = m->bstore.ops->open(&m->bstore, fd, name, O_PATH | O_DIRECTORY);
	return h < 0 ? -1 : h;
}

/* fstat() of store handle @h (-1: -EBADF), through the backing store. */
static int bs_fstat(const struct mfs_mount *m, int h, struct stat *st)
{
	return h < 0 ? -EBADF : m->bstore.ops->stat(&m->bstore, h, NULL, st);
}

/* Closes store handle @h (-1: nothing). */
static void bs_close(const struct mfs_mount *m, int h)
{
	if (h >= 0)
		m->bstore.ops->close(&m->bstore, h);
}

/*
 * Takes the attributes of the children of @dir, a folder inside a model,
 * from its store folder @fd (-1 if missing). Views follow their source.
 */
static void attr_kids(const struct mfs_mount *m, struct mfs_node *dir, int fd,
                      struct mfs_inval *inv)
{
	struct mfs_attr da = attr_get(dir);
	struct stat st;

	for (size_t i = 0; i < dir->n_kids; i++) {
		struct mfs_node *k = dir->kids[i];
		int sub;

		if (k->kind == MFS_N_FILE)
			attr_update(k, file_attr(k, fd, da), inv);
		if (k->kind != MFS_N_DIR)
			continue;
		/* A folder missing from the store (its files are packed): its parent's. */
		sub = open_sub(m, fd, k->name);
		attr_update(k, bs_fstat(m, sub, &st) == 0 ? attr_of(&st) : da, inv);
		attr_kids(m, k, sub, inv);
		bs_close(m, sub);
	}
}

void mfs_attr_model(struct mfs_mount *m, struct mfs_model *model, struct mfs_inval *inv)
{
	struct mfs_attr a = {.uid = 0, .gid = 0, .mode = 0};
	struct stat st;

	if (!model->node)
		return;
	if (bs_fstat(m, model->dirfd, &st) == 0)
		a = attr_of(&st);
	attr_update(model->node, a, inv);
	/* A model's folders never change once built: its children need no lock. */
	attr_kids(m, model->node, model->dirfd, inv);
}

void mfs_attr_ns_dir(struct mfs_mount *m, struct mfs_node *dir, const char *path, size_t len)
{
	struct mfs_attr a;
	struct stat st;
	char *rel;
	int fd = -1;

	if (dir->parent->ctl) {
		mfs_attr_ctl(dir); /* the BOM tree belongs to the control folder */
		return;
	}
	/* Unreadable (or just removed): its parent's, which let no one further in. */
	a = attr_get(dir->parent);
	rel = strndup(path, len);
	if (rel)
		fd = m->bstore.ops->open(&m->bstore, m->store_fd, rel, O_PATH | O_DIRECTORY);
	if (bs_fstat(m, fd, &st) == 0)
		a = attr_of(&st);
	bs_close(m, fd);
	free(rel);
	attr_update(dir, a, NULL);
}

void mfs_attr_root(struct mfs_mount *m, struct mfs_node *root)
{
	struct stat st;

	if (bs_fstat(m, m->store_fd, &st) == 0)
		attr_update(root, attr_of(&st), NULL);
}

/* Refreshes the folders outside models below @dir, whose store folder is @fd. */
static void ns_kids(struct mfs_mount *m, struct mfs_node *dir, int fd, struct mfs_inval *inv)
{
	struct stat st;

	for (size_t i = 0; i < dir->n_kids; i++) {
		struct mfs_node *k = dir->kids[i];
		int sub;

		if (k->kind == MFS_N_MODEL) {
			/* The served version's own folder, even if its path changed meanwhile. */
			mfs_attr_model(m, k->model, inv);
			continue;
		}
		if (k->kind != MFS_N_DIR)
			continue;
		sub = open_sub(m, fd, k->name);
		/* A folder that cannot be opened any more keeps what it showed. */
		if (bs_fstat(m, sub, &st) == 0)
			attr_update(k, attr_of(&st), inv);
		ns_kids(m, k, sub, inv);
		bs_close(m, sub);
	}
}

void mfs_attr_refresh(struct mfs_mount *m, struct mfs_inval *inv)
{
	struct mfs_node *root = mfs_node_get(m, MFS_ROOT_INO);
	struct stat st;

	if (bs_fstat(m, m->store_fd, &st) == 0)
		attr_update(root, attr_of(&st), inv);
	/* The reload thread is the only writer of folders' children: no lock needed. */
	ns_kids(m, root, m->store_fd, inv);
}
