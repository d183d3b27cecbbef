// SPDX-License-Identifier: Apache-2.0
/* cmd_inspect.c - placeholder until the subcommand lands. */
#include "cli.h"

int cmd_inspect(int argc, char **argv)
{
	cli_error("inspect: not implemented yet");
	return EXIT_USAGE_IO;
}
