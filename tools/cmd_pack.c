// SPDX-License-Identifier: Apache-2.0
/*
 * cmd_pack.c - `modelfs pack`: store the signed files of a model folder
 * zstd-packed in MODEL/.modelfs/packed (see docs/packing.md).
 *
 * Output: one line per file on stdout, then a summary line; failures one
 * line each on stderr. Exit 0 when every file was handled, 1 when a file
 * does not match its signature or a packed copy is damaged, 2 on usage and
 * I/O errors. The signature itself is not checked here (no trust inputs):
 * files are checked against the digests it lists, and `verify`/`mount`
 * check the signature.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

struct pack_args {
	struct mv_pack_opts o;
	bool quiet;
	const char *model;
};

static void on_info(void *ctx, const char *line)
{
	const struct pack_args *a = ctx;

	if (!a->quiet)
		printf("%s\n", line);
}

static void on_problem(void *ctx, const char *line)
{
	fprintf(stderr, "%s\n", line);
}

static int parse_level(const char *s, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < -131072 || v > 22 || v == 0)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

/* Parses argv into @a; returns 1 for --help, -1 on a usage error. */
static int parse_args(int argc, char **argv, struct pack_args *a)
{
	static const struct option opts[] = {
	    {"level", required_argument, NULL, 'l'},
	    {"frame-size", required_argument, NULL, 'f'},
	    {"remove-original", no_argument, NULL, 'r'},
	    {"signature", required_argument, NULL, 's'},
	    {"threads", required_argument, NULL, 't'},
	    {"tensor-transform", no_argument, NULL, 'x'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	unsigned long long size;
	int c;

	while ((c = getopt_long(argc, argv, "hq", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			if (parse_level(optarg, &a->o.z.level)) {
				cli_error(
				    "pack: --level must be 1..22 (or negative for fast modes)");
				return -1;
			}
			break;
		case 'f':
			if (cli_parse_size(optarg, &size) || size == 0 ||
			    size > MV_ZPACK_MAX_FRAME) {
				cli_error("pack: --frame-size must be between 1 and %uM",
				          MV_ZPACK_MAX_FRAME >> 20);
				return -1;
			}
			a->o.z.frame_size = (uint32_t)size;
			break;
		case 'r': a->o.remove_original = true; break;
		case 's': a->o.signature = optarg; break;
		case 't':
			if (cli_parse_uint(optarg, 1, 1024, &a->o.threads)) {
				cli_error("pack: bad --threads '%s'", optarg);
				return -1;
			}
			break;
		case 'x': a->o.z.tensor_transform = true; break;
		case 'q': a->quiet = true; break;
		case 'h': return 1;
		default: return -1;
		}
	}
	if (optind + 1 != argc)
		return -1;
	a->model = argv[optind];
	return 0;
}

static void print_help(void)
{
	cli_usage("pack");
	fputs("\nOptions:\n"
	      "  --level N            zstd level (default 3)\n"
	      "  --frame-size SIZE    plain bytes per frame, a multiple of the Merkle block\n"
	      "                       size (default 1M, at most 16M)\n"
	      "  --remove-original    delete each plain file once its packed copy has been\n"
	      "                       decompressed and checked against the signed digest\n"
	      "  --signature FILE     signature to read (default MODEL_DIR/model.sig)\n"
	      "  --threads N          files packed at once (default: number of CPUs)\n"
	      "  --tensor-transform   store frames whose 2- or 4-byte elements compress\n"
	      "                       better as byte planes that way (about 11% smaller\n"
	      "                       on bf16/f32 weights); such files no longer\n"
	      "                       decompress with plain `zstd -d`\n"
	      "  -q, --quiet          print only the summary line\n"
	      "\nFiles that shrink by less than 5% stay plain. The signature is not changed:\n"
	      "it covers the plain bytes, and verify and mount check packed files against it.\n",
	      stderr);
}

int cmd_pack(int argc, char **argv)
{
	struct pack_args a = {0};
	struct mv_pack_stats st = {0};
	int ret;

	ret = parse_args(argc, argv, &a);
	if (ret) {
		if (ret > 0) {
			print_help();
			return EXIT_OK;
		}
		return cli_usage("pack");
	}
	ret = mv_model_pack(a.model, &a.o, on_info, &a, on_problem, NULL, &st);
	if (ret == 0 || st.packed + st.kept + st.plain + st.failed)
		printf("%s: %zu packed, %zu already packed, %zu left plain, %zu originals removed, "
		       "%zu failed; packed files %llu -> %llu bytes (ratio %.2f)\n",
		       a.model, st.packed, st.kept, st.plain, st.removed, st.failed,
		       (unsigned long long)st.plain_bytes, (unsigned long long)st.packed_bytes,
		       st.packed_bytes ? (double)st.plain_bytes / (double)st.packed_bytes : 0.0);
	if (!ret)
		return EXIT_OK;
	return ret == -EBADMSG ? EXIT_VERIFY : EXIT_USAGE_IO;
}
