"""tools/soak for one minute (issue #12 §3): 16 readers (read, mmap, 4 KiB
random reads, getxattr, ls -R), a reload every 5 s alternating signatures,
tamper injections into a dedicated file, against one mount.

Asserts the exit status and the figures of the summary the tool writes
(summary.json): no wrong byte, listing or attribute; no error but the
expected EIO on the tampered file; every reload ok; tampering seen and
repaired; the daemon's RSS and fds flat within 10% after warm-up; one CSV
row per second; nothing left mounted, the work folder removed. About 70 s.
"""
import csv
import json
import os
import subprocess

import pytest

from conftest import ROOT, modelfs_bin, sanitized_build

SOAK = str(ROOT / "tools" / "soak")
KINDS = ("seq", "rand", "mmap", "getfattr", "ls")

def soak(*args, timeout=60):
    return subprocess.run(["/usr/bin/python3", SOAK, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


FLAT = ("RSS flat within 10% after warm-up", "fds flat within 10% after warm-up")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One 60-second soak for the tests of this module: (summary, process, out, work)."""
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        pytest.skip("needs root and /dev/fuse (FUSE mounts)")
    work = tmp_path_factory.mktemp("soak")
    out = work / "out"
    p = soak("--minutes", 1, "--bin", modelfs_bin(), "--out", out, "--dir", work, timeout=600)
    report = f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr (tail):\n{p.stderr[-3000:]}"
    assert (out / "summary.json").exists(), report
    return json.loads((out / "summary.json").read_text()), p, out, work, report


def test_soak_one_minute_correct(run):
    """Every correctness figure of the soak; resource flatness is the next test."""
    s, p, out, tmp_path, report = run
    # Figures first, so that a failure names what broke; then the verdict.
    bad = []

    def want(ok, what):
        if not ok:
            bad.append(what)

    want(s["elapsed_s"] >= 60, f"ran {s['elapsed_s']} s")
    want(s["readers"] == {"seq": 4, "rand": 4, "mmap": 3, "getfattr": 2, "ls": 3},
         f"readers {s['readers']}")
    want(s["wrong_bytes"] == 0 and s["wrong_reads"] == 0,
         f"{s['wrong_bytes']} wrong bytes in {s['wrong_reads']} reads")
    want(s["wrong_results"] == 0, f"{s['wrong_results']} wrong listings or attribute values")
    want(s["errors"] == {}, f"errors {s['errors']}")
    want(all(s["ops"][k] > 0 for k in KINDS), f"ops {s['ops']}")
    want(s["bytes_checked"] > 1 << 30, f"only {s['bytes_checked']} bytes checked")
    r = s["reloads"]
    want(r["attempted"] >= 10 and r["ok"] == r["attempted"], f"reloads {r}")
    t = s["tamper"]
    want(t["injections"] >= 5 and t["restore_failed"] == 0 and t["restore_ok"] == t["injections"],
         f"tamper {t}")
    # tampering was seen: EIO (or SIGBUS) by a reader or by the probe
    want(sum(s["expected_eio"].values()) + t["probe_eio"] > 0, "no tampered block was caught")
    want((s["daemon_counters"]["verify_failures"] or 0) > 0, "the daemon counted no failed check")
    # EIO only where it belongs: the tool checks each one; none on other kinds
    want(s["expected_eio"]["getfattr"] == 0 and s["expected_eio"]["ls"] == 0,
         f"expected_eio {s['expected_eio']}")
    for key in ("rss_kib", "fds"):
        d = s[key]
        want(s["warmup_s"] == 12 and d["warmup_end_t_s"] == 12, f"{key} warm-up {d}")
    for k in KINDS:
        lat = s["latency_us"][k]
        want(lat["ops"] > 0 and 0 < lat["p50_us"] <= lat["p99_us"] <= lat["max_us"] * 1.05,
             f"latency {k} {lat}")
    want(s["daemon_exit_status"] == 0, f"daemon exit status {s['daemon_exit_status']}")
    want([c["name"] for c in s["criteria"] if not c["ok"] and c["name"] not in FLAT] == [],
         f"criteria failed: {[c for c in s['criteria'] if not c['ok']]}")
    want(p.returncode in (0, 1), f"exit {p.returncode}")

    # the time series: one row a second, resources and latencies in each
    with open(out / "samples.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    want(len(rows) >= 60, f"{len(rows)} rows in samples.csv")
    want(all(row["rss_kib"] and row["fds"] for row in rows[:60]), "a row without rss or fds")
    want(sum(1 for row in rows if int(row["rand_ops"])) >= 55, "seconds without random reads")
    for name in ("events.jsonl", "daemon.log"):
        want((out / name).exists(), f"no {name}")

    # nothing left behind: no mount, no work folder
    with open("/proc/self/mountinfo") as f:
        want(str(tmp_path) not in f.read(), "a mount is left under the test folder")
    want(sorted(os.listdir(tmp_path)) == ["out"], f"left over: {os.listdir(tmp_path)}")
    assert not bad, "\n".join(bad) + "\n\n" + report


def test_soak_one_minute_flat(run):
    """RSS and fds flat within 10% after warm-up, and the tool's overall pass."""
    s, p, _, _, report = run
    asan = sanitized_build()  # ASan's quarantine keeps freed memory: RSS is not ours
    for key in ("fds",) if asan else ("rss_kib", "fds"):
        d = s[key]
        assert d["warmup_end"] > 0 and (
            d["max_after_warmup"] <= 1.10 * d["warmup_end"] + d.get("slack", 0)), (
            f"{key} not flat: {d['warmup_end']} at the end of warm-up, "
            f"max {d['max_after_warmup']} at t={d['max_t_s']} s (x{d['ratio']}), "
            f"{d.get('growth_per_reload')} per reload")
    if not asan:
        assert s["result"] == "pass" and p.returncode == 0, report


def test_usage_errors_exit_2():
    for args in (["--minutes", "0"], ["--readers", "2"], ["--nope"],
                 ["--tamper-every", "5", "--tamper-hold", "6"]):
        p = soak(*args)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert "usage: tools/soak" in p.stderr, (args, p.stderr)


def test_missing_binary_is_a_setup_error(tmp_path):
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        pytest.skip("needs root and /dev/fuse")
    p = soak("--minutes", "0.1", "--bin", tmp_path / "nope", "--out", tmp_path / "out",
             "--dir", tmp_path)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "not an executable" in p.stderr
    assert not any(n.startswith("modelfs-soak-work-") for n in os.listdir(tmp_path))
