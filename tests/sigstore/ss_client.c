// SPDX-License-Identifier: Apache-2.0
/*
 * ss_client.c - a Sigstore conformance client over libverity's offline
 * bundle verifier (issue #14). It speaks the verify-bundle command of the
 * sigstore-conformance suite's CLI protocol:
 *
 *   ss_client verify-bundle --bundle FILE
 *             (--certificate-identity ID --certificate-oidc-issuer URL | --key KEY.pub)
 *             [--trusted-root FILE] FILE_OR_sha256:HEX
 *
 * Without --trusted-root it uses the public-good root of the shared corpus
 * ($MODELFS_SHARED, default ../shared, + /corpus/sigstore/). Exit status 0
 * when the bundle verifies, 1 with one line on stderr when it does not, 2
 * on a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "sigstore_int.h"

#define MAX_ARTIFACT (1u << 30)
#define MAX_KEY_FILE (1u << 20)
#define DEFAULT_ROOT "/corpus/sigstore/public-good-trusted_root.json"

/* The command line, once parsed. */
struct args {
	const char *bundle;
	const char *identity;
	const char *issuer;
	const char *key;
	const char *root;
	const char *input; /* the artifact's path, or "sha256:HEX" */
};

/* What verification needs, loaded from the files the arguments name. */
struct inputs {
	struct ss_root *root;
	struct ss_bundle *bundle;
	EVP_PKEY *key;
	char *data; /* the artifact's bytes; NULL in digest mode */
	struct ss_artifact artifact;
};

/*
 * usage() - prints the synopsis and returns the usage exit status
 * @why: in: what was wrong, or NULL
 *
 * Return: 2.
 */
static int usage(const char *why)
{
	if (why)
		fprintf(stderr, "ss_client: %s\n", why);
	fprintf(stderr, "usage: ss_client verify-bundle --bundle FILE (--certificate-identity ID "
	                "--certificate-oidc-issuer URL | --key KEY.pub) [--trusted-root FILE] "
	                "FILE_OR_sha256:HEX\n");
	return 2;
}

/*
 * parse_args() - reads the command line
 * @argc, @argv: in: the program's arguments
 * @a: out: the arguments
 *
 * Return: 0, or 2 after printing the usage.
 */
static int parse_args(int argc, char **argv, struct args *a)
{
	static const struct option opts[] = {
	    {"bundle", required_argument, NULL, 'b'},
	    {"certificate-identity", required_argument, NULL, 'i'},
	    {"certificate-oidc-issuer", required_argument, NULL, 'o'},
	    {"key", required_argument, NULL, 'k'},
	    {"trusted-root", required_argument, NULL, 'r'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	memset(a, 0, sizeof(*a));
	if (argc < 2 || strcmp(argv[1], "verify-bundle"))
		return usage("the only command is verify-bundle");
	opterr = 0;
	while ((c = getopt_long(argc - 1, argv + 1, "", opts, NULL)) != -1) {
		switch (c) {
		case 'b': a->bundle = optarg; break;
		case 'i': a->identity = optarg; break;
		case 'o': a->issuer = optarg; break;
		case 'k': a->key = optarg; break;
		case 'r': a->root = optarg; break;
		default: return usage("unknown option or missing value");
		}
	}
	if (optind != argc - 2)
		return usage("exactly one artifact (FILE or sha256:HEX) expected");
	a->input = argv[optind + 1];
	if (!a->bundle)
		return usage("--bundle is required");
	if (!a->key == !(a->identity || a->issuer))
		return usage(
		    "give --key, or --certificate-identity with --certificate-oidc-issuer");
	if (!a->key && (!a->identity || !a->issuer))
		return usage("--certificate-identity and --certificate-oidc-issuer go together");
	return 0;
}

/*
 * read_user_file() - reads a file the user named (symbolic links followed)
 * @path: in: the path
 * @max: in: the largest size accepted
 * @out, @len: out: malloc'd contents, NUL-terminated
 * @err: out: the message on failure
 *
 * Return: 0 or a negative errno.
 */
static int read_user_file(const char *path, size_t max, char **out, size_t *len, struct mv_err *err)
{
	char *real = realpath(path, NULL);
	int ret;

	*out = NULL;
	*len = 0;
	if (!real)
		return mv_err_set(err, -errno, "%s: cannot open: %s", path, strerror(errno));
	ret = mv_read_file(real, max, out, len, err);
	free(real);
	return ret;
}

/*
 * load_key() - reads a PEM public key (the managed key)
 * @path: in: the file
 * @out: out: the key
 * @err: out: the message on failure
 *
 * Return: 0, a read error or -EINVAL.
 */
static int load_key(const char *path, EVP_PKEY **out, struct mv_err *err)
{
	char *pem = NULL;
	size_t len = 0;
	BIO *bio = NULL;
	int ret;

	*out = NULL;
	ret = read_user_file(path, MAX_KEY_FILE, &pem, &len, err);
	if (ret)
		goto out;
	bio = BIO_new_mem_buf(pem, (int)len);
	if (bio)
		*out = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	if (!*out)
		ret = mv_err_set(err, -EINVAL, "%s: not a PEM public key", path);
out:
	BIO_free(bio);
	free(pem);
	return ret;
}

/*
 * load_artifact() - the artifact: a file (read and hashed) or "sha256:HEX"
 * @input: in: the positional argument
 * @in: out: in->data and in->artifact
 * @err: out: the message on failure
 *
 * Return: 0, a read error, -EINVAL (a malformed digest) or -ENOMEM.
 */
static int load_artifact(const char *input, struct inputs *in, struct mv_err *err)
{
	struct ss_artifact *a = &in->artifact;
	size_t len = 0;
	int ret;

	if (!strncmp(input, "sha256:", 7)) {
		if (strlen(input + 7) != 64 || mv_hex_decode(input + 7, a->sha256, 32) != 32)
			return mv_err_set(err, -EINVAL, "%s: not sha256: and 64 hex digits", input);
		return 0;
	}
	ret = read_user_file(input, MAX_ARTIFACT, &in->data, &len, err);
	if (ret)
		return ret;
	if (!EVP_Digest(in->data, len, a->sha256, NULL, EVP_sha256(), NULL))
		return mv_err_set(err, -ENOMEM, "%s: cannot hash", input);
	a->data = (const uint8_t *)in->data;
	a->len = len;
	return 0;
}

/*
 * load_inputs() - loads the root, bundle, key and artifact
 * @a: in: the arguments
 * @in: out: what they name
 * @err: out: the message on failure
 *
 * Return: 0 or a negative errno.
 */
static int load_inputs(const struct args *a, struct inputs *in, struct mv_err *err)
{
	char root_path[4096], *json = NULL;
	const char *shared = getenv("MODELFS_SHARED");
	size_t len = 0;
	int ret;

	if (!a->root) {
		snprintf(root_path, sizeof(root_path), "%s%s", shared ? shared : "../shared",
		         DEFAULT_ROOT);
	}
	ret = ss_root_load(a->root ? a->root : root_path, &in->root, err);
	if (!ret)
		ret = read_user_file(a->bundle, SS_MAX_JSON, &json, &len, err);
	if (!ret)
		ret = ss_bundle_parse(a->bundle, json, len, &in->bundle, err);
	if (!ret && a->key)
		ret = load_key(a->key, &in->key, err);
	if (!ret)
		ret = load_artifact(a->input, in, err);
	free(json);
	return ret;
}

int main(int argc, char **argv)
{
	struct ss_result *res = NULL;
	struct inputs in = {0};
	struct mv_err err = {0};
	struct ss_policy policy;
	struct args a;
	int ret;

	ret = parse_args(argc, argv, &a);
	if (ret)
		return ret;
	ret = load_inputs(&a, &in, &err);
	if (!ret) {
		policy =
		    (struct ss_policy){.identity = a.identity, .issuer = a.issuer, .key = in.key};
		res = calloc(1, sizeof(*res));
		ret = res ? ss_verify(in.bundle, in.root, &policy, &in.artifact,
		                      (int64_t)time(NULL), res, &err)
		          : mv_err_set(&err, -ENOMEM, "out of memory");
	}
	if (ret)
		fprintf(stderr, "ss_client: %s\n", err.msg[0] ? err.msg : strerror(-ret));
	else
		printf("OK: %s\n", a.key ? a.key : res->id.san);
	free(res);
	free(in.data);
	EVP_PKEY_free(in.key);
	ss_bundle_free(in.bundle);
	ss_root_free(in.root);
	return ret ? 1 : 0;
}
