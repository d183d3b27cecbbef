"""The Kubernetes sidecar pattern for real, with Linux mount namespaces.

What the kubelet sets up for docs/kubernetes/pod.yaml, built by hand:

- the shared volume: a folder D made a shared mount (`mount --bind D D;
  mount --make-shared D`) in the test's namespace, as the node's emptyDir;
- the sidecar: `modelfs mount -f --ready-file R STORE D/models` in a mount
  namespace of its own whose D stays in D's peer group
  (`unshare -m --propagation unchanged`: mountPropagation Bidirectional);
- the app: a process in another mount namespace where every mount is a
  slave (`unshare -m --propagation slave`: HostToContainer). It waits for
  the models and compares bytes.

Then the sidecar is SIGKILLed: the app sees ENOTCONN. A new sidecar (as the
kubelet restarts it) detaches the stale mount and mounts again, and the
same app process, never restarted, reads the right bytes again.
"""
import errno
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import modelfs_bin
from deploy_helpers import cleanup, make_store

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and mounts need root")

# The app: answers one line per command on stdin.
#   read FILE -> "ok <sha256>" or "err <errno>"
#   stat      -> "ok" or "err <errno>" (stat of the mountpoint's model folder)
APP = textwrap.dedent("""\
    import hashlib, os, sys
    mnt = sys.argv[1]
    for line in sys.stdin:
        cmd = line.split()
        try:
            if cmd[0] == "read":
                with open(os.path.join(mnt, cmd[1]), "rb") as f:
                    out = "ok " + hashlib.sha256(f.read()).hexdigest()
            elif cmd[0] == "stat":
                os.stat(os.path.join(mnt, "org", "m"))
                out = "ok"
            elif cmd[0] == "pid":
                out = "ok " + str(os.getpid())
            else:
                out = "err 0"
        except OSError as e:
            out = "err " + str(e.errno)
        print(out, flush=True)
    """)


class App:
    """The app process in its own slave mount namespace."""

    def __init__(self, tmp, mnt):
        script = tmp / "app.py"
        script.write_text(APP)
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "slave", sys.executable, str(script), str(mnt)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, cmd: str) -> str:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the app died"
        return line.strip()

    def read(self, name) -> str:
        return self.ask(f"read org/m/{name}")

    def wait_for(self, name, want, timeout=20.0) -> str:
        deadline = time.time() + timeout
        got = None
        while time.time() < deadline:
            got = self.read(name)
            if got == want:
                return got
            time.sleep(0.1)
        return got

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class Sidecar:
    """`modelfs mount -f` in a mount namespace of its own, D in D's peer group."""

    def __init__(self, tmp, store, key, mnt, ready):
        self.ready = ready
        self.log = open(tmp / "sidecar.log", "a")
        # unshare without --fork execs modelfs: self.proc.pid is the daemon
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "unchanged", modelfs_bin(), "mount", "-f",
             "--trust", f"{key}.pub", "--cache-dir", str(tmp / "cache"),
             "--ready-file", str(ready), "-o", "allow_other", str(store), str(mnt)],
            stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout=20.0):
        deadline = time.time() + timeout
        while not self.ready.exists():
            assert self.proc.poll() is None, f"sidecar exited {self.proc.returncode}"
            assert time.time() < deadline, "no ready file"
            time.sleep(0.05)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout=15.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture
def shared_volume(tmp_path):
    """D as a shared mount (the node's emptyDir), always torn down."""
    d = tmp_path / "shared"
    d.mkdir()
    subprocess.run(["mount", "--bind", str(d), str(d)], check=True)
    subprocess.run(["mount", "--make-shared", str(d)], check=True)
    (d / "models").mkdir()
    yield d
    cleanup(tmp_path)


def test_sidecar_kill_and_restart(tmp_path, shared_volume):
    store, key, files = make_store(tmp_path)
    mnt = shared_volume / "models"
    ready = tmp_path / "run" / "ready"
    ready.parent.mkdir()
    want = {n: f"ok {sha(b)}" for n, b in files.items()}
    app = App(tmp_path, mnt)
    sidecars = []
    try:
        # before the sidecar: the folder is empty
        assert app.read("weights.bin") == f"err {errno.ENOENT}"

        side = Sidecar(tmp_path, store, key, mnt, ready)
        sidecars.append(side)
        side.wait_ready()
        # the app's namespace received the sidecar's mount by propagation
        for name, w in want.items():
            assert app.wait_for(name, w) == w, name
        assert os.path.ismount(mnt), "the node (test namespace) sees it too"

        # the sidecar dies: its mount stays, dead, in the node and app namespaces
        side.kill()
        assert app.wait_for("weights.bin", f"err {errno.ENOTCONN}") == f"err {errno.ENOTCONN}"
        # (stat may still answer from the kernel's attribute cache; reads cannot)
        with pytest.raises(OSError) as e:
            (mnt / "org" / "m" / "config.json").read_bytes()
        assert e.value.errno == errno.ENOTCONN

        # the kubelet restarts it (pod.yaml removes the old ready file first)
        ready.unlink(missing_ok=True)
        side = Sidecar(tmp_path, store, key, mnt, ready)
        sidecars.append(side)
        side.wait_ready()
        # (the new daemon found the dead mount and detached it first)
        assert "stale" in (tmp_path / "sidecar.log").read_text()
        # the same app process reads correct bytes again
        for name, w in want.items():
            assert app.wait_for(name, w) == w, (name, (tmp_path / "sidecar.log").read_text())
        assert app.ask("stat") == "ok"
        assert (mnt / "org" / "m" / "weights.bin").read_bytes() == files["weights.bin"]

        # a clean stop unmounts everywhere and removes the ready file
        side.stop()
        assert side.proc.returncode == 0, (tmp_path / "sidecar.log").read_text()
        assert not ready.exists()
        assert app.wait_for("weights.bin", f"err {errno.ENOENT}") == f"err {errno.ENOENT}"
        assert not os.path.ismount(mnt)
    finally:
        for s in sidecars:
            s.kill()
            if not s.log.closed:
                s.log.close()
        app.close()


def test_mount_in_slave_namespace_stays_invisible(tmp_path, shared_volume):
    """Why modelfs@.service sets no ProtectSystem=, PrivateTmp=, ...: those give
    the service a namespace whose mounts are slaves (systemd.exec(5)), and a
    FUSE mount made there never reaches the host. The same holds for an app
    container (HostToContainer): its mounts do not go back to the node."""
    store, key, files = make_store(tmp_path)
    mnt = shared_volume / "models"
    ready = tmp_path / "ready"
    log = open(tmp_path / "slave.log", "w")
    proc = subprocess.Popen(
        ["unshare", "-m", "--propagation", "slave", modelfs_bin(), "mount", "-f",
         "--trust", f"{key}.pub", "--cache-dir", str(tmp_path / "cache"),
         "--ready-file", str(ready), str(store), str(mnt)],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 20
        while not ready.exists():
            assert proc.poll() is None and time.time() < deadline, \
                (tmp_path / "slave.log").read_text()
            time.sleep(0.05)
        # mounted and serving in its own namespace, absent from ours
        assert not os.path.ismount(mnt)
        assert os.listdir(mnt) == []
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
    assert proc.returncode == 0
    assert not ready.exists()
