#!/usr/bin/python3
"""`dkimctl verify --socket` and `dkimctl stats --socket` against a real dkimd.

For the samples and for every conformance corpus (grouped by the zone file their
messages use), start dkimd on a temporary socket with that zone, then check that
`dkimctl verify [--json] --socket [--shm]` prints byte for byte what `dkimctl verify
[--json] --zone` prints in-process (--shm: through the shared memory transport). Then `dkimctl stats` (plain and --json) and the usage errors.
The daemon is always stopped, also on failure.

usage: dkimctl_socket_test.py DKIMD DKIMCTL   (DKD_SHARED, DKD_SOURCE_ROOT from the env)
"""

import json
import shutil
import os
import socket
import subprocess
import sys
import tempfile
import time

NOW = "1764003600"
FAILURES = []


def check(cond, what):
    print("%s: %s" % ("ok" if cond else "FAIL", what), flush=True)
    if not cond:
        FAILURES.append(what)
    return cond


class Daemon:
    def __init__(self, dkimd, zone, sock):
        self.sock = sock
        self.proc = subprocess.Popen(
            [dkimd, "--socket", sock, "--zone", zone, "--workers", "2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("dkimd exited: %s" % self.proc.stderr.read().decode())
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(sock)
                s.close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("dkimd did not listen on %s" % sock)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def run(argv):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    return p.returncode, p.stdout, p.stderr


def groups():
    """[(name, zone, [files])]: the samples, then each corpus per zone file."""
    root = os.environ.get("DKD_SOURCE_ROOT", ".")
    out = []
    sdir = os.path.join(root, "samples")
    out.append(("samples", os.path.join(sdir, "keys.zone"),
                sorted(os.path.join(sdir, f) for f in os.listdir(sdir) if f.endswith(".eml"))))
    cdir = os.path.join(os.environ.get("DKD_SHARED", ""), "conformance")
    if not os.path.isdir(cdir):
        return out
    for corpus in sorted(os.listdir(cdir)):
        exp = os.path.join(cdir, corpus, "expected.jsonl")
        if not os.path.isfile(exp):
            continue
        byzone = {}
        with open(exp) as f:
            for line in f:
                if line.strip():
                    e = json.loads(line)
                    zone = os.path.join(cdir, corpus, e.get("zone", "keys.zone"))
                    byzone.setdefault(zone, []).append(os.path.join(cdir, corpus, e["file"]))
        for zone, files in sorted(byzone.items()):
            files = [f for f in files if os.path.isfile(f)]
            if files and os.path.isfile(zone):
                out.append(("%s/%s" % (corpus, os.path.basename(zone)), zone, files))
    return out


def main():
    dkimd, dkimctl = sys.argv[1], sys.argv[2]
    tmp = tempfile.mkdtemp(prefix="dkd-ctl-")
    sock = os.path.join(tmp, "dkimd.sock")
    total = 0
    for name, zone, files in groups():
        d = Daemon(dkimd, zone, sock)
        try:
            for mode in ([], ["--json"]):
                # Chunks keep the command line short for the large corpora.
                for k in range(0, len(files), 200):
                    part = files[k:k + 200]
                    a = run([dkimctl, "verify", "--now", NOW, "--zone", zone] + mode + part)
                    b = run([dkimctl, "verify", "--now", NOW, "--socket", sock] + mode + part)
                    same = a == b
                    if not same:
                        al, bl = a[1].splitlines(), b[1].splitlines()
                        diff = [(x, y) for x, y in zip(al, bl) if x != y][:1]
                        print("  in-process rc=%d, socket rc=%d; first difference: %r" %
                              (a[0], b[0], diff or (a[2], b[2])))
                    check(same, "%s %s[%d:%d]: --socket output == in-process output" %
                          (name, " ".join(mode) or "plain", k, k + len(part)))
                    c = run([dkimctl, "verify", "--now", NOW, "--socket", sock, "--shm"] + mode +
                            part)
                    check(c == a, "%s %s[%d:%d]: --socket --shm output == in-process output" %
                          (name, " ".join(mode) or "plain", k, k + len(part)))
                    total += len(part)
        finally:
            check(d.stop() == 0, "%s: dkimd exits 0 on SIGTERM" % name)

    d = Daemon(dkimd, os.path.join(os.environ.get("DKD_SOURCE_ROOT", "."), "samples",
                                   "keys.zone"), sock)
    try:
        run([dkimctl, "verify", "--socket", sock, os.path.join(
            os.environ.get("DKD_SOURCE_ROOT", "."), "samples", "01-pass-rsa2048.eml")])
        rc, out, err = run([dkimctl, "stats", "--socket", sock])
        lines = dict(l.split() for l in out.decode().splitlines() if len(l.split()) == 2)
        check(rc == 0 and int(lines.get("requests_served", "0")) >= 1,
              "stats: plain 'name value' lines with requests_served >= 1")
        rc, out, err = run([dkimctl, "stats", "--socket", sock, "--json"])
        try:
            js = json.loads(out)
        except ValueError:
            js = {}
        check(rc == 0 and js.get("requests_served", 0) >= 1 and
              all(isinstance(v, int) for v in js.values()),
              "stats --json: one object of integer counters")
        rc, _, err = run([dkimctl, "verify", "--socket", sock, "--zone", "x.zone", "m.eml"])
        check(rc == 2 and b"--socket excludes" in err, "verify --socket --zone: usage error")
        rc, _, err = run([dkimctl, "verify", "--shm", "m.eml"])
        check(rc == 2 and b"--shm needs --socket" in err, "verify --shm without --socket: usage error")
        rc, _, err = run([dkimctl, "verify", "--socket", sock, "--allow-sha1", "m.eml"])
        check(rc == 2, "verify --socket --allow-sha1: usage error (the daemon's policy applies)")
        rc, _, _ = run([dkimctl, "stats"])
        check(rc == 2, "stats without --socket: usage error")
    finally:
        check(d.stop() == 0, "dkimd exits 0 on SIGTERM")
    rc, _, err = run([dkimctl, "stats", "--socket", sock])
    check(rc == 1 and sock.encode() in err, "stats with no daemon: exit 1 naming the socket")
    rc, _, err = run([dkimctl, "verify", "--socket", sock, "m.eml"])
    check(rc == 1, "verify --socket with no daemon: exit 1")
    shutil.rmtree(tmp, ignore_errors=True)
    print("%d messages compared; %d failures" % (total, len(FAILURES)))
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
