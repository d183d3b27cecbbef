/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ss_json.h - proto3 JSON helpers of the Sigstore parsers (ss_json.c),
 * included by ss_root.c and ss_bundle.c only. Every function takes the
 * file's @label and the JSON path of the object (@path, "" for the top) for
 * its one-line message, returns 0, -EBADMSG or -ENOMEM, and sets @err on
 * failure. An optional member given as JSON null counts as absent.
 */
#ifndef MODELFS_SS_JSON_H
#define MODELFS_SS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <openssl/x509.h>

#include "verity.h"

#define SS_PATH_SIZE 160 /* bytes of a path buffer; longer paths are cut */

/* Sets @err's code to @code, keeping its line, and returns @code: for the
 * refusals of shared helpers (-EINVAL) that the parsers report as -EBADMSG. */
int ss_json_recode(struct mv_err *err, int code);
/* Formats a path into @buf (SS_PATH_SIZE bytes); returns @buf. */
const char *ss_json_path(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "@base.@key" (or "@key" when @base is "") into @buf; returns @buf. */
const char *ss_json_join(char *buf, const char *base, const char *key);
/* Member @key of @obj, of one of the cJSON @types; *@out NULL if absent. */
int ss_json_member(const char *label, const cJSON *obj, const char *path, const char *key,
                   int types, bool required, const cJSON **out, struct mv_err *err);
/* Base64 text @s (member @path) into malloc'd bytes: non-empty, at most
 * @max bytes unless @max is 0. Line breaks ("\n", "\r") are skipped, as
 * protobuf JSON decoders skip them; any other whitespace is refused. */
int ss_json_b64(const char *label, const char *path, const char *s, size_t max, uint8_t **out,
                size_t *len, struct mv_err *err);
/* Required base64 member @key, as ss_json_b64(). */
int ss_json_bytes(const char *label, const cJSON *obj, const char *path, const char *key,
                  size_t max, uint8_t **out, size_t *len, struct mv_err *err);
/* Required base64 member @key of exactly @n bytes into @dst. */
int ss_json_fixed(const char *label, const cJSON *obj, const char *path, const char *key,
                  uint8_t *dst, size_t n, struct mv_err *err);
/* Optional int64 member (a decimal string, no sign); 0 when absent. */
int ss_json_int64(const char *label, const cJSON *obj, const char *path, const char *key,
                  int64_t *out, struct mv_err *err);
/* Optional array member of at most @max items; *@out NULL, *@n 0 if absent. */
int ss_json_array(const char *label, const cJSON *obj, const char *path, const char *key,
                  size_t max, const cJSON **out, size_t *n, struct mv_err *err);
/* Required non-empty string member copied into @dst (@size bytes with NUL). */
int ss_json_string(const char *label, const cJSON *obj, const char *path, const char *key,
                   char *dst, size_t size, struct mv_err *err);
/* A {"rawBytes": base64 DER} object (at @path) into a certificate. */
int ss_json_cert(const char *label, const char *path, const cJSON *obj, X509 **out,
                 struct mv_err *err);

#endif /* MODELFS_SS_JSON_H */
