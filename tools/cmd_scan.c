// SPDX-License-Identifier: Apache-2.0
/* cmd_scan.c - placeholder until the subcommand lands. */
#include "cli.h"

int cmd_scan(int argc, char **argv)
{
	cli_error("scan: not implemented yet");
	return EXIT_USAGE_IO;
}
