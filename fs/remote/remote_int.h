/* SPDX-License-Identifier: Apache-2.0 */
/*
 * remote_int.h - libfsremote's internals: the client's state and one HTTP
 * exchange (http.c), the auth flow (auth.c). Included by fs/remote only.
 */
#ifndef MODELFS_REMOTE_INT_H
#define MODELFS_REMOTE_INT_H

#include <curl/curl.h>

#include "fsremote.h"

struct mfr_client {
	struct mfr_ref ref;
	char *base;    /* "https://host:port", no trailing slash */
	char *ca_file; /* NULL: the system CAs */
	long connect_timeout_s, low_speed_time_s;
	char *basic; /* base64 "user:pass" from an auth file, or NULL; never logged */
	char *auth;  /* "Authorization: ..." header sent, or NULL; never logged */
	bool auth_is_basic;
	CURL *curl; /* one handle: its connections are kept alive */
	uint64_t
	    retries; /* requests resent (429, 5xx, a dropped connection): mfr_client_retries() */
};

/* One request. */
struct mfr_req {
	const char *method;          /* "GET", "HEAD", "POST" or "PUT" */
	const char *url;             /* absolute */
	const char *content_type;    /* of the body, or NULL */
	const char *accept;          /* or NULL */
	const struct mfr_body *body; /* PUT body, or NULL (POST and PUT: empty) */
	size_t max_body;             /* bytes of the response kept; more is -E2BIG */
	const char *auth;            /* overrides the client's header (token endpoint) */
	bool no_auth;                /* send no Authorization header */
	const char *range;           /* "bytes=A-B": a Range header (pull), or NULL */
	bool retry;                  /* idempotent: resent on 429, 5xx, a dropped connection */
};

/* Retries of a request with .retry (docs/remote.md "Faults"). */
#define MFR_RETRIES         3   /* sends after the first */
#define MFR_BACKOFF_MS      500 /* doubled each time: 0.5 s, 1 s, 2 s */
#define MFR_RETRY_AFTER_MAX 10  /* s: a longer Retry-After is not waited for */

/* One response; free with mfr_resp_free(). */
struct mfr_resp {
	long status;
	char *body; /* NUL-terminated, len bytes; NULL for none */
	size_t len;
	char *www_auth, *location, *content_type, *digest; /* headers, or NULL */
	bool oci_subject;    /* an OCI-Subject header: the registry indexes referrers */
	char *content_range; /* the Content-Range header (a 206), or NULL */
	bool has_retry_after;
	long retry_after_s; /* Retry-After in seconds (a date is converted) */
	int retries;        /* sends after the first (mfr_request) */
	char *foreign;      /* the last hop's host:port if not the registry's, else NULL */
};

void mfr_resp_free(struct mfr_resp *r);

/**
 * mfr_http() - one exchange, redirects followed by libcurl
 * @c: in: the client (its curl handle, TLS and timeouts)
 * @rq: in: the request
 * @rs: out: the response of the last hop; free with mfr_resp_free()
 * @err: out: one line naming the registry on a transport error
 *
 * Return: 0 when a response arrived (any status), else -ETIMEDOUT,
 * -ECONNREFUSED, -EHOSTUNREACH, -EPROTO (TLS), -E2BIG (body over
 * @rq->max_body), -ENOMEM or -EIO; a body read error is returned as is.
 */
int mfr_http(struct mfr_client *c, const struct mfr_req *rq, struct mfr_resp *rs,
             struct mv_err *err);

/**
 * mfr_request() - mfr_http() with the auth flow and retries
 *
 * On a 401 with a challenge from the registry itself (not from a host it
 * redirected to), unless @rq has no_auth or its own auth: authenticate
 * (auth.c) and send the request once more. With @rq->retry, a 429, 500,
 * 502, 503, 504 or a dropped connection is sent again, at most MFR_RETRIES
 * times, after the Retry-After (if at most MFR_RETRY_AFTER_MAX s; a longer
 * one is not waited for) or a doubling backoff. Timeouts are not retried.
 * Parameters and return as mfr_http(); a 401 after answering is -EACCES;
 * the last response is returned with rs->retries set.
 */
int mfr_request(struct mfr_client *c, const struct mfr_req *rq, struct mfr_resp *rs,
                struct mv_err *err);

/**
 * mfr_auth_answer() - set the client's Authorization for a 401 challenge
 * @c: in/out: the client; c->auth is replaced
 * @www_auth: in: the WWW-Authenticate header of the 401, or NULL
 * @err: out: one line naming the registry (no secret)
 *
 * Basic: the auth file's credentials. Bearer: GET the realm with service
 * and scope (Basic credentials if any) and use "token" or "access_token".
 * Return: 0, -EACCES (no or refused credentials), -EBADMSG, -errno.
 */
int mfr_auth_answer(struct mfr_client *c, const char *www_auth, struct mv_err *err);

/**
 * mfr_auth_lookup() - credentials of @registry in the auth files
 * @registry: in: host[:port]
 * @files, @n: in: files to search, or NULL for the default list
 * @basic: out: malloc'd base64 "user:pass", or NULL if no entry
 * @err: out: names the file that is not valid (never its content)
 *
 * Return: 0 (found or not), -EINVAL (malformed file), -ENOMEM.
 */
int mfr_auth_lookup(const char *registry, const char *const *files, size_t n, char **basic,
                    struct mv_err *err);

/* The timeout of MODELFS_HTTP_TIMEOUT (seconds, 1..3600), or 0 if unset. */
long mfr_env_timeout(void);

/* Frees @s after zeroing it (secrets). */
void mfr_free_secret(char *s);

#endif /* MODELFS_REMOTE_INT_H */
