/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Split virtqueue, device side (virtio 1.3 §2.7).
 *
 * last_avail and used_idx are free-running 16-bit counters; ring slots are counter & (num - 1).
 * Used entries are written at push time but used->idx is only published at flush, so the driver
 * sees a batch at once.
 */
#include <stdlib.h>
#include <string.h>

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

/*
 * vhost-user.rst "Inflight I/O tracking", on (re)connect: finish the bookkeeping of a batch the
 * previous backend published but did not get to clear, then queue every chain still marked in
 * flight for resubmission, oldest first. The region comes from the frontend, which may write it
 * at any moment: every index read from it is bounds-checked, each entry is read once into a
 * private array that is then sorted (a comparator reading shared memory could see the order
 * change under it, which qsort does not survive), and the chains are walked like any other.
 */
static void inflight_recover(struct vhu_vq *vq)
{
    struct vq_inflight_split *ifl = vq->ifl;
    uint16_t used = vq_load16(&vq->used->idx);

    vq->nresubmit = vq->resubmit_pos = 0;
    if (ifl->version != VQ_INFLIGHT_VERSION || ifl->desc_num != vq->num) {
        /* A fresh region (GET_INFLIGHT_FD just made it) or one for another ring size. */
        memset(ifl->desc, 0, sizeof(ifl->desc[0]) * vq->num);
        ifl->version = VQ_INFLIGHT_VERSION;
        ifl->desc_num = vq->num;
        ifl->last_batch_head = 0;
        ifl->used_idx = used;
        vq->ifl_counter = 1;
        return;
    }
    if (ifl->used_idx != used) {
        uint16_t batch = (uint16_t)(used - ifl->used_idx), h = ifl->last_batch_head;
        for (unsigned k = 0; k < batch && k < vq->num && h < vq->num; k++) {
            ifl->desc[h].inflight = 0;
            h = ifl->desc[h].next;
        }
        ifl->used_idx = used;
    }
    vq->ifl_counter = 1;
    for (uint16_t i = 0; i < vq->num; i++) {
        struct vq_resubmit_key *k = &vq->resubmit_keys[vq->nresubmit];

        if (!__atomic_load_n(&ifl->desc[i].inflight, __ATOMIC_RELAXED))
            continue;
        k->counter = __atomic_load_n(&ifl->desc[i].counter, __ATOMIC_RELAXED);
        k->head = i;
        vq->nresubmit++;
        if (k->counter >= vq->ifl_counter && k->counter != UINT64_MAX)
            vq->ifl_counter = k->counter + 1;
    }
    qsort(vq->resubmit_keys, vq->nresubmit, sizeof(vq->resubmit_keys[0]), vq_resubmit_cmp);
    for (unsigned k = 0; k < vq->nresubmit; k++)
        vq->resubmit[k] = vq->resubmit_keys[k].head;
    /* Buffers are taken from the avail ring in order: what was popped is what was completed
     * (the used index) plus what is still in flight. */
    vq->last_avail = (uint16_t)(used + vq->nresubmit);
    vq->shadow_avail = vq->last_avail;
}

void vq_split_start(struct vhu_vq *vq)
{
    vq->last_avail = (uint16_t)vq->base;
    vq->shadow_avail = vq->last_avail;
    if (vq->ifl)
        inflight_recover(vq);
    /* The used index lives in the ring; a restarted device continues where the last one left
     * off (whatever a hostile guest put there only matters to that guest). */
    vq->used_idx = vq_load16(&vq->used->idx);
    vq->signalled = vq->used_idx;
    vq->unsignalled = 0;
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
        if (d.flags & VHU_VRING_DESC_F_INDIRECT)
            return "nested indirect descriptor";
        why = vq_walk_add(w, &d);
        if (why)
            return why;
        if (!(d.flags & VHU_VRING_DESC_F_NEXT))
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
        if (d.flags & VHU_VRING_DESC_F_INDIRECT) {
            if (count != 1)
                return "indirect descriptor inside a chain";
            e->ndesc = 1;
            return walk_indirect(vq, &w, &d);
        }
        why = vq_walk_add(&w, &d);
        if (why)
            return why;
        if (!(d.flags & VHU_VRING_DESC_F_NEXT))
            break;
        i = d.next;
    }
    e->ndesc = (uint16_t)count;
    return NULL;
}

/* Walk the chain at head into a pool element and mark it popped at ring position pos; on a bad
 * chain the queue breaks and NULL comes back. The caller has checked the pool is not empty. */
static struct vhu_vq_elem *take_chain(struct vhu_vq *vq, uint16_t head, uint32_t pos)
{
    unsigned slot;
    struct vhu_vq_elem *e = vq_elem_get(vq, &slot);
    const char *why = walk(vq, head, e);

    if (vhu_unlikely(why != NULL)) {
        vq_elem_put(vq, slot);
        vhu_vq_break(vq, why);
        return NULL;
    }
    e->id = head;
    vq_elem_commit(vq, slot, pos);
    return e;
}

/* Pop the next chain recorded in flight by the previous backend. */
static struct vhu_vq_elem *pop_resubmit(struct vhu_vq *vq)
{
    struct vhu_vq_elem *e;

    if (vhu_unlikely(vq->nfree == 0))
        return NULL;
    /* Not rewindable: a position that never matches last_avail - 1 makes unpop complete it. */
    e = take_chain(vq, vq->resubmit[vq->resubmit_pos], vq->last_avail);
    if (e)
        vq->resubmit_pos++;
    return e;
}

/* Is a chain available at last_avail? The driver's index is read again only once the chains
 * it covered are used up, and validated: a driver claiming more than num breaks the queue. */
static bool avail_ready(struct vhu_vq *vq)
{
    uint16_t idx;

    if (vq->last_avail != vq->shadow_avail)
        return true;
    idx = vq_load16(&vq->avail->idx);
    if (vhu_unlikely((uint16_t)(idx - vq->last_avail) > vq->num)) {
        vhu_vq_break(vq, "driver claims more than num available buffers");
        return false;
    }
    vq->shadow_avail = idx;
    if (idx == vq->last_avail)
        return false;
    /* Ordering: read the index before the ring entries and descriptors it covers. */
    vhu_smp_rmb();
    return true;
}

struct vhu_vq_elem *vq_split_pop(struct vhu_vq *vq)
{
    struct vhu_vq_elem *e;
    uint16_t head;

    if (vhu_unlikely(vq->resubmit_pos < vq->nresubmit))
        return pop_resubmit(vq);
    if (!avail_ready(vq) || vhu_unlikely(vq->nfree == 0))
        return NULL;
    head = vq_load16(&vq->avail->ring[vq->last_avail & (vq->num - 1)]);
    if (vhu_unlikely(head >= vq->num)) {
        vhu_vq_break(vq, "avail ring head index out of range");
        return NULL;
    }
    e = take_chain(vq, head, vq->last_avail);
    if (vhu_unlikely(!e))
        return NULL;
    vq->last_avail++;
    if (vq->ifl) {
        vq->ifl->desc[head].counter = vq->ifl_counter++;
        vq->ifl->desc[head].inflight = 1;
    }
    if (vq->event_idx && !vq->notify_off)
        vq_store16(avail_event(vq), vq->last_avail);
    return e;
}

/*
 * Up to max chains. A chain of one plain descriptor whose buffer lies in the cached region is
 * taken here with the checks a walk would make for it; anything else (chains, indirect tables,
 * a zero length, another region, a bad head, inflight tracking, a recovered ring) goes through
 * vq_split_pop(). The driver's kick position is written once, after the burst.
 */
unsigned vq_split_pop_burst(struct vhu_vq *vq, struct vhu_vq_elem **out, unsigned max)
{
    unsigned n = 0;

    if (vhu_unlikely(vq->resubmit_pos < vq->nresubmit || vq->ifl)) {
        while (n < max && (out[n] = vq_split_pop(vq)) != NULL)
            n++;
        return n;
    }
    while (n < max) {
        const struct vhu_vring_desc *d;
        uint64_t addr;
        uint32_t len;
        uint16_t head, flags;

        if (!avail_ready(vq) || vhu_unlikely(vq->nfree == 0))
            break;
        head = vq_load16(&vq->avail->ring[vq->last_avail & (vq->num - 1)]);
        if (vhu_likely(head < vq->num)) {
            d = &vq->desc[head];
            addr = __atomic_load_n(&d->addr, __ATOMIC_RELAXED);
            len = __atomic_load_n(&d->len, __ATOMIC_RELAXED);
            flags = vq_load16(&d->flags);
        }
        if (vhu_unlikely(head >= vq->num || !vq_single_cached(vq, flags, addr, len))) {
            /* the general walk: takes it, or breaks the queue with the reason */
            if ((out[n] = vq_split_pop(vq)) == NULL)
                break;
            n++;
            continue;
        }
        out[n++] = vq_take_single(vq, flags, addr, len, head, vq->last_avail);
        vq->last_avail++;
    }
    if (n && vq->event_idx && !vq->notify_off)
        vq_store16(avail_event(vq), vq->last_avail);
    return n;
}

/* The staged entries become visible (entries, then the index; the inflight region; the dirty
 * log). The notification window [signalled, used_idx) stays open for vq_flush_now(). */
void vq_split_publish(struct vhu_vq *vq)
{
    uint16_t from = (uint16_t)(vq->signalled + vq->unsignalled), new_idx;

    if (vq->run_n)
        vq_split_close_run(vq);
    new_idx = vq->used_idx;
    /* Ordering: the entries must be visible before the index that covers them. */
    vhu_smp_wmb();
    vq_store16(&vq->used->idx, new_idx);
    if (vq->ifl) {
        /* The batch is published: clear its entries, then record the index that covers it. A
         * crash in between is repaired from last_batch_head on the next start. */
        uint16_t h = vq->ifl->last_batch_head;
        /* The region is shared with the frontend: bound every index read back from it. */
        for (unsigned k = 0; k < vq->nstaged && h < vq->num; k++) {
            vq->ifl->desc[h].inflight = 0;
            h = vq->ifl->desc[h].next;
        }
        vhu_smp_wmb();
        vq->ifl->used_idx = new_idx;
    }
    /* In order, the range also holds elements that were skipped, not written: every element
     * written is inside it, and a page marked for a skipped one only costs a needless copy. */
    if (vhu_unlikely(vq->log_ring))
        vq_log_split_used(vq, from, new_idx);
    vq->nstaged = 0;
    vq->unsignalled += (uint16_t)(new_idx - from);
}

/* After vq_flush_now()'s barrier: true when the driver wants an interrupt for the entries
 * published in [old, used_idx) (virtio 2.7.10). */
bool vq_split_need_notify(struct vhu_vq *vq, uint16_t old)
{
    if (vq->event_idx)
        return vhu_vring_need_event(vq_load16(used_event(vq)), vq->used_idx, old);
    return !(vq_load16(&vq->avail->flags) & VHU_VRING_AVAIL_F_NO_INTERRUPT);
}

/* Unpop: the chain at pos (head) goes back to the avail ring, so it is no longer in flight. */
void vq_split_rewind(struct vhu_vq *vq, uint32_t pos, uint16_t head)
{
    vq->last_avail = (uint16_t)pos;
    if (vq->ifl && head < vq->num)
        vq->ifl->desc[head].inflight = 0;
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
    vq_store16(&vq->used->flags, on ? 0 : VHU_VRING_USED_F_NO_NOTIFY);
}

bool vq_split_has_work(const struct vhu_vq *vq)
{
    return vq_load16(&vq->avail->idx) != vq->last_avail;
}
