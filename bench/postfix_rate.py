#!/usr/bin/python3
"""Postfix's delivery rate with no milter, with dkimd's milter and with OpenDKIM's.

A private Postfix (tests/milter/postfix.py: own config, queue and Maildir under a
temporary directory, loopback only) receives N copies of one 20 KB message signed with a
2048-bit RSA key (relaxed/relaxed), over C parallel SMTP sessions (smtplib, one thread
each), and delivers them with virtual(8) to one Maildir. A run is timed from the first
send to the N-th file in Maildir/new. Three configurations, alternated so drift hits each
alike, RUNS times each:

  none      smtpd_milters empty;
  dkimd     smtpd_milters = dkimd --milter unix:... (verify; --zone holds the key);
  opendkim  smtpd_milters = OpenDKIM 2.11 (Mode v, QueryCache yes as dkimd caches keys),
            the key from a file (TestPublicKeys), so neither milter touches the network.

Every delivered message of a milter run is read back: each must carry the milter's
Authentication-Results with dkim=pass, or the run is marked. For dkimd and OpenDKIM,
the milter process's CPU time (utime+stime from /proc/PID/stat) and its threads' context
switches (wake-ups) over the run are divided
by N. Prints one line per run, then the medians and the ratio of each rate to no-milter.

usage: postfix_rate.py --build BUILD [--n 2000] [--connections 4] [--runs 3]
                       [--size 20000] [--workers 0]
Needs root, postfix, opendkim (Debian 12: apt-get install postfix opendkim).
"""

import argparse
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "milter"))
import postfix  # noqa: E402

AUTHSERV = "mx.test.example"
RCPT = "bench@test.example"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of stat(5), utime and stime; the split drops pid and comm.
    return (int(fields[11]) + int(fields[12])) / TICK


def context_switches(pid):
    """Voluntary + involuntary context switches of every thread of pid (a wake-up count:
    how often the milter slept waiting for Postfix's next packet)."""
    n = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    # voluntary_ctxt_switches: N, nonvoluntary_ctxt_switches: N
                    if line.split(":")[0].endswith("ctxt_switches"):
                        n += int(line.split()[1])
        except OSError:
            pass
    return n


def wait_socket(path, proc, what, timeout=20):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError("%s did not start (exit %s)" % (what, proc.poll()))
        time.sleep(0.05)
    time.sleep(0.2)


def make_message(dkimctl, tmp, size):
    key = os.path.join(tmp, "bench.example.org.pem")
    kg = json.loads(subprocess.run(
        [dkimctl, "keygen", "--domain", "example.org", "--selector", "bench", "--out", key,
         "--json"], check=True, capture_output=True, text=True).stdout)
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
    head = (b"From: Alice <alice@example.org>\r\nTo: Bob <bob@test.example>\r\n"
            b"Subject: benchmark message\r\nDate: Mon, 24 Nov 2025 16:00:00 +0000\r\n"
            b"Message-ID: <bench@example.org>\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=us-ascii\r\n\r\n")
    body = line * max(1, (size - len(head) - 500) // len(line))
    signed = subprocess.run([dkimctl, "sign", "--key", key, "--domain", "example.org",
                             "--selector", "bench", "-"], input=head + body, check=True,
                            capture_output=True).stdout
    return signed, kg["zone_line"], kg["record"]


class Milter:
    """A running milter process: dkimd or opendkim."""

    def __init__(self, kind, args, tmp, spec, sock_path):
        self.kind = kind
        self.log = open(os.path.join(tmp, kind + ".log"), "ab")
        self.p = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self.spec = spec
        wait_socket(sock_path, self.p, kind)

    def cpu(self):
        return cpu_seconds(self.p.pid)

    def switches(self):
        return context_switches(self.p.pid)

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


def start_dkimd(dkimd, tmp, zone_line, workers):
    zone = os.path.join(tmp, "bench.zone")
    with open(zone, "w") as f:
        f.write(zone_line + "\n")
    path = os.path.join(tmp, "dkimd.milter")
    args = [dkimd, "--socket", os.path.join(tmp, "dkimd.sock"), "--milter", "unix:" + path,
            "--socket-group", "postfix", "--authserv-id", AUTHSERV, "--zone", zone,
            "--log-level", "warning"]
    if workers:
        args += ["--workers", str(workers)]
    return Milter("dkimd", args, tmp, "unix:" + path, path)


def start_opendkim(tmp, zone_line, record):
    sockdir = os.path.join(tmp, "opendkim")
    os.makedirs(sockdir, exist_ok=True)
    pw = pwd.getpwnam("postfix")
    os.chown(sockdir, pw.pw_uid, pw.pw_gid)
    # The key from a file (TestPublicKeys: NAME VALUE, one per line), as dkimd's --zone:
    # neither milter touches the network. Not a libunbound configuration with the record
    # as local-data (ResolverConfiguration): OpenDKIM 2.11 parses that file again in
    # each thread, and concurrent parses crash it ("fatal flex scanner internal error").
    keys = os.path.join(tmp, "opendkim-keys")
    with open(keys, "w") as f:
        f.write("%s %s\n" % (zone_line.split()[0].rstrip("."), record))
    conf = os.path.join(tmp, "opendkim.conf")
    path = os.path.join(sockdir, "opendkim.sock")
    with open(conf, "w") as f:
        f.write("Mode v\nSocket local:%s\nUserID postfix\nUMask 007\nBackground no\n"
                "Syslog no\nAuthservID %s\nTestPublicKeys %s\nSoftwareHeader no\n"
                "AlwaysAddARHeader yes\nQueryCache yes\n" % (path, AUTHSERV, keys))
    return Milter("opendkim", ["/usr/sbin/opendkim", "-f", "-x", conf], tmp, "unix:" + path,
                  path)


def send_all(pf, msg, n, conns):
    """Sends n copies over conns parallel sessions; returns the errors."""
    errors = []
    data = postfix.to_crlf(msg)

    def worker(count):
        try:
            s = pf.smtp()
            for _ in range(count):
                s.sendmail("sender@client.example", [RCPT], data)
            s.quit()
        except Exception as e:  # reported, the run is marked
            errors.append(repr(e))

    per = [n // conns + (1 if i < n % conns else 0) for i in range(conns)]
    threads = [threading.Thread(target=worker, args=(c,)) for c in per]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def clear_maildir(pf):
    for sub in ("new", "cur", "tmp"):
        d = os.path.join(pf.maildir(RCPT), sub)
        if os.path.isdir(d):
            for name in os.listdir(d):
                os.unlink(os.path.join(d, name))


def one_run(pf, msg, n, conns, milter, timeout):
    clear_maildir(pf)
    new = os.path.join(pf.maildir(RCPT), "new")
    cpu0 = milter.cpu() if milter else 0.0
    sw0 = milter.switches() if milter else 0
    t0 = time.time()
    errors = []
    sender = threading.Thread(target=lambda: errors.extend(send_all(pf, msg, n, conns)))
    sender.start()
    count = 0
    last, last_change = -1, time.time()
    while time.time() - t0 < timeout:
        try:
            count = len(os.listdir(new))
        except FileNotFoundError:
            count = 0
        if count >= n:
            break
        if count != last:
            last, last_change = count, time.time()
        elif not sender.is_alive() and time.time() - last_change > 5:
            break  # everything sent (or refused) and nothing more arriving
        time.sleep(0.005)
    elapsed = time.time() - t0
    sender.join()
    cpu = (milter.cpu() - cpu0) if milter else None
    sw = (milter.switches() - sw0) if milter else None
    bad = 0
    if milter:
        for name in os.listdir(new):
            with open(os.path.join(new, name), "rb") as f:
                head = f.read(4096).split(b"\n\n", 1)[0]
            if b"Authentication-Results: " + AUTHSERV.encode() not in head or \
                    b"dkim=pass" not in head:
                bad += 1
    return dict(rate=count / elapsed, elapsed=elapsed, delivered=count, errors=errors,
                cpu_per_msg=(cpu / count if cpu is not None and count else None), bad=bad,
                switches_per_msg=(sw / count if sw is not None and count else None))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=0, help="dkimd --workers (0: its default)")
    ap.add_argument("--timeout", type=float, default=120, help="seconds per run at most")
    args = ap.parse_args()
    why = postfix.available()
    if why or not os.path.exists("/usr/sbin/opendkim"):
        print("cannot run: %s" % (why or "opendkim is not installed"))
        return 2
    dkimd = os.path.join(args.build, "tools", "dkimd")
    dkimctl = os.path.join(args.build, "tools", "dkimctl")
    tmp = tempfile.mkdtemp(prefix="dkimd-pfbench-", dir="/tmp")
    os.chmod(tmp, 0o755)
    milters = {}
    pf = None
    try:
        msg, zone_line, record = make_message(dkimctl, tmp, args.size)
        milters["dkimd"] = start_dkimd(dkimd, tmp, zone_line, args.workers)
        milters["opendkim"] = start_opendkim(tmp, zone_line, record)
        pf = postfix.Postfix(os.path.join(tmp, "postfix"), milter=None)
        pf.start()
        ver = subprocess.run(["/usr/sbin/opendkim", "-V"], capture_output=True,
                             text=True).stdout.split("\n")[0]
        print("# %d x %d-byte message (rsa-sha256 2048, relaxed/relaxed), %d SMTP sessions, "
              "%d runs; %d CPUs; Postfix %s; dkimd %s; %s" % (
                  args.n, len(msg), args.connections, args.runs, os.cpu_count(),
                  subprocess.run(["/usr/sbin/postconf", "-h", "-d", "mail_version"],
                                 capture_output=True, text=True).stdout.strip(),
                  "--workers %d" % args.workers if args.workers else "default workers",
                  ver))
        print("%-9s %3s %9s %8s %9s %12s %12s  %s" % (
            "milter", "run", "msgs/s", "seconds", "delivered", "cpu_us/msg", "wakeups/msg",
            "notes"))
        results = {k: [] for k in ("none", "dkimd", "opendkim")}
        for run in range(1, args.runs + 1):
            for kind in ("none", "dkimd", "opendkim"):
                m = milters.get(kind)
                pf.set(smtpd_milters=m.spec if m else "")
                # A short untimed warm-up: fresh smtpd processes after the reload, and
                # the milter's first connections.
                one_run(pf, msg, 40, args.connections, m, 60)
                r = one_run(pf, msg, args.n, args.connections, m, args.timeout)
                results[kind].append(r)
                notes = []
                if r["delivered"] < args.n:
                    notes.append("only %d delivered in %.0f s" % (r["delivered"], args.timeout))
                if r["errors"]:
                    notes.append("%d send errors: %s" % (len(r["errors"]), r["errors"][0][:80]))
                if r["bad"]:
                    notes.append("%d without %s dkim=pass" % (r["bad"], AUTHSERV))
                print("%-9s %3d %9.0f %8.2f %9d %12s %12s  %s" % (
                    kind, run, r["rate"], r["elapsed"], r["delivered"],
                    "%.0f" % (r["cpu_per_msg"] * 1e6) if r["cpu_per_msg"] is not None else "-",
                    "%.1f" % r["switches_per_msg"] if r["switches_per_msg"] is not None
                    else "-", "; ".join(notes)), flush=True)
        print()
        base = statistics.median(r["rate"] for r in results["none"])
        print("median    msgs/s  ratio-to-none  milter-cpu_us/msg")
        for kind, rs in results.items():
            rate = statistics.median(r["rate"] for r in rs)
            cpus = [r["cpu_per_msg"] for r in rs if r["cpu_per_msg"] is not None]
            print("%-9s %6.0f  %13.2f  %17s" % (kind, rate, rate / base,
                                               "%.0f" % (statistics.median(cpus) * 1e6)
                                               if cpus else "-"))
        bad = sum(r["bad"] + len(r["errors"]) + (args.n - r["delivered"])
                  for rs in results.values() for r in rs)
        if bad:
            print("\n%d messages failed; the milters' logs and Postfix's milter lines:" % bad)
            for m in milters.values():
                m.log.flush()
                with open(m.log.name, errors="replace") as f:
                    print("---- %s ----\n%s" % (m.kind, f.read()[-1500:]))
            print("\n".join([l for l in pf.maillog().splitlines() if "ilter" in l][-15:]))
        return 1 if bad else 0
    finally:
        if pf:
            pf.stop()
        for m in milters.values():
            m.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
