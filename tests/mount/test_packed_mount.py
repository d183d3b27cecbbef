"""modelfs mount of zstd-packed models (issue 5 section 3-4): real FUSE mounts.

Models are made with the real CLI: `modelfs seal`, then `modelfs pack
--frame-size 64K --remove-original`, so each packed file has many frames and
only its packed copy is left in MODEL/.modelfs/packed/. Oracles: the source
bytes, the seek table parsed here, /proc/PID/status for the daemon's RSS.
Every mount goes through test_mount.Mount, which always unmounts.
"""
import errno
import json
import mmap
import os
import pathlib
import random
import struct
import threading
import time

import pytest

from conftest import run_modelfs
from test_mount import (MMAP_PROBE, Mount, concurrent_random_reads, drop_caches,
                        make_safetensors, read_err, rnd,
                        seal, tree_file, write)

MiB = 1 << 20
FRAME = 64 << 10


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def compressible(n: int, seed: int = 0) -> bytes:
    """Bytes that zstd shrinks (about 2x) but that are not a repeating pattern."""
    import numpy as np
    rng = np.random.default_rng(seed)
    b = rng.integers(0, 16, size=n, dtype=np.uint8).tobytes()
    return b"\0" + b[1:] if n else b""  # never starts like a pickle


def pack(model, *extra):
    return run_modelfs("pack", "--frame-size", "64K", "--remove-original", "-q", *extra, model,
                       check=0)


def digest_of(model, name):
    return tree_file(model, name).name[:-len(".tree")]


def packed_file(model, name) -> pathlib.Path:
    return pathlib.Path(model) / ".modelfs" / "packed" / (digest_of(model, name) + ".zst")


def seek_table(path):
    """[(compressed offset, compressed size, plain size)] of a packed file."""
    raw = pathlib.Path(path).read_bytes()
    n, desc, magic = struct.unpack("<IBI", raw[-9:])
    assert magic == 0x8F92EAB1 and desc == 0
    entries = struct.unpack("<%dI" % (2 * n), raw[-9 - 8 * n:-9])
    out, off = [], 0
    for i in range(n):
        out.append((off, entries[2 * i], entries[2 * i + 1]))
        off += entries[2 * i]
    return out


def rss_kib(pid) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def trusted(keys):
    return f"{keys['trusted']}.pub"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    run_modelfs("keygen", d / "trusted", check=0)
    return {"trusted": d / "trusted"}


# --------------------------------------------------------------------------
# content: packed and plain copies of one model read identically
# --------------------------------------------------------------------------

SIZES = [1, 4095, FRAME, FRAME + 1, 3 * MiB + 123]


def make_pair(store, keys):
    """org/plain and org/packed: the same files, the second packed."""
    src = {f"f{s}.bin": compressible(s, s) for s in SIZES}
    src["noise.bin"] = rnd(200000)  # does not shrink: stays plain
    src["sub/config.json"] = json.dumps({"hidden": 768, "layers": list(range(300))}).encode()
    for which in ("plain", "packed"):
        for name, data in src.items():
            write(store / "org" / which / name, data)
        make_safetensors(store / "org" / which / "model.safetensors")
        seal(store / "org" / which, keys["trusted"])
    pack(store / "org" / "packed")
    src["model.safetensors"] = (store / "org" / "plain" / "model.safetensors").read_bytes()
    return src


def test_packed_and_plain_read_identically(tmp_path, keys):
    store = tmp_path / "store"
    src = make_pair(store, keys)
    model = store / "org" / "packed"
    packed = {n for n in src if not (model / n).exists()}
    assert {f"f{3 * MiB + 123}.bin", f"f{FRAME + 1}.bin", "model.safetensors"} <= packed
    assert "noise.bin" not in packed
    with Mount(store, tmp_path / "mnt", trusted(keys), "--cache-size", "2M") as m:
        for name, data in src.items():
            a = m.mnt / "org" / "plain" / name
            b = m.mnt / "org" / "packed" / name
            assert os.stat(b).st_size == len(data), name
            assert b.read_bytes() == data, name
            assert a.read_bytes() == data, name
            want = b"packed" if name in packed else b"plain"
            assert os.getxattr(b, "user.modelfs.stored_as") == want, name
            assert os.getxattr(a, "user.modelfs.stored_as") == b"plain", name
            assert "user.modelfs.stored_as" in os.listxattr(b)
        # format detection reads through the packed copy
        st_path = m.mnt / "org" / "packed" / "model.safetensors"
        assert os.getxattr(st_path, "user.modelfs.format") == b"safetensors"
        # unaligned reads served by the daemon (fresh page cache)
        drop_caches()
        big = src[f"f{3 * MiB + 123}.bin"]
        rng = random.Random(5)
        fds = [os.open(m.mnt / "org" / w / f"f{3 * MiB + 123}.bin", os.O_RDONLY)
               for w in ("plain", "packed")]
        try:
            for _ in range(300):
                off = rng.randrange(0, len(big) + 10)
                ln = rng.choice([1, 7, 4095, 4097, FRAME - 1, FRAME + 3, 300000])
                got = [os.pread(fd, ln, off) for fd in fds]
                assert got[0] == got[1] == big[off:off + ln], (off, ln)
        finally:
            for fd in fds:
                os.close(fd)
        # mmap, MAP_SHARED and MAP_PRIVATE
        drop_caches()
        for name in ("model.safetensors", f"f{3 * MiB + 123}.bin"):
            with open(m.mnt / "org" / "packed" / name, "rb") as f:
                with mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ) as s:
                    assert s[:] == src[name]
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) as p:
                    assert p[FRAME - 5:FRAME + 5] == src[name][FRAME - 5:FRAME + 5]
        st = m.status()["counters"]
        assert st["verify_failures"] == 0
        assert st["frame_cache_misses"] > 0
        assert st["frame_cache_max_bytes"] == 2 * MiB
        for k in ("frame_cache_hits", "frame_cache_evictions", "frame_cache_bytes"):
            assert k in st


def test_packed_without_tree_file(tmp_path, keys):
    """A missing tree is rebuilt from the decompressed frames, then used."""
    store = tmp_path / "store"
    model = store / "m"
    data = compressible(2 * MiB + 5, 7)
    write(model / "w.bin", data)
    seal(model, keys["trusted"])
    pack(model)
    assert not (model / "w.bin").exists()
    tree_file(model, "w.bin").unlink()
    with Mount(store, tmp_path / "mnt", trusted(keys)) as m:
        path = m.mnt / "m" / "w.bin"
        assert path.read_bytes() == data
        st = m.status()["counters"]
        assert st["trees_built"] == 1 and st["verify_failures"] == 0, st
        assert "stored_as=packed" in m.log()


def test_plain_copy_preferred(tmp_path, keys):
    store = tmp_path / "store"
    model = store / "m"
    data = compressible(MiB, 3)
    write(model / "w.bin", data)
    seal(model, keys["trusted"])
    run_modelfs("pack", "--frame-size", "64K", "-q", model, check=0)  # both copies
    assert (model / "w.bin").exists() and packed_file(model, "w.bin").exists()
    with Mount(store, tmp_path / "mnt", trusted(keys)) as m:
        path = m.mnt / "m" / "w.bin"
        assert os.getxattr(path, "user.modelfs.stored_as") == b"plain"
        assert path.read_bytes() == data
        assert m.status()["counters"]["frame_cache_misses"] == 0


@pytest.mark.parametrize("policy", ["hide", "show"])
def test_packed_pickle_detected(tmp_path, keys, policy):
    """Format detection and the pickle policy read through the packed copy."""
    import pickle
    store = tmp_path / "store"
    model = store / "p"
    blob = pickle.dumps(list(range(200000)), protocol=4)
    write(model / "data.bin", blob)
    write(model / "config.json", b'{"x": 1}\n')
    seal(model, keys["trusted"])
    pack(model)
    assert not (model / "data.bin").exists()
    with Mount(store, tmp_path / "mnt", trusted(keys), "--pickle", policy) as m:
        names = sorted(os.listdir(m.mnt / "p"))
        if policy == "hide":
            assert names == ["config.json"]
        else:
            path = m.mnt / "p" / "data.bin"
            assert names == ["config.json", "data.bin"]
            assert os.getxattr(path, "user.modelfs.format") == b"pickle"
            assert os.getxattr(path, "user.modelfs.stored_as") == b"packed"
            assert path.read_bytes() == blob
        assert m.status()["counters"]["verify_failures"] == 0


# --------------------------------------------------------------------------
# bad packed files
# --------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["flip", "zero"])
def test_tampered_frame_fails_only_its_range(tmp_path, keys, how):
    store = tmp_path / "store"
    model = store / "m"
    data = compressible(2 * MiB + 4096 * 3 + 17, 11)
    write(model / "w.bin", data)
    seal(model, keys["trusted"])
    pack(model)
    zst = packed_file(model, "w.bin")
    table = seek_table(zst)
    assert len(table) == 33
    bad = 13
    coff, csize, _ = table[bad]
    with open(zst, "r+b") as f:
        if how == "flip":  # in the middle of the compressed bytes
            f.seek(coff + csize // 2)
            b = f.read(1)
            f.seek(coff + csize // 2)
            f.write(bytes([b[0] ^ 0x5A]))
        else:  # the frame's header and first bytes
            f.seek(coff)
            f.write(b"\0" * 64)
    lo, hi = bad * FRAME, (bad + 1) * FRAME
    with Mount(store, tmp_path / "mnt", trusted(keys), "--cache-size", "1M") as m:
        path = m.mnt / "m" / "w.bin"
        drop_caches()
        assert read_err(path, lo + 100, 1) == errno.EIO
        fd = os.open(path, os.O_RDONLY)
        try:
            for off in range(0, len(data), 4096):
                if lo <= off < hi:
                    assert read_err(path, off) == errno.EIO, off
                else:
                    assert os.pread(fd, 4096, off) == data[off:off + 4096], off
        finally:
            os.close(fd)
        # mmap: every page outside the frame reads; one inside raises SIGBUS
        import signal
        import subprocess
        import sys
        srcf = tmp_path / "orig.bin"
        # the probe skips only one page: give it the bad frame's pages from the mount's view
        probe = MMAP_PROBE.replace("if page // 4096 == bad // 4096:",
                                   f"if {lo} <= page < {hi}:")
        srcf.write_bytes(data)
        drop_caches()
        p = subprocess.run([sys.executable, "-c", probe, str(path), str(len(data)),
                            str(lo + 5), str(srcf)], capture_output=True, text=True,
                           timeout=120)
        assert "others-ok" in p.stdout, p.stderr
        assert p.returncode == -signal.SIGBUS, (p.returncode, p.stderr)
        st = m.status()["counters"]
        assert st["verify_failures"] >= 1
        assert st["frame_cache_errors"] >= 1
        log = m.log()
        assert "verify-failure model=m file=w.bin" in log
        assert f"frame {bad}" in log, log


@pytest.mark.parametrize("damage", ["truncate", "table-lies", "garbage"])
def test_bad_seek_table_gives_eio(tmp_path, keys, damage):
    store = tmp_path / "store"
    model = store / "m"
    data = compressible(MiB, 2)
    write(model / "w.bin", data)
    write(model / "ok.bin", compressible(MiB, 4))
    seal(model, keys["trusted"])
    pack(model)
    zst = packed_file(model, "w.bin")
    raw = bytearray(zst.read_bytes())
    if damage == "truncate":
        raw = raw[:-3]
    elif damage == "table-lies":  # frame 0 claims twice its plain size
        n = struct.unpack("<I", raw[-9:-5])[0]
        at = len(raw) - 9 - 8 * n + 4
        raw[at:at + 4] = struct.pack("<I", 2 * FRAME)
    else:
        raw = bytearray(os.urandom(len(raw)))
    zst.write_bytes(bytes(raw))
    with Mount(store, tmp_path / "mnt", trusted(keys)) as m:
        path = m.mnt / "m" / "w.bin"
        with pytest.raises(OSError) as e:  # open (seek table checked) or read
            path.read_bytes()
        assert e.value.errno == errno.EIO
        assert (m.mnt / "m" / "ok.bin").read_bytes() == compressible(MiB, 4)
        st = m.status()["counters"]
        assert st["verify_failures"] >= 1 and st["open_failures"] >= 1
        assert "packed-damaged model=m file=w.bin" in m.log()


# --------------------------------------------------------------------------
# concurrency and memory
# --------------------------------------------------------------------------

def test_concurrent_readers_share_frames(tmp_path, keys):
    store = tmp_path / "store"
    model = store / "c"
    data = compressible(12 * MiB + 77, 21)
    write(model / "big.bin", data)
    seal(model, keys["trusted"])
    pack(model)
    with Mount(store, tmp_path / "mnt", trusted(keys), "--cache-size", "1M",
               "--threads", "8") as m:
        path = m.mnt / "c" / "big.bin"
        drop_caches()

        def pick(rng):
            # a few hot frames, shared by every thread, and random ones
            base = rng.choice([0, 5 * FRAME, 100 * FRAME, rng.randrange(len(data))])
            off = min(base + rng.randrange(FRAME), len(data) - 1)
            return off, rng.choice([1, 100, 4096, FRAME, 3 * FRAME + 5])

        errors, counts = concurrent_random_reads(path, data, threads=8, seconds=8,
                                                 drop_every=20, pick=pick)
        assert not errors, errors[:5]
        assert sum(counts) > 100
        st = m.status()["counters"]
        assert st["verify_failures"] == 0
        assert st["frame_cache_misses"] > 0 and st["frame_cache_hits"] > 0
        assert st["frame_cache_evictions"] > 0


def test_cache_bound_holds_under_long_read(tmp_path, keys):
    store = tmp_path / "store"
    model = store / "big"
    size = 96 * MiB
    data = compressible(size, 33)
    write(model / "w.bin", data)
    seal(model, keys["trusted"])
    pack(model)
    del data
    peak = [0]
    with Mount(store, tmp_path / "mnt", trusted(keys), "--cache-size", "8M") as m:
        pid = m.proc.pid
        sanitized = "libasan" in pathlib.Path(f"/proc/{pid}/maps").read_text()
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss_kib(pid))
                time.sleep(0.02)

        t = threading.Thread(target=sample)
        t.start()
        try:
            drop_caches()
            total = 0
            with open(m.mnt / "big" / "w.bin", "rb", buffering=0) as f:
                while True:
                    b = f.read(4 * MiB)
                    if not b:
                        break
                    total += len(b)
                    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            done.set()
            t.join()
        assert total == size
        st = m.status()["counters"]
        assert st["frame_cache_bytes"] <= st["frame_cache_max_bytes"] + 16 * FRAME, st
        assert st["frame_cache_evictions"] > 0 and st["verify_failures"] == 0
        print(f"daemon RSS peak {peak[0]} KiB")
        if not sanitized:  # ASan's shadow memory and quarantine say nothing about ours
            assert 0 < peak[0] < 64 * 1024, f"daemon RSS peaked at {peak[0]} KiB"


def test_cache_size_option(tmp_path, keys):
    store = tmp_path / "store"
    write(store / "m" / "a.txt", b"hello\n")
    seal(store / "m", keys["trusted"])
    with Mount(store, tmp_path / "mnt", trusted(keys), "-o", "cache_size=3M") as m:
        assert m.status()["counters"]["frame_cache_max_bytes"] == 3 * MiB
    p = run_modelfs("mount", "--trust", trusted(keys), "--cache-size", "12Q", store,
                    tmp_path / "mnt")
    assert p.returncode == 2 and "cache-size" in p.stderr


# --------------------------------------------------------------------------
# --tensor-transform: frames stored as byte planes read back transparently
# --------------------------------------------------------------------------

def torch_weights(n: int, dtype: str, seed: int) -> bytes:
    """normal(0, 0.02) weights as torch writes them, bf16 or f32."""
    import torch
    w = torch.randn(n, generator=torch.Generator().manual_seed(seed)) * 0.02
    if dtype == "bf16":
        return w.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
    return w.numpy().tobytes()


def transform_widths(path):
    """Per-frame widths of the transform table (docs/formats.md), None if absent."""
    raw = pathlib.Path(path).read_bytes()
    table = seek_table(path)
    end = sum(c for _, c, _ in table)
    if end == len(raw) - 17 - 8 * len(table):
        return None
    magic, size, ident = struct.unpack("<III", raw[end:end + 12])
    assert (magic, size, ident) == (0x184D2A5B, 4 + len(table), 0x5042464D)
    return list(raw[end + 12:end + 12 + len(table)])


def make_transformed(store, keys):
    src = {"w.bf16.bin": torch_weights(1_500_001, "bf16", 1),
           "w.f32.bin": torch_weights(300_000, "f32", 2),
           "ok.bin": torch_weights(200_000, "bf16", 3)}
    model = store / "t"
    for name, data in src.items():
        write(model / name, data)
    blob = make_safetensors(model / "model.safetensors")[0]
    seal(model, keys["trusted"])
    pack(model, "--tensor-transform")
    src["model.safetensors"] = blob
    return model, src


def test_transformed_reads_identically(tmp_path, keys):
    store = tmp_path / "store"
    model, src = make_transformed(store, keys)
    for name in src:
        assert not (model / name).exists(), name
        widths = transform_widths(packed_file(model, name))
        assert widths and set(widths) <= {1, 2, 4} and set(widths) - {1}, name
    assert 4 in transform_widths(packed_file(model, "w.f32.bin"))
    assert 2 in transform_widths(packed_file(model, "w.bf16.bin"))
    with Mount(store, tmp_path / "mnt", trusted(keys), "--cache-size", "1M") as m:
        for name, data in src.items():
            path = m.mnt / "t" / name
            assert path.read_bytes() == data, name
            assert os.getxattr(path, "user.modelfs.stored_as") == b"packed"
        drop_caches()
        big = src["w.bf16.bin"]
        rng = random.Random(9)
        fd = os.open(m.mnt / "t" / "w.bf16.bin", os.O_RDONLY)
        try:
            for _ in range(200):
                off = rng.randrange(0, len(big) + 10)
                ln = rng.choice([1, 3, 4097, FRAME - 1, FRAME + 3, 200000])
                assert os.pread(fd, ln, off) == big[off:off + ln], (off, ln)
        finally:
            os.close(fd)
    v = run_modelfs("verify", "--trust", trusted(keys), model, check=0)
    assert v.stdout.startswith("verified: 4 files")


@pytest.mark.parametrize("damage", ["unknown-width", "wrong-width"])
def test_transformed_bad_table_gives_eio(tmp_path, keys, damage):
    store = tmp_path / "store"
    model, src = make_transformed(store, keys)
    zst = packed_file(model, "w.bf16.bin")
    raw = bytearray(zst.read_bytes())
    table = seek_table(zst)
    end = sum(c for _, c, _ in table)
    bad = 5
    assert raw[end + 12 + bad] == 2
    raw[end + 12 + bad] = 3 if damage == "unknown-width" else 4
    zst.write_bytes(bytes(raw))
    data = src["w.bf16.bin"]
    lo, hi = bad * FRAME, (bad + 1) * FRAME
    with Mount(store, tmp_path / "mnt", trusted(keys)) as m:
        path = m.mnt / "t" / "w.bf16.bin"
        assert (m.mnt / "t" / "ok.bin").read_bytes() == src["ok.bin"]
        if damage == "unknown-width":  # the table is refused at open
            with pytest.raises(OSError) as e:
                path.read_bytes()
            assert e.value.errno == errno.EIO
            assert "packed-damaged model=t file=w.bf16.bin" in m.log()
            return
        # a valid width, but the wrong one: only that frame's range fails
        drop_caches()
        fd = os.open(path, os.O_RDONLY)
        try:
            for off in range(0, len(data), 16384):
                if lo <= off < hi:
                    assert read_err(path, off) == errno.EIO, off
                else:
                    assert os.pread(fd, 4096, off) == data[off:off + 4096], off
        finally:
            os.close(fd)
        log = m.log()
        assert "verify-failure model=t file=w.bf16.bin" in log
        assert f"frame {bad}" in log, log
