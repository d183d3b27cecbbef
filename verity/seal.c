// SPDX-License-Identifier: Apache-2.0
/*
 * seal.c - signing a model: hash every file twice over (whole-file SHA-256
 * for OMS, fs-verity Merkle tree for modelfs) while reading it once, write
 * the trees, then sign the manifest into model.sig.
 *
 * Why the work is split as it is: the two hashes of one file are
 * independent, so a large file is read in 1 MiB chunks into a small ring of
 * buffers; the reading thread SHA-256s each chunk while a second thread
 * feeds the same chunk to the tree builder. Reading is paid once, and the
 * slowest stage is one hash, not two. Several files are hashed at once on
 * all CPUs, largest first so that one big file does not finish last alone.
 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "model_internal.h"

#define HASH_CHUNK (1u << 20)
#define PIPE_SLOTS 4
/* Below this size a second thread costs more than it saves. */
#define PIPE_MIN_SIZE (4u << 20)

/* ------------------------------------------------------------------------
 * Threads
 * ------------------------------------------------------------------------ */

unsigned mv_thread_count(unsigned threads)
{
	cpu_set_t set;
	long n;

	if (threads)
		return threads;
	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return (unsigned)CPU_COUNT(&set);
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

struct par_ctx {
	size_t n;
	atomic_size_t next;
	void (*fn)(void *ctx, size_t i);
	void *ctx;
};

static void *par_worker(void *arg)
{
	struct par_ctx *p = arg;
	size_t i;

	while ((i = atomic_fetch_add(&p->next, 1)) < p->n)
		p->fn(p->ctx, i);
	return NULL;
}

void mv_run_parallel(size_t n, unsigned threads, void (*fn)(void *ctx, size_t i), void *ctx)
{
	struct par_ctx p = {.n = n, .fn = fn, .ctx = ctx};
	pthread_t tid[64];
	size_t started = 0, want;

	atomic_init(&p.next, 0);
	want = mv_thread_count(threads);
	if (want > n)
		want = n;
	if (want > 64)
		want = 64;
	/* The calling thread is one of the workers. */
	while (started + 1 < want && pthread_create(&tid[started], NULL, par_worker, &p) == 0)
		started++;
	par_worker(&p);
	for (size_t i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
}

/* ------------------------------------------------------------------------
 * Hashing one file
 * ------------------------------------------------------------------------ */

/* The state of one file's hashing: the two hash contexts and the error. */
struct hash_state {
	struct mv_hash_job *job;
	EVP_MD_CTX *sha;
	struct mv_tree_builder *tree;
};

static int state_init(struct hash_state *s, struct mv_hash_job *job)
{
	memset(s, 0, sizeof(*s));
	s->job = job;
	if (job->want_sha256) {
		s->sha = EVP_MD_CTX_new();
		if (!s->sha || !EVP_DigestInit_ex(s->sha, EVP_sha256(), NULL))
			return -ENOMEM;
	}
	if (job->want_tree) {
		job->params.data_size = (uint64_t)job->st.st_size;
		return mv_tree_builder_new(&job->params, job->sink, job->sink_ctx, &s->tree);
	}
	return 0;
}

static void state_free(struct hash_state *s)
{
	EVP_MD_CTX_free(s->sha);
	mv_tree_builder_free(s->tree);
}

static int sha_update(struct hash_state *s, const uint8_t *buf, size_t len)
{
	if (s->sha && !EVP_DigestUpdate(s->sha, buf, len))
		return -EIO;
	return 0;
}

/* Reads chunk @off of the file; a short read means the file shrank. */
static int read_chunk(struct mv_hash_job *job, uint8_t *buf, uint64_t off, size_t *len)
{
	uint64_t size = (uint64_t)job->st.st_size;
	size_t want = size - off < HASH_CHUNK ? (size_t)(size - off) : HASH_CHUNK;
	ssize_t n = mv_pread_full(job->fd, buf, want, off);

	if (n < 0)
		return mv_err_set(&job->err, (int)n, "%s: read failed: %s", job->name,
		                  strerror((int)-n));
	if ((size_t)n != want)
		return mv_err_set(&job->err, -EAGAIN, "%s: changed while %s (file shrank)",
		                  job->name, job->activity);
	*len = want;
	return 0;
}

/* One thread does everything: small files, or a single hash. */
static int hash_serial(struct hash_state *s)
{
	struct mv_hash_job *job = s->job;
	uint64_t size = (uint64_t)job->st.st_size;
	uint8_t *buf = malloc(HASH_CHUNK);
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	for (uint64_t off = 0; off < size && !ret; off += HASH_CHUNK) {
		size_t len = 0;

		ret = read_chunk(job, buf, off, &len);
		if (!ret)
			ret = sha_update(s, buf, len);
		if (!ret && s->tree)
			ret = mv_tree_builder_update(s->tree, buf, len);
	}
	free(buf);
	return ret;
}

/*
 * The two-thread pipeline. A slot holds one chunk; refs counts the stages
 * (SHA-256 in the reader, tree builder in the helper) still using it.
 */
struct pipe {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct hash_state *s;
	uint8_t *buf[PIPE_SLOTS];
	size_t len[PIPE_SLOTS];
	int refs[PIPE_SLOTS];
	uint64_t produced; /* chunks handed out */
	bool done;         /* the reader will hand out no more */
	int tree_err;      /* first error of the tree thread */
};

static void *pipe_tree_thread(void *arg)
{
	struct pipe *p = arg;
	int ret = 0;

	for (uint64_t i = 0;; i++) {
		unsigned slot = i % PIPE_SLOTS;

		pthread_mutex_lock(&p->mu);
		while (p->produced <= i && !p->done)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->produced <= i) {
			pthread_mutex_unlock(&p->mu);
			break;
		}
		pthread_mutex_unlock(&p->mu);
		ret = mv_tree_builder_update(p->s->tree, p->buf[slot], p->len[slot]);
		pthread_mutex_lock(&p->mu);
		p->refs[slot]--;
		if (ret)
			p->tree_err = ret;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		if (ret)
			break;
	}
	return NULL;
}

/* Reader side: fill a free slot, hand it to the tree thread, SHA-256 it. */
static int pipe_read_loop(struct pipe *p)
{
	uint64_t size = (uint64_t)p->s->job->st.st_size;
	int ret = 0;

	for (uint64_t i = 0, off = 0; off < size && !ret; i++, off += HASH_CHUNK) {
		unsigned slot = i % PIPE_SLOTS;
		size_t len = 0;

		pthread_mutex_lock(&p->mu);
		while (p->refs[slot] && !p->tree_err)
			pthread_cond_wait(&p->cv, &p->mu);
		ret = p->tree_err;
		pthread_mutex_unlock(&p->mu);
		if (ret)
			break;
		ret = read_chunk(p->s->job, p->buf[slot], off, &len);
		if (ret)
			break;
		pthread_mutex_lock(&p->mu);
		p->len[slot] = len;
		p->refs[slot] = 2;
		p->produced = i + 1;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		ret = sha_update(p->s, p->buf[slot], len);
		pthread_mutex_lock(&p->mu);
		p->refs[slot]--;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
	}
	pthread_mutex_lock(&p->mu);
	p->done = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return ret;
}

static int hash_pipelined(struct hash_state *s)
{
	struct pipe p = {.s = s};
	pthread_t tid;
	int ret = -ENOMEM;

	pthread_mutex_init(&p.mu, NULL);
	pthread_cond_init(&p.cv, NULL);
	for (unsigned i = 0; i < PIPE_SLOTS; i++) {
		p.buf[i] = malloc(HASH_CHUNK);
		if (!p.buf[i])
			goto out;
	}
	if (pthread_create(&tid, NULL, pipe_tree_thread, &p) != 0) {
		ret = hash_serial(s); /* no second thread: do it alone */
		goto out;
	}
	ret = pipe_read_loop(&p);
	pthread_join(tid, NULL);
	if (!ret)
		ret = p.tree_err;
out:
	for (unsigned i = 0; i < PIPE_SLOTS; i++)
		free(p.buf[i]);
	pthread_cond_destroy(&p.cv);
	pthread_mutex_destroy(&p.mu);
	return ret;
}

static bool same_timespec(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* Fails with -EAGAIN if the file is not what it was when it was opened. */
static int check_unchanged(struct mv_hash_job *job)
{
	struct stat now;

	if (fstat(job->fd, &now) < 0)
		return mv_err_set(&job->err, -errno, "%s: cannot stat: %s", job->name,
		                  strerror(errno));
	if (now.st_size != job->st.st_size || !same_timespec(&now.st_mtim, &job->st.st_mtim) ||
	    !same_timespec(&now.st_ctim, &job->st.st_ctim))
		return mv_err_set(&job->err, -EAGAIN, "%s: changed while %s", job->name,
		                  job->activity);
	return 0;
}

static int finish(struct hash_state *s)
{
	struct mv_hash_job *job = s->job;

	if (s->sha && !EVP_DigestFinal_ex(s->sha, job->sha256, NULL))
		return -EIO;
	if (s->tree)
		return mv_tree_builder_final(s->tree, &job->m);
	return 0;
}

int mv_hash_file(struct mv_hash_job *job)
{
	struct hash_state s = {0};
	int ret;

	if (!job->activity)
		job->activity = "hashing";
	if (job->st.st_size < 0) {
		ret = mv_err_set(&job->err, -EINVAL, "%s: bad size", job->name);
		goto out;
	}
	ret = state_init(&s, job);
	if (ret) {
		mv_err_set(&job->err, ret, "%s: cannot start hashing: %s", job->name,
		           strerror(-ret));
		goto out;
	}
	if (s.sha && s.tree && (uint64_t)job->st.st_size >= PIPE_MIN_SIZE)
		ret = hash_pipelined(&s);
	else
		ret = hash_serial(&s);
	if (!ret)
		ret = check_unchanged(job);
	if (!ret)
		ret = finish(&s);
	if (ret)
		mv_err_set(&job->err, ret, "%s: hashing failed: %s", job->name, strerror(-ret));
out:
	state_free(&s);
	job->ret = ret;
	return ret;
}

/* ------------------------------------------------------------------------
 * Sealing
 * ------------------------------------------------------------------------ */

/* One file to seal; filled by a worker. */
struct seal_item {
	const char *name;
	const struct mv_resource *signed_res; /* trees-only: the signed entry */
	uint8_t sha256[32];
	struct mv_measurement m;
	uint64_t size;
	bool tree_created;
	struct mv_err err;
	int ret;
};

struct seal_ctx {
	const struct mv_walk *w;
	const struct mv_seal_opts *opts;
	int trees_fd; /* -1: no trees (single file) */
	bool want_sha256;
	struct seal_item *items;
	size_t *order; /* items by size, largest first */
	atomic_bool stop;
};

/* Trees-only: the measured file must be the one that was signed. */
static int check_signed(struct seal_item *it)
{
	const struct mv_measurement *sm = &it->signed_res->merkle;
	size_t ds = mv_hash_digest_size(sm->params.alg);

	if (memcmp(it->m.digest, sm->digest, ds) != 0)
		return mv_err_set(&it->err, -EBADMSG,
		                  "%s: fs-verity digest mismatch (the file is not the signed one); "
		                  "tree not written",
		                  it->name);
	return 0;
}

static int seal_one(struct seal_ctx *c, struct seal_item *it)
{
	struct mv_hash_job job = {.name = it->name,
	                          .fd = -1,
	                          .activity = "sealing",
	                          .want_sha256 = c->want_sha256,
	                          .want_tree = true};
	struct mv_tree_writer t = {.fd = -1};
	int ret;

	job.params = it->signed_res ? it->signed_res->merkle.params : c->opts->tree;
	job.fd = mv_walk_open_file(c->w, it->name, &job.st, &it->err);
	if (job.fd < 0)
		return job.fd;
	it->size = (uint64_t)job.st.st_size;
	if (it->signed_res && it->size != it->signed_res->merkle.params.data_size) {
		ret = mv_err_set(&it->err, -EBADMSG, "%s: size %llu differs from the signed %llu",
		                 it->name, (unsigned long long)it->size,
		                 (unsigned long long)it->signed_res->merkle.params.data_size);
		goto out;
	}
	job.params.data_size = it->size;
	if (c->trees_fd >= 0) {
		ret = mv_tree_writer_open(&t, c->trees_fd, &job.params);
		if (ret) {
			mv_err_set(&it->err, ret, "%s: cannot create tree file: %s", it->name,
			           strerror(-ret));
			goto out;
		}
		job.sink = mv_tree_writer_sink;
		job.sink_ctx = &t;
	}
	ret = mv_hash_file(&job);
	if (ret) {
		mv_err_set(&it->err, ret, "%s", job.err.msg);
		goto out;
	}
	memcpy(it->sha256, job.sha256, sizeof(it->sha256));
	it->m = job.m;
	if (it->signed_res)
		ret = check_signed(it);
	if (!ret && t.fd >= 0) {
		char tname[MV_TREE_NAME_MAX];

		mv_tree_file_name(&it->m, tname);
		ret = mv_tree_writer_commit(&t, &it->m, tname, false, &it->tree_created);
		if (ret)
			mv_err_set(&it->err, ret, "%s: cannot write tree file: %s", it->name,
			           strerror(-ret));
	}
out:
	mv_tree_writer_abort(&t);
	close(job.fd);
	return ret;
}

static void seal_worker(void *arg, size_t i)
{
	struct seal_ctx *c = arg;
	struct seal_item *it = &c->items[c->order[i]];

	/* After the first failure the rest is wasted work: skip it. */
	if (atomic_load(&c->stop)) {
		it->ret = -ECANCELED;
		return;
	}
	it->ret = seal_one(c, it);
	if (it->ret)
		atomic_store(&c->stop, true);
}

static int by_size_desc(const void *a, const void *b, void *arg)
{
	const struct seal_item *items = arg;
	uint64_t sa = items[*(const size_t *)a].size;
	uint64_t sb = items[*(const size_t *)b].size;

	return sa < sb ? 1 : sa > sb ? -1 : 0;
}

/* Hashes every item on all CPUs; returns the first failure in name order. */
static int seal_items(struct seal_ctx *c, size_t n, struct mv_err *err)
{
	c->order = malloc((n ? n : 1) * sizeof(*c->order));
	if (!c->order)
		return mv_err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++)
		c->order[i] = i;
	qsort_r(c->order, n, sizeof(*c->order), by_size_desc, c->items);
	atomic_init(&c->stop, false);
	mv_run_parallel(n, c->opts->threads, seal_worker, c);
	for (size_t i = 0; i < n; i++)
		if (c->items[i].ret && c->items[i].ret != -ECANCELED)
			return mv_err_set(err, c->items[i].ret, "%s", c->items[i].err.msg);
	return 0;
}

/* Opens (creating if needed) a folder below @dfd, refusing symlinks. */
static int open_subdir(int dfd, const char *name, bool *created)
{
	int fd;

	*created = mkdirat(dfd, name, 0755) == 0;
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* Opens MODEL/.modelfs/trees; @made_* tell what to remove if sealing fails. */
static int open_trees_dir(const struct mv_walk *w, bool *made_hidden, bool *made_trees,
                          struct mv_err *err)
{
	int hidden, trees;

	hidden = open_subdir(w->dirfd, MV_HIDDEN_DIR, made_hidden);
	if (hidden < 0)
		return mv_err_set(err, hidden, "%s/%s: cannot open folder: %s", w->root,
		                  MV_HIDDEN_DIR,
		                  hidden == -ELOOP ? "symlink, refused" : strerror(-hidden));
	trees = open_subdir(hidden, "trees", made_trees);
	close(hidden);
	if (trees < 0)
		return mv_err_set(err, trees, "%s/%s: cannot open folder: %s", w->root,
		                  MV_TREES_DIR,
		                  trees == -ELOOP ? "symlink, refused" : strerror(-trees));
	return trees;
}

/* Takes back what a failed seal wrote: new trees and the folders it made. */
static void undo_trees(const struct mv_walk *w, int trees_fd, const struct seal_item *items,
                       size_t n, bool made_hidden, bool made_trees)
{
	char name[MV_TREE_NAME_MAX];
	int hidden;

	for (size_t i = 0; i < n; i++) {
		if (!items[i].tree_created)
			continue;
		mv_tree_file_name(&items[i].m, name);
		unlinkat(trees_fd, name, 0);
	}
	hidden = openat(w->dirfd, MV_HIDDEN_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (hidden < 0)
		return;
	if (made_trees)
		unlinkat(hidden, "trees", AT_REMOVEDIR);
	close(hidden);
	if (made_hidden)
		unlinkat(w->dirfd, MV_HIDDEN_DIR, AT_REMOVEDIR);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The sorted tree file names the new signature uses, in one allocation
 * (pointers, then the strings): free() releases it. NULL on ENOMEM.
 */
static char **tree_names(const struct seal_item *items, size_t n)
{
	const size_t len = MV_TREE_NAME_MAX;
	char **names, *buf;

	if (n > SIZE_MAX / (sizeof(*names) + len) - 1)
		return NULL;
	names = calloc(n + 1, sizeof(*names) + len);
	if (!names)
		return NULL;
	buf = (char *)(names + n + 1);
	for (size_t i = 0; i < n; i++) {
		names[i] = buf + i * len;
		mv_tree_file_name(&items[i].m, names[i]);
	}
	qsort(names, n, sizeof(*names), cmp_str);
	return names;
}

/*
 * After a successful seal: drop trees no file of the new signature uses
 * and temporary files of interrupted runs. Best effort.
 */
static void prune_trees(int trees_fd, const struct seal_item *items, size_t n)
{
	char **used = tree_names(items, n);
	int fd = fcntl(trees_fd, F_DUPFD_CLOEXEC, 0);
	struct dirent *d;
	DIR *dir = NULL;

	if (!used || fd < 0)
		goto out;
	lseek(fd, 0, SEEK_SET);
	dir = fdopendir(fd);
	if (!dir)
		goto out;
	fd = -1;
	while ((d = readdir(dir))) {
		const char *name = d->d_name;
		size_t len = strlen(name);
		bool tmp = strncmp(name, ".tmp.", 5) == 0;
		bool tree = len > 5 && strcmp(name + len - 5, ".tree") == 0;

		if (tmp || (tree && !bsearch(&name, used, n, sizeof(*used), cmp_str)))
			unlinkat(trees_fd, name, 0);
	}
out:
	if (dir)
		closedir(dir);
	if (fd >= 0)
		close(fd);
	free(used);
}

/* "2026-11-25T19:00:00Z" */
static void utc_now(char out[32])
{
	struct tm tm;
	time_t now = time(NULL);

	gmtime_r(&now, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/*
 * The subject name: --name, else the model's base name as model_signing
 * takes it. The mount serves a model only where this name fits its store
 * path (mv_name_bind_check), so the default is the folder's own name: a
 * store sealed in place mounts with no option.
 */
static char *subject_name(const char *model_path, const char *name)
{
	char *copy, *real, *base, *out;
	size_t n;

	if (name && *name)
		return strdup(name);
	copy = strdup(model_path);
	if (!copy)
		return NULL;
	n = strlen(copy);
	while (n > 1 && copy[n - 1] == '/')
		copy[--n] = '\0';
	base = strrchr(copy, '/');
	base = base ? base + 1 : copy;
	if (*base && strcmp(base, ".") != 0 && strcmp(base, "..") != 0) {
		out = strdup(base);
		free(copy);
		return out;
	}
	free(copy);
	real = realpath(model_path, NULL);
	if (!real)
		return NULL;
	base = strrchr(real, '/');
	out = strdup(base && base[1] ? base + 1 : real);
	free(real);
	return out;
}

/* Builds, signs and writes the signature for the hashed items. */
static int write_signature(const struct mv_walk *w, const struct mv_key *key,
                           const struct mv_seal_opts *opts, const char *sig_path,
                           struct seal_item *items, size_t n, struct mv_err *err)
{
	struct mv_manifest m = {0};
	char signed_at[32], *stmt = NULL, *bundle = NULL;
	size_t stmt_len = 0, bundle_len = 0;
	int ret = -ENOMEM;

	m.subject_name = subject_name(w->root, opts->name);
	m.res = calloc(n, sizeof(*m.res));
	m.ignore_paths = malloc(w->n_ignore * sizeof(*m.ignore_paths));
	if (!m.subject_name || !m.res || !m.ignore_paths) {
		mv_err_set(err, ret, "%s: out of memory", w->root);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		m.res[i].name = (char *)items[i].name;
		memcpy(m.res[i].sha256, items[i].sha256, 32);
		m.res[i].has_merkle = true;
		m.res[i].merkle = items[i].m;
	}
	m.n_res = n;
	/* Recorded sorted, so that the same model seals to the same statement. */
	memcpy(m.ignore_paths, w->ignore, w->n_ignore * sizeof(*m.ignore_paths));
	m.n_ignore = w->n_ignore;
	qsort(m.ignore_paths, m.n_ignore, sizeof(*m.ignore_paths), cmp_str);
	m.has_extension = true;
	m.prov = opts->prov;
	if (!m.prov.name)
		m.prov.name = m.subject_name;
	utc_now(signed_at);
	m.prov.signed_at = signed_at;
	m.prov.tool_version = (char *)MV_VERSION;
	ret = mv_statement_build(&m, &stmt, &stmt_len, err);
	if (!ret)
		ret = mv_bundle_build(stmt, stmt_len, key, &bundle, &bundle_len, err);
	if (!ret)
		ret = mv_write_file_atomic(sig_path, bundle, bundle_len, 0644, err);
out:
	free(m.subject_name);
	free(m.res);
	free(m.ignore_paths);
	free(stmt);
	free(bundle);
	return ret;
}

/* Default signature path: MODEL/model.sig, or FILE.sig for a single file. */
static char *sig_path_for(const struct mv_walk *w, const struct mv_seal_opts *opts)
{
	char *p;

	if (opts->signature)
		return strdup(opts->signature);
	if (asprintf(&p, w->single_file ? "%s.sig" : "%s/" MV_SIG_NAME, w->root) < 0)
		return NULL;
	return p;
}

/* Items for a fresh seal: every listed file, refusing the first bad path. */
static int items_from_walk(struct mv_walk *w, struct seal_item **out, struct mv_err *err)
{
	struct seal_item *items;

	for (size_t i = 0; i < w->n; i++) {
		char shown[512];

		if (!w->e[i].error)
			continue;
		mv_name_printable(w->e[i].name, shown, sizeof(shown));
		return mv_err_set(err, w->e[i].error, "%s: %s", shown, w->e[i].why);
	}
	if (!w->n)
		return mv_err_set(err, -EINVAL, "%s: no files to sign", w->root);
	items = calloc(w->n, sizeof(*items));
	if (!items)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", w->root);
	for (size_t i = 0; i < w->n; i++) {
		items[i].name = w->e[i].name;
		items[i].size = w->e[i].size;
	}
	*out = items;
	return 0;
}

/* Items for --trees-only: the files of the verified signature. */
static int items_from_manifest(const struct mv_manifest *m, const char *sig_path,
                               struct seal_item **out, struct mv_err *err)
{
	struct seal_item *items;

	if (!m->has_extension || !m->n_res)
		return mv_err_set(err, -EINVAL,
		                  "%s: no Merkle roots (plain OMS signature): no trees to rebuild",
		                  sig_path);
	items = calloc(m->n_res, sizeof(*items));
	if (!items)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", sig_path);
	for (size_t i = 0; i < m->n_res; i++) {
		if (!m->res[i].has_merkle) {
			free(items);
			return mv_err_set(err, -EINVAL, "%s: %s: no Merkle root in the signature",
			                  sig_path, m->res[i].name);
		}
		items[i].name = m->res[i].name;
		items[i].signed_res = &m->res[i];
		items[i].size = m->res[i].merkle.params.data_size;
	}
	*out = items;
	return 0;
}

static void fill_stats(const struct mv_seal_opts *opts, const struct seal_item *items, size_t n)
{
	if (!opts->stats)
		return;
	opts->stats->files = n;
	opts->stats->bytes = 0;
	for (size_t i = 0; i < n; i++)
		opts->stats->bytes += items[i].size;
}

/* Fills defaults into the tree parameters and checks them. */
static int seal_params(const struct mv_seal_opts *opts, struct mv_seal_opts *o, struct mv_err *err)
{
	struct mv_tree_geometry g;

	*o = *opts;
	if (!o->tree.alg)
		o->tree.alg = MV_HASH_SHA256;
	if (!o->tree.block_size)
		o->tree.block_size = 4096;
	o->tree.data_size = 0;
	if (mv_tree_geometry(&o->tree, &g))
		return mv_err_set(err, -EINVAL, "invalid tree parameters (hash %d, block size %u)",
		                  (int)o->tree.alg, o->tree.block_size);
	return 0;
}

int mv_seal(const char *model_path, const struct mv_key *key, const struct mv_seal_opts *opts,
            struct mv_err *err)
{
	struct mv_walk w;
	struct mv_seal_opts o;
	struct mv_manifest *signed_m = NULL;
	struct seal_ctx c = {.trees_fd = -1};
	struct seal_item *items = NULL;
	bool made_hidden = false, made_trees = false;
	char *sig_path = NULL;
	size_t n = 0;
	int ret;

	ret = mv_walk_open(&w, model_path, opts->ignore_paths, opts->n_ignore_paths, err);
	if (ret)
		goto out;
	ret = seal_params(opts, &o, err);
	if (ret)
		goto out;
	sig_path = sig_path_for(&w, &o);
	if (!sig_path) {
		ret = mv_err_set(err, -ENOMEM, "%s: out of memory", model_path);
		goto out;
	}
	if (o.trees_only) {
		if (w.single_file || !o.trust) {
			ret = mv_err_set(err, -EINVAL, "%s: %s", model_path,
			                 w.single_file ? "a single file has no tree folder"
			                               : "--trees-only needs trust inputs");
			goto out;
		}
		ret = mv_sig_open(sig_path, o.trust, NULL, NULL, &signed_m, err);
		if (!ret)
			ret = items_from_manifest(signed_m, sig_path, &items, err);
		n = signed_m ? signed_m->n_res : 0;
	} else {
		if (!key) {
			ret = mv_err_set(err, -EINVAL, "%s: no signing key", model_path);
			goto out;
		}
		ret = mv_walk_list(&w, err);
		if (!ret)
			ret = items_from_walk(&w, &items, err);
		n = w.n;
	}
	if (ret)
		goto out;
	if (!w.single_file) {
		c.trees_fd = open_trees_dir(&w, &made_hidden, &made_trees, err);
		if (c.trees_fd < 0) {
			ret = c.trees_fd;
			goto out;
		}
	}
	c.w = &w;
	c.opts = &o;
	c.items = items;
	c.want_sha256 = !o.trees_only;
	/*
	 * Trees are not fsync'd: they are caches, checked against the signed
	 * roots on every use, so one torn by a crash is detected and rebuilt
	 * (--trees-only). model.sig itself is written durably.
	 */
	ret = seal_items(&c, n, err);
	if (!ret && !o.trees_only)
		ret = write_signature(&w, key, &o, sig_path, items, n, err);
	if (ret && c.trees_fd >= 0)
		undo_trees(&w, c.trees_fd, items, n, made_hidden, made_trees);
	else if (c.trees_fd >= 0 && !o.trees_only)
		prune_trees(c.trees_fd, items, n);
	if (!ret)
		fill_stats(opts, items, n);
out:
	if (c.trees_fd >= 0)
		close(c.trees_fd);
	free(c.order);
	free(items);
	free(sig_path);
	mv_manifest_free(signed_m);
	mv_walk_free(&w);
	return ret;
}
