/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_VQ_CORE_H
#define VHU_VQ_CORE_H

/*
 * The ring owner's side of a device virtqueue: create, place, start, stop, position, call sink,
 * busy-poll mode, inflight tracking. The device core (src/backend) and the ring tests call these;
 * device models never do (they see vhu/vq.h).
 */
#ifdef VHU_DEVICE_BUILD
#error "device models must not include the ring owner's header"
#endif

#include "vhu/mem.h"
#include "vhu/notifier.h"
#include "vhu/vq.h"

/* Where the rings are, already translated to host pointers by the caller. */
struct vhu_vq_config {
    uint16_t num;       /* ring size; power of two for split, any 1..32768 for packed */
    bool packed;        /* VIRTIO_F_RING_PACKED negotiated */
    bool event_idx;     /* VIRTIO_RING_F_EVENT_IDX negotiated */
    bool indirect;      /* VIRTIO_RING_F_INDIRECT_DESC negotiated */
    /* VIRTIO_F_IN_ORDER negotiated: the device pushes in the order it popped, so a flush may
     * write one used entry for a run of chains without writable descriptors (virtio 1.3 2.7.9
     * and 2.8.9, "In-order use of descriptors"; transmit buffers). Every chain with writable
     * descriptors keeps its own entry and length. */
    bool in_order;
    void *desc;         /* descriptor table / packed descriptor ring */
    void *driver;       /* split: avail ring; packed: driver event suppression */
    void *device;       /* split: used ring;  packed: device event suppression */
    /* Dirty logging of the ring writes (used entries, event areas): the guest-physical
     * addresses of the descriptor and device areas. Off when log_ring is false. */
    bool log_ring;
    uint64_t desc_gpa;
    uint64_t device_gpa;
};

/* Called when the queue is marked broken (guest fault) or wants the driver notified. */
struct vhu_vq_hooks {
    void (*notify)(struct vhu_vq *vq, void *opaque); /* default: signal the call sink */
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
/* The call sink signalled to notify the driver (NULL: none). Borrowed: the owner frees it after
 * setting another (on the ring's thread). */
void vhu_vq_set_call(struct vhu_vq *vq, struct vhu_notifier *call);
struct vhu_notifier *vhu_vq_call(const struct vhu_vq *vq);
void vhu_vq_set_core(struct vhu_vq *vq, void *core);   /* the device core's pointer */
void *vhu_vq_core(const struct vhu_vq *vq);
/*
 * Busy-poll mode (the owner thread's poller, not devices): while on, vhu_vq_enable_notify()
 * keeps kicks off and returns false (the poller looks at the ring again soon), so a polled
 * driver never pays for a kick. Turning it off re-enables kicks and returns
 * vhu_vq_enable_notify()'s answer: true if work is waiting.
 */
bool vhu_vq_set_polling(struct vhu_vq *vq, bool on);

/*
 * Dirty logging (vhost-user "Migration"; the same bitmap as vhost-net): bitmap has one bit per
 * VHU_LOG_PAGE of guest-physical address (page p is bit p % 8 of byte p / 8), size bytes; it is
 * shared with the frontend, which clears bits while we set them (atomic OR). `all` logs every
 * write the device makes into buffers; ring writes are logged when the ring was started with
 * log_ring. call (may be NULL) is signalled after a flush that logged something. bitmap NULL
 * turns logging off. Run on the ring's owner thread; takes effect at once, for the elements
 * already popped too. A write past the bitmap is not logged (one message per ring).
 */
#define VHU_LOG_PAGE 4096u
struct vhu_vq_log {
    uint8_t *bitmap;
    uint64_t size;
    bool all;
    struct vhu_notifier *call; /* borrowed */
};
void vhu_vq_set_log(struct vhu_vq *vq, const struct vhu_vq_log *log);

/*
 * The ring's counters since vhu_vq_new(): plain integers the owner thread adds to (no atomics
 * on the data path); another thread reads them racily (each field is one aligned word).
 */
struct vhu_vq_counters {
    uint64_t used;      /* chains completed (pushed) */
    uint64_t out_bytes; /* device-readable bytes of the completed chains */
    uint64_t in_bytes;  /* bytes the device reported written into them */
    uint64_t calls;     /* driver notifications (call sink signalled) */
    uint64_t breaks;    /* times the ring broke on a driver error */
    uint64_t errors;    /* requests the device completed with an error (vhu_vq_count_error) */
};
void vhu_vq_get_counters(const struct vhu_vq *vq, struct vhu_vq_counters *out);

/*
 * Inflight tracking (vhost-user "Inflight I/O tracking", split and packed): region is this queue's
 * part of the buffer shared with the frontend through GET/SET_INFLIGHT_FD,
 * vhu_vq_inflight_region_size(num) bytes. Every popped chain is recorded there until its used
 * entry is published, so after a backend crash a new backend resubmits exactly the requests the
 * old one had not completed. Set while stopped (NULL turns it off); a start with a region that
 * already describes this ring first pops the recorded chains, oldest first (an unpopped chain
 * is back in the avail ring, not in flight). A packed ring's positions after a crash come from
 * the region (its base is stale then). A region that does not hold together is refused (logged)
 * and the ring starts afresh from its base.
 */
size_t vhu_vq_inflight_region_size(uint16_t num);
/* What a split ring alone needs: the per-queue area of buffers made before packed tracking. */
size_t vhu_vq_inflight_split_size(uint16_t num);
void vhu_vq_set_inflight_region(struct vhu_vq *vq, void *region);
/* Chains the last start found in flight and will pop again first. */
unsigned vhu_vq_resubmitted(const struct vhu_vq *vq);

#endif
