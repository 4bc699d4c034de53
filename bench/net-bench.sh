#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# vhost-user-net throughput: DPDK testpmd (net_virtio_user) as the frontend against `vhud net`
# and against DPDK's own net_vhost, side by side, runs alternated.
#
#   bench/net-bench.sh [VHUD]          (default build/src/daemon/vhud; root; needs dpdk-testpmd)
#
# Cells: frontend txonly -> backend sink (vhud --sink | testpmd rxonly),
#        frontend rxonly <- backend source (vhud --source SIZE | testpmd txonly --txpkts SIZE),
#        frontend io --tx-first <-> backend reflect (vhud --reflect | testpmd io),
#        64 and 1518-byte frames, split and packed rings.
# Pinning: the backend on CPU 1 (taskset -c 1; testpmd backends --lcores 0@1,1@1), the frontend
#   on CPU 0 (--lcores 0@0,1@0).
# Mpps: the median of testpmd's per-second Tx-pps (sink) / Rx-pps (source, reflect) samples of
#   the frontend, the first two samples dropped. Backend CPU: ns of backend CPU time (utime+stime
#   from /proc/PID/stat, over the frontend's whole life) per packet the frontend counted; no
#   cycle counts (perf has no hardware counters here and the nominal frequency is not trusted).
#   Steal: the share of the VM's CPU time the hypervisor gave to others during the run
#   (/proc/stat), the largest of a cell's runs; a run with a few % of it is a slow run. A run
#   with more than MAX_STEAL % (2; "off": never) is run again, up to REDO (2) times; the table
#   counts those per cell ("runs redone") and keeps the last try.
# Env: RUNS (5), SECS (8), SIZES ("64 1518"), RINGS ("split packed"), MODES ("sink source
#   reflect"), BACKENDS ("vhud dpdk"; "vhud vhud-base" with VHUD_BASE=another vhud binary: an
#   A/B of two builds, with a vhud/base column; vhud-vvu: vhud net behind a virtio-vhost-user
#   device, `vhud vvu --vfio-user` on the backend CPU, its CPU counted), VHUD_NET_ARGS (extra vhud args, e.g. "--workers 1
#   --poll-us 1000"), DPDK_FORCE_NOHUGE=1 (memfd even when hugepages are free), OUT (work dir).
# Reserve hugepages first for the faster --in-memory mode: echo 1024 >/proc/sys/vm/nr_hugepages
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=../tests/interop/dpdk-lib.sh
. "$repo/tests/interop/dpdk-lib.sh"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

VHUD=${1:-$repo/build/src/daemon/vhud}
RUNS=${RUNS:-5} SECS=${SECS:-8}
MAX_STEAL=${MAX_STEAL:-2} REDO=${REDO:-2}
SIZES=${SIZES:-64 1518} RINGS=${RINGS:-split packed} MODES=${MODES:-sink source reflect}
BACKENDS=${BACKENDS:-vhud dpdk}
dpdk_have || { echo "net-bench: dpdk-testpmd not found (scripts/deps.sh test installs dpdk-dev)" >&2; exit 1; }
if [[ " $BACKENDS " == *" vhud "* ]] && ! "$VHUD" net --help >/dev/null 2>&1; then
  echo "net-bench: '$VHUD net' does not work; BACKENDS=dpdk for the DPDK-only anchor" >&2; exit 1
fi
VHUD=$(cd "$(dirname "$VHUD")" && pwd)/$(basename "$VHUD")
dpdk_mem_args
out=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/vhu-net-bench.XXXXXX")}
mkdir -p "$out"
sock=$out/net.sock
hz=$(getconf CLK_TCK)

fe_pid='' be_pid='' be_kind=''
cleanup() {
  dpdk_stop "$fe_pid"; fe_pid=
  [[ -n $be_pid ]] && backend_stop "$be_kind" "$be_pid"
  be_pid=
  rm -f "${DPDK_FIFOS[@]}" 2>/dev/null || true
}
trap cleanup EXIT

# CPU ticks of the backend, and of the VVU device in front of it (vhud-vvu)
backend_ticks() {
  local t
  t=$(cpu_ticks "$be_pid") || t=0
  [[ -n ${BACKEND_VVU_PID:-} ]] && t=$((t + $(cpu_ticks "$BACKEND_VVU_PID" || echo 0)))
  echo "$t"
}

# one run: prints "MPPS NS_PER_PKT STEAL%"
run_one() {
  local kind=$1 mode=$2 size=$3 ring=$4 tag=$5
  local vdev="net_virtio_user0,path=$sock,queues=1" t0 t1 s0 s1 pkts pps dir=rx
  [[ $ring == packed ]] && vdev+=",packed_vq=1"
  [[ $mode == sink ]] && dir=tx
  be_kind=$kind
  if ! backend_start "$kind" "$mode" "$sock" 1 "$out/$tag.be.log" "$size"; then
    echo "run $tag: the backend did not start: $(tail -n 2 "$out/$tag.be.log" | tr '\n' ' ')" >&2
    echo "0 - -"; cleanup; return
  fi
  be_pid=$BACKEND_PID
  t0=$(backend_ticks)
  # shellcheck disable=SC2046
  dpdk_start fe 0 "$out/$tag.fe.log" --vdev "$vdev" -- $(frontend_args "$mode" "$size")
  fe_pid=$DPDK_PID
  s0=$(steal_ticks)
  sleep "$SECS"
  s1=$(steal_ticks)
  t1=$(backend_ticks)
  dpdk_stop "$fe_pid"; fe_pid=
  backend_stop "$kind" "$be_pid"; be_pid=
  pkts=$(dpdk_total "$out/$tag.fe.log" "$dir")
  pps=$(dpdk_pps "$out/$tag.fe.log" "$dir")
  ((pps > 0)) || pps=$((pkts / SECS))
  awk -v pps="$pps" -v p="$pkts" -v dt=$((t1 - t0)) -v hz="$hz" \
    -v st="$(steal_pct $((s1 - s0)) $((SECS * 1000000000)))" 'BEGIN {
    printf "%.2f %s %s\n", pps / 1e6, (p > 0 ? sprintf("%.1f", dt * 1e9 / hz / p) : "-"), st }'
}


echo "# vhost-user-net: testpmd virtio-user frontend vs vhud net and DPDK net_vhost"
echo
echo "- $(date -u '+%F %T UTC'), $(nproc) CPUs, uptime: $(uptime)"
echo "- DPDK: $(dpkg-query -W -f='${Version}' dpdk-dev 2>/dev/null || echo '?'), memory: ${DPDK_MEM[*]}"
echo "- $RUNS runs x ${SECS}s per cell, backends alternated run by run; medians shown"
echo "- Mpps: frontend testpmd per-second samples (median); CPU: ns of backend CPU time per packet"
echo
declare -A res=()
rows=()
for mode in $MODES; do
  for size in $SIZES; do
    for ring in $RINGS; do
      rows+=("$mode $size $ring")
      for ((r = 1; r <= RUNS; r++)); do
        order=$BACKENDS
        ((r % 2 == 0)) && order=$(echo "$BACKENDS" | tr ' ' '\n' | tac | tr '\n' ' ')
        for kind in $order; do
          tag=$mode-$size-$ring-$kind-$r
          # a run the hypervisor took more than MAX_STEAL % from is run again (up to REDO
          # times): the table then holds runs of the code, not of the host's other guests
          for ((try = 0; ; try++)); do
            read -r m c st < <(run_one "$kind" "$mode" "$size" "$ring" "$tag")
            echo "run $tag: $m Mpps, $c ns CPU/pkt, steal $st %" >&2
            if ((try >= REDO)) || ! too_much_steal "$st"; then break; fi
            echo "run $tag: steal $st % > $MAX_STEAL %: run again" >&2
            res[$mode $size $ring redone]=$((${res[$mode $size $ring redone]:-0} + 1))
          done
          res[$mode $size $ring $kind mpps]+=" $m"
          res[$mode $size $ring $kind cpu]+=" $c"
          res[$mode $size $ring steal]+=" $st"
        done
      done
    done
  done
done

hdr="| frontend ⇄ backend | frame | ring |"
sep="|---|---|---|"
for kind in $BACKENDS; do hdr+=" $kind Mpps | $kind ns CPU/pkt |"; sep+="---|---|"; done
[[ " $BACKENDS " == *" vhud "* && " $BACKENDS " == *" dpdk "* ]] && { hdr+=" vhud/dpdk |"; sep+="---|"; }
[[ " $BACKENDS " == *" vhud "* && " $BACKENDS " == *" vhud-base "* ]] && { hdr+=" vhud/base Mpps | vhud/base CPU |"; sep+="---|---|"; }
hdr+=" steal % (max) | runs redone |"; sep+="---|---|"
echo "$hdr"; echo "$sep"
for row in "${rows[@]}"; do
  read -r mode size ring <<<"$row"
  case $mode in sink) what="txonly → sink" ;; source) what="rxonly ← source" ;; reflect) what="io ⇄ reflect" ;; esac
  line="| $what | $size | $ring |"
  declare -A med=()
  for kind in $BACKENDS; do
    med[$kind]=$(echo "${res[$row $kind mpps]}" | median)
    line+=" ${med[$kind]} ($(echo "${res[$row $kind mpps]}" | sed 's/^ //; s/ /, /g')) | $(echo "${res[$row $kind cpu]}" | median) |"
  done
  if [[ -n ${med[vhud]:-} && -n ${med[dpdk]:-} ]]; then
    line+=" $(awk -v a="${med[vhud]}" -v b="${med[dpdk]}" 'BEGIN {print (b > 0 ? sprintf("%.2f", a / b) : "-")}') |"
  fi
  if [[ -n ${med[vhud]:-} && -n ${med[vhud-base]:-} ]]; then
    ca=$(echo "${res[$row vhud cpu]}" | median) cb=$(echo "${res[$row vhud-base cpu]}" | median)
    line+=" $(awk -v a="${med[vhud]}" -v b="${med[vhud-base]}" 'BEGIN {print (b > 0 ? sprintf("%.3f", a / b) : "-")}') |"
    line+=" $(awk -v a="$ca" -v b="$cb" 'BEGIN {print (b > 0 ? sprintf("%.3f", a / b) : "-")}') |"
  fi
  unset med
  line+=" $(largest <<<"${res[$row steal]}") | ${res[$row redone]:-0} |"
  echo "$line"
done
echo
echo "Commands (last run of each kind; logs in $out):"
echo '```'
for kind in $BACKENDS; do
  # shellcheck disable=SC2012 # our own file names
  f=$(ls -t "$out"/*-"$kind"-[0-9]*.be.log.cmd 2>/dev/null | head -1 || true)
  [[ -n $f ]] && cat "$f"
done
# shellcheck disable=SC2012
f=$(ls -t "$out"/*.fe.log.cmd 2>/dev/null | head -1 || true)
[[ -n $f ]] && cat "$f"
echo '```'
echo "uptime after: $(uptime)"
