// SPDX-License-Identifier: Apache-2.0
/*
 * ref.c - references REGISTRY/REPO[:TAG][@sha256:HEX], by distribution's
 * grammar (reference/regexp.go): lowercase path components joined by one
 * separator ('.', '_', "__" or dashes), tags of at most 128 characters,
 * sha256 digests only. A registry is host[:port]; short names that would
 * mean docker.io are refused.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fsremote.h"

#define NAME_MAX_LEN 255 /* distribution's NameTotalLengthMax */

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool mfr_digest_valid(const char *s)
{
	if (!s || strncmp(s, "sha256:", 7) != 0 || strlen(s) != MFR_DIGEST_LEN)
		return false;
	for (s += 7; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return false;
	return true;
}

bool mfr_tag_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > 128 || !(isalnum((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!(isalnum((unsigned char)s[i]) || strchr("._-", s[i])))
			return false;
	return true;
}

/* One path component [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* of @len bytes at @s. */
static bool component_valid(const char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		size_t run = 0;

		while (i < len && is_lower_alnum(s[i]))
			i++, run++;
		if (!run)
			return false;
		if (i == len)
			return true;
		if (s[i] == '.' || (s[i] == '_' && (i + 1 >= len || s[i + 1] != '_')))
			i++;
		else if (s[i] == '_')
			i += 2;
		else if (s[i] == '-')
			while (i < len && s[i] == '-')
				i++;
		else
			return false;
	}
	return false; /* ended on a separator */
}

static bool repo_valid(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > NAME_MAX_LEN)
		return false;
	while (*s) {
		const char *slash = strchr(s, '/');
		size_t len = slash ? (size_t)(slash - s) : strlen(s);

		if (!component_valid(s, len))
			return false;
		s += len;
		if (*s == '/' && !*++s)
			return false;
	}
	return true;
}

bool mfr_host_is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (!host)
		return false;
	if (strcasecmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return false;
}

/* Splits host[:port] or [v6][:port] of @reg into a malloc'd *@host. */
static int split_host(const char *reg, char **host)
{
	const char *end, *port;
	size_t hlen;

	if (reg[0] == '[') {
		end = strchr(reg, ']');
		if (!end || end == reg + 1)
			return -EINVAL;
		port = end[1] ? end + 1 : NULL;
		if (port && *port != ':')
			return -EINVAL;
		reg++;
		hlen = (size_t)(end - reg);
	} else {
		port = strchr(reg, ':');
		hlen = port ? (size_t)(port - reg) : strlen(reg);
		for (size_t i = 0; i < hlen; i++)
			if (!(isalnum((unsigned char)reg[i]) || reg[i] == '.' || reg[i] == '-'))
				return -EINVAL;
	}
	if (!hlen || hlen > 253)
		return -EINVAL;
	if (port) {
		char *pend;
		unsigned long p;

		if (!isdigit((unsigned char)port[1]))
			return -EINVAL;
		p = strtoul(port + 1, &pend, 10);
		if (*pend || p == 0 || p > 65535)
			return -EINVAL;
	}
	*host = strndup(reg, hlen);
	return *host ? 0 : -ENOMEM;
}

/* Is the first component a registry (has '.', ':' or '[', or is localhost)? */
static bool looks_like_registry(const char *reg)
{
	return strpbrk(reg, ".:[") || strcmp(reg, "localhost") == 0;
}

/* Takes "@sha256:HEX" and ":TAG" off the end of @rest into @out. */
static int split_tail(char *rest, struct mfr_ref *out)
{
	char *at = strchr(rest, '@'), *colon, *slash;

	if (at) {
		if (!mfr_digest_valid(at + 1))
			return -EINVAL;
		memcpy(out->digest, at + 1, MFR_DIGEST_LEN + 1);
		*at = '\0';
	}
	slash = strrchr(rest, '/');
	colon = strrchr(slash ? slash : rest, ':');
	if (colon) {
		if (!mfr_tag_valid(colon + 1))
			return -EINVAL;
		out->tag = strdup(colon + 1);
		if (!out->tag)
			return -ENOMEM;
		*colon = '\0';
	}
	return repo_valid(rest) ? 0 : -EINVAL;
}

int mfr_ref_parse(const char *s, struct mfr_ref *out, struct mv_err *err)
{
	char *copy = NULL, *p, *slash;
	int ret = -EINVAL;

	memset(out, 0, sizeof(*out));
	if (!s || strlen(s) > 1024)
		goto out;
	copy = strdup(s);
	if (!copy) {
		ret = -ENOMEM;
		goto out;
	}
	p = copy;
	if (strncmp(p, "http://", 7) == 0)
		out->plain_http = true, p += 7;
	else if (strncmp(p, "https://", 8) == 0)
		p += 8;
	slash = strchr(p, '/');
	if (!slash)
		goto out;
	*slash = '\0';
	if (!looks_like_registry(p))
		goto out;
	ret = split_host(p, &out->host);
	if (ret)
		goto out;
	out->registry = strdup(p);
	ret = out->registry ? split_tail(slash + 1, out) : -ENOMEM;
	if (ret)
		goto out;
	out->repo = strdup(slash + 1);
	ret = out->repo ? 0 : -ENOMEM;
out:
	if (ret) {
		mfr_ref_free(out);
		mv_err_set(err, ret, "%s: not a reference REGISTRY/REPO[:TAG][@sha256:HEX]%s",
		           s ? s : "(null)", ret == -ENOMEM ? " (out of memory)" : "");
	}
	free(copy);
	return ret;
}

void mfr_ref_free(struct mfr_ref *r)
{
	if (!r)
		return;
	free(r->registry);
	free(r->host);
	free(r->repo);
	free(r->tag);
	memset(r, 0, sizeof(*r));
}
