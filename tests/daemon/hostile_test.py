#!/usr/bin/python3
"""dkimd against hostile and careless clients: the faults a production MTA meets.

Each check starts its own daemon on a temporary socket (helpers from daemon_test.py) and
asserts outcomes, not speeds; the figures it prints (memory peak, time to close) are for
the record.

  unread      connections that pipeline thousands of STATS and never read the answers:
              the daemon's peak RSS stays within its --memory-budget (queued answers
              count against it), memory_used says so, a well-behaved connection is
              still served, and the non-readers are closed after --stall-timeout.
  slow        a frame trickled one byte every second, and connections that never send
              HELLO: closed once --stall-timeout passes (the timeout bounds the whole
              frame, not the gap between bytes), while a live client is served.
  deadline    SIGTERM with --shutdown-timeout shorter than the DNS wait: every request
              received in full is answered (temperror dns-timeout) before the close.
  halfclose   a client that sends its requests and then shutdown(SHUT_WR): every whole
              request is answered, then the server closes.
  refused     a VERIFY_BEGIN refused with ERROR 4 (over max_inflight): its BODY and END
              are discarded silently, and the id may be reused after END.
  ids         PING/STATS reusing an open stream's id (ERROR 8 on the id), PING/STATS/
              SHM_ATTACH with id 0 (ERROR 8 on id 0, close), HELLO with a nonzero id
              (ERROR 8, close), a descriptor sent with a PING (ERROR 8, close), and
              SHM_ATTACH of size 0 (ERROR 1 on its id, the connection goes on).

usage: hostile_test.py DKIMD DKIMCTL   (DKD_SOURCE_ROOT from the environment)
"""

import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemon_test  # noqa: E402
from daemon_test import (  # noqa: E402
    BEGIN, BODY, END, ERROR, E_MALFORMED, E_OVERLOADED, E_PROTOCOL, E_SHUTTING_DOWN,
    PING, PONG, RESULT, SHM_ATTACH, STATS, STATS_REPLY, VERIFY,
    Conn, Daemon, SlowDNS, check, frame, options, parse_error, parse_result,
    parse_stats, shm_region, split_header, stats, zone_records)


def sample(root, name="01-pass-rsa2048.eml"):
    with open(os.path.join(root, "samples", name), "rb") as f:
        return f.read()


def wait_for(pred, timeout, step=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def is_closed(s, timeout):
    """True when the server closed s within timeout (EOF or reset; data is drained)."""
    s.settimeout(timeout)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            d = s.recv(1 << 16)
            if not d:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


def t_unread(dkimd, root, tmp):
    budget = 32 << 20
    nconn, nreq = 48, 20000
    d = Daemon(dkimd, tmp, ["--zone", os.path.join(root, "samples", "keys.zone"),
                            "--workers", "2", "--memory-budget", str(budget),
                            "--max-connections", "64", "--stall-timeout", "3000"], "unread")
    try:
        rss0 = d.vm("VmRSS")
        burst = b"".join(frame(STATS, i + 1) for i in range(nreq))
        conns = []
        for _ in range(nconn):
            c = Conn(d.path)
            c.s.setblocking(False)
            conns.append([c, 0])
        # Push every connection's requests without reading; the daemon stops reading a
        # connection that has its share of answers queued, so sends block (EAGAIN).
        deadline = time.time() + 20
        while time.time() < deadline and any(off < len(burst) for _, off in conns):
            progress = False
            for ent in conns:
                c, off = ent
                if off >= len(burst):
                    continue
                try:
                    n = c.s.send(burst[off:off + 65536])
                    ent[1] = off + n
                    progress = True
                except (BlockingIOError, InterruptedError):
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    ent[1] = len(burst)
            if not progress:
                time.sleep(0.05)
        time.sleep(1.0)
        peak = d.vm("VmHWM")
        live = Conn(d.path)
        live.send(frame(VERIFY, 1, options() + sample(root)))
        f = live.read()
        served = f is not None and f[0] == RESULT and parse_result(f[2])[0][0]["result"] == "pass"
        live.send(frame(STATS, 2))
        f = live.read()
        st = {}
        if f is not None and f[0] == STATS_REPLY:
            st = parse_stats(f[2])
        # A client that pipelines as much but reads: paused and resumed many times over,
        # it gets every answer.
        reader = Conn(d.path)
        reader.s.settimeout(30)
        import threading
        sender = threading.Thread(target=lambda: reader.s.sendall(burst), daemon=True)
        sender.start()
        replies = set()
        while len(replies) < nreq:
            f = reader.read()
            if f is None or f[0] != STATS_REPLY:
                break
            replies.add(f[1])
        sender.join(30)
        check(len(replies) == nreq, "unread: a client pipelining %d STATS and reading gets "
              "every answer through the back-pressure (%d)" % (nreq, len(replies)))
        reader.close()
        sent = sum(off for _, off in conns)
        print("    unread: %d connections pushed %.1f MB of STATS (%d answers' worth); "
              "daemon RSS %.1f MB at start, peak %.1f MB; memory_used %.1f MB; budget %.0f MB"
              % (nconn, sent / 1e6, sent // 12, rss0 / 1e6, peak / 1e6,
                 st.get("memory_used", 0) / 1e6, budget / 1e6))
        check(served, "unread: a well-behaved connection is served beside %d non-readers" % nconn)
        check(peak - rss0 < 2 * budget,
              "unread: peak RSS growth %.1f MB stays within 2x the %d MB memory budget"
              % ((peak - rss0) / 1e6, budget >> 20))
        check(st.get("memory_used", 0) > nconn * ((64 << 10) + (128 << 10)),
              "unread: memory_used (%d) counts the queued answers" % st.get("memory_used", 0))
        # The non-readers stop reading for longer than the stall timeout: closed.
        t0 = time.time()
        n_open = wait_for(lambda: stats(d.path).get("connections", 99) <= 2, 15)
        dt = time.time() - t0
        st = stats(d.path)
        check(bool(n_open), "unread: connections that never read are closed after the stall "
              "timeout (%d open after %.1f s)" % (st.get("connections", -1), dt))
        print("    unread: non-readers closed %.1f s after the burst ended (stall timeout 3 s)"
              % (dt + 1.0))
        check(st.get("memory_used", 1 << 40) < 1 << 20,
              "unread: memory_used back to %d bytes once they are gone" % st.get("memory_used", -1))
        for c, _ in conns:
            c.close()
        live.close()
    finally:
        check(d.stop() == 0, "unread: daemon exits 0")


def t_slow(dkimd, root, tmp):
    d = Daemon(dkimd, tmp, ["--zone", os.path.join(root, "samples", "keys.zone"),
                            "--workers", "1", "--stall-timeout", "3000"], "slow")
    try:
        msg = frame(VERIFY, 1, options() + sample(root))
        trickle = Conn(d.path)
        silent = []
        for _ in range(50):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(d.path)
            silent.append(s)
        # One byte a second: each gap is well under the stall timeout.
        t0 = time.time()
        closed_at = None
        for k in range(12):
            try:
                trickle.s.send(msg[k:k + 1])
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.time() - t0
                break
            time.sleep(1.0)
        if closed_at is None and is_closed(trickle.s, 1.0):
            closed_at = time.time() - t0
        check(closed_at is not None and closed_at < 11,
              "slow: a frame sent one byte a second is closed once the 3 s stall timeout "
              "passes (after %s s)" % ("%.1f" % closed_at if closed_at else "never"))
        gone = sum(1 for s in silent if is_closed(s, 0.2))
        check(gone == len(silent), "slow: %d of %d connections that never sent HELLO closed "
              "after %.0f s" % (gone, len(silent), time.time() - t0))
        live = Conn(d.path)
        live.send(msg)
        f = live.read()
        check(f is not None and f[0] == RESULT, "slow: a live client is served meanwhile")
        # Idle connections after HELLO stay open: MTAs keep them.
        idle = Conn(d.path)
        time.sleep(4.5)
        idle.send(frame(PING, 9, b"x"))
        f = idle.read()
        check(f is not None and f[0] == PONG, "slow: an idle connection past HELLO stays open")
        for s in silent:
            s.close()
        trickle.close()
        live.close()
        idle.close()
    finally:
        check(d.stop() == 0, "slow: daemon exits 0")


def dark_setup(root, dkimctl, selector):
    """A DNS server that never answers one selector, and a sample signed with it."""
    recs = zone_records(os.path.join(root, "samples", "keys.zone"))
    name = "%s._domainkey.example.com" % selector
    dns = SlowDNS(recs, delay=0.0, drop=[name])
    signed = subprocess.run([dkimctl, "sign", "--key",
                             os.path.join(root, "samples", "keys", "rsa2048.pem"), "--domain",
                             "example.com", "--selector", selector, "-"], input=sample(root),
                            capture_output=True, timeout=60).stdout
    return dns, signed


def resolver_args(dns, extra):
    return ["--resolver", "127.0.0.1@%d" % dns.port, "--resolver-option",
            "do-not-query-localhost: no", "--workers", "2", "--cache-entries", "0"] + extra


def t_deadline(dkimd, dkimctl, root, tmp):
    dns, dark = dark_setup(root, dkimctl, "deadline")
    try:
        d = Daemon(dkimd, tmp, resolver_args(dns, ["--shutdown-timeout", "1000",
                                                   "--dns-timeout", "3000",
                                                   "--key-deadline", "20000"]), "deadline")
        conns = [Conn(d.path) for _ in range(4)]
        for c in conns:
            c.send(b"".join(frame(VERIFY, i + 1, options() + dark) for i in range(64)))
        time.sleep(0.3)
        t0 = time.time()
        d.p.send_signal(signal.SIGTERM)
        answered = temperror = 0
        for c in conns:
            seen = set()
            while True:
                f = c.read()
                if f is None:
                    break
                if f[0] == RESULT:
                    seen.add(f[1])
                    sig = parse_result(f[2])[0][0]
                    temperror += sig["result"] == "temperror"
                elif f[0] == ERROR and f[1] != 0 and parse_error(f[2])[0] == E_SHUTTING_DOWN:
                    seen.add(f[1])
            answered += len(seen)
            c.close()
        dt = time.time() - t0
        print("    deadline: %d of 256 answered (%d temperror) %.2f s after SIGTERM "
              "(shutdown timeout 1 s)" % (answered, temperror, dt))
        check(answered == 256, "deadline: every request received in full is answered when "
              "the shutdown timeout expires (%d of 256)" % answered)
        check(temperror == 256, "deadline: keys not found in time give temperror (%d)"
              % temperror)
        try:
            rc = d.p.wait(30)
        except subprocess.TimeoutExpired:
            d.kill()
            rc = None
        d.logf.close()
        check(rc == 0, "deadline: daemon exits 0 (rc %r)" % rc)
    finally:
        dns.close()


def t_halfclose(dkimd, dkimctl, root, tmp):
    recs = zone_records(os.path.join(root, "samples", "keys.zone"))
    dns = SlowDNS(recs, delay=0.5)
    try:
        d = Daemon(dkimd, tmp, resolver_args(dns, []), "half")
        try:
            c = Conn(d.path)
            msg = sample(root)
            c.send(b"".join(frame(VERIFY, i + 1, options() + msg) for i in range(16)))
            hb = split_header(msg)
            c.send(frame(BEGIN, 100, options() + msg[:hb]) + frame(BODY, 100, msg[hb:hb + 10]))
            c.s.shutdown(socket.SHUT_WR)
            got = set()
            while True:
                f = c.read()
                if f is None:
                    break
                if f[0] == RESULT and parse_result(f[2])[0][0]["result"] == "pass":
                    got.add(f[1])
            check(got == set(range(1, 17)), "halfclose: all 16 whole requests answered after "
                  "shutdown(SHUT_WR), then closed (%d)" % len(got))
            c.close()
            check(wait_for(lambda: stats(d.path).get("requests_inflight", 1) == 0, 5),
                  "halfclose: the unfinished stream is dropped")
        finally:
            check(d.stop() == 0, "halfclose: daemon exits 0")
    finally:
        dns.close()


def t_refused(dkimd, root, tmp):
    d = Daemon(dkimd, tmp, ["--zone", os.path.join(root, "samples", "keys.zone"),
                            "--workers", "1", "--max-inflight", "2"], "refused")
    try:
        msg = sample(root)
        hb = split_header(msg)
        c = Conn(d.path)
        # Two streams open (the limit), the third is refused with ERROR 4.
        c.send(frame(BEGIN, 1, options() + msg[:hb]) + frame(BEGIN, 2, options() + msg[:hb]))
        c.send(frame(BEGIN, 3, options() + msg[:hb]))
        f = c.read()
        check(f is not None and f[0] == ERROR and f[1] == 3 and
              parse_error(f[2])[0] == E_OVERLOADED, "refused: third stream gets ERROR 4")
        # Its BODY and END must be swallowed, then the id is free again.
        c.send(frame(BODY, 3, msg[hb:]) + frame(END, 3))
        c.send(frame(BODY, 1, msg[hb:]) + frame(END, 1) + frame(BODY, 2, msg[hb:]) +
               frame(END, 2))
        got = []
        for _ in range(2):
            f = c.read()
            got.append((f[0], f[1]) if f else None)
        check(sorted(got) == [(RESULT, 1), (RESULT, 2)],
              "refused: its BODY and END get no answer; the open streams finish (%r)" % got)
        c.send(frame(VERIFY, 3, options() + msg))
        f = c.read()
        check(f is not None and f[0] == RESULT and f[1] == 3,
              "refused: the id is reused right after END and gets its RESULT (%r)"
              % ((f[0], f[1]) if f else None,))
        c.send(frame(PING, 50))
        f = c.read()
        check(f is not None and f[0] == PONG, "refused: the connection goes on")
        c.close()
    finally:
        check(d.stop() == 0, "refused: daemon exits 0")


def expect_fatal(c, code, what):
    f = c.read()
    ok = f is not None and f[0] == ERROR and f[1] == 0 and parse_error(f[2])[0] == code
    ok = ok and c.read() is None
    check(ok, "%s (got %r)" % (what, (f[0], f[1], parse_error(f[2])[0]) if f and f[0] == ERROR
                               else f and f[:2]))


def t_ids(dkimd, root, tmp):
    d = Daemon(dkimd, tmp, ["--zone", os.path.join(root, "samples", "keys.zone"),
                            "--workers", "1"], "ids")
    try:
        msg = sample(root)
        hb = split_header(msg)
        c = Conn(d.path)
        c.send(frame(BEGIN, 7, options() + msg[:hb]))
        c.send(frame(PING, 7, b"p") + frame(STATS, 7))
        errs = []
        for _ in range(2):
            f = c.read()
            errs.append((f[0], f[1], parse_error(f[2])[0]) if f and f[0] == ERROR else f and f[:2])
        check(errs == [(ERROR, 7, E_PROTOCOL)] * 2,
              "ids: PING and STATS on an open stream's id get ERROR 8 on that id (%r)" % errs)
        c.send(frame(BODY, 7, msg[hb:]) + frame(END, 7))
        f = c.read()
        check(f is not None and f[0] == RESULT and f[1] == 7, "ids: the stream still finishes")
        c.close()
        for ftype, name in ((PING, "PING"), (STATS, "STATS")):
            c = Conn(d.path)
            c.send(frame(ftype, 0))
            expect_fatal(c, E_PROTOCOL, "ids: %s with request_id 0 -> ERROR 8 on id 0, close"
                         % name)
            c.close()
        c = Conn(d.path, do_hello=False)
        c.send(frame(0x01, 5, bytes([1, 1, 0])))
        expect_fatal(c, E_PROTOCOL, "ids: HELLO with a nonzero request_id -> ERROR 8, close")
        c.close()
        fd, _ = shm_region(4096)
        c = Conn(d.path)
        c.send_fds(frame(PING, 3, b"x"), [fd])
        expect_fatal(c, E_PROTOCOL, "ids: a descriptor sent with a PING -> ERROR 8, close")
        c.close()
        c = Conn(d.path)
        c.send_fds(frame(SHM_ATTACH, 0, struct.pack(">Q", 4096)), [fd])
        expect_fatal(c, E_PROTOCOL, "ids: SHM_ATTACH with request_id 0 -> ERROR 8, close")
        c.close()
        c = Conn(d.path)
        c.send_fds(frame(SHM_ATTACH, 4, struct.pack(">Q", 0)), [fd])
        f = c.read()
        check(f is not None and f[0] == ERROR and f[1] == 4 and
              parse_error(f[2])[0] == E_MALFORMED,
              "ids: SHM_ATTACH of size 0 -> ERROR 1 on its id")
        c.send(frame(PING, 5))
        f = c.read()
        check(f is not None and f[0] == PONG, "ids: ... and the connection goes on")
        c.close()
        os.close(fd)
    finally:
        check(d.stop() == 0, "ids: daemon exits 0")


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    dkimd, dkimctl = sys.argv[1], sys.argv[2]
    root = daemon_test.source_root()
    daemon_test.REASONS = daemon_test.load_reasons(root)
    with tempfile.TemporaryDirectory(prefix="dkimd-hostile-") as tmp:
        tests = [
            ("ids", lambda: t_ids(dkimd, root, tmp)),
            ("refused", lambda: t_refused(dkimd, root, tmp)),
            ("halfclose", lambda: t_halfclose(dkimd, dkimctl, root, tmp)),
            ("deadline", lambda: t_deadline(dkimd, dkimctl, root, tmp)),
            ("slow", lambda: t_slow(dkimd, root, tmp)),
            ("unread", lambda: t_unread(dkimd, root, tmp)),
        ]
        return daemon_test.run_named(tests)


if __name__ == "__main__":
    sys.exit(main())
