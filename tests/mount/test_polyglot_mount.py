"""Polyglots through the mount, and one verdict for the mount and `modelfs scan`
(issue #11 §1, §2).

A signed file that is a pickle and also looks like (or is) another format
was served as that format in every pickle mode. Here each hostile shape is
shown working against the plain file (tests/cli/test_polyglot.py does the
same per shape), then the mount must hide it in transcode, hide and deny
modes, and only `--pickle=show` may serve it, labelled "pickle".

The agreement test puts every file of every corpus the project has into one
signed model and checks, file by file, that the mount's format and
visibility are exactly what `modelfs scan --format json` reports.
"""
import errno
import json
import os
import pathlib
import shutil
import sys

import pytest

from conftest import run_modelfs, shared_dir
from test_mount import Mount, keys, seal, write  # noqa: F401 (keys: fixture)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
import polyglots as P  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
BENIGN = {
    "ok.safetensors": P.safetensors({"w": ("F32", [4], b"\0" * 16)}),
    "ok.gguf": P.gguf({"w": (0, [4], b"\0" * 16)}),
    "config.json": b'{"model_type": "test"}\n',
}


@pytest.fixture(scope="module")
def poly_store(tmp_path_factory, keys):  # noqa: F811
    store = tmp_path_factory.mktemp("pstore")
    model = store / "org" / "poly"
    for name, (data, _) in P.hostile_files().items():
        write(model / name, data)
    write(model / "hidden_local.pt", P.zip_hidden_local())
    for name, data in BENIGN.items():
        write(model / name, data)
    seal(model, keys["trusted"])
    return store


def hostile_names():
    return sorted([*P.hostile_files(), "hidden_local.pt"])


@pytest.mark.parametrize("mode", ["transcode", "hide"])
def test_hostile_files_hidden(tmp_path, keys, poly_store, mode):  # noqa: F811
    with Mount(poly_store, tmp_path / "mnt", f"{keys['trusted']}.pub", f"--pickle={mode}") as m:
        d = m.mnt / "org" / "poly"
        assert sorted(os.listdir(d)) == sorted(BENIGN)
        for name in hostile_names():
            with pytest.raises(OSError) as ei:
                os.stat(d / name)
            assert ei.value.errno == errno.ENOENT, name
        # the victims' loaders, through the mount, find nothing to run
        for name, (_, loader) in P.hostile_files().items():
            assert not P.attack(loader, d / name, tmp_path), name
        assert os.getxattr(d / "ok.safetensors", "user.modelfs.format") == b"safetensors"
        assert os.getxattr(d / "ok.gguf", "user.modelfs.format") == b"gguf"


def test_hostile_files_deny_refuse_the_model(tmp_path, keys, poly_store):  # noqa: F811
    with Mount(poly_store, tmp_path / "mnt", f"{keys['trusted']}.pub", "--pickle=deny") as m:
        with pytest.raises(OSError):
            os.listdir(m.mnt / "org" / "poly")
        refused = {r["path"]: r for r in m.status()["refused"]}
        assert "pickle" in refused["org/poly"]["reason"]


def test_show_serves_them_labelled_pickle(tmp_path, keys, poly_store):  # noqa: F811
    with Mount(poly_store, tmp_path / "mnt", f"{keys['trusted']}.pub", "--pickle=show") as m:
        d = m.mnt / "org" / "poly"
        assert sorted(os.listdir(d)) == sorted([*BENIGN, *hostile_names()])
        for name in hostile_names():
            assert os.getxattr(d / name, "user.modelfs.format") == b"pickle", name
        # what the operator asked for: the bytes, verified, unchanged
        name = "st_tail.safetensors"
        assert (d / name).read_bytes() == (poly_store / "org" / "poly" / name).read_bytes()


# ------------------------------------------------------------ one verdict

def corpus_files():
    roots = [shared_dir() / "corpus", ROOT / "tests" / "fuzz" / "corpus"]
    out = []
    for r in roots:
        out += sorted(p for p in r.rglob("*") if p.is_file() and not p.is_symlink())
    return out


def test_one_verdict_on_every_corpus(tmp_path, keys):  # noqa: F811
    store = tmp_path / "store"
    model = store / "all" / "corpus"
    names = {}
    for i, src in enumerate(corpus_files()):
        name = f"{i:04d}-{src.name}"
        write(model / name, src.read_bytes())
        names[name] = src
    for name, (data, _) in P.hostile_files().items():
        write(model / f"h-{name}", data)
        names[f"h-{name}"] = name
    assert len(names) > 400
    seal(model, keys["trusted"])
    p = run_modelfs("scan", "--format", "json", "-r", model)
    assert p.returncode in (0, 1), p.stderr
    scan = {pathlib.Path(r["path"]).name: r for r in json.loads(p.stdout)["results"]
            if r["member"] is None}
    assert set(names) <= set(scan)
    kinds = {scan[n]["format"] for n in names}
    assert {"pickle", "json", "unknown"} <= kinds, kinds
    with Mount(store, tmp_path / "show", f"{keys['trusted']}.pub", "--pickle=show") as m:
        d = m.mnt / "all" / "corpus"
        for n in names:
            got = os.getxattr(d / n, "user.modelfs.format").decode()
            assert got == scan[n]["format"], (n, names[n], got, scan[n])
    with Mount(store, tmp_path / "hide", f"{keys['trusted']}.pub", "--pickle=hide") as m:
        shown = set(os.listdir(m.mnt / "all" / "corpus"))
        want = {n for n in names if scan[n]["format"] != "pickle"}
        assert shown == want, (sorted(shown ^ want)[:10])
    # EXPECTED.tsv's pickles are all hidden; its not-pickles all shown
    exp = (shared_dir() / "corpus" / "picklescan" / "EXPECTED.tsv").read_text().splitlines()[1:]
    by_src = {str(v): n for n, v in names.items()}
    for line in exp:
        rel, verdict = line.split("\t")[:2]
        n = by_src.get(str(shared_dir() / "corpus" / "picklescan" / rel))
        if n is None:
            continue
        if verdict == "not-pickle":
            assert n in want, rel
        elif verdict not in ("safe",):
            assert n not in want, rel
