#!/usr/bin/python3
"""dkimctl keygen, sign, check-record and explain, end to end.

- keygen writes a 0600 key with O_EXCL, prints a zone line (strings <= 255 bytes) and the
  bare value; the pair, published in a temporary zone, signs mail that `dkimctl verify`
  and python3-dkim (an independent verifier) both accept, for rsa and ed25519 and both
  canonicalizations; a changed body fails with body-hash-mismatch;
- check-record reports every failure cause of a test zone with its code and exit status,
  and catches a mismatched key pair with --key;
- explain gives the cause, the fix, the queried name and the alignment for each sample
  and for unsigned mail;
- the DNS paths of check-record and explain against a real unbound on 127.0.0.1.

- explain --socket through a running dkimd (when the build has the daemon).

usage: toolkit_test.py DKIMCTL [DKIMD]    (stdlib only, plus python3-dkim)
"""
import json
import os
import re
import socket
import stat
import subprocess
import sys
import tempfile
import time

DKIMCTL = sys.argv[1]
DKIMD = sys.argv[2] if len(sys.argv) > 2 else None
ROOT = os.environ.get("DKD_SOURCE_ROOT",
                      os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SAMPLES = os.path.join(ROOT, "samples")
sys.path.insert(0, os.path.join(ROOT, "tests", "keys"))

passed = failed = 0


def check(cond, what, extra=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL: %s %s" % (what, extra[:2000]))


def run(*args, stdin=None):
    p = subprocess.run([DKIMCTL] + list(args), capture_output=True, input=stdin, timeout=120)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


MESSAGE = (b"From: Alice Operator <alice@example.com>\r\n"
           b"To: Bob <bob@example.net>\r\n"
           b"Subject: capacity   report\r\n"
           b"Date: Mon, 24 Nov 2025 16:00:00 +0000\r\n"
           b"Message-ID: <toolkit-1@example.com>\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n"
           b"\r\n"
           b"Hello Bob,  \r\n"
           b"\r\n"
           b"the fleet handled 41 million messages.\r\n"
           b"\r\n\r\n")


def test_help_and_usage():
    for sub in ("keygen", "sign", "check-record", "explain"):
        rc, out, _ = run(sub, "--help")
        check(rc == 0 and "examples:" in out and "exit status" in out, sub + " --help")
        rc, _, err = run(sub, "--no-such-flag")
        want = 64 if sub == "check-record" else 2
        check(rc == want, sub + " bad flag exit %d" % want, "rc=%d %s" % (rc, err))
    rc, out, _ = run("--help")
    check(all(s in out for s in ("keygen", "sign", "check-record", "explain")),
          "top-level help lists the toolkit")


def keygen(tmp, sel, *extra):
    path = os.path.join(tmp, sel + ".pem")
    rc, out, err = run("keygen", "--domain", "example.com", "--selector", sel, "--out", path,
                       "--json", *extra)
    check(rc == 0, "keygen " + sel, err)
    return path, json.loads(out)


def test_keygen(tmp):
    path, j = keygen(tmp, "plain")
    st = os.stat(path)
    check(stat.S_IMODE(st.st_mode) == 0o600, "keygen key mode 0600", oct(st.st_mode))
    check(open(path).read().startswith("-----BEGIN PRIVATE KEY-----"), "keygen writes PEM")
    check(j["bits"] == 2048 and j["type"] == "rsa", "keygen RSA default 2048", str(j))
    check(j["name"] == "plain._domainkey.example.com", "keygen name")
    strings = re.findall(r'"([^"]*)"', j["zone_line"])
    check(len(strings) >= 2 and all(len(s) <= 255 for s in strings)
          and "".join(strings) == j["record"], "zone line split into <= 255-byte strings")
    check(j["zone_line"].startswith("plain._domainkey.example.com. 3600 IN TXT "), "zone line")
    before = open(path).read()
    rc, _, err = run("keygen", "--domain", "example.com", "--selector", "plain", "--out", path)
    check(rc == 1 and "exists" in err and open(path).read() == before,
          "keygen never overwrites", err)
    rc, _, err = run("keygen", "--domain", "example.com", "--selector", "x", "--bits", "768",
                     "--out", os.path.join(tmp, "weak.pem"))
    check(rc == 2 and not os.path.exists(os.path.join(tmp, "weak.pem")),
          "keygen refuses < 1024 bits", err)
    rc, out, _ = run("keygen", "--domain", "example.com", "--selector", "plain2", "--out",
                     os.path.join(tmp, "plain2.pem"))
    check(rc == 0 and "zone-file line" in out and "\nv=DKIM1; k=rsa; p=" in out,
          "keygen plain output shows zone line and bare value", out)


def write_zone(tmp, name, lines):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write("$TTL 300\n" + "\n".join(lines) + "\n")
    return path


def dkim_verify(msg, records):
    """python3-dkim's verdict, with key lookups answered from records {name: value}."""
    import dkim

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        return records.get(name.rstrip("."), "").encode() or None

    return dkim.verify(msg, dnsfunc=dnsfunc)


def test_sign_verify(tmp):
    rsa, jr = keygen(tmp, "rsasel")
    ed, je = keygen(tmp, "edsel", "--type", "ed25519")
    check(je["bits"] == 256 and "k=ed25519" in je["record"], "keygen ed25519", str(je))
    zone = write_zone(tmp, "pub.zone", [jr["zone_line"], je["zone_line"]])
    records = {jr["name"]: jr["record"], je["name"]: je["record"]}
    msgfile = os.path.join(tmp, "m.eml")
    open(msgfile, "wb").write(MESSAGE)
    try:
        import dkim  # noqa: F401
        have_dkimpy = True
    except ImportError:
        have_dkimpy = False
        check(False, "python3-dkim is installed (CI installs it)")
    for key, sel in ((rsa, "rsasel"), (ed, "edsel")):
        for canon in ("relaxed/relaxed", "simple/simple", "relaxed/simple"):
            rc, out, err = run("sign", "--key", key, "--domain", "example.com", "--selector",
                               sel, "--canon", canon, msgfile)
            what = "sign %s %s" % (sel, canon)
            check(rc == 0 and out.startswith("DKIM-Signature: v=1;"), what, err)
            signed = os.path.join(tmp, "signed-%s-%s.eml" % (sel, canon.replace("/", "-")))
            open(signed, "wb").write(out.encode())
            rc, vout, err = run("verify", "--zone", zone, "--json", signed)
            v = json.loads(vout)
            check(rc == 0 and v["signatures"][0]["result"] == "pass", what + ": dkimctl verify",
                  vout + err)
            if have_dkimpy:
                check(dkim_verify(out.encode(), records), what + ": python3-dkim verifies")
            altered = out.replace("41 million", "42 million").encode()
            if have_dkimpy:
                check(not dkim_verify(altered, records), what + ": python3-dkim rejects change")
            path = signed + ".altered"
            open(path, "wb").write(altered)
            rc, vout, _ = run("verify", "--zone", zone, "--json", path)
            check(json.loads(vout)["signatures"][0]["reason"] == "body-hash-mismatch",
                  what + ": changed body fails with body-hash-mismatch", vout)
    # Header list, l=, x=, LF input, stdin, signature-only.
    lf = MESSAGE.replace(b"\r\n", b"\n")
    rc, out, err = run("sign", "--key", rsa, "--domain", "example.com", "--selector", "rsasel",
                       "--headers", "from:subject:from", "--body-length", "--timestamp",
                       "1700000000", "--expire", "600", "-", stdin=lf)
    flat = re.sub(r"\s+", "", out.split("\n\n")[0])
    check(rc == 0 and "\r" not in out and "h=from:subject:from;" in flat and "l=" in flat
          and "t=1700000000;" in flat and "x=1700000600;" in flat, "sign options, LF input",
          out + err)
    signed = os.path.join(tmp, "lf.eml")
    open(signed, "w").write(out)
    rc, vout, _ = run("verify", "--zone", zone, "--now", "1700000100", "--json", signed)
    check(json.loads(vout)["signatures"][0]["result"] == "pass", "LF message verifies", vout)
    rc, vout, _ = run("verify", "--zone", zone, "--now", "1800000000", "--json", signed)
    check(json.loads(vout)["signatures"][0]["reason"] == "expired", "x= expires", vout)
    if have_dkimpy:
        check(dkim_verify(out.replace("\n", "\r\n").encode(), records) is not None,
              "python3-dkim reads the l=/x= signature")
    rc, out, _ = run("sign", "--key", rsa, "--domain", "example.com", "--selector", "rsasel",
                     "--signature-only", msgfile)
    check(rc == 0 and out.startswith("DKIM-Signature:") and "From:" not in out,
          "sign --signature-only")
    # Default list: From over-signed, only present headers, lines <= 78 columns.
    rc, out, _ = run("sign", "--key", rsa, "--domain", "example.com", "--selector", "rsasel",
                     msgfile)
    sig = out.split("\r\nFrom:")[0]
    flat = re.sub(r"\s+", "", sig)
    check("h=from:from:to:subject:date:message-id:mime-version:content-type;" in flat,
          "default header list", flat)
    check(all(len(l.expandtabs(8)) <= 78 for l in sig.split("\r\n")), "folded at 78", sig)
    check(re.search(r";\s*b=[A-Za-z0-9+/=\s]+$", sig) is not None, "b= last", sig)
    # Usage errors and refusals.
    rc, _, err = run("sign", "--key", ed, "--domain", "example.com", "--selector", "edsel",
                     "--algorithm", "rsa-sha256", msgfile)
    check(rc == 2 and "does not fit" in err, "sign --algorithm must match the key", err)
    rc, _, err = run("sign", "--key", rsa, "--domain", "example.com", "--selector", "rsasel",
                     "--algorithm", "rsa-sha1", msgfile)
    check(rc == 2 and "8301" in err, "sign refuses rsa-sha1", err)
    rc, _, err = run("sign", "--key", rsa, "--domain", "example.com", "--selector", "rsasel",
                     "--headers", "to:subject", msgfile)
    check(rc == 1 and "From" in err, "sign requires From in --headers", err)
    rc, _, err = run("sign", "--key", os.path.join(tmp, "none.pem"), "--domain", "example.com",
                     "--selector", "rsasel", msgfile)
    check(rc == 1, "sign with a missing key file", err)
    return zone, rsa, ed, jr, je


def zq(value):
    """A TXT value in master-file syntax: escaped, in strings of at most 255 bytes."""
    value = value.replace("\\", "\\\\").replace('"', '\\"')
    return " ".join('"%s"' % value[i:i + 255] for i in range(0, len(value), 255))


def mistake_records(jr, je):
    """(owner, value) of every publishing mistake check-record names, for zone and DNS."""
    rec, erec = jr["record"], je["record"]
    rsa_p, ed_p = rec.split("p=")[1], erec.split("p=")[1]
    d = "._domainkey.example.com"
    return [
        ("quoted" + d, '"%s"' % rec),
        ("quoted2" + d, '"v=DKIM1; k=rsa; " "p=%s"' % rsa_p),
        ("pem" + d, "v=DKIM1; k=rsa; p=-----BEGIN PUBLIC KEY-----%s-----END PUBLIC KEY-----"
         % rsa_p),
        ("spaces" + d, "v=DKIM1; k=rsa; p=%s %s" % (rsa_p[:64], rsa_p[64:])),
        ("spf" + d, "v=spf1 include:_spf.example.net ~all"),
        ("dmarc" + d, "v=DMARC1; p=reject"),
        ("kedrsa" + d, "v=DKIM1; k=ed25519; p=%s" % rsa_p),
        ("krsaed" + d, "v=DKIM1; k=rsa; p=%s" % ed_p),
        ("cut" + d, rec[:255]),
        ("split" + d, rec[:255]), ("split" + d, rec[255:]),
        ("dbl" + d + ".example.com", rec),
    ]


# selector: (exit status, finding code, where: "record" or "lookup", words in the message)
MISTAKES = {
    "quoted": (2, "quoted", "record", "without quotes"),
    "quoted2": (2, "quoted", "record", "without quotes"),
    "pem": (2, "pem-armour", "record", "between the two dashed lines"),
    "spaces": (1, "p-whitespace", "record", "one unbroken line"),
    "spf": (2, "spf-record", "record", "at the domain itself"),
    "dmarc": (2, "dmarc-record", "record", "_dmarc."),
    "kedrsa": (2, "k-mismatch", "record", "change k= to k=rsa"),
    "krsaed": (2, "k-mismatch", "record", "add k=ed25519"),
    "cut": (2, "truncated", "record",
            "the record looks cut at 255 characters: publish it as several quoted strings"),
    "split": (2, "split-records", "lookup", "ONE TXT record"),
    "dbl": (2, "doubled-domain", "lookup", "dbl._domainkey.example.com.example.com"),
}


def check_mistakes(what, args):
    """Every mistake of MISTAKES through one key source: JSON codes, words, plain text."""
    for sel, (want_rc, code, where, words) in sorted(MISTAKES.items()):
        rc, out, err = run("check-record", *args, "--domain", "example.com", "--selector", sel,
                           "--json")
        try:
            j = json.loads(out)
        except ValueError:
            check(False, "%s mistake %s: JSON" % (what, sel), out + err)
            continue
        found = j["findings"] if where == "lookup" else \
            [f for r in j["records"] for f in r["findings"]]
        hit = [f for f in found if f["code"] == code]
        check(rc == want_rc and hit and words in hit[0]["message"],
              "%s mistake %s: exit %d, %s" % (what, sel, want_rc, code), "rc=%d %s" % (rc, out))
        rc2, text, _ = run("check-record", *args, "--domain", "example.com", "--selector", sel)
        check(rc2 == rc and hit and hit[0]["message"] in text,
              "%s mistake %s: plain text says the same" % (what, sel), text)
        if sel == "dbl":
            check(len(j["records"]) == 1 and
                  j["records"][0]["name"] == "dbl._domainkey.example.com.example.com",
                  "%s: the doubled name's record is listed under its name" % what, out)
        if sel == "quoted":
            codes = [f["code"] for r in j["records"] for f in r["findings"]]
            check(codes == ["quoted", "key"], "%s: a quoted record is judged unquoted" % what,
                  out)


def test_mistakes(tmp, jr, je):
    lines = ["%s. IN TXT %s" % (owner, zq(value)) for owner, value in mistake_records(jr, je)]
    check_mistakes("zone", ["--zone", write_zone(tmp, "mistakes.zone", lines)])


def discovery_records(jr, je):
    """Selectors of discover.example: a revoked Microsoft 365 one, an RSA Google one, an
    Ed25519 Mailchimp one, and one only a custom provider table knows."""
    d = "._domainkey.discover.example"
    return [("selector1" + d, "v=DKIM1; k=rsa; p="), ("google" + d, jr["record"]),
            ("k1" + d, je["record"]), ("acme7" + d, jr["record"])]


def check_discovery(what, args, tmp):
    rc, out, err = run("check-record", *args, "--domain", "discover.example", "--json")
    try:
        j = json.loads(out)
    except ValueError:
        check(False, "%s discovery: JSON" % what, out + err)
        return
    sel = {x["selector"]: x for x in j["selectors"]}
    check(rc == 1 and j["status"] == "warnings" and set(sel) == {"selector1", "google", "k1"}
          and "acme7" not in j["tried"] and len(j["tried"]) > 30
          and j["providers_file"].endswith("providers.conf"),
          "%s discovery: the table's and common selectors tried, three found" % what, out + err)
    if set(sel) == {"selector1", "google", "k1"}:
        check(sel["selector1"]["reason"] == "key-revoked" and
              sel["selector1"]["provider"] == "Microsoft 365" and
              "Defender" in sel["selector1"]["enable"], "%s discovery: revoked, Microsoft 365"
              % what, out)
        check(sel["google"]["key_type"] == "rsa" and sel["google"]["key_bits"] == 2048 and
              sel["google"]["provider"] == "Google Workspace", "%s discovery: google" % what,
              out)
        check(sel["k1"]["key_type"] == "ed25519" and "Mailchimp" in sel["k1"]["provider"],
              "%s discovery: k1 ed25519" % what, out)
    rc, out, _ = run("check-record", *args, "--domain", "discover.example")
    check(rc == 1 and "selector1._domainkey.discover.example: UNUSABLE (key-revoked)" in out
          and "a Microsoft 365 selector; DKIM is set up at: Microsoft Defender" in out
          and "google._domainkey.discover.example: rsa 2048 bits" in out
          and "result: 3 found, 2 usable" in out, "%s discovery: plain text" % what, out)
    table = os.path.join(tmp, "acme.conf")
    open(table, "w").write("# test table\nAcme Mail | acme? | *.dkim.acme.example | "
                           "Acme console: Domains > DKIM\n")
    rc, out, err = run("check-record", *args, "--domain", "discover.example", "--providers",
                       table, "--json")
    j = json.loads(out) if out else {}
    acme = [x for x in j.get("selectors", []) if x["selector"] == "acme7"]
    check(not acme and j.get("providers_file") == table, "%s: a pattern is not a candidate"
          % what, out + err)
    open(table, "a").write("Acme Seven | acme7 | - | Acme console\n")
    env = dict(os.environ, DKIMCTL_PROVIDERS=table)
    p = subprocess.run([DKIMCTL, "check-record", *args, "--domain", "discover.example",
                        "--json"], capture_output=True, env=env, timeout=120)
    j = json.loads(p.stdout or b"{}")
    acme = [x for x in j.get("selectors", []) if x["selector"] == "acme7"]
    check(acme and acme[0]["provider"] == "Acme Mail" and j["providers_file"] == table,
          "%s: DKIMCTL_PROVIDERS names the table; its selectors are tried" % what,
          p.stdout.decode() + p.stderr.decode())
    rc, out, _ = run("check-record", *args, "--domain", "nokeys.example")
    check(rc == 2 and "no key record at any of them" in out and "result: 0 found" in out,
          "%s discovery: a domain without keys" % what, out)


def test_discovery(tmp, jr, je):
    lines = ["%s. IN TXT %s" % (o, zq(v)) for o, v in discovery_records(jr, je)]
    check_discovery("zone", ["--zone", write_zone(tmp, "discover.zone", lines)], tmp)
    rc, _, err = run("check-record", "--zone", os.path.join(SAMPLES, "keys.zone"), "--domain",
                     "example.com", "--providers", os.path.join(tmp, "none.conf"))
    check("none.conf" in err and "provider table not used" in err,
          "an unreadable --providers is named", err)


def test_check_record(tmp, jr, je, rsa, ed):
    other, jo = keygen(tmp, "othersel")
    weak = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                           "rsa_keygen_bits:1024"], capture_output=True, check=True).stdout
    wpath = os.path.join(tmp, "k1024.pem")
    open(wpath, "wb").write(weak)
    rc, out, err = run("sign", "--key", wpath, "--domain", "example.com", "--selector", "x",
                       "--signature-only", os.path.join(SAMPLES, "03-none-unsigned.eml"))
    check(rc == 0, "sign with a 1024-bit key", err)
    p1024 = subprocess.run(["openssl", "pkey", "-in", wpath, "-pubout", "-outform", "DER"],
                           capture_output=True, check=True).stdout
    import base64
    p1024 = base64.b64encode(p1024).decode()
    rsa_p = jr["record"].split("p=")[1]
    lines = [
        jr["zone_line"], je["zone_line"],
        'k1024._domainkey.example.com. IN TXT "v=DKIM1; k=rsa; p=%s"' % p1024,
        'testing._domainkey.example.com. IN TXT "v=DKIM1; t=y; k=rsa; p=%s"' % rsa_p,
        'several._domainkey.example.com. IN TXT "v=DKIM1; k=rsa; p=%s"' % rsa_p,
        'several._domainkey.example.com. IN TXT "v=DKIM1; k=rsa; p=%s"' % p1024,
        'syntax._domainkey.example.com. IN TXT "v=DKIM1; k rsa; p=%s; h=sha256;; x"' % rsa_p,
        'vlate._domainkey.example.com. IN TXT "k=rsa; v=DKIM1; p=%s"' % rsa_p,
        'unknownk._domainkey.example.com. IN TXT "v=DKIM1; k=dsa; p=%s"' % rsa_p,
        'sha1._domainkey.example.com. IN TXT "v=DKIM1; h=sha1; p=%s"' % rsa_p,
        'service._domainkey.example.com. IN TXT "v=DKIM1; s=tlsrpt; p=%s"' % rsa_p,
        'revoked._domainkey.example.com. IN TXT "v=DKIM1; k=rsa; p="',
        'typo._domainkey.example.com. IN TXT "v=DKIM1; k=rsa; p=%s!"' % rsa_p[:-4],
        '; @servfail servfail._domainkey.example.com.',
        '; @timeout timeout._domainkey.example.com.',
    ]
    zone = write_zone(tmp, "lint.zone", lines)
    # The rsa768 sample key comes from the samples' zone.
    cases = [
        ("rsasel", 0, "ok", None), ("edsel", 0, "ok", None),
        ("k1024", 1, "warnings", "weak-key"), ("testing", 1, "warnings", "testing"),
        ("several", 2, "errors", "several-records"),
        ("syntax", 2, "errors", "syntax"), ("vlate", 2, "errors", "v-not-first"),
        ("unknownk", 2, "errors", "unknown-k"), ("sha1", 2, "errors", "sha1-only"),
        ("service", 2, "errors", "service"), ("revoked", 2, "errors", "revoked"),
        ("typo", 2, "errors", "p-base64"), ("nosuch", 2, "errors", "missing"),
        ("servfail", 2, "errors", "dns-error"), ("timeout", 2, "errors", "dns-timeout"),
    ]
    for sel, want_rc, status, code in cases:
        rc, out, err = run("check-record", "--zone", zone, "--domain", "example.com",
                           "--selector", sel, "--json")
        try:
            j = json.loads(out)
        except ValueError:
            check(False, "check-record %s JSON" % sel, out + err)
            continue
        codes = [f["code"] for f in j["findings"]] + \
                [f["code"] for r in j["records"] for f in r["findings"]]
        check(rc == want_rc and j["status"] == status and (code is None or code in codes),
              "check-record %s: exit %d, %s, %s" % (sel, want_rc, status, code),
              "rc=%d %s" % (rc, out))
        if sel == "nosuch":
            check("nosuch._domainkey.example.com" in j["findings"][0]["message"],
                  "missing record names the queried name", out)
        if sel == "syntax":
            syn = [f for r in j["records"] for f in r["findings"] if f["code"] == "syntax"]
            check(len(syn) == 3 and syn[0]["tag"] == "k" and syn[0]["offset"] == 11,
                  "every syntax error with its tag and position", json.dumps(syn))
        if sel == "several":
            check(len(j["records"]) == 2, "several records listed", out)
    rc, out, _ = run("check-record", "--zone", os.path.join(SAMPLES, "keys.zone"), "--domain",
                     "example.com", "--selector", "rsa768", "--json")
    j = json.loads(out)
    check(rc == 2 and any(f["code"] == "weak-key" and f["level"] == "error"
                          for r in j["records"] for f in r["findings"]),
          "check-record: RSA 768 is an RFC 8301 error", out)
    # Plain output: names, positions, the verdict line.
    rc, out, _ = run("check-record", "--zone", zone, "--domain", "example.com", "--selector",
                     "syntax")
    check(rc == 2 and "k= (byte 11)" in out and out.rstrip().endswith("result: ERRORS"),
          "check-record plain output", out)
    # --key: the pair that matches, a mismatched pair, a different key type.
    rc, out, _ = run("check-record", "--zone", zone, "--domain", "example.com", "--selector",
                     "rsasel", "--key", rsa, "--json")
    check(rc == 0 and json.loads(out)["key_match"] is True, "check-record --key matches", out)
    rc, out, _ = run("check-record", "--zone", zone, "--domain", "example.com", "--selector",
                     "rsasel", "--key", other, "--json")
    j = json.loads(out)
    check(rc == 2 and j["key_match"] is False and
          any(f["code"] == "key-mismatch" for f in j["findings"]),
          "check-record --key catches a mismatched pair", out)
    rc, out, _ = run("check-record", "--zone", zone, "--domain", "example.com", "--selector",
                     "rsasel", "--key", other)
    check("NOT the private half" in out, "mismatch in plain words", out)
    rc, out, _ = run("check-record", "--zone", zone, "--domain", "example.com", "--selector",
                     "rsasel", "--key", ed, "--json")
    check(rc == 2 and json.loads(out)["key_match"] is False, "check-record --key other type")
    rc, _, _ = run("check-record", "--zone", zone, "--domain", "example.com", "--selector",
                   "rsasel", "--key", os.path.join(tmp, "nope.pem"))
    check(rc == 3, "check-record: unreadable key file is 3")
    rc, _, _ = run("check-record", "--zone", os.path.join(tmp, "nope.zone"), "--domain",
                   "example.com", "--selector", "rsasel")
    check(rc == 3, "check-record: unreadable zone is 3")
    rc, _, _ = run("check-record", "--zone", zone, "--selector", "rsasel")
    check(rc == 64, "check-record: missing --domain is usage (64)")
    return zone


def explain(*args):
    rc, out, err = run("explain", *args)
    return rc, out, err


def test_explain(tmp, zone, rsa):
    keys = os.path.join(SAMPLES, "keys.zone")
    rc, out, _ = explain("--zone", keys, os.path.join(SAMPLES, "03-none-unsigned.eml"))
    check(rc == 0 and "no DKIM-Signature header: this message was not signed \u2014 enable "
          "DKIM signing at the sending system" in out and "dkim=none" in out,
          "explain: unsigned", out)
    expect = {
        "01-pass-rsa2048.eml": ("pass", "ok", "2048-bit"),
        "02-pass-ed25519.eml": ("pass", "ok", "ed25519"),
        "04-fail-body-altered.eml": ("fail", "body-hash-mismatch", "a hop changed it"),
        "05-fail-wrong-key.eml": ("fail", "signature-mismatch", "--key PRIVATE.pem"),
        "06-permerror-key-missing.eml": ("permerror", "key-not-found", "queried TXT "),
        "07-permerror-key-revoked.eml": ("permerror", "key-revoked", "check-record"),
        "08-permerror-key-syntax.eml": ("permerror", "key-syntax", "check-record"),
        "09-temperror-dns.eml": ("temperror", "dns-error", "broken-dns.example"),
        "10-permerror-rsa-sha1.eml": ("permerror", "insecure-algorithm", ""),
        "11-fail-key-too-small.eml": ("fail", "key-too-small", "768 bits"),
    }
    for name, (result, reason, word) in expect.items():
        path = os.path.join(SAMPLES, name)
        rc, out, err = explain("--zone", keys, "--json", path)
        try:
            j = json.loads(out)
        except ValueError:
            check(False, "explain %s JSON" % name, out + err)
            continue
        s = j["signatures"][0]
        check(rc == 0 and s["result"] == result and s["reason"] == reason and
              word in s["cause"] + s["detail"] and s["qname"] == s["s"] + "._domainkey." + s["d"],
              "explain " + name, out)
        check(j["authentication_results"].startswith("Authentication-Results: localhost;"),
              "explain %s: Authentication-Results" % name)
        check((result == "pass") == j["dmarc_dkim_aligned_pass"], "explain %s: DMARC" % name)
        rc, plain, _ = explain("--zone", keys, path)
        check("result: dkim=" + result in plain and
              (result == "pass" or "fix: " in plain) and "Authentication-Results" in plain,
              "explain %s plain" % name, plain)
    # Alignment: d= of another organization, and of a parent domain.
    msg = MESSAGE.replace(b"alice@example.com", b"alice@mail.example.com")
    mpath = os.path.join(tmp, "sub.eml")
    open(mpath, "wb").write(msg)
    for domain, strict, relaxed in (("example.com", False, True),
                                    ("mail.example.com", True, True),
                                    ("example.org", False, False)):
        rc, out, err = run("sign", "--key", rsa, "--domain", domain, "--selector", "rsasel",
                           mpath)
        spath = os.path.join(tmp, "aligned-%s.eml" % domain)
        open(spath, "w").write(out)
        rc, out, err = explain("--zone", zone, "--json", spath)
        j = json.loads(out)
        a = j["signatures"][0]["alignment"]
        check(j["from_domain"] == "mail.example.com" and a["strict"] == strict and
              a["relaxed"] == relaxed, "alignment d=%s" % domain, out)
    rc, out, _ = explain("--zone", zone, os.path.join(tmp, "aligned-example.org.eml"))
    check("relaxed no" in out and "last two labels" in out, "alignment in plain words", out)
    rc, _, _ = explain("--zone", zone, os.path.join(tmp, "missing.eml"))
    check(rc == 1, "explain: unreadable file is 1")
    rc, _, _ = explain("--zone", zone)
    check(rc == 2, "explain: no file is usage (2)")
    rc, out, _ = run("explain", "--zone", zone, "-", stdin=MESSAGE)
    check(rc == 0 and "not signed" in out, "explain reads stdin")


def test_dns(tmp, jr, je, rsa, other_zone_lines):
    try:
        import dnstest
    except ImportError:
        check(False, "tests/keys/dnstest.py is present")
        return
    if not os.path.exists(dnstest.UNBOUND):
        print("SKIP DNS paths: no unbound binary")
        return
    records = [(jr["name"] + ".", 300, jr["record"].encode()),
               (je["name"] + ".", 300, je["record"].encode()),
               ("revoked._domainkey.example.com.", 300, b"v=DKIM1; k=rsa; p="),
               ("two._domainkey.example.com.", 300, jr["record"].encode()),
               ("two._domainkey.example.com.", 300, b"v=DKIM1; k=rsa; p=")]
    records += [(owner + ".", 300, value.encode()) for owner, value in mistake_records(jr, je)]
    records += [(o + ".", 300, v.encode()) for o, v in discovery_records(jr, je)]
    with dnstest.Unbound(records) as ub, dnstest.Responder("servfail") as sf:
        dns = ["--resolver", "127.0.0.1@%d" % ub.port,
               "--resolver-option", "do-not-query-localhost: no"]
        rc, out, err = run("check-record", *dns, "--domain", "example.com", "--selector",
                           "rsasel", "--key", rsa, "--json")
        j = json.loads(out) if out else {}
        check(rc == 0 and j.get("key_match") is True and j.get("dnssec") == "insecure" and
              len(j.get("records", [])) == 1, "check-record over DNS", out + err)
        check_mistakes("DNS", dns)
        t0 = time.time()
        check_discovery("DNS", dns, tmp)
        check(time.time() - t0 < 20, "DNS discovery runs its lookups in parallel")
        rc, out, err = run("check-record", *dns, "--domain", "example.com", "--selector",
                           "nosuch", "--json")
        j = json.loads(out) if out else {}
        check(rc == 2 and j["lookup"]["reason"] == "key-not-found" and
              "nosuch._domainkey.example.com" in j["findings"][0]["message"],
              "check-record over DNS: missing", out + err)
        rc, out, err = run("check-record", *dns, "--domain", "example.com", "--selector",
                           "revoked", "--json")
        j = json.loads(out) if out else {}
        check(rc == 2 and any(f["code"] == "revoked" for r in j["records"]
                              for f in r["findings"]), "check-record over DNS: revoked", out)
        rc, out, err = run("check-record", *dns, "--domain", "example.com", "--selector",
                           "two", "--json")
        j = json.loads(out) if out else {}
        check(rc == 2 and len(j["records"]) == 2 and
              any(f["code"] == "several-records" for f in j["findings"]),
              "check-record over DNS: several records", out)
        rc, out, err = run("check-record", "--resolver", "127.0.0.1@%d" % sf.port,
                           "--resolver-option", "do-not-query-localhost: no",
                           "--dns-timeout", "3000", "--domain", "example.com", "--selector",
                           "rsasel", "--json")
        j = json.loads(out) if out else {}
        check(rc == 2 and j["lookup"]["reason"] == "dns-error", "check-record: SERVFAIL",
              out + err)
        msgfile = os.path.join(tmp, "dns.eml")
        open(msgfile, "wb").write(MESSAGE)
        rc, signed, err = run("sign", "--key", rsa, "--domain", "example.com", "--selector",
                              "rsasel", msgfile)
        spath = os.path.join(tmp, "dns-signed.eml")
        open(spath, "w").write(signed)
        rc, out, err = explain(*dns, "--json", spath)
        j = json.loads(out) if out else {}
        check(rc == 0 and j["signatures"][0]["result"] == "pass", "explain over DNS", out + err)
        rc, out, err = explain(*dns, "--json", os.path.join(SAMPLES, "06-permerror-key-missing.eml"))
        j = json.loads(out) if out else {}
        check(rc == 0 and j["signatures"][0]["reason"] == "key-not-found" and
              j["signatures"][0]["qname"] in j["signatures"][0]["cause"],
              "explain over DNS: key-not-found names the query", out + err)


def test_socket(tmp):
    """explain --socket asks a dkimd we start (and always stop) on a temporary socket."""
    rc, out, _ = run("explain", "--help")
    if "--socket" not in out:
        check(DKIMD is None, "explain has --socket when the daemon and client are built")
        return
    if DKIMD is None:
        print("SKIP explain --socket: this build has no dkimd")
        return
    path = os.path.join(tmp, "dkimd.sock")
    log = open(os.path.join(tmp, "dkimd.log"), "wb")
    p = subprocess.Popen([DKIMD, "--socket", path, "--zone", os.path.join(SAMPLES, "keys.zone"),
                          "--workers", "1"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 20
        up = False
        while time.time() < deadline and p.poll() is None and not up:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(path)
                s.close()
                up = True
            except OSError:
                time.sleep(0.05)
        check(up, "dkimd listens for explain --socket")
        if not up:
            return
        for name in ("01-pass-rsa2048.eml", "05-fail-wrong-key.eml", "03-none-unsigned.eml",
                     "06-permerror-key-missing.eml"):
            f = os.path.join(SAMPLES, name)
            rc1, viad, err = run("explain", "--socket", path, "--json", f)
            rc2, local, _ = run("explain", "--zone", os.path.join(SAMPLES, "keys.zone"),
                                "--json", f)
            a, b = json.loads(viad or "{}"), json.loads(local)
            same = rc1 == 0 and [(x["result"], x["reason"], x["cause"]) for x in
                                 a.get("signatures", [])] == \
                [(x["result"], x["reason"], x["cause"]) for x in b["signatures"]]
            check(same and a.get("authentication_results", "").startswith(
                "Authentication-Results:"), "explain --socket %s equals in-process" % name,
                viad + err)
        rc, _, err = run("explain", "--socket", path, "--zone", "x", f)
        check(rc == 2, "--socket excludes --zone", err)
        rc, _, err = run("explain", "--socket", os.path.join(tmp, "none.sock"), f)
        check(rc == 1, "explain --socket: no daemon is 1", err)
    finally:
        p.terminate()
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        log.close()


def main():
    with tempfile.TemporaryDirectory(prefix="dkd-toolkit-") as tmp:
        test_help_and_usage()
        test_keygen(tmp)
        zone, rsa, ed, jr, je = test_sign_verify(tmp)
        lint_zone = test_check_record(tmp, jr, je, rsa, ed)
        test_mistakes(tmp, jr, je)
        test_discovery(tmp, jr, je)
        test_explain(tmp, lint_zone, rsa)
        test_dns(tmp, jr, je, rsa, None)
        test_socket(tmp)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
