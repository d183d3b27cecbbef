// SPDX-License-Identifier: Apache-2.0
/*
 * cmd_mount.c - `modelfs mount`: parse options, then mfs_mount_main().
 *
 * Also serves the mount(8) convention "modelfs STORE MNT -o OPTS", so the
 * modelfs options can be given as -o trust=KEY,pickle=show,cache_dir=DIR.
 * STORE may be oci://REGISTRY/REPO:TAG, the lazy mount of one model, or a
 * store file of many (fs/mount/bstore_oci_setup.c), with --ca-cert and
 * --insecure as for push.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fs.h"

#define MAX_TRUST 64

struct mount_args {
	struct mfs_mount_opts o;
	const char *keys[MAX_TRUST];
	const char *cas[MAX_TRUST];
	const char *identities[MAX_TRUST]; /* keyless signers, paired with issuers */
	const char *issuers[MAX_TRUST];
	size_t n_issuers;
	const char *prefetch[MAX_TRUST]; /* --prefetch patterns */
	char *fuse_opts;                 /* -o options passed on to FUSE, malloc'd */
};

static int add_trust(const char **list, size_t *n, const char *path)
{
	if (*n >= MAX_TRUST) {
		cli_error("mount: at most %d of each --trust, --trust-ca, keyless identity or "
		          "--prefetch",
		          MAX_TRUST);
		return -EINVAL;
	}
	list[(*n)++] = path;
	return 0;
}

/* Adds a --prefetch pattern (a glob over paths under the mountpoint). */
static int add_prefetch(struct mount_args *a, const char *pattern)
{
	if (!*pattern) {
		cli_error("mount: --prefetch needs a pattern");
		return -EINVAL;
	}
	return add_trust(a->prefetch, &a->o.n_prefetch, pattern);
}

/* Appends one FUSE option to the comma-separated list. */
static int add_fuse_opt(struct mount_args *a, const char *opt)
{
	size_t old = a->fuse_opts ? strlen(a->fuse_opts) : 0, l = strlen(opt);
	char *p = realloc(a->fuse_opts, old + l + 2);

	if (!p)
		return -ENOMEM;
	if (old)
		p[old++] = ',';
	memcpy(p + old, opt, l + 1);
	a->fuse_opts = p;
	return 0;
}

/* --cache-size / cache_size=: the frame cache bound, 1 MiB to 1 TiB. */
static int parse_cache_size(struct mount_args *a, const char *s)
{
	unsigned long long size;

	if (cli_parse_size(s, &size) || size < (1u << 20) || size > (1ull << 40)) {
		cli_error("mount: bad --cache-size '%s' (1M to 1T)", s);
		return -EINVAL;
	}
	a->o.frame_cache_bytes = (size_t)size;
	return 0;
}

/* --remote-cache-size / remote_cache_size=: the remote block cache bound, 0 (off) or 1M to 1P. */
static int parse_remote_cache_size(struct mount_args *a, const char *s)
{
	unsigned long long size;

	if (cli_parse_size(s, &size) || (size && size < (1u << 20)) || size > (1ull << 50)) {
		cli_error("mount: bad --remote-cache-size '%s' (0, or 1M to 1P)", s);
		return -EINVAL;
	}
	a->o.remote_cache_bytes = size;
	a->o.no_remote_cache = size == 0;
	return 0;
}

/* Parses a decimal number 0..@max. 0 or -EINVAL. */
/* --unmount-timeout / unmount_timeout=: seconds, 1 to 3600. */
static int parse_timeout(struct mount_args *a, const char *s)
{
	if (cli_parse_uint(s, 1, 3600, &a->o.unmount_timeout)) {
		cli_error("mount: bad --unmount-timeout '%s' (1 to 3600 seconds)", s);
		return -EINVAL;
	}
	return 0;
}

/* --watch-interval / watch_interval=: seconds between polls of a registry, 1 to 86400. */
static int parse_watch_interval(struct mount_args *a, const char *s)
{
	if (cli_parse_uint(s, 1, 86400, &a->o.watch_interval_s)) {
		cli_error("mount: bad --watch-interval '%s' (1 to 86400 seconds)", s);
		return -EINVAL;
	}
	return 0;
}

/* --tree-builders / tree_builders=: threads that build missing trees, 1 to 16. */
static int parse_builders(struct mount_args *a, const char *s)
{
	if (cli_parse_uint(s, 1, 16, &a->o.tree_builders)) {
		cli_error("mount: bad --tree-builders '%s' (1 to 16)", s);
		return -EINVAL;
	}
	return 0;
}

/**
 * parse_build_wait() - --tree-build-wait / tree_build_wait=: how long an open
 * waits for a missing tree's build before it gets EIO
 * @a: out: a->o.tree_build_wait_ms
 * @s: in: seconds, with at most three decimals (milliseconds): "30", "0.5";
 *     more than 0 and at most 3600. Parsed by hand: no locale, no rounding.
 * Return: 0, or -EINVAL with a message.
 */
static int parse_build_wait(struct mount_args *a, const char *s)
{
	unsigned long long ms = 0;
	const char *p = s;
	int frac = -1;

	for (; *p && ms <= 3600000ull; p++) {
		if (*p == '.' && frac < 0 && p != s) {
			frac = 0;
			continue;
		}
		if (*p < '0' || *p > '9' || frac == 3)
			break;
		ms = ms * 10 + (unsigned)(*p - '0');
		frac += frac >= 0;
	}
	for (int i = frac < 0 ? 0 : frac; i < 3; i++)
		ms *= 10;
	if (*p || frac == 0 || ms == 0 || ms > 3600000ull) {
		cli_error("mount: bad --tree-build-wait '%s' (seconds, 0.001 to 3600)", s);
		return -EINVAL;
	}
	a->o.tree_build_wait_ms = (unsigned)ms;
	return 0;
}

/**
 * parse_id() - --uid / uid=, --gid / gid=: the owner or group every node shows
 * @s: in: a number, as vfat and sshfs take it (no name lookup: the daemon
 *     may run where the app's users are unknown); (uid_t)-1 is not an id
 * @what: in: the option, for the message
 * @set, @id: out: true, and the id
 * Return: 0, or -EINVAL with a message.
 */
static int parse_id(const char *s, const char *what, bool *set, unsigned *id)
{
	if (cli_parse_uint(s, 0, 0xfffffffeu, id)) {
		cli_error("mount: bad %s '%s' (a number, 0 to 4294967294)", what, s);
		return -EINVAL;
	}
	*set = true;
	return 0;
}

/**
 * parse_umask() - --umask / umask=: mode bits cleared from every node shown
 * @a: out: a->o.umask
 * @s: in: octal, at most 0777, as umask(1) writes it
 * Return: 0, or -EINVAL with a message.
 */
static int parse_umask(struct mount_args *a, const char *s)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(s, &end, 8);
	if (!*s || *s == '-' || errno || *end || v > 0777) {
		cli_error("mount: bad umask '%s' (octal, 000 to 777)", s);
		return -EINVAL;
	}
	a->o.umask = (unsigned)v;
	return 0;
}

/**
 * parse_control() - --control-access / control_access=: who reads .modelfs
 * @a: out: a->o.control_all
 * @s: in: "owner" (the default: the mount's user) or "all"
 * Return: 0, or -EINVAL with a message.
 */
static int parse_control(struct mount_args *a, const char *s)
{
	if (strcmp(s, "owner") == 0 || strcmp(s, "all") == 0) {
		a->o.control_all = s[0] == 'a';
		return 0;
	}
	cli_error("mount: --control-access must be owner or all");
	return -EINVAL;
}

/*
 * Splits one -o argument: modelfs's own options are taken, the rest goes to
 * FUSE. The pieces point into @s, which must outlive the mount.
 */
static int parse_o(struct mount_args *a, char *s)
{
	char *save = NULL;

	for (char *opt = strtok_r(s, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
		int ret = 0;

		if (strcmp(opt, "nonempty") == 0)
			a->o.nonempty = true;
		else if (strncmp(opt, "trust=", 6) == 0)
			ret = add_trust(a->keys, &a->o.n_trust_keys, opt + 6);
		else if (strncmp(opt, "trust_ca=", 9) == 0)
			ret = add_trust(a->cas, &a->o.n_trust_cas, opt + 9);
		else if (strncmp(opt, "trust_identity=", 15) == 0)
			ret = add_trust(a->identities, &a->o.n_trust_identities, opt + 15);
		else if (strncmp(opt, "trust_issuer=", 13) == 0)
			ret = add_trust(a->issuers, &a->n_issuers, opt + 13);
		else if (strncmp(opt, "trust_root=", 11) == 0 && opt[11])
			a->o.trust_root = opt + 11;
		else if (strncmp(opt, "cache_dir=", 10) == 0)
			a->o.cache_dir = opt + 10;
		else if (strncmp(opt, "pickle=", 7) == 0)
			ret = mfs_pickle_policy_parse(opt + 7, &a->o.pickle);
		else if (strncmp(opt, "policy=", 7) == 0 && opt[7])
			a->o.policy = opt + 7;
		else if (strncmp(opt, "name_check=", 11) == 0)
			ret = mv_name_check_parse(opt + 11, &a->o.name_check);
		else if (strncmp(opt, "cache_size=", 11) == 0)
			ret = parse_cache_size(a, opt + 11);
		else if (strncmp(opt, "ready_file=", 11) == 0 && opt[11])
			a->o.ready_file = opt + 11;
		else if (strcmp(opt, "watch") == 0)
			a->o.watch = true;
		else if (strncmp(opt, "prefetch=", 9) == 0 && opt[9])
			ret = add_prefetch(a, opt + 9);
		else if (strcmp(opt, "ready_after_prefetch") == 0)
			a->o.ready_after_prefetch = true;
		else if (strcmp(opt, "verified_readahead") == 0)
			a->o.readahead = true;
		else if (strcmp(opt, "no_prefetch") == 0)
			a->o.readahead = false;
		else if (strncmp(opt, "uid=", 4) == 0)
			ret = parse_id(opt + 4, "uid", &a->o.set_uid, &a->o.uid);
		else if (strncmp(opt, "gid=", 4) == 0)
			ret = parse_id(opt + 4, "gid", &a->o.set_gid, &a->o.gid);
		else if (strncmp(opt, "umask=", 6) == 0)
			ret = parse_umask(a, opt + 6);
		else if (strncmp(opt, "control_access=", 15) == 0)
			ret = parse_control(a, opt + 15);
		else if (strncmp(opt, "unmount_timeout=", 16) == 0)
			ret = parse_timeout(a, opt + 16);
		else if (strncmp(opt, "watch_interval=", 15) == 0)
			ret = parse_watch_interval(a, opt + 15);
		else if (strncmp(opt, "tree_builders=", 14) == 0)
			ret = parse_builders(a, opt + 14);
		else if (strncmp(opt, "tree_build_wait=", 16) == 0)
			ret = parse_build_wait(a, opt + 16);
		else if (strcmp(opt, "keep_backing_cache") == 0)
			a->o.keep_backing_cache = true;
		else if (strncmp(opt, "ca_cert=", 8) == 0 && opt[8])
			a->o.ca_cert = opt + 8;
		else if (strcmp(opt, "insecure") == 0)
			a->o.insecure = true;
		else if (strncmp(opt, "remote_cache_size=", 18) == 0)
			ret = parse_remote_cache_size(a, opt + 18);
		else if (strcmp(opt, "relatime") == 0 || strcmp(opt, "norelatime") == 0 ||
		         strcmp(opt, "strictatime") == 0 || strcmp(opt, "nostrictatime") == 0 ||
		         strcmp(opt, "lazytime") == 0 || strcmp(opt, "nolazytime") == 0 ||
		         strcmp(opt, "diratime") == 0 || strcmp(opt, "nodiratime") == 0)
			continue; /* fstab atime options reach us through mount.fuse3 and FUSE
			           * rejects them; a read-only mount updates no atime anyway */
		else
			ret = add_fuse_opt(a, opt);
		if (ret) {
			cli_error("mount: bad option '%s'", opt);
			return ret;
		}
	}
	return 0;
}

enum {
	OPT_TRUST = 256,
	OPT_TRUST_CA,
	OPT_TRUST_IDENTITY,
	OPT_TRUST_ISSUER,
	OPT_TRUST_ROOT,
	OPT_PICKLE,
	OPT_CACHE_DIR,
	OPT_HCACHE,
	OPT_THREADS,
	OPT_POLICY,
	OPT_CACHE_SIZE,
	OPT_READY_FILE,
	OPT_WATCH,
	OPT_WATCH_INTERVAL,
	OPT_PREFETCH,
	OPT_READY_AFTER_PREFETCH,
	OPT_NO_PREFETCH,
	OPT_VERIFIED_READAHEAD,
	OPT_UNMOUNT_TIMEOUT,
	OPT_UID,
	OPT_GID,
	OPT_UMASK,
	OPT_CONTROL_ACCESS,
	OPT_NAME_CHECK,
	OPT_TREE_BUILDERS,
	OPT_TREE_BUILD_WAIT,
	OPT_KEEP_BACKING_CACHE,
	OPT_CA_CERT,
	OPT_INSECURE,
	OPT_REMOTE_CACHE_SIZE,
};

static const struct option long_opts[] = {
    {"trust", required_argument, NULL, OPT_TRUST},
    {"trust-ca", required_argument, NULL, OPT_TRUST_CA},
    {"trust-identity", required_argument, NULL, OPT_TRUST_IDENTITY},
    {"trust-issuer", required_argument, NULL, OPT_TRUST_ISSUER},
    {"trust-root", required_argument, NULL, OPT_TRUST_ROOT},
    {"pickle", required_argument, NULL, OPT_PICKLE},
    {"policy", required_argument, NULL, OPT_POLICY},
    {"name-check", required_argument, NULL, OPT_NAME_CHECK},
    {"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
    {"hblock-cache", required_argument, NULL, OPT_HCACHE},
    {"cache-size", required_argument, NULL, OPT_CACHE_SIZE},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"tree-builders", required_argument, NULL, OPT_TREE_BUILDERS},
    {"tree-build-wait", required_argument, NULL, OPT_TREE_BUILD_WAIT},
    {"keep-backing-cache", no_argument, NULL, OPT_KEEP_BACKING_CACHE},
    {"ca-cert", required_argument, NULL, OPT_CA_CERT},
    {"insecure", no_argument, NULL, OPT_INSECURE},
    {"remote-cache-size", required_argument, NULL, OPT_REMOTE_CACHE_SIZE},
    {"ready-file", required_argument, NULL, OPT_READY_FILE},
    {"watch", no_argument, NULL, OPT_WATCH},
    {"watch-interval", required_argument, NULL, OPT_WATCH_INTERVAL},
    {"prefetch", required_argument, NULL, OPT_PREFETCH},
    {"ready-after-prefetch", no_argument, NULL, OPT_READY_AFTER_PREFETCH},
    {"no-prefetch", no_argument, NULL, OPT_NO_PREFETCH},
    {"verified-readahead", no_argument, NULL, OPT_VERIFIED_READAHEAD},
    {"unmount-timeout", required_argument, NULL, OPT_UNMOUNT_TIMEOUT},
    {"uid", required_argument, NULL, OPT_UID},
    {"gid", required_argument, NULL, OPT_GID},
    {"umask", required_argument, NULL, OPT_UMASK},
    {"control-access", required_argument, NULL, OPT_CONTROL_ACCESS},
    {"foreground", no_argument, NULL, 'f'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Parses argv into @a. Return: 0, 1 for --help, or -EINVAL. */
static int parse_args(int argc, char **argv, struct mount_args *a)
{
	unsigned long long size;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "fdho:", long_opts, NULL)) != -1) {
		int ret = 0;

		switch (c) {
		case 'f': a->o.foreground = true; break;
		case 'd': a->o.debug = true; break;
		case 'h': return 1;
		case 'o': ret = parse_o(a, optarg); break;
		case OPT_TRUST: ret = add_trust(a->keys, &a->o.n_trust_keys, optarg); break;
		case OPT_TRUST_CA: ret = add_trust(a->cas, &a->o.n_trust_cas, optarg); break;
		case OPT_TRUST_IDENTITY:
			ret = add_trust(a->identities, &a->o.n_trust_identities, optarg);
			break;
		case OPT_TRUST_ISSUER: ret = add_trust(a->issuers, &a->n_issuers, optarg); break;
		case OPT_TRUST_ROOT: a->o.trust_root = optarg; break;
		case OPT_CACHE_DIR: a->o.cache_dir = optarg; break;
		case OPT_POLICY: a->o.policy = optarg; break;
		case OPT_NAME_CHECK:
			ret = mv_name_check_parse(optarg, &a->o.name_check);
			if (ret)
				cli_error("mount: --name-check must be suffix, exact or off");
			break;
		case OPT_PICKLE:
			ret = mfs_pickle_policy_parse(optarg, &a->o.pickle);
			if (ret)
				cli_error("mount: --pickle must be transcode, hide, show or deny");
			break;
		case OPT_HCACHE:
			ret = cli_parse_size(optarg, &size);
			if (ret || size < (64u << 10) || size > (1ull << 40)) {
				cli_error("mount: bad --hblock-cache size '%s'", optarg);
				ret = -EINVAL;
			}
			a->o.hblock_cache_bytes = (size_t)size;
			break;
		case OPT_CACHE_SIZE: ret = parse_cache_size(a, optarg); break;
		case OPT_READY_FILE: a->o.ready_file = optarg; break;
		case OPT_PREFETCH: ret = add_prefetch(a, optarg); break;
		case OPT_READY_AFTER_PREFETCH: a->o.ready_after_prefetch = true; break;
		case OPT_NO_PREFETCH: a->o.readahead = false; break;
		case OPT_VERIFIED_READAHEAD: a->o.readahead = true; break;
		case OPT_WATCH: a->o.watch = true; break;
		case OPT_WATCH_INTERVAL: ret = parse_watch_interval(a, optarg); break;
		case OPT_UNMOUNT_TIMEOUT: ret = parse_timeout(a, optarg); break;
		case OPT_UID: ret = parse_id(optarg, "--uid", &a->o.set_uid, &a->o.uid); break;
		case OPT_GID: ret = parse_id(optarg, "--gid", &a->o.set_gid, &a->o.gid); break;
		case OPT_UMASK: ret = parse_umask(a, optarg); break;
		case OPT_CONTROL_ACCESS: ret = parse_control(a, optarg); break;
		case OPT_TREE_BUILDERS: ret = parse_builders(a, optarg); break;
		case OPT_TREE_BUILD_WAIT: ret = parse_build_wait(a, optarg); break;
		case OPT_KEEP_BACKING_CACHE: a->o.keep_backing_cache = true; break;
		case OPT_CA_CERT: a->o.ca_cert = optarg; break;
		case OPT_INSECURE: a->o.insecure = true; break;
		case OPT_REMOTE_CACHE_SIZE: ret = parse_remote_cache_size(a, optarg); break;
		case OPT_THREADS:
			ret = cli_parse_uint(optarg, 0, 1024, &a->o.threads);
			if (ret || a->o.threads == 0) {
				cli_error("mount: bad --threads '%s'", optarg);
				ret = -EINVAL;
			}
			break;
		default: return -EINVAL;
		}
		if (ret)
			return -EINVAL;
	}
	if (argc - optind != 2) {
		cli_error("mount: expected STORE and MOUNTPOINT");
		return -EINVAL;
	}
	a->o.store = argv[optind];
	a->o.mountpoint = argv[optind + 1];
	return 0;
}

static void print_help(void)
{
	cli_usage("mount");
	fputs("\nOptions:\n"
	      "  -f, --foreground     stay in the foreground, log to stderr\n"
	      "  -d                   FUSE debug output (implies -f)\n"
	      "  -o OPT[,OPT...]      FUSE mount options; also nonempty, trust=KEY,\n"
	      "                       trust_ca=CA, trust_identity=ID, trust_issuer=URL,\n"
	      "                       trust_root=FILE, pickle=POLICY, policy=FILE, cache_dir=DIR,\n"
	      "                       cache_size=SIZE, ready_file=PATH, watch,\n"
	      "                       watch_interval=SECONDS,\n"
	      "                       prefetch=PATTERN, ready_after_prefetch, no_prefetch,\n"
	      "                       verified_readahead,\n"
	      "                       unmount_timeout=SECONDS, name_check=MODE, uid=N,\n"
	      "                       gid=N, umask=MASK, control_access=WHO,\n"
	      "                       tree_builders=N, tree_build_wait=SECONDS,\n"
	      "                       keep_backing_cache, ca_cert=FILE, insecure,\n"
	      "                       remote_cache_size=SIZE\n"
	      "  --trust KEY.pub      trust this public key (repeatable)\n"
	      "  --trust-ca CA.pem    trust certificates issued by this CA (repeatable)\n"
	      "  --trust-identity ID --trust-issuer URL\n"
	      "                       trust keyless (Sigstore) signatures by this\n"
	      "                       certificate identity of this OIDC issuer (repeatable,\n"
	      "                       paired in order; docs/policy.md)\n"
	      "  --trust-root FILE    Sigstore trusted root for keyless signatures\n"
	      "                       (default: the public-good root tools/bootstrap installs)\n"
	      "  --pickle POLICY      transcode (default: safe checkpoints appear as\n"
	      "                       safetensors), hide, show or deny pickle files\n"
	      "  --policy FILE.json   trust policy: models it refuses are absent, and\n"
	      "                       its per-path pickle policy wins (docs/policy.md)\n"
	      "  --name-check MODE    a model's signed name must fit its store path:\n"
	      "                       suffix (default: \"m1\" fits org/m1), exact, or off\n"
	      "  --cache-dir DIR      where built trees and transcoded files go\n"
	      "                       (default /var/cache/modelfs as root)\n"
	      "  --hblock-cache SIZE  memory for verified hash blocks (default 32M)\n"
	      "  --cache-size SIZE    memory for decompressed, verified frames of packed\n"
	      "                       files (default 64M)\n"
	      "  --threads N          FUSE worker threads (default: number of CPUs)\n"
	      "  --tree-builders N    threads that build missing Merkle trees, off the FUSE\n"
	      "                       workers (1 to 16, default 2; 64 more builds may queue)\n"
	      "  --tree-build-wait S  an open (or lookup) needing a tree being built waits\n"
	      "                       at most S seconds (default 30, fractions allowed), then\n"
	      "                       gets EIO while the build goes on (docs/mount.md)\n"
	      "  --keep-backing-cache keep the store's files in the page cache after their\n"
	      "                       bytes were verified and served (default: dropped, so\n"
	      "                       a model is cached once, by the mount)\n"
	      "  --ready-file PATH    write PATH (pid=, mountpoint=, models=) once the mount\n"
	      "                       answers; removed when it stops (docs/operations.md)\n"
	      "  --watch              rescan the store when it changes (live reload); a\n"
	      "                       registry is polled for tags that moved\n"
	      "  --watch-interval S   seconds between those polls (default 60)\n"
	      "  --prefetch PATTERN   once mounted, read and verify the files matching\n"
	      "                       PATTERN (a glob of paths under the mountpoint, a\n"
	      "                       file name, or a model's folder) into the page cache;\n"
	      "                       repeatable; progress in status.json\n"
	      "  --ready-after-prefetch  write the ready file only once --prefetch is done\n"
	      "  --verified-readahead verify the next 32 MiB of a sequential reader or mmap\n"
	      "                       on other threads and push it into the page cache\n"
	      "                       (experimental, off by default: docs/mount.md)\n"
	      "  --no-prefetch        no verified read-ahead (the default)\n"
	      "  --unmount-timeout S  on SIGTERM/SIGINT, unmount and exit within S seconds\n"
	      "                       (default 10); a busy mount is detached lazily\n"
	      "\nA registry as the store (STORE = oci://REGISTRY/REPO:TAG or @sha256:HEX, or\n"
	      "a store file mapping mount paths to such references; docs/remote.md, \"Lazy\n"
	      "mount\"): models pushed by `modelfs push`, read block by block with ranged\n"
	      "GETs; credentials from the auth files; SIGHUP or --watch picks up moved tags.\n"
	      "  --ca-cert FILE       trust this PEM CA for the registry's TLS certificate\n"
	      "  --insecure           allow plain http to a host that is not loopback\n"
	      "  --remote-cache-size SIZE\n"
	      "                       bound of the verified block cache of remote files in\n"
	      "                       the cache folder (default 10G; 0: none)\n"
	      "\nOwners and permissions (docs/mount.md): files and folders show the store's\n"
	      "owner, group and mode without write bits; the kernel enforces them.\n"
	      "  --uid N              show every file and folder as owned by user N\n"
	      "  --gid N              show every file and folder in group N\n"
	      "  --umask MASK         clear these octal mode bits from everything shown\n"
	      "                       (e.g. 0027: nothing for others)\n"
	      "  --control-access WHO who may read MOUNTPOINT/.modelfs (status, metrics,\n"
	      "                       BOMs): owner (default: the mount's user) or all\n",
	      stderr);
}

int cmd_mount(int argc, char **argv)
{
	struct mount_args a;
	struct mv_err err = {0};
	int ret;

	memset(&a, 0, sizeof(a));
	a.o.pickle = MFS_PICKLE_TRANSCODE;
	a.o.trust_keys = a.keys;
	a.o.trust_cas = a.cas;
	a.o.trust_identities = a.identities;
	a.o.trust_issuers = a.issuers;
	a.o.prefetch = a.prefetch;
	ret = parse_args(argc, argv, &a);
	if (!ret && a.n_issuers != a.o.n_trust_identities) {
		cli_error("mount: give one --trust-issuer URL for each --trust-identity ID");
		ret = -EINVAL;
	}
	if (ret) {
		free(a.fuse_opts);
		if (ret > 0) {
			print_help();
			return EXIT_OK;
		}
		return cli_usage("mount");
	}
	a.o.fuse_opts = a.fuse_opts;
	ret = mfs_mount_main(&a.o, &err);
	free(a.fuse_opts);
	if (ret) {
		/* Every setup failure is a usage or I/O problem, even a bad key. */
		cli_error("%s", err.msg[0] ? err.msg : strerror(-ret));
		return EXIT_USAGE_IO;
	}
	return EXIT_OK;
}
