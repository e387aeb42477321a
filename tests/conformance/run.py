#!/usr/bin/python3
"""Conformance runner: checks `dkimctl verify --json` against ../shared/conformance.

For every entry of every <set>/expected.jsonl, the message is verified twice:

  strict       default dkimctl flags (RFC 6376 + RFC 8301: no rsa-sha1, RSA >= 1024 bits),
               compared with `rfc6376_strict` if the entry has it, else `rfc8301`, else
               the default expectation;
  permissive   --allow-sha1 --min-rsa-bits 512 (the corpus's smallest RSA key is 512 bits),
               compared with `rfc6376_strict` if present, else the default expectation.

A case passes when the overall result (the best of our signature results, ranked as the
corpus README says; `none` when we report no signature) equals the expected overall and,
when the expectation lists signatures, we report as many and each result matches.

DEVIATIONS.md lists known, argued mismatches. A listed mismatch that occurs exactly as
written counts as passed-with-deviation; a listed one that no longer occurs (or occurs with
a different result) is an error, so the list cannot silently go stale. Entries the source
marks `skip` are run and reported but not counted.

The last line of output is exactly `N passed, N failed`; the exit status is 1 on failure.
Standard library only: CI runs this with /usr/bin/python3 on a bare Debian.
"""

import argparse
import json
import os
import subprocess
import sys

# Best first: the corpus README's ranking (Mail::DKIM's, with `invalid` split).
RANKING = ["pass", "fail", "temperror", "permerror", "neutral", "policy", "none"]
PROFILES = {
    "strict": [],
    "permissive": ["--allow-sha1", "--min-rsa-bits", "512"],
}
CALL_TIMEOUT = 240


def rank(result):
    # An unknown word ranks below everything so it can never make a message pass.
    return RANKING.index(result) if result in RANKING else len(RANKING)


def best_result(signatures):
    results = [s.get("result") for s in signatures]
    if not results:
        return "none"
    return min(results, key=rank)


def expectation(entry, profile):
    """The (overall, [per-signature results]) the entry expects under a profile."""
    order = ["rfc6376_strict", "rfc8301"] if profile == "strict" else ["rfc6376_strict"]
    src = entry
    for name in order:
        if entry.get(name):
            src = entry[name]
            break
    return src["overall"], [s["result"] for s in src.get("signatures", [])]


def show(overall, sigs):
    """The text used both in failure lines and in the DEVIATIONS.md expected/ours columns."""
    if sigs is None:
        return overall
    return "%s [%s]" % (overall, ", ".join(sigs))


def norm(text):
    return " ".join(text.replace("`", "").split())


# ---- DEVIATIONS.md ----

def load_deviations(path):
    """Rows of the first table whose header starts with `set/file`; returns (rows, errors)."""
    rows, errors = [], []
    if not path:
        return rows, errors
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        return rows, ["cannot read deviations file %s: %s" % (path, e)]
    in_table = False
    for num, line in enumerate(lines, 1):
        s = line.strip()
        if not s.startswith("|"):
            in_table = False
            continue
        cells = [c.strip() for c in s.strip("|").split("|")]
        if not in_table:
            if norm(cells[0]).lower() == "set/file":
                in_table = True
            continue
        if all(set(c) <= set("-: ") for c in cells):
            continue  # the |---|---| separator
        if len(cells) < 5:
            errors.append("%s:%d: deviation row needs 5 columns" % (path, num))
            continue
        key, profile, expected, ours = (norm(c) for c in cells[:4])
        if profile not in ("strict", "permissive", "both"):
            errors.append("%s:%d: profile must be strict, permissive or both, not %r"
                          % (path, num, profile))
            continue
        if not norm(cells[4]):
            errors.append("%s:%d: a deviation needs its RFC section and reason" % (path, num))
            continue
        rows.append({"key": key, "profiles": ["strict", "permissive"] if profile == "both"
                     else [profile], "expected": expected, "ours": ours, "line": num,
                     "used": set()})
    return rows, errors


def row_matches_entry(row, set_name, file_name):
    # Accept both `set/messages/x.eml` (the manifest's path) and `set/x.eml`.
    return row["key"] in ("%s/%s" % (set_name, file_name),
                          "%s/%s" % (set_name, os.path.basename(file_name)))


# ---- running dkimctl ----

def run_dkimctl(dkimctl, flags, zone, now, files):
    """Verify files in one call; returns ({file: parsed object or error string})."""
    argv = [dkimctl, "verify", "--json", "--zone", zone] + flags
    if now is not None:
        argv += ["--now", str(now)]
    argv += files
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=CALL_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {f: "dkimctl timed out after %d s" % CALL_TIMEOUT for f in files}
    except OSError as e:
        return {f: "cannot run dkimctl: %s" % e for f in files}
    err = p.stderr.decode("utf-8", "replace").strip().replace("\n", " | ")
    if p.returncode != 0:
        return {f: "dkimctl exit %d: %s" % (p.returncode, err[:300]) for f in files}
    lines = [l for l in p.stdout.decode("utf-8", "replace").splitlines() if l.strip()]
    if len(lines) != len(files):
        return {f: "dkimctl printed %d JSON lines for %d files" % (len(lines), len(files))
                for f in files}
    out = {}
    for f, line in zip(files, lines):
        try:
            obj = json.loads(line)
        except ValueError as e:
            out[f] = "bad JSON from dkimctl (%s): %s" % (e, line[:200])
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("signatures"), list) \
                or not all(isinstance(s, dict) for s in obj["signatures"]):
            out[f] = "JSON without a signatures list: %s" % line[:200]
        elif obj.get("file") != f:
            out[f] = "JSON line names %r, expected %r" % (obj.get("file"), f)
        else:
            out[f] = obj
    return out


def verify_all(dkimctl, flags, jobs):
    """jobs: {(zone, now): [files]}. One call per group; on a group-wide error each file
    is retried alone so one bad message cannot hide the results of the others."""
    results = {}
    for (zone, now), files in jobs.items():
        got = run_dkimctl(dkimctl, flags, zone, now, files)
        if len(files) > 1 and all(isinstance(v, str) for v in got.values()):
            got = {}
            for f in files:
                got.update(run_dkimctl(dkimctl, flags, zone, now, [f]))
        for f in files:
            results[(zone, now, f)] = got[f]
    return results


def describe(obj):
    """Our per-signature reason/explanation, for failure lines."""
    parts = []
    for i, s in enumerate(obj.get("signatures", []), 1):
        parts.append("#%d d=%s s=%s a=%s %s/%s: %s" % (
            i, s.get("d"), s.get("s"), s.get("a"), s.get("result"), s.get("reason"),
            s.get("explanation")))
    return "; ".join(parts) if parts else "no signatures"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dkimctl", required=True)
    ap.add_argument("--corpus", required=True, help="the conformance folder")
    ap.add_argument("--deviations", help="DEVIATIONS.md")
    args = ap.parse_args()

    sets = sorted(d for d in os.listdir(args.corpus)
                  if os.path.isfile(os.path.join(args.corpus, d, "expected.jsonl")))
    if not sets:
        print("no <set>/expected.jsonl under %s" % args.corpus)
        print("0 passed, 1 failed")
        return 1

    entries = []  # (set, entry)
    for s in sets:
        with open(os.path.join(args.corpus, s, "expected.jsonl"), encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    entries.append((s, json.loads(line)))

    deviations, dev_errors = load_deviations(args.deviations)
    for row in deviations:
        if not any(row_matches_entry(row, s, e["file"]) for s, e in entries):
            dev_errors.append("%s:%d: deviation for %s names no corpus entry"
                              % (args.deviations, row["line"], row["key"]))

    jobs = {}
    for s, e in entries:
        key = (os.path.join(args.corpus, s, e["zone"]), e.get("now"))
        jobs.setdefault(key, []).append(os.path.join(args.corpus, s, e["file"]))

    passed = failed = 0
    # summary[(set, profile)] = [passed, with-deviation, failed, skipped]
    summary = {}
    for profile, flags in PROFILES.items():
        results = verify_all(args.dkimctl, flags, jobs)
        for s, e in entries:
            path = os.path.join(args.corpus, s, e["file"])
            obj = results[(os.path.join(args.corpus, s, e["zone"]), e.get("now"), path)]
            exp_overall, exp_sigs = expectation(e, profile)
            listed = exp_sigs if exp_sigs else None
            name = "%s/%s" % (s, e["file"])
            counts = summary.setdefault((s, profile), [0, 0, 0, 0])

            if isinstance(obj, str):
                ok, ours, detail = False, "error", obj
            else:
                our_sigs = [str(x.get("result")) for x in obj["signatures"]]
                our_overall = best_result(obj["signatures"])
                ok = our_overall == exp_overall and (
                    listed is None or our_sigs == listed)
                ours = show(our_overall, our_sigs if listed is not None else None)
                detail = describe(obj)
            expected = show(exp_overall, listed)

            if "skip" in e:
                counts[3] += 1
                print("SKIP %-10s %s: expected %s, ours %s%s (%s)" % (
                    profile, name, expected, ours, "" if ok else " (differs)", e["skip"]))
                continue

            row = None
            for r in deviations:
                if profile in r["profiles"] and row_matches_entry(r, s, e["file"]):
                    row = r
            if ok:
                if row is not None:
                    dev_errors.append("%s:%d: listed deviation %s (%s) no longer occurs: "
                                      "ours now matches the expected %s" % (
                                          args.deviations, row["line"], name, profile,
                                          expected))
                    row["used"].add(profile)
                passed += 1
                counts[0] += 1
            elif row is not None and norm(row["expected"]) == norm(expected) \
                    and norm(row["ours"]) == norm(ours):
                row["used"].add(profile)
                passed += 1
                counts[1] += 1
                print("DEVIATION %-10s %s: expected %s, ours %s (DEVIATIONS.md:%d)" % (
                    profile, name, expected, ours, row["line"]))
            else:
                failed += 1
                counts[2] += 1
                note = ""
                if row is not None:
                    row["used"].add(profile)
                    note = " [DEVIATIONS.md:%d lists expected %s, ours %s]" % (
                        row["line"], row["expected"], row["ours"])
                print("FAIL %-10s %s: expected %s, ours %s%s -- %s" % (
                    profile, name, expected, ours, note, detail))

    for msg in dev_errors:
        print("ERROR " + msg)
    failed += len(dev_errors)

    print()
    print("%-20s %-10s %6s %9s %6s %7s" % ("set", "profile", "passed", "deviation",
                                         "failed", "skipped"))
    for (s, profile), (p, d, f, k) in sorted(summary.items()):
        print("%-20s %-10s %6d %9d %6d %7d" % (s, profile, p, d, f, k))
    print()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
