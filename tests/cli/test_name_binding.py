"""modelfs verify --model-path: the signed name must fit the store path
(issue #11 section 4, docs/policy.md "Names and store paths").

A model is known by its store path and by its signed name (provenance name
from `seal --name`, else the subject name; by default the folder's base
name). `--name-check=suffix|exact|off` and the policy's `names` map bind the
two; policy rules and min_signed_at pins apply when they match either, so a
model moved to another path (an older build under another name, a swapped
folder) escapes none of them. Oracles: the names and times read back with
`modelfs inspect --json`, and the rules of docs/policy.md.
"""
import json
import os
import time

import pytest

from conftest import run_modelfs

NAME_MSG = 'signed name "{n}" does not match store path "{p}" (--name-check={mode})'


def inspect(model):
    return json.loads(run_modelfs("inspect", "--json", model, check=0).stdout)


def seal(tmp, model, key="pub", *extra):
    model.mkdir(parents=True, exist_ok=True)
    (model / "w.bin").write_bytes(b"\0" + os.urandom(3000))
    run_modelfs("seal", "--key", tmp / f"{key}.key", *extra, model, check=0)
    return model


def write_policy(tmp, doc, name):
    base = {"version": 1, "default": "allow",
            "keys": {"publisher": {"file": "pub.pub"}, "other": {"file": "other.pub"}}}
    base.update(doc)
    path = tmp / name
    path.write_text(json.dumps(base))
    return path


def verify(tmp, model, *extra, check=0):
    return run_modelfs("verify", "--trust", tmp / "pub.pub", "--trust", tmp / "other.pub",
                       *extra, model, check=check)


@pytest.fixture
def tmp(tmp_path):
    for k in ("pub", "other"):
        run_modelfs("keygen", tmp_path / k, check=0)
    return tmp_path


# --------------------------------------------------------------------------
# the signed name
# --------------------------------------------------------------------------

def test_seal_default_name_is_the_folder_base_name(tmp):
    m = seal(tmp, tmp / "store" / "org" / "m1")
    info = inspect(m)
    assert info["subject"]["name"] == "m1"
    assert info["provenance"]["name"] == "m1"
    # A trailing slash or "." does not change it (model_signing's rule).
    seal(tmp, tmp / "store" / "org" / "m2")
    run_modelfs("seal", "--key", tmp / "pub.key", f"{tmp / 'store' / 'org' / 'm2'}/", check=0)
    assert inspect(tmp / "store" / "org" / "m2")["subject"]["name"] == "m2"
    run_modelfs("seal", "--key", tmp / "pub.key", ".", cwd=m, check=0)
    assert inspect(m)["subject"]["name"] == "m1"
    # So the store path of a freshly sealed store fits, with no option.
    verify(tmp, m, "--model-path", "org/m1")
    p = verify(tmp, m, "--model-path", "org/other", check=1)
    assert NAME_MSG.format(n="m1", p="org/other", mode="suffix") in p.stderr
    assert p.stderr.startswith(f"name refused: {m}: ")
    assert len(p.stderr.strip().splitlines()) == 1


def test_provenance_name_wins_over_subject_name(tmp):
    # seal --name sets both; the check uses the same helper as the policy.
    m = seal(tmp, tmp / "x", "pub", "--name", "acme/m1")
    assert inspect(m)["provenance"]["name"] == "acme/m1"
    verify(tmp, m, "--model-path", "acme/m1")
    verify(tmp, m, "--model-path", "x", check=1)


# --------------------------------------------------------------------------
# suffix, exact, off
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name,path,suffix,exact", [
    ("m1", "m1", True, True),
    ("m1", "org/m1", True, False),
    ("m1", "a/b/m1", True, False),
    ("m1", "org/xm1", False, False),     # not at a '/' boundary
    ("m1", "org/m1x", False, False),
    ("m1", "m1/org", False, False),
    ("acme/m1", "acme/m1", True, True),
    ("acme/m1", "x/acme/m1", True, False),
    ("acme/m1", "xacme/m1", False, False),
    ("acme/m1", "m1", False, False),     # a longer name never fits a shorter path
    ("org/m1", "org/m1-rc", False, False),
])
def test_suffix_and_exact(tmp, name, path, suffix, exact):
    m = seal(tmp, tmp / "m", "pub", "--name", name)
    for mode, ok in (("suffix", suffix), ("exact", exact), ("off", True)):
        p = verify(tmp, m, "--model-path", path, "--name-check", mode, check=0 if ok else 1)
        if not ok:
            assert NAME_MSG.format(n=name, p=path, mode=mode) in p.stderr, p.stderr
    # suffix is the default.
    verify(tmp, m, "--model-path", path, check=0 if suffix else 1)


def test_without_model_path_the_name_is_the_path(tmp):
    # No --model-path: the policy matches the signed name itself, nothing to bind.
    m = seal(tmp, tmp / "m", "pub", "--name", "org/m1")
    verify(tmp, m, "--name-check", "exact")
    verify(tmp, m, "--policy", write_policy(tmp, {}, "p.json"), "--name-check", "exact")


def test_bad_name_check_value(tmp):
    m = seal(tmp, tmp / "m")
    p = verify(tmp, m, "--model-path", "m", "--name-check", "prefix", check=2)
    assert "--name-check must be suffix, exact or off" in p.stderr


# --------------------------------------------------------------------------
# the policy's names map
# --------------------------------------------------------------------------

def test_names_map_binds_a_path_both_ways(tmp):
    m1 = seal(tmp, tmp / "a", "pub", "--name", "m1")
    rc = seal(tmp, tmp / "b", "pub", "--name", "m1-rc")
    pol = write_policy(tmp, {"names": {"prod/current": "m1"}}, "names.json")
    # The map admits a name the suffix rule would refuse at that path ...
    verify(tmp, m1, "--model-path", "prod/current", check=1)
    p = verify(tmp, m1, "--policy", pol, "--model-path", "prod/current")
    assert 'policy: allowed by' in p.stdout and '"prod/current"' in p.stdout
    # ... and refuses any other name there, whatever the mode, even off.
    for mode in ("suffix", "exact", "off"):
        p = verify(tmp, rc, "--policy", pol, "--model-path", "prod/current",
                   "--name-check", mode, check=1)
        assert (f'signed name "m1-rc" does not match store path "prod/current" '
                f'({pol}: names maps it to "m1")') in p.stderr, p.stderr
        assert "policy: allowed" not in p.stdout
    # The map is exact: a mapped name that is only a suffix does not do.
    pol2 = write_policy(tmp, {"names": {"org/m1": "org/m1"}}, "names2.json")
    verify(tmp, m1, "--policy", pol2, "--model-path", "org/m1", check=1)
    # Paths the map does not list keep the mode's rule.
    verify(tmp, m1, "--policy", pol, "--model-path", "org/m1")
    verify(tmp, m1, "--policy", pol, "--model-path", "org/m1", "--name-check", "exact",
           check=1)


@pytest.mark.parametrize("names,member", [
    ({"/org/m1": "m1"}, "names./org/m1"),
    ({"org/../m1": "m1"}, "names.org/../m1"),
    ({"org/m1/": "m1"}, "names.org/m1/"),
    ({"org/m1": ""}, "names.org/m1: expected a signed name"),
    ({"org/m1": 3}, "names.org/m1: expected a signed name"),
    (["org/m1"], "names: expected an object"),
])
def test_names_map_is_parsed_strictly(tmp, names, member):
    m = seal(tmp, tmp / "m")
    pol = write_policy(tmp, {"names": names}, "bad.json")
    p = verify(tmp, m, "--policy", pol, check=2)
    assert member in p.stderr, p.stderr


def test_unknown_top_level_member_still_refused(tmp):
    m = seal(tmp, tmp / "m")
    p = verify(tmp, m, "--policy", write_policy(tmp, {"name": {}}, "typo.json"), check=2)
    assert 'unknown member "name"' in p.stderr


# --------------------------------------------------------------------------
# rollback by renaming, and rules that follow the name
# --------------------------------------------------------------------------

@pytest.fixture
def builds(tmp):
    """An older build signed as m1-rc, then the current m1 (one second later)."""
    old = seal(tmp, tmp / "build-rc", "pub", "--name", "m1-rc")
    time.sleep(1.1)
    new = seal(tmp, tmp / "store" / "org" / "m1")
    t_old = inspect(old)["provenance"]["signed_at"]
    t_new = inspect(new)["provenance"]["signed_at"]
    assert t_old < t_new
    return old, new, t_new


def test_rollback_by_renaming(tmp, builds):
    old, new, t_new = builds
    pin_name = write_policy(tmp, {"min_signed_at": {"m1": t_new}}, "pin-name.json")
    pin_path = write_policy(tmp, {"min_signed_at": {"org/m1": t_new}}, "pin-path.json")
    for pol in (pin_name, pin_path):
        verify(tmp, new, "--policy", pol, "--model-path", "org/m1")
        # The old build, found at org/m1: refused by the name check.
        p = verify(tmp, old, "--policy", pol, "--model-path", "org/m1", check=1)
        assert NAME_MSG.format(n="m1-rc", p="org/m1", mode="suffix") in p.stderr
    # Without the name check and with a pin on the name only, the attack works:
    # the pin on "m1" does not see a model named "m1-rc".
    p = verify(tmp, old, "--policy", pin_name, "--model-path", "org/m1", "--name-check", "off")
    assert "policy: allowed" in p.stdout
    # A pin on the store path holds even then.
    p = verify(tmp, old, "--policy", pin_path, "--model-path", "org/m1", "--name-check", "off",
               check=1)
    assert f"min_signed_at.org/m1: signed at" in p.stderr and "rollback refused" in p.stderr
    # And a pin on the name follows the model to any path.
    pin_rc = write_policy(tmp, {"min_signed_at": {"m1-rc": t_new}}, "pin-rc.json")
    p = verify(tmp, old, "--policy", pin_rc, "--model-path", "org/m1", "--name-check", "off",
               check=1)
    assert "min_signed_at.m1-rc" in p.stderr


def test_rule_keyed_on_name_follows_a_moved_model(tmp):
    # Only the publisher may sign org/*; a model named org/m1 signed by another
    # trusted key, moved to a path outside the glob, is still under the rule.
    m = seal(tmp, tmp / "m", "other", "--name", "org/m1")
    pol = write_policy(tmp, {"rules": [{"path": "org/*", "signers": ["publisher"]}]},
                       "signers.json")
    p = verify(tmp, m, "--policy", pol, "--model-path", "elsewhere/m1", "--name-check", "off",
               check=1)
    assert ('rules[0] (path "org/*", matched by signed name "org/m1").signers: signer key id'
            in p.stderr), p.stderr
    # At a path the glob covers, the message is the usual one.
    p = verify(tmp, m, "--policy", pol, "--model-path", "org/m1", check=1)
    assert 'rules[0] (path "org/*").signers' in p.stderr
    # The publisher's own model named org/m1 passes wherever the mode allows it.
    good = seal(tmp, tmp / "g", "pub", "--name", "org/m1")
    verify(tmp, good, "--policy", pol, "--model-path", "elsewhere/m1", "--name-check", "off")


def test_default_deny_looks_at_the_store_path(tmp):
    # A name covered by a rule does not admit a model at a path no rule covers.
    m = seal(tmp, tmp / "m", "pub", "--name", "org/m1")
    pol = write_policy(tmp, {"default": "deny", "rules": [{"path": "org/*"}]}, "deny.json")
    verify(tmp, m, "--policy", pol, "--model-path", "org/m1")
    p = verify(tmp, m, "--policy", pol, "--model-path", "lab/org/m1", check=1)
    assert 'default: no rule matches model path "lab/org/m1"' in p.stderr


def test_pickle_policy_stricter_of_path_and_name(tmp):
    m = seal(tmp, tmp / "m", "pub", "--name", "org/m1")
    pol = write_policy(tmp, {"rules": [{"path": "lab/*", "pickle": "show"},
                                       {"path": "org/*", "pickle": "deny"}]}, "pk.json")
    p = verify(tmp, m, "--policy", pol, "--model-path", "lab/m1", "--name-check", "off")
    assert "pickle policy deny" in p.stdout
    p = verify(tmp, m, "--policy", pol)
    assert "pickle policy deny" in p.stdout
    pol = write_policy(tmp, {"rules": [{"path": "lab/*", "pickle": "hide"},
                                       {"path": "org/*", "pickle": "transcode"}]}, "pk2.json")
    p = verify(tmp, m, "--policy", pol, "--model-path", "lab/m1", "--name-check", "off")
    assert "pickle policy hide" in p.stdout
