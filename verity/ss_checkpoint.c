// SPDX-License-Identifier: Apache-2.0
/*
 * ss_checkpoint.c - the proofs of a transparency log entry (issue #14): RFC
 * 9162 inclusion proofs (ss_merkle_inclusion()) and C2SP signed checkpoints
 * (ss_checkpoint_verify(): Rekor v1 ECDSA notes, Rekor v2 Ed25519 notes;
 * witness cosignatures are ignored). The contract is in sigstore_int.h.
 *
 * An ECDSA note key's ID (the start of SHA-256 of its SPKI, the Rekor log
 * id) binds no name, so the name on its signature line is not compared:
 * Rekor v1 signs as "rekor.sigstore.dev" a checkpoint whose origin is
 * "rekor.sigstore.dev - <tree id>". An Ed25519 key's ID binds the origin,
 * and the line must carry that name. Only Rekor v2 checkpoints must have the
 * log's host as their origin (checked by ss_rekor.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "sig_internal.h"
#include "sigstore_int.h"

#define SS_MAX_NOTE      (256u << 10) /* a signed checkpoint */
#define SS_MAX_NOTE_SIGS 64u          /* signature lines of a checkpoint */

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
			ret = ss_sha256_prefixed(0x01, path[k], 32, r, 32, r);
			while (!(fn & 1) && fn) {
				fn >>= 1;
				sn >>= 1;
			}
		} else {
			ret = ss_sha256_prefixed(0x01, r, 32, path[k], 32, r);
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
		ret = ss_sha256(buf, name_len + 2 + 32, md);
	} else if (log->pkey && EVP_PKEY_is_a(log->pkey, "EC")) {
		ret = ss_spki_sha256(log->pkey, md);
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

	ss_log_host(log, host, sizeof(host));
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
			ret = ss_log_sig_verify(log, n->text, n->text_len, raw + 4, raw_len - 4);
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
