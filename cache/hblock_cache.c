// SPDX-License-Identifier: Apache-2.0
/*
 * hblock_cache.c - a bounded, sharded LRU of Merkle hash blocks.
 *
 * Why sharded: every verified read asks for at least one hash block, from
 * every worker thread at once; one global lock would serialize the read
 * path. Each shard has its own lock, hash table, LRU list and share of the
 * memory bound.
 *
 * Why reference counts: the verifier holds a block while it hashes the data
 * below it. An entry evicted meanwhile is only unlinked ("detached") and is
 * freed when the last borrower returns it, so lent bytes never change.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"

#define NSHARDS     16
#define MIN_BUCKETS 16
#define MAX_BUCKETS (1u << 20)

/* LRU links; the first member of an entry, so a link converts back to it. */
struct lru_link {
	struct lru_link *prev, *next;
};

struct entry {
	struct lru_link lru; /* LRU list; the shard's sentinel is both ends */
	struct entry *hnext; /* hash chain */
	uint64_t tree_id;
	uint64_t index;
	unsigned level;
	unsigned shard;
	uint32_t size;
	unsigned refs;
	bool verified;
	bool detached; /* out of the table and the LRU; freed by the last put */
	uint8_t data[];
};

struct shard {
	pthread_mutex_t lock;
	struct entry **buckets;
	size_t nbuckets;     /* power of two */
	struct lru_link lru; /* sentinel: lru.next is the most recently used */
	uint64_t bytes, max_bytes, entries;
	uint64_t hits, misses, evictions;
} __attribute__((aligned(64)));

struct mc_hblock_cache {
	struct shard shards[NSHARDS];
	uint64_t next_tree_id; /* atomic */
	uint64_t max_bytes;
};

/* Bytes an entry costs: its block plus bookkeeping. */
static uint64_t entry_charge(const struct entry *e)
{
	return (uint64_t)e->size + sizeof(*e);
}

/* splitmix64 finalizer: spreads (tree, level, index) over shards and buckets. */
static uint64_t key_hash(uint64_t tree_id, unsigned level, uint64_t index)
{
	uint64_t x = tree_id * 0x9e3779b97f4a7c15ull ^ ((uint64_t)level << 56) ^ index;

	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

static struct entry *lru_entry(struct lru_link *l)
{
	return (struct entry *)l; /* lru is the first member */
}

static void lru_unlink(struct entry *e)
{
	e->lru.prev->next = e->lru.next;
	e->lru.next->prev = e->lru.prev;
	e->lru.prev = e->lru.next = NULL;
}

static void lru_push_front(struct shard *s, struct entry *e)
{
	e->lru.next = s->lru.next;
	e->lru.prev = &s->lru;
	s->lru.next->prev = &e->lru;
	s->lru.next = &e->lru;
}

/* Removes @e from its bucket chain. Caller holds the shard lock. */
static void table_unlink(struct shard *s, struct entry *e, uint64_t h)
{
	struct entry **pp = &s->buckets[h & (s->nbuckets - 1)];

	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = e->hnext;
	e->hnext = NULL;
}

/*
 * Takes @e out of the table and the LRU. An entry still lent out is only
 * marked detached; the last put frees it. Caller holds the shard lock.
 */
static void shard_remove(struct shard *s, struct entry *e)
{
	table_unlink(s, e, key_hash(e->tree_id, e->level, e->index));
	lru_unlink(e);
	s->bytes -= entry_charge(e);
	s->entries--;
	if (e->refs)
		e->detached = true;
	else
		free(e);
}

/* Evicts least recently used entries until the shard fits its bound. */
static void shard_evict(struct shard *s)
{
	while (s->bytes > s->max_bytes && s->lru.prev != &s->lru) {
		shard_remove(s, lru_entry(s->lru.prev));
		s->evictions++;
	}
}

static struct entry *shard_find(struct shard *s, uint64_t h, uint64_t tree_id, unsigned level,
                                uint64_t index)
{
	struct entry *e = s->buckets[h & (s->nbuckets - 1)];

	for (; e; e = e->hnext)
		if (e->tree_id == tree_id && e->index == index && e->level == level)
			return e;
	return NULL;
}

/* Lends @e to the caller. Caller holds the shard lock. */
static void lend(struct shard *s, struct entry *e, struct mv_hblock *out)
{
	e->refs++;
	lru_unlink(e);
	lru_push_front(s, e);
	out->data = e->data;
	out->verified = e->verified;
	out->priv = e;
}

static size_t buckets_for(uint64_t shard_bytes)
{
	/* Sized for the smallest blocks (1 KiB), so chains stay short. */
	uint64_t want = shard_bytes / (1024 + sizeof(struct entry));
	size_t n = MIN_BUCKETS;

	while (n < want && n < MAX_BUCKETS)
		n <<= 1;
	return n;
}

int mc_hblock_cache_new(size_t max_bytes, struct mc_hblock_cache **out)
{
	struct mc_hblock_cache *c;
	int ret = -ENOMEM;

	*out = NULL;
	if (!max_bytes)
		max_bytes = MC_HBLOCK_DEFAULT_BYTES;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->max_bytes = max_bytes;
	c->next_tree_id = 1;
	for (unsigned i = 0; i < NSHARDS; i++) {
		struct shard *s = &c->shards[i];

		s->max_bytes = max_bytes / NSHARDS;
		s->nbuckets = buckets_for(s->max_bytes);
		s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
		s->lru.next = s->lru.prev = &s->lru;
		pthread_mutex_init(&s->lock, NULL);
		if (!s->buckets)
			goto out;
	}
	*out = c;
	c = NULL;
	ret = 0;
out:
	mc_hblock_cache_free(c);
	return ret;
}

void mc_hblock_cache_free(struct mc_hblock_cache *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < NSHARDS; i++) {
		struct shard *s = &c->shards[i];

		if (s->lru.next) {
			while (s->lru.next != &s->lru) {
				struct entry *e = lru_entry(s->lru.next);

				lru_unlink(e);
				free(e);
			}
		}
		free(s->buckets);
		if (s->lru.next)
			pthread_mutex_destroy(&s->lock);
	}
	free(c);
}

uint64_t mc_hblock_new_tree_id(struct mc_hblock_cache *c)
{
	return __atomic_fetch_add(&c->next_tree_id, 1, __ATOMIC_RELAXED);
}

int mc_hblock_src_init(struct mc_hblock_src *src, struct mc_hblock_cache *c, int fd,
                       uint64_t tree_offset, const struct mv_tree_geometry *geo)
{
	if (geo->num_levels > MV_MAX_LEVELS || geo->log_block_size < MV_MIN_LOG_BLOCK ||
	    geo->log_block_size > MV_MAX_LOG_BLOCK)
		return -EINVAL;
	memset(src, 0, sizeof(*src));
	src->cache = c;
	src->tree_id = mc_hblock_new_tree_id(c);
	src->fd = fd;
	src->tree_offset = tree_offset;
	src->block_size = 1u << geo->log_block_size;
	src->num_levels = geo->num_levels;
	for (unsigned i = 0; i < geo->num_levels; i++) {
		src->level_start[i] = geo->level_start[i];
		src->level_blocks[i] = geo->level_blocks[i];
	}
	return 0;
}

/* Computes the file offset of a tree block, refusing out-of-range indexes. */
static int block_offset(const struct mc_hblock_src *src, unsigned level, uint64_t index,
                        uint64_t *off)
{
	uint64_t blk;

	if (level >= src->num_levels || index >= src->level_blocks[level])
		return -EINVAL;
	if (__builtin_add_overflow(src->level_start[level], index, &blk) ||
	    __builtin_mul_overflow(blk, (uint64_t)src->block_size, &blk) ||
	    __builtin_add_overflow(blk, src->tree_offset, off) || *off > (uint64_t)INT64_MAX)
		return -EINVAL;
	return 0;
}

static int hb_get(void *ctx, unsigned level, uint64_t index, struct mv_hblock *out)
{
	struct mc_hblock_src *src = ctx;
	struct mc_hblock_cache *c = src->cache;
	uint64_t h = key_hash(src->tree_id, level, index), off;
	unsigned si = (unsigned)(h >> 60) % NSHARDS;
	struct shard *s = &c->shards[si];
	struct entry *e, *old;
	int ret;

	ret = block_offset(src, level, index, &off);
	if (ret)
		return ret;
	pthread_mutex_lock(&s->lock);
	e = shard_find(s, h, src->tree_id, level, index);
	if (e) {
		s->hits++;
		lend(s, e, out);
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	s->misses++;
	pthread_mutex_unlock(&s->lock);

	/* Read outside the lock: a miss must not stall the shard's other users. */
	e = calloc(1, sizeof(*e) + src->block_size);
	if (!e)
		return -ENOMEM;
	ret = mv_pread_exact(src->fd, e->data, src->block_size, off);
	if (ret) {
		free(e);
		return ret;
	}
	e->tree_id = src->tree_id;
	e->level = level;
	e->index = index;
	e->shard = si;
	e->size = src->block_size;

	pthread_mutex_lock(&s->lock);
	old = shard_find(s, h, src->tree_id, level, index);
	if (old) {
		/* Another thread read it first; keep its copy (it may be verified). */
		lend(s, old, out);
		pthread_mutex_unlock(&s->lock);
		free(e);
		return 0;
	}
	e->hnext = s->buckets[h & (s->nbuckets - 1)];
	s->buckets[h & (s->nbuckets - 1)] = e;
	lru_push_front(s, e);
	e->refs = 0;
	lend(s, e, out);
	s->bytes += entry_charge(e);
	s->entries++;
	shard_evict(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static void hb_put(void *ctx, struct mv_hblock *hb)
{
	struct mc_hblock_src *src = ctx;
	struct entry *e = hb->priv;
	struct shard *s;

	if (!e)
		return;
	s = &src->cache->shards[e->shard];
	pthread_mutex_lock(&s->lock);
	if (--e->refs == 0 && e->detached)
		free(e);
	pthread_mutex_unlock(&s->lock);
	hb->priv = NULL;
	hb->data = NULL;
}

static void hb_mark_verified(void *ctx, struct mv_hblock *hb)
{
	struct mc_hblock_src *src = ctx;
	struct entry *e = hb->priv;
	struct shard *s;

	if (!e)
		return;
	s = &src->cache->shards[e->shard];
	pthread_mutex_lock(&s->lock);
	e->verified = true;
	pthread_mutex_unlock(&s->lock);
	hb->verified = true;
}

const struct mv_hblock_ops mc_hblock_ops = {
    .get = hb_get,
    .put = hb_put,
    .mark_verified = hb_mark_verified,
};

void mc_hblock_cache_drop_tree(struct mc_hblock_cache *c, uint64_t tree_id)
{
	for (unsigned i = 0; i < NSHARDS; i++) {
		struct shard *s = &c->shards[i];
		struct lru_link *l, *next;

		pthread_mutex_lock(&s->lock);
		for (l = s->lru.next; l != &s->lru; l = next) {
			next = l->next;
			if (lru_entry(l)->tree_id == tree_id)
				shard_remove(s, lru_entry(l));
		}
		pthread_mutex_unlock(&s->lock);
	}
}

void mc_hblock_cache_stats(struct mc_hblock_cache *c, struct mc_hblock_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->max_bytes = c->max_bytes;
	for (unsigned i = 0; i < NSHARDS; i++) {
		struct shard *s = &c->shards[i];

		pthread_mutex_lock(&s->lock);
		out->hits += s->hits;
		out->misses += s->misses;
		out->evictions += s->evictions;
		out->entries += s->entries;
		out->bytes += s->bytes;
		pthread_mutex_unlock(&s->lock);
	}
}
