// SPDX-License-Identifier: Apache-2.0
/*
 * ss_rekor.c - transparency log entries of a Sigstore bundle (issue #14):
 * RFC 9162 inclusion proofs, C2SP signed checkpoints (Rekor v1 ECDSA notes,
 * Rekor v2 Ed25519 notes; witness cosignatures are ignored), Rekor v1
 * signed entry timestamps, and the canonicalized body of an entry checked
 * against the bundle (hashedrekord 0.0.1 and 0.0.2, dsse 0.0.1 and 0.0.2,
 * intoto 0.0.2). The contract is in sigstore_int.h.
 *
 * Over 1,000 lines: one concern, a log entry, whose parts (proof, note,
 * promise, and a body check per entry type) share private helpers that
 * splitting the file would have to publish in sigstore_int.h.
 *
 * Notes on the choices made here:
 *   - Rekor v1 inclusion proofs carry the shard-local index, which is not
 *     the entry's (global) logIndex; the two are only compared for Rekor v2,
 *     whose shards are separate logs.
 *   - The body of a Rekor v2 entry is checked field by field against the
 *     bundle and then hashed as logged ("use the persisted
 *     canonicalized_body", rekor-v2-spec 6.1.4), not rebuilt.
 *   - An ECDSA note key's ID (the start of SHA-256 of its SPKI, the Rekor
 *     log id) binds no name, so the name on its signature line is not
 *     compared: Rekor v1 signs as "rekor.sigstore.dev" a checkpoint whose
 *     origin is "rekor.sigstore.dev - <tree id>". An Ed25519 key's ID
 *     binds the origin, and the line must carry that name. Only Rekor v2
 *     checkpoints must have the log's host as their origin.
 *   - The DSSE envelope hash of dsse 0.0.1 and the envelope hash of intoto
 *     0.0.2 are hashes of the envelope as it was uploaded, which cannot be
 *     rebuilt from a bundle; the payload hash, the signature and the
 *     verifier are compared instead.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "sig_internal.h"
#include "sigstore_int.h"

/* Seconds an integrated time may lie after @now (the log's clock and ours). */
#define SS_CLOCK_SKEW    60
#define SS_MAX_NOTE      (256u << 10) /* a signed checkpoint */
#define SS_MAX_NOTE_SIGS 64u          /* signature lines of a checkpoint */
#define SS_MAX_BODY_SIGS 16u          /* signatures in a dsse/intoto body */

/* ------------------------------------------------------------------------
 * Hashing and the log's signatures
 * ------------------------------------------------------------------------ */

/**
 * sha256() - one-shot SHA-256
 * @data, @len: in: the bytes
 * @out: out: the digest
 *
 * Return: 0 or -ENOMEM.
 */
static int sha256(const void *data, size_t len, uint8_t out[32])
{
	return EVP_Digest(data, len, out, NULL, EVP_sha256(), NULL) == 1 ? 0 : -ENOMEM;
}

/**
 * sha256_prefixed() - SHA-256 of one byte followed by a buffer
 * @prefix: in: the first byte (0x00 for a leaf, 0x01 for a node)
 * @a, @a_len, @b, @b_len: in: the bytes that follow (@b may be NULL)
 * @out: out: the digest
 *
 * Return: 0 or -ENOMEM.
 */
static int sha256_prefixed(uint8_t prefix, const void *a, size_t a_len, const void *b, size_t b_len,
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
 * spki_sha256() - SHA-256 of the DER SubjectPublicKeyInfo of a key
 * @pkey: in: the key
 * @out: out: the digest
 *
 * Return: 0, -EBADMSG (the key cannot be encoded) or -ENOMEM.
 */
static int spki_sha256(EVP_PKEY *pkey, uint8_t out[32])
{
	unsigned char *der = NULL;
	int n, ret;

	n = i2d_PUBKEY(pkey, &der);
	if (n <= 0) {
		ERR_clear_error();
		return -EBADMSG;
	}
	ret = sha256(der, (size_t)n, out);
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
 * log_sig_verify() - verify a signature by a transparency log's key
 * @log: in: the log (ECDSA with ASN.1 signatures over a digest, or Ed25519)
 * @msg, @len: in: the signed bytes
 * @sig, @sig_len: in: the signature
 *
 * Return: 0, -EKEYREJECTED (no such signature, or a key type the logs do not
 * use) or -ENOMEM.
 */
static int log_sig_verify(const struct ss_log *log, const void *msg, size_t len, const uint8_t *sig,
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
 * log_host() - the host (with port) of a log's base URL, its checkpoint origin
 * @log: in: the log ("https://log2025-1.rekor.sigstore.dev")
 * @buf, @size: out: "log2025-1.rekor.sigstore.dev"; "" without a base URL
 *
 * Return: @buf.
 */
static const char *log_host(const struct ss_log *log, char *buf, size_t size)
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
 * RFC 9162 inclusion proofs
 * ------------------------------------------------------------------------ */

/**
 * ss_merkle_inclusion() - RFC 9162 2.1.3.2 inclusion proof verification
 * @index: in: the leaf's index in the tree
 * @size: in: the number of leaves of the tree
 * @leaf: in: the leaf hash, SHA-256(0x00 || entry)
 * @path, @n: in: the audit path, @n hashes (at most SS_MAX_PROOF)
 * @root: in: the expected root hash
 * @err: out: "inclusion proof: ..." on failure
 *
 * Return: 0, -EKEYREJECTED (the path does not lead to @root, an index
 * outside the tree, a path of the wrong length) or -ENOMEM.
 */
int ss_merkle_inclusion(int64_t index, int64_t size, const uint8_t leaf[32],
                        const uint8_t (*path)[32], size_t n, const uint8_t root[32],
                        struct mv_err *err)
{
	char got[65], want[65];
	uint64_t fn, sn;
	uint8_t r[32];
	int ret = 0;

	if (index < 0 || size <= 0 || index >= size)
		return mv_err_set(err, -EKEYREJECTED,
		                  "inclusion proof: index %" PRId64 " outside a tree of %" PRId64
		                  " leaves",
		                  index, size);
	if (n > SS_MAX_PROOF || (n && !path))
		return mv_err_set(err, -EKEYREJECTED, "inclusion proof: %zu hashes (limit %u)", n,
		                  SS_MAX_PROOF);
	fn = (uint64_t)index;
	sn = (uint64_t)size - 1;
	memcpy(r, leaf, sizeof(r));
	for (size_t k = 0; k < n && !ret; k++) {
		if (sn == 0)
			return mv_err_set(err, -EKEYREJECTED,
			                  "inclusion proof: %zu hashes, more than leaf %" PRId64
			                  " of a tree of %" PRId64 " needs",
			                  n, index, size);
		if ((fn & 1) || fn == sn) {
			ret = sha256_prefixed(0x01, path[k], 32, r, 32, r);
			while (!(fn & 1) && fn) {
				fn >>= 1;
				sn >>= 1;
			}
		} else {
			ret = sha256_prefixed(0x01, r, 32, path[k], 32, r);
		}
		fn >>= 1;
		sn >>= 1;
	}
	if (ret)
		return mv_err_set(err, ret, "inclusion proof: out of memory");
	if (sn != 0)
		return mv_err_set(err, -EKEYREJECTED,
		                  "inclusion proof: %zu hashes, fewer than leaf %" PRId64
		                  " of a tree of %" PRId64 " needs",
		                  n, index, size);
	if (memcmp(r, root, sizeof(r))) {
		mv_hex_encode(r, sizeof(r), got);
		mv_hex_encode(root, 32, want);
		return mv_err_set(err, -EKEYREJECTED,
		                  "inclusion proof: computed root %s != expected root %s", got,
		                  want);
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * Signed notes and checkpoints (C2SP signed-note, tlog-checkpoint)
 * ------------------------------------------------------------------------ */

/* One signature line: "— NAME BASE64\n", pointing into the note. */
struct note_line {
	const char *name;
	size_t name_len;
	const char *b64;
	size_t b64_len;
};

struct note {
	const char *text; /* the signed text, with its final newline */
	size_t text_len;
	struct note_line sigs[SS_MAX_NOTE_SIGS];
	size_t n_sigs;
};

/**
 * note_line_parse() - split one signature line (without its newline)
 * @s, @len: in: the line
 * @l: out: its name and base64 signature
 *
 * Return: 0 or -EBADMSG.
 */
static int note_line_parse(const char *s, size_t len, struct note_line *l)
{
	static const char dash[] = "\xe2\x80\x94 "; /* U+2014, space */
	const char *sp;

	if (len < 4 || memcmp(s, dash, 4))
		return -EBADMSG;
	s += 4;
	len -= 4;
	sp = memchr(s, ' ', len);
	if (!sp || sp == s)
		return -EBADMSG;
	l->name = s;
	l->name_len = (size_t)(sp - s);
	l->b64 = sp + 1;
	l->b64_len = len - l->name_len - 1;
	if (!l->b64_len || memchr(l->b64, ' ', l->b64_len) || memchr(l->name, '+', l->name_len))
		return -EBADMSG;
	return 0;
}

/**
 * note_text_check() - the character rules of a signed note
 * @s, @len: in: the whole note
 * @err: out: error line
 *
 * Return: 0 or -EBADMSG (too large, not UTF-8, a control character other
 * than newline).
 */
static int note_text_check(const char *s, size_t len, struct mv_err *err)
{
	if (len > SS_MAX_NOTE)
		return mv_err_set(err, -EBADMSG, "checkpoint: %zu bytes (limit %u)", len,
		                  SS_MAX_NOTE);
	if (!mv_utf8_valid(s, len))
		return mv_err_set(err, -EBADMSG, "checkpoint: not valid UTF-8");
	for (size_t k = 0; k < len; k++)
		if ((unsigned char)s[k] < 0x20 && s[k] != '\n')
			return mv_err_set(err, -EBADMSG,
			                  "checkpoint: control character 0x%02x at byte %zu",
			                  (unsigned char)s[k], k);
	return 0;
}

/**
 * note_split() - split a signed note into its text and signature lines
 * @s, @len: in: the note (untrusted)
 * @n: out: the text and the lines, pointing into @s
 * @err: out: error line
 *
 * The text ends at the last blank line; every line after it is a signature.
 *
 * Return: 0 or -EBADMSG.
 */
static int note_split(const char *s, size_t len, struct note *n, struct mv_err *err)
{
	size_t blank = 0, pos, end;
	int ret;

	ret = note_text_check(s, len, err);
	if (ret)
		return ret;
	for (size_t k = len; k >= 2; k--) {
		if (s[k - 2] == '\n' && s[k - 1] == '\n') {
			blank = k - 1;
			break;
		}
	}
	if (!blank)
		return mv_err_set(err, -EBADMSG, "checkpoint: no blank line before the signatures");
	n->text = s;
	n->text_len = blank;
	n->n_sigs = 0;
	if (blank + 1 == len)
		return mv_err_set(err, -EBADMSG, "checkpoint: no signature lines");
	if (s[len - 1] != '\n')
		return mv_err_set(err, -EBADMSG, "checkpoint: the last line has no newline");
	for (pos = blank + 1; pos < len; pos = end + 1) {
		end = (size_t)((const char *)memchr(s + pos, '\n', len - pos) - s);
		if (n->n_sigs == SS_MAX_NOTE_SIGS)
			return mv_err_set(err, -EBADMSG, "checkpoint: more than %u signatures",
			                  SS_MAX_NOTE_SIGS);
		if (note_line_parse(s + pos, end - pos, &n->sigs[n->n_sigs]))
			return mv_err_set(
			    err, -EBADMSG,
			    "checkpoint: signature line %zu is not \"\xe2\x80\x94 NAME "
			    "SIGNATURE\"",
			    n->n_sigs + 1);
		n->n_sigs++;
	}
	return 0;
}

/**
 * parse_decimal() - a non-negative decimal without leading zeros
 * @s, @len: in: the digits
 * @out: out: the value
 *
 * Return: 0 or -EBADMSG (not digits, a leading zero, over INT64_MAX).
 */
static int parse_decimal(const char *s, size_t len, int64_t *out)
{
	uint64_t v = 0;

	if (!len || len > 19 || (s[0] == '0' && len > 1))
		return -EBADMSG;
	for (size_t k = 0; k < len; k++) {
		if (s[k] < '0' || s[k] > '9')
			return -EBADMSG;
		v = v * 10 + (uint64_t)(s[k] - '0');
	}
	if (v > INT64_MAX)
		return -EBADMSG;
	*out = (int64_t)v;
	return 0;
}

/**
 * checkpoint_body() - parse the text of a checkpoint
 * @s, @len: in: the note text, ending in a newline
 * @cp: out: origin, tree size and root hash
 * @err: out: error line
 *
 * Return: 0 or -EBADMSG (fewer than three lines, an empty or overlong
 * origin, a bad size, a root hash that is not 32 bytes of base64, an empty
 * extension line).
 */
static int checkpoint_body(const char *s, size_t len, struct ss_checkpoint *cp, struct mv_err *err)
{
	const char *line[3];
	size_t line_len[3], pos = 0, n = 0, root_len = 0;
	uint8_t *root = NULL;
	int ret;

	while (pos < len) {
		const char *nl = memchr(s + pos, '\n', len - pos);
		size_t l = (size_t)(nl - (s + pos));

		if (!l)
			return mv_err_set(err, -EBADMSG, "checkpoint: line %zu is empty", n + 1);
		if (n < 3) {
			line[n] = s + pos;
			line_len[n] = l;
		}
		n++;
		pos += l + 1;
	}
	if (n < 3)
		return mv_err_set(err, -EBADMSG,
		                  "checkpoint: %zu lines, not origin, tree size and root hash", n);
	if (line_len[0] >= sizeof(cp->origin))
		return mv_err_set(err, -EBADMSG, "checkpoint: origin of %zu bytes (limit %zu)",
		                  line_len[0], sizeof(cp->origin) - 1);
	memcpy(cp->origin, line[0], line_len[0]);
	cp->origin[line_len[0]] = '\0';
	if (parse_decimal(line[1], line_len[1], &cp->size))
		return mv_err_set(err, -EBADMSG, "checkpoint: line 2 is not a tree size");
	ret = mv_base64_decode(line[2], line_len[2], &root, &root_len);
	if (ret == -ENOMEM)
		return mv_err_set(err, ret, "checkpoint: out of memory");
	if (ret || root_len != sizeof(cp->root)) {
		free(root);
		return mv_err_set(err, -EBADMSG, "checkpoint: line 3 is not a base64 root hash");
	}
	memcpy(cp->root, root, sizeof(cp->root));
	free(root);
	return 0;
}

/**
 * note_key_id() - the key ID under which a log signs notes
 * @log: in: the log
 * @name: in: the key name (the checkpoint's origin), for Ed25519
 * @id: out: Ed25519: SHA-256(name || 0x0A || 0x01 || key)[:4];
 *      ECDSA: SHA-256(DER SubjectPublicKeyInfo)[:4], the log id's start
 * @ed25519: out: whether the key is Ed25519 (whose ID binds the name)
 *
 * Return: 0, -EKEYREJECTED (a key type logs do not sign notes with) or
 * -ENOMEM.
 */
static int note_key_id(const struct ss_log *log, const char *name, uint8_t id[4], bool *ed25519)
{
	/* name (an origin: under 256 bytes), newline, type byte, key */
	uint8_t key[32], buf[256 + 2 + 32], md[32];
	size_t key_len = sizeof(key), name_len = strlen(name);
	int ret;

	*ed25519 = log->pkey && EVP_PKEY_is_a(log->pkey, "ED25519");
	if (*ed25519) {
		if (EVP_PKEY_get_raw_public_key(log->pkey, key, &key_len) != 1 || key_len != 32 ||
		    name_len > sizeof(buf) - 2 - 32) {
			ERR_clear_error();
			return -EKEYREJECTED;
		}
		memcpy(buf, name, name_len);
		buf[name_len] = '\n';
		buf[name_len + 1] = 0x01;
		memcpy(buf + name_len + 2, key, 32);
		ret = sha256(buf, name_len + 2 + 32, md);
	} else if (log->pkey && EVP_PKEY_is_a(log->pkey, "EC")) {
		ret = spki_sha256(log->pkey, md);
	} else {
		return -EKEYREJECTED;
	}
	if (!ret)
		memcpy(id, md, 4);
	return ret == -EBADMSG ? -EKEYREJECTED : ret;
}

/**
 * note_verify() - find and verify the log's signatures on a note
 * @n: in: the split note
 * @log: in: the log
 * @origin: in: the checkpoint's origin, the name of an Ed25519 log key
 * @err: out: error line
 *
 * A line is the log's when its key ID (and for Ed25519 its name) is the
 * log's; other lines, cosignatures of witnesses, are ignored. Every line of
 * the log must verify, and there must be one.
 *
 * Return: 0, -EBADMSG (a signature that is not base64 of 5 bytes or more),
 * -EKEYREJECTED or -ENOMEM.
 */
static int note_verify(const struct note *n, const struct ss_log *log, const char *origin,
                       struct mv_err *err)
{
	size_t verified = 0, raw_len = 0, origin_len = strlen(origin);
	char host[256], hint[9];
	uint8_t id[4], *raw = NULL;
	bool ed25519;
	int ret;

	log_host(log, host, sizeof(host));
	ret = note_key_id(log, origin, id, &ed25519);
	if (ret)
		return mv_err_set(err, ret, "checkpoint: log %s has a key that cannot sign notes",
		                  host);
	mv_hex_encode(id, sizeof(id), hint);
	for (size_t k = 0; k < n->n_sigs && !ret; k++) {
		const struct note_line *l = &n->sigs[k];

		ret = mv_base64_decode(l->b64, l->b64_len, &raw, &raw_len);
		if (ret || raw_len < 5) {
			ret = ret == -ENOMEM ? -ENOMEM : -EBADMSG;
			mv_err_set(err, ret,
			           "checkpoint: signature line %zu is not base64 of a key "
			           "ID and a signature",
			           k + 1);
			break;
		}
		if (!memcmp(raw, id, 4) && (!ed25519 || (l->name_len == origin_len &&
		                                         !memcmp(l->name, origin, origin_len)))) {
			ret = log_sig_verify(log, n->text, n->text_len, raw + 4, raw_len - 4);
			if (ret)
				mv_err_set(err, ret,
				           "checkpoint: signature line %zu by log %s (key hint %s) "
				           "does not verify",
				           k + 1, host, hint);
			verified++;
		}
		free(raw);
		raw = NULL;
	}
	free(raw);
	if (!ret && !verified)
		ret = mv_err_set(err, -EKEYREJECTED,
		                 "checkpoint: no signature by log %s (key hint %s)", host, hint);
	return ret;
}

/**
 * ss_checkpoint_verify() - verify a signed checkpoint with a log's key
 * @note, @len: in: the signed note (untrusted; need not be NUL-terminated)
 * @log: in: the log whose signature is required
 * @out: out: origin, tree size and root hash, set only on success
 * @err: out: "checkpoint: ..." on failure
 *
 * Return: 0, -EBADMSG (malformed note or checkpoint), -EKEYREJECTED (no
 * signature line of the log, or one that does not verify) or -ENOMEM.
 */
int ss_checkpoint_verify(const char *note, size_t len, const struct ss_log *log,
                         struct ss_checkpoint *out, struct mv_err *err)
{
	struct ss_checkpoint cp;
	struct note *n;
	int ret;

	if (!note || !log)
		return mv_err_set(err, -EBADMSG, "checkpoint: missing");
	n = malloc(sizeof(*n));
	if (!n)
		return mv_err_set(err, -ENOMEM, "checkpoint: out of memory");
	ret = note_split(note, len, n, err);
	if (ret)
		goto out;
	ret = checkpoint_body(n->text, n->text_len, &cp, err);
	if (ret)
		goto out;
	ret = note_verify(n, log, cp.origin, err);
	if (ret)
		goto out;
	*out = cp;
out:
	free(n);
	return ret;
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

	log_host(log, host, sizeof(host));
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
	ret = log_sig_verify(log, msg, (size_t)n, e->set, e->set_len);
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
	log_host(log, host, sizeof(host));
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
	ret = sha256_prefixed(0x00, e->body, e->body_len, NULL, 0, leaf);
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
 * The canonicalized body against the bundle
 * ------------------------------------------------------------------------ */

struct body_ctx {
	const struct ss_bundle *b;
	const uint8_t *digest; /* what the entry must name: artifact or PAE digest */
	char label[48];        /* "tlog entry 0: body" */
	uint8_t key_sha256[32];
};

/* A verifier named by the body: a certificate or a public key. */
struct body_key {
	X509 *cert;
	EVP_PKEY *pkey;
	uint8_t *der; /* the certificate's DER as logged */
	size_t der_len;
};

/**
 * body_key_free() - release what a body_key holds
 * @k: in/out: the key, zeroed
 */
static void body_key_free(struct body_key *k)
{
	X509_free(k->cert);
	EVP_PKEY_free(k->pkey);
	free(k->der);
	memset(k, 0, sizeof(*k));
}

/**
 * body_key_der() - a certificate or public key from DER
 * @der, @len: in: the encoding; copied when a certificate
 * @cert: in: whether it is a certificate (else a SubjectPublicKeyInfo)
 * @k: out: the key, to release with body_key_free()
 *
 * Return: 0, -EBADMSG (not exactly one DER object of that kind) or -ENOMEM.
 */
static int body_key_der(const uint8_t *der, size_t len, bool cert, struct body_key *k)
{
	const unsigned char *p = der;

	if (!len || len > LONG_MAX)
		return -EBADMSG;
	if (cert)
		k->cert = d2i_X509(NULL, &p, (long)len);
	else
		k->pkey = d2i_PUBKEY(NULL, &p, (long)len);
	ERR_clear_error();
	if ((cert ? !k->cert : !k->pkey) || p != der + len) {
		body_key_free(k);
		return -EBADMSG;
	}
	if (cert) {
		k->der = malloc(len);
		if (!k->der) {
			body_key_free(k);
			return -ENOMEM;
		}
		memcpy(k->der, der, len);
		k->der_len = len;
	}
	return 0;
}

/**
 * body_key_pem() - a certificate or public key from PEM (Rekor v1 bodies)
 * @pem, @len: in: the text ("CERTIFICATE" or "PUBLIC KEY"; the first block)
 * @k: out: the key, to release with body_key_free()
 *
 * Return: 0, -EBADMSG or -ENOMEM.
 */
static int body_key_pem(const uint8_t *pem, size_t len, struct body_key *k)
{
	char *name = NULL, *header = NULL;
	unsigned char *der = NULL;
	long der_len = 0;
	int ret = -EBADMSG;
	BIO *bio;

	if (len > INT_MAX)
		return -EBADMSG;
	bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio)
		return -ENOMEM;
	if (PEM_read_bio(bio, &name, &header, &der, &der_len) != 1 || der_len <= 0)
		goto out;
	if (!strcmp(name, "CERTIFICATE"))
		ret = body_key_der(der, (size_t)der_len, true, k);
	else if (!strcmp(name, "PUBLIC KEY"))
		ret = body_key_der(der, (size_t)der_len, false, k);
out:
	OPENSSL_free(name);
	OPENSSL_free(header);
	OPENSSL_free(der);
	BIO_free(bio);
	ERR_clear_error();
	return ret;
}

/**
 * key_match() - the body's verifier against the bundle's
 * @c: in/out: the check; its key_sha256 is set
 * @k: in: the body's certificate or key
 * @where: in: the body member, for messages
 * @err: out: error line
 *
 * With a certificate in the bundle the body must hold the same certificate,
 * byte for byte. A managed-key bundle names no key; the digest of the
 * body's key is handed to the caller, who compares it with the policy's.
 *
 * Return: 0, -EKEYREJECTED or -ENOMEM.
 */
static int key_match(struct body_ctx *c, const struct body_key *k, const char *where,
                     struct mv_err *err)
{
	unsigned char *leaf = NULL;
	EVP_PKEY *pkey = k->cert ? X509_get0_pubkey(k->cert) : k->pkey;
	int n, ret;

	if (c->b->leaf) {
		n = i2d_X509(c->b->leaf, &leaf);
		ret = n <= 0 ? -ENOMEM : 0;
		if (!ret &&
		    (!k->cert || (size_t)n != k->der_len || memcmp(leaf, k->der, (size_t)n)))
			ret = -EKEYREJECTED;
		OPENSSL_free(leaf);
		if (ret)
			return mv_err_set(err, ret, "%s: %s: %s", c->label, where,
			                  ret == -ENOMEM ? "out of memory"
			                                 : "not the certificate of the bundle");
	}
	ret = pkey ? spki_sha256(pkey, c->key_sha256) : -EBADMSG;
	if (ret)
		return mv_err_set(err, ret == -ENOMEM ? ret : -EKEYREJECTED, "%s: %s: unusable key",
		                  c->label, where);
	return 0;
}

/**
 * member() - a required member of a body object, of the given type
 * @c: in: the check (its label prefixes messages)
 * @obj: in: the object
 * @path: in: its path, for messages
 * @key: in: the member's name
 * @types: in: accepted cJSON type bits
 * @out: out: the member
 * @err: out: error line
 *
 * Return: 0 or -EBADMSG.
 */
static int member(const struct body_ctx *c, const cJSON *obj, const char *path, const char *key,
                  int types, const cJSON **out, struct mv_err *err)
{
	struct mv_err sub = {0};

	*out = NULL;
	if (!cJSON_IsObject(obj))
		return mv_err_set(err, -EBADMSG, "%s: %s: expected an object", c->label, path);
	if (mv_json_member(c->label, obj, path, key, types, true, out, &sub))
		return mv_err_set(err, -EBADMSG, "%s", sub.msg);
	return 0;
}

/**
 * member_b64() - a required base64 string member, decoded
 * @c, @obj, @path, @key: in: as member()
 * @out, @out_len: out: malloc'd bytes (NUL-terminated)
 * @err: out: error line
 *
 * Return: 0, -EBADMSG or -ENOMEM.
 */
static int member_b64(const struct body_ctx *c, const cJSON *obj, const char *path, const char *key,
                      uint8_t **out, size_t *out_len, struct mv_err *err)
{
	const cJSON *m;
	int ret;

	*out = NULL;
	ret = member(c, obj, path, key, cJSON_String, &m, err);
	if (ret)
		return ret;
	ret = mv_base64_decode(m->valuestring, strlen(m->valuestring), out, out_len);
	if (ret)
		return mv_err_set(err, ret == -ENOMEM ? ret : -EBADMSG, "%s: %s.%s: not base64",
		                  c->label, path, key);
	return 0;
}

/**
 * member_b64_eq() - a base64 member whose bytes must be @want
 * @c, @obj, @path, @key: in: as member()
 * @want, @want_len: in: the bundle's bytes
 * @twice: in: the member is base64 of base64 (intoto 0.0.2)
 * @err: out: error line
 *
 * Return: 0, -EBADMSG, -EKEYREJECTED (other bytes) or -ENOMEM.
 */
static int member_b64_eq(const struct body_ctx *c, const cJSON *obj, const char *path,
                         const char *key, const uint8_t *want, size_t want_len, bool twice,
                         struct mv_err *err)
{
	uint8_t *raw = NULL, *inner = NULL;
	size_t len = 0, inner_len = 0;
	int ret;

	ret = member_b64(c, obj, path, key, &raw, &len, err);
	if (ret)
		return ret;
	/* base64 of base64: an inner text that is not base64 names other bytes */
	if (twice) {
		ret = mv_base64_decode((const char *)raw, len, &inner, &inner_len);
		free(raw);
		raw = inner;
		if (ret == -ENOMEM)
			return mv_err_set(err, ret, "%s: out of memory", c->label);
		len = inner_len;
	}
	if (ret || len != want_len || (len && memcmp(raw, want, len)))
		ret = mv_err_set(err, -EKEYREJECTED, "%s: %s.%s differs from the bundle", c->label,
		                 path, key);
	free(raw);
	return ret;
}

/**
 * digest_eq() - compare a digest named by the body with the expected one
 * @c: in: the check
 * @got, @got_len: in: the body's digest
 * @want: in: the expected SHA-256
 * @where: in: the body member, for messages
 * @err: out: error line
 *
 * Return: 0 or -EKEYREJECTED.
 */
static int digest_eq(const struct body_ctx *c, const uint8_t *got, size_t got_len,
                     const uint8_t want[32], const char *where, struct mv_err *err)
{
	char a[2 * 64 + 1], b[65];

	if (got_len == 32 && !memcmp(got, want, 32))
		return 0;
	mv_hex_encode(got, got_len > 64 ? 64 : got_len, a);
	mv_hex_encode(want, 32, b);
	return mv_err_set(err, -EKEYREJECTED, "%s: %s %s != %s of the bundle", c->label, where, a,
	                  b);
}

/**
 * hash_v1() - a Rekor v1 hash object {algorithm: "sha256", value: hex}
 * @c: in: the check
 * @obj: in: the object holding it
 * @path, @key: in: where it is
 * @want: in: the expected SHA-256
 * @err: out: error line
 *
 * Return: 0, -EBADMSG or -EKEYREJECTED.
 */
static int hash_v1(const struct body_ctx *c, const cJSON *obj, const char *path, const char *key,
                   const uint8_t want[32], struct mv_err *err)
{
	const cJSON *h, *alg, *val;
	char where[64];
	uint8_t got[32];
	int ret, n;

	snprintf(where, sizeof(where), "%s%s%s", path, *path ? "." : "", key);
	ret = member(c, obj, path, key, cJSON_Object, &h, err);
	if (!ret)
		ret = member(c, h, where, "algorithm", cJSON_String, &alg, err);
	if (!ret)
		ret = member(c, h, where, "value", cJSON_String, &val, err);
	if (ret)
		return ret;
	if (strcmp(alg->valuestring, "sha256"))
		return mv_err_set(err, -EKEYREJECTED, "%s: %s: algorithm \"%s\", not sha256",
		                  c->label, where, MV_P(alg->valuestring));
	n = strlen(val->valuestring) == 64 ? mv_hex_decode(val->valuestring, got, sizeof(got)) : -1;
	if (n != 32)
		return mv_err_set(err, -EBADMSG, "%s: %s.value: not a hex SHA-256", c->label,
		                  where);
	return digest_eq(c, got, 32, want, where, err);
}

/**
 * hash_v2() - a Rekor v2 HashOutput {algorithm: "SHA2_256", digest: base64}
 * @c, @obj, @path, @key, @want, @err: as hash_v1()
 *
 * Return: 0, -EBADMSG, -EKEYREJECTED or -ENOMEM.
 */
static int hash_v2(const struct body_ctx *c, const cJSON *obj, const char *path, const char *key,
                   const uint8_t want[32], struct mv_err *err)
{
	const cJSON *h, *alg;
	uint8_t *got = NULL;
	size_t got_len = 0;
	char where[64];
	int ret;

	snprintf(where, sizeof(where), "%s.%s", path, key);
	ret = member(c, obj, path, key, cJSON_Object, &h, err);
	if (!ret)
		ret = member(c, h, where, "algorithm", cJSON_String, &alg, err);
	if (!ret && strcmp(alg->valuestring, "SHA2_256"))
		ret = mv_err_set(err, -EKEYREJECTED, "%s: %s: algorithm \"%s\", not SHA2_256",
		                 c->label, where, MV_P(alg->valuestring));
	if (!ret)
		ret = member_b64(c, h, where, "digest", &got, &got_len, err);
	if (!ret)
		ret = digest_eq(c, got, got_len, want, where, err);
	free(got);
	return ret;
}

/**
 * verifier_v2() - a Rekor v2 Verifier against the bundle's
 * @c: in/out: the check
 * @v: in: {x509Certificate: {rawBytes}} or {publicKey: {rawBytes}}, keyDetails
 * @path: in: where it is
 * @err: out: error line
 *
 * Return: 0, -EBADMSG, -EKEYREJECTED or -ENOMEM.
 */
static int verifier_v2(struct body_ctx *c, const cJSON *v, const char *path, struct mv_err *err)
{
	const cJSON *cert = cJSON_GetObjectItemCaseSensitive(v, "x509Certificate");
	const cJSON *pub = cJSON_GetObjectItemCaseSensitive(v, "publicKey");
	struct body_key k = {0};
	uint8_t *der = NULL;
	size_t der_len = 0;
	char where[96];
	int ret;

	if (!cJSON_IsObject(v) || !cert == !pub)
		return mv_err_set(err, -EBADMSG,
		                  "%s: %s: expected one of x509Certificate and publicKey", c->label,
		                  path);
	snprintf(where, sizeof(where), "%s.%s", path, cert ? "x509Certificate" : "publicKey");
	ret = member_b64(c, cert ? cert : pub, where, "rawBytes", &der, &der_len, err);
	if (ret)
		return ret;
	ret = body_key_der(der, der_len, cert != NULL, &k);
	free(der);
	if (ret)
		return mv_err_set(err, ret, "%s: %s.rawBytes: not a DER %s", c->label, where,
		                  cert ? "certificate" : "public key");
	ret = key_match(c, &k, where, err);
	body_key_free(&k);
	return ret;
}

/**
 * verifier_pem() - a Rekor v1 verifier (base64 of PEM) against the bundle's
 * @c: in/out: the check
 * @obj, @path, @key: in: where the member is
 * @err: out: error line
 *
 * Return: 0, -EBADMSG, -EKEYREJECTED or -ENOMEM.
 */
static int verifier_pem(struct body_ctx *c, const cJSON *obj, const char *path, const char *key,
                        struct mv_err *err)
{
	struct body_key k = {0};
	uint8_t *pem = NULL;
	size_t pem_len = 0;
	char where[96];
	int ret;

	snprintf(where, sizeof(where), "%s.%s", path, key);
	ret = member_b64(c, obj, path, key, &pem, &pem_len, err);
	if (ret)
		return ret;
	ret = body_key_pem(pem, pem_len, &k);
	free(pem);
	if (ret)
		return mv_err_set(err, ret, "%s: %s: not a PEM certificate or public key", c->label,
		                  where);
	ret = key_match(c, &k, where, err);
	body_key_free(&k);
	return ret;
}

/**
 * check_hashedrekord_v1() - hashedrekord 0.0.1: signature.content,
 * signature.publicKey.content (PEM), data.hash
 * @c: in/out: the check
 * @spec: in: the body's spec
 * @err: out: error line
 *
 * Return: 0, -EBADMSG, -EKEYREJECTED or -ENOMEM.
 */
static int check_hashedrekord_v1(struct body_ctx *c, const cJSON *spec, struct mv_err *err)
{
	const cJSON *sig, *pub, *data;
	int ret;

	ret = member(c, spec, "spec", "signature", cJSON_Object, &sig, err);
	if (!ret)
		ret = member_b64_eq(c, sig, "spec.signature", "content", c->b->sig, c->b->sig_len,
		                    false, err);
	if (!ret)
		ret = member(c, sig, "spec.signature", "publicKey", cJSON_Object, &pub, err);
	if (!ret)
		ret = verifier_pem(c, pub, "spec.signature.publicKey", "content", err);
	if (!ret)
		ret = member(c, spec, "spec", "data", cJSON_Object, &data, err);
	if (!ret)
		ret = hash_v1(c, data, "spec.data", "hash", c->digest, err);
	return ret;
}

/**
 * check_hashedrekord_v2() - hashedrekord 0.0.2: spec.hashedRekordV002 with
 * data {algorithm, digest} and signature {content, verifier}
 * @c, @spec, @err: as check_hashedrekord_v1()
 *
 * Return: 0, -EBADMSG, -EKEYREJECTED or -ENOMEM.
 */
static int check_hashedrekord_v2(struct body_ctx *c, const cJSON *spec, struct mv_err *err)
{
	const char *p = "spec.hashedRekordV002";
	const cJSON *hr, *sig, *v;
	int ret;

	ret = member(c, spec, "spec", "hashedRekordV002", cJSON_Object, &hr, err);
	if (!ret)
		ret = hash_v2(c, hr, p, "data", c->digest, err);
	if (!ret)
		ret = member(c, hr, p, "signature", cJSON_Object, &sig, err);
	if (!ret)
		ret = member_b64_eq(c, sig, "spec.hashedRekordV002.signature", "content", c->b->sig,
		                    c->b->sig_len, false, err);
	if (!ret)
		ret = member(c, sig, "spec.hashedRekordV002.signature", "verifier", cJSON_Object,
		             &v, err);
	if (!ret)
		ret = verifier_v2(c, v, "spec.hashedRekordV002.signature.verifier", err);
	return ret;
}

/**
 * find_signature() - the element of a signatures array holding the bundle's
 * @c: in: the check
 * @arr: in: the array
 * @path: in: its path
 * @key: in: the member holding a signature, base64
 * @twice: in: base64 of base64 (intoto 0.0.2)
 * @out: out: the element
 * @err: out: error line
 *
 * Return: 0, -EBADMSG, -EKEYREJECTED (not there) or -ENOMEM.
 */
static int find_signature(const struct body_ctx *c, const cJSON *arr, const char *path,
                          const char *key, bool twice, const cJSON **out, struct mv_err *err)
{
	int n = cJSON_GetArraySize(arr);
	const cJSON *s;
	int ret;

	if (n < 1 || (unsigned)n > SS_MAX_BODY_SIGS)
		return mv_err_set(err, -EBADMSG, "%s: %s: %d signatures (1 to %u)", c->label, path,
		                  n, SS_MAX_BODY_SIGS);
	cJSON_ArrayForEach(s, arr)
	{
		struct mv_err sub = {0};

		ret = member_b64_eq(c, s, path, key, c->b->sig, c->b->sig_len, twice, &sub);
		if (!ret) {
			*out = s;
			return 0;
		}
		if (ret != -EKEYREJECTED)
			return mv_err_set(err, ret, "%s", sub.msg);
	}
	return mv_err_set(err, -EKEYREJECTED, "%s: %s: no signature of the bundle's envelope",
	                  c->label, path);
}

/**
 * check_dsse_v1() - dsse 0.0.1: payloadHash, signatures[] {signature,
 * verifier (PEM)}
 * @c, @spec, @err: as check_hashedrekord_v1()
 *
 * Return: 0, -EBADMSG, -EKEYREJECTED or -ENOMEM.
 */
static int check_dsse_v1(struct body_ctx *c, const cJSON *spec, struct mv_err *err)
{
	const cJSON *sigs, *s;
	int ret;

	ret = hash_v1(c, spec, "spec", "payloadHash", c->digest, err);
	if (!ret)
		ret = member(c, spec, "spec", "signatures", cJSON_Array, &sigs, err);
	if (!ret)
		ret = find_signature(c, sigs, "spec.signatures[]", "signature", false, &s, err);
	if (!ret)
		ret = verifier_pem(c, s, "spec.signatures[]", "verifier", err);
	return ret;
}

/**
 * check_dsse_v2() - dsse 0.0.2: spec.dsseV002 with payloadHash and
 * signatures[] {content, verifier}
 * @c, @spec, @err: as check_hashedrekord_v1()
 *
 * Return: 0, -EBADMSG, -EKEYREJECTED or -ENOMEM.
 */
static int check_dsse_v2(struct body_ctx *c, const cJSON *spec, struct mv_err *err)
{
	const cJSON *d, *sigs, *s, *v;
	int ret;

	ret = member(c, spec, "spec", "dsseV002", cJSON_Object, &d, err);
	if (!ret)
		ret = hash_v2(c, d, "spec.dsseV002", "payloadHash", c->digest, err);
	if (!ret)
		ret = member(c, d, "spec.dsseV002", "signatures", cJSON_Array, &sigs, err);
	if (!ret)
		ret = find_signature(c, sigs, "spec.dsseV002.signatures[]", "content", false, &s,
		                     err);
	if (!ret)
		ret = member(c, s, "spec.dsseV002.signatures[]", "verifier", cJSON_Object, &v, err);
	if (!ret)
		ret = verifier_v2(c, v, "spec.dsseV002.signatures[].verifier", err);
	return ret;
}

/**
 * check_intoto_v2() - intoto 0.0.2: content.envelope {payloadType, payload,
 * signatures[] {sig, publicKey}} and content.payloadHash
 * @c, @spec, @err: as check_hashedrekord_v1()
 *
 * The envelope's payload and signatures are base64 of base64 here.
 *
 * Return: 0, -EBADMSG, -EKEYREJECTED or -ENOMEM.
 */
static int check_intoto_v2(struct body_ctx *c, const cJSON *spec, struct mv_err *err)
{
	const char *p = "spec.content.envelope";
	const cJSON *content, *env, *type, *sigs, *s;
	int ret;

	ret = member(c, spec, "spec", "content", cJSON_Object, &content, err);
	if (!ret)
		ret = hash_v1(c, content, "spec.content", "payloadHash", c->digest, err);
	if (!ret)
		ret = member(c, content, "spec.content", "envelope", cJSON_Object, &env, err);
	if (!ret)
		ret = member(c, env, p, "payloadType", cJSON_String, &type, err);
	if (!ret && (!c->b->payload_type || strcmp(type->valuestring, c->b->payload_type)))
		ret = mv_err_set(err, -EKEYREJECTED, "%s: %s.payloadType differs from the bundle",
		                 c->label, p);
	if (!ret && cJSON_GetObjectItemCaseSensitive(env, "payload"))
		ret = member_b64_eq(c, env, p, "payload", c->b->payload, c->b->payload_len, true,
		                    err);
	if (!ret)
		ret = member(c, env, p, "signatures", cJSON_Array, &sigs, err);
	if (!ret)
		ret = find_signature(c, sigs, "spec.content.envelope.signatures[]", "sig", true, &s,
		                     err);
	if (!ret)
		ret = verifier_pem(c, s, "spec.content.envelope.signatures[]", "publicKey", err);
	return ret;
}

/* The entry types: one table for what is supported and what each binds. */
static const struct body_type {
	const char *kind;
	const char *version;
	bool v2;   /* a Rekor v2 type: inclusion proof, no promise */
	bool dsse; /* for DSSE bundles (else message signatures) */
	bool any;  /* for both (hashedrekord 0.0.2 logs DSSE by its PAE) */
	int (*check)(struct body_ctx *c, const cJSON *spec, struct mv_err *err);
} body_types[] = {
    {"hashedrekord", "0.0.1", false, false, false, check_hashedrekord_v1},
    {"hashedrekord", "0.0.2", true, false, true, check_hashedrekord_v2},
    {"dsse", "0.0.1", false, true, false, check_dsse_v1},
    {"dsse", "0.0.2", true, true, false, check_dsse_v2},
    {"intoto", "0.0.2", false, true, false, check_intoto_v2},
};

/**
 * body_digest() - the digest the entry must name
 * @b: in: the bundle
 * @t: in: the entry's type
 * @artifact: in: SHA-256 of the artifact, or NULL (then the bundle's
 *            messageDigest, if SHA2_256)
 * @out: out: the digest: the artifact's; for DSSE the payload's, or for
 *       hashedrekord 0.0.2 that of PAE(payloadType, payload)
 *
 * Return: 0, -EBADMSG (no digest to compare with) or -ENOMEM.
 */
static int body_digest(const struct ss_bundle *b, const struct body_type *t,
                       const uint8_t *artifact, uint8_t out[32])
{
	uint8_t *pae = NULL;
	size_t pae_len = 0;
	int ret;

	if (b->content == SS_MESSAGE_SIGNATURE) {
		if (!artifact && b->has_digest && !strcmp(b->digest_alg, "SHA2_256") &&
		    b->digest_len == 32)
			artifact = b->digest;
		if (!artifact)
			return -EBADMSG;
		memcpy(out, artifact, 32);
		return 0;
	}
	if (!b->payload_type || (!b->payload && b->payload_len))
		return -EBADMSG;
	if (t->dsse)
		return sha256(b->payload, b->payload_len, out);
	ret = mv_dsse_pae(b->payload_type, b->payload, b->payload_len, &pae, &pae_len);
	if (!ret)
		ret = sha256(pae, pae_len, out);
	free(pae);
	return ret == -EOVERFLOW ? -EBADMSG : ret;
}

/**
 * body_verify() - the canonicalized body against the bundle
 * @b: in: the bundle
 * @e: in: the entry
 * @t: in: its type
 * @artifact: in: SHA-256 of the artifact, or NULL
 * @i: in: the entry's number, for messages
 * @key_sha256: out: SHA-256 of the SPKI of the body's key
 * @err: out: error line
 *
 * Return: 0, -EBADMSG, -EKEYREJECTED or -ENOMEM.
 */
static int body_verify(const struct ss_bundle *b, const struct ss_tlog_entry *e,
                       const struct body_type *t, const uint8_t *artifact, size_t i,
                       uint8_t key_sha256[32], struct mv_err *err)
{
	struct body_ctx c = {.b = b};
	const cJSON *kind, *version, *spec;
	struct mv_err sub = {0};
	cJSON *root = NULL;
	uint8_t digest[32];
	int ret;

	snprintf(c.label, sizeof(c.label), "tlog entry %zu: body", i);
	if (!t->any && t->dsse != (b->content == SS_DSSE))
		return mv_err_set(
		    err, -EKEYREJECTED, "%s: a %s entry for a bundle with %s", c.label, t->kind,
		    b->content == SS_DSSE ? "a DSSE envelope" : "a message signature");
	ret = body_digest(b, t, artifact, digest);
	if (ret)
		return mv_err_set(err, ret, "%s: %s", c.label,
		                  ret == -ENOMEM ? "out of memory" : "no digest of the artifact");
	c.digest = digest;
	ret = mv_json_parse_strict(c.label, "canonicalizedBody", (const char *)e->body, e->body_len,
	                           &root, &sub);
	if (ret)
		return mv_err_set(err, ret == -ENOMEM ? ret : -EBADMSG, "%s", sub.msg);
	ret = member(&c, root, "", "kind", cJSON_String, &kind, err);
	if (!ret)
		ret = member(&c, root, "", "apiVersion", cJSON_String, &version, err);
	if (!ret &&
	    (strcmp(kind->valuestring, e->kind) || strcmp(version->valuestring, e->version)))
		ret = mv_err_set(err, -EKEYREJECTED, "%s: %s %s, but the entry says %s %s", c.label,
		                 MV_P(kind->valuestring), MV_P(version->valuestring), e->kind,
		                 e->version);
	if (!ret)
		ret = member(&c, root, "", "spec", cJSON_Object, &spec, err);
	if (!ret)
		ret = t->check(&c, spec, err);
	if (!ret)
		memcpy(key_sha256, c.key_sha256, 32);
	cJSON_Delete(root);
	return ret;
}

/* ------------------------------------------------------------------------
 * One entry
 * ------------------------------------------------------------------------ */

/**
 * entry_type() - the supported type of an entry
 * @e: in: the entry
 * @i: in: its number, for messages
 * @out: out: its row of body_types
 * @err: out: error line
 *
 * Return: 0 or -EBADMSG.
 */
static int entry_type(const struct ss_tlog_entry *e, size_t i, const struct body_type **out,
                      struct mv_err *err)
{
	for (size_t k = 0; k < sizeof(body_types) / sizeof(body_types[0]); k++) {
		if (!strcmp(e->kind, body_types[k].kind) &&
		    !strcmp(e->version, body_types[k].version)) {
			*out = &body_types[k];
			return 0;
		}
	}
	return mv_err_set(err, -EBADMSG, "tlog entry %zu: unsupported entry type %s %s", i,
	                  MV_P(e->kind), MV_P(e->version));
}

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
                       const struct body_type *t, size_t i, struct mv_err *err)
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
	const struct body_type *t = NULL;
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
	ret = entry_type(e, i, &t, err);
	if (!ret)
		ret = find_log(root, e, i, &log, err);
	if (!ret)
		ret = entry_shape(b, e, t, i, err);
	if (!ret && e->set)
		ret = set_verify(e, log, now, i, err);
	if (!ret && e->has_proof)
		ret = proof_verify(e, log, t->v2, i, err);
	if (!ret)
		ret = body_verify(b, e, t, artifact_sha256, i, key_sha256, err);
	if (ret)
		return ret;
	out->log = log;
	out->has_time = e->set != NULL;
	out->time = out->has_time ? e->integrated_time : 0;
	memcpy(out->key_sha256, key_sha256, sizeof(out->key_sha256));
	return 0;
}
