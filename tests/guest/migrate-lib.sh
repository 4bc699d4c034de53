# SPDX-License-Identifier: BSD-3-Clause
# shellcheck shell=bash
# Live-migration helpers of the real-guest tests (migrate.sh, migrate-net.sh); sources lib.sh.
# Two QEMUs, "sides" a and b, each with its own logs and QMP in $dir/SIDE; the guest moves
# between them over $dir/mig.sock. Guests get 256 MiB less 8 KiB unless GUEST_MEM says otherwise:
# QEMU 7.2 under TCG loses guest stores during a migration when the RAM block is a multiple of
# 256 KiB (the fast path of cpu_physical_memory_sync_dirty_bitmap clears the migration bitmap
# without resetting the TCG TLB's not-dirty marks, so a page the CPU keeps writing through a
# cached TLB entry is never dirty again; fixed in QEMU 9.0 by "physmem: Fix migration dirty
# bitmap coherency with TCG memory access"). A size that is not such a multiple takes the slow
# path, which resets the TLB. (-m is rounded up to 8 KiB.)
#
#   mig_setup "$@"                                the script's VHUD [WORKDIR] arguments: checks
#                     vhud and the guest prerequisites, sets $dir (fresh per-side logs)
#   mig_qemu_start S [incoming] -- QEMU ARGS...   boot side S (or wait for an incoming guest);
#                     the previous guest's result.log of S is appended to $dir/result.log first
#   mig_qmp S JSON [SECS]                         one QMP command to side S
#   mig_field S REGEX                             first group of REGEX in query-migrate's reply
#   mig_wait_line S REGEX SECS                    wait for a line on S's result port
#   mig_begin SRC                                 start the migration; near the end of its
#                                                 first pass, hold it iterative
#   mig_release SRC DST                           let it complete; DST must be running
#   mig_stop S                                    quit side S's QEMU
#   mig_finish S                                  wait for the guest on side S to end, then
#                     collect both sides' result logs in $dir/result.log and check them
# Each returns 1 with a message (guest_log) on failure. mig_kill_all: stop every QEMU left.

GUEST_MEM=${GUEST_MEM:-262136K}
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

declare -A mig_pid=() mig_qmp_in=() mig_qmp_out=()
MIG_HOLD_PASS=${MIG_HOLD_PASS:-2}

mig_setup() {
  (($# >= 1)) || { echo "usage: $0 VHUD [WORKDIR]" >&2; exit 2; }
  guest_vhud "$1"
  guest_require
  guest_workdir "${2:-}"
  rm -rf "$dir/a" "$dir/b" "$dir/result.log"
}

mig_qemu_start() {
  local s=$1 sdir=$dir/$1 extra=()
  shift
  if [[ $1 == incoming ]]; then
    rm -f "$dir/mig.sock"; extra=(-incoming "unix:$dir/mig.sock"); shift
  fi
  [[ $1 == -- ]] && shift
  mkdir -p "$sdir"
  [[ -f $sdir/result.log ]] && tr -d '\r' <"$sdir/result.log" >>"$dir/result.log"
  guest_qmp_args "$sdir"
  guest_qemu_start "$sdir" "$dir/initrd.cpio.gz" "${GUEST_QMP_ARGS[@]}" "${extra[@]}" "$@"
  mig_pid[$s]=$GUEST_QEMU_PID
  GUEST_QEMU_PID=
  guest_qmp_connect "$sdir"
  mig_qmp_in[$s]=$GUEST_QMP_IN
  mig_qmp_out[$s]=$GUEST_QMP_OUT
}

mig_qmp() { GUEST_QMP_IN=${mig_qmp_in[$1]} GUEST_QMP_OUT=${mig_qmp_out[$1]} guest_qmp "$2" "${3:-30}"; }

mig_field() {
  local reply
  reply=$(mig_qmp "$1" '{"execute":"query-migrate"}' 10) || return 1
  [[ $reply =~ $2 ]] && echo "${BASH_REMATCH[1]}"
}
mig_syncs() { mig_field "$1" '"dirty-sync-count": ([0-9]+)' || echo 0; }
mig_status() { mig_field "$1" '"status": "([a-z-]+)"' || echo unknown; }

mig_wait_line() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -qE "$2" "$dir/$1/result.log" 2>/dev/null && return 0
    kill -0 "${mig_pid[$1]}" 2>/dev/null || { guest_log "QEMU $1 ended"; return 1; }
    sleep 0.1
  done
  guest_log "timed out waiting for /$2/ from side $1"
  return 1
}

mig_begin() {
  local src=$1 i rem=-1 st stage=0
  # The first pass at 32 MiB/s, its last 16 MiB at 4 MiB/s, and as soon as QEMU has finished it
  # (the second log sync) 1 KiB/s: the second pass then never ends, so QEMU never compares what
  # is dirty with what the downtime allows, and the migration stays iterative (the guest runs,
  # the backend logs) until mig_release, with every page copied once already: a page the device
  # writes from here on reaches the destination only if it is logged. (Held during the first
  # pass, the rings and buffers the kernel allocated last, at the top of memory, would still be
  # due and copied fresh at the end, and a missing log would go unseen.) Holding by the downtime
  # limit alone is not enough (QEMU completes as soon as one short pass finds almost nothing
  # dirty), and neither is a low rate in force when QEMU completes: it keeps the rate in its
  # stopped final phase, whose main loop then blocks for as long as the rate says (QMP
  # unanswered). At 4 MiB/s the second pass lasts long enough for the poll below to catch it.
  # MIG_HOLD_PASS=1 holds in the first pass's last 512 KiB instead (migrate-net.sh: see there).
  mig_qmp "$src" '{"execute":"migrate-set-parameters","arguments":{"max-bandwidth":33554432,"downtime-limit":1}}' >/dev/null ||
    return 1
  mig_qmp "$src" "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:$dir/mig.sock\"}}" >/dev/null ||
    { guest_log "migrate refused (does the backend offer dirty logging?)"; return 1; }
  for ((i = 0; i < 1200 && stage < 2; i++)); do
    rem=$(mig_field "$src" '"remaining": ([0-9]+)') || rem=-1
    if ((stage == 0 && rem >= 0 && rem < 16 << 20)); then
      mig_qmp "$src" '{"execute":"migrate-set-parameters","arguments":{"max-bandwidth":4194304}}' >/dev/null ||
        return 1
      stage=1
    fi
    if ((stage == 1)) && { ((MIG_HOLD_PASS == 1 && rem >= 0 && rem < 512 << 10)) ||
                         (($(mig_syncs "$src") >= 2)); }; then
      mig_qmp "$src" '{"execute":"migrate-set-parameters","arguments":{"max-bandwidth":1024}}' >/dev/null ||
        return 1
      stage=2
    fi
    sleep 0.02
  done
  st=$(mig_status "$src")
  if [[ $st != active ]] || ((stage < 2)); then
    guest_log "migration not held ($st, stage $stage): $(mig_qmp "$src" '{"execute":"query-migrate"}' 10)"
    return 1
  fi
  guest_log "held in pass $(mig_syncs "$src") with $(($(mig_field "$src" '"remaining": ([0-9]+)') >> 10)) KiB of it left"
}

mig_release() {
  local src=$1 dst=$2 i st
  st=$(mig_status "$src")
  [[ $st == active ]] ||
    { guest_log "migration $st before it was released: $(mig_qmp "$src" '{"execute":"query-migrate"}' 10)"; return 1; }
  mig_qmp "$src" '{"execute":"migrate-set-parameters","arguments":{"max-bandwidth":1073741824,"downtime-limit":5000}}' >/dev/null ||
    return 1
  for ((i = 0; i < 600; i++)); do
    st=$(mig_status "$src")
    [[ $st == completed ]] && break
    [[ $st == failed || $st == cancelled ]] && { guest_log "migration $st"; return 1; }
    sleep 0.1
  done
  [[ $st == completed ]] || { guest_log "migration did not complete"; return 1; }
  mig_qmp "$dst" '{"execute":"query-status"}' | grep -q '"running"' ||
    { guest_log "side $dst is not running after the migration"; return 1; }
}

mig_stop() {
  local s=$1
  [[ -n ${mig_pid[$s]:-} ]] || return 0
  mig_qmp "$s" '{"execute":"quit"}' 10 >/dev/null || true
  wait "${mig_pid[$s]}" 2>/dev/null || true
  eval "exec ${mig_qmp_in[$s]}>&- ${mig_qmp_out[$s]}>&-"
  unset "mig_pid[$s]"
}

mig_finish() {
  local s=$1 rc=0
  wait "${mig_pid[$s]}" || rc=$?
  unset "mig_pid[$s]"
  ((rc == 0)) || { guest_log "QEMU $s exited with status $rc"; return 1; }
  cat "$dir/a/result.log" "$dir/b/result.log" | tr -d '\r' >>"$dir/result.log"
  guest_check_results "$dir" || { guest_log "guest reported failures"; return 1; }
}

mig_kill_all() { # SIGTERM: the pid is timeout's, which passes it on to QEMU (a SIGKILL would not)
  local s
  for s in "${!mig_pid[@]}"; do
    kill -TERM "${mig_pid[$s]}" 2>/dev/null || true
    wait "${mig_pid[$s]}" 2>/dev/null || true
  done
  mig_pid=()
}
