#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Live resize of a virtio-blk disk in a real Linux guest (QEMU 7.2, TCG), through vhud's
# control socket (issue 14, item 4).
#
#   blk-resize.sh VHUD VHUCTL [WORKDIR]
#
# An empty `vhud --control` gets a blk device with `vhuctl --control ... device-add` (a 16 MiB
# file). The guest reads /sys/block/vda/size and says READY; the host runs `vhuctl --control
# ... blk-resize d0 32M`, which grows the file and sends VHOST_USER_BACKEND_CONFIG_CHANGE_MSG
# on the backend channel; QEMU reads the config again (GET_CONFIG) and raises a config
# interrupt; the guest must see 65536 sectors within 60 s and read and write the new last
# sector; the host then finds the guest's bytes at the end of the file.
# Exit: 0 pass, 1 fail (all logs printed), 77 skip (loud banner on stderr).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

(($# >= 2)) || { echo "usage: $0 VHUD VHUCTL [WORKDIR]" >&2; exit 2; }
guest_vhud "$1"
vhuctl=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
[[ -x $vhuctl ]] || { guest_log "vhuctl binary '$2' not found"; exit 1; }
guest_require
guest_workdir "${3:-}"
sock=$dir/blk.sock ctl=$dir/ctl.sock
((${#sock} < 100)) || { guest_log "work dir path too long for a unix socket: $sock"; exit 1; }
rm -f "$sock" "$ctl" "$dir/disk.img"

vhud_pid=
cleanup() {
  guest_qemu_kill
  [[ -n $vhud_pid ]] && { kill -KILL "$vhud_pid" 2>/dev/null || true; wait "$vhud_pid" 2>/dev/null || true; }
  return 0
}
trap 'guest_on_exit cleanup' EXIT
fail() {
  guest_log "FAIL: $*"
  cleanup
  guest_dump "$dir" vhud.log
  exit 1
}

cat >"$dir/test.sh" <<'GUEST'
# busybox sh inside the guest; result/signal come from /init.
i=0
while [ ! -e /sys/block/vda/size ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
s0=$(cat /sys/block/vda/size 2>/dev/null)
if [ "$s0" = 32768 ]; then result PASS size-before "$s0 sectors"
else result FAIL size-before "vda has '$s0' sectors, want 32768"; fi
signal READY
i=0
s1=$s0
while [ "$s1" = "$s0" ] && [ $i -lt 600 ]; do sleep 0.1; s1=$(cat /sys/block/vda/size); i=$((i + 1)); done
if [ "$s1" = 65536 ]; then
  result PASS size-after "$s1 sectors after $((i / 10)).$((i % 10)) s"
  # the new end of the disk is usable: write the last sector, read it back uncached
  printf 'resized-disk-end' | dd of=/dev/vda bs=512 seek=65535 conv=sync,fsync 2>/dev/null
  got=$(dd if=/dev/vda bs=512 skip=65535 count=1 iflag=direct 2>/dev/null | tr -d '\000')
  if [ "$got" = resized-disk-end ]; then result PASS last-sector "written and read back"
  else result FAIL last-sector "read back '$got'"; fi
else
  result FAIL size-after "vda still has '$s1' sectors (want 65536)"
fi
GUEST

guest_mkinitramfs "$dir/initrd.cpio.gz" virtio_pci virtio_blk -- "$dir/test.sh" \
  2>"$dir/mkinitramfs.log" || { cat "$dir/mkinitramfs.log" >&2; exit 1; }

truncate -s 16M "$dir/disk.img"
"$vhud" --control "$ctl" </dev/null >"$dir/vhud.log" 2>&1 &
vhud_pid=$!
guest_wait_socket "$ctl" 20 "$vhud_pid" || fail "vhud did not listen on $ctl"
"$vhuctl" --control "$ctl" device-add blk d0 --socket-path "$sock" --file "$dir/disk.img" \
  >>"$dir/vhud.log" 2>&1 || fail "device-add"
guest_wait_socket "$sock" 20 "$vhud_pid" || fail "no blk socket"

guest_qemu_start "$dir" "$dir/initrd.cpio.gz" -chardev "socket,id=c0,path=$sock" \
  -device vhost-user-blk-pci,chardev=c0,num-queues=1
guest_wait_line "$dir" '^READY' 240 || fail "guest never reached READY"
"$vhuctl" --control "$ctl" blk-resize d0 32M >"$dir/resize.out" 2>&1 ||
  fail "blk-resize: $(cat "$dir/resize.out")"
guest_log "$(cat "$dir/resize.out")"
grep -q "was told" "$dir/resize.out" || fail "the driver was not told: $(cat "$dir/resize.out")"
"$vhuctl" --control "$ctl" list >>"$dir/vhud.log" 2>&1 || true

rc=0; guest_qemu_wait || rc=$?
((rc == 0)) || fail "QEMU exited with status $rc"
guest_check_results "$dir" || fail "guest reported failures"
[[ $(stat -c %s "$dir/disk.img") == 33554432 ]] || fail "disk.img is not 32 MiB"
[[ $(dd if="$dir/disk.img" bs=512 skip=65535 count=1 2>/dev/null | tr -d '\000') == resized-disk-end ]] ||
  fail "the guest's last sector is not in the file"
guest_term "$vhud_pid" "vhud" || fail "vhud did not end cleanly"
vhud_pid=
guest_pass
