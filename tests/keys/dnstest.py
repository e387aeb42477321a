#!/usr/bin/python3
"""Helpers for the resolver tests: real DNS servers on 127.0.0.1, started and stopped here.

- read_zone(path): the TXT records and '; @directive NAME' lines of a key master file
  (the subset engine/zone.c reads: $ORIGIN, $TTL, parentheses, quoted strings, escapes).
- Unbound(records, ...): writes an unbound.conf serving the records as local-data under
  `local-zone: "." static` (every other name is NXDOMAIN or NODATA), with log-queries so a
  test can count what the server actually received; starts `unbound -d -c CONF` on a free
  port and stops it on exit (context manager).
- Responder(mode): a misbehaving DNS server (UDP and TCP on one port): 'servfail' answers
  every query with SERVFAIL, 'silent' never answers, 'truncate' sets TC over UDP and
  closes TCP connections, 'truncate-ok' sets TC over UDP and answers over TCP with its
  record (a large one is the oversize case), 'switch' answers its record with TTL 0
  until asked for a name starting with the label 'switch-off', then SERVFAILs; 'dark'
  answers its record for every name except those matching the regular expression
  `silent`, which it never answers (a forwarder whose upstream for some domains is
  dead); each counts the queries it saw and logs (monotonic time, name, qtype).
- Authority(addr, records, delegations, silent): a small authoritative server for a
  root or a child zone on addr:53 (any 127/8 address, so referrals need no port),
  answering referrals with glue, wildcard TXT owners ('*.' prefix), NODATA and
  NXDOMAIN; names matching `silent` (or everything, silent=True) are never answered.

Standard library only.
"""

import os
import re
import shutil
import socket
import socketserver
import struct
import subprocess
import tempfile
import threading
import time

UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"


# ---- master files ----

def _tokens(line):
    """Split one line into (text, quoted, raw) tokens; stops at an unquoted ';'."""
    out, i, n = [], 0, len(line)
    while i < n:
        c = line[i]
        if c in " \t\r\n()":
            i += 1
        elif c == ";":
            break
        elif c == '"':
            i += 1
            buf = bytearray()
            while i < n and line[i] != '"':
                if line[i] == "\\" and i + 1 < n:
                    if line[i + 1:i + 4].isdigit() and len(line[i + 1:i + 4]) == 3:
                        buf.append(int(line[i + 1:i + 4]))
                        i += 4
                        continue
                    buf += line[i + 1].encode("latin-1")
                    i += 2
                    continue
                buf += line[i].encode("latin-1")
                i += 1
            i += 1
            out.append((bytes(buf), True))
        else:
            j = i
            while j < n and line[j] not in " \t\r\n();\"":
                j += 2 if line[j] == "\\" else 1
            out.append((line[i:j], False))
            i = j
    return out


def _abs(name, origin):
    if name == "@":
        return origin
    if name.endswith(".") and not name.endswith("\\."):
        return name
    return name + "." + origin if origin not in ("", ".") else name + "."


def read_zone(path):
    """Returns (records, directives): records [(owner, ttl, txt_bytes)], owners absolute
    in presentation form; directives [(kind, name)]."""
    with open(path, encoding="latin-1") as f:
        text = f.read()
    # Join parenthesised continuations into logical lines.
    logical, cur, depth = [], "", 0
    for raw in text.split("\n"):
        m = re.match(r"\s*;\s*@(nxdomain|servfail|timeout)\s+(\S+)", raw)
        if m and depth == 0:
            logical.append(("directive", m.group(1), m.group(2)))
            continue
        stripped = _strip_comment(raw)
        depth += stripped.count("(") - stripped.count(")")
        cur = cur + " " + stripped if cur else raw if not stripped.strip() else stripped
        if depth <= 0:
            logical.append(("line", cur))
            cur, depth = "", 0
    records, directives = [], []
    origin, ttl, last = ".", 3600, None
    for item in logical:
        if item[0] == "directive":
            directives.append((item[1], _abs(item[2], origin)))
            continue
        line = item[1]
        toks = _tokens(line)
        if not toks:
            continue
        first = toks[0][0]
        if not toks[0][1] and first == "$ORIGIN":
            origin = toks[1][0]
            continue
        if not toks[0][1] and first == "$TTL":
            ttl = int(toks[1][0])
            continue
        if line[:1] in (" ", "\t"):
            owner, rest = last, toks
        else:
            owner, rest = _abs(first, origin), toks[1:]
            last = owner
        rttl = ttl
        for _ in range(2):
            if rest and not rest[0][1] and rest[0][0].isdigit():
                rttl = int(rest[0][0])
                rest = rest[1:]
            elif rest and not rest[0][1] and rest[0][0].upper() in ("IN", "CH", "HS"):
                rest = rest[1:]
        if not rest or rest[0][1] or rest[0][0].upper() != "TXT":
            continue
        data = b"".join(t if q else t.encode("latin-1") for t, q in rest[1:])
        records.append((owner, rttl, data))
    return records, directives


def _strip_comment(line):
    out, q, i = [], False, 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            out.append(line[i:i + 2])
            i += 2
            continue
        if c == '"':
            q = not q
        if c == ";" and not q:
            break
        out.append(c)
        i += 1
    return "".join(out)


def txt_rdata(data):
    """Presentation form of one TXT record: 255-byte strings, escaped."""
    chunks = [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]
    out = []
    for ch in chunks:
        s = "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else "\\%03d" % b
                    for b in ch)
        out.append('"%s"' % s)
    return " ".join(out)


# ---- servers ----

def free_port():
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
    for _ in range(100):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            u.close()
            t.close()
    raise RuntimeError("no free port")


class Unbound:
    """unbound serving records (and extra local-data lines) on a free loopback port."""

    def __init__(self, records, extra=(), cnames=(), stubs=(), auth_zones=()):
        self.records, self.extra, self.cnames, self.stubs = records, list(extra), cnames, stubs
        self.auth_zones = auth_zones
        self.dir = tempfile.mkdtemp(prefix="dkd-unbound-")
        self.port = free_port()
        self.log = os.path.join(self.dir, "unbound.log")
        self.proc = None

    def conf_text(self):
        lines = [
            "server:",
            "  interface: 127.0.0.1",
            "  port: %d" % self.port,
            "  do-ip6: no",
            "  do-daemonize: no",
            "  use-syslog: no",
            '  chroot: ""',
            '  username: ""',
            '  pidfile: ""',
            "  directory: \"%s\"" % self.dir,
            "  logfile: \"%s\"" % self.log,
            "  log-queries: yes",
            "  verbosity: 1",
            "  num-threads: 1",
            "  access-control: 127.0.0.0/8 allow",
            '  module-config: "iterator"',
            "  do-not-query-localhost: no",
            # The test names live under RFC 6761 zones too (test., invalid.): serve them.
            '  local-zone: "test." nodefault',
            '  local-zone: "invalid." nodefault',
            '  local-zone: "." static',
        ]
        for owner, ttl, data in self.records:
            lines.append("  local-data: '%s %d IN TXT %s'" % (owner, ttl, txt_rdata(data)))
        for owner, target, ttl in self.cnames:
            lines.append("  local-data: '%s %d IN CNAME %s'" % (owner, ttl, target))
        lines += ["  " + e for e in self.extra]
        for zone, port in self.stubs:
            # Names answered by a misbehaving responder: the static zone must not cover them.
            lines.append('  local-zone: "%s" transparent' % zone)
        for zone, _ in self.auth_zones:
            # Served from a zone file (with its DNSSEC records) instead of local-data.
            lines.append('  local-zone: "%s" transparent' % zone)
        for zone, port in self.stubs:
            lines += ["stub-zone:", '  name: "%s"' % zone, "  stub-addr: 127.0.0.1@%d" % port]
        for zone, path in self.auth_zones:
            lines += ["auth-zone:", '  name: "%s"' % zone, '  zonefile: "%s"' % path,
                      "  for-downstream: yes", "  for-upstream: no"]
        return "\n".join(lines) + "\n"

    def __enter__(self):
        conf = os.path.join(self.dir, "unbound.conf")
        with open(conf, "w", encoding="latin-1") as f:
            f.write(self.conf_text())
        check = subprocess.run([UNBOUND.replace("unbound", "unbound-checkconf"), conf],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError("unbound-checkconf: %s%s" % (check.stdout, check.stderr))
        self.proc = subprocess.Popen([UNBOUND, "-d", "-c", conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("unbound exited: %s" % self.proc.stderr.read().decode())
            if _answers(self.port):
                return self
            time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError("unbound did not answer on port %d" % self.port)

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def queries(self, name=None):
        """Queries the server logged (for name, any case), excluding the start-up probe."""
        try:
            with open(self.log, encoding="latin-1") as f:
                lines = [l for l in f if " TXT IN" in l and "probe.invalid." not in l]
        except OSError:
            return 0
        if name is None:
            return len(lines)
        want = " " + name.lower().rstrip(".") + ". TXT IN"
        return sum(1 for l in lines if want in l.lower())


def _query(name, qtype=16, qid=0x1234):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack(">HH", qtype, 1)


def _answers(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    try:
        s.sendto(_query("probe.invalid"), ("127.0.0.1", port))
        s.recvfrom(4096)
        return True
    except OSError:
        return False
    finally:
        s.close()


def qname_of(req):
    """(lowercased name without the final dot, qtype) of a query, or (None, 0)."""
    try:
        off, labels = 12, []
        while req[off]:
            n = req[off]
            labels.append(req[off + 1:off + 1 + n].decode("ascii", "replace"))
            off += 1 + n
        return ".".join(labels).lower(), struct.unpack(">H", req[off + 1:off + 3])[0]
    except (IndexError, struct.error):
        return None, 0


class Responder:
    """A misbehaving DNS server on a free port, UDP and TCP, in threads."""

    def __init__(self, mode, txt=b"v=DKIM1; p=", silent=None, logfile=None):
        self.mode, self.txt, self.count = mode, txt, 0
        self.silent = re.compile(silent) if silent else None
        self.log = []  # (time.monotonic(), name, qtype) per query
        self.logfile = logfile  # and a "name qtype" line per query there, if given
        self.port = free_port()
        self.lock = threading.Lock()

    def seen(self, name):
        """Monotonic times at which queries for name arrived."""
        with self.lock:
            return [t for t, n, _ in self.log if n == name.lower().rstrip(".")]

    def _reply(self, req, tcp):
        name, qtype = qname_of(req)
        with self.lock:
            self.count += 1
            self.log.append((time.monotonic(), name, qtype))
            if self.logfile:
                with open(self.logfile, "a") as f:
                    f.write("%s %d\n" % (name, qtype))
        if len(req) < 12 or self.mode == "silent":
            return None
        if self.mode == "dark" and (name is None or self.silent.search(name)):
            return None
        qid, flags = struct.unpack(">HH", req[:4])
        end = 12
        while end < len(req) and req[end] != 0:
            end += req[end] + 1
        question = req[12:end + 5]
        rd = flags & 0x0100
        if self.mode == "switch" and b"\x0aswitch-off" in question:
            self.mode = "servfail"
        if self.mode == "servfail":
            return struct.pack(">HHHHHH", qid, 0x8080 | rd | 2, 1, 0, 0, 0) + question
        if self.mode in ("truncate", "truncate-ok") and not tcp:
            return struct.pack(">HHHHHH", qid, 0x8280 | rd, 1, 0, 0, 0) + question
        if self.mode == "truncate" and tcp:
            return None
        # Full answer (TCP in truncate-ok): one TXT record of many strings.
        rdata = b"".join(bytes([len(self.txt[i:i + 255])]) + self.txt[i:i + 255]
                         for i in range(0, len(self.txt), 255))
        # 'switch' answers with TTL 0 so that libunbound does not cache: the test's
        # refreshes must reach this server.
        ttl = 0 if self.mode == "switch" else 60
        ans = b"\xc0\x0c" + struct.pack(">HHIH", 16, 1, ttl, len(rdata)) + rdata
        return struct.pack(">HHHHHH", qid, 0x8480 | rd, 1, 1, 0, 0) + question + ans

    def __enter__(self):
        self.udp, self.tcp = _serve(self, "127.0.0.1", self.port)
        return self

    def __exit__(self, *exc):
        for srv in (self.udp, self.tcp):
            srv.shutdown()
            srv.server_close()


def _serve(outer, addr, port):
    """UDP and TCP servers on addr:port answering with outer._reply(req, tcp), or not."""

    class UDP(socketserver.BaseRequestHandler):
        def handle(self):
            data, sock = self.request
            r = outer._reply(data, False)
            if r is not None:
                sock.sendto(r, self.client_address)

    class TCP(socketserver.BaseRequestHandler):
        def handle(self):
            try:
                hdr = self.request.recv(2)
                if len(hdr) < 2:
                    return
                n = struct.unpack(">H", hdr)[0]
                data = b""
                while len(data) < n:
                    chunk = self.request.recv(n - len(data))
                    if not chunk:
                        return
                    data += chunk
                r = outer._reply(data, True)
                if r is not None:
                    self.request.sendall(struct.pack(">H", len(r)) + r)
            except OSError:
                pass

    socketserver.UDPServer.allow_reuse_address = True
    socketserver.TCPServer.allow_reuse_address = True
    udp = socketserver.ThreadingUDPServer((addr, port), UDP)
    try:
        tcp = socketserver.ThreadingTCPServer((addr, port), TCP)
    except OSError:
        udp.server_close()
        raise
    udp.daemon_threads = tcp.daemon_threads = True
    for srv in (udp, tcp):
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    return udp, tcp


def txt_wire(data):
    """TXT rdata: data as character-strings of at most 255 bytes."""
    return b"".join(bytes([len(data[i:i + 255])]) + data[i:i + 255]
                    for i in range(0, len(data), 255)) or b"\0"


def _wire(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode("ascii")
    return out + b"\0"


def _rr(owner, rtype, ttl, rdata):
    return _wire(owner) + struct.pack(">HHIH", rtype, 1, ttl, len(rdata)) + rdata


def loopback_addresses(n):
    """n addresses in 127/8 whose port 53 is free for UDP and TCP now (a random /24, so
    tests running side by side do not collide); needs root or a low unprivileged port
    start. Raises OSError when port 53 cannot be bound."""
    import random
    rnd = random.Random()
    for _ in range(50):
        base = "127.%d.%d." % (rnd.randrange(1, 255), rnd.randrange(0, 255))
        addrs, ok = [base + str(i) for i in range(1, n + 1)], True
        for a in addrs:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                s = socket.socket(socket.AF_INET, kind)
                try:
                    s.bind((a, 53))
                except OSError as e:
                    if e.errno in (1, 13):  # EPERM, EACCES: never possible here
                        raise
                    ok = False
                finally:
                    s.close()
        if ok:
            return addrs
    raise OSError("no free port 53 in 127/8")


class Authority:
    """An authoritative server for one zone on addr:53 (UDP and TCP), in threads.

    records: {owner: [(type, rdata bytes)]}, owners without the final dot, '*.x' a
    wildcard for any name below x; delegations: {child zone: [(ns name, address)]}
    (referrals carry the NS records and A glue); silent: a regular expression of
    names never answered, or True for a dead server that answers nothing."""

    A, NS, SOA, TXT = 1, 2, 6, 16

    def __init__(self, addr, zone, records=None, delegations=None, silent=None):
        self.addr, self.port, self.zone = addr, 53, zone.lower().rstrip(".")
        self.records = {k.lower(): v for k, v in (records or {}).items()}
        self.delegations = {k.lower(): v for k, v in (delegations or {}).items()}
        self.silent = silent if silent is True else (re.compile(silent) if silent else None)
        self.log, self.count, self.lock = [], 0, threading.Lock()

    def seen(self, name):
        with self.lock:
            return [t for t, n, _ in self.log if n == name.lower().rstrip(".")]

    def _below(self, name, zone):
        return zone == "" or name == zone or name.endswith("." + zone)

    def _reply(self, req, tcp):
        name, qtype = qname_of(req)
        with self.lock:
            self.count += 1
            self.log.append((time.monotonic(), name, qtype))
        if name is None or len(req) < 12 or self.silent is True or (
                self.silent is not None and self.silent.search(name)):
            return None
        qid, flags = struct.unpack(">HH", req[:4])
        end = 12 + len(_wire(name))
        question = req[12:end + 4]
        rd = flags & 0x0100
        soa = _rr(self.zone, self.SOA, 60, _wire("ns." + self.zone) + _wire("h." + self.zone) +
                  struct.pack(">IIIII", 1, 3600, 600, 86400, 60))
        if not self._below(name, self.zone):
            return struct.pack(">HHHHHH", qid, 0x8000 | rd | 5, 1, 0, 0, 0) + question
        # The deepest delegation at or above the name: a referral (not for the DS).
        cut = max((z for z in self.delegations if self._below(name, z)), key=len, default=None)
        if cut is not None and not (name == cut and qtype == 43):
            ns = b"".join(_rr(cut, self.NS, 3600, _wire(h)) for h, _ in self.delegations[cut])
            glue = b"".join(_rr(h, self.A, 3600, socket.inet_aton(a))
                            for h, a in self.delegations[cut] if self._below(h, cut))
            nglue = sum(1 for h, _ in self.delegations[cut] if self._below(h, cut))
            return (struct.pack(">HHHHHH", qid, 0x8000 | rd, 1, 0,
                                len(self.delegations[cut]), nglue) + question + ns + glue)
        rrs = self.records.get(name)
        if rrs is None:
            parent = name.split(".", 1)[1] if "." in name else ""
            while rrs is None and parent and self._below(parent, self.zone):
                rrs = self.records.get("*." + parent)
                parent = parent.split(".", 1)[1] if "." in parent else ""
        if name == self.zone:
            rrs = (rrs or []) + [(self.NS, _wire("ns." + self.zone)), (self.SOA, None)]
        if rrs is None:
            exists = any(o.endswith("." + name) for o in list(self.records) +
                         list(self.delegations))
            rcode = 0 if exists else 3
            return (struct.pack(">HHHHHH", qid, 0x8400 | rd | rcode, 1, 0, 1, 0) + question +
                    soa)
        ans = [(_rr(name, t, 3600, d) if t != self.SOA else soa) for t, d in rrs
               if t == qtype]
        if not ans:
            return struct.pack(">HHHHHH", qid, 0x8400 | rd, 1, 0, 1, 0) + question + soa
        return struct.pack(">HHHHHH", qid, 0x8400 | rd, 1, len(ans), 0, 0) + question + \
            b"".join(ans)

    def __enter__(self):
        self.udp, self.tcp = _serve(self, self.addr, self.port)
        return self

    def __exit__(self, *exc):
        for srv in (self.udp, self.tcp):
            srv.shutdown()
            srv.server_close()
