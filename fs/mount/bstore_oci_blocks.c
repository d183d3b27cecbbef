// SPDX-License-Identifier: Apache-2.0
/*
 * bstore_oci_blocks.c - the remote block cache of an oci:// store
 * (--remote-cache-size; docs/remote.md, "Lazy mount", "The remote block
 * cache"): the bytes of layer blobs fetched by reads, kept on local disk in
 * the cache folder and shared by every mount of this cache folder, keyed by
 * the blob's digest:
 *
 *   CACHE/oci-blobs/lock                   flock: open shared, evict exclusive
 *   CACHE/oci-blobs/sha256/<hex>.data      sparse, the blob's size
 *   CACHE/oci-blobs/sha256/<hex>.map       64-byte header, then one byte per
 *                                          MFS_RC_CHUNK of the blob: 1 present
 *
 * A miss fetches whole chunks (a 4 KiB read fills one 64 KiB chunk), writes
 * them to the data file with pwrite, then sets their map bytes with one
 * pwrite: a crash leaves at worst a chunk written but unmarked. Map bytes
 * are whole bytes, so two daemons filling one blob never read-modify-write
 * each other's marks. A data file and its map are opened together under a
 * shared flock of CACHE/oci-blobs/lock and removed together under an
 * exclusive one, so a pair held open is always one pair. Eviction removes
 * least recently used whole blobs (the map's mtime: written at each fill,
 * touched at most once a minute by hits) once the bytes on disk pass the
 * bound, down to 7/8 of it. A sequential reader's next window is fetched
 * ahead of it by one background thread per cache (rc_ahead_*()).
 *
 * Nothing read from here is trusted: the bytes go up to vread.c, which
 * verifies every block against the signed Merkle tree as for a fetched one.
 * A damaged chunk fails there; vread.c then asks the store to forget it
 * (mfs_rcache_forget(), through mfs_bstore_refetch()) and reads once more,
 * so the chunk is fetched from the registry again: the reader gets the
 * right bytes, or EIO if the registry's are wrong too, never wrong bytes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bstore_oci_int.h"
#include "fsremote.h"
#include "mount_int.h"

#define MFS_RC_CHUNK  (64u << 10)          /* bytes per map byte; fills are aligned to it */
#define RC_RUN_MAX    (64u * MFS_RC_CHUNK) /* bytes per disk read, and per fetch of a read: 4 MiB */
#define RC_SEQ_MAX    (256u * MFS_RC_CHUNK) /* a sequential reader's fetch, at most: 16 MiB */
#define RC_HDR_LEN    64u                   /* the map's header */
#define RC_MAGIC      "MFSRBC1\n"           /* the map's first 8 bytes */
#define RC_TOUCH_SECS 60                    /* a hit touches its map at most this often */
#define RC_HEX_LEN    64u                   /* a sha256 digest in hex */
#define RC_AHEAD_Q    32u                   /* background fills queued, at most */
#define RC_FLY        4u                    /* fills of one blob in flight at once */
#define RC_CTX_MAX    2048u                 /* bytes of a fetch context copied for one */
#define RC_SCAN_MAX   (1u << 20)            /* blobs an eviction scan considers */

/* The map's header, in host byte order. */
struct rc_hdr {
	char magic[8];
	uint32_t chunk;
	uint32_t zero;
	uint64_t size;
	char pad[RC_HDR_LEN - 24];
};

/* One blob slot (a layer of the model): its open pair of files. */
struct rc_blob {
	pthread_rwlock_t lock; /* readers share it; opening and reopening take it alone */
	int data_fd, map_fd;   /* -1: not open */
	bool bypass;           /* not cached (bad digest, too big, unusable files) */
	bool stale;            /* our pair was removed: reopen at next use */
	/*
	 * The fills in flight (rc_fill_run(), rc_ahead_run()), under fill_lock:
	 * at most RC_FLY per blob, over chunks no other covers.
	 */
	pthread_mutex_t fill_lock;
	pthread_cond_t fill_done;
	unsigned n_fly;
	uint64_t fly_c0[RC_FLY], fly_c1[RC_FLY]; /* their chunks; c1 == 0: a free entry */
	uint64_t next_seq;   /* the chunk after the last fill: a miss there is sequential */
	uint64_t seq_chunks; /* that fill's length, doubled by each sequential miss */
	bool seq;            /* that fill was sequential: a reader goes through the blob */
	unsigned gen;        /* rc->gen when the pair was opened */
	time_t touched;      /* when the map's mtime was last set by us */
	unsigned epoch;      /* bumped when the slot is released: queued fills lapse */
	bool ahead_queued;   /* a background fill of this blob is queued (fill_lock) */
};

/* A background fill: chunks [c0, c1) of the blob in @slot, fetched ahead of its reader. */
struct rc_ahead {
	size_t slot;
	unsigned epoch;
	char digest[MFR_DIGEST_LEN + 1];
	uint64_t size, c0, c1;
	mfs_rcache_fetch_fn fetch;
	size_t ctx_len;
	unsigned char ctx[RC_CTX_MAX]; /* a copy of the reader's fetch context */
};

struct mfs_rcache {
	struct mfs_mount *m;
	uint64_t limit;
	int top_fd;                 /* CACHE/oci-blobs */
	int dir_fd;                 /* CACHE/oci-blobs/sha256 */
	pthread_mutex_t evict_lock; /* one eviction scan at a time in this daemon */
	pthread_rwlock_t open_lock; /* opens share it, a scan takes it alone */
	uint64_t used;              /* bytes on disk, estimated (atomic) */
	unsigned gen;               /* bumped by a scan that removed files (atomic) */
	size_t n;
	struct rc_blob *blobs;
	/* The background fill (rc_ahead_thread()): one thread, started at first use. */
	pthread_mutex_t ahead_lock;
	pthread_cond_t ahead_cond;
	pthread_t ahead_thread;
	bool ahead_started, ahead_stop;
	unsigned ahead_head, ahead_n;
	struct rc_ahead *ahead_q; /* RC_AHEAD_Q entries, a ring */
};

/* One blob seen by an eviction scan. */
struct rc_seen {
	struct timespec mtime;
	uint64_t bytes;
	char hex[RC_HEX_LEN + 1];
};

/* Takes the cross-daemon lock of CACHE/oci-blobs (@op: LOCK_SH or LOCK_EX). fd or -errno. */
static int rc_flock(struct mfs_rcache *rc, int op)
{
	int fd = openat(rc->top_fd, "lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);

	if (fd < 0)
		return -errno;
	while (flock(fd, op) != 0) {
		if (errno != EINTR) {
			int ret = -errno;

			close(fd);
			return ret;
		}
	}
	return fd; /* a descriptor of its own: threads never share or convert its lock */
}

/* Bytes a file takes on disk. */
static uint64_t disk_bytes(const struct stat *st)
{
	return (uint64_t)st->st_blocks * 512u;
}

/* Orders blobs oldest first (by mtime), for qsort. */
static int seen_cmp(const void *a, const void *b)
{
	const struct rc_seen *x = a, *y = b;

	if (x->mtime.tv_sec != y->mtime.tv_sec)
		return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
	if (x->mtime.tv_nsec != y->mtime.tv_nsec)
		return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
	return 0;
}

/* Is @name "<64 hex>.data"? */
static bool data_name(const char *name)
{
	return strlen(name) == RC_HEX_LEN + 5 && strspn(name, "0123456789abcdef") == RC_HEX_LEN &&
	       !strcmp(name + RC_HEX_LEN, ".data");
}

/**
 * rc_scan() - measure CACHE/oci-blobs/sha256 and evict LRU blobs over the bound
 * @rc: in/out: rc->used set to what is left on disk
 * Takes the exclusive flock (no daemon opens a pair meanwhile), lists the
 * data files, orders them by their map's mtime (the data's when the map is
 * missing) and removes map then data of the oldest until the bytes are at
 * most 7/8 of the bound. Return: 0 or -errno (logged by the caller).
 */
static int rc_scan(struct mfs_rcache *rc)
{
	uint64_t total = 0, low = rc->limit - rc->limit / 8;
	struct rc_seen *seen = NULL, *grown;
	size_t n = 0, cap = 0, evicted = 0;
	struct dirent *de;
	DIR *dir = NULL;
	int lfd, dfd, ret = 0;

	lfd = rc_flock(rc, LOCK_EX);
	if (lfd < 0)
		return lfd;
	pthread_rwlock_wrlock(&rc->open_lock);
	dfd = dup(rc->dir_fd);
	if (dfd < 0 || !(dir = fdopendir(dfd))) {
		ret = -errno;
		if (dfd >= 0)
			close(dfd);
		goto out;
	}
	rewinddir(dir);
	while ((de = readdir(dir)) && n < RC_SCAN_MAX) {
		char map[RC_HEX_LEN + 8];
		struct stat st, ms;

		if (!data_name(de->d_name) ||
		    fstatat(rc->dir_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			grown = reallocarray(seen, cap, sizeof(*seen));
			if (!grown) {
				ret = -ENOMEM;
				goto out;
			}
			seen = grown;
		}
		memcpy(seen[n].hex, de->d_name, RC_HEX_LEN);
		seen[n].hex[RC_HEX_LEN] = '\0';
		seen[n].bytes = disk_bytes(&st);
		seen[n].mtime = st.st_mtim;
		snprintf(map, sizeof(map), "%s.map", seen[n].hex);
		if (fstatat(rc->dir_fd, map, &ms, AT_SYMLINK_NOFOLLOW) == 0) {
			seen[n].bytes += disk_bytes(&ms);
			seen[n].mtime = ms.st_mtim;
		}
		total += seen[n].bytes;
		n++;
	}
	if (n)
		qsort(seen, n, sizeof(*seen), seen_cmp);
	for (size_t i = 0; i < n && total > low; i++) {
		char name[RC_HEX_LEN + 8];

		snprintf(name, sizeof(name), "%s.map", seen[i].hex);
		if (unlinkat(rc->dir_fd, name, 0) != 0 && errno != ENOENT)
			continue;
		snprintf(name, sizeof(name), "%s.data", seen[i].hex);
		unlinkat(rc->dir_fd, name, 0);
		total -= seen[i].bytes;
		evicted++;
	}
	__atomic_store_n(&rc->used, total, __ATOMIC_RELAXED);
	if (evicted) {
		__atomic_add_fetch(&rc->gen, 1, __ATOMIC_RELEASE);
		mfs_count(&rc->m->ctr.remote_cache_evictions, evicted);
	}
out:
	if (dir)
		closedir(dir);
	free(seen);
	pthread_rwlock_unlock(&rc->open_lock);
	close(lfd);
	return ret;
}

/* Runs an eviction scan when the bytes on disk passed the bound (one thread at a time). */
static void rc_maybe_evict(struct mfs_rcache *rc)
{
	int ret;

	if (__atomic_load_n(&rc->used, __ATOMIC_RELAXED) <= rc->limit ||
	    pthread_mutex_trylock(&rc->evict_lock) != 0)
		return;
	ret = rc_scan(rc);
	pthread_mutex_unlock(&rc->evict_lock);
	if (ret)
		mfs_log(LOG_WARNING, "remote-cache-warning path=%s/oci-blobs reason=\"evict: %s\"",
		        rc->m->cache_base, strerror(-ret));
}

/* Is @digest "sha256:" and 64 lowercase hex digits (a safe file name)? */
static bool digest_ok(const char *digest)
{
	return !strncmp(digest, "sha256:", 7) && strlen(digest + 7) == RC_HEX_LEN &&
	       strspn(digest + 7, "0123456789abcdef") == RC_HEX_LEN;
}

/* Closes @b's pair, if open. */
static void blob_close(struct rc_blob *b)
{
	if (b->data_fd >= 0)
		close(b->data_fd);
	if (b->map_fd >= 0)
		close(b->map_fd);
	b->data_fd = b->map_fd = -1;
}

/* Is map @fd's header the one of a blob of @size bytes? */
static bool map_ok(int fd, uint64_t size)
{
	struct rc_hdr h;

	return mv_pread_full(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h) &&
	       !memcmp(h.magic, RC_MAGIC, 8) && h.chunk == MFS_RC_CHUNK && h.size == size;
}

/**
 * map_create() - @hex.map for a blob of @size bytes, unless another daemon made it first
 * Written to an O_EXCL temporary file, then linked to its name (a link never
 * replaces a file). Return: the map's fd, or -errno.
 */
static int map_create(struct mfs_rcache *rc, const char *hex, uint64_t size)
{
	static unsigned seq;
	struct rc_hdr h = {.chunk = MFS_RC_CHUNK, .size = size};
	char tmp[RC_HEX_LEN + 48], name[RC_HEX_LEN + 8];
	uint64_t len = RC_HDR_LEN + (size + MFS_RC_CHUNK - 1) / MFS_RC_CHUNK;
	int fd, ret = 0;

	memcpy(h.magic, RC_MAGIC, 8);
	snprintf(name, sizeof(name), "%s.map", hex);
	snprintf(tmp, sizeof(tmp), ".%s.map.%d.%u", hex, (int)getpid(),
	         __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED));
	fd = openat(rc->dir_fd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	ret = mv_pwrite_full(fd, &h, sizeof(h), 0);
	if (!ret && ftruncate(fd, (off_t)len) != 0)
		ret = -errno;
	if (!ret && linkat(rc->dir_fd, tmp, rc->dir_fd, name, 0) != 0) {
		ret = -errno;
		if (ret == -EEXIST) {
			close(fd);
			fd = openat(rc->dir_fd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
			ret = fd < 0 ? -errno : 0;
		}
	}
	unlinkat(rc->dir_fd, tmp, 0);
	if (ret && fd >= 0)
		close(fd);
	return ret ? ret : fd;
}

/**
 * blob_open() - open (creating them) @d's data file and map, under the shared flock
 * @b: in/out: b->data_fd, b->map_fd; b->bypass when the files cannot be used
 * Caller holds b->lock alone. Return: 0 or -errno (b->bypass is then set).
 */
static int blob_open(struct mfs_rcache *rc, struct rc_blob *b, const struct mfr_desc *d)
{
	char name[RC_HEX_LEN + 8];
	const char *hex = d->digest + 7;
	struct stat st;
	int lfd, ret = 0;

	blob_close(b);
	lfd = rc_flock(rc, LOCK_SH);
	if (lfd < 0)
		goto fail;
	pthread_rwlock_rdlock(&rc->open_lock);
	snprintf(name, sizeof(name), "%s.data", hex);
	b->data_fd = openat(rc->dir_fd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (b->data_fd < 0 || fstat(b->data_fd, &st) != 0) {
		ret = -errno;
	} else if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
	           (st.st_size && (uint64_t)st.st_size != d->size)) {
		ret = -EPERM; /* not ours, or not this blob's: left alone */
	} else if (!st.st_size && ftruncate(b->data_fd, (off_t)d->size) != 0) {
		ret = -errno;
	}
	if (!ret) {
		snprintf(name, sizeof(name), "%s.map", hex);
		b->map_fd = openat(rc->dir_fd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
		if (b->map_fd < 0 && errno == ENOENT)
			b->map_fd = map_create(rc, hex, d->size);
		else if (b->map_fd < 0)
			b->map_fd = -errno;
		ret = b->map_fd < 0 ? b->map_fd : map_ok(b->map_fd, d->size) ? 0 : -EBADMSG;
		if (b->map_fd < 0)
			b->map_fd = -1;
	}
	pthread_rwlock_unlock(&rc->open_lock);
	close(lfd);
	lfd = ret;
fail:
	if (!lfd)
		return 0;
	blob_close(b);
	b->bypass = true;
	mfs_log(LOG_WARNING,
	        "remote-cache-warning path=%s/oci-blobs/sha256/%s reason=\"not cached: %s\"",
	        rc->m->cache_base, hex, strerror(-lfd));
	return lfd;
}

/**
 * blob_get() - @b ready for a read: opened, reopened if removed, touched
 * @b: in/out: returned read-locked (b->lock) unless b->bypass
 * Return: true when the cache can be used for this blob.
 */
static bool blob_get(struct mfs_rcache *rc, struct rc_blob *b, const struct mfr_desc *d)
{
	time_t now = time(NULL);
	unsigned gen = __atomic_load_n(&rc->gen, __ATOMIC_ACQUIRE);
	struct stat st;

	pthread_rwlock_rdlock(&b->lock);
	if (!b->bypass && b->map_fd >= 0 && !__atomic_load_n(&b->stale, __ATOMIC_RELAXED) &&
	    b->gen == gen && now - b->touched < RC_TOUCH_SECS)
		return true;
	pthread_rwlock_unlock(&b->lock);
	pthread_rwlock_wrlock(&b->lock);
	if (!digest_ok(d->digest) || !d->size || d->size > rc->limit)
		b->bypass = true; /* an odd name, nothing to keep, or bigger than the cache */
	if (!b->bypass && b->map_fd >= 0 && (b->stale || b->gen != gen) &&
	    (fstat(b->map_fd, &st) != 0 || st.st_nlink == 0))
		blob_close(b); /* evicted: a new pair */
	if (!b->bypass && b->map_fd < 0)
		blob_open(rc, b, d);
	b->gen = gen;
	b->stale = false;
	if (!b->bypass && now - b->touched >= RC_TOUCH_SECS) {
		futimens(b->map_fd, NULL); /* the LRU's clock: at most once a minute */
		b->touched = now;
	}
	pthread_rwlock_unlock(&b->lock);
	pthread_rwlock_rdlock(&b->lock);
	if (!b->bypass && b->map_fd >= 0)
		return true;
	pthread_rwlock_unlock(&b->lock);
	return false;
}

/**
 * rc_fill() - fetch chunks [@c0, @c1) of @d, store them, copy [@off, +@len) of them to @out
 * @b: in: read-locked, its pair open
 * @out: out: the bytes asked, or NULL (a background fill: nothing asked)
 * Return: 0 or the fetch's negative errno. A failed write to the cache is
 * logged once and the bytes served anyway.
 */
static int rc_fill(struct mfs_rcache *rc, struct rc_blob *b, const struct mfr_desc *d, uint64_t c0,
                   uint64_t c1, uint8_t *out, size_t len, uint64_t off, mfs_rcache_fetch_fn fetch,
                   void *ctx)
{
	static bool warned;
	uint64_t start = c0 * MFS_RC_CHUNK, end = c1 * MFS_RC_CHUNK;
	uint8_t marks[RC_SEQ_MAX / MFS_RC_CHUNK];
	struct stat st;
	uint8_t *tmp;
	int ret;

	if (end > d->size)
		end = d->size;
	tmp = malloc((size_t)(end - start));
	if (!tmp)
		return -ENOMEM;
	ret = fetch(ctx, d, tmp, (size_t)(end - start), start);
	if (ret)
		goto out;
	if (out) /* NULL: a background fill, for the cache only */
		memcpy(out, tmp + (off - start), len);
	mfs_count(&rc->m->ctr.remote_cache_misses, c1 - c0);
	/* Removed by another daemon meanwhile: do not fill an unlinked pair. */
	if (fstat(b->map_fd, &st) != 0 || st.st_nlink == 0) {
		__atomic_store_n(&b->stale, true, __ATOMIC_RELAXED);
		goto out;
	}
	memset(marks, 1, sizeof(marks));
	ret = mv_pwrite_full(b->data_fd, tmp, (size_t)(end - start), start);
	if (!ret)
		ret = mv_pwrite_full(b->map_fd, marks, (size_t)(c1 - c0), RC_HDR_LEN + c0);
	if (ret && !__atomic_exchange_n(&warned, true, __ATOMIC_RELAXED))
		mfs_log(LOG_WARNING,
		        "remote-cache-warning path=%s/oci-blobs/sha256/%s reason=\"write: %s\"",
		        rc->m->cache_base, d->digest + 7, strerror(-ret));
	if (!ret)
		__atomic_add_fetch(&rc->used, end - start + (c1 - c0), __ATOMIC_RELAXED);
	ret = 0;
out:
	free(tmp);
	return ret;
}

/*
 * rc_widen() - the chunks a miss at [@c0, @c1) fetches: more for a sequential reader
 * Why: a registry's cost is per request (ranged GETs of 1 MiB, what one FUSE
 * READ asks, ran at 0.25 x the whole blob's rate over loopback TLS; 8 MiB at
 * 0.74 x: docs/performance.md, "Remote"). A miss that starts where the
 * blob's last fill ended fetches twice as much as that fill did, up to
 * RC_SEQ_MAX, over chunks still missing, into the cache, where the reader's
 * next READs find them. A first or random miss fetches what it needs, so
 * that format detection and a random reader fetch no more than before.
 * Under @b->fill_lock. Return: the end chunk of the fill.
 */
static uint64_t rc_widen(struct rc_blob *b, const struct mfr_desc *d, uint64_t c0, uint64_t c1)
{
	uint64_t n_chunks = (d->size + MFS_RC_CHUNK - 1) / MFS_RC_CHUNK, want, end;
	uint8_t marks[RC_SEQ_MAX / MFS_RC_CHUNK];
	ssize_t got;

	if (c0 != b->next_seq || !b->seq_chunks)
		return c1;
	want = 2 * b->seq_chunks;
	if (want > RC_SEQ_MAX / MFS_RC_CHUNK)
		want = RC_SEQ_MAX / MFS_RC_CHUNK;
	end = c0 + want < n_chunks ? c0 + want : n_chunks;
	if (end <= c1)
		return c1;
	got = mv_pread_full(b->map_fd, marks, (size_t)(end - c1), RC_HDR_LEN + c1);
	for (ssize_t i = 0; i < (got > 0 ? got : 0); i++)
		if (marks[i] == 1)
			return c1 + (uint64_t)i; /* stop at the first chunk already there */
	return end;
}

/* Is a chunk of [@c0, @c1) marked present in @b's map now? (Under fill_lock.) */
static bool rc_any_present(struct rc_blob *b, uint64_t c0, uint64_t c1)
{
	uint8_t marks[RC_RUN_MAX / MFS_RC_CHUNK];
	size_t n = c1 - c0 < sizeof(marks) ? (size_t)(c1 - c0) : sizeof(marks);
	ssize_t got = mv_pread_full(b->map_fd, marks, n, RC_HDR_LEN + c0);

	for (ssize_t i = 0; i < got; i++)
		if (marks[i] == 1)
			return true;
	return false;
}

/* Does a fill in flight cover a chunk of [@c0, @c1)? (Under fill_lock.) */
static bool fly_overlaps(const struct rc_blob *b, uint64_t c0, uint64_t c1)
{
	for (unsigned i = 0; i < RC_FLY; i++)
		if (b->fly_c1[i] && c0 < b->fly_c1[i] && b->fly_c0[i] < c1)
			return true;
	return false;
}

/* @end, cut where a fill in flight after @c0 starts: no chunk is fetched twice. */
static uint64_t fly_clamp(const struct rc_blob *b, uint64_t c0, uint64_t end)
{
	for (unsigned i = 0; i < RC_FLY; i++)
		if (b->fly_c1[i] && b->fly_c0[i] >= c0 && b->fly_c0[i] < end)
			end = b->fly_c0[i];
	return end;
}

/* Records fill [@c0, @c1) in flight (a free entry exists). Return: its entry. */
static unsigned fly_add(struct rc_blob *b, uint64_t c0, uint64_t c1)
{
	unsigned i = 0;

	while (b->fly_c1[i])
		i++;
	b->fly_c0[i] = c0;
	b->fly_c1[i] = c1;
	b->n_fly++;
	return i;
}

/* Fill @i ended: its chunks are marked (or failed); waiters read the map again. */
static void fly_done(struct rc_blob *b, unsigned i)
{
	b->fly_c0[i] = b->fly_c1[i] = 0;
	b->n_fly--;
	pthread_cond_broadcast(&b->fill_done);
}

/*
 * rc_fill_run() - fill the missing run [@c0, @c1) that a read needs
 * @b: in: read-locked, its pair open
 * Waits for a fill in flight over these chunks (another READ's, or the
 * background fill's); widened for a sequential reader, but never over a
 * chunk another fill is fetching, so no chunk is fetched twice.
 * Return: 0 and the run's bytes [@off, +@len) in @out; 1 when the chunks
 * were filled meanwhile (the caller reads the map again); or the fetch's
 * negative errno.
 */
static int rc_fill_run(struct mfs_rcache *rc, struct rc_blob *b, const struct mfr_desc *d,
                       uint64_t c0, uint64_t c1, uint8_t *out, size_t len, uint64_t off,
                       mfs_rcache_fetch_fn fetch, void *ctx)
{
	uint64_t end;
	bool waited = false;
	unsigned slot;
	int ret;

	pthread_mutex_lock(&b->fill_lock);
	while (fly_overlaps(b, c0, c1) || b->n_fly == RC_FLY) {
		pthread_cond_wait(&b->fill_done, &b->fill_lock);
		waited = true;
	}
	if (waited || rc_any_present(b, c0, c1)) {
		/* Filled meanwhile (a background fill may end between the caller's map
		 * read and here): read the map again rather than fetch twice. */
		pthread_mutex_unlock(&b->fill_lock);
		return 1;
	}
	end = fly_clamp(b, c0, rc_widen(b, d, c0, c1));
	slot = fly_add(b, c0, end);
	pthread_mutex_unlock(&b->fill_lock);

	ret = rc_fill(rc, b, d, c0, end, out, len, off, fetch, ctx);

	pthread_mutex_lock(&b->fill_lock);
	b->seq = c0 == b->next_seq;
	b->seq_chunks = b->seq ? end - c0 : c1 - c0;
	b->next_seq = end;
	fly_done(b, slot);
	pthread_mutex_unlock(&b->fill_lock);
	return ret;
}

/* ---- the background fill: a window ahead of a sequential reader ---- */

/*
 * rc_ahead_run() - one background fill
 * Why: a fill on the reader's own READ stalls it for the whole GET (16 MiB
 * at the most); fetched while the reader consumes the window before, the
 * transfer overlaps the verification and the FUSE copies of those bytes,
 * and the registry sends back-to-back. Only a blob whose pair a reader
 * opened, under the same slot (@j->epoch), and only when no other fill of
 * it is in flight; it stops at the first chunk already there. A failure is
 * dropped: the reader's own miss fetches those chunks and meets the error.
 */
static void rc_ahead_run(struct mfs_rcache *rc, struct rc_ahead *j)
{
	struct rc_blob *b = &rc->blobs[j->slot];
	struct mfr_desc d = {.size = j->size};
	uint8_t marks[RC_SEQ_MAX / MFS_RC_CHUNK];
	uint64_t c1 = j->c0;
	unsigned fly;
	ssize_t got;
	int ret;

	memcpy(d.digest, j->digest, sizeof(d.digest));
	pthread_rwlock_rdlock(&b->lock);
	pthread_mutex_lock(&b->fill_lock);
	b->ahead_queued = b->epoch == j->epoch ? false : b->ahead_queued;
	if (b->epoch != j->epoch || b->bypass || b->map_fd < 0 || b->n_fly == RC_FLY ||
	    fly_overlaps(b, j->c0, j->c0 + 1) || __atomic_load_n(&b->stale, __ATOMIC_RELAXED))
		goto out;
	got = mv_pread_full(b->map_fd, marks, (size_t)(j->c1 - j->c0), RC_HDR_LEN + j->c0);
	while (c1 < j->c1 && (ssize_t)(c1 - j->c0) < got && marks[c1 - j->c0] != 1)
		c1++;
	c1 = fly_clamp(b, j->c0, c1);
	if (c1 == j->c0)
		goto out;
	fly = fly_add(b, j->c0, c1);
	pthread_mutex_unlock(&b->fill_lock);
	ret = rc_fill(rc, b, &d, j->c0, c1, NULL, 0, 0, j->fetch, j->ctx);
	pthread_mutex_lock(&b->fill_lock);
	if (!ret) {
		b->seq = true;
		b->seq_chunks = c1 - j->c0;
		b->next_seq = c1;
		mfs_count(&rc->m->ctr.remote_cache_ahead, c1 - j->c0);
	}
	fly_done(b, fly);
out:
	pthread_mutex_unlock(&b->fill_lock);
	pthread_rwlock_unlock(&b->lock);
}

/* The background fill's thread: runs queued fills in order until mfs_rcache_free(). */
static void *rc_ahead_thread(void *arg)
{
	struct mfs_rcache *rc = arg;
	struct rc_ahead *j = malloc(sizeof(*j));

	pthread_mutex_lock(&rc->ahead_lock);
	while (j) {
		while (!rc->ahead_stop && !rc->ahead_n)
			pthread_cond_wait(&rc->ahead_cond, &rc->ahead_lock);
		if (rc->ahead_stop)
			break;
		*j = rc->ahead_q[rc->ahead_head];
		rc->ahead_head = (rc->ahead_head + 1) % RC_AHEAD_Q;
		rc->ahead_n--;
		pthread_mutex_unlock(&rc->ahead_lock);
		rc_ahead_run(rc, j);
		pthread_mutex_lock(&rc->ahead_lock);
	}
	pthread_mutex_unlock(&rc->ahead_lock);
	free(j);
	return NULL;
}

/* Queues @j, starting the thread at first use. Return: whether it was queued. */
static bool rc_ahead_push(struct mfs_rcache *rc, const struct rc_ahead *j)
{
	bool ok = false;

	pthread_mutex_lock(&rc->ahead_lock);
	if (!rc->ahead_started && !rc->ahead_stop)
		rc->ahead_started =
		    mfs_start_thread(&rc->ahead_thread, rc_ahead_thread, rc, "remote-fill");
	if (rc->ahead_started && !rc->ahead_stop && rc->ahead_n < RC_AHEAD_Q) {
		rc->ahead_q[(rc->ahead_head + rc->ahead_n) % RC_AHEAD_Q] = *j;
		rc->ahead_n++;
		pthread_cond_signal(&rc->ahead_cond);
		ok = true;
	}
	pthread_mutex_unlock(&rc->ahead_lock);
	return ok;
}

/*
 * rc_ahead_maybe() - after a read ending at @end of blob @d: queue the next window?
 * @b: in: read-locked, its pair open
 * Yes when the last fill was sequential (it began where the one before
 * ended: a random reader, or the head reads of format detection, never
 * start one), the read lies in the window it made, nothing is queued or in
 * flight for the blob, and the blob goes on: the next window, twice the last (at most RC_SEQ_MAX),
 * from where the last fill ended. @ctx (@ctx_len bytes; 0: no background fill) is copied: it may
 * point only at what lives as long as the cache.
 */
static void rc_ahead_maybe(struct mfs_rcache *rc, struct rc_blob *b, size_t slot,
                           const struct mfr_desc *d, uint64_t end, mfs_rcache_fetch_fn fetch,
                           const void *ctx, size_t ctx_len)
{
	uint64_t n_chunks = (d->size + MFS_RC_CHUNK - 1) / MFS_RC_CHUNK,
		 e = (end - 1) / MFS_RC_CHUNK;
	struct rc_ahead *j;
	uint64_t want;
	bool go;

	if (!ctx_len || ctx_len > RC_CTX_MAX || !end)
		return;
	pthread_mutex_lock(&b->fill_lock);
	go = b->seq && !b->n_fly && !b->ahead_queued && b->seq_chunks && b->next_seq < n_chunks &&
	     e < b->next_seq && e + b->seq_chunks >= b->next_seq;
	if (go)
		b->ahead_queued = true;
	want = 2 * b->seq_chunks < RC_SEQ_MAX / MFS_RC_CHUNK ? 2 * b->seq_chunks
	                                                     : RC_SEQ_MAX / MFS_RC_CHUNK;
	pthread_mutex_unlock(&b->fill_lock);
	if (!go)
		return;
	j = malloc(sizeof(*j));
	if (j) {
		j->slot = slot;
		j->epoch = b->epoch;
		memcpy(j->digest, d->digest, sizeof(j->digest));
		j->size = d->size;
		j->c0 = b->next_seq;
		j->c1 = j->c0 + want < n_chunks ? j->c0 + want : n_chunks;
		j->fetch = fetch;
		j->ctx_len = ctx_len;
		memcpy(j->ctx, ctx, ctx_len);
	}
	if (!j || !rc_ahead_push(rc, j)) {
		pthread_mutex_lock(&b->fill_lock);
		b->ahead_queued = false;
		pthread_mutex_unlock(&b->fill_lock);
	}
	free(j);
}

int mfs_rcache_read(struct mfs_rcache *rc, size_t slot, const struct mfr_desc *d, void *buf,
                    size_t len, uint64_t off, mfs_rcache_fetch_fn fetch, void *ctx, size_t ctx_len)
{
	uint8_t marks[RC_RUN_MAX / MFS_RC_CHUNK], *out = buf;
	uint64_t pos = off, end;
	struct rc_blob *b;
	int ret = 0;

	if (slot >= rc->n || off > d->size || len > d->size - off)
		return -EINVAL;
	b = &rc->blobs[slot];
	end = off + len;
	if (!blob_get(rc, b, d)) {
		for (; pos < end && !ret; pos += RC_RUN_MAX < end - pos ? RC_RUN_MAX : end - pos)
			ret = fetch(ctx, d, out + (pos - off),
			            (size_t)(RC_RUN_MAX < end - pos ? RC_RUN_MAX : end - pos), pos);
		return ret;
	}
	while (pos < end && !ret) {
		uint64_t c0 = pos / MFS_RC_CHUNK, last = (end - 1) / MFS_RC_CHUNK, c1 = c0 + 1;
		uint64_t stop;
		ssize_t got;
		size_t n;

		if (last - c0 >= RC_RUN_MAX / MFS_RC_CHUNK)
			last = c0 + RC_RUN_MAX / MFS_RC_CHUNK - 1;
		got = mv_pread_full(b->map_fd, marks, (size_t)(last - c0 + 1), RC_HDR_LEN + c0);
		if (got < 0)
			got = 0;
		memset(marks + got, 0, (size_t)(last - c0 + 1) - (size_t)got);
		while (c1 <= last && (marks[c1 - c0] == 1) == (marks[0] == 1))
			c1++;
		stop = c1 * MFS_RC_CHUNK < end ? c1 * MFS_RC_CHUNK : end;
		n = (size_t)(stop - pos);
		if (marks[0] == 1 &&
		    mv_pread_full(b->data_fd, out + (pos - off), n, pos) == (ssize_t)n) {
			mfs_count(&rc->m->ctr.remote_cache_hits, c1 - c0);
			mfs_count(&rc->m->ctr.remote_cache_bytes, n);
		} else {
			ret = rc_fill_run(rc, b, d, c0, c1, out + (pos - off), n, pos, fetch, ctx);
			if (ret == 1) { /* another READ filled them: read the map again */
				ret = 0;
				continue;
			}
		}
		pos = stop;
	}
	if (!ret)
		rc_ahead_maybe(rc, b, slot, d, end, fetch, ctx, ctx_len);
	pthread_rwlock_unlock(&b->lock);
	rc_maybe_evict(rc);
	return ret;
}

int mfs_rcache_new(struct mfs_mount *m, uint64_t limit, size_t n_blobs, struct mfs_rcache **out)
{
	struct mfs_rcache *rc;
	int ret;

	*out = NULL;
	rc = calloc(1, sizeof(*rc));
	if (!rc || !(rc->blobs = calloc(n_blobs ? n_blobs : 1, sizeof(*rc->blobs)))) {
		free(rc);
		return -ENOMEM;
	}
	rc->m = m;
	rc->limit = limit;
	rc->n = n_blobs;
	rc->dir_fd = -1;
	rc->ahead_q = calloc(RC_AHEAD_Q, sizeof(*rc->ahead_q));
	if (!rc->ahead_q) {
		free(rc->blobs);
		free(rc);
		return -ENOMEM;
	}
	pthread_mutex_init(&rc->ahead_lock, NULL);
	pthread_cond_init(&rc->ahead_cond, NULL);
	pthread_mutex_init(&rc->evict_lock, NULL);
	pthread_rwlock_init(&rc->open_lock, NULL);
	for (size_t i = 0; i < n_blobs; i++) {
		pthread_rwlock_init(&rc->blobs[i].lock, NULL);
		pthread_mutex_init(&rc->blobs[i].fill_lock, NULL);
		pthread_cond_init(&rc->blobs[i].fill_done, NULL);
		rc->blobs[i].next_seq = UINT64_MAX; /* no fill yet: the first is not sequential */
		rc->blobs[i].data_fd = rc->blobs[i].map_fd = -1;
	}
	rc->top_fd = mfs_oci_own_dir(m->cache_base_fd, "oci-blobs");
	ret = rc->top_fd < 0 ? rc->top_fd : 0;
	if (!ret) {
		rc->dir_fd = mfs_oci_own_dir(rc->top_fd, "sha256");
		ret = rc->dir_fd < 0 ? rc->dir_fd : 0;
	}
	if (!ret) {
		rc->used = limit + 1; /* measured, and trimmed to the bound, now */
		rc_maybe_evict(rc);
		if (__atomic_load_n(&rc->used, __ATOMIC_RELAXED) > limit)
			ret = -EIO; /* the scan failed: logged */
	}
	if (ret) {
		mfs_log(LOG_WARNING,
		        "remote-cache-warning path=%s/oci-blobs reason=\"disabled: %s\"",
		        m->cache_base, strerror(-ret));
		mfs_rcache_free(rc);
		return 0;
	}
	*out = rc;
	return 0;
}

int mfs_rcache_forget(struct mfs_rcache *rc, size_t slot, const struct mfr_desc *d, uint64_t off,
                      uint64_t len)
{
	static const uint8_t zeros[RC_RUN_MAX / MFS_RC_CHUNK];
	uint8_t marks[RC_RUN_MAX / MFS_RC_CHUNK];
	uint64_t c, last;
	struct rc_blob *b;
	bool had = false;
	int ret = 0;

	if (!rc || slot >= rc->n || !len || off >= d->size || len > d->size - off)
		return 0;
	b = &rc->blobs[slot];
	if (!blob_get(rc, b, d))
		return 0; /* not cached: the bytes came from the registry */
	for (c = off / MFS_RC_CHUNK, last = (off + len - 1) / MFS_RC_CHUNK; c <= last && !ret;) {
		size_t n = last - c + 1 < sizeof(marks) ? (size_t)(last - c + 1) : sizeof(marks);
		ssize_t got = mv_pread_full(b->map_fd, marks, n, RC_HDR_LEN + c);

		for (ssize_t i = 0; i < got; i++)
			had |= marks[i] == 1;
		ret = mv_pwrite_full(b->map_fd, zeros, n, RC_HDR_LEN + c);
		c += n;
	}
	pthread_rwlock_unlock(&b->lock);
	if (had)
		mfs_log(LOG_WARNING,
		        "remote-cache-forget path=%s/oci-blobs/sha256/%s offset=%" PRIu64
		        " length=%" PRIu64 " reason=\"failed verification; fetched again\"",
		        rc->m->cache_base, d->digest + 7, off, len);
	if (ret)
		return ret;
	return had ? 1 : 0;
}

void mfs_rcache_free(struct mfs_rcache *rc)
{
	if (!rc)
		return;
	pthread_mutex_lock(&rc->ahead_lock);
	rc->ahead_stop = true; /* a fill in flight ends first: its GET is bounded by the timeouts */
	pthread_cond_broadcast(&rc->ahead_cond);
	pthread_mutex_unlock(&rc->ahead_lock);
	if (rc->ahead_started)
		pthread_join(rc->ahead_thread, NULL);
	pthread_mutex_destroy(&rc->ahead_lock);
	pthread_cond_destroy(&rc->ahead_cond);
	free(rc->ahead_q);
	for (size_t i = 0; i < rc->n; i++) {
		blob_close(&rc->blobs[i]);
		pthread_rwlock_destroy(&rc->blobs[i].lock);
		pthread_mutex_destroy(&rc->blobs[i].fill_lock);
		pthread_cond_destroy(&rc->blobs[i].fill_done);
	}
	if (rc->dir_fd >= 0)
		close(rc->dir_fd);
	if (rc->top_fd >= 0)
		close(rc->top_fd);
	pthread_mutex_destroy(&rc->evict_lock);
	pthread_rwlock_destroy(&rc->open_lock);
	free(rc->blobs);
	free(rc);
}

void mfs_rcache_release(struct mfs_rcache *rc, size_t slot)
{
	struct rc_blob *b;

	if (!rc || slot >= rc->n)
		return;
	b = &rc->blobs[slot];
	pthread_rwlock_wrlock(&b->lock); /* after any fill of the slot: they hold it read */
	blob_close(b);
	b->bypass = false;
	b->stale = false;
	b->touched = 0;
	b->epoch++; /* a fill still queued for the old blob lapses */
	pthread_mutex_lock(&b->fill_lock);
	b->next_seq = UINT64_MAX;
	b->seq_chunks = 0;
	b->seq = false;
	b->ahead_queued = false;
	pthread_mutex_unlock(&b->fill_lock);
	pthread_rwlock_unlock(&b->lock);
}
