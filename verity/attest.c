// SPDX-License-Identifier: Apache-2.0
/*
 * attest.c - attestations: DSSE-signed in-toto Statements about a model.sig.
 *
 * An attestation is a Sigstore bundle exactly like model.sig (mv_bundle_build)
 * whose statement's single subject is {name, sha256 of the model.sig's
 * statement bytes}: it vouches for exactly that signed content and nothing
 * else. They live in MODEL/.modelfs/attestations/<sha256 of bundle>.json.
 *
 * Reading is defensive: every file is untrusted, and a bad one becomes an
 * entry with verified=false and a reason rather than an error, so one broken
 * attestation neither hides the others nor stops verification.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sig_internal.h"

/**
 * mv_attest_build() - sign an attestation about the model.sig of @m
 * @m: in: the manifest (its statement_sha256 is the subject digest)
 * @predicate_type: in: URI of the predicate
 * @predicate_json, @len: in: the predicate, a JSON object
 * @key: in: private key
 * @out, @out_len: out: malloc'd bundle JSON
 * @err: out: error line
 */
int mv_attest_build(const struct mv_manifest *m, const char *predicate_type,
                    const char *predicate_json, size_t len, const struct mv_key *key, char **out,
                    size_t *out_len, struct mv_err *err)
{
	cJSON *root = NULL, *pred = NULL, *subj, *s0, *dig;
	char hex[65], *stmt = NULL;
	int ret;

	*out = NULL;
	*out_len = 0;
	if (!predicate_type || !*predicate_type)
		return mv_err_set(err, -EINVAL, "attest: empty predicate type");
	ret = mv_json_parse_strict("predicate", "predicate", predicate_json, len, &pred, err);
	if (ret)
		return ret;
	if (!cJSON_IsObject(pred)) {
		ret = mv_err_set(err, -EINVAL, "predicate: expected a JSON object");
		goto out;
	}
	mv_hex_encode(m->statement_sha256, 32, hex);
	root = cJSON_CreateObject();
	cJSON_AddStringToObject(root, "_type", MV_STATEMENT_TYPE);
	subj = cJSON_AddArrayToObject(root, "subject");
	s0 = cJSON_CreateObject();
	cJSON_AddItemToArray(subj, s0);
	cJSON_AddStringToObject(s0, "name", m->subject_name);
	dig = cJSON_AddObjectToObject(s0, "digest");
	cJSON_AddStringToObject(dig, "sha256", hex);
	cJSON_AddStringToObject(root, "predicateType", predicate_type);
	cJSON_AddItemToObject(root, "predicate", pred);
	pred = NULL;
	stmt = cJSON_PrintUnformatted(root);
	if (!stmt) {
		ret = mv_err_set(err, -ENOMEM, "attest: out of memory");
		goto out;
	}
	ret = mv_bundle_build(stmt, strlen(stmt), key, out, out_len, err);
out:
	free(stmt);
	cJSON_Delete(pred);
	cJSON_Delete(root);
	return ret;
}

/* mkdir that accepts an existing folder. */
static int mkdir_ok(const char *path)
{
	return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -errno;
}

/**
 * mv_attest_write() - store a bundle as MODEL/.modelfs/attestations/<sha256>.json
 * @model_dir: in: the model folder
 * @bundle, @len: in: the bundle
 * @name: out (may be NULL): the file name
 * @err: out: error line naming the path
 */
int mv_attest_write(const char *model_dir, const char *bundle, size_t len, char name[70],
                    struct mv_err *err)
{
	char *hidden = NULL, *dir = NULL, *path = NULL, hex[65];
	uint8_t sha[32];
	int ret = -ENOMEM;

	mv_sha256(bundle, len, sha);
	mv_hex_encode(sha, 32, hex);
	if (asprintf(&hidden, "%s/%s", model_dir, MV_HIDDEN_DIR) < 0)
		hidden = NULL;
	if (asprintf(&dir, "%s/%s", model_dir, MV_ATTEST_DIR) < 0)
		dir = NULL;
	if (asprintf(&path, "%s/%s.json", dir ? dir : "", hex) < 0)
		path = NULL;
	if (!hidden || !dir || !path) {
		ret = mv_err_set(err, ret, "%s: out of memory", model_dir);
		goto out;
	}
	ret = mkdir_ok(hidden);
	if (!ret)
		ret = mkdir_ok(dir);
	if (ret) {
		ret = mv_err_set(err, ret, "%s: cannot create: %s", dir, strerror(-ret));
		goto out;
	}
	ret = mv_write_file_atomic(path, bundle, len, 0644, err);
	if (!ret && name)
		snprintf(name, 70, "%s.json", hex);
out:
	free(hidden);
	free(dir);
	free(path);
	return ret;
}

void mv_attestations_free(struct mv_attestation_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++) {
		struct mv_attestation *a = &l->a[i];

		free(a->file);
		free(a->predicate_type);
		free(a->predicate);
		free(a->subject_name);
		free(a->reason);
	}
	free(l->a);
	l->a = NULL;
	l->n = 0;
}

/* Records why @a is not verified (the first reason wins). */
static void fail(struct mv_attestation *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fail(struct mv_attestation *a, const char *fmt, ...)
{
	va_list ap;

	a->verified = false;
	if (a->reason)
		return;
	va_start(ap, fmt);
	if (vasprintf(&a->reason, fmt, ap) < 0)
		a->reason = NULL;
	va_end(ap);
}

/* The envelope: payload, one signature, and the signer's key hint. */
struct envelope {
	uint8_t *payload, *sig;
	size_t payload_len, sig_len;
	const char *hint;
};

/* Decodes a base64 string member into @out; false if missing or bad. */
static bool b64_member(const cJSON *obj, const char *key, uint8_t **out, size_t *len)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsString(m) &&
	       mv_base64_decode(m->valuestring, strlen(m->valuestring), out, len) == 0;
}

/* Checks the bundle's shape; fills @e (borrowing from @root). */
static int parse_bundle(const cJSON *root, struct envelope *e, struct mv_attestation *a)
{
	const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "mediaType");
	const cJSON *vm = cJSON_GetObjectItemCaseSensitive(root, "verificationMaterial");
	const cJSON *env = cJSON_GetObjectItemCaseSensitive(root, "dsseEnvelope");
	const cJSON *pk, *hint, *pt, *sigs;

	if (!cJSON_IsString(mt) || strcmp(mt->valuestring, MV_BUNDLE_MEDIA_TYPE) != 0) {
		fail(a, "not a Sigstore bundle v0.3 (mediaType)");
		return -EINVAL;
	}
	pk = cJSON_GetObjectItemCaseSensitive(vm, "publicKey");
	hint = cJSON_GetObjectItemCaseSensitive(pk, "hint");
	if (!cJSON_IsString(hint) || strlen(hint->valuestring) != 64) {
		fail(a, "unsupported verification material (need publicKey.hint)");
		return -EINVAL;
	}
	e->hint = hint->valuestring;
	snprintf(a->hint, sizeof(a->hint), "%s", MV_P(e->hint));
	pt = cJSON_GetObjectItemCaseSensitive(env, "payloadType");
	sigs = cJSON_GetObjectItemCaseSensitive(env, "signatures");
	if (!cJSON_IsString(pt) || strcmp(pt->valuestring, MV_DSSE_PAYLOAD_TYPE) != 0 ||
	    !b64_member(env, "payload", &e->payload, &e->payload_len) || !cJSON_IsArray(sigs) ||
	    cJSON_GetArraySize(sigs) != 1 ||
	    !b64_member(cJSON_GetArrayItem(sigs, 0), "sig", &e->sig, &e->sig_len) || !e->sig_len) {
		fail(a, "malformed DSSE envelope (payloadType, payload or exactly one signature)");
		return -EINVAL;
	}
	return 0;
}

/* The statement: one subject with a SHA-256, a predicate type, a predicate. */
static int parse_statement(const struct envelope *e, struct mv_attestation *a)
{
	const cJSON *t, *subj, *s0, *name, *sha, *pt, *pred;
	cJSON *root = NULL;
	int ret = -EINVAL;

	if (mv_json_parse_strict(a->file, "statement", (const char *)e->payload, e->payload_len,
	                         &root, NULL)) {
		fail(a, "statement is not valid JSON");
		return -EINVAL;
	}
	t = cJSON_GetObjectItemCaseSensitive(root, "_type");
	subj = cJSON_GetObjectItemCaseSensitive(root, "subject");
	s0 = cJSON_IsArray(subj) && cJSON_GetArraySize(subj) == 1 ? cJSON_GetArrayItem(subj, 0)
	                                                          : NULL;
	name = cJSON_GetObjectItemCaseSensitive(s0, "name");
	sha = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(s0, "digest"),
	                                       "sha256");
	pt = cJSON_GetObjectItemCaseSensitive(root, "predicateType");
	pred = cJSON_GetObjectItemCaseSensitive(root, "predicate");
	if (!cJSON_IsString(t) || strcmp(t->valuestring, MV_STATEMENT_TYPE) != 0 || !s0 ||
	    !cJSON_IsString(name) || !cJSON_IsString(sha) || strlen(sha->valuestring) != 64 ||
	    !cJSON_IsString(pt) || !cJSON_IsObject(pred)) {
		fail(a, "not an in-toto Statement v1 with one subject, a predicateType and a "
		        "predicate");
		goto out;
	}
	a->predicate_type = strdup(pt->valuestring);
	a->subject_name = strdup(name->valuestring);
	a->predicate = cJSON_PrintUnformatted(pred);
	snprintf(a->subject_sha256, sizeof(a->subject_sha256), "%s", sha->valuestring);
	ret = a->predicate_type && a->subject_name && a->predicate ? 0 : -ENOMEM;
	if (ret)
		fail(a, "out of memory");
out:
	cJSON_Delete(root);
	return ret;
}

/* Signature over PAE by a trusted key; records the signer's key id. */
static void check_signer(const struct envelope *e, const struct mv_trust *trust,
                         struct mv_attestation *a)
{
	const struct mv_key *key;
	uint8_t *pae = NULL;
	size_t pae_len = 0;

	if (!trust) {
		fail(a, "not checked (no trust inputs given)");
		return;
	}
	key = mv_trust_find_hint(trust, e->hint);
	if (!key) {
		fail(a, "signed by an untrusted key (hint %.64s)", a->hint);
		return;
	}
	memcpy(a->key_id, key->id, sizeof(a->key_id));
	if (mv_dsse_pae(MV_DSSE_PAYLOAD_TYPE, e->payload, e->payload_len, &pae, &pae_len)) {
		fail(a, "out of memory");
		return;
	}
	if (mv_key_verify(key, pae, pae_len, e->sig, e->sig_len))
		fail(a, "bad signature (key id %s)", key->id);
	free(pae);
}

/* Checks one attestation file's bytes; every failure is recorded in @a. */
static void check_one(const char *json, size_t len, const struct mv_manifest *m,
                      const struct mv_trust *trust, struct mv_attestation *a)
{
	struct envelope e = {0};
	cJSON *root = NULL;
	char want[65];

	a->verified = true;
	if (mv_json_parse_strict(a->file, "bundle", json, len, &root, NULL)) {
		fail(a, "not valid JSON (or a duplicate member)");
		goto out;
	}
	if (parse_bundle(root, &e, a))
		goto out;
	/* The statement is shown even when the signature is bad: say what it claims. */
	if (parse_statement(&e, a))
		goto out;
	/* Subject first: a mismatch is worth reporting even with no trust inputs. */
	mv_hex_encode(m->statement_sha256, 32, want);
	if (strcmp(a->subject_sha256, want) != 0)
		fail(a,
		     "subject mismatch: attests statement sha256:%s, this model.sig is sha256:%s",
		     MV_P(a->subject_sha256), want);
	check_signer(&e, trust, a);
out:
	free(e.payload);
	free(e.sig);
	cJSON_Delete(root);
}

/* Is @name "<64 hex>.json"-like: any ".json" file that is not hidden. */
static bool wanted(const char *name)
{
	size_t n = strlen(name);

	return name[0] != '.' && n > 5 && strcmp(name + n - 5, ".json") == 0;
}

static int name_cmp(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Lists the .json names of @dir, sorted; *n = 0 if the folder is absent. */
static int list_dir(const char *dir, char ***names, size_t *n, struct mv_err *err)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **v = NULL;
	int ret = 0;

	*names = NULL;
	*n = 0;
	if (!d)
		return errno == ENOENT ? 0
		                       : mv_err_set(err, -errno, "%s: %s", dir, strerror(errno));
	v = calloc(MV_ATTEST_MAX_FILES, sizeof(char *));
	if (!v) {
		ret = mv_err_set(err, -ENOMEM, "%s: out of memory", dir);
		goto out;
	}
	while ((de = readdir(d))) {
		if (!wanted(de->d_name))
			continue;
		if (*n == MV_ATTEST_MAX_FILES) {
			ret = mv_err_set(err, -E2BIG, "%s: more than %u attestations", dir,
			                 MV_ATTEST_MAX_FILES);
			goto out;
		}
		v[*n] = strdup(de->d_name);
		if (!v[(*n)++]) {
			ret = mv_err_set(err, -ENOMEM, "%s: out of memory", dir);
			goto out;
		}
	}
	qsort(v, *n, sizeof(char *), name_cmp);
out:
	closedir(d);
	if (ret) {
		for (size_t i = 0; v && i < *n; i++)
			free(v[i]);
		free(v);
		v = NULL;
		*n = 0;
	}
	*names = v;
	return ret;
}

/* Reads and checks file @name of @dir into @a (takes @name). */
static void load_one(const char *dir, char *name, const struct mv_manifest *m,
                     const struct mv_trust *trust, struct mv_attestation *a)
{
	char *path = NULL, *buf = NULL;
	struct mv_err rerr = {0};
	size_t len = 0;

	a->file = name;
	if (asprintf(&path, "%s/%s", dir, name) < 0) {
		fail(a, "out of memory");
		return;
	}
	if (mv_read_file(path, MV_ATTEST_MAX_SIZE, &buf, &len, &rerr))
		fail(a, "cannot read: %s", strerror(-rerr.code));
	else
		check_one(buf, len, m, trust, a);
	free(buf);
	free(path);
}

/**
 * mv_attestations_load() - read and check every attestation of a model
 * @model_dir: in: the model folder
 * @m: in: its manifest
 * @trust: in: trusted keys, or NULL (nothing verified)
 * @out: out: one entry per file, sorted by name
 * @err: out: error line on I/O errors
 */
int mv_attestations_load(const char *model_dir, const struct mv_manifest *m,
                         const struct mv_trust *trust, struct mv_attestation_list *out,
                         struct mv_err *err)
{
	char *dir = NULL;
	int ret;

	out->a = NULL;
	out->n = 0;
	if (asprintf(&dir, "%s/%s", model_dir, MV_ATTEST_DIR) < 0)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", model_dir);
	ret = mv_attestations_load_dir(dir, m, trust, out, err);
	free(dir);
	return ret;
}

/**
 * mv_attestations_load_dir() - mv_attestations_load() on the attestation
 *                              folder itself
 * @dir: in: the folder holding the attestation files (the mount passes
 *       /proc/self/fd/N of a folder it opened without following links)
 * @m, @trust, @out, @err: as for mv_attestations_load()
 */
int mv_attestations_load_dir(const char *dir, const struct mv_manifest *m,
                             const struct mv_trust *trust, struct mv_attestation_list *out,
                             struct mv_err *err)
{
	char **names = NULL;
	size_t n = 0;
	int ret;

	out->a = NULL;
	out->n = 0;
	ret = list_dir(dir, &names, &n, err);
	if (ret || !n)
		goto out;
	out->a = calloc(n, sizeof(*out->a));
	if (!out->a) {
		ret = mv_err_set(err, -ENOMEM, "%s: out of memory", dir);
		for (size_t i = 0; i < n; i++)
			free(names[i]);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		load_one(dir, names[i], m, trust, &out->a[out->n++]);
out:
	free(names);
	return ret;
}
