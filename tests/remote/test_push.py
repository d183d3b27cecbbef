"""`modelfs push` against a real registry (Debian's docker-registry, CNCF
distribution 2.8) with TLS and htpasswd auth; skopeo as the interop oracle.
Credentials come only from a REGISTRY_AUTH_FILE the test writes."""
import hashlib
import json
import pathlib
import shutil
import subprocess

import pytest

from remote.oci_registry import PASSWORD, USER, run

AT_MODEL = "application/vnd.cncf.model.manifest.v1+json"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
TREE = "application/vnd.modelfs.merkle-tree.v1"
INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EXPECTED_TYPES = {
    "model.safetensors": "application/vnd.cncf.model.weight.v1.raw",
    "config.json": "application/vnd.cncf.model.weight.config.v1.raw",
    "README.md": "application/vnd.cncf.model.doc.v1.raw",
    "sub/run.py": "application/vnd.cncf.model.code.v1.raw",
}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    run("keygen", d / "pub", check=0)
    return d / "pub"


def make_model(root: pathlib.Path, keys) -> pathlib.Path:
    """A sealed model whose every file is over one block, so each has a tree."""
    m = root / "model"
    (m / "sub").mkdir(parents=True)
    (m / "model.safetensors").write_bytes(hashlib.sha256(b"w").digest() * 9000)
    (m / "config.json").write_text(json.dumps({"hidden": "x" * 9000}))
    (m / "README.md").write_text("# demo\n" * 1500)
    (m / "sub" / "run.py").write_text("print('hello')\n" * 800)
    run("seal", "--key", f"{keys}.key", "--name", "org/demo", m, check=0)
    return m


@pytest.fixture
def model(tmp_path, keys):
    return make_model(tmp_path, keys)


@pytest.fixture
def env(registry, tmp_path):
    return registry.env(registry.write_auth_file(tmp_path / "auth.json"), tmp_path)


def push(registry, keys, model, ref, env, *extra, check=None):
    return run("push", "--trust", f"{keys}.pub", "--ca-cert", registry.ca, *extra, model,
               f"{registry.host}/{ref}", env=env, check=check)


def skopeo(registry, *args, check=True):
    return subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True,
                          text=True, check=check, timeout=120)


def raw_manifest(registry, ref) -> dict:
    p = skopeo(registry, "inspect", "--raw", "--creds", f"{USER}:{PASSWORD}",
               "--cert-dir", str(registry.cert_dir), f"docker://{registry.host}/{ref}")
    return json.loads(p.stdout)


def model_files(model: pathlib.Path):
    return {str(p.relative_to(model)): p for p in model.rglob("*")
            if p.is_file() and ".modelfs" not in p.parts and p.name != "model.sig"}


def test_push_publishes_a_modelpack_manifest(registry, keys, model, env):
    p = push(registry, keys, model, "org/demo:v1", env, check=0)
    assert p.stdout.startswith("pushed: ") and "4 files" in p.stdout
    m = raw_manifest(registry, "org/demo:v1")
    assert m["mediaType"] == MANIFEST and m["artifactType"] == AT_MODEL
    assert m["config"]["mediaType"] == "application/vnd.cncf.model.config.v1+json"
    files = model_files(model)
    layers = {lay["annotations"]["org.cncf.model.filepath"]: lay for lay in m["layers"]}
    assert set(layers) == set(files)
    for name, lay in layers.items():
        data = files[name].read_bytes()
        assert lay["mediaType"] == EXPECTED_TYPES[name]
        assert lay["digest"] == sha256(data) and lay["size"] == len(data)
        ann = lay["annotations"]
        assert ann["org.opencontainers.image.title"] == name
        meta = json.loads(ann["org.cncf.model.file.metadata+json"])
        assert meta["name"] == name and meta["size"] == len(data)
    # the digest printed is the manifest's, as the registry serves it
    st, _, body = registry.request("/v2/org/demo/manifests/v1", accept=MANIFEST)
    assert st == 200 and sha256(body) in p.stdout


def test_skopeo_copy_gives_back_every_file(registry, keys, model, env, tmp_path):
    push(registry, keys, model, "org/copy:v1", env, check=0)
    out = tmp_path / "oci"
    skopeo(registry, "copy", "--src-creds", f"{USER}:{PASSWORD}",
           "--src-cert-dir", str(registry.cert_dir),
           f"docker://{registry.host}/org/copy:v1", f"oci:{out}")
    index = json.loads((out / "index.json").read_text())
    mdigest = index["manifests"][0]["digest"]
    m = json.loads((out / "blobs" / "sha256" / mdigest[7:]).read_text())
    files = model_files(model)
    assert len(m["layers"]) == len(files)
    for lay in m["layers"]:
        blob = (out / "blobs" / "sha256" / lay["digest"][7:]).read_bytes()
        src = files[lay["annotations"]["org.cncf.model.filepath"]].read_bytes()
        assert blob == src and sha256(blob) == lay["digest"]


def test_referrer_carries_signature_and_trees(registry, keys, model, env):
    p = push(registry, keys, model, "org/ref:v1", env, check=0)
    assert "referrers tag schema" in p.stdout
    st, _, body = registry.request("/v2/org/ref/manifests/v1", accept=MANIFEST)
    mdigest = sha256(body)
    # distribution 2.8 has no referrers API: the tag schema sha256-HEX holds the index
    assert registry.request(f"/v2/org/ref/referrers/{mdigest}")[0] == 404
    index = raw_manifest(registry, f"org/ref:sha256-{mdigest[7:]}")
    assert index["mediaType"] == INDEX
    assert [e["artifactType"] for e in index["manifests"]] == [BUNDLE]
    rdigest = index["manifests"][0]["digest"]
    st, _, rbody = registry.request(f"/v2/org/ref/manifests/{rdigest}", accept=MANIFEST)
    assert st == 200 and sha256(rbody) == rdigest
    ref = json.loads(rbody)
    assert ref["subject"]["digest"] == mdigest and ref["artifactType"] == BUNDLE
    sig = ref["layers"][0]
    assert sig["mediaType"] == BUNDLE
    st, _, blob = registry.request(f"/v2/org/ref/blobs/{sig['digest']}")
    assert blob == (model / "model.sig").read_bytes()
    trees = {p.name: p.read_bytes() for p in (model / ".modelfs" / "trees").iterdir()}
    got = [lay for lay in ref["layers"][1:] if lay["mediaType"] == TREE]
    assert len(got) == len(trees) == 4
    for lay in got:
        st, _, blob = registry.request(f"/v2/org/ref/blobs/{lay['digest']}")
        assert blob == trees[lay["annotations"]["org.opencontainers.image.title"]]
    # pushing again uploads nothing and keeps one referrer in the index
    p = push(registry, keys, model, "org/ref:v1", env, check=0)
    assert "0 blobs uploaded" in p.stdout
    index = raw_manifest(registry, f"org/ref:sha256-{mdigest[7:]}")
    assert len(index["manifests"]) == 1


def repo_exists(registry, repo) -> bool:
    st, _, body = registry.request("/v2/_catalog")
    assert st == 200
    return repo in json.loads(body)["repositories"]


def test_tampered_model_is_refused_before_upload(registry, keys, model, env):
    data = bytearray((model / "config.json").read_bytes())
    data[10] ^= 1
    (model / "config.json").write_bytes(bytes(data))
    p = push(registry, keys, model, "org/tampered:v1", env, check=1)
    assert "nothing pushed" in p.stderr
    assert not repo_exists(registry, "org/tampered")


def test_unsigned_model_is_refused(registry, keys, model, env):
    (model / "model.sig").unlink()
    p = push(registry, keys, model, "org/unsigned:v1", env)
    assert p.returncode != 0 and "nothing pushed" in p.stderr
    assert not repo_exists(registry, "org/unsigned")


def test_untrusted_key_is_refused(registry, model, env, tmp_path):
    run("keygen", tmp_path / "other", check=0)
    p = run("push", "--trust", tmp_path / "other.pub", "--ca-cert", registry.ca, model,
            f"{registry.host}/org/other:v1", env=env)
    assert p.returncode == 1
    assert not repo_exists(registry, "org/other")


def test_wrong_password_is_one_line_naming_the_registry(registry, keys, model, tmp_path):
    env = registry.env(registry.write_auth_file(tmp_path / "bad.json", password="nope"),
                       tmp_path)
    p = push(registry, keys, model, "org/demo:v1", env, check=2)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and registry.host in lines[0] and "authentication failed" in lines[0]
    assert "nope" not in p.stderr and PASSWORD not in p.stderr


def test_no_credentials(registry, keys, model, tmp_path):
    env = registry.env(registry.write_auth_file(tmp_path / "other.json", host="example.org"),
                       tmp_path)
    p = push(registry, keys, model, "org/demo:v1", env, check=2)
    assert registry.host in p.stderr and "no credentials" in p.stderr


def test_tls_is_verified(registry, keys, model, env):
    p = run("push", "--trust", f"{keys}.pub", model, f"{registry.host}/org/demo:v1", env=env,
            check=2)
    assert registry.host in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_plain_http_needs_loopback_or_insecure(keys, model, tmp_path):
    p = run("push", "--trust", f"{keys}.pub", model, "http://192.0.2.1:5000/org/demo:v1",
            check=2, timeout=20)
    assert "plain HTTP refused" in p.stderr and "192.0.2.1:5000" in p.stderr


def test_credentials_never_on_the_command_line(keys, model):
    for opt in ("--password=x", "--creds=u:p", "--username=u"):
        run("push", opt, "--trust", f"{keys}.pub", model, "127.0.0.1:1/org/demo:v1", check=2)


@pytest.mark.parametrize("ref", ["demo:v1", "docker.io/Org/demo:v1", "127.0.0.1:5000/org/demo",
                                 "127.0.0.1:5000/org/demo:-bad", "127.0.0.1:99999/org/demo:v1",
                                 "127.0.0.1:5000/org//demo:v1", "127.0.0.1:5000/org/demo@sha256:00"])
def test_bad_references(keys, model, ref):
    p = run("push", "--trust", f"{keys}.pub", model, ref, check=2)
    assert len(p.stderr.strip().splitlines()) == 1
