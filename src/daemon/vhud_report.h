/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHUD_REPORT_H
#define VHUD_REPORT_H
/*
 * JSON reports of served devices for the control socket (device-list, stats), from the public
 * backend API only: a backend's session (features, protocol features, queues) and its
 * per-queue counters, plus a net device's own.
 */
#include <stdbool.h>
#include <json-c/json.h>

#include "vhu/backend.h"

/* {"endpoint", "connected", "queues": [...], "session": {...} | null}: each queue's state
 * (size, started...), with stats also the backend's and each queue's counters (every session's,
 * since the device was added). NULL: no memory. */
struct json_object *vhud_report_port(const char *endpoint, bool connected,
                                     const struct vhu_backend *b, bool stats);

/* "0x%016llx": bit masks as strings (JSON numbers lose bits past 2^53 in many clients). */
struct json_object *vhud_report_hex(uint64_t v);

#endif
