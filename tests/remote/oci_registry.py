"""oci_registry.py - a real OCI registry for the remote tests: Debian's docker-registry
(CNCF distribution 2.8) on 127.0.0.1 with a random free port, htpasswd
(bcrypt) auth and a self-signed TLS certificate, storage in a tmp folder.
The fixture (conftest.py) starts one per module and always stops it.
"""
import base64
import hashlib
import json
import os
import pathlib
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent


def modelfs_bin() -> str:
    return os.environ.get("MODELFS_BIN", str(ROOT / "build" / "tools" / "modelfs"))

USER = "pusher"
PASSWORD = "s3cret-pass"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_cert(d: pathlib.Path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"),
                    "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)


class Registry:
    def __init__(self, root: pathlib.Path, port: int):
        self.root = root
        self.port = port
        self.host = f"127.0.0.1:{port}"
        self.ca = root / "cert.pem"
        self.cert_dir = root / "certs.d"
        self.proc = None

    def ssl_context(self):
        return ssl.create_default_context(cafile=str(self.ca))

    def request(self, path, method="GET", accept=None, auth=True):
        """(status, headers, body) of a request to the registry, as the test user."""
        req = urllib.request.Request(f"https://{self.host}{path}", method=method)
        if auth:
            token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            req.add_header("Authorization", "Basic " + token)
        if accept:
            req.add_header("Accept", accept)
        try:
            with urllib.request.urlopen(req, context=self.ssl_context(), timeout=10) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def put_manifest(self, repo, ref, body: bytes, media_type: str) -> str:
        """PUTs a manifest (or index) as tag or digest @ref of @repo; its digest."""
        req = urllib.request.Request(f"https://{self.host}/v2/{repo}/manifests/{ref}",
                                     data=body, method="PUT")
        req.add_header("Content-Type", media_type)
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        req.add_header("Authorization", "Basic " + token)
        with urllib.request.urlopen(req, context=self.ssl_context(), timeout=10) as r:
            assert r.status == 201, r.status
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def write_auth_file(self, path: pathlib.Path, password=PASSWORD, host=None):
        auth = base64.b64encode(f"{USER}:{password}".encode()).decode()
        path.write_text(json.dumps({"auths": {host or self.host: {"auth": auth}}}))
        return path

    def env(self, auth_file: pathlib.Path, home: pathlib.Path):
        env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
        env["REGISTRY_AUTH_FILE"] = str(auth_file)
        env["HOME"] = str(home)
        return env


def start_registry(root: pathlib.Path) -> Registry:
    if not shutil.which("docker-registry"):
        pytest.fail("docker-registry not installed (run tools/bootstrap --test)")
    port = free_port()
    reg = Registry(root, port)
    make_cert(root)
    reg.cert_dir.mkdir()
    shutil.copy(reg.ca, reg.cert_dir / "ca.crt")
    ht = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], check=True,
                        capture_output=True, text=True).stdout
    (root / "htpasswd").write_text(ht)
    (root / "data").mkdir()
    (root / "config.yml").write_text(f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root / 'data'}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: modelfs-test-{port}
  tls:
    certificate: {root / 'cert.pem'}
    key: {root / 'key.pem'}
auth:
  htpasswd:
    realm: modelfs-test
    path: {root / 'htpasswd'}
""")
    return _serve(reg)


def _serve(reg: Registry) -> Registry:
    """Runs docker-registry on reg's config and waits until it answers."""
    root = reg.root
    reg.log = open(root / "registry.log", "ab")
    reg.proc = subprocess.Popen(["docker-registry", "serve", str(root / "config.yml")],
                                stdout=reg.log, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        if reg.proc.poll() is not None:
            break
        try:
            if reg.request("/v2/", auth=False)[0] == 401:
                return reg
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    stop_registry(reg)
    pytest.fail("registry did not start:\n" + (root / "registry.log").read_text())


def restart_registry(reg: Registry) -> Registry:
    """Starts a stopped registry again: same port, certificate and storage."""
    return _serve(reg)


def stop_registry(reg: Registry):
    """Stops the registry (again: nothing); restart_registry() starts it again."""
    if reg.proc and reg.proc.poll() is None:
        reg.proc.terminate()
        try:
            reg.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            reg.proc.kill()
            reg.proc.wait()
    if not reg.log.closed:
        reg.log.close()


def run(*args, env=None, check=None, timeout=300):
    p = subprocess.run([modelfs_bin(), *map(str, args)], capture_output=True, text=True,
                       env=env, timeout=timeout)
    if check is not None and p.returncode != check:
        raise AssertionError(f"modelfs {' '.join(map(str, args))}: exit {p.returncode}, "
                             f"expected {check}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p
