// SPDX-License-Identifier: Apache-2.0
/*
 * daemon.c - mfs_mount_main(): checks the options, scans the store, mounts,
 * daemonizes and runs the multi-threaded FUSE loop until unmounted.
 *
 * Everything that can fail for a reason the user must fix (missing or
 * non-empty mountpoint, no /dev/fuse, bad store, unreadable trust files, an
 * untrusted cache folder: cachedir.c) is checked before mounting, while
 * errors still reach the terminal.
 *
 * What runs beside the FUSE loop (stop signals, the ready file, the
 * watchdog, unmounting) is session.c's; this file runs the steps in order
 * and owns the struct mfs_mount from its creation to its freeing.
 */
#define FUSE_USE_VERSION 312

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fuse_lowlevel.h>
#include <openssl/crypto.h>

#include "daemon_int.h"

/* The mountpoint must be an existing, empty folder (unless nonempty). */
static int check_mountpoint(const struct mfs_mount_opts *o, struct mv_err *err)
{
	struct dirent *de;
	struct stat st;
	DIR *d;
	int ret = 0;

	if (stat(o->mountpoint, &st) != 0)
		return mv_err_set(err, -errno, "%s: mountpoint: %s", o->mountpoint,
		                  strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return mv_err_set(err, -ENOTDIR, "%s: mountpoint is not a directory",
		                  o->mountpoint);
	if (o->nonempty)
		return 0;
	d = opendir(o->mountpoint);
	if (!d)
		return mv_err_set(err, -errno, "%s: mountpoint: %s", o->mountpoint,
		                  strerror(errno));
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			ret = mv_err_set(err, -ENOTEMPTY,
			                 "%s: mountpoint is not empty (use -o nonempty to mount "
			                 "over it)",
			                 o->mountpoint);
			break;
		}
	}
	closedir(d);
	return ret;
}

static int load_trust(struct mfs_mount *m, const struct mfs_mount_opts *o, struct mv_err *err)
{
	/* Required: a mount with no trust could verify nothing. */
	const struct mv_trust_inputs in = {.key_files = o->trust_keys,
	                                   .n_key_files = o->n_trust_keys,
	                                   .ca_files = o->trust_cas,
	                                   .n_ca_files = o->n_trust_cas,
	                                   .identities = o->trust_identities,
	                                   .issuers = o->trust_issuers,
	                                   .n_identities = o->n_trust_identities,
	                                   .sigstore_root = o->trust_root,
	                                   .who = "mount",
	                                   .required = true};

	return mv_trust_load(&in, &m->trust, err);
}

/*
 * Decompressed frames (1 MiB) and reply buffers are allocated and freed at a
 * high rate. glibc serves blocks that large with mmap and gives them back
 * with munmap, so every reuse pays a page fault per 4 KiB: 21% of the
 * daemon's time on packed reads. Keeping them in the heap measured 17% less
 * CPU and 17% more throughput. What the heap keeps is bounded by the peak
 * the caches' own bounds allow, plus the trim threshold.
 *
 * One arena: model versions are built by the reload thread and freed by
 * whichever thread drops their last reference, and with glibc's default of
 * one arena per thread the freed memory was scattered over several heaps
 * that never shrank. 1,000 replacements of a 2,000-file model grew RSS by
 * 10% with two arenas and by 4.7% with one (600 replacements); threads
 * still allocate small blocks from their own caches (tcache) without the
 * arena lock, and the read path allocates nothing per request.
 */
static void tune_malloc(void)
{
	mallopt(M_MMAP_THRESHOLD, 4 << 20);
	mallopt(M_TRIM_THRESHOLD, 16 << 20);
	mallopt(M_ARENA_MAX, 1);
}

/* Every model keeps a folder open, every loaded tree a file: lift the limit. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* The local folder @o->store as the store: m->bstore, m->store_fd, m->store. */
static int open_local_store(struct mfs_mount *m, const struct mfs_mount_opts *o, struct mv_err *err)
{
	m->bstore.ops = &mfs_bstore_local;
	m->store_fd = open(o->store, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (m->store_fd < 0)
		return mv_err_set(err, -errno, "%s: store: %s", o->store,
		                  errno == ENOTDIR ? "not a directory" : strerror(errno));
	m->store = realpath(o->store, NULL);
	if (!m->store)
		return mv_err_set(err, -errno, "%s: store: %s", o->store, strerror(errno));
	return 0;
}

/* Checks the options and scans the store; nothing is mounted yet. */
static int prepare(struct mfs_mount *m, const struct mfs_mount_opts *o, struct mv_err *err)
{
	int ret;

	if (!o->store || !o->mountpoint)
		return mv_err_set(err, -EINVAL, "mount: STORE and MOUNTPOINT are required");
	ret = load_trust(m, o, err);
	if (ret)
		return ret;
	if (o->policy) {
		/* Loaded before the scan: every model is checked against it. */
		ret = mv_policy_load(o->policy, &m->policy, err);
		if (ret)
			return ret;
		/* Absolute in the status file: the daemon's working folder is "/". */
		m->policy_path = realpath(o->policy, NULL);
		if (!m->policy_path)
			return mv_err_set(err, -ENOMEM, "mount: out of memory");
	}
	m->bstore.keep_cache = o->keep_backing_cache;
	m->bstore.remote_cache_bytes = o->no_remote_cache ? 0 : o->remote_cache_bytes ?: 10ull << 30;
	m->bstore.poll_s = o->watch_interval_s;
	/* A registry is set up below, once the cache folder is open: it keeps signatures and trees.
	 */
	if (!mfs_bstore_is_oci(o->store)) {
		ret = open_local_store(m, o, err);
		if (ret)
			return ret;
	}
	ret = mfs_detach_stale(o->mountpoint, err);
	if (!ret)
		ret = check_mountpoint(o, err);
	if (ret)
		return ret;
	m->mountpoint = realpath(o->mountpoint, NULL);
	if (!m->mountpoint)
		return mv_err_set(err, -errno, "%s: %s", o->mountpoint, strerror(errno));
	if (access("/dev/fuse", R_OK | W_OK) != 0)
		return mv_err_set(err, -errno, "/dev/fuse: %s (is the fuse module loaded?)",
		                  strerror(errno));
	ret = mfs_cache_dir_open(m, o, err);
	if (ret)
		return ret;
	if (mfs_bstore_is_oci(o->store)) {
		ret = mfs_bstore_oci_setup(m, o->store, o->ca_cert, o->insecure, err);
		if (ret)
			return ret;
	}
	ret = mc_hblock_cache_new(o->hblock_cache_bytes, &m->hcache);
	if (!ret)
		ret = mc_frame_cache_new(o->frame_cache_bytes, &m->fcache);
	if (ret)
		return mv_err_set(err, ret, "mount: out of memory");
	raise_nofile();
	tune_malloc();
	ret = mfs_store_scan(m, err);
	malloc_trim(0); /* give back the signature parse's peak (docs/performance.md) */
	return ret;
}

/* FUSE arguments: the user's -o options first, so that ours (ro) win. */
static int build_args(const struct mfs_mount_opts *o, struct fuse_args *args)
{
	char *opts = NULL;
	int ret;

	ret = asprintf(&opts,
	               "%s%sro,default_permissions,fsname=modelfs,subtype=modelfs,"
	               "max_read=%u",
	               o->fuse_opts ? o->fuse_opts : "", o->fuse_opts && *o->fuse_opts ? "," : "",
	               MFS_MAX_READ);
	if (ret < 0)
		return -ENOMEM;
	if (fuse_opt_add_arg(args, "modelfs") || fuse_opt_add_arg(args, "-o") ||
	    fuse_opt_add_arg(args, opts) || (o->debug && fuse_opt_add_arg(args, "-d")))
		ret = -ENOMEM;
	else
		ret = 0;
	free(opts);
	return ret;
}

static unsigned worker_count(const struct mfs_mount_opts *o)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (o->threads)
		return o->threads;
	return n > 0 ? (unsigned)n : 2;
}

/* Runs the loop with workers = cores; idle workers are never torn down. */
static int serve(struct fuse_session *se, const struct mfs_mount_opts *o)
{
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	unsigned workers = worker_count(o);
	int ret;

	if (!cfg)
		return -ENOMEM;
	fuse_loop_cfg_set_max_threads(cfg, workers);
	fuse_loop_cfg_set_idle_threads(cfg, workers);
	fuse_loop_cfg_set_clone_fd(cfg, 0);
	mfs_log(LOG_INFO, "serving workers=%u", workers);
	ret = fuse_session_loop_mt(se, cfg);
	fuse_loop_cfg_destroy(cfg);
	return ret;
}

static void mount_free(struct mfs_mount *m)
{
	/* Builders first (if mfs_mount_main did not): a build uses its node and the cache fd. */
	mfs_treebuild_stop(m);
	mfs_ops_cleanup(m);
	pthread_mutex_destroy(&m->fh_lock);
	pthread_rwlock_destroy(&m->ns_lock);
	mfs_file_trees_free(m); /* packed copies first: they drop their frames */
	mfs_store_free(m);
	pthread_mutex_destroy(&m->node_lock);
	mc_frame_cache_free(m->fcache);
	mc_hblock_cache_free(m->hcache);
	mv_trust_free(m->trust);
	mv_policy_free(m->policy);
	free(m->policy_path);
	if (m->store_fd >= 0 && m->bstore.ops)
		m->bstore.ops->close(&m->bstore, m->store_fd);
	if (m->bstore.ops && m->bstore.ops->fini)
		m->bstore.ops->fini(&m->bstore);
	if (m->cache_fd > 0)
		close(m->cache_fd);
	if (m->cache_base_fd > 0)
		close(m->cache_base_fd);
	if (m->tx_fd > 0)
		close(m->tx_fd);
	OPENSSL_cleanse(m->tx_key, sizeof(m->tx_key));
	free(m->conn_opts);
	free(m->store);
	free(m->mountpoint);
	free(m->cache_dir);
	free(m->cache_base);
	free(m->tx_dir);
	free(m);
}

/* A mount with nothing loaded yet; NULL on ENOMEM. */
static struct mfs_mount *mount_new(const struct mfs_mount_opts *o)
{
	struct mfs_mount *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->store_fd = m->cache_fd = m->cache_base_fd = m->tx_fd = -1;
	pthread_mutex_init(&m->fh_lock, NULL);
	pthread_mutex_init(&m->node_lock, NULL);
	pthread_rwlock_init(&m->ns_lock, NULL);
	m->pickle = o->pickle;
	m->name_check = o->name_check;
	m->prefetch = o->prefetch;
	m->n_prefetch = o->n_prefetch;
	m->uid = getuid();
	m->gid = getgid();
	m->map_uid = o->set_uid;
	m->shown_uid = o->uid;
	m->map_gid = o->set_gid;
	m->shown_gid = o->gid;
	m->umask = o->umask & 0777;
	m->control_all = o->control_all;
	mfs_treebuild_init(m, o->tree_builders, o->tree_build_wait_ms);
	clock_gettime(CLOCK_REALTIME, &m->started);
	return m;
}

int mfs_mount_main(const struct mfs_mount_opts *o, struct mv_err *err)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct mfs_daemon d = {0};
	struct mfs_mount *m;
	bool mounted = false, handlers = false, ready = false, reload = false, watchdog = false;
	pthread_t ready_t, watchdog_t;
	char ra_line[256] = "readahead result=\"not raised\"";
	int ret;

	m = mount_new(o);
	if (!m)
		return mv_err_set(err, -ENOMEM, "mount: out of memory");
	ret = mfs_daemon_init(&d, m, o, err);
	if (ret)
		goto out;
	ret = prepare(m, o, err);
	if (ret)
		goto out;
	ret = build_args(o, &args);
	if (ret) {
		mv_err_set(err, ret, "mount: out of memory");
		goto out;
	}
	m->conn_opts = fuse_parse_conn_info_opts(&args);
	d.se = fuse_session_new(&args, &mfs_ll_ops, sizeof(mfs_ll_ops), m);
	if (!d.se) {
		ret = mv_err_set(err, -EINVAL, "mount: invalid FUSE options (see above)");
		goto out;
	}
	if (fuse_set_signal_handlers(d.se) != 0) {
		ret = mv_err_set(err, -EIO, "mount: cannot set signal handlers");
		goto out;
	}
	handlers = true;
	if (fuse_session_mount(d.se, m->mountpoint) != 0) {
		ret = mv_err_set(err, -EIO, "%s: mount failed (see above)", m->mountpoint);
		goto out;
	}
	mounted = true;
	mfs_raise_readahead(m, ra_line, sizeof(ra_line));
	if (fuse_daemonize(o->foreground || o->debug) != 0) {
		ret = mv_err_set(err, -EIO, "mount: cannot daemonize");
		goto out;
	}
	if (!o->foreground && !o->debug)
		mfs_log_use_syslog();
	mfs_log(LOG_INFO, "%s", ra_line);
	mfs_log(LOG_INFO, "mounted store=%s mountpoint=%s models=%zu cache_dir=%s", m->store,
	        m->mountpoint, m->n_models, m->cache_dir);
	/* Threads start after daemonizing: fork() keeps only the calling thread. */
	d.main_thread = pthread_self();
	watchdog = mfs_start_thread(&watchdog_t, mfs_watchdog_thread, &d, "watchdog");
	if (watchdog)
		mfs_catch_stop_signals(&d);
	ready = mfs_start_thread(&ready_t, mfs_ready_thread, &d, "ready");
	ret = mfs_reload_start(m, d.se, o->watch);
	if (ret) {
		mv_err_set(err, ret, "mount: cannot arm live reload: %s", strerror(-ret));
		goto out;
	}
	reload = true;
	if (o->readahead && mfs_prefetch_start(m, d.se))
		mfs_log(LOG_WARNING, "prefetch-off reason=\"cannot start its threads\"");
	__atomic_store_n(&d.serving, true, __ATOMIC_RELEASE);
	ret = serve(d.se, o);
	__atomic_store_n(&d.serving, false, __ATOMIC_RELEASE);
	/* A signal ends the loop with a positive value: a clean unmount. */
	ret = ret < 0 ? ret : 0;
	if (ret)
		mv_err_set(err, ret, "mount: FUSE loop failed: %s", strerror(-ret));
out:
	mfs_ready_file_remove(&d);
	if (reload)
		mfs_reload_stop(m);
	if (mounted)
		mfs_daemon_unmount(&d);
	if (ready)
		pthread_join(ready_t, NULL);
	mfs_prefetch_stop(m);      /* jobs hold versions: before the store goes */
	mfs_ready_file_remove(&d); /* in case it was written while stopping */
	/*
	 * Tree builders are cancelled and joined while the watchdog still runs:
	 * one stuck in a read of a hung store is then bounded by the unmount
	 * timeout after a stop signal, as a stuck FUSE worker is.
	 */
	mfs_treebuild_stop(m);
	if (watchdog)
		mfs_stop_watchdog(&d, watchdog_t);
	mfs_release_stop_signals();
	if (handlers)
		fuse_remove_signal_handlers(d.se);
	if (d.se)
		fuse_session_destroy(d.se);
	fuse_opt_free_args(&args);
	mount_free(m);
	free(d.ready_path);
	return ret;
}
