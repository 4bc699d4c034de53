#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The "backend inside a VM" path on QEMU 7.2: a fake PCI function (VVU IDs, one 4 KiB register
# BAR with a DMA engine; tests/guest/vvu_fake_dev.c) served by vhu's x-pci-proxy-dev adapter
# (src/vvu/mpqemu.c) to a TCG guest; inside it, a static probe (vvu_pci_probe.c over
# src/transport/vvu/pci_sysfs.c) finds the device in /sys/bus/pci/devices, checks registers of
# every width, DMA both ways into hugepage memory, refusals, and measures a BAR read's round
# trip. Then uio_pci_generic is bound and the device raises INTx: under TCG QEMU's proxy drops it
# (its irqfd works only with KVM), which the test reports but does not require.
#
#   vvu-proxy-smoke.sh FAKE_DEV LAUNCHER PROBE [WORKDIR]    exit 0 pass, 1 fail, 77 skip
# Env: see lib.sh; VVU_FAKE_ARGS adds options to vvu_fake_dev (--bad-pattern: the device
#      corrupts its DMA writes, and this test must fail).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GUEST_NAME=${GUEST_NAME:-vvu-proxy-smoke}
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

(($# >= 3)) || { echo "usage: $0 FAKE_DEV LAUNCHER PROBE [WORKDIR]" >&2; exit 2; }
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
fake=$(abs "$1"); launcher=$(abs "$2"); probe=$(abs "$3")
for f in "$fake" "$launcher" "$probe"; do
  [[ -x $f ]] || { guest_log "$f not found or not executable"; exit 1; }
done
guest_require
"$QEMU" -device help 2>/dev/null | grep -q x-pci-proxy-dev ||
  guest_skip "$QEMU has no x-pci-proxy-dev (multi-process QEMU)"

guest_workdir "${4:-}"
sock=$dir/dev.sock
((${#sock} < 100)) || { guest_log "work dir path too long for a unix socket: $sock"; exit 1; }
rm -f "$sock"

fake_pid=
cleanup() {
  guest_qemu_kill
  [[ -n $fake_pid ]] && { kill -KILL "$fake_pid" 2>/dev/null || true; wait "$fake_pid" 2>/dev/null || true; }
  return 0
}
trap 'guest_on_exit cleanup' EXIT
fail() {
  guest_log "FAIL: $*"
  cleanup
  guest_dump "$dir" fake.log
  exit 1
}

# ---- the guest side -----------------------------------------------------------------------
cat >"$dir/test.sh" <<'GUEST'
# busybox sh inside the guest; result/signal come from /init.
signal BOOTED
echo 8 >/proc/sys/vm/nr_hugepages
bdf=
for d in /sys/bus/pci/devices/*; do
  [ "$(cat "$d/vendor")" = 0x1af4 ] && [ "$(cat "$d/device")" = 0x1017 ] && bdf=${d##*/}
done
if [ -z "$bdf" ]; then
  result FAIL find-device "no 1af4:1017 in /sys/bus/pci/devices"
  exit 0
fi
result PASS find-device "$bdf resource0: $(head -n1 "/sys/bus/pci/devices/$bdf/resource")"
/extra/vvu_pci_probe "$bdf" 2000 >/tmp/probe.out 2>/tmp/probe.err
rc=$?
while read -r st name rest; do
  case $st in PASS|FAIL|INFO) result "$st" "$name" "$rest" ;; esac
done </tmp/probe.out
[ -s /tmp/probe.err ] && { echo "probe stderr:"; cat /tmp/probe.err; }
[ $rc = 0 ] || result FAIL probe-exit "status $rc (the FAIL lines above say why)"

# INTx: bind uio_pci_generic (a handler for the line), let the device raise it, count.
echo "1af4 1017" >/sys/bus/pci/drivers/uio_pci_generic/new_id 2>/dev/null
irq=$(cat "/sys/bus/pci/devices/$bdf/irq")
count() { grep "^ *$irq:" /proc/interrupts | awk '{print $2}'; }
if [ -e "/sys/bus/pci/devices/$bdf/driver" ] && [ "$irq" != 0 ]; then
  before=$(count)
  /extra/vvu_pci_probe "$bdf" irq >/tmp/irq.out 2>&1 || result FAIL irq-probe "$(cat /tmp/irq.out)"
  timeout 2 dd if=/dev/uio0 of=/dev/null bs=4 count=1 2>/dev/null
  after=$(count)
  if [ "${after:-0}" -gt "${before:-0}" ]; then seen=yes; else seen=no; fi
  result INFO intx "irq $irq count $before -> $after: interrupt reached the guest: $seen"
else
  result INFO intx "uio_pci_generic did not bind (irq $irq): not measured"
fi
GUEST

guest_mkinitramfs "$dir/initrd.cpio.gz" uio_pci_generic -- "$dir/test.sh" "$probe"

# ---- the host side ------------------------------------------------------------------------
# shellcheck disable=SC2086
"$fake" --socket "$sock" ${VVU_FAKE_ARGS:-} </dev/null >"$dir/fake.log" 2>&1 &
fake_pid=$!
guest_wait_socket "$sock" 20 "$fake_pid" || fail "vvu_fake_dev did not start"

export VVU_PROXY_SOCK=$sock VVU_QEMU=$QEMU
QEMU=$launcher
start=$(date +%s%N)
guest_qemu_start "$dir" "$dir/initrd.cpio.gz"
guest_wait_line "$dir" '^BOOTED' 60 || fail "guest did not boot"
boot_ms=$((($(date +%s%N) - start) / 1000000))
guest_log "backend VM booted to /init's test in $boot_ms ms"
rc=0
guest_qemu_wait || rc=$?
total_ms=$((($(date +%s%N) - start) / 1000000))
((rc == 0)) || fail "QEMU exit status $rc"
# QEMU's exit closes the socket: the device server ends and prints its counters
for ((i = 0; i < 50; i++)); do kill -0 "$fake_pid" 2>/dev/null || break; sleep 0.1; done
frc=0; wait "$fake_pid" || frc=$?
fake_pid=
((frc == 0)) || fail "vvu_fake_dev exit status $frc"
guest_log "device: $(grep 'vvu_fake_dev: cfg' "$dir/fake.log" || echo 'no counters')"
grep -q 'guest memory: ' "$dir/fake.log" || fail "QEMU never shared guest memory (SYNC_SYSMEM)"
guest_check_results "$dir" || fail "guest checks failed"
guest_log "boot ${boot_ms} ms, whole run ${total_ms} ms"
guest_pass
exit 0
