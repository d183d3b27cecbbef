// SPDX-License-Identifier: Apache-2.0
/*
 * cli_util.c - helpers shared by the subcommands: messages, exit statuses
 * and the parsing of options that several commands take.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void cli_error(const char *fmt, ...)
{
	va_list ap;

	fputs("modelfs: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_usage(const char *name)
{
	const struct cli_command *cmd = cli_find(name);

	if (cmd)
		fprintf(stderr, "usage: modelfs %s\n", cmd->usage);
	return EXIT_USAGE_IO;
}

int cli_report(const struct mv_err *err)
{
	cli_error("%s", err->msg[0] ? err->msg : strerror(-err->code));
	switch (err->code) {
	case -EBADMSG:
	case -EKEYREJECTED: return EXIT_VERIFY;
	default: return EXIT_USAGE_IO;
	}
}

int cli_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
	char *end;
	unsigned long v;

	if (!s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

int cli_parse_size(const char *s, unsigned long long *out)
{
	char *end;
	unsigned long long v, mult = 1;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case '\0': break;
	case 'k':
	case 'K':
		mult = 1ULL << 10;
		end++;
		break;
	case 'm':
	case 'M':
		mult = 1ULL << 20;
		end++;
		break;
	case 'g':
	case 'G':
		mult = 1ULL << 30;
		end++;
		break;
	default: return -EINVAL;
	}
	if (*end == 'i' && end[1] == 'B')
		end += 2;
	else if (*end == 'B')
		end++;
	if (*end || (v && mult > ~0ULL / v))
		return -EINVAL;
	*out = v * mult;
	return 0;
}

int cli_parse_hash_alg(const char *s, struct mv_tree_params *p)
{
	return mv_hash_parse(s, &p->alg);
}

int cli_parse_block_size(const char *s, struct mv_tree_params *p)
{
	unsigned long long v;

	if (cli_parse_size(s, &v) || v < (1u << MV_MIN_LOG_BLOCK) || v > (1u << MV_MAX_LOG_BLOCK) ||
	    (v & (v - 1)))
		return -EINVAL;
	p->block_size = (uint32_t)v;
	return 0;
}

int cli_parse_salt(const char *s, struct mv_tree_params *p)
{
	int n = mv_hex_decode(s, p->salt, sizeof(p->salt));

	if (n < 0 || strlen(s) != 2 * (size_t)n)
		return -EINVAL;
	p->salt_size = (uint8_t)n;
	return 0;
}

int cli_load_trust(const struct mv_trust_inputs *in, struct mv_trust **out)
{
	struct mv_err err = {0};

	if (!mv_trust_load(in, out, &err))
		return EXIT_OK;
	cli_error("%s", err.msg);
	/* A trust file that cannot be read is an I/O error, not a failed check. */
	return EXIT_USAGE_IO;
}
