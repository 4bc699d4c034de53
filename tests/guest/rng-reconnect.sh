#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Backend crash and restart under a live guest: see rng.sh --reconnect.
#   rng-reconnect.sh VHUD [WORKDIR]
#
# vhud runs with --no-mem-slots here: QEMU 7.2's vhost-user-rng does not re-initialise its vhost
# device when the chardev reconnects, so with CONFIGURE_MEM_SLOTS it believes the new backend
# already has every memory region and sends none (seen: SET_VRING_KICK arrives with an empty
# memory table). Without the feature it resends the whole table with SET_MEM_TABLE.
set -euo pipefail
export VHUD_ARGS="--no-mem-slots ${VHUD_ARGS:-}"
exec "$(dirname "${BASH_SOURCE[0]}")/rng.sh" --reconnect "$@"
