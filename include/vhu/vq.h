/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_VQ_H
#define VHU_VQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vhu/mem.h"
#include "vhu/virtio.h"

/*
 * Virtqueues, device side (struct vhu_vq) and driver side (struct vhu_vqd), split and packed.
 * The ring code exists once; the frontend library, tests and benchmarks use the driver side.
 * Nothing here knows about sockets or vhost-user messages.
 */

#define VHU_VQ_MAX_SIZE 32768

/* ------------------------------------------------------------------------------------------- */
/* Device side                                                                                 */
/* ------------------------------------------------------------------------------------------- */

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

/* Where the rings are, already translated to host pointers by the caller. */
struct vhu_vq_config {
    uint16_t num;       /* ring size; power of two for split, any 1..32768 for packed */
    bool packed;        /* VIRTIO_F_RING_PACKED negotiated */
    bool event_idx;     /* VIRTIO_RING_F_EVENT_IDX negotiated */
    bool indirect;      /* VIRTIO_RING_F_INDIRECT_DESC negotiated */
    void *desc;         /* descriptor table / packed descriptor ring */
    void *driver;       /* split: avail ring; packed: driver event suppression */
    void *device;       /* split: used ring;  packed: device event suppression */
};

/* Called when the queue is marked broken (guest fault) or wants the driver notified. */
struct vhu_vq_hooks {
    void (*notify)(struct vhu_vq *vq, void *opaque); /* default: write call_fd */
    void (*error)(struct vhu_vq *vq, void *opaque);  /* after the queue is marked broken */
    void *opaque;
};

/*
 * elem_size >= sizeof(struct vhu_vq_elem); max_segs bounds the segments of one chain (a longer
 * chain breaks the queue). index is the queue's number, used in log lines.
 */
int vhu_vq_new(unsigned index, size_t elem_size, unsigned max_segs, struct vhu_vq **out);
void vhu_vq_free(struct vhu_vq *vq);

/*
 * Start: validate cfg, size the element pool, begin at the base set by vhu_vq_set_base() (split:
 * the used index is read from the ring). A started queue is not broken, whatever it was before.
 * mem is borrowed: the caller keeps it alive until vhu_vq_stop() or vhu_vq_set_mem().
 */
int vhu_vq_start(struct vhu_vq *vq, const struct vhu_vq_config *cfg,
                 const struct vhu_mem_table *mem);
/* Stop; staged used entries are flushed first; elements still popped are forgotten (the caller
 * must not push them afterwards). vhu_vq_get_base() keeps reporting the position. */
void vhu_vq_stop(struct vhu_vq *vq);
bool vhu_vq_started(const struct vhu_vq *vq);
void vhu_vq_set_mem(struct vhu_vq *vq, const struct vhu_mem_table *mem);

/*
 * Ring position, in vhost-user's encoding (SET/GET_VRING_BASE): split: the next avail index;
 * packed: bits 0-14 last avail index, bit 15 its wrap counter, bits 16-30 used index, bit 31 its
 * wrap counter. Set while stopped.
 */
int vhu_vq_set_base(struct vhu_vq *vq, uint32_t base);
uint32_t vhu_vq_get_base(const struct vhu_vq *vq);

void vhu_vq_set_hooks(struct vhu_vq *vq, const struct vhu_vq_hooks *hooks);
/* The eventfd written to notify the driver (-1: none). Not owned by the vq. */
void vhu_vq_set_call_fd(struct vhu_vq *vq, int fd);
int vhu_vq_call_fd(const struct vhu_vq *vq);
unsigned vhu_vq_index(const struct vhu_vq *vq);
uint16_t vhu_vq_num(const struct vhu_vq *vq);
void vhu_vq_set_priv(struct vhu_vq *vq, void *priv);   /* the device's pointer */
void *vhu_vq_priv(const struct vhu_vq *vq);
void vhu_vq_set_core(struct vhu_vq *vq, void *core);   /* the backend core's pointer */
void *vhu_vq_core(const struct vhu_vq *vq);

/*
 * Next available chain, or NULL when there is none, the pool is empty or the queue is broken.
 * Every descriptor is validated: addresses must translate, chains must not loop or exceed the ring
 * size or max_segs, writable descriptors must not be followed by readable ones, indirect tables
 * must be well formed (len a multiple of 16, not nested, not empty). A violation breaks the
 * queue (vhu_vq_broken() turns true, the error hook runs) and NULL is returned.
 */
struct vhu_vq_elem *vhu_vq_pop(struct vhu_vq *vq);
/* Complete elem with `written` bytes (clamped to elem->in_len); the used entry is staged until
 * vhu_vq_flush(). On a broken queue the element is just recycled. */
void vhu_vq_push(struct vhu_vq *vq, struct vhu_vq_elem *elem, uint32_t written);
/*
 * Return an element without using it: the chain will be popped again (e.g. resources ran out).
 * Only in LIFO order: elem must be the most recently popped element still out (several unpops
 * in reverse pop order are fine). The ring position rolls back (packed: by elem->ndesc, with the
 * wrap counter). Any other element cannot be rewound; it is completed with 0 bytes written so the
 * driver gets its buffer back, and an error is logged.
 */
void vhu_vq_unpop(struct vhu_vq *vq, struct vhu_vq_elem *elem);
/* Publish staged used entries and notify the driver if it asked to be (EVENT_IDX aware). */
void vhu_vq_flush(struct vhu_vq *vq);
/* Notify unconditionally (e.g. after a new call fd arrives). */
void vhu_vq_notify(struct vhu_vq *vq);

/* Kick suppression: disable while processing; enable returns true if more work arrived
 * meanwhile ("enable, barrier, re-check"). */
void vhu_vq_disable_notify(struct vhu_vq *vq);
bool vhu_vq_enable_notify(struct vhu_vq *vq);
bool vhu_vq_has_work(const struct vhu_vq *vq);
/*
 * Busy-poll mode (the owner thread's poller, not devices): while on, vhu_vq_enable_notify()
 * keeps kicks off and returns false (the poller looks at the ring again soon), so a polled
 * driver never pays for a kick. Turning it off re-enables kicks and returns
 * vhu_vq_enable_notify()'s answer: true if work is waiting.
 */
bool vhu_vq_set_polling(struct vhu_vq *vq, bool on);

bool vhu_vq_broken(const struct vhu_vq *vq);

/*
 * Inflight tracking (vhost-user "Inflight I/O tracking", split rings): region is this queue's
 * part of the buffer shared with the frontend through GET/SET_INFLIGHT_FD,
 * vhu_vq_inflight_region_size(num) bytes. Every popped chain is recorded there until its used
 * entry is published, so after a backend crash a new backend resubmits exactly the requests the
 * old one had not completed. Set while stopped (NULL turns it off); a start with a region that
 * already describes this ring first pops the recorded chains, oldest first. Packed rings are
 * not tracked.
 */
size_t vhu_vq_inflight_region_size(uint16_t num);
void vhu_vq_set_inflight_region(struct vhu_vq *vq, void *region);
/* Chains the last start found in flight and will pop again first. */
unsigned vhu_vq_resubmitted(const struct vhu_vq *vq);
void vhu_vq_break(struct vhu_vq *vq, const char *why);
/* Why the queue broke, or NULL when it is not. vhu_vq_break() keeps the pointer: pass a string
 * with static storage. */
const char *vhu_vq_break_reason(const struct vhu_vq *vq);
/* Elements currently popped and not pushed. */
unsigned vhu_vq_inflight(const struct vhu_vq *vq);

/* ------------------------------------------------------------------------------------------- */
/* Driver side                                                                                 */
/* ------------------------------------------------------------------------------------------- */

struct vhu_vqd;

/* One buffer segment as the device will see it: a device address and a length. */
struct vhu_vqd_seg {
    uint64_t addr;
    uint32_t len;
};

/* Bytes of ring memory needed (4 KiB aligned start is enough for both layouts). */
size_t vhu_vqd_ring_size(uint16_t num, bool packed);

struct vhu_vqd_config {
    uint16_t num;
    bool packed;
    bool event_idx;
    void *ring;          /* vhu_vqd_ring_size() bytes, zeroed by vhu_vqd_new() */
    uint64_t ring_addr;  /* the device's address of `ring` */
    /* Optional indirect tables: num * indirect_max descriptors (16 bytes each). When set, a
     * chain of more than one segment goes out as one indirect descriptor. */
    void *indirect;
    uint64_t indirect_addr;
    uint16_t indirect_max;
};

int vhu_vqd_new(const struct vhu_vqd_config *cfg, struct vhu_vqd **out);
void vhu_vqd_free(struct vhu_vqd *vqd);
/* Device addresses of the three areas, for SET_VRING_ADDR. */
void vhu_vqd_addrs(const struct vhu_vqd *vqd, uint64_t *desc, uint64_t *driver, uint64_t *device);

/*
 * Make a chain of n_out readable then n_in writable segments available; cookie comes back from
 * vhu_vqd_get_used(). -ENOSPC when the ring is full, -EINVAL for an empty or oversized chain.
 * The avail index is published by vhu_vqd_kick_prepare().
 */
/* (cookie must not be NULL: -EINVAL; a broken queue: -EIO) */
int vhu_vqd_add(struct vhu_vqd *vqd, const struct vhu_vqd_seg *segs, unsigned n_out,
                unsigned n_in, void *cookie);
/* Publish added chains; true when the device wants a kick (EVENT_IDX / NO_NOTIFY aware). */
bool vhu_vqd_kick_prepare(struct vhu_vqd *vqd);
/* Next used chain's cookie and written length, or NULL. A device that reports a bad id or an
 * impossible length makes this return NULL and sets vhu_vqd_broken(). */
void *vhu_vqd_get_used(struct vhu_vqd *vqd, uint32_t *len);
/* Interrupt suppression; enable returns true if used entries are already pending. */
void vhu_vqd_disable_cb(struct vhu_vqd *vqd);
bool vhu_vqd_enable_cb(struct vhu_vqd *vqd);
unsigned vhu_vqd_num_free(const struct vhu_vqd *vqd);
bool vhu_vqd_broken(const struct vhu_vqd *vqd);
/* Ring position in vhost-user's SET_VRING_BASE encoding (what a fresh device should start at):
 * the oldest buffer not yet used, exact when nothing is in flight. */
uint32_t vhu_vqd_base(const struct vhu_vqd *vqd);

#endif
