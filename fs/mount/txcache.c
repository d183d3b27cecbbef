// SPDX-License-Identifier: Apache-2.0
/*
 * txcache.c - --pickle=transcode: the transcode cache, CACHE/transcoded
 * (docs/mount.md, "Pickles"): the transcoded output of a shown checkpoint
 * view, its MAC'd record, and the key the records are MAC'd with. Which
 * views exist and show is txview.c's.
 *
 * The first open writes the output into CACHE/transcoded/<source digest
 * hex>.safetensors (temp file, fsync, rename) reading the source through
 * vread, then its record <...>.safetensors.record the same way: the source's
 * signed digests, the model and statement, the output's size and SHA-256,
 * and an HMAC-SHA-256 of all that under CACHE/cache.key, a secret only the
 * daemon's user can read. The name alone binds nothing: whoever can write
 * the folder can swap two entries. A later open, in this or a later mount,
 * reuses a cached output only if its record verifies under the key, names
 * this source, and the output hashes to the recorded SHA-256 (and starts
 * with the plan's header). Anything else is logged, counted and made again.
 * Either way an in-memory Merkle tree of the output is built with the
 * SHA-256 and every read is verified against it (txview.c), so a cache file
 * changed while mounted gives EIO: a tampered entry is never served.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "txview_int.h"

#define TX_CHUNK        (1u << 20)
#define TX_KEY_LEN      32 /* bytes of CACHE/cache.key */
#define TX_OUT_EXT      ".safetensors"
#define TX_RECORD_EXT   ".record" /* the record of version 2 */
#define TX_LEGACY_EXT   ".sha256" /* the record of version 1: "<hex>\n", no MAC */
#define TX_NAME_MAX     (2 * MV_MAX_DIGEST_SIZE + 32)
#define TX_RECORD_MAX   (64u << 10)
#define TX_RECORD_MAGIC "modelfs-transcode-record 2\n"
#define TX_MAC_TAG      "hmac-sha256 "

/* The names of one cache entry in CACHE/transcoded, keyed by the source's signed digest. */
struct tx_entry {
	char out[TX_NAME_MAX];    /* <fs-verity digest hex>.safetensors */
	char rec[TX_NAME_MAX];    /* ... .record: the MAC'd record (docs/mount.md) */
	char legacy[TX_NAME_MAX]; /* ... .sha256: the unauthenticated record of version 1 */
	char path[PATH_MAX];      /* CACHE/transcoded/<out>, for log lines */
};

/* Fills @e for view @t. */
static void tx_entry_init(struct mfs_mount *m, struct mfs_node *t, struct tx_entry *e)
{
	const struct mv_resource *r = t->tx->res;
	char hex[2 * MV_MAX_DIGEST_SIZE + 1];

	mv_hex_encode(r->merkle.digest, mv_hash_digest_size(r->merkle.params.alg), hex);
	snprintf(e->out, sizeof(e->out), "%s%s", hex, TX_OUT_EXT);
	snprintf(e->rec, sizeof(e->rec), "%s%s%s", hex, TX_OUT_EXT, TX_RECORD_EXT);
	snprintf(e->legacy, sizeof(e->legacy), "%s%s%s", hex, TX_OUT_EXT, TX_LEGACY_EXT);
	snprintf(e->path, sizeof(e->path), "%s/%s", m->tx_dir, e->out);
}

/*
 * Takes possession of an output file: builds its Merkle tree in memory
 * (64 KiB blocks: 32 bytes of hash per 64 KiB), then computes its SHA-256
 * from a second read whose every block is verified against that tree. So the
 * SHA-256 describes exactly the bytes the tree describes, even if the file
 * changed in between, and every later read is checked against the same tree.
 * On success v->tree, v->mt and @sha are set. 0, -EBADMSG, or -errno.
 */
static int seal_output(struct mfs_txview *v, int fd, uint8_t sha[32])
{
	struct mv_tree_params p = {
	    .alg = MV_HASH_SHA256, .block_size = 1u << MV_MAX_LOG_BLOCK, .data_size = v->size};
	struct mv_verify_failure fail;
	struct mv_measurement meas;
	struct mv_mem_tree *mt = NULL;
	EVP_MD_CTX *ctx = NULL;
	uint8_t *buf = NULL;
	uint64_t off = 0;
	int ret;

	ret = mv_mem_tree_build(&p, fd, &mt, &meas);
	if (ret)
		goto out;
	if (mv_tree_init(&v->tree, &p, meas.root)) {
		ret = -EINVAL;
		goto out;
	}
	ret = -ENOMEM;
	ctx = EVP_MD_CTX_new();
	buf = malloc(TX_CHUNK);
	if (!ctx || !buf || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
		goto out;
	while (off < v->size) {
		size_t n = v->size - off < TX_CHUNK ? (size_t)(v->size - off) : TX_CHUNK;

		ret = mv_pread_exact(fd, buf, n, off);
		if (!ret)
			ret = mv_verify_blocks(&v->tree, &mv_mem_tree_ops, mt,
			                       off >> MV_MAX_LOG_BLOCK, buf, n, &fail);
		if (!ret && !EVP_DigestUpdate(ctx, buf, n))
			ret = -EIO;
		if (ret)
			goto out;
		off += n;
	}
	ret = EVP_DigestFinal_ex(ctx, sha, NULL) ? 0 : -EIO;
out:
	if (ret) {
		mv_mem_tree_free(mt);
		mt = NULL;
	}
	v->mt = mt;
	free(buf);
	EVP_MD_CTX_free(ctx);
	return ret;
}

/* Does @fd start with the plan's header? 0 or -EBADMSG. */
static int header_check(const struct mfs_tx_plan *p, int fd)
{
	const uint8_t *hdr;
	size_t len = mfs_tx_plan_header(p, &hdr);
	uint8_t *buf = malloc(len ? len : 1);
	int ret = -ENOMEM;

	if (buf)
		ret = mv_pread_exact(fd, buf, len, 0) || memcmp(buf, hdr, len) ? -EBADMSG : 0;
	free(buf);
	return ret;
}

/* ---- the cache key ---- */

/* Records the one-line refusal of key file @path (stat @st) for @why. */
static int key_refuse(struct mv_err *err, const char *path, const struct stat *st, const char *why)
{
	return mv_err_set(err, -EPERM, "%s: untrusted cache key (owner uid %u, mode %04o): %s",
	                  path, (unsigned)st->st_uid, (unsigned)(st->st_mode & 07777), why);
}

/*
 * Reads the key from key file @fd (@path for messages), which only this
 * user may read or write: whoever else could read it could forge records.
 * Return: 0 (m->tx_key set), -EPERM (refused, @err set) or -errno.
 */
static int key_read(struct mfs_mount *m, int fd, const char *path, struct mv_err *err)
{
	char why[64];
	struct stat st;

	if (fstat(fd, &st) != 0)
		return mv_err_set(err, -errno, "%s: cache key: %s", path, strerror(errno));
	snprintf(why, sizeof(why), "not owned by uid %u (the daemon's user)", (unsigned)geteuid());
	if (!S_ISREG(st.st_mode))
		return key_refuse(err, path, &st, "not a regular file");
	if (st.st_uid != geteuid())
		return key_refuse(err, path, &st, why);
	if (st.st_mode & 077)
		return key_refuse(err, path, &st, "readable or writable by group or others");
	if (st.st_size != TX_KEY_LEN)
		return key_refuse(err, path, &st, "not 32 bytes long");
	if (mv_pread_exact(fd, m->tx_key, TX_KEY_LEN, 0))
		return mv_err_set(err, -EIO, "%s: cache key: short read", path);
	m->have_tx_key = true;
	return 0;
}

/*
 * Makes a key in folder @dirfd: 32 bytes from RAND_bytes into a temp file
 * created 0600 with O_EXCL|O_NOFOLLOW, fsync'd, then linked to its name.
 * link() never replaces a file, so of daemons racing on one cache the first
 * wins and the others read its key. Return: 0 (a key is in place) or -errno.
 */
static int key_create(int dirfd)
{
	uint8_t key[TX_KEY_LEN];
	char tmp[64];
	int fd, ret;

	snprintf(tmp, sizeof(tmp), "%s.%d.tmp", MFS_CACHE_KEY, (int)getpid());
	unlinkat(dirfd, tmp, 0); /* left by a killed daemon that had our pid */
	if (RAND_bytes(key, sizeof(key)) != 1)
		return -EIO;
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	ret = mv_pwrite_full(fd, key, sizeof(key), 0);
	if (!ret && fsync(fd) != 0)
		ret = -errno;
	close(fd);
	if (!ret && linkat(dirfd, tmp, dirfd, MFS_CACHE_KEY, 0) != 0 && errno != EEXIST)
		ret = -errno;
	unlinkat(dirfd, tmp, 0);
	if (!ret && fsync(dirfd) != 0)
		ret = -errno;
out:
	OPENSSL_cleanse(key, sizeof(key));
	return ret;
}

int mfs_tx_key_load(struct mfs_mount *m, struct mv_err *err)
{
	char *path = NULL;
	int fd, ret = -EIO;

	if (asprintf(&path, "%s/%s", m->cache_base, MFS_CACHE_KEY) < 0)
		return mv_err_set(err, -ENOMEM, "mount: out of memory");
	for (int tries = 0; tries < 2; tries++) {
		fd = openat(m->cache_base_fd, MFS_CACHE_KEY,
		            O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd >= 0) {
			ret = key_read(m, fd, path, err);
			close(fd);
			goto out;
		}
		if (errno != ENOENT) {
			ret = mv_err_set(err, -errno, "%s: cache key: %s", path, strerror(errno));
			goto out;
		}
		ret = key_create(m->cache_base_fd);
		if (ret == -EROFS || ret == -EACCES || ret == -EPERM) {
			/* A read-only cache: trees still load; views cannot be cached. */
			mfs_log(LOG_WARNING,
			        "cache-key-warning path=%s reason=\"cannot create: %s; transcoded "
			        "views cannot be opened\"",
			        path, strerror(-ret));
			ret = 0;
			goto out;
		}
		if (ret) {
			mv_err_set(err, ret, "%s: cannot create cache key: %s", path,
			           strerror(-ret));
			goto out;
		}
	}
	ret = mv_err_set(err, -EIO, "%s: cache key: removed while being created", path);
out:
	free(path);
	return ret;
}

/* ---- records: what a cached output was made from, MAC'd ---- */

/* HMAC-SHA-256 of @len bytes at @data under the cache key. 0 or -EIO. */
static int record_mac(const struct mfs_mount *m, const void *data, size_t len, uint8_t mac[32])
{
	size_t got = 0;

	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, m->tx_key, TX_KEY_LEN, data, len, mac,
	               32, &got) ||
	    got != 32)
		return -EIO;
	return 0;
}

/* Adds "key": "<hex of @len bytes>" to @obj. false on ENOMEM. */
static bool json_hex(cJSON *obj, const char *key, const uint8_t *bytes, size_t len)
{
	char hex[2 * MV_MAX_DIGEST_SIZE + 1];

	mv_hex_encode(bytes, len, hex);
	return cJSON_AddStringToObject(obj, key, hex) != NULL;
}

/*
 * The record's JSON line for view @t whose output hashes to @sha: the
 * source's signed digests and size, the model and statement it was made
 * for, and the output's size and SHA-256. malloc'd, NULL on ENOMEM.
 */
static char *record_body(const struct mfs_node *t, const uint8_t sha[32])
{
	const struct mv_resource *r = t->tx->res;
	const struct mv_manifest *man = t->model->man;
	cJSON *root = cJSON_CreateObject(), *src, *out;
	char *text = NULL;
	bool ok;

	src = cJSON_AddObjectToObject(root, "source");
	out = cJSON_AddObjectToObject(root, "output");
	ok = src && out && cJSON_AddNumberToObject(src, "size", (double)r->merkle.params.data_size);
	ok = ok && json_hex(src, "sha256", r->sha256, 32);
	ok = ok && cJSON_AddStringToObject(src, "fsverity_alg",
	                                   mv_hash_name(r->merkle.params.alg)) != NULL;
	ok = ok && json_hex(src, "fsverity_digest", r->merkle.digest,
	                    mv_hash_digest_size(r->merkle.params.alg));
	ok = ok && cJSON_AddStringToObject(src, "model", t->model->path) != NULL;
	ok = ok && cJSON_AddStringToObject(src, "file", r->name) != NULL;
	ok = ok && json_hex(src, "statement_sha256", man->statement_sha256, 32);
	ok = ok && cJSON_AddNumberToObject(out, "size", (double)t->txv->size) != NULL;
	ok = ok && json_hex(out, "sha256", sha, 32);
	if (ok)
		text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return text;
}

/* Is member @key of @obj the string "<hex of @len bytes>"? */
static bool json_hex_is(const cJSON *obj, const char *key, const uint8_t *bytes, size_t len)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
	char hex[2 * MV_MAX_DIGEST_SIZE + 1];

	mv_hex_encode(bytes, len, hex);
	return cJSON_IsString(it) && strcmp(it->valuestring, hex) == 0;
}

/* Is member @key of @obj the number @v (sizes: exact below 2^53)? */
static bool json_num_is(const cJSON *obj, const char *key, uint64_t v)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsNumber(it) && it->valuedouble == (double)v && v < (1ull << 53);
}

/*
 * Checks the JSON line of a record whose MAC verified: it must name the
 * source of @t (signed SHA-256, fs-verity digest, size) and the planned
 * output size. @sha gets the recorded output SHA-256. NULL, or why not.
 */
static const char *record_body_check(const struct mfs_node *t, const char *body, size_t len,
                                     uint8_t sha[32])
{
	const struct mv_resource *r = t->tx->res;
	cJSON *root = cJSON_ParseWithLength(body, len);
	const cJSON *src = cJSON_GetObjectItemCaseSensitive(root, "source");
	const cJSON *out = cJSON_GetObjectItemCaseSensitive(root, "output");
	const cJSON *alg = cJSON_GetObjectItemCaseSensitive(src, "fsverity_alg");
	const cJSON *osha = cJSON_GetObjectItemCaseSensitive(out, "sha256");
	const char *why = NULL;

	if (!cJSON_IsObject(src) || !cJSON_IsObject(out) || !cJSON_IsString(osha) ||
	    !cJSON_IsString(alg))
		why = "malformed record";
	else if (strcmp(alg->valuestring, mv_hash_name(r->merkle.params.alg)) ||
	         !json_hex_is(src, "fsverity_digest", r->merkle.digest,
	                      mv_hash_digest_size(r->merkle.params.alg)) ||
	         !json_hex_is(src, "sha256", r->sha256, 32) ||
	         !json_num_is(src, "size", r->merkle.params.data_size))
		why = "record names another source";
	else if (!json_num_is(out, "size", t->txv->size))
		why = "recorded output size differs from the plan";
	else if (strlen(osha->valuestring) != 64 || mv_hex_decode(osha->valuestring, sha, 32) != 32)
		why = "malformed record";
	cJSON_Delete(root);
	return why;
}

/*
 * Checks record @buf (@len bytes, NUL-terminated) of view @t: version line,
 * then the MAC under the cache key, then what it names. A record of version
 * 1 (a bare "<sha256 hex>\n", no MAC) is refused like any unknown version.
 * @sha: out: the recorded output SHA-256. Return: NULL, or why not.
 */
static const char *record_check(const struct mfs_mount *m, const struct mfs_node *t,
                                const char *buf, size_t len, uint8_t sha[32])
{
	const size_t magic_len = sizeof(TX_RECORD_MAGIC) - 1, mac_len = sizeof(TX_MAC_TAG) - 1;
	const char *body = buf + magic_len, *nl;
	uint8_t want[32], got[32];
	char hex[65];

	if (len < magic_len || memcmp(buf, TX_RECORD_MAGIC, magic_len) != 0)
		return len == 65 && buf[64] == '\n' ? "old-format record (version 1, no MAC)"
		                                    : "unknown record version";
	nl = memchr(body, '\n', len - magic_len);
	if (!nl || (size_t)(buf + len - (nl + 1)) != mac_len + 65 ||
	    memcmp(nl + 1, TX_MAC_TAG, mac_len) != 0 || buf[len - 1] != '\n')
		return "malformed record";
	memcpy(hex, nl + 1 + mac_len, 64);
	hex[64] = '\0';
	if (mv_hex_decode(hex, want, 32) != 32)
		return "malformed record";
	if (record_mac(m, buf, (size_t)(nl + 1 - buf), got) != 0)
		return "cannot compute the record's MAC";
	if (CRYPTO_memcmp(got, want, 32) != 0)
		return "record MAC does not verify (not written with this cache's key)";
	return record_body_check(t, body, (size_t)(nl - body), sha);
}

/*
 * Reads record @name of the cache into @buf (at most TX_RECORD_MAX bytes,
 * NUL-terminated): a regular file owned by this user, writable by no one
 * else. Return: its length, or -ENOENT (none) or -EBADMSG (unusable).
 */
static ssize_t record_read(struct mfs_mount *m, const char *name, char *buf)
{
	struct stat st;
	ssize_t got = -EBADMSG;
	int fd = openat(m->tx_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return errno == ENOENT ? -ENOENT : -EBADMSG;
	if (!fstat(fd, &st) && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
	    !(st.st_mode & 022) && st.st_size <= TX_RECORD_MAX)
		got = mv_pread_full(fd, buf, TX_RECORD_MAX, 0);
	close(fd);
	if (got < 0)
		return -EBADMSG;
	buf[got] = '\0';
	return got;
}

/*
 * Whether the record of entry @e binds its output to the source of @t.
 * @sha: out: the recorded output SHA-256. Return: NULL, or why not.
 */
static const char *record_verify(struct mfs_mount *m, struct mfs_node *t, const struct tx_entry *e,
                                 uint8_t sha[32])
{
	char *buf = malloc(TX_RECORD_MAX + 1);
	const char *why;
	ssize_t len;

	if (!buf)
		return "out of memory";
	len = record_read(m, e->rec, buf);
	if (len == -ENOENT)
		why = faccessat(m->tx_fd, e->legacy, F_OK, AT_SYMLINK_NOFOLLOW) == 0
		          ? "old-format record (version 1, no MAC)"
		          : "no record";
	else if (len < 0)
		why = "record is not a regular file owned and writable by this user only";
	else
		why = record_check(m, t, buf, (size_t)len, sha);
	free(buf);
	return why;
}

/*
 * Reuses a cached output if it is intact: a regular file of the planned
 * size, owned by this user and writable by no one else, whose record
 * verifies under the cache key and names this source, starting with the
 * plan's header and hashing to the recorded SHA-256. 0 (v->fd set),
 * -ENOENT (nothing cached) or -EBADMSG (rejected, logged: make it again).
 */
static int cache_reuse(struct mfs_mount *m, struct mfs_node *t, const struct tx_entry *e)
{
	struct mfs_txview *v = t->txv;
	uint8_t want[32], got[32];
	const char *why = NULL;
	char q[PATH_MAX + 8];
	struct stat st;
	int fd = openat(m->tx_fd, e->out, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return -ENOENT;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != v->size ||
	    st.st_uid != geteuid() || (st.st_mode & 022))
		why =
		    "not a regular file of the planned size, owned and writable by this user only";
	else if ((why = record_verify(m, t, e, want)) != NULL)
		;
	else if (header_check(v->plan, fd))
		why = "header differs from the plan";
	else if (seal_output(v, fd, got) || memcmp(got, want, 32) != 0)
		why = "output differs from the SHA-256 in its record";
	mfs_log_value(e->path, q, sizeof(q));
	if (why) {
		mv_mem_tree_free(v->mt);
		v->mt = NULL;
		close(fd);
		mfs_count(&m->ctr.transcode_rejected, 1);
		mfs_log(LOG_WARNING,
		        "transcode-cache-rejected model=%s file=%s cache=%s reason=\"%s\" "
		        "action=rebuild",
		        t->model->path, t->name, q, why);
		return -EBADMSG;
	}
	memcpy(v->sha256, got, 32);
	v->have_sha256 = true;
	v->fd = fd;
	mfs_count(&m->ctr.transcode_reuses, 1);
	mfs_log(LOG_INFO, "transcode-reuse model=%s file=%s cache=%s", t->model->path, t->name, q);
	return 0;
}

/*
 * Writes @len bytes as cache file @name atomically: a temp file created
 * 0400 with O_EXCL|O_NOFOLLOW (random suffix: two models may hold the same
 * source file), fsync'd and renamed.
 */
static int cache_file_write(struct mfs_mount *m, const char *name, const void *data, size_t len)
{
	struct mv_atomic_file a;
	int ret = mv_atomic_open(&a, m->tx_fd, name, 0400, NULL);

	if (!ret)
		ret = mv_pwrite_full(a.fd, data, len, 0);
	if (!ret)
		ret = mv_atomic_commit(&a, 0, NULL);
	mv_atomic_abort(&a);
	return ret;
}

/*
 * Writes the record of entry @e for view @t whose output hashes to @sha:
 * the version line and the JSON line, then "hmac-sha256 <hex>" of those two
 * lines under the cache key; atomically. The version-1 record, if any, is
 * removed: it no longer describes anything.
 */
static int record_write(struct mfs_mount *m, struct mfs_node *t, const struct tx_entry *e,
                        const uint8_t sha[32])
{
	const size_t tail = sizeof(TX_MAC_TAG) - 1 + 65;
	char *body = record_body(t, sha), *text = NULL, hex[65];
	uint8_t mac[32];
	size_t head;
	int ret = -ENOMEM;

	if (!body)
		return -ENOMEM;
	head = sizeof(TX_RECORD_MAGIC) - 1 + strlen(body) + 1;
	text = malloc(head + tail + 1);
	if (!text)
		goto out;
	snprintf(text, head + 1, "%s%s\n", TX_RECORD_MAGIC, body);
	ret = record_mac(m, text, head, mac);
	if (ret)
		goto out;
	mv_hex_encode(mac, 32, hex);
	snprintf(text + head, tail + 1, "%s%s\n", TX_MAC_TAG, hex);
	ret = cache_file_write(m, e->rec, text, head + tail);
	if (ret)
		goto out;
	unlinkat(m->tx_fd, e->legacy, 0);
	if (fsync(m->tx_fd) != 0)
		ret = -errno;
out:
	free(text);
	free(body);
	return ret;
}
/*
 * Transcodes the source into a temp file in the cache (reading it only
 * through vread), hashes it, and publishes it (fsync, rename) and then its
 * record. The written descriptor itself is kept: no window in which a
 * replaced file is served. On failure (a full cache disk fails any of these
 * steps) nothing of this attempt is left: the temp file goes, and so do an
 * output already renamed and its record, so the cache never holds one
 * without the other nor keeps the space of a half-done entry.
 */
static int produce(struct mfs_mount *m, struct mfs_node *t, const struct tx_entry *e)
{
	struct mfs_txview *v = t->txv;
	struct mv_atomic_file a;
	struct mfs_vctx vc = {.fd = -1};
	struct mv_err err = {0};
	struct timespec t0, t1;
	char cq[PATH_MAX + 8];
	bool published = false;
	int ret;

	ret = mv_atomic_open(&a, m->tx_fd, e->out, 0400, NULL);
	if (ret) {
		mv_err_set(&err, ret, "%s/%s: %s", m->tx_dir, a.tmp, strerror(-ret));
		goto out;
	}
	ret = mfs_tx_src_open(m, t->tx, &vc);
	if (ret)
		goto out;
	mfs_log(LOG_NOTICE, "transcode-start model=%s file=%s as=%s bytes=%" PRIu64, t->model->path,
	        t->tx->res->name, t->name, v->size);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ret = mfs_tx_plan_write(v->plan, mfs_vpread, &vc, -1, a.fd, &err);
	if (!ret)
		ret = seal_output(v, a.fd, v->sha256);
	/* fsync, rename; the descriptor is kept to be served */
	if (!ret)
		ret = mv_atomic_commit(&a, MV_ATOMIC_KEEP_FD, &err);
	if (ret)
		goto out;
	published = true;
	ret = record_write(m, t, e, v->sha256);
	if (ret) {
		mv_err_set(&err, ret, "%s: %s", e->rec, strerror(-ret));
		goto out;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	v->have_sha256 = true;
	v->fd = a.fd;
	a.fd = -1;
	mfs_count(&m->ctr.transcodes, 1);
	mfs_log(LOG_NOTICE, "transcode-done model=%s file=%s as=%s bytes=%" PRIu64 " seconds=%.3f",
	        t->model->path, t->tx->res->name, t->name, v->size,
	        (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
out:
	if (ret) {
		mv_mem_tree_free(v->mt);
		v->mt = NULL;
		mfs_log(LOG_ERR, "transcode-failed model=%s file=%s cache=%s reason=\"%s\"",
		        t->model->path, t->tx->res->name, mfs_log_value(m->tx_dir, cq, sizeof(cq)),
		        err.msg[0] ? err.msg : strerror(-ret));
		if (published) {
			unlinkat(m->tx_fd, e->rec, 0);
			unlinkat(m->tx_fd, e->out, 0);
		}
	}
	mv_atomic_abort(&a);
	mfs_close_backing(m, vc.fd);
	return ret;
}

int mfs_tx_open(struct mfs_mount *m, struct mfs_node *t)
{
	struct mfs_txview *v;
	struct tx_entry *e = NULL;
	int ret = mfs_tx_decide(m, t);

	if (ret || mfs_tx_is_index(t))
		return ret;
	v = mfs_tx_view(t);
	pthread_mutex_lock(&t->load_lock); /* concurrent first opens transcode once */
	if (v->fd >= 0)
		goto out;
	e = malloc(sizeof(*e));
	if (!e) {
		ret = -ENOMEM;
		goto out;
	}
	tx_entry_init(m, t, e);
	if (!m->have_tx_key) {
		/* No record can be checked or written: nothing cached is trusted. */
		mfs_log(LOG_ERR,
		        "transcode-failed model=%s file=%s reason=\"no cache key (%s/%s could not "
		        "be created)\"",
		        t->model->path, t->tx->res->name, m->cache_base, MFS_CACHE_KEY);
		ret = -EIO;
		goto out;
	}
	ret = cache_reuse(m, t, e);
	if (ret)
		ret = produce(m, t, e);
	if (ret) {
		ret = ret == -ENOMEM ? ret : -EIO;
		goto out;
	}
	/* The checked output is kept open: the plan is no longer needed. */
	mfs_tx_plan_free(v->plan);
	v->plan = NULL;
out:
	pthread_mutex_unlock(&t->load_lock);
	free(e);
	return ret;
}
