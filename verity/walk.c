// SPDX-License-Identifier: Apache-2.0
/*
 * walk.c - the files of a model folder, as sealing and verification see them.
 *
 * The listing mirrors the reference signer (model_signing): every regular
 * file below the folder, named by its POSIX path relative to the folder and
 * sorted bytewise; ignore paths drop themselves and everything below them;
 * git metadata (.git, .gitattributes, .github, .gitignore) is ignored by
 * default. Symlinks are refused, never followed, and so are special files:
 * a signature must describe bytes, not whatever a link points to today.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model_internal.h"

/* model_signing's Config.hash() defaults when ignore_git_paths is set. */
const char *const mv_default_ignores[] = {".git", ".gitattributes", ".github", ".gitignore"};
const size_t mv_n_default_ignores = sizeof(mv_default_ignores) / sizeof(mv_default_ignores[0]);

/* Deeper folders are refused: each level holds a directory fd. */
#define WALK_MAX_DEPTH 128
/* A model with more files than this is refused (the parser's limit too). */
#define WALK_MAX_FILES 1000000u

static int add_ignore(struct mv_walk *w, const char *path, size_t len)
{
	char *copy, **grown;

	/* Drop "./" prefixes and trailing slashes: "./a/b/" ignores "a/b". */
	while (len >= 2 && path[0] == '.' && path[1] == '/') {
		path += 2;
		len -= 2;
		while (len && *path == '/') {
			path++;
			len--;
		}
	}
	while (len && path[len - 1] == '/')
		len--;
	/* "" or "." would ignore the whole model: treat it as no ignore at all. */
	if (!len || (len == 1 && path[0] == '.'))
		return 0;
	copy = strndup(path, len);
	grown = realloc(w->ignore, (w->n_ignore + 1) * sizeof(*grown));
	if (!copy || !grown) {
		free(copy);
		if (grown)
			w->ignore = grown;
		return -ENOMEM;
	}
	w->ignore = grown;
	w->ignore[w->n_ignore++] = copy;
	return 0;
}

/*
 * An absolute ignore path inside the model becomes relative to it; one
 * outside the model can match nothing and is kept as given.
 */
static int add_user_ignore(struct mv_walk *w, const char *path, const char *real_root)
{
	const char *roots[2] = {w->root, real_root};

	if (path[0] != '/')
		return add_ignore(w, path, strlen(path));
	for (size_t i = 0; i < 2; i++) {
		size_t n;

		if (!roots[i])
			continue;
		n = strlen(roots[i]);
		while (n > 1 && roots[i][n - 1] == '/')
			n--;
		if (strncmp(path, roots[i], n) == 0 && path[n] == '/')
			return add_ignore(w, path + n + 1, strlen(path + n + 1));
	}
	return add_ignore(w, path, strlen(path));
}

bool mv_walk_ignored(const struct mv_walk *w, const char *rel)
{
	for (size_t i = 0; i < w->n_ignore; i++) {
		size_t n = strlen(w->ignore[i]);

		if (strncmp(rel, w->ignore[i], n) == 0 && (rel[n] == '\0' || rel[n] == '/'))
			return true;
	}
	return false;
}

int mv_walk_add_ignores(struct mv_walk *w, const char *const *paths, size_t n)
{
	char *real_root = realpath(w->root, NULL);
	int ret = 0;

	for (size_t i = 0; !ret && i < n; i++)
		if (paths[i])
			ret = add_user_ignore(w, paths[i], real_root);
	free(real_root);
	return ret;
}

static int setup_ignores(struct mv_walk *w, const char **ignore, size_t n_ignore)
{
	int ret;

	ret = add_ignore(w, MV_SIG_NAME, strlen(MV_SIG_NAME));
	if (!ret)
		ret = add_ignore(w, MV_HIDDEN_DIR, strlen(MV_HIDDEN_DIR));
	for (size_t i = 0; !ret && i < mv_n_default_ignores; i++)
		ret = add_ignore(w, mv_default_ignores[i], strlen(mv_default_ignores[i]));
	if (!ret)
		ret = mv_walk_add_ignores(w, ignore, n_ignore);
	return ret;
}

int mv_walk_open(struct mv_walk *w, const char *model_path, const char **ignore, size_t n_ignore,
                 struct mv_err *err)
{
	struct stat st;
	int ret;

	memset(w, 0, sizeof(*w));
	w->dirfd = -1;
	w->root = strdup(model_path);
	if (!w->root)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", model_path);
	if (stat(model_path, &st) < 0)
		return mv_err_set(err, -errno, "%s: %s", model_path, strerror(errno));
	if (S_ISREG(st.st_mode)) {
		w->single_file = true;
	} else if (S_ISDIR(st.st_mode)) {
		w->dirfd = open(model_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (w->dirfd < 0)
			return mv_err_set(err, -errno, "%s: cannot open folder: %s", model_path,
			                  strerror(errno));
	} else {
		return mv_err_set(err, -ENOTDIR, "%s: not a folder or a regular file", model_path);
	}
	ret = setup_ignores(w, ignore, n_ignore);
	if (ret)
		return mv_err_set(err, ret, "%s: out of memory", model_path);
	return 0;
}

void mv_walk_free(struct mv_walk *w)
{
	for (size_t i = 0; i < w->n; i++) {
		free(w->e[i].name);
		free(w->e[i].why);
	}
	free(w->e);
	for (size_t i = 0; i < w->n_ignore; i++)
		free(w->ignore[i]);
	free(w->ignore);
	if (w->dirfd >= 0)
		close(w->dirfd);
	free(w->root);
	memset(w, 0, sizeof(*w));
	w->dirfd = -1;
}

/* Appends an entry; takes ownership of @name. @why may be NULL. */
static int add_entry(struct mv_walk *w, char *name, uint64_t size, int error, const char *why)
{
	struct mv_walk_entry *e;

	if (w->n >= WALK_MAX_FILES) {
		free(name);
		return -EFBIG;
	}
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 64;
		struct mv_walk_entry *grown = realloc(w->e, cap * sizeof(*grown));

		if (!grown) {
			free(name);
			return -ENOMEM;
		}
		w->e = grown;
		w->cap = cap;
	}
	e = &w->e[w->n];
	e->name = name;
	e->size = size;
	e->error = error;
	e->why = why ? strdup(why) : NULL;
	if (why && !e->why) {
		free(name);
		return -ENOMEM;
	}
	w->n++;
	return 0;
}

/* Adds an entry that records why @name cannot be signed. */
static int add_error(struct mv_walk *w, char *name, int error, const char *what)
{
	char why[256];

	if (error == -ELOOP || error == -EINVAL || error == -EILSEQ)
		snprintf(why, sizeof(why), "%s", what);
	else
		snprintf(why, sizeof(why), "%s: %s", what, strerror(-error));
	return add_entry(w, name, 0, error, why);
}

/* Copies @in, writing bytes that could break a line (or all non-ASCII) as \xNN. */
static void escape_name(const char *in, char *out, size_t out_len, bool escape_high)
{
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)in; *p && o + 5 < out_len; p++) {
		if (*p < 0x20 || *p == 0x7f || *p == '\\' || (escape_high && *p > 0x7f))
			o += (size_t)snprintf(out + o, out_len - o, "\\x%02x", *p);
		else
			out[o++] = (char)*p;
	}
	out[o] = '\0';
}

void mv_name_printable(const char *in, char *out, size_t out_len)
{
	escape_name(in, out, out_len, false);
	if (!mv_utf8_valid(out, strlen(out)))
		escape_name(in, out, out_len, true);
}

char *mv_name_printable_dup(const char *in)
{
	size_t n = 4 * strlen(in) + 6;
	char *out = malloc(n);

	if (out)
		mv_name_printable(in, out, n);
	return out;
}

static const char *special_kind(mode_t mode)
{
	if (S_ISFIFO(mode))
		return "special file (fifo), refused";
	if (S_ISSOCK(mode))
		return "special file (socket), refused";
	if (S_ISCHR(mode) || S_ISBLK(mode))
		return "special file (device), refused";
	return "special file, refused";
}

static int walk_dir(struct mv_walk *w, int fd, const char *prefix, unsigned depth);

/* Classifies one directory entry @d_name of folder @dfd; @rel is its path. */
static int walk_one(struct mv_walk *w, int dfd, const char *d_name, char *rel, unsigned depth)
{
	struct stat st;
	int sub, ret;

	/* A signature is JSON text, and names must not forge lines in listings. */
	if (!mv_utf8_valid(rel, strlen(rel)) || !mv_resource_name_valid(rel, false))
		return add_error(w, rel, -EILSEQ,
		                 "file name is not valid UTF-8 or has control characters, refused");
	if (fstatat(dfd, d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return add_error(w, rel, -errno, "cannot stat");
	if (S_ISLNK(st.st_mode))
		return add_error(w, rel, -ELOOP, "symlink, refused");
	if (S_ISREG(st.st_mode))
		return add_entry(w, rel, (uint64_t)st.st_size, 0, NULL);
	if (!S_ISDIR(st.st_mode))
		return add_error(w, rel, -EINVAL, special_kind(st.st_mode));
	if (depth >= WALK_MAX_DEPTH)
		return add_error(w, rel, -EINVAL, "folders nested too deeply, refused");
	sub = openat(dfd, d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sub < 0)
		return add_error(w, rel, errno == ELOOP || errno == ENOTDIR ? -ELOOP : -errno,
		                 errno == ELOOP || errno == ENOTDIR ? "symlink, refused"
		                                                    : "cannot open folder");
	ret = walk_dir(w, sub, rel, depth + 1);
	free(rel);
	return ret;
}

/* Lists folder @fd (consumed) whose path in the model is @prefix (NULL: root). */
static int walk_dir(struct mv_walk *w, int fd, const char *prefix, unsigned depth)
{
	struct dirent *d;
	DIR *dir = fdopendir(fd);
	int ret = 0;

	if (!dir) {
		ret = -errno;
		close(fd);
		return ret;
	}
	for (;;) {
		char *rel;

		errno = 0;
		d = readdir(dir);
		if (!d) {
			ret = -errno;
			break;
		}
		if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
			continue;
		if (prefix ? asprintf(&rel, "%s/%s", prefix, d->d_name) < 0
		           : !(rel = strdup(d->d_name))) {
			ret = -ENOMEM;
			break;
		}
		if (mv_walk_ignored(w, rel)) {
			free(rel);
			continue;
		}
		ret = walk_one(w, dirfd(dir), d->d_name, rel, depth);
		if (ret)
			break;
	}
	closedir(dir);
	if (ret && prefix && ret != -ENOMEM && ret != -EFBIG) {
		char *name = strdup(prefix);

		/* A folder that cannot be listed to the end is reported, not fatal. */
		return name ? add_error(w, name, ret, "cannot read folder") : -ENOMEM;
	}
	return ret;
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct mv_walk_entry *)a)->name,
	              ((const struct mv_walk_entry *)b)->name);
}

int mv_walk_list(struct mv_walk *w, struct mv_err *err)
{
	struct stat st;
	char *name;
	int fd, ret;

	if (w->single_file) {
		if (stat(w->root, &st) < 0)
			return mv_err_set(err, -errno, "%s: %s", w->root, strerror(errno));
		name = strdup(".");
		ret = name ? add_entry(w, name, (uint64_t)st.st_size, 0, NULL) : -ENOMEM;
		return ret ? mv_err_set(err, ret, "%s: out of memory", w->root) : 0;
	}
	fd = fcntl(w->dirfd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return mv_err_set(err, -errno, "%s: %s", w->root, strerror(errno));
	/* The duplicate shares the folder's read position: start from the top. */
	lseek(fd, 0, SEEK_SET);
	ret = walk_dir(w, fd, NULL, 0);
	if (ret == -EFBIG)
		return mv_err_set(err, ret, "%s: more than %u files", w->root, WALK_MAX_FILES);
	if (ret)
		return mv_err_set(err, ret, "%s: cannot list folder: %s", w->root, strerror(-ret));
	if (w->n > 1)
		qsort(w->e, w->n, sizeof(*w->e), entry_cmp);
	return 0;
}

/* Turns an errno from opening model file @name into its one-line message. */
static int open_error(const char *name, int e, struct mv_err *err)
{
	switch (e) {
	case ELOOP: return mv_err_set(err, -ELOOP, "%s: symlink, refused", name);
	case ENOTDIR:
		return mv_err_set(err, -ELOOP, "%s: a folder on its path is a symlink or a file",
		                  name);
	case ENOENT: return mv_err_set(err, -ENOENT, "%s: missing", name);
	case EACCES:
	case EPERM: return mv_err_set(err, -e, "%s: unreadable: %s", name, strerror(e));
	default: return mv_err_set(err, -e, "%s: cannot open: %s", name, strerror(e));
	}
}

/* Opens @name below @root_fd one component at a time, never following links. */
static int open_beneath(int root_fd, const char *name, struct mv_err *err)
{
	char buf[PATH_MAX];
	char *comp, *next;
	int cur = root_fd, fd;

	if (!mv_resource_name_valid(name, false) || strlen(name) >= sizeof(buf))
		return mv_err_set(err, -EINVAL, "%s: invalid file name", name);
	strcpy(buf, name);
	comp = buf;
	while ((next = strchr(comp, '/'))) {
		*next = '\0';
		fd = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			int e = errno;

			if (cur != root_fd)
				close(cur);
			return open_error(name, e == ELOOP ? ENOTDIR : e, err);
		}
		if (cur != root_fd)
			close(cur);
		cur = fd;
		comp = next + 1;
	}
	/* O_NONBLOCK: opening a FIFO must not wait for a writer. */
	fd = openat(cur, comp, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		fd = open_error(name, errno, err);
	if (cur != root_fd)
		close(cur);
	return fd;
}

int mv_walk_open_file(const struct mv_walk *w, const char *name, struct stat *st,
                      struct mv_err *err)
{
	const char *shown = w->single_file ? w->root : name;
	int fd;

	if (w->single_file) {
		if (strcmp(name, ".") != 0)
			return mv_err_set(err, -ENOENT, "%s: missing (the model is a single file)",
			                  name);
		fd = open(w->root, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0)
			return open_error(shown, errno, err);
	} else {
		fd = open_beneath(w->dirfd, name, err);
		if (fd < 0)
			return fd;
	}
	if (fstat(fd, st) < 0) {
		int e = errno;

		close(fd);
		return mv_err_set(err, -e, "%s: cannot stat: %s", shown, strerror(e));
	}
	if (!S_ISREG(st->st_mode)) {
		close(fd);
		return mv_err_set(err, -EINVAL, "%s: %s", shown,
		                  S_ISDIR(st->st_mode) ? "a folder, not a file"
		                                       : special_kind(st->st_mode));
	}
	return fd;
}
