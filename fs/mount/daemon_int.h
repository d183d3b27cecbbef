/* SPDX-License-Identifier: Apache-2.0 */
/*
 * daemon_int.h - what the daemon's files share, and nothing else uses:
 *
 *   daemon.c    mfs_mount_main(): options, start-up, the FUSE loop, the mount's lifetime
 *   session.c   beside the FUSE session: stop signals, the ready file, the
 *               watchdog, readahead, unmounting
 *   cachedir.c  finding, creating and checking the cache folder
 *
 * Included only by those three files. Each function's full comment is at
 * its definition.
 */
#ifndef MODELFS_DAEMON_INT_H
#define MODELFS_DAEMON_INT_H

#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mount_int.h"

struct fuse_session;

/*
 * What the daemon keeps beside the mount (session.c): the ready file, the
 * stop signal and the watchdog that bounds the time from SIGTERM to exit.
 */
struct mfs_daemon {
	struct mfs_mount *m;
	struct fuse_session *se;
	char *ready_path;   /* absolute, or NULL */
	bool ready_written; /* atomic */
	unsigned timeout;   /* seconds from the stop signal to exit */
	uint64_t dev;       /* st_dev of the mount once it answered, 0 before (atomic) */
	pthread_t main_thread;
	sem_t stop; /* posted by the signal handler, and by main when done */
	volatile sig_atomic_t signo;
	pthread_mutex_t lock;      /* guards done */
	pthread_cond_t cond;       /* signalled when done is set */
	bool done;                 /* main finished unmounting */
	bool serving;              /* the main thread is in the FUSE loop (atomic) */
	bool ready_after_prefetch; /* the ready file waits for --prefetch */
};

/* ---- cachedir.c ---- */

/* Opens and checks CACHE, CACHE/trees, CACHE/transcoded and the key. 0 or -errno (@err set). */
int mfs_cache_dir_open(struct mfs_mount *m, const struct mfs_mount_opts *o, struct mv_err *err);

/* ---- session.c ---- */

/* Lazily detaches a stale mount at @mp (its daemon died). 0 or -errno (@err set). */
int mfs_detach_stale(const char *mp, struct mv_err *err);
/* Sets up @d for mount @m: timeout, stop semaphore, ready file path. 0 or -errno. */
int mfs_daemon_init(struct mfs_daemon *d, struct mfs_mount *m, const struct mfs_mount_opts *o,
                    struct mv_err *err);
/* Replaces libfuse's SIGTERM and SIGINT handlers by one that stops @d. */
void mfs_catch_stop_signals(struct mfs_daemon *d);
/* Makes the stop signal handler do nothing from now on (the daemon is done). */
void mfs_release_stop_signals(void);
/* Thread: once the mount answers, records its device and writes the ready file. */
void *mfs_ready_thread(void *arg);
/* Thread: after a stop signal, bounds the time to exit by d->timeout. */
void *mfs_watchdog_thread(void *arg);
/* Removes the ready file if this daemon wrote it. */
void mfs_ready_file_remove(struct mfs_daemon *d);
/* Raises the new mount's readahead; @line gets the log line to log later. */
void mfs_raise_readahead(const struct mfs_mount *m, char *line, size_t line_len);
/* Unmounts after the loop stopped: plainly, else (busy) lazily, with a log line. */
void mfs_daemon_unmount(struct mfs_daemon *d);
/* Tells the watchdog the daemon is done and joins it (@t). */
void mfs_stop_watchdog(struct mfs_daemon *d, pthread_t t);

#endif /* MODELFS_DAEMON_INT_H */
