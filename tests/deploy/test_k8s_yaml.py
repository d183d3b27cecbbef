"""docs/kubernetes: the Pod, DaemonSet and Containerfile examples stay true.

Schema: Debian 12 packages no Kubernetes schema validator (no kubeconform,
no kubeval), so the objects are checked against the Kubernetes OpenAPI
schemas that the npm package kubernetes-models ships as compiled validators
(offline; tools/bootstrap --test installs it into tests/.npm/k8s). Those check
types, required fields and enums but not unknown fields, which are found
with the type declarations the same package ships (StrictFields). The
fields that matter for the sidecar pattern are checked one by one: the
native sidecar, /dev/fuse, privileges, volumes and propagation modes, the
ready file probe, the preStop unmount, that every modelfs option used is
one `modelfs mount --help` documents, and that a mount with allow_other
leaves nothing to other users (umask=) and maps the app's user or group
(uid=, gid=; docs/mount.md, "Owners and permissions").
"""
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT, modelfs_bin, run_modelfs

K8S = ROOT / "docs" / "kubernetes"
NPM_K8S = ROOT / "tests" / ".npm" / "k8s" / "node_modules"


def load(name):
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def pod_spec(obj):
    return obj["spec"]["template"]["spec"] if obj["kind"] == "DaemonSet" else obj["spec"]


def all_containers(spec):
    return spec.get("initContainers", []) + spec["containers"]


def mount_command(c):
    """The argv of `modelfs mount ...` in container @c (may be inside sh -c)."""
    argv = c.get("command", []) + c.get("args", [])
    if argv[:2] == ["/bin/sh", "-c"]:
        words = shlex.split(argv[2])
        assert words.count("exec") == 1, "modelfs must be exec'd (PID 1 gets SIGTERM)"
        argv = words[words.index("exec") + 1:]
    assert argv[:2] == ["modelfs", "mount"], argv
    return argv


def parse_mount(argv):
    """{long option: value} and the two positional arguments of a mount argv."""
    opts, pos, i = {}, [], 2
    flags = {"-f", "--foreground"}
    while i < len(argv):
        a = argv[i]
        if a in flags:
            opts[a] = True
        elif a.startswith("-"):
            opts[a] = argv[i + 1]
            i += 1
        else:
            pos.append(a)
        i += 1
    assert len(pos) == 2, f"STORE MOUNTPOINT expected: {pos}"
    return opts, pos[0], pos[1]


def mount_of(c, volume):
    ms = [m for m in c.get("volumeMounts", []) if m["name"] == volume]
    assert len(ms) == 1, f"{c['name']}: one mount of {volume}"
    return ms[0]


def volume_for_path(c, path):
    """The volumeMount of container @c whose mountPath contains @path."""
    best = None
    for m in c.get("volumeMounts", []):
        mp = m["mountPath"].rstrip("/")
        if path == mp or path.startswith(mp + "/"):
            if best is None or len(mp) > len(best["mountPath"]):
                best = m
    assert best, f"{c['name']}: {path} is in no volume"
    return best


def check_modelfs_container(spec, c):
    """Every bullet of the sidecar pattern on the modelfs container @c."""
    vols = {v["name"]: v for v in spec["volumes"]}
    assert c["securityContext"]["privileged"] is True
    opts, store, mnt = parse_mount(mount_command(c))
    assert opts.get("-f"), "foreground: the container's main process is the daemon"
    # /dev/fuse from the node
    fuse = [m for m in c["volumeMounts"] if m["mountPath"] == "/dev/fuse"]
    assert len(fuse) == 1
    assert vols[fuse[0]["name"]]["hostPath"] == {"path": "/dev/fuse", "type": "CharDevice"}
    # the store, read-only
    sm = volume_for_path(c, store)
    assert sm["readOnly"] is True
    # the mountpoint inside a Bidirectional volume
    mm = volume_for_path(c, mnt)
    assert mm["mountPropagation"] == "Bidirectional"
    assert mm.get("readOnly") is not True
    # trust keys from a Secret
    trust = opts["--trust"]
    tm = volume_for_path(c, trust)
    assert tm["readOnly"] is True
    secret = vols[tm["name"]]["secret"]
    assert secret["secretName"]
    if "items" in secret:
        rel = os.path.relpath(trust, tm["mountPath"])
        assert rel in [it["path"] for it in secret["items"]]
    # startup probe on the ready file, preStop unmount of the mountpoint
    ready = opts["--ready-file"]
    assert c["startupProbe"]["exec"]["command"] == ["test", "-f", ready]
    assert volume_for_path(c, ready)["name"] != mm["name"], "ready file is private"
    pre = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre[0] == "fusermount3" and "-u" in pre and pre[-1] == mnt
    # a stale ready file of a killed predecessor is removed before mounting
    assert f"rm -f {ready}" in " ".join(c.get("args", []))
    if "livenessProbe" in c:
        assert c["livenessProbe"]["exec"]["command"] == ["modelfs", "status", mnt]
    return opts, mm, mnt


def check_volume_refs(spec):
    names = [c["name"] for c in all_containers(spec)]
    assert len(names) == len(set(names)), "container names are unique"
    vols = [v["name"] for v in spec["volumes"]]
    assert len(vols) == len(set(vols)), "volume names are unique"
    used = set()
    for c in all_containers(spec):
        for m in c.get("volumeMounts", []):
            assert m["name"] in vols, f"{c['name']}: volume {m['name']} is not declared"
            used.add(m["name"])
    assert used == set(vols), f"unused volumes: {set(vols) - used}"


@pytest.fixture(scope="module")
def mount_help():
    p = run_modelfs("mount", "--help", check=0)
    return p.stdout + p.stderr


# -o keywords handled by FUSE and the kernel rather than by modelfs
FUSE_O = {"allow_other", "allow_root", "ro", "rw", "nodev", "nosuid", "dev", "suid",
          "noatime", "max_background", "congestion_threshold", "splice_read",
          "no_splice_read"}


def o_options(opts):
    """{keyword: value, or True for a flag} of the mount's -o argument."""
    out = {}
    for kv in opts.get("-o", "").split(","):
        if kv:
            k, eq, v = kv.partition("=")
            out[k] = v if eq else True
    return out


def check_options_documented(opts, mount_help):
    for o in opts:
        if o.startswith("--"):
            assert re.search(re.escape(o) + r"\b", mount_help), f"{o} not in mount --help"
    block = mount_help.split("-o OPT", 1)[1].split("\n  --", 1)[0]
    for k in o_options(opts):
        assert k in FUSE_O or re.search(rf"\b{k}\b", block), f"-o {k} not in mount --help"


def run_as(spec, c):
    """(runAsUser, runAsGroup) of container @c: its own, else the pod's."""
    pod, own = spec.get("securityContext", {}), c.get("securityContext", {})
    return own.get("runAsUser", pod.get("runAsUser")), own.get("runAsGroup", pod.get("runAsGroup"))


def check_access(opts, app_spec, app):
    """With allow_other every user of the node reaches the mount: others must
    get nothing (umask= clears every "other" bit) and the app, not root,
    must be the owner or the group the mount shows (uid=, gid=)."""
    o = o_options(opts)
    if "allow_other" not in o:
        return
    assert "umask" in o and int(o["umask"], 8) & 0o007 == 0o007, \
        "allow_other without umask=..7: others read what the store lets others read"
    uid, gid = run_as(app_spec, app)
    assert uid not in (None, 0), f"{app['name']}: runAsUser (a non-root uid) expected"
    assert ("uid" in o and int(o["uid"]) == uid) or ("gid" in o and int(o["gid"]) == gid), \
        f"{app['name']} (uid {uid}, gid {gid}) is neither the uid= nor the gid= of the mount"


def test_check_access_rejects():
    """The access check does see a mount open to others, or to the wrong app."""
    app = {"name": "a", "securityContext": {"runAsUser": 1000, "runAsGroup": 1000}}
    check_access({"-o": "allow_other,uid=1000,umask=077"}, {}, app)
    check_access({"-o": "allow_other,gid=1000,umask=0027"}, {}, app)
    for o in ("allow_other", "allow_other,uid=1000,umask=0022", "allow_other,uid=7,umask=0077",
              "allow_other,umask=0077"):
        with pytest.raises(AssertionError):
            check_access({"-o": o}, {}, app)
    with pytest.raises(AssertionError):
        check_access({"-o": "allow_other,uid=0,umask=0077"}, {}, {"name": "root"})


def test_pod_native_sidecar(mount_help):
    (pod,) = load("pod.yaml")
    assert pod["kind"] == "Pod"
    spec = pod["spec"]
    check_volume_refs(spec)
    (side,) = [c for c in spec["initContainers"] if c["name"] == "modelfs"]
    assert side["restartPolicy"] == "Always", "a native sidecar"
    opts, mm, mnt = check_modelfs_container(spec, side)
    check_options_documented(opts, mount_help)
    assert "emptyDir" in {v["name"]: v for v in spec["volumes"]}[mm["name"]]
    # the app reads the same volume, HostToContainer, read-only, at the same
    # path, and is pointed at a model under the mountpoint
    (app,) = spec["containers"]
    am = mount_of(app, mm["name"])
    assert am["mountPropagation"] == "HostToContainer"
    assert am["readOnly"] is True
    assert am["mountPath"] == mm["mountPath"]
    model = app["args"][app["args"].index("--model") + 1]
    assert model.startswith(mnt + "/")
    assert "privileged" not in app.get("securityContext", {})
    check_access(opts, spec, app)


def test_daemonset_and_consumer(mount_help):
    ds, consumer = load("daemonset.yaml")
    assert (ds["kind"], consumer["kind"]) == ("DaemonSet", "Pod")
    spec = pod_spec(ds)
    check_volume_refs(spec)
    assert ds["spec"]["selector"]["matchLabels"].items() <= \
        ds["spec"]["template"]["metadata"]["labels"].items()
    (c,) = spec["containers"]
    opts, mm, mnt = check_modelfs_container(spec, c)
    check_options_documented(opts, mount_help)
    node_dir = {v["name"]: v for v in spec["volumes"]}[mm["name"]]["hostPath"]["path"]
    # the consumer mounts the same node folder, HostToContainer, read-only
    cspec = consumer["spec"]
    check_volume_refs(cspec)
    (app,) = cspec["containers"]
    (vol,) = cspec["volumes"]
    assert vol["hostPath"]["path"] == node_dir
    am = mount_of(app, vol["name"])
    assert am["mountPropagation"] == "HostToContainer" and am["readOnly"] is True
    check_access(opts, cspec, app)
    # the model path in the app maps to a path under the node mountpoint
    model = app["args"][app["args"].index("--model") + 1]
    on_node = node_dir + model[len(am["mountPath"]):]
    host_mnt = node_dir + mnt[len(mm["mountPath"]):]
    assert on_node.startswith(host_mnt + "/")


def test_schema_validation():
    """Every object validates against the Kubernetes OpenAPI schemas."""
    node = shutil.which("node")
    if not node or not (NPM_K8S / "kubernetes-models").is_dir():
        pytest.skip("kubernetes-models not installed (tools/bootstrap --test installs it with npm)")
    docs = load("pod.yaml") + load("daemonset.yaml")
    p = subprocess.run([node, str(pathlib.Path(__file__).with_name("validate_k8s.mjs")),
                        str(NPM_K8S)], input=json.dumps(docs), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("\nok ") + p.stdout.startswith("ok ") == len(docs), p.stdout
    # and the validator does reject a wrong propagation mode
    bad = json.loads(json.dumps(docs[0]))
    bad["spec"]["containers"][0]["volumeMounts"][0]["mountPropagation"] = "Sideways"
    p = subprocess.run([node, str(pathlib.Path(__file__).with_name("validate_k8s.mjs")),
                        str(NPM_K8S)], input=json.dumps([bad]), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 1 and "mountPropagation" in p.stdout, p.stdout + p.stderr


class StrictFields:
    """Rejects unknown fields, which the compiled schema validators accept.

    The allowed fields of each Kubernetes type come from the TypeScript
    declarations kubernetes-models ships next to its validators: each
    `X.d.ts` declares one interface (`"field"?: Type;`) and imports the types
    of its fields from other files.
    """

    IMPORT = re.compile(r'import \{ (\w+) \} from "([^"]+)";')
    FIELD = re.compile(r'^    "([^"]+)"\??: (.+?);?$', re.M)

    def __init__(self, modules: pathlib.Path):
        self.modules = modules
        self.cache = {}

    def resolve(self, spec: str, here: pathlib.Path) -> pathlib.Path:
        if spec.startswith("."):
            p = (here.parent / spec).resolve()
        else:
            p = self.modules / spec
        p = p.with_suffix("") if p.suffix == ".js" else p
        return p.parent / (p.name + ".d.ts")

    def fields(self, dts: pathlib.Path):
        """{field: declaration file of its type or None} of the interface in @dts."""
        if dts not in self.cache:
            text = dts.read_text()
            imports = {n: self.resolve(spec, dts) for n, spec in self.IMPORT.findall(text)}
            m = re.search(r"^export interface \w+(?: extends [\w, ]+)? \{\n(.*?)^\}", text,
                          re.M | re.S)
            out = None
            if m:
                body = re.sub(r"/\*\*.*?\*/", "", m.group(1), flags=re.S)
                out = {}
                for name, typ in self.FIELD.findall(body):
                    refs = [imports[r] for r in re.findall(r"\b(I\w+)\b", typ) if r in imports]
                    out[name] = refs[0] if refs and not typ.startswith("{") else None
                if "extends TypeMeta" in m.group(0):
                    out.setdefault("apiVersion", None)
                    out.setdefault("kind", None)
            self.cache[dts] = out
        return self.cache[dts]

    def check(self, obj, dts: pathlib.Path, where="") -> list:
        fields = self.fields(dts)
        if fields is None or not isinstance(obj, dict):
            return []
        errors = []
        for k, v in obj.items():
            if k not in fields:
                errors.append(f"{where}.{k}: unknown field")
                continue
            sub = fields[k]
            if sub is None or not sub.exists():
                continue
            for i, item in enumerate(v if isinstance(v, list) else [v]):
                errors += self.check(item, sub, f"{where}.{k}" + (f"[{i}]" if
                                                                 isinstance(v, list) else ""))
        return errors


def model_dts(obj) -> pathlib.Path:
    return NPM_K8S / "kubernetes-models" / obj["apiVersion"] / (obj["kind"] + ".d.ts")


def test_no_unknown_fields():
    if not (NPM_K8S / "kubernetes-models").is_dir():
        pytest.skip("kubernetes-models not installed (tools/bootstrap --test installs it with npm)")
    strict = StrictFields(NPM_K8S)
    for obj in load("pod.yaml") + load("daemonset.yaml"):
        assert strict.check(obj, model_dts(obj), obj["kind"]) == []
    # it does see a misspelt field, deep inside
    (pod,) = load("pod.yaml")
    pod["spec"]["initContainers"][0]["volumeMounts"][2]["mountPropogation"] = "Bidirectional"
    pod["spec"]["initContainers"][0]["startupProbe"]["periodSecond"] = 1
    errs = strict.check(pod, model_dts(pod), "Pod")
    assert sorted(errs) == [
        "Pod.spec.initContainers[0].startupProbe.periodSecond: unknown field",
        "Pod.spec.initContainers[0].volumeMounts[2].mountPropogation: unknown field"], errs


# --------------------------------------------------------------------------
# Containerfile
# --------------------------------------------------------------------------

# meson dependency name -> (Debian -dev package, Debian runtime package)
DEB = {
    "fuse3": ("libfuse3-dev", "libfuse3-3"),
    "libcrypto": ("libssl-dev", "libssl3"),
    "libzstd": ("libzstd-dev", "libzstd1"),
    "libcjson": ("libcjson-dev", "libcjson1"),
    "zlib": ("zlib1g-dev", "zlib1g"),
    "libcurl": ("libcurl4-openssl-dev", "libcurl4"),
}
# not libraries: fusermount3 for preStop and umount
RUNTIME_TOOLS = {"fuse3"}


def containerfile_stages():
    """[(FROM line, [apt-get install packages])] per stage."""
    text = (K8S / "Containerfile").read_text().replace("\\\n", " ")
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("FROM "):
            stages.append((line, []))
        elif line.startswith("RUN ") and "apt-get install" in line:
            cmd = line.split("apt-get install", 1)[1].split("&&")[0]
            stages[-1][1].extend(w for w in cmd.split() if not w.startswith("-"))
    return stages


def meson_deps():
    """The external dependencies of every meson.build of the sources."""
    text = "".join(p.read_text() for p in ROOT.rglob("meson.build")
                   if not any(part.startswith("build") for part in p.relative_to(ROOT).parts))
    names = set(re.findall(r"dependency\('([^']+)'", text))
    return names - {"threads"}  # threads is in libc6


def test_containerfile_packages_match_meson():
    stages = containerfile_stages()
    assert len(stages) == 2
    (build_from, build_pkgs), (run_from, run_pkgs) = stages
    assert "debian:bookworm-slim" in build_from and build_from.endswith(" AS build")
    assert run_from == "FROM debian:bookworm-slim"
    deps = meson_deps()
    assert deps == set(DEB), f"meson dependencies changed: {deps}; update DEB and Containerfile"
    assert {DEB[d][0] for d in deps} <= set(build_pkgs)
    assert "meson" in build_pkgs and "pkg-config" in build_pkgs
    assert set(run_pkgs) == {DEB[d][1] for d in deps} | RUNTIME_TOOLS, run_pkgs
    assert not any(p.endswith("-dev") for p in run_pkgs)


def depends_closure(pkgs: set) -> set:
    """@pkgs and every package they depend on (Depends, Pre-Depends; the first
    installed alternative), as apt would install them, from dpkg's database."""
    seen, todo = set(), list(pkgs)
    while todo:
        pkg = todo.pop()
        if pkg in seen:
            continue
        seen.add(pkg)
        q = subprocess.run(["dpkg-query", "-W", "-f=${Pre-Depends}, ${Depends}", pkg],
                           capture_output=True, text=True)
        if q.returncode:
            continue  # not installed here: nothing more known
        for group in q.stdout.split(","):
            alts = [a.split("(")[0].split(":")[0].strip() for a in group.split("|")]
            alts = [a for a in alts if a]
            if alts:
                todo.append(alts[0])
    return seen


def test_runtime_packages_cover_the_binary():
    """Each shared library the built binary loads comes from a runtime package."""
    if not shutil.which("dpkg"):
        pytest.skip("not a Debian system")
    p = subprocess.run(["ldd", modelfs_bin()], capture_output=True, text=True, check=True)
    libs = re.findall(r"=> (/\S+)", p.stdout)
    assert libs
    if any(re.search(r"/lib(asan|ubsan|tsan|lsan)\.", lib) for lib in libs):
        pytest.skip("sanitizer build: its runtime libraries are not shipped")
    _, run_pkgs = containerfile_stages()[1]
    # libc6 is in every Debian image; apt installs each package's dependencies
    allowed = depends_closure(set(run_pkgs) | {"libc6"})
    for lib in libs:
        q = subprocess.run(["dpkg", "-S", os.path.realpath(lib)], capture_output=True, text=True)
        if q.returncode:
            q = subprocess.run(["dpkg", "-S", lib], capture_output=True, text=True)
        assert q.returncode == 0, f"{lib}: no Debian package owns it"
        pkg = q.stdout.split(":")[0]
        assert pkg in allowed, f"{lib} comes from {pkg}, not in the runtime stage"


def test_containerfile_build_commands_match_the_build():
    """The build stage's ninja target and binary path exist in a real build."""
    text = (K8S / "Containerfile").read_text().replace("\\\n", " ")
    m = re.search(r"meson setup (\S+) .*?ninja -C \1 (\S+) .*?install -D -s -m 0755 \1/(\S+) ",
                  text)
    assert m, "build stage changed"
    target, binary = m.group(2), m.group(3)
    assert target == binary == "tools/modelfs"
    build = pathlib.Path(os.environ.get("MODELFS_BUILD",
                                        pathlib.Path(modelfs_bin()).resolve().parent.parent))
    p = subprocess.run(["ninja", "-C", str(build), "-t", "query", target], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert (build / binary).is_file()
    # what the runtime stage copies is what the ENTRYPOINT runs
    assert "/out/usr/bin/modelfs" in text and 'ENTRYPOINT ["modelfs"]' in text
