#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Device state across a backend crash (docs/recovery.md): the guest switches its disk's cache to
# write-through (virtio_blk's sysfs cache_type -> config writeback = 0 -> QEMU's SET_CONFIG; the
# block layer's queue/write_cache alone never reaches the device), vhud
# blk is SIGKILLed and restarted while the guest keeps writing, QEMU (reconnect=1) hands the new
# vhud the inflight buffer, and the new vhud must run write-through: its log says it restored the
# mode from the buffer, and the guest still reports write-through. Without the saved state the
# new vhud would silently run the default writeback cache under a guest that asked for
# write-through.
#
#   blk-state.sh VHUD [WORKDIR]
# Exit: 0 pass, 1 fail (logs printed), 77 skip. Env: see lib.sh; RING=split|packed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GUEST_NAME=${GUEST_NAME:-blk-state}
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

(($# >= 1)) || { echo "usage: $0 VHUD [WORKDIR]" >&2; exit 2; }
vhud=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
[[ -x $vhud ]] || { guest_log "vhud binary '$1' not found"; exit 1; }
guest_require
packed=off
[[ ${RING:-split} == packed ]] && packed=on

guest_workdir "${2:-}" blk.sock 'vhud.*.log'
sock=$dir/blk.sock
img=$dir/disk.img
truncate -s 0 "$img"; truncate -s 16M "$img"

vhud_pid=
vhud_n=0
start_vhud() {
  vhud_n=$((vhud_n + 1))
  "$vhud" blk --socket-path "$sock" --file "$img" </dev/null >"$dir/vhud.$vhud_n.log" 2>&1 &
  vhud_pid=$!
  guest_log "vhud #$vhud_n started (pid $vhud_pid)"
  guest_wait_socket "$sock" 20 "$vhud_pid"
}
cleanup() { guest_qemu_kill; guest_kill_wait "$vhud_pid"; vhud_pid=; }
trap 'guest_on_exit cleanup' EXIT
fail() { guest_log "FAIL: $*"; cleanup; guest_dump_globs "$dir" 'vhud.*.log'; exit 1; }

cat >"$dir/test.sh" <<'GUEST'
dev=/dev/vda
q=/sys/block/vda/queue/write_cache
ct=/sys/block/vda/cache_type
i=0
while [ ! -b $dev ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -b $dev ] || { result FAIL disk "no $dev"; exit 0; }
[ "$(cat $q)" = "write back" ] || { result FAIL initial "write_cache is '$(cat $q)', want write back"; exit 0; }
[ -e $ct ] || { result FAIL cache_type "no $ct (CONFIG_WCE not negotiated?)"; exit 0; }
echo "write through" >$ct
[ "$(cat $q)" = "write through" ] || { result FAIL set "write_cache is '$(cat $q)'"; exit 0; }
signal WCE-SET
# Keep writing across the host's kill and restart (~6 s), then look again.
dd if=/dev/urandom of=/tmp/src bs=64k count=16 2>/dev/null
start=$(date +%s)
n=0
while [ $(($(date +%s) - start)) -lt 6 ]; do
  n=$((n + 1))
  timeout 120 dd if=/tmp/src of=$dev bs=64k seek=$((n % 8 * 16)) oflag=direct conv=notrunc,fsync 2>/tmp/dd.err ||
    { result FAIL write-$n "$(tr '\n' ' ' </tmp/dd.err)"; exit 0; }
done
timeout 120 sync
if dmesg | grep -qi 'I/O error'; then
  result FAIL dmesg "$(dmesg | grep -i 'I/O error' | head -3 | tr '\n' ' ')"
elif [ "$(cat $q)" != "write through" ] || [ "$(cat $ct)" != "write through" ]; then
  result FAIL after "write_cache '$(cat $q)', cache_type '$(cat $ct)' after the backend restart"
else
  result PASS wce "write-through across the backend restart, $n synced writes, no I/O error"
fi
GUEST

guest_mkinitramfs "$dir/initrd.cpio.gz" virtio_pci virtio_blk -- "$dir/test.sh" \
  2>"$dir/mkinitramfs.log" || { cat "$dir/mkinitramfs.log" >&2; exit 1; }

start_vhud || fail "vhud did not start"
guest_qemu_start "$dir" "$dir/initrd.cpio.gz" \
  -chardev "socket,id=c0,path=$sock,reconnect=1" \
  -device "vhost-user-blk-pci,chardev=c0,num-queues=1,packed=$packed"

guest_wait_line "$dir" '^WCE-SET' 240 || fail "guest never set its write cache"
sleep 0.5
grep -q 'guest set the write cache to write through' "$dir/vhud.1.log" ||
  fail "vhud #1 never heard of the guest's write-through"
guest_log "guest is write-through: SIGKILL vhud #1 (pid $vhud_pid)"
kill -KILL "$vhud_pid"; wait "$vhud_pid" 2>/dev/null || true
sleep 0.3
start_vhud || fail "vhud #2 did not start"

rc=0; guest_qemu_wait || rc=$?
((rc == 0)) || fail "QEMU exited with status $rc"
guest_check_results "$dir" || fail "guest reported failures"
grep -q 'frontend connected' "$dir/vhud.2.log" || fail "QEMU never reconnected to vhud #2"
grep -q 'write cache write through (restored)' "$dir/vhud.2.log" ||
  fail "vhud #2 runs its default write cache, not the guest's write-through"
guest_log "vhud #2: $(grep -h 'restored' "$dir/vhud.2.log" | tr '\n' ' ')"
kill -TERM "$vhud_pid"; vrc=0; wait "$vhud_pid" || vrc=$?; vhud_pid=
((vrc == 0)) || fail "vhud #$vhud_n exited with status $vrc after SIGTERM"
guest_pass
