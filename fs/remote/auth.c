// SPDX-License-Identifier: Apache-2.0
/*
 * auth.c - registry credentials and the 401 challenge flow.
 *
 * Credentials come only from the auth files users already have, searched
 * in order: $REGISTRY_AUTH_FILE, ${XDG_RUNTIME_DIR}/containers/auth.json,
 * ~/.docker/config.json; the first entry "auths": {"HOST[:PORT]": {"auth":
 * base64("user:pass")}} for the registry wins. Never from the command line,
 * never logged: messages name the registry and the file, not the secret.
 * A Basic challenge is answered with those credentials; a Bearer challenge
 * by a GET of its realm (with them, if any) whose answer's "token" or
 * "access_token" becomes "Authorization: Bearer ...".
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "remote_int.h"

void mfr_free_secret(char *s)
{
	if (s)
		explicit_bzero(s, strlen(s));
	free(s);
}

/* Does the auths key @key name @registry ("https://host:port/v1/" too)? */
static bool key_matches(const char *key, const char *registry)
{
	size_t n;

	if (strncmp(key, "https://", 8) == 0)
		key += 8;
	else if (strncmp(key, "http://", 7) == 0)
		key += 7;
	n = strcspn(key, "/");
	return n == strlen(registry) && strncmp(key, registry, n) == 0;
}

/* Checks that @b64 decodes to "user:pass" (printable, a colon). */
static bool basic_valid(const char *b64)
{
	uint8_t *raw = NULL;
	size_t len = 0;
	bool ok;

	if (mv_base64_decode(b64, strlen(b64), &raw, &len))
		return false;
	ok = len > 1 && len < 4096 && memchr(raw, ':', len) && !memchr(raw, '\0', len);
	if (raw)
		explicit_bzero(raw, len);
	free(raw);
	return ok;
}

/* Looks @registry up in the parsed file @root; *@basic set if found. */
static int lookup_in(const cJSON *root, const char *registry, const char *path, char **basic,
                     struct mv_err *err)
{
	const cJSON *auths = cJSON_GetObjectItemCaseSensitive(root, "auths"), *e;

	if (!cJSON_IsObject(root) || (auths && !cJSON_IsObject(auths)))
		return mv_err_set(err, -EINVAL, "%s: not an auth file (no \"auths\" object)", path);
	cJSON_ArrayForEach(e, auths)
	{
		const cJSON *a = cJSON_GetObjectItemCaseSensitive(e, "auth");

		if (!e->string || !key_matches(e->string, registry))
			continue;
		if (!cJSON_IsString(a) || !basic_valid(a->valuestring))
			return mv_err_set(err, -EINVAL,
			                  "%s: the entry for %s has no valid \"auth\"", path,
			                  registry);
		*basic = strdup(a->valuestring);
		return *basic ? 0 : -ENOMEM;
	}
	return 0;
}

/* Reads one auth file; a missing file is no entry. */
static int lookup_file(const char *path, const char *registry, char **basic, struct mv_err *err)
{
	char *text = NULL;
	size_t len = 0;
	cJSON *root = NULL;
	struct mv_err e2 = {0};
	int ret;

	ret = mv_read_file(path, MFR_AUTHFILE_MAX, &text, &len, &e2);
	if (ret == -ENOENT || ret == -ENOTDIR) {
		ret = 0;
		goto out;
	}
	if (ret) {
		mv_err_set(err, ret, "%s: cannot read the auth file", path);
		goto out;
	}
	root = cJSON_ParseWithLength(text, len);
	ret = root ? lookup_in(root, registry, path, basic, err)
	           : mv_err_set(err, -EINVAL, "%s: not valid JSON", path);
out:
	cJSON_Delete(root);
	if (text)
		explicit_bzero(text, len);
	free(text);
	return ret;
}

/* The default list: $REGISTRY_AUTH_FILE, XDG's containers/auth.json, ~/.docker. */
static size_t default_files(char paths[3][4096])
{
	const char *v;
	size_t n = 0;

	if ((v = getenv("REGISTRY_AUTH_FILE")) && *v)
		snprintf(paths[n++], 4096, "%s", v);
	if ((v = getenv("XDG_RUNTIME_DIR")) && *v)
		snprintf(paths[n++], 4096, "%s/containers/auth.json", v);
	if ((v = getenv("HOME")) && *v)
		snprintf(paths[n++], 4096, "%s/.docker/config.json", v);
	return n;
}

int mfr_auth_lookup(const char *registry, const char *const *files, size_t n, char **basic,
                    struct mv_err *err)
{
	char paths[3][4096];
	int ret = 0;

	*basic = NULL;
	if (!files) {
		n = default_files(paths);
		for (size_t i = 0; i < n && !ret && !*basic; i++)
			ret = lookup_file(paths[i], registry, basic, err);
		return ret;
	}
	for (size_t i = 0; i < n && !ret && !*basic; i++)
		ret = lookup_file(files[i], registry, basic, err);
	return ret;
}

/* Sets c->auth to "Authorization: @scheme @cred". */
static int set_auth(struct mfr_client *c, const char *scheme, const char *cred)
{
	char *h = NULL;

	if (asprintf(&h, "Authorization: %s %s", scheme, cred) < 0)
		return -ENOMEM;
	mfr_free_secret(c->auth);
	c->auth = h;
	c->auth_is_basic = strcmp(scheme, "Basic") == 0;
	return 0;
}

/* The token endpoint's URL: realm?service=...&scope=... (escaped). */
static char *token_url(CURL *h, const struct mfr_challenge *ch)
{
	char *svc = ch->service ? curl_easy_escape(h, ch->service, 0) : NULL;
	char *scope = ch->scope ? curl_easy_escape(h, ch->scope, 0) : NULL;
	char sep = strchr(ch->realm, '?') ? '&' : '?';
	char *url = NULL;

	if (asprintf(&url, "%s%c%s%s%s%s%s", ch->realm, sep, svc ? "service=" : "", svc ? svc : "",
	             svc && scope ? "&" : "", scope ? "scope=" : "", scope ? scope : "") < 0)
		url = NULL;
	curl_free(svc);
	curl_free(scope);
	return url;
}

/* Picks "token" or "access_token" out of the endpoint's answer. */
static int token_from(const struct mfr_resp *rs, char **token)
{
	cJSON *root = cJSON_ParseWithLength(rs->body ? rs->body : "", rs->len);
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "token");
	int ret = -EBADMSG;

	if (!cJSON_IsString(t) || !t->valuestring[0])
		t = cJSON_GetObjectItemCaseSensitive(root, "access_token");
	if (cJSON_IsString(t) && t->valuestring[0] && strlen(t->valuestring) < MFR_TOKEN_MAX &&
	    !strpbrk(t->valuestring, " \r\n\t")) {
		*token = strdup(t->valuestring);
		ret = *token ? 0 : -ENOMEM;
	}
	if (t && t->valuestring)
		explicit_bzero(t->valuestring, strlen(t->valuestring));
	cJSON_Delete(root);
	return ret;
}

/* The Bearer flow: one GET of the realm, Basic credentials if we have them. */
static int bearer(struct mfr_client *c, const struct mfr_challenge *ch, struct mv_err *err)
{
	char *url = token_url(c->curl, ch), *basic = NULL, *token = NULL;
	struct mfr_resp rs = {0};
	struct mfr_req rq = {
	    .method = "GET", .max_body = MFR_TOKEN_MAX, .no_auth = !c->basic, .retry = true};
	int ret = -ENOMEM;

	if (!url)
		goto out;
	if (c->basic && asprintf(&basic, "Authorization: Basic %s", c->basic) < 0)
		goto out;
	rq.url = url;
	rq.auth = basic;
	ret = mfr_request(c, &rq, &rs, err); /* its 401 is not negotiated: rq.auth or no_auth */
	if (ret)
		goto out;
	if (rs.status == 401 || rs.status == 403) {
		ret = mv_err_set(err, -EACCES,
		                 "%s: authentication failed at the token service (HTTP %ld)",
		                 c->ref.registry, rs.status);
		goto out;
	}
	/* a malformed answer is the service's fault: -EPROTO, not -EBADMSG (a changed file) */
	ret = rs.status == 200 ? token_from(&rs, &token) : -EPROTO;
	if (ret) {
		ret = ret == -ENOMEM ? ret : -EPROTO;
		mv_err_set(err, ret, "%s: no token from the token service (HTTP %ld%s)",
		           c->ref.registry, rs.status,
		           rs.status == 200 ? ", no usable \"token\" or \"access_token\"" : "");
		goto out;
	}
	ret = set_auth(c, "Bearer", token);
out:
	if (rs.body)
		explicit_bzero(rs.body, rs.len);
	mfr_resp_free(&rs);
	mfr_free_secret(basic);
	mfr_free_secret(token);
	free(url);
	return ret;
}

int mfr_auth_answer(struct mfr_client *c, const char *www_auth, struct mv_err *err)
{
	struct mfr_challenge ch = {0};
	int ret;

	if (!www_auth) {
		ret = mv_err_set(err, -EACCES, "%s: HTTP 401 without a challenge", c->ref.registry);
		goto out;
	}
	ret = mfr_challenge_parse(www_auth, strlen(www_auth), &ch);
	if (ret) {
		/* never -EBADMSG: push reads that as a file changed under it */
		ret = ret == -ENOTSUP ? -EACCES : ret == -ENOMEM ? ret : -EPROTO;
		mv_err_set(err, ret, "%s: %s WWW-Authenticate challenge", c->ref.registry,
		           ret == -EACCES ? "unsupported" : "malformed");
		goto out;
	}
	if (ch.bearer) {
		ret = bearer(c, &ch, err);
		goto out;
	}
	if (!c->basic || c->auth_is_basic) {
		ret = mv_err_set(err, -EACCES, "%s: authentication %s (HTTP 401)", c->ref.registry,
		                 c->basic ? "failed"
		                          : "required: no credentials for it in the auth files");
		goto out;
	}
	ret = set_auth(c, "Basic", c->basic);
out:
	mfr_challenge_free(&ch);
	return ret;
}
