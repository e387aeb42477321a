#!/usr/bin/python3
"""Tests of the dkimctl command line: exit codes, error messages, the --json shape, the
plain output and --now. Usage: dkimctl_test.py PATH-TO-DKIMCTL (env DKD_SHARED = the shared
folder, default ../shared beside the source tree). Standard library only.

The DKIM results themselves are the conformance suite's business; this checks the
contract that scripts and operators rely on."""

import json
import os
import re
import subprocess
import sys
import tempfile

DKIMCTL = None
SHARED = None
RESULT_WORDS = {"pass", "fail", "neutral", "permerror", "temperror", "policy", "none"}
SIG_KEYS = {"d": str, "s": str, "i": (str, type(None)), "a": str, "result": str,
            "reason": str, "explanation": str, "key_bits": int}


def run(*args, timeout=60):
    p = subprocess.run([DKIMCTL] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def corpus(*parts):
    return os.path.join(SHARED, "conformance", *parts)


def manifest(set_name):
    with open(corpus(set_name, "expected.jsonl"), encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def json_lines(out, n):
    lines = out.splitlines()
    assert len(lines) == n, "want %d JSON lines (one per message), got %d: %r" % (
        n, len(lines), out[:500])
    return [json.loads(l) for l in lines]


def check_shape(obj, path):
    assert set(obj) == {"file", "signatures", "authentication_results"}, \
        "top-level keys %s" % sorted(obj)
    assert obj["file"] == path, "file %r, want %r" % (obj["file"], path)
    assert isinstance(obj["signatures"], list)
    assert isinstance(obj["authentication_results"], str) and obj["authentication_results"]
    for sig in obj["signatures"]:
        missing = set(SIG_KEYS) - set(sig)
        assert not missing, "signature lacks %s: %r" % (sorted(missing), sig)
        for k, t in SIG_KEYS.items():
            assert isinstance(sig[k], t) and not isinstance(sig[k], bool), \
                "%s has type %s: %r" % (k, type(sig[k]).__name__, sig)
        assert sig["result"] in RESULT_WORDS, "result %r" % sig["result"]
        assert sig["reason"] and sig["explanation"], "empty reason/explanation: %r" % sig


def unsigned_message(tmp):
    # Bare LF on purpose: the engine must accept it like CRLF.
    path = os.path.join(tmp, "unsigned.eml")
    with open(path, "wb") as f:
        f.write(b"From: alice@example.org\nTo: bob@example.net\nSubject: hi\n"
                b"Date: Mon, 1 Jan 2024 00:00:00 +0000\n\nno signature here\n")
    zone = os.path.join(tmp, "empty.zone")
    with open(zone, "wb") as f:
        f.write(b"; no records: every lookup is NXDOMAIN\n")
    return path, zone


# ---- the tests ----

def test_help():
    for argv in (["--help"], ["verify", "--help"]):
        rc, out, err = run(*argv)
        assert rc == 0, "%s exit %d" % (argv, rc)
        assert "usage" in out.lower(), "%s prints no usage on stdout: %r" % (argv, out[:200])
    rc, out, _ = run("verify", "--help")
    for flag in ("--zone", "--now", "--allow-sha1", "--min-rsa-bits", "--json"):
        assert flag in out, "verify --help does not mention %s" % flag


def test_unknown_flag():
    with tempfile.TemporaryDirectory() as tmp:
        path, zone = unsigned_message(tmp)
        rc, out, err = run("verify", "--zone", zone, "--no-such-flag", path)
    assert rc == 2, "exit %d, want 2" % rc
    assert "no-such-flag" in err, "stderr does not name the flag: %r" % err
    assert out == "", "printed results despite the usage error: %r" % out[:200]
    rc, _, err = run("no-such-command")
    assert rc == 2 and "no-such-command" in err, "unknown command: exit %d, %r" % (rc, err)


def test_missing_file():
    with tempfile.TemporaryDirectory() as tmp:
        path, zone = unsigned_message(tmp)
        missing = os.path.join(tmp, "does-not-exist.eml")
        for args in ([missing], ["--json", missing], [path, missing]):
            rc, out, err = run("verify", "--zone", zone, *args)
            assert rc != 0, "%s: exit 0 for a missing file" % args
            assert missing in err, "%s: stderr does not name the file: %r" % (args, err)
        rc, _, err = run("verify", "--zone", os.path.join(tmp, "no.zone"), path)
        assert rc != 0 and "no.zone" in err, "missing zone: exit %d, %r" % (rc, err)


def test_json_unsigned():
    with tempfile.TemporaryDirectory() as tmp:
        path, zone = unsigned_message(tmp)
        rc, out, err = run("verify", "--json", "--zone", zone, path)
    assert rc == 0, "exit %d: %s" % (rc, err)
    (obj,) = json_lines(out, 1)
    check_shape(obj, path)
    assert obj["signatures"] == [], "signatures %r" % obj["signatures"]
    assert "dkim=none" in obj["authentication_results"], obj["authentication_results"]


def test_json_signed():
    entries = manifest("rfc-examples")
    paths = [corpus("rfc-examples", e["file"]) for e in entries]
    zone = corpus("rfc-examples", entries[0]["zone"])
    rc, out, err = run("verify", "--json", "--zone", zone, *paths)
    assert rc == 0, "exit %d: %s" % (rc, err)
    objs = json_lines(out, len(paths))
    for e, path, obj in zip(entries, paths, objs):
        check_shape(obj, path)
        sigs = obj["signatures"]
        assert len(sigs) == len(e["signatures"]), "%s: %d signatures, want %d" % (
            e["file"], len(sigs), len(e["signatures"]))
        # Top-down header order: compare with the manifest, which lists them that way,
        # and with the order of the b= values in the message itself.
        with open(path, "rb") as f:
            headers = f.read().replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
        unfolded = re.sub(rb"\n[ \t]+", b" ", headers).split(b"\n")
        order = [re.search(rb"[:; \t]s=([^;\s]+)", h).group(1).decode()
                 for h in unfolded if h.lower().startswith(b"dkim-signature:")]
        assert [s["s"] for s in sigs] == order, "order %r, want %r" % (
            [s["s"] for s in sigs], order)
        for want, got in zip(e["signatures"], sigs):
            for k in ("d", "s", "a", "result"):
                assert got[k] == want[k], "%s: %s=%r, want %r" % (e["file"], k, got[k],
                                                                   want[k])
            if got["a"].startswith("rsa-"):
                # Both RFC example RSA keys (RFC 6376 C.2, RFC 8463 A.2) are 1024-bit.
                assert got["key_bits"] == 1024, "key_bits %r" % got["key_bits"]
            else:
                assert got["key_bits"] > 0, "key_bits %r" % got["key_bits"]
        ar = obj["authentication_results"]
        assert ar.count("dkim=") == len(sigs), "A-R has %d dkim= for %d signatures: %r" % (
            ar.count("dkim="), len(sigs), ar)
        for s in sigs:
            assert "header.d=" + s["d"] in ar, "A-R lacks header.d=%s: %r" % (s["d"], ar)


def test_plain_output():
    entries = manifest("rfc-examples")
    with tempfile.TemporaryDirectory() as tmp:
        unsigned, empty_zone = unsigned_message(tmp)
        cases = [(corpus("rfc-examples", e["file"]), corpus("rfc-examples", e["zone"]))
                 for e in entries] + [(unsigned, empty_zone)]
        for path, zone in cases:
            rc, out, err = run("verify", "--zone", zone, path)
            assert rc == 0, "%s: exit %d: %s" % (path, rc, err)
            rc, js, _ = run("verify", "--json", "--zone", zone, path)
            (obj,) = json_lines(js, 1)
            assert path in out, "plain output does not name the file: %r" % out[:300]
            for s in obj["signatures"]:
                assert s["result"] in out, "plain output lacks %r: %r" % (s["result"], out)
                assert s["explanation"] in out, "plain output lacks %r: %r" % (
                    s["explanation"], out)
            if not obj["signatures"]:
                assert "none" in out, "unsigned message: plain output lacks 'none': %r" % out
            assert not out.lstrip().startswith("{"), "plain output is JSON"


def test_now_changes_expiry():
    (e,) = [x for x in manifest("mail-dkim") if x["file"].endswith("/ignore_7.eml")]
    path, zone = corpus("mail-dkim", e["file"]), corpus("mail-dkim", e["zone"])
    with open(path, "rb") as f:
        x = int(re.search(rb"[; \t]x=(\d+)", f.read()).group(1))
    assert e["now"] > x, "manifest now %d is not after x=%d" % (e["now"], x)
    # rsa-sha1 with a short key: allow both so expiry is the only thing that can fail.
    flags = ["verify", "--json", "--allow-sha1", "--min-rsa-bits", "512", "--zone", zone]
    results = {}
    for label, now in (("after x", e["now"]), ("before x", x - 1000000)):
        rc, out, err = run(*(flags + ["--now", str(now), path]))
        assert rc == 0, "%s: exit %d: %s" % (label, rc, err)
        (obj,) = json_lines(out, 1)
        assert len(obj["signatures"]) == 1, obj
        results[label] = obj["signatures"][0]
    assert results["after x"]["result"] == e["overall"] == "permerror", results["after x"]
    assert results["before x"]["result"] == "pass", results["before x"]
    assert results["after x"]["reason"] != results["before x"]["reason"], results
    # Without --now the wall clock applies, and 2007's x= is long past.
    rc, out, _ = run(*(flags + [path]))
    (obj,) = json_lines(out, 1)
    assert obj["signatures"][0]["result"] == "permerror", obj
    rc, _, err = run("verify", "--now", "yesterday", "--zone", zone, path)
    assert rc == 2, "--now yesterday: exit %d, want 2 (%s)" % (rc, err)


TESTS = [test_help, test_unknown_flag, test_missing_file, test_json_unsigned,
         test_json_signed, test_plain_output, test_now_changes_expiry]


def main():
    global DKIMCTL, SHARED
    if len(sys.argv) != 2:
        print("usage: dkimctl_test.py PATH-TO-DKIMCTL", file=sys.stderr)
        return 2
    DKIMCTL = os.path.abspath(sys.argv[1])
    SHARED = os.environ.get("DKD_SHARED") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared")
    passed = failed = 0
    for t in TESTS:
        try:
            t()
        except Exception as e:  # a crash of the test is a failure of that test, not all
            failed += 1
            print("FAIL %s: %s: %s" % (t.__name__, type(e).__name__, e))
        else:
            passed += 1
            print("ok   %s" % t.__name__)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
