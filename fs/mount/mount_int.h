/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mount_int.h - internals of the mount, shared by every file of libfs (the
 * "mount" sources of fs/meson.build), each prototype under a banner naming
 * the file that defines it:
 *
 *   daemon.c, session.c, cachedir.c      start-up, the FUSE session, the cache folder
 *   store.c, node.c, rescan.c, backing.c the store, nodes, reload's rescan, opens
 *   vread.c, ftree.c, fdcache.c, zfile.c verified reads, trees, tree fds, packed copies
 *   treebuild.c                          the pool that builds missing trees
 *   txview.c, txcache.c                  --pickle=transcode views and their cache
 *   ops.c, attr.c, xattr.c, prov.c       FUSE operations, owners and modes, provenance
 *   reload.c, status.c, metrics.c        live reload, status.json, metrics.prom
 *   log.c, pickle_policy.c               log lines, the pickle policy names
 *
 * Groups of files also share a header nothing else includes: store_int.h
 * (the store), vread_int.h (the read path), daemon_int.h (the daemon),
 * txview_int.h (transcode). Not a public interface: tools/ only sees
 * mfs_mount_main() in fs.h.
 *
 * The namespace is built at mount time; live reload (reload.c, SIGHUP or
 * --watch) later links, unlinks or swaps whole models in it. What a node is
 * never changes: a new version of a model is a new set of nodes with new
 * inode numbers; only its owner, group and mode may change (attr.c:
 * re-read from the store at each reload, under the node's lock). Only the
 * children of folders outside models (the root, folders synthesized from
 * model paths, the BOM tree) and the model list change, under m->ns_lock.
 *
 * Lifetime. A model version and all its nodes live as long as anything
 * references it (struct mfs_model.refs, store.c): being published in the
 * namespace, the kernel's lookup counts of its inodes (taken by positive
 * lookup and readdirplus replies, dropped by forget), open file handles,
 * listings in progress and background jobs. A version replaced or removed
 * by a reload loses its published reference once the kernel was told to
 * forget its names (reload.c), and is freed with the last reference: its
 * nodes, trees, descriptors and cached hash blocks. So a node pointer is
 * valid while its version is referenced, which every FUSE request on one
 * of its inodes guarantees. Freed inode numbers (node table index + 1) are
 * reused with the next generation number. Folders outside models (model ==
 * NULL) are never freed while mounted.
 * Only five things are decided lazily, each guarded as noted: a file's
 * format, a file's loaded tree, (--pickle=deny) a model's verdict,
 * (--pickle=transcode) whether a view node shows and its cached output, and
 * a model's BOM (prov.c).
 *
 * Two bounds keep a long mount from growing with the store: the
 * descriptors of loaded trees live in a per-mount fd cache of bounded size
 * (struct mfs_fdcache: a tree's fd may be closed while no reader holds the
 * tree, and is reopened with its first checks; fdcache.c), and a file whose
 * tree build found data that does not match the signature is remembered by
 * its identity (struct mfs_file_id) so that it is not hashed again until it
 * changes (the negative cache, ftree.c). Lock order: a node's load_lock, then the fd cache lock,
 * then a node's lock; neither of the last two is held while taking a load_lock. Missing trees are
 * built by a bounded per-mount pool of threads, not by the FUSE worker that needs them
 * (treebuild.c); its lock comes after a node's load_lock and is held while taking no other.
 */
#ifndef MODELFS_MOUNT_INT_H
#define MODELFS_MOUNT_INT_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <syslog.h>
#include <time.h>

#include "bstore.h"
#include "cache.h"
#include "fsmount.h"
#include "verity.h"

#define MFS_ROOT_INO     1
#define MFS_CTL_INO      2 /* MOUNT/.modelfs */
#define MFS_STATUS_INO   3 /* MOUNT/.modelfs/status.json */
#define MFS_CTL_NAME     ".modelfs"
#define MFS_STATUS_NAME  "status.json"
#define MFS_METRICS_INO  4 /* MOUNT/.modelfs/metrics.prom */
#define MFS_METRICS_NAME "metrics.prom"
#define MFS_READ_BUCKETS 16 /* modelfs_read_duration_seconds (metrics.c) */
#define MFS_MAX_READ     (1u << 20)
#define MFS_TIMEOUT      86400.0 /* what a node is never changes (see above) */
/*
 * Names in folders outside models can change at a reload. The reload
 * invalidates the kernel's entries, but a lookup answered just before the
 * change can reach the kernel just after the invalidation: a short entry
 * timeout bounds how long such a stale name can live.
 */
#define MFS_NS_ENTRY_TIMEOUT 1.0
#define MFS_BOM_DIR          "bom" /* MOUNT/.modelfs/bom/<model path>.cdx.json */
#define MFS_BOM_EXT          ".cdx.json"
#define MFS_BOM_XATTR_MAX    (64u << 10) /* user.modelfs.bom only below this */

enum mfs_node_kind {
	MFS_N_DIR,     /* the root, or a folder synthesized from paths */
	MFS_N_MODEL,   /* a model's folder */
	MFS_N_FILE,    /* a signed file */
	MFS_N_CTL,     /* the control folder */
	MFS_N_STATUS,  /* the status file */
	MFS_N_TX,      /* --pickle=transcode: the safetensors view of a file (txview.c) */
	MFS_N_BOM,     /* MOUNT/.modelfs/bom/<model path>.cdx.json (prov.c) */
	MFS_N_METRICS, /* the Prometheus text file (metrics.c) */
};

/* What a MFS_N_TX node turned out to be; decided lazily, once. */
enum mfs_tx_state {
	MFS_TX_UNDECIDED = 0,
	MFS_TX_SHOWN,  /* a transcodable checkpoint or a rewritable index */
	MFS_TX_HIDDEN, /* the source is not one; the view does not exist */
};

/*
 * The view side of a MFS_N_TX node that shows (issue #12: most views never
 * do, and cost no mfs_txview). Made under the node's load_lock while the view
 * is decided, published with a release store once complete (struct mfs_node,
 * @txv); freed with the node. The source is the node's @tx, whether it is an
 * index follows from the source's name (mfs_tx_is_index()), the verdict is
 * the node's @tx_verdict. Fields below @data_size change only under load_lock.
 */
struct mfs_txview {
	uint64_t size;            /* the output's exact size */
	uint64_t data_size;       /* checkpoints: its tensor bytes (an index's total_size) */
	struct mfs_tx_plan *plan; /* checkpoints: the layout, kept for the first open */
	char *text;               /* indexes: the rewritten JSON */
	int fd;                   /* checkpoints: the checked cached output, or -1 */
	struct mv_tree tree;      /* checkpoints: its Merkle tree, computed by us */
	struct mv_mem_tree *mt;   /* ... held in memory; every read is verified against it */
	bool have_sha256;         /* sha256 below is known */
	uint8_t sha256[32];       /* of the output */
};

/* Verdict of the --pickle=deny check of a model. */
enum mfs_deny_state {
	MFS_DENY_UNCHECKED = 0,
	MFS_DENY_OK,
	MFS_DENY_REFUSED,
};

struct mfs_node;
struct mfs_ftree;

/*
 * The identity of a backing file as fstat() sees it. Any write, truncate,
 * rename over or touch changes at least one field (ctime always does), so
 * equal identities mean "the same bytes as last time" for the negative cache.
 */
struct mfs_file_id {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	struct timespec ctime;
};

/* Who may see a node: owner, group and permission bits (no file type). */
struct mfs_attr {
	uid_t uid;
	gid_t gid;
	mode_t mode; /* 0555 at most: never write, setuid, setgid or sticky bits */
};

/* Which copy of a signed file serves it; decided at its first open (atomic). */
enum mfs_stored {
	MFS_STORED_UNKNOWN = 0,
	MFS_STORED_PLAIN,  /* MODEL/<name> */
	MFS_STORED_PACKED, /* MODEL/.modelfs/packed/<digest>.zst (zfile.c) */
};

/* The packed copy of a file node: opened once, kept for the mount. */
struct mfs_zfile {
	int fd;                  /* the packed file (owned) */
	struct mv_zpack *z;      /* its checked seek table */
	struct mc_zpack_file zf; /* template; each read sets hctx to the tree it borrows */
};

/* Rate limit of one kind of log line (log.c); zeroed means nothing logged yet. */
struct mfs_ratelimit {
	uint64_t last_ns;    /* CLOCK_MONOTONIC of the last line logged, atomic */
	uint64_t suppressed; /* lines dropped since then, atomic */
};

struct mfs_model {
	struct mfs_mount *m;     /* the mount it belongs to */
	char *path;              /* relative path in the store, "org/name" */
	int dirfd;               /* the model folder, opened without following links */
	struct mv_manifest *man; /* NULL if refused at scan */
	struct mv_tree *trees;   /* trusted tree per man->res[i] */
	struct mfs_node *node;   /* its folder node; NULL if refused at scan */
	struct mfs_node **files; /* file nodes, for the deny check */
	size_t n_files;
	char *refused;                   /* reason, NULL while exposed */
	struct timespec mtime;           /* of model.sig: the time of every node inside */
	int deny_state;                  /* enum mfs_deny_state, atomic */
	pthread_mutex_t lock;            /* serializes the deny check, guards refused */
	enum mfs_pickle_policy pickle;   /* the mount's, or the policy's for this path */
	struct mv_attestation_list atts; /* read and checked at scan (prov.c) */
	pthread_mutex_t prov_lock;       /* guards bom, bom_len */
	char *bom;                       /* the CycloneDX BOM, built on first request */
	size_t bom_len;
	uint64_t verify_failures; /* blocks that failed, atomic (metrics) */
	/* Live reload (store.c, reload.c); written by the reload thread only. */
	bool sig_read;          /* sig_sha256 below is known (model.sig was readable) */
	uint8_t sig_sha256[32]; /* of the model.sig bytes this version was built from */
	dev_t dir_dev;          /* the model folder's identity: a folder replaced */
	ino_t dir_ino;          /* ... by another one is a change even with the same sig */
	/* Lifetime (see the top of this file). */
	uint64_t refs;               /* published + kernel lookups + handles + jobs (atomic) */
	struct mfs_node **all_nodes; /* every node of this version, to free them with it */
	struct mfs_slab *slab;       /* ... and the memory of those nodes and names (node.c) */
	size_t n_all, cap_all;       /* ... written by the thread building it, before publishing */
	struct mfs_node *bom_node;   /* MOUNT/.modelfs/bom/<path>.cdx.json, or NULL */
	/* A newer model.sig that was refused; the version above still serves (ns_lock). */
	char *reload_error;
	bool failed_read;          /* the refused model.sig was unreadable ... */
	uint8_t failed_sha256[32]; /* ... or had this hash: not retried until it changes */
};

/*
 * A node of the namespace. Every kind has the fields up to @lock; a view
 * (MFS_N_TX) is allocated only that far (MFS_NODE_VIEW_SIZE), because a
 * model gets one per signed file whose safetensors name is free, shown or
 * not, and the rest (locks, trees, attributes: about 170 bytes) would be
 * wasted on each. So code that may hold a view touches only the first part;
 * ASan builds put a poisoned gap after each view to catch any other access.
 */
struct mfs_node {
	uint64_t ino;
	uint64_t gen; /* generation: inode numbers are reused once the kernel forgot them */
	enum mfs_node_kind kind;
	bool ctl; /* in the control folder: owned by the mount's user, not mapped */
	/*
	 * MFS_N_TX nodes: @tx_state: enum mfs_tx_state, atomic, stored with
	 * release once @txv or @tx_reason and @tx_verdict are set, under
	 * load_lock, once. @tx_verdict: enum mfs_verdict of the scanned source,
	 * -1 if not scanned.
	 */
	uint8_t tx_state;
	int8_t tx_verdict;
	uint32_t n_kids, cap_kids;
	char *name;
	struct mfs_node *parent;
	struct mfs_node **kids;        /* sorted by name */
	struct mfs_model *model;       /* model folder and everything in it */
	const struct mv_resource *res; /* files */
	/*
	 * Files: their MFS_N_TX view, or NULL. MFS_N_TX nodes: their source
	 * file (never NULL), so a view needs no allocation of its own to know it.
	 */
	struct mfs_node *tx;
	/*
	 * MFS_N_TX nodes, by @tx_state (txview.c; read it with acquire, or use
	 * mfs_tx_view()): SHOWN: @txv, complete before the state was published;
	 * HIDDEN: @tx_reason, why (malloc'd, for status.json), NULL for the
	 * common "not transcodable" (not a pickle, not an index); UNDECIDED:
	 * neither. One word for both: a view is never shown and hidden.
	 */
	union {
		struct mfs_txview *txv;
		char *tx_reason;
	};
	pthread_mutex_t load_lock; /* files: serializes tree loads and rebuilds; views: decisions */

	/* ---- not in MFS_N_TX nodes ---- */
	pthread_mutex_t lock; /* guards ft and its refs, and @attr */
	/*
	 * Files: the trusted tree, made from @res at first use (mfs_file_tree()),
	 * so a file never read costs no tree; NULL until then, for empty files
	 * and for files of one block (mfs_file_one_block()).
	 */
	struct mv_tree *tree;
	int fmt_known; /* files, lazily from here: atomic flag; fmt valid once set */
	enum mfs_format fmt;
	struct mfs_ftree *ft;
	struct mv_measurement *derived; /* plain OMS files: see mfs_node_meas() */
	bool rebuilt;                   /* the one allowed rebuild was used */
	int stored;                     /* enum mfs_stored, atomic */
	struct mfs_zfile *zf;           /* packed copy, set once under load_lock (atomic pointer) */
	struct mfs_ratelimit fail_rl;   /* files: rate limit of failure log lines (log.c) */
	/*
	 * Negative cache (ftree.c), guarded by @load_lock: the data identity
	 * whose tree build failed because the bytes do not match the signed
	 * root. Until the backing file's identity changes, loading the tree
	 * fails at once instead of hashing the whole file again.
	 */
	bool bad_known;
	struct mfs_file_id bad_id;
	/*
	 * Owner, group and permission bits the store gives this node (attr.c),
	 * before -o uid=,gid=,umask=. Guarded by @lock: the reload thread
	 * refreshes them (chmod, chown in the store). Unused by the nodes whose
	 * attributes derive from another node (MFS_N_BOM) or from the mount
	 * (@ctl).
	 */
	struct mfs_attr attr;
};

/* Bytes of an MFS_N_TX node: the fields every kind has. */
#define MFS_NODE_VIEW_SIZE offsetof(struct mfs_node, lock)

/*
 * A loaded tree file of one file node. Its descriptor lives in the mount's
 * fd cache (struct mfs_fdcache): while no reader holds a reference, the
 * cache may close it (@fd = -1); the next reader reopens the same file with
 * the same checks as the first open (ftree.c, ftree_reopen()).
 *
 * Locks: @refs under the node's lock. @fd and @src.fd change only with both
 * the fd cache lock and the node's lock held, and only while @refs is 0
 * (closing) or under the node's load_lock (reopening); so a reader holding a
 * reference may use @src.fd without any lock. @slot under the fd cache lock.
 */
struct mfs_ftree {
	int fd; /* the tree file, or -1 while closed by the fd cache */
	struct mc_hblock_src src;
	unsigned refs;         /* readers using it; guarded by the node lock */
	bool replaced;         /* no longer the node's tree; freed at refs == 0 */
	struct mfs_mount *m;   /* whose fd cache holds @fd */
	struct mfs_node *node; /* whose tree it is (the node lock guards @refs) */
	bool in_model;         /* opened from MODEL/.modelfs/trees, else CACHE/trees */
	bool used;             /* atomic: borrowed since the cache's clock hand passed */
	size_t slot;           /* its index in the fd cache while @fd >= 0 */
};

/*
 * The mount's bounded cache of tree descriptors (fdcache.c; docs/mount.md,
 * "File descriptors"). Every loaded tree whose fd is open has a slot; when
 * a new one would exceed @max, the clock hand closes the first one no reader
 * holds and no reader used since the hand last passed (second chance: an
 * approximation of least recently used that costs the read path one relaxed
 * store). Trees in use are never closed, so @n may exceed @max by the trees
 * borrowed at that moment. Lock order: a node's load_lock, then @lock, then a node's lock. @lock is
 * taken only when a tree fd is opened, reopened or closed, never per read.
 * Set up lazily at the first use (after daemon.c raised RLIMIT_NOFILE).
 */
struct mfs_fdcache {
	pthread_mutex_t lock;     /* guards everything below */
	int ready;                /* atomic: @lock and the sizes below are set */
	struct mfs_ftree **slots; /* trees with an open fd */
	size_t n, cap;            /* @n is also read without the lock (atomic) */
	size_t hand;              /* the clock hand: next slot to consider */
	size_t max;               /* the bound: see fdcache_size() in fdcache.c */
	uint64_t nofile;          /* RLIMIT_NOFILE soft limit when sized */
	uint64_t base;            /* descriptors already open when sized */
};

#define MFS_FD_CACHE_MIN 16 /* the fd cache never shrinks below this bound */
#define MFS_FD_ALARM_S   60 /* fds ran out this recently: the mount is unhealthy */

struct mfs_counters {
	uint64_t reads;
	uint64_t bytes_served;
	uint64_t bytes_verified;
	uint64_t verify_failures;
	uint64_t open_failures;
	uint64_t trees_built;
	uint64_t tree_rebuilds;
	uint64_t transcodes;                  /* outputs written into the cache */
	uint64_t transcode_reuses;            /* cached outputs checked and reused */
	uint64_t transcode_rejected;          /* cached outputs that failed their check */
	uint64_t fd_exhausted;                /* EMFILE/ENFILE that failed an operation */
	uint64_t fd_cache_evictions;          /* tree fds closed by the fd cache */
	uint64_t negative_hits;               /* tree loads refused by the negative cache */
	uint64_t tree_build_wait_timeouts;    /* waits for a tree build past --tree-build-wait */
	uint64_t tree_builds_refused;         /* builds refused: queue full, or unmounting */
	uint64_t versions_freed;              /* retired model versions freed (store.c) */
	uint64_t prefetch_jobs;               /* read-ahead windows queued (prefetch.c) */
	uint64_t prefetch_bytes;              /* verified bytes pushed into the page cache */
	uint64_t prefetch_dropped;            /* windows not queued: the queue was full */
	uint64_t prefetch_stopped;            /* windows ended early by a failed read */
	uint64_t prefetch_files;              /* --prefetch files read through the mount */
	uint64_t prefetch_files_failed;       /* --prefetch files that failed (tampered...) */
	uint64_t prefetch_file_bytes;         /* bytes of --prefetch files read */
	uint64_t remote_requests;             /* ranged GETs of an oci:// store (bstore_oci.c) */
	uint64_t remote_bytes;                /* bytes they fetched */
	uint64_t remote_failures;             /* ranged GETs that failed: that READ got EIO */
	uint64_t remote_retries;              /* GETs resent by the client (429, 5xx, dropped) */
	uint64_t remote_cache_hits;           /* 64 KiB chunks read from the remote block cache */
	uint64_t remote_cache_misses;         /* chunks fetched into it */
	uint64_t remote_cache_bytes;          /* bytes read from it */
	uint64_t remote_cache_evictions;      /* blobs evicted from it */
	uint64_t remote_cache_ahead;          /* chunks fetched ahead of a sequential reader */
	uint64_t read_hist[MFS_READ_BUCKETS]; /* read latencies, per bucket (metrics.c) */
	uint64_t read_ns_sum;                 /* their sum, in nanoseconds */
};

/*
 * Missing trees are built off the FUSE workers (treebuild.c; docs/mount.md, "Missing
 * trees"): a pool of at most MFS_TB_MAX_BUILDERS threads, started on demand, fed by a
 * queue of at most MFS_TB_QUEUE_MAX jobs; a waiter waits at most --tree-build-wait.
 */
#define MFS_TB_DEFAULT_BUILDERS 2
#define MFS_TB_MAX_BUILDERS     16
#define MFS_TB_QUEUE_MAX        64 /* jobs waiting for a builder; more fail at once */
#define MFS_TB_KEPT_MAX         64 /* finished builds kept for a later waiter */
#define MFS_TB_DEFAULT_WAIT_MS  30000u
#define MFS_TB_MAX_WAIT_MS      3600000u

struct mfs_tbjob;

/*
 * The tree-build pool of a mount. @max_threads and @wait_ns are set before
 * mounting and never change. @lock guards everything else once @ready; it
 * is taken after a node's load_lock and never while taking one, nor the fd
 * cache lock or a node's lock (the builders take neither while holding it).
 */
struct mfs_treebuild {
	unsigned max_threads;   /* --tree-builders */
	uint64_t wait_ns;       /* --tree-build-wait */
	bool ready;             /* @lock and the conditions are set up (mfs_treebuild_init) */
	pthread_mutex_t lock;   /* guards everything below */
	pthread_cond_t work;    /* builders: a job was queued, or stopping */
	pthread_cond_t done;    /* waiters (CLOCK_MONOTONIC): a job finished, or stopping */
	struct mfs_tbjob *jobs; /* queued, running and kept jobs, oldest first */
	pthread_t threads[MFS_TB_MAX_BUILDERS];
	unsigned n_threads; /* builders started */
	unsigned idle;      /* builders waiting for work */
	unsigned queued, running, kept;
	bool stopping;                /* unmounting: no new job, running ones cancelled */
	struct mfs_ratelimit full_rl; /* one tree-build-refused line per interval */
};

/* The last reload, for the status file. */
struct mfs_reload_info {
	bool watch;           /* --watch is on */
	uint64_t count;       /* reloads done */
	struct timespec last; /* when the last one ended (CLOCK_REALTIME) */
	const char *trigger;  /* static: "sighup" or "watch"; NULL before the first */
	int error;            /* 0, or the negative errno that stopped it (nothing changed) */
	size_t added, removed, changed, refused;
	uint64_t duration_ms;
};

struct mfs_mount {
	char *store;      /* absolute */
	char *mountpoint; /* absolute */
	char *cache_dir;  /* absolute: CACHE/trees, created and checked at mount */
	int cache_fd;     /* CACHE/trees */
	/*
	 * The cache folder CACHE (--cache-dir) and CACHE/transcoded: owned by
	 * the daemon's user and writable by no one else, checked with the
	 * folders above CACHE before mounting (cachedir.c, docs/mount.md).
	 */
	char *cache_base; /* CACHE, absolute, no symlinks */
	int cache_base_fd;
	char *tx_dir;             /* CACHE/transcoded, absolute, for messages */
	int tx_fd;                /* CACHE/transcoded: cached outputs and their records */
	bool have_tx_key;         /* tx_key is loaded (a read-only cache may have none) */
	uint8_t tx_key[32];       /* HMAC-SHA-256 key of the records (CACHE/cache.key) */
	struct mfs_bstore bstore; /* where models come from (mfs_bstore_local) */
	int store_fd;             /* the store's root folder: a handle of @bstore */
	enum mfs_pickle_policy pickle;
	struct mv_trust *trust;
	struct mv_policy *policy; /* --policy, or NULL */
	char *policy_path;        /* for messages */
	/* --name-check: how a signed name must fit its store path (store.c) */
	enum mv_name_check name_check;
	struct mc_hblock_cache *hcache;
	struct mc_frame_cache *fcache; /* decompressed, verified frames of packed files */
	/*
	 * Guards models/n_models and every folder node's kids/n_kids, which
	 * live reload (reload.c) replaces; lookups, readdir, status and metrics
	 * hold it for reading. Nodes themselves are never freed while mounted.
	 */
	pthread_rwlock_t ns_lock;
	struct mfs_model **models; /* exposed and refused, sorted by path */
	size_t n_models;
	/* Replaced or removed by a reload, until the kernel was told (reload thread only). */
	struct mfs_model **retiring;
	size_t n_retiring;
	/*
	 * nodes[ino - 1], read by mfs_node_get() without a lock. Written under
	 * @node_lock: a new node takes a free slot (a freed node's, with its
	 * generation + 1) or is appended, n_nodes being published with a
	 * release store after the slot is written; a freed node's slot is set
	 * to NULL. A grown table never frees the old one until unmount
	 * (old_tables), so a reader holding either table finds every node it
	 * counted; growth copies the table under @node_lock, so no slot freed
	 * meanwhile is lost. Doubling bounds the old tables to the size of the
	 * current one.
	 */
	pthread_mutex_t node_lock; /* a leaf lock: nothing else is taken while holding it */
	struct mfs_node **nodes;
	size_t n_nodes, cap_nodes;
	void **old_tables; /* outgrown node tables */
	size_t n_old_tables;
	struct mfs_free_slot {
		uint64_t ino; /* a freed node's inode number ... */
		uint64_t gen; /* ... and generation */
	} * free_slots;
	size_t n_free, cap_free;
	/* Versions retired and still referenced (status, unmount); under @node_lock. */
	struct mfs_model **retired;
	size_t n_retired;
	uint64_t total_bytes;               /* of all exposed files, for statfs (atomic) */
	struct mfs_reload_info reload_info; /* for the status file; under ns_lock */
	void *reloader;                     /* reload.c's state while armed */
	struct mfs_counters ctr;            /* updated with __atomic builtins */
	struct mfs_fdcache fdc;             /* open tree fds, bounded (fdcache.c) */
	/* The last EMFILE/ENFILE (mfs_fd_exhausted()); 0: never. Atomic. */
	uint64_t fd_exhausted_mono_ns;   /* CLOCK_MONOTONIC: "recently" for the health */
	uint64_t fd_exhausted_real_ns;   /* CLOCK_REALTIME: when, for status.json */
	struct mfs_ratelimit fd_rl;      /* one fd-exhausted log line per interval */
	struct mfs_ratelimit fd_shed_rl; /* one fd-cache-shed log line per interval */
	uint64_t negative_entries;       /* files in the negative cache now (atomic gauge) */
	struct mfs_treebuild tb;         /* missing trees' builders (treebuild.c); its own lock */
	struct mfs_prefetch *pf;         /* verified read-ahead (prefetch.c), or NULL */
	/* --prefetch PATTERN: read through the mount once it answers (prefetch.c) */
	const char *const *prefetch;
	size_t n_prefetch;
	int prefetch_state; /* MFS_PF_OFF, _RUNNING, _DONE (atomic) */
	struct timespec started;
	void *conn_opts;         /* struct fuse_conn_info_opts from -o, applied at init */
	pthread_mutex_t fh_lock; /* guards open_fhs */
	void *open_fhs;          /* open file handles (ops.c), freed at unmount */
	uid_t uid;               /* the mount's user: owns the control folder */
	gid_t gid;
	/* -o uid=,gid=,umask= (attr.c): what every node shows instead of the store's */
	bool map_uid, map_gid;
	uid_t shown_uid;
	gid_t shown_gid;
	mode_t umask;     /* cleared from every mode shown, the control folder's too */
	bool control_all; /* --control-access=all: .modelfs readable by everyone */
};

/* Adds @v to a counter atomically. */
static inline void mfs_count(uint64_t *ctr, uint64_t v)
{
	__atomic_fetch_add(ctr, v, __ATOMIC_RELAXED);
}

/* Counts one failed check of file node @n, for the mount and for its model. */
static inline void mfs_count_failure(struct mfs_mount *m, struct mfs_node *n)
{
	mfs_count(&m->ctr.verify_failures, 1);
	mfs_count(&n->model->verify_failures, 1);
}

/* ---- log.c: logging ---- */

#define MFS_LOG_INTERVAL_S 10 /* at most one failure line per file per interval */

/* Logs one key=value line: stderr in the foreground, syslog as a daemon. */
void mfs_log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* From now on, log to syslog (after daemonizing). */
void mfs_log_use_syslog(void);
/*
 * A log value: @s itself when it is a plain word, else quoted with \ " and
 * control characters escaped, so a file name cannot forge a log line.
 * Always written into @buf (@len bytes, truncated); returns @buf.
 */
const char *mfs_log_value(const char *s, char *buf, size_t len);
/**
 * mfs_log_ratelimit() - may a rate-limited line be logged now?
 * @rl: in/out: the limiter (e.g. a file node's fail_rl)
 * @suppressed: out: when true is returned, lines dropped since the last one
 * The first call returns true, then at most one per MFS_LOG_INTERVAL_S. Lock-free.
 */
bool mfs_log_ratelimit(struct mfs_ratelimit *rl, uint64_t *suppressed);

/* ---- the store: store.c (walk, versions), node.c (nodes), rescan.c (reload) ---- */

/**
 * mfs_store_scan() - walk the store and build the namespace
 * @m: in/out: m->store_fd, m->trust and m->pickle set; fills models and nodes
 * @err: out: error line (only for errors that stop the mount)
 */
int mfs_store_scan(struct mfs_mount *m, struct mv_err *err);
/* Frees models and nodes (after unmount). */
void mfs_store_free(struct mfs_mount *m);
/* Appends a new node; its inode number is its position + 1. NULL on ENOMEM. */
struct mfs_node *mfs_node_new(struct mfs_mount *m, enum mfs_node_kind kind, const char *name,
                              struct mfs_model *model);
/* Links @kid under @dir (unsorted until the scan sorts). 0 or -ENOMEM. */
int mfs_node_add_kid(struct mfs_node *dir, struct mfs_node *kid);
/* The node of an inode number, or NULL. */
struct mfs_node *mfs_node_get(struct mfs_mount *m, uint64_t ino);
/* A child by name (binary search), or NULL. Ignores visibility. */
struct mfs_node *mfs_node_child(struct mfs_node *dir, const char *name);
/*
 * What a rescan changed, for the kernel: names to invalidate (parent inode,
 * name; names are nodes' names, valid for the mount) and inodes whose
 * cached attributes, pages or listings must go.
 */
struct mfs_inval {
	struct mfs_inval_ent {
		uint64_t parent;
		const char *name;
	} * ents;
	size_t n_ents, cap_ents;
	uint64_t *inos;
	size_t n_inos, cap_inos;
};

/* Counts of one rescan. */
struct mfs_rescan_result {
	size_t models; /* in the store after it */
	size_t added, removed, changed, refused;
};

/* Called for every store folder a walk enters, before its contents are read. */
typedef void (*mfs_dir_fn)(void *arg, int dirfd, const char *rel);

/**
 * mfs_store_rescan() - walk the store again and publish what changed
 * @m: in/out: the mounted namespace (called by the reload thread only)
 * @dir_fn, @dir_arg: in: called for every folder walked (inotify), or NULL
 * @res: out: counts
 * @inv: out: what the kernel must forget; free with mfs_inval_free()
 * Builds new and changed models outside any lock, then links, unlinks and
 * swaps them under the write lock. Logs one line per model event.
 * Return: 0, or -errno (nothing was changed).
 */
int mfs_store_rescan(struct mfs_mount *m, mfs_dir_fn dir_fn, void *dir_arg,
                     struct mfs_rescan_result *res, struct mfs_inval *inv);
/* Walks the store's folders (not the models' insides) calling @dir_fn. 0 or -errno. */
int mfs_store_walk_dirs(struct mfs_mount *m, mfs_dir_fn dir_fn, void *dir_arg);
void mfs_inval_free(struct mfs_inval *inv);
/* May @dir's children change while mounted (a folder outside any model)? */
static inline bool mfs_node_ns_dir(const struct mfs_node *dir)
{
	return dir->model == NULL;
}

/* Path of a node inside its model (files) or the store, for log lines. */
const char *mfs_node_model_path(const struct mfs_node *n);

/* ---- backing.c: opening what the store holds, visibility ---- */

/**
 * mfs_node_check() - may this node be shown?
 * Applies the pickle policy (detecting formats lazily) and the deny verdict.
 * Return: 0 visible, -ENOENT hidden or refused, -EIO undecidable right now.
 */
int mfs_node_check(struct mfs_mount *m, struct mfs_node *n);
/* Opening backing files: bstore.h. */

/* ---- store.c: the lifetime of a model version ---- */

/**
 * mfs_model_ref() - keep a model version, and every node of it, alive
 * @model: in: a model, or NULL (a node outside models: nothing to keep)
 * @n: in: how many references (a kernel lookup count, an open handle, a job)
 * Call only while the version is known to be alive: under m->ns_lock, in a
 * FUSE request on one of its inodes, or holding another reference. Lock-free.
 */
void mfs_model_ref(struct mfs_model *model, uint64_t n);
/**
 * mfs_model_unref() - drop @n references taken with mfs_model_ref()
 * A version replaced or removed by a reload is freed with its nodes when its
 * last reference goes (on the calling thread). Lock-free unless it frees.
 */
void mfs_model_unref(struct mfs_mount *m, struct mfs_model *model, uint64_t n);
/**
 * mfs_store_retire() - drop the published references of retired versions
 * Called by the reload thread after each rescan, once the kernel was told
 * to forget what changed (the invalidation list points at their names).
 */
void mfs_store_retire(struct mfs_mount *m);
/* Retired versions still referenced (status.json, metrics). Thread-safe. */
size_t mfs_store_n_retired(struct mfs_mount *m);
/**
 * mfs_store_retired_hold() - the retired versions still alive, each referenced
 * @out, @n: out: a malloc'd array; give it back with mfs_store_retired_release()
 * Return: 0 or -ENOMEM.
 */
int mfs_store_retired_hold(struct mfs_mount *m, struct mfs_model ***out, size_t *n);
/* Drops the references of mfs_store_retired_hold() (may free versions) and the array. */
void mfs_store_retired_release(struct mfs_mount *m, struct mfs_model **models, size_t n);

/* ---- vread.c: verified reads ---- */

/**
 * mfs_file_read() - read and verify a range of a file
 * @fd: in: backing file (from mfs_open_backing)
 * @off, @len: in: the range wanted
 * @out, @out_len: out: the verified bytes, in this thread's buffer, valid
 *                 until the thread's next call; @out_len is short at EOF
 * Return: 0 or -EIO (with one log line and a counted failure).
 */
int mfs_file_read(struct mfs_mount *m, struct mfs_node *n, int fd, uint64_t off, size_t len,
                  const uint8_t **out, size_t *out_len);
/* Is the file node empty (nothing to verify)? */
static inline bool mfs_file_empty(const struct mfs_node *n)
{
	return n->res->merkle.params.data_size == 0;
}
/*
 * Files of one data block: their fs-verity root is the hash of that block,
 * so they are verified without a tree file or a loaded tree (vread.c).
 */
static inline bool mfs_file_one_block(const struct mfs_node *n)
{
	const struct mv_tree_params *p = &n->res->merkle.params;

	return p->data_size && p->data_size <= p->block_size;
}
/* The file's format, detected once through verified reads. */
int mfs_file_format(struct mfs_mount *m, struct mfs_node *n, enum mfs_format *out);
/* Context of mfs_vpread: one open file. */
struct mfs_vctx {
	struct mfs_mount *m;
	struct mfs_node *n;
	int fd;
};
/* A verified mfs_pread_fn; ctx is a struct mfs_vctx *. */
ssize_t mfs_vpread(void *ctx, void *buf, size_t len, uint64_t off);

/* ---- ftree.c: loaded trees, the negative cache ---- */

/*
 * The trusted tree of a non-empty file node, made from its signed root on
 * first use and kept with the node. NULL for an empty file, or on ENOMEM.
 * Lock-free.
 */
const struct mv_tree *mfs_file_tree(struct mfs_node *n);
/* Loads (or builds) the file's tree before the first read. 0 or -EIO. */
int mfs_file_prepare(struct mfs_mount *m, struct mfs_node *n, int fd);
/* Closes every loaded tree and packed copy, frees the fd cache (after unmount). */
void mfs_file_trees_free(struct mfs_mount *m);
/* Closes the loaded tree and packed copy of a node no reader can reach (freed version). */
void mfs_file_node_free(struct mfs_mount *m, struct mfs_node *n);

/* ---- fdcache.c: the tree fd cache, fd exhaustion ---- */

/* What the fd cache holds now (status.json, metrics). */
struct mfs_fd_stats {
	uint64_t nofile;  /* RLIMIT_NOFILE soft limit the cache was sized from */
	uint64_t base;    /* descriptors open when it was sized */
	size_t max;       /* its bound */
	size_t open;      /* tree fds open now */
	uint64_t last_ns; /* CLOCK_REALTIME of the last EMFILE/ENFILE, 0 if none */
	uint64_t age_s;   /* seconds since then (valid if last_ns) */
	bool recent;      /* within MFS_FD_ALARM_S: the mount is unhealthy */
};
/* Fills @out (sizing the cache on first use). Thread-safe. */
void mfs_fd_stats(struct mfs_mount *m, struct mfs_fd_stats *out);
/**
 * mfs_fdcache_shed() - close every cached tree fd no reader holds
 * Called when an open failed with EMFILE/ENFILE, before trying it again:
 * descriptors that serve reads now matter more than cached ones.
 * Return: how many were closed.
 */
size_t mfs_fdcache_shed(struct mfs_mount *m);
/**
 * mfs_fd_exhausted() - record that the daemon ran out of file descriptors
 * @what: in: the operation that failed, for the log line
 * @err: in: -EMFILE or -ENFILE
 * Counts it (fd_exhausted), remembers when (the health rule: unhealthy for
 * MFS_FD_ALARM_S seconds) and logs one fd-exhausted line per
 * MFS_LOG_INTERVAL_S. Lock-free; callable from any thread.
 */
void mfs_fd_exhausted(struct mfs_mount *m, const char *what, int err);

/* ---- zfile.c: packed copies ---- */

/**
 * mfs_zfile_open() - attach the packed copy @fd to @n (once per mount)
 * @fd: in: the packed file, a regular file (not taken over: it is duplicated)
 * Checks the seek table against the signed size and block size.
 * Return: 0 (the node is now MFS_STORED_PACKED), -EIO (bad table), -ENOMEM,
 * -EMFILE or -ENFILE (no descriptor even after shedding the fd cache).
 */
int mfs_zfile_open(struct mfs_mount *m, struct mfs_node *n, int fd);
/* "plain" or "packed" for a file node, deciding (opening) if needed; NULL on error. */
const char *mfs_file_stored_as(struct mfs_mount *m, struct mfs_node *n);

/* ---- prefetch.c: verified prefetch ---- */

struct fuse_session;
enum { MFS_PF_OFF, MFS_PF_RUNNING, MFS_PF_DONE };
/* A handle's sequential run, for read-ahead (lock-free; a heuristic). */
struct mfs_pf_stream {
	uint64_t run_end; /* where the handle's last sequential READ ended */
	uint64_t pushed;  /* up to where windows were requested */
};
/* Starts the read-ahead workers (after daemonizing). 0 or -errno. */
int mfs_prefetch_start(struct mfs_mount *m, struct fuse_session *se);
/* Stops and joins them, dropping queued windows. Idempotent. */
void mfs_prefetch_stop(struct mfs_mount *m);
/* After a verified READ of [@off, @off+@len) of @n on a handle with run @s,
 * before its reply (the handle may be released once the reply is sent):
 * queues the next window if the run is sequential. Any FUSE worker. */
void mfs_prefetch_on_read(struct mfs_mount *m, struct mfs_node *n, struct mfs_pf_stream *s,
                          uint64_t off, size_t len);
/* --prefetch: reads every matching file through the mount (ready thread). */
void mfs_prefetch_mount_time(struct mfs_mount *m);

/* ---- treebuild.c: missing trees, built by a bounded pool ---- */

/* What a finished tree build found, for the negative cache (ftree.c). */
struct mfs_tb_result {
	int ret;               /* 0: the tree is in CACHE/trees; -EBADMSG: data not as signed */
	bool have_id;          /* @id is known */
	struct mfs_file_id id; /* the data's identity, taken before the build read it */
};

/**
 * mfs_treebuild_init() - set up a mount's tree-build pool (no thread yet)
 * @builders: in: --tree-builders, 1..MFS_TB_MAX_BUILDERS; 0: the default
 * @wait_ms: in: --tree-build-wait in ms, 1..MFS_TB_MAX_WAIT_MS; 0: the default
 * Builder threads start at the first build that finds none idle.
 */
void mfs_treebuild_init(struct mfs_mount *m, unsigned builders, unsigned wait_ms);
/**
 * mfs_tree_build_wait() - build the tree of @n in the pool and wait for it
 * @data_fd: in: the plain data (duplicated: the job keeps its own), or -1
 * @zf: in: the node's attached packed copy, or NULL
 * @why: in: a static string for the tree-build line ("missing", ...)
 * @id: in: the data's identity now, or NULL if unknown
 * @res: out: the build's result, when 0 is returned
 * Joins the node's queued or running build if there is one, else queues
 * one (the job holds a reference on @n's model until it ends). Called with
 * @n->load_lock held; releases it while waiting, at most --tree-build-wait,
 * and holds it again on return: the caller must look at @n's tree again.
 * Return: 0 (the build ended, @res set), -ETIMEDOUT (still building: one
 * tree-build-wait line, counted), -EAGAIN (queue full, or unmounting:
 * counted in tree_builds_refused), -ENOMEM, -EMFILE or -ENFILE.
 */
int mfs_tree_build_wait(struct mfs_mount *m, struct mfs_node *n, int data_fd, struct mfs_zfile *zf,
                        const char *why, const struct mfs_file_id *id, struct mfs_tb_result *res);
/**
 * mfs_tree_build_kept() - claim what a build nobody waited for any more found
 * @res: out: its result: 0 (a fresh tree in CACHE/trees) or -EBADMSG with
 *       an identity (only these are kept, at most MFS_TB_KEPT_MAX)
 * Called with @n->load_lock held, before deciding to load or build.
 * Return: whether there was one (it is forgotten by the pool now).
 */
bool mfs_tree_build_kept(struct mfs_mount *m, struct mfs_node *n, struct mfs_tb_result *res);
/* Stop signal: refuse new builds, cancel running ones, wake every waiter. */
void mfs_treebuild_cancel(struct mfs_mount *m);
/* After the FUSE loop: cancel, join the builders, free the jobs (model refs dropped). */
void mfs_treebuild_stop(struct mfs_mount *m);

/* The pool now, for status.json and the metrics. */
struct mfs_tb_stats {
	unsigned max_threads, threads, running, queued;
	uint64_t wait_ms;
};
/* Fills @out (zeros but the settings before the first build). Thread-safe. */
void mfs_treebuild_stats(struct mfs_mount *m, struct mfs_tb_stats *out);

/* ---- xattr.c ---- */

/* NUL-separated names present on @n, malloc'd in *@out. 0 or -ENOMEM. */
int mfs_xattr_list(struct mfs_mount *m, struct mfs_node *n, char **out, size_t *len);
/* Value of @name on @n, malloc'd. 0, -ENODATA, -EIO or -ENOMEM. */
int mfs_xattr_get(struct mfs_mount *m, struct mfs_node *n, const char *name, char **out,
                  size_t *len);

/* ---- status.c ---- */

/* A snapshot of the status JSON, malloc'd, NUL-terminated. NULL on ENOMEM. */
char *mfs_status_json(struct mfs_mount *m, size_t *len);

/* ---- metrics.c: the Prometheus text file ---- */

/* A snapshot of the metrics in Prometheus text format, malloc'd. NULL on ENOMEM. */
char *mfs_metrics_text(struct mfs_mount *m, size_t *len);
/* Records one served read that took @ns nanoseconds (thread-safe, lock-free). */
void mfs_metrics_observe_read(struct mfs_mount *m, uint64_t ns);

/* ---- session.c: threads beside the FUSE loop ---- */

/* Starts @fn in a thread that never takes the stop signals. Whether it started. */
bool mfs_start_thread(pthread_t *t, void *(*fn)(void *), void *arg, const char *what);

/* ---- reload.c: live reload (SIGHUP, --watch) ---- */

struct fuse_session;
/**
 * mfs_reload_start() - arm live reload once the mount is serving
 * @se: in: the session, for kernel cache invalidation
 * @watch: in: also rescan when inotify sees the store change
 * Called after daemonizing (it may start a thread). Return: 0 or -errno.
 */
int mfs_reload_start(struct mfs_mount *m, struct fuse_session *se, bool watch);
/* Stops what mfs_reload_start() started (before unmount). */
void mfs_reload_stop(struct mfs_mount *m);

/* ---- txview.c: --pickle=transcode views ---- */

/**
 * mfs_tx_nodes_add() - add the safetensors views of a model's files
 * @m: in/out: the mount; new MFS_N_TX nodes are appended
 * @model: in: a model whose files are built but whose folders are unsorted
 * Every file whose safetensors name (mfs_tx_rename) differs from its own and
 * is free in its folder gets a view node; whether it shows is decided later.
 * Return: 0 or -ENOMEM.
 */
int mfs_tx_nodes_add(struct mfs_mount *m, struct mfs_model *model);
/**
 * mfs_tx_decide() - decide once whether a view node shows
 * @t: in: a MFS_N_TX node
 * Return: 0 shown, -ENOENT hidden, -EIO undecidable now (a verified read failed).
 */
int mfs_tx_decide(struct mfs_mount *m, struct mfs_node *t);
/* Reads from a view opened with mfs_tx_open(). Bytes read, or -errno. */
ssize_t mfs_tx_read(struct mfs_mount *m, struct mfs_node *t, void *buf, size_t len, uint64_t off);
/* Frees what a view node holds: its mfs_txview or its hidden reason. */
void mfs_tx_free(struct mfs_node *t);
/* Is view @t the rewritten *.index.json of its source (else a checkpoint's)? */
bool mfs_tx_is_index(const struct mfs_node *t);
/* The view of MFS_N_TX node @t if it was decided shown, else NULL. Lock-free. */
static inline struct mfs_txview *mfs_tx_view(const struct mfs_node *t)
{
	return __atomic_load_n(&t->tx_state, __ATOMIC_ACQUIRE) == MFS_TX_SHOWN ? t->txv : NULL;
}

/* ---- txcache.c: the transcode cache (outputs, MAC'd records, the key) ---- */

#define MFS_CACHE_TREES "trees"      /* CACHE/trees: Merkle trees the mount built */
#define MFS_CACHE_TX    "transcoded" /* CACHE/transcoded: outputs and their records */
#define MFS_CACHE_KEY   "cache.key"  /* CACHE/cache.key: the records' HMAC key */

/**
 * mfs_tx_key_load() - load the records' HMAC key, creating it if missing
 * @m: in/out: m->cache_base_fd and m->cache_base set; fills tx_key and
 *   have_tx_key
 * @err: out: the one-line reason when the mount must not start
 * A missing key is made of 32 random bytes, mode 0600, published with
 * link() so that concurrent daemons agree on one. A key owned by another
 * user, readable by group or others, or not 32 bytes refuses the mount.
 * On a cache that cannot be written (EROFS, EACCES) and holds no key, a
 * warning is logged and views cannot be cached (their opens give EIO).
 * Return: 0 or -errno (with @err set).
 */
int mfs_tx_key_load(struct mfs_mount *m, struct mv_err *err);
/* Opens a shown view: the cached output is checked or (re)made. 0 or -errno. */
int mfs_tx_open(struct mfs_mount *m, struct mfs_node *t);

/* ---- prov.c: BOM, attestations, policy ---- */

/**
 * mfs_prov_scan() - attestations and policy of a model whose signature verified
 * @m: in: the mount (trust, policy)
 * @model: in/out: gets atts and pickle
 * @why, @why_len: out: on refusal, the reason naming the policy rule
 * Return: 0 admitted, -EKEYREJECTED refused by the policy, -ENOMEM.
 */
int mfs_prov_scan(struct mfs_mount *m, struct mfs_model *model, char *why, size_t why_len);
/**
 * mfs_prov_bom() - the model's BOM, built once and cached
 * @bom, @len: out: the cached text (valid for the mount's life)
 * Return: 0, -EIO (could not be built), -ENOMEM.
 */
int mfs_prov_bom(struct mfs_model *model, const char **bom, size_t *len);
/* The attestations as a JSON list, malloc'd in *@out. 0, -E2BIG or -ENOMEM. */
int mfs_prov_atts_json(const struct mfs_model *model, char **out);
/* Frees what prov.c holds for @model (after unmount). */
void mfs_prov_free(struct mfs_model *model);

/* ---- attr.c: owners and modes (docs/mount.md, "Owners and permissions") ---- */

/**
 * mfs_node_attr() - the owner, group and mode a node shows
 * @n: in: any node
 * @out: out: after -o uid=,gid=,umask= and --control-access
 * A view takes its source's, a BOM file its model folder's read bits, the
 * control folder and its files the mount user's. Thread-safe.
 */
void mfs_node_attr(struct mfs_mount *m, const struct mfs_node *n, struct mfs_attr *out);
/* Control folder nodes (@n and the ones ns_link() makes under it): mark @n. */
void mfs_attr_ctl(struct mfs_node *n);
/**
 * mfs_attr_model() - take a model's owners and modes from its store folder
 * @model: in/out: a model whose nodes are built (not yet visible) or served
 * @inv: in/out: at a reload, gets the inodes whose attributes changed; NULL at build
 * Each path is opened without following links, relative to the model
 * folder. A missing file takes its packed copy's, else its folder's owner
 * with mode 0400 at most; a missing folder takes its parent's.
 */
void mfs_attr_model(struct mfs_mount *m, struct mfs_model *model, struct mfs_inval *inv);
/**
 * mfs_attr_ns_dir() - take a new folder's attributes from the store
 * @dir: in/out: a folder ns_link() just made, linked under its parent
 * @path, @len: in: its store path (the first @len bytes of @path)
 * Under the control folder it is marked @ctl instead.
 */
void mfs_attr_ns_dir(struct mfs_mount *m, struct mfs_node *dir, const char *path, size_t len);
/* Sets the store root's attributes (root node @root) from m->store_fd. */
void mfs_attr_root(struct mfs_mount *m, struct mfs_node *root);
/**
 * mfs_attr_refresh() - after a reload, re-read every served node's attributes
 * @inv: in/out: gets every inode whose attributes changed (and its views)
 * Called by the reload thread only, the one writer of folders' children.
 */
void mfs_attr_refresh(struct mfs_mount *m, struct mfs_inval *inv);
/* Appends @ino to what the kernel must forget (node.c). */
void mfs_inval_ino(struct mfs_inval *inv, uint64_t ino);

/* ---- ops.c ---- */

struct fuse_lowlevel_ops;
extern const struct fuse_lowlevel_ops mfs_ll_ops;
/* Frees file handles the kernel never released (unmount with files open). */
void mfs_ops_cleanup(struct mfs_mount *m);

#endif /* MODELFS_MOUNT_INT_H */
