#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# virtio-vhost-user, the backend inside a VM (QEMU 7.2, TCG, two guests):
#
#   frontend VM: vhost-user-blk-pci ── FRONT.sock ── vhud vvu (host) ── x-pci-proxy-dev ──
#   backend VM:  vhud blk --vvu pci:DDDD:BB:DD.F --file /tmp/disk.img
#
# `vhud vvu --mpqemu-fd` serves the VVU device to the backend VM through QEMU's multi-process
# proxy (src/vvu/mpqemu.c); inside the backend VM vhud finds the device by its IDs (1af4:1017) in
# /sys/bus/pci/devices and drives it through sysfs (src/transport/vvu/pci_sysfs.c: resourceN
# mmap, hugepage DMA memory, polling: TCG delivers no interrupts through the proxy). Every BAR
# access is a socket round trip, so the disk is small and the checks modest:
#   backend VM:  fills /tmp/disk.img (DISK_MB) with random bytes, reports its md5, starts vhud,
#                says when vhud is up;
#   frontend VM: md5 of the whole disk (O_DIRECT) == the backend VM's; an O_DIRECT pattern
#                written and read back; mkfs.ext4 on the first FS_MB, a file written, e2fsck -fn
#                clean; md5 of the whole disk at the end;
#   backend VM:  (told on its third serial port) stops vhud (exit 0), md5s its file: must equal
#                the frontend's final md5, and its pattern region the pattern;
#   host:        vhud vvu exits 0 on SIGTERM, then the backend VM powers off.
# The shared-memory window (VVU_VM_SHM): x-pci-proxy-dev forwards each load and store of the
# device's BAR 2 over its socket (~15 us each), so blk reads it instead through an ivshmem-plain
# device in the backend VM on the frontend VM's memory file (`--vvu pci:BDF,shm=IVSHMEM_BDF`:
# same bytes, RAM speed; rings, messages and doorbells still go through the VVU device);
# VVU_VM_SHM=proxy reads it through the proxied BAR (net's default: its traffic is small).
# VVU_VM_DEVICE=net: `vhud net --vvu pci:... --tap vvutap0` in the backend VM (tap 10.79.0.1/24
# there), virtio-net-pci (vectors=0: QEMU 7.2 under TCG crashes with MSI-X) in the frontend VM
# (eth0 10.79.0.2/24), which pings the backend VM's tap address with small and 1400-byte packets
# and sends it DATA_KB of random bytes over TCP: the backend VM's listener checks size and md5.
#
#   vvu-backend-vm.sh VHUD LAUNCHER [WORKDIR]    exit 0 pass, 1 fail, 77 skip
# LAUNCHER is tests/guest/vvu_proxy_launch (both ends of the proxy socket).
# Env: see lib.sh; VVU_VM_DEVICE=blk|net (default blk); VVU_VM_SHM=ivshmem|proxy (default:
#      ivshmem for blk, proxy for net); VVU_VM_FAULT=flip (blk): the backend VM
#      changes its file after reporting its md5, and the test must fail; VHUD_VVU_ARGS, VHUD_ARGS:
#      extra arguments to `vhud vvu`, to `vhud blk|net`.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GUEST_NAME=${GUEST_NAME:-vvu-backend-vm}
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

(($# >= 2)) || { echo "usage: $0 VHUD LAUNCHER [WORKDIR]" >&2; exit 2; }
guest_vhud "$1"
launcher=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
[[ -x $launcher ]] || { guest_log "$launcher not found or not executable"; exit 1; }
guest_require
"$QEMU" -device help 2>/dev/null | grep -q x-pci-proxy-dev ||
  guest_skip "$QEMU has no x-pci-proxy-dev (multi-process QEMU)"
for t in mkfs.ext4 e2fsck md5sum; do
  command -v $t >/dev/null 2>&1 || guest_skip "$t not found (package e2fsprogs / coreutils)"
done
"$vhud" vvu --help >/dev/null 2>&1 || { guest_log "FAIL: '$vhud vvu --help' fails"; exit 1; }
dev=${VVU_VM_DEVICE:-blk}
case $dev in
  blk | net) ;;
  *) guest_log "VVU_VM_DEVICE must be blk or net"; exit 2 ;;
esac
shm=${VVU_VM_SHM:-$([[ $dev == blk ]] && echo ivshmem || echo proxy)}
case $shm in
  ivshmem | proxy) ;;
  *) guest_log "VVU_VM_SHM must be ivshmem or proxy"; exit 2 ;;
esac

guest_workdir "${3:-}"
((${#dir} < 80)) || { guest_log "work dir path too long for unix sockets: $dir"; exit 1; }
be=$dir/backend-vm fe=$dir/frontend-vm
rm -rf "$be" "$fe"; mkdir -p "$be" "$fe"
bus=$dir/bus.sock front=$dir/front.sock
rm -f "$bus" "$front"

DISK_MB=16 FS_MB=8 PAT_AT=12 PAT_MB=1 FE_MEM=256 BE_MEM=320 DATA_KB=256
TAP_IP=10.79.0.1 GUEST_IP=10.79.0.2

vvu_pid='' be_pid='' fe_pid='' ctl='' ctl_out='' memf=''
cleanup() {
  local p
  for p in $fe_pid $be_pid; do
    kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true
  done
  fe_pid='' be_pid='' GUEST_QEMU_PID=''
  [[ -n $vvu_pid ]] && { kill -KILL "$vvu_pid" 2>/dev/null || true; wait "$vvu_pid" 2>/dev/null || true; }
  vvu_pid=
  [[ -n $memf ]] && rm -f "$memf"
  return 0
}
trap 'guest_on_exit cleanup' EXIT
fail() {
  guest_log "FAIL: $*"
  cleanup
  guest_dump "$be"
  guest_dump "$fe"
  guest_dump "$dir" vvu.log
  exit 1
}
ms() { echo $((($(date +%s%N) - $1) / 1000000)); }
# the value after WORD on the line of DIR/result.log that starts with WORD
line_word() { sed -n "s/^$2 \([^ ]*\).*/\1/p" "$1/result.log" | tr -d '\r' | tail -n1; }
# the value after KEY on such a line: line_field DIR WORD KEY
line_field() { sed -n "s/^$2 \(.* \)\{0,1\}$3 \([^ ]*\).*/\2/p" "$1/result.log" | tr -d '\r' | tail -n1; }

# ---- the backend VM ---------------------------------------------------------------------------
cat >"$be/test.sh" <<'GUEST'
# busybox sh; result/signal come from /init. /extra/expect sets DEV SHM DISK_MB PAT_AT PAT_MB
# FAULT TAP_IP VHUD_ARGS.
. /extra/expect
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
signal BOOTED
# the driver's DMA memory (its rxq/txq) is carved from 2 MiB hugepages
echo 8 >/proc/sys/vm/nr_hugepages
hp=$(cat /proc/sys/vm/nr_hugepages)
[ "$hp" -ge 1 ] || { result FAIL hugepages "nr_hugepages=$hp"; exit 0; }
bdf=
for d in /sys/bus/pci/devices/*; do
  [ "$(cat "$d/vendor")" = 0x1af4 ] && [ "$(cat "$d/device")" = 0x1017 ] && bdf=${d##*/}
done
[ -n "$bdf" ] || { result FAIL find-device "no 1af4:1017 in /sys/bus/pci/devices"; exit 0; }
result PASS find-device "$bdf, $hp hugepages"
spec=pci:$bdf
if [ $SHM = ivshmem ]; then
  ivs=
  for d in /sys/bus/pci/devices/*; do
    [ "$(cat "$d/vendor")" = 0x1af4 ] && [ "$(cat "$d/device")" = 0x1110 ] && ivs=${d##*/}
  done
  [ -n "$ivs" ] || { result FAIL find-ivshmem "no 1af4:1110 in /sys/bus/pci/devices"; exit 0; }
  spec=$spec,shm=$ivs
  result PASS find-ivshmem "$ivs: the window's mirror"
fi
if [ $DEV = blk ]; then
  dd if=/dev/urandom of=/tmp/disk.img bs=1048576 count=$DISK_MB 2>/dev/null
  signal "DISK_MD5 $(md5sum </tmp/disk.img | cut -d' ' -f1)"
  # fault injection: the disk no longer holds what was announced
  [ "$FAULT" = flip ] && dd if=/dev/zero of=/tmp/disk.img bs=512 seek=8 count=1 conv=notrunc 2>/dev/null
  set -- --file /tmp/disk.img --num-queues 1
else
  set -- --tap vvutap0
fi
# commands from the host on the third serial port; open before saying vhud is up
stty -F /dev/ttyS2 raw -echo 2>/dev/null
exec 4</dev/ttyS2
/extra/vhud $DEV --vvu "$spec" "$@" $VHUD_ARGS </dev/null >/tmp/vhud.log 2>&1 &
pid=$!
i=0
while ! grep -q 'device ready' /tmp/vhud.log; do
  if ! kill -0 $pid 2>/dev/null || [ $i -ge 600 ]; then
    result FAIL vhud-up "$(tail -n 5 /tmp/vhud.log | tr '\n' ' ')"; exit 0
  fi
  sleep 0.1; i=$((i + 1))
done
result PASS vhud-up "$(grep -m1 'virtio-vhost-user device up' /tmp/vhud.log)"
if [ $DEV = net ]; then
  if ip addr add $TAP_IP/24 dev vvutap0 && ip link set vvutap0 up; then
    result PASS tap "vvutap0 $TAP_IP/24 up"
  else
    result FAIL tap "$(ip link 2>&1 | tr '\n' ' ')"
  fi
  . /extra/net-guest.sh
  tcp_listen 5001
fi
signal VHUD_UP
read -r cmd <&4 || cmd=EOF
[ "$cmd" = STOP ] || result FAIL control "expected STOP, got '$cmd'"
[ $DEV = net ] && tcp_recv_check "from the frontend VM through vvutap0: "
kill -TERM $pid
rc=0; wait $pid || rc=$?
if [ $rc = 0 ]; then result PASS vhud-exit "status 0 after SIGTERM"
else result FAIL vhud-exit "status $rc after SIGTERM"; fi
grep -E 'vhu: (error|warn)|packets=' /tmp/vhud.log | head -n 5 | while read -r l; do result INFO vhud-log "$l"; done
if [ $DEV = blk ]; then
  end=$(md5sum </tmp/disk.img | cut -d' ' -f1)
  pat=$(dd if=/tmp/disk.img bs=1048576 skip=$PAT_AT count=$PAT_MB 2>/dev/null | md5sum | cut -d' ' -f1)
  signal "END end_md5 $end pat_md5 $pat"
else
  signal "END"
fi
read -r cmd <&4 || cmd=EOF
[ "$cmd" = POWEROFF ] || result FAIL control "expected POWEROFF, got '$cmd'"
echo "vhud log:"; cat /tmp/vhud.log
GUEST

# ---- the frontend VM --------------------------------------------------------------------------
cat >"$fe/test-net.sh" <<'GUEST'
# busybox sh; /extra/expect sets TAP_IP GUEST_IP.
. /extra/expect
ip link set eth0 up && ip addr add $GUEST_IP/24 dev eth0 || { result FAIL ifup "ip failed"; exit 0; }
result PASS ifup "eth0 $GUEST_IP/24"
for size in 56 1400; do
  if ping -c 3 -s $size -w 60 $TAP_IP >/tmp/ping 2>&1; then
    result PASS ping-$size "$(grep -E 'packets|round-trip' /tmp/ping | tr '\n' ' ')"
  else
    result FAIL ping-$size "$(tr '\n' ' ' </tmp/ping)"
  fi
done
t=$(cut -d' ' -f1 /proc/uptime)
if timeout 120 nc $TAP_IP 5001 </extra/data.bin 2>/tmp/nc.err; then
  result PASS tcp-send "$(wc -c </extra/data.bin) bytes to $TAP_IP:5001 in $(awk -v a="$t" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.1f", b - a }') s"
else
  result FAIL tcp-send "nc: $(tr '\n' ' ' </tmp/nc.err)"
fi
GUEST
cat >"$fe/test-blk.sh" <<'GUEST'
# busybox sh; /extra/expect sets DISK_MB FS_MB PAT_AT PAT_MB; the backend VM's md5 of its file
# comes on the kernel command line (vvu_md5=).
. /extra/expect
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
E2=/opt/e2
want=$(sed -n 's/.*vvu_md5=\([0-9a-f]*\).*/\1/p' /proc/cmdline)
now() { cut -d' ' -f1 /proc/uptime | tr -d .; }   # centiseconds
A= i=0
while [ $i -lt 300 ] && [ -z "$A" ]; do
  for d in /sys/block/vd*; do
    [ "$(cat "$d/size" 2>/dev/null)" = $((DISK_MB * 2048)) ] && A=/dev/${d##*/}
  done
  [ -n "$A" ] || { sleep 0.1; i=$((i + 1)); }
done
[ -n "$A" ] || { result FAIL disk "no ${DISK_MB} MiB virtio disk: $(ls /sys/block | tr '\n' ' ')"; exit 0; }
result PASS disk "$A, ${DISK_MB} MiB"
echo "write back" >/sys/block/${A#/dev/}/queue/write_cache 2>/dev/null || true
# whole disk, O_DIRECT (no page cache), 1 MiB requests
t=$(now)
m=$(timeout 200 dd if=$A bs=1048576 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
t=$(($(now) - t))
if [ "$m" = "$want" ]; then result PASS md5 "whole disk md5 $m = the backend VM's"
else result FAIL md5 "whole disk md5 $m, the backend VM's file $want"; exit 0; fi
signal "READ_CS $t"
result INFO read "$DISK_MB MiB O_DIRECT in $((t * 10)) ms"
# O_DIRECT pattern: written in 64 KiB requests, read back in 16 KiB requests
t=$(now)
if timeout 120 dd if=/extra/pattern of=$A bs=65536 seek=$((PAT_AT * 16)) count=$((PAT_MB * 16)) \
     oflag=direct conv=notrunc 2>/tmp/dd.err &&
   timeout 120 dd if=$A of=/tmp/back bs=16384 skip=$((PAT_AT * 64)) count=$((PAT_MB * 64)) \
     iflag=direct 2>/tmp/dd.err; then
  if cmp -s /tmp/back /extra/pattern; then
    result PASS direct "$PAT_MB MiB at $PAT_AT MiB: written bs=64K oflag=direct, read bs=16K iflag=direct, equal ($((($(now) - t) * 10)) ms)"
  else result FAIL direct "read-back differs: $(cmp /tmp/back /extra/pattern 2>&1 | head -n1)"; fi
else
  result FAIL direct "dd: $(tr '\n' ' ' </tmp/dd.err)"
fi
# ext4 on the first FS_MB MiB
t=$(now)
if timeout 120 $E2/mkfs.ext4 -F -q -L vvu $A $((FS_MB * 1024)) >/tmp/mkfs.log 2>&1; then
  result PASS mkfs.ext4 "$FS_MB MiB ($((($(now) - t) * 10)) ms)"
  mkdir -p /mnt
  if mount -t ext4 $A /mnt 2>/tmp/mount.err; then
    cp /extra/pattern /mnt/pattern && sync && umount /mnt &&
      result PASS write-file "1 MiB file, sync, umount" || result FAIL write-file "cp/sync/umount"
  else
    result FAIL mount "$(cat /tmp/mount.err)"
  fi
  t=$(now)
  if timeout 120 $E2/e2fsck -fn $A >/tmp/fsck.log 2>&1; then
    result PASS e2fsck "$(tail -n1 /tmp/fsck.log) ($((($(now) - t) * 10)) ms)"
  else
    result FAIL e2fsck "$(tr '\n' ' ' </tmp/fsck.log | cut -c1-400)"
  fi
else
  result FAIL mkfs.ext4 "$(tr '\n' ' ' </tmp/mkfs.log)"
fi
sync
m=$(timeout 200 dd if=$A bs=1048576 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
signal "FINAL_MD5 $m"
GUEST

start=$(date +%s%N)
for vm in "$be" "$fe"; do
  cat >"$vm/expect" <<EOF
DEV=$dev
SHM=$shm
TAP_IP=$TAP_IP
GUEST_IP=$GUEST_IP
DISK_MB=$DISK_MB
FS_MB=$FS_MB
PAT_AT=$PAT_AT
PAT_MB=$PAT_MB
FAULT=${VVU_VM_FAULT:-}
VHUD_ARGS="${VHUD_ARGS:-}"
EOF
done
guest_bin_extras "$vhud" /extra/vhud
be_mods=() fe_mods=(virtio_pci virtio_net)
if [[ $dev == net ]]; then
  be_mods=(tun)
  head -c $((DATA_KB << 10)) /dev/urandom >"$dir/data.bin"
  GUEST_EXTRAS+=("$dir/data.bin:/extra/data.bin" "$here/net-guest.sh:/extra/net-guest.sh")
fi
guest_mkinitramfs "$be/initrd.cpio.gz" ${be_mods[@]+"${be_mods[@]}"} -- "$be/test.sh" \
  "$be/expect:/extra/expect" "${GUEST_EXTRAS[@]}" 2>"$be/mkinitramfs.log" ||
  { cat "$be/mkinitramfs.log" >&2; fail "mkinitramfs (backend VM)"; }
guest_extras_clear
if [[ $dev == blk ]]; then
  fe_mods=(virtio_pci virtio_blk)
  guest_e2fs_extras
  head -c $((PAT_MB << 20)) /dev/urandom >"$dir/pattern"
  pat_md5=$(md5sum <"$dir/pattern" | cut -d' ' -f1)
  GUEST_EXTRAS+=("$dir/pattern:/extra/pattern")
else
  GUEST_EXTRAS+=("$dir/data.bin:/extra/data.bin")
fi
guest_mkinitramfs "$fe/initrd.cpio.gz" "${fe_mods[@]}" -- "$fe/test-$dev.sh" \
  "$fe/expect:/extra/expect" "${GUEST_EXTRAS[@]}" 2>"$fe/mkinitramfs.log" ||
  { cat "$fe/mkinitramfs.log" >&2; fail "mkinitramfs (frontend VM)"; }
t_initrd=$(ms "$start")

# ---- vhud vvu, then the backend VM on its bus socket -----------------------------------------
# shellcheck disable=SC2206 # VHUD_VVU_ARGS: words
cmd=("$launcher" --listen "$bus" --timeout 60 -- "$vhud" vvu --socket-path "$front"
     --shm-size $((FE_MEM << 20)) ${VHUD_VVU_ARGS:-})
printf '%q ' "${cmd[@]}" >"$dir/vvu.cmd"
"${cmd[@]}" </dev/null >"$dir/vvu.log" 2>&1 &
vvu_pid=$!
guest_log "vhud vvu (pid $vvu_pid): $(cat "$dir/vvu.cmd")"
guest_wait_socket "$bus" 20 "$vvu_pid" || fail "the launcher did not listen on $bus"

rm -f "$be/ctl.in" "$be/ctl.out"
mkfifo "$be/ctl.in" "$be/ctl.out"
exec {ctl}<>"$be/ctl.in" {ctl_out}<>"$be/ctl.out"
t0=$(date +%s%N)
# the launcher connects to $bus and execs the real QEMU with the socket as x-pci-proxy-dev's fd
export VVU_PROXY_SOCK=$bus VVU_QEMU=$QEMU
be_args=()
if [[ $shm == ivshmem ]]; then
  # the frontend VM's RAM lives in this file; the backend VM maps it too (ivshmem-plain BAR 2)
  memf=/dev/shm/vhu-$GUEST_NAME.$$.mem
  rm -f "$memf"; truncate -s $((FE_MEM << 20)) "$memf" || fail "cannot create $memf"
  # shellcheck disable=SC2054
  be_args=(-object "memory-backend-file,id=femem,size=${FE_MEM}M,share=on,mem-path=$memf"
           -device ivshmem-plain,memdev=femem)
fi
QEMU=$launcher GUEST_MEM=$BE_MEM guest_qemu_start "$be" "$be/initrd.cpio.gz" -serial "pipe:$be/ctl" \
  ${be_args[@]+"${be_args[@]}"}
be_pid=$GUEST_QEMU_PID
guest_wait_line "$be" '^BOOTED' 60 || fail "the backend VM did not boot"
t_be_boot=$(ms "$t0")
guest_wait_line "$be" '^(VHUD_UP|RESULT FAIL)' 120 || fail "vhud did not come up in the backend VM"
grep -q '^VHUD_UP' "$be/result.log" || fail "vhud did not come up in the backend VM"
t_be_up=$(ms "$t0")
guest_log "backend VM: booted in $t_be_boot ms, vhud up at $t_be_up ms"

# ---- the frontend VM --------------------------------------------------------------------------
if [[ $dev == blk ]]; then
  disk_md5=$(line_word "$be" DISK_MD5)
  [[ $disk_md5 =~ ^[0-9a-f]{32}$ ]] || fail "the backend VM sent no md5 of its disk"
  guest_log "the backend VM's disk: md5 $disk_md5"
  # shellcheck disable=SC2054 # commas are QEMU option syntax
  fe_args=(-chardev "socket,id=c0,path=$front" -device vhost-user-blk-pci,chardev=c0,num-queues=1)
else
  disk_md5=none
  # shellcheck disable=SC2054
  fe_args=(-chardev "socket,id=n0,path=$front" -netdev vhost-user,id=net0,chardev=n0
           -device virtio-net-pci,netdev=net0,vectors=0)
fi
t0=$(date +%s%N)
GUEST_MEM=$FE_MEM GUEST_MEM_FILE=$memf GUEST_APPEND="vvu_md5=$disk_md5" \
  guest_qemu_start "$fe" "$fe/initrd.cpio.gz" "${fe_args[@]}"
fe_pid=$GUEST_QEMU_PID
rc=0; guest_qemu_wait || rc=$?
fe_pid=
((rc == 0)) || fail "the frontend VM's QEMU exited with status $rc"
t_fe=$(ms "$t0")
guest_check_results "$fe" || fail "the frontend VM's checks failed"
if [[ $dev == blk ]]; then
  read_cs=$(line_word "$fe" READ_CS)
  final_md5=$(line_word "$fe" FINAL_MD5)
  [[ $final_md5 =~ ^[0-9a-f]{32}$ ]] || fail "the frontend VM sent no final md5"
fi

# ---- the end: the backend VM stops vhud and checks its file; vhud vvu; power off -------------
GUEST_QEMU_PID=$be_pid
t0=$(date +%s%N)
echo STOP >&"$ctl"
guest_wait_line "$be" '^END' 60 || fail "the backend VM did not finish"
if [[ $dev == blk ]]; then
  end_md5=$(line_field "$be" END end_md5)
  be_pat=$(line_field "$be" END pat_md5)
  [[ $end_md5 == "$final_md5" ]] ||
    fail "the backend VM's file (md5 $end_md5) is not what the frontend VM read last ($final_md5)"
  [[ $be_pat == "$pat_md5" ]] || fail "the pattern region of the backend VM's file differs"
  guest_log "the backend VM's file: md5 $end_md5 = the frontend VM's final read; pattern region equal"
fi
guest_term "$vvu_pid" "vhud vvu" || fail "vhud vvu did not exit cleanly on SIGTERM"
vvu_pid=
echo POWEROFF >&"$ctl"
rc=0; guest_qemu_wait || rc=$?
be_pid=
((rc == 0)) || fail "the backend VM's QEMU exited with status $rc"
t_end=$(ms "$t0")
exec {ctl}>&- {ctl_out}>&-
guest_check_results "$be" || fail "the backend VM's checks failed"
guest_log "vhud vvu: $(grep -m1 'frontend sessions' "$dir/vvu.log" || echo 'no counters')"
guest_log "window: $shm; phases: initramfs ${t_initrd} ms; backend VM boot ${t_be_boot} ms, vhud up at ${t_be_up} ms;" \
  "frontend VM ${t_fe} ms; shutdown ${t_end} ms; total $(ms "$start") ms"
if [[ $dev == blk ]]; then
  read_ms=$((read_cs * 10))
  guest_log "throughput: ${DISK_MB} MiB O_DIRECT md5 read in ${read_ms} ms:" \
    "$(awk -v mb="$DISK_MB" -v ms="$read_ms" 'BEGIN { printf "%.2f MB/s", mb * 1.048576 * 1000 / (ms ? ms : 1) }')"
fi
guest_pass
