"""Packed files in a registry (docs/remote.md, "Packed files"): a model whose
files are stored only packed (`modelfs pack --remove-original`) is pushed
with its packed bytes as layers of media type
application/vnd.modelfs.packed.v1+zstd, pulled back into .modelfs/packed/
(each copy decompressed and measured against the signed Merkle root before
anything is installed), and served by the lazy mount, which fetches a
packed layer whole at first open.

Oracles: skopeo's view of the manifest, the packed files byte for byte,
`modelfs verify` and a real mount of the pulled store (the plain bytes read
through it equal the originals). A forged packed copy in the registry's
storage leaves nothing behind.
"""
import errno
import hashlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

from remote.oci_registry import run
from remote.test_pull import env, pull, push  # noqa: F401 (env: fixture)
from remote.test_push import keys  # noqa: F401 (fixture)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "mount"))
from test_mount import Mount  # noqa: E402

MiB = 1 << 20
MT_PACKED = "application/vnd.modelfs.packed.v1+zstd"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"


def packed_model(root: pathlib.Path, keys, name="org/packed") -> dict:
    """A sealed model, then packed with its originals removed; {path: plain bytes}."""
    m = root / "model"
    files = {"weights.bin": (b"\0" + os.urandom(MiB // 2)) * 6,  # compressible: repeated
             # unique per model: blobs are shared by digest across the registry
             "config.json": b'{"layers": 12, "id": "%s"}\n' % os.urandom(8).hex().encode() * 300}
    for rel, data in files.items():
        (m / rel).parent.mkdir(parents=True, exist_ok=True)
        (m / rel).write_bytes(data)
    run("seal", "--key", f"{keys}.key", "--name", name, m, check=0)
    run("pack", "--remove-original", "-q", m, check=0)
    assert not (m / "weights.bin").exists()
    return {"dir": m, "files": files}


def packed_copies(m: pathlib.Path) -> dict:
    return {p.name: p.read_bytes() for p in (m / ".modelfs" / "packed").iterdir()}


def corrupt_blob(registry, data: bytes):
    """Flips a byte in the middle of the registry's stored blob of @data."""
    hexd = hashlib.sha256(data).hexdigest()
    blob = (registry.root / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" /
            hexd[:2] / hexd / "data")
    raw = bytearray(blob.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    blob.write_bytes(bytes(raw))


def test_packed_model_is_pushed_and_pulled_back(registry, keys, tmp_path, env):
    model = packed_model(tmp_path, keys)
    push(registry, keys, model["dir"], "org/packed:v1", env)
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--cert-dir", str(registry.cert_dir),
                          f"docker://{registry.host}/org/packed:v1"], env=env,
                         capture_output=True, text=True, check=True).stdout
    layers = json.loads(raw)["layers"]
    copies = packed_copies(model["dir"])
    packed = [x for x in layers if x["mediaType"] == MT_PACKED]
    assert len(packed) == len(model["files"]) == len(copies)
    digests = {"sha256:" + hashlib.sha256(b).hexdigest() for b in copies.values()}
    assert {x["digest"] for x in packed} == digests
    for x in packed:
        ann = x["annotations"]
        assert ann["org.opencontainers.image.title"] == ann["org.cncf.model.filepath"] + ".zst"
    dest = tmp_path / "out"
    p = pull(registry, f"{keys}.pub", "org/packed:v1", dest, env, check=0)
    assert p.stdout.startswith("pulled: ")
    assert packed_copies(dest) == copies
    assert not (dest / "weights.bin").exists()
    v = run("verify", "--trust", f"{keys}.pub", dest, check=0)
    assert v.stdout.startswith("verified: ")
    # a real mount of the pulled store serves the plain bytes
    store = tmp_path / "store" / "org"
    store.mkdir(parents=True)
    dest.rename(store / "packed")
    with Mount(tmp_path / "store", tmp_path / "mnt", f"{keys}.pub") as m:
        for rel, data in model["files"].items():
            assert (m.mnt / "org" / "packed" / rel).read_bytes() == data, rel


def get_json(registry, path, accept):
    st, _, body = registry.request(path, accept=accept)
    assert st == 200, (path, st)
    return json.loads(body)


def test_packed_copy_of_another_model_is_refused(registry, keys, tmp_path, env):
    """A hostile registry serves model A's signature over a manifest whose packed
    layer is model B's (a valid zstd stream with its own right digest): the copy is
    decompressed, measured, found not to be A's signed root, and nothing is left."""
    repo = "org/forgeda"
    a = packed_model(tmp_path / "a", keys, repo)
    b = packed_model(tmp_path / "b", keys, repo)
    push(registry, keys, a["dir"], f"{repo}:v1", env)
    push(registry, keys, b["dir"], f"{repo}:b", env)
    man_a = get_json(registry, f"/v2/{repo}/manifests/v1", MANIFEST)
    man_b = get_json(registry, f"/v2/{repo}/manifests/b", MANIFEST)
    swapped = 0
    for i, layer in enumerate(man_a["layers"]):
        ann = layer.get("annotations", {})
        if layer["mediaType"] == MT_PACKED and ann.get("org.cncf.model.filepath") == "weights.bin":
            man_a["layers"][i] = next(x for x in man_b["layers"] if x["annotations"].get(
                "org.cncf.model.filepath") == "weights.bin")
            swapped += 1
    assert swapped == 1
    body = json.dumps(man_a).encode()
    forged = registry.put_manifest(repo, "forged", body, MANIFEST)
    # A's signature referrer, re-pointed at the forged manifest (a registry can)
    d_a = "sha256:" + hashlib.sha256(
        registry.request(f"/v2/{repo}/manifests/v1", accept=MANIFEST)[2]).hexdigest()
    idx = get_json(registry, f"/v2/{repo}/manifests/sha256-{d_a[7:]}", INDEX)
    ref = get_json(registry, f"/v2/{repo}/manifests/{idx['manifests'][0]['digest']}", MANIFEST)
    ref["subject"] = {"mediaType": MANIFEST, "digest": forged, "size": len(body)}
    rbody = json.dumps(ref).encode()
    rdigest = "sha256:" + hashlib.sha256(rbody).hexdigest()
    registry.put_manifest(repo, rdigest, rbody, MANIFEST)
    entry = dict(idx["manifests"][0], digest=rdigest, size=len(rbody))
    registry.put_manifest(repo, f"sha256-{forged[7:]}",
                 json.dumps({"schemaVersion": 2, "mediaType": INDEX,
                             "manifests": [entry]}).encode(), INDEX)
    dest = tmp_path / "out"
    p = pull(registry, f"{keys}.pub", f"{repo}:forged", dest, env)
    assert p.returncode != 0
    assert "weights.bin: the packed copy does not match the signed Merkle root" in p.stderr, \
        p.stderr
    assert not dest.exists()


def test_packed_copy_changed_in_storage_leaves_nothing(registry, keys, tmp_path, env):
    model = packed_model(tmp_path, keys, "org/forged")
    push(registry, keys, model["dir"], "org/forged:v1", env)
    for copy in packed_copies(model["dir"]).values():  # changed under the same digest
        corrupt_blob(registry, copy)
    dest = tmp_path / "out"
    p = pull(registry, f"{keys}.pub", "org/forged:v1", dest, env)
    assert p.returncode != 0
    assert "do not match" in p.stderr, p.stderr
    assert not dest.exists()


def test_lazy_mount_serves_a_packed_file_fetched_whole(registry, keys, tmp_path, env,
                                                      monkeypatch):
    """The lazy mount fetches a packed layer whole at its file's first open, checks it
    against the layer digest, keeps it beside the trees, and reads it as the local
    mount reads packed copies: every frame verified against the signed root."""
    from remote.test_lazy_mount import OciMount
    model = packed_model(tmp_path, keys, "org/packedlazy")
    push(registry, keys, model["dir"], "org/packedlazy:v1", env)
    for k in ("REGISTRY_AUTH_FILE", "HOME"):
        monkeypatch.setenv(k, env[k])
    copies = packed_copies(model["dir"])
    with OciMount(registry, "org/packedlazy:v1", tmp_path / "mnt", keys) as m:
        root = m.mnt / "org" / "packedlazy"
        assert sorted(p.name for p in root.iterdir()) == sorted(model["files"])
        for rel, data in model["files"].items():
            assert (root / rel).read_bytes() == data, rel
        assert m.log().count("oci-packed-fetched") == len(copies)
    kept = {p.name: p.read_bytes()
            for p in (tmp_path / "mnt.cache" / "oci").glob("*/model/.modelfs/packed/*")}
    assert kept == copies


def test_lazy_mount_never_serves_a_changed_packed_layer(registry, keys, tmp_path, env,
                                                        monkeypatch):
    """A packed blob changed in the registry's storage: fetched, refused by its digest
    before it is kept; the read gets EIO, never bytes."""
    from remote.test_lazy_mount import OciMount
    model = packed_model(tmp_path, keys, "org/packedbad")
    push(registry, keys, model["dir"], "org/packedbad:v1", env)
    for k in ("REGISTRY_AUTH_FILE", "HOME"):
        monkeypatch.setenv(k, env[k])
    for copy in packed_copies(model["dir"]).values():  # every packed blob changed
        corrupt_blob(registry, copy)
    with OciMount(registry, "org/packedbad:v1", tmp_path / "mnt", keys) as m:
        with pytest.raises(OSError) as ei:
            (m.mnt / "org" / "packedbad" / "weights.bin").read_bytes()
        assert ei.value.errno == errno.EIO
        assert "oci-packed-failure" in m.log() and "do not match" in m.log()
    assert not list((tmp_path / "mnt.cache" / "oci").glob("*/model/.modelfs/packed/*"))
