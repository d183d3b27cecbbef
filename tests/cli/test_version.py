"""`modelfs --version`: one line each for bug reports (issue #17).

Oracles: meson.build's project version, pkg-config (the versions compiled
against), and each library's own version function called from Python
through ctypes (the versions running), plus the sanitizer mark in the binary.
"""
import ctypes
import ctypes.util
import os
import re
import subprocess

from conftest import ROOT, run_modelfs, sanitized_build


def version_lines() -> dict:
    p = run_modelfs("--version", check=0)
    assert p.stderr == ""
    lines = p.stdout.splitlines()
    first = lines[0]
    fields = dict(line.split(": ", 1) for line in lines[1:])
    assert len(fields) == len(lines) - 1, "a line twice"
    return first, fields


def pkgconfig(name) -> str:
    return subprocess.run(["pkg-config", "--modversion", name], capture_output=True, text=True,
                          check=True).stdout.strip()


def lib_string(soname, func, *args, argtypes=None) -> str:
    lib = ctypes.CDLL(soname)
    f = getattr(lib, func)
    f.restype = ctypes.c_char_p
    if argtypes:
        f.argtypes = argtypes
    return f(*args).decode()


def test_first_line_is_the_project_version():
    first, _ = version_lines()
    project = re.search(r"version\s*:\s*'([^']+)'", (ROOT / "meson.build").read_text()).group(1)
    assert first == f"modelfs {project}"


def test_every_line_in_order():
    _, f = version_lines()
    assert list(f) == ["build", "libfuse", "OpenSSL", "zstd", "cJSON", "libcurl", "zlib",
                       "fuzzing", "sanitizers", "keyless (Sigstore)",
                       "remote (OCI registries, libcurl)"]
    assert re.fullmatch(r"(plain|debug|debugoptimized|release|minsize|custom), "
                        r"(gcc|clang) \d+\.\d+\S*", f["build"]), f["build"]
    for lib in ("libfuse", "OpenSSL", "zstd", "cJSON", "libcurl", "zlib"):
        assert re.fullmatch(r"compiled \S.*, running \S.*", f[lib]), f"{lib}: {f[lib]}"


def compiled_running(value):
    m = re.fullmatch(r"compiled (.+), running (.+)", value)
    return m.group(1), m.group(2)


def test_library_versions_compiled_and_running():
    _, f = version_lines()
    c, r = compiled_running(f["libfuse"])
    assert pkgconfig("fuse3").startswith(c + ".")
    assert r == lib_string("libfuse3.so.3", "fuse_pkgversion")
    c, r = compiled_running(f["OpenSSL"])
    assert c.startswith("OpenSSL " + pkgconfig("libcrypto") + " ")
    assert r == lib_string("libcrypto.so.3", "OpenSSL_version", 0, argtypes=[ctypes.c_int])
    c, r = compiled_running(f["zstd"])
    assert c == pkgconfig("libzstd")
    assert r == lib_string(ctypes.util.find_library("zstd"), "ZSTD_versionString")
    c, r = compiled_running(f["cJSON"])
    assert c == pkgconfig("libcjson")
    assert r == lib_string(ctypes.util.find_library("cjson"), "cJSON_Version")
    c, r = compiled_running(f["libcurl"])
    assert c == pkgconfig("libcurl")
    assert lib_string(ctypes.util.find_library("curl"), "curl_version").startswith(
        f"libcurl/{r} ")
    c, r = compiled_running(f["zlib"])
    assert c == pkgconfig("zlib")
    assert r == lib_string(ctypes.util.find_library("z"), "zlibVersion")


def test_features():
    _, f = version_lines()
    assert f["fuzzing"] == "no"  # the fuzzing build has no modelfs under test
    if sanitized_build():
        assert "address" in f["sanitizers"].split(","), f["sanitizers"]
    else:
        assert f["sanitizers"] == "none"
    m = re.fullmatch(r"yes, default trusted root (/\S+/trusted_root\.json) \((present|missing)\)",
                     f["keyless (Sigstore)"])
    assert m, f["keyless (Sigstore)"]
    assert (m.group(2) == "present") == os.access(m.group(1), os.R_OK)
    assert f["remote (OCI registries, libcurl)"] == "yes"


def test_documented():
    text = (ROOT / "docs" / "modelfs.1").read_text().replace("\\-", "-")
    assert "modelfs --version\nprints, one line each" in text.replace(".B ", "")
