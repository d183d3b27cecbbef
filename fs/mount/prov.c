// SPDX-License-Identifier: Apache-2.0
/*
 * prov.c - provenance in the mount: each model's attestations and the trust
 * policy, applied at store scan, and its CycloneDX BOM, built on first
 * request (docs/provenance.md, docs/mount.md).
 *
 * Attestations are small signed files; they are read once at scan time,
 * because the policy needs them to decide whether the model appears at all.
 * They are reached from the model's folder descriptor without following any
 * link, and what the xattr shows is what the scan found.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "mount_int.h"

/*
 * Reads and checks the attestations of @model against the mount's trust
 * set. The folder is opened component by component with O_NOFOLLOW and
 * handed to the library as /proc/self/fd/N, so neither .modelfs nor
 * attestations may be a symlink; the files are read with O_NOFOLLOW too.
 * A missing folder means no attestations; an unreadable one is logged and
 * counts as none (a policy that needs them then refuses the model).
 */
static int load_atts(struct mfs_mount *m, struct mfs_model *model)
{
	struct mv_err err = {0};
	char path[64];
	int fd, ret;

	fd = m->bstore.ops->open_local(&m->bstore, model->dirfd, MV_ATTEST_DIR,
	                               O_RDONLY | O_DIRECTORY);
	if (fd < 0) {
		if (fd != -ENOENT)
			mfs_log(LOG_WARNING, "attestations-skipped model=%s reason=\"%s: %s\"",
			        model->path, MV_ATTEST_DIR,
			        fd == -ELOOP || fd == -ENOTDIR ? "not a folder (or a symlink)"
			                                       : strerror(-fd));
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ret = mv_attestations_load_dir(path, model->man, m->trust, &model->atts, &err);
	close(fd);
	if (ret == -ENOMEM)
		return ret;
	if (ret)
		mfs_log(LOG_WARNING, "attestations-skipped model=%s reason=\"%s: %s\"", model->path,
		        MV_ATTEST_DIR, strerror(-ret));
	return 0;
}

int mfs_prov_scan(struct mfs_mount *m, struct mfs_model *model, char *why, size_t why_len)
{
	struct mv_err err = {0};
	const char *pk;
	int ret;

	model->pickle = m->pickle;
	ret = load_atts(m, model);
	if (ret)
		return ret;
	if (!m->policy)
		return 0;
	/* Rules match the path the mount shows and the signed name (docs/policy.md). */
	pk = mv_policy_pickle(m->policy, model->path, mv_model_name(model->man));
	if (pk && mfs_pickle_policy_parse(pk, &model->pickle))
		model->pickle = m->pickle; /* the loader accepts only known names */
	ret = mv_policy_check(m->policy, model->path, model->man, &model->atts, &err);
	if (ret == -ENOMEM)
		return ret;
	if (ret) {
		snprintf(why, why_len, "policy refused: %s",
		         err.msg[0] ? err.msg : "refused by the policy");
		return -EKEYREJECTED;
	}
	return 0;
}

/*
 * A serialNumber that is the same for the same signature: a UUID made of the
 * statement digest's first 16 bytes, with the RFC 4122 variant bits and
 * version 5 (name-based) bits set, as CycloneDX's pattern requires.
 */
static void serial_of(const struct mv_manifest *man, char out[46])
{
	uint8_t b[16];
	char h[33];

	memcpy(b, man->statement_sha256, sizeof(b));
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x50);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	mv_hex_encode(b, sizeof(b), h);
	snprintf(out, 46, "urn:uuid:%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
}

/* signed_at, or (plain signatures) model.sig's mtime: fixed for this model version. */
static void timestamp_of(const struct mfs_model *model, char out[32])
{
	struct tm tm;

	if (model->man->prov.signed_at && *model->man->prov.signed_at) {
		snprintf(out, 32, "%s", model->man->prov.signed_at);
		return;
	}
	gmtime_r(&model->mtime.tv_sec, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int mfs_prov_bom(struct mfs_model *model, const char **bom, size_t *len)
{
	struct mv_bom_opts o = {0};
	struct mv_err err = {0};
	char serial[46], ts[32], dir[64];
	int ret = 0;

	pthread_mutex_lock(&model->prov_lock);
	if (model->bom)
		goto out;
	serial_of(model->man, serial);
	timestamp_of(model, ts);
	/* config.json is read from the folder we opened, never through a link. */
	snprintf(dir, sizeof(dir), "/proc/self/fd/%d", model->dirfd);
	o.serial_number = serial;
	o.timestamp = ts;
	o.model_dir = dir;
	ret = mv_bom_build(model->man, &o, &model->bom, &model->bom_len, &err);
	if (ret) {
		model->bom = NULL;
		mfs_log(LOG_ERR, "bom-failed model=%s reason=\"%s\"", model->path,
		        err.msg[0] ? err.msg : strerror(-ret));
		ret = ret == -ENOMEM ? -ENOMEM : -EIO;
	}
out:
	*bom = model->bom;
	*len = model->bom ? model->bom_len : 0;
	pthread_mutex_unlock(&model->prov_lock);
	return ret;
}

/* Adds @s as @key, or null when the library could not read it. */
static void add_str(cJSON *o, const char *key, const char *s)
{
	if (s)
		cJSON_AddStringToObject(o, key, s);
	else
		cJSON_AddNullToObject(o, key);
}

/* One attestation as an object; NULL on ENOMEM. */
static cJSON *att_json(const struct mv_attestation *a)
{
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return NULL;
	add_str(o, "file", a->file);
	add_str(o, "predicate_type", a->predicate_type);
	add_str(o, "subject_name", a->subject_name);
	add_str(o, "subject_sha256", a->subject_sha256[0] ? a->subject_sha256 : NULL);
	add_str(o, "key_id", a->key_id[0] ? a->key_id : NULL);
	add_str(o, "hint", a->hint[0] ? a->hint : NULL);
	cJSON_AddBoolToObject(o, "verified", a->verified);
	add_str(o, "reason", a->verified ? NULL : (a->reason ? a->reason : "not verified"));
	return o;
}

int mfs_prov_atts_json(const struct mfs_model *model, char **out)
{
	cJSON *arr = cJSON_CreateArray();
	int ret = -ENOMEM;

	*out = NULL;
	if (!arr)
		return -ENOMEM;
	for (size_t i = 0; i < model->atts.n; i++) {
		cJSON *o = att_json(&model->atts.a[i]);

		if (!o || !cJSON_AddItemToArray(arr, o)) {
			cJSON_Delete(o);
			goto out;
		}
	}
	*out = cJSON_PrintUnformatted(arr);
	if (!*out)
		goto out;
	ret = 0;
	/* An attribute value is at most 64 KiB. */
	if (strlen(*out) > MFS_BOM_XATTR_MAX) {
		free(*out);
		*out = NULL;
		ret = -E2BIG;
	}
out:
	cJSON_Delete(arr);
	return ret;
}

void mfs_prov_free(struct mfs_model *model)
{
	mv_attestations_free(&model->atts);
	free(model->bom);
	model->bom = NULL;
	pthread_mutex_destroy(&model->prov_lock);
}
