#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# vhost-user-net interop with DPDK 22.11 (dpdk-testpmd), everything local (unix sockets only).
#
#   dpdk-net.sh VHUD [WORKDIR]
#
# (a) testpmd is the frontend (net_virtio_user) against `vhud net`:
#     txonly -> `vhud net --sink`, split and packed: testpmd's TX-packets must be > 0 and keep
#     flowing; vhud's own counters are printed when its log has any.
#     rxonly <- `vhud net --source 64`, split and packed: testpmd must receive packets.
#     io --tx-first <-> `vhud net --reflect`, split and packed: the frames must keep coming back.
#     Against vhud, each PASS line says which features the session negotiated (IN_ORDER: DPDK's
#     virtio-user asks for it by default), read from vhud's control socket with vhuctl.
# (b) testpmd is the backend (net_vhost) and vhuctl drives it, split and packed:
#     io forwarding (a reflector): `vhuctl net send --count 10000`, then
#     `vhuctl net bench --mode rxtx --seconds 1 --macs unchanged` (every frame back intact);
#     testpmd's RX-packets must equal what vhuctl sent, its TX-packets what vhuctl received
#     (testpmd may count up to a ring, 256, per run that vhuctl left in flight). txonly: `vhuctl net recv --count 10000`, with and
#     without MRG_RXBUF. NOTRUN (loudly) when vhuctl has no `net` command.
# Env: INTEROP_BACKEND=dpdk runs (a) against DPDK's own net_vhost instead of vhud (a check of
#      the peer setup itself); INTEROP_SECS (default 3) per step; VHUCTL (default: next to VHUD,
#      ../cli/vhuctl); VHUD_NET_ARGS extra vhud arguments.
# Exit: 0 all steps passed, 1 a step failed (logs printed), 77 a step or everything was skipped.
# The work dir (a temporary one without WORKDIR) is removed at exit unless VHU_KEEP_TMP=1.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=dpdk-lib.sh
. "$here/dpdk-lib.sh"

log() { echo "[dpdk-net] $*" >&2; }
skip_banner() {
  {
    echo "#####################################################################"
    echo "### SKIP dpdk-net: $*"
    echo "#####################################################################"
  } >&2
}

(($# >= 1)) || { echo "usage: $0 VHUD [WORKDIR]" >&2; exit 2; }
VHUD=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
VHUCTL=${VHUCTL:-$(dirname "$VHUD")/../cli/vhuctl}
kind=${INTEROP_BACKEND:-vhud}
secs=${INTEROP_SECS:-3}

if ! dpdk_have; then
  skip_banner "dpdk-testpmd not found: the DPDK interop test did NOT run." \
    "Install it with 'scripts/deps.sh test' (Debian package dpdk-dev)."
  exit 77
fi
dpdk_mem_args

dir=${2:-}
if [[ -z $dir ]]; then dir=$(mktemp -d "${TMPDIR:-/tmp}/vhu-dpdk-net.XXXXXX"); auto=1; else mkdir -p "$dir"; auto=0; fi
dir=$(cd "$dir" && pwd)
sock=$dir/net.sock

fe_pid=
be_pid=
cleanup() {
  dpdk_stop "$fe_pid"; fe_pid=
  backend_stop "$kind" "$be_pid"; be_pid=
  rm -f "${DPDK_FIFOS[@]}" 2>/dev/null || true
}
# the work dir goes too (pass, fail or skip; a failed step printed its logs) unless it was given
# or VHU_KEEP_TMP=1
trap 'cleanup; ((auto)) && [[ ${VHU_KEEP_TMP:-} != 1 ]] && rm -rf "$dir"' EXIT

npass=0 nfail=0 nskip=0
pass() { npass=$((npass + 1)); echo "RESULT PASS $*"; }
failstep() {
  nfail=$((nfail + 1)); echo "RESULT FAIL $*"
  local f
  for f in "$dir"/"$step".*.log; do
    [[ -e $f ]] || continue
    echo "----- $f (cmd: $(cat "$f.cmd" 2>/dev/null)) -----" >&2; tail -n 60 "$f" | tr -d '\r' >&2
  done
}
skipstep() { nskip=$((nskip + 1)); echo "RESULT SKIP $1"; skip_banner "step $1: ${*:2}"; }

if [[ $kind == vhud ]]; then
  if ! "$VHUD" net --help >/dev/null 2>&1; then
    skip_banner "'$VHUD net' does not exist yet: part (a) did NOT run (INTEROP_BACKEND=dpdk checks the DPDK side alone)"
    nskip=$((nskip + 1))
    kind=none
  fi
fi

# session_features CTL: what vhud's session negotiated (hex, and IN_ORDER yes/no), from its
# control socket; empty when vhuctl is missing or the session is not up
session_features() {
  local f
  [[ -x $VHUCTL ]] || return 0
  f=$("$VHUCTL" --control "$1" list 2>/dev/null | awk '$3 == "active" {print $4; exit}') || true
  [[ -n $f ]] || return 0
  (( (f >> 35) & 1 )) && echo " features=$f (IN_ORDER)" || echo " features=$f (no IN_ORDER)"
}

# frontend STEP MODE RING: the backend (kind) is started in MODE, testpmd virtio-user drives it
frontend_step() {
  local step=$1 mode=$2 ring=$3 vdev="net_virtio_user0,path=$sock,queues=1" feat=""
  [[ $ring == packed ]] && vdev+=",packed_vq=1"
  local saved_args=${VHUD_NET_ARGS:-}
  [[ $kind == vhud ]] && VHUD_NET_ARGS="$saved_args --control $dir/$step.ctl"
  if ! backend_start "$kind" "$mode" "$sock" 1 "$dir/$step.be.log" 64; then
    VHUD_NET_ARGS=$saved_args
    be_pid=$BACKEND_PID; failstep "$step backend did not listen on $sock"; cleanup; return
  fi
  VHUD_NET_ARGS=$saved_args
  be_pid=$BACKEND_PID
  # shellcheck disable=SC2046
  dpdk_start "fe" 0 "$dir/$step.fe.log" --vdev "$vdev" -- $(frontend_args "$mode" 64)
  fe_pid=$DPDK_PID
  sleep "$secs"
  [[ $kind == vhud ]] && feat=$(session_features "$dir/$step.ctl")
  local alive=1
  kill -0 "$be_pid" 2>/dev/null || alive=0
  dpdk_stop "$fe_pid"; fe_pid=
  backend_stop "$kind" "$be_pid"; be_pid=
  local fl=$dir/$step.fe.log bl=$dir/$step.be.log tx rx pps brx btx
  tx=$(dpdk_total "$fl" tx); rx=$(dpdk_total "$fl" rx)
  ((alive)) || { failstep "$step the backend died during the run"; return; }
  case $mode in
    sink)
      pps=$((tx / secs))
      if ((tx > 1000)); then
        local extra=""
        if [[ $kind == dpdk ]]; then
          brx=$(dpdk_total "$bl" rx)
          # at most a ring's worth (256) is in flight when the frontend stops
          if ((brx > tx || tx - brx > 1024)); then failstep "$step frontend TX $tx != backend RX $brx"; return; fi
          extra=" backend RX-packets=$brx"
        else
          extra=" vhud: $(grep -iE 'packet|rx|tx' "$bl" | tail -n 3 | tr '\n' ' ' || true)"
          [[ $extra == " vhud: " ]] && extra=" (vhud printed no counters: only testpmd's TX counted)"
        fi
        pass "$step testpmd TX-packets=$tx (${pps} pps over ${secs}s)$extra$feat"
      else
        failstep "$step testpmd sent only $tx packets"
      fi ;;
    source)
      pps=$((rx / secs))
      if ((rx > 1000)); then
        local extra=""
        [[ $kind == dpdk ]] && { btx=$(dpdk_total "$bl" tx); extra=" backend TX-packets=$btx"; }
        pass "$step testpmd RX-packets=$rx (${pps} pps over ${secs}s)$extra$feat"
      else
        failstep "$step testpmd received only $rx packets"
      fi ;;
    reflect)
      # io --tx-first: a burst circulates; every reflected frame is received and sent again
      if ((rx > 1000 && tx >= rx)); then
        pass "$step testpmd RX-packets=$rx TX-packets=$tx over ${secs}s$feat"
      else
        failstep "$step testpmd received $rx and sent $tx packets"
      fi ;;
  esac
}

if [[ $kind != none ]]; then
  log "part (a): testpmd virtio-user frontend against $kind (${DPDK_MEM[*]}), ${secs}s per step"
  for ring in split packed; do
    step=txonly-sink-$ring; frontend_step "$step" sink "$ring"
    step=rxonly-source-$ring; frontend_step "$step" source "$ring"
    step=io-reflect-$ring; frontend_step "$step" reflect "$ring"
  done
fi

# ---- (b) DPDK's net_vhost backend, vhu's frontend --------------------------------------------
# vhuctl STEP ARGS...: runs `vhuctl net ARGS --socket-path SOCK` on CPU 0 (the backend is on
# CPU 1), appends its output to STEP's vhuctl log; sets VOUT and VRC.
vhuctl() {
  local step=$1; shift
  echo "vhuctl net $* --socket-path $sock" >>"$dir/$step.vhuctl.log.cmd"
  VOUT=$(taskset -c 0 timeout 60 "$VHUCTL" net "$@" --socket-path "$sock" 2>&1) && VRC=0 || VRC=$?
  echo "$VOUT" >>"$dir/$step.vhuctl.log"
}
# field NAME TEXT: the value of NAME=... in a RESULT line
field() { sed -n "s/^RESULT .* $1=\([0-9.]*\).*/\1/p" <<<"$2" | tail -n 1; }
# near A B SLACK: 0 when B <= A <= B + SLACK (testpmd may count what vhuctl left in flight)
near() { (($1 >= $2 && $1 <= $2 + $3)); }

# io forwarding reflects what arrives back out of the same port, addresses untouched.
# send: every frame consumed (testpmd RX); vhuctl drops the reflections it receives.
# bench rxtx: every frame must come back intact; testpmd RX/TX must match vhuctl's tx/rx
# (testpmd's TX may count up to a ring per run that reached vhuctl's ring after it stopped).
vhuctl_io_step() {
  local step=$1 ring=$2 p=() qs=256
  [[ $ring == packed ]] && p=(--packed)
  if ! backend_start dpdk reflect "$sock" 1 "$dir/$step.be.log"; then
    be_pid=$BACKEND_PID; failstep "$step net_vhost did not listen"; cleanup; return
  fi
  be_pid=$BACKEND_PID
  vhuctl "$step" send --count 10000 "${p[@]}"
  local send_rc=$VRC send_out=$VOUT sent back
  sent=$(sed -n 's/^sent \([0-9]*\) packets.*/\1/p' <<<"$send_out")
  back=$(sed -n 's/^sent .*; \([0-9]*\) frames came back.*/\1/p' <<<"$send_out")
  vhuctl "$step" bench --mode rxtx --seconds 1 --macs unchanged "${p[@]}"
  local bench_rc=$VRC bench_out=$VOUT tx rx
  tx=$(field tx_pkts "$bench_out"); rx=$(field rx_pkts "$bench_out")
  backend_stop dpdk "$be_pid"; be_pid=
  local brx btx
  brx=$(dpdk_total "$dir/$step.be.log" rx); btx=$(dpdk_total "$dir/$step.be.log" tx)
  if ((send_rc != 0)) || [[ $sent != 10000 ]]; then
    failstep "$step vhuctl net send rc=$send_rc: $send_out"
  elif ((bench_rc != 0)) || [[ -z $tx || -z $rx ]]; then
    failstep "$step vhuctl net bench rxtx rc=$bench_rc: $bench_out"
  elif ! near "$brx" $((sent + tx)) "$qs" || ! near "$btx" $((back + rx)) $((2 * qs)); then
    failstep "$step counters disagree: vhuctl sent $sent + $tx, received ${back:-?} + $rx; net_vhost RX-packets=$brx TX-packets=$btx"
  else
    pass "$step vhuctl sent $sent + $tx (rxtx $(field mpps "$bench_out") Mpps), received $back + $rx ($rx checked intact); net_vhost RX-packets=$brx TX-packets=$btx"
  fi
}

# txonly: testpmd sends 64-byte frames; vhuctl receives 10000 with mergeable buffers, then
# 10000 without MRG_RXBUF (one buffer per frame).
vhuctl_recv_step() {
  local step=$1 ring=$2 p=() qs=256
  [[ $ring == packed ]] && p=(--packed)
  if ! backend_start dpdk source "$sock" 1 "$dir/$step.be.log" 64; then
    be_pid=$BACKEND_PID; failstep "$step net_vhost did not listen"; cleanup; return
  fi
  be_pid=$BACKEND_PID
  vhuctl "$step" recv --count 10000 "${p[@]}"
  local rc1=$VRC out1=$VOUT
  vhuctl "$step" recv --count 10000 --no-mrg-rxbuf "${p[@]}"
  local rc2=$VRC out2=$VOUT
  backend_stop dpdk "$be_pid"; be_pid=
  local btx
  btx=$(dpdk_total "$dir/$step.be.log" tx)
  if ((rc1 != 0)); then
    failstep "$step vhuctl net recv rc=$rc1: $out1"
  elif ((rc2 != 0)); then
    failstep "$step vhuctl net recv --no-mrg-rxbuf rc=$rc2: $out2"
  elif ! near "$btx" 20000 $((2 * qs)); then
    failstep "$step vhuctl received 2 x 10000, net_vhost TX-packets=$btx"
  else
    local note=""
    grep -q "num_buffers 0" <<<"$out2" && note=" (without MRG_RXBUF net_vhost leaves num_buffers 0)"
    pass "$step vhuctl received 2 x 10000 frames; net_vhost TX-packets=$btx$note"
  fi
}

step=vhuctl-net
if [[ -x $VHUCTL ]] && "$VHUCTL" net --help >/dev/null 2>&1; then
  log "part (b): vhuctl net against testpmd net_vhost (io forwarding, txonly)"
  for ring in split packed; do
    step=vhuctl-io-$ring; vhuctl_io_step "$step" "$ring"
    step=vhuctl-recv-$ring; vhuctl_recv_step "$step" "$ring"
  done
else
  # Our own missing feature, not a missing peer: say so loudly, but it does not turn the DPDK
  # steps that did run into a skip.
  echo "RESULT NOTRUN $step"
  skip_banner "step $step: '$VHUCTL net' does not work: DPDK net_vhost as the backend with vhu's frontend did NOT run"
fi

kept=" (logs in $dir)"
((auto)) && [[ ${VHU_KEEP_TMP:-} != 1 ]] && kept=
log "$npass passed, $nfail failed, $nskip skipped$kept"
if ((nfail)); then exit 1; fi
if ((nskip)); then exit 77; fi
exit 0
