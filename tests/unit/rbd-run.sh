#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Runs a test program against a one-node Ceph cluster started for it (tests/ceph-lib.sh):
# exports CEPH_CONF and VHU_TEST_RBD_POOL, runs "$@", stops the cluster. SKIP (77) loudly when
# Ceph is not installed.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../ceph-lib.sh"
ceph_skip_if_missing
trap ceph_stop EXIT
ceph_start || { echo "rbd-run: the Ceph cluster did not start" >&2; exit 1; }
export VHU_TEST_RBD_POOL=$CEPH_POOL
"$@"
