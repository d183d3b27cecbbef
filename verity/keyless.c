// SPDX-License-Identifier: Apache-2.0
/*
 * keyless.c - OMS signatures made keylessly (`model_signing sign sigstore`):
 * a Sigstore bundle v0.3 whose verification material is a Fulcio
 * certificate, with a DSSE envelope over the OMS statement and a Rekor
 * entry. bundle.c hands such bundles here; the Sigstore verifier
 * (sigstore_int.h) checks the whole bundle against the trust set's Sigstore
 * root and one of its trusted identities, then bundle.c parses the
 * statement as for keys.
 *
 * Why the identity is matched before anything is verified: a keyless trust
 * set names signers by identity and issuer, not by key, so the certificate's
 * claim picks the one pair it must then prove (the same way a key hint
 * picks the key). A claim that matches no pair is refused with the claim in
 * the message, which is what an operator needs to fix a policy.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sig_internal.h"
#include "sigstore_int.h"

/* Fills the parts of @s that describe the certificate's key and identity. */
static int fill_signer(const char *label, X509 *leaf, const struct ss_identity *id,
                       struct mv_signer *s, struct mv_err *err)
{
	EVP_PKEY *pub = X509_get_pubkey(leaf);
	struct mv_key *k = NULL;
	int ret;

	ret = pub ? mv_key_wrap(pub, false, label, &k, err)
	          : mv_err_set(err, -EKEYREJECTED, "%s: certificate has no usable key", label);
	if (ret) {
		EVP_PKEY_free(pub);
		return ret == -EINVAL ? -EKEYREJECTED : ret;
	}
	memcpy(s->key_id, k->id, sizeof(s->key_id));
	s->key_type = k->type;
	mv_key_free(k);
	s->is_certificate = true;
	s->is_keyless = true;
	s->identity = strdup(id->san);
	s->issuer = strdup(id->issuer);
	if (!s->identity || !s->issuer)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", label);
	return 0;
}

/* The trusted identity pair the certificate claims, or SIZE_MAX. */
static size_t find_identity(const struct mv_trust *t, const struct ss_identity *id)
{
	const char *ident, *issuer;

	for (size_t i = 0; i < mv_trust_identity_count(t); i++) {
		mv_trust_identity(t, i, &ident, &issuer);
		if (strcmp(ident, id->san) == 0 && strcmp(issuer, id->issuer) == 0)
			return i;
	}
	return SIZE_MAX;
}

/* The whole Sigstore check of @b for the pair the certificate claims. */
static int verify_keyless(const char *label, const struct ss_bundle *b,
                          const struct mv_trust *trust, const struct ss_identity *id,
                          struct mv_err *err)
{
	const struct ss_root *root = mv_trust_sigstore_root(trust);
	struct ss_policy policy = {0};
	struct ss_result res;
	struct mv_err e = {0};
	size_t i;
	int ret;

	if (!root || !mv_trust_identity_count(trust))
		return mv_err_set(err, -EKEYREJECTED,
		                  "%s: keyless signature by %s (issuer %s), but no keyless signer "
		                  "is trusted (give --identity and --identity-provider)",
		                  label, MV_P(id->san), MV_P(id->issuer));
	i = find_identity(trust, id);
	if (i == SIZE_MAX)
		return mv_err_set(err, -EKEYREJECTED,
		                  "%s: signed by identity %s (issuer %s), which is not trusted",
		                  label, MV_P(id->san), MV_P(id->issuer));
	mv_trust_identity(trust, i, &policy.identity, &policy.issuer);
	ret = ss_verify(b, root, &policy, NULL, (int64_t)time(NULL), &res, &e);
	if (ret)
		return mv_err_set(err, ret == -ENOMEM ? ret : -EKEYREJECTED, "%s: keyless: %s",
		                  label, e.msg);
	return 0;
}

/**
 * mv_keyless_resolve() - check a keyless OMS bundle and name its signer
 * @label: in: prefix of error lines ("model.sig")
 * @json, @len: in: the bundle bytes (untrusted)
 * @trust: in: the trust set (identities and Sigstore root); unused unless @verify
 * @verify: in: false (inspect): report the certificate's claim, check nothing
 * @s: out: the signer (identity, issuer, the certificate key's id); the caller
 *     frees identity and issuer, also on failure
 * @err: out: one line naming the check that failed
 *
 * With @verify, the DSSE signature over the statement is verified here;
 * bundle.c only parses the statement afterwards.
 * Return: 0, -EINVAL/-EBADMSG (malformed), -EKEYREJECTED, or -ENOMEM.
 */
int mv_keyless_resolve(const char *label, const char *json, size_t len,
                       const struct mv_trust *trust, bool verify, struct mv_signer *s,
                       struct mv_err *err)
{
	struct ss_bundle *b = NULL;
	struct ss_identity id;
	struct mv_err e = {0};
	int ret;

	ret = ss_bundle_parse(label, json, len, &b, err);
	if (ret)
		return ret == -ENOMEM ? ret : -EINVAL;
	if (b->content != SS_DSSE || !b->leaf) {
		ret = mv_err_set(err, -EINVAL,
		                 "%s: keyless bundle: expected a DSSE envelope and a "
		                 "certificate",
		                 label);
		goto out;
	}
	ret = ss_identity_get(b->leaf, &id, &e);
	if (ret) {
		ret = mv_err_set(err, -EKEYREJECTED, "%s: keyless: %s", label, e.msg);
		goto out;
	}
	if (verify)
		ret = verify_keyless(label, b, trust, &id, err);
	if (!ret)
		ret = fill_signer(label, b->leaf, &id, s, err);
out:
	ss_bundle_free(b);
	return ret;
}
