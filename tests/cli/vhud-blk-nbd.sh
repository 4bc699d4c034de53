#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# vhud blk --nbd as a process, end to end (vhuctl blk verify writes, reads back and compares):
#   - `vhud blk --help` lists the NBD store and its timeout;
#   - --nbd with --file, a bad --nbd-timeout: exit 2 with a message; no server: a clear error,
#     not a hang;
#   - qemu-nbd without --shared (no multi-conn) and --num-queues 2: refused, saying why;
#   - qemu-nbd --shared=4 on a file, 2 queues: verify passes and the file holds the data; the
#     server SIGKILLed, a verify started while it is away passes once it is back 0.5 s later;
#     a 2 s write bench on 2 queues with the server SIGKILLed under it and back 0.5 s later
#     sees no error (vhud logs the loss and the reconnection); vhud exits 0 on SIGTERM;
#   - a verify over nbd:// on loopback TCP (qemu-nbd -b 127.0.0.1, 2 queues; --force: the bench
#     wrote the disk before).
# SKIP (77, loudly) without qemu-nbd.
#
#   vhud-blk-nbd.sh VHUD VHUCTL
set -euo pipefail
(($# == 2)) || { echo "usage: $0 VHUD VHUCTL" >&2; exit 2; }
VHUD=$1 VHUCTL=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
sock=$dir/blk.sock
nsock=$dir/nbd.sock
img=$dir/disk.img
nbd_pid=
trap 'if [[ -n $nbd_pid ]]; then kill -KILL "$nbd_pid" 2>/dev/null || true; fi; cli_cleanup' EXIT

# (the whole help first: grep -q leaving early would SIGPIPE vhud, and pipefail fail the line)
help=$("$VHUD" blk --help 2>&1 || true)
grep -q -- '--nbd URI' <<<"$help" || fail "vhud blk --help does not list --nbd"
grep -q -- '--nbd-timeout' <<<"$help" || fail "vhud blk --help does not list --nbd-timeout"

# expect_exit RC PATTERN ARGS...: vhud ARGS exits RC (within 10 s) printing PATTERN
expect_exit() {
  local rc=$1 pat=$2 out r=0; shift 2
  out=$(timeout 10 "$VHUD" "$@" 2>&1 </dev/null) || r=$?
  echo "  [vhud $*] rc=$r $(grep -m1 -- "$pat" <<<"$out" || head -n1 <<<"$out")"
  ((r == rc)) || fail "vhud $*: exit $r, expected $rc: $out"
  grep -q -- "$pat" <<<"$out" || fail "vhud $*: no '$pat' in: $out"
}
expect_exit 2 "--file and --nbd exclude each other" blk --socket-path "$sock" --nbd nbd://x/ --file "$img"
expect_exit 2 "bad --nbd-timeout" blk --socket-path "$sock" --nbd nbd://x/ --nbd-timeout 0
expect_exit 1 "cannot connect to nbd+unix" blk --socket-path "$sock" --nbd "nbd+unix:///?socket=$dir/none.sock"

if ! command -v qemu-nbd >/dev/null; then
  echo "==== SKIP: vhud blk --nbd untested end to end: no qemu-nbd (apt-get install qemu-utils) ====" >&2
  exit 77
fi
truncate -s 16M "$img"
# serve [ARGS...]: qemu-nbd on $img at $nsock
serve() {
  rm -f "$nsock"
  qemu-nbd -f raw -t -k "$nsock" "$@" "$img" </dev/null >>"$dir/nbd.log" 2>&1 &
  nbd_pid=$!
  for ((i = 0; i < 100; i++)); do [[ -S $nsock ]] && return 0; sleep 0.05; done
  fail "qemu-nbd did not listen on $nsock"
}
unserve() { kill -"$1" "$nbd_pid"; wait "$nbd_pid" 2>/dev/null || true; nbd_pid=; }
uri="nbd+unix:///?socket=$nsock"

serve
expect_exit 1 "does not advertise multi-conn" blk --socket-path "$sock" --nbd "$uri" --num-queues 2
unserve TERM

serve --shared=4
start_vhud blk --nbd "$uri" --num-queues 2 --nbd-timeout 20
grep -q 'nbd engine' "$dir/vhud.log" || fail "vhud does not say it runs the nbd store"
"$VHUCTL" blk verify --socket-path "$sock" --queues 2 --bytes 2M --seed 7 >"$dir/verify1.log" 2>&1 ||
  { cat "$dir/verify1.log" >&2; fail "verify through vhud on qemu-nbd"; }
cmp -s <(head -c 2M "$img") <(head -c 2M /dev/zero) && fail "the disk file is still all zeroes after verify"
echo "  verify on 2 queues: ok ($(tail -n1 "$dir/verify1.log"))"
unserve KILL
(sleep 0.5; exec qemu-nbd -f raw -t --shared=4 -k "$nsock" "$img" </dev/null >>"$dir/nbd.log" 2>&1) &
nbd_pid=$!
"$VHUCTL" blk verify --socket-path "$sock" --queues 2 --bytes 2M --offset 4M --seed 8 >"$dir/verify2.log" 2>&1 ||
  { cat "$dir/verify2.log" >&2; fail "verify while the NBD server restarts"; }
echo "  verify started while the server was away (queues connect late): ok"
# The server killed under load and back 0.5 s later: no request may fail.
"$VHUCTL" blk bench --socket-path "$sock" --queues 2 --iodepth 8 --rw randwrite --runtime 2 \
  >"$dir/bench.log" 2>&1 &
bench=$!
sleep 0.7
unserve KILL
sleep 0.5
serve --shared=4
r=0; wait "$bench" || r=$?
((r == 0)) || { cat "$dir/bench.log" >&2; fail "bench across a server restart: exit $r"; }
echo "  bench across a server SIGKILL + restart: $(grep -o 'iops=[0-9.]*' "$dir/bench.log") errors=0"
grep -q 'reconnected to' "$dir/vhud.log" || fail "vhud did not log a reconnection"
grep -m1 'lost' "$dir/vhud.log" | sed 's/^/  vhud: /'
stop_vhud
unserve TERM

# nbd:// over loopback TCP (the URIs above are UNIX sockets): a port of our own, then verify.
port=$((20000 + $$ % 20000))
qemu-nbd -f raw -t --shared=2 -b 127.0.0.1 -p "$port" "$img" </dev/null >>"$dir/nbd.log" 2>&1 &
nbd_pid=$!
for ((i = 0; i < 100; i++)); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$nbd_pid" 2>/dev/null || fail "qemu-nbd did not start on TCP port $port"
  sleep 0.05
done
start_vhud blk --nbd "nbd://127.0.0.1:$port/" --num-queues 2
"$VHUCTL" blk verify --socket-path "$sock" --queues 2 --bytes 1M --offset 8M --seed 9 --force \
  >"$dir/verify3.log" 2>&1 || { cat "$dir/verify3.log" >&2; fail "verify over nbd:// (TCP)"; }
echo "  verify over nbd://127.0.0.1:$port (TCP, 2 queues): ok"
stop_vhud
unserve TERM
echo "PASS"
