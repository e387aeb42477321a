#!/usr/bin/env bash
# fuzz-campaign.sh - a long libFuzzer run of every *_fuzz target, one after another, with
# a one-line-per-target summary at the end. The same targets and seeds as .ci/run's fuzz
# pass (20 s each), for the runs that pass is too short for.
#
#   tests/fuzz-campaign.sh [-b BUILD_DIR] [-s SECONDS] [-j JOBS] [-t TIMEOUT] [-N] [TARGET...]
#
#   -b BUILD_DIR  clang libFuzzer build (default build-fuzz-campaign), set up here with
#                 CC=clang -Dfuzz=true -Db_sanitize=address,undefined, debugoptimized;
#                 only the *_fuzz programs are built
#   -s SECONDS    fuzzing time per target, libFuzzer's -max_total_time (default 600, or
#                 $DKD_FUZZ_SECONDS; not $SECONDS, which is bash's own clock)
#   -j JOBS       libFuzzer -jobs=JOBS -workers=JOBS: JOBS processes per target, sharing
#                 its working corpus, each for SECONDS (default 1: a single process)
#   -t TIMEOUT    libFuzzer -timeout, seconds per input (default 10, as .ci/run)
#   -N            do not run under `nice -n 19` (the default: the campaign takes the
#                 cores it is given, and builds or tests on the same machine keep theirs)
#   TARGET...     names such as `key wire` (default: every *_fuzz program built)
# $DKD_FUZZ_ARGS: more libFuzzer flags for every target, e.g. "-max_len=65536 -seed=1".
#
# Each target fuzzes a working copy of its seeds (tests/<area>/corpus/<name>/), made fresh
# in BUILD_DIR/campaign/<name>/corpus; libFuzzer writes its new inputs there, never into
# the checked-in seeds. What a target leaves in BUILD_DIR/campaign/<name>/:
#   corpus/      the seeds and every input libFuzzer kept (inspect, or -merge=1 it into a
#                scratch directory; the committed seeds grow only by crash reproducers)
#   artifacts/   crash-*, leak-*, timeout-*, oom-* (slow-unit-* are kept, not counted)
#   fuzz.log     libFuzzer's output (with -jobs: fuzz-K.log, one per job)
# A crash: minimise it with `BIN -minimize_crash=1 -runs=10000 artifacts/crash-...`,
# fix it, and add the minimised input to the target's seed directory under a name that
# says what it exercises, so the replay test (meson test --suite fuzz) keeps it.
#
# The summary (also BUILD_DIR/campaign/summary.txt) has one line per target: wall
# seconds, executions (stat::number_of_executed_units, summed over jobs), exec/s, the last
# status line's cov: and ft: (the highest over jobs), corpus files at the end (seeds +
# new), and findings (crash/leak, timeout, oom artifacts). Exit status: 0 when no target
# found anything, 1 when one did (or libFuzzer failed), 2 when the build failed.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build='build-fuzz-campaign'
seconds=${DKD_FUZZ_SECONDS:-600}
jobs=1
timeout_s=10
nice_cmd=(nice -n 19)

usage() {
    sed -n '6,19p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}
while getopts 'b:s:j:t:Nh' opt; do
    case $opt in
        b) build=$OPTARG ;;
        s) seconds=$OPTARG ;;
        j) jobs=$OPTARG ;;
        t) timeout_s=$OPTARG ;;
        N) nice_cmd=() ;;
        h) usage 0 ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
for n in "$seconds" "$jobs" "$timeout_s"; do
    case $n in '' | *[!0-9]* | 0) echo "fuzz-campaign.sh: not a positive number: $n" >&2; usage ;; esac
done

cd "$root" || exit 2
case $build in /*) ;; *) build=$root/$build ;; esac
out=$build/campaign

if ! command -v clang >/dev/null; then
    echo "fuzz-campaign.sh: clang not found (libFuzzer needs it)" >&2
    exit 2
fi

# ---- build: the *_fuzz programs only ----
mkdir -p "$out"
setup=(-Dfuzz=true '-Db_sanitize=address,undefined' -Db_lundef=false -Dbench=disabled
       --buildtype=debugoptimized)
if [ -d "$build/meson-private" ]; then
    setup=(--reconfigure "${setup[@]}")
fi
echo "=== setup and build in $build"
if ! CC=clang CXX=clang++ "${nice_cmd[@]}" meson setup "$build" "${setup[@]}" \
        >"$out/setup.log" 2>&1; then
    tail -n 40 "$out/setup.log"
    echo "fuzz-campaign.sh: meson setup failed (see $out/setup.log)" >&2
    exit 2
fi
# Their paths relative to the build dir, e.g. tests/core/key_fuzz and tests/ipc/wire_fuzz.
mapfile -t programs < <(meson introspect --targets "$build" | python3 -c '
import json, os, sys
build = sys.argv[1]
for t in json.load(sys.stdin):
    if t["type"] == "executable" and t["name"].endswith("_fuzz"):
        print(os.path.relpath(t["filename"][0], build))
' "$build" | awk -F/ '{ print $NF "\t" $0 }' | sort | cut -f2)
if [ ${#programs[@]} -eq 0 ]; then
    echo "fuzz-campaign.sh: no *_fuzz target in $build (is -Dtests disabled?)" >&2
    exit 2
fi
if ! "${nice_cmd[@]}" ninja -C "$build" "${programs[@]}" >"$out/build.log" 2>&1; then
    grep -E -A5 'error|warning' "$out/build.log" | head -n 80
    echo "fuzz-campaign.sh: build failed (see $out/build.log)" >&2
    exit 2
fi

# The tree that was built, for the summary: its commit and the tracked files changed in it.
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null)
dirty=$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | awk '{ print $NF }' |
    paste -sd ' ' -)

# ---- select ----
declare -A bin_of=()
all=()
for p in "${programs[@]}"; do
    name=$(basename "$p" _fuzz)
    bin_of[$name]=$build/$p
    all+=("$name")
done
if [ $# -gt 0 ]; then
    selected=("$@")
    for name in "${selected[@]}"; do
        if [ -z "${bin_of[$name]:-}" ]; then
            echo "fuzz-campaign.sh: no target $name (built: ${all[*]})" >&2
            exit 2
        fi
    done
else
    selected=("${all[@]}")
fi

# ---- fuzz ----
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1:print_summary=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1:print_summary=1}
summary=()
status=0
fmt='%-8s %6s %12s %8s %6s %7s %7s %5s %7s %8s %4s\n'
# shellcheck disable=SC2059
header=$(printf "$fmt" target seconds execs exec/s cov ft corpus new crashes timeouts ooms)
total_min=$(( (seconds * ${#selected[@]} + 59) / 60 ))
echo "=== ${#selected[@]} targets x ${seconds}s, -jobs=$jobs, ${nice_cmd[*]:-not niced}:" \
     "about $total_min min; output in $out"
for name in "${selected[@]}"; do
    bin=${bin_of[$name]}
    dir=$out/$name
    rm -rf "$dir"
    mkdir -p "$dir/corpus" "$dir/artifacts"
    seeds=$(find tests -type d -path "*/corpus/$name" | head -n 1)
    if [ -n "$seeds" ]; then
        cp -r "$seeds/." "$dir/corpus/"
    else
        echo "warning: no seed directory tests/*/corpus/$name; starting from nothing"
    fi
    nseeds=$(find "$dir/corpus" -type f | wc -l)
    args=(-max_total_time="$seconds" -timeout="$timeout_s" -rss_limit_mb=2048
          -print_final_stats=1 -artifact_prefix="$dir/artifacts/")
    if [ "$jobs" -gt 1 ]; then
        args+=(-jobs="$jobs" -workers="$jobs")
    fi
    # shellcheck disable=SC2206  # word splitting is the point
    args+=(${DKD_FUZZ_ARGS:-})
    echo "--- $name: ${seconds}s from $nseeds seeds ($seeds), $(date +%H:%M:%S)"
    start=$(date +%s)
    # The outer timeout only catches a libFuzzer that stops stopping; -timeout handles
    # slow inputs itself. With -jobs, the jobs' logs land in the current directory.
    (cd "$dir" && "${nice_cmd[@]}" timeout -k 30 $((seconds * 2 + 120)) \
        "$bin" "${args[@]}" "$dir/corpus" >"$dir/fuzz.log" 2>&1)
    rc=$?
    elapsed=$(( $(date +%s) - start ))

    logs=("$dir/fuzz.log")
    if [ "$jobs" -gt 1 ]; then
        logs=("$dir"/fuzz-*.log)
    fi
    # execs: summed stat:: lines; cov/ft: the last status line of each log, max over logs.
    read -r execs cov ft < <(awk '
        /^stat::number_of_executed_units:/ { execs += $2 }
        /^#[0-9]+/ && / cov: / {
            for (i = 1; i < NF; i++) {
                if ($i == "cov:") c[FILENAME] = $(i + 1)
                if ($i == "ft:") f[FILENAME] = $(i + 1)
            }
        }
        END {
            for (k in c) if (c[k] + 0 > cov) cov = c[k] + 0
            for (k in f) if (f[k] + 0 > ft) ft = f[k] + 0
            print execs + 0, cov + 0, ft + 0
        }' "${logs[@]}" 2>/dev/null)
    rate=$(( execs / (elapsed > 0 ? elapsed : 1) ))
    files=$(find "$dir/corpus" -type f | wc -l)
    crashes=$(find "$dir/artifacts" -type f \( -name 'crash-*' -o -name 'leak-*' \
        -o -name 'deadly*' \) | wc -l)
    timeouts=$(find "$dir/artifacts" -type f -name 'timeout-*' | wc -l)
    ooms=$(find "$dir/artifacts" -type f -name 'oom-*' | wc -l)
    # shellcheck disable=SC2059
    line=$(printf "$fmt" "$name" "$elapsed" "$execs" "$rate" "$cov" "$ft" "$files" \
        $((files - nseeds)) "$crashes" "$timeouts" "$ooms")
    echo "$line"
    summary+=("$line")
    if [ $((crashes + timeouts + ooms)) -gt 0 ]; then
        status=1
        echo "$name: FOUND $crashes crash(es), $timeouts timeout(s), $ooms oom(s):"
        ls "$dir/artifacts"
        grep -h -m1 -A25 -E '^==[0-9]+==ERROR|runtime error:|^==[0-9]+== ERROR' \
            "${logs[@]}" | head -n 40
    elif [ "$rc" -ne 0 ]; then
        status=1
        echo "$name: libFuzzer exited $rc with no artifact; the end of its log:"
        tail -n 30 "${logs[@]}"
    fi
done

{
    echo "# tests/fuzz-campaign.sh -s $seconds -j $jobs -t $timeout_s," \
         "${nice_cmd[*]:-not niced}; built at ${commit:-?}," \
         "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(clang --version | head -n 1)"
    if [ -n "$dirty" ]; then
        echo "# built with uncommitted changes to: $dirty"
    fi
    echo "$header"
    printf '%s\n' "${summary[@]}"
} >"$out/summary.txt"
echo
echo "=== summary ($out/summary.txt)"
tail -n +2 "$out/summary.txt"
exit "$status"
