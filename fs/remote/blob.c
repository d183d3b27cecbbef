// SPDX-License-Identifier: Apache-2.0
/*
 * blob.c - ranged blob GETs (HTTP Range) and the staging files of a pull:
 * a blob's .part file, filled chunk by chunk in any order, and its journal
 * of finished chunks, re-checked before anything is re-used
 * (pull_int.h, docs/remote.md "Pull").
 *
 * A range answer is trusted for nothing but its length: a 206 must carry
 * the Content-Range asked for and exactly that many bytes; a 200 is taken
 * only when the whole blob was asked for. The bytes themselves are checked
 * by the caller against the blob's digest once the blob is complete.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pull_int.h"

/* "BASE/v2/REPO/blobs/DIGEST", malloc'd. */
static char *blob_url(const struct mfr_client *c, const char *digest)
{
	char *url = NULL;

	if (asprintf(&url, "%s/v2/%s/blobs/%s", c->base, c->ref.repo, digest) < 0)
		return NULL;
	return url;
}

/*
 * Reads a decimal at *@p: digits only, no sign, no leading zero (but "0"),
 * no overflow. Advances *@p past it. False if there is none.
 */
static bool parse_u64(const char **p, uint64_t *v)
{
	const char *s = *p;

	*v = 0;
	if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] >= '0' && s[1] <= '9'))
		return false;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (*v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return false;
		*v = *v * 10 + (uint64_t)(*s - '0');
	}
	*p = s;
	return true;
}

bool mfr_content_range_ok(const char *v, uint64_t off, uint64_t len, uint64_t total)
{
	uint64_t a, b, t;

	if (!v || !len || off > UINT64_MAX - (len - 1) || strncmp(v, "bytes ", 6) != 0)
		return false;
	v += 6;
	if (!parse_u64(&v, &a) || *v++ != '-' || !parse_u64(&v, &b) || *v++ != '/')
		return false;
	if (a != off || b != off + (len - 1))
		return false;
	if (strcmp(v, "*") == 0)
		return true;
	return parse_u64(&v, &t) && !*v && t == total && b < t;
}

/* The errno of an unexpected status. */
static int status_errno(long status)
{
	if (status == 404)
		return -ENOENT;
	return status == 401 || status == 403 ? -EACCES : -EIO;
}

int mfr_blob_get_range(struct mfr_client *c, const char *digest, uint64_t off, size_t len,
                       uint64_t blob_size, char **data, struct mv_err *err)
{
	char range[64], *url = NULL;
	struct mfr_req rq = {.method = "GET", .range = range, .max_body = len, .retry = true};
	struct mfr_resp rs = {0};
	int ret = -EINVAL;

	*data = NULL;
	if (!mfr_digest_valid(digest) || !len || len > MFR_RANGE_MAX || off > blob_size ||
	    len > blob_size - off) {
		mv_err_set(err, ret, "%s: %s: bad range %" PRIu64 "+%zu of %" PRIu64,
		           c->ref.registry, digest, off, len, blob_size);
		goto out;
	}
	ret = -ENOMEM;
	url = blob_url(c, digest);
	if (!url)
		goto out;
	rq.url = url;
	snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, off, off + len - 1);
	ret = mfr_request(c, &rq, &rs, err);
	if (ret)
		goto out;
	if (rs.status == 206 && !mfr_content_range_ok(rs.content_range, off, len, blob_size)) {
		ret = mv_err_set(err, -EPROTO,
		                 "%s/%s@%s: the registry answered bytes %" PRIu64 "-%" PRIu64
		                 " with another Content-Range",
		                 c->ref.registry, c->ref.repo, digest, off, off + len - 1);
		goto out;
	}
	if (rs.status != 206 && !(rs.status == 200 && off == 0 && len == blob_size)) {
		char note[64] = "";

		if (rs.status == 200)
			snprintf(note, sizeof(note), " (the registry ignored the Range header)");
		else if (rs.retries)
			snprintf(note, sizeof(note), " (%d attempts)", rs.retries + 1);
		ret = mv_err_set(err, status_errno(rs.status), "%s/%s@%s: blob GET: HTTP %ld%s",
		                 c->ref.registry, c->ref.repo, digest, rs.status, note);
		goto out;
	}
	if (rs.len != len) {
		ret = mv_err_set(err, -EIO, "%s/%s@%s: blob GET: %zu bytes received, %zu asked",
		                 c->ref.registry, c->ref.repo, digest, rs.len, len);
		goto out;
	}
	*data = rs.body;
	rs.body = NULL;
	ret = 0;
out:
	mfr_resp_free(&rs);
	free(url);
	return ret;
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* The journal's header for @p. */
static void journal_header(const struct mfr_part *p, uint8_t hdr[MFR_JOURNAL_HDR])
{
	memset(hdr, 0, MFR_JOURNAL_HDR);
	memcpy(hdr, MFR_JOURNAL_MAGIC, 8);
	put_le64(hdr + 8, p->chunk);
	put_le64(hdr + 16, p->size);
}

/* Bytes of chunk @idx. */
static size_t chunk_len(const struct mfr_part *p, uint64_t idx)
{
	uint64_t off = idx * p->chunk;

	return p->size - off < p->chunk ? (size_t)(p->size - off) : p->chunk;
}

int mfr_part_reset(struct mfr_part *p, struct mv_err *err)
{
	uint8_t hdr[MFR_JOURNAL_HDR];
	int ret = 0;

	memset(p->done, 0, p->n_chunks ? p->n_chunks : 1);
	journal_header(p, hdr);
	if (ftruncate(p->fd, 0) || ftruncate(p->fd, (off_t)p->size) || ftruncate(p->jfd, 0))
		ret = -errno;
	if (!ret)
		ret = mv_pwrite_full(p->jfd, hdr, sizeof(hdr), 0);
	p->jlen = MFR_JOURNAL_HDR;
	if (ret)
		mv_err_set(err, ret, "%s.part: cannot start over: %s", p->digest + 7,
		           strerror(-ret));
	return ret;
}

/*
 * Re-checks the chunks the journal lists (@j, @jlen bytes): each is read
 * from the .part and hashed; the journal is rewritten with those that match.
 */
static int part_resume(struct mfr_part *p, const uint8_t *j, size_t jlen, struct mv_err *err)
{
	uint8_t *buf = malloc(p->chunk), sum[32], hdr[MFR_JOURNAL_HDR];
	uint64_t w = MFR_JOURNAL_HDR;
	int ret = buf ? 0 : -ENOMEM;

	for (size_t o = MFR_JOURNAL_HDR; !ret && o + MFR_JOURNAL_REC <= jlen;
	     o += MFR_JOURNAL_REC) {
		uint64_t idx = get_le64(j + o);
		size_t n;

		if (idx >= p->n_chunks || p->done[idx])
			continue;
		n = chunk_len(p, idx);
		ret = mv_pread_exact(p->fd, buf, n, idx * p->chunk);
		if (ret == -EIO) {
			ret = 0; /* the .part is short: fetch it again */
			p->n_bad++;
			continue;
		}
		if (ret)
			break;
		mv_sha256(buf, n, sum);
		if (memcmp(sum, j + o + 8, 32) != 0) {
			p->n_bad++;
			continue;
		}
		p->done[idx] = 1;
		p->n_reused++;
		ret = mv_pwrite_full(p->jfd, j + o, MFR_JOURNAL_REC, w);
		w += MFR_JOURNAL_REC;
	}
	journal_header(p, hdr);
	if (!ret)
		ret = mv_pwrite_full(p->jfd, hdr, sizeof(hdr), 0);
	if (!ret && ftruncate(p->jfd, (off_t)w))
		ret = -errno;
	p->jlen = w;
	if (ret)
		mv_err_set(err, ret, "%s.journal: cannot resume: %s", p->digest + 7,
		           strerror(-ret));
	free(buf);
	return ret;
}

/* Reads the journal (bounded) and resumes from it, or starts over. */
static int part_load(struct mfr_part *p, struct mv_err *err)
{
	uint8_t *j = NULL, hdr[MFR_JOURNAL_HDR];
	struct stat st, jst;
	uint64_t max = MFR_JOURNAL_HDR + 2 * MFR_JOURNAL_REC * p->n_chunks;
	int ret;

	if (fstat(p->fd, &st) || fstat(p->jfd, &jst))
		return mv_err_set(err, -errno, "%s.part: %s", p->digest + 7, strerror(errno));
	if (!S_ISREG(st.st_mode) || !S_ISREG(jst.st_mode))
		return mv_err_set(err, -EINVAL, "%s.part: not a regular file", p->digest + 7);
	journal_header(p, hdr);
	if ((uint64_t)st.st_size != p->size || (uint64_t)jst.st_size < MFR_JOURNAL_HDR ||
	    (uint64_t)jst.st_size > max)
		return mfr_part_reset(p, err);
	j = malloc((size_t)jst.st_size);
	if (!j)
		return -ENOMEM;
	ret = mv_pread_exact(p->jfd, j, (size_t)jst.st_size, 0);
	if (!ret && memcmp(j, hdr, MFR_JOURNAL_HDR) == 0)
		ret = part_resume(p, j, (size_t)jst.st_size, err);
	else if (!ret)
		ret = mfr_part_reset(p, err);
	else
		mv_err_set(err, ret, "%s.journal: %s", p->digest + 7, strerror(-ret));
	free(j);
	return ret;
}

int mfr_part_open(struct mfr_part *p, int blobs_fd, const char *digest, uint64_t size,
                  uint32_t chunk, struct mv_err *err)
{
	char name[80];
	int ret = -EINVAL;

	memset(p, 0, sizeof(*p));
	p->fd = p->jfd = -1;
	pthread_mutex_init(&p->lock, NULL);
	if (!mfr_digest_valid(digest) || !chunk)
		return mv_err_set(err, ret, "%s: bad blob", digest);
	memcpy(p->digest, digest, sizeof(p->digest));
	p->size = size;
	p->chunk = chunk;
	p->n_chunks = size / chunk + (size % chunk != 0);
	p->done = calloc(p->n_chunks ? p->n_chunks : 1, 1);
	if (!p->done)
		return -ENOMEM;
	snprintf(name, sizeof(name), "%s.part", digest + 7);
	p->fd = openat(blobs_fd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	snprintf(name, sizeof(name), "%s.journal", digest + 7);
	if (p->fd >= 0)
		p->jfd = openat(blobs_fd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (p->fd < 0 || p->jfd < 0)
		return mv_err_set(err, -errno, "%s: cannot open: %s", name, strerror(errno));
	ret = part_load(p, err);
	return ret;
}

int mfr_part_fetch(struct mfr_part *p, struct mfr_client *c, uint64_t idx, struct mv_err *err)
{
	uint8_t rec[MFR_JOURNAL_REC];
	size_t n = chunk_len(p, idx);
	char *data = NULL;
	int ret;

	ret = mfr_blob_get_range(c, p->digest, idx * p->chunk, n, p->size, &data, err);
	if (ret)
		goto out;
	ret = mv_pwrite_full(p->fd, data, n, idx * p->chunk);
	if (ret) {
		mv_err_set(err, ret, "%s.part: write failed: %s", p->digest + 7, strerror(-ret));
		goto out;
	}
	put_le64(rec, idx);
	mv_sha256(data, n, rec + 8);
	pthread_mutex_lock(&p->lock);
	ret = mv_pwrite_full(p->jfd, rec, sizeof(rec), p->jlen);
	if (!ret) {
		p->jlen += sizeof(rec);
		p->done[idx] = 1;
	}
	pthread_mutex_unlock(&p->lock);
	if (ret)
		mv_err_set(err, ret, "%s.journal: write failed: %s", p->digest + 7, strerror(-ret));
out:
	free(data);
	return ret;
}

void mfr_part_close(struct mfr_part *p)
{
	if (p->fd >= 0)
		close(p->fd);
	if (p->jfd >= 0)
		close(p->jfd);
	p->fd = p->jfd = -1;
	free(p->done);
	p->done = NULL;
	pthread_mutex_destroy(&p->lock);
}

/* ---- folders of a pull ---- */

/* "sha256:HEX" of @data into @out. */
void mfr_sha256_digest(const void *data, size_t len, char out[MFR_DIGEST_LEN + 1])
{
	uint8_t sum[32];

	mv_sha256(data, len, sum);
	memcpy(out, "sha256:", 7);
	mv_hex_encode(sum, 32, out + 7);
}

/* Removes @name in @dfd and everything under it, following no link. */
int mfr_rm_tree_at(int dfd, const char *name, int depth)
{
	struct dirent *e;
	DIR *d;
	int fd, ret = 0;

	if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if ((errno != EISDIR && errno != EPERM) || depth > MFR_PULL_MAX_DEPTH)
		return -errno;
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while (!ret && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			ret = mfr_rm_tree_at(fd, e->d_name, depth + 1);
	closedir(d);
	if (!ret && unlinkat(dfd, name, AT_REMOVEDIR))
		ret = -errno;
	return ret;
}

/* @dir must not exist, or be an empty folder (not a link). */
int mfr_dir_check_empty(const char *dir, struct mv_err *err)
{
	struct dirent *e;
	struct stat st;
	DIR *d;
	int ret = 0;

	if (lstat(dir, &st))
		return errno == ENOENT ? 0
		                       : mv_err_set(err, -errno, "%s: %s", dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return mv_err_set(err, -EEXIST, "%s: exists and is not a folder", dir);
	d = opendir(dir);
	if (!d)
		return mv_err_set(err, -errno, "%s: %s", dir, strerror(errno));
	while (!ret && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			ret = mv_err_set(err, -ENOTEMPTY,
			                 "%s: exists and is not empty (pull needs a new or empty "
			                 "folder)",
			                 dir);
	closedir(d);
	return ret;
}

/* A layer's path: relative, no "." / ".." / empty component, not ours. */
bool mfr_path_ok(const char *s)
{
	const char *c = s;

	if (!s || strlen(s) >= 4096 || !mv_resource_name_valid(s, false))
		return false;
	if (strcmp(s, MV_SIG_NAME) == 0 || strcmp(s, MV_HIDDEN_DIR) == 0 ||
	    strncmp(s, MV_HIDDEN_DIR "/", sizeof(MV_HIDDEN_DIR)) == 0)
		return false;
	while (*c) {
		size_t n = strcspn(c, "/");

		if (!n || n > 255 || (n == 1 && c[0] == '.') || (n == 2 && !strncmp(c, "..", 2)))
			return false;
		c += n + (c[n] == '/');
	}
	return true;
}

/* Opens (creating) the folders of @path under @root; the last name in *@base. */
int mfr_open_parents(int root, const char *path, const char **base, struct mv_err *err)
{
	char comp[256];
	const char *c = path;
	int fd = dup(root), depth = 0;

	while (fd >= 0 && strchr(c, '/')) {
		size_t n = strcspn(c, "/");
		int nfd;

		if (n >= sizeof(comp) || ++depth > MFR_PULL_MAX_DEPTH) {
			close(fd);
			return mv_err_set(err, -ENAMETOOLONG, "%s: path too deep or too long",
			                  path);
		}
		memcpy(comp, c, n);
		comp[n] = '\0';
		if (mkdirat(fd, comp, 0755) && errno != EEXIST)
			nfd = -1;
		else
			nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (nfd < 0)
			mv_err_set(err, -errno, "%s: cannot make its folder %s: %s", path, comp,
			           strerror(errno));
		close(fd);
		fd = nfd;
		c += n + 1;
	}
	*base = c;
	return fd < 0 ? (err->code ? err->code : -errno) : fd;
}

/* Copies @src (@size bytes) to a new file @name in @dfd (a blob used twice). */
int mfr_copy_new(int src, uint64_t size, int dfd, const char *name)
{
	uint8_t *buf = malloc(MFR_PULL_PIECE);
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	int ret = fd < 0 ? -errno : buf ? 0 : -ENOMEM;

	for (uint64_t off = 0; !ret && off < size; off += MFR_PULL_PIECE) {
		size_t n = size - off < MFR_PULL_PIECE ? (size_t)(size - off) : MFR_PULL_PIECE;

		ret = mv_pread_exact(src, buf, n, off);
		if (!ret)
			ret = mv_pwrite_full(fd, buf, n, off);
	}
	if (fd >= 0)
		close(fd);
	free(buf);
	return ret;
}

/* Creates (or re-opens) and locks the staging folder and its blobs folder. */
int mfr_staging_open(const char *path, int *sfd, int *bfd, struct mv_err *err)
{
	struct stat st;

	if (mkdir(path, 0700) && errno != EEXIST)
		return mv_err_set(err, -errno, "%s: cannot create: %s", path, strerror(errno));
	*sfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (*sfd < 0 || fstat(*sfd, &st))
		return mv_err_set(err, -errno, "%s: cannot open: %s", path, strerror(errno));
	if (st.st_uid != geteuid())
		return mv_err_set(err, -EPERM, "%s: not ours (owner %u)", path,
		                  (unsigned)st.st_uid);
	if (flock(*sfd, LOCK_EX | LOCK_NB))
		return mv_err_set(err, errno == EWOULDBLOCK ? -EBUSY : -errno,
		                  "%s: another pull is using it", path);
	if (mkdirat(*sfd, MFR_PULL_BLOBS, 0700) && errno != EEXIST)
		return mv_err_set(err, -errno, "%s/" MFR_PULL_BLOBS ": %s", path, strerror(errno));
	*bfd = openat(*sfd, MFR_PULL_BLOBS, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (*bfd < 0)
		return mv_err_set(err, -errno, "%s/" MFR_PULL_BLOBS ": %s", path, strerror(errno));
	return 0;
}

void mfr_sync_parent(const char *path)
{
	char *parent = strdup(path), *slash;
	int fd;

	slash = parent ? strrchr(parent, '/') : NULL;
	if (slash)
		*(slash == parent ? slash + 1 : slash) = '\0';
	fd = open(slash ? parent : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	free(parent);
}
