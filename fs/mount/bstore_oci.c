// SPDX-License-Identifier: Apache-2.0
/*
 * bstore_oci.c - a model in an OCI registry as a backing store (struct
 * mfs_bstore_ops, bstore.h): `modelfs mount oci://REGISTRY/REPO:TAG MNT`,
 * the lazy mount (docs/remote.md, "Lazy mount").
 *
 * At set-up (mfs_bstore_oci_setup(), before the store walk) the reference
 * is resolved once to a manifest digest, pinned for the life of the mount;
 * the ModelPack manifest is parsed and its layer paths checked; the
 * referrer's model.sig and Merkle trees are fetched, each checked against
 * its descriptor's SHA-256, and written to CACHE/oci/<manifest hex>/model
 * (model.sig, .modelfs/trees/NAME), where open_local() finds them. The
 * store is then a virtual folder tree: a root holding the model folder at
 * the repository's path (REPO "org/demo": STORE/org/demo/), holding
 * model.sig and the layer files at their paths. A file's bytes are ranged
 * GETs of its layer blob on a small pool of registry clients: through the
 * remote block cache in the cache folder (bstore_oci_blocks.c,
 * --remote-cache-size), which fetches whole 64 KiB chunks on a miss, or,
 * with the cache off, one GET per pread() of exactly the range asked.
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

#include "bstore_oci_int.h"
#include "fsremote.h"
#include "mount_int.h"

#define OCI_SCHEME        "oci://"
#define OCI_HANDLE_BASE   (1 << 30)  /* far above any descriptor: never close()d by mistake */
#define OCI_MAX_HANDLES   4096u      /* store handles open at once; more: -EMFILE */
#define OCI_CLIENTS       8u         /* registry clients (connections) shared by readers */
#define OCI_READ_MAX      (8u << 20) /* bytes per ranged GET of a pread */
#define OCI_TRIES         2          /* attempts of a ranged GET (a broken connection) */
#define OCI_MAX_REFERRERS 16u        /* signature referrers tried */
#define OCI_DEV           0x6f6369u  /* st_dev of every entry ("oci") */

/* One folder or file of the virtual store. */
struct oci_ent {
	char *name;                   /* one component ("" for the root) */
	size_t parent;                /* its folder's index (the root's: 0) */
	bool dir;                     /* a folder */
	bool sig;                     /* the model's model.sig */
	const struct mfr_desc *layer; /* a file: its layer */
};

struct oci_store {
	struct mfs_mount *m;
	struct mfr_ref ref;
	struct mfr_client_opts copts;
	char *what; /* "REGISTRY/REPO@sha256:HEX", for log lines */
	char digest[MFR_DIGEST_LEN + 1];
	struct mfr_manifest *man;
	char *sig; /* the bundle's bytes */
	size_t sig_len;
	int model_fd;     /* CACHE/oci/<hex>/model: model.sig and .modelfs/trees */
	size_t model_ent; /* the model folder's entry */
	struct oci_ent *ents;
	size_t n_ents;
	pthread_mutex_t lock; /* guards handles[], pool[], busy[] */
	pthread_cond_t free_client;
	uint32_t handles[OCI_MAX_HANDLES]; /* entry index + 1; 0: free slot */
	struct mfr_client *pool[OCI_CLIENTS];
	bool busy[OCI_CLIENTS];
	struct mfs_rcache *rc; /* the remote block cache (bstore_oci_blocks.c); NULL: none */
};

/* ---- the virtual store ---- */

/* The entry of handle @h, or NULL when @h is not an open handle. */
static struct oci_ent *ent_of(const struct mfs_bstore *s, int h, size_t *idx)
{
	struct oci_store *o = s->priv;
	uint32_t v = 0;

	if (h < OCI_HANDLE_BASE || (unsigned)(h - OCI_HANDLE_BASE) >= OCI_MAX_HANDLES)
		return NULL;
	pthread_mutex_lock(&o->lock);
	v = o->handles[h - OCI_HANDLE_BASE];
	pthread_mutex_unlock(&o->lock);
	if (!v)
		return NULL;
	if (idx)
		*idx = v - 1;
	return &o->ents[v - 1];
}

/* A new handle naming entry @idx. Return: the handle, or -EMFILE (table full). */
static int handle_new(struct oci_store *o, size_t idx)
{
	int h = -EMFILE;

	pthread_mutex_lock(&o->lock);
	for (uint32_t i = 0; i < OCI_MAX_HANDLES; i++) {
		if (o->handles[i])
			continue;
		o->handles[i] = (uint32_t)idx + 1;
		h = OCI_HANDLE_BASE + (int)i;
		break;
	}
	pthread_mutex_unlock(&o->lock);
	return h;
}

/* The child @name (@len bytes) of folder @dir, or SIZE_MAX. */
static size_t child_of(const struct oci_store *o, size_t dir, const char *name, size_t len)
{
	for (size_t i = 1; i < o->n_ents; i++) {
		const struct oci_ent *e = &o->ents[i];

		if (e->parent == dir && strlen(e->name) == len && !memcmp(e->name, name, len))
			return i;
	}
	return SIZE_MAX;
}

/**
 * ent_add() - add an entry (a folder, unless @layer or @sig) under @parent
 * @o: in/out: the store; o->ents has room (counted by the caller)
 * @parent: in: the folder's index
 * @name, @len: in: the component
 * @idx: out: the entry's index (an existing folder's, for a folder)
 * Return: 0, -EEXIST (taken, or a file in the way), -ENOMEM.
 */
static int ent_add(struct oci_store *o, size_t parent, const char *name, size_t len,
                   const struct mfr_desc *layer, bool sig, size_t *idx)
{
	size_t i = child_of(o, parent, name, len);
	struct oci_ent *e;

	if (i != SIZE_MAX) {
		*idx = i;
		return o->ents[i].dir && !layer && !sig ? 0 : -EEXIST;
	}
	e = &o->ents[o->n_ents];
	e->name = strndup(name, len);
	if (!e->name)
		return -ENOMEM;
	e->parent = parent;
	e->dir = !layer && !sig;
	e->sig = sig;
	e->layer = layer;
	*idx = o->n_ents++;
	return 0;
}

/**
 * path_ok() - may an untrusted layer path name a file of the model?
 * @p: in: the path (NULL: no)
 * Relative, components of 1 to NAME_MAX bytes, none "." or "..", under
 * PATH_MAX, not model.sig and nothing under .modelfs.
 */
static bool path_ok(const char *p)
{
	const char *c = p;

	if (!p || !*p || *p == '/' || strlen(p) >= PATH_MAX || !strcmp(p, MV_SIG_NAME))
		return false;
	if (!strncmp(p, ".modelfs", 8) && (p[8] == '\0' || p[8] == '/'))
		return false;
	while (*c) {
		size_t l = strcspn(c, "/");

		if (l == 0 || l > NAME_MAX || (l == 1 && c[0] == '.') ||
		    (l == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		c += l;
		if (*c == '/' && !*++c)
			return false; /* a trailing slash: an empty last component */
	}
	return true;
}

/**
 * build_tree() - the virtual folders and files of the store
 * @o: in/out: o->man parsed; fills o->ents, o->model_ent
 * @err: out: the reason, naming the reference and the layer
 * Return: 0, -EBADMSG (a refused or duplicate path), -ENOMEM.
 */
static int build_tree(struct oci_store *o, struct mv_err *err)
{
	const char *p;
	char shown[256];
	size_t n = 2, cur, idx;
	int ret;

	/* Each component of the repository and of each path is one entry at most. */
	for (p = o->ref.repo; *p; p++)
		n += *p == '/';
	n += 2; /* the repository's last component and model.sig */
	for (size_t i = 0; i < o->man->n_layers; i++) {
		const struct mfr_desc *d = &o->man->layers[i];

		p = d->filepath ? d->filepath : d->title;
		if (!path_ok(p)) {
			mv_name_printable(p ? p : "(none)", shown, sizeof(shown));
			return mv_err_set(err, -EBADMSG,
			                  "%s: layer %zu: refused path \"%s\" (absolute, \"..\", "
			                  "empty, or reserved)",
			                  o->what, i, shown);
		}
		for (; *p; p++)
			n += *p == '/';
		n++;
	}
	o->ents = calloc(n, sizeof(*o->ents));
	if (!o->ents)
		return -ENOMEM;
	o->ents[0].name = strdup("");
	if (!o->ents[0].name)
		return -ENOMEM;
	o->ents[0].dir = true;
	o->n_ents = 1;
	cur = 0;
	for (p = o->ref.repo; *p;) {
		size_t l = strcspn(p, "/");

		ret = ent_add(o, cur, p, l, NULL, false, &cur);
		if (ret)
			return ret;
		p += l + (p[l] == '/');
	}
	o->model_ent = cur;
	ret = ent_add(o, cur, MV_SIG_NAME, strlen(MV_SIG_NAME), NULL, true, &idx);
	if (ret)
		return ret;
	for (size_t i = 0; i < o->man->n_layers; i++) {
		const struct mfr_desc *d = &o->man->layers[i];

		cur = o->model_ent;
		p = d->filepath ? d->filepath : d->title;
		for (ret = 0; !ret && *p;) {
			size_t l = strcspn(p, "/");

			ret = ent_add(o, cur, p, l, p[l] ? NULL : d, false, &cur);
			p += l + (p[l] == '/');
		}
		if (ret == -ENOMEM)
			return ret;
		if (ret) {
			mv_name_printable(d->filepath ? d->filepath : d->title, shown,
			                  sizeof(shown));
			return mv_err_set(err, -EBADMSG,
			                  "%s: layer %zu: path \"%s\" is taken by another layer",
			                  o->what, i, shown);
		}
	}
	return 0;
}

/*
 * mfs_bstore_ops.open: walks @rel from folder @dir one component at a time
 * ("." stays); never leaves the store (".." is refused).
 */
static int oci_open(const struct mfs_bstore *s, int dir, const char *rel, int flags)
{
	struct oci_store *o = s->priv;
	const char *p = rel;
	size_t cur;

	if (!ent_of(s, dir, &cur))
		return -EBADF;
	while (*p) {
		size_t l = strcspn(p, "/");

		if (!o->ents[cur].dir)
			return -ENOTDIR;
		if (l == 0 || (l == 2 && p[0] == '.' && p[1] == '.'))
			return -EINVAL;
		if (!(l == 1 && p[0] == '.')) {
			cur = child_of(o, cur, p, l);
			if (cur == SIZE_MAX)
				return -ENOENT;
		}
		p += l + (p[l] == '/');
	}
	if ((flags & O_DIRECTORY) && !o->ents[cur].dir)
		return -ENOTDIR;
	return handle_new(o, cur);
}

/*
 * mfs_bstore_ops.open_local: what a model folder holds besides its files
 * (its trees) is in the cache folder, CACHE/oci/<hex>/model; nothing else
 * is a descriptor of this machine.
 */
static int oci_open_local(const struct mfs_bstore *s, int dir, const char *rel, int flags)
{
	struct oci_store *o = s->priv;
	size_t cur;

	if (!ent_of(s, dir, &cur))
		return -EBADF;
	if (cur != o->model_ent)
		return -ENOENT;
	return mfs_openat_nofollow(o->model_fd, rel, flags);
}

/* The size of entry @e: its layer's, or the bundle's. */
static uint64_t ent_size(const struct oci_store *o, const struct oci_ent *e)
{
	return e->sig ? o->sig_len : e->layer ? e->layer->size : 0;
}

/* mfs_bstore_ops.stat: files 0444 of their descriptor's size, folders 0555, mtime 0. */
static int oci_stat(const struct mfs_bstore *s, int h, const char *name, struct stat *st)
{
	struct oci_store *o = s->priv;
	size_t cur;

	if (!ent_of(s, h, &cur))
		return -EBADF;
	if (name) {
		if (!o->ents[cur].dir)
			return -ENOTDIR;
		cur = child_of(o, cur, name, strlen(name));
		if (cur == SIZE_MAX)
			return -ENOENT;
	}
	memset(st, 0, sizeof(*st));
	st->st_dev = OCI_DEV;
	st->st_ino = (ino_t)cur + 1;
	st->st_uid = geteuid();
	st->st_gid = getegid();
	st->st_nlink = o->ents[cur].dir ? 2 : 1;
	st->st_mode = o->ents[cur].dir ? S_IFDIR | 0555 : S_IFREG | 0444;
	st->st_size = (off_t)ent_size(o, &o->ents[cur]);
	st->st_blksize = 4096;
	return 0;
}

/* mfs_bstore_ops.list: the entries of folder @dir. */
static int oci_list(const struct mfs_bstore *s, int dir, mfs_bstore_entry_fn fn, void *ctx)
{
	struct oci_store *o = s->priv;
	size_t cur;
	int ret = 0;

	if (!ent_of(s, dir, &cur))
		return -EBADF;
	if (!o->ents[cur].dir)
		return -ENOTDIR;
	for (size_t i = 1; i < o->n_ents && !ret; i++)
		if (o->ents[i].parent == cur)
			ret = fn(ctx, o->ents[i].name, o->ents[i].dir ? DT_DIR : DT_REG);
	return ret;
}

/* ---- ranged reads on a pool of clients ---- */

/* A client of the pool, waiting while all are busy. Return: its slot, or -errno. */
static int client_take(struct oci_store *o, struct mv_err *err)
{
	int slot = -1, ret = 0;

	pthread_mutex_lock(&o->lock);
	while (slot < 0) {
		for (unsigned i = 0; i < OCI_CLIENTS && slot < 0; i++)
			if (!o->busy[i])
				slot = (int)i;
		if (slot < 0)
			pthread_cond_wait(&o->free_client, &o->lock);
	}
	o->busy[slot] = true;
	pthread_mutex_unlock(&o->lock);
	/* Made on first use, by the reader alone: the slot is its own while busy. */
	if (!o->pool[slot])
		ret = mfr_client_new(&o->ref, &o->copts, &o->pool[slot], err);
	if (ret) {
		pthread_mutex_lock(&o->lock);
		o->busy[slot] = false;
		pthread_cond_signal(&o->free_client);
		pthread_mutex_unlock(&o->lock);
		return ret;
	}
	return slot;
}

/* Gives client @slot back; @broken: free it (a new one is made at next use). */
static void client_give(struct oci_store *o, int slot, bool broken)
{
	if (broken) {
		mfr_client_free(o->pool[slot]);
		o->pool[slot] = NULL;
	}
	pthread_mutex_lock(&o->lock);
	o->busy[slot] = false;
	pthread_cond_signal(&o->free_client);
	pthread_mutex_unlock(&o->lock);
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
 * @d: in: the blob's descriptor (digest, size)
 * @buf: out: the bytes
 * @err: out: the last attempt's reason
 * Return: 0 or a negative errno.
 */
static int get_range(struct oci_store *o, const struct mfr_desc *d, void *buf, size_t len,
                     uint64_t off, struct mv_err *err)
{
	char *data = NULL;
	int ret = -EIO, slot;

	for (int t = 0; t < OCI_TRIES; t++) {
		if (t)
			nanosleep(&(struct timespec){0, 100000000L << (t - 1)}, NULL);
		memset(err, 0, sizeof(*err));
		slot = client_take(o, err);
		if (slot < 0)
			return slot;
		ret = mfr_blob_get_range(o->pool[slot], d->digest, off, len, d->size, &data, err);
		client_give(o, slot, ret != 0);
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

/* The store path of entry @idx ("org/demo/sub/w.bin"), for log lines. */
static void ent_path(const struct oci_store *o, size_t idx, char *out, size_t len)
{
	char tmp[PATH_MAX];

	out[0] = '\0';
	while (idx && idx != o->model_ent) {
		snprintf(tmp, sizeof(tmp), "%s%s%s", o->ents[idx].name, out[0] ? "/" : "", out);
		snprintf(out, len, "%s", tmp);
		idx = o->ents[idx].parent;
	}
}

/* A fetch of oci_pread(): the store and the last failure's reason. */
struct oci_fetch {
	struct oci_store *o;
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

		ret = get_range(f->o, d, (char *)buf + done, n, off + done, &f->err);
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

/*
 * mfs_bstore_ops.pread: from the remote block cache when there is one
 * (whole 64 KiB chunks fetched into it on a miss), else ranged GETs of
 * exactly the range asked. A failure is -EIO with a log line naming the
 * model, the file and the reason.
 */
static ssize_t oci_pread(const struct mfs_bstore *s, int h, void *buf, size_t len, uint64_t off)
{
	struct oci_store *o = s->priv;
	char path[PATH_MAX], q[512], f[512], w[512];
	struct oci_fetch fc = {.o = o};
	struct oci_ent *e;
	uint64_t size;
	size_t cur;
	int ret;

	e = ent_of(s, h, &cur);
	if (!e)
		return -EBADF;
	if (e->dir)
		return -EISDIR;
	size = ent_size(o, e);
	if (off >= size)
		return 0;
	if (len > size - off)
		len = (size_t)(size - off);
	if (e->sig) {
		memcpy(buf, o->sig + off, len);
		return (ssize_t)len;
	}
	if (o->rc)
		ret = mfs_rcache_read(o->rc, (size_t)(e->layer - o->man->layers), e->layer, buf,
		                      len, off, oci_fetch, &fc);
	else
		ret = oci_fetch(&fc, e->layer, buf, len, off);
	if (ret) {
		ent_path(o, cur, path, sizeof(path));
		mfs_log(LOG_ERR,
		        "remote-read-failure model=%s file=%s offset=%" PRIu64
		        " length=%zu reason=%s",
		        mfs_log_value(o->ref.repo, q, sizeof(q)), mfs_log_value(path, f, sizeof(f)),
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
	pthread_mutex_lock(&o->lock);
	o->handles[h - OCI_HANDLE_BASE] = 0;
	pthread_mutex_unlock(&o->lock);
}

/* mfs_bstore_ops.dup: a second slot naming the same entry. */
static int oci_dup(const struct mfs_bstore *s, int h)
{
	size_t cur;

	if (!ent_of(s, h, &cur))
		return -EBADF;
	return handle_new(s->priv, cur);
}

/* mfs_bstore_ops.read_sig: the bundle fetched at set-up, for the model folder only. */
static int oci_read_sig(const struct mfs_bstore *s, int dir, char **buf, size_t *len, char *why,
                        size_t why_len)
{
	struct oci_store *o = s->priv;
	size_t cur;

	*buf = NULL;
	if (!ent_of(s, dir, &cur) || cur != o->model_ent) {
		snprintf(why, why_len, "%s: %s", MV_SIG_NAME, strerror(ENOENT));
		return -ENOENT;
	}
	*buf = malloc(o->sig_len + 1);
	if (!*buf) {
		snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	memcpy(*buf, o->sig, o->sig_len);
	(*buf)[o->sig_len] = '\0';
	*len = o->sig_len;
	return 0;
}

/* mfs_bstore_ops.watch: a registry sends no events (no --watch for a remote store). */
static int oci_watch(const struct mfs_bstore *s, int dir, int notify_fd, uint32_t mask)
{
	(void)s;
	(void)dir;
	(void)notify_fd;
	(void)mask;
	return -ENOTSUP;
}

/* mfs_bstore_ops.fini: frees the store, its clients and its entries. */
static void oci_fini(struct mfs_bstore *s)
{
	struct oci_store *o = s->priv;

	if (!o)
		return;
	mfs_rcache_free(o->rc);
	for (unsigned i = 0; i < OCI_CLIENTS; i++)
		mfr_client_free(o->pool[i]);
	for (size_t i = 0; i < o->n_ents; i++)
		free(o->ents[i].name);
	free(o->ents);
	if (o->model_fd >= 0)
		close(o->model_fd);
	free(o->sig);
	mfr_manifest_free(o->man);
	mfr_ref_free(&o->ref);
	free((char *)o->copts.ca_file);
	free(o->what);
	pthread_mutex_destroy(&o->lock);
	pthread_cond_destroy(&o->free_client);
	free(o);
	s->priv = NULL;
}

/* mfs_bstore_ops.refetch: forget the cached chunks of bytes that failed verification. */
static int oci_refetch(const struct mfs_bstore *s, int h, uint64_t off, uint64_t len)
{
	struct oci_store *o = s->priv;
	struct oci_ent *e = ent_of(s, h, NULL);

	if (!e || e->dir || e->sig || !o->rc)
		return 0;
	return mfs_rcache_forget(o->rc, (size_t)(e->layer - o->man->layers), e->layer, off, len);
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
    .fini = oci_fini,
};

/* ---- set-up: the manifest, the signature and the trees ---- */

/* "sha256:HEX" of @len bytes at @data. */
static void digest_of(const void *data, size_t len, char out[MFR_DIGEST_LEN + 1])
{
	uint8_t sum[32];

	mv_sha256(data, len, sum);
	memcpy(out, "sha256:", 7);
	mv_hex_encode(sum, 32, out + 7);
}

/**
 * get_model() - resolve the reference once and parse the model manifest
 * @o: in/out: o->ref parsed; fills o->digest, o->man, o->what
 * @c: in: the set-up client
 * @err: out: the reason
 * Return: 0 or a negative errno.
 */
static int get_model(struct oci_store *o, struct mfr_client *c, struct mv_err *err)
{
	const char *r = o->ref.digest[0] ? o->ref.digest : o->ref.tag;
	char *body = NULL;
	size_t len = 0;
	int ret = mfr_manifest_get(c, r, &body, &len, NULL, err);

	if (ret == -ENOENT)
		ret = mv_err_set(err, ret, "%s/%s: manifest unknown (HTTP 404)", o->ref.registry,
		                 o->ref.repo);
	if (ret)
		goto out;
	digest_of(body, len, o->digest);
	if (asprintf(&o->what, "%s/%s@%s", o->ref.registry, o->ref.repo, o->digest) < 0) {
		o->what = NULL;
		ret = -ENOMEM;
		goto out;
	}
	ret = mfr_manifest_parse(body, len, &o->man, err);
	if (ret) {
		ret = mv_err_set(err, -EBADMSG, "%s: manifest: %s", o->what, err->msg);
		goto out;
	}
	if (!o->man->artifact_type || strcmp(o->man->artifact_type, MFR_AT_MODEL) != 0) {
		ret = mv_err_set(err, -EMEDIUMTYPE, "%s: not a model (artifactType %s, want %s)",
		                 o->what, o->man->artifact_type ? o->man->artifact_type : "absent",
		                 MFR_AT_MODEL);
		goto out;
	}
	if (!o->man->n_layers)
		ret = mv_err_set(err, -EBADMSG, "%s: the manifest has no layers", o->what);
out:
	free(body);
	return ret;
}

/**
 * fetch_referrer() - one signature referrer: its manifest and its bundle
 * @o: in: the store (o->digest: the subject)
 * @c: in: the set-up client
 * @e: in: the referrers index entry
 * @rm: out: the referrer's manifest (on success)
 * @sig, @sig_len: out: the bundle, checked against its descriptor's digest
 * @err: out: the reason
 * Return: 0, -EBADMSG (not a usable referrer) or another negative errno.
 */
static int fetch_referrer(struct oci_store *o, struct mfr_client *c, const struct mfr_desc *e,
                          struct mfr_manifest **rm, char **sig, size_t *sig_len, struct mv_err *err)
{
	char *json = NULL, got[MFR_DIGEST_LEN + 1];
	const struct mfr_desc *d;
	size_t len = 0;
	int ret;

	*rm = NULL;
	*sig = NULL;
	ret = mfr_manifest_get(c, e->digest, &json, &len, NULL, err);
	if (ret)
		goto out;
	ret = mfr_manifest_parse(json, len, rm, err);
	if (ret) {
		ret =
		    mv_err_set(err, -EBADMSG, "%s: referrer %s: %s", o->what, e->digest, err->msg);
		goto out;
	}
	d = (*rm)->n_layers ? &(*rm)->layers[0] : NULL;
	ret = -EBADMSG;
	if (!(*rm)->has_subject || strcmp((*rm)->subject.digest, o->digest) != 0) {
		mv_err_set(err, ret, "%s: referrer %s: its subject is not the model", o->what,
		           e->digest);
		goto out;
	}
	if (!d || strcmp(d->media_type, MFR_MT_BUNDLE) != 0 || !d->size ||
	    d->size > MV_MAX_SIG_SIZE) {
		mv_err_set(err, ret, "%s: referrer %s: no %s first layer of 1 byte to 64 MiB",
		           o->what, e->digest, MFR_MT_BUNDLE);
		goto out;
	}
	ret = mfr_blob_get_range(c, d->digest, 0, (size_t)d->size, d->size, sig, err);
	if (ret)
		goto out;
	digest_of(*sig, (size_t)d->size, got);
	if (strcmp(got, d->digest) != 0) {
		ret = mv_err_set(err, -EBADMSG, "%s: model.sig: the bytes do not match %s", o->what,
		                 d->digest);
		goto out;
	}
	*sig_len = (size_t)d->size;
out:
	if (ret) {
		mfr_manifest_free(*rm);
		*rm = NULL;
		free(*sig);
		*sig = NULL;
	}
	free(json);
	return ret;
}

/**
 * get_signature() - the referrer whose model.sig the mount will check
 * @o: in/out: fills o->sig, o->sig_len
 * @c: in: the set-up client
 * @rm_out: out: that referrer's manifest (its tree layers)
 * @err: out: the reason
 * The first referrer whose bundle verifies against the mount's trust set;
 * if none does, the first usable one, so that the store walk refuses the
 * model with the verifier's reason (status.json and the log say why).
 * Return: 0, -EBADMSG (no usable referrer) or another negative errno.
 */
static int get_signature(struct oci_store *o, struct mfr_client *c, struct mfr_manifest **rm_out,
                         struct mv_err *err)
{
	struct mfr_manifest *rm = NULL;
	struct mfr_index *ix = NULL;
	struct mv_manifest *vm = NULL;
	struct mv_err e2 = {0}, verr = {0};
	char *body = NULL, *sig = NULL;
	size_t len = 0, sig_len = 0, tried = 0;
	int ret = mfr_referrers_get(c, o->digest, &body, &len, NULL, err);

	*rm_out = NULL;
	if (!ret)
		ret = mfr_index_parse(body, len, &ix, err);
	if (ret)
		goto out;
	ret = mv_err_set(err, -EBADMSG, "%s: no signature: no referrer of type %s", o->what,
	                 MFR_MT_BUNDLE);
	for (size_t i = 0; i < ix->n && tried < OCI_MAX_REFERRERS; i++) {
		const struct mfr_desc *e = &ix->manifests[i];

		if (!e->artifact_type || strcmp(e->artifact_type, MFR_MT_BUNDLE) != 0)
			continue;
		tried++;
		memset(&e2, 0, sizeof(e2));
		ret = fetch_referrer(o, c, e, &rm, &sig, &sig_len, &e2);
		if (ret == -EBADMSG) {
			*err = e2;
			continue;
		}
		if (ret) {
			*err = e2;
			break; /* the registry failed: no use trying more */
		}
		memset(&verr, 0, sizeof(verr));
		if (mv_sig_parse(sig, sig_len, o->m->trust, NULL, NULL, &vm, &verr) == 0 ||
		    !o->sig) {
			/* Verified, or the first: kept; a verified one replaces a first. */
			free(o->sig);
			mfr_manifest_free(*rm_out);
			o->sig = sig;
			o->sig_len = sig_len;
			*rm_out = rm;
			sig = NULL;
			rm = NULL;
		}
		mfr_manifest_free(rm);
		rm = NULL;
		free(sig);
		sig = NULL;
		if (vm)
			break;
	}
	ret = o->sig ? 0 : ret ? ret : -EBADMSG;
	if (!ret)
		memset(err, 0, sizeof(*err));
out:
	mv_manifest_free(vm);
	mfr_index_free(ix);
	free(body);
	return ret;
}

bool mfs_bstore_is_oci(const char *store)
{
	return store && !strncmp(store, OCI_SCHEME, strlen(OCI_SCHEME));
}

int mfs_bstore_oci_setup(struct mfs_mount *m, const char *uri, const char *ca_file, bool insecure,
                         struct mv_err *err)
{
	struct mfr_manifest *rm = NULL;
	struct mfr_client *c = NULL;
	struct oci_store *o;
	int ret;

	o = calloc(1, sizeof(*o));
	if (!o)
		return mv_err_set(err, -ENOMEM, "mount: out of memory");
	o->m = m;
	o->model_fd = -1;
	pthread_mutex_init(&o->lock, NULL);
	pthread_cond_init(&o->free_client, NULL);
	m->bstore.ops = &mfs_bstore_oci;
	m->bstore.priv = o;
	m->store = strdup(uri);
	if (!m->store)
		return mv_err_set(err, -ENOMEM, "mount: out of memory");
	o->copts.insecure = insecure;
	if (ca_file) {
		o->copts.ca_file = realpath(ca_file, NULL); /* the daemon's folder is "/" */
		if (!o->copts.ca_file)
			return mv_err_set(err, -errno, "%s: --ca-cert: %s", ca_file,
			                  strerror(errno));
	}
	ret = mfr_ref_parse(uri + strlen(OCI_SCHEME), &o->ref, err);
	if (ret)
		return ret;
	if (!o->ref.tag && !o->ref.digest[0])
		return mv_err_set(err, -EINVAL, "%s: give a :TAG or an @sha256:DIGEST", uri);
	ret = mfr_client_new(&o->ref, &o->copts, &c, err);
	if (!ret)
		ret = get_model(o, c, err);
	if (!ret)
		ret = build_tree(o, err);
	if (!ret)
		ret = get_signature(o, c, &rm, err);
	if (!ret) {
		struct mfs_oci_fetched f = {.what = o->what,
		                            .digest = o->digest,
		                            .sig = o->sig,
		                            .sig_len = o->sig_len,
		                            .tree_bytes = 1u << 20};

		for (size_t i = 0; i < o->man->n_layers; i++)
			f.tree_bytes += o->man->layers[i].size / 64 + 1;
		ret = mfs_oci_materialise(m, &f, rm, c, &o->model_fd, err);
	}
	if (!ret && m->bstore.remote_cache_bytes &&
	    mfs_rcache_new(m, m->bstore.remote_cache_bytes, o->man->n_layers, &o->rc))
		ret = mv_err_set(err, -ENOMEM, "mount: out of memory");
	if (!ret) {
		m->store_fd = handle_new(o, 0);
		ret = m->store_fd < 0 ? mv_err_set(err, m->store_fd, "mount: out of handles") : 0;
	}
	if (!ret)
		mfs_log(LOG_INFO, "oci-resolved reference=%s manifest=%s layers=%zu", uri + 6,
		        o->digest, o->man->n_layers);
	mfr_manifest_free(rm);
	/* Readers make their own: no connection of the set-up crosses the daemon's fork. */
	mfr_client_free(c);
	return ret;
}
