#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Install the Debian 12 packages vhu needs.
#   scripts/deps.sh build   compiler, meson/ninja, liburing, librbd, scdoc, libsystemd
#   scripts/deps.sh test    build set + QEMU, busybox, kmod, ... and the guest kernel
#   scripts/deps.sh bench   test set + what only bench/ needs (fio, jq)
# Idempotent and silent when everything is present. As non-root with something missing it
# prints the exact apt-get command and exits 1.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mode=${1:-build}

build_pkgs=(meson ninja-build pkg-config gcc make libc6-dev liburing-dev libnbd-dev librbd-dev
            libjson-c-dev scdoc libsystemd-dev)
# gcc's -fsanitize=address,undefined runtimes: gcc-12 -> libgcc-12-dev -> libasan8, libubsan1;
# listed explicitly so a minimal image that trimmed them still gets them.
test_pkgs=("${build_pkgs[@]}" libgcc-12-dev libasan8 libubsan1
           qemu-system-x86 qemu-utils busybox-static cpio kmod xz-utils e2fsprogs
           iproute2 procps coreutils util-linux systemd
           dpdk-dev clang libclang-rt-14-dev nbdkit
           ceph-mon ceph-osd ceph-common qemu-block-extra)
# dpdk-dev ships dpdk-testpmd (tests/interop/dpdk-net.sh, tests/guest/net.sh with
# NET_BACKEND=dpdk, bench/net-bench.sh); it pulls libdpdk-dev and with it every librte-* PMD,
# among them net_vhost, net_virtio and the ring mempool. Package `dpdk` has only python scripts.
# scdoc: the man pages vhud(8), vhuctl(1), libvhu(3) from docs/man/*.scd (without it the build
# skips them and says so).
# libsystemd-dev: vhud's sd_listen_fds/sd_notify (socket activation, Type=notify, watchdog).
# systemd: systemd-socket-activate and systemd-analyze for tests/cli/vhud-systemd.sh (no PID 1).
# libjson-c-dev: vfio-user's VERSION capabilities (a JSON object) in the VVU device and driver.
# libnbd-dev: blk's NBD store (vhud blk --nbd). qemu-utils (qemu-nbd) and nbdkit: the NBD
# servers the blk tests start (tests/unit/test_blk.c, tests/guest/blk.sh with BLK_STORE=nbd).
# clang + libclang-rt-14-dev: the libFuzzer targets (tests/fuzz, make fuzz-check); the runtime
# package carries libclang_rt.fuzzer and clang's ASan/UBSan runtimes.
# librbd-dev: blk's Ceph RBD store (librbd + librados, Ceph 16). ceph-mon, ceph-osd, ceph-common
# (ceph, rbd, monmaptool): the one-node cluster tests/ceph-lib.sh starts for the RBD tests.
# qemu-block-extra: qemu-storage-daemon's rbd driver (block-rbd.so), the other side of
# bench/blk-bench.sh STORES=rbd.
# fio + jq: bench/guest-fio.sh copies the host's fio (with its libraries) into the test guest's
# initramfs and reads fio's JSON output with jq.

case "$mode" in
  build) want=("${build_pkgs[@]}") ;;
  test)  want=("${test_pkgs[@]}") ;;
  bench) want=("${test_pkgs[@]}" fio jq) ;;
  *) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "deps.sh: dpkg-query not found: this script supports Debian 12 only" >&2
  exit 1
fi

missing=()
for p in "${want[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
  [[ $status == ii* ]] || missing+=("$p")
done

if ((${#missing[@]})); then
  cmd="apt-get install -y --no-install-recommends ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps.sh: missing Debian packages: ${missing[*]}" >&2
    echo "deps.sh: run as root:  apt-get update && $cmd" >&2
    exit 1
  fi
  echo "deps.sh: installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  log=$(mktemp)
  if ! apt-get update -qq >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"
    echo "deps.sh: apt-get update failed" >&2; exit 1
  fi
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"
    echo "deps.sh: failed: $cmd" >&2; exit 1
  fi
  rm -f "$log"
  for p in "${missing[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    if [[ $status != ii* ]]; then
      echo "deps.sh: package $p still not installed after: $cmd" >&2
      exit 1
    fi
  done
fi

if [[ $mode == test || $mode == bench ]]; then
  "$here/guest-kernel.sh"
fi
