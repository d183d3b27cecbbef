// SPDX-License-Identifier: Apache-2.0
/*
 * cmd_transcode.c - `modelfs transcode`: torch pickle checkpoints to
 * safetensors, without executing them (docs/transcode.md).
 *
 *   modelfs transcode IN OUT          one checkpoint; OUT may be a folder
 *   modelfs transcode INDEX.json OUT  a sharded checkpoint, by its index
 *   modelfs transcode IN_DIR OUT_DIR  a folder holding one *.bin.index.json
 *
 * Each input is scanned first: only a "safe" verdict is transcoded. Every
 * output is written to a temp file in its folder, fsync'd and renamed; when
 * a sharded run fails, the shards it already wrote are removed.
 *
 * Exit status: 0 done; 1 unsafe or suspicious input, or a malformed
 * checkpoint; 2 usage, I/O, unscannable or unsupported input.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "fs.h"

#define INDEX_MAX (64u << 20)

struct tx_opts {
	bool quiet;
	bool no_sync; /* skip fsync: atomic but not crash-durable */
};

/* What one transcoded file contributed (for a sharded index). */
struct tx_done {
	uint64_t data_bytes;
	size_t tensors;
};

/* Exit status for a verdict that is not "safe". */
static int verdict_status(enum mfs_verdict v)
{
	return v == MFS_VERDICT_UNSAFE || v == MFS_VERDICT_SUSPICIOUS ? EXIT_VERIFY : EXIT_USAGE_IO;
}

/*
 * Scans the open checkpoint; prints why it is refused, one line per reason.
 * Return: EXIT_OK when its verdict is safe.
 */
static int check_verdict(const char *in, int fd, uint64_t size)
{
	struct mfs_scan_report rep;
	enum mfs_verdict v;
	int rc = mfs_scan(mfs_fd_pread, &fd, size, &rep);

	if (rc) {
		cli_error("%s: scan failed: %s", in, strerror(-rc));
		return EXIT_USAGE_IO;
	}
	v = rep.items[0].verdict;
	if (v == MFS_VERDICT_SAFE) {
		mfs_scan_report_free(&rep);
		return EXIT_OK;
	}
	if (v == MFS_VERDICT_NOT_PICKLE)
		cli_error("%s: refused: not a pickle checkpoint (%s)", in, rep.items[0].kind);
	else
		cli_error("%s: refused: scan verdict is %s", in, mfs_verdict_name(v));
	for (size_t i = 0; i < rep.nitems; i++)
		for (size_t j = 0; j < rep.items[i].nreasons; j++)
			cli_error("%s%s%s: %s", in, rep.items[i].member ? ": " : "",
			          rep.items[i].member ? rep.items[i].member : "",
			          rep.items[i].reasons[j]);
	mfs_scan_report_free(&rep);
	return verdict_status(v);
}

/* Transcodes one checkpoint file @in into @out. */
static int transcode_one(const char *in, const char *out, const struct tx_opts *o,
                         struct tx_done *done)
{
	struct mfs_tx_plan *plan = NULL;
	struct mv_err err = {0};
	struct stat st;
	int fd, rc;

	fd = open(in, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		cli_error("%s: %s", in, strerror(errno));
		return EXIT_USAGE_IO;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		cli_error("%s: not a regular file", in);
		rc = EXIT_USAGE_IO;
		goto out;
	}
	if ((rc = check_verdict(in, fd, (uint64_t)st.st_size)))
		goto out;
	if (mfs_tx_plan_new(mfs_fd_pread, &fd, (uint64_t)st.st_size, in, &plan, &err) ||
	    mfs_tx_write_path(plan, mfs_fd_pread, &fd, fd, out, !o->no_sync, &err)) {
		rc = cli_report(&err);
		goto out;
	}
	done->data_bytes = mfs_tx_plan_data_size(plan);
	done->tensors = mfs_tx_plan_count(plan);
	if (!o->quiet)
		printf("%s -> %s: %zu tensors, %" PRIu64 " bytes\n", in, out, done->tensors,
		       mfs_tx_plan_size(plan));
	rc = EXIT_OK;
out:
	mfs_tx_plan_free(plan);
	close(fd);
	return rc;
}

static bool is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* "dir/name", malloc'd; NULL on no memory (reported). */
static char *join(const char *dir, const char *name)
{
	char *s;

	if (asprintf(&s, "%s/%s", dir, name) < 0) {
		cli_error("out of memory");
		return NULL;
	}
	return s;
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

/* The index's folder, malloc'd ("." when none). */
static char *dir_of(const char *path)
{
	const char *s = strrchr(path, '/');

	if (!s)
		return strdup(".");
	return s == path ? strdup("/") : strndup(path, (size_t)(s - path));
}

/* Does the file start (after blanks) with '{'? Indexes are told by content. */
static bool looks_like_json(const char *path)
{
	char buf[64];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	for (ssize_t i = 0; i < n; i++) {
		if (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' || buf[i] == '\r')
			continue;
		return buf[i] == '{';
	}
	return false;
}

/* The one "*.bin.index.json" in @dir, malloc'd, or NULL (reported). */
static char *find_index(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char *found = NULL;
	unsigned n = 0;

	if (!d) {
		cli_error("%s: %s", dir, strerror(errno));
		return NULL;
	}
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);

		if (l > 15 && strcmp(de->d_name + l - 15, ".bin.index.json") == 0 && !n++)
			found = join(dir, de->d_name);
	}
	closedir(d);
	if (n != 1) {
		cli_error("%s: expected one *.bin.index.json, found %u", dir, n);
		free(found);
		return NULL;
	}
	return found;
}

/* The distinct shard names of a weight_map, in order of first appearance. */
static int shard_list(const char *index, cJSON *wm, const char ***out, size_t *n)
{
	const cJSON *it;

	*out = NULL;
	*n = 0;
	cJSON_ArrayForEach(it, wm)
	{
		bool dup = false;
		void *np;

		if (!cJSON_IsString(it)) {
			cli_error("%s: weight_map value of '%s' is not a string", index,
			          it->string);
			return EXIT_USAGE_IO;
		}
		for (size_t i = 0; i < *n && !dup; i++)
			dup = strcmp((*out)[i], it->valuestring) == 0;
		if (dup)
			continue;
		np = realloc(*out, (*n + 1) * sizeof(**out));
		if (!np) {
			cli_error("out of memory");
			return EXIT_USAGE_IO;
		}
		*out = np;
		(*out)[(*n)++] = it->valuestring;
	}
	return EXIT_OK;
}

/* Removes the outputs of a failed sharded run. */
static void remove_outputs(char **paths, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unlink(paths[i]);
		free(paths[i]);
	}
}

/* Transcodes each shard of @index into @outdir, then writes the new index. */
static int transcode_sharded(const char *index, const char *outdir, const struct tx_opts *o)
{
	char *text = NULL, *newidx = NULL, *indir = dir_of(index), *outidx = NULL, *nm = NULL;
	char **written = NULL;
	const char **shards = NULL;
	size_t len, nshards = 0, nwritten = 0;
	uint64_t total = 0;
	struct mv_err err = {0};
	cJSON *root = NULL;
	int rc;

	if (!indir || mv_read_file(index, INDEX_MAX, &text, &len, &err)) {
		rc = indir ? cli_report(&err) : EXIT_USAGE_IO;
		goto out;
	}
	root = cJSON_ParseWithLength(text, len);
	if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "weight_map"))) {
		cli_error("%s: not an index (no weight_map object)", index);
		rc = EXIT_USAGE_IO;
		goto out;
	}
	if ((rc = shard_list(index, cJSON_GetObjectItemCaseSensitive(root, "weight_map"), &shards,
	                     &nshards)))
		goto out;
	if (mkdir(outdir, 0755) < 0 && errno != EEXIST) {
		cli_error("%s: %s", outdir, strerror(errno));
		rc = EXIT_USAGE_IO;
		goto out;
	}
	/* the rewrite also refuses shard names that are paths */
	if (mfs_tx_index_rewrite(text, len, UINT64_MAX, &newidx, &err)) {
		cli_error("%s: %s", index, err.msg);
		rc = EXIT_USAGE_IO;
		goto out;
	}
	free(newidx);
	newidx = NULL;
	written = calloc(nshards ? nshards : 1, sizeof(*written));
	if (!written) {
		rc = EXIT_USAGE_IO;
		goto out;
	}
	for (size_t i = 0; i < nshards; i++) {
		struct tx_done d = {0};
		char *in = join(indir, shards[i]), *renamed = mfs_tx_rename(shards[i]);
		char *out = renamed ? join(outdir, renamed) : NULL;

		free(renamed);
		rc = in && out ? transcode_one(in, out, o, &d) : EXIT_USAGE_IO;
		free(in);
		if (rc) {
			free(out);
			goto out;
		}
		written[nwritten++] = out;
		total += d.data_bytes;
	}
	nm = mfs_tx_rename(base_name(index));
	outidx = nm ? join(outdir, nm) : NULL;
	if (!outidx || mfs_tx_index_rewrite(text, len, total, &newidx, &err) ||
	    mv_write_file_atomic(outidx, newidx, strlen(newidx), 0644, &err)) {
		rc = outidx ? cli_report(&err) : EXIT_USAGE_IO;
		goto out;
	}
	if (!o->quiet)
		printf("%s -> %s: %zu shards\n", index, outidx, nshards);
	nwritten = 0; /* keep them */
	for (size_t i = 0; i < nshards; i++)
		free(written ? written[i] : NULL);
out:
	remove_outputs(written, nwritten);
	free(written);
	free(shards);
	cJSON_Delete(root);
	free(text);
	free(newidx);
	free(indir);
	free(outidx);
	free(nm);
	return rc;
}

int cmd_transcode(int argc, char **argv)
{
	static const struct option lopts[] = {
	    {"quiet", no_argument, NULL, 'q'},
	    {"no-sync", no_argument, NULL, 'S'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct tx_opts o = {0};
	struct tx_done d;
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "qh", lopts, NULL)) != -1) {
		switch (c) {
		case 'q': o.quiet = true; break;
		case 'S': o.no_sync = true; break;
		case 'h':
			printf("usage: modelfs %s\n", cli_find("transcode")->usage);
			return EXIT_OK;
		default: return cli_usage("transcode");
		}
	}
	if (argc - optind != 2)
		return cli_usage("transcode");
	const char *in = argv[optind], *out = argv[optind + 1];

	if (is_dir(in)) {
		char *idx = find_index(in);

		if (!idx)
			return EXIT_USAGE_IO;
		rc = transcode_sharded(idx, out, &o);
		free(idx);
		return rc;
	}
	if (looks_like_json(in))
		return transcode_sharded(in, out, &o);
	if (is_dir(out)) {
		char *nm = mfs_tx_rename(base_name(in)), *path = nm ? join(out, nm) : NULL;

		rc = path ? transcode_one(in, path, &o, &d) : EXIT_USAGE_IO;
		free(nm);
		free(path);
		return rc;
	}
	return transcode_one(in, out, &o, &d);
}
