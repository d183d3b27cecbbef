"""Many models from one registry, and tags that move (docs/remote.md, "Store
files", "Tags that move").

A store file maps mount paths to oci:// references; a model that cannot be
had is refused while the others are served; bad store files are refused
with one line naming the file. A tag moved to a new signed manifest is
picked up on SIGHUP and by `--watch` (polling), while an open handle keeps
reading the version it opened; a move to an untrusted signature keeps the
old version; versions replaced are freed (descriptors stay bounded over
many moves). The registry is Debian's docker-registry (oci_registry.py);
tags are moved with the distribution API, as `skopeo copy` or CI would.
"""
import json
import os
import pathlib
import signal
import subprocess
import time

import pytest

from remote.oci_registry import modelfs_bin, run
from remote.test_lazy_mount import (MANIFEST, OciMount, auth, check_files,  # noqa: F401
                                    keys, make_model, manifest_digest, push)
from test_mount import drop_caches  # noqa: E402 (path set by test_lazy_mount)

MiB = 1 << 20


class StoreFileMount(OciMount):
    """`modelfs mount -f ... STOREFILE MNT`; always unmounted on exit."""

    def __init__(self, registry, store_file, mnt, trust, *extra):
        super().__init__(registry, "unused:v1", mnt, trust, *extra)
        self.args[-2] = str(store_file)


def write_store(path: pathlib.Path, models: dict) -> pathlib.Path:
    path.write_text(json.dumps({"models": models}))
    return path


def retag(registry, repo, src, dst):
    """Points tag @dst of @repo at the manifest of @src (a PUT, as any client moves a tag)."""
    st, _, body = registry.request(f"/v2/{repo}/manifests/{src}", accept=MANIFEST)
    assert st == 200
    registry.put_manifest(repo, dst, body, MANIFEST)


def reloads(m) -> int:
    return m.status()["reload"]["count"]


def wait_for(cond, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def sighup_and_wait(m):
    n = reloads(m)
    m.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: reloads(m) > n, "the reload after SIGHUP")


def push_untrusted(registry, keys, tmp_path, name, ref):
    """A model signed by the key the mounts do not trust, pushed as @ref."""
    model = make_model(tmp_path, keys["other"], name)
    run("push", "--trust", f"{keys['other']}.pub", "--ca-cert", registry.ca, model["dir"],
        f"{registry.host}/{ref}", check=0)
    return model


def versions(tmp_path, keys, registry, repo, name, key="trusted"):
    """Two sealed versions of one model pushed as tags v1 and v2 of @repo."""
    out = {}
    for tag in ("v1", "v2"):
        model = make_model(tmp_path / tag, keys[key], name)
        push(registry, keys, model, f"{repo}:{tag}")
        out[tag] = model
    return out


def test_store_file_serves_many_models(registry, keys, auth, tmp_path):
    a = make_model(tmp_path / "a", keys["trusted"], "org/a")
    b = make_model(tmp_path / "b", keys["trusted"], "b")
    push(registry, keys, a, "org/a:v1")
    push(registry, keys, b, "team/b:v1")
    store = write_store(tmp_path / "store.json", {
        "org/a": f"oci://{registry.host}/org/a:v1",
        "models/b": f"oci://{registry.host}/team/b:v1",
    })
    with StoreFileMount(registry, store, tmp_path / "mnt", keys["trusted"]) as m:
        check_files(m.mnt / "org" / "a", a["files"])
        check_files(m.mnt / "models" / "b", b["files"])
        assert sorted(x["path"] for x in m.status()["models"]) == ["models/b", "org/a"]
        assert m.log().count("oci-resolved") == 2


def test_store_file_model_that_fails_is_refused_others_served(registry, keys, auth, tmp_path):
    good = make_model(tmp_path / "g", keys["trusted"], "org/good")
    push(registry, keys, good, "org/good:v1")
    push_untrusted(registry, keys, tmp_path / "u", "org/untrusted2", "org/untrusted2:v1")
    store = write_store(tmp_path / "store.json", {
        "org/good": f"oci://{registry.host}/org/good:v1",
        "org/missing": f"oci://{registry.host}/org/missing:v1",
        "org/untrusted2": f"oci://{registry.host}/org/untrusted2:v1",
    })
    with StoreFileMount(registry, store, tmp_path / "mnt", keys["trusted"]) as m:
        check_files(m.mnt / "org" / "good", good["files"])
        assert not (m.mnt / "org" / "missing").exists()
        assert not (m.mnt / "org" / "untrusted2").exists()
        st = m.status()
        assert [x["path"] for x in st["models"]] == ["org/good"]
        refused = {r["path"]: r["reason"] for r in st["refused"]}
        assert "manifest unknown" in refused["org/missing"], refused
        assert "org/untrusted2" in refused, refused
        assert "oci-failure model=org/missing" in m.log()


@pytest.mark.parametrize("body,why", [
    ("{not json", "not JSON"),
    ('{"models": {}}', "0 models"),
    ('{"models": {"a": "oci://reg.example/a:v1"}, "extra": 1}', "unknown key"),
    ('{"models": {"../up": "oci://reg.example/a:v1"}}', "refused path"),
    ('{"models": {"/abs": "oci://reg.example/a:v1"}}', "refused path"),
    ('{"models": {"org": "oci://reg.example/a:v1", "org/x": "oci://reg.example/b:v1"}}', "inside model"),
    ('{"models": {"a": "https://h/a:v1"}}', "not an oci:// reference"),
    ('{"models": {"a": "oci://reg.example/a"}}', "give a :TAG"),
    ('{"models": {"a": 7}}', "not a string"),
])
def test_bad_store_file_is_refused(registry, keys, tmp_path, body, why):
    store = tmp_path / "store.json"
    store.write_text(body)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p = subprocess.run([modelfs_bin(), "mount", "-f", "--trust", f"{keys['trusted']}.pub",
                        "--cache-dir", str(tmp_path / "cache"), str(store), str(mnt)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, (p.returncode, p.stderr)  # docs/cli.md: I/O or usage error
    assert not os.path.ismount(mnt)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and str(store) in lines[0] and why in lines[0], p.stderr


def test_tag_moved_is_picked_up_on_sighup_open_handle_keeps_old(registry, keys, auth,
                                                                  tmp_path):
    v = versions(tmp_path, keys, registry, "org/mv", "org/mv")
    retag(registry, "org/mv", "v1", "cur")
    old = v["v1"]["files"]["model.safetensors"]
    new = v["v2"]["files"]["model.safetensors"]
    with OciMount(registry, "org/mv:cur", tmp_path / "mnt", keys["trusted"]) as m:
        f = m.mnt / "org" / "mv" / "model.safetensors"
        fd = os.open(f, os.O_RDONLY)
        try:
            assert os.pread(fd, 4096, 0) == old[:4096]
            retag(registry, "org/mv", "v2", "cur")
            sighup_and_wait(m)
            assert f.read_bytes() == new
            check_files(m.mnt / "org" / "mv", v["v2"]["files"])
            # the handle opened on v1 reads v1, fetched again after the page cache is gone
            drop_caches()
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            assert os.pread(fd, 4096, 2 * MiB) == old[2 * MiB:2 * MiB + 4096]
        finally:
            os.close(fd)
        assert "oci-moved model=org/mv" in m.log()
        assert manifest_digest(registry, "/v2/org/mv/manifests/v2") in m.log()
        assert m.status()["reload"]["changed"] == 1


def test_watch_polls_the_registry(registry, keys, auth, tmp_path):
    v = versions(tmp_path, keys, registry, "org/watched", "org/watched")
    retag(registry, "org/watched", "v1", "cur")
    with OciMount(registry, "org/watched:cur", tmp_path / "mnt", keys["trusted"], "--watch",
                  "--watch-interval", "1") as m:
        f = m.mnt / "org" / "watched" / "config.json"
        assert f.read_bytes() == v["v1"]["files"]["config.json"]
        retag(registry, "org/watched", "v2", "cur")
        wait_for(lambda: m.status()["reload"]["count"] >= 1, "a reload triggered by polling")
        check_files(m.mnt / "org" / "watched", v["v2"]["files"])
        assert m.status()["reload"]["last_trigger"] == "watch"
        assert m.status()["reload"]["watch"] is True


def test_move_to_untrusted_signature_keeps_old_version(registry, keys, auth, tmp_path):
    good = make_model(tmp_path / "g", keys["trusted"], "org/keep")
    push(registry, keys, good, "org/keep:cur")
    push_untrusted(registry, keys, tmp_path / "e", "org/keep", "org/keep:evil")
    with OciMount(registry, "org/keep:cur", tmp_path / "mnt", keys["trusted"]) as m:
        check_files(m.mnt / "org" / "keep", good["files"])
        retag(registry, "org/keep", "evil", "cur")
        sighup_and_wait(m)
        drop_caches()
        check_files(m.mnt / "org" / "keep", good["files"])
        assert "oci-refresh-failure model=org/keep" in m.log()
        assert "oci-moved" not in m.log()


def test_pinned_digest_is_never_resolved_again(registry, keys, auth, tmp_path):
    v = versions(tmp_path, keys, registry, "org/pin", "org/pin")
    d1 = manifest_digest(registry, "/v2/org/pin/manifests/v1")
    with OciMount(registry, f"org/pin@{d1}", tmp_path / "mnt", keys["trusted"]) as m:
        sighup_and_wait(m)
        check_files(m.mnt / "org" / "pin", v["v1"]["files"])
        assert "oci-moved" not in m.log()


def fds(pid) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_versions_replaced_are_freed(registry, keys, auth, tmp_path, monkeypatch):
    """40 moves back and forth: descriptors flat, memory flat, the last version served."""
    # Under ASan, freed memory is quarantined rather than reused: measure reuse instead.
    asan = os.environ.get("ASAN_OPTIONS", "")
    monkeypatch.setenv("ASAN_OPTIONS", (asan + ":" if asan else "") + "quarantine_size_mb=0")
    v = versions(tmp_path, keys, registry, "org/flip", "org/flip")
    retag(registry, "org/flip", "v1", "cur")
    with OciMount(registry, "org/flip:cur", tmp_path / "mnt", keys["trusted"]) as m:
        root = m.mnt / "org" / "flip"
        samples = []
        for i in range(40):
            tag = "v2" if i % 2 == 0 else "v1"
            retag(registry, "org/flip", tag, "cur")
            sighup_and_wait(m)
            assert (root / "config.json").read_bytes() == v[tag]["files"]["config.json"]
            if i in (9, 39):
                sighup_and_wait(m)  # one more: the versions released since are swept
                samples.append((fds(m.proc.pid), rss_kib(m.proc.pid)))
        print("samples (fds, rss KiB):", samples)
        (f10, r10), (f40, r40) = samples
        assert f40 <= f10 + 4, samples
        assert r40 <= r10 * 1.25 + 2048, samples
        assert m.log().count("oci-moved") == 40


def test_model_that_failed_appears_once_pushed(registry, keys, auth, tmp_path):
    """A model of a store file that could not be had is tried again at each refresh."""
    good = make_model(tmp_path / "g", keys["trusted"], "org/here")
    push(registry, keys, good, "org/here:v1")
    later = make_model(tmp_path / "l", keys["trusted"], "org/later")
    store = write_store(tmp_path / "store.json", {
        "org/here": f"oci://{registry.host}/org/here:v1",
        "org/later": f"oci://{registry.host}/org/later:v1",
    })
    with StoreFileMount(registry, store, tmp_path / "mnt", keys["trusted"]) as m:
        assert not (m.mnt / "org" / "later").exists()
        assert "org/later" in {r["path"] for r in m.status()["refused"]}
        push(registry, keys, later, "org/later:v1")
        sighup_and_wait(m)
        check_files(m.mnt / "org" / "later", later["files"])
        check_files(m.mnt / "org" / "here", good["files"])
        assert "org/later" not in {r["path"] for r in m.status()["refused"]}
        assert "oci-moved model=org/later" in m.log()
