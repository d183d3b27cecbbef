// SPDX-License-Identifier: Apache-2.0
/* cmd_mount.c - placeholder until the subcommand lands. */
#include "cli.h"

int cmd_mount(int argc, char **argv)
{
	cli_error("mount: not implemented yet");
	return EXIT_USAGE_IO;
}
