"""The code's layout rules (docs/architecture.md), checked on the sources and
on the built libraries (suite 'layout').

- Calls go one way: tools -> fs -> cache -> verity. fs/ is three folders,
  one library each: fs/mount (libfs) -> fs/transcode (libfstranscode) ->
  fs/format (libfsformat), and the formats and transcoder use only verity;
  within verity, packing (libvpack) and
  provenance (libvprov) sit on the core, which uses neither (nor zstd). Checked twice: no source includes a
  header of a library above its own, and no static library has an
  undefined symbol that a library above it defines (`nm` on the .a files
  of MODELFS_BUILD).
- Internal headers stay inside: each group header (store_int.h, vread_int.h,
  ...) only in the files of its group, mount_int.h only in the mount
  library, fmt_internal.h only in fs/format and fs/transcode (its one
  client above), tx_internal.h only in fs/transcode (and tests, fuzzers).
- Subcommands do not call each other: tools/cmd_X.c calls no cmd_Y().
- No source file over 1,000 lines unless its top comment says why ("Over
  1,000 lines:").
"""
import os
import pathlib
import re
import subprocess

import pytest

TOP = pathlib.Path(__file__).resolve().parents[2]
MAX_LINES = 1000
REASON = "Over 1,000 lines:"


def sources(folder, exts=(".c", ".h")):
    return sorted(p for p in (TOP / folder).iterdir() if p.suffix in exts)


def includes(path) -> set:
    return set(re.findall(r'^#include\s+[<"]([^>"]+)[>"]', path.read_text(), re.M))


def meson_list(path, var) -> list:
    """The quoted file names of `var = files(...)` in a meson.build."""
    text = path.read_text()
    m = re.search(var + r"\s*=\s*files\((.*?)\)", text, re.S)
    assert m, f"{path}: no {var}"
    return re.findall(r"'([^']+)'", m.group(1))


FS_LIBS = {"format": "fs_format_sources", "transcode": "fs_transcode_sources",
           "remote": "fs_remote_sources", "mount": "fs_mount_sources"}
FS_FILES = {sub: meson_list(TOP / "fs" / sub / "meson.build", var)
            for sub, var in FS_LIBS.items()}

# Headers a library's sources may not include: those of the libraries above.
FORBIDDEN = {
    "verity": {"cache.h", "fs.h", "mount_int.h", "store_int.h", "fmt_internal.h",
               "tx_internal.h", "cli.h", "fuse_lowlevel.h", "fuse.h", "fsremote.h",
               "remote_int.h", "push_int.h", "pull_int.h", "curl/curl.h"},
    "cache": {"fs.h", "mount_int.h", "store_int.h", "fmt_internal.h", "tx_internal.h",
              "cli.h", "fuse_lowlevel.h", "fuse.h", "fsremote.h", "remote_int.h", "push_int.h", "pull_int.h"},
    "format": {"cache.h", "fs.h", "fstranscode.h", "fsmount.h", "tx_internal.h",
               "mount_int.h", "store_int.h", "cli.h", "fuse_lowlevel.h", "fuse.h",
               "fsremote.h", "remote_int.h", "push_int.h", "pull_int.h"},
    "transcode": {"cache.h", "fs.h", "fsmount.h", "mount_int.h", "store_int.h", "cli.h",
                  "fuse_lowlevel.h", "fuse.h", "fsremote.h", "remote_int.h", "push_int.h", "pull_int.h"},
    # OCI registries: on libverity and libcurl only
    "remote": {"cache.h", "fs.h", "fsformat.h", "fstranscode.h", "fsmount.h", "fmt_internal.h",
               "tx_internal.h", "mount_int.h", "store_int.h", "bstore.h", "cli.h",
               "fuse_lowlevel.h", "fuse.h", "vpack.h", "vprov.h"},
    "mount": {"cli.h"},
}
FS_FOLDERS = ["fs/" + sub for sub in FS_LIBS]


def library_of(path) -> str:
    """verity, cache, tools, or format / transcode / mount for fs/ files."""
    return path.parent.name


@pytest.mark.parametrize("folder", ["verity", "cache"] + FS_FOLDERS)
def test_no_upward_includes(folder):
    bad = []
    for p in sources(folder):
        lib = library_of(p)
        for h in includes(p) & FORBIDDEN.get(lib, set()):
            bad.append(f"{p.relative_to(TOP)} ({lib}) includes {h}")
    assert not bad, "\n".join(bad)


# Group headers: shared by a few files of one concern, included by no other.
GROUP_HEADERS = {
    "store_int.h": {"store.c", "node.c", "rescan.c", "backing.c"},
    "vread_int.h": {"vread.c", "ftree.c", "fdcache.c", "zfile.c"},
    "daemon_int.h": {"daemon.c", "session.c", "cachedir.c"},
    "txview_int.h": {"txview.c", "txcache.c"},
    "stats_int.h": {"status.c", "metrics.c"},
    "zpack_internal.h": {"zpack.c", "zpack_write.c", "zpack_model.c"},
    "policy_int.h": {"policy.c", "policy_check.c"},
    "push_int.h": {"artifact.c", "push.c"},
    "pull_int.h": {"pull.c", "blob.c"},
}


def test_internal_headers_stay_inside():
    bad = []
    for folder in ["verity", "cache", "tools"] + FS_FOLDERS:
        for p in sources(folder):
            inc = includes(p)
            for h, users in GROUP_HEADERS.items():
                if h in inc and p.name not in users | {h}:
                    bad.append(f"{p.relative_to(TOP)} includes {h}")
            if "mount_int.h" in inc and library_of(p) != "mount":
                bad.append(f"{p.relative_to(TOP)} includes mount_int.h")
            if "fmt_internal.h" in inc and library_of(p) not in ("format", "transcode"):
                bad.append(f"{p.relative_to(TOP)} includes fmt_internal.h")
            if "tx_internal.h" in inc and library_of(p) != "transcode":
                bad.append(f"{p.relative_to(TOP)} includes tx_internal.h")
            if "remote_int.h" in inc and library_of(p) != "remote":
                bad.append(f"{p.relative_to(TOP)} includes remote_int.h")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("sub", sorted(FS_LIBS))
def test_every_fs_source_is_in_its_library(sub):
    on_disk = {p.name for p in sources("fs/" + sub, (".c",))}
    assert on_disk == set(FS_FILES[sub])


def test_fs_has_no_loose_sources():
    """fs/ holds only its folders, the umbrella fs.h and meson.build."""
    loose = sorted(p.name for p in (TOP / "fs").iterdir()
                   if p.is_file() and p.name not in ("fs.h", "meson.build"))
    assert not loose, loose


def test_subcommands_do_not_call_each_other():
    bad = []
    for p in sorted((TOP / "tools").glob("cmd_*.c")):
        own = "cmd_" + p.stem[len("cmd_"):]
        text = re.sub(r"/\*.*?\*/", "", p.read_text(), flags=re.S)
        for called in set(re.findall(r"\b(cmd_[a-z_]+)\s*\(", text)) - {own}:
            bad.append(f"{p.name} calls {called}()")
    assert not bad, "\n".join(bad)


def test_no_source_file_over_1000_lines_without_a_reason():
    bad = []
    for folder in ["verity", "cache", "tools"] + FS_FOLDERS:
        for p in sources(folder):
            lines = p.read_text().split("\n")
            if len(lines) > MAX_LINES and REASON not in "\n".join(lines[:60]):
                bad.append(f"{p.relative_to(TOP)}: {len(lines)} lines")
    assert not bad, "\n".join(bad)


# --------------------------------------------------------------------------
# the built libraries
# --------------------------------------------------------------------------

def build_dir() -> pathlib.Path:
    d = os.environ.get("MODELFS_BUILD")
    if not d:
        pytest.skip("MODELFS_BUILD not set")
    return pathlib.Path(d)


def symbols(lib: pathlib.Path):
    """(defined, undefined) global symbols of a static library."""
    out = subprocess.run(["nm", "-g", "--defined-only", str(lib)], capture_output=True,
                         text=True, check=True).stdout
    defined = {ln.split()[-1] for ln in out.splitlines() if len(ln.split()) == 3}
    out = subprocess.run(["nm", "-g", "--undefined-only", str(lib)], capture_output=True,
                         text=True, check=True).stdout
    undefined = {ln.split()[-1] for ln in out.splitlines() if ln.strip()}
    return defined, undefined - defined


# Each library, and the libraries above it whose symbols it may not use.
LIBS = {
    "verity": ["vpack", "vprov", "cache", "fsformat", "fstranscode", "fs", "fsremote"],
    "vpack": ["vprov", "cache", "fsformat", "fstranscode", "fs", "fsremote"],
    "vprov": ["vpack", "cache", "fsformat", "fstranscode", "fs", "fsremote"],
    "cache": ["vprov", "fsformat", "fstranscode", "fs", "fsremote"],
    "fsformat": ["vpack", "vprov", "cache", "fstranscode", "fs", "fsremote"],
    "fstranscode": ["vpack", "vprov", "cache", "fs", "fsremote"],
    "fsremote": ["vpack", "vprov", "cache", "fsformat", "fstranscode", "fs"],
}


def static_lib(name) -> pathlib.Path:
    folder = {"verity": "verity", "vpack": "verity", "vprov": "verity", "cache": "cache",
              "fsformat": "fs/format", "fstranscode": "fs/transcode", "fs": "fs/mount",
              "fsremote": "fs/remote"}[name]
    path = build_dir() / folder / f"lib{name}.a"
    if not path.exists():
        pytest.skip(f"{path} not built")
    return path


@pytest.mark.parametrize("lib", sorted(LIBS))
def test_no_library_uses_one_above_it(lib):
    _, undefined = symbols(static_lib(lib))
    bad = []
    for above in LIBS[lib]:
        defined, _ = symbols(static_lib(above))
        bad += [f"lib{lib}.a uses {s} from lib{above}.a" for s in sorted(undefined & defined)]
    assert not bad, "\n".join(bad)


def test_formats_and_core_need_no_fuse():
    for lib in ("verity", "vpack", "vprov", "cache", "fsformat", "fstranscode", "fsremote"):
        _, undefined = symbols(static_lib(lib))
        fuse = sorted(s for s in undefined if s.startswith("fuse_"))
        assert not fuse, f"lib{lib}.a uses {fuse}"


def test_verity_core_needs_no_zstd():
    """Only libvpack (packing) uses libzstd."""
    for lib in ("verity", "vprov", "fsformat", "fstranscode", "fsremote"):
        _, undefined = symbols(static_lib(lib))
        zstd = sorted(s for s in undefined if s.startswith("ZSTD_"))
        assert not zstd, f"lib{lib}.a uses {zstd}"


# The mount reaches the store only through the backing-store interface
# (struct mfs_bstore_ops, docs/architecture.md "The backing store"): the
# system calls that open, list, stat or watch store paths appear only in
# the local store's file, and elsewhere only on this machine's own folders.
STORE_CALLS = re.compile(r"(?<![\w.>])(openat|fstatat|fdopendir|readdir|inotify_add_watch|"
                         r"mfs_openat_nofollow)\s*\(")
STORE_CALLS_ALLOWED = {
    "bstore_local.c": "the local folder as a backing store",
    "backing.c": "MFS_AT_HOST opens of the cache folder",
    "cachedir.c": "the cache folder",
    "txcache.c": "the transcode cache in the cache folder",
    "daemon.c": "the mountpoint (empty?) and the store root, the local store's set-up",
    "fdcache.c": "/proc/self/fd, counting open descriptors",
    "prefetch.c": "the mountpoint: --prefetch reads files through the mount",
    "bstore_oci.c": "a registry as a backing store: its model folder in the cache folder",
    "bstore_oci_cache.c": "a registry's signature and trees written to the cache folder",
    "bstore_oci_blocks.c": "a registry's blob chunks kept in the cache folder (oci-blobs/)",
}


def test_store_reached_only_through_the_backing_store_interface():
    bad = []
    for p in sources("fs/mount", (".c",)):
        if p.name in STORE_CALLS_ALLOWED:
            continue
        text = re.sub(r"/\*.*?\*/", "", p.read_text(), flags=re.S)
        for call in sorted(set(STORE_CALLS.findall(text))):
            bad.append(f"{p.relative_to(TOP)} calls {call}() (use m->bstore.ops)")
    assert not bad, "\n".join(bad)


def test_only_fsremote_uses_curl():
    """libcurl is libfsremote's (docs/dependencies.md): no other library calls it."""
    for lib in ("verity", "vpack", "vprov", "cache", "fsformat", "fstranscode", "fs"):
        _, undefined = symbols(static_lib(lib))
        curl = sorted(s for s in undefined if s.startswith("curl_"))
        assert not curl, f"lib{lib}.a uses {curl}"
