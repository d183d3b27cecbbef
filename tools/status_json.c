// SPDX-License-Identifier: Apache-2.0
/*
 * status_json.c - what `modelfs status` makes of MOUNTPOINT/.modelfs/status.json:
 * whether the text is a status file, how many refused models the policy
 * requires and the daemon's own verdict (the health decision), and the
 * human summary. The text comes
 * from whatever answers at the mountpoint, so it is untrusted; this file
 * holds no I/O of its own so that tests/fuzz/fuzz_status.c can link it.
 */
#include <stdbool.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "cli.h"

/* A string member, or @def. */
static const char *str_of(const cJSON *o, const char *key, const char *def)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) ? v->valuestring : def;
}

/* A number member as an integer, or 0. */
static double num_of(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* Refused models the policy requires: each makes the mount unhealthy. */
static size_t count_required(const cJSON *refused)
{
	const cJSON *r;
	size_t n = 0;

	cJSON_ArrayForEach(r, refused)
	{
		n += cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "required"));
	}
	return n;
}

/**
 * cli_status_parse() - parse status.json text and decide health
 * @text, @len: in: the file's bytes (untrusted)
 * @n_required: out: refused models a policy rule marks "required"
 *
 * Return: the parsed object (free with cJSON_Delete), or NULL when the text
 * is not a status file (not a JSON object with a "models" array).
 */
cJSON *cli_status_parse(const char *text, size_t len, size_t *n_required)
{
	cJSON *st = cJSON_ParseWithLength(text, len);

	*n_required = 0;
	if (!cJSON_IsObject(st) || !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(st, "models"))) {
		cJSON_Delete(st);
		return NULL;
	}
	*n_required = count_required(cJSON_GetObjectItemCaseSensitive(st, "refused"));
	return st;
}

/**
 * cli_status_problems() - the daemon's own health verdict
 * @st: in: from cli_status_parse()
 *
 * status.json's "health" object (fs/mount/status.c) says unhealthy for a required
 * model refused and for file descriptors exhausted within the last 60 s.
 * Return: its non-empty "problems" array when it says unhealthy, else NULL
 * (healthy, or a daemon too old to give a verdict).
 */
const cJSON *cli_status_problems(const cJSON *st)
{
	const cJSON *h = cJSON_GetObjectItemCaseSensitive(st, "health");
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(h, "problems");

	if (!cJSON_IsObject(h) || cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(h, "healthy")))
		return NULL;
	return cJSON_IsArray(p) && cJSON_GetArraySize(p) > 0 ? p : NULL;
}

/* The "health:" line: the daemon's problems, else the required models refused. */
static void print_health(FILE *f, const cJSON *st, size_t n_required)
{
	const cJSON *problems = cli_status_problems(st), *it;
	const char *sep = "";

	if (!problems) {
		if (n_required)
			fprintf(f, "health:    UNHEALTHY: %zu required model%s refused\n",
			        n_required, n_required == 1 ? "" : "s");
		else
			fprintf(f, "health:    ok\n");
		return;
	}
	fprintf(f, "health:    UNHEALTHY: ");
	cJSON_ArrayForEach(it, problems)
	{
		fprintf(f, "%s%s", sep, cJSON_IsString(it) ? it->valuestring : "?");
		sep = "; ";
	}
	fprintf(f, "\n");
}

/**
 * cli_status_print() - the human summary of a parsed status.json
 * @f: in: where to print
 * @mountpoint: in: the mountpoint as the user gave it
 * @st: in: from cli_status_parse()
 * @n_required: in: from cli_status_parse()
 */
void cli_status_print(FILE *f, const char *mountpoint, const cJSON *st, size_t n_required)
{
	const cJSON *models = cJSON_GetObjectItemCaseSensitive(st, "models");
	const cJSON *refused = cJSON_GetObjectItemCaseSensitive(st, "refused");
	const cJSON *ctr = cJSON_GetObjectItemCaseSensitive(st, "counters");
	const cJSON *fds = cJSON_GetObjectItemCaseSensitive(st, "fds");
	const cJSON *it;

	fprintf(f, "mount:     %s (modelfs %s, started %s)\n", mountpoint,
	        str_of(st, "version", "?"), str_of(st, "started", "?"));
	fprintf(f, "store:     %s\n", str_of(st, "store", "?"));
	if (str_of(st, "policy", NULL))
		fprintf(f, "policy:    %s\n", str_of(st, "policy", NULL));
	fprintf(f, "models:    %d exposed, %d refused\n", cJSON_GetArraySize(models),
	        cJSON_GetArraySize(refused));
	cJSON_ArrayForEach(it, models)
	{
		fprintf(f, "  exposed  %s (%.0f files, signer %s)\n", str_of(it, "path", "?"),
		        num_of(it, "files"), str_of(it, "signer", "?"));
	}
	cJSON_ArrayForEach(it, refused)
	{
		bool req = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "required"));

		fprintf(f, "  refused  %s%s: %s\n", str_of(it, "path", "?"),
		        req ? " (required)" : "", str_of(it, "reason", "?"));
	}
	if (cJSON_IsObject(ctr))
		fprintf(
		    f,
		    "reads:     %.0f reads, %.0f bytes served, %.0f verified, %.0f verification "
		    "failures\n",
		    num_of(ctr, "reads"), num_of(ctr, "bytes_served"),
		    num_of(ctr, "bytes_verified"), num_of(ctr, "verify_failures"));
	if (cJSON_IsObject(fds))
		fprintf(
		    f,
		    "fds:       limit %.0f, %.0f of %.0f tree fds cached, exhausted %.0f times\n",
		    num_of(fds, "limit"), num_of(fds, "cache_open"), num_of(fds, "cache_max"),
		    num_of(fds, "exhausted"));
	print_health(f, st, n_required);
}
