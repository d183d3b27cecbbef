// SPDX-License-Identifier: Apache-2.0
/*
 * prefetch.c - verified prefetch: bytes verified ahead of the reader and
 * pushed into the kernel's page cache with fuse_lowlevel_notify_store(), so
 * that sequential reads and mmap faults find them there.
 *
 * Why: a loader that maps a safetensors file faults page by page, and each
 * fault becomes a READ of the readahead window that the daemon verifies
 * while the loader waits. Verifying the next window on another thread
 * overlaps the hashing with the loader's own work. Only what
 * mfs_file_read() returned is pushed: the same verified path as a READ, so a
 * tampered block ends the push there, and the reader's own READ of that
 * block then gets EIO. A push never replaces bytes of another version:
 * nodes of a version keep their inode numbers only while the version lives,
 * and a job holds a reference to it.
 *
 * Two sources of work:
 *   - read-ahead: a READ that continues its handle's sequential run (what
 *     mmap faults and streaming reads do) asks for the window after what
 *     was already pushed; a random reader never triggers it;
 *   - mount-time (--prefetch PATTERN): whole files, read through the mount
 *     once it answers (mfs_prefetch_mount_time(), on the ready thread).
 * Bounds: one queue of at most PF_QUEUE_MAX jobs (a request that finds it
 * full is dropped and counted: prefetch is advice), PF_THREADS workers,
 * each job one backing handle and one model reference, PF_WINDOW bytes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "mount_int.h"

#define PF_THREADS   2
#define PF_QUEUE_MAX 64
#define PF_WINDOW    (32ull << 20) /* pushed ahead of the reader */
/* A READ this close after the run's end still continues it: concurrent
 * faults of one mapping arrive slightly out of order. */
#define PF_SLACK         (4ull << 20)
#define PF_ALIGN         (2ull << 20) /* window boundaries (mfs_prefetch_on_read()) */
#define MFS_PF_MAX_DEPTH 32           /* folders below the mountpoint a --prefetch walk enters */

struct pf_job {
	struct pf_job *next;
	struct mfs_node *n; /* kept alive by the reference on n->model */
	uint64_t off, end;
};

struct mfs_prefetch {
	struct mfs_mount *m;
	struct fuse_session *se;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct pf_job *head, *tail;
	size_t queued;
	bool stop;
	pthread_t threads[PF_THREADS];
	unsigned n_threads;
};

/* Pushes verified bytes [j->off, j->end) of j->n, one MFS_MAX_READ at a time. */
static void pf_run(struct mfs_prefetch *pf, struct pf_job *j)
{
	struct mfs_mount *m = pf->m;
	const uint8_t *p;
	uint64_t off = j->off;
	size_t got;
	int fd = -1, ret;

	ret = mfs_open_backing(m, j->n, &fd);
	while (!ret && off < j->end && !__atomic_load_n(&pf->stop, __ATOMIC_RELAXED)) {
		size_t want = j->end - off < MFS_MAX_READ ? (size_t)(j->end - off) : MFS_MAX_READ;
		struct fuse_bufvec bv = FUSE_BUFVEC_INIT(0);

		ret = mfs_file_read(m, j->n, fd, off, want, &p, &got);
		if (ret || !got)
			break; /* logged and counted by the read; nothing of it pushed */
		bv.buf[0].mem = (void *)p;
		bv.buf[0].size = got;
		/* -ENOENT: the kernel forgot the inode (closed, evicted): stop. */
		ret = fuse_lowlevel_notify_store(pf->se, j->n->ino, (off_t)off, &bv, 0);
		if (ret)
			break;
		mfs_count(&m->ctr.prefetch_bytes, got);
		off += got;
	}
	if (ret && ret != -ENOENT)
		mfs_count(&m->ctr.prefetch_stopped, 1);
	mfs_close_backing(m, fd);
}

static void *pf_worker(void *arg)
{
	struct mfs_prefetch *pf = arg;
	struct pf_job *j;

	for (;;) {
		pthread_mutex_lock(&pf->lock);
		while (!pf->head && !pf->stop)
			pthread_cond_wait(&pf->cond, &pf->lock);
		j = pf->stop ? NULL : pf->head;
		if (j) {
			pf->head = j->next;
			if (!pf->head)
				pf->tail = NULL;
			pf->queued--;
		}
		pthread_mutex_unlock(&pf->lock);
		if (!j)
			return NULL;
		pf_run(pf, j);
		mfs_model_unref(pf->m, j->n->model, 1);
		free(j);
	}
}

/* Queues [off, end) of @n; false when the queue is full or memory is short. */
static bool pf_enqueue(struct mfs_prefetch *pf, struct mfs_node *n, uint64_t off, uint64_t end)
{
	struct pf_job *j;
	bool ok = false;

	pthread_mutex_lock(&pf->lock);
	if (pf->stop || pf->queued >= PF_QUEUE_MAX)
		goto out;
	j = malloc(sizeof(*j));
	if (!j)
		goto out;
	*j = (struct pf_job){.n = n, .off = off, .end = end};
	mfs_model_ref(n->model, 1); /* in a FUSE request on @n: alive */
	if (pf->tail)
		pf->tail->next = j;
	else
		pf->head = j;
	pf->tail = j;
	pf->queued++;
	mfs_count(&pf->m->ctr.prefetch_jobs, 1);
	pthread_cond_signal(&pf->cond);
	ok = true;
out:
	pthread_mutex_unlock(&pf->lock);
	return ok;
}

void mfs_prefetch_on_read(struct mfs_mount *m, struct mfs_node *n, struct mfs_pf_stream *s,
                          uint64_t off, size_t len)
{
	uint64_t size = n->res->merkle.params.data_size, end = off + len;
	uint64_t run, pushed, from, to;

	if (!m->pf || n->kind != MFS_N_FILE || !len)
		return;
	run = __atomic_load_n(&s->run_end, __ATOMIC_RELAXED);
	/* Sequential: from the start, or continuing the run (with some slack). */
	if (off != 0 && (off > run + PF_SLACK || off + PF_SLACK < run))
		return (void)__atomic_store_n(&s->run_end, end, __ATOMIC_RELAXED);
	if (end > run)
		__atomic_store_n(&s->run_end, end, __ATOMIC_RELAXED);
	pushed = __atomic_load_n(&s->pushed, __ATOMIC_RELAXED);
	if (pushed >= size || pushed > end + PF_WINDOW / 2)
		return; /* enough ahead already */
	/*
	 * Windows start and end on PF_ALIGN boundaries (but at the end of the
	 * file): the reader's own READs finish the piece before, and the store
	 * drops the backing pages of whole 2 MiB pieces once one handle served
	 * them (bstore_local.c), so a piece shared by two handles would stay.
	 */
	from = pushed > end ? pushed : (end + PF_ALIGN - 1) / PF_ALIGN * PF_ALIGN;
	to = (end + PF_WINDOW) / PF_ALIGN * PF_ALIGN;
	if (to > size)
		to = size;
	if (from >= to)
		return;
	/* One request per window: the handle's concurrent READs race for it. */
	if (!__atomic_compare_exchange_n(&s->pushed, &pushed, to, false, __ATOMIC_RELAXED,
	                                 __ATOMIC_RELAXED))
		return;
	if (!pf_enqueue(m->pf, n, from, to)) {
		mfs_count(&m->ctr.prefetch_dropped, 1);
		__atomic_store_n(&s->pushed, pushed, __ATOMIC_RELAXED);
	}
}

int mfs_prefetch_start(struct mfs_mount *m, struct fuse_session *se)
{
	struct mfs_prefetch *pf = calloc(1, sizeof(*pf));

	if (!pf)
		return -ENOMEM;
	pf->m = m;
	pf->se = se;
	pthread_mutex_init(&pf->lock, NULL);
	pthread_cond_init(&pf->cond, NULL);
	for (unsigned i = 0; i < PF_THREADS; i++)
		if (mfs_start_thread(&pf->threads[pf->n_threads], pf_worker, pf, "prefetch"))
			pf->n_threads++;
	if (!pf->n_threads) {
		pthread_cond_destroy(&pf->cond);
		pthread_mutex_destroy(&pf->lock);
		free(pf);
		return -EAGAIN;
	}
	m->pf = pf;
	return 0;
}

void mfs_prefetch_stop(struct mfs_mount *m)
{
	struct mfs_prefetch *pf = m->pf;
	struct pf_job *j;

	if (!pf)
		return;
	pthread_mutex_lock(&pf->lock);
	pf->stop = true;
	pthread_cond_broadcast(&pf->cond);
	pthread_mutex_unlock(&pf->lock);
	for (unsigned i = 0; i < pf->n_threads; i++)
		pthread_join(pf->threads[i], NULL);
	m->pf = NULL;
	while ((j = pf->head)) {
		pf->head = j->next;
		mfs_model_unref(m, j->n->model, 1);
		free(j);
	}
	pthread_cond_destroy(&pf->cond);
	pthread_mutex_destroy(&pf->lock);
	free(pf);
}

/* ---- mount-time prefetch (--prefetch PATTERN) ---- */

/*
 * Does @rel (a path under the mountpoint) match a --prefetch pattern? A
 * pattern matches the whole path, its last component, or names a folder
 * (a model) the path lies in.
 */
static bool pf_wanted(const struct mfs_mount *m, const char *rel)
{
	const char *base = strrchr(rel, '/');

	base = base ? base + 1 : rel;
	for (size_t i = 0; i < m->n_prefetch; i++) {
		const char *p = m->prefetch[i];
		size_t l = strlen(p);

		if (!fnmatch(p, rel, 0) || !fnmatch(p, base, 0) ||
		    (l && !strncmp(rel, p, l) && rel[l] == '/'))
			return true;
	}
	return false;
}

/*
 * Reads the file @rel under the mountpoint to its end, which verifies every
 * block and leaves it in the kernel's cache (files are opened keep_cache).
 * A failure is logged once with the file and the reason, and counted.
 */
static void pf_read_file(struct mfs_mount *m, int mnt, const char *rel, uint8_t *buf)
{
	uint64_t total = 0;
	char q[PATH_MAX + 8];
	ssize_t n = 0;
	int fd;

	fd = openat(mnt, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0) {
		while ((n = read(fd, buf, MFS_MAX_READ)) > 0)
			total += (uint64_t)n;
		close(fd);
	}
	if (fd < 0 && errno == ENOENT)
		return; /* hidden by the policy or gone meanwhile: nothing to warm */
	if (fd < 0 || n < 0) {
		mfs_count(&m->ctr.prefetch_files_failed, 1);
		mfs_log(LOG_ERR, "prefetch-failed path=%s reason=\"%s\"",
		        mfs_log_value(rel, q, sizeof(q)), strerror(errno));
		return;
	}
	mfs_count(&m->ctr.prefetch_files, 1);
	mfs_count(&m->ctr.prefetch_file_bytes, total);
}

/* Walks folder @rel of the mount (open as @dfd), reading the wanted files. */
static void pf_walk(struct mfs_mount *m, int mnt, int dfd, const char *rel, uint8_t *buf,
                    unsigned depth)
{
	DIR *d = fdopendir(dfd);
	struct dirent *e;

	if (!d) {
		close(dfd);
		return;
	}
	while ((e = readdir(d))) {
		char *sub = NULL;
		int fd;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
		    (depth == 0 && !strcmp(e->d_name, MFS_CTL_NAME)))
			continue;
		if (asprintf(&sub, "%s%s%s", rel, *rel ? "/" : "", e->d_name) < 0)
			break;
		if (e->d_type == DT_DIR && depth < MFS_PF_MAX_DEPTH) {
			fd = openat(mnt, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (fd >= 0)
				pf_walk(m, mnt, fd, sub, buf, depth + 1);
		} else if (e->d_type == DT_REG && pf_wanted(m, sub)) {
			pf_read_file(m, mnt, sub, buf);
		}
		free(sub);
	}
	closedir(d);
}

void mfs_prefetch_mount_time(struct mfs_mount *m)
{
	uint8_t *buf;
	int mnt, dfd;

	if (!m->n_prefetch)
		return;
	__atomic_store_n(&m->prefetch_state, MFS_PF_RUNNING, __ATOMIC_RELEASE);
	mfs_log(LOG_INFO, "prefetch-start patterns=%zu", m->n_prefetch);
	buf = malloc(MFS_MAX_READ);
	mnt = open(m->mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	dfd = mnt >= 0 ? dup(mnt) : -1;
	if (buf && dfd >= 0)
		pf_walk(m, mnt, dfd, "", buf, 0);
	else if (dfd >= 0)
		close(dfd);
	if (mnt >= 0)
		close(mnt);
	free(buf);
	mfs_log(LOG_INFO, "prefetch-done files=%" PRIu64 " failed=%" PRIu64 " bytes=%" PRIu64,
	        __atomic_load_n(&m->ctr.prefetch_files, __ATOMIC_RELAXED),
	        __atomic_load_n(&m->ctr.prefetch_files_failed, __ATOMIC_RELAXED),
	        __atomic_load_n(&m->ctr.prefetch_file_bytes, __ATOMIC_RELAXED));
	__atomic_store_n(&m->prefetch_state, MFS_PF_DONE, __ATOMIC_RELEASE);
}
