# SPDX-License-Identifier: BSD-3-Clause
# shellcheck shell=bash
# DPDK testpmd helpers shared by tests/interop/dpdk-net.sh, tests/guest/net.sh and
# bench/net-bench.sh. Source from bash.
#
#   dpdk_have                   0 iff dpdk-testpmd is installed
#   dpdk_mem_args               sets DPDK_MEM: --in-memory --single-file-segments when >= 256 free
#                               2 MiB hugepages exist, else --no-huge -m 256 (memfd, no mount needed)
#   dpdk_start NAME CPU LOG EAL_ARGS... -- TESTPMD_ARGS...
#                               runs testpmd pinned to CPU (both lcores on it) in the background,
#                               stdin held open on a FIFO; sets DPDK_PID
#   dpdk_stop PID               SIGINT, up to 15 s for the final statistics, then SIGKILL
#   dpdk_total LOG rx|tx        the last accumulated RX-/TX-packets count in a testpmd log
#   dpdk_pps LOG rx|tx          median of the per-second Rx-/Tx-pps samples (first 2 dropped)
#   backend_start KIND MODE SOCK CPU LOG [SIZE]   KIND vhud|vhud-base|dpdk, MODE
#                               sink|source|reflect; sets BACKEND_PID (VHUD must name the vhud
#                               binary for KIND=vhud, VHUD_BASE another one for KIND=vhud-base:
#                               an A/B of two vhud builds)
#   frontend_args MODE SIZE     testpmd forward args for the frontend facing a backend MODE

DPDK_TESTPMD=${DPDK_TESTPMD:-dpdk-testpmd}
DPDK_MEM=()
DPDK_PID=
BACKEND_PID=
DPDK_FIFOS=()

dpdk_have() { command -v "$DPDK_TESTPMD" >/dev/null 2>&1; }

dpdk_mem_args() {
  local free
  free=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo 2>/dev/null || echo 0)
  if [[ ${DPDK_FORCE_NOHUGE:-0} == 0 && ${free:-0} -ge 256 ]]; then
    DPDK_MEM=(--in-memory --single-file-segments)
  else
    DPDK_MEM=(--no-huge -m 256)
  fi
}

dpdk_start() {
  local name=$1 cpu=$2 log=$3; shift 3
  local eal=() fifo
  while (($#)) && [[ $1 != -- ]]; do eal+=("$1"); shift; done
  shift
  fifo=$(dirname "$log")/$name.stdin
  rm -f "$fifo"; mkfifo "$fifo"
  DPDK_FIFOS+=("$fifo")
  # a read-write open never blocks; the fd keeps testpmd's stdin open for its whole life
  local cmd=(taskset -c "$cpu" stdbuf -oL "$DPDK_TESTPMD" --file-prefix "vhu-$name-$$"
    "${DPDK_MEM[@]}" --no-pci --lcores "0@$cpu,1@$cpu" "${eal[@]}" --
    --no-mlockall --disable-link-check --stats-period 1 -a --total-num-mbufs 16384 "$@")
  echo "${cmd[*]}" >"$log.cmd"
  "${cmd[@]}" <>"$fifo" >"$log" 2>&1 &
  DPDK_PID=$!
}

dpdk_stop() {
  local pid=$1 i
  [[ -n $pid ]] || return 0
  kill -INT "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

dpdk_total() {
  local log=$1 dir=$2 key
  [[ $dir == rx ]] && key=RX-packets || key=TX-packets
  tr -d '\r' <"$log" | awk -v k="$key:" '$0 ~ /Accumulated forward statistics/ {acc=1}
    acc && $1 == k {v=$2; acc=0} END {print v+0}'
}

dpdk_pps() {
  local log=$1 dir=$2 key
  [[ $dir == rx ]] && key=Rx-pps: || key=Tx-pps:
  tr -d '\r' <"$log" | awk -v k="$key" '$1 == k {print $2}' | tail -n +3 | sort -n |
    awk '{a[NR] = $1} END {if (NR == 0) print 0; else print a[int((NR + 1) / 2)]}'
}

backend_start() {
  local kind=$1 mode=$2 sock=$3 cpu=$4 log=$5 size=${6:-64}
  rm -f "$sock"
  BACKEND_VVU_PID=
  if [[ $kind == vhud || $kind == vhud-base || $kind == vhud-vvu ]]; then
    local args=() bin=$VHUD ep=(--socket-path "$sock")
    [[ $kind == vhud-base ]] && bin=${VHUD_BASE:?VHUD_BASE names the baseline vhud}
    if [[ $kind == vhud-vvu ]]; then
      # the session crosses a virtio-vhost-user device (vfio-user) on the same CPU
      rm -f "$sock.vfu"
      taskset -c "$cpu" "$VHUD" vvu --socket-path "$sock" --vfio-user "$sock.vfu" \
        </dev/null >"$log.vvu" 2>&1 &
      BACKEND_VVU_PID=$!
      local j
      for ((j = 0; j < 100; j++)); do [[ -S $sock.vfu ]] && break; sleep 0.05; done
      ep=(--vvu "vfio-user:$sock.vfu")
    fi
    case $mode in
      sink) args=(--sink) ;; source) args=(--source "$size") ;; reflect) args=(--reflect) ;;
    esac
    # vhud caps a frame at mtu+14 (no FCS): a 1518-byte frame needs --mtu 1504
    [[ $mode == source ]] && ((size > 1514)) && args+=(--mtu $((size - 14)))
    echo "taskset -c $cpu $bin net ${ep[*]} ${args[*]} ${VHUD_NET_ARGS:-}" >"$log.cmd"
    # shellcheck disable=SC2086
    taskset -c "$cpu" "$bin" net "${ep[@]}" "${args[@]}" ${VHUD_NET_ARGS:-} \
      </dev/null >"$log" 2>&1 &
    BACKEND_PID=$!
  else
    local fwd=()
    case $mode in
      sink) fwd=(--forward-mode=rxonly) ;;
      source) fwd=(--forward-mode=txonly --txpkts "$size") ;;
      reflect) fwd=(--forward-mode=io) ;;
      icmpecho) fwd=(--forward-mode=icmpecho) ;;
    esac
    dpdk_start "be" "$cpu" "$log" --vdev "net_vhost0,iface=$sock,queues=1" -- "${fwd[@]}"
    BACKEND_PID=$DPDK_PID
  fi
  local i
  for ((i = 0; i < 200; i++)); do
    [[ -S $sock ]] && return 0
    kill -0 "$BACKEND_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

backend_stop() {
  local kind=$1 pid=$2 i
  [[ -n $pid ]] || return 0
  if [[ $kind == vhud || $kind == vhud-base || $kind == vhud-vvu ]]; then
    local p
    for p in "$pid" ${BACKEND_VVU_PID:-}; do
      kill -TERM "$p" 2>/dev/null || continue
      for ((i = 0; i < 100; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$p" 2>/dev/null || true
      wait "$p" 2>/dev/null || true
    done
    BACKEND_VVU_PID=
  else
    dpdk_stop "$pid"
  fi
}

# testpmd forwarding for the frontend facing a backend in MODE
frontend_args() {
  local mode=$1 size=$2
  case $mode in
    sink) echo "--forward-mode=txonly --txpkts $size" ;;
    source) echo "--forward-mode=rxonly" ;;
    reflect) echo "--forward-mode=io --tx-first --txpkts $size" ;;
  esac
}

