#!/usr/bin/env bash
# The connection and ring options (--socket-path, --queue-size, --packed, --no-indirect,
# --no-event-idx) are parsed once for every vhuctl command:
#   - a bad --queue-size (0, 70000, 12x) and a missing --socket-path give the same message and
#     exit code 2 from rng read, blk verify|bench and net send|recv|bench; --queue-size 1K is
#     taken by all of them (the refusal is then the connect's, exit 1);
#   - against vhud, --packed reaches the ring of each command: a ring of 100 descriptors starts
#     only packed (a split ring's size is a power of 2, VIRTIO 1.3 §2.7), the output names the
#     packed ring, and blk verify's negotiated features hold RING_PACKED (bit 34) with --packed
#     and lose INDIRECT_DESC (28) and EVENT_IDX (29) with --no-indirect --no-event-idx.
#
#   vhuctl-ring-opts.sh VHUD VHUCTL
set -euo pipefail
(($# == 2)) || { echo "usage: $0 VHUD VHUCTL" >&2; exit 2; }
VHUD=$1 VHUCTL=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

# run ARGS...: vhuctl ARGS; sets OUT (stdout and stderr) and RC
run() {
  RC=0
  OUT=$("$VHUCTL" "$@" 2>&1) || RC=$?
  printf '  [%s] rc=%s %s\n' "$*" "$RC" "$(head -n 1 <<<"$OUT")"
}

# expect RC TEXT ARGS...: vhuctl ARGS must exit RC printing exactly TEXT
expect() {
  local rc=$1 text=$2; shift 2
  run "$@"
  ((RC == rc)) || fail "vhuctl $*: exit $RC, expected $rc"
  [[ $OUT == "$text" ]] || fail "vhuctl $*: printed '$OUT', expected '$text'"
}

# Each command with what it needs besides the ring options.
cmds=("rng read" "blk verify" "blk bench" "net send --count 1" "net recv --count 1"
      "net bench --mode tx")
nosock=$dir/absent.sock

echo "bad ring options: one message and exit code for every command"
for cmd in "${cmds[@]}"; do
  read -r -a c <<<"$cmd"
  expect 2 "vhuctl: bad value '0' for --queue-size (1..32768)" "${c[@]}" --socket-path "$nosock" --queue-size 0
  expect 2 "vhuctl: bad value '70000' for --queue-size (1..32768)" "${c[@]}" --socket-path "$nosock" --queue-size 70000
  expect 2 "vhuctl: bad value '12x' for --queue-size (1..32768)" "${c[@]}" --queue-size 12x --socket-path "$nosock"
  expect 2 "vhuctl: --socket-path is required" "${c[@]}" --queue-size 64 --packed
  expect 1 "vhuctl: connect $nosock: No such file or directory" \
    "${c[@]}" --socket-path "$nosock" --queue-size 1K --packed --no-indirect --no-event-idx
done

# packed_ring WORDS ARGS...: with --packed --queue-size 100, vhuctl ARGS must succeed and print
# "WORDS"; without --packed it must fail to start the ring (exit 1, "cannot start")
packed_ring() {
  local words=$1; shift
  run "$@" --socket-path "$sock" --packed --queue-size 100
  ((RC == 0)) || fail "vhuctl $* --packed --queue-size 100: exit $RC: $OUT"
  grep -q -- "$words" <<<"$OUT" || fail "vhuctl $* --packed: no '$words' in: $OUT"
  run "$@" --socket-path "$sock" --queue-size 100
  ((RC == 1)) || fail "vhuctl $* --queue-size 100 (split): exit $RC, expected 1"
  grep -q "cannot start" <<<"$OUT" || fail "vhuctl $* (split, 100): no 'cannot start' in: $OUT"
}

# verify_bits "BIT=0|1..." ARGS...: blk verify ARGS must pass and its negotiated features hold
# (1) or lack (0) each BIT
verify_bits() {
  local want=$1 f b; shift
  run blk verify --socket-path "$sock" --bytes 64K "$@"
  ((RC == 0)) || fail "blk verify $*: exit $RC: $OUT"
  f=$(sed -n 's/.* negotiated \(0x[0-9a-f]*\) .*/\1/p' <<<"$OUT")
  [[ -n $f ]] || fail "blk verify $*: no negotiated features in: $OUT"
  for b in $want; do
    (((f >> ${b%=*} & 1) == ${b#*=})) || fail "blk verify $*: negotiated $f, want bit $b"
  done
}

echo "--packed reaches the ring"
sock=$dir/rng.sock
start_vhud rng
packed_ring "over a packed ring of 100" rng read
stop_vhud

truncate -s 4M "$dir/disk"
sock=$dir/blk.sock
start_vhud blk --file "$dir/disk"
packed_ring "1 queue, packed ring" blk verify --bytes 64K
packed_ring "ring=packed" blk bench --runtime 0.1
verify_bits "34=1 28=1 29=1" --packed
verify_bits "34=0 28=1 29=1"
verify_bits "34=1 28=0 29=0" --chunk 4K --packed --no-indirect --no-event-idx
stop_vhud

sock=$dir/net.sock
start_vhud net --reflect
packed_ring "packed ring, 1 pair" net send --count 100
packed_ring "ring=packed" net bench --mode rxtx --seconds 0.2
stop_vhud

start_vhud net --source 64
packed_ring "packed ring" net recv --count 100
stop_vhud
echo "PASS"
