// SPDX-License-Identifier: Apache-2.0
/*
 * frame_cache.c - a bounded, sharded LRU of decompressed, verified frames of
 * zstd-packed files, and the mount's read path over it (mc_zpack_pread).
 *
 * Each shard has a mutex, a chained hash table, an LRU list of ready frames
 * and a condition variable. A miss inserts a "loading" entry and runs the
 * loader without the lock; callers that find that entry wait on the shard's
 * condition variable, so one frame is decompressed and verified once however
 * many readers want it. A failed load is removed from the table before the
 * waiters wake: they get its error, and the next reader tries again.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"

#define SHARD_MIN_BYTES (8u << 20) /* a shard holds at least 8 default frames */
#define MAX_SHARDS      16
#define ENTRY_OVERHEAD  64 /* malloc headers, charged with each entry */
#define MIN_BUCKETS     64

enum fstate { F_LOADING, F_READY, F_FAILED };

struct fentry {
	uint64_t file_id;
	uint32_t index;
	enum fstate state;
	int err;       /* with F_FAILED */
	unsigned refs; /* lent out, plus one for the loader while loading */
	bool in_table;
	size_t len;
	uint8_t *data;
	struct fentry *hnext;         /* hash chain */
	struct fentry *lprev, *lnext; /* LRU (ready entries in the table) */
};

struct shard {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct fentry **buckets;
	size_t n_buckets, n_entries;
	struct fentry lru; /* sentinel: lru.lnext is the most recent */
	size_t bytes, max_bytes;
};

struct mc_frame_cache {
	struct shard *shards;
	unsigned n_shards;
	size_t max_bytes;
	_Atomic uint64_t next_id, hits, waits, misses, errors, evictions;
};

static uint64_t key_hash(uint64_t file_id, uint32_t index)
{
	uint64_t h = file_id * 0x9E3779B97F4A7C15ull ^ (index + 1) * 0xC2B2AE3D27D4EB4Full;

	h ^= h >> 31;
	h *= 0xBF58476D1CE4E5B9ull;
	return h ^ (h >> 29);
}

static struct shard *shard_of(struct mc_frame_cache *c, uint64_t h)
{
	return &c->shards[(h >> 40) % c->n_shards];
}

static size_t charge(const struct fentry *e)
{
	return e->len + sizeof(*e) + ENTRY_OVERHEAD;
}

/* ---- LRU and table, shard lock held ---- */

static void lru_unlink(struct fentry *e)
{
	if (!e->lprev)
		return;
	e->lprev->lnext = e->lnext;
	e->lnext->lprev = e->lprev;
	e->lprev = e->lnext = NULL;
}

static void lru_push(struct shard *s, struct fentry *e)
{
	e->lnext = s->lru.lnext;
	e->lprev = &s->lru;
	s->lru.lnext->lprev = e;
	s->lru.lnext = e;
}

static struct fentry *table_find(struct shard *s, uint64_t h, uint64_t file_id, uint32_t index)
{
	struct fentry *e = s->buckets[h & (s->n_buckets - 1)];

	while (e && (e->file_id != file_id || e->index != index))
		e = e->hnext;
	return e;
}

/* Doubles the table when it gets crowded; keeps the old one on ENOMEM. */
static void table_grow(struct shard *s)
{
	size_t n = s->n_buckets * 2;
	struct fentry **b;

	if (s->n_entries <= s->n_buckets || n > SIZE_MAX / sizeof(*b))
		return;
	b = calloc(n, sizeof(*b));
	if (!b)
		return;
	for (size_t i = 0; i < s->n_buckets; i++) {
		struct fentry *e = s->buckets[i], *next;

		for (; e; e = next) {
			size_t k = key_hash(e->file_id, e->index) & (n - 1);

			next = e->hnext;
			e->hnext = b[k];
			b[k] = e;
		}
	}
	free(s->buckets);
	s->buckets = b;
	s->n_buckets = n;
}

static void table_insert(struct shard *s, uint64_t h, struct fentry *e)
{
	size_t k = h & (s->n_buckets - 1);

	e->hnext = s->buckets[k];
	s->buckets[k] = e;
	e->in_table = true;
	s->n_entries++;
	s->bytes += charge(e);
	table_grow(s);
}

static void table_remove(struct shard *s, struct fentry *e)
{
	struct fentry **pp = &s->buckets[key_hash(e->file_id, e->index) & (s->n_buckets - 1)];

	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = e->hnext;
	e->hnext = NULL;
	e->in_table = false;
	s->n_entries--;
	s->bytes -= charge(e);
	lru_unlink(e);
}

static void entry_free(struct fentry *e)
{
	free(e->data);
	free(e);
}

/* Drops a reference; frees an entry that left the table. */
static void entry_release(struct fentry *e)
{
	if (--e->refs == 0 && !e->in_table)
		entry_free(e);
}

/* Evicts unused ready frames from the LRU tail until the shard fits. */
static void shard_evict(struct mc_frame_cache *c, struct shard *s)
{
	struct fentry *e = s->lru.lprev, *prev;

	for (; s->bytes > s->max_bytes && e != &s->lru; e = prev) {
		prev = e->lprev;
		if (e->refs)
			continue;
		table_remove(s, e);
		entry_free(e);
		atomic_fetch_add_explicit(&c->evictions, 1, memory_order_relaxed);
	}
}

/* ---- cache ---- */

static int shard_init(struct shard *s, size_t max_bytes)
{
	s->n_buckets = MIN_BUCKETS;
	s->buckets = calloc(s->n_buckets, sizeof(*s->buckets));
	if (!s->buckets)
		return -ENOMEM;
	s->lru.lnext = s->lru.lprev = &s->lru;
	s->max_bytes = max_bytes;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	return 0;
}

int mc_frame_cache_new(size_t max_bytes, struct mc_frame_cache **out)
{
	struct mc_frame_cache *c = calloc(1, sizeof(*c));
	size_t n;

	*out = NULL;
	if (!c)
		return -ENOMEM;
	c->max_bytes = max_bytes ? max_bytes : MC_FRAME_DEFAULT_BYTES;
	n = c->max_bytes / SHARD_MIN_BYTES;
	c->n_shards = n < 1 ? 1 : n > MAX_SHARDS ? MAX_SHARDS : (unsigned)n;
	c->shards = calloc(c->n_shards, sizeof(*c->shards));
	if (!c->shards) {
		free(c);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < c->n_shards; i++) {
		if (shard_init(&c->shards[i], c->max_bytes / c->n_shards)) {
			c->n_shards = i; /* free only what was set up */
			mc_frame_cache_free(c);
			return -ENOMEM;
		}
	}
	atomic_init(&c->next_id, 1);
	*out = c;
	return 0;
}

void mc_frame_cache_free(struct mc_frame_cache *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->n_shards; i++) {
		struct shard *s = &c->shards[i];

		for (size_t k = 0; k < s->n_buckets; k++) {
			struct fentry *e = s->buckets[k], *next;

			for (; e; e = next) {
				next = e->hnext;
				entry_free(e);
			}
		}
		free(s->buckets);
		pthread_mutex_destroy(&s->mu);
		pthread_cond_destroy(&s->cv);
	}
	free(c->shards);
	free(c);
}

uint64_t mc_frame_new_file_id(struct mc_frame_cache *c)
{
	return atomic_fetch_add(&c->next_id, 1);
}

static void fill_ref(struct mc_frame_ref *ref, struct fentry *e)
{
	ref->data = e->data;
	ref->len = e->len;
	ref->priv = e;
}

/*
 * Takes a found entry (lock held, reference taken): waits for a load in
 * flight, then lends it out or returns the load's error.
 */
static int take_found(struct mc_frame_cache *c, struct shard *s, struct fentry *e,
                      struct mc_frame_ref *ref)
{
	int ret = 0;

	if (e->state == F_LOADING) {
		atomic_fetch_add_explicit(&c->waits, 1, memory_order_relaxed);
		while (e->state == F_LOADING)
			pthread_cond_wait(&s->cv, &s->mu);
	}
	if (e->state == F_FAILED) {
		ret = e->err;
		entry_release(e);
		return ret;
	}
	atomic_fetch_add_explicit(&c->hits, 1, memory_order_relaxed);
	lru_unlink(e);
	lru_push(s, e);
	fill_ref(ref, e);
	return 0;
}

/* Runs the loader on a new entry (lock not held), then publishes the result. */
static int load_new(struct mc_frame_cache *c, struct shard *s, struct fentry *e,
                    mc_frame_load_fn load, void *ctx, struct mc_frame_ref *ref)
{
	int ret;

	atomic_fetch_add_explicit(&c->misses, 1, memory_order_relaxed);
	ret = load(ctx, e->index, e->data, e->len);
	pthread_mutex_lock(&s->mu);
	if (ret) {
		atomic_fetch_add_explicit(&c->errors, 1, memory_order_relaxed);
		e->state = F_FAILED;
		e->err = ret;
		table_remove(s, e);
		entry_release(e);
	} else {
		e->state = F_READY;
		lru_push(s, e);
		fill_ref(ref, e);
	}
	pthread_cond_broadcast(&s->cv);
	shard_evict(c, s);
	pthread_mutex_unlock(&s->mu);
	return ret;
}

static struct fentry *entry_new(uint64_t file_id, uint32_t index, size_t len)
{
	struct fentry *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	e->data = malloc(len ? len : 1);
	if (!e->data) {
		free(e);
		return NULL;
	}
	e->file_id = file_id;
	e->index = index;
	e->len = len;
	e->state = F_LOADING;
	e->refs = 1;
	return e;
}

int mc_frame_get(struct mc_frame_cache *c, uint64_t file_id, uint32_t index, size_t len,
                 mc_frame_load_fn load, void *ctx, struct mc_frame_ref *ref)
{
	uint64_t h = key_hash(file_id, index);
	struct shard *s = shard_of(c, h);
	struct fentry *e, *fresh = NULL;
	int ret;

	memset(ref, 0, sizeof(*ref));
	pthread_mutex_lock(&s->mu);
	for (;;) {
		e = table_find(s, h, file_id, index);
		if (e || fresh)
			break;
		/* Allocate outside the lock, then look again: another thread may have won. */
		pthread_mutex_unlock(&s->mu);
		fresh = entry_new(file_id, index, len);
		if (!fresh)
			return -ENOMEM;
		pthread_mutex_lock(&s->mu);
	}
	if (e) {
		if (e->len != len) {
			ret = -EINVAL;
		} else {
			e->refs++;
			ret = take_found(c, s, e, ref);
		}
		pthread_mutex_unlock(&s->mu);
		if (fresh)
			entry_free(fresh);
		return ret;
	}
	table_insert(s, h, fresh);
	shard_evict(c, s);
	pthread_mutex_unlock(&s->mu);
	return load_new(c, s, fresh, load, ctx, ref);
}

void mc_frame_put(struct mc_frame_cache *c, struct mc_frame_ref *ref)
{
	struct fentry *e = ref->priv;
	struct shard *s;

	if (!e)
		return;
	s = shard_of(c, key_hash(e->file_id, e->index));
	pthread_mutex_lock(&s->mu);
	entry_release(e);
	/* A frame that was in use while the shard was over its bound can go now. */
	shard_evict(c, s);
	pthread_mutex_unlock(&s->mu);
	memset(ref, 0, sizeof(*ref));
}

void mc_frame_cache_drop_file(struct mc_frame_cache *c, uint64_t file_id)
{
	for (unsigned i = 0; i < c->n_shards; i++) {
		struct shard *s = &c->shards[i];
		struct fentry *e, *prev;

		pthread_mutex_lock(&s->mu);
		for (e = s->lru.lprev; e != &s->lru; e = prev) {
			prev = e->lprev;
			if (e->file_id != file_id || e->refs)
				continue;
			table_remove(s, e);
			entry_free(e);
		}
		pthread_mutex_unlock(&s->mu);
	}
}

void mc_frame_cache_stats(struct mc_frame_cache *c, struct mc_frame_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->hits = atomic_load(&c->hits);
	out->waits = atomic_load(&c->waits);
	out->misses = atomic_load(&c->misses);
	out->errors = atomic_load(&c->errors);
	out->evictions = atomic_load(&c->evictions);
	out->max_bytes = c->max_bytes;
	for (unsigned i = 0; i < c->n_shards; i++) {
		struct shard *s = &c->shards[i];

		pthread_mutex_lock(&s->mu);
		out->entries += s->n_entries;
		out->bytes += s->bytes;
		pthread_mutex_unlock(&s->mu);
	}
}

/* ------------------------------------------------------------------------
 * Reading packed files
 * ------------------------------------------------------------------------ */

int mc_zpack_file_init(struct mc_zpack_file *f, struct mc_frame_cache *c, int fd,
                       const struct mv_zpack *z, const struct mv_tree *tree,
                       const struct mv_hblock_ops *hops, void *hctx, const char *name)
{
	memset(f, 0, sizeof(*f));
	if (z->data_size != tree->params.data_size ||
	    (z->n_frames > 1 && z->frame_size % tree->params.block_size))
		return -EINVAL;
	*f = (struct mc_zpack_file){.cache = c,
	                            .file_id = mc_frame_new_file_id(c),
	                            .fd = fd,
	                            .z = z,
	                            .tree = tree,
	                            .hops = hops,
	                            .hctx = hctx,
	                            .name = name};
	return 0;
}

struct zload {
	const struct mc_zpack_file *f;
	struct mv_err *err;
};

static int zload(void *ctx, uint32_t index, uint8_t *buf, size_t len)
{
	const struct zload *l = ctx;
	const struct mc_zpack_file *f = l->f;

	return mv_zpack_load_frame(f->z, f->fd, index, buf, f->tree, f->hops, f->hctx, f->name,
	                           l->err);
}

ssize_t mc_zpack_pread(const struct mc_zpack_file *f, void *buf, size_t len, uint64_t off,
                       struct mv_err *err)
{
	const struct mv_zpack *z = f->z;
	struct zload l = {.f = f, .err = err};
	uint8_t *out = buf;
	size_t done = 0;

	if (off >= z->data_size || len == 0)
		return 0;
	if (len > z->data_size - off)
		len = (size_t)(z->data_size - off);
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	while (done < len) {
		uint64_t pos = off + done;
		uint32_t idx = (uint32_t)(pos / z->frame_size);
		size_t within = (size_t)(pos % z->frame_size), n;
		struct mc_frame_ref ref;
		int ret;

		ret = mc_frame_get(f->cache, f->file_id, idx, mv_zpack_frame_len(z, idx), zload, &l,
		                   &ref);
		if (ret) {
			/* A reader that waited for another's load has no line yet. */
			mv_err_set(err, ret, "%s: frame %" PRIu32 " cannot be read: %s", f->name,
			           idx, strerror(-ret));
			return ret == -ENOMEM ? -ENOMEM : -EIO;
		}
		n = ref.len - within < len - done ? ref.len - within : len - done;
		memcpy(out + done, ref.data + within, n);
		mc_frame_put(f->cache, &ref);
		done += n;
	}
	return (ssize_t)done;
}
