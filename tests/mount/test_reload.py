"""modelfs mount: live reload (SIGHUP and --watch) on real mounts (run as root).

Models are made and re-sealed with the real CLI while the store is mounted;
the reload is triggered with SIGHUP to the `mount -f` process, or by inotify
with --watch. Every mount is unmounted even on failure (test_mount.Mount).
Oracles: the bytes written, os.stat inode numbers, the status file and the
daemon's log lines.
"""
import errno
import os
import re
import pathlib
import random
import shutil
import signal
import subprocess
import threading
import time

import pytest

from test_mount import Mount, drop_caches, keys, rnd, seal, write  # noqa: F401 (fixture)

MiB = 1 << 20


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def wait_for(pred, timeout=5.0, what="condition"):
    """Polls pred() until true; fails after timeout seconds."""
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def reload_count(m):
    return m.status()["reload"]["count"]


def sighup(m, timeout=5.0):
    """SIGHUP to the daemon; returns the status' reload object once it is done."""
    before = reload_count(m)
    os.kill(m.proc.pid, signal.SIGHUP)
    wait_for(lambda: reload_count(m) > before, timeout=timeout, what="the reload")
    return m.status()["reload"]


def replace_file(path, data: bytes):
    """A new version of a file the way tools should write it: temp file + rename."""
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.rename(tmp, path)


def replace_sig(model, data: bytes):
    replace_file(pathlib.Path(model) / "model.sig", data)


def exposed(m):
    return {e["path"]: e for e in m.status()["models"]}


def refused(m):
    return {e["path"]: e for e in m.status()["refused"]}


def make_model(store, path, files, key):
    model = pathlib.Path(store) / path
    for name, data in files.items():
        write(model / name, data)
    seal(model, key)
    return model


def reload_lines(m):
    """Log lines written after the mount came up (the scan logs before it)."""
    lines = m.log().splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith("modelfs: mounted ")), 0)
    return lines[start:]


def model_events(m, path):
    """The per-model reload events of @path: "model-<event> model=<path> ..."."""
    return [ln for ln in reload_lines(m)
            if re.match(r"modelfs: model-[a-z-]+ model=" + re.escape(path) + r"( |$)", ln)]


@pytest.fixture
def store(tmp_path, keys):
    """A store with two models, org/a and org/b."""
    s = tmp_path / "store"
    make_model(s, "org/a", {"a.bin": rnd(300000), "sub/t.txt": b"text a\n"}, keys["trusted"])
    make_model(s, "org/b", {"b.bin": rnd(5000)}, keys["trusted"])
    return s


def mount(tmp_path, keys, store, *extra):
    return Mount(store, tmp_path / "mnt", f"{keys['trusted']}.pub", *extra)


# --------------------------------------------------------------------------
# SIGHUP
# --------------------------------------------------------------------------

def test_add_models(tmp_path, keys, store):
    with mount(tmp_path, keys, store) as m:
        # Negative entries the kernel caches must not hide the new models.
        assert not (m.mnt / "org" / "c").exists()
        assert not (m.mnt / "neworg").exists()
        c = {"c.bin": rnd(70000), "d/e.txt": b"eee\n"}
        n = {"n.bin": rnd(4097)}
        make_model(store, "org/c", c, keys["trusted"])
        make_model(store, "neworg/deep/n", n, keys["trusted"])
        r = sighup(m)
        assert (r["last_trigger"], r["last_result"]) == ("sighup", "ok")
        assert (r["added"], r["removed"], r["changed"], r["refused"]) == (2, 0, 0, 0)
        # Read by path first (no listing that would refresh the kernel's entries).
        for name, data in c.items():
            assert (m.mnt / "org" / "c" / name).read_bytes() == data
        assert (m.mnt / "neworg" / "deep" / "n" / "n.bin").read_bytes() == n["n.bin"]
        assert sorted(os.listdir(m.mnt)) == ["neworg", "org"]
        assert sorted(os.listdir(m.mnt / "org")) == ["a", "b", "c"]
        drop_caches()
        assert (m.mnt / "org" / "c" / "c.bin").read_bytes() == c["c.bin"]
        assert set(exposed(m)) == {"org/a", "org/b", "org/c", "neworg/deep/n"}
        assert (m.mnt / ".modelfs" / "bom" / "org" / "c.cdx.json").stat().st_size > 0
        assert (m.mnt / ".modelfs" / "bom" / "neworg" / "deep" / "n.cdx.json").exists()
        assert m.status()["counters"]["verify_failures"] == 0
        log = m.log()
        assert "model-added model=org/c files=2" in log
        assert "model-added model=neworg/deep/n files=1" in log
        assert ("reload trigger=sighup models=4 added=2 removed=0 changed=0 refused=0 "
                "duration_ms=") in log


def test_remove_models(tmp_path, keys, store):
    make_model(store, "x/y/z", {"z.bin": rnd(100)}, keys["trusted"])
    with mount(tmp_path, keys, store) as m:
        assert (m.mnt / "org" / "b" / "b.bin").exists()
        assert (m.mnt / "x" / "y" / "z" / "z.bin").exists()
        shutil.rmtree(store / "org" / "b")
        shutil.rmtree(store / "x")
        r = sighup(m)
        assert (r["added"], r["removed"], r["changed"], r["refused"]) == (0, 2, 0, 0)
        assert sorted(os.listdir(m.mnt)) == ["org"]  # x/ and x/y/ were only for x/y/z
        assert os.listdir(m.mnt / "org") == ["a"]
        for p in (m.mnt / "org" / "b", m.mnt / "org" / "b" / "b.bin", m.mnt / "x"):
            with pytest.raises(FileNotFoundError):
                os.stat(p)
        assert os.listdir(m.mnt / ".modelfs" / "bom" / "org") == ["a.cdx.json"]
        assert not (m.mnt / ".modelfs" / "bom" / "x").exists()
        assert set(exposed(m)) == {"org/a"}
        assert "model-removed model=org/b" in m.log()
        assert "model-removed model=x/y/z" in m.log()
        # The remaining model still reads.
        assert (m.mnt / "org" / "a" / "sub" / "t.txt").read_bytes() == b"text a\n"


def test_reseal_new_content_old_handles_keep_old_bytes(tmp_path, keys, store):
    model = store / "org" / "a"
    old = (model / "a.bin").read_bytes()
    new = rnd(400000)
    with mount(tmp_path, keys, store) as m:
        f = m.mnt / "org" / "a" / "a.bin"
        ino_before = os.stat(m.mnt / "org" / "a").st_ino
        assert f.read_bytes() == old  # cached by the kernel under the old inode
        bom = m.mnt / ".modelfs" / "bom" / "org" / "a.cdx.json"
        bom_before = bom.read_bytes()
        fd = os.open(f, os.O_RDONLY)
        try:
            replace_file(model / "a.bin", new)
            seal(model, keys["trusted"])
            r = sighup(m)
            assert (r["added"], r["removed"], r["changed"], r["refused"]) == (0, 0, 1, 0)
            # New opens: the new version, also through another process (cat).
            assert f.read_bytes() == new
            cat = subprocess.run(["cat", str(f)], capture_output=True, check=True)
            assert cat.stdout == new
            assert os.stat(f).st_size == len(new)
            assert os.stat(m.mnt / "org" / "a").st_ino != ino_before
            # The BOM file follows: the new signature's (another serial number).
            assert bom.read_bytes() != bom_before
            # The handle opened before keeps reading the version it opened,
            # served again by the daemon (no cached page helps).
            drop_caches()
            assert os.pread(fd, len(old) + 10, 0) == old
            rng = random.Random(1)
            for _ in range(50):
                off = rng.randrange(0, len(old))
                assert os.pread(fd, 5000, off) == old[off:off + 5000]
            assert os.fstat(fd).st_size == len(old)
        finally:
            os.close(fd)
        assert "model-replaced model=org/a files=2" in m.log()
        assert m.status()["counters"]["verify_failures"] == 0


def test_bad_new_signature_keeps_last_good(tmp_path, keys, store):
    model = store / "org" / "a"
    a_bin = (model / "a.bin").read_bytes()
    good_sig = (model / "model.sig").read_bytes()
    with mount(tmp_path, keys, store) as m:
        # 1. Re-sealed by an untrusted key, with one more file.
        write(model / "extra.txt", b"extra\n")
        seal(model, keys["other"])
        r = sighup(m)
        assert (r["added"], r["removed"], r["changed"], r["refused"]) == (0, 0, 0, 1)
        e = exposed(m)["org/a"]
        assert e["serving"] == "last good version"
        assert e["reload_error"]
        assert "org/a" not in refused(m)
        assert sorted(os.listdir(m.mnt / "org" / "a")) == ["a.bin", "sub"]
        drop_caches()
        assert (m.mnt / "org" / "a" / "a.bin").read_bytes() == a_bin
        ev = model_events(m, "org/a")
        assert len(ev) == 1 and "model-kept-last-good " in ev[0] and "reason=" in ev[0], ev
        prom = (m.mnt / ".modelfs" / "metrics.prom").read_text()
        assert "\nmodelfs_models_last_good 1\n" in prom
        assert "\nmodelfs_reloads_total 1\n" in prom
        assert "\nmodelfs_last_reload_timestamp_seconds 0.000000000\n" not in prom
        # The same refused signature is not retried nor logged again.
        r = sighup(m)
        assert r["refused"] == 0
        assert len(model_events(m, "org/a")) == 1
        assert exposed(m)["org/a"]["serving"] == "last good version"

        # 2. A corrupted model.sig.
        replace_sig(model, good_sig[:len(good_sig) // 2])
        r = sighup(m)
        assert r["refused"] == 1
        e2 = exposed(m)["org/a"]
        assert e2["serving"] == "last good version" and e2["reload_error"] != e["reload_error"]
        assert (m.mnt / "org" / "a" / "sub" / "t.txt").read_bytes() == b"text a\n"

        # 3. A good re-seal recovers: the new version, no error left.
        seal(model, keys["trusted"])
        r = sighup(m)
        assert (r["changed"], r["refused"]) == (1, 0)
        e3 = exposed(m)["org/a"]
        assert "reload_error" not in e3 and "serving" not in e3
        assert sorted(os.listdir(m.mnt / "org" / "a")) == ["a.bin", "extra.txt", "sub"]
        assert (m.mnt / "org" / "a" / "extra.txt").read_bytes() == b"extra\n"
        assert "model-replaced model=org/a" in m.log()


def test_sig_restored_clears_error(tmp_path, keys, store):
    model = store / "org" / "b"
    good = (model / "model.sig").read_bytes()
    with mount(tmp_path, keys, store) as m:
        ino = os.stat(m.mnt / "org" / "b").st_ino
        replace_sig(model, b"{not json")
        sighup(m)
        assert exposed(m)["org/b"]["serving"] == "last good version"
        replace_sig(model, good)
        r = sighup(m)
        assert (r["changed"], r["refused"]) == (0, 0)
        assert "reload_error" not in exposed(m)["org/b"]
        assert os.stat(m.mnt / "org" / "b").st_ino == ino
        assert "model-restored model=org/b" in m.log()


def test_refused_at_mount_then_fixed(tmp_path, keys, store):
    model = make_model(store, "org/late", {"l.bin": rnd(1000)}, keys["other"])
    with mount(tmp_path, keys, store) as m:
        assert "org/late" in refused(m)
        assert not (m.mnt / "org" / "late").exists()
        # Still bad, differently: stays refused, with the new reason.
        replace_sig(model, b"garbage")
        r = sighup(m)
        assert r["refused"] == 1
        assert "org/late" in refused(m)
        seal(model, keys["trusted"])
        r = sighup(m)
        assert (r["changed"], r["refused"]) == (1, 0)
        assert "org/late" in exposed(m) and "org/late" not in refused(m)
        assert (m.mnt / "org" / "late" / "l.bin").read_bytes() == (model / "l.bin").read_bytes()


def test_new_model_refused(tmp_path, keys, store):
    with mount(tmp_path, keys, store) as m:
        make_model(store, "org/bad", {"x": b"x"}, keys["other"])
        r = sighup(m)
        assert (r["added"], r["refused"]) == (0, 1)
        assert "org/bad" in refused(m)
        assert not (m.mnt / "org" / "bad").exists()
        assert "model-refused model=org/bad reason=" in m.log()


def test_pickle_deny_new_version(tmp_path, keys, store):
    """--pickle=deny judges a new version lazily, as at mount."""
    import pickle
    p = store / "org" / "p"
    make_model(store, "org/p", {"ok.txt": b"fine\n"}, keys["trusted"])
    with mount(tmp_path, keys, store, "--pickle=deny") as m:
        assert (m.mnt / "org" / "p" / "ok.txt").read_bytes() == b"fine\n"
        write(p / "state.pkl", pickle.dumps({"a": [1, 2, 3]}))
        seal(p, keys["trusted"])
        assert sighup(m)["changed"] == 1
        with pytest.raises(FileNotFoundError):
            os.stat(m.mnt / "org" / "p")
        assert "contains pickle file state.pkl" in refused(m)["org/p"]["reason"]
        os.unlink(p / "state.pkl")
        seal(p, keys["trusted"])
        assert sighup(m)["changed"] == 1
        assert sorted(os.listdir(m.mnt / "org" / "p")) == ["ok.txt"]
        assert "org/p" in exposed(m)


def test_transcode_view_of_new_version(tmp_path, keys, store):
    """--pickle=transcode: the new version's checkpoint gets its own view."""
    torch = pytest.importorskip("torch")
    model = store / "org" / "t"
    model.mkdir(parents=True)
    torch.save({"first": torch.arange(6, dtype=torch.float32)}, model / "pytorch_model.bin")
    seal(model, keys["trusted"])
    with mount(tmp_path, keys, store, "--pickle=transcode") as m:
        view = m.mnt / "org" / "t" / "model.safetensors"
        assert b'"first"' in view.read_bytes()[:400]
        tmp = model / "new.bin"
        torch.save({"second": torch.ones(4, 4, dtype=torch.float16)}, tmp)
        os.rename(tmp, model / "pytorch_model.bin")
        seal(model, keys["trusted"])
        assert sighup(m)["changed"] == 1
        data = view.read_bytes()
        assert b'"second"' in data[:400] and b'"first"' not in data[:400]
        assert os.listdir(m.mnt / "org" / "t") == ["model.safetensors"]


def all_inodes(root):
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = os.stat(p).st_ino
    return out


def test_nothing_changed_keeps_inodes(tmp_path, keys, store):
    with mount(tmp_path, keys, store) as m:
        before = all_inodes(m.mnt)
        assert len(before) >= 6
        # Same bytes, new mtime: not a change (model.sig is compared by SHA-256).
        os.utime(store / "org" / "a" / "model.sig", (1, 1))
        r = sighup(m)
        assert (r["added"], r["removed"], r["changed"], r["refused"]) == (0, 0, 0, 0)
        assert all_inodes(m.mnt) == before
        assert "models=2 added=0 removed=0 changed=0 refused=0" in m.log()
        assert not [ln for ln in reload_lines(m) if ln.startswith("modelfs: model-")]


def test_model_folder_replaced_same_signature(tmp_path, keys, store):
    """The same model.sig in another folder (mv of a copy): a new version, served from it."""
    a = store / "org" / "a"
    data = (a / "a.bin").read_bytes()
    with mount(tmp_path, keys, store) as m:
        ino = os.stat(m.mnt / "org" / "a").st_ino
        shutil.copytree(a, store / "org" / "a.new")
        shutil.rmtree(a)
        os.rename(store / "org" / "a.new", a)
        r = sighup(m)
        assert r["changed"] == 1
        assert os.stat(m.mnt / "org" / "a").st_ino != ino
        drop_caches()
        assert (m.mnt / "org" / "a" / "a.bin").read_bytes() == data


def test_model_folder_becomes_parent_and_back(tmp_path, keys, store):
    """A model "top" turns into a folder holding model "top/sub", and back."""
    top = make_model(store, "top", {"t.txt": b"top\n"}, keys["trusted"])
    with mount(tmp_path, keys, store) as m:
        assert (m.mnt / "top" / "t.txt").read_bytes() == b"top\n"
        os.unlink(top / "model.sig")
        make_model(store, "top/sub", {"s.txt": b"sub\n"}, keys["trusted"])
        r = sighup(m)
        assert (r["added"], r["removed"]) == (1, 1)
        assert os.listdir(m.mnt / "top") == ["sub"]
        assert (m.mnt / "top" / "sub" / "s.txt").read_bytes() == b"sub\n"
        assert os.listdir(m.mnt / ".modelfs" / "bom" / "top") == ["sub.cdx.json"]
        shutil.rmtree(top / "sub")
        seal(top, keys["trusted"])
        r = sighup(m)
        assert (r["added"], r["removed"]) == (1, 1)
        assert sorted(os.listdir(m.mnt / "top")) == ["t.txt"]
        assert (m.mnt / "top" / "t.txt").read_bytes() == b"top\n"
        assert "top.cdx.json" in os.listdir(m.mnt / ".modelfs" / "bom")
        assert not (m.mnt / ".modelfs" / "bom" / "top").exists()


def test_concurrent_readers_during_reloads(tmp_path, keys, store):
    big = rnd(3 * MiB + 17)
    make_model(store, "stable/m", {"big.bin": big}, keys["trusted"])
    errors = []
    stop = threading.Event()

    def reader(mnt, seed):
        rng = random.Random(seed)
        path = mnt / "stable" / "m" / "big.bin"
        try:
            while not stop.is_set():
                fd = os.open(path, os.O_RDONLY)
                try:
                    for _ in range(20):
                        off = rng.randrange(0, len(big))
                        ln = rng.choice([1, 4096, 65537, 300000])
                        if os.pread(fd, ln, off) != big[off:off + ln]:
                            errors.append(f"wrong bytes at {off}+{ln}")
                finally:
                    os.close(fd)
                names = os.listdir(mnt)
                if "stable" not in names or "org" not in names:
                    errors.append(f"listing {names}")
                os.listdir(mnt / "org")
                (mnt / ".modelfs" / "status.json").read_bytes()
        except OSError as e:
            errors.append(repr(e))

    with mount(tmp_path, keys, store) as m:
        threads = [threading.Thread(target=reader, args=(m.mnt, i)) for i in range(3)]
        for t in threads:
            t.start()
        try:
            for i in range(8):
                b = store / "org" / "b"
                replace_file(b / "b.bin", rnd(5000 + i))
                seal(b, keys["trusted"])
                if i % 2 == 0:
                    make_model(store, f"org/tmp{i}", {"t": rnd(10)}, keys["trusted"])
                else:
                    shutil.rmtree(store / f"org/tmp{i - 1}")
                r = sighup(m)
                assert r["last_result"] == "ok"
                if i % 4 == 0:
                    drop_caches()
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not errors, errors[:5]
        assert (m.mnt / "org" / "b" / "b.bin").read_bytes() == (store / "org/b/b.bin").read_bytes()
        assert m.status()["counters"]["verify_failures"] == 0
        assert m.status()["reload"]["count"] == 8


# --------------------------------------------------------------------------
# --watch
# --------------------------------------------------------------------------

def test_watch_add_reseal_remove(tmp_path, keys, store):
    with mount(tmp_path, keys, store, "--watch") as m:
        assert m.status()["reload"]["watch"] is True
        # add, in a folder that did not exist (its watch comes with the rescan)
        data = rnd(20000)
        make_model(store, "w/x", {"d.bin": data}, keys["trusted"])
        p = m.mnt / "w" / "x" / "d.bin"
        wait_for(p.exists, what="the new model")
        assert p.read_bytes() == data
        assert m.status()["reload"]["last_trigger"] == "watch"
        # re-seal inside the new folder (seen through the watch its rescan added),
        # with 30 files written: debounced, a few rescans at most, not one per file
        count = reload_count(m)
        new = rnd(30000)
        for i in range(30):
            write(store / "w" / "x" / f"f{i:02}.txt", b"%d\n" % i)
        replace_file(store / "w" / "x" / "d.bin", new)
        seal(store / "w" / "x", keys["trusted"])
        wait_for(lambda: p.stat().st_size == len(new), what="the new version")
        assert p.read_bytes() == new
        assert (m.mnt / "w" / "x" / "f29.txt").read_bytes() == b"29\n"
        time.sleep(0.5)
        assert 1 <= reload_count(m) - count <= 3
        # a bad signature: last good version kept
        replace_sig(store / "org" / "b", b"not a bundle")
        wait_for(lambda: exposed(m)["org/b"].get("serving") == "last good version",
                 what="kept_last_good")
        # remove
        shutil.rmtree(store / "org" / "a")
        wait_for(lambda: not (m.mnt / "org" / "a").exists(), what="the removal")
        assert sorted(os.listdir(m.mnt / "org")) == ["b"]
        log = m.log()
        assert "reload trigger=watch" in log
        assert "model-added model=w/x" in log
        assert "model-replaced model=w/x" in log
        assert "model-removed model=org/a" in log
        assert "model-kept-last-good model=org/b" in log


def test_watch_idle_store_no_rescans(tmp_path, keys, store):
    """Reading through the mount must not look like a change of the store."""
    with mount(tmp_path, keys, store, "--watch") as m:
        for _ in range(3):
            (m.mnt / "org" / "a" / "a.bin").read_bytes()
            drop_caches()
        time.sleep(0.6)
        assert reload_count(m) == 0
        # SIGHUP works with --watch too
        assert sighup(m)["last_trigger"] == "sighup"
