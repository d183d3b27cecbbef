// SPDX-License-Identifier: Apache-2.0
/*
 * http.c - one HTTP exchange with a registry, on libcurl (docs/dependencies.md).
 *
 * TLS is verified (system CAs, or the client's CA file); plain http is
 * allowed only where mfr_client_new() allowed it. Redirects are followed by
 * libcurl within the allowed protocols, and libcurl (>= 7.58) does not send
 * our Authorization header to another host or port (CURLOPT_UNRESTRICTED_AUTH
 * stays off). A connect timeout and a low-speed limit bound every transfer;
 * response bodies are bounded by the request. Nothing here is logged:
 * headers carry secrets.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "remote_int.h"

struct xfer {
	const struct mfr_req *rq;
	struct mfr_resp *rs;
	size_t cap;
	int body_err; /* the request body's reader failed */
	bool too_big; /* the response went over rq->max_body */
	bool hdr_big;
};

void mfr_resp_free(struct mfr_resp *r)
{
	if (!r)
		return;
	free(r->body);
	free(r->www_auth);
	free(r->location);
	free(r->content_type);
	free(r->digest);
	memset(r, 0, sizeof(*r));
}

/* Keeps the response body, at most rq->max_body bytes. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct xfer *x = ctx;
	size_t n = size * nmemb;

	if (n > x->rq->max_body || x->rs->len > x->rq->max_body - n) {
		x->too_big = true;
		return 0; /* aborts the transfer */
	}
	if (x->rs->len + n + 1 > x->cap) {
		size_t cap = x->cap ? x->cap : 4096;
		char *p;

		while (cap < x->rs->len + n + 1)
			cap *= 2;
		p = realloc(x->rs->body, cap);
		if (!p)
			return 0;
		x->rs->body = p;
		x->cap = cap;
	}
	memcpy(x->rs->body + x->rs->len, data, n);
	x->rs->len += n;
	x->rs->body[x->rs->len] = '\0';
	return n;
}

/* Stores the value of header line @line (@n bytes) named @name in *@slot. */
static bool take_header(const char *line, size_t n, const char *name, char **slot)
{
	size_t k = strlen(name);

	if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':')
		return false;
	line += k + 1;
	n -= k + 1;
	while (n && (*line == ' ' || *line == '\t'))
		line++, n--;
	while (n && (line[n - 1] == '\r' || line[n - 1] == '\n' || line[n - 1] == ' '))
		n--;
	if (!*slot)
		*slot = strndup(line, n);
	return true;
}

/* Headers of each hop; a new status line (a redirect's target) starts over. */
static size_t on_header(char *line, size_t size, size_t nmemb, void *ctx)
{
	struct xfer *x = ctx;
	struct mfr_resp *r = x->rs;
	size_t n = size * nmemb;

	if (n > MFR_HEADER_MAX) {
		x->hdr_big = true;
		return 0;
	}
	if (n >= 5 && strncmp(line, "HTTP/", 5) == 0) {
		char *body = r->body;

		r->body = NULL;
		mfr_resp_free(r);
		free(body);
		x->cap = 0;
		return n;
	}
	if (take_header(line, n, "WWW-Authenticate", &r->www_auth) ||
	    take_header(line, n, "Location", &r->location) ||
	    take_header(line, n, "Content-Type", &r->content_type) ||
	    take_header(line, n, "Docker-Content-Digest", &r->digest))
		return n;
	if (n > 12 && strncasecmp(line, "OCI-Subject:", 12) == 0)
		r->oci_subject = true;
	return n;
}

/* Feeds the request body; a reader error aborts before the last byte. */
static size_t on_read(char *buf, size_t size, size_t nmemb, void *ctx)
{
	struct xfer *x = ctx;
	ssize_t n = x->rq->body->read(x->rq->body->ctx, buf, size * nmemb);

	if (n < 0) {
		x->body_err = (int)n;
		return CURL_READFUNC_ABORT;
	}
	return (size_t)n;
}

/* The protocols allowed for the client: https, and http where permitted. */
static const char *protocols(const struct mfr_client *c)
{
	return strncmp(c->base, "http://", 7) == 0 ? "http,https" : "https";
}

/* The method and body options of @rq. */
static void set_method(CURL *h, const struct mfr_req *rq, struct xfer *x)
{
	if (strcmp(rq->method, "HEAD") == 0) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (strcmp(rq->method, "POST") == 0) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
	} else if (strcmp(rq->method, "PUT") == 0) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE,
		                 (curl_off_t)(rq->body ? rq->body->size : 0));
		if (rq->body) {
			curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
			curl_easy_setopt(h, CURLOPT_READDATA, x);
		}
	}
}

/* The headers of @rq: Authorization, Content-Type, Accept. */
static struct curl_slist *make_headers(const struct mfr_client *c, const struct mfr_req *rq)
{
	struct curl_slist *l = NULL, *t;
	char line[512];
	const char *auth = rq->auth ? rq->auth : c->auth;

	if (auth && !rq->no_auth && (t = curl_slist_append(l, auth)))
		l = t;
	if (rq->content_type) {
		snprintf(line, sizeof(line), "Content-Type: %s", rq->content_type);
		if ((t = curl_slist_append(l, line)))
			l = t;
	}
	if (rq->accept) {
		snprintf(line, sizeof(line), "Accept: %s", rq->accept);
		if ((t = curl_slist_append(l, line)))
			l = t;
	}
	return l;
}

/* Sets every option of one exchange on the (reset) handle. */
static void set_options(struct mfr_client *c, const struct mfr_req *rq, struct xfer *x,
                        struct curl_slist *hdrs)
{
	CURL *h = c->curl;

	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, rq->url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, protocols(c));
	curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, protocols(c));
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(h, CURLOPT_UNRESTRICTED_AUTH, 0L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, c->connect_timeout_s);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, c->low_speed_time_s);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "modelfs/" MV_VERSION);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (c->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
	set_method(h, rq, x);
}

/* A negative errno and a reason for a failed transfer. */
static int map_curl(CURLcode rc, const struct xfer *x, const char **why)
{
	if (x->body_err) {
		*why = "the upload's source failed";
		return x->body_err;
	}
	if (x->too_big || x->hdr_big) {
		*why =
		    x->too_big ? "response body over the size limit" : "response header too long";
		return -E2BIG;
	}
	*why = curl_easy_strerror(rc);
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT: return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT: return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST: return -EHOSTUNREACH;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_UNSUPPORTED_PROTOCOL: return -EPROTO;
	case CURLE_OUT_OF_MEMORY: return -ENOMEM;
	default: return -EIO;
	}
}

int mfr_http(struct mfr_client *c, const struct mfr_req *rq, struct mfr_resp *rs,
             struct mv_err *err)
{
	struct xfer x = {.rq = rq, .rs = rs};
	struct curl_slist *hdrs = make_headers(c, rq);
	const char *why;
	CURLcode rc;
	int ret = 0;

	memset(rs, 0, sizeof(*rs));
	set_options(c, rq, &x, hdrs);
	rc = curl_easy_perform(c->curl);
	if (rc != CURLE_OK) {
		ret = map_curl(rc, &x, &why);
		mv_err_set(err, ret, "%s: %s %s failed: %s", c->ref.registry, rq->method,
		           strchr(rq->url + 8, '/') ? strchr(rq->url + 8, '/') : "/", why);
		mfr_resp_free(rs);
		goto out;
	}
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &rs->status);
out:
	curl_slist_free_all(hdrs);
	return ret;
}

int mfr_request(struct mfr_client *c, const struct mfr_req *rq, struct mfr_resp *rs,
                struct mv_err *err)
{
	int ret = mfr_http(c, rq, rs, err);

	if (ret || rs->status != 401 || rq->no_auth)
		goto out;
	ret = mfr_auth_answer(c, rs->www_auth, err);
	if (ret)
		goto out;
	if (rq->body && !rq->body->rewind) {
		ret =
		    mv_err_set(err, -EACCES, "%s: authentication asked in the middle of an upload",
		               c->ref.registry);
		goto out;
	}
	if (rq->body && (ret = rq->body->rewind(rq->body->ctx)))
		goto out;
	mfr_resp_free(rs);
	ret = mfr_http(c, rq, rs, err);
	if (!ret && rs->status == 401)
		ret = mv_err_set(err, -EACCES, "%s: authentication failed (HTTP 401)",
		                 c->ref.registry);
out:
	if (ret)
		mfr_resp_free(rs);
	return ret;
}
