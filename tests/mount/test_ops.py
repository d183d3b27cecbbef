"""Sidecar behaviour of `modelfs mount` and `modelfs status` (run as root).

--ready-file, `modelfs status` and its exit codes (0 healthy, 1 a required
model refused, 2 usage, 3 not a modelfs mount, 4 stale), the policy's
"required" rules, stale mounts left by a killed daemon, SIGTERM with a busy
mount (lazy detach within --unmount-timeout), and the rate limit of
verification-failure log lines. Oracles: /proc/self/mountinfo, errno of
stat(2), the status file and the log. docs/operations.md describes it all.
"""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import run_modelfs
from test_mount import (Mount, drop_caches, flip, is_mounted, keys, rnd, seal,  # noqa: F401
                        write)


def in_mountinfo(path) -> bool:
    """Whether @path is a mount point in /proc/self/mountinfo (never touches the mount)."""
    want = str(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == want:
                return True
    return False


def wait_for(pred, timeout=20.0, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


@pytest.fixture
def store(tmp_path, keys):  # noqa: F811
    """One model org/m with a 200 KiB file, signed by the trusted key."""
    s = tmp_path / "store"
    write(s / "org" / "m" / "w.bin", rnd(200 << 10))
    write(s / "org" / "m" / "config.json", b'{"a": 1}\n')
    seal(s / "org" / "m", keys["trusted"])
    return s


def status(mnt, *extra):
    return run_modelfs("status", *extra, mnt, timeout=60)


# --------------------------------------------------------------------------
# ready file, status
# --------------------------------------------------------------------------

def test_ready_file_and_status(tmp_path, keys, store):  # noqa: F811
    ready = tmp_path / "run" / "modelfs.ready"
    ready.parent.mkdir()
    with Mount(store, tmp_path / "mnt", f"{keys['trusted']}.pub", "--ready-file", ready) as m:
        assert wait_for(ready.exists), m.log()
        text = ready.read_text()
        fields = dict(kv.split("=", 1) for kv in text.split())
        assert text.endswith("\n")
        assert int(fields["pid"]) == m.proc.pid
        assert fields["mountpoint"] == str(m.mnt)
        assert fields["models"] == "1" and fields["refused"] == "0"
        # no temporary file is left next to it
        assert os.listdir(ready.parent) == ["modelfs.ready"]

        p = status(m.mnt)
        assert p.returncode == 0, p.stderr
        assert "org/m" in p.stdout and "health:    ok" in p.stdout
        p = status(m.mnt, "--json")
        assert p.returncode == 0
        st = json.loads(p.stdout)
        assert [x["path"] for x in st["models"]] == ["org/m"]
        assert st["refused"] == []

        m.proc.send_signal(signal.SIGTERM)
        assert m.proc.wait(timeout=15) == 0, m.log()
        assert not ready.exists()
        assert not in_mountinfo(m.mnt)
        assert "unmounted mountpoint=%s action=unmount" % m.mnt in m.log()


def test_ready_file_as_o_option_and_folder_must_exist(tmp_path, keys, store):  # noqa: F811
    ready = tmp_path / "r.ready"
    with Mount(store, tmp_path / "mnt", f"{keys['trusted']}.pub",
               "-o", f"ready_file={ready},unmount_timeout=3,watch") as m:
        assert wait_for(ready.exists), m.log()
    assert not ready.exists()
    mnt = tmp_path / "mnt2"
    mnt.mkdir()
    p = run_modelfs("mount", "-f", "--trust", f"{keys['trusted']}.pub",
                    "--ready-file", tmp_path / "no" / "such" / "r", store, mnt, timeout=60)
    assert p.returncode == 2
    assert "ready file folder" in p.stderr and str(tmp_path / "no" / "such") in p.stderr
    assert not is_mounted(mnt)


def test_mount_option_errors(tmp_path, keys, store):  # noqa: F811
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for bad in (["--unmount-timeout", "0"], ["--unmount-timeout", "x"],
                ["-o", "unmount_timeout=99999"]):
        p = run_modelfs("mount", "-f", "--trust", f"{keys['trusted']}.pub", *bad, store, mnt,
                        timeout=60)
        assert p.returncode == 2, bad
        assert "unmount-timeout" in p.stderr or "unmount_timeout" in p.stderr
    assert not is_mounted(mnt)


def test_status_exit_codes_when_not_mounted(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    p = status(empty)
    assert p.returncode == 3 and "not a modelfs mount" in p.stderr
    p = status(tmp_path / "missing")
    assert p.returncode == 3
    p = run_modelfs("metrics", empty)
    assert p.returncode == 3
    # another file system entirely
    assert status("/proc").returncode == 3
    # usage errors
    assert run_modelfs("status").returncode == 2
    assert run_modelfs("status", "--bogus", empty).returncode == 2
    assert run_modelfs("status", empty, empty).returncode == 2
    assert run_modelfs("metrics").returncode == 2


# --------------------------------------------------------------------------
# "required" policy rules: a refused required model is unhealthy
# --------------------------------------------------------------------------

def policy_store(tmp_path, keys):  # noqa: F811
    s = tmp_path / "pstore"
    for name, key in (("prod/good", "trusted"), ("prod/bad", "other"), ("lab/x", "other")):
        write(s / name / "f.txt", f"{name}\n".encode())
        seal(s / name, keys[key])
    return s


@pytest.mark.parametrize("required", [True, False])
def test_required_model_refused_is_unhealthy(tmp_path, keys, required):  # noqa: F811
    s = policy_store(tmp_path, keys)
    pol = tmp_path / "policy.json"
    pol.write_text(json.dumps({
        "version": 1, "default": "deny",
        "keys": {"pub": {"file": f"{keys['trusted']}.pub"}},
        "rules": [{"path": "prod/*", "signers": ["pub"], "required": required},
                  {"path": "lab/*", "signers": ["pub"]}],
    }))
    trust = [f"{keys['trusted']}.pub", f"{keys['other']}.pub"]
    with Mount(s, tmp_path / "mnt", trust, "--policy", pol) as m:
        st = m.status()
        refused = {r["path"]: r for r in st["refused"]}
        assert set(refused) == {"prod/bad", "lab/x"}
        assert refused["prod/bad"]["required"] is required
        assert refused["lab/x"]["required"] is False
        p = status(m.mnt)
        if required:
            assert p.returncode == 1, p.stdout + p.stderr
            assert "UNHEALTHY" in p.stdout and "prod/bad (required)" in p.stdout
        else:
            assert p.returncode == 0, p.stdout + p.stderr
        assert status(m.mnt, "--json").returncode == p.returncode


def test_policy_required_must_be_a_bool(tmp_path, keys):  # noqa: F811
    s = policy_store(tmp_path, keys)
    pol = tmp_path / "policy.json"
    pol.write_text(json.dumps({"version": 1, "rules": [{"path": "*", "required": "yes"}]}))
    p = run_modelfs("verify", "--trust", f"{keys['trusted']}.pub", "--policy", pol,
                    "--model-path", "prod/good", s / "prod" / "good")
    assert p.returncode == 2
    assert "rules[0].required: expected true or false" in p.stderr


# --------------------------------------------------------------------------
# stale mounts
# --------------------------------------------------------------------------

def test_stale_mount_is_detected_and_replaced(tmp_path, keys, store):  # noqa: F811
    mnt = tmp_path / "mnt"
    with Mount(store, mnt, f"{keys['trusted']}.pub") as m:
        assert (mnt / "org" / "m" / "config.json").read_bytes() == b'{"a": 1}\n'
        m.proc.send_signal(signal.SIGKILL)
        m.proc.wait(timeout=10)
        # stat(2) of the root may still be answered from the kernel's attribute
        # cache; anything that reaches the (dead) daemon fails with ENOTCONN
        for probe in (os.statvfs, os.listdir):
            with pytest.raises(OSError) as ei:
                probe(mnt)
            assert ei.value.errno == errno.ENOTCONN, probe
        p = status(mnt)
        assert p.returncode == 4 and "stale mount" in p.stderr, p.stderr
        assert run_modelfs("metrics", mnt).returncode == 4
        # a new daemon on the same mountpoint detaches the dead mount first
        with Mount(store, mnt, f"{keys['trusted']}.pub") as m2:
            assert wait_for(lambda: status(mnt).returncode == 0)
            assert (mnt / "org" / "m" / "config.json").read_bytes() == b'{"a": 1}\n'
            assert "stale-mount mountpoint=%s action=lazy-detach" % mnt in m2.log()
    assert not in_mountinfo(mnt)


# --------------------------------------------------------------------------
# SIGTERM with a busy mount
# --------------------------------------------------------------------------

def test_sigterm_busy_mount_detaches_lazily(tmp_path, keys, store):  # noqa: F811
    mnt = tmp_path / "mnt"
    ready = tmp_path / "ready"
    with Mount(store, mnt, f"{keys['trusted']}.pub", "--unmount-timeout", "5",
               "--ready-file", ready) as m:
        assert wait_for(ready.exists)
        # a process with its working folder and an open file inside the mount
        holder = subprocess.Popen(
            [sys.executable, "-c",
             "import os, sys, time\n"
             "os.chdir(sys.argv[1])\n"
             "f = open('w.bin', 'rb'); f.read(10)\n"
             "print('in', flush=True)\n"
             "time.sleep(60)\n", str(mnt / "org" / "m")],
            stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "in"
            t0 = time.monotonic()
            m.proc.send_signal(signal.SIGTERM)
            assert m.proc.wait(timeout=10) == 0, m.log()
            took = time.monotonic() - t0
            assert took < 5 + 2, took
            assert not in_mountinfo(mnt)
            assert not ready.exists()
            log = m.log()
            assert "unmount-busy mountpoint=%s action=lazy-detach" % mnt in log, log
            assert "unmounted mountpoint=%s action=lazy-detach" % mnt in log, log
        finally:
            holder.kill()
            holder.wait()


# --------------------------------------------------------------------------
# log rate limit
# --------------------------------------------------------------------------

def test_verify_failure_lines_are_rate_limited(tmp_path, keys, store):  # noqa: F811
    w = store / "org" / "m" / "w.bin"
    good = w.read_bytes()
    with Mount(store, tmp_path / "mnt", f"{keys['trusted']}.pub") as m:
        fd = os.open(m.mnt / "org" / "m" / "w.bin", os.O_RDONLY)
        try:
            os.pread(fd, 1, 0)  # the file's format is detected before the damage
            flip(w, 5 * 4096 + 7)
            drop_caches()
            for _ in range(1000):
                with pytest.raises(OSError) as ei:
                    os.pread(fd, 4096, 5 * 4096)
                assert ei.value.errno == errno.EIO
            # good blocks still read
            assert os.pread(fd, 4096, 0) == good[:4096]
        finally:
            os.close(fd)
        lines = [ln for ln in m.log().splitlines() if "verify-failure" in ln]
        assert 1 <= len(lines) <= 3, lines
        assert "block=5" in lines[0]
        assert m.status()["counters"]["verify_failures"] >= 1000


@pytest.mark.skipif(not (shutil.which("mksquashfs") and shutil.which("squashfuse")),
                    reason="needs mksquashfs and squashfuse")
def test_sigterm_with_a_stuck_worker_exits_within_the_bound(tmp_path, keys, store):  # noqa: F811
    """A worker blocked on a hung backing store cannot stop libfuse's loop: the watchdog does."""
    img = tmp_path / "store.sqfs"
    subprocess.run(["mksquashfs", str(store), str(img), "-quiet", "-noappend"], check=True,
                   capture_output=True, timeout=120)
    lower = tmp_path / "lower"
    lower.mkdir()
    sq = subprocess.Popen(["squashfuse", "-f", str(img), str(lower)])
    reader = None
    try:
        assert wait_for(lambda: in_mountinfo(lower))
        mnt = tmp_path / "mnt"
        with Mount(lower, mnt, f"{keys['trusted']}.pub", "--unmount-timeout", "2") as m:
            path = mnt / "org" / "m" / "w.bin"
            fd = os.open(path, os.O_RDONLY)
            os.pread(fd, 1, 0)
            os.close(fd)
            drop_caches()
            os.kill(sq.pid, signal.SIGSTOP)  # the backing store hangs
            reader = subprocess.Popen(
                [sys.executable, "-c",
                 "import os, sys\nfd = os.open(sys.argv[1], os.O_RDONLY)\n"
                 "os.pread(fd, 4096, 65536)\n", str(path)],
                stderr=subprocess.DEVNULL)
            time.sleep(1)
            assert reader.poll() is None  # its read is stuck in a worker
            t0 = time.monotonic()
            m.proc.send_signal(signal.SIGTERM)
            assert m.proc.wait(timeout=15) == 0, m.log()
            took = time.monotonic() - t0
            assert 1.5 < took < 2 + 3, took
            assert not in_mountinfo(mnt)
            log = m.log()
            assert "unmount-timeout mountpoint=%s timeout=2 action=lazy-detach" % mnt in log, log
            # the daemon is gone: the stuck reader is released with an error
            assert reader.wait(timeout=15) != 0
    finally:
        os.kill(sq.pid, signal.SIGCONT)
        if reader and reader.poll() is None:
            reader.kill()
            reader.wait()
        subprocess.run(["fusermount3", "-u", str(lower)], capture_output=True)
        sq.wait(timeout=15)
