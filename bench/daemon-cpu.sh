#!/bin/sh
# daemon-cpu.sh - the daemon's CPU per message, over the socket and with shared memory,
# per bucket: the "daemon CPU per message" figures of PERFORMANCE.md in one command.
#
#   bench/daemon-cpu.sh [BUILD_DIR] [CORPUS_DIR]
#
# BUILD_DIR (default build-bench, a --buildtype=release build); CORPUS_DIR (default
# BUILD_DIR/tmp/corpus, made by bench/gen-corpus when missing). For each bucket of the
# rsa2048 set, RUNS (3) runs alternating socket and shared memory: one dkimd with one
# worker pinned to CPU 1, keys from the corpus zone (DNS stays out of the figure), and
# loadgen pinned to CPU 0 (4 connections, depth 16, 3 s). Prints one line per run:
#   BUCKET TRANSPORT RUN daemon_cpu_us_per_msg msgs_per_s
# and the medians at the end. loadgen reads the daemon's CPU time from its STATS answer.
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

one_run() { # BUCKET TRANSPORT RUN
    sock=$tmp/d.sock
    taskset -c 1 "$build/tools/dkimd" --socket "$sock" --zone "$corpus/keys.zone" \
        --workers 1 >"$tmp/dkimd.log" 2>&1 &
    dpid=$!
    i=0
    while [ ! -S "$sock" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    shm=
    [ "$2" = shm ] && shm="--shm 16777216"
    # shellcheck disable=SC2086
    taskset -c 0 "$build/bench/loadgen" --socket "$sock" --connections 4 --depth 16 \
        --duration "$duration" $shm "$corpus/rsa2048/$1" >"$tmp/out.json"
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
        one_run "$bucket" socket $r
        one_run "$bucket" shm $r
        r=$((r + 1))
    done
done
echo "medians (us of daemon CPU per message):"
/usr/bin/python3 -c '
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
for b in ("2k", "20k", "200k"):
    for t in ("socket", "shm"):
        v = [float(r[3]) for r in rows if r[0] == b and r[1] == t]
        if v:
            print("  %-5s %-6s %.2f" % (b, t, statistics.median(v)))
' "$tmp/all"
