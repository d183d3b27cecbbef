"""Issue #14: the Sigstore client conformance cases, run through ss_client.

Every case of the shared corpus (corpus/sigstore/bundle-verify/NAME/) is
verified twice, once given the artifact file and once given only its digest
`sha256:HEX`, following the corpus README: NAME/artifact or ../a.txt,
NAME/trusted_root.json if present (else the client's default, the
public-good root), NAME/key.pub as a managed key, else NAME/identity and
NAME/issuer or the suite's defaults. A case named *_fail must be refused
(exit 1, one line on stderr); every other case must verify (exit 0).

meson sets MODELFS_SS_CLIENT (the client) and MODELFS_SHARED (the corpora);
by hand, MODELFS_BUILD/tests/sigstore/ss_client and ../shared are used.
"""
import hashlib
import os
import pathlib
import subprocess

import pytest

from conftest import ROOT, shared_dir

DEFAULT_IDENTITY = ("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
                    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main")
DEFAULT_ISSUER = "https://token.actions.githubusercontent.com"
EXPECTED_CASES = 70

CASES_DIR = shared_dir() / "corpus" / "sigstore" / "bundle-verify"
CASES = sorted(d.name for d in CASES_DIR.iterdir() if d.is_dir()) if CASES_DIR.is_dir() else []


def client() -> str:
    path = os.environ.get("MODELFS_SS_CLIENT")
    if path:
        return path
    build = pathlib.Path(os.environ.get("MODELFS_BUILD", str(ROOT / "build")))
    return str(build / "tests" / "sigstore" / "ss_client")


def read_line(path: pathlib.Path, default: str) -> str:
    return path.read_text().strip() if path.is_file() else default


def command(case: str, mode: str) -> list:
    """The suite's verify-bundle command line for @case in @mode."""
    d = CASES_DIR / case
    artifact = d / "artifact" if (d / "artifact").is_file() else CASES_DIR / "a.txt"
    cmd = [client(), "verify-bundle", "--bundle", str(d / "bundle.sigstore.json")]
    if (d / "key.pub").is_file():
        cmd += ["--key", str(d / "key.pub")]
    else:
        cmd += ["--certificate-identity", read_line(d / "identity", DEFAULT_IDENTITY),
                "--certificate-oidc-issuer", read_line(d / "issuer", DEFAULT_ISSUER)]
    if (d / "trusted_root.json").is_file():
        cmd += ["--trusted-root", str(d / "trusted_root.json")]
    if mode == "digest":
        cmd.append("sha256:" + hashlib.sha256(artifact.read_bytes()).hexdigest())
    else:
        cmd.append(str(artifact))
    return cmd


def test_corpus_complete():
    if not CASES_DIR.is_dir():
        pytest.fail(f"Sigstore corpus not found at {CASES_DIR}")
    assert len(CASES) == EXPECTED_CASES, f"{len(CASES)} cases, {EXPECTED_CASES} expected"
    assert os.access(client(), os.X_OK), f"{client()}: not built"


@pytest.mark.parametrize("mode", ["file", "digest"])
@pytest.mark.parametrize("case", CASES)
def test_case(case, mode):
    env = dict(os.environ, MODELFS_SHARED=str(shared_dir()))
    p = subprocess.run(command(case, mode), capture_output=True, text=True, env=env,
                       timeout=120)
    lines = p.stderr.splitlines()
    if case.endswith("_fail"):
        assert p.returncode == 1, (f"{case} ({mode}) verified (exit {p.returncode}); "
                                   f"it must be refused. stdout: {p.stdout.strip()}")
        assert len(lines) == 1, f"{case} ({mode}): stderr is not one line: {p.stderr!r}"
    else:
        assert p.returncode == 0, (f"{case} ({mode}) refused (exit {p.returncode}): "
                                   f"{p.stderr.strip()}")


def test_usage_errors(tmp_path):
    """Exit 2 on a malformed command line, before reading anything."""
    bundle = str(tmp_path / "b.json")
    for args in ([], ["sign"], ["verify-bundle", "x"],
                 ["verify-bundle", "--bundle", bundle],
                 ["verify-bundle", "--bundle", bundle, "--key", "k", "a", "b"],
                 ["verify-bundle", "--bundle", bundle, "--certificate-identity", "i", "a"],
                 ["verify-bundle", "--bundle", bundle, "--key", "k",
                  "--certificate-identity", "i", "--certificate-oidc-issuer", "o", "a"],
                 ["verify-bundle", "--bundle", bundle, "--bogus", "a"]):
        p = subprocess.run([client(), *args], capture_output=True, text=True, timeout=60)
        assert p.returncode == 2, f"{args}: exit {p.returncode}, expected 2: {p.stderr}"
