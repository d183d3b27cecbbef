"""`modelfs pull` against a real registry (Debian's docker-registry, CNCF
distribution 2.8, TLS and htpasswd): models pushed by `modelfs push` come
back byte for byte, verified (signature, blob digests, Merkle trees), as a
store folder that `modelfs verify` and a real `modelfs mount` accept; a
killed pull resumes and a corrupt chunk is fetched again; untrusted
signers, wrong digests and hostile layer paths leave nothing behind."""
import base64
import hashlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from remote.oci_registry import PASSWORD, USER, modelfs_bin, run
from remote.test_push import keys, make_model, sha256  # noqa: F401 (keys: fixture)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "mount"))
from test_mount import Mount  # noqa: E402

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
AT_MODEL = "application/vnd.cncf.model.manifest.v1+json"
MiB = 1 << 20
STAGING = ".modelfs-pull"


@pytest.fixture
def env(registry, tmp_path):
    return registry.env(registry.write_auth_file(tmp_path / "auth.json"), tmp_path)


def push(registry, keys, model, ref, env):
    p = run("push", "--trust", f"{keys}.pub", "--ca-cert", registry.ca, model,
            f"{registry.host}/{ref}", env=env, check=0)
    return p.stdout.split("@", 1)[1].split()[0]  # the manifest digest


def pull(registry, trust, ref, dest, env, *extra, check=None):
    return run("pull", "--trust", trust, "--ca-cert", registry.ca, *extra,
               f"{registry.host}/{ref}", dest, env=env, check=check)


def files_of(root: pathlib.Path) -> dict:
    """Every file under root (model.sig and .modelfs/trees included), by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def assert_same_model(src: pathlib.Path, dst: pathlib.Path):
    want, got = files_of(src), files_of(dst)
    assert set(got) == set(want)
    for name in want:
        assert got[name] == want[name], name


def big_model(root: pathlib.Path, keys, size: int) -> pathlib.Path:
    m = make_model(root, keys)
    (m / "big.safetensors").write_bytes(os.urandom(size))
    run("seal", "--key", f"{keys}.key", "--name", "org/big", m, check=0)
    return m


def test_pull_gives_back_every_file(registry, keys, tmp_path, env):
    model = make_model(tmp_path, keys)
    digest = push(registry, keys, model, "org/pull:v1", env)
    dest = tmp_path / "out"
    p = pull(registry, f"{keys}.pub", "org/pull:v1", dest, env, "--jobs", "3", check=0)
    assert p.stdout.startswith("pulled: ") and digest in p.stdout
    assert "4 files" in p.stdout and "4 trees" in p.stdout
    assert_same_model(model, dest)  # files, model.sig and the four tree files
    assert not (tmp_path / ("out" + STAGING)).exists()
    v = run("verify", "--trust", f"{keys}.pub", dest, check=0)
    assert "warning" not in v.stderr  # the trees are where verify and the mount look
    # into an existing empty folder too
    (tmp_path / "empty").mkdir()
    pull(registry, f"{keys}.pub", "org/pull:v1", tmp_path / "empty", env, check=0)
    assert_same_model(model, tmp_path / "empty")
    # but never into a folder with something in it
    p = pull(registry, f"{keys}.pub", "org/pull:v1", dest, env, check=2)
    assert "not empty" in p.stderr


def test_pulled_store_is_mounted(registry, keys, tmp_path, env):
    model = make_model(tmp_path, keys)
    push(registry, keys, model, "org/mnt:v1", env)
    store = tmp_path / "store"
    (store / "org").mkdir(parents=True)
    pull(registry, f"{keys}.pub", "org/mnt:v1", store / "org" / "demo", env, check=0)
    with Mount(store, tmp_path / "mnt", f"{keys}.pub") as m:
        for name in ("model.safetensors", "config.json", "README.md", "sub/run.py"):
            got = (m.mnt / "org" / "demo" / name).read_bytes()
            assert got == (model / name).read_bytes(), name
        # the pulled trees were used: none was built from the data
        assert m.status()["counters"]["trees_built"] == 0


def test_untrusted_signer_leaves_nothing(registry, keys, tmp_path, env):
    model = make_model(tmp_path, keys)
    push(registry, keys, model, "org/untrusted:v1", env)
    run("keygen", tmp_path / "other", check=0)
    dest = tmp_path / "out"
    p = pull(registry, tmp_path / "other.pub", "org/untrusted:v1", dest, env, check=1)
    assert "nothing installed" in p.stderr
    assert not dest.exists() and not (tmp_path / ("out" + STAGING)).exists()


def test_pull_by_digest(registry, keys, tmp_path, env):
    model = make_model(tmp_path, keys)
    digest = push(registry, keys, model, "org/dig:v1", env)
    pull(registry, f"{keys}.pub", f"org/dig@{digest}", tmp_path / "a", env, check=0)
    assert_same_model(model, tmp_path / "a")
    pull(registry, f"{keys}.pub", f"org/dig:v1@{digest}", tmp_path / "b", env, check=0)
    wrong = "sha256:" + hashlib.sha256(b"not the manifest").hexdigest()
    p = pull(registry, f"{keys}.pub", f"org/dig@{wrong}", tmp_path / "c", env, check=2)
    assert registry.host in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()


def test_jobs_fetch_a_multi_chunk_blob(registry, keys, tmp_path, env):
    model = big_model(tmp_path, keys, 20 * MiB + 12345)
    push(registry, keys, model, "org/chunks:v1", env)
    dest = tmp_path / "out"
    p = pull(registry, f"{keys}.pub", "org/chunks:v1", dest, env, "--jobs", "8",
             "--chunk-size", "256K", "--progress", check=0)
    assert int(p.stdout.split(" chunks fetched")[0].split()[-1]) >= 81
    # --progress: lines on stderr, the last one at 100% of what this run fetched
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("pull: ")]
    assert lines and all(" MiB fetched (" in ln for ln in lines), p.stderr
    assert lines[-1].endswith("(100%)"), lines
    assert_same_model(model, dest)
    run("verify", "--trust", f"{keys}.pub", dest, check=0)


def journal_of(staging: pathlib.Path, data: bytes) -> pathlib.Path:
    return staging / "blobs" / (hashlib.sha256(data).hexdigest() + ".journal")


def kill_midway(registry, keys, env, ref, dest, journal: pathlib.Path, records: int):
    """Starts a pull and SIGKILLs it once @journal lists @records chunks."""
    proc = subprocess.Popen([modelfs_bin(), "pull", "--trust", f"{keys}.pub", "--ca-cert",
                             str(registry.ca), "--jobs", "1", "--chunk-size", "64K",
                             f"{registry.host}/{ref}", str(dest)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            if journal.exists() and journal.stat().st_size >= 32 + 40 * records:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
    finally:
        if proc.poll() is None and time.time() >= deadline:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()


def test_killed_pull_resumes_and_refetches_a_corrupt_chunk(registry, keys, tmp_path, env):
    model = big_model(tmp_path, keys, 48 * MiB)
    push(registry, keys, model, "org/resume:v1", env)
    dest, staging = tmp_path / "out", tmp_path / ("out" + STAGING)
    big = (model / "big.safetensors").read_bytes()
    journal = journal_of(staging, big)
    kill_midway(registry, keys, env, "org/resume:v1", dest, journal, 40)
    assert not dest.exists() and staging.is_dir()
    # corrupt the bytes of the first journalled chunk: it must not be trusted
    rec = journal.read_bytes()[32:72]
    idx = int.from_bytes(rec[:8], "little")
    part = journal.with_suffix(".part")
    with open(part, "r+b") as f:
        f.seek(idx * 65536 + 100)
        f.write(b"\xff" * 16)
    p = pull(registry, f"{keys}.pub", "org/resume:v1", dest, env, "--jobs", "4",
             "--chunk-size", "64K", check=0)
    reused = int(p.stdout.split(" chunks re-used")[0].split()[-1])
    again = int(p.stdout.split(" fetched again")[0].split()[-1])
    assert reused >= 39 and again >= 1, p.stdout
    assert_same_model(model, dest)
    assert not staging.exists()
    run("verify", "--trust", f"{keys}.pub", dest, check=0)


def test_chunk_that_passes_its_journal_but_not_the_digest(registry, keys, tmp_path, env):
    """A forged staging folder: a .part of junk whose journal records match the junk.
    The blob's digest catches it; the blob is fetched again whole."""
    model = big_model(tmp_path, keys, 3 * MiB)
    push(registry, keys, model, "org/forged:v1", env)
    dest, staging = tmp_path / "out", tmp_path / ("out" + STAGING)
    big = (model / "big.safetensors").read_bytes()
    journal = journal_of(staging, big)
    journal.parent.mkdir(parents=True)
    junk = os.urandom(len(big))
    journal.with_suffix(".part").write_bytes(junk)
    chunk = 64 << 10
    hdr = b"MFRJRNL1" + chunk.to_bytes(8, "little") + len(big).to_bytes(8, "little") + bytes(8)
    recs = b"".join(i.to_bytes(8, "little") + hashlib.sha256(junk[i * chunk:(i + 1) * chunk])
                    .digest() for i in range(len(big) // chunk))
    journal.write_bytes(hdr + recs)
    p = pull(registry, f"{keys}.pub", "org/forged:v1", dest, env, "--chunk-size", "64K",
             check=0)
    assert int(p.stdout.split(" chunks re-used")[0].split()[-1]) == len(big) // chunk
    assert_same_model(model, dest)


# --- hostile artifacts, written straight to the registry ---------------------

def request(registry, path, method="GET", data=None, ctype=None, accept=None):
    url = path if path.startswith("https://") else f"https://{registry.host}{path}"
    req = urllib.request.Request(url, method=method, data=data)
    req.add_header("Authorization", "Basic " +
                   base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
    if ctype:
        req.add_header("Content-Type", ctype)
    if accept:
        req.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(req, context=registry.ssl_context(), timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def put_blob(registry, repo, data: bytes) -> dict:
    st, h, _ = request(registry, f"/v2/{repo}/blobs/uploads/", "POST", data=b"")
    assert st == 202, st
    loc = h["Location"]
    loc = loc if loc.startswith("https://") else f"https://{registry.host}{loc}"
    st, _, _ = request(registry, loc + ("&" if "?" in loc else "?") + "digest=" + sha256(data),
                       "PUT", data=data, ctype="application/octet-stream")
    assert st == 201, st
    return {"digest": sha256(data), "size": len(data)}


def put_hostile(registry, repo, paths):
    cfg = put_blob(registry, repo, b"{}")
    layers = []
    for i, path in enumerate(paths):
        d = put_blob(registry, repo, f"evil {i}\n".encode())
        layers.append({"mediaType": "application/vnd.cncf.model.weight.v1.raw", **d,
                       "annotations": {"org.cncf.model.filepath": path,
                                       "org.opencontainers.image.title": path}})
    m = {"schemaVersion": 2, "mediaType": MANIFEST, "artifactType": AT_MODEL,
         "config": {"mediaType": "application/vnd.cncf.model.config.v1+json", **cfg},
         "layers": layers}
    st, _, body = request(registry, f"/v2/{repo}/manifests/v1", "PUT",
                          data=json.dumps(m).encode(), ctype=MANIFEST)
    assert st == 201, body


@pytest.mark.parametrize("paths", [["../evil"], ["/tmp/evil"], ["a/../../evil"], ["a//evil"],
                                   ["ok", "ok"], [".modelfs/trees/x.tree"], ["model.sig"],
                                   ["./evil"], [""]])
def test_hostile_layer_paths_are_refused(registry, keys, tmp_path, env, paths):
    repo = "org/hostile" + hashlib.sha256(json.dumps(paths).encode()).hexdigest()[:8]
    put_hostile(registry, repo, paths)
    work = tmp_path / "work"
    work.mkdir()
    before = sorted(tmp_path.rglob("*"))
    p = pull(registry, f"{keys}.pub", f"{repo}:v1", work / "out", env, check=1)
    assert "refused path" in p.stderr or "two layers" in p.stderr
    assert sorted(tmp_path.rglob("*")) == before  # nothing written anywhere
    assert not pathlib.Path("/tmp/evil").exists()


def test_usage_errors(keys, tmp_path):
    run("pull", "127.0.0.1:1/org/demo:v1", tmp_path / "x", check=2)  # no --trust
    for bad in (["--jobs", "0"], ["--jobs", "99"], ["--chunk-size", "1K"]):
        run("pull", "--trust", f"{keys}.pub", *bad, "127.0.0.1:1/org/demo:v1", tmp_path / "x",
            check=2)
    p = run("pull", "--trust", f"{keys}.pub", "127.0.0.1:1/org/demo", tmp_path / "x", check=2)
    assert "give a tag" in p.stderr
    p = run("pull", "--trust", f"{keys}.pub", "http://192.0.2.1:5000/org/demo:v1",
            tmp_path / "x", check=2, timeout=20)
    assert "plain HTTP refused" in p.stderr


def test_tampered_tree_in_the_referrer_is_refused(registry, keys, tmp_path, env):
    """A referrer whose tree layer was swapped for a forged one (its descriptor
    digest matches the forged bytes): the tree is checked against the signed root."""
    model = make_model(tmp_path, keys)
    digest = push(registry, keys, model, "org/badtree:v1", env)
    tag = f"sha256-{digest[7:]}"
    index = json.loads(request(registry, f"/v2/org/badtree/manifests/{tag}",
                               accept="application/vnd.oci.image.index.v1+json")[2])
    rdigest = index["manifests"][0]["digest"]
    ref = json.loads(request(registry, f"/v2/org/badtree/manifests/{rdigest}", accept=MANIFEST)[2])
    tree = ref["layers"][1]
    blob = bytearray(request(registry, f"/v2/org/badtree/blobs/{tree['digest']}")[2])
    blob[4096 + 7] ^= 1  # a hash in the first tree block
    tree.update(put_blob(registry, "org/badtree", bytes(blob)))
    body = json.dumps(ref).encode()
    st, _, _ = request(registry, f"/v2/org/badtree/manifests/{sha256(body)}", "PUT", data=body,
                       ctype=MANIFEST)
    assert st == 201
    index["manifests"][0].update(digest=sha256(body), size=len(body))
    st, _, _ = request(registry, f"/v2/org/badtree/manifests/{tag}", "PUT",
                       data=json.dumps(index).encode(),
                       ctype="application/vnd.oci.image.index.v1+json")
    assert st == 201
    dest = tmp_path / "out"
    p = pull(registry, f"{keys}.pub", "org/badtree:v1", dest, env, check=1)
    assert "does not match the signed Merkle root" in p.stderr
    assert not dest.exists() and not (tmp_path / ("out" + STAGING)).exists()


def test_tiny_blobs_on_fresh_connections(registry, keys, tmp_path, env):
    """Each download thread's first request meets the registry's 401 (its own
    client has not answered the challenge yet), whose JSON body is longer
    than a blob of a few bytes: the body limit of the blob must not apply
    to the error's body (a pull failed with "response body over the size
    limit" whenever a thread started on a tiny file)."""
    m = tmp_path / "tiny"
    m.mkdir()
    for i in range(6):
        (m / f"f{i}.txt").write_bytes(b"%d\n" % i)
    run("seal", "--key", f"{keys}.key", "--name", "org/tiny", m, check=0)
    push(registry, keys, m, "org/tiny:v1", env)
    p = pull(registry, f"{keys}.pub", "org/tiny:v1", tmp_path / "out", env, "--jobs", "6",
             check=0)
    assert p.stdout.startswith("pulled: ")
    for i in range(6):
        assert (tmp_path / "out" / f"f{i}.txt").read_bytes() == b"%d\n" % i
