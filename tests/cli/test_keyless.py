"""Issue #14: `modelfs verify` on keyless (Sigstore) OMS models.

    modelfs verify --identity ID --identity-provider URL --trust-root FILE MODEL_DIR

The models are made by tests/sigstore/forge.py: a model sealed with a
throwaway key (`modelfs keygen`, `modelfs seal`), whose statement is then
re-signed keylessly by the forged Fulcio, CT log and Rekor (and TSA), as
`model_signing sign sigstore` would. test_forge_oracle.py proves these
bundles with the conformance client, independently of modelfs; here
modelfs must accept the good ones and refuse every `--fault` with one line
naming the broken check (exit 1), and keep its usual file checks.
"""
import re
import sys

import pytest

from conftest import ROOT, run_modelfs

sys.path.insert(0, str(ROOT / "tests" / "sigstore"))
import keyless_helpers as kh  # noqa: E402


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    kh.make_pki(d)
    return d


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    """A model sealed with a throwaway key; each test re-signs a copy."""
    d = tmp_path_factory.mktemp("sealed")
    model = kh.write_model(d / "m")
    kh.seal_with_throwaway_key(model, d / "keys")
    return model


def keyless(sealed, tmp_path, pki, name="m", **kw):
    model = kh.copy_model(sealed, tmp_path / name)
    kh.sign_keyless(model, pki, **kw)
    return model


def verify(model, pki, *extra, identity=kh.IDENTITY, issuer=kh.ISSUER, root=None, check=None):
    return run_modelfs("verify", "--identity", identity, "--identity-provider", issuer,
                       "--trust-root", root or pki / "trusted_root.json", *extra, model,
                       check=check)


def one_refusal(p, what) -> str:
    lines = kh.refusal_lines(p.stderr)
    assert len(lines) == 1, f"{what}: expected one line on stderr, got {p.stderr!r}"
    return lines[0]


# --------------------------------------------------------------------------
# good models
# --------------------------------------------------------------------------

@pytest.mark.parametrize("tsa", [False, True], ids=["log-only", "tsa"])
@pytest.mark.parametrize("who", ["uri", "email"])
def test_good_keyless_model_verifies(sealed, tmp_path, pki, who, tsa):
    identity, issuer = ((kh.IDENTITY, kh.ISSUER) if who == "uri"
                        else (kh.EMAIL_IDENTITY, kh.EMAIL_ISSUER))
    model = keyless(sealed, tmp_path, pki, identity=identity, issuer=issuer, tsa=tsa)
    p = verify(model, pki, identity=identity, issuer=issuer, check=0)
    assert p.stdout.startswith("verified: 3 files"), p.stdout
    assert identity in p.stdout, f"the signer's identity is not shown: {p.stdout}"
    assert "fs-verity" in p.stdout  # the modelfs extension came through the re-signing
    assert not kh.refusal_lines(p.stderr), p.stderr


def test_inspect_shows_certificate_identity(sealed, tmp_path, pki):
    """inspect reads the keyless bundle (unverified) without failing."""
    model = keyless(sealed, tmp_path, pki)
    p = run_modelfs("inspect", model, check=0)
    assert "sub/weights.bin" in p.stdout


# --------------------------------------------------------------------------
# what the verifier is asked: identity, provider, trust root
# --------------------------------------------------------------------------

def test_other_identity_refused(sealed, tmp_path, pki):
    model = keyless(sealed, tmp_path, pki)
    p = verify(model, pki, identity=kh.EMAIL_IDENTITY, check=1)
    line = one_refusal(p, "other identity")
    # names the identity and issuer the certificate claims, and says why
    assert f"signed by identity {kh.IDENTITY} (issuer {kh.ISSUER})" in line, line
    assert "not trusted" in line, line


def test_other_provider_refused(sealed, tmp_path, pki):
    model = keyless(sealed, tmp_path, pki)
    p = verify(model, pki, issuer=kh.EMAIL_ISSUER, check=1)
    assert re.search("issuer|provider", one_refusal(p, "other provider"), re.I)


def test_identity_is_exact_not_a_prefix(sealed, tmp_path, pki):
    model = keyless(sealed, tmp_path, pki)
    verify(model, pki, identity=kh.IDENTITY[:-4], check=1)
    verify(model, pki, identity=kh.IDENTITY + "x", check=1)
    verify(model, pki, issuer=kh.ISSUER + "/", check=1)


def test_other_trust_root_refused(sealed, tmp_path, pki):
    other = kh.make_pki(tmp_path / "other-pki")
    model = keyless(sealed, tmp_path, pki)
    p = verify(model, pki, root=other, check=1)
    one_refusal(p, "other trust root")


def test_missing_trust_root_is_one_line_naming_it(sealed, tmp_path, pki):
    model = keyless(sealed, tmp_path, pki)
    missing = tmp_path / "no-such-root.json"
    p = verify(model, pki, root=missing)
    assert p.returncode == 2, f"exit {p.returncode}: {p.stderr}"
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and str(missing) in lines[0], p.stderr


def test_malformed_trust_root_refused(sealed, tmp_path, pki):
    model = keyless(sealed, tmp_path, pki)
    bad = tmp_path / "root.json"
    bad.write_text('{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",')
    p = verify(model, pki, root=bad)
    assert p.returncode in (1, 2) and p.returncode != 0
    assert str(bad) in p.stderr or "root" in p.stderr


def test_key_sealed_model_is_not_keyless(sealed, pki):
    """A model signed with a key does not verify against an identity."""
    p = verify(sealed, pki, check=1)
    one_refusal(p, "key-sealed model")


def test_keyless_model_does_not_verify_with_a_key(sealed, tmp_path, pki):
    model = keyless(sealed, tmp_path, pki)
    key = tmp_path / "k"
    run_modelfs("keygen", key, check=0)
    run_modelfs("verify", "--trust", f"{key}.pub", model, check=1)


# --------------------------------------------------------------------------
# every broken check
# --------------------------------------------------------------------------

@pytest.mark.parametrize("fault", kh.FAULTS)
def test_fault_refused(sealed, tmp_path, pki, fault):
    model = keyless(sealed, tmp_path, pki, fault=fault)
    p = verify(model, pki)
    assert p.returncode == 1, f"{fault}: exit {p.returncode}\n{p.stdout}{p.stderr}"
    line = one_refusal(p, fault)
    assert re.search(kh.CHECKS[fault], line, re.I), f"{fault}: the line does not name the check: {line}"


# --------------------------------------------------------------------------
# the file checks are those of keyed models
# --------------------------------------------------------------------------

def test_tampered_file_fails_the_file_check(sealed, tmp_path, pki):
    model = keyless(sealed, tmp_path, pki)
    w = model / "sub" / "weights.bin"
    data = bytearray(w.read_bytes())
    data[5000] ^= 0x40
    w.write_bytes(bytes(data))
    p = verify(model, pki, check=1)
    assert re.search(r"^sub/weights\.bin: (sha256|fs-verity digest) mismatch", p.stderr, re.M), \
        p.stderr


def test_missing_file_fails(sealed, tmp_path, pki):
    model = keyless(sealed, tmp_path, pki)
    (model / "config.json").unlink()
    p = verify(model, pki, check=1)
    assert "config.json: missing" in p.stderr


def test_unsigned_file_and_ignore_options(sealed, tmp_path, pki):
    model = keyless(sealed, tmp_path, pki)
    (model / "extra.bin").write_bytes(b"not signed\n")
    (model / "logs").mkdir()
    (model / "logs" / "run.txt").write_text("noise\n")
    p = verify(model, pki, check=1)
    assert "extra.bin: not signed" in p.stderr and "logs/run.txt: not signed" in p.stderr
    p = verify(model, pki, "--ignore-paths", "extra.bin", check=1)
    assert "extra.bin" not in p.stderr and "logs/run.txt: not signed" in p.stderr
    verify(model, pki, "--ignore-paths", "extra.bin", "--ignore-paths", "logs", check=0)
    verify(model, pki, "--ignore-unsigned-files", check=0)


def test_detached_signature(sealed, tmp_path, pki):
    """--signature works for keyless bundles as for keyed ones."""
    model = keyless(sealed, tmp_path, pki)
    sig = tmp_path / "detached.sig"
    (model / "model.sig").rename(sig)
    verify(model, pki, "--signature", sig, check=0)


def test_usage_errors(sealed, pki):
    """--identity and --identity-provider go together; a key-sealed model never
    verifies against an identity without a trust root (whatever the default)."""
    root = pki / "trusted_root.json"
    for args in (["--identity", kh.IDENTITY, "--trust-root", root],
                 ["--identity-provider", kh.ISSUER, "--trust-root", root]):
        p = run_modelfs("verify", *args, sealed)
        assert p.returncode == 2, f"{args}: exit {p.returncode}: {p.stderr}"
    p = run_modelfs("verify", "--identity", kh.IDENTITY, "--identity-provider", kh.ISSUER, sealed)
    assert p.returncode in (1, 2), f"exit {p.returncode}: {p.stderr}"
