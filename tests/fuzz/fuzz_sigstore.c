// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_sigstore.c - libFuzzer target for the Sigstore parsers (issue #14):
 * every input is fed to ss_root_parse() as a trusted root, to
 * ss_bundle_parse() as a bundle, to ss_checkpoint_verify() as a signed note
 * of a fixed Ed25519 log (origin "fuzz.example"), as a DER certificate to
 * the readers of its extensions (ss_identity_get(): SAN, the OIDC issuer
 * extensions; ss_sct_verify(): the embedded SCT list, against a root whose
 * one CT log is that fixed key), and its first bytes to
 * ss_time_parse(). Each result is walked so that the sanitizers see bad
 * pointers or sizes, and the error contract is checked: on failure the
 * output is NULL, the code negative, the message one non-empty line.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "sigstore_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The log's private key seed: bytes 1 to 32 (the seeds are signed with it). */
static const uint8_t log_seed[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                     12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                     23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

/*
 * fixed_log() - the log the checkpoints are verified against, made once
 *
 * Return: the log (never freed).
 */
static const struct ss_log *fixed_log(void)
{
	static struct ss_log log;

	if (log.pkey)
		return &log;
	log.pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, log_seed, sizeof(log_seed));
	if (!log.pkey)
		abort();
	log.key_details = (char *)"PKIX_ED25519";
	log.base_url = (char *)"https://fuzz.example";
	log.valid.end = SS_TIME_OPEN_END;
	return &log;
}

/*
 * check_failure() - the error contract of a refused input
 * @ret: in: the return value
 * @out: in: what the parser left in its output
 * @err: in: the error
 */
static void check_failure(int ret, const void *out, const struct mv_err *err)
{
	if (ret >= 0 || out || err->code != ret || !err->msg[0] || strchr(err->msg, '\n'))
		abort();
}

/*
 * walk_root() - reads every field of a parsed root
 * @r: in: the root
 */
static void walk_root(const struct ss_root *r)
{
	volatile size_t sum = 0;

	for (size_t i = 0; i < r->n_tlogs; i++) {
		if (!r->tlogs[i].pkey || r->tlogs[i].log_id_len > 32 ||
		    r->tlogs[i].valid.start > r->tlogs[i].valid.end)
			abort();
		sum += r->tlogs[i].log_id[0] +
		       (r->tlogs[i].base_url ? strlen(r->tlogs[i].base_url) : 0);
	}
	for (size_t i = 0; i < r->n_ctlogs; i++)
		sum += r->ctlogs[i].log_id_len + (r->ctlogs[i].key_details ? 1 : 0);
	for (size_t i = 0; i < r->n_cas; i++)
		if (sk_X509_num(r->cas[i].certs) < 1)
			abort();
	for (size_t i = 0; i < r->n_tsas; i++)
		if (sk_X509_num(r->tsas[i].certs) < 1)
			abort();
	(void)sum;
}

/*
 * walk_entry() - reads every field of a parsed log entry
 * @e: in: the entry
 */
static void walk_entry(const struct ss_tlog_entry *e)
{
	volatile size_t sum = 0;

	if (e->log_index < 0 || e->integrated_time < 0 || e->log_id_len > 32 ||
	    e->n_hashes > SS_MAX_PROOF || !e->body || !e->body_len)
		abort();
	if (e->has_proof && (e->proof_index >= e->tree_size || e->proof_index < 0))
		abort();
	if (e->checkpoint && strlen(e->checkpoint) != e->checkpoint_len)
		abort();
	sum += strlen(e->kind) + strlen(e->version) + e->body[e->body_len - 1];
	for (size_t i = 0; i < e->n_hashes; i++)
		sum += e->hashes[i][31];
	if (e->set)
		sum += e->set[e->set_len - 1];
	(void)sum;
}

/*
 * walk_bundle() - reads every field of a parsed bundle
 * @b: in: the bundle
 */
static void walk_bundle(const struct ss_bundle *b)
{
	volatile size_t sum = 0;

	if (b->minor < 1 || b->minor > 3 || b->n_tlog > SS_MAX_ENTRIES ||
	    b->n_tsa > SS_MAX_ENTRIES || !b->sig || !b->sig_len)
		abort();
	for (size_t i = 0; i < b->n_tlog; i++)
		walk_entry(&b->tlog[i]);
	for (size_t i = 0; i < b->n_tsa; i++)
		sum += b->tsa[i][b->tsa_len[i] - 1];
	if (b->content == SS_DSSE)
		sum += strlen(b->payload_type) + b->payload[b->payload_len - 1];
	if (b->has_digest)
		sum += b->digest[b->digest_len - 1];
	sum += b->sig[b->sig_len - 1] + (b->key_hint ? strlen(b->key_hint) : 0);
	sum += b->chain ? (size_t)sk_X509_num(b->chain) : 0;
	(void)sum;
}

/*
 * fuzz_cert() - the certificate extension readers on @data as a DER certificate
 * @data, @size: in: the input; inputs that are no whole certificate are skipped
 */
static void fuzz_cert(const uint8_t *data, size_t size)
{
	static struct ss_root root;
	const unsigned char *p = data;
	struct ss_identity id;
	struct mv_err err = {0};
	X509 *leaf;
	int ret;

	if (!root.n_ctlogs) {
		root.ctlogs = (struct ss_log *)fixed_log();
		root.n_ctlogs = 1;
	}
	leaf = d2i_X509(NULL, &p, (long)size);
	if (!leaf || p != data + size) {
		X509_free(leaf);
		return;
	}
	ret = ss_identity_get(leaf, &id, &err);
	if (ret)
		check_failure(ret, NULL, &err);
	else if (!memchr(id.san, 0, sizeof(id.san)) || !memchr(id.issuer, 0, sizeof(id.issuer)))
		abort();
	memset(&err, 0, sizeof(err));
	ret = ss_sct_verify(leaf, leaf, &root, INT64_MAX, &err);
	if (ret)
		check_failure(ret, NULL, &err);
	X509_free(leaf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ss_bundle *b = NULL;
	struct ss_root *r = NULL;
	struct ss_checkpoint cp;
	struct mv_err err = {0};
	char text[64];
	int64_t t;
	int ret;

	ret = ss_root_parse("fuzz", (const char *)data, size, &r, &err);
	if (ret)
		check_failure(ret, r, &err);
	else
		walk_root(r);
	ss_root_free(r);
	memset(&err, 0, sizeof(err));
	ret = ss_bundle_parse("fuzz", (const char *)data, size, &b, &err);
	if (ret)
		check_failure(ret, b, &err);
	else
		walk_bundle(b);
	ss_bundle_free(b);
	memset(&err, 0, sizeof(err));
	ret = ss_checkpoint_verify((const char *)data, size, fixed_log(), &cp, &err);
	if (ret)
		check_failure(ret, NULL, &err);
	else if (!memchr(cp.origin, 0, sizeof(cp.origin)) || cp.size < 0)
		abort();
	fuzz_cert(data, size);
	memcpy(text, data, size < sizeof(text) ? size : sizeof(text) - 1);
	text[size < sizeof(text) ? size : sizeof(text) - 1] = '\0';
	(void)ss_time_parse(text, &t);
	return 0;
}
