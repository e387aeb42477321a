#!/usr/bin/python3
"""Regenerate the sample messages and their zone file.

The samples show `dkimctl verify` at work on each cause an operator asks about. They are
signed by Debian's python3-dkim (an independent implementation, not ours), with the test
keys in keys/ and a fixed signing time, so the output is the same on every run:

    /usr/bin/python3 samples/make-samples.py

Keys are test keys only; never use them for real mail.
"""
import base64
import os
import subprocess
import time

import dkim
import nacl.signing

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = os.path.join(HERE, "keys")
SIGN_TIME = 1764000000  # 2025-11-24, fixed so the samples are reproducible

time.time = lambda: SIGN_TIME  # dkimpy stamps t= from time.time()


def rsa_key(name, bits):
    path = os.path.join(KEYS, name + ".pem")
    if not os.path.exists(path):
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                        f"rsa_keygen_bits:{bits}", "-out", path], check=True,
                       capture_output=True)
    pem = open(path, "rb").read()
    der = subprocess.run(["openssl", "pkey", "-in", path, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return pem, base64.b64encode(der).decode()


def ed25519_key(name):
    path = os.path.join(KEYS, name + ".seed")
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(base64.b64encode(os.urandom(32)) + b"\n")
    seed = open(path, "rb").read().strip()
    pub = nacl.signing.SigningKey(base64.b64decode(seed)).verify_key.encode()
    return seed, base64.b64encode(pub).decode()


MESSAGE = (b"From: Alice Operator <alice@example.com>\r\n"
           b"To: Bob Postmaster <bob@example.net>\r\n"
           b"Subject: Quarterly capacity report\r\n"
           b"Date: Mon, 24 Nov 2025 16:00:00 +0000\r\n"
           b"Message-ID: <sample-%s@example.com>\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n"
           b"\r\n"
           b"Hello Bob,\r\n"
           b"\r\n"
           b"the MTA fleet handled 41 million messages last quarter.  Details attached.\r\n"
           b"\r\n"
           b"Alice\r\n")


def zone_line(name, value):
    parts = [value[i:i + 255] for i in range(0, len(value), 255)] or [""]
    return f'{name}. 3600 IN TXT ' + " ".join(f'"{p}"' for p in parts)


def sign(tag, selector, key, algo=b"rsa-sha256", canon=(b"relaxed", b"relaxed"),
         domain=b"example.com"):
    msg = MESSAGE % tag.encode()
    sig = dkim.sign(msg, selector, domain, key, canonicalize=canon,
                    signature_algorithm=algo,
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id",
                                     b"mime-version", b"content-type"])
    return sig + msg


def main():
    rsa2048, rsa2048_pub = rsa_key("rsa2048", 2048)
    rsa2048b, rsa2048b_pub = rsa_key("rsa2048-other", 2048)
    rsa768, rsa768_pub = rsa_key("rsa768", 768)
    ed, ed_pub = ed25519_key("ed25519")

    samples = {
        "01-pass-rsa2048.eml": ("Pass: rsa-sha256, 2048-bit key, relaxed/relaxed",
                                sign("01", b"rsa2048", rsa2048)),
        "02-pass-ed25519.eml": ("Pass: ed25519-sha256 (RFC 8463)",
                                sign("02", b"ed25519", ed, algo=b"ed25519-sha256")),
        "03-none-unsigned.eml": ("None: the sender never signs", MESSAGE % b"03"),
        "04-fail-body-altered.eml": ("Fail: a footer was added after signing",
                                     sign("04", b"rsa2048", rsa2048) +
                                     b"--\r\nSent through the list server\r\n"),
        "05-fail-wrong-key.eml": ("Fail: the published key is not the signer's",
                                  sign("05", b"rotated", rsa2048b)),
        "06-permerror-key-missing.eml": ("Permerror: no TXT record for the selector",
                                         sign("06", b"missing", rsa2048)),
        "07-permerror-key-revoked.eml": ("Permerror: key record has an empty p=",
                                         sign("07", b"revoked", rsa2048)),
        "08-permerror-key-syntax.eml": ("Permerror: key retyped with a typo",
                                        sign("08", b"typo", rsa2048)),
        "09-temperror-dns.eml": ("Temperror: the domain's DNS answers SERVFAIL",
                                 sign("09", b"rsa2048", rsa2048, domain=b"broken-dns.example")),
        "10-permerror-rsa-sha1.eml": ("Permerror: rsa-sha1 refused per RFC 8301",
                                      sign("10", b"rsa2048", rsa2048, algo=b"rsa-sha1")),
        "11-fail-key-too-small.eml": ("Fail: 768-bit RSA key (RFC 8301 minimum is 1024)",
                                      sign("11", b"rsa768", rsa768)),
    }
    for name, (_, data) in samples.items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)

    typo = rsa2048_pub[:40] + "A" + rsa2048_pub[41:-4] + "!QAB"
    lines = [
        "; Key records for the samples (see make-samples.py). Test keys only.",
        "$TTL 3600",
        zone_line("rsa2048._domainkey.example.com", "v=DKIM1; k=rsa; p=" + rsa2048_pub),
        zone_line("ed25519._domainkey.example.com", "v=DKIM1; k=ed25519; p=" + ed_pub),
        zone_line("rotated._domainkey.example.com", "v=DKIM1; k=rsa; p=" + rsa2048_pub),
        zone_line("revoked._domainkey.example.com", "v=DKIM1; k=rsa; p="),
        zone_line("typo._domainkey.example.com", "v=DKIM1; k=rsa; p=" + typo),
        zone_line("rsa768._domainkey.example.com", "v=DKIM1; k=rsa; p=" + rsa768_pub),
        "; @servfail rsa2048._domainkey.broken-dns.example.",
        "",
    ]
    with open(os.path.join(HERE, "keys.zone"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(HERE, "README.md"), "w") as f:
        f.write("# Sample messages\n\nSigned by Debian's python3-dkim with the test keys "
                "in keys/ (regenerate: `/usr/bin/python3 samples/make-samples.py`). "
                "`dkimctl verify --zone samples/keys.zone samples/*.eml` shows one of each "
                "cause:\n\n")
        for name, (what, _) in samples.items():
            f.write(f"- `{name}`: {what}\n")


if __name__ == "__main__":
    main()
