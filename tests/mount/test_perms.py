"""modelfs mount -o allow_other: owners and modes (issue #11 section 3; run as root).

The attack: every Kubernetes example mounts with allow_other, which lets
every local user into the mount. When the mount showed every file 0444 and
every folder 0555, a root-only 0600 file in a 0700 store folder, and
status.json, the metrics and the xattrs, were read by any unprivileged
user. Now files and folders show the store's owner, group and mode without
write bits and the kernel enforces them (default_permissions);
-o uid=,gid=,umask= map what is shown; the control folder is the mount
user's unless --control-access=all; the daemon checks read permission
itself for getxattr and listxattr (the kernel does not check listxattr).

Oracle: the same operations by the same unprivileged user directly on the
store. A second real user is created for this module (useradd -M -r) and
removed at the end even on failure; probes run as it through
`setpriv --reuid --regid --clear-groups`. Every mount is unmounted on exit
(test_mount.Mount). Stores live in a world-searchable temp folder: pytest's
own (/tmp/pytest-of-root) is 0700.
"""
import hashlib
import json
import os
import pathlib
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections import namedtuple

import pytest

from conftest import modelfs_bin, run_modelfs
from test_reload import sighup
from test_mount import Mount, keys, rnd, seal, write  # noqa: F401 (keys: fixture)
from test_transcode_view import torch_save

User = namedtuple("User", "name uid gid")
NOBODY = User("nobody", 65534, 65534)
ACCES = {"err": "EACCES"}
HIDDEN_IN_MODEL = {"model.sig", ".modelfs"}  # store names the mount never shows

# One process per batch: [(op, path, *arg)] -> [{"ok": value} | {"err": "EACCES"}].
PROBE = r"""
import errno, json, os, sys
out = []
for op, path, *arg in json.loads(sys.argv[1]):
    try:
        if op == "stat":
            st = os.stat(path)
            r = [st.st_uid, st.st_gid, st.st_mode & 0o7777]
        elif op == "read":
            with open(path, "rb") as f:
                r = f.read().hex()
        elif op == "list":
            r = sorted(os.listdir(path))
        elif op == "getxattr":
            r = os.getxattr(path, arg[0]).decode()
        elif op == "listxattr":
            r = sorted(os.listxattr(path))
        out.append({"ok": r})
    except OSError as e:
        out.append({"err": errno.errorcode[e.errno]})
print(json.dumps(out))
"""


def as_user(user, ops, gid=None, groups=None):
    """Runs the probes @ops as @user (primary group @gid or the user's own;
    supplementary @groups, else none). Returns one result per probe."""
    cmd = ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid if gid is None else gid}"]
    cmd += [f"--groups={','.join(map(str, groups))}"] if groups else ["--clear-groups"]
    batch = json.dumps([[op, str(path), *arg] for op, path, *arg in ops])
    p = subprocess.run(cmd + ["/usr/bin/python3", "-I", "-c", PROBE, batch], cwd="/",
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def one(user, op, path, *arg, **kw):
    return as_user(user, [(op, path, *arg)], **kw)[0]


@pytest.fixture(scope="module")
def other():
    """A real system user for this module, removed at the end even on failure."""
    name = "mfsperm" + secrets.token_hex(4)
    try:
        subprocess.run(["useradd", "-M", "-r", "-U", "-d", "/nonexistent",
                        "-s", "/usr/sbin/nologin", name],
                       check=True, capture_output=True, timeout=60)
        pw = pwd.getpwnam(name)
        yield User(name, pw.pw_uid, pw.pw_gid)
    finally:
        subprocess.run(["userdel", name], capture_output=True, timeout=60)
        subprocess.run(["groupdel", name], capture_output=True, timeout=60)  # if still there


@pytest.fixture
def base():
    """A world-searchable temp folder (removed at the end) for store and mountpoint."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="modelfs-perms-", dir="/tmp"))
    try:
        d.chmod(0o755)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# Files: store path -> mode. Folders: store path -> mode. Sealed as models
# pub/m, priv/m, mixed/m and hidden/m; "grp" marks what gets the other
# user's group.
FILES = {
    "pub/m/weights.bin": 0o644,
    "pub/m/config.json": 0o644,
    "priv/m/secret.bin": 0o600,
    "mixed/m/open.bin": 0o644,
    "mixed/m/closed.bin": 0o600,
    "mixed/m/shared.bin": 0o640,
    "mixed/m/grp/deep.bin": 0o640,
    "hidden/m/x.bin": 0o644,
}
DIRS = {
    "": 0o755,
    "pub": 0o755, "pub/m": 0o755,
    "priv": 0o755, "priv/m": 0o700,
    "mixed": 0o755, "mixed/m": 0o755, "mixed/m/grp": 0o750,
    "hidden": 0o700, "hidden/m": 0o755,
}
MODELS = ["pub/m", "priv/m", "mixed/m", "hidden/m"]


def make_store(base, keys, other):
    """The store above, sealed, then given its owners and modes. Returns (store, bytes by path)."""
    store = base / "store"
    data = {}
    for rel in FILES:
        data[rel] = b'{"a": 1}\n' if rel.endswith(".json") else rnd(70000)
        write(store / rel, data[rel])
    for model in MODELS:
        seal(store / model, keys["trusted"])
    for rel, mode in FILES.items():
        (store / rel).chmod(mode)
    for rel, mode in DIRS.items():
        (store / rel).chmod(mode)
    for rel in ("mixed/m/grp", "mixed/m/grp/deep.bin", "mixed/m/shared.bin"):
        os.chown(store / rel, 0, other.gid)
    return store, data


def pub_key(keys):
    return f"{keys['trusted']}.pub"


def shown(store_stat):
    """What the mount must show for a store stat result: same owner, no write bits."""
    if "err" in store_stat:
        return store_stat
    uid, gid, mode = store_stat["ok"]
    return {"ok": [uid, gid, mode & 0o555]}


def mounted_listing(store_list):
    if "err" in store_list:
        return store_list
    return {"ok": [n for n in store_list["ok"] if n not in HIDDEN_IN_MODEL]}


# --------------------------------------------------------------------------
# the mount shows and enforces the store's owners and modes
# --------------------------------------------------------------------------

def test_mount_matches_store(base, keys, other):
    """The attack, replayed: whatever the unprivileged user can or cannot do
    on the store itself, it can or cannot do through the mount (before the
    fix the private file showed 0444 and read fine through the mount)."""
    store, data = make_store(base, keys, other)
    with Mount(store, base / "mnt", pub_key(keys), "-o", "allow_other") as m:
        for user in (other, NOBODY):
            for op, names in (("stat", list(FILES) + list(DIRS)), ("read", FILES),
                              ("list", DIRS)):
                on_store = as_user(user, [(op, store / n) for n in names])
                on_mount = as_user(user, [(op, m.mnt / n) for n in names])
                want = {"stat": shown, "read": lambda r: r, "list": mounted_listing}[op]
                for n, s, got in zip(names, on_store, on_mount):
                    assert got == want(s), (user.name, op, n, s, got)
        # the baseline: the private file is denied on the store ...
        secret = "priv/m/secret.bin"
        assert one(other, "read", store / secret) == ACCES
        # ... and now through the mount too, where it used to be 0444
        assert one(other, "read", m.mnt / secret) == ACCES
        assert one(other, "stat", m.mnt / secret) == ACCES
        assert one(other, "list", m.mnt / "priv" / "m") == ACCES
        assert os.stat(m.mnt / secret).st_mode & 0o777 == 0o400
        # what the store lets everyone read is served, bytes verified
        got = one(other, "read", m.mnt / "pub/m/weights.bin")
        assert bytes.fromhex(got["ok"]) == data["pub/m/weights.bin"]
        # the group class: the other user's own group reads the 0640 file
        got = one(other, "read", m.mnt / "mixed/m/grp/deep.bin")
        assert bytes.fromhex(got["ok"]) == data["mixed/m/grp/deep.bin"]
        # root, the mount's user, still reads everything
        for rel, b in data.items():
            assert (m.mnt / rel).read_bytes() == b, rel
        assert m.status()["counters"]["verify_failures"] == 0


def test_default_permissions_in_effect(base, keys, other):
    """The kernel, not only the daemon, checks permissions: the mount's
    super options carry default_permissions (daemon.c always passes it)."""
    store, _ = make_store(base, keys, other)
    with Mount(store, base / "mnt", pub_key(keys), "-o", "allow_other") as m:
        with open("/proc/self/mountinfo") as f:
            (line,) = [ln for ln in f if ln.split()[4] == str(m.mnt)]
        super_opts = line.split(" - ")[1].split()[2].split(",")
        assert "default_permissions" in super_opts and "allow_other" in super_opts
        assert "ro" in super_opts


def test_xattrs_follow_file_permissions(base, keys, other):
    """user.modelfs.* never shows past the file's mode. The kernel checks
    read permission for getxattr, but not for listxattr: that EACCES comes
    from the daemon's own check (fuse_req_ctx, groups from /proc)."""
    store, data = make_store(base, keys, other)
    with Mount(store, base / "mnt", pub_key(keys), "-o", "allow_other") as m:
        mnt = m.mnt
        sha = hashlib.sha256(data["mixed/m/open.bin"]).hexdigest()
        assert one(other, "getxattr", mnt / "mixed/m/open.bin", "user.modelfs.sha256") == \
            {"ok": sha}
        assert "user.modelfs.sha256" in one(other, "listxattr", mnt / "mixed/m/open.bin")["ok"]
        # a 0600 file in a 0755 folder: visible, but neither bytes nor attributes
        closed = mnt / "mixed/m/closed.bin"
        assert one(other, "stat", closed) == {"ok": [0, 0, 0o400]}
        for op, *arg in (("read",), ("getxattr", "user.modelfs.sha256"), ("listxattr",)):
            assert one(other, op, closed, *arg) == ACCES, op
        # names without a value anywhere stay ENODATA: `ls -l` asks for them
        for name in ("security.selinux", "system.posix_acl_access", "security.capability"):
            assert one(other, "getxattr", closed, name) == {"err": "ENODATA"}, name
        p = subprocess.run(["setpriv", f"--reuid={other.uid}", f"--regid={other.gid}",
                            "--clear-groups", "ls", "-l", str(mnt / "mixed/m")],
                           capture_output=True, text=True, timeout=60, cwd="/")
        assert p.returncode == 0 and p.stderr == "" and "closed.bin" in p.stdout, p.stderr
        # a 0700 model folder: its own attributes (signer, BOM) too
        for op, *arg in (("getxattr", "user.modelfs.signer"), ("listxattr",)):
            assert one(other, op, mnt / "priv/m", *arg) == ACCES, op
        assert one(other, "getxattr", mnt / "priv/m/secret.bin", "user.modelfs.sha256") == ACCES
        # root reads them all
        assert os.getxattr(closed, "user.modelfs.sha256").decode() == \
            hashlib.sha256(data["mixed/m/closed.bin"]).hexdigest()
        assert os.getxattr(mnt / "priv/m", "user.modelfs.signer")


def test_xattrs_group_classes(base, keys, other):
    """Group read (0640, the other user's group): as the primary group, as a
    supplementary group (the daemon reads those from /proc), and denied to
    a caller in neither. shared.bin is in a 0755 folder, so its listxattr
    EACCES can only come from the daemon's check."""
    store, _ = make_store(base, keys, other)
    with Mount(store, base / "mnt", pub_key(keys), "-o", "allow_other") as m:
        ops = []
        for rel in ("mixed/m/grp/deep.bin", "mixed/m/shared.bin"):
            f = m.mnt / rel
            ops += [("read", f), ("getxattr", f, "user.modelfs.size"), ("listxattr", f)]
        for kw in ({}, {"gid": NOBODY.gid, "groups": [other.gid]}):
            res = as_user(other, ops, **kw)
            assert all("ok" in r for r in res), (kw, res)
        assert as_user(other, ops, gid=NOBODY.gid) == [ACCES] * len(ops)
        assert as_user(other, ops, gid=NOBODY.gid, groups=[NOBODY.gid]) == [ACCES] * len(ops)


# --------------------------------------------------------------------------
# the control folder
# --------------------------------------------------------------------------

CTL_FILES = ["status.json", "metrics.prom", "bom/pub/m.cdx.json"]


def status_as(user, mnt):
    """`modelfs status MNT` as @user, or None if @user cannot run the binary."""
    cmd = ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups",
           modelfs_bin(), "status", str(mnt)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/")
    return None if p.returncode in (126, 127) else p


def test_control_folder_owner_only(base, keys, other):
    store, _ = make_store(base, keys, other)
    with Mount(store, base / "mnt", pub_key(keys), "-o", "allow_other") as m:
        ctl = m.mnt / ".modelfs"
        assert one(other, "stat", ctl) == {"ok": [0, 0, 0o500]}
        assert one(other, "list", ctl) == ACCES
        for name in CTL_FILES:
            assert one(other, "read", ctl / name) == ACCES, name
        assert os.stat(ctl / "status.json").st_mode & 0o777 == 0o400
        # its owner (root here) reads it as before
        assert m.status()["models"]
        assert (ctl / "metrics.prom").read_text().startswith("#")
        assert run_modelfs("status", m.mnt).returncode == 0
        p = status_as(other, m.mnt)
        if p is not None:  # a probe run as another user: an I/O error, not "healthy"
            assert p.returncode == 2 and "Permission denied" in p.stderr, p.stderr


@pytest.mark.parametrize("opt", [["--control-access", "all"], ["-o", "control_access=all"]])
def test_control_folder_widened(base, keys, other, opt):
    store, _ = make_store(base, keys, other)
    with Mount(store, base / "mnt", pub_key(keys), "-o", "allow_other", *opt) as m:
        ctl = m.mnt / ".modelfs"
        assert one(other, "stat", ctl) == {"ok": [0, 0, 0o555]}
        assert one(other, "stat", ctl / "status.json") == {"ok": [0, 0, 0o444]}
        status = json.loads(bytes.fromhex(one(other, "read", ctl / "status.json")["ok"]))
        assert sorted(mo["path"] for mo in status["models"]) == sorted(MODELS)
        for name in CTL_FILES:
            assert "ok" in one(other, "read", ctl / name), name
        p = status_as(other, m.mnt)
        assert p is None or p.returncode == 0, p.stderr
        # a BOM is never more visible than its model folder (priv/m is 0700)
        bom = ctl / "bom/priv/m.cdx.json"
        assert one(other, "stat", bom) == {"ok": [0, 0, 0o400]}
        assert one(other, "read", bom) == ACCES
        assert json.loads(bom.read_text())["bomFormat"] == "CycloneDX"


# --------------------------------------------------------------------------
# -o uid=,gid=,umask=
# --------------------------------------------------------------------------

def test_uid_gid_umask_mapping(base, keys, other):
    """uid=/gid= make the app's user the owner of everything; umask=0027
    leaves others nothing. The kernel enforces what is shown."""
    store, data = make_store(base, keys, other)
    opts = f"allow_other,uid={other.uid},gid={other.gid},umask=0027"
    with Mount(store, base / "mnt", pub_key(keys), "-o", opts) as m:
        for rel, mode in list(FILES.items()) + list(DIRS.items()):
            st = os.stat(m.mnt / rel)
            assert (st.st_uid, st.st_gid) == (other.uid, other.gid), rel
            assert st.st_mode & 0o7777 == mode & 0o555 & ~0o027, rel
        # the mapped owner reads what the store kept from everyone else
        for rel in ("priv/m/secret.bin", "hidden/m/x.bin", "mixed/m/closed.bin"):
            got = one(other, "read", m.mnt / rel)
            assert bytes.fromhex(got["ok"]) == data[rel], rel
        assert "ok" in one(other, "getxattr", m.mnt / "priv/m", "user.modelfs.signer")
        # others (nobody) get nothing, not even world-readable store files
        for rel in ("pub/m/weights.bin", "priv/m/secret.bin"):
            assert one(NOBODY, "read", m.mnt / rel) == ACCES, rel
        assert one(NOBODY, "list", m.mnt) == ACCES
        # the control folder stays the mount user's
        assert one(other, "read", m.mnt / ".modelfs/status.json") == ACCES


def test_umask_0077_uid_root_denies(base, keys, other):
    store, data = make_store(base, keys, other)
    opts = "allow_other,uid=0,gid=0,umask=0077"
    with Mount(store, base / "mnt", pub_key(keys), "-o", opts) as m:
        assert os.stat(m.mnt / "pub/m/weights.bin").st_mode & 0o777 == 0o400
        assert os.stat(m.mnt / "pub/m").st_mode & 0o777 == 0o500
        for op, rel in (("list", ""), ("stat", "pub/m"), ("read", "pub/m/weights.bin"),
                        ("getxattr", "pub/m")):
            arg = ["user.modelfs.signer"] if op == "getxattr" else []
            assert one(other, op, m.mnt / rel, *arg) == ACCES, (op, rel)
        assert (m.mnt / "pub/m/weights.bin").read_bytes() == data["pub/m/weights.bin"]


def test_mount_helper_style_options(base, keys, other):
    """`modelfs STORE MNT -o trust=KEY,allow_other,uid=N,...` (what mount(8)
    and fstab lines run through mount.fuse3) takes the same options."""
    store, data = make_store(base, keys, other)
    mnt = base / "mnt"
    m = Mount(store, mnt, pub_key(keys))
    m.args = [modelfs_bin(), str(store), str(mnt), "-f", "-o",
              f"trust={pub_key(keys)},cache_dir={base / 'cache'},allow_other,"
              f"uid={other.uid},gid={other.gid},umask=077,control_access=all"]
    with m:
        got = one(other, "read", mnt / "priv/m/secret.bin")
        assert bytes.fromhex(got["ok"]) == data["priv/m/secret.bin"]
        assert one(NOBODY, "read", mnt / "pub/m/weights.bin") == ACCES
        # control_access=all, but umask=077 applies to the control folder too
        assert os.stat(mnt / ".modelfs").st_mode & 0o777 == 0o500


@pytest.mark.parametrize("args", [
    ["--umask", "0800"], ["--umask", "-1"], ["-o", "umask=8"], ["--uid", "abc"],
    ["-o", "gid=-3"], ["-o", "uid=4294967295"], ["--control-access", "group"],
    ["-o", "control_access="],
])
def test_bad_permission_options(base, keys, args):
    (base / "mnt").mkdir()
    p = run_modelfs("mount", "-f", "--trust", pub_key(keys), *args, base, base / "mnt")
    assert p.returncode == 2, p.stderr
    assert "mount:" in p.stderr


# --------------------------------------------------------------------------
# derived nodes and live reload
# --------------------------------------------------------------------------

def test_reload_picks_up_chmod(base, keys, other):
    """The mount shows the modes of the last (re)scan; a reload re-reads
    them and the kernel forgets what it cached (a day otherwise)."""
    store, data = make_store(base, keys, other)
    w = "pub/m/weights.bin"
    with Mount(store, base / "mnt", pub_key(keys), "-o", "allow_other") as m:
        assert "ok" in one(other, "read", m.mnt / w)
        assert one(other, "list", m.mnt / "hidden") == ACCES
        (store / w).chmod(0o600)
        (store / "hidden").chmod(0o755)
        (store / "priv/m").chmod(0o755)
        # not watched: what the last scan saw still shows
        assert one(other, "stat", m.mnt / w)["ok"][2] == 0o444
        sighup(m, timeout=20)
        assert one(other, "stat", m.mnt / w) == {"ok": [0, 0, 0o400]}
        assert one(other, "read", m.mnt / w) == ACCES
        assert one(other, "list", m.mnt / "hidden") == {"ok": ["m"]}
        assert one(other, "list", m.mnt / "priv/m") == {"ok": ["secret.bin"]}
        assert one(other, "read", m.mnt / "priv/m/secret.bin") == ACCES  # still 0600
        # ownership too
        os.chown(store / w, other.uid, 0)
        sighup(m, timeout=20)
        got = one(other, "read", m.mnt / w)
        assert bytes.fromhex(got["ok"]) == data[w]
        assert "reload-failed" not in m.log()


def test_view_never_more_visible_than_source(base, keys, other):
    """A transcoded view (model.safetensors from a private pytorch_model.bin)
    shows its source's owner and mode, and follows it at a reload."""
    store = base / "store"
    model = store / "tx" / "m"
    torch_save(model / "pytorch_model.bin", "sd = {'w': torch.ones(4, 4)}")
    seal(model, keys["trusted"])
    (model / "pytorch_model.bin").chmod(0o600)
    for d in (store, store / "tx", model):
        d.chmod(0o755)
    with Mount(store, base / "mnt", pub_key(keys), "-o", "allow_other") as m:
        view = m.mnt / "tx/m/model.safetensors"
        assert sorted(os.listdir(m.mnt / "tx/m")) == ["model.safetensors"]
        assert one(other, "stat", view) == {"ok": [0, 0, 0o400]}
        assert one(other, "read", view) == ACCES
        assert one(other, "getxattr", view, "user.modelfs.format") == ACCES
        good = view.read_bytes()
        (model / "pytorch_model.bin").chmod(0o644)
        sighup(m, timeout=20)
        assert one(other, "stat", view) == {"ok": [0, 0, 0o444]}
        assert bytes.fromhex(one(other, "read", view)["ok"]) == good


def test_packed_file_takes_packed_copy_mode(base, keys, other):
    """A file stored only as its packed copy shows the copy's owner and mode."""
    store = base / "store"
    model = store / "pk" / "m"
    data = b"\0" * 300000
    write(model / "zeros.bin", data)
    seal(model, keys["trusted"])
    run_modelfs("pack", "--remove-original", "-q", model, check=0)
    (packed,) = (model / ".modelfs" / "packed").iterdir()
    packed.chmod(0o600)
    for d in (store, store / "pk", model):
        d.chmod(0o755)
    with Mount(store, base / "mnt", pub_key(keys), "-o", "allow_other") as m:
        f = m.mnt / "pk/m/zeros.bin"
        assert one(other, "stat", f) == {"ok": [0, 0, 0o400]}
        assert one(other, "read", f) == ACCES
        packed.chmod(0o644)
        sighup(m, timeout=20)
        assert bytes.fromhex(one(other, "read", f)["ok"]) == data
        assert os.getxattr(f, "user.modelfs.stored_as") == b"packed"
