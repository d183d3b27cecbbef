/* SPDX-License-Identifier: Apache-2.0 */
/*
 * policy_int.h - the parsed form of a trust policy, shared by policy.c
 * (loading and parsing) and policy_check.c (applying it). No other file
 * includes it.
 */
#ifndef MODELFS_POLICY_INT_H
#define MODELFS_POLICY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define POLICY_MAX       (4u << 20)
#define POLICY_MAX_ITEMS 100000

/* A signer the policy can name: a key id, a certificate subject, or a
 * keyless identity (subject holds the identity, issuer its OIDC issuer). */
struct pkey {
	char *name;
	char id[65];   /* hex key id, "" for subject-only entries */
	char *subject; /* certificate subject (RFC 2253), keyless identity, or NULL */
	char *issuer;  /* keyless entries: the OIDC issuer; else NULL */
};

struct pattest {
	char *type;
	size_t *keys; /* indices into keys[]; none: any trusted key */
	size_t n_keys;
};

struct prule {
	char *path; /* fnmatch glob, '*' also matches '/' */
	size_t *signers;
	size_t n_signers;
	long min_signers;
	struct pattest *att;
	size_t n_att;
	char *pickle;
	bool required; /* a refusal of a matching model makes the mount unhealthy */
};

struct pmin {
	char *name; /* a store path or a signed name */
	char *text;
	time_t t;
};

/* names: the signed name the model at store path @path must have. */
struct pname {
	char *path;
	char *name;
};

struct mv_policy {
	char *label;
	bool default_allow;
	struct pkey *keys;
	size_t n_keys;
	struct prule *rules;
	size_t n_rules;
	size_t *revoked;
	size_t n_revoked;
	char (*deny_stmt)[65];
	size_t n_deny_stmt;
	char (*deny_file)[65];
	size_t n_deny_file;
	struct pmin *min;
	size_t n_min;
	struct pname *names;
	size_t n_names;
};

/* "YYYY-MM-DDTHH:MM:SSZ" as seconds since the epoch, or (time_t)-1 (policy.c). */
time_t mv_policy_utc(const char *s);

#endif /* MODELFS_POLICY_INT_H */
