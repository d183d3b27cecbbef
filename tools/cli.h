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

/* Looks a command up in the dispatch table (for usage lines). */
const struct cli_command *cli_find(const char *name);

/* Prints "modelfs: <fmt>\n" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "modelfs NAME: usage: ..." to stderr and returns EXIT_USAGE_IO. */
int cli_usage(const char *name);
/* Prints an mv_err line ("modelfs: <msg>") and maps it to an exit status. */
int cli_report(const struct mv_err *err);
/* Parses a size with an optional K/M/G suffix (binary). -EINVAL on error. */
int cli_parse_size(const char *s, unsigned long long *out);
/* Parses tree options shared by digest and seal into @p. */
int cli_parse_hash_alg(const char *s, struct mv_tree_params *p);
int cli_parse_block_size(const char *s, struct mv_tree_params *p);
int cli_parse_salt(const char *s, struct mv_tree_params *p);

#endif /* MODELFS_CLI_H */
