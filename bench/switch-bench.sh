#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# VM-to-VM forwarding: `vhud switch` (one copy, guest memory to guest memory) against DPDK
# testpmd forwarding between two net_vhost ports (io mode: vhost dequeue into an mbuf, then
# enqueue into the other guest: two copies), runs alternated.
#
#   bench/switch-bench.sh [VHUD] [VHUCTL]   (defaults: build/src/daemon/vhud, build/src/cli/vhuctl)
#
# The two "guests" are vhuctl processes, both on CPU 0: port A runs `vhuctl net bench --mode tx`
# (broadcast frames: the switch floods them to B, its only other port), port B runs `--mode rx`.
# The switch (vhud or testpmd) is alone on CPU 1.
# Mpps: frames B received / the sender's seconds. Loss: 1 - received/sent. Backend CPU: ns of
# backend CPU time (utime+stime from /proc/PID/stat, over the run) per received frame.
# Env: RUNS (3), SECS (5), SIZES ("64 1514": vhuctl sends at most 1514-byte frames), RINGS ("split packed"), BACKENDS ("vhud dpdk"),
#   VHUD_SWITCH_ARGS (e.g. "--workers 1 --poll-us 1000": busy-poll like testpmd), OUT (work dir).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=../tests/interop/dpdk-lib.sh
. "$repo/tests/interop/dpdk-lib.sh"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

VHUD=${1:-$repo/build/src/daemon/vhud}
VHUCTL=${2:-$repo/build/src/cli/vhuctl}
RUNS=${RUNS:-3} SECS=${SECS:-5}
SIZES=${SIZES:-64 1514} RINGS=${RINGS:-split packed} BACKENDS=${BACKENDS:-vhud dpdk}
[[ -x $VHUD && -x $VHUCTL ]] || { echo "switch-bench: build first (make build)" >&2; exit 1; }
if [[ " $BACKENDS " == *" dpdk "* ]] && ! dpdk_have; then
  echo "switch-bench: dpdk-testpmd not found (scripts/deps.sh test installs dpdk-dev)" >&2; exit 1
fi
dpdk_mem_args
out=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/vhu-switch-bench.XXXXXX")}
mkdir -p "$out"
hz=$(getconf CLK_TCK)

be_pid='' be_kind='' rx_pid=''
cleanup() {
  [[ -n $rx_pid ]] && { kill "$rx_pid" 2>/dev/null || true; wait "$rx_pid" 2>/dev/null || true; }
  rx_pid=
  [[ -n $be_pid ]] && backend_stop "$be_kind" "$be_pid"
  be_pid=
  rm -f "${DPDK_FIFOS[@]}" 2>/dev/null || true
}
trap cleanup EXIT

result_field() { sed -n "s/^RESULT .*$2=\([0-9.]*\).*/\1/p" "$1" | tail -n 1; }

# one run: prints "MPPS NS_PER_PKT LOSS_PCT"
run_one() {
  local kind=$1 size=$2 ring=$3 tag=$4 a=$out/a.sock b=$out/b.sock i
  local ringarg=() t0 t1 sent got secs
  [[ $ring == packed ]] && ringarg=(--packed)
  rm -f "$a" "$b"
  be_kind=$kind
  if [[ $kind == vhud ]]; then
    echo "taskset -c 1 $VHUD switch --port $a --port $b ${VHUD_SWITCH_ARGS:-}" >"$out/$tag.be.log.cmd"
    # shellcheck disable=SC2086
    taskset -c 1 "$VHUD" switch --port "$a" --port "$b" ${VHUD_SWITCH_ARGS:-} </dev/null >"$out/$tag.be.log" 2>&1 &
    be_pid=$!
  else
    dpdk_start be 1 "$out/$tag.be.log" --vdev "net_vhost0,iface=$a,queues=1" \
      --vdev "net_vhost1,iface=$b,queues=1" -- --forward-mode=io
    be_pid=$DPDK_PID
  fi
  for ((i = 0; i < 200; i++)); do [[ -S $a && -S $b ]] && break; sleep 0.1; done
  [[ -S $a && -S $b ]] || { echo "run $tag: the switch did not listen" >&2; cleanup; return 1; }
  t0=$(cpu_ticks "$be_pid") || t0=0
  taskset -c 0 "$VHUCTL" net bench --socket-path "$b" --mode rx --seconds $((SECS + 3)) \
    --size "$size" "${ringarg[@]}" --timeout-ms 60000 >"$out/$tag.rx.log" 2>&1 &
  rx_pid=$!
  sleep 1
  taskset -c 0 "$VHUCTL" net bench --socket-path "$a" --mode tx --seconds "$SECS" \
    --size "$size" "${ringarg[@]}" >"$out/$tag.tx.log" 2>&1 || true
  wait "$rx_pid" || true
  rx_pid=
  t1=$(cpu_ticks "$be_pid") || t1=0
  cleanup
  sent=$(result_field "$out/$tag.tx.log" pkts); got=$(result_field "$out/$tag.rx.log" pkts)
  secs=$(result_field "$out/$tag.tx.log" secs)
  if [[ -z $sent || -z $got || -z $secs || $got == 0 ]]; then
    echo "run $tag: no result (see $out/$tag.*.log)" >&2; return 1
  fi
  awk -v g="$got" -v s="$sent" -v t="$secs" -v dt=$((t1 - t0)) -v hz="$hz" \
    'BEGIN {printf "%.2f %.1f %.1f\n", g / t / 1e6, dt / hz * 1e9 / g, (s > g ? (s - g) / s * 100 : 0)}'
}


echo "uptime before: $(uptime)"
declare -A res
for size in $SIZES; do
  for ring in $RINGS; do
    for ((r = 1; r <= RUNS; r++)); do
      for kind in $BACKENDS; do
        tag=$size-$ring-$kind-$r
        v=$(run_one "$kind" "$size" "$ring" "$tag") || v="0 0 0"
        echo "run $tag: $v (Mpps ns/pkt loss%)" >&2
        res[$size-$ring-$kind]+="$v;"
      done
    done
  done
done
echo
echo "| frame | ring | vhud switch Mpps | ns CPU/pkt | loss % | testpmd io Mpps | ns CPU/pkt | loss % | vhud/dpdk |"
echo "|---|---|---|---|---|---|---|---|---|"
for size in $SIZES; do
  for ring in $RINGS; do
    row="| $size | $ring"
    declare -A m=()
    for kind in vhud dpdk; do
      runs=${res[$size-$ring-$kind]:-}
      if [[ -z $runs ]]; then row+=" | – | – | –"; continue; fi
      mp=$(tr ';' '\n' <<<"$runs" | awk 'NF {print $1}' | median)
      ns=$(tr ';' '\n' <<<"$runs" | awk 'NF {print $2}' | median)
      lo=$(tr ';' '\n' <<<"$runs" | awk 'NF {print $3}' | median)
      all=$(tr ';' '\n' <<<"$runs" | awk 'NF {print $1}' | paste -sd, | sed 's/,/, /g')
      m[$kind]=$mp
      row+=" | $mp ($all) | $ns | $lo"
    done
    ratio=–
    [[ -n ${m[vhud]:-} && -n ${m[dpdk]:-} ]] && ratio=$(awk -v a="${m[vhud]}" -v b="${m[dpdk]}" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "–"}')
    echo "$row | $ratio |"
  done
done
echo
echo "uptime after: $(uptime)"
echo "logs and exact commands: $out (*.cmd; vhuctl: net bench --mode tx|rx --size N [--packed])"
