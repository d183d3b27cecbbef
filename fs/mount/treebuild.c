// SPDX-License-Identifier: Apache-2.0
/*
 * treebuild.c - missing Merkle trees, built by a bounded pool of threads
 * instead of the FUSE worker that needs them (issue #12; docs/mount.md,
 * "Missing trees").
 *
 * Building a tree reads and hashes the whole file: seconds for a big model,
 * hours for a sparse file whose signed size is 2^40. Done on the FUSE
 * worker, it held that worker (and every reader of the file) for as long.
 * Here a build is a job: the worker that needs the tree queues it (or joins
 * the node's job already queued or running) and waits at most
 * --tree-build-wait; past that it gets an error (EIO for the reader) and one
 * tree-build-wait line, while the build goes on. Its tree lands in
 * CACHE/trees, where the next open finds it.
 *
 * Bounds: at most --tree-builders threads (started on demand, joined at
 * unmount), at most MFS_TB_QUEUE_MAX jobs waiting for one (a job beyond
 * fails at once), one job per node. A job holds a reference on its model
 * version, a duplicate of the plain data fd (the waiter's may be closed once
 * it gives up) and, while it runs, one tree file being written.
 *
 * The negative cache (ftree.c) lives under each node's load_lock, which a
 * builder never takes: a job records its result and identity, and the
 * waiter applies them; the result of a build nobody waited for any more (a
 * fresh tree, or a data mismatch) is kept, at most MFS_TB_KEPT_MAX, for the
 * node's next tree load to claim.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "mount_int.h"

/*
 * After a wait for a build timed out, requests for the same build within
 * this time (or --tree-build-wait, if shorter) fail at once instead of
 * waiting again: an open(2) of a name not looked up yet is a lookup and an
 * open request, and an open checks the file's format twice (visibility,
 * then the open itself). Each would otherwise wait in turn, and the
 * caller would get EIO after up to three times --tree-build-wait.
 */
#define TB_GRACE_NS (250ull * 1000000u)

enum tb_state {
	TB_QUEUED,
	TB_RUNNING,
	TB_DONE,
};

/*
 * One tree build. Fields other than @cancel are guarded by the pool lock,
 * except what the running builder alone uses (@n, @data_fd, @zf, @why:
 * set before it is queued, read-only after).
 */
struct mfs_tbjob {
	struct mfs_tbjob *next;      /* in the pool's list while @listed */
	bool listed;                 /* queued, running, or kept for a later waiter */
	uint64_t ino, gen;           /* its node's inode number and generation: unique */
	struct mfs_node *n;          /* valid until TB_DONE (@model is referenced) */
	struct mfs_model *model;     /* the reference taken when it was queued */
	int data_fd;                 /* our duplicate of the plain data, or -1 (packed) */
	const struct mfs_bstore *bs; /* where data_fd is a handle */
	struct mfs_zfile *zf;        /* the packed copy, or NULL */
	const char *why;             /* static: why the tree is built, for the log */
	struct mfs_tb_result res;    /* @res.id at queueing; @res.ret once TB_DONE */
	int state;                   /* enum tb_state */
	int cancel;                  /* atomic: unmounting, stop between blocks */
	unsigned waiters;            /* threads in mfs_tree_build_wait() holding it */
	uint64_t gave_up_ns;         /* CLOCK_MONOTONIC of its last timed-out wait; 0: none */
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- building one tree ---- */

/* The tree sink of a job: the tree file's, unless unmounting cancelled it. */
struct tb_sink {
	struct mv_tree_writer *w;
	const int *cancel;
};

/*
 * Called by the tree builder every time a hash block fills, i.e. every
 * block_size / digest_size data blocks (512 KiB of 4 KiB blocks hashed with
 * SHA-256): often enough that an unmount does not wait for a huge file.
 * Return: what the writer returns, or -ECANCELED.
 */
static int tb_sink_fn(void *ctx, unsigned level, uint64_t index, const void *block, size_t bs)
{
	struct tb_sink *s = ctx;

	if (__atomic_load_n(s->cancel, __ATOMIC_RELAXED))
		return -ECANCELED;
	return mv_tree_writer_sink(s->w, level, index, block, bs);
}

/* Logs a failed build: a data mismatch is a failed check, the rest the cache's or ours. */
static void tb_log_failure(struct mfs_mount *m, struct mfs_node *n, int ret,
                           const struct mv_err *err)
{
	char mq[256], fq[256];

	mfs_log_value(n->model->path, mq, sizeof(mq));
	mfs_log_value(n->res->name, fq, sizeof(fq));
	if (ret == -ECANCELED) {
		mfs_log(LOG_INFO, "tree-build-cancelled model=%s file=%s reason=\"unmounting\"", mq,
		        fq);
		return;
	}
	if (ret == -EBADMSG)
		mfs_count_failure(m, n);
	mfs_log(LOG_ERR, "%s model=%s file=%s reason=\"%s\"",
	        ret == -EBADMSG ? "verify-failure" : "tree-build-failed", mq, fq,
	        err->msg[0] ? err->msg : strerror(-ret));
}

/*
 * Opens the temporary tree file in the cache folder. Out of descriptors,
 * cached tree fds give way and it is tried once more (as mfs_openat_bounded()).
 * Return: 0 or -errno, with @err set.
 */
static int tb_writer_open(struct mfs_mount *m, struct mfs_node *n, struct mv_tree_writer *w,
                          struct mv_err *err)
{
	int ret = mv_tree_writer_open(w, m->cache_fd, &n->res->merkle.params);

	if (mfs_fd_errno(ret)) {
		mfs_fdcache_shed(m);
		ret = mv_tree_writer_open(w, m->cache_fd, &n->res->merkle.params);
		if (mfs_fd_errno(ret))
			mfs_fd_exhausted(m, "tree-build", ret);
	}
	if (ret)
		mv_err_set(err, ret, "cache folder: %s", strerror(-ret));
	return ret;
}

/*
 * tb_build() - build the tree of @j's node into the cache folder
 * @j: in: a running job; its data is the plain file @j->data_fd, or the
 *     decompressed frames of the packed copy @j->zf (bounded, see
 *     mv_zpack_measure)
 * The file gets its final name only if the root and digest equal the signed
 * ones (a plain OMS file: if its SHA-256 is the signed one, and its
 * measurement is then kept as the node's derived root, tb_derive()); a concurrent builder of the
 * same digest (another mount, another node with the same content) writes identical bytes, and the
 * rename is atomic. Return: 0, -EBADMSG (the data does not match the signature), -ECANCELED
 * (unmounting), or -errno.
 */
/*
 * The plain data of a job: a handle of the backing store; for a file signed
 * by SHA-256 alone (plain OMS), the SHA-256 of what was read, in order.
 */
struct tb_data {
	struct mfs_mount *m;
	int h;
	EVP_MD_CTX *sha; /* NULL: the file has a signed root */
	uint64_t next;   /* with @sha: the offset the next read must start at */
};

/*
 * mv_pread_fn over struct tb_data: the backing store's pread, dropping what
 * it read from the store's cache (unless --keep-backing-cache). A build is
 * one pass over the whole file whose bytes are hashed, not served: kept, a
 * 10 GiB model would push 10 GiB of other files (the mount's cached models)
 * out of memory. Its waiting reader reads the file again from disk.
 */
static ssize_t tb_data_pread(void *ctx, void *buf, size_t len, uint64_t off)
{
	struct tb_data *d = ctx;
	ssize_t got;

	if (d->sha && off != d->next)
		return -EIO; /* the whole-file hash needs every byte once, in order */
	got = d->m->bstore.ops->pread(&d->m->bstore, d->h, buf, len, off);
	if (got > 0 && d->sha) {
		if (EVP_DigestUpdate(d->sha, buf, (size_t)got) != 1)
			return -ENOMEM;
		d->next += (uint64_t)got;
	}
	if (got > 0)
		mfs_bstore_drop(&d->m->bstore, d->h, off, (uint64_t)got);
	return got;
}

/*
 * tb_check() - does what was measured match what is signed?
 * @n: in: the node; a plain OMS file (no signed root) is checked by the
 *     SHA-256 of its data (@sha, fed in order by tb_data_pread())
 * @meas: in: the measurement of the data
 * @err: out: the reason
 * Return: 0 or -EBADMSG.
 */
static int tb_check(const struct mfs_node *n, EVP_MD_CTX *sha, const struct mv_measurement *meas,
                    struct mv_err *err)
{
	size_t ds = mv_hash_digest_size(n->res->merkle.params.alg);
	uint8_t sum[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	if (!sha) {
		if (memcmp(meas->root, n->res->merkle.root, ds) != 0 ||
		    memcmp(meas->digest, n->res->merkle.digest, ds) != 0)
			return mv_err_set(err, -EBADMSG,
			                  "data does not match the signed root; tree not built");
		return 0;
	}
	if (EVP_DigestFinal_ex(sha, sum, &len) != 1 || len != 32 ||
	    memcmp(sum, n->res->sha256, 32) != 0)
		return mv_err_set(err, -EBADMSG,
		                  "data does not match the signed SHA-256; tree not derived");
	return 0;
}

/*
 * Keeps the measurement of a plain OMS file once its tree is in the cache
 * folder: from now on its reads are checked against that root. Set once;
 * a rebuild of the same checked data measures the same root. 0 or -ENOMEM.
 */
static int tb_derive(struct mfs_node *n, const struct mv_measurement *meas)
{
	struct mv_measurement *d = malloc(sizeof(*d)), *seen = NULL;

	if (!d)
		return -ENOMEM;
	*d = *meas;
	if (!__atomic_compare_exchange_n(&n->derived, &seen, d, false, __ATOMIC_ACQ_REL,
	                                 __ATOMIC_ACQUIRE))
		free(d);
	return 0;
}

static int tb_build(struct mfs_mount *m, struct mfs_tbjob *j)
{
	struct mfs_node *n = j->n;
	struct mv_tree_writer w = {.dirfd = m->cache_fd, .fd = -1};
	struct tb_sink sink = {.w = &w, .cancel = &j->cancel};
	struct tb_data data = {.m = m, .h = j->data_fd};
	char name[MV_TREE_NAME_MAX];
	struct mv_measurement meas;
	struct mv_err err = {0};
	uint64_t t0 = mono_ns();
	int ret;

	mfs_log(LOG_NOTICE,
	        "tree-build model=%s file=%s stored_as=%s reason=\"%s\" bytes=%" PRIu64
	        " note=\"reads the whole file once\"",
	        n->model->path, n->res->name, j->zf ? "packed" : "plain", j->why,
	        n->res->merkle.params.data_size);
	ret = tb_writer_open(m, n, &w, &err);
	if (!ret && !n->res->has_merkle &&
	    (j->zf || !(data.sha = EVP_MD_CTX_new()) ||
	     EVP_DigestInit_ex(data.sha, EVP_sha256(), NULL) != 1))
		ret = j->zf ? -EINVAL : -ENOMEM; /* a plain OMS file has no packed copy */
	if (ret)
		goto out;
	if (j->zf)
		ret = mv_zpack_measure(j->zf->fd, n->res->name, &n->res->merkle.params, NULL,
		                       tb_sink_fn, &sink, &meas, &err);
	else
		ret = mv_measure_pread(tb_data_pread, &data, &n->res->merkle.params, tb_sink_fn,
		                       &sink, &meas);
	if (__atomic_load_n(&j->cancel, __ATOMIC_RELAXED))
		ret = -ECANCELED; /* whatever the sink's error became on the way up */
	if (!ret)
		ret = tb_check(n, data.sha, &meas, &err);
	if (ret)
		goto out;
	mv_tree_file_name(&meas, name); /* the signed root's name: they are equal */
	ret = mv_tree_writer_commit(&w, &meas, name, true, NULL);
	if (ret) {
		mv_err_set(&err, ret, "cache folder: %s", strerror(-ret));
		goto out;
	}
	if (!n->res->has_merkle && tb_derive(n, &meas)) {
		ret = -ENOMEM;
		goto out;
	}
	mfs_count(&m->ctr.trees_built, 1);
	mfs_log(LOG_INFO, "tree-built model=%s file=%s ms=%" PRIu64, n->model->path, n->res->name,
	        (mono_ns() - t0) / 1000000u);
out:
	EVP_MD_CTX_free(data.sha);
	mv_tree_writer_abort(&w);
	if (ret)
		tb_log_failure(m, n, ret, &err);
	return ret;
}

/* ---- the job list (pool lock held) ---- */

/* Frees a job nobody holds: not listed, no waiter. Pool lock not needed. */
static void tb_job_free(struct mfs_tbjob *j)
{
	if (j->data_fd >= 0)
		j->bs->ops->close(j->bs, j->data_fd);
	free(j);
}

static void tb_append(struct mfs_treebuild *p, struct mfs_tbjob *j)
{
	struct mfs_tbjob **pp = &p->jobs;

	while (*pp)
		pp = &(*pp)->next;
	j->next = NULL;
	*pp = j;
	j->listed = true;
}

static void tb_unlink(struct mfs_treebuild *p, struct mfs_tbjob *j)
{
	for (struct mfs_tbjob **pp = &p->jobs; *pp; pp = &(*pp)->next) {
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	}
	j->next = NULL;
	j->listed = false;
}

/*
 * The job of node @n: @done false, queued or running; true, kept. Or NULL.
 * Matched by inode number and generation, not by pointer: a kept job
 * outlives its node's version, whose memory may hold another node later.
 */
static struct mfs_tbjob *tb_find(struct mfs_treebuild *p, const struct mfs_node *n, bool done)
{
	for (struct mfs_tbjob *j = p->jobs; j; j = j->next)
		if (j->ino == n->ino && j->gen == n->gen && (j->state == TB_DONE) == done)
			return j;
	return NULL;
}

/* The oldest queued job, or NULL. */
static struct mfs_tbjob *tb_next_queued(struct mfs_treebuild *p)
{
	for (struct mfs_tbjob *j = p->jobs; j; j = j->next)
		if (j->state == TB_QUEUED)
			return j;
	return NULL;
}

/*
 * Keeps finished job @j (a result no waiter saw) for the next caller,
 * forgetting the oldest kept one beyond MFS_TB_KEPT_MAX: at worst that file
 * is hashed once more. Return: a job to free after unlocking, or NULL.
 */
static struct mfs_tbjob *tb_keep(struct mfs_treebuild *p, struct mfs_tbjob *j)
{
	struct mfs_tbjob *old = NULL;

	p->kept++;
	if (p->kept <= MFS_TB_KEPT_MAX)
		return NULL;
	for (old = p->jobs; old && old->state != TB_DONE; old = old->next)
		;
	tb_unlink(p, old);
	p->kept--;
	return old; /* kept jobs have no waiter */
}

/*
 * Records the end of running job @j with @ret and wakes its waiters. A
 * result no waiter will see is kept for the node's next tree load: a fresh
 * tree (a rebuild must not run again for it), a data mismatch with a known
 * identity (the negative cache). Other failures are tried again anyway.
 * Return: a job to free after unlocking, or NULL.
 */
static struct mfs_tbjob *tb_finish(struct mfs_treebuild *p, struct mfs_tbjob *j, int ret)
{
	j->state = TB_DONE;
	j->res.ret = ret;
	j->n = NULL; /* the model's reference goes next: no touching it */
	p->running--;
	pthread_cond_broadcast(&p->done);
	if (!j->waiters && (ret == 0 || (ret == -EBADMSG && j->res.have_id)))
		return tb_keep(p, j);
	tb_unlink(p, j);
	return j->waiters ? NULL : j;
}

/* ---- builder threads ---- */

/*
 * A builder: takes the oldest queued job, builds it without the pool lock,
 * records the result, drops the job's model reference. Until unmount.
 */
static void *tb_main(void *arg)
{
	struct mfs_mount *m = arg;
	struct mfs_treebuild *p = &m->tb;
	struct mfs_tbjob *j = NULL, *gone;
	struct mfs_model *model;
	int ret;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->stopping && !(j = tb_next_queued(p))) {
			p->idle++;
			pthread_cond_wait(&p->work, &p->lock);
			p->idle--;
		}
		if (p->stopping)
			break;
		j->state = TB_RUNNING;
		p->queued--;
		p->running++;
		pthread_mutex_unlock(&p->lock);
		ret = tb_build(m, j);
		if (j->data_fd >= 0)
			j->bs->ops->close(j->bs, j->data_fd); /* a kept job holds no descriptor */
		j->data_fd = -1;
		model = j->model;
		pthread_mutex_lock(&p->lock);
		gone = tb_finish(p, j, ret);
		pthread_mutex_unlock(&p->lock);
		if (gone)
			tb_job_free(gone);
		/* Last: this may free a retired version, and with it the node. */
		mfs_model_unref(m, model, 1);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/*
 * Starts one more builder if the queue outgrew the idle ones and the limit
 * allows. Its signals are blocked: SIGTERM, SIGINT and SIGHUP must reach the
 * FUSE loop and the reload thread, not a builder. Pool lock held.
 */
static void tb_grow(struct mfs_mount *m, struct mfs_treebuild *p)
{
	sigset_t all, old;
	int err;

	if (p->idle >= p->queued || p->n_threads >= p->max_threads)
		return;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	err = pthread_create(&p->threads[p->n_threads], NULL, tb_main, m);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		mfs_log(LOG_ERR, "thread-failed thread=tree-builder reason=\"%s\" builders=%u",
		        strerror(err), p->n_threads);
		return;
	}
	pthread_setname_np(p->threads[p->n_threads], "mfs-treebuild");
	p->n_threads++;
	mfs_log(LOG_INFO, "tree-builder-started builders=%u max=%u", p->n_threads, p->max_threads);
}

/* ---- waiting for a build ---- */

/* A new job for @n, not queued yet: duplicates the plain data fd. NULL/-errno in *@ret. */
static struct mfs_tbjob *tb_job_new(struct mfs_mount *m, struct mfs_node *n, int data_fd,
                                    struct mfs_zfile *zf, const char *why,
                                    const struct mfs_file_id *id, int *ret)
{
	struct mfs_tbjob *j = calloc(1, sizeof(*j));

	*ret = -ENOMEM;
	if (!j)
		return NULL;
	j->ino = n->ino;
	j->gen = n->gen;
	j->n = n;
	j->model = n->model;
	j->zf = zf;
	j->why = why;
	j->data_fd = -1;
	j->bs = &m->bstore;
	j->res.have_id = id != NULL;
	if (id)
		j->res.id = *id;
	*ret = 0;
	if (zf)
		return j; /* the packed copy lives with the node: the model reference keeps it */
	/* Our own: the waiter closes its fd when it gives up or its handle goes. */
	j->data_fd = m->bstore.ops->dup(&m->bstore, data_fd);
	*ret = j->data_fd < 0 ? j->data_fd : 0;
	if (mfs_fd_errno(*ret)) {
		/* As mfs_openat_bounded(): cached tree fds give way, then one retry. */
		mfs_fdcache_shed(m);
		j->data_fd = m->bstore.ops->dup(&m->bstore, data_fd);
		*ret = j->data_fd < 0 ? j->data_fd : 0;
		if (mfs_fd_errno(*ret))
			mfs_fd_exhausted(m, "tree-build", *ret);
	}
	if (*ret) {
		free(j);
		return NULL;
	}
	return j;
}

/*
 * Joins @n's queued or running job, else queues @fresh (starting a builder
 * if none is idle). Pool lock held. @now: CLOCK_MONOTONIC ns.
 * Return: the job to wait for (one more waiter), or NULL: queue full,
 * unmounting, or no builder thread (@fresh is left to the caller). With
 * *@at_once set, the job's last wait timed out within the grace time
 * (TB_GRACE_NS): do not wait (no waiter was added).
 */
static struct mfs_tbjob *tb_enqueue(struct mfs_mount *m, struct mfs_node *n,
                                    struct mfs_tbjob *fresh, uint64_t now, bool *at_once)
{
	struct mfs_treebuild *p = &m->tb;
	struct mfs_tbjob *j = tb_find(p, n, false);
	uint64_t grace = p->wait_ns < TB_GRACE_NS ? p->wait_ns : TB_GRACE_NS;

	*at_once = false;
	if (p->stopping)
		return NULL;
	if (j && j->gave_up_ns && now - j->gave_up_ns < grace) {
		*at_once = true; /* the same caller's next request, most likely: no second wait */
		return j;
	}
	if (!j) {
		if (p->queued >= MFS_TB_QUEUE_MAX)
			return NULL;
		j = fresh;
		tb_append(p, j);
		p->queued++;
		tb_grow(m, p);
		if (!p->n_threads) {
			/* No builder could start (logged): refuse rather than queue forever. */
			tb_unlink(p, j);
			p->queued--;
			return NULL;
		}
		mfs_model_ref(j->model, 1); /* we are in a request on one of its inodes */
		pthread_cond_signal(&p->work);
	}
	j->waiters++;
	return j;
}

/* Logs (rate-limited per mount) and counts a build refused at once. */
static void tb_refused(struct mfs_mount *m, struct mfs_node *n, bool stopping)
{
	char mq[256], fq[256];
	uint64_t dropped = 0;

	mfs_count(&m->ctr.tree_builds_refused, 1);
	if (!mfs_log_ratelimit(&m->tb.full_rl, &dropped))
		return;
	mfs_log(LOG_ERR,
	        "tree-build-refused model=%s file=%s queued=%u reason=\"%s\" suppressed=%" PRIu64,
	        mfs_log_value(n->model->path, mq, sizeof(mq)),
	        mfs_log_value(n->res->name, fq, sizeof(fq)), MFS_TB_QUEUE_MAX,
	        stopping ? "unmounting" : "too many tree builds queued; try again", dropped);
}

/* Logs (rate-limited per file, as other failures) and counts a wait that ran out. */
static void tb_timed_out(struct mfs_mount *m, struct mfs_node *n, uint64_t waited_ns, int state)
{
	char mq[256], fq[256], sup[48] = "";
	uint64_t dropped = 0;

	mfs_count(&m->ctr.tree_build_wait_timeouts, 1);
	if (!mfs_log_ratelimit(&n->fail_rl, &dropped))
		return;
	if (dropped)
		snprintf(sup, sizeof(sup), " suppressed=%" PRIu64, dropped);
	mfs_log(LOG_WARNING,
	        "tree-build-wait model=%s file=%s waited_ms=%" PRIu64
	        " state=%s reason=\"still building in the background; try again\"%s",
	        mfs_log_value(n->model->path, mq, sizeof(mq)),
	        mfs_log_value(n->res->name, fq, sizeof(fq)), waited_ns / 1000000u,
	        state == TB_QUEUED ? "queued" : "running", sup);
}

/*
 * Waits for @j until it is done, the pool stops or @deadline (CLOCK_MONOTONIC
 * ns) passes, then lets go of it. Pool lock held.
 * Return: 0 with @res set, -ETIMEDOUT (@state: where @j was), -EAGAIN (stopping).
 * Sets *@gone to @j when the caller must free it after unlocking.
 */
static int tb_wait_locked(struct mfs_treebuild *p, struct mfs_tbjob *j, uint64_t deadline,
                          struct mfs_tb_result *res, int *state, struct mfs_tbjob **gone)
{
	struct timespec ts = {.tv_sec = (time_t)(deadline / 1000000000u),
	                      .tv_nsec = (long)(deadline % 1000000000u)};
	int ret = 0;

	while (j->state != TB_DONE && !p->stopping && ret != ETIMEDOUT)
		ret = pthread_cond_timedwait(&p->done, &p->lock, &ts);
	*state = j->state;
	*gone = NULL;
	if (j->state == TB_DONE)
		*res = j->res;
	if (--j->waiters == 0 && !j->listed)
		*gone = j;
	if (*state == TB_DONE)
		return 0;
	return p->stopping ? -EAGAIN : -ETIMEDOUT;
}

int mfs_tree_build_wait(struct mfs_mount *m, struct mfs_node *n, int data_fd, struct mfs_zfile *zf,
                        const char *why, const struct mfs_file_id *id, struct mfs_tb_result *res)
{
	struct mfs_treebuild *p = &m->tb;
	struct mfs_tbjob *fresh, *j, *gone = NULL;
	bool stopping, at_once;
	uint64_t t0 = mono_ns();
	int ret, state;

	if (!p->ready)
		return -EAGAIN;
	fresh = tb_job_new(m, n, data_fd, zf, why, id, &ret);
	if (!fresh)
		return ret;
	pthread_mutex_lock(&p->lock);
	j = tb_enqueue(m, n, fresh, t0, &at_once);
	stopping = p->stopping;
	pthread_mutex_unlock(&p->lock);
	if (j != fresh)
		tb_job_free(fresh); /* joined the node's job, or refused */
	if (!j) {
		tb_refused(m, n, stopping);
		return -EAGAIN;
	}
	if (at_once)
		return -ETIMEDOUT; /* counted and logged by the wait that timed out */
	/* Other openers of this file may join meanwhile; its other locks stay free. */
	pthread_mutex_unlock(&n->load_lock);
	pthread_mutex_lock(&p->lock);
	ret = tb_wait_locked(p, j, t0 + p->wait_ns, res, &state, &gone);
	if (ret == -ETIMEDOUT)
		j->gave_up_ns = mono_ns();
	pthread_mutex_unlock(&p->lock);
	if (gone)
		tb_job_free(gone);
	if (ret == -ETIMEDOUT)
		tb_timed_out(m, n, mono_ns() - t0, state);
	else if (ret == -EAGAIN)
		tb_refused(m, n, true);
	pthread_mutex_lock(&n->load_lock);
	return ret;
}

bool mfs_tree_build_kept(struct mfs_mount *m, struct mfs_node *n, struct mfs_tb_result *res)
{
	struct mfs_treebuild *p = &m->tb;
	struct mfs_tbjob *j;

	if (!p->ready)
		return false;
	pthread_mutex_lock(&p->lock);
	j = tb_find(p, n, true);
	if (j) {
		*res = j->res;
		tb_unlink(p, j);
		p->kept--;
	}
	pthread_mutex_unlock(&p->lock);
	if (j)
		tb_job_free(j);
	return j != NULL;
}

/* ---- the pool's life ---- */

void mfs_treebuild_init(struct mfs_mount *m, unsigned builders, unsigned wait_ms)
{
	struct mfs_treebuild *p = &m->tb;
	pthread_condattr_t ca;

	if (!builders || builders > MFS_TB_MAX_BUILDERS)
		builders = MFS_TB_DEFAULT_BUILDERS;
	if (!wait_ms || wait_ms > MFS_TB_MAX_WAIT_MS)
		wait_ms = MFS_TB_DEFAULT_WAIT_MS;
	p->max_threads = builders;
	p->wait_ns = (uint64_t)wait_ms * 1000000u;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	/* Waits are deadlines on the monotonic clock: a clock step cannot stretch them. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->done, &ca);
	pthread_condattr_destroy(&ca);
	p->ready = true;
}

void mfs_treebuild_cancel(struct mfs_mount *m)
{
	struct mfs_treebuild *p = &m->tb;

	if (!p->ready)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	for (struct mfs_tbjob *j = p->jobs; j; j = j->next)
		__atomic_store_n(&j->cancel, 1, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&p->work);
	pthread_cond_broadcast(&p->done);
	pthread_mutex_unlock(&p->lock);
}

void mfs_treebuild_stop(struct mfs_mount *m)
{
	struct mfs_treebuild *p = &m->tb;
	struct mfs_tbjob *j, *next;

	if (!p->ready)
		return;
	mfs_treebuild_cancel(m);
	/* No thread starts once stopping is set; a running build stops at its next block. */
	for (unsigned i = 0; i < p->n_threads; i++)
		pthread_join(p->threads[i], NULL);
	p->n_threads = 0;
	/* The FUSE loop is over: no waiter is left, only queued and kept jobs. */
	for (j = p->jobs; j; j = next) {
		next = j->next;
		if (j->state == TB_QUEUED)
			mfs_model_unref(m, j->model, 1);
		tb_job_free(j);
	}
	p->jobs = NULL;
	p->queued = p->kept = 0;
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done);
	pthread_mutex_destroy(&p->lock);
	p->ready = false;
}

void mfs_treebuild_stats(struct mfs_mount *m, struct mfs_tb_stats *out)
{
	struct mfs_treebuild *p = &m->tb;

	memset(out, 0, sizeof(*out));
	out->max_threads = p->max_threads;
	out->wait_ms = p->wait_ns / 1000000u;
	if (!p->ready)
		return;
	pthread_mutex_lock(&p->lock);
	out->threads = p->n_threads;
	out->running = p->running;
	out->queued = p->queued;
	pthread_mutex_unlock(&p->lock);
}
