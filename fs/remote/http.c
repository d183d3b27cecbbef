// SPDX-License-Identifier: Apache-2.0
/*
 * http.c - one HTTP exchange with a registry, on libcurl (docs/dependencies.md),
 * and the retries and auth flow around it (docs/remote.md "Faults").
 *
 * TLS is verified (system CAs, or the client's CA file); plain http is
 * allowed only where mfr_client_new() allowed it. The client's Authorization
 * header goes only to the registry's own origin (scheme, host and port):
 * not to an upload Location on another host, and, on a redirect, libcurl
 * (>= 7.83 also for a port change) drops it for another origin since
 * CURLOPT_UNRESTRICTED_AUTH stays off. A 401 from another origin is never
 * answered. A connect timeout and a low-speed limit bound every transfer;
 * response bodies are bounded by the request, headers by MFR_HEADER_MAX
 * each and HEADERS_MAX per hop. Idempotent requests are retried, bounded.
 * Nothing here is logged: headers carry secrets.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "remote_int.h"

#define HEADERS_MAX (64u << 10) /* all the header lines of one hop */
#define MAX_REDIRS  5L

struct xfer {
	const struct mfr_req *rq;
	struct mfr_resp *rs;
	CURL *curl; /* the handle, for the status of the response being read */
	size_t cap;
	size_t hdr_total; /* header bytes of this hop */
	int body_err;     /* the request body's reader failed */
	bool too_big;     /* the response went over rq->max_body */
	bool hdr_big;
	char errbuf[CURL_ERROR_SIZE];
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
	free(r->content_range);
	free(r->foreign);
	memset(r, 0, sizeof(*r));
}

long mfr_env_timeout(void)
{
	const char *v = getenv("MODELFS_HTTP_TIMEOUT");
	char *end;
	long s;

	if (!v || !*v)
		return 0;
	errno = 0;
	s = strtol(v, &end, 10);
	return !errno && !*end && s >= 1 && s <= 3600 ? s : 0;
}

/* Keeps the response body, at most rq->max_body bytes. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct xfer *x = ctx;
	size_t n = size * nmemb, limit = x->rq->max_body;
	long code = 0;

	/*
	 * max_body bounds what the caller asked for: a small blob's bytes. An
	 * error's body (a 401's JSON before the auth flow answers it) may be
	 * longer than that and is bounded by MFR_ERRBODY_MAX instead.
	 */
	curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &code);
	if ((code < 200 || code > 299) && limit < MFR_ERRBODY_MAX)
		limit = MFR_ERRBODY_MAX;
	if (n > limit || x->rs->len > limit - n) {
		x->too_big = true;
		return 0; /* aborts the transfer */
	}
	if (x->rs->len + n + 1 > x->cap) {
		/*
		 * A ranged GET's body is the range asked: allocated once, whole, so
		 * that megabytes are not copied again at each doubling (a lazy mount's
		 * fills and pull's chunks; at most 64 MiB ahead of what arrived).
		 */
		size_t cap = x->cap ? x->cap
		             : x->rq->range && code >= 200 && code <= 299 && limit < (64u << 20)
		                 ? limit + 1
		                 : 4096;
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

/*
 * Retry-After as seconds from now: delta-seconds or an HTTP date (RFC 9110
 * 10.2.3). A number too large to represent is LONG_MAX; garbage is -1.
 */
static long retry_after_of(const char *v)
{
	char *end;
	long s;
	time_t t;

	if (*v >= '0' && *v <= '9') {
		errno = 0;
		s = strtol(v, &end, 10);
		if (*end)
			return -1;
		return errno == ERANGE ? LONG_MAX : s;
	}
	t = curl_getdate(v, NULL);
	if (t == (time_t)-1)
		return -1;
	return t > time(NULL) ? (long)(t - time(NULL)) : 0;
}

/* Headers of each hop; a new status line (a redirect's target) starts over. */
static size_t on_header(char *line, size_t size, size_t nmemb, void *ctx)
{
	struct xfer *x = ctx;
	struct mfr_resp *r = x->rs;
	size_t n = size * nmemb;
	char *ra = NULL;

	x->hdr_total += n;
	if (n > MFR_HEADER_MAX || x->hdr_total > HEADERS_MAX) {
		x->hdr_big = true;
		return 0;
	}
	if (n >= 5 && strncmp(line, "HTTP/", 5) == 0) {
		char *body = r->body;

		r->body = NULL;
		mfr_resp_free(r);
		free(body);
		x->cap = 0;
		x->hdr_total = n;
		return n;
	}
	if (take_header(line, n, "WWW-Authenticate", &r->www_auth) ||
	    take_header(line, n, "Location", &r->location) ||
	    take_header(line, n, "Content-Type", &r->content_type) ||
	    take_header(line, n, "Docker-Content-Digest", &r->digest) ||
	    take_header(line, n, "Content-Range", &r->content_range))
		return n;
	if (take_header(line, n, "Retry-After", &ra)) {
		long s = ra ? retry_after_of(ra) : -1;

		if (s >= 0) {
			r->has_retry_after = true;
			r->retry_after_s = s;
		}
		free(ra);
		return n;
	}
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

/* Restarts the request body when libcurl follows a redirect (307, 308). */
static int on_seek(void *ctx, curl_off_t off, int origin)
{
	struct xfer *x = ctx;
	const struct mfr_body *b = x->rq->body;

	if (origin != SEEK_SET || off != 0 || !b || !b->rewind || b->rewind(b->ctx))
		return CURL_SEEKFUNC_CANTSEEK;
	return CURL_SEEKFUNC_OK;
}

/* The protocols allowed for the client: https, and http where permitted. */
static const char *protocols(const struct mfr_client *c)
{
	return strncmp(c->base, "http://", 7) == 0 ? "http,https" : "https";
}

/* Scheme, host and port of @url (port with the scheme's default); 0 or -1. */
static int origin_parts(const char *url, char **scheme, char **host, char **port)
{
	CURLU *u = curl_url();
	int ret = -1;

	if (u && !curl_url_set(u, CURLUPART_URL, url, 0) &&
	    !curl_url_get(u, CURLUPART_SCHEME, scheme, 0) &&
	    !curl_url_get(u, CURLUPART_HOST, host, 0) &&
	    !curl_url_get(u, CURLUPART_PORT, port, CURLU_DEFAULT_PORT))
		ret = 0;
	curl_url_cleanup(u);
	return ret;
}

/*
 * Is @url on the registry's origin? If not and @who is given, *@who is its
 * "host:port" (malloc'd) for messages.
 */
static bool same_origin(const struct mfr_client *c, const char *url, char **who)
{
	char *s1 = NULL, *h1 = NULL, *p1 = NULL, *s2 = NULL, *h2 = NULL, *p2 = NULL;
	bool same = false;

	if (!origin_parts(url, &s1, &h1, &p1) && !origin_parts(c->base, &s2, &h2, &p2))
		same = !strcasecmp(s1, s2) && !strcasecmp(h1, h2) && !strcmp(p1, p2);
	if (!same && who && h1 && p1 && asprintf(who, "%s:%s", h1, p1) < 0)
		*who = NULL;
	curl_free(s1), curl_free(h1), curl_free(p1);
	curl_free(s2), curl_free(h2), curl_free(p2);
	return same;
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
			curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
			curl_easy_setopt(h, CURLOPT_SEEKDATA, x);
		}
	}
}

/*
 * The headers of @rq: Authorization, Content-Type, Accept. The client's
 * Authorization goes only to the registry's origin; @rq->auth (the token
 * endpoint's Basic credentials) is sent where @rq says.
 */
static struct curl_slist *make_headers(const struct mfr_client *c, const struct mfr_req *rq)
{
	struct curl_slist *l = NULL, *t;
	char line[512];
	const char *auth = rq->auth;

	if (!auth && c->auth && same_origin(c, rq->url, NULL))
		auth = c->auth;
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
	if (rq->range) {
		snprintf(line, sizeof(line), "Range: %s", rq->range);
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
	curl_easy_setopt(h, CURLOPT_MAXREDIRS, MAX_REDIRS);
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
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
	set_method(h, rq, x);
}

/* A failed transfer: its negative errno, its reason, whether it may be retried. */
static int map_curl(CURLcode rc, struct xfer *x, const char **why, bool *transient)
{
	*transient = false;
	if (x->body_err) {
		*why = "the upload's source failed";
		return x->body_err;
	}
	if (x->too_big || x->hdr_big) {
		*why = x->too_big ? "response body over the size limit"
		                  : "response headers over the size limit";
		return -E2BIG;
	}
	/* libcurl's own line is more precise ("transfer closed with N bytes ..."). */
	for (char *p = x->errbuf; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	*why = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT: return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT: return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST: return -EHOSTUNREACH;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_UNSUPPORTED_PROTOCOL: return -EPROTO;
	case CURLE_OUT_OF_MEMORY: return -ENOMEM;
	case CURLE_GOT_NOTHING:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_PARTIAL_FILE: *transient = true; return -EIO;
	default: return -EIO;
	}
}

/*
 * "METHOD /path" of @url for messages, without its query (upload state);
 * with the origin too when it is not the registry's.
 */
static void describe(const struct mfr_client *c, const struct mfr_req *rq, char *out, size_t n)
{
	const char *u = rq->url, *path = strstr(u, "://");
	size_t plen;

	path = path ? strchr(path + 3, '/') : NULL;
	if (!path)
		path = "/";
	plen = strcspn(path, "?#");
	if (same_origin(c, u, NULL))
		snprintf(out, n, "%s %.*s", rq->method, (int)plen, path);
	else
		snprintf(out, n, "%s %.*s", rq->method, (int)(path - u + plen), u);
}

/* One exchange; *@transient says a failure may pass if sent again. */
static int exchange(struct mfr_client *c, const struct mfr_req *rq, struct mfr_resp *rs,
                    bool *transient, struct mv_err *err)
{
	struct xfer x = {.rq = rq, .rs = rs, .curl = c->curl};
	struct curl_slist *hdrs = make_headers(c, rq);
	char what[256];
	const char *why;
	char *eff = NULL;
	CURLcode rc;
	int ret = 0;

	*transient = false;
	memset(rs, 0, sizeof(*rs));
	set_options(c, rq, &x, hdrs);
	rc = curl_easy_perform(c->curl);
	if (rc != CURLE_OK) {
		ret = map_curl(rc, &x, &why, transient);
		describe(c, rq, what, sizeof(what));
		mv_err_set(err, ret, "%s: %s failed: %s", c->ref.registry, what, why);
		mfr_resp_free(rs);
		goto out;
	}
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &rs->status);
	if (!curl_easy_getinfo(c->curl, CURLINFO_EFFECTIVE_URL, &eff) && eff &&
	    !same_origin(c, eff, &rs->foreign) && !rs->foreign)
		rs->foreign = strdup("another host");
	*transient = rs->status == 429 || rs->status == 500 || rs->status == 502 ||
	             rs->status == 503 || rs->status == 504;
out:
	curl_slist_free_all(hdrs);
	return ret;
}

int mfr_http(struct mfr_client *c, const struct mfr_req *rq, struct mfr_resp *rs,
             struct mv_err *err)
{
	bool transient;

	return exchange(c, rq, rs, &transient, err);
}

/* Restarts @rq's body before sending it again; false if it cannot be. */
static bool can_resend(const struct mfr_req *rq)
{
	return !rq->body || (rq->body->rewind && rq->body->rewind(rq->body->ctx) == 0);
}

/* Milliseconds to wait before retry @n (1-based), or -1: do not retry. */
static long backoff_ms(const struct mfr_resp *rs, int n)
{
	if (rs->has_retry_after)
		return rs->retry_after_s <= MFR_RETRY_AFTER_MAX ? rs->retry_after_s * 1000 : -1;
	return (long)MFR_BACKOFF_MS << (n - 1);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Answers a 401 of the registry; a 401 of another host is not answered. */
static int answer_401(struct mfr_client *c, const struct mfr_resp *rs, struct mv_err *err)
{
	if (rs->foreign)
		return mv_err_set(err, -EACCES,
		                  "%s: HTTP 401 from %s, another host the registry sent us "
		                  "to: not answered (credentials go to the registry only)",
		                  c->ref.registry, rs->foreign);
	return mfr_auth_answer(c, rs->www_auth, err);
}

int mfr_request(struct mfr_client *c, const struct mfr_req *rq, struct mfr_resp *rs,
                struct mv_err *err)
{
	bool answered = false, transient = false, negotiate = !rq->no_auth && !rq->auth;
	struct mv_err e = {0};
	int ret, retries = 0;
	long wait;

	for (;;) {
		memset(&e, 0, sizeof(e));
		ret = exchange(c, rq, rs, &transient, &e);
		if (!ret && rs->status == 401 && negotiate && (!answered || rs->foreign)) {
			ret = answer_401(c, rs, err);
			if (ret)
				goto out;
			answered = true;
			if (!can_resend(rq)) {
				ret = mv_err_set(
				    err, -EACCES,
				    "%s: authentication asked in the middle of an upload",
				    c->ref.registry);
				goto out;
			}
			mfr_resp_free(rs);
			continue;
		}
		if (!rq->retry || !transient || retries >= MFR_RETRIES)
			break;
		wait = ret ? (long)MFR_BACKOFF_MS << retries : backoff_ms(rs, retries + 1);
		if (wait < 0 || !can_resend(rq))
			break;
		retries++;
		c->retries++;
		mfr_resp_free(rs);
		sleep_ms(wait);
	}
	if (ret) {
		if (retries)
			mv_err_set(err, ret, "%s (%d attempts)", e.msg, retries + 1);
		else
			mv_err_set(err, ret, "%s", e.msg);
		goto out;
	}
	rs->retries = retries;
	if (rs->status == 401 && answered)
		ret = mv_err_set(err, -EACCES, "%s: authentication failed (HTTP 401)",
		                 c->ref.registry);
out:
	if (ret)
		mfr_resp_free(rs);
	return ret;
}

uint64_t mfr_client_retries(const struct mfr_client *c)
{
	return c ? c->retries : 0;
}
