// SPDX-License-Identifier: Apache-2.0
/* cmd_seal.c - placeholder until the subcommand lands. */
#include "cli.h"

int cmd_seal(int argc, char **argv)
{
	cli_error("seal: not implemented yet");
	return EXIT_USAGE_IO;
}
