#!/usr/bin/python3
"""forge.py - a test Sigstore PKI and keyless OMS signatures made offline.

Issue #14 (keyless signatures): modelfs verifies Sigstore bundles whose
signer is a short-lived Fulcio certificate, logged in Rekor. Real bundles
need the public-good Fulcio, CT log, Rekor and timestamp authority; this
script plays all four with keys of its own, so the tests can make good
keyless models and models that break exactly one check.

  forge.py pki DIR
      Makes a Fulcio-like root CA (P-384) and intermediate (P-384), a CT log
      key, a Rekor log key (ECDSA P-256), a timestamp authority (root and
      signing certificate, P-384/P-256); writes DIR/trusted_root.json
      (application/vnd.dev.sigstore.trustedroot+json;version=0.1) and the
      private material under DIR/private/.

  forge.py sign --pki DIR --model MODEL_DIR --identity ID --issuer URL
                [--tsa] [--fault NAME] [--signature FILE]
      Replaces MODEL_DIR/model.sig (sealed with a key by `modelfs seal`) by a
      keyless OMS bundle over the same in-toto statement: bundle v0.3 with
      the leaf certificate, one Rekor v1 dsse 0.0.1 entry (inclusion
      promise, inclusion proof, signed checkpoint) and, with --tsa, an
      RFC 3161 timestamp over the signature. --fault breaks one check.

  forge.py faults
      Lists the fault names, one a line.

Runs with Debian's /usr/bin/python3 and python3-cryptography (38); RFC 3161
tokens come from the `openssl ts -reply` command. Nothing is downloaded.
The formats follow the Sigstore client specification, the Rekor dsse 0.0.1
type, C2SP signed-note/tlog-checkpoint and RFC 6962 (SCTs, Merkle trees).
"""
import argparse
import base64
import dataclasses
import datetime
import hashlib
import json
import os
import pathlib
import random
import struct
import subprocess
import sys
import tempfile
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
TRUSTED_ROOT = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
INTOTO = "application/vnd.in-toto+json"

OID_ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")  # raw bytes (legacy)
OID_ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")  # DER UTF8String
OID_SCT_LIST = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")  # RFC 6962 3.3

FULCIO_URL = "https://fulcio.forge.test"
CTLOG_URL = "https://ctfe.forge.test/test"
REKOR_HOST = "rekor.forge.test"
REKOR_URL = "https://" + REKOR_HOST
TSA_URL = "https://timestamp.forge.test/api/v1/timestamp"
OTHER_ISSUER = "https://issuer.forge.invalid"

DAY = 86400
CERT_LIFETIME = 600  # seconds, as Fulcio's 10 minutes
SIGN_AGE = 120  # the signing time lies this far in the past
LOG_DELAY = 3  # seconds from the certificate's issue to the log entry

# --fault NAME: one line each (printed by --help and `forge.py faults`).
FAULTS = {
    "wrong-identity": "the certificate names another identity than --identity",
    "wrong-issuer": "both OIDC issuer extensions name another issuer than --issuer",
    "issuer-extensions-disagree": "extension .1.8 names --issuer, the legacy .1.1 another one",
    "no-codesigning-eku": "the leaf's extended key usage is clientAuth, not codeSigning",
    "no-digitalsignature-ku": "the leaf's key usage is contentCommitment, not digitalSignature",
    "cert-expired-at-log-time": "the leaf expired before the entry's integrated time",
    "cert-not-yet-valid-at-log-time": "the leaf's notBefore is after the integrated time",
    "cert-expired-at-tsa-time": "the leaf is valid at the log's time, expired at the "
                                "timestamp's (implies --tsa)",
    "untrusted-ca": "the leaf is issued by a look-alike CA that the trusted root lacks",
    "no-sct": "the leaf embeds no SCT",
    "sct-bad-signature": "the SCT's signature (by the trusted CT log) is over other bytes",
    "sct-unknown-log": "the SCT is signed by a CT log that the trusted root lacks",
    "set-bad-signature": "the signed entry timestamp is over another integrated time",
    "integrated-time-in-future": "the entry is integrated an hour from now (leaf valid then)",
    "log-not-in-root": "the entry, SET and checkpoint are by a Rekor key the root lacks",
    "inclusion-proof-bad-hash": "one hash of the inclusion proof's audit path is altered",
    "checkpoint-bad-signature": "the checkpoint's signature (right key hint) is over other text",
    "checkpoint-wrong-root": "the checkpoint, well signed, carries another root hash",
    "checkpoint-wrong-size": "the checkpoint, well signed, carries another tree size",
    "body-other-signature": "the logged body holds another signature than the envelope's",
    "body-other-certificate": "the logged body names another certificate (another key)",
    "body-other-payload": "the logged body's payloadHash is of another payload",
    "dsse-bad-signature": "the envelope's signature (also logged) is over another PAE",
    "statement-tampered": "the statement is changed after it was signed and logged",
    "tsa-bad-imprint": "the RFC 3161 timestamp's imprint is of other bytes (implies --tsa)",
    "tsa-untrusted": "the RFC 3161 timestamp is by a TSA the root lacks (implies --tsa)",
}
TSA_FAULTS = {"tsa-bad-imprint", "tsa-untrusted", "cert-expired-at-tsa-time"}


# --------------------------------------------------------------------------
# encodings
# --------------------------------------------------------------------------

def b64(data: bytes) -> str:
    """Standard padded base64, as Sigstore bundles and roots use."""
    return base64.b64encode(data).decode()


def rfc3339(t: int) -> str:
    """Seconds since the epoch as "2024-03-19T17:26:26Z"."""
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc(t: int) -> datetime.datetime:
    """Seconds since the epoch as a naive UTC datetime (what cryptography 38 takes)."""
    return datetime.datetime.utcfromtimestamp(t)


def canonical_json(obj) -> bytes:
    """Sorted keys, no spaces: the canonical JSON Rekor signs and logs."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def der_length(n: int) -> bytes:
    """A DER length."""
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def der_octet_string(data: bytes) -> bytes:
    """A DER OCTET STRING."""
    return b"\x04" + der_length(len(data)) + data


def der_utf8_string(text: str) -> bytes:
    """A DER UTF8String (Fulcio's extension 1.3.6.1.4.1.57264.1.8 holds one)."""
    data = text.encode()
    return b"\x0c" + der_length(len(data)) + data


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


# --------------------------------------------------------------------------
# keys and certificates
# --------------------------------------------------------------------------

def new_key(curve=ec.SECP256R1):
    """A fresh ECDSA key (P-256 unless told)."""
    return ec.generate_private_key(curve())


def spki_der(key) -> bytes:
    """DER SubjectPublicKeyInfo of a public key (or of a private key's public half)."""
    pub = key.public_key() if hasattr(key, "public_key") else key
    return pub.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key) -> bytes:
    """SHA-256 of the SPKI DER: a Rekor or CT log id."""
    return hashlib.sha256(spki_der(key)).digest()


def ecdsa_sign(key, data: bytes) -> bytes:
    """DER ECDSA signature with the curve's usual hash (P-384: SHA-384, else SHA-256)."""
    h = hashes.SHA384() if key.curve.key_size == 384 else hashes.SHA256()
    return key.sign(data, ec.ECDSA(h))


def cert_hash(key):
    """The hash a CA key signs certificates with (P-384: SHA-384, else SHA-256)."""
    return hashes.SHA384() if key.curve.key_size == 384 else hashes.SHA256()


def name(org: str, cn: str) -> x509.Name:
    """O=@org, CN=@cn."""
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def ca_cert(subject: x509.Name, key, issuer_cert, issuer_key, start: int, end: int,
            path_len, eku=None) -> x509.Certificate:
    """A CA certificate (self-signed when @issuer_cert is None), strict-X.509 clean."""
    b = (x509.CertificateBuilder().subject_name(subject)
         .issuer_name(issuer_cert.subject if issuer_cert else subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(utc(start)).not_valid_after(utc(end))
         .add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
         .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                      False), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                        critical=False))
    signer = issuer_key if issuer_cert else key
    b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                        critical=False)
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return b.sign(signer, cert_hash(signer))


def tsa_leaf_cert(key, issuer_cert, issuer_key, start: int, end: int) -> x509.Certificate:
    """A timestamping certificate: critical extended key usage timeStamping only."""
    return (x509.CertificateBuilder().subject_name(name("forge.test", "forge-tsa-signer"))
            .issuer_name(issuer_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(utc(start)).not_valid_after(utc(end))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                         False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer_key.public_key()), critical=False)
            .sign(issuer_key, cert_hash(issuer_key)))


def fulcio_chain(start: int, cn_prefix: str = "forge"):
    """A Fulcio-like root and intermediate (P-384): (root key, root, inter key, inter)."""
    root_key, inter_key = new_key(ec.SECP384R1), new_key(ec.SECP384R1)
    root = ca_cert(name("forge.test", f"{cn_prefix}-fulcio"), root_key, None, None,
                   start, start + 10 * 365 * DAY, 1)
    inter = ca_cert(name("forge.test", f"{cn_prefix}-fulcio-intermediate"), inter_key, root,
                    root_key, start, start + 10 * 365 * DAY, 0,
                    eku=[ExtendedKeyUsageOID.CODE_SIGNING])
    return root_key, root, inter_key, inter


def tsa_chain(start: int, cn: str = "forge-tsa"):
    """A timestamp authority: (root key, root, signing key, signing certificate)."""
    root_key, leaf_key = new_key(ec.SECP384R1), new_key()
    root = ca_cert(name("forge.test", cn), root_key, None, None, start,
                   start + 10 * 365 * DAY, 0)
    leaf = tsa_leaf_cert(leaf_key, root, root_key, start, start + 10 * 365 * DAY)
    return root_key, root, leaf_key, leaf


def pem_cert(cert) -> bytes:
    """A certificate as PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def pem_key(key) -> bytes:
    """A private key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_key(path: pathlib.Path):
    """A PEM private key from a file."""
    return serialization.load_pem_private_key(path.read_bytes(), None)


def load_cert(path: pathlib.Path):
    """A PEM certificate from a file."""
    return x509.load_pem_x509_certificate(path.read_bytes())


# --------------------------------------------------------------------------
# the PKI and its trusted root
# --------------------------------------------------------------------------

@dataclasses.dataclass
class Pki:
    """The forged Sigstore instance: what signing needs, loaded from DIR/private."""
    fulcio_root: x509.Certificate
    fulcio_inter: x509.Certificate
    fulcio_key: object  # the intermediate's key: it issues the leaves
    ct_key: object
    rekor_key: object
    tsa_cert: x509.Certificate
    tsa_root: x509.Certificate
    tsa_key: object
    tree_id: int

    FILES = {"fulcio_root": "fulcio-root.pem", "fulcio_inter": "fulcio-intermediate.pem",
             "fulcio_key": "fulcio-intermediate.key", "ct_key": "ctlog.key",
             "rekor_key": "rekor.key", "tsa_cert": "tsa.pem", "tsa_root": "tsa-root.pem",
             "tsa_key": "tsa.key"}

    @classmethod
    def load(cls, d: pathlib.Path) -> "Pki":
        """Reads what `save` wrote."""
        p = d / "private"
        vals = {f: (load_key if n.endswith(".key") else load_cert)(p / n)
                for f, n in cls.FILES.items()}
        meta = json.loads((p / "forge.json").read_text())
        return cls(tree_id=meta["tree_id"], **vals)

    def save(self, d: pathlib.Path):
        """Writes DIR/private/: certificates 0644, keys 0600, and forge.json."""
        p = d / "private"
        p.mkdir(parents=True, exist_ok=True)
        for f, n in self.FILES.items():
            v = getattr(self, f)
            data = pem_key(v) if n.endswith(".key") else pem_cert(v)
            fd = os.open(p / n, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                         0o600 if n.endswith(".key") else 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        (p / "forge.json").write_text(json.dumps({"tree_id": self.tree_id}) + "\n")


def root_log(url: str, key, start: int) -> dict:
    """A tlogs[] or ctlogs[] entry of the trusted root."""
    return {"baseUrl": url, "hashAlgorithm": "SHA2_256",
            "publicKey": {"rawBytes": b64(spki_der(key)), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                          "validFor": {"start": rfc3339(start)}},
            "logId": {"keyId": b64(key_id(key))}}


def root_ca(org: str, cn: str, url: str, chain, start: int) -> dict:
    """A certificateAuthorities[] or timestampAuthorities[] entry (leaf-most first)."""
    return {"subject": {"organization": org, "commonName": cn}, "uri": url,
            "certChain": {"certificates": [
                {"rawBytes": b64(c.public_bytes(serialization.Encoding.DER))} for c in chain]},
            "validFor": {"start": rfc3339(start)}}


def trusted_root(pki: Pki, start: int) -> dict:
    """The trusted root of the forged instance; every window opens at @start."""
    return {
        "mediaType": TRUSTED_ROOT,
        "tlogs": [root_log(REKOR_URL, pki.rekor_key, start)],
        "certificateAuthorities": [root_ca("forge.test", "forge-fulcio", FULCIO_URL,
                                           [pki.fulcio_inter, pki.fulcio_root], start)],
        "ctlogs": [root_log(CTLOG_URL, pki.ct_key, start)],
        "timestampAuthorities": [root_ca("forge.test", "forge-tsa", TSA_URL,
                                         [pki.tsa_cert, pki.tsa_root], start)],
    }


def cmd_pki(args) -> int:
    """`forge.py pki DIR`."""
    d = pathlib.Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    start = int(time.time()) - DAY
    _, froot, fkey, finter = fulcio_chain(start)
    _, troot, tkey, tcert = tsa_chain(start)
    pki = Pki(fulcio_root=froot, fulcio_inter=finter, fulcio_key=fkey, ct_key=new_key(),
              rekor_key=new_key(), tsa_cert=tcert, tsa_root=troot, tsa_key=tkey,
              tree_id=random.SystemRandom().randrange(10 ** 18, 10 ** 19))
    pki.save(d)
    (d / "trusted_root.json").write_text(json.dumps(trusted_root(pki, start), indent=2) + "\n")
    print(f"wrote {d / 'trusted_root.json'} and {d / 'private'}/")
    return 0


# --------------------------------------------------------------------------
# the plan of one signature: what each --fault changes
# --------------------------------------------------------------------------

@dataclasses.dataclass
class Plan:
    """Every choice of one keyless signature; a fault changes exactly one."""
    now: int
    identity: str
    issuer: str
    san: str = ""
    issuer_v2: str = ""
    issuer_v1: str = ""
    key_usage: str = "digitalSignature"
    eku: object = ExtendedKeyUsageOID.CODE_SIGNING
    not_before: int = 0
    not_after: int = 0
    integrated: int = 0
    ca: str = "trusted"  # or "rogue"
    sct: str = "good"  # "none", "bad-signature", "unknown-log"
    set_sig: str = "good"  # "bad"
    log: str = "trusted"  # "rogue"
    proof: str = "good"  # "bad-hash"
    checkpoint: str = "good"  # "bad-signature", "wrong-root", "wrong-size"
    body: str = "good"  # "other-signature", "other-certificate", "other-payload"
    dsse: str = "good"  # "bad-signature"
    tamper: bool = False
    tsa: str = ""  # "", "good", "bad-imprint", "untrusted"

    @classmethod
    def make(cls, identity: str, issuer: str, use_tsa: bool, fault: str) -> "Plan":
        """The good plan for now (signed SIGN_AGE seconds ago), then @fault applied."""
        now = int(time.time())
        sign_time = now - SIGN_AGE
        p = cls(now=now, identity=identity, issuer=issuer, san=identity, issuer_v2=issuer,
                issuer_v1=issuer, not_before=sign_time - 60,
                not_after=sign_time - 60 + CERT_LIFETIME, integrated=sign_time + LOG_DELAY,
                tsa="good" if use_tsa or fault in TSA_FAULTS else "")
        if fault:
            FAULT_PLANS[fault](p)
        return p


def other_identity(identity: str) -> str:
    """An identity of the same kind (URI or email) that is not @identity."""
    if "://" in identity:
        return "https://forge.invalid/someone-else/.github/workflows/sign.yml@refs/heads/main"
    return "someone-else@forge.invalid"


def _expired(p: Plan):
    """cert-expired-at-log-time."""
    p.not_after = p.integrated - 30
    p.not_before = p.not_after - CERT_LIFETIME


def _not_yet_valid(p: Plan):
    """cert-not-yet-valid-at-log-time."""
    p.not_before = p.integrated + 30
    p.not_after = p.not_before + CERT_LIFETIME


def _expired_at_tsa(p: Plan):
    """cert-expired-at-tsa-time: valid when logged, expired when timestamped (now)."""
    p.not_after = p.now - 5  # the timestamp is made now
    p.not_before = p.not_after - CERT_LIFETIME
    p.integrated = p.not_before + 60


def _future(p: Plan):
    """integrated-time-in-future: the leaf is valid then, so only the time check fails."""
    p.integrated = p.now + 3600
    p.not_after = p.integrated + 300


FAULT_PLANS = {
    "wrong-identity": lambda p: setattr(p, "san", other_identity(p.identity)),
    "wrong-issuer": lambda p: (setattr(p, "issuer_v2", OTHER_ISSUER),
                               setattr(p, "issuer_v1", OTHER_ISSUER)),
    "issuer-extensions-disagree": lambda p: setattr(p, "issuer_v1", OTHER_ISSUER),
    "no-codesigning-eku": lambda p: setattr(p, "eku", ExtendedKeyUsageOID.CLIENT_AUTH),
    "no-digitalsignature-ku": lambda p: setattr(p, "key_usage", "contentCommitment"),
    "cert-expired-at-log-time": _expired,
    "cert-not-yet-valid-at-log-time": _not_yet_valid,
    "cert-expired-at-tsa-time": _expired_at_tsa,
    "untrusted-ca": lambda p: setattr(p, "ca", "rogue"),
    "no-sct": lambda p: setattr(p, "sct", "none"),
    "sct-bad-signature": lambda p: setattr(p, "sct", "bad-signature"),
    "sct-unknown-log": lambda p: setattr(p, "sct", "unknown-log"),
    "set-bad-signature": lambda p: setattr(p, "set_sig", "bad"),
    "integrated-time-in-future": _future,
    "log-not-in-root": lambda p: setattr(p, "log", "rogue"),
    "inclusion-proof-bad-hash": lambda p: setattr(p, "proof", "bad-hash"),
    "checkpoint-bad-signature": lambda p: setattr(p, "checkpoint", "bad-signature"),
    "checkpoint-wrong-root": lambda p: setattr(p, "checkpoint", "wrong-root"),
    "checkpoint-wrong-size": lambda p: setattr(p, "checkpoint", "wrong-size"),
    "body-other-signature": lambda p: setattr(p, "body", "other-signature"),
    "body-other-certificate": lambda p: setattr(p, "body", "other-certificate"),
    "body-other-payload": lambda p: setattr(p, "body", "other-payload"),
    "dsse-bad-signature": lambda p: setattr(p, "dsse", "bad-signature"),
    "statement-tampered": lambda p: setattr(p, "tamper", True),
    "tsa-bad-imprint": lambda p: setattr(p, "tsa", "bad-imprint"),
    "tsa-untrusted": lambda p: setattr(p, "tsa", "untrusted"),
}
assert set(FAULT_PLANS) == set(FAULTS)


# --------------------------------------------------------------------------
# the leaf certificate and its SCT (RFC 6962)
# --------------------------------------------------------------------------

def san_of(identity: str) -> x509.GeneralName:
    """A URI SAN for something that looks like a URI, else an email SAN."""
    if "://" in identity:
        return x509.UniformResourceIdentifier(identity)
    return x509.RFC822Name(identity)


def key_usage(which: str) -> x509.KeyUsage:
    """digitalSignature, or (a fault) contentCommitment alone."""
    ds = which == "digitalSignature"
    return x509.KeyUsage(ds, not ds, False, False, False, False, False, False, False)


def leaf_builder(p: Plan, leaf_pub, issuer: x509.Certificate, issuer_key) -> x509.CertificateBuilder:
    """The leaf without its SCT list: what the precertificate's TBS is made of."""
    return (x509.CertificateBuilder().subject_name(x509.Name([]))
            .issuer_name(issuer.subject).public_key(leaf_pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(utc(p.not_before)).not_valid_after(utc(p.not_after))
            .add_extension(key_usage(p.key_usage), critical=True)
            .add_extension(x509.ExtendedKeyUsage([p.eku]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_pub), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer_key.public_key()), critical=False)
            .add_extension(x509.SubjectAlternativeName([san_of(p.san)]), critical=True)
            .add_extension(x509.UnrecognizedExtension(OID_ISSUER_V1, p.issuer_v1.encode()),
                           critical=False)
            .add_extension(x509.UnrecognizedExtension(OID_ISSUER_V2, der_utf8_string(p.issuer_v2)),
                           critical=False))


def sct_signed_data(timestamp_ms: int, issuer_key_hash: bytes, tbs: bytes) -> bytes:
    """RFC 6962 3.2 digitally-signed struct of a precert SCT v1, without extensions."""
    return (struct.pack(">BBQH", 0, 0, timestamp_ms, 1) + issuer_key_hash
            + len(tbs).to_bytes(3, "big") + tbs + struct.pack(">H", 0))


def sct_list(log_key, timestamp_ms: int, signed: bytes) -> bytes:
    """The TLS SignedCertificateTimestampList holding one SCT by @log_key over @signed."""
    sig = ecdsa_sign(log_key, signed)
    sct = (struct.pack(">B", 0) + key_id(log_key) + struct.pack(">QH", timestamp_ms, 0)
           + struct.pack(">BBH", 4, 3, len(sig)) + sig)  # sha256, ecdsa
    one = struct.pack(">H", len(sct)) + sct
    return struct.pack(">H", len(one)) + one


def issue_leaf(p: Plan, pki: Pki, leaf_key, issuer, issuer_key) -> x509.Certificate:
    """The Fulcio leaf: the precertificate's TBS, its SCT, then the final certificate."""
    b = leaf_builder(p, leaf_key.public_key(), issuer, issuer_key)
    if p.sct == "none":
        return b.sign(issuer_key, cert_hash(issuer_key))
    tbs = b.sign(issuer_key, cert_hash(issuer_key)).tbs_certificate_bytes
    ts_ms = (p.not_before + 1) * 1000
    ikh = hashlib.sha256(spki_der(issuer_key)).digest()
    signed = sct_signed_data(ts_ms, ikh, tbs)
    log_key = pki.ct_key
    if p.sct == "bad-signature":
        signed = sct_signed_data(ts_ms + 1, ikh, tbs)
    elif p.sct == "unknown-log":
        log_key = new_key()
    ext = x509.UnrecognizedExtension(OID_SCT_LIST, der_octet_string(sct_list(log_key, ts_ms,
                                                                              signed)))
    return b.add_extension(ext, critical=False).sign(issuer_key, cert_hash(issuer_key))


def leaf_issuer(p: Plan, pki: Pki):
    """(issuer certificate, issuer key): the trusted intermediate, or a look-alike."""
    if p.ca == "rogue":
        _, _, key, inter = fulcio_chain(p.now - DAY)
        return inter, key
    return pki.fulcio_inter, pki.fulcio_key


# --------------------------------------------------------------------------
# the transparency log (Rekor v1): body, Merkle tree, checkpoint, SET
# --------------------------------------------------------------------------

def leaf_hash(entry: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || entry)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two smaller than @n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def merkle_root(leaves: list) -> bytes:
    """RFC 6962 2.1 MTH over leaf hashes."""
    if len(leaves) == 1:
        return leaves[0]
    k = split_point(len(leaves))
    return node_hash(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


def audit_path(m: int, leaves: list) -> list:
    """RFC 6962 2.1.1 PATH(m, D[n]), leaf to root."""
    if len(leaves) == 1:
        return []
    k = split_point(len(leaves))
    if m < k:
        return audit_path(m, leaves[:k]) + [merkle_root(leaves[k:])]
    return audit_path(m - k, leaves[k:]) + [merkle_root(leaves[:k])]


def dsse_body(envelope: dict, payload: bytes, sig: bytes, cert: x509.Certificate) -> bytes:
    """The canonicalized body of a Rekor dsse 0.0.1 entry."""
    return canonical_json({
        "apiVersion": "0.0.1", "kind": "dsse",
        "spec": {
            "envelopeHash": {"algorithm": "sha256",
                             "value": hashlib.sha256(canonical_json(envelope)).hexdigest()},
            "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
            "signatures": [{"signature": b64(sig), "verifier": b64(pem_cert(cert))}],
        }})


def signed_note(text: str, key, name_: str) -> str:
    """A C2SP signed note, signed by an ECDSA key (hint: the first 4 bytes of its log id)."""
    sig = ecdsa_sign(key, text.encode())
    return f"{text}\n\u2014 {name_} {b64(key_id(key)[:4] + sig)}\n"


def checkpoint(p: Plan, log_key, tree_id: int, size: int, root: bytes) -> str:
    """The Rekor v1 checkpoint of the tree, signed by the log (or broken as planned)."""
    origin = f"{REKOR_HOST} - {tree_id}"
    shown = hashlib.sha256(b"another tree").digest() if p.checkpoint == "wrong-root" else root
    shown_size = size + 1 if p.checkpoint == "wrong-size" else size
    text = f"{origin}\n{shown_size}\n{b64(shown)}\n"
    note = signed_note(text, log_key, REKOR_HOST)
    if p.checkpoint == "bad-signature":
        other = signed_note(f"{origin}\n{size + 7}\n{b64(shown)}\n", log_key, REKOR_HOST)
        note = text + "\n" + other.splitlines(keepends=True)[-1]
    return note


def tlog_entry(p: Plan, pki: Pki, body: bytes) -> dict:
    """tlogEntries[0]: the entry in a small tree, its SET, proof and checkpoint."""
    rng = random.SystemRandom()
    log_key = new_key() if p.log == "rogue" else pki.rekor_key
    size = rng.randrange(5, 12)
    index = rng.randrange(0, size)
    leaves = [leaf_hash(os.urandom(64)) for _ in range(size)]
    leaves[index] = leaf_hash(body)
    root = merkle_root(leaves)
    path = audit_path(index, leaves)
    if p.proof == "bad-hash":
        path[0] = bytes([path[0][0] ^ 1]) + path[0][1:]
    log_index = 100_000_000 + rng.randrange(0, 1_000_000)
    log_id = key_id(log_key)
    promise = {"body": b64(body), "integratedTime": p.integrated, "logID": log_id.hex(),
               "logIndex": log_index}
    if p.set_sig == "bad":
        promise["integratedTime"] += 1
    return {
        "logIndex": str(log_index),
        "logId": {"keyId": b64(log_id)},
        "kindVersion": {"kind": "dsse", "version": "0.0.1"},
        "integratedTime": str(p.integrated),
        "inclusionPromise": {"signedEntryTimestamp": b64(ecdsa_sign(log_key,
                                                                    canonical_json(promise)))},
        "inclusionProof": {
            "logIndex": str(index), "rootHash": b64(root), "treeSize": str(size),
            "hashes": [b64(h) for h in path],
            "checkpoint": {"envelope": checkpoint(p, log_key, pki.tree_id, size, root)},
        },
        "canonicalizedBody": b64(body),
    }


# --------------------------------------------------------------------------
# RFC 3161 timestamps (openssl ts -reply)
# --------------------------------------------------------------------------

TSA_CONFIG = """\
[ tsa ]
default_tsa = forge_tsa

[ forge_tsa ]
serial = {dir}/serial
crypto_device = builtin
signer_cert = {dir}/signer.pem
signer_key = {dir}/signer.key
certs = {dir}/chain.pem
signer_digest = sha256
default_policy = 1.3.6.1.4.1.57264.2
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def rfc3161_timestamp(data: bytes, signer_cert, signer_key, chain) -> bytes:
    """A TimeStampResp over SHA-256(@data), made by `openssl ts -reply` at the current time."""
    with tempfile.TemporaryDirectory(prefix="forge-tsa-") as tmp:
        t = pathlib.Path(tmp)
        (t / "data").write_bytes(data)
        (t / "serial").write_text("01\n")
        (t / "signer.pem").write_bytes(pem_cert(signer_cert))
        (t / "signer.key").write_bytes(pem_key(signer_key))
        (t / "chain.pem").write_bytes(b"".join(pem_cert(c) for c in chain))
        (t / "tsa.cnf").write_text(TSA_CONFIG.format(dir=tmp))
        run = lambda *a: subprocess.run(["openssl", "ts", *a], check=True, capture_output=True)
        run("-query", "-data", str(t / "data"), "-sha256", "-cert", "-no_nonce",
            "-out", str(t / "req.tsq"))
        run("-reply", "-config", str(t / "tsa.cnf"), "-queryfile", str(t / "req.tsq"),
            "-out", str(t / "resp.tsr"))
        return (t / "resp.tsr").read_bytes()


def timestamp(p: Plan, pki: Pki, sig: bytes) -> bytes:
    """The planned timestamp over the signature: good, over other bytes, or by a rogue TSA."""
    if p.tsa == "untrusted":
        _, root, key, cert = tsa_chain(p.now - DAY)
        return rfc3161_timestamp(sig, cert, key, [root])
    data = sig + b"\x00" if p.tsa == "bad-imprint" else sig
    return rfc3161_timestamp(data, pki.tsa_cert, pki.tsa_key, [pki.tsa_root])


# --------------------------------------------------------------------------
# signing
# --------------------------------------------------------------------------

def tampered(payload: bytes) -> bytes:
    """The statement with its first resource's digest changed (subject kept)."""
    st = json.loads(payload)
    res = st["predicate"]["resources"][0]
    res["digest"] = hashlib.sha256(res["digest"].encode()).hexdigest()
    return json.dumps(st, separators=(",", ":")).encode()


def read_statement(sig_path: pathlib.Path):
    """(payloadType, payload bytes) of an existing OMS bundle."""
    bundle = json.loads(sig_path.read_text())
    env = bundle["dsseEnvelope"]
    if env.get("payloadType") != INTOTO:
        raise SystemExit(f"forge.py: {sig_path}: payloadType is not {INTOTO}")
    return env["payloadType"], base64.b64decode(env["payload"], validate=True)


def keyless_bundle(p: Plan, pki: Pki, payload_type: str, payload: bytes) -> dict:
    """The keyless OMS bundle over @payload, built as @p plans."""
    leaf_key = new_key()
    issuer, issuer_key = leaf_issuer(p, pki)
    cert = issue_leaf(p, pki, leaf_key, issuer, issuer_key)
    signed_pae = pae(payload_type, payload + (b" " if p.dsse == "bad-signature" else b""))
    sig = ecdsa_sign(leaf_key, signed_pae)
    envelope = {"payload": b64(payload), "payloadType": payload_type,
                "signatures": [{"sig": b64(sig)}]}
    logged_sig, logged_cert, logged_payload = sig, cert, payload
    if p.body == "other-signature":
        logged_sig = ecdsa_sign(leaf_key, pae(payload_type, payload + b"\n"))
    elif p.body == "other-certificate":
        logged_cert = issue_leaf(p, pki, new_key(), issuer, issuer_key)
    elif p.body == "other-payload":
        logged_payload = payload + b"\n"
    body = dsse_body(envelope, logged_payload, logged_sig, logged_cert)
    material = {"certificate": {"rawBytes": b64(cert.public_bytes(serialization.Encoding.DER))},
                "tlogEntries": [tlog_entry(p, pki, body)]}
    if p.tsa:
        material["timestampVerificationData"] = {
            "rfc3161Timestamps": [{"signedTimestamp": b64(timestamp(p, pki, sig))}]}
    if p.tamper:
        envelope["payload"] = b64(tampered(payload))
    return {"mediaType": BUNDLE_V03, "verificationMaterial": material, "dsseEnvelope": envelope}


def write_atomic(path: pathlib.Path, data: bytes):
    """Writes @path through a temporary file and a rename."""
    tmp = path.with_name(path.name + ".forge-tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def cmd_sign(args) -> int:
    """`forge.py sign`."""
    model = pathlib.Path(args.model)
    sig_path = pathlib.Path(args.signature) if args.signature else model / "model.sig"
    pki = Pki.load(pathlib.Path(args.pki))
    payload_type, payload = read_statement(sig_path)
    plan = Plan.make(args.identity, args.issuer, args.tsa, args.fault or "")
    bundle = keyless_bundle(plan, pki, payload_type, payload)
    write_atomic(sig_path, (json.dumps(bundle, indent=2) + "\n").encode())
    print(f"signed {sig_path} keylessly as {args.identity} ({args.issuer})"
          + (f", fault {args.fault}" if args.fault else ""))
    return 0


def cmd_faults(_args) -> int:
    """`forge.py faults`."""
    for f in FAULTS:
        print(f)
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line; --help lists every fault in one line."""
    faults = "\n".join(f"  {n:32} {d}" for n, d in FAULTS.items())
    ap = argparse.ArgumentParser(
        prog="forge.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A test Sigstore PKI (Fulcio, CT log, Rekor, TSA) and keyless OMS "
                    "signatures, made offline.",
        epilog="faults (sign --fault NAME; each breaks exactly one check):\n" + faults)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pki", help="make the PKI and DIR/trusted_root.json")
    p.add_argument("dir")
    p.set_defaults(func=cmd_pki)
    s = sub.add_parser("sign", help="re-sign a sealed model keylessly",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="faults:\n" + faults)
    s.add_argument("--pki", required=True, help="the folder `forge.py pki` wrote")
    s.add_argument("--model", required=True, help="the model folder (its model.sig is replaced)")
    s.add_argument("--signature", help="the signature file (default MODEL/model.sig)")
    s.add_argument("--identity", required=True, help="the certificate's SAN (URI or email)")
    s.add_argument("--issuer", required=True, help="the OIDC issuer URL")
    s.add_argument("--tsa", action="store_true", help="add an RFC 3161 timestamp")
    s.add_argument("--fault", choices=list(FAULTS), metavar="NAME", help="break one check")
    s.set_defaults(func=cmd_sign)
    f = sub.add_parser("faults", help="list the fault names")
    f.set_defaults(func=cmd_faults)
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
