#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# libvhu's exported symbols are exactly what the public headers declare, by name and version:
#   - every extern function of include/vhu/**.h is in a global: list of src/libvhu.map, and the
#     map lists nothing else;
#   - libvhu.so's dynamic symbol table (nm -D --defined-only) defines exactly those, each with
#     a version of the map (VHU_x.y), nothing unversioned and nothing else.
# SKIP (77, loudly) without gcc (the declarations come from gcc -aux-info).
#
#   libvhu-abi.sh LIBVHU_SO MAP INCLUDE_DIR [GCC]
set -euo pipefail
(($# >= 3)) || { echo "usage: $0 LIBVHU_SO MAP INCLUDE_DIR [GCC]" >&2; exit 2; }
lib=$1 map=$2 inc=$3 cc=${4:-gcc}
syms=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../scripts" && pwd)/libvhu-symbols.sh
if ! command -v "$cc" >/dev/null; then
  echo "==== SKIP: libvhu ABI unchecked: no gcc for -aux-info (apt-get install gcc) ====" >&2
  exit 77
fi

fail=0
declared=$("$syms" declared "$inc" "$cc")
mapped=$("$syms" map "$map")
exported=$("$syms" exported "$lib")
exported_names=$(awk -F@ '{ print $1 }' <<<"$exported" | LC_ALL=C sort -u)
[[ -n $declared && -n $mapped && -n $exported ]] || { echo "FAIL: an empty symbol list" >&2; exit 1; }

# report TITLE LIST: print LIST under TITLE and fail when it is not empty
report() {
  [[ -z $2 ]] && return 0
  echo "FAIL: $1:" >&2
  awk '{ print "  " $0 }' <<<"$2" >&2
  fail=1
}
report "declared in include/vhu but not exported by $map (add them to a new version node)" \
  "$(comm -23 <(echo "$declared") <(echo "$mapped"))"
report "exported by $map but declared by no public header" \
  "$(comm -13 <(echo "$declared") <(echo "$mapped"))"
report "in $map but not defined by $lib (defined hidden, or not built)" \
  "$(comm -23 <(echo "$mapped") <(echo "$exported_names"))"
report "defined by $lib but not in $map" \
  "$(comm -13 <(echo "$mapped") <(echo "$exported_names"))"
# every symbol carries a version, and only versions the map names
nodes=$("$syms" nodes "$map")
report "exported without a version of $map ($(tr '\n' ' ' <<<"$nodes"))" \
  "$(grep -vE "@($(paste -sd'|' <<<"$nodes"))\$" <<<"$exported" || true)"

((fail == 0)) || exit 1
echo "libvhu-abi: ok: $(wc -l <<<"$exported") functions, declared = mapped = exported," \
  "versions $(paste -sd" " <<<"$nodes")"
