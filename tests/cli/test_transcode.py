"""`modelfs transcode`: torch checkpoints to safetensors, checked against torch.

Every checkpoint here is made by this test with torch.save; only those files
are ever torch.load'ed (this pytest process is a throwaway process). Pickles
meant to be refused are only written, never loaded. Each output is read by
the strict safetensors parser below (independent of modelfs), and every
tensor must equal the source bit for bit.
"""
import collections
import io
import json
import os
import pickle
import struct
import sys
import zipfile

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from conftest import run_modelfs  # noqa: E402

torch = pytest.importorskip("torch")

# ----------------------------------------------------- strict safetensors

# name: (element size, alignment rank in the reference implementation)
ST_DTYPES = {
    "BOOL": (1, 0), "U8": (1, 1), "I8": (1, 2), "F8_E5M2": (1, 3), "F8_E4M3": (1, 4),
    "I16": (2, 5), "U16": (2, 6), "F16": (2, 7), "BF16": (2, 8), "I32": (4, 9),
    "U32": (4, 10), "F32": (4, 11), "F64": (8, 12), "I64": (8, 13), "U64": (8, 14),
}

TORCH_TO_ST = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


def _no_dupes(pairs):
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate keys in header: {keys}"
    return dict(pairs)


def parse_safetensors(path):
    """Strictly parses a safetensors file: returns (metadata, {name: (dtype, shape, bytes)})."""
    data = open(path, "rb").read()
    assert len(data) >= 8, "shorter than the length prefix"
    n = struct.unpack("<Q", data[:8])[0]
    assert n % 8 == 0, f"header length {n} is not a multiple of 8"
    assert 8 + n <= len(data), "header runs past the end"
    text = data[8:8 + n].decode("utf-8")
    body = text.rstrip(" ")
    assert len(text) - len(body) < 8, "more padding than needed"
    assert body.startswith("{") and body.endswith("}")
    obj = json.loads(body, object_pairs_hook=_no_dupes)
    # compact JSON exactly as the reference writes it (serde_json, no spaces)
    assert json.dumps(obj, separators=(",", ":"), ensure_ascii=False) == body
    keys = list(obj)
    assert keys[0] == "__metadata__", "__metadata__ must come first"
    meta = obj.pop("__metadata__")
    assert isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())
    assert meta.get("format") == "pt"
    start = 8 + n
    at = 0
    tensors = {}
    prev = None
    for name, info in obj.items():
        assert set(info) == {"dtype", "shape", "data_offsets"}, info
        dt, shape, (b, e) = info["dtype"], info["shape"], info["data_offsets"]
        assert dt in ST_DTYPES, dt
        assert all(isinstance(d, int) and d >= 0 for d in shape)
        assert isinstance(b, int) and isinstance(e, int)
        assert b == at, f"{name}: offsets not contiguous ({b} != {at})"
        size = ST_DTYPES[dt][0] * int(np.prod(shape, dtype=np.int64))
        assert e - b == size, f"{name}: {e - b} bytes for {dt}{shape}"
        # reference order: descending alignment, then name
        key = (-ST_DTYPES[dt][1], name.encode())
        assert prev is None or prev < key, f"{name} out of order"
        prev = key
        assert (start + b) % ST_DTYPES[dt][0] == 0, f"{name}: misaligned"
        tensors[name] = (dt, shape, data[start + b:start + e])
        at = e
    assert start + at == len(data), "bytes after the last tensor"
    return meta, tensors


def tensor_bytes(t):
    flat = t.detach().contiguous().reshape(-1)
    if flat.dtype == torch.bfloat16:
        flat = flat.view(torch.int16)
    return flat.numpy().tobytes()


def check_equal(src_path, out_path):
    """Every tensor of torch.load(src) equals the output, bit for bit."""
    meta, out = parse_safetensors(out_path)
    sd = torch.load(src_path, map_location="cpu")
    if "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    for name, t in sd.items():
        if name in out:
            dt, shape, raw = out[name]
            assert dt == TORCH_TO_ST[t.dtype], name
            assert shape == list(t.shape), name
            assert raw == tensor_bytes(t), f"{name}: bytes differ"
        else:
            kept = meta.get(name)
            assert kept in out, f"{name} missing and not recorded as shared"
            # the reference drops names whose memory a kept tensor holds
            if t.shape == sd[kept].shape and t.stride() == sd[kept].stride():
                assert tensor_bytes(t) == out[kept][2], name
    assert set(out) <= set(sd)
    return meta, out


def transcode(src, out, check=0):
    return run_modelfs("transcode", src, out, check=check)


def roundtrip(tmp_path, sd, name="ckpt", legacy=False):
    src = tmp_path / f"{name}.pt"
    out = tmp_path / f"{name}.safetensors"
    torch.save(sd, src, _use_new_zipfile_serialization=not legacy)
    transcode(src, out)
    return check_equal(src, out)


# ----------------------------------------------------------- the cases

ALL_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64,
              torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool]
SHAPES = [(), (0,), (1,), (7,), (3, 5), (2, 0, 3), (1, 1, 1), (2, 3, 5, 7)]


def make_tensor(dtype, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=g, dtype=torch.float64) * 100).to(dtype)
    info = torch.iinfo(dtype)
    return torch.randint(max(info.min, -2**31), min(info.max, 2**31 - 1), shape,
                         generator=g, dtype=torch.int64).to(dtype)


def dtype_dict():
    sd = collections.OrderedDict()
    for i, dt in enumerate(ALL_DTYPES):
        for j, shape in enumerate(SHAPES):
            sd[f"{str(dt).split('.')[1]}.s{j}"] = make_tensor(dt, shape, seed=i * 31 + j)
    return sd


def view_dict():
    base = torch.arange(4 * 6 * 5, dtype=torch.float32).reshape(4, 6, 5)
    sd = collections.OrderedDict()
    sd["transposed"] = torch.randn(7, 3).t()
    sd["permuted"] = base.clone().permute(2, 0, 1)
    sd["sliced"] = torch.arange(100, dtype=torch.int64).reshape(10, 10)[2:7:2, 1:9:3]
    sd["narrow_offset"] = torch.arange(50, dtype=torch.int16)[13:29]
    sd["expanded"] = torch.tensor([[1.5], [2.5], [3.5]], dtype=torch.float16).expand(3, 4)
    sd["bf16_t"] = make_tensor(torch.bfloat16, (5, 3), 9).t()
    sd["bool_step"] = make_tensor(torch.bool, (20,), 3)[::3]
    return sd


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_every_dtype_and_shape(tmp_path, legacy):
    meta, out = roundtrip(tmp_path, dtype_dict(), legacy=legacy)
    assert len(out) == len(ALL_DTYPES) * len(SHAPES)
    assert meta == {"format": "pt"}


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_non_contiguous_views(tmp_path, legacy):
    sd = view_dict()
    assert not any(t.is_contiguous() for k, t in sd.items() if k != "narrow_offset")
    meta, out = roundtrip(tmp_path, sd, legacy=legacy)
    assert set(out) == set(sd)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_shared_storage_tied_weights(tmp_path, legacy):
    w = torch.randn(11, 4)
    sd = collections.OrderedDict()
    sd["lm_head.weight"] = w
    sd["embed.weight"] = w
    sd["decoder.embed.weight"] = w
    halves = torch.arange(20, dtype=torch.float32)
    sd["first_half"] = halves[:10]   # same storage, disjoint: both kept
    sd["second_half"] = halves[10:]
    meta, out = roundtrip(tmp_path, sd, legacy=legacy)
    # as the reference: sorted first complete name kept, the others recorded
    assert "decoder.embed.weight" in out
    assert meta == {"format": "pt", "embed.weight": "decoder.embed.weight",
                    "lm_head.weight": "decoder.embed.weight"}
    assert "first_half" in out and "second_half" in out


def test_shared_without_complete_view_refused(tmp_path):
    base = torch.arange(30, dtype=torch.float32)
    sd = {"a": base[0:20], "b": base[10:30]}
    src = tmp_path / "partial.pt"
    torch.save(sd, src)
    p = transcode(src, tmp_path / "partial.safetensors", check=2)
    assert "share storage" in p.stderr
    assert not (tmp_path / "partial.safetensors").exists()


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_parameters_and_module(tmp_path, legacy):
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=24,
                                             batch_first=True)
    sd = layer.state_dict()
    sd["extra.param"] = torch.nn.Parameter(torch.randn(3, 3))
    sd["extra.frozen"] = torch.nn.Parameter(torch.randn(2), requires_grad=False)
    meta, out = roundtrip(tmp_path, sd, legacy=legacy)
    assert set(out) == set(sd)
    # the module loads back from the safetensors bytes alone
    rebuilt = {}
    for name, (dt, shape, raw) in out.items():
        rebuilt[name] = torch.from_numpy(np.frombuffer(raw, dtype=np.float32).copy()).reshape(
            shape)
    layer2 = torch.nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=24,
                                              batch_first=True)
    layer2.load_state_dict({k: v for k, v in rebuilt.items() if not k.startswith("extra.")})


def test_unusual_names(tmp_path):
    names = ['quote"d', "back\\slash", "new\nline", "tab\tctl\x01\x1f", "ünïcødé.权重",
             "emoji.\U0001f600", "", " lead space", "format"]
    sd = collections.OrderedDict((n, torch.full((2,), float(i))) for i, n in enumerate(names))
    meta, out = roundtrip(tmp_path, sd)
    assert set(out) == set(names)


def test_whole_module_state_dict_bn(tmp_path):
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                            torch.nn.Linear(5, 2))
    meta, out = roundtrip(tmp_path, m.state_dict())
    assert out["1.num_batches_tracked"][0] == "I64"


def test_wrapped_state_dict(tmp_path):
    sd = {"w": torch.randn(3), "b": torch.zeros(2, dtype=torch.int32)}
    meta, out = roundtrip(tmp_path, {"state_dict": sd, "epoch": 7, "lr": 0.1})
    assert set(out) == {"w", "b"}


def test_zip_and_legacy_give_identical_bytes(tmp_path):
    sd = dtype_dict()
    sd.update(view_dict())
    outs = []
    for legacy in (False, True):
        src = tmp_path / f"s{int(legacy)}.pt"
        out = tmp_path / f"s{int(legacy)}.safetensors"
        torch.save(sd, src, _use_new_zipfile_serialization=not legacy)
        transcode(src, out)
        outs.append(out.read_bytes())
    # deterministic: running again gives the same bytes
    transcode(tmp_path / "s0.pt", tmp_path / "again.safetensors")
    assert outs[0] == outs[1] == (tmp_path / "again.safetensors").read_bytes()


def test_no_sync_gives_the_same_bytes(tmp_path):
    sd = dtype_dict()
    src = tmp_path / "s.pt"
    torch.save(sd, src)
    transcode(src, tmp_path / "durable.safetensors")
    run_modelfs("transcode", "--no-sync", src, tmp_path / "scratch.safetensors", check=0)
    assert ((tmp_path / "durable.safetensors").read_bytes()
            == (tmp_path / "scratch.safetensors").read_bytes())
    check_equal(src, tmp_path / "scratch.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "durable.safetensors", "s.pt", "scratch.safetensors"]


def test_output_into_folder_renames(tmp_path):
    src = tmp_path / "pytorch_model.bin"
    torch.save({"x": torch.ones(2)}, src)
    outdir = tmp_path / "out"
    outdir.mkdir()
    transcode(src, outdir)
    parse_safetensors(outdir / "model.safetensors")


def test_big_endian_byteorder(tmp_path):
    sd = collections.OrderedDict()
    sd["f64"] = make_tensor(torch.float64, (3, 2), 1)
    sd["f32"] = make_tensor(torch.float32, (5,), 2)
    sd["bf16"] = make_tensor(torch.bfloat16, (4,), 3)
    sd["i16_t"] = make_tensor(torch.int16, (3, 4), 4).t()
    sd["u8"] = make_tensor(torch.uint8, (6,), 5)
    sd["b"] = make_tensor(torch.bool, (6,), 6)
    src = tmp_path / "le.pt"
    torch.save(sd, src)
    # element size per storage key, known from what we saved: keys are "0", "1", ... in order
    zin = zipfile.ZipFile(src)
    prefix = zin.namelist()[0].split("/")[0]
    elsz = {str(i): t.element_size() for i, t in enumerate(sd.values())}
    be = tmp_path / "be.pt"
    with zipfile.ZipFile(be, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.startswith(f"{prefix}/data/"):
                es = elsz[info.filename.split("/")[-1]]
                data = np.frombuffer(data, dtype=np.uint8).reshape(-1, es)[:, ::-1].tobytes()
            zout.writestr(info.filename, data)
        zout.writestr(f"{prefix}/byteorder", b"big")
    out_le, out_be = tmp_path / "le.safetensors", tmp_path / "be.safetensors"
    transcode(src, out_le)
    transcode(be, out_be)
    check_equal(src, out_be)
    assert out_le.read_bytes() == out_be.read_bytes()


def test_sharded_checkpoint(tmp_path):
    indir, outdir = tmp_path / "in", tmp_path / "out"
    indir.mkdir()
    shards = [{"a.weight": torch.randn(4, 4), "a.bias": torch.randn(4)},
              {"b.weight": torch.randn(2, 4).to(torch.bfloat16), "b.idx": torch.arange(3)}]
    weight_map = {}
    for k, sd in enumerate(shards, 1):
        fn = f"pytorch_model-{k:05d}-of-{len(shards):05d}.bin"
        torch.save(sd, indir / fn)
        weight_map.update({name: fn for name in sd})
    index = {"metadata": {"total_size": 12345}, "weight_map": weight_map}
    (indir / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    run_modelfs("transcode", indir, outdir, check=0)
    new = json.loads((outdir / "model.safetensors.index.json").read_text())
    assert new["weight_map"] == {
        k: v.replace("pytorch_model", "model").replace(".bin", ".safetensors")
        for k, v in weight_map.items()}
    total = 0
    for k in range(1, len(shards) + 1):
        fn = f"pytorch_model-{k:05d}-of-{len(shards):05d}.bin"
        out = outdir / f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        _meta, tensors = check_equal(indir / fn, out)
        total += sum(len(raw) for _dt, _s, raw in tensors.values())
    assert new["metadata"]["total_size"] == total
    # the index file itself also works as input
    outdir2 = tmp_path / "out2"
    run_modelfs("transcode", indir / "pytorch_model.bin.index.json", outdir2, check=0)
    assert sorted(os.listdir(outdir2)) == sorted(os.listdir(outdir))


def test_sharded_failure_leaves_nothing(tmp_path):
    indir, outdir = tmp_path / "in", tmp_path / "out"
    indir.mkdir()
    torch.save({"a": torch.ones(2)}, indir / "pytorch_model-00001-of-00002.bin")
    torch.save({"c": torch.ones(2, dtype=torch.complex64)},
               indir / "pytorch_model-00002-of-00002.bin")
    index = {"metadata": {}, "weight_map": {"a": "pytorch_model-00001-of-00002.bin",
                                            "c": "pytorch_model-00002-of-00002.bin"}}
    (indir / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    run_modelfs("transcode", indir, outdir, check=2)
    assert os.listdir(outdir) == []


def test_index_with_path_shard_refused(tmp_path):
    idx = tmp_path / "pytorch_model.bin.index.json"
    idx.write_text(json.dumps({"weight_map": {"a": "../evil.bin"}}))
    run_modelfs("transcode", idx, tmp_path / "out", check=2)


# ------------------------------------------------------------ refusals

class Evil:
    """Pickles as a call of os.system (never unpickled here)."""

    def __reduce__(self):
        import os as _os
        return (_os.system, ("echo pwned",))


def assert_nothing_written(folder, before):
    assert sorted(os.listdir(folder)) == before


def test_refuses_unsafe_pickle(tmp_path):
    src = tmp_path / "evil.pt"
    src.write_bytes(pickle.dumps({"w": Evil()}, protocol=2))
    before = sorted(os.listdir(tmp_path))
    p = transcode(src, tmp_path / "evil.safetensors", check=1)
    assert "unsafe" in p.stderr and "system" in p.stderr
    assert all(line.startswith(f"modelfs: {src}") for line in p.stderr.splitlines())
    assert_nothing_written(tmp_path, before)


def test_refuses_unsafe_torch_zip(tmp_path):
    """A torch zip whose data.pkl calls os.system: refused by the scan."""
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(2)}, good)
    zin = zipfile.ZipFile(good)
    prefix = zin.namelist()[0].split("/")[0]
    bad = tmp_path / "bad.pt"
    with zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("data.pkl"):
                data = pickle.dumps({"w": Evil()}, protocol=2)
            zout.writestr(info.filename, data)
    before = sorted(os.listdir(tmp_path))
    transcode(bad, tmp_path / "bad.safetensors", check=1)
    assert_nothing_written(tmp_path, before)


def test_refuses_complex(tmp_path):
    src = tmp_path / "complex.pt"
    torch.save({"ok": torch.ones(2), "z": torch.ones(3, dtype=torch.complex64)}, src)
    before = sorted(os.listdir(tmp_path))
    p = transcode(src, tmp_path / "complex.safetensors", check=2)
    assert "complex64" in p.stderr and "'z'" in p.stderr
    assert_nothing_written(tmp_path, before)


def test_refuses_not_a_state_dict(tmp_path):
    src = tmp_path / "list.pt"
    torch.save([torch.ones(2), torch.zeros(3)], src)
    before = sorted(os.listdir(tmp_path))
    p = transcode(src, tmp_path / "list.safetensors", check=2)
    assert "not a state_dict" in p.stderr
    assert_nothing_written(tmp_path, before)


def test_refuses_non_tensor_values(tmp_path):
    src = tmp_path / "mixed.pt"
    torch.save({"w": torch.ones(2), "step": 3}, src)
    p = transcode(src, tmp_path / "mixed.safetensors", check=2)
    assert "'step'" in p.stderr and "not a tensor" in p.stderr


def test_refuses_not_a_pickle(tmp_path):
    src = tmp_path / "random.bin"
    src.write_bytes(os.urandom(4096))
    before = sorted(os.listdir(tmp_path))
    transcode(src, tmp_path / "random.safetensors", check=2)
    assert_nothing_written(tmp_path, before)


def test_refuses_truncated_checkpoint(tmp_path):
    src = tmp_path / "full.pt"
    torch.save({"w": torch.randn(1000)}, src, _use_new_zipfile_serialization=False)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(src.read_bytes()[:-100])
    before = sorted(os.listdir(tmp_path))
    p = transcode(cut, tmp_path / "cut.safetensors", check=None)
    assert p.returncode in (1, 2)
    assert_nothing_written(tmp_path, before)


def test_existing_output_untouched_on_failure(tmp_path):
    out = tmp_path / "keep.safetensors"
    out.write_bytes(b"previous")
    src = tmp_path / "list.pt"
    torch.save([1, 2], src)
    transcode(src, out, check=2)
    assert out.read_bytes() == b"previous"


def test_usage(tmp_path):
    assert run_modelfs("transcode").returncode == 2
    assert run_modelfs("transcode", tmp_path / "missing.pt", tmp_path / "o").returncode == 2
