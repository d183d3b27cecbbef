// SPDX-License-Identifier: Apache-2.0
/*
 * log.c - the mount's log: one line per event, "event key=value ...", to
 * stderr in the foreground and to syslog once daemonized (docs/operations.md).
 *
 * Values that are not plain words are quoted and escaped, so a file name
 * holding a newline or a quote cannot forge a line. Failure lines of a file
 * are rate-limited (mfs_log_ratelimit) so that a reader looping on a bad
 * block cannot flood the log; the counters still count every failure.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "mount_int.h"

static bool log_syslog;

void mfs_log(int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (log_syslog) {
		vsyslog(prio, fmt, ap);
	} else if (prio <= LOG_INFO) {
		char line[2048];

		vsnprintf(line, sizeof(line), fmt, ap);
		fprintf(stderr, "modelfs: %s\n", line);
	}
	va_end(ap);
}

void mfs_log_use_syslog(void)
{
	openlog("modelfs", LOG_PID, LOG_DAEMON);
	log_syslog = true;
}

/* Characters that a bare value may hold: no space, quote, '=' or control. */
static bool plain_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '=';
}

const char *mfs_log_value(const char *s, char *buf, size_t len)
{
	size_t o = 0;
	bool plain = *s != '\0';

	if (len < 8)
		return "\"\"";
	for (const char *p = s; *p && plain; p++)
		plain = plain_char((unsigned char)*p) || (unsigned char)*p >= 0x80;
	if (plain && strlen(s) < len) {
		memcpy(buf, s, strlen(s) + 1); /* callers may use @buf or the result */
		return buf;
	}
	buf[o++] = '"';
	/* Stop with room for the longest escape (\xNN), the quote and the NUL. */
	for (const unsigned char *p = (const unsigned char *)s; *p && o + 6 < len; p++) {
		if (*p == '"' || *p == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)*p;
		} else if (*p == '\n') {
			buf[o++] = '\\';
			buf[o++] = 'n';
		} else if (*p < 0x20 || *p == 0x7f) {
			o += (size_t)snprintf(buf + o, len - o, "\\x%02x", *p);
		} else {
			buf[o++] = (char)*p;
		}
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

bool mfs_log_ratelimit(struct mfs_ratelimit *rl, uint64_t *suppressed)
{
	uint64_t now = mono_ns(), last = __atomic_load_n(&rl->last_ns, __ATOMIC_ACQUIRE);
	const uint64_t interval = (uint64_t)MFS_LOG_INTERVAL_S * 1000000000u;

	/* 0 means "never logged"; the clock is never 0 after boot, but be exact. */
	if (now == 0)
		now = 1;
	if (last == 0 || now - last >= interval) {
		/* One thread wins the slot; the others count as suppressed. */
		if (__atomic_compare_exchange_n(&rl->last_ns, &last, now, false, __ATOMIC_ACQ_REL,
		                                __ATOMIC_ACQUIRE)) {
			*suppressed = __atomic_exchange_n(&rl->suppressed, 0, __ATOMIC_ACQ_REL);
			return true;
		}
	}
	__atomic_fetch_add(&rl->suppressed, 1, __ATOMIC_RELAXED);
	return false;
}
