#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Backend crash under guest I/O: vhud blk is SIGKILLed while the guest writes and reads with
# O_DIRECT, and restarted on the same socket; QEMU (chardev reconnect=1) reconnects, hands the
# new vhud the inflight buffer (SET_INFLIGHT_FD) and the new vhud resubmits what the old one had
# in flight. The guest must see no I/O error and every pass must read back what it wrote.
#
#   blk-reconnect.sh VHUD [WORKDIR]
# Exit: 0 pass, 1 fail (logs printed), 77 skip (loud banner). Env: see lib.sh; VHUD_ARGS;
#   KILL=vhud|nbd   what crashes (default vhud). nbd: vhud serves the disk from qemu-nbd
#                   (`blk --nbd`), and the NBD server is SIGKILLed three times under the guest's
#                   I/O and restarted 1 s later: vhud reconnects and retries what was in flight;
#                   the guest must see no I/O error and its data must verify.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GUEST_NAME=${GUEST_NAME:-blk-reconnect}
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

(($# >= 1)) || { echo "usage: $0 VHUD [WORKDIR]" >&2; exit 2; }
vhud=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
[[ -x $vhud ]] || { guest_log "vhud binary '$1' not found"; exit 1; }
"$vhud" blk --help >/dev/null 2>&1 || { guest_log "this vhud has no blk device"; exit 1; }
guest_require
kill_what=${KILL:-vhud}
case $kill_what in
  vhud) ;;
  nbd) command -v qemu-nbd >/dev/null || guest_skip "qemu-nbd not found (package qemu-utils)" ;;
  *) guest_log "KILL must be vhud or nbd"; exit 2 ;;
esac

guest_workdir "${2:-}" blk.sock 'vhud.*.log'
sock=$dir/blk.sock
img=$dir/disk.img
truncate -s 0 "$img"; truncate -s 64M "$img"

vhud_pid=
vhud_n=0
nbd_pid=
nbd_n=0
start_nbd() {
  nbd_n=$((nbd_n + 1))
  rm -f "$sock.nbd"
  # --cache=none: the server's writes go to the disk file directly (like vhud's --direct below)
  qemu-nbd -f raw -t --cache=none -k "$sock.nbd" "$img" </dev/null >"$dir/nbd.$nbd_n.log" 2>&1 &
  nbd_pid=$!
  guest_log "qemu-nbd #$nbd_n started (pid $nbd_pid)"
  guest_wait_socket "$sock.nbd" 20 "$nbd_pid"
}
start_vhud() {
  vhud_n=$((vhud_n + 1))
  local store=(--file "$img" --direct)
  [[ $kill_what == nbd ]] && store=(--nbd "nbd+unix:///?socket=$sock.nbd" --nbd-timeout 30)
  # shellcheck disable=SC2086
  # --direct: without the page cache each request stays in flight long enough for a crash to
  # catch some (seen: 2 of 3 restarts resubmitted a request); with it they finish in microseconds.
  "$vhud" blk --socket-path "$sock" "${store[@]}" ${VHUD_ARGS:-} </dev/null \
    >"$dir/vhud.$vhud_n.log" 2>&1 &
  vhud_pid=$!
  guest_log "vhud #$vhud_n started (pid $vhud_pid)"
  guest_wait_socket "$sock" 20 "$vhud_pid"
}
cleanup() { guest_qemu_kill; guest_kill_wait "$vhud_pid"; guest_kill_wait "$nbd_pid"; }
trap 'guest_on_exit cleanup' EXIT
fail() { guest_log "FAIL: $*"; cleanup; guest_dump_globs "$dir" 'vhud.*.log' 'nbd.*.log'; exit 1; }

cat >"$dir/test.sh" <<'GUEST'
# busybox sh in the guest. 8 MiB of random data, written and read back with O_DIRECT in passes
# of different block sizes for ~12 s; the host kills the backend in the middle.
dev=/dev/vda
i=0
while [ ! -b $dev ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -b $dev ] || { result FAIL disk "no $dev"; exit 0; }
dd if=/dev/urandom of=/tmp/src bs=1M count=8 2>/dev/null
want=$(md5sum </tmp/src | cut -d' ' -f1)
# A reader in the background keeps requests in flight all the time (on the last 8 MiB).
( while [ ! -e /tmp/stop ]; do
    timeout 120 dd if=$dev of=/dev/null bs=4096 skip=14336 count=2048 iflag=direct 2>>/tmp/bg.err ||
      echo "dd exit $?" >>/tmp/bg.fail
  done ) &
bg=$!
signal IO-START
start=$(date +%s)
pass=0
errors=0
while [ $(($(date +%s) - start)) -lt 12 ]; do
  pass=$((pass + 1))
  case $((pass % 3)) in 0) bs=4096 ;; 1) bs=65536 ;; *) bs=1048576 ;; esac
  at=$(((pass % 6) * 8))
  if ! timeout 120 dd if=/tmp/src of=$dev bs=$bs seek=$((at * 1048576 / bs)) oflag=direct conv=notrunc 2>/tmp/dd.err; then
    result FAIL write-$pass "bs=$bs at ${at}M: $(tr '\n' ' ' </tmp/dd.err)"; errors=$((errors + 1)); break
  fi
  if ! timeout 120 dd if=$dev of=/tmp/back bs=$bs skip=$((at * 1048576 / bs)) count=$((8388608 / bs)) iflag=direct 2>/tmp/dd.err; then
    result FAIL read-$pass "bs=$bs at ${at}M: $(tr '\n' ' ' </tmp/dd.err)"; errors=$((errors + 1)); break
  fi
  got=$(md5sum </tmp/back | cut -d' ' -f1)
  if [ "$got" != "$want" ]; then
    result FAIL verify-$pass "bs=$bs at ${at}M: md5 $got, want $want"; errors=$((errors + 1)); break
  fi
done
touch /tmp/stop
wait $bg
if [ -s /tmp/bg.fail ]; then
  result FAIL background-reader "$(head -3 /tmp/bg.fail | tr '\n' ' ') $(head -2 /tmp/bg.err | tr '\n' ' ')"
  errors=$((errors + 1))
fi
if dmesg | grep -qi 'I/O error'; then
  result FAIL dmesg "$(dmesg | grep -i 'I/O error' | head -3 | tr '\n' ' ')"
elif [ $errors -eq 0 ]; then
  result PASS io "$pass write+read passes of 8 MiB with O_DIRECT, all verified, no I/O error"
fi
GUEST

guest_mkinitramfs "$dir/initrd.cpio.gz" virtio_pci virtio_blk -- "$dir/test.sh" \
  2>"$dir/mkinitramfs.log" || { cat "$dir/mkinitramfs.log" >&2; exit 1; }

if [[ $kill_what == nbd ]]; then start_nbd || fail "qemu-nbd did not start"; fi
start_vhud || fail "vhud did not start"
guest_qemu_start "$dir" "$dir/initrd.cpio.gz" \
  -chardev "socket,id=c0,path=$sock,reconnect=1" \
  -device "vhost-user-blk-pci,chardev=c0,num-queues=1"

guest_wait_line "$dir" '^IO-START' 240 || fail "guest never started its I/O"
# Three crashes, 2 s apart, while the guest's I/O loop runs: of vhud (back after 0.3 s) or of the
# NBD server (back after 1 s).
for k in 1 2 3; do
  sleep 2
  if [[ $kill_what == nbd ]]; then
    victim=qemu-nbd pid=$nbd_pid n=$nbd_n nbd_pid= pause=1
  else
    victim=vhud pid=$vhud_pid n=$vhud_n vhud_pid= pause=0.3
  fi
  kill -0 "$pid" 2>/dev/null || fail "$victim #$n died before the planned kill"
  guest_log "guest I/O running: SIGKILL $victim #$n (pid $pid)"
  kill -KILL "$pid"; wait "$pid" 2>/dev/null || true
  sleep "$pause"
  if [[ $kill_what == nbd ]]; then start_nbd; else start_vhud; fi || fail "$victim #$n did not start"
done

rc=0; guest_qemu_wait || rc=$?
((rc == 0)) || fail "QEMU exited with status $rc"
guest_check_results "$dir" || fail "guest reported failures"
if [[ $kill_what == nbd ]]; then
  n=$(grep -c 'reconnected to' "$dir/vhud.1.log" || true)
  ((n >= 3)) || fail "vhud reconnected $n times to the NBD server, want 3"
  guest_log "vhud reconnected $n times; losses: $(grep -o 'lost.*' "$dir/vhud.1.log" | tr '\n' ' ')"
  kill -TERM "$nbd_pid"; wait "$nbd_pid" 2>/dev/null || true; nbd_pid=
else
  for ((k = 2; k <= vhud_n; k++)); do
    grep -q 'frontend connected' "$dir/vhud.$k.log" || fail "QEMU never reconnected to vhud #$k"
  done
  # Whether a crash caught a request in flight depends on timing; say what happened.
  grep -h 'resubmitting' "$dir"/vhud.*.log >&2 || guest_log "(no restart found a request in flight)"
fi
kill -TERM "$vhud_pid"; vrc=0; wait "$vhud_pid" || vrc=$?; vhud_pid=
((vrc == 0)) || fail "vhud #$vhud_n exited with status $vrc after SIGTERM"
guest_pass
