// SPDX-License-Identifier: Apache-2.0
/* cmd_keygen.c - placeholder until the subcommand lands. */
#include "cli.h"

int cmd_keygen(int argc, char **argv)
{
	cli_error("keygen: not implemented yet");
	return EXIT_USAGE_IO;
}
