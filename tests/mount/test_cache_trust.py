"""Issue #11 section 5: the transcode and tree cache is trusted only when no one else can write it.

Real FUSE mounts as root. The daemon refuses, before mounting, a cache folder
(or trees/, transcoded/, a folder above it, or its key) that another user
owns or could write, with one line on stderr and exit status 2. Cached
transcoded outputs are reused only when their record, HMAC-SHA-256'd with
the cache's own key, names the source's signed digests and the output's
SHA-256: a swapped, edited, forged or old-format entry is rebuilt.

Checkpoints are made with torch.save in subprocesses; every comparison with
torch.load of a source runs in a throwaway subprocess too.
"""
import base64
import hashlib
import hmac
import json
import os
import shutil
import struct
import subprocess

import pytest

from conftest import modelfs_bin
from test_mount import Mount, force_unmount, is_mounted, keys, seal  # noqa: F401 (keys: fixture)
from test_transcode_view import torch_save

pytest.importorskip("torch")

NOBODY = 65534
VIEW = "model.safetensors"
SRC = "pytorch_model.bin"
# Same names, shapes and dtypes: the two outputs have the same size and header.
SD = """
torch.manual_seed({seed})
sd = {{'layer.weight': torch.randn(64, 64), 'layer.bias': torch.randn(64),
      'emb': torch.randn(32, 16).half()}}
"""

# Compares a safetensors file with torch.load of a checkpoint, bit for bit.
# Runs in a subprocess: nothing is unpickled in the test process.
COMPARE = r"""
import json, struct, sys, torch
data = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', data[:8])[0]
hdr = json.loads(data[8:8 + n])
hdr.pop('__metadata__', None)
sd = torch.load(sys.argv[2], map_location='cpu')
assert set(hdr) == set(sd), (sorted(hdr), sorted(sd))
for name, t in sd.items():
    b, e = hdr[name]['data_offsets']
    t = t.detach().contiguous()
    ref = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
    assert data[8 + n + b:8 + n + e] == ref, name
print('same')
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory, keys):  # noqa: F811
    root = tmp_path_factory.mktemp("cachetrust") / "store"
    for seed, name in [(1, "v1"), (2, "v2")]:
        torch_save(root / "org" / name / SRC, SD.format(seed=seed))
        seal(root / "org" / name, keys["trusted"])
    return root


def pub(keys):  # noqa: F811
    return f"{keys['trusted']}.pub"


def same_as_source(data: bytes, src, tmp_path) -> bool:
    """Does safetensors @data hold exactly the tensors of checkpoint @src? (subprocess)"""
    f = tmp_path / "view-copy.safetensors"
    f.write_bytes(data)
    p = subprocess.run(["/usr/bin/python3", "-c", COMPARE, str(f), str(src)],
                       capture_output=True, text=True, timeout=300)
    f.unlink()
    return p.returncode == 0 and p.stdout.strip() == "same"


def mount_refused(tmp_path, keys, store, cache):  # noqa: F811
    """Runs a mount that must fail at start; returns (exit status, stderr)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir(exist_ok=True)
    try:
        p = subprocess.run([modelfs_bin(), "mount", "-f", "--trust", pub(keys), "--cache-dir",
                            str(cache), str(store), str(mnt)],
                           capture_output=True, text=True, timeout=60)
    finally:
        force_unmount(mnt)
    assert not is_mounted(mnt)
    return p.returncode, p.stderr


def assert_refused(tmp_path, keys, store, cache, folder, owner, mode, reason):  # noqa: F811
    """Exit status 2 and one line naming the folder, its owner and mode, and why."""
    status, err = mount_refused(tmp_path, keys, store, cache)
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"modelfs: {folder}: untrusted "), err
    assert f"(owner uid {owner}, mode {mode:04o})" in lines[0], err
    assert reason in lines[0], err


def mount(tmp_path, keys, store, cache):  # noqa: F811
    return Mount(store, tmp_path / "mnt", pub(keys), cache=cache)


def counters(m):
    c = m.status()["counters"]
    return c["transcodes"], c["transcode_reuses"], c["transcode_rejected"]


def entries(cache):
    """{model path: (output, record)} of the cached outputs, from their records."""
    out = {}
    for rec in (cache / "transcoded").glob("*.safetensors.record"):
        body = json.loads(rec.read_text().splitlines()[1])
        output = rec.with_name(rec.name[:-len(".record")])
        out[body["source"]["model"]] = (output, rec)
    return out


def record_parts(rec):
    """(version line, JSON line, MAC hex) of a record."""
    magic, body, mac = rec.read_text().splitlines()
    assert magic == "modelfs-transcode-record 2" and mac.startswith("hmac-sha256 ")
    return magic, body, mac[len("hmac-sha256 "):]


def write_record(rec, body: str, key: bytes):
    """A record as modelfs writes it, MAC'd with @key."""
    head = f"modelfs-transcode-record 2\n{body}\n".encode()
    mac = hmac.new(key, head, hashlib.sha256).hexdigest()
    replace_file(rec, head + f"hmac-sha256 {mac}\n".encode())


def replace_file(path, data: bytes):
    """What the attacker does: new bytes, same owner (root) and mode (0400)."""
    os.chmod(path, 0o600)
    path.write_bytes(data)
    os.chmod(path, 0o400)


def header(data: bytes) -> bytes:
    return data[:8 + struct.unpack("<Q", data[:8])[0]]


@pytest.fixture
def warm(tmp_path, keys, store):  # noqa: F811
    """A cache holding both models' outputs, and what they are: {model: bytes}."""
    cache = tmp_path / "cache"
    good = {}
    with mount(tmp_path, keys, store, cache) as m:
        for name in ["v1", "v2"]:
            good[f"org/{name}"] = (m.mnt / "org" / name / VIEW).read_bytes()
        assert counters(m) == (2, 0, 0)
    for name in ["v1", "v2"]:
        assert same_as_source(good[f"org/{name}"], store / "org" / name / SRC, tmp_path)
    assert good["org/v1"] != good["org/v2"]
    return cache, good


# ---------------------------------------------------------------------------
# (1), (2): the cache folder, its subfolders, the folders above it, the key
# ---------------------------------------------------------------------------

def test_cache_owned_by_another_user_refused(tmp_path, keys, store):  # noqa: F811
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    os.chown(cache, NOBODY, NOBODY)
    assert_refused(tmp_path, keys, store, cache, cache, NOBODY, 0o700,
                   "not owned by uid 0 (the daemon's user)")
    assert not (cache / "trees").exists()  # nothing was created in it


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o720, 0o702], ids=oct)
def test_cache_writable_by_others_refused(tmp_path, keys, store, mode):  # noqa: F811
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chmod(cache, mode)
    assert_refused(tmp_path, keys, store, cache, cache, 0, mode,
                   "writable by group or others")


@pytest.mark.parametrize("sub", ["trees", "transcoded"])
def test_subfolder_writable_by_others_refused(tmp_path, keys, store, sub):  # noqa: F811
    cache = tmp_path / "cache"
    with mount(tmp_path, keys, store, cache):
        pass
    os.chmod(cache / sub, 0o777)
    assert_refused(tmp_path, keys, store, cache, cache / sub, 0, 0o777,
                   "writable by group or others")
    os.chmod(cache / sub, 0o700)
    os.chown(cache / sub, NOBODY, NOBODY)
    assert_refused(tmp_path, keys, store, cache, cache / sub, NOBODY, 0o700,
                   "not owned by uid 0")


def test_subfolder_symlink_refused(tmp_path, keys, store):  # noqa: F811
    cache = tmp_path / "cache"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    cache.mkdir(mode=0o700)
    (cache / "transcoded").symlink_to(elsewhere)
    status, err = mount_refused(tmp_path, keys, store, cache)
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{cache}/transcoded: cannot open or create cache folder" in err


def test_folder_above_refused(tmp_path, keys, store):  # noqa: F811
    above = tmp_path / "above"
    above.mkdir()
    os.chmod(above, 0o777)  # anyone could rename the cache folder away
    assert_refused(tmp_path, keys, store, above / "cache", above, 0, 0o777,
                   "folder above the cache folder (owner uid 0, mode 0777): writable by")
    os.chmod(above, 0o755)
    os.chown(above, NOBODY, NOBODY)
    assert_refused(tmp_path, keys, store, above / "cache", above, NOBODY, 0o755,
                   "owned by neither root nor uid 0")
    assert not (above / "cache").exists()


def test_sticky_folder_above_needs_private_cache(tmp_path, keys, store):  # noqa: F811
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp
    cache = shared / "cache"
    cache.mkdir()
    os.chmod(cache, 0o755)
    assert_refused(tmp_path, keys, store, cache, cache, 0, 0o755,
                   "below a shared sticky folder it must be mode 0700")
    os.chmod(cache, 0o700)
    with mount(tmp_path, keys, store, cache) as m:
        assert (m.mnt / "org" / "v1" / VIEW).stat().st_size > 0


def test_created_folders_and_key_are_private(tmp_path, keys, store):  # noqa: F811
    cache = tmp_path / "new" / "a" / "cache"
    with mount(tmp_path, keys, store, cache) as m:
        (m.mnt / "org" / "v1" / VIEW).read_bytes()
    for d in [tmp_path / "new", tmp_path / "new" / "a", cache, cache / "trees",
              cache / "transcoded"]:
        st = os.stat(d)
        assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o700), d
    st = os.stat(cache / "cache.key")
    assert (st.st_uid, st.st_mode & 0o7777, st.st_size) == (0, 0o600, 32)
    for f in (cache / "transcoded").iterdir():
        assert f.name.endswith((".safetensors", ".safetensors.record")), f
        assert os.stat(f).st_mode & 0o7777 == 0o400, f


def test_untrusted_key_refused(tmp_path, keys, store):  # noqa: F811
    cache = tmp_path / "cache"
    with mount(tmp_path, keys, store, cache):
        pass
    key = cache / "cache.key"
    os.chmod(key, 0o644)
    assert_refused(tmp_path, keys, store, cache, key, 0, 0o644,
                   "readable or writable by group or others")
    os.chmod(key, 0o600)
    os.chown(key, NOBODY, NOBODY)
    assert_refused(tmp_path, keys, store, cache, key, NOBODY, 0o600, "not owned by uid 0")
    key.unlink()
    (tmp_path / "other.key").write_bytes(os.urandom(32))
    key.symlink_to(tmp_path / "other.key")
    status, err = mount_refused(tmp_path, keys, store, cache)
    assert status == 2 and f"{key}: cache key" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------
# (3)-(6): cache entries
# ---------------------------------------------------------------------------

def test_swapped_entries_never_serve_the_other_model(tmp_path, keys, store, warm):  # noqa: F811
    cache, good = warm
    ent = entries(cache)
    (out1, rec1), (out2, rec2) = ent["org/v1"], ent["org/v2"]
    # The attacker swaps the two outputs together with their records.
    tmp = out1.with_name("swap.tmp")
    for a, b in [(out1, out2), (rec1, rec2)]:
        os.rename(a, tmp)
        os.rename(b, a)
        os.rename(tmp, b)
    # Everything the old check looked at agrees with the swap: same size and
    # header as planned, owned by us and read-only, and each output's SHA-256
    # is the one recorded next to it (the old plain .sha256 record would say
    # exactly this). The old check would have served v1's tensors as v2.
    for out, rec in [(out1, rec1), (out2, rec2)]:
        st = os.stat(out)
        assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o400)
        body = json.loads(record_parts(rec)[1])
        assert body["output"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert out2.read_bytes() == good["org/v1"]
    assert len(good["org/v1"]) == len(good["org/v2"])
    assert header(good["org/v1"]) == header(good["org/v2"])
    # What stops it: the record names its source's signed digests.
    with mount(tmp_path, keys, store, cache) as m:
        got = {name: (m.mnt / name / VIEW).read_bytes() for name in ["org/v1", "org/v2"]}
        assert counters(m) == (2, 0, 2)
        log = m.log()
    assert log.count("reason=\"record names another source\"") == 2, log
    for name, other in [("org/v1", "org/v2"), ("org/v2", "org/v1")]:
        assert got[name] == good[name] and got[name] != good[other]
        assert same_as_source(got[name], store / name / SRC, tmp_path)
    # The rebuilt entries are right again and reused.
    with mount(tmp_path, keys, store, cache) as m:
        assert (m.mnt / "org" / "v2" / VIEW).read_bytes() == good["org/v2"]
        assert counters(m) == (0, 1, 0)


def test_edited_output_with_recomputed_sha256(tmp_path, keys, store, warm):  # noqa: F811
    cache, good = warm
    out, rec = entries(cache)["org/v1"]
    data = bytearray(out.read_bytes())
    data[-3] ^= 0x5A  # a tensor byte, not the header
    replace_file(out, bytes(data))
    # The attacker re-computes the SHA-256 in the record (and writes the old
    # plain record too), but cannot re-compute the MAC.
    magic, body, mac = record_parts(rec)
    fields = json.loads(body)
    fields["output"]["sha256"] = hashlib.sha256(data).hexdigest()
    forged = json.dumps(fields, separators=(",", ":"))
    replace_file(rec, f"{magic}\n{forged}\nhmac-sha256 {mac}\n".encode())
    (out.with_name(out.name + ".sha256")).write_text(hashlib.sha256(data).hexdigest() + "\n")
    # The old check (size, header, owner and mode, SHA-256 equal to the
    # record) passes on this entry: only the MAC catches it.
    st = os.stat(out)
    assert (st.st_size, st.st_uid, st.st_mode & 0o7777) == (len(good["org/v1"]), 0, 0o400)
    assert header(bytes(data)) == header(good["org/v1"])
    assert json.loads(forged)["output"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    with mount(tmp_path, keys, store, cache) as m:
        assert (m.mnt / "org" / "v1" / VIEW).read_bytes() == good["org/v1"]
        assert counters(m) == (1, 0, 1)
        assert "record MAC does not verify" in m.log()
    assert out.read_bytes() == good["org/v1"]
    assert not out.with_name(out.name + ".sha256").exists()  # the old record is gone
    # An edited byte with the record left alone: the output's hash differs.
    replace_file(out, bytes(data))
    with mount(tmp_path, keys, store, cache) as m:
        assert (m.mnt / "org" / "v1" / VIEW).read_bytes() == good["org/v1"]
        assert counters(m) == (1, 0, 1)
        assert "output differs from the SHA-256 in its record" in m.log()


def test_forged_record_wrong_mac(tmp_path, keys, store, warm):  # noqa: F811
    cache, good = warm
    out, rec = entries(cache)["org/v2"]
    body = record_parts(rec)[1]
    key = (cache / "cache.key").read_bytes()
    # The test writes records exactly as modelfs does: with the cache's key
    # this one is accepted (so the refusal below is the MAC's doing) ...
    write_record(rec, body, key)
    with mount(tmp_path, keys, store, cache) as m:
        assert (m.mnt / "org" / "v2" / VIEW).read_bytes() == good["org/v2"]
        assert counters(m) == (0, 1, 0)
    # ... and with any other key, the same record is refused. Here the
    # attacker makes v2's entry hold v1's output, with a record naming v2's
    # source and v1's output bytes.
    replace_file(out, good["org/v1"])
    fields = json.loads(body)
    fields["output"]["sha256"] = hashlib.sha256(good["org/v1"]).hexdigest()
    write_record(rec, json.dumps(fields, separators=(",", ":")), os.urandom(32))
    with mount(tmp_path, keys, store, cache) as m:
        data = (m.mnt / "org" / "v2" / VIEW).read_bytes()
        assert counters(m) == (1, 0, 1)
        assert "record MAC does not verify" in m.log()
    assert data == good["org/v2"] and same_as_source(data, store / "org/v2" / SRC, tmp_path)


@pytest.mark.parametrize("where", ["sidecar", "record"])
def test_old_format_record_rebuilt(tmp_path, keys, store, warm, where):  # noqa: F811
    """Version 1 wrote "<sha256 hex>\\n" to <digest>.safetensors.sha256, without a MAC."""
    cache, good = warm
    out, rec = entries(cache)["org/v1"]
    old = (hashlib.sha256(out.read_bytes()).hexdigest() + "\n").encode()
    if where == "sidecar":
        rec.unlink()
        out.with_name(out.name + ".sha256").write_bytes(old)
    else:
        replace_file(rec, old)
    with mount(tmp_path, keys, store, cache) as m:
        assert (m.mnt / "org" / "v1" / VIEW).read_bytes() == good["org/v1"]
        assert counters(m) == (1, 0, 1)
        assert "old-format record (version 1, no MAC)" in m.log()
    assert record_parts(rec)[0] == "modelfs-transcode-record 2"
    assert not out.with_name(out.name + ".sha256").exists()


def test_record_names_source(tmp_path, keys, store, warm):  # noqa: F811
    """The record names the source's signed digests, model, statement and the output."""
    cache, good = warm
    out, rec = entries(cache)["org/v1"]
    body = json.loads(record_parts(rec)[1])
    sig = json.loads((store / "org" / "v1" / "model.sig").read_text())
    payload = base64.b64decode(sig["dsseEnvelope"]["payload"])
    (f,) = [x for x in json.loads(payload)["predicate"]["modelfs"]["files"] if x["name"] == SRC]
    src = store / "org" / "v1" / SRC
    assert body["source"] == {
        "size": src.stat().st_size,
        "sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
        "fsverity_alg": "sha256", "fsverity_digest": f["fsverity_digest"],
        "model": "org/v1", "file": SRC,
        "statement_sha256": hashlib.sha256(payload).hexdigest()}
    assert body["output"] == {"size": len(good["org/v1"]),
                              "sha256": hashlib.sha256(good["org/v1"]).hexdigest()}
    assert out.name == f["fsverity_digest"] + ".safetensors"


def test_unusable_key_folder_gives_eio_not_bytes(tmp_path, keys, store, warm):  # noqa: F811
    """Without a key (read-only cache), nothing cached is trusted: EIO, never stale bytes."""
    cache, good = warm
    ro = tmp_path / "ro"
    shutil.copytree(cache, ro, symlinks=True)
    (ro / "cache.key").unlink()
    subprocess.run(["mount", "--bind", str(ro), str(ro)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
        with mount(tmp_path, keys, store, ro) as m:
            with pytest.raises(OSError) as e:
                (m.mnt / "org" / "v1" / VIEW).read_bytes()
            assert e.value.errno == 5
            assert "cache-key-warning" in m.log() and "no cache key" in m.log()
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)
