"""The bearer token flow of `modelfs push` against a token service
(token_service.py) that checks the Basic credentials of the auth file the
test writes (REGISTRY_AUTH_FILE) and a registry (hostile_registry.py) that
answers 401 with `WWW-Authenticate: Bearer realm=...,service=...,scope=...`
and accepts only the tokens the service issued, for their scope. Plain HTTP
on 127.0.0.1 (a loopback realm may be http). Last, the real component:
Debian's docker-registry (distribution 2.8) with its own token auth,
trusting a key the test makes, in front of the same token service signing
JWTs with it."""
import base64
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from remote.hostile_registry import (PASSWORD, USER, HostileRegistry, big_body,
                                     make_model, push_env, redirect, stall, status,
                                     write_auth)
from remote.oci_registry import free_port, run
from remote.test_hostile import (HEAD_BLOB, POST_UPLOAD, PUT_UPLOAD, failed, pushed,  # noqa: F401
                                 sink)  # sink: a fixture
from remote.token_service import JwtSigner, TokenService


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("bearer"), run)


def start(field="token"):
    ts = TokenService({USER: PASSWORD}, field=field).start()
    reg = HostileRegistry(auth=("bearer", ts)).start()
    return ts, reg


@pytest.fixture
def servers():
    ts, reg = start()
    try:
        yield ts, reg
    finally:
        reg.stop()
        ts.stop()


def push(sealed, reg, tmp_path, password=PASSWORD, auth_host=None):
    model, pub = sealed
    auth = write_auth(tmp_path / "auth.json", auth_host or reg.host, password=password)
    return run("push", "--trust", pub, model, f"http://{reg.host}/org/hostile:v1",
               env=push_env(auth, tmp_path), timeout=60)


def basic(password=PASSWORD):
    return "Basic " + base64.b64encode(f"{USER}:{password}".encode()).decode()


def test_push_with_the_right_credentials(sealed, servers, tmp_path):
    ts, reg = servers
    pushed(push(sealed, reg, tmp_path))
    assert ("org/hostile", "v1") in reg.manifests
    scopes = {s.path.split("scope=")[-1] for s in ts.requests("GET", "/token")}
    assert "repository%3Aorg%2Fhostile%3Apull" in scopes
    assert "repository%3Aorg%2Fhostile%3Apull%2Cpush" in scopes
    # the service sees the Basic credentials, the registry only tokens
    assert all(s.auth == basic() for s in ts.seen)
    authed = [s for s in reg.seen if s.auth]
    assert authed and all(s.auth.startswith("Bearer ") for s in authed)
    assert all(PASSWORD not in (s.auth or "") for s in reg.seen)


def test_access_token_field(sealed, tmp_path):
    ts, reg = start(field="access_token")
    try:
        pushed(push(sealed, reg, tmp_path))
    finally:
        reg.stop()
        ts.stop()


def test_wrong_password(sealed, servers, tmp_path):
    ts, reg = servers
    p = push(sealed, reg, tmp_path, password="wrong-Pa55word")
    failed(p, reg, "authentication failed at the token service (HTTP 401)")
    out = p.stdout + p.stderr
    assert "wrong-Pa55word" not in out and PASSWORD not in out
    assert base64.b64encode(f"{USER}:wrong-Pa55word".encode()).decode() not in out
    assert not reg.manifests


def test_no_credentials(sealed, servers, tmp_path):
    ts, reg = servers
    p = push(sealed, reg, tmp_path, auth_host="example.org")
    failed(p, reg, "authentication failed at the token service (HTTP 401)")
    assert all(s.auth is None for s in ts.seen)


def test_token_is_not_sent_to_another_host(sealed, servers, sink, tmp_path):
    """Blob HEADs are redirected to another host:port, the upload Location
    is on it: it sees no Authorization at all, the registry sees tokens."""
    ts, reg = servers
    reg.fault("HEAD", HEAD_BLOB, redirect(lambda h: f"http://localhost:{sink.port}{h.path}"))
    reg.fault("POST", POST_UPLOAD, status(202, headers={
        "Location": f"http://127.0.0.1:{sink.port}/upload?s=1"}))
    pushed(push(sealed, reg, tmp_path))
    assert sink.requests("HEAD") and sink.requests("PUT", "/upload")
    assert all(s.auth is None for s in sink.seen), sink.seen
    assert all(s.auth.startswith("Bearer ") for s in reg.requests("PUT", "/manifests/"))


def test_redirected_upload_keeps_the_token_on_the_registry_only(sealed, servers, sink,
                                                                tmp_path):
    ts, reg = servers
    reg.fault("PUT", PUT_UPLOAD, redirect(lambda h: f"http://127.0.0.1:{sink.port}{h.path}"))
    pushed(push(sealed, reg, tmp_path))
    assert sink.requests("PUT") and all(s.auth is None for s in sink.seen)


def test_token_answer_over_the_limit(sealed, servers, tmp_path):
    ts, reg = servers
    ts.fault("GET", "/token", big_body((64 << 10) + 1, "application/json"))
    failed(push(sealed, reg, tmp_path), reg, "/token failed: response body over the size limit")


HOSTILE_TOKENS = {
    "deep nesting": b'{"token":' + b"[" * 30000 + b"]" * 30000 + b"}",  # under 64 KiB
    "a number": b'{"token": 12345678901234567890e999}',
    "an object": b'{"token": {"token": "x"}, "access_token": ["y"]}',
    "empty": b'{"token": ""}',
    "header injection": b'{"token": "abc\\r\\nX-Evil: 1"}',
    "with a space": b'{"token": "abc def"}',
    "not JSON": b"<html>token</html>",
    "a list": b'["token", "abc"]',
}


@pytest.mark.parametrize("name", sorted(HOSTILE_TOKENS))
def test_hostile_token_answer(sealed, servers, tmp_path, name):
    ts, reg = servers
    ts.fault("GET", "/token", status(200, HOSTILE_TOKENS[name], {"Content-Type": "application/json"}))
    failed(push(sealed, reg, tmp_path), reg, "no token from the token service (HTTP 200")


def test_token_service_503_then_success(sealed, servers, tmp_path):
    ts, reg = servers
    f = ts.fault("GET", "/token", status(503), times=2)
    pushed(push(sealed, reg, tmp_path))
    assert f.hits == 2


def test_token_service_500_forever(sealed, servers, tmp_path):
    ts, reg = servers
    ts.fault("GET", "/token", status(500))
    failed(push(sealed, reg, tmp_path), reg, "no token from the token service (HTTP 500)")


def test_token_service_stalls(sealed, servers, tmp_path):
    ts, reg = servers
    ts.fault("GET", "/token", stall(ts))
    failed(push(sealed, reg, tmp_path), reg, "/token failed: Operation too slow")


def test_a_token_the_registry_refuses(sealed, servers, tmp_path):
    """The service issues a token the registry does not accept: one more
    401 after answering is the end."""
    ts, reg = servers
    ts.fault("GET", "/token", status(200, json.dumps({"token": "forged"}).encode()))
    failed(push(sealed, reg, tmp_path), reg, "authentication failed (HTTP 401)")


# -- the real component: distribution 2.8's own token auth ---------------------

@pytest.fixture
def token_registry(tmp_path):
    """Debian's docker-registry with `auth: token:` trusting a key the test
    makes; the token service signs JWTs with it. Plain HTTP on 127.0.0.1."""
    if not shutil.which("docker-registry"):
        pytest.fail("docker-registry not installed (run tools/bootstrap --test)")
    signer = JwtSigner(tmp_path)
    ts = TokenService({USER: PASSWORD}, service="modelfs-test-registry", signer=signer).start()
    port = free_port()
    (tmp_path / "data").mkdir()
    (tmp_path / "config.yml").write_text(f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {tmp_path / 'data'}
http:
  addr: 127.0.0.1:{port}
  secret: modelfs-test-{port}
auth:
  token:
    realm: {ts.realm}
    service: {ts.service}
    issuer: {signer.issuer}
    rootcertbundle: {signer.bundle}
""")
    log = open(tmp_path / "registry.log", "wb")
    proc = subprocess.Popen(["docker-registry", "serve", str(tmp_path / "config.yml")],
                            stdout=log, stderr=subprocess.STDOUT)
    host = f"127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while time.time() < deadline and proc.poll() is None:
            try:
                urllib.request.urlopen(f"http://{host}/v2/", timeout=2)
            except urllib.error.HTTPError as e:
                if e.code == 401:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("registry did not start:\n" + (tmp_path / "registry.log").read_text())
        yield host, ts
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        ts.stop()


class _Host:
    def __init__(self, host):
        self.host = host


def test_real_registry_with_token_auth(sealed, token_registry, tmp_path):
    host, ts = token_registry
    p = push(sealed, _Host(host), tmp_path)
    pushed(p)
    assert "referrers tag schema" in p.stdout
    assert ts.requests("GET", "/token") and all(s.auth == basic() for s in ts.seen)
    # the tag is there, for a token of the right scope
    tok = json.loads(urllib.request.urlopen(urllib.request.Request(
        f"{ts.realm}?service={ts.service}&scope=repository:org/hostile:pull",
        headers={"Authorization": basic()}), timeout=10).read())["token"]
    req = urllib.request.Request(f"http://{host}/v2/org/hostile/manifests/v1", headers={
        "Authorization": "Bearer " + tok, "Accept": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert json.loads(r.read())["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"


def test_real_registry_wrong_password(sealed, token_registry, tmp_path):
    host, ts = token_registry
    p = push(sealed, _Host(host), tmp_path, password="not-it-9")
    failed(p, _Host(host), "authentication failed at the token service (HTTP 401)")
    assert "not-it-9" not in p.stdout + p.stderr
