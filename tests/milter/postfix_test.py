#!/usr/bin/python3
"""dkimd's milter behind a real Postfix (Debian's), end to end over SMTP.

A private Postfix (postfix.py: its own config, queue and Maildirs under a temporary
directory, loopback ports only) runs with smtpd_milters pointing at a dkimd started
here on a Unix socket; mail goes in with smtplib and is read back from the Maildir.

  conformance  every message of the shared conformance corpus, sent inbound, arrives
               with one Authentication-Results field of our authserv-id, at the top,
               equal (per signature and as text) to what `dkimctl verify --json` gives
               for the delivered bytes without it. Where the delivered bytes verify
               differently from the file as sent, Postfix changed the message: each
               such case is printed (NOTE) with the first differing line. Entries whose
               corpus expectation holds at a fixed time ('now') are listed: dkimd and
               dkimctl both use the real clock here, so they are still compared.
  forged       Authentication-Results fields claiming our authserv-id (several, any
               case, folded, quoted, with a comment, one in the middle of the header)
               are all gone on delivery; another authserv-id's field and a look-alike
               are kept.
  session      five messages on one SMTP session, each verified.
  large        a 50 MB signed message is delivered and verified (pass) while dkimd's
               resident set stays flat (VmHWM after vs VmRSS before, < 20 MB).
  8bit         8-bit bodies (UTF-8, Latin-1), 1,500-byte body and header lines, in
               simple and relaxed canonicalization: delivered, pass, equal to dkimctl.
               (Lines over Postfix's line_length_limit, 2048, are printed as NOTEs.)
  outbound     mail through the ORIGINATING port is signed by dkimd (--sign-key), not
               verified; the delivered message verifies with python3-dkim and with
               dkimctl; the same mail on the inbound port is verified, not signed.
  restart      dkimd killed (SIGKILL) in the middle of an SMTP session: with
               milter_default_action=tempfail the client gets 4xx and nothing is
               delivered; with accept the mail is delivered without our field; dkimd
               started again on the same socket: mail flows with our field again.

No Postfix (or not root): prints a SKIP line and exits 77; under CI (CI=true) that is a
failure instead. The last line is `N passed, N failed`.

usage: postfix_test.py DKIMD DKIMCTL   (DKD_SHARED from the environment)
"""

import json
import os
import re
import signal
import smtplib
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, "..", "daemon"))
import postfix  # noqa: E402
from postfix import field_name, header_fields, unfold  # noqa: E402

AUTHSERV = "mx.test.example"
SKIP = 77
PASSED = []
FAILED = []
NOTES = []
BYTES_CHANGED = {}  # why -> messages whose bytes Postfix changed (beyond a final CRLF)


def check(cond, what):
    print("%s: %s" % ("ok" if cond else "FAIL", what), flush=True)
    (PASSED if cond else FAILED).append(what)
    return cond


def note(what):
    print("NOTE: " + what, flush=True)
    NOTES.append(what)


def source_root():
    return os.environ.get("DKD_SOURCE_ROOT", os.path.normpath(os.path.join(here, "..", "..")))


# ---- dkimd ----

class Dkimd:
    """dkimd serving the milter on the Unix socket spec_path (group postfix, mode 0660,
    so Postfix's smtpd may connect), its native socket beside it."""

    def __init__(self, dkimd, tmp, zone, spec_path, extra=(), name="dkimd"):
        self.spec_path = spec_path
        self.sock = os.path.join(tmp, name + ".sock")
        self.log = os.path.join(tmp, name + ".log")
        self.logf = open(self.log, "ab")
        args = [dkimd, "--socket", self.sock, "--milter", "unix:" + spec_path,
                "--socket-group", "postfix", "--socket-mode", "0660",
                "--authserv-id", AUTHSERV, "--zone", zone, "--workers", "2",
                "--log-level", "debug"] + list(extra)
        self.p = subprocess.Popen(args, stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while not (os.path.exists(spec_path) and os.path.exists(self.sock)):
            if self.p.poll() is not None or time.time() > deadline:
                self.kill()
                raise RuntimeError("dkimd did not start: " + self.logtext())
            time.sleep(0.02)
        # Bound is not yet accepting; a native connection proves the loop runs.
        import socket
        while True:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(spec_path)
                s.close()
                break
            except OSError:
                if time.time() > deadline:
                    self.kill()
                    raise RuntimeError("dkimd does not accept: " + self.logtext())
                time.sleep(0.02)

    def logtext(self):
        self.logf.flush()
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")[-3000:]

    def vm(self, field):
        with open("/proc/%d/status" % self.p.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self):
        """SIGTERM and wait; the exit status (None when it had to be killed)."""
        rc = self.p.poll()
        if rc is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                rc = self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
                rc = None
        self.logf.close()
        return rc

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        if not self.logf.closed:
            self.logf.close()


# ---- looking at delivered mail ----

DELIVERY_FIELDS = (b"return-path", b"x-original-to", b"delivered-to")


def servid(field):
    """The authserv-id an Authentication-Results field claims (comments, quotes and
    folding removed, lower case), or None for another field."""
    if field_name(field) != b"authentication-results":
        return None
    v = field.split(b":", 1)[1].decode("utf-8", "replace")
    v = re.sub(r"\([^()]*\)", " ", v)
    v = v.split(";", 1)[0].strip().strip('"').split()
    return v[0].lower() if v else ""


def split_delivered(raw):
    """(the fields virtual(8) prepended, our Authentication-Results fields, the message as
    the milter saw it: the remaining fields and the body)."""
    fields, rest = header_fields(raw)
    delivery = []
    while fields and field_name(fields[0]) in DELIVERY_FIELDS and len(delivery) < 3:
        delivery.append(fields.pop(0))
    ours = [f for f in fields if servid(f) == AUTHSERV]
    seen = b"".join(f for f in fields if servid(f) != AUTHSERV) + rest
    return delivery, ours, fields, seen


def dkimctl_json(dkimctl, zone, files, extra=()):
    p = subprocess.run([dkimctl, "verify", "--json", "--authserv-id", AUTHSERV, "--zone", zone]
                       + list(extra) + files, capture_output=True, timeout=300)
    out = {}
    for line in p.stdout.decode("utf-8", "replace").splitlines():
        if line.strip():
            o = json.loads(line)
            out[o["file"]] = o
    return out


def ar_text(obj):
    """dkimctl's Authentication-Results as unfold() gives a delivered field."""
    return unfold(obj["authentication_results"].encode())


def ar_results(text):
    return re.findall(r"\bdkim=([a-z]+)", text)


def first_difference(a, b):
    """The first line where a and b (made LF) differ, for NOTE lines."""
    la = a.replace(b"\r\n", b"\n").split(b"\n")
    lb = b.replace(b"\r\n", b"\n").split(b"\n")
    for i, (x, y) in enumerate(zip(la, lb)):
        if x != y:
            return "line %d: sent %r, delivered %r" % (i + 1, x[:70], y[:70])
    if len(la) != len(lb):
        return "sent %d lines, delivered %d" % (len(la), len(lb))
    return "no line differs"


def compare_one(label, raw, dk_delivered, dk_sent=None, sent=None):
    """The checks on one delivered message: exactly one field of ours, at the top of what
    Postfix passed on, equal to dkimctl on the delivered bytes without it."""
    delivery, ours, fields, seen = split_delivered(raw)
    if not check(len(ours) == 1, "%s: one Authentication-Results by %s (%d)" %
                 (label, AUTHSERV, len(ours))):
        return None
    check(fields and fields[0] == ours[0], "%s: ours is the first field after delivery's"
          % label)
    got = unfold(ours[0])
    want = ar_text(dk_delivered)
    results = [s["result"] for s in dk_delivered["signatures"]] or ["none"]
    if re.search(rb"[\x80-\xff]", ours[0]):
        note("%s: our Authentication-Results carries 8-bit bytes as they were in the "
             "signature: %r" % (label, re.findall(rb"\S*[\x80-\xff]\S*", ours[0])))
    same = check(got == want and ar_results(got) == results,
                 "%s: dkim=%s as dkimctl on the delivered bytes" % (
                     label, ",".join(ar_results(got)) or "?"))
    if not same:
        print("    dkimd:   %s\n    dkimctl: %s" % (got, want))
    if sent is not None:
        a, b = postfix.to_crlf(sent), postfix.to_crlf(strip_received(seen))
        if a != b and a + b"\r\n" != b:
            # cleanup(8) drops Return-Path (message_drop_headers), as every MTA should:
            # the delivery agent writes its own.
            fields, rest = header_fields(a)
            a2 = b"".join(f for f in fields if field_name(f) != b"return-path") + rest
            if a2 in (b, b[:-2]):
                why = "Return-Path dropped by cleanup (message_drop_headers)"
            else:
                why = first_difference(a, b)
            BYTES_CHANGED.setdefault(why, []).append(label)
    if dk_sent is not None and ar_text(dk_sent) != want:
        why = first_difference(postfix.to_crlf(sent), strip_received(seen))
        note("%s: Postfix changed the message: sent verifies %s, delivered %s (%s)" % (
            label, ",".join(s["result"] + "/" + s["reason"] for s in dk_sent["signatures"]),
            ",".join(s["result"] + "/" + s["reason"] for s in dk_delivered["signatures"]),
            why))
    return got


def strip_received(seen):
    """seen without the Received field Postfix's smtpd put on top."""
    fields, rest = header_fields(seen)
    if fields and field_name(fields[0]) == b"received" and b"(Postfix)" in fields[0]:
        fields = fields[1:]
    return b"".join(fields) + rest


def write(tmp, name, data):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def deliver_all(pf, msgs, port=None, mail_options=()):
    """Sends [(label, bytes)] on one SMTP session, each to its own recipient; returns
    {label: delivered bytes or an error string}."""
    rcpts = {}
    s = pf.smtp(port)
    try:
        for label, msg in msgs:
            r = pf.rcpt()
            try:
                s.sendmail("sender@client.example", [r], postfix.to_crlf(msg),
                           mail_options=list(mail_options))
                rcpts[label] = r
            except smtplib.SMTPException as e:
                rcpts[label] = "refused: %s" % (e,)
    finally:
        try:
            s.quit()
        except (OSError, smtplib.SMTPException):
            s.close()
    out = {}
    for label, r in rcpts.items():
        if r.startswith("refused"):
            out[label] = r
            continue
        got = pf.delivered(r, timeout=60)
        out[label] = got[0] if got else "not delivered within 60 s"
    return out


# ---- the checks ----

def t_conformance(ctx):
    shared = os.environ.get("DKD_SHARED", os.path.join(source_root(), "..", "shared"))
    corpus = os.path.join(shared, "conformance")
    if not check(os.path.isdir(corpus), "conformance: corpus at %s" % corpus):
        return
    groups = {}  # zone -> [(label, path, entry)]
    timed = []
    for s in sorted(os.listdir(corpus)):
        man = os.path.join(corpus, s, "expected.jsonl")
        if not os.path.isfile(man):
            continue
        for line in open(man, encoding="utf-8"):
            if not line.strip():
                continue
            e = json.loads(line)
            label = "%s/%s" % (s, e["file"])
            groups.setdefault(os.path.join(corpus, s, e["zone"]), []).append(
                (label, os.path.join(corpus, s, e["file"]), e))
            if "now" in e:
                timed.append(label)
    total = sum(len(v) for v in groups.values())
    print("conformance: %d messages in %d key zones" % (total, len(groups)))
    if timed:
        note("conformance: %d entries hold at a fixed time in the corpus (%s); dkimd uses "
             "the real clock, so they are compared with dkimctl at the real clock too"
             % (len(timed), ", ".join(timed)))
    agree = 0
    for zone, entries in sorted(groups.items()):
        d = Dkimd(ctx.dkimd, ctx.tmp, zone, ctx.spec, name="conf")
        try:
            msgs = [(label, open(path, "rb").read()) for label, path, e in entries]
            got = deliver_all(ctx.pf, msgs)
        finally:
            check(d.stop() == 0, "conformance: dkimd (%s) exits 0" % os.path.relpath(zone, corpus))
        files, sent_files = {}, {}
        for i, (label, path, e) in enumerate(entries):
            raw = got[label]
            if isinstance(raw, str):
                check(False, "%s: %s" % (label, raw))
                continue
            _, _, _, seen = split_delivered(raw)
            files[label] = write(ctx.tmp, "conf-%d.eml" % i, seen)
            sent_files[label] = path
        dk = dkimctl_json(ctx.dkimctl, zone, list(files.values()))
        dk_sent = dkimctl_json(ctx.dkimctl, zone, list(sent_files.values()))
        for label, path, e in entries:
            if label not in files:
                continue
            if files[label] not in dk or path not in dk_sent:
                check(False, "%s: dkimctl gave no result" % label)
                continue
            ar = compare_one(label, got[label], dk[files[label]], dk_sent[path],
                             open(path, "rb").read())
            if ar is not None:
                agree += 1
                sigs = ar_results(ar)
                RESULTS[label] = (conf_run_best(sigs), sigs,
                                  [x["reason"] for x in dk[files[label]]["signatures"]])
                ENTRIES[label] = e
    print("conformance: %d of %d delivered with our field" % (agree, total))
    if BYTES_CHANGED:
        for why, labels in BYTES_CHANGED.items():
            note("conformance: Postfix changed the bytes of %d message(s) (besides its "
                 "Received field and a missing final line end): %s: %s" % (
                     len(labels), why, ", ".join(labels)))
    # Against the corpus's own expectation (the strict profile, dkimd's defaults): the
    # differences are the argued ones of tests/conformance/DEVIATIONS.md, and the
    # entries that hold at a fixed time. Printed, not counted: the conformance suite
    # checks the verdicts; this test checks that Postfix+dkimd gives what dkimctl does.
    sys.path.insert(0, os.path.join(here, "..", "conformance"))
    import run as conf_run
    rows, _ = conf_run.load_deviations(os.path.join(here, "..", "conformance",
                                                    "DEVIATIONS.md"))
    differ = []
    for label, (overall, sigs, reasons) in RESULTS.items():
        e = ENTRIES[label]
        exp_overall, exp_sigs = conf_run.expectation(e, "strict")
        if overall != exp_overall or (exp_sigs and sigs != exp_sigs):
            exp = conf_run.show(exp_overall, exp_sigs or None)
            ours = conf_run.show(overall, sigs if exp_sigs else None)
            why = "reasons %s" % ",".join(reasons)
            s_, f_ = label.split("/", 1)
            if any("strict" in r["profiles"] and conf_run.row_matches_entry(r, s_, f_) and
                   conf_run.norm(r["expected"]) == conf_run.norm(exp) and
                   conf_run.norm(r["ours"]) == conf_run.norm(ours) for r in rows):
                why += ", listed in DEVIATIONS.md"
            if "now" in e:
                why += ", the corpus verifies at now=%d" % e["now"]
            if "skip" in e:
                why += ", skipped by the corpus"
            differ.append("%s: expected %s, got %s (%s)" % (label, exp, ours, why))
    print("conformance: %d of %d equal to the corpus expectation (strict profile)%s" % (
        len(RESULTS) - len(differ), len(RESULTS), ":" if differ else ""))
    for d in differ:
        print("    " + d)


RESULTS = {}  # conformance label -> (overall, [per-signature]) from our field
ENTRIES = {}
RANKING = ["pass", "fail", "temperror", "permerror", "neutral", "policy", "none"]


def conf_run_best(sigs):
    """The overall result as tests/conformance/run.py ranks it."""
    return min(sigs, key=lambda r: RANKING.index(r) if r in RANKING else 99) if sigs \
        else "none"


FORGED = [
    b"Authentication-Results: mx.test.example; dkim=pass header.d=paypal.example\r\n",
    b"authentication-results: MX.Test.Example; dkim=pass header.d=bank.example\r\n",
    b"Authentication-Results:\r\n  mx.test.example;\r\n\tdkim=pass\r\n  header.d=bank.example\r\n",
    b"Authentication-Results: \"mx.test.example\"; dkim=pass\r\n",
    b"Authentication-Results: (forged) mx.test.example (comment); dkim=pass\r\n",
    b"Authentication-Results: mx.test.example 1; dkim=pass\r\n",
]
KEPT = [
    b"Authentication-Results: other.example; dkim=fail header.d=example.com\r\n",
    b"Authentication-Results: mx.test.example.evil; dkim=pass\r\n",
]


def sample(name):
    with open(os.path.join(source_root(), "samples", name), "rb") as f:
        return postfix.to_crlf(f.read())


def insert_fields(msg, top, middle):
    fields, rest = header_fields(msg)
    mid = len(fields) // 2
    return b"".join(top + fields[:mid] + middle + fields[mid:]) + rest


def t_forged(ctx):
    zone = os.path.join(source_root(), "samples", "keys.zone")
    base = sample("01-pass-rsa2048.eml")
    msgs = [
        ("forged all", insert_fields(base, FORGED[:3] + KEPT[:1], FORGED[3:] + KEPT[1:])),
        ("forged middle only", insert_fields(base, [], FORGED[2:3])),
        ("forged last field", insert_fields(base, [], []).replace(b"\r\n\r\n", b"\r\n" +
                                                                  FORGED[0] + b"\r\n", 1)),
    ]
    d = Dkimd(ctx.dkimd, ctx.tmp, zone, ctx.spec, name="forged")
    try:
        got = deliver_all(ctx.pf, msgs)
    finally:
        check(d.stop() == 0, "forged: dkimd exits 0")
    for label, msg in msgs:
        raw = got[label]
        if not check(not isinstance(raw, str), "%s: delivered (%s)" % (
                label, raw if isinstance(raw, str) else "ok")):
            continue
        _, ours, fields, seen = split_delivered(raw)
        ar = [f for f in fields if field_name(f) == b"authentication-results"]
        check(len(ours) == 1 and fields[0] == ours[0] and "dkim=pass" in unfold(ours[0]),
              "%s: only our own field claims %s, on top, dkim=pass" % (label, AUTHSERV))
        forged_left = [f for f in ar if f is not ours[0] and b"mx.test.example" in f.lower()
                       and b"mx.test.example.evil" not in f.lower()]
        check(not forged_left, "%s: every forged field removed (%d left)" % (label,
                                                                           len(forged_left)))
        kept = [k for k in KEPT if k in msg]
        check(all(k.replace(b"\r\n", b"\n") in raw for k in kept),
              "%s: %d fields of other authserv-ids kept" % (label, len(kept)))


def t_session(ctx):
    zone = os.path.join(source_root(), "samples", "keys.zone")
    names = ["01-pass-rsa2048.eml", "02-pass-ed25519.eml", "03-none-unsigned.eml",
             "04-fail-body-altered.eml", "01-pass-rsa2048.eml"]
    msgs = [("session #%d %s" % (i + 1, n), sample(n)) for i, n in enumerate(names)]
    d = Dkimd(ctx.dkimd, ctx.tmp, zone, ctx.spec, name="session")
    try:
        got = deliver_all(ctx.pf, msgs)
    finally:
        check(d.stop() == 0, "session: dkimd exits 0")
    files = {}
    for i, (label, msg) in enumerate(msgs):
        if not isinstance(got[label], str):
            files[label] = write(ctx.tmp, "sess-%d.eml" % i, split_delivered(got[label])[3])
        else:
            check(False, "%s: %s" % (label, got[label]))
    dk = dkimctl_json(ctx.dkimctl, zone, list(files.values()))
    for label, f in files.items():
        compare_one(label, got[label], dk[f])


class Keys:
    """A signing key made by dkimctl keygen and a zone with its record beside the
    samples' keys, for dkimd, dkimctl and python3-dkim's dnsfunc."""

    def __init__(self, dkimctl, tmp, domain, selector, ktype="rsa"):
        self.domain, self.selector = domain, selector
        self.key = os.path.join(tmp, "%s.%s.pem" % (selector, domain))
        kg = subprocess.run([dkimctl, "keygen", "--domain", domain, "--selector", selector,
                             "--type", ktype, "--out", self.key, "--json"], check=True,
                            capture_output=True, text=True)
        self.record = json.loads(kg.stdout)["record"]
        os.chmod(self.key, 0o600)
        self.zone = os.path.join(tmp, "%s.%s.zone" % (selector, domain))
        with open(self.zone, "w") as f:
            f.write(open(os.path.join(source_root(), "samples", "keys.zone")).read())
            f.write("\n" + json.loads(kg.stdout)["zone_line"] + "\n")

    def sign(self, dkimctl, msg, canon="relaxed/relaxed"):
        p = subprocess.run([dkimctl, "sign", "--key", self.key, "--domain", self.domain,
                            "--selector", self.selector, "--canon", canon, "-"], input=msg,
                           capture_output=True, check=True, timeout=300)
        return p.stdout

    def dnsfunc(self, name, timeout=5):
        want = ("%s._domainkey.%s." % (self.selector, self.domain)).encode()
        if name.rstrip(b".") + b"." == want:
            return self.record.encode()
        return None


def plain(subject, body, frm=b"alice@example.org", extra=b""):
    return (b"From: Alice <" + frm + b">\r\nTo: Bob <bob@test.example>\r\nSubject: " +
            subject + b"\r\nDate: Mon, 24 Nov 2025 16:00:00 +0000\r\nMessage-ID: <" +
            str(time.time()).encode() + b"@example.org>\r\n" + extra +
            b"MIME-Version: 1.0\r\n\r\n" + body)


def t_large(ctx):
    k = Keys(ctx.dkimctl, ctx.tmp, "example.org", "large")
    line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
    body = line * ((50 << 20) // len(line) + 1)
    msg = k.sign(ctx.dkimctl, plain(b"50 MB", body,
                                    extra=b"Content-Type: text/plain; charset=us-ascii\r\n"))
    d = Dkimd(ctx.dkimd, ctx.tmp, k.zone, ctx.spec, name="large")
    try:
        # One small message first, so the workers' arenas and OpenSSL are warm.
        warm = deliver_all(ctx.pf, [("warm", sample("01-pass-rsa2048.eml"))])
        check(not isinstance(warm["warm"], str), "large: warm-up message delivered")
        rss0 = d.vm("VmRSS")
        hwm0 = d.vm("VmHWM")
        t0 = time.time()
        r = ctx.pf.rcpt()
        try:
            ctx.pf.send(msg, r)
            got = ctx.pf.delivered(r, timeout=300)
        except smtplib.SMTPException as e:
            got = []
            check(False, "large: Postfix took the message (%s)" % e)
        rss1 = d.vm("VmRSS")
        hwm1 = d.vm("VmHWM")
        print("    %.1f MB in %.1f s; dkimd VmRSS %.1f -> %.1f MB, VmHWM %.1f -> %.1f MB" % (
            len(msg) / 1e6, time.time() - t0, rss0 / 1e6, rss1 / 1e6, hwm0 / 1e6, hwm1 / 1e6))
        if check(len(got) == 1, "large: %.0f MB message delivered" % (len(msg) / 1e6)):
            _, ours, _, _ = split_delivered(got[0])
            check(len(ours) == 1 and ar_results(unfold(ours[0])) == ["pass"],
                  "large: verified, dkim=%s" % (ar_results(unfold(ours[0])) if ours else "-"))
        check(hwm1 - rss0 < 20 << 20 and rss1 - rss0 < 20 << 20,
              "large: dkimd's memory flat (peak +%.1f MB, resident +%.1f MB, < 20 MB)" % (
                  (hwm1 - rss0) / 1e6, (rss1 - rss0) / 1e6))
    finally:
        check(d.stop() == 0, "large: dkimd exits 0")


def t_8bit(ctx):
    k = Keys(ctx.dkimctl, ctx.tmp, "example.org", "eight")
    utf8 = "Grüße aus Köln, ½ € — ☃ 日本語のテキスト\r\n".encode() * 40
    latin1 = "Caf\xe9 cr\xe8me br\xfbl\xe9e, \xa3 10\r\n".encode("latin-1") * 40
    long_body = (b"x" * 1498 + b"\r\n") * 20 + (b"y " * 749 + b"\r\n") * 20
    long_8bit = ("ü" * 749 + "\r\n").encode() * 10
    long_subject = b"long " + b"s" * 1495
    cases = []
    for canon in ("relaxed/relaxed", "simple/simple"):
        c = canon.split("/")[0]
        cases += [
            ("8bit %s utf-8 body" % c, plain(b"utf-8", utf8, extra=b"Content-Type: text/plain; "
                                             b"charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n")),
            ("8bit %s latin-1 body" % c, plain(b"latin-1", latin1, extra=b"Content-Type: "
                                               b"text/plain; charset=iso-8859-1\r\n"
                                               b"Content-Transfer-Encoding: 8bit\r\n")),
            ("8bit %s 1500-byte lines" % c, plain(b"long lines", long_body)),
            ("8bit %s 1500-byte 8-bit lines" % c, plain(b"long 8bit", long_8bit)),
            ("8bit %s 1500-byte Subject" % c, plain(long_subject, b"short body\r\n")),
            ("8bit %s raw utf-8 Subject" % c, plain("Grüße ☃".encode(), b"body\r\n")),
        ]
        cases[-6:] = [(l, k.sign(ctx.dkimctl, m, canon)) for l, m in cases[-6:]]
    over = [("over line_length_limit %s 5000-byte line" % c,
             k.sign(ctx.dkimctl, plain(b"5000", b"z" * 5000 + b"\r\nend\r\n"), canon))
            for canon, c in (("relaxed/relaxed", "relaxed"), ("simple/simple", "simple"))]
    d = Dkimd(ctx.dkimd, ctx.tmp, k.zone, ctx.spec, name="8bit")
    try:
        got = deliver_all(ctx.pf, cases + over, mail_options=["BODY=8BITMIME"])
    finally:
        check(d.stop() == 0, "8bit: dkimd exits 0")
    files = {}
    for i, (label, msg) in enumerate(cases + over):
        if isinstance(got[label], str):
            check(False, "%s: %s" % (label, got[label]))
            continue
        files[label] = write(ctx.tmp, "8bit-%d.eml" % i, split_delivered(got[label])[3])
    dk = dkimctl_json(ctx.dkimctl, k.zone, list(files.values()))
    for label, msg in cases:
        if label in files:
            ar = compare_one(label, got[label], dk[files[label]])
            check(ar is not None and ar_results(ar) == ["pass"], "%s: dkim=pass" % label)
    for label, msg in over:
        if label not in files:
            continue
        _, ours, _, seen = split_delivered(got[label])
        ar = ar_results(unfold(ours[0])) if ours else []
        dkr = [s["result"] for s in dk[files[label]]["signatures"]]
        if ar != ["pass"] or dkr != ["pass"]:
            note("%s: dkimd says dkim=%s, dkimctl on the delivered bytes %s (%s)" % (
                label, ",".join(ar), ",".join(dkr),
                first_difference(postfix.to_crlf(msg), strip_received(seen))))
        else:
            print("    %s: dkim=pass, delivered unchanged" % label)


def dkim_py_verify(msg, keys):
    try:
        import dkim
    except ImportError:
        return None
    return bool(dkim.verify(postfix.to_crlf(msg), dnsfunc=keys.dnsfunc))


def t_outbound(ctx):
    keys = [Keys(ctx.dkimctl, ctx.tmp, "example.org", "out2026"),
            Keys(ctx.dkimctl, ctx.tmp, "ed.example.org", "ed1", "ed25519")]
    zone = os.path.join(ctx.tmp, "outbound.zone")
    with open(zone, "w") as f:
        f.write(open(keys[0].zone).read())
        f.write(open(keys[1].zone).read().split("\n")[-2] + "\n")
    extra = []
    for k in keys:
        extra += ["--sign-key", "%s:%s:%s" % (k.domain, k.selector, k.key)]
    d = Dkimd(ctx.dkimd, ctx.tmp, zone, ctx.spec, extra, name="outbound")
    msgs = [("outbound rsa", plain(b"outbound", b"Hello,\r\n\r\nsigned on the way out.\r\n"), 0),
            ("outbound ed25519", plain(b"outbound ed", b"Hello from ed.\r\n",
                                       frm=b"carol@ed.example.org"), 1),
            ("outbound 8bit", plain("Grüße".encode(), "Grüße\r\n".encode() * 100), 0)]
    try:
        got = deliver_all(ctx.pf, [(l, m) for l, m, _ in msgs], port=ctx.pf.port_out)
        inbound = deliver_all(ctx.pf, [("inbound", msgs[0][1])])
    finally:
        check(d.stop() == 0, "outbound: dkimd exits 0")
    for label, msg, ki in msgs:
        raw = got[label]
        if not check(not isinstance(raw, str), "%s: delivered" % label):
            print("    " + raw)
            continue
        _, ours, fields, seen = split_delivered(raw)
        sigs = [f for f in fields if field_name(f) == b"dkim-signature"]
        check(len(sigs) == 1 and not ours, "%s: one DKIM-Signature, no Authentication-Results "
              "of ours (%d, %d)" % (label, len(sigs), len(ours)))
        if not sigs:
            continue
        tags = unfold(sigs[0])
        check(("d=%s;" % keys[ki].domain) in tags.replace(" ", "") and
              "c=relaxed/relaxed" in tags.replace(" ", ""),
              "%s: d=%s c=relaxed/relaxed" % (label, keys[ki].domain))
        ok = dkim_py_verify(seen, keys[ki])
        if ok is None:
            check(not os.environ.get("CI"), "%s: python3-dkim available (import dkim)" % label)
        else:
            check(ok, "%s: python3-dkim verifies the delivered message" % label)
        f = write(ctx.tmp, "out-%s.eml" % label.split()[-1], seen)
        dk = dkimctl_json(ctx.dkimctl, zone, [f])
        res = [s["result"] for s in dk[f]["signatures"]]
        check(res == ["pass"], "%s: dkimctl verify --zone: %s" % (label, res))
    raw = inbound["inbound"]
    if check(not isinstance(raw, str), "outbound: the same mail inbound delivered"):
        _, ours, fields, _ = split_delivered(raw)
        check(len(ours) == 1 and not any(field_name(f) == b"dkim-signature" for f in fields),
              "outbound: the same mail on the inbound port is verified, not signed")


def expect_tempfail(pf, msg, session, what):
    r = pf.rcpt()
    try:
        pf.send(msg, r, session=session)
        code, text = 250, b"accepted"
    except smtplib.SMTPResponseException as e:
        code, text = e.smtp_code, e.smtp_error
    except smtplib.SMTPRecipientsRefused as e:
        code, text = list(e.recipients.values())[0]
    except smtplib.SMTPServerDisconnected as e:
        code, text = 0, str(e).encode()
    check(400 <= code < 500, "%s: the client gets %d %s" % (what, code,
                                                         text.decode("utf-8", "replace")[:60]))
    time.sleep(1)
    check(pf.count_delivered(r) == 0, "%s: nothing delivered" % what)


def t_restart(ctx):
    zone = os.path.join(source_root(), "samples", "keys.zone")
    msg = sample("01-pass-rsa2048.eml")
    pf = ctx.pf

    def delivered_with_ar(what, session=None, want_ar=True):
        r = pf.rcpt()
        try:
            pf.send(msg, r, session=session)
        except smtplib.SMTPException as e:
            return check(False, "%s: sent (%s)" % (what, e))
        got = pf.delivered(r, timeout=30)
        if not check(len(got) == 1, "%s: delivered" % what):
            return False
        ours = split_delivered(got[0])[1]
        if want_ar:
            return check(len(ours) == 1 and "dkim=pass" in unfold(ours[0]),
                         "%s: with our dkim=pass" % what)
        return check(not ours, "%s: without our field (milter skipped)" % what)

    # tempfail (the instance's setting): dkimd killed between two messages of a session.
    pf.set(milter_default_action="tempfail")
    d = Dkimd(ctx.dkimd, ctx.tmp, zone, ctx.spec, name="restart")
    s = pf.smtp()
    try:
        delivered_with_ar("tempfail: first message of the session", session=s)
        d.kill()
        expect_tempfail(pf, msg, s, "tempfail: dkimd killed mid-session, next message")
    finally:
        try:
            s.quit()
        except (OSError, smtplib.SMTPException):
            s.close()
    s = pf.smtp()
    try:
        expect_tempfail(pf, msg, s, "tempfail: new session while dkimd is down")
    except (OSError, smtplib.SMTPException) as e:
        check(False, "tempfail: new session while dkimd is down: %s" % e)
    finally:
        s.close()
    d = Dkimd(ctx.dkimd, ctx.tmp, zone, ctx.spec, name="restart")
    delivered_with_ar("tempfail: dkimd started again on the same socket, mail flows")
    # accept: the milter is skipped while dkimd is down.
    pf.set(milter_default_action="accept")
    s = pf.smtp()
    try:
        delivered_with_ar("accept: first message of the session", session=s)
        d.kill()
        delivered_with_ar("accept: dkimd killed mid-session, next message", session=s,
                          want_ar=False)
    finally:
        try:
            s.quit()
        except (OSError, smtplib.SMTPException):
            s.close()
    delivered_with_ar("accept: new session while dkimd is down", want_ar=False)
    d = Dkimd(ctx.dkimd, ctx.tmp, zone, ctx.spec, name="restart")
    try:
        delivered_with_ar("accept: dkimd started again on the same socket, our field back")
    finally:
        check(d.stop() == 0, "restart: dkimd exits 0")
        pf.set(milter_default_action="tempfail")


class Ctx:
    pass


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    why = postfix.available()
    if why:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            print("FAIL: Postfix end-to-end tests cannot run under CI: %s" % why)
            print("0 passed, 1 failed")
            return 1
        print("SKIP: Postfix end-to-end tests: %s" % why)
        return SKIP
    ctx = Ctx()
    ctx.dkimd, ctx.dkimctl = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    only = [t for t in os.environ.get("DKD_POSTFIX_TESTS", "").split(",") if t]
    # Under /tmp: Postfix's daemons (user postfix) and virtual(8) (user nobody) must be
    # able to reach the instance's directories; a build directory may not be searchable.
    ctx.tmp = tempfile.mkdtemp(prefix="dkimd-postfix-", dir="/tmp")
    os.chmod(ctx.tmp, 0o755)
    ctx.spec = os.path.join(ctx.tmp, "dkimd.milter")
    ctx.pf = postfix.Postfix(os.path.join(ctx.tmp, "postfix"), milter="unix:" + ctx.spec,
                             default_action="tempfail")
    import shutil
    import traceback
    try:
        out = ctx.pf.start()
        check(True, "postfix -c %s check and start (%s)" % (ctx.pf.etc, out or "no warnings"))
        tests = [("conformance", t_conformance), ("forged", t_forged),
                 ("session", t_session), ("large", t_large), ("8bit", t_8bit),
                 ("outbound", t_outbound), ("restart", t_restart)]
        for name, fn in tests:
            if only and name not in only:
                continue
            try:
                fn(ctx)
            except Exception as e:
                traceback.print_exc()
                check(False, "%s raised %s: %s" % (name, type(e).__name__, e))
    except Exception as e:
        traceback.print_exc()
        check(False, "postfix start: %s" % e)
    finally:
        if FAILED:
            print("---- maillog (last lines) ----")
            print("\n".join(ctx.pf.maillog().splitlines()[-40:]))
            for name in sorted(os.listdir(ctx.tmp)):
                if name.endswith(".log"):
                    print("---- %s (end) ----" % name)
                    print(open(os.path.join(ctx.tmp, name), errors="replace").read()[-1500:])
        ctx.pf.stop()
        shutil.rmtree(ctx.tmp, ignore_errors=True)
    if NOTES:
        print("%d notes (Postfix changed a message, or a result is time-dependent):"
              % len(NOTES))
        for n in NOTES:
            print("  - " + n)
    print("%d passed, %d failed" % (len(PASSED), len(FAILED)))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
