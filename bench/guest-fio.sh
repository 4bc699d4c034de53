#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# virtio-blk as a real guest sees it: fio inside the project's test guest (QEMU 7.2, TCG, the
# Debian cloud kernel, tests/guest/) on a vhost-user-blk disk served alternately by `vhud blk`
# and by qemu-storage-daemon. A third view of issue #15's blk numbers, next to `vhuctl blk bench`
# and bench/vublk-client (bench/blk-bench.sh).
#
#   bench/guest-fio.sh [OUTDIR]
#
# For every store and run, the backends take turns (vhud, qsd, vhud, qsd, ...); each turn starts
# a fresh backend pinned to CPU $BACKEND_CPU and boots a fresh guest (1 vCPU) whose QEMU is
# pinned to CPU $QEMU_CPU. The guest runs, for each queue depth in $DEPTHS, one fio job: 4 KiB
# random reads, O_DIRECT, $ENGINE, time-based for $RUNTIME s on the whole disk, JSON output,
# which it sends to the host on its result port. The host takes from fio's JSON the IOPS, the
# completion latency p50/p99 and the I/O count, and from /proc/PID/stat the backend's CPU time
# (utime+stime, all threads) between the guest's "fio starts" and "fio ended" lines; backend CPU
# per I/O is that over fio's I/O count (a tick is 1/CLK_TCK s: at a few thousand IOPS, 5 s is
# 20-40 ticks). Also fio's own CPU in the guest (usr+sys, % of the vCPU). Reported per backend and
# cell: the median over the runs.
#
# Under TCG the guest's CPU dominates: every guest instruction (the block layer, the virtio
# driver, fio itself) is emulated on CPU $QEMU_CPU, so the IOPS here are bounded by the guest,
# not by the backend. This is the latency a guest sees, not a throughput ceiling; the backend CPU
# per I/O is the number that belongs to the backend.
#
# Runs with the same OUTDIR add to OUTDIR/raw.txt (APPEND=1), so a long measurement can be split
# into pieces (STORES=..., DEPTHS=...) and the last piece's table covers them all.
#
# Env:
#   VHUD      default <repo>/build/src/daemon/vhud (left out, with a note, without a blk device)
#   QSD       default qemu-storage-daemon
#   FIO       default /usr/bin/fio (Debian's fio: it goes into the initramfs with its libraries)
#   RUNS=3 RUNTIME=5          boots per backend and store; seconds per fio job
#   STORES="null shm"         null: vhud --null / qsd null-co; shm: a zero-filled file on
#                             /dev/shm (vhud --file, qsd driver=file,aio=$QSD_AIO)
#   DEPTHS="1 32"             fio iodepth, one job each, in this order, in every guest
#   ENGINE=libaio             fio ioengine inside the guest: libaio | io_uring
#   SIZE=1073741824           bytes of the disk (the null device and the /dev/shm file)
#   BACKENDS="vhud qsd"       order within a round
#   BACKEND_CPU=1 QEMU_CPU=0  the backend, and QEMU with this script
#   QSD_AIO=io_uring          qsd's file AIO for shm
#   VHUD_ARGS, QSD_ARGS       extra backend arguments
#   APPEND=0                  1: keep OUTDIR/raw.txt and add to it
#   GUEST_MEM=1024            guest RAM in MiB (the initramfs holds fio's ~85 MB of libraries)
#   VHU_GUEST_CACHE           the guest kernel (tests/guest/lib.sh, scripts/guest-kernel.sh)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/.." && pwd -P)
export GUEST_NAME=guest-fio GUEST_MEM=${GUEST_MEM:-1024} GUEST_SMP=1
# shellcheck source-path=SCRIPTDIR source=../tests/guest/lib.sh
. "$repo/tests/guest/lib.sh"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

VHUD=${VHUD:-$repo/build/src/daemon/vhud}
QSD=${QSD:-qemu-storage-daemon}
FIO=${FIO:-/usr/bin/fio}
RUNS=${RUNS:-3}
RUNTIME=${RUNTIME:-5}
STORES=${STORES:-null shm}
DEPTHS=${DEPTHS:-1 32}
ENGINE=${ENGINE:-libaio}
SIZE=${SIZE:-1073741824}
BACKENDS=${BACKENDS:-vhud qsd}
BACKEND_CPU=${BACKEND_CPU:-1}
QEMU_CPU=${QEMU_CPU:-0}
QSD_AIO=${QSD_AIO:-io_uring}
APPEND=${APPEND:-0}
HZ=$(getconf CLK_TCK)

die() { guest_log "$*"; exit 1; }

# ---- what the bench needs -------------------------------------------------------------------
[[ -x $FIO ]] || die "fio not found at $FIO: install Debian's fio on the host (apt-get install" \
  "fio; scripts/deps.sh bench), it is copied into the guest with its libraries"
command -v jq >/dev/null || die "jq not found (apt-get install jq): it reads fio's JSON output"
command -v taskset >/dev/null || die "taskset not found (package util-linux)"
case $ENGINE in libaio | io_uring) ;; *) die "ENGINE: libaio or io_uring, not $ENGINE" ;; esac
guest_require   # QEMU, busybox-static, cpio, kmod, the guest kernel (else exit 77)
backends=()
for b in $BACKENDS; do
  case $b in
    vhud)
      if [[ -x $VHUD ]] && "$VHUD" blk --help >/dev/null 2>&1; then backends+=(vhud)
      else guest_log "NOTE: $VHUD has no blk device: vhud is left out"; fi ;;
    qsd)
      if command -v "$QSD" >/dev/null; then backends+=(qsd)
      else guest_log "NOTE: $QSD not found: qsd is left out"; fi ;;
    *) die "unknown backend $b (vhud, qsd)" ;;
  esac
done
((${#backends[@]})) || die "no backend to measure"

out=${1:-$(mktemp -d "${TMPDIR:-/tmp}/vhu-guest-fio.XXXXXX")}
mkdir -p "$out"
out=$(cd "$out" && pwd)
((${#out} < 90)) || die "OUTDIR path too long for a unix socket: $out"
raw=$out/raw.txt
[[ $APPEND == 1 ]] || : >"$raw"
sock=$out/blk.sock
shmfile=/dev/shm/vhu-guest-fio.img

backend_pid=
cleanup() {
  guest_qemu_kill
  guest_kill_wait "$backend_pid"
  rm -f "$sock" "$shmfile"
}
trap cleanup EXIT

# ---- the guest ------------------------------------------------------------------------------
cat >"$out/test.sh" <<'GUEST'
# busybox sh inside the guest; result/signal come from /init, fd 3 is the result port.
. /extra/params
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu/ceph
i=0
while [ ! -e /sys/block/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if [ ! -e /sys/block/vda ]; then result FAIL disk "no /sys/block/vda"; exit 0; fi
echo none >/sys/block/vda/queue/scheduler 2>/dev/null || true
result INFO disk "vda $(($(cat /sys/block/vda/size) / 2048)) MiB" \
  "scheduler: $(cat /sys/block/vda/queue/scheduler)" "nr_requests=$(cat /sys/block/vda/queue/nr_requests)"
ok=1
for qd in $DEPTHS; do
  signal "FIO-START $qd"
  rc=0
  /usr/bin/fio --name=randread --filename=/dev/vda --rw=randread --bs=4k --direct=1 \
    --ioengine=$ENGINE --iodepth=$qd --time_based --runtime=$RUNTIME --norandommap \
    --output-format=json --output=/tmp/fio-$qd.json 2>/tmp/fio-$qd.err || rc=$?
  signal "FIO-END $qd $rc"
  if [ $rc != 0 ]; then
    msg=$(tr '\n' ' ' </tmp/fio-$qd.err | cut -c1-300)
    result FAIL fio-qd$qd "exit $rc: $msg"; ok=0; continue
  fi
  echo "FIO-JSON-BEGIN $qd" >&3
  cat /tmp/fio-$qd.json >&3
  echo "FIO-JSON-END $qd" >&3
done
[ $ok = 1 ] && result PASS fio "depths $DEPTHS"
GUEST

guest_bin_extras "$FIO" /usr/bin/fio
cat >"$out/params" <<EOF
DEPTHS="$DEPTHS"
RUNTIME=$RUNTIME
ENGINE=$ENGINE
EOF
t0=$SECONDS
guest_mkinitramfs "$out/initrd.cpio.gz" virtio_pci virtio_blk -- "$out/test.sh" \
  "$out/params:/extra/params" "${GUEST_EXTRAS[@]}" 2>"$out/mkinitramfs.log" ||
  { cat "$out/mkinitramfs.log" >&2; die "mkinitramfs failed"; }
guest_log "initramfs with $FIO and its libraries: $(du -m "$out/initrd.cpio.gz" | cut -f1) MiB" \
  "compressed, built in $((SECONDS - t0)) s"

# ---- backends -------------------------------------------------------------------------------
# backend_cmd BACKEND STORE: its command line in BCMD (the qsd lines are bench/blk-bench.sh's)
backend_cmd() {
  local b=$1 store=$2
  if [[ $b == vhud ]]; then
    BCMD=("$VHUD" blk --socket-path "$sock")
    if [[ $store == null ]]; then BCMD+=(--null "$SIZE"); else BCMD+=(--file "$shmfile"); fi
    # shellcheck disable=SC2206
    BCMD+=(${VHUD_ARGS:-})
  else
    local dev="driver=file,node-name=f,filename=$shmfile,aio=$QSD_AIO"
    [[ $store == null ]] && dev="driver=null-co,node-name=f,size=$SIZE"
    # shellcheck disable=SC2206
    BCMD=("$QSD" ${QSD_ARGS:-} --blockdev "$dev"
      --export "type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path=$sock,writable=on,num-queues=1")
  fi
}

# backend_ticks: CPU of the backend (all threads)
backend_ticks() { cpu_ticks "$backend_pid"; }

# one_boot BACKEND STORE RUN: one guest, every depth; appends one raw line per depth
one_boot() {
  local b=$1 store=$2 run=$3 qd rd ticks_start ticks_end line rc
  rd=$out/$store-$b-$run
  rm -rf "$rd"; mkdir -p "$rd"
  backend_cmd "$b" "$store"
  rm -f "$sock"
  printf '%q ' "${BCMD[@]}" >"$rd/backend.cmd"
  taskset -c "$BACKEND_CPU" "${BCMD[@]}" </dev/null >"$rd/backend.log" 2>&1 &
  backend_pid=$!
  guest_wait_socket "$sock" 20 "$backend_pid" || { cat "$rd/backend.log" >&2; die "$b did not start"; }
  # QEMU inherits this shell's CPU ($QEMU_CPU)
  guest_qemu_start "$rd" "$out/initrd.cpio.gz" \
    -chardev "socket,id=c0,path=$sock" -device "vhost-user-blk-pci,chardev=c0,num-queues=1"
  for qd in $DEPTHS; do
    guest_wait_line "$rd" "^FIO-START $qd\$" 240 || { guest_dump "$rd"; die "$b: no fio start (qd $qd)"; }
    ticks_start=$(backend_ticks) || die "$b died (qd $qd)"
    guest_wait_line "$rd" "^FIO-END $qd " $((RUNTIME + 120)) ||
      { guest_dump "$rd"; die "$b: fio did not end (qd $qd)"; }
    ticks_end=$(backend_ticks) || die "$b died (qd $qd)"
    echo "$qd $ticks_start $ticks_end" >>"$rd/ticks"
  done
  rc=0; guest_qemu_wait || rc=$?
  guest_kill_wait "$backend_pid"; backend_pid=
  if ((rc != 0)) || ! guest_check_results "$rd"; then guest_dump "$rd"; die "$b: the guest failed"; fi
  last_rd=$rd
  while read -r qd ticks_start ticks_end; do
    # fio's JSON for this depth, between its markers on the result port
    sed -n "/^FIO-JSON-BEGIN $qd\$/,/^FIO-JSON-END $qd\$/p" "$rd/result.log" | sed '1d;$d' \
      >"$rd/fio-qd$qd.json"
    line=$(jq -r --argjson d "$((ticks_end - ticks_start))" --argjson hz "$HZ" '
      .jobs[0] as $j | $j.read as $r
      | [($r.iops | floor), ($r.clat_ns.percentile["50.000000"] / 100 | round / 10),
         ($r.clat_ns.percentile["99.000000"] / 100 | round / 10), $r.total_ios,
         ($d / $hz * 1e6 / $r.total_ios * 100 | round / 100),
         ($j.usr_cpu + $j.sys_cpu | round)] | @tsv' "$rd/fio-qd$qd.json") ||
      die "$b: cannot read fio's JSON for qd $qd ($rd/fio-qd$qd.json)"
    # store qd backend iops p50_us p99_us ios backend_cpu_us_per_io guest_fio_cpu_% run
    echo "$store $qd $b $(tr '\t' ' ' <<<"$line") $run" >>"$raw"
    read -r iops p50 p99 ios bcpu gcpu <<<"$line"
    guest_log "$store qd=$qd $b run $run: iops=$iops p50=${p50}us p99=${p99}us ios=$ios" \
      "backend_cpu_us/io=$bcpu guest_fio_cpu=$gcpu%"
  done <"$rd/ticks"
}

# col N: the median of column N of $rows
col() { awk -v c="$1" '{print $c}' <<<"$rows" | median; }

echo "uptime before: $(uptime)"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); host: $(uname -r), $(nproc) CPUs" \
  "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
echo "guest: QEMU $($QEMU --version | sed -n '1s/.*version \([^ ]*\).*/\1/p') TCG, 1 vCPU," \
  "${GUEST_MEM} MiB, kernel $GUEST_KVER; $($FIO --version) in the guest: rw=randread bs=4k" \
  "direct=1 ioengine=$ENGINE, ${RUNTIME}s per depth; median of $RUNS boots per backend," \
  "backends alternated; backend on CPU $BACKEND_CPU, QEMU on CPU $QEMU_CPU"
echo

taskset -p -c "$QEMU_CPU" $$ >/dev/null   # this shell, and so QEMU, on QEMU's CPU
if [[ " $STORES " == *" shm "* ]]; then
  head -c "$SIZE" /dev/zero >"$shmfile"
fi
for store in $STORES; do
  case $store in null | shm) ;; *) die "STORES: null and/or shm, not $store" ;; esac
  for ((r = 1; r <= RUNS; r++)); do
    for b in "${backends[@]}"; do one_boot "$b" "$store" "$r"; done
  done
done
rm -f "$shmfile"

echo "Under TCG the guest's CPU dominates: QEMU emulates the guest's every instruction (block"
echo "layer, virtio driver, fio) on CPU $QEMU_CPU, so IOPS and latency here are what a guest sees,"
echo "not the backend's throughput ceiling; backend CPU per I/O is the backend's own cost."
echo
echo "| store | QD | backend | IOPS | clat p50 µs | clat p99 µs | backend CPU µs/IO | guest CPU % (fio usr+sys) | IOPS of each run | vs qsd |"
echo "|---|---:|---|---:|---:|---:|---:|---:|---|---:|"
mapfile -t seen_stores < <(awk '!s[$1]++ {print $1}' "$raw")
mapfile -t seen_backends < <(awk '!s[$3]++ {print $3}' "$raw")
for store in "${seen_stores[@]}"; do
  for qd in $(awk -v s="$store" '$1 == s {print $2}' "$raw" | sort -n | uniq); do
    qsd_iops=$(awk -v s="$store" -v q="$qd" '$1 == s && $2 == q && $3 == "qsd" {print $4}' "$raw" | median)
    for b in "${seen_backends[@]}"; do
      rows=$(awk -v s="$store" -v q="$qd" -v b="$b" '$1 == s && $2 == q && $3 == b' "$raw")
      [[ -n $rows ]] || continue
      iops=$(col 4)
      ratio=
      [[ $b != qsd && -n $qsd_iops ]] &&
        ratio=$(awk -v a="$iops" -v c="$qsd_iops" 'BEGIN {printf "%.2fx", a / c}')
      printf '| %s | %s | %s | %.0f | %s | %s | %s | %s | %s | %s |\n' "$store" "$qd" "$b" "$iops" \
        "$(col 5)" "$(col 6)" "$(col 8)" "$(col 9)" "$(awk '{printf "%s%s", (NR > 1 ? " " : ""), $4}' <<<"$rows")" \
        "$ratio"
    done
  done
done
echo
echo "Backends (each under \`taskset -c $BACKEND_CPU\`; SOCK the socket, SIZE=$SIZE):"
echo
echo '```sh'
for store in $STORES; do
  for b in "${backends[@]}"; do backend_cmd "$b" "$store"; echo "${BCMD[*]}"; done
done
echo '```'
echo
echo "Guest: \`taskset -c $QEMU_CPU\` $(sed "s|$out/[^ ]*/||g; s|$out/||g" "$last_rd/qemu.cmd")"
echo
echo "fio in the guest: \`fio --name=randread --filename=/dev/vda --rw=randread --bs=4k --direct=1" \
  "--ioengine=$ENGINE --iodepth={${DEPTHS// /,}} --time_based --runtime=$RUNTIME --norandommap" \
  "--output-format=json\` (scheduler none)"
echo
echo "raw results: $raw"
echo "uptime after: $(uptime)"
