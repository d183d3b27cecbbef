// SPDX-License-Identifier: Apache-2.0
/*
 * trust.c - the trust inputs of a verifier: public keys (--trust) and CA
 * anchors (--trust-ca), and the certificate chain check.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "sig_internal.h"
#include "sigstore_int.h"

#ifndef MODELFS_SIGSTORE_ROOT
#define MODELFS_SIGSTORE_ROOT "/usr/local/share/modelfs/sigstore/trusted_root.json"
#endif

#define MV_MAX_TRUST_FILE (4u << 20)

struct mv_trust {
	struct mv_key **keys;
	size_t n_keys;
	X509_STORE *store; /* CA anchors; NULL until the first CA is added */
	size_t n_cas;
	/* keyless signers: identity and issuer pairs, and the Sigstore root */
	char **ids, **issuers;
	size_t n_ids;
	struct ss_root *ss_root;
	char *ss_root_path;
};

/**
 * mv_trust_new() - an empty trust set
 *
 * Return: the set, or NULL when out of memory.
 */
struct mv_trust *mv_trust_new(void)
{
	return calloc(1, sizeof(struct mv_trust));
}

/**
 * mv_trust_free() - release a trust set and its keys
 * @t: in: set or NULL
 */
void mv_trust_free(struct mv_trust *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n_keys; i++)
		mv_key_free(t->keys[i]);
	free(t->keys);
	X509_STORE_free(t->store);
	for (size_t i = 0; i < t->n_ids; i++) {
		free(t->ids[i]);
		free(t->issuers[i]);
	}
	free(t->ids);
	free(t->issuers);
	ss_root_free(t->ss_root);
	free(t->ss_root_path);
	free(t);
}

/**
 * mv_trust_add_identity() - trust a keyless signer
 * @t: in/out: the set
 * @identity: in: the certificate identity, compared exactly (email or URI)
 * @issuer: in: its OIDC issuer URL, compared exactly
 * @err: out: error line
 *
 * Return: 0, -EINVAL (an empty string), or -ENOMEM.
 */
int mv_trust_add_identity(struct mv_trust *t, const char *identity, const char *issuer,
                          struct mv_err *err)
{
	size_t n = t->n_ids + 1;
	char **ids, **iss;

	if (!identity[0] || !issuer[0])
		return mv_err_set(err, -EINVAL, "keyless signer: empty %s",
		                  identity[0] ? "issuer" : "identity");
	ids = realloc(t->ids, n * sizeof(*ids));
	if (ids)
		t->ids = ids;
	iss = realloc(t->issuers, n * sizeof(*iss));
	if (iss)
		t->issuers = iss;
	if (!ids || !iss)
		return mv_err_set(err, -ENOMEM, "keyless signer: out of memory");
	t->ids[t->n_ids] = strdup(identity);
	t->issuers[t->n_ids] = strdup(issuer);
	if (!t->ids[t->n_ids] || !t->issuers[t->n_ids]) {
		free(t->ids[t->n_ids]);
		free(t->issuers[t->n_ids]);
		return mv_err_set(err, -ENOMEM, "keyless signer: out of memory");
	}
	t->n_ids = n;
	return 0;
}

const char *mv_sigstore_root_default(void)
{
	return MODELFS_SIGSTORE_ROOT;
}

/**
 * mv_trust_load_sigstore_root() - the Sigstore trusted root of keyless signers
 * @t: in/out: the set (a root already loaded is replaced)
 * @path: in: a trusted root file
 * @err: out: one line naming @path; a missing file says how to provide one
 */
int mv_trust_load_sigstore_root(struct mv_trust *t, const char *path, struct mv_err *err)
{
	struct ss_root *r = NULL;
	char *p;
	int ret;

	if (access(path, F_OK) != 0 && errno == ENOENT)
		return mv_err_set(
		    err, -ENOENT,
		    "%s: Sigstore trusted root: no such file (give --trust-root FILE, "
		    "or run tools/bootstrap to install the public-good root)",
		    path);
	ret = ss_root_load(path, &r, err);
	if (ret)
		return ret;
	p = strdup(path);
	if (!p) {
		ss_root_free(r);
		return mv_err_set(err, -ENOMEM, "%s: out of memory", path);
	}
	ss_root_free(t->ss_root);
	free(t->ss_root_path);
	t->ss_root = r;
	t->ss_root_path = p;
	return 0;
}

const struct ss_root *mv_trust_sigstore_root(const struct mv_trust *t)
{
	return t ? t->ss_root : NULL;
}

size_t mv_trust_identity_count(const struct mv_trust *t)
{
	return t ? t->n_ids : 0;
}

void mv_trust_identity(const struct mv_trust *t, size_t i, const char **identity,
                       const char **issuer)
{
	*identity = t->ids[i];
	*issuer = t->issuers[i];
}

/**
 * mv_trust_add_key_file() - trust the public key in a PEM file
 * @t: in/out: the set
 * @path: in: SPKI PEM file
 * @err: out: error line naming @path
 */
int mv_trust_add_key_file(struct mv_trust *t, const char *path, struct mv_err *err)
{
	struct mv_key *k = NULL, **keys;
	int ret = mv_key_load_public(path, &k, err);

	if (ret)
		return ret;
	keys = realloc(t->keys, (t->n_keys + 1) * sizeof(*keys));
	if (!keys) {
		mv_key_free(k);
		return mv_err_set(err, -ENOMEM, "%s: out of memory", path);
	}
	keys[t->n_keys++] = k;
	t->keys = keys;
	return 0;
}

/**
 * mv_trust_add_ca_file() - trust every certificate of a PEM file as an anchor
 * @t: in/out: the set
 * @path: in: PEM file with one or more certificates
 * @err: out: error line naming @path
 */
int mv_trust_add_ca_file(struct mv_trust *t, const char *path, struct mv_err *err)
{
	char *buf = NULL;
	size_t len = 0, added = 0;
	BIO *bio = NULL;
	X509 *cert;
	int ret;

	ret = mv_read_file(path, MV_MAX_TRUST_FILE, &buf, &len, err);
	if (ret)
		return ret;
	if (!t->store) {
		t->store = X509_STORE_new();
		if (!t->store) {
			ret = mv_err_set(err, -ENOMEM, "%s: out of memory", path);
			goto out;
		}
	}
	bio = BIO_new_mem_buf(buf, (int)len);
	if (!bio) {
		ret = mv_err_set(err, -ENOMEM, "%s: out of memory", path);
		goto out;
	}
	while ((cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		int ok = X509_STORE_add_cert(t->store, cert);

		X509_free(cert);
		if (ok != 1) {
			ret = mv_err_set(err, -EINVAL, "%s: cannot add certificate %zu", path,
			                 added + 1);
			goto out;
		}
		added++;
	}
	if (!added) {
		ret = mv_err_set(err, -EINVAL, "%s: no PEM certificate found", path);
		goto out;
	}
	t->n_cas += added;
	ret = 0;
out:
	BIO_free(bio);
	free(buf);
	ERR_clear_error();
	return ret;
}

/**
 * mv_trust_count() - number of trusted keys and CA certificates
 * @t: in: the set
 */
size_t mv_trust_count(const struct mv_trust *t)
{
	return t ? t->n_keys + t->n_cas + t->n_ids : 0;
}

size_t mv_trust_key_count(const struct mv_trust *t)
{
	return t ? t->n_keys : 0;
}

size_t mv_trust_ca_count(const struct mv_trust *t)
{
	return t ? t->n_cas : 0;
}

typedef int (*trust_add_fn)(struct mv_trust *t, const char *path, struct mv_err *err);

/* Adds each of @paths with @add; stops at the first failure. */
static int add_files(struct mv_trust *t, const char *const *paths, size_t n, trust_add_fn add,
                     const char *what, struct mv_err *err)
{
	int ret = 0;

	for (size_t i = 0; !ret && i < n; i++) {
		ret = add(t, paths[i], err);
		if (ret) /* only if @add left no line: name the file anyway */
			mv_err_set(err, ret, "%s: cannot load trusted %s: %s", paths[i], what,
			           strerror(-ret));
	}
	return ret;
}

/**
 * mv_trust_load() - build a trust set from the user's key and CA files
 * @in: in: the key files, then the CA files, each loaded in the order given;
 *      @in->who prefixes the errors that name no file; with @in->required an
 *      empty list is an error, else it gives an empty set
 * @out: out: the new set, owned by the caller (release with mv_trust_free);
 *       NULL on failure
 * @err: out: on failure one line naming the file and the reason, or
 *       "WHO: ..." when no file is at fault
 *
 * Stops at the first file that fails. Thread-safety: uses only its arguments,
 * so concurrent calls with different @out and @err are safe.
 *
 * Return: 0; -EINVAL (empty but required, not a key or no certificate);
 * -ENOMEM; or the -errno of reading a file (-ENOENT, -EACCES, ...).
 */
int mv_trust_load(const struct mv_trust_inputs *in, struct mv_trust **out, struct mv_err *err)
{
	struct mv_trust *t = NULL;
	int ret;

	if (in->required && !in->n_key_files && !in->n_ca_files && !in->n_identities) {
		ret = mv_err_set(err, -EINVAL,
		                 "%s: no --trust, --trust-ca or keyless identity given: nothing "
		                 "could be verified",
		                 in->who);
		goto out;
	}
	t = mv_trust_new();
	if (!t) {
		ret = mv_err_set(err, -ENOMEM, "%s: out of memory", in->who);
		goto out;
	}
	ret = add_files(t, in->key_files, in->n_key_files, mv_trust_add_key_file, "key", err);
	if (!ret)
		ret = add_files(t, in->ca_files, in->n_ca_files, mv_trust_add_ca_file, "CA", err);
	for (size_t i = 0; !ret && i < in->n_identities; i++)
		ret = mv_trust_add_identity(t, in->identities[i], in->issuers[i], err);
	if (!ret && (in->n_identities || in->sigstore_root))
		ret = mv_trust_load_sigstore_root(
		    t, in->sigstore_root ? in->sigstore_root : MODELFS_SIGSTORE_ROOT, err);
out:
	if (ret) {
		mv_trust_free(t);
		t = NULL;
	}
	*out = t;
	return ret;
}

/**
 * mv_trust_find_hint() - the trusted key whose OMS hint is @hint
 * @t: in: the set
 * @hint: in: untrusted hint text (hex, any case)
 *
 * Return: a borrowed key, or NULL.
 */
const struct mv_key *mv_trust_find_hint(const struct mv_trust *t, const char *hint)
{
	for (size_t i = 0; t && i < t->n_keys; i++) {
		if (strcasecmp(t->keys[i]->hint, hint) == 0)
			return t->keys[i];
	}
	return NULL;
}

/**
 * mv_trust_find_spki() - the trusted key with this exact SPKI DER
 * @t: in: the set
 * @spki, @spki_len: in: DER of the candidate key
 *
 * Return: a borrowed key, or NULL.
 */
const struct mv_key *mv_trust_find_spki(const struct mv_trust *t, const uint8_t *spki,
                                        size_t spki_len)
{
	for (size_t i = 0; t && i < t->n_keys; i++) {
		if (t->keys[i]->spki_len == spki_len &&
		    memcmp(t->keys[i]->spki, spki, spki_len) == 0)
			return t->keys[i];
	}
	return NULL;
}

/* The leaf may sign: digitalSignature key usage or codeSigning extended key usage. */
static bool leaf_may_sign(X509 *leaf)
{
	uint32_t flags = X509_get_extension_flags(leaf);

	if ((flags & EXFLAG_KUSAGE) && (X509_get_key_usage(leaf) & KU_DIGITAL_SIGNATURE))
		return true;
	if ((flags & EXFLAG_XKUSAGE) && (X509_get_extended_key_usage(leaf) & XKU_CODE_SIGN))
		return true;
	return false;
}

/**
 * mv_trust_verify_chain() - check a signing certificate against the CA anchors
 * @t: in: the set
 * @leaf: in: signing certificate (untrusted)
 * @chain: in: intermediates from the bundle (untrusted, may be NULL)
 * @label: in: prefix of messages (the signature file)
 * @err: out: error line
 *
 * The chain is checked at the current time. An anchor need not be a root:
 * trusting an intermediate CA is a deliberate choice of the user, so partial
 * chains ending at any anchor are accepted.
 *
 * Return: 0 or -EKEYREJECTED.
 */
int mv_trust_verify_chain(const struct mv_trust *t, X509 *leaf, STACK_OF(X509) * chain,
                          const char *label, struct mv_err *err)
{
	X509_STORE_CTX *ctx = NULL;
	EVP_PKEY *pub;
	int ret;

	if (!t || !t->store || !t->n_cas)
		return mv_err_set(err, -EKEYREJECTED,
		                  "%s: signed with a certificate but no CA is trusted (--trust-ca)",
		                  label);
	ctx = X509_STORE_CTX_new();
	if (!ctx)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", label);
	if (X509_STORE_CTX_init(ctx, t->store, leaf, chain) != 1) {
		ret = mv_err_set(err, -ENOMEM, "%s: cannot set up chain verification", label);
		goto out;
	}
	/*
	 * Not X509_V_FLAG_X509_STRICT: the reference verifier does not use it,
	 * and it refuses chains (no key identifiers, ...) that it accepts.
	 */
	X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_PARTIAL_CHAIN);
	if (X509_verify_cert(ctx) != 1) {
		int e = X509_STORE_CTX_get_error(ctx);

		ret = mv_err_set(err, -EKEYREJECTED,
		                 "%s: certificate chain does not lead to a trusted CA: %s", label,
		                 X509_verify_cert_error_string(e));
		goto out;
	}
	pub = X509_get0_pubkey(leaf);
	if (!pub || EVP_PKEY_get_base_id(pub) != EVP_PKEY_EC) {
		ret =
		    mv_err_set(err, -EKEYREJECTED, "%s: signing certificate has no EC key", label);
		goto out;
	}
	if (!leaf_may_sign(leaf)) {
		ret = mv_err_set(err, -EKEYREJECTED,
		                 "%s: signing certificate allows neither digitalSignature nor "
		                 "codeSigning",
		                 label);
		goto out;
	}
	ret = 0;
out:
	X509_STORE_CTX_free(ctx);
	ERR_clear_error();
	return ret;
}
