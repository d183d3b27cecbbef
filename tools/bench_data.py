"""bench_data - the data sets tools/bench measures, built once and reused.

Big or slow sets (the 1,000-model store, the 10 GiB file, the packed model)
are kept in a cache folder (default /tmp/modelfs-bench-cache, never the
repository), keyed by `modelfs --version` and the set's parameters, and
rebuilt only when the key changes or a previous build did not finish (a
set counts as built once its DONE marker exists).
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys

from bench_util import fill_random, sh

GEN_VERSION = 2  # bump when a generator below changes what it writes


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def binary_key(binary) -> str:
    # the first line (`modelfs X.Y.Z`); the lines after it name the build's
    # libraries, and would make a file name too long
    v = sh(binary, "--version").stdout.strip().splitlines()[0].replace(" ", "-")
    return f"{v}-g{GEN_VERSION}"


def cached(cache_root, name, build):
    """Returns the folder of set @name, calling build(folder) if it is not
    complete yet."""
    d = pathlib.Path(cache_root) / name
    if (d / "DONE").exists():
        return d
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    build(d)
    (d / "DONE").write_text("ok\n")
    return d


def keygen(binary, d):
    sh(binary, "keygen", d / "k")
    return d / "k.key", d / "k.pub"


def build_scale(binary, d, n_models, n_files):
    """@n_models models of @n_files small files each (config.json,
    tokenizer.json and weight shards of 4-16 KiB), each model sealed. Models
    sit in 10 organisations, like a hub mirror: store/org-K/model-N."""
    key, _ = keygen(binary, d)
    store = d / "store"
    log(f"building a store of {n_models} models x {n_files} files (once)")
    procs = []
    for i in range(n_models):
        m = store / f"org-{i % 10}" / f"model-{i:04d}"
        m.mkdir(parents=True)
        (m / "config.json").write_text(json.dumps({"model": i, "hidden_size": 64}))
        (m / "tokenizer.json").write_text(json.dumps({"vocab": {f"t{j}": j for j in range(64)}}))
        for j in range(n_files - 2):
            (m / f"weights-{j:02d}.bin").write_bytes(os.urandom(4096 * (1 + (i + j) % 4)))
        procs.append(subprocess.Popen([str(binary), "seal", "--key", str(key), str(m)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        if len(procs) >= 4:
            wait_all(procs)
            procs = []
    wait_all(procs)


def wait_all(procs):
    for p in procs:
        err = p.stderr.read()
        if p.wait() != 0:
            raise RuntimeError(f"seal failed: {err.decode(errors='replace')[-300:]}")
        p.stderr.close()


def build_files(binary, d, n_files, size=64):
    """One model, store/org/m, of @n_files files of @size random bytes each
    (f000000.bin, ...), sealed: what the daemon keeps per signed file. Each
    starts with a zero byte, which no pickle opcode is: a random first byte
    of 0x80 (PROTO) makes one file in a few hundred a pickle by its first
    bytes, which the mount hides."""
    key, _ = keygen(binary, d)
    m = d / "store" / "org" / "m"
    m.mkdir(parents=True)
    log(f"building a model of {n_files} files of {size} bytes and sealing it (once)")
    for i in range(n_files):
        (m / f"f{i:06d}.bin").write_bytes(b"\0" + os.urandom(size - 1))
    sh(binary, "seal", "--key", key, m)


def build_big(binary, d, size):
    """One model holding one file of @size bytes of random data, sealed."""
    keygen(binary, d)
    m = d / "store" / "big"
    m.mkdir(parents=True)
    log(f"writing a {size / (1 << 30):.1f} GiB file and sealing it (once)")
    with open(m / "data.bin", "wb") as f:
        fill_random(f, size)
    sh(binary, "seal", "--key", d / "k.key", m)


def build_pack(binary, d, size_mib):
    """The packing set: torch weights at normal(0, 0.02), two thirds bf16,
    one third f32, in 64 MiB shards, plus tokenizer and config JSON (the
    recipe of tools/bench-pack). Makes, from the same files: plain/ (sealed),
    packed/ (sealed, then `modelfs pack --remove-original`) and
    squash.img (mksquashfs -comp zstd with its defaults, the signature and
    modelfs's folder left out)."""
    key, _ = keygen(binary, d)
    plain = d / "store" / "plain"
    plain.mkdir(parents=True)
    log(f"generating a {size_mib} MiB bf16/f32 model with torch and packing it (once)")
    gen = r'''
import json, pathlib, sys
import torch
root, mib = pathlib.Path(sys.argv[1]), int(sys.argv[2])
g = torch.Generator().manual_seed(0)
def shards(total, dtype, elem, prefix):
    left, i = total, 0
    while left > 0:
        n = min(left, 64 << 20) // elem
        w = torch.randn(n, generator=g) * 0.02
        b = w.to(torch.bfloat16).view(torch.int16) if dtype == "bf16" else w
        (root / f"{prefix}-{i:03d}.bin").write_bytes(b.numpy().tobytes())
        left -= n * elem
        i += 1
shards(mib * 2 // 3 << 20, "bf16", 2, "model-bf16")
shards(mib // 3 << 20, "f32", 4, "model-f32")
vocab = {f"tok{i}": i for i in range(50000)}
(root / "tokenizer.json").write_text(json.dumps({"model": {"vocab": vocab}}, indent=1))
(root / "config.json").write_text(json.dumps({"hidden_size": 4096, "layers": 32}))
'''
    sh("/usr/bin/python3", "-c", gen, plain, size_mib)
    sh(binary, "seal", "--key", key, plain)
    packed = d / "store" / "packed"
    shutil.copytree(plain, packed, symlinks=True)
    # Each copy is signed under its own folder name: the mount serves a
    # model only where its signed name fits the store path.
    sh(binary, "seal", "--key", key, packed)
    sh(binary, "pack", "-q", "--remove-original", packed)
    if has_tensor_transform(binary):
        tt = d / "store" / "packed-tt"
        shutil.copytree(plain, tt, symlinks=True)
        sh(binary, "seal", "--key", key, tt)
        sh(binary, "pack", "-q", "--tensor-transform", "--remove-original", tt)
    sh("mksquashfs", plain, d / "squash.img", "-comp", "zstd", "-e", ".modelfs", "model.sig",
       "-noappend", "-quiet", "-no-progress")


def has_tensor_transform(binary) -> bool:
    """Does this `modelfs pack` have --tensor-transform (byte planes)?"""
    p = subprocess.run([str(binary), "pack", "--help"], capture_output=True, text=True)
    return "--tensor-transform" in p.stdout + p.stderr


def plain_bytes(model) -> int:
    """Bytes of a model's own files: not its signature, not .modelfs."""
    return sum(p.stat().st_size for p in pathlib.Path(model).iterdir()
               if p.is_file() and p.name != "model.sig")


def packed_bytes(model) -> int:
    """What a packed model stores for its files: the packed copies plus the
    files left plain (those that did not shrink by 5%)."""
    pk = pathlib.Path(model) / ".modelfs" / "packed"
    return plain_bytes(model) + sum(p.stat().st_size for p in pk.iterdir() if p.is_file())
