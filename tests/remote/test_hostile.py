"""`modelfs push` against a hostile registry (hostile_registry.py): every fault
of docs/remote.md "Faults" ends in exit 2 and one line naming the registry
and the reason, or, for the transient ones, in a push that succeeds after
bounded retries. Never a crash, a hang or a false "pushed:". Plain HTTP on
127.0.0.1; MODELFS_HTTP_TIMEOUT=2 keeps the stall tests short."""
import json
import time

import pytest

from remote.hostile_registry import (INDEX, PASSWORD, USER, HostileRegistry, Sink, big_body,
                                     hang_up, make_model, push_env, redirect, stall, status,
                                     truncated, write_auth)
from remote.oci_registry import run

HEAD_BLOB = r"/blobs/sha256:"
POST_UPLOAD = r"/blobs/uploads/$"
PUT_UPLOAD = r"/blobs/uploads/[0-9a-f]+"
PUT_TAG = r"/manifests/v1$"
REFERRERS = r"/referrers/"
TAG_INDEX = r"/manifests/sha256-"


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("hostile"), run)


@pytest.fixture
def reg():
    r = HostileRegistry(auth=("basic", USER, PASSWORD)).start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def api_reg():
    r = HostileRegistry(auth=("basic", USER, PASSWORD), referrers_api=True).start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def sink():
    s = Sink().start()
    try:
        yield s
    finally:
        s.stop()


def env_for(reg, tmp_path, timeout=2):
    return push_env(write_auth(tmp_path / "auth.json", reg.host), tmp_path, timeout)


def push(sealed, reg, tmp_path, timeout=2, tag="v1"):
    model, pub = sealed
    return run("push", "--trust", pub, model, f"http://{reg.host}/org/hostile:{tag}",
               env=env_for(reg, tmp_path, timeout), timeout=60)


def pushed(p):
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    assert p.stdout.startswith("pushed: ")


def failed(p, reg, *reasons) -> str:
    """Exit 2, nothing claimed, one line naming the registry and the reasons."""
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "pushed:" not in p.stdout
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert reg.host in lines[0], lines[0]
    for r in reasons:
        assert r in lines[0], lines[0]
    assert PASSWORD not in p.stderr + p.stdout
    print("FAULT-LINE:", lines[0])
    return lines[0]


def test_a_well_behaved_fake_registry_takes_the_push(sealed, reg, tmp_path):
    pushed(push(sealed, reg, tmp_path))
    assert (("org/hostile", "v1") in reg.manifests)
    assert reg.requests("PUT", TAG_INDEX), "the referrers tag schema index was written"


def test_referrers_api_registry(sealed, api_reg, tmp_path):
    p = push(sealed, api_reg, tmp_path)
    pushed(p)
    assert "referrers tag schema" not in p.stdout


# -- unexpected statuses -------------------------------------------------------

@pytest.mark.parametrize("method,pattern,what", [
    ("POST", POST_UPLOAD, "blob upload start: HTTP 404"),
    ("PUT", PUT_UPLOAD, "blob upload: HTTP 404"),
    ("PUT", PUT_TAG, "manifest PUT: HTTP 404"),
    ("HEAD", HEAD_BLOB, "blob HEAD: HTTP 403 (forbidden)"),
])
def test_unexpected_status(sealed, reg, tmp_path, method, pattern, what):
    code = 403 if "403" in what else 404
    reg.fault(method, pattern, status(code, b'{"errors":[{"code":"X"}]}'))
    failed(push(sealed, reg, tmp_path), reg, what)


def test_401_without_a_challenge(sealed, reg, tmp_path):
    reg.fault("*", "", status(401), before_auth=True)
    failed(push(sealed, reg, tmp_path), reg, "HTTP 401 without a challenge")


def test_401_even_with_the_right_credentials(sealed, reg, tmp_path):
    reg.fault("*", "", status(401, headers={"WWW-Authenticate": 'Basic realm="x"'}),
              before_auth=True)
    failed(push(sealed, reg, tmp_path), reg, "authentication failed (HTTP 401)")


def test_401_with_an_unknown_scheme(sealed, reg, tmp_path):
    reg.fault("*", "", status(401, headers={"WWW-Authenticate": "Negotiate abc"}),
              before_auth=True)
    failed(push(sealed, reg, tmp_path), reg, "unsupported WWW-Authenticate challenge")


def test_401_with_a_malformed_challenge(sealed, reg, tmp_path):
    # a bearer realm over plain http to a host that is not loopback is refused too
    reg.fault("*", "", status(401, headers={
        "WWW-Authenticate": 'Bearer realm="http://192.0.2.1/token",service="x"'}),
        before_auth=True)
    failed(push(sealed, reg, tmp_path), reg, "WWW-Authenticate challenge")


# -- 429 and 5xx: bounded retries ------------------------------------------------

def test_429_with_retry_after_then_success(sealed, reg, tmp_path):
    f = reg.fault("PUT", PUT_TAG, status(429, headers={"Retry-After": "1"}), times=2)
    t0 = time.monotonic()
    pushed(push(sealed, reg, tmp_path))
    assert f.hits == 2 and time.monotonic() - t0 >= 2.0
    assert len(reg.requests("PUT", PUT_TAG)) == 3


def test_429_forever_gives_up(sealed, reg, tmp_path):
    f = reg.fault("HEAD", HEAD_BLOB, status(429, headers={"Retry-After": "0"}))
    failed(push(sealed, reg, tmp_path), reg, "HTTP 429 (too many requests; 4 attempts)")
    assert f.hits == 4


@pytest.mark.parametrize("value", ["100000", "99999999999999999999999",
                                   "Fri, 31 Dec 2100 23:59:59 GMT"])
def test_429_with_a_retry_after_over_the_cap_is_not_waited_for(sealed, reg, tmp_path, value):
    f = reg.fault("HEAD", HEAD_BLOB, status(429, headers={"Retry-After": value}))
    t0 = time.monotonic()
    failed(push(sealed, reg, tmp_path), reg, "HTTP 429", "is over the 10 s it waits")
    assert f.hits == 1 and time.monotonic() - t0 < 5


def test_429_with_a_garbage_retry_after_backs_off(sealed, reg, tmp_path):
    f = reg.fault("PUT", PUT_TAG, status(429, headers={"Retry-After": "soon, maybe"}), times=1)
    pushed(push(sealed, reg, tmp_path))
    assert f.hits == 1


@pytest.mark.parametrize("method,pattern", [("HEAD", HEAD_BLOB), ("POST", POST_UPLOAD),
                                            ("PUT", PUT_UPLOAD), ("PUT", PUT_TAG),
                                            ("GET", TAG_INDEX)])
def test_500_then_success(sealed, reg, tmp_path, method, pattern):
    f = reg.fault(method, pattern, status(500, b"oops"), times=2)
    pushed(push(sealed, reg, tmp_path))
    assert f.hits == 2


def test_503_forever_gives_up_after_bounded_backoff(sealed, reg, tmp_path):
    f = reg.fault("HEAD", HEAD_BLOB, status(503))
    t0 = time.monotonic()
    failed(push(sealed, reg, tmp_path), reg, "blob HEAD: HTTP 503 (4 attempts)")
    took = time.monotonic() - t0
    assert f.hits == 4 and 3.0 <= took < 15, took


# -- broken transfers ------------------------------------------------------------

def test_truncated_body_then_success(sealed, reg, tmp_path):
    f = reg.fault("GET", TAG_INDEX, truncated(), times=1)
    pushed(push(sealed, reg, tmp_path))
    assert f.hits == 1


def test_truncated_body_forever(sealed, reg, tmp_path):
    f = reg.fault("GET", TAG_INDEX, truncated())
    failed(push(sealed, reg, tmp_path), reg, "transfer closed with", "(4 attempts)")
    assert f.hits == 4


def test_content_length_shorter_than_the_body(sealed, reg, tmp_path):
    body = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": []}).encode()
    reg.fault("GET", TAG_INDEX, truncated(declared=10, sent=body))
    failed(push(sealed, reg, tmp_path), reg, "not a valid OCI index")


def test_connection_closed_without_an_answer(sealed, reg, tmp_path):
    f = reg.fault("PUT", PUT_TAG, hang_up())
    failed(push(sealed, reg, tmp_path), reg, "PUT /v2/org/hostile/manifests/v1 failed",
           "(4 attempts)")
    assert f.hits == 4


@pytest.mark.parametrize("where", [REFERRERS, TAG_INDEX])
def test_index_over_the_manifest_limit(sealed, api_reg, reg, tmp_path, where):
    r = api_reg if where == REFERRERS else reg
    r.fault("GET", where, big_body((4 << 20) + 1))
    failed(push(sealed, r, tmp_path), r, "response body over the size limit")


def test_headers_over_the_limit(sealed, reg, tmp_path):
    many = {f"X-Junk-{i}": "j" * 4000 for i in range(40)}
    reg.fault("HEAD", HEAD_BLOB, status(404, headers=many))
    failed(push(sealed, reg, tmp_path), reg, "response headers over the size limit")


def test_stall_before_the_answer(sealed, reg, tmp_path):
    reg.fault("HEAD", HEAD_BLOB, stall(reg))
    t0 = time.monotonic()
    failed(push(sealed, reg, tmp_path, timeout=2), reg, "HEAD", "Operation too slow")
    assert time.monotonic() - t0 < 15


def test_stall_in_the_middle_of_a_body(sealed, reg, tmp_path):
    reg.fault("GET", TAG_INDEX, stall(reg, after_headers=True))
    t0 = time.monotonic()
    failed(push(sealed, reg, tmp_path, timeout=2), reg, "Operation too slow")
    assert time.monotonic() - t0 < 15


# -- hostile JSON ----------------------------------------------------------------

HOSTILE_INDEXES = {
    "deep nesting": b'{"manifests":' + b"[" * 200000 + b"]" * 200000 + b"}",
    "deep objects": b'{"manifests":[' + b'{"a":' * 50000 + b"1" + b"}" * 50000 + b"]}",
    "manifests not a list": b'{"schemaVersion":2,"manifests":"all of them"}',
    "wrong types": b'{"schemaVersion":2,"manifests":[{"digest":5,"size":"x","mediaType":[]}]}',
    "huge size": (b'{"schemaVersion":2,"manifests":[{"mediaType":"' + INDEX.encode()
                  + b'","digest":"sha256:' + b"a" * 64 + b'","size":1e400}]}'),
    "negative size": (b'{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha256:'
                      + b"a" * 64 + b'","size":-1}]}'),
    "bad digest": b'{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"md5:00","size":1}]}',
    "not JSON": b"\x00\xff<html>",
    "an image manifest": b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{}}',
    "a JSON string": b'"manifests"',
}


@pytest.mark.parametrize("name", sorted(HOSTILE_INDEXES))
@pytest.mark.parametrize("where", [REFERRERS, TAG_INDEX])
def test_hostile_index(sealed, api_reg, reg, tmp_path, where, name):
    r = api_reg if where == REFERRERS else reg
    r.fault("GET", where, status(200, HOSTILE_INDEXES[name], {"Content-Type": INDEX}))
    failed(push(sealed, r, tmp_path), r, "not a valid OCI index")
    assert not r.requests("PUT", TAG_INDEX), "a hostile index is never written back"


def test_manifest_stored_under_another_digest(sealed, reg, tmp_path):
    reg.fault("PUT", PUT_TAG, status(201, headers={"Docker-Content-Digest": "sha256:" + "0" * 64}))
    failed(push(sealed, reg, tmp_path), reg, "stored the manifest as sha256:000")


def test_blob_stored_under_another_digest(sealed, reg, tmp_path):
    reg.fault("PUT", PUT_UPLOAD, status(201, headers={"Docker-Content-Digest": "sha256:" + "0" * 64}))
    failed(push(sealed, reg, tmp_path), reg, "as another digest")


@pytest.mark.parametrize("loc", ["uploads/relative", "ftp://127.0.0.1/x", ""])
def test_unusable_upload_location(sealed, reg, tmp_path, loc):
    reg.fault("POST", POST_UPLOAD, status(202, headers={"Location": loc} if loc else None))
    failed(push(sealed, reg, tmp_path), reg, "blob upload")


# -- redirects and other hosts ---------------------------------------------------

def test_cross_host_redirects_drop_authorization(sealed, reg, sink, tmp_path):
    """HEAD and the upload PUT are redirected (307) to another host:port; it
    sees every request, none with Authorization; the redirected PUT resends
    the whole body (libcurl rewinds it)."""
    reg.fault("HEAD", HEAD_BLOB, redirect(lambda h: f"http://localhost:{sink.port}{h.path}"))
    reg.fault("PUT", PUT_UPLOAD, redirect(lambda h: f"http://127.0.0.1:{sink.port}{h.path}"))
    pushed(push(sealed, reg, tmp_path))
    assert sink.requests("HEAD") and sink.requests("PUT")
    assert all(s.auth is None for s in sink.seen), sink.seen
    # the registry itself did get the credentials
    assert all(s.auth for s in reg.requests("PUT", PUT_TAG))
    model, _ = sealed
    data = (model / "model.safetensors").read_bytes()
    assert data in sink.bodies.values()


def test_same_host_redirect_keeps_authorization(sealed, reg, tmp_path):
    reg.fault("HEAD", HEAD_BLOB, redirect("/v2/org/hostile/blobs/moved"), times=1)
    p = push(sealed, reg, tmp_path)
    pushed(p)
    moved = reg.requests("HEAD", "/blobs/moved")
    assert moved and all(s.auth for s in moved)


def test_redirect_loop_is_bounded(sealed, reg, tmp_path):
    f = reg.fault("HEAD", HEAD_BLOB, redirect(lambda h: h.path))
    failed(push(sealed, reg, tmp_path), reg, "blob", "redirects")
    assert f.hits <= 6 + 1


def test_upload_location_on_another_host_gets_no_authorization(sealed, reg, sink, tmp_path):
    reg.fault("POST", POST_UPLOAD, status(202, headers={
        "Location": f"http://localhost:{sink.port}/upload/here?state=x"}))
    pushed(push(sealed, reg, tmp_path))
    puts = sink.requests("PUT", "/upload/here")
    assert puts and all(s.auth is None for s in puts)
    assert all("digest=sha256" in s.path for s in puts)


def test_a_401_from_another_host_is_not_answered(sealed, reg, sink, tmp_path):
    """The other host asks for credentials with a Bearer realm of its choice
    (from its second request on, when the client already holds the
    registry's credentials): nothing goes to that realm, push fails naming
    the other host."""
    evil = Sink().start()
    try:
        evil_realm = f'Bearer realm="http://127.0.0.1:{evil.port}/token",service="x",scope="y"'
        sink.answer = lambda h: (h.send(404) if len(sink.seen) == 1 else
                                 h.send(401, b"", {"WWW-Authenticate": evil_realm}))
        reg.fault("HEAD", HEAD_BLOB, redirect(lambda h: f"http://localhost:{sink.port}{h.path}"))
        line = failed(push(sealed, reg, tmp_path), reg, "HTTP 401 from localhost:",
                      "not answered")
        assert str(sink.port) in line
        assert not evil.seen, evil.seen
        assert all(s.auth is None for s in sink.seen)
    finally:
        evil.stop()


def test_redirect_to_a_refused_protocol(sealed, reg, tmp_path):
    reg.fault("HEAD", HEAD_BLOB, redirect("ftp://127.0.0.1:21/x"))
    failed(push(sealed, reg, tmp_path), reg, "blob")


def test_nothing_listens(sealed, tmp_path):
    r = HostileRegistry()
    port = r.port
    r.server.server_close()  # bound once, now closed: connection refused
    model, pub = sealed
    env = push_env(write_auth(tmp_path / "a.json", f"127.0.0.1:{port}"), tmp_path)
    p = run("push", "--trust", pub, model, f"http://127.0.0.1:{port}/org/hostile:v1", env=env,
            timeout=60)
    assert p.returncode == 2 and f"127.0.0.1:{port}" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
