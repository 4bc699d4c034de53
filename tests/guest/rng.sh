#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# virtio-rng through vhud in a real Linux guest (QEMU 7.2, TCG).
#
#   rng.sh [--reconnect] VHUD [WORKDIR]
#
# Plain: vhud listens on WORKDIR/rng.sock, QEMU connects (vhost-user-rng-pci), the guest checks
#   that virtio_rng is the current hwrng and that /dev/hwrng yields 1024 non-zero bytes twice,
#   with two different reads.
# --reconnect: QEMU's chardev has reconnect=1. QEMU 7.2's vhost-user-rng cannot start on a
#   reconnect=N chardev (realize does not wait for the async connect and aborts), so the device
#   is hot-plugged over QMP once the chardev is connected. The guest reads, says READY1 on the
#   result port and blocks on a control port (ttyS2, a FIFO pair on the host); the host SIGKILLs
#   vhud, waits until QEMU sees the hang-up, starts a new vhud on the same path (the stale socket
#   file is left in place: vhud must replace it), waits until QEMU has reconnected and writes GO;
#   the guest must read entropy again.
# Exit: 0 pass, 1 fail (all logs printed), 77 skip (loud banner on stderr).
# Env: see lib.sh; VHUD_ARGS adds arguments to `vhud rng`; VHU_TRANSPORT=vvu puts a
# virtio-vhost-user device between QEMU and vhud (lib.sh guest_endpoint): --reconnect then
# restarts the backend behind a VVU device that stays, and QEMU must reconnect through it.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

reconnect=0
if [[ ${1:-} == --reconnect ]]; then reconnect=1; shift; fi
((reconnect)) && GUEST_NAME=${GUEST_NAME:-rng-reconnect}
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

(($# >= 1)) || { echo "usage: $0 [--reconnect] VHUD [WORKDIR]" >&2; exit 2; }
guest_vhud "$1"
guest_require

guest_workdir "${2:-}" rng.sock ctl.in ctl.out qmp.in qmp.out 'vhud.*.log'
sock=$dir/rng.sock
# unix socket paths are limited to 107 bytes
((${#sock} < 100)) || { guest_log "work dir path too long for a unix socket: $sock"; exit 1; }

vhud_pid=
vhud_n=0
vvu_pid=
start_vhud() {
  vhud_n=$((vhud_n + 1))
  # the transport once: with VHU_TRANSPORT=vvu the VVU device (and QEMU's socket) outlives
  # the backends that restart behind it
  if ((vhud_n == 1)); then
    guest_endpoint "$sock" "$dir/vhud.1.log" || return 1
    vvu_pid=$GUEST_VVU_PID
  fi
  # shellcheck disable=SC2086
  "$vhud" rng "${GUEST_EP[@]}" ${VHUD_ARGS:-} </dev/null >"$dir/vhud.$vhud_n.log" 2>&1 &
  vhud_pid=$!
  guest_log "vhud #$vhud_n started (pid $vhud_pid): $vhud rng ${GUEST_EP[*]} ${VHUD_ARGS:-}"
  guest_wait_socket "$sock" 20 "$vhud_pid"
}
cleanup() {
  guest_qemu_kill
  [[ -n $vhud_pid ]] && { kill -KILL "$vhud_pid" 2>/dev/null || true; wait "$vhud_pid" 2>/dev/null || true; }
  guest_vvu_kill
  return 0
}
trap 'guest_on_exit cleanup' EXIT
fail() {
  guest_log "FAIL: $*"
  cleanup
  local logs=() f
  for f in "$dir"/vhud.*.log "$dir"/vhud.1.log.vvu; do [[ -e $f ]] && logs+=("${f##*/}"); done
  guest_dump "$dir" ${logs[@]+"${logs[@]}"}
  exit 1
}

# ---- the guest side -----------------------------------------------------------------------
cat >"$dir/test.sh" <<'GUEST'
# busybox sh inside the guest; result/signal come from /init.
sysrng=/sys/class/misc/hw_random
if [ -e /extra/reconnect ]; then
  # ttyS2 is the host->guest control port; one fd kept open so no byte is lost
  stty -F /dev/ttyS2 raw -echo 2>/dev/null
  exec 4</dev/ttyS2
  signal HOTPLUG-WAIT
  ctl=
  read -r -t 180 ctl <&4 || true
  [ "$ctl" = ADDED ] || result FAIL hotplug-sync "no ADDED from the host within 180 s (got '$ctl')"
  echo 1 >/sys/bus/pci/rescan   # ACPI hotplug normally finds it; rescan makes sure
fi
# the device may register a moment after the module loads
i=0
while [ $i -lt 300 ]; do
  case "$(cat $sysrng/rng_current 2>/dev/null)" in virtio_rng*) break ;; esac
  sleep 0.1; i=$((i + 1))
done
cur=$(cat $sysrng/rng_current 2>/dev/null)
case "$cur" in
  virtio_rng*) result PASS rng_current "$cur" ;;
  *) result FAIL rng_current "rng_current='$cur' available='$(cat $sysrng/rng_available 2>/dev/null)'" ;;
esac

# read N: 1024 bytes from /dev/hwrng into /tmp/rN, bounded in time; checks size and non-zero
read_rng() {
  n=$1
  if ! timeout "${2:-60}" dd if=/dev/hwrng of=/tmp/r$n bs=64 count=16 iflag=fullblock 2>/tmp/dd$n; then
    result FAIL read$n "dd failed or timed out: $(tr '\n' ' ' </tmp/dd$n)"
    return 1
  fi
  size=$(wc -c </tmp/r$n)
  if [ "$size" != 1024 ]; then result FAIL read$n "got $size bytes, want 1024"; return 1; fi
  nz=$(tr -d '\000' </tmp/r$n | wc -c)
  if [ "$nz" -eq 0 ]; then result FAIL read$n "1024 zero bytes"; return 1; fi
  result PASS read$n "1024 bytes, $nz non-zero, md5 $(md5sum </tmp/r$n | cut -d' ' -f1)"
}
differ() {
  if cmp -s /tmp/r$1 /tmp/r$2; then result FAIL differ$1$2 "reads $1 and $2 are identical"
  else result PASS differ$1$2; fi
}

read_rng 1 && read_rng 2 && differ 1 2

if [ -e /extra/reconnect ]; then
  signal READY1
  go=
  read -r -t 180 go <&4 || true
  if [ "$go" != GO ]; then
    result FAIL reconnect-sync "no GO from the host within 180 s (got '$go')"
  else
    # the new backend serves the ring once QEMU has reconnected (reconnect=1: within ~1 s)
    read_rng 3 120 && read_rng 4 && differ 2 3 && differ 3 4
    result INFO rng_current-after "$(cat $sysrng/rng_current 2>/dev/null)"
  fi
fi
GUEST

extra=()
qemu_extra=()
chardev="socket,id=c0,path=$sock"
if ((reconnect)); then
  echo 1 >"$dir/reconnect.flag"
  extra=("$dir/reconnect.flag:/extra/reconnect")
  chardev+=",reconnect=1"
  mkfifo "$dir/ctl.in" "$dir/ctl.out"
  # QEMU opens the FIFO pair read-write, so neither side blocks on open.
  guest_qmp_args "$dir"
  qemu_extra=(-chardev "pipe,id=ctl,path=$dir/ctl" -serial chardev:ctl "${GUEST_QMP_ARGS[@]}")
else
  qemu_extra=(-device "vhost-user-rng-pci,chardev=c0${GUEST_RNG_DEV_OPTS:-}")
fi
ctl_send() {
  # shellcheck disable=SC2016 # $1 expands in the child shell
  timeout 10 bash -c 'echo "$2" >"$1"' _ "$dir/ctl.in" "$1" || fail "could not write $1 to the control port"
}

guest_mkinitramfs "$dir/initrd.cpio.gz" virtio_pci virtio-rng -- "$dir/test.sh" \
  ${extra[@]+"${extra[@]}"} 2>"$dir/mkinitramfs.log" || { cat "$dir/mkinitramfs.log" >&2; exit 1; }

start_vhud || fail "vhud did not start listening on $sock"
guest_qemu_start "$dir" "$dir/initrd.cpio.gz" -chardev "$chardev" \
  ${qemu_extra[@]+"${qemu_extra[@]}"}

if ((reconnect)); then
  # QEMU 7.2's vhost-user-rng realize does not wait for a reconnect=N chardev to connect
  # (it aborts: "Failed to set msg fds" + error_setv assertion), so the device is hot-plugged
  # once the chardev is up. After that, CHR_EVENT_CLOSED/OPENED drive vu_rng_disconnect/connect.
  guest_wait_line "$dir" '^HOTPLUG-WAIT' 240 || fail "guest never reached HOTPLUG-WAIT"
  guest_qmp_connect "$dir" || fail "QMP did not answer"
  guest_qmp_wait_chardev c0 30 connected || fail "QEMU did not connect to vhud #1"
  guest_qmp "{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"vhost-user-rng-pci\",\"chardev\":\"c0\",\"id\":\"rng0\"}}" 60 >/dev/null ||
    fail "device_add vhost-user-rng-pci failed"
  ctl_send ADDED
  guest_log "device hot-plugged, ADDED sent"

  guest_wait_line "$dir" '^READY1' 240 || fail "guest never reached READY1"
  old=$vhud_pid
  kill -0 "$old" 2>/dev/null || fail "vhud #1 died before the planned kill"
  guest_log "READY1 seen: SIGKILL vhud #1 (pid $old)"
  kill -KILL "$old"
  wait "$old" 2>/dev/null || true
  vhud_pid=
  guest_qmp_wait_chardev c0 30 disconnected || fail "QEMU did not notice that vhud #1 died"
  # The socket file of the SIGKILLed server is still there: vhud #2 must replace it.
  start_vhud || fail "vhud #2 did not start on $sock"
  guest_qmp_wait_chardev c0 30 connected ||
    fail "QEMU did not reconnect to vhud #2 (does vhud replace a stale socket file?)"
  kill -0 "$vhud_pid" 2>/dev/null || fail "vhud #2 exited (does vhud replace a stale socket file?)"
  ctl_send GO
  guest_log "QEMU reconnected to vhud #2, GO sent"
fi

rc=0; guest_qemu_wait || rc=$?
((rc == 0)) || fail "QEMU exited with status $rc"
guest_check_results "$dir" || fail "guest reported failures"
if ((reconnect)); then
  grep -q '^RESULT PASS read3' "$dir/result.log" || fail "no successful read after the restart"
fi

# vhud (and the VVU device) must have survived the session and must exit cleanly on SIGTERM.
guest_term "$vhud_pid" "vhud #$vhud_n" || fail "vhud #$vhud_n did not end cleanly"
vhud_pid=
if [[ -n $vvu_pid ]]; then
  guest_term "$vvu_pid" "vhud vvu" || fail "vhud vvu did not end cleanly"
  GUEST_VVU_ALL=()
fi
guest_pass
