// SPDX-License-Identifier: Apache-2.0
/*
 * zpack_model.c - `modelfs pack`: every signed file of a sealed model
 * packed into MODEL/.modelfs/packed/, on a pool of workers, largest first.
 * Each packed copy is decompressed in full and checked against the file's
 * signed fs-verity digest before it is kept; a file that packs too poorly
 * stays plain; with --remove-original the plain file goes only once its
 * copy checked out, and only if it is still the file that was packed.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zstd.h>

#include "model_internal.h"
#include "verity_internal.h"
#include "vpack.h"
#include "zpack_internal.h"

/* ------------------------------------------------------------------------
 * Packing a model (modelfs pack)
 * ------------------------------------------------------------------------ */

enum pack_result { PACK_NONE, PACK_PACKED, PACK_KEPT, PACK_PLAIN, PACK_FAILED };

/* One signed file; filled by a worker, reported in name order. */
struct pack_item {
	const struct mv_resource *r;
	enum pack_result what;
	bool removed;
	int ret;
	uint64_t packed_bytes;
	char line[1536];
};

struct pack_ctx {
	const struct mv_walk *w;
	int dirfd; /* MODEL/.modelfs/packed */
	const struct mv_pack_opts *o;
	struct pack_item *items;
	size_t *order; /* largest first, for balance */
};

static void item_line(struct pack_item *it, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void item_line(struct pack_item *it, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(it->line, sizeof(it->line), fmt, ap);
	va_end(ap);
}

/* Records a failure with the error line; returns @ret. */
static int item_fail(struct pack_item *it, int ret, const struct mv_err *err)
{
	it->what = PACK_FAILED;
	it->ret = ret;
	snprintf(it->line, sizeof(it->line), "%s", err->msg[0] ? err->msg : strerror(-ret));
	return ret;
}

/*
 * Decompresses the packed file @zname in full and checks its fs-verity
 * digest against the signed one. *size gets the packed file's size.
 */
static int check_packed(struct pack_ctx *c, const struct mv_resource *r, const char *zname,
                        uint64_t *size, struct mv_err *err)
{
	char shown[sizeof(MV_PACKED_DIR) + MV_ZPACK_NAME_MAX];
	struct mv_measurement m;
	struct stat st;
	int fd, ret;

	snprintf(shown, sizeof(shown), "%s/%s", MV_PACKED_DIR, zname);
	fd = openat(c->dirfd, zname, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return mv_err_set(err, -errno, "%s: cannot open: %s", shown, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		ret = mv_err_set(err, -EINVAL, "%s: not a regular file", shown);
		goto out;
	}
	*size = (uint64_t)st.st_size;
	ret = mv_zpack_measure(fd, shown, &r->merkle.params, NULL, NULL, NULL, &m, err);
	if (!ret && memcmp(m.digest, r->merkle.digest, mv_hash_digest_size(m.params.alg)) != 0)
		ret = mv_err_set(err, -EBADMSG, "%s: fs-verity digest of its contents is wrong",
		                 shown);
out:
	close(fd);
	return ret;
}

/* True if @size shrank to @packed by at least MV_ZPACK_MIN_SAVING percent. */
static bool worth_packing(uint64_t size, uint64_t packed)
{
	uint64_t min_saving =
	    size / 100 * MV_ZPACK_MIN_SAVING + size % 100 * MV_ZPACK_MIN_SAVING / 100;

	return packed < size && size - packed >= min_saving;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/*
 * Removes the plain file @name, walking its folders without following links,
 * and only if it is still the file @was (same inode, size, times).
 */
static int remove_plain(int root_fd, const char *name, const struct stat *was, struct mv_err *err)
{
	char buf[PATH_MAX], *comp, *next;
	struct stat now;
	int cur = root_fd, fd, ret = 0;

	if (strlen(name) >= sizeof(buf))
		return mv_err_set(err, -ENAMETOOLONG, "%s: name too long", name);
	strcpy(buf, name);
	comp = buf;
	while ((next = strchr(comp, '/'))) {
		*next = '\0';
		fd = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (cur != root_fd)
			close(cur);
		if (fd < 0)
			return mv_err_set(err, -errno, "%s: cannot open its folder: %s", name,
			                  strerror(errno));
		cur = fd;
		comp = next + 1;
	}
	if (fstatat(cur, comp, &now, AT_SYMLINK_NOFOLLOW) < 0)
		ret = mv_err_set(err, -errno, "%s: cannot stat: %s", name, strerror(errno));
	else if (!same_file(&now, was))
		ret = mv_err_set(err, -EAGAIN, "%s: changed while packing; not removed", name);
	else if (unlinkat(cur, comp, 0) < 0)
		ret = mv_err_set(err, -errno, "%s: cannot remove: %s", name, strerror(errno));
	if (cur != root_fd)
		close(cur);
	return ret;
}

/* Compresses @fd into the temporary file @a, created here in the packed folder. */
static int pack_to_temp(struct pack_ctx *c, const struct mv_resource *r, int fd,
                        struct mv_atomic_file *a, struct mv_measurement *m, uint64_t *size,
                        struct mv_err *err)
{
	int ret = mv_atomic_open(a, c->dirfd, NULL, 0644, err);

	if (!ret)
		ret = mv_zpack_write(fd, &r->merkle.params, &c->o->z, a->fd, r->name, m, size, err);
	return ret;
}

/*
 * Packs one plain file. Return: 0 packed, 1 left plain (too little saving),
 * or a negative errno (@err set).
 */
static int pack_new(struct pack_ctx *c, struct pack_item *it, int fd, const struct stat *st,
                    const char *zname, struct mv_err *err)
{
	const struct mv_resource *r = it->r;
	struct mv_atomic_file a;
	struct mv_measurement m;
	struct stat now;
	int ret;

	ret = pack_to_temp(c, r, fd, &a, &m, &it->packed_bytes, err);
	if (ret)
		goto out;
	if (fstat(fd, &now) < 0 || !same_file(&now, st)) {
		ret = mv_err_set(err, -EAGAIN, "%s: changed while packing", r->name);
		goto out;
	}
	if (memcmp(m.digest, r->merkle.digest, mv_hash_digest_size(m.params.alg)) != 0) {
		ret = mv_err_set(err, -EBADMSG,
		                 "%s: does not match its signature (fs-verity digest); not packed",
		                 r->name);
		goto out;
	}
	if (!worth_packing(r->merkle.params.data_size, it->packed_bytes)) {
		ret = 1;
		goto out;
	}
	/* Durable before it is renamed into place (and before any original goes). */
	a.name = zname;
	ret = mv_atomic_commit(&a, 0, err);
out:
	mv_atomic_abort(&a);
	return ret;
}

static double ratio(uint64_t plain, uint64_t packed)
{
	return packed ? (double)plain / (double)packed : 0.0;
}

/* Packs or re-checks one file; then removes its original if asked. */
static int pack_present(struct pack_ctx *c, struct pack_item *it, int fd, const struct stat *st,
                        const char *zname, struct mv_err *err)
{
	const struct mv_resource *r = it->r;
	struct mv_err cerr = {0};
	bool repacked = false;
	int ret;

	/* A good packed copy (same content: same name) is kept as it is. */
	ret = check_packed(c, r, zname, &it->packed_bytes, &cerr);
	if (ret) {
		repacked = ret != -ENOENT;
		ret = pack_new(c, it, fd, st, zname, err);
		if (ret < 0)
			return ret;
		if (ret == 1) {
			it->what = PACK_PLAIN;
			item_line(it, "%s: left plain (packed it would save less than %d%%)",
			          r->name, MV_ZPACK_MIN_SAVING);
			return 0;
		}
		/* Before an original goes, check what is on disk under the final name. */
		if (c->o->remove_original) {
			ret = check_packed(c, r, zname, &it->packed_bytes, err);
			if (ret)
				return ret;
		}
		it->what = PACK_PACKED;
	} else {
		it->what = PACK_KEPT;
	}
	if (c->o->remove_original) {
		ret = remove_plain(c->w->dirfd, r->name, st, err);
		if (ret)
			return ret;
		it->removed = true;
	}
	item_line(it, "%s: %s, %" PRIu64 " -> %" PRIu64 " bytes (ratio %.2f)%s", r->name,
	          it->what == PACK_KEPT ? "already packed"
	          : repacked            ? "packed (replaced a damaged packed copy)"
	                                : "packed",
	          r->merkle.params.data_size, it->packed_bytes,
	          ratio(r->merkle.params.data_size, it->packed_bytes),
	          it->removed ? ", original removed" : "");
	return 0;
}

/* Worker: one signed file. */
static void pack_one(void *arg, size_t k)
{
	struct pack_ctx *c = arg;
	struct pack_item *it = &c->items[c->order[k]];
	const struct mv_resource *r = it->r;
	char zname[MV_ZPACK_NAME_MAX];
	struct mv_err err = {0};
	struct stat st;
	int fd, ret;

	if (!r->has_merkle || r->merkle.params.data_size == 0) {
		it->what = PACK_PLAIN;
		item_line(it, "%s: left plain (%s)", r->name,
		          r->has_merkle ? "empty" : "no Merkle root in the signature");
		return;
	}
	mv_zpack_file_name(&r->merkle, zname);
	fd = mv_walk_open_file(c->w, r->name, &st, &err);
	if (fd == -ENOENT) {
		/* Original already removed: the packed copy must be there, and good. */
		struct mv_err zerr = {0}, line = {0};

		ret = check_packed(c, r, zname, &it->packed_bytes, &zerr);
		if (ret == -ENOENT) {
			item_fail(it, -ENOENT, &err);
		} else if (ret) {
			mv_err_set(&line, ret, "%s: packed copy is damaged: %s", r->name, zerr.msg);
			item_fail(it, ret, &line);
		} else {
			it->what = PACK_KEPT;
			item_line(it, "%s: already packed, original removed (ratio %.2f)", r->name,
			          ratio(r->merkle.params.data_size, it->packed_bytes));
		}
		return;
	}
	if (fd < 0) {
		item_fail(it, fd, &err);
		return;
	}
	if ((uint64_t)st.st_size != r->merkle.params.data_size)
		ret = mv_err_set(&err, -EBADMSG,
		                 "%s: size mismatch (signed %" PRIu64 " bytes, found %" PRIu64
		                 "); not packed",
		                 r->name, r->merkle.params.data_size, (uint64_t)st.st_size);
	else
		ret = pack_present(c, it, fd, &st, zname, &err);
	if (ret)
		item_fail(it, ret, &err);
	close(fd);
}

/* Opens (creating) MODEL/.modelfs/packed below the model's folder. */
static int open_packed_dir(const struct mv_walk *w, struct mv_err *err)
{
	int hidden, fd;

	if (mkdirat(w->dirfd, MV_HIDDEN_DIR, 0755) < 0 && errno != EEXIST)
		return mv_err_set(err, -errno, "%s/%s: cannot create: %s", w->root, MV_HIDDEN_DIR,
		                  strerror(errno));
	hidden = openat(w->dirfd, MV_HIDDEN_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (hidden < 0)
		return mv_err_set(err, -errno, "%s/%s: cannot open: %s", w->root, MV_HIDDEN_DIR,
		                  errno == ELOOP ? "symlink, refused" : strerror(errno));
	if (mkdirat(hidden, "packed", 0755) < 0 && errno != EEXIST) {
		fd = -errno;
	} else {
		fd = openat(hidden, "packed", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			fd = -errno;
	}
	close(hidden);
	if (fd < 0)
		return mv_err_set(err, fd, "%s/%s: cannot open: %s", w->root, MV_PACKED_DIR,
		                  fd == -ELOOP ? "symlink, refused" : strerror(-fd));
	return fd;
}

static int by_size_desc(const void *a, const void *b, void *arg)
{
	const struct pack_item *items = arg;
	uint64_t sa = items[*(const size_t *)a].r->merkle.params.data_size;
	uint64_t sb = items[*(const size_t *)b].r->merkle.params.data_size;

	return sa < sb ? 1 : sa > sb ? -1 : 0;
}

/* Reports every item in name order; fills @st. Returns the worst error. */
static int pack_report(const struct pack_ctx *c, size_t n, mv_problem_fn info, void *ictx,
                       mv_problem_fn problem, void *pctx, struct mv_pack_stats *st)
{
	int ret = 0;

	for (size_t i = 0; i < n; i++) {
		const struct pack_item *it = &c->items[i];

		if (it->what == PACK_FAILED) {
			st->failed++;
			if (problem)
				problem(pctx, it->line);
			if (ret != -EBADMSG)
				ret =
				    it->ret == -EBADMSG || it->ret == -EAGAIN ? -EBADMSG : it->ret;
			continue;
		}
		st->packed += it->what == PACK_PACKED;
		st->kept += it->what == PACK_KEPT;
		st->plain += it->what == PACK_PLAIN;
		st->removed += it->removed;
		if (it->what == PACK_PACKED || it->what == PACK_KEPT) {
			st->plain_bytes += it->r->merkle.params.data_size;
			st->packed_bytes += it->packed_bytes;
		}
		if (info && it->line[0])
			info(ictx, it->line);
	}
	return ret;
}

/* Checks the options once against every signed file, before any work. */
static int check_pack_opts(const struct mv_pack_opts *o, const struct mv_manifest *m,
                           const char *model_dir, struct mv_err *err)
{
	uint32_t frame = o->z.frame_size ? o->z.frame_size : MV_ZPACK_DEFAULT_FRAME;
	int level = o->z.level ? o->z.level : MV_ZPACK_DEFAULT_LEVEL;

	if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel())
		return mv_err_set(err, -EINVAL, "%s: zstd level %d out of range (%d..%d)",
		                  model_dir, level, ZSTD_minCLevel(), ZSTD_maxCLevel());
	if (frame > MV_ZPACK_MAX_FRAME)
		return mv_err_set(err, -EINVAL, "%s: frame size %" PRIu32 " above the limit %u",
		                  model_dir, frame, MV_ZPACK_MAX_FRAME);
	for (size_t i = 0; i < m->n_res; i++) {
		const struct mv_resource *r = &m->res[i];

		if (r->has_merkle && (frame == 0 || frame % r->merkle.params.block_size))
			return mv_err_set(err, -EINVAL,
			                  "%s: frame size %" PRIu32
			                  " is not a multiple of its %" PRIu32 "-byte Merkle block",
			                  r->name, frame, r->merkle.params.block_size);
	}
	return 0;
}

/* Reads model.sig (no trust check: files are checked against its digests). */
static int pack_manifest(const struct mv_walk *w, const struct mv_pack_opts *o,
                         struct mv_manifest **m, struct mv_err *err)
{
	char *sig = NULL;
	int ret;

	if (w->single_file)
		return mv_err_set(err, -EINVAL, "%s: pack works on model folders, not single files",
		                  w->root);
	if (o->signature)
		sig = strdup(o->signature);
	else if (asprintf(&sig, "%s/%s", w->root, MV_SIG_NAME) < 0)
		sig = NULL;
	if (!sig)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", w->root);
	ret = mv_sig_inspect(sig, NULL, NULL, m, err);
	free(sig);
	return ret;
}

int mv_model_pack(const char *model_dir, const struct mv_pack_opts *o, mv_problem_fn info,
                  void *ictx, mv_problem_fn problem, void *pctx, struct mv_pack_stats *stats)
{
	static const struct mv_pack_opts defaults;
	struct pack_ctx c = {.dirfd = -1};
	struct mv_pack_stats st = {0};
	struct mv_manifest *m = NULL;
	struct mv_err err = {0};
	struct mv_walk w;
	int ret;

	c.o = o ? o : &defaults;
	ret = mv_walk_open(&w, model_dir, NULL, 0, &err);
	if (ret) {
		if (problem)
			problem(pctx, err.msg);
		return ret;
	}
	c.w = &w;
	ret = pack_manifest(&w, c.o, &m, &err);
	if (!ret)
		ret = check_pack_opts(c.o, m, model_dir, &err);
	if (!ret) {
		c.dirfd = open_packed_dir(&w, &err);
		ret = c.dirfd < 0 ? c.dirfd : 0;
	}
	if (!ret) {
		c.items = calloc(m->n_res + 1, sizeof(*c.items));
		c.order = calloc(m->n_res + 1, sizeof(*c.order));
		if (!c.items || !c.order)
			ret = mv_err_set(&err, -ENOMEM, "%s: out of memory", model_dir);
	}
	if (ret) {
		if (problem)
			problem(pctx, err.msg);
		goto out;
	}
	for (size_t i = 0; i < m->n_res; i++) {
		c.items[i].r = &m->res[i];
		c.order[i] = i;
	}
	qsort_r(c.order, m->n_res, sizeof(*c.order), by_size_desc, c.items);
	mv_run_parallel(m->n_res, c.o->threads, pack_one, &c);
	/* Renames and removals durable together. */
	fsync(c.dirfd);
	ret = pack_report(&c, m->n_res, info, ictx, problem, pctx, &st);
out:
	if (stats)
		*stats = st;
	if (c.dirfd >= 0)
		close(c.dirfd);
	free(c.items);
	free(c.order);
	mv_manifest_free(m);
	mv_walk_free(&w);
	return ret;
}
