#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# vhud under systemd's protocols, without systemd as PID 1:
#   - socket activation: systemd-socket-activate (package systemd) listens on the socket and
#     execs vhud with LISTEN_FDS/LISTEN_PID on the first connection; vhud, given no endpoint,
#     serves fd 3: vhuctl rng read and vhuctl blk verify (through the vhud-blk link, as the
#     vhost-user.json descriptor names it) run over the inherited socket;
#   - Type=notify: a NOTIFY_SOCKET this script listens on gets READY=1 (with STATUS=), WATCHDOG=1
#     about every WATCHDOG_USEC/2, and STOPPING=1 after SIGTERM (exit 0);
#   - the protocol's edge cases by hand: LISTEN_PID of another process (not activated: "no
#     endpoint", exit 2), fd 3 not a socket and two sockets (exit 1, one line each);
#   - the template units pass `systemd-analyze verify` (ExecStart pointed at this vhud).
# SKIP (77) without systemd-socket-activate or python3 (the notify listener).
#
#   vhud-systemd.sh VHUD VHUCTL SOURCE_DIR BUILD_DATA_DIR
set -euo pipefail
VHUD=$1 VHUCTL=$2 src=$3 data=$4
for t in systemd-socket-activate python3; do
  command -v $t >/dev/null || { echo "==== SKIP: vhud-systemd: no $t (apt-get install systemd python3) ====" >&2; exit 77; }
done
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
sock=$dir/vhu.sock notify=$dir/notify.sock nlog=$dir/notify.log

# the NOTIFY_SOCKET end of systemd: one line per datagram
python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a") as f:
    while True:
        f.write(s.recv(4096).decode() + "\n")
        f.flush()
' "$notify" "$nlog" &
helpers+=($!)
for ((i = 0; i < 100; i++)); do [[ -S $notify ]] && break; sleep 0.05; done
[[ -S $notify ]] || fail "the notify listener did not start"

# activate PROGRAM ARGS...: systemd-socket-activate on $sock, watchdog every 100 ms / 2
activate() {
  rm -f "$sock"
  : >"$nlog"
  NOTIFY_SOCKET=$notify WATCHDOG_USEC=100000 systemd-socket-activate -E NOTIFY_SOCKET \
    -E WATCHDOG_USEC -l "$sock" "$@" </dev/null >"$dir/vhud.log" 2>&1 &
  pid=$!
  for ((i = 0; i < 100; i++)); do [[ -S $sock ]] && return 0; sleep 0.05; done
  fail "systemd-socket-activate did not listen on $sock"
}

# notified LINE: wait up to 5 s for it in the notify log
notified() {
  for ((i = 0; i < 100; i++)); do grep -qx "$1" "$nlog" && return 0; sleep 0.05; done
  fail "no $1 on NOTIFY_SOCKET; got: $(tr '\n' ' ' <"$nlog")"
}

# shut down with SIGTERM: exit 0, STOPPING=1
stop_activated() {
  stop_vhud
  notified STOPPING=1
}

# --- rng: the first connection execs vhud, which serves the socket it inherited
activate "$VHUD" rng
out=$("$VHUCTL" rng read --socket-path "$sock" --bytes 8192 2>&1) || fail "rng read over the activated socket: $out"
notified READY=1
grep -q '^STATUS=serving rng on the socket systemd passed$' "$nlog" || fail "no STATUS= line: $(cat "$nlog")"
grep -q 'rng device ready on the socket systemd passed' "$dir/vhud.log" || fail "vhud did not say it serves the passed socket"
sleep 0.5
pings=$(grep -cx WATCHDOG=1 "$nlog" || true)
((pings >= 4)) || fail "$pings WATCHDOG=1 in 0.5 s with WATCHDOG_USEC=100000 (expected ~10)"
# a second session on the same socket: it is still listening
"$VHUCTL" rng read --socket-path "$sock" --bytes 64 >/dev/null 2>&1 || fail "second rng read failed"
stop_activated
echo "  rng: socket-activated, READY=1, $pings watchdog pings in 0.5 s, STOPPING=1, exit 0"

# --- blk through its vhud-blk link
ln -s "$(readlink -f "$VHUD")" "$dir/vhud-blk"
truncate -s 8M "$dir/disk.img"
activate "$dir/vhud-blk" --blk-file "$dir/disk.img"
out=$("$VHUCTL" blk verify --socket-path "$sock" --bytes 1M 2>&1) || fail "blk verify over the activated socket: $out"
notified READY=1
stop_activated
echo "  blk: vhud-blk --blk-file socket-activated, vhuctl blk verify OK"

# --- the protocol's edge cases, by hand
rc=0
err=$(LISTEN_FDS=1 LISTEN_PID=1 "$VHUD" rng 2>&1) || rc=$?
((rc == 2)) && grep -q 'no endpoint' <<<"$err" && (($(wc -l <<<"$err") == 1)) ||
  fail "LISTEN_PID of another process: exit $rc, '$err' (expected 2, 'no endpoint')"
rc=0
err=$(bash -c 'export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" rng' "$VHUD" 3</dev/null 2>&1) || rc=$?
((rc == 1)) && grep -q 'fd 3 is not a UNIX stream socket' <<<"$err" && (($(wc -l <<<"$err") == 1)) ||
  fail "fd 3 not a socket: exit $rc, '$err' (expected 1)"
rc=0
err=$(bash -c 'export LISTEN_PID=$$ LISTEN_FDS=2; exec "$0" rng' "$VHUD" 3</dev/null 4</dev/null 2>&1) || rc=$?
((rc == 1)) && grep -q 'passed 2 sockets' <<<"$err" || fail "two sockets: exit $rc, '$err' (expected 1)"
echo "  LISTEN_PID mismatch: exit 2; fd 3 not a socket, two sockets: exit 1"

# --- the units
if command -v systemd-analyze >/dev/null; then
  mkdir "$dir/units"
  for t in blk net rng; do
    sed -e "s|^ExecStart=[^ ]*/vhud |ExecStart=$(readlink -f "$VHUD") |" \
        -e 's|^EnvironmentFile=-\{0,1\}|EnvironmentFile=-|' \
        "$data/vhud-$t@.service" >"$dir/units/vhud-$t@.service"
    cp "$src/data/systemd/vhud-$t@.socket" "$dir/units/"
    grep -q '^Type=notify$' "$dir/units/vhud-$t@.service" || fail "vhud-$t@.service: not Type=notify"
    grep -q '^WatchdogSec=' "$dir/units/vhud-$t@.service" || fail "vhud-$t@.service: no WatchdogSec"
    grep -q '^ListenStream=/run/vhu/%i.sock$' "$dir/units/vhud-$t@.socket" ||
      fail "vhud-$t@.socket: not ListenStream=/run/vhu/%i.sock"
  done
  (cd "$dir/units" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no \
     vhud-blk@t.service vhud-net@t.service vhud-rng@t.service vhud-blk@t.socket \
     vhud-net@t.socket vhud-rng@t.socket) >"$dir/verify.log" 2>&1 ||
    fail "systemd-analyze verify: $(cat "$dir/verify.log")"
  [[ ! -s $dir/verify.log ]] || fail "systemd-analyze verify warns: $(cat "$dir/verify.log")"
  echo "  units: systemd-analyze verify clean"
else
  echo "  units: systemd-analyze not found, not verified"
fi
echo "vhud-systemd: ok"
