// SPDX-License-Identifier: Apache-2.0
/*
 * bstore_oci.c - models in an OCI registry as a backing store (struct
 * mfs_bstore_ops, bstore.h): `modelfs mount oci://REGISTRY/REPO:TAG MNT`
 * or a store file of many references, the lazy mount (docs/remote.md,
 * "Lazy mount").
 *
 * The store is a virtual folder tree (bstore_oci_int.h): a root holding
 * each model folder at its path (one reference "oci://R/org/demo:v1":
 * STORE/org/demo/), holding model.sig and the layer files at their paths.
 * Each model folder belongs to one version of its model (struct oci_gen,
 * set up by bstore_oci_setup.c); when its tag moves, refresh links a new
 * folder of the new version at the same path and the old one stays
 * reachable through the handles that name it, so readers keep reading the
 * version they opened. A file's bytes are ranged GETs of its layer blob on
 * a small pool of registry clients per model: through the remote block
 * cache in the cache folder (bstore_oci_blocks.c, --remote-cache-size),
 * which fetches whole 64 KiB chunks on a miss, or, with the cache off, one
 * GET per pread() of exactly the range asked.
 *
 * Nothing here decides what is trusted: model.sig is verified against the
 * mount's trust set by store.c as for a local folder, tree headers against
 * the signed parameters and every block read against the signed Merkle
 * root (vread.c). A registry that lies gives EIO, never bad bytes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "bstore_oci_int.h"
#include "fsremote.h"
#include "mount_int.h"

#define OCI_READ_MAX (8u << 20) /* bytes per ranged GET of a pread */
#define OCI_TRIES    2          /* attempts of a ranged GET (a broken connection) */
#define OCI_DEV      0x6f6369u  /* st_dev of every entry ("oci") */

/* ---- the virtual store ---- */

/* The entry of handle @h (@idx: its index), or NULL when @h is not an open handle. */
static struct oci_ent *ent_of(const struct mfs_bstore *s, int h, size_t *idx)
{
	struct oci_store *o = s->priv;
	struct oci_ent *e = NULL;
	uint32_t v = 0;

	if (h < OCI_HANDLE_BASE || (unsigned)(h - OCI_HANDLE_BASE) >= OCI_MAX_HANDLES)
		return NULL;
	pthread_mutex_lock(&o->hlock);
	v = o->handles[h - OCI_HANDLE_BASE];
	pthread_mutex_unlock(&o->hlock);
	if (!v)
		return NULL;
	/* The handle keeps the entry's version alive: the pointer stays valid. */
	pthread_rwlock_rdlock(&o->ents_lock);
	e = o->ents[v - 1];
	pthread_rwlock_unlock(&o->ents_lock);
	if (idx)
		*idx = v - 1;
	return e;
}

int mfs_oci_handle_new(struct oci_store *o, size_t idx)
{
	int h = -EMFILE;

	pthread_mutex_lock(&o->hlock);
	for (uint32_t i = 0; i < OCI_MAX_HANDLES; i++) {
		if (o->handles[i])
			continue;
		o->handles[i] = (uint32_t)idx + 1;
		h = OCI_HANDLE_BASE + (int)i;
		break;
	}
	pthread_mutex_unlock(&o->hlock);
	return h;
}

size_t mfs_oci_child(const struct oci_store *o, size_t dir, const char *name, size_t len)
{
	for (size_t i = 1; i < o->n_ents; i++) {
		const struct oci_ent *e = o->ents[i];

		if (e && !e->gone && e->parent == dir && strlen(e->name) == len &&
		    !memcmp(e->name, name, len))
			return i;
	}
	return SIZE_MAX;
}

/* A free index of o->ents, growing it. Return: 0 or -ENOMEM. */
static int ent_slot(struct oci_store *o, size_t *idx)
{
	struct oci_ent **n;
	size_t cap;

	for (size_t i = 1; i < o->n_ents; i++)
		if (!o->ents[i]) {
			*idx = i;
			return 0;
		}
	if (o->n_ents == o->cap_ents) {
		cap = o->cap_ents ? o->cap_ents * 2 : 64;
		n = realloc(o->ents, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		o->ents = n;
		o->cap_ents = cap;
	}
	*idx = o->n_ents++;
	o->ents[*idx] = NULL;
	return 0;
}

int mfs_oci_ent_add(struct oci_store *o, size_t parent, const char *name, size_t len,
                    struct oci_gen *gen, const struct mfr_desc *layer, size_t layer_i, bool sig,
                    size_t *idx)
{
	size_t i = o->n_ents ? mfs_oci_child(o, parent, name, len) : SIZE_MAX;
	struct oci_ent *e;

	if (i != SIZE_MAX) {
		*idx = i;
		return o->ents[i]->dir && !layer && !sig ? 0 : -EEXIST;
	}
	e = calloc(1, sizeof(*e));
	if (!e || !(e->name = strndup(name, len)) || ent_slot(o, &i)) {
		if (e)
			free(e->name);
		free(e);
		return -ENOMEM;
	}
	e->parent = parent;
	e->ino = ++o->next_ino;
	e->dir = !layer && !sig;
	e->sig = sig;
	e->gen = gen;
	e->layer = layer;
	e->layer_i = layer_i;
	o->ents[i] = e;
	*idx = i;
	return 0;
}

void mfs_oci_ents_drop(struct oci_store *o, const struct oci_gen *g)
{
	for (size_t i = 1; i < o->n_ents; i++) {
		struct oci_ent *e = o->ents[i];

		if (e && e->gen == g) {
			free(e->name);
			free(e);
			o->ents[i] = NULL;
		}
	}
	while (o->n_ents > 1 && !o->ents[o->n_ents - 1])
		o->n_ents--;
}

bool mfs_oci_gen_in_use(struct oci_store *o, const struct oci_gen *g)
{
	bool used = false;

	pthread_mutex_lock(&o->hlock);
	for (uint32_t i = 0; i < OCI_MAX_HANDLES && !used; i++) {
		uint32_t v = o->handles[i];

		used = v && v - 1 < o->n_ents && o->ents[v - 1] && o->ents[v - 1]->gen == g;
	}
	pthread_mutex_unlock(&o->hlock);
	return used;
}

/*
 * mfs_bstore_ops.open: walks @rel from folder @dir one component at a time
 * ("." stays); never leaves the store (".." is refused). The lookup and the
 * new handle are under one read lock: the version found cannot be freed
 * between them.
 */
static int oci_open(const struct mfs_bstore *s, int dir, const char *rel, int flags)
{
	struct oci_store *o = s->priv;
	const char *p = rel;
	size_t cur;
	int ret;

	if (!ent_of(s, dir, &cur))
		return -EBADF;
	pthread_rwlock_rdlock(&o->ents_lock);
	for (ret = 0; *p && !ret;) {
		size_t l = strcspn(p, "/");

		if (!o->ents[cur]->dir)
			ret = -ENOTDIR;
		else if (l == 0 || (l == 2 && p[0] == '.' && p[1] == '.'))
			ret = -EINVAL;
		else if (!(l == 1 && p[0] == '.') &&
		         (cur = mfs_oci_child(o, cur, p, l)) == SIZE_MAX)
			ret = -ENOENT;
		p += l + (p[l] == '/');
	}
	if (!ret && (flags & O_DIRECTORY) && !o->ents[cur]->dir)
		ret = -ENOTDIR;
	if (!ret)
		ret = mfs_oci_handle_new(o, cur);
	pthread_rwlock_unlock(&o->ents_lock);
	return ret;
}

static int oci_packed_get(struct oci_store *o, struct oci_gen *g, const char *name);

/*
 * mfs_bstore_ops.open_local: what a model folder holds besides its files
 * (its trees, and the packed copies fetched for packed layers) is in the
 * cache folder, CACHE/oci/<hex>/model; nothing else is a descriptor of this
 * machine. A packed copy asked for and not there yet is fetched first.
 */
static int oci_open_local(const struct mfs_bstore *s, int dir, const char *rel, int flags)
{
	struct oci_ent *e = ent_of(s, dir, NULL);
	const size_t pl = sizeof(MV_PACKED_DIR); /* "MV_PACKED_DIR/" */
	int ret;

	if (!e)
		return -EBADF;
	if (!e->top || e->gen->model_fd < 0)
		return -ENOENT;
	ret = mfs_openat_nofollow(e->gen->model_fd, rel, flags);
	if (ret == -ENOENT && !strncmp(rel, MV_PACKED_DIR "/", pl) &&
	    !oci_packed_get(s->priv, e->gen, rel + pl))
		ret = mfs_openat_nofollow(e->gen->model_fd, rel, flags);
	return ret;
}

/* The size of entry @e: its layer's, or the bundle's. */
static uint64_t ent_size(const struct oci_ent *e)
{
	return e->sig ? e->gen->sig_len : e->layer ? e->layer->size : 0;
}

/* mfs_bstore_ops.stat: files 0444 of their descriptor's size, folders 0555, mtime 0. */
static int oci_stat(const struct mfs_bstore *s, int h, const char *name, struct stat *st)
{
	struct oci_store *o = s->priv;
	size_t cur = 0;
	struct oci_ent *e = ent_of(s, h, &cur);
	int ret = 0;

	if (!e)
		return -EBADF;
	pthread_rwlock_rdlock(&o->ents_lock);
	if (name) {
		if (!e->dir)
			ret = -ENOTDIR;
		else if ((cur = mfs_oci_child(o, cur, name, strlen(name))) == SIZE_MAX)
			ret = -ENOENT;
		else
			e = o->ents[cur];
	}
	if (!ret) {
		memset(st, 0, sizeof(*st));
		st->st_dev = OCI_DEV;
		st->st_ino = (ino_t)e->ino;
		st->st_uid = geteuid();
		st->st_gid = getegid();
		st->st_nlink = e->dir ? 2 : 1;
		st->st_mode = e->dir ? S_IFDIR | 0555 : S_IFREG | 0444;
		st->st_size = (off_t)ent_size(e);
		st->st_blksize = 4096;
	}
	pthread_rwlock_unlock(&o->ents_lock);
	return ret;
}

/* mfs_bstore_ops.list: the live entries of folder @dir (names copied first: @fn may block). */
static int oci_list(const struct mfs_bstore *s, int dir, mfs_bstore_entry_fn fn, void *ctx)
{
	struct oci_store *o = s->priv;
	struct {
		char *name;
		bool dir;
	} *l = NULL;
	size_t cur = 0, n = 0;
	struct oci_ent *e = ent_of(s, dir, &cur);
	int ret = 0;

	if (!e)
		return -EBADF;
	if (!e->dir)
		return -ENOTDIR;
	pthread_rwlock_rdlock(&o->ents_lock);
	l = calloc(o->n_ents, sizeof(*l));
	for (size_t i = 1; l && i < o->n_ents && !ret; i++) {
		const struct oci_ent *c = o->ents[i];

		if (!c || c->gone || c->parent != cur)
			continue;
		l[n].dir = c->dir;
		l[n].name = strdup(c->name);
		ret = l[n++].name ? 0 : -ENOMEM;
	}
	pthread_rwlock_unlock(&o->ents_lock);
	if (!l)
		return -ENOMEM;
	for (size_t i = 0; i < n && !ret; i++)
		ret = fn(ctx, l[i].name, l[i].dir ? DT_DIR : DT_REG);
	for (size_t i = 0; i < n; i++)
		free(l[i].name);
	free(l);
	return ret;
}

/* ---- ranged reads on a pool of clients per model ---- */

/* A client of @mo's pool, waiting while all are busy. Return: its slot, or -errno. */
static int client_take(struct oci_store *o, struct oci_model *mo, struct mv_err *err)
{
	int slot = -1, ret = 0;

	pthread_mutex_lock(&mo->lock);
	while (slot < 0) {
		for (unsigned i = 0; i < OCI_CLIENTS && slot < 0; i++)
			if (!mo->busy[i])
				slot = (int)i;
		if (slot < 0)
			pthread_cond_wait(&mo->free_client, &mo->lock);
	}
	mo->busy[slot] = true;
	pthread_mutex_unlock(&mo->lock);
	/* Made on first use, by the reader alone: the slot is its own while busy. */
	if (!mo->pool[slot])
		ret = mfr_client_new(&mo->ref, &o->copts, &mo->pool[slot], err);
	if (ret) {
		pthread_mutex_lock(&mo->lock);
		mo->busy[slot] = false;
		pthread_cond_signal(&mo->free_client);
		pthread_mutex_unlock(&mo->lock);
		return ret;
	}
	return slot;
}

/* Gives client @slot back; @broken: free it (a new one is made at next use). */
static void client_give(struct oci_model *mo, int slot, bool broken)
{
	if (broken) {
		mfr_client_free(mo->pool[slot]);
		mo->pool[slot] = NULL;
	}
	pthread_mutex_lock(&mo->lock);
	mo->busy[slot] = false;
	pthread_cond_signal(&mo->free_client);
	pthread_mutex_unlock(&mo->lock);
}

/*
 * Is @ret (a ranged GET's) worth another attempt, on a fresh connection?
 * Only a connection that broke: the client already retried 429, 5xx and
 * dropped connections with backoff (http.c), and a timeout is not tried
 * again, so that a read from a stalled registry gets EIO after one
 * timeout (MODELFS_HTTP_TIMEOUT, else 30 s without progress), not several
 * (a stacked retry made it about 3 minutes, with the kernel's own retry of
 * the page).
 */
static bool transient(int ret)
{
	return ret == -ECONNRESET || ret == -EAGAIN;
}

/**
 * get_range() - @len bytes at @off of blob @d, at most OCI_TRIES attempts
 * @o: in: the store
 * @mo: in: the model (its repository, its clients)
 * @d: in: the blob's descriptor (digest, size)
 * @buf: out: the bytes
 * @err: out: the last attempt's reason
 * Return: 0 or a negative errno.
 */
static int get_range(struct oci_store *o, struct oci_model *mo, const struct mfr_desc *d, void *buf,
                     size_t len, uint64_t off, struct mv_err *err)
{
	char *data = NULL;
	int ret = -EIO, slot;
	uint64_t r0;

	for (int t = 0; t < OCI_TRIES; t++) {
		if (t)
			nanosleep(&(struct timespec){0, 100000000L << (t - 1)}, NULL);
		memset(err, 0, sizeof(*err));
		slot = client_take(o, mo, err);
		if (slot < 0)
			return slot;
		r0 = mfr_client_retries(mo->pool[slot]);
		ret = mfr_blob_get_range(mo->pool[slot], d->digest, off, len, d->size, &data, err);
		mfs_count(&o->m->ctr.remote_retries, mfr_client_retries(mo->pool[slot]) - r0);
		client_give(mo, slot, ret != 0);
		if (!ret) {
			memcpy(buf, data, len);
			free(data);
			return 0;
		}
		if (!transient(ret))
			break;
	}
	return ret;
}

/* The path of entry @e inside its model folder ("sub/w.bin"), for log lines. */
static void ent_path(struct oci_store *o, const struct oci_ent *e, char *out, size_t len)
{
	char tmp[PATH_MAX];

	out[0] = '\0';
	pthread_rwlock_rdlock(&o->ents_lock);
	while (e && !e->top && e->gen) {
		snprintf(tmp, sizeof(tmp), "%s%s%s", e->name, out[0] ? "/" : "", out);
		snprintf(out, len, "%s", tmp);
		e = o->ents[e->parent];
	}
	pthread_rwlock_unlock(&o->ents_lock);
}

/* A fetch of oci_pread(): the store, the model and the last failure's reason. */
struct oci_fetch {
	struct oci_store *o;
	struct oci_model *mo;
	struct mv_err err;
};

/*
 * mfs_rcache_fetch_fn: ranged GETs of @d, at most OCI_READ_MAX bytes each,
 * counted in remote_requests and remote_bytes, or in remote_failures when
 * one fails (after the client's retries). 0 or -errno (reason in ctx).
 */
static int oci_fetch(void *ctx, const struct mfr_desc *d, void *buf, size_t len, uint64_t off)
{
	struct oci_fetch *f = ctx;
	size_t done = 0;
	int ret;

	while (done < len) {
		size_t n = len - done < OCI_READ_MAX ? len - done : OCI_READ_MAX;

		ret = get_range(f->o, f->mo, d, (char *)buf + done, n, off + done, &f->err);
		if (ret) {
			mfs_count(&f->o->m->ctr.remote_failures, 1);
			return ret;
		}
		done += n;
		mfs_count(&f->o->m->ctr.remote_requests, 1);
		mfs_count(&f->o->m->ctr.remote_bytes, n);
	}
	return 0;
}

/* Writes @d's blob into @fd whole, hashing it; its digest in @got. 0 or -errno. */
static int packed_copy(struct oci_fetch *fc, const struct mfr_desc *d, int fd,
                       char got[MFR_DIGEST_LEN + 1])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t *buf = malloc(OCI_READ_MAX), sum[32];
	int ret = md && buf && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 ? 0 : -ENOMEM;

	for (uint64_t off = 0; !ret && off < d->size;) {
		size_t n = d->size - off < OCI_READ_MAX ? (size_t)(d->size - off) : OCI_READ_MAX;

		ret = oci_fetch(fc, d, buf, n, off);
		if (!ret && EVP_DigestUpdate(md, buf, n) != 1)
			ret = -ENOMEM;
		if (!ret)
			ret = mv_pwrite_full(fd, buf, n, off);
		off += n;
	}
	if (!ret && EVP_DigestFinal_ex(md, sum, NULL) != 1)
		ret = -ENOMEM;
	if (!ret) {
		memcpy(got, "sha256:", 7);
		mv_hex_encode(sum, 32, got + 7);
	}
	EVP_MD_CTX_free(md);
	free(buf);
	return ret;
}

/*
 * oci_packed_get() - the packed layer of @g named @name, fetched whole
 * Why whole: the mount reads a packed copy through a descriptor (its seek
 * table, then frames, each decompressed and verified against the signed
 * Merkle root: zfile.c), so the copy is kept beside the model's trees,
 * CACHE/oci/<hex>/model/.modelfs/packed/@name, at the first open of its
 * file. Only a layer of media type MFR_MT_PACKED annotated with @name; its
 * bytes must hash to the layer's digest before the rename makes them
 * visible. Not bounded by --remote-cache-size (kept like the trees).
 * Return: 0 (it is there now), -ENOENT (no such layer), or -errno.
 */
static int oci_packed_get(struct oci_store *o, struct oci_gen *g, const char *name)
{
	struct oci_fetch fc = {.o = o, .mo = g->model};
	char tmp[MV_ZPACK_NAME_MAX + 32], got[MFR_DIGEST_LEN + 1], q[512], w[512];
	const struct mfr_desc *d = NULL;
	int top = -1, dir = -1, fd = -1, ret;

	for (size_t i = 0; g->man && i < g->man->n_layers && !d; i++) {
		const struct mfr_desc *l = &g->man->layers[i];

		if (l->media_type && !strcmp(l->media_type, MFR_MT_PACKED) && l->packed &&
		    !strcmp(l->packed, name))
			d = &g->man->layers[i];
	}
	if (!d || strchr(name, '/') || name[0] == '.')
		return -ENOENT;
	top = mfs_oci_own_dir(g->model_fd, MV_HIDDEN_DIR);
	dir = top < 0 ? top : mfs_oci_own_dir(top, "packed");
	ret = dir < 0 ? dir : 0;
	snprintf(tmp, sizeof(tmp), ".%s.%d.tmp", name, (int)gettid());
	if (!ret &&
	    (fd = openat(dir, tmp, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0)
		ret = -errno;
	if (!ret)
		ret = packed_copy(&fc, d, fd, got);
	if (!ret && strcmp(got, d->digest) != 0)
		ret = mv_err_set(&fc.err, -EBADMSG, "the bytes do not match %s", d->digest);
	if (!ret && renameat(dir, tmp, dir, name) != 0)
		ret = -errno;
	if (ret && fd >= 0)
		unlinkat(dir, tmp, 0);
	mfs_log(ret ? LOG_ERR : LOG_INFO, "oci-packed-%s model=%s file=%s bytes=%" PRIu64 "%s%s",
	        ret ? "failure" : "fetched", mfs_log_value(g->model->path, q, sizeof(q)), name,
	        d->size, ret ? " reason=" : "",
	        ret ? mfs_log_value(fc.err.msg[0] ? fc.err.msg : strerror(-ret), w, sizeof(w))
	            : "");
	if (fd >= 0)
		close(fd);
	if (dir >= 0)
		close(dir);
	if (top >= 0)
		close(top);
	return ret;
}

/* The block-cache slot of file entry @e, or OCI_NO_SLOT. */
static size_t ent_slot_of(const struct oci_store *o, const struct oci_ent *e)
{
	return o->rc && e->gen->slots ? e->gen->slots[e->layer_i] : OCI_NO_SLOT;
}

/*
 * mfs_bstore_ops.pread: from the remote block cache when the layer has a
 * slot in it (whole 64 KiB chunks fetched into it on a miss), else ranged
 * GETs of exactly the range asked. A failure is -EIO with a log line
 * naming the model, the file and the reason.
 */
static ssize_t oci_pread(const struct mfs_bstore *s, int h, void *buf, size_t len, uint64_t off)
{
	struct oci_store *o = s->priv;
	char path[PATH_MAX], q[512], f[512], w[512];
	struct oci_fetch fc = {.o = o};
	struct oci_ent *e = ent_of(s, h, NULL);
	uint64_t size;
	size_t slot;
	int ret;

	if (!e)
		return -EBADF;
	if (e->dir)
		return -EISDIR;
	size = ent_size(e);
	if (off >= size)
		return 0;
	if (len > size - off)
		len = (size_t)(size - off);
	if (e->sig) {
		memcpy(buf, e->gen->sig + off, len);
		return (ssize_t)len;
	}
	fc.mo = e->gen->model;
	slot = ent_slot_of(o, e);
	if (slot != OCI_NO_SLOT)
		ret = mfs_rcache_read(o->rc, slot, e->layer, buf, len, off, oci_fetch, &fc,
		                      sizeof(fc)); /* o and mo live as long as the cache */
	else
		ret = oci_fetch(&fc, e->layer, buf, len, off);
	if (ret) {
		ent_path(o, e, path, sizeof(path));
		mfs_log(LOG_ERR,
		        "remote-read-failure model=%s file=%s offset=%" PRIu64
		        " length=%zu reason=%s",
		        mfs_log_value(fc.mo->path, q, sizeof(q)), mfs_log_value(path, f, sizeof(f)),
		        off, len,
		        mfs_log_value(fc.err.msg[0] ? fc.err.msg : strerror(-ret), w, sizeof(w)));
		return -EIO;
	}
	return (ssize_t)len;
}

/* mfs_bstore_ops.close */
static void oci_close(const struct mfs_bstore *s, int h)
{
	struct oci_store *o = s->priv;

	if (h < OCI_HANDLE_BASE || (unsigned)(h - OCI_HANDLE_BASE) >= OCI_MAX_HANDLES)
		return;
	pthread_mutex_lock(&o->hlock);
	o->handles[h - OCI_HANDLE_BASE] = 0;
	pthread_mutex_unlock(&o->hlock);
}

/* mfs_bstore_ops.dup: a second slot naming the same entry (@h keeps its version alive). */
static int oci_dup(const struct mfs_bstore *s, int h)
{
	size_t cur;

	if (!ent_of(s, h, &cur))
		return -EBADF;
	return mfs_oci_handle_new(s->priv, cur);
}

/*
 * mfs_bstore_ops.read_sig: the bundle fetched for the model folder's
 * version; for a version that failed, its reason (the walk refuses it).
 */
static int oci_read_sig(const struct mfs_bstore *s, int dir, char **buf, size_t *len, char *why,
                        size_t why_len)
{
	struct oci_ent *e = ent_of(s, dir, NULL);
	struct oci_gen *g = e && e->top ? e->gen : NULL;

	*buf = NULL;
	if (!g) {
		snprintf(why, why_len, "%s: %s", MV_SIG_NAME, strerror(ENOENT));
		return -ENOENT;
	}
	if (!g->man) {
		snprintf(why, why_len, "%s", g->error.msg);
		return -EIO;
	}
	*buf = malloc(g->sig_len + 1);
	if (!*buf) {
		snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	memcpy(*buf, g->sig, g->sig_len);
	(*buf)[g->sig_len] = '\0';
	*len = g->sig_len;
	return 0;
}

/*
 * mfs_bstore_ops.watch: a registry sends no events. --watch polls it
 * instead (refresh, every --watch-interval): nothing to arm here.
 */
static int oci_watch(const struct mfs_bstore *s, int dir, int notify_fd, uint32_t mask)
{
	(void)s;
	(void)dir;
	(void)notify_fd;
	(void)mask;
	return 0;
}

/* mfs_bstore_ops.fini: frees the store, its models, versions, clients and entries. */
static void oci_fini(struct mfs_bstore *s)
{
	struct oci_store *o = s->priv;

	if (!o)
		return;
	mfs_rcache_free(o->rc); /* first: its background fill uses the models' clients */
	o->rc = NULL;
	for (size_t i = 0; i < o->n_models; i++)
		mfs_oci_model_fini(o, &o->models[i]);
	free(o->models);
	for (size_t i = 0; i < o->n_ents; i++)
		if (o->ents[i]) {
			free(o->ents[i]->name);
			free(o->ents[i]);
		}
	free(o->ents);
	free(o->slot_refs);
	free((char *)o->copts.ca_file);
	free(o->source);
	pthread_rwlock_destroy(&o->ents_lock);
	pthread_mutex_destroy(&o->hlock);
	free(o);
	s->priv = NULL;
}

/* mfs_bstore_ops.refetch: forget the cached chunks of bytes that failed verification. */
static int oci_refetch(const struct mfs_bstore *s, int h, uint64_t off, uint64_t len)
{
	struct oci_store *o = s->priv;
	struct oci_ent *e = ent_of(s, h, NULL);
	size_t slot;

	if (!e || e->dir || e->sig)
		return 0;
	slot = ent_slot_of(o, e);
	if (slot == OCI_NO_SLOT)
		return 0;
	return mfs_rcache_forget(o->rc, slot, e->layer, off, len);
}

const struct mfs_bstore_ops mfs_bstore_oci = {
    .name = "oci",
    .open = oci_open,
    .open_local = oci_open_local,
    .stat = oci_stat,
    .list = oci_list,
    .pread = oci_pread,
    .close = oci_close,
    .dup = oci_dup,
    .read_sig = oci_read_sig,
    .watch = oci_watch,
    .drop = NULL,
    .refetch = oci_refetch,
    .refresh = mfs_oci_refresh,
    .fini = oci_fini,
};
