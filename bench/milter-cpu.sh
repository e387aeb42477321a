#!/bin/sh
# milter-cpu.sh - dkimd's CPU per message through the milter against the native socket,
# at 2, 20 and 200 KB: the "milter" figures of PERFORMANCE.md in one command.
#
#   bench/milter-cpu.sh [BUILD_DIR] [CORPUS_DIR]
#
# As daemon-cpu.sh: a release build, the rsa2048 corpus, one dkimd worker pinned to
# CPU 1 with keys from the corpus zone, the driver pinned to CPU 0, RUNS (3) runs
# alternating native (loadgen, 16 connections, one request in flight each, as a milter
# allows) and milter (milterload, 16 connections). Prints
#   BUCKET PATH RUN daemon_cpu_us_per_msg msgs_per_s
# and the medians with the milter/native ratio.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${1:-$root/build-bench}
corpus=${2:-$build/tmp/corpus}
runs=${RUNS:-3}
duration=${DURATION:-3}
tmp=$(mktemp -d)
trap 'kill $dpid 2>/dev/null || true; rm -rf "$tmp"' EXIT
dpid=

if [ ! -d "$corpus/rsa2048" ]; then
    /usr/bin/python3 "$here/gen-corpus" "$corpus" --signer "$build/tools/dkimctl" >/dev/null
fi

one_run() { # BUCKET PATH RUN
    sock=$tmp/d.sock
    msock=$tmp/m.sock
    taskset -c 1 "$build/tools/dkimd" --socket "$sock" --milter "unix:$msock" \
        --zone "$corpus/keys.zone" --workers 1 >"$tmp/dkimd.log" 2>&1 &
    dpid=$!
    i=0
    while { [ ! -S "$sock" ] || [ ! -S "$msock" ]; } && [ $i -lt 100 ]; do
        sleep 0.05; i=$((i + 1))
    done
    if [ "$2" = milter ]; then
        taskset -c 0 "$build/bench/milterload" --milter "$msock" --stats-socket "$sock" \
            --connections 16 --duration "$duration" "$corpus/rsa2048/$1" >"$tmp/out.json"
    else
        taskset -c 0 "$build/bench/loadgen" --socket "$sock" --connections 16 --depth 1 \
            --duration "$duration" "$corpus/rsa2048/$1" >"$tmp/out.json"
    fi
    kill "$dpid"; wait "$dpid" 2>/dev/null || true
    dpid=
    /usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(sys.argv[2], sys.argv[3], sys.argv[4], "%.2f" % d["daemon_cpu_us_per_msg"], "%.0f" % d["msgs_per_s"])
' "$tmp/out.json" "$1" "$2" "$3" | tee -a "$tmp/all"
}

for bucket in 2k 20k 200k; do
    r=1
    while [ $r -le "$runs" ]; do
        one_run "$bucket" native $r
        one_run "$bucket" milter $r
        r=$((r + 1))
    done
done
echo "medians (us of daemon CPU per message), milter/native:"
/usr/bin/python3 -c '
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
for b in ("2k", "20k", "200k"):
    m = {t: statistics.median([float(r[3]) for r in rows if r[0] == b and r[1] == t])
         for t in ("native", "milter")}
    print("  %-5s native %.2f  milter %.2f  ratio %.2f" % (b, m["native"], m["milter"],
                                                            m["milter"] / m["native"]))
' "$tmp/all"
