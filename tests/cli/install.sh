#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# What `meson install` (and `make install`) puts in place, used as an outside program would:
#   - installed into a temporary DESTDIR: vhud and vhuctl in bindir; libvhu.so -> libvhu.so.0 ->
#     libvhu.so.X.Y.Z in libdir with SONAME libvhu.so.0 and versioned symbols (VHU_x.y); the
#     public headers (include/vhu, fe/, dev/); libvhu.pc; the man pages when scdoc built them;
#     the vhost-user.json descriptors (valid, their vhud-TYPE links run: vhost-user-json.py) and
#     the systemd units;
#   - tests/cli/install_client.c compiled with nothing but `pkg-config --cflags --libs libvhu`
#     (PKG_CONFIG_PATH and PKG_CONFIG_SYSROOT_DIR into the DESTDIR), loading libvhu.so.0 from
#     the DESTDIR, reads entropy from the installed `vhud rng`.
# SKIP (77, loudly) without pkg-config.
#
#   install.sh MESON BUILD_DIR CLIENT_C MAN(true|false)   env: CC (the build's compiler),
#                                                          SANITIZE (the build's b_sanitize)
set -euo pipefail
(($# == 4)) || { echo "usage: $0 MESON BUILD_DIR CLIENT_C MAN" >&2; exit 2; }
MESON=$1 build=$2 client_c=$3 man=$4
if ! command -v pkg-config >/dev/null; then
  echo "==== SKIP: install untested: no pkg-config (apt-get install pkg-config) ====" >&2
  exit 77
fi
VHUD=/nonexistent # set below, once installed; lib.sh needs the name
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
root=$dir/root
sock=$dir/rng.sock

# the build's install directories, as meson resolved them (libdir is relative to prefix unless
# configured absolute)
opts=$("$MESON" introspect "$build" --buildoptions)
opt() {
  python3 -c 'import json, sys
for o in json.load(sys.stdin):
    if o["name"] == sys.argv[1]:
        print(o["value"])' "$1" <<<"$opts"
}
prefix=$(opt prefix)
abs() { [[ $1 == /* ]] && echo "$1" || echo "$prefix/$1"; }
bindir=$root$(abs "$(opt bindir)")
libdir=$root$(abs "$(opt libdir)")
incdir=$root$(abs "$(opt includedir)")
mandir=$root$(abs "$(opt mandir)")
datadir=$root$(abs "$(opt datadir)")

"$MESON" install -C "$build" --destdir "$root" --no-rebuild >"$dir/install.log" 2>&1 ||
  { cat "$dir/install.log" >&2; fail "meson install --destdir failed"; }
echo "  installed into $root (prefix $prefix)"

for f in "$bindir/vhud" "$bindir/vhuctl"; do
  [[ -x $f ]] || fail "$f not installed"
done
for h in core.h device.h frontend.h vqd.h fe/blk.h fe/net.h dev/blk.h dev/rng.h; do
  [[ -f $incdir/vhu/$h ]] || fail "public header vhu/$h not installed in $incdir"
done
[[ -L $libdir/libvhu.so && -L $libdir/libvhu.so.0 ]] ||
  fail "libvhu.so and libvhu.so.0 are not symlinks in $libdir: $(ls -l "$libdir" 2>&1)"
[[ $(readlink "$libdir/libvhu.so") == libvhu.so.0 ]] ||
  fail "libvhu.so -> $(readlink "$libdir/libvhu.so"), expected libvhu.so.0"
real=$(readlink "$libdir/libvhu.so.0")
[[ $real =~ ^libvhu\.so\.0\.[0-9]+\.[0-9]+$ && -f $libdir/$real && ! -L $libdir/$real ]] ||
  fail "libvhu.so.0 -> $real, expected the versioned file libvhu.so.0.X.Y"
soname=$(readelf -d "$libdir/$real" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[[ $soname == libvhu.so.0 ]] || fail "SONAME of $real is '$soname', expected libvhu.so.0"
unversioned=$(nm -D --defined-only "$libdir/$real" | awk '$2 != "A" && $3 !~ /@@?VHU_/')
[[ -z $unversioned ]] || fail "symbols without a VHU_ version: $unversioned"
echo "  $libdir: libvhu.so -> libvhu.so.0 -> $real, SONAME $soname," \
  "$(nm -D --defined-only "$libdir/$real" | grep -c '@@VHU_') versioned symbols"
if [[ $man == true ]]; then
  for m in man8/vhud.8 man1/vhuctl.1 man3/libvhu.3; do
    [[ -s $mandir/$m ]] || fail "man page $m not installed in $mandir"
  done
  echo "  man pages: vhud(8) vhuctl(1) libvhu(3)"
else
  echo "  man pages not built (no scdoc): not checked"
fi

# vhost-user.json descriptors naming the vhud-TYPE links, validated with the installed binaries;
# the systemd template units
mapfile -t descriptors < <(find "$datadir/qemu/vhost-user" -name '*.json' 2>/dev/null | sort)
((${#descriptors[@]} == 3)) || fail "${#descriptors[@]} vhost-user.json descriptors in $datadir/qemu/vhost-user, expected 3"
python3 "$here/vhost-user-json.py" "$bindir/vhud" "$build/src/cli/vhuctl" "$root" "${descriptors[@]}" \
  >"$dir/vhost-user-json.log" 2>&1 || { cat "$dir/vhost-user-json.log" >&2; fail "installed descriptors"; }
for t in blk net rng; do
  for u in "vhud-$t@.service" "vhud-$t@.socket"; do
    [[ -n $(find "$root" -path "*/systemd/system/$u") ]] || fail "systemd unit $u not installed"
  done
done
echo "  vhost-user.json: ${descriptors[*]##*/} (valid, binaries run); systemd units vhud-{blk,net,rng}@.{service,socket}"

pc=$(find "$root" -name libvhu.pc)
[[ $pc == "$libdir/pkgconfig/libvhu.pc" ]] || fail "libvhu.pc at '$pc', expected $libdir/pkgconfig"
export PKG_CONFIG_PATH=$libdir/pkgconfig PKG_CONFIG_SYSROOT_DIR=$root
cflags=$(pkg-config --cflags libvhu) || fail "pkg-config --cflags libvhu failed"
libs=$(pkg-config --libs libvhu) || fail "pkg-config --libs libvhu failed"
echo "  pkg-config --cflags --libs libvhu: $cflags $libs"
# a sanitized build's library needs the sanitizer runtimes in the program too
san=()
[[ ${SANITIZE:-none} == none ]] || san=("-fsanitize=$SANITIZE")
# shellcheck disable=SC2086 # CC may be "ccache cc"; cflags and libs are word lists
${CC:-cc} -std=c11 -Wall -Wextra -Werror "${san[@]}" $cflags "$client_c" -o "$dir/client" $libs \
  2>"$dir/cc.log" || { cat "$dir/cc.log" >&2; fail "the client does not build against the installed libvhu"; }

export LD_LIBRARY_PATH=$libdir
loaded=$(ldd "$dir/client" | awk '$1 == "libvhu.so.0" { print $3 }')
[[ $loaded == "$libdir/libvhu.so.0" ]] || fail "the client loads libvhu.so.0 from '$loaded', not $libdir"

VHUD=$bindir/vhud
start_vhud rng
out=$("$dir/client" "$sock" 2>&1) || fail "the client against the installed vhud rng: $out"
echo "  $out"
stop_vhud
echo "install: ok"
