/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tap.h - a minimal TAP producer for the C unit tests.
 *
 * Each test file defines test functions and lists them in main() with
 * TAP_RUN(fn). A failing CHECK prints a diagnostic and marks the current test
 * failed; the test goes on so that one run shows every failure.
 */
#ifndef MODELFS_TAP_H
#define MODELFS_TAP_H

#include <stdio.h>
#include <string.h>

static int tap_count, tap_failed_total, tap_cur_failed;

#define CHECK(cond)                                                                        \
	do {                                                                               \
		if (!(cond)) {                                                             \
			printf("# %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			tap_cur_failed = 1;                                                \
		}                                                                          \
	} while (0)

#define CHECK_EQ_INT(a, b)                                                                  \
	do {                                                                                \
		long long _a = (long long)(a), _b = (long long)(b);                         \
		if (_a != _b) {                                                             \
			printf("# %s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, \
			       #a, _a, #b, _b);                                             \
			tap_cur_failed = 1;                                                 \
		}                                                                           \
	} while (0)

#define CHECK_STR(a, b)                                                                      \
	do {                                                                                 \
		const char *_a = (a), *_b = (b);                                             \
		if (!_a || !_b || strcmp(_a, _b) != 0) {                                     \
			printf("# %s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__, _a ? _a : "(null)", \
			       _b ? _b : "(null)");                                          \
			tap_cur_failed = 1;                                                  \
		}                                                                            \
	} while (0)

#define TAP_RUN(fn)                                                           \
	do {                                                                  \
		tap_cur_failed = 0;                                           \
		fn();                                                         \
		tap_count++;                                                  \
		printf("%sok %d - %s\n", tap_cur_failed ? "not " : "", tap_count, #fn); \
		tap_failed_total += tap_cur_failed;                           \
		fflush(stdout);                                               \
	} while (0)

#define TAP_DONE()                              \
	do {                                    \
		printf("1..%d\n", tap_count);   \
		return tap_failed_total ? 1 : 0; \
	} while (0)

#endif /* MODELFS_TAP_H */
