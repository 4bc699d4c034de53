/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Packed virtqueue, driver side (virtio 1.3 §2.8). Buffer ids come from a free list (in order:
 * the id is the head slot, so the buffers in flight can be walked from last_used); a chain
 * takes consecutive ring slots from next_avail. The first head written since the last
 * kick_prepare keeps its flags back until kick_prepare, so a batch becomes visible at once.
 */
#include <errno.h>

#include "vqd_internal.h"

static inline uint16_t pos_of(uint16_t idx, bool wrap)
{
    return (uint16_t)(idx | (wrap ? VQ_WRAP_BIT : 0));
}

/* AVAIL = our wrap counter, USED = its inverse (virtio 2.8.1). */
static inline uint16_t avail_bits(bool wrap)
{
    return (uint16_t)(wrap ? VQ_PACKED_AVAIL_BIT : VQ_PACKED_USED_BIT);
}

static inline bool desc_is_used(uint16_t flags, bool wrap)
{
    return ((flags & VQ_PACKED_AVAIL_BIT) != 0) == wrap &&
           ((flags & VQ_PACKED_USED_BIT) != 0) == wrap;
}

void vqd_packed_init(struct vhu_vqd *vqd)
{
    for (unsigned i = 0; i < vqd->num; i++)
        vqd->next[i] = (uint16_t)(i + 1 < vqd->num ? i + 1 : 0);
    vqd->free_id = 0;
    vqd->avail_wrap = true;
    vqd->used_wrap = true;
    vqd->kicked_pos = pos_of(0, true);
    if (vqd->event_idx) {
        vq_store16(&vqd->drv_event->off_wrap, pos_of(0, true));
        vq_store16(&vqd->drv_event->flags, VHU_VRING_PACKED_EVENT_FLAG_DESC);
    }
}

static void pdesc_write(struct vhu_vring_packed_desc *d, uint64_t addr, uint32_t len, uint16_t id)
{
    d->addr = addr;
    d->len = len;
    d->id = id;
}

int vqd_packed_add(struct vhu_vqd *vqd, const struct vhu_vqd_seg *segs, unsigned n_out,
                   unsigned n_in, void *cookie)
{
    unsigned n = n_out + n_in;
    bool indirect = vqd->ind && n > 1 && n <= vqd->ind_max;
    unsigned need = indirect ? 1 : n;
    uint16_t id = vqd->free_id, slot = vqd->next_avail, head = slot, head_flags = 0;
    bool wrap = vqd->avail_wrap;

    if (need > vqd->num)
        return -EINVAL;
    if (need > vqd->num_free)
        return -ENOSPC;
    if (vqd->in_order)
        id = slot; /* free: the slots in flight are the run before next_avail */
    else
        vqd->free_id = vqd->next[id];
    if (indirect) {
        /* virtio 2.8.7: a plain array, only WRITE is meaningful in its entries. */
        struct vhu_vring_packed_desc *t =
            (struct vhu_vring_packed_desc *)vqd->ind + (size_t)id * vqd->ind_max;
        for (unsigned k = 0; k < n; k++) {
            pdesc_write(&t[k], segs[k].addr, segs[k].len, 0);
            t[k].flags = k >= n_out ? VHU_VRING_DESC_F_WRITE : 0;
        }
        pdesc_write(&vqd->pdesc[slot], vqd->ind_addr + (uint64_t)id * vqd->ind_max * 16,
                    (uint32_t)(n * 16), id);
        head_flags = (uint16_t)(VHU_VRING_DESC_F_INDIRECT | avail_bits(wrap));
        if (++slot == vqd->num) {
            slot = 0;
            wrap = !wrap;
        }
    } else {
        for (unsigned k = 0; k < n; k++) {
            uint16_t f = (uint16_t)((k + 1 < n ? VHU_VRING_DESC_F_NEXT : 0) |
                                    (k >= n_out ? VHU_VRING_DESC_F_WRITE : 0) | avail_bits(wrap));
            /* The id goes in every descriptor: the spec puts it in the last one, some devices
             * read the first. */
            pdesc_write(&vqd->pdesc[slot], segs[k].addr, segs[k].len, id);
            if (k == 0)
                head_flags = f;
            else
                vq_store16(&vqd->pdesc[slot].flags, f);
            if (++slot == vqd->num) {
                slot = 0;
                wrap = !wrap;
            }
        }
    }
    if (!vqd->pending) {
        vqd->pending = true;
        vqd->pending_slot = head;
        vqd->pending_flags = head_flags;
    } else {
        /* The device cannot get here before the held-back head is published (after a wmb). */
        vq_store16(&vqd->pdesc[head].flags, head_flags);
    }
    vqd->next_avail = slot;
    vqd->avail_wrap = wrap;
    vqd->num_free -= need;
    vqd->ndesc[id] = (uint16_t)need;
    vqd->in_len[id] = vqd_in_len(segs, n_out, n_in);
    vqd->cookie[id] = cookie;
    if (vqd->in_order)
        vqd->unpublished++;
    return 0;
}

bool vqd_packed_kick_prepare(struct vhu_vqd *vqd)
{
    uint16_t old = vqd->kicked_pos & 0x7fff, ev;

    if (!vqd->pending)
        return false;
    vhu_smp_wmb();
    vq_store16(&vqd->pdesc[vqd->pending_slot].flags, vqd->pending_flags);
    vqd->pending = false;
    vqd->published = (uint16_t)(vqd->published + vqd->unpublished);
    vqd->unpublished = 0;
    vqd->kicked_pos = pos_of(vqd->next_avail, vqd->avail_wrap);
    vhu_smp_mb();
    ev = vq_load16(&vqd->dev_event->flags);
    if (ev == VHU_VRING_PACKED_EVENT_FLAG_DISABLE)
        return false;
    if (ev == VHU_VRING_PACKED_EVENT_FLAG_DESC && vqd->event_idx)
        return vq_packed_need_event(vq_load16(&vqd->dev_event->off_wrap), old, vqd->next_avail,
                                    vqd->avail_wrap, vqd->num);
    return true;
}

void *vqd_packed_get_used(struct vhu_vqd *vqd, uint32_t *len)
{
    struct vhu_vring_packed_desc *d = &vqd->pdesc[vqd->last_used];
    uint16_t flags, id;
    uint32_t l;
    unsigned v;
    void *cookie;

    if (vqd->batch_left) {
        /* the rest of an in-order batch: the buffer at last_used, nothing more to read */
        id = vqd->last_used;
        l = vqd_inorder_len(vqd);
        goto done;
    }
    flags = vq_load16(&d->flags);
    if (!desc_is_used(flags, vqd->used_wrap))
        return NULL;
    vhu_smp_rmb();
    id = vq_load16(&d->id);
    l = __atomic_load_n(&d->len, __ATOMIC_RELAXED);
    if (!(flags & VHU_VRING_DESC_F_WRITE))
        l = 0; /* the length is only meaningful with WRITE set */
    if (id >= vqd->num || !vqd->cookie[id]) {
        vqd_fail(vqd, "device used a buffer id that is not in flight");
        return NULL;
    }
    if (vqd->in_order) {
        /* The descriptor stands for the published buffers from last_used up to id. */
        if (!vqd_inorder_batch(vqd, vqd->last_used, id, l, vqd->published))
            return NULL;
        id = vqd->last_used;
        l = vqd_inorder_len(vqd);
    } else if (l > vqd->in_len[id]) {
        vqd_fail(vqd, "device wrote more than the buffer holds");
        return NULL;
    }
done:
    cookie = vqd->cookie[id];
    vqd->cookie[id] = NULL;
    v = (unsigned)vqd->last_used + vqd->ndesc[id];
    if (v >= vqd->num) {
        v -= vqd->num;
        vqd->used_wrap = !vqd->used_wrap;
    }
    vqd->last_used = (uint16_t)v;
    vqd->num_free += vqd->ndesc[id];
    if (vqd->in_order) {
        vqd->published--; /* the batch held published buffers only */
    } else {
        vqd->next[id] = vqd->free_id;
        vqd->free_id = id;
    }
    if (vqd->event_idx && !vqd->cb_off)
        vq_store16(&vqd->drv_event->off_wrap, pos_of(vqd->last_used, vqd->used_wrap));
    *len = l;
    return cookie;
}

void vqd_packed_set_cb(struct vhu_vqd *vqd, bool on)
{
    if (!on) {
        vq_store16(&vqd->drv_event->flags, VHU_VRING_PACKED_EVENT_FLAG_DISABLE);
    } else if (vqd->event_idx) {
        vq_store16(&vqd->drv_event->off_wrap, pos_of(vqd->last_used, vqd->used_wrap));
        vq_store16_release(&vqd->drv_event->flags, VHU_VRING_PACKED_EVENT_FLAG_DESC);
    } else {
        vq_store16(&vqd->drv_event->flags, VHU_VRING_PACKED_EVENT_FLAG_ENABLE);
    }
}

bool vqd_packed_more_used(const struct vhu_vqd *vqd)
{
    return desc_is_used(vq_load16(&vqd->pdesc[vqd->last_used].flags), vqd->used_wrap);
}
