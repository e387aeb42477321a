#!/usr/bin/python3
"""limit.py - the hardware limit for verifying one corpus bucket, from openssl speed rates.

    bench/limit.py DIR --rsa1024 V --rsa2048 V --rsa4096 V --ed25519 V --sha256 BPS

V are verifications per second, BPS SHA-256 bytes per second (openssl speed at 16 KB).
For every message in DIR/*.eml and every DKIM-Signature in it, the unavoidable work is
one signature verification with the key's size and type, SHA-256 over the canonical
body (each distinct c= body canonicalization and l= once, as a verifier can share it),
and SHA-256 over the header hash input (the h= fields and the DKIM-Signature without
b=). Its time at the measured rates is the limit; nothing else (parsing, copying,
canonicalizing) is counted. Prints one line:

    #LIMIT messages=N signatures=S body_bytes=B header_bytes=H limit_s=T msgs_per_s=R

Canonical bodies are computed with python3-dkim's canonicalization (exact). The header
hash input is counted as the raw bytes of the signed fields plus the signature field
without its b= value, which differs from the canonical form only by folding whitespace
(a few bytes; a few nanoseconds of SHA-256). Key size comes from the selector name the
corpus uses (rsa1024, rsa2048, rsa4096, ed25519).
"""
import argparse
import os
import re
import sys

from dkim.canonicalization import Relaxed, Simple


def split(msg):
    head, _, body = msg.partition(b"\r\n\r\n")
    fields = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        else:
            fields.append(line)
    return fields, body


def tags(value):
    out = {}
    for part in value.split(b";"):
        if b"=" in part:
            k, v = part.split(b"=", 1)
            out[k.strip().lower()] = re.sub(rb"\s+", b"", v)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    for k in ("rsa1024", "rsa2048", "rsa4096", "ed25519", "sha256"):
        ap.add_argument("--" + k, type=float, required=True)
    a = ap.parse_args()
    verify_rate = {"rsa1024": a.rsa1024, "rsa2048": a.rsa2048, "rsa4096": a.rsa4096,
                   "ed25519": a.ed25519}
    names = sorted(n for n in os.listdir(a.dir) if n.endswith(".eml"))
    total_s = 0.0
    nsig = body_bytes = hdr_bytes = 0
    for name in names:
        fields, body = split(open(os.path.join(a.dir, name), "rb").read())
        bodies = {}
        for f in fields:
            if not f.lower().startswith(b"dkim-signature:"):
                continue
            t = tags(f.split(b":", 1)[1])
            sel = t[b"s"].decode()
            if sel not in verify_rate:
                sys.exit(f"limit.py: {name}: selector {sel} has no measured rate")
            total_s += 1.0 / verify_rate[sel]
            nsig += 1
            canon = t.get(b"c", b"simple/simple").split(b"/")
            bc = canon[1] if len(canon) > 1 else b"simple"
            key = (bc, t.get(b"l"))
            if key not in bodies:
                cb = (Relaxed if bc == b"relaxed" else Simple).canonicalize_body(body)
                if t.get(b"l") is not None:
                    cb = cb[:int(t[b"l"])]
                bodies[key] = len(cb)
            hb = len(f) - len(t[b"b"])
            remaining = list(fields)
            for h in t[b"h"].lower().split(b":"):
                for i in range(len(remaining) - 1, -1, -1):  # bottom-up, RFC 6376 5.4.2
                    if remaining[i].split(b":", 1)[0].strip().lower() == h:
                        hb += len(remaining[i]) + 2
                        del remaining[i]
                        break
            hdr_bytes += hb
        body_bytes += sum(bodies.values())
    total_s += (body_bytes + hdr_bytes) / a.sha256
    print(f"#LIMIT messages={len(names)} signatures={nsig} body_bytes={body_bytes} "
          f"header_bytes={hdr_bytes} limit_s={total_s:.6f} "
          f"msgs_per_s={len(names) / total_s:.1f}")


if __name__ == "__main__":
    main()
