"""token_service.py - a registry token service for the bearer tests, in Python.

GET /token?service=S&scope=repository:NAME:ACTIONS with Basic credentials
(checked against the users it was given, which the test also writes to the
REGISTRY_AUTH_FILE) answers {"token": T} (or {"access_token": T}) granting
the scope; HostileRegistry(auth=("bearer", ts)) accepts only such tokens,
for the repository and actions they were issued for. Plain HTTP on
127.0.0.1 with a random port (a loopback realm may be http); faults as in
hostile_registry.py.
"""
import base64
import hashlib
import json
import secrets
import time
from urllib.parse import parse_qs, urlsplit

from remote.hostile_registry import _Base


class TokenService(_Base):
    def __init__(self, users, field="token", service="hostile-registry", signer=None):
        super().__init__()
        self.signer = signer  # a JwtSigner: tokens for a real registry
        self.users = dict(users)
        self.field = field
        self.service = service
        self.realm = f"http://{self.host}/token"
        self.tokens = {}  # token -> {name: set(actions)}

    def allows(self, token, name, action) -> bool:
        with self.lock:
            return action in self.tokens.get(token, {}).get(name, set())

    def _user(self, h):
        got = h.headers.get("Authorization", "")
        if not got.startswith("Basic "):
            return None
        try:
            user, _, pw = base64.b64decode(got[6:]).decode().partition(":")
        except ValueError:
            return None
        return user if self.users.get(user) == pw else None

    def dispatch(self, h):
        if self._fault(h, True):
            return
        url = urlsplit(h.path)
        if url.path != "/token":
            return h.send(404)
        if self._user(h) is None:
            return h.send(401, b'{"details":"invalid credentials"}',
                          {"WWW-Authenticate": 'Basic realm="token"'})
        if self._fault(h, False):
            return
        q = parse_qs(url.query)
        if q.get("service", [""])[0] != self.service:
            return h.send(400, b'{"details":"unknown service"}')
        grant = {}
        for scope in q.get("scope", []):
            for one in scope.split(" "):
                kind, _, rest = one.partition(":")
                name, _, actions = rest.rpartition(":")
                if kind == "repository" and name:
                    grant.setdefault(name, set()).update(actions.split(","))
        user = self._user(h)
        token = (self.signer.sign(self.service, user, grant) if self.signer
                 else secrets.token_urlsafe(32))
        with self.lock:
            self.tokens[token] = grant
        body = json.dumps({self.field: token, "expires_in": 300}).encode()
        return h.send(200, body, ctype="application/json")


class JwtSigner:
    """Signs registry tokens as distribution's token auth expects them: an
    RS256 JWT whose "kid" is the libtrust key ID of a key whose certificate
    is the registry's rootcertbundle, with iss, aud (the service), exp and
    the granted "access"."""

    def __init__(self, root, issuer="modelfs-test-issuer"):
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.issuer = issuer
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(1)
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .sign(self.key, hashes.SHA256()))
        self.bundle = root / "token-ca.pem"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        der = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        raw = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
        self.kid = ":".join(raw[i:i + 4] for i in range(0, len(raw), 4))

    def sign(self, service, user, grant) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        def b64(b):
            return base64.urlsafe_b64encode(b).decode().rstrip("=")
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        claims = {"iss": self.issuer, "sub": user, "aud": service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8),
                  "access": [{"type": "repository", "name": n, "actions": sorted(a)}
                             for n, a in grant.items()]}
        data = (b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode()))
        sig = self.key.sign(data.encode(), padding.PKCS1v15(), hashes.SHA256())
        return data + "." + b64(sig)
