/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_BACKEND_H
#define VHU_BACKEND_H

/*
 * The backend core: serves one device to one frontend connection at a time. Transport-neutral:
 * a transport hands it messages (struct vhu_msg) and sends what it answers.
 */
#ifdef VHU_DEVICE_BUILD
#error "device models must not include backend/transport headers"
#endif

#include <stdint.h>

#include "vhu/device.h"
#include "vhu/loop.h"

struct vhu_backend;
struct vhu_session;
struct vhu_msg;

/* How a session talks back to its frontend. */
struct vhu_session_transport_ops {
    const char *name;
    /* Send a reply (or, on the backend channel, a request). Returns 0 or -errno. */
    int (*send)(void *conn, const struct vhu_msg *m);
};

/* The backend uses loop for kick eventfds and its own timers; it does not run it. */
int vhu_backend_new(struct vhu_device *dev, struct vhu_loop *loop, struct vhu_backend **out);
/* Destroys the device too (ops->destroy). Any session must be ended first. */
void vhu_backend_free(struct vhu_backend *b);
struct vhu_device *vhu_backend_device(const struct vhu_backend *b);
/* Protocol features offered (default: everything the core implements). */
uint64_t vhu_backend_protocol_features(const struct vhu_backend *b);
/*
 * Data-plane threads: queue i is owned by worker i % nworkers (0: every queue runs on the
 * loop given to vhu_backend_new). poll_us > 0 makes workers busy-poll their rings for that
 * long after the last work before sleeping. Call before any session.
 */
int vhu_backend_set_workers(struct vhu_backend *b, unsigned nworkers, unsigned poll_us);
/*
 * Run b's queues on the workers of `from` (its nworkers and poll_us), e.g. several devices
 * that must share one thread (the net switch). `from` must be freed after b. Before any session.
 */
int vhu_backend_share_workers(struct vhu_backend *b, struct vhu_backend *from);
/* Offer fewer protocol features: the offer becomes default & mask. Before any session. */
int vhu_backend_limit_protocol_features(struct vhu_backend *b, uint64_t mask);

/*
 * Sessions: one per frontend connection. A transport creates one when a frontend connects, feeds
 * it every message with vhu_session_dispatch(), and ends it on disconnect or when dispatch fails
 * (the connection must then be closed). Only one session may exist per backend (-EBUSY).
 */
int vhu_session_new(struct vhu_backend *b, const struct vhu_session_transport_ops *ops, void *conn,
                    struct vhu_session **out);
void vhu_session_end(struct vhu_session *s);
/*
 * Validate and handle one message; the session takes every fd of m (closing what it does not
 * keep). Returns 0, or -errno when the connection must be dropped (the reason was logged).
 */
int vhu_session_dispatch(struct vhu_session *s, struct vhu_msg *m);

/* Counters for tests and vhuctl. */
struct vhu_backend_stats {
    uint64_t sessions;        /* sessions started */
    uint64_t sessions_failed; /* sessions ended by a protocol error */
    uint64_t messages;        /* messages dispatched */
    uint64_t kicks;           /* kick notifications handled */
};
void vhu_backend_get_stats(const struct vhu_backend *b, struct vhu_backend_stats *st);

#endif
