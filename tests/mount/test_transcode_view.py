"""The mount's default pickle view, --pickle=transcode (real FUSE mounts, as root).

Checkpoints are made here with torch.save (zip and legacy, sharded with an
index), sealed with `modelfs seal` and mounted with default options. The
safetensors files read through the mount are parsed by the strict numpy
parser below (independent of modelfs), and every tensor must equal
torch.load of the source bit for bit. Only files this test made are ever
torch.load'ed, in this throwaway pytest process; the unsafe pickle is only
written, never loaded.
"""
import errno
import hashlib
import json
import os
import pickle
import struct
import subprocess
import threading

import numpy as np
import pytest

from conftest import run_modelfs
from test_mount import Mount, drop_caches, flip, keys, seal, write  # noqa: F401 (keys: fixture)

torch = pytest.importorskip("torch")

ST = {"BOOL": (1, np.bool_), "U8": (1, np.uint8), "I8": (1, np.int8), "I16": (2, "<i2"),
      "F16": (2, "<f2"), "BF16": (2, "<u2"), "I32": (4, "<i4"), "F32": (4, "<f4"),
      "F64": (8, "<f8"), "I64": (8, "<i8")}
TORCH_ST = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16",
            torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32", torch.int16: "I16",
            torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}


def parse_st(data: bytes):
    """Strict safetensors parser: (metadata, {name: (dtype, array)}); asserts on violations."""
    assert len(data) >= 8
    n = struct.unpack("<Q", data[:8])[0]
    assert n % 8 == 0 and 8 + n <= len(data)
    text = data[8:8 + n].decode("utf-8")
    assert len(text) - len(text.rstrip(" ")) < 8

    def no_dupes(pairs):
        assert len({k for k, _ in pairs}) == len(pairs)
        return dict(pairs)

    hdr = json.loads(text, object_pairs_hook=no_dupes)
    meta = hdr.pop("__metadata__")
    assert meta.get("format") == "pt"
    at, out = 0, {}
    for name, info in sorted(hdr.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        dt, shape, (b, e) = info["dtype"], info["shape"], info["data_offsets"]
        size, npdt = ST[dt]
        assert b == at and e - b == size * int(np.prod(shape, dtype=np.int64)), name
        raw = data[8 + n + b:8 + n + e]
        out[name] = (dt, np.frombuffer(raw, dtype=npdt).reshape(shape))
        at = e
    assert 8 + n + at == len(data), "bytes after the last tensor"
    return meta, out


def same(t, arr) -> bool:
    """torch tensor t equals numpy array arr bit for bit (bf16 compared as uint16)."""
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    ref = t.numpy()
    return list(ref.shape) == list(arr.shape) and ref.tobytes() == arr.tobytes()


def check_view(view_path, *sources):
    """Every tensor of the sources is in the view, equal; the view holds nothing else."""
    meta, out = parse_st(pathlib_read(view_path))
    names = set()
    for src in sources:
        sd = torch.load(src, map_location="cpu")
        for name, t in sd.items():
            names.add(name)
            if name in out:
                dt, arr = out[name]
                assert dt == TORCH_ST[t.dtype], name
                assert same(t, arr), f"{name} differs"
            else:
                assert meta.get(name) in out, f"{name} missing and not recorded as shared"
    assert set(out) <= names
    return out


def pathlib_read(p) -> bytes:
    with open(p, "rb") as f:
        return f.read()


def torch_save(path, code, legacy=False):
    """Runs torch.save in a subprocess: `sd` built by @code is saved to @path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    prog = ("import sys, torch\ntorch.manual_seed(0)\n" + code +
            f"\ntorch.save(sd, sys.argv[1], _use_new_zipfile_serialization={not legacy})\n")
    subprocess.run(["/usr/bin/python3", "-c", prog, str(path)], check=True, timeout=300)


DTYPES_SD = """
sd = {}
for i, dt in enumerate([torch.float64, torch.float32, torch.float16, torch.bfloat16,
                        torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8,
                        torch.bool]):
    sd['t%d' % i] = (torch.randn(3, 5) * 50).to(dt)
base = torch.randn(8, 6)
sd['view_t'] = base.t()
sd['view_slice'] = base[2:5, 1::2]
sd['tied_a'] = base
sd['tied_b'] = base
sd['scalar'] = torch.tensor(3.5)
sd['empty'] = torch.zeros(0, 4)
sd['param'] = torch.nn.Parameter(torch.randn(7))
"""


class Unsafe:
    """Pickles to a call of os.system; never unpickled anywhere."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.fixture(scope="module")
def store(tmp_path_factory, keys):  # noqa: F811
    root = tmp_path_factory.mktemp("txstore") / "store"
    torch_save(root / "zipm" / "pytorch_model.bin", DTYPES_SD)
    write(root / "zipm" / "config.json", b'{"model_type": "test"}\n')
    torch_save(root / "legacy" / "pytorch_model.bin", DTYPES_SD, legacy=True)
    sh = root / "sharded"
    torch_save(sh / "pytorch_model-00001-of-00002.bin",
               "sd = {'a.weight': torch.randn(16, 16), 'a.bias': torch.randn(16)}")
    torch_save(sh / "pytorch_model-00002-of-00002.bin",
               "sd = {'b.weight': torch.randn(4, 16).half()}")
    index = {"metadata": {"total_size": 999},  # the view recomputes it
             "weight_map": {"a.weight": "pytorch_model-00001-of-00002.bin",
                            "a.bias": "pytorch_model-00001-of-00002.bin",
                            "b.weight": "pytorch_model-00002-of-00002.bin"}}
    write(sh / "pytorch_model.bin.index.json", json.dumps(index, indent=2).encode())
    write(root / "evil" / "pytorch_model.bin", pickle.dumps({"w": Unsafe()}, protocol=2))
    write(root / "evil" / "config.json", b"{}\n")
    torch_save(root / "collide" / "pytorch_model.bin", "sd = {'w': torch.ones(3)}")
    write(root / "collide" / "model.safetensors", b"real safetensors, signed as is")
    for model in ["zipm", "legacy", "sharded", "evil", "collide"]:
        seal(root / model, keys["trusted"])
    return root


def mount(tmp_path, keys, store, *extra, cache=None):  # noqa: F811
    return Mount(store, tmp_path / "mnt", f"{keys['trusted']}.pub", *extra, cache=cache)


def test_listing_and_content(tmp_path, keys, store):  # noqa: F811
    with mount(tmp_path, keys, store) as m:
        assert sorted(os.listdir(m.mnt / "zipm")) == ["config.json", "model.safetensors"]
        assert sorted(os.listdir(m.mnt / "legacy")) == ["model.safetensors"]
        assert sorted(os.listdir(m.mnt / "sharded")) == [
            "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
            "model.safetensors.index.json"]
        assert not (m.mnt / "zipm" / "pytorch_model.bin").exists()
        with pytest.raises(FileNotFoundError):
            open(m.mnt / "zipm" / "pytorch_model.bin", "rb")
        # stat gives the exact size before the first open
        size = os.stat(m.mnt / "zipm" / "model.safetensors").st_size
        data = pathlib_read(m.mnt / "zipm" / "model.safetensors")
        assert size == len(data)
        for model in ["zipm", "legacy"]:
            out = check_view(m.mnt / model / "model.safetensors",
                             store / model / "pytorch_model.bin")
            assert "scalar" in out and "empty" in out and "t3" in out
        check_view(m.mnt / "sharded" / "model-00001-of-00002.safetensors",
                   store / "sharded" / "pytorch_model-00001-of-00002.bin")
        check_view(m.mnt / "sharded" / "model-00002-of-00002.safetensors",
                   store / "sharded" / "pytorch_model-00002-of-00002.bin")
        idx = json.loads(pathlib_read(m.mnt / "sharded" / "model.safetensors.index.json"))
        assert idx["weight_map"] == {"a.weight": "model-00001-of-00002.safetensors",
                                     "a.bias": "model-00001-of-00002.safetensors",
                                     "b.weight": "model-00002-of-00002.safetensors"}
        assert idx["metadata"]["total_size"] == 16 * 16 * 4 + 16 * 4 + 4 * 16 * 2
        st = m.status()
        assert st["pickle_policy"] == "transcode"
        assert st["counters"]["transcodes"] == 4


def test_xattrs(tmp_path, keys, store):  # noqa: F811
    with mount(tmp_path, keys, store) as m:
        p = m.mnt / "zipm" / "model.safetensors"
        assert os.getxattr(p, "user.modelfs.format") == b"safetensors"
        assert os.getxattr(p, "user.modelfs.transcoded_from") == b"pytorch_model.bin"
        assert os.getxattr(p, "user.modelfs.verdict") == b"safe"
        digest = run_modelfs("digest", store / "zipm" / "pytorch_model.bin", check=0).stdout
        src = os.getxattr(p, "user.modelfs.source_digest").decode()
        assert src.startswith("sha256:") and len(src) == 7 + 64
        assert src[7:] in digest
        assert "user.modelfs.sha256" not in os.listxattr(p)  # unknown before the first open
        data = pathlib_read(p)
        assert os.getxattr(p, "user.modelfs.sha256").decode() == hashlib.sha256(data).hexdigest()
        assert os.getxattr(p, "user.modelfs.size") == str(len(data)).encode()
        assert "user.modelfs.digest" not in os.listxattr(p)
        idx = m.mnt / "sharded" / "model.safetensors.index.json"
        assert os.getxattr(idx, "user.modelfs.format") == b"json"
        assert os.getxattr(idx, "user.modelfs.transcoded_from") == \
            b"pytorch_model.bin.index.json"


def test_unsafe_hidden_and_listed(tmp_path, keys, store):  # noqa: F811
    with mount(tmp_path, keys, store) as m:
        assert os.listdir(m.mnt / "evil") == ["config.json"]
        for name in ["model.safetensors", "pytorch_model.bin"]:
            assert not (m.mnt / "evil" / name).exists()
        models = {x["path"]: x for x in m.status()["models"]}
        (entry,) = models["evil"]["pickles"]
        assert entry["file"] == "pytorch_model.bin"
        assert entry["verdict"] == "unsafe" and entry["hidden"]
        assert "os" in entry["reason"] or "system" in entry["reason"]
        assert "transcode-refused" in m.log()


def test_name_collision_hides_pickle(tmp_path, keys, store):  # noqa: F811
    with mount(tmp_path, keys, store) as m:
        assert os.listdir(m.mnt / "collide") == ["model.safetensors"]
        assert pathlib_read(m.mnt / "collide" / "model.safetensors") == \
            b"real safetensors, signed as is"
        assert not (m.mnt / "collide" / "pytorch_model.bin").exists()
        models = {x["path"]: x for x in m.status()["models"]}
        (entry,) = models["collide"]["pickles"]
        assert entry["hidden"] and "taken" in entry["reason"]


def test_cache_reuse_and_tamper(tmp_path, keys, store):  # noqa: F811
    cache = tmp_path / "cache"
    p = "zipm/model.safetensors"
    with mount(tmp_path, keys, store, cache=cache) as m:
        good = pathlib_read(m.mnt / p)
        assert m.status()["counters"]["transcodes"] == 1
    (out,) = list((cache / "transcoded").glob("*.safetensors"))
    assert out.read_bytes() == good
    record = json.loads(out.with_name(out.name + ".record").read_text().splitlines()[1])
    assert record["output"]["sha256"] == hashlib.sha256(good).hexdigest()  # see test_cache_trust
    with mount(tmp_path, keys, store, cache=cache) as m:
        assert pathlib_read(m.mnt / p) == good
        c = m.status()["counters"]
        assert (c["transcodes"], c["transcode_reuses"], c["transcode_rejected"]) == (0, 1, 0)
    os.chmod(out, 0o600)
    flip(out, len(good) - 3)  # a tensor byte, not the header
    with mount(tmp_path, keys, store, cache=cache) as m:
        assert pathlib_read(m.mnt / p) == good
        c = m.status()["counters"]
        assert (c["transcodes"], c["transcode_reuses"], c["transcode_rejected"]) == (1, 0, 1)
        assert "transcode-cache-rejected" in m.log()
    assert out.read_bytes() == good
    out.write_bytes(good[:-1] + b"\0")  # same size, record left alone
    with mount(tmp_path, keys, store, cache=cache) as m:
        assert pathlib_read(m.mnt / p) == good
        assert m.status()["counters"]["transcode_rejected"] == 1


def test_cache_changed_while_mounted(tmp_path, keys, store):  # noqa: F811
    """Reads are verified against the tree built with the SHA-256: a changed file gives EIO."""
    cache = tmp_path / "cache"
    with mount(tmp_path, keys, store, cache=cache) as m:
        p = m.mnt / "zipm" / "model.safetensors"
        good = pathlib_read(p)
        (out,) = list((cache / "transcoded").glob("*.safetensors"))
        os.chmod(out, 0o600)
        flip(out, len(good) - 3)
        drop_caches()
        with open(p, "rb") as f:  # one 64 KiB block: the whole file
            with pytest.raises(OSError) as e:
                f.read()
            assert e.value.errno == errno.EIO
        assert m.status()["counters"]["verify_failures"] >= 1
        assert "cached transcoded output changed" in m.log()


def test_tampered_source_never_transcoded(tmp_path, keys):  # noqa: F811
    """The source is read only through the verified path: damaged tensor bytes give EIO."""
    model = tmp_path / "store" / "big"
    torch_save(model / "pytorch_model.bin", "sd = {'w': torch.randn(256, 256)}")
    seal(model, keys["trusted"])
    src = model / "pytorch_model.bin"
    flip(src, os.path.getsize(src) // 2)  # tensor bytes: not the zip directory nor data.pkl
    with mount(tmp_path, keys, tmp_path / "store") as m:
        assert os.listdir(m.mnt / "big") == ["model.safetensors"]
        with pytest.raises(OSError) as e:
            pathlib_read(m.mnt / "big" / "model.safetensors")
        assert e.value.errno == errno.EIO
        assert "transcode-failed" in m.log() and "verify-failure" in m.log()
        assert m.status()["counters"]["transcodes"] == 0
        assert not list((tmp_path / "mnt.cache" / "transcoded").glob("*.safetensors"))


def test_concurrent_first_opens_transcode_once(tmp_path, keys, store):  # noqa: F811
    with mount(tmp_path, keys, store) as m:
        path = m.mnt / "legacy" / "model.safetensors"
        os.stat(path)
        results, errors = [], []

        def reader():
            try:
                results.append(pathlib_read(path))
            except OSError as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=reader) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and len(results) == 8 and len(set(results)) == 1
        assert m.status()["counters"]["transcodes"] == 1


def test_other_policies_unchanged(tmp_path, keys, store):  # noqa: F811
    with mount(tmp_path, keys, store, "--pickle=hide") as m:
        assert os.listdir(m.mnt / "zipm") == ["config.json"]
        assert os.listdir(m.mnt / "legacy") == []
        assert sorted(os.listdir(m.mnt / "sharded")) == ["pytorch_model.bin.index.json"]
        assert m.status()["pickle_policy"] == "hide"
    with mount(tmp_path, keys, store, "-o", "pickle=show") as m:
        assert sorted(os.listdir(m.mnt / "zipm")) == ["config.json", "pytorch_model.bin"]
        assert os.getxattr(m.mnt / "zipm" / "pytorch_model.bin",
                           "user.modelfs.format") == b"pickle"
    with mount(tmp_path, keys, store, "-o", "pickle=transcode") as m:
        assert sorted(os.listdir(m.mnt / "zipm")) == ["config.json", "model.safetensors"]
