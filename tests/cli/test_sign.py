"""modelfs keygen / seal / verify / inspect, checked against external oracles.

Oracles: `fsverity digest` (Debian package fsverity) for every fs-verity
digest in a signature; Python's hashlib for the OMS SHA-256 digests and the
subject digest; the `openssl` command for keys, hints and the DSSE signature;
the golden
OMS corpus (signatures made by the reference signer model_signing) for
interoperability, exactly as its README table says.
"""
import base64
import hashlib
import json
import os
import pathlib
import re
import shutil
import stat
import subprocess
import tempfile

import pytest

from conftest import run_modelfs

KEY_TYPES = ["ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "ed25519"]
GOLDEN_HINT = "e8450dec4eb99dae995da9af1bc2cc9f76ed669ee2e744f57abba763df3e3f8e"
DEFAULT_IGNORES = {".git", ".gitattributes", ".github", ".gitignore", ".modelfs", "model.sig"}


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def oms_dir(shared):
    return shared / "corpus" / "oms"


def make_model(root: pathlib.Path) -> pathlib.Path:
    """A small model: nested folders, an empty file, a 1 MiB+1 file, git files."""
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "config.json").write_text('{"layers": 2}\n')
    (root / "README").write_text("a model\n")
    (root / "empty.bin").write_bytes(b"")
    (root / "sub" / "weights.bin").write_bytes(os.urandom(1024 * 1024 + 1))
    (root / "sub" / "deep" / "tok.txt").write_text("hello\n")
    (root / "a-b").write_text("sorts before a/ bytewise\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / ".gitattributes").write_text("*.bin filter=lfs\n")
    return root


def model_files(root: pathlib.Path):
    """Relative POSIX names of the files a seal must cover, sorted bytewise."""
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not any(rel == i or rel.startswith(i + "/") for i in DEFAULT_IGNORES):
            out.append(rel)
    return sorted(out, key=lambda s: s.encode())


def load_bundle(sig: pathlib.Path):
    bundle = json.loads(sig.read_text())
    payload = base64.b64decode(bundle["dsseEnvelope"]["payload"])
    return bundle, payload, json.loads(payload)


def fsverity_digest(path, *opts):
    out = subprocess.run(["fsverity", "digest", *opts, str(path)], check=True,
                         capture_output=True, text=True).stdout
    return out.split()[0]


def pae(ptype: str, body: bytes) -> bytes:
    t = ptype.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


def openssl(*args, data=None) -> bytes:
    return subprocess.run(["openssl", *map(str, args)], input=data, check=True,
                          capture_output=True).stdout


def canonical_hint(pub_path) -> str:
    """OMS hint: SHA-256 of the key re-serialized as canonical PEM (openssl pkey)."""
    return hashlib.sha256(openssl("pkey", "-pubin", "-in", pub_path)).hexdigest()


def key_kind(key_path, public=False) -> str:
    """'prime256v1', 'secp384r1', 'secp521r1' or 'ED25519', read by openssl."""
    text = openssl("pkey", *(["-pubin"] if public else []), "-in", key_path, "-noout",
                   "-text").decode()
    if "ED25519" in text:
        return "ED25519"
    return re.search(r"ASN1 OID: (\S+)", text).group(1)


def check_dsse(bundle, pub_path):
    """Independent check of the DSSE signature with the openssl command."""
    env = bundle["dsseEnvelope"]
    with tempfile.TemporaryDirectory() as d:
        msg, sig = pathlib.Path(d) / "pae", pathlib.Path(d) / "sig"
        msg.write_bytes(pae(env["payloadType"], base64.b64decode(env["payload"])))
        sig.write_bytes(base64.b64decode(env["signatures"][0]["sig"]))
        kind = key_kind(pub_path, public=True)
        if kind == "ED25519":
            openssl("pkeyutl", "-verify", "-pubin", "-inkey", pub_path, "-rawin", "-in", msg,
                    "-sigfile", sig)
        else:
            h = {"prime256v1": "-sha256", "secp384r1": "-sha384", "secp521r1": "-sha512"}[kind]
            openssl("dgst", h, "-verify", pub_path, "-signature", sig, msg)


def flip_byte(path: pathlib.Path, offset: int = 0):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def copy_tree(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    shutil.copytree(src, dst)
    for p in [dst, *dst.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IWUSR)
    return dst


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    out = {}
    for t in KEY_TYPES:
        prefix = d / t
        run_modelfs("keygen", "--type", t, prefix, check=0)
        out[t] = prefix
    return out


@pytest.fixture
def sealed(tmp_path, keys):
    """A model sealed with the default P-256 key."""
    m = make_model(tmp_path / "model")
    run_modelfs("seal", "--key", f"{keys['ecdsa-p256']}.key", m, check=0)
    return m


# --------------------------------------------------------------------------
# keygen
# --------------------------------------------------------------------------

@pytest.mark.parametrize("ktype", KEY_TYPES)
def test_keygen_types(tmp_path, ktype):
    prefix = tmp_path / "k"
    p = run_modelfs("keygen", "--type", ktype, prefix, check=0)
    key, pub = tmp_path / "k.key", tmp_path / "k.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert pub.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    want = {"ecdsa-p256": "prime256v1", "ecdsa-p384": "secp384r1", "ecdsa-p521": "secp521r1",
            "ed25519": "ED25519"}
    assert key_kind(key) == want[ktype] == key_kind(pub, public=True)
    if ktype == "ed25519":
        assert "warning: ed25519" in p.stderr
    # The printed hint is the OMS hint of the public key.
    assert canonical_hint(pub) in p.stdout


def test_keygen_default_is_p256_and_no_overwrite(tmp_path):
    run_modelfs("keygen", tmp_path / "k", check=0)
    before = (tmp_path / "k.key").read_bytes()
    assert key_kind(tmp_path / "k.key") == "prime256v1"
    p = run_modelfs("keygen", tmp_path / "k", check=2)
    assert "k.key" in p.stderr
    assert (tmp_path / "k.key").read_bytes() == before


@pytest.mark.parametrize("args", [["--type", "rsa", "x"], [], ["a", "b"], ["--bogus", "x"]])
def test_keygen_usage(tmp_path, args):
    run_modelfs("keygen", *args, check=2, cwd=tmp_path)
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------
# seal + verify round trips, with oracles
# --------------------------------------------------------------------------

@pytest.mark.parametrize("ktype", KEY_TYPES)
def test_seal_verify_roundtrip(tmp_path, keys, ktype):
    m = make_model(tmp_path / "model")
    p = run_modelfs("seal", "--key", f"{keys[ktype]}.key", "--name", "demo", "--revision", "r1",
                    "--source", "https://example.org/m", "--base-model", "base",
                    "--license", "Apache-2.0", "--dataset", "d1", "--dataset", "d2",
                    "--property", "k=v", "--property", "x=a=b", m, check=0)
    files = model_files(m)
    assert re.match(rf"sealed .*: {len(files)} files, \d+ bytes in [0-9.]+ s$", p.stdout.strip())
    v = run_modelfs("verify", "--trust", f"{keys[ktype]}.pub", m, check=0)
    hint = canonical_hint(f"{keys[ktype]}.pub")
    assert v.stdout.startswith(f"verified: {len(files)} files, ")
    assert hint in v.stdout and "fs-verity" in v.stdout
    assert "warning" not in v.stderr

    bundle, payload, st = load_bundle(m / "model.sig")
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert bundle["verificationMaterial"]["publicKey"]["hint"] == hint
    check_dsse(bundle, f"{keys[ktype]}.pub")
    assert st["_type"] == "https://in-toto.io/Statement/v1"
    assert st["predicateType"] == "https://model_signing/signature/v1.0"
    res = st["predicate"]["resources"]
    assert [r["name"] for r in res] == files
    for r in res:
        assert r["algorithm"] == "sha256"
        assert r["digest"] == hashlib.sha256((m / r["name"]).read_bytes()).hexdigest()
    subject = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in res)).hexdigest()
    assert st["subject"] == [{"name": "demo", "digest": {"sha256": subject}}]
    ser = st["predicate"]["serialization"]
    assert ser["method"] == "files" and ser["hash_type"] == "sha256"
    assert ser["allow_symlinks"] is False
    assert set(ser["ignore_paths"]) == DEFAULT_IGNORES

    ext = st["predicate"]["modelfs"]
    assert [f["name"] for f in ext["files"]] == files
    for f in ext["files"]:
        path = m / f["name"]
        assert f["size"] == path.stat().st_size
        assert f["hash_algorithm"] == "sha256" and f["block_size"] == 4096 and f["salt"] == ""
        # External oracle: the fsverity tool.
        assert "sha256:" + f["fsverity_digest"] == fsverity_digest(path)
        assert (m / ".modelfs" / "trees" / (f["fsverity_digest"] + ".tree")).is_file()
    prov = ext["provenance"]
    assert prov["name"] == "demo"
    assert prov["revision"] == "r1" and prov["source"] == "https://example.org/m"
    assert prov["base_model"] == "base" and prov["license"] == "Apache-2.0"
    assert prov["datasets"] == ["d1", "d2"]
    assert prov["properties"] == {"k": "v", "x": "a=b"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", prov["signed_at"])
    assert prov["tool_version"]
    # Nothing but the signature and the trees was added.
    assert not list(m.rglob("*.tmp*"))


def test_subject_name_defaults_to_folder(tmp_path, keys):
    m = make_model(tmp_path / "my-model")
    run_modelfs("seal", "--key", keys["ecdsa-p256"], m / ".", check=0)  # PREFIX without .key
    _, _, st = load_bundle(m / "model.sig")
    assert st["subject"][0]["name"] == "my-model"


@pytest.mark.parametrize("opts", [
    ["--hash-alg", "sha512"],
    ["--block-size", "1024"],
    ["--block-size", "65536"],
    ["--salt", "00112233445566778899aabbccddeeff"],
    ["--hash-alg", "sha512", "--block-size", "16K", "--salt", "ab" * 32],
])
def test_tree_options_roundtrip(tmp_path, keys, opts):
    m = make_model(tmp_path / "model")
    run_modelfs("seal", "--key", f"{keys['ecdsa-p384']}.key", *opts, m, check=0)
    run_modelfs("verify", "--trust", f"{keys['ecdsa-p384']}.pub", m, check=0)
    _, _, st = load_bundle(m / "model.sig")
    alg = opts[opts.index("--hash-alg") + 1] if "--hash-alg" in opts else "sha256"
    fs_opts = [f"--hash-alg={alg}"]
    if "--block-size" in opts:
        bs = opts[opts.index("--block-size") + 1].replace("K", "")
        bs = int(bs) * (1024 if "K" in opts[opts.index("--block-size") + 1] else 1)
        fs_opts.append(f"--block-size={bs}")
    if "--salt" in opts:
        fs_opts.append(f"--salt={opts[opts.index('--salt') + 1]}")
    for f in st["predicate"]["modelfs"]["files"]:
        assert f["hash_algorithm"] == alg
        assert f"{alg}:{f['fsverity_digest']}" == fsverity_digest(m / f["name"], *fs_opts)


def test_reseal_prunes_stale_trees(sealed, keys):
    trees = sealed / ".modelfs" / "trees"
    before = {p.name for p in trees.iterdir()}
    (sealed / "README").write_text("changed\n")
    run_modelfs("seal", "--key", f"{keys['ecdsa-p256']}.key", sealed, check=0)
    after = {p.name for p in trees.iterdir()}
    assert len(after) == len(before) and after != before
    run_modelfs("verify", "--trust", f"{keys['ecdsa-p256']}.pub", sealed, check=0)


def test_single_file_seal_and_verify(tmp_path, keys):
    f = tmp_path / "model.safetensors"
    f.write_bytes(os.urandom(5000))
    run_modelfs("seal", "--key", f"{keys['ecdsa-p256']}.key", f, check=0)
    _, _, st = load_bundle(tmp_path / "model.safetensors.sig")
    assert [r["name"] for r in st["predicate"]["resources"]] == ["."]
    assert st["subject"][0]["name"] == "model.safetensors"
    run_modelfs("verify", "--trust", f"{keys['ecdsa-p256']}.pub", f, check=0)
    detached = tmp_path / "elsewhere.sig"
    shutil.move(tmp_path / "model.safetensors.sig", detached)
    run_modelfs("verify", "--trust", f"{keys['ecdsa-p256']}.pub", "--signature", detached, f,
                check=0)
    flip_byte(f, 4999)
    p = run_modelfs("verify", "--trust", f"{keys['ecdsa-p256']}.pub", "--signature", detached, f,
                    check=1)
    assert "model.safetensors: sha256 mismatch" in p.stderr


def test_detached_signature_for_folder(tmp_path, sealed, keys):
    sig = tmp_path / "detached.sig"
    shutil.move(sealed / "model.sig", sig)
    run_modelfs("verify", "--trust", f"{keys['ecdsa-p256']}.pub", sealed, check=2)
    run_modelfs("verify", "--trust", f"{keys['ecdsa-p256']}.pub", "--signature", sig, sealed,
                check=0)


def test_seal_ignore_paths_recorded(tmp_path, keys):
    m = make_model(tmp_path / "model")
    (m / "logs").mkdir()
    (m / "logs" / "run.txt").write_text("noise\n")
    run_modelfs("seal", "--key", f"{keys['ecdsa-p256']}.key", "--ignore-paths", "logs/", m,
                check=0)
    _, _, st = load_bundle(m / "model.sig")
    assert "logs" in st["predicate"]["serialization"]["ignore_paths"]
    assert all(not r["name"].startswith("logs") for r in st["predicate"]["resources"])
    (m / "logs" / "more.txt").write_text("more\n")
    # Recorded ignore paths are honoured by verify, as model_signing does.
    run_modelfs("verify", "--trust", f"{keys['ecdsa-p256']}.pub", m, check=0)


# --------------------------------------------------------------------------
# trees
# --------------------------------------------------------------------------

def test_trees_only_rebuilds_identical_trees(sealed, keys):
    trees = sealed / ".modelfs" / "trees"
    before = {p.name: p.read_bytes() for p in trees.iterdir()}
    shutil.rmtree(sealed / ".modelfs")
    sig_before = (sealed / "model.sig").read_bytes()
    p = run_modelfs("seal", "--trees-only", "--trust", f"{keys['ecdsa-p256']}.pub", sealed,
                    check=0)
    assert p.stdout.startswith("rebuilt trees of")
    assert {p.name: p.read_bytes() for p in trees.iterdir()} == before
    assert (sealed / "model.sig").read_bytes() == sig_before


def test_trees_only_checks_signature_and_files(sealed, keys):
    run_modelfs("seal", "--trees-only", "--trust", f"{keys['ecdsa-p384']}.pub", sealed, check=1)
    run_modelfs("seal", "--trees-only", sealed, check=2)  # no trust input
    shutil.rmtree(sealed / ".modelfs")
    data = bytearray((sealed / "README").read_bytes())
    data[0] ^= 1
    (sealed / "README").write_bytes(bytes(data))
    p = run_modelfs("seal", "--trees-only", "--trust", f"{keys['ecdsa-p256']}.pub", sealed,
                    check=1)
    assert "README: fs-verity digest mismatch" in p.stderr
    assert not list((sealed / ".modelfs" / "trees").glob("*"))


def test_damaged_tree_is_a_warning(sealed, keys):
    trees = sorted((sealed / ".modelfs" / "trees").iterdir(), key=lambda p: -p.stat().st_size)
    flip_byte(trees[0], 4096 + 10)  # a hash block of the largest tree
    p = run_modelfs("verify", "--trust", f"{keys['ecdsa-p256']}.pub", sealed, check=0)
    assert "warning: sub/weights.bin: tree file is damaged" in p.stderr
    run_modelfs("seal", "--trees-only", "--trust", f"{keys['ecdsa-p256']}.pub", sealed, check=0)
    p = run_modelfs("verify", "--trust", f"{keys['ecdsa-p256']}.pub", sealed, check=0)
    assert "warning" not in p.stderr


# --------------------------------------------------------------------------
# golden OMS corpus (signatures by the reference signer)
# --------------------------------------------------------------------------

GOLDEN = [
    # folder, trust option, model path (relative to folder or None), ignore
    ("v1.1.0-elliptic-key", "key", None, []),
    ("v1.0.1-elliptic-key", "key", None, ["ignore-me"]),
    ("v1.0.0-elliptic-key", "key", "signme-1", []),
    ("v0.3.1-elliptic-key", "key", "signme-1", []),
    ("v1.1.0-certificate", "ca", None, []),
    ("v1.0.1-certificate", "ca", None, ["ignore-me"]),
    ("v1.0.0-certificate", "ca", None, []),
]


def golden_args(shared, folder, method, single, ignore, root=None):
    oms = oms_dir(shared)
    certs = oms / "keys" / "certificate"
    base = root or (oms / folder)
    args = ["verify"]
    args += (["--trust", certs / "signing-key-pub.pem"] if method == "key"
             else ["--trust-ca", certs / "ca-cert.pem"])
    for i in ignore:
        args += ["--ignore-paths", i]
    if single:
        args += ["--signature", base / "model.sig", base / single]
    else:
        args += [base]
    return args


@pytest.mark.parametrize("folder,method,single,ignore", GOLDEN)
def test_golden_corpus_verifies(shared, folder, method, single, ignore):
    p = run_modelfs(*golden_args(shared, folder, method, single, ignore), check=0)
    assert p.stdout.startswith("verified: ")
    assert "no Merkle roots" in p.stdout
    assert "warning: no Merkle roots present (plain OMS signature)" in p.stderr
    if method == "key":
        assert GOLDEN_HINT in p.stdout
    else:
        assert "signer certificate" in p.stdout
    if not folder.startswith("v1.1.0"):
        assert "pre-1.1 key material" in p.stderr or method == "ca"


def test_golden_unrecorded_ignore_must_be_given(shared):
    p = run_modelfs(*golden_args(shared, "v1.0.1-elliptic-key", "key", None, []), check=1)
    assert "ignore-me: not signed" in p.stderr


def test_golden_wrong_trust_fails(shared, keys):
    oms = oms_dir(shared)
    p = run_modelfs("verify", "--trust", f"{keys['ecdsa-p384']}.pub",
                    oms / "v1.1.0-elliptic-key", check=1)
    assert "model.sig" in p.stderr and "untrusted" in p.stderr
    p = run_modelfs("verify", "--trust-ca", oms / "keys/certificate/int-ca-cert.pem",
                    "--trust", f"{keys['ecdsa-p256']}.pub", oms / "v1.1.0-certificate")
    # The intermediate alone is no anchor for model_signing either; whatever
    # the verdict, it must not be a crash.
    assert p.returncode in (0, 1)


@pytest.mark.parametrize("folder,method,single,ignore", GOLDEN)
@pytest.mark.parametrize("what", ["file", "payload", "signature"])
def test_golden_tampered_fails(tmp_path, shared, folder, method, single, ignore, what):
    root = copy_tree(oms_dir(shared) / folder, tmp_path / folder)
    sig = root / "model.sig"
    if what == "file":
        flip_byte(root / "signme-1")
        named = "signme-1"
    else:
        bundle = json.loads(sig.read_text())
        env = bundle["dsseEnvelope"]
        if what == "payload":
            body = bytearray(base64.b64decode(env["payload"]))
            i = body.index(b"sha256")  # inside the signed statement
            body[i] ^= 0x20
            env["payload"] = base64.b64encode(bytes(body)).decode()
        else:
            s = bytearray(base64.b64decode(env["signatures"][0]["sig"]))
            s[len(s) // 2] ^= 0x01
            env["signatures"][0]["sig"] = base64.b64encode(bytes(s)).decode()
        sig.write_text(json.dumps(bundle))
        named = "model.sig"
    p = run_modelfs(*golden_args(shared, folder, method, single, ignore, root=root), check=1)
    lines = [ln for ln in p.stderr.splitlines() if not ln.startswith("warning: ")]
    assert lines and all(named in ln for ln in lines), p.stderr


def test_seal_with_corpus_key_matches_golden(tmp_path, shared):
    """Same files, same key as the golden v1.1.0 folder: same hint, same digests."""
    oms = oms_dir(shared)
    m = copy_tree(oms / "v1.1.0-elliptic-key", tmp_path / "v1.1.0-elliptic-key")
    (m / "model.sig").unlink()
    certs = oms / "keys" / "certificate"
    run_modelfs("seal", "--key", certs / "signing-key.pem", "--ignore-paths", "ignore-me", m,
                check=0)
    bundle, _, st = load_bundle(m / "model.sig")
    assert bundle["verificationMaterial"]["publicKey"]["hint"] == GOLDEN_HINT
    _, _, golden = load_bundle(oms / "v1.1.0-elliptic-key" / "model.sig")
    assert st["subject"] == golden["subject"]
    strip = lambda rs: [{k: r[k] for k in ("name", "algorithm", "digest")} for r in rs]
    assert strip(st["predicate"]["resources"]) == strip(golden["predicate"]["resources"])
    assert set(st["predicate"]["serialization"]["ignore_paths"]) >= set(
        golden["predicate"]["serialization"]["ignore_paths"])
    run_modelfs("verify", "--trust", certs / "signing-key-pub.pem", m, check=0)


# --------------------------------------------------------------------------
# tampering with our own signatures
# --------------------------------------------------------------------------

def test_tampered_file_reports_both_digests(sealed, keys):
    flip_byte(sealed / "sub" / "weights.bin", 12345)
    p = run_modelfs("verify", "--trust", f"{keys['ecdsa-p256']}.pub", sealed, check=1)
    lines = p.stderr.splitlines()
    assert any(ln.startswith("sub/weights.bin: sha256 mismatch (expected ") for ln in lines)
    assert any(ln.startswith("sub/weights.bin: fs-verity digest mismatch") for ln in lines)
    assert p.stdout == ""


def test_every_problem_reported(sealed, keys):
    (sealed / "README").unlink()
    (sealed / "extra.bin").write_bytes(b"x")
    (sealed / "config.json").write_text("{}")
    p = run_modelfs("verify", "--trust", f"{keys['ecdsa-p256']}.pub", sealed, check=1)
    err = p.stderr
    assert "README: missing" in err
    assert "extra.bin: not signed" in err
    assert "config.json: size mismatch" in err
    run_modelfs("verify", "--trust", f"{keys['ecdsa-p256']}.pub", "--ignore-unsigned-files",
                sealed, check=1)


def test_ignore_options(sealed, keys):
    (sealed / "extra").mkdir()
    (sealed / "extra" / "x.bin").write_bytes(b"x")
    pub = f"{keys['ecdsa-p256']}.pub"
    p = run_modelfs("verify", "--trust", pub, sealed, check=1)
    assert "extra/x.bin: not signed" in p.stderr
    run_modelfs("verify", "--trust", pub, "--ignore-paths", "extra", sealed, check=0)
    run_modelfs("verify", "--trust", pub, "--ignore-paths", str(sealed / "extra"), sealed,
                check=0)
    run_modelfs("verify", "--trust", pub, "--ignore-unsigned-files", sealed, check=0)


# --------------------------------------------------------------------------
# inspect
# --------------------------------------------------------------------------

def write_formats(m: pathlib.Path):
    hdr = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    (m / "w.safetensors").write_bytes(len(hdr).to_bytes(8, "little") + hdr + b"\0\0\0\0")
    (m / "m.gguf").write_bytes(b"GGUF" + b"\3\0\0\0" + b"\0" * 16)
    (m / "p.pkl").write_bytes(b"\x80\x04\x95" + b"\0" * 8 + b"N.")


def test_inspect_text_and_json(tmp_path, keys):
    m = make_model(tmp_path / "model")
    write_formats(m)
    run_modelfs("seal", "--key", f"{keys['ecdsa-p256']}.key", "--license", "MIT",
                "--property", "team=ml", m, check=0)
    hint = canonical_hint(f"{keys['ecdsa-p256']}.pub")
    p = run_modelfs("inspect", m, check=0)
    assert hint in p.stdout and "not verified" in p.stdout
    assert "license" in p.stdout and "MIT" in p.stdout and "team=ml" in p.stdout
    assert "sub/weights.bin" in p.stdout

    j = json.loads(run_modelfs("inspect", "--json", m, check=0).stdout)
    assert j["verified"] is False and j["merkle"] is True
    assert j["signer"] == {"kind": "key", "hint": hint}
    assert j["provenance"]["license"] == "MIT"
    assert j["provenance"]["properties"] == {"team": "ml"}
    files = {f["name"]: f for f in j["files"]}
    assert list(files) == model_files(m)
    fmt = {n: f["format"] for n, f in files.items()}
    assert fmt["w.safetensors"] == "safetensors" and fmt["m.gguf"] == "gguf"
    assert fmt["p.pkl"] == "pickle" and fmt["config.json"] == "json"
    assert fmt["README"] == "text" and fmt["empty.bin"] == "empty"
    for name, f in files.items():
        assert f["size"] == (m / name).stat().st_size
        assert f["sha256"] == hashlib.sha256((m / name).read_bytes()).hexdigest()
        assert f["fsverity_digest"] == fsverity_digest(m / name)


def test_inspect_golden(shared):
    oms = oms_dir(shared)
    j = json.loads(run_modelfs("inspect", "--json", oms / "v1.1.0-elliptic-key", check=0).stdout)
    assert j["signer"]["hint"] == GOLDEN_HINT and j["merkle"] is False
    assert [f["name"] for f in j["files"]] == ["signme-1", "signme-2"]
    j = json.loads(run_modelfs("inspect", "--json", oms / "v1.1.0-certificate", check=0).stdout)
    assert j["signer"]["kind"] == "certificate" and "CN=" in j["signer"]["subject"]
    p = run_modelfs("inspect", "--signature", oms / "v1.0.0-elliptic-key" / "model.sig",
                    oms / "v1.0.0-elliptic-key" / "signme-1", check=0)
    assert "rawBytes" in p.stdout and GOLDEN_HINT in p.stdout


# --------------------------------------------------------------------------
# usage
# --------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", ["keygen", "seal", "verify", "inspect"])
def test_help_and_unknown_options(cmd):
    p = run_modelfs(cmd, "--help", check=0)
    assert f"usage: modelfs {cmd}" in p.stderr + p.stdout
    run_modelfs(cmd, "--no-such-option", "x", check=2)


def test_usage_errors(tmp_path, keys):
    m = make_model(tmp_path / "model")
    run_modelfs("seal", m, check=2)  # no key
    run_modelfs("seal", "--key", tmp_path / "nokey", m, check=2)
    run_modelfs("seal", "--key", f"{keys['ecdsa-p256']}.key", "--block-size", "3000", m, check=2)
    run_modelfs("seal", "--key", f"{keys['ecdsa-p256']}.key", "--block-size",
                "99999999999999999999999", m, check=2)  # overflows
    run_modelfs("seal", "--key", f"{keys['ecdsa-p256']}.key", "--block-size", "16E", m, check=2)
    run_modelfs("seal", "--key", f"{keys['ecdsa-p256']}.key", "--salt", "00" * 33, m, check=2)
    run_modelfs("seal", "--key", f"{keys['ecdsa-p256']}.key", "--threads", "0", m, check=2)
    run_modelfs("seal", "--key", f"{keys['ecdsa-p256']}.key", "--hash-alg", "md5", m, check=2)
    run_modelfs("seal", "--key", f"{keys['ecdsa-p256']}.key", "--salt", "zz", m, check=2)
    run_modelfs("seal", "--key", f"{keys['ecdsa-p256']}.key", "--property", "=v", m, check=2)
    run_modelfs("verify", m, check=2)  # no trust input
    run_modelfs("verify", "--trust", tmp_path / "missing.pub", m, check=2)
    run_modelfs("verify", "--trust", f"{keys['ecdsa-p256']}.pub", tmp_path / "nothing", check=2)
    run_modelfs("inspect", m, check=2)  # no model.sig
    assert not (m / "model.sig").exists() and not (m / ".modelfs").exists()
