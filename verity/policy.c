// SPDX-License-Identifier: Apache-2.0
/*
 * policy.c - trust policies (docs/policy.md), loading and parsing; applying
 * them is policy_check.c. A policy says which signers may sign which
 * model paths, required countersignatures and attestations, revoked keys, a
 * denylist of statement and file digests, rollback protection by a
 * minimum signed_at per model, and the binding of signed names to store
 * paths (the "names" map and mv_name_bind_check).
 *
 * A model is known by two keys: its store path and its signed name. Rules
 * and pins apply when either matches, so renaming a folder never escapes
 * one; the name check refuses a name that does not fit its path.
 *
 * The policy is applied after normal verification, to a manifest whose
 * signature already checked out against the trust inputs: it can only
 * refuse more, never accept what verification refused. Parsing is strict
 * (unknown members are errors) because a typo in a policy must not silently
 * allow what the operator meant to forbid. Every refusal names its rule.
 */
#include <errno.h>
#include <fnmatch.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy_int.h"
#include "sig_internal.h"

void mv_policy_free(struct mv_policy *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_keys; i++) {
		free(p->keys[i].name);
		free(p->keys[i].subject);
		free(p->keys[i].issuer);
	}
	for (size_t i = 0; i < p->n_rules; i++) {
		struct prule *r = &p->rules[i];

		for (size_t j = 0; j < r->n_att; j++) {
			free(r->att[j].type);
			free(r->att[j].keys);
		}
		free(r->att);
		free(r->path);
		free(r->signers);
		free(r->pickle);
	}
	for (size_t i = 0; i < p->n_min; i++) {
		free(p->min[i].name);
		free(p->min[i].text);
	}
	for (size_t i = 0; i < p->n_names; i++) {
		free(p->names[i].path);
		free(p->names[i].name);
	}
	free(p->names);
	free(p->keys);
	free(p->rules);
	free(p->revoked);
	free(p->deny_stmt);
	free(p->deny_file);
	free(p->min);
	free(p->label);
	free(p);
}

/* Only the listed member names are allowed in @obj. */
static int only_members(const struct mv_policy *p, const cJSON *obj, const char *path,
                        const char *const *allowed, struct mv_err *err)
{
	const cJSON *it;

	cJSON_ArrayForEach(it, obj)
	{
		bool ok = false;

		for (size_t i = 0; allowed[i]; i++)
			ok = ok || strcmp(it->string, allowed[i]) == 0;
		if (!ok)
			return mv_err_set(err, -EINVAL, "%s: %s: unknown member \"%s\"", p->label,
			                  path, MV_P(it->string));
	}
	return 0;
}

static bool is_hex64(const char *s)
{
	if (strlen(s) != 64)
		return false;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return false;
	return true;
}

/* "sha256:<hex>" or "<hex>" -> hex; NULL if neither. */
static const char *digest_hex(const char *s)
{
	if (strncmp(s, "sha256:", 7) == 0)
		s += 7;
	return is_hex64(s) ? s : NULL;
}

/* Key id of a public key file, relative to the policy's folder. */
static int key_file_id(const char *base, const char *file, char id[65], struct mv_err *err)
{
	struct mv_key *k = NULL;
	char *path = NULL;
	int ret;

	if (file[0] == '/')
		path = strdup(file);
	else if (asprintf(&path, "%s/%s", base, file) < 0)
		path = NULL;
	if (!path)
		return mv_err_set(err, -ENOMEM, "policy: out of memory");
	ret = mv_key_load_public(path, &k, err);
	if (!ret)
		mv_key_id(k, id);
	mv_key_free(k);
	free(path);
	return ret;
}

/*
 * keys.NAME: {"id": hex} | {"file": path} | {"subject": "CN=..."} |
 * {"identity": ID, "issuer": URL} (a keyless signer).
 */
static int parse_key(struct mv_policy *p, const char *base, const cJSON *o, struct pkey *k,
                     struct mv_err *err)
{
	static const char *const allowed[] = {"id", "file", "subject", "identity", "issuer", NULL};
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
	const cJSON *file = cJSON_GetObjectItemCaseSensitive(o, "file");
	const cJSON *subj = cJSON_GetObjectItemCaseSensitive(o, "subject");
	const cJSON *ident = cJSON_GetObjectItemCaseSensitive(o, "identity");
	const cJSON *iss = cJSON_GetObjectItemCaseSensitive(o, "issuer");
	int ret;

	if (!cJSON_IsObject(o) || (!!id + !!file + !!subj + !!ident) != 1 || !ident != !iss)
		return mv_err_set(err, -EINVAL,
		                  "%s: keys.%s: expected an object with one of id, file, subject, "
		                  "identity (with issuer)",
		                  p->label, MV_P(k->name));
	ret = only_members(p, o, "keys entry", allowed, err);
	if (ret)
		return ret;
	if (id) {
		const char *hex = cJSON_IsString(id) ? digest_hex(id->valuestring) : NULL;

		if (!hex)
			return mv_err_set(err, -EINVAL, "%s: keys.%s.id: expected 64 hex digits",
			                  p->label, MV_P(k->name));
		memcpy(k->id, hex, 65);
		return 0;
	}
	if (file) {
		if (!cJSON_IsString(file))
			return mv_err_set(err, -EINVAL, "%s: keys.%s.file: expected a string",
			                  p->label, MV_P(k->name));
		struct mv_err kerr = {0};
		int kret = key_file_id(base, file->valuestring, k->id, &kerr);

		return kret ? mv_err_set(err, kret, "%s: keys.%s.file: %s", p->label, MV_P(k->name),
		                         kerr.msg)
		            : 0;
	}
	if (ident) {
		if (!cJSON_IsString(ident) || !*ident->valuestring || !cJSON_IsString(iss) ||
		    !*iss->valuestring)
			return mv_err_set(err, -EINVAL,
			                  "%s: keys.%s: identity and issuer: expected strings",
			                  p->label, MV_P(k->name));
		subj = ident;
		k->issuer = strdup(iss->valuestring);
		if (!k->issuer)
			return -ENOMEM;
	}
	if (!cJSON_IsString(subj) || !*subj->valuestring)
		return mv_err_set(err, -EINVAL, "%s: keys.%s.subject: expected a string", p->label,
		                  MV_P(k->name));
	k->subject = strdup(subj->valuestring);
	return k->subject ? 0 : -ENOMEM;
}

static int parse_keys(struct mv_policy *p, const char *base, const cJSON *keys, struct mv_err *err)
{
	int n = cJSON_GetArraySize(keys), ret = 0;
	const cJSON *it;

	if (!keys)
		return 0;
	if (!cJSON_IsObject(keys) || n > POLICY_MAX_ITEMS)
		return mv_err_set(err, -EINVAL, "%s: keys: expected an object", p->label);
	p->keys = calloc((size_t)n + 1, sizeof(*p->keys));
	if (!p->keys)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", p->label);
	cJSON_ArrayForEach(it, keys)
	{
		struct pkey *k = &p->keys[p->n_keys++];

		k->name = strdup(it->string);
		ret = k->name ? parse_key(p, base, it, k, err) : -ENOMEM;
		if (ret)
			return ret;
	}
	return 0;
}

/* Index of key NAME, or -1. */
static long key_index(const struct mv_policy *p, const char *name)
{
	for (size_t i = 0; i < p->n_keys; i++)
		if (p->keys[i].name && strcmp(p->keys[i].name, name) == 0)
			return (long)i;
	return -1;
}

/* An array of key names -> indices. */
static int parse_key_refs(struct mv_policy *p, const cJSON *arr, const char *path, size_t **out,
                          size_t *n, struct mv_err *err)
{
	const cJSON *it;
	int cnt = cJSON_GetArraySize(arr);

	*out = NULL;
	*n = 0;
	if (!arr)
		return 0;
	if (!cJSON_IsArray(arr) || cnt > POLICY_MAX_ITEMS)
		return mv_err_set(err, -EINVAL, "%s: %s: expected an array of key names", p->label,
		                  path);
	*out = calloc((size_t)cnt + 1, sizeof(size_t));
	if (!*out)
		return mv_err_set(err, -ENOMEM, "%s: out of memory", p->label);
	cJSON_ArrayForEach(it, arr)
	{
		long idx = cJSON_IsString(it) ? key_index(p, it->valuestring) : -1;

		if (idx < 0)
			return mv_err_set(err, -EINVAL, "%s: %s: \"%s\" is not a key named in keys",
			                  p->label, path,
			                  cJSON_IsString(it) ? MV_P(it->valuestring) : "?");
		(*out)[(*n)++] = (size_t)idx;
	}
	return 0;
}

static int parse_attest_req(struct mv_policy *p, const cJSON *o, const char *path,
                            struct pattest *a, struct mv_err *err)
{
	static const char *const allowed[] = {"type", "signers", NULL};
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
	char sub[256];
	int ret;

	if (!cJSON_IsObject(o) || !cJSON_IsString(t) || !*t->valuestring)
		return mv_err_set(err, -EINVAL,
		                  "%s: %s: expected {\"type\": URI, \"signers\": [...]}", p->label,
		                  path);
	ret = only_members(p, o, path, allowed, err);
	if (ret)
		return ret;
	a->type = strdup(t->valuestring);
	if (!a->type)
		return -ENOMEM;
	snprintf(sub, sizeof(sub), "%s.signers", path);
	return parse_key_refs(p, cJSON_GetObjectItemCaseSensitive(o, "signers"), sub, &a->keys,
	                      &a->n_keys, err);
}

static int parse_rule_atts(struct mv_policy *p, const cJSON *arr, const char *path, struct prule *r,
                           struct mv_err *err)
{
	int n = cJSON_GetArraySize(arr), ret;
	char sub[180];

	if (!arr)
		return 0;
	if (!cJSON_IsArray(arr) || n > POLICY_MAX_ITEMS)
		return mv_err_set(err, -EINVAL, "%s: %s.attestations: expected an array", p->label,
		                  path);
	r->att = calloc((size_t)n + 1, sizeof(*r->att));
	if (!r->att)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		snprintf(sub, sizeof(sub), "%s.attestations[%d]", path, i);
		ret =
		    parse_attest_req(p, cJSON_GetArrayItem(arr, i), sub, &r->att[r->n_att++], err);
		if (ret)
			return ret;
	}
	return 0;
}

static int parse_rule(struct mv_policy *p, const cJSON *o, size_t idx, struct prule *r,
                      struct mv_err *err)
{
	static const char *const allowed[] = {"path",   "signers",  "min_signers", "attestations",
	                                      "pickle", "required", NULL};
	const cJSON *path = cJSON_GetObjectItemCaseSensitive(o, "path");
	const cJSON *min = cJSON_GetObjectItemCaseSensitive(o, "min_signers");
	const cJSON *pk = cJSON_GetObjectItemCaseSensitive(o, "pickle");
	const cJSON *req = cJSON_GetObjectItemCaseSensitive(o, "required");
	char where[64], sub[96];
	int ret;

	snprintf(where, sizeof(where), "rules[%zu]", idx);
	if (!cJSON_IsObject(o) || !cJSON_IsString(path) || !*path->valuestring)
		return mv_err_set(err, -EINVAL, "%s: %s: expected an object with a \"path\" glob",
		                  p->label, where);
	ret = only_members(p, o, where, allowed, err);
	if (ret)
		return ret;
	r->path = strdup(path->valuestring);
	if (min && (!cJSON_IsNumber(min) || min->valuedouble < 1 || min->valuedouble > 1000 ||
	            min->valuedouble != (double)(long)min->valuedouble))
		return mv_err_set(err, -EINVAL, "%s: %s.min_signers: expected an integer 1..1000",
		                  p->label, where);
	r->min_signers = min ? (long)min->valuedouble : 0;
	if (pk &&
	    (!cJSON_IsString(pk) ||
	     (strcmp(pk->valuestring, "hide") != 0 && strcmp(pk->valuestring, "show") != 0 &&
	      strcmp(pk->valuestring, "deny") != 0 && strcmp(pk->valuestring, "transcode") != 0)))
		return mv_err_set(err, -EINVAL,
		                  "%s: %s.pickle: expected transcode, hide, show or deny", p->label,
		                  where);
	r->pickle = pk ? strdup(pk->valuestring) : NULL;
	if (req && !cJSON_IsBool(req))
		return mv_err_set(err, -EINVAL, "%s: %s.required: expected true or false", p->label,
		                  where);
	r->required = cJSON_IsTrue(req);
	snprintf(sub, sizeof(sub), "%s.signers", where);
	ret = parse_key_refs(p, cJSON_GetObjectItemCaseSensitive(o, "signers"), sub, &r->signers,
	                     &r->n_signers, err);
	if (!ret)
		ret = parse_rule_atts(p, cJSON_GetObjectItemCaseSensitive(o, "attestations"), where,
		                      r, err);
	return ret;
}

static int parse_rules(struct mv_policy *p, const cJSON *arr, struct mv_err *err)
{
	int n = cJSON_GetArraySize(arr), ret;

	if (!arr)
		return 0;
	if (!cJSON_IsArray(arr) || n > POLICY_MAX_ITEMS)
		return mv_err_set(err, -EINVAL, "%s: rules: expected an array", p->label);
	p->rules = calloc((size_t)n + 1, sizeof(*p->rules));
	if (!p->rules)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		ret = parse_rule(p, cJSON_GetArrayItem(arr, i), (size_t)i, &p->rules[p->n_rules++],
		                 err);
		if (ret)
			return ret;
	}
	return 0;
}

/* revoked_keys: key names, or raw key ids (which become anonymous keys). */
static int parse_revoked(struct mv_policy *p, const cJSON *arr, struct mv_err *err)
{
	int n = cJSON_GetArraySize(arr);
	struct pkey *grown;
	const cJSON *it;

	if (!arr)
		return 0;
	if (!cJSON_IsArray(arr) || n > POLICY_MAX_ITEMS)
		return mv_err_set(err, -EINVAL, "%s: revoked_keys: expected an array", p->label);

	/* Room for the anonymous entries that raw key ids become. */
	grown = realloc(p->keys, (p->n_keys + (size_t)n + 1) * sizeof(*p->keys));
	if (!grown)
		return -ENOMEM;
	p->keys = grown;
	memset(p->keys + p->n_keys, 0, ((size_t)n + 1) * sizeof(*p->keys));
	p->revoked = calloc((size_t)n + 1, sizeof(size_t));
	if (!p->revoked)
		return -ENOMEM;
	cJSON_ArrayForEach(it, arr)
	{
		const char *hex = cJSON_IsString(it) ? digest_hex(it->valuestring) : NULL;
		long idx = cJSON_IsString(it) ? key_index(p, it->valuestring) : -1;

		if (idx < 0 && hex) {
			idx = (long)p->n_keys++;
			memcpy(p->keys[idx].id, hex, 65);
		}
		if (idx < 0)
			return mv_err_set(
			    err, -EINVAL,
			    "%s: revoked_keys: \"%s\" is neither a key name nor a key id", p->label,
			    cJSON_IsString(it) ? MV_P(it->valuestring) : "?");
		p->revoked[p->n_revoked++] = (size_t)idx;
	}
	return 0;
}

static int parse_digests(struct mv_policy *p, const cJSON *arr, const char *path, char (**out)[65],
                         size_t *n, struct mv_err *err)
{
	int cnt = cJSON_GetArraySize(arr);
	const cJSON *it;

	if (!arr)
		return 0;
	if (!cJSON_IsArray(arr) || cnt > POLICY_MAX_ITEMS)
		return mv_err_set(err, -EINVAL, "%s: %s: expected an array", p->label, path);
	*out = calloc((size_t)cnt + 1, 65);
	if (!*out)
		return -ENOMEM;
	cJSON_ArrayForEach(it, arr)
	{
		const char *hex = cJSON_IsString(it) ? digest_hex(it->valuestring) : NULL;

		if (!hex)
			return mv_err_set(err, -EINVAL, "%s: %s: expected sha256 hex digests",
			                  p->label, path);
		memcpy((*out)[(*n)++], hex, 65);
	}
	return 0;
}

static int parse_deny(struct mv_policy *p, const cJSON *o, struct mv_err *err)
{
	static const char *const allowed[] = {"statement_sha256", "file_sha256", NULL};
	int ret;

	if (!o)
		return 0;
	if (!cJSON_IsObject(o))
		return mv_err_set(err, -EINVAL, "%s: deny: expected an object", p->label);
	ret = only_members(p, o, "deny", allowed, err);
	if (!ret)
		ret = parse_digests(p, cJSON_GetObjectItemCaseSensitive(o, "statement_sha256"),
		                    "deny.statement_sha256", &p->deny_stmt, &p->n_deny_stmt, err);
	if (!ret)
		ret = parse_digests(p, cJSON_GetObjectItemCaseSensitive(o, "file_sha256"),
		                    "deny.file_sha256", &p->deny_file, &p->n_deny_file, err);
	return ret;
}

/* "YYYY-MM-DDTHH:MM:SSZ" (what seal writes) -> seconds; -1 if malformed. */
time_t mv_policy_utc(const char *s)
{
	struct tm tm = {0};
	const char *e = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;

	if (!e || strcmp(e, "Z") != 0)
		return (time_t)-1;
	return timegm(&tm);
}

static int parse_min(struct mv_policy *p, const cJSON *o, struct mv_err *err)
{
	int n = cJSON_GetArraySize(o);
	const cJSON *it;

	if (!o)
		return 0;
	if (!cJSON_IsObject(o) || n > POLICY_MAX_ITEMS)
		return mv_err_set(err, -EINVAL, "%s: min_signed_at: expected an object", p->label);
	p->min = calloc((size_t)n + 1, sizeof(*p->min));
	if (!p->min)
		return -ENOMEM;
	cJSON_ArrayForEach(it, o)
	{
		struct pmin *mn = &p->min[p->n_min++];

		mn->t = cJSON_IsString(it) ? mv_policy_utc(it->valuestring) : (time_t)-1;
		if (mn->t == (time_t)-1)
			return mv_err_set(err, -EINVAL,
			                  "%s: min_signed_at.%s: expected YYYY-MM-DDTHH:MM:SSZ",
			                  p->label, MV_P(it->string));
		mn->name = strdup(it->string);
		mn->text = strdup(it->valuestring);
		if (!mn->name || !mn->text)
			return -ENOMEM;
	}
	return 0;
}

/*
 * names: {"store/path": "signed name", ...}. A key must be a path the mount
 * can show (relative, no "." or ".." component, no stray '/'): one that can
 * never match would silently bind nothing.
 */
static int parse_names(struct mv_policy *p, const cJSON *o, struct mv_err *err)
{
	int n = cJSON_GetArraySize(o);
	const cJSON *it;

	if (!o)
		return 0;
	if (!cJSON_IsObject(o) || n > POLICY_MAX_ITEMS)
		return mv_err_set(err, -EINVAL, "%s: names: expected an object", p->label);
	p->names = calloc((size_t)n + 1, sizeof(*p->names));
	if (!p->names)
		return -ENOMEM;
	cJSON_ArrayForEach(it, o)
	{
		struct pname *pn = &p->names[p->n_names++];

		if (!mv_resource_name_valid(it->string, false))
			return mv_err_set(err, -EINVAL,
			                  "%s: names.%s: expected a store path such as org/model "
			                  "(relative, no \".\" or \"..\" component)",
			                  p->label, MV_P(it->string));
		if (!cJSON_IsString(it) || !*it->valuestring)
			return mv_err_set(err, -EINVAL, "%s: names.%s: expected a signed name",
			                  p->label, MV_P(it->string));
		pn->path = strdup(it->string);
		pn->name = strdup(it->valuestring);
		if (!pn->path || !pn->name)
			return -ENOMEM;
	}
	return 0;
}

static int parse_top(struct mv_policy *p, const char *base, const cJSON *root, struct mv_err *err)
{
	static const char *const allowed[] = {"version", "default",       "keys",
	                                      "rules",   "revoked_keys",  "deny",
	                                      "names",   "min_signed_at", NULL};
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "version");
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "default");
	int ret;

	if (!cJSON_IsObject(root))
		return mv_err_set(err, -EINVAL, "%s: expected a JSON object", p->label);
	ret = only_members(p, root, "policy", allowed, err);
	if (ret)
		return ret;
	if (!cJSON_IsNumber(v) || v->valuedouble != 1)
		return mv_err_set(err, -EINVAL, "%s: version: must be 1", p->label);
	if (d && (!cJSON_IsString(d) ||
	          (strcmp(d->valuestring, "deny") != 0 && strcmp(d->valuestring, "allow") != 0)))
		return mv_err_set(err, -EINVAL, "%s: default: expected \"deny\" or \"allow\"",
		                  p->label);
	p->default_allow = d && strcmp(d->valuestring, "allow") == 0;
	ret = parse_keys(p, base, cJSON_GetObjectItemCaseSensitive(root, "keys"), err);
	if (!ret)
		ret = parse_rules(p, cJSON_GetObjectItemCaseSensitive(root, "rules"), err);
	if (!ret)
		ret = parse_revoked(p, cJSON_GetObjectItemCaseSensitive(root, "revoked_keys"), err);
	if (!ret)
		ret = parse_deny(p, cJSON_GetObjectItemCaseSensitive(root, "deny"), err);
	if (!ret)
		ret = parse_min(p, cJSON_GetObjectItemCaseSensitive(root, "min_signed_at"), err);
	if (!ret)
		ret = parse_names(p, cJSON_GetObjectItemCaseSensitive(root, "names"), err);
	return ret;
}

/**
 * mv_policy_load() - read and parse a policy file
 * @path: in: the policy JSON; key files are relative to its folder
 * @out: out: the policy
 * @err: out: error line naming @path and the JSON path
 */
int mv_policy_load(const char *path, struct mv_policy **out, struct mv_err *err)
{
	struct mv_policy *p = calloc(1, sizeof(*p));
	char *buf = NULL, *copy = strdup(path);
	cJSON *root = NULL;
	size_t len = 0;
	int ret;

	*out = NULL;
	if (!p || !copy || !(p->label = strdup(path))) {
		ret = mv_err_set(err, -ENOMEM, "%s: out of memory", path);
		goto out;
	}
	ret = mv_read_file(path, POLICY_MAX, &buf, &len, err);
	if (!ret)
		ret = mv_json_parse_strict(path, "policy", buf, len, &root, err);
	if (!ret)
		ret = parse_top(p, dirname(copy), root, err);
	if (ret == -ENOMEM)
		mv_err_set(err, ret, "%s: out of memory", path);
	if (!ret) {
		*out = p;
		p = NULL;
	}
out:
	mv_policy_free(p);
	cJSON_Delete(root);
	free(buf);
	free(copy);
	return ret;
}
