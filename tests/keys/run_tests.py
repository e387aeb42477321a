#!/usr/bin/python3
"""Starts the DNS servers the resolver's C tests talk to, runs them, stops the servers.

usage: run_tests.py TEST_BINARY SOURCE_ROOT DNSSEC_ZONE_TOOL

Servers (all on 127.0.0.1, free ports, stopped on exit whatever happens):
  unbound     samples/keys.zone plus the records below, query log for counting;
              names under slow.example. are delegated to the silent responder;
              sec.example. is a DNSSEC-signed auth-zone written by DNSSEC_ZONE_TOOL
              (its trust anchor file goes to the test in DKD_SEC_ANCHOR)
  responders  servfail, silent, truncate (TC over UDP, TCP closed), truncate-ok
              (TC over UDP, a key over TCP), oversize (TC over UDP, a 16 KB record over
              TCP), switch (a key with TTL 0 until asked for switch-off.*, then SERVFAIL),
              dark (a key at once for every name but those under dark.example., never
              answered; its queries logged to DKD_DARK_LOG)
The test binary gets the ports and the log path in DKD_* variables.
A missing unbound binary is a skip (77) only when it is genuinely not installed.
"""

import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dnstest  # noqa: E402

ED25519 = b"v=DKIM1; k=ed25519; p=2fZ87ldu4Iw2BkvY4osaII5uJf31kXDb0ccMyE/cH/o="


def main():
    binary, root, signer = sys.argv[1], sys.argv[2], sys.argv[3]
    if not os.path.exists(dnstest.UNBOUND):
        print("unbound is not installed (apt install unbound)")
        return 77
    secdir = tempfile.mkdtemp(prefix="dkd-dnssec-")
    try:
        subprocess.run([signer, secdir], check=True, timeout=60)
        return run(binary, root, secdir)
    finally:
        shutil.rmtree(secdir, ignore_errors=True)


def run(binary, root, secdir):
    zone = os.path.join(root, "samples", "keys.zone")
    records, _ = dnstest.read_zone(zone)
    records += [
        ("multi._domainkey.example.com.", 3600, b"v=DKIM1; k=rsa; p=not!base64"),
        ("multi._domainkey.example.com.", 3600, ED25519),
        ("ttl._domainkey.example.com.", 1, ED25519),
        ("sel._domainkey.corp.test.", 3600, ED25519),
    ]
    cnames = [("alias._domainkey.example.com.", "ed25519._domainkey.example.com.", 3600)]
    extra = ["local-data: 'nodata._domainkey.example.com. 3600 IN A 192.0.2.1'"]
    rsa_record = [d for o, t, d in records if o == "rsa2048._domainkey.example.com."][0]
    darklog = os.path.join(secdir, "dark.log")
    with dnstest.Responder("servfail") as sf, \
            dnstest.Responder("dark", txt=ED25519, silent=r"(^|\.)dark\.example$",
                              logfile=darklog) as dark, \
            dnstest.Responder("silent") as silent, \
            dnstest.Responder("truncate") as trunc, \
            dnstest.Responder("truncate-ok", txt=rsa_record) as trunc_ok, \
            dnstest.Responder("truncate-ok", txt=b"v=DKIM1; k=rsa; p=" + b"A" * 16000) as big, \
            dnstest.Responder("switch", txt=ED25519) as switch, \
            dnstest.Unbound(records, extra=extra, cnames=cnames,
                            stubs=[("slow.example.", silent.port)],
                            auth_zones=[("sec.example.",
                                         os.path.join(secdir, "sec.zone"))]) as ub:
        env = dict(os.environ,
                   DKD_DNS_PORT=str(ub.port), DKD_DNS_LOG=ub.log,
                   DKD_SERVFAIL_PORT=str(sf.port), DKD_SILENT_PORT=str(silent.port),
                   DKD_TRUNC_PORT=str(trunc.port), DKD_TRUNC_OK_PORT=str(trunc_ok.port),
                   DKD_BIG_PORT=str(big.port), DKD_SWITCH_PORT=str(switch.port),
                   DKD_DARK_PORT=str(dark.port), DKD_DARK_LOG=darklog,
                   DKD_SAMPLES=os.path.join(root, "samples"),
                   DKD_SEC_ANCHOR=os.path.join(secdir, "sec.anchor"))
        rc = subprocess.run([binary], env=env, timeout=600).returncode
        print("responder queries: servfail %d, silent %d, truncate %d, truncate-ok %d, "
              "oversize %d, switch %d, dark %d; unbound %d"
              % (sf.count, silent.count, trunc.count, trunc_ok.count, big.count,
                 switch.count, dark.count, ub.queries()))
        return rc


if __name__ == "__main__":
    sys.exit(main())
