#!/usr/bin/env python3
"""purity_check.py - the DKIM core links libcrypto and nothing else.

usage: purity_check.py NM LIBDKD_CORE.a

Lists what the archive's objects use but do not define themselves (`nm -u`, minus the
archive's own definitions) and fails on any name outside the allow-list below: the libc
functions that touch no file, socket, thread, process or environment, libcrypto, and
what compilers and sanitizers call on their own. So a pthread_once, getenv, open, read,
socket or ub_* that creeps into engine/core/ breaks the build's tests, not a review.

To allow a new libc function, add it here with the reason it does no I/O.
"""
import re
import subprocess
import sys

# libc, by use: memory, bytes and strings, formatting into buffers, and the wall clock
# that verification defaults to when dkd_config.clock is NULL (a vDSO read, no I/O).
LIBC = {
    "abort", "calloc", "free", "malloc", "realloc",
    "memchr", "memcmp", "memcpy", "memmove", "memset",
    "strcasecmp", "strchr", "strcmp", "strlen", "strncasecmp", "strncmp", "strerror",
    "snprintf", "vsnprintf",
    "time",
    "__assert_fail", "__stack_chk_fail",
}

# libcrypto's API prefixes.
LIBCRYPTO = re.compile(r"^(EVP|BN|OSSL|RSA|ERR|CRYPTO|OPENSSL|PEM|d2i|i2d|X509|EC)_")

# Emitted by the compiler or a sanitizer, not called by our code: the GOT, CPU feature
# data behind __builtin_cpu_supports (libgcc / compiler-rt), AArch64 outline atomics,
# and ASan / UBSan / TSan / libFuzzer instrumentation.
RUNTIME = re.compile(
    r"^(_GLOBAL_OFFSET_TABLE_|__cpu_indicator_init|__cpu_model|__cpu_features2"
    r"|__aarch64_.*|__(asan|ubsan|tsan|msan|sanitizer|sancov)_.*"
    r"|__(start|stop)___sancov_.*)$")


def symbols(nm, archive, *flags):
    out = subprocess.run([nm, *flags, archive], check=True, capture_output=True, text=True)
    names = set()
    for line in out.stdout.splitlines():
        parts = line.split()
        # "U name" (undefined) or "ADDR T name" (defined); skip member headers "x.o:"
        if not parts or parts[-1].endswith(":"):
            continue
        names.add(parts[-1])
    return names


def allowed(name):
    base = name
    # _FORTIFY_SOURCE's checked variants (__memcpy_chk, __snprintf_chk, ...)
    m = re.fullmatch(r"__(\w+)_chk", name)
    if m:
        base = m.group(1)
    return base in LIBC or LIBCRYPTO.match(name) or RUNTIME.match(name)


def main():
    if len(sys.argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    nm, archive = sys.argv[1], sys.argv[2]
    undefined = symbols(nm, archive, "-u") - symbols(nm, archive, "--defined-only")
    if not undefined:
        print(f"purity_check: {archive}: no undefined symbol at all (wrong archive?)")
        return 1
    bad = sorted(n for n in undefined if not allowed(n))
    if bad:
        print(f"purity_check: {archive} uses what the core must not:")
        for n in bad:
            print(f"  {n}")
        return 1
    print(f"purity_check: {archive}: {len(undefined)} outside names, all libc (no I/O), "
          "libcrypto or compiler runtime")
    return 0


if __name__ == "__main__":
    sys.exit(main())
