"""Issue #14: the forged keyless signatures, checked by independent verifiers.

tests/sigstore/forge.py makes a Sigstore PKI and keyless OMS bundles. Before
modelfs's own keyless verification may rely on them, they are checked here
without it:

- the conformance client ss_client (already proven on the 70 public
  Sigstore conformance cases) accepts every good forged bundle and refuses
  every `--fault` with a line naming the broken check. An OMS bundle is a
  DSSE envelope over an in-toto statement, so its artifact is given as the
  statement's subject digest (`sha256:HEX`): ss_client requires a subject
  with the artifact's SHA-256, and no file hashes to an OMS subject digest
  (a digest over the files' digests), so file mode does not apply;
- `openssl verify -x509_strict` accepts the leaf's chain at the log's time,
  `openssl ts -verify` the RFC 3161 timestamp;
- the bundle's parts agree as Rekor and the specification define them
  (recomputed here from the bundle: body, SET message, Merkle path,
  checkpoint, SCT list shape), and the statement is the key-sealed one.
"""
import base64
import datetime
import hashlib
import json
import os
import pathlib
import re
import subprocess

import pytest

from conftest import ROOT
import keyless_helpers as kh
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

OID_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OID_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")


def client() -> str:
    path = os.environ.get("MODELFS_SS_CLIENT")
    if path:
        return path
    build = pathlib.Path(os.environ.get("MODELFS_BUILD", str(ROOT / "build")))
    return str(build / "tests" / "sigstore" / "ss_client")


def ss_verify(model, root, identity=kh.IDENTITY, issuer=kh.ISSUER, digest=None):
    cmd = [client(), "verify-bundle", "--bundle", str(model / "model.sig"),
           "--certificate-identity", identity, "--certificate-oidc-issuer", issuer,
           "--trusted-root", str(root), "sha256:" + (digest or kh.subject_sha256(model))]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    kh.make_pki(d)
    return d


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    """A model sealed with a throwaway key: the statement every test re-signs."""
    d = tmp_path_factory.mktemp("sealed")
    model = kh.write_model(d / "m")
    kh.seal_with_throwaway_key(model, d / "keys")
    return model


def resigned(sealed, tmp_path, pki, **kw):
    model = kh.copy_model(sealed, tmp_path / "m")
    kh.sign_keyless(model, pki, **kw)
    return model


# --------------------------------------------------------------------------
# good signatures
# --------------------------------------------------------------------------

@pytest.mark.parametrize("tsa", [False, True], ids=["log-only", "tsa"])
@pytest.mark.parametrize("who", ["uri", "email"])
def test_good_bundle_verifies(sealed, tmp_path, pki, who, tsa):
    identity, issuer = ((kh.IDENTITY, kh.ISSUER) if who == "uri"
                        else (kh.EMAIL_IDENTITY, kh.EMAIL_ISSUER))
    model = resigned(sealed, tmp_path, pki, identity=identity, issuer=issuer, tsa=tsa)
    p = ss_verify(model, pki / "trusted_root.json", identity, issuer)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"OK: {identity}"


def test_statement_is_the_sealed_one(sealed, tmp_path, pki):
    before = kh.bundle(sealed)["dsseEnvelope"]
    model = resigned(sealed, tmp_path, pki)
    b = kh.bundle(model)
    assert b["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert b["dsseEnvelope"]["payload"] == before["payload"]
    assert b["dsseEnvelope"]["payloadType"] == "application/vnd.in-toto+json"
    assert len(b["dsseEnvelope"]["signatures"]) == 1
    assert set(b["verificationMaterial"]) == {"certificate", "tlogEntries"}


def test_other_digest_refused(sealed, tmp_path, pki):
    """The artifact must be a subject of the statement."""
    model = resigned(sealed, tmp_path, pki)
    p = ss_verify(model, pki / "trusted_root.json", digest="ab" * 32)
    assert p.returncode == 1
    assert "no statement subject has the artifact's sha256" in p.stderr


def test_other_trusted_root_refused(sealed, tmp_path, pki):
    other = kh.make_pki(tmp_path / "other-pki")
    model = resigned(sealed, tmp_path, pki)
    p = ss_verify(model, other)
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1, p.stderr


# --------------------------------------------------------------------------
# every fault is refused, naming the check it breaks
# --------------------------------------------------------------------------

@pytest.mark.parametrize("fault", kh.FAULTS)
def test_fault_refused(sealed, tmp_path, pki, fault):
    model = resigned(sealed, tmp_path, pki, fault=fault)
    p = ss_verify(model, pki / "trusted_root.json")
    lines = p.stderr.splitlines()
    assert p.returncode == 1, f"{fault}: verified (exit {p.returncode}): {p.stdout}"
    assert len(lines) == 1, f"{fault}: stderr is not one line: {p.stderr!r}"
    assert re.search(kh.ORACLE[fault], lines[0]), f"{fault}: {lines[0]}"


@pytest.mark.parametrize("fault", ["set-bad-signature", "checkpoint-bad-signature",
                                   "dsse-bad-signature", "sct-bad-signature"])
def test_fault_also_refused_with_tsa(sealed, tmp_path, pki, fault):
    """A good timestamp does not make up for a broken log or signature check."""
    model = resigned(sealed, tmp_path, pki, fault=fault, tsa=True)
    p = ss_verify(model, pki / "trusted_root.json")
    assert p.returncode == 1 and re.search(kh.ORACLE[fault], p.stderr), p.stderr


def test_help_documents_every_fault():
    out = kh.run_forge("--help").stdout + kh.run_forge("sign", "--help").stdout
    for f in kh.FAULTS:
        assert re.search(rf"^  {re.escape(f)} +\S", out, re.M), f"{f} not documented"
    assert kh.run_forge("faults").stdout.split() == kh.FAULTS


def test_unknown_fault_is_a_usage_error(sealed, tmp_path, pki):
    model = kh.copy_model(sealed, tmp_path / "m")
    p = kh.run_forge("sign", "--pki", pki, "--model", model, "--identity", "a@b.c",
                     "--issuer", "https://x", "--fault", "no-such-fault", check=False)
    assert p.returncode == 2
    assert kh.bundle(model) == kh.bundle(sealed), "model.sig changed on a usage error"


# --------------------------------------------------------------------------
# the trusted root and the parts of a bundle, recomputed
# --------------------------------------------------------------------------

def spki_sha256_b64(raw_b64: str) -> str:
    return base64.b64encode(hashlib.sha256(base64.b64decode(raw_b64)).digest()).decode()


def test_trusted_root_shape(pki):
    r = json.loads((pki / "trusted_root.json").read_text())
    assert r["mediaType"] == "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
    for kind in ("tlogs", "ctlogs"):
        (log,) = r[kind]
        assert log["logId"]["keyId"] == spki_sha256_b64(log["publicKey"]["rawBytes"])
        assert log["publicKey"]["keyDetails"] == "PKIX_ECDSA_P256_SHA_256"
        assert log["publicKey"]["validFor"]["start"].endswith("Z")
    for kind in ("certificateAuthorities", "timestampAuthorities"):
        (ca,) = r[kind]
        certs = [x509.load_der_x509_certificate(base64.b64decode(c["rawBytes"]))
                 for c in ca["certChain"]["certificates"]]
        assert len(certs) == 2 and certs[-1].issuer == certs[-1].subject  # leaf-most first
        assert certs[0].issuer == certs[1].subject
        assert ca["validFor"]["start"].endswith("Z")
    keys = list((pki / "private").iterdir())
    assert all(p.stat().st_mode & 0o077 == 0 for p in keys if p.suffix == ".key")


def pem_file(path: pathlib.Path, certs) -> pathlib.Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


def test_leaf_certificate(sealed, tmp_path, pki):
    """Fulcio's profile, and a chain `openssl verify -x509_strict` accepts at the log time."""
    model = resigned(sealed, tmp_path, pki, identity=kh.EMAIL_IDENTITY, issuer=kh.EMAIL_ISSUER)
    b = kh.bundle(model)
    leaf = x509.load_der_x509_certificate(
        base64.b64decode(b["verificationMaterial"]["certificate"]["rawBytes"]))
    ext = leaf.extensions
    assert ext.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.RFC822Name) == [kh.EMAIL_IDENTITY]
    assert ext.get_extension_for_oid(OID_ISSUER_V1).value.value == kh.EMAIL_ISSUER.encode()
    v2 = ext.get_extension_for_oid(OID_ISSUER_V2).value.value
    assert v2[0] == 0x0C and v2[2:] == kh.EMAIL_ISSUER.encode()  # DER UTF8String
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert x509.oid.ExtendedKeyUsageOID.CODE_SIGNING in ext.get_extension_for_class(
        x509.ExtendedKeyUsage).value
    scts = ext.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
    r = json.loads((pki / "trusted_root.json").read_text())
    assert [base64.b64encode(s.log_id).decode() for s in scts] == [r["ctlogs"][0]["logId"]["keyId"]]
    life = leaf.not_valid_after - leaf.not_valid_before
    assert datetime.timedelta(minutes=5) <= life <= datetime.timedelta(minutes=20)
    t = int(b["verificationMaterial"]["tlogEntries"][0]["integratedTime"])
    assert leaf.not_valid_before <= datetime.datetime.utcfromtimestamp(t) <= leaf.not_valid_after
    ca = pki / "private"
    p = subprocess.run(["openssl", "verify", "-x509_strict", "-attime", str(t),
                        "-CAfile", str(ca / "fulcio-root.pem"),
                        "-untrusted", str(ca / "fulcio-intermediate.pem"),
                        str(pem_file(tmp_path / "leaf.pem", [leaf]))],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_timestamp_openssl(sealed, tmp_path, pki):
    """`openssl ts -verify`: the token is over the signature, by the root's TSA."""
    model = resigned(sealed, tmp_path, pki, tsa=True)
    b = kh.bundle(model)
    (tmp_path / "sig").write_bytes(base64.b64decode(b["dsseEnvelope"]["signatures"][0]["sig"]))
    (ts,) = b["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
    (tmp_path / "resp.tsr").write_bytes(base64.b64decode(ts["signedTimestamp"]))
    ca = pki / "private"
    p = subprocess.run(["openssl", "ts", "-verify", "-data", str(tmp_path / "sig"),
                        "-in", str(tmp_path / "resp.tsr"), "-CAfile", str(ca / "tsa-root.pem"),
                        "-untrusted", str(ca / "tsa.pem")], capture_output=True, text=True)
    assert p.returncode == 0 and "Verification: OK" in p.stdout, p.stdout + p.stderr


def load_pub(raw_b64: str):
    return serialization.load_der_public_key(base64.b64decode(raw_b64))


def test_log_entry_recomputed(sealed, tmp_path, pki):
    """Body, SET, Merkle path and checkpoint, recomputed from their definitions."""
    model = resigned(sealed, tmp_path, pki)
    b = kh.bundle(model)
    env = b["dsseEnvelope"]
    (e,) = b["verificationMaterial"]["tlogEntries"]
    r = json.loads((pki / "trusted_root.json").read_text())
    rekor = load_pub(r["tlogs"][0]["publicKey"]["rawBytes"])
    assert e["kindVersion"] == {"kind": "dsse", "version": "0.0.1"}
    assert e["logId"]["keyId"] == r["tlogs"][0]["logId"]["keyId"]
    raw = base64.b64decode(e["canonicalizedBody"])
    body = json.loads(raw)
    assert raw == json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    spec = body["spec"]
    assert spec["payloadHash"] == {"algorithm": "sha256", "value": hashlib.sha256(
        base64.b64decode(env["payload"])).hexdigest()}
    (s,) = spec["signatures"]
    assert s["signature"] == env["signatures"][0]["sig"]
    leaf = x509.load_der_x509_certificate(
        base64.b64decode(b["verificationMaterial"]["certificate"]["rawBytes"]))
    assert base64.b64decode(s["verifier"]) == leaf.public_bytes(serialization.Encoding.PEM)
    # the signed entry timestamp
    promise = json.dumps({"body": e["canonicalizedBody"], "integratedTime": int(e["integratedTime"]),
                          "logID": base64.b64decode(e["logId"]["keyId"]).hex(),
                          "logIndex": int(e["logIndex"])}, sort_keys=True,
                         separators=(",", ":")).encode()
    rekor.verify(base64.b64decode(e["inclusionPromise"]["signedEntryTimestamp"]), promise,
                 ec.ECDSA(hashes.SHA256()))
    # the inclusion proof (RFC 9162 2.1.3.2)
    proof = e["inclusionProof"]
    fn, sn = int(proof["logIndex"]), int(proof["treeSize"]) - 1
    h = hashlib.sha256(b"\x00" + raw).digest()
    for p in (base64.b64decode(x) for x in proof["hashes"]):
        if fn & 1 or fn == sn:
            h = hashlib.sha256(b"\x01" + p + h).digest()
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            h = hashlib.sha256(b"\x01" + h + p).digest()
        fn, sn = fn >> 1, sn >> 1
    assert sn == 0 and base64.b64encode(h).decode() == proof["rootHash"]
    # the checkpoint: a signed note by the log, key hint = log id prefix
    note = proof["checkpoint"]["envelope"]
    text, sigline = note.split("\n\n")
    origin, size, root = text.split("\n")
    assert re.fullmatch(r"rekor\.forge\.test - \d+", origin)
    assert (size, root) == (proof["treeSize"], proof["rootHash"])
    assert sigline.startswith("\u2014 rekor.forge.test ") and sigline.endswith("\n")
    blob = base64.b64decode(sigline.split()[-1])
    assert blob[:4] == base64.b64decode(e["logId"]["keyId"])[:4]
    rekor.verify(blob[4:], (text + "\n").encode(), ec.ECDSA(hashes.SHA256()))


def test_model_sig_replaced_atomically(sealed, tmp_path, pki):
    model = resigned(sealed, tmp_path, pki)
    assert sorted(p.name for p in model.iterdir()) == sorted(p.name for p in sealed.iterdir())
