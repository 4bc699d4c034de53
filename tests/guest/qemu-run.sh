#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Boot a test guest synchronously and judge its RESULT lines.
#   qemu-run.sh WORKDIR INITRD [EXTRA QEMU ARGS...]
# Exit: 0 pass, 1 fail (logs printed), 77 skip. Env: see lib.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
(($# >= 2)) || { echo "usage: $0 WORKDIR INITRD [QEMU ARGS...]" >&2; exit 2; }
dir=$1 initrd=$2; shift 2
guest_require
mkdir -p "$dir"
guest_qemu_start "$dir" "$initrd" "$@"
rc=0; guest_qemu_wait || rc=$?
ok=1
((rc == 0)) || ok=0
guest_check_results "$dir" || ok=0
((ok)) && exit 0
guest_dump "$dir"
exit 1
