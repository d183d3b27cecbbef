"""Keyless (Sigstore) signers for push, pull and the lazy mount (issue #16,
with the keyless verification of issue #14).

A model re-signed keylessly by tests/sigstore/forge.py (a Fulcio-like CA, a
CT log and Rekor of the test's own trusted root) is pushed to the real
registry with `--identity ID --identity-provider URL --trust-root FILE`,
pulled back with the same options, and mounted lazily with
`--trust-identity/--trust-issuer/--trust-root`. Another identity or
provider is refused by each: push before any connection, pull before any
download, the mount by exposing nothing."""
import pathlib
import sys

import pytest

from remote.oci_registry import run
from remote.test_lazy_mount import OciMount, auth  # noqa: F401 (auth: fixture)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "sigstore"))
import keyless_helpers as kh  # noqa: E402


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    kh.make_pki(d)
    return d


@pytest.fixture(scope="module")
def model(tmp_path_factory, pki):
    d = tmp_path_factory.mktemp("keyless")
    return kh.keyless_model(d / "m", pki, d / "keys")


@pytest.fixture
def env(registry, tmp_path):
    return registry.env(registry.write_auth_file(tmp_path / "auth.json"), tmp_path)


def signer(pki, identity=kh.IDENTITY, issuer=kh.ISSUER) -> list:
    return ["--identity", identity, "--identity-provider", issuer,
            "--trust-root", str(pki / "trusted_root.json")]


def files_of(root: pathlib.Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_keyless_push_pull_and_verify(registry, pki, model, tmp_path, env):
    p = run("push", *signer(pki), "--ca-cert", registry.ca, model,
            f"{registry.host}/org/keyless:v1", env=env, check=0)
    assert p.stdout.startswith("pushed: ")
    dest = tmp_path / "out"
    p = run("pull", *signer(pki), "--ca-cert", registry.ca, f"{registry.host}/org/keyless:v1",
            dest, env=env, check=0)
    assert p.stdout.startswith("pulled: ")
    want, got = files_of(model), files_of(dest)
    for name in want:  # every file and model.sig; the pull adds the trees
        assert got[name] == want[name], name
    v = run("verify", *signer(pki), dest, check=0)
    assert f"signer identity {kh.IDENTITY}" in v.stdout


@pytest.mark.parametrize("who", ["identity", "issuer"])
def test_other_keyless_signer_is_refused(registry, pki, model, tmp_path, env, who):
    other = (dict(identity="https://github.com/other/repo/.github/workflows/x.yml@refs/heads/main")
             if who == "identity" else dict(issuer="https://accounts.other.test"))
    p = run("push", *signer(pki, **other), "--ca-cert", registry.ca, model,
            f"{registry.host}/org/refused:v1", env=env, check=1)
    assert "does not verify; nothing pushed" in p.stderr
    run("push", *signer(pki), "--ca-cert", registry.ca, model,
        f"{registry.host}/org/keyless2:v1", env=env, check=0)
    dest = tmp_path / "out"
    p = run("pull", *signer(pki, **other), "--ca-cert", registry.ca,
            f"{registry.host}/org/keyless2:v1", dest, env=env, check=1)
    assert "nothing installed" in p.stderr
    assert not dest.exists() and not (tmp_path / "out.modelfs-pull").exists()


def test_identity_needs_its_provider(registry, pki, model, tmp_path, env):
    p = run("pull", "--identity", kh.IDENTITY, "--ca-cert", registry.ca,
            f"{registry.host}/org/keyless:v1", tmp_path / "out", env=env, check=2)
    assert "give one --identity-provider URL for each --identity ID" in p.stderr


class KeylessOciMount(OciMount):
    """OciMount trusting a keyless identity instead of a key."""

    def __init__(self, registry, ref, mnt, pki, identity=kh.IDENTITY, issuer=kh.ISSUER):
        super().__init__(registry, ref, mnt, "unused")
        i = self.args.index("--trust")
        self.args[i:i + 2] = ["--trust-identity", identity, "--trust-issuer", issuer,
                              "--trust-root", str(pki / "trusted_root.json")]


def test_lazy_mount_of_a_keyless_model(registry, pki, model, tmp_path, env, auth):  # noqa: F811
    # the repository ends with the signed name "m": the mount's name check
    run("push", *signer(pki), "--ca-cert", registry.ca, model,
        f"{registry.host}/org/m:keyless", env=env, check=0)
    with KeylessOciMount(registry, "org/m:keyless", tmp_path / "mnt", pki) as m:
        root = m.mnt / "org" / "m"
        assert (root / "sub" / "weights.bin").read_bytes() == \
            (model / "sub" / "weights.bin").read_bytes()
        assert (root / "config.json").read_bytes() == (model / "config.json").read_bytes()
    with KeylessOciMount(registry, "org/m:keyless", tmp_path / "mnt2", pki,
                         identity=kh.EMAIL_IDENTITY) as m:
        assert not (m.mnt / "org" / "m").exists()
        assert "model-refused" in m.log()
