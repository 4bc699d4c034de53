#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# libvhu's ABI, from three sides (src/libvhu.map, tests/cli/libvhu-abi.sh):
#
#   libvhu-symbols.sh declared INCLUDE_DIR [CC]   functions the public headers (INCLUDE_DIR/vhu/
#                                                 **.h) declare extern, one per line, sorted
#   libvhu-symbols.sh map MAP                     symbols the version script exports (every
#                                                 version node's global: list), sorted
#   libvhu-symbols.sh nodes MAP                   the version nodes of the script, sorted
#   libvhu-symbols.sh exported LIB                symbols LIB defines in its dynamic symbol
#                                                 table, as NAME@VERSION, sorted
#   libvhu-symbols.sh gen-map INCLUDE_DIR [CC]    a first version script (VHU_0.1) from the
#                                                 headers; how src/libvhu.map was made
#
# The declarations come from the compiler, not from a regex over C: gcc -aux-info writes every
# prototype of the translation unit with the file and line that declared it, and marks static
# inline functions (which must not be exported) as static. CC must be gcc (default: gcc).
set -euo pipefail

usage() { echo "usage: $0 declared|gen-map INCLUDE_DIR [CC] | map|nodes MAP | exported LIB" >&2; exit 2; }
(($# >= 2)) || usage

# made here, not in declared(): gen-map calls it in a subshell, whose variables and traps die
# with it
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vhu-symbols.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

declared() {
  local inc cc
  inc=$(cd "$1" && pwd -P)
  cc=${2:-gcc}
  (cd "$inc" && find vhu -name '*.h' | LC_ALL=C sort | sed 's/.*/#include "&"/') >"$tmp/all.c"
  [[ -s $tmp/all.c ]] || { echo "$0: no headers under $inc/vhu" >&2; return 1; }
  "$cc" -std=gnu11 -D_GNU_SOURCE -I"$inc" -fsyntax-only -aux-info "$tmp/aux" "$tmp/all.c"
  # /* INC/vhu/x.h:LINE:NC */ extern TYPE NAME (ARGS);  (NC: a declaration, not a definition)
  awk -v dir="$inc/vhu/" 'index($2, dir) == 1 && $4 == "extern"' "$tmp/aux" |
    sed -nE 's:^/\* [^ ]+ \*/ extern [^(]*[ *](vhu_[A-Za-z0-9_]+) \(.*:\1:p' | LC_ALL=C sort -u
}

case $1 in
  declared) declared "$2" "${3:-}" ;;
  map)
    # every node's "NODE { global: a; b; local: *; } PARENT;": the names after global: up to
    # local: or the end of the node; comments dropped
    perl -0ne 's{/\*.*?\*/}{}gs;
      while (/\{(.*?)\}/gs) {
        my $body = $1;
        next unless $body =~ /global:(.*?)(?:local:|$)/s;
        print "$_\n" for grep { length } map { s/^\s+|\s+$//gr } split /;/, $1;
      }' "$2" | LC_ALL=C sort -u ;;
  nodes)
    # the version nodes a script defines (VHU_0.1, ...)
    perl -0ne 's{/\*.*?\*/}{}gs; print "$1\n" while /([A-Za-z_][A-Za-z0-9_.]*)\s*\{/g' "$2" |
      LC_ALL=C sort -u ;;
  exported)
    # NAME@@VERSION (default) and NAME@VERSION; the version nodes themselves (ABS) are left out
    nm -D --defined-only "$2" | awk '$2 != "A" { print $3 }' | sed 's/@@*/@/' | LC_ALL=C sort -u ;;
  gen-map)
    syms=$(declared "$2" "${3:-}")
    cat <<'EOF'
/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libvhu's exported symbols, by name: every function the public headers (include/vhu) declare.
 * First made by `scripts/libvhu-symbols.sh gen-map include`; tests/cli/libvhu-abi.sh fails when
 * a header declares a function missing here or this exports one no header declares.
 * Released nodes never change: a new function goes into a new node that inherits the last one,
 *   VHU_0.2 { global: vhu_new_thing; } VHU_0.1;
 * and a removed or changed one needs a new SONAME (meson.build: soversion).
 */
VHU_0.1 {
  global:
EOF
    awk '{ print "    " $0 ";" }' <<<"$syms"
    printf '  local:\n    *;\n};\n' ;;
  *) usage ;;
esac
