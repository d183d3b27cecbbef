"""hostile_registry.py - a small OCI registry for the fault tests, in Python.

It speaks just enough of the distribution API for `modelfs push`, `modelfs
pull` and the lazy mount (blob HEAD and GET, with `Range: bytes=A-B` answered
206 and its Content-Range, POST/PATCH/PUT uploads kept in memory, manifest
PUT/GET/HEAD by tag and by digest, the referrers API or its 404 and the tag
schema index push writes) over plain HTTP on 127.0.0.1 with a random port, and can be told,
per test, to misbehave on chosen requests (`reg.fault(...)`). Auth is Basic
(a user and password), Bearer (tokens of a TokenService, see
token_service.py) or none. Every request is recorded with its headers, so a
test can check what was sent where.

Sink is the "other host" of the redirect tests: it accepts anything, records
it, and answers HEAD with 404 and PUT with 201 and the body's digest.

The faults of ranged reads (wrong Content-Range, a 200 with the whole blob,
a short or long body, a flipped byte, a stall in the body) answer a blob GET
from the blobs pushed to the registry itself.

Servers are started by the fixtures (conftest.py) and always stopped; a
stalled handler is released at stop.
"""
import base64
import hashlib
import json
import re
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"

RE_UPLOADS = re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/(?P<id>[^/]*)$")
RE_OBJ = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>blobs|manifests|referrers)/(?P<ref>[^/]+)$")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Seen:
    """One request as the server saw it."""

    def __init__(self, method, path, headers, body_len):
        self.method = method
        self.path = path
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body_len = body_len

    @property
    def auth(self):
        return self.headers.get("authorization")

    def __repr__(self):
        return f"{self.method} {self.path} auth={'yes' if self.auth else 'no'}"


class Fault:
    def __init__(self, method, pattern, action, times, before_auth):
        self.method = method
        self.pattern = re.compile(pattern)
        self.action = action
        self.times = times  # None: always
        self.before_auth = before_auth
        self.hits = 0

    def matches(self, method, path, before_auth):
        if self.before_auth != before_auth:
            return False
        if self.method not in ("*", method) or not self.pattern.search(path):
            return False
        return self.times is None or self.hits < self.times


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):  # a client that hung up: expected
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hostile/1"

    def log_message(self, fmt, *args):  # quiet
        pass

    @property
    def app(self):
        return self.server.app

    def read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send(self, status, body=b"", headers=None, ctype=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def handle_one(self):
        body = b""
        if self.command in ("PUT", "POST", "PATCH"):
            body = self.read_body()
        self.body = body
        self.app.record(Seen(self.command, self.path, self.headers, len(body)))
        self.app.dispatch(self)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = handle_one


class _Base:
    def __init__(self, host="127.0.0.1"):
        self.server = _Server((host, 0), _Handler)
        self.server.app = self
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.seen = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.faults = []
        self.release = threading.Event()  # set: stalled handlers give up (stall_body)

    # -- faults -----------------------------------------------------------
    def fault(self, method, pattern, action, times=None, before_auth=False):
        """On METHOD (or "*") to a path matching PATTERN, call ACTION(handler)
        instead of answering, TIMES times (None: always)."""
        f = Fault(method, pattern, action, times, before_auth)
        self.faults.append(f)
        return f

    def _fault(self, h, before_auth):
        for f in self.faults:
            if f.matches(h.command, h.path, before_auth):
                f.hits += 1
                f.action(h)
                return True
        return False

    def record(self, s):
        with self.lock:
            self.seen.append(s)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def requests(self, method=None, pattern=""):
        with self.lock:
            return [s for s in self.seen if (method is None or s.method == method)
                    and re.search(pattern, s.path)]


class Sink(_Base):
    """Another host: accepts anything, HEAD 404, PUT 201 with the body's digest."""

    def dispatch(self, h):
        if h.command == "PUT":
            d = sha256(h.body)
            self.bodies[d] = h.body
            h.send(201, headers={"Docker-Content-Digest": d, "Location": h.path})
        elif self.answer:
            self.answer(h)
        else:
            h.send(404)

    def __init__(self):
        super().__init__()
        self.bodies = {}
        self.answer = None  # optional: a function(handler) for GET/HEAD/POST


class HostileRegistry(_Base):
    """The registry. auth: None, ("basic", user, password) or ("bearer", TokenService)."""

    def __init__(self, auth=None, referrers_api=False):
        super().__init__()
        self.auth = auth
        self.referrers_api = referrers_api
        self.blobs = {}
        self.manifests = {}  # (name, ref) -> (ctype, bytes)
        self.uploads = {}

    # -- auth -------------------------------------------------------------
    def _scope(self, h, name):
        return f"repository:{name}:" + ("pull" if h.command in ("GET", "HEAD") else "pull,push")

    def _authorized(self, h, name):
        got = h.headers.get("Authorization", "")
        if self.auth is None:
            return True
        if self.auth[0] == "basic":
            want = base64.b64encode(f"{self.auth[1]}:{self.auth[2]}".encode()).decode()
            return got == "Basic " + want
        ts = self.auth[1]
        if not got.startswith("Bearer "):
            return False
        return ts.allows(got[7:], name, "pull" if h.command in ("GET", "HEAD") else "push")

    def _challenge(self, h, name):
        if self.auth[0] == "basic":
            return 'Basic realm="hostile"'
        ts = self.auth[1]
        return (f'Bearer realm="{ts.realm}",service="{ts.service}",'
                f'scope="{self._scope(h, name)}"')

    # -- the API ----------------------------------------------------------
    def dispatch(self, h):
        path = urlsplit(h.path).path
        m = RE_UPLOADS.match(path) or RE_OBJ.match(path)
        name = m.group("name") if m else ""
        if self._fault(h, True):
            return
        if self.auth and not self._authorized(h, name):
            err = json.dumps({"errors": [{"code": "UNAUTHORIZED"}]}).encode()
            return h.send(401, err, {"WWW-Authenticate": self._challenge(h, name)},
                          "application/json")
        if self._fault(h, False):
            return
        if path == "/v2/":
            return h.send(200, b"{}", ctype="application/json")
        m = RE_UPLOADS.match(path)
        if m:
            return self._upload(h, m.group("name"), m.group("id"))
        m = RE_OBJ.match(path)
        if not m:
            return h.send(404)
        kind, ref = m.group("kind"), m.group("ref")
        if kind == "blobs":
            return self._blob(h, ref)
        if kind == "manifests":
            return self._manifest(h, name, ref)
        return self._referrers(h, name, ref)

    def _upload(self, h, name, uid):
        loc = f"/v2/{name}/blobs/uploads/"
        if h.command == "POST" and not uid:
            uid = uuid.uuid4().hex
            self.uploads[uid] = bytearray()
            return h.send(202, headers={"Location": loc + uid, "Docker-Upload-UUID": uid,
                                        "Range": "0-0"})
        if uid not in self.uploads:
            return h.send(404, b'{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN"}]}')
        self.uploads[uid] += h.body
        if h.command == "PATCH":
            return h.send(202, headers={"Location": loc + uid,
                                        "Range": f"0-{len(self.uploads[uid]) - 1}"})
        if h.command == "PUT":
            want = parse_qs(urlsplit(h.path).query).get("digest", [""])[0]
            data = bytes(self.uploads.pop(uid))
            if sha256(data) != want:
                return h.send(400, b'{"errors":[{"code":"DIGEST_INVALID"}]}')
            self.blobs[want] = data
            return h.send(201, headers={"Docker-Content-Digest": want,
                                        "Location": f"/v2/{name}/blobs/{want}"})
        return h.send(405)

    def _blob(self, h, digest):
        if h.command not in ("GET", "HEAD"):
            return h.send(405)
        data = self.blobs.get(digest)
        if data is None:
            return h.send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
        rng = asked_range(h, len(data))
        if rng is None:
            return h.send(200, data, {"Docker-Content-Digest": digest},
                          "application/octet-stream")
        if rng is False:
            return h.send(416, headers={"Content-Range": f"bytes */{len(data)}"})
        a, b = rng
        return h.send(206, data[a:b + 1], {"Docker-Content-Digest": digest,
                                            "Content-Range": f"bytes {a}-{b}/{len(data)}"},
                      "application/octet-stream")

    def blob_of(self, h):
        """(digest, bytes) of the blob a request names, or (None, None)."""
        m = RE_OBJ.match(urlsplit(h.path).path)
        if not m or m.group("kind") != "blobs":
            return None, None
        return m.group("ref"), self.blobs.get(m.group("ref"))

    def clear_faults(self):
        """Forget every fault and release the stalled handlers (between tests)."""
        self.faults = []
        self.release.set()
        self.release = threading.Event()

    def _manifest(self, h, name, ref):
        if h.command == "PUT":
            d = sha256(h.body)
            ctype = h.headers.get("Content-Type", MANIFEST)
            self.manifests[(name, ref)] = self.manifests[(name, d)] = (ctype, h.body)
            return h.send(201, headers={"Docker-Content-Digest": d,
                                        "Location": f"/v2/{name}/manifests/{d}"})
        if h.command in ("GET", "HEAD"):
            got = self.manifests.get((name, ref))
            if not got:
                return h.send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
            return h.send(200, got[1], {"Docker-Content-Digest": sha256(got[1])}, got[0])
        return h.send(405)

    def _referrers(self, h, name, digest):
        if not self.referrers_api:
            return h.send(404, b"404 page not found\n", ctype="text/plain")
        out = []
        for (n, ref), (ctype, body) in list(self.manifests.items()):
            if n != name or not ref.startswith("sha256:"):
                continue
            try:
                m = json.loads(body)
            except ValueError:
                continue
            if isinstance(m, dict) and (m.get("subject") or {}).get("digest") == digest:
                out.append({"mediaType": ctype, "digest": ref, "size": len(body),
                            "artifactType": m.get("artifactType")})
        body = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": out}).encode()
        return h.send(200, body, ctype=INDEX)


# -- fault actions: each answers (or does not) one request --------------------

def status(code, body=b"", headers=None):
    """Answer CODE with BODY and HEADERS."""
    return lambda h: h.send(code, body, headers)


def truncated(declared=1000, sent=b'{"schemaVersion":2,'):
    """Announce DECLARED bytes, send fewer, close the connection."""
    def act(h):
        h.send_response(200)
        h.send_header("Content-Type", INDEX)
        h.send_header("Content-Length", str(declared))
        h.end_headers()
        h.wfile.write(sent)
        h.wfile.flush()
        h.close_connection = True
    return act


def stall(app, after_headers=False):
    """Accept the request, then say nothing (or stop after the headers)
    until the server stops."""
    def act(h):
        if after_headers:
            h.send_response(200)
            h.send_header("Content-Type", INDEX)
            h.send_header("Content-Length", "100000")
            h.end_headers()
            h.wfile.write(b'{"schemaVersion":2,')
            h.wfile.flush()
        app.stopping.wait(120)
        h.close_connection = True
    return act


def hang_up():
    """Close the connection without answering."""
    def act(h):
        h.close_connection = True
        try:
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    return act


def big_body(n, ctype=INDEX):
    """A 200 whose body is N bytes of a JSON string, streamed."""
    def act(h):
        h.send_response(200)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(n))
        h.end_headers()
        chunk = b" " * 65536
        left = n
        try:
            while left > 0:
                k = min(left, len(chunk))
                h.wfile.write(chunk[:k])
                left -= k
        except OSError:
            pass
        h.close_connection = True
    return act


def redirect(location, code=307):
    """Redirect to LOCATION (a function of the handler, or a string)."""
    def act(h):
        loc = location(h) if callable(location) else location
        h.send(code, headers={"Location": loc})
    return act


def slow_after(seconds, then):
    """Wait, then act."""
    def act(h):
        time.sleep(seconds)
        then(h)
    return act


# -- faults of ranged blob GETs (registry.fault("GET", BLOB_PATH, ...)) ------------

RE_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")


def asked_range(h, size):
    """(first, last) of the request's Range, None without one, False if unusable."""
    v = h.headers.get("Range")
    if v is None:
        return None
    m = RE_RANGE.match(v.strip())
    if not m:
        return False
    a, b = int(m.group(1)), int(m.group(2))
    if a > b or a >= size:
        return False
    return a, min(b, size - 1)


def _ranged(app, h):
    """(data, first, last) of a ranged blob GET; the whole blob without a Range."""
    _, data = app.blob_of(h)
    data = data or b""
    rng = asked_range(h, len(data)) or (0, len(data) - 1)
    return data, rng[0], rng[1]


def _answer(h, status_, body, headers, length=None, close=False):
    """Send STATUS and HEADERS with Content-Length LENGTH (len(body)), then BODY."""
    h.send_response(status_)
    for k, v in headers.items():
        h.send_header(k, v)
    h.send_header("Content-Type", "application/octet-stream")
    h.send_header("Content-Length", str(len(body) if length is None else length))
    h.end_headers()
    try:
        h.wfile.write(body)
        h.wfile.flush()
    except OSError:
        pass
    if close:
        h.close_connection = True


def wrong_content_range(app, shift=0, total=0):
    """A 206 whose Content-Range is SHIFT bytes further (and its bytes), or
    says a total TOTAL bytes off."""
    def act(h):
        data, a, b = _ranged(app, h)
        a2, b2 = a + shift, b + shift
        body = data[a2:b2 + 1].ljust(b - a + 1, b"\0")
        _answer(h, 206, body, {"Content-Range": f"bytes {a2}-{b2}/{len(data) + total}"})
    return act


def whole_blob(app):
    """A 200 with the whole blob, whatever range was asked."""
    def act(h):
        data, _, _ = _ranged(app, h)
        _answer(h, 200, data, {})
    return act


def short_body(app, missing=100):
    """The right 206 headers, MISSING bytes fewer than announced, connection closed."""
    def act(h):
        data, a, b = _ranged(app, h)
        body = data[a:b + 1]
        _answer(h, 206, body[:-missing], {"Content-Range": f"bytes {a}-{b}/{len(data)}"},
                length=len(body), close=True)
    return act


def long_body(app, extra=100):
    """The right Content-Range, but EXTRA more bytes (and Content-Length) than asked."""
    def act(h):
        data, a, b = _ranged(app, h)
        _answer(h, 206, data[a:b + 1] + b"\0" * extra,
                {"Content-Range": f"bytes {a}-{b}/{len(data)}"})
    return act


def flipped_byte(app, at=None):
    """The right 206 with one byte flipped: the range's middle byte, or with AT the
    byte at that offset of the blob (a range without it is served intact)."""
    def act(h):
        data, a, b = _ranged(app, h)
        body = bytearray(data[a:b + 1])
        if at is None:
            body[len(body) // 2] ^= 0x5A
        elif a <= at <= b:
            body[at - a] ^= 0x5A
        _answer(h, 206, bytes(body), {"Content-Range": f"bytes {a}-{b}/{len(data)}"})
    return act


def stall_body(app, sent=100):
    """The right 206 headers and the body's first SENT bytes (under curl's 1024
    bytes/s low-speed limit), then nothing until the fault is cleared
    (clear_faults) or the server stops."""
    def act(h):
        data, a, b = _ranged(app, h)
        body = data[a:b + 1]
        release = app.release
        h.send_response(206)
        h.send_header("Content-Range", f"bytes {a}-{b}/{len(data)}")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        try:
            h.wfile.write(body[:sent])
            h.wfile.flush()
        except OSError:
            pass
        while not release.wait(0.1) and not app.stopping.is_set():
            pass
        h.close_connection = True
    return act


# -- what the tests share -------------------------------------------------------

USER = "pusher"
PASSWORD = "hostile-s3cret"


def make_model(root, run):
    """A small sealed model (two files, one with a tree): (folder, public key)."""
    keys = root / "keys"
    keys.mkdir()
    run("keygen", keys / "pub", check=0)
    m = root / "model"
    m.mkdir()
    (m / "model.safetensors").write_bytes(hashlib.sha256(b"w").digest() * 3000)
    (m / "README.md").write_text("# hostile\n")
    run("seal", "--key", keys / "pub.key", "--name", "org/hostile", m, check=0)
    return m, keys / "pub.pub"


def write_auth(path, host, user=USER, password=PASSWORD):
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return path


def push_env(auth_file, home, timeout=2):
    import os
    env = {k: v for k, v in os.environ.items()
           if k not in ("XDG_RUNTIME_DIR", "REGISTRY_AUTH_FILE", "MODELFS_HTTP_TIMEOUT")}
    env["REGISTRY_AUTH_FILE"] = str(auth_file)
    env["HOME"] = str(home)
    env["MODELFS_HTTP_TIMEOUT"] = str(timeout)
    return env
