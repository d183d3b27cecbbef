/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fsmount.h - the public interface of libfs, the mount: the FUSE daemon that
 * serves a store of signed models (mfs_mount_main), its options and the
 * pickle policies.
 */
#ifndef MODELFS_FSMOUNT_H
#define MODELFS_FSMOUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "verity.h"
#include "fsformat.h"
#include "fstranscode.h"

#ifdef __cplusplus
extern "C" {
#endif

/* (store scan, inodes, verified reads, FUSE ops, xattrs, status, daemon) */

/* What the mount does with pickle-family files (see docs/mount.md). */
enum mfs_pickle_policy {
	MFS_PICKLE_HIDE = 0,  /* absent from listings and lookups */
	MFS_PICKLE_SHOW,      /* present, user.modelfs.format=pickle */
	MFS_PICKLE_DENY,      /* a model holding one is refused as a whole */
	MFS_PICKLE_TRANSCODE, /* default: safe checkpoints appear as safetensors, others hidden */
};

/* Options of `modelfs mount`; cmd_mount.c fills them, mfs_mount_main obeys. */
struct mfs_mount_opts {
	const char *store;             /* directory of models, or oci://REGISTRY/REPO:TAG */
	const char *mountpoint;        /* empty directory */
	const char *const *trust_keys; /* public key files (PEM) */
	size_t n_trust_keys;
	const char *const *trust_cas; /* CA certificate files (PEM) */
	size_t n_trust_cas;
	/* keyless signers: identity and OIDC issuer, paired by index */
	const char *const *trust_identities;
	const char *const *trust_issuers;
	size_t n_trust_identities;
	const char *trust_root; /* Sigstore trusted root file, or NULL (the default) */
	enum mfs_pickle_policy pickle;
	const char *cache_dir;     /* where built trees go; NULL: default */
	size_t hblock_cache_bytes; /* hash-block cache bound; 0: default */
	size_t frame_cache_bytes;  /* packed files' frame cache bound; 0: default */
	unsigned threads;          /* FUSE workers; 0: number of CPUs */
	bool foreground;           /* -f: no daemon, log to stderr */
	bool nonempty;             /* allow a non-empty mountpoint */
	bool debug;                /* FUSE debug output (implies foreground) */
	const char *fuse_opts;     /* extra comma-separated FUSE mount options, or NULL */
	const char *policy;        /* trust policy file (docs/policy.md), or NULL */
	const char *ready_file;    /* written once the mount answers, removed at unmount */
	/* --prefetch PATTERN: files read (verified) through the mount once it
	 * answers; with ready_after_prefetch the ready file waits for them */
	const char *const *prefetch;
	size_t n_prefetch;
	bool ready_after_prefetch;
	bool readahead; /* --verified-readahead: verified read-ahead (prefetch.c); off by default */
	bool watch;     /* rescan the store when inotify sees a change (oci://: polls) */
	unsigned
	    watch_interval_s;     /* --watch-interval: seconds between polls of a registry; 0: 60 */
	unsigned unmount_timeout; /* seconds from SIGTERM/SIGINT to exit; 0: default (10) */
	/* how a model's signed name must fit its store path; 0: suffix */
	enum mv_name_check name_check;
	/* Owners and modes shown (docs/mount.md, "Owners and permissions"): */
	bool set_uid; /* -o uid=: every node shows owner @uid, not the store's */
	uid_t uid;
	bool set_gid; /* -o gid=: every node shows group @gid */
	gid_t gid;
	unsigned umask;   /* -o umask=: bits cleared from every mode shown */
	bool control_all; /* --control-access=all: .modelfs readable by all, not the owner only */
	/* Missing trees (docs/mount.md, "Missing trees"): */
	unsigned tree_builders;      /* builder threads, 1..16; 0: the default (2) */
	unsigned tree_build_wait_ms; /* an open's wait for a build, ms; 0: the default (30 s) */
	/* --keep-backing-cache: never drop served bytes from the store's cache */
	bool keep_backing_cache;
	/* An oci:// store (docs/remote.md, "Lazy mount"): */
	const char *ca_cert; /* --ca-cert: PEM CA file for the registry; NULL: system CAs */
	bool insecure;       /* --insecure: plain http to any host */
	/* --remote-cache-size: bound of the remote block cache; 0: default (10 GiB) */
	uint64_t remote_cache_bytes;
	bool no_remote_cache; /* --remote-cache-size 0 */
};

/* Parses "hide" / "show" / "deny" / "transcode"; -EINVAL otherwise (pickle_policy.c). */
int mfs_pickle_policy_parse(const char *s, enum mfs_pickle_policy *out);
/* The name of @p, as mfs_pickle_policy_parse() reads it. */
const char *mfs_pickle_policy_name(enum mfs_pickle_policy p);

/**
 * mfs_mount_main() - check the options, scan the store, mount and serve
 * @o: in: options
 * @err: out: the one-line reason when setup fails
 *
 * Returns after the file system is unmounted (fusermount3 -u, SIGTERM,
 * SIGINT). Unless @o->foreground, the process daemonizes once the mount is
 * up, so the caller's parent sees success only when the mount is usable.
 * Return: 0 after a clean unmount, or a negative errno with @err set when
 * the mount could not be set up.
 */
int mfs_mount_main(const struct mfs_mount_opts *o, struct mv_err *err);

#ifdef __cplusplus
}
#endif
#endif /* MODELFS_FSMOUNT_H */
