#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Instruction-count A/B of two vhu builds on the request path, under callgrind: the same
# loop (bench/loopback-ir.c: frontend + vhost-user loopback + device core + device + rings, one
# thread, no scheduler) compiled against each build's libvhu.so. Deterministic where timed runs
# on this machine are not (blk and net timings swing 2x run to run).
#
#   bench/ir-ab.sh BASE_BUILD [NEW_BUILD]      (NEW_BUILD default: <repo>/build)
#
# BASE_BUILD is a configured and built tree's build directory (e.g. a `git worktree` of the
# older commit, `meson setup build && ninja -C build`). Per case (blk null store / net sink,
# split / packed): instructions of a run of N requests minus a run of 0 (setup and teardown),
# divided by N, for each build, and the ratio new/base.
# Env: N (20000 requests), BATCH (32 requests per kick), CASES ("blk:split blk:packed
# net:split net:packed").
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
base=${1:?usage: bench/ir-ab.sh BASE_BUILD [NEW_BUILD]}
new=${2:-$repo/build}
N=${N:-20000} BATCH=${BATCH:-32}
CASES=${CASES:-blk:split blk:packed net:split net:packed}
command -v valgrind >/dev/null || { echo "ir-ab: valgrind not found (apt-get install valgrind)" >&2; exit 1; }
out=$(mktemp -d "${TMPDIR:-/tmp}/vhu-ir-ab.XXXXXX")

# build BUILD_DIR NAME: compile loopback-ir against that build's public headers and libvhu.so
build() {
  local b=$1 name=$2 src
  src=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["directories"]["source"])' "$b/meson-info/meson-info.json" 2>/dev/null || echo "$b/..")
  [[ -f $b/libvhu.so ]] || { echo "ir-ab: $b/libvhu.so not found: build that tree first" >&2; exit 1; }
  cc -O2 -g -std=gnu11 -D_GNU_SOURCE -I"$src/include" "$here/loopback-ir.c" -o "$out/$name" \
    -L"$b" -Wl,-rpath,"$b" -lvhu
}
build "$base" base
build "$new" new

ir() { # BIN DEV RING N -> total instructions
  valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" "$out/$1" "$2" "$3" "$4" "$BATCH" \
    >/dev/null 2>"$out/cg.err" || { cat "$out/cg.err" >&2; exit 1; }
  sed -n 's/^summary: //p' "$out/cg.out" | awk '{print $1}'
}

echo "# instructions per request (callgrind), N=$N, $BATCH per kick; base: $base, new: $new"
echo
echo "| case | base Ir/req | new Ir/req | new/base |"
echo "|---|---:|---:|---:|"
for c in $CASES; do
  dev=${c%%:*} ring=${c##*:}
  declare -A per=()
  for v in base new; do
    t=$(ir "$v" "$dev" "$ring" "$N") z=$(ir "$v" "$dev" "$ring" 0)
    per[$v]=$(awk -v t="$t" -v z="$z" -v n="$N" 'BEGIN {printf "%.0f", (t - z) / n}')
  done
  printf '| %s %s | %s | %s | %s |\n' "$dev" "$ring" "${per[base]}" "${per[new]}" \
    "$(awk -v a="${per[new]}" -v b="${per[base]}" 'BEGIN {printf "%.3f", a / b}')"
  unset per
done
rm -rf "$out"
