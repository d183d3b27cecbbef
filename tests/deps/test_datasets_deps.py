"""docs/datasets-and-dependencies.md's example, run as written (issue #17; root).

The ```sh blocks between <!-- tested-example --> and <!-- /tested-example -->
are joined and run with `sh -eu` in an empty folder, with `modelfs` (the
binary under test) and `python3` (/usr/bin/python3) first in the PATH and
pip isolated from this machine's configuration (no index, no extra links).
Then the results are checked independently: the dataset and the wheelhouse
were served, the good wheel installed and imports, the tampered one gave
EIO and installed nothing.
"""
import os
import pathlib
import re
import subprocess

import pytest

from conftest import ROOT, modelfs_bin

DOC = ROOT / "docs" / "datasets-and-dependencies.md"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts FUSE filesystems (root)")


def example_script() -> str:
    text = DOC.read_text()
    m = re.search(r"<!-- tested-example -->(.*?)<!-- /tested-example -->", text, re.S)
    assert m, "no tested example in the doc"
    blocks = re.findall(r"```sh\n(.*?)```", m.group(1), re.S)
    assert len(blocks) >= 5
    return "\n".join(blocks)


def force_unmount(mnt: pathlib.Path):
    for cmd in (["fusermount3", "-u", str(mnt)], ["umount", "-l", str(mnt)]):
        try:
            if not os.path.ismount(mnt):
                return
        except OSError:
            pass
        subprocess.run(cmd, capture_output=True, timeout=30)


def test_example_runs_as_documented(tmp_path):
    pytest.importorskip("pip")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "modelfs").symlink_to(modelfs_bin())
    (bindir / "python3").symlink_to("/usr/bin/python3")
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    env.update(PATH=f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
               PIP_CONFIG_FILE=os.devnull, PIP_NO_CACHE_DIR="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_ROOT_USER_ACTION="ignore",
               PYTHONNOUSERSITE="1")
    # Output to files, not pipes: a mount daemon left behind by a failing
    # step would hold a pipe open.
    logs = [tmp_path / "stdout", tmp_path / "stderr"]
    try:
        with open(logs[0], "w") as o, open(logs[1], "w") as e:
            rc = subprocess.run(["sh", "-eu", "-c", example_script()], cwd=work, env=env,
                                stdout=o, stderr=e, timeout=600).returncode
    finally:
        force_unmount(work / "mnt")
    p = subprocess.CompletedProcess([], rc, logs[0].read_text(), logs[1].read_text())
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"the example failed ({p.returncode}):\n{out}"

    # what the example printed
    for name in ("embeddings.parquet", "train-00000-of-00002.jsonl",
                 "train-00001-of-00002.jsonl", "demo_pkg-1.0-py3-none-any.whl",
                 "demo_extra-1.0-py3-none-any.whl"):
        assert name in p.stdout, name
    assert '{"id": 0, "text": "sample 0"}' in p.stdout
    formats = re.findall(r'user\.modelfs\.format="(\w+)"', p.stdout)
    assert formats == ["text", "unknown", "zip"], out
    assert "Successfully installed demo_pkg-1.0" in p.stdout
    assert "demo_pkg.VALUE = 42" in p.stdout
    assert "[Errno 5] Input/output error" in out
    assert "demo_extra not installed" in p.stdout
    assert "installed a tampered wheel" not in p.stdout

    # independently
    assert not os.path.ismount(work / "mnt")
    assert (work / "site" / "demo_pkg" / "__init__.py").read_text().startswith("VALUE = 42\n")
    assert not (work / "site2" / "demo_extra").exists()
    r = subprocess.run(["/usr/bin/python3", "-c", "import demo_pkg; print(demo_pkg.VALUE)"],
                       env=dict(env, PYTHONPATH=str(work / "site")), capture_output=True,
                       text=True, cwd=tmp_path)
    assert r.stdout.strip() == "42", r.stderr
