// SPDX-License-Identifier: Apache-2.0
/*
 * ss_rekor.c - transparency log entries of a Sigstore bundle (issue #14):
 * one entry's checks in order (ss_tlog_verify(): its log in the trusted
 * root, its shape, the Rekor v1 signed entry timestamp, the inclusion proof
 * with its checkpoint, the canonicalized body), and the hashing and log
 * signature helpers that ss_checkpoint.c and ss_rekor_body.c share (the
 * "ss_rekor internals" of sigstore_int.h). The contract is in
 * sigstore_int.h.
 *
 * Notes on the choices made here:
 *   - Rekor v1 inclusion proofs carry the shard-local index, which is not
 *     the entry's (global) logIndex; the two are only compared for Rekor v2,
 *     whose shards are separate logs.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "sig_internal.h"
#include "sigstore_int.h"

/* ------------------------------------------------------------------------
 * Hashing and the log's signatures
 * ------------------------------------------------------------------------ */

/**
 * ss_sha256() - one-shot SHA-256
 * @data, @len: in: the bytes
 * @out: out: the digest
 *
 * Return: 0 or -ENOMEM.
 */
int ss_sha256(const void *data, size_t len, uint8_t out[32])
{
	return EVP_Digest(data, len, out, NULL, EVP_sha256(), NULL) == 1 ? 0 : -ENOMEM;
}

/**
 * ss_sha256_prefixed() - SHA-256 of one byte followed by a buffer
 * @prefix: in: the first byte (0x00 for a leaf, 0x01 for a node)
 * @a, @a_len, @b, @b_len: in: the bytes that follow (@b may be NULL)
 * @out: out: the digest
 *
 * Return: 0 or -ENOMEM.
 */
int ss_sha256_prefixed(uint8_t prefix, const void *a, size_t a_len, const void *b, size_t b_len,
                       uint8_t out[32])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ret = -ENOMEM;

	if (!ctx)
		return -ENOMEM;
	if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(ctx, &prefix, 1) == 1 && EVP_DigestUpdate(ctx, a, a_len) == 1 &&
	    (!b || EVP_DigestUpdate(ctx, b, b_len) == 1) && EVP_DigestFinal_ex(ctx, out, NULL) == 1)
		ret = 0;
	EVP_MD_CTX_free(ctx);
	return ret;
}

/**
 * ss_spki_sha256() - SHA-256 of the DER SubjectPublicKeyInfo of a key
 * @pkey: in: the key
 * @out: out: the digest
 *
 * Return: 0, -EBADMSG (the key cannot be encoded) or -ENOMEM.
 */
int ss_spki_sha256(EVP_PKEY *pkey, uint8_t out[32])
{
	unsigned char *der = NULL;
	int n, ret;

	n = i2d_PUBKEY(pkey, &der);
	if (n <= 0) {
		ERR_clear_error();
		return -EBADMSG;
	}
	ret = ss_sha256(der, (size_t)n, out);
	OPENSSL_free(der);
	return ret;
}

/**
 * log_digest() - the digest a log's ECDSA key signs with
 * @log: in: the log; its key details name the digest ("..._SHA_384")
 *
 * Return: the digest; SHA-256 unless the trusted root says otherwise.
 */
static const EVP_MD *log_digest(const struct ss_log *log)
{
	const char *d = log->key_details ? log->key_details : "";

	if (strstr(d, "SHA_384"))
		return EVP_sha384();
	if (strstr(d, "SHA_512"))
		return EVP_sha512();
	return EVP_sha256();
}

/**
 * ss_log_sig_verify() - verify a signature by a transparency log's key
 * @log: in: the log (ECDSA with ASN.1 signatures over a digest, or Ed25519)
 * @msg, @len: in: the signed bytes
 * @sig, @sig_len: in: the signature
 *
 * Return: 0, -EKEYREJECTED (no such signature, or a key type the logs do not
 * use) or -ENOMEM.
 */
int ss_log_sig_verify(const struct ss_log *log, const void *msg, size_t len, const uint8_t *sig,
                      size_t sig_len)
{
	const EVP_MD *md = NULL;
	EVP_MD_CTX *ctx;
	int ret = -EKEYREJECTED;

	if (!log->pkey)
		return -EKEYREJECTED;
	if (EVP_PKEY_is_a(log->pkey, "EC"))
		md = log_digest(log);
	else if (!EVP_PKEY_is_a(log->pkey, "ED25519"))
		return -EKEYREJECTED;
	ctx = EVP_MD_CTX_new();
	if (!ctx)
		return -ENOMEM;
	if (EVP_DigestVerifyInit(ctx, NULL, md, NULL, log->pkey) == 1 &&
	    EVP_DigestVerify(ctx, sig, sig_len, msg, len) == 1)
		ret = 0;
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return ret;
}

/**
 * ss_log_host() - the host (with port) of a log's base URL, its checkpoint origin
 * @log: in: the log ("https://log2025-1.rekor.sigstore.dev")
 * @buf, @size: out: "log2025-1.rekor.sigstore.dev"; "" without a base URL
 *
 * Return: @buf.
 */
const char *ss_log_host(const struct ss_log *log, char *buf, size_t size)
{
	const char *s = log->base_url ? log->base_url : "";
	const char *scheme = strstr(s, "://");
	size_t n;

	if (scheme)
		s = scheme + 3;
	n = strcspn(s, "/");
	if (n >= size)
		n = size - 1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return buf;
}

/* ------------------------------------------------------------------------
 * Signed entry timestamps (Rekor v1 inclusion promises)
 * ------------------------------------------------------------------------ */

/**
 * set_verify() - verify an entry's inclusion promise and its time
 * @e: in: the entry, with a signed entry timestamp
 * @log: in: its log
 * @now: in: the current time
 * @i: in: the entry's number, for messages
 * @err: out: error line
 *
 * The log signs the canonical JSON (RFC 8785) of {body, integratedTime,
 * logID, logIndex}: members sorted, no spaces, the body in base64 and the
 * log id in lowercase hex.
 *
 * Return: 0, -EKEYREJECTED or -ENOMEM.
 */
static int set_verify(const struct ss_tlog_entry *e, const struct ss_log *log, int64_t now,
                      size_t i, struct mv_err *err)
{
	char log_id[2 * sizeof(e->log_id) + 1], host[256], *body64, *msg = NULL;
	int n, ret;

	ss_log_host(log, host, sizeof(host));
	mv_hex_encode(e->log_id, e->log_id_len, log_id);
	body64 = mv_base64_encode(e->body, e->body_len);
	if (!body64)
		return mv_err_set(err, -ENOMEM, "tlog entry %zu: out of memory", i);
	n = asprintf(&msg,
	             "{\"body\":\"%s\",\"integratedTime\":%" PRId64 ",\"logID\":\"%s\","
	             "\"logIndex\":%" PRId64 "}",
	             body64, e->integrated_time, log_id, e->log_index);
	free(body64);
	if (n < 0)
		return mv_err_set(err, -ENOMEM, "tlog entry %zu: out of memory", i);
	ret = ss_log_sig_verify(log, msg, (size_t)n, e->set, e->set_len);
	free(msg);
	if (ret)
		return mv_err_set(err, ret,
		                  "tlog entry %zu: inclusion promise: signed entry timestamp does "
		                  "not verify with the key of log %s",
		                  i, host);
	if (e->integrated_time <= 0)
		return mv_err_set(err, -EKEYREJECTED,
		                  "tlog entry %zu: inclusion promise: no "
		                  "integrated time",
		                  i);
	if (e->integrated_time - SS_CLOCK_SKEW > now)
		return mv_err_set(err, -EKEYREJECTED,
		                  "tlog entry %zu: integrated time %" PRId64
		                  " is after the current time %" PRId64,
		                  i, e->integrated_time, now);
	if (!ss_window_has(&log->valid, e->integrated_time))
		return mv_err_set(err, -EKEYREJECTED,
		                  "tlog entry %zu: integrated time %" PRId64
		                  " outside the validity of the key of log %s",
		                  i, e->integrated_time, host);
	return 0;
}

/* ------------------------------------------------------------------------
 * Inclusion proofs with their checkpoint
 * ------------------------------------------------------------------------ */

/**
 * prefixed() - copy a sub-check's error into @err with the entry's number
 * @err: out: "tlog entry @i: <sub>"
 * @ret: in: the sub-check's return
 * @i: in: the entry's number
 * @sub: in: the sub-check's error
 *
 * Return: @ret.
 */
static int prefixed(struct mv_err *err, int ret, size_t i, const struct mv_err *sub)
{
	return mv_err_set(err, ret, "tlog entry %zu: %s", i, sub->msg);
}

/**
 * checkpoint_match() - the checkpoint against the proof and the log
 * @e: in: the entry
 * @cp: in: its verified checkpoint
 * @log: in: the log
 * @v2: in: a Rekor v2 entry, whose checkpoint origin is the log's host
 * @i: in: the entry's number, for messages
 * @err: out: error line
 *
 * Return: 0 or -EKEYREJECTED.
 */
static int checkpoint_match(const struct ss_tlog_entry *e, const struct ss_checkpoint *cp,
                            const struct ss_log *log, bool v2, size_t i, struct mv_err *err)
{
	char host[256], a[65], b[65];

	if (cp->size != e->tree_size)
		return mv_err_set(err, -EKEYREJECTED,
		                  "tlog entry %zu: checkpoint: tree size %" PRId64
		                  " != inclusion proof tree size %" PRId64,
		                  i, cp->size, e->tree_size);
	if (memcmp(cp->root, e->root_hash, sizeof(cp->root))) {
		mv_hex_encode(cp->root, sizeof(cp->root), a);
		mv_hex_encode(e->root_hash, sizeof(e->root_hash), b);
		return mv_err_set(
		    err, -EKEYREJECTED,
		    "tlog entry %zu: checkpoint: root hash %s != inclusion proof root "
		    "hash %s",
		    i, a, b);
	}
	ss_log_host(log, host, sizeof(host));
	if (v2 && strcmp(cp->origin, host))
		return mv_err_set(
		    err, -EKEYREJECTED,
		    "tlog entry %zu: checkpoint: origin \"%s\" is not the host \"%s\" "
		    "of the log",
		    i, MV_P(cp->origin), host);
	return 0;
}

/**
 * proof_verify() - verify an entry's inclusion proof and its checkpoint
 * @e: in: the entry, with an inclusion proof
 * @log: in: its log
 * @v2: in: a Rekor v2 entry (the proof's index is the entry's log index)
 * @i: in: the entry's number, for messages
 * @err: out: error line
 *
 * Return: 0, -EBADMSG (no checkpoint, a malformed one), -EKEYREJECTED or
 * -ENOMEM.
 */
static int proof_verify(const struct ss_tlog_entry *e, const struct ss_log *log, bool v2, size_t i,
                        struct mv_err *err)
{
	struct mv_err sub = {0};
	struct ss_checkpoint cp;
	uint8_t leaf[32];
	int ret;

	if (!e->checkpoint)
		return mv_err_set(err, -EBADMSG,
		                  "tlog entry %zu: inclusion proof without a "
		                  "checkpoint",
		                  i);
	if (v2 && e->proof_index != e->log_index)
		return mv_err_set(err, -EKEYREJECTED,
		                  "tlog entry %zu: inclusion proof: index %" PRId64
		                  " != log index %" PRId64,
		                  i, e->proof_index, e->log_index);
	ret = ss_sha256_prefixed(0x00, e->body, e->body_len, NULL, 0, leaf);
	if (ret)
		return mv_err_set(err, ret, "tlog entry %zu: out of memory", i);
	ret = ss_merkle_inclusion(e->proof_index, e->tree_size, leaf,
	                          (const uint8_t(*)[32])e->hashes, e->n_hashes, e->root_hash, &sub);
	if (ret)
		return prefixed(err, ret, i, &sub);
	ret = ss_checkpoint_verify(e->checkpoint, e->checkpoint_len, log, &cp, &sub);
	if (ret)
		return prefixed(err, ret, i, &sub);
	return checkpoint_match(e, &cp, log, v2, i, err);
}

/* ------------------------------------------------------------------------
 * One entry
 * ------------------------------------------------------------------------ */

/**
 * find_log() - the log of the trusted root that an entry names
 * @root: in: the trusted root
 * @e: in: the entry
 * @i: in: its number, for messages
 * @out: out: the log, borrowed from @root
 * @err: out: error line
 *
 * Return: 0 or -EKEYREJECTED.
 */
static int find_log(const struct ss_root *root, const struct ss_tlog_entry *e, size_t i,
                    const struct ss_log **out, struct mv_err *err)
{
	char id[2 * sizeof(e->log_id) + 1];

	for (size_t k = 0; k < root->n_tlogs; k++) {
		const struct ss_log *l = &root->tlogs[k];

		if (e->log_id_len && l->log_id_len == e->log_id_len &&
		    !memcmp(l->log_id, e->log_id, e->log_id_len)) {
			*out = l;
			return 0;
		}
	}
	mv_hex_encode(e->log_id, e->log_id_len, id);
	return mv_err_set(err, -EKEYREJECTED, "tlog entry %zu: log %s is not in the trusted root",
	                  i, id);
}

/**
 * entry_shape() - which of promise and proof an entry must carry
 * @b: in: the bundle (v0.2 and later require a proof, v0.1 a promise)
 * @e: in: the entry
 * @t: in: its type (Rekor v2: a proof and no promise)
 * @i: in: its number, for messages
 * @err: out: error line
 *
 * Return: 0 or -EBADMSG.
 */
static int entry_shape(const struct ss_bundle *b, const struct ss_tlog_entry *e,
                       const struct ss_body_type *t, size_t i, struct mv_err *err)
{
	if (!e->body || !e->body_len)
		return mv_err_set(err, -EBADMSG, "tlog entry %zu: no canonicalized body", i);
	if (t->v2 && e->set)
		return mv_err_set(err, -EBADMSG,
		                  "tlog entry %zu: an inclusion promise in a Rekor v2 entry", i);
	if (t->v2 && !e->has_proof)
		return mv_err_set(err, -EBADMSG,
		                  "tlog entry %zu: a Rekor v2 entry without an inclusion proof", i);
	if (b->minor >= 2 && !e->has_proof)
		return mv_err_set(err, -EBADMSG,
		                  "tlog entry %zu: bundle v0.%d without an inclusion proof", i,
		                  b->minor);
	if (b->minor < 2 && !e->set)
		return mv_err_set(err, -EBADMSG,
		                  "tlog entry %zu: bundle v0.%d without an inclusion promise", i,
		                  b->minor);
	return 0;
}

/**
 * ss_tlog_verify() - verify one transparency log entry of a bundle
 * @b: in: the bundle
 * @i: in: the entry's index in @b->tlog
 * @root: in: the trusted root
 * @artifact_sha256: in: SHA-256 of the artifact (message signatures); may
 *                   be NULL, then the bundle's messageDigest is used
 * @now: in: the current time
 * @out: out: the log, and the integrated time when a promise verified
 * @err: out: "tlog entry @i: ..." on failure
 *
 * Return: 0, -EBADMSG, -EKEYREJECTED, -ENOMEM, or -EINVAL for no entry @i.
 */
int ss_tlog_verify(const struct ss_bundle *b, size_t i, const struct ss_root *root,
                   const uint8_t artifact_sha256[32], int64_t now, struct ss_tlog_result *out,
                   struct mv_err *err)
{
	const struct ss_tlog_entry *e;
	const struct ss_body_type *t = NULL;
	const struct ss_log *log = NULL;
	uint8_t key_sha256[32];
	int ret;

	memset(out, 0, sizeof(*out));
	if (!b || !root || i >= b->n_tlog)
		return mv_err_set(err, -EINVAL, "tlog entry %zu: no such entry", i);
	e = &b->tlog[i];
	if (e->log_id_len > sizeof(e->log_id))
		return mv_err_set(err, -EBADMSG, "tlog entry %zu: log id of %zu bytes", i,
		                  e->log_id_len);
	ret = ss_body_type_find(e, i, &t, err);
	if (!ret)
		ret = find_log(root, e, i, &log, err);
	if (!ret)
		ret = entry_shape(b, e, t, i, err);
	if (!ret && e->set)
		ret = set_verify(e, log, now, i, err);
	if (!ret && e->has_proof)
		ret = proof_verify(e, log, t->v2, i, err);
	if (!ret)
		ret = ss_body_verify(b, e, t, artifact_sha256, i, key_sha256, err);
	if (ret)
		return ret;
	out->log = log;
	out->has_time = e->set != NULL;
	out->time = out->has_time ? e->integrated_time : 0;
	memcpy(out->key_sha256, key_sha256, sizeof(out->key_sha256));
	return 0;
}
