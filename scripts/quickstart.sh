#!/usr/bin/env bash
# The quick start: set everything up, then run vimaged on a simulated FreeBSD host with the
# example configuration, start the vimages, list them, stop them, and shut everything down.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

work=$(mktemp -d /tmp/vimaged-demo.XXXXXX)
sim_pid="" daemon_pid=""
cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

wait_for_socket() {
    for _ in $(seq 100); do
        [ -S "$1" ] && return 0
        sleep 0.1
    done
    echo "quickstart: $1 did not appear" >&2
    return 1
}

step() { printf '\n$ %s\n' "$*"; "$@"; }

echo "== a simulated FreeBSD host with NICs em0 and em1"
.venv/bin/python -m vimaged.simhost --socket "$work/sim.sock" --sim-nics "em0 em1" &
sim_pid=$!
wait_for_socket "$work/sim.sock"

echo "== vimaged on it, configured by etc/examples/vimaged.conf (log: $work/vimaged.log)"
.venv/bin/vimaged --platform sim --sim-host "$work/sim.sock" \
    --config etc/examples/vimaged.conf \
    --socket "$work/vimaged.sock" --state-dir "$work/state" \
    --log-format console 2>"$work/vimaged.log" &
daemon_pid=$!
wait_for_socket "$work/vimaged.sock"
export VIMAGED_SOCKET="$work/vimaged.sock"

step .venv/bin/vimagectl version
step .venv/bin/vimagectl start --all
step .venv/bin/vimagectl list
step .venv/bin/vimagectl status --json web
step .venv/bin/vimagectl health
step .venv/bin/vimagectl stop --all
step .venv/bin/vimagectl list

echo
echo "== the daemon's log"
cat "$work/vimaged.log"
echo
echo "quickstart: OK"
