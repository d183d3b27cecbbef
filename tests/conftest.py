"""Shared pytest fixtures: where the binary and the shared corpora are.

Tests run under Debian's /usr/bin/python3 (pytest, numpy, torch). meson sets
MODELFS_BIN and MODELFS_SHARED; run by hand, the defaults below apply.
"""
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def modelfs_bin() -> str:
    return os.environ.get("MODELFS_BIN", str(ROOT / "build" / "tools" / "modelfs"))


def shared_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("MODELFS_SHARED", str(ROOT.parent / "shared")))


def run_modelfs(*args, check=None, input=None, timeout=600, **kw):
    """Runs `modelfs ARGS`, returns CompletedProcess with text output.

    check: None = no check, or the expected exit status.
    """
    p = subprocess.run([modelfs_bin(), *map(str, args)], capture_output=True, text=True,
                       input=input, timeout=timeout, **kw)
    if check is not None and p.returncode != check:
        raise AssertionError(f"modelfs {' '.join(map(str, args))}: exit {p.returncode}, "
                             f"expected {check}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def sanitized_build(binary=None) -> bool:
    """Is the binary built with AddressSanitizer? Its quarantine holds freed memory
    (up to 256 MiB), so the daemon's RSS then says nothing about modelfs's own."""
    with open(binary or modelfs_bin(), "rb") as f:
        return b"__asan_init" in f.read()


@pytest.fixture
def modelfs():
    return run_modelfs


@pytest.fixture(scope="session")
def shared():
    d = shared_dir()
    if not d.is_dir():
        pytest.fail(f"shared corpora not found at {d}")
    return d
