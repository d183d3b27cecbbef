"""Bad input for seal / verify / inspect (issue 2, section 4).

Every case asserts the documented exit status, a one-line message naming
the offending file, and that nothing was left behind (no model.sig, no
.modelfs folder, no temporary file; a failed verify changes nothing).

Hand-made signatures are built here, not with modelfs: the statement JSON is
written in Python and the DSSE PAE is signed with `openssl dgst -sign` using
a P-256 key made by `modelfs keygen`, so the parser sees exactly the bytes a
hostile signer would send.

Unreadable files: tests run as root, and root reads a chmod 000 file anyway.
The unreadable cases therefore run modelfs under `setpriv` with
CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH removed from the bounding set, so
that the kernel's permission check applies to it as to any other user.
"""
import base64
import hashlib
import json
import os
import pathlib
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import modelfs_bin, run_modelfs

PAYLOAD_TYPE = "application/vnd.in-toto+json"
MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def snapshot(root: pathlib.Path):
    """Every path below root with its size and mtime: to show nothing changed."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[p.relative_to(root).as_posix()] = (stat.S_IFMT(st.st_mode), st.st_size,
                                                st.st_mtime_ns)
    return out


def error_lines(p):
    return [ln for ln in p.stderr.splitlines() if not ln.startswith("warning: ")]


def assert_one_line(p, *needles):
    lines = error_lines(p)
    assert len(lines) == 1, p.stderr
    for n in needles:
        assert n in lines[0], p.stderr


def assert_nothing_written(m: pathlib.Path, before=None):
    assert not (m / "model.sig").exists()
    assert not (m / ".modelfs").exists()
    assert not [p for p in m.rglob("*") if ".tmp" in p.name]
    if before is not None:
        assert snapshot(m) == before


def small_model(root: pathlib.Path) -> pathlib.Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "sub" / "b.bin").write_bytes(os.urandom(10000))
    return root


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("key") / "k"
    run_modelfs("keygen", prefix, check=0)
    return prefix


@pytest.fixture(scope="module")
def other_key(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("key2") / "k"
    run_modelfs("keygen", prefix, check=0)
    return prefix


def hint_of(prefix) -> str:
    """OMS hint: SHA-256 of the public key re-serialized as canonical PEM."""
    pem = subprocess.run(["openssl", "pkey", "-pubin", "-in", f"{prefix}.pub"], check=True,
                         capture_output=True).stdout
    return hashlib.sha256(pem).hexdigest()


def statement_for(m: pathlib.Path, files=None):
    """A plain OMS statement for the files of m, as model_signing writes it."""
    files = files or sorted((p.relative_to(m).as_posix() for p in m.rglob("*") if p.is_file()),
                            key=str.encode)
    res = [{"name": n, "algorithm": "sha256",
            "digest": hashlib.sha256((m / n).read_bytes()).hexdigest()} for n in files]
    subject = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in res)).hexdigest()
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": m.name, "digest": {"sha256": subject}}],
        "predicateType": "https://model_signing/signature/v1.0",
        "predicate": {
            "resources": res,
            "serialization": {"method": "files", "hash_type": "sha256",
                              "allow_symlinks": False, "ignore_paths": ["model.sig"]},
        },
    }


def sign_bundle(prefix, payload: bytes, payload_type=PAYLOAD_TYPE, media_type=MEDIA_TYPE,
                hint=None):
    """A Sigstore bundle v0.3 with a DSSE envelope, signed with P-256 key `prefix`."""
    t = payload_type.encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)
    with tempfile.TemporaryDirectory() as d:
        (pathlib.Path(d) / "pae").write_bytes(pae)
        subprocess.run(["openssl", "dgst", "-sha256", "-sign", f"{prefix}.key", "-out",
                        f"{d}/sig", f"{d}/pae"], check=True, capture_output=True)
        sig = (pathlib.Path(d) / "sig").read_bytes()
    return {
        "mediaType": media_type,
        "verificationMaterial": {"publicKey": {"hint": hint or hint_of(prefix)},
                                 "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": payload_type,
            "signatures": [{"sig": base64.b64encode(sig).decode(), "keyid": ""}],
        },
    }


def write_sig(m: pathlib.Path, bundle):
    text = bundle if isinstance(bundle, (str, bytes)) else json.dumps(bundle)
    mode = "wb" if isinstance(text, bytes) else "w"
    with open(m / "model.sig", mode) as f:
        f.write(text)


def verify(m, key, *extra, check):
    before = snapshot(m)
    p = run_modelfs("verify", "--trust", f"{key}.pub", *extra, m, check=check)
    assert snapshot(m) == before
    return p


# --------------------------------------------------------------------------
# the model folder: symlinks, special files, unreadable files, changes
# --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["file", "dir", "dangling", "escape"])
def test_seal_refuses_symlinks(tmp_path, key, kind):
    m = small_model(tmp_path / "m")
    link = m / "sub" / "link"
    target = {"file": m / "a.txt", "dir": m / "sub", "dangling": m / "nowhere",
              "escape": pathlib.Path("/etc")}[kind]
    link.symlink_to(target)
    before = snapshot(m)
    p = run_modelfs("seal", "--key", f"{key}.key", m, check=2)
    assert_one_line(p, "sub/link", "symlink, refused")
    assert_nothing_written(m, before)


def test_verify_refuses_symlinks(tmp_path, key):
    m = small_model(tmp_path / "m")
    run_modelfs("seal", "--key", f"{key}.key", m, check=0)
    # An unsigned symlink, and a signed file replaced by a link to the same bytes.
    (m / "extra").symlink_to(m / "a.txt")
    shutil.copy(m / "sub" / "b.bin", tmp_path / "b.bin")
    (m / "sub" / "b.bin").unlink()
    (m / "sub" / "b.bin").symlink_to(tmp_path / "b.bin")
    p = verify(m, key, check=1)
    lines = error_lines(p)
    assert "extra: symlink, refused" in lines
    assert "sub/b.bin: symlink, refused" in lines
    assert len(lines) == 2


def test_verify_refuses_symlinked_folder_on_path(tmp_path, key):
    m = small_model(tmp_path / "m")
    run_modelfs("seal", "--key", f"{key}.key", m, check=0)
    shutil.move(m / "sub", tmp_path / "sub")
    (m / "sub").symlink_to(tmp_path / "sub")
    lines = error_lines(verify(m, key, check=1))
    assert any(ln.startswith("sub/b.bin: ") for ln in lines), lines
    assert "sub: symlink, refused" in lines


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_seal_refuses_special_files(tmp_path, key, kind):
    m = small_model(tmp_path / "m")
    special = m / "sub" / "special"
    if kind == "fifo":
        os.mkfifo(special)
    else:
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(special))
        s.close()
    before = snapshot(m)
    p = run_modelfs("seal", "--key", f"{key}.key", m, check=2, timeout=60)
    assert_one_line(p, "sub/special", f"special file ({kind}), refused")
    assert_nothing_written(m, before)


def test_verify_fifo_in_place_of_signed_file_does_not_hang(tmp_path, key):
    m = small_model(tmp_path / "m")
    run_modelfs("seal", "--key", f"{key}.key", m, check=0)
    (m / "a.txt").unlink()
    os.mkfifo(m / "a.txt")
    p = run_modelfs("verify", "--trust", f"{key}.pub", m, check=1, timeout=60)
    assert error_lines(p) == ["a.txt: special file (fifo), refused"]


def test_model_path_must_be_folder_or_file(tmp_path, key):
    os.mkfifo(tmp_path / "fifo")
    p = run_modelfs("seal", "--key", f"{key}.key", tmp_path / "fifo", check=2, timeout=60)
    assert_one_line(p, "fifo", "not a folder or a regular file")
    run_modelfs("verify", "--trust", f"{key}.pub", tmp_path / "fifo", check=2, timeout=60)
    p = run_modelfs("seal", "--key", f"{key}.key", tmp_path / "absent", check=2)
    assert_one_line(p, "absent")


def run_without_dac(*args):
    """modelfs ARGS without the capabilities that let root ignore file modes."""
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is needed to drop CAP_DAC_OVERRIDE as root")
    cmd = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", modelfs_bin(),
           *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("what", ["file", "folder"])
def test_seal_unreadable(tmp_path, key, what):
    m = small_model(tmp_path / "m")
    target = m / "a.txt" if what == "file" else m / "sub"
    target.chmod(0)
    before = snapshot(m)
    try:
        p = run_without_dac("seal", "--key", f"{key}.key", m)
    finally:
        target.chmod(0o755)
    assert p.returncode == 2, p.stderr
    if what == "file":
        assert_one_line(p, "a.txt", "unreadable", "Permission denied")
    else:
        assert_one_line(p, "sub", "cannot open folder", "Permission denied")
    assert_nothing_written(m, before)


def test_verify_unreadable_is_io_error(tmp_path, key):
    m = small_model(tmp_path / "m")
    run_modelfs("seal", "--key", f"{key}.key", m, check=0)
    (m / "a.txt").chmod(0)
    try:
        p = run_without_dac("verify", "--trust", f"{key}.pub", m)
    finally:
        (m / "a.txt").chmod(0o644)
    assert p.returncode == 2, p.stderr
    assert error_lines(p) == ["a.txt: unreadable: Permission denied"]


def test_seal_detects_file_changed_while_sealing(tmp_path, key):
    """A writer keeps touching a large sparse file for the whole seal."""
    m = small_model(tmp_path / "m")
    big = m / "big.bin"
    with open(big, "wb") as f:
        f.truncate(512 << 20)  # sparse: hashing it takes long enough
    stop = threading.Event()

    def writer():
        fd = os.open(big, os.O_WRONLY)
        try:
            i = 0
            while not stop.is_set():
                os.pwrite(fd, bytes([i & 0xff]), (i * 4096) % (512 << 20))
                i += 1
                time.sleep(0.002)
        finally:
            os.close(fd)

    t = threading.Thread(target=writer)
    t.start()
    try:
        p = run_modelfs("seal", "--key", f"{key}.key", m, check=2)
    finally:
        stop.set()
        t.join()
    assert_one_line(p, "big.bin", "changed while sealing")
    assert_nothing_written(m)


def test_failed_seal_keeps_old_signature(tmp_path, key):
    m = small_model(tmp_path / "m")
    run_modelfs("seal", "--key", f"{key}.key", m, check=0)
    sig = (m / "model.sig").read_bytes()
    trees = snapshot(m / ".modelfs")
    (m / "link").symlink_to(m / "a.txt")
    run_modelfs("seal", "--key", f"{key}.key", m, check=2)
    assert (m / "model.sig").read_bytes() == sig
    assert snapshot(m / ".modelfs") == trees
    assert not [p for p in m.rglob("*") if ".tmp" in p.name]


def test_seal_empty_folder(tmp_path, key):
    m = tmp_path / "m"
    (m / ".git").mkdir(parents=True)
    (m / ".git" / "HEAD").write_text("x")
    p = run_modelfs("seal", "--key", f"{key}.key", m, check=2)
    assert_one_line(p, "no files to sign")
    assert_nothing_written(m)


def test_hidden_dir_symlink_refused(tmp_path, key):
    m = small_model(tmp_path / "m")
    (tmp_path / "elsewhere").mkdir()
    (m / ".modelfs").symlink_to(tmp_path / "elsewhere")
    p = run_modelfs("seal", "--key", f"{key}.key", m, check=2)
    assert_one_line(p, ".modelfs", "symlink")
    assert not (m / "model.sig").exists()
    assert not list((tmp_path / "elsewhere").iterdir())


# --------------------------------------------------------------------------
# resource names and sizes in hand-made signatures
# --------------------------------------------------------------------------

BAD_NAMES = ["../x", "/abs", "a//b", "./a", "", "a\u0000b", "sub/", "a/../b"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_resource_names(tmp_path, key, name):
    m = small_model(tmp_path / "m")
    st = statement_for(m)
    st["predicate"]["resources"].append({"name": name, "algorithm": "sha256",
                                         "digest": "00" * 32})
    write_sig(m, sign_bundle(key, json.dumps(st).encode()))
    p = verify(m, key, check=1)
    assert_one_line(p, "model.sig")


def test_duplicate_resource_names(tmp_path, key):
    m = small_model(tmp_path / "m")
    st = statement_for(m)
    st["predicate"]["resources"].append(dict(st["predicate"]["resources"][0]))
    write_sig(m, sign_bundle(key, json.dumps(st).encode()))
    p = verify(m, key, check=1)
    assert_one_line(p, "model.sig", "a.txt")


def sealed_statement(m, key):
    """Seals m with modelfs and returns its statement (with the extension)."""
    run_modelfs("seal", "--key", f"{key}.key", m, check=0)
    bundle = json.loads((m / "model.sig").read_text())
    return json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))


@pytest.mark.parametrize("size", [1e300, -1, 2 ** 64, 2 ** 53 + 1, 1.5, "10"])
def test_extension_size_overflow(tmp_path, key, size):
    m = small_model(tmp_path / "m")
    st = sealed_statement(m, key)
    st["predicate"]["modelfs"]["files"][0]["size"] = size
    write_sig(m, sign_bundle(key, json.dumps(st).encode()))
    p = verify(m, key, check=1)
    assert_one_line(p, "model.sig")


def test_extension_wrong_fsverity_digest(tmp_path, key):
    m = small_model(tmp_path / "m")
    st = sealed_statement(m, key)
    f = st["predicate"]["modelfs"]["files"][0]
    f["fsverity_digest"] = ("ff" if f["fsverity_digest"][:2] != "ff" else "00") + \
        f["fsverity_digest"][2:]
    write_sig(m, sign_bundle(key, json.dumps(st).encode()))
    assert_one_line(verify(m, key, check=1), "model.sig")


# --------------------------------------------------------------------------
# JSON problems
# --------------------------------------------------------------------------

def mutate_bundle(bundle, path, value):
    obj = bundle
    for k in path[:-1]:
        obj = obj[k]
    obj[path[-1]] = value


@pytest.mark.parametrize("path,value", [
    (["mediaType"], 1),
    (["mediaType"], "application/vnd.dev.sigstore.bundle.v9+json"),
    (["dsseEnvelope"], []),
    (["dsseEnvelope", "payload"], 5),
    (["dsseEnvelope", "payload"], "!!!notbase64!!!"),
    (["dsseEnvelope", "payload"], "YWJj="),
    (["dsseEnvelope", "signatures"], {}),
    (["dsseEnvelope", "signatures"], []),
    (["dsseEnvelope", "payloadType"], "text/plain"),
    (["verificationMaterial"], "x"),
    (["verificationMaterial", "publicKey"], {}),
])
def test_bundle_json_problems(tmp_path, key, path, value):
    m = small_model(tmp_path / "m")
    bundle = sign_bundle(key, json.dumps(statement_for(m)).encode())
    mutate_bundle(bundle, path, value)
    write_sig(m, bundle)
    assert_one_line(verify(m, key, check=1), "model.sig")


def test_signature_invalid_base64(tmp_path, key):
    m = small_model(tmp_path / "m")
    bundle = sign_bundle(key, json.dumps(statement_for(m)).encode())
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = "***"
    write_sig(m, bundle)
    assert_one_line(verify(m, key, check=1), "model.sig")


@pytest.mark.parametrize("cut", [1, 10, 100, -10, -1])
def test_truncated_bundle(tmp_path, key, cut):
    m = small_model(tmp_path / "m")
    text = json.dumps(sign_bundle(key, json.dumps(statement_for(m)).encode()))
    write_sig(m, text[:cut] if cut > 0 else text[:cut])
    assert_one_line(verify(m, key, check=1), "model.sig")
    # inspect reads it without trust and must fail cleanly too
    p = run_modelfs("inspect", m, check=1)
    assert "model.sig" in p.stderr


def test_empty_and_binary_signature(tmp_path, key):
    m = small_model(tmp_path / "m")
    write_sig(m, b"")
    assert_one_line(verify(m, key, check=1), "model.sig")
    write_sig(m, os.urandom(4096))
    assert_one_line(verify(m, key, check=1), "model.sig")


@pytest.mark.parametrize("change", [
    ("_type", "https://in-toto.io/Statement/v0.1"),
    ("predicateType", "https://example.org/other"),
    ("subject", {}),
    ("predicate", []),
])
def test_statement_problems(tmp_path, key, change):
    m = small_model(tmp_path / "m")
    st = statement_for(m)
    st[change[0]] = change[1]
    write_sig(m, sign_bundle(key, json.dumps(st).encode()))
    assert_one_line(verify(m, key, check=1), "model.sig")


@pytest.mark.parametrize("payload", [b"", b"{", b"[]", b'{"_type": 1}', b"\xff\xfe"])
def test_payload_not_a_statement(tmp_path, key, payload):
    m = small_model(tmp_path / "m")
    write_sig(m, sign_bundle(key, payload))
    assert_one_line(verify(m, key, check=1), "model.sig")


def test_resources_wrong_type(tmp_path, key):
    m = small_model(tmp_path / "m")
    st = statement_for(m)
    st["predicate"]["resources"] = "a.txt"
    write_sig(m, sign_bundle(key, json.dumps(st).encode()))
    assert_one_line(verify(m, key, check=1), "model.sig")
    st = statement_for(m)
    st["predicate"]["resources"][0]["digest"] = "xyz"
    write_sig(m, sign_bundle(key, json.dumps(st).encode()))
    assert_one_line(verify(m, key, check=1), "model.sig")


# --------------------------------------------------------------------------
# key problems
# --------------------------------------------------------------------------

def test_untrusted_key(tmp_path, key, other_key):
    m = small_model(tmp_path / "m")
    write_sig(m, sign_bundle(other_key, json.dumps(statement_for(m)).encode()))
    assert_one_line(verify(m, key, check=1), "model.sig", "untrusted")


def test_wrong_hint(tmp_path, key, other_key):
    m = small_model(tmp_path / "m")
    # Signed by the trusted key, but the bundle names another key.
    write_sig(m, sign_bundle(key, json.dumps(statement_for(m)).encode(),
                             hint=hint_of(other_key)))
    assert_one_line(verify(m, key, check=1), "model.sig")
    write_sig(m, sign_bundle(key, json.dumps(statement_for(m)).encode(), hint="zz"))
    assert_one_line(verify(m, key, check=1), "model.sig")


def test_signature_by_other_key_under_trusted_hint(tmp_path, key, other_key):
    m = small_model(tmp_path / "m")
    write_sig(m, sign_bundle(other_key, json.dumps(statement_for(m)).encode(),
                             hint=hint_of(key)))
    assert_one_line(verify(m, key, check=1), "model.sig")


@pytest.fixture(scope="module")
def rsa_key(tmp_path_factory):
    d = tmp_path_factory.mktemp("rsa")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", str(d / "rsa.key")], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(d / "rsa.key"), "-pubout", "-out",
                    str(d / "rsa.pub")], check=True, capture_output=True)
    return d / "rsa"


def test_unsupported_key_type(tmp_path, key, rsa_key):
    m = small_model(tmp_path / "m")
    before = snapshot(m)
    p = run_modelfs("seal", "--key", f"{rsa_key}.key", m, check=2)
    assert_one_line(p, "rsa.key", "unsupported key type")
    assert_nothing_written(m, before)
    run_modelfs("seal", "--key", f"{key}.key", m, check=0)
    p = run_modelfs("verify", "--trust", f"{rsa_key}.pub", m, check=2)
    assert_one_line(p, "rsa.pub", "unsupported key type")


def test_garbage_key_files(tmp_path, key):
    m = small_model(tmp_path / "m")
    (tmp_path / "bad.key").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    p = run_modelfs("seal", "--key", tmp_path / "bad.key", m, check=2)
    assert_one_line(p, "bad.key")
    assert_nothing_written(m)
    (tmp_path / "bad.pub").write_bytes(os.urandom(100))
    run_modelfs("seal", "--key", f"{key}.key", m, check=0)
    assert_one_line(run_modelfs("verify", "--trust", tmp_path / "bad.pub", m, check=2), "bad.pub")


# --------------------------------------------------------------------------
# verification failures
# --------------------------------------------------------------------------

def test_subject_digest_mismatch(tmp_path, key):
    m = small_model(tmp_path / "m")
    st = statement_for(m)
    st["subject"][0]["digest"]["sha256"] = "00" * 32
    write_sig(m, sign_bundle(key, json.dumps(st).encode()))
    assert_one_line(verify(m, key, check=1), "model.sig", "subject")


def test_resource_digest_mismatch(tmp_path, key):
    m = small_model(tmp_path / "m")
    st = statement_for(m)
    st["predicate"]["resources"][0]["digest"] = "00" * 32
    res = st["predicate"]["resources"]
    st["subject"][0]["digest"]["sha256"] = hashlib.sha256(
        b"".join(bytes.fromhex(r["digest"]) for r in res)).hexdigest()
    write_sig(m, sign_bundle(key, json.dumps(st).encode()))
    p = verify(m, key, check=1)
    assert error_lines(p) == [
        "a.txt: sha256 mismatch (expected " + "00" * 32 + ", got "
        + hashlib.sha256((m / "a.txt").read_bytes()).hexdigest() + ")"]
    assert "warning: no Merkle roots present" in p.stderr


def test_missing_and_extra_files(tmp_path, key):
    m = small_model(tmp_path / "m")
    run_modelfs("seal", "--key", f"{key}.key", m, check=0)
    (m / "a.txt").unlink()
    (m / "extra.bin").write_bytes(b"x")
    lines = error_lines(verify(m, key, check=1))
    assert sorted(lines) == ["a.txt: missing", "extra.bin: not signed"]


def test_missing_signature(tmp_path, key):
    m = small_model(tmp_path / "m")
    p = verify(m, key, check=2)
    assert_one_line(p, "model.sig")


def test_single_file_signature_on_folder(tmp_path, key):
    m = small_model(tmp_path / "m")
    run_modelfs("seal", "--key", f"{key}.key", m / "a.txt", check=0)
    p = run_modelfs("verify", "--trust", f"{key}.pub", "--signature", m / "a.txt.sig", m,
                    check=1)
    assert_one_line(p, "single file")
    run_modelfs("seal", "--key", f"{key}.key", m, check=0)
    p = run_modelfs("verify", "--trust", f"{key}.pub", "--signature", m / "model.sig",
                    m / "a.txt", check=1)
    assert_one_line(p, "a.txt")


# --------------------------------------------------------------------------
# tree problems: trees are caches, so a bad tree is a warning, never a pass
# of bad data, and `seal --trees-only` repairs it
# --------------------------------------------------------------------------

def tree_of(m, name):
    bundle = json.loads((m / "model.sig").read_text())
    st = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    for f in st["predicate"]["modelfs"]["files"]:
        if f["name"] == name:
            return m / ".modelfs" / "trees" / (f["fsverity_digest"] + ".tree")
    raise KeyError(name)


@pytest.mark.parametrize("damage", ["corrupt-block", "corrupt-header", "truncated", "mismatched",
                                    "empty"])
def test_tree_problems(tmp_path, key, damage):
    m = small_model(tmp_path / "m")
    run_modelfs("seal", "--key", f"{key}.key", m, check=0)
    tree = tree_of(m, "sub/b.bin")
    data = bytearray(tree.read_bytes())
    if damage == "corrupt-block":
        data[4096 + 7] ^= 1
    elif damage == "corrupt-header":
        data[20] ^= 1
    elif damage == "truncated":
        data = data[:4096 + 100]
    elif damage == "mismatched":
        data = bytearray(tree_of(m, "a.txt").read_bytes())
    else:
        data = bytearray()
    tree.write_bytes(bytes(data))
    p = verify(m, key, check=0)
    warnings = [ln for ln in p.stderr.splitlines() if ln.startswith("warning: ")]
    assert warnings == [w for w in warnings if "sub/b.bin: tree file is damaged" in w]
    assert len(warnings) == 1, p.stderr
    run_modelfs("seal", "--trees-only", "--trust", f"{key}.pub", m, check=0)
    p = verify(m, key, check=0)
    assert "warning" not in p.stderr


def test_tree_problems_never_hide_data_problems(tmp_path, key):
    m = small_model(tmp_path / "m")
    run_modelfs("seal", "--key", f"{key}.key", m, check=0)
    tree_of(m, "sub/b.bin").write_bytes(b"garbage")
    data = bytearray((m / "sub" / "b.bin").read_bytes())
    data[5] ^= 1
    (m / "sub" / "b.bin").write_bytes(bytes(data))
    lines = error_lines(verify(m, key, check=1))
    assert len(lines) == 2 and all(ln.startswith("sub/b.bin: ") for ln in lines)


def test_missing_trees_warn(tmp_path, key):
    m = small_model(tmp_path / "m")
    run_modelfs("seal", "--key", f"{key}.key", m, check=0)
    shutil.rmtree(m / ".modelfs")
    p = verify(m, key, check=0)
    assert "warning: 2 file(s) have no tree file" in p.stderr


# --------------------------------------------------------------------------
# odd file names
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sp ace", "quo\"te", "back\\slash", "\u00fcn\u00ef", "-dash"])
def test_odd_names_roundtrip(tmp_path, key, name):
    m = small_model(tmp_path / "m")
    (m / name).write_text("x")
    run_modelfs("seal", "--key", f"{key}.key", m, check=0)
    run_modelfs("verify", "--trust", f"{key}.pub", m, check=0)


@pytest.mark.parametrize("name,shown", [(b"new\nline", "new\\x0aline"),
                                        (b"bad\xff.bin", "bad\\xff.bin"),
                                        (b"esc\x1b[31m", "esc\\x1b[31m")])
def test_unsignable_names_refused(tmp_path, key, name, shown):
    """A signature is JSON text (UTF-8), and a name must not forge output lines."""
    m = small_model(tmp_path / "m")
    with open(os.path.join(os.fsencode(m), name), "wb") as f:
        f.write(b"x")
    before = snapshot(m)
    p = run_modelfs("seal", "--key", f"{key}.key", m, check=2)
    assert_one_line(p, shown, "not valid UTF-8 or has control characters")
    assert_nothing_written(m, before)
    # In a signed folder such a file is an unsigned extra, reported on one line.
    os.unlink(os.path.join(os.fsencode(m), name))
    run_modelfs("seal", "--key", f"{key}.key", m, check=0)
    with open(os.path.join(os.fsencode(m), name), "wb") as f:
        f.write(b"x")
    p = verify(m, key, check=1)
    assert_one_line(p, shown)


def test_seal_refuses_mismatched_key_pair(tmp_path):
    # an EC private key whose embedded public key is another key's: signing
    # with it would put one key's hint on another key's signatures
    bad = pathlib.Path(__file__).resolve().parent.parent / "fuzz" / "corpus" / "fuzz_trust" / \
        "ec_pair_mismatch.key"
    model = tmp_path / "m"
    model.mkdir()
    (model / "a.bin").write_bytes(b"x")
    p = run_modelfs("seal", "--key", bad, model)
    assert p.returncode == 2
    assert "does not match its public key" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert not (model / "model.sig").exists()
