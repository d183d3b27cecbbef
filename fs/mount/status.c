// SPDX-License-Identifier: Apache-2.0
/*
 * status.c - MOUNT/.modelfs/status.json: which models are exposed, which
 * were refused and why, what the last live reload did, the read and
 * verification counters, the file descriptors, and the health verdict that
 * `modelfs status` exits with. Generated as a snapshot each time the file is
 * opened, under the namespace lock (for reading) so that a reload is seen
 * whole or not at all.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "mount_int.h"
#include "stats_int.h"

static void add_time(cJSON *o, const char *key, const struct timespec *ts)
{
	char buf[32];
	struct tm tm;

	gmtime_r(&ts->tv_sec, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	cJSON_AddStringToObject(o, key, buf);
}

/* The counters and the cache statistics: one table each (metrics.c). */
static cJSON *counters(struct mfs_mount *m)
{
	struct mfs_cache_stats cs;
	cJSON *c = cJSON_CreateObject();

	if (!c)
		return NULL;
	mfs_cache_stats(m, &cs);
	/* JSON numbers are doubles: exact up to 2^53, plenty for these counters. */
	for (size_t i = 0; i < mfs_n_counter_defs; i++)
		cJSON_AddNumberToObject(c, mfs_counter_defs[i].key,
		                        (double)mfs_counter_get(m, &mfs_counter_defs[i]));
	for (size_t i = 0; i < mfs_n_cache_stat_defs; i++)
		cJSON_AddNumberToObject(c, mfs_cache_stat_defs[i].key,
		                        (double)mfs_cache_stat_get(&cs, &mfs_cache_stat_defs[i]));
	return c;
}

/*
 * One pickle of a model under --pickle=transcode: shown as which view, or
 * hidden and why. Views not yet decided are reported as such, never decided
 * here: a status read must stay cheap.
 */
static cJSON *pickle_entry(const struct mfs_node *f)
{
	const struct mfs_node *t = f->tx;
	int st = t ? __atomic_load_n(&t->tx_state, __ATOMIC_ACQUIRE) : MFS_TX_HIDDEN;
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "file", f->res->name);
	if (st == MFS_TX_UNDECIDED) {
		cJSON_AddStringToObject(o, "check", "not yet run");
		return o;
	}
	/* Set before the state was published (release): read after the acquire above. */
	if (t && t->tx_verdict >= 0)
		cJSON_AddStringToObject(o, "verdict",
		                        mfs_verdict_name((enum mfs_verdict)t->tx_verdict));
	if (st == MFS_TX_SHOWN) {
		cJSON_AddStringToObject(o, "shown_as", t->name);
		return o;
	}
	cJSON_AddBoolToObject(o, "hidden", 1);
	cJSON_AddStringToObject(o, "reason",
	                        !t             ? "its safetensors name is taken in the model"
	                        : t->tx_reason ? t->tx_reason
	                                       : "not transcodable");
	return o;
}

/* The pickles of @model whose format is known: detection is lazy. */
static void add_pickles(struct mfs_model *model, cJSON *o)
{
	cJSON *arr = cJSON_AddArrayToObject(o, "pickles");

	for (size_t i = 0; arr && i < model->n_files; i++) {
		const struct mfs_node *f = model->files[i];
		cJSON *e;

		if (!__atomic_load_n(&f->fmt_known, __ATOMIC_ACQUIRE) || f->fmt != MFS_FMT_PICKLE)
			continue;
		e = pickle_entry(f);
		if (e)
			cJSON_AddItemToArray(arr, e);
	}
}

static size_t verified_atts(const struct mfs_model *model)
{
	size_t n = 0;

	for (size_t i = 0; i < model->atts.n; i++)
		n += model->atts.a[i].verified;
	return n;
}

/* "signer" of a model: a keyless identity (with "signer_issuer"), a
 * certificate subject, or a key id. */
static void signer_json(cJSON *o, const struct mv_signer *s)
{
	if (s->is_keyless) {
		cJSON_AddStringToObject(o, "signer", s->identity);
		cJSON_AddStringToObject(o, "signer_issuer", s->issuer);
		return;
	}
	cJSON_AddStringToObject(o, "signer",
	                        s->is_certificate && s->subject ? s->subject : s->key_id);
}

/* One model, into the exposed or the refused list. */
static void add_model(struct mfs_mount *m, struct mfs_model *model, cJSON *exposed, cJSON *refused)
{
	cJSON *o = cJSON_CreateObject();
	const char *name;

	if (!o)
		return;
	cJSON_AddStringToObject(o, "path", model->path);
	pthread_mutex_lock(&model->lock);
	if (model->refused || !model->man) {
		cJSON_AddStringToObject(o, "reason", model->refused ? model->refused : "refused");
		pthread_mutex_unlock(&model->lock);
		/* A policy rule says this model must be served: `modelfs status` exits 1. */
		cJSON_AddBoolToObject(
		    o, "required",
		    mv_policy_required(m->policy, model->path,
		                       model->man ? mv_model_name(model->man) : NULL));
		cJSON_AddItemToArray(refused, o);
		return;
	}
	pthread_mutex_unlock(&model->lock);
	name = mv_model_name(model->man);
	if (*name)
		cJSON_AddStringToObject(o, "name", name);
	cJSON_AddNumberToObject(o, "files", (double)model->n_files);
	signer_json(o, &model->man->signer);
	if (model->man->prov.signed_at)
		cJSON_AddStringToObject(o, "signed_at", model->man->prov.signed_at);
	if (model->pickle != m->pickle)
		cJSON_AddStringToObject(o, "pickle_policy", mfs_pickle_policy_name(model->pickle));
	cJSON_AddNumberToObject(o, "attestations", (double)model->atts.n);
	cJSON_AddNumberToObject(o, "attestations_verified", (double)verified_atts(model));
	if (model->pickle == MFS_PICKLE_DENY)
		cJSON_AddStringToObject(o, "pickle_check",
		                        __atomic_load_n(&model->deny_state, __ATOMIC_ACQUIRE) ==
		                                MFS_DENY_OK
		                            ? "passed"
		                            : "not yet run");
	if (model->pickle == MFS_PICKLE_TRANSCODE)
		add_pickles(model, o);
	if (model->reload_error) {
		/* A newer model.sig was refused: this (older) version still serves. */
		cJSON_AddStringToObject(o, "reload_error", model->reload_error);
		cJSON_AddStringToObject(o, "serving", "last good version");
	}
	cJSON_AddItemToArray(exposed, o);
}

/* What live reload did last (reload.c); ns_lock is held. */
static void add_reload(struct mfs_mount *m, cJSON *root)
{
	const struct mfs_reload_info *r = &m->reload_info;
	cJSON *o = cJSON_AddObjectToObject(root, "reload");

	if (!o)
		return;
	cJSON_AddBoolToObject(o, "watch", r->watch);
	cJSON_AddNumberToObject(o, "count", (double)r->count);
	cJSON_AddNumberToObject(o, "retired_versions", (double)mfs_store_n_retired(m));
	if (!r->trigger)
		return;
	add_time(o, "last", &r->last);
	cJSON_AddStringToObject(o, "last_trigger", r->trigger);
	cJSON_AddStringToObject(o, "last_result", r->error ? strerror(-r->error) : "ok");
	cJSON_AddNumberToObject(o, "added", (double)r->added);
	cJSON_AddNumberToObject(o, "removed", (double)r->removed);
	cJSON_AddNumberToObject(o, "changed", (double)r->changed);
	cJSON_AddNumberToObject(o, "refused", (double)r->refused);
	cJSON_AddNumberToObject(o, "duration_ms", (double)r->duration_ms);
}

/* Seconds since the epoch, in status.json's time format. */
static void add_time_ns(cJSON *o, const char *key, uint64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u)};

	add_time(o, key, &ts);
}

/* The descriptor limit, the tree fd cache and the last EMFILE/ENFILE. */
static void add_fds(struct mfs_mount *m, cJSON *root, const struct mfs_fd_stats *fs)
{
	cJSON *o = cJSON_AddObjectToObject(root, "fds");

	if (!o)
		return;
	cJSON_AddNumberToObject(o, "limit", (double)fs->nofile);
	cJSON_AddNumberToObject(o, "cache_open", (double)fs->open);
	cJSON_AddNumberToObject(o, "cache_max", (double)fs->max);
	cJSON_AddNumberToObject(o, "exhausted",
	                        (double)__atomic_load_n(&m->ctr.fd_exhausted, __ATOMIC_RELAXED));
	cJSON_AddNumberToObject(o, "negative_cache_entries",
	                        (double)__atomic_load_n(&m->negative_entries, __ATOMIC_RELAXED));
	if (!fs->last_ns)
		return;
	add_time_ns(o, "last_exhausted", fs->last_ns);
	cJSON_AddNumberToObject(o, "seconds_since_exhausted", (double)fs->age_s);
}

/* The tree-build pool (docs/mount.md, "Missing trees"): its bounds and load now. */
static void add_tree_builds(struct mfs_mount *m, cJSON *root)
{
	cJSON *o = cJSON_AddObjectToObject(root, "tree_builds");
	struct mfs_tb_stats ts;

	if (!o)
		return;
	mfs_treebuild_stats(m, &ts);
	cJSON_AddNumberToObject(o, "builders_max", (double)ts.max_threads);
	cJSON_AddNumberToObject(o, "builders", (double)ts.threads);
	cJSON_AddNumberToObject(o, "running", (double)ts.running);
	cJSON_AddNumberToObject(o, "queued", (double)ts.queued);
	cJSON_AddNumberToObject(o, "queue_max", (double)MFS_TB_QUEUE_MAX);
	cJSON_AddNumberToObject(o, "wait_seconds", (double)ts.wait_ms / 1000.0);
}

/* Verified prefetch (docs/mount.md, "Prefetch"): read-ahead, and --prefetch's progress. */
static void add_prefetch(struct mfs_mount *m, cJSON *root)
{
	static const char *const states[] = {"pending", "running", "done"};
	cJSON *o = cJSON_AddObjectToObject(root, "prefetch"), *a;
	int st = __atomic_load_n(&m->prefetch_state, __ATOMIC_ACQUIRE);

	if (!o)
		return;
	cJSON_AddBoolToObject(o, "readahead", m->pf != NULL);
	a = cJSON_AddArrayToObject(o, "patterns");
	for (size_t i = 0; a && i < m->n_prefetch; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(m->prefetch[i]));
	cJSON_AddStringToObject(o, "state", m->n_prefetch ? states[st] : "off");
	cJSON_AddNumberToObject(o, "files", (double)m->ctr.prefetch_files);
	cJSON_AddNumberToObject(o, "files_failed", (double)m->ctr.prefetch_files_failed);
	cJSON_AddNumberToObject(o, "bytes", (double)m->ctr.prefetch_file_bytes);
}

/*
 * The health verdict `modelfs status` exits with (docs/operations.md): a
 * required model refused, or file descriptors exhausted within the last
 * MFS_FD_ALARM_S seconds. @n_required: refused models a policy requires.
 */
static void add_health(cJSON *root, size_t n_required, const struct mfs_fd_stats *fs)
{
	cJSON *o = cJSON_AddObjectToObject(root, "health"), *problems;
	char line[256];

	if (!o)
		return;
	cJSON_AddBoolToObject(o, "healthy", !n_required && !fs->recent);
	problems = cJSON_AddArrayToObject(o, "problems");
	if (!problems)
		return;
	if (n_required) {
		snprintf(line, sizeof(line), "%zu required model%s refused", n_required,
		         n_required == 1 ? "" : "s");
		cJSON_AddItemToArray(problems, cJSON_CreateString(line));
	}
	if (fs->recent) {
		snprintf(line, sizeof(line),
		         "file descriptors exhausted %" PRIu64
		         " s ago (EMFILE/ENFILE, limit %" PRIu64 "): opens failed with EIO",
		         fs->age_s, fs->nofile);
		cJSON_AddItemToArray(problems, cJSON_CreateString(line));
	}
}

/* Refused models a policy rule marks required, from the snapshot's list. */
static size_t required_refused(const cJSON *refused)
{
	const cJSON *r;
	size_t n = 0;

	cJSON_ArrayForEach(r, refused)
	{
		n += cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "required"));
	}
	return n;
}

char *mfs_status_json(struct mfs_mount *m, size_t *len)
{
	cJSON *root = cJSON_CreateObject(), *exposed, *refused;
	struct mfs_fd_stats fs;
	char *text = NULL;

	if (!root)
		return NULL;
	cJSON_AddStringToObject(root, "version", MV_VERSION);
	cJSON_AddStringToObject(root, "store", m->store);
	cJSON_AddStringToObject(root, "mountpoint", m->mountpoint);
	cJSON_AddStringToObject(root, "cache_dir", m->cache_dir);
	cJSON_AddStringToObject(root, "pickle_policy", mfs_pickle_policy_name(m->pickle));
	cJSON_AddStringToObject(root, "name_check", mv_name_check_str(m->name_check));
	if (m->policy_path)
		cJSON_AddStringToObject(root, "policy", m->policy_path);
	add_time(root, "started", &m->started);
	exposed = cJSON_AddArrayToObject(root, "models");
	refused = cJSON_AddArrayToObject(root, "refused");
	if (!exposed || !refused)
		goto out;
	pthread_rwlock_rdlock(&m->ns_lock);
	for (size_t i = 0; i < m->n_models; i++)
		add_model(m, m->models[i], exposed, refused);
	add_reload(m, root);
	pthread_rwlock_unlock(&m->ns_lock);
	cJSON_AddItemToObject(root, "counters", counters(m));
	mfs_fd_stats(m, &fs);
	add_fds(m, root, &fs);
	add_tree_builds(m, root);
	add_prefetch(m, root);
	add_health(root, required_refused(refused), &fs);
	text = cJSON_Print(root);
	if (text) {
		size_t l = strlen(text);
		char *t = realloc(text, l + 2);

		if (t) {
			text = t;
			text[l++] = '\n';
			text[l] = '\0';
		}
		*len = l;
	}
out:
	cJSON_Delete(root);
	return text;
}
