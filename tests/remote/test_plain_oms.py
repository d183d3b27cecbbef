"""Plain OMS artifacts in the lazy mount (docs/remote.md, "Plain OMS
signatures"): models signed by SHA-256 digests alone, without modelfs
Merkle roots.

The external oracle is the OMS golden signature of the reference signer
(../shared/corpus/oms, v1.1.0-elliptic-key), pushed as is and mounted from
the registry. Larger plain models are signed here the way the reference
signer does (an in-toto statement of `{name, algorithm, digest}` resources
in a DSSE envelope, ECDSA P-384 with the corpus's test key, through the
`openssl` command), so that files of many blocks are served, mmapped and,
once their blob is corrupted in the registry's storage, refused with EIO.
"""
import base64
import errno
import hashlib
import json
import mmap
import os
import shutil
import subprocess

import pytest

from conftest import shared_dir
from remote.oci_registry import run
from remote.test_lazy_mount import OciMount, auth, rnd  # noqa: F401 (fixture)
from test_mount import Mount  # noqa: E402 (tests/mount is put on sys.path by test_lazy_mount)

MiB = 1 << 20
CERTS = shared_dir() / "corpus" / "oms" / "keys" / "certificate"
PUB = CERTS / "signing-key-pub.pem"
HINT = "e8450dec4eb99dae995da9af1bc2cc9f76ed669ee2e744f57abba763df3e3f8e"
PAYLOAD_TYPE = "application/vnd.in-toto+json"


class PlainMount(OciMount):
    """A lazy mount trusting the corpus's test key (a PEM, not a modelfs .pub)."""

    def __init__(self, registry, ref, mnt, *extra):
        super().__init__(registry, ref, mnt, "unused", *extra)
        self.args[self.args.index("unused.pub")] = str(PUB)


def push_plain(registry, folder, ref):
    return run("push", "--trust", PUB, "--ca-cert", registry.ca, folder,
               f"{registry.host}/{ref}", check=0)


def sign_plain(folder, files: dict):
    """Writes @files into @folder and a plain OMS model.sig over them, as model_signing does."""
    res = []
    for rel in sorted(files):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(files[rel])
        res.append({"algorithm": "sha256", "name": rel,
                    "digest": hashlib.sha256(files[rel]).hexdigest()})
    subject = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in res)).hexdigest()
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": folder.name, "digest": {"sha256": subject}}],
        "predicateType": "https://model_signing/signature/v1.0",
        "predicate": {"resources": res, "serialization": {
            "method": "files", "hash_type": "sha256", "allow_symlinks": False,
            "ignore_paths": ["model.sig"]}},
    }
    payload = json.dumps(statement).encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(PAYLOAD_TYPE), PAYLOAD_TYPE.encode(), len(payload),
                                     payload)
    sig = subprocess.run(["openssl", "dgst", "-sha384", "-sign", str(CERTS / "signing-key.pem")],
                         input=pae, capture_output=True, check=True).stdout
    bundle = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": HINT}, "tlogEntries": []},
        "dsseEnvelope": {"payload": base64.b64encode(payload).decode(),
                         "payloadType": PAYLOAD_TYPE,
                         "signatures": [{"sig": base64.b64encode(sig).decode(), "keyid": ""}]},
    }
    (folder / "model.sig").write_text(json.dumps(bundle))


def test_golden_plain_oms_model_is_served(registry, auth, tmp_path):
    src = shared_dir() / "corpus" / "oms" / "v1.1.0-elliptic-key"
    model = tmp_path / "v1.1.0-elliptic-key"
    shutil.copytree(src, model)
    for p in model.iterdir():
        p.chmod(0o644)
    push_plain(registry, model, "oms/v1.1.0-elliptic-key:v1")
    with PlainMount(registry, "oms/v1.1.0-elliptic-key:v1", tmp_path / "mnt") as m:
        root = m.mnt / "oms" / "v1.1.0-elliptic-key"
        assert sorted(p.name for p in root.iterdir()) == ["signme-1", "signme-2"]
        for name in ("signme-1", "signme-2"):
            data = (src / name).read_bytes()
            assert (root / name).read_bytes() == data
            assert os.getxattr(root / name, "user.modelfs.sha256").decode() == \
                hashlib.sha256(data).hexdigest()
            # no fs-verity digest was signed, so none is shown
            assert "user.modelfs.digest" not in os.listxattr(root / name)
        assert [x["path"] for x in m.status()["models"]] == ["oms/v1.1.0-elliptic-key"]


def test_plain_model_of_many_blocks_is_verified_whole_then_served(registry, auth, tmp_path):
    files = {"model.safetensors": rnd(3 * MiB + 777), "config.json": b'{"a": 1}\n' * 900,
             "sub/tokenizer.bin": rnd(70000)}
    folder = tmp_path / "plainbig"
    folder.mkdir()
    sign_plain(folder, files)
    run("verify", "--trust", PUB, folder, check=0)  # the CLI's own verdict first
    push_plain(registry, folder, "oms/plainbig:v1")
    with PlainMount(registry, "oms/plainbig:v1", tmp_path / "mnt") as m:
        root = m.mnt / "oms" / "plainbig"
        for rel, data in files.items():
            assert (root / rel).read_bytes() == data, rel
        with open(root / "model.safetensors", "rb") as f:
            with mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
                assert mm[:] == files["model.safetensors"]
        log = m.log()
        assert "signed by SHA-256 only" in log and "tree-built" in log
        c = m.status()["counters"]
        assert c["trees_built"] >= 2, c


def test_plain_model_with_a_corrupted_blob_gives_eio_never_bytes(registry, auth, tmp_path):
    files = {"weights.bin": rnd(2 * MiB + 5), "small.txt": b"tiny\n"}
    folder = tmp_path / "plainbad"
    folder.mkdir()
    sign_plain(folder, files)
    push_plain(registry, folder, "oms/plainbad:v1")
    for rel in files:
        hexd = hashlib.sha256(files[rel]).hexdigest()
        blob = (registry.root / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" /
                hexd[:2] / hexd / "data")
        raw = bytearray(blob.read_bytes())
        raw[len(raw) - 1] ^= 0x01  # the last byte: a reader of the head would never see it
        blob.write_bytes(bytes(raw))
    with PlainMount(registry, "oms/plainbad:v1", tmp_path / "mnt") as m:
        root = m.mnt / "oms" / "plainbad"
        for rel in files:
            with pytest.raises(OSError) as ei:
                with open(root / rel, "rb") as f:
                    f.read(4096)
            assert ei.value.errno == errno.EIO, rel
        assert "does not match the signed SHA-256" in m.log()


def test_plain_model_in_a_local_store_is_still_refused(tmp_path):
    """Only a registry store derives trees: a local store has no signed size per file."""
    folder = tmp_path / "store" / "org" / "plainlocal"
    folder.mkdir(parents=True)
    sign_plain(folder, {"w.bin": rnd(10000)})
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with Mount(tmp_path / "store", mnt, trust=PUB) as mt:
        assert not (mnt / "org" / "plainlocal").exists()
        assert "plain OMS signature" in mt.log()
