// SPDX-License-Identifier: Apache-2.0
/*
 * util.c - errors, hex, base64 and whole-file I/O shared by every layer.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "verity.h"

int mv_err_set(struct mv_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (!err || err->code)
		return code;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return code;
}

void mv_hex_encode(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
	out[2 * len] = '\0';
}

int mv_hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int mv_hex_decode(const char *hex, uint8_t *out, size_t out_max)
{
	size_t len = strlen(hex);

	if (len % 2 || len / 2 > out_max || len / 2 > INT_MAX)
		return -EINVAL;
	for (size_t i = 0; i < len / 2; i++) {
		int hi = mv_hex_digit(hex[2 * i]), lo = mv_hex_digit(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return (int)(len / 2);
}

bool mv_utf8_valid(const void *buf, size_t len)
{
	const uint8_t *s = buf;

	for (size_t i = 0; i < len;) {
		unsigned c = s[i], n;
		uint32_t cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07;
		else
			return false;
		if (len - i - 1 < n)
			return false;
		for (unsigned k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
			return false;
		i += n + 1;
	}
	return true;
}

char *mv_base64_encode(const uint8_t *in, size_t len)
{
	size_t out_len;
	char *out;

	if (len > (SIZE_MAX / 4) * 3 - 3 || len > INT_MAX)
		return NULL;
	out_len = 4 * ((len + 2) / 3);
	out = malloc(out_len + 1);
	if (!out)
		return NULL;
	EVP_EncodeBlock((unsigned char *)out, in, (int)len);
	out[out_len] = '\0';
	return out;
}

/*
 * Strict decoding: standard alphabet, length a multiple of 4, padding only
 * at the end. EVP_DecodeBlock alone accepts whitespace and miscounts padding.
 */
int mv_base64_decode(const char *in, size_t in_len, uint8_t **out, size_t *out_len)
{
	size_t pad = 0, n;
	uint8_t *buf;

	*out = NULL;
	*out_len = 0;
	if (in_len % 4 || in_len > INT_MAX)
		return -EINVAL;
	for (size_t i = 0; i < in_len; i++) {
		char c = in[i];
		bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		          (c >= '0' && c <= '9') || c == '+' || c == '/';

		if (c == '=' && i >= in_len - 2) {
			pad++;
			continue;
		}
		if (!ok || pad)
			return -EINVAL;
	}
	n = in_len / 4 * 3;
	buf = malloc(n + 1);
	if (!buf)
		return -ENOMEM;
	if (in_len && EVP_DecodeBlock(buf, (const unsigned char *)in, (int)in_len) != (int)n) {
		free(buf);
		return -EINVAL;
	}
	*out = buf;
	*out_len = n - pad;
	buf[*out_len] = 0;
	return 0;
}

int mv_read_file(const char *path, size_t max, char **out, size_t *out_len, struct mv_err *err)
{
	struct stat st;
	char *buf = NULL;
	size_t done = 0;
	int fd, ret;

	*out = NULL;
	*out_len = 0;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC); /* a FIFO never blocks */
	if (fd < 0)
		return mv_err_set(err, -errno, "%s: cannot open: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		ret = mv_err_set(err, -errno, "%s: cannot stat: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = mv_err_set(err, -EINVAL, "%s: not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		ret = mv_err_set(err, -EFBIG, "%s: too large (%lld bytes, limit %zu)", path,
		                 (long long)st.st_size, max);
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		ret = mv_err_set(err, -ENOMEM, "%s: out of memory", path);
		goto out;
	}
	while (done < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = mv_err_set(err, n < 0 ? -errno : -EIO, "%s: read failed: %s", path,
			                 n < 0 ? strerror(errno) : "file shrank");
			goto out;
		}
		done += (size_t)n;
	}
	buf[done] = '\0';
	*out = buf;
	*out_len = done;
	buf = NULL;
	ret = 0;
out:
	free(buf);
	close(fd);
	return ret;
}

/* Fills @a->tmp: "<name>.<random>.tmp", or ".tmp.<random>" without a name. */
static int atomic_tmp_name(struct mv_atomic_file *a)
{
	static const char chars[] =
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	uint8_t rnd[8];
	char sfx[sizeof(rnd) + 1];
	int n;

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return -EAGAIN;
	for (size_t i = 0; i < sizeof(rnd); i++)
		sfx[i] = chars[rnd[i] % (sizeof(chars) - 1)];
	sfx[sizeof(rnd)] = '\0';
	n = a->name ? snprintf(a->tmp, sizeof(a->tmp), "%s.%s.tmp", a->name, sfx)
	            : snprintf(a->tmp, sizeof(a->tmp), ".tmp.%s", sfx);
	return n < 0 || (size_t)n >= sizeof(a->tmp) ? -ENAMETOOLONG : 0;
}

int mv_atomic_open(struct mv_atomic_file *a, int dirfd, const char *name, unsigned mode,
                   struct mv_err *err)
{
	int ret = -EEXIST;

	*a = (struct mv_atomic_file){.dirfd = dirfd, .fd = -1, .name = name};
	for (unsigned i = 0; i < 100 && ret == -EEXIST; i++) {
		ret = atomic_tmp_name(a);
		if (ret)
			break;
		a->fd = openat(dirfd, a->tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		               mode & 07777);
		ret = a->fd < 0 ? -errno : 0;
	}
	if (!ret && fchmod(a->fd, mode & 07777) < 0)
		ret = -errno;
	if (!ret)
		return 0;
	mv_err_set(err, ret, "%s: %s", ret == -ENAMETOOLONG && name ? name : a->tmp,
	           strerror(-ret));
	if (a->fd >= 0) {
		close(a->fd);
		unlinkat(dirfd, a->tmp, 0);
		a->fd = -1;
	}
	return ret;
}

/* The steps of a commit; -errno and the step's name in *@step on failure. */
static int atomic_publish(struct mv_atomic_file *a, unsigned flags, const char **step)
{
	if (!(flags & MV_ATOMIC_NOSYNC) && fsync(a->fd) < 0)
		return *step = "fsync", -errno;
	if (!(flags & MV_ATOMIC_KEEP_FD)) {
		int rc = close(a->fd);

		a->fd = -1;
		if (rc < 0)
			return *step = "close", -errno;
	}
	if (!a->name)
		return *step = "rename", -EINVAL;
	if (renameat(a->dirfd, a->tmp, a->dirfd, a->name) < 0)
		return *step = "rename", -errno;
	a->tmp[0] = '\0';
	return 0;
}

int mv_atomic_commit(struct mv_atomic_file *a, unsigned flags, struct mv_err *err)
{
	const char *step = NULL;
	int ret = atomic_publish(a, flags, &step);

	if (ret) {
		mv_err_set(err, ret, "%s: %s: %s", a->tmp, step, strerror(-ret));
		unlinkat(a->dirfd, a->tmp, 0);
		a->tmp[0] = '\0';
		mv_atomic_abort(a);
		return ret;
	}
	return 0;
}

void mv_atomic_abort(struct mv_atomic_file *a)
{
	if (a->fd < 0)
		return;
	close(a->fd);
	a->fd = -1;
	if (a->tmp[0])
		unlinkat(a->dirfd, a->tmp, 0);
	a->tmp[0] = '\0';
}

int mv_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode,
                         struct mv_err *err)
{
	struct mv_atomic_file a;
	int ret = mv_atomic_open(&a, AT_FDCWD, path, mode, err);

	if (!ret && (ret = mv_pwrite_full(a.fd, data, len, 0)))
		mv_err_set(err, ret, "%s: write failed: %s", path, strerror(-ret));
	if (!ret)
		ret = mv_atomic_commit(&a, 0, err);
	mv_atomic_abort(&a);
	return ret;
}

ssize_t mv_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, p + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

int mv_pread_exact(int fd, void *buf, size_t len, uint64_t off)
{
	ssize_t n = mv_pread_full(fd, buf, len, off);

	if (n < 0)
		return (int)n;
	return (size_t)n == len ? 0 : -EIO;
}

int mv_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

int mv_buf_reserve(uint8_t **buf, size_t *cap, size_t need)
{
	uint8_t *p;

	if (*cap >= need)
		return 0;
	/* malloc, not realloc: nothing is worth copying into the new buffer. */
	p = malloc(need);
	if (!p)
		return -ENOMEM;
	free(*buf);
	*buf = p;
	*cap = need;
	return 0;
}
