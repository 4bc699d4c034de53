#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The command lines of vhud and vhuctl as a new user meets them (issue 14, item 6):
#   - every command and subcommand has its own --help: exit 0, on stdout, nothing on stderr;
#     `vhud blk --help` lists blk's options (and its stores) but no other device's; `vhuctl
#     --help` is grouped by command;
#   - a usage error exits 2 with exactly one line on stderr, naming the option that is wrong;
#     a runtime error exits 1;
#   - `vhuctl blk verify` says it writes the disk, refuses a disk that is not empty (left
#     untouched) unless --force, and runs again over its own pattern;
#   - a command talking to another device type says which type the socket serves.
#
#   vhud-cli.sh VHUD VHUCTL [SOURCE_DIR BUILD_DATA_DIR (unused)]
set -euo pipefail
VHUD=$1 VHUCTL=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
sock=$dir/dev.sock
S=$dir/unused.sock

# run PROGRAM ARGS...: $RC, $OUT (stdout), $ERR (stderr)
run() {
  RC=0
  OUT=$("$@" 2>"$dir/err") || RC=$?
  ERR=$(cat "$dir/err")
}

# --- help
helps=("$VHUD --help" "$VHUD rng --help" "$VHUD blk --help" "$VHUD net --help"
       "$VHUD switch --help" "$VHUD vvu --help" "$VHUD blk -h"
       "$VHUCTL --help" "$VHUCTL info --help" "$VHUCTL rng --help" "$VHUCTL rng read --help"
       "$VHUCTL blk --help" "$VHUCTL blk verify --help" "$VHUCTL blk bench --help"
       "$VHUCTL net --help" "$VHUCTL net send --help" "$VHUCTL net recv --help"
       "$VHUCTL net bench --help")
for h in "${helps[@]}"; do
  # shellcheck disable=SC2086 # word lists
  run $h
  ((RC == 0)) && [[ -n $OUT && -z $ERR ]] || fail "'${h##*/}': exit $RC, stderr '$ERR'"
done
run "$VHUD" blk --help
for want in '--file PATH' '--blk-file' '--nbd URI' '--read-only' 'stores in this build: file' \
            '--socket-path PATH' '--queue-size N.*default: 256'; do
  grep -q -e "$want" <<<"$OUT" || fail "vhud blk --help lacks '$want'"
done
for other in '--tap' '--reflect' '--port' '--learn' '--mac'; do
  ! grep -q -e "$other" <<<"$OUT" || fail "vhud blk --help lists $other (not a blk option)"
done
run "$VHUD" net --help
grep -q -e '--tap NAME' <<<"$OUT" && ! grep -q -e '--file' -e '--nbd' <<<"$OUT" ||
  fail "vhud net --help: not net's options only"
run "$VHUCTL" --help
order=$(grep -E '^(info|rng read|blk verify|blk bench|net send)[: ]' <<<"$OUT" | grep -v options | cut -c1-8 | tr '\n' '|')
[[ $order == "info: wh|rng read|blk veri|blk benc|net send|" ]] ||
  fail "vhuctl --help is not grouped by command: $order"
echo "  help: ${#helps[@]} commands, exit 0 on stdout; vhud blk --help lists blk's options only"

# --- usage errors: exit 2, one line naming the option
# each case: "expected text|program args..." (fields split on '|', args on spaces)
usage_cases=(
  "--tap is a net option|$VHUD blk --tap t0"
  "blk: no backing store|$VHUD blk --socket-path $S"
  "--file and --null exclude each other|$VHUD blk --socket-path $S --file f --null 1M"
  "--blk-file and --nbd exclude each other|$VHUD blk --socket-path $S --blk-file f --nbd nbd://h/x"
  "bad --null size '0'|$VHUD blk --socket-path $S --null 0"
  "--ceph-conf goes with --rbd|$VHUD blk --socket-path $S --file f --ceph-conf c"
  "bad --engine 'fast'|$VHUD blk --socket-path $S --file f --engine fast"
  "--socket-path and --fd exclude each other|$VHUD rng --socket-path $S --fd 3"
  "no endpoint|$VHUD rng"
  "--client needs --socket-path|$VHUD rng --fd 3 --client"
  "bad --queue-size '0'|$VHUD rng --socket-path $S --queue-size 0"
  "bad --workers '65'|$VHUD rng --socket-path $S --workers 65"
  "unrecognized option '--bogus'|$VHUD rng --bogus"
  "'--socket-path' requires an argument|$VHUD rng --socket-path"
  "unexpected argument 'extra'|$VHUD rng --socket-path $S extra"
  "unknown device 'disk'|$VHUD disk --socket-path $S"
  "the device comes first|$VHUD --socket-path $S"
  "net: no port|$VHUD net --socket-path $S"
  "--reflect and --sink exclude each other|$VHUD net --socket-path $S --reflect --sink"
  "bad --mac 'zz'|$VHUD net --socket-path $S --reflect --mac zz"
  "--port PATH is needed at least twice|$VHUD switch --port a"
  "--socket-path does not apply|$VHUD switch --port a --port b --socket-path $S"
  "--port is a switch option|$VHUD net --socket-path $S --reflect --port a"
  "unrecognized option '--bogus'|$VHUD vvu --bogus"
  "bad --max-queues '0'|$VHUD vvu --socket-path $S --vfio-user $S.v --max-queues 0"
  "bad value 'x' for --bytes|$VHUCTL rng read --socket-path $S --bytes x"
  "bad value '0' for --chunk|$VHUCTL blk verify --socket-path=$S --chunk=0"
  "bad value '0' for --queue-size|$VHUCTL blk verify --socket-path $S --queue-size 0"
  "unrecognized option '--bogus'|$VHUCTL blk verify --bogus"
  "--socket-path is required|$VHUCTL blk verify"
  "net send needs --count N|$VHUCTL net send --socket-path $S"
  "unknown subcommand 'write'|$VHUCTL blk write --socket-path $S"
  "unknown command 'frob'|$VHUCTL frob"
)
for c in "${usage_cases[@]}"; do
  want=${c%%|*}
  # shellcheck disable=SC2086 # word list
  run ${c#*|}
  cmd=${c#*|}
  cmd=${cmd//$dir\//}
  ((RC == 2)) || fail "'${cmd##*/}': exit $RC (want 2), stderr '$ERR'"
  grep -qF -- "$want" <<<"$ERR" || fail "'${cmd##*/}': stderr '$ERR' does not say '$want'"
  (($(wc -l <<<"$ERR") == 1)) || fail "'${cmd##*/}': more than one line: $ERR"
done
echo "  usage errors: ${#usage_cases[@]} cases, exit 2 with one line naming the option"

# --- runtime errors: exit 1
run "$VHUD" rng --socket-path "$dir/no/such/dir/s"
((RC == 1)) && grep -q 'cannot start on' <<<"$ERR" || fail "vhud rng on a missing directory: exit $RC, '$ERR'"
run "$VHUD" blk --socket-path "$S" --file "$dir/no-such.img"
((RC == 1)) || fail "vhud blk on a missing file: exit $RC (want 1), '$ERR'"
# the store's own error names the file; no second line about the socket follows it
grep -q 'no-such.img' <<<"$ERR" && (($(wc -l <<<"$ERR") == 1)) ||
  fail "vhud blk on a missing file: want one line naming the file, got '$ERR'"
run "$VHUCTL" rng read --socket-path "$dir/no-such.sock"
((RC == 1)) || fail "vhuctl rng read on a missing socket: exit $RC (want 1), '$ERR'"
echo "  runtime errors: exit 1"

# --- blk verify writes the disk: --force on a non-empty one
head -c 4096 /dev/urandom >"$dir/disk.img"
truncate -s 8M "$dir/disk.img"
sum0=$(md5sum <"$dir/disk.img")
start_vhud blk --file "$dir/disk.img"
run "$VHUCTL" blk verify --socket-path "$sock" --bytes 1M --offset 1M
((RC == 1)) && grep -q 'the disk is not empty (sector 0 holds data).*--force' <<<"$ERR" ||
  fail "verify on a disk with data: exit $RC, '$ERR' (want 1 and a --force hint)"
[[ $(md5sum <"$dir/disk.img") == "$sum0" ]] || fail "verify without --force changed the disk"
run "$VHUCTL" blk verify --socket-path "$sock" --bytes 1M --offset 1M --force
((RC == 0)) && grep -q 'verify: writes 1048576 bytes at offset 1048576 of the disk (not empty: --force given)' <<<"$OUT" ||
  fail "verify --force: exit $RC, '$OUT$ERR'"
stop_vhud
truncate -s 0 "$dir/disk.img"
truncate -s 8M "$dir/disk.img"
start_vhud blk --file "$dir/disk.img"
for i in 1 2; do
  run "$VHUCTL" blk verify --socket-path "$sock" --bytes 1M
  ((RC == 0)) && grep -q '^verify: writes 1048576 bytes at offset 0 of the disk$' <<<"$OUT" ||
    fail "verify #$i on an empty disk (then its own pattern): exit $RC, '$OUT$ERR'"
done
echo "  blk verify: refuses a disk with data (untouched), --force writes it; runs again over its own pattern"

# --- the wrong device type is named
# wrong TYPE_SERVED VHUCTL_ARGS...: vhuctl on a TYPE_SERVED socket exits 1 naming it
wrong() {
  local served=$1; shift
  run "$VHUCTL" "$@" --socket-path "$sock"
  ((RC == 1)) && grep -q "serves an\? $served device, not $1" <<<"$ERR" ||
    fail "vhuctl $* on a $served device: exit $RC, '$ERR'"
}
wrong blk rng read
wrong blk net send --count 1
stop_vhud
start_vhud rng
wrong rng blk verify
wrong rng net recv --count 1
run "$VHUCTL" info --socket-path "$sock"
grep -q '^device type  *rng$' <<<"$OUT" || fail "vhuctl info on rng: $OUT"
stop_vhud
start_vhud net --reflect
wrong net blk bench --runtime 0.2
wrong net rng read
stop_vhud
echo "  wrong device type: named for rng, blk and net sockets"
echo "vhud-cli: ok"
