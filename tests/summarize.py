"""Counts every test case that ran and prints "N passed, N failed[, N skipped]".

Inputs, from one results folder written by tools/test-all:
  main.json, asan.json: meson testlog.json files. TAP tests are counted per
      "ok"/"not ok" line; pytest suites per JUnit XML test case (the XML
      path is in the test's command line).
  fuzz.tsv: one line per fuzz target, "name<TAB>pass|fail".
A meson test that failed without reporting cases counts as one failure.
Exit status: 0 if nothing failed.
"""
import json
import pathlib
import re
import sys
import xml.etree.ElementTree as ET


def count_tap(stdout):
    passed = failed = skipped = 0
    for line in stdout.splitlines():
        m = re.match(r"(not )?ok \d+", line)
        if not m:
            continue
        if "# SKIP" in line.upper():
            skipped += 1
        elif m.group(1):
            failed += 1
        else:
            passed += 1
    return passed, failed, skipped


def count_junit(path):
    root = ET.parse(path).getroot()
    passed = failed = skipped = 0
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.find("skipped") is not None:
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped


def count_meson(path):
    totals = [0, 0, 0]
    for line in path.read_text().splitlines():
        t = json.loads(line)
        junit = next((a.split("=", 1)[1] for a in t.get("command", [])
                      if a.startswith("--junitxml=")), None)
        if junit and pathlib.Path(junit).exists():
            counts = count_junit(junit)
        elif t.get("protocol") == "tap" or "1.." in (t.get("stdout") or ""):
            counts = count_tap(t.get("stdout") or "")
        else:
            counts = (1, 0, 0) if t["result"] == "OK" else (0, 0, 1) \
                if t["result"] == "SKIP" else (0, 1, 0)
        if t["result"] not in ("OK", "SKIP", "EXPECTEDFAIL") and counts[1] == 0:
            counts = (counts[0], 1, counts[2])
            print(f"summarize: {t['name']}: {t['result']} without a failing case")
        for i in range(3):
            totals[i] += counts[i]
    return totals


def main(folder):
    folder = pathlib.Path(folder)
    totals = [0, 0, 0]
    for name in ("main.json", "asan.json"):
        p = folder / name
        if p.exists():
            for i, v in enumerate(count_meson(p)):
                totals[i] += v
    fuzz = folder / "fuzz.tsv"
    if fuzz.exists():
        for line in fuzz.read_text().splitlines():
            _, verdict = line.split("\t")
            totals[0 if verdict == "pass" else 1] += 1
    line = f"{totals[0]} passed, {totals[1]} failed"
    if totals[2]:
        line += f", {totals[2]} skipped"
    print(line)
    return 1 if totals[1] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
