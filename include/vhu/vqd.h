/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_VQD_H
#define VHU_VQD_H

/*
 * Virtqueues, driver side (struct vhu_vqd), split and packed: what a frontend (the frontend
 * library, tests, benchmarks) uses to post buffers and reap used ones. The same ring code as
 * the device side, from the other end.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vhu/virtio.h"

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
    /* VIRTIO_F_IN_ORDER was negotiated. Split: a chain takes the next n table entries in ring
     * order (x chains to x+1, wrapping to 0). Packed: a buffer's id is its head slot. The device
     * may then complete a batch of buffers with one used entry naming the batch's last buffer;
     * vhu_vqd_get_used() still returns every buffer of the batch, in order, one per call: the
     * skipped ones with len 0, the last with the entry's length. */
    bool in_order;
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
 * impossible length makes this return NULL and sets vhu_vqd_broken(). In order, a used entry
 * must name a published buffer still in flight; the buffers before it come back first, with
 * len 0. */
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
