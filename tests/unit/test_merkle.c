// SPDX-License-Identifier: Apache-2.0
/*
 * test_merkle.c - fs-verity trees: libfsverity's test vectors, streaming,
 * tree files, and block verification (including tampering and threads).
 * The `fsverity digest` oracle is in tests/cli/test_digest.py.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tap.h"
#include "verity.h"

static char tmpdir[] = "/tmp/modelfs-test-merkle-XXXXXX";

/* libfsverity's test data: byte i is (i%11 + i%439 + i%1103) & 0xff. */
static uint8_t *vector_data(size_t n)
{
	uint8_t *d = malloc(n + 1);

	for (size_t i = 0; i < n; i++)
		d[i] = (uint8_t)((i % 11 + i % 439 + i % 1103) & 0xff);
	return d;
}

/* Writes @data to a new temp file and returns its fd (read-write). */
static int temp_file(const uint8_t *data, size_t n, char *path_out)
{
	static int seq;
	int fd;

	snprintf(path_out, 256, "%s/f%d", tmpdir, seq++);
	fd = open(path_out, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0 && n && write(fd, data, n) != (ssize_t)n) {
		close(fd);
		return -1;
	}
	return fd;
}

static void digest_hex(const uint8_t *data, size_t n, const struct mv_tree_params *base, char *hex)
{
	struct mv_tree_params p = *base;
	struct mv_measurement m;
	char path[256];
	int fd = temp_file(data, n, path);

	p.data_size = n;
	CHECK(fd >= 0);
	CHECK_EQ_INT(mv_measure_fd(fd, &p, NULL, NULL, &m), 0);
	mv_hex_encode(m.digest, mv_hash_digest_size(p.alg), hex);
	close(fd);
}

static void test_libfsverity_vectors(void)
{
	static const struct {
		size_t size;
		const char *digest;
	} v[] = {
	    {1000000, "48df0c462329cd879661bd05b39aa81b05cc16afd27a7196a559da83531d39d9"},
	    {100000, "f2096a36c5cdca4fa33ee8852833150bb324992e5417a9d571f1bffff73b9efc"},
	    {1, "b803429503d95915829b29fdbc8bbad142f3abfd11b1cadf5526582e685c0551"},
	    {0, "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95"},
	};
	struct mv_tree_params p = {.alg = MV_HASH_SHA256, .block_size = 4096};
	uint8_t *d = vector_data(1000000);
	char hex[129];

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		digest_hex(d, v[i].size, &p, hex);
		CHECK_STR(hex, v[i].digest);
	}
	free(d);
}

static void test_geometry(void)
{
	struct mv_tree_params p = {.alg = MV_HASH_SHA256, .block_size = 4096};
	struct mv_tree_geometry g;

	p.data_size = 4096;
	CHECK_EQ_INT(mv_tree_geometry(&p, &g), 0);
	CHECK_EQ_INT(g.num_levels, 0); /* one block: the root is its hash */
	p.data_size = 4097;
	CHECK_EQ_INT(mv_tree_geometry(&p, &g), 0);
	CHECK_EQ_INT(g.num_levels, 1);
	p.data_size = 128ULL * 4096 + 1;
	CHECK_EQ_INT(mv_tree_geometry(&p, &g), 0);
	CHECK_EQ_INT(g.num_levels, 2);
	CHECK_EQ_INT(g.level_blocks[0], 2);
	CHECK_EQ_INT(g.level_blocks[1], 1);
	CHECK_EQ_INT(g.level_start[1], 0); /* top level first */
	CHECK_EQ_INT(g.level_start[0], 1);
	p.data_size = UINT64_MAX; /* must not overflow */
	CHECK_EQ_INT(mv_tree_geometry(&p, &g), 0);
	p.block_size = 3000;
	CHECK_EQ_INT(mv_tree_geometry(&p, &g), -EINVAL);
	p.block_size = 512;
	CHECK_EQ_INT(mv_tree_geometry(&p, &g), -EINVAL);
	p.block_size = 4096;
	p.salt_size = 33;
	CHECK_EQ_INT(mv_tree_geometry(&p, &g), -EINVAL);
	p.salt_size = 0;
	p.alg = (enum mv_hash_alg)7;
	CHECK_EQ_INT(mv_tree_geometry(&p, &g), -EINVAL);
}

/* Feeding the builder in odd pieces gives the same result as one pass. */
static void test_streaming_pieces(void)
{
	struct mv_tree_params p = {
	    .alg = MV_HASH_SHA512, .block_size = 1024, .salt_size = 5, .salt = {1, 2, 3, 4, 5}};
	size_t n = 300000, pieces[] = {1, 7, 1023, 1024, 1025, 4096, 65537};
	uint8_t *d = vector_data(n);
	struct mv_measurement whole, parts;
	struct mv_tree_builder *b;

	p.data_size = n;
	CHECK_EQ_INT(mv_tree_builder_new(&p, NULL, NULL, &b), 0);
	CHECK_EQ_INT(mv_tree_builder_update(b, d, n), 0);
	CHECK_EQ_INT(mv_tree_builder_final(b, &whole), 0);
	mv_tree_builder_free(b);
	for (size_t k = 0; k < sizeof(pieces) / sizeof(pieces[0]); k++) {
		CHECK_EQ_INT(mv_tree_builder_new(&p, NULL, NULL, &b), 0);
		for (size_t off = 0; off < n; off += pieces[k]) {
			size_t len = n - off < pieces[k] ? n - off : pieces[k];

			CHECK_EQ_INT(mv_tree_builder_update(b, d + off, len), 0);
		}
		CHECK_EQ_INT(mv_tree_builder_final(b, &parts), 0);
		CHECK(memcmp(whole.digest, parts.digest, 64) == 0);
		mv_tree_builder_free(b);
	}
	/* Too much or too little data is refused. */
	CHECK_EQ_INT(mv_tree_builder_new(&p, NULL, NULL, &b), 0);
	CHECK_EQ_INT(mv_tree_builder_update(b, d, n - 1), 0);
	CHECK_EQ_INT(mv_tree_builder_final(b, &parts), -EIO);
	CHECK_EQ_INT(mv_tree_builder_update(b, d, 2), -EFBIG);
	mv_tree_builder_free(b);
	free(d);
}

struct fixture {
	char data_path[256], tree_path[300];
	int fd;
	uint8_t *data;
	size_t n;
	struct mv_tree tree;
	struct mv_mem_tree *mt;
};

static void fixture_setup(struct fixture *f, size_t n, uint32_t bs)
{
	struct mv_tree_params p = {.alg = MV_HASH_SHA256, .block_size = bs, .data_size = n};
	struct mv_measurement m;
	struct mv_err err = {0};

	f->n = n;
	f->data = vector_data(n);
	f->fd = temp_file(f->data, n, f->data_path);
	snprintf(f->tree_path, sizeof(f->tree_path), "%s.tree", f->data_path);
	CHECK_EQ_INT(mv_tree_file_write(f->fd, &p, f->tree_path, &m, &err), 0);
	CHECK_EQ_INT(mv_tree_init(&f->tree, &p, m.root), 0);
	CHECK_EQ_INT(mv_mem_tree_load(f->tree_path, &f->tree, &f->mt, &err), 0);
}

static void fixture_teardown(struct fixture *f)
{
	mv_mem_tree_free(f->mt);
	close(f->fd);
	free(f->data);
}

static int verify_all(struct fixture *f, struct mv_verify_failure *fail)
{
	return mv_verify_blocks(&f->tree, &mv_mem_tree_ops, f->mt, 0, f->data, f->n, fail);
}

static void test_verify_roundtrip(void)
{
	size_t sizes[] = {1, 4095, 4096, 4097, (1 << 20) + 1, 3 << 20};

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct fixture f;

		fixture_setup(&f, sizes[i], 4096);
		CHECK_EQ_INT(verify_all(&f, NULL), 0);
		fixture_teardown(&f);
	}
}

/* After one block is verified, its neighbours stop at the verified parent. */
static void test_verify_stops_at_verified_ancestor(void)
{
	struct fixture f;
	uint64_t after_first;

	fixture_setup(&f, 4096 * 300, 4096); /* 2 levels: 3 leaves' blocks + root block */
	CHECK_EQ_INT(mv_verify_blocks(&f.tree, &mv_mem_tree_ops, f.mt, 0, f.data, 4096, NULL), 0);
	after_first = mv_mem_tree_hash_checks(f.mt);
	CHECK_EQ_INT(after_first, 2); /* level-0 block 0 and the top block */
	CHECK_EQ_INT(
	    mv_verify_blocks(&f.tree, &mv_mem_tree_ops, f.mt, 1, f.data + 4096, 4096, NULL), 0);
	CHECK_EQ_INT(mv_mem_tree_hash_checks(f.mt), after_first);
	CHECK_EQ_INT(
	    mv_verify_blocks(&f.tree, &mv_mem_tree_ops, f.mt, 200, f.data + 200 * 4096, 4096, NULL),
	    0);
	CHECK_EQ_INT(mv_mem_tree_hash_checks(f.mt), after_first + 1);
	fixture_teardown(&f);
}

static void test_verify_tampered_data(void)
{
	struct fixture f;
	struct mv_verify_failure fail;

	fixture_setup(&f, 5 << 20, 4096);
	f.data[3 * 4096 + 17] ^= 1;
	CHECK_EQ_INT(verify_all(&f, &fail), -EBADMSG);
	CHECK_EQ_INT(fail.level, -1);
	CHECK_EQ_INT(fail.block, 3);
	CHECK(memcmp(fail.expected, fail.actual, 32) != 0);
	/* Other blocks still verify. */
	CHECK_EQ_INT(mv_verify_blocks(&f.tree, &mv_mem_tree_ops, f.mt, 4, f.data + 4 * 4096,
	                              4096 * 100, NULL),
	             0);
	f.data[3 * 4096 + 17] ^= 1;
	CHECK_EQ_INT(verify_all(&f, NULL), 0);
	fixture_teardown(&f);
}

/* A corrupted hash block is caught against its parent, and never marked. */
static void test_verify_tampered_tree(void)
{
	struct fixture f;
	struct mv_verify_failure fail;
	struct mv_err err = {0};
	uint8_t byte;
	int tfd;

	fixture_setup(&f, 5 << 20, 4096);
	mv_mem_tree_free(f.mt);
	tfd = open(f.tree_path, O_RDWR);
	/* Level 0 is stored last: flip a byte of slot 2 of its second block, so
	 * data block 128 (slot 0) matches and the block itself fails. */
	off_t pos =
	    MV_TREE_HEADER_SIZE + (off_t)(f.tree.geo.level_start[0] + 1) * 4096 + 2 * 32 + 5;
	CHECK(pread(tfd, &byte, 1, pos) == 1);
	byte ^= 0x80;
	CHECK(pwrite(tfd, &byte, 1, pos) == 1);
	close(tfd);
	CHECK_EQ_INT(mv_mem_tree_load(f.tree_path, &f.tree, &f.mt, &err), 0);
	CHECK_EQ_INT(verify_all(&f, &fail), -EBADMSG);
	CHECK_EQ_INT(fail.level, 0);
	CHECK_EQ_INT(fail.block, 1);
	/* Blocks under the intact level-0 block 0 still verify. */
	CHECK_EQ_INT(mv_verify_blocks(&f.tree, &mv_mem_tree_ops, f.mt, 0, f.data, 4096 * 128, NULL),
	             0);
	fixture_teardown(&f);
}

static void test_tree_file_errors(void)
{
	struct fixture f;
	struct mv_err err = {0};
	struct mv_mem_tree *mt = NULL;
	struct mv_tree other;
	uint8_t byte;
	int tfd;

	fixture_setup(&f, 100000, 1024);
	/* Mismatched parameters: same file, other block size. */
	struct mv_tree_params p = f.tree.params;
	p.block_size = 4096;
	CHECK_EQ_INT(mv_tree_init(&other, &p, f.tree.root), 0);
	CHECK_EQ_INT(mv_mem_tree_load(f.tree_path, &other, &mt, &err), -EBADMSG);
	CHECK(strstr(err.msg, "differ") != NULL);
	/* Truncated tree. */
	CHECK_EQ_INT(truncate(f.tree_path, MV_TREE_HEADER_SIZE + 100), 0);
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(mv_mem_tree_load(f.tree_path, &f.tree, &mt, &err), -EBADMSG);
	CHECK(strstr(err.msg, "truncated") != NULL);
	/* Damaged header. */
	tfd = open(f.tree_path, O_RDWR);
	CHECK(pread(tfd, &byte, 1, 20) == 1);
	byte ^= 1;
	CHECK(pwrite(tfd, &byte, 1, 20) == 1);
	close(tfd);
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(mv_mem_tree_load(f.tree_path, &f.tree, &mt, &err), -EBADMSG);
	CHECK(strstr(err.msg, "checksum") != NULL);
	/* Not a tree at all. */
	memset(&err, 0, sizeof(err));
	CHECK_EQ_INT(mv_mem_tree_load(f.data_path, &f.tree, &mt, &err), -EBADMSG);
	CHECK(mt == NULL);
	fixture_teardown(&f);
}

static void test_range_to_blocks(void)
{
	struct mv_tree t;
	struct mv_tree_params p = {.alg = MV_HASH_SHA256, .block_size = 4096, .data_size = 10000};
	uint8_t root[32] = {0};
	uint64_t off, len;

	CHECK_EQ_INT(mv_tree_init(&t, &p, root), 0);
	CHECK_EQ_INT(mv_range_to_blocks(&t, 5000, 10, &off, &len), 0);
	CHECK_EQ_INT(off, 4096);
	CHECK_EQ_INT(len, 4096);
	CHECK_EQ_INT(mv_range_to_blocks(&t, 9000, 1 << 20, &off, &len), 0);
	CHECK_EQ_INT(off, 8192);
	CHECK_EQ_INT(len, 10000 - 8192);
	CHECK_EQ_INT(mv_range_to_blocks(&t, 0, UINT64_MAX, &off, &len), 0);
	CHECK_EQ_INT(len, 10000);
	CHECK_EQ_INT(mv_range_to_blocks(&t, 10001, 1, &off, &len), -EINVAL);
	/* Short blocks anywhere but at the end of the file are refused. */
	uint8_t buf[4096] = {0};
	struct mv_mem_tree *mt = NULL;
	CHECK_EQ_INT(mv_verify_blocks(&t, &mv_mem_tree_ops, mt, 0, buf, 100, NULL), -EINVAL);
	CHECK_EQ_INT(mv_verify_blocks(&t, &mv_mem_tree_ops, mt, 3, buf, 4096, NULL), -EINVAL);
}

struct thread_arg {
	struct fixture *f;
	unsigned seed;
	int failures;
};

static void *reader_thread(void *p)
{
	struct thread_arg *a = p;
	uint64_t blocks = a->f->tree.geo.data_blocks;

	for (int i = 0; i < 2000; i++) {
		uint64_t b = (uint64_t)rand_r(&a->seed) % blocks;
		uint64_t n = 1 + (uint64_t)rand_r(&a->seed) % 64;
		size_t len;

		if (n > blocks - b)
			n = blocks - b;
		len = b + n == blocks ? a->f->n - b * 4096 : n * 4096;
		if (mv_verify_blocks(&a->f->tree, &mv_mem_tree_ops, a->f->mt, b,
		                     a->f->data + b * 4096, len, NULL))
			a->failures++;
	}
	return NULL;
}

static void test_verify_concurrent(void)
{
	struct fixture f;
	pthread_t th[8];
	struct thread_arg args[8];

	fixture_setup(&f, (8 << 20) + 123, 4096);
	for (int i = 0; i < 8; i++) {
		args[i] = (struct thread_arg){.f = &f, .seed = (unsigned)i + 1};
		pthread_create(&th[i], NULL, reader_thread, &args[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		CHECK_EQ_INT(args[i].failures, 0);
	}
	fixture_teardown(&f);
}

/* mv_utf8_valid (util.c) decides like Python's strict decoder. */
static void test_utf8_strict(void)
{
	CHECK(mv_utf8_valid("plain ascii", 11));
	CHECK(mv_utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9)); /* é € 😀 */
	CHECK(!mv_utf8_valid("\xc0\xaf", 2));                            /* overlong '/' */
	CHECK(!mv_utf8_valid("\xe0\x80\xaf", 3));                        /* overlong, 3 bytes */
	CHECK(!mv_utf8_valid("\xed\xa0\x80", 3));                        /* surrogate U+D800 */
	CHECK(!mv_utf8_valid("\xf4\x90\x80\x80", 4));                    /* above U+10FFFF */
	CHECK(!mv_utf8_valid("\xe2\x82", 2));                            /* truncated */
	CHECK(!mv_utf8_valid("\x80", 1));                                /* lone continuation */
	CHECK(!mv_utf8_valid("\xff", 1));
}

int main(void)
{
	if (!mkdtemp(tmpdir))
		return 1;
	TAP_RUN(test_libfsverity_vectors);
	TAP_RUN(test_geometry);
	TAP_RUN(test_streaming_pieces);
	TAP_RUN(test_verify_roundtrip);
	TAP_RUN(test_verify_stops_at_verified_ancestor);
	TAP_RUN(test_verify_tampered_data);
	TAP_RUN(test_verify_tampered_tree);
	TAP_RUN(test_tree_file_errors);
	TAP_RUN(test_range_to_blocks);
	TAP_RUN(test_verify_concurrent);
	TAP_RUN(test_utf8_strict);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", tmpdir);
	TAP_DONE();
}
