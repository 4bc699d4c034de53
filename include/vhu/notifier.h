/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_NOTIFIER_H
#define VHU_NOTIFIER_H

/*
 * Notifiers: how "ring i has news" crosses between a driver and a device, whatever carries it.
 * A ring has a kick source (driver -> device: the device core watches it) and a call sink and an
 * error sink (device -> driver: the core signals them). A transport makes them:
 *   - eventfd: vhost-user's kick/call/err fds, VFIO interrupt eventfds;
 *   - callback: a doorbell the transport rings itself (a register write, an interrupt it
 *     injects, a counter in a test) — sink only;
 *   - polled: no kick source at all; the ring's owner thread polls the ring;
 *   - its own: fill struct vhu_notifier_ops (e.g. a kick source watched some other way).
 * The core holds notifiers through this interface only; it never sees the fd of an eventfd one.
 */
#ifdef VHU_DEVICE_BUILD
#error "device models must not include notifier headers: they see vhu_vq_notify() only"
#endif

#include <stdbool.h>

#include "vhu/loop.h"

struct vhu_notifier;

typedef void vhu_notifier_fn(void *opaque);

struct vhu_notifier_ops {
    const char *name;
    /* Sink: tell the other side. Called on the ring's owner thread, on the data path: no
     * allocation, no lock, no logging. NULL: signalling does nothing. */
    void (*signal)(struct vhu_notifier *n);
    /* Source: call cb(opaque) on loop's thread after each kick (several kicks may coalesce).
     * NULL: not watchable; the ring is polled. */
    int (*watch)(struct vhu_notifier *n, struct vhu_loop *loop, vhu_notifier_fn *cb, void *opaque);
    void (*unwatch)(struct vhu_notifier *n, struct vhu_loop *loop);
    /* Free n and what it owns (an eventfd notifier closes its fd). */
    void (*destroy)(struct vhu_notifier *n);
};

/* Every notifier starts with this; a transport's own kind embeds it at the head. */
struct vhu_notifier {
    const struct vhu_notifier_ops *ops;
};

/* An eventfd: refused (-EINVAL) when fd is anything else; made non-blocking (O_NONBLOCK on the
 * file description, shared with whoever sent it), so signalling never blocks: a full counter
 * drops the signal (the other side has a wake-up pending anyway). Takes fd: it is closed with
 * the notifier, and on failure. */
int vhu_notifier_eventfd_new(int fd, struct vhu_notifier **out);
/* A sink that calls fn(opaque) on signal (doorbells). fn runs on the ring's owner thread. */
int vhu_notifier_callback_new(vhu_notifier_fn *fn, void *opaque, struct vhu_notifier **out);

void vhu_notifier_free(struct vhu_notifier *n);

static inline void vhu_notifier_signal(struct vhu_notifier *n)
{
    if (n && n->ops->signal)
        n->ops->signal(n);
}

/* A source the core can watch (false: the ring behind it must be polled). */
static inline bool vhu_notifier_watchable(const struct vhu_notifier *n)
{
    return n && n->ops->watch;
}

#endif
