// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_trust.c - libFuzzer target for the trust inputs (verity/keys.c,
 * verity/trust.c): one input is read as each file a user can give,
 *   - a public key file (mv_trust_add_key_file, load_pem_key: SPKI PEM with
 *     text around it, key type and curve checks, hint and key id),
 *   - a CA bundle (mv_trust_add_ca_file: every PEM certificate),
 *   - a private key file (mv_key_load_private: PKCS#8 or SEC1 PEM,
 *     encrypted keys refused without a prompt); a key that loads must sign
 *     a message that its own public part verifies,
 *   - public key bytes as a pre-1.1 bundle carries them
 *     (mv_key_from_public_bytes: SPKI DER or PEM),
 * and its certificates (PEM, else the whole input as DER) go through the
 * chain check mv_trust_verify_chain, leaf first, against a fixed CA (so a
 * seed leaf issued by it reaches the key usage checks) and against the
 * CAs the input itself brought.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "sig_internal.h"
#include "fuzz_files.h"

#define MAX_CERTS (MV_MAX_CHAIN_CERTS + 1)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The seeds' root CA (EC P-256, "CN=fuzz root,O=modelfs", valid until 2126). */
static const char fixed_ca[] = "-----BEGIN CERTIFICATE-----\n"
			       "MIIBtDCCAVmgAwIBAgIUWo8ah4uyxxXOh0/mdzzmV019sCowCgYIKoZIzj0EAwIw\n"
			       "JjESMBAGA1UEAwwJZnV6eiByb290MRAwDgYDVQQKDAdtb2RlbGZzMCAXDTI2MTIw\n"
			       "MjAwMDc1MFoYDzIxMjYxMTA4MDAwNzUwWjAmMRIwEAYDVQQDDAlmdXp6IHJvb3Qx\n"
			       "EDAOBgNVBAoMB21vZGVsZnMwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAARZWHtZ\n"
			       "WEwECLRBS4nPvfUcLOe41nkwFT6nvC96EgetCneK/6I48xGWNFEW8ZLbmC2UL3Fw\n"
			       "VPuiVpU7eumUy9Yao2MwYTAdBgNVHQ4EFgQU/tQrN3dtiPLH5ulYH5eb/M0x87ow\n"
			       "HwYDVR0jBBgwFoAU/tQrN3dtiPLH5ulYH5eb/M0x87owDwYDVR0TAQH/BAUwAwEB\n"
			       "/zAOBgNVHQ8BAf8EBAMCAQYwCgYIKoZIzj0EAwIDSQAwRgIhAOigXBnhxDMYJSM3\n"
			       "f+4gME6y5jPPPjnrbYzd8xp38QdqAiEArpF7DfKcCVlqk4NCKMrBZH4wcGQZyJnT\n"
			       "9fzG2Bm+XV4=\n"
			       "-----END CERTIFICATE-----\n";

static char dir[256], in_path[300];
static struct mv_trust *ca_trust;

static void cleanup(void)
{
	unlink(in_path);
	rmdir(dir);
}

static void setup(void)
{

	scratch_dir(dir, sizeof(dir), "trust");
	snprintf(in_path, sizeof(in_path), "%s/input.pem", dir);
	atexit(cleanup);
	write_file(in_path, fixed_ca, strlen(fixed_ca));
	ca_trust = mv_trust_new();
	if (!ca_trust || mv_trust_add_ca_file(ca_trust, in_path, NULL) != 0)
		abort();
}

/* A key derived values and, for a private key, a sign and verify round trip. */
static void check_key(const struct mv_key *k, bool private)
{
	static const char msg[] = "modelfs fuzz_trust";
	struct mv_err err = {0};
	uint8_t *sig = NULL;
	size_t sig_len = 0;
	char hint[65], id[65];

	mv_key_hint(k, hint);
	mv_key_id(k, id);
	if (strlen(hint) != 64 || strlen(id) != 64 || !strcmp(mv_key_type_name(k->type), "unknown"))
		__builtin_trap();
	if (!private)
		return;
	if (mv_key_sign(k, msg, sizeof(msg), &sig, &sig_len, &err) == 0) {
		if (mv_key_verify(k, msg, sizeof(msg), sig, sig_len) != 0)
			__builtin_trap(); /* the key does not verify its own signature */
		if (mv_key_verify(k, msg, sizeof(msg) - 1, sig, sig_len) == 0)
			__builtin_trap();
	}
	free(sig);
}

/* Reads the input's certificates: PEM blocks, else the whole input as DER. */
static size_t read_certs(const uint8_t *data, size_t size, X509 **certs)
{
	const unsigned char *p = data;
	size_t n = 0;
	BIO *bio = BIO_new_mem_buf(data, (int)size);

	while (bio && n < MAX_CERTS && (certs[n] = PEM_read_bio_X509(bio, NULL, NULL, NULL)))
		n++;
	BIO_free(bio);
	if (!n && (certs[0] = d2i_X509(NULL, &p, (long)size)))
		n = 1;
	ERR_clear_error();
	return n;
}

static void check_chains(const struct mv_trust *t, const uint8_t *data, size_t size)
{
	X509 *certs[MAX_CERTS];
	STACK_OF(X509) *chain = sk_X509_new_null();
	size_t n = read_certs(data, size, certs);

	for (size_t i = 1; chain && i < n; i++)
		sk_X509_push(chain, certs[i]);
	if (n && chain) {
		struct mv_err err = {0};

		if (mv_trust_verify_chain(ca_trust, certs[0], chain, "fuzz", &err) && !err.msg[0])
			__builtin_trap();
		memset(&err, 0, sizeof(err));
		if (mv_trust_verify_chain(t, certs[0], chain, "fuzz", &err) && !err.msg[0])
			__builtin_trap();
	}
	sk_X509_free(chain);
	for (size_t i = 0; i < n; i++)
		X509_free(certs[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mv_trust *t;
	struct mv_key *k = NULL;
	struct mv_err err = {0};
	int ret;

	if (!dir[0])
		setup();
	if (size > (1u << 20))
		return 0;
	write_file(in_path, data, size);
	t = mv_trust_new();
	if (!t)
		return 0;

	ret = mv_trust_add_key_file(t, in_path, &err);
	if ((ret == 0) != (mv_trust_key_count(t) == 1) || (ret && !err.msg[0]))
		__builtin_trap();
	if (!ret) {
		/* the same file loads as a key, and the set finds it by SPKI and by hint */
		if (mv_key_load_public(in_path, &k, NULL) != 0 ||
		    !mv_trust_find_spki(t, k->spki, k->spki_len) || !mv_trust_find_hint(t, k->hint))
			__builtin_trap();
		check_key(k, false);
		mv_key_free(k);
		k = NULL;
	}
	memset(&err, 0, sizeof(err));
	ret = mv_trust_add_ca_file(t, in_path, &err);
	if ((ret == 0) != (mv_trust_ca_count(t) > 0) || (ret && !err.msg[0]))
		__builtin_trap();

	memset(&err, 0, sizeof(err));
	if (mv_key_load_private(in_path, &k, &err) == 0) {
		check_key(k, true);
		mv_key_free(k);
	} else if (k || !err.msg[0]) {
		__builtin_trap();
	}
	k = NULL;
	if (mv_key_from_public_bytes(data, size, &k, NULL) == 0) {
		check_key(k, false);
		mv_key_free(k);
	}
	check_chains(t, data, size);
	mv_trust_free(t);
	return 0;
}
