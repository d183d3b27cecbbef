// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_bundle.c - libFuzzer target for the signature parsers: every input is
 * fed to mv_statement_parse (as a payload) and to mv_sig_parse (as a bundle)
 * with a trust set holding one fixed key, so that golden seeds signed by that
 * key reach the signature check and the statement parser behind it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "verity.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The OMS test corpus' P-384 public key (keys/certificate/signing-key-pub.pem). */
static const char fixed_key[] =
	"-----BEGIN PUBLIC KEY-----\n"
	"MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEsu6rZGBTjxtvRWPMixT+3HyndV0J0Ybt\n"
	"aHZUcO4DEK+OJHO/4e32bb/fbJKSpRgcBsIpKLcVijUomyFOERbd7u+BTPSUjGZD\n"
	"Qq6J7lTvp/EAXQGOKxW9RP0MGX3qAkvi\n"
	"-----END PUBLIC KEY-----\n";

/* Loads the fixed key once, through a temporary file (the API reads files). */
static struct mv_trust *fixed_trust(void)
{
	static struct mv_trust *trust;
	const char *base = getenv("TMPDIR");
	char path[512];
	FILE *f;
	int fd;

	if (trust)
		return trust;
	trust = mv_trust_new();
	snprintf(path, sizeof(path), "%s/fuzz-bundle-key-XXXXXX", base ? base : "/tmp");
	fd = mkstemp(path);
	if (fd < 0)
		abort();
	f = fdopen(fd, "w");
	if (!f || fputs(fixed_key, f) < 0 || fclose(f) != 0)
		abort();
	if (mv_trust_add_key_file(trust, path, NULL) != 0)
		abort();
	unlink(path);
	return trust;
}

/* Touches every field of a manifest so that the sanitizers see bad pointers. */
static void walk(const struct mv_manifest *m)
{
	volatile size_t sum = 0;

	sum += strlen(m->subject_name) + m->statement_len;
	for (size_t i = 0; i < m->n_res; i++) {
		sum += strlen(m->res[i].name);
		if (mv_manifest_find(m, m->res[i].name) != &m->res[i])
			abort(); /* res must be sorted and unique */
		if (!mv_resource_name_valid(m->res[i].name, m->n_res == 1))
			abort();
	}
	for (size_t i = 0; i < m->n_ignore; i++)
		sum += strlen(m->ignore_paths[i]);
	for (size_t i = 0; i < m->prov.n_props; i++)
		sum += strlen(m->prov.props[i].key) + strlen(m->prov.props[i].value);
	for (size_t i = 0; i < m->prov.n_datasets; i++)
		sum += strlen(m->prov.datasets[i]);
	(void)sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mv_trust *trust = fixed_trust();
	struct mv_manifest *m = NULL;
	struct mv_err err = {0};
	char *out = NULL;
	size_t len = 0;

	if (mv_statement_parse((const char *)data, size, &m, &err) == 0) {
		walk(m);
		/* What parses must build again. */
		if (mv_statement_build(m, &out, &len, NULL) != 0)
			abort();
		free(out);
	} else if (!err.msg[0] || m) {
		abort(); /* every failure carries a message and no manifest */
	}
	mv_manifest_free(m);
	m = NULL;
	memset(&err, 0, sizeof(err));
	if (mv_sig_parse((const char *)data, size, trust, NULL, NULL, &m, &err) == 0)
		walk(m);
	else if (!err.msg[0] || m)
		abort();
	mv_manifest_free(m);
	return 0;
}
