// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_policy.c - libFuzzer target for trust policies (verity/policy.c): the
 * loader mv_policy_load with its strict JSON front end and every parse_*
 * below it (keys by id, file and subject, rules, attestation requirements,
 * revoked keys, denylists, min_signed_at pins, the names map), then, for a
 * policy that loads, mv_policy_check, mv_policy_pickle, mv_policy_required
 * and mv_name_bind_check on fixed manifests and attestation lists.
 *
 * The input is written to policy.json in a private temporary folder that
 * also holds k.pub, so a policy's {"file": "k.pub"} key loads; other key
 * files it names do not exist. The manifests' signers, names, dates and
 * digests are the constants below, which the seeds refer to.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "verity.h"
#include "fuzz_files.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* k.pub: an ECDSA P-256 key; its key id is KPUB. */
static const char k_pub[] = "-----BEGIN PUBLIC KEY-----\n"
			    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE1awBHRFKLrWr/M2m4fDTuZ1NhO2g\n"
			    "NzLBI/X/BPDSET8/+nrSJcxUdvQiFsRtLm+/+kwFWL86QoV+ilyAxUI0ww==\n"
			    "-----END PUBLIC KEY-----\n";
#define KPUB "72d0ef7f823b2c82f6de01ffd096f356d607066b71b5f3f4e9b33c1fce2dae6c"
#define K2   "2222222222222222222222222222222222222222222222222222222222222222"
#define K5   "5555555555555555555555555555555555555555555555555555555555555555"
#define K6   "6666666666666666666666666666666666666666666666666666666666666666"

static char dir[256], policy_path[300];

static void cleanup(void)
{
	char path[300];

	snprintf(path, sizeof(path), "%s/k.pub", dir);
	unlink(path);
	unlink(policy_path);
	rmdir(dir);
}

static void setup(void)
{
	char path[300];

	scratch_dir(dir, sizeof(dir), "policy");
	snprintf(path, sizeof(path), "%s/k.pub", dir);
	write_file(path, k_pub, strlen(k_pub));
	snprintf(policy_path, sizeof(policy_path), "%s/policy.json", dir);
	atexit(cleanup);
}

static struct mv_resource res_a[] = {
    {.name = "config.json", .sha256 = {0x22, 0x22, 0x22, 0x22}},
    {.name = "weights.bin", .sha256 = {0x33, 0x33, 0x33, 0x33}},
};

/* A key-signed model with a provenance name and a signing date. */
static struct mv_manifest man_a = {
    .subject_name = "m1",
    .res = res_a,
    .n_res = 2,
    .prov = {.name = "acme/m1", .signed_at = "2026-06-01T00:00:00Z"},
    .statement_sha256 = {0x44, 0x44, 0x44, 0x44},
    .signer = {.key_id = KPUB},
};

/* A certificate-signed model without provenance. */
static struct mv_manifest man_b = {
    .subject_name = "org/m2",
    .statement_sha256 = {0x55},
    .signer = {.is_certificate = true, .key_id = K5, .subject = "CN=release,O=acme"},
};

static struct mv_attestation atts_v[] = {
    {.predicate_type = "https://modelfs.dev/scan/v1", .key_id = K2, .verified = true},
    {.predicate_type = "https://example.com/eval/v1", .key_id = KPUB, .verified = true},
    {.predicate_type = "https://modelfs.dev/scan/v1", .key_id = K6, .verified = false},
};
static const struct mv_attestation_list atts = {atts_v, 3};

static const char *const paths[] = {"acme/m1", "org/m2", "x/acme/m1", "other"};

static void check_model(const struct mv_policy *p, const char *path, const struct mv_manifest *m)
{
	static const enum mv_name_check modes[] = {MV_NAME_CHECK_SUFFIX, MV_NAME_CHECK_EXACT,
	                                           MV_NAME_CHECK_OFF};
	const char *name = mv_model_name(m), *pk;

	for (int i = 0; i < 2; i++) {
		struct mv_err err = {0};
		int ret = mv_policy_check(p, path, m, i ? &atts : NULL, &err);

		if (ret != 0 && ret != -EKEYREJECTED && ret != -ENOMEM)
			__builtin_trap();
		if (ret && !err.msg[0])
			__builtin_trap(); /* every refusal names its rule */
	}
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		struct mv_err err = {0};
		int ret = mv_name_bind_check(p, path, m, modes[i], &err);

		if (ret != 0 && (ret != -EKEYREJECTED || !err.msg[0]))
			__builtin_trap();
	}
	pk = mv_policy_pickle(p, path, name);
	if (pk && strcmp(pk, "show") && strcmp(pk, "transcode") && strcmp(pk, "hide") &&
	    strcmp(pk, "deny"))
		__builtin_trap();
	(void)mv_policy_required(p, path, name);
	(void)mv_policy_required(p, path, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mv_policy *p = NULL;
	struct mv_err err = {0};
	int ret;

	if (!dir[0])
		setup();
	write_file(policy_path, data, size);
	ret = mv_policy_load(policy_path, &p, &err);
	if (ret) {
		if (p || !err.msg[0])
			__builtin_trap(); /* a failure carries a message and no policy */
		return 0;
	}
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		check_model(p, paths[i], &man_a);
		check_model(p, paths[i], &man_b);
	}
	mv_policy_free(p);
	return 0;
}
