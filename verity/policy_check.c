// SPDX-License-Identifier: Apache-2.0
/*
 * policy_check.c - applying a parsed trust policy (policy_int.h) to a
 * verified manifest: revoked signers, denylists, rollback pins, rules
 * (signers, min_signers, attestations), the per-path pickle policy, and the
 * binding of signed names to store paths. Every refusal names its rule.
 */
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy_int.h"
#include "sig_internal.h"

/* Does key entry @k name the model's signer? */
static bool key_is_signer(const struct pkey *k, const struct mv_signer *s)
{
	if (k->issuer)
		return s->is_keyless && strcmp(k->subject, s->identity) == 0 &&
		       strcmp(k->issuer, s->issuer) == 0;
	if (k->subject)
		return s->is_certificate && s->subject && strcmp(k->subject, s->subject) == 0;
	return k->id[0] && strcmp(k->id, s->key_id) == 0;
}

/* Does key entry @k have id @id (attestation signers are keys)? */
static bool key_has_id(const struct pkey *k, const char *id)
{
	return !k->subject && k->id[0] && strcmp(k->id, id) == 0;
}

static bool id_revoked(const struct mv_policy *p, const char *id)
{
	for (size_t i = 0; i < p->n_revoked; i++)
		if (key_has_id(&p->keys[p->revoked[i]], id))
			return true;
	return false;
}

static bool in_refs(const struct mv_policy *p, const size_t *refs, size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (key_has_id(&p->keys[refs[i]], id))
			return true;
	return false;
}

/**
 * mv_model_name() - the signed name of a model
 * @m: in: its manifest
 *
 * Return: the provenance name (seal --name), else the subject name, else "".
 */
const char *mv_model_name(const struct mv_manifest *m)
{
	if (m->prov.name && *m->prov.name)
		return m->prov.name;
	return m->subject_name ? m->subject_name : "";
}

/* Does glob @pat match the store path, or the signed name (may be NULL)? */
static bool glob_matches(const char *pat, const char *path, const char *name)
{
	return fnmatch(pat, path, 0) == 0 || (name && fnmatch(pat, name, 0) == 0);
}

/*
 * Rollback: each pin keyed on the store path or on the signed name must
 * hold, so an older build signed under another name and put at a pinned
 * path is still refused (and the pin on a name follows the model anywhere).
 */
static int check_min(const struct mv_policy *p, const char *model_path, const struct mv_manifest *m,
                     struct mv_err *err)
{
	const char *name = mv_model_name(m);
	time_t t = mv_policy_utc(m->prov.signed_at);

	for (size_t i = 0; i < p->n_min; i++) {
		if (strcmp(p->min[i].name, name) != 0 && strcmp(p->min[i].name, model_path) != 0)
			continue;
		if (t == (time_t)-1 || t < p->min[i].t)
			return mv_err_set(err, -EKEYREJECTED,
			                  "%s: min_signed_at.%s: signed at %s, older than %s "
			                  "(rollback refused)",
			                  p->label, MV_P(p->min[i].name),
			                  m->prov.signed_at ? MV_P(m->prov.signed_at) : "(unknown)",
			                  p->min[i].text);
	}
	return 0;
}

/* Revoked signer, denylisted digests: rules for every model. */
static int check_global(const struct mv_policy *p, const struct mv_manifest *m, struct mv_err *err)
{
	char hex[65];

	for (size_t i = 0; i < p->n_revoked; i++)
		if (key_is_signer(&p->keys[p->revoked[i]], &m->signer))
			return mv_err_set(err, -EKEYREJECTED,
			                  "%s: revoked_keys: the signer (key id %s) is revoked",
			                  p->label, m->signer.key_id);
	mv_hex_encode(m->statement_sha256, 32, hex);
	for (size_t i = 0; i < p->n_deny_stmt; i++)
		if (strcmp(p->deny_stmt[i], hex) == 0)
			return mv_err_set(
			    err, -EKEYREJECTED,
			    "%s: deny.statement_sha256: statement sha256:%s is denied", p->label,
			    hex);
	for (size_t r = 0; r < m->n_res; r++) {
		mv_hex_encode(m->res[r].sha256, 32, hex);
		for (size_t i = 0; i < p->n_deny_file; i++)
			if (strcmp(p->deny_file[i], hex) == 0)
				return mv_err_set(
				    err, -EKEYREJECTED,
				    "%s: deny.file_sha256: file %s (sha256:%s) is denied", p->label,
				    MV_P(m->res[r].name), hex);
	}
	return 0;
}

/* Is verified attestation @a usable: trusted, not revoked, about this model? */
static bool att_counts(const struct mv_policy *p, const struct mv_attestation *a)
{
	return a->verified && a->key_id[0] && !id_revoked(p, a->key_id);
}

static bool signer_listed(const struct mv_policy *p, const struct prule *r,
                          const struct mv_signer *s)
{
	for (size_t i = 0; i < r->n_signers; i++)
		if (key_is_signer(&p->keys[r->signers[i]], s))
			return true;
	return false;
}

/* Distinct signers: the model's and those of usable attestations (in @r's list if any). */
static long count_signers(const struct mv_policy *p, const struct prule *r,
                          const struct mv_manifest *m, const struct mv_attestation_list *atts)
{
	const char *seen[MV_ATTEST_MAX_FILES + 1];
	size_t n = 0;

	if (!r->n_signers || signer_listed(p, r, &m->signer))
		seen[n++] = m->signer.key_id;
	for (size_t i = 0; atts && i < atts->n && n < MV_ATTEST_MAX_FILES; i++) {
		const struct mv_attestation *a = &atts->a[i];
		bool dup = false;

		if (!att_counts(p, a) ||
		    (r->n_signers && !in_refs(p, r->signers, r->n_signers, a->key_id)))
			continue;
		for (size_t j = 0; j < n; j++)
			dup = dup || strcmp(seen[j], a->key_id) == 0;
		if (!dup)
			seen[n++] = a->key_id;
	}
	return (long)n;
}

/* Is there a usable attestation of @req's type from one of its keys? */
static bool has_attestation(const struct mv_policy *p, const struct pattest *req,
                            const struct mv_attestation_list *atts)
{
	for (size_t i = 0; atts && i < atts->n; i++) {
		const struct mv_attestation *a = &atts->a[i];

		if (att_counts(p, a) && a->predicate_type &&
		    strcmp(a->predicate_type, req->type) == 0 &&
		    (!req->n_keys || in_refs(p, req->keys, req->n_keys, a->key_id)))
			return true;
	}
	return false;
}

/*
 * One rule. @via: "" when the rule's glob matched the store path, else a
 * note that it matched the signed name, so a refusal of a moved model says
 * why a rule for another path applies.
 */
static int check_rule(const struct mv_policy *p, size_t idx, const char *via,
                      const struct mv_manifest *m, const struct mv_attestation_list *atts,
                      struct mv_err *err)
{
	const struct prule *r = &p->rules[idx];
	long n;

	if (r->n_signers && !signer_listed(p, r, &m->signer))
		return mv_err_set(
		    err, -EKEYREJECTED,
		    "%s: rules[%zu] (path \"%s\"%s).signers: signer %s is not allowed to "
		    "sign this path",
		    p->label, idx, MV_P(r->path), via,
		    mv_signer_describe(&m->signer, (char[700]){0}, 700));
	n = count_signers(p, r, m, atts);
	if (r->min_signers && n < r->min_signers)
		return mv_err_set(
		    err, -EKEYREJECTED,
		    "%s: rules[%zu] (path \"%s\"%s).min_signers: %ld distinct trusted "
		    "signer(s), %ld required",
		    p->label, idx, MV_P(r->path), via, n, r->min_signers);
	for (size_t i = 0; i < r->n_att; i++)
		if (!has_attestation(p, &r->att[i], atts))
			return mv_err_set(
			    err, -EKEYREJECTED,
			    "%s: rules[%zu] (path \"%s\"%s).attestations[%zu]: no verified "
			    "attestation of type %s from an allowed key",
			    p->label, idx, MV_P(r->path), via, i, MV_P(r->att[i].type));
	return 0;
}

/**
 * mv_policy_check() - apply @p to a verified model
 * @p: in: the policy
 * @model_path: in: the model's path in the store
 * @m: in: the verified manifest
 * @atts: in: its attestations (may be NULL)
 * @err: out: one line naming the failed rule
 *
 * Rules and pins apply by store path or by signed name. The default looks
 * at the store path alone: a name matching some rule must not let a model
 * be served at a path no rule covers.
 */
int mv_policy_check(const struct mv_policy *p, const char *model_path, const struct mv_manifest *m,
                    const struct mv_attestation_list *atts, struct mv_err *err)
{
	const char *name = mv_model_name(m);
	bool matched = false;
	char via[MV_PRINTABLE_SIZE + 40];
	int ret = check_global(p, m, err);

	if (!ret)
		ret = check_min(p, model_path, m, err);
	snprintf(via, sizeof(via), ", matched by signed name \"%s\"", MV_P(name));
	for (size_t i = 0; !ret && i < p->n_rules; i++) {
		bool by_path = fnmatch(p->rules[i].path, model_path, 0) == 0;

		if (!by_path && fnmatch(p->rules[i].path, name, 0) != 0)
			continue;
		matched = matched || by_path;
		ret = check_rule(p, i, by_path ? "" : via, m, atts, err);
	}
	if (!ret && !matched && !p->default_allow)
		ret = mv_err_set(err, -EKEYREJECTED,
		                 "%s: default: no rule matches model path \"%s\" (default deny)",
		                 p->label, MV_P(model_path));
	return ret;
}

/* Whether a rule matching @model_path or @name says "required": true. */
bool mv_policy_required(const struct mv_policy *p, const char *model_path, const char *name)
{
	for (size_t i = 0; p && i < p->n_rules; i++)
		if (p->rules[i].required && glob_matches(p->rules[i].path, model_path, name))
			return true;
	return false;
}

/* The pickle policy of the first rule matching @key that sets one; NULL if none. */
static const char *first_pickle(const struct mv_policy *p, const char *key)
{
	for (size_t i = 0; key && i < p->n_rules; i++)
		if (p->rules[i].pickle && fnmatch(p->rules[i].path, key, 0) == 0)
			return p->rules[i].pickle;
	return NULL;
}

/* How much a pickle policy withholds: show < transcode < hide < deny. */
static int pickle_rank(const char *pk)
{
	static const char *const order[] = {"show", "transcode", "hide", "deny"};

	for (int i = 0; i < 4; i++)
		if (strcmp(pk, order[i]) == 0)
			return i;
	return 4; /* the parser admits no other value */
}

/*
 * The pickle policy by store path and by signed name; the stricter wins,
 * so a model moved under a laxer path keeps the policy of its name.
 */
const char *mv_policy_pickle(const struct mv_policy *p, const char *model_path, const char *name)
{
	const char *by_path = first_pickle(p, model_path);
	const char *by_name = first_pickle(p, name);

	if (!by_path || !by_name)
		return by_path ? by_path : by_name;
	return pickle_rank(by_name) > pickle_rank(by_path) ? by_name : by_path;
}

/* Parses a --name-check / -o name_check= value. */
int mv_name_check_parse(const char *s, enum mv_name_check *out)
{
	static const enum mv_name_check modes[] = {MV_NAME_CHECK_SUFFIX, MV_NAME_CHECK_EXACT,
	                                           MV_NAME_CHECK_OFF};

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		if (strcmp(s, mv_name_check_str(modes[i])) == 0) {
			*out = modes[i];
			return 0;
		}
	}
	return -EINVAL;
}

const char *mv_name_check_str(enum mv_name_check mode)
{
	switch (mode) {
	case MV_NAME_CHECK_EXACT: return "exact";
	case MV_NAME_CHECK_OFF: return "off";
	default: return "suffix";
	}
}

/*
 * Is @name the whole of @path, or its trailing components starting after a
 * '/' ("m1" fits "org/m1", "acme/m1" fits "x/acme/m1", "m1" not "org/xm1")?
 */
static bool name_fits_path(const char *name, const char *path)
{
	size_t nl = strlen(name), pl = strlen(path);

	if (!nl || nl > pl || strcmp(path + pl - nl, name) != 0)
		return false;
	return nl == pl || path[pl - nl - 1] == '/';
}

/* The signed name the policy's "names" map requires at @model_path; NULL if unmapped. */
static const char *mapped_name(const struct mv_policy *p, const char *model_path)
{
	for (size_t i = 0; p && i < p->n_names; i++)
		if (strcmp(p->names[i].path, model_path) == 0)
			return p->names[i].name;
	return NULL;
}

/**
 * mv_name_bind_check() - is @m's signed name bound to @model_path?
 * @p: in: the policy, or NULL
 * @model_path: in: the model's path relative to the store root
 * @m: in: the verified manifest
 * @mode: in: the rule for a path the policy does not map
 * @err: out: on refusal, one line naming the name, the path and the rule
 *
 * A mapping in the policy is exact and wins over @mode, even "off": the
 * operator said which name belongs at that path.
 */
int mv_name_bind_check(const struct mv_policy *p, const char *model_path,
                       const struct mv_manifest *m, enum mv_name_check mode, struct mv_err *err)
{
	const char *name = mv_model_name(m), *want = mapped_name(p, model_path);

	if (want && strcmp(name, want) != 0)
		return mv_err_set(err, -EKEYREJECTED,
		                  "signed name \"%s\" does not match store path \"%s\" "
		                  "(%s: names maps it to \"%s\")",
		                  MV_P(name), MV_P(model_path), p->label, MV_P(want));
	if (want || mode == MV_NAME_CHECK_OFF)
		return 0;
	if (mode == MV_NAME_CHECK_EXACT ? strcmp(name, model_path) == 0
	                                : name_fits_path(name, model_path))
		return 0;
	return mv_err_set(err, -EKEYREJECTED,
	                  "signed name \"%s\" does not match store path \"%s\" (--name-check=%s)",
	                  MV_P(name), MV_P(model_path), mv_name_check_str(mode));
}
