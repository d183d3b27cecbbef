"""The remote block cache of a lazy mount (--remote-cache-size; docs/remote.md,
"The remote block cache"), against a real registry (oci_registry.py).

Oracles: the source bytes, the counters of status.json (remote_bytes for the
network, remote_cache_* for the cache), the cache folder's files on disk and
a registry that is stopped. Every mount is unmounted, even on failure.
"""
import errno
import os
import pathlib

import pytest

from remote.oci_registry import stop_registry
from remote.test_lazy_mount import OciMount, auth, keys, make_model, push  # noqa: F401
from test_mount import drop_caches  # noqa: E402  (tests/mount, on sys.path)

MiB = 1 << 20


def blobs(cache: pathlib.Path):
    return cache / "oci-blobs" / "sha256"


def read_all(root: pathlib.Path, files: dict):
    for rel, data in files.items():
        assert (root / rel).read_bytes() == data, rel


def disk_bytes(folder: pathlib.Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in folder.iterdir() if p.is_file())


@pytest.fixture
def model(registry, keys, auth, tmp_path, request):  # noqa: F811
    name = "org/" + request.node.name.replace("_", "")[4:20]
    m = make_model(tmp_path, keys["trusted"], name)
    push(registry, keys, m, f"{name}:v1")
    m["name"] = name
    return m


def test_second_mount_reads_from_the_cache(registry, keys, model, tmp_path):
    cache = tmp_path / "shared.cache"
    ref = f"{model['name']}:v1"
    with OciMount(registry, ref, tmp_path / "a", keys["trusted"], "--cache-dir", cache) as m:
        read_all(m.mnt / model["name"], model["files"])
        c = m.status()["counters"]
        assert c["remote_bytes"] >= len(model["files"]["model.safetensors"]), c
        assert c["remote_cache_misses"] > 0, c
    data = list(blobs(cache).glob("*.data"))
    assert len(data) == len(model["files"])
    assert len(list(blobs(cache).glob("*.map"))) == len(model["files"])
    drop_caches()
    with OciMount(registry, ref, tmp_path / "b", keys["trusted"], "--cache-dir", cache) as m:
        before = m.status()["counters"]
        read_all(m.mnt / model["name"], model["files"])
        c = m.status()["counters"]
        assert c["remote_bytes"] == before["remote_bytes"], (before, c)
        assert c["remote_cache_hits"] > before["remote_cache_hits"], c
        assert c["remote_cache_bytes"] >= len(model["files"]["model.safetensors"]), c
        metrics = (m.mnt / ".modelfs" / "metrics.prom").read_text()
        assert "modelfs_remote_cache_hits_total" in metrics


def test_a_4k_read_fills_one_chunk(registry, keys, model, tmp_path):
    with OciMount(registry, f"{model['name']}:v1", tmp_path / "mnt", keys["trusted"]) as m:
        f = m.mnt / model["name"] / "model.safetensors"
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            before = m.status()["counters"]  # after the lookup's format detection
            assert os.pread(fd, 4096, 2 * MiB) == \
                model["files"]["model.safetensors"][2 * MiB:2 * MiB + 4096]
        finally:
            os.close(fd)
        c = m.status()["counters"]
        assert c["remote_bytes"] - before["remote_bytes"] == 64 * 1024, (before, c)
        assert c["remote_cache_misses"] - before["remote_cache_misses"] == 1, c


def test_a_sequential_reader_gets_fewer_larger_gets(registry, keys, model, tmp_path):
    """A sequential reader's misses fetch twice as much each time (up to
    16 MiB), so reading the 3 MiB file takes a few GETs, not one per 1 MiB
    READ; a random 4 KiB read still fetches one 64 KiB chunk (above)."""
    data = model["files"]["model.safetensors"]
    with OciMount(registry, f"{model['name']}:v1", tmp_path / "mnt", keys["trusted"]) as m:
        f = m.mnt / model["name"] / "model.safetensors"
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # one READ per pread
            before = m.status()["counters"]  # after the lookup's format detection
            got = b"".join(os.pread(fd, MiB, off) for off in range(0, len(data), MiB))
        finally:
            os.close(fd)
        assert got == data
        c = m.status()["counters"]
        gets = c["remote_requests"] - before["remote_requests"]
        assert 1 <= gets <= 3, (before, c)  # 1 MiB, then 2 MiB, then the rest
        assert c["remote_bytes"] - before["remote_bytes"] <= len(data), (before, c)


def test_cache_off_keeps_nothing(registry, keys, model, tmp_path):
    with OciMount(registry, f"{model['name']}:v1", tmp_path / "mnt", keys["trusted"],
                  "-o", "remote_cache_size=0") as m:
        read_all(m.mnt / model["name"], model["files"])
        assert m.status()["counters"]["remote_cache_misses"] == 0
    assert not (tmp_path / "mnt.cache" / "oci-blobs").exists()


def test_corrupted_cache_byte_heals_from_the_registry(registry, keys, model, tmp_path):
    """The cache is not trusted: a byte damaged on disk fails verification,
    the store forgets that chunk, and the read is done once more from the
    registry: the reader gets the right bytes, and the chunk is right on disk
    again. (A blob damaged in the registry itself still gives EIO:
    test_lazy_mount.py.)"""
    cache = tmp_path / "shared.cache"
    ref = f"{model['name']}:v1"
    data = model["files"]["model.safetensors"]
    with OciMount(registry, ref, tmp_path / "a", keys["trusted"], "--cache-dir", cache) as m:
        read_all(m.mnt / model["name"], model["files"])
    big = [p for p in blobs(cache).glob("*.data") if p.stat().st_size == len(data)]
    assert len(big) == 1
    with open(big[0], "r+b") as f:
        f.seek(MiB + 100)
        b = f.read(1)
        f.seek(MiB + 100)
        f.write(bytes([b[0] ^ 0xFF]))
    drop_caches()
    with OciMount(registry, ref, tmp_path / "b", keys["trusted"], "--cache-dir", cache) as m:
        f = m.mnt / model["name"] / "model.safetensors"
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            assert os.pread(fd, 4096, MiB) == data[MiB:MiB + 4096]
            assert os.pread(fd, 4096, 0) == data[:4096]
            assert os.pread(fd, 4096, MiB + 65536) == data[MiB + 65536:MiB + 65536 + 4096]
        finally:
            os.close(fd)
        log = m.log()
        assert "verify-failure" in log and "remote-cache-forget" in log, log
        assert m.status()["counters"]["remote_bytes"] > 0  # fetched again
    with open(big[0], "rb") as f:
        f.seek(MiB + 100)
        assert f.read(1) == data[MiB + 100:MiB + 101]  # the chunk was refilled


def test_tiny_cache_stays_bounded(registry, keys, registry_model_big, tmp_path):
    model = registry_model_big
    cache = tmp_path / "small.cache"
    with OciMount(registry, f"{model['name']}:v1", tmp_path / "mnt", keys["trusted"],
                  "--remote-cache-size", "3M", "--cache-dir", cache) as m:
        read_all(m.mnt / model["name"], model["files"])
        drop_caches()
        read_all(m.mnt / model["name"], model["files"])
        c = m.status()["counters"]
        assert c["remote_cache_evictions"] > 0, c
        # a bound of 3 MiB, exceeded by at most one fill (4 MiB) before the scan
        assert disk_bytes(blobs(cache)) <= 3 * MiB + 64 * 1024, c
    assert disk_bytes(blobs(cache)) <= 3 * MiB + 64 * 1024


@pytest.fixture
def registry_model_big(registry, keys, auth, tmp_path):  # noqa: F811
    """A model of five 1 MiB files: more than a 3 MiB cache holds."""
    files = {f"w{i}.bin": b"\0" + os.urandom(MiB - 1) for i in range(5)}
    d = tmp_path / "model"
    for rel, data in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(data)
    from remote.oci_registry import run
    run("seal", "--key", f"{keys['trusted']}.key", "--name", "org/tinycache", d, check=0)
    m = {"dir": d, "files": files, "name": "org/tinycache"}
    push(registry, keys, m, "org/tinycache:v1")
    return m


def test_two_mounts_at_once_share_the_cache(registry, keys, model, tmp_path):
    cache = tmp_path / "shared.cache"
    ref = f"{model['name']}:v1"
    with OciMount(registry, ref, tmp_path / "a", keys["trusted"], "--cache-dir", cache) as a, \
            OciMount(registry, ref, tmp_path / "b", keys["trusted"], "--cache-dir", cache) as b:
        ra, rb = a.mnt / model["name"], b.mnt / model["name"]
        read_all(ra, model["files"])
        before = b.status()["counters"]
        read_all(rb, model["files"])
        c = b.status()["counters"]
        # b found a's chunks on disk: nothing of the big file came from the network
        assert c["remote_bytes"] - before["remote_bytes"] < MiB, (before, c)
        assert c["remote_cache_hits"] > 0, c
        drop_caches()
        read_all(ra, model["files"])
        read_all(rb, model["files"])


@pytest.fixture
def model_seq(registry, keys, auth, tmp_path):  # noqa: F811
    """One 40 MiB file: several windows of a sequential reader."""
    files = {"weights.bin": b"\0" + os.urandom(40 * MiB - 1)}
    d = tmp_path / "model"
    d.mkdir()
    (d / "weights.bin").write_bytes(files["weights.bin"])
    from remote.oci_registry import run
    run("seal", "--key", f"{keys['trusted']}.key", "--name", "org/seqfill", d, check=0)
    m = {"dir": d, "files": files, "name": "org/seqfill"}
    push(registry, keys, m, "org/seqfill:v1")
    return m


def test_background_fill_runs_ahead_of_a_sequential_reader(registry, keys, model_seq,
                                                           tmp_path):
    """A sequential reader's next window is fetched on the cache's own thread while it
    reads the one before: the bytes are right, and chunks were fetched ahead."""
    data = model_seq["files"]["weights.bin"]
    with OciMount(registry, "org/seqfill:v1", tmp_path / "mnt", keys["trusted"]) as m:
        with open(m.mnt / "org" / "seqfill" / "weights.bin", "rb") as f:
            got = b"".join(iter(lambda: f.read(MiB), b""))
        assert got == data
        c = m.status()["counters"]
        assert c["remote_cache_ahead"] > 0, c
        # every byte fetched once: ahead or on a miss, never both
        assert c["remote_bytes"] <= len(data) + MiB, c
        # fewer GETs than 1 MiB READs (how many depends on timing: 15 here, 23 under ASan)
        assert c["remote_requests"] < len(data) // MiB, c
        metrics = (m.mnt / ".modelfs" / "metrics.prom").read_text()
        assert "modelfs_remote_cache_ahead_total" in metrics


def test_background_fill_of_a_corrupted_blob_never_serves_its_bytes(registry, keys, model_seq,
                                                                    tmp_path):
    """Bytes fetched ahead are verified like any others: the corrupted block gives EIO
    (after one fetch again), every byte before it is right."""
    data = model_seq["files"]["weights.bin"]
    import hashlib
    hexd = hashlib.sha256(data).hexdigest()
    blob = (registry.root / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" /
            hexd[:2] / hexd / "data")
    bad = 21 * MiB + 4097  # inside a window fetched ahead
    raw = bytearray(blob.read_bytes())
    raw[bad] ^= 0xFF
    blob.write_bytes(bytes(raw))
    try:
        with OciMount(registry, "org/seqfill:v1", tmp_path / "mnt", keys["trusted"]) as m:
            got = bytearray()
            with open(m.mnt / "org" / "seqfill" / "weights.bin", "rb", buffering=0) as f:
                with pytest.raises(OSError) as ei:
                    while True:
                        b = f.read(MiB)
                        if not b:
                            break
                        got += b
            assert ei.value.errno == errno.EIO
            assert len(got) <= bad and bytes(got) == data[:len(got)]
            assert len(got) >= 20 * MiB  # the reads before the bad block succeeded
            assert m.status()["counters"]["remote_cache_ahead"] > 0
    finally:
        raw[bad] ^= 0xFF
        blob.write_bytes(bytes(raw))


def test_registry_stopped_cached_model_still_reads(registry, keys, model, tmp_path):
    """Last in the module: it stops the module's registry for good."""
    cache = tmp_path / "shared.cache"
    ref = f"{model['name']}:v1"
    with OciMount(registry, ref, tmp_path / "a", keys["trusted"], "--cache-dir", cache) as m:
        read_all(m.mnt / model["name"], model["files"])
    # A new mount still resolves the tag at start: mounted, then the registry stops.
    with OciMount(registry, ref, tmp_path / "b", keys["trusted"], "--cache-dir", cache) as m:
        stop_registry(registry)
        drop_caches()
        before = m.status()["counters"]
        read_all(m.mnt / model["name"], model["files"])
        c = m.status()["counters"]
        assert c["remote_bytes"] == before["remote_bytes"], c
        assert c["remote_cache_hits"] > 0, c
        assert "remote-read-failure" not in m.log()

