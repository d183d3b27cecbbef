"""MOUNT/.modelfs/metrics.prom and `modelfs metrics` (run as root).

The oracle is a strict parser of the Prometheus text exposition format 0.0.4
written here from the format's specification: metric and label names,
label value escapes, HELP/TYPE at most once per family and before its
samples, counters ending in _total, histograms with cumulative buckets and
+Inf equal to _count, float values, no duplicate series, a final newline.
Values are checked against what the test did: bytes read, a tampered block
(counted for its model only), models exposed and refused.
"""
import errno
import math
import os
import re

import pytest

from conftest import run_modelfs
from test_mount import Mount, drop_caches, flip, keys, rnd, seal, write  # noqa: F401

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class ParseError(AssertionError):
    pass


def parse_float(s):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s):
        raise ParseError(f"bad float {s!r}")
    return float(s)


def parse_labels(s, i):
    """Parses '{a="x",b="y"}' from s[i] == '{'; returns (dict, index after '}')."""
    assert s[i] == "{"
    i += 1
    labels = {}
    while True:
        if s[i] == "}":
            return labels, i + 1
        m = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*").match(s, i)
        if not m:
            raise ParseError(f"bad label name at {s[i:]!r}")
        name = m.group(0)
        i = m.end()
        if s[i:i + 2] != '="':
            raise ParseError(f"expected =\" after {name}")
        i += 2
        val = []
        while True:
            c = s[i]
            if c == "\\":
                nxt = s[i + 1]
                if nxt not in '\\"n':
                    raise ParseError(f"bad escape \\{nxt}")
                val.append({"\\": "\\", '"': '"', "n": "\n"}[nxt])
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                raise ParseError("raw newline in a label value")
            else:
                val.append(c)
                i += 1
        if name in labels:
            raise ParseError(f"duplicate label {name}")
        labels[name] = "".join(val)
        if s[i] == ",":
            i += 1
        elif s[i] != "}":
            raise ParseError(f"expected , or }} at {s[i:]!r}")


def family_of(name, types):
    """The family a sample belongs to (histogram suffixes stripped when declared)."""
    for suf in ("_bucket", "_sum", "_count"):
        if name.endswith(suf) and types.get(name[:-len(suf)]) in ("histogram", "summary"):
            return name[:-len(suf)]
    return name


def parse_exposition(text):
    """Returns {family: {"type", "help", "samples": [(name, labels, value)]}}; strict."""
    if not text.endswith("\n"):
        raise ParseError("no final newline")
    fams, types, seen_series, done = {}, {}, set(), set()
    current = None
    for ln in text[:-1].split("\n"):
        if ln == "":
            raise ParseError("empty line")
        if ln.startswith("#"):
            parts = ln.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not NAME.match(name):
                    raise ParseError(f"bad metric name {name!r}")
                fam = fams.setdefault(name, {"type": None, "help": None, "samples": []})
                if fam["samples"] or name in done:
                    raise ParseError(f"{parts[1]} of {name} after its samples")
                key = parts[1].lower()
                if fam[key] is not None:
                    raise ParseError(f"second {parts[1]} for {name}")
                if key == "type":
                    if len(parts) != 4 or parts[3] not in TYPES:
                        raise ParseError(f"bad TYPE line {ln!r}")
                    types[name] = parts[3]
                    fam["type"] = parts[3]
                else:
                    fam["help"] = parts[3] if len(parts) == 4 else ""
                if current is not None and current != name:
                    done.add(current)
                current = name
            continue
        m = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*").match(ln)
        if not m:
            raise ParseError(f"bad sample line {ln!r}")
        name, i = m.group(0), m.end()
        labels = {}
        if i < len(ln) and ln[i] == "{":
            labels, i = parse_labels(ln, i)
        if ln[i:i + 1] != " ":
            raise ParseError(f"expected a space before the value in {ln!r}")
        rest = ln[i + 1:].split(" ")
        if len(rest) not in (1, 2):
            raise ParseError(f"bad value/timestamp in {ln!r}")
        value = parse_float(rest[0])
        if len(rest) == 2 and not re.fullmatch(r"-?\d+", rest[1]):
            raise ParseError(f"bad timestamp in {ln!r}")
        fam_name = family_of(name, types)
        if fam_name in done:
            raise ParseError(f"samples of {fam_name} are not contiguous")
        if current is not None and current != fam_name:
            done.add(current)
        current = fam_name
        fam = fams.setdefault(fam_name, {"type": None, "help": None, "samples": []})
        key = (name, tuple(sorted(labels.items())))
        if key in seen_series:
            raise ParseError(f"duplicate series {key}")
        seen_series.add(key)
        fam["samples"].append((name, labels, value))
    for name, fam in fams.items():
        if fam["type"] is None or fam["help"] is None:
            raise ParseError(f"{name}: missing TYPE or HELP")
        if not fam["samples"]:
            raise ParseError(f"{name}: no samples")
        for sname, labels, value in fam["samples"]:
            if fam["type"] == "counter":
                if not sname.endswith("_total"):
                    raise ParseError(f"counter sample {sname} does not end in _total")
                if value < 0:
                    raise ParseError(f"negative counter {sname}")
        if fam["type"] == "histogram":
            check_histogram(name, fam["samples"])
    return fams


def check_histogram(name, samples):
    buckets = [(s[1], s[2]) for s in samples if s[0] == name + "_bucket"]
    counts = [s[2] for s in samples if s[0] == name + "_count"]
    sums = [s[2] for s in samples if s[0] == name + "_sum"]
    if len(counts) != 1 or len(sums) != 1 or not buckets:
        raise ParseError(f"{name}: needs buckets, one _sum and one _count")
    les = [parse_float(b[0]["le"]) for b in buckets]
    if les != sorted(les) or len(set(les)) != len(les) or les[-1] != math.inf:
        raise ParseError(f"{name}: le bounds not increasing up to +Inf: {les}")
    vals = [b[1] for b in buckets]
    if any(b > a for a, b in zip(vals[1:], vals)):
        raise ParseError(f"{name}: buckets not cumulative: {vals}")
    if vals[-1] != counts[0]:
        raise ParseError(f"{name}: +Inf bucket {vals[-1]} != _count {counts[0]}")
    if sums[0] < 0:
        raise ParseError(f"{name}: negative _sum")


def value(fams, fam, name=None, **labels):
    for sname, lab, v in fams[fam]["samples"]:
        if sname == (name or fam) and lab == labels:
            return v
    raise KeyError((fam, name, labels))


# --------------------------------------------------------------------------
# the parser itself rejects what it must
# --------------------------------------------------------------------------

GOOD = ('# HELP x_total A counter.\n# TYPE x_total counter\nx_total{a="q\\"\\\\\\n"} 1\n'
        '# HELP h H.\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\n'
        'h_sum 0.5\nh_count 2\n')


@pytest.mark.parametrize("bad", [
    GOOD[:-1],                                               # no final newline
    GOOD.replace("x_total{", "x_total {"),                   # space before labels
    GOOD.replace('a="q', 'a="\\q'),                          # bad escape
    GOOD.replace("# TYPE x_total counter\n", "# TYPE x_total counter\n" * 2),
    GOOD.replace("x_total{a", "x{a").replace("# HELP x_total", "# HELP x")
        .replace("# TYPE x_total", "# TYPE x"),             # counter without _total
    GOOD.replace('h_bucket{le="+Inf"} 2', 'h_bucket{le="+Inf"} 0'),  # not cumulative
    GOOD.replace("h_count 2", "h_count 3"),                  # +Inf != count
    GOOD.replace("x_total{", "1x_total{"),                   # bad name
    GOOD.replace("} 1\n", "} one\n", 1),                     # bad float
    GOOD + 'x_total{a="q\\"\\\\\\n"} 2\n',                   # duplicate series
])
def test_parser_rejects(bad):
    with pytest.raises(ParseError):
        parse_exposition(bad)


def test_parser_accepts_and_unescapes():
    fams = parse_exposition(GOOD)
    assert value(fams, "x_total", a='q"\\\n') == 1


# --------------------------------------------------------------------------
# the mount's metrics
# --------------------------------------------------------------------------

WEIRD = 'we"ird\\na\nme'  # a model folder name that needs every label escape


@pytest.fixture
def store(tmp_path, keys):  # noqa: F811
    s = tmp_path / "store"
    write(s / "org" / "a" / "w.bin", rnd(300 << 10))
    write(s / "org" / "b" / "w.bin", rnd(1 << 20))
    write(s / WEIRD / "x.txt", b"weird\n")
    write(s / "untrusted" / "x.txt", b"nobody trusts this\n")
    for name in ("org/a", "org/b", WEIRD):
        seal(s / name, keys["trusted"])
    seal(s / "untrusted", keys["other"])
    return s


def scrape(m):
    via_file = (m.mnt / ".modelfs" / "metrics.prom").read_text()
    p = run_modelfs("metrics", m.mnt, timeout=60)
    assert p.returncode == 0, p.stderr
    fams = parse_exposition(p.stdout)
    parse_exposition(via_file)
    return fams


def test_metrics_format_and_values(tmp_path, keys, store):  # noqa: F811
    a = store / "org" / "a" / "w.bin"
    bad_block = 7
    with Mount(store, tmp_path / "mnt", f"{keys['trusted']}.pub") as m:
        f0 = scrape(m)
        for fam in ("modelfs_read_bytes_total", "modelfs_verified_bytes_total",
                    "modelfs_reads_total", "modelfs_verify_failures_total", "modelfs_models",
                    "modelfs_hblock_cache_hits_total", "modelfs_hblock_cache_misses_total",
                    "modelfs_hblock_cache_evictions_total", "modelfs_hblock_cache_bytes",
                    "modelfs_frame_cache_hits_total", "modelfs_frame_cache_misses_total",
                    "modelfs_frame_cache_evictions_total", "modelfs_frame_cache_bytes",
                    "modelfs_frame_cache_waits_total", "modelfs_frame_cache_entries",
                    "modelfs_trees_built_total", "modelfs_transcodes_total",
                    "modelfs_read_duration_seconds", "modelfs_start_time_seconds",
                    "modelfs_build_info"):
            assert fam in f0, fam
        assert f0["modelfs_read_duration_seconds"]["type"] == "histogram"
        assert value(f0, "modelfs_models", state="exposed") == 3
        assert value(f0, "modelfs_models", state="refused") == 1
        models = {lab["model"] for _, lab, _ in f0["modelfs_verify_failures_total"]["samples"]}
        assert models == {"org/a", "org/b", WEIRD}
        version = run_modelfs("--version").stdout.split()[1]
        assert value(f0, "modelfs_build_info", version=version) == 1
        start = value(f0, "modelfs_start_time_seconds")
        assert abs(start - os.stat(m.logpath).st_mtime) < 120

        data = (m.mnt / "org" / "a" / "w.bin").read_bytes()
        assert data == a.read_bytes()
        fd = os.open(m.mnt / "org" / "b" / "w.bin", os.O_RDONLY)
        try:
            os.pread(fd, 1, 0)  # the file's format is detected before the damage
            flip(store / "org" / "b" / "w.bin", bad_block * 4096 + 1)
            drop_caches()
            for _ in range(5):
                with pytest.raises(OSError) as ei:
                    os.pread(fd, 4096, bad_block * 4096)
                assert ei.value.errno == errno.EIO
        finally:
            os.close(fd)

        f1 = scrape(m)
        read = value(f1, "modelfs_read_bytes_total") - value(f0, "modelfs_read_bytes_total")
        assert read >= len(data) + 1
        assert value(f1, "modelfs_verified_bytes_total") >= len(data)
        assert value(f1, "modelfs_reads_total") > value(f0, "modelfs_reads_total")
        assert value(f1, "modelfs_verify_failures_total", model="org/b") >= 5
        assert value(f1, "modelfs_verify_failures_total", model="org/a") == 0
        assert value(f1, "modelfs_verify_failures_total", model=WEIRD) == 0
        assert value(f1, "modelfs_failed_checks_total") >= 5
        h = "modelfs_read_duration_seconds"
        count = value(f1, h, h + "_count")
        assert count == value(f1, "modelfs_reads_total")
        assert value(f1, h, h + "_sum") > 0
        # the status file counts the same failures
        assert m.status()["counters"]["verify_failures"] == value(
            f1, "modelfs_failed_checks_total")
