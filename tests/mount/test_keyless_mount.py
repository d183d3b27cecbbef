"""Issue #14: `modelfs mount` trusting a keyless (Sigstore) identity (run as root).

    modelfs mount STORE MNT --trust-identity ID --trust-issuer URL --trust-root FILE

The store's models are made by tests/sigstore/forge.py (a model sealed with
a throwaway key, re-signed keylessly by a forged Fulcio/CT log/Rekor/TSA;
test_forge_oracle.py checks those bundles independently). The mount must
serve the good keyless models, hide a model signed by another identity and
every model that breaks one check (each listed as refused in status.json
with its reason), name the signer's identity and issuer in the
user.modelfs.signer attribute, and still check every block it serves.
Mounts run with `-f` and are always unmounted, even on failure
(FuseProcess of test_mount.py).
"""
import errno
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from conftest import ROOT, modelfs_bin
from test_mount import FuseProcess, drop_caches, flip, is_mounted, read_err

sys.path.insert(0, str(ROOT / "tests" / "sigstore"))
import keyless_helpers as kh  # noqa: E402

OTHER_IDENTITY = "https://github.com/someone-else/models/.github/workflows/sign.yml@refs/heads/main"


class KeylessMount(FuseProcess):
    """`modelfs mount -f STORE MNT --trust-identity ... --trust-root ...`; always unmounted."""

    def __init__(self, store, mnt, root, *extra, identity=kh.IDENTITY, issuer=kh.ISSUER):
        self.store, self.mnt = pathlib.Path(store), pathlib.Path(mnt)
        self.mnt.mkdir(parents=True, exist_ok=True)
        self.logpath = self.mnt.parent / (self.mnt.name + ".log")
        self.args = [modelfs_bin(), "mount", "-f", "--trust-identity", identity,
                     "--trust-issuer", issuer, "--trust-root", str(root),
                     "--cache-dir", str(self.mnt.parent / (self.mnt.name + ".cache")),
                     *map(str, extra), str(self.store), str(self.mnt)]
        self.proc = None

    def log(self) -> str:
        # FuseProcess.log() flushes a log already closed when the mount did not come up
        if not self.logf.closed:
            self.logf.flush()
        return self.logpath.read_text()

    def status(self):
        return json.loads((self.mnt / ".modelfs" / "status.json").read_text())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    kh.make_pki(d)
    return d


@pytest.fixture(scope="module")
def store(tmp_path_factory, pki):
    """org/good, org/good-tsa: keyless by IDENTITY; org/other: by another identity;
    org/keyed: sealed with a key only; faults/<NAME>: each fault."""
    top = tmp_path_factory.mktemp("keyless-store")
    s, keys = top / "store", top / "keys"
    kh.keyless_model(s / "org" / "good", pki, keys)
    kh.keyless_model(s / "org" / "good-tsa", pki, keys, tsa=True)
    kh.keyless_model(s / "org" / "other", pki, keys, identity=OTHER_IDENTITY)
    kh.write_model(s / "org" / "keyed")
    kh.seal_with_throwaway_key(s / "org" / "keyed", keys)
    for f in kh.FAULTS:
        kh.keyless_model(s / "faults" / f, pki, keys, fault=f)
    return s


def model_files(model: pathlib.Path) -> dict:
    return {p.relative_to(model).as_posix(): p.read_bytes() for p in model.rglob("*")
            if p.is_file() and p.name != "model.sig" and ".modelfs" not in p.parts}


def getfattr(path: pathlib.Path, name: str) -> str:
    p = subprocess.run(["getfattr", "--only-values", "-n", name, str(path)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, f"getfattr {name} {path}: {p.stderr}"
    return p.stdout


def test_serves_good_hides_others(tmp_path, store, pki):
    with KeylessMount(store, tmp_path / "mnt", pki / "trusted_root.json") as m:
        assert sorted(os.listdir(m.mnt / "org")) == ["good", "good-tsa"], m.log()
        for name in ("good", "good-tsa"):
            src = model_files(store / "org" / name)
            assert model_files(m.mnt / "org" / name) == src
        faults = m.mnt / "faults"
        assert not faults.exists() or os.listdir(faults) == [], os.listdir(faults)
        refused = {r["path"]: r["reason"] for r in m.status()["refused"]}
        assert "org/other" in refused and re.search("identity", refused["org/other"], re.I), \
            refused.get("org/other")
        assert "org/keyed" in refused, "a key-sealed model served without a trusted key"
        for f in kh.FAULTS:
            reason = refused.get(f"faults/{f}")
            assert reason is not None, f"faults/{f} is not listed as refused"
            assert re.search(kh.CHECKS[f], reason, re.I), f"{f}: reason {reason!r}"


def test_signer_xattr_names_identity_and_issuer(tmp_path, store, pki):
    with KeylessMount(store, tmp_path / "mnt", pki / "trusted_root.json") as m:
        for name in ("good", "good-tsa"):
            signer = getfattr(m.mnt / "org" / name, "user.modelfs.signer")
            issuer = getfattr(m.mnt / "org" / name, "user.modelfs.signer_issuer")
            assert signer.rstrip("\n") == kh.IDENTITY, signer
            assert issuer.rstrip("\n") == kh.ISSUER, issuer
        listing = subprocess.run(["getfattr", "-d", "-m", "-", str(m.mnt / "org" / "good")],
                                 capture_output=True, text=True, timeout=30).stdout
        assert "user.modelfs.statement_sha256" in listing


def test_other_identity_mount_serves_only_its_model(tmp_path, store, pki):
    with KeylessMount(store, tmp_path / "mnt", pki / "trusted_root.json",
                      identity=OTHER_IDENTITY) as m:
        assert os.listdir(m.mnt / "org") == ["other"], m.log()


def test_other_trust_root_serves_nothing(tmp_path, store, pki):
    other = kh.make_pki(tmp_path / "other-pki")
    with KeylessMount(store, tmp_path / "mnt", other) as m:
        org = m.mnt / "org"
        assert not org.exists() or os.listdir(org) == [], os.listdir(org)
        assert {"org/good", "org/good-tsa"} <= {r["path"] for r in m.status()["refused"]}


def test_tampered_block_gives_eio(tmp_path, pki):
    """A keyless model's reads are checked block by block, as a keyed one's."""
    s = tmp_path / "store"
    model = kh.keyless_model(s / "m", pki, tmp_path / "keys")
    w = model / "sub" / "weights.bin"
    good = w.read_bytes()
    with KeylessMount(s, tmp_path / "mnt", pki / "trusted_root.json") as m:
        path = m.mnt / "m" / "sub" / "weights.bin"
        assert path.read_bytes() == good
        flip(w, 4096 + 10)
        drop_caches()
        assert read_err(path, 4096) == errno.EIO
        fd = os.open(path, os.O_RDONLY)
        try:
            assert os.pread(fd, 4096, 0) == good[:4096]
        finally:
            os.close(fd)


def test_missing_trust_root_fails_naming_it(tmp_path, store):
    missing = tmp_path / "no-such-root.json"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        p = subprocess.run([modelfs_bin(), "mount", "-f", "--trust-identity", kh.IDENTITY,
                            "--trust-issuer", kh.ISSUER, "--trust-root", str(missing),
                            "--cache-dir", str(tmp_path / "cache"), str(store), str(mnt)],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 2, f"exit {p.returncode}: {p.stderr}"
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and str(missing) in lines[0], p.stderr
    finally:
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True, timeout=30)
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


def test_policy_names_keyless_signers(tmp_path, store, pki):
    """A policy key {"identity", "issuer"} names a keyless signer in rules:
    org/good may be signed by the CI identity; a rule that wants another
    identity for org/good-tsa refuses it, naming the signer."""
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({
        "version": 1,
        "keys": {"ci": {"identity": kh.IDENTITY, "issuer": kh.ISSUER},
                 "other": {"identity": OTHER_IDENTITY, "issuer": kh.ISSUER}},
        "rules": [{"path": "org/good", "signers": ["ci"]},
                  {"path": "org/good-tsa", "signers": ["other"]}],
    }))
    with KeylessMount(store, tmp_path / "mnt", pki / "trusted_root.json",
                      "--policy", policy) as m:
        assert sorted(os.listdir(m.mnt / "org")) == ["good"], m.log()
        refused = {r["path"]: r["reason"] for r in m.status()["refused"]}
        why = refused["org/good-tsa"]
        assert f"signer identity {kh.IDENTITY} (issuer {kh.ISSUER}) is not allowed" in why, why
