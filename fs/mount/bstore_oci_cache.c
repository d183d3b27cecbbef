// SPDX-License-Identifier: Apache-2.0
/*
 * bstore_oci_cache.c - what an oci:// store keeps in the cache folder
 * (bstore_oci.c; docs/remote.md, "Lazy mount"): the referrer's model.sig and
 * Merkle trees in CACHE/oci/<manifest hex>/model, laid out as a model folder
 * (model.sig, .modelfs/trees/NAME) so that open_local() and ftree.c find
 * them where a local store keeps them. Each tree is downloaded in ranges to
 * a temporary file, hashed on the way and renamed into place only if its
 * SHA-256 is its descriptor's; a tree already there with that digest (a
 * previous mount's) is kept. Nothing here is trusted by the mount for more
 * than a local file: model.sig is verified against --trust by store.c, and
 * trees against the signed Merkle roots at each read.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "bstore_oci_int.h"
#include "fsremote.h"
#include "mount_int.h"

#define OCI_TREE_CHUNK (16u << 20) /* bytes per ranged GET of a tree download */

/* mfs_oci_own_dir() (bstore_oci_int.h): folder @name of @dfd, created 0700, checked ours. */
int mfs_oci_own_dir(int dfd, const char *name)
{
	struct stat st;
	int fd;

	if (mkdirat(dfd, name, 0700) && errno != EEXIST)
		return -errno;
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) || st.st_uid != geteuid() || (st.st_mode & 022)) {
		close(fd);
		return -EPERM;
	}
	return fd;
}

/**
 * write_file() - write @len bytes to @dfd/@name through a temporary file and rename
 * Return: 0 or a negative errno.
 */
static int write_file(int dfd, const char *name, const void *data, size_t len)
{
	char tmp[NAME_MAX + 16];
	ssize_t w;
	size_t done = 0;
	int fd, ret = 0;

	snprintf(tmp, sizeof(tmp), ".tmp-%d", (int)getpid());
	fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	while (done < len) {
		w = write(fd, (const char *)data + done, len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			ret = w < 0 ? -errno : -EIO;
			break;
		}
		done += (size_t)w;
	}
	if (close(fd) && !ret)
		ret = -errno;
	if (!ret && renameat(dfd, tmp, dfd, name))
		ret = -errno;
	if (ret)
		unlinkat(dfd, tmp, 0);
	return ret;
}

/* Is @name a tree file's name: [0-9a-f]+.tree, at most NAME_MAX? */
static bool tree_name_ok(const char *name)
{
	size_t l = name ? strlen(name) : 0, h = name ? strspn(name, "0123456789abcdef") : 0;

	return l > 5 && l <= NAME_MAX && h == l - 5 && !strcmp(name + h, ".tree");
}

/* Does @dfd/@name exist with the SHA-256 @digest already (a previous mount's)? */
static bool tree_present(int dfd, const char *name, const char *digest, uint64_t size)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char sum[32], buf[1 << 16];
	char hex[MFR_DIGEST_LEN + 1];
	struct stat st;
	bool ok = false;
	ssize_t got;
	int fd;

	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || !ctx || fstat(fd, &st) || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size != size || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
		goto out;
	while ((got = read(fd, buf, sizeof(buf))) > 0)
		if (!EVP_DigestUpdate(ctx, buf, (size_t)got))
			goto out;
	if (got < 0 || !EVP_DigestFinal_ex(ctx, sum, NULL))
		goto out;
	memcpy(hex, "sha256:", 7);
	mv_hex_encode(sum, 32, hex + 7);
	ok = !strcmp(hex, digest);
out:
	if (fd >= 0)
		close(fd);
	EVP_MD_CTX_free(ctx);
	return ok;
}

/**
 * fetch_tree() - download tree layer @d into @dfd/@d->title, checking its SHA-256
 * @f: in: what was fetched (for messages)
 * @c: in: the set-up client
 * @err: out: the reason
 * Written to a temporary file in OCI_TREE_CHUNK ranges, hashed on the way,
 * renamed into place only if the digest matches. Return: 0 or -errno.
 */
static int fetch_tree(const struct mfs_oci_fetched *f, struct mfr_client *c, int dfd,
                      const struct mfr_desc *d, struct mv_err *err)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	char tmp[NAME_MAX + 16], hex[MFR_DIGEST_LEN + 1], *data = NULL;
	unsigned char sum[32];
	uint64_t off = 0;
	int fd = -1, ret = -ENOMEM;

	snprintf(tmp, sizeof(tmp), ".tmp-%d", (int)getpid());
	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
		goto out;
	fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret =
		    mv_err_set(err, -errno, "%s: tree %s: %s", f->what, d->title, strerror(errno));
		goto out;
	}
	while (off < d->size) {
		size_t n =
		    d->size - off < OCI_TREE_CHUNK ? (size_t)(d->size - off) : OCI_TREE_CHUNK;

		ret = mfr_blob_get_range(c, d->digest, off, n, d->size, &data, err);
		if (ret)
			goto out;
		if (!EVP_DigestUpdate(ctx, data, n) || mv_pwrite_full(fd, data, n, off) != 0) {
			ret = mv_err_set(err, -EIO, "%s: tree %s: cannot write the cache folder",
			                 f->what, d->title);
			goto out;
		}
		free(data);
		data = NULL;
		off += n;
	}
	ret = -EBADMSG;
	if (!EVP_DigestFinal_ex(ctx, sum, NULL))
		goto out;
	memcpy(hex, "sha256:", 7);
	mv_hex_encode(sum, 32, hex + 7);
	if (strcmp(hex, d->digest) != 0) {
		mv_err_set(err, ret, "%s: tree %s: the bytes do not match %s", f->what, d->title,
		           d->digest);
		goto out;
	}
	ret = close(fd) ? -errno : 0;
	fd = -1;
	if (!ret && renameat(dfd, tmp, dfd, d->title))
		ret = -errno;
	if (ret)
		mv_err_set(err, ret, "%s: tree %s: %s", f->what, d->title, strerror(-ret));
out:
	if (fd >= 0)
		close(fd);
	if (ret)
		unlinkat(dfd, tmp, 0);
	free(data);
	EVP_MD_CTX_free(ctx);
	return ret;
}

/**
 * mfs_oci_materialise() - model.sig and the trees into CACHE/oci/<hex>/model
 * See bstore.h.
 */
int mfs_oci_materialise(struct mfs_mount *m, const struct mfs_oci_fetched *f,
                        const struct mfr_manifest *rm, struct mfr_client *c, int *model_fd,
                        struct mv_err *err)
{
	uint64_t bound = f->tree_bytes;
	int oci = -1, top = -1, mod = -1, dot = -1, trees = -1, ret;

	oci = mfs_oci_own_dir(m->cache_base_fd, "oci");
	top = oci < 0 ? oci : mfs_oci_own_dir(oci, f->digest + 7);
	mod = top < 0 ? top : mfs_oci_own_dir(top, "model");
	dot = mod < 0 ? mod : mfs_oci_own_dir(mod, ".modelfs");
	trees = dot < 0 ? dot : mfs_oci_own_dir(dot, "trees");
	if (trees < 0) {
		ret =
		    mv_err_set(err, trees, "%s/oci/%s: cannot create the model's cache folder: %s",
		               m->cache_base, f->digest + 7, strerror(-trees));
		goto out;
	}
	ret = write_file(mod, MV_SIG_NAME, f->sig, f->sig_len);
	if (ret) {
		mv_err_set(err, ret, "%s/oci/%s/model/%s: %s", m->cache_base, f->digest + 7,
		           MV_SIG_NAME, strerror(-ret));
		goto out;
	}
	for (size_t k = 1; k < rm->n_layers; k++) {
		const struct mfr_desc *d = &rm->layers[k];

		if (strcmp(d->media_type, MFR_MT_TREE) != 0)
			continue;
		if (!tree_name_ok(d->title) || d->size > bound) {
			mfs_log(LOG_WARNING,
			        "oci-tree-skipped reference=%s layer=%zu reason=\"not a tree file "
			        "name, "
			        "or over 1/64 of the model\"",
			        f->what, k);
			continue;
		}
		bound -= d->size;
		if (tree_present(trees, d->title, d->digest, d->size))
			continue;
		ret = fetch_tree(f, c, trees, d, err);
		if (ret)
			goto out;
	}
	*model_fd = mod;
	mod = -1;
out:
	if (mod >= 0)
		close(mod);
	if (oci >= 0)
		close(oci);
	if (top >= 0)
		close(top);
	if (dot >= 0)
		close(dot);
	if (trees >= 0)
		close(trees);
	return ret;
}
