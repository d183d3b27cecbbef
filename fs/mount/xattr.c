// SPDX-License-Identifier: Apache-2.0
/*
 * xattr.c - provenance as read-only extended attributes (docs/xattrs.md).
 *
 * Every value comes from the verified signature, except user.modelfs.format,
 * which is detected from verified bytes, user.modelfs.stored_as (which copy
 * serves the file) and the attributes of transcoded views (txview.c). Absent values are neither
 * listed nor readable (ENODATA).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "mount_int.h"

#define XPREFIX "user.modelfs."

enum { ON_FILE = 1, ON_MODEL = 2, ON_ROOT = 4, ON_TX = 8 };

typedef int (*xval_fn)(struct mfs_mount *m, struct mfs_node *n, char **out);

/* Copies @s into *@out; -ENODATA when the value is absent. */
static int xstr(const char *s, char **out)
{
	if (!s || !*s)
		return -ENODATA;
	*out = strdup(s);
	return *out ? 0 : -ENOMEM;
}

static int xhex(const uint8_t *b, size_t len, const char *prefix, char **out)
{
	size_t pl = strlen(prefix);

	*out = malloc(pl + 2 * len + 1);
	if (!*out)
		return -ENOMEM;
	memcpy(*out, prefix, pl);
	mv_hex_encode(b, len, *out + pl);
	return 0;
}

static const struct mv_provenance *prov(const struct mfs_node *n)
{
	return &n->model->man->prov;
}

static int x_digest(struct mfs_mount *m, struct mfs_node *n, char **out)
{
	const struct mv_tree_params *p = &n->res->merkle.params;
	char prefix[16];

	if (!n->res->has_merkle)
		return -ENODATA; /* plain OMS: no fs-verity digest was signed */
	snprintf(prefix, sizeof(prefix), "%s:", mv_hash_name(p->alg));
	return xhex(n->res->merkle.digest, mv_hash_digest_size(p->alg), prefix, out);
}

static int x_sha256(struct mfs_mount *m, struct mfs_node *n, char **out)
{
	return xhex(n->res->sha256, 32, "", out);
}

static int x_format(struct mfs_mount *m, struct mfs_node *n, char **out)
{
	enum mfs_format f;

	if (mfs_file_format(m, n, &f))
		return -EIO;
	return xstr(mfs_format_name(f), out);
}

/* "plain" or "packed": which copy serves the file (decided at its first open). */
static int x_stored_as(struct mfs_mount *m, struct mfs_node *n, char **out)
{
	const char *s = mfs_file_stored_as(m, n);

	return s ? xstr(s, out) : -EIO;
}

static int x_size(struct mfs_mount *m, struct mfs_node *n, char **out)
{
	return asprintf(out, "%" PRIu64, n->res->merkle.params.data_size) < 0 ? -ENOMEM : 0;
}

static int x_name(struct mfs_mount *m, struct mfs_node *n, char **out)
{
	return xstr(mv_model_name(n->model->man), out);
}

static int x_revision(struct mfs_mount *m, struct mfs_node *n, char **out)
{
	return xstr(prov(n)->revision, out);
}

static int x_source(struct mfs_mount *m, struct mfs_node *n, char **out)
{
	return xstr(prov(n)->source, out);
}

static int x_base_model(struct mfs_mount *m, struct mfs_node *n, char **out)
{
	return xstr(prov(n)->base_model, out);
}

static int x_license(struct mfs_mount *m, struct mfs_node *n, char **out)
{
	return xstr(prov(n)->license, out);
}

/* A JSON array of strings: dataset names may hold any character. */
static int x_datasets(struct mfs_mount *m, struct mfs_node *n, char **out)
{
	const struct mv_provenance *p = prov(n);
	cJSON *arr;

	if (!p->n_datasets)
		return -ENODATA;
	arr = cJSON_CreateArray();
	for (size_t i = 0; arr && i < p->n_datasets; i++) {
		cJSON *s = cJSON_CreateString(p->datasets[i] ? p->datasets[i] : "");

		if (!s || !cJSON_AddItemToArray(arr, s)) {
			cJSON_Delete(s);
			cJSON_Delete(arr);
			return -ENOMEM;
		}
	}
	*out = arr ? cJSON_PrintUnformatted(arr) : NULL;
	cJSON_Delete(arr);
	return *out ? 0 : -ENOMEM;
}

static int x_signed_at(struct mfs_mount *m, struct mfs_node *n, char **out)
{
	return xstr(prov(n)->signed_at, out);
}

static int x_signer(struct mfs_mount *m, struct mfs_node *n, char **out)
{
	const struct mv_signer *s = &n->model->man->signer;

	if (s->is_keyless)
		return xstr(s->identity, out);
	if (s->is_certificate && s->subject && *s->subject)
		return xstr(s->subject, out);
	return xstr(s->key_id, out);
}

/* Keyless signers only: the OIDC issuer that vouched for the identity. */
static int x_signer_issuer(struct mfs_mount *m, struct mfs_node *n, char **out)
{
	const struct mv_signer *s = &n->model->man->signer;

	return s->is_keyless ? xstr(s->issuer, out) : -ENODATA;
}

/* Always present: the digest is kept even when the statement is not. */
static int x_statement_sha256(struct mfs_mount *m, struct mfs_node *n, char **out)
{
	return xhex(n->model->man->statement_sha256, 32, "", out);
}

/*
 * Only below MV_STATEMENT_KEEP_MAX (64 KiB, the kernel's XATTR_SIZE_MAX):
 * above it the manifest does not keep the bytes (verity.h), and the
 * statement is in model.sig.
 */
static int x_statement(struct mfs_mount *m, struct mfs_node *n, char **out)
{
	const struct mv_manifest *man = n->model->man;

	if (!man->statement || man->statement_len >= MV_STATEMENT_KEEP_MAX)
		return -ENODATA;
	*out = malloc(man->statement_len + 1);
	if (!*out)
		return -ENOMEM;
	memcpy(*out, man->statement, man->statement_len);
	(*out)[man->statement_len] = '\0';
	return 0;
}

/* The view of a MFS_N_TX node, decided (shown) before any attribute is given. */
static struct mfs_txview *txv(struct mfs_mount *m, struct mfs_node *n)
{
	return mfs_tx_decide(m, n) == 0 ? mfs_tx_view(n) : NULL;
}

static int x_tx_format(struct mfs_mount *m, struct mfs_node *n, char **out)
{
	struct mfs_txview *v = txv(m, n);

	if (!v)
		return -ENODATA;
	return xstr(mfs_format_name(mfs_tx_is_index(n) ? MFS_FMT_JSON : MFS_FMT_SAFETENSORS), out);
}

static int x_tx_from(struct mfs_mount *m, struct mfs_node *n, char **out)
{
	struct mfs_txview *v = txv(m, n);

	return v ? xstr(n->tx->res->name, out) : -ENODATA;
}

static int x_tx_source_digest(struct mfs_mount *m, struct mfs_node *n, char **out)
{
	struct mfs_txview *v = txv(m, n);

	return v ? x_digest(m, n->tx, out) : -ENODATA;
}

/* Only checkpoints were scanned; an index is JSON and has no verdict. */
static int x_tx_verdict(struct mfs_mount *m, struct mfs_node *n, char **out)
{
	struct mfs_txview *v = txv(m, n);

	if (!v || n->tx_verdict < 0)
		return -ENODATA;
	return xstr(mfs_verdict_name((enum mfs_verdict)n->tx_verdict), out);
}

static int x_tx_size(struct mfs_mount *m, struct mfs_node *n, char **out)
{
	struct mfs_txview *v = txv(m, n);

	if (!v)
		return -ENODATA;
	return asprintf(out, "%" PRIu64, v->size) < 0 ? -ENOMEM : 0;
}

/* Known once the output was made or checked (first open), under the node lock. */
static int x_tx_sha256(struct mfs_mount *m, struct mfs_node *n, char **out)
{
	struct mfs_txview *v = txv(m, n);
	uint8_t sha[32];
	bool have;

	if (!v)
		return -ENODATA;
	pthread_mutex_lock(&n->load_lock);
	have = v->have_sha256;
	memcpy(sha, v->sha256, sizeof(sha));
	pthread_mutex_unlock(&n->load_lock);
	return have ? xhex(sha, 32, "", out) : -ENODATA;
}

/* The BOM, only when it fits an attribute value; always in .modelfs/bom/. */
static int x_bom(struct mfs_mount *m, struct mfs_node *n, char **out)
{
	const char *bom;
	size_t len;
	int ret = mfs_prov_bom(n->model, &bom, &len);

	if (ret)
		return ret;
	if (len >= MFS_BOM_XATTR_MAX)
		return -ENODATA;
	*out = strndup(bom, len);
	return *out ? 0 : -ENOMEM;
}

static int x_attestations(struct mfs_mount *m, struct mfs_node *n, char **out)
{
	return mfs_prov_atts_json(n->model, out);
}

static int x_version(struct mfs_mount *m, struct mfs_node *n, char **out)
{
	return xstr(MV_VERSION, out);
}

static const struct xattr_def {
	const char *name;
	unsigned on;
	xval_fn fn;
} xattrs[] = {
    {XPREFIX "digest", ON_FILE, x_digest},
    {XPREFIX "sha256", ON_FILE, x_sha256},
    {XPREFIX "format", ON_FILE, x_format},
    {XPREFIX "size", ON_FILE, x_size},
    {XPREFIX "stored_as", ON_FILE, x_stored_as},
    {XPREFIX "format", ON_TX, x_tx_format},
    {XPREFIX "transcoded_from", ON_TX, x_tx_from},
    {XPREFIX "source_digest", ON_TX, x_tx_source_digest},
    {XPREFIX "verdict", ON_TX, x_tx_verdict},
    {XPREFIX "size", ON_TX, x_tx_size},
    {XPREFIX "sha256", ON_TX, x_tx_sha256},
    {XPREFIX "name", ON_MODEL, x_name},
    {XPREFIX "revision", ON_MODEL, x_revision},
    {XPREFIX "source", ON_MODEL, x_source},
    {XPREFIX "base_model", ON_MODEL, x_base_model},
    {XPREFIX "license", ON_MODEL, x_license},
    {XPREFIX "datasets", ON_MODEL, x_datasets},
    {XPREFIX "signed_at", ON_MODEL, x_signed_at},
    {XPREFIX "signer", ON_MODEL, x_signer},
    {XPREFIX "signer_issuer", ON_MODEL, x_signer_issuer},
    {XPREFIX "statement_sha256", ON_MODEL, x_statement_sha256},
    {XPREFIX "statement", ON_MODEL, x_statement},
    {XPREFIX "bom", ON_MODEL, x_bom},
    {XPREFIX "attestations", ON_MODEL, x_attestations},
    {XPREFIX "version", ON_ROOT, x_version},
};

static unsigned node_class(const struct mfs_node *n)
{
	switch (n->kind) {
	case MFS_N_FILE: return ON_FILE;
	case MFS_N_TX: return ON_TX;
	case MFS_N_MODEL: return ON_MODEL;
	case MFS_N_DIR: return n->ino == MFS_ROOT_INO ? ON_ROOT : 0;
	default: return 0;
	}
}

/* Is the attribute present, without computing expensive values? */
static bool present(struct mfs_mount *m, struct mfs_node *n, const struct xattr_def *x)
{
	char *v = NULL;
	int ret;

	if (x->fn == x_format || x->fn == x_stored_as)
		return true; /* always defined; detected when read */
	ret = x->fn(m, n, &v);
	free(v);
	return ret == 0;
}

int mfs_xattr_list(struct mfs_mount *m, struct mfs_node *n, char **out, size_t *len)
{
	size_t n_defs = sizeof(xattrs) / sizeof(xattrs[0]), cap = 0, total = 0;
	unsigned cls = node_class(n);
	char *buf;

	*out = NULL;
	*len = 0;
	for (size_t i = 0; i < n_defs; i++)
		cap += strlen(xattrs[i].name) + 1;
	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < n_defs; i++) {
		size_t l = strlen(xattrs[i].name) + 1;

		if (!(xattrs[i].on & cls) || !present(m, n, &xattrs[i]))
			continue;
		memcpy(buf + total, xattrs[i].name, l);
		total += l;
	}
	*out = buf;
	*len = total;
	return 0;
}

int mfs_xattr_get(struct mfs_mount *m, struct mfs_node *n, const char *name, char **out,
                  size_t *len)
{
	unsigned cls = node_class(n);
	int ret;

	*out = NULL;
	*len = 0;
	for (size_t i = 0; i < sizeof(xattrs) / sizeof(xattrs[0]); i++) {
		if (!(xattrs[i].on & cls) || strcmp(xattrs[i].name, name) != 0)
			continue;
		ret = xattrs[i].fn(m, n, out);
		if (ret)
			return ret;
		*len = strlen(*out);
		return 0;
	}
	return -ENODATA;
}
