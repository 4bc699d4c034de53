#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# virtio-blk benchmark: `vhuctl blk bench` (or bench/vublk-client, CLIENT=vublk) against
# `vhud blk` and against qemu-storage-daemon.
#
#   bench/blk-bench.sh [OUTDIR]
#
# For every case (store x mode x queue depth) and every run, the backends are alternated
# (vhud, qsd, vhud, qsd, ...); each run starts a fresh backend pinned to CPU $BACKEND_CPU and the
# client pinned to CPU $CLIENT_CPU, 4 KiB random reads for $RUNTIME s. Reported per backend: the
# median over the runs of IOPS, p50 and p99 latency (client-side, per request), the backend's
# CPU time per I/O (utime+stime of all its threads from /proc/PID/stat, delta over the client's
# run, divided by the I/Os), the client's CPU per I/O, and the largest steal time of its runs (the
# share of this VM's CPU time the hypervisor gave to other guests). A run with more than
# MAX_STEAL % of steal (2; "off": never) is run again, up to REDO (2) times: the table counts those
# ("runs redone") and takes the last try. Prints `uptime`, then a markdown table and the exact
# commands. Raw RESULT lines are kept in OUTDIR/raw.txt (the redone ones prefixed "redone").
#
# Env:
#   VHUD      default <repo>/build/src/daemon/vhud (skipped, with a note, if it has no blk device)
#   VHUCTL    default <repo>/build/src/cli/vhuctl
#   CLIENT=vhuctl             the frontend: vhuctl (`vhuctl blk bench`, the project's frontend
#                             library) or vublk (bench/vublk-client: independent of libvhu, three
#                             descriptors per request, EVENT_IDX as negotiated; a second view)
#   VUBLK     default <repo>/build/bench/vublk-client
#   QSD       default qemu-storage-daemon
#   RUNS=3 RUNTIME=5          runs per backend and case; seconds per run
#   STORES="null shm"         null: vhud --null / qsd null-co; shm: a file on /dev/shm
#                             (qsd: driver=file,aio=$QSD_AIO); nbd: that file served by one
#                             qemu-nbd (--shared, pinned to $NBD_CPU) on a UNIX socket, vhud
#                             `--nbd` / qsd `driver=nbd` (backend CPU counts the client only)
#                             rbd: a one-node Ceph cluster (tests/ceph-lib.sh: ceph-mon + one
#                             memstore ceph-osd, pinned to $CEPH_CPU) holding one image of
#                             $RBD_SIZE bytes of random data (written, so reads hit objects);
#                             vhud `--rbd rbd/IMAGE --ceph-conf` / qsd `driver=rbd` (package
#                             qemu-block-extra). Backend CPU counts the vhud/qsd process, with
#                             librbd's threads inside it; the cluster's daemons are not counted
#   NBD_CPU=$CLIENT_CPU       where the NBD server runs
#   CEPH_CPU=$CLIENT_CPU      where ceph-mon and ceph-osd run (all their threads)
#   RBD_SIZE=268435456        bytes of the RBD image (256 MiB: memstore keeps it in memory, and
#                             ceph-lib.sh's memstore device is 1 GiB)
#   QSD_AIO=io_uring          qsd's file AIO: io_uring | threads
#   MODES="event poll"  DEPTHS="1 32"  RW=randread  BS=4096
#                             event: the client sleeps on calls, the backends run as their
#                             defaults: vhud blk polls adaptively for at most 32 us
#                             (--poll-max-us 0 in VHUD_ARGS: none), qsd without an iothread does
#                             not poll (QSD_ARGS/QSD_EXPORT_ARGS below give it one, which polls
#                             adaptively for at most 32 us by default); poll: the client polls
#                             too, vhud a fixed POLL_US window, qsd an iothread polling for at
#                             most POLL_US (its adaptive window)
#   SIZE=1073741824           bytes of the null device and of the /dev/shm file
#   BACKENDS="vhud qsd"       order within a round; "vhud vhud-base" with VHUD_BASE=another vhud
#                             binary: an A/B of two builds (same client, same pinning);
#                             vhud-vvu: vhud blk behind a virtio-vhost-user device (`vhud vvu
#                             --vfio-user`, on the backend CPU too; its CPU counts as backend)
#   BACKEND_CPU=1 CLIENT_CPU=0
#   POLL_US=100               poll mode: vhud --poll-us, qsd iothread poll-max-ns (same time)
#   VHUD_ARGS, QSD_EXPORT_ARGS  extra backend arguments (e.g. QSD_EXPORT_ARGS=",iothread=t0"
#                             with QSD_ARGS="--object iothread,id=t0")
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/.." && pwd -P)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
VHUD=${VHUD:-$repo/build/src/daemon/vhud}
VHUCTL=${VHUCTL:-$repo/build/src/cli/vhuctl}
CLIENT=${CLIENT:-vhuctl}
VUBLK=${VUBLK:-$repo/build/bench/vublk-client}
QSD=${QSD:-qemu-storage-daemon}
QSD_AIO=${QSD_AIO:-io_uring}
RUNS=${RUNS:-3}
RUNTIME=${RUNTIME:-5}
STORES=${STORES:-null shm}
MODES=${MODES:-event poll}
DEPTHS=${DEPTHS:-1 32}
RW=${RW:-randread}
BS=${BS:-4096}
POLL_US=${POLL_US:-100}
MAX_STEAL=${MAX_STEAL:-2}
REDO=${REDO:-2}
SIZE=${SIZE:-1073741824}
BACKENDS=${BACKENDS:-vhud qsd}
BACKEND_CPU=${BACKEND_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
HZ=$(getconf CLK_TCK)

out=${1:-$(mktemp -d "${TMPDIR:-/tmp}/vhu-blk-bench.XXXXXX")}
mkdir -p "$out"
out=$(cd "$out" && pwd)
raw=$out/raw.txt
: >"$raw"
sock=$out/blk.sock
shmfile=/dev/shm/vhu-blk-bench.img
nbdsock=$out/nbd.sock
NBD_CPU=${NBD_CPU:-$CLIENT_CPU}
nbd_pid=
CEPH_CPU=${CEPH_CPU:-$CLIENT_CPU}
RBD_SIZE=${RBD_SIZE:-268435456}
rbd_image=vhu-bench
ceph_up=

log() { echo "[blk-bench] $*" >&2; }
die() { log "$*"; exit 1; }

case $CLIENT in
  vhuctl)
    [[ -x $VHUCTL ]] || die "vhuctl not found: $VHUCTL (build first, or set VHUCTL)"
    "$VHUCTL" blk bench --help >/dev/null 2>&1 || die "$VHUCTL has no 'blk bench'" ;;
  vublk)
    [[ -x $VUBLK ]] || die "vublk-client not found: $VUBLK (build first, or set VUBLK)" ;;
  *) die "CLIENT: vhuctl or vublk, not $CLIENT" ;;
esac
backends=()
for b in $BACKENDS; do
  case $b in
    vhud)
      if [[ -x $VHUD ]] && "$VHUD" blk --help >/dev/null 2>&1; then backends+=(vhud)
      else log "NOTE: $VHUD has no blk device: vhud is left out of this run"; fi ;;
    vhud-base)
      [[ -x ${VHUD_BASE:-} ]] || die "vhud-base needs VHUD_BASE=<a vhud binary>"
      backends+=(vhud-base) ;;
    vhud-vvu)
      "$VHUD" vvu --help >/dev/null 2>&1 || die "vhud-vvu: $VHUD has no 'vvu'"
      backends+=(vhud-vvu) ;;
    qsd)
      if command -v "$QSD" >/dev/null; then backends+=(qsd)
      else log "NOTE: $QSD not found: qsd is left out"; fi ;;
    *) die "unknown backend $b" ;;
  esac
done
((${#backends[@]})) || die "no backend to measure"

backend_pid=
vvu_pid=
cleanup() {
  if [[ -n $backend_pid ]]; then kill -KILL "$backend_pid" 2>/dev/null || true; wait "$backend_pid" 2>/dev/null || true; fi
  if [[ -n $vvu_pid ]]; then kill -KILL "$vvu_pid" 2>/dev/null || true; wait "$vvu_pid" 2>/dev/null || true; fi
  if [[ -n $nbd_pid ]]; then kill -TERM "$nbd_pid" 2>/dev/null || true; wait "$nbd_pid" 2>/dev/null || true; fi
  [[ -n $ceph_up ]] && ceph_stop
  rm -f "$sock" "$shmfile" "$shmfile.rbd" "$nbdsock"
}
trap cleanup EXIT

# backend_cmd BACKEND STORE MODE: the command line (in BCMD). In poll mode both backends poll
# too: vhud with --poll-us, qemu-storage-daemon with an iothread whose poll-max-ns is the same.
backend_cmd() {
  local b=$1 store=$2 mode=${3:-event}
  VCMD=()
  if [[ $b == vhud || $b == vhud-base || $b == vhud-vvu ]]; then
    local bin=$VHUD
    [[ $b == vhud-base ]] && bin=$VHUD_BASE
    BCMD=("$bin" blk --socket-path "$sock")
    if [[ $b == vhud-vvu ]]; then
      # the frontend's session crosses a virtio-vhost-user device (vfio-user) to vhud blk
      VCMD=("$VHUD" vvu --socket-path "$sock" --vfio-user "$sock.vfu")
      BCMD=("$bin" blk --vvu "vfio-user:$sock.vfu")
    fi
    case $store in
      null) BCMD+=(--null "$SIZE") ;;
      nbd) BCMD+=(--nbd "nbd+unix:///?socket=$nbdsock") ;;
      rbd) BCMD+=(--rbd "$CEPH_POOL/$rbd_image" --ceph-conf "$CEPH_CONF") ;;
      *) BCMD+=(--file "$shmfile") ;;
    esac
    [[ $mode == poll ]] && BCMD+=(--poll-us "$POLL_US")
    # shellcheck disable=SC2206
    BCMD+=(${VHUD_ARGS:-})
  else
    local pollobj=() pollexp=""
    if [[ $mode == poll ]]; then
      pollobj=(--object "iothread,id=t0,poll-max-ns=$((POLL_US * 1000))")
      pollexp=",iothread=t0"
    fi
    local dev
    case $store in
      null) dev="driver=null-co,node-name=f,size=$SIZE" ;;
      nbd) dev="driver=nbd,node-name=f,server.type=unix,server.path=$nbdsock" ;;
      rbd) dev="driver=rbd,node-name=f,pool=$CEPH_POOL,image=$rbd_image,conf=$CEPH_CONF" ;;
      *) dev="driver=file,node-name=f,filename=$shmfile,aio=$QSD_AIO" ;;
    esac
    # shellcheck disable=SC2206
    BCMD=("$QSD" ${QSD_ARGS:-} "${pollobj[@]}" --blockdev "$dev"
      --export "type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path=$sock,writable=on,num-queues=1$pollexp${QSD_EXPORT_ARGS:-}")
  fi
}

# backend_ticks: CPU of the backend, and of the VVU device in front of it (vhud-vvu)
backend_ticks() {
  local t
  t=$(cpu_ticks "$backend_pid") || return 1
  [[ -n $vvu_pid ]] && t=$((t + $(cpu_ticks "$vvu_pid")))
  echo "$t"
}

# client_cmd DEPTH MODE: the client's command line (in CCMD), on $sock. Both clients print one
# RESULT line with ios=, iops=, p50_us=, p99_us=; its client CPU per I/O is field $CCPU_FIELD.
client_cmd() {
  local qd=$1 mode=$2
  if [[ $CLIENT == vublk ]]; then
    CCMD=("$VUBLK" --socket-path "$sock" --rw "$RW" --bs "$BS" --qd "$qd" --seconds "$RUNTIME")
    CCPU_FIELD=cpu_client_us_per_io
  else
    CCMD=("$VHUCTL" blk bench --socket-path "$sock" --rw "$RW" --bs "$BS" --iodepth "$qd"
      --runtime "$RUNTIME")
    CCPU_FIELD=client_cpu_us_per_io
  fi
  [[ $mode == poll ]] && CCMD+=(--poll)
  return 0
}

# one_run BACKEND STORE MODE DEPTH -> appends "case backend iops p50 p99 bcpu ccpu" to $raw
one_run() {
  local b=$1 store=$2 mode=$3 qd=$4 i line t0 t1 s0 s1 w0 w1
  backend_cmd "$b" "$store" "$mode"
  rm -f "$sock" "$sock.vfu"
  if ((${#VCMD[@]})); then
    taskset -c "$BACKEND_CPU" "${VCMD[@]}" </dev/null >"$out/vvu.log" 2>&1 &
    vvu_pid=$!
    for ((i = 0; i < 100; i++)); do [[ -S $sock.vfu ]] && break; sleep 0.05; done
    [[ -S $sock.vfu ]] || { cat "$out/vvu.log" >&2; die "vhud vvu did not start"; }
  fi
  taskset -c "$BACKEND_CPU" "${BCMD[@]}" </dev/null >"$out/backend.log" 2>&1 &
  backend_pid=$!
  for ((i = 0; i < 100; i++)); do
    [[ -S $sock ]] && break
    kill -0 "$backend_pid" 2>/dev/null || { cat "$out/backend.log" >&2; die "$b did not start"; }
    sleep 0.05
  done
  [[ -S $sock ]] || die "$b did not create $sock"
  client_cmd "$qd" "$mode"
  t0=$(backend_ticks)
  s0=$(steal_ticks)
  w0=$(date +%s%N)
  line=$(taskset -c "$CLIENT_CPU" "${CCMD[@]}" 2>"$out/client.err" | grep '^RESULT ') ||
    { cat "$out/client.err" "$out/backend.log" >&2; die "client failed against $b"; }
  w1=$(date +%s%N)
  s1=$(steal_ticks)
  t1=$(backend_ticks)
  kill -TERM "$backend_pid"; wait "$backend_pid" 2>/dev/null || true
  backend_pid=
  if [[ -n $vvu_pid ]]; then kill -TERM "$vvu_pid"; wait "$vvu_pid" 2>/dev/null || true; vvu_pid=; fi
  local ios iops p50 p99 ccpu
  ios=$(sed -n 's/.* ios=\([0-9]*\).*/\1/p' <<<"$line")
  iops=$(sed -n 's/.* iops=\([0-9.]*\).*/\1/p' <<<"$line")
  p50=$(sed -n 's/.* p50_us=\([0-9.]*\).*/\1/p' <<<"$line")
  p99=$(sed -n 's/.* p99_us=\([0-9.]*\).*/\1/p' <<<"$line")
  ccpu=$(sed -n "s/.* $CCPU_FIELD=\([0-9.]*\).*/\1/p" <<<"$line")
  local bcpu
  bcpu=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$ios" 'BEGIN {printf "%.3f", d / hz * 1e6 / n}')
  # the share of this VM's CPU time (all CPUs, over the client's run) the hypervisor gave away
  RUN_STEAL=$(steal_pct $((s1 - s0)) $((w1 - w0))) # also read by the caller (redo)
  echo "$store $mode $qd $b $iops $p50 $p99 $bcpu $ccpu $RUN_STEAL | $line" >>"$raw"
  log "$store $mode qd=$qd $b: iops=$iops p50=$p50 p99=$p99 backend_cpu_us/io=$bcpu steal=$RUN_STEAL%"
}


echo "uptime: $(uptime)"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); host: $(uname -r), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
echo "client $CLIENT ($([[ $CLIENT == vublk ]] && echo "$VUBLK" || echo "$VHUCTL blk bench")): rw=$RW bs=$BS, ${RUNTIME}s per run, median of $RUNS runs per backend, backends alternated; backend on CPU $BACKEND_CPU, client on CPU $CLIENT_CPU"
echo

if [[ " $STORES " == *" shm "* || " $STORES " == *" nbd "* ]]; then
  head -c "$SIZE" /dev/zero >"$shmfile" 2>/dev/null || truncate -s "$SIZE" "$shmfile"
fi
if [[ " $STORES " == *" nbd "* ]]; then
  command -v qemu-nbd >/dev/null || die "STORES has nbd: qemu-nbd not found (package qemu-utils)"
  NBDCMD=(qemu-nbd -f raw -t --shared=16 --cache=writeback -k "$nbdsock" "$shmfile")
  taskset -c "$NBD_CPU" "${NBDCMD[@]}" </dev/null >"$out/nbd.log" 2>&1 &
  nbd_pid=$!
  for ((i = 0; i < 100; i++)); do [[ -S $nbdsock ]] && break; sleep 0.05; done
  [[ -S $nbdsock ]] || die "qemu-nbd did not start"
  echo "NBD server (CPU $NBD_CPU): ${NBDCMD[*]}"
fi
if [[ " $STORES " == *" rbd "* ]]; then
  # shellcheck source=../tests/ceph-lib.sh disable=SC1091
  . "$repo/tests/ceph-lib.sh"
  for c in ceph-mon ceph-osd ceph rbd monmaptool; do
    command -v "$c" >/dev/null || die "STORES has rbd: $c not found (ceph-mon ceph-osd ceph-common)"
  done
  if [[ " ${backends[*]} " == *" qsd "* ]] &&
     ! compgen -G '/usr/lib/*/qemu/block-rbd.so' >/dev/null; then
    die "STORES has rbd: qemu-storage-daemon has no rbd driver (package qemu-block-extra)"
  fi
  ceph_up=1
  ceph_start >"$out/ceph.log" 2>&1 || { cat "$out/ceph.log" >&2; die "the Ceph cluster did not start"; }
  # every thread of both daemons; threads they start later inherit the mask
  taskset -a -p -c "$CEPH_CPU" "$CEPH_MON_PID" >/dev/null
  taskset -a -p -c "$CEPH_CPU" "$CEPH_OSD_PID" >/dev/null
  head -c "$RBD_SIZE" /dev/urandom >"$shmfile.rbd"
  timeout 120 rbd --conf "$CEPH_CONF" import --no-progress "$shmfile.rbd" "$CEPH_POOL/$rbd_image" \
    >>"$out/ceph.log" 2>&1 || { rm -f "$shmfile.rbd"; cat "$out/ceph.log" >&2; die "rbd import failed"; }
  rm -f "$shmfile.rbd"
  echo "Ceph (ceph-mon + ceph-osd, memstore, pool size 1, CPU $CEPH_CPU): tests/ceph-lib.sh;" \
    "image $CEPH_POOL/$rbd_image: $RBD_SIZE bytes of random data (rbd import)"
fi
for store in $STORES; do
  for mode in $MODES; do
    for qd in $DEPTHS; do
      for ((r = 1; r <= RUNS; r++)); do
        for b in "${backends[@]}"; do
          # a run the hypervisor took more than MAX_STEAL % from is run again (up to REDO
          # times); its raw line stays, marked "redone", out of the table's medians
          for ((try = 0; ; try++)); do
            one_run "$b" "$store" "$mode" "$qd"
            if ((try >= REDO)) || ! too_much_steal "$RUN_STEAL"; then break; fi
            log "$store $mode qd=$qd $b: steal $RUN_STEAL % > $MAX_STEAL %: run again"
            sed -i '$ s/^/redone /' "$raw"
          done
        done
      done
    done
  done
done

echo "| store | mode | QD | backend | IOPS | p50 µs | p99 µs | backend CPU µs/IO | client CPU µs/IO | IOPS of each run | vs qsd | steal % (max) | runs redone |"
echo "|---|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"
for store in $STORES; do
  for mode in $MODES; do
    for qd in $DEPTHS; do
      declare -A med=()
      for b in "${backends[@]}"; do
        rows=$(awk -v s="$store" -v m="$mode" -v q="$qd" -v b="$b" '$1==s && $2==m && $3==q && $4==b' "$raw")
        iops=$(awk '{print $5}' <<<"$rows" | median)
        p50=$(awk '{print $6}' <<<"$rows" | median)
        p99=$(awk '{print $7}' <<<"$rows" | median)
        bcpu=$(awk '{print $8}' <<<"$rows" | median)
        ccpu=$(awk '{print $9}' <<<"$rows" | median)
        each=$(awk '{printf "%s%d", (NR>1?" ":""), $5}' <<<"$rows")
        stmax=$(awk '{print $10}' <<<"$rows" | largest)
        redone=$(awk -v s="$store" -v m="$mode" -v q="$qd" -v b="$b" \
          '$1=="redone" && $2==s && $3==m && $4==q && $5==b {n++} END {print n + 0}' "$raw")
        med[$b]=$iops
        echo "$store|$mode|$qd|$b|$iops|$p50|$p99|$bcpu|$ccpu|$each|$stmax|$redone" >>"$out/summary.txt"
      done
      for b in "${backends[@]}"; do
        line=$(grep "^$store|$mode|$qd|$b|" "$out/summary.txt" | tail -1)
        IFS='|' read -r s m q bb iops p50 p99 bcpu ccpu each stmax redone <<<"$line"
        ratio=
        [[ -n ${med[qsd]:-} && $bb != qsd ]] && ratio=$(awk -v a="$iops" -v c="${med[qsd]}" 'BEGIN {printf "%.2fx", a / c}')
        [[ -z ${med[qsd]:-} && -n ${med[vhud-base]:-} && $bb == vhud ]] &&
          ratio="$(awk -v a="$iops" -v c="${med[vhud-base]}" 'BEGIN {printf "%.3fx base", a / c}')"
        # through VVU against the same vhud on plain vhost-user: the cost of the extra hop
        [[ -n ${med[vhud]:-} && $bb == vhud-vvu ]] &&
          ratio="${ratio:+$ratio, }$(awk -v a="$iops" -v c="${med[vhud]}" 'BEGIN {printf "%.2fx vhud", a / c}')"
        printf '| %s | %s | %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
          "$s" "$m" "$q" "$bb" "$iops" "$p50" "$p99" "$bcpu" "$ccpu" "$each" "$ratio" "$stmax" "$redone"
      done
      unset med
    done
  done
done

echo
echo "Commands (SOCK = the socket path; each backend under \`taskset -c $BACKEND_CPU\`, the client under \`taskset -c $CLIENT_CPU\`):"
echo
echo '```sh'
for store in $STORES; do
  for mode in $MODES; do
    for b in "${backends[@]}"; do
      backend_cmd "$b" "$store" "$mode"
      [[ $b == vhud-vvu ]] && echo "taskset -c $BACKEND_CPU ${VCMD[*]}    # the VVU device in front"
      echo "taskset -c $BACKEND_CPU ${BCMD[*]}    # $mode"
    done
  done
done
if [[ $CLIENT == vublk ]]; then
  printf 'taskset -c %s %s --socket-path SOCK --rw %s --bs %s --qd {%s} --seconds %s [--poll]\n' \
    "$CLIENT_CPU" "$VUBLK" "$RW" "$BS" "${DEPTHS// /,}" "$RUNTIME"
else
  printf 'taskset -c %s %s blk bench --socket-path SOCK --rw %s --bs %s --iodepth {%s} --runtime %s [--poll]\n' \
    "$CLIENT_CPU" "$VHUCTL" "$RW" "$BS" "${DEPTHS// /,}" "$RUNTIME"
fi
echo '```'
echo
echo "raw results: $raw"
