// SPDX-License-Identifier: Apache-2.0
/*
 * cmd_inspect.c - `modelfs inspect [--json] MODEL`: show what a model.sig
 * says - signer, provenance, and per file its size, format and digests -
 * WITHOUT checking it against any trust input. Inspection answers "what
 * does this signature claim?"; `modelfs verify` answers "is it true?".
 *
 * The bundle's structure is checked here and the statement goes through the
 * same strict parser as verification (mv_statement_parse), so what is shown
 * is exactly what a verifier would act on. Formats come from the mount's
 * content detector (mfs_format_detect), judged by bytes, never by name.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/x509.h>

#include "cli.h"
#include "fs.h"

#define SNIFF_BYTES 4096

/* The signer as the bundle names it (not verified). */
struct signer_info {
	char kind[32];    /* "key", "key (pre-1.1 rawBytes)", "certificate" */
	char detail[512]; /* hint or subject */
};

/* What one file looks like on disk now. */
struct file_info {
	bool present;
	uint64_t size;
	const char *format;
	bool packed;          /* a packed copy is in .modelfs/packed */
	uint64_t packed_size; /* its size */
};

/* Reading the plain bytes of a packed copy (unverified: inspect checks nothing). */
struct packed_reader {
	int fd;
	struct mv_zpack *z;
	uint8_t *frame; /* the last frame decompressed */
	uint32_t idx;
	bool have;
};

/* Fills @si from what the bundle claims (mv_sig_inspect checks no trust). */
static void describe_signer(const struct mv_manifest *m, struct signer_info *si)
{
	const struct mv_signer *sg = &m->signer;

	if (sg->is_keyless) {
		snprintf(si->kind, sizeof(si->kind), "keyless");
		snprintf(si->detail, sizeof(si->detail), "%s (issuer %s)", sg->identity,
		         sg->issuer);
	} else if (sg->is_certificate) {
		snprintf(si->kind, sizeof(si->kind), "certificate");
		snprintf(si->detail, sizeof(si->detail), "%s",
		         sg->subject ? sg->subject : "(no subject)");
	} else {
		snprintf(si->kind, sizeof(si->kind), "%s",
		         m->legacy_key_material ? "key (pre-1.1 rawBytes)" : "key");
		snprintf(si->detail, sizeof(si->detail), "%s",
		         sg->hint[0] ? sg->hint : "(unknown)");
	}
}

/* mfs_pread_fn over the frames of a packed copy, one frame kept. */
static ssize_t packed_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
	struct packed_reader *pr = ctx;
	const struct mv_zpack *z = pr->z;
	size_t done = 0;

	while (done < len && off + done < z->data_size) {
		uint32_t idx = (uint32_t)((off + done) / z->frame_size);
		size_t within = (size_t)((off + done) % z->frame_size), n;

		if (!pr->have || pr->idx != idx) {
			pr->have = false;
			if (mv_zpack_read_frame(z, pr->fd, idx, pr->frame, "packed", NULL))
				return -EIO;
			pr->have = true;
			pr->idx = idx;
		}
		n = mv_zpack_frame_len(z, idx) - within;
		n = n < len - done ? n : len - done;
		memcpy((uint8_t *)buf + done, pr->frame + within, n);
		done += n;
	}
	return (ssize_t)done;
}

/* Size and content format of the packed copy of @r, if there is one. */
static void packed_info(const char *model, const struct mv_resource *r, struct file_info *fi)
{
	char path[PATH_MAX];
	struct packed_reader pr = {.fd = -1};
	enum mfs_format fmt;
	struct stat st;

	if (!r->has_merkle || mv_zpack_path(model, r, path, sizeof(path)))
		return;
	pr.fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (pr.fd < 0)
		return;
	if (fstat(pr.fd, &st) == 0 && S_ISREG(st.st_mode)) {
		fi->packed = true;
		fi->packed_size = (uint64_t)st.st_size;
	}
	if (fi->packed && !fi->present) {
		fi->format = "unreadable (packed copy damaged)";
		if (!mv_zpack_open(pr.fd, path, r->merkle.params.data_size,
		                   r->merkle.params.block_size, &pr.z, NULL) &&
		    (pr.frame = malloc(pr.z->frame_size ? pr.z->frame_size : 1)) &&
		    !mfs_format_detect(packed_pread, &pr, pr.z->data_size, &fmt))
			fi->format = mfs_format_name(fmt);
	}
	free(pr.frame);
	mv_zpack_free(pr.z);
	close(pr.fd);
}

/* "plain", "packed (ratio x.xx)" or both; "missing" if neither is there. */
static void stored_as(const struct mv_resource *r, const struct file_info *fi, char *out,
                      size_t len)
{
	uint64_t size = r->has_merkle ? r->merkle.params.data_size : fi->size;
	double ratio = fi->packed_size ? (double)size / (double)fi->packed_size : 0.0;

	if (fi->packed && fi->present)
		snprintf(out, len, "plain + packed (ratio %.2f)", ratio);
	else if (fi->packed)
		snprintf(out, len, "packed (ratio %.2f)", ratio);
	else
		snprintf(out, len, "%s", fi->present ? "plain" : "missing");
}

static void file_info(const char *model, bool single, const struct mv_resource *r,
                      struct file_info *fi)
{
	const char *name = r->name;
	enum mfs_format fmt;
	struct stat st;
	char *path = NULL;
	int fd = -1;

	memset(fi, 0, sizeof(*fi));
	fi->format = "missing";
	if (single || strcmp(name, ".") == 0)
		path = strdup(model);
	else if (asprintf(&path, "%s/%s", model, name) < 0)
		path = NULL;
	if (path)
		fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	free(path);
	if (fd < 0) {
		if (!single)
			packed_info(model, r, fi);
		return;
	}
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		fi->present = true;
		fi->size = (uint64_t)st.st_size;
		fi->format = mfs_format_detect(mfs_fd_pread, &fd, fi->size, &fmt)
		                 ? "unreadable"
		                 : mfs_format_name(fmt);
	} else {
		fi->format = "not a regular file";
	}
	close(fd);
	if (!single)
		packed_info(model, r, fi);
}

/* Hex of a resource's fs-verity digest as `fsverity digest` prints it. */
static void merkle_strings(const struct mv_resource *r, char *digest, char *salt)
{
	const struct mv_tree_params *p = &r->merkle.params;
	char hex[2 * MV_MAX_DIGEST_SIZE + 1];

	mv_hex_encode(r->merkle.digest, mv_hash_digest_size(p->alg), hex);
	sprintf(digest, "%s:%s", mv_hash_name(p->alg), hex);
	mv_hex_encode(p->salt, p->salt_size, salt);
}

static void print_prov_text(const struct mv_provenance *p)
{
	const struct {
		const char *label, *value;
	} f[] = {
	    {"name", p->name},
	    {"revision", p->revision},
	    {"source", p->source},
	    {"base model", p->base_model},
	    {"license", p->license},
	    {"signed at", p->signed_at},
	    {"tool version", p->tool_version},
	};

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		if (f[i].value)
			printf("  %-13s %s\n", f[i].label, f[i].value);
	for (size_t i = 0; i < p->n_datasets; i++)
		printf("  %-13s %s\n", "dataset", p->datasets[i]);
	for (size_t i = 0; i < p->n_props; i++)
		printf("  %-13s %s=%s\n", "property", p->props[i].key, p->props[i].value);
}

static void print_text(const char *model, bool single, const char *sig_path,
                       const struct mv_manifest *m, const struct signer_info *si)
{
	char hex[65], digest[2 * MV_MAX_DIGEST_SIZE + 16], salt[2 * MV_MAX_SALT_SIZE + 1];
	char stored[64];

	mv_hex_encode(m->subject_sha256, 32, hex);
	printf("signature:  %s (not verified; run `modelfs verify` to check it)\n", sig_path);
	printf("subject:    %s sha256:%s\n", m->subject_name, hex);
	printf("signer:     %s %s\n", si->kind, si->detail);
	printf("merkle:     %s\n",
	       m->has_extension ? "yes (modelfs extension)" : "no (plain OMS signature)");
	if (m->has_extension) {
		printf("provenance:\n");
		print_prov_text(&m->prov);
	}
	printf("ignore paths:");
	for (size_t i = 0; i < m->n_ignore; i++)
		printf(" %s", m->ignore_paths[i]);
	printf("%s\nfiles: %zu\n", m->n_ignore ? "" : " (none)", m->n_res);
	for (size_t i = 0; i < m->n_res; i++) {
		const struct mv_resource *r = &m->res[i];
		struct file_info fi;

		file_info(model, single, r, &fi);
		stored_as(r, &fi, stored, sizeof(stored));
		mv_hex_encode(r->sha256, 32, hex);
		printf("  %s\n    size %llu, format %s\n    stored as: %s\n    sha256:%s\n",
		       r->name,
		       (unsigned long long)(r->has_merkle ? r->merkle.params.data_size : fi.size),
		       fi.format, stored, hex);
		if (!r->has_merkle)
			continue;
		merkle_strings(r, digest, salt);
		printf("    fs-verity %s (block %u, salt %s)\n", digest,
		       r->merkle.params.block_size, salt[0] ? salt : "none");
	}
}

static cJSON *prov_json(const struct mv_provenance *p)
{
	cJSON *o = cJSON_CreateObject(), *a, *props;
	const struct {
		const char *key, *value;
	} f[] = {
	    {"name", p->name},
	    {"revision", p->revision},
	    {"source", p->source},
	    {"base_model", p->base_model},
	    {"license", p->license},
	    {"signed_at", p->signed_at},
	    {"tool_version", p->tool_version},
	};

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		if (f[i].value)
			cJSON_AddStringToObject(o, f[i].key, f[i].value);
	a = cJSON_AddArrayToObject(o, "datasets");
	for (size_t i = 0; i < p->n_datasets; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(p->datasets[i]));
	props = cJSON_AddObjectToObject(o, "properties");
	for (size_t i = 0; i < p->n_props; i++)
		cJSON_AddStringToObject(props, p->props[i].key, p->props[i].value);
	return o;
}

static cJSON *file_json(const char *model, bool single, const struct mv_resource *r)
{
	char hex[65], digest[2 * MV_MAX_DIGEST_SIZE + 16], salt[2 * MV_MAX_SALT_SIZE + 1];
	cJSON *o = cJSON_CreateObject();
	struct file_info fi;

	file_info(model, single, r, &fi);
	mv_hex_encode(r->sha256, 32, hex);
	cJSON_AddStringToObject(o, "name", r->name);
	cJSON_AddNumberToObject(o, "size",
	                        (double)(r->has_merkle ? r->merkle.params.data_size : fi.size));
	cJSON_AddBoolToObject(o, "present", fi.present);
	cJSON_AddStringToObject(o, "format", fi.format);
	cJSON_AddStringToObject(o, "stored_as",
	                        fi.packed ? (fi.present ? "plain+packed" : "packed")
	                                  : (fi.present ? "plain" : "missing"));
	if (fi.packed) {
		double size = (double)(r->has_merkle ? r->merkle.params.data_size : fi.size);

		cJSON_AddNumberToObject(o, "packed_size", (double)fi.packed_size);
		cJSON_AddNumberToObject(o, "ratio",
		                        fi.packed_size ? size / (double)fi.packed_size : 0.0);
	}
	cJSON_AddStringToObject(o, "sha256", hex);
	if (r->has_merkle) {
		merkle_strings(r, digest, salt);
		cJSON_AddStringToObject(o, "fsverity_digest", digest);
		cJSON_AddStringToObject(o, "hash_algorithm", mv_hash_name(r->merkle.params.alg));
		cJSON_AddNumberToObject(o, "block_size", r->merkle.params.block_size);
		cJSON_AddStringToObject(o, "salt", salt);
	}
	return o;
}

static int print_json(const char *model, bool single, const char *sig_path,
                      const struct mv_manifest *m, const struct signer_info *si,
                      const struct mv_attestation_list *atts)
{
	cJSON *o = cJSON_CreateObject(), *s, *a;
	char hex[65], *text;

	cJSON_AddStringToObject(o, "signature", sig_path);
	cJSON_AddBoolToObject(o, "verified", false);
	s = cJSON_AddObjectToObject(o, "subject");
	mv_hex_encode(m->subject_sha256, 32, hex);
	cJSON_AddStringToObject(s, "name", m->subject_name);
	cJSON_AddStringToObject(s, "sha256", hex);
	s = cJSON_AddObjectToObject(o, "signer");
	cJSON_AddStringToObject(s, "kind", si->kind);
	if (m->signer.is_keyless) {
		cJSON_AddStringToObject(s, "identity", m->signer.identity);
		cJSON_AddStringToObject(s, "issuer", m->signer.issuer);
	} else {
		cJSON_AddStringToObject(s, strcmp(si->kind, "certificate") ? "hint" : "subject",
		                        si->detail);
	}
	cJSON_AddBoolToObject(o, "merkle", m->has_extension);
	if (m->has_extension)
		cJSON_AddItemToObject(o, "provenance", prov_json(&m->prov));
	a = cJSON_AddArrayToObject(o, "ignore_paths");
	for (size_t i = 0; i < m->n_ignore; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(m->ignore_paths[i]));
	a = cJSON_AddArrayToObject(o, "files");
	for (size_t i = 0; i < m->n_res; i++)
		cJSON_AddItemToArray(a, file_json(model, single, &m->res[i]));
	cJSON_AddItemToObject(o, "attestations", cli_attestations_json(atts));
	text = cJSON_Print(o);
	cJSON_Delete(o);
	if (!text) {
		cli_error("inspect: out of memory");
		return EXIT_USAGE_IO;
	}
	printf("%s\n", text);
	cJSON_free(text);
	return EXIT_OK;
}

int cmd_inspect(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"signature", required_argument, NULL, 's'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *sig_opt = NULL, *model;
	struct mv_manifest *m = NULL;
	struct signer_info si = {{0}};
	struct mv_attestation_list atts = {0};
	struct mv_err err = {0};
	char *sig_path = NULL;
	struct stat st;
	bool as_json = false, single;
	int c, ret = EXIT_USAGE_IO;

	while ((c = getopt_long(argc, argv, "hj", opts, NULL)) != -1) {
		switch (c) {
		case 'j': as_json = true; break;
		case 's': sig_opt = optarg; break;
		case 'h': cli_usage("inspect"); return EXIT_OK;
		default: return cli_usage("inspect");
		}
	}
	if (optind + 1 != argc)
		return cli_usage("inspect");
	model = argv[optind];
	if (stat(model, &st) < 0) {
		cli_error("%s: %s", model, strerror(errno));
		return EXIT_USAGE_IO;
	}
	single = S_ISREG(st.st_mode);
	if (sig_opt)
		sig_path = strdup(sig_opt);
	else if (asprintf(&sig_path, single ? "%s.sig" : "%s/" MV_SIG_NAME, model) < 0)
		sig_path = NULL;
	if (!sig_path) {
		cli_error("inspect: out of memory");
		goto out;
	}
	if (mv_sig_inspect(sig_path, NULL, NULL, &m, &err)) {
		/* A malformed signature is a failed check (1), like in verify. */
		ret = cli_report(&err);
		if (err.code == -EINVAL)
			ret = EXIT_VERIFY;
		goto out;
	}
	describe_signer(m, &si);
	/* Attestations are listed, not verified: inspect takes no trust inputs. */
	if (!single && mv_attestations_load(model, m, NULL, &atts, &err)) {
		ret = cli_report(&err);
		goto out;
	}
	if (as_json) {
		ret = print_json(model, single, sig_path, m, &si, &atts);
	} else {
		print_text(model, single, sig_path, m, &si);
		printf("attestations: %zu%s\n", atts.n,
		       atts.n ? " (signatures not checked; `modelfs verify` checks them)" : "");
		cli_print_attestations(stdout, &atts);
		ret = EXIT_OK;
	}
out:
	mv_attestations_free(&atts);
	mv_manifest_free(m);
	free(sig_path);
	return ret;
}
