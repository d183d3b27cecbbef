// SPDX-License-Identifier: Apache-2.0
/*
 * oci.c - the client and the OCI distribution calls: blob HEAD and upload,
 * manifest PUT and GET (a GET by digest checks the body's SHA-256), and the
 * referrers API with its fallback to the referrers tag schema.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "remote_int.h"

#define ACCEPT_MANIFESTS MFR_MT_MANIFEST ", " MFR_MT_INDEX

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* "https://registry" or "http://registry" after checking plain http is allowed. */
static int make_base(struct mfr_client *c, const struct mfr_client_opts *o, struct mv_err *err)
{
	if (c->ref.plain_http && !o->insecure && !mfr_host_is_loopback(c->ref.host))
		return mv_err_set(
		    err, -EPERM,
		    "%s: plain HTTP refused to a host that is not loopback (--insecure "
		    "allows it)",
		    c->ref.registry);
	if (asprintf(&c->base, "%s://%s", c->ref.plain_http ? "http" : "https", c->ref.registry) <
	    0)
		return -ENOMEM;
	return 0;
}

/* Copies @ref into @c (deep). */
static int copy_ref(struct mfr_client *c, const struct mfr_ref *ref)
{
	c->ref.registry = strdup(ref->registry);
	c->ref.host = strdup(ref->host);
	c->ref.repo = strdup(ref->repo);
	c->ref.tag = ref->tag ? strdup(ref->tag) : NULL;
	memcpy(c->ref.digest, ref->digest, sizeof(c->ref.digest));
	c->ref.plain_http = ref->plain_http;
	if (!c->ref.registry || !c->ref.host || !c->ref.repo || (ref->tag && !c->ref.tag))
		return -ENOMEM;
	return 0;
}

int mfr_client_new(const struct mfr_ref *ref, const struct mfr_client_opts *o,
                   struct mfr_client **out, struct mv_err *err)
{
	static const struct mfr_client_opts none = {0};
	struct mfr_client *c = calloc(1, sizeof(*c));
	int ret = -ENOMEM;
	long t;

	*out = NULL;
	o = o ? o : &none;
	pthread_once(&curl_once, curl_init);
	if (!c || copy_ref(c, ref))
		goto out;
	ret = make_base(c, o, err);
	if (ret)
		goto out;
	t = mfr_env_timeout();
	c->connect_timeout_s = o->connect_timeout_s > 0 ? o->connect_timeout_s : t ? t : 15;
	c->low_speed_time_s = o->low_speed_time_s > 0 ? o->low_speed_time_s : t ? t : 30;
	ret = -ENOMEM;
	if (o->ca_file && !(c->ca_file = strdup(o->ca_file)))
		goto out;
	c->curl = curl_easy_init();
	if (!c->curl)
		goto out;
	ret = mfr_auth_lookup(c->ref.registry, o->auth_files, o->n_auth_files, &c->basic, err);
out:
	if (ret) {
		mv_err_set(err, ret, "%s: cannot set up a client: %s", ref->registry,
		           strerror(-ret));
		mfr_client_free(c);
		return ret;
	}
	*out = c;
	return 0;
}

void mfr_client_free(struct mfr_client *c)
{
	if (!c)
		return;
	if (c->curl)
		curl_easy_cleanup(c->curl);
	mfr_free_secret(c->basic);
	mfr_free_secret(c->auth);
	free(c->ca_file);
	free(c->base);
	mfr_ref_free(&c->ref);
	free(c);
}

const char *mfr_client_registry(const struct mfr_client *c)
{
	return c->ref.registry;
}

/* "BASE/v2/REPO/@kind/@what", malloc'd. */
static char *url_of(const struct mfr_client *c, const char *kind, const char *what)
{
	char *url = NULL;

	if (asprintf(&url, "%s/v2/%s/%s/%s", c->base, c->ref.repo, kind, what) < 0)
		return NULL;
	return url;
}

/* One line for an unexpected status of @what, with the retries it took. */
static int bad_status(const struct mfr_client *c, const char *what, const struct mfr_resp *rs,
                      struct mv_err *err)
{
	long status = rs->status;
	int code = status == 401 || status == 403 ? -EACCES : status == 404 ? -ENOENT : -EIO;
	const char *label = status == 403 ? "forbidden" : status == 429 ? "too many requests" : "";
	char note[192] = "";

	if (status == 429 && rs->has_retry_after && rs->retry_after_s > MFR_RETRY_AFTER_MAX)
		snprintf(note, sizeof(note), " (%s; Retry-After %ld s is over the %d s it waits)",
		         label, rs->retry_after_s, MFR_RETRY_AFTER_MAX);
	else if (rs->retries)
		snprintf(note, sizeof(note), " (%s%s%d attempts)", label, *label ? "; " : "",
		         rs->retries + 1);
	else if (*label)
		snprintf(note, sizeof(note), " (%s)", label);
	return mv_err_set(err, code, "%s/%s: %s: HTTP %ld%s", c->ref.registry, c->ref.repo, what,
	                  status, note);
}

int mfr_blob_exists(struct mfr_client *c, const char *digest, uint64_t size, bool *exists,
                    struct mv_err *err)
{
	char *url = url_of(c, "blobs", digest);
	struct mfr_req rq = {
	    .method = "HEAD", .url = url, .max_body = MFR_ERRBODY_MAX, .retry = true};
	struct mfr_resp rs = {0};
	int ret = -ENOMEM;

	*exists = false;
	if (!url)
		goto out;
	ret = mfr_request(c, &rq, &rs, err);
	if (ret)
		goto out;
	if (rs.status == 200)
		*exists = true;
	else if (rs.status != 404)
		ret = bad_status(c, "blob HEAD", &rs, err);
out:
	mfr_resp_free(&rs);
	free(url);
	return ret;
}

/* The upload URL from a POST's Location (relative or absolute) plus ?digest=. */
static char *upload_url(const struct mfr_client *c, const char *loc, const char *digest)
{
	char *url = NULL, *esc = curl_escape(digest, 0);
	const char *sep = strchr(loc, '?') ? "&" : "?";
	int n;

	if (!esc)
		return NULL;
	if (loc[0] == '/')
		n = asprintf(&url, "%s%s%sdigest=%s", c->base, loc, sep, esc);
	else if (strncmp(loc, "https://", 8) == 0 || strncmp(loc, "http://", 7) == 0)
		n = asprintf(&url, "%s%sdigest=%s", loc, sep, esc);
	else
		n = -1;
	curl_free(esc);
	return n < 0 ? NULL : url;
}

/* POST /v2/NAME/blobs/uploads/: the session's Location, malloc'd in *@loc. */
static int upload_start(struct mfr_client *c, char **loc, struct mv_err *err)
{
	char *url = url_of(c, "blobs", "uploads/");
	/* a second session, if the first answer was lost, is only abandoned */
	struct mfr_req rq = {
	    .method = "POST", .url = url, .max_body = MFR_ERRBODY_MAX, .retry = true};
	struct mfr_resp rs = {0};
	int ret = -ENOMEM;

	if (!url)
		goto out;
	ret = mfr_request(c, &rq, &rs, err);
	if (ret)
		goto out;
	if (rs.status != 202) {
		ret = bad_status(c, "blob upload start", &rs, err);
		goto out;
	}
	if (!rs.location) {
		ret = mv_err_set(err, -EPROTO, "%s: blob upload start: HTTP 202 without a Location",
		                 c->ref.registry);
		goto out;
	}
	*loc = rs.location;
	rs.location = NULL;
out:
	mfr_resp_free(&rs);
	free(url);
	return ret;
}

int mfr_blob_upload(struct mfr_client *c, const char *digest, const struct mfr_body *body,
                    struct mv_err *err)
{
	struct mfr_req rq = {.method = "PUT",
	                     .content_type = "application/octet-stream",
	                     .body = body,
	                     .max_body = MFR_ERRBODY_MAX,
	                     .retry = true};
	struct mfr_resp rs = {0};
	char *loc = NULL, *url = NULL;
	int ret = upload_start(c, &loc, err);

	if (ret)
		goto out;
	url = upload_url(c, loc, digest);
	if (!url) {
		ret = mv_err_set(err, -EPROTO, "%s: blob upload start: unusable Location header",
		                 c->ref.registry);
		goto out;
	}
	rq.url = url;
	ret = mfr_request(c, &rq, &rs, err);
	if (!ret && rs.status != 201)
		ret = bad_status(c, "blob upload", &rs, err);
	if (!ret && rs.digest && strcmp(rs.digest, digest) != 0)
		ret = mv_err_set(err, -EPROTO, "%s: the registry stored %s as another digest",
		                 c->ref.registry, digest);
out:
	mfr_resp_free(&rs);
	free(loc);
	free(url);
	return ret;
}

struct mem_body {
	const char *data;
	size_t len, off;
};

static ssize_t mem_read(void *ctx, void *buf, size_t len)
{
	struct mem_body *m = ctx;
	size_t n = m->len - m->off < len ? m->len - m->off : len;

	memcpy(buf, m->data + m->off, n);
	m->off += n;
	return (ssize_t)n;
}

static int mem_rewind(void *ctx)
{
	((struct mem_body *)ctx)->off = 0;
	return 0;
}

int mfr_blob_upload_mem(struct mfr_client *c, const char *digest, const void *data, size_t len,
                        struct mv_err *err)
{
	struct mem_body m = {.data = data, .len = len};
	const struct mfr_body body = {
	    .size = len, .read = mem_read, .rewind = mem_rewind, .ctx = &m};

	return mfr_blob_upload(c, digest, &body, err);
}

/* Is @digest ("sha256:HEX") the SHA-256 of @data? */
static bool same_digest(const char *data, size_t len, const char *digest)
{
	uint8_t sum[32];
	char hex[65];

	mv_sha256(data, len, sum);
	mv_hex_encode(sum, 32, hex);
	return strncmp(digest, "sha256:", 7) == 0 && strcmp(digest + 7, hex) == 0;
}

int mfr_manifest_put(struct mfr_client *c, const char *ref, const char *media_type,
                     const char *body, size_t len, struct mv_err *err)
{
	struct mem_body m = {.data = body, .len = len};
	const struct mfr_body b = {.size = len, .read = mem_read, .rewind = mem_rewind, .ctx = &m};
	char *url = url_of(c, "manifests", ref);
	struct mfr_req rq = {.method = "PUT",
	                     .url = url,
	                     .content_type = media_type,
	                     .body = &b,
	                     .max_body = MFR_ERRBODY_MAX,
	                     .retry = true};
	struct mfr_resp rs = {0};
	int ret = -ENOMEM;

	if (!url)
		goto out;
	if (len > MFR_MANIFEST_MAX) {
		ret = mv_err_set(err, -E2BIG, "%s/%s:%s: manifest over %u bytes", c->ref.registry,
		                 c->ref.repo, ref, MFR_MANIFEST_MAX);
		goto out;
	}
	ret = mfr_request(c, &rq, &rs, err);
	if (!ret && rs.status != 201)
		ret = bad_status(c, "manifest PUT", &rs, err);
	if (!ret && rs.digest && !same_digest(body, len, rs.digest))
		ret =
		    mv_err_set(err, -EPROTO, "%s/%s:%s: the registry stored the manifest as %.80s",
		               c->ref.registry, c->ref.repo, ref, rs.digest);
out:
	mfr_resp_free(&rs);
	free(url);
	return ret;
}

/* For a GET by digest: the body's SHA-256 must be the digest asked for. */
static int check_digest(const struct mfr_client *c, const char *ref, const struct mfr_resp *rs,
                        struct mv_err *err)
{
	uint8_t sum[32];
	char hex[65];

	if (!mfr_digest_valid(ref))
		return 0;
	mv_sha256(rs->body ? rs->body : "", rs->len, sum);
	mv_hex_encode(sum, 32, hex);
	if (strcmp(ref + 7, hex) == 0)
		return 0;
	return mv_err_set(err, -EBADMSG, "%s/%s@%s: the manifest's bytes do not match its digest",
	                  c->ref.registry, c->ref.repo, ref);
}

int mfr_manifest_get(struct mfr_client *c, const char *ref, char **body, size_t *len,
                     char **media_type, struct mv_err *err)
{
	char *url = url_of(c, "manifests", ref);
	struct mfr_req rq = {.method = "GET",
	                     .url = url,
	                     .accept = ACCEPT_MANIFESTS,
	                     .max_body = MFR_MANIFEST_MAX,
	                     .retry = true};
	struct mfr_resp rs = {0};
	int ret = -ENOMEM;

	*body = NULL;
	*len = 0;
	if (!url)
		goto out;
	ret = mfr_request(c, &rq, &rs, err);
	if (!ret && rs.status != 200)
		ret = rs.status == 404 ? -ENOENT : bad_status(c, "manifest GET", &rs, err);
	if (!ret)
		ret = check_digest(c, ref, &rs, err);
	if (ret)
		goto out;
	*body = rs.body ? rs.body : strdup("");
	*len = rs.len;
	rs.body = NULL;
	if (media_type) {
		*media_type = rs.content_type;
		rs.content_type = NULL;
	}
	ret = *body ? 0 : -ENOMEM;
out:
	mfr_resp_free(&rs);
	free(url);
	return ret;
}

/* An empty index, for a subject nobody refers to yet. */
static int empty_index(char **body, size_t *len)
{
	*body = strdup("{\"schemaVersion\":2,\"mediaType\":\"" MFR_MT_INDEX "\",\"manifests\":[]}");
	*len = *body ? strlen(*body) : 0;
	return *body ? 0 : -ENOMEM;
}

/* The referrers tag schema: the index tagged sha256-HEX, or an empty one. */
static int referrers_tag(struct mfr_client *c, const char *digest, char **body, size_t *len,
                         struct mv_err *err)
{
	char tag[MFR_DIGEST_LEN + 1];
	int ret;

	snprintf(tag, sizeof(tag), "sha256-%s", digest + 7);
	ret = mfr_manifest_get(c, tag, body, len, NULL, err);
	return ret == -ENOENT ? empty_index(body, len) : ret;
}

int mfr_referrers_get(struct mfr_client *c, const char *digest, char **body, size_t *len, bool *api,
                      struct mv_err *err)
{
	char *url = url_of(c, "referrers", digest);
	struct mfr_req rq = {.method = "GET",
	                     .url = url,
	                     .accept = MFR_MT_INDEX,
	                     .max_body = MFR_MANIFEST_MAX,
	                     .retry = true};
	struct mfr_resp rs = {0};
	struct mfr_index *ix = NULL;
	bool from_api = false;
	int ret = -ENOMEM;

	*body = NULL;
	if (api)
		*api = false;
	if (!url || !mfr_digest_valid(digest))
		goto out;
	ret = mfr_request(c, &rq, &rs, err);
	if (!ret && rs.status == 404) {
		ret = referrers_tag(c, digest, body, len, err);
		goto check;
	}
	if (!ret && rs.status != 200)
		ret = bad_status(c, "referrers GET", &rs, err);
	if (ret)
		goto out;
	from_api = true;
	if (api)
		*api = true;
	*body = rs.body;
	*len = rs.len;
	rs.body = NULL;
	if (!*body)
		ret = empty_index(body, len);
check:
	/* what the registry sent is malformed: a registry error, not -EBADMSG */
	if (!ret && *body && mfr_index_parse(*body, *len, &ix, NULL))
		ret =
		    mv_err_set(err, -EPROTO, "%s/%s: the referrers of %s: not a valid OCI index%s",
		               c->ref.registry, c->ref.repo, digest,
		               from_api ? "" : " (referrers tag schema)");
out:
	if (ret) {
		free(*body);
		*body = NULL;
	}
	mfr_index_free(ix);
	mfr_resp_free(&rs);
	free(url);
	return ret;
}
