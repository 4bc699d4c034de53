# SPDX-License-Identifier: BSD-3-Clause
# shellcheck shell=bash
# Shared helpers of the tests/cli scripts; source it from a bash test script that has set
# VHUD. It makes $dir (removed at exit, pass or fail, unless VHU_KEEP_TMP=1; any vhud and
# $helpers still running are killed) and runs one vhud at a time, listening on $sock (the caller
# sets it).
#
#   fail MESSAGE          print FAIL and the end of vhud's log; exit 1
#   start_vhud ARGS...    vhud ARGS --socket-path $sock in the background ($pid); wait for it
#   start_vhud_on S ARGS... vhud ARGS in the background ($pid); wait until socket S listens
#   stop_vhud             SIGTERM; vhud must exit 0

dir=$(mktemp -d "${TMPDIR:-/tmp}/vhu-$(basename "$0" .sh).XXXXXX")
pid=
helpers=() # pids of the script's own helper processes, killed at exit too

cli_cleanup() {
  if [[ -n $pid ]]; then kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  for h in "${helpers[@]}"; do kill -KILL "$h" 2>/dev/null || true; wait "$h" 2>/dev/null || true; done
  if [[ ${VHU_KEEP_TMP:-} == 1 ]]; then echo "work dir kept: $dir (VHU_KEEP_TMP=1)" >&2
  else rm -rf "$dir"; fi
}
trap cli_cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  [[ -f $dir/vhud.log ]] && { echo "----- vhud log -----" >&2; tail -n 30 "$dir/vhud.log" >&2; }
  exit 1
}

# start_vhud_on SOCKET ARGS...: vhud ARGS in the background ($pid); wait until SOCKET listens
start_vhud_on() {
  local s=$1
  shift
  rm -f "$s"
  "$VHUD" "$@" </dev/null >"$dir/vhud.log" 2>&1 &
  pid=$!
  for ((i = 0; i < 100; i++)); do
    [[ -S $s ]] && return 0
    kill -0 "$pid" 2>/dev/null || fail "vhud $* exited at start"
    sleep 0.05
  done
  fail "vhud $* did not listen on $s"
}

# shellcheck disable=SC2154 # the caller sets sock
start_vhud() { start_vhud_on "$sock" "$@" --socket-path "$sock"; }

stop_vhud() {
  local rc=0
  kill -TERM "$pid"
  wait "$pid" || rc=$?
  pid=
  ((rc == 0)) || fail "vhud exited with $rc after SIGTERM"
  # vhud prints no counters today; show them if it ever does
  grep -iE 'packets|drops' "$dir/vhud.log" || true
}
