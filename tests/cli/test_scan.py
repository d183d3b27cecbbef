"""`modelfs scan`: verdicts on the picklescan corpus and on files made here.

Nothing in this file unpickles anything: pickles are only written (dumping an
object whose __reduce__ names os.system does not call it).
"""
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
from conftest import run_modelfs, shared_dir  # noqa: E402

CORPUS = shared_dir() / "corpus" / "picklescan"


def _expected_rows():
    tsv = CORPUS / "EXPECTED.tsv"
    if not tsv.is_file():
        return []
    rows = []
    for line in tsv.read_text().splitlines()[1:]:
        if line.strip():
            f, exp, _note = line.split("\t", 2)
            rows.append((f, exp))
    return rows


def scan_json(*paths, check=None):
    p = run_modelfs("scan", "--format", "json", *paths, check=check)
    return p, json.loads(p.stdout)


def verdict_of(path):
    """The file-level verdict of one path."""
    _p, doc = scan_json(path)
    top = [r for r in doc["results"] if r["member"] is None and r["path"] == str(path)]
    assert len(top) == 1, doc
    return top[0]["verdict"], doc


# ---------------------------------------------------------------- corpus

@pytest.mark.parametrize("rel,expected", _expected_rows())
def test_corpus_expected(rel, expected):
    got, doc = verdict_of(CORPUS / rel)
    allowed = expected.split("|")
    assert got in allowed, f"{rel}: got {got}, expected {expected}\n{json.dumps(doc, indent=1)}"


def test_corpus_is_present():
    assert len(_expected_rows()) >= 100


def test_corpus_recursive_exit_status():
    p = run_modelfs("scan", "-r", "--format", "json", CORPUS)
    doc = json.loads(p.stdout)
    assert p.returncode == 1  # unsafe samples win over unscannable ones
    files = {r["path"] for r in doc["results"] if r["member"] is None}
    assert len(files) >= 108  # every file, not EXPECTED.tsv's siblings only
    assert doc["summary"]["unsafe"] > 90


# ------------------------------------------------------- benign, made here

class Evil:
    """Pickles as a call of os.system (never unpickled here)."""

    def __reduce__(self):
        import os as _os
        return (_os.system, ("echo pwned",))


def torch_or_skip():
    return pytest.importorskip("torch")


def test_torch_zip_state_dict_safe(tmp_path):
    torch = torch_or_skip()
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3),
                            torch.nn.Embedding(5, 2))
    f = tmp_path / "pytorch_model.bin"
    torch.save(m.state_dict(), f)
    got, doc = verdict_of(f)
    assert got == "safe", doc
    kinds = {r["kind"] for r in doc["results"]}
    assert "torch-zip" in kinds and "tensor-data" in kinds


def test_torch_legacy_state_dict_safe(tmp_path):
    torch = torch_or_skip()
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    f = tmp_path / "legacy.pt"
    torch.save(m.state_dict(), f, _use_new_zipfile_serialization=False)
    got, doc = verdict_of(f)
    assert got == "safe", doc
    assert doc["results"][0]["kind"] == "torch-legacy"


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "int64", "int8", "uint8",
                                   "bool", "float64"])
def test_torch_dtypes_views_params_safe(tmp_path, dtype):
    torch = torch_or_skip()
    t = torch.arange(12).to(getattr(torch, dtype)).view(3, 4)
    obj = {"w": t, "view": t.t(), "p": torch.nn.Parameter(torch.ones(2)),
           "scalar": torch.tensor(1.5), "empty": torch.zeros(0, 3), "dt": torch.float16,
           "size": torch.Size([2, 3]), "dev": torch.device("cpu")}
    for legacy in (False, True):
        f = tmp_path / f"m{int(legacy)}.pt"
        torch.save(obj, f, _use_new_zipfile_serialization=not legacy)
        got, doc = verdict_of(f)
        assert got == "safe", doc


def test_torch_checkpoint_with_payload_unsafe(tmp_path):
    torch = torch_or_skip()
    f = tmp_path / "ckpt.pt"
    torch.save({"w": torch.ones(2), "evil": Evil()}, f)
    got, doc = verdict_of(f)
    assert got == "unsafe"
    globs = [g["global"] for r in doc["results"] for g in r["globals"]]
    assert any(g.startswith("posix.system@") or g.startswith("os.system@") for g in globs)


def test_legacy_payload_after_magic_unsafe(tmp_path):
    torch = torch_or_skip()
    buf = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buf, _use_new_zipfile_serialization=False)
    data = buf.getvalue()
    # keep the magic number pickle, then put the payload where the protocol goes
    magic = pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2)
    assert data.startswith(magic)
    f = tmp_path / "legacy_evil.pt"
    f.write_bytes(magic + pickle.dumps(Evil(), protocol=2) + data[len(magic):])
    assert verdict_of(f)[0] == "unsafe"


@pytest.mark.parametrize("proto", range(0, 6))
def test_plain_pickles_safe(tmp_path, proto):
    f = tmp_path / f"plain{proto}.pkl"
    f.write_bytes(pickle.dumps({"a": [1, 2.5, "x", None, True], "b": ("y", {"c": -7}),
                                "big": 10 ** 30, "neg": -(2 ** 70)}, protocol=proto))
    assert verdict_of(f)[0] == "safe"
    # protocols 0-2 pickle bytes as a call of _codecs.encode: a benign helper
    # outside the allowlist (docs/scanner.md)
    f.write_bytes(pickle.dumps({"b": b"\x00\xff"}, protocol=proto))
    assert verdict_of(f)[0] == ("suspicious" if proto < 3 else "safe")


@pytest.mark.parametrize("proto", range(0, 6))
def test_malicious_pickles_unsafe(tmp_path, proto):
    f = tmp_path / f"evil{proto}.pkl"
    f.write_bytes(pickle.dumps([1, Evil()], protocol=proto))
    assert verdict_of(f)[0] == "unsafe"


def test_second_pickle_unsafe(tmp_path):
    f = tmp_path / "two.pkl"
    f.write_bytes(pickle.dumps([1, 2], protocol=4) + pickle.dumps(Evil(), protocol=4))
    got, doc = verdict_of(f)
    assert got == "unsafe"
    assert any("system" in g["name"] for g in doc["results"][0]["globals"])


def test_trailing_garbage_unsafe(tmp_path):
    f = tmp_path / "tail.pkl"
    f.write_bytes(pickle.dumps({"a": 1}, protocol=4) + b"\x00garbage")
    assert verdict_of(f)[0] == "unsafe"


def test_suspicious_set(tmp_path):
    f = tmp_path / "set.pkl"
    f.write_bytes(pickle.dumps({"s": {1, 2}}, protocol=2))  # protocol 2: builtins.set
    got, doc = verdict_of(f)
    assert got == "suspicious", doc
    p = run_modelfs("scan", f)
    assert p.returncode == 0


def test_numpy_numeric_safe(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(10, dtype=np.int32))
    np.savez(tmp_path / "b.npz", x=np.ones(3), y=np.zeros((2, 2)))
    np.savez_compressed(tmp_path / "c.npz", x=np.ones(300), y=np.arange(7))
    for name in ("a.npy", "b.npz", "c.npz"):
        got, doc = verdict_of(tmp_path / name)
        assert got == "safe", doc


def test_numpy_object_classified_by_pickle(tmp_path):
    np.save(tmp_path / "o.npy", np.array([1, "a", None], dtype=object), allow_pickle=True)
    got, doc = verdict_of(tmp_path / "o.npy")
    assert got in ("safe", "suspicious"), doc
    assert doc["results"][0]["kind"] == "npy-object"
    # the same header followed by a malicious pickle
    raw = (tmp_path / "o.npy").read_bytes()
    hlen = struct.unpack("<H", raw[8:10])[0]
    (tmp_path / "evil.npy").write_bytes(raw[:10 + hlen] + pickle.dumps(Evil(), protocol=3))
    assert verdict_of(tmp_path / "evil.npy")[0] == "unsafe"
    np.savez_compressed(tmp_path / "o.npz", a=np.array([{"k": 1}], dtype=object))
    assert verdict_of(tmp_path / "o.npz")[0] in ("safe", "suspicious")


def test_not_pickles(tmp_path):
    (tmp_path / "config.json").write_text('{"a": 1, "b": [1, 2]}')
    (tmp_path / "README.md").write_text("Name: a model\nLicense: MIT\n")
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "rand.bin").write_bytes(os.urandom(64) .replace(b"\x80", b"\x00"))
    hdr = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    hdr += b" " * (-len(hdr) % 8)
    (tmp_path / "m.safetensors").write_bytes(struct.pack("<Q", len(hdr)) + hdr + b"\0" * 8)
    p, doc = scan_json(*sorted(tmp_path.iterdir()))
    assert p.returncode == 0, doc
    assert {r["verdict"] for r in doc["results"]} == {"not-pickle"}


def test_safetensors_looking_like_proto_is_not_pickle(tmp_path):
    # header length 0x280 starts with the bytes of PROTO 2
    hdr = b'{"__metadata__":{"format":"pt"}}'
    hdr += b" " * (0x280 - len(hdr))
    f = tmp_path / "x.safetensors"
    f.write_bytes(struct.pack("<Q", len(hdr)) + hdr)
    assert f.read_bytes()[:2] == b"\x80\x02"
    assert verdict_of(f)[0] == "not-pickle"


# ------------------------------------------------------------------ zips

def _zip_bytes(members, compress=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compress) as z:
        for name, data in members:
            z.writestr(name, data)
    return bytearray(buf.getvalue())


def test_zip_deflated_malicious_member(tmp_path):
    f = tmp_path / "x.zip"
    f.write_bytes(_zip_bytes([("notes.txt", b"hello"), ("model.bin", pickle.dumps(Evil()))],
                             zipfile.ZIP_DEFLATED))
    got, doc = verdict_of(f)
    assert got == "unsafe"
    members = {r["member"]: r["verdict"] for r in doc["results"]}
    assert members["model.bin"] == "unsafe" and members["notes.txt"] == "not-pickle"


def test_zip_cd_local_mismatch(tmp_path):
    data = _zip_bytes([("data.pkl", pickle.dumps({"a": 1}, protocol=2))])
    i = data.index(b"data.pkl")  # the local header's copy comes first
    data[i:i + 8] = b"datb.pkl"
    f = tmp_path / "m.zip"
    f.write_bytes(bytes(data))
    got, doc = verdict_of(f)
    assert got == "unsafe"
    assert any("disagree" in r for x in doc["results"] for r in x["reasons"])


def test_zip_flag_bits_ignored(tmp_path):
    data = _zip_bytes([("archive/data.pkl", pickle.dumps(Evil(), protocol=2))])
    # set the encryption bit in the local header and the central directory
    data[6] |= 1
    cd = data.index(b"PK\x01\x02")
    data[cd + 8] |= 1
    f = tmp_path / "flags.zip"
    f.write_bytes(bytes(data))
    assert verdict_of(f)[0] == "unsafe"


def test_zip_unsupported_method_unscannable(tmp_path):
    f = tmp_path / "bz.zip"
    f.write_bytes(_zip_bytes([("a.pkl", pickle.dumps({"a": 1}))], zipfile.ZIP_BZIP2))
    got, _doc = verdict_of(f)
    assert got == "unscannable"
    assert run_modelfs("scan", f).returncode == 2


def test_zip_truncated_unsafe(tmp_path):
    data = _zip_bytes([("a.pkl", pickle.dumps({"a": 1}))])
    f = tmp_path / "t.zip"
    f.write_bytes(bytes(data[:len(data) // 2]))
    assert verdict_of(f)[0] == "unsafe"


def test_nested_zip(tmp_path):
    inner = _zip_bytes([("x.pkl", pickle.dumps(Evil()))])
    f = tmp_path / "outer.zip"
    f.write_bytes(_zip_bytes([("inner.zip", bytes(inner))], zipfile.ZIP_DEFLATED))
    got, doc = verdict_of(f)
    assert got == "unsafe"
    assert any(r["member"] == "inner.zip!x.pkl" for r in doc["results"])


def test_zip64(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        with z.open("archive/data.pkl", "w", force_zip64=True) as w:
            w.write(pickle.dumps(Evil(), protocol=2))
    f = tmp_path / "z64.zip"
    f.write_bytes(buf.getvalue())
    assert verdict_of(f)[0] == "unsafe"


def test_keras_lambda(tmp_path):
    cfg = {"class_name": "Functional", "config": {"layers": [
        {"class_name": "InputLayer", "config": {}},
        {"class_name": "Lambda", "config": {"function": "base64..."}}]}}
    f = tmp_path / "m.keras"
    f.write_bytes(_zip_bytes([("metadata.json", b"{}"), ("config.json", json.dumps(cfg)),
                              ("model.weights.h5", b"\x89HDF\r\n")]))
    got, doc = verdict_of(f)
    assert got == "unsafe"
    cfg["config"]["layers"].pop()
    f.write_bytes(_zip_bytes([("metadata.json", b"{}"), ("config.json", json.dumps(cfg))]))
    assert verdict_of(f)[0] == "not-pickle"


def test_gzip_pickle(tmp_path):
    import gzip
    f = tmp_path / "j.gz"
    f.write_bytes(gzip.compress(pickle.dumps(Evil())))
    assert verdict_of(f)[0] == "unsafe"


# ------------------------------------------------- outputs and exit codes

def test_sarif_structure(tmp_path):
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Evil()))
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps({"a": 1}))
    p = run_modelfs("scan", "--format", "sarif", "-r", tmp_path)
    assert p.returncode == 1
    doc = json.loads(p.stdout)
    assert doc["version"] == "2.1.0"
    assert doc["$schema"].startswith("https://")
    assert isinstance(doc["runs"], list) and len(doc["runs"]) == 1
    driver = doc["runs"][0]["tool"]["driver"]
    assert driver["name"]
    ids = {r["id"] for r in driver["rules"]}
    assert ids and all(isinstance(r.get("shortDescription", {}).get("text"), str)
                       for r in driver["rules"])
    results = doc["runs"][0]["results"]
    assert len(results) == 1
    for r in results:
        assert r["ruleId"] in ids
        assert r["level"] in ("none", "note", "warning", "error")
        assert isinstance(r["message"]["text"], str) and r["message"]["text"]
        uri = r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        assert uri.endswith("evil.pkl")


def test_text_output_and_exit_codes(tmp_path):
    ok = tmp_path / "ok.pkl"
    ok.write_bytes(pickle.dumps({"a": 1}))
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(Evil()))
    p = run_modelfs("scan", ok, check=0)
    assert "safe" in p.stdout
    p = run_modelfs("scan", ok, evil, check=1)
    assert "unsafe" in p.stdout and "system" in p.stdout
    run_modelfs("scan", tmp_path / "missing", check=2)
    run_modelfs("scan", tmp_path / "missing", evil, check=1)  # unsafe wins
    run_modelfs("scan", tmp_path, check=2)  # a directory without -r
    run_modelfs("scan", check=2)
    run_modelfs("scan", "--format", "yaml", ok, check=2)


def test_recursive_skips_symlinks(tmp_path):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "ok.pkl").write_bytes(pickle.dumps([1]))
    outside = tmp_path / "outside.pkl"
    outside.write_bytes(pickle.dumps(Evil()))
    (d / "link.pkl").symlink_to(outside)
    p, doc = scan_json("-r", d)
    assert p.returncode == 0, doc
    paths = {r["path"] for r in doc["results"]}
    assert paths == {str(d / "sub" / "ok.pkl")}
    # named directly, a symlink is refused, not followed
    p, doc = scan_json(d / "link.pkl")
    assert p.returncode == 2 and doc["errors"]


def test_tar_legacy_torch_layout(tmp_path):
    """torch.load tries tar first and unpickles its 'pickle' member."""
    import tarfile
    f = tmp_path / "old.tar"
    with tarfile.open(f, "w", format=tarfile.PAX_FORMAT) as t:
        for name, data in (("sys_info", pickle.dumps({"little_endian": True}, protocol=2)),
                           ("pickle", pickle.dumps(Evil(), protocol=2)),
                           ("a" * 150 + "/long.pkl", pickle.dumps([1]))):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    got, doc = verdict_of(f)
    assert got == "unsafe"
    members = {r["member"]: r["verdict"] for r in doc["results"] if r["member"]}
    assert members["pickle"] == "unsafe" and members["sys_info"] == "safe"
    assert members["a" * 150 + "/long.pkl"] == "safe"
    gz = tmp_path / "old.tar.gz"
    import gzip
    gz.write_bytes(gzip.compress(f.read_bytes()))
    assert verdict_of(gz)[0] == "unsafe"
    with tarfile.open(tmp_path / "ok.tar", "w") as t:
        t.add(__file__, arcname="test.py")
    assert verdict_of(tmp_path / "ok.tar")[0] == "not-pickle"


def test_zip_duplicate_names_and_shared_data(tmp_path):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = _zip_bytes([("a.pkl", pickle.dumps([1])), ("a.pkl", pickle.dumps([2]))])
    f = tmp_path / "dup.zip"
    f.write_bytes(bytes(data))
    got, doc = verdict_of(f)
    assert got == "unsafe"
    assert any("duplicate" in r for x in doc["results"] for r in x["reasons"])
    # two directory entries sharing one member's data
    data = _zip_bytes([("a.pkl", pickle.dumps([1]))])
    cd = data.index(b"PK\x01\x02")
    eocd = data.index(b"PK\x05\x06")
    entry = bytes(data[cd:eocd]).replace(b"a.pkl", b"b.pkl")
    out = bytearray(data[:eocd]) + entry + data[eocd:]
    e = len(data[:eocd]) + len(entry)
    struct.pack_into("<HHI", out, e + 8, 2, 2, 2 * (eocd - cd))
    f.write_bytes(bytes(out))
    got, doc = verdict_of(f)
    assert got == "unsafe"
    assert any("overlaps" in r or "disagree" in r for x in doc["results"] for r in x["reasons"])
