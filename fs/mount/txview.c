// SPDX-License-Identifier: Apache-2.0
/*
 * txview.c - --pickle=transcode: safe torch checkpoints appear as the
 * safetensors files they transcode to (docs/mount.md, "Pickles"). This file
 * holds the view nodes, the decision to show one, and reads of a shown view;
 * the transcoded output in the cache and its MAC'd record are txcache.c's.
 *
 * At mount, every signed file whose safetensors name (mfs_tx_rename) is free
 * in its folder gets a view node (MFS_N_TX). Whether it shows is decided on
 * first lookup or listing, through the verified read path only: the source
 * must be a pickle (format detection), scan "safe" (mfs_scan) and plan
 * (mfs_tx_plan_new, which reads the zip directory and data.pkl, never the
 * tensor data). The plan gives the exact output size, so stat is right
 * before anything is written. An index (*.index.json) is rewritten in memory.
 *
 * A checkpoint view's reads come from its checked cached output, each block
 * verified against the in-memory Merkle tree computed when the output was
 * made or checked (txcache.c), so a cache file changed while mounted gives
 * EIO: a tampered entry is never served.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "txview_int.h"

#define TX_INDEX_MAX (64u << 20) /* a larger "index" is not one */

static bool ends_with(const char *s, const char *suffix)
{
	size_t l = strlen(s), sl = strlen(suffix);

	return l > sl && strcmp(s + l - sl, suffix) == 0;
}

/* A name in a folder of the model being built: a child, or a view wanted there. */
struct tx_name {
	const struct mfs_node *dir;
	const char *name;
	struct mfs_node *file; /* a view's source; NULL for an existing child */
};

/* By folder, then name; at equal names existing children first, then views by source. */
static int tx_name_cmp(const void *a, const void *b)
{
	const struct tx_name *x = a, *y = b;
	int c;

	if (x->dir != y->dir)
		return x->dir < y->dir ? -1 : 1;
	c = strcmp(x->name, y->name);
	if (c || x->file == y->file)
		return c;
	if (!x->file || !y->file)
		return x->file ? 1 : -1;
	return strcmp(x->file->name, y->file->name);
}

bool mfs_tx_is_index(const struct mfs_node *t)
{
	return ends_with(t->tx->name, ".index.json");
}

/*
 * Adds the view node @name of file @f under its folder (the name is free).
 * The node alone: it points back at @f through @tx, and gets its mfs_txview
 * only if it is decided shown (mfs_tx_decide()).
 */
static int tx_node_add(struct mfs_mount *m, struct mfs_model *model, struct mfs_node *f,
                       const char *name)
{
	struct mfs_node *t = mfs_node_new(m, MFS_N_TX, name, model);

	if (!t)
		return -ENOMEM;
	t->tx = f;
	t->tx_verdict = -1;
	f->tx = t;
	return mfs_node_add_kid(f->parent, t);
}

/*
 * The wanted views of the model's files, with every existing child, sorted
 * so that a view whose name a child (or an earlier view) already has is
 * skipped in one pass: O(n log n) for a model of n nodes. Names that a view
 * would not change, or that do not fit a directory entry, get no view.
 * Return: 0 or -ENOMEM; @out (malloc'd, names of views malloc'd) and @n set.
 */
static int tx_names(struct mfs_model *model, struct tx_name **out, size_t *n)
{
	struct tx_name *a = calloc(model->n_all + model->n_files + 1, sizeof(*a));
	size_t k = 0;

	*out = a;
	if (!a)
		return -ENOMEM;
	for (size_t i = 0; i < model->n_all; i++) {
		const struct mfs_node *c = model->all_nodes[i];

		if (c->parent && c->parent->model == model)
			a[k++] = (struct tx_name){.dir = c->parent, .name = c->name};
	}
	for (size_t i = 0; i < model->n_files; i++) {
		struct mfs_node *f = model->files[i];
		char *name = mfs_tx_rename(f->name);

		if (!name)
			goto nomem;
		if (strcmp(name, f->name) == 0 || strlen(name) > NAME_MAX) {
			free(name);
			continue; /* no view: a pickle here is simply hidden */
		}
		a[k++] = (struct tx_name){.dir = f->parent, .name = name, .file = f};
	}
	qsort(a, k, sizeof(*a), tx_name_cmp);
	*n = k;
	return 0;
nomem:
	for (size_t i = 0; i < k; i++)
		if (a[i].file)
			free((char *)a[i].name);
	free(a);
	*out = NULL;
	return -ENOMEM;
}

int mfs_tx_nodes_add(struct mfs_mount *m, struct mfs_model *model)
{
	struct tx_name *a;
	size_t n = 0;
	int ret = tx_names(model, &a, &n);

	for (size_t i = 0; !ret && i < n; i++) {
		bool taken = i > 0 && a[i - 1].dir == a[i].dir && !strcmp(a[i - 1].name, a[i].name);

		if (a[i].file && !taken)
			ret = tx_node_add(m, model, a[i].file, a[i].name);
	}
	for (size_t i = 0; i < n; i++)
		if (a[i].file)
			free((char *)a[i].name);
	free(a);
	return ret;
}

/*
 * Hides @t, keeping @reason (may be NULL: not transcodable) for the status
 * file: a string of its own only for the few views refused for a reason.
 * The state is published last, with release: lock-free readers that see
 * HIDDEN see the reason and the verdict.
 */
static void tx_hide(struct mfs_mount *m, struct mfs_node *t, const char *reason)
{
	if (reason) {
		t->tx_reason = strdup(reason);
		mfs_log(LOG_NOTICE, "transcode-refused model=%s file=%s reason=\"%s\"",
		        t->model->path, t->tx->res->name, reason);
	}
	__atomic_store_n(&t->tx_state, MFS_TX_HIDDEN, __ATOMIC_RELEASE);
}

/* Shows @t as @v, complete: the pointer, then the state, both with release. */
static void tx_show(struct mfs_node *t, struct mfs_txview *v)
{
	__atomic_store_n(&t->txv, v, __ATOMIC_RELEASE);
	__atomic_store_n(&t->tx_state, MFS_TX_SHOWN, __ATOMIC_RELEASE);
}

/* Frees a view that was not (or is no longer) published. */
static void tx_view_free(struct mfs_txview *v)
{
	if (!v)
		return;
	mfs_tx_plan_free(v->plan);
	mv_mem_tree_free(v->mt);
	if (v->fd >= 0)
		close(v->fd);
	free(v->text);
	free(v);
}

/* Opens the source with its tree loaded, for verified reads through @vc. */
int mfs_tx_src_open(struct mfs_mount *m, struct mfs_node *src, struct mfs_vctx *vc)
{
	int ret;

	vc->m = m;
	vc->n = src;
	vc->fd = -1;
	ret = mfs_open_backing(m, src, &vc->fd);
	if (ret)
		return ret;
	ret = mfs_file_prepare(m, src, vc->fd);
	if (ret) {
		mfs_close_backing(m, vc->fd);
		vc->fd = -1;
	}
	return ret;
}

/* Scans the source; hides @t unless the verdict is safe. 0, or -EIO/-ENOMEM. */
static int tx_scan(struct mfs_mount *m, struct mfs_node *t, struct mfs_vctx *vc)
{
	struct mfs_scan_report rep = {0};
	const struct mfs_scan_item *it;
	char why[512];
	int ret;

	ret = mfs_scan(mfs_vpread, vc, t->tx->res->merkle.params.data_size, &rep);
	if (ret)
		return ret == -ENOMEM ? ret : -EIO;
	it = &rep.items[0];
	t->tx_verdict = (int8_t)it->verdict;
	if (it->verdict != MFS_VERDICT_SAFE) {
		/* The first reason found anywhere (members carry the details). */
		const char *r = NULL;

		for (size_t i = 0; i < rep.nitems && !r; i++)
			r = rep.items[i].nreasons ? rep.items[i].reasons[0] : NULL;
		snprintf(why, sizeof(why), "scan verdict %s%s%.400s", mfs_verdict_name(it->verdict),
		         r ? ": " : "", r ? r : "");
		tx_hide(m, t, why);
	}
	mfs_scan_report_free(&rep);
	return 0;
}

/*
 * Decides a checkpoint view: pickle, scanned safe, planned; fills @v (not
 * yet published) when shown. 0 or -EIO/-ENOMEM.
 */
static int decide_ckpt(struct mfs_mount *m, struct mfs_node *t, struct mfs_txview *v)
{
	struct mfs_node *src = t->tx;
	struct mfs_vctx vc = {.fd = -1};
	struct mv_err err = {0};
	enum mfs_format f;
	int ret;

	if (mfs_file_format(m, src, &f))
		return -EIO;
	if (f != MFS_FMT_PICKLE) {
		tx_hide(m, t, NULL);
		return 0;
	}
	if (!src->res->has_merkle) {
		/* The transcode cache is keyed by the signed fs-verity digest. */
		tx_hide(m, t, "signed by SHA-256 only (plain OMS): not transcoded");
		return 0;
	}
	ret = mfs_tx_src_open(m, src, &vc);
	if (ret)
		return -EIO;
	ret = tx_scan(m, t, &vc);
	if (ret || __atomic_load_n(&t->tx_state, __ATOMIC_RELAXED) == MFS_TX_HIDDEN)
		goto out;
	ret = mfs_tx_plan_new(mfs_vpread, &vc, src->res->merkle.params.data_size, src->res->name,
	                      &v->plan, &err);
	if (ret == -EIO || ret == -ENOMEM)
		goto out; /* undecided: a verified read failed, or no memory */
	if (ret) {
		tx_hide(m, t, err.msg[0] ? err.msg : strerror(-ret));
		ret = 0;
		goto out;
	}
	v->size = mfs_tx_plan_size(v->plan);
	v->data_size = mfs_tx_plan_data_size(v->plan);
	mfs_log(LOG_INFO, "transcode-view model=%s file=%s as=%s size=%" PRIu64, t->model->path,
	        src->res->name, t->name, v->size);
	tx_show(t, v);
out:
	mfs_close_backing(m, vc.fd);
	return ret;
}

/*
 * The tensor bytes of the shards an index names, for its total_size: each
 * shard (a file in the index's folder) must be a shown view. Deciding a shard
 * never locks an index, so taking the shards' locks here cannot deadlock.
 * Return: 0 with *@total set, or UINT64_MAX in *@total when some shard is
 * not shown (the old value is kept); -EIO if a shard is undecidable now.
 */
static int index_total(struct mfs_mount *m, struct mfs_node *t, const char *json, size_t len,
                       uint64_t *total)
{
	cJSON *root = cJSON_ParseWithLength(json, len), *it;
	cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
	struct mfs_node *dir = t->tx->parent;
	uint64_t sum = 0;
	int ret = 0;

	*total = UINT64_MAX;
	if (!cJSON_IsObject(wm))
		goto out;
	cJSON_ArrayForEach(it, wm)
	{
		struct mfs_node *f;
		bool seen = false;

		if (!cJSON_IsString(it))
			goto out;
		/* Count each shard once: names repeat for every tensor. */
		for (cJSON *p = wm->child; p != it && !seen; p = p->next)
			seen = strcmp(p->valuestring, it->valuestring) == 0;
		if (seen)
			continue;
		f = mfs_node_child(dir, it->valuestring);
		if (!f || f->kind != MFS_N_FILE || !f->tx || mfs_tx_is_index(f->tx))
			goto out;
		ret = mfs_tx_decide(m, f->tx);
		if (ret) {
			ret = ret == -ENOENT ? 0 : ret;
			goto out;
		}
		/* Shown (decided above): its txv is published and complete. */
		if (__builtin_add_overflow(sum, mfs_tx_view(f->tx)->data_size, &sum))
			goto out;
	}
	*total = sum;
out:
	cJSON_Delete(root);
	return ret;
}

/* Decides an index view: a JSON index whose weight_map can be rewritten; fills @v when shown. */
static int decide_index(struct mfs_mount *m, struct mfs_node *t, struct mfs_txview *v)
{
	uint64_t size = t->tx->res->merkle.params.data_size, total;
	struct mfs_vctx vc = {.fd = -1};
	struct mv_err err = {0};
	enum mfs_format f;
	char *buf = NULL;
	ssize_t got;
	int ret;

	if (mfs_file_format(m, t->tx, &f))
		return -EIO;
	if (f != MFS_FMT_JSON || size > TX_INDEX_MAX) {
		tx_hide(m, t, NULL);
		return 0;
	}
	ret = mfs_tx_src_open(m, t->tx, &vc);
	if (ret)
		return -EIO;
	buf = malloc((size_t)size + 1);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	got = mfs_vpread(&vc, buf, (size_t)size, 0);
	if (got < 0 || (uint64_t)got != size) {
		ret = -EIO;
		goto out;
	}
	buf[size] = '\0';
	ret = index_total(m, t, buf, (size_t)size, &total);
	if (ret)
		goto out;
	ret = mfs_tx_index_rewrite(buf, (size_t)size, total, &v->text, &err);
	if (ret == -ENOMEM)
		goto out;
	if (ret) {
		tx_hide(m, t, NULL); /* a JSON file that is no checkpoint index */
		ret = 0;
		goto out;
	}
	v->size = strlen(v->text);
	mv_sha256(v->text, (size_t)v->size, v->sha256);
	v->have_sha256 = true;
	tx_show(t, v);
out:
	free(buf);
	mfs_close_backing(m, vc.fd);
	return ret;
}

/*
 * The mfs_txview is made here, under load_lock, and published only if the
 * view shows (tx_show()); a hidden or undecidable view frees it again, so
 * the ~400 bytes exist only for views that show.
 */
int mfs_tx_decide(struct mfs_mount *m, struct mfs_node *t)
{
	int st = __atomic_load_n(&t->tx_state, __ATOMIC_ACQUIRE), ret = 0;

	if (st != MFS_TX_UNDECIDED)
		return st == MFS_TX_SHOWN ? 0 : -ENOENT;
	pthread_mutex_lock(&t->load_lock);
	if (__atomic_load_n(&t->tx_state, __ATOMIC_ACQUIRE) == MFS_TX_UNDECIDED) {
		struct mfs_txview *v = calloc(1, sizeof(*v));

		if (v) {
			v->fd = -1;
			ret = mfs_tx_is_index(t) ? decide_index(m, t, v) : decide_ckpt(m, t, v);
			if (__atomic_load_n(&t->tx_state, __ATOMIC_RELAXED) != MFS_TX_SHOWN)
				tx_view_free(v);
		} else {
			ret = -ENOMEM;
		}
	}
	st = __atomic_load_n(&t->tx_state, __ATOMIC_ACQUIRE);
	pthread_mutex_unlock(&t->load_lock);
	if (ret)
		return ret == -ENOMEM ? ret : -EIO;
	return st == MFS_TX_SHOWN ? 0 : -ENOENT;
}

/*
 * Reads a checkpoint view: whole 64 KiB blocks of the cached output, each
 * checked against the tree computed when the output was made or checked.
 * A mismatch (the cache file changed under the mount) is logged and EIO.
 */
static ssize_t read_verified(struct mfs_mount *m, struct mfs_node *t, void *buf, size_t len,
                             uint64_t off)
{
	struct mfs_txview *v = t->txv;
	struct mv_verify_failure fail;
	uint64_t aoff, alen;
	uint8_t *tmp;
	int ret;

	if (v->fd < 0 || !v->mt)
		return -EIO;
	ret = mv_range_to_blocks(&v->tree, off, len, &aoff, &alen);
	if (ret || alen < len || off - aoff > alen - len || alen > SIZE_MAX)
		return -EIO;
	tmp = malloc((size_t)alen);
	if (!tmp)
		return -ENOMEM;
	ret = mv_pread_exact(v->fd, tmp, (size_t)alen, aoff);
	if (!ret)
		ret = mv_verify_blocks(&v->tree, &mv_mem_tree_ops, v->mt, aoff >> MV_MAX_LOG_BLOCK,
		                       tmp, (size_t)alen, &fail);
	if (ret) {
		mfs_count(&m->ctr.verify_failures, 1);
		mfs_count(&t->model->verify_failures, 1);
		mfs_log(LOG_ERR,
		        "verify-failure model=%s file=%s offset=%" PRIu64
		        " reason=\"cached transcoded output changed: %s\"",
		        t->model->path, t->name, aoff,
		        ret == -EBADMSG ? "hash mismatch" : strerror(-ret));
		free(tmp);
		return -EIO;
	}
	memcpy(buf, tmp + (off - aoff), len);
	free(tmp);
	return (ssize_t)len;
}

ssize_t mfs_tx_read(struct mfs_mount *m, struct mfs_node *t, void *buf, size_t len, uint64_t off)
{
	struct mfs_txview *v = t->txv;

	if (off >= v->size || len == 0)
		return 0;
	if (len > v->size - off)
		len = (size_t)(v->size - off);
	if (mfs_tx_is_index(t)) {
		memcpy(buf, v->text + off, len);
		return (ssize_t)len;
	}
	return read_verified(m, t, buf, len, off);
}

void mfs_tx_free(struct mfs_node *t)
{
	int st = __atomic_load_n(&t->tx_state, __ATOMIC_ACQUIRE);

	if (st == MFS_TX_SHOWN)
		tx_view_free(t->txv);
	else if (st == MFS_TX_HIDDEN)
		free(t->tx_reason);
	t->txv = NULL;
	t->tx_state = MFS_TX_UNDECIDED;
}
