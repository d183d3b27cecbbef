"""`modelfs digest` against the external oracle: Debian's `fsverity digest`.

Both must print the same line, option for option, on every file.
"""
import os
import subprocess

import pytest

from conftest import run_modelfs

SIZES = [0, 1, 4095, 4096, 4097, (1 << 20) + 1, 100_000_000]
OPTIONS = [
    [],
    ["--block-size", "1024"],
    ["--block-size", "65536"],
    ["--salt", "00112233445566778899aabbccddeeff"],
    ["--salt", "ab" * 32],
    ["--hash-alg", "sha512"],
    ["--hash-alg", "sha512", "--block-size", "1024", "--salt", "0102"],
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("digest")
    out = []
    for size in SIZES:
        p = d / f"random-{size}"
        with open(p, "wb") as f:
            f.write(os.urandom(size))
        out.append(p)
    return out


def fsverity_digest(opts, path):
    p = subprocess.run(["fsverity", "digest", *opts, str(path)], capture_output=True,
                       text=True, check=True)
    return p.stdout


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: " ".join(o) or "default")
def test_matches_fsverity(files, opts):
    for path in files:
        if path.stat().st_size > 10_000_000 and opts not in ([], ["--hash-alg", "sha512"]):
            continue  # the 100 MB file is checked with the main options only
        ours = run_modelfs("digest", *opts, path, check=0).stdout
        assert ours == fsverity_digest(opts, path), f"{path.name} {opts}"


def test_several_files_one_call(files):
    small = [str(p) for p in files if p.stat().st_size < 10_000_000]
    ours = run_modelfs("digest", *small, check=0).stdout
    theirs = subprocess.run(["fsverity", "digest", *small], capture_output=True, text=True,
                            check=True).stdout
    assert ours == theirs


def test_libfsverity_vector(tmp_path):
    data = bytes((i % 11 + i % 439 + i % 1103) & 0xFF for i in range(100_000))
    p = tmp_path / "vector"
    p.write_bytes(data)
    out = run_modelfs("digest", p, check=0).stdout
    assert out.split()[0] == ("sha256:f2096a36c5cdca4fa33ee8852833150b"
                              "b324992e5417a9d571f1bffff73b9efc")


@pytest.mark.parametrize("opts", [["--block-size", "512"], ["--block-size", "3000"],
                                  ["--block-size", "128K"], ["--hash-alg", "md5"],
                                  ["--salt", "abc"], ["--salt", "zz"], ["--salt", "00" * 33],
                                  ["--bogus"]])
def test_bad_options(tmp_path, opts):
    p = tmp_path / "x"
    p.write_bytes(b"x")
    r = run_modelfs("digest", *opts, p)
    assert r.returncode == 2
    assert r.stdout == ""


def test_missing_and_special_files(tmp_path):
    r = run_modelfs("digest", tmp_path / "nope")
    assert r.returncode == 2 and "nope" in r.stderr and len(r.stderr.splitlines()) == 1
    r = run_modelfs("digest", tmp_path)
    assert r.returncode == 2 and "not a regular file" in r.stderr
    r = run_modelfs("digest")
    assert r.returncode == 2 and "usage" in r.stderr
