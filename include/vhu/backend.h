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

#include <stdbool.h>
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
 * long after the last work before sleeping. Call before a core exists (-EBUSY); -EINVAL for
 * more than 64 workers or poll_us above VHU_POLL_MAX_US.
 */
int vhu_backend_set_workers(struct vhu_backend *b, unsigned nworkers, unsigned poll_us);
/*
 * How the workers busy-poll (after vhu_backend_set_workers, before a core exists):
 * - VHU_POLL_FIXED: max_us after the last work found, as vhu_backend_set_workers' poll_us.
 * - VHU_POLL_ADAPTIVE: a window of at most max_us that follows what polling catches. It
 *   doubles when the driver's next request came within it and halves when the worker slept
 *   anyway; under max_us / 8 it closes (the worker sleeps as soon as its rings are empty) and
 *   is probed with a max_us window after 1, 2, 4 ... 256 idle stretches. Polling only follows a
 *   wake-up (work, a completion, a control call): a device with nothing to do costs nothing.
 * max_us 0: no polling (also without workers). -EINVAL above VHU_POLL_MAX_US, -ENOENT for
 * max_us > 0 without workers, -EBUSY for shared workers (set it on the backend that owns
 * them) or once a core exists.
 */
#define VHU_POLL_MAX_US 1000000u
enum vhu_poll_mode {
    VHU_POLL_FIXED = 0,
    VHU_POLL_ADAPTIVE = 1,
};
int vhu_backend_set_poll(struct vhu_backend *b, enum vhu_poll_mode mode, unsigned max_us);
/* Polling counters of worker i (read racily; -EINVAL when there is no worker i). */
struct vhu_worker_stats {
    uint32_t poll_window_ns; /* the window now (adaptive: 0 when closed) */
    uint64_t poll_hits;      /* idle stretches ended by work found while polling */
    uint64_t poll_misses;    /* idle stretches that polled their window and slept */
    uint64_t poll_probes;    /* of the stretches, probes of a closed window */
    uint64_t sleeps;         /* blocking waits in epoll (for a kick, a completion, a call) */
};
int vhu_backend_get_worker_stats(const struct vhu_backend *b, unsigned i,
                                 struct vhu_worker_stats *st);
unsigned vhu_backend_workers(const struct vhu_backend *b);
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

/*
 * The driver session being served, for reports (vhud's control socket). Call on the control
 * thread (the loop given to vhu_backend_new()).
 */
struct vhu_backend_session {
    bool active;                 /* a driver session exists (a core is attached) */
    uint8_t status;              /* virtio device status byte */
    uint16_t num_queues;         /* the device's queues */
    uint64_t features;           /* virtio features the driver acked */
    uint64_t transport_features; /* the transport's negotiated features (vhost-user: the
                                  * protocol features), 0 when it reports none */
};
int vhu_backend_get_session(const struct vhu_backend *b, struct vhu_backend_session *s);

/*
 * One queue: its state in the current session (all false/0 without one) and its counters since
 * the backend was made, every session's. Kept as plain integers by the thread owning the queue
 * and read racily here: a report, not an audit. Polling share = poll_runs / (poll_runs +
 * kicks). On the control thread; -EINVAL for q out of range.
 */
struct vhu_queue_stats {
    bool started, enabled, broken;
    bool polled;        /* no kick source: its owner polls it */
    uint16_t num;       /* ring size */
    uint64_t requests;  /* chains completed (requests, packets, buffers) */
    uint64_t out_bytes; /* driver-to-device bytes of the completed chains */
    uint64_t in_bytes;  /* device-to-driver bytes written */
    uint64_t kicks;     /* kick notifications handled */
    uint64_t calls;     /* driver notifications sent */
    uint64_t poll_runs; /* a busy-poller found work */
    uint64_t errors;    /* requests the device completed with an error status */
    uint64_t breaks;    /* the ring broke on a driver error */
};
int vhu_backend_get_queue_stats(const struct vhu_backend *b, unsigned q,
                                struct vhu_queue_stats *st);

/*
 * The device's config space changed on the device's side (a blk device resized): tell the
 * driver (vhost-user: VHOST_USER_BACKEND_CONFIG_CHANGE_MSG on the backend channel). Control
 * thread. -ENOTCONN: no session (the next driver reads the new config anyway); -ENOTSUP: the
 * transport or the driver cannot be told (vhost-user without BACKEND_REQ + CONFIG, or no
 * backend channel); -EAGAIN: the frontend does not read its channel.
 */
int vhu_backend_config_changed(struct vhu_backend *b);
/* For transports: count one message / one failed connection. */
void vhu_backend_count_message(struct vhu_backend *b);
void vhu_backend_count_failure(struct vhu_backend *b);

#endif
