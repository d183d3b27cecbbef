"""The lazy mount: `modelfs mount oci://REGISTRY/REPO:TAG MNT` against a real
registry (Debian's docker-registry with TLS and htpasswd, oci_registry.py).

A model sealed and pushed with the real CLI is mounted from the registry;
oracles are the source bytes, hashlib and the registry's own storage folder
(a blob corrupted there must give EIO for its block, never its bytes).
Credentials come only from a REGISTRY_AUTH_FILE the test writes. Every
mount is unmounted, even on failure (FuseProcess of tests/mount).
"""
import errno
import hashlib
import json
import mmap
import os
import pathlib
import subprocess
import sys
import urllib.request

import pytest

from remote.oci_registry import modelfs_bin, run

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "mount"))
from test_mount import FuseProcess, drop_caches  # noqa: E402

MiB = 1 << 20
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def rnd(n: int) -> bytes:
    """Random bytes that cannot start like a pickle stream."""
    return b"\0" + os.urandom(n - 1)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    run("keygen", d / "trusted", check=0)
    run("keygen", d / "other", check=0)
    return {"trusted": d / "trusted", "other": d / "other"}


@pytest.fixture
def auth(registry, tmp_path, monkeypatch):
    """The auth file, for push and for the mount daemon (it inherits the environment)."""
    f = registry.write_auth_file(tmp_path / "auth.json")
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(f))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    return f


def make_model(root: pathlib.Path, key, name) -> dict:
    """A sealed model of several files, one of 3 MiB and one nested; {path: bytes}."""
    files = {
        "model.safetensors": rnd(3 * MiB + 12345),
        "config.json": json.dumps({"hidden": "x" * 9000}).encode(),
        "README.md": b"# lazy\n" * 1500,
        "sub/deep/run.py": b"print('hello')\n" * 800,
    }
    m = root / "model"
    for rel, data in files.items():
        (m / rel).parent.mkdir(parents=True, exist_ok=True)
        (m / rel).write_bytes(data)
    run("seal", "--key", f"{key}.key", "--name", name, m, check=0)
    return {"dir": m, "files": files}


def push(registry, keys, model, ref):
    p = run("push", "--trust", f"{keys['trusted']}.pub", "--ca-cert", registry.ca,
            model["dir"], f"{registry.host}/{ref}", check=0)
    return p.stdout


class OciMount(FuseProcess):
    """`modelfs mount -f ... oci://REF MNT`; always unmounted on exit."""

    def __init__(self, registry, ref, mnt, trust, *extra):
        self.mnt = pathlib.Path(mnt)
        self.mnt.mkdir(parents=True, exist_ok=True)
        self.logpath = self.mnt.parent / (self.mnt.name + ".log")
        self.args = [modelfs_bin(), "mount", "-f", "--trust", f"{trust}.pub",
                     "--cache-dir", str(self.mnt.parent / (self.mnt.name + ".cache")),
                     "--ca-cert", str(registry.ca), *map(str, extra),
                     f"oci://{registry.host}/{ref}", str(self.mnt)]
        self.proc = None

    def status(self):
        return json.loads((self.mnt / ".modelfs" / "status.json").read_text())


def manifest_digest(registry, ref_path) -> str:
    st, _, body = registry.request(ref_path, accept=MANIFEST)
    assert st == 200
    return "sha256:" + hashlib.sha256(body).hexdigest()


def check_files(root: pathlib.Path, files: dict):
    for rel, data in files.items():
        assert (root / rel).read_bytes() == data, rel
        assert (root / rel).stat().st_size == len(data)
    big = files["model.safetensors"]
    with open(root / "model.safetensors", "rb") as f:
        with mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
            assert mm[:] == big
            assert mm[2 * MiB:2 * MiB + 4096] == big[2 * MiB:2 * MiB + 4096]


def test_lazy_mount_by_tag_serves_every_file(registry, keys, auth, tmp_path):
    model = make_model(tmp_path, keys["trusted"], "org/lazy")
    push(registry, keys, model, "org/lazy:v1")
    with OciMount(registry, "org/lazy:v1", tmp_path / "mnt", keys["trusted"]) as m:
        root = m.mnt / "org" / "lazy"
        names = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
        assert names == set(model["files"])
        st = m.status()
        # listing fetched at most the heads the format detection reads, never the big file
        listed = st["counters"]["remote_bytes"]
        assert listed < MiB, st["counters"]
        assert [x["path"] for x in st["models"]] == ["org/lazy"]
        # a byte read in the middle fetches about one block, not the file
        fd = os.open(root / "model.safetensors", os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            assert os.pread(fd, 1, 2 * MiB) == \
                model["files"]["model.safetensors"][2 * MiB:2 * MiB + 1]
        finally:
            os.close(fd)
        c = m.status()["counters"]
        assert 0 < c["remote_bytes"] - listed <= 256 * 1024, c
        check_files(root, model["files"])
        drop_caches()
        check_files(root, model["files"])
        f = root / "model.safetensors"
        assert os.getxattr(f, "user.modelfs.sha256").decode() == \
            hashlib.sha256(model["files"]["model.safetensors"]).hexdigest()
        assert os.getxattr(root, "user.modelfs.name") == b"org/lazy"
        out = subprocess.run(["getfattr", "-d", "-m", "-", str(f)], capture_output=True,
                             text=True, check=True).stdout
        assert f'user.modelfs.size="{len(model["files"]["model.safetensors"])}"' in out
        assert "oci-resolved" in m.log() and manifest_digest(
            registry, "/v2/org/lazy/manifests/v1") in m.log()
    cache = tmp_path / "mnt.cache" / "oci"
    sigs = list(cache.glob("*/model/model.sig"))
    trees = list(cache.glob("*/model/.modelfs/trees/*.tree"))
    assert len(sigs) == 1 and sigs[0].read_bytes() == (model["dir"] / "model.sig").read_bytes()
    assert len(trees) == len(model["files"])


def test_lazy_mount_by_digest(registry, keys, auth, tmp_path):
    model = make_model(tmp_path, keys["trusted"], "org/bydigest")
    push(registry, keys, model, "org/bydigest:v1")
    digest = manifest_digest(registry, "/v2/org/bydigest/manifests/v1")
    with OciMount(registry, f"org/bydigest@{digest}", tmp_path / "mnt", keys["trusted"]) as m:
        check_files(m.mnt / "org" / "bydigest", model["files"])


def test_untrusted_signer_exposes_nothing(registry, keys, auth, tmp_path):
    model = make_model(tmp_path, keys["other"], "org/untrusted")
    run("push", "--trust", f"{keys['other']}.pub", "--ca-cert", registry.ca, model["dir"],
        f"{registry.host}/org/untrusted:v1", check=0)
    with OciMount(registry, "org/untrusted:v1", tmp_path / "mnt", keys["trusted"]) as m:
        assert not (m.mnt / "org" / "untrusted").exists()
        st = m.status()
        assert st["models"] == []
        assert [r["path"] for r in st["refused"]] == ["org/untrusted"]
        assert st["refused"][0]["reason"]
        assert "model-refused model=org/untrusted" in m.log()
        assert "untrusted key" in m.log()


def test_corrupted_blob_gives_eio_for_its_block_only(registry, keys, auth, tmp_path):
    model = make_model(tmp_path, keys["trusted"], "org/corrupt")
    push(registry, keys, model, "org/corrupt:v1")
    data = model["files"]["model.safetensors"]
    hexd = hashlib.sha256(data).hexdigest()
    blob = (registry.root / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" /
            hexd[:2] / hexd / "data")
    off = MiB + 100
    raw = bytearray(blob.read_bytes())
    raw[off] ^= 0xFF
    blob.write_bytes(bytes(raw))
    with OciMount(registry, "org/corrupt:v1", tmp_path / "mnt", keys["trusted"]) as m:
        f = m.mnt / "org" / "corrupt" / "model.safetensors"
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            with pytest.raises(OSError) as ei:
                os.pread(fd, 4096, MiB)
            assert ei.value.errno == errno.EIO
            assert os.pread(fd, 4096, 0) == data[:4096]
            assert os.pread(fd, 4096, MiB + 4096) == data[MiB + 4096:MiB + 8192]
            tail = len(data) - 5000
            assert os.pread(fd, 5000, tail) == data[tail:]
        finally:
            os.close(fd)
        assert "verify-failure" in m.log()
        # the other files are whole
        for rel in ("config.json", "sub/deep/run.py"):
            assert (m.mnt / "org" / "corrupt" / rel).read_bytes() == model["files"][rel]


def put_manifest(registry, path, body: bytes):
    import base64
    import ssl
    from remote.oci_registry import PASSWORD, USER
    req = urllib.request.Request(f"https://{registry.host}{path}", data=body, method="PUT")
    req.add_header("Content-Type", MANIFEST)
    req.add_header("Authorization", "Basic " +
                   base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
    ctx = ssl.create_default_context(cafile=str(registry.ca))
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        assert r.status == 201


def test_hostile_layer_path_refused(registry, keys, auth, tmp_path):
    model = make_model(tmp_path, keys["trusted"], "org/hostile")
    push(registry, keys, model, "org/hostile:v1")
    st, _, body = registry.request("/v2/org/hostile/manifests/v1", accept=MANIFEST)
    assert st == 200
    man = json.loads(body)
    man["layers"][0]["annotations"]["org.cncf.model.filepath"] = "../x"
    put_manifest(registry, "/v2/org/hostile/manifests/evil", json.dumps(man).encode())
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p = subprocess.run([modelfs_bin(), "mount", "-f", "--trust", f"{keys['trusted']}.pub",
                        "--cache-dir", str(tmp_path / "cache"), "--ca-cert", str(registry.ca),
                        f"oci://{registry.host}/org/hostile:evil", str(mnt)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "refused path" in p.stderr and "../x" in p.stderr
    assert not os.path.ismount(mnt)
