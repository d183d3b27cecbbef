"""tools/demo, end to end (issue #17, "The first ten minutes"; run as root).

The demo runs with `--no-bootstrap` on the binary under test (MODELFS_BIN)
and keeps its work folder (MODELFS_DEMO_KEEP). Each step's visible effect is
checked in its output, then again independently from the kept folder: the
kept store is mounted here, the transcoded view is compared with torch.load
of the demo's own checkpoint (weights_only), and the malicious pickle's
marker file must not exist. Nothing here loads the malicious pickle.
"""
import errno
import json
import os
import pathlib
import re
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, modelfs_bin

sys.path.insert(0, str(ROOT / "tests" / "mount"))
from test_mount import Mount, is_mounted  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts FUSE filesystems (root)")

STEP = re.compile(r"^\[(\d+)\] (.*)$", re.M)


def run_demo(work, extra_env=None):
    """Runs tools/demo --no-bootstrap keeping @work; returns (output, {title: text}, seconds)."""
    env = dict(os.environ, MODELFS_BIN=modelfs_bin(), MODELFS_DEMO_KEEP=str(work))
    env.update(extra_env or {})
    t0 = time.monotonic()
    p = subprocess.run([str(ROOT / "tools" / "demo"), "--no-bootstrap"], capture_output=True,
                       text=True, env=env, timeout=600)
    took = time.monotonic() - t0
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"demo failed ({p.returncode}):\n{out}"
    assert "\033[" not in p.stdout, "escape sequences on a pipe"
    heads = list(STEP.finditer(p.stdout))
    assert [int(m.group(1)) for m in heads] == list(range(1, len(heads) + 1))
    steps = {}
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(p.stdout)
        steps[m.group(2)] = p.stdout[m.end():end]
    return out, steps, took


def step(steps, prefix):
    found = [text for title, text in steps.items() if title.startswith(prefix)]
    assert len(found) == 1, f"no single step '{prefix}...' in {list(steps)}"
    return found[0]


def parse_st(data: bytes):
    """{name: array} of a safetensors file (F32 only, as the demo writes)."""
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, h in header.items():
        assert h["dtype"] == "F32"
        a, b = h["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + a:8 + n + b], dtype="<f4").reshape(h["shape"])
    return out


def test_demo_tells_the_story(tmp_path):
    torch = pytest.importorskip("torch")
    work = tmp_path / "work"
    out, steps, took = run_demo(work)
    print(f"the demo took {took:.1f} s")  # reported, not asserted: no timing assertions

    # seal, verify, and the tampered copy
    assert "sealed " in step(steps, "create a publisher key and seal")
    v = step(steps, "verify it")
    assert "verified: 4 files" in v and "(exit status 1: the tampered copy fails" in v

    # the listing: the transcoded view, not the checkpoint nor the malicious pickle
    listing = step(steps, "list the model")
    assert "model.safetensors" in listing and "config.json" in listing
    assert "pytorch_model.bin" not in listing and "optimizer.pkl" not in listing

    # why: the mount's status file
    why = step(steps, "ask the mount why")
    lines = dict(line.split(": ", 1) for line in why.splitlines() if line.endswith("}"))
    evil = json.loads(lines["optimizer.pkl"])
    assert evil["verdict"] == "unsafe" and evil["hidden"] is True
    assert "os.system" in evil["reason"]
    assert json.loads(lines["pytorch_model.bin"]) == {"verdict": "safe",
                                                      "shown_as": "model.safetensors"}

    # the tensors through the mount
    tensors = step(steps, "read the tensors")
    assert "tensors equal: yes" in tensors and "DIFFERENT" not in tensors

    # provenance xattrs
    prov = step(steps, "provenance")
    assert 'user.modelfs.name="acme/tiny-llm"' in prov
    assert 'user.modelfs.revision="v1.0"' in prov and "user.modelfs.signer=" in prov
    assert 'user.modelfs.format="json"' in prov

    # the flipped byte
    flip = step(steps, "flip one byte")
    assert "Input/output error" in flip and "(exit status 1: the tampered block gives EIO" in flip

    # the policy
    pol = step(steps, "the policy at work")
    assert "vendor" not in pol.split("$ ")[1], "the refused model is listed"
    assert re.search(r"refused +vendor/unvetted-llm: policy refused: .*rules\[0\] "
                     r"\(path \"\*\"\)\.signers: signer key id [0-9a-f]{64} is not allowed", pol)
    assert "exposed  acme/tiny-llm" in pol

    # unmounted, and the malicious pickle never ran
    assert "marker file created: no" in step(steps, "the malicious pickle never ran")
    assert not is_mounted(work / "mnt")
    assert not (work / "PWNED").exists()

    # Independently, from the kept folder: the pickle is in the store, and
    # hidden; the view equals the torch tensors; the flipped file gives EIO.
    store, model = work / "store", work / "store" / "acme" / "tiny-llm"
    assert b"system" in (model / "optimizer.pkl").read_bytes()
    expected = torch.load(model / "pytorch_model.bin", weights_only=True)
    with Mount(store, tmp_path / "mnt", work / "publisher.pub") as m:
        mm = m.mnt / "acme" / "tiny-llm"
        assert sorted(os.listdir(mm)) == ["config.json", "model.safetensors", "tokenizer.json"]
        got = parse_st((mm / "model.safetensors").read_bytes())
        assert sorted(got) == sorted(expected)
        for name, t in expected.items():
            assert np.array_equal(got[name], t.numpy()), name
        with pytest.raises(OSError) as e:
            (mm / "tokenizer.json").read_bytes()
        assert e.value.errno == errno.EIO
        refused = {r["path"]: r["reason"] for r in m.status()["refused"]}
        # only the publisher trusted, no policy: refused for its signature
        assert "untrusted key" in refused["vendor/unvetted-llm"]
    assert not (work / "PWNED").exists()


def test_demo_without_torch(tmp_path):
    """Without torch the demo says so, ships a safetensors file, and goes on."""
    fake = tmp_path / "notorch"
    fake.mkdir()
    (fake / "torch.py").write_text("raise ImportError('torch hidden by the test')\n")
    work = tmp_path / "work"
    out, steps, _ = run_demo(work, {"PYTHONPATH": str(fake)})
    assert "torch is not installed (Debian: python3-torch)" in step(steps, "make a model folder")
    assert not (work / "store" / "acme" / "tiny-llm" / "pytorch_model.bin").exists()
    assert "model.safetensors" in step(steps, "list the model")
    assert "tensors equal: yes" in step(steps, "read the tensors")
    assert "Input/output error" in step(steps, "flip one byte")
    assert "marker file created: no" in out
    assert not (work / "PWNED").exists()
