// SPDX-License-Identifier: Apache-2.0
/*
 * cmd_status.c - `modelfs status MOUNTPOINT`: is the mount alive, which
 * models does it serve, and is it healthy? For probes and operators.
 *
 * Exit statuses (docs/operations.md): 0 healthy; 1 mounted but unhealthy
 * (a model the policy marks "required" was refused, or the daemon ran out
 * of file descriptors in the last 60 seconds); 2 usage error; 3 not a
 * modelfs mount; 4 stale mount (the daemon is gone: ENOTCONN).
 *
 * Everything comes from MOUNTPOINT/.modelfs/status.json, read through the
 * mount itself (cli_mount.c): if the daemon cannot answer, neither can this
 * command. The parse, the health decision and the summary are in
 * status_json.c.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "cli.h"

/**
 * cmd_status() - `modelfs status [--json] MOUNTPOINT`
 * @argc: in: argument count
 * @argv: in: arguments; argv[0] is "status"
 *
 * Return: EXIT_OK healthy, EXIT_VERIFY unhealthy, EXIT_USAGE_IO,
 * EXIT_NOT_MOUNTED or EXIT_STALE.
 */
int cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	bool json = false;
	char *text = NULL;
	cJSON *st = NULL;
	size_t len, n_required;
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'j') {
			json = true;
		} else if (c == 'h') {
			cli_usage("status");
			fputs("Exit status: 0 healthy, 1 unhealthy (a required model was refused, "
			      "or file\ndescriptors ran out in the last 60 s), 2 usage error,\n"
			      "3 not a modelfs mount, 4 stale mount (daemon gone).\n",
			      stderr);
			return EXIT_OK;
		} else {
			return cli_usage("status");
		}
	}
	if (argc - optind != 1)
		return cli_usage("status");
	ret = cli_read_mount_file(argv[optind], "status.json", &text, &len);
	if (ret)
		return ret;
	st = cli_status_parse(text, len, &n_required);
	if (!st) {
		cli_error("%s: not a modelfs mount (.modelfs/status.json is not a status file)",
		          argv[optind]);
		ret = EXIT_NOT_MOUNTED;
		goto out;
	}
	if (json)
		fwrite(text, 1, len, stdout);
	else
		cli_status_print(stdout, argv[optind], st, n_required);
	ret = n_required || cli_status_problems(st) ? EXIT_VERIFY : EXIT_OK;
out:
	cJSON_Delete(st);
	free(text);
	return ret;
}
