// SPDX-License-Identifier: Apache-2.0
/*
 * cmd_metrics.c - `modelfs metrics MOUNTPOINT`: print the mount's metrics
 * (MOUNTPOINT/.modelfs/metrics.prom, Prometheus text format 0.0.4; see
 * docs/metrics.md) on stdout, e.g. for a node_exporter textfile collector
 * fed by cron. Exit statuses as `modelfs status`: 3 not mounted, 4 stale
 * (cli_mount.c reads the file for both).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

/**
 * cmd_metrics() - `modelfs metrics MOUNTPOINT`
 * @argc: in: argument count
 * @argv: in: arguments; argv[0] is "metrics"
 *
 * Return: EXIT_OK, EXIT_USAGE_IO, EXIT_NOT_MOUNTED or EXIT_STALE.
 */
int cmd_metrics(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	char *text = NULL;
	size_t len;
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c != 'h')
			return cli_usage("metrics");
		cli_usage("metrics");
		return EXIT_OK;
	}
	if (argc - optind != 1)
		return cli_usage("metrics");
	ret = cli_read_mount_file(argv[optind], "metrics.prom", &text, &len);
	if (ret)
		return ret;
	if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0) {
		cli_error("stdout: write failed");
		ret = EXIT_USAGE_IO;
	}
	free(text);
	return ret;
}
