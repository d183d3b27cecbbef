// SPDX-License-Identifier: Apache-2.0
/*
 * bom.c - a CycloneDX (1.6 / 1.7) JSON ML-BOM built from a signed statement.
 *
 * Everything in the BOM comes from the signed statement, except the model
 * parameters read from the model's config.json, which are used only when
 * that file's SHA-256 is the one signed. See docs/provenance.md for the
 * mapping of each field.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/rand.h>

#include "sig_internal.h"

#define CONFIG_MAX (4u << 20)

/* Model parameters gathered from seal-time properties and config.json. */
struct model_params {
	const char *task, *family, *arch, *inputs, *outputs, *supplier, *publisher;
	char *cfg_family, *cfg_arch; /* owned: from config.json */
};

/* Value of seal-time property @key, or NULL. */
static const char *prop(const struct mv_provenance *p, const char *key)
{
	for (size_t i = 0; i < p->n_props; i++)
		if (strcmp(p->props[i].key, key) == 0)
			return p->props[i].value;
	return NULL;
}

/*
 * Reads model_type / architectures[0] from config.json, but only if its bytes
 * are the signed ones: an unsigned config must not put words in the BOM.
 */
static void config_params(const struct mv_manifest *m, const char *dir, struct model_params *mp)
{
	const struct mv_resource *r = mv_manifest_find(m, "config.json");
	const cJSON *mt, *ar, *a0;
	char *path = NULL, *buf = NULL;
	uint8_t sha[32];
	cJSON *root = NULL;
	size_t len = 0;

	if (!dir || !r || asprintf(&path, "%s/config.json", dir) < 0)
		return;
	if (mv_read_file(path, CONFIG_MAX, &buf, &len, NULL))
		goto out;
	mv_sha256(buf, len, sha);
	if (memcmp(sha, r->sha256, 32) != 0 ||
	    mv_json_parse_strict(path, "config.json", buf, len, &root, NULL))
		goto out;
	mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
	ar = cJSON_GetObjectItemCaseSensitive(root, "architectures");
	a0 = cJSON_IsArray(ar) ? cJSON_GetArrayItem(ar, 0) : NULL;
	if (cJSON_IsString(mt) && *mt->valuestring)
		mp->cfg_family = strdup(mt->valuestring);
	if (cJSON_IsString(a0) && *a0->valuestring)
		mp->cfg_arch = strdup(a0->valuestring);
out:
	cJSON_Delete(root);
	free(buf);
	free(path);
}

/* Properties win over config.json: the publisher said so explicitly. */
static void gather_params(const struct mv_manifest *m, const char *dir, struct model_params *mp)
{
	const struct mv_provenance *p = &m->prov;

	config_params(m, dir, mp);
	mp->task = prop(p, "task");
	mp->family = prop(p, "architecture_family");
	if (!mp->family)
		mp->family = mp->cfg_family;
	mp->arch = prop(p, "architecture");
	if (!mp->arch)
		mp->arch = mp->cfg_arch;
	mp->inputs = prop(p, "inputs");
	mp->outputs = prop(p, "outputs");
	mp->supplier = prop(p, "supplier");
	mp->publisher = prop(p, "publisher");
}

/* SPDX ids for the license strings model hubs use (lower case there). */
static const char *spdx_id(const char *license)
{
	static const char *const ids[] = {
	    "Apache-2.0",   "MIT",          "BSD-2-Clause",  "BSD-3-Clause", "CC-BY-4.0",
	    "CC-BY-SA-4.0", "CC-BY-NC-4.0", "CC0-1.0",       "GPL-3.0-only", "LGPL-3.0-only",
	    "MPL-2.0",      "Unlicense",    "AGPL-3.0-only",
	};

	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		if (strcasecmp(ids[i], license) == 0)
			return ids[i];
	return NULL;
}

/*
 * An IRI reference for externalReferences.url: characters JSON Schema's
 * iri-reference refuses (controls, space, "<>\"{}|\\^`") are %-escaped.
 */
static char *iri_escape(const char *s)
{
	size_t n = strlen(s);
	char *out, *o;

	if (n > SIZE_MAX / 3 - 1)
		return NULL;
	out = malloc(3 * n + 1);
	if (!out)
		return NULL;
	o = out;
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c <= 0x20 || *c == 0x7f || strchr("<>\"{}|\\^`", *c))
			o += sprintf(o, "%%%02X", *c);
		else
			*o++ = (char)*c;
	}
	*o = '\0';
	return out;
}

/* Adds {"name": @name, "value": @value} to a properties array. */
static void add_prop(cJSON *props, const char *name, const char *value)
{
	cJSON *o;

	if (!value)
		return;
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "name", name);
	cJSON_AddStringToObject(o, "value", value);
	cJSON_AddItemToArray(props, o);
}

/* "a,b" -> [{"format":"a"},{"format":"b"}] (modelCard inputs / outputs). */
static void add_formats(cJSON *params, const char *key, const char *list)
{
	cJSON *arr;
	char *copy, *save = NULL;

	if (!list || !(copy = strdup(list)))
		return;
	arr = cJSON_AddArrayToObject(params, key);
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		cJSON *o = cJSON_CreateObject();

		while (*t == ' ')
			t++;
		cJSON_AddStringToObject(o, "format", t);
		cJSON_AddItemToArray(arr, o);
	}
	free(copy);
}

static void add_licenses(cJSON *comp, const char *license)
{
	cJSON *arr, *o, *l;
	const char *id;

	if (!license)
		return;
	arr = cJSON_AddArrayToObject(comp, "licenses");
	o = cJSON_CreateObject();
	l = cJSON_AddObjectToObject(o, "license");
	id = spdx_id(license);
	cJSON_AddStringToObject(l, id ? "id" : "name", id ? id : license);
	cJSON_AddItemToArray(arr, o);
}

/* Was dataset @i already listed (duplicates would repeat a bom-ref)? */
static bool dataset_dup(const struct mv_provenance *p, size_t i)
{
	for (size_t j = 0; j < i; j++)
		if (strcmp(p->datasets[j], p->datasets[i]) == 0)
			return true;
	return false;
}

/* modelCard: parameters and the datasets, as references to data components. */
static void add_model_card(cJSON *comp, const struct mv_manifest *m, const struct model_params *mp)
{
	cJSON *card = cJSON_AddObjectToObject(comp, "modelCard");
	cJSON *params = cJSON_AddObjectToObject(card, "modelParameters");
	char ref[4200];

	if (mp->task)
		cJSON_AddStringToObject(params, "task", mp->task);
	if (mp->family)
		cJSON_AddStringToObject(params, "architectureFamily", mp->family);
	if (mp->arch)
		cJSON_AddStringToObject(params, "modelArchitecture", mp->arch);
	if (m->prov.n_datasets) {
		cJSON *ds = cJSON_AddArrayToObject(params, "datasets");

		for (size_t i = 0; i < m->prov.n_datasets; i++) {
			cJSON *o;

			if (dataset_dup(&m->prov, i))
				continue;
			o = cJSON_CreateObject();
			snprintf(ref, sizeof(ref), "dataset:%s", m->prov.datasets[i]);
			cJSON_AddStringToObject(o, "ref", ref);
			cJSON_AddItemToArray(ds, o);
		}
	}
	add_formats(params, "inputs", mp->inputs);
	add_formats(params, "outputs", mp->outputs);
}

/* Signer and statement digests as properties of the model component. */
static void add_model_props(cJSON *comp, const struct mv_manifest *m)
{
	cJSON *props = cJSON_AddArrayToObject(comp, "properties");
	char hex[65], name[300];

	mv_hex_encode(m->statement_sha256, 32, hex);
	add_prop(props, "modelfs:statement.sha256", hex);
	mv_hex_encode(m->subject_sha256, 32, hex);
	add_prop(props, "modelfs:subject.sha256", hex);
	add_prop(props, "modelfs:subject.name", m->subject_name);
	add_prop(props, "modelfs:signer.method",
	         m->signer.is_keyless       ? "keyless"
	         : m->signer.is_certificate ? "certificate"
	                                    : "key");
	add_prop(props, "modelfs:signer.identity", m->signer.identity);
	add_prop(props, "modelfs:signer.issuer", m->signer.issuer);
	if (m->signer.key_id[0])
		add_prop(props, "modelfs:signer.key_id", m->signer.key_id);
	if (m->signer.hint[0])
		add_prop(props, "modelfs:signer.hint", m->signer.hint);
	add_prop(props, "modelfs:signer.subject", m->signer.subject);
	add_prop(props, "modelfs:signed_at", m->prov.signed_at);
	add_prop(props, "modelfs:tool_version", m->prov.tool_version);
	for (size_t i = 0; i < m->prov.n_props; i++) {
		snprintf(name, sizeof(name), "modelfs:property:%.250s", m->prov.props[i].key);
		add_prop(props, name, m->prov.props[i].value);
	}
}

/* The org part of "org/name", as a fallback supplier. */
static char *name_org(const char *name)
{
	const char *slash = strchr(name, '/');

	return slash && slash != name ? strndup(name, (size_t)(slash - name)) : NULL;
}

static cJSON *model_component(const struct mv_manifest *m, const struct model_params *mp)
{
	const struct mv_provenance *p = &m->prov;
	cJSON *c = cJSON_CreateObject(), *o;
	char *org = name_org(mv_model_name(m)), *url;
	const char *supplier = mp->supplier ? mp->supplier : org;

	cJSON_AddStringToObject(c, "type", "machine-learning-model");
	cJSON_AddStringToObject(c, "bom-ref", "model");
	if (supplier) {
		o = cJSON_AddObjectToObject(c, "supplier");
		cJSON_AddStringToObject(o, "name", supplier);
	}
	if (mp->publisher || supplier)
		cJSON_AddStringToObject(c, "publisher", mp->publisher ? mp->publisher : supplier);
	cJSON_AddStringToObject(c, "name", mv_model_name(m));
	if (p->revision)
		cJSON_AddStringToObject(c, "version", p->revision);
	add_licenses(c, p->license);
	if (p->source && (url = iri_escape(p->source))) {
		cJSON *refs = cJSON_AddArrayToObject(c, "externalReferences");

		o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "type", "distribution");
		cJSON_AddStringToObject(o, "url", url);
		cJSON_AddStringToObject(o, "comment", "source of the model (signed provenance)");
		cJSON_AddItemToArray(refs, o);
		free(url);
	}
	if (p->base_model) {
		cJSON *anc =
		    cJSON_AddArrayToObject(cJSON_AddObjectToObject(c, "pedigree"), "ancestors");

		o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "type", "machine-learning-model");
		cJSON_AddStringToObject(o, "bom-ref", "base-model");
		cJSON_AddStringToObject(o, "name", p->base_model);
		cJSON_AddItemToArray(anc, o);
	}
	add_model_props(c, m);
	add_model_card(c, m, mp);
	free(org);
	return c;
}

/* One file component per signed resource, with its SHA-256. */
static cJSON *file_component(const struct mv_resource *r)
{
	cJSON *c = cJSON_CreateObject(), *hashes, *h, *props;
	char hex[2 * MV_MAX_DIGEST_SIZE + 1], ref[4200], val[2 * MV_MAX_DIGEST_SIZE + 16];

	snprintf(ref, sizeof(ref), "file:%s", r->name);
	cJSON_AddStringToObject(c, "type", "file");
	cJSON_AddStringToObject(c, "bom-ref", ref);
	cJSON_AddStringToObject(c, "name", r->name);
	hashes = cJSON_AddArrayToObject(c, "hashes");
	h = cJSON_CreateObject();
	mv_hex_encode(r->sha256, 32, hex);
	cJSON_AddStringToObject(h, "alg", "SHA-256");
	cJSON_AddStringToObject(h, "content", hex);
	cJSON_AddItemToArray(hashes, h);
	if (!r->has_merkle)
		return c;
	props = cJSON_AddArrayToObject(c, "properties");
	mv_hex_encode(r->merkle.digest, mv_hash_digest_size(r->merkle.params.alg), hex);
	snprintf(val, sizeof(val), "%s:%s", mv_hash_name(r->merkle.params.alg), hex);
	add_prop(props, "modelfs:fsverity_digest", val);
	snprintf(val, sizeof(val), "%llu", (unsigned long long)r->merkle.params.data_size);
	add_prop(props, "modelfs:size", val);
	return c;
}

static cJSON *dataset_component(const char *name)
{
	cJSON *c = cJSON_CreateObject(), *data, *d;
	char ref[4200];

	snprintf(ref, sizeof(ref), "dataset:%s", name);
	cJSON_AddStringToObject(c, "type", "data");
	cJSON_AddStringToObject(c, "bom-ref", ref);
	cJSON_AddStringToObject(c, "name", name);
	data = cJSON_AddArrayToObject(c, "data");
	d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "type", "dataset");
	cJSON_AddStringToObject(d, "name", name);
	cJSON_AddItemToArray(data, d);
	return c;
}

/* Components (files, datasets) and the model's dependency on them. */
static void add_components(cJSON *root, const struct mv_manifest *m)
{
	cJSON *comps = cJSON_AddArrayToObject(root, "components");
	cJSON *deps = cJSON_AddArrayToObject(root, "dependencies");
	cJSON *dep = cJSON_CreateObject(), *on;
	char ref[4200];

	cJSON_AddStringToObject(dep, "ref", "model");
	on = cJSON_AddArrayToObject(dep, "dependsOn");
	for (size_t i = 0; i < m->n_res; i++) {
		cJSON_AddItemToArray(comps, file_component(&m->res[i]));
		snprintf(ref, sizeof(ref), "file:%s", m->res[i].name);
		cJSON_AddItemToArray(on, cJSON_CreateString(ref));
	}
	for (size_t i = 0; i < m->prov.n_datasets; i++) {
		if (dataset_dup(&m->prov, i))
			continue;
		cJSON_AddItemToArray(comps, dataset_component(m->prov.datasets[i]));
		snprintf(ref, sizeof(ref), "dataset:%s", m->prov.datasets[i]);
		cJSON_AddItemToArray(on, cJSON_CreateString(ref));
	}
	cJSON_AddItemToArray(deps, dep);
}

/* A random (version 4) UUID URN. */
static int random_serial(char out[46])
{
	uint8_t u[16];
	char h[33];

	if (RAND_bytes(u, sizeof(u)) != 1)
		return -EIO;
	u[6] = (uint8_t)((u[6] & 0x0f) | 0x40);
	u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
	mv_hex_encode(u, 16, h);
	snprintf(out, 46, "urn:uuid:%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
	return 0;
}

/* The schema's serialNumber pattern: urn:uuid: and a lowercase-hex UUID. */
static bool serial_valid(const char *s)
{
	static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

	if (strncmp(s, "urn:uuid:", 9) != 0 || strlen(s + 9) != sizeof(shape) - 1)
		return false;
	for (size_t i = 0; shape[i]; i++) {
		char c = s[9 + i];

		if (shape[i] == '-' ? c != '-'
		                    : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return true;
}

/* RFC 3339 date-time: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM). */
static bool timestamp_valid(const char *s)
{
	struct tm tm = {0};
	const char *e = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);

	if (!e || strlen(s) < 19)
		return false;
	if (*e == '.') {
		if (!(e[1] >= '0' && e[1] <= '9'))
			return false;
		for (e++; *e >= '0' && *e <= '9'; e++)
			;
	}
	if (strcmp(e, "Z") == 0)
		return true;
	return (e[0] == '+' || e[0] == '-') && strlen(e) == 6 && e[3] == ':';
}

/* metadata: timestamp, the tool, and the model itself as the subject. */
static int add_metadata(cJSON *root, const struct mv_manifest *m, const struct mv_bom_opts *o,
                        const struct model_params *mp, struct mv_err *err)
{
	cJSON *md = cJSON_AddObjectToObject(root, "metadata"), *tools, *t;
	char now[32];

	if (o->timestamp) {
		if (!timestamp_valid(o->timestamp))
			return mv_err_set(err, -EINVAL,
			                  "bom: --timestamp '%s': not an RFC 3339 date-time",
			                  MV_P(o->timestamp));
		cJSON_AddStringToObject(md, "timestamp", o->timestamp);
	} else {
		time_t tnow = time(NULL);
		struct tm tm;

		gmtime_r(&tnow, &tm);
		strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
		cJSON_AddStringToObject(md, "timestamp", now);
	}
	tools = cJSON_AddArrayToObject(cJSON_AddObjectToObject(md, "tools"), "components");
	t = cJSON_CreateObject();
	cJSON_AddStringToObject(t, "type", "application");
	cJSON_AddStringToObject(t, "name", "modelfs");
	cJSON_AddStringToObject(t, "version", MV_VERSION);
	cJSON_AddItemToArray(tools, t);
	cJSON_AddItemToObject(md, "component", model_component(m, mp));
	return 0;
}

/* Header members: format, spec version, serial number. */
static int add_header(cJSON *root, const struct mv_bom_opts *o, struct mv_err *err)
{
	const char *spec = o->spec ? o->spec : "1.6";
	char serial[46];

	if (strcmp(spec, "1.6") != 0 && strcmp(spec, "1.7") != 0)
		return mv_err_set(err, -EINVAL, "bom: --spec '%s': supported are 1.6 and 1.7",
		                  MV_P(spec));
	if (o->serial_number && !serial_valid(o->serial_number))
		return mv_err_set(err, -EINVAL,
		                  "bom: --serial-number '%s': expected urn:uuid:<lowercase UUID>",
		                  MV_P(o->serial_number));
	if (!o->serial_number && random_serial(serial))
		return mv_err_set(err, -EIO, "bom: no random bytes for the serial number");
	cJSON_AddStringToObject(root, "$schema",
	                        strcmp(spec, "1.6") == 0
	                            ? "http://cyclonedx.org/schema/bom-1.6.schema.json"
	                            : "http://cyclonedx.org/schema/bom-1.7.schema.json");
	cJSON_AddStringToObject(root, "bomFormat", "CycloneDX");
	cJSON_AddStringToObject(root, "specVersion", spec);
	cJSON_AddStringToObject(root, "serialNumber", o->serial_number ? o->serial_number : serial);
	cJSON_AddNumberToObject(root, "version", 1);
	return 0;
}

/**
 * mv_bom_build() - the CycloneDX JSON ML-BOM of a signed model
 * @m: in: the manifest
 * @o: in: options (may be NULL)
 * @out, @out_len: out: malloc'd JSON text ending in a newline
 * @err: out: error line
 */
int mv_bom_build(const struct mv_manifest *m, const struct mv_bom_opts *o, char **out,
                 size_t *out_len, struct mv_err *err)
{
	static const struct mv_bom_opts defaults = {0};
	struct model_params mp = {0};
	cJSON *root = cJSON_CreateObject();
	char *text = NULL, *nl;
	size_t n;
	int ret;

	*out = NULL;
	*out_len = 0;
	o = o ? o : &defaults;
	if (!root)
		return mv_err_set(err, -ENOMEM, "bom: out of memory");
	gather_params(m, o->model_dir, &mp);
	ret = add_header(root, o, err);
	if (!ret)
		ret = add_metadata(root, m, o, &mp, err);
	if (ret)
		goto out;
	add_components(root, m);
	text = cJSON_Print(root);
	n = text ? strlen(text) : 0;
	nl = text ? realloc(text, n + 2) : NULL;
	if (!nl) {
		ret = mv_err_set(err, -ENOMEM, "bom: out of memory");
		goto out;
	}
	text = NULL;
	nl[n] = '\n';
	nl[n + 1] = '\0';
	*out = nl;
	*out_len = n + 1;
out:
	free(text);
	free(mp.cfg_family);
	free(mp.cfg_arch);
	cJSON_Delete(root);
	return ret;
}
