"""modelfs bom: the CycloneDX ML-BOM of a signed model.

Oracle: the CycloneDX project's own validator, @cyclonedx/cyclonedx-library
Validation.JsonStrictValidator with its ajv peer dependencies, installed by
tools/bootstrap into tests/.npm. JSON Schema cannot check references, so
every `ref` / `bom-ref` link is checked here in Python; hashes are checked
with hashlib.
"""
import hashlib
import json
import os
import pathlib
import shutil
import subprocess

import pytest

from conftest import ROOT, run_modelfs

NPM = ROOT / "tests" / ".npm" / "node_modules"
VALIDATOR = pathlib.Path(__file__).with_name("cdx_validate.js")
SERIAL = "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79"
STAMP = "2026-01-02T03:04:05Z"


def validate(spec, bom_path):
    if not (NPM / "@cyclonedx" / "cyclonedx-library").is_dir() or not shutil.which("node"):
        pytest.fail("CycloneDX validator missing: run tools/bootstrap --test (needs node and npm)")
    p = subprocess.run(["node", str(VALIDATOR), spec, str(bom_path)], capture_output=True,
                       text=True, env={**os.environ, "NODE_PATH": str(NPM)}, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "valid", p.stdout + p.stderr


def walk(node):
    """Yields every dict in a JSON tree."""
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def check_refs(bom):
    """Every bom-ref is unique and every ref / dependsOn names one."""
    defined = [d["bom-ref"] for d in walk(bom) if "bom-ref" in d]
    assert len(defined) == len(set(defined)), defined
    used = []
    for d in walk(bom):
        if isinstance(d.get("ref"), str):
            used.append(d["ref"])
        used += d.get("dependsOn", [])
    assert used, "no references at all"
    for r in used:
        assert r in defined, f"dangling ref {r}"


@pytest.fixture
def model(tmp_path):
    run_modelfs("keygen", tmp_path / "pub", check=0)
    m = tmp_path / "org-model"
    (m / "sub").mkdir(parents=True)
    (m / "config.json").write_text(json.dumps(
        {"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    (m / "model.safetensors").write_bytes(os.urandom(70000))
    (m / "sub" / "tokenizer.json").write_text("{}")
    run_modelfs("seal", "--key", tmp_path / "pub.key", "--name", "org/model", "--revision", "v2",
                "--source", "https://example.org/org/model repo", "--base-model", "org/base",
                "--license", "apache-2.0", "--dataset", "wikitext", "--dataset", "c4",
                "--dataset", "wikitext", "--property", "task=text-generation",
                "--property", "inputs=text", "--property", "outputs=text, logits",
                "--property", "supplier=Org Inc.", m, check=0)
    return tmp_path, m


def bom(m, *args, check=0):
    p = run_modelfs("bom", "--serial-number", SERIAL, "--timestamp", STAMP, *args, m, check=check)
    return json.loads(p.stdout) if check == 0 else p


@pytest.mark.parametrize("spec", ["1.6", "1.7"])
def test_bom_validates(model, spec):
    tmp, m = model
    b = bom(m, "--spec", spec, "--trust", tmp / "pub.pub")
    path = tmp / f"bom-{spec}.json"
    path.write_text(json.dumps(b))
    validate(spec, path)
    check_refs(b)
    assert b["specVersion"] == spec


def test_bom_content(model):
    tmp, m = model
    b = bom(m, "--trust", tmp / "pub.pub")
    model_c = b["metadata"]["component"]
    assert model_c["type"] == "machine-learning-model"
    assert model_c["name"] == "org/model" and model_c["version"] == "v2"
    assert model_c["supplier"]["name"] == "Org Inc."
    assert model_c["licenses"] == [{"license": {"id": "Apache-2.0"}}]
    assert model_c["pedigree"]["ancestors"][0]["name"] == "org/base"
    assert model_c["externalReferences"][0]["url"] == "https://example.org/org/model%20repo"
    mp = model_c["modelCard"]["modelParameters"]
    assert mp["task"] == "text-generation"
    assert mp["architectureFamily"] == "llama"  # from the signed config.json
    assert mp["modelArchitecture"] == "LlamaForCausalLM"
    assert mp["inputs"] == [{"format": "text"}]
    assert mp["outputs"] == [{"format": "text"}, {"format": "logits"}]
    assert mp["datasets"] == [{"ref": "dataset:wikitext"}, {"ref": "dataset:c4"}]
    props = {p["name"]: p["value"] for p in model_c["properties"]}
    payload = json.loads(pathlib.Path(m / "model.sig").read_text())["dsseEnvelope"]["payload"]
    import base64
    stmt = base64.b64decode(payload)
    assert props["modelfs:statement.sha256"] == hashlib.sha256(stmt).hexdigest()
    pub_der = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(tmp / "pub.pub"),
                              "-outform", "DER"], capture_output=True, check=True).stdout
    assert props["modelfs:signer.key_id"] == hashlib.sha256(pub_der).hexdigest()
    files = {c["name"]: c for c in b["components"] if c["type"] == "file"}
    assert sorted(files) == ["config.json", "model.safetensors", "sub/tokenizer.json"]
    for name, c in files.items():
        assert c["hashes"] == [{"alg": "SHA-256",
                                "content": hashlib.sha256((m / name).read_bytes()).hexdigest()}]
    data = [c["name"] for c in b["components"] if c["type"] == "data"]
    assert data == ["wikitext", "c4"]


def test_bom_deterministic(model):
    tmp, m = model
    a = run_modelfs("bom", "--serial-number", SERIAL, "--timestamp", STAMP, m, check=0).stdout
    b = run_modelfs("bom", "--serial-number", SERIAL, "--timestamp", STAMP, m, check=0).stdout
    assert a == b
    c = json.loads(run_modelfs("bom", m, check=0).stdout)
    d = json.loads(run_modelfs("bom", m, check=0).stdout)
    assert c["serialNumber"] != d["serialNumber"]  # random v4 UUIDs by default
    c.pop("serialNumber"), d.pop("serialNumber")
    c["metadata"].pop("timestamp"), d["metadata"].pop("timestamp")
    assert c == d


def test_bom_unsigned_config_not_used(model):
    """A config.json changed after signing must not put words in the BOM."""
    tmp, m = model
    (m / "config.json").write_text(json.dumps({"model_type": "evil"}))
    mp = bom(m)["metadata"]["component"]["modelCard"]["modelParameters"]
    assert "architectureFamily" not in mp and "modelArchitecture" not in mp


def test_bom_plain_model_validates(tmp_path):
    """Minimal provenance (no extension fields): still a valid BOM."""
    run_modelfs("keygen", tmp_path / "k", check=0)
    m = tmp_path / "plain"
    m.mkdir()
    (m / "w.bin").write_bytes(b"x" * 10)
    run_modelfs("seal", "--key", tmp_path / "k.key", m, check=0)
    b = bom(m)
    (tmp_path / "b.json").write_text(json.dumps(b))
    validate("1.6", tmp_path / "b.json")
    check_refs(b)


def test_bom_refusals(model, tmp_path):
    tmp, m = model
    run_modelfs("keygen", tmp_path / "other", check=0)
    p = bom(m, "--trust", tmp_path / "other.pub", check=1)
    assert "untrusted key" in p.stderr and p.stdout == ""
    p = run_modelfs("bom", "--spec", "1.5", m, check=2)
    assert "--spec" in p.stderr
    p = run_modelfs("bom", "--serial-number", "urn:uuid:NOPE", m, check=2)
    assert "--serial-number" in p.stderr
    p = run_modelfs("bom", "--timestamp", "yesterday", m, check=2)
    assert "--timestamp" in p.stderr
    (m / "model.sig").write_text("{")
    p = run_modelfs("bom", m, check=1)
    assert "model.sig" in p.stderr
    p = run_modelfs("bom", tmp_path / "absent", check=2)
