// SPDX-License-Identifier: Apache-2.0
/*
 * ss_bundle.c - the Sigstore bundle (v0.1, v0.2, v0.3; both media type
 * spellings): its verification material, transparency log entries, RFC 3161
 * timestamps and content (a message signature or a DSSE envelope). See
 * sigstore_int.h.
 *
 * Structure only: nothing here verifies a signature. The JSON is the
 * canonical proto3 form the client specification requires (lowerCamelCase
 * members, int64 as decimal strings, bytes as padded standard base64,
 * which may be wrapped into lines as protobuf JSON decoders accept); other
 * spellings are refused, unknown members are ignored. Every list is
 * bounded (SS_MAX_ENTRIES, SS_MAX_PROOF, SS_MAX_CHAIN) and every DER
 * certificate must be consumed whole.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "sig_internal.h"
#include "sigstore_int.h"
#include "ss_json.h"

#define BUNDLE_MEDIA_OLD "application/vnd.dev.sigstore.bundle+json;version=0."
#define BUNDLE_MEDIA_NEW "application/vnd.dev.sigstore.bundle.v0."

/* ---- verification material --------------------------------------------- */

/*
 * parse_chain() - x509CertificateChain: the leaf first, then the rest
 * @label: in: the file
 * @obj: in: the x509CertificateChain object
 * @b: out: b->leaf and b->chain (NULL when only the leaf is given)
 * @err: out: the message on failure
 *
 * Return: 0, -EBADMSG (empty, over SS_MAX_CHAIN, a bad certificate) or
 * -ENOMEM.
 */
static int parse_chain(const char *label, const cJSON *obj, struct ss_bundle *b, struct mv_err *err)
{
	const char *path = "verificationMaterial.x509CertificateChain";
	char p[SS_PATH_SIZE];
	const cJSON *arr, *c;
	size_t n, i = 0;
	X509 *x;
	int ret;

	if (ss_json_array(label, obj, path, "certificates", SS_MAX_CHAIN, &arr, &n, err))
		return -EBADMSG;
	if (n == 0)
		return mv_err_set(err, -EBADMSG, "%s: %s.certificates: missing or empty", label,
		                  path);
	cJSON_ArrayForEach(c, arr)
	{
		ss_json_path(p, "%s.certificates[%zu]", path, i++);
		ret = ss_json_cert(label, p, c, &x, err);
		if (ret)
			return ret;
		if (!b->leaf) {
			b->leaf = x;
			continue;
		}
		if (!b->chain)
			b->chain = sk_X509_new_null();
		if (!b->chain || !sk_X509_push(b->chain, x)) {
			X509_free(x);
			return mv_err_set(err, -ENOMEM, "%s: out of memory", label);
		}
	}
	return 0;
}

/*
 * parse_public_key() - publicKey: {"hint": string}, the hint optional
 * @label: in: the file
 * @obj: in: the publicKey object
 * @b: out: b->key_hint (NULL without a hint)
 * @err: out: the message on failure
 *
 * Return: 0, -EBADMSG or -ENOMEM.
 */
static int parse_public_key(const char *label, const cJSON *obj, struct ss_bundle *b,
                            struct mv_err *err)
{
	const cJSON *hint;

	if (ss_json_member(label, obj, "verificationMaterial.publicKey", "hint", cJSON_String,
	                   false, &hint, err))
		return -EBADMSG;
	if (!hint)
		return 0;
	b->key_hint = strdup(hint->valuestring);
	if (!b->key_hint)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", label);
	return 0;
}

/*
 * parse_signer() - the one of publicKey, x509CertificateChain and
 * certificate that names the signer
 * @label: in: the file
 * @vm: in: the verificationMaterial object
 * @b: in/out: b->minor read; b->leaf, b->chain, b->key_hint set
 * @err: out: the message on failure
 *
 * Return: 0, -EBADMSG (none or several, a chain in v0.3) or -ENOMEM.
 */
static int parse_signer(const char *label, const cJSON *vm, struct ss_bundle *b, struct mv_err *err)
{
	const char *path = "verificationMaterial";
	const cJSON *pk, *chain, *cert;

	if (ss_json_member(label, vm, path, "publicKey", cJSON_Object, false, &pk, err) ||
	    ss_json_member(label, vm, path, "x509CertificateChain", cJSON_Object, false, &chain,
	                   err) ||
	    ss_json_member(label, vm, path, "certificate", cJSON_Object, false, &cert, err))
		return -EBADMSG;
	if (!!pk + !!chain + !!cert != 1)
		return mv_err_set(err, -EBADMSG,
		                  "%s: %s: exactly one of publicKey, x509CertificateChain and "
		                  "certificate expected, %d given",
		                  label, path, !!pk + !!chain + !!cert);
	if (chain && b->minor >= 3)
		return mv_err_set(err, -EBADMSG,
		                  "%s: %s.x509CertificateChain: not allowed in a v0.3 bundle "
		                  "(\"certificate\" holds the leaf)",
		                  label, path);
	if (pk)
		return parse_public_key(label, pk, b, err);
	if (chain)
		return parse_chain(label, chain, b, err);
	return ss_json_cert(label, "verificationMaterial.certificate", cert, &b->leaf, err);
}

/* ---- transparency log entries ------------------------------------------ */

/*
 * parse_hashes() - inclusionProof.hashes: up to SS_MAX_PROOF hashes of 32
 * bytes (absent for a tree of one leaf)
 * @label: in: the file
 * @proof, @path: in: the inclusionProof object and its path
 * @e: out: e->hashes, e->n_hashes
 * @err: out: the message on failure
 *
 * Return: 0, -EBADMSG or -ENOMEM.
 */
static int parse_hashes(const char *label, const cJSON *proof, const char *path,
                        struct ss_tlog_entry *e, struct mv_err *err)
{
	const cJSON *arr, *h;
	char p[SS_PATH_SIZE];
	uint8_t *raw;
	size_t n, len;
	int ret;

	if (ss_json_array(label, proof, path, "hashes", SS_MAX_PROOF, &arr, &n, err))
		return -EBADMSG;
	if (!n)
		return 0;
	e->hashes = calloc(n, sizeof(*e->hashes));
	if (!e->hashes)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", label);
	cJSON_ArrayForEach(h, arr)
	{
		ss_json_path(p, "%s.hashes[%zu]", path, e->n_hashes);
		if (!cJSON_IsString(h))
			return mv_err_set(err, -EBADMSG, "%s: %s: expected a string", label, p);
		ret = ss_json_b64(label, p, h->valuestring, 32, &raw, &len, err);
		if (ret)
			return ret;
		if (len != 32) {
			free(raw);
			return mv_err_set(err, -EBADMSG, "%s: %s: %zu bytes, 32 expected", label, p,
			                  len);
		}
		memcpy(e->hashes[e->n_hashes++], raw, 32);
		free(raw);
	}
	return 0;
}

/*
 * parse_checkpoint() - inclusionProof.checkpoint: {"envelope": string}
 * @label: in: the file
 * @proof, @path: in: the inclusionProof object and its path
 * @e: out: e->checkpoint (NULL when absent), e->checkpoint_len
 * @err: out: the message on failure
 *
 * Return: 0, -EBADMSG or -ENOMEM.
 */
static int parse_checkpoint(const char *label, const cJSON *proof, const char *path,
                            struct ss_tlog_entry *e, struct mv_err *err)
{
	const cJSON *cp, *env;
	char p[SS_PATH_SIZE];

	if (ss_json_member(label, proof, path, "checkpoint", cJSON_Object, false, &cp, err))
		return -EBADMSG;
	if (!cp)
		return 0;
	if (ss_json_member(label, cp, ss_json_join(p, path, "checkpoint"), "envelope", cJSON_String,
	                   true, &env, err))
		return -EBADMSG;
	e->checkpoint_len = strlen(env->valuestring);
	if (!e->checkpoint_len)
		return mv_err_set(err, -EBADMSG, "%s: %s.envelope: empty", label, p);
	e->checkpoint = strdup(env->valuestring);
	if (!e->checkpoint)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", label);
	return 0;
}

/*
 * parse_proof() - an entry's optional inclusionProof
 * @label: in: the file
 * @entry, @path: in: the entry object and its path
 * @e: out: has_proof, proof_index, tree_size, root_hash, hashes, checkpoint
 * @err: out: the message on failure
 *
 * Return: 0, -EBADMSG (bad members, an index outside the tree) or -ENOMEM.
 */
static int parse_proof(const char *label, const cJSON *entry, const char *path,
                       struct ss_tlog_entry *e, struct mv_err *err)
{
	const cJSON *proof;
	char p[SS_PATH_SIZE];
	int ret;

	if (ss_json_member(label, entry, path, "inclusionProof", cJSON_Object, false, &proof, err))
		return -EBADMSG;
	if (!proof)
		return 0;
	e->has_proof = true;
	ss_json_join(p, path, "inclusionProof");
	ret = ss_json_int64(label, proof, p, "logIndex", &e->proof_index, err);
	if (!ret)
		ret = ss_json_int64(label, proof, p, "treeSize", &e->tree_size, err);
	if (!ret)
		ret = ss_json_fixed(label, proof, p, "rootHash", e->root_hash, 32, err);
	if (!ret)
		ret = parse_hashes(label, proof, p, e, err);
	if (!ret)
		ret = parse_checkpoint(label, proof, p, e, err);
	if (!ret && e->proof_index >= e->tree_size)
		ret =
		    mv_err_set(err, -EBADMSG,
		               "%s: %s: logIndex %" PRId64 " outside a tree of %" PRId64 " leaves",
		               label, p, e->proof_index, e->tree_size);
	return ret;
}

/*
 * parse_promise() - an entry's optional inclusionPromise
 * @label: in: the file
 * @entry, @path: in: the entry object and its path
 * @e: out: e->set, e->set_len (NULL, 0 when absent)
 * @err: out: the message on failure
 *
 * Return: 0, -EBADMSG or -ENOMEM.
 */
static int parse_promise(const char *label, const cJSON *entry, const char *path,
                         struct ss_tlog_entry *e, struct mv_err *err)
{
	const cJSON *promise;
	char p[SS_PATH_SIZE];

	if (ss_json_member(label, entry, path, "inclusionPromise", cJSON_Object, false, &promise,
	                   err))
		return -EBADMSG;
	if (!promise)
		return 0;
	return ss_json_bytes(label, promise, ss_json_join(p, path, "inclusionPromise"),
	                     "signedEntryTimestamp", 0, &e->set, &e->set_len, err);
}

/*
 * parse_log_id() - an entry's logId.keyId (1 to 32 bytes)
 * @label: in: the file
 * @entry, @path: in: the entry object and its path
 * @e: out: e->log_id, e->log_id_len
 * @err: out: the message on failure
 *
 * Return: 0, -EBADMSG or -ENOMEM.
 */
static int parse_log_id(const char *label, const cJSON *entry, const char *path,
                        struct ss_tlog_entry *e, struct mv_err *err)
{
	const cJSON *lid;
	char p[SS_PATH_SIZE];
	uint8_t *id;
	int ret;

	if (ss_json_member(label, entry, path, "logId", cJSON_Object, true, &lid, err))
		return -EBADMSG;
	ret = ss_json_bytes(label, lid, ss_json_join(p, path, "logId"), "keyId", sizeof(e->log_id),
	                    &id, &e->log_id_len, err);
	if (ret)
		return ret;
	memcpy(e->log_id, id, e->log_id_len);
	free(id);
	return 0;
}

/*
 * parse_entry() - one TransparencyLogEntry
 * @label: in: the file
 * @entry: in: the JSON value
 * @path: in: its path, e.g. "verificationMaterial.tlogEntries[0]"
 * @minor: in: the bundle's version 0.@minor
 * @e: out: the entry, zeroed by the caller; freed by entry_clear() even on
 *     failure
 * @err: out: the message on failure
 *
 * Return: 0, -EBADMSG (bad members; v0.1 without an inclusion promise,
 * v0.2+ without an inclusion proof and its checkpoint) or -ENOMEM.
 */
static int parse_entry(const char *label, const cJSON *entry, const char *path, int minor,
                       struct ss_tlog_entry *e, struct mv_err *err)
{
	const cJSON *kv;
	char p[SS_PATH_SIZE];
	int ret;

	if (!cJSON_IsObject(entry))
		return mv_err_set(err, -EBADMSG, "%s: %s: expected an object", label, path);
	ret = ss_json_int64(label, entry, path, "logIndex", &e->log_index, err);
	if (!ret)
		ret = parse_log_id(label, entry, path, e, err);
	if (!ret)
		ret =
		    ss_json_member(label, entry, path, "kindVersion", cJSON_Object, true, &kv, err);
	if (!ret)
		ret = ss_json_string(label, kv, ss_json_join(p, path, "kindVersion"), "kind",
		                     e->kind, sizeof(e->kind), err);
	if (!ret)
		ret = ss_json_string(label, kv, p, "version", e->version, sizeof(e->version), err);
	if (!ret)
		ret = ss_json_int64(label, entry, path, "integratedTime", &e->integrated_time, err);
	if (!ret)
		ret = parse_promise(label, entry, path, e, err);
	if (!ret)
		ret = parse_proof(label, entry, path, e, err);
	if (!ret)
		ret = ss_json_bytes(label, entry, path, "canonicalizedBody", 0, &e->body,
		                    &e->body_len, err);
	if (ret)
		return ret;
	if (minor == 1 && !e->set)
		return mv_err_set(err, -EBADMSG, "%s: %s: a v0.1 bundle needs an inclusion promise",
		                  label, path);
	if (minor >= 2 && (!e->has_proof || !e->checkpoint))
		return mv_err_set(
		    err, -EBADMSG,
		    "%s: %s: a v0.%d bundle needs an inclusion proof with a checkpoint", label,
		    path, minor);
	return 0;
}

/*
 * parse_entries() - verificationMaterial.tlogEntries (up to SS_MAX_ENTRIES)
 * @label: in: the file
 * @vm: in: the verificationMaterial object
 * @b: in/out: b->minor read; b->tlog, b->n_tlog set
 * @err: out: the message on failure
 *
 * Return: 0, -EBADMSG or -ENOMEM.
 */
static int parse_entries(const char *label, const cJSON *vm, struct ss_bundle *b,
                         struct mv_err *err)
{
	const char *path = "verificationMaterial";
	const cJSON *arr, *item;
	char p[SS_PATH_SIZE];
	size_t n;
	int ret;

	if (ss_json_array(label, vm, path, "tlogEntries", SS_MAX_ENTRIES, &arr, &n, err))
		return -EBADMSG;
	if (!n)
		return 0;
	b->tlog = calloc(n, sizeof(*b->tlog));
	if (!b->tlog)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", label);
	cJSON_ArrayForEach(item, arr)
	{
		ss_json_path(p, "%s.tlogEntries[%zu]", path, b->n_tlog);
		ret = parse_entry(label, item, p, b->minor, &b->tlog[b->n_tlog++], err);
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * parse_timestamps() - timestampVerificationData.rfc3161Timestamps[i].
 * signedTimestamp (up to SS_MAX_ENTRIES DER tokens; not decoded here)
 * @label: in: the file
 * @vm: in: the verificationMaterial object
 * @b: out: b->tsa, b->tsa_len, b->n_tsa
 * @err: out: the message on failure
 *
 * Return: 0, -EBADMSG or -ENOMEM.
 */
static int parse_timestamps(const char *label, const cJSON *vm, struct ss_bundle *b,
                            struct mv_err *err)
{
	const char *path = "verificationMaterial.timestampVerificationData";
	const cJSON *tvd, *arr, *item;
	char p[SS_PATH_SIZE];
	size_t n;
	int ret;

	if (ss_json_member(label, vm, "verificationMaterial", "timestampVerificationData",
	                   cJSON_Object, false, &tvd, err) ||
	    (tvd &&
	     ss_json_array(label, tvd, path, "rfc3161Timestamps", SS_MAX_ENTRIES, &arr, &n, err)))
		return -EBADMSG;
	if (!tvd || !n)
		return 0;
	b->tsa = calloc(n, sizeof(*b->tsa));
	b->tsa_len = calloc(n, sizeof(*b->tsa_len));
	if (!b->tsa || !b->tsa_len)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", label);
	cJSON_ArrayForEach(item, arr)
	{
		ss_json_path(p, "%s.rfc3161Timestamps[%zu]", path, b->n_tsa);
		if (!cJSON_IsObject(item))
			return mv_err_set(err, -EBADMSG, "%s: %s: expected an object", label, p);
		ret = ss_json_bytes(label, item, p, "signedTimestamp", 0, &b->tsa[b->n_tsa],
		                    &b->tsa_len[b->n_tsa], err);
		if (ret)
			return ret;
		b->n_tsa++;
	}
	return 0;
}

/* ---- content ------------------------------------------------------------ */

/*
 * digest_size() - the digest size of a HashAlgorithm name
 * @alg: in: "SHA2_256", ...
 *
 * Return: the size in bytes, or 0 for a name not known.
 */
static size_t digest_size(const char *alg)
{
	static const struct {
		const char *name;
		size_t size;
	} algs[] = {
	    {"SHA2_256", 32}, {"SHA2_384", 48}, {"SHA2_512", 64},
	    {"SHA3_256", 32}, {"SHA3_384", 48},
	};

	for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
		if (!strcmp(alg, algs[i].name))
			return algs[i].size;
	return 0;
}

/*
 * parse_message() - messageSignature: an optional messageDigest and the
 * signature
 * @label: in: the file
 * @ms: in: the messageSignature object
 * @b: out: has_digest, digest_alg, digest, digest_len, sig, sig_len
 * @err: out: the message on failure
 *
 * Return: 0, -EBADMSG or -ENOMEM.
 */
static int parse_message(const char *label, const cJSON *ms, struct ss_bundle *b,
                         struct mv_err *err)
{
	const char *path = "messageSignature", *dpath = "messageSignature.messageDigest";
	const cJSON *md;
	size_t want;
	int ret;

	b->content = SS_MESSAGE_SIGNATURE;
	if (ss_json_member(label, ms, path, "messageDigest", cJSON_Object, false, &md, err))
		return -EBADMSG;
	if (md) {
		ret = ss_json_string(label, md, dpath, "algorithm", b->digest_alg,
		                     sizeof(b->digest_alg), err);
		if (ret)
			return ret;
		want = digest_size(b->digest_alg);
		if (!want)
			return mv_err_set(err, -EBADMSG, "%s: %s.algorithm: unsupported \"%s\"",
			                  label, dpath, MV_P(b->digest_alg));
		ret = ss_json_fixed(label, md, dpath, "digest", b->digest, want, err);
		if (ret)
			return ret;
		b->digest_len = want;
		b->has_digest = true;
	}
	return ss_json_bytes(label, ms, path, "signature", 0, &b->sig, &b->sig_len, err);
}

/*
 * parse_dsse() - dsseEnvelope: payload, payloadType and exactly one
 * signature
 * @label: in: the file
 * @env: in: the dsseEnvelope object
 * @b: out: payload_type, payload, payload_len, sig, sig_len
 * @err: out: the message on failure
 *
 * Return: 0, -EBADMSG or -ENOMEM.
 */
static int parse_dsse(const char *label, const cJSON *env, struct ss_bundle *b, struct mv_err *err)
{
	const char *path = "dsseEnvelope";
	const cJSON *type, *sigs, *sig;
	size_t n;
	int ret;

	b->content = SS_DSSE;
	ret = ss_json_bytes(label, env, path, "payload", 0, &b->payload, &b->payload_len, err);
	if (ret)
		return ret;
	if (ss_json_member(label, env, path, "payloadType", cJSON_String, true, &type, err) ||
	    ss_json_array(label, env, path, "signatures", SS_MAX_ENTRIES, &sigs, &n, err))
		return -EBADMSG;
	if (n != 1)
		return mv_err_set(err, -EBADMSG,
		                  "%s: %s.signatures: %zu signatures, exactly one "
		                  "expected",
		                  label, path, n);
	b->payload_type = strdup(type->valuestring);
	if (!b->payload_type)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", label);
	sig = cJSON_GetArrayItem(sigs, 0);
	if (!cJSON_IsObject(sig))
		return mv_err_set(err, -EBADMSG, "%s: %s.signatures[0]: expected an object", label,
		                  path);
	return ss_json_bytes(label, sig, "dsseEnvelope.signatures[0]", "sig", 0, &b->sig,
	                     &b->sig_len, err);
}

/*
 * parse_content() - exactly one of messageSignature and dsseEnvelope
 * @label: in: the file
 * @top: in: the bundle object
 * @b: out: the content members
 * @err: out: the message on failure
 *
 * Return: 0, -EBADMSG or -ENOMEM.
 */
static int parse_content(const char *label, const cJSON *top, struct ss_bundle *b,
                         struct mv_err *err)
{
	const cJSON *ms, *env;

	if (ss_json_member(label, top, "", "messageSignature", cJSON_Object, false, &ms, err) ||
	    ss_json_member(label, top, "", "dsseEnvelope", cJSON_Object, false, &env, err))
		return -EBADMSG;
	if (!ms == !env)
		return mv_err_set(err, -EBADMSG,
		                  "%s: exactly one of messageSignature and dsseEnvelope expected",
		                  label);
	return ms ? parse_message(label, ms, b, err) : parse_dsse(label, env, b, err);
}

/*
 * parse_media_type() - the bundle's version from its mediaType
 * @label: in: the file
 * @top: in: the bundle object
 * @minor: out: 1, 2 or 3
 * @err: out: the message on failure
 *
 * Both spellings: "application/vnd.dev.sigstore.bundle+json;version=0.N"
 * and "application/vnd.dev.sigstore.bundle.v0.N+json", N from 1 to 3.
 *
 * Return: 0 or -EBADMSG.
 */
static int parse_media_type(const char *label, const cJSON *top, int *minor, struct mv_err *err)
{
	const size_t old_len = strlen(BUNDLE_MEDIA_OLD), new_len = strlen(BUNDLE_MEDIA_NEW);
	const cJSON *mt;
	const char *s;

	*minor = 0;
	if (ss_json_member(label, top, "", "mediaType", cJSON_String, true, &mt, err))
		return -EBADMSG;
	s = mt->valuestring;
	if (!strncmp(s, BUNDLE_MEDIA_OLD, old_len) && s[old_len] >= '1' && s[old_len] <= '3' &&
	    !s[old_len + 1])
		*minor = s[old_len] - '0';
	else if (!strncmp(s, BUNDLE_MEDIA_NEW, new_len) && s[new_len] >= '1' && s[new_len] <= '3' &&
	         !strcmp(s + new_len + 1, "+json"))
		*minor = s[new_len] - '0';
	else
		return mv_err_set(err, -EBADMSG, "%s: mediaType: unsupported bundle version \"%s\"",
		                  label, MV_P(s));
	return 0;
}

/*
 * parse_top() - the members of the bundle object
 * @label: in: the file
 * @top: in: the bundle object
 * @b: out: every member of the bundle
 * @err: out: the message on failure
 *
 * Return: 0, -EBADMSG or -ENOMEM.
 */
static int parse_top(const char *label, const cJSON *top, struct ss_bundle *b, struct mv_err *err)
{
	const cJSON *vm;
	int ret;

	if (!cJSON_IsObject(top))
		return mv_err_set(err, -EBADMSG, "%s: bundle is not a JSON object", label);
	ret = parse_media_type(label, top, &b->minor, err);
	if (!ret)
		ret = ss_json_member(label, top, "", "verificationMaterial", cJSON_Object, true,
		                     &vm, err);
	if (!ret)
		ret = parse_signer(label, vm, b, err);
	if (!ret)
		ret = parse_entries(label, vm, b, err);
	if (!ret)
		ret = parse_timestamps(label, vm, b, err);
	if (!ret)
		ret = parse_content(label, top, b, err);
	return ret;
}

/**
 * ss_bundle_parse() - parses a Sigstore bundle
 * @label: in: names the file in messages
 * @json, @len: in: the untrusted JSON text (need not be NUL-terminated)
 * @out: out: the bundle, owned by the caller (ss_bundle_free()); NULL on
 *       failure
 * @err: out: one line on failure
 *
 * Return: 0, -EBADMSG (malformed, see sigstore_int.h) or -ENOMEM.
 */
int ss_bundle_parse(const char *label, const char *json, size_t len, struct ss_bundle **out,
                    struct mv_err *err)
{
	struct ss_bundle *b = NULL;
	cJSON *top = NULL;
	int ret;

	*out = NULL;
	if (len > SS_MAX_JSON)
		return mv_err_set(err, -EBADMSG, "%s: bundle too large (%zu bytes)", label, len);
	ret = mv_json_parse_strict(label, "bundle", json, len, &top, err);
	if (ret) {
		ret = ret == -ENOMEM ? ret : ss_json_recode(err, -EBADMSG);
		goto out;
	}
	b = calloc(1, sizeof(*b));
	if (!b) {
		ret = mv_err_set(err, -ENOMEM, "%s: out of memory", label);
		goto out;
	}
	ret = parse_top(label, top, b, err);
	if (ret)
		goto out;
	*out = b;
	b = NULL;
out:
	ss_bundle_free(b);
	cJSON_Delete(top);
	return ret;
}

/*
 * entry_clear() - frees what one log entry holds
 * @e: in: the entry
 */
static void entry_clear(struct ss_tlog_entry *e)
{
	free(e->set);
	free(e->hashes);
	free(e->checkpoint);
	free(e->body);
}

/**
 * ss_bundle_free() - frees a bundle
 * @b: in: the bundle, or NULL
 */
void ss_bundle_free(struct ss_bundle *b)
{
	if (!b)
		return;
	X509_free(b->leaf);
	sk_X509_pop_free(b->chain, X509_free);
	free(b->key_hint);
	for (size_t i = 0; i < b->n_tlog; i++)
		entry_clear(&b->tlog[i]);
	free(b->tlog);
	for (size_t i = 0; i < b->n_tsa; i++)
		free(b->tsa[i]);
	free(b->tsa);
	free(b->tsa_len);
	free(b->payload_type);
	free(b->payload);
	free(b->sig);
	free(b);
}
