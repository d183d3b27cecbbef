// SPDX-License-Identifier: Apache-2.0
/*
 * pull.c - `modelfs pull`: a model pushed by `modelfs push` back into a
 * local store folder, verified (docs/remote.md "Pull").
 *
 * Order: the model manifest (by digest when the reference pins one); the
 * layer paths, untrusted, checked; the referrer's model.sig, verified
 * against the trust given, whose signed files must be exactly the layers;
 * only then the blobs, in chunks fetched by N threads (one client each)
 * into DIR.modelfs-pull/blobs (resumable, pull_int.h); each blob hashed
 * against its digest and each file checked block by block against the
 * signed Merkle root with the tree from the referrer; the model assembled
 * in DIR.modelfs-pull/model, checked as `modelfs verify` checks a model,
 * and renamed to DIR. Nothing reaches DIR unless all of it verified. A
 * packed layer (a file stored only packed) is measured whole against the
 * signed root instead, through the caller's measure_packed (libvpack: this
 * library links no zstd), and installed under .modelfs/packed/.
 *
 * Over 1,000 lines: one pipeline whose steps share struct pull (resolve,
 * signature, plan, download, verify, assemble, install), in that order
 * under banners; its generic parts are blob.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pull_int.h"

#define MAX_REFERRERS 16 /* signature referrers tried */
#define MODEL_SUBDIR  "model"

struct item;

/* One distinct blob (files and trees with the same bytes share it). */
struct blob {
	char digest[MFR_DIGEST_LEN + 1];
	uint64_t size;
	struct mfr_part part;
	bool opened, is_tree, is_data;
	bool sha_ok;                  /* hashed to its digest */
	bool verified;                /* and, for data, every tree that goes with it checked */
	bool refetch;                 /* did not hash right with chunks of an earlier run */
	bool refetched;               /* was fetched again once already */
	bool linked;                  /* its .part is already a file of the model */
	const struct item *packed_of; /* a packed copy: measured against this file's root */
	struct item **trees;
	size_t n_trees;
};

/* One file of the model: a layer and its signed resource. */
struct item {
	const struct mfr_desc *layer;
	const char *path; /* the layer's filepath (or title) */
	const struct mv_resource *r;
	const struct mfr_desc *tree_desc; /* the referrer's tree layer, or NULL */
	struct blob *data, *tree;
	struct mv_tree t;
	bool packed; /* the layer is the file's packed copy (MFR_MT_PACKED) */
};

struct task {
	struct blob *b;
	uint64_t idx;
};

struct pull {
	struct mfr_client *c;
	const struct mfr_ref *ref;
	const struct mfr_pull_opts *o;
	struct mfr_pull_result *res;
	const char *dir;
	char what[1024]; /* REGISTRY/REPO[:TAG][@DIGEST], for messages */
	char *staging;
	int sfd, bfd;
	char *model_json;
	size_t model_len;
	struct mfr_manifest *man, *refm;
	char *sig;
	size_t sig_len;
	struct mv_manifest *m;
	struct item *items;
	size_t n_items;
	struct blob *blobs;
	size_t n_blobs;
	uint32_t chunk;
	unsigned jobs;
	struct mfr_client **clients; /* one per download thread; [0] is @c */
	struct task *tasks;
	size_t n_tasks;
	uint64_t to_fetch; /* bytes this run fetches (for the progress callback) */
	/* the thread pool */
	pthread_mutex_t lock;
	size_t next;
	bool stop;
	int ret;
	struct mv_err err;
	int (*fn)(struct pull *p, unsigned worker, size_t i, struct mv_err *err);
};

/* ---- a small pool: fn(p, worker, i) for i in [0, n), the first error stops it ---- */

struct worker {
	struct pull *p;
	unsigned id;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct pull *p = w->p;

	for (;;) {
		struct mv_err e = {0};
		size_t i;
		int ret;

		pthread_mutex_lock(&p->lock);
		if (p->stop || p->next >= p->n_tasks) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		i = p->next++;
		pthread_mutex_unlock(&p->lock);
		ret = p->fn(p, w->id, i, &e);
		if (ret) {
			pthread_mutex_lock(&p->lock);
			if (!p->ret) {
				p->ret = ret;
				p->err = e;
			}
			p->stop = true;
			pthread_mutex_unlock(&p->lock);
		}
	}
	return NULL;
}

/* Runs p->fn over @n items on up to p->jobs threads; the first error, in @err. */
static int run_pool(struct pull *p, size_t n,
                    int (*fn)(struct pull *p, unsigned worker, size_t i, struct mv_err *err),
                    struct mv_err *err)
{
	pthread_t th[MFR_JOBS_MAX];
	struct worker w[MFR_JOBS_MAX];
	unsigned k, started = 0;

	p->fn = fn;
	p->n_tasks = n;
	p->next = 0;
	p->stop = false;
	p->ret = 0;
	memset(&p->err, 0, sizeof(p->err));
	for (k = 0; k < p->jobs && k < n; k++) {
		w[k] = (struct worker){.p = p, .id = k};
		if (pthread_create(&th[k], NULL, worker_main, &w[k]))
			break;
		started++;
	}
	if (!started && n)
		worker_main(&(struct worker){.p = p, .id = 0});
	for (k = 0; k < started; k++)
		pthread_join(th[k], NULL);
	if (p->ret && err && !err->code)
		*err = p->err;
	return p->ret;
}

/* ---- folders ---- */

/* The staging folder's path: DIR (without trailing slashes) + MFR_PULL_STAGING. */
static int staging_path(struct pull *p, struct mv_err *err)
{
	size_t n = strlen(p->dir);
	const char *base;

	while (n > 1 && p->dir[n - 1] == '/')
		n--;
	if (asprintf(&p->staging, "%.*s%s", (int)n, p->dir, MFR_PULL_STAGING) < 0) {
		p->staging = NULL;
		return -ENOMEM;
	}
	base = memrchr(p->dir, '/', n);
	base = base ? base + 1 : p->dir;
	if (base >= p->dir + n || strncmp(base, ".", n - (size_t)(base - p->dir)) == 0 ||
	    strncmp(base, "..", n - (size_t)(base - p->dir)) == 0 ||
	    strlen(p->staging) >= sizeof(p->res->staging))
		return mv_err_set(err, -EINVAL, "%s: give a folder name to pull into", p->dir);
	snprintf(p->res->staging, sizeof(p->res->staging), "%s", p->staging);
	return 0;
}

/* After a failed verification: the staging folder goes, if no other pull holds it. */
static void staging_remove(struct pull *p)
{
	if (!p->staging)
		return;
	if (p->sfd < 0) {
		p->sfd = open(p->staging, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (p->sfd < 0 || flock(p->sfd, LOCK_EX | LOCK_NB))
			return;
	}
	mfr_rm_tree_at(AT_FDCWD, p->staging, 0);
	p->res->staging[0] = '\0';
}

/* ---- the model manifest and its paths ---- */

static int get_model(struct pull *p, struct mv_err *err)
{
	const char *r = p->ref->digest[0] ? p->ref->digest : p->ref->tag;
	int ret = mfr_manifest_get(p->c, r, &p->model_json, &p->model_len, NULL, err);

	if (ret == -ENOENT)
		return mv_err_set(err, ret, "%s: manifest unknown (HTTP 404)", p->what);
	if (ret)
		return ret;
	mfr_sha256_digest(p->model_json, p->model_len, p->res->manifest_digest);
	ret = mfr_manifest_parse(p->model_json, p->model_len, &p->man, err);
	if (ret)
		return mv_err_set(err, -EBADMSG, "%s: manifest: %s", p->what, err->msg);
	if (!p->man->artifact_type || strcmp(p->man->artifact_type, MFR_AT_MODEL) != 0)
		return mv_err_set(err, -EMEDIUMTYPE, "%s: not a model (artifactType %s, want %s)",
		                  p->what, p->man->artifact_type ? p->man->artifact_type : "absent",
		                  MFR_AT_MODEL);
	if (!p->man->n_layers)
		return mv_err_set(err, -EBADMSG, "%s: the manifest has no layers", p->what);
	return 0;
}

static int cmp_item_path(const void *a, const void *b)
{
	return strcmp(((const struct item *)a)->path, ((const struct item *)b)->path);
}

/* One item per layer; the paths checked, duplicates refused. */
static int check_paths(struct pull *p, struct mv_err *err)
{
	char shown[256];

	p->items = calloc(p->man->n_layers, sizeof(*p->items));
	if (!p->items)
		return -ENOMEM;
	p->n_items = p->man->n_layers;
	for (size_t i = 0; i < p->n_items; i++) {
		const struct mfr_desc *d = &p->man->layers[i];
		const char *path = d->filepath ? d->filepath : d->title;

		p->items[i].layer = d;
		p->items[i].path = path;
		p->items[i].packed = d->media_type && !strcmp(d->media_type, MFR_MT_PACKED);
		if (!mfr_path_ok(path)) {
			mv_name_printable(path ? path : "(none)", shown, sizeof(shown));
			return mv_err_set(err, -EBADMSG,
			                  "%s: layer %zu: refused path \"%s\" (absolute, \"..\", "
			                  "empty, or reserved)",
			                  p->what, i, shown);
		}
	}
	qsort(p->items, p->n_items, sizeof(*p->items), cmp_item_path);
	for (size_t i = 1; i < p->n_items; i++)
		if (strcmp(p->items[i - 1].path, p->items[i].path) == 0) {
			mv_name_printable(p->items[i].path, shown, sizeof(shown));
			return mv_err_set(err, -EBADMSG, "%s: two layers for the path \"%s\"",
			                  p->what, shown);
		}
	return 0;
}

/* ---- the signature ---- */

/* One referrer: its model.sig must verify against the trust given. */
static int try_referrer(struct pull *p, const struct mfr_desc *e, struct mv_err *err)
{
	struct mfr_manifest *rm = NULL;
	const struct mfr_desc *d;
	struct mv_manifest *m = NULL;
	struct mv_err serr = {0};
	char *json = NULL, *sig = NULL, got[MFR_DIGEST_LEN + 1];
	size_t len = 0;
	int ret = mfr_manifest_get(p->c, e->digest, &json, &len, NULL, err);

	if (ret)
		goto out;
	ret = mfr_manifest_parse(json, len, &rm, err);
	if (ret) {
		ret =
		    mv_err_set(err, -EBADMSG, "%s: referrer %s: %s", p->what, e->digest, err->msg);
		goto out;
	}
	d = rm->n_layers ? &rm->layers[0] : NULL;
	ret = -EBADMSG;
	if (!rm->has_subject || strcmp(rm->subject.digest, p->res->manifest_digest) != 0) {
		mv_err_set(err, ret, "%s: referrer %s: its subject is not the model", p->what,
		           e->digest);
		goto out;
	}
	if (!d || strcmp(d->media_type, MFR_MT_BUNDLE) != 0 || !d->size ||
	    d->size > MV_MAX_SIG_SIZE) {
		mv_err_set(err, ret, "%s: referrer %s: no %s first layer of a sane size", p->what,
		           e->digest, MFR_MT_BUNDLE);
		goto out;
	}
	ret = mfr_blob_get_range(p->c, d->digest, 0, (size_t)d->size, d->size, &sig, err);
	if (ret)
		goto out;
	mfr_sha256_digest(sig, (size_t)d->size, got);
	if (strcmp(got, d->digest) != 0) {
		ret = mv_err_set(err, -EBADMSG, "%s: model.sig: the bytes do not match %s", p->what,
		                 d->digest);
		goto out;
	}
	ret = mv_sig_parse(sig, (size_t)d->size, p->o->trust, p->o->warn, p->o->wctx, &m, &serr);
	if (ret) {
		ret = ret == -EKEYREJECTED ? ret : -EBADMSG;
		mv_err_set(err, ret, "%s: %s", p->what, serr.msg);
		goto out;
	}
	p->refm = rm;
	p->sig = sig;
	p->sig_len = (size_t)d->size;
	p->m = m;
	snprintf(p->res->referrer_digest, sizeof(p->res->referrer_digest), "%s", e->digest);
	rm = NULL;
	sig = NULL;
	m = NULL;
out:
	mfr_manifest_free(rm);
	mv_manifest_free(m);
	free(sig);
	free(json);
	return ret;
}

/* The first referrer whose model.sig verifies; none: -EBADMSG or -EKEYREJECTED. */
static int get_signature(struct pull *p, struct mv_err *err)
{
	struct mfr_index *ix = NULL;
	struct mv_err last = {0};
	char *body = NULL;
	size_t len = 0, tried = 0;
	int ret = mfr_referrers_get(p->c, p->res->manifest_digest, &body, &len, NULL, err);

	if (!ret)
		ret = mfr_index_parse(body, len, &ix, err);
	if (ret)
		goto out;
	mv_err_set(&last, -EBADMSG, "%s: no signature: no referrer of type %s", p->what,
	           MFR_MT_BUNDLE);
	ret = -EBADMSG;
	for (size_t i = 0; i < ix->n && tried < MAX_REFERRERS; i++) {
		const struct mfr_desc *e = &ix->manifests[i];
		struct mv_err e2 = {0};

		if (!e->artifact_type || strcmp(e->artifact_type, MFR_MT_BUNDLE) != 0)
			continue;
		tried++;
		ret = try_referrer(p, e, &e2);
		if (!ret)
			goto out;
		last = e2;
		if (ret != -EBADMSG && ret != -EKEYREJECTED)
			break; /* the registry failed: no use trying more */
	}
	if (!err->code)
		*err = last;
out:
	mfr_index_free(ix);
	free(body);
	return ret;
}

/* ---- the layers against the signed files, the trees, the blobs ---- */

/* Every layer is a signed file with its digest (and size); every signed file a layer. */
static int match_signed(struct pull *p, struct mv_err *err)
{
	char hex[65], shown[256];

	for (size_t i = 0; i < p->n_items; i++) {
		struct item *it = &p->items[i];
		const struct mv_resource *r = mv_manifest_find(p->m, it->path);

		mv_name_printable(it->path, shown, sizeof(shown));
		if (!r)
			return mv_err_set(err, -EBADMSG, "%s: %s: a layer that is not signed",
			                  p->what, shown);
		it->r = r;
		if (it->packed && !r->has_merkle)
			return mv_err_set(
			    err, -EBADMSG,
			    "%s: %s: a packed layer for a file with no signed Merkle root", p->what,
			    shown);
		if (it->packed)
			continue; /* its bytes are measured against the root once fetched */
		mv_hex_encode(r->sha256, 32, hex);
		if (strcmp(it->layer->digest + 7, hex) != 0)
			return mv_err_set(err, -EBADMSG,
			                  "%s: %s: the layer's digest is not the signed SHA-256",
			                  p->what, shown);
		if (r->has_merkle && it->layer->size != r->merkle.params.data_size)
			return mv_err_set(err, -EBADMSG,
			                  "%s: %s: the layer's size is not the signed one", p->what,
			                  shown);
		it->r = r;
	}
	if (p->n_items != p->m->n_res)
		return mv_err_set(err, -EBADMSG,
		                  "%s: %zu signed files but %zu layers: a signed file is missing",
		                  p->what, p->m->n_res, p->n_items);
	return 0;
}

/* The referrer's tree layer for each file with a Merkle root, by its content name. */
static int find_trees(struct pull *p, struct mv_err *err)
{
	for (size_t i = 0; i < p->n_items; i++) {
		struct item *it = &p->items[i];
		char name[MV_TREE_NAME_MAX];
		uint64_t bytes;

		/* A packed copy's tree is left to the mount (built from the copy when read). */
		if (!it->r->has_merkle || it->packed ||
		    mv_tree_init(&it->t, &it->r->merkle.params, it->r->merkle.root))
			continue;
		mv_tree_file_name(&it->r->merkle, name);
		bytes = it->t.geo.tree_blocks << it->t.geo.log_block_size;
		for (size_t k = 1; k < p->refm->n_layers; k++) {
			const struct mfr_desc *d = &p->refm->layers[k];

			if (strcmp(d->media_type, MFR_MT_TREE) != 0 || !d->title ||
			    strcmp(d->title, name) != 0)
				continue;
			if (d->size < MV_TREE_HEADER_SIZE || d->size > (1u << 20) + bytes)
				return mv_err_set(err, -EBADMSG,
				                  "%s: tree %s: size %" PRIu64 " out of bounds",
				                  p->what, name, d->size);
			it->tree_desc = d;
			break;
		}
	}
	return 0;
}

static int cmp_blob(const void *a, const void *b)
{
	return strcmp(((const struct blob *)a)->digest, ((const struct blob *)b)->digest);
}

static struct blob *blob_of(struct pull *p, const char *digest)
{
	struct blob key;

	memcpy(key.digest, digest, sizeof(key.digest));
	return bsearch(&key, p->blobs, p->n_blobs, sizeof(key), cmp_blob);
}

/* Adds a tree to check with data blob @b (once per tree blob). */
static int attach_tree(struct blob *b, struct item *it)
{
	struct item **t;

	for (size_t k = 0; k < b->n_trees; k++)
		if (b->trees[k]->tree == it->tree)
			return 0;
	t = realloc(b->trees, (b->n_trees + 1) * sizeof(*t));
	if (!t)
		return -ENOMEM;
	b->trees = t;
	b->trees[b->n_trees++] = it;
	return 0;
}

/* The distinct blobs, their total size bounded, the chunk size fitted. */
static int plan_blobs(struct pull *p, struct mv_err *err)
{
	uint64_t total = 0, chunks;
	size_t n = 0;

	p->blobs = calloc(2 * p->n_items, sizeof(*p->blobs));
	if (!p->blobs)
		return -ENOMEM;
	for (size_t i = 0; i < p->n_items; i++) {
		const struct mfr_desc *d[2] = {p->items[i].layer, p->items[i].tree_desc};

		for (int k = 0; k < 2; k++) {
			if (!d[k])
				continue;
			memcpy(p->blobs[n].digest, d[k]->digest, sizeof(p->blobs[n].digest));
			p->blobs[n].size = d[k]->size;
			p->blobs[n].part.fd = p->blobs[n].part.jfd = -1;
			n++;
		}
	}
	qsort(p->blobs, n, sizeof(*p->blobs), cmp_blob);
	p->n_blobs = 0;
	for (size_t i = 0; i < n; i++) {
		struct blob *last = p->n_blobs ? &p->blobs[p->n_blobs - 1] : NULL;

		if (last && strcmp(last->digest, p->blobs[i].digest) == 0) {
			if (last->size != p->blobs[i].size)
				return mv_err_set(err, -EBADMSG, "%s: %s: two sizes for one digest",
				                  p->what, last->digest);
			continue;
		}
		p->blobs[p->n_blobs++] = p->blobs[i];
		if (p->blobs[i].size > MFR_PULL_MAX_BYTES - total)
			return mv_err_set(err, -EFBIG, "%s: over %llu bytes in all: refused",
			                  p->what, (unsigned long long)MFR_PULL_MAX_BYTES);
		total += p->blobs[i].size;
	}
	for (size_t i = 0; i < p->n_items; i++) {
		struct item *it = &p->items[i];

		it->data = blob_of(p, it->layer->digest);
		it->data->is_data = true;
		if (it->packed && !it->data->packed_of)
			it->data->packed_of = it;
		if (!it->tree_desc)
			continue;
		it->tree = blob_of(p, it->tree_desc->digest);
		it->tree->is_tree = true;
		if (attach_tree(it->data, it))
			return -ENOMEM;
	}
	for (;;) {
		chunks = 0;
		for (size_t i = 0; i < p->n_blobs; i++)
			chunks += p->blobs[i].size / p->chunk + 1;
		if (chunks <= MFR_PULL_MAX_CHUNKS || p->chunk >= MFR_RANGE_MAX / 2)
			break;
		p->chunk *= 2;
	}
	return 0;
}

/* ---- download ---- */

/* The bytes of chunk @t (the last of a blob may be short). */
static uint64_t chunk_bytes(const struct task *t)
{
	uint64_t left = t->b->part.size - t->idx * t->b->part.chunk;

	return left < t->b->part.chunk ? left : t->b->part.chunk;
}

static int fetch_one(struct pull *p, unsigned worker, size_t i, struct mv_err *err)
{
	struct task *t = &p->tasks[i];
	int ret = 0;

	if (!p->clients[worker])
		ret = mfr_client_new(p->ref, p->o->copts, &p->clients[worker], err);
	if (!ret)
		ret = mfr_part_fetch(&t->b->part, p->clients[worker], t->idx, err);
	if (!ret) {
		uint64_t done;

		__atomic_fetch_add(&p->res->chunks_fetched, 1, __ATOMIC_RELAXED);
		done = __atomic_add_fetch(&p->res->bytes_fetched, chunk_bytes(t), __ATOMIC_RELAXED);
		if (p->o->progress)
			p->o->progress(p->o->prctx, done, p->to_fetch);
	}
	return ret;
}

/* Opens every blob not yet verified and fetches its missing chunks. */
static int fetch_round(struct pull *p, struct mv_err *err)
{
	size_t n = 0;
	int ret = 0;

	for (size_t i = 0; !ret && i < p->n_blobs; i++) {
		struct blob *b = &p->blobs[i];

		if (b->verified || b->opened)
			continue;
		ret = mfr_part_open(&b->part, p->bfd, b->digest, b->size, p->chunk, err);
		b->opened = true;
		p->res->chunks_reused += b->part.n_reused;
		p->res->chunks_bad += b->part.n_bad;
	}
	if (ret)
		return ret;
	free(p->tasks);
	p->tasks = NULL;
	for (size_t i = 0; i < p->n_blobs; i++)
		for (uint64_t k = 0; !p->blobs[i].verified && k < p->blobs[i].part.n_chunks; k++)
			n += !p->blobs[i].part.done[k];
	p->tasks = calloc(n ? n : 1, sizeof(*p->tasks));
	if (!p->tasks)
		return -ENOMEM;
	n = 0;
	for (size_t i = 0; i < p->n_blobs; i++)
		for (uint64_t k = 0; !p->blobs[i].verified && k < p->blobs[i].part.n_chunks; k++)
			if (!p->blobs[i].part.done[k])
				p->tasks[n++] = (struct task){.b = &p->blobs[i], .idx = k};
	for (size_t i = 0; i < n; i++)
		p->to_fetch += chunk_bytes(&p->tasks[i]);
	return run_pool(p, n, fetch_one, err);
}

/* ---- verification of the blobs ---- */

/* What a blob is, for messages: the first file or tree using it. */
static void blob_name(const struct pull *p, const struct blob *b, char *out, size_t len)
{
	for (size_t i = 0; i < p->n_items; i++) {
		char shown[256];

		mv_name_printable(p->items[i].path, shown, sizeof(shown));
		if (p->items[i].data == b) {
			snprintf(out, len, "%s", shown);
			return;
		}
		if (p->items[i].tree == b) {
			snprintf(out, len, "the tree of %s", shown);
			return;
		}
	}
	snprintf(out, len, "%s", b->digest);
}

/* Loads the trees to check with @b (their blobs already hashed right). */
static int load_trees(struct pull *p, struct blob *b, struct mv_mem_tree **mts, struct mv_err *err)
{
	char path[4096], shown[256];
	struct mv_err e = {0};

	for (size_t k = 0; k < b->n_trees; k++) {
		struct item *it = b->trees[k];
		int ret;

		snprintf(path, sizeof(path), "%s/" MFR_PULL_BLOBS "/%s.part", p->staging,
		         it->tree->digest + 7);
		ret = mv_mem_tree_load(path, &it->t, &mts[k], &e);
		if (ret) {
			mv_name_printable(it->path, shown, sizeof(shown));
			return mv_err_set(err, ret == -ENOMEM ? ret : -EBADMSG,
			                  "%s: the tree of %s does not fit its signed parameters",
			                  p->what, shown);
		}
	}
	return 0;
}

/*
 * A packed copy: decompressed whole and measured; its root and digest must
 * be the signed ones of the file it stands for (its layer digest is not
 * signed). Return: 0 or -EBADMSG.
 */
static int check_packed(struct pull *p, struct blob *b, struct mv_err *err)
{
	const struct mv_resource *r = b->packed_of->r;
	size_t ds = mv_hash_digest_size(r->merkle.params.alg);
	struct mv_measurement meas;
	struct mv_err e = {0};
	char shown[256];

	mv_name_printable(r->name, shown, sizeof(shown));
	if (!p->o->measure_packed ||
	    p->o->measure_packed(b->part.fd, r->name, &r->merkle.params, NULL, NULL, NULL, &meas,
	                         &e) ||
	    memcmp(meas.root, r->merkle.root, ds) || memcmp(meas.digest, r->merkle.digest, ds))
		return mv_err_set(
		    err, -EBADMSG,
		    "%s: %s: the packed copy does not match the signed Merkle root%s%s", p->what,
		    shown, e.msg[0] ? ": " : "", e.msg);
	return 0;
}

/* Hashes @b (and checks it against its trees); sets sha_ok and verified or refetch. */
static int verify_blob(struct pull *p, struct blob *b, bool with_trees, struct mv_err *err)
{
	struct mv_mem_tree **mts = calloc(b->n_trees + 1, sizeof(*mts));
	bool *bad = calloc(b->n_trees + 1, sizeof(*bad));
	uint8_t *buf = malloc(MFR_PULL_PIECE), sum[32];
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	char got[MFR_DIGEST_LEN + 1] = "sha256:", name[600];
	size_t nt = with_trees ? b->n_trees : 0;
	int ret =
	    mts && bad && buf && md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) ? 0 : -ENOMEM;

	if (!ret && nt)
		ret = load_trees(p, b, mts, err);
	for (uint64_t off = 0; !ret && off < b->size; off += MFR_PULL_PIECE) {
		size_t n =
		    b->size - off < MFR_PULL_PIECE ? (size_t)(b->size - off) : MFR_PULL_PIECE;

		ret = mv_pread_exact(b->part.fd, buf, n, off);
		if (!ret && !EVP_DigestUpdate(md, buf, n))
			ret = -EIO;
		for (size_t k = 0; !ret && k < nt; k++)
			bad[k] =
			    bad[k] || mv_verify_blocks(&b->trees[k]->t, &mv_mem_tree_ops, mts[k],
			                               off >> b->trees[k]->t.geo.log_block_size,
			                               buf, n, NULL);
	}
	if (!ret && !EVP_DigestFinal_ex(md, sum, NULL))
		ret = -EIO;
	if (ret) {
		if (!err->code)
			mv_err_set(err, ret, "%s/" MFR_PULL_BLOBS "/%s.part: %s", p->staging,
			           b->digest + 7, strerror(-ret));
		goto out;
	}
	mv_hex_encode(sum, 32, got + 7);
	blob_name(p, b, name, sizeof(name));
	if (strcmp(got, b->digest) != 0) {
		if ((b->part.n_reused || b->part.n_bad) && !b->refetched) {
			b->refetch = true; /* chunks of an earlier run: fetch it all again */
			goto out;
		}
		ret = mv_err_set(err, -EBADMSG,
		                 "%s: %s: the registry sent bytes that do not match %s", p->what,
		                 name, b->digest);
		goto out;
	}
	b->sha_ok = true;
	if (b->packed_of) {
		ret = check_packed(p, b, err);
		if (ret)
			goto out;
	}
	for (size_t k = 0; k < nt; k++)
		if (bad[k]) {
			blob_name(p, b->trees[k]->tree, name, sizeof(name));
			ret = mv_err_set(
			    err, -EBADMSG,
			    "%s: %s (referrer layer) does not match the signed Merkle root",
			    p->what, name);
			goto out;
		}
	b->verified = with_trees || !b->is_data;
out:
	for (size_t k = 0; mts && k < b->n_trees; k++)
		mv_mem_tree_free(mts[k]);
	free(mts);
	free(bad);
	free(buf);
	EVP_MD_CTX_free(md);
	return ret;
}

static int verify_tree_blob(struct pull *p, unsigned worker, size_t i, struct mv_err *err)
{
	struct blob *b = &p->blobs[i];

	(void)worker;
	if (!b->is_tree || b->sha_ok || b->refetch)
		return 0;
	return verify_blob(p, b, false, err);
}

static int verify_data_blob(struct pull *p, unsigned worker, size_t i, struct mv_err *err)
{
	struct blob *b = &p->blobs[i];

	(void)worker;
	if (!b->is_data || b->verified || b->refetch)
		return 0;
	for (size_t k = 0; k < b->n_trees; k++)
		if (!b->trees[k]->tree->sha_ok)
			return 0; /* its tree is fetched again first */
	return verify_blob(p, b, true, err);
}

/*
 * Fetches, then verifies: trees first (hashes), then the files (hashes and
 * trees). A blob that did not hash right with chunks of an earlier run is
 * fetched again whole, once; then it is an error.
 */
static int download(struct pull *p, struct mv_err *err)
{
	int ret = 0;

	for (int round = 0; !ret && round < 4; round++) {
		bool again = false;

		ret = fetch_round(p, err);
		if (!ret)
			ret = run_pool(p, p->n_blobs, verify_tree_blob, err);
		if (!ret)
			ret = run_pool(p, p->n_blobs, verify_data_blob, err);
		for (size_t i = 0; !ret && i < p->n_blobs; i++) {
			struct blob *b = &p->blobs[i];

			again = again || !b->verified;
			if (!b->refetch)
				continue;
			ret = mfr_part_reset(&b->part, err);
			b->part.n_reused = b->part.n_bad = 0;
			b->refetch = false;
			b->refetched = true;
		}
		if (!again)
			return ret;
	}
	return ret ? ret : mv_err_set(err, -EIO, "%s: the download did not settle", p->what);
}

/* ---- assembly ---- */

/* Puts blob @b at @path in the model: its .part linked, or copied if used already. */
static int place(struct pull *p, int mfd, const char *path, struct blob *b, struct mv_err *err)
{
	char name[80], shown[256];
	const char *base;
	int dfd = mfr_open_parents(mfd, path, &base, err), ret = 0;

	if (dfd < 0)
		return dfd;
	snprintf(name, sizeof(name), "%s.part", b->digest + 7);
	if (!b->linked) {
		if (fchmod(b->part.fd, 0644) || linkat(p->bfd, name, dfd, base, 0))
			ret = -errno;
		b->linked = !ret;
	} else {
		ret = mfr_copy_new(b->part.fd, b->size, dfd, base);
	}
	if (ret) {
		mv_name_printable(path, shown, sizeof(shown));
		mv_err_set(err, ret, "%s/" MODEL_SUBDIR "/%s: cannot create: %s", p->staging, shown,
		           strerror(-ret));
	}
	close(dfd);
	return ret;
}

/* A file with no tree in the referrer: its tree built here, checked against the root. */
static int build_tree(struct pull *p, const struct item *it, const char *tree_rel,
                      struct mv_err *err)
{
	struct mv_measurement meas;
	char *path = NULL;
	size_t ds = mv_hash_digest_size(it->r->merkle.params.alg);
	int ret;

	if (asprintf(&path, "%s/" MODEL_SUBDIR "/%s", p->staging, tree_rel) < 0)
		return -ENOMEM;
	ret = mv_tree_file_write(it->data->part.fd, &it->r->merkle.params, path, &meas, err);
	if (!ret && memcmp(meas.digest, it->r->merkle.digest, ds) != 0)
		ret = mv_err_set(err, -EBADMSG, "%s: %s: does not match its signed Merkle root",
		                 p->what, it->path);
	if (!ret) {
		p->res->n_trees_built++;
		if (p->o->warn) {
			char line[600], shown[256];

			mv_name_printable(it->path, shown, sizeof(shown));
			snprintf(line, sizeof(line), "%s: no tree in the referrer: built here",
			         shown);
			p->o->warn(p->o->wctx, line);
		}
	}
	free(path);
	return ret;
}

/* The tree of @it under .modelfs/trees: the referrer's, or built here. */
static int place_tree(struct pull *p, int mfd, struct item *it, struct mv_err *err)
{
	char name[MV_TREE_NAME_MAX], rel[sizeof(MV_TREES_DIR) + MV_TREE_NAME_MAX + 1];
	const char *base;
	struct stat st;
	int dfd, ret = 0;

	if (!it->r->has_merkle || it->packed || !mv_hash_digest_size(it->r->merkle.params.alg))
		return 0;
	mv_tree_file_name(&it->r->merkle, name);
	snprintf(rel, sizeof(rel), "%s/%s", MV_TREES_DIR, name);
	dfd = mfr_open_parents(mfd, rel, &base, err);
	if (dfd < 0)
		return dfd;
	if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0)
		goto out; /* the same tree for another file */
	if (it->tree)
		ret = place(p, mfd, rel, it->tree, err);
	else
		ret = build_tree(p, it, rel, err);
	p->res->n_trees += !ret;
out:
	close(dfd);
	return ret;
}

/* STAGING/model: every file, model.sig, the trees; synced. */
static int assemble(struct pull *p, struct mv_err *err)
{
	int mfd = -1, fd, ret = mfr_rm_tree_at(p->sfd, MODEL_SUBDIR, 0);

	if (!ret && mkdirat(p->sfd, MODEL_SUBDIR, 0755))
		ret = -errno;
	if (!ret && (mfd = openat(p->sfd, MODEL_SUBDIR,
	                          O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		ret = -errno;
	if (ret) {
		mv_err_set(err, ret, "%s/" MODEL_SUBDIR ": %s", p->staging, strerror(-ret));
		goto out;
	}
	for (size_t i = 0; !ret && i < p->n_items; i++) {
		char packed[sizeof(MV_PACKED_DIR) + MV_ZPACK_NAME_MAX + 1];

		if (p->items[i].packed) { /* where `modelfs pack` keeps it */
			memcpy(packed, MV_PACKED_DIR "/", sizeof(MV_PACKED_DIR));
			mv_zpack_file_name(&p->items[i].r->merkle, packed + sizeof(MV_PACKED_DIR));
		}
		ret = place(p, mfd, p->items[i].packed ? packed : p->items[i].path,
		            p->items[i].data, err);
		p->res->bytes += p->items[i].data->size;
	}
	for (size_t i = 0; !ret && i < p->n_items; i++)
		ret = place_tree(p, mfd, &p->items[i], err);
	if (ret)
		goto out;
	fd = openat(mfd, MV_SIG_NAME, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	ret = fd < 0 ? -errno : mv_pwrite_full(fd, p->sig, p->sig_len, 0);
	if (fd >= 0)
		close(fd);
	if (!ret && syncfs(mfd))
		ret = -errno;
	if (ret)
		mv_err_set(err, ret, "%s/" MODEL_SUBDIR "/" MV_SIG_NAME ": %s", p->staging,
		           strerror(-ret));
	p->res->n_files = p->n_items;
out:
	if (mfd >= 0)
		close(mfd);
	return ret;
}

/* The assembled model, checked as `modelfs verify` does (the hashes were checked). */
static int final_check(struct pull *p, struct mv_err *err)
{
	const struct mv_verify_opts vo = {.skip_file_hashes = true,
	                                  .measure_packed = p->o->measure_packed};
	char *path = NULL;
	int ret;

	if (asprintf(&path, "%s/" MODEL_SUBDIR, p->staging) < 0)
		return -ENOMEM;
	ret = mv_model_verify(path, p->o->trust, &vo, p->o->problem, p->o->pctx, p->o->warn,
	                      p->o->wctx, NULL);
	if (ret)
		ret = mv_err_set(err, ret == -EKEYREJECTED ? ret : -EBADMSG,
		                 "%s: the assembled model does not verify", p->what);
	free(path);
	return ret;
}

/* STAGING/model becomes DIR; DIR's parent synced; the staging folder removed. */
static int install(struct pull *p, struct mv_err *err)
{
	if (renameat(p->sfd, MODEL_SUBDIR, AT_FDCWD, p->dir))
		return mv_err_set(err, -errno, "%s: cannot move the model there: %s", p->dir,
		                  strerror(errno));
	mfr_sync_parent(p->dir);
	for (size_t i = 0; i < p->n_blobs; i++)
		if (p->blobs[i].opened) {
			mfr_part_close(&p->blobs[i].part);
			p->blobs[i].opened = false;
		}
	mfr_rm_tree_at(AT_FDCWD, p->staging, 0);
	p->res->staging[0] = '\0';
	return 0;
}

static void pull_free(struct pull *p)
{
	for (unsigned k = 1; p->clients && k < p->jobs; k++)
		mfr_client_free(p->clients[k]);
	free(p->clients);
	for (size_t i = 0; p->blobs && i < p->n_blobs; i++) {
		if (p->blobs[i].opened)
			mfr_part_close(&p->blobs[i].part);
		free(p->blobs[i].trees);
	}
	free(p->blobs);
	free(p->items);
	free(p->tasks);
	mfr_manifest_free(p->man);
	mfr_manifest_free(p->refm);
	mv_manifest_free(p->m);
	free(p->model_json);
	free(p->sig);
	if (p->bfd >= 0)
		close(p->bfd);
	if (p->sfd >= 0)
		close(p->sfd);
	free(p->staging);
	pthread_mutex_destroy(&p->lock);
}

int mfr_pull(struct mfr_client *c, const struct mfr_ref *ref, const char *dir,
             const struct mfr_pull_opts *o, struct mfr_pull_result *res, struct mv_err *err)
{
	struct pull p = {.c = c, .ref = ref, .o = o, .res = res, .dir = dir, .sfd = -1, .bfd = -1};
	int ret;

	memset(res, 0, sizeof(*res));
	pthread_mutex_init(&p.lock, NULL);
	snprintf(p.what, sizeof(p.what), "%s/%s%s%s%s%s", ref->registry, ref->repo,
	         ref->tag ? ":" : "", ref->tag ? ref->tag : "", ref->digest[0] ? "@" : "",
	         ref->digest);
	p.jobs = o->jobs ? (o->jobs > MFR_JOBS_MAX ? MFR_JOBS_MAX : o->jobs) : MFR_JOBS_DEFAULT;
	p.chunk = o->chunk_size ? o->chunk_size : MFR_CHUNK_DEFAULT;
	if (p.chunk < MFR_CHUNK_MIN || p.chunk > MFR_RANGE_MAX) {
		ret = mv_err_set(err, -EINVAL, "%s: chunk size %u out of [%u, %u]", p.what, p.chunk,
		                 MFR_CHUNK_MIN, MFR_RANGE_MAX);
		goto out;
	}
	p.clients = calloc(p.jobs, sizeof(*p.clients));
	ret = p.clients ? staging_path(&p, err) : -ENOMEM;
	if (!ret && !ref->tag && !ref->digest[0])
		ret = mv_err_set(err, -EINVAL, "%s: give a tag or a digest", p.what);
	if (!ret)
		ret = mfr_dir_check_empty(dir, err);
	if (ret)
		goto out;
	p.clients[0] = c;
	ret = get_model(&p, err);
	if (!ret)
		ret = check_paths(&p, err);
	if (!ret)
		ret = get_signature(&p, err);
	if (!ret)
		ret = match_signed(&p, err);
	if (!ret)
		ret = find_trees(&p, err);
	if (!ret)
		ret = plan_blobs(&p, err);
	if (!ret)
		ret = mfr_staging_open(p.staging, &p.sfd, &p.bfd, err);
	if (!ret)
		ret = download(&p, err);
	if (!ret)
		ret = assemble(&p, err);
	if (!ret)
		ret = final_check(&p, err);
	if (!ret)
		ret = mfr_dir_check_empty(dir, err);
	if (!ret)
		ret = install(&p, err);
	if (ret == -EBADMSG || ret == -EKEYREJECTED)
		staging_remove(&p);
out:
	if (ret && !err->code)
		mv_err_set(err, ret, "%s: %s", p.what, strerror(-ret));
	if (ret && res->staging[0] && access(res->staging, F_OK))
		res->staging[0] = '\0';
	pull_free(&p);
	return ret;
}
