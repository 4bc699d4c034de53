#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# bench/wakeup: both RESULT lines with positive times; bad options exit 2 with a message.
#
#   wakeup.sh WAKEUP
set -euo pipefail
(($# == 1)) || { echo "usage: $0 WAKEUP" >&2; exit 2; }
W=$1
if (($(nproc) < 2)); then echo "SKIP: bench/wakeup needs two CPUs, this machine has $(nproc)"; exit 77; fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
out=$(timeout 60 "$W" --iters 2000)
echo "$out"
line=$(grep '^RESULT what=line ' <<<"$out") || fail "no line RESULT"
efd=$(grep '^RESULT what=eventfd ' <<<"$out") || fail "no eventfd RESULT"
ns=$(sed -n 's/.* ns_one_way=\([0-9.]*\).*/\1/p' <<<"$line")
us=$(sed -n 's/.* us_one_way=\([0-9.]*\).*/\1/p' <<<"$efd")
awk -v a="$ns" -v b="$us" 'BEGIN {exit !(a > 0 && b > 0)}' ||
  fail "times not positive: line $ns ns, eventfd $us us"
for bad in "--cpus 1,1" "--cpus x" "--iters 5" "--nope"; do
  rc=0
  # shellcheck disable=SC2086
  "$W" $bad >/dev/null 2>"$dir/err" || rc=$?
  [[ $rc == 2 && -s $dir/err ]] || fail "'$bad' exited $rc"
done
echo "PASS: line $ns ns, eventfd wake-up $us us one way"
