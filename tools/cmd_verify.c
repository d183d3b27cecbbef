// SPDX-License-Identifier: Apache-2.0
/* cmd_verify.c - placeholder until the subcommand lands. */
#include "cli.h"

int cmd_verify(int argc, char **argv)
{
	cli_error("verify: not implemented yet");
	return EXIT_USAGE_IO;
}
