#!/usr/bin/python3
"""Debian's miltertest (OpenDKIM's milter test driver, its own libmilter-compatible MTA
side) against dkimd: every script in tests/milter/miltertest/ runs against a daemon
started here with the sample keys and a signing key for example.com. A script whose
first line says "-- daemon: FLAGS" gets a daemon with those extra flags.

Skipped (exit 77) where miltertest is not installed, failed instead under CI=true.

usage: miltertest_test.py DKIMD DKIMCTL
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "daemon"))
from daemon_test import Daemon, check, source_root  # noqa: E402
import daemon_test  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def daemon(dkimd, tmp, name, zone, key, extra):
    spec = os.path.join(tmp, name + ".milter")
    d = Daemon(dkimd, tmp, ["--milter", "unix:" + spec, "--workers", "2", "--authserv-id",
                            "mx.test.example", "--zone", zone,
                            "--sign-key", "example.com:mt:" + key] + extra, name)
    return d, spec


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    dkimd, dkimctl = sys.argv[1], sys.argv[2]
    mt = shutil.which("miltertest")
    if mt is None:
        if os.environ.get("CI") == "true":
            print("FAIL: miltertest is not installed (.ci/packages lists it)")
            return 1
        print("SKIP: miltertest is not installed")
        return 77
    root = source_root()
    with tempfile.TemporaryDirectory(prefix="dkimd-mt-") as tmp:
        samples = os.path.join(tmp, "samples")
        shutil.copytree(os.path.join(root, "samples"), samples)
        with open(os.path.join(samples, "03-none-unsigned.eml"), "rb") as f:
            other = f.read().replace(b"@example.com", b"@example.org")
        with open(os.path.join(samples, "12-other-domain.eml"), "wb") as f:
            f.write(other)
        key = os.path.join(tmp, "mt.pem")
        kg = subprocess.run([dkimctl, "keygen", "--domain", "example.com", "--selector", "mt",
                             "--out", key, "--json"], capture_output=True, text=True, check=True)
        zone = os.path.join(tmp, "mt.zone")
        with open(zone, "w") as f:
            f.write(open(os.path.join(samples, "keys.zone")).read())
            f.write(json.loads(kg.stdout)["zone_line"] + "\n")
        daemons = {}
        try:
            for script in sorted(glob.glob(os.path.join(HERE, "miltertest", "*.lua"))):
                if script.endswith("lib.lua"):
                    continue
                first = open(script).readline()
                extra = first.split(":", 1)[1].split() if first.startswith("-- daemon:") else []
                k = " ".join(extra)
                if k not in daemons:
                    daemons[k] = daemon(dkimd, tmp, "mt%d" % len(daemons), zone, key, extra)
                d, spec = daemons[k]
                env = dict(os.environ, DKD_MILTER="unix:" + spec, DKD_SAMPLES=samples,
                           DKD_MT_LIB=os.path.join(HERE, "miltertest", "lib.lua"))
                try:
                    r = subprocess.run([mt, "-s", script], env=env, capture_output=True,
                                       text=True, timeout=120)
                    out, rc = r.stdout + r.stderr, r.returncode
                except subprocess.TimeoutExpired:
                    out, rc = "timed out", -1
                for line in out.splitlines():
                    print("    " + line)
                check(rc == 0, "miltertest %s" % os.path.basename(script))
        finally:
            for d, _ in daemons.values():
                check(d.stop() == 0, "dkimd exits 0")
    print("%d failed" % len(daemon_test.FAILURES))
    return 1 if daemon_test.FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
