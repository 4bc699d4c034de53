#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Build the libFuzzer targets (tests/fuzz) with clang + ASan/UBSan and run each for SECONDS from
# its seed corpus. Fails on any crash, sanitizer report, leak or timeout; the input that did it
# is left in BUILD/fuzz-artifacts/. New corpus entries go to BUILD/fuzz-corpus/<target> (the
# repository's seeds are only read).
#   scripts/fuzz.sh SECONDS [TARGET...]      (make fuzz-check: 20 s each; make fuzz: FUZZ_SECONDS)
# Without clang or libFuzzer it prints a loud SKIP and exits 0 (scripts/deps.sh test installs
# them, so CI always fuzzes).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
secs=${1:?usage: $0 SECONDS [TARGET...]}
shift
build=${FUZZ_BUILD:-build-fuzz}
targets=("$@")
((${#targets[@]})) || targets=(fuzz_session fuzz_vq fuzz_dev fuzz_vqd fuzz_vvu_dev fuzz_vfu_server fuzz_mpqemu fuzz_vvu_driver)

skip() {
  echo "######################################################################" >&2
  echo "### SKIP: fuzz targets NOT run: $*" >&2
  echo "### (scripts/deps.sh test installs clang and libclang-rt-14-dev)" >&2
  echo "######################################################################" >&2
  exit 0
}

command -v clang >/dev/null 2>&1 || skip "clang not found"
if ! printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return 0; }\n' |
     clang -x c -fsanitize=fuzzer -o /dev/null - >/dev/null 2>&1; then
  skip "clang cannot link -fsanitize=fuzzer (libFuzzer missing)"
fi

cd "$here"
if [[ ! -f $build/build.ninja ]]; then
  CC=clang meson setup "$build" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbuildtype=debug >/dev/null
fi
ninja -C "$build" $(printf 'tests/fuzz/%s ' "${targets[@]}") >/dev/null

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
failed=()
for t in "${targets[@]}"; do
  work=$build/fuzz-corpus/$t
  art=$build/fuzz-artifacts
  mkdir -p "$work" "$art"
  log=$build/fuzz-$t.log
  echo "fuzz: $t for ${secs}s (log: $log)"
  if "$build/tests/fuzz/$t" -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
       -print_final_stats=1 -artifact_prefix="$art/$t-" "$work" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
    { grep -E "^#[0-9]+[[:space:]]+DONE" "$log" || true; } | tail -1 | sed "s/^/fuzz: $t: /"
  else
    echo "fuzz: $t FAILED; the end of its log:" >&2
    grep -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)' "$log" | tail -40 >&2
    failed+=("$t")
  fi
done
if ((${#failed[@]})); then
  echo "fuzz: FAILED: ${failed[*]} (reproduce: $build/tests/fuzz/TARGET $build/fuzz-artifacts/TARGET-...)" >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${secs}s each without a finding"
