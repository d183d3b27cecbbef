"""modelfs verify --policy: every rule of docs/policy.md, each both ways.

A refusal exits 1 and names the rule; a policy that cannot be parsed exits
2 and names the JSON member. Key ids are computed here with openssl and
hashlib, statement and file digests with hashlib.
"""
import base64
import hashlib
import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import run_modelfs, shared_dir

SCAN = "https://modelfs.dev/scan/v1"
EVAL = "https://example.org/eval/v1"


def key_id(pub):
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(pub), "-outform", "DER"],
                         capture_output=True, check=True).stdout
    return hashlib.sha256(der).hexdigest()


def statement(model):
    bundle = json.loads((model / "model.sig").read_text())
    raw = base64.b64decode(bundle["dsseEnvelope"]["payload"])
    return hashlib.sha256(raw).hexdigest(), json.loads(raw)


@pytest.fixture
def env(tmp_path):
    for k in ("pub", "pub2", "sec", "rogue"):
        run_modelfs("keygen", tmp_path / k, check=0)
    m = tmp_path / "m"
    m.mkdir()
    (m / "w.bin").write_bytes(os.urandom(5000))
    run_modelfs("seal", "--key", tmp_path / "pub.key", "--name", "org/model", m, check=0)
    (tmp_path / "pred.json").write_text('{"result": "pass"}')
    return tmp_path, m


KEYS = {"publisher": {"file": "pub.pub"}, "publisher2": {"file": "pub2.pub"},
        "security": {"file": "sec.pub"}, "rogue": {"file": "rogue.pub"}}


def policy(tmp, **kw):
    """Writes a new policy file (a fresh name each time) next to the keys."""
    doc = {"version": 1, "keys": KEYS, "rules": [{"path": "org/*"}]}
    doc.update(kw)
    n = len(list(tmp.glob("policy-*.json")))
    path = tmp / f"policy-{n}.json"
    path.write_text(json.dumps(doc))
    return path


def verify(tmp, m, pol, *extra, check=0):
    trust = ["--trust", tmp / "pub.pub", "--trust", tmp / "pub2.pub", "--trust", tmp / "sec.pub"]
    return run_modelfs("verify", *trust, "--policy", pol, *extra, m, check=check)


def attest(tmp, m, key="sec", ptype=SCAN):
    run_modelfs("attest", "--key", tmp / f"{key}.key", "--predicate-type", ptype,
                "--predicate", tmp / "pred.json", m, check=0)


def refused(p, rule):
    assert p.returncode == 1
    assert "policy refused:" in p.stderr and rule in p.stderr, p.stderr


def test_allowed_and_default(env):
    tmp, m = env
    p = verify(tmp, m, policy(tmp))
    assert 'policy: allowed by' in p.stdout and '"org/model"' in p.stdout
    # No rule for the path: default deny, unless the policy says allow.
    pol = policy(tmp, rules=[{"path": "other/*"}])
    refused(verify(tmp, m, pol, check=1), "default: no rule matches model path \"org/model\"")
    verify(tmp, m, policy(tmp, rules=[{"path": "other/*"}], default="allow"))
    # --model-path: the path in the store, when it differs from the signed name
    # (which must still fit it: test_name_binding.py).
    verify(tmp, m, policy(tmp, rules=[{"path": "store/team-a/*"}]), "--model-path",
           "store/team-a/org/model")


def test_signers_by_path(env):
    tmp, m = env
    verify(tmp, m, policy(tmp, rules=[{"path": "org/*", "signers": ["publisher"]}]))
    pol = policy(tmp, rules=[{"path": "org/*", "signers": ["publisher2"]}])
    refused(verify(tmp, m, pol, check=1), "rules[0] (path \"org/*\").signers")
    # Every matching rule applies.
    pol = policy(tmp, rules=[{"path": "*"}, {"path": "org/mod*", "signers": ["publisher2"]}])
    refused(verify(tmp, m, pol, check=1), "rules[1]")


def test_certificate_signer_by_subject(tmp_path):
    src = shared_dir() / "corpus" / "oms"
    m = tmp_path / "c"
    shutil.copytree(src / "v1.1.0-certificate", m)
    ca = src / "keys" / "certificate" / "ca-cert.pem"
    for subject, status in (("CN=intermediate-ca", 0), ("CN=someone-else", 1)):
        (tmp_path / "p.json").write_text(json.dumps({
            "version": 1, "keys": {"corp": {"subject": subject}},
            "rules": [{"path": "corp/*", "signers": ["corp"]}]}))
        p = run_modelfs("verify", "--trust-ca", ca, "--ignore-paths", "ignore-me", "--policy",
                        tmp_path / "p.json", "--model-path", "corp/v1.1.0-certificate", m,
                        check=status)
        if status:
            refused(p, ".signers: signer certificate CN=intermediate-ca")


def test_min_signers(env):
    tmp, m = env
    pol = policy(tmp, rules=[{"path": "org/*", "min_signers": 2}])
    refused(verify(tmp, m, pol, check=1), "min_signers: 1 distinct trusted signer(s), 2 required")
    attest(tmp, m, key="rogue")  # untrusted: does not count
    refused(verify(tmp, m, pol, check=1), "min_signers")
    attest(tmp, m, key="pub")  # the publisher again: not distinct
    refused(verify(tmp, m, pol, check=1), "min_signers")
    attest(tmp, m, key="sec", ptype="https://modelfs.dev/countersign/v1")
    verify(tmp, m, pol)
    # Only listed signers count when the rule lists them.
    pol = policy(tmp, rules=[{"path": "org/*", "min_signers": 2,
                              "signers": ["publisher", "publisher2"]}])
    refused(verify(tmp, m, pol, check=1), "min_signers")


def test_required_attestation(env):
    tmp, m = env
    rule = {"path": "org/*", "attestations": [{"type": SCAN, "signers": ["security"]}]}
    pol = policy(tmp, rules=[rule])
    refused(verify(tmp, m, pol, check=1),
            f"rules[0] (path \"org/*\").attestations[0]: no verified attestation of type {SCAN}")
    attest(tmp, m, key="sec", ptype=EVAL)  # wrong type
    refused(verify(tmp, m, pol, check=1), "attestations[0]")
    attest(tmp, m, key="pub", ptype=SCAN)  # right type, key not allowed for it
    refused(verify(tmp, m, pol, check=1), "attestations[0]")
    attest(tmp, m, key="rogue", ptype=SCAN)  # signed by an untrusted key
    p = refused(verify(tmp, m, pol, check=1), "attestations[0]")
    attest(tmp, m, key="sec", ptype=SCAN)
    p = verify(tmp, m, pol)
    assert "NOT verified: signed by an untrusted key" in p.stdout  # listed, not counted


def test_attestation_of_another_model(env):
    tmp, m = env
    other = tmp / "other"
    other.mkdir()
    (other / "w.bin").write_bytes(b"other")
    run_modelfs("seal", "--key", tmp / "pub.key", "--name", "org/model", other, check=0)
    attest(tmp, other, key="sec", ptype=SCAN)
    d = m / ".modelfs" / "attestations"
    d.mkdir(parents=True)
    for f in (other / ".modelfs" / "attestations").glob("*.json"):
        shutil.copy(f, d / f.name)
    pol = policy(tmp, rules=[{"path": "org/*",
                              "attestations": [{"type": SCAN, "signers": ["security"]}]}])
    p = refused(verify(tmp, m, pol, check=1), "attestations[0]")
    verify(tmp, other, pol)


def test_revoked_keys(env):
    tmp, m = env
    verify(tmp, m, policy(tmp, revoked_keys=["publisher2"]))
    refused(verify(tmp, m, policy(tmp, revoked_keys=["publisher"]), check=1),
            f"revoked_keys: the signer (key id {key_id(tmp / 'pub.pub')}) is revoked")
    refused(verify(tmp, m, policy(tmp, revoked_keys=[key_id(tmp / "pub.pub")]), check=1),
            "revoked_keys")
    # A revoked attester's attestations do not count.
    attest(tmp, m, key="sec")
    rule = {"path": "org/*", "attestations": [{"type": SCAN}]}
    verify(tmp, m, policy(tmp, rules=[rule]))
    refused(verify(tmp, m, policy(tmp, rules=[rule], revoked_keys=["security"]), check=1),
            "attestations[0]")


def test_denylist(env):
    tmp, m = env
    digest, _ = statement(m)
    file_digest = hashlib.sha256((m / "w.bin").read_bytes()).hexdigest()
    verify(tmp, m, policy(tmp, deny={"statement_sha256": ["0" * 64],
                                     "file_sha256": ["sha256:" + "1" * 64]}))
    refused(verify(tmp, m, policy(tmp, deny={"statement_sha256": [digest]}), check=1),
            f"deny.statement_sha256: statement sha256:{digest} is denied")
    refused(verify(tmp, m, policy(tmp, deny={"file_sha256": ["sha256:" + file_digest]}),
                   check=1), f"deny.file_sha256: file w.bin (sha256:{file_digest}) is denied")


def test_rollback(env):
    """A replayed, older, validly signed version is refused by min_signed_at."""
    tmp, m = env
    old = tmp / "old"
    shutil.copytree(m, old)
    time.sleep(1.1)
    (m / "w.bin").write_bytes(b"fixed weights")
    run_modelfs("seal", "--key", tmp / "pub.key", "--name", "org/model", m, check=0)
    new_at = statement(m)[1]["predicate"]["modelfs"]["provenance"]["signed_at"]
    old_at = statement(old)[1]["predicate"]["modelfs"]["provenance"]["signed_at"]
    assert old_at < new_at
    pol = policy(tmp, min_signed_at={"org/model": new_at})
    verify(tmp, m, pol)
    verify(tmp, old, policy(tmp))  # without the rule the old version verifies
    refused(verify(tmp, old, pol, check=1),
            f"min_signed_at.org/model: signed at {old_at}, older than {new_at} "
            "(rollback refused)")
    # Other model names are not affected.
    verify(tmp, old, policy(tmp, min_signed_at={"org/else": new_at}))


def test_pickle_policy_exposed(env):
    tmp, m = env
    pol = policy(tmp, rules=[{"path": "org/*", "pickle": "deny"}, {"path": "*", "pickle": "show"}])
    assert "pickle policy deny" in verify(tmp, m, pol).stdout
    pol = policy(tmp, rules=[{"path": "org/*"}, {"path": "*", "pickle": "hide"}])
    assert "pickle policy hide" in verify(tmp, m, pol).stdout


@pytest.mark.parametrize("doc,needle", [
    ({"version": 2}, "version"),
    ({"version": 1, "rulez": []}, 'unknown member "rulez"'),
    ({"version": 1, "rules": [{"path": "*", "signer": ["x"]}]}, 'unknown member "signer"'),
    ({"version": 1, "rules": [{"path": "*", "signers": ["nobody"]}]}, '"nobody" is not a key'),
    ({"version": 1, "rules": [{"path": "*", "min_signers": 0}]}, "min_signers"),
    ({"version": 1, "rules": [{"path": "*", "pickle": "run"}]}, "pickle"),
    ({"version": 1, "keys": {"k": {"id": "zz"}}}, "keys.k.id"),
    ({"version": 1, "keys": {"k": {"file": "absent.pub"}}}, "absent.pub"),
    ({"version": 1, "revoked_keys": ["nobody"]}, "revoked_keys"),
    ({"version": 1, "deny": {"file_sha256": ["abc"]}}, "deny.file_sha256"),
    ({"version": 1, "min_signed_at": {"org/model": "yesterday"}}, "min_signed_at.org/model"),
    ({"version": 1, "default": "maybe"}, "default"),
])
def test_bad_policy(env, doc, needle):
    tmp, m = env
    (tmp / "bad.json").write_text(json.dumps(doc))
    p = verify(tmp, m, tmp / "bad.json", check=2)
    assert "bad.json" in p.stderr and needle in p.stderr, p.stderr


def test_bad_policy_json(env):
    tmp, m = env
    for text in ("{", '{"version": 1, "version": 1}', "\x00"):
        (tmp / "bad.json").write_text(text)
        verify(tmp, m, tmp / "bad.json", check=2)
    verify(tmp, m, tmp / "absent.json", check=2)


def test_examples_parse(env):
    """The example policies in docs/examples load."""
    tmp, m = env
    from conftest import ROOT
    ex = ROOT / "docs" / "examples"
    files = sorted(ex.glob("policy-*.json"))
    assert files
    for f in files:
        d = tmp / "ex"
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(ex, d)
        for k in ("publisher", "security"):
            shutil.copy(tmp / ("pub.pub" if k == "publisher" else "sec.pub"), d / f"{k}.pub")
        p = verify(tmp, m, d / f.name, check=None)
        assert p.returncode in (0, 1), p.stderr
