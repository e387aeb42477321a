#!/bin/sh
# run-aarch64.sh - build the NEON scanner test (canon_neon_test.c) for AArch64 with the
# cross compiler and run it under qemu-aarch64-static; then, on an x86-64 host, build the
# same test against the SSE2 scanners, so that the reference the NEON scanners are held
# to is the SSE2 scanners' behaviour and not only our reading of scan.h. Also runs
# tests/core/scan_test.c (every scanner of scan.h against its scalar reference at guard
# pages) for AArch64, checks that engine/core/scan_neon.c compiles warning-free to
# nothing on the host, and
# builds the AArch64 test with clang too when clang can cross-link.
#
# Exit 0 = pass, 1 = fail, 77 = skipped (cross compiler or qemu missing; when CI is set
# a missing tool is a failure instead). Timings under qemu mean nothing: none are taken.
#
# Environment: AARCH64_CC (default aarch64-linux-gnu-gcc), QEMU_AARCH64 (default
# qemu-aarch64-static), HOST_CC (default cc), CLANG (default clang), DKD_CANON_SEED (passed to the test).
# Debian packages: gcc-aarch64-linux-gnu qemu-user-static.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cross_cc=${AARCH64_CC:-aarch64-linux-gnu-gcc}
qemu=${QEMU_AARCH64:-qemu-aarch64-static}
host_cc=${HOST_CC:-cc}

missing() {
    if [ -n "${CI:-}" ]; then
        echo "run-aarch64.sh: $1 not found, and CI is set: failing" >&2
        exit 1
    fi
    echo "run-aarch64.sh: $1 not found, skipping (apt-get install gcc-aarch64-linux-gnu qemu-user-static)"
    exit 77
}
command -v "$cross_cc" >/dev/null 2>&1 || missing "$cross_cc"
command -v "$qemu" >/dev/null 2>&1 || missing "$qemu"

# the project's warning flags (meson.build, warning_level=3), as errors
warn="-Wall -Wextra -Wpedantic -Wformat=2 -Wshadow -Wvla -Wwrite-strings
      -Wimplicit-fallthrough -Wstrict-prototypes -Wmissing-prototypes -Werror"
cflags="-std=gnu17 -O2 -D_GNU_SOURCE $warn -I$root/engine/core"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

status=0

# shellcheck disable=SC2086 # $cflags is a list of flags
"$cross_cc" $cflags -static -o "$out/canon_neon_test" \
    "$here/canon_neon_test.c" "$root/engine/core/scan_neon.c"
"$qemu" "$out/canon_neon_test" || status=1
# shellcheck disable=SC2086
"$cross_cc" $cflags -static -o "$out/scan_test" \
    "$root/tests/core/scan_test.c" "$root/engine/core/scan.c" "$root/engine/core/scan_neon.c"
"$qemu" "$out/scan_test" || status=1

# clang as well when it can cross-link here (the fuzz and sanitizer builds use clang, and
# the two compilers warn differently); probed with an empty program so that a missing
# sysroot skips this step while a warning or a failure in our files does not
clang_cc=${CLANG:-clang}
if command -v "$clang_cc" >/dev/null 2>&1; then
    printf 'int main(void)\n{\n    return 0;\n}\n' >"$out/probe.c"
    if "$clang_cc" --target=aarch64-linux-gnu -static -fuse-ld=bfd -o "$out/probe" "$out/probe.c" \
        >/dev/null 2>&1; then
        # shellcheck disable=SC2086
        "$clang_cc" --target=aarch64-linux-gnu $cflags -static -fuse-ld=bfd \
            -o "$out/canon_neon_test_clang" "$here/canon_neon_test.c" \
            "$root/engine/core/scan_neon.c"
        "$qemu" "$out/canon_neon_test_clang" || status=1
    else
        echo "run-aarch64.sh: $clang_cc cannot cross-link for aarch64 here, clang step skipped"
    fi
fi

case $(uname -m) in
x86_64)
    if command -v "$host_cc" >/dev/null 2>&1; then
        # shellcheck disable=SC2086
        "$host_cc" $cflags -c -o "$out/scan_neon_host.o" "$root/engine/core/scan_neon.c"
        # shellcheck disable=SC2086
        "$host_cc" $cflags -DDKD_CROSS_HOST_SSE2 -o "$out/canon_sse2_test" \
            "$here/canon_neon_test.c" "$root/engine/core/scan.c"
        "$out/canon_sse2_test" || status=1
    fi
    ;;
esac

exit $status
