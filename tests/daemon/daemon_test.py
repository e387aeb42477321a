#!/usr/bin/python3
"""dkimd end to end: start the daemon on a temporary socket and talk the wire protocol
(ipc/PROTOCOL.md) to it with a small stdlib client written here from the spec.

Checks, each bounded in time:
  conformance   every conformance corpus message verified over the socket (whole VERIFY
                with 1 and 32 connections at pipelining depth 64, and streamed in small
                random chunks) gives, per signature, exactly what `dkimctl verify --json`
                gives in-process: result, reason, explanation, detail, d/s/i/a, key bits,
                and the Authentication-Results header; in both policy profiles.
  stream        a 50 MB message streamed in 64 KiB chunks verifies (pass) while the
                daemon's peak RSS (VmHWM) grows by far less than the message size.
  malformed     truncated frames, absurd lengths, a wrong version, garbage, frames before
                HELLO, a header block over the limit, a frame that never completes: an
                ERROR frame or a close, while another connection keeps being served.
  disconnect    clients that leave mid-frame or mid-stream: nothing stays in flight.
  resolver      through --resolver and a slow DNS responder started here: asynchronous
                key completions, and the per-message key deadline (dns-timeout).
  sigterm       SIGTERM with 128 requests waiting on DNS: every one is answered, then
                the daemon exits 0 (under ASan, also with no leak).
  connections   1000 concurrent connections each get an answer.
  shm           the shared memory transport (PROTOCOL.md 4.9): every conformance message
                through VERIFY_SHM gives what VERIFY gives (checked inside conformance);
                SHM_ATTACH without a descriptor, with an unsealed memfd, a plain file, a
                size over the file or over --max-shm, twice, two descriptors at once;
                VERIFY_SHM before attaching, outside the region, overflowing; a client
                rewriting the region while the daemon reads it: each gets its ERROR (or a
                verdict) and the daemon keeps serving everyone.

usage: daemon_test.py DKIMD DKIMCTL   (DKD_SHARED and DKD_SOURCE_ROOT from the environment)
"""

import fcntl
import json
import mmap
import os
import random
import re
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HDR = struct.Struct(">BBHII")
HELLO, HELLO_OK, VERIFY, BEGIN, BODY, END = 0x01, 0x81, 0x02, 0x03, 0x04, 0x05
RESULT, STATS, STATS_REPLY, PING, PONG, ERROR = 0x83, 0x06, 0x86, 0x07, 0x87, 0xFF
SHM_ATTACH, SHM_ATTACH_OK, VERIFY_SHM = 0x08, 0x88, 0x09
F_SHM = 1  # HELLO_OK header flag
E_MALFORMED, E_VERSION, E_TOO_LARGE, E_OVERLOADED = 1, 2, 3, 4
E_SHUTTING_DOWN, E_UNKNOWN, E_PROTOCOL = 5, 6, 8
RESULT_WORDS = ["none", "pass", "fail", "neutral", "policy", "permerror", "temperror"]
IO_TIMEOUT = 60

FAILURES = []


def check(cond, what):
    print("%s: %s" % ("ok" if cond else "FAIL", what), flush=True)
    if not cond:
        FAILURES.append(what)
    return cond


# ---- the wire protocol ----

def frame(ftype, rid, payload=b"", version=1):
    return HDR.pack(version, ftype, 0, rid, len(payload)) + payload


def hello_frame(name=b"daemon_test"):
    return frame(HELLO, 0, bytes([1, 1, len(name)]) + name)


def options(now=None, authserv=None):
    b = b""
    if authserv is not None:
        b += struct.pack(">BH", 1, len(authserv)) + authserv
    if now is not None:
        b += struct.pack(">BHq", 2, 8, now)
    return struct.pack(">H", len(b)) + b


def split_header(msg):
    """Length of the header block through its empty line (LF or CRLF), as the engine."""
    pos = 0
    while pos < len(msg):
        if msg.startswith(b"\r\n", pos):
            return pos + 2
        if msg.startswith(b"\n", pos):
            return pos + 1
        nl = msg.find(b"\n", pos)
        if nl < 0:
            return len(msg)
        pos = nl + 1
    return len(msg)


class Conn:
    def __init__(self, path, do_hello=True, timeout=IO_TIMEOUT):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""
        self.hello_ok = None
        self.last_flags = 0
        if do_hello:
            self.s.sendall(hello_frame())
            f = self.read()
            if f is None or f[0] != HELLO_OK:
                raise RuntimeError("no HELLO_OK: %r" % (f,))
            p = f[2]
            (ver, max_frame, max_msg, max_hdr, max_inflight, max_chunk) = struct.unpack(
                ">B3xIQIII", p[:28])
            self.hello_ok = dict(version=ver, max_frame=max_frame, max_message=max_msg,
                                 max_header=max_hdr, max_inflight=max_inflight,
                                 max_chunk=max_chunk, flags=self.last_flags)

    def send(self, data):
        self.s.sendall(data)

    def read(self):
        """One frame (type, request_id, payload), or None at EOF / reset."""
        while True:
            if len(self.buf) >= 12:
                ver, t, flags, rid, plen = HDR.unpack(self.buf[:12])
                if len(self.buf) >= 12 + plen:
                    self.last_flags = flags
                    p = self.buf[12:12 + plen]
                    self.buf = self.buf[12 + plen:]
                    return (t, rid, p)
            try:
                d = self.s.recv(1 << 20)
            except (ConnectionResetError, BrokenPipeError):
                return None
            if not d:
                return None
            self.buf += d

    def send_fds(self, data, fds):
        socket.send_fds(self.s, [data], fds)

    def close(self):
        self.s.close()


def shm_region(size, seal=True):
    """A memfd of size bytes, sealed against shrinking as PROTOCOL.md 4.9 asks; returns
    (fd, writable mmap)."""
    fd = os.memfd_create("daemon_test", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, size)
    if seal:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
    return fd, mmap.mmap(fd, size)


def shm_attach(c, rid, fd, size):
    """Sends SHM_ATTACH with fd; returns the answer frame."""
    c.send_fds(frame(SHM_ATTACH, rid, struct.pack(">Q", size)), [fd] if fd is not None else [])
    return c.read()


def verify_shm_frame(rid, now, off, length, authserv=None):
    return frame(VERIFY_SHM, rid, options(now, authserv) + struct.pack(">QQ", off, length))


def latin1_fallback(b):
    """UTF-8, with each invalid byte read as Latin-1: what dkimctl's JSON writes."""
    t = b.decode("utf-8", "surrogateescape")
    return "".join(chr(ord(ch) - 0xDC00) if 0xDC80 <= ord(ch) <= 0xDCFF else ch for ch in t)


def parse_result(p):
    off = 0

    def take(n):
        nonlocal off
        v = p[off:off + n]
        if len(v) != n:
            raise ValueError("short RESULT")
        off += n
        return v

    def str16():
        (n,) = struct.unpack(">H", take(2))
        return latin1_fallback(take(n))

    (nsigs,) = struct.unpack(">H", take(2))
    sigs = []
    for _ in range(nsigs):
        res, dnssec, reason, flags, bits, signed, total = struct.unpack(">BBHHIQQ", take(26))
        sig = dict(result=RESULT_WORDS[res], reason=REASONS[reason], dnssec=dnssec,
                   key_testing=bool(flags & 1), has_l=bool(flags & 2), key_bits=bits,
                   body_signed=signed, body_total=total)
        for name in ("explanation", "detail", "d", "s", "i", "a", "b_prefix"):
            sig[name] = str16()
        sigs.append(sig)
    (alen,) = struct.unpack(">I", take(4))
    authres = latin1_fallback(take(alen))
    if off != len(p):
        raise ValueError("trailing bytes in RESULT")
    return sigs, authres


def parse_error(p):
    code, n = struct.unpack(">HH", p[:4])
    return code, p[4:4 + n].decode("utf-8", "replace")


def parse_stats(p):
    (count,) = struct.unpack(">H", p[:2])
    off, out = 2, {}
    for _ in range(count):
        n = p[off]
        name = p[off + 1:off + 1 + n].decode()
        (v,) = struct.unpack(">Q", p[off + 1 + n:off + 9 + n])
        out[name] = v
        off += 9 + n
    return out


def load_reasons(root):
    """Reason codes by number, from the X-macro list of reason.h (its order is the enum's;
    the comment line above the list does not start with whitespace + X)."""
    text = open(os.path.join(root, "engine", "include", "dkimd", "reason.h")).read()
    return re.findall(r'^\s+X\([A-Z0-9_]+, "([a-z0-9-]+)"', text, re.M)


def summary(sigs, authres):
    """The fields compared with dkimctl's JSON."""
    keys = ("result", "reason", "explanation", "detail", "d", "s", "i", "a", "key_bits",
            "key_testing")
    return ([tuple(s[k] for k in keys) for s in sigs], authres)


def json_summary(obj):
    keys = ("result", "reason", "explanation", "detail", "d", "s", "i", "a", "key_bits",
            "key_testing")
    return ([tuple(s[k] for k in keys) for s in obj["signatures"]],
            obj["authentication_results"])


# ---- the daemon ----

class Daemon:
    def __init__(self, dkimd, tmp, args, name="d"):
        self.path = os.path.join(tmp, name + ".sock")
        self.log = os.path.join(tmp, name + ".log")
        self.logf = open(self.log, "wb")
        self.p = subprocess.Popen([dkimd, "--socket", self.path] + args,
                                  stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError("dkimd exited %d: %s" % (self.p.returncode, self.logtext()))
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.path)
                s.close()
                return
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError("dkimd did not start listening")

    def logtext(self):
        if not self.logf.closed:
            self.logf.flush()
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")[-3000:]

    def vm(self, field):
        with open("/proc/%d/status" % self.p.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self, timeout=30):
        """SIGTERM and wait; returns the exit status (None if it had to be killed)."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        self.logf.close()
        if self.p.returncode != 0:
            print("    dkimd exited %d; its log ends:\n%s" % (self.p.returncode,
                                                           self.logtext()[-2500:]))
        return self.p.returncode

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def stats(path):
    c = Conn(path)
    c.send(frame(STATS, 1))
    f = c.read()
    c.close()
    return parse_stats(f[2]) if f and f[0] == STATS_REPLY else {}


def wait_idle(path, timeout=10):
    """Stats once requests_inflight has dropped to 0 (a closed connection is freed
    asynchronously), or the last stats seen."""
    deadline = time.time() + timeout
    st = {}
    while time.time() < deadline:
        st = stats(path)
        if st.get("requests_inflight") == 0 and st.get("connections") == 1:
            break
        time.sleep(0.05)
    return st


# ---- request drivers ----

def run_pipelined(path, reqs, depth=64, streamed=False, seed=0, shm=False):
    """Sends reqs [(msg, now)] on one connection with up to depth outstanding; returns
    {index: (type, payload)}. shm: every message is placed in a shared region (at a
    random gap after the previous one) and sent as VERIFY_SHM."""
    rnd = random.Random(seed)
    c = Conn(path)
    out, nxt, pending = {}, 0, 0
    places = []
    if shm:
        size = sum(len(m) + 64 for m, _ in reqs) + 4096
        fd, region = shm_region(size)
        pos = 0
        for m, _ in reqs:
            pos += rnd.randint(0, 63)
            region[pos:pos + len(m)] = m
            places.append((pos, len(m)))
            pos += len(m)
        f = shm_attach(c, 0xFFFFFFFF, fd, size)
        os.close(fd)
        if f is None or f[0] != SHM_ATTACH_OK:
            c.close()
            return {}
    try:
        while len(out) < len(reqs):
            while pending < depth and nxt < len(reqs):
                msg, now = reqs[nxt]
                rid = nxt + 1
                if streamed:
                    h = split_header(msg)
                    data = frame(BEGIN, rid, options(now) + msg[:h])
                    pos = h
                    while pos < len(msg):
                        n = rnd.randint(1, 3000)
                        data += frame(BODY, rid, msg[pos:pos + n])
                        pos += n
                    data += frame(END, rid)
                elif shm:
                    data = verify_shm_frame(rid, now, *places[nxt])
                else:
                    data = frame(VERIFY, rid, options(now) + msg)
                c.send(data)
                nxt += 1
                pending += 1
            f = c.read()
            if f is None:
                break
            out[f[1] - 1] = (f[0], f[2])
            pending -= 1
    finally:
        c.close()
    return out


def compare(results, reqs, expected, label):
    bad = []
    for i, (msg, now) in enumerate(reqs):
        got = results.get(i)
        exp = expected[i]
        if got is None:
            bad.append("request %d: no answer" % i)
        elif got[0] != RESULT:
            bad.append("request %d: frame type 0x%x %r" % (i, got[0], got[1][:80]))
        elif summary(*parse_result(got[1])) != exp:
            bad.append("request %d: %r != %r" % (i, summary(*parse_result(got[1])), exp))
    for b in bad[:5]:
        print("   ", label, b)
    return not bad


# ---- checks ----

def t_conformance(dkimd, dkimctl, shared, tmp):
    corpus = os.path.join(shared, "conformance")
    entries = []
    for s in sorted(os.listdir(corpus)):
        man = os.path.join(corpus, s, "expected.jsonl")
        if not os.path.exists(man):
            continue
        for line in open(man):
            e = json.loads(line)
            entries.append((os.path.join(corpus, s, e["zone"]),
                            os.path.join(corpus, s, e["file"]), e.get("now")))
    check(len(entries) > 100, "conformance: %d corpus messages found" % len(entries))
    profiles = {"strict": [], "permissive": ["--allow-sha1", "--min-rsa-bits", "512"]}
    for pname, flags in profiles.items():
        zones = sorted(set(z for z, _, _ in entries))
        for zi, zone in enumerate(zones):
            group = [(f, now) for z, f, now in entries if z == zone]
            # In-process reference, one dkimctl call per verification time.
            expected = {}
            for now in set(n for _, n in group):
                files = [f for f, n in group if n == now]
                argv = [dkimctl, "verify", "--json", "--zone", zone] + flags + files
                if now is not None:
                    argv += ["--now", str(now)]
                p = subprocess.run(argv, capture_output=True, timeout=300)
                for line in p.stdout.decode().splitlines():
                    obj = json.loads(line)
                    expected[(obj["file"], now)] = json_summary(obj)
            reqs, exp = [], []
            for f, now in group:
                if (f, now) not in expected:
                    continue  # dkimctl could not process it (reported by its own tests)
                reqs.append((open(f, "rb").read(), now))
                exp.append(expected[(f, now)])
            d = Daemon(dkimd, tmp, ["--zone", zone, "--workers", "2"] + flags, "conf")
            try:
                label = "%s %s" % (pname, os.path.relpath(zone, corpus))
                # libdkimd (through dkimctl verify --socket) prints exactly what in-process
                # verification prints.
                same = True
                for now in set(n for _, n in group):
                    files = [f for f, n in group if n == now]
                    tail = files + (["--now", str(now)] if now is not None else [])
                    a = subprocess.run([dkimctl, "verify", "--json", "--zone", zone] + flags +
                                       tail, capture_output=True, timeout=300)
                    b = subprocess.run([dkimctl, "verify", "--json", "--socket", d.path] +
                                       tail, capture_output=True, timeout=300)
                    if a.stdout != b.stdout or a.returncode != b.returncode:
                        same = False
                        print("    dkimctl --socket differs:", b.stderr.decode()[:300])
                check(same, "conformance %s: dkimctl verify --socket output identical to "
                      "--zone" % label)
                ok = compare(run_pipelined(d.path, reqs), reqs, exp, label)
                check(ok, "conformance %s: %d messages, 1 connection, depth 64" %
                      (label, len(reqs)))
                ok = compare(run_pipelined(d.path, reqs, streamed=True, seed=zi), reqs, exp,
                             label)
                check(ok, "conformance %s: streamed in random chunks" % label)
                ok = compare(run_pipelined(d.path, reqs, shm=True, seed=zi), reqs, exp, label)
                check(ok, "conformance %s: through shared memory (VERIFY_SHM)" % label)
                # 32 connections at once, each sending the whole group (repeated so that
                # each connection has at least 64 requests in flight at some point).
                many = reqs * max(1, (128 + len(reqs) - 1) // len(reqs))
                many_exp = exp * max(1, (128 + len(reqs) - 1) // len(reqs))
                res = [None] * 32

                def worker(k):
                    res[k] = run_pipelined(d.path, many, seed=k)
                ths = [threading.Thread(target=worker, args=(k,)) for k in range(32)]
                t0 = time.time()
                for t in ths:
                    t.start()
                for t in ths:
                    t.join(300)
                dt = time.time() - t0
                ok = all(r is not None and compare(r, many, many_exp, label) for r in res)
                check(ok, "conformance %s: 32 connections x %d requests, depth 64 "
                      "(%.0f messages/s)" % (label, len(many), 32 * len(many) / dt))
            finally:
                check(d.stop() == 0, "conformance daemon exits 0" +
                      ("" if d.p.returncode == 0 else ": " + d.logtext()))


def t_stream(dkimd, dkimctl, root, tmp):
    size = 50 << 20
    raw = os.path.join(tmp, "big.eml")
    line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
    with open(raw, "wb") as f:
        f.write(b"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\n"
                b"Subject: big\r\nDate: Thu, 20 Nov 2025 10:00:00 +0000\r\n"
                b"Message-ID: <big@example.com>\r\n\r\n")
        f.write(line * (size // len(line)))
    signed = subprocess.run([dkimctl, "sign", "--key",
                             os.path.join(root, "samples", "keys", "rsa2048.pem"),
                             "--domain", "example.com", "--selector", "rsa2048", raw],
                            capture_output=True, timeout=300)
    if not check(signed.returncode == 0, "stream: signed a 50 MB message"):
        print(signed.stderr.decode()[:500])
        return
    msg = signed.stdout
    zone = os.path.join(root, "samples", "keys.zone")
    d = Daemon(dkimd, tmp, ["--zone", zone, "--workers", "2"], "stream")
    try:
        c = Conn(d.path)
        rss0 = d.vm("VmRSS")
        h = split_header(msg)
        c.send(frame(BEGIN, 7, options() + msg[:h]))
        chunk = 64 * 1024
        t0 = time.time()
        for pos in range(h, len(msg), chunk):
            c.send(frame(BODY, 7, msg[pos:pos + chunk]))
        c.send(frame(END, 7))
        f = c.read()
        dt = time.time() - t0
        hwm = d.vm("VmHWM")
        c.close()
        ok = f is not None and f[0] == RESULT and parse_result(f[2])[0][0]["result"] == "pass"
        check(ok, "stream: 50 MB streamed message verifies (pass) in %.2f s" % dt)
        print("    daemon VmRSS before %.1f MB, VmHWM after %.1f MB, message %.0f MB" %
              (rss0 / 1e6, hwm / 1e6, len(msg) / 1e6))
        check(hwm - rss0 < 16 << 20, "stream: peak RSS grew by %.1f MB (< 16 MB)" %
              ((hwm - rss0) / 1e6))
    finally:
        check(d.stop() == 0, "stream daemon exits 0")


def expect_error_or_close(c, codes, what):
    """Reads until an ERROR with one of codes (then expects EOF) or EOF."""
    deadline = time.time() + 10
    while time.time() < deadline:
        f = c.read()
        if f is None:
            return check(True, what + ": connection closed")
        if f[0] == ERROR:
            code, text = parse_error(f[2])
            ok = code in codes
            if ok and f[1] == 0:
                ok = c.read() is None
            return check(ok, "%s: ERROR %d (%s)%s" % (what, code, text,
                                                    ", then closed" if f[1] == 0 else ""))
    return check(False, what + ": no answer")


def verify_once(path, msg):
    c = Conn(path)
    c.send(frame(VERIFY, 1, options() + msg))
    f = c.read()
    c.close()
    return f is not None and f[0] == RESULT


def t_malformed(dkimd, root, tmp):
    zone = os.path.join(root, "samples", "keys.zone")
    sample = open(os.path.join(root, "samples", "01-pass-rsa2048.eml"), "rb").read()
    d = Daemon(dkimd, tmp, ["--zone", zone, "--workers", "2", "--max-header", "64k",
                            "--max-message", "1m", "--stall-timeout", "1500"], "bad")
    try:
        good = Conn(d.path)  # kept open and used between the bad ones

        def good_ok(after):
            good.send(frame(VERIFY, 99, options() + sample))
            f = good.read()
            check(f is not None and f[0] == RESULT, "another connection served after " + after)

        # Truncated frame, then the client closes.
        c = Conn(d.path)
        c.send(HDR.pack(1, VERIFY, 0, 5, 100) + b"short")
        c.close()
        good_ok("a truncated frame")
        # Absurd length.
        c = Conn(d.path)
        c.send(HDR.pack(1, VERIFY, 0, 5, 0xFFFFFFF0))
        expect_error_or_close(c, [E_TOO_LARGE], "absurd payload length")
        c.close()
        good_ok("an absurd length")
        # Wrong version, before and after HELLO.
        c = Conn(d.path, do_hello=False)
        c.send(frame(HELLO, 0, b"\x01\x01\x00", version=7))
        expect_error_or_close(c, [E_VERSION], "wrong version in HELLO")
        c.close()
        c = Conn(d.path)
        c.send(frame(PING, 3, b"x", version=2))
        expect_error_or_close(c, [E_VERSION], "wrong version after HELLO")
        c.close()
        # HELLO offering only versions the server lacks.
        c = Conn(d.path, do_hello=False)
        c.send(frame(HELLO, 0, b"\x05\x09\x00"))
        expect_error_or_close(c, [E_VERSION], "HELLO without a common version")
        c.close()
        # Garbage.
        rnd = random.Random(4)
        for k in range(5):
            c = Conn(d.path, do_hello=False)
            c.send(bytes(rnd.randrange(256) for _ in range(200)))
            expect_error_or_close(c, [E_VERSION, E_PROTOCOL, E_TOO_LARGE, E_MALFORMED],
                                  "garbage %d" % k)
            c.close()
        good_ok("garbage")
        # A request before HELLO; a second HELLO; an unknown type; a server type.
        c = Conn(d.path, do_hello=False)
        c.send(frame(PING, 1, b"x"))
        expect_error_or_close(c, [E_PROTOCOL], "request before HELLO")
        c.close()
        c = Conn(d.path)
        c.send(hello_frame())
        expect_error_or_close(c, [E_PROTOCOL], "second HELLO")
        c.close()
        for t in (0x42, RESULT):
            c = Conn(d.path)
            c.send(frame(t, 1, b"abc"))
            expect_error_or_close(c, [E_MALFORMED], "frame type 0x%x from a client" % t)
            c.close()
        # A malformed option block.
        c = Conn(d.path)
        c.send(frame(VERIFY, 1, b"\x00\x05\x09\x00\x01z" + sample))
        expect_error_or_close(c, [E_MALFORMED], "unknown verify option")
        c.close()
        # A header block that never ends: over max-header, whole and streamed. These
        # are request-level errors: the connection goes on.
        endless = b"X-Filler: " + b"a" * 70 + b"\r\n"
        endless = endless * (100 * 1024 // len(endless))
        c = Conn(d.path)
        c.send(frame(VERIFY, 11, options() + endless))
        f = c.read()
        check(f is not None and f[0] == ERROR and f[1] == 11 and
              parse_error(f[2])[0] == E_TOO_LARGE, "whole message whose header never ends: "
              "ERROR too large on its id")
        c.send(frame(BEGIN, 12, options() + endless))
        f = c.read()
        check(f is not None and f[0] == ERROR and f[1] == 12 and
              parse_error(f[2])[0] == E_TOO_LARGE, "VERIFY_BEGIN over max-header: ERROR too "
              "large")
        c.send(frame(BODY, 12, b"ignored") + frame(END, 12))
        c.send(frame(PING, 13, b"still here"))
        f = c.read()
        check(f is not None and f[0] == PONG and f[2] == b"still here",
              "the connection goes on after a request-level error (BODY/END swallowed)")
        # Streamed past max-message: ERROR 3 early, later BODY/END ignored, id reusable.
        h = split_header(sample)
        c.send(frame(BEGIN, 14, options() + sample[:h]))
        for _ in range(20):
            c.send(frame(BODY, 14, b"y" * 60000 + b"\r\n"))
        f = c.read()
        check(f is not None and f[0] == ERROR and f[1] == 14 and
              parse_error(f[2])[0] == E_TOO_LARGE, "stream over max-message: ERROR too large")
        c.send(frame(END, 14))
        c.send(frame(VERIFY, 14, options() + sample))
        f = c.read()
        check(f is not None and f[0] == RESULT and f[1] == 14, "the id is free after END")
        # BODY for an unknown id; an id in use.
        c.send(frame(BODY, 77, b"x"))
        f = c.read()
        check(f is not None and f[0] == ERROR and parse_error(f[2])[0] == E_UNKNOWN,
              "VERIFY_BODY for no open stream: ERROR unknown request")
        c.send(frame(BEGIN, 20, options() + sample[:h]) + frame(BEGIN, 20, options() + b"A: b\n"))
        f = c.read()
        check(f is not None and f[0] == ERROR and f[1] == 20 and
              parse_error(f[2])[0] == E_PROTOCOL, "VERIFY_BEGIN with an id in use: ERROR 8")
        c.send(frame(BODY, 20, sample[h:]) + frame(END, 20))
        f = c.read()
        check(f is not None and f[0] == RESULT and f[1] == 20, "the first stream goes on")
        c.close()
        # A frame that never completes (slowloris) does not hold up others.
        slow = Conn(d.path)
        slow.send(HDR.pack(1, VERIFY, 0, 30, 1000000) + b"\x00\x00" + sample[:100])
        good_ok("a frame that never completes")
        mem = stats(d.path).get("memory_used", 1 << 40)
        check(mem < 512 * 1024, "a 1 MB frame announced but not sent pins no memory "
              "(memory_used %d bytes)" % mem)
        # The stalled frame and a stalled stream are closed after --stall-timeout.
        stream = Conn(d.path)
        stream.send(frame(BEGIN, 31, options() + sample[:split_header(sample)]))
        idle = Conn(d.path)  # idle between requests: must stay open
        t0 = time.time()
        expect_error_or_close(slow, [E_MALFORMED], "frame stalled past --stall-timeout")
        expect_error_or_close(stream, [E_MALFORMED], "stream stalled past --stall-timeout")
        dt = time.time() - t0
        # Loose: it only catches a stall timeout that never fires (CI machines are loaded).
        check(dt < 30, "stalled clients closed within %.1f s" % dt)
        idle.send(frame(PING, 5, b"alive"))
        f = idle.read()
        check(f is not None and f[0] == PONG, "an idle connection is kept open")
        idle.close()
        stream.close()
        slow.close()
        # Pipelining over max_inflight gets ERROR overloaded, not a stall.
        c = Conn(d.path)
        lim = c.hello_ok["max_inflight"]
        data = b"".join(frame(BEGIN, k + 1, options() + sample[:h]) for k in range(lim + 1))
        c.send(data)
        f = c.read()
        check(f is not None and f[0] == ERROR and f[1] == lim + 1 and
              parse_error(f[2])[0] == E_OVERLOADED,
              "request %d over max_inflight %d: ERROR overloaded" % (lim + 1, lim))
        c.close()
        st = wait_idle(d.path)
        check(st.get("requests_inflight") == 0, "malformed: no request left in flight (%r)" %
              st.get("requests_inflight"))
        good.close()
    finally:
        check(d.stop() == 0, "malformed daemon exits 0")


def t_disconnect(dkimd, root, tmp):
    zone = os.path.join(root, "samples", "keys.zone")
    sample = open(os.path.join(root, "samples", "02-pass-ed25519.eml"), "rb").read()
    h = split_header(sample)
    d = Daemon(dkimd, tmp, ["--zone", zone, "--workers", "2"], "disc")
    try:
        for k in range(50):
            c = Conn(d.path)
            if k % 3 == 0:
                c.send(frame(BEGIN, 1, options() + sample[:h]) + frame(BODY, 1, sample[h:h + 10]))
            elif k % 3 == 1:
                full = frame(VERIFY, 1, options() + sample)
                c.send(full[:len(full) // 2])
            else:
                c.send(b"".join(frame(VERIFY, i + 1, options() + sample) for i in range(64)))
            c.close()
        st = wait_idle(d.path)
        check(st.get("requests_inflight") == 0 and st.get("connections") == 1,
              "disconnect mid-message: nothing left in flight (inflight %r, connections %r)" %
              (st.get("requests_inflight"), st.get("connections")))
        check(verify_once(d.path, sample), "disconnect: the daemon still serves")
    finally:
        check(d.stop() == 0, "disconnect daemon exits 0 (under ASan: no leak)")


# ---- a slow DNS responder for the resolver tests ----

class SlowDNS:
    """Answers TXT queries from a dict after `delay` seconds; names in `drop` are never
    answered. Binds 127.0.0.1 on a free UDP port."""

    def __init__(self, records, delay, drop=()):
        self.records = {k.lower(): v for k, v in records.items()}
        self.delay, self.drop = delay, set(drop)
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))
        self.s.settimeout(0.2)
        self.port = self.s.getsockname()[1]
        self.queries = 0
        self.running = True
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def loop(self):
        while self.running:
            try:
                q, addr = self.s.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.queries += 1
            threading.Timer(self.delay, self.answer, args=(q, addr)).start()

    def answer(self, q, addr):
        try:
            qid, flags, qd = struct.unpack(">HHH", q[:6])
            off, labels = 12, []
            while q[off]:
                n = q[off]
                labels.append(q[off + 1:off + 1 + n].decode("ascii", "replace"))
                off += 1 + n
            qtype, = struct.unpack(">H", q[off + 1:off + 3])
            question = q[12:off + 5]
            name = ".".join(labels).lower()
            if name in self.drop:
                return
            rec = self.records.get(name)
            an = b""
            rcode = 3  # NXDOMAIN
            if rec is not None:
                rcode = 0
                if qtype == 16:
                    data = rec.encode()
                    rdata = b"".join(bytes([len(data[i:i + 255])]) + data[i:i + 255]
                                     for i in range(0, len(data), 255))
                    an = struct.pack(">HHHIH", 0xC00C, 16, 1, 3600, len(rdata)) + rdata
            hdr = struct.pack(">HHHHHH", qid, 0x8180 | rcode | (flags & 0x0100), 1,
                              1 if an else 0, 0, 0)
            self.s.sendto(hdr + question + an, addr)
        except (IndexError, struct.error, OSError):
            pass

    def close(self):
        self.running = False
        self.t.join(2)
        self.s.close()


def zone_records(path):
    """TXT records of a simple master file (one record per line, quoted strings)."""
    recs = {}
    for line in open(path):
        m = re.match(r'^(\S+)\s+(?:\d+\s+)?IN\s+TXT\s+(.*)$', line.strip())
        if m:
            recs[m.group(1).rstrip(".")] = "".join(re.findall(r'"([^"]*)"', m.group(2)))
    return recs


def t_resolver_sigterm(dkimd, dkimctl, root, tmp):
    recs = zone_records(os.path.join(root, "samples", "keys.zone"))
    dns = SlowDNS(recs, delay=0.4, drop=["blackhole._domainkey.example.com"])
    sample = open(os.path.join(root, "samples", "01-pass-rsa2048.eml"), "rb").read()
    bh = subprocess.run([dkimctl, "sign", "--key",
                         os.path.join(root, "samples", "keys", "rsa2048.pem"), "--domain",
                         "example.com", "--selector", "blackhole", "-"], input=sample,
                        capture_output=True, timeout=60).stdout
    args = ["--resolver", "127.0.0.1@%d" % dns.port, "--resolver-option",
            "do-not-query-localhost: no", "--workers", "2", "--key-deadline", "1500",
            "--dns-timeout", "10000", "--cache-entries", "0"]
    try:
        d = Daemon(dkimd, tmp, args, "res")
        try:
            c = Conn(d.path)
            t0 = time.time()
            c.send(frame(VERIFY, 1, options() + sample))
            f = c.read()
            dt = time.time() - t0
            ok = f is not None and f[0] == RESULT and parse_result(f[2])[0][0]["result"] == "pass"
            check(ok and dt >= 0.35, "resolver: key from a slow DNS server, pass after %.2f s"
                  % dt)
            t0 = time.time()
            c.send(frame(VERIFY, 2, options() + bh))
            f = c.read()
            dt = time.time() - t0
            sig = parse_result(f[2])[0][0] if f is not None and f[0] == RESULT else {}
            check(sig.get("result") == "temperror" and sig.get("reason") == "dns-timeout" and
                  1.3 < dt < 30, "resolver: unanswered key -> temperror dns-timeout at the "
                  "1.5 s key deadline (after %.2f s: %s %s)" % (dt, sig.get("result"), sig.get("reason")))
            st = stats(d.path)
            check("keycache.misses" in st and st.get("engine.key_timeouts", 0) >= 1,
                  "stats carry resolver and deadline counters")
            c.close()
        finally:
            check(d.stop() == 0, "resolver daemon exits 0")
        # SIGTERM with requests waiting for DNS: all answered.
        d = Daemon(dkimd, tmp, args, "term")
        conns = [Conn(d.path) for _ in range(2)]
        for c in conns:
            c.send(b"".join(frame(VERIFY, i + 1, options() + sample) for i in range(64)))
        time.sleep(0.15)
        d.p.send_signal(signal.SIGTERM)
        answered = 0
        for c in conns:
            seen = set()
            while True:
                f = c.read()
                if f is None:
                    break
                if f[0] == RESULT and parse_result(f[2])[0][0]["result"] == "pass":
                    seen.add(f[1])
            answered += len(seen)
            c.close()
        check(answered == 128, "sigterm: %d of 128 requests waiting on DNS answered" % answered)
        try:
            rc = d.p.wait(30)
        except subprocess.TimeoutExpired:
            d.kill()
            rc = None
        check(rc == 0, "sigterm: daemon exits 0 (rc %r)" % rc)
        d.logf.close()
        check(not os.path.exists(d.path), "sigterm: socket file removed")
    finally:
        dns.close()


def t_admin(dkimd, dkimctl, root, tmp):
    """Socket mode, the uid allow-list, the configuration file, SIGHUP (zone reload, log
    reopen, log level) and systemd socket activation."""
    sample = open(os.path.join(root, "samples", "01-pass-rsa2048.eml"), "rb").read()
    full = open(os.path.join(root, "samples", "keys.zone")).read()
    zone = os.path.join(tmp, "reload.zone")
    with open(zone, "w") as f:
        f.write("\n".join(l for l in full.splitlines() if not l.startswith("rsa2048.")) + "\n")
    logp = os.path.join(tmp, "admin.log")
    conf = os.path.join(tmp, "dkimd.conf")
    with open(conf, "w") as f:
        f.write("# test configuration\nzone = %s\nworkers = 1\nlog = %s\n"
                "log-level = info\nsocket-mode = 0600\nauthserv-id = mx.test\n" % (zone, logp))
    d = Daemon(dkimd, tmp, ["--config", conf], "admin")
    try:
        mode = os.stat(d.path).st_mode & 0o777
        check(mode == 0o600, "admin: socket mode from the config file (0%o)" % mode)

        def one():
            c = Conn(d.path)
            c.send(frame(VERIFY, 1, options() + sample))
            f = c.read()
            c.close()
            return parse_result(f[2]) if f and f[0] == RESULT else ([{}], "")
        sigs, ar = one()
        check(sigs[0].get("reason") == "key-not-found" and ar.startswith(
            "Authentication-Results: mx.test;"), "admin: key absent before reload; "
              "authserv-id from the config file")
        with open(zone, "w") as f:
            f.write(full)
        os.rename(logp, logp + ".1")
        d.p.send_signal(signal.SIGHUP)
        # The daemon reloads, then reopens the log and says so: wait for that line, not
        # merely for the file, so a slow (sanitizer) build cannot race the check.
        deadline = time.time() + 30
        while time.time() < deadline and not (
                os.path.exists(logp) and "reloaded" in open(logp).read()):
            time.sleep(0.05)
        sigs, _ = one()
        check(sigs[0].get("result") == "pass", "admin: SIGHUP reloads the zone file")
        check(os.path.exists(logp) and "reloaded" in open(logp).read(),
              "admin: SIGHUP reopens the log file")
    finally:
        check(d.stop() == 0, "admin daemon exits 0")
    # The documented example configuration parses, every commented-out key included.
    example = open(os.path.join(root, "tools", "dkimd.conf.example")).read()
    p = subprocess.run([dkimd, "--config", os.path.join(root, "tools", "dkimd.conf.example"),
                        "--check-config"], capture_output=True, timeout=30)
    check(p.returncode == 0, "admin: dkimd.conf.example is valid: %s" % p.stderr.decode()[:200])
    keys = set()
    for line in example.splitlines():
        m = re.match(r"^#?([a-z][a-z0-9-]*) = (.*?)(\s{2,}\(repeatable\))?$", line)
        if m:
            keys.add(m.group(1))
    helptext = subprocess.run([dkimd, "--help"], capture_output=True, timeout=30).stdout.decode()
    flags = set(re.findall(r"--([a-z][a-z0-9-]*)", helptext)) - {
        "config", "print-config", "check-config", "help"}
    check(flags <= keys, "admin: every option is documented in dkimd.conf.example "
          "(missing: %s)" % sorted(flags - keys))
    for key in sorted(keys):
        m = re.search(r"^#?%s = (.*?)(\s{2,}\(repeatable\))?$" % re.escape(key), example, re.M)
        val = m.group(1)
        if key in ("socket-owner", "allow-uid"):
            val = "0"
        if key in ("socket-group", "allow-gid"):
            val = "0"
        p = subprocess.run([dkimd, "--check-config", "--%s=%s" % (key, val)],
                           capture_output=True, timeout=30)
        if key in ("resolver", "resolv-conf", "resolver-option", "trust-anchor"):
            continue  # checked with a key source at start-up, not here
        check(p.returncode == 0, "admin: example value '%s = %s' is accepted" % (key, val))
    # The uid allow-list: nobody's uid only, so this test's own uid is refused.
    nobody = 65534 if os.getuid() != 65534 else 65533
    d = Daemon(dkimd, tmp, ["--zone", zone, "--workers", "1", "--allow-uid", str(nobody)],
               "allow")
    try:
        c = Conn(d.path, do_hello=False)
        try:
            c.send(hello_frame())
            closed = c.read() is None
        except OSError:
            closed = True  # closed before our HELLO went out
        check(closed, "admin: a peer uid not in allow-uid is closed at once")
        c.close()
    finally:
        check(d.stop() == 0, "allow-list daemon exits 0")
    d = Daemon(dkimd, tmp, ["--zone", zone, "--workers", "1", "--allow-uid",
                            str(os.getuid())], "allow2")
    try:
        check(verify_once(d.path, sample), "admin: a peer uid in allow-uid is served")
    finally:
        d.stop()
    # systemd socket activation: fd 3, LISTEN_PID = the daemon's pid (set by exec).
    path = os.path.join(tmp, "act.sock")
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(path)
    ls.listen(16)
    lfd = os.dup(ls.fileno())  # never 3 itself: dup2(3, 3) would keep close-on-exec
    env = dict(os.environ, LISTEN_FDS="1")
    p = subprocess.Popen(["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"', dkimd, "--zone",
                          zone, "--workers", "1", "--socket", os.path.join(tmp, "unused.sock")],
                         env=env, preexec_fn=lambda: os.dup2(lfd, 3), close_fds=False,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ok = False
        deadline = time.time() + 10
        while time.time() < deadline and not ok:
            try:
                ok = verify_once(path, sample)
            except OSError:
                time.sleep(0.05)
        check(ok and not os.path.exists(os.path.join(tmp, "unused.sock")),
              "admin: systemd socket activation (LISTEN_FDS, fd 3) is served")
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            check(p.wait(30) == 0, "socket-activated daemon exits 0")
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        os.close(lfd)
        ls.close()



def t_connections(dkimd, root, tmp):
    zone = os.path.join(root, "samples", "keys.zone")
    sample = open(os.path.join(root, "samples", "02-pass-ed25519.eml"), "rb").read()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 4096)
    if want < 2100:
        check(False, "connections: RLIMIT_NOFILE hard limit %d is below 2100" % hard)
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    d = Daemon(dkimd, tmp, ["--zone", zone, "--workers", "2"], "many")
    conns = []
    try:
        t0 = time.time()
        for _ in range(1000):
            conns.append(Conn(d.path, do_hello=False))
        for c in conns:
            c.send(hello_frame() + frame(VERIFY, 1, options() + sample))
        ok = 0
        for c in conns:
            f1, f2 = c.read(), c.read()
            if f1 and f1[0] == HELLO_OK and f2 and f2[0] == RESULT:
                ok += 1
        dt = time.time() - t0
        st = stats(d.path)
        check(ok == 1000 and st.get("connections") == 1001,
              "connections: 1000 concurrent connections served (%d answered, %r open, "
              "%.2f s)" % (ok, st.get("connections"), dt))
    finally:
        for c in conns:
            c.close()
        check(d.stop() == 0, "connections daemon exits 0")


def expect_request_error(c, rid, code, what):
    """The next frame is ERROR code on rid (the connection goes on)."""
    f = c.read()
    ok = f is not None and f[0] == ERROR and f[1] == rid and parse_error(f[2])[0] == code
    detail = parse_error(f[2]) if f is not None and f[0] == ERROR else f
    return check(ok, "%s: ERROR %d on the request (%r)" % (what, code, detail))


def t_shm(dkimd, root, tmp):
    zone = os.path.join(root, "samples", "keys.zone")
    samples = sorted(f for f in os.listdir(os.path.join(root, "samples")) if f.endswith(".eml"))
    msgs = [open(os.path.join(root, "samples", f), "rb").read() for f in samples]
    now = 1764003600
    d = Daemon(dkimd, tmp, ["--zone", zone, "--workers", "2", "--max-shm", "1m",
                            "--max-message", "256k", "--max-header", "64k"], "shm")
    try:
        good = Conn(d.path)
        check(good.hello_ok["flags"] & F_SHM, "shm: HELLO_OK announces the shared memory flag")
        # the socket answers, for comparison
        expected = []
        for k, m in enumerate(msgs):
            good.send(frame(VERIFY, k + 1, options(now) + m))
            f = good.read()
            expected.append(summary(*parse_result(f[2])) if f and f[0] == RESULT else None)

        def alive(what):
            good.send(frame(PING, 77, b"x"))
            f = good.read()
            return check(f is not None and f[0] == PONG, "shm: %s, the daemon still serves" %
                         what)

        c = Conn(d.path)
        c.send(verify_shm_frame(5, now, 0, 10))
        expect_request_error(c, 5, E_PROTOCOL, "shm: VERIFY_SHM before SHM_ATTACH")
        f = shm_attach(c, 6, None, 4096)
        check(f is not None and f[0] == ERROR and f[1] == 6 and parse_error(f[2])[0] ==
              E_MALFORMED, "shm: SHM_ATTACH without a descriptor: ERROR 1 (%r)" %
              (parse_error(f[2]) if f and f[0] == ERROR else f,))
        fd, _ = shm_region(4096, seal=False)
        f = shm_attach(c, 7, fd, 4096)
        os.close(fd)
        check(f is not None and f[0] == ERROR and "sealed" in parse_error(f[2])[1],
              "shm: an unsealed memfd is refused (%r)" % (parse_error(f[2]) if f else f,))
        plain = os.path.join(tmp, "plain.bin")
        with open(plain, "wb") as pf:
            pf.write(b"\0" * 4096)
        fd = os.open(plain, os.O_RDONLY)
        f = shm_attach(c, 8, fd, 4096)
        os.close(fd)
        check(f is not None and f[0] == ERROR and f[1] == 8,
              "shm: a plain file (no seals) is refused (%r)" %
              (parse_error(f[2]) if f and f[0] == ERROR else f,))
        fd, _ = shm_region(4096)
        f = shm_attach(c, 9, fd, 8192)
        os.close(fd)
        check(f is not None and f[0] == ERROR and f[1] == 9,
              "shm: a size over the memfd's is refused (%r)" %
              (parse_error(f[2]) if f and f[0] == ERROR else f,))
        fd, _ = shm_region(2 << 20)
        f = shm_attach(c, 10, fd, 2 << 20)
        os.close(fd)
        check(f is not None and f[0] == ERROR and parse_error(f[2])[0] == E_TOO_LARGE,
              "shm: a region over --max-shm is refused with ERROR 3")
        # a good one, then every sample at odd offsets, equal to the socket's answers
        size = 1 << 20
        fd, region = shm_region(size)
        f = shm_attach(c, 11, fd, size)
        os.close(fd)
        check(f is not None and f[0] == SHM_ATTACH_OK and f[1] == 11, "shm: SHM_ATTACH_OK")
        fd2, _ = shm_region(4096)
        f = shm_attach(c, 12, fd2, 4096)
        os.close(fd2)
        expect_request_error_ok = f is not None and f[0] == ERROR and f[1] == 12 and \
            parse_error(f[2])[0] == E_PROTOCOL
        check(expect_request_error_ok, "shm: a second SHM_ATTACH gets ERROR 8")
        same = True
        for k, m in enumerate(msgs):
            off = 1 + 4099 * k
            region[off:off + len(m)] = m
            c.send(verify_shm_frame(100 + k, now, off, len(m)))
            f = c.read()
            got = summary(*parse_result(f[2])) if f and f[0] == RESULT else f
            if got != expected[k]:
                same = False
                print("    %s: %r != %r" % (samples[k], got, expected[k]))
        check(same, "shm: %d samples through VERIFY_SHM, answers equal to VERIFY's" % len(msgs))
        c.send(verify_shm_frame(200, now, size - 10, 11))
        expect_request_error(c, 200, E_MALFORMED, "shm: a range past the region's end")
        c.send(verify_shm_frame(201, now, 300 << 10, 300 << 10))
        expect_request_error(c, 201, E_TOO_LARGE, "shm: a message over --max-message")
        # no empty line: the whole 200 KB is the header block, over the engine's 64k limit
        region[0:200000] = b"X-Long: " + b"a" * 199990 + b"\r\n"
        c.send(verify_shm_frame(203, now, 0, 200000))
        f = c.read()
        check(f is not None and f[0] == ERROR and f[1] == 203 and
              parse_error(f[2])[0] == E_TOO_LARGE,
              "shm: a header block over --max-header gets ERROR 3 (%r)" %
              (parse_error(f[2]) if f and f[0] == ERROR else f,))
        c.send(frame(VERIFY_SHM, 202, options(now) + struct.pack(">QQ", 2**64 - 2, 4)))
        expect_error_or_close(c, [E_MALFORMED], "shm: offset + length overflowing 64 bits")
        c.close()
        alive("after the refusals")

        # Two descriptors with one frame: the connection is closed, nothing leaks.
        c = Conn(d.path)
        fa, _ = shm_region(4096)
        fb, _ = shm_region(4096)
        c.send_fds(frame(SHM_ATTACH, 3, struct.pack(">Q", 4096)), [fa, fb])
        os.close(fa)
        os.close(fb)
        expect_error_or_close(c, [E_PROTOCOL], "shm: two descriptors at once")
        c.close()

        # A client that rewrites the region while the daemon verifies from it: the
        # verdicts are whatever the bytes were, the daemon survives, and the next clean
        # request passes.
        c = Conn(d.path)
        fd, region = shm_region(size)
        f = shm_attach(c, 1, fd, size)
        os.close(fd)
        base = msgs[0] * (200000 // len(msgs[0]))
        region[0:len(base)] = base
        stop = threading.Event()

        def scribble():
            rnd = random.Random(7)
            junk = [b"\r", b"\n", b" ", b"\t", b":", b";", b"=", b"\0", b"\xff", b"a"]
            while not stop.is_set():
                for _ in range(200):
                    pos = rnd.randrange(len(base))
                    region[pos:pos + 1] = rnd.choice(junk)
                region[0:len(base)] = base
        th = threading.Thread(target=scribble)
        th.start()
        answered = 0
        try:
            for k in range(300):
                c.send(verify_shm_frame(1000 + k, now, 0, len(base)))
                f = c.read()
                if f is not None and f[0] in (RESULT, ERROR) and f[1] == 1000 + k:
                    answered += 1
        finally:
            stop.set()
            th.join()
        check(answered == 300, "shm: 300 requests over a region rewritten under them, %d "
              "answered" % answered)
        off = len(base) + 1
        region[off:off + len(msgs[0])] = msgs[0]
        c.send(verify_shm_frame(5000, now, off, len(msgs[0])))
        f = c.read()
        check(f is not None and f[0] == RESULT and
              summary(*parse_result(f[2])) == expected[0],
              "shm: a clean request afterwards on the same connection verifies as before")
        c.close()
        alive("after the rewritten region")
        st = stats(d.path)
        check(st.get("shm.attached", 0) >= 2 and st.get("shm.requests", 0) >= 300,
              "shm: stats count attachments (%r) and requests (%r)" %
              (st.get("shm.attached"), st.get("shm.requests")))
        good.close()
    finally:
        check(d.stop() == 0, "shm daemon exits 0")

    # --max-shm 0: no flag in HELLO_OK, SHM_ATTACH refused.
    d = Daemon(dkimd, tmp, ["--zone", zone, "--workers", "1", "--max-shm", "0"], "noshm")
    try:
        c = Conn(d.path)
        check(not (c.hello_ok["flags"] & F_SHM), "shm: --max-shm 0 clears the HELLO_OK flag")
        fd, _ = shm_region(4096)
        f = shm_attach(c, 1, fd, 4096)
        os.close(fd)
        check(f is not None and f[0] == ERROR and parse_error(f[2])[0] == E_PROTOCOL,
              "shm: --max-shm 0 refuses SHM_ATTACH with ERROR 8")
        c.close()
    finally:
        check(d.stop() == 0, "noshm daemon exits 0")


def source_root():
    return os.environ.get("DKD_SOURCE_ROOT", os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))))


def run_named(tests):
    """Runs [(name, fn)], only the names in $DKD_DAEMON_TESTS when it is set; a check that
    raises counts as failed and does not hide the others. Returns the exit status."""
    import traceback
    only = os.environ.get("DKD_DAEMON_TESTS", "").split(",")
    for name, fn in tests:
        if only != [""] and name not in only:
            continue
        try:
            fn()
        except Exception as e:
            traceback.print_exc()
            check(False, "%s raised %s: %s" % (name, type(e).__name__, e))
    print("%d failed" % len(FAILURES))
    return 1 if FAILURES else 0


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    dkimd, dkimctl = sys.argv[1], sys.argv[2]
    root = source_root()
    shared = os.environ.get("DKD_SHARED", os.path.join(root, "..", "shared"))
    global REASONS
    REASONS = load_reasons(root)
    with tempfile.TemporaryDirectory(prefix="dkimd-test-") as tmp:
        tests = [
            ("malformed", lambda: t_malformed(dkimd, root, tmp)),
            ("disconnect", lambda: t_disconnect(dkimd, root, tmp)),
            ("connections", lambda: t_connections(dkimd, root, tmp)),
            ("admin", lambda: t_admin(dkimd, dkimctl, root, tmp)),
            ("resolver", lambda: t_resolver_sigterm(dkimd, dkimctl, root, tmp)),
            ("stream", lambda: t_stream(dkimd, dkimctl, root, tmp)),
            ("shm", lambda: t_shm(dkimd, root, tmp)),
            ("conformance", lambda: t_conformance(dkimd, dkimctl, shared, tmp)),
        ]
        return run_named(tests)


REASONS = []

if __name__ == "__main__":
    sys.exit(main())
