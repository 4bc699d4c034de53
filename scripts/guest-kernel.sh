#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Fetch the Debian 12 cloud kernel for the real-guest tests, without installing it.
# Result (idempotent; skipped when already there):
#   .cache/guest/vmlinuz              the kernel image
#   .cache/guest/kver                 its version string (e.g. 6.1.0-56-cloud-amd64)
#   .cache/guest/modules/<kver>/...   lib/modules/<kver> from the package
# Env: VHU_GUEST_CACHE (default <repo>/.cache/guest), VHU_GUEST_KERNEL_PKG (force a package).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${VHU_GUEST_CACHE:-$repo/.cache/guest}

die() { echo "guest-kernel.sh: $*" >&2; exit 1; }

if [[ -f $cache/.complete && -f $cache/vmlinuz && -f $cache/kver ]] &&
   [[ -d $cache/modules/$(cat "$cache/kver") ]]; then
  exit 0
fi

command -v apt-get >/dev/null || die "apt-get not found (Debian 12 only)"
command -v dpkg >/dev/null || die "dpkg not found (Debian 12 only)"

# Which linux-image-*-cloud-amd64 does the meta package name?
find_pkg() {
  apt-cache depends linux-image-cloud-amd64 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[^ ]*-cloud-amd64\(-unsigned\)\?\)$/\1/p' | head -n1
}
pkg=${VHU_GUEST_KERNEL_PKG:-$(find_pkg)}
if [[ -z $pkg && $(id -u) -eq 0 ]]; then
  echo "guest-kernel.sh: apt lists look empty, running apt-get update" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || true
  pkg=$(find_pkg)
fi
[[ -n $pkg ]] || die "cannot resolve linux-image-cloud-amd64 (apt-cache depends found nothing; run 'apt-get update' as root)"

work=$(mktemp -d "${TMPDIR:-/tmp}/vhu-kernel.XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"   # apt-get download as root drops to _apt when it can write here

echo "guest-kernel.sh: downloading $pkg into $cache" >&2
if ! (cd "$work" && apt-get download -qq "$pkg" >"$work/apt.log" 2>&1); then
  cat "$work/apt.log" >&2 || true
  die "'apt-get download $pkg' failed (is the Debian registry reachable? try 'apt-get update')"
fi
deb=$(find "$work" -maxdepth 1 -name "*.deb" | head -n1)
[[ -n $deb ]] || die "apt-get download $pkg produced no .deb"

mkdir "$work/x"
dpkg -x "$deb" "$work/x" || die "dpkg -x $deb failed"

vmlinuz=$(find "$work/x/boot" -maxdepth 1 -name "vmlinuz-*" 2>/dev/null | head -n1)
[[ -n $vmlinuz ]] || die "$pkg has no boot/vmlinuz-*"
kver=${vmlinuz##*/vmlinuz-}
[[ -d $work/x/lib/modules/$kver ]] || die "$pkg has no lib/modules/$kver"

rm -rf "$cache"
mkdir -p "$cache/modules"
cp "$vmlinuz" "$cache/vmlinuz"
[[ -f $work/x/boot/config-$kver ]] && cp "$work/x/boot/config-$kver" "$cache/config"
mv "$work/x/lib/modules/$kver" "$cache/modules/$kver"
echo "$kver" >"$cache/kver"
echo "$pkg" >"$cache/package"
touch "$cache/.complete"
echo "guest-kernel.sh: kernel $kver ready in $cache" >&2
