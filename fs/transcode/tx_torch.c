// SPDX-License-Identifier: Apache-2.0
/*
 * tx_torch.c - the containers of torch checkpoints, for the transcoder: the
 * zip format (archive/data.pkl, archive/byteorder, archive/data/<key>) and
 * the legacy format (five pickles, then the raw storages), and making a plan
 * from either (mfs_tx_plan_new).
 *
 * Separate from the walk of the value graph (transcode.c) because this is
 * where the bytes are found: which pickle to read, whether the archive is
 * sound, and where each storage's data lies in the file. The walk only sees
 * the pickle's values.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmt_internal.h"
#include "tx_internal.h"

#define PKL_LIMIT    (4ull << 30) /* most bytes data.pkl may inflate to */
#define LEGACY_PROTO 1001

/*
 * Broadcast views (stride 0) can describe far more elements than their
 * storage holds; the output may exceed the checkpoint by this much at most,
 * so a small file cannot fill a disk.
 */
#define GROWTH_SLACK (256ull << 20)

/* ------------------------------------------------------------- the pickle */

/* Refuses any global the scanner would not call safe (defense in depth). */
static int check_globals(struct mfs_tx_walk *w)
{
	for (uint32_t i = 0; i < w->pk->nglobals; i++)
		if (w->pk->globals[i].cls != MFS_VERDICT_SAFE)
			return mv_err_set(w->err, -EBADMSG, "%s: global %s.%s is not allowed",
			                  w->p->name, w->pk->globals[i].module,
			                  w->pk->globals[i].name);
	return 0;
}

/* Turns a failed pickle parse into an error line. */
static int pickle_error(struct mfs_tx_walk *w, int rc)
{
	if (w->pk->fail == MFS_PK_IO && w->pk->fail_errno && w->pk->fail_errno != -EBADMSG)
		return mv_err_set(w->err, w->pk->fail_errno, "%s: read error: %s", w->p->name,
		                  strerror(-w->pk->fail_errno));
	if (rc == 0)
		return mv_err_set(w->err, -EBADMSG, "%s: the pickle stream ends early", w->p->name);
	return mv_err_set(w->err, -EBADMSG, "%s: offset %" PRIu64 ": %s", w->p->name,
	                  w->pk->fail_off, w->pk->fail_msg[0] ? w->pk->fail_msg : "bad pickle");
}

/* ---------------------------------------------------------------- torch zip */

static int cmp_zname(const void *a, const void *b, void *ctx)
{
	const struct mfs_zip *z = ctx;

	return strcmp(z->e[*(const uint32_t *)a].name, z->e[*(const uint32_t *)b].name);
}

/* Zip members sorted by name, for lookups. */
struct zindex {
	const struct mfs_zip *z;
	uint32_t *ids;
	char *prefix; /* "archive/" */
};

/* The entry named prefix + @rel, or -1. */
static ssize_t zfind(const struct zindex *zi, const char *rel)
{
	size_t lo = 0, hi = zi->z->n, pl = strlen(zi->prefix);

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const char *nm = zi->z->e[zi->ids[mid]].name;
		int c = strncmp(nm, zi->prefix, pl);

		if (!c)
			c = strcmp(nm + pl, rel);
		if (!c)
			return zi->ids[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* Sorts the members, refuses duplicate names, finds the archive folder as torch does. */
static int zindex_build(struct mfs_tx_walk *w, const struct mfs_zip *z, struct zindex *zi)
{
	const char *slash;

	zi->z = z;
	if (!z->n)
		return mv_err_set(w->err, -EOPNOTSUPP, "%s: empty zip archive", w->p->name);
	/* torch: every record lives in the folder of the first member */
	slash = strchr(z->e[0].name, '/');
	if (!slash)
		return mv_err_set(w->err, -EOPNOTSUPP,
		                  "%s: not a torch checkpoint (first member is not in a folder)",
		                  w->p->name);
	zi->prefix = strndup(z->e[0].name, (size_t)(slash - z->e[0].name) + 1);
	zi->ids = malloc(z->n * sizeof(*zi->ids));
	if (!zi->prefix || !zi->ids)
		return -ENOMEM;
	for (size_t i = 0; i < z->n; i++)
		zi->ids[i] = (uint32_t)i;
	qsort_r(zi->ids, z->n, sizeof(*zi->ids), cmp_zname, (void *)z);
	for (size_t i = 1; i < z->n; i++)
		if (strcmp(z->e[zi->ids[i - 1]].name, z->e[zi->ids[i]].name) == 0)
			return mv_err_set(w->err, -EBADMSG, "%s: zip member %s appears twice",
			                  w->p->name, z->e[zi->ids[i]].name);
	return 0;
}

/* Refuses a member whose headers disagree or whose data is out of the file. */
static int zentry_ok(struct mfs_tx_walk *w, const struct mfs_zip *z, size_t i)
{
	const struct mfs_zip_entry *e = &z->e[i];

	if (e->bad_local || e->mismatch)
		return mv_err_set(w->err, -EBADMSG, "%s: zip member %s: %s", w->p->name, e->name,
		                  e->why[0] ? e->why : "inconsistent headers");
	if (e->data_off > z->size || e->comp_size > z->size - e->data_off)
		return mv_err_set(w->err, -EBADMSG, "%s: zip member %s runs past the end",
		                  w->p->name, e->name);
	return 0;
}

/* Reads "<archive>/byteorder" ("little" or "big"); absent means little. */
static int zip_byteorder(struct mfs_tx_walk *w, const struct zindex *zi)
{
	ssize_t i = zfind(zi, "byteorder");
	struct mfs_stream s;
	char buf[16] = {0};
	ssize_t r;
	int rc;

	if (i < 0)
		return 0;
	if ((rc = zentry_ok(w, zi->z, (size_t)i)))
		return rc;
	if ((rc = mfs_zip_stream(zi->z, (size_t)i, &s, sizeof(buf))) != 0)
		return mv_err_set(w->err, rc == -ENOMEM ? rc : -EBADMSG,
		                  "%s: unreadable byteorder record", w->p->name);
	r = mfs_stream_read_full(&s, buf, sizeof(buf) - 1);
	mfs_stream_close(&s);
	if (r == 6 && memcmp(buf, "little", 6) == 0)
		return 0;
	if (r == 3 && memcmp(buf, "big", 3) == 0) {
		w->p->swap = true;
		return 0;
	}
	return mv_err_set(w->err, -EBADMSG, "%s: byteorder record is neither 'little' nor 'big'",
	                  w->p->name);
}

/* Locates each referenced storage's record "<archive>/data/<key>". */
static int zip_storages(struct mfs_tx_walk *w, const struct zindex *zi)
{
	struct mfs_tx_plan *p = w->p;
	char *rel = NULL;
	int rc = 0;

	for (size_t k = 0; k < p->nst && !rc; k++) {
		struct mfs_tx_storage *s = &p->st[k];
		const struct mfs_zip_entry *e;
		ssize_t i;

		free(rel);
		if (asprintf(&rel, "data/%s", s->key) < 0) {
			rel = NULL;
			rc = -ENOMEM;
			break;
		}
		i = zfind(zi, rel);
		if (i < 0) {
			rc = mv_err_set(w->err, -EBADMSG, "%s: storage record %s%s is missing",
			                p->name, zi->prefix, rel);
			break;
		}
		if ((rc = zentry_ok(w, zi->z, (size_t)i)))
			break;
		e = &zi->z->e[i];
		if (e->method != 0)
			rc = mv_err_set(
			    w->err, -EOPNOTSUPP,
			    "%s: storage record %s is compressed (method %u); only stored "
			    "records are supported",
			    p->name, e->name, e->method);
		else if (e->comp_size != s->nbytes || e->uncomp_size != s->nbytes)
			rc = mv_err_set(w->err, -EBADMSG,
			                "%s: storage record %s holds %" PRIu64
			                " bytes, expected %" PRIu64,
			                p->name, e->name, e->comp_size, s->nbytes);
		s->off = e->data_off;
	}
	free(rel);
	return rc;
}

/* Parses data.pkl of a torch zip checkpoint and walks it. */
static int plan_zip(struct mfs_tx_walk *w, mfs_pread_fn rd, void *ctx, uint64_t size)
{
	struct mfs_zip z;
	struct zindex zi = {0};
	struct mfs_stream s = {0};
	struct mfs_pickle pk;
	bool pk_init = false;
	uint32_t root = 0;
	ssize_t i;
	int rc = mfs_zip_open(&z, rd, ctx, size);

	if (rc == -EBADMSG)
		rc = mv_err_set(w->err, rc, "%s: zip: %s", w->p->name, z.anomaly);
	else if (!rc && z.anomaly[0])
		rc = mv_err_set(w->err, -EBADMSG, "%s: zip: %s", w->p->name, z.anomaly);
	if (rc || (rc = zindex_build(w, &z, &zi)))
		goto out;
	i = zfind(&zi, "data.pkl");
	if (i < 0) {
		rc = mv_err_set(w->err, -EOPNOTSUPP, "%s: not a torch checkpoint (no %sdata.pkl)",
		                w->p->name, zi.prefix);
		goto out;
	}
	if ((rc = zentry_ok(w, &z, (size_t)i)) || (rc = zip_byteorder(w, &zi)))
		goto out;
	rc = mfs_zip_stream(&z, (size_t)i, &s, PKL_LIMIT);
	if (rc) {
		rc = mv_err_set(w->err, rc == -ENOMEM ? rc : -EOPNOTSUPP,
		                "%s: data.pkl cannot be read (compression method %u)", w->p->name,
		                z.e[i].method);
		goto out;
	}
	if ((rc = mfs_pickle_init(&pk, &s, NULL)))
		goto out;
	pk_init = true;
	w->pk = &pk;
	rc = mfs_pickle_next(&pk, &root);
	if (rc != 1) {
		rc = pickle_error(w, rc);
		goto out;
	}
	if (!(rc = check_globals(w)) && !(rc = mfs_tx_walk_root(w, root)) &&
	    !(rc = mfs_tx_dedupe_shared(w)))
		rc = zip_storages(w, &zi);
out:
	if (pk_init)
		mfs_pickle_free(&pk);
	w->pk = NULL;
	mfs_stream_close(&s);
	free(zi.ids);
	free(zi.prefix);
	mfs_zip_close(&z);
	return rc;
}

/* ------------------------------------------------------------ torch legacy */

/* The legacy magic number 0x1950a86a20f9469cfc6c (LONG1, little-endian). */
static const uint8_t legacy_magic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9,
                                         0x20, 0x6a, 0xa8, 0x50, 0x19};

static bool is_magic(const struct mfs_tx_walk *w, uint32_t id)
{
	const struct mfs_pnode *n = mfs_tx_node(w, id);

	if (!n || n->kind != MFS_PK_LONG || n->big || !n->s)
		return false;
	if (n->text)
		return strcmp(n->s, "119547037146038801333356") == 0;
	return n->len == sizeof(legacy_magic) && memcmp(n->s, legacy_magic, n->len) == 0;
}

/* Reads the 8-byte little-endian element count before a legacy storage's data. */
static int read_le64(mfs_pread_fn rd, void *ctx, uint64_t off, uint64_t *v)
{
	uint8_t b[8];
	ssize_t r = rd(ctx, b, sizeof(b), off);

	if (r < 0)
		return (int)r;
	if (r != 8)
		return -EBADMSG;
	*v = 0;
	for (int i = 0; i < 8; i++)
		*v |= (uint64_t)b[i] << (8 * i);
	return 0;
}

/*
 * Lays out the raw storages that follow the five pickles: for each key of
 * the last pickle, in order, 8 bytes of element count then the data. torch
 * writes the data little-endian whatever the machine (sys_info is not
 * consulted when loading), so nothing is swapped here.
 */
static int legacy_layout(struct mfs_tx_walk *w, uint32_t keys, uint64_t pos, mfs_pread_fn rd,
                         void *ctx, uint64_t size)
{
	struct mfs_tx_plan *p = w->p;
	const struct mfs_pnode *list = mfs_tx_node(w, keys);
	bool *seen;
	int rc = 0;

	if (!list || list->kind != MFS_PK_LIST)
		return mv_err_set(w->err, -EBADMSG, "%s: legacy storage keys are not a list",
		                  p->name);
	seen = calloc(p->nst ? p->nst : 1, sizeof(*seen));
	if (!seen)
		return -ENOMEM;
	for (uint32_t k = 0; k < list->n && !rc; k++) {
		const char *key = mfs_tx_str(w, list->kids[k]);
		ssize_t si = key ? mfs_tx_storage_find(w, key) : -1;
		uint64_t numel = 0;

		if (si < 0 || seen[si]) {
			rc = mv_err_set(w->err, -EBADMSG, "%s: legacy storage key #%u is %s",
			                p->name, k, si < 0 ? "unknown" : "repeated");
			break;
		}
		seen[si] = true;
		rc = size < 8 || pos > size - 8 ? -EBADMSG : read_le64(rd, ctx, pos, &numel);
		if (rc == -EBADMSG || (!rc && numel != p->st[si].numel))
			rc = mv_err_set(w->err, -EBADMSG,
			                "%s: legacy storage '%s' at offset %" PRIu64
			                " has the wrong size",
			                p->name, key, pos);
		else if (rc)
			rc = mv_err_set(w->err, rc, "%s: read error: %s", p->name, strerror(-rc));
		if (rc)
			break;
		p->st[si].off = pos + 8;
		if (p->st[si].nbytes > size - pos - 8)
			rc = mv_err_set(w->err, -EBADMSG,
			                "%s: legacy storage '%s' runs past the end", p->name, key);
		pos += 8 + p->st[si].nbytes;
	}
	for (size_t i = 0; i < p->nst && !rc; i++)
		if (!seen[i])
			rc = mv_err_set(w->err, -EBADMSG, "%s: storage '%s' has no data", p->name,
			                p->st[i].key);
	free(seen);
	return rc;
}

/* Parses the five pickles of a legacy checkpoint and walks the object. */
static int plan_legacy(struct mfs_tx_walk *w, mfs_pread_fn rd, void *ctx, uint64_t size)
{
	struct mfs_stream s;
	struct mfs_pickle pk;
	uint32_t root[5] = {0}, before = 0;
	uint64_t v;
	int rc;

	mfs_stream_raw(&s, rd, ctx, 0, size);
	if ((rc = mfs_pickle_init(&pk, &s, NULL)))
		return rc;
	w->pk = &pk;
	w->legacy = true;
	for (int i = 0; i < 5; i++) {
		rc = mfs_pickle_next(&pk, &root[i]);
		if (rc != 1) {
			rc = i == 0 ? mv_err_set(w->err, -EOPNOTSUPP, "%s: not a torch checkpoint",
			                         w->p->name)
			            : pickle_error(w, rc);
			goto out;
		}
		if (i == 0 && !is_magic(w, root[0])) {
			rc =
			    mv_err_set(w->err, -EOPNOTSUPP,
			               "%s: not a torch checkpoint (a pickle without torch's magic "
			               "number)",
			               w->p->name);
			goto out;
		}
		if (i == 1 && (!mfs_tx_uint(w, root[1], &v) || v != LEGACY_PROTO)) {
			rc = mv_err_set(w->err, -EOPNOTSUPP, "%s: unknown legacy protocol version",
			                w->p->name);
			goto out;
		}
		/* only the object pickle may name storages (torch loads the others plainly) */
		if ((i == 2 || i == 4) && pk.npersids != before) {
			rc = mv_err_set(w->err, -EBADMSG,
			                "%s: persistent id outside the object pickle", w->p->name);
			goto out;
		}
		if (i == 3)
			before = pk.npersids;
	}
	if ((rc = check_globals(w)))
		goto out;
	/* register every storage in stream order, as torch's persistent_load sees them */
	for (uint32_t i = 0; i < pk.npersids && !rc; i++) {
		uint32_t idx;

		rc = mfs_tx_storage_ref(w, pk.persids[i], &idx);
	}
	if (!rc && !(rc = mfs_tx_walk_root(w, root[3])) && !(rc = mfs_tx_dedupe_shared(w)))
		rc = legacy_layout(w, root[4], pk.boff + pk.bpos, rd, ctx, size);
out:
	mfs_pickle_free(&pk);
	mfs_stream_close(&s);
	w->pk = NULL;
	return rc;
}

/* -------------------------------------------------------------------- plan */

int mfs_tx_plan_new(mfs_pread_fn rd, void *ctx, uint64_t size, const char *name,
                    struct mfs_tx_plan **out, struct mv_err *err)
{
	struct mfs_tx_plan *p = calloc(1, sizeof(*p));
	struct mfs_tx_walk w = {.p = p, .err = err};
	uint8_t magic[4] = {0};
	ssize_t r;
	int rc;

	*out = NULL;
	if (!p || !(p->name = strdup(name ? name : "checkpoint"))) {
		rc = -ENOMEM;
		goto out;
	}
	r = rd(ctx, magic, sizeof(magic), 0);
	if (r < 0) {
		rc = mv_err_set(err, (int)r, "%s: read error: %s", p->name, strerror((int)-r));
		goto out;
	}
	if (r == 4 && (memcmp(magic, "PK\3\4", 4) == 0 || memcmp(magic, "PK\5\6", 4) == 0))
		rc = plan_zip(&w, rd, ctx, size);
	else if (r >= 2 && mfs_sniff_proto(magic, (size_t)r))
		rc = plan_legacy(&w, rd, ctx, size);
	else
		rc = mv_err_set(err, -EOPNOTSUPP, "%s: not a torch checkpoint", p->name);
	if (!rc) {
		rc = mfs_st_build_header(p);
		if (rc == -EFBIG)
			rc = mv_err_set(err, rc, "%s: the safetensors header would exceed %u bytes",
			                p->name, MFS_ST_MAX_HEADER);
		else if (rc == -EOVERFLOW)
			rc = mv_err_set(err, -EBADMSG, "%s: tensors too large", p->name);
	}
	if (!rc &&
	    (size > (UINT64_MAX - GROWTH_SLACK) / 2 || p->data_len > 2 * size + GROWTH_SLACK))
		rc = mv_err_set(err, -EOPNOTSUPP,
		                "%s: the output would hold %" PRIu64
		                " bytes of tensors from a %" PRIu64
		                "-byte checkpoint (broadcast views); refused",
		                p->name, p->data_len, size);
out:
	if (rc == -ENOMEM)
		mv_err_set(err, rc, "%s: out of memory", name ? name : "checkpoint");
	free(w.slots);
	if (rc)
		mfs_tx_plan_free(p);
	else
		*out = p;
	return rc;
}