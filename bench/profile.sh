#!/bin/sh
# profile.sh - where corpus-bench's time goes, per bucket (perf, software cpu-clock).
#
#   bench/profile.sh [BUILD_DIR] [CORPUS_DIR] [SET]
#
# For each bucket of SET (default rsa2048) it samples corpus-bench for about 3 s and
# prints the share of samples per binary and the top symbols. Debian's libcrypto is
# stripped, so its samples are split by what the code at the address is: the SHA-256
# block function (the code around its sha256rnds2 / SHA-NI instructions; a CPU without
# SHA-NI runs another SHA-256 path, which lands in "the rest") and everything else
# (on this corpus essentially the RSA modular exponentiation: adcx/adox/mulx code).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$(dirname "$here")/build-bench}
corpus=${2:-$build/tmp/corpus}
set_name=${3:-rsa2048}
out=$build/tmp/profile
mkdir -p "$out"
lib=$(ldd "$build/bench/corpus-bench" | awk '/libcrypto/ { print $3 }')

# The address ranges of libcrypto's SHA-256 block code: clusters of sha256rnds2
# instructions (a gap over 4 KiB starts a new one), widened by 1 KiB each side.
range=$(objdump -d --no-show-raw-insn "$lib" | awk '/sha256rnds2/ { print $1 }' | \
    /usr/bin/python3 -c 'import sys
a = sorted(int(x.strip().rstrip(":"), 16) for x in sys.stdin if x.strip())
out, lo = [], None
for i, x in enumerate(a):
    lo = x if lo is None else lo
    if i + 1 == len(a) or a[i + 1] - x > 4096:
        out.append("%d-%d" % (lo - 1024, x + 1024))
        lo = None
print(",".join(out) or "0-0")')

for bucket in 2k 20k 200k; do
    data=$out/perf-$set_name-$bucket.data
    perf record -q -e cpu-clock -F 4000 -o "$data" -- "$build/bench/corpus-bench" \
        "$corpus/$set_name/$bucket" --quiet --min-time 3 >/dev/null 2>&1
    echo "== $set_name/$bucket: perf record -e cpu-clock -F 4000 corpus-bench ... --min-time 3"
    perf report -i "$data" --stdio --no-children --sort dso,symbol 2>/dev/null | \
        /usr/bin/python3 -c '
import re, sys
ranges = [tuple(int(v) for v in r.split("-")) for r in sys.argv[1].split(",")]
sha = other = 0.0
dsos, top = {}, []
for line in sys.stdin:
    m = re.match(r"\s*([0-9.]+)%\s+(\S+)\s+\[.\]\s+(\S+)", line)
    if not m:
        continue
    pct, dso, sym = float(m.group(1)), m.group(2), m.group(3)
    if "libcrypto" in dso and sym.startswith("0x"):
        if any(lo <= int(sym, 16) <= hi for lo, hi in ranges):
            sha += pct
        else:
            other += pct
        continue
    dsos[dso] = dsos.get(dso, 0) + pct
    top.append((pct, dso, sym))
top += [(sha, "libcrypto", "SHA-256 block function (SHA-NI code)"),
        (other, "libcrypto", "the rest: RSA/bignum, EVP glue")]
for pct, dso, sym in sorted(top, reverse=True)[:14]:
    print(f"  {pct:6.2f}%  {dso:18s} {sym}")
' "$range"
done
