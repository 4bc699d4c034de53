#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Live migration of a guest whose NIC is served by `vhud net --tap` (docs/recovery.md,
# "Migration"): one network namespace with a bridge (10.77.0.1/24) and two taps, one per side;
# side a and side b each run their own vhud net on their tap and their own QEMU; the guest
# migrates A -> B, then B -> A (ROUNDS), over a unix socket. Each round the host streams 4 MiB
# of random data to the guest over TCP (port 5000+round), held back by a gate the host opens
# step by step, so that the stream runs before the migration, while it is held and after it:
#  - the migration is held in its iterative phase after QEMU's first pass (migrate-lib.sh,
#    MIG_HOLD_PASS=2, as migrate.sh; the guest boots with init_on_alloc=0);
#  - while held, the guest reads the first half of the stream and stops reading (SIGSTOP on its
#    nc); the host sends on, and what the guest receives now (the host requires >= 64 KiB,
#    acknowledged, counted with ss) stays in the socket's receive queue, in the pages vhud
#    wrote: QEMU has copied those pages once already and copies them again only if vhud logs
#    its writes;
#  - the host lets the migration complete, then connects to the guest's port 6000+round; the
#    guest reads on, now on the destination, and checks the md5 of the whole stream.
# A vhud that logs nothing (VHU_TEST_DIRTY_LOG_OFF=1) fails: the guest gets 4 MiB with the wrong
# md5. The guest does not negotiate GUEST_ANNOUNCE, so QEMU sends SEND_RARP to the destination's
# vhud, which must put a RARP frame with the guest's MAC on its tap, each round (seen by a
# raw-socket reader, tests/guest/rarp-sniff.py): that frame moves the guest's MAC in the bridge.
#
#   migrate-net.sh VHUD [WORKDIR]
# Exit: 0 pass, 1 fail (logs printed), 77 skip. Needs root (ip netns, taps), ss and python3.
# Env: see lib.sh; RING=split|packed, ROUNDS (default 2: there and back), GUEST_NET_DEV_OPTS
# (more virtio-net-pci options, e.g. ,mrg_rxbuf=off), VHU_TEST_DIRTY_LOG_OFF=1 (a backend that
# logs nothing: the test must then fail), MIG_HOLD_PASS (2, or 1: see migrate-lib.sh),
# MIG_NET_BACKEND=qemu-tap (the control: QEMU's own tap backend, run inside the namespace, no
# vhud; see docs/recovery.md).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GUEST_NAME=${GUEST_NAME:-migrate-net}
MIG_HOLD_PASS=${MIG_HOLD_PASS:-2}
# shellcheck source-path=SCRIPTDIR source=migrate-lib.sh
. "$here/migrate-lib.sh"
mig_setup "$@"
((EUID == 0)) || guest_skip "needs root for 'ip netns' and the taps"
command -v ip >/dev/null 2>&1 || guest_skip "ip not found (package iproute2)"
command -v ss >/dev/null 2>&1 || guest_skip "ss not found (package iproute2)"
command -v python3 >/dev/null 2>&1 || guest_skip "python3 not found (the RARP reader)"
guest_netns_usable || exit 1
rounds=${ROUNDS:-2}
[[ ${RING:-split} == packed ]] && GUEST_NET_DEV_OPTS=",packed=on${GUEST_NET_DEV_OPTS:-}"
# as migrate.sh: the receive buffers are not zeroed by the CPU when the guest allocates them
GUEST_APPEND="init_on_alloc=0 ${GUEST_APPEND:-}"
rm -f "$dir/rarp.log" "$dir"/send-r*.log
ns=vhu-mig-$$
mac=52:54:00:12:34:57
host_ip=10.77.0.1 guest_ip=10.77.0.2
chunks=128 # the stream: 128 chunks of 32 KiB
head -c $((chunks << 15)) /dev/urandom >"$dir/data.bin"

declare -A vhud_pid=()
ns_made=0 send_pid='' sniff_pid=''
cleanup() {
  local k
  mig_kill_all
  for k in "${!vhud_pid[@]}"; do guest_kill_wait "${vhud_pid[$k]}"; done
  vhud_pid=()
  guest_kill_wait "$send_pid"; send_pid=
  guest_kill_wait "$sniff_pid"; sniff_pid=
  ((ns_made)) && { ip netns del "$ns" 2>/dev/null || true; ns_made=0; }
  return 0
}
trap 'guest_on_exit cleanup' EXIT
fail() {
  guest_log "FAIL: $*"; cleanup
  local s
  for s in a b; do [[ -d $dir/$s ]] && guest_dump_globs "$dir/$s" 'vhud.log'; done
  guest_dump_globs "$dir" rarp.log 'send-r*.log'
  exit 1
}

# The guest: one stream per round, on port 5000+ROUND, each checked against data.bin where it
# ends (the destination of that round).
cat >"$dir/test.sh" <<GUEST
gip=$guest_ip hip=$host_ip rounds=$rounds
GUEST
cat >>"$dir/test.sh" <<'GUEST'
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -e /sys/class/net/eth0 ] || { result FAIL eth0 "no eth0"; exit 0; }
ip link set eth0 up && ip addr add $gip/24 dev eth0 || { result FAIL ifup "ip failed"; exit 0; }
ping -c 2 -w 60 $hip >/tmp/ping 2>&1 || { result FAIL ping "$(tr '\n' ' ' </tmp/ping)"; exit 0; }
. /extra/net-guest.sh
half=$(($(wc -c </extra/data.bin) / 2))
r=1
while [ $r -le $rounds ]; do
  # the host connects to 6000+r once the migration is over: then read the rest of the stream
  nc -l -p $((6000 + r)) </dev/null >/dev/null 2>&1 &
  cpid=$!
  tcp_wait_listen $((6000 + r))
  tcp_listen $((5000 + r))
  signal LISTEN $r
  # Read the first half of the stream, then stop reading: what arrives from then on (while
  # the migration is held) stays in the socket's receive queue, in the pages the device wrote,
  # and is read only on the destination.
  while [ "$(wc -c </tmp/r)" -lt $half ] && kill -0 $lpid 2>/dev/null; do sleep 0.05; done
  kill -STOP $lpid
  signal PAUSED $r "$(wc -c </tmp/r)"
  wait $cpid
  kill -CONT $lpid
  tcp_recv_check "round $r, across migration $r: "
  signal GOT $r
  r=$((r + 1))
done
ping -c 2 -w 30 $hip >/tmp/ping 2>&1 && result PASS ping-after "$(grep transmitted /tmp/ping)" ||
  result FAIL ping-after "$(tr '\n' ' ' </tmp/ping)"
GUEST
guest_mkinitramfs "$dir/initrd.cpio.gz" virtio_pci virtio_net -- "$dir/test.sh" \
  "$dir/data.bin" "$here/net-guest.sh" 2>"$dir/mkinitramfs.log" ||
  { cat "$dir/mkinitramfs.log" >&2; exit 1; }

ip netns add "$ns" || fail "ip netns add $ns failed"
ns_made=1
ip -n "$ns" link set lo up
ip -n "$ns" link add br0 type bridge
ip -n "$ns" addr add "$host_ip/24" dev br0
ip -n "$ns" link set br0 up
ctl=${MIG_NET_BACKEND:-vhud}
[[ $ctl == vhud || $ctl == qemu-tap ]] || { guest_log "MIG_NET_BACKEND: vhud or qemu-tap"; exit 2; }
if [[ $ctl == qemu-tap ]]; then # QEMU opens the taps itself, so it runs in the namespace
  printf '#!/bin/sh\nexec ip netns exec %q %q "$@"\n' "$ns" "$QEMU" >"$dir/qemu-in-ns"
  chmod +x "$dir/qemu-in-ns"
  QEMU=$dir/qemu-in-ns
fi
for s in a b; do
  mkdir -p "$dir/$s"
  if [[ $ctl == qemu-tap ]]; then
    ip -n "$ns" tuntap add dev "vhut$s" mode tap && ip -n "$ns" link set "vhut$s" master br0 &&
      ip -n "$ns" link set "vhut$s" up || fail "tap vhut$s"
    continue
  fi
  ip netns exec "$ns" "$vhud" net --socket-path "$dir/$s/net.sock" --tap "vhut$s" ${VHUD_ARGS:-} \
    </dev/null >"$dir/$s/vhud.log" 2>&1 &
  vhud_pid[$s]=$!
  guest_wait_socket "$dir/$s/net.sock" 20 "${vhud_pid[$s]}" || fail "vhud net $s did not start"
  for ((i = 0; i < 100; i++)); do ip -n "$ns" link show "vhut$s" >/dev/null 2>&1 && break; sleep 0.1; done
  ip -n "$ns" link set "vhut$s" master br0 && ip -n "$ns" link set "vhut$s" up ||
    fail "tap vhut$s not in the bridge"
done
# RARP frames that arrive on either tap from its own side (not those the bridge floods out)
ip netns exec "$ns" python3 "$here/rarp-sniff.py" "$dir/rarp.log" $((GUEST_TIMEOUT + 60)) vhuta vhutb \
  2>"$dir/sniff.err" &
sniff_pid=$!
for ((i = 0; i < 100; i++)); do grep -q '^listening' "$dir/rarp.log" 2>/dev/null && break; sleep 0.1; done
grep -q '^listening' "$dir/rarp.log" 2>/dev/null || fail "the RARP reader did not start: $(cat "$dir/sniff.err")"
rarps() { grep -c "^rarp $mac vhut$1\$" "$dir/rarp.log" || true; }

net_args() { # net_args S: the vhost-user-net device of side S (or QEMU's tap: the control)
  if [[ $ctl == qemu-tap ]]; then
    # shellcheck disable=SC2054
    echo -netdev "tap,id=net0,ifname=vhut$1,script=no,downscript=no" \
      -device "virtio-net-pci,netdev=net0,vectors=0,mac=$mac,guest_announce=off${GUEST_NET_DEV_OPTS:-}"
    return
  fi
  # shellcheck disable=SC2054 # commas are QEMU option syntax
  echo -chardev "socket,id=n0,path=$dir/$1/net.sock" -netdev vhost-user,id=net0,chardev=n0 \
    -device "virtio-net-pci,netdev=net0,vectors=0,mac=$mac,guest_announce=off${GUEST_NET_DEV_OPTS:-}"
}

# The stream of round R: data.bin in 32 KiB chunks, one every 0.1 s, but never past the chunk
# count in $dir/gate (the host opens it step by step, so that the stream is running before the
# migration, during the hold and after the switch-over, however long each takes); $dir/sent
# counts the chunks handed to nc.
gate() { echo "$1" >"$dir/gate.new" && mv "$dir/gate.new" "$dir/gate"; }
sent() { cat "$dir/sent"; }
send_stream() {
  echo 0 >"$dir/sent"
  # shellcheck disable=SC2016 # expanded by the inner bash
  ip netns exec "$ns" bash -c 'for ((k = 0; k < $1; k++)); do
      while ((k >= $(<"$3"))); do sleep 0.05; done
      dd if="$2" bs=32k skip=$k count=1 status=none
      echo $((k + 1)) >"$4"
      sleep 0.1
    done | timeout "$5" busybox nc "$6" "$7"' _ "$chunks" "$dir/data.bin" "$dir/gate" "$dir/sent" \
    "$GUEST_TIMEOUT" "$guest_ip" "$1" >"$dir/send-r$r.log" 2>&1 &
  send_pid=$!
}
# acked PORT: the bytes of the stream to PORT the guest has acknowledged (0 before it connects)
acked() {
  local out
  out=$(ip netns exec "$ns" ss -Htin state established "( dport = :$1 )" 2>/dev/null) || true
  [[ $out =~ bytes_acked:([0-9]+) ]] && echo "${BASH_REMATCH[1]}" || echo 0
}
# wait_for SECS CMD...: poll CMD every 0.1 s until it succeeds (0) or SECS pass (1)
wait_for() {
  local i secs=$1
  shift
  for ((i = 0; i < secs * 10; i++)); do "$@" && return 0; sleep 0.1; done
  return 1
}
acked_over() { (($(acked "$1") > $2)); }
sent_over() { (($(sent) >= $1)); }
rarps_over() { (($(rarps "$1") > $2)); }

# shellcheck disable=SC2046 # the arguments have no spaces
mig_qemu_start a -- $(net_args a) || fail "side a did not start"
src=a dst=b
for ((r = 1; r <= rounds; r++)); do
  port=$((5000 + r))
  mig_wait_line "$src" "^LISTEN $r" 120 || fail "round $r: the guest never listened on $src"
  # shellcheck disable=SC2046
  mig_qemu_start "$dst" incoming -- $(net_args "$dst") || fail "round $r: side $dst did not start"
  guest_log "round $r: $src -> $dst"
  gate 30
  send_stream "$port"
  wait_for 30 sent_over 10 || fail "round $r: the stream did not start: $(cat "$dir/send-r$r.log")"
  nlog=0
  [[ $ctl == qemu-tap ]] || nlog=$(wc -l <"$dir/$src/vhud.log")
  mig_begin "$src" || fail "round $r: migration not held"
  # Held: the guest reads the first half of the stream and stops reading; the next 384 KiB go
  # (as far as its receive window lets them) into its socket's receive queue: received while
  # held, read only on the destination.
  a0=$(acked "$port")
  gate $((chunks / 2))
  mig_wait_line "$src" "^PAUSED $r" 60 || fail "round $r: the guest did not read the first half"
  gate $((chunks / 2 + 12))
  wait_for 30 acked_over "$port" $(((chunks / 2 << 15) + (64 << 10))) ||
    fail "round $r: nothing went to the guest's receive queue during the hold (acked $(acked "$port"))"
  sleep 0.5
  guest_log "round $r: during the hold the guest took $((($(acked "$port") - a0) >> 10)) KiB,"     "$((($(acked "$port") - (chunks / 2 << 15)) >> 10)) KiB of them left unread"
  grep -q "^GOT $r" "$dir/$src/result.log" && fail "round $r: the stream ended before the migration"
  nrarp=$(rarps "$dst")
  mig_release "$src" "$dst" || fail "round $r: migration failed"
  if [[ $ctl != qemu-tap ]]; then
    tail -n +$((nlog + 1)) "$dir/$src/vhud.log" | grep -q 'dirty log attached' ||
      fail "round $r: vhud $src never got a log"
  fi
  mig_stop "$src"
  # QEMU's announce rounds run for about a second after the switch-over
  wait_for 10 rarps_over "$dst" "$nrarp" || fail "round $r: no RARP from $mac on tap $dst (SEND_RARP)"
  guest_log "round $r: tap $dst saw the guest's RARP announcement ($(($(rarps "$dst") - nrarp)) frame(s))"
  # the guest reads on, on the destination, and gets the rest of the stream
  ip netns exec "$ns" timeout 30 busybox nc "$guest_ip" $((6000 + r)) </dev/null >/dev/null 2>&1 ||
    fail "round $r: the guest's control port $((6000 + r)) did not answer on $dst"
  gate "$chunks"
  wait "$send_pid" || fail "round $r: the sender failed: $(cat "$dir/send-r$r.log")"
  send_pid=
  mig_wait_line "$dst" "^GOT $r" 60 || fail "round $r: the guest did not finish the stream on $dst"
  grep -q '^RESULT FAIL' "$dir/$dst/result.log" && fail "round $r: the guest found bad data on $dst"
  tmp=$src; src=$dst; dst=$tmp
done
mig_finish "$src" || fail "the guest did not finish on $src"
for s in "${!vhud_pid[@]}"; do
  guest_term "${vhud_pid[$s]}" "vhud $s" || fail "vhud $s"
  unset "vhud_pid[$s]"
done
guest_kill_wait "$sniff_pid"; sniff_pid=
ip netns del "$ns"; ns_made=0
guest_pass
