#!/usr/bin/python3
"""dkimd's milter front end at the protocol level, driven by a small MTA written here
from the milter protocol (no libmilter, no project code), against the real daemon.

  negotiate   version 6 with Postfix's offer: the no-reply flags and HDR_LEADSPC are
              taken, so only OPTNEG and end of message are answered; versions 2 and 4
              are answered at their version with a CONTINUE for every command; an MTA
              that cannot add or change headers is refused (connection closed).
  verify      every sample verified through the milter gets one Authentication-Results
              field inserted at index 0 whose results equal the native protocol's
              (dkimctl verify --socket) for the same bytes.
  forged      fields with our authserv-id (any case, folded, quoted, commented,
              in the middle of the header) are deleted by their occurrence index,
              highest first; fields of other authserv-ids and look-alikes are kept.
  messages    several messages and an ABORT on one connection; QUIT_NC then a new
              SMTP client on the same connection; macros of one message do not leak
              into the next.
  sign        {daemon_name}=ORIGINATING, {auth_authen} and an --internal-hosts client
              are signed (DKIM-Signature at index 0, verified by dkimctl and python3-dkim),
              not verified; a From domain with no key passes unsigned and is counted.
  temperror   a key that times out: --milter-on-temperror accept gives dkim=temperror,
              tempfail gives a 451 REPLYCODE.
  hostile     garbage, a zero length, a huge length, a truncated packet, commands out
              of order, a packet trickled past the stall timeout: each loses its own
              connection only; a well-behaved connection beside them is served.
  activation  systemd socket activation with both sockets (named, and unnamed in
              order) and with the milter's alone; a TCP milter (inet:PORT@127.0.0.1).
  stream      a 50 MB body in 64 KiB chunks: verified, daemon RSS flat.

usage: milter_test.py DKIMD DKIMCTL
"""

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "daemon"))
import daemon_test  # noqa: E402
from daemon_test import Daemon, check, run_named, source_root  # noqa: E402

# Commands and replies (Sendmail's mfdef.h).
C_ABORT, C_BODY, C_CONNECT, C_MACRO, C_EOB, C_HELO = b"A", b"B", b"C", b"D", b"E", b"H"
C_QUIT_NC, C_HEADER, C_MAIL, C_EOH, C_OPTNEG, C_QUIT = b"K", b"L", b"M", b"N", b"O", b"Q"
C_RCPT, C_DATA = b"R", b"T"
R_CONTINUE, R_INSHEADER, R_CHGHEADER, R_REPLYCODE, R_OPTNEG = b"c", b"i", b"m", b"y", b"O"
R_ADDHEADER, R_TEMPFAIL, R_ACCEPT = b"h", b"t", b"a"
FINAL = {R_CONTINUE, R_REPLYCODE, R_TEMPFAIL, R_ACCEPT, b"r", b"d"}

POSTFIX_ACTIONS = 0x1FF
POSTFIX_PROTOCOL = 0x1FFFFF
P_LEADSPC = 0x100000
NR_ALL = 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000 | 0x40000 | 0x80 | 0x80000

AUTHSERV = "mx.test.example"


def packet(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


def z(*strings):
    return b"".join((s if isinstance(s, bytes) else s.encode()) + b"\0" for s in strings)


class MTA:
    """The MTA side of one milter connection."""

    def __init__(self, spec, version=6, actions=POSTFIX_ACTIONS, protocol=POSTFIX_PROTOCOL):
        fam = socket.AF_INET if isinstance(spec, tuple) else socket.AF_UNIX
        self.s = socket.socket(fam, socket.SOCK_STREAM)
        self.s.settimeout(30)
        self.s.connect(spec)
        self.buf = b""
        self.noreply = 0
        self.leadspc = False
        self.version = version
        self.s.sendall(packet(C_OPTNEG, struct.pack(">III", version, actions, protocol)))
        r = self.read()
        if r is None or r[0] != R_OPTNEG:
            self.reply = None
            return
        self.reply = struct.unpack(">III", r[1][:12])
        self.noreply = self.reply[2] & NR_ALL
        self.leadspc = bool(self.reply[2] & P_LEADSPC)

    def read(self):
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    p = self.buf[4:4 + n]
                    self.buf = self.buf[4 + n:]
                    return p[:1], p[1:]
            try:
                d = self.s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                return None
            if not d:
                return None
            self.buf += d

    def send(self, cmd, data=b"", nr_bit=0):
        """Sends a command; reads its CONTINUE when the filter did not take nr_bit."""
        self.s.sendall(packet(cmd, data))
        if nr_bit and not (self.noreply & nr_bit):
            r = self.read()
            check(r is not None and r[0] == R_CONTINUE,
                  "v%d: CONTINUE for command %s" % (self.version, cmd.decode()))

    def macro(self, stage, **kv):
        data = stage + b"".join(z("{%s}" % k if len(k) > 1 else k, v) for k, v in kv.items())
        self.s.sendall(packet(C_MACRO, data))

    def connect(self, host="client.example", addr="192.0.2.1", daemon="smtpd", **macros):
        self.macro(C_CONNECT, daemon_name=daemon, j="mx.test.example", **macros)
        fam = b"4" if ":" not in addr else b"6"
        self.send(C_CONNECT, z(host) + fam + struct.pack(">H", 25) + z(addr), 0x1000)
        self.send(C_HELO, z("client.example"), 0x2000)

    def message(self, msg, mail_macros=None, chunk=65535, rcpts=("bob@example.net",)):
        """Sends one whole message; returns the end-of-message actions and final reply."""
        self.macro(C_MAIL, **(mail_macros or {}))
        self.send(C_MAIL, z("<alice@example.com>", "SIZE=%d" % len(msg)), 0x4000)
        for r in rcpts:
            self.send(C_RCPT, z("<%s>" % r), 0x8000)
        self.send(C_DATA, b"", 0x10000)
        hdr, body = split(msg)
        for name, value in hdr:
            if not self.leadspc and value.startswith(b" "):
                value = value[1:]
            self.send(C_HEADER, name + b"\0" + value + b"\0", 0x80)
        self.send(C_EOH, b"", 0x40000)
        for i in range(0, len(body), chunk):
            self.send(C_BODY, body[i:i + chunk], 0x80000)
        self.macro(C_EOB, i="QUEUEID1")
        self.s.sendall(packet(C_EOB))
        return self.actions()

    def actions(self):
        acts = []
        while True:
            r = self.read()
            if r is None:
                return acts, None
            if r[0] in FINAL:
                return acts, r
            acts.append(r)

    def close(self):
        try:
            self.s.sendall(packet(C_QUIT))
        except OSError:
            pass
        self.s.close()


def split(msg):
    """Header fields as Postfix hands them: (name, value with its leading space), folded
    lines joined with a bare LF; and the body with CRLF line ends."""
    msg = msg.replace(b"\r\n", b"\n")
    head, _, body = msg.partition(b"\n\n")
    fields = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] = (fields[-1][0], fields[-1][1] + b"\n" + line)
        else:
            name, _, value = line.partition(b":")
            fields.append((name, value))
    return fields, body.replace(b"\n", b"\r\n")


def modify(a):
    idx = struct.unpack(">I", a[1][:4])[0]
    name, value = a[1][4:].split(b"\0")[:2]
    return a[0], idx, name.decode(), value.decode("utf-8", "replace")


def inserted(acts, name):
    return [modify(a) for a in acts if a[0] == R_INSHEADER and modify(a)[2] == name]


def samples(root):
    d = os.path.join(root, "samples")
    return [(n, open(os.path.join(d, n), "rb").read()) for n in sorted(os.listdir(d))
            if n.endswith(".eml")]


class Milter:
    def __init__(self, dkimd, tmp, name, extra=()):
        root = source_root()
        self.spec = os.path.join(tmp, name + ".milter")
        self.d = Daemon(dkimd, tmp, ["--milter", "unix:" + self.spec, "--workers", "2",
                                     "--authserv-id", AUTHSERV, "--zone",
                                     os.path.join(root, "samples", "keys.zone")] + list(extra),
                        name)
        deadline = time.time() + 10
        while not os.path.exists(self.spec) and time.time() < deadline:
            time.sleep(0.02)

    def mta(self, **kw):
        return MTA(self.spec, **kw)

    def stats(self):
        return daemon_test.stats(self.d.path)


def native_authres(dkimctl, path, msg, tmp):
    f = os.path.join(tmp, "native.eml")
    with open(f, "wb") as fp:
        fp.write(msg)
    out = subprocess.run([dkimctl, "verify", "--socket", path, "--authserv-id", AUTHSERV,
                          "--json", f], capture_output=True)
    try:
        return json.loads(out.stdout.decode("utf-8", "replace").splitlines()[0])["authentication_results"]
    except (ValueError, IndexError, KeyError):
        return ""


def t_negotiate(dkimd, tmp):
    m = Milter(dkimd, tmp, "neg")
    root = source_root()
    msg = samples(root)[0][1]
    try:
        a = m.mta()
        check(a.reply is not None and a.reply[0] == 6, "v6: OPTNEG answered at version 6")
        check(a.reply is not None and a.reply[1] == 0x11, "v6: actions ADDHDRS|CHGHDRS")
        check(a.noreply == NR_ALL and a.leadspc, "v6: every no-reply flag and HDR_LEADSPC taken")
        a.connect()
        acts, final = a.message(msg)
        check(final is not None and final[0] == R_CONTINUE, "v6: end of message: CONTINUE")
        check(len(inserted(acts, "Authentication-Results")) == 1, "v6: one field inserted")
        a.close()
        for v in (2, 4):
            a = m.mta(version=v)
            check(a.reply is not None and a.reply[0] == v, "v%d: OPTNEG answered at v%d" % (v, v))
            check(a.noreply == 0 and not a.leadspc, "v%d: no version-6 flags" % v)
            a.connect()
            acts, final = a.message(msg)
            ins = inserted(acts, "Authentication-Results")
            check(len(ins) == 1 and not ins[0][3].startswith(" "),
                  "v%d: field inserted without a leading space (the MTA adds it)" % v)
            check(ins and "dkim=pass" in ins[0][3], "v%d: the sample passes" % v)
            a.close()
        a = m.mta(actions=0x01)
        check(a.reply is None, "an MTA that cannot change headers is refused")
        a.s.close()
        a = m.mta(version=1)
        check(a.reply is None, "version 1 is refused")
        a.s.close()
    finally:
        check(m.d.stop() == 0, "negotiate: dkimd exits 0")


def t_verify(dkimd, dkimctl, tmp):
    m = Milter(dkimd, tmp, "ver")
    root = source_root()
    try:
        a = m.mta()
        a.connect()
        for name, msg in samples(root):
            acts, final = a.message(msg)
            ins = inserted(acts, "Authentication-Results")
            ok = len(ins) == 1 and ins[0][1] == 0 and final[0] == R_CONTINUE
            milter_ar = ins[0][3] if ins else ""
            native = native_authres(dkimctl, m.d.path, msg, tmp)
            # Byte for byte the native field's value, with its folds as the MTA takes them.
            same = native != "" and milter_ar == native.split(":", 1)[1].replace("\r\n", "\n")
            if not same:
                print("    milter: %r\n    native: %r" % (milter_ar[:300], native[:300]))
            check(ok and same, "verify %s: one field at index 0, the native protocol's text" % name)
            check(milter_ar.startswith(" %s;" % AUTHSERV), "verify %s: our authserv-id" % name)
        a.close()
        st = m.stats()
        check(st.get("milter.verified", 0) == len(samples(root)),
              "stats: milter.verified %s" % st.get("milter.verified"))
    finally:
        check(m.d.stop() == 0, "verify: dkimd exits 0")


FORGED_FIELDS = [
    (b"Authentication-Results", b" mx.test.example; dkim=pass header.d=example.com"),
    (b"Authentication-Results", b" other.example; dkim=pass"),
    (b"Authentication-Results", b" MX.Test.EXAMPLE;\n\tdkim=pass"),
    (b"Authentication-Results", b" mx.test.example.evil; dkim=pass"),
    (b"Authentication-Results", b"\n\t(forged) mx.test.example 1; spf=pass"),
    (b"Authentication-Results", b" \"mx.test.example\"; dkim=pass"),
    (b"Authentication-Results", b" mx.test.example1; dkim=pass"),
    (b"authentication-results", b" mx.test.example;"),
]
FORGED_OURS = [1, 3, 5, 6, 8]


def forged_message(msg):
    hdr, body = split(msg)
    # Ours and foreign ones above, between and below the signed fields.
    out = FORGED_FIELDS[:3] + hdr[:3] + FORGED_FIELDS[3:6] + hdr[3:] + FORGED_FIELDS[6:]
    return b"".join(n + b":" + v + b"\n" for n, v in out).replace(b"\n", b"\r\n") + \
        b"\r\n" + body


def t_forged(dkimd, tmp):
    m = Milter(dkimd, tmp, "forged")
    root = source_root()
    try:
        a = m.mta()
        a.connect()
        msg = forged_message(samples(root)[0][1])
        acts, final = a.message(msg)
        dels = [modify(x) for x in acts if x[0] == R_CHGHEADER]
        idx = [d[1] for d in dels]
        check(idx == sorted(FORGED_OURS, reverse=True),
              "forged: deleted occurrences %s (want %s, highest first)" %
              (idx, sorted(FORGED_OURS, reverse=True)))
        check(all(d[2].lower() == "authentication-results" and d[3] == "" for d in dels),
              "forged: each deletion is a CHGHEADER with an empty value")
        ins = inserted(acts, "Authentication-Results")
        check(len(ins) == 1 and "dkim=pass" in ins[0][3],
              "forged: our own field inserted; the message still passes")
        check(acts and acts[-1][0] == R_INSHEADER and all(x[0] == R_CHGHEADER for x in acts[:-1]),
              "forged: deletions before the insertion")
        a.close()
    finally:
        check(m.d.stop() == 0, "forged: dkimd exits 0")


def t_messages(dkimd, tmp):
    m = Milter(dkimd, tmp, "msgs")
    root = source_root()
    msgs = samples(root)
    try:
        a = m.mta()
        a.connect()
        for i in range(5):
            acts, final = a.message(msgs[i % 2][1])
            check(len(inserted(acts, "Authentication-Results")) == 1 and final[0] == R_CONTINUE,
                  "messages: message %d on one connection" % (i + 1))
        # ABORT in the middle of a body: the next message is judged on its own.
        a.macro(C_MAIL)
        a.send(C_MAIL, z("<x@example.com>"), 0x4000)
        a.send(C_HEADER, z("From", " x@example.com"), 0x80)
        a.send(C_EOH, b"", 0x40000)
        a.send(C_BODY, b"half a body\r\n", 0x80000)
        a.s.sendall(packet(C_ABORT))
        acts, final = a.message(msgs[0][1])
        ins = inserted(acts, "Authentication-Results")
        check(ins and "dkim=pass" in ins[0][3], "messages: after ABORT the next message passes")
        # A message signed through ORIGINATING, then a plain one: the macro must not leak.
        acts, final = a.message(msgs[0][1], mail_macros={"auth_authen": "alice"})
        check(not inserted(acts, "Authentication-Results"),
              "messages: an authenticated sender's mail is not verified")
        acts, final = a.message(msgs[0][1])
        check(len(inserted(acts, "Authentication-Results")) == 1,
              "messages: the next sender is verified again ({auth_authen} is per message)")
        # QUIT_NC: the connection is kept for the MTA's next SMTP client.
        a.s.sendall(packet(C_QUIT_NC))
        a.connect(daemon="ORIGINATING")
        acts, final = a.message(msgs[0][1])
        check(not inserted(acts, "Authentication-Results"),
              "messages: after QUIT_NC, the new client's {daemon_name} applies")
        a.s.sendall(packet(C_QUIT_NC))
        a.connect()
        acts, final = a.message(msgs[0][1])
        check(len(inserted(acts, "Authentication-Results")) == 1,
              "messages: and the next client's connection macros replace it")
        a.close()
        st = m.stats()
        check(st.get("milter.aborted") == 1, "stats: milter.aborted %s" % st.get("milter.aborted"))
    finally:
        check(m.d.stop() == 0, "messages: dkimd exits 0")


def dkim_verify_py(signed, record):
    code = ("import dkim,sys\n"
            "rec=%r\n"
            "ok=dkim.verify(sys.stdin.buffer.read(), dnsfunc=lambda n, timeout=5: rec)\n"
            "sys.exit(0 if ok else 1)\n" % record)
    return subprocess.run(["/usr/bin/python3", "-c", code], input=signed).returncode == 0


def t_sign(dkimd, dkimctl, tmp):
    root = source_root()
    keydir = os.path.join(tmp, "keys")
    os.makedirs(keydir, exist_ok=True)
    key = os.path.join(keydir, "out.pem")
    kg = subprocess.run([dkimctl, "keygen", "--domain", "example.com", "--selector", "out",
                         "--out", key, "--json"], check=True, capture_output=True, text=True)
    record = json.loads(kg.stdout)["record"]
    zone = os.path.join(tmp, "sign.zone")
    with open(zone, "w") as f:
        f.write(open(os.path.join(root, "samples", "keys.zone")).read())
        f.write('out._domainkey.example.com. 300 IN TXT "%s"\n' % record)
    os.chmod(key, 0o644)
    bad = subprocess.run([dkimd, "--socket", os.path.join(tmp, "bad.sock"), "--milter",
                          "unix:" + os.path.join(tmp, "bad.milter"), "--zone", zone,
                          "--sign-key", "example.com:out:" + key], capture_output=True,
                         timeout=30)
    check(bad.returncode != 0 and b"chmod" in bad.stderr,
          "sign: a key file others may read is refused (%s)" % bad.stderr.decode()[:120].strip())
    os.chmod(key, 0o600)
    m = Milter(dkimd, tmp, "sign", ["--sign-key", "example.com:out:" + key,
                                    "--internal-hosts", "10.0.0.0/8, 2001:db8::/32"])
    try:
        msg = samples(root)[2][1]  # unsigned
        cases = [("daemon_name ORIGINATING", dict(daemon="ORIGINATING"), None),
                 ("auth_authen", {}, {"auth_authen": "alice"}),
                 ("internal host", dict(addr="10.1.2.3"), None),
                 ("internal IPv6 host", dict(addr="2001:db8::25"), None)]
        for what, conn_kw, mail_macros in cases:
            a = m.mta()
            a.connect(**conn_kw)
            acts, final = a.message(msg, mail_macros=mail_macros)
            sig = inserted(acts, "DKIM-Signature")
            ok = len(sig) == 1 and sig[0][1] == 0 and not inserted(acts, "Authentication-Results")
            check(ok, "sign (%s): DKIM-Signature inserted at the top, not verified" % what)
            if sig:
                signed = b"DKIM-Signature:" + sig[0][3].replace("\n", "\r\n").encode() + \
                    b"\r\n" + msg.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                f = os.path.join(tmp, "signed.eml")
                with open(f, "wb") as fp:
                    fp.write(signed)
                v = subprocess.run([dkimctl, "verify", "--zone", zone, f], capture_output=True,
                                   text=True)
                check("pass" in v.stdout and "d=example.com" in v.stdout.replace("header.d", "d"),
                      "sign (%s): dkimctl verifies it: %s" % (what, v.stdout.strip()[:80]))
                check(dkim_verify_py(signed, record.encode()),
                      "sign (%s): python3-dkim verifies it" % what)
            a.close()
        a = m.mta()
        a.connect(daemon="ORIGINATING")
        other = msg.replace(b"alice@example.com", b"carol@example.org")
        acts, final = a.message(other)
        check(not acts and final[0] == R_CONTINUE, "sign: a From domain with no key passes unsigned")
        a.close()
        a = m.mta()
        a.connect(addr="192.0.2.7")
        acts, final = a.message(msg)
        check(inserted(acts, "Authentication-Results") and not inserted(acts, "DKIM-Signature"),
              "sign: an outside client's mail is verified, not signed")
        a.close()
        st = m.stats()
        check(st.get("milter.signed") == 4 and st.get("milter.unsigned_no_key") == 1,
              "stats: milter.signed %s, milter.unsigned_no_key %s" %
              (st.get("milter.signed"), st.get("milter.unsigned_no_key")))
        # SIGHUP re-reads the key files: a rotated key signs the next message; a file
        # made readable by others is refused and the old keys stay.
        key2 = os.path.join(keydir, "new.pem")
        kg = subprocess.run([dkimctl, "keygen", "--domain", "example.com", "--selector", "out",
                             "--out", key2, "--json"], check=True, capture_output=True, text=True)
        record2 = json.loads(kg.stdout)["record"]
        os.replace(key2, key)
        for rec, what in ((record2, "rotated key"), (None, "key readable by others")):
            if rec is None:
                os.chmod(key, 0o644)
            mark = len(m.d.logtext())
            m.d.p.send_signal(signal.SIGHUP)
            deadline = time.time() + 10
            while "SIGHUP" not in m.d.logtext()[mark - 200 if mark > 200 else 0:] and \
                    time.time() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)
            a = m.mta()
            a.connect(daemon="ORIGINATING")
            acts, final = a.message(msg)
            a.close()
            sig = inserted(acts, "DKIM-Signature")
            signed = b"DKIM-Signature:" + sig[0][3].replace("\n", "\r\n").encode() + b"\r\n" + \
                msg.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") if sig else b""
            check(sig and dkim_verify_py(signed, record2.encode()),
                  "sign: after SIGHUP (%s) mail is signed with the new key" % what)
        check("signing keys not reloaded" in m.d.logtext(),
              "sign: the refused reload is logged, the old keys kept")
    finally:
        check(m.d.stop() == 0, "sign: dkimd exits 0")


def t_temperror(dkimd, tmp):
    root = source_root()
    msg = [x for x in samples(root) if "temperror" in x[0]][0][1]
    for policy in ("accept", "tempfail"):
        m = Milter(dkimd, tmp, "temp" + policy, ["--milter-on-temperror", policy])
        try:
            a = m.mta()
            a.connect()
            acts, final = a.message(msg)
            if policy == "accept":
                ins = inserted(acts, "Authentication-Results")
                check(ins and "dkim=temperror" in ins[0][3] and final[0] == R_CONTINUE,
                      "temperror accept: delivered with dkim=temperror")
            else:
                check(final is not None and final[0] == R_REPLYCODE and
                      final[1].startswith(b"451 4.4.3") and not acts,
                      "temperror tempfail: 451 4.4.3 and no change (%r)" %
                      (final[1][:60] if final else None,))
            a.close()
        finally:
            check(m.d.stop() == 0, "temperror %s: dkimd exits 0" % policy)


def closed(s, timeout=10):
    s.settimeout(timeout)
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def t_hostile(dkimd, tmp):
    root = source_root()
    msg = samples(root)[0][1]
    m = Milter(dkimd, tmp, "hostile", ["--stall-timeout", "2000"])
    try:
        good = m.mta()
        good.connect()
        optneg = packet(C_OPTNEG, struct.pack(">III", 6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL))
        bad_inputs = [
            ("garbage", b"GET / HTTP/1.0\r\n\r\n"),
            ("length 0", optneg + struct.pack(">I", 0)),
            ("huge length", optneg + struct.pack(">I", 0x7FFFFFF0) + b"B" + b"x" * 100),
            ("command before OPTNEG", packet(C_HELO, z("x"))),
            ("body before MAIL", optneg + packet(C_BODY, b"x")),
            ("header after end of header", optneg + packet(C_MAIL, z("<a@b>")) +
             packet(C_EOH) + packet(C_HEADER, z("From", " a@b"))),
            ("malformed CONNECT", optneg + packet(C_CONNECT, b"no-nul")),
            ("malformed HEADER", optneg + packet(C_MAIL, z("<a@b>")) + packet(C_HEADER, b"x")),
            ("second OPTNEG", optneg + optneg),
            ("unknown command", optneg + packet(b"Z", b"")),
        ]
        for what, data in bad_inputs:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(m.spec)
            s.sendall(data)
            check(closed(s), "hostile %s: its connection is closed" % what)
            s.close()
        # A truncated packet trickled: closed after the stall timeout, not before.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(m.spec)
        s.sendall(optneg + struct.pack(">I", 100) + b"L")
        t0 = time.time()
        still_open = not closed(s, 1.0)
        gone = closed(s, 6.0)
        check(still_open and gone, "hostile truncated packet: closed after the stall timeout "
              "(%.1f s)" % (time.time() - t0))
        s.close()
        # No OPTNEG at all.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(m.spec)
        check(closed(s, 6.0), "hostile silent peer: closed after the stall timeout")
        s.close()
        acts, final = good.message(msg)
        ins = inserted(acts, "Authentication-Results")
        check(ins and "dkim=pass" in ins[0][3], "hostile: the well-behaved connection is served")
        good.close()
        st = m.stats()
        check(st.get("milter.errors", 0) >= len(bad_inputs),
              "stats: milter.errors %s" % st.get("milter.errors"))
    finally:
        check(m.d.stop() == 0, "hostile: dkimd exits 0")


def t_stream(dkimd, tmp):
    root = source_root()
    msg = samples(root)[2][1]  # unsigned: the body is only hashed by the verifier's check
    m = Milter(dkimd, tmp, "stream")
    try:
        a = m.mta()
        a.connect()
        hdr, _ = split(msg)
        line = b"x" * 998 + b"\r\n"
        a.macro(C_MAIL)
        a.send(C_MAIL, z("<a@example.com>"), 0x4000)
        for n, v in hdr:
            a.send(C_HEADER, n + b"\0" + v + b"\0", 0x80)
        a.send(C_EOH, b"", 0x40000)
        before = m.d.vm("VmRSS")
        chunk = line * 65
        total = 0
        while total < 50 << 20:
            a.send(C_BODY, chunk, 0x80000)
            total += len(chunk)
        a.s.sendall(packet(C_EOB))
        acts, final = a.actions()
        after = m.d.vm("VmHWM")
        ins = inserted(acts, "Authentication-Results")
        check(ins and "dkim=none" in ins[0][3], "stream: 50 MB body answered (dkim=none)")
        check(after - before < 20 << 20, "stream: peak RSS %.1f MB over %.1f MB before" %
              ((after - before) / 1e6, before / 1e6))
        a.close()
    finally:
        check(m.d.stop() == 0, "stream: dkimd exits 0")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def served(spec, msg, what):
    deadline = time.time() + 10
    while True:
        try:
            a = MTA(spec)
            break
        except OSError:
            if time.time() > deadline:
                return check(False, what + ": cannot connect")
            time.sleep(0.05)
    a.connect()
    acts, final = a.message(msg)
    ins = inserted(acts, "Authentication-Results")
    a.close()
    return check(ins and "dkim=pass" in ins[0][3], what)


def activated(dkimd, tmp, socks, names, extra):
    """Starts dkimd with socks passed as fds 3, 4, ... (LISTEN_FDS)."""
    fds = [os.dup(s.fileno()) for s in socks]
    env = dict(os.environ, LISTEN_FDS=str(len(socks)))
    if names:
        env["LISTEN_FDNAMES"] = names

    def setup():
        for i, fd in enumerate(fds):
            os.dup2(fd, 3 + i)
    zone = os.path.join(source_root(), "samples", "keys.zone")
    p = subprocess.Popen(["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"', dkimd, "--zone",
                          zone, "--workers", "1", "--authserv-id", AUTHSERV] + extra,
                         env=env, preexec_fn=setup, close_fds=False,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for fd in fds:
        os.close(fd)
    return p


def stop(p, what):
    p.terminate()
    try:
        check(p.wait(30) == 0, what + ": dkimd exits 0")
    except subprocess.TimeoutExpired:
        p.kill()
        check(False, what + ": dkimd did not stop")


def t_activation(dkimd, tmp):
    msg = samples(source_root())[0][1]
    port = free_port()
    m = Milter(dkimd, tmp, "tcp", ["--milter", "inet:%d@127.0.0.1" % port])
    try:
        served(("127.0.0.1", port), msg, "inet:PORT@127.0.0.1: a TCP milter is served")
    finally:
        check(m.d.stop() == 0, "tcp: dkimd exits 0")
    for names, order in (("dkimd:milter", "named"), ("milter:dkimd", "named, milter first"),
                         ("", "unnamed, dkimd first")):
        nat = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        npath = os.path.join(tmp, "act-%d.sock" % len(order))
        nat.bind(npath)
        nat.listen(16)
        mil = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        mil.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        mil.bind(("127.0.0.1", 0))
        mil.listen(16)
        socks = [mil, nat] if names.startswith("milter") else [nat, mil]
        p = activated(dkimd, tmp, socks, names, ["--milter", "inet:1@127.0.0.1"])
        try:
            served(mil.getsockname(), msg, "activation (%s): the milter socket is served" % order)
            ok = False
            deadline = time.time() + 10
            while not ok and time.time() < deadline:
                try:
                    ok = daemon_test.verify_once(npath, msg)
                except OSError:
                    time.sleep(0.05)
            check(ok, "activation (%s): the dkimd socket is served" % order)
        finally:
            stop(p, "activation (%s)" % order)
            nat.close()
            mil.close()
    mil = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mpath = os.path.join(tmp, "act-milter.sock")
    mil.bind(mpath)
    mil.listen(16)
    p = activated(dkimd, tmp, [mil], "milter", ["--socket", "", "--milter", "unix:/nonexistent/x"])
    try:
        served(mpath, msg, "activation (milter alone): served")
    finally:
        stop(p, "activation (milter alone)")
        mil.close()


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    dkimd, dkimctl = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory(prefix="dkimd-milter-") as tmp:
        tests = [
            ("negotiate", lambda: t_negotiate(dkimd, tmp)),
            ("verify", lambda: t_verify(dkimd, dkimctl, tmp)),
            ("forged", lambda: t_forged(dkimd, tmp)),
            ("messages", lambda: t_messages(dkimd, tmp)),
            ("sign", lambda: t_sign(dkimd, dkimctl, tmp)),
            ("temperror", lambda: t_temperror(dkimd, tmp)),
            ("hostile", lambda: t_hostile(dkimd, tmp)),
            ("stream", lambda: t_stream(dkimd, tmp)),
            ("activation", lambda: t_activation(dkimd, tmp)),
        ]
        return run_named(tests)


if __name__ == "__main__":
    sys.exit(main())
