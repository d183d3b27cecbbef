// SPDX-License-Identifier: Apache-2.0
/*
 * rescan.c - a live reload's rescan of the store, then its publication.
 *
 * The store is walked again with the mount's walk (store.c). A model whose
 * model.sig bytes (SHA-256) and folder are unchanged is kept as is; a new or
 * changed one is built into new nodes outside any lock; then the changes are
 * published under the namespace write lock, one whole model folder at a
 * time (link, unlink or swap), and each is reported as one event line. The
 * versions replaced are retired (mfs_store_retire()).
 */
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
		ret = mfs_sig_read(m, dirfd, &buf, &len, why, sizeof(why));
		if (ret == -ENOMEM)
			return ret;
		if (mfs_fd_errno(ret))
			mfs_fd_exhausted(m, "model.sig", ret);
		if (!ret) {
			read_ok = true;
			mv_sha256(buf, len, h);
			free(buf);
		}
		same_dir = m->bstore.ops->stat(&m->bstore, dirfd, NULL, &dst) == 0 &&
		           dst.st_dev == old->dir_dev && dst.st_ino == old->dir_ino;
		if (same_dir && same_sig(old->sig_read, old->sig_sha256, read_ok, h))
			return old->reload_error ? change_add(rs, CH_RESTORED, old, NULL) : 0;
		if (same_dir && old->reload_error &&
		    same_sig(old->failed_read, old->failed_sha256, read_ok, h))
			return 0; /* the version already refused: not retried, not logged again */
	}
	ret = mfs_model_build(m, dirfd, rel, sig_st, false, &new);
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
		qsort(arr, n, sizeof(*arr), mfs_model_cmp);
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
	case CH_REMOVE: mfs_model_unlink(m, ch->old, inv); break;
	case CH_REPLACE:
		if (ch->old->node && ch->new->node)
			ret = mfs_model_swap(m, ch->old, ch->new, inv);
		else
			ret = mfs_model_link(m, ch->new, inv);
		break;
	case CH_ADD: ret = mfs_model_link(m, ch->new, inv); break;
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
	ret = mfs_store_scan_dir(&c, m->store_fd, "", 0);
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
