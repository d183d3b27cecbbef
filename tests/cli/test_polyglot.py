"""Polyglots and scanner false negatives (issue #11 §1, §2), through `modelfs scan`.

Each hostile shape is shown working first: the victim's loader (plain
pickle.load, or zipfile then pickle) runs `touch pwned` in a throwaway
process in the test's temp folder. Then the scanner must call the same
bytes unsafe, name the polyglot, and give the mount's answer "pickle".
Strict recognisers are checked both ways: real files of each format are
recognised (numpy's np.save, onnx's own writer where installed), and files
that only look the part are `unknown`.
"""
import json
import struct
import subprocess
import sys
import pathlib
import zipfile

import pytest

from conftest import run_modelfs

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
import polyglots as P  # noqa: E402


def scan_json(path):
    p = run_modelfs("scan", "--format", "json", path)
    assert p.returncode in (0, 1), p.stderr
    res = json.loads(p.stdout)["results"]
    top = [r for r in res if r["member"] is None]
    assert len(top) == 1
    return p.returncode, top[0], [r for r in res if r["member"] is not None]


@pytest.mark.parametrize("name", sorted(P.hostile_files()))
def test_hostile_shape_runs_plainly_and_is_caught(tmp_path, name):
    data, loader = P.hostile_files()[name]
    f = tmp_path / name
    f.write_bytes(data)
    # the attack, against the plain file
    assert P.attack(loader, f, tmp_path), f"{name}: the payload should run through {loader}"
    rc, top, members = scan_json(f)
    assert rc == 1
    assert top["verdict"] == "unsafe"
    assert top["format"] == "pickle"
    assert top["polyglot"] is True and top["kind"] == "polyglot"
    assert any(r.startswith("polyglot: ") for r in top["reasons"]), top["reasons"]
    bad = [g for it in [top, *members] for g in it["globals"] if g["name"] == "system"]
    assert bad, "the payload's global is reported"


def test_tar_member_name_pickle(tmp_path):
    f = tmp_path / "a.tar"
    f.write_bytes(P.tar_name_pickle())
    import tarfile
    with tarfile.open(f) as t:  # a real tar: tarfile lists the member
        assert t.getmembers()[0].name.startswith("cos\nsystem")
    assert P.attack("pickle", f, tmp_path)
    rc, top, _ = scan_json(f)
    assert (rc, top["verdict"], top["format"]) == (1, "unsafe", "pickle")
    assert any("a tar that pickle.load also runs from byte 0" in r for r in top["reasons"])


def test_zip_local_entry_missing_from_central_directory(tmp_path):
    blob = P.zip_hidden_local()
    f = tmp_path / "ckpt.pt"
    f.write_bytes(blob)
    # torch and zipfile read the central directory: they never see evil.pkl ...
    assert zipfile.ZipFile(f).namelist() == ["archive/data.pkl", "archive/version"]
    # ... a streaming unzip walks the local headers and extracts it
    extracted = P.stream_unzip(blob)
    assert "archive/evil.pkl" in extracted
    (tmp_path / "evil.pkl").write_bytes(extracted["archive/evil.pkl"])
    assert P.attack("pickle", tmp_path / "evil.pkl", tmp_path)
    rc, top, members = scan_json(f)
    assert rc == 1 and top["format"] == "pickle"
    hid = [m for m in members if m["member"] == "archive/evil.pkl"]
    assert hid and hid[0]["verdict"] == "unsafe"
    assert any("not in the central directory" in r for r in hid[0]["reasons"])


def test_benign_hidden_local_entry_is_suspicious(tmp_path):
    # the hidden entry holds plain text: still reported, by name
    blob = P.zip_hidden_local().replace(P.evil_p0(), b"x" * len(P.evil_p0()))
    f = tmp_path / "a.zip"
    f.write_bytes(blob)
    rc, top, members = scan_json(f)
    assert rc == 0 and top["verdict"] == "suspicious"  # suspicious exits 0 (docs/scanner.md)
    assert top["format"] == "pickle"  # the mount hides it all the same
    hid = [m for m in members if m["member"] == "archive/evil.pkl"][0]
    assert hid["verdict"] == "suspicious"


def test_zip_offsets_readers_disagree(tmp_path):
    # junk before a zip at the head: zipfile shifts offsets, torch's miniz does not
    z = P.torch_like_zip(P.benign_p2())
    f = tmp_path / "a.pt"
    f.write_bytes(z[:30] + b"\0" * 64 + z[30:])
    rc, top, _ = scan_json(f)
    assert top["verdict"] == "unsafe" and rc == 1


# ------------------------------------------------------------ strict formats

def test_valid_formats_are_named(tmp_path):
    import numpy as np
    cases = {
        "m.safetensors": (P.safetensors({"a": ("F32", [2, 2], b"\0" * 16),
                                         "b": ("BF16", [3], b"\1" * 6)},
                                        meta={"format": "pt"}), "safetensors"),
        "m.gguf": (P.gguf({"a": (0, [4], b"\0" * 16), "b": (24, [3], b"abc")}), "gguf"),
        "c.json": (b'{"a": [1, 2, {"b": null}]}\n', "json"),
        "r.txt": (b"hello world\n", "text"),
        "e.bin": (b"", "empty"),
    }
    for name, (data, fmt) in cases.items():
        (tmp_path / name).write_bytes(data)
    np.save(tmp_path / "x.npy", np.arange(12, dtype="<f4").reshape(3, 4))
    np.save(tmp_path / "s.npy", np.array(["ab", "cde"]))
    cases["x.npy"] = (None, "npy")
    cases["s.npy"] = (None, "npy")
    for name, (_, fmt) in cases.items():
        rc, top, _ = scan_json(tmp_path / name)
        assert (rc, top["format"], top["polyglot"]) == (0, fmt, False), (name, top)


def test_onnx_from_its_own_writer(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, producer_name="modelfs-test")
    f = tmp_path / "m.onnx"
    onnx.save(model, str(f))
    rc, top, _ = scan_json(f)
    assert (rc, top["format"]) == (0, "onnx")
    f.write_bytes(f.read_bytes() + b"\x01")  # a stray byte: not a ModelProto any more
    assert scan_json(f)[1]["format"] == "unknown"


def _st_raw(header: bytes, data: bytes) -> bytes:
    return struct.pack("<Q", len(header)) + header + data


@pytest.mark.parametrize("name,blob", [
    ("braces-only", _st_raw(b'{"a":{}}', b"")),
    ("not-json", _st_raw(b"{ this is not json }", b"\0" * 4)),
    ("gap", _st_raw(b'{"a":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}', b"abc")),
    ("short-data", _st_raw(b'{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}', b"abc")),
    ("extra-data", _st_raw(b'{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}', b"abc")),
    ("shape-mismatch", _st_raw(b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,2]}}', b"ab")),
    ("duplicate", _st_raw(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                          b'"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"ab")),
    ("trailing-garbage", _st_raw(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}x', b"a")),
    ("control-byte", _st_raw(b'{"a":{"dtype":"U8","shape":[1],\x01"data_offsets":[0,1]}}', b"a")),
    ("gguf-magic-only", b"GGUF\x03\x00\x00\x00"),
    ("gguf-truncated", P.gguf({"a": (0, [4], b"\0" * 16)})[:-1]),
    ("gguf-bad-type", P.gguf({"a": (0, [4], b"\0" * 16)}).replace(
        struct.pack("<IQ", 0, 0), struct.pack("<IQ", 4, 0), 1)),
    ("npy-short", P.npy(b"abcd")[:-1]),
])
def test_lookalikes_are_unknown(tmp_path, name, blob):
    f = tmp_path / "f.bin"
    f.write_bytes(blob)
    rc, top, _ = scan_json(f)
    assert top["format"] == "unknown", (name, top)
    # numpy files without objects are "safe" (no pickle): shown, as unknown
    assert top["verdict"] == ("safe" if name.startswith("npy") else "not-pickle"), (name, top)
    assert rc == 0 and not top["holds_pickle"], (name, top)


def test_proto_bytes_in_a_real_header_are_not_a_pickle(tmp_path):
    # a header of 640 bytes: its length starts 0x80 0x02, the pickle PROTO opcode
    hdr = b'{"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}}'
    hdr += b" " * (0x280 - len(hdr))
    f = tmp_path / "m.safetensors"
    f.write_bytes(_st_raw(hdr, b"abc"))
    assert f.read_bytes()[:2] == b"\x80\x02"
    rc, top, _ = scan_json(f)
    assert (rc, top["verdict"], top["format"]) == (0, "not-pickle", "safetensors")


def test_harmless_tail_zip_is_still_a_polyglot(tmp_path):
    buf = __import__("io").BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.txt", "hello")
    f = tmp_path / "m.safetensors"
    f.write_bytes(P.safetensors({"w": ("U8", [len(buf.getvalue())], buf.getvalue())}))
    rc, top, _ = scan_json(f)
    assert (rc, top["verdict"], top["format"], top["polyglot"]) == (0, "suspicious", "pickle", True)


def test_sarif_and_text_name_the_polyglot(tmp_path):
    f = tmp_path / "p.safetensors"
    f.write_bytes(P.st_tail_zip())
    p = run_modelfs("scan", f)
    assert p.returncode == 1 and "[polyglot]" in p.stdout and "polyglot: " in p.stdout
    p = run_modelfs("scan", "--format", "sarif", f)
    assert p.returncode == 1 and "polyglot: " in p.stdout


def test_hostile_names_cannot_forge_output(tmp_path):
    # names are untrusted bytes: a newline must not forge a report line, and
    # invalid UTF-8 must not break the JSON
    member = b"x\nok.pt: safe [pickle]\xff.pkl"
    loc = P._local(member, P.evil_p0())
    cd = P._central(member, P.evil_p0(), 0)
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(cd), len(loc), 0)
    f = tmp_path / "a\nok.pt: safe [pickle]"
    f.write_bytes(loc + cd + eocd)
    import subprocess as sp
    from conftest import modelfs_bin
    out = sp.run([modelfs_bin(), "scan", "-r", str(tmp_path)], capture_output=True)
    assert out.returncode == 1
    lines = out.stdout.decode("utf-8").splitlines()  # strict UTF-8
    assert not any(line.startswith("ok.pt: safe") for line in lines), lines
    assert not any(": safe [pickle]" in line and "\\x0a" not in line for line in lines), lines
    out = sp.run([modelfs_bin(), "scan", "--format", "json", "-r", str(tmp_path)],
                 capture_output=True)
    doc = json.loads(out.stdout.decode("utf-8"))  # strict UTF-8
    members = [r["member"] for r in doc["results"] if r["member"]]
    assert members == ["x\\x0aok.pt: safe [pickle]\\xff.pkl"], members
