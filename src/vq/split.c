/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Split virtqueue, device side (virtio 1.3 §2.7).
 *
 * last_avail and used_idx are free-running 16-bit counters; ring slots are counter & (num - 1).
 * Used entries are written at push time but used->idx is only published at flush, so the driver
 * sees a batch at once.
 */
#include "vq_internal.h"

/* virtio 2.7.10: used_event sits after the avail ring, avail_event after the used ring. */
static inline uint16_t *used_event(const struct vhu_vq *vq)
{
    return &vq->avail->ring[vq->num];
}

static inline uint16_t *avail_event(const struct vhu_vq *vq)
{
    return (uint16_t *)(void *)&vq->used->ring[vq->num];
}

void vq_split_start(struct vhu_vq *vq)
{
    vq->last_avail = (uint16_t)vq->base;
    vq->shadow_avail = vq->last_avail;
    /* The used index lives in the ring; a restarted device continues where the last one left
     * off (whatever a hostile guest put there only matters to that guest). */
    vq->used_idx = vq_load16(&vq->used->idx);
    vq->signalled = vq->used_idx;
    vq_store16(&vq->used->flags, 0);
    if (vq->event_idx)
        vq_store16(avail_event(vq), vq->last_avail);
}

static const char *walk_indirect(struct vhu_vq *vq, struct vq_walk *w, const struct vq_desc *ind)
{
    const void *table;
    struct vq_desc d;
    unsigned n, i = 0, count = 0;
    const char *why = vq_indirect_open(vq, ind, &n, &table);

    if (why)
        return why;
    for (;;) {
        if (i >= n)
            return "indirect descriptor index out of range";
        if (++count > n)
            return "indirect descriptor chain loops";
        if (!vq_indirect_read(vq, ind->addr, i, table, &d))
            return "indirect table is not in guest memory";
        /* virtio 2.7.5.3.1: only one table per descriptor. */
        if (d.flags & VRING_DESC_F_INDIRECT)
            return "nested indirect descriptor";
        why = vq_walk_add(w, &d);
        if (why)
            return why;
        if (!(d.flags & VRING_DESC_F_NEXT))
            return NULL;
        i = d.next;
    }
}

/*
 * Walk the chain starting at head into e. Bounds every step: the index must be inside the table
 * and a chain can't be longer than the table, which catches every loop. An indirect descriptor
 * is accepted only as the whole chain (what every driver sends; a table at the end of a direct
 * chain is refused rather than half-supported).
 */
static const char *walk(struct vhu_vq *vq, uint16_t head, struct vhu_vq_elem *e)
{
    struct vq_walk w = {.vq = vq, .elem = e};
    struct vq_desc d;
    unsigned i = head, count = 0;
    const char *why;

    for (;;) {
        if (i >= vq->num)
            return "descriptor index out of range";
        if (++count > vq->num)
            return "descriptor chain loops";
        vq_desc_read(&d, &vq->desc[i]);
        if (d.flags & VRING_DESC_F_INDIRECT) {
            if (count != 1)
                return "indirect descriptor inside a chain";
            e->ndesc = 1;
            return walk_indirect(vq, &w, &d);
        }
        why = vq_walk_add(&w, &d);
        if (why)
            return why;
        if (!(d.flags & VRING_DESC_F_NEXT))
            break;
        i = d.next;
    }
    e->ndesc = (uint16_t)count;
    return NULL;
}

struct vhu_vq_elem *vq_split_pop(struct vhu_vq *vq)
{
    struct vhu_vq_elem *e;
    const char *why;
    unsigned slot;
    uint16_t head;

    if (vq->last_avail == vq->shadow_avail) {
        uint16_t idx = vq_load16(&vq->avail->idx);
        if (vhu_unlikely((uint16_t)(idx - vq->last_avail) > vq->num)) {
            vhu_vq_break(vq, "driver claims more than num available buffers");
            return NULL;
        }
        vq->shadow_avail = idx;
        if (idx == vq->last_avail)
            return NULL;
        /* Ordering: read the index before the ring entries and descriptors it covers. */
        vhu_smp_rmb();
    }
    if (vhu_unlikely(vq->nfree == 0))
        return NULL;
    head = vq_load16(&vq->avail->ring[vq->last_avail & (vq->num - 1)]);
    if (vhu_unlikely(head >= vq->num)) {
        vhu_vq_break(vq, "avail ring head index out of range");
        return NULL;
    }
    e = vq_elem_get(vq, &slot);
    why = walk(vq, head, e);
    if (vhu_unlikely(why != NULL)) {
        vq_elem_put(vq, slot);
        vhu_vq_break(vq, why);
        return NULL;
    }
    e->id = head;
    vq_elem_commit(vq, slot, vq->last_avail);
    vq->last_avail++;
    if (vq->event_idx && !vq->notify_off)
        vq_store16(avail_event(vq), vq->last_avail);
    return e;
}

void vq_split_push(struct vhu_vq *vq, struct vhu_vq_elem *elem, uint32_t len)
{
    struct vring_used_elem *u = &vq->used->ring[vq->used_idx & (vq->num - 1)];

    vq_store32(&u->id, elem->id);
    vq_store32(&u->len, len);
    vq->used_idx++;
    vq->nstaged++;
}

/* Publish the staged entries; true when the driver wants an interrupt. */
bool vq_split_flush(struct vhu_vq *vq)
{
    uint16_t old = vq->signalled, new_idx = vq->used_idx;

    /* Ordering: the entries must be visible before the index that covers them. */
    vhu_smp_wmb();
    vq_store16(&vq->used->idx, new_idx);
    vq->nstaged = 0;
    vq->signalled = new_idx;
    /* Order the index store before reading the driver's suppression state (virtio 2.7.10). */
    vhu_smp_mb();
    if (vq->event_idx)
        return vhu_vring_need_event(vq_load16(used_event(vq)), new_idx, old);
    return !(vq_load16(&vq->avail->flags) & VRING_AVAIL_F_NO_INTERRUPT);
}

void vq_split_rewind(struct vhu_vq *vq, uint32_t pos)
{
    vq->last_avail = (uint16_t)pos;
}

void vq_split_set_notify(struct vhu_vq *vq, bool on)
{
    if (vq->event_idx) {
        /* Disabled: avail_event simply stops following last_avail (see pop), so the driver sees
         * an old event index and does not kick. Enabled: ask for a kick on the next buffer. */
        if (on)
            vq_store16(avail_event(vq), vq->last_avail);
        return;
    }
    vq_store16(&vq->used->flags, on ? 0 : VRING_USED_F_NO_NOTIFY);
}

bool vq_split_has_work(const struct vhu_vq *vq)
{
    return vq_load16(&vq->avail->idx) != vq->last_avail;
}
