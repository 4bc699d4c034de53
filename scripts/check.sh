#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# make check: the stages in order, the first failure ends the run. The last line is the verdict,
#   make check: PASS (6 stages; tests N ok, M skip; asan ...; fuzz ...; guest ...)
#   make check: FAIL in STAGE (the tests that failed; stages passed: ...)
# with exit status 0 or 1 to match (on failure make adds its own "Error 1" line after it).
#   scripts/check.sh MAKE        (BUILD and ASAN_BUILD from the environment; the Makefile sets them)
set -uo pipefail
make_cmd=${1:?usage: $0 MAKE}
BUILD=${BUILD:-build}
ASAN_BUILD=${ASAN_BUILD:-build-asan}
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

passed=() notes=()
# meson_results DIR: two lines from DIR's testlog.json (the last `meson test` there): the counts
# ("41 ok, 2 skip") and the tests that did not pass ("guest-net FAIL, ..."; may be empty)
meson_results() {
  python3 - "$1/meson-logs/testlog.json" <<'EOF'
import collections, json, sys
n, bad = collections.Counter(), []
try:
    for line in open(sys.argv[1]):
        t = json.loads(line)
        n[t["result"]] += 1
        if t["result"] not in ("OK", "SKIP", "EXPECTEDFAIL"):
            bad.append("%s %s" % (t["name"].split(" / ")[-1], t["result"]))
except (OSError, ValueError):
    print("no test log\n")
    sys.exit(0)
print(", ".join(["%d ok" % n.pop("OK", 0)] + ["%d %s" % (c, r.lower()) for r, c in sorted(n.items())]))
print(", ".join(bad))
EOF
}
# stage NAME [--meson DIR | --log FILE] -- CMD...: run CMD; with --meson, note its test counts;
# with --log, keep a copy of its output in FILE for the caller
stage() {
  local name=$1 meson='' log='' rc=0 counts='' bad='' ok
  shift
  case $1 in
    --meson) meson=$2; shift 2 ;;
    --log) log=$2; shift 2 ;;
  esac
  shift # --
  echo "== make check: $name: $*"
  [[ -n $meson ]] && rm -f "$meson/meson-logs/testlog.json"
  if [[ -n $log ]]; then "$@" 2>&1 | tee "$log" || rc=$?; else "$@" || rc=$?; fi
  if [[ -n $meson ]]; then
    { IFS= read -r counts; IFS= read -r bad; } < <(meson_results "$meson")
    notes+=("$name $counts")
  fi
  if ((rc != 0)); then
    ok=$(printf '%s, ' "${passed[@]}")
    ok=${ok%, }
    echo "make check: FAIL in $name (${bad:+failed: $bad; }stages passed: ${ok:-none})"
    exit 1
  fi
  passed+=("$name")
}

stage deps -- "$make_cmd" deps-test
stage build -- "$make_cmd" build build-asan
stage tests --meson "$BUILD" -- meson test -C "$BUILD" --print-errorlogs --num-processes 2 \
  --no-suite guest
stage asan --meson "$ASAN_BUILD" -- "$make_cmd" test-asan
stage fuzz --log "$BUILD/check-fuzz.log" -- "$make_cmd" fuzz-check
if grep -q '### SKIP' "$BUILD/check-fuzz.log"; then notes+=("fuzz SKIPPED (no clang/libFuzzer)")
else notes+=("fuzz $(grep -o 'all [0-9]* targets ran [0-9]*s each' "$BUILD/check-fuzz.log" || echo ran)"); fi
stage guest --meson "$BUILD" -- "$make_cmd" test-guest
summary=$(printf '%s; ' "${notes[@]}")
echo "make check: PASS (${#passed[@]} stages; ${summary%; })"
