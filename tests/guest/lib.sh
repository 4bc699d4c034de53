# SPDX-License-Identifier: BSD-3-Clause
# shellcheck shell=bash
# Shared helpers of the real-guest tests; source it from a bash test script.
#
#   guest_vhud PATH               check the vhud binary (fail if missing) and set $vhud to its
#                                 absolute path
#   guest_require                 skip (exit 77, loudly) unless QEMU, busybox-static, cpio, modinfo
#                                 and the cached guest kernel are all there
#   guest_mkinitramfs OUT MODS... -- SCRIPT [EXTRA...]
#   guest_qemu_start DIR INITRD [QEMU ARGS...]   boot in the background (GUEST_QEMU_PID);
#                                 DIR gets console.log (ttyS0), result.log (ttyS1), qemu.log
#   guest_qemu_wait               wait for it; returns QEMU's (or timeout's) exit status
#   guest_wait_line DIR REGEX SECS   wait until result.log has a matching line (0) or not (1)
#   guest_wait_socket PATH SECS [PID] wait until a listening unix socket exists
#   guest_check_results DIR       print RESULT lines; 0 iff >=1 PASS, no FAIL, and DONE
#   guest_dump DIR                print the logs (on failure)
#   guest_bin_extras BIN DEST     add to GUEST_EXTRAS the mkinitramfs EXTRA arguments that put
#                                 BIN at DEST and its shared libraries (ldd) at their own paths
#   guest_e2fs_extras             the same for the host's mkfs.ext4 and e2fsck (at /opt/e2/),
#                                 and mke2fs.conf (busybox mke2fs makes only ext2)
#   guest_extras_clear            empty GUEST_EXTRAS (for another initramfs)
#   guest_workdir [DIR [STALE...]] set $dir to DIR's absolute path (made if missing; the files
#                                 STALE, globs, removed), or to a new temporary directory
#                                 (auto_dir=1: guest_on_exit removes it)
#   trap 'guest_on_exit CLEANUP [WORKDIR]' EXIT   the EXIT trap of every test: the test's own
#                                 CLEANUP (processes, namespaces), then its work dir ($dir unless
#                                 WORKDIR): after a failure whose logs no guest_dump printed, the
#                                 *.log and *.cmd files in it are printed; then a directory the
#                                 test made is removed (pass, fail or skip) unless VHU_KEEP_TMP=1
#   guest_pass                    the last line of a passing test ("PASS", where logs stay)
#   guest_netns_usable            0 when a network namespace with a tap in it can be made here;
#                                 else prints one FAIL line saying why and returns 1
#
# Env: GUEST_TIMEOUT (s, default 300), GUEST_SMP (default 1), GUEST_MEM (MiB, default 512; or
#      with QEMU's own unit suffix, e.g. 262136K),
#      GUEST_MEM_FILE (guest RAM in this file, memory-backend-file, instead of a memfd),
#      GUEST_APPEND (extra kernel cmdline), QEMU (default qemu-system-x86_64),
#      VHU_GUEST_CACHE (default <repo>/.cache/guest), VHU_KEEP_TMP=1 (keep the work dirs).

PATH=$PATH:/usr/sbin:/sbin   # modinfo lives in /usr/sbin
GUEST_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
GUEST_REPO=$(cd "$GUEST_LIB_DIR/../.." && pwd -P)
GUEST_CACHE=${VHU_GUEST_CACHE:-$GUEST_REPO/.cache/guest}
GUEST_TIMEOUT=${GUEST_TIMEOUT:-300}
GUEST_SMP=${GUEST_SMP:-1}
GUEST_MEM=${GUEST_MEM:-512}
QEMU=${QEMU:-qemu-system-x86_64}
GUEST_QEMU_PID=
GUEST_NAME=${GUEST_NAME:-$(basename "$0" .sh)}
export GUEST_NAME

guest_log() { echo "[$GUEST_NAME] $*" >&2; }

guest_skip() {
  {
    echo "#####################################################################"
    echo "### SKIP $GUEST_NAME: $*"
    echo "### The real-guest test did NOT run. Run 'scripts/deps.sh test' (root)."
    echo "#####################################################################"
  } >&2
  exit 77
}

guest_vhud() {
  [[ -x $1 ]] || { guest_log "vhud binary '$1' not found or not executable"; exit 1; }
  vhud=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
}

guest_require() {
  command -v "$QEMU" >/dev/null 2>&1 || guest_skip "$QEMU not found (package qemu-system-x86)"
  [[ -x /bin/busybox ]] || guest_skip "/bin/busybox not found (package busybox-static)"
  command -v cpio >/dev/null 2>&1 || guest_skip "cpio not found (package cpio)"
  command -v modinfo >/dev/null 2>&1 || guest_skip "modinfo not found (package kmod)"
  command -v timeout >/dev/null 2>&1 || guest_skip "timeout not found (package coreutils)"
  [[ -f $GUEST_CACHE/vmlinuz && -f $GUEST_CACHE/kver ]] ||
    guest_skip "no guest kernel in $GUEST_CACHE (run scripts/guest-kernel.sh)"
  export GUEST_KVER; GUEST_KVER=$(cat "$GUEST_CACHE/kver")
  GUEST_KERNEL=$GUEST_CACHE/vmlinuz
}

guest_mkinitramfs() { VHU_GUEST_CACHE=$GUEST_CACHE "$GUEST_LIB_DIR/mkinitramfs.sh" "$@"; }

guest_qemu_start() {
  local dir=$1 initrd=$2; shift 2
  local size=$GUEST_MEM
  [[ $size == *[0-9] ]] && size=${size}M
  local mem="memory-backend-memfd,id=mem,size=$size,share=on"
  [[ -n ${GUEST_MEM_FILE:-} ]] &&
    mem="memory-backend-file,id=mem,size=$size,share=on,mem-path=$GUEST_MEM_FILE"
  : >"$dir/console.log"; : >"$dir/result.log"
  # shellcheck disable=SC2054 # commas are QEMU option syntax
  local cmd=(timeout --kill-after=10 "$GUEST_TIMEOUT"
    "$QEMU" -accel tcg -m "$size"
    -object "$mem" -numa node,memdev=mem
    -smp "$GUEST_SMP" -nodefaults -no-user-config -display none
    -kernel "$GUEST_KERNEL" -initrd "$initrd"
    -append "console=ttyS0 panic=-1 quiet ${GUEST_APPEND:-}"
    -no-reboot
    -serial "file:$dir/console.log" -serial "file:$dir/result.log"
    "$@")
  printf '%q ' "${cmd[@]}" >"$dir/qemu.cmd"; echo >>"$dir/qemu.cmd"
  "${cmd[@]}" </dev/null >"$dir/qemu.log" 2>&1 &
  GUEST_QEMU_PID=$!
  guest_log "QEMU started (pid $GUEST_QEMU_PID, timeout ${GUEST_TIMEOUT}s), logs in $dir"
}

guest_qemu_wait() {
  local rc=0
  [[ -n $GUEST_QEMU_PID ]] || return 0
  wait "$GUEST_QEMU_PID" || rc=$?
  GUEST_QEMU_PID=
  if ((rc == 124 || rc == 137)); then
    guest_log "QEMU hit the ${GUEST_TIMEOUT}s timeout"
  elif ((rc != 0)); then
    guest_log "QEMU exited with status $rc"
  fi
  return "$rc"
}

guest_qemu_kill() {
  [[ -n $GUEST_QEMU_PID ]] || return 0
  kill "$GUEST_QEMU_PID" 2>/dev/null || true
  wait "$GUEST_QEMU_PID" 2>/dev/null || true
  GUEST_QEMU_PID=
}

guest_wait_line() {
  local dir=$1 re=$2 secs=$3 i
  for ((i = 0; i < secs * 10; i++)); do
    grep -qE "$re" "$dir/result.log" 2>/dev/null && return 0
    if [[ -n $GUEST_QEMU_PID ]] && ! kill -0 "$GUEST_QEMU_PID" 2>/dev/null; then
      grep -qE "$re" "$dir/result.log" 2>/dev/null && return 0
      guest_log "QEMU ended while waiting for /$re/"
      return 1
    fi
    sleep 0.1
  done
  guest_log "timed out after ${secs}s waiting for /$re/ on the result port"
  return 1
}

guest_wait_socket() {
  local path=$1 secs=$2 pid=${3:-} i
  for ((i = 0; i < secs * 10; i++)); do
    [[ -S $path ]] && return 0
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      guest_log "process $pid died before creating $path"
      return 1
    fi
    sleep 0.1
  done
  guest_log "socket $path did not appear within ${secs}s"
  return 1
}

guest_check_results() {
  local dir=$1 pass=0 fail=0 done=0 line
  while IFS= read -r line; do
    line=${line%$'\r'}
    case $line in
      "RESULT PASS "*) pass=$((pass + 1)); guest_log "$line" ;;
      "RESULT FAIL "*) fail=$((fail + 1)); guest_log "$line" ;;
      "RESULT DONE"*) done=1 ;;
      RESULT*) guest_log "$line" ;;
    esac
  done <"$dir/result.log"
  if ((done == 0)); then
    guest_log "guest did not finish (no RESULT DONE): crash, panic or timeout"
    return 1
  fi
  ((fail == 0 && pass > 0)) || { guest_log "$pass passed, $fail failed"; return 1; }
  guest_log "$pass passed, 0 failed"
  return 0
}

# guest_workdir ARG [STALE...]: dir = ARG (made if missing; the files STALE, globs relative to it,
# removed) or a fresh temporary one (auto_dir=1: guest_on_exit removes it); dir absolute. Sets
# the EXIT trap to guest_on_exit until the test sets its own.
# shellcheck disable=SC2034 # dir and auto_dir are the caller's
guest_workdir() {
  local p
  auto_dir=0
  if [[ -z ${1:-} ]]; then
    dir=$(mktemp -d "${TMPDIR:-/tmp}/vhu-$GUEST_NAME.XXXXXX"); auto_dir=1
  else
    dir=$1; mkdir -p "$dir"
    for p in "${@:2}"; do rm -rf "$dir"/$p; done
  fi
  trap 'guest_on_exit :' EXIT
  dir=$(cd "$dir" && pwd)
}

# guest_kill_wait PID: SIGKILL a backend the test started (no-op for an empty PID) and reap it
guest_kill_wait() {
  [[ -n ${1:-} ]] || return 0
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# guest_dump_globs DIR PATTERN...: guest_dump plus the files of DIR matching the patterns
guest_dump_globs() {
  local dir=$1 logs=() f p
  shift
  for p in "$@"; do
    for f in "$dir"/$p; do [[ -e $f ]] && logs+=("${f##*/}"); done
  done
  guest_dump "$dir" ${logs[@]+"${logs[@]}"}
}

GUEST_DUMPED=0
guest_dump() {
  local dir=$1 f
  GUEST_DUMPED=1
  for f in qemu.cmd qemu.log console.log result.log "$@"; do
    [[ -s $dir/$f ]] || continue
    echo "----- $dir/$f (last 150 lines) -----" >&2
    tail -n 150 "$dir/$f" | tr -d '\r' >&2
  done
  echo "----- end of logs -----" >&2
}

# guest_on_exit CLEANUP [WORKDIR]: see the top of this file. Keeps the exit status.
guest_on_exit() {
  local rc=$? work=${2-${dir:-}} f
  "$1" || true
  [[ -n $work && -d $work ]] || return 0
  if ((rc != 0 && rc != 77 && GUEST_DUMPED == 0)); then
    while IFS= read -r f; do
      [[ -s $f ]] || continue
      echo "----- $f (last 150 lines) -----" >&2
      tail -n 150 "$f" | tr -d '\r' >&2
    done < <(find "$work" -maxdepth 3 -type f \( -name '*.log' -o -name '*.cmd' \) | sort)
  fi
  if ((${auto_dir:-0} == 0)); then
    ((rc == 0)) || guest_log "logs in $work"
  elif [[ ${VHU_KEEP_TMP:-} == 1 ]]; then
    ((rc == 0)) || guest_log "logs in $work (VHU_KEEP_TMP=1)"
  else
    rm -rf "$work"
  fi
}
# The net tests hold their taps in a network namespace: root alone is not enough in a container
# or chroot (no CAP_SYS_ADMIN, no /run/netns to mount, no /dev/net/tun). Probed once, before the
# test builds anything, so that the failure is this one line and not an iproute2 error later.
guest_netns_usable() {
  local ns=vhu-probe-$$ err what
  if err=$(ip netns add "$ns" 2>&1); then
    what=tap
    err=$(ip -n "$ns" tuntap add dev vhuprobe0 mode tap 2>&1) && what=
    ip netns del "$ns" 2>/dev/null || true
    [[ -z $what ]] && return 0
    err=${err%%$'\n'*}
    guest_log "FAIL: tap devices are not usable here (ip tuntap add: ${err##*: }): the net guest" \
      "tests need root, network namespaces and /dev/net/tun"
    return 1
  fi
  err=${err%%$'\n'*}
  guest_log "FAIL: network namespaces are not usable here (ip netns add: ${err##*: }): the net" \
    "guest tests need root and network namespaces (not a container or chroot without" \
    "CAP_SYS_ADMIN)"
  return 1
}
guest_pass() {
  if ((auto_dir)) && [[ ${VHU_KEEP_TMP:-} != 1 ]]; then guest_log "PASS"
  else guest_log "PASS (logs in $dir)"; fi
}

GUEST_EXTRAS=()
declare -A GUEST_EXTRAS_SEEN=()
guest_bin_extras() {
  local bin=$1 dest=$2 lib
  GUEST_EXTRAS+=("$bin:$dest")
  while read -r lib; do
    [[ -n $lib && -z ${GUEST_EXTRAS_SEEN[$lib]:-} ]] || continue
    GUEST_EXTRAS_SEEN[$lib]=1
    GUEST_EXTRAS+=("$lib:$lib")
  done < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
}
guest_extras_clear() { GUEST_EXTRAS=(); GUEST_EXTRAS_SEEN=(); }
guest_e2fs_extras() {
  local bin
  for bin in mkfs.ext4 e2fsck; do guest_bin_extras "$(command -v $bin)" /opt/e2/$bin; done
  [[ -f /etc/mke2fs.conf ]] && GUEST_EXTRAS+=("/etc/mke2fs.conf:/etc/mke2fs.conf")
  return 0
}

# ---- QMP over a FIFO pair (no socat/python needed) -----------------------------------------
# guest_qmp_args DIR      sets GUEST_QMP_ARGS (QEMU options) and makes DIR/qmp.{in,out}
# guest_qmp_connect DIR   after guest_qemu_start: opens the FIFOs, negotiates capabilities
# guest_qmp JSON [SECS]   sends one command, prints its reply line; 1 on error reply/timeout
# guest_qmp_wait_chardev ID SECS [connected|disconnected]   wait for a socket chardev state
GUEST_QMP_IN='' GUEST_QMP_OUT=''
GUEST_QMP_ARGS=()
guest_qmp_args() {
  local dir=$1
  rm -f "$dir/qmp.in" "$dir/qmp.out"
  mkfifo "$dir/qmp.in" "$dir/qmp.out"
  # shellcheck disable=SC2054,SC2034 # commas are QEMU syntax; used by the caller
  GUEST_QMP_ARGS=(-chardev "pipe,id=qmp,path=$dir/qmp" -mon chardev=qmp,mode=control)
}
guest_qmp_connect() {
  local dir=$1
  # read-write opens of a FIFO never block, whether or not QEMU has opened its end yet
  exec {GUEST_QMP_IN}<>"$dir/qmp.in" {GUEST_QMP_OUT}<>"$dir/qmp.out"
  guest_qmp '{"execute":"qmp_capabilities"}' 30 >/dev/null
}
guest_qmp() {
  local qcmd=$1 secs=${2:-30} line end=$((SECONDS + ${2:-30}))
  echo "$qcmd" >&"$GUEST_QMP_IN"
  while ((SECONDS <= end)); do
    IFS= read -r -t "$secs" line <&"$GUEST_QMP_OUT" || break
    case $line in
      *'"return"'*) echo "$line"; return 0 ;;
      *'"error"'*) echo "$line"; guest_log "QMP error for $qcmd: $line"; return 1 ;;
    esac   # greeting and events are skipped
  done
  guest_log "QMP: no reply to $qcmd within ${secs}s"
  return 1
}
guest_qmp_wait_chardev() {
  local id=$1 secs=$2 want=${3:-connected} i reply state
  for ((i = 0; i < secs * 4; i++)); do
    reply=$(guest_qmp '{"execute":"query-chardev"}' 10) || return 1
    # a socket chardev's filename starts with "disconnected:" until it is connected
    if [[ $reply =~ \"filename\":\ \"([^\"]*)\",\ \"label\":\ \"$id\" ]]; then
      state=connected
      [[ ${BASH_REMATCH[1]} == disconnected:* ]] && state=disconnected
      [[ $state == "$want" ]] && return 0
    fi
    sleep 0.25
  done
  guest_log "chardev $id not $want within ${secs}s"
  return 1
}

# ---- transports: vhost-user directly, or through virtio-vhost-user ---------------------------
# guest_endpoint SOCK LOG   sets GUEST_EP, the transport arguments of a `vhud DEVICE` that QEMU
#                           reaches on SOCK. VHU_TRANSPORT=vhost-user (default): --socket-path
#                           SOCK. VHU_TRANSPORT=vvu: first starts `vhud vvu --socket-path SOCK
#                           --vfio-user SOCK.vfu` (the VVU device; log in LOG.vvu, pid in
#                           GUEST_VVU_PID) and the device gets --vvu vfio-user:SOCK.vfu, so
#                           QEMU's vhost-user session crosses the VVU device to the backend.
#                           Needs $vhud (guest_vhud). The caller starts the device, then stops
#                           the device before GUEST_VVU_PID.
GUEST_EP=() GUEST_VVU_PID= GUEST_VVU_ALL=()
guest_endpoint() {
  local sock=$1 log=$2
  GUEST_VVU_PID=
  case ${VHU_TRANSPORT:-vhost-user} in
    vhost-user) GUEST_EP=(--socket-path "$sock") ;;
    vvu)
      rm -f "$sock" "$sock.vfu"
      local cmd=("$vhud" vvu --socket-path "$sock" --vfio-user "$sock.vfu" ${VHUD_VVU_ARGS:-})
      printf '%q ' "${cmd[@]}" >"$log.vvu.cmd"
      "${cmd[@]}" </dev/null >"$log.vvu" 2>&1 &
      GUEST_VVU_PID=$!
      GUEST_VVU_ALL+=("$GUEST_VVU_PID")
      guest_log "VVU device (pid $GUEST_VVU_PID): $(cat "$log.vvu.cmd")"
      guest_wait_socket "$sock.vfu" 20 "$GUEST_VVU_PID" || return 1
      GUEST_EP=(--vvu "vfio-user:$sock.vfu")
      ;;
    *) guest_log "VHU_TRANSPORT must be vhost-user or vvu"; return 1 ;;
  esac
}
# guest_term PID WHAT: PID must be alive, exit within 10 s of SIGTERM, with status 0; else says
# why (naming WHAT) and returns 1
guest_term() {
  local pid=$1 what=$2 i rc=0
  kill -0 "$pid" 2>/dev/null || { guest_log "$what died during the test"; return 1; }
  kill -TERM "$pid"
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    guest_log "$what did not exit within 10 s of SIGTERM"
    kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    return 1
  fi
  wait "$pid" || rc=$?
  ((rc == 0)) || { guest_log "$what exited with status $rc after SIGTERM"; return 1; }
}
# guest_vvu_kill: SIGKILL every VVU device guest_endpoint started (cleanup after a failure)
guest_vvu_kill() {
  local pid
  for pid in ${GUEST_VVU_ALL[@]+"${GUEST_VVU_ALL[@]}"}; do
    kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  done
  GUEST_VVU_ALL=()
}
