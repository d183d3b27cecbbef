/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cli.h - shared declarations of the modelfs CLI (tools/ only).
 *
 * Every subcommand lives in cmd_<name>.c and is listed once, in the
 * dispatch table of modelfs.c. Subcommands parse their own options with
 * getopt_long and return an exit status:
 */
#ifndef MODELFS_CLI_H
#define MODELFS_CLI_H

#include <stdio.h>

#include "verity.h"

enum {
	EXIT_OK = 0,       /* success */
	EXIT_VERIFY = 1,   /* verification failed / unsafe content found */
	EXIT_USAGE_IO = 2, /* usage error, I/O error, unscannable input */
	/* `modelfs status` and `modelfs metrics` only (docs/operations.md): */
	EXIT_NOT_MOUNTED = 3, /* nothing mounted there, or not modelfs */
	EXIT_STALE = 4,       /* a modelfs mount whose daemon is gone (ENOTCONN) */
};

struct cli_command {
	const char *name;
	int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
	const char *usage;                 /* one-line synopsis after "modelfs " */
	const char *summary;
};

int cmd_digest(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_seal(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_mount(int argc, char **argv);
int cmd_scan(int argc, char **argv);
int cmd_transcode(int argc, char **argv);
int cmd_pack(int argc, char **argv);
int cmd_bom(int argc, char **argv);
int cmd_attest(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_metrics(int argc, char **argv);
int cmd_push(int argc, char **argv);
int cmd_pull(int argc, char **argv);
/*
 * cli_mount.c: reads MOUNTPOINT/.modelfs/@name of a live modelfs mount into
 * a malloc'd, NUL-terminated *@text. Prints one line on failure and returns
 * the exit status: EXIT_OK, EXIT_NOT_MOUNTED, EXIT_STALE or EXIT_USAGE_IO.
 */
int cli_read_mount_file(const char *mountpoint, const char *name, char **text, size_t *len);
/*
 * status_json.c: parses status.json text (untrusted: whatever answers at the
 * mountpoint). Returns the object (cJSON_Delete it) with *@n_required, the
 * refused models a policy marks "required" (nonzero: unhealthy), or NULL
 * when the text is not a status file.
 */
struct cJSON *cli_status_parse(const char *text, size_t len, size_t *n_required);
/*
 * status_json.c: the daemon's "problems" when status.json's "health" says
 * unhealthy (fd exhaustion, required models refused), else NULL. Nonzero
 * *@n_required or a non-NULL result: unhealthy (exit 1).
 */
const struct cJSON *cli_status_problems(const struct cJSON *st);
/* status_json.c: prints the human summary of a parsed status.json to @f. */
void cli_status_print(FILE *f, const char *mountpoint, const struct cJSON *st, size_t n_required);
/* One attestation to sign (cli_attest.c: cli_attest_sign). */
struct cli_attest_req {
	const char *model;     /* model folder: writes MODEL/.modelfs/attestations/ */
	const char *sig_path;  /* its model.sig, or NULL for MODEL/model.sig */
	const char *key_path;  /* the signer's private key */
	const char *type;      /* predicate type (a URI) */
	const char *predicate; /* predicate JSON text, @pred_len bytes */
	size_t pred_len;
};
/* cli_attest.c: signs and stores it, prints "attested: ..."; returns an exit status. */
int cli_attest_sign(const struct cli_attest_req *req);
/* cli_attest.c: lists attestations, one line each ("attestation FILE: type T, ...: verified"). */
void cli_print_attestations(FILE *f, const struct mv_attestation_list *l);
/* cli_attest.c: the same as a JSON array (cJSON *; caller owns it). */
struct cJSON *cli_attestations_json(const struct mv_attestation_list *l);

/* Looks a command up in the dispatch table (for usage lines). */
const struct cli_command *cli_find(const char *name);

/* Prints "modelfs: <fmt>\n" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "modelfs NAME: usage: ..." to stderr and returns EXIT_USAGE_IO. */
int cli_usage(const char *name);
/* Prints an mv_err line ("modelfs: <msg>") and maps it to an exit status. */
int cli_report(const struct mv_err *err);
/*
 * Loads a subcommand's trust inputs (--trust keys, --trust-ca CAs, keyless
 * identities, --trust-root) into *@out (mv_trust_free it). Prints one line
 * and returns EXIT_USAGE_IO on failure.
 */
int cli_load_trust(const struct mv_trust_inputs *in, struct mv_trust **out);

/* ---- cli_trust.c: the signer options of verify, push and pull ---- */

/* getopt codes of the signer options (a command's own must differ). */
enum {
	CLI_OPT_TRUST = 't',
	CLI_OPT_TRUST_CA = 'c',
	CLI_OPT_IDENTITY = 'I',
	CLI_OPT_ISSUER = 'O',
	CLI_OPT_TRUST_ROOT = 'R',
};
/* Their struct option entries, for a command's table. */
#define CLI_TRUST_OPTIONS                                                                          \
	{"trust", required_argument, NULL, CLI_OPT_TRUST},                                         \
	    {"trust-ca", required_argument, NULL, CLI_OPT_TRUST_CA},                               \
	    {"identity", required_argument, NULL, CLI_OPT_IDENTITY},                               \
	    {"identity-provider", required_argument, NULL, CLI_OPT_ISSUER},                        \
	    {"identity_provider", required_argument, NULL, CLI_OPT_ISSUER}, /* model_signing */    \
	{                                                                                          \
		"trust-root", required_argument, NULL, CLI_OPT_TRUST_ROOT                          \
	}

/* Whom to believe, as given on the command line (pointers into argv). */
struct cli_trust_args {
	const char **keys, **cas, **identities, **issuers;
	size_t n_keys, n_cas, n_identities, n_issuers;
	const char *root; /* --trust-root FILE, or NULL: the installed one */
};
/* Allocates room for @argc of each; 0, or -1 when out of memory. Free with cli_trust_free(). */
int cli_trust_init(struct cli_trust_args *t, int argc);
void cli_trust_free(struct cli_trust_args *t);
/* Takes getopt's @c and its @arg if @c is a signer option: true; else false. */
bool cli_trust_option(struct cli_trust_args *t, int c, const char *arg);
/* The usage check after parsing: -1 with one line naming @who if no signer
 * is given or identities and providers do not pair; else 0. */
int cli_trust_check(const struct cli_trust_args *t, const char *who);
/* cli_load_trust() of the options: EXIT_OK, or EXIT_USAGE_IO with one line. */
int cli_trust_load(const struct cli_trust_args *t, const char *who, struct mv_trust **out);
struct mfr_ref;
/* Parses registry reference @text into @ref (free with mfr_ref_free()),
 * refusing plain http to a host that is not loopback unless @insecure:
 * 0, or -1 with one line naming @who. */
int cli_remote_ref(const char *who, const char *text, bool insecure, struct mfr_ref *ref);
/* Parses a decimal count in [@min, @max] into @out. -EINVAL on error. */
int cli_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out);
/* Parses a size with an optional K/M/G suffix (binary). -EINVAL on error. */
int cli_parse_size(const char *s, unsigned long long *out);
/* Parses tree options shared by digest and seal into @p. */
int cli_parse_hash_alg(const char *s, struct mv_tree_params *p);
int cli_parse_block_size(const char *s, struct mv_tree_params *p);
int cli_parse_salt(const char *s, struct mv_tree_params *p);

#endif /* MODELFS_CLI_H */
