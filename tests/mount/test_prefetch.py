"""Verified prefetch (issue #15; docs/mount.md, "Prefetch").

Read-ahead (--verified-readahead, off by default): a sequential reader
(read() or mmap faults) makes the daemon verify the next window on another
thread and push it into the kernel's page cache with notify_store. Mount-time: --prefetch PATTERN reads matching files
through the mount once it answers; --ready-after-prefetch holds the ready
file until then. What an attacker who writes the store must not get: a
pushed byte that was not verified. Every tamper test therefore checks that
the tampered block still gives EIO to the reader (a pushed, unverified page
would be served from the cache without a READ), and that the bytes before
it are right. No timing assertions.
"""
import errno
import hashlib
import mmap
import os
import pathlib
import subprocess
import time

import pytest

from test_mount import Mount, drop_caches, flip, keys, read_err, rnd, seal, write  # noqa: F401

MiB = 1 << 20
SIZE = 96 * MiB  # three read-ahead windows


def counters(m: Mount) -> dict:
    return m.status()["counters"]


def mmap_touch(path) -> bytes:
    """Touches every page of @path through a read-only mapping, as safe_open
    does, and returns the SHA-256 of the mapping."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
        for off in range(0, len(mm), 4096):
            mm[off]
        return hashlib.sha256(mm).digest()


def fincore_pages(path) -> int:
    """Pages of @path in the page cache (util-linux fincore)."""
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "-o", "PAGES",
                          str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


@pytest.fixture
def model(tmp_path, keys):  # noqa: F811
    store = tmp_path / "store"
    data = rnd(SIZE)
    write(store / "org" / "m" / "model.safetensors", data)
    write(store / "org" / "m" / "config.json", b'{"a": 1}\n')
    seal(store / "org" / "m", keys["trusted"])
    return store, data


def test_mmap_reader_gets_verified_prefetched_bytes(tmp_path, keys, model):  # noqa: F811
    store, data = model
    with Mount(store, tmp_path / "mnt", f"{keys['trusted']}.pub", "--verified-readahead") as m:
        f = m.mnt / "org" / "m" / "model.safetensors"
        assert mmap_touch(f) == hashlib.sha256(data).digest()
        c = counters(m)
        assert c["prefetch_jobs"] >= 1 and c["prefetch_bytes"] > 0, c
        assert c["verify_failures"] == 0
        assert m.status()["prefetch"]["readahead"] is True


def test_read_streaming_and_random_readers(tmp_path, keys, model):  # noqa: F811
    """A random reader asks for no window; a streaming one does."""
    store, data = model
    with Mount(store, tmp_path / "mnt", f"{keys['trusted']}.pub", "--verified-readahead") as m:
        f = m.mnt / "org" / "m" / "model.safetensors"
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            for off in (50 * MiB, 7 * MiB, 80 * MiB, 33 * MiB, 61 * MiB):
                assert os.pread(fd, 4096, off) == data[off:off + 4096]
        finally:
            os.close(fd)
        assert counters(m)["prefetch_jobs"] == 0
        with open(f, "rb") as fh:
            assert hashlib.sha256(fh.read()).digest() == hashlib.sha256(data).digest()
        assert counters(m)["prefetch_jobs"] >= 1


def test_tampered_block_is_never_pushed(tmp_path, keys, model):  # noqa: F811
    """A block flipped in the store after sealing, inside the first read-ahead
    window: the bytes before it come through; the block itself gives EIO on
    read() and SIGBUS on mmap, both after prefetch had the chance to push
    it, so it was not pushed."""
    store, data = model
    bad = 20 * MiB + 12345
    flip(store / "org" / "m" / "model.safetensors", bad)
    with Mount(store, tmp_path / "mnt", f"{keys['trusted']}.pub", "--verified-readahead") as m:
        f = m.mnt / "org" / "m" / "model.safetensors"
        with open(f, "rb") as fh:
            assert fh.read(MiB) == data[:MiB]  # starts the run: window [1 MiB, 33 MiB)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not counters(m)["prefetch_stopped"]:
            time.sleep(0.1)
        assert counters(m)["prefetch_stopped"] >= 1
        assert read_err(f, bad - bad % 4096) == errno.EIO
        assert read_err(f, bad - bad % 4096 - 4096) is None
        assert counters(m)["verify_failures"] >= 1


def test_mount_time_prefetch_and_ready_file(tmp_path, keys, model):  # noqa: F811
    store, data = model
    ready = tmp_path / "ready"
    with Mount(store, tmp_path / "mnt", f"{keys['trusted']}.pub", "--prefetch", "*.safetensors",
               "--ready-after-prefetch", "--ready-file", ready) as m:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not ready.exists():
            time.sleep(0.1)
        assert ready.exists()
        p = m.status()["prefetch"]
        # the ready file came after the prefetch: it is done when the file exists
        assert p["state"] == "done" and p["patterns"] == ["*.safetensors"], p
        assert p["files"] == 1 and p["files_failed"] == 0 and p["bytes"] == SIZE, p
        f = m.mnt / "org" / "m" / "model.safetensors"
        assert fincore_pages(f) * 4096 >= SIZE  # warm: every page in the mount's cache
        reads = counters(m)["reads"]
        assert mmap_touch(f) == hashlib.sha256(data).digest()
        assert counters(m)["reads"] == reads  # served from the cache, no READ
        metrics = (m.mnt / ".modelfs" / "metrics.prom").read_text()
        assert f"modelfs_prefetch_file_bytes_total {SIZE}" in metrics


def test_mount_time_prefetch_reports_a_tampered_file(tmp_path, keys, model):  # noqa: F811
    store, data = model
    flip(store / "org" / "m" / "model.safetensors", 70 * MiB)
    ready = tmp_path / "ready"
    with Mount(store, tmp_path / "mnt", f"{keys['trusted']}.pub", "--prefetch", "org/m",
               "--ready-after-prefetch", "--ready-file", ready) as m:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not ready.exists():
            time.sleep(0.1)
        p = m.status()["prefetch"]
        assert p["state"] == "done" and p["files"] == 1 and p["files_failed"] == 1, p
        assert "prefetch-failed path=org/m/model.safetensors" in m.log()
        f = m.mnt / "org" / "m" / "model.safetensors"
        assert read_err(f, 70 * MiB) == errno.EIO  # reported, not pushed
        assert (m.mnt / "org" / "m" / "config.json").read_bytes() == b'{"a": 1}\n'


@pytest.mark.parametrize("opt", [[], ["--no-prefetch"], ["--verified-readahead", "-o", "no_prefetch"]],
                         ids=["default", "no-prefetch", "last-wins"])
def test_readahead_off(tmp_path, keys, model, opt):  # noqa: F811
    """Verified read-ahead is off unless asked for (docs/mount.md, Prefetch)."""
    store, data = model
    with Mount(store, tmp_path / "mnt", f"{keys['trusted']}.pub", *opt) as m:
        f = m.mnt / "org" / "m" / "model.safetensors"
        assert mmap_touch(f) == hashlib.sha256(data).digest()
        assert counters(m)["prefetch_jobs"] == 0
        p = m.status()["prefetch"]
        assert p["readahead"] is False and p["state"] == "off", p


def test_prefetch_pattern_needs_a_value(tmp_path, keys, model, modelfs):  # noqa: F811
    store, _ = model
    (tmp_path / "mnt").mkdir()
    p = modelfs("mount", "--trust", f"{keys['trusted']}.pub", "--prefetch", "", store,
                tmp_path / "mnt")
    assert p.returncode == 2 and "--prefetch needs a pattern" in p.stderr


def proc_threads_fds(pid: int) -> tuple:
    """(threads, open descriptors) of process @pid, from /proc."""
    threads = next(int(line.split()[1]) for line in
                   pathlib.Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("Threads:"))
    return threads, len(os.listdir(f"/proc/{pid}/fd"))


def test_readahead_queue_is_bounded(tmp_path, keys, model):  # noqa: F811
    """A local user who opens one file 300 times and starts a sequential run
    on each handle asks for 300 read-ahead windows of 30 MiB at once. The
    queue holds PF_QUEUE_MAX (64) of them and drops the rest, counted; the
    daemon's threads stay the two prefetch workers and its descriptors stay
    bounded by the handles the reader holds; every byte read is right, and
    the queue drains once the handles are closed."""
    store, data = model
    n = 300
    with Mount(store, tmp_path / "mnt", f"{keys['trusted']}.pub", "--verified-readahead") as m:
        f = m.mnt / "org" / "m" / "model.safetensors"
        t0, _ = proc_threads_fds(m.proc.pid)
        fds, peak = [], (0, 0)
        try:
            for _ in range(n):
                fd = os.open(f, os.O_RDONLY)
                fds.append(fd)
                # Empty the mount's cache so that the READ at 0 reaches the
                # daemon; the 4 KiB READ at 0 starts the handle's run.
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
                assert os.pread(fd, 4096, 0) == data[:4096]
                t, d = proc_threads_fds(m.proc.pid)
                peak = (max(peak[0], t), max(peak[1], d))
            c = counters(m)
            assert c["prefetch_dropped"] > 0, c
            assert c["prefetch_jobs"] + c["prefetch_dropped"] >= n - 10, c
        finally:
            for fd in fds:
                os.close(fd)
        # FUSE workers may come and go (libfuse's pool); prefetch adds two.
        assert peak[0] <= t0 + 12, (t0, peak)
        # A queued window holds no descriptor: a job opens its file when it runs.
        assert peak[1] <= 64 + n, peak
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            c1 = counters(m)
            time.sleep(0.5)
            if counters(m)["prefetch_bytes"] == c1["prefetch_bytes"]:
                break
        assert mmap_touch(f) == hashlib.sha256(data).digest()
        assert counters(m)["verify_failures"] == 0
