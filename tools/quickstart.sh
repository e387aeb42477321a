#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine, as root: install what dkimd needs, build it,
# start the daemon with its embedded default configuration (key lookups pointed at the
# bundled sample zone, so no internet access is needed), verify the sample messages
# through its Unix socket with dkimctl, show its counters, and stop it.
#
#   bash tools/quickstart.sh            # everything
#   DKD_SKIP_APT=1 bash tools/quickstart.sh   # packages already installed
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && [ "${DKD_SKIP_APT:-0}" != 1 ]; then
    echo "== installing packages (.ci/packages)"
    mapfile -t packages < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' .ci/packages)
    export DEBIAN_FRONTEND=noninteractive
    # Postfix without a system instance (the milter tests start their own): as .ci/run.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq "${packages[@]}" >/dev/null
fi

echo "== building (meson + ninja, build/)"
if [ -d build/meson-private ]; then
    meson setup --reconfigure build >/dev/null
else
    meson setup build >/dev/null
fi
ninja -C build >/dev/null

run_dir=$(mktemp -d /tmp/dkimd-quickstart.XXXXXX)
socket="$run_dir/dkimd.sock"
echo "== starting dkimd on $socket (embedded defaults, keys from samples/keys.zone)"
./build/tools/dkimd --socket "$socket" --zone samples/keys.zone --log "$run_dir/dkimd.log" &
daemon=$!
stop() {
    kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
    rm -rf "$run_dir"
}
trap stop EXIT
for _ in $(seq 100); do
    [ -S "$socket" ] && break
    sleep 0.05
done
[ -S "$socket" ] || { echo "dkimd did not start:"; cat "$run_dir/dkimd.log"; exit 1; }

echo "== dkimctl verify --socket $socket samples/*.eml"
./build/tools/dkimctl verify --socket "$socket" --authserv-id mx.example.net samples/*.eml
echo
echo "== the same through shared memory (what dkd_client_use_shm gives an MTA), verdict lines only"
./build/tools/dkimctl verify --socket "$socket" --shm --authserv-id mx.example.net samples/*.eml |
    grep -E '^[^ ]|^  \[' || true
echo
echo "== dkimctl stats --socket $socket"
./build/tools/dkimctl stats --socket "$socket"
echo
echo "== stopping dkimd (SIGTERM: answers what is in flight, then exits)"
