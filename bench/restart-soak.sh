#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Restart soak (docs/recovery.md, docs/performance.md): a real guest (QEMU 7.2, TCG) writes,
# fsyncs and verifies 4 KiB blocks in a loop while the block backend is SIGKILLed and restarted
# N times; then, with NET=1, a guest TCP stream with an md5 survives N restarts of vhud net --tap.
#
#   bench/restart-soak.sh VHUD [WORKDIR]
#
# Env:
#   N=100            restarts per configuration
#   INTERVAL=1.5     seconds between restarts
#   CONFIGS="split:1:server split:1:client split:2:server split:2:client packed:1:server
#            packed:1:client packed:2:server packed:2:client"
#                    ring:queues:mode; mode server = vhud listens (QEMU reconnect=1),
#                    client = QEMU listens (server=on) and vhud connects (--client)
#   BACKEND=vhud     or qsd: qemu-storage-daemon's vhost-user-blk export restarted the same way
#                    (server mode only; it has no packed rings: QEMU falls back to split)
#   NET=1            the net run (needs root: ip netns, tap); NET_N restarts (default N)
#   BLOCKS=32        4 KiB blocks per writer (each is checked again at the end)
#   VHUD_ARGS        more vhud options (-v: debug logging in the backend logs)
#
# Every block the guest wrote and saw acknowledged (write + fsync) is read back at once and again
# at the end: a block that reads back zero is "lost", an older generation "stale", sectors of
# different generations "torn". All three must be 0 and the guest must see no I/O error. The
# longest guest-visible stall per restart is the longest write+fsync+read that overlapped it
# (resolution 10 ms, /proc/uptime). After the last restart, QEMU's open fds and the new
# backend's must come back to what they were while the first backend served (a leak per
# reconnect on either side fails it); the backend's RSS is reported beside them.
# Output: a summary line per configuration on stdout
# (RESULT ...), details in WORKDIR. Exit 0 pass, 1 fail, 77 skip.
set -euo pipefail
# shellcheck disable=SC2086 # VHUD_ARGS is a list of options
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GUEST_NAME=${GUEST_NAME:-restart-soak}
# shellcheck source=../tests/guest/lib.sh
. "$here/../tests/guest/lib.sh"

(($# >= 1)) || { echo "usage: $0 VHUD [WORKDIR]" >&2; exit 2; }
vhud=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
[[ -x $vhud ]] || { guest_log "vhud binary '$1' not found"; exit 1; }
guest_require
N=${N:-100}
INTERVAL=${INTERVAL:-1.5}
BACKEND=${BACKEND:-vhud}
CONFIGS=${CONFIGS-split:1:server split:1:client split:2:server split:2:client packed:1:server packed:1:client packed:2:server packed:2:client}
NET=${NET:-1}
NET_N=${NET_N:-$N}
# a guest runs about N * INTERVAL seconds plus its boot and final check
GUEST_TIMEOUT=$(awk -v n="$N" -v m="$NET_N" -v i="$INTERVAL" -v t="$GUEST_TIMEOUT" \
  'BEGIN { d = (n > m ? n : m) * i + 240; printf "%d", (d > t ? d : t) }')
if [[ $BACKEND == qsd ]]; then
  command -v qemu-storage-daemon >/dev/null || guest_skip "qemu-storage-daemon not found"
fi

# the net part needs a network namespace: probed before the blk part runs (minutes)
((NET && EUID == 0)) && [[ $BACKEND == vhud ]] && command -v ip >/dev/null && { guest_netns_usable || exit 1; }

top=${2:-}
auto_dir=0
if [[ -z $top ]]; then top=$(mktemp -d "${TMPDIR:-/tmp}/vhu-soak.XXXXXX"); auto_dir=1; fi
mkdir -p "$top"; top=$(cd "$top" && pwd)
((${#top} < 80)) || { guest_log "work dir path too long for unix sockets: $top"; exit 1; }

be_pid=
ns= ns_made=0 nc_pid=
cleanup() {
  guest_qemu_kill
  guest_kill_wait "$be_pid"; be_pid=
  guest_kill_wait "$nc_pid"; nc_pid=
  ((ns_made)) && { ip netns del "$ns" 2>/dev/null || true; ns_made=0; }
  return 0
}
trap 'guest_on_exit cleanup "$top"' EXIT
failures=0
cfg_fail() {
  guest_log "FAIL [$1]: $2"
  failures=$((failures + 1))
  cleanup
  guest_dump_globs "$3" 'be.*.log' 
}

# ---- blk --------------------------------------------------------------------------------------

# The guest: Q writers (one per queue, disjoint block ranges) write block b with generation g
# (every 512-byte sector says "B=b G=g"), fsync, read it back; each keeps the generation it
# last saw acknowledged per block; at the end every block is checked once more.
cat >"$top/blk-guest.sh" <<'GUEST'
. /extra/params
dev=/dev/vda
i=0
while [ ! -b $dev ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -b $dev ] || { result FAIL disk "no $dev"; exit 0; }
cs() { t=$(cut -d' ' -f1 /proc/uptime); echo "${t%.*}${t#*.}"; }
mkblk() { s=$(printf "%-511s" "B=$1 G=$2"); i=0; while [ $i -lt 8 ]; do echo "$s"; i=$((i + 1)); done; }
# classify FILE B G: why FILE is not block B of generation G (lost, stale or torn)
classify() {
  gens=$(cut -d' ' -f2 "$1" | sort -u | tr '\n' ' ')
  case "$gens" in
    "G=$3 ") echo ok ;;
    *" "*" "*) echo "torn $2 want G=$3 got $gens" ;;
    "G="*) echo "stale $2 want G=$3 got $gens" ;;
    *) echo "lost $2 want G=$3" ;;
  esac
}
writer() {
  w=$1 base=$(($1 * NB)) g=0
  mkdir -p /tmp/e$w
  while [ ! -e /tmp/stop ]; do
    g=$((g + 1)); b=$((base + g % NB))
    mkblk $b $g >/tmp/blk$w
    t0=$(cs)
    if ! timeout 120 dd if=/tmp/blk$w of=$dev bs=4096 seek=$b oflag=direct conv=notrunc,fsync 2>/tmp/err$w; then
      echo "ioerr write $b: $(tr '\n' ' ' </tmp/err$w)" >>/tmp/bad; continue
    fi
    if ! timeout 120 dd if=$dev of=/tmp/rb$w bs=4096 skip=$b count=1 iflag=direct 2>/tmp/err$w; then
      echo "ioerr read $b: $(tr '\n' ' ' </tmp/err$w)" >>/tmp/bad; continue
    fi
    t1=$(cs)
    [ $((t1 - t0)) -ge 5 ] && echo "$((t0 - T0)) $((t1 - t0))" >>/tmp/lat
    echo $g >/tmp/e$w/$b
    cmp -s /tmp/rb$w /tmp/blk$w || classify /tmp/rb$w $b $g >>/tmp/bad
    echo $g >/tmp/n$w
  done
}
T0=$(cs)
: >/tmp/lat; : >/tmp/bad
w=0
while [ $w -lt $QUEUES ]; do
  writer $w &   # with 2 vCPUs the two writers run on both, so both queues carry I/O
  w=$((w + 1))
done
signal IO-START $T0
sleep $DURATION
touch /tmp/stop
wait
# final check of every block
w=0 final=0
while [ $w -lt $QUEUES ]; do
  for f in /tmp/e$w/*; do
    [ -e "$f" ] || continue
    b=${f##*/} g=$(cat $f)
    timeout 120 dd if=$dev of=/tmp/fb bs=4096 skip=$b count=1 iflag=direct 2>/dev/null
    mkblk $b $g >/tmp/fw
    cmp -s /tmp/fb /tmp/fw || { classify /tmp/fb $b $g | sed 's/^/final /' >>/tmp/bad; }
    final=$((final + 1))
  done
  w=$((w + 1))
done
ops=0; for f in /tmp/n*; do [ -e $f ] && ops=$((ops + $(cat $f))); done
while read -r t l; do echo "LAT $t $l" >&3; done </tmp/lat
lost=$(grep -c '^\(final \)\{0,1\}lost' /tmp/bad || true)
stale=$(grep -c '^\(final \)\{0,1\}stale' /tmp/bad || true)
torn=$(grep -c '^\(final \)\{0,1\}torn' /tmp/bad || true)
ioerr=$(grep -c '^ioerr' /tmp/bad || true)
dm=$(dmesg | grep -ci 'I/O error' || true)
echo "COUNTS ops=$ops final=$final lost=$lost stale=$stale torn=$torn ioerr=$ioerr dmesg=$dm" >&3
if [ -s /tmp/bad ] || [ "$dm" != 0 ]; then
  result FAIL blocks "$(head -3 /tmp/bad | tr '\n' ' ') dmesg I/O errors: $dm"
else
  result PASS blocks "$ops write+fsync+read ops, $final blocks verified at the end"
fi
GUEST
start_backend() { # dir ring queues mode
  local dir=$1 queues=$3 mode=$4
  be_n=$((be_n + 1))
  if [[ $BACKEND == qsd ]]; then
    qemu-storage-daemon \
      --blockdev "driver=file,node-name=f,filename=$dir/disk.img,cache.direct=on" \
      --export "type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path=$dir/blk.sock,writable=on,num-queues=$queues" \
      </dev/null >"$dir/be.$be_n.log" 2>&1 &
  elif [[ $mode == client ]]; then
    "$vhud" blk --socket-path "$dir/blk.sock" --client --reconnect-ms 50 --file "$dir/disk.img" \
      --direct --num-queues "$queues" ${VHUD_ARGS:-} </dev/null >"$dir/be.$be_n.log" 2>&1 &
  else
    "$vhud" blk --socket-path "$dir/blk.sock" --file "$dir/disk.img" --direct \
      --num-queues "$queues" ${VHUD_ARGS:-} </dev/null >"$dir/be.$be_n.log" 2>&1 &
  fi
  be_pid=$!
  [[ $mode == client ]] || guest_wait_socket "$dir/blk.sock" 20 "$be_pid"
}

# stall_report DIR: per restart, the longest op overlapping [t_k - 0.3, t_k + INTERVAL - 0.3)
stall_report() {
  local dir=$1
  awk -v iv="$INTERVAL" '
    FNR == NR { r[n++] = $1; next }                         # restart times, s after IO-START
    $1 == "LAT" { s[m] = $2 / 100; l[m] = $3 / 100; m++ }
    END {
      for (k = 0; k < n; k++) {
        best = 0
        for (j = 0; j < m; j++)
          if (s[j] + l[j] >= r[k] - 0.3 && s[j] < r[k] + iv - 0.3 && l[j] > best) best = l[j]
        st[k] = best
      }
      # sort
      for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (st[j] < st[i]) { t = st[i]; st[i] = st[j]; st[j] = t }
      if (n == 0) { print "stalls: none measured"; exit }
      printf "stall per restart (s): min %.2f median %.2f p90 %.2f max %.2f over %d restarts\n",
        st[0], st[int(n / 2)], st[int(n * 0.9)], st[n - 1], n
    }' "$dir/restarts" "$dir/result.log"
}

fds_of() { local f=(/proc/"$1"/fd/*); [[ -e ${f[0]} ]] && echo "${#f[@]}" || echo -1; }
rss_of() { awk '/^VmRSS/ { print $2 }' /proc/"$1"/status 2>/dev/null || echo -1; }

# fds_baseline: the open fds of QEMU and of the backend while the first backend serves
# (QEMU runs under timeout(1): GUEST_QEMU_PID is timeout's, QEMU its child)
fds_baseline() {
  qemu_pid=$(pgrep -P "$GUEST_QEMU_PID" | head -1)
  q_fd0=$(fds_of "${qemu_pid:-0}"); b_fd0=$(fds_of "$be_pid"); b_rss0=$(rss_of "$be_pid")
}

# fds_back DIR: after the last restart, QEMU's and the new backend's fds return to the
# baseline once the session is up again (polled for up to 3 s, while the guest still runs);
# a leak per reconnect on either side stays above it. Sets fds_note for the RESULT line.
fds_back() {
  local q b i
  for ((i = 0; i < 30; i++)); do
    q=$(fds_of "${qemu_pid:-0}"); b=$(fds_of "$be_pid")
    ((q == q_fd0 && b == b_fd0)) && break
    sleep 0.1
  done
  fds_note="fds QEMU $q_fd0 -> $q, backend $b_fd0 -> $b (RSS KiB $b_rss0 -> $(rss_of "$be_pid"))"
  ((q == q_fd0 && b == b_fd0))
}

run_blk() { # ring:queues:mode
  local ring queues mode dir packed rc k t0 now
  IFS=: read -r ring queues mode <<<"$1"
  [[ $BACKEND == qsd && $mode == client ]] && { guest_log "[$1] qsd has no client mode: skipped"; return 0; }
  dir=$top/blk-$BACKEND-$ring-$queues-$mode
  rm -rf "$dir"; mkdir -p "$dir"
  truncate -s 16M "$dir/disk.img"
  be_n=0
  local duration
  duration=$(awk -v n="$N" -v i="$INTERVAL" 'BEGIN { printf "%d", n * i + 3 }')
  printf 'QUEUES=%s\nDURATION=%s\nNB=%s\n' "$queues" "$duration" "${BLOCKS:-32}" >"$dir/params"
  guest_mkinitramfs "$dir/initrd.cpio.gz" virtio_pci virtio_blk -- "$top/blk-guest.sh" \
    "$dir/params" 2>"$dir/mkinitramfs.log" || { cat "$dir/mkinitramfs.log" >&2; return 1; }
  packed=off; [[ $ring == packed ]] && packed=on
  local chardev="socket,id=c0,path=$dir/blk.sock,reconnect=1"
  [[ $mode == client ]] && chardev="socket,id=c0,path=$dir/blk.sock,server=on,wait=off"
  [[ $mode == client ]] || start_backend "$dir" "$ring" "$queues" "$mode" || { cfg_fail "$1" "backend did not start" "$dir"; return 0; }
  GUEST_SMP=$queues guest_qemu_start "$dir" "$dir/initrd.cpio.gz" -chardev "$chardev" \
    -device "vhost-user-blk-pci,chardev=c0,num-queues=$queues,packed=$packed"
  if [[ $mode == client ]]; then
    guest_wait_socket "$dir/blk.sock" 20 "$GUEST_QEMU_PID" || { cfg_fail "$1" "QEMU did not listen" "$dir"; return 0; }
    start_backend "$dir" "$ring" "$queues" "$mode"
  fi
  guest_wait_line "$dir" '^IO-START' 240 || { cfg_fail "$1" "guest never started its I/O" "$dir"; return 0; }
  t0=$(date +%s.%N)
  fds_baseline
  : >"$dir/restarts"
  for ((k = 1; k <= N; k++)); do
    # restart k at k * INTERVAL - INTERVAL / 2 after IO-START
    local at; at=$(awk -v k="$k" -v i="$INTERVAL" -v t0="$t0" 'BEGIN { printf "%.3f", t0 + (k - 0.5) * i }')
    now=$(date +%s.%N)
    sleep "$(awk -v a="$at" -v n="$now" 'BEGIN { d = a - n; printf "%.3f", (d > 0 ? d : 0) }')"
    kill -0 "$be_pid" 2>/dev/null || { cfg_fail "$1" "backend #$be_n died before restart $k" "$dir"; return 0; }
    kill -KILL "$be_pid"; wait "$be_pid" 2>/dev/null || true
    awk -v n="$(date +%s.%N)" -v t0="$t0" 'BEGIN { printf "%.3f\n", n - t0 }' >>"$dir/restarts"
    start_backend "$dir" "$ring" "$queues" "$mode" || { cfg_fail "$1" "backend #$be_n did not start" "$dir"; return 0; }
  done
  local fds_ok=1
  fds_back || fds_ok=0
  rc=0; guest_qemu_wait || rc=$?
  ((rc == 0)) || { cfg_fail "$1" "QEMU exited with status $rc" "$dir"; return 0; }
  local counts stalls resub
  counts=$(grep -h '^COUNTS' "$dir/result.log" | tr -d '\r' | sed 's/^COUNTS //')
  stalls=$(stall_report "$dir")
  resub=$(cat "$dir"/be.*.log | grep -c resubmitting || true)
  echo "RESULT $BACKEND $ring ${queues}q $mode N=$N: $counts; $stalls; restarts that resubmitted: $resub; $fds_note" |
    tee -a "$top/summary"
  guest_check_results "$dir" || { cfg_fail "$1" "guest reported failures" "$dir"; return 0; }
  ((fds_ok)) || { cfg_fail "$1" "open fds not back to the baseline after $N restarts: $fds_note" "$dir"; return 0; }
  kill -TERM "$be_pid" 2>/dev/null || true; wait "$be_pid" 2>/dev/null || true; be_pid=
}

# ---- net --------------------------------------------------------------------------------------

# For DURATION seconds the guest sends 64 KiB chunks of data.bin (16 chunks, cycled), at most 20
# a second, over one TCP connection to the host, and says how many (SENT n); the host checks
# that exactly those n chunks arrived, in order (md5).
cat >"$top/net-guest.sh" <<'GUEST'
. /extra/params
gip=10.77.0.2 hip=10.77.0.1
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
ip link set eth0 up && ip addr add $gip/24 dev eth0 || { result FAIL ifup "ip failed"; exit 0; }
ping -c 1 -w 60 $hip >/dev/null 2>&1 || { result FAIL ping "host unreachable"; exit 0; }
cs() { t=$(cut -d' ' -f1 /proc/uptime); echo "${t%.*}${t#*.}"; }
signal NET-START
end=$(($(cs) + DURATION * 100))
( k=0
  while [ "$(cs)" -lt $end ]; do
    dd if=/extra/data.bin bs=65536 skip=$((k % 16)) count=1 2>/dev/null
    k=$((k + 1)); sleep 0.05
  done
  echo $k >/tmp/sent ) | timeout $((DURATION + 300)) nc $hip 5000 &&
  result PASS tcp-send "$(cat /tmp/sent) chunks sent" || result FAIL tcp-send "nc failed or timed out"
# nc is gone once its last bytes are queued: let the kernel deliver them before powering off
# (while the connection to port 5000 is ESTABLISHED, FIN_WAIT1, LAST_ACK or CLOSING)
i=0
while [ $i -lt 300 ] && awk '$3 ~ /:1388$/ && $4 ~ /^(01|04|09|0B)$/ { f = 1 } END { exit !f }' /proc/net/tcp; do
  sleep 0.1; i=$((i + 1))
done
signal SENT "$(cat /tmp/sent)"
GUEST

net_tap_up() { # dir
  local i
  for ((i = 0; i < 100; i++)); do ip -n "$ns" link show vhutap0 >/dev/null 2>&1 && break; sleep 0.05; done
  ip -n "$ns" addr add 10.77.0.1/24 dev vhutap0 2>/dev/null || true
  ip -n "$ns" link set vhutap0 up
}

run_net() {
  local dir=$top/net k rc t0 chunks duration
  ((EUID == 0)) || { guest_log "net: needs root (ip netns, tap): skipped"; return 0; }
  command -v ip >/dev/null || { guest_log "net: no ip (iproute2): skipped"; return 0; }
  rm -rf "$dir"; mkdir -p "$dir"
  duration=$(awk -v n="$NET_N" -v i="$INTERVAL" 'BEGIN { printf "%d", n * i + 3 }')
  echo "DURATION=$duration" >"$dir/params"
  head -c 1048576 /dev/urandom >"$dir/data.bin"
  guest_mkinitramfs "$dir/initrd.cpio.gz" virtio_pci virtio_net -- "$top/net-guest.sh" \
    "$dir/params" "$dir/data.bin" 2>"$dir/mkinitramfs.log" || { cat "$dir/mkinitramfs.log" >&2; return 1; }
  ns=vhu-soak-$$
  ip netns add "$ns"; ns_made=1
  ip -n "$ns" link set lo up
  be_n=0
  start_net() {
    be_n=$((be_n + 1))
    ip netns exec "$ns" "$vhud" net --socket-path "$dir/net.sock" --client --reconnect-ms 50 \
      --tap vhutap0 </dev/null >"$dir/be.$be_n.log" 2>&1 &
    be_pid=$!
    net_tap_up "$dir"
  }
  # stdin a FIFO opened read-write: never EOF (busybox nc half-closes on stdin EOF)
  rm -f "$dir/hold.fifo"; mkfifo "$dir/hold.fifo"
  ip netns exec "$ns" timeout 900 busybox nc -l -p 5000 <>"$dir/hold.fifo" >"$dir/recv.bin" 2>"$dir/nc.log" &
  nc_pid=$!
  # QEMU listens, vhud net connects (--client): QEMU 7.2 segfaults at start-up with a
  # vhost-user netdev on a reconnect=1 client chardev, and this is how OVS-style deployments
  # restart their backend anyway.
  guest_qemu_start "$dir" "$dir/initrd.cpio.gz" \
    -chardev "socket,id=n0,path=$dir/net.sock,server=on,wait=off" \
    -netdev vhost-user,id=net0,chardev=n0 -device virtio-net-pci,netdev=net0,vectors=0,mac=52:54:00:12:34:56
  guest_wait_socket "$dir/net.sock" 20 "$GUEST_QEMU_PID" || { cfg_fail net "QEMU did not listen" "$dir"; return 0; }
  start_net
  guest_wait_line "$dir" '^NET-START' 240 || { cfg_fail net "guest never started its stream" "$dir"; return 0; }
  t0=$(date +%s.%N)
  fds_baseline
  for ((k = 1; k <= NET_N; k++)); do
    local at now; at=$(awk -v k="$k" -v i="$INTERVAL" -v t0="$t0" 'BEGIN { printf "%.3f", t0 + (k - 0.5) * i }')
    now=$(date +%s.%N)
    sleep "$(awk -v a="$at" -v n="$now" 'BEGIN { d = a - n; printf "%.3f", (d > 0 ? d : 0) }')"
    kill -0 "$be_pid" 2>/dev/null || { cfg_fail net "vhud net #$be_n died before restart $k" "$dir"; return 0; }
    kill -KILL "$be_pid"; wait "$be_pid" 2>/dev/null || true
    start_net || { cfg_fail net "vhud net #$be_n did not start" "$dir"; return 0; }
  done
  local fds_ok=1
  fds_back || fds_ok=0
  rc=0; guest_qemu_wait || rc=$?
  for ((k = 0; k < 50; k++)); do kill -0 "$nc_pid" 2>/dev/null || break; sleep 0.1; done
  kill "$nc_pid" 2>/dev/null || true; wait "$nc_pid" 2>/dev/null || true; nc_pid=
  ((rc == 0)) || { cfg_fail net "QEMU exited with status $rc" "$dir"; return 0; }
  local want got
  chunks=$(tr -d '\r' <"$dir/result.log" | sed -n 's/^SENT \([0-9][0-9]*\)$/\1/p')
  [[ -n $chunks ]] || { cfg_fail net "the guest did not say how much it sent" "$dir"; return 0; }
  # what the host must receive: the chunks of data.bin, cycled
  for ((k = 0; k < chunks; k++)); do
    dd if="$dir/data.bin" bs=65536 skip=$((k % 16)) count=1 2>/dev/null
  done >"$dir/want.bin"
  want=$(md5sum <"$dir/want.bin" | cut -d' ' -f1)
  got=$(md5sum <"$dir/recv.bin" | cut -d' ' -f1)
  echo "RESULT net tap N=$NET_N: $(stat -c %s "$dir/recv.bin") of $(stat -c %s "$dir/want.bin") bytes, md5 $([[ $got == "$want" ]] && echo match || echo MISMATCH); $fds_note" |
    tee -a "$top/summary"
  ((fds_ok)) || { cfg_fail net "open fds not back to the baseline after $NET_N restarts: $fds_note" "$dir"; return 0; }
  [[ $got == "$want" ]] || { cfg_fail net "TCP stream md5 $got, want $want" "$dir"; return 0; }
  guest_check_results "$dir" || { cfg_fail net "guest reported failures" "$dir"; return 0; }
  kill -TERM "$be_pid" 2>/dev/null || true; wait "$be_pid" 2>/dev/null || true; be_pid=
  ip netns del "$ns"; ns_made=0
}

: >"$top/summary"
for c in $CONFIGS; do run_blk "$c"; done
((NET)) && [[ $BACKEND == vhud ]] && run_net
((failures == 0)) || { guest_log "$failures configuration(s) failed (their logs are above)"; exit 1; }
if ((auto_dir)) && [[ ${VHU_KEEP_TMP:-} != 1 ]]; then cat "$top/summary" >&2; guest_log "PASS"
else guest_log "PASS; summary in $top/summary"; fi
