"""Provenance in the mount: user.modelfs.bom, user.modelfs.attestations,
the control folder's BOM files, and `mount --policy` (run as root).

Each test mounts with `-f` through test_mount.Mount, which always unmounts,
even on failure. Oracles: `modelfs bom` run on the store (the same BOM with
the same fixed serial number and timestamp), hashlib for the statement
digest, openssl for key ids, and the policy rules of docs/policy.md.
"""
import base64
import errno
import hashlib
import json
import os
import pathlib
import re
import subprocess

import pytest

from conftest import modelfs_bin, run_modelfs
from test_mount import Mount, rnd, write

SCAN = "https://modelfs.dev/scan/v1"
EVAL = "https://example.org/eval/v1"
UUID_RE = re.compile(
    r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def pkeys(tmp_path_factory):
    """Publisher, security team, an untrusted key and a soon-revoked one."""
    d = tmp_path_factory.mktemp("pkeys")
    for k in ("publisher", "security", "rogue", "oldci"):
        run_modelfs("keygen", d / k, check=0)
    return d


def key_id(pub):
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(pub), "-outform", "DER"],
                         capture_output=True, check=True).stdout
    return hashlib.sha256(der).hexdigest()


def statement_sha256(model):
    bundle = json.loads((pathlib.Path(model) / "model.sig").read_text())
    return hashlib.sha256(base64.b64decode(bundle["dsseEnvelope"]["payload"])).hexdigest()


def make_model(model, keys, key="publisher", *extra):
    write(model / "model.safetensors", rnd(100000))
    write(model / "config.json",
          b'{"model_type": "llama", "architectures": ["LlamaForCausalLM"]}\n')
    run_modelfs("seal", "--key", keys / f"{key}.key", *extra, model, check=0)


def attest(keys, model, key="security", ptype=SCAN):
    pred = keys / "pred.json"
    pred.write_text('{"result": "pass"}')
    run_modelfs("attest", "--key", keys / f"{key}.key", "--predicate-type", ptype,
                "--predicate", pred, model, check=0)


def trust(keys, *names):
    return [keys / f"{n}.pub" for n in (names or ("publisher", "security"))]


def expected_serial(model):
    b = bytearray(bytes.fromhex(statement_sha256(model))[:16])
    b[6] = (b[6] & 0x0F) | 0x50
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"urn:uuid:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# --------------------------------------------------------------------------
# BOM
# --------------------------------------------------------------------------

def test_bom_xattr_and_control_file(tmp_path, pkeys):
    store = tmp_path / "store"
    model = store / "acme" / "tiny-llama"
    make_model(model, pkeys, "publisher", "--name", "acme/tiny-llama", "--revision", "v1.2",
               "--license", "apache-2.0", "--dataset", "wikitext-103",
               "--property", "task=text-generation")
    with Mount(store, tmp_path / "mnt", trust(pkeys)) as m:
        d = m.mnt / "acme" / "tiny-llama"
        assert "user.modelfs.bom" in os.listxattr(d)
        raw = os.getxattr(d, "user.modelfs.bom")
        bom = json.loads(raw)
        assert bom["bomFormat"] == "CycloneDX"
        comp = bom["metadata"]["component"]
        assert comp["type"] == "machine-learning-model"
        assert comp["name"] == "acme/tiny-llama" and comp["version"] == "v1.2"
        assert comp["modelCard"]["modelParameters"]["architectureFamily"] == "llama"
        files = {c["name"] for c in bom["components"] if c["type"] == "file"}
        assert files == {"model.safetensors", "config.json"}
        props = {p["name"]: p["value"] for p in comp["properties"]}
        assert props["modelfs:statement.sha256"] == statement_sha256(model)
        # Deterministic: serial from the statement digest, timestamp = signed_at.
        signed_at = os.getxattr(d, "user.modelfs.signed_at").decode()
        assert bom["serialNumber"] == expected_serial(model)
        assert UUID_RE.match(bom["serialNumber"])
        assert bom["metadata"]["timestamp"] == signed_at
        # The same bytes as `modelfs bom` with the same fixed fields.
        cli = run_modelfs("bom", "--trust", pkeys / "publisher.pub", "--serial-number",
                          bom["serialNumber"], "--timestamp", signed_at, model, check=0)
        assert json.loads(cli.stdout) == bom
        # The control folder holds it as a file, byte for byte.
        f = m.mnt / ".modelfs" / "bom" / "acme" / "tiny-llama.cdx.json"
        assert sorted(os.listdir(m.mnt / ".modelfs")) == ["bom", "metrics.prom", "status.json"]
        assert os.listdir(m.mnt / ".modelfs" / "bom" / "acme") == ["tiny-llama.cdx.json"]
        assert f.stat().st_size == len(raw)
        assert f.read_bytes() == raw
        out = subprocess.run(["getfattr", "--only-values", "-n", "user.modelfs.bom", str(d)],
                             capture_output=True, check=True).stdout
        assert out == raw
        # A file node has no BOM.
        with pytest.raises(OSError) as ei:
            os.getxattr(d / "config.json", "user.modelfs.bom")
        assert ei.value.errno == errno.ENODATA


def test_big_bom_only_in_control_folder(tmp_path, pkeys):
    """A BOM of 64 KiB or more is not an xattr, but is always a control file."""
    store = tmp_path / "store"
    model = store / "big"
    for i in range(400):
        write(model / "shards" / f"part-{i:05d}-of-00400-with-a-long-name.bin", rnd(10))
    run_modelfs("seal", "--key", pkeys / "publisher.key", model, check=0)
    with Mount(store, tmp_path / "mnt", trust(pkeys)) as m:
        d = m.mnt / "big"
        assert "user.modelfs.bom" not in os.listxattr(d)
        with pytest.raises(OSError) as ei:
            os.getxattr(d, "user.modelfs.bom")
        assert ei.value.errno == errno.ENODATA
        text = (m.mnt / ".modelfs" / "bom" / "big.cdx.json").read_bytes()
        assert len(text) >= 64 << 10
        assert len(json.loads(text)["components"]) == 400


def test_big_statement_keeps_its_digest(tmp_path, pkeys):
    """A statement of 64 KiB or more is not kept by the daemon (issue #12):
    no user.modelfs.statement, but user.modelfs.statement_sha256 is still the
    SHA-256 of model.sig's DSSE payload, and what is bound to that digest
    (the BOM's property, attestations) still works."""
    store = tmp_path / "store"
    model = store / "big"
    for i in range(200):
        write(model / "shards" / f"part-{i:05d}-of-00200.bin", rnd(10))
    run_modelfs("seal", "--key", pkeys / "publisher.key", model, check=0)
    attest(pkeys, model)
    bundle = json.loads((model / "model.sig").read_text())
    payload = base64.b64decode(bundle["dsseEnvelope"]["payload"])
    assert len(payload) >= 64 << 10  # the case under test
    with Mount(store, tmp_path / "mnt", trust(pkeys)) as m:
        d = m.mnt / "big"
        names = os.listxattr(d)
        assert "user.modelfs.statement_sha256" in names
        assert "user.modelfs.statement" not in names
        with pytest.raises(OSError) as ei:
            os.getxattr(d, "user.modelfs.statement")
        assert ei.value.errno == errno.ENODATA
        digest = os.getxattr(d, "user.modelfs.statement_sha256").decode()
        assert digest == hashlib.sha256(payload).hexdigest() == statement_sha256(model)
        bom = json.loads((m.mnt / ".modelfs" / "bom" / "big.cdx.json").read_bytes())
        props = {p["name"]: p["value"] for p in bom["metadata"]["component"]["properties"]}
        assert props["modelfs:statement.sha256"] == digest
        atts = json.loads(os.getxattr(d, "user.modelfs.attestations"))
        assert len(atts) == 1 and atts[0]["verified"], atts
        assert atts[0]["subject_sha256"] == digest


# --------------------------------------------------------------------------
# attestations
# --------------------------------------------------------------------------

def test_attestations_xattr(tmp_path, pkeys):
    store = tmp_path / "store"
    a, b = store / "org" / "a", store / "org" / "b"
    make_model(a, pkeys)
    make_model(b, pkeys)
    attest(pkeys, a, "security", SCAN)
    attest(pkeys, a, "rogue", EVAL)
    # b's attestation folder is a symlink to a's: never followed.
    (b / ".modelfs").mkdir(exist_ok=True)
    os.symlink(a / ".modelfs" / "attestations", b / ".modelfs" / "attestations")
    # c: a FIFO and a symlink as attestation files: listed unverified, no hang.
    c = store / "org" / "c"
    make_model(c, pkeys)
    catt = c / ".modelfs" / "attestations"
    catt.mkdir(parents=True)
    os.mkfifo(catt / "fifo.json")
    good_file = next((a / ".modelfs" / "attestations").glob("*.json"))
    os.symlink(good_file, catt / "link.json")
    with Mount(store, tmp_path / "mnt", trust(pkeys)) as m:
        d = m.mnt / "org" / "a"
        assert "user.modelfs.attestations" in os.listxattr(d)
        atts = json.loads(os.getxattr(d, "user.modelfs.attestations"))
        assert len(atts) == 2
        by_type = {x["predicate_type"]: x for x in atts}
        good, bad = by_type[SCAN], by_type[EVAL]
        assert good["verified"] is True and good["reason"] is None
        assert good["key_id"] == key_id(pkeys / "security.pub")
        assert good["subject_sha256"] == statement_sha256(a)
        assert bad["verified"] is False and "untrusted key" in bad["reason"]
        assert json.loads(os.getxattr(m.mnt / "org" / "b", "user.modelfs.attestations")) == []
        catts = json.loads(os.getxattr(m.mnt / "org" / "c", "user.modelfs.attestations"))
        assert [x["file"] for x in catts] == ["fifo.json", "link.json"]
        assert all(x["verified"] is False and "cannot read" in x["reason"] for x in catts)
        st = {x["path"]: x for x in m.status()["models"]}
        assert st["org/a"]["attestations"] == 2
        assert st["org/a"]["attestations_verified"] == 1
        assert "attestations-skipped" in m.log()


# --------------------------------------------------------------------------
# policy
# --------------------------------------------------------------------------

def write_policy(dirpath, doc, name="policy.json"):
    base = {"version": 1,
            "keys": {"publisher": {"file": "publisher.pub"},
                     "security": {"file": "security.pub"},
                     "oldci": {"file": "oldci.pub"}}}
    base.update(doc)
    p = pathlib.Path(dirpath) / name
    p.write_text(json.dumps(base))
    return p


@pytest.fixture(scope="module")
def policy_store(tmp_path_factory, pkeys):
    store = tmp_path_factory.mktemp("polstore") / "store"
    # org/good: publisher + the security team's scan attestation.
    make_model(store / "org" / "good", pkeys, "publisher", "--name", "org/good")
    attest(pkeys, store / "org" / "good", "security", SCAN)
    # org/noscan: signed, but no scan attestation.
    make_model(store / "org" / "noscan", pkeys, "publisher", "--name", "org/noscan")
    # org/fake: a scan attestation signed by an untrusted key.
    make_model(store / "org" / "fake", pkeys, "publisher", "--name", "org/fake")
    attest(pkeys, store / "org" / "fake", "rogue", SCAN)
    # lab/ci: signed by a revoked key.
    make_model(store / "lab" / "ci", pkeys, "oldci", "--name", "lab/ci")
    # lab/old: a validly signed, older version (rollback).
    make_model(store / "lab" / "old", pkeys, "publisher", "--name", "lab/old")
    # lab/fine: satisfies everything.
    make_model(store / "lab" / "fine", pkeys, "publisher", "--name", "lab/fine")
    return store


def test_policy_refuses_and_admits(tmp_path, pkeys, policy_store):
    pol = write_policy(pkeys, {
        "default": "allow",
        "rules": [{"path": "org/*", "signers": ["publisher"],
                   "attestations": [{"type": SCAN, "signers": ["security"]}]}],
        "revoked_keys": ["oldci"],
        "min_signed_at": {"lab/old": "2099-01-01T00:00:00Z"},
    }, "policy-main.json")
    with Mount(policy_store, tmp_path / "mnt", trust(pkeys, "publisher", "security", "oldci"),
               "--policy", pol) as m:
        assert sorted(os.listdir(m.mnt / "org")) == ["good"]
        assert sorted(os.listdir(m.mnt / "lab")) == ["fine"]
        for p in ("org/noscan", "org/fake", "lab/ci", "lab/old"):
            assert not (m.mnt / p).exists()
        assert (m.mnt / "org" / "good" / "config.json").read_bytes() == \
            (policy_store / "org" / "good" / "config.json").read_bytes()
        st = m.status()
        assert st["policy"] == str(pol)
        refused = {r["path"]: r["reason"] for r in st["refused"]}
        assert set(refused) == {"org/noscan", "org/fake", "lab/ci", "lab/old"}
        for p in ("org/noscan", "org/fake"):
            assert refused[p].startswith("policy refused: ")
            assert 'rules[0] (path "org/*").attestations[0]' in refused[p]
        assert "revoked_keys" in refused["lab/ci"]
        assert "min_signed_at.lab/old" in refused["lab/old"]
        assert "rollback refused" in refused["lab/old"]
        assert {x["path"] for x in st["models"]} == {"org/good", "lab/fine"}
        # Refused models have no BOM file either.
        assert sorted(os.listdir(m.mnt / ".modelfs" / "bom" / "lab")) == ["fine.cdx.json"]
        assert "policy refused" in m.log()


def test_policy_as_o_option_and_default_deny(tmp_path, pkeys, policy_store):
    pol = write_policy(pkeys, {"default": "deny",
                               "rules": [{"path": "lab/f*"}]}, "policy-deny.json")
    with Mount(policy_store, tmp_path / "mnt", trust(pkeys), "-o", f"policy={pol}") as m:
        assert os.listdir(m.mnt) == ["lab"]
        assert os.listdir(m.mnt / "lab") == ["fine"]
        refused = {r["path"]: r["reason"] for r in m.status()["refused"]}
        assert 'no rule matches model path "org/good"' in refused["org/good"]


def test_bad_policy_fails_the_mount(tmp_path, pkeys, policy_store):
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1, "rules": [{"path": "x", "signer": ["a"]}]}')
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p = subprocess.run([modelfs_bin(), "mount", "-f", "--trust", str(pkeys / "publisher.pub"),
                        "--policy", str(bad), str(policy_store), str(mnt)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2
    assert str(bad) in p.stderr and "\n" == p.stderr[-1] and p.stderr.count("\n") == 1
    assert not os.path.ismount(mnt)


@pytest.fixture(scope="module")
def pickle_paths_store(tmp_path_factory, pkeys):
    import pickle
    store = tmp_path_factory.mktemp("ppstore") / "store"
    for top in ("strict", "lax", "other"):
        model = store / top / "pk"
        write(model / "config.json", b'{"x": 1}\n')
        write(model / "data.bin", pickle.dumps({"a": [1, 2, 3]}, protocol=4))
        run_modelfs("seal", "--key", pkeys / "publisher.key", model, check=0)
    return store


def test_policy_pickle_per_path(tmp_path, pkeys, pickle_paths_store):
    pol = write_policy(pkeys, {"default": "allow",
                               "rules": [{"path": "strict/*", "pickle": "deny"},
                                         {"path": "lax/*", "pickle": "show"}]},
                       "policy-pickle.json")
    with Mount(pickle_paths_store, tmp_path / "mnt", trust(pkeys), "--pickle=hide",
               "--policy", pol) as m:
        # strict/: deny refuses the whole model holding a pickle.
        assert os.listdir(m.mnt / "strict") == []
        assert not (m.mnt / "strict" / "pk").exists()
        # lax/: shown, labelled as a pickle.
        assert sorted(os.listdir(m.mnt / "lax" / "pk")) == ["config.json", "data.bin"]
        assert os.getxattr(m.mnt / "lax" / "pk" / "data.bin", "user.modelfs.format") == \
            b"pickle"
        # other/: the global --pickle=hide.
        assert os.listdir(m.mnt / "other" / "pk") == ["config.json"]
        st = m.status()
        assert st["pickle_policy"] == "hide"
        models = {x["path"]: x for x in st["models"]}
        assert models["lax/pk"]["pickle_policy"] == "show"
        assert "pickle_policy" not in models["other/pk"]
        refused = {r["path"]: r["reason"] for r in st["refused"]}
        assert "contains pickle file data.bin" in refused["strict/pk"]
