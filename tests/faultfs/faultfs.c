// SPDX-License-Identifier: Apache-2.0
/*
 * faultfs.c - a passthrough FUSE file system that fails on request, for the
 * fault tests of modelfs (tests/mount/test_faults.py, docs/reliability.md).
 * A test tool: built by meson, never installed.
 *
 *   faultfs [-f] [-d] [-o FUSE options] SOURCE MOUNTPOINT
 *
 * MOUNTPOINT shows the folder SOURCE, read and write, and serves every file
 * with direct I/O: each pread of a client reaches faultfs with its own offset
 * and length (no page cache, no readahead), so a fault hits exactly the bytes
 * it names and clears the moment its rule goes.
 *
 * Faults are rules written to the control file MOUNTPOINT/.faultctl (absent
 * from listings, reachable by name; not in SOURCE). Each write(2) is one batch
 * of lines, applied whole or, on any bad line, not at all (EINVAL):
 *
 *   clear                       remove every rule
 *   # text                      a comment; blank lines are ignored too
 *   PATTERN ACTION... [from=OFF] [len=N] [count=N]
 *
 * PATTERN is an fnmatch(3) pattern on the path relative to MOUNTPOINT, with
 * no leading slash: "m/w.bin", "*.tmp", "*"; a '*' also matches '/', so
 * "cache*.tmp" matches every temp file under the folder cache. ERRNO is a
 * name (EIO, ENOSPC, EMFILE, ...) or a number. ACTIONs:
 *
 *   read=ERRNO    reads overlapping the range fail with ERRNO
 *   short=N       reads overlapping the range return at most N bytes
 *                 (0: the file seems to end there)
 *   delay_ms=N    reads overlapping the range wait N ms first
 *   open=ERRNO    open, opendir and create fail
 *   write=ERRNO   writes overlapping the range fail (truncate, fallocate too)
 *   create=ERRNO  create, mkdir, link, symlink and mknod of a matching name fail
 *   rename=ERRNO  rename from or to a matching name fails
 *   fsync=ERRNO   fsync and fsyncdir fail
 *   eio           read=EIO
 *   emfile        open=EMFILE
 *   enospc        write=ENOSPC create=ENOSPC fsync=ENOSPC: a full disk
 *                 (unlink, rmdir and rename still work, as on one)
 *
 * from=OFF and len=N (bytes; len 0 or absent: to the end of the file) limit
 * read, short, delay_ms and write to requests overlapping [OFF, OFF+N); the
 * other actions apply to the whole file. count=N makes the rule fire N times,
 * then do nothing (a transient fault). When several rules match one request,
 * delays add up, the first errno wins and the smallest short applies.
 *
 * Reads, writes and fsyncs of an open file match its current path (libfuse
 * follows renames); once it is unlinked, the path it was opened with.
 *
 * Reading .faultctl lists the rules as written, each followed by " hits=N":
 * how many requests it changed. Unlink and rmdir never fail, so a program
 * can always clean up.
 */
#define FUSE_USE_VERSION 312

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <fuse.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define CTL_PATH  "/.faultctl"
#define BATCH_MAX (64u << 10) /* bytes of one control write */

/* What a request does, for matching rules. */
enum fop {
	FOP_READ,
	FOP_OPEN,
	FOP_WRITE,
	FOP_CREATE,
	FOP_RENAME,
	FOP_FSYNC,
	FOP_N,
};

static const char *const fop_names[FOP_N] = {"read", "open", "write", "create", "rename", "fsync"};

struct rule {
	char *text;     /* the line as written, for the listing */
	char *pattern;  /* fnmatch(3) pattern, relative path */
	int err[FOP_N]; /* errno per kind of request, 0 for none */
	bool has_short; /* reads are cut to short_len bytes */
	uint64_t short_len;
	unsigned delay_ms; /* reads wait this long */
	uint64_t from;     /* the byte range of read, short, delay and write */
	uint64_t len;      /* 0: to the end */
	uint64_t left;     /* fires left; UINT64_MAX: no limit */
	uint64_t hits;     /* requests it changed */
};

/* The effect of the rules on one request. */
struct effect {
	int err;  /* fail with this errno, or 0 */
	bool cut; /* return at most max_len bytes */
	uint64_t max_len;
	unsigned delay_ms; /* wait first */
};

/* An open file or folder of SOURCE, or of the control file. */
struct fh {
	int fd;         /* -1 for the control file */
	DIR *dir;       /* folders */
	char *path;     /* as opened: what rules match once it is unlinked */
	bool ctl;       /* the control file */
	char *snapshot; /* control file: the listing at open */
	size_t snapshot_len;
};

static int src_fd = -1; /* SOURCE, every request is relative to it */
static char *src_path;
static pthread_mutex_t rules_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rule *rules; /* guarded by rules_lock */
static size_t n_rules;

/* ---- rules ---- */

static const struct {
	const char *name;
	int err;
} errnos[] = {
    {"EIO", EIO},       {"ENOSPC", ENOSPC},       {"EMFILE", EMFILE},
    {"ENFILE", ENFILE}, {"EDQUOT", EDQUOT},       {"EACCES", EACCES},
    {"EPERM", EPERM},   {"EROFS", EROFS},         {"ENOMEM", ENOMEM},
    {"EAGAIN", EAGAIN}, {"EINTR", EINTR},         {"ENOENT", ENOENT},
    {"ESTALE", ESTALE}, {"ENXIO", ENXIO},         {"EBADF", EBADF},
    {"EFBIG", EFBIG},   {"ETIMEDOUT", ETIMEDOUT},
};

/* Parses an errno name or number into *@out. 0 or -EINVAL. */
static int parse_errno(const char *s, int *out)
{
	char *end;
	long v;

	for (size_t i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++) {
		if (strcmp(s, errnos[i].name) == 0) {
			*out = errnos[i].err;
			return 0;
		}
	}
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v <= 0 || v > 4095)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

/* Parses a decimal or 0x number into *@out. 0 or -EINVAL. */
static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (*s == '-')
		return -EINVAL;
	errno = 0;
	*out = strtoull(s, &end, 0);
	return errno || end == s || *end ? -EINVAL : 0;
}

static void rule_free(struct rule *r)
{
	free(r->text);
	free(r->pattern);
}

/*
 * Parses one rule line into @r (zeroed by the caller); @line is modified.
 * Return: 0, or -EINVAL with a message on stderr.
 */
static int rule_parse(char *line, struct rule *r)
{
	char *save = NULL, *tok;
	bool any = false;
	int ret = -EINVAL;

	r->text = strdup(line);
	tok = strtok_r(line, " \t", &save);
	if (!r->text || !tok)
		goto out;
	r->pattern = strdup(tok);
	if (!r->pattern)
		goto out;
	r->left = UINT64_MAX;
	while ((tok = strtok_r(NULL, " \t", &save)) != NULL) {
		char *val = strchr(tok, '=');
		uint64_t n;
		int e;

		if (strcmp(tok, "eio") == 0) {
			r->err[FOP_READ] = EIO;
		} else if (strcmp(tok, "emfile") == 0) {
			r->err[FOP_OPEN] = EMFILE;
		} else if (strcmp(tok, "enospc") == 0) {
			r->err[FOP_WRITE] = r->err[FOP_CREATE] = r->err[FOP_FSYNC] = ENOSPC;
		} else if (!val) {
			goto out;
		} else {
			*val++ = '\0';
			if (strcmp(tok, "from") == 0) {
				if (parse_u64(val, &r->from))
					goto out;
				continue;
			}
			if (strcmp(tok, "len") == 0) {
				if (parse_u64(val, &r->len))
					goto out;
				continue;
			}
			if (strcmp(tok, "count") == 0) {
				if (parse_u64(val, &r->left) || r->left == 0)
					goto out;
				continue;
			}
			if (strcmp(tok, "short") == 0) {
				if (parse_u64(val, &r->short_len))
					goto out;
				r->has_short = true;
			} else if (strcmp(tok, "delay_ms") == 0) {
				if (parse_u64(val, &n) || n > 600000)
					goto out;
				r->delay_ms = (unsigned)n;
			} else {
				int i;

				for (i = 0; i < FOP_N && strcmp(tok, fop_names[i]) != 0; i++)
					;
				if (i == FOP_N || parse_errno(val, &e))
					goto out;
				r->err[i] = e;
			}
		}
		any = true;
	}
	ret = any ? 0 : -EINVAL;
out:
	if (ret)
		fprintf(stderr, "faultfs: bad rule \"%s\"\n", r->text ? r->text : line);
	return ret;
}

/* How many bytes of @buf (@len bytes) are @c. */
static size_t memcount(const char *buf, size_t len, char c)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++)
		n += buf[i] == c;
	return n;
}

/*
 * Applies a control write of @len bytes: every line is parsed first, then
 * the rules change at once. Return: 0, -EINVAL (nothing changed), -ENOMEM.
 */
static int rules_apply(const char *buf, size_t len)
{
	struct rule *add = NULL, *all;
	size_t n_add = 0;
	bool clear = false;
	char *text, *line, *save = NULL;
	int ret = 0;

	text = strndup(buf, len);
	add = calloc(memcount(buf, len, '\n') + 1, sizeof(*add)); /* at most one per line */
	if (!text || !add) {
		ret = -ENOMEM;
		goto out;
	}
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		line += strspn(line, " \t");
		if (!*line || *line == '#')
			continue;
		if (strcmp(line, "clear") == 0) {
			/* Rules before "clear" in the same batch go too. */
			for (size_t i = 0; i < n_add; i++)
				rule_free(&add[i]);
			memset(add, 0, n_add * sizeof(*add));
			n_add = 0;
			clear = true;
			continue;
		}
		ret = rule_parse(line, &add[n_add++]);
		if (ret)
			goto out;
	}
	pthread_mutex_lock(&rules_lock);
	if (clear) {
		for (size_t i = 0; i < n_rules; i++)
			rule_free(&rules[i]);
		n_rules = 0;
	}
	all = realloc(rules, (n_rules + n_add + 1) * sizeof(*rules));
	if (all) {
		rules = all;
		memcpy(rules + n_rules, add, n_add * sizeof(*add));
		n_rules += n_add;
		n_add = 0; /* now owned by the table */
	} else {
		ret = -ENOMEM;
	}
	pthread_mutex_unlock(&rules_lock);
out:
	for (size_t i = 0; add && i < n_add; i++)
		rule_free(&add[i]);
	free(add);
	free(text);
	return ret;
}

/* Does rule @r act on request @op? */
static bool rule_acts(const struct rule *r, enum fop op)
{
	if (op == FOP_READ)
		return r->err[FOP_READ] || r->has_short || r->delay_ms;
	return r->err[op] != 0;
}

/* Does [@off, @off+@len) overlap the rule's range? */
static bool rule_overlaps(const struct rule *r, uint64_t off, uint64_t len)
{
	uint64_t end = r->len ? r->from + r->len : UINT64_MAX;

	if (r->len && end < r->from)
		end = UINT64_MAX; /* from + len overflowed */
	return len && off < end && off + len > r->from;
}

/*
 * The effect of the rules on request @op of @path (absolute, as FUSE gives
 * it); @off and @len are the byte range of reads and writes. Counts hits.
 */
static void rules_match(enum fop op, const char *path, uint64_t off, uint64_t len,
                        struct effect *fx)
{
	const char *rp = path && *path == '/' ? path + 1 : path;

	memset(fx, 0, sizeof(*fx));
	if (!rp)
		return;
	pthread_mutex_lock(&rules_lock);
	for (size_t i = 0; i < n_rules; i++) {
		struct rule *r = &rules[i];

		if (!r->left || !rule_acts(r, op) || fnmatch(r->pattern, rp, 0) != 0)
			continue;
		if ((op == FOP_READ || op == FOP_WRITE) && !rule_overlaps(r, off, len))
			continue;
		if (op == FOP_READ) {
			fx->delay_ms += r->delay_ms;
			if (r->has_short && (!fx->cut || r->short_len < fx->max_len)) {
				fx->cut = true;
				fx->max_len = r->short_len;
			}
		}
		if (!fx->err)
			fx->err = r->err[op];
		r->hits++;
		if (r->left != UINT64_MAX)
			r->left--;
	}
	pthread_mutex_unlock(&rules_lock);
}

/* Waits @ms milliseconds (only this request's thread). */
static void delay(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

	while (ms && nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* The errno request @op of @path must fail with, or 0 (whole-file rules). */
static int fault_of(enum fop op, const char *path)
{
	struct effect fx;

	rules_match(op, path, 0, UINT64_MAX, &fx);
	return fx.err;
}

/* The listing of the control file, malloc'd in *@out. 0 or -ENOMEM. */
static int rules_list(char **out, size_t *len)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);

	if (!f)
		return -ENOMEM;
	pthread_mutex_lock(&rules_lock);
	for (size_t i = 0; i < n_rules; i++)
		fprintf(f, "%s hits=%" PRIu64 "\n", rules[i].text, rules[i].hits);
	pthread_mutex_unlock(&rules_lock);
	if (fclose(f) != 0) {
		free(buf);
		return -ENOMEM;
	}
	*out = buf;
	*len = size;
	return 0;
}

/* ---- passthrough ---- */

/* @path relative to SOURCE, for the *at calls: "." for the root. */
static const char *rel(const char *path)
{
	return path[1] ? path + 1 : ".";
}

static struct fh *fh_of(const struct fuse_file_info *fi)
{
	return (struct fh *)(uintptr_t)fi->fh;
}

/* The path of open file @fi: the current one, else the one it was opened as. */
static const char *fh_path(const char *path, const struct fuse_file_info *fi)
{
	return path ? path : fh_of(fi)->path;
}

static void fh_free(struct fh *h)
{
	if (!h)
		return;
	if (h->dir)
		closedir(h->dir);
	else if (h->fd >= 0)
		close(h->fd);
	free(h->path);
	free(h->snapshot);
	free(h);
}

/* FUSE init: @cfg out: nothing cached, real inode numbers, unlink at once. */
static void *ff_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	/* Nothing cached in the kernel: every request reaches the rules. */
	cfg->direct_io = 1;
	cfg->entry_timeout = 0;
	cfg->attr_timeout = 0;
	cfg->negative_timeout = 0;
	cfg->use_ino = 1;
	/*
	 * Unlink at once rather than renaming to .fuse_hidden*: a test checks
	 * that nothing is left in a folder. Open files keep their descriptor,
	 * and libfuse then gives their requests no path (fh_path()).
	 */
	cfg->hard_remove = 1;
	return NULL;
}

/*
 * FUSE getattr: @st out. @fi, when set, is an open file: fstat it (it may
 * be unlinked). The control file is a 0600 file of the daemon's user.
 */
static int ff_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	if (path && strcmp(path, CTL_PATH) == 0) {
		memset(st, 0, sizeof(*st));
		st->st_mode = S_IFREG | 0600;
		st->st_nlink = 1;
		st->st_uid = geteuid();
		st->st_gid = getegid();
		return 0;
	}
	if (fi && fh_of(fi)->fd >= 0)
		return fstat(fh_of(fi)->fd, st) ? -errno : 0;
	if (!path)
		return -ENOENT;
	return fstatat(src_fd, rel(path), st, AT_SYMLINK_NOFOLLOW) ? -errno : 0;
}

/* FUSE readlink: @buf out, @size bytes with the NUL. */
static int ff_readlink(const char *path, char *buf, size_t size)
{
	ssize_t n = readlinkat(src_fd, rel(path), buf, size - 1);

	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

/* FUSE mkdir: create= rules apply. */
static int ff_mkdir(const char *path, mode_t mode)
{
	int err = fault_of(FOP_CREATE, path);

	if (err)
		return -err;
	return mkdirat(src_fd, rel(path), mode) ? -errno : 0;
}

/* FUSE mknod: create= rules apply. */
static int ff_mknod(const char *path, mode_t mode, dev_t dev)
{
	int err = fault_of(FOP_CREATE, path);

	if (err)
		return -err;
	return mknodat(src_fd, rel(path), mode, dev) ? -errno : 0;
}

/* FUSE unlink: never faulted, so a program can always clean up. */
static int ff_unlink(const char *path)
{
	return unlinkat(src_fd, rel(path), 0) ? -errno : 0;
}

/* FUSE rmdir: never faulted. */
static int ff_rmdir(const char *path)
{
	return unlinkat(src_fd, rel(path), AT_REMOVEDIR) ? -errno : 0;
}

/* FUSE symlink: @path gets a link to @target; create= rules apply. */
static int ff_symlink(const char *target, const char *path)
{
	int err = fault_of(FOP_CREATE, path);

	if (err)
		return -err;
	return symlinkat(target, src_fd, rel(path)) ? -errno : 0;
}

/* FUSE rename, renameat2 @flags passed on: rename= rules on either name. */
static int ff_rename(const char *from, const char *to, unsigned int flags)
{
	int err = fault_of(FOP_RENAME, from);

	if (!err)
		err = fault_of(FOP_RENAME, to);
	if (err)
		return -err;
	return renameat2(src_fd, rel(from), src_fd, rel(to), flags) ? -errno : 0;
}

/* FUSE link: @to is the new name; create= rules apply to it. */
static int ff_link(const char *from, const char *to)
{
	int err = fault_of(FOP_CREATE, to);

	if (err)
		return -err;
	return linkat(src_fd, rel(from), src_fd, rel(to), 0) ? -errno : 0;
}

/* FUSE chmod, of the open file @fi when set. */
static int ff_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	if (fi && fh_of(fi)->fd >= 0)
		return fchmod(fh_of(fi)->fd, mode) ? -errno : 0;
	return fchmodat(src_fd, rel(path), mode, 0) ? -errno : 0;
}

/* FUSE chown, of the open file @fi when set; links are not followed. */
static int ff_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	if (fi && fh_of(fi)->fd >= 0)
		return fchown(fh_of(fi)->fd, uid, gid) ? -errno : 0;
	return fchownat(src_fd, rel(path), uid, gid, AT_SYMLINK_NOFOLLOW) ? -errno : 0;
}

/*
 * FUSE truncate to @size: write= rules whose range holds byte @size apply.
 * open(O_TRUNC) of the control file truncates it first: a no-op.
 */
static int ff_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	struct effect fx;
	int fd, ret;

	if (path && strcmp(path, CTL_PATH) == 0)
		return 0; /* open(O_TRUNC) of the control file: nothing to cut */
	rules_match(FOP_WRITE, fi ? fh_path(path, fi) : path, (uint64_t)size, 1, &fx);
	if (fx.err)
		return -fx.err;
	if (fi && fh_of(fi)->fd >= 0)
		return ftruncate(fh_of(fi)->fd, size) ? -errno : 0;
	fd = openat(src_fd, rel(path), O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = ftruncate(fd, size) ? -errno : 0;
	close(fd);
	return ret;
}

/* FUSE utimens: @tv as utimensat(2), of the open file @fi when set. */
static int ff_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	if (fi && fh_of(fi)->fd >= 0)
		return futimens(fh_of(fi)->fd, tv) ? -errno : 0;
	return utimensat(src_fd, rel(path), tv, AT_SYMLINK_NOFOLLOW) ? -errno : 0;
}

/*
 * Opens the control file: a reader gets the listing as it is now, a
 * writer sends batches of rules.
 */
static int ctl_open(struct fuse_file_info *fi)
{
	struct fh *h = calloc(1, sizeof(*h));
	int ret;

	if (!h)
		return -ENOMEM;
	h->fd = -1;
	h->ctl = true;
	ret = rules_list(&h->snapshot, &h->snapshot_len);
	if (ret) {
		free(h);
		return ret;
	}
	fi->fh = (uintptr_t)h;
	fi->direct_io = 1;
	return 0;
}

/*
 * Opens @path of SOURCE with @flags (@create: O_CREAT with @mode) as a
 * file handle. Only flags that mean something to a local file are kept:
 * O_DIRECT, for one, tmpfs refuses.
 */
static int open_common(const char *path, int flags, bool create, mode_t mode,
                       struct fuse_file_info *fi)
{
	int keep = O_ACCMODE | O_APPEND | O_TRUNC | O_SYNC | O_DSYNC | O_NONBLOCK;
	struct fh *h;
	int err, fd;

	err = fault_of(FOP_OPEN, path);
	if (!err && create)
		err = fault_of(FOP_CREATE, path);
	if (err)
		return -err;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->path = strdup(path);
	if (!h->path) {
		free(h);
		return -ENOMEM;
	}
	if (create)
		keep |= O_CREAT | O_EXCL;
	flags = (flags & keep) | O_NOFOLLOW | O_CLOEXEC;
	fd = openat(src_fd, rel(path), flags, mode);
	if (fd < 0) {
		err = -errno;
		fh_free(h);
		return err;
	}
	h->fd = fd;
	fi->fh = (uintptr_t)h;
	fi->direct_io = 1; /* every read and write reaches the rules */
	fi->keep_cache = 0;
	return 0;
}

/* FUSE open: @fi out gets the handle; open= rules apply. */
static int ff_open(const char *path, struct fuse_file_info *fi)
{
	if (strcmp(path, CTL_PATH) == 0)
		return ctl_open(fi);
	return open_common(path, fi->flags, false, 0, fi);
}

/* FUSE create: @fi out gets the handle; open= and create= rules apply. */
static int ff_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	if (strcmp(path, CTL_PATH) == 0)
		return -EEXIST;
	return open_common(path, fi->flags | O_CREAT, true, mode, fi);
}

/*
 * FUSE read of @size bytes at @off into @buf: read=, short= and delay_ms=
 * rules overlapping the range apply. Return: bytes read, or -errno.
 */
static int ff_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fh *h = fh_of(fi);
	struct effect fx;
	ssize_t n;

	if (h->ctl) {
		if ((uint64_t)off >= h->snapshot_len)
			return 0;
		n = (ssize_t)(h->snapshot_len - (size_t)off);
		if ((size_t)n > size)
			n = (ssize_t)size;
		memcpy(buf, h->snapshot + off, (size_t)n);
		return (int)n;
	}
	rules_match(FOP_READ, fh_path(path, fi), (uint64_t)off, size, &fx);
	delay(fx.delay_ms);
	if (fx.err)
		return -fx.err;
	if (fx.cut && fx.max_len < size)
		size = (size_t)fx.max_len;
	if (!size)
		return 0;
	n = pread(h->fd, buf, size, off);
	return n < 0 ? -errno : (int)n;
}

/*
 * FUSE write of @size bytes at @off: write= rules overlapping the range
 * apply. To the control file: one batch of rules. Return: bytes, or -errno.
 */
static int ff_write(const char *path, const char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
	struct fh *h = fh_of(fi);
	struct effect fx;
	ssize_t n;
	int ret;

	if (h->ctl) {
		if (size > BATCH_MAX)
			return -EFBIG;
		ret = rules_apply(buf, size);
		return ret ? ret : (int)size;
	}
	rules_match(FOP_WRITE, fh_path(path, fi), (uint64_t)off, size, &fx);
	if (fx.err)
		return -fx.err;
	n = pwrite(h->fd, buf, size, off);
	return n < 0 ? -errno : (int)n;
}

/* FUSE statfs: @st out, SOURCE's. */
static int ff_statfs(const char *path, struct statvfs *st)
{
	return fstatvfs(src_fd, st) ? -errno : 0;
}

/* FUSE release: closes the handle. */
static int ff_release(const char *path, struct fuse_file_info *fi)
{
	fh_free(fh_of(fi));
	return 0;
}

/* FUSE fsync (@datasync: fdatasync): fsync= rules apply. */
static int ff_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	struct fh *h = fh_of(fi);
	int err;

	if (h->ctl)
		return 0;
	err = fault_of(FOP_FSYNC, fh_path(path, fi));
	if (err)
		return -err;
	return (datasync ? fdatasync(h->fd) : fsync(h->fd)) ? -errno : 0;
}

/* FUSE fallocate: write= rules overlapping [@off, @off+@len) apply. */
static int ff_fallocate(const char *path, int mode, off_t off, off_t len, struct fuse_file_info *fi)
{
	struct effect fx;

	rules_match(FOP_WRITE, fh_path(path, fi), (uint64_t)off, (uint64_t)len, &fx);
	if (fx.err)
		return -fx.err;
	return fallocate(fh_of(fi)->fd, mode, off, len) ? -errno : 0;
}

/* FUSE opendir: @fi out gets the handle; open= rules apply. */
static int ff_opendir(const char *path, struct fuse_file_info *fi)
{
	struct fh *h;
	int err = fault_of(FOP_OPEN, path), fd;

	if (err)
		return -err;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->fd = -1;
	h->path = strdup(path);
	if (!h->path) {
		free(h);
		return -ENOMEM;
	}
	fd = openat(src_fd, rel(path), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0)
		h->dir = fdopendir(fd);
	if (!h->dir) {
		err = -errno;
		if (fd >= 0)
			close(fd);
		fh_free(h);
		return err;
	}
	h->fd = dirfd(h->dir);
	fi->fh = (uintptr_t)h;
	return 0;
}

/*
 * Lists a folder in one go (offset 0 to the filler: libfuse buffers it),
 * so a listing restarts from the beginning at offset 0. The control file is
 * not listed.
 */
static int ff_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct fh *h = fh_of(fi);
	struct dirent *d;

	rewinddir(h->dir);
	errno = 0;
	while ((d = readdir(h->dir)) != NULL) {
		struct stat st = {.st_ino = d->d_ino, .st_mode = (mode_t)DTTOIF(d->d_type)};

		if (fill(buf, d->d_name, &st, 0, 0))
			break;
		errno = 0;
	}
	return errno ? -errno : 0;
}

/* FUSE releasedir: closes the handle. */
static int ff_releasedir(const char *path, struct fuse_file_info *fi)
{
	fh_free(fh_of(fi));
	return 0;
}

/* FUSE fsyncdir: fsync= rules on the folder's path apply. */
static int ff_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi)
{
	struct fh *h = fh_of(fi);
	int err = fault_of(FOP_FSYNC, fh_path(path, fi));

	if (err)
		return -err;
	return fsync(h->fd) ? -errno : 0;
}

static const struct fuse_operations ff_ops = {
    .init = ff_init,
    .getattr = ff_getattr,
    .readlink = ff_readlink,
    .mknod = ff_mknod,
    .mkdir = ff_mkdir,
    .unlink = ff_unlink,
    .rmdir = ff_rmdir,
    .symlink = ff_symlink,
    .rename = ff_rename,
    .link = ff_link,
    .chmod = ff_chmod,
    .chown = ff_chown,
    .truncate = ff_truncate,
    .utimens = ff_utimens,
    .open = ff_open,
    .create = ff_create,
    .read = ff_read,
    .write = ff_write,
    .statfs = ff_statfs,
    .release = ff_release,
    .fsync = ff_fsync,
    .fallocate = ff_fallocate,
    .opendir = ff_opendir,
    .readdir = ff_readdir,
    .releasedir = ff_releasedir,
    .fsyncdir = ff_fsyncdir,
};

/* fuse_opt_parse callback: the first bare argument is SOURCE, kept by us. */
static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	if (key == FUSE_OPT_KEY_NONOPT && !src_path) {
		src_path = realpath(arg, NULL);
		if (!src_path) {
			fprintf(stderr, "faultfs: %s: %s\n", arg, strerror(errno));
			return -1;
		}
		return 0;
	}
	return 1;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	int ret = 2;

	if (fuse_opt_parse(&args, NULL, NULL, opt_proc) != 0)
		goto out;
	if (!src_path) {
		fprintf(stderr, "usage: faultfs [-f] [-o OPTS] SOURCE MOUNTPOINT\n");
		goto out;
	}
	src_fd = open(src_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (src_fd < 0) {
		fprintf(stderr, "faultfs: %s: %s\n", src_path, strerror(errno));
		goto out;
	}
	ret = fuse_main(args.argc, args.argv, &ff_ops, NULL);
out:
	fuse_opt_free_args(&args);
	if (src_fd >= 0)
		close(src_fd);
	free(src_path);
	return ret;
}
