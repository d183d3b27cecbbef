"""Helpers shared by the keyless (Sigstore) tests of issue #14.

tests/sigstore/forge.py plays Fulcio, the CT log, Rekor and a timestamp
authority; these helpers make its PKI, seal a model with a throwaway key
(`modelfs keygen`, `modelfs seal`) and re-sign it keylessly, optionally
with one check broken (`--fault`). They also hold, per fault, what a
refusal must name: ORACLE for the conformance client ss_client (its exact
wording), CHECKS for modelfs itself (the check, in looser words).

Imported by tests/sigstore/test_forge_oracle.py, tests/cli/test_keyless.py
and tests/mount/test_keyless_mount.py.
"""
import base64
import json
import os
import pathlib
import shutil
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
FORGE = HERE / "forge.py"
PYTHON = "/usr/bin/python3"

sys.path.insert(0, str(HERE))
import forge  # noqa: E402  (the fault list, FAULTS)

FAULTS = list(forge.FAULTS)
TSA_FAULTS = set(forge.TSA_FAULTS)

IDENTITY = "https://github.com/forge-org/models/.github/workflows/sign.yml@refs/heads/main"
ISSUER = "https://token.actions.githubusercontent.com"
EMAIL_IDENTITY = "publisher@models.forge.test"
EMAIL_ISSUER = "https://accounts.forge.test"

# ss_client's wording of each refusal (verity/ss_*.c).
ORACLE = {
    "wrong-identity": r'certificate: identity "[^"]+" is not the expected',
    "wrong-issuer": r'certificate: OIDC issuer "[^"]+" is not the expected',
    "issuer-extensions-disagree": r"identity: issuer extensions disagree",
    "no-codesigning-eku": r"certificate: extended key usage lacks codeSigning",
    "no-digitalsignature-ku": r"certificate: key usage lacks digitalSignature",
    "cert-expired-at-log-time": r"certificate: not valid at \S+ \(notAfter",
    "cert-not-yet-valid-at-log-time": r"certificate: not valid at \S+ \(notBefore",
    "cert-expired-at-tsa-time": r"certificate: not valid at \S+ \(notAfter",
    "untrusted-ca": r"certificate: does not verify to certificate authority",
    "no-sct": r"SCT: the certificate embeds none",
    "sct-bad-signature": r"SCT: signature by CT log \S+ does not verify",
    "sct-unknown-log": r"SCT: no SCT by a CT log of the trusted root",
    "set-bad-signature": r"tlog entry 0: inclusion promise: signed entry timestamp does not verify",
    "integrated-time-in-future": r"tlog entry 0: integrated time \d+ is after the current time",
    "log-not-in-root": r"tlog entry 0: log [0-9a-f]{64} is not in the trusted root",
    "inclusion-proof-bad-hash": r"tlog entry 0: inclusion proof: computed root [0-9a-f]+ != ",
    "checkpoint-bad-signature": r"tlog entry 0: checkpoint: signature line 1 .* does not verify",
    "checkpoint-wrong-root": r"tlog entry 0: checkpoint: root hash [0-9a-f]+ != inclusion proof",
    "checkpoint-wrong-size": r"tlog entry 0: checkpoint: tree size \d+ != inclusion proof tree",
    "body-other-signature": r"tlog entry 0: body: spec\.signatures\[\]: no signature of the "
                            r"bundle's envelope",
    "body-other-certificate": r"tlog entry 0: body: spec\.signatures\[\]\.verifier: not the "
                              r"certificate of the bundle",
    "body-other-payload": r"tlog entry 0: body: spec\.payloadHash [0-9a-f]+ != ",
    "dsse-bad-signature": r"dsseEnvelope: signature does not verify",
    # the log saw the statement before it was changed: the first check that
    # looks at the payload fails, the body's payloadHash
    "statement-tampered": r"tlog entry 0: body: spec\.payloadHash [0-9a-f]+ != ",
    "tsa-bad-imprint": r"timestamp: message imprint is not the hash of the bundle's signature",
    "tsa-untrusted": r"timestamp: does not verify to TSA",
}

# What modelfs's one-line refusal must mention (case-insensitive): the check,
# however the OMS wiring words it.
CHECKS = {
    "wrong-identity": r"identity",
    "wrong-issuer": r"issuer",
    "issuer-extensions-disagree": r"issuer",
    "no-codesigning-eku": r"code ?signing",
    "no-digitalsignature-ku": r"digital ?signature",
    "cert-expired-at-log-time": r"not ?after|expired|not valid",
    "cert-not-yet-valid-at-log-time": r"not ?before|not yet valid|not valid",
    "cert-expired-at-tsa-time": r"not ?after|expired|not valid",
    "untrusted-ca": r"certificate authority|chain|issuer certificate|untrusted",
    "no-sct": r"\bSCT",
    "sct-bad-signature": r"\bSCT",
    "sct-unknown-log": r"\bSCT",
    "set-bad-signature": r"inclusion promise|signed entry timestamp|\bSET\b",
    "integrated-time-in-future": r"integrated time",
    "log-not-in-root": r"trusted root|unknown .*log|log .*not",
    "inclusion-proof-bad-hash": r"inclusion proof",
    "checkpoint-bad-signature": r"checkpoint",
    "checkpoint-wrong-root": r"checkpoint",
    "checkpoint-wrong-size": r"checkpoint",
    "body-other-signature": r"body",
    "body-other-certificate": r"body",
    "body-other-payload": r"body|payload",
    "dsse-bad-signature": r"signature",
    "statement-tampered": r"body|payload|signature",
    "tsa-bad-imprint": r"timestamp",
    "tsa-untrusted": r"timestamp|TSA",
}
assert set(ORACLE) == set(CHECKS) == set(FAULTS), "a fault without its expected message"


def run_forge(*args, check=True) -> subprocess.CompletedProcess:
    """Runs forge.py with Debian's python3."""
    p = subprocess.run([PYTHON, str(FORGE), *map(str, args)], capture_output=True, text=True,
                       timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"forge.py {' '.join(map(str, args))}: exit {p.returncode}\n"
                             f"{p.stdout}{p.stderr}")
    return p


def make_pki(d: pathlib.Path) -> pathlib.Path:
    """A forged Sigstore instance in @d; returns its trusted_root.json."""
    run_forge("pki", d)
    return d / "trusted_root.json"


def modelfs_bin() -> str:
    here = HERE.parent.parent
    return os.environ.get("MODELFS_BIN", str(here / "build" / "tools" / "modelfs"))


def run_modelfs(*args, check=None, timeout=600) -> subprocess.CompletedProcess:
    p = subprocess.run([modelfs_bin(), *map(str, args)], capture_output=True, text=True,
                       timeout=timeout)
    if check is not None and p.returncode != check:
        raise AssertionError(f"modelfs {' '.join(map(str, args))}: exit {p.returncode}, "
                             f"expected {check}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def write_model(d: pathlib.Path) -> pathlib.Path:
    """A small model folder: a config, a nested weights file, an empty file."""
    (d / "sub").mkdir(parents=True)
    (d / "config.json").write_text('{"layers": 2}\n')
    (d / "sub" / "weights.bin").write_bytes(b"\0" + os.urandom(3 * 4096 + 17))
    (d / "empty.bin").write_bytes(b"")
    return d


def seal_with_throwaway_key(model: pathlib.Path, keydir: pathlib.Path):
    """`modelfs seal` with a fresh key: the statement the keyless signature re-signs."""
    prefix = keydir / "throwaway"
    if not prefix.with_suffix(".key").exists():
        keydir.mkdir(parents=True, exist_ok=True)
        run_modelfs("keygen", prefix, check=0)
    run_modelfs("seal", "--key", f"{prefix}.key", model, check=0)


def sign_keyless(model: pathlib.Path, pki: pathlib.Path, identity=IDENTITY, issuer=ISSUER,
                 tsa=False, fault=None):
    """Replaces @model's model.sig by a keyless one (forge.py sign)."""
    args = ["sign", "--pki", pki, "--model", model, "--identity", identity, "--issuer", issuer]
    if tsa:
        args.append("--tsa")
    if fault:
        args += ["--fault", fault]
    run_forge(*args)


def keyless_model(d: pathlib.Path, pki: pathlib.Path, keydir: pathlib.Path, **kw) -> pathlib.Path:
    """A new model in @d, sealed with a throwaway key, then re-signed keylessly."""
    write_model(d)
    seal_with_throwaway_key(d, keydir)
    sign_keyless(d, pki, **kw)
    return d


def copy_model(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def bundle(model: pathlib.Path) -> dict:
    return json.loads((model / "model.sig").read_text())


def statement(model: pathlib.Path) -> dict:
    return json.loads(base64.b64decode(bundle(model)["dsseEnvelope"]["payload"]))


def subject_sha256(model: pathlib.Path) -> str:
    """The statement's subject digest: the artifact an OMS bundle is about."""
    return statement(model)["subject"][0]["digest"]["sha256"]


def refusal_lines(stderr: str) -> list:
    """The stderr lines that are not warnings."""
    return [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("warning: ")]
