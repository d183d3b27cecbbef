"""modelfs attest, scan --attest, and attestations in verify / inspect.

Oracles: the DSSE signature is checked with the `openssl` command over a
PAE built here; digests with hashlib. Every way an attestation can fail to
count is tested: untrusted key, bad signature, subject of another model.
"""
import base64
import hashlib
import json
import os
import shutil
import subprocess

import pytest

from conftest import run_modelfs, shared_dir

SCAN_TYPE = "https://modelfs.dev/scan/v1"
EVAL_TYPE = "https://example.org/eval/v1"


def pae(ptype: bytes, body: bytes) -> bytes:
    return b"DSSEv1 %d %s %d %s" % (len(ptype), ptype, len(body), body)


def statement_sha256(model):
    bundle = json.loads((model / "model.sig").read_text())
    return hashlib.sha256(base64.b64decode(bundle["dsseEnvelope"]["payload"])).hexdigest()


def key_id(pub):
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(pub), "-outform", "DER"],
                         capture_output=True, check=True).stdout
    return hashlib.sha256(der).hexdigest()


def make(tmp, name, sub="m"):
    m = tmp / sub
    m.mkdir()
    (m / "w.bin").write_bytes(os.urandom(9000))
    (m / "config.json").write_text("{}")
    run_modelfs("seal", "--key", tmp / "pub.key", "--name", name, m, check=0)
    return m


@pytest.fixture
def env(tmp_path):
    for k in ("pub", "sec", "rogue"):
        run_modelfs("keygen", tmp_path / k, check=0)
    (tmp_path / "pred.json").write_text(json.dumps({"result": "pass", "suite": "backdoor"}))
    return tmp_path, make(tmp_path, "org/model")


def attest(tmp, m, key="sec", ptype=EVAL_TYPE, check=0):
    return run_modelfs("attest", "--key", tmp / f"{key}.key", "--predicate-type", ptype,
                       "--predicate", tmp / "pred.json", m, check=check)


def att_files(m):
    return sorted((m / ".modelfs" / "attestations").glob("*.json"))


def test_attest_writes_signed_statement(env):
    tmp, m = env
    p = attest(tmp, m)
    assert key_id(tmp / "sec.pub") in p.stdout
    [f] = att_files(m)
    raw = f.read_bytes()
    assert f.name == hashlib.sha256(raw).hexdigest() + ".json"  # content-addressed
    bundle = json.loads(raw)
    env_ = bundle["dsseEnvelope"]
    payload = base64.b64decode(env_["payload"])
    stmt = json.loads(payload)
    assert stmt["_type"] == "https://in-toto.io/Statement/v1"
    assert stmt["subject"] == [{"name": "org/model",
                                "digest": {"sha256": statement_sha256(m)}}]
    assert stmt["predicateType"] == EVAL_TYPE
    assert stmt["predicate"] == {"result": "pass", "suite": "backdoor"}
    # The signature verifies with openssl over PAE, with the attester's key.
    (tmp / "pae").write_bytes(pae(env_["payloadType"].encode(), payload))
    (tmp / "sig").write_bytes(base64.b64decode(env_["signatures"][0]["sig"]))
    subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(tmp / "sec.pub"),
                    "-signature", str(tmp / "sig"), str(tmp / "pae")], check=True,
                   capture_output=True)
    # Idempotent: the same attestation again is the same file (ECDSA sigs differ, so 2).
    attest(tmp, m)
    assert len(att_files(m)) == 2


def test_verify_lists_attestations(env):
    tmp, m = env
    attest(tmp, m)
    p = run_modelfs("verify", "--trust", tmp / "pub.pub", "--trust", tmp / "sec.pub", m, check=0)
    line = [x for x in p.stdout.splitlines() if x.startswith("attestation ")]
    assert len(line) == 1
    assert f"type {EVAL_TYPE}, key id {key_id(tmp / 'sec.pub')}: verified" in line[0]


def test_untrusted_attester(env):
    tmp, m = env
    attest(tmp, m, key="rogue")
    p = run_modelfs("verify", "--trust", tmp / "pub.pub", "--trust", tmp / "sec.pub", m, check=0)
    assert "NOT verified: signed by an untrusted key" in p.stdout


def test_bad_signature(env):
    tmp, m = env
    attest(tmp, m)
    [f] = att_files(m)
    b = json.loads(f.read_text())
    stmt = json.loads(base64.b64decode(b["dsseEnvelope"]["payload"]))
    stmt["predicate"]["result"] = "fail-but-forged-pass"
    b["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(stmt).encode()).decode()
    f.write_text(json.dumps(b))
    p = run_modelfs("verify", "--trust", tmp / "pub.pub", "--trust", tmp / "sec.pub", m, check=0)
    assert "NOT verified: bad signature" in p.stdout


def test_subject_of_another_model(env):
    """An attestation of model B copied next to model A does not count for A."""
    tmp, a = env
    b = make(tmp, "org/other", sub="b")
    attest(tmp, b)
    dst = a / ".modelfs" / "attestations"
    dst.mkdir(parents=True)
    [f] = att_files(b)
    shutil.copy(f, dst / f.name)
    p = run_modelfs("verify", "--trust", tmp / "pub.pub", "--trust", tmp / "sec.pub", a, check=0)
    assert f"NOT verified: subject mismatch: attests statement sha256:{statement_sha256(b)}" \
        in p.stdout
    # Re-sealing a model changes its statement: old attestations stop counting.
    attest(tmp, a)
    (a / "w.bin").write_bytes(b"new weights")
    run_modelfs("seal", "--key", tmp / "pub.key", "--name", "org/model", a, check=0)
    p = run_modelfs("verify", "--trust", tmp / "pub.pub", "--trust", tmp / "sec.pub", a, check=0)
    assert p.stdout.count("subject mismatch") == 2 and ": verified" not in p.stdout


def test_garbage_attestations_do_not_break_verify(env):
    tmp, m = env
    attest(tmp, m)
    d = m / ".modelfs" / "attestations"
    for name, data in [("junk.json", b"\x00\xff"), ("dup.json", b'{"a":1,"a":2}'),
                       ("empty.json", b""), ("arr.json", b"[]"),
                       ("wrongtype.json", json.dumps({"mediaType": 5}).encode())]:
        (d / name).write_bytes(data)
    os.symlink("/etc/passwd", d / "link.json")
    p = run_modelfs("verify", "--trust", tmp / "pub.pub", "--trust", tmp / "sec.pub", m, check=0)
    lines = [x for x in p.stdout.splitlines() if x.startswith("attestation ")]
    assert len(lines) == 7
    assert sum(": verified" in x for x in lines) == 1
    assert all("NOT verified" in x for x in lines if "junk" in x or "link" in x)


def test_inspect_lists_attestations(env):
    tmp, m = env
    attest(tmp, m)
    p = run_modelfs("inspect", m, check=0)
    assert "attestations: 1" in p.stdout and EVAL_TYPE in p.stdout
    j = json.loads(run_modelfs("inspect", "--json", m, check=0).stdout)
    [a] = j["attestations"]
    assert a["predicate_type"] == EVAL_TYPE and a["verified"] is False
    assert a["subject_sha256"] == statement_sha256(m)
    assert a["predicate"]["suite"] == "backdoor"


def test_scan_attest(env):
    tmp, m = env
    src = shared_dir() / "corpus" / "picklescan" / "data"
    shutil.copy(src / "benign0_v3.pkl", m / "benign.pkl")
    shutil.copy(src / "malicious0.pkl", m / "evil.pkl")
    run_modelfs("seal", "--key", tmp / "pub.key", "--name", "org/model", m, check=0)
    p = run_modelfs("scan", "--attest", "--key", tmp / "sec.key", m, check=1)  # unsafe found
    assert "attested:" in p.stdout
    [f] = att_files(m)
    stmt = json.loads(base64.b64decode(json.loads(f.read_text())["dsseEnvelope"]["payload"]))
    assert stmt["predicateType"] == SCAN_TYPE
    verdicts = {x["name"]: x["verdict"] for x in stmt["predicate"]["files"]}
    assert verdicts["evil.pkl"] == "unsafe" and verdicts["benign.pkl"] == "safe"
    assert "model.sig" not in verdicts and not any(n.startswith(".modelfs") for n in verdicts)
    p = run_modelfs("verify", "--trust", tmp / "pub.pub", "--trust", tmp / "sec.pub", m, check=0)
    assert f"type {SCAN_TYPE}" in p.stdout and ": verified" in p.stdout


def test_attest_usage(env):
    tmp, m = env
    run_modelfs("attest", "--key", tmp / "sec.key", m, check=2)
    (tmp / "pred.json").write_text("[1]")
    p = attest(tmp, m, check=2)
    assert "JSON object" in p.stderr
    (tmp / "pred.json").write_text("{")
    attest(tmp, m, check=2)
    run_modelfs("scan", "--attest", m, check=2)
    assert not (m / ".modelfs" / "attestations").exists()
