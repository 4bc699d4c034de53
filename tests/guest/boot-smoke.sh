#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Boot smoke test of the guest infrastructure, no vhost-user device involved: the initramfs boots,
# virtio_pci and virtio-rng load, the result port works, the guest powers off.
#   boot-smoke.sh [WORKDIR]        exit 0 pass, 1 fail, 77 skip
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
guest_require
guest_workdir "${1:-}"
trap 'guest_on_exit :' EXIT
cat >"$dir/test.sh" <<'GUEST'
# runs inside the guest (busybox sh); result/signal come from /init
if grep -q '^virtio_pci ' /proc/modules && grep -q '^virtio_rng ' /proc/modules; then
  result PASS modules-loaded
else
  result FAIL modules-loaded "$(cut -d' ' -f1 /proc/modules | tr '\n' ' ')"
fi
if [ -e /sys/class/misc/hw_random ]; then
  result PASS hw_random-core "rng_current=$(cat /sys/class/misc/hw_random/rng_current)"
else
  result FAIL hw_random-core "no /sys/class/misc/hw_random"
fi
result INFO uname "$(uname -r)" "nproc=$(nproc)"
GUEST
guest_mkinitramfs "$dir/initrd.cpio.gz" virtio_pci virtio-rng -- "$dir/test.sh"
start=$(date +%s%N)
rc=0; "$here/qemu-run.sh" "$dir" "$dir/initrd.cpio.gz" || rc=$?
guest_log "boot+test took $(( ($(date +%s%N) - start) / 1000000 )) ms"
((rc == 0)) || GUEST_DUMPED=1 # qemu-run.sh printed the logs
exit "$rc"
