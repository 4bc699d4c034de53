/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Private to src/vq/: the driver-side queue (struct vhu_vqd). The device is not trusted either:
 * every id and length it reports is checked against what the driver itself has in flight.
 */
#ifndef VHU_VQD_INTERNAL_H
#define VHU_VQD_INTERNAL_H

#include "vq_internal.h"

struct vhu_vqd {
    uint16_t num;
    bool packed;
    bool event_idx;
    bool broken;
    bool cb_off;         /* vhu_vqd_disable_cb() in effect */
    bool in_order;       /* VIRTIO_F_IN_ORDER: descriptors in ring order, batched used entries */
    unsigned num_free;   /* free descriptors (split) / ring slots (packed) */

    union {
        struct vhu_vring_desc *desc;
        struct vhu_vring_packed_desc *pdesc;
    };
    struct vhu_vring_avail *avail;                 /* split */
    struct vhu_vring_used *used;                   /* split */
    struct vhu_vring_packed_desc_event *drv_event; /* packed: we write */
    struct vhu_vring_packed_desc_event *dev_event; /* packed: the device writes */
    uint64_t desc_addr, driver_addr, device_addr;

    void *ind;           /* indirect tables, ind_max entries per id */
    uint64_t ind_addr;
    uint16_t ind_max;

    /* split */
    uint16_t free_head;  /* free list threaded through next[] */
    uint16_t avail_idx;  /* added, not yet published */
    uint16_t kicked;     /* avail idx published at the previous kick_prepare */
    uint16_t last_used;  /* split: free-running; packed: ring slot */

    /* packed */
    uint16_t next_avail; /* slot */
    bool avail_wrap;
    bool used_wrap;
    uint16_t kicked_pos; /* slot | wrap << 15 at the previous kick_prepare */
    uint16_t free_id;    /* free buffer ids threaded through next[] */
    bool pending;        /* a head descriptor whose flags are held back until kick_prepare */
    uint16_t pending_slot;
    uint16_t pending_flags;
    uint16_t unpublished; /* packed: buffers added since the last kick_prepare */
    uint16_t published;   /* packed: buffers published and not yet returned */

    /* in order: buffers of the used entry being returned still to go (the oldest in flight
     * first; the last gets batch_len, the others 0) */
    uint16_t batch_left;
    uint32_t batch_len;

    /* per head index (split) / buffer id (packed) */
    uint16_t *next;      /* split: descriptor free list links; packed: id free list links */
    uint16_t *ndesc;     /* descriptors / ring slots the buffer occupies */
    uint64_t *in_len;    /* writable bytes: the most the device may report */
    void **cookie;       /* NULL when not in flight */
};

void vqd_fail(struct vhu_vqd *vqd, const char *why);
int vqd_inorder_batch(struct vhu_vqd *vqd, uint16_t oldest, uint32_t id, uint32_t len,
                      unsigned limit);

/* In order: the written length of the next buffer of the batch being returned. */
static inline uint32_t vqd_inorder_len(struct vhu_vqd *vqd)
{
    return --vqd->batch_left ? 0 : vqd->batch_len;
}

void vqd_split_init(struct vhu_vqd *vqd);
int vqd_split_add(struct vhu_vqd *vqd, const struct vhu_vqd_seg *segs, unsigned n_out,
                  unsigned n_in, void *cookie);
bool vqd_split_kick_prepare(struct vhu_vqd *vqd);
void *vqd_split_get_used(struct vhu_vqd *vqd, uint32_t *len);
void vqd_split_set_cb(struct vhu_vqd *vqd, bool on);
bool vqd_split_more_used(const struct vhu_vqd *vqd);

void vqd_packed_init(struct vhu_vqd *vqd);
int vqd_packed_add(struct vhu_vqd *vqd, const struct vhu_vqd_seg *segs, unsigned n_out,
                   unsigned n_in, void *cookie);
bool vqd_packed_kick_prepare(struct vhu_vqd *vqd);
void *vqd_packed_get_used(struct vhu_vqd *vqd, uint32_t *len);
void vqd_packed_set_cb(struct vhu_vqd *vqd, bool on);
bool vqd_packed_more_used(const struct vhu_vqd *vqd);

static inline uint64_t vqd_in_len(const struct vhu_vqd_seg *segs, unsigned n_out, unsigned n_in)
{
    uint64_t sum = 0;

    for (unsigned i = n_out; i < n_out + n_in; i++)
        sum += segs[i].len;
    return sum;
}

#endif
