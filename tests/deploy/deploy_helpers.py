"""Shared helpers of the deploy tests: a sealed store, process and mount cleanup."""
import os
import pathlib
import signal
import subprocess
import time

from conftest import run_modelfs


def make_store(root: pathlib.Path):
    """A store with one sealed model org/m; returns (store, key prefix, {name: bytes})."""
    store = root / "store"
    model = store / "org" / "m"
    model.mkdir(parents=True)
    files = {"weights.bin": b"\0" + os.urandom(300_000 - 1), "config.json": b'{"a": 1}\n'}
    for name, data in files.items():
        (model / name).write_bytes(data)
    key = root / "publisher"
    run_modelfs("keygen", key, check=0)
    run_modelfs("seal", "--key", f"{key}.key", model, check=0)
    return store, key, files


def pids_mentioning(text: str):
    """Pids of processes whose command line contains @text (our temp paths)."""
    out = []
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            out.append(int(d.name))
    return out


def kill_pids(pids, sig=signal.SIGKILL):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_gone(text: str, timeout=10.0) -> bool:
    """Waits until no process mentions @text; True if none is left."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not pids_mentioning(text):
            return True
        time.sleep(0.1)
    return not pids_mentioning(text)


def mounts_under(path) -> list:
    """Mount points (in this namespace) at or below @path, deepest first."""
    path = str(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == path or mp.startswith(path + "/"):
                found.append(mp)
    return sorted(found, key=len, reverse=True)


def unmount_all_under(path):
    """Lazily detaches every mount at or below @path (repeated for stacked mounts)."""
    for _ in range(10):
        mps = mounts_under(path)
        if not mps:
            return
        for mp in mps:
            subprocess.run(["umount", "-l", mp], capture_output=True, timeout=30)


def cleanup(tmp):
    """Kills our daemons and detaches our mounts; safe to call twice."""
    kill_pids(pids_mentioning(str(tmp) + "/"))
    unmount_all_under(tmp)
    wait_gone(str(tmp) + "/", 5)
