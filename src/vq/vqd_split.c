/* SPDX-License-Identifier: BSD-3-Clause */
/* Split virtqueue, driver side (virtio 1.3 §2.7). */
#include <errno.h>

#include "vqd_internal.h"

static inline uint16_t *used_event(const struct vhu_vqd *vqd)
{
    return &vqd->avail->ring[vqd->num];
}

static inline uint16_t *avail_event(const struct vhu_vqd *vqd)
{
    return (uint16_t *)(void *)&vqd->used->ring[vqd->num];
}

void vqd_split_init(struct vhu_vqd *vqd)
{
    /* The free list lives in our own memory, not in the shared table a device could scribble
     * on: descriptors 0 -> 1 -> ... -> num-1. */
    for (unsigned i = 0; i < vqd->num; i++)
        vqd->next[i] = (uint16_t)(i + 1 < vqd->num ? i + 1 : 0);
    vqd->free_head = 0;
}

static void desc_write(struct vhu_vring_desc *d, uint64_t addr, uint32_t len, uint16_t flags,
                       uint16_t next)
{
    d->addr = addr;
    d->len = len;
    d->flags = flags;
    d->next = next;
}

static uint16_t seg_flags(unsigned k, unsigned n_out, unsigned n)
{
    return (uint16_t)((k + 1 < n ? VHU_VRING_DESC_F_NEXT : 0) | (k >= n_out ? VHU_VRING_DESC_F_WRITE : 0));
}

int vqd_split_add(struct vhu_vqd *vqd, const struct vhu_vqd_seg *segs, unsigned n_out,
                  unsigned n_in, void *cookie)
{
    unsigned n = n_out + n_in;
    bool indirect = vqd->ind && n > 1 && n <= vqd->ind_max;
    unsigned need = indirect ? 1 : n;
    uint16_t head = vqd->free_head, i = head;

    if (need > vqd->num)
        return -EINVAL;
    if (need > vqd->num_free)
        return -ENOSPC;
    if (indirect) {
        /* Each head descriptor owns one table, so tables never collide while in flight. */
        struct vhu_vring_desc *t = (struct vhu_vring_desc *)vqd->ind + (size_t)head * vqd->ind_max;
        for (unsigned k = 0; k < n; k++)
            desc_write(&t[k], segs[k].addr, segs[k].len, seg_flags(k, n_out, n), (uint16_t)(k + 1));
        desc_write(&vqd->desc[head], vqd->ind_addr + (uint64_t)head * vqd->ind_max * 16,
                   (uint32_t)(n * 16), VHU_VRING_DESC_F_INDIRECT, 0);
        i = vqd->next[head];
    } else {
        for (unsigned k = 0; k < n; k++) {
            desc_write(&vqd->desc[i], segs[k].addr, segs[k].len, seg_flags(k, n_out, n),
                       vqd->next[i]);
            i = vqd->next[i];
        }
    }
    vqd->free_head = i;
    vqd->num_free -= need;
    vqd->ndesc[head] = (uint16_t)need;
    vqd->in_len[head] = vqd_in_len(segs, n_out, n_in);
    vqd->cookie[head] = cookie;
    vqd->avail->ring[vqd->avail_idx & (vqd->num - 1)] = head;
    vqd->avail_idx++;
    return 0;
}

bool vqd_split_kick_prepare(struct vhu_vqd *vqd)
{
    uint16_t old = vqd->kicked, new_idx = vqd->avail_idx;

    if (old == new_idx)
        return false;
    /* Descriptors and ring entries before the index that publishes them. */
    vhu_smp_wmb();
    vq_store16(&vqd->avail->idx, new_idx);
    vqd->kicked = new_idx;
    /* And the index before reading whether the device wants to hear about it. */
    vhu_smp_mb();
    if (vqd->event_idx)
        return vhu_vring_need_event(vq_load16(avail_event(vqd)), new_idx, old);
    return !(vq_load16(&vqd->used->flags) & VHU_VRING_USED_F_NO_NOTIFY);
}

/* Return a finished chain's descriptors to the free list. In order the list is never relinked:
 * chains come back oldest first, so the free entries stay one run in ring order from free_head
 * and every chain keeps taking the next entries. */
static void chain_free(struct vhu_vqd *vqd, uint16_t head)
{
    uint16_t tail = head;

    vqd->num_free += vqd->ndesc[head];
    if (vqd->in_order)
        return;
    for (unsigned k = 1; k < vqd->ndesc[head]; k++)
        tail = vqd->next[tail];
    vqd->next[tail] = vqd->free_head;
    vqd->free_head = head;
}

/* In order: the head of the oldest chain in flight, where the run of busy entries that ends at
 * free_head starts. */
static uint16_t oldest_head(const struct vhu_vqd *vqd)
{
    return (uint16_t)((vqd->free_head + vqd->num_free) & (vqd->num - 1));
}

void *vqd_split_get_used(struct vhu_vqd *vqd, uint32_t *len)
{
    uint16_t idx;
    struct vhu_vring_used_elem *u;
    uint32_t id, l;
    void *cookie;

    if (vqd->batch_left) {
        /* the rest of an in-order batch: nothing more to read from the device */
        id = oldest_head(vqd);
        l = vqd_inorder_len(vqd);
        goto done;
    }
    idx = vq_load16(&vqd->used->idx);
    if (idx == vqd->last_used)
        return NULL;
    if ((uint16_t)(idx - vqd->last_used) > vqd->num) {
        vqd_fail(vqd, "device claims more than num used buffers");
        return NULL;
    }
    /* The index before the entries it covers. */
    vhu_smp_rmb();
    u = &vqd->used->ring[vqd->last_used & (vqd->num - 1)];
    id = __atomic_load_n(&u->id, __ATOMIC_RELAXED);
    l = __atomic_load_n(&u->len, __ATOMIC_RELAXED);
    if (id >= vqd->num || !vqd->cookie[id]) {
        vqd_fail(vqd, "device used a buffer id that is not in flight");
        return NULL;
    }
    if (vqd->in_order) {
        /* The entry stands for the published chains up to id, no more than the index covers. */
        unsigned limit = VHU_MIN((uint16_t)(vqd->kicked - vqd->last_used),
                                 (uint16_t)(idx - vqd->last_used));
        if (!vqd_inorder_batch(vqd, oldest_head(vqd), id, l, limit))
            return NULL;
        id = oldest_head(vqd);
        l = vqd_inorder_len(vqd);
    } else if (l > vqd->in_len[id]) {
        vqd_fail(vqd, "device wrote more than the buffer holds");
        return NULL;
    }
done:
    cookie = vqd->cookie[id];
    vqd->cookie[id] = NULL;
    chain_free(vqd, (uint16_t)id);
    vqd->last_used++;
    if (vqd->event_idx && !vqd->cb_off)
        vq_store16(used_event(vqd), vqd->last_used);
    *len = l;
    return cookie;
}

void vqd_split_set_cb(struct vhu_vqd *vqd, bool on)
{
    if (vqd->event_idx) {
        /* Off: an event index the device cannot reach before we consume more (it is at most
         * num <= 32768 ahead of last_used). On: interrupt on the next used entry. */
        vq_store16(used_event(vqd), (uint16_t)(vqd->last_used + (on ? 0 : 0x8000)));
        return;
    }
    vq_store16(&vqd->avail->flags, on ? 0 : VHU_VRING_AVAIL_F_NO_INTERRUPT);
}

bool vqd_split_more_used(const struct vhu_vqd *vqd)
{
    return vq_load16(&vqd->used->idx) != vqd->last_used;
}
