"""The faults of ranged reads: `modelfs pull` and the lazy mount against a
hostile registry (hostile_registry.py) that serves a model pushed to it by
`modelfs push`, then misbehaves on the GETs of one blob (docs/remote.md
"Faults", second table); and the lazy mount while the real registry
(oci_registry.py) is stopped and started again on the same port.

Oracles: the model's own bytes. A pull either installs the model byte for
byte or exits 2 (registry error; staging kept, and the next run resumes
once the fault is gone) or 1 (the bytes do not verify; nothing left). A
mount read either returns the right bytes or fails with EIO within a bound
of wall time, and the same read succeeds once the fault is cleared, without
a remount. MODELFS_HTTP_TIMEOUT=2 keeps the stalls short.
"""
import errno
import hashlib
import json
import os
import pathlib
import sys
import threading
import time

import pytest

from remote.hostile_registry import (PASSWORD, USER, HostileRegistry, flipped_byte, long_body,
                                     push_env, short_body, stall_body, status, whole_blob,
                                     write_auth, wrong_content_range)
from remote.oci_registry import modelfs_bin, restart_registry, run, stop_registry

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "mount"))
from test_mount import FuseProcess  # noqa: E402

KiB, MiB = 1 << 10, 1 << 20
BIG = "model.safetensors"
REPO = "org/reads"
STAGING = ".modelfs-pull"
SLOT = 256 * KiB  # each mount case reads its own slot: no page cached by another


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A sealed model: a 6 MiB file of random bytes and a small one."""
    root = tmp_path_factory.mktemp("reads")
    keys = root / "keys"
    keys.mkdir()
    run("keygen", keys / "pub", check=0)
    files = {BIG: b"\0" + os.urandom(6 * MiB + 12344), "README.md": b"# reads\n" * 500}
    m = root / "model"
    m.mkdir()
    for rel, data in files.items():
        (m / rel).write_bytes(data)
    run("seal", "--key", keys / "pub.key", "--name", REPO, m, check=0)
    return {"root": root, "dir": m, "pub": keys / "pub.pub", "files": files,
            "digest": "sha256:" + hashlib.sha256(files[BIG]).hexdigest()}


@pytest.fixture(scope="module")
def hreg(model):
    """The hostile registry, holding the model (pushed by the CLI); stopped at the end."""
    r = HostileRegistry(auth=("basic", USER, PASSWORD)).start()
    try:
        r.env = push_env(write_auth(model["root"] / "auth.json", r.host), model["root"])
        p = run("push", "--trust", model["pub"], model["dir"], f"http://{r.host}/{REPO}:v1",
                env=r.env, timeout=60)
        assert p.returncode == 0, p.stderr
        yield r
    finally:
        r.stop()


@pytest.fixture
def reg(hreg):
    hreg.clear_faults()
    yield hreg
    hreg.clear_faults()


def big_blob(model):
    return "/blobs/" + model["digest"] + "$"


# (id, action(reg, model), times (None: always), pull: exit and reason, mount: "eio" or "ok")
FAULTS = [
    ("content-range-offset", lambda r, m: wrong_content_range(r, shift=4096), None,
     (2, "with another Content-Range"), "eio"),
    ("content-range-total", lambda r, m: wrong_content_range(r, total=1), None,
     (2, "with another Content-Range"), "eio"),
    ("200-whole-blob", lambda r, m: whole_blob(r), None,
     (2, "response body over the size limit"), "eio"),
    ("short-body-once", lambda r, m: short_body(r), 1, (0, None), "ok"),
    ("short-body", lambda r, m: short_body(r), None,
     (2, "transfer closed with 100 bytes remaining to read (4 attempts)"), None),
    ("long-body", lambda r, m: long_body(r), None,
     (2, "response body over the size limit"), "eio"),
    ("404", lambda r, m: status(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}'), None,
     (2, "blob GET: HTTP 404"), "eio"),
    ("401", lambda r, m: status(401, b"", {"WWW-Authenticate": 'Basic realm="hostile"'}),
     None, (2, "authentication failed (HTTP 401)"), "eio"),
    ("429-twice", lambda r, m: status(429, b"", {"Retry-After": "1"}), 2, (0, None), "ok"),
    ("503-twice", lambda r, m: status(503), 2, (0, None), "ok"),
    ("503", lambda r, m: status(503), None, (2, "blob GET: HTTP 503 (4 attempts)"), "eio"),
    ("stall-once", lambda r, m: stall_body(r), 1, None, "ok"),
    ("stall", lambda r, m: stall_body(r), None, (2, "Operation too slow"), "eio"),
    # once is enough: a blob fetched whole in this run is not fetched again
    ("flipped-byte-once", lambda r, m: flipped_byte(r), 1, (1, "the registry sent bytes that do not match"), None),
]


# -- pull --------------------------------------------------------------------

def pull(reg, model, dest, *extra):
    return run("pull", "--trust", model["pub"], "--chunk-size", "1M", "--jobs", "2", *extra,
               f"http://{reg.host}/{REPO}:v1", dest, env=reg.env, timeout=120)


def assert_pulled(p, model, dest):
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    assert p.stdout.startswith("pulled: ")
    for rel, data in model["files"].items():
        assert (dest / rel).read_bytes() == data, rel
    assert not pathlib.Path(str(dest) + STAGING).exists()


@pytest.mark.parametrize("case", [f for f in FAULTS if f[3]], ids=lambda f: f[0])
def test_pull_fault(case, reg, model, tmp_path):
    name, action, times, (code, reason), _ = case
    reg.fault("GET", big_blob(model), action(reg, model), times)
    dest = tmp_path / "out"
    t0 = time.monotonic()
    p = pull(reg, model, dest)
    took = time.monotonic() - t0
    assert took < 30, took
    if code == 0:
        assert_pulled(p, model, dest)
        return
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    assert "pulled:" not in p.stdout
    lines = p.stderr.strip().splitlines()
    assert reason in lines[0], lines[0]
    assert reg.host in lines[0] and PASSWORD not in p.stderr
    assert not dest.exists()
    staging = pathlib.Path(str(dest) + STAGING)
    if code == 1:  # nothing left
        assert len(lines) == 2 and "does not verify; nothing installed" in lines[1]
        assert not staging.exists()
        reg.clear_faults()
        assert_pulled(pull(reg, model, dest), model, dest)
        return
    # exit 2: the staging folder is kept, named, and a run without the fault resumes
    assert len(lines) == 2 and f"partial download kept in {staging}" in lines[1], lines
    assert staging.is_dir()
    reg.clear_faults()
    assert_pulled(pull(reg, model, dest), model, dest)


def test_pull_whole_blob_200_accepted_for_a_whole_blob(reg, model, tmp_path):
    """A 200 with the whole blob is fine when the whole blob was asked (one chunk)."""
    reg.fault("GET", big_blob(model), whole_blob(reg))
    dest = tmp_path / "out"
    assert_pulled(pull(reg, model, dest, "--chunk-size", "16M"), model, dest)


# -- the lazy mount -----------------------------------------------------------

class EnvMount(FuseProcess):
    """`modelfs mount -f oci://REF MNT` with its own environment; always unmounted."""

    def __init__(self, ref, mnt, trust, env, *extra):
        self.mnt = pathlib.Path(mnt)
        self.mnt.mkdir(parents=True, exist_ok=True)
        self.logpath = self.mnt.parent / (self.mnt.name + ".log")
        self.env = env
        self.args = [modelfs_bin(), "mount", "-f", "--trust", str(trust), "--cache-dir",
                     str(self.mnt.parent / (self.mnt.name + ".cache")), *map(str, extra),
                     f"oci://{ref}", str(self.mnt)]
        self.proc = None

    def __enter__(self):
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.env)
        try:
            return super().__enter__()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def status(self):
        return json.loads((self.mnt / ".modelfs" / "status.json").read_text())


def timed_pread(fd, n, off, limit):
    """(bytes or OSError, seconds) of pread, failing the test if it takes over LIMIT s."""
    out = {}

    def go():
        try:
            out["r"] = os.pread(fd, n, off)
        except OSError as e:
            out["r"] = e
    t0 = time.monotonic()
    th = threading.Thread(target=go, daemon=True)
    th.start()
    th.join(limit)
    assert not th.is_alive(), f"a read at {off} still blocked after {limit} s"
    return out["r"], time.monotonic() - t0


@pytest.fixture(scope="module")
def hmount(hreg, model, tmp_path_factory):
    d = tmp_path_factory.mktemp("hmount")
    env = dict(hreg.env)
    with EnvMount(f"http://{hreg.host}/{REPO}:v1", d / "mnt", model["pub"], env) as m:
        m.file = m.mnt / REPO / BIG
        assert m.file.stat().st_size == len(model["files"][BIG])
        yield m


MOUNT_CASES = [f for f in FAULTS if f[4]]


@pytest.mark.parametrize("case", MOUNT_CASES, ids=lambda f: f[0])
def test_mount_read_fault(case, reg, hmount, model):
    name, action, times, _, want = case
    data = model["files"][BIG]
    off = (MOUNT_CASES.index(case) + 1) * SLOT + 4096
    n = 4096
    # a flipped byte would hit the block read; the others answer the GET itself
    reg.fault("GET", big_blob(model), action(reg, model), times)
    before = hmount.status()["counters"]
    fd = os.open(hmount.file, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        got, took = timed_pread(fd, n, off, 60)
        # each attempt bounded; the kernel asks a failed page twice (two GET rounds)
        assert took < 40, took
        if want == "ok":
            assert got == data[off:off + n], got
        else:
            assert isinstance(got, OSError) and got.errno == errno.EIO, got
            assert "remote-read-failure" in hmount.log()
        failed_ctr = hmount.status()["counters"]
        if times and name.endswith("-twice"):  # answered by the client's own retries
            assert failed_ctr["remote_retries"] - before["remote_retries"] >= times, failed_ctr
        if want == "eio":  # the counters count the GETs that served a read
            assert failed_ctr["remote_requests"] == before["remote_requests"]
            assert failed_ctr["remote_failures"] > before["remote_failures"]
        # the fault is cleared: the same read gives the right bytes, same mount
        reg.clear_faults()
        again, _ = timed_pread(fd, n, off, 30)
        assert again == data[off:off + n]
    finally:
        os.close(fd)
    after = hmount.status()["counters"]
    assert after["remote_requests"] > failed_ctr["remote_requests"] or want == "ok"
    assert after["remote_bytes"] > failed_ctr["remote_bytes"] or want == "ok"
    assert hmount.proc.poll() is None


def test_mount_flipped_byte_eio_for_its_block_only(reg, hmount, model):
    """A byte changed in flight: EIO for the block that holds it, every time it is
    served so; right bytes for the next block; right bytes once the fault is gone."""
    data = model["files"][BIG]
    off = (len(MOUNT_CASES) + 1) * SLOT
    reg.fault("GET", big_blob(model), flipped_byte(reg, at=off + 100))
    fd = os.open(hmount.file, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        got, _ = timed_pread(fd, 4096, off, 30)
        assert isinstance(got, OSError) and got.errno == errno.EIO, got
        got, _ = timed_pread(fd, 4096, off + 4096, 30)  # the flip is not in this range
        assert got == data[off + 4096:off + 8192]
        assert "verify-failure" in hmount.log()
        reg.clear_faults()
        got, _ = timed_pread(fd, 4096, off, 30)
        assert got == data[off:off + 4096]
    finally:
        os.close(fd)


# -- the real registry stopped in the middle of a read, then started again ------

def test_mount_registry_outage(registry, model, tmp_path):
    auth = registry.write_auth_file(tmp_path / "auth.json")
    env = registry.env(auth, tmp_path)
    env["MODELFS_HTTP_TIMEOUT"] = "2"
    run("push", "--trust", model["pub"], "--ca-cert", registry.ca, model["dir"],
        f"{registry.host}/{REPO}:v1", env=env, check=0)
    data = model["files"][BIG]
    # No block cache: every pread is a GET, none fetched ahead before the outage
    # (test_remote_cache.py reads a cached model with the registry stopped).
    with EnvMount(f"{registry.host}/{REPO}:v1", tmp_path / "mnt", model["pub"], env,
                  "--ca-cert", registry.ca, "--remote-cache-size", "0") as m:
        fd = os.open(m.mnt / REPO / BIG, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            step, off, failed = 64 * KiB, 0, []
            while off < 2 * MiB:  # a sequential read, the registry up
                got, _ = timed_pread(fd, step, off, 30)
                assert got == data[off:off + step]
                off += step
            stop_registry(registry)  # in the middle of the file
            while off < 3 * MiB:
                got, took = timed_pread(fd, step, off, 30)
                assert isinstance(got, OSError) and got.errno == errno.EIO, got
                assert took < 20, took
                failed.append(off)
                off += step
            assert "remote-read-failure" in m.log()
            dest = tmp_path / "out"  # a pull meanwhile: exit 2 at once, nothing written
            p = run("pull", "--trust", model["pub"], "--ca-cert", registry.ca,
                    f"{registry.host}/{REPO}:v1", dest, env=env, timeout=60)
            assert p.returncode == 2 and "Failed to connect" in p.stderr, p.stderr
            assert not dest.exists()
            restart_registry(registry)  # same port, same storage
            for off in failed + list(range(3 * MiB, len(data), step)):
                got, _ = timed_pread(fd, step, off, 30)
                assert got == data[off:off + step], off
            assert m.proc.poll() is None
        finally:
            os.close(fd)
