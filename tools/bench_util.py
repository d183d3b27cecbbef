"""bench_util - mounts, timers and readers shared by tools/bench (not a test).

Everything here runs under Debian's /usr/bin/python3 (numpy is needed by the
loader). Mount helpers always unmount on exit, also after an exception, so a
failed benchmark never leaves a FUSE mount or a daemon behind.
"""
import json
import mmap
import os
import pathlib
import statistics
import struct
import subprocess
import threading
import time

MiB = 1 << 20
PAGE = 4096


def sh(*args, **kw):
    """Runs a command, raising with its stderr when it fails."""
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))}: exit {p.returncode}: "
                           f"{p.stderr.strip()[-500:]}")
    return p


def have(cmd) -> bool:
    return any(os.access(os.path.join(d, cmd), os.X_OK)
               for d in os.environ.get("PATH", "/usr/bin:/bin").split(":"))


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def is_mounted(p) -> bool:
    p = os.path.realpath(p)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == p for line in f)


def unmount(p):
    """Unmounts @p if mounted: fusermount3 -u, then lazily as a last resort."""
    for cmd in (["fusermount3", "-u", str(p)], ["fusermount3", "-uz", str(p)]):
        if not is_mounted(p):
            return
        subprocess.run(cmd, capture_output=True)
        for _ in range(100):
            if not is_mounted(p):
                return
            time.sleep(0.02)


def proc_status(pid, key) -> int:
    """A /proc/PID/status field in KiB (VmRSS, VmHWM), 0 if gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_cpu_s(pid) -> float:
    """User + system CPU seconds used by a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Daemon:
    """A FUSE daemon in the foreground; unmounted and reaped on exit."""

    cmd = []
    ready_path = None
    env = None  # the daemon's environment (None: ours)

    def __init__(self, mnt):
        self.mnt = pathlib.Path(mnt)
        self.proc = None
        self.mount_s = None

    def _ready(self) -> bool:
        if self.ready_path is not None:
            try:
                os.stat(self.ready_path)
                return True
            except OSError:
                return False
        return is_mounted(self.mnt)

    def __enter__(self):
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([str(c) for c in self.cmd], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=self.env)
        end = t0 + 120
        while not self._ready():
            if self.proc.poll() is not None or time.perf_counter() > end:
                err = self.proc.stderr.read().decode(errors="replace") if \
                    self.proc.poll() is not None else "timeout"
                self.__exit__()
                raise RuntimeError(f"{self.cmd[0]}: mount at {self.mnt} did not come up: "
                                   f"{err.strip()[-400:]}")
            time.sleep(0.001)
        self.mount_s = time.perf_counter() - t0
        return self

    @property
    def pid(self):
        return self.proc.pid

    def rss_kib(self):
        return proc_status(self.pid, "VmRSS")

    def hwm_kib(self):
        return proc_status(self.pid, "VmHWM")

    def cpu_s(self):
        return proc_cpu_s(self.pid)

    def __exit__(self, *exc):
        unmount(self.mnt)
        if self.proc:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc.stderr.close()
        return False


class ModelfsMount(Daemon):
    """`modelfs mount -f`; ready when @ready_rel (a path inside) can be
    stat'ed, or when the --ready-file appears if the binary has it."""

    def __init__(self, binary, store, mnt, pub, cache, extra=(), ready_rel=None,
                 ready_file=None, env=None):
        super().__init__(mnt)
        self.env = env
        self.cmd = [binary, "mount", "-f", "--trust", pub, "--cache-dir", cache, *extra]
        if ready_file:
            self.cmd += ["--ready-file", ready_file]
            try:
                os.unlink(ready_file)
            except FileNotFoundError:
                pass
            self.ready_path = ready_file
        elif ready_rel:
            self.ready_path = self.mnt / ready_rel
        self.cmd += [store, mnt]


class GocryptfsMount(Daemon):
    def __init__(self, cipher, mnt):
        super().__init__(mnt)
        self.cmd = ["gocryptfs", "-q", "-fg", "-extpass", "echo pw", cipher, mnt]


class PassthroughHpMount(Daemon):
    """libfuse's passthrough_hp example (unverified FUSE, the baseline of
    issue #15) serving folder @src, in the foreground, default options
    (splice, keep_cache, 86400 s timeouts). @ra_kb, when set, is written to
    the mount's bdi read_ahead_kb once it is up, before any file is opened
    (a file keeps the readahead it was opened with), as modelfs does for its
    own mount."""

    def __init__(self, binary, src, mnt, ra_kb=None):
        super().__init__(mnt)
        self.cmd = [binary, "--foreground", src, mnt]
        self.ra_kb = ra_kb

    def __enter__(self):
        super().__enter__()
        if self.ra_kb:
            try:
                set_bdi_readahead(self.mnt, self.ra_kb)
            except OSError:
                self.__exit__()
                raise
        return self


def is_passthrough_hp(binary) -> bool:
    """Is @binary libfuse's passthrough_hp (not passthrough_ll, which takes
    -o source= and has no --nosplice)? Judged by its --help."""
    try:
        p = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=10)
    except OSError:
        return False
    out = p.stdout + p.stderr
    return "<source> <mountpoint>" in out and "--nosplice" in out


def bdi_path(mnt) -> str:
    """/sys/class/bdi/MAJ:MIN/read_ahead_kb of the mount at @mnt."""
    dev = os.stat(mnt).st_dev
    return f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb"


def set_bdi_readahead(mnt, kb):
    with open(bdi_path(mnt), "w") as f:
        f.write(f"{int(kb)}\n")


def drop_caches():
    """sync, then drop the page cache, dentries and inodes (needs root)."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def fs_type(path) -> str:
    """The file system type of the mount holding @path (ext4, tmpfs, ...)."""
    path = os.path.realpath(path)
    best, typ = "", "?"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            mp = left.split()[4].replace("\\040", " ")
            if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best):
                best, typ = mp, right.split()[0]
    return typ


class SquashfuseMount(Daemon):
    def __init__(self, image, mnt):
        super().__init__(mnt)
        self.cmd = ["squashfuse", "-f", image, mnt]


def seq_read(path, drop_behind=False) -> tuple:
    """One sequential pass with 1 MiB read()s. Returns (bytes, seconds).

    @drop_behind: drop what was read from the page cache every 256 MiB
    (posix_fadvise DONTNEED), so a file bigger than memory's spare room does
    not push its own backing copy out of the cache.
    """
    buf = bytearray(MiB)
    total = done_drop = 0
    t0 = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            n = os.readv(fd, [buf])
            if not n:
                break
            total += n
            if drop_behind and total - done_drop >= 256 * MiB:
                os.posix_fadvise(fd, done_drop, total - done_drop, os.POSIX_FADV_DONTNEED)
                done_drop = total
    finally:
        os.close(fd)
    return total, time.perf_counter() - t0


def read_tree(root) -> tuple:
    """Reads every regular file under @root (sorted). Returns (bytes, seconds)."""
    files = sorted(p for p in pathlib.Path(root).rglob("*") if p.is_file())
    t0 = time.perf_counter()
    total = 0
    for p in files:
        total += seq_read(p)[0]
    return total, time.perf_counter() - t0


def list_stat(folder) -> int:
    """Lists @folder and lstat()s every entry, as `ls -l` does. Returns how
    many entries there were."""
    n = 0
    with os.scandir(folder) as it:
        for e in it:
            os.lstat(e.path)
            n += 1
    return n


def mb_s(res) -> float:
    nbytes, secs = res
    return nbytes / secs / 1e6


def warm(*paths):
    """Reads files (or every file under folders) so they sit in the page cache."""
    for p in paths:
        p = pathlib.Path(p)
        for f in ([p] if p.is_file() else p.rglob("*")):
            if f.is_file():
                seq_read(f)


def mmap_touch(path, advice=None) -> tuple:
    """Maps the whole file read-only and shared, as safetensors' safe_open does
    (memmap2), and touches one byte of every page, after madvise(@advice) if
    given. Returns (bytes, seconds)."""
    import numpy as np

    t0 = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        mm = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        try:
            if advice is not None:
                mm.madvise(advice)
            a = np.frombuffer(mm, dtype=np.uint8)
            int(a[::PAGE].sum())  # one load per page, in order
            del a
        finally:
            mm.close()
    finally:
        os.close(fd)
    return size, time.perf_counter() - t0


ST_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8",
             "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


def load_safetensors(path, arena) -> tuple:
    """A minimal safetensors loader: parses the header, then read()s each
    tensor's bytes into its place in @arena and wraps them with
    numpy.frombuffer (bf16 as uint16). Returns (bytes loaded, seconds).

    @arena (a bytearray at least as big as the data section) is allocated and
    touched by the caller before timing, as when a model's parameters exist
    before its weights are loaded: on these VMs a first-touch page fault
    costs ~13 us (3.5 s per GiB), which would otherwise dominate both sides.
    """
    import numpy as np

    t0 = time.perf_counter()
    total = 0
    tensors = {}
    with open(path, "rb", buffering=0) as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        base = 8 + n
        for name, info in header.items():
            if name == "__metadata__":
                continue
            start, end = info["data_offsets"]
            if end > len(arena) or start > end:
                raise IOError(f"{path}: {name}: offsets outside the arena")
            buf = memoryview(arena)[start:end]
            view, got = buf, 0
            f.seek(base + start)
            while got < len(buf):  # 1 MiB reads, the mount's request size
                k = f.readinto(view[got:got + MiB])
                if not k:
                    raise IOError(f"{path}: {name}: short read")
                got += k
            tensors[name] = np.frombuffer(buf, dtype=ST_DTYPES[info["dtype"]]).reshape(
                info["shape"])
            total += len(buf)
    return total, time.perf_counter() - t0


def write_safetensors(path, size, first=0) -> list:
    """Writes a safetensors file of about @size bytes: 64 MiB (or smaller)
    tensors of random bytes, alternately F32 and BF16, like a checkpoint
    shard. Random content, so the data compresses like real weights do not
    matter here (this file is for read speed). Tensors are named
    layers.N.weight from N = @first on; returns their names."""
    chunk = min(64 * MiB, size)
    header, offs, i = {}, 0, first
    while offs < size:
        n = min(chunk, size - offs)
        dt, el = ("F32", 4) if i % 2 == 0 else ("BF16", 2)
        n -= n % el
        if n == 0:
            break
        header[f"layers.{i}.weight"] = {"dtype": dt, "shape": [n // el],
                                        "data_offsets": [offs, offs + n]}
        offs += n
        i += 1
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-(8 + len(h)) % 8)  # data section 8-aligned, as safetensors pads
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        fill_random(f, offs)
    return list(header)


INDEX = "model.safetensors.index.json"


def write_sharded(folder, size, shards) -> int:
    """A multi-shard safetensors model as transformers saves one: @shards
    files model-0000K-of-0000N.safetensors of about @size / @shards bytes
    each, and model.safetensors.index.json (metadata.total_size, weight_map
    of every tensor to its shard). Returns the bytes of tensor data."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    per = size // shards
    per -= per % 4
    weight_map, first, total = {}, 0, 0
    for k in range(shards):
        name = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        names = write_safetensors(folder / name, per, first)
        first += len(names)
        weight_map.update((n, name) for n in names)
        total += st_header(folder / name)[2]
    (folder / INDEX).write_text(json.dumps({"metadata": {"total_size": total},
                                            "weight_map": weight_map}, indent=2))
    return total


def st_header(path) -> tuple:
    """(header without __metadata__, data offset, data bytes) of a safetensors file."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header, 8 + n, max((v["data_offsets"][1] for v in header.values()), default=0)


TORCH_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
                "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
                "BOOL": "bool"}


def sharded_params(folder) -> dict:
    """The model's parameters before its weights are loaded: one torch tensor
    per tensor of the index, of its dtype and shape, all views of one uint8
    arena that is allocated and touched here, untimed (see load_safetensors
    on first-touch page faults)."""
    import torch

    folder = pathlib.Path(folder)
    index = json.loads((folder / INDEX).read_text())
    infos = {}
    for shard in sorted(set(index["weight_map"].values())):
        infos.update(st_header(folder / shard)[0])
    sizes = {n: i["data_offsets"][1] - i["data_offsets"][0] for n, i in infos.items()}
    arena = torch.ones(sum(sizes.values()), dtype=torch.uint8)
    params, off = {}, 0
    for n, info in infos.items():
        t = arena[off:off + sizes[n]].view(getattr(torch, TORCH_DTYPES[info["dtype"]]))
        params[n] = t.view(info["shape"])
        off += sizes[n]
    return params


def load_sharded(folder, params) -> tuple:
    """Loads a multi-shard safetensors model the way transformers does with
    safetensors: reads model.safetensors.index.json, then per shard maps the
    whole file read-only and shared (safe_open: memmap2), parses the header
    from the mapping, and for every tensor wraps its bytes in the mapping
    with numpy.frombuffer and torch.from_numpy (bf16 as int16, viewed as
    torch.bfloat16) and materializes it into its parameter in @params
    (Tensor.copy_, as load_state_dict does). Returns (bytes, seconds)."""
    import warnings

    import numpy as np
    import torch

    folder = pathlib.Path(folder)
    t0 = time.perf_counter()
    index = json.loads((folder / INDEX).read_text())
    wmap = index["weight_map"]
    total = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # from_numpy of a read-only mapping
        for shard in sorted(set(wmap.values())):
            fd = os.open(folder / shard, os.O_RDONLY)
            try:
                mm = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
            finally:
                os.close(fd)
            try:
                (n,) = struct.unpack_from("<Q", mm, 0)
                header = json.loads(mm[8:8 + n])
                base = 8 + n
                for name, info in header.items():
                    if name == "__metadata__":
                        continue
                    if wmap.get(name) != shard:
                        raise IOError(f"{shard}: {name} is not mapped to this shard")
                    start, end = info["data_offsets"]
                    # torch.from_numpy takes no uint16: bf16 as int16
                    dt = np.dtype("<i2" if info["dtype"] == "BF16" else ST_DTYPES[info["dtype"]])
                    if start > end or base + end > len(mm) or (end - start) % dt.itemsize:
                        raise IOError(f"{shard}: {name}: bad data_offsets")
                    arr = np.frombuffer(mm, dtype=dt, count=(end - start) // dt.itemsize,
                                        offset=base + start)
                    t = torch.from_numpy(arr)
                    if info["dtype"] == "BF16":
                        t = t.view(torch.bfloat16)
                    params[name].copy_(t.view(info["shape"]))
                    total += end - start
                    del arr, t
            finally:
                try:
                    mm.close()
                except BufferError:  # an exception left a view alive: GC closes it
                    pass
    return total, time.perf_counter() - t0


def openssl_speed_L(seconds=3) -> float:
    """The hashing limit L of issue #15, in MB/s: `openssl speed -evp sha256
    -bytes 4096 -multi 2` (-seconds @seconds, -mr for the machine-readable
    sum of both processes)."""
    out = sh("openssl", "speed", "-evp", "sha256", "-bytes", "4096", "-multi", "2",
             "-seconds", seconds, "-mr").stdout
    for line in out.splitlines():
        if line.startswith("+F:"):  # +F:N:sha256:BYTES_PER_S (the sum over processes)
            return float(line.split(":")[3]) / 1e6
    raise RuntimeError(f"openssl speed: no +F: line in {out[-300:]!r}")


def fill_random(f, n):
    """Appends @n pseudo-random bytes to file object @f, fast (AES-CTR of
    zeros through openssl, ~2 GB/s, instead of /dev/urandom's ~0.4 GB/s)."""
    f.flush()
    key = os.urandom(16).hex()
    p = subprocess.Popen(["openssl", "enc", "-aes-128-ctr", "-K", key, "-iv", "0" * 32,
                          "-nosalt", "-in", "/dev/zero"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    left = n
    try:
        while left:
            b = p.stdout.read(min(left, 4 * MiB))
            if not b:
                raise IOError("openssl enc stopped early")
            f.write(b)
            left -= len(b)
    finally:
        p.kill()
        p.wait()
        p.stdout.close()


class RssSampler:
    """Samples a process's VmRSS every @period seconds in a thread."""

    def __init__(self, pid, period=0.05):
        self.pid, self.period = pid, period
        self.max_kib = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.max_kib = max(self.max_kib, proc_status(self.pid, "VmRSS"))
            self._stop.wait(self.period)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.max_kib = max(self.max_kib, proc_status(self.pid, "VmRSS"))
        return False


def sha256_threads(path, threads=2) -> tuple:
    """The hashing limit L: SHA-256 (OpenSSL, through hashlib, which releases
    the GIL on large updates) over the file's bytes, split into @threads
    contiguous parts hashed in parallel, 1 MiB per update. The file is mapped
    and every page touched first, so only hashing is timed.
    Returns (bytes, seconds)."""
    import hashlib

    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        mm = mmap.mmap(fd, size, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    try:
        view = memoryview(mm)
        for off in range(0, size, PAGE):
            view[off]  # fault everything in before the clock starts
        part = -(-size // threads)
        part += -part % MiB

        def work(lo):
            h = hashlib.sha256()
            for off in range(lo, min(lo + part, size), MiB):
                h.update(view[off:min(off + MiB, lo + part, size)])
            h.digest()

        ts = [threading.Thread(target=work, args=(i * part,)) for i in range(threads)]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        secs = time.perf_counter() - t0
        view.release()
    finally:
        mm.close()
    return size, secs


def fio_iops(path, jobs, seconds, invalidate=True) -> float:
    """IOPS of 4 KiB random reads (psync). FUSE files start from an empty page
    cache (invalidate); the raw file must stay cached, else the disk is
    measured."""
    out = sh("fio", "--name=rand", f"--filename={path}", "--rw=randread", "--bs=4k",
             "--ioengine=psync", f"--numjobs={jobs}", "--time_based",
             f"--runtime={seconds}", "--group_reporting", "--output-format=json",
             f"--invalidate={1 if invalidate else 0}").stdout
    return json.loads(out[out.index("{"):])["jobs"][0]["read"]["iops"]


class OciRegistry:
    """Debian's docker-registry (CNCF distribution 2.8) on 127.0.0.1, a free
    port, TLS with a self-signed certificate and htpasswd (bcrypt) auth,
    storage under @root: started as tests/remote/oci_registry.py starts it
    (not imported: that module is the tests'). A context manager: always
    stopped. env() is an environment whose REGISTRY_AUTH_FILE holds the
    credentials (modelfs and skopeo read it); curl_config() the same
    credentials for curl -K, so no secret is on a command line."""

    USER, PASSWORD = "bench", "bench-pass"

    def __init__(self, root):
        self.root = pathlib.Path(root)
        self.proc = None

    def __enter__(self):
        import base64
        import socket
        import ssl
        import urllib.error
        import urllib.request

        r = self.root
        r.mkdir(parents=True, exist_ok=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self.ca = r / "cert.pem"
        sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
           r / "key.pem", "-out", self.ca, "-days", "2", "-subj", "/CN=127.0.0.1",
           "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost")
        self.cert_dir = r / "certs.d"
        self.cert_dir.mkdir()
        (self.cert_dir / "ca.crt").write_bytes(self.ca.read_bytes())
        (r / "htpasswd").write_text(sh("htpasswd", "-Bbn", self.USER, self.PASSWORD).stdout)
        (r / "data").mkdir()
        (r / "config.yml").write_text(f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {r / 'data'}
http:
  addr: 127.0.0.1:{self.port}
  secret: modelfs-bench-{self.port}
  tls:
    certificate: {r / 'cert.pem'}
    key: {r / 'key.pem'}
auth:
  htpasswd:
    realm: modelfs-bench
    path: {r / 'htpasswd'}
""")
        auth = base64.b64encode(f"{self.USER}:{self.PASSWORD}".encode()).decode()
        self.auth_file = r / "auth.json"
        self.auth_file.write_text(json.dumps({"auths": {self.host: {"auth": auth}}}))
        self.curl_conf = r / "curl.conf"
        self.curl_conf.write_text(f'user = "{self.USER}:{self.PASSWORD}"\n')
        self.log = open(r / "registry.log", "wb")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(r / "config.yml")],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        ctx = ssl.create_default_context(cafile=str(self.ca))
        end = time.time() + 30
        while time.time() < end and self.proc.poll() is None:
            try:
                urllib.request.urlopen(f"https://{self.host}/v2/", context=ctx, timeout=5)
            except urllib.error.HTTPError as e:
                if e.code == 401:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("docker-registry did not start: " +
                           (r / "registry.log").read_text()[-400:])

    def get(self, path, accept=None) -> bytes:
        """The body of a GET of @path (/v2/...) as the bench user."""
        import base64
        import ssl
        import urllib.request

        req = urllib.request.Request(f"https://{self.host}{path}")
        tok = base64.b64encode(f"{self.USER}:{self.PASSWORD}".encode()).decode()
        req.add_header("Authorization", "Basic " + tok)
        if accept:
            req.add_header("Accept", accept)
        ctx = ssl.create_default_context(cafile=str(self.ca))
        with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
            return r.read()

    def env(self):
        env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
        env["REGISTRY_AUTH_FILE"] = str(self.auth_file)
        env["HOME"] = str(self.root)  # no ~/.docker/config.json of the machine's
        return env

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close() if hasattr(self, "log") else None
        return False


def curl_get(url, ca, conf) -> tuple:
    """One GET of @url over TLS (CA @ca, credentials from curl config @conf)
    to /dev/null, following redirects. Returns (bytes, seconds) as curl
    measured them (time_total: connect, TLS, auth round trip, body)."""
    out = sh("curl", "-sSfL", "--cacert", ca, "-K", conf, "-o", "/dev/null",
             "-w", "%{size_download} %{time_total}", url).stdout.split()
    return int(out[0]), float(out[1])


def curl_ranges(url, ca, conf, size, chunk) -> tuple:
    """The whole blob at @url as Range GETs of @chunk bytes, one after
    another on one kept-alive connection (one curl, a config file with one
    section per range: `next`), to /dev/null. Returns (bytes, seconds), the
    wall time of the curl process."""
    cred = pathlib.Path(conf).read_text()
    parts = []
    for off in range(0, size, chunk):
        parts.append(f'{cred}url = "{url}"\nrange = "{off}-{min(off + chunk, size) - 1}"\n'
                     f'output = "/dev/null"\ncacert = "{ca}"\nsilent\nshow-error\nfail\n'
                     'location\n')
    cfg = pathlib.Path(conf).with_suffix(".ranges")
    cfg.write_text("next\n".join(parts))
    t0 = time.perf_counter()
    sh("curl", "-K", cfg)
    return size, time.perf_counter() - t0


def find_key(obj, key):
    """The first value of @key anywhere in a parsed JSON document, or None."""
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        obj = list(obj.values())
    if isinstance(obj, list):
        for v in obj:
            r = find_key(v, key)
            if r is not None:
                return r
    return None
