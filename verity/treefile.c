// SPDX-License-Identifier: Apache-2.0
/*
 * treefile.c - the on-disk tree file: a 4 KiB header, then the tree blocks in
 * fs-verity's order (top level first). See docs/formats.md.
 *
 * Header layout (little-endian):
 *   0   magic "MFSTREE1"          8
 *   8   u32 format version (1)
 *   12  u8 hash algorithm, u8 log2 block size, u8 salt size, u8 levels
 *   16  u64 data size
 *   24  u64 tree offset (bytes from the file start to the first tree block)
 *   32  u8 salt[32]
 *   64  u8 root hash[64]          (a hint only: trust comes from the signature)
 *   128 u64 level start[8]        (in blocks from the tree offset)
 *   192 u64 level blocks[8]
 *   256 u64 total tree blocks
 *   264 u8 SHA-256 of bytes 0..263, to tell a damaged header from a stale one
 *   296 zeros up to 4096
 *
 * Also the names of a model's derived files: its tree files (mv_tree_path)
 * and its packed copies (mv_zpack_path; the format is libvpack's, zpack.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "verity.h"
#include "verity_internal.h"

#define TREE_FORMAT_VERSION 1
#define HDR_CHECKSUM_OFF    264

void mv_tree_header_encode(const struct mv_tree_header *h, uint8_t *buf)
{
	memset(buf, 0, MV_TREE_HEADER_SIZE);
	memcpy(buf, MV_TREE_MAGIC, 8);
	mv_put_le32(buf + 8, TREE_FORMAT_VERSION);
	buf[12] = (uint8_t)h->params.alg;
	buf[13] = (uint8_t)h->geo.log_block_size;
	buf[14] = h->params.salt_size;
	buf[15] = (uint8_t)h->geo.num_levels;
	mv_put_le64(buf + 16, h->params.data_size);
	mv_put_le64(buf + 24, h->tree_offset);
	memcpy(buf + 32, h->params.salt, h->params.salt_size);
	memcpy(buf + 64, h->root, h->geo.digest_size);
	for (int i = 0; i < MV_MAX_LEVELS; i++) {
		mv_put_le64(buf + 128 + 8 * i, h->geo.level_start[i]);
		mv_put_le64(buf + 192 + 8 * i, h->geo.level_blocks[i]);
	}
	mv_put_le64(buf + 256, h->geo.tree_blocks);
	mv_sha256(buf, HDR_CHECKSUM_OFF, buf + HDR_CHECKSUM_OFF);
}

int mv_tree_header_decode(const uint8_t *buf, size_t len, uint64_t file_size,
                          struct mv_tree_header *h, struct mv_err *err)
{
	uint8_t sum[32];
	struct mv_tree_geometry *g = &h->geo;

	memset(h, 0, sizeof(*h));
	if (len < MV_TREE_HEADER_SIZE)
		return mv_err_set(err, -EBADMSG, "truncated header (%zu bytes)", len);
	if (memcmp(buf, MV_TREE_MAGIC, 8) != 0)
		return mv_err_set(err, -EBADMSG, "bad magic (not a modelfs tree file)");
	if (mv_get_le32(buf + 8) != TREE_FORMAT_VERSION)
		return mv_err_set(err, -EBADMSG, "unsupported tree format version %u",
		                  mv_get_le32(buf + 8));
	mv_sha256(buf, HDR_CHECKSUM_OFF, sum);
	if (memcmp(sum, buf + HDR_CHECKSUM_OFF, 32) != 0)
		return mv_err_set(err, -EBADMSG, "header checksum mismatch (damaged header)");
	if (buf[13] < MV_MIN_LOG_BLOCK || buf[13] > MV_MAX_LOG_BLOCK)
		return mv_err_set(err, -EBADMSG, "bad log2 block size %u", buf[13]);
	h->params.alg = (enum mv_hash_alg)buf[12];
	h->params.block_size = 1u << buf[13];
	h->params.salt_size = buf[14];
	h->params.data_size = mv_get_le64(buf + 16);
	if (h->params.salt_size > MV_MAX_SALT_SIZE)
		return mv_err_set(err, -EBADMSG, "bad salt size %u", buf[14]);
	memcpy(h->params.salt, buf + 32, h->params.salt_size);
	if (mv_tree_geometry(&h->params, g))
		return mv_err_set(err, -EBADMSG, "bad tree parameters (algorithm %u)", buf[12]);
	/* The recorded layout must be exactly the one the parameters imply. */
	if (buf[15] != g->num_levels || mv_get_le64(buf + 256) != g->tree_blocks)
		return mv_err_set(err, -EBADMSG, "level count or size disagrees with parameters");
	for (int i = 0; i < MV_MAX_LEVELS; i++)
		if (mv_get_le64(buf + 128 + 8 * i) != g->level_start[i] ||
		    mv_get_le64(buf + 192 + 8 * i) != g->level_blocks[i])
			return mv_err_set(err, -EBADMSG,
			                  "level %d offsets disagree with parameters", i);
	h->tree_offset = mv_get_le64(buf + 24);
	if (h->tree_offset < MV_TREE_HEADER_SIZE || h->tree_offset > (1u << 20))
		return mv_err_set(err, -EBADMSG, "bad tree offset %llu",
		                  (unsigned long long)h->tree_offset);
	memcpy(h->root, buf + 64, g->digest_size);
	if (file_size) {
		uint64_t tree_bytes = g->tree_blocks << g->log_block_size;

		if (tree_bytes > UINT64_MAX - h->tree_offset ||
		    file_size < h->tree_offset + tree_bytes)
			return mv_err_set(err, -EBADMSG, "truncated: %llu bytes, tree needs %llu",
			                  (unsigned long long)file_size,
			                  (unsigned long long)(h->tree_offset + tree_bytes));
	}
	return 0;
}

void mv_tree_file_name(const struct mv_measurement *m, char out[MV_TREE_NAME_MAX])
{
	mv_hex_encode(m->digest, mv_hash_digest_size(m->params.alg), out);
	strcat(out, ".tree");
}

int mv_tree_path(const char *model_dir, const struct mv_resource *r, char *out, size_t out_len)
{
	char name[MV_TREE_NAME_MAX];
	int n;

	if (!r->has_merkle || !mv_hash_digest_size(r->merkle.params.alg))
		return -ENOENT;
	mv_tree_file_name(&r->merkle, name);
	n = snprintf(out, out_len, "%s/%s/%s", model_dir, MV_TREES_DIR, name);
	if (n < 0 || (size_t)n >= out_len)
		return -ENAMETOOLONG;
	return 0;
}

/* ------------------------------------------------------------------------
 * Names of packed copies (MV_PACKED_DIR); the packed format is libvpack's
 * ------------------------------------------------------------------------ */

void mv_zpack_file_name(const struct mv_measurement *m, char out[MV_ZPACK_NAME_MAX])
{
	size_t ds = mv_hash_digest_size(m->params.alg);

	mv_hex_encode(m->digest, ds, out);
	memcpy(out + 2 * ds, MV_ZPACK_EXT, sizeof(MV_ZPACK_EXT));
}

int mv_zpack_path(const char *model_dir, const struct mv_resource *r, char *out, size_t out_len)
{
	char name[MV_ZPACK_NAME_MAX];
	int n;

	if (!r->has_merkle)
		return -EINVAL;
	mv_zpack_file_name(&r->merkle, name);
	n = snprintf(out, out_len, "%s/%s/%s", model_dir, MV_PACKED_DIR, name);
	return n < 0 || (size_t)n >= out_len ? -ENAMETOOLONG : 0;
}

int mv_tree_writer_open(struct mv_tree_writer *w, int dirfd, const struct mv_tree_params *p)
{
	int ret;

	w->dirfd = dirfd;
	w->fd = -1;
	if (mv_tree_geometry(p, &w->geo))
		return -EINVAL;
	/* Unnamed: the name comes from the digest; seal's sweep removes ".tmp.*". */
	ret = mv_atomic_open(&w->af, dirfd, NULL, 0644, NULL);
	if (!ret)
		w->fd = w->af.fd;
	return ret;
}

int mv_tree_writer_sink(void *ctx, unsigned level, uint64_t index, const void *block,
                        size_t block_size)
{
	struct mv_tree_writer *w = ctx;

	if (level >= w->geo.num_levels || index >= w->geo.level_blocks[level])
		return -EINVAL;
	return mv_pwrite_full(w->fd, block, block_size,
	                      MV_TREE_HEADER_SIZE +
	                          ((w->geo.level_start[level] + index) << w->geo.log_block_size));
}

int mv_tree_writer_commit(struct mv_tree_writer *w, const struct mv_measurement *m,
                          const char *name, bool durable, bool *created)
{
	struct mv_tree_header h = {
	    .params = m->params, .geo = w->geo, .tree_offset = MV_TREE_HEADER_SIZE};
	uint8_t *hdr = malloc(MV_TREE_HEADER_SIZE);
	int ret;

	if (!hdr)
		return -ENOMEM;
	memcpy(h.root, m->root, sizeof(h.root));
	mv_tree_header_encode(&h, hdr);
	ret = mv_pwrite_full(w->fd, hdr, MV_TREE_HEADER_SIZE, 0);
	free(hdr);
	if (ret)
		return ret;
	if (created)
		*created = faccessat(w->dirfd, name, F_OK, AT_SYMLINK_NOFOLLOW) != 0;
	w->af.name = name;
	ret = mv_atomic_commit(&w->af, durable ? 0 : MV_ATOMIC_NOSYNC, NULL);
	w->fd = -1;
	return ret;
}

void mv_tree_writer_abort(struct mv_tree_writer *w)
{
	if (w->fd < 0)
		return;
	mv_atomic_abort(&w->af);
	w->fd = -1;
}

/* Splits @path into its folder (opened as a directory fd) and base name. */
static int open_parent(const char *path, int *dirfd, const char **base)
{
	const char *slash = strrchr(path, '/');
	char dir[PATH_MAX];

	if (!slash) {
		*dirfd = AT_FDCWD;
		*base = path;
		return 0;
	}
	if ((size_t)(slash - path) >= sizeof(dir))
		return -ENAMETOOLONG;
	memcpy(dir, path, (size_t)(slash - path));
	dir[slash - path] = '\0';
	*dirfd = open(slash == path ? "/" : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	*base = slash + 1;
	return *dirfd < 0 ? -errno : 0;
}

int mv_tree_file_write(int data_fd, const struct mv_tree_params *p, const char *tree_path,
                       struct mv_measurement *m, struct mv_err *err)
{
	struct mv_tree_writer w = {.fd = -1};
	const char *base;
	int dirfd, ret;

	ret = open_parent(tree_path, &dirfd, &base);
	if (ret)
		return mv_err_set(err, ret, "%s: cannot open folder: %s", tree_path,
		                  strerror(-ret));
	ret = mv_tree_writer_open(&w, dirfd, p);
	if (ret) {
		mv_err_set(err, ret, "%s: cannot create: %s", tree_path, strerror(-ret));
		goto out;
	}
	ret = mv_measure_fd(data_fd, p, mv_tree_writer_sink, &w, m);
	if (ret) {
		mv_err_set(err, ret, "%s: cannot build tree: %s", tree_path, strerror(-ret));
		goto out;
	}
	ret = mv_tree_writer_commit(&w, m, base, true, NULL);
	if (ret)
		mv_err_set(err, ret, "%s: write failed: %s", tree_path, strerror(-ret));
out:
	mv_tree_writer_abort(&w);
	if (dirfd != AT_FDCWD)
		close(dirfd);
	return ret;
}
