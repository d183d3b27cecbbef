// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_attest.c - libFuzzer target for attestation files (verity/attest.c):
 * the input is the one file of a model's attestation folder, read by
 * mv_attestations_load_dir as the mount and `modelfs verify` read it
 * (list_dir, load_one, check_one: strict JSON, parse_bundle, the DSSE
 * envelope and its base64 members, parse_statement, the subject digest,
 * check_signer with the PAE and the signature).
 *
 * Two publisher keys are trusted (an ECDSA P-256 and an Ed25519 key) and the
 * model's statement digest is fixed, so seeds signed by those keys about
 * that statement verify; the input is also read with no trust (inspect).
 * Checked: exactly one entry, and an entry is verified exactly when it has
 * no reason, and then it names its key and the model's statement.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "verity.h"
#include "fuzz_files.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const keys[] = {
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE1awBHRFKLrWr/M2m4fDTuZ1NhO2g\n"
    "NzLBI/X/BPDSET8/+nrSJcxUdvQiFsRtLm+/+kwFWL86QoV+ilyAxUI0ww==\n"
    "-----END PUBLIC KEY-----\n",
    "-----BEGIN PUBLIC KEY-----\n"
    "MCowBQYDK2VwAyEA4Jl8uFsA65jkClGTG5TaLTuO+yTSoZwh7OByykIQSYE=\n"
    "-----END PUBLIC KEY-----\n",
};

/* The statement sha256 of the model.sig the seeds attest. */
#define STATEMENT_SHA256 "6564d93ac3b3b55cf646c8aa0695b8b11220e83a7853a53de996f9b80d76675f"

static char dir[256], att_dir[300], att_path[340];
static struct mv_trust *trust;
static struct mv_manifest man = {.subject_name = "model"};

static void cleanup(void)
{
	unlink(att_path);
	rmdir(att_dir);
	rmdir(dir);
}

static void setup(void)
{
	char path[300];

	scratch_dir(dir, sizeof(dir), "attest");
	snprintf(att_dir, sizeof(att_dir), "%s/att", dir);
	snprintf(att_path, sizeof(att_path), "%s/input.json", att_dir);
	if (mkdir(att_dir, 0700) != 0)
		abort();
	atexit(cleanup);
	trust = mv_trust_new();
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		snprintf(path, sizeof(path), "%s/key.pub", dir);
		write_file(path, keys[i], strlen(keys[i]));
		if (!trust || mv_trust_add_key_file(trust, path, NULL) != 0)
			abort();
		unlink(path);
	}
	for (int i = 0; i < 32; i++)
		sscanf(&STATEMENT_SHA256[2 * i], "%2hhx", &man.statement_sha256[i]);
}

static void load(const struct mv_trust *t)
{
	struct mv_attestation_list l = {0};
	struct mv_err err = {0};

	if (mv_attestations_load_dir(att_dir, &man, t, &l, &err) != 0 || l.n != 1)
		__builtin_trap(); /* a bad file is an entry, never an error */
	for (size_t i = 0; i < l.n; i++) {
		const struct mv_attestation *a = &l.a[i];

		if (a->verified != !a->reason || strcmp(a->file, "input.json") != 0)
			__builtin_trap();
		if (a->verified && (!t || strlen(a->key_id) != 64 || !a->predicate_type ||
		                    !a->predicate || strcmp(a->subject_sha256, STATEMENT_SHA256)))
			__builtin_trap();
	}
	mv_attestations_free(&l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dir[0])
		setup();
	write_file(att_path, data, size);
	load(trust);
	load(NULL);
	return 0;
}
