#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# virtio-blk through vhud in a real Linux guest (QEMU 7.2, TCG, vhost-user-blk-pci).
#
#   blk.sh VHUD [WORKDIR]
#
# Two runs: 1 queue on 1 vCPU, then 2 queues on 2 vCPUs. Each run gets a fresh 64 MiB image of
# random bytes (disk A, writable, num-queues=N) and an 8 MiB random image served read-only
# (disk B, `--read-only`). The guest:
#   - checks the queue count (/sys/block/vdX/mq) and that disk B is read-only;
#   - md5 of all of disk A and disk B == the host's md5 of the images;
#   - O_DIRECT: writes a 2 MiB host-made pattern at 56, 58 and 60 MiB with dd oflag=direct in
#     4 KiB, 64 KiB and 1 MiB requests, reads each back (iflag=direct) in other sizes, compares;
#     with 2 vCPUs, two O_DIRECT readers run at once, one pinned to each vCPU (both queues);
#   - blkdiscard of 48..56 MiB (when the device offers discard);
#   - mkfs.ext4 (the host's, copied in with its libraries) on the first 48 MiB, mount, write
#     files (the pattern plus random ones), sync, umount, e2fsck -fn must be clean, mount again,
#     every md5 must match, fstrim, umount;
#   - disk B refuses a write, and its md5 is unchanged afterwards.
# After the guest powers off the backends must exit 0 on SIGTERM, and the host checks the images:
# e2fsck -fn, the pattern file inside the filesystem (debugfs dump), the three pattern regions,
# the untouched last 2 MiB, and disk B byte for byte.
#
# Exit: 0 pass, 1 fail (all logs printed), 77 skip (loud banner on stderr).
# Env (see lib.sh for the rest):
#   BLK_BACKEND=vhud|qsd  backend under test (default vhud; qsd = qemu-storage-daemon, the
#                         reference backend, to tell a test bug from a vhud bug)
#   VHUD_ARGS             extra arguments to `vhud blk`
#   GUEST_BLK_DEV_OPTS    appended to both vhost-user-blk-pci devices (",packed=on")
#   VHU_TRANSPORT=vvu     QEMU's vhost-user session crosses a virtio-vhost-user device
#                         (`vhud vvu --vfio-user`) to `vhud blk --vvu vfio-user:...` (lib.sh)
#   BLK_RUNS="1:1 2:2"    queues:vCPUs per run
#   BLK_STORE=file|nbd|rbd  what vhud serves the disks from (default file).
#                         nbd: qemu-nbd serves each image on a UNIX socket (--shared, multi-conn;
#                         -r for disk B) and vhud runs `blk --nbd nbd+unix:///?socket=...`.
#                         rbd: a one-node Ceph cluster (tests/ceph-lib.sh) for the whole script;
#                         each run's images are `rbd import`ed, disk A served with --rbd
#                         POOL/IMAGE, disk B as a snapshot POOL/IMAGE@SNAP (read-only through the
#                         snapshot alone), and the host checks run on what `rbd export` reads back.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
PATH=$PATH:/usr/sbin:/sbin

(($# >= 1)) || { echo "usage: $0 VHUD [WORKDIR]" >&2; exit 2; }
backend=${BLK_BACKEND:-vhud}
vhud=$1
store=${BLK_STORE:-file}
case $store in
  file | nbd | rbd) ;;
  *) guest_log "BLK_STORE must be file, nbd or rbd"; exit 2 ;;
esac
case $backend in
  vhud)
    guest_vhud "$vhud"
    "$vhud" blk --help >/dev/null 2>&1 ||
      { guest_log "FAIL: '$vhud blk --help' fails: this vhud has no blk device"; exit 1; }
    ;;
  qsd)
    command -v qemu-storage-daemon >/dev/null || guest_skip "qemu-storage-daemon not found" ;;
  *) guest_log "BLK_BACKEND must be vhud or qsd"; exit 2 ;;
esac
guest_require
case $store in
  file) ;;
  nbd)
    [[ $backend == vhud ]] || { guest_log "BLK_STORE=nbd needs BLK_BACKEND=vhud"; exit 2; }
    command -v qemu-nbd >/dev/null || guest_skip "qemu-nbd not found (package qemu-utils)" ;;
  rbd)
    [[ $backend == vhud ]] || { guest_log "BLK_STORE=rbd needs BLK_BACKEND=vhud"; exit 2; }
    # shellcheck source=../ceph-lib.sh
    . "$here/../ceph-lib.sh"
    command -v ceph-mon >/dev/null 2>&1 && command -v ceph-osd >/dev/null 2>&1 &&
      command -v rbd >/dev/null 2>&1 ||
      guest_skip "ceph-mon, ceph-osd or rbd not found (ceph-mon ceph-osd ceph-common)"
    # the whole help first: grep -q leaving early would SIGPIPE vhud (help goes to stderr)
    vhelp=$("$vhud" blk --help 2>&1 || true)
    grep -q -- '--rbd POOL/IMAGE' <<<"$vhelp" && ! grep -q 'not in this build' <<<"$vhelp" ||
      guest_skip "this vhud is built without the RBD store"
    ;;
esac
for t in mkfs.ext4 e2fsck debugfs md5sum cmp; do
  command -v $t >/dev/null 2>&1 || guest_skip "$t not found (package e2fsprogs / coreutils)"
done

guest_workdir "${2:-}"
((${#dir} < 80)) || { guest_log "work dir path too long for unix sockets: $dir"; exit 1; }

MiB=$((1 << 20))
DISK_MB=64 RO_MB=8 FS_MB=48 PAT_MB=2
PAT_AT=(56 58 60) # MiB offsets of the three O_DIRECT pattern regions; 62..64 stays untouched

# ---- backends -------------------------------------------------------------------------------
pids=()
nbd_pids=()
# start_nbd IMG SOCK rw|ro LOG: qemu-nbd serving IMG (persistent, multi-conn, discard=unmap)
start_nbd() {
  local img=$1 sock=$2 mode=$3 log=$4 cmd
  rm -f "$sock"
  cmd=(qemu-nbd -f raw -t --shared=8 --discard=unmap -k "$sock" "$img")
  [[ $mode == ro ]] && cmd+=(-r)
  "${cmd[@]}" </dev/null >"$log" 2>&1 &
  nbd_pids+=("$!")
  guest_log "NBD server (pid $!): ${cmd[*]}"
  guest_wait_socket "$sock" 20 "$!"
}
stop_nbd() {
  local pid
  for pid in ${nbd_pids[@]+"${nbd_pids[@]}"}; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  nbd_pids=()
}
# start_backend NAME IMG SOCK QUEUES rw|ro LOG
start_backend() {
  local name=$1 img=$2 sock=$3 nq=$4 mode=$5 log=$6 cmd
  rm -f "$sock"
  GUEST_EP=(--socket-path "$sock") GUEST_VVU_PID=
  [[ $backend == vhud ]] && { guest_endpoint "$sock" "$log" || return 1; }
  if [[ $backend == vhud && $store == rbd ]]; then
    # img is POOL/IMAGE, or POOL/IMAGE@SNAP for disk B: read-only by being a snapshot
    cmd=("$vhud" blk "${GUEST_EP[@]}" --rbd "$img" --ceph-conf "$CEPH_CONF"
         --num-queues "$nq")
    # shellcheck disable=SC2206
    cmd+=(${VHUD_ARGS:-})
  elif [[ $backend == vhud && $store == nbd ]]; then
    start_nbd "$img" "$sock.nbd" "$mode" "$log.nbd" || return 1
    # read-only comes from the server (qemu-nbd -r)
    cmd=("$vhud" blk "${GUEST_EP[@]}" --nbd "nbd+unix:///?socket=$sock.nbd" --num-queues "$nq")
    # shellcheck disable=SC2206
    cmd+=(${VHUD_ARGS:-})
  elif [[ $backend == vhud ]]; then
    cmd=("$vhud" blk "${GUEST_EP[@]}" --file "$img" --num-queues "$nq")
    [[ $mode == ro ]] && cmd+=(--read-only)
    # the multi-queue run drives the sync engine, the single-queue run io_uring: both meet the
    # guest (VHUD_ARGS, after this, can override)
    ((nq > 1)) && cmd+=(--engine sync)
    # shellcheck disable=SC2206
    cmd+=(${VHUD_ARGS:-})
  else
    local w=on ro=off
    [[ $mode == ro ]] && { w=off; ro=on; }
    cmd=(qemu-storage-daemon
      --blockdev "driver=file,node-name=f,filename=$img,aio=io_uring,read-only=$ro"
      --export "type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path=$sock,writable=$w,num-queues=$nq")
  fi
  printf '%q ' "${cmd[@]}" >"$log.cmd"
  "${cmd[@]}" </dev/null >"$log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  # the VVU device after the backend that drives it: stop_backends stops them in this order
  [[ -n $GUEST_VVU_PID ]] && pids+=("$GUEST_VVU_PID")
  guest_log "$name backend (pid $pid): $(cat "$log.cmd")"
  guest_wait_socket "$sock" 20 "$pid"
}
stop_backends() {
  local pid rc=0 i
  for pid in ${pids[@]+"${pids[@]}"}; do
    kill -0 "$pid" 2>/dev/null || { guest_log "backend pid $pid died during the run"; rc=1; continue; }
    kill -TERM "$pid"
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      guest_log "backend pid $pid did not exit within 10 s of SIGTERM"; rc=1
      kill -KILL "$pid" 2>/dev/null || true
    fi
    local s=0; wait "$pid" || s=$?
    ((s == 0)) || { guest_log "backend pid $pid exited with status $s after SIGTERM"; rc=1; }
  done
  pids=()
  stop_nbd
  return "$rc"
}
cleanup() {
  guest_qemu_kill
  [[ $store == rbd ]] && ceph_stop
  local pid
  for pid in ${pids[@]+"${pids[@]}"}; do kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  pids=()
  guest_vvu_kill
  stop_nbd
  return 0
}
trap 'guest_on_exit cleanup' EXIT
run_dir=
fail() {
  guest_log "FAIL: $*"
  cleanup
  if [[ -n $run_dir ]]; then
    local logs=() f
    for f in "$run_dir"/backend-*.log "$run_dir"/backend-*.log.vvu; do [[ -e $f ]] && logs+=("${f##*/}"); done
    guest_dump "$run_dir" ${logs[@]+"${logs[@]}"}
  fi
  exit 1
}

# ---- the guest side -------------------------------------------------------------------------
cat >"$dir/test.sh" <<'GUEST'
# busybox sh inside the guest; result/signal come from /init. /extra/expect sets NQ, SMP,
# A_MD5, B_MD5, DISK_MB, RO_MB, FS_MB, PAT_MB, PAT_AT.
. /extra/expect
E2=/opt/e2
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
pass() { result PASS "$@"; }
failr() { result FAIL "$@"; }
# find the disks by size (512-byte sectors)
A= B=
i=0
while [ $i -lt 100 ]; do
  for d in /sys/block/vd*; do
    [ -e "$d/size" ] || continue
    case $(cat $d/size) in
      $((DISK_MB * 2048))) A=/dev/${d##*/} ;;
      $((RO_MB * 2048))) B=/dev/${d##*/} ;;
    esac
  done
  [ -n "$A" ] && [ -n "$B" ] && break
  sleep 0.1; i=$((i + 1))
done
if [ -z "$A" ] || [ -z "$B" ]; then
  failr disks "want ${DISK_MB} MiB and ${RO_MB} MiB virtio disks; have: $(ls /sys/block | tr '\n' ' ')"
  exit 0
fi
a=${A#/dev/} b=${B#/dev/}
pass disks "$A ${DISK_MB}MiB, $B ${RO_MB}MiB (read-only), nproc=$(nproc)"
result INFO config "$a: write_cache=$(cat /sys/block/$a/queue/write_cache)" \
  "discard_max_bytes=$(cat /sys/block/$a/queue/discard_max_bytes)" \
  "max_segments=$(cat /sys/block/$a/queue/max_segments)" \
  "max_hw_sectors_kb=$(cat /sys/block/$a/queue/max_hw_sectors_kb)"

# a write-back cache makes the guest send FLUSH (sync, fsync, journal commits)
if [ "$(cat /sys/block/$a/queue/write_cache)" != "write back" ]; then
  echo "write back" >/sys/block/$a/queue/write_cache 2>/dev/null || true
  result INFO write_cache "switched to: $(cat /sys/block/$a/queue/write_cache)"
fi

nq=$(ls /sys/block/$a/mq | wc -l)
if [ "$nq" = "$NQ" ]; then pass queues "$a has $nq hardware queue(s)"
else failr queues "$a has $nq hardware queues, want $NQ"; fi

# whole-disk reads
m=$(timeout 120 md5sum <$A | cut -d' ' -f1)
if [ "$m" = "$A_MD5" ]; then pass md5-a "whole $A md5 $m = host"; else failr md5-a "md5 $m, host $A_MD5"; fi
m=$(timeout 60 md5sum <$B | cut -d' ' -f1)
if [ "$m" = "$B_MD5" ]; then pass md5-b "whole $B md5 $m = host"; else failr md5-b "md5 $m, host $B_MD5"; fi

# O_DIRECT pattern writes (4K, 64K, 1M requests) and read-backs in other sizes
set -- $PAT_AT
wbs="4096 65536 1048576"
rbs="1048576 4096 65536"
k=0
for at in "$@"; do
  k=$((k + 1))
  w=$(echo $wbs | cut -d' ' -f$k); r=$(echo $rbs | cut -d' ' -f$k)
  bytes=$((PAT_MB << 20))
  if ! timeout 60 dd if=/extra/pattern of=$A bs=$w seek=$((at * 1048576 / w)) count=$((bytes / w)) \
       oflag=direct conv=notrunc 2>/tmp/dd.err; then
    failr direct-write-$at "dd bs=$w: $(tr '\n' ' ' </tmp/dd.err)"; continue
  fi
  rm -f /tmp/back
  if ! timeout 60 dd if=$A of=/tmp/back bs=$r skip=$((at * 1048576 / r)) count=$((bytes / r)) \
       iflag=direct 2>/tmp/dd.err; then
    failr direct-read-$at "dd bs=$r: $(tr '\n' ' ' </tmp/dd.err)"; continue
  fi
  if cmp -s /tmp/back /extra/pattern; then
    pass direct-$at "2 MiB at ${at} MiB: written bs=$w oflag=direct, read bs=$r iflag=direct, equal"
  else
    failr direct-$at "read-back differs: $(cmp /tmp/back /extra/pattern 2>&1 | head -1)"
  fi
done
rm -f /tmp/back

# concurrent O_DIRECT readers, one per vCPU (with 2 vCPUs: both queues at once)
if [ "$SMP" -gt 1 ]; then
  set -- $PAT_AT
  for c in 0 1; do
    at=$(eval echo \${$((c + 1))})
    taskset $((1 << c)) timeout 120 sh -c "
      n=0
      while [ \$n -lt 8 ]; do
        dd if=$A bs=16384 skip=$((at * 64)) count=128 iflag=direct 2>/dev/null | md5sum
        n=\$((n + 1))
      done" >/tmp/par$c &
  done
  wait
  want=$(md5sum </extra/pattern | cut -d' ' -f1)
  bad=$(cat /tmp/par0 /tmp/par1 | grep -vc "^$want" || true)
  got=$(cat /tmp/par0 /tmp/par1 | wc -l)
  if [ "$got" = 16 ] && [ "$bad" = 0 ]; then pass parallel "16 concurrent 2 MiB O_DIRECT reads on 2 vCPUs, all equal"
  else failr parallel "$got reads, $bad differ"; fi
fi

# discard the gap between the filesystem and the pattern regions
if [ "$(cat /sys/block/$a/queue/discard_max_bytes)" != 0 ]; then
  if timeout 60 blkdiscard -o $((FS_MB << 20)) -l $(((56 - FS_MB) << 20)) $A 2>/tmp/bd.err; then
    pass blkdiscard "$((56 - FS_MB)) MiB at ${FS_MB} MiB"
  else failr blkdiscard "$(cat /tmp/bd.err)"; fi
else
  result INFO blkdiscard "device offers no discard"
fi

# ext4 on the first FS_MB MiB
if timeout 120 $E2/mkfs.ext4 -F -q -L vhu $A $((FS_MB * 1024)) >/tmp/mkfs.log 2>&1; then
  pass mkfs.ext4 "$FS_MB MiB"
else
  failr mkfs.ext4 "$(tr '\n' ' ' </tmp/mkfs.log)"; exit 0
fi
mkdir -p /mnt
if ! mount -t ext4 $A /mnt 2>/tmp/mount.err; then failr mount "$(cat /tmp/mount.err)"; exit 0; fi
cp /extra/pattern /mnt/pattern
mkdir /mnt/d
n=0
while [ $n -lt 40 ]; do
  dd if=/dev/urandom of=/mnt/d/f$n bs=$(( (n % 7 + 1) * 3001 )) count=1 2>/dev/null
  n=$((n + 1))
done
dd if=/dev/urandom of=/mnt/big bs=1048576 count=8 2>/dev/null
(cd /mnt && md5sum pattern big d/*) >/tmp/sums
sync
if umount /mnt; then pass write-files "pattern, big (8 MiB), 40 small files; sync; umount"
else failr umount "busy?"; fi
if timeout 120 $E2/e2fsck -fn $A >/tmp/fsck.log 2>&1; then
  pass e2fsck "$(tail -1 /tmp/fsck.log)"
else
  failr e2fsck "exit $?: $(tr '\n' ' ' </tmp/fsck.log | cut -c1-400)"
fi
if mount -t ext4 $A /mnt 2>/tmp/mount.err; then
  if (cd /mnt && md5sum -c /tmp/sums) >/tmp/sums.out 2>&1; then
    pass remount-verify "$(wc -l </tmp/sums) files match after remount"
  else
    failr remount-verify "$(grep -v ': OK' /tmp/sums.out | head -3 | tr '\n' ' ')"
  fi
  if [ "$(cat /sys/block/$a/queue/discard_max_bytes)" != 0 ]; then
    rm -f /mnt/big
    if out=$(timeout 60 fstrim -v /mnt 2>&1); then pass fstrim "$out"; else failr fstrim "$out"; fi
  fi
  umount /mnt || failr umount2 "busy?"
else
  failr remount "$(cat /tmp/mount.err)"
fi

# disk B: read-only
if [ "$(cat /sys/block/$b/ro)" = 1 ]; then pass ro-flag "$b ro=1"; else failr ro-flag "$b ro=$(cat /sys/block/$b/ro)"; fi
if dd if=/dev/zero of=$B bs=4096 count=1 oflag=direct conv=notrunc 2>/tmp/ro.err; then
  failr ro-write "a write to $B succeeded"
else
  pass ro-write "refused: $(head -1 /tmp/ro.err)"
fi
m=$(md5sum <$B | cut -d' ' -f1)
if [ "$m" = "$B_MD5" ]; then pass ro-unchanged "md5 still $m"; else failr ro-unchanged "md5 now $m"; fi
sync
GUEST

# The host's mkfs.ext4 and e2fsck with their libraries (busybox mke2fs makes only ext2).
guest_e2fs_extras

head -c $((PAT_MB * MiB)) /dev/urandom >"$dir/pattern"
total_start=$SECONDS
if [[ $store == rbd ]]; then
  ceph_start || fail "the Ceph cluster did not start"
fi
rbd_cli() { timeout 60 rbd --conf "$CEPH_CONF" "$@"; }

# ---- one run: QUEUES VCPUS ------------------------------------------------------------------
run() {
  local nq=$1 smp=$2
  run_dir=$dir/q${nq}-smp${smp}
  rm -rf "$run_dir"; mkdir -p "$run_dir"
  local img=$run_dir/disk.img ro=$run_dir/ro.img
  head -c $((DISK_MB * MiB)) /dev/urandom >"$img"
  head -c $((RO_MB * MiB)) /dev/urandom >"$ro"
  local a_md5 b_md5
  a_md5=$(md5sum <"$img" | cut -d' ' -f1)
  b_md5=$(md5sum <"$ro" | cut -d' ' -f1)
  cp "$ro" "$run_dir/ro.orig"
  dd if="$img" of="$run_dir/tail.orig" bs=1M skip=62 count=2 status=none
  cat >"$run_dir/expect" <<EOF
NQ=$nq
SMP=$smp
A_MD5=$a_md5
B_MD5=$b_md5
DISK_MB=$DISK_MB
RO_MB=$RO_MB
FS_MB=$FS_MB
PAT_MB=$PAT_MB
PAT_AT="${PAT_AT[*]}"
EOF
  guest_mkinitramfs "$run_dir/initrd.cpio.gz" virtio_pci virtio_blk -- "$dir/test.sh" \
    "$run_dir/expect:/extra/expect" "$dir/pattern:/extra/pattern" "${GUEST_EXTRAS[@]}" \
    2>"$run_dir/mkinitramfs.log" || { cat "$run_dir/mkinitramfs.log" >&2; fail "mkinitramfs"; }

  local sa=$run_dir/a.sock sb=$run_dir/b.sock srca=$img srcb=$ro
  if [[ $store == rbd ]]; then
    srca=$CEPH_POOL/a-q$nq srcb=$CEPH_POOL/b-q$nq@s
    rbd_cli import --no-progress "$img" "${srca}" >"$run_dir/rbd.log" 2>&1 &&
      rbd_cli import --no-progress "$ro" "${srcb%@*}" >>"$run_dir/rbd.log" 2>&1 &&
      rbd_cli snap create "$srcb" >>"$run_dir/rbd.log" 2>&1 ||
      { cat "$run_dir/rbd.log" >&2; fail "rbd import / snap create"; }
    # what the host checks below must find is what rbd export reads back, not these files
    rm -f "$img" "$ro"
  fi
  start_backend a "$srca" "$sa" "$nq" rw "$run_dir/backend-a.log" || fail "backend A did not start"
  start_backend b "$srcb" "$sb" 1 ro "$run_dir/backend-b.log" || fail "backend B did not start"
  local t0=$SECONDS
  GUEST_SMP=$smp guest_qemu_start "$run_dir" "$run_dir/initrd.cpio.gz" \
    -chardev "socket,id=c0,path=$sa" -device "vhost-user-blk-pci,chardev=c0,num-queues=$nq${GUEST_BLK_DEV_OPTS:-}" \
    -chardev "socket,id=c1,path=$sb" -device "vhost-user-blk-pci,chardev=c1,num-queues=1${GUEST_BLK_DEV_OPTS:-}"
  local rc=0; guest_qemu_wait || rc=$?
  ((rc == 0)) || fail "QEMU exited with status $rc"
  guest_log "run q=$nq smp=$smp: guest ran $((SECONDS - t0)) s"
  guest_check_results "$run_dir" || fail "guest reported failures (q=$nq smp=$smp)"
  stop_backends || fail "backends did not survive the run or did not exit cleanly"
  if [[ $store == rbd ]]; then
    rbd_cli export --no-progress "$srca" "$img" >"$run_dir/rbd-export.log" 2>&1 &&
      rbd_cli export --no-progress "$srcb" "$ro" >>"$run_dir/rbd-export.log" 2>&1 ||
      { cat "$run_dir/rbd-export.log" >&2; fail "rbd export"; }
    guest_log "rbd export of $srca and $srcb: the host checks run on them"
  fi

  # host-side checks of the images
  e2fsck -fn "$img" >"$run_dir/host-e2fsck.log" 2>&1 ||
    { cat "$run_dir/host-e2fsck.log" >&2; fail "host e2fsck -fn of the image is not clean"; }
  guest_log "host e2fsck -fn: $(tail -1 "$run_dir/host-e2fsck.log")"
  debugfs -R "dump /pattern $run_dir/pattern.fs" "$img" >/dev/null 2>&1 ||
    fail "debugfs could not dump /pattern from the image"
  cmp -s "$run_dir/pattern.fs" "$dir/pattern" || fail "/pattern inside the filesystem differs on the host"
  local at
  for at in "${PAT_AT[@]}"; do
    cmp -s <(dd if="$img" bs=1M skip="$at" count="$PAT_MB" status=none) "$dir/pattern" ||
      fail "pattern region at $at MiB differs on the host"
  done
  cmp -s <(dd if="$img" bs=1M skip=62 count=2 status=none) "$run_dir/tail.orig" ||
    fail "the untouched last 2 MiB changed"
  cmp -s "$ro" "$run_dir/ro.orig" || fail "the read-only image changed"
  guest_log "run q=$nq smp=$smp: host checks pass (e2fsck clean, /pattern in the fs," \
    "3 pattern regions, untouched tail, read-only image unchanged)"
  rm -f "$img" "$ro" "$run_dir/ro.orig" "$run_dir/pattern.fs"
}

for r in ${BLK_RUNS:-1:1 2:2}; do
  run "${r%%:*}" "${r##*:}"
done
guest_log "total $((SECONDS - total_start)) s (backend: $backend, store: $store)"
guest_pass
