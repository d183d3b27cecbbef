// SPDX-License-Identifier: Apache-2.0
/*
 * tx_write.c - writing a plan's safetensors output: the header, then each
 * kept tensor's bytes in output order.
 *
 * Writing copies contiguous tensors in chunks (copy_file_range when the
 * source is a plain file) and gathers non-contiguous views through bounded
 * buffers, swapping bytes when the checkpoint says it is big-endian. A path
 * is written atomically: a temporary file in the same folder, synced, then
 * renamed.
 *
 * Separate from planning (transcode.c, tx_torch.c): it reads only the plan,
 * never the pickle, and is where the output's I/O and durability live.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fmt_internal.h"
#include "tx_internal.h"

#define CHUNK         (8u << 20)     /* I/O buffer for copies and gathers */
#define GATHER_MEM    (128ull << 20) /* views spanning up to this are gathered in memory */
#define GATHER_WINDOW (64ull << 20)  /* else: source windows of this size */
#define KICK          (16ull << 20)  /* start writeback every this many output bytes */

/* ------------------------------------------------------------------ writer */

struct txw {
	const struct mfs_tx_plan *p;
	mfs_pread_fn rd;
	void *ctx;
	int src_fd, out_fd;
	bool cfr;        /* copy_file_range still worth trying */
	bool kick;       /* start writeback as output accumulates (durable output) */
	uint64_t pos;    /* next output offset */
	uint64_t kicked; /* output bytes handed to writeback so far */
	uint8_t *buf;    /* CHUNK bytes */
	struct mv_err *err;
};

static int out_write(struct txw *w, const void *data, size_t len)
{
	const uint8_t *d = data;

	while (len) {
		ssize_t r = pwrite(w->out_fd, d, len, (off_t)w->pos);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int e = r < 0 ? -errno : -EIO;

			return mv_err_set(w->err, e, "%s: write failed: %s", w->p->name,
			                  strerror(-e));
		}
		d += r;
		len -= (size_t)r;
		w->pos += (uint64_t)r;
	}
	return 0;
}

/* Reads exactly @len source bytes at @off. */
static int src_read(struct txw *w, void *buf, size_t len, uint64_t off)
{
	uint8_t *b = buf;

	while (len) {
		ssize_t r = w->rd(w->ctx, b, len, off);

		if (r < 0)
			return mv_err_set(w->err, (int)r,
			                  "%s: read failed at offset %" PRIu64 ": %s", w->p->name,
			                  off, strerror((int)-r));
		if (r == 0)
			return mv_err_set(w->err, -EBADMSG,
			                  "%s: the checkpoint ends at offset %" PRIu64
			                  ", before its tensor data",
			                  w->p->name, off);
		b += r;
		len -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

/* Reverses the bytes of each @es-byte element of @buf. */
static void swap_elems(uint8_t *buf, size_t len, unsigned es)
{
	for (size_t i = 0; i + es <= len; i += es)
		for (unsigned a = 0, b = es - 1; a < b; a++, b--) {
			uint8_t t = buf[i + a];

			buf[i + a] = buf[i + b];
			buf[i + b] = t;
		}
}

/*
 * Starts writeback of what was written so far, so the caller's final fsync
 * finds most data already on its way to disk (the copy and the disk then
 * overlap instead of running one after the other). Best effort.
 */
static void kick_writeback(struct txw *w, bool last)
{
	if (!w->kick || (w->pos - w->kicked < KICK && !last))
		return;
	(void)sync_file_range(w->out_fd, (off64_t)w->kicked, (off64_t)(w->pos - w->kicked),
	                      SYNC_FILE_RANGE_WRITE);
	w->kicked = w->pos;
}

/* Copies @len bytes from source offset @off in the kernel; *@done says how many went. */
static int copy_kernel(struct txw *w, uint64_t off, uint64_t len, uint64_t *done)
{
	loff_t in = (loff_t)off, outp = (loff_t)w->pos;

	*done = 0;
	while (*done < len) {
		size_t want = len - *done > KICK ? (size_t)KICK : (size_t)(len - *done);
		ssize_t r = copy_file_range(w->src_fd, &in, w->out_fd, &outp, want, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			/* not possible here (other file systems, pipes): copy through memory */
			w->cfr = false;
			break;
		}
		*done += (uint64_t)r;
		w->pos += (uint64_t)r;
		kick_writeback(w, false);
	}
	return 0;
}

/* A contiguous tensor: its bytes, in chunks, swapped when big-endian. */
static int copy_contig(struct txw *w, const struct mfs_tx_tensor *t)
{
	uint64_t off = w->p->st[t->storage].off + t->lo, left = t->nbytes, done;
	bool swap = w->p->swap && t->elsize > 1;
	int rc;

	if (w->cfr && !swap && w->src_fd >= 0) {
		if ((rc = copy_kernel(w, off, left, &done)))
			return rc;
		off += done;
		left -= done;
	}
	while (left) {
		size_t n = left > CHUNK ? CHUNK : (size_t)left;

		if ((rc = src_read(w, w->buf, n, off)))
			return rc;
		if (swap)
			swap_elems(w->buf, n, t->elsize);
		if ((rc = out_write(w, w->buf, n)))
			return rc;
		kick_writeback(w, false);
		off += n;
		left -= n;
	}
	return 0;
}

/* C-order walk over a tensor's elements; cur is the element offset from t->offset. */
struct nditer {
	const struct mfs_tx_tensor *t;
	uint64_t idx[MFS_TX_MAX_DIMS];
	uint64_t cur;
};

/* Positions @it at linear element @e. */
static void it_seek(struct nditer *it, const struct mfs_tx_tensor *t, uint64_t e)
{
	it->t = t;
	it->cur = 0;
	for (uint32_t d = t->ndim; d-- > 0;) {
		it->idx[d] = e % t->shape[d];
		e /= t->shape[d];
		it->cur += it->idx[d] * t->stride[d];
	}
}

static void it_next(struct nditer *it)
{
	const struct mfs_tx_tensor *t = it->t;

	for (uint32_t d = t->ndim; d-- > 0;) {
		it->cur += t->stride[d];
		if (++it->idx[d] < t->shape[d])
			return;
		it->cur -= t->stride[d] * t->shape[d];
		it->idx[d] = 0;
	}
}

static inline void copy_elem(uint8_t *dst, const uint8_t *src, unsigned es)
{
	switch (es) {
	case 1: *dst = *src; break;
	case 2: memcpy(dst, src, 2); break;
	case 4: memcpy(dst, src, 4); break;
	default: memcpy(dst, src, 8); break;
	}
}

/*
 * Gathers elements [e0, e0+n) of @t into @dst, taking only those whose
 * source bytes (relative to t->lo) lie in [wlo, whi), held in @win.
 */
static void gather(const struct mfs_tx_tensor *t, uint64_t e0, uint64_t n, const uint8_t *win,
                   uint64_t wlo, uint64_t whi, uint8_t *dst)
{
	struct nditer it;
	unsigned es = t->elsize;

	it_seek(&it, t, e0);
	for (uint64_t i = 0; i < n; i++, it_next(&it)) {
		uint64_t b = it.cur * es;

		if (b >= wlo && b < whi)
			copy_elem(dst + i * es, win + (b - wlo), es);
	}
}

/* The lowest and highest source byte (relative to t->lo) elements [e0, e0+n) read. */
static void chunk_span(const struct mfs_tx_tensor *t, uint64_t e0, uint64_t n, uint64_t *lo,
                       uint64_t *hi)
{
	struct nditer it;

	*lo = UINT64_MAX;
	*hi = 0;
	it_seek(&it, t, e0);
	for (uint64_t i = 0; i < n; i++, it_next(&it)) {
		uint64_t b = it.cur * t->elsize;

		*lo = b < *lo ? b : *lo;
		*hi = b + t->elsize > *hi ? b + t->elsize : *hi;
	}
}

/*
 * A non-contiguous view. When its source span fits GATHER_MEM it is read
 * once; otherwise each output chunk reads the source windows it touches, so
 * memory stays bounded (at the cost of reading some windows several times).
 */
static int copy_view(struct txw *w, const struct mfs_tx_tensor *t)
{
	uint64_t base = w->p->st[t->storage].off + t->lo, span = t->hi - t->lo;
	uint64_t per = CHUNK / t->elsize;
	bool inmem = span <= GATHER_MEM;
	uint8_t *win = malloc(inmem ? (size_t)span : (size_t)GATHER_WINDOW);
	int rc = 0;

	if (!win)
		return mv_err_set(w->err, -ENOMEM, "%s: out of memory", w->p->name);
	if (inmem)
		rc = src_read(w, win, (size_t)span, base);
	for (uint64_t e0 = 0; !rc && e0 < t->nelem; e0 += per) {
		uint64_t n = t->nelem - e0 < per ? t->nelem - e0 : per, lo, hi;

		if (inmem) {
			gather(t, e0, n, win, 0, span, w->buf);
		} else {
			chunk_span(t, e0, n, &lo, &hi);
			for (uint64_t wl = lo; !rc && wl < hi; wl += GATHER_WINDOW) {
				uint64_t wh = hi - wl < GATHER_WINDOW ? hi : wl + GATHER_WINDOW;

				rc = src_read(w, win, (size_t)(wh - wl), base + wl);
				if (!rc)
					gather(t, e0, n, win, wl, wh, w->buf);
			}
		}
		if (!rc && w->p->swap && t->elsize > 1)
			swap_elems(w->buf, (size_t)(n * t->elsize), t->elsize);
		if (!rc)
			rc = out_write(w, w->buf, (size_t)(n * t->elsize));
	}
	free(win);
	return rc;
}

/* Writes the output; @kick starts writeback as it goes (for a later fsync). */
static int plan_write(const struct mfs_tx_plan *p, mfs_pread_fn rd, void *ctx, int src_fd,
                      int out_fd, bool kick, struct mv_err *err)
{
	struct txw w = {.p = p,
	                .kick = kick,
	                .rd = rd,
	                .ctx = ctx,
	                .src_fd = src_fd,
	                .out_fd = out_fd,
	                .cfr = src_fd >= 0,
	                .err = err};
	int rc;

	w.buf = malloc(CHUNK);
	if (!w.buf)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", p->name);
	rc = out_write(&w, p->header, p->header_len);
	for (size_t i = 0; !rc && i < p->norder; i++) {
		const struct mfs_tx_tensor *t = &p->t[p->order[i]];

		if (!t->nbytes)
			continue;
		rc = t->contiguous ? copy_contig(&w, t) : copy_view(&w, t);
		kick_writeback(&w, false);
	}
	kick_writeback(&w, true);
	if (!rc && w.pos != mfs_tx_plan_size(p))
		rc = mv_err_set(err, -EIO, "%s: wrote %" PRIu64 " bytes, planned %" PRIu64, p->name,
		                w.pos, mfs_tx_plan_size(p));
	free(w.buf);
	return rc;
}

int mfs_tx_plan_write(const struct mfs_tx_plan *p, mfs_pread_fn rd, void *ctx, int src_fd,
                      int out_fd, struct mv_err *err)
{
	return plan_write(p, rd, ctx, src_fd, out_fd, true, err);
}

/* ------------------------------------------------------------ atomic output */

/* Splits @path into a malloc'd folder ("." when none) and its last component. */
static int split_path(const char *path, char **dir, const char **base)
{
	const char *slash = strrchr(path, '/');

	*base = slash ? slash + 1 : path;
	if (!slash)
		*dir = strdup(".");
	else if (slash == path)
		*dir = strdup("/");
	else
		*dir = strndup(path, (size_t)(slash - path));
	return *dir ? 0 : -ENOMEM;
}

/*
 * Opens an unnamed file in @dir (O_TMPFILE: nothing is left behind if we
 * die), or a named temp file when the file system lacks it (*@tmp names it).
 */
static int open_temp(const char *dir, const char *base, char **tmp)
{
	int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);

	*tmp = NULL;
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd >= 0 ? fd : -errno;
	if (asprintf(tmp, "%s/.%s.XXXXXX", dir, base) < 0) {
		*tmp = NULL;
		return -ENOMEM;
	}
	fd = mkostemp(*tmp, O_CLOEXEC);
	if (fd < 0 || fchmod(fd, 0644) < 0) {
		int e = -errno;

		if (fd >= 0) {
			close(fd);
			unlink(*tmp);
		}
		free(*tmp);
		*tmp = NULL;
		return e;
	}
	return fd;
}

/* Gives the O_TMPFILE @fd a temporary name in @dir, returned in *@tmp. */
static int name_temp(int fd, const char *dir, const char *base, char **tmp)
{
	char proc[64];

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	for (unsigned i = 0; i < 100; i++) {
		if (asprintf(tmp, "%s/.%s.%ld.%u", dir, base, (long)getpid(), i) < 0) {
			*tmp = NULL;
			return -ENOMEM;
		}
		if (linkat(AT_FDCWD, proc, AT_FDCWD, *tmp, AT_SYMLINK_FOLLOW) == 0)
			return 0;
		int e = -errno;

		free(*tmp);
		*tmp = NULL;
		if (e != -EEXIST)
			return e;
	}
	return -EEXIST;
}

static void fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		fsync(fd); /* best effort: the rename itself already happened */
		close(fd);
	}
}

/*
 * Not mv_atomic_open()/mv_atomic_commit(): the output (gigabytes, minutes of
 * work) is written into an unnamed O_TMPFILE and only linked in at the end,
 * so a crash mid-transcode leaves nothing behind; mv_atomic_* names its temp
 * file from the start. The named fallback and the rename mirror it.
 */
int mfs_tx_write_path(const struct mfs_tx_plan *p, mfs_pread_fn rd, void *ctx, int src_fd,
                      const char *path, bool durable, struct mv_err *err)
{
	char *dir = NULL, *tmp = NULL;
	const char *base;
	bool unnamed;
	int fd = -1, rc;

	if ((rc = split_path(path, &dir, &base)))
		return mv_err_set(err, rc, "%s: out of memory", path);
	fd = open_temp(dir, base, &tmp);
	if (fd < 0) {
		rc = mv_err_set(err, fd, "%s: cannot create a file in %s: %s", path, dir,
		                strerror(-fd));
		goto out;
	}
	unnamed = !tmp;
	if ((rc = plan_write(p, rd, ctx, src_fd, fd, durable, err)))
		goto out;
	if (durable && fsync(fd) < 0) {
		rc = mv_err_set(err, -errno, "%s: fsync: %s", path, strerror(errno));
		goto out;
	}
	if (unnamed && (rc = name_temp(fd, dir, base, &tmp))) {
		rc = mv_err_set(err, rc, "%s: cannot link the output: %s", path, strerror(-rc));
		goto out;
	}
	if (rename(tmp, path) < 0) {
		rc = mv_err_set(err, -errno, "%s: rename: %s", path, strerror(errno));
		goto out;
	}
	free(tmp);
	tmp = NULL;
	if (durable)
		fsync_dir(dir);
out:
	if (tmp) {
		unlink(tmp);
		free(tmp);
	}
	if (fd >= 0)
		close(fd);
	free(dir);
	return rc;
}