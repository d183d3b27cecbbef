// SPDX-License-Identifier: Apache-2.0
/*
 * bstore_local.c - the local folder as a backing store (struct
 * mfs_bstore_ops, mount_int.h): the store is a folder of this machine.
 *
 * A handle is a file descriptor. Every path is opened one component at a
 * time with O_NOFOLLOW relative to a folder descriptor, so a symlink
 * anywhere never leads out of the store, and O_NONBLOCK, so a FIFO swapped
 * in never hangs a worker. Nothing here decides what is trusted: callers
 * check sizes against the signature and every byte against the signed tree.
 * Bytes the mount has verified and served are dropped from this machine's
 * page cache (local_drop()): the mount's own cache keeps them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mount_int.h"

/* Opens the last component @comp of a walk from folder @cur. */
static int open_last(int cur, const char *comp, int flags)
{
	return openat(cur, comp, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
}

int mfs_openat_nofollow(int dirfd, const char *relpath, int flags)
{
	char comp[NAME_MAX + 1];
	const char *p = relpath;
	int cur = dirfd, fd;

	for (;;) {
		size_t l = strcspn(p, "/");

		if (l == 0 || l > NAME_MAX) {
			fd = -1;
			errno = EINVAL;
			break;
		}
		memcpy(comp, p, l);
		comp[l] = '\0';
		p += l;
		if (*p != '/') {
			fd = open_last(cur, comp, flags);
			break;
		}
		p++;
		fd = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (cur != dirfd)
			close(cur);
		if (fd < 0)
			return -errno;
		cur = fd;
	}
	if (fd < 0)
		fd = -errno;
	if (cur != dirfd)
		close(cur);
	return fd;
}

/* mfs_bstore_ops.open: the walk above. */
static int local_open(const struct mfs_bstore *s, int dir, const char *rel, int flags)
{
	(void)s;
	return mfs_openat_nofollow(dir, rel, flags);
}

/* mfs_bstore_ops.stat: @h itself (@name NULL), or its entry @name, not followed. */
static int local_stat(const struct mfs_bstore *s, int h, const char *name, struct stat *st)
{
	(void)s;
	int r = name ? fstatat(h, name, st, AT_SYMLINK_NOFOLLOW) : fstat(h, st);

	return r ? -errno : 0;
}

/*
 * mfs_bstore_ops.list: the entries of folder @dir, "." and ".." left out.
 * The folder is reopened (readdir needs its own descriptor and position).
 */
static int local_list(const struct mfs_bstore *s, int dir, mfs_bstore_entry_fn fn, void *ctx)
{
	(void)s;
	struct dirent *de;
	DIR *d;
	int fd, ret = 0;

	fd = openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		ret = -errno;
		close(fd);
		return ret;
	}
	while ((de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		ret = fn(ctx, de->d_name, de->d_type);
		if (ret)
			break;
	}
	closedir(d);
	return ret;
}

/*
 * Dropping what was consumed (local_drop()). POSIX_FADV_DONTNEED drops whole
 * folios only, never splitting one, and readahead on ext4 or XFS fills the
 * page cache with folios of up to LOCAL_CHUNK, aligned to their size: a
 * folio across the boundary of two 1 MiB reads survives a drop of each
 * (226 of 256 MiB stayed cached; docs/performance.md). Widening a drop over
 * its neighbour instead drops pages another worker is still copying (the
 * kernel's readahead has several reads of a file in flight at once), which
 * then come from disk. So the bytes consumed are counted per LOCAL_CHUNK of
 * each open file, and a chunk is dropped whole once all of it was consumed:
 * no page is dropped before every byte of it was served.
 */
#define LOCAL_CHUNK_SHIFT 21 /* 2 MiB: the PMD size of x86-64 and 4 KiB-page arm64 */
#define LOCAL_CHUNK       (1ull << LOCAL_CHUNK_SHIFT)

/*
 * Bytes consumed per chunk of one open file, shared by every handle of it
 * (the reader's, a prefetch window's, a tree build's): a chunk that one
 * handle partly read and another wholly read is still consumed. A chunk
 * consumed whole once stays CHUNK_DONE: the mount's page cache has it, so a
 * later read of it from the store (a racing reader's, a readahead's) is
 * dropped again at once.
 */
#define CHUNK_DONE UINT32_MAX
struct local_usage {
	struct local_usage *next; /* the open files' list */
	dev_t dev;
	ino_t ino;
	unsigned refs;   /* handles pointing here */
	uint64_t size;   /* the file's size when first counted: one counter per chunk */
	uint32_t done[]; /* calloc'd: untouched chunks of a sparse 1 TiB file cost no RSS */
};

/*
 * By handle: handles are descriptors, unique in the process, and every one
 * the mount opens is closed through local_close(), which drops its
 * reference. Guarded by usage_lock, taken for a few additions per read.
 */
static pthread_mutex_t usage_lock = PTHREAD_MUTEX_INITIALIZER;
static struct local_usage **usage;
static size_t n_usage;
static struct local_usage *files; /* every counted file with a handle open */

/* The counters of the file @st, shared, made on first use (usage_lock held). */
static struct local_usage *usage_file(const struct stat *st)
{
	struct local_usage *u;
	size_t n;

	for (u = files; u; u = u->next)
		if (u->dev == st->st_dev && u->ino == st->st_ino &&
		    u->size == (uint64_t)st->st_size)
			return u;
	n = (size_t)(((uint64_t)st->st_size + LOCAL_CHUNK - 1) >> LOCAL_CHUNK_SHIFT);
	u = calloc(1, sizeof(*u) + n * sizeof(u->done[0]));
	if (!u)
		return NULL;
	u->dev = st->st_dev;
	u->ino = st->st_ino;
	u->size = (uint64_t)st->st_size;
	u->next = files;
	files = u;
	return u;
}

/*
 * usage_of() - the counters of handle @h's file, on first use (usage_lock held)
 * Return: the counters, or NULL (out of memory, fstat failed): then nothing
 * is dropped, which costs memory, never a byte.
 */
static struct local_usage *usage_of(int h)
{
	struct local_usage *u;
	struct stat st;

	if (h < 0)
		return NULL;
	if ((size_t)h >= n_usage) {
		size_t cap = (size_t)h + 64;
		struct local_usage **t = realloc(usage, cap * sizeof(*t));

		if (!t)
			return NULL;
		memset(t + n_usage, 0, (cap - n_usage) * sizeof(*t));
		usage = t;
		n_usage = cap;
	}
	if (usage[h])
		return usage[h];
	if (fstat(h, &st) || st.st_size <= 0)
		return NULL;
	u = usage_file(&st);
	if (u) {
		u->refs++;
		usage[h] = u;
	}
	return u;
}

/* Handle @h is about to be closed: its file's counters go with its last handle. */
static void usage_forget(int h)
{
	struct local_usage *u, **pp;

	pthread_mutex_lock(&usage_lock);
	u = (size_t)h < n_usage ? usage[h] : NULL;
	if (u) {
		usage[h] = NULL;
		if (--u->refs == 0) {
			for (pp = &files; *pp != u; pp = &(*pp)->next)
				;
			*pp = u->next;
			free(u);
		}
	}
	pthread_mutex_unlock(&usage_lock);
}

/*
 * usage_add() - count [@off, @end) as consumed (usage_lock held)
 * @u: in/out: the file's counters; chunks completed become CHUNK_DONE
 * @from, @to: out: the chunks to drop now, done before or completed now, as
 *             a byte range (@from == @to: none). A read spans at most two
 *             chunks, so those to drop are always one run.
 */
static void usage_add(struct local_usage *u, uint64_t off, uint64_t end, uint64_t *from,
                      uint64_t *to)
{
	*from = *to = 0;
	if (end > u->size)
		end = u->size;
	for (uint64_t c = off >> LOCAL_CHUNK_SHIFT; off < end; c++) {
		uint64_t c_end = (c + 1) << LOCAL_CHUNK_SHIFT;
		uint64_t c_len = (c_end < u->size ? c_end : u->size) - (c << LOCAL_CHUNK_SHIFT);
		uint64_t n = (end < c_end ? end : c_end) - off;

		off += n;
		/* A range read twice counts twice: the chunk goes early, a cost only. */
		if (u->done[c] != CHUNK_DONE && u->done[c] + n < c_len) {
			u->done[c] += (uint32_t)n;
			continue;
		}
		u->done[c] = CHUNK_DONE;
		if (*from == *to)
			*from = c << LOCAL_CHUNK_SHIFT;
		*to = (c << LOCAL_CHUNK_SHIFT) + c_len;
	}
}

/*
 * mfs_bstore_ops.drop: counts [@off, @off + @len) of @h as consumed and
 * drops every chunk now wholly consumed from the page cache, with
 * posix_fadvise(POSIX_FADV_DONTNEED), so that the model sits there once (the
 * mount's copy), not twice. The last chunk ends at the end of the file,
 * whose partial last page Linux drops too.
 */
static void local_drop(const struct mfs_bstore *s, int h, uint64_t off, uint64_t len)
{
	struct local_usage *u;
	uint64_t from = 0, to = 0;

	(void)s;
	pthread_mutex_lock(&usage_lock);
	u = usage_of(h);
	if (u)
		usage_add(u, off, off + len, &from, &to);
	pthread_mutex_unlock(&usage_lock);
	/* Advice only: a failure leaves the pages cached, as --keep-backing-cache does. */
	if (to > from)
		(void)posix_fadvise(h, (off_t)from, (off_t)(to - from), POSIX_FADV_DONTNEED);
}

/* mfs_bstore_ops.pread: all of @len unless the file ends first. */
static ssize_t local_pread(const struct mfs_bstore *s, int h, void *buf, size_t len, uint64_t off)
{
	(void)s;
	return mv_pread_full(h, buf, len, off);
}

/* mfs_bstore_ops.close: also forgets what local_drop() counted for @h. */
static void local_close(const struct mfs_bstore *s, int h)
{
	(void)s;
	if (h < 0)
		return;
	usage_forget(h);
	close(h);
}

/* mfs_bstore_ops.dup */
static int local_dup(const struct mfs_bstore *s, int h)
{
	int fd;

	(void)s;
	fd = fcntl(h, F_DUPFD_CLOEXEC, 0);
	return fd < 0 ? -errno : fd;
}

/* mfs_bstore_ops.read_sig: MODEL/model.sig, a regular file of 1 byte to 64 MiB. */
static int local_read_sig(const struct mfs_bstore *s, int model_dir, char **buf, size_t *len,
                          char *why, size_t why_len)
{
	(void)s;
	struct stat st;
	ssize_t got;
	int fd, ret = 0;

	*buf = NULL;
	fd = open_last(model_dir, MV_SIG_NAME, O_RDONLY);
	if (fd < 0) {
		ret = -errno;
		snprintf(why, why_len, "%s: %s", MV_SIG_NAME, strerror(-ret));
		return ret;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
	    (uint64_t)st.st_size > MV_MAX_SIG_SIZE) {
		snprintf(why, why_len, "%s: not a regular file of 1 byte to 64 MiB", MV_SIG_NAME);
		ret = -EINVAL;
		goto out;
	}
	*buf = malloc((size_t)st.st_size + 1);
	if (!*buf) {
		ret = -ENOMEM;
		snprintf(why, why_len, "out of memory");
		goto out;
	}
	got = mv_pread_full(fd, *buf, (size_t)st.st_size, 0);
	if (got < 0 || (size_t)got != (size_t)st.st_size) {
		ret = got < 0 ? (int)got : -EIO;
		snprintf(why, why_len, "%s: %s", MV_SIG_NAME,
		         got < 0 ? strerror(-ret) : "short read");
		goto out;
	}
	(*buf)[got] = '\0';
	*len = (size_t)got;
out:
	if (ret) {
		free(*buf);
		*buf = NULL;
	}
	close(fd);
	return ret;
}

/*
 * mfs_bstore_ops.watch: an inotify watch on folder @dir, named through
 * /proc/self/fd so that no path is looked up again (no race with a rename).
 */
static int local_watch(const struct mfs_bstore *s, int dir, int notify_fd, uint32_t mask)
{
	(void)s;
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", dir);
	return inotify_add_watch(notify_fd, path, mask) >= 0 ? 0 : -errno;
}

const struct mfs_bstore_ops mfs_bstore_local = {
    .name = "local",
    .open = local_open,
    .open_local = local_open,
    .stat = local_stat,
    .list = local_list,
    .pread = local_pread,
    .close = local_close,
    .dup = local_dup,
    .read_sig = local_read_sig,
    .watch = local_watch,
    .drop = local_drop,
    .fini = NULL,
};
