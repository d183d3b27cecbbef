"""Issue #12 "Huge files": missing Merkle trees are built by a bounded pool,
off the FUSE workers (run as root; suite 'endurance').

A file whose tree is in neither CACHE/trees nor MODEL/.modelfs/trees has it
built from its data at first use. The build now runs on one of
--tree-builders threads (at most 64 more builds queue); the request that
needs the tree waits at most --tree-build-wait and then gets EIO, with one
`tree-build-wait` line, while the build goes on; the next open after it
finishes finds the tree in the cache folder (docs/mount.md, "Missing trees").

Slow builds are real: the store is served by faultfs (tests/faultfs) with
`delay_ms` rules on the slow files' reads, so a build of an 8 MiB file takes
seconds. Every store here is sealed with the CLI and its tree files deleted,
so every file needs a build.

- a slow build times out the open with EIO after about the wait (0.5 s),
  with the log line, while files of the same and another model (their trees
  built too, by the other builder) read correct bytes at normal speed; once
  the build ends the same mount serves the file, built once;
- a build nobody waited for that finds tampered data is remembered: the
  next open fails at once from the negative cache, without a second hash;
- a damaged tree's rebuild whose wait ran out is not lost: once it ends,
  the next failed check takes its tree (same handle, built once);
- a packed file's tree is built from its attached packed copy after its
  waiter gave up;
- with --tree-builders 1, a second slow file queues behind the first: never
  more than one builder thread (/proc/PID/task), the two builds one after
  the other; beyond 64 queued builds an open fails at once
  (`tree-build-refused`, tree_builds_refused);
- unmounting (fusermount3 -u, or SIGTERM while an open waits) with a slow
  build running returns within seconds: the build is cancelled between
  blocks (`tree-build-cancelled`), nothing is left in CACHE/trees, and the
  daemon exits 0;
- bad option values are refused (exit 2).

Oracles: the source bytes, status.json (counters and "tree_builds"), the
metrics (strict parser), the daemon's log, /proc/PID/task/*/comm, faultfs's
hit counts, the cache folder's listing on disk.
"""
import errno
import os
import pathlib
import shutil
import signal
import subprocess
import threading
import time

import pytest

from conftest import run_modelfs
from test_faults import counters, log_lines, metric, rig
from test_mount import (Mount, drop_caches, force_unmount, is_mounted, keys, rnd,  # noqa: F401
                        seal, tree_file, write)

MIB = 1 << 20
WAIT = 0.5  # --tree-build-wait in these tests
BUILDER_COMM = "mfs-treebuild"  # the builders' thread name (fs/mount/treebuild.c)
QUEUE_MAX = 64  # MFS_TB_QUEUE_MAX
HEADER = 4096  # MV_TREE_HEADER_SIZE: a tree file's levels start here
N_QUEUE_FILES = QUEUE_MAX + 2


@pytest.fixture(scope="module")
def store(tmp_path_factory, keys):  # noqa: F811
    """Models m (two slow files, two fast ones, one tampered), m2, q (a queue
    filler), t (a damaged tree) and p (packed); only t has tree files."""
    root = tmp_path_factory.mktemp("treepool") / "store"
    data = {
        "m/slow.dat": rnd(8 * MIB),
        "m/slow2.dat": rnd(8 * MIB),
        "m/fast.dat": rnd(1 * MIB),
        "m/small.dat": rnd(64 << 10),
        "m/bad.dat": rnd(4 * MIB),
        "m2/other.dat": rnd(2 * MIB),
        "q/blocker.dat": rnd(16 * MIB),
        "t/slow.dat": rnd(8 * MIB),
        "p/packed.dat": rnd(4096) * (6 * MIB // 4096),  # compressible: pack keeps it
    }
    for i in range(N_QUEUE_FILES):
        data[f"q/f{i:03d}.dat"] = rnd(4097 + i)  # two blocks or more: each needs a tree
    for rel, b in data.items():
        write(root / rel, b)
    for model in ("m", "m2", "q", "t", "p"):
        seal(root / model, keys["trusted"])
    # p/packed.dat: only its packed copy (seekable zstd) is in the store
    run_modelfs("pack", "--frame-size", "64K", "--remove-original", "-q", root / "p", check=0)
    for model in ("m", "m2", "q", "p"):
        shutil.rmtree(root / model / ".modelfs" / "trees")  # every open must build
    # t/slow.dat keeps its tree file, damaged past its header: it loads, then
    # the first read fails its check and asks for the one rebuild
    with open(tree_file(root / "t", "slow.dat"), "r+b") as f:
        f.seek(HEADER + 64)
        f.write(b"\xff" * 64)
    # bad.dat: signed, then one byte changed: its build finds the mismatch
    with open(root / "m" / "bad.dat", "r+b") as f:
        f.seek(3 * MIB)
        f.write(bytes([data["m/bad.dat"][3 * MIB] ^ 0x5A]))
    return root, data


def open_eio(path):
    """Opens @path expecting EIO; returns the seconds it took."""
    t0 = time.monotonic()
    with pytest.raises(OSError) as e:
        open(path, "rb").close()
    assert e.value.errno == errno.EIO, e.value
    return time.monotonic() - t0


def tree_builds(m) -> dict:
    return m.status()["tree_builds"]


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def built(m, model, name) -> bool:
    return f"tree-built model={model} file={name} " in m.log()


def threads_of(pid) -> list:
    """The comm (thread name) of every thread of @pid."""
    out = []
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            out.append(pathlib.Path(f"/proc/{pid}/task/{t}/comm").read_text().strip())
        except OSError:
            pass  # the thread ended meanwhile
    return out


def cache_trees(ff) -> list:
    return sorted(os.listdir(ff.mnt / "cache" / "trees"))


# --------------------------------------------------------------------------
# (a), (b): the open times out, the others read on, the file is served later
# --------------------------------------------------------------------------

def test_slow_build_times_out_others_read_then_served(tmp_path, keys, store):  # noqa: F811
    root, data = store
    with rig(tmp_path, keys, root, "--tree-build-wait", str(WAIT)) as (ff, m):
        rule = "store/m/slow.dat delay_ms=400"  # about 16 delayed reads: a 6 s build
        ff.rules(rule)
        slow = m.mnt / "m" / "slow.dat"

        took = open_eio(slow)
        # About the wait: the lookup waited 0.5 s; the open that follows it at
        # once does not wait again (fs/mount/treebuild.c, TB_GRACE_NS).
        assert WAIT * 0.9 <= took < WAIT + 1.0, took
        lines = log_lines(m, "tree-build-wait")
        assert len(lines) == 1, lines
        assert "model=m file=slow.dat waited_ms=" in lines[0]
        assert 'reason="still building in the background; try again"' in lines[0]
        waited = int(lines[0].split("waited_ms=")[1].split()[0])
        assert WAIT * 1000 * 0.9 <= waited < WAIT * 1000 + 500, waited
        tb = tree_builds(m)
        assert tb["running"] == 1 and tb["queued"] == 0 and tb["builders_max"] == 2, tb
        assert tb["wait_seconds"] == WAIT
        assert counters(m)["tree_build_wait_timeouts"] >= 1

        # Meanwhile: files of the same model and of another one, whose trees
        # are missing too (built by the second builder), read correct bytes.
        others = ["m/fast.dat", "m/small.dat", "m2/other.dat"]
        times, rounds = [], 0
        t_end = time.monotonic() + 2.0
        while time.monotonic() < t_end or rounds < 2:
            drop_caches()
            for rel in others:
                t0 = time.monotonic()
                assert (m.mnt / rel).read_bytes() == data[rel], rel
                times.append(time.monotonic() - t0)
            rounds += 1
        assert not built(m, "m", "slow.dat"), "the slow build ended too early to show anything"
        assert max(times) < 1.0, times
        for rel in others:
            model, name = rel.split("/")
            assert built(m, model, name), rel
        print(f"\ntree pool: open of the slow file: EIO after {took:.3f} s; {len(times)} reads "
              f"of other files meanwhile, max {max(times) * 1000:.0f} ms, "
              f"median {sorted(times)[len(times) // 2] * 1000:.1f} ms")

        # (b) the build ends in the background; the same mount then serves the file.
        wait_for(lambda: built(m, "m", "slow.dat"), 60, "the slow build")
        assert ff.hits()[rule] > 0
        ff.clear()  # reads of the served file need not be slow
        trees = cache_trees(ff)
        assert len(trees) == 4 and all(t.endswith(".tree") for t in trees), trees
        before = counters(m)["trees_built"]
        drop_caches()
        assert slow.read_bytes() == data["m/slow.dat"]
        c = counters(m)
        assert c["trees_built"] == before == 4
        assert c["verify_failures"] == 0
        assert m.log().count("tree-build model=m file=slow.dat ") == 1  # built once
        tb = tree_builds(m)
        assert tb["running"] == 0 and tb["queued"] == 0 and tb["builders"] == 2, tb
        assert metric(m, "modelfs_tree_build_wait_timeouts_total") == \
            counters(m)["tree_build_wait_timeouts"]
        assert metric(m, "modelfs_tree_builds_running") == 0
        assert metric(m, "modelfs_tree_builders_max") == 2


def test_background_mismatch_is_remembered(tmp_path, keys, store):  # noqa: F811
    """A build whose waiter gave up and that finds tampered data feeds the negative cache."""
    root, _ = store
    with rig(tmp_path, keys, root, "--tree-build-wait", str(WAIT)) as (ff, m):
        ff.rules("store/m/bad.dat delay_ms=200")
        bad = m.mnt / "m" / "bad.dat"
        open_eio(bad)
        assert counters(m)["tree_build_wait_timeouts"] >= 1
        wait_for(lambda: "verify-failure model=m file=bad.dat " in m.log(), 60, "the build")
        ff.clear()
        c0 = counters(m)
        assert c0["verify_failures"] == 1 and c0["trees_built"] == 0
        for _ in range(3):
            assert open_eio(bad) < WAIT  # at once: not waited for, not hashed again
        c1 = counters(m)
        assert c1["verify_failures"] == 1
        assert c1["negative_cache_hits"] >= 3
        assert m.status()["fds"]["negative_cache_entries"] == 1
        assert m.log().count("tree-build model=m file=bad.dat ") == 1


def test_slow_rebuild_is_taken_once_built(tmp_path, keys, store):  # noqa: F811
    """A rebuild (a damaged tree) whose wait timed out is not lost: once the
    background build ends, the next failed check installs its tree."""
    root, data = store
    want = data["t/slow.dat"]
    # --pickle=show: no format detection, so the open reads nothing and the
    # first failed check is the read's own
    with rig(tmp_path, keys, root, "--tree-build-wait", str(WAIT), "--pickle", "show") as (ff, m):
        fd = os.open(m.mnt / "t" / "slow.dat", os.O_RDONLY)  # its tree loads: no build
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            ff.rules("store/t/slow.dat delay_ms=250")
            with pytest.raises(OSError) as e:
                os.pread(fd, 4096, 0)  # fails its check: the rebuild is slow
            assert e.value.errno == errno.EIO
            # (its tree-build-wait line shares the file's rate limit with the
            # verify-failure line just logged: counted, not logged)
            assert counters(m)["tree_build_wait_timeouts"] >= 1
            assert counters(m)["tree_rebuilds"] == 0  # not spent: still building
            wait_for(lambda: built(m, "t", "slow.dat"), 60, "the rebuild")
            ff.clear()
            drop_caches()
            assert os.pread(fd, 4096, 0) == want[:4096]  # the same handle, no remount
            got = b"".join(os.pread(fd, MIB, off) for off in range(0, len(want), MIB))
            assert got == want
        finally:
            os.close(fd)
        c = counters(m)
        assert c["tree_rebuilds"] == 1 and c["trees_built"] == 1, c
        assert m.log().count("tree-build model=t file=slow.dat ") == 1  # built once


def test_packed_file_built_in_the_background(tmp_path, keys, store):  # noqa: F811
    """A packed file's tree is built from its attached packed copy by the pool,
    after its waiter gave up and closed its descriptor."""
    root, data = store
    want = data["p/packed.dat"]
    with rig(tmp_path, keys, root, "--tree-build-wait", str(WAIT)) as (ff, m):
        rule = "store/p/.modelfs/packed/*.zst delay_ms=40"  # a 4 s build
        ff.rules(rule)
        f = m.mnt / "p" / "packed.dat"
        open_eio(f)
        wait_for(lambda: built(m, "p", "packed.dat"), 60, "the build")
        assert ff.hits()[rule] > 0
        ff.clear()
        assert "tree-build model=p file=packed.dat stored_as=packed " in m.log()
        assert not (ff.mnt / "store" / "p" / "packed.dat").exists()
        assert f.read_bytes() == want
        c = counters(m)
        assert c["trees_built"] == 1 and c["verify_failures"] == 0, c


# --------------------------------------------------------------------------
# (c) the bound: one builder, a queue, and a full queue
# --------------------------------------------------------------------------

class Sampler:
    """Samples the daemon's threads every 20 ms: the most builders and threads seen."""

    def __init__(self, pid):
        self.pid, self.stop = pid, threading.Event()
        self.most_builders = self.most_threads = 0
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            try:
                comms = threads_of(self.pid)
            except OSError:
                return
            self.most_builders = max(self.most_builders, comms.count(BUILDER_COMM))
            self.most_threads = max(self.most_threads, len(comms))
            time.sleep(0.02)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.t.join()
        return False


def test_one_builder_queues_the_second_build(tmp_path, keys, store):  # noqa: F811
    root, data = store
    args = ("--tree-builders", "1", "--tree-build-wait", str(WAIT), "--threads", "2")
    with rig(tmp_path, keys, root, *args) as (ff, m):
        ff.rules("store/m/slow*.dat delay_ms=250")  # each build about 4 s
        pid = m.proc.pid
        with Sampler(pid) as s:
            open_eio(m.mnt / "m" / "slow.dat")
            open_eio(m.mnt / "m" / "slow2.dat")
            tb = tree_builds(m)
            assert tb == {"builders_max": 1, "builders": 1, "running": 1, "queued": 1,
                          "queue_max": QUEUE_MAX, "wait_seconds": WAIT}, tb
            assert metric(m, "modelfs_tree_builds_queued") == 1
            queued = [ln for ln in log_lines(m, "tree-build-wait") if "file=slow2.dat" in ln]
            assert queued and "state=queued" in queued[0], queued
            wait_for(lambda: built(m, "m", "slow2.dat"), 60, "both builds")
        assert s.most_builders == 1, s.most_builders
        comms = threads_of(pid)
        assert comms.count(BUILDER_COMM) == 1
        # Builder threads never exit, nor do idle FUSE workers: the daemon's
        # threads now are its most; never more than its usual ones plus one builder.
        assert s.most_threads <= len(comms), (s.most_threads, comms)
        # One after the other: the second build started once the first had ended.
        log = m.log()
        assert log.index("tree-build model=m file=slow2.dat ") > \
            log.index("tree-built model=m file=slow.dat ")
        ff.clear()
        for rel in ("m/slow.dat", "m/slow2.dat"):
            assert (m.mnt / rel).read_bytes() == data[rel], rel
        assert counters(m)["trees_built"] == 2
        print(f"\ntree pool: --tree-builders 1: at most {s.most_builders} builder thread, "
              f"{s.most_threads} threads in all ({', '.join(sorted(set(comms)))})")


def test_full_queue_fails_at_once(tmp_path, keys, store):  # noqa: F811
    root, _ = store
    args = ("--tree-builders", "1", "--tree-build-wait", "0.05")
    with rig(tmp_path, keys, root, *args) as (ff, m):
        ff.rules("store/q/blocker.dat delay_ms=700")  # holds the one builder for ~20 s
        open_eio(m.mnt / "q" / "blocker.dat")
        for i in range(QUEUE_MAX):
            open_eio(m.mnt / "q" / f"f{i:03d}.dat")
        tb = tree_builds(m)
        assert tb["running"] == 1 and tb["queued"] == QUEUE_MAX, tb
        assert counters(m)["tree_builds_refused"] == 0
        took = open_eio(m.mnt / "q" / f"f{QUEUE_MAX:03d}.dat")
        assert took < 0.05 * 3, took  # no wait: refused at once
        assert counters(m)["tree_builds_refused"] >= 1
        lines = log_lines(m, "tree-build-refused")
        assert len(lines) == 1, lines  # one line per interval for the mount
        assert 'reason="too many tree builds queued; try again"' in lines[0]
        assert tree_builds(m)["queued"] == QUEUE_MAX
        assert metric(m, "modelfs_tree_builds_refused_total") >= 1
        # Unmounting drops the queued builds and cancels the running one.
        t0 = time.monotonic()
        force_unmount(m.mnt)
        m.proc.wait(timeout=10)
        assert time.monotonic() - t0 < 5
        assert m.proc.returncode == 0, m.log()
        assert "tree-build-cancelled model=q file=blocker.dat " in m.log()


# --------------------------------------------------------------------------
# (d) unmount while a slow build runs
# --------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["fusermount", "sigterm-while-waiting"])
def test_unmount_cancels_running_build(tmp_path, keys, store, how):  # noqa: F811
    root, _ = store
    wait = WAIT if how == "fusermount" else 60.0
    with rig(tmp_path, keys, root, "--tree-build-wait", str(wait)) as (ff, m):
        ff.rules("store/m/slow.dat delay_ms=250")  # a 4 s build; 0.5 s per 1 MiB read
        slow = m.mnt / "m" / "slow.dat"
        errs = []
        if how == "fusermount":
            open_eio(slow)
        else:
            def opener():
                try:
                    open(slow, "rb").close()
                    errs.append(None)
                except OSError as e:
                    errs.append(e.errno)
            waiter = threading.Thread(target=opener, daemon=True)
            waiter.start()
            time.sleep(0.5)
            assert not errs, "the open should still be waiting"
        wait_for(lambda: tree_builds(m)["running"] == 1, 10, "the build to run")
        time.sleep(0.3)  # well inside the build
        assert not built(m, "m", "slow.dat")
        t0 = time.monotonic()
        if how == "fusermount":
            subprocess.run(["fusermount3", "-u", str(m.mnt)], check=True, timeout=30)
        else:
            m.proc.send_signal(signal.SIGTERM)
        m.proc.wait(timeout=10)
        took = time.monotonic() - t0
        assert took < 5, took
        assert m.proc.returncode == 0, m.log()
        log = m.log()
        assert "tree-build-cancelled model=m file=slow.dat " in log, log
        assert "tree-built model=m file=slow.dat" not in log
        assert "unmount-timeout" not in log  # not the watchdog's forced exit
        if how != "fusermount":
            waiter.join(timeout=10)
            # EIO from the cancelled wait, or the kernel ending the request with the session
            assert errs and errs[0] in (errno.EIO, errno.ENOTCONN, errno.ECONNABORTED), errs
        assert not is_mounted(m.mnt)
        assert cache_trees(ff) == []  # the temporary tree file was removed
        print(f"\ntree pool: {how}: the daemon exited {took:.2f} s after the unmount "
              f"began, its slow build cancelled")


# --------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------

@pytest.mark.parametrize("opt", ["--tree-builders=0", "--tree-builders=17",
                                 "--tree-builders=x", "--tree-build-wait=0",
                                 "--tree-build-wait=-1", "--tree-build-wait=3600.001",
                                 "--tree-build-wait=1.2345", "--tree-build-wait=.5",
                                 "--tree-build-wait=abc", "-otree_builders=0",
                                 "-otree_build_wait=0"])
def test_bad_options_refused(tmp_path, keys, opt):  # noqa: F811
    (tmp_path / "store").mkdir()
    (tmp_path / "mnt").mkdir()
    p = run_modelfs("mount", "-f", "--trust", f"{keys['trusted']}.pub", opt,
                    tmp_path / "store", tmp_path / "mnt", timeout=30)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "tree" in p.stderr, p.stderr
    assert not is_mounted(tmp_path / "mnt")


def test_options_shown_in_status(tmp_path, keys, store):  # noqa: F811
    root, _ = store
    with Mount(root, tmp_path / "mnt", f"{keys['trusted']}.pub",
               "-o", "tree_builders=16,tree_build_wait=3600") as m:
        tb = tree_builds(m)
        assert tb == {"builders_max": 16, "builders": 0, "running": 0, "queued": 0,
                      "queue_max": QUEUE_MAX, "wait_seconds": 3600}, tb
    with Mount(root, tmp_path / "mnt2", f"{keys['trusted']}.pub") as m:
        tb = tree_builds(m)
        assert tb["builders_max"] == 2 and tb["wait_seconds"] == 30, tb
        # a fast file is built on the pool and served at once
        assert (m.mnt / "m" / "small.dat").read_bytes() == store[1]["m/small.dat"]
        assert tree_builds(m)["builders"] == 1
