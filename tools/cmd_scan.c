// SPDX-License-Identifier: Apache-2.0
/*
 * cmd_scan.c - `modelfs scan`: classify pickle files without executing them.
 *
 * Every file (and, with -r, every regular file below a directory, symlinks
 * not followed) is opened with O_NOFOLLOW and read with pread; libfs's
 * scanner gives one result for the file and one per archive member. Output
 * is text, JSON or SARIF 2.1.0 (docs/scanner.md).
 *
 * Exit status: 1 if anything is unsafe; else 2 if any file could not be read
 * or is unscannable; else 0 (safe, suspicious and not-pickle).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "fs.h"

#define MAX_WALK_DEPTH 64
/* predicate type of scan --attest (docs/policy.md) */
#define SCAN_PREDICATE_TYPE "https://modelfs.dev/scan/v1"

enum out_fmt { OUT_TEXT, OUT_JSON, OUT_SARIF };

struct scan_run {
	enum out_fmt fmt;
	bool recurse;
	cJSON *results; /* JSON: array of results; SARIF: array of SARIF results */
	cJSON *errors;  /* JSON only */
	unsigned counts[MFS_VERDICT_UNSAFE + 1];
	unsigned files, nerrors;
	cJSON *attest; /* --attest: [{name, verdict}] of files below attest_root */
	const char *attest_root;
};

/* ------------------------------------------------------------------ output */

static void error_report(struct scan_run *run, const char *path, const char *why);

/*
 * A path as shown in every report is mv_name_printable_dup(path): file names
 * are untrusted bytes, and a newline or invalid UTF-8 in one must not forge
 * a line or break the JSON.
 */
static void error_out(struct scan_run *run, const char *raw, const char *why)
{
	char *path = mv_name_printable_dup(raw);

	if (!path) {
		run->nerrors++;
		cli_error("out of memory");
		return;
	}
	error_report(run, path, why);
	free(path);
}

static void error_report(struct scan_run *run, const char *path, const char *why)
{
	run->nerrors++;
	cli_error("%s: %s", path, why);
	if (run->fmt == OUT_JSON) {
		cJSON *e = cJSON_CreateObject();

		cJSON_AddStringToObject(e, "path", path);
		cJSON_AddStringToObject(e, "error", why);
		cJSON_AddItemToArray(run->errors, e);
	} else if (run->fmt == OUT_SARIF) {
		cJSON *r = cJSON_CreateObject();
		char msg[600];

		snprintf(msg, sizeof(msg), "%s: %s", path, why);
		cJSON_AddStringToObject(r, "ruleId", "MFS004");
		cJSON_AddStringToObject(r, "level", "error");
		cJSON_AddItemToObject(r, "message", cJSON_CreateObject());
		cJSON_AddStringToObject(cJSON_GetObjectItem(r, "message"), "text", msg);
		cJSON_AddItemToArray(run->results, r);
	}
}

static void text_item(const char *path, const struct mfs_scan_item *it, const char *indent)
{
	printf("%s%s%s%s: %s [%s]\n", indent, path, it->member ? ":" : "",
	       it->member ? it->member : "", mfs_verdict_name(it->verdict), it->kind);
	for (size_t g = 0; g < it->nglobals; g++)
		printf("%s  global %s.%s@%llu (%s)\n", indent, it->globals[g].module,
		       it->globals[g].name, (unsigned long long)it->globals[g].offset,
		       mfs_verdict_name(it->globals[g].cls));
	for (size_t r = 0; r < it->nreasons; r++)
		printf("%s  reason: %s\n", indent, it->reasons[r]);
}

static void text_report(const char *path, const struct mfs_scan_report *rep)
{
	size_t quiet = 0;

	text_item(path, &rep->items[0], "");
	for (size_t i = 1; i < rep->nitems; i++) {
		const struct mfs_scan_item *it = &rep->items[i];

		/* tensor storages and other plain data: counted, not listed */
		if (it->verdict == MFS_VERDICT_NOT_PICKLE && !it->nreasons) {
			quiet++;
			continue;
		}
		text_item(path, it, "  ");
	}
	if (quiet)
		printf("  (%zu other member%s hold%s no pickle)\n", quiet, quiet == 1 ? "" : "s",
		       quiet == 1 ? "s" : "");
}

static cJSON *json_item(const char *path, const struct mfs_scan_item *it)
{
	cJSON *o = cJSON_CreateObject(), *gl = cJSON_CreateArray(), *rs = cJSON_CreateArray();

	cJSON_AddStringToObject(o, "path", path);
	if (it->member)
		cJSON_AddStringToObject(o, "member", it->member);
	else
		cJSON_AddNullToObject(o, "member");
	cJSON_AddStringToObject(o, "kind", it->kind);
	cJSON_AddStringToObject(o, "verdict", mfs_verdict_name(it->verdict));
	for (size_t g = 0; g < it->nglobals; g++) {
		cJSON *j = cJSON_CreateObject();
		char *full;

		cJSON_AddStringToObject(j, "module", it->globals[g].module);
		cJSON_AddStringToObject(j, "name", it->globals[g].name);
		if (asprintf(&full, "%s.%s@%llu", it->globals[g].module, it->globals[g].name,
		             (unsigned long long)it->globals[g].offset) >= 0) {
			cJSON_AddStringToObject(j, "global", full);
			free(full);
		}
		cJSON_AddNumberToObject(j, "offset", (double)it->globals[g].offset);
		cJSON_AddStringToObject(j, "class", mfs_verdict_name(it->globals[g].cls));
		cJSON_AddItemToArray(gl, j);
	}
	for (size_t r = 0; r < it->nreasons; r++)
		cJSON_AddItemToArray(rs, cJSON_CreateString(it->reasons[r]));
	cJSON_AddItemToObject(o, "globals", gl);
	cJSON_AddItemToObject(o, "reasons", rs);
	return o;
}

/* Percent-encodes @path as a relative URI reference (RFC 3986). */
static char *uri_of(const char *path)
{
	static const char hex[] = "0123456789ABCDEF";
	char *u = malloc(3 * strlen(path) + 1), *o = u;

	if (!u)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("-._~/", *p)) {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = 0;
	return u;
}

static const char *sarif_rule(enum mfs_verdict v, const char **level)
{
	switch (v) {
	case MFS_VERDICT_UNSAFE: *level = "error"; return "MFS001";
	case MFS_VERDICT_SUSPICIOUS: *level = "warning"; return "MFS002";
	case MFS_VERDICT_UNSCANNABLE: *level = "error"; return "MFS003";
	default: return NULL;
	}
}

/* One SARIF result per file or member that is not safe. */
static void sarif_item(struct scan_run *run, const char *path, const struct mfs_scan_item *it)
{
	const char *level = NULL, *rule = sarif_rule(it->verdict, &level);
	cJSON *r, *msg, *loc, *phys, *art, *props;
	char *uri, text[1024];
	size_t o;

	if (!rule)
		return;
	o = (size_t)snprintf(text, sizeof(text), "%s%s%s: %s", path, it->member ? ":" : "",
	                     it->member ? it->member : "", mfs_verdict_name(it->verdict));
	for (size_t i = 0; i < it->nreasons && o < sizeof(text); i++)
		o += (size_t)snprintf(text + o, sizeof(text) - o, "%s %s", i ? ";" : " -",
		                      it->reasons[i]);
	r = cJSON_CreateObject();
	cJSON_AddStringToObject(r, "ruleId", rule);
	cJSON_AddStringToObject(r, "level", level);
	msg = cJSON_AddObjectToObject(r, "message");
	cJSON_AddStringToObject(msg, "text", text);
	loc = cJSON_CreateObject();
	phys = cJSON_AddObjectToObject(loc, "physicalLocation");
	art = cJSON_AddObjectToObject(phys, "artifactLocation");
	uri = uri_of(path);
	cJSON_AddStringToObject(art, "uri", uri ? uri : "");
	free(uri);
	cJSON_AddItemToObject(r, "locations", cJSON_CreateArray());
	cJSON_AddItemToArray(cJSON_GetObjectItem(r, "locations"), loc);
	props = cJSON_AddObjectToObject(r, "properties");
	if (it->member)
		cJSON_AddStringToObject(props, "member", it->member);
	cJSON_AddStringToObject(props, "kind", it->kind);
	cJSON_AddStringToObject(props, "verdict", mfs_verdict_name(it->verdict));
	cJSON_AddItemToArray(run->results, r);
}

/* --attest: records a file's verdict by its name in the model (not .modelfs/). */
static void attest_item(struct scan_run *run, const char *path, const struct mfs_scan_report *rep)
{
	size_t n = strlen(run->attest_root);
	const char *rel = path + n;
	cJSON *o;

	if (strncmp(path, run->attest_root, n) != 0)
		return;
	while (*rel == '/')
		rel++;
	if (strncmp(rel, MV_HIDDEN_DIR "/", sizeof(MV_HIDDEN_DIR)) == 0 || !*rel ||
	    strcmp(rel, MV_SIG_NAME) == 0)
		return;
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "name", rel);
	cJSON_AddStringToObject(o, "verdict", mfs_verdict_name(rep->items[0].verdict));
	cJSON_AddItemToArray(run->attest, o);
}

/**
 * attest_out() - sign the verdicts as an attestation of the model (scan --attest)
 * @run: in/out: the finished walk; its verdict list is handed over and cleared
 * @key: in: path of the scanner's private key
 *
 * Return: an exit status (cli_attest_sign()).
 */
static int attest_out(struct scan_run *run, const char *key)
{
	cJSON *pred = cJSON_CreateObject(), *sc = cJSON_AddObjectToObject(pred, "scanner");
	struct cli_attest_req req = {
	    .model = run->attest_root, .key_path = key, .type = SCAN_PREDICATE_TYPE};
	char *text;
	int ret;

	cJSON_AddStringToObject(sc, "name", "modelfs scan");
	cJSON_AddStringToObject(sc, "version", MV_VERSION);
	cJSON_AddItemToObject(pred, "files", run->attest);
	run->attest = NULL;
	cJSON_AddNumberToObject(pred, "errors", run->nerrors);
	text = cJSON_PrintUnformatted(pred);
	cJSON_Delete(pred);
	if (!text) {
		cli_error("scan: out of memory");
		return EXIT_USAGE_IO;
	}
	fflush(stdout);
	req.predicate = text;
	req.pred_len = strlen(text);
	ret = cli_attest_sign(&req);
	free(text);
	return ret;
}

static void report_out(struct scan_run *run, const char *raw, const struct mfs_scan_report *rep)
{
	char *path;

	run->files++;
	run->counts[rep->items[0].verdict]++;
	if (run->attest)
		attest_item(run, raw, rep);
	path = mv_name_printable_dup(raw);
	if (!path) {
		error_report(run, "(a file)", "out of memory");
		return;
	}
	if (run->fmt == OUT_TEXT) {
		text_report(path, rep);
		free(path);
		return;
	}
	for (size_t i = 0; i < rep->nitems; i++) {
		if (run->fmt != OUT_JSON) {
			sarif_item(run, path, &rep->items[i]);
			continue;
		}
		cJSON *o = json_item(path, &rep->items[i]);

		/* the whole file: what the mount makes of it (the same report) */
		if (i == 0) {
			cJSON_AddStringToObject(o, "format", mfs_format_name(rep->format));
			cJSON_AddBoolToObject(o, "holds_pickle", rep->pickle);
			cJSON_AddBoolToObject(o, "polyglot", rep->polyglot);
		}
		cJSON_AddItemToArray(run->results, o);
	}
	free(path);
}

static cJSON *sarif_rules(void)
{
	static const char *const rules[][3] = {
	    {"MFS001", "unsafe-pickle",
	     "A pickle references a global outside the allowlist, or a pickle or archive is "
	     "malformed in a way that can hide one."},
	    {"MFS002", "suspicious-pickle",
	     "A pickle references a known benign data type outside the allowlist."},
	    {"MFS003", "unscannable",
	     "The file or member cannot be read (encrypted, 7z, unsupported compression)."},
	    {"MFS004", "scan-error", "The file could not be read."},
	};
	cJSON *arr = cJSON_CreateArray();

	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
		cJSON *r = cJSON_CreateObject();

		cJSON_AddStringToObject(r, "id", rules[i][0]);
		cJSON_AddStringToObject(r, "name", rules[i][1]);
		cJSON_AddStringToObject(cJSON_AddObjectToObject(r, "shortDescription"), "text",
		                        rules[i][2]);
		cJSON_AddItemToArray(arr, r);
	}
	return arr;
}

static void print_json(cJSON *doc)
{
	char *s = cJSON_Print(doc);

	if (s) {
		puts(s);
		free(s);
	}
	cJSON_Delete(doc);
}

static void finish(struct scan_run *run)
{
	cJSON *doc = cJSON_CreateObject();

	if (run->fmt == OUT_JSON) {
		cJSON *sum = cJSON_CreateObject();

		cJSON_AddNumberToObject(doc, "version", 1);
		cJSON_AddItemToObject(doc, "results", run->results);
		cJSON_AddItemToObject(doc, "errors", run->errors);
		cJSON_AddNumberToObject(sum, "files", run->files);
		for (int v = 0; v <= MFS_VERDICT_UNSAFE; v++)
			cJSON_AddNumberToObject(sum, mfs_verdict_name(v), run->counts[v]);
		cJSON_AddNumberToObject(sum, "errors", run->nerrors);
		cJSON_AddItemToObject(doc, "summary", sum);
	} else {
		cJSON *runs = cJSON_AddArrayToObject(doc, "runs");
		cJSON *r = cJSON_CreateObject(), *drv;

		cJSON_AddStringToObject(doc, "$schema",
		                        "https://json.schemastore.org/sarif-2.1.0.json");
		cJSON_AddStringToObject(doc, "version", "2.1.0");
		drv = cJSON_AddObjectToObject(cJSON_AddObjectToObject(r, "tool"), "driver");
		cJSON_AddStringToObject(drv, "name", "modelfs-scan");
		cJSON_AddStringToObject(drv, "version", MV_VERSION);
		cJSON_AddItemToObject(drv, "rules", sarif_rules());
		cJSON_AddItemToObject(r, "results", run->results);
		cJSON_AddItemToArray(runs, r);
	}
	print_json(doc);
}

/* ------------------------------------------------------------------- walk */

static void scan_path(struct scan_run *run, int dirfd, const char *name, const char *path,
                      int depth);

/* Scans the regular file open as @fd. */
static void scan_fd(struct scan_run *run, int fd, const struct stat *st, const char *path)
{
	struct mfs_scan_report rep;
	int rc = mfs_scan(mfs_fd_pread, &fd, (uint64_t)st->st_size, &rep);

	if (rc) {
		error_out(run, path, strerror(-rc));
		return;
	}
	report_out(run, path, &rep);
	mfs_scan_report_free(&rep);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Scans the directory open as @fd, in name order, symlinks not followed. */
static void scan_dir(struct scan_run *run, int fd, const char *path, int depth)
{
	DIR *d = fdopendir(fd);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0;

	if (!d) {
		error_out(run, path, strerror(errno));
		close(fd);
		return;
	}
	while ((de = readdir(d))) {
		void *np;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		np = realloc(names, (n + 1) * sizeof(char *));
		if (!np || !(((char **)np)[n] = strdup(de->d_name))) {
			names = np ? np : names;
			error_out(run, path, "out of memory");
			break;
		}
		names = np;
		n++;
	}
	qsort(names, n, sizeof(char *), name_cmp);
	for (size_t i = 0; i < n; i++) {
		char *sub;

		if (asprintf(&sub, "%s%s%s", path, path[strlen(path) - 1] == '/' ? "" : "/",
		             names[i]) >= 0) {
			scan_path(run, dirfd(d), names[i], sub, depth + 1);
			free(sub);
		}
		free(names[i]);
	}
	free(names);
	closedir(d);
}

static void scan_path(struct scan_run *run, int dirfd, const char *name, const char *path,
                      int depth)
{
	struct stat st;
	int fd;

	if (depth > 0) {
		/* inside a walk: skip symlinks, devices, fifos and sockets silently */
		if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			error_out(run, path, strerror(errno));
			return;
		}
		if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
			return;
	}
	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		error_out(run, path,
		          errno == ELOOP ? "is a symlink (not followed)" : strerror(errno));
		return;
	}
	if (fstat(fd, &st) < 0) {
		error_out(run, path, strerror(errno));
		close(fd);
		return;
	}
	if (S_ISDIR(st.st_mode)) {
		if (!run->recurse)
			error_out(run, path, "is a directory (use -r)");
		else if (depth >= MAX_WALK_DEPTH)
			error_out(run, path, "directory tree too deep");
		else {
			scan_dir(run, fd, path, depth);
			return;
		}
		close(fd);
		return;
	}
	if (!S_ISREG(st.st_mode))
		error_out(run, path, "not a regular file");
	else
		scan_fd(run, fd, &st, path);
	close(fd);
}

int cmd_scan(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"format", required_argument, NULL, 'F'}, {"recursive", no_argument, NULL, 'r'},
	    {"attest", no_argument, NULL, 'A'},       {"key", required_argument, NULL, 'k'},
	    {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
	};
	struct scan_run run = {.fmt = OUT_TEXT};
	const char *key = NULL;
	bool attest = false;
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "rh", opts, NULL)) != -1) {
		switch (c) {
		case 'F':
			if (strcmp(optarg, "text") == 0)
				run.fmt = OUT_TEXT;
			else if (strcmp(optarg, "json") == 0)
				run.fmt = OUT_JSON;
			else if (strcmp(optarg, "sarif") == 0)
				run.fmt = OUT_SARIF;
			else
				return cli_usage("scan");
			break;
		case 'r': run.recurse = true; break;
		case 'A': attest = true; break;
		case 'k': key = optarg; break;
		case 'h':
			printf("usage: modelfs %s\n"
			       "Exit status: 0 safe, suspicious or not a pickle; 1 unsafe; "
			       "2 unscannable or error.\n",
			       cli_find("scan")->usage);
			return EXIT_OK;
		default: return cli_usage("scan");
		}
	}
	if (optind >= argc)
		return cli_usage("scan");
	/* --attest --key K MODEL_DIR: one signed model folder, walked whole. */
	if (attest != !!key || (attest && optind + 1 != argc))
		return cli_usage("scan");
	if (attest) {
		run.recurse = true;
		run.attest_root = argv[optind];
		run.attest = cJSON_CreateArray();
	}
	run.results = cJSON_CreateArray();
	run.errors = cJSON_CreateArray();
	for (int i = optind; i < argc; i++)
		scan_path(&run, AT_FDCWD, argv[i], argv[i], 0);
	if (run.fmt != OUT_TEXT) {
		finish(&run);
		if (run.fmt == OUT_SARIF)
			cJSON_Delete(run.errors);
	} else {
		cJSON_Delete(run.results);
		cJSON_Delete(run.errors);
	}
	fflush(stdout);
	if (run.attest) {
		ret = attest_out(&run, key);
		if (ret)
			return ret;
	}
	if (run.counts[MFS_VERDICT_UNSAFE])
		return EXIT_VERIFY;
	if (run.nerrors || run.counts[MFS_VERDICT_UNSCANNABLE])
		return EXIT_USAGE_IO;
	return EXIT_OK;
}
