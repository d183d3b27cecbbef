// SPDX-License-Identifier: Apache-2.0
/*
 * cmd_digest.c - `modelfs digest`: print fs-verity file digests exactly as
 * `fsverity digest` does ("sha256:<hex> <path>"), option for option.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

/* Measures one file; prints its line or an error naming it. */
static int digest_one(const char *path, struct mv_tree_params *p)
{
	struct mv_measurement m;
	char hex[2 * MV_MAX_DIGEST_SIZE + 1];
	struct stat st;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		cli_error("%s: cannot open: %s", path, strerror(errno));
		return EXIT_USAGE_IO;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		cli_error("%s: not a regular file", path);
		close(fd);
		return EXIT_USAGE_IO;
	}
	p->data_size = (uint64_t)st.st_size;
	ret = mv_measure_fd(fd, p, NULL, NULL, &m);
	close(fd);
	if (ret) {
		cli_error("%s: cannot measure: %s", path, strerror(-ret));
		return EXIT_USAGE_IO;
	}
	mv_hex_encode(m.digest, mv_hash_digest_size(p->alg), hex);
	printf("%s:%s %s\n", mv_hash_name(p->alg), hex, path);
	return EXIT_OK;
}

int cmd_digest(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"hash-alg", required_argument, NULL, 'a'},
	    {"block-size", required_argument, NULL, 'b'},
	    {"salt", required_argument, NULL, 's'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct mv_tree_params p = {.alg = MV_HASH_SHA256, .block_size = 4096};
	int c, status = EXIT_OK;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			if (cli_parse_hash_alg(optarg, &p)) {
				cli_error("digest: unknown hash algorithm '%s'", optarg);
				return EXIT_USAGE_IO;
			}
			break;
		case 'b':
			if (cli_parse_block_size(optarg, &p)) {
				cli_error(
				    "digest: invalid block size '%s' (a power of two, 1K..64K)",
				    optarg);
				return EXIT_USAGE_IO;
			}
			break;
		case 's':
			if (cli_parse_salt(optarg, &p)) {
				cli_error("digest: invalid salt '%s' (hex, at most 32 bytes)",
				          optarg);
				return EXIT_USAGE_IO;
			}
			break;
		case 'h': cli_usage("digest"); return EXIT_OK;
		default: return cli_usage("digest");
		}
	}
	if (optind >= argc)
		return cli_usage("digest");
	for (int i = optind; i < argc; i++) {
		int s = digest_one(argv[i], &p);

		if (s > status)
			status = s;
	}
	fflush(stdout);
	return status;
}
