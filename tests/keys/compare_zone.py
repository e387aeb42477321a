#!/usr/bin/python3
"""Differential test: `dkimctl verify --json` through real DNS equals `--zone`.

For the samples (samples/keys.zone) and every (set, zone, now) group of the conformance
corpus, the zone's records are served by a real unbound on 127.0.0.1 as local-data; names
under '; @servfail' and '; @timeout' directives are delegated (stub-zone) to a small
responder that answers SERVFAIL or never answers. Each message is then verified twice,
--zone FILE and --resolver 127.0.0.1@PORT, under both conformance profiles, and the JSON
lines must be identical except the detail text of dns-timeout results (the zone names the
directive, the resolver the elapsed limit). The server's query log must show that lookups
really went through it.

usage: compare_zone.py DKIMCTL SOURCE_ROOT SHARED_DIR
"""

import glob
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dnstest  # noqa: E402

PROFILES = [[], ["--allow-sha1", "--min-rsa-bits", "512"]]
TIMEOUT_MS = 700


def normalise(line):
    obj = json.loads(line)
    for sig in obj.get("signatures", []):
        if sig.get("reason") == "dns-timeout":
            sig["detail"] = "<timeout>"
    return obj


def compare(dkimctl, zone, now, files, label):
    records, directives = dnstest.read_zone(zone)
    failures, checked = [], 0
    with dnstest.Responder("servfail") as sf, dnstest.Responder("silent") as silent:
        stubs = [(name, sf.port if kind == "servfail" else silent.port)
                 for kind, name in directives if kind in ("servfail", "timeout")]
        with dnstest.Unbound(records, stubs=stubs) as ub:
            for flags in PROFILES:
                common = [dkimctl, "verify", "--json"] + flags
                if now is not None:
                    common += ["--now", str(now)]
                a = subprocess.run(common + ["--zone", zone] + files,
                                   capture_output=True, text=True, timeout=300)
                b = subprocess.run(common + ["--resolver", "127.0.0.1@%d" % ub.port,
                                             "--resolver-option", "do-not-query-localhost: no",
                                             "--dns-timeout", str(TIMEOUT_MS)] + files,
                                   capture_output=True, text=True, timeout=300)
                if a.returncode != b.returncode:
                    failures.append("%s: exit %d with --zone, %d with --resolver: %s"
                                    % (label, a.returncode, b.returncode, b.stderr.strip()))
                    continue
                za, zb = a.stdout.splitlines(), b.stdout.splitlines()
                if len(za) != len(zb):
                    failures.append("%s: %d lines with --zone, %d with --resolver"
                                    % (label, len(za), len(zb)))
                    continue
                for x, y in zip(za, zb):
                    checked += 1
                    if normalise(x) != normalise(y):
                        failures.append("%s %s:\n  zone:     %s\n  resolver: %s"
                                        % (label, " ".join(flags), x, y))
            asked = ub.queries()
    return checked, failures, asked


def main():
    dkimctl, root, shared = sys.argv[1:4]
    groups = [(os.path.join(root, "samples", "keys.zone"), None,
               sorted(glob.glob(os.path.join(root, "samples", "*.eml"))), "samples")]
    corpus = os.path.join(shared, "conformance")
    for manifest in sorted(glob.glob(os.path.join(corpus, "*", "expected.jsonl"))):
        set_dir = os.path.dirname(manifest)
        by_key = {}
        with open(manifest, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    e = json.loads(line)
                    key = (os.path.join(set_dir, e["zone"]), e.get("now"))
                    by_key.setdefault(key, []).append(os.path.join(set_dir, e["file"]))
        for (zone, now), files in sorted(by_key.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
            groups.append((zone, now, files, os.path.basename(set_dir)))
    total, failures, asked = 0, [], 0
    for zone, now, files, label in groups:
        checked, fails, n = compare(dkimctl, zone, now, files, label)
        total += checked
        asked += n
        failures += fails
        print("%-20s %-28s %3d messages, %3d results compared, %d differ"
              % (label, os.path.basename(zone), len(files), checked, len(fails)), flush=True)
    for f in failures:
        print("FAIL " + f)
    if asked == 0:
        failures.append("the servers logged no query: the resolver did not use them")
    print("%d results compared, %d differences, %d queries seen by the servers"
          % (total, len(failures), asked))
    return 1 if failures or total == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
