// SPDX-License-Identifier: Apache-2.0
/*
 * bstore_oci_setup.c - the models of an oci:// store and their versions
 * (bstore_oci_int.h; docs/remote.md, "Lazy mount", "Store files", "Tags
 * that move").
 *
 * STORE is one reference (oci://REGISTRY/REPO:TAG, the model at REPO's
 * path) or a store file: JSON mapping mount paths to references, parsed by
 * mfr_store_file_parse() (fs/remote/storefile.c),
 *
 *     {"models": {"org/demo": "oci://registry.example/org/demo:v1", ...}}
 *
 * Each reference is resolved to a manifest digest, the ModelPack manifest
 * parsed and its layer paths checked, the referrer's model.sig and Merkle
 * trees fetched (each checked against its descriptor's SHA-256) into
 * CACHE/oci/<manifest hex>/model: one version (struct oci_gen), linked into
 * the virtual store as the model's folder. With one reference, a failure
 * fails the mount; in a store file, the model is refused (its model.sig
 * reads as the reason) and the others are served.
 *
 * refresh (SIGHUP, --watch) resolves each tag again. A tag that moved to a
 * new manifest whose signature verifies against the mount's trust set gets
 * a new version, linked in place of the old; the reload that follows
 * (reload.c) builds it like a changed local model. A move to something
 * unsigned, untrusted or broken is logged and the old version kept. A
 * version replaced is freed, with its block-cache slots, once no handle
 * names it: readers keep the bytes they opened.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bstore_oci_int.h"
#include "fsremote.h"
#include "mount_int.h"

#define OCI_MAX_REFERRERS 16u /* signature referrers tried */

void mfs_oci_digest_of(const void *data, size_t len, char out[MFR_DIGEST_LEN + 1])
{
	uint8_t sum[32];

	mv_sha256(data, len, sum);
	memcpy(out, "sha256:", 7);
	mv_hex_encode(sum, 32, out + 7);
}

/* A layer's path: org.cncf.model.filepath, else its title. */
static const char *layer_path(const struct mfr_desc *d)
{
	return d->filepath ? d->filepath : d->title;
}

void mfs_oci_gen_free(struct oci_store *o, struct oci_gen *g)
{
	if (!g)
		return;
	for (size_t i = 0; g->slots && g->man && i < g->man->n_layers; i++) {
		size_t s = g->slots[i];

		if (s != OCI_NO_SLOT && s < o->cap_slots && o->slot_refs[s] && !--o->slot_refs[s])
			mfs_rcache_release(o->rc, s);
	}
	free(g->slots);
	if (g->model_fd >= 0)
		close(g->model_fd);
	free(g->sig);
	mfr_manifest_free(g->man);
	free(g->what);
	free(g);
}

/* A new, empty version of @mo. NULL: out of memory. */
static struct oci_gen *gen_new(struct oci_model *mo)
{
	struct oci_gen *g = calloc(1, sizeof(*g));

	if (g) {
		g->model = mo;
		g->model_fd = -1;
	}
	return g;
}

/**
 * get_model() - resolve @mo's reference and parse the model manifest
 * @o: in: the store
 * @g: in/out: a new version of the model; fills g->digest, g->what, g->man
 * @c: in: a client of the model's repository
 * @err: out: the reason
 * Return: 0 or a negative errno.
 */
static int get_model(struct oci_store *o, struct oci_gen *g, struct mfr_client *c,
                     struct mv_err *err)
{
	const struct mfr_ref *ref = &g->model->ref;
	const char *r = ref->digest[0] ? ref->digest : ref->tag;
	char *body = NULL, shown[256];
	size_t len = 0;
	int ret = mfr_manifest_get(c, r, &body, &len, NULL, err);

	(void)o;
	if (ret == -ENOENT)
		ret = mv_err_set(err, ret, "%s/%s: manifest unknown (HTTP 404)", ref->registry,
		                 ref->repo);
	if (ret)
		goto out;
	mfs_oci_digest_of(body, len, g->digest);
	if (asprintf(&g->what, "%s/%s@%s", ref->registry, ref->repo, g->digest) < 0) {
		g->what = NULL;
		ret = -ENOMEM;
		goto out;
	}
	ret = mfr_manifest_parse(body, len, &g->man, err);
	if (ret) {
		ret = mv_err_set(err, -EBADMSG, "%s: manifest: %s", g->what, err->msg);
		goto out;
	}
	if (!g->man->artifact_type || strcmp(g->man->artifact_type, MFR_AT_MODEL) != 0) {
		ret = mv_err_set(err, -EMEDIUMTYPE, "%s: not a model (artifactType %s, want %s)",
		                 g->what, g->man->artifact_type ? g->man->artifact_type : "absent",
		                 MFR_AT_MODEL);
		goto out;
	}
	if (!g->man->n_layers)
		ret = mv_err_set(err, -EBADMSG, "%s: the manifest has no layers", g->what);
	for (size_t i = 0; !ret && i < g->man->n_layers; i++) {
		const char *p = layer_path(&g->man->layers[i]);

		if (mfr_path_ok(p))
			continue;
		mv_name_printable(p ? p : "(none)", shown, sizeof(shown));
		ret = mv_err_set(err, -EBADMSG,
		                 "%s: layer %zu: refused path \"%s\" (absolute, \"..\", "
		                 "empty, or reserved)",
		                 g->what, i, shown);
	}
out:
	free(body);
	return ret;
}

/**
 * fetch_referrer() - one signature referrer: its manifest and its bundle
 * @g: in: the version (g->digest: the subject)
 * @c: in: a client of the model's repository
 * @e: in: the referrers index entry
 * @rm: out: the referrer's manifest (on success)
 * @sig, @sig_len: out: the bundle, checked against its descriptor's digest
 * @err: out: the reason
 * Return: 0, -EBADMSG (not a usable referrer) or another negative errno.
 */
static int fetch_referrer(const struct oci_gen *g, struct mfr_client *c, const struct mfr_desc *e,
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
		    mv_err_set(err, -EBADMSG, "%s: referrer %s: %s", g->what, e->digest, err->msg);
		goto out;
	}
	d = (*rm)->n_layers ? &(*rm)->layers[0] : NULL;
	ret = -EBADMSG;
	if (!(*rm)->has_subject || strcmp((*rm)->subject.digest, g->digest) != 0) {
		mv_err_set(err, ret, "%s: referrer %s: its subject is not the model", g->what,
		           e->digest);
		goto out;
	}
	if (!d || strcmp(d->media_type, MFR_MT_BUNDLE) != 0 || !d->size ||
	    d->size > MV_MAX_SIG_SIZE) {
		mv_err_set(err, ret, "%s: referrer %s: no %s first layer of 1 byte to 64 MiB",
		           g->what, e->digest, MFR_MT_BUNDLE);
		goto out;
	}
	ret = mfr_blob_get_range(c, d->digest, 0, (size_t)d->size, d->size, sig, err);
	if (ret)
		goto out;
	mfs_oci_digest_of(*sig, (size_t)d->size, got);
	if (strcmp(got, d->digest) != 0) {
		ret = mv_err_set(err, -EBADMSG, "%s: model.sig: the bytes do not match %s", g->what,
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
 * @o: in: the store (the mount's trust set)
 * @g: in/out: fills g->sig, g->sig_len
 * @c: in: a client of the model's repository
 * @rm_out: out: that referrer's manifest (its tree layers)
 * @verified: out: whether that bundle verified against the trust set
 * @err: out: the reason
 * The first referrer whose bundle verifies against the mount's trust set;
 * if none does, the first usable one, so that the store walk refuses the
 * model with the verifier's reason (status.json and the log say why).
 * Return: 0, -EBADMSG (no usable referrer) or another negative errno.
 */
static int get_signature(struct oci_store *o, struct oci_gen *g, struct mfr_client *c,
                         struct mfr_manifest **rm_out, bool *verified, struct mv_err *err)
{
	struct mfr_manifest *rm = NULL;
	struct mfr_index *ix = NULL;
	struct mv_manifest *vm = NULL;
	struct mv_err e2 = {0}, verr = {0};
	char *body = NULL, *sig = NULL;
	size_t len = 0, sig_len = 0, tried = 0;
	int ret = mfr_referrers_get(c, g->digest, &body, &len, NULL, err);

	*rm_out = NULL;
	*verified = false;
	if (!ret)
		ret = mfr_index_parse(body, len, &ix, err);
	if (ret)
		goto out;
	ret = mv_err_set(err, -EBADMSG, "%s: no signature: no referrer of type %s", g->what,
	                 MFR_MT_BUNDLE);
	for (size_t i = 0; i < ix->n && tried < OCI_MAX_REFERRERS; i++) {
		const struct mfr_desc *e = &ix->manifests[i];

		if (!e->artifact_type || strcmp(e->artifact_type, MFR_MT_BUNDLE) != 0)
			continue;
		tried++;
		memset(&e2, 0, sizeof(e2));
		ret = fetch_referrer(g, c, e, &rm, &sig, &sig_len, &e2);
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
		    !g->sig) {
			/* Verified, or the first: kept; a verified one replaces a first. */
			free(g->sig);
			mfr_manifest_free(*rm_out);
			g->sig = sig;
			g->sig_len = sig_len;
			*rm_out = rm;
			sig = NULL;
			rm = NULL;
			memset(&g->error, 0, sizeof(g->error));
			if (!vm)
				mv_err_set(&g->error, -EKEYREJECTED, "%s: model.sig: %s", g->what,
				           verr.msg[0] ? verr.msg : "does not verify");
		}
		mfr_manifest_free(rm);
		rm = NULL;
		free(sig);
		sig = NULL;
		if (vm)
			break;
	}
	*verified = vm != NULL;
	ret = g->sig ? 0 : ret ? ret : -EBADMSG;
	if (!ret)
		memset(err, 0, sizeof(*err));
out:
	mv_manifest_free(vm);
	mfr_index_free(ix);
	free(body);
	return ret;
}

/**
 * gen_fetch() - resolve, then fetch what a version needs before it is linked
 * @o: in: the store
 * @g: in/out: a new version of its model
 * @c: in: a client of the model's repository
 * @want: in: the digest the model is at now, or NULL: stop with 1 when the
 *        reference resolves to it again (the tag did not move)
 * @must_verify: in: refuse (-EKEYREJECTED) a signature the trust set does not verify
 * @err: out: the reason
 * Return: 0, 1 (not moved), or a negative errno.
 */
static int gen_fetch(struct oci_store *o, struct oci_gen *g, struct mfr_client *c, const char *want,
                     bool must_verify, struct mv_err *err)
{
	struct mfr_manifest *rm = NULL;
	struct mfs_oci_fetched f = {.tree_bytes = 1u << 20};
	bool verified = false;
	int ret = get_model(o, g, c, err);

	if (!ret && want && !strcmp(want, g->digest))
		return 1;
	if (!ret)
		ret = get_signature(o, g, c, &rm, &verified, err);
	if (!ret && must_verify && !verified)
		ret = mv_err_set(err, -EKEYREJECTED, "%s", g->error.msg);
	if (!ret) {
		f.what = g->what;
		f.digest = g->digest;
		f.sig = g->sig;
		f.sig_len = g->sig_len;
		for (size_t i = 0; i < g->man->n_layers; i++)
			f.tree_bytes += g->man->layers[i].size / 64 + 1;
		ret = mfs_oci_materialise(o->m, &f, rm, c, &g->model_fd, err);
	}
	mfr_manifest_free(rm);
	return ret;
}

/* Is slot @s used by a version of any model for blob @digest? */
static size_t slot_shared(const struct oci_store *o, const char *digest)
{
	for (size_t i = 0; i < o->n_models; i++) {
		const struct oci_model *mo = &o->models[i];

		for (const struct oci_gen *g = mo->gen; g; g = g == mo->gen ? mo->retired : g->next)
			for (size_t l = 0; g->slots && g->man && l < g->man->n_layers; l++)
				if (g->slots[l] != OCI_NO_SLOT &&
				    !strcmp(g->man->layers[l].digest, digest))
					return g->slots[l];
	}
	return OCI_NO_SLOT;
}

/*
 * Gives each layer of @g a block-cache slot: the slot of a version that
 * holds the same blob, else a free one; with none free (more versions
 * alive than OCI_SPARE_SLOTS allows), the layer is read past the cache.
 * Return: 0 or -ENOMEM.
 */
static int slots_assign(struct oci_store *o, struct oci_gen *g)
{
	size_t n = g->man ? g->man->n_layers : 0, next = 0;

	if (!o->rc || !n)
		return 0;
	g->slots = malloc(n * sizeof(*g->slots));
	if (!g->slots)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		g->slots[i] = OCI_NO_SLOT; /* slot_shared() may look at @g itself */
	for (size_t i = 0; i < n; i++) {
		size_t s = slot_shared(o, g->man->layers[i].digest);

		while (s == OCI_NO_SLOT && next < o->cap_slots)
			if (!o->slot_refs[next++])
				s = next - 1;
		g->slots[i] = s;
		if (s != OCI_NO_SLOT)
			o->slot_refs[s]++;
	}
	return 0;
}

/**
 * gen_link() - make @g its model's folder in the store (ents_lock held for writing)
 * @o: in/out: the store
 * @g: in: the version: with a manifest, its model.sig and layer files; without
 *     (failed), model.sig alone, which reads as the error
 * @err: out: the reason (a layer path taken by another)
 * The model's current folder, if any, is marked gone (handles still reach it).
 * Return: 0, -EBADMSG (a path taken) or -ENOMEM; on failure nothing changed.
 */
static int gen_link(struct oci_store *o, struct oci_gen *g, struct mv_err *err)
{
	const char *p = g->model->path;
	size_t cur = 0, top, idx, old = SIZE_MAX;
	char shown[256];
	int ret = 0;

	while (!ret && strchr(p, '/')) {
		size_t l = strcspn(p, "/");

		ret = mfs_oci_ent_add(o, cur, p, l, NULL, NULL, 0, false, &cur);
		p += l + 1;
	}
	if (ret)
		return mv_err_set(err, ret, "%s: path %s: %s", g->model->uri, g->model->path,
		                  strerror(-ret));
	old = mfs_oci_child(o, cur, p, strlen(p));
	if (old != SIZE_MAX && !o->ents[old]->top)
		return mv_err_set(err, -EEXIST, "%s: path %s is taken", g->model->uri,
		                  g->model->path);
	if (old != SIZE_MAX)
		o->ents[old]->gone = true;
	ret = mfs_oci_ent_add(o, cur, p, strlen(p), g, NULL, 0, false, &top);
	if (!ret) {
		o->ents[top]->top = true;
		ret = mfs_oci_ent_add(o, top, MV_SIG_NAME, strlen(MV_SIG_NAME), g, NULL, 0, true,
		                      &idx);
	}
	for (size_t i = 0; !ret && g->man && i < g->man->n_layers; i++) {
		const struct mfr_desc *d = &g->man->layers[i];

		if (d->media_type && !strcmp(d->media_type, MFR_MT_PACKED))
			continue; /* a packed copy: fetched whole at first open (open_local) */
		cur = top;
		for (p = layer_path(d); !ret && *p;) {
			size_t l = strcspn(p, "/");

			ret = mfs_oci_ent_add(o, cur, p, l, g, p[l] ? NULL : d, i, false, &cur);
			p += l + (p[l] == '/');
		}
		if (ret == -EEXIST) {
			mv_name_printable(layer_path(d), shown, sizeof(shown));
			mv_err_set(err, -EBADMSG,
			           "%s: layer %zu: path \"%s\" is taken by another layer", g->what,
			           i, shown);
			ret = -EBADMSG;
		}
	}
	if (ret) {
		mfs_oci_ents_drop(o, g);
		if (old != SIZE_MAX)
			o->ents[old]->gone = false;
		if (ret == -ENOMEM)
			mv_err_set(err, ret, "mount: out of memory");
	}
	return ret;
}

/* ---- models: one reference, or a store file ---- */

/**
 * model_init() - model @mo at mount path @path (NULL: the repository's path) for @uri
 * @err: out: the reason, naming the reference
 * Return: 0 or a negative errno.
 */
static int model_init(struct oci_model *mo, const char *path, const char *uri, struct mv_err *err)
{
	int ret;

	pthread_mutex_init(&mo->lock, NULL);
	pthread_cond_init(&mo->free_client, NULL);
	mo->uri = strdup(uri);
	if (!mo->uri)
		return mv_err_set(err, -ENOMEM, "mount: out of memory");
	if (strncmp(uri, OCI_SCHEME, strlen(OCI_SCHEME)) != 0)
		return mv_err_set(err, -EINVAL, "%s: not an oci:// reference", uri);
	ret = mfr_ref_parse(uri + strlen(OCI_SCHEME), &mo->ref, err);
	if (ret)
		return ret;
	if (!mo->ref.tag && !mo->ref.digest[0])
		return mv_err_set(err, -EINVAL, "%s: give a :TAG or an @sha256:DIGEST", uri);
	mo->path = strdup(path ? path : mo->ref.repo);
	return mo->path ? 0 : mv_err_set(err, -ENOMEM, "mount: out of memory");
}

void mfs_oci_model_fini(struct oci_store *o, struct oci_model *mo)
{
	struct oci_gen *g = mo->retired, *next;

	for (; g; g = next) {
		next = g->next;
		mfs_oci_gen_free(o, g);
	}
	mfs_oci_gen_free(o, mo->gen);
	for (unsigned i = 0; i < OCI_CLIENTS; i++)
		mfr_client_free(mo->pool[i]);
	mfr_ref_free(&mo->ref);
	free(mo->path);
	free(mo->uri);
	pthread_mutex_destroy(&mo->lock);
	pthread_cond_destroy(&mo->free_client);
}

/* Reads store file @path whole (at most MFR_STORE_FILE_MAX bytes). 0 or -errno. */
static int read_store_file(const char *path, char **out, size_t *len, struct mv_err *err)
{
	struct stat st;
	ssize_t got;
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 0; /* the operator's, not the store's */

	*out = NULL;
	if (fd < 0)
		return mv_err_set(err, -errno, "%s: store file: %s", path, strerror(errno));
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > MFR_STORE_FILE_MAX) {
		ret = mv_err_set(err, -EFBIG,
		                 "%s: store file: not a regular file of at most %u bytes", path,
		                 MFR_STORE_FILE_MAX);
		goto out;
	}
	*out = calloc(1, (size_t)st.st_size + 1);
	if (!*out) {
		ret = mv_err_set(err, -ENOMEM, "mount: out of memory");
		goto out;
	}
	got = mv_pread_full(fd, *out, (size_t)st.st_size, 0);
	if (got != st.st_size)
		ret = mv_err_set(err, -EIO, "%s: store file: short read", path);
	*len = (size_t)st.st_size;
out:
	close(fd);
	return ret;
}

/**
 * parse_store_file() - the models of store file @path (mfr_store_file_parse())
 * @o: in/out: fills o->models, o->n_models
 * @err: out: one line naming the file and the reason
 * Return: 0, -EINVAL (a bad file) or another negative errno.
 */
static int parse_store_file(struct oci_store *o, const char *path, struct mv_err *err)
{
	struct mfr_store_entry *e = NULL;
	char *text = NULL;
	size_t n = 0, len = 0;
	int ret = read_store_file(path, &text, &len, err);

	if (!ret)
		ret = mfr_store_file_parse(text, len, path, &e, &n, err);
	if (!ret) {
		o->models = calloc(n, sizeof(*o->models));
		if (!o->models)
			ret = mv_err_set(err, -ENOMEM, "mount: out of memory");
	}
	for (size_t i = 0; !ret && i < n; i++)
		ret = model_init(&o->models[o->n_models++], e[i].path, e[i].ref, err);
	mfr_store_entries_free(e, n);
	free(text);
	return ret;
}

/**
 * model_first() - the first version of model @mo, linked
 * @o: in/out: the store
 * @err: out: the reason, when the mount must fail
 * In a store file, a model that fails is linked as a failed version and
 * the mount goes on (0); with one reference, its failure is the mount's.
 * Return: 0 or a negative errno.
 */
static int model_first(struct oci_store *o, struct oci_model *mo, struct mv_err *err)
{
	struct mfr_client *c = NULL;
	struct mv_err e2 = {0};
	char q[512], w[512];
	int ret;

	mo->gen = gen_new(mo);
	if (!mo->gen)
		return mv_err_set(err, -ENOMEM, "mount: out of memory");
	ret = mfr_client_new(&mo->ref, &o->copts, &c, &e2);
	if (!ret)
		ret = gen_fetch(o, mo->gen, c, NULL, false, &e2);
	/* Readers make their own: no connection of the set-up crosses the daemon's fork. */
	mfr_client_free(c);
	if (ret == -ENOMEM)
		return mv_err_set(err, ret, "mount: out of memory");
	if (ret && !o->store_file) {
		*err = e2;
		return ret;
	}
	if (ret) {
		mfr_manifest_free(mo->gen->man);
		mo->gen->man = NULL;
		mo->gen->error = e2;
		mfs_log(LOG_ERR, "oci-failure model=%s reference=%s reason=%s",
		        mfs_log_value(mo->path, q, sizeof(q)), mo->uri,
		        mfs_log_value(e2.msg, w, sizeof(w)));
	}
	pthread_rwlock_wrlock(&o->ents_lock);
	ret = gen_link(o, mo->gen, err);
	pthread_rwlock_unlock(&o->ents_lock);
	if (!ret && mo->gen->man)
		mfs_log(LOG_INFO, "oci-resolved model=%s reference=%s manifest=%s layers=%zu",
		        mfs_log_value(mo->path, q, sizeof(q)), mo->uri, mo->gen->digest,
		        mo->gen->man->n_layers);
	return ret;
}

bool mfs_bstore_is_oci(const char *store)
{
	struct stat st;

	if (store && !strncmp(store, OCI_SCHEME, strlen(OCI_SCHEME)))
		return true;
	return store && stat(store, &st) == 0 && S_ISREG(st.st_mode);
}

/* The block cache, sized for the layers of today's versions and OCI_SPARE_SLOTS more. */
static int cache_setup(struct oci_store *o)
{
	size_t n = OCI_SPARE_SLOTS;
	struct mfs_mount *m = o->m;

	for (size_t i = 0; i < o->n_models; i++)
		n += o->models[i].gen->man ? o->models[i].gen->man->n_layers : 0;
	if (!m->bstore.remote_cache_bytes)
		return 0;
	o->slot_refs = calloc(n, sizeof(*o->slot_refs));
	if (!o->slot_refs || mfs_rcache_new(m, m->bstore.remote_cache_bytes, n, &o->rc))
		return -ENOMEM;
	o->cap_slots = o->rc ? n : 0;
	for (size_t i = 0; i < o->n_models; i++)
		if (slots_assign(o, o->models[i].gen))
			return -ENOMEM;
	return 0;
}

int mfs_bstore_oci_setup(struct mfs_mount *m, const char *store, const char *ca_file, bool insecure,
                         struct mv_err *err)
{
	struct oci_store *o;
	size_t root;
	int ret;

	o = calloc(1, sizeof(*o));
	if (!o)
		return mv_err_set(err, -ENOMEM, "mount: out of memory");
	o->m = m;
	pthread_rwlock_init(&o->ents_lock, NULL);
	pthread_mutex_init(&o->hlock, NULL);
	m->bstore.ops = &mfs_bstore_oci;
	m->bstore.priv = o;
	m->bstore.whole_file_ok = true; /* a layer's digest is its file's SHA-256 */
	o->source = strdup(store);
	m->store =
	    strncmp(store, OCI_SCHEME, strlen(OCI_SCHEME)) ? realpath(store, NULL) : strdup(store);
	if (!m->store || !o->source)
		return mv_err_set(err, -ENOMEM, "mount: out of memory");
	o->copts.insecure = insecure;
	if (ca_file) {
		o->copts.ca_file = realpath(ca_file, NULL); /* the daemon's folder is "/" */
		if (!o->copts.ca_file)
			return mv_err_set(err, -errno, "%s: --ca-cert: %s", ca_file,
			                  strerror(errno));
	}
	o->store_file = strncmp(store, OCI_SCHEME, strlen(OCI_SCHEME)) != 0;
	if (o->store_file) {
		ret = parse_store_file(o, store, err);
	} else {
		o->models = calloc(1, sizeof(*o->models));
		if (!o->models)
			return mv_err_set(err, -ENOMEM, "mount: out of memory");
		o->n_models = 1;
		ret = model_init(&o->models[0], NULL, store, err);
	}
	if (ret)
		return ret;
	ret = mfs_oci_ent_add(o, 0, "", 0, NULL, NULL, 0, false, &root);
	if (ret)
		return mv_err_set(err, ret, "mount: out of memory");
	o->ents[root]->dir = true;
	for (size_t i = 0; i < o->n_models && !ret; i++)
		ret = model_first(o, &o->models[i], err);
	if (!ret && cache_setup(o))
		ret = mv_err_set(err, -ENOMEM, "mount: out of memory");
	if (!ret) {
		m->store_fd = mfs_oci_handle_new(o, root);
		ret = m->store_fd < 0 ? mv_err_set(err, m->store_fd, "mount: out of handles") : 0;
	}
	return ret;
}

/* ---- refresh: tags that move ---- */

/* Frees the retired versions of @mo that no handle names (ents_lock held for writing). */
static void retired_sweep(struct oci_store *o, struct oci_model *mo)
{
	struct oci_gen **pp = &mo->retired;

	while (*pp) {
		struct oci_gen *g = *pp;

		if (mfs_oci_gen_in_use(o, g)) {
			pp = &g->next;
			continue;
		}
		*pp = g->next;
		mfs_oci_ents_drop(o, g);
		mfs_oci_gen_free(o, g);
	}
}

/**
 * model_refresh() - resolve @mo's reference again; link a new version if it moved
 * @o: in/out: the store
 * @mo: in/out: the model
 * A pinned digest that was served is never resolved again. A move is taken
 * only to a version whose signature verifies against the trust set (the
 * reload then checks it in full, as any changed model); anything else is
 * logged and the current version kept.
 * Return: 1 if a new version was linked, else 0.
 */
static int model_refresh(struct oci_store *o, struct oci_model *mo)
{
	struct oci_gen *cur = mo->gen, *g = NULL;
	struct mfr_client *c = NULL;
	struct mv_err e = {0};
	char q[512], w[512];
	int ret;

	if (mo->ref.digest[0] && cur->man)
		return 0;
	g = gen_new(mo);
	if (!g)
		return 0;
	ret = mfr_client_new(&mo->ref, &o->copts, &c, &e);
	if (!ret)
		ret = gen_fetch(o, g, c, cur->man ? cur->digest : NULL, true, &e);
	mfr_client_free(c);
	if (!ret) {
		pthread_rwlock_wrlock(&o->ents_lock);
		ret = slots_assign(o, g);
		if (!ret)
			ret = gen_link(o, g, &e);
		if (!ret) {
			cur->retired = true;
			cur->next = mo->retired;
			mo->retired = cur;
			mo->gen = g;
		}
		pthread_rwlock_unlock(&o->ents_lock);
	}
	if (ret < 0)
		mfs_log(LOG_ERR, "oci-refresh-failure model=%s reference=%s reason=%s (kept %s)",
		        mfs_log_value(mo->path, q, sizeof(q)), mo->uri,
		        mfs_log_value(e.msg[0] ? e.msg : strerror(-ret), w, sizeof(w)),
		        cur->man ? cur->digest : "the failed version");
	else if (!ret)
		mfs_log(LOG_NOTICE, "oci-moved model=%s reference=%s from=%s to=%s",
		        mfs_log_value(mo->path, q, sizeof(q)), mo->uri,
		        cur->man ? cur->digest : "failed", g->digest);
	if (ret) {
		pthread_rwlock_wrlock(&o->ents_lock);
		mfs_oci_gen_free(o, g);
		pthread_rwlock_unlock(&o->ents_lock);
		return 0;
	}
	return 1;
}

int mfs_oci_refresh(struct mfs_bstore *s)
{
	struct oci_store *o = s->priv;
	int moved = 0;

	pthread_rwlock_wrlock(&o->ents_lock);
	for (size_t i = 0; i < o->n_models; i++)
		retired_sweep(o, &o->models[i]);
	pthread_rwlock_unlock(&o->ents_lock);
	for (size_t i = 0; i < o->n_models; i++)
		moved += model_refresh(o, &o->models[i]);
	return moved;
}
