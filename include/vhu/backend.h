/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_BACKEND_H
#define VHU_BACKEND_H

/*
 * A backend: one device model, the loop and worker threads that run it. A transport serves it
 * to one driver at a time through a device core (vhu/core.h: typed calls, no messages, no fds).
 */
#ifdef VHU_DEVICE_BUILD
#error "device models must not include backend/transport headers"
#endif

#include <stdint.h>

#include "vhu/device.h"
#include "vhu/loop.h"

struct vhu_backend;

/* The backend uses loop for kick eventfds and its own timers; it does not run it. */
int vhu_backend_new(struct vhu_device *dev, struct vhu_loop *loop, struct vhu_backend **out);
/* Destroys the device too (ops->destroy). Frees a core still attached. */
void vhu_backend_free(struct vhu_backend *b);
struct vhu_device *vhu_backend_device(const struct vhu_backend *b);
/*
 * Data-plane threads: queue i is owned by worker i % nworkers (0: every queue runs on the
 * loop given to vhu_backend_new). poll_us > 0 makes workers busy-poll their rings for that
 * long after the last work before sleeping. Call before a core exists.
 */
int vhu_backend_set_workers(struct vhu_backend *b, unsigned nworkers, unsigned poll_us);
/*
 * Run b's queues on the workers of `from` (its nworkers and poll_us), e.g. several devices
 * that must share one thread (the net switch). `from` must be freed after b. Before any core.
 */
int vhu_backend_share_workers(struct vhu_backend *b, struct vhu_backend *from);
/*
 * Settings a transport reads when it serves this backend; set before a core exists (-EBUSY).
 * vhost-user: vu_protocol_mask limits the protocol features offered (offer = default & mask;
 * vhu_backend_limit_protocol_features() in vhu/transport.h).
 */
struct vhu_backend_transport_opts {
    uint64_t vu_protocol_mask;
};
int vhu_backend_set_transport_opts(struct vhu_backend *b,
                                   const struct vhu_backend_transport_opts *o);
const struct vhu_backend_transport_opts *vhu_backend_transport_opts(const struct vhu_backend *b);

/* Counters for tests and vhuctl. */
struct vhu_backend_stats {
    uint64_t sessions;        /* driver connections served (cores created) */
    uint64_t sessions_failed; /* connections ended by a protocol error (counted by transports) */
    uint64_t messages;        /* transport messages handled (counted by transports) */
    uint64_t kicks;           /* kick notifications handled */
};
void vhu_backend_get_stats(const struct vhu_backend *b, struct vhu_backend_stats *st);
/* For transports: count one message / one failed connection. */
void vhu_backend_count_message(struct vhu_backend *b);
void vhu_backend_count_failure(struct vhu_backend *b);

#endif
