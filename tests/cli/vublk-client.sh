#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# bench/vublk-client (the independent vhost-user-blk frontend: no libvhu) against vhud blk:
#   - on a file: --verify (random writes and reads, every read of a written block compared) for
#     1 s at QD8, randread QD32 for 1 s, and the other notification paths (--poll,
#     --no-event-idx) for 0.5 s; every run prints a RESULT line with I/Os and exits 0;
#   - it can fail: the pattern written with --verify=write and checked with --verify=read, then
#     4 bytes of the file changed behind vhud's back: the check exits 1 naming the changed word's
#     disk offset;
#   - SIGTERM in the middle of a 30 s run: exit 0 at once with the partial RESULT;
#   - a usage error exits 2; on the null store, randread QD32 for 1 s;
#   - if qemu-storage-daemon is installed, the same --verify against it (a second backend).
#
#   vublk-client.sh VHUD VUBLK_CLIENT
set -euo pipefail
(($# == 2)) || { echo "usage: $0 VHUD VUBLK_CLIENT" >&2; exit 2; }
VHUD=$1 CLIENT=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
sock=$dir/blk.sock
img=$dir/disk.img

# client NAME ARGS...: run the client (bounded), output in $dir/NAME.log; sets rc and line
client() {
  local name=$1
  shift
  rc=0
  timeout 30 "$CLIENT" --socket-path "$sock" "$@" >"$dir/$name.log" 2>&1 || rc=$?
  line=$(grep '^RESULT ' "$dir/$name.log" || true)
}
# field NAME: the value of NAME= in $line
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $line"; }
# expect_ok NAME ARGS...: the client exits 0 with a RESULT line of at least one I/O
expect_ok() {
  client "$@"
  ((rc == 0)) || { cat "$dir/$1.log" >&2; fail "vublk-client ${*:2}: exit $rc"; }
  [[ -n $line ]] || { cat "$dir/$1.log" >&2; fail "vublk-client ${*:2}: no RESULT line"; }
  (($(field ios) > 0)) || fail "vublk-client ${*:2}: no I/O completed: $line"
  echo "  ${*:2}: iops=$(field iops) kicks=$(field kicks) calls=$(field calls) verified=$(field verified)"
}

help=$("$VHUD" blk --help 2>&1 || true)
grep -q -- '--null SIZE' <<<"$help" || fail "vhud blk --help does not list --null"

truncate -s 64M "$img"
start_vhud blk --file "$img"
expect_ok verify --verify --qd 8 --seconds 1
if [[ $(field verify) != mixed ]] || (($(field verified) == 0)); then
  fail "--verify compared no read: $line"
fi
expect_ok randread --rw randread --qd 32 --seconds 1
[[ $(field event_idx) == 1 ]] || fail "vhud offers EVENT_IDX, the client did not use it: $line"
expect_ok poll --verify --qd 4 --seconds 0.5 --poll
expect_ok noevi --verify --qd 4 --seconds 0.5 --no-event-idx
[[ $(field event_idx) == 0 ]] || fail "--no-event-idx negotiated EVENT_IDX: $line"
expect_ok noevi-poll --rw randwrite --qd 4 --seconds 0.5 --no-event-idx --poll

# It can fail: a region written, checked, changed behind vhud's back, checked again.
expect_ok fill --verify=write --size 4M --seed 5 --qd 16
expect_ok check --verify=read --size 4M --seed 5 --qd 16
[[ $(field verified) == 1024 ]] || fail "--verify=read compared $(field verified) blocks, not 1024"
printf 'XXXX' | dd of="$img" bs=1 seek=$((1048576 + 100)) conv=notrunc status=none
client bad --verify=read --size 4M --seed 5 --qd 16
((rc == 1)) || { cat "$dir/bad.log" >&2; fail "--verify=read on changed data: exit $rc, not 1"; }
# the word holding bytes 1048676..1048679 starts at 1048672
grep -q 'bad data at disk byte 1048672 ' "$dir/bad.log" ||
  { cat "$dir/bad.log" >&2; fail "--verify=read did not name the changed word"; }
echo "  changed data: exit 1, $(grep -o 'bad data at disk byte [0-9]*' "$dir/bad.log")"

# SIGTERM: the run ends early, drained, with its result
"$CLIENT" --socket-path "$sock" --qd 4 --seconds 30 >"$dir/term.log" 2>&1 &
cpid=$!
helpers+=("$cpid")
sleep 0.5
t0=$(date +%s%N)
kill -TERM "$cpid"
rc=0
wait "$cpid" || rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
((rc == 0)) || { cat "$dir/term.log" >&2; fail "SIGTERM: exit $rc"; }
((ms < 3000)) || fail "SIGTERM: took $ms ms to exit"
grep -q '^RESULT .*ios=[1-9]' "$dir/term.log" || fail "SIGTERM: no RESULT line"
echo "  SIGTERM after 0.5 s: exit 0 in $ms ms, $(grep -o ' ios=[0-9]*' "$dir/term.log")"

client usage --qd 100
((rc == 2)) || fail "--qd 100 on a 256-entry ring: exit $rc, not 2"
stop_vhud

start_vhud blk --null 1G
expect_ok null --rw randread --qd 32 --seconds 1
stop_vhud

if command -v qemu-storage-daemon >/dev/null; then
  rm -f "$sock"
  qemu-storage-daemon --blockdev "driver=file,node-name=f,filename=$img" \
    --export "type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path=$sock,writable=on,num-queues=1" \
    </dev/null >"$dir/qsd.log" 2>&1 &
  qpid=$!
  helpers+=("$qpid")
  for ((i = 0; i < 100; i++)); do [[ -S $sock ]] && break; sleep 0.05; done
  [[ -S $sock ]] || { cat "$dir/qsd.log" >&2; fail "qemu-storage-daemon did not listen"; }
  echo "  qemu-storage-daemon:"
  expect_ok qsd-verify --verify --qd 8 --seconds 1
  kill -TERM "$qpid"
  wait "$qpid" 2>/dev/null || true
else
  echo "  (no qemu-storage-daemon: the second backend is not tried)"
fi
echo "PASS"
