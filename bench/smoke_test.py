#!/usr/bin/python3
"""Smoke test of the capacity-planning tools, so they cannot rot unnoticed.

corpus-bench over samples/ must print the verdict the sample was made for (the file name
says it) and a #TIMING line; loadgen must drive a dkimd started here for a moment and
report a JSON summary with no errors. Figures are not checked: they belong to
PERFORMANCE.md, not to tests.

usage: smoke_test.py BUILD_ROOT SOURCE_ROOT
"""
import json
import os
import subprocess
import sys
import tempfile
import time

build, src = sys.argv[1], sys.argv[2]
samples = os.path.join(src, "samples")
zone = os.path.join(samples, "keys.zone")
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)


out = subprocess.run([os.path.join(build, "bench", "corpus-bench"), samples, "--zone", zone,
                      "--min-time", "0", "--min-passes", "1"],
                     capture_output=True, text=True, timeout=120)
check(out.returncode == 0, f"corpus-bench exit {out.returncode}: {out.stderr}")
lines = out.stdout.splitlines()
verdicts = dict(line.split()[:2] for line in lines if line.endswith(".eml") or ".eml " in line)
for name in os.listdir(samples):
    if name.endswith(".eml"):
        expected = name.split("-")[1]  # 01-pass-..., 06-permerror-...
        check(verdicts.get(name) == expected, f"corpus-bench {name}: {verdicts.get(name)}")
check(any(line.startswith("#TIMING best_s=") and "median_s=" in line for line in lines),
      "corpus-bench #TIMING line")

loadgen = os.path.join(build, "bench", "loadgen")
dkimd = os.path.join(build, "tools", "dkimd")
if os.path.exists(loadgen) and os.path.exists(dkimd):
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "d.sock")
        d = subprocess.Popen([dkimd, "--socket", sock, "--zone", zone, "--workers", "1",
                              "--log", os.path.join(tmp, "log")])
        try:
            for _ in range(200):
                if os.path.exists(sock):
                    break
                time.sleep(0.05)
            out = subprocess.run([loadgen, "--socket", sock, "--connections", "2", "--depth",
                                  "4", "--duration", "1", samples],
                                 capture_output=True, text=True, timeout=60)
            check(out.returncode == 0, f"loadgen exit {out.returncode}: {out.stderr}")
            try:
                summary = json.loads(out.stdout)
            except ValueError:
                summary = {}
            check(summary.get("errors") == 0, f"loadgen errors: {out.stdout[:300]}")
            check(summary.get("messages", 0) > 0 or summary.get("msgs_per_s", 0) > 0,
                  f"loadgen verified nothing: {out.stdout[:300]}")
        finally:
            d.terminate()
            d.wait(timeout=30)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
