#!/usr/bin/env bash
# The main job, no VM needed: vhud serves a virtio-rng device on a UNIX socket and vhuctl, a
# vhost-user frontend built on the library, negotiates with it, shares memory, and reads entropy
# through split and packed rings. Then two vhuctl "guests" talk through `vhud switch`.
# Every step's result goes into the last line, the verdict: "demo: PASS — ..." (exit 0) or
# "demo: FAIL — <the steps that failed>" (exit 1). Bold headings only on a terminal.
# shellcheck disable=SC2317 # the functions run through check and the EXIT trap
set -uo pipefail
BUILD=${1:-build}
VHUD=$BUILD/src/daemon/vhud
VHUCTL=$BUILD/src/cli/vhuctl
if [ ! -x "$VHUD" ] || [ ! -x "$VHUCTL" ]; then echo "demo: FAIL — build first (make build)"; exit 1; fi

work=$(mktemp -d "${TMPDIR:-/tmp}/vhu-demo.XXXXXX") || { echo "demo: FAIL — mktemp"; exit 1; }
sock=$work/rng.sock
pid='' spid='' rpid=''
cleanup() {
    local p
    for p in $rpid $pid $spid; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }

failed=()
# check WHAT CMD...: run CMD; a non-zero exit puts WHAT on the list of failures
check() {
    local what=$1 rc=0
    shift
    "$@" || rc=$?
    ((rc == 0)) || { echo "demo: step '$what' failed (exit $rc)" >&2; failed+=("$what"); }
    return "$rc"
}
verdict() {
    if ((${#failed[@]} == 0)) && [ -n "${1:-}" ]; then
        echo "demo: PASS — $1"
        exit 0
    fi
    local what
    what=$(printf '%s, ' "${failed[@]}")
    echo "demo: FAIL — ${what%, }"
    exit 1
}
# wait_sockets LOG PID SOCK...: until every SOCK listens (5 s); else print LOG and fail
wait_sockets() {
    local log=$1 p=$2 s ok
    shift 2
    for _ in $(seq 100); do
        ok=1
        for s in "$@"; do [ -S "$s" ] || ok=0; done
        ((ok)) && return 0
        kill -0 "$p" 2>/dev/null || break
        sleep 0.05
    done
    cat "$log" >&2
    return 1
}
# stop PID NAME: SIGTERM, it must exit 0
stop() {
    local rc=0
    kill -TERM "$1" && wait "$1" || rc=$?
    echo "$2 exited with status $rc"
    return "$rc"
}

step "vhud rng --print-capabilities (vhost-user.json)"
check print-capabilities "$VHUD" rng --print-capabilities

step "start: vhud rng --socket-path $sock"
"$VHUD" rng --socket-path "$sock" 2> "$work/vhud.log" &
pid=$!
check "vhud rng start" wait_sockets "$work/vhud.log" "$pid" "$sock" || verdict

step "vhuctl info: what the backend offers and what was negotiated"
check info "$VHUCTL" info --socket-path "$sock"

step "vhuctl rng read: 64 bytes over a split ring"
check "rng read split" "$VHUCTL" rng read --socket-path "$sock" --bytes 64 --hex

step "vhuctl rng read: 64 bytes over a packed ring"
check "rng read packed" "$VHUCTL" rng read --socket-path "$sock" --bytes 64 --packed --hex

step "vhuctl rng read: 16 MiB in 64 KiB requests (split, then packed)"
check "rng 16 MiB split" "$VHUCTL" rng read --socket-path "$sock" --bytes $((16 << 20)) --chunk 65536
check "rng 16 MiB packed" "$VHUCTL" rng read --socket-path "$sock" --bytes $((16 << 20)) \
    --chunk 65536 --packed

step "stop: SIGTERM"
check "vhud rng SIGTERM" stop "$pid" "vhud rng"
pid=
if [ -e "$sock" ]; then
    echo "socket file left behind"
    failed+=("vhud rng socket left behind")
else
    echo "socket file removed"
fi

step "what vhud logged"
cat "$work/vhud.log"

step "vhud switch: two virtio-net ports joined by an L2 switch (VM to VM, one copy per frame)"
"$VHUD" switch --port "$work/a.sock" --port "$work/b.sock" 2> "$work/switch.log" &
spid=$!
check "vhud switch start" wait_sockets "$work/switch.log" "$spid" "$work/a.sock" "$work/b.sock" ||
    verdict
echo "port B receives (split ring) 200 frames that port A sends (packed ring):"
"$VHUCTL" net recv --socket-path "$work/b.sock" --count 200 --timeout-ms 3000 &
rpid=$!
sleep 0.3
check "net send 200" "$VHUCTL" net send --socket-path "$work/a.sock" --count 200 --packed
check "net recv 200" wait "$rpid"
rpid=
echo
echo "then 1 s as fast as A can send (a full receiver loses frames, counted, as on any switch;"
echo "each rate is over the time frames moved, not over the receiver's wait for the first one):"
# B listens 3 s: past the end of A's second even on a loaded machine (its idle time is not counted)
"$VHUCTL" net bench --socket-path "$work/b.sock" --mode rx --seconds 3 > "$work/rx.out" &
rpid=$!
sleep 0.3
check "net bench tx" "$VHUCTL" net bench --socket-path "$work/a.sock" --mode tx --seconds 1 \
    --packed > "$work/tx.out"
check "net bench rx" wait "$rpid"
rpid=
grep -hv '^RESULT' "$work/tx.out" "$work/rx.out"
# RESULT ... pkts=N secs=S ...: the frames and the active interval of each side
field() { sed -n "s/^RESULT .* $2=\([0-9.]*\).*/\1/p" "$1"; }
txn=$(field "$work/tx.out" pkts) rxn=$(field "$work/rx.out" pkts)
echo "A sent $txn frames in $(field "$work/tx.out" secs) s; B received $rxn in $(field "$work/rx.out" secs) s"
check "vhud switch SIGTERM" stop "$spid" "vhud switch"
spid=
echo "vhud switch counters:"
grep -E "net |switch:" "$work/switch.log" | sed 's/^vhu: info: /  /'
# the switch's own counts: what it took from A's transmit queue is what A's two runs sent, what
# it copied to B is what B's two runs received
a_tx=$(sed -n 's/.*net .*a\.sock: .*; tx packets=\([0-9]*\).*/\1/p' "$work/switch.log")
copies=$(sed -n 's/.*switch: .*copies=\([0-9]*\).*/\1/p' "$work/switch.log")
if [ -n "$txn" ] && [ -n "$rxn" ] && [ "$a_tx" = $((200 + txn)) ] && [ "$copies" = $((200 + rxn)) ]
then
    echo "counters agree: the switch took 200 + $txn frames from A and copied 200 + $rxn to B"
else
    echo "counters disagree: the switch took '$a_tx' frames from A, A sent 200 + '$txn';" \
        "it copied '$copies' to B, B received 200 + '$rxn'"
    failed+=("switch counters")
fi

verdict "rng split+packed, switch 200 of 200 frames, then $rxn of $txn in 1 s ($(field "$work/rx.out" mpps) Mpps received)"
