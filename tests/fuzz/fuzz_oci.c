// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_oci.c - libFuzzer target for what a registry sends (fs/remote/parse.c,
 * fs/remote/ref.c): the first byte picks the parser, the rest is its input.
 *   0: mfr_manifest_parse (an image manifest), 1: mfr_index_parse (a
 *   referrers answer or tag schema index), 2: mfr_challenge_parse (a
 *   WWW-Authenticate value), 3: mfr_ref_parse (a reference); a first byte
 *   of 4 (before the masking) picks mfr_content_range_ok (a blob GET's
 *   Content-Range): 24 bytes of offset, length and total, then the value.
 * A parsed result is walked, so every string and descriptor is touched.
 * Links libfsremote alone.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fsremote.h"
#include "pull_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Touches every byte a descriptor holds (ASan sees a bad pointer). */
static size_t walk_desc(const struct mfr_desc *d)
{
	size_t n = strlen(d->digest) + (size_t)(d->size & 1);

	n += d->media_type ? strlen(d->media_type) : 0;
	n += d->artifact_type ? strlen(d->artifact_type) : 0;
	n += d->title ? strlen(d->title) : 0;
	return n + (d->filepath ? strlen(d->filepath) : 0);
}

static void manifest(const char *s, size_t len)
{
	struct mfr_manifest *m = NULL;
	size_t n = 0;

	if (mfr_manifest_parse(s, len, &m, NULL))
		return;
	n += walk_desc(&m->config);
	for (size_t i = 0; i < m->n_layers; i++)
		n += walk_desc(&m->layers[i]);
	if (m->has_subject && !mfr_digest_valid(m->subject.digest))
		abort();
	if (!mfr_digest_valid(m->config.digest) || n == 0)
		abort();
	mfr_manifest_free(m);
}

static void index_(const char *s, size_t len)
{
	struct mfr_index *ix = NULL;

	if (mfr_index_parse(s, len, &ix, NULL))
		return;
	for (size_t i = 0; i < ix->n; i++)
		if (!mfr_digest_valid(ix->manifests[i].digest) || !walk_desc(&ix->manifests[i]))
			abort();
	mfr_index_free(ix);
}

static void challenge(const char *s, size_t len)
{
	struct mfr_challenge c;

	if (mfr_challenge_parse(s, len, &c))
		return;
	if (c.bearer &&
	    (!c.realm || (strncmp(c.realm, "https://", 8) && strncmp(c.realm, "http://", 7))))
		abort();
	if (c.service)
		(void)strlen(c.service);
	if (c.scope)
		(void)strlen(c.scope);
	mfr_challenge_free(&c);
}

static void reference(const char *s)
{
	struct mfr_ref r;

	if (mfr_ref_parse(s, &r, NULL))
		return;
	if (!r.registry || !r.host || !r.repo || (r.tag && !mfr_tag_valid(r.tag)) ||
	    (r.digest[0] && !mfr_digest_valid(r.digest)))
		abort();
	mfr_ref_free(&r);
}

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/*
 * A value accepted must be the canonical one of the range; the canonical
 * value of a sane range is accepted, and not for a range one byte off.
 */
static void content_range(const uint8_t *data, size_t size)
{
	uint64_t off, len, total;
	char canon[80], star[80], *s;

	if (size < 24)
		return;
	off = le64(data);
	len = le64(data + 8);
	total = le64(data + 16);
	s = malloc(size - 24 + 1);
	if (!s)
		return;
	memcpy(s, data + 24, size - 24);
	s[size - 24] = '\0';
	canon[0] = star[0] = '\0';
	if (len && off <= UINT64_MAX - (len - 1)) {
		snprintf(canon, sizeof(canon), "bytes %llu-%llu/%llu", (unsigned long long)off,
		         (unsigned long long)(off + len - 1), (unsigned long long)total);
		snprintf(star, sizeof(star), "bytes %llu-%llu/*", (unsigned long long)off,
		         (unsigned long long)(off + len - 1));
	}
	if (mfr_content_range_ok(s, off, len, total)) {
		if (strcmp(s, star) && (strcmp(s, canon) || off + (len - 1) >= total))
			abort();
	}
	if (star[0] && !mfr_content_range_ok(star, off, len, total))
		abort();
	if (canon[0] && off + (len - 1) < total) {
		if (!mfr_content_range_ok(canon, off, len, total))
			abort();
		if (mfr_content_range_ok(canon, off + 1, len, total) ||
		    mfr_content_range_ok(canon, off, len, total + 1) ||
		    (len > 1 && mfr_content_range_ok(canon, off, len - 1, total)))
			abort();
	}
	(void)mfr_content_range_ok(NULL, off, len, total);
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;

	if (size < 1)
		return 0;
	if (data[0] == 4) {
		content_range(data + 1, size - 1);
		return 0;
	}
	s = malloc(size); /* size - 1 bytes and a NUL, away from the fuzzer's buffer */
	if (!s)
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	switch (data[0] & 3) {
	case 0: manifest(s, size - 1); break;
	case 1: index_(s, size - 1); break;
	case 2: challenge(s, size - 1); break;
	default: reference(s); break;
	}
	free(s);
	return 0;
}
