#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# vhuctl net against vhud net over a real socket, split and packed rings:
#   vhud --sink     <- vhuctl net send --count 10000
#   vhud --source 64 -> vhuctl net recv --count 10000 (also with 40-byte mergeable buffers, so a
#                       frame takes two, and without MRG_RXBUF)
#   vhud --reflect  <-> vhuctl net bench --mode rxtx --seconds 1 (every frame checked), plus
#                       1514-byte frames in 256-byte mergeable buffers, and poll mode
#   vhud --reflect --queue-pairs 2 <-> vhuctl --queue-pairs 2 (one thread a pair)
# and that vhuctl fails where it must: a receive timeout, reflected frames checked against the
# wrong address rule, and each lie of LYING_NET (a backend that writes short used lengths, an
# impossible num_buffers, oversized frames, offload headers nobody negotiated, never completes
# transmits (while receiving nothing, or a flood), or lacks VERSION_1): exit 1 with a message naming the fault, never a crash.
# vhud must exit 0 on SIGTERM after each backend run.
#
#   vhuctl-net.sh VHUD VHUCTL LYING_NET
set -euo pipefail
(($# == 3)) || { echo "usage: $0 VHUD VHUCTL LYING_NET" >&2; exit 2; }
VHUD=$1 VHUCTL=$2 LYING=$3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
sock=$dir/net.sock

indent() { local l; while IFS= read -r l; do printf '  [%s] %s\n' "$1" "$l"; done; }

# ok DESCRIPTION CMD...: CMD must exit 0; its output is shown
ok() {
  local what=$1 out rc=0; shift
  out=$("$@" 2>&1) || rc=$?
  indent "$what" <<<"$out"
  ((rc == 0)) || fail "$what: exit $rc"
}

# refused DESCRIPTION PATTERN CMD...: CMD must exit 1 and print PATTERN
refused() {
  local what=$1 pat=$2 out rc=0; shift 2
  out=$("$@" 2>&1) || rc=$?
  indent "$what" <<<"$out"
  ((rc == 1)) || fail "$what: exit $rc, expected 1"
  grep -q -- "$pat" <<<"$out" || fail "$what: no '$pat' in the output"
}

net() { "$VHUCTL" net "$@" --socket-path "$sock"; }

start_vhud net --sink
for ring in split packed; do
  p=(); [[ $ring == packed ]] && p=(--packed)
  ok "send $ring" net send --count 10000 "${p[@]}"
  ok "send 1514 $ring" net send --count 10000 --size 1514 "${p[@]}"
done
refused "recv from a sink" "timeout: 0 of 10 frames" net recv --count 10 --timeout-ms 300
stop_vhud

start_vhud net --source 64
for ring in split packed; do
  p=(); [[ $ring == packed ]] && p=(--packed)
  ok "recv $ring" net recv --count 10000 "${p[@]}"
  ok "recv mrg 40B $ring" net recv --count 10000 --rx-buf 40 "${p[@]}"
  ok "recv no-mrg $ring" net recv --count 10000 --no-mrg-rxbuf "${p[@]}"
done
stop_vhud

start_vhud net --reflect
for ring in split packed; do
  p=(); [[ $ring == packed ]] && p=(--packed)
  ok "rxtx $ring" net bench --mode rxtx --seconds 1 "${p[@]}"
  ok "rxtx 1514 mrg $ring" net bench --mode rxtx --seconds 0.3 --size 1514 --rx-buf 256 "${p[@]}"
  ok "rxtx poll $ring" net bench --mode rxtx --seconds 0.3 --poll "${p[@]}"
done
refused "rxtx, wrong address rule" "not a frame sent" net bench --mode rxtx --seconds 0.2 --macs unchanged
stop_vhud

start_vhud net --reflect --queue-pairs 2
ok "rxtx 2 pairs" net bench --mode rxtx --seconds 0.5 --queue-pairs 2
ok "send 2 pairs packed" net send --count 10001 --queue-pairs 2 --packed
refused "3 pairs of 2" "cannot start queue pairs 0..2" net send --count 10 --queue-pairs 3
stop_vhud

# lie MODE PATTERN VHUCTL-NET-ARGS...: lying_net in MODE; vhuctl must exit 1 saying PATTERN
lie() {
  local mode=$1 pat=$2; shift 2
  rm -f "$sock"
  "$LYING" "$sock" "$mode" </dev/null >"$dir/lying.log" 2>&1 &
  pid=$!
  for ((i = 0; i < 100; i++)); do [[ -S $sock ]] && break; sleep 0.05; done
  refused "lying backend: $mode" "$pat" net "$@" --timeout-ms 500
  wait "$pid" || fail "lying_net $mode exited with $?: $(cat "$dir/lying.log")"
  pid=
}
lie short "shorter than the 12-byte virtio-net header" recv --count 10
lie nbufs "num_buffers 60000" recv --count 10
lie long "2000 bytes (valid: 14..1514)" recv --count 10
lie gso "gso_type 1" recv --count 10 --packed
lie stall "consumed 0 of 10 frames" send --count 10
lie flood "consumed 0 of 10 frames" send --count 10
lie nov1 "does not offer VIRTIO_F_VERSION_1" send --count 10
echo "PASS"
