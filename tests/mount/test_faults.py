"""Issue #12 section 2: a faulty backing store under a real modelfs mount (as root).

No mocks. The store is served by faultfs (tests/faultfs/faultfs.c), a small
passthrough FUSE file system built with the tests, whose faults are rules
written at run time to FAULTFS_MOUNT/.faultctl (syntax in faultfs.c's header
and docs/reliability.md): EIO, short reads and delays on byte ranges, EMFILE
and ENFILE on open, ENOSPC on the cache's writes. faultfs serves files with
direct I/O, so each pread of the daemon reaches it with its own offset and a
rule hits exactly the bytes it names. Two faults come from the machine
itself: the daemon's own descriptor limit (prlimit) and a full tmpfs cache.

Layout of each test: SRC/store (sealed models) and SRC/cache, faultfs over
SRC at FF, modelfs mounted from FF/store with --cache-dir FF/cache. Every
mount, faultfs and modelfs, is unmounted in a finally (context managers).

Oracles: the original bytes (every byte the reader gets must equal them, a
read covering a failed block must end before it with EIO), `cmp`, the status
counters and metrics.prom (docs/metrics.md), the daemon's log lines
(docs/operations.md), faultfs's hit counts (the fault really fired), the
cache folder's listing on disk, and `modelfs transcode` for the view's bytes.
After every fault is cleared the same reads must succeed without remounting
(the page cache is dropped first: keep_cache would serve earlier good pages).
"""
import contextlib
import errno
import importlib.util
import json
import os
import pathlib
import re
import resource
import shutil
import subprocess
import threading
import time

import pytest

from conftest import ROOT, run_modelfs
from test_metrics import parse_exposition
from test_reload import exposed, sighup
from test_mount import (FuseProcess, Mount, drop_caches, force_unmount, is_mounted,  # noqa: F401
                        keys, seal, write)

BS = 4096  # the Merkle block size `modelfs seal` uses by default
SIZE = 256 * BS + 1234  # w.bin: 256 whole blocks and a partial one
BAD = 100  # the block the EIO and short-read tests fail


def faultfs_bin() -> pathlib.Path:
    build = pathlib.Path(os.environ.get("MODELFS_BUILD", str(ROOT / "build")))
    return build / "tests" / "faultfs" / "faultfs"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

class FaultFS(FuseProcess):
    """faultfs -f SRC MNT in a subprocess; always unmounted on exit."""

    what = "faultfs"

    def __init__(self, src, mnt):
        self.src, self.mnt = pathlib.Path(src), pathlib.Path(mnt)
        self.mnt.mkdir(parents=True, exist_ok=True)
        self.logpath = self.mnt.parent / (self.mnt.name + ".log")
        self.proc = None
        exe = faultfs_bin()
        if not exe.is_file():
            pytest.fail(f"faultfs not built at {exe} (set MODELFS_BUILD to the build folder)")
        self.args = [str(exe), "-f", str(self.src), str(self.mnt)]

    def rules(self, *lines):
        """Sends one batch of rule lines (one write: applied whole or not at all)."""
        fd = os.open(self.mnt / ".faultctl", os.O_WRONLY)
        try:
            os.write(fd, "".join(ln + "\n" for ln in lines).encode())
        finally:
            os.close(fd)

    def clear(self):
        self.rules("clear")

    def hits(self) -> dict:
        """{rule text: requests it changed} of the rules in place."""
        out = {}
        for ln in (self.mnt / ".faultctl").read_text().splitlines():
            text, _, n = ln.rpartition(" hits=")
            out[text] = int(n)
        return out


@contextlib.contextmanager
def rig(tmp_path, keys, store, *extra):  # noqa: F811
    """modelfs over faultfs: yields (faultfs, mount). The store is copied into SRC.
    Verified read-ahead is off: these tests count what each reader's READs
    meet, and a prefetch window is a second reader (its own faults are in
    test_prefetch.py)."""
    src = tmp_path / "src"
    shutil.copytree(store, src / "store", symlinks=True)
    with FaultFS(src, tmp_path / "ff") as ff:
        with Mount(ff.mnt / "store", tmp_path / "mnt", f"{keys['trusted']}.pub", "--no-prefetch",
                   *extra, cache=ff.mnt / "cache") as m:
            yield ff, m


def counters(m) -> dict:
    return m.status()["counters"]


def metrics(m) -> list:
    """The samples of metrics.prom, checked by the strict parser: [(name, labels, value)]."""
    fams = parse_exposition((m.mnt / ".modelfs" / "metrics.prom").read_text())
    return [s for fam in fams.values() for s in fam["samples"]]


def metric(m, name, **labels) -> float:
    for n, lab, v in metrics(m):
        if n == name and all(lab.get(k) == val for k, val in labels.items()):
            return v
    raise KeyError(name)


def log_lines(m, kind) -> list:
    return [ln for ln in m.log().splitlines() if re.search(rf"\b{kind} ", ln)]


def open_random(path) -> int:
    """An fd without readahead: each pread asks the mount for exactly its pages."""
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    return fd


def careful_read(fd, off, n):
    """Reads as a careful program does, resuming after short counts.

    Returns (bytes, errno or None): what came before the first error, EOF or n bytes.
    """
    out = b""
    while len(out) < n:
        try:
            chunk = os.pread(fd, n - len(out), off + len(out))
        except OSError as e:
            return out, e.errno
        if not chunk:
            break
        out += chunk
    return out, None


def check_read(fd, data, off, n, bad_lo, bad_hi):
    """A read gets only original bytes; one covering [bad_lo, bad_hi) ends before it with EIO.

    Returns True when the read hit the bad range.
    """
    got, err = careful_read(fd, off, n)
    assert got == data[off:off + len(got)], f"wrong bytes served at {off}+{len(got)}"
    end = min(off + n, len(data))
    if off < bad_hi and end > bad_lo:
        assert err == errno.EIO, (off, n, err, len(got))
        assert not got or off + len(got) <= bad_lo, "bytes of the failed block were served"
        return True
    assert err is None and got == data[off:end], (off, n, err, len(got))
    return False


def blocks_sweep(path, data, bad_lo, bad_hi) -> int:
    """Reads every block, then ranges around the bad one. Returns the reads that failed."""
    drop_caches()
    fd = open_random(path)
    failed = 0
    try:
        for off in range(0, len(data), BS):
            failed += check_read(fd, data, off, BS, bad_lo, bad_hi)
        for off, n in [(bad_lo - BS, 3 * BS), (bad_lo + BS - 1, 1), (bad_lo - 1, 2),
                       (bad_lo - 8 * BS, 8 * BS), (bad_hi, 8 * BS), (0, len(data))]:
            failed += check_read(fd, data, off, n, bad_lo, bad_hi)
    finally:
        os.close(fd)
    return failed


def assert_reads_again(path, data):
    """After the fault is gone: the same file reads whole, without remounting."""
    drop_caches()
    assert path.read_bytes() == data
    fd = open_random(path)
    try:
        for off in range(0, len(data), 16 * BS):
            assert os.pread(fd, 16 * BS, off) == data[off:off + 16 * BS], off
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def plain(tmp_path_factory, keys):  # noqa: F811
    """A store with one model m: w.bin (SIZE random bytes) and other.bin."""
    store = tmp_path_factory.mktemp("faultstore") / "store"
    data = b"\0" + os.urandom(SIZE - 1)  # cannot start like a pickle
    write(store / "m" / "w.bin", data)
    write(store / "m" / "other.bin", b"\0" + os.urandom(16 * BS - 1))
    seal(store / "m", keys["trusted"])
    return store, data, (store / "m" / "other.bin").read_bytes()


# --------------------------------------------------------------------------
# EIO on one block
# --------------------------------------------------------------------------

def test_eio_fails_exactly_that_block(tmp_path, keys, plain):  # noqa: F811
    store, data, _ = plain
    lo, hi = BAD * BS, (BAD + 1) * BS
    rule = f"store/m/w.bin read=EIO from={lo} len={BS}"
    with rig(tmp_path, keys, store) as (ff, m):
        path = m.mnt / "m" / "w.bin"
        assert path.read_bytes() == data  # the tree is loaded, nothing fails yet
        before = counters(m)["verify_failures"]
        ff.rules(rule)
        t0 = time.time()
        failed = blocks_sweep(path, data, lo, hi)
        assert failed == 5  # the block itself and the 4 ranges that cover it
        # a plain sequential reader (with readahead) gets the good prefix, then EIO
        drop_caches()
        p = subprocess.run(["cmp", str(store / "m" / "w.bin"), str(path)], capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 2 and "Input/output error" in p.stderr, (p.returncode, p.stderr)
        assert "EOF" not in p.stdout + p.stderr and "differ" not in p.stdout
        elapsed = time.time() - t0
        hits = ff.hits()[rule]
        # counted: each failed read of the daemon once, for the mount and for its model
        c = counters(m)
        assert failed <= c["verify_failures"] - before <= hits
        assert metric(m, "modelfs_verify_failures_total", model="m") == c["verify_failures"]
        assert metric(m, "modelfs_failed_checks_total") == c["verify_failures"]
        assert c["open_failures"] == 0
        # logged: one line, naming the block's offset; repeats are rate limited
        lines = log_lines(m, "read-failure")
        assert lines and len(lines) <= 1 + elapsed / 10, lines
        assert (f'read-failure model=m file=w.bin offset={lo} reason="Input/output error"'
                in lines[0]), lines
        ff.clear()
        assert_reads_again(path, data)
        assert counters(m)["verify_failures"] == c["verify_failures"]  # nothing new failed


def test_eio_in_tree_file_heals_by_one_rebuild(tmp_path, keys, plain):  # noqa: F811
    """EIO on the store's hash blocks: the tree is rebuilt once from the data; bytes stay right."""
    store, data, _ = plain
    with rig(tmp_path, keys, store) as (ff, m):
        ff.rules(f"store/m/.modelfs/trees/*.tree read=EIO from={BS}")  # past the header
        path = m.mnt / "m" / "w.bin"
        assert path.read_bytes() == data
        assert_reads_again(path, data)
        assert sum(ff.hits().values()) >= 1
        c = counters(m)
        assert (c["tree_rebuilds"], c["trees_built"]) == (1, 1), c
        assert c["verify_failures"] >= 1  # the failed hash-block read is counted
        assert 'reason="tree: Input/output error"' in m.log()
        assert "tree-build model=m file=w.bin" in m.log()
        # the rebuilt tree is in the cache folder, not in the store
        assert len(list((tmp_path / "src" / "cache" / "trees").glob("*.tree"))) == 1


def test_tree_build_on_full_cache(tmp_path, keys, plain):  # noqa: F811
    """A missing tree is built into the cache: a full cache fails the open, leaves nothing."""
    store, data, _ = plain
    treeless = tmp_path / "treeless"
    shutil.copytree(store, treeless)
    shutil.rmtree(treeless / "m" / ".modelfs" / "trees")
    trees = tmp_path / "src" / "cache" / "trees"  # on disk
    with rig(tmp_path, keys, treeless) as (ff, m):
        ff.rules("cache* enospc")
        path = m.mnt / "m" / "w.bin"
        assert open_errno(path) == errno.EIO
        lines = log_lines(m, "tree-build-failed")
        assert lines and 'No space left on device"' in lines[0], lines
        assert list(trees.iterdir()) == []  # the temp tree file is gone
        assert counters(m)["trees_built"] == 0
        ff.clear()
        assert_reads_again(path, data)
        assert counters(m)["trees_built"] == 1
        assert [p.suffix for p in trees.iterdir()] == [".tree"]


# --------------------------------------------------------------------------
# short reads
# --------------------------------------------------------------------------

def test_short_read_is_never_served_as_data(tmp_path, keys, plain):  # noqa: F811
    store, data, _ = plain
    lo = BAD * BS
    orig = str(store / "m" / "w.bin")
    with rig(tmp_path, keys, store) as (ff, m):
        path = m.mnt / "m" / "w.bin"
        assert path.read_bytes() == data

        # 1. the backing file seems to end inside block BAD: EIO, never a short file
        ff.rules(f"store/m/w.bin short=0 from={lo + 100} len=1")
        assert blocks_sweep(path, data, lo, lo + BS) == 5
        drop_caches()
        p = subprocess.run(["cmp", orig, str(path)], capture_output=True, text=True, timeout=60)
        assert p.returncode == 2 and "Input/output error" in p.stderr, (p.returncode, p.stderr)
        assert "EOF" not in p.stdout + p.stderr
        line = log_lines(m, "read-failure")[0]
        assert f"offset={lo} " in line and "short read" in line, line

        # 2. ... inside the last, partial block: the tail is EIO, not a shorter file
        ff.rules("clear", f"store/m/w.bin short=0 from={SIZE - 100}")
        tail = SIZE // BS * BS
        assert blocks_sweep(path, data, tail, SIZE) == 4
        assert os.stat(path).st_size == SIZE

        # 3. every backing read returns at most 1000 bytes: slower, but whole and right
        ff.rules("clear", "store/m/w.bin short=1000")
        before = counters(m)["verify_failures"]
        drop_caches()
        p = subprocess.run(["cmp", orig, str(path)], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        assert blocks_sweep(path, data, SIZE, SIZE) == 0
        assert ff.hits()["store/m/w.bin short=1000"] > SIZE // 1000
        assert counters(m)["verify_failures"] == before

        ff.clear()
        assert_reads_again(path, data)


# --------------------------------------------------------------------------
# EMFILE and ENFILE on open
# --------------------------------------------------------------------------

def open_errno(path):
    try:
        os.close(os.open(path, os.O_RDONLY))
        return None
    except OSError as e:
        return e.errno


def test_emfile_enfile_on_open(tmp_path, keys, plain):  # noqa: F811
    """EMFILE, ENFILE from the store's open: EIO, counted as the daemon out of descriptors."""
    store, data, other = plain
    with rig(tmp_path, keys, store) as (ff, m):
        w, o = m.mnt / "m" / "w.bin", m.mnt / "m" / "other.bin"
        assert w.read_bytes() == data and o.read_bytes() == other  # formats and trees known
        before = counters(m)
        ff.rules("store/m/w.bin open=EMFILE", "store/m/other.bin open=ENFILE")
        assert open_errno(w) == errno.EIO
        assert open_errno(o) == errno.EIO
        # each open was tried again after shedding cached tree descriptors, then given up
        assert all(n >= 1 for n in ff.hits().values()), ff.hits()
        c = counters(m)
        assert c["fd_exhausted"] - before["fd_exhausted"] == 2
        assert metric(m, "modelfs_fd_exhausted_total") == c["fd_exhausted"]
        # not the store's fault: no open failure, nothing failed a check
        assert (c["open_failures"], c["verify_failures"]) == (0, 0), c
        # one line per interval for the whole mount: the ENFILE one is suppressed
        lines = log_lines(m, "fd-exhausted")
        assert len(lines) == 1, lines
        assert 'fd-exhausted where=backing reason="Too many open files"' in lines[0], lines
        # the mount says it is unhealthy (for a while after the last exhaustion)
        assert run_modelfs("status", m.mnt).returncode == 1
        ff.clear()
        assert_reads_again(w, data)
        assert_reads_again(o, other)


def test_daemon_out_of_descriptors(tmp_path, keys, plain):  # noqa: F811
    """The real EMFILE: the daemon's own descriptor limit (prlimit), then raised again."""
    store, data, _ = plain
    with rig(tmp_path, keys, store) as (ff, m):
        path = m.mnt / "m" / "w.bin"
        assert path.read_bytes() == data
        pid = m.proc.pid
        used = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
        lowest_free = min(set(range(len(used) + 1)) - used)
        old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        try:
            # A new descriptor must be below the limit, and none is free below it.
            # Below 3, closing cached tree descriptors cannot make room either.
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (min(lowest_free, 3), old[1]))
            assert open_errno(path) == errno.EIO
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, old)
        (line,) = log_lines(m, "fd-exhausted")
        assert 'where=backing reason="Too many open files"' in line, line
        c = counters(m)
        assert (c["fd_exhausted"], c["open_failures"], c["verify_failures"]) == (1, 0, 0), c
        assert_reads_again(path, data)


# --------------------------------------------------------------------------
# delays
# --------------------------------------------------------------------------

def timed_read(path, off, n):
    drop_caches()
    fd = open_random(path)
    try:
        t0 = time.monotonic()
        got = os.pread(fd, n, off)
        return got, time.monotonic() - t0
    finally:
        os.close(fd)


def test_delays_slow_but_correct(tmp_path, keys, plain):  # noqa: F811
    store, data, other = plain
    with rig(tmp_path, keys, store) as (ff, m):
        w, o = m.mnt / "m" / "w.bin", m.mnt / "m" / "other.bin"
        assert w.read_bytes() == data and o.read_bytes() == other
        ff.rules(f"store/m/w.bin delay_ms=400 from={BAD * BS} len={BS}")
        got, dt = timed_read(w, BAD * BS, BS)
        assert got == data[BAD * BS:(BAD + 1) * BS] and dt >= 0.4, dt
        got, dt = timed_read(w, 0, BS)  # another range of the same file: not delayed
        assert got == data[:BS] and dt < 0.4, dt

        # a slow read holds one worker; the other files are still served meanwhile
        ff.rules("clear", "store/m/w.bin delay_ms=1500")
        drop_caches()
        res = {}
        t = threading.Thread(target=lambda: res.update(w=timed_read(w, 0, 2 * BS)))
        t.start()
        try:
            time.sleep(0.2)
            fd = open_random(o)
            try:
                t0 = time.monotonic()
                assert os.pread(fd, len(other), 0) == other
                fast = time.monotonic() - t0
            finally:
                os.close(fd)
        finally:
            t.join(timeout=30)
        assert fast < 1.0, fast
        assert res["w"][0] == data[:2 * BS] and res["w"][1] >= 1.5, res["w"][1]
        # the metrics show the slow reads; nothing failed
        buckets = {float(lab["le"]): v for n, lab, v in metrics(m)
                   if n == "modelfs_read_duration_seconds_bucket"}
        assert buckets[0.25] < metric(m, "modelfs_read_duration_seconds_count"), buckets
        assert counters(m)["verify_failures"] == 0
        ff.clear()
        got, dt = timed_read(w, BAD * BS, BS)
        assert got == data[BAD * BS:(BAD + 1) * BS] and dt < 0.4, dt


# --------------------------------------------------------------------------
# a full cache disk while transcoding
# --------------------------------------------------------------------------

CKPT = """
import sys, torch
torch.manual_seed(0)
sd = {'w': torch.randn(512, 512), 'b': torch.randn(512), 'h': torch.randn(64, 64).half()}
torch.save(sd, sys.argv[1])
"""


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, keys):  # noqa: F811
    """A store with model ck holding a safe torch checkpoint; and its safetensors bytes."""
    if importlib.util.find_spec("torch") is None:  # torch itself runs in a subprocess only
        pytest.skip("torch is not installed")
    d = tmp_path_factory.mktemp("faultckpt")
    store = d / "store"
    (store / "ck").mkdir(parents=True)
    src = store / "ck" / "pytorch_model.bin"
    subprocess.run(["/usr/bin/python3", "-c", CKPT, str(src)], check=True, timeout=300)
    seal(store / "ck", keys["trusted"])
    run_modelfs("transcode", "-q", src, d / "ref.safetensors", check=0)
    return store, (d / "ref.safetensors").read_bytes()


def cache_entries(tx) -> list:
    return sorted(p.name for p in pathlib.Path(tx).iterdir()) if pathlib.Path(tx).is_dir() else []


def view_open(path):
    """The view's bytes, or the errno of open or read."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        return e.errno


# (stage, faultfs rules): each fails one step of writing the output and its record
CACHE_FAULTS = [
    ("create", ["cache/transcoded/*.tmp create=ENOSPC"]),
    ("write", ["cache/transcoded/*.tmp write=ENOSPC from=65536"]),
    ("fsync", ["cache/transcoded/*.tmp fsync=ENOSPC"]),
    ("rename", ["cache/transcoded/*.tmp rename=ENOSPC"]),
    ("record", ["cache/transcoded/*.record.*.tmp create=ENOSPC"]),
    ("dirsync", ["cache/transcoded fsync=ENOSPC"]),
    ("full", ["cache* enospc"]),
]

# what the log line's reason names for each stage, before the error
WHERE = {"create": ".tmp: ", "write": "pytorch_model.bin: write failed: ", "fsync": ".tmp: fsync: ",
         "rename": ".tmp: rename: ", "record": ".record: ", "dirsync": ".record: ",
         "full": ".tmp: "}


def test_cache_enospc_each_step(tmp_path, keys, ckpt):  # noqa: F811
    store, ref = ckpt
    tx = tmp_path / "src" / "cache" / "transcoded"  # the cache folder on disk
    tx_mnt = tmp_path / "ff" / "cache" / "transcoded"  # ... as the daemon names it
    with rig(tmp_path, keys, store) as (ff, m):
        view = m.mnt / "ck" / "model.safetensors"
        assert os.listdir(m.mnt / "ck") == ["model.safetensors"]
        assert os.stat(view).st_size == len(ref)  # decided from the plan: nothing written yet
        for i, (stage, rules) in enumerate(CACHE_FAULTS):
            ff.rules("clear", *rules)
            assert view_open(view) == errno.EIO, stage
            assert all(n >= 1 for n in ff.hits().values()), (stage, ff.hits())
            # nothing half-written, nothing without its pair: the folder is empty again
            assert cache_entries(tx) == [], (stage, cache_entries(tx))
            lines = log_lines(m, "transcode-failed")
            assert len(lines) == i + 1, (stage, lines)
            assert f"cache={tx_mnt} " in lines[-1], lines[-1]
            assert f'{WHERE[stage]}No space left on device"' in lines[-1], lines[-1]
            # the view stays listed (its size is known); the pickle stays hidden
            assert os.listdir(m.mnt / "ck") == ["model.safetensors"]
        c = counters(m)
        assert (c["transcodes"], c["transcode_reuses"], c["transcode_rejected"]) == (0, 0, 0), c
        assert c["verify_failures"] == 0
        ff.clear()
        assert view_open(view) == ref  # the next open transcodes, no remount
        assert counters(m)["transcodes"] == 1
        names = cache_entries(tx)
        assert len(names) == 2 and names[0].endswith(".safetensors"), names
        assert names[1] == names[0] + ".record"
        assert (tx / names[0]).read_bytes() == ref


def test_cache_on_full_tmpfs(tmp_path, keys, ckpt):  # noqa: F811
    """A real full disk: the cache on a small tmpfs, filled up, then freed."""
    store, ref = ckpt
    fs = tmp_path / "cachefs"
    fs.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(fs)],
                   check=True, timeout=30)
    try:
        cache = fs / "cache"
        with Mount(store, tmp_path / "mnt", f"{keys['trusted']}.pub", cache=cache) as m:
            view = m.mnt / "ck" / "model.safetensors"
            assert os.stat(view).st_size == len(ref) > 1 << 20
            filler = fs / "filler"
            st = os.statvfs(fs)
            free = st.f_bavail * st.f_frsize
            with open(filler, "wb") as f:  # leave 256 KiB: less than the output
                f.write(b"\0" * (free - (256 << 10)))
            assert view_open(view) == errno.EIO
            assert cache_entries(cache / "transcoded") == []
            line = log_lines(m, "transcode-failed")[-1]
            assert "No space left on device" in line and f"cache={cache}/transcoded" in line
            st = os.statvfs(fs)
            assert st.f_bavail * st.f_frsize >= 200 << 10  # the partial output's space is back
            filler.unlink()  # the disk has room again
            assert view_open(view) == ref
            assert counters(m)["transcodes"] == 1
            assert len(cache_entries(cache / "transcoded")) == 2
    finally:
        force_unmount(fs)


# --------------------------------------------------------------------------
# faults on what a scan or a reload reads: model.sig, attestations, folders;
# and on packed copies
# --------------------------------------------------------------------------

def test_sig_unreadable_at_reload_keeps_served_version(tmp_path, keys, plain):  # noqa: F811
    """EIO reading a changed model.sig: the served version stays, the error is shown."""
    store, data, _ = plain
    with rig(tmp_path, keys, store) as (ff, m):
        src_model = tmp_path / "src" / "store" / "m"
        write(src_model / "new.txt", b"only in the new version\n")
        seal(src_model, keys["trusted"])
        ff.rules("store/m/model.sig read=EIO")
        r = sighup(m, timeout=10)
        assert r["last_result"] == "ok" and r["changed"] == 0, r
        assert ff.hits()["store/m/model.sig read=EIO"] > 0
        entry = exposed(m)["m"]
        assert "Input/output error" in entry.get("reload_error", ""), entry
        assert sorted(os.listdir(m.mnt / "m")) == ["other.bin", "w.bin"]
        drop_caches()
        assert (m.mnt / "m" / "w.bin").read_bytes() == data
        ff.clear()
        r = sighup(m, timeout=10)
        assert r["changed"] == 1, r
        assert (m.mnt / "m" / "new.txt").read_bytes() == b"only in the new version\n"
        assert "reload_error" not in exposed(m)["m"]


def test_sig_unreadable_at_mount_refuses_then_serves(tmp_path, keys, plain):  # noqa: F811
    """EIO on model.sig at mount refuses the model, naming the cause; a reload serves it."""
    store, data, _ = plain
    src = tmp_path / "src"
    shutil.copytree(store, src / "store")
    with FaultFS(src, tmp_path / "ff") as ff:
        ff.rules("store/m/model.sig read=EIO")
        with Mount(ff.mnt / "store", tmp_path / "mnt", f"{keys['trusted']}.pub",
                   cache=ff.mnt / "cache") as m:
            refused = {e["path"]: e for e in m.status()["refused"]}
            assert "Input/output error" in refused["m"]["reason"], refused
            assert not (m.mnt / "m").exists()
            ff.clear()
            sighup(m, timeout=10)
            assert (m.mnt / "m" / "w.bin").read_bytes() == data


def test_store_folder_unreadable_at_reload_changes_nothing(tmp_path, keys, plain):  # noqa: F811
    """A folder that cannot be opened during a reload must not make its models vanish."""
    store, data, _ = plain
    with rig(tmp_path, keys, store) as (ff, m):
        for fault in ("open=EIO", "open=EMFILE"):
            before = counters(m)["fd_exhausted"]
            ff.rules("clear", f"store/m {fault}")
            r = sighup(m, timeout=10)
            assert r["last_result"] != "ok" and r["removed"] == 0, (fault, r)
            assert "m" in exposed(m), fault
            drop_caches()
            assert (m.mnt / "m" / "w.bin").read_bytes() == data
            assert log_lines(m, "scan-failed"), fault
            if fault == "open=EMFILE":
                assert counters(m)["fd_exhausted"] > before
        ff.clear()
        r = sighup(m, timeout=10)
        assert r["last_result"] == "ok" and r["removed"] == 0, r


@pytest.fixture(scope="module")
def packed(tmp_path_factory, keys):  # noqa: F811
    """A store whose model p holds w.bin only as its packed copy (64 KiB frames)."""
    store = tmp_path_factory.mktemp("packedstore") / "store"
    data = b"\0" + bytes(b & 0x0F for b in os.urandom(40 * 65536 - 1))  # compressible
    write(store / "p" / "w.bin", data)
    seal(store / "p", keys["trusted"])
    run_modelfs("pack", "--frame-size", "64K", "--remove-original", "-q", store / "p",
                check=0)
    assert not (store / "p" / "w.bin").exists()
    return store, data


def test_eio_in_packed_copy(tmp_path, keys, packed):  # noqa: F811
    """EIO inside a packed copy fails the frames it covers, not the others, then heals."""
    store, data = packed
    zst = next((store / "p" / ".modelfs" / "packed").glob("*.zst"))
    mid = zst.stat().st_size // 2
    rule = f"store/p/.modelfs/packed/{zst.name} read=EIO from={mid} len=4096"
    with rig(tmp_path, keys, store) as (ff, m):
        path = m.mnt / "p" / "w.bin"
        fails = counters(m)["verify_failures"]
        ff.rules(rule)
        drop_caches()
        fd = open_random(path)
        try:
            assert os.pread(fd, 65536, 0) == data[:65536]  # the first frame is elsewhere
            got, err = careful_read(fd, 0, len(data))
            assert err == errno.EIO, err
            assert got == data[:len(got)] and len(got) < len(data)
        finally:
            os.close(fd)
        assert ff.hits()[rule] > 0
        assert counters(m)["verify_failures"] > fails
        ff.clear()
        assert_reads_again(path, data)


def test_attestation_unreadable(tmp_path, keys, plain):  # noqa: F811
    """EIO reading an attestation: the model is served, the attestation unverified, with why."""
    store, data, _ = plain
    pred = tmp_path / "pred.json"
    pred.write_text('{"result": "pass"}')
    s2 = tmp_path / "s2"
    shutil.copytree(store, s2)
    run_modelfs("attest", "--key", f"{keys['trusted']}.key", "--predicate-type",
                "https://example.com/scan/v1", "--predicate", pred, s2 / "m", check=0)
    att = next((s2 / "m" / ".modelfs" / "attestations").glob("*.json"))
    src = tmp_path / "src"
    shutil.copytree(s2, src / "store")
    with FaultFS(src, tmp_path / "ff") as ff:
        ff.rules(f"store/m/.modelfs/attestations/{att.name} read=EIO")
        with Mount(ff.mnt / "store", tmp_path / "mnt", f"{keys['trusted']}.pub",
                   cache=ff.mnt / "cache") as m:
            assert (m.mnt / "m" / "w.bin").read_bytes() == data
            # listed, not verified, with the reason; a policy needing it would refuse
            atts = json.loads(os.getxattr(m.mnt / "m", "user.modelfs.attestations"))
            assert [a["file"] for a in atts] == [att.name], atts
            assert atts[0]["verified"] is False
            assert "Input/output error" in atts[0]["reason"], atts
