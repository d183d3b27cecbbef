"""The sidecar image, built and run for real (issue #16, item 6).

tools/build-image builds docs/kubernetes/Containerfile with buildah from
Debian packages (the debian:bookworm-slim base made with mmdebstrap when it
is not in local storage). The image is pushed with buildah to Debian's
docker-registry (TLS, htpasswd, on 127.0.0.1; tests/remote/oci_registry.py),
read back with skopeo and pulled again with podman; the pulled image is the
one that runs. Then the pod of docs/kubernetes/pod.yaml, with podman:

- the node's emptyDir: a folder D made a shared mount;
- the sidecar container: `modelfs mount -f` of a store volume onto
  D/models, D mounted `rshared` (mountPropagation: Bidirectional), with
  /dev/fuse and CAP_SYS_ADMIN;
- the app container: D mounted `rslave` (HostToContainer), a long-lived
  process that reads through it.

The sidecar is killed: the app gets ENOTCONN. A new sidecar detaches the
stale mount and mounts again; the same app container, never restarted,
reads the right bytes. A tampered block gives the app EIO. Every container,
image tag of this test, mount and the registry are removed at the end.

A last test has the sidecar mount a model from the registry itself
(`oci://`, the lazy mount) for the app container.
"""
import hashlib
import os
import shutil
import subprocess
import time

import pytest

from deploy_helpers import cleanup
from remote.oci_registry import PASSWORD, USER, start_registry, stop_registry

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = ("podman", "buildah", "mmdebstrap", "skopeo", "docker-registry")
TAG = "localhost/modelfs:test-image"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containers and mounts need root"),
    pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                       reason="needs " + ", ".join(TOOLS) + " (tools/bootstrap --test)"),
]


def podman(*args, check=True, timeout=120):
    p = subprocess.run(["podman", *RUNTIME, *map(str, args)], capture_output=True, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"podman {' '.join(map(str, args))}: exit {p.returncode}\n"
                             f"{p.stdout}\n{p.stderr}")
    return p


# What tools/build-image uses for RUN steps, for `podman run` (see there).
RUNTIME = ["--runtime", "runc"] if shutil.which("runc") else []
LIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]


def run_image(image, *args, volumes=(), entrypoint=None, detach=False, name=None, fuse=False,
              network="none", env=()):
    """`podman run` of @image with @args; no network unless asked, volumes as
    (host, ctr, mode), @env as NAME=VALUE strings."""
    cmd = ["run", *LIMITS, "--network", network]
    for e in env:
        cmd += ["-e", e]
    cmd += ["-d"] if detach else ["--rm"]
    if name:
        cmd += ["--name", name]
    if entrypoint:
        cmd += ["--entrypoint", entrypoint]
    if fuse:  # what pod.yaml's sidecar gets: /dev/fuse and CAP_SYS_ADMIN
        cmd += ["--device", "/dev/fuse", "--cap-add", "SYS_ADMIN",
                "--security-opt", "apparmor=unconfined"]
    for host, ctr, mode in volumes:
        cmd += ["-v", f"{host}:{ctr}:{mode}"]
    return podman(*cmd, image, *args)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """The image built by tools/build-image, pushed, and pulled back."""
    tmp = tmp_path_factory.mktemp("image")
    before = set(podman("images", "-a", "-q", "--no-trunc").stdout.split())
    p = subprocess.run([os.path.join(ROOT, "tools", "build-image"), "--tag", TAG], cwd=ROOT,
                       capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    (tmp / "registry").mkdir()
    reg = start_registry(tmp / "registry")
    pulled = f"{reg.host}/tools/modelfs:test"
    try:
        creds = f"--creds={USER}:{PASSWORD}"
        p = subprocess.run(["buildah", "push", "--cert-dir", str(reg.cert_dir), creds, TAG,
                            f"docker://{pulled}"], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        yield {"reg": reg, "ref": pulled, "creds": creds, "tmp": tmp}
    finally:
        podman("rmi", "-f", TAG, pulled, check=False)
        # and the build stage's untagged image (the base image stays)
        after = set(podman("images", "-a", "-q", "--no-trunc").stdout.split())
        if after - before:
            podman("rmi", "-f", *(after - before), check=False)
        stop_registry(reg)


def test_pushed_image_reads_back_with_skopeo(image):
    reg = image["reg"]
    p = subprocess.run(["skopeo", "inspect", "--cert-dir", str(reg.cert_dir), image["creds"],
                        f"docker://{image['ref']}"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    p = subprocess.run(["skopeo", "inspect", "--config", "--cert-dir", str(reg.cert_dir),
                        image["creds"], f"docker://{image['ref']}"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert '"modelfs"' in p.stdout and "Entrypoint" in p.stdout


@pytest.fixture
def pulled(image):
    """The image pulled from the registry by podman (what a node does)."""
    reg = image["reg"]
    podman("rmi", "-f", image["ref"], check=False)
    podman("pull", "--cert-dir", reg.cert_dir, image["creds"], image["ref"], timeout=300)
    return image["ref"]


def test_image_seals_and_verifies(tmp_path, pulled):
    """The binary in the image works on its own: keygen, seal, verify, --version."""
    store = tmp_path / "store"
    (store / "org" / "m").mkdir(parents=True)
    (store / "org" / "m" / "w.bin").write_bytes(os.urandom(200_000))
    vol = [(store, "/store", "rw")]
    run_image(pulled, "keygen", "/store/k", volumes=vol)
    run_image(pulled, "seal", "--key", "/store/k.key", "/store/org/m", volumes=vol)
    out = run_image(pulled, "verify", "--trust", "/store/k.pub", "/store/org/m",
                    volumes=[(store, "/store", "ro")]).stdout
    assert out.startswith("verified: 1 files, 200000 bytes")
    assert run_image(pulled, "--version").stdout.startswith("modelfs ")


def sha(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def app_sha(name, path) -> str:
    """sha256 of @path as the app container reads it, or 'err: ...'."""
    p = podman("exec", name, "sh", "-c", f"sha256sum {path} 2>&1", check=False)
    out = p.stdout.strip()
    return out.split()[0] if p.returncode == 0 else "err: " + out


def wait_app(name, path, want, timeout=30.0) -> str:
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        got = app_sha(name, path)
        if got == want or (want.startswith("err") and want in got):
            return want
        time.sleep(0.2)
    return got


def shared_folder(tmp_path):
    """The node's emptyDir: a folder made a shared mount, with models/ in it
    (detached by cleanup())."""
    shared = tmp_path / "shared"
    shared.mkdir()
    subprocess.run(["mount", "--bind", shared, shared], check=True)
    subprocess.run(["mount", "--make-shared", shared], check=True)
    (shared / "models").mkdir()
    return shared


def test_sidecar_and_app_containers(tmp_path, pulled):
    store = tmp_path / "store"
    model = store / "org" / "m"
    model.mkdir(parents=True)
    files = {"weights.bin": os.urandom(3 << 20), "config.json": b'{"a": 1}\n'}
    for n, b in files.items():
        (model / n).write_bytes(b)
    vol = [(store, "/store", "rw")]
    run_image(pulled, "keygen", "/store/k", volumes=vol)
    run_image(pulled, "seal", "--key", "/store/k.key", "/store/org/m", volumes=vol)
    want = {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}

    shared = shared_folder(tmp_path)
    suffix = str(os.getpid())
    side, app = f"modelfs-sidecar-{suffix}", f"modelfs-app-{suffix}"

    def start_sidecar():
        run_image(pulled, "mount", "-f", "--trust", "/store/k.pub", "-o", "allow_other",
                  "/store", "/shared/models", name=side, detach=True, fuse=True,
                  volumes=[(store, "/store", "ro"), (shared, "/shared", "rshared")])

    try:
        run_image(pulled, "-c", "sleep 600", entrypoint="sh", name=app, detach=True,
                  volumes=[(shared, "/shared", "rslave")])
        start_sidecar()
        for n, w in want.items():
            assert wait_app(app, f"/shared/models/org/m/{n}", w) == w, podman("logs", side).stderr
        # the node sees the sidecar's mount too (Bidirectional)
        assert sha(shared / "models" / "org" / "m" / "weights.bin") == want["weights.bin"]

        # the sidecar dies: its mount stays, dead
        podman("kill", side)
        podman("rm", "-f", side)
        got = wait_app(app, "/shared/models/org/m/weights.bin", "err")
        assert "Transport endpoint is not connected" in app_sha(
            app, "/shared/models/org/m/config.json"), got

        # restarted: the new sidecar detaches the stale mount and mounts again
        start_sidecar()
        for n, w in want.items():
            assert wait_app(app, f"/shared/models/org/m/{n}", w) == w, podman("logs", side).stderr
        assert "stale-mount" in podman("logs", side).stderr

        # a block tampered in the store: EIO in the app, never its bytes
        with open(model / "weights.bin", "r+b") as f:
            f.seek(2 << 20)
            b = f.read(1)
            f.seek(2 << 20)
            f.write(bytes([b[0] ^ 1]))
        p = podman("exec", app, "sh", "-c",
                   "echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; "
                   "dd if=/shared/models/org/m/weights.bin of=/dev/null bs=4096 skip=512 "
                   "count=1 iflag=direct 2>&1", check=False)
        assert p.returncode != 0 and "Input/output error" in p.stdout, p.stdout

        # a clean stop unmounts everywhere
        podman("stop", "-t", "15", side)
        assert wait_app(app, "/shared/models/org/m/config.json", "err") == "err"
        assert not os.path.ismount(shared / "models")
    finally:
        podman("rm", "-f", side, app, check=False)
        cleanup(tmp_path)


def test_sidecar_mounts_a_remote_model(tmp_path, image, pulled):
    """The sidecar container mounts a model from the registry lazily
    (`oci://`, issue #16 item 2), with the registry's CA and an auth file
    given as volumes; the app container reads it through the shared folder.
    The host network reaches the registry on 127.0.0.1 (as a pod reaches a
    node-local registry mirror)."""
    reg = image["reg"]
    model = tmp_path / "m"
    model.mkdir()
    files = {"weights.bin": os.urandom(2 << 20), "config.json": b'{"remote": true}\n'}
    for n, b in files.items():
        (model / n).write_bytes(b)
    keys = tmp_path / "keys"
    keys.mkdir()
    vol = [(keys, "/keys", "rw"), (model, "/m", "rw")]
    run_image(pulled, "keygen", "/keys/k", volumes=vol)
    run_image(pulled, "seal", "--key", "/keys/k.key", "/m", volumes=vol)
    auth = reg.write_auth_file(tmp_path / "auth.json")
    env = reg.env(auth, tmp_path)
    modelfs = os.environ.get("MODELFS_BIN", os.path.join(ROOT, "build", "tools", "modelfs"))
    p = subprocess.run([modelfs, "push", "--trust", keys / "k.pub", "--ca-cert", reg.ca, model,
                        f"{reg.host}/org/m:v1"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr

    shared = shared_folder(tmp_path)
    suffix = str(os.getpid())
    side, app = f"modelfs-rsidecar-{suffix}", f"modelfs-rapp-{suffix}"
    want = {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}
    try:
        run_image(pulled, "-c", "sleep 600", entrypoint="sh", name=app, detach=True,
                  volumes=[(shared, "/shared", "rslave")])
        run_image(pulled, "mount", "-f", "--trust", "/keys/k.pub", "--ca-cert", "/reg/ca.pem",
                  "-o", "allow_other", f"oci://{reg.host}/org/m:v1", "/shared/models",
                  name=side, detach=True, fuse=True, network="host",
                  env=["REGISTRY_AUTH_FILE=/reg/auth.json"],
                  volumes=[(keys, "/keys", "ro"), (reg.ca, "/reg/ca.pem", "ro"),
                           (auth, "/reg/auth.json", "ro"), (shared, "/shared", "rshared")])
        for n, w in want.items():
            got = wait_app(app, f"/shared/models/org/m/{n}", w)
            assert got == w, (n, got, podman("logs", side).stderr)
        logs = podman("logs", side).stderr
        assert "oci-resolved" in logs, logs
        podman("stop", "-t", "15", side)
        assert wait_app(app, "/shared/models/org/m/config.json", "err") == "err"
    finally:
        podman("rm", "-f", side, app, check=False)
        cleanup(tmp_path)
