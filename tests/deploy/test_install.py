"""Install, man page and systemd unit.

- `meson install --destdir` installs the binary, modelfs(1) and
  modelfs@.service (pointing at the installed binary);
- the man page renders without warnings (groff -ww, man -l; mandoc -Tlint
  when installed) and names every subcommand of the dispatch table and every
  long option each `modelfs COMMAND --help` prints, and every -o keyword;
- the unit passes `systemd-analyze verify` (systemd need not be PID 1) and
  uses no setting that would hide the mount in a private mount namespace.
"""
import configparser
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from conftest import ROOT, modelfs_bin, run_modelfs

MAN = ROOT / "docs" / "modelfs.1"
UNIT_IN = ROOT / "tools" / "systemd" / "modelfs@.service.in"


def build_dir() -> pathlib.Path:
    b = os.environ.get("MODELFS_BUILD")
    return pathlib.Path(b) if b else pathlib.Path(modelfs_bin()).resolve().parent.parent


def meson_prefix_bindir():
    p = subprocess.run(["meson", "introspect", "--buildoptions", str(build_dir())],
                       capture_output=True, text=True, check=True)
    import json
    opts = {o["name"]: o["value"] for o in json.loads(p.stdout)}
    return opts["prefix"], opts["bindir"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    dest = tmp_path_factory.mktemp("destdir")
    # --no-rebuild: the test depends on the built binary; the man page and
    # the unit need no build step.
    p = subprocess.run(["meson", "install", "-C", str(build_dir()), "--no-rebuild",
                        "--destdir", str(dest)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return dest


def test_install_lists_binary_man_unit(installed):
    prefix, bindir = meson_prefix_bindir()
    root = installed / prefix.lstrip("/")
    exe = root / bindir / "modelfs"
    assert exe.is_file() and os.access(exe, os.X_OK)
    assert (root / "share" / "man" / "man1" / "modelfs.1").read_bytes() == MAN.read_bytes()
    unit = (root / "lib" / "systemd" / "system" / "modelfs@.service").read_text()
    assert f"ExecStart={prefix}/{bindir}/modelfs mount -f " in unit
    assert "@BINDIR@" not in unit
    # mount(8) runs the helper without PATH: the default shell path must hold it
    default_path = "/usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin".split()
    if prefix in ("/usr", "/usr/local"):
        assert f"{prefix}/{bindir}" in default_path


# --------------------------------------------------------------------------
# man page
# --------------------------------------------------------------------------

def test_man_renders_without_warnings():
    p = subprocess.run(["groff", "-ww", "-z", "-man", str(MAN)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    if shutil.which("man"):
        p = subprocess.run(["man", "-l", str(MAN)], capture_output=True, text=True,
                           timeout=60, env=dict(os.environ, MANWIDTH="80", MANPAGER="cat",
                                                PAGER="cat", LC_ALL="C.UTF-8"))
        assert p.returncode == 0 and p.stderr == "", p.stderr
        assert "modelfs mount" in p.stdout and "EXIT STATUS" in p.stdout
    if shutil.which("mandoc"):
        p = subprocess.run(["mandoc", "-Tlint", "-Wwarning", str(MAN)], capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr


def man_text() -> str:
    """The man source with roff escapes for '-' undone."""
    return MAN.read_text().replace("\\-", "-").replace("\\e", "\\")


def dispatch_commands():
    src = (ROOT / "tools" / "modelfs.c").read_text()
    names = re.findall(r'\{"([a-z][a-z0-9-]*)",\s*cmd_', src)
    assert len(names) >= 10, names
    return names


def test_man_names_every_subcommand():
    text = man_text()
    for name in dispatch_commands():
        assert re.search(rf"^\.SS {re.escape(name)}$", text, re.M), f"no section for {name}"
        assert f"modelfs {name}" in text


def help_text(cmd):
    p = run_modelfs(cmd, "--help")
    return p.stdout + p.stderr


def test_man_names_every_option():
    text = man_text()
    missing = []
    for name in dispatch_commands():
        for opt in sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", help_text(name)))):
            if opt == "--help":
                continue
            if not re.search(re.escape(opt) + r"(?![\w-])", text):
                missing.append(f"{name} {opt}")
    # the top-level options too
    for opt in ("--help", "--version"):
        if opt not in text:
            missing.append(opt)
    assert not missing, f"not in docs/modelfs.1: {missing}"


def test_man_names_every_mount_o_keyword():
    """The -o keywords `modelfs mount --help` lists (trust=, ready_file=, ...)."""
    h = help_text("mount")
    block = h.split("-o OPT", 1)[1].split("\n  --", 1)[0]
    words = re.findall(r"\b([a-z_]+)(?:=[A-Z]+)?\b", block.split(";", 1)[1])
    words = [w for w in words if w != "also"]
    assert "trust" in words and "cache_dir" in words
    text = man_text()
    for w in words:
        assert re.search(rf"^\.(B|BI) {w}\b", text, re.M), f"-o {w} not in MOUNT OPTIONS"


def test_man_exit_statuses_and_signals():
    text = man_text()
    for s in ("SIGTERM", "SIGINT", "SIGHUP", ".SH EXIT STATUS", ".SH FILES", ".SH EXAMPLES",
              "metrics.prom", "status.json", "modelfs@.service"):
        assert s in text, s


# --------------------------------------------------------------------------
# systemd unit
# --------------------------------------------------------------------------

def unit_sections(text):
    cp = configparser.ConfigParser(strict=False, interpolation=None,
                                   comment_prefixes=("#", ";"), delimiters=("=",))
    cp.optionxform = str
    cp.read_string(text)
    return cp


# Settings that give the service a private mount namespace, where the FUSE
# mount would be invisible to every other process (systemd.exec(5)).
NAMESPACING = ["ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateMounts",
               "ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths", "ProtectKernelTunables",
               "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
               "ProtectHostname", "ProtectProc", "BindPaths", "BindReadOnlyPaths",
               "TemporaryFileSystem", "RootDirectory", "RootImage", "MountFlags"]


def test_unit_content():
    u = unit_sections(UNIT_IN.read_text())
    s = u["Service"]
    assert s["Type"] == "simple"
    assert s["EnvironmentFile"] == "/etc/modelfs/%i.conf"
    start = s["ExecStart"].split()
    assert start[0] == "@BINDIR@/modelfs" and start[1:3] == ["mount", "-f"]
    ready = start[start.index("--ready-file") + 1]
    assert ready.startswith("/run/modelfs/%i/")
    assert ready in s["ExecStartPost"]
    assert start[-2:] == ["${STORE}", "${MNT}"] and "$OPTIONS" in start
    assert s["ExecStop"].lstrip("-").split() == ["/bin/fusermount3", "-u", "${MNT}"]
    assert "HUP" in s["ExecReload"]
    assert s["NoNewPrivileges"] == "yes"
    assert s["CapabilityBoundingSet"].split()[0] == "CAP_SYS_ADMIN"
    assert s["DeviceAllow"] == "/dev/fuse rw" and s["DevicePolicy"] == "closed"
    assert s["RestrictAddressFamilies"] == "AF_UNIX"
    for k in NAMESPACING:
        assert k not in s, f"{k} would hide the mount in a private namespace"
    # every option the unit passes exists
    h = help_text("mount")
    for o in (w for w in start if w.startswith("--")):
        assert o in h, o


def test_unit_systemd_analyze_verify(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    unit = tmp_path / "modelfs@test.service"
    unit.write_text(UNIT_IN.read_text().replace("@BINDIR@", str(pathlib.Path(modelfs_bin())
                                                                .resolve().parent)))
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    ours = [ln for ln in p.stderr.splitlines() if "modelfs" in ln]
    if p.returncode != 0 and not ours:
        pytest.skip(f"systemd-analyze cannot run here: {p.stderr.strip()[-300:]}")
    assert p.returncode == 0 and not ours, p.stderr
    p = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=60",
                        str(unit)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    if "Unknown command verb" in p.stderr or "unrecognized option" in p.stderr:
        return
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr


def test_install_puts_the_pinned_sigstore_root(installed):
    """meson install runs tools/install-sigstore-root: the public-good root,
    byte for byte the pinned one, where keyless verification looks by
    default (docs/policy.md, "Keyless signers")."""
    import hashlib

    prefix, _ = meson_prefix_bindir()
    root = installed / prefix.lstrip("/") / "share" / "modelfs" / "sigstore" / "trusted_root.json"
    if not root.exists() and not shutil.which("npm"):
        pytest.skip("npm missing: the installer only warns")
    pinned = re.search(r"^SHA256=([0-9a-f]{64})$",
                       (ROOT / "tools" / "install-sigstore-root").read_text(), re.M).group(1)
    assert hashlib.sha256(root.read_bytes()).hexdigest() == pinned
