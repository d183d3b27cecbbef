// SPDX-License-Identifier: Apache-2.0
/*
 * txview.c - --pickle=transcode: safe torch checkpoints appear as the
 * safetensors files they transcode to (docs/mount.md, "Pickles").
 *
 * At mount, every signed file whose safetensors name (mfs_tx_rename) is free
 * in its folder gets a view node (MFS_N_TX). Whether it shows is decided on
 * first lookup or listing, through the verified read path only: the source
 * must be a pickle (format detection), scan "safe" (mfs_scan) and plan
 * (mfs_tx_plan_new, which reads the zip directory and data.pkl, never the
 * tensor data). The plan gives the exact output size, so stat is right
 * before anything is written. An index (*.index.json) is rewritten in memory.
 *
 * The first open writes the output into CACHE/transcoded/<source digest
 * hex>.safetensors (temp file, fsync, rename) reading the source through
 * vread, and records its SHA-256 in <...>.safetensors.sha256. A later open,
 * in this or a later mount, reuses a cached output only after hashing it
 * whole and comparing with the record (and the header with the plan). A
 * mismatch is logged, counted and the output made again. Either way an
 * in-memory Merkle tree of the output is built with the SHA-256 and every
 * read is verified against it, so a cache file changed while mounted gives
 * EIO: a tampered entry is never served.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "mount_int.h"

#define TX_DIR       "transcoded"
#define TX_INDEX_MAX (64u << 20) /* a larger "index" is not one */
#define TX_CHUNK     (1u << 20)

/* Is @name's safetensors name already taken in @dir (whose kids are unsorted)? */
static bool name_taken(const struct mfs_node *dir, const char *name)
{
	for (size_t i = 0; i < dir->n_kids; i++) {
		if (strcmp(dir->kids[i]->name, name) == 0)
			return true;
	}
	return false;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t l = strlen(s), sl = strlen(suffix);

	return l > sl && strcmp(s + l - sl, suffix) == 0;
}

/* Adds the view node of file @f under its folder, if its name is free. */
static int tx_node_add(struct mfs_mount *m, struct mfs_model *model, struct mfs_node *f)
{
	struct mfs_txview *v;
	struct mfs_node *t;
	char *name = mfs_tx_rename(f->name);
	int ret = 0;

	if (!name)
		return -ENOMEM;
	if (strcmp(name, f->name) == 0 || strlen(name) > NAME_MAX || name_taken(f->parent, name))
		goto out; /* no view: a pickle here is simply hidden */
	v = calloc(1, sizeof(*v));
	t = v ? mfs_node_new(m, MFS_N_TX, name, model) : NULL;
	if (!t) {
		free(v);
		ret = -ENOMEM;
		goto out;
	}
	v->src = f;
	v->is_index = ends_with(f->name, ".index.json");
	v->verdict = -1;
	v->fd = -1;
	t->txv = v;
	f->tx = t;
	ret = mfs_node_add_kid(f->parent, t);
out:
	free(name);
	return ret;
}

int mfs_tx_nodes_add(struct mfs_mount *m, struct mfs_model *model)
{
	for (size_t i = 0; i < model->n_files; i++) {
		int ret = tx_node_add(m, model, model->files[i]);

		if (ret)
			return ret;
	}
	return 0;
}

/* Publishes a decision; fields written before are visible to acquire loads. */
static void tx_set_state(struct mfs_txview *v, enum mfs_tx_state st)
{
	__atomic_store_n(&v->state, st, __ATOMIC_RELEASE);
}

/* Hides @t, keeping @reason (may be NULL) for the status file. */
static void tx_hide(struct mfs_mount *m, struct mfs_node *t, const char *reason)
{
	struct mfs_txview *v = t->txv;

	if (reason) {
		v->reason = strdup(reason);
		mfs_log(LOG_NOTICE, "transcode-refused model=%s file=%s reason=\"%s\"",
		        t->model->path, v->src->res->name, reason);
	}
	tx_set_state(v, MFS_TX_HIDDEN);
}

/* Opens the source with its tree loaded, for verified reads through @vc. */
static int src_open(struct mfs_mount *m, struct mfs_node *src, struct mfs_vctx *vc)
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
		close(vc->fd);
		vc->fd = -1;
	}
	return ret;
}

/* Scans the source; hides @t unless the verdict is safe. 0, or -EIO/-ENOMEM. */
static int tx_scan(struct mfs_mount *m, struct mfs_node *t, struct mfs_vctx *vc)
{
	struct mfs_txview *v = t->txv;
	struct mfs_scan_report rep = {0};
	const struct mfs_scan_item *it;
	char why[512];
	int ret;

	ret = mfs_scan(mfs_vpread, vc, v->src->res->merkle.params.data_size, &rep);
	if (ret)
		return ret == -ENOMEM ? ret : -EIO;
	it = &rep.items[0];
	v->verdict = (int)it->verdict;
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

/* Decides a checkpoint view: pickle, scanned safe, planned. 0 or -EIO/-ENOMEM. */
static int decide_ckpt(struct mfs_mount *m, struct mfs_node *t)
{
	struct mfs_txview *v = t->txv;
	struct mfs_vctx vc = {.fd = -1};
	struct mv_err err = {0};
	enum mfs_format f;
	int ret;

	if (mfs_file_format(m, v->src, &f))
		return -EIO;
	if (f != MFS_FMT_PICKLE) {
		tx_hide(m, t, NULL);
		return 0;
	}
	ret = src_open(m, v->src, &vc);
	if (ret)
		return -EIO;
	ret = tx_scan(m, t, &vc);
	if (ret || __atomic_load_n(&v->state, __ATOMIC_RELAXED) == MFS_TX_HIDDEN)
		goto out;
	ret = mfs_tx_plan_new(mfs_vpread, &vc, v->src->res->merkle.params.data_size,
	                      v->src->res->name, &v->plan, &err);
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
	        v->src->res->name, t->name, v->size);
	tx_set_state(v, MFS_TX_SHOWN);
out:
	close(vc.fd);
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
	struct mfs_node *dir = t->txv->src->parent;
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
		if (!f || f->kind != MFS_N_FILE || !f->tx || f->tx->txv->is_index)
			goto out;
		ret = mfs_tx_decide(m, f->tx);
		if (ret) {
			ret = ret == -ENOENT ? 0 : ret;
			goto out;
		}
		if (__builtin_add_overflow(sum, f->tx->txv->data_size, &sum))
			goto out;
	}
	*total = sum;
out:
	cJSON_Delete(root);
	return ret;
}

/* Decides an index view: a JSON index whose weight_map can be rewritten. */
static int decide_index(struct mfs_mount *m, struct mfs_node *t)
{
	struct mfs_txview *v = t->txv;
	uint64_t size = v->src->res->merkle.params.data_size, total;
	struct mfs_vctx vc = {.fd = -1};
	struct mv_err err = {0};
	enum mfs_format f;
	char *buf = NULL;
	ssize_t got;
	int ret;

	if (mfs_file_format(m, v->src, &f))
		return -EIO;
	if (f != MFS_FMT_JSON || size > TX_INDEX_MAX) {
		tx_hide(m, t, NULL);
		return 0;
	}
	ret = src_open(m, v->src, &vc);
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
	tx_set_state(v, MFS_TX_SHOWN);
out:
	free(buf);
	close(vc.fd);
	return ret;
}

int mfs_tx_decide(struct mfs_mount *m, struct mfs_node *t)
{
	struct mfs_txview *v = t->txv;
	int st = __atomic_load_n(&v->state, __ATOMIC_ACQUIRE), ret = 0;

	if (st != MFS_TX_UNDECIDED)
		return st == MFS_TX_SHOWN ? 0 : -ENOENT;
	pthread_mutex_lock(&t->load_lock);
	if (__atomic_load_n(&v->state, __ATOMIC_ACQUIRE) == MFS_TX_UNDECIDED)
		ret = v->is_index ? decide_index(m, t) : decide_ckpt(m, t);
	st = __atomic_load_n(&v->state, __ATOMIC_ACQUIRE);
	pthread_mutex_unlock(&t->load_lock);
	if (ret)
		return ret == -ENOMEM ? ret : -EIO;
	return st == MFS_TX_SHOWN ? 0 : -ENOENT;
}

/* "CACHE/transcoded/<source digest hex>.safetensors" (@suffix appended), malloc'd. */
static char *tx_path(struct mfs_mount *m, struct mfs_node *t, const char *suffix)
{
	const struct mv_resource *r = t->txv->src->res;
	char hex[2 * MV_MAX_DIGEST_SIZE + 1], *out = NULL;
	const char *slash = strrchr(m->cache_dir, '/');
	int base_len = slash ? (int)(slash - m->cache_dir) : 0;

	/* m->cache_dir is BASE/trees: views go next to it, in BASE/transcoded. */
	mv_hex_encode(r->merkle.digest, mv_hash_digest_size(r->merkle.params.alg), hex);
	if (asprintf(&out, "%.*s/%s/%s.safetensors%s", base_len, m->cache_dir, TX_DIR, hex,
	             suffix) < 0)
		return NULL;
	return out;
}

/*
 * Takes possession of an output file: builds its Merkle tree in memory
 * (64 KiB blocks: 32 bytes of hash per 64 KiB), then computes its SHA-256
 * from a second read whose every block is verified against that tree. So the
 * SHA-256 describes exactly the bytes the tree describes, even if the file
 * changed in between, and every later read is checked against the same tree.
 * On success v->tree, v->mt and @sha are set. 0, -EBADMSG, or -errno.
 */
static int seal_output(struct mfs_txview *v, int fd, uint8_t sha[32])
{
	struct mv_tree_params p = {
	    .alg = MV_HASH_SHA256, .block_size = 1u << MV_MAX_LOG_BLOCK, .data_size = v->size};
	struct mv_verify_failure fail;
	struct mv_measurement meas;
	struct mv_mem_tree *mt = NULL;
	EVP_MD_CTX *ctx = NULL;
	uint8_t *buf = NULL;
	uint64_t off = 0;
	int ret;

	ret = mv_mem_tree_build(&p, fd, &mt, &meas);
	if (ret)
		goto out;
	if (mv_tree_init(&v->tree, &p, meas.root)) {
		ret = -EINVAL;
		goto out;
	}
	ret = -ENOMEM;
	ctx = EVP_MD_CTX_new();
	buf = malloc(TX_CHUNK);
	if (!ctx || !buf || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
		goto out;
	while (off < v->size) {
		size_t n = v->size - off < TX_CHUNK ? (size_t)(v->size - off) : TX_CHUNK;

		ret = mv_pread_exact(fd, buf, n, off);
		if (!ret)
			ret = mv_verify_blocks(&v->tree, &mv_mem_tree_ops, mt,
			                       off >> MV_MAX_LOG_BLOCK, buf, n, &fail);
		if (!ret && !EVP_DigestUpdate(ctx, buf, n))
			ret = -EIO;
		if (ret)
			goto out;
		off += n;
	}
	ret = EVP_DigestFinal_ex(ctx, sha, NULL) ? 0 : -EIO;
out:
	if (ret) {
		mv_mem_tree_free(mt);
		mt = NULL;
	}
	v->mt = mt;
	free(buf);
	EVP_MD_CTX_free(ctx);
	return ret;
}

/* Does @fd start with the plan's header? 0 or -EBADMSG. */
static int header_check(const struct mfs_tx_plan *p, int fd)
{
	const uint8_t *hdr;
	size_t len = mfs_tx_plan_header(p, &hdr);
	uint8_t *buf = malloc(len ? len : 1);
	int ret = -ENOMEM;

	if (buf)
		ret = mv_pread_exact(fd, buf, len, 0) || memcmp(buf, hdr, len) ? -EBADMSG : 0;
	free(buf);
	return ret;
}

/* Reads the recorded SHA-256 ("<64 hex>\n") of a cached output. 0 or -EBADMSG. */
static int sidecar_read(const char *path, uint8_t sha[32])
{
	char text[80];
	ssize_t got;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return -EBADMSG;
	got = mv_pread_full(fd, text, sizeof(text) - 1, 0);
	close(fd);
	if (got != 65 || text[64] != '\n')
		return -EBADMSG;
	text[64] = '\0';
	return mv_hex_decode(text, sha, 32) == 32 ? 0 : -EBADMSG;
}

/*
 * Reuses a cached output if it is intact: a regular file of the planned
 * size, owned by this user and writable by no one else, starting with the
 * plan's header and hashing to the recorded SHA-256. 0 (v->fd set),
 * -ENOENT (nothing cached) or -EBADMSG (rejected, logged).
 */
static int cache_reuse(struct mfs_mount *m, struct mfs_node *t, const char *path, const char *side)
{
	struct mfs_txview *v = t->txv;
	uint8_t want[32], got[32];
	const char *why = NULL;
	struct stat st;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return -ENOENT;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != v->size ||
	    st.st_uid != geteuid() || (st.st_mode & 022))
		why =
		    "not a regular file of the planned size, owned and writable by this user only";
	else if (header_check(v->plan, fd))
		why = "header differs from the plan";
	else if (sidecar_read(side, want))
		why = "missing or malformed .sha256 record";
	else if (seal_output(v, fd, got) || memcmp(got, want, 32) != 0)
		why = "SHA-256 differs from the record";
	if (why) {
		mv_mem_tree_free(v->mt);
		v->mt = NULL;
		close(fd);
		mfs_count(&m->ctr.transcode_rejected, 1);
		mfs_log(LOG_WARNING,
		        "transcode-cache-rejected model=%s file=%s cache=%s reason=\"%s\"",
		        t->model->path, t->name, path, why);
		return -EBADMSG;
	}
	memcpy(v->sha256, got, 32);
	v->have_sha256 = true;
	v->fd = fd;
	mfs_count(&m->ctr.transcode_reuses, 1);
	mfs_log(LOG_INFO, "transcode-reuse model=%s file=%s cache=%s", t->model->path, t->name,
	        path);
	return 0;
}

/*
 * Writes "<hex>\n" to @path atomically (temp file, fsync, rename). @seq makes
 * the temp name unique: two models may hold the same source file.
 */
static int sidecar_write(const char *path, const uint8_t sha[32], uint64_t seq)
{
	char text[66], *tmp = NULL;
	int fd, ret;

	mv_hex_encode(sha, 32, text);
	text[64] = '\n';
	if (asprintf(&tmp, "%s.%d.%" PRIu64 ".tmp", path, (int)getpid(), seq) < 0)
		return -ENOMEM;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0400);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	ret = mv_pwrite_full(fd, text, 65, 0);
	if (!ret && fsync(fd))
		ret = -errno;
	close(fd);
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (ret)
		unlink(tmp);
out:
	free(tmp);
	return ret;
}

/*
 * Transcodes the source into a temp file in the cache (reading it only
 * through vread), hashes it, and publishes it and its record. The written
 * descriptor itself is kept: no window in which a replaced file is served.
 */
static int produce(struct mfs_mount *m, struct mfs_node *t, const char *path, const char *side)
{
	static uint64_t seq_next;
	uint64_t seq = __atomic_fetch_add(&seq_next, 1, __ATOMIC_RELAXED);
	struct mfs_txview *v = t->txv;
	struct mfs_vctx vc = {.fd = -1};
	struct mv_err err = {0};
	struct timespec t0, t1;
	char *tmp = NULL, *dir = strdup(path);
	int fd = -1, ret;

	if (!dir || asprintf(&tmp, "%s.%d.%" PRIu64 ".tmp", path, (int)getpid(), seq) < 0) {
		tmp = NULL;
		ret = -ENOMEM;
		goto out;
	}
	*strrchr(dir, '/') = '\0';
	if (mkdir(dir, 0700) && errno != EEXIST) {
		ret = -errno;
		snprintf(err.msg, sizeof(err.msg), "%s: %s", dir, strerror(errno));
		goto out;
	}
	fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0400);
	if (fd < 0) {
		ret = -errno;
		snprintf(err.msg, sizeof(err.msg), "%s: %s", tmp, strerror(errno));
		goto out;
	}
	ret = src_open(m, v->src, &vc);
	if (ret)
		goto out;
	mfs_log(LOG_NOTICE, "transcode-start model=%s file=%s as=%s bytes=%" PRIu64, t->model->path,
	        v->src->res->name, t->name, v->size);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ret = mfs_tx_plan_write(v->plan, mfs_vpread, &vc, -1, fd, &err);
	if (!ret && fsync(fd))
		ret = -errno;
	if (!ret)
		ret = seal_output(v, fd, v->sha256);
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (!ret)
		ret = sidecar_write(side, v->sha256, seq);
	if (ret)
		goto out;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	v->have_sha256 = true;
	v->fd = fd;
	fd = -1;
	mfs_count(&m->ctr.transcodes, 1);
	mfs_log(LOG_NOTICE, "transcode-done model=%s file=%s as=%s bytes=%" PRIu64 " seconds=%.3f",
	        t->model->path, v->src->res->name, t->name, v->size,
	        (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
out:
	if (ret) {
		mv_mem_tree_free(v->mt);
		v->mt = NULL;
		mfs_log(LOG_ERR, "transcode-failed model=%s file=%s reason=\"%s\"", t->model->path,
		        v->src->res->name, err.msg[0] ? err.msg : strerror(-ret));
		if (tmp)
			unlink(tmp);
	}
	if (fd >= 0)
		close(fd);
	if (vc.fd >= 0)
		close(vc.fd);
	free(tmp);
	free(dir);
	return ret;
}

int mfs_tx_open(struct mfs_mount *m, struct mfs_node *t)
{
	struct mfs_txview *v = t->txv;
	char *path = NULL, *side = NULL;
	int ret = mfs_tx_decide(m, t);

	if (ret || v->is_index)
		return ret;
	pthread_mutex_lock(&t->load_lock); /* concurrent first opens transcode once */
	if (v->fd >= 0)
		goto out;
	path = tx_path(m, t, "");
	side = tx_path(m, t, ".sha256");
	if (!path || !side) {
		ret = -ENOMEM;
		goto out;
	}
	ret = cache_reuse(m, t, path, side);
	if (ret)
		ret = produce(m, t, path, side);
	if (ret) {
		ret = ret == -ENOMEM ? ret : -EIO;
		goto out;
	}
	/* The checked output is kept open: the plan is no longer needed. */
	mfs_tx_plan_free(v->plan);
	v->plan = NULL;
out:
	pthread_mutex_unlock(&t->load_lock);
	free(path);
	free(side);
	return ret;
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
	if (v->is_index) {
		memcpy(buf, v->text + off, len);
		return (ssize_t)len;
	}
	return read_verified(m, t, buf, len, off);
}

void mfs_tx_free(struct mfs_node *t)
{
	struct mfs_txview *v = t->txv;

	mfs_tx_plan_free(v->plan);
	mv_mem_tree_free(v->mt);
	if (v->fd >= 0)
		close(v->fd);
	free(v->text);
	free(v->reason);
	free(v);
	t->txv = NULL;
}
