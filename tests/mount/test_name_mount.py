"""modelfs mount: a model is served at a store path only if its signed name
fits that path (issue #11 section 4; run as root).

The attack: a `min_signed_at` pin on m1 is bypassed by putting at org/m1 an
older build signed under another name; swapping two folders serves each
model under the other's path. The defence: `--name-check=suffix|exact|off`
(suffix by default), the policy's `names` map, and rules and pins that apply
by store path or by signed name. Every mount is unmounted even on failure
(test_mount.Mount). Oracles: the bytes written, the status file, the log,
`modelfs inspect --json` for names and times, and `modelfs verify --policy
--model-path`, which must decide the same.
"""
import json
import os
import pathlib
import shutil
import subprocess
import time

import pytest

from conftest import run_modelfs
from test_reload import sighup
from test_mount import Mount, rnd, write

NAME_MSG = 'signed name "{n}" does not match store path "{p}" (--name-check={mode})'


@pytest.fixture(scope="module")
def nkeys(tmp_path_factory):
    d = tmp_path_factory.mktemp("nkeys")
    for k in ("publisher", "other"):
        run_modelfs("keygen", d / k, check=0)
    return d


def make(model, keys, *extra, key="publisher"):
    """A model folder with one file, sealed; returns (folder, its bytes)."""
    data = rnd(20000)
    write(pathlib.Path(model) / "w.bin", data)
    run_modelfs("seal", "--key", keys / f"{key}.key", *extra, model, check=0)
    return pathlib.Path(model), data


def signed_at(model):
    info = json.loads(run_modelfs("inspect", "--json", model, check=0).stdout)
    return info["provenance"]["signed_at"]


def write_policy(keys, doc, name):
    base = {"version": 1, "default": "allow",
            "keys": {"publisher": {"file": "publisher.pub"}, "other": {"file": "other.pub"}}}
    base.update(doc)
    p = keys / name
    p.write_text(json.dumps(base))
    return p


def trust(keys):
    return [keys / "publisher.pub", keys / "other.pub"]


def mount(tmp_path, keys, store, *extra, name="mnt"):
    return Mount(store, tmp_path / name, trust(keys), *extra)


def exposed(m):
    return {e["path"]: e for e in m.status()["models"]}


def refused(m):
    return {e["path"]: e for e in m.status()["refused"]}


def swap(a, b):
    tmp = a.with_name(a.name + ".swap")
    os.rename(a, tmp)
    os.rename(b, a)
    os.rename(tmp, b)


def verify_same(keys, store, m, *extra):
    """`modelfs verify --model-path` decides each model as the mount did."""
    ex, rf = exposed(m), refused(m)
    for path in list(ex) + list(rf):
        args = ["verify", *sum((["--trust", t] for t in trust(keys)), []), *extra,
                "--model-path", path, store / path]
        p = run_modelfs(*args)
        assert p.returncode == (0 if path in ex else 1), (path, p.stdout, p.stderr)


# --------------------------------------------------------------------------

def test_seal_default_name_mounts_without_flags(tmp_path, nkeys):
    # `seal` with no --name signs the folder's base name, which fits its path.
    store = tmp_path / "store"
    _, d1 = make(store / "org" / "m1", nkeys)
    _, d2 = make(store / "acme" / "team" / "m2", nkeys)
    with mount(tmp_path, nkeys, store) as m:
        st = m.status()
        assert st["name_check"] == "suffix"
        assert st["refused"] == []
        ex = exposed(m)
        assert ex["org/m1"]["name"] == "m1" and ex["acme/team/m2"]["name"] == "m2"
        assert (m.mnt / "org" / "m1" / "w.bin").read_bytes() == d1
        assert (m.mnt / "acme" / "team" / "m2" / "w.bin").read_bytes() == d2
        assert os.getxattr(m.mnt / "org" / "m1", "user.modelfs.name") == b"m1"
        verify_same(nkeys, store, m)


def test_rollback_by_renaming(tmp_path, nkeys):
    store = tmp_path / "store"
    old, old_data = make(tmp_path / "builds" / "m1-rc", nkeys, "--name", "m1-rc")
    time.sleep(1.1)
    new, new_data = make(store / "org" / "m1", nkeys)
    t_new = signed_at(new)
    assert signed_at(old) < t_new
    pin_name = write_policy(nkeys, {"min_signed_at": {"m1": t_new}}, "pin-name.json")
    pin_path = write_policy(nkeys, {"min_signed_at": {"org/m1": t_new}}, "pin-path.json")

    # The genuine current build is served under both pins.
    for pol in (pin_name, pin_path):
        with mount(tmp_path, nkeys, store, "--policy", pol) as m:
            assert (m.mnt / "org" / "m1" / "w.bin").read_bytes() == new_data

    # The attack: the older build put at org/m1.
    shutil.move(new, tmp_path / "builds" / "m1")
    shutil.copytree(old, new)
    for pol in (pin_name, pin_path):
        with mount(tmp_path, nkeys, store, "--policy", pol) as m:
            assert not (m.mnt / "org" / "m1").exists()
            why = refused(m)["org/m1"]["reason"]
            assert why == NAME_MSG.format(n="m1-rc", p="org/m1", mode="suffix"), why
            assert "model-refused model=org/m1" in m.log()
            verify_same(nkeys, store, m, "--policy", pol)

    # Without the defence (no name check, a pin on the name only) the attack
    # works: the old bytes are served at org/m1. The name check is what stops it.
    with mount(tmp_path, nkeys, store, "--policy", pin_name, "--name-check", "off") as m:
        assert (m.mnt / "org" / "m1" / "w.bin").read_bytes() == old_data
        assert exposed(m)["org/m1"]["name"] == "m1-rc"
        verify_same(nkeys, store, m, "--policy", pin_name, "--name-check", "off")
    # A pin keyed on the store path holds even with the check off.
    with mount(tmp_path, nkeys, store, "--policy", pin_path, "-o", "name_check=off") as m:
        why = refused(m)["org/m1"]["reason"]
        assert why.startswith("policy refused: ") and "min_signed_at.org/m1" in why
        assert "rollback refused" in why
        verify_same(nkeys, store, m, "--policy", pin_path, "--name-check", "off")


def test_swapped_folders_refused_then_served_after_swap_back(tmp_path, nkeys):
    store = tmp_path / "store"
    a, da = make(store / "org" / "a", nkeys)
    b, db = make(store / "org" / "b", nkeys)
    swap(a, b)
    with mount(tmp_path, nkeys, store) as m:
        rf = refused(m)
        assert rf["org/a"]["reason"] == NAME_MSG.format(n="b", p="org/a", mode="suffix")
        assert rf["org/b"]["reason"] == NAME_MSG.format(n="a", p="org/b", mode="suffix")
        assert exposed(m) == {}
        assert not (m.mnt / "org").exists()
        verify_same(nkeys, store, m)
        # Swapped back and rescanned: the reload runs the same check.
        swap(a, b)
        sighup(m, timeout=5)
        assert refused(m) == {}
        assert set(exposed(m)) == {"org/a", "org/b"}
        assert (m.mnt / "org" / "a" / "w.bin").read_bytes() == da
        assert (m.mnt / "org" / "b" / "w.bin").read_bytes() == db
        # Swapped again while served: each path keeps its last good version
        # (the model it was), and the reload error names the mismatch.
        swap(a, b)
        sighup(m, timeout=5)
        ex = exposed(m)
        assert ex["org/a"]["reload_error"] == NAME_MSG.format(n="b", p="org/a", mode="suffix")
        assert ex["org/a"]["serving"] == "last good version"
        assert (m.mnt / "org" / "a" / "w.bin").read_bytes() == da
        assert (m.mnt / "org" / "b" / "w.bin").read_bytes() == db


@pytest.fixture
def mixed_store(tmp_path, nkeys):
    store = tmp_path / "store"
    make(store / "org" / "m1", nkeys, "--name", "m1")              # base name
    make(store / "acme" / "m2", nkeys, "--name", "acme/m2")        # full path
    make(store / "x" / "acme" / "m3", nkeys, "--name", "acme/m3")  # trailing components
    make(store / "org" / "xm4", nkeys, "--name", "m4")             # not at a '/' boundary
    make(store / "org" / "m5", nkeys, "--name", "org/m5-rc")       # another name
    return store


@pytest.mark.parametrize("opt,served", [
    ([], {"org/m1", "acme/m2", "x/acme/m3"}),
    (["--name-check", "suffix"], {"org/m1", "acme/m2", "x/acme/m3"}),
    (["--name-check", "exact"], {"acme/m2"}),
    (["-o", "name_check=exact"], {"acme/m2"}),
    (["--name-check=off"], {"org/m1", "acme/m2", "x/acme/m3", "org/xm4", "org/m5"}),
])
def test_suffix_exact_off(tmp_path, nkeys, mixed_store, opt, served):
    mode = "exact" if "exact" in " ".join(opt) else "off" if "off" in " ".join(opt) else "suffix"
    names = {"org/m1": "m1", "acme/m2": "acme/m2", "x/acme/m3": "acme/m3", "org/xm4": "m4",
             "org/m5": "org/m5-rc"}
    with mount(tmp_path, nkeys, mixed_store, *opt) as m:
        assert m.status()["name_check"] == mode
        assert set(exposed(m)) == served
        for path, e in refused(m).items():
            assert e["reason"] == NAME_MSG.format(n=names[path], p=path, mode=mode)
        for path in served:
            assert (m.mnt / path / "w.bin").is_file()
        verify_same(nkeys, mixed_store, m, "--name-check", mode)


def test_bad_name_check_option(tmp_path, nkeys):
    store = tmp_path / "store"
    store.mkdir()
    (tmp_path / "mnt").mkdir()
    for opt in (["--name-check", "prefix"], ["-o", "name_check=maybe"]):
        p = run_modelfs("mount", "-f", "--trust", nkeys / "publisher.pub", *opt, store,
                        tmp_path / "mnt", timeout=30)
        assert p.returncode == 2, p.stderr
        assert not os.path.ismount(tmp_path / "mnt")


def test_policy_names_map(tmp_path, nkeys):
    store = tmp_path / "store"
    _, d = make(store / "prod" / "current", nkeys, "--name", "m1")
    make(store / "prod" / "next", nkeys, "--name", "m1-rc")
    ok = write_policy(nkeys, {"names": {"prod/current": "m1", "prod/next": "m1-rc"}},
                      "names-ok.json")
    wrong = write_policy(nkeys, {"names": {"prod/current": "m1-rc", "prod/next": "m1"}},
                         "names-wrong.json")
    # No mapping: neither name fits its path.
    with mount(tmp_path, nkeys, store) as m:
        assert set(refused(m)) == {"prod/current", "prod/next"}
    # Mapped: served, even under exact.
    with mount(tmp_path, nkeys, store, "--policy", ok, "--name-check", "exact") as m:
        assert set(exposed(m)) == {"prod/current", "prod/next"}
        assert (m.mnt / "prod" / "current" / "w.bin").read_bytes() == d
        verify_same(nkeys, store, m, "--policy", ok, "--name-check", "exact")
    # Mapped to the other name: refused, and the map wins over --name-check=off.
    with mount(tmp_path, nkeys, store, "--policy", wrong, "--name-check", "off") as m:
        rf = refused(m)
        assert set(rf) == {"prod/current", "prod/next"}
        assert rf["prod/current"]["reason"] == (
            f'signed name "m1" does not match store path "prod/current" '
            f'({wrong}: names maps it to "m1-rc")')
        verify_same(nkeys, store, m, "--policy", wrong, "--name-check", "off")


def test_rule_keyed_on_name_applies_outside_its_glob(tmp_path, nkeys):
    # Only the publisher may sign org/*, and org/* must be served. A model
    # signed as org/m1 by another trusted key, moved outside the glob (with
    # the name check off, so the rule is what is tested), is still refused,
    # and its refusal marks the mount unhealthy.
    store = tmp_path / "store"
    make(store / "elsewhere" / "m1", nkeys, "--name", "org/m1", key="other")
    make(store / "lab" / "m2", nkeys, "--name", "org/m2")
    pol = write_policy(nkeys, {"rules": [{"path": "org/*", "signers": ["publisher"],
                                          "required": True}]}, "signers.json")
    with mount(tmp_path, nkeys, store, "--policy", pol, "--name-check", "off") as m:
        rf = refused(m)
        assert set(rf) == {"elsewhere/m1"}
        why = rf["elsewhere/m1"]["reason"]
        assert why.startswith("policy refused: ")
        assert 'rules[0] (path "org/*", matched by signed name "org/m1").signers' in why
        assert rf["elsewhere/m1"]["required"] is True
        assert set(exposed(m)) == {"lab/m2"}
        verify_same(nkeys, store, m, "--policy", pol, "--name-check", "off")
        st = run_modelfs("status", m.mnt)
        assert st.returncode == 1, st.stdout + st.stderr
