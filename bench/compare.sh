#!/bin/sh
# compare.sh - dkimd next to the hardware limit and OpenDKIM, in one run on one machine.
#
#   bench/compare.sh [BUILD_DIR] [CORPUS_DIR]
#
# BUILD_DIR (default build-bench) must be a --buildtype=release build with corpus-bench
# and dkimctl; CORPUS_DIR (default BUILD_DIR/tmp/corpus) is made with bench/gen-corpus
# (the project's signer) when missing. Everything timed runs pinned to one core (CPU,
# default 1) with taskset. Steps:
#   1. openssl speed: RSA-1024/2048/4096 and Ed25519 verify/s, SHA-256 bytes/s at 16 KB;
#   2. per bucket, the limit (bench/limit.py: one verify per signature + SHA-256 of the
#      canonical body + SHA-256 of the header hash input);
#   3. corpus-bench (dkimd's engine in-process, warm keys) per bucket;
#   4. opendkim-bench (Debian's libopendkim, keys from memory) per bucket, built here;
#   5. the ratios dkimd/limit and dkimd/OpenDKIM.
# Each throughput is the median of REPEAT (3) runs, each run itself the median pass of
# >= 5 passes and >= MIN_TIME (2.5) seconds, in wall time and in process CPU time. Verdicts of both verifiers are compared
# message by message first; a disagreement is reported.
# DKIMD_FLAGS: more corpus-bench flags for dkimd's runs, such as "--canon-impl scalar" or
# "--sha256 openssl" to measure one implementation against the default.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${1:-$root/build-bench}
corpus=${2:-$build/tmp/corpus}
cpu=${CPU:-1}
repeat=${REPEAT:-3}
min_time=${MIN_TIME:-2.5}
dkimd_flags=${DKIMD_FLAGS:-}
tmp=$build/tmp
mkdir -p "$tmp"

pin() { taskset -c "$cpu" "$@"; }

if [ ! -x "$build/bench/corpus-bench" ]; then
    echo "compare.sh: $build/bench/corpus-bench not built" >&2
    exit 2
fi
if [ ! -d "$corpus/rsa2048" ]; then
    /usr/bin/python3 "$here/gen-corpus" "$corpus" --signer "$build/tools/dkimctl"
fi

echo "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), \
$(nproc) CPUs, pinned to CPU $cpu; $(openssl version)"
echo "# corpus: $corpus, signed by $(cat "$corpus/SIGNER" 2>/dev/null || echo unknown)"

# ---- 1. hardware rates ----
speed=$(pin openssl speed -mr -seconds 3 rsa1024 rsa2048 rsa4096 ed25519 2>/dev/null)
sha=$(pin openssl speed -mr -seconds 3 -bytes 16384 -evp sha256 2>/dev/null)
rsa_verify() { echo "$speed" | awk -F: -v b="$1" '$1 == "+F2" && $3 == b { print $5 }'; }
rsa1024=$(rsa_verify 1024)
rsa2048=$(rsa_verify 2048)
rsa4096=$(rsa_verify 4096)
ed25519=$(echo "$speed" | awk -F: '$1 == "+F6" && $4 == "Ed25519" { print $6 }')
sha256=$(echo "$sha" | awk -F: '$1 == "+F" && $3 == "sha256" { print $4 }')
echo "# openssl speed -mr -seconds 3 rsa1024 rsa2048 rsa4096 ed25519; \
openssl speed -mr -seconds 3 -bytes 16384 -evp sha256"
printf '#HW rsa1024_verify_s=%s rsa2048_verify_s=%s rsa4096_verify_s=%s ' \
    "$rsa1024" "$rsa2048" "$rsa4096"
printf 'ed25519_verify_s=%s sha256_16k_bytes_s=%s\n' "$ed25519" "$sha256"

# ---- 4 (build). OpenDKIM harness ----
odk=$tmp/opendkim-bench
if ! cc -O2 -std=gnu17 "$here/opendkim-bench.c" "$here/corpus.c" $(pkg-config --cflags --libs opendkim) \
        -o "$odk" 2>"$tmp/opendkim-bench.log"; then
    echo "compare.sh: cannot build opendkim-bench (apt-get install libopendkim-dev)" >&2
    odk=
fi

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# median_rates runs a command $repeat times and prints the medians of its msgs_per_s
# (wall clock) and msgs_per_cpu_s (process CPU time) fields, space-separated.
median_rates() {
    i=0
    while [ "$i" -lt "$repeat" ]; do
        pin "$@" --quiet --min-time "$min_time" | awk '/^#TIMING/ { w = c = 0
            for (i = 1; i <= NF; i++) {
                if ($i ~ /^msgs_per_s=/) w = substr($i, 12)
                if ($i ~ /^msgs_per_cpu_s=/) c = substr($i, 16)
            }
            print w, c }'
        i=$((i + 1))
    done >"$tmp/rates"
    echo "$(cut -d' ' -f1 "$tmp/rates" | median) $(cut -d' ' -f2 "$tmp/rates" | median)"
}

# Rates are messages per second of wall time and, in brackets, per CPU second of the
# process; the ratios use the CPU-time rates, which other load on the machine disturbs
# least (both verifiers are single-threaded here, so on an idle core they agree).
echo "# limit: bench/limit.py; dkimd: corpus-bench --quiet${dkimd_flags:+ $dkimd_flags};" \
    "opendkim: opendkim-bench --quiet"
printf '%-8s %-5s %9s %17s %17s %7s %7s %s\n' set bucket limit/s 'dkimd/s [cpu]' \
    'opendkim/s [cpu]' d/limit d/odkim verdicts
for set in rsa2048 mixed; do
    for bucket in 2k 20k 200k; do
        dir=$corpus/$set/$bucket
        [ -d "$dir" ] || continue
        limit=$(/usr/bin/python3 "$here/limit.py" "$dir" --rsa1024 "$rsa1024" \
            --rsa2048 "$rsa2048" --rsa4096 "$rsa4096" --ed25519 "$ed25519" \
            --sha256 "$sha256" | sed -n 's/.*msgs_per_s=\([0-9.]*\).*/\1/p')
        # shellcheck disable=SC2086 # $dkimd_flags is a list of flags
        "$build/bench/corpus-bench" "$dir" $dkimd_flags --min-time 0 --min-passes 1 | \
            grep -v '^#' >"$tmp/verdicts.dkimd"
        agree="dkimd: $(awk '{ print $2 }' "$tmp/verdicts.dkimd" | sort | uniq -c | \
            awk '{ printf "%s%s=%s", (NR > 1 ? "," : ""), $2, $1 }')"
        # shellcheck disable=SC2086
        set -- $(median_rates "$build/bench/corpus-bench" "$dir" $dkimd_flags)
        dkimd_w=$1
        dkimd=$2
        odkim=-
        ratio_o=-
        if [ -n "$odk" ]; then
            "$odk" "$dir" --min-time 0 --min-passes 1 2>/dev/null | grep -v '^#' \
                >"$tmp/verdicts.opendkim"
            diffs=$(paste -d' ' "$tmp/verdicts.dkimd" "$tmp/verdicts.opendkim" | \
                awk '$2 != $5 { n++ } END { print n + 0 }')
            agree="$agree; opendkim disagrees on $diffs"
            set -- $(median_rates "$odk" "$dir")
            odkim="$(printf '%.0f [%.0f]' "$1" "$2")"
            ratio_o=$(awk -v a="$dkimd" -v b="$2" 'BEGIN { printf "%.2f", a / b }')
        fi
        ratio_l=$(awk -v a="$dkimd" -v b="$limit" 'BEGIN { printf "%.2f", a / b }')
        printf '%-8s %-5s %9.0f %17s %17s %7s %7s %s\n' "$set" "$bucket" "$limit" \
            "$(printf '%.0f [%.0f]' "$dkimd_w" "$dkimd")" "$odkim" "$ratio_l" "$ratio_o" \
            "$agree"
    done
done
