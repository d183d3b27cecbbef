// SPDX-License-Identifier: Apache-2.0
/*
 * modelfs.c - entry point and the one dispatch table of the modelfs CLI.
 *
 * The CLI is a thin layer: each subcommand parses options and calls the
 * libraries (verity/, cache/, fs/). When invoked as mount.modelfs or with
 * the mount(8) helper convention the mount subcommand is implied.
 */
#define FUSE_USE_VERSION 312
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <fuse_lowlevel.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#include <zlib.h>
#include <zstd.h>

#include "cli.h"
#include "modelfs_build.h"

static const struct cli_command commands[] = {
    {"digest", cmd_digest,
     "digest [--hash-alg sha256|sha512] [--block-size N] [--salt HEX] FILE...",
     "print fs-verity file digests, as `fsverity digest` does"},
    {"keygen", cmd_keygen, "keygen [--type ecdsa-p256|ecdsa-p384|ecdsa-p521|ed25519] PREFIX",
     "create a signing key pair PREFIX.key / PREFIX.pub"},
    {"seal", cmd_seal,
     "seal --key PREFIX.key [--name N] [--revision R] [--source URL] [--base-model M] "
     "[--license L] [--dataset D]... [--property k=v]... [--hash-alg A] [--block-size N] "
     "[--salt HEX] [--ignore-paths PATH]... [--signature FILE] [--threads N] "
     "[--trees-only --trust KEY.pub... --trust-ca CA.pem...] MODEL_DIR",
     "sign a model folder: write MODEL_DIR/model.sig and its Merkle trees"},
    {"verify", cmd_verify,
     "verify --trust KEY.pub [--trust ...] [--trust-ca CA.pem ...] [--signature FILE] "
     "[--ignore-paths PATH ...] [--ignore-unsigned-files] [--policy FILE.json] "
     "[--model-path PATH [--name-check suffix|exact|off]] MODEL_DIR",
     "verify a signed model folder or file"},
    {"inspect", cmd_inspect, "inspect [--json] [--signature FILE] MODEL_DIR",
     "show the signer, provenance and files of a signed model"},
    {"mount", cmd_mount,
     "mount [-f] [-o OPTS] [--trust KEY.pub ...] [--trust-ca CA.pem ...] "
     "[--pickle=transcode|hide|show|deny] [--policy FILE.json] [--name-check suffix|exact|off] "
     "[--cache-dir DIR] [--cache-size "
     "SIZE] [--ready-file PATH] [--watch] [--unmount-timeout SECONDS] [--uid N] [--gid N] "
     "[--umask MASK] [--control-access owner|all] STORE MOUNTPOINT",
     "serve the signed models of STORE read-only, verified block by block"},
    {"scan", cmd_scan,
     "scan [--format text|json|sarif] [-r] PATH... | scan --attest --key PREFIX.key MODEL_DIR",
     "classify pickle files without executing them"},
    {"transcode", cmd_transcode,
     "transcode [-q] [--no-sync] IN OUT | INDEX.json OUT_DIR | IN_DIR OUT_DIR",
     "turn safe torch pickle checkpoints into safetensors, without unpickling"},
    {"pack", cmd_pack,
     "pack [--level N] [--frame-size SIZE] [--tensor-transform] [--remove-original] "
     "[--signature FILE] [--threads N] [-q] MODEL_DIR",
     "store signed files zstd-packed (seekable format) in MODEL_DIR/.modelfs/packed"},
    {"bom", cmd_bom,
     "bom [--spec 1.6|1.7] [--serial-number URN] [--timestamp T] [--trust KEY.pub ...] "
     "[--trust-ca CA.pem ...] [--signature FILE] MODEL_DIR",
     "print the CycloneDX ML-BOM of a signed model"},
    {"attest", cmd_attest,
     "attest --key PREFIX.key --predicate-type URI --predicate FILE.json [--signature FILE] "
     "MODEL_DIR",
     "sign an in-toto attestation about a model's signature into MODEL_DIR/.modelfs"},
    {"status", cmd_status, "status [--json] MOUNTPOINT",
     "show a mount's models and health (exit 0 healthy, 1 unhealthy, 3 not mounted, 4 stale)"},
    {"metrics", cmd_metrics, "metrics MOUNTPOINT",
     "print a mount's metrics in Prometheus text format"},
    {"push", cmd_push,
     "push (--trust KEY.pub | --trust-ca CA.pem | --identity ID --identity-provider URL) ... "
     "[--trust-root FILE] [--ca-cert FILE] [--insecure] MODEL_DIR [http://]REGISTRY/REPO:TAG",
     "verify a sealed model and publish it to an OCI registry (ModelPack, signature attached)"},
    {"pull", cmd_pull,
     "pull (--trust KEY.pub | --trust-ca CA.pem | --identity ID --identity-provider URL) ... "
     "[--trust-root FILE] [--ca-cert FILE] [--insecure] [--jobs N] [--chunk-size SIZE] "
     "[--progress] [http://]REGISTRY/REPO[:TAG][@sha256:HEX] DIR",
     "download a pushed model, verify it and install it as DIR (resumable)"},
};

const struct cli_command *cli_find(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void print_help(FILE *f)
{
	fprintf(f, "usage: modelfs COMMAND [OPTIONS] ...\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f,
	        "\n'modelfs COMMAND --help' shows a command's options.\n"
	        "Exit status: 0 success, 1 verification failed or unsafe, 2 usage or I/O error.\n");
}

/**
 * print_version() - `modelfs --version`: what a bug report needs, one line each
 * @f: in: the stream to print to
 *
 * Prints the version, the build (type, compiler), each library modelfs
 * links as compiled against (its header) and as running (its version
 * function), and the build's features: fuzzing, sanitizers, keyless
 * (Sigstore) verification with its default trusted root, and OCI
 * registries over libcurl.
 */
static void print_version(FILE *f)
{
	const curl_version_info_data *curl = curl_version_info(CURLVERSION_NOW);
	const char *root = mv_sigstore_root_default();
	const char *san = MODELFS_SANITIZERS;

	fprintf(f, "modelfs %s\n", MV_VERSION);
	fprintf(f, "build: %s, %s\n", MODELFS_BUILD_TYPE, MODELFS_COMPILER);
	fprintf(f, "libfuse: compiled %d.%d, running %s\n", FUSE_MAJOR_VERSION, FUSE_MINOR_VERSION,
	        fuse_pkgversion());
	fprintf(f, "OpenSSL: compiled %s, running %s\n", OPENSSL_VERSION_TEXT,
	        OpenSSL_version(OPENSSL_VERSION));
	fprintf(f, "zstd: compiled %s, running %s\n", ZSTD_VERSION_STRING, ZSTD_versionString());
	fprintf(f, "cJSON: compiled %d.%d.%d, running %s\n", CJSON_VERSION_MAJOR,
	        CJSON_VERSION_MINOR, CJSON_VERSION_PATCH, cJSON_Version());
	fprintf(f, "libcurl: compiled %s, running %s\n", LIBCURL_VERSION,
	        curl ? curl->version : "unknown");
	fprintf(f, "zlib: compiled %s, running %s\n", ZLIB_VERSION, zlibVersion());
	fprintf(f, "fuzzing: %s\n", MODELFS_FUZZING ? "yes" : "no");
	fprintf(f, "sanitizers: %s\n", strcmp(san, "none") == 0 || !*san ? "none" : san);
	fprintf(f, "keyless (Sigstore): yes, default trusted root %s (%s)\n", root,
	        access(root, R_OK) == 0 ? "present" : "missing");
	fprintf(f, "remote (OCI registries, libcurl): yes\n");
}

int main(int argc, char **argv)
{
	const char *prog = strrchr(argv[0], '/');

	prog = prog ? prog + 1 : argv[0];
	/* mount(8) runs "mount.fuse3 ... -t fuse.modelfs" as "modelfs STORE MNT -o OPTS". */
	if (strcmp(prog, "mount.modelfs") == 0 ||
	    (argc > 1 && argv[1][0] != '-' && !cli_find(argv[1]) && argc >= 3))
		return cmd_mount(argc, argv);

	if (argc < 2) {
		print_help(stderr);
		return EXIT_USAGE_IO;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		print_help(stdout);
		return EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0) {
		print_version(stdout);
		return EXIT_OK;
	}
	const struct cli_command *cmd = cli_find(argv[1]);
	if (!cmd) {
		cli_error("unknown command '%s' (see 'modelfs --help')", argv[1]);
		return EXIT_USAGE_IO;
	}
	return cmd->run(argc - 1, argv + 1);
}
