/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_BACKEND_WORKER_H
#define VHU_BACKEND_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include "vhu/loop.h"

/*
 * A data-plane thread with its own loop. It owns a set of queues: their kick fds and device
 * watches live in its loop, and every change to a queue it owns runs on it through
 * vhu_worker_call(), so the data path never takes a lock.
 */
struct vhu_worker;

/*
 * poll_us > 0: after work, keep calling poll_fn(opaque, false) for that long before sleeping;
 * it returns true if it found work. Before sleeping, poll_fn(opaque, true) turns kicks back on
 * and returns true if work arrived meanwhile (then polling goes on).
 */
typedef bool vhu_worker_poll_fn(void *opaque, bool sleep);

int vhu_worker_new(unsigned id, unsigned poll_us, vhu_worker_poll_fn *poll, void *poll_opaque,
                   struct vhu_worker **out);
void vhu_worker_free(struct vhu_worker *w);
struct vhu_loop *vhu_worker_loop(struct vhu_worker *w);
/* Run fn(arg) on the worker and wait for it; returns fn's result. Called on the worker itself,
 * runs fn directly. */
int vhu_worker_call(struct vhu_worker *w, int (*fn)(void *arg), void *arg);
bool vhu_worker_is_current(const struct vhu_worker *w);
/* On the worker: spin (poll without sleeping) even with poll_us 0, while on (rings that have
 * no kick source). */
void vhu_worker_set_spin(struct vhu_worker *w, bool on);

#endif
