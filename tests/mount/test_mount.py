"""modelfs mount: real FUSE mounts of signed stores (run as root).

Models are made with the real CLI (`modelfs keygen`, `modelfs seal`). Each
test mounts with `-f` in a subprocess and always unmounts, even on failure
(the `Mount` context manager: fusermount3 -u, then umount -l, then kill).
Oracles: the source bytes, hashlib, `modelfs digest` for fs-verity digests,
the `cryptography` package for the signer key id.
"""
import errno
import hashlib
import json
import mmap
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import modelfs_bin, run_modelfs

MiB = 1 << 20


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def rnd(n: int) -> bytes:
    """Random bytes that cannot start like a pickle stream (first byte 0)."""
    return b"\0" + os.urandom(n - 1) if n else b""


def drop_caches():
    """Forget cached pages: keep_cache would otherwise serve earlier good reads."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def is_mounted(path) -> bool:
    try:
        return os.path.ismount(path)
    except OSError:
        return True  # ENOTCONN: a dead FUSE mount is still a mount


def force_unmount(path):
    for cmd in (["fusermount3", "-u", str(path)], ["umount", "-l", str(path)]):
        if not is_mounted(path):
            return
        subprocess.run(cmd, capture_output=True, timeout=30)
        for _ in range(50):
            if not is_mounted(path):
                return
            time.sleep(0.1)


class FuseProcess:
    """A FUSE daemon run in the foreground (`self.args`) at `self.mnt`; always unmounted.

    Subclasses set args, mnt and logpath; `what` names it in the start-up failure.
    """

    what = "mount"

    def __enter__(self):
        self.logf = open(self.logpath, "w")
        self.proc = subprocess.Popen(self.args, stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while not is_mounted(self.mnt):
            if self.proc.poll() is not None or time.time() > deadline:
                self.close()
                raise AssertionError(f"{self.what} did not come up: {self.logpath.read_text()}")
            time.sleep(0.05)
        return self

    def log(self) -> str:
        self.logf.flush()
        return self.logpath.read_text()

    def close(self):
        force_unmount(self.mnt)
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()

    def __exit__(self, *exc):
        self.close()
        return False


class Mount(FuseProcess):
    """`modelfs mount -f` in a subprocess; always unmounted on exit."""

    def __init__(self, store, mnt, trust, *extra, cache=None):
        self.store, self.mnt = pathlib.Path(store), pathlib.Path(mnt)
        self.mnt.mkdir(parents=True, exist_ok=True)
        self.logpath = self.mnt.parent / (self.mnt.name + ".log")
        self.args = [modelfs_bin(), "mount", "-f"]
        for t in ([trust] if isinstance(trust, (str, pathlib.Path)) else trust):
            self.args += ["--trust", str(t)]
        self.args += ["--cache-dir", str(cache or self.mnt.parent / (self.mnt.name + ".cache"))]
        self.args += [*map(str, extra), str(self.store), str(self.mnt)]
        self.proc = None

    def status(self):
        return json.loads((self.mnt / ".modelfs" / "status.json").read_text())


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    run_modelfs("keygen", d / "trusted", check=0)
    run_modelfs("keygen", d / "other", check=0)
    return {"trusted": d / "trusted", "other": d / "other"}


def seal(model, key, *extra):
    run_modelfs("seal", "--key", f"{key}.key", *extra, model, check=0)


def write(path, data: bytes):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def flip(path, off):
    with open(path, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0x5A]))


def tree_file(model, name):
    """The tree file of a signed file, named by its fs-verity digest."""
    sig = json.loads((pathlib.Path(model) / "model.sig").read_text())
    import base64
    stmt = json.loads(base64.b64decode(sig["dsseEnvelope"]["payload"]))
    for f in stmt["predicate"]["modelfs"]["files"]:
        if f["name"] == name:
            return pathlib.Path(model) / ".modelfs" / "trees" / (f["fsverity_digest"] + ".tree")
    raise KeyError(name)


def read_err(path, off=0, size=4096):
    """Returns the errno of a pread, or None if it succeeded."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.pread(fd, size, off)
        return None
    except OSError as e:
        return e.errno
    finally:
        os.close(fd)


# --------------------------------------------------------------------------
# content
# --------------------------------------------------------------------------

SIZES = [0, 1, 4095, 4096, 4097, 3 * MiB + 123]


@pytest.mark.parametrize("bs", [1024, 4096, 65536])
def test_content_equal_sizes_and_block_sizes(tmp_path, keys, bs):
    store = tmp_path / "store"
    model = store / "org" / "m"
    src = {f"f{s}.bin": rnd(s) for s in SIZES}
    src["deep/er/x.txt"] = b"nested\n"
    for name, data in src.items():
        write(model / name, data)
    seal(model, keys["trusted"], "--block-size", str(bs))
    with Mount(store, tmp_path / "mnt", f"{keys['trusted']}.pub") as m:
        root = m.mnt / "org" / "m"
        assert sorted(os.listdir(root)) == sorted(["deep"] + [n for n in src if "/" not in n])
        for name, data in src.items():
            assert (root / name).read_bytes() == data, name
            assert os.stat(root / name).st_size == len(data)
        # unaligned reads, with a fresh page cache so the daemon serves them
        drop_caches()
        big = src[f"f{SIZES[-1]}.bin"]
        rng = random.Random(bs)
        fd = os.open(root / f"f{SIZES[-1]}.bin", os.O_RDONLY)
        try:
            for _ in range(200):
                off = rng.randrange(0, len(big) + 10)
                ln = rng.choice([1, 7, 4095, 4097, 65537, 300000])
                assert os.pread(fd, ln, off) == big[off:off + ln], (off, ln)
        finally:
            os.close(fd)
        st = m.status()
        assert st["counters"]["verify_failures"] == 0
        assert st["counters"]["bytes_verified"] > 0


# --------------------------------------------------------------------------
# tampering
# --------------------------------------------------------------------------

MMAP_PROBE = r"""
import mmap, os, sys
path, size, bad = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
src = open(sys.argv[4], 'rb').read()
fd = os.open(path, os.O_RDONLY)
m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
for page in range(0, size, 4096):
    if page // 4096 == bad // 4096:
        continue
    assert m[page:page + 4096] == src[page:page + 4096], page
print("others-ok", flush=True)
m[bad]  # SIGBUS expected here
print("bad-page-read", flush=True)
"""


def test_tamper_data_while_mounted(tmp_path, keys):
    store = tmp_path / "store"
    model = store / "m"
    data = rnd(4 * MiB)
    f = write(model / "w.bin", data)
    seal(model, keys["trusted"])
    bad = 2 * MiB + 1000
    with Mount(store, tmp_path / "mnt", f"{keys['trusted']}.pub") as m:
        path = m.mnt / "m" / "w.bin"
        assert path.read_bytes() == data
        flip(f, bad)
        drop_caches()
        page = bad // 4096 * 4096
        assert read_err(path, page) == errno.EIO
        assert read_err(path, bad, 1) == errno.EIO
        fd = os.open(path, os.O_RDONLY)
        try:
            for off in range(0, len(data), 4096):
                if off == page:
                    continue
                assert os.pread(fd, 4096, off) == data[off:off + 4096], off
        finally:
            os.close(fd)
        # mmap: every other page reads, the bad page raises SIGBUS
        srcf = tmp_path / "orig.bin"
        srcf.write_bytes(data)
        drop_caches()
        p = subprocess.run([sys.executable, "-c", MMAP_PROBE, str(path), str(len(data)),
                            str(bad), str(srcf)], capture_output=True, text=True, timeout=120)
        assert "others-ok" in p.stdout, p.stderr
        assert "bad-page-read" not in p.stdout
        assert p.returncode == -signal.SIGBUS, (p.returncode, p.stderr)
        st = m.status()
        assert st["counters"]["verify_failures"] >= 1
        assert "verify-failure model=m file=w.bin block=%d" % (bad // 4096) in m.log()
        # repair: reads work again, nothing bad was remembered
        flip(f, bad)
        drop_caches()
        assert path.read_bytes() == data


@pytest.mark.parametrize("damage", ["flip-slot", "flip-level0", "truncate", "delete", "header"])
def test_tamper_tree_file(tmp_path, keys, damage):
    store = tmp_path / "store"
    model = store / "m"
    data = rnd(4 * MiB + 5)
    write(model / "w.bin", data)
    seal(model, keys["trusted"])
    tree = tree_file(model, "w.bin")
    size = tree.stat().st_size
    if damage == "flip-slot":
        # 1025 data blocks: level 1 is tree block 0, level 0 starts at tree block 1,
        # after the 4 KiB header; byte 5 is inside data block 0's hash
        flip(tree, 4096 + 4096 + 5)
    elif damage == "flip-level0":
        flip(tree, size - 100)  # in the last level-0 block (levels are stored top first)
    elif damage == "truncate":
        os.truncate(tree, size - 4096)
    elif damage == "delete":
        tree.unlink()
    else:
        flip(tree, 3)  # magic
    with Mount(store, tmp_path / "mnt", f"{keys['trusted']}.pub") as m:
        path = m.mnt / "m" / "w.bin"
        # EIO or a rebuild, never wrong bytes
        try:
            got = path.read_bytes()
        except OSError as e:
            assert e.errno == errno.EIO
        else:
            assert got == data
        st = m.status()["counters"]
        assert st["trees_built"] >= 1, m.log()
        assert "tree-build" in m.log()


# --------------------------------------------------------------------------
# what appears
# --------------------------------------------------------------------------

def test_model_changes(tmp_path, keys):
    store = tmp_path / "store"
    good = store / "org" / "good"
    write(good / "a.txt", b"hello\n")
    write(good / "b.bin", rnd(100000))
    seal(good, keys["trusted"])
    write(good / "unsigned.txt", b"added later\n")

    altered = store / "org" / "altered"
    write(altered / "a.txt", b"x")
    seal(altered, keys["trusted"])
    sig = json.loads((altered / "model.sig").read_text())
    s = sig["dsseEnvelope"]["signatures"][0]["sig"]
    sig["dsseEnvelope"]["signatures"][0]["sig"] = ("A" if s[0] != "A" else "B") + s[1:]
    (altered / "model.sig").write_text(json.dumps(sig))

    untrusted = store / "untrusted"
    write(untrusted / "a.txt", b"y")
    seal(untrusted, keys["other"])

    broken = store / "broken"
    write(broken / "trunc.bin", rnd(50000))
    write(broken / "link.bin", rnd(5000))
    write(broken / "ok.txt", b"fine\n")
    write(broken / "dir" / "inner.txt", b"inner\n")
    seal(broken, keys["trusted"])
    os.truncate(broken / "trunc.bin", 40000)
    os.rename(broken / "link.bin", broken / "elsewhere.bin")
    os.symlink("elsewhere.bin", broken / "link.bin")
    shutil.move(str(broken / "dir"), str(broken / "realdir"))
    os.symlink("realdir", broken / "dir")

    write(store / "not-a-model" / "loose.txt", b"loose\n")

    with Mount(store, tmp_path / "mnt", f"{keys['trusted']}.pub") as m:
        assert sorted(os.listdir(m.mnt)) == ["broken", "org"]
        assert os.listdir(m.mnt / "org") == ["good"]
        assert sorted(os.listdir(m.mnt / "org" / "good")) == ["a.txt", "b.bin"]
        for hidden in ["unsigned.txt", "model.sig", ".modelfs"]:
            assert not (m.mnt / "org" / "good" / hidden).exists()
        assert (m.mnt / "org" / "good" / "a.txt").read_bytes() == b"hello\n"
        assert not (m.mnt / "untrusted").exists()
        assert not (m.mnt / "org" / "altered").exists()
        b = m.mnt / "broken"
        assert (b / "ok.txt").read_bytes() == b"fine\n"
        for bad in ["trunc.bin", "link.bin", "dir/inner.txt"]:
            with pytest.raises(OSError) as ei:
                (b / bad).read_bytes()
            assert ei.value.errno == errno.EIO, bad
        st = m.status()
        refused = {r["path"]: r["reason"] for r in st["refused"]}
        assert set(refused) == {"org/altered", "untrusted"}, refused
        assert all(refused.values())
        assert sorted(x["path"] for x in st["models"]) == ["broken", "org/good"]
        assert st["counters"]["open_failures"] >= 3
        log = m.log()
        assert 'model-refused model=untrusted reason="' in log
        assert 'model-refused model=org/altered reason="' in log
        # the control folder is reached by name only
        assert ".modelfs" not in os.listdir(m.mnt)
        assert os.path.isdir(m.mnt / ".modelfs")


def test_plain_oms_signature_refused(tmp_path, keys, shared):
    """A model whose signature carries no Merkle roots cannot be read block-wise."""
    corpus = shared / "corpus" / "oms"
    cands = [p for p in corpus.rglob("model.sig")] if corpus.is_dir() else []
    if not cands:
        pytest.skip("no plain OMS model in the shared corpus")
    # the golden corpus is signed by its own key; a refusal either way is correct
    store = tmp_path / "store"
    shutil.copytree(cands[0].parent, store / "oms")
    trust = [f"{keys['trusted']}.pub"] + [str(p) for p in corpus.rglob("*.pub")][:4]
    with Mount(store, tmp_path / "mnt", trust) as m:
        assert os.listdir(m.mnt) == []
        assert [r["path"] for r in m.status()["refused"]] == ["oms"]


# --------------------------------------------------------------------------
# xattrs
# --------------------------------------------------------------------------

def key_id(pub):
    from cryptography.hazmat.primitives import serialization
    k = serialization.load_pem_public_key(pathlib.Path(pub).read_bytes())
    der = k.public_bytes(serialization.Encoding.DER,
                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def test_xattrs(tmp_path, keys):
    store = tmp_path / "store"
    model = store / "org" / "xmodel"  # the signed name must fit the store path
    data = rnd(300000)
    write(model / "w.bin", data)
    write(model / "config.json", b'{"a": 1}\n')
    seal(model, keys["trusted"], "--name", "xmodel", "--revision", "abc123", "--source",
         "https://example.org/x", "--base-model", "base/y", "--license", "apache-2.0",
         "--dataset", "ds1", "--dataset", "ds,2")
    digest = run_modelfs("digest", model / "w.bin", check=0).stdout.split()[0]
    with Mount(store, tmp_path / "mnt", f"{keys['trusted']}.pub") as m:
        f = m.mnt / "org" / "xmodel" / "w.bin"
        d = m.mnt / "org" / "xmodel"
        names = set(os.listxattr(f))
        assert names == {"user.modelfs.digest", "user.modelfs.sha256", "user.modelfs.format",
                         "user.modelfs.size", "user.modelfs.stored_as"}
        assert os.getxattr(f, "user.modelfs.stored_as") == b"plain"
        assert os.getxattr(f, "user.modelfs.sha256").decode() == hashlib.sha256(data).hexdigest()
        assert os.getxattr(f, "user.modelfs.size") == b"300000"
        dg = os.getxattr(f, "user.modelfs.digest").decode()
        assert dg.startswith("sha256:") and dg[7:] in digest
        assert os.getxattr(d / "config.json", "user.modelfs.format") == b"json"
        assert os.getxattr(d, "user.modelfs.name") == b"xmodel"
        assert os.getxattr(d, "user.modelfs.revision") == b"abc123"
        assert os.getxattr(d, "user.modelfs.source") == b"https://example.org/x"
        assert os.getxattr(d, "user.modelfs.base_model") == b"base/y"
        assert os.getxattr(d, "user.modelfs.license") == b"apache-2.0"
        assert json.loads(os.getxattr(d, "user.modelfs.datasets")) == ["ds1", "ds,2"]
        assert os.getxattr(d, "user.modelfs.signer").decode() == key_id(
            f"{keys['trusted']}.pub")
        stmt = os.getxattr(d, "user.modelfs.statement")
        assert os.getxattr(d, "user.modelfs.statement_sha256").decode() == \
            hashlib.sha256(stmt).hexdigest()
        assert json.loads(stmt)["_type"] == "https://in-toto.io/Statement/v1"
        assert os.getxattr(d, "user.modelfs.signed_at").decode().endswith("Z")
        assert os.getxattr(m.mnt, "user.modelfs.version")
        assert "user.modelfs.version" in os.listxattr(m.mnt)
        assert os.listxattr(m.mnt / "org") == []
        with pytest.raises(OSError) as ei:
            os.getxattr(f, "user.modelfs.name")
        assert ei.value.errno == errno.ENODATA
        out = subprocess.run(["getfattr", "-d", "-m", "-", str(f), str(d)],
                             capture_output=True, text=True, check=True).stdout
        assert 'user.modelfs.size="300000"' in out
        assert 'user.modelfs.license="apache-2.0"' in out
        # a model sealed without provenance lists no absent values
        p = subprocess.run(["getfattr", "-n", "user.modelfs.nosuch", str(f)],
                           capture_output=True, text=True)
        assert p.returncode != 0


# --------------------------------------------------------------------------
# mmap, numpy, concurrency
# --------------------------------------------------------------------------

def make_safetensors(path, rng_seed=1):
    import numpy as np
    rng = np.random.default_rng(rng_seed)
    a = rng.standard_normal((256, 512)).astype(np.float32)
    b = rng.integers(0, 1000, size=(4096,), dtype=np.int64)
    hdr = {"a": {"dtype": "F32", "shape": list(a.shape), "data_offsets": [0, a.nbytes]},
           "b": {"dtype": "I64", "shape": list(b.shape),
                 "data_offsets": [a.nbytes, a.nbytes + b.nbytes]}}
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    blob = len(h).to_bytes(8, "little") + h + a.tobytes() + b.tobytes()
    write(path, blob)
    return blob, 8 + len(h), a, b


def test_numpy_memmap_safetensors_and_mmap(tmp_path, keys):
    import numpy as np
    store = tmp_path / "store"
    model = store / "st"
    blob, start, a, b = make_safetensors(model / "model.safetensors")
    seal(model, keys["trusted"])
    with Mount(store, tmp_path / "mnt", f"{keys['trusted']}.pub") as m:
        path = m.mnt / "st" / "model.safetensors"
        drop_caches()
        mm = np.memmap(path, dtype=np.uint8, mode="r")
        assert bytes(mm) == blob
        fa = np.memmap(path, dtype=np.float32, mode="r", offset=start, shape=a.shape)
        assert np.array_equal(fa, a)
        del mm, fa
        with open(path, "rb") as f:
            with mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ) as s:
                assert s[:] == blob
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) as p:  # MAP_PRIVATE
                assert p[:] == blob
                p[0] = 0  # private copy only
        assert path.read_bytes() == blob
        assert os.getxattr(path, "user.modelfs.format") == b"safetensors"


def concurrent_random_reads(path, data, threads, seconds, drop_every, pick):
    """Reads @path from @threads threads for @seconds: offsets and lengths come
    from pick(rng); each result is compared with @data, and every @drop_every
    reads a thread drops the page cache so reads reach the daemon again.
    Returns (errors, per-thread read counts); fails if a reader hangs."""
    errors, counts = [], []
    stop = time.time() + seconds

    def reader(seed):
        rng = random.Random(seed)
        fd = os.open(path, os.O_RDONLY)
        n = 0
        try:
            while time.time() < stop:
                off, ln = pick(rng)
                if os.pread(fd, ln, off) != data[off:off + ln]:
                    errors.append((off, ln))
                n += 1
                if n % drop_every == 0:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError as e:
            errors.append(e)
        finally:
            os.close(fd)
            counts.append(n)

    workers = [threading.Thread(target=reader, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=seconds + 60)
    assert not any(t.is_alive() for t in workers), "readers hung"
    return errors, counts


def test_concurrent_readers(tmp_path, keys):
    store = tmp_path / "store"
    data = rnd(24 * MiB + 77)
    write(store / "c" / "big.bin", data)
    seal(store / "c", keys["trusted"], "--block-size", "4096")
    with Mount(store, tmp_path / "mnt", f"{keys['trusted']}.pub",
               "--hblock-cache", "256K") as m:
        path = m.mnt / "c" / "big.bin"
        drop_caches()
        errors, counts = concurrent_random_reads(
            path, data, threads=8, seconds=10, drop_every=50,
            pick=lambda rng: (rng.randrange(0, len(data)),
                              rng.choice([1, 100, 4096, 65536, MiB])))
        assert not errors, errors[:5]
        assert sum(counts) > 100
        st = m.status()["counters"]
        assert st["verify_failures"] == 0
        assert st["hblock_cache_misses"] > 0


# --------------------------------------------------------------------------
# pickles
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pickle_store(tmp_path_factory, keys):
    import pickle
    store = tmp_path_factory.mktemp("pstore") / "store"
    model = store / "pk"
    write(model / "config.json", b'{"x": 1}\n')
    write(model / "data.bin", pickle.dumps({"a": [1, 2, 3]}, protocol=4))
    write(model / "old.bin", pickle.dumps([1, "two"], protocol=0))
    subprocess.run(["/usr/bin/python3", "-c",
                    "import sys, torch; torch.save({'w': torch.zeros(4)}, sys.argv[1])",
                    str(model / "ckpt.pt")], check=True, timeout=300)
    seal(model, keys["trusted"])
    clean = store / "clean"
    write(clean / "config.json", b'{"y": 2}\n')
    seal(clean, keys["trusted"])
    return store


def test_pickle_hide(tmp_path, keys, pickle_store):
    with Mount(pickle_store, tmp_path / "mnt", f"{keys['trusted']}.pub",
               "--pickle=hide") as m:
        assert sorted(os.listdir(m.mnt / "pk")) == ["config.json"]
        for name in ["data.bin", "ckpt.pt"]:
            assert not (m.mnt / "pk" / name).exists()
            with pytest.raises(FileNotFoundError):
                open(m.mnt / "pk" / name, "rb")


def test_pickle_show(tmp_path, keys, pickle_store):
    with Mount(pickle_store, tmp_path / "mnt", f"{keys['trusted']}.pub",
               "--pickle=show") as m:
        names = sorted(os.listdir(m.mnt / "pk"))
        assert names == ["ckpt.pt", "config.json", "data.bin", "old.bin"]
        for name in ["data.bin", "ckpt.pt"]:
            assert os.getxattr(m.mnt / "pk" / name, "user.modelfs.format") == b"pickle"
            assert (m.mnt / "pk" / name).read_bytes() == (pickle_store / "pk" / name).read_bytes()


def test_pickle_default_transcode(tmp_path, keys, pickle_store):
    """Default policy: the safe checkpoint appears as safetensors, other pickles are hidden."""
    with Mount(pickle_store, tmp_path / "mnt", f"{keys['trusted']}.pub") as m:
        assert sorted(os.listdir(m.mnt / "pk")) == ["ckpt.safetensors", "config.json"]
        entries = {e["file"]: e for e in m.status()["models"][1]["pickles"]}
        assert entries["ckpt.pt"]["shown_as"] == "ckpt.safetensors"
        for name in ["data.bin", "old.bin"]:
            assert entries[name]["hidden"] and entries[name]["verdict"] == "safe"


def test_pickle_deny(tmp_path, keys, pickle_store):
    with Mount(pickle_store, tmp_path / "mnt", f"{keys['trusted']}.pub",
               "--pickle=deny") as m:
        assert os.listdir(m.mnt) == ["clean"]
        assert not (m.mnt / "pk").exists()
        assert (m.mnt / "clean" / "config.json").read_bytes() == b'{"y": 2}\n'
        refused = {r["path"]: r["reason"] for r in m.status()["refused"]}
        assert "contains pickle file" in refused["pk"]


# --------------------------------------------------------------------------
# read-only
# --------------------------------------------------------------------------

def test_writes_return_erofs(tmp_path, keys):
    store = tmp_path / "store"
    write(store / "m" / "a.txt", b"a\n")
    seal(store / "m", keys["trusted"])
    with Mount(store, tmp_path / "mnt", f"{keys['trusted']}.pub") as m:
        d = m.mnt / "m"
        f = d / "a.txt"
        attempts = [
            lambda: open(f, "wb"),
            lambda: open(f, "ab"),
            lambda: open(f, "r+b"),
            lambda: open(d / "new.txt", "wb"),
            lambda: os.unlink(f),
            lambda: os.rename(f, d / "b.txt"),
            lambda: os.mkdir(d / "sub"),
            lambda: os.rmdir(d),
            lambda: os.symlink("a.txt", d / "l"),
            lambda: os.link(f, d / "h"),
            lambda: os.chmod(f, 0o777),
            lambda: os.truncate(f, 0),
            lambda: os.utime(f, (1, 1)),
            lambda: os.setxattr(f, "user.x", b"1"),
            lambda: os.removexattr(f, "user.modelfs.size"),
            lambda: os.mknod(d / "fifo", 0o600 | 0o010000),
        ]
        for i, op in enumerate(attempts):
            with pytest.raises(OSError) as ei:
                op()
            assert ei.value.errno == errno.EROFS, (i, ei.value)
        assert f.read_bytes() == b"a\n"


# --------------------------------------------------------------------------
# lifecycle
# --------------------------------------------------------------------------

def test_sigterm_unmounts(tmp_path, keys):
    store = tmp_path / "store"
    write(store / "m" / "a.txt", b"a\n")
    seal(store / "m", keys["trusted"])
    m = Mount(store, tmp_path / "mnt", f"{keys['trusted']}.pub")
    with m:
        assert (m.mnt / "m" / "a.txt").read_bytes() == b"a\n"
        m.proc.send_signal(signal.SIGTERM)
        assert m.proc.wait(timeout=20) == 0
        assert not is_mounted(m.mnt)
        assert "unmounted" in m.log()


def test_daemonizes_and_fusermount_unmounts(tmp_path, keys):
    store = tmp_path / "store"
    write(store / "m" / "a.txt", b"a\n")
    seal(store / "m", keys["trusted"])
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        p = run_modelfs("mount", "--trust", f"{keys['trusted']}.pub", "--cache-dir",
                        tmp_path / "cache", store, mnt, timeout=60)
        assert p.returncode == 0, p.stderr
        assert is_mounted(mnt)
        assert (mnt / "m" / "a.txt").read_bytes() == b"a\n"
        subprocess.run(["fusermount3", "-u", str(mnt)], check=True, timeout=30)
        assert not is_mounted(mnt)
    finally:
        force_unmount(mnt)


def mount_error(args, tmp_path):
    p = run_modelfs("mount", *args, timeout=60)
    for a in args:
        if pathlib.Path(str(a)).is_dir():
            force_unmount(a)
    return p


def test_lifecycle_errors(tmp_path, keys):
    store = tmp_path / "store"
    write(store / "m" / "a.txt", b"a\n")
    seal(store / "m", keys["trusted"])
    pub = f"{keys['trusted']}.pub"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cache = ["--cache-dir", tmp_path / "cache"]

    p = mount_error(["--trust", pub, *cache, store, tmp_path / "nosuch"], tmp_path)
    assert p.returncode == 2 and "nosuch" in p.stderr and "mountpoint" in p.stderr

    full = tmp_path / "full"
    write(full / "x", b"x")
    p = mount_error(["--trust", pub, *cache, store, full], tmp_path)
    assert p.returncode == 2 and "not empty" in p.stderr

    p = mount_error(["--trust", pub, *cache, store / "m" / "a.txt", mnt], tmp_path)
    # a regular file as STORE is read as a store file (docs/remote.md): refused as one
    assert p.returncode == 2 and "not a folder must be a store file" in p.stderr

    p = mount_error(["--trust", tmp_path / "missing.pub", *cache, store, mnt], tmp_path)
    assert p.returncode == 2 and "missing.pub" in p.stderr

    p = mount_error([*cache, store, mnt], tmp_path)
    assert p.returncode == 2 and "--trust" in p.stderr

    p = mount_error(["--trust", pub, "--pickle=maybe", store, mnt], tmp_path)
    assert p.returncode == 2
    assert not is_mounted(mnt)

    # -o nonempty mounts over a non-empty folder
    with Mount(store, full, pub, "-o", "nonempty") as m:
        assert os.listdir(m.mnt) == ["m"]


def test_no_dev_fuse(tmp_path, keys):
    store = tmp_path / "store"
    write(store / "m" / "a.txt", b"a\n")
    seal(store / "m", keys["trusted"])
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = ("mount -t tmpfs none /dev && exec \"$0\" mount --trust \"$1\" --cache-dir \"$2\" "
              "\"$3\" \"$4\"")
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                        modelfs_bin(), f"{keys['trusted']}.pub", str(tmp_path / "cache"),
                        str(store), str(mnt)], capture_output=True, text=True, timeout=60)
    if "unshare" in p.stderr and p.returncode != 2:
        pytest.skip(f"cannot make a mount namespace: {p.stderr}")
    assert p.returncode == 2, p.stderr
    assert "/dev/fuse" in p.stderr


def test_mount_helper_style_options(tmp_path, keys, pickle_store):
    """mount(8) passes everything in -o: trust=, pickle=, cache_dir= are taken there."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    opts = f"trust={keys['trusted']}.pub,pickle=show,cache_dir={tmp_path / 'cache'}"
    proc = subprocess.Popen([modelfs_bin(), str(pickle_store), str(mnt), "-o", opts, "-f"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 20
        while not is_mounted(mnt):
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
            time.sleep(0.05)
        assert "data.bin" in os.listdir(mnt / "pk")
        assert (tmp_path / "cache" / "trees").is_dir()
    finally:
        force_unmount(mnt)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
