// SPDX-License-Identifier: Apache-2.0
/*
 * push.c - `modelfs push`: a verified model to a registry (docs/remote.md).
 *
 * Order: every file as a raw layer (skipped if the registry has the blob),
 * the ModelPack config, the manifest by tag; then the signature and the
 * trees as the referrer's layers, the referrer by digest, and the referrers
 * tag schema index when the registry has no referrers API. A file is
 * streamed while hashed: if its SHA-256 is not the signed one (it changed
 * after verification) the upload aborts before its last byte.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "push_int.h"

#define CHUNK        (1u << 20)
#define EMPTY_DIGEST "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

/* A file streamed as an upload body, hashed on the way. */
struct file_body {
	int fd;
	uint64_t size, off;
	EVP_MD_CTX *md;
	const char *want; /* "sha256:HEX" it must hash to */
	const char *what; /* for messages: REF: FILE */
	struct mv_err *err;
};

/* At the last byte: the whole file must hash to fb->want and not have grown. */
static int finish(struct file_body *fb)
{
	uint8_t sum[32], extra;
	char got[MFR_DIGEST_LEN + 1] = "sha256:";
	unsigned len = 0;

	if (pread(fb->fd, &extra, 1, (off_t)fb->size) != 0)
		return mv_err_set(fb->err, -EBADMSG, "%s: changed since it was verified (grew)",
		                  fb->what);
	if (!EVP_DigestFinal_ex(fb->md, sum, &len) || len != 32)
		return mv_err_set(fb->err, -EIO, "%s: SHA-256 failed", fb->what);
	mv_hex_encode(sum, 32, got + 7);
	if (strcmp(got, fb->want) != 0)
		return mv_err_set(fb->err, -EBADMSG,
		                  "%s: SHA-256 differs from the signed one: changed since it was "
		                  "verified; upload aborted",
		                  fb->what);
	return 0;
}

static ssize_t file_read(void *ctx, void *buf, size_t len)
{
	struct file_body *fb = ctx;
	size_t n = fb->size - fb->off < len ? (size_t)(fb->size - fb->off) : len;
	ssize_t r;

	if (!n)
		return 0;
	r = mv_pread_full(fb->fd, buf, n, fb->off);
	if (r < 0)
		return mv_err_set(fb->err, (int)r, "%s: read failed: %s", fb->what,
		                  strerror((int)-r));
	if ((size_t)r != n)
		return mv_err_set(fb->err, -EBADMSG, "%s: changed since it was verified (shrank)",
		                  fb->what);
	EVP_DigestUpdate(fb->md, buf, n);
	fb->off += n;
	if (fb->off == fb->size) {
		int ret = finish(fb);

		if (ret)
			return ret;
	}
	return r;
}

static int file_rewind(void *ctx)
{
	struct file_body *fb = ctx;

	fb->off = 0;
	return EVP_DigestInit_ex(fb->md, EVP_sha256(), NULL) ? 0 : -EIO;
}

/* Uploads @fd (@size bytes, must hash to @digest) unless the registry has it. */
static int put_blob_fd(struct mfr_client *c, int fd, uint64_t size, const char *digest,
                       const char *what, struct mfr_push_result *res, struct mv_err *err)
{
	struct file_body fb = {.fd = fd, .size = size, .want = digest, .what = what, .err = err};
	const struct mfr_body body = {
	    .size = size, .read = file_read, .rewind = file_rewind, .ctx = &fb};
	bool exists = false;
	int ret = mfr_blob_exists(c, digest, size, &exists, err);

	if (ret || exists)
		return ret;
	fb.md = EVP_MD_CTX_new();
	ret = fb.md && !file_rewind(&fb) ? mfr_blob_upload(c, digest, &body, err) : -ENOMEM;
	EVP_MD_CTX_free(fb.md);
	if (!ret) {
		res->n_uploaded++;
		res->bytes_uploaded += size;
	}
	return ret;
}

/* The same for bytes in memory (config, model.sig). */
static int put_blob_mem(struct mfr_client *c, const void *data, size_t len, const char *digest,
                        struct mfr_push_result *res, struct mv_err *err)
{
	bool exists = false;
	int ret = mfr_blob_exists(c, digest, len, &exists, err);

	if (ret || exists)
		return ret;
	ret = mfr_blob_upload_mem(c, digest, data, len, err);
	if (!ret) {
		res->n_uploaded++;
		res->bytes_uploaded += len;
	}
	return ret;
}

/* Opens MODEL/@name read-only, a regular file; its size in *@size. */
static int open_regular(const char *dir, const char *name, const char *what, int *fd,
                        uint64_t *size, struct mv_err *err)
{
	char *path = NULL;
	struct stat st;
	int ret = 0;

	if (asprintf(&path, "%s/%s", dir, name) < 0)
		return -ENOMEM;
	*fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (*fd < 0 || fstat(*fd, &st) || !S_ISREG(st.st_mode)) {
		ret = *fd < 0 ? -errno : -EINVAL;
		if (ret != -ENOENT) /* absent: the caller looks for a packed copy */
			mv_err_set(err, ret, "%s: cannot open %s as a regular file", what, name);
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
	}
	*size = ret ? 0 : (uint64_t)st.st_size;
	free(path);
	return ret;
}

static int hash_fd(int fd, uint64_t size, char out[MFR_DIGEST_LEN + 1]);

/*
 * A file stored only packed (`modelfs pack --remove-original`): its packed
 * copy, MODEL/.modelfs/packed/<digest>.zst, open in *@fd, its size and the
 * SHA-256 of its bytes (the layer's digest) in @digest. The copy was
 * measured against the signed root when the model verified (cmd_push.c).
 */
static int open_packed(const char *dir, const struct mv_resource *r, const char *what, int *fd,
                       uint64_t *size, char digest[MFR_DIGEST_LEN + 1], struct mv_err *err)
{
	char path[4096];
	struct stat st;
	int ret;

	if (!r->has_merkle || mv_zpack_path(dir, r, path, sizeof(path)))
		return mv_err_set(err, -ENOENT, "%s: %s: no such file, and no packed copy", what,
		                  r->name);
	*fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (*fd < 0 || fstat(*fd, &st) || !S_ISREG(st.st_mode)) {
		ret = *fd < 0 ? -errno : -EINVAL;
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		return mv_err_set(err, ret, "%s: %s: no such file, and no packed copy (%s)", what,
		                  r->name, strerror(-ret));
	}
	*size = (uint64_t)st.st_size;
	ret = hash_fd(*fd, *size, digest);
	if (ret)
		mv_err_set(err, ret, "%s: %s: %s", what, path, strerror(-ret));
	return ret;
}

/* One signed file: its layer in @layers, its bytes in the registry (packed, if only so). */
static int push_file(struct mfr_client *c, const char *dir, const struct mv_manifest *m,
                     const struct mv_resource *r, cJSON *layers, struct mfr_push_result *res,
                     struct mv_err *err)
{
	char digest[MFR_DIGEST_LEN + 1] = "sha256:", *what = NULL;
	bool packed = false;
	uint64_t size;
	cJSON *layer;
	int fd = -1, ret = -ENOMEM;

	mv_hex_encode(r->sha256, 32, digest + 7);
	if (asprintf(&what, "%s/%s", c->ref.registry, r->name) < 0)
		goto out;
	ret = open_regular(dir, r->name, what, &fd, &size, err);
	if (ret == -ENOENT) {
		packed = true;
		ret = open_packed(dir, r, what, &fd, &size, digest, err);
	}
	if (ret)
		goto out;
	if (!packed && r->has_merkle && size != r->merkle.params.data_size) {
		ret = mv_err_set(err, -EBADMSG, "%s: size differs from the signed one", r->name);
		goto out;
	}
	ret = put_blob_fd(c, fd, size, digest, r->name, res, err);
	if (ret)
		goto out;
	layer = mfr_layer_json(r, packed ? MFR_MT_PACKED : NULL, digest, size,
	                       m->prov.signed_at ? m->prov.signed_at : "1970-01-01T00:00:00Z");
	ret = layer && cJSON_AddItemToArray(layers, layer) ? 0 : -ENOMEM;
	res->n_layers++;
out:
	if (fd >= 0)
		close(fd);
	free(what);
	return ret;
}

/* The config blob, its descriptor in *@desc. */
static int push_config(struct mfr_client *c, const struct mv_manifest *m, const cJSON *layers,
                       cJSON **desc, struct mfr_push_result *res, struct mv_err *err)
{
	char *cfg = mfr_config_json(m, layers);
	char digest[MFR_DIGEST_LEN + 1];
	int ret = -ENOMEM;

	if (!cfg)
		goto out;
	mfr_digest_of(cfg, strlen(cfg), digest);
	ret = put_blob_mem(c, cfg, strlen(cfg), digest, res, err);
	if (ret)
		goto out;
	*desc = mfr_desc_json(MFR_MT_MODEL_CONFIG, digest, strlen(cfg));
	ret = *desc ? 0 : -ENOMEM;
out:
	cJSON_free(cfg);
	return ret;
}

/* PUTs manifest text @json under @ref (a tag, or its digest when NULL). */
static int put_manifest(struct mfr_client *c, const char *json, const char *ref,
                        char digest[MFR_DIGEST_LEN + 1], struct mv_err *err)
{
	mfr_digest_of(json, strlen(json), digest);
	return mfr_manifest_put(c, ref ? ref : digest, MFR_MT_MANIFEST, json, strlen(json), err);
}

/* The model manifest: every file, the config; pushed by tag. */
static int push_model(struct mfr_client *c, const struct mfr_ref *ref, const char *dir,
                      const struct mv_manifest *m, char **json, struct mfr_push_result *res,
                      struct mv_err *err)
{
	cJSON *layers = cJSON_CreateArray(), *config = NULL;
	int ret = layers ? 0 : -ENOMEM;

	for (size_t i = 0; !ret && i < m->n_res; i++)
		ret = push_file(c, dir, m, &m->res[i], layers, res, err);
	if (!ret)
		ret = push_config(c, m, layers, &config, res, err);
	if (ret)
		goto out;
	*json = mfr_manifest_json(MFR_AT_MODEL, config, layers, NULL);
	ret = *json ? put_manifest(c, *json, ref->tag, res->manifest_digest, err) : -ENOMEM;
out:
	cJSON_Delete(layers);
	cJSON_Delete(config);
	return ret;
}

/* model.sig as the referrer's first layer. */
static int push_sig(struct mfr_client *c, const char *dir, cJSON *layers,
                    struct mfr_push_result *res, struct mv_err *err)
{
	char *path = NULL, *sig = NULL, digest[MFR_DIGEST_LEN + 1];
	size_t len = 0;
	cJSON *d;
	int ret = -ENOMEM;

	if (asprintf(&path, "%s/%s", dir, MV_SIG_NAME) < 0)
		goto out;
	ret = mv_read_file(path, MV_MAX_SIG_SIZE, &sig, &len, err);
	if (ret)
		goto out;
	mfr_digest_of(sig, len, digest);
	ret = put_blob_mem(c, sig, len, digest, res, err);
	if (ret)
		goto out;
	d = mfr_desc_json(MFR_MT_BUNDLE, digest, len);
	ret = d && cJSON_AddItemToArray(layers, d) ? 0 : -ENOMEM;
	if (!ret)
		cJSON_AddItemToObject(d, "annotations", cJSON_CreateObject());
	if (!ret)
		cJSON_AddStringToObject(cJSON_GetObjectItem(d, "annotations"), MFR_ANN_TITLE,
		                        MV_SIG_NAME);
out:
	free(path);
	free(sig);
	return ret;
}

/* The SHA-256 of @fd's @size bytes as "sha256:HEX". */
static int hash_fd(int fd, uint64_t size, char out[MFR_DIGEST_LEN + 1])
{
	uint8_t *buf = malloc(CHUNK), sum[32];
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint64_t off = 0;
	int ret = buf && md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) ? 0 : -ENOMEM;

	while (!ret && off < size) {
		size_t n = size - off < CHUNK ? (size_t)(size - off) : CHUNK;
		ssize_t r = mv_pread_full(fd, buf, n, off);

		ret = r < 0 ? (int)r : (size_t)r != n ? -EBADMSG : 0;
		if (!ret)
			EVP_DigestUpdate(md, buf, n);
		off += n;
	}
	if (!ret && !EVP_DigestFinal_ex(md, sum, NULL))
		ret = -EIO;
	if (!ret) {
		memcpy(out, "sha256:", 7);
		mv_hex_encode(sum, 32, out + 7);
	}
	EVP_MD_CTX_free(md);
	free(buf);
	return ret;
}

/* The tree of @r, if the model has one, as a layer of the referrer. */
static int push_tree(struct mfr_client *c, const char *dir, const struct mv_resource *r,
                     cJSON *layers, struct mfr_push_result *res, struct mv_err *err)
{
	char path[4096], digest[MFR_DIGEST_LEN + 1];
	const char *base;
	uint64_t size;
	cJSON *d, *ann;
	int fd = -1, ret;

	if (!r->has_merkle || mv_tree_path(dir, r, path, sizeof(path)))
		return 0;
	base = strrchr(path, '/') + 1;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : mv_err_set(err, -errno, "%s: cannot open", path);
	ret = hash_fd(fd, size = (uint64_t)lseek(fd, 0, SEEK_END), digest);
	if (!ret)
		ret = put_blob_fd(c, fd, size, digest, base, res, err);
	if (ret)
		goto out;
	d = mfr_desc_json(MFR_MT_TREE, digest, size);
	ann = d ? cJSON_AddObjectToObject(d, "annotations") : NULL;
	ret = ann && cJSON_AddStringToObject(ann, MFR_ANN_TITLE, base) &&
	              cJSON_AddStringToObject(ann, MFR_ANN_TREE_OF, r->name) &&
	              cJSON_AddItemToArray(layers, d)
	          ? 0
	          : -ENOMEM;
out:
	close(fd);
	return ret;
}

/* Adds the referrer to the tag schema index sha256-HEX of the subject. */
static int update_tag_index(struct mfr_client *c, const char *subject, cJSON *referrer,
                            struct mv_err *err)
{
	char *body = NULL, *json = NULL, tag[MFR_DIGEST_LEN + 1];
	size_t len = 0;
	bool api = false;
	cJSON *root = NULL, *list, *it;
	const char *want = cJSON_GetObjectItem(referrer, "digest")->valuestring;
	int ret = mfr_referrers_get(c, subject, &body, &len, &api, err);

	if (ret || api)
		goto out;
	root = cJSON_ParseWithLength(body, len);
	list = cJSON_GetObjectItemCaseSensitive(root, "manifests");
	cJSON_ArrayForEach(it, list)
	{
		const cJSON *dg = cJSON_GetObjectItemCaseSensitive(it, "digest");

		if (cJSON_IsString(dg) && strcmp(dg->valuestring, want) == 0)
			goto out; /* already listed */
	}
	ret = -ENOMEM;
	if (!cJSON_AddItemReferenceToArray(list, referrer))
		goto out;
	cJSON_DeleteItemFromObjectCaseSensitive(root, "mediaType");
	cJSON_AddStringToObject(root, "mediaType", MFR_MT_INDEX);
	json = cJSON_PrintUnformatted(root);
	snprintf(tag, sizeof(tag), "sha256-%s", subject + 7);
	ret = json ? mfr_manifest_put(c, tag, MFR_MT_INDEX, json, strlen(json), err) : -ENOMEM;
out:
	cJSON_Delete(root);
	cJSON_free(json);
	free(body);
	return ret ? ret : api ? 0 : 1;
}

/* The referrer: model.sig and the trees, subject = the model manifest. */
static int push_referrer(struct mfr_client *c, const char *dir, const struct mv_manifest *m,
                         const char *model_json, struct mfr_push_result *res, struct mv_err *err)
{
	cJSON *layers = cJSON_CreateArray(), *config = NULL, *subject = NULL, *entry = NULL;
	char *json = NULL;
	int ret = layers ? push_sig(c, dir, layers, res, err) : -ENOMEM;

	for (size_t i = 0; !ret && i < m->n_res; i++)
		ret = push_tree(c, dir, &m->res[i], layers, res, err);
	if (!ret)
		ret = put_blob_mem(c, "{}", 2, EMPTY_DIGEST, res, err);
	if (ret)
		goto out;
	ret = -ENOMEM;
	config = mfr_desc_json(MFR_MT_EMPTY, EMPTY_DIGEST, 2);
	subject = mfr_desc_json(MFR_MT_MANIFEST, res->manifest_digest, strlen(model_json));
	json = config && subject ? mfr_manifest_json(MFR_MT_BUNDLE, config, layers, subject) : NULL;
	if (!json)
		goto out;
	ret = put_manifest(c, json, NULL, res->referrer_digest, err);
	entry = ret ? NULL : mfr_desc_json(MFR_MT_MANIFEST, res->referrer_digest, strlen(json));
	if (!ret && !(entry && cJSON_AddStringToObject(entry, "artifactType", MFR_MT_BUNDLE)))
		ret = -ENOMEM;
	if (!ret)
		ret = update_tag_index(c, res->manifest_digest, entry, err);
	res->tag_schema = ret == 1;
	ret = ret == 1 ? 0 : ret;
out:
	cJSON_Delete(layers);
	cJSON_Delete(config);
	cJSON_Delete(subject);
	cJSON_Delete(entry);
	cJSON_free(json);
	return ret;
}

int mfr_push(struct mfr_client *c, const struct mfr_ref *ref, const char *model_dir,
             const struct mv_manifest *m, struct mfr_push_result *res, struct mv_err *err)
{
	char *model_json = NULL;
	struct stat st;
	int ret;

	memset(res, 0, sizeof(*res));
	if (!ref->tag || ref->digest[0]) {
		ret = mv_err_set(err, -EINVAL, "%s/%s: push needs a tag and no digest",
		                 ref->registry, ref->repo);
		goto out;
	}
	if (stat(model_dir, &st) || !S_ISDIR(st.st_mode)) {
		ret = mv_err_set(err, -EINVAL, "%s: push needs a model folder", model_dir);
		goto out;
	}
	ret = push_model(c, ref, model_dir, m, &model_json, res, err);
	if (!ret)
		ret = push_referrer(c, model_dir, m, model_json, res, err);
out:
	cJSON_free(model_json);
	return ret;
}
