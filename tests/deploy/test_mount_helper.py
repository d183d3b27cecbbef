"""mount(8) and fstab: `mount -t fuse.modelfs STORE MNT -o OPTS` for real.

What happens on Debian 12 (util-linux 2.38, fuse3 3.14):

1. mount(8) finds no /sbin/mount.fuse.modelfs and runs
   `/sbin/mount.fuse STORE MNT -o rw,OPTS -t fuse.modelfs` (mount.fuse is
   mount.fuse3). It adds `rw` (or the `ro` asked for), drops the `x-*`
   options and `noauto`, and runs the helper with a sanitized environment:
   **no PATH**.
2. mount.fuse3 drops `nofail`, `_netdev`, `user`, `users`, `nouser`, `auto`,
   `noauto` and empty options, appends `dev` and `suid` unless `nodev` /
   `nosuid` were given, and runs `/bin/sh -c "'modelfs' 'STORE' 'MNT' '-o'
   'OPTS'"`. Without PATH, dash searches its default path
   (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin), so the
   binary must be installed there (meson install puts it in BINDIR).
3. modelfs sees a first argument that is not a subcommand and mounts; its
   parse_o() keeps trust=, pickle=, cache_dir=, ... and passes the rest
   (rw, ro, dev, suid, nodev, nosuid, noatime, allow_other) to FUSE, which
   accepts them; the mount stays read-only whatever rw says. FUSE rejects
   the other atime options (relatime, strictatime, lazytime, nodiratime and
   their no- forms), which mount(8) passes on from fstab: modelfs drops them
   (a read-only mount updates no atime). `defaults` never reaches it.

The tests: mount.fuse3 run directly with the built binary first in PATH;
then mount(8) itself, and an alternative fstab (`mount -T FILE MNT`), each
in a private mount namespace where a folder holding the built binary is
bind-mounted over /usr/local/sbin (nothing on the machine changes; /etc/fstab
is never touched).
"""
import os
import shutil
import subprocess
import textwrap

import pytest

from conftest import modelfs_bin
from deploy_helpers import cleanup, make_store, mounts_under, wait_gone

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts need root")


@pytest.fixture
def env(tmp_path):
    store, key, files = make_store(tmp_path)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(modelfs_bin(), bindir / "modelfs")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    yield {"tmp": tmp_path, "store": store, "key": key, "files": files, "bin": bindir,
           "mnt": mnt, "cache": tmp_path / "cache"}
    cleanup(tmp_path)


def findmnt_options(mnt):
    p = subprocess.run(["findmnt", "-n", "-o", "FSTYPE,OPTIONS", str(mnt)],
                       capture_output=True, text=True)
    return p.stdout.split()


def test_mount_fuse3_direct(env):
    """mount.fuse3 runs `modelfs STORE MNT -o OPTS` from PATH; modelfs daemonizes."""
    mnt = env["mnt"]
    opts = (f"rw,trust={env['key']}.pub,pickle=transcode,allow_other,"
            f"cache_dir={env['cache']},nofail,_netdev")
    e = dict(os.environ, PATH=f"{env['bin']}:{os.environ['PATH']}")
    p = subprocess.run(["mount.fuse3", str(env["store"]), str(mnt), "-t", "fuse.modelfs",
                        "-o", opts], env=e, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    try:
        # the helper returned only once the mount answers
        assert os.path.ismount(mnt)
        for name, data in env["files"].items():
            assert (mnt / "org" / "m" / name).read_bytes() == data
        fstype, options = findmnt_options(mnt)
        assert fstype == "fuse.modelfs"
        assert "ro" in options.split(",") and "allow_other" in options.split(",")
        with pytest.raises(OSError):
            open(mnt / "org" / "m" / "new", "w")
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=30)
    assert not os.path.ismount(mnt)
    assert wait_gone(str(env["tmp"]) + "/"), "the daemon exits after umount"


def test_mount_fuse3_bad_option_fails(env):
    """A bad modelfs option fails the mount with the daemon's one-line reason."""
    e = dict(os.environ, PATH=f"{env['bin']}:{os.environ['PATH']}")
    p = subprocess.run(["mount.fuse3", str(env["store"]), str(env["mnt"]), "-t", "fuse.modelfs",
                        "-o", f"trust={env['key']}.pub,pickle=sometimes"], env=e,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "sometimes" in p.stderr
    assert not os.path.ismount(env["mnt"])


def in_private_ns(env, script: str):
    """Runs @script with sh -e in a private mount namespace where the built
    binary is /usr/local/sbin/modelfs. Returns the CompletedProcess."""
    full = textwrap.dedent(f"""\
        set -e
        trap 'umount -l {env["mnt"]} 2>/dev/null || true' EXIT
        mount --bind {env["bin"]} /usr/local/sbin
        """) + textwrap.dedent(script)
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", full],
                          capture_output=True, text=True, timeout=120)


def check_script(env):
    """Shell lines that check the mount from inside the namespace."""
    store, mnt = env["store"], env["mnt"]
    return f"""
        findmnt -n -o FSTYPE,OPTIONS {mnt}
        for f in weights.bin config.json; do
            cmp {store}/org/m/$f {mnt}/org/m/$f && echo "same $f"
        done
        if touch {mnt}/org/m/x 2>/dev/null; then echo writable; fi
        umount {mnt}
        echo unmounted
    """


def test_mount_type_fuse_modelfs(env):
    """`mount -t fuse.modelfs STORE MNT -o trust=...,pickle=transcode,allow_other`."""
    opts = f"trust={env['key']}.pub,pickle=transcode,allow_other,cache_dir={env['cache']}"
    p = in_private_ns(env, f"""
        mount -t fuse.modelfs {env['store']} {env['mnt']} -o {opts}
        """ + check_script(env))
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout.split()
    assert out[:2][0] == "fuse.modelfs"
    assert {"ro", "allow_other"} <= set(out[1].split(","))
    assert "same" in out and "weights.bin" in out and "config.json" in out
    assert "writable" not in out and "unmounted" in out
    assert wait_gone(str(env["tmp"]) + "/")
    assert not mounts_under(env["tmp"])


def test_fstab_alternative_file(env):
    """An fstab line with the usual generic options, through `mount -T FILE MNT`."""
    fstab = env["tmp"] / "fstab"
    opts = ",".join([
        "ro", "nodev", "nosuid", "noatime", "nodiratime", "nofail", "_netdev", "noauto",
        "x-systemd.requires=network-online.target", f"trust={env['key']}.pub",
        "pickle=hide", f"cache_dir={env['cache']}", "allow_other"])
    fstab.write_text(f"# modelfs test fstab\n{env['store']}  {env['mnt']}  fuse.modelfs  "
                     f"{opts}  0  0\n")
    p = in_private_ns(env, f"mount -T {fstab} {env['mnt']}\n" + check_script(env))
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout.split()
    assert out[0] == "fuse.modelfs"
    assert {"ro", "nodev", "nosuid", "noatime"} <= set(out[1].split(","))
    assert out.count("same") == 2 and "unmounted" in out
    assert wait_gone(str(env["tmp"]) + "/")


def test_fstab_mount_by_mountpoint_and_all(env):
    """`mount -a -T FILE -O _netdev` mounts the entry (not noauto) as boot does."""
    fstab = env["tmp"] / "fstab"
    fstab.write_text(f"{env['store']} {env['mnt']} fuse.modelfs "
                     f"defaults,relatime,nofail,_netdev,trust={env['key']}.pub,"
                     f"cache_dir={env['cache']} 0 0\n")
    p = in_private_ns(env, f"mount -a -T {fstab} -O _netdev\n" + check_script(env))
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.split().count("same") == 2


@pytest.mark.skipif(not shutil.which("mount.fuse3"), reason="fuse3 not installed")
def test_no_modelfs_in_default_path_is_a_clear_error(env):
    """Without an installed binary, mount(8) fails (sh: modelfs: not found)."""
    if any(os.path.exists(os.path.join(d, "modelfs")) for d in
           "/usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin".split()):
        pytest.skip("modelfs is installed on this machine")
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "mount", "-t",
                        "fuse.modelfs", str(env["store"]), str(env["mnt"]), "-o",
                        f"trust={env['key']}.pub"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "modelfs" in p.stderr and "not found" in p.stderr
