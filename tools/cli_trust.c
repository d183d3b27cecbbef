// SPDX-License-Identifier: Apache-2.0
/*
 * cli_trust.c - the signer options that verify, push and pull share:
 * --trust KEY.pub, --trust-ca CA.pem, keyless --identity ID
 * --identity-provider URL (paired in order) and --trust-root FILE. One
 * table of them (CLI_TRUST_OPTIONS), one parser, one check, one loader, so
 * that every command that decides whom to believe decides it the same way.
 * Also the check of a registry reference that push and pull share.
 */
#include <stdlib.h>

#include "cli.h"
#include "fsremote.h"

int cli_trust_init(struct cli_trust_args *t, int argc)
{
	size_t n = (size_t)argc + 1; /* each option takes an argument: never more */

	*t = (struct cli_trust_args){0};
	t->keys = calloc(n, sizeof(char *));
	t->cas = calloc(n, sizeof(char *));
	t->identities = calloc(n, sizeof(char *));
	t->issuers = calloc(n, sizeof(char *));
	if (t->keys && t->cas && t->identities && t->issuers)
		return 0;
	cli_trust_free(t);
	return -1;
}

void cli_trust_free(struct cli_trust_args *t)
{
	free(t->keys);
	free(t->cas);
	free(t->identities);
	free(t->issuers);
	*t = (struct cli_trust_args){0};
}

bool cli_trust_option(struct cli_trust_args *t, int c, const char *arg)
{
	switch (c) {
	case CLI_OPT_TRUST: t->keys[t->n_keys++] = arg; return true;
	case CLI_OPT_TRUST_CA: t->cas[t->n_cas++] = arg; return true;
	case CLI_OPT_IDENTITY: t->identities[t->n_identities++] = arg; return true;
	case CLI_OPT_ISSUER: t->issuers[t->n_issuers++] = arg; return true;
	case CLI_OPT_TRUST_ROOT: t->root = arg; return true;
	default: return false;
	}
}

int cli_trust_check(const struct cli_trust_args *t, const char *who)
{
	if (t->n_identities != t->n_issuers) {
		cli_error("%s: give one --identity-provider URL for each --identity ID", who);
		return -1;
	}
	if (!t->n_keys && !t->n_cas && !t->n_identities) {
		cli_error("%s: give at least one --trust KEY.pub, --trust-ca CA.pem or "
		          "--identity ID --identity-provider URL",
		          who);
		return -1;
	}
	return 0;
}

int cli_trust_load(const struct cli_trust_args *t, const char *who, struct mv_trust **out)
{
	const struct mv_trust_inputs in = {.key_files = t->keys,
	                                   .n_key_files = t->n_keys,
	                                   .ca_files = t->cas,
	                                   .n_ca_files = t->n_cas,
	                                   .identities = t->identities,
	                                   .issuers = t->issuers,
	                                   .n_identities = t->n_identities,
	                                   .sigstore_root = t->root,
	                                   .who = who};

	return cli_load_trust(&in, out);
}

int cli_remote_ref(const char *who, const char *text, bool insecure, struct mfr_ref *ref)
{
	struct mv_err err = {0};

	if (mfr_ref_parse(text, ref, &err)) {
		cli_error("%s: %s", who, err.msg);
		return -1;
	}
	if (ref->plain_http && !insecure && !mfr_host_is_loopback(ref->host)) {
		cli_error("%s: %s: plain HTTP refused to a host that is not loopback (--insecure "
		          "allows it)",
		          who, ref->registry);
		return -1;
	}
	return 0;
}
