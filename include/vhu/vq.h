/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_VQ_H
#define VHU_VQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vhu/virtio.h"

/*
 * Virtqueues as a device model sees them: pop available chains, push used ones, flush, and kick
 * suppression. Starting, stopping and placing rings is the device core's business
 * (src/vq/vq_core.h); the driver side of the rings is vhu/vqd.h. Nothing here knows about
 * transports, sockets or vhost-user messages.
 */

#define VHU_VQ_MAX_SIZE 32768

/*
 * One available buffer (descriptor chain) as the device sees it. A device embeds this at the head
 * of its own request struct and declares that struct's size (elem_size) once; elements come from
 * a per-queue pool sized to the ring, so popping never allocates.
 */
struct vhu_vq_elem {
    uint16_t id;       /* head index (split) or buffer id (packed): what goes into the used ring */
    uint16_t ndesc;    /* ring slots the chain occupies (packed: used index advances by this) */
    uint32_t out_num;  /* device-readable segments: iov[0 .. out_num) */
    uint32_t in_num;   /* device-writable segments: iov[out_num .. out_num + in_num) */
    uint16_t slot;     /* the ring's bookkeeping (pool slot): devices leave it alone */
    uint64_t out_len;  /* total readable bytes */
    uint64_t in_len;   /* total writable bytes */
    struct iovec *iov; /* points into the pool; capacity max_segs */
};

struct vhu_vq;

unsigned vhu_vq_index(const struct vhu_vq *vq);
uint16_t vhu_vq_num(const struct vhu_vq *vq);
void vhu_vq_set_priv(struct vhu_vq *vq, void *priv);   /* the device's pointer */
void *vhu_vq_priv(const struct vhu_vq *vq);

/*
 * Next available chain, or NULL when there is none, the pool is empty or the queue is broken.
 * Every descriptor is validated: addresses must translate, chains must not loop or exceed the ring
 * size or max_segs, writable descriptors must not be followed by readable ones, indirect tables
 * must be well formed (len a multiple of 16, not nested, not empty). A violation breaks the
 * queue (vhu_vq_broken() turns true, the error hook runs) and NULL is returned.
 */
struct vhu_vq_elem *vhu_vq_pop(struct vhu_vq *vq);
/*
 * Up to max chains into out[0..n), validated as vhu_vq_pop() does; n is 0 when there is none, the
 * pool is empty or the queue is broken (a chain that breaks it ends the burst: the ones before it
 * are out and must be pushed or unpopped). Cheaper per chain than vhu_vq_pop() in a loop.
 */
unsigned vhu_vq_pop_burst(struct vhu_vq *vq, struct vhu_vq_elem **out, unsigned max);
/* Complete elem with `written` bytes (clamped to elem->in_len); the used entry is staged until
 * vhu_vq_flush(). On a broken queue the element is just recycled. */
void vhu_vq_push(struct vhu_vq *vq, struct vhu_vq_elem *elem, uint32_t written);
/* vhu_vq_push() of elems[0..n) in order, elems[i] with written[i] bytes (written NULL: 0 for
 * every one), the per-queue work done once. */
void vhu_vq_push_burst(struct vhu_vq *vq, struct vhu_vq_elem *const *elems,
                       const uint32_t *written, unsigned n);
/*
 * Return an element without using it: the chain will be popped again (e.g. resources ran out).
 * Only in LIFO order: elem must be the most recently popped element still out (several unpops
 * in reverse pop order are fine). The ring position rolls back (packed: by elem->ndesc, with the
 * wrap counter). Any other element cannot be rewound; it is completed with 0 bytes written so the
 * driver gets its buffer back, and an error is logged.
 */
void vhu_vq_unpop(struct vhu_vq *vq, struct vhu_vq_elem *elem);
/*
 * Dirty logging (live migration): vhu_vq_push() logs the first `written` bytes of the writable
 * segments. A device that writes elsewhere in a buffer (virtio-blk's status byte after a failed
 * read, which it reports as 1 byte written) logs [off, off+len) of the writable area here before
 * pushing. Nothing happens while logging is off.
 */
void vhu_vq_log_write(struct vhu_vq *vq, const struct vhu_vq_elem *elem, uint64_t off,
                      uint64_t len);
/* Count a request the device completes with an error status (an I/O error, an unsupported
 * request) in the queue's statistics. Owner thread; not for the hot path of good requests. */
void vhu_vq_count_error(struct vhu_vq *vq);
/* Publish staged used entries and notify the driver if it asked to be (EVENT_IDX aware), for
 * everything published since the last flush. */
void vhu_vq_flush(struct vhu_vq *vq);
/*
 * Publish staged used entries without deciding on a notification: the driver sees them if it
 * looks (a driver that processes completions as they come need not sleep), and the next
 * vhu_vq_flush() notifies for them if the driver asked to be. Cheaper than a flush (no full
 * barrier, no read of the driver's event area). A device that publishes must flush before it
 * waits for more work, or a sleeping driver is not woken. A publish that finds a ring's worth of
 * entries published since the last decision flushes instead; a queue that breaks notifies for
 * what was published.
 */
void vhu_vq_publish(struct vhu_vq *vq);
/* Notify unconditionally (e.g. after a new call sink arrives). */
void vhu_vq_notify(struct vhu_vq *vq);

/* Kick suppression: disable while processing; enable returns true if more work arrived
 * meanwhile ("enable, barrier, re-check"). */
void vhu_vq_disable_notify(struct vhu_vq *vq);
bool vhu_vq_enable_notify(struct vhu_vq *vq);
bool vhu_vq_has_work(const struct vhu_vq *vq);
/* True while the owner thread busy-polls the ring: it runs the queue again as long as the ring
 * has work, so a device that stops early (a budget) need not reschedule itself. */
bool vhu_vq_polled(const struct vhu_vq *vq);
bool vhu_vq_broken(const struct vhu_vq *vq);
/* Break the queue for a driver error: pop returns NULL from then on, the core marks the device
 * NEEDS_RESET and signals the ring's error sink. */
void vhu_vq_break(struct vhu_vq *vq, const char *why);
/* Why the queue broke, or NULL when it is not. vhu_vq_break() keeps the pointer: pass a string
 * with static storage. */
const char *vhu_vq_break_reason(const struct vhu_vq *vq);

/* Elements currently popped and not pushed. */
unsigned vhu_vq_inflight(const struct vhu_vq *vq);

#endif
