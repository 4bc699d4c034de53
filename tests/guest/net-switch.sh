#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Two real guests on one `vhud switch` (QEMU 7.2, TCG): VM-to-VM through vhu's L2 switch.
#
#   net-switch.sh VHUD [WORKDIR]
#
# `vhud switch --port A.sock --port B.sock`; guest A (10.78.0.1, split rings) and guest B
# (10.78.0.2, packed rings: one copy goes between the two ring layouts) each run virtio-net-pci
# on one port. Each guest listens on TCP 5001, pings the other, then sends it 1 MiB of random
# data (busybox nc); the receiver checks length and md5 against its own copy of the file. On
# the host, vhud's counters (printed at SIGTERM) must show learnt addresses and unicast traffic.
# No root, no tap, no namespace: nothing leaves the process.
# Exit: 0 pass, 1 fail (logs printed), 77 skip (loud banner on stderr).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

(($# >= 1)) || { echo "usage: $0 VHUD [WORKDIR]" >&2; exit 2; }
guest_vhud "$1"
guest_require
"$vhud" switch --help >/dev/null 2>&1 || guest_skip "'$vhud switch' does not exist"

guest_workdir "${2:-}" a b '*.sock' '*.log'
mkdir -p "$dir/a" "$dir/b"
((${#dir} < 90)) || { guest_log "work dir path too long for a unix socket: $dir"; exit 1; }

be_pid='' pid_a='' pid_b=''
cleanup() {
  local p
  for p in $pid_a $pid_b; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pid_a='' pid_b=''
  if [[ -n $be_pid ]]; then kill -KILL "$be_pid" 2>/dev/null || true; wait "$be_pid" 2>/dev/null || true; be_pid=; fi
  return 0
}
trap 'guest_on_exit cleanup' EXIT
fail() {
  guest_log "FAIL: $*"
  cleanup
  local g
  for g in a b; do echo "===== guest $g =====" >&2; guest_dump "$dir/$g"; done
  echo "----- vhud log -----" >&2; tail -n 40 "$dir/switch.log" >&2 || true
  exit 1
}

# ---- the guest side (both guests; /extra/role says which) ----------------------------------
cat >"$dir/test.sh" <<'GUEST'
role=$(cat /extra/role)
if [ "$role" = a ]; then me=10.78.0.1 peer=10.78.0.2; else me=10.78.0.2 peer=10.78.0.1; fi
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -e /sys/class/net/eth0 ] || { result FAIL eth0 "no eth0"; exit 0; }
ip link set eth0 up && ip addr add $me/24 dev eth0 || { result FAIL ifup "ip failed"; exit 0; }
result PASS eth0 "$role: mac $(cat /sys/class/net/eth0/address)"
. /extra/net-guest.sh
tcp_listen 5001
# the peer boots at its own pace: up to 4 minutes for its first answer
if ping -c 3 -w 240 $peer >/tmp/ping 2>&1; then
  result PASS ping-peer "$role -> $peer: $(grep -E 'transmitted' /tmp/ping)"
else
  result FAIL ping-peer "$role -> $peer: $(tr '\n' ' ' </tmp/ping)"
fi
i=0 sent=0
while [ $i -lt 60 ]; do
  if timeout 120 nc $peer 5001 </extra/data.bin; then sent=1; break; fi
  i=$((i + 1)); sleep 1
done
if [ $sent = 1 ]; then result PASS tcp-send "$role -> $peer: $size bytes"
else result FAIL tcp-send "$role -> $peer: nc failed 60 times"; fi
tcp_recv_check "$role <- $peer: "
# stay up until the peer has our data too (its receive ends when our nc is done; a few seconds)
sleep 3
GUEST

head -c 1048576 /dev/urandom >"$dir/data.bin"
for g in a b; do
  echo "$g" >"$dir/$g/role"
  guest_mkinitramfs "$dir/$g/initrd.cpio.gz" virtio_pci virtio_net -- "$dir/test.sh" \
    "$dir/$g/role" "$dir/data.bin" "$here/net-guest.sh" 2>"$dir/$g/mkinitramfs.log" ||
    { cat "$dir/$g/mkinitramfs.log" >&2; exit 1; }
done

echo "$vhud switch --port $dir/a.sock --port $dir/b.sock ${VHUD_SWITCH_ARGS:-}" >"$dir/switch.log.cmd"
# shellcheck disable=SC2086
"$vhud" switch --port "$dir/a.sock" --port "$dir/b.sock" ${VHUD_SWITCH_ARGS:-} \
  </dev/null >"$dir/switch.log" 2>&1 &
be_pid=$!
guest_wait_socket "$dir/a.sock" 20 "$be_pid" || fail "vhud switch did not listen on a.sock"
guest_wait_socket "$dir/b.sock" 20 "$be_pid" || fail "vhud switch did not listen on b.sock"
guest_log "vhud switch (pid $be_pid): $(cat "$dir/switch.log.cmd")"

# shellcheck disable=SC2054 # commas are QEMU option syntax
guest_qemu_start "$dir/a" "$dir/a/initrd.cpio.gz" -chardev "socket,id=n0,path=$dir/a.sock" \
  -netdev vhost-user,id=net0,chardev=n0 \
  -device "virtio-net-pci,netdev=net0,vectors=0,mac=52:54:00:78:00:01"
pid_a=$GUEST_QEMU_PID
# shellcheck disable=SC2054
guest_qemu_start "$dir/b" "$dir/b/initrd.cpio.gz" -chardev "socket,id=n0,path=$dir/b.sock" \
  -netdev vhost-user,id=net0,chardev=n0 \
  -device "virtio-net-pci,netdev=net0,vectors=0,mac=52:54:00:78:00:02,packed=on"
pid_b=$GUEST_QEMU_PID

rc_a=0 rc_b=0
GUEST_QEMU_PID=$pid_a; guest_qemu_wait || rc_a=$?; pid_a=
GUEST_QEMU_PID=$pid_b; guest_qemu_wait || rc_b=$?; pid_b=
((rc_a == 0)) || fail "QEMU of guest A exited with status $rc_a"
((rc_b == 0)) || fail "QEMU of guest B exited with status $rc_b"
ok=1
for g in a b; do
  guest_log "guest $g:"
  guest_check_results "$dir/$g" || ok=0
done
((ok)) || fail "a guest reported failures"

kill -0 "$be_pid" 2>/dev/null || fail "vhud switch died during the test"
kill -TERM "$be_pid"
for ((i = 0; i < 100; i++)); do kill -0 "$be_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$be_pid" 2>/dev/null && fail "vhud switch did not exit within 10 s of SIGTERM"
vrc=0; wait "$be_pid" || vrc=$?
be_pid=
((vrc == 0)) || fail "vhud switch exited with status $vrc after SIGTERM"
line=$(grep -E 'switch: unicast=' "$dir/switch.log" | tail -n 1 || true)
guest_log "vhud: ${line#*info: }"
[[ $line =~ unicast=([0-9]+).*learned=([0-9]+) ]] || fail "vhud printed no switch counters"
((BASH_REMATCH[1] > 1000 && BASH_REMATCH[2] >= 2)) ||
  fail "switch counters too low for 2 MiB of TCP (unicast > 1000 and learned >= 2 expected)"
guest_log "RESULT PASS switch-counters ${line#*switch: }"
cleanup
guest_pass
