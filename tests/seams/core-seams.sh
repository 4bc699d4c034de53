#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The device core's seams, checked on the source: the core (include/vhu/core.h, src/backend/
# core.c, backend_internal.h) names no fd and writes no eventfd; it includes no transport,
# frontend or wire header (the build also enforces that: VHU_CORE_BUILD turns those headers
# into errors); device models include only the device API. Exits 1 with the offending lines.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
fail=0

# code lines only: drop /* ... */ comment lines and trailing // comments
code() { awk '{ sub(/\/\/.*$/, "") } /\/\*/ { c = 1 } { if (!c) print FNR ": " $0 } /\*\// { c = 0 }' "$1"; }

for f in include/vhu/core.h src/backend/core.c src/backend/backend_internal.h; do
  if hits=$(code "$root/$f" | grep -E '\b[A-Za-z_]*fd\b|_fd\b|eventfd|SCM_RIGHTS|\bwrite\(|\bclose\(|vhost_user\.h|struct vhu_msg\b'); then
    echo "core-seams: $f names an fd, a wire struct or writes a file descriptor:" >&2
    echo "$hits" >&2
    fail=1
  fi
done
for f in "$root"/src/dev/*.c "$root"/src/dev/*.h; do
  if hits=$(grep -nE '#include "(proto|transport|frontend|backend)/|#include "vhu/(backend|core|transport|frontend|loopback|notifier)\.h"' "$f"); then
    echo "core-seams: device model $f includes a non-device header:" >&2
    echo "$hits" >&2
    fail=1
  fi
done
[[ $fail == 0 ]] && echo "core-seams: ok (core: no fd, no wire struct; devices: device API only)"
exit $fail
