#!/bin/sh
# postfix-rate.sh - Postfix's delivery rate of 20 KB signed messages with no milter, with
# dkimd's milter (verify) and with OpenDKIM's (Mode v, the same key), and each milter's
# CPU seconds per message: the "Postfix" figures of PERFORMANCE.md in one command.
#
#   bench/postfix-rate.sh [BUILD_DIR]      (as root; Debian 12 with postfix and opendkim)
#
# A private Postfix instance (tests/milter/postfix.py) on loopback ports, N (2000)
# messages over 4 SMTP sessions, timed from the first send to the last Maildir delivery,
# RUNS (3) runs of each configuration alternated; prints each run, then the medians and
# the ratio to no milter. Every delivered message of a milter run must carry dkim=pass.
# Environment: N, CONNECTIONS, RUNS, SIZE (bytes), WORKERS (dkimd --workers; 0 = its
# default of one per CPU). Takes a few minutes at most (each run is cut at 120 s).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${1:-$root/build}
if [ ! -x "$build/tools/dkimd" ] || [ ! -x "$build/tools/dkimctl" ]; then
    echo "no dkimd/dkimctl in $build/tools: build first (meson setup $build && ninja -C $build)" >&2
    exit 2
fi
exec /usr/bin/python3 "$here/postfix_rate.py" --build "$build" --n "${N:-2000}" \
    --connections "${CONNECTIONS:-4}" --runs "${RUNS:-3}" --size "${SIZE:-20000}" \
    --workers "${WORKERS:-0}"
