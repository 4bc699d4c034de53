/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_BACKEND_WORKER_H
#define VHU_BACKEND_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include "vhu/backend.h"
#include "vhu/loop.h"

/*
 * A data-plane thread with its own loop. It owns a set of queues: their kick fds and device
 * watches live in its loop, and every change to a queue it owns runs on it through
 * vhu_worker_call(), so the data path never takes a lock.
 */
struct vhu_worker;

/*
 * With a poll window (struct vhu_poll_adapt below): after work, keep calling
 * poll_fn(opaque, false) for the window before sleeping; it returns true if it found work.
 * Before sleeping, poll_fn(opaque, true) turns kicks back on and returns true if work arrived
 * meanwhile (then polling goes on).
 */
typedef bool vhu_worker_poll_fn(void *opaque, bool sleep);

/*
 * The busy-poll window of one worker, kept by the worker thread. Fixed: max_ns after every
 * piece of work. Adaptive: an idle stretch (from the first round that finds no work) polls
 * win_ns; work found within it is a hit, sleeping after it a miss. A hit doubles the window (up
 * to max_ns), a miss halves it; below max_ns / 8 it closes (0: sleep as soon as the rings are
 * empty). A closed window is probed: one stretch polls max_ns, after 1, 2, 4 ... 256 stretches
 * while probes miss, so a worker whose driver never answers within max_ns pays one window per
 * 256 wake-ups, and one whose driver does finds polling again. No clock is read for this: the
 * caller reports each stretch's outcome.
 */
struct vhu_poll_adapt {
    uint32_t max_ns;
    uint32_t win_ns;
    uint16_t probe_every; /* with the window closed: stretches between two probes */
    uint16_t since_probe;
    bool adaptive;
    bool probing; /* the stretch under way is a probe */
};

void vhu_poll_adapt_init(struct vhu_poll_adapt *a, bool adaptive, uint32_t max_ns);
/* The window for the idle stretch starting now (0: do not poll, sleep). */
uint32_t vhu_poll_adapt_window(struct vhu_poll_adapt *a);
/* The stretch given a window > 0 ended: hit (work found while polling) or not (slept). */
void vhu_poll_adapt_result(struct vhu_poll_adapt *a, bool hit);

int vhu_worker_new(unsigned id, unsigned poll_us, vhu_worker_poll_fn *poll, void *poll_opaque,
                   struct vhu_worker **out);
void vhu_worker_free(struct vhu_worker *w);
struct vhu_loop *vhu_worker_loop(struct vhu_worker *w);
/* Run fn(arg) on the worker and wait for it; returns fn's result. Called on the worker itself,
 * runs fn directly. */
int vhu_worker_call(struct vhu_worker *w, int (*fn)(void *arg), void *arg);
bool vhu_worker_is_current(const struct vhu_worker *w);
/* On the worker: spin (poll without sleeping) even with no poll window, while on (rings that
 * have no kick source). */
void vhu_worker_set_spin(struct vhu_worker *w, bool on);
/* The control thread (one caller at a time: vhu_worker_call's slot): the worker's polling
 * from now on (fixed or adaptive; max_us 0: none, at most VHU_POLL_MAX_US). */
int vhu_worker_set_poll(struct vhu_worker *w, bool adaptive, unsigned max_us);
/* Its polling counters (struct vhu_worker_stats of vhu/backend.h), read racily. */
void vhu_worker_get_poll_stats(const struct vhu_worker *w, struct vhu_worker_stats *st);

#endif
