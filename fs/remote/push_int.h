/* SPDX-License-Identifier: Apache-2.0 */
/*
 * push_int.h - the artifact's JSON (artifact.c) for the push (push.c).
 * Included by fs/remote only.
 */
#ifndef MODELFS_PUSH_INT_H
#define MODELFS_PUSH_INT_H

#include <cjson/cJSON.h>

#include "remote_int.h"

/* A descriptor object; NULL when out of memory. The caller owns it. */
cJSON *mfr_desc_json(const char *media_type, const char *digest, uint64_t size);
/*
 * The layer of signed file @r: its ModelPack media type (or @media_type:
 * MFR_MT_PACKED for a packed copy, titled "<name>.zst") and the
 * annotations title, filepath, file metadata (with @mtime) and
 * mediatype.untested. NULL when out of memory; the caller owns it.
 */
cJSON *mfr_layer_json(const struct mv_resource *r, const char *media_type, const char *digest,
                      uint64_t size, const char *mtime);
/* The ModelPack config of @m for @layers (diffIds); malloc'd text or NULL. */
char *mfr_config_json(const struct mv_manifest *m, const cJSON *layers);
/*
 * An image manifest of @artifact_type over @config and @layers (and
 * @subject, may be NULL), which stay the caller's. Malloc'd text or NULL.
 */
char *mfr_manifest_json(const char *artifact_type, cJSON *config, cJSON *layers, cJSON *subject);
/* "sha256:HEX" of @data into @out. */
void mfr_digest_of(const void *data, size_t len, char out[MFR_DIGEST_LEN + 1]);

#endif /* MODELFS_PUSH_INT_H */
