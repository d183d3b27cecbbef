// SPDX-License-Identifier: Apache-2.0
/*
 * model_verify.c - `modelfs verify`: the five checks of a signed model, in
 * order: (1) bundle structure, (2) signature against the trust inputs,
 * (3) subject digest - these three are mv_sig_open() - then (4) every
 * listed file's SHA-256 and, with the modelfs extension, its fs-verity
 * digest, both from one read of the file, and (5) no unsigned file outside
 * the ignore paths.
 *
 * Every problem is reported, not only the first, so that one run tells the
 * user everything that is wrong. Tree files are not needed (they are
 * derivable), but a tree that is present is compared block by block with the
 * tree being computed, and a damaged one is reported as a warning.
 *
 * A file may also be stored packed (MV_PACKED_DIR, zpack.c). If only the
 * packed copy is there, it is decompressed and both digests are computed
 * over the plain bytes; if both are there, the packed copy must measure to
 * the signed fs-verity digest too, or it is reported as damaged. The
 * decompression is libvpack's: the caller passes mv_zpack_measure as
 * mv_verify_opts.measure_packed, so the core links no zstd; without it
 * packed copies are not looked at.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model_internal.h"
#include "verity_internal.h"

/* Comparing an existing tree file with the tree being computed. */
struct tree_check {
	int fd;
	uint64_t offset;
	struct mv_tree_geometry geo;
	uint8_t *buf;
	const char *bad; /* first reason the tree file is unusable */
};

/* One signed file to check; filled by a worker. */
struct verify_item {
	const struct mv_resource *r;
	const char *shown; /* name in messages */
	char *problem[2];  /* up to two failures (SHA-256, fs-verity) */
	char *warning;
	bool tree_missing;
	bool io_error; /* the failure is an I/O error, not a mismatch */
};

struct verify_ctx {
	const struct mv_walk *w;
	struct verify_item *items;
	mv_packed_measure_fn measure_packed; /* NULL: packed copies not looked at */
};

static void vadd_line(char **slot, const char *fmt, va_list ap)
{
	if (*slot)
		return;
	if (vasprintf(slot, fmt, ap) < 0)
		*slot = NULL;
}

static void add_line(char **slot, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add_line(char **slot, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vadd_line(slot, fmt, ap);
	va_end(ap);
}

/* Records a failure of @it (first free slot of two). */
static void add_problem(struct verify_item *it, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void add_problem(struct verify_item *it, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vadd_line(it->problem[0] ? &it->problem[1] : &it->problem[0], fmt, ap);
	va_end(ap);
}

static int tree_check_sink(void *ctx, unsigned level, uint64_t index, const void *block,
                           size_t block_size)
{
	struct tree_check *t = ctx;
	uint64_t pos;
	ssize_t n;

	if (t->bad || level >= t->geo.num_levels)
		return 0;
	pos = t->offset + ((t->geo.level_start[level] + index) << t->geo.log_block_size);
	n = mv_pread_full(t->fd, t->buf, block_size, pos);
	if (n != (ssize_t)block_size)
		t->bad = "truncated";
	else if (memcmp(t->buf, block, block_size) != 0)
		t->bad = "hash block mismatch";
	/* Never fail the data check because of the tree: it is only a cache. */
	return 0;
}

/* Opens the tree file of @r if there is one; t->fd < 0 if none or unusable. */
static void tree_check_open(const struct mv_walk *w, struct verify_item *it, struct tree_check *t)
{
	char path[sizeof(MV_TREES_DIR) + MV_TREE_NAME_MAX], name[MV_TREE_NAME_MAX];
	uint8_t *hdr = NULL;
	struct mv_tree_header h;
	struct stat st;
	struct mv_err err = {0};

	t->fd = -1;
	t->bad = NULL;
	mv_tree_file_name(&it->r->merkle, name);
	snprintf(path, sizeof(path), "%s/%s", MV_TREES_DIR, name);
	t->fd = mv_walk_open_file(w, path, &st, &err);
	if (t->fd < 0) {
		if (t->fd == -ENOENT)
			it->tree_missing = true;
		else
			t->bad = "cannot be opened";
		return;
	}
	hdr = malloc(MV_TREE_HEADER_SIZE);
	t->buf = malloc(it->r->merkle.params.block_size);
	if (!hdr || !t->buf)
		t->bad = "out of memory";
	else if (mv_pread_full(t->fd, hdr, MV_TREE_HEADER_SIZE, 0) != MV_TREE_HEADER_SIZE ||
	         mv_tree_header_decode(hdr, MV_TREE_HEADER_SIZE, (uint64_t)st.st_size, &h, &err))
		t->bad = "bad header";
	else if (!mv_params_equal(&h.params, &it->r->merkle.params))
		t->bad = "parameters differ from the signed ones";
	else if (memcmp(h.root, it->r->merkle.root, h.geo.digest_size) != 0)
		t->bad = "root differs from the signed one";
	else {
		t->geo = h.geo;
		t->offset = h.tree_offset;
	}
	free(hdr);
}

static void tree_check_close(struct verify_item *it, struct tree_check *t)
{
	if (t->bad)
		add_line(&it->warning,
		         "%s: tree file is damaged (%s); rebuild it with "
		         "`modelfs seal --trees-only --trust KEY.pub MODEL`",
		         it->shown, t->bad);
	if (t->fd >= 0)
		close(t->fd);
	free(t->buf);
	t->buf = NULL;
	t->fd = -1;
}

static void report_mismatch(struct verify_item *it, const char *what, const uint8_t *expected,
                            const uint8_t *got, size_t len)
{
	char e[2 * MV_MAX_DIGEST_SIZE + 1], g[2 * MV_MAX_DIGEST_SIZE + 1];

	mv_hex_encode(expected, len, e);
	mv_hex_encode(got, len, g);
	add_problem(it, "%s: %s mismatch (expected %s, got %s)", it->shown, what, e, g);
}

/* ---- packed copies (MV_PACKED_DIR, see zpack.c) ---- */

/* Opens the packed copy of @r; @shown gets its path relative to the model. */
static int open_packed(const struct mv_walk *w, const struct mv_resource *r, char *shown,
                       size_t shown_len, struct mv_err *err)
{
	char name[MV_ZPACK_NAME_MAX];
	struct stat st;

	mv_zpack_file_name(&r->merkle, name);
	snprintf(shown, shown_len, "%s/%s", MV_PACKED_DIR, name);
	return mv_walk_open_file(w, shown, &st, err);
}

/* Records a failure of the packed copy @shown of @it. */
static void packed_problem(struct verify_item *it, int ret, const char *shown,
                           const struct mv_err *err)
{
	/* mv_zpack_* and mv_walk_open_file lines start with the packed file's name. */
	add_problem(it, "%s: packed copy is damaged: %s", it->shown,
	            err->msg[0] ? err->msg : shown);
	if (ret != -EBADMSG && ret != -ENOENT && ret != -ELOOP && ret != -EINVAL)
		it->io_error = true;
}

/*
 * The plain file is absent: verify its packed copy in its place, both
 * digests over the decompressed bytes. Return: false if there is none.
 */
static bool verify_packed_only(struct verify_ctx *c, struct verify_item *it)
{
	const struct mv_resource *r = it->r;
	char shown[sizeof(MV_PACKED_DIR) + MV_ZPACK_NAME_MAX];
	struct tree_check t = {.fd = -1};
	struct mv_measurement m;
	struct mv_err err = {0};
	uint8_t sha[32];
	int fd, ret;

	if (!c->measure_packed)
		return false;
	fd = open_packed(c->w, r, shown, sizeof(shown), &err);
	if (fd == -ENOENT)
		return false;
	if (fd < 0) {
		packed_problem(it, fd, shown, &err);
		return true;
	}
	tree_check_open(c->w, it, &t);
	ret = c->measure_packed(fd, shown, &r->merkle.params, sha,
	                        t.fd >= 0 && !t.bad ? tree_check_sink : NULL, &t, &m, &err);
	if (ret) {
		packed_problem(it, ret, shown, &err);
		t.bad = NULL;
	} else {
		if (memcmp(sha, r->sha256, 32) != 0)
			report_mismatch(it, "sha256 (of the packed copy)", r->sha256, sha, 32);
		if (memcmp(m.digest, r->merkle.digest, mv_hash_digest_size(r->merkle.params.alg))) {
			report_mismatch(it, "fs-verity digest (of the packed copy)",
			                r->merkle.digest, m.digest,
			                mv_hash_digest_size(r->merkle.params.alg));
			t.bad = NULL;
		}
	}
	tree_check_close(it, &t);
	close(fd);
	return true;
}

/* The plain file is present: a packed copy, if any, must hold the same bytes. */
static void check_packed_copy(struct verify_ctx *c, struct verify_item *it)
{
	const struct mv_resource *r = it->r;
	char shown[sizeof(MV_PACKED_DIR) + MV_ZPACK_NAME_MAX];
	struct mv_measurement m;
	struct mv_err err = {0};
	int fd, ret;

	if (!c->measure_packed)
		return;
	fd = open_packed(c->w, r, shown, sizeof(shown), &err);
	if (fd == -ENOENT)
		return;
	if (fd < 0) {
		packed_problem(it, fd, shown, &err);
		return;
	}
	/* The fs-verity digest alone pins the bytes: no second SHA-256 pass. */
	ret = c->measure_packed(fd, shown, &r->merkle.params, NULL, NULL, NULL, &m, &err);
	if (!ret && memcmp(m.digest, r->merkle.digest, mv_hash_digest_size(r->merkle.params.alg)))
		ret =
		    mv_err_set(&err, -EBADMSG, "%s: holds other bytes than the signed file", shown);
	if (ret)
		packed_problem(it, ret, shown, &err);
	close(fd);
}

/* Step 4 for one file: hash it once, compare both digests. */
static void verify_one(void *arg, size_t i)
{
	struct verify_ctx *c = arg;
	struct verify_item *it = &c->items[i];
	const struct mv_resource *r = it->r;
	struct mv_hash_job job = {.name = it->shown,
	                          .activity = "verifying",
	                          .want_sha256 = true,
	                          .want_tree = r->has_merkle};
	struct tree_check t = {.fd = -1};
	struct mv_err err = {0};

	job.fd = mv_walk_open_file(c->w, r->name, &job.st, &err);
	/* A file stored only packed (modelfs pack --remove-original). */
	if (job.fd == -ENOENT && r->has_merkle && !c->w->single_file && verify_packed_only(c, it))
		return;
	if (job.fd < 0) {
		it->io_error = job.fd != -ENOENT && job.fd != -ELOOP && job.fd != -EINVAL;
		/* mv_walk_open_file names the relative path; a single file shows its path. */
		add_line(&it->problem[0], "%s", err.msg);
		return;
	}
	if (r->has_merkle && (uint64_t)job.st.st_size != r->merkle.params.data_size) {
		add_line(&it->problem[0], "%s: size mismatch (signed %llu bytes, found %llu)",
		         it->shown, (unsigned long long)r->merkle.params.data_size,
		         (unsigned long long)job.st.st_size);
		goto out;
	}
	if (r->has_merkle) {
		job.params = r->merkle.params;
		if (!c->w->single_file)
			tree_check_open(c->w, it, &t);
		if (t.fd >= 0 && !t.bad) {
			job.sink = tree_check_sink;
			job.sink_ctx = &t;
		}
	}
	if (mv_hash_file(&job)) {
		it->io_error = true;
		add_line(&it->problem[0], "%s", job.err.msg);
		goto out;
	}
	if (memcmp(job.sha256, r->sha256, 32) != 0)
		report_mismatch(it, "sha256", r->sha256, job.sha256, 32);
	if (r->has_merkle && memcmp(job.m.digest, r->merkle.digest,
	                            mv_hash_digest_size(r->merkle.params.alg)) != 0) {
		report_mismatch(it, "fs-verity digest", r->merkle.digest, job.m.digest,
		                mv_hash_digest_size(r->merkle.params.alg));
		/* The tree was compared with a tree of other data: say nothing of it. */
		t.bad = NULL;
	}
	if (r->has_merkle && !c->w->single_file)
		check_packed_copy(c, it);
out:
	if (r->has_merkle && !c->w->single_file)
		tree_check_close(it, &t);
	close(job.fd);
}

/* Checks that the signature's shape fits the model path (folder vs file). */
static int check_shape(const struct mv_walk *w, const struct mv_manifest *m, mv_problem_fn problem,
                       void *pctx)
{
	char line[1024];
	bool dot = m->n_res == 1 && strcmp(m->res[0].name, ".") == 0;

	if (w->single_file && !dot)
		snprintf(line, sizeof(line),
		         "%s: the signature lists %zu files of a folder, not this single file",
		         w->root, m->n_res);
	else if (!w->single_file && mv_manifest_find(m, "."))
		snprintf(line, sizeof(line),
		         "%s: the signature is for a single file (resource \".\"), not a folder",
		         w->root);
	else
		return 0;
	if (problem)
		problem(pctx, line);
	return -EBADMSG;
}

/* Step 5: every file found must be signed, unless it is ignored. */
static int check_unsigned(struct mv_walk *w, const struct mv_manifest *m,
                          const struct mv_verify_opts *opts, mv_problem_fn problem, void *pctx)
{
	struct mv_err err = {0};
	char line[1536], shown[1024];
	int ret, bad = 0;

	ret = mv_walk_add_ignores(w, (const char *const *)m->ignore_paths, m->n_ignore);
	if (!ret)
		ret = mv_walk_add_ignores(w, opts->ignore_paths, opts->n_ignore_paths);
	if (ret)
		mv_err_set(&err, ret, "%s: out of memory", w->root);
	else
		ret = mv_walk_list(w, &err);
	if (ret) {
		if (problem)
			problem(pctx, err.msg);
		return ret;
	}
	for (size_t i = 0; i < w->n; i++) {
		const struct mv_walk_entry *e = &w->e[i];

		/* A signed path that is refused was reported by step 4. */
		if (mv_manifest_find(m, e->name))
			continue;
		mv_name_printable(e->name, shown, sizeof(shown));
		snprintf(line, sizeof(line), "%s: %s", shown, e->error ? e->why : "not signed");
		if (problem)
			problem(pctx, line);
		bad = -EBADMSG;
	}
	return bad;
}

/* Step 4 on all CPUs; reports in name order. Returns -EBADMSG, -EIO-ish or 0. */
static int check_files(const struct mv_walk *w, const struct mv_manifest *m,
                       const struct mv_verify_opts *opts, mv_problem_fn problem, void *pctx,
                       mv_warn_fn warn, void *wctx)
{
	struct verify_ctx c = {.w = w, .measure_packed = opts->measure_packed};
	size_t missing_trees = 0;
	int ret = 0;

	c.items = calloc(m->n_res ? m->n_res : 1, sizeof(*c.items));
	if (!c.items) {
		if (problem)
			problem(pctx, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < m->n_res; i++) {
		c.items[i].r = &m->res[i];
		c.items[i].shown = w->single_file ? w->root : m->res[i].name;
	}
	mv_run_parallel(m->n_res, 0, verify_one, &c);
	for (size_t i = 0; i < m->n_res; i++) {
		struct verify_item *it = &c.items[i];

		for (int k = 0; k < 2; k++) {
			if (!it->problem[k])
				continue;
			if (problem)
				problem(pctx, it->problem[k]);
			if (it->io_error && ret != -EBADMSG)
				ret = -EIO;
			else
				ret = -EBADMSG;
			free(it->problem[k]);
		}
		if (it->warning && warn)
			warn(wctx, it->warning);
		free(it->warning);
		missing_trees += it->tree_missing;
	}
	if (missing_trees && warn) {
		char line[256];

		snprintf(
		    line, sizeof(line),
		    "%zu file(s) have no tree file in %s; `modelfs seal --trees-only` rebuilds "
		    "them (needed only to mount)",
		    missing_trees, MV_TREES_DIR);
		warn(wctx, line);
	}
	free(c.items);
	return ret;
}

static char *default_sig_path(const struct mv_walk *w)
{
	char *p;

	if (asprintf(&p, w->single_file ? "%s.sig" : "%s/" MV_SIG_NAME, w->root) < 0)
		return NULL;
	return p;
}

int mv_model_verify(const char *model_path, const struct mv_trust *trust,
                    const struct mv_verify_opts *opts, mv_problem_fn problem, void *pctx,
                    mv_warn_fn warn, void *wctx, struct mv_manifest **out)
{
	static const struct mv_verify_opts defaults;
	struct mv_manifest *m = NULL;
	struct mv_err err = {0};
	struct mv_walk w;
	char *sig_path = NULL;
	int ret, ret5;

	if (out)
		*out = NULL;
	if (!opts)
		opts = &defaults;
	ret = mv_walk_open(&w, model_path, NULL, 0, &err);
	if (!ret) {
		sig_path = opts->signature ? strdup(opts->signature) : default_sig_path(&w);
		if (!sig_path)
			ret = mv_err_set(&err, -ENOMEM, "%s: out of memory", model_path);
	}
	/* Steps 1-3: structure, signature, subject digest. */
	if (!ret)
		ret = mv_sig_open(sig_path, trust, warn, wctx, &m, &err);
	if (ret) {
		if (problem)
			problem(pctx, err.msg[0] ? err.msg : strerror(-ret));
		goto out;
	}
	ret = check_shape(&w, m, problem, pctx);
	if (ret || opts->skip_file_hashes)
		goto out;
	if (!m->has_extension && warn)
		warn(wctx, "no Merkle roots present (plain OMS signature): checked SHA-256 only");
	/* Step 4, then step 5: both always run, so that every problem is shown. */
	ret = check_files(&w, m, opts, problem, pctx, warn, wctx);
	if (!w.single_file && !opts->ignore_unsigned_files) {
		ret5 = check_unsigned(&w, m, opts, problem, pctx);
		if (ret5 && ret != -EBADMSG)
			ret = ret5;
	}
out:
	if (!ret && out)
		*out = m;
	else
		mv_manifest_free(m);
	free(sig_path);
	mv_walk_free(&w);
	return ret;
}
