// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_status.c - libFuzzer target for `modelfs status MNT` on a foreign
 * folder: MNT/.modelfs/status.json is whatever answers at the mountpoint, so
 * its bytes are untrusted. Covers tools/status_json.c, which cmd_status.c
 * calls: cli_status_parse (is it a status file, how many refused models a
 * policy requires), cli_status_problems (the daemon's own "health"
 * verdict; with the former, the exit status 0 or 1) and cli_status_print
 * (the human summary, printed to /dev/null here).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "cli.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *null;
	const cJSON *refused, *problems;
	size_t n_required = 1;
	cJSON *st;

	if (!null && !(null = fopen("/dev/null", "w")))
		abort();
	st = cli_status_parse((const char *)data, size, &n_required);
	if (!st) {
		if (n_required)
			__builtin_trap(); /* not a status file: nothing is required */
		return 0;
	}
	refused = cJSON_GetObjectItemCaseSensitive(st, "refused");
	if (n_required > (size_t)cJSON_GetArraySize(refused))
		__builtin_trap(); /* each required refusal is one entry of "refused" */
	problems = cli_status_problems(st);
	if (problems && (!cJSON_IsArray(problems) || !cJSON_GetArraySize(problems)))
		__builtin_trap(); /* unhealthy means at least one problem to print */
	cli_status_print(null, "/mnt/models", st, n_required);
	cJSON_Delete(st);
	return 0;
}
