// SPDX-License-Identifier: Apache-2.0
/*
 * keys.c - signing keys: generation, loading, OMS key hints, signing and
 * verification (ECDSA P-256/P-384/P-521 and Ed25519).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "sig_internal.h"

#define MV_MAX_KEY_FILE (1u << 20)

static const struct {
	const char *name;
	const char *group; /* OpenSSL group name; NULL for Ed25519 */
} key_types[] = {
    [MV_KEY_ECDSA_P256] = {"ecdsa-p256", "prime256v1"},
    [MV_KEY_ECDSA_P384] = {"ecdsa-p384", "secp384r1"},
    [MV_KEY_ECDSA_P521] = {"ecdsa-p521", "secp521r1"},
    [MV_KEY_ED25519] = {"ed25519", NULL},
};

/**
 * mv_key_type_parse() - parse a key type name
 * @name: in: "ecdsa-p256", "ecdsa-p384", "ecdsa-p521" or "ed25519"
 * @out: out: the type
 *
 * Return: 0, or -EINVAL for an unknown name.
 */
int mv_key_type_parse(const char *name, enum mv_key_type *out)
{
	for (size_t i = 0; i < sizeof(key_types) / sizeof(key_types[0]); i++) {
		if (name && strcmp(name, key_types[i].name) == 0) {
			*out = (enum mv_key_type)i;
			return 0;
		}
	}
	return -EINVAL;
}

/**
 * mv_key_type_name() - the name mv_key_type_parse() accepts for @t
 * @t: in: key type
 *
 * Return: a static string; "unknown" for an out-of-range value.
 */
const char *mv_key_type_name(enum mv_key_type t)
{
	if ((unsigned)t >= sizeof(key_types) / sizeof(key_types[0]))
		return "unknown";
	return key_types[t].name;
}

/* The digest ECDSA uses on each curve; NULL (sign the message itself) for Ed25519. */
static const EVP_MD *key_md(enum mv_key_type t)
{
	switch (t) {
	case MV_KEY_ECDSA_P256: return EVP_sha256();
	case MV_KEY_ECDSA_P384: return EVP_sha384();
	case MV_KEY_ECDSA_P521: return EVP_sha512();
	default: return NULL;
	}
}

/*
 * Classifies @pkey. Anything but the three NIST curves and Ed25519 is refused:
 * OMS verifiers only know these, and a weak or exotic key must not slip in.
 */
static int key_classify(EVP_PKEY *pkey, const char *label, enum mv_key_type *out,
                        struct mv_err *err)
{
	char group[64] = "";
	size_t glen = 0;

	if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_ED25519) {
		*out = MV_KEY_ED25519;
		return 0;
	}
	if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC) {
		const char *tn = EVP_PKEY_get0_type_name(pkey);

		return mv_err_set(err, -EINVAL,
		                  "%s: unsupported key type %s (need ECDSA P-256/P-384/P-521 or "
		                  "Ed25519)",
		                  label, tn ? tn : "(unknown)");
	}
	if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
	                                    &glen))
		return mv_err_set(err, -EINVAL, "%s: EC key without a named curve", label);
	for (size_t i = 0; i < sizeof(key_types) / sizeof(key_types[0]); i++) {
		if (key_types[i].group && strcmp(group, key_types[i].group) == 0) {
			*out = (enum mv_key_type)i;
			return 0;
		}
	}
	return mv_err_set(err, -EINVAL, "%s: unsupported EC curve %s (need P-256, P-384 or P-521)",
	                  label, group);
}

/* Hex SHA-256 of the canonical PEM (PEM_write_bio_PUBKEY) of @pkey: the OMS hint. */
static int key_pem_hint(EVP_PKEY *pkey, char out[65])
{
	BIO *bio = BIO_new(BIO_s_mem());
	uint8_t md[32];
	char *pem;
	long n;
	int ret = -ENOMEM;

	if (!bio)
		return -ENOMEM;
	if (PEM_write_bio_PUBKEY(bio, pkey) != 1)
		goto out;
	n = BIO_get_mem_data(bio, &pem);
	if (n <= 0)
		goto out;
	mv_sha256(pem, (size_t)n, md);
	mv_hex_encode(md, sizeof(md), out);
	ret = 0;
out:
	BIO_free(bio);
	return ret;
}

/**
 * mv_key_wrap() - make an mv_key of an EVP_PKEY
 * @pkey: in: the key; owned by the new mv_key on success, untouched on failure
 * @has_private: in: whether @pkey holds a private key
 * @label: in: file name or field for messages
 * @out: out: the key
 * @err: out: error line
 */
int mv_key_wrap(EVP_PKEY *pkey, bool has_private, const char *label, struct mv_key **out,
                struct mv_err *err)
{
	struct mv_key *k;
	unsigned char *der = NULL;
	uint8_t md[32];
	int len, ret;

	*out = NULL;
	k = calloc(1, sizeof(*k));
	if (!k)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", label);
	ret = key_classify(pkey, label, &k->type, err);
	if (ret)
		goto fail;
	len = i2d_PUBKEY(pkey, &der);
	if (len <= 0 || key_pem_hint(pkey, k->hint)) {
		ret = mv_err_set(err, -EINVAL, "%s: cannot encode the public key", label);
		goto fail;
	}
	k->spki = malloc((size_t)len);
	if (!k->spki) {
		ret = mv_err_set(err, -ENOMEM, "%s: out of memory", label);
		goto fail;
	}
	memcpy(k->spki, der, (size_t)len);
	k->spki_len = (size_t)len;
	mv_sha256(der, (size_t)len, md);
	mv_hex_encode(md, sizeof(md), k->id);
	OPENSSL_free(der);
	k->pkey = pkey;
	k->has_private = has_private;
	*out = k;
	return 0;
fail:
	OPENSSL_free(der);
	free(k->spki);
	free(k);
	ERR_clear_error();
	return ret;
}

/* Refuses passphrase prompts: keys are files, never typed in a terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/* Reads a key file into a memory BIO. */
static int key_file_bio(const char *path, BIO **bio, char **buf, size_t *len, struct mv_err *err)
{
	int ret = mv_read_file(path, MV_MAX_KEY_FILE, buf, len, err);

	if (ret)
		return ret;
	*bio = BIO_new_mem_buf(*buf, (int)*len);
	if (!*bio) {
		free(*buf);
		*buf = NULL;
		return mv_err_set(err, -ENOMEM, "%s: out of memory", path);
	}
	return 0;
}

/*
 * A private key file also carries the public key (SEC1's publicKey field),
 * which OpenSSL takes as written: a damaged file would sign with one key and
 * give the hint of another, and every signature made would fail to verify.
 */
static bool key_pair_ok(EVP_PKEY *pkey)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	bool ok = ctx && EVP_PKEY_pairwise_check(ctx) == 1;

	EVP_PKEY_CTX_free(ctx);
	return ok;
}

/*
 * Reads the first PEM key of @path: a private key (PKCS#8 or SEC1 EC) when
 * @private, else a public key (SPKI). Text around the PEM block is ignored,
 * and a private key's file buffer is wiped before it is freed.
 */
static int load_pem_key(const char *path, bool private, struct mv_key **out, struct mv_err *err)
{
	EVP_PKEY *pkey = NULL;
	BIO *bio = NULL;
	char *buf = NULL;
	size_t len = 0;
	int ret;

	*out = NULL;
	ret = key_file_bio(path, &bio, &buf, &len, err);
	if (ret)
		return ret;
	pkey = private ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL)
	               : PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
	if (!pkey) {
		ret = mv_err_set(err, -EINVAL, "%s: %s", path,
		                 private ? "no usable private key (PEM, unencrypted PKCS#8 or EC)"
		                         : "no PEM public key (-----BEGIN PUBLIC KEY-----)");
		goto out;
	}
	ret = mv_key_wrap(pkey, private, path, out, err);
	if (!ret)
		pkey = NULL;
	if (!ret && private && !key_pair_ok((*out)->pkey)) {
		mv_key_free(*out);
		*out = NULL;
		ret = mv_err_set(err, -EINVAL, "%s: the private key does not match its public key",
		                 path);
	}
out:
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	if (buf) {
		OPENSSL_cleanse(buf, len);
		free(buf);
	}
	ERR_clear_error();
	return ret;
}

/**
 * mv_key_load_private() - load a private key (PKCS#8 or SEC1 EC PEM)
 * @path: in: PEM file; text around the PEM block is ignored
 * @out: out: the key
 * @err: out: error line naming @path
 */
int mv_key_load_private(const char *path, struct mv_key **out, struct mv_err *err)
{
	return load_pem_key(path, true, out, err);
}

/**
 * mv_key_load_public() - load a public key (SPKI PEM)
 * @path: in: PEM file; text before or after the PEM block is ignored
 * @out: out: the key
 * @err: out: error line naming @path
 */
int mv_key_load_public(const char *path, struct mv_key **out, struct mv_err *err)
{
	return load_pem_key(path, false, out, err);
}

/* True if @buf holds a PEM armor line (the rawBytes of pre-1.1 bundles). */
static bool looks_like_pem(const uint8_t *buf, size_t len)
{
	static const char tag[] = "-----BEGIN ";

	return memmem(buf, len, tag, sizeof(tag) - 1) != NULL;
}

/**
 * mv_key_from_public_bytes() - public key from SPKI DER or PEM text
 * @buf, @len: in: untrusted bytes
 * @out: out: the key
 * @err: out: error line (prefixed "publicKey.rawBytes")
 */
int mv_key_from_public_bytes(const uint8_t *buf, size_t len, struct mv_key **out,
                             struct mv_err *err)
{
	static const char label[] = "publicKey.rawBytes";
	const unsigned char *p = buf;
	EVP_PKEY *pkey = NULL;
	BIO *bio;
	int ret;

	*out = NULL;
	if (len == 0 || len > MV_MAX_KEY_FILE)
		return mv_err_set(err, -EINVAL, "%s: bad key length %zu", label, len);
	if (looks_like_pem(buf, len)) {
		bio = BIO_new_mem_buf(buf, (int)len);
		if (!bio)
			return mv_err_set(err, -ENOMEM, "%s: out of memory", label);
		pkey = PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
		BIO_free(bio);
	} else {
		pkey = d2i_PUBKEY(NULL, &p, (long)len);
		/* Trailing bytes after the DER would make two encodings mean one key. */
		if (pkey && p != buf + len) {
			EVP_PKEY_free(pkey);
			pkey = NULL;
		}
	}
	if (!pkey) {
		ERR_clear_error();
		return mv_err_set(err, -EINVAL, "%s: not a public key (SPKI DER or PEM)", label);
	}
	ret = mv_key_wrap(pkey, false, label, out, err);
	if (ret)
		EVP_PKEY_free(pkey);
	return ret;
}

/**
 * mv_key_free() - release a key
 * @k: in: key or NULL
 */
void mv_key_free(struct mv_key *k)
{
	if (!k)
		return;
	EVP_PKEY_free(k->pkey);
	free(k->spki);
	free(k);
}

/**
 * mv_key_get_type() - type of a loaded key
 * @k: in: key
 */
enum mv_key_type mv_key_get_type(const struct mv_key *k)
{
	return k->type;
}

/**
 * mv_key_hint() - the OMS key hint
 * @k: in: key
 * @out: out: 64 hex characters and a NUL
 */
void mv_key_hint(const struct mv_key *k, char out[65])
{
	memcpy(out, k->hint, 65);
}

/**
 * mv_key_id() - the modelfs key id (hex SHA-256 of the SPKI DER)
 * @k: in: key
 * @out: out: 64 hex characters and a NUL
 */
void mv_key_id(const struct mv_key *k, char out[65])
{
	memcpy(out, k->id, 65);
}

/**
 * mv_key_sign() - sign a message
 * @k: in: private key
 * @msg, @len: in: message (ECDSA hashes it with the curve's hash; Ed25519
 *             signs it directly)
 * @sig, @sig_len: out: malloc'd signature (DER for ECDSA, 64 bytes Ed25519)
 * @err: out: error line
 */
int mv_key_sign(const struct mv_key *k, const void *msg, size_t len, uint8_t **sig, size_t *sig_len,
                struct mv_err *err)
{
	EVP_MD_CTX *ctx = NULL;
	uint8_t *buf = NULL;
	size_t n = 0;
	int ret = -EINVAL;

	*sig = NULL;
	*sig_len = 0;
	if (!k->has_private)
		return mv_err_set(err, -EINVAL, "signing key: not a private key");
	ctx = EVP_MD_CTX_new();
	if (!ctx) {
		ret = mv_err_set(err, -ENOMEM, "signing: out of memory");
		goto out;
	}
	if (EVP_DigestSignInit(ctx, NULL, key_md(k->type), NULL, k->pkey) != 1 ||
	    EVP_DigestSign(ctx, NULL, &n, msg, len) != 1 || n == 0) {
		ret = mv_err_set(err, -EINVAL, "signing with %s key failed",
		                 mv_key_type_name(k->type));
		goto out;
	}
	buf = malloc(n);
	if (!buf) {
		ret = mv_err_set(err, -ENOMEM, "signing: out of memory");
		goto out;
	}
	if (EVP_DigestSign(ctx, buf, &n, msg, len) != 1) {
		ret = mv_err_set(err, -EINVAL, "signing with %s key failed",
		                 mv_key_type_name(k->type));
		goto out;
	}
	*sig = buf;
	*sig_len = n;
	buf = NULL;
	ret = 0;
out:
	free(buf);
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return ret;
}

/**
 * mv_key_verify() - check a signature
 * @k: in: key (public part used)
 * @msg, @len: in: the signed message
 * @sig, @sig_len: in: untrusted signature
 *
 * Return: 0 if valid, -EBADMSG otherwise (also for malformed signatures).
 */
int mv_key_verify(const struct mv_key *k, const void *msg, size_t len, const uint8_t *sig,
                  size_t sig_len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ret = -EBADMSG;

	if (!ctx)
		return -ENOMEM;
	if (EVP_DigestVerifyInit(ctx, NULL, key_md(k->type), NULL, k->pkey) == 1 &&
	    EVP_DigestVerify(ctx, sig, sig_len, msg, len) == 1)
		ret = 0;
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return ret;
}

/* Serializes @pkey's private (PKCS#8) or public (SPKI) PEM into a malloc'd buffer. */
static int key_pem(EVP_PKEY *pkey, bool priv, char **out, size_t *out_len)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data;
	long n;
	int ok, ret = -ENOMEM;

	*out = NULL;
	if (!bio)
		return -ENOMEM;
	ok = priv ? PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL)
	          : PEM_write_bio_PUBKEY(bio, pkey);
	n = BIO_get_mem_data(bio, &data);
	if (ok != 1 || n <= 0)
		goto out;
	*out = malloc((size_t)n);
	if (!*out)
		goto out;
	memcpy(*out, data, (size_t)n);
	*out_len = (size_t)n;
	OPENSSL_cleanse(data, (size_t)n);
	ret = 0;
out:
	BIO_free(bio);
	return ret;
}

/* Generates a fresh key pair of type @type. */
static EVP_PKEY *key_generate(enum mv_key_type type)
{
	if (type == MV_KEY_ED25519)
		return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	return EVP_PKEY_Q_keygen(NULL, NULL, "EC", key_types[type].group);
}

/**
 * mv_keygen() - create PREFIX.key (PKCS#8 PEM, 0600) and PREFIX.pub (SPKI PEM)
 * @type: in: key type
 * @prefix: in: path prefix
 * @err: out: error line naming the file
 *
 * Refuses (-EEXIST) if either file exists: overwriting a signing key by
 * mistake cannot be undone. Each file is written atomically; if the second
 * write fails the first file is removed again.
 */
int mv_keygen(enum mv_key_type type, const char *prefix, struct mv_err *err)
{
	char key_path[PATH_MAX], pub_path[PATH_MAX];
	char *priv = NULL, *pub = NULL;
	size_t priv_len = 0, pub_len = 0;
	EVP_PKEY *pkey = NULL;
	struct stat st;
	int ret;

	if ((unsigned)type >= sizeof(key_types) / sizeof(key_types[0]))
		return mv_err_set(err, -EINVAL, "keygen: unknown key type %d", (int)type);
	if (snprintf(key_path, sizeof(key_path), "%s.key", prefix) >= (int)sizeof(key_path) ||
	    snprintf(pub_path, sizeof(pub_path), "%s.pub", prefix) >= (int)sizeof(pub_path))
		return mv_err_set(err, -ENAMETOOLONG, "%s: path too long", prefix);
	if (lstat(key_path, &st) == 0 || lstat(pub_path, &st) == 0)
		return mv_err_set(err, -EEXIST, "%s: already exists; refusing to overwrite a key",
		                  lstat(key_path, &st) == 0 ? key_path : pub_path);
	pkey = key_generate(type);
	if (!pkey) {
		ret = mv_err_set(err, -ENOMEM, "%s: key generation failed", key_path);
		goto out;
	}
	if (key_pem(pkey, true, &priv, &priv_len) || key_pem(pkey, false, &pub, &pub_len)) {
		ret = mv_err_set(err, -ENOMEM, "%s: cannot encode the key", key_path);
		goto out;
	}
	ret = mv_write_file_atomic(key_path, priv, priv_len, 0600, err);
	if (ret)
		goto out;
	ret = mv_write_file_atomic(pub_path, pub, pub_len, 0644, err);
	if (ret)
		unlink(key_path);
out:
	if (priv) {
		OPENSSL_cleanse(priv, priv_len);
		free(priv);
	}
	free(pub);
	EVP_PKEY_free(pkey);
	ERR_clear_error();
	return ret;
}
