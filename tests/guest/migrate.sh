#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Live migration of a guest whose disk is served by vhud blk (docs/recovery.md, "Migration"):
# two QEMU processes on this machine (TCG), each with its own `vhud blk` on the SAME image; the
# guest migrates A -> B, then B -> A (ROUNDS), over a unix socket.
#
# What makes a missing dirty log visible (issue #12):
#  - the guest boots with init_on_alloc=0: page-cache pages are not zeroed by the CPU when they
#    are allocated, so only the device writes them (and only its log tells QEMU to resend them);
#  - the migration is held in its iterative phase (max-bandwidth and downtime-limit tiny) while
#    the guest reads distinct random chunks through the page cache; only after its last read
#    into a fresh page cache does the host let the migration complete. On the destination the
#    guest checks the cached data without dropping caches (what the device wrote on the source
#    during the migration) and then through the device again.
# Host -> guest control goes through the disk itself: the host writes a phase word into a
# control sector of the image, the guest polls it with O_DIRECT reads.
#
#   migrate.sh VHUD [WORKDIR]
# Exit: 0 pass, 1 fail (logs printed), 77 skip. Env: see lib.sh; RING=split|packed, ROUNDS
# (default 2: there and back), VHU_TEST_DIRTY_LOG_OFF=1 (passed to both vhuds: a backend that
# logs nothing; the test must then fail).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GUEST_NAME=${GUEST_NAME:-migrate}
# shellcheck source-path=SCRIPTDIR source=migrate-lib.sh
. "$here/migrate-lib.sh"
mig_setup "$@"
packed=off
[[ ${RING:-split} == packed ]] && packed=on
rounds=${ROUNDS:-2}
GUEST_APPEND="init_on_alloc=0 ${GUEST_APPEND:-}"
img=$dir/disk.img
truncate -s 0 "$img"; truncate -s 9M "$img"
CTL_OFF=8 # MiB: the control sector, after the 8 data chunks

declare -A vhud_pid=()
cleanup() {
  local k
  mig_kill_all
  for k in "${!vhud_pid[@]}"; do guest_kill_wait "${vhud_pid[$k]}"; done
}
trap 'guest_on_exit cleanup' EXIT
fail() {
  guest_log "FAIL: $*"; cleanup
  local s
  for s in a b; do [[ -d $dir/$s ]] && guest_dump_globs "$dir/$s" 'vhud.log'; done
  exit 1
}

# ctl WORD: the phase word the guest polls
ctl() { printf '%-16s' "$1" | dd of="$img" bs=16 seek=$((CTL_OFF * 65536)) conv=notrunc,fsync status=none; }

cat >"$dir/test.sh" <<GUEST
rounds=$rounds
ctl_mib=$CTL_OFF
GUEST
cat >>"$dir/test.sh" <<'GUEST'
dev=/dev/vda
i=0
while [ ! -b $dev ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -b $dev ] || { result FAIL disk "no $dev"; exit 0; }
ctl() { dd if=$dev bs=4096 skip=$((ctl_mib * 256)) count=1 iflag=direct 2>/dev/null | head -c 16 | tr -d ' \0'; }
sum() { dd if=$dev bs=1M skip=$1 count=1 $2 2>/dev/null | md5sum | cut -d' ' -f1; }
# 8 chunks of 1 MiB, all different, written around the page cache
for k in 0 1 2 3 4 5 6 7; do
  dd if=/dev/urandom of=/tmp/c bs=1M count=1 2>/dev/null
  md5sum </tmp/c | cut -d' ' -f1 >/tmp/sum.$k
  dd if=/tmp/c of=$dev bs=1M seek=$k count=1 oflag=direct conv=notrunc 2>/dev/null ||
    { result FAIL write "chunk $k"; exit 0; }
done
rm /tmp/c
sync
# Keep the disk open: the last close of a block device drops its page cache (kill_bdev), and
# the point is to find on the destination what the device wrote into that cache on the source.
exec 4<$dev
bad=0
check() { # check WHAT K [dd flags]: chunk K read (cached, or with flags) against its sum
  got=$(sum $2 $3)
  if [ "$got" != "$(cat /tmp/sum.$2)" ]; then
    result FAIL "$1-chunk$2" "md5 $got, want $(cat /tmp/sum.$2)"
    bad=$((bad + 1))
  fi
}
r=1
signal READY
while [ $r -le $rounds ]; do
  # The migration runs and is held iterative: read through the page cache, chunk after chunk.
  n=0
  while [ "$(ctl)" != "FINAL$r" ]; do
    echo 3 >/proc/sys/vm/drop_caches
    check loop-r$r $((n % 8))
    n=$((n + 1))
    echo "round $r: read $n"
  done
  # Last reads on the source: every chunk into a fresh page cache, kept there.
  echo 3 >/proc/sys/vm/drop_caches
  for k in 0 1 2 3 4 5 6 7; do check final-r$r $k; done
  signal FINAL-READ $r $n
  # keep dirtying memory (not the page cache) so the migration stays iterative until released
  while [ "$(ctl)" != "DONE$r" ]; do sleep 0.1; done
  # On the destination: what the source's device wrote into the page cache, then the disk.
  for k in 0 1 2 3 4 5 6 7; do check cached-r$r $k; done
  for k in 0 1 2 3 4 5 6 7; do check direct-r$r $k iflag=direct; done
  signal ARRIVED $r
  r=$((r + 1))
done
if dmesg | grep -qi 'I/O error'; then
  result FAIL dmesg "$(dmesg | grep -i 'I/O error' | head -3 | tr '\n' ' ')"
elif [ $bad = 0 ]; then
  result PASS migrate "$rounds migrations, every chunk intact in the page cache and on disk"
fi
GUEST

guest_mkinitramfs "$dir/initrd.cpio.gz" virtio_pci virtio_blk -- "$dir/test.sh" \
  2>"$dir/mkinitramfs.log" || { cat "$dir/mkinitramfs.log" >&2; exit 1; }

# start_side S [incoming]: vhud blk (once) and QEMU for side S (a or b), logs in $dir/S
start_side() {
  local s=$1 sdir=$dir/$1
  mkdir -p "$sdir"
  if [[ -z ${vhud_pid[$s]:-} ]]; then
    rm -f "$sdir/blk.sock"
    "$vhud" blk --socket-path "$sdir/blk.sock" --file "$img" </dev/null >"$sdir/vhud.log" 2>&1 &
    vhud_pid[$s]=$!
    guest_wait_socket "$sdir/blk.sock" 20 "${vhud_pid[$s]}" || return 1
  fi
  mig_qemu_start "$s" ${2:-} -- -chardev "socket,id=c0,path=$sdir/blk.sock" \
    -device "vhost-user-blk-pci,chardev=c0,num-queues=1,packed=$packed"
}

ctl INIT
start_side a || fail "side a did not start"
mig_wait_line a '^READY' 120 || fail "guest never got ready"
src=a dst=b
for ((r = 1; r <= rounds; r++)); do
  start_side "$dst" incoming || fail "side $dst did not start"
  guest_log "round $r: $src -> $dst"
  mig_begin "$src" || fail "round $r: migration not held"
  ctl "FINAL$r"
  mig_wait_line "$src" "^FINAL-READ $r" 60 || fail "round $r: the guest's last reads did not finish"
  mig_release "$src" "$dst" || fail "round $r: migration failed"
  grep -q '^RESULT FAIL' "$dir/$src/result.log" && fail "round $r: guest found bad data on $src"
  grep -q 'dirty log attached' "$dir/$src/vhud.log" || fail "round $r: vhud $src never got a log"
  mig_stop "$src"
  ctl "DONE$r"
  mig_wait_line "$dst" "^ARRIVED $r" 60 || fail "round $r: guest did not check in on $dst"
  grep -q '^RESULT FAIL' "$dir/$dst/result.log" && fail "round $r: guest found bad data on $dst"
  tmp=$src; src=$dst; dst=$tmp
done

mig_finish "$src" || fail "the guest did not finish on $src"
for s in a b; do
  guest_term "${vhud_pid[$s]}" "vhud $s" || fail "vhud $s"
  unset "vhud_pid[$s]"
done
guest_pass
