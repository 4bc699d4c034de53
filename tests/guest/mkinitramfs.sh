#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Build a busybox-static initramfs for a real-guest test.
#
#   mkinitramfs.sh OUT.cpio.gz [MODULE...] -- TEST_SCRIPT [EXTRA[:DEST]...]
#
# MODULE   kernel module names (virtio_pci, virtio-rng, ...); their dependencies are resolved with
#          `modinfo -F depends` and loaded first. Built-in modules are skipped.
# TEST_SCRIPT  a busybox sh script, copied to /test.sh and run by /init after the modules load.
#          It reports with `result PASS name` / `result FAIL name reason` (lines "RESULT ..." on
#          /dev/ttyS1, the second serial port) and may call `signal WORD` (plain line on ttyS1).
# EXTRA    more files to copy in; DEST defaults to /extra/<basename>.
#
# Env: VHU_GUEST_CACHE (default <repo>/.cache/guest, made by scripts/guest-kernel.sh),
#      BUSYBOX (default /bin/busybox; must be static).
set -euo pipefail
PATH=$PATH:/usr/sbin:/sbin   # modinfo lives in /usr/sbin

die() { echo "mkinitramfs.sh: $*" >&2; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)
cache=${VHU_GUEST_CACHE:-$repo/.cache/guest}
busybox=${BUSYBOX:-/bin/busybox}

(($# >= 3)) || die "usage: $0 OUT.cpio.gz [MODULE...] -- TEST_SCRIPT [EXTRA[:DEST]...]"
out=$1; shift
mods=()
while (($#)) && [[ $1 != -- ]]; do mods+=("$1"); shift; done
(($#)) || die "missing '--' before TEST_SCRIPT"
shift
(($#)) || die "missing TEST_SCRIPT"
script=$1; shift
extras=("$@")

[[ -f $script ]] || die "test script $script not found"
[[ -x $busybox ]] || die "$busybox not found (apt-get install busybox-static)"
if ldd "$busybox" >/dev/null 2>&1; then die "$busybox is not static (install busybox-static)"; fi
command -v cpio >/dev/null || die "cpio not found (apt-get install cpio)"
command -v modinfo >/dev/null || die "modinfo not found (apt-get install kmod)"
[[ -f $cache/kver ]] || die "no guest kernel in $cache (run scripts/guest-kernel.sh)"
kver=$(cat "$cache/kver")
moddir=$cache/modules/$kver
[[ -d $moddir ]] || die "no modules dir $moddir (run scripts/guest-kernel.sh)"

root=$(mktemp -d "${TMPDIR:-/tmp}/vhu-initramfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,lib/modules,extra}
cp "$busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"

# name -> path index of every module in the package ('-' and '_' are the same in module names).
declare -A modpath=()
while IFS= read -r -d '' f; do
  b=${f##*/}; b=${b%%.ko*}; modpath[${b//-/_}]=$f
done < <(find "$moddir/kernel" -name '*.ko*' -print0)
declare -A builtin=()
if [[ -f $moddir/modules.builtin ]]; then
  while IFS= read -r l; do b=${l##*/}; b=${b%.ko}; builtin[${b//-/_}]=1; done <"$moddir/modules.builtin"
fi

# Depth-first: dependencies before dependents, each once.
declare -A state=()
order=()
resolve() {
  local name=${1//-/_} dep deps
  [[ ${state[$name]:-} == finished ]] && return 0
  [[ ${state[$name]:-} == active ]] && die "module dependency cycle at $name"
  if [[ -z ${modpath[$name]:-} ]]; then
    [[ -n ${builtin[$name]:-} ]] && { state[$name]=finished; return 0; }
    die "module $1 is neither in $moddir/kernel nor built in"
  fi
  state[$name]=active
  deps=$(modinfo -F depends "${modpath[$name]}")
  for dep in ${deps//,/ }; do resolve "$dep"; done
  state[$name]=finished
  order+=("$name")
}
for m in "${mods[@]}"; do resolve "$m"; done

: >"$root/etc/modules.order"
for name in "${order[@]}"; do
  src=${modpath[$name]}
  dst=$root/lib/modules/$name.ko
  case $src in
    *.ko)     cp "$src" "$dst" ;;
    *.ko.xz)  xz -dc "$src" >"$dst" ;;
    *.ko.zst) zstd -q -dc "$src" >"$dst" ;;
    *.ko.gz)  gzip -dc "$src" >"$dst" ;;
    *) die "unknown module format: $src" ;;
  esac
  echo "$name" >>"$root/etc/modules.order"
done

cp "$script" "$root/test.sh"
for e in ${extras[@]+"${extras[@]}"}; do
  src=${e%%:*}; dst=/extra/${src##*/}
  [[ $e == *:* ]] && dst=${e#*:}
  [[ -e $src ]] || die "extra file $src not found"
  mkdir -p "$root$(dirname "$dst")"
  cp -L "$src" "$root$dst"
done

cat >"$root/init" <<'INIT'
#!/bin/sh
# vhu test guest: mount, load modules, run /test.sh, report on ttyS1, power off.
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
# Result channel: second serial port, raw so lines arrive without \r, one fd kept open.
stty -F /dev/ttyS1 raw -echo 2>/dev/null
exec 3>/dev/ttyS1
result() { echo "RESULT $*" >&3; echo "RESULT $*"; }
signal() { echo "$*" >&3; echo "signal: $*"; }
ok=1
for m in $(cat /etc/modules.order); do
  if ! insmod "/lib/modules/$m.ko"; then
    result FAIL insmod "$m"
    ok=0
  fi
done
echo "init: modules loaded: $(cat /etc/modules.order | tr '\n' ' ')"
if [ $ok = 1 ]; then
  ( . /test.sh )
  rc=$?
  [ $rc = 0 ] || result FAIL test-script "exit status $rc"
fi
result DONE
exec 3>&-      # last close of ttyS1 waits for the UART to drain
sync
poweroff -f
INIT
chmod 755 "$root/init" "$root/test.sh"

mkdir -p "$(dirname "$out")"
(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) | gzip -1 >"$out.tmp"
mv "$out.tmp" "$out"
echo "mkinitramfs.sh: $out (kernel $kver; modules: ${order[*]:-none})" >&2
