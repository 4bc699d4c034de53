#!/usr/bin/env bash
# The main job, no VM needed: vhud serves a virtio-rng device on a UNIX socket and vhuctl, a
# vhost-user frontend built on the library, negotiates with it, shares memory, and reads entropy
# through split and packed rings. Then two vhuctl "guests" talk through `vhud switch`.
set -euo pipefail
BUILD=${1:-build}
VHUD=$BUILD/src/daemon/vhud
VHUCTL=$BUILD/src/cli/vhuctl
[ -x "$VHUD" ] && [ -x "$VHUCTL" ] || { echo "demo: build first (make build)" >&2; exit 1; }

work=$(mktemp -d /tmp/vhu-demo.XXXXXX)
sock=$work/rng.sock
cleanup() {
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    [ -n "${spid:-}" ] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "vhud rng --print-capabilities (vhost-user.json)"
"$VHUD" rng --print-capabilities

step "start: vhud rng --socket-path $sock"
"$VHUD" rng --socket-path "$sock" 2> "$work/vhud.log" &
pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || { cat "$work/vhud.log"; echo "demo: vhud did not start" >&2; exit 1; }

step "vhuctl info: what the backend offers and what was negotiated"
"$VHUCTL" info --socket-path "$sock"

step "vhuctl rng read: 64 bytes over a split ring"
"$VHUCTL" rng read --socket-path "$sock" --bytes 64 --hex

step "vhuctl rng read: 64 bytes over a packed ring"
"$VHUCTL" rng read --socket-path "$sock" --bytes 64 --packed --hex

step "vhuctl rng read: 16 MiB in 64 KiB requests (split, then packed)"
"$VHUCTL" rng read --socket-path "$sock" --bytes $((16 << 20)) --chunk 65536
"$VHUCTL" rng read --socket-path "$sock" --bytes $((16 << 20)) --chunk 65536 --packed

step "stop: SIGTERM"
kill -TERM "$pid"
wait "$pid"; rc=$?
pid=
echo "vhud exited with status $rc; socket file $( [ -e "$sock" ] && echo 'left behind (bug)' || echo 'removed')"

step "what vhud logged"
cat "$work/vhud.log"

step "vhud switch: two virtio-net ports joined by an L2 switch (VM to VM, one copy per frame)"
"$VHUD" switch --port "$work/a.sock" --port "$work/b.sock" 2> "$work/switch.log" &
spid=$!
for _ in $(seq 100); do [ -S "$work/a.sock" ] && [ -S "$work/b.sock" ] && break; sleep 0.05; done
[ -S "$work/b.sock" ] || { cat "$work/switch.log"; echo "demo: vhud switch did not start" >&2; exit 1; }
echo "port B receives (split ring) 200 frames that port A sends (packed ring):"
"$VHUCTL" net recv --socket-path "$work/b.sock" --count 200 --timeout-ms 3000 &
rpid=$!
sleep 0.3
"$VHUCTL" net send --socket-path "$work/a.sock" --count 200 --packed
wait "$rpid"
echo
echo "then 1 s as fast as A can send (a full receiver loses frames, counted, as on any switch):"
"$VHUCTL" net bench --socket-path "$work/b.sock" --mode rx --seconds 2 | grep -v '^RESULT' &
rpid=$!
sleep 0.3
"$VHUCTL" net bench --socket-path "$work/a.sock" --mode tx --seconds 1 --packed | grep -v '^RESULT'
wait "$rpid"
kill -TERM "$spid"
wait "$spid" || true
spid=
echo "vhud switch counters:"
grep -E "net |switch:" "$work/switch.log" | sed 's/^vhu: info: /  /'
