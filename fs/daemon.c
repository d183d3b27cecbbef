// SPDX-License-Identifier: Apache-2.0
/*
 * daemon.c - mfs_mount_main(): checks the options, scans the store, mounts,
 * daemonizes and runs the multi-threaded FUSE loop until unmounted.
 *
 * Everything that can fail for a reason the user must fix (missing or
 * non-empty mountpoint, no /dev/fuse, bad store, unreadable trust files) is
 * checked before mounting, while errors still reach the terminal.
 */
#define FUSE_USE_VERSION 312

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

#include "mount_int.h"

#define BDI_READ_AHEAD_KB 4096 /* +45% cold sequential reads, see docs/performance.md */
#define DEFAULT_CACHE_DIR "/var/cache/modelfs"
#define FUSE_SUPER_MAGIC  0x65735546

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

int mfs_pickle_policy_parse(const char *s, enum mfs_pickle_policy *out)
{
	if (!s)
		return -EINVAL;
	if (strcmp(s, "hide") == 0)
		*out = MFS_PICKLE_HIDE;
	else if (strcmp(s, "show") == 0)
		*out = MFS_PICKLE_SHOW;
	else if (strcmp(s, "deny") == 0)
		*out = MFS_PICKLE_DENY;
	else if (strcmp(s, "transcode") == 0)
		*out = MFS_PICKLE_TRANSCODE;
	else
		return -EINVAL;
	return 0;
}

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
	int ret;

	if (o->n_trust_keys + o->n_trust_cas == 0)
		return mv_err_set(
		    err, -EINVAL,
		    "mount: no --trust or --trust-ca given: nothing could be verified");
	m->trust = mv_trust_new();
	if (!m->trust)
		return mv_err_set(err, -ENOMEM, "mount: out of memory");
	for (size_t i = 0; i < o->n_trust_keys; i++) {
		ret = mv_trust_add_key_file(m->trust, o->trust_keys[i], err);
		if (ret)
			return mv_err_set(err, ret, "%s: cannot load trusted key: %s",
			                  o->trust_keys[i], strerror(-ret));
	}
	for (size_t i = 0; i < o->n_trust_cas; i++) {
		ret = mv_trust_add_ca_file(m->trust, o->trust_cas[i], err);
		if (ret)
			return mv_err_set(err, ret, "%s: cannot load trusted CA: %s",
			                  o->trust_cas[i], strerror(-ret));
	}
	return 0;
}

/* mkdir -p with mode 0700 for what it creates. */
static int mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/*
 * The folder for trees the mount builds: --cache-dir, else /var/cache/modelfs
 * (root) or a per-user folder under $XDG_CACHE_HOME, $HOME/.cache or /tmp.
 * Trees there are untrusted like any other: every block is verified.
 */
static int open_cache_dir(struct mfs_mount *m, const struct mfs_mount_opts *o, struct mv_err *err)
{
	char *base = NULL, *trees = NULL;
	const char *env;
	int ret;

	if (o->cache_dir)
		ret = asprintf(&base, "%s", o->cache_dir);
	else if (geteuid() == 0)
		ret = asprintf(&base, "%s", DEFAULT_CACHE_DIR);
	else if ((env = getenv("XDG_CACHE_HOME")) && *env == '/')
		ret = asprintf(&base, "%s/modelfs", env);
	else if ((env = getenv("HOME")) && *env == '/')
		ret = asprintf(&base, "%s/.cache/modelfs", env);
	else
		ret = asprintf(&base, "/tmp/modelfs-%u", (unsigned)geteuid());
	if (ret < 0 || asprintf(&trees, "%s/trees", base) < 0) {
		free(base);
		return mv_err_set(err, -ENOMEM, "mount: out of memory");
	}
	ret = mkdir_p(trees);
	if (ret) {
		mv_err_set(err, ret, "%s: cannot create cache folder: %s", trees, strerror(-ret));
		goto out;
	}
	m->cache_dir = realpath(trees, NULL);
	m->cache_fd = m->cache_dir ? open(m->cache_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	if (m->cache_fd < 0) {
		ret = mv_err_set(err, -errno, "%s: cannot open cache folder: %s", trees,
		                 strerror(errno));
		goto out;
	}
	if (access(m->cache_dir, W_OK) != 0)
		mfs_log(LOG_WARNING,
		        "cache-dir=%s warning=\"not writable: missing trees cannot "
		        "be built\"",
		        m->cache_dir);
out:
	free(base);
	free(trees);
	return ret;
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
	m->store_fd = open(o->store, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (m->store_fd < 0)
		return mv_err_set(err, -errno, "%s: store: %s", o->store,
		                  errno == ENOTDIR ? "not a directory" : strerror(errno));
	m->store = realpath(o->store, NULL);
	if (!m->store)
		return mv_err_set(err, -errno, "%s: store: %s", o->store, strerror(errno));
	ret = check_mountpoint(o, err);
	if (ret)
		return ret;
	m->mountpoint = realpath(o->mountpoint, NULL);
	if (!m->mountpoint)
		return mv_err_set(err, -errno, "%s: %s", o->mountpoint, strerror(errno));
	if (access("/dev/fuse", R_OK | W_OK) != 0)
		return mv_err_set(err, -errno, "/dev/fuse: %s (is the fuse module loaded?)",
		                  strerror(errno));
	ret = open_cache_dir(m, o, err);
	if (ret)
		return ret;
	ret = mc_hblock_cache_new(o->hblock_cache_bytes, &m->hcache);
	if (!ret)
		ret = mc_frame_cache_new(o->frame_cache_bytes, &m->fcache);
	if (ret)
		return mv_err_set(err, ret, "mount: out of memory");
	raise_nofile();
	return mfs_store_scan(m, err);
}

/*
 * Raises the mount's readahead through its bdi. The kernel caps a FUSE
 * mount's readahead at 128 KiB whatever INIT asks; this runs in a thread
 * because stat() of the mountpoint needs the loop to be serving.
 */
static void *bdi_thread(void *arg)
{
	struct mfs_mount *m = arg;
	char path[128], val[16];
	struct statfs sf;
	struct stat st;
	int fd, len;

	if (stat(m->mountpoint, &st) != 0 || statfs(m->mountpoint, &sf) != 0 ||
	    sf.f_type != FUSE_SUPER_MAGIC)
		return NULL; /* unmounted already: do not touch the folder's own disk */
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", major(st.st_dev),
	         minor(st.st_dev));
	len = snprintf(val, sizeof(val), "%d", BDI_READ_AHEAD_KB);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, val, (size_t)len) != len)
		mfs_log(LOG_NOTICE, "readahead bdi=%s result=\"%s\"", path, strerror(errno));
	else
		mfs_log(LOG_INFO, "readahead bdi=%s read_ahead_kb=%d", path, BDI_READ_AHEAD_KB);
	if (fd >= 0)
		close(fd);
	return NULL;
}

/* Starts the readahead thread; returns whether it must be joined. */
static bool start_bdi_thread(struct mfs_mount *m, pthread_t *t)
{
	if (pthread_create(t, NULL, bdi_thread, m) == 0)
		return true;
	mfs_log(LOG_NOTICE, "readahead result=\"no thread\"");
	return false;
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
	mfs_ops_cleanup(m);
	pthread_mutex_destroy(&m->fh_lock);
	pthread_rwlock_destroy(&m->ns_lock);
	mfs_file_trees_free(m); /* packed copies first: they drop their frames */
	mfs_store_free(m);
	mc_frame_cache_free(m->fcache);
	mc_hblock_cache_free(m->hcache);
	mv_trust_free(m->trust);
	mv_policy_free(m->policy);
	free(m->policy_path);
	if (m->store_fd > 0)
		close(m->store_fd);
	if (m->cache_fd > 0)
		close(m->cache_fd);
	free(m->conn_opts);
	free(m->store);
	free(m->mountpoint);
	free(m->cache_dir);
	free(m);
}

int mfs_mount_main(const struct mfs_mount_opts *o, struct mv_err *err)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_session *se = NULL;
	struct mfs_mount *m;
	bool mounted = false, handlers = false, bdi = false, reload = false;
	pthread_t bdi_t;
	int ret;

	m = calloc(1, sizeof(*m));
	if (!m)
		return mv_err_set(err, -ENOMEM, "mount: out of memory");
	m->store_fd = m->cache_fd = -1;
	pthread_mutex_init(&m->fh_lock, NULL);
	pthread_rwlock_init(&m->ns_lock, NULL);
	m->pickle = o->pickle;
	m->uid = getuid();
	m->gid = getgid();
	clock_gettime(CLOCK_REALTIME, &m->started);
	ret = prepare(m, o, err);
	if (ret)
		goto out;
	ret = build_args(o, &args);
	if (ret) {
		mv_err_set(err, ret, "mount: out of memory");
		goto out;
	}
	m->conn_opts = fuse_parse_conn_info_opts(&args);
	se = fuse_session_new(&args, &mfs_ll_ops, sizeof(mfs_ll_ops), m);
	if (!se) {
		ret = mv_err_set(err, -EINVAL, "mount: invalid FUSE options (see above)");
		goto out;
	}
	if (fuse_set_signal_handlers(se) != 0) {
		ret = mv_err_set(err, -EIO, "mount: cannot set signal handlers");
		goto out;
	}
	handlers = true;
	if (fuse_session_mount(se, m->mountpoint) != 0) {
		ret = mv_err_set(err, -EIO, "%s: mount failed (see above)", m->mountpoint);
		goto out;
	}
	mounted = true;
	if (fuse_daemonize(o->foreground || o->debug) != 0) {
		ret = mv_err_set(err, -EIO, "mount: cannot daemonize");
		goto out;
	}
	if (!o->foreground && !o->debug) {
		openlog("modelfs", LOG_PID, LOG_DAEMON);
		log_syslog = true;
	}
	mfs_log(LOG_INFO, "mounted store=%s mountpoint=%s models=%zu cache_dir=%s", m->store,
	        m->mountpoint, m->n_models, m->cache_dir);
	bdi = start_bdi_thread(m, &bdi_t);
	ret = mfs_reload_start(m, se, o->watch);
	if (ret) {
		mv_err_set(err, ret, "mount: cannot arm live reload: %s", strerror(-ret));
		goto out;
	}
	reload = true;
	ret = serve(se, o);
	/* A signal ends the loop with a positive value: a clean unmount. */
	ret = ret < 0 ? ret : 0;
	if (ret)
		mv_err_set(err, ret, "mount: FUSE loop failed: %s", strerror(-ret));
	mfs_log(LOG_INFO, "unmounted mountpoint=%s", m->mountpoint);
out:
	if (reload)
		mfs_reload_stop(m);
	if (mounted)
		fuse_session_unmount(se);
	if (bdi)
		pthread_join(bdi_t, NULL);
	if (handlers)
		fuse_remove_signal_handlers(se);
	if (se)
		fuse_session_destroy(se);
	fuse_opt_free_args(&args);
	mount_free(m);
	return ret;
}
