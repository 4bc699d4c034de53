/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Packed virtqueue, device side (virtio 1.3 §2.8).
 *
 * One descriptor ring shared both ways. The device reads available descriptors at last_avail
 * (wrap counter avail_wrap) and writes used descriptors at used_idx (wrap counter used_wrap); a
 * chain of n descriptors advances each position by n. Pushes collect in a shadow array; flush
 * writes them all, then, after a write barrier, the first one's flags, so the driver sees the
 * whole batch or none of it.
 */
#include "vq_internal.h"

/* virtio 2.8.1: available when AVAIL matches the driver's wrap counter and USED does not. */
static inline bool desc_is_avail(uint16_t flags, bool wrap)
{
    return ((flags & VQ_PACKED_AVAIL_BIT) != 0) == wrap &&
           ((flags & VQ_PACKED_USED_BIT) != 0) != wrap;
}

static inline uint16_t pos_of(uint16_t idx, bool wrap)
{
    return (uint16_t)(idx | (wrap ? VQ_WRAP_BIT : 0));
}

/* Device event suppression (virtio 2.8.10): ask for kicks, or not. */
static void dev_event_write(struct vhu_vq *vq, bool on)
{
    if (!on) {
        vq_store16(&vq->dev_event->flags, VHU_VRING_PACKED_EVENT_FLAG_DISABLE);
    } else if (vq->event_idx) {
        vq_store16(&vq->dev_event->off_wrap, pos_of(vq->last_avail, vq->avail_wrap));
        vq_store16_release(&vq->dev_event->flags, VHU_VRING_PACKED_EVENT_FLAG_DESC);
    } else {
        vq_store16(&vq->dev_event->flags, VHU_VRING_PACKED_EVENT_FLAG_ENABLE);
    }
}

void vq_packed_start(struct vhu_vq *vq)
{
    vq->last_avail = (uint16_t)(vq->base & 0x7fff);
    vq->avail_wrap = (vq->base & VQ_WRAP_BIT) != 0;
    vq->used_idx = (uint16_t)((vq->base >> 16) & 0x7fff);
    vq->used_wrap = ((vq->base >> 16) & VQ_WRAP_BIT) != 0;
    /*
     * Frontends that predate the used half of the encoding (DPDK virtio-user sends only
     * "0 | 1 << 15" for a fresh packed ring) leave bits 16-31 zero. A ring restarted from a
     * GET_VRING_BASE has nothing in flight, so its used position equals its avail position:
     * take that. (A used half that is really zero — index 0, wrap 0 — only occurs with the avail
     * half zero as well, where both readings agree.)
     */
    if ((vq->base >> 16) == 0) {
        vq->used_idx = vq->last_avail;
        vq->used_wrap = vq->avail_wrap;
    }
    if (vq->pifl)
        vq_pifl_start(vq); /* may move both positions: the region knows better than a stale base */
    vq->signalled = vq->used_idx;
    vq->unsignalled = 0;
    dev_event_write(vq, true);
}

/* virtio 2.8.7: an indirect table is a plain array; only WRITE means anything in its entries. */
const char *vq_packed_walk_indirect(struct vhu_vq *vq, struct vq_walk *w, const struct vq_desc *ind)
{
    const void *table;
    struct vq_desc d;
    unsigned n;
    const char *why = vq_indirect_open(vq, ind, &n, &table);

    if (why)
        return why;
    for (unsigned i = 0; i < n; i++) {
        if (!vq_indirect_read(vq, ind->addr, i, table, &d))
            return "indirect table is not in guest memory";
        if (d.flags & VHU_VRING_DESC_F_INDIRECT)
            return "nested indirect descriptor";
        why = vq_walk_add(w, &d);
        if (why)
            return why;
    }
    return NULL;
}

/* Walk the chain at last_avail. The buffer id is in the chain's last descriptor (2.8.6). */
static const char *walk(struct vhu_vq *vq, struct vhu_vq_elem *e, uint16_t *id)
{
    struct vq_walk w = {.vq = vq, .elem = e};
    struct vq_desc d;
    unsigned pos = vq->last_avail, count = 0;
    const char *why;

    for (;;) {
        if (++count > vq->num)
            return "descriptor chain longer than the ring";
        vq_pdesc_read(&d, &vq->pdesc[pos]);
        if (d.flags & VHU_VRING_DESC_F_INDIRECT) {
            if (count != 1)
                return "indirect descriptor inside a chain";
            e->ndesc = 1;
            *id = d.next;
            return vq_packed_walk_indirect(vq, &w, &d);
        }
        why = vq_walk_add(&w, &d);
        if (why)
            return why;
        if (!(d.flags & VHU_VRING_DESC_F_NEXT))
            break;
        if (++pos == vq->num)
            pos = 0;
    }
    e->ndesc = (uint16_t)count;
    *id = d.next;
    return NULL;
}

struct vhu_vq_elem *vq_packed_pop(struct vhu_vq *vq)
{
    struct vhu_vq_elem *e;
    const char *why;
    unsigned slot;
    uint16_t id = 0;

    if (vhu_unlikely(vq->resubmit_pos < vq->nresubmit))
        return vq_pifl_pop_resubmit(vq);
    if (!desc_is_avail(vq_load16(&vq->pdesc[vq->last_avail].flags), vq->avail_wrap))
        return NULL;
    /* virtio 2.8 (ordering): the flags are read before the rest of the descriptors they cover. */
    vhu_smp_rmb();
    if (vhu_unlikely(vq->nfree == 0))
        return NULL;
    e = vq_elem_get(vq, &slot);
    why = walk(vq, e, &id);
    if (!why && vhu_unlikely(id >= vq->num))
        why = "buffer id out of range";
    if (!why && vq->pifl && !vq_pifl_record(vq, slot, vq->last_avail, e->ndesc))
        why = "more descriptors in flight than the ring holds";
    if (vhu_unlikely(why != NULL)) {
        vq_elem_put(vq, slot);
        vhu_vq_break(vq, why);
        return NULL;
    }
    e->id = id;
    vq_elem_commit(vq, slot, pos_of(vq->last_avail, vq->avail_wrap));
    vq_packed_advance(&vq->last_avail, &vq->avail_wrap, e->ndesc, vq->num);
    if (vq->event_idx && !vq->notify_off)
        vq_store16(&vq->dev_event->off_wrap, pos_of(vq->last_avail, vq->avail_wrap));
    return e;
}

/*
 * Up to max chains. A chain of one plain descriptor whose buffer lies in the cached region (what
 * net's rings carry) is taken here with the checks a walk would make for it; anything else
 * (chains, indirect tables, a zero length, another region, a recovered ring) goes through
 * vq_packed_pop(). The driver's event position is written once, after the burst.
 */
unsigned vq_packed_pop_burst(struct vhu_vq *vq, struct vhu_vq_elem **out, unsigned max)
{
    unsigned n = 0;

    if (vhu_unlikely(vq->resubmit_pos < vq->nresubmit || vq->pifl)) {
        while (n < max && (out[n] = vq_packed_pop(vq)) != NULL)
            n++;
        return n;
    }
    while (n < max) {
        const struct vhu_vring_packed_desc *pd = &vq->pdesc[vq->last_avail];
        uint16_t flags = vq_load16(&pd->flags), id;
        uint64_t addr;
        uint32_t len;

        if (!desc_is_avail(flags, vq->avail_wrap))
            break;
        /* virtio 2.8 (ordering): the flags are read before the rest of the descriptor. */
        vhu_smp_rmb();
        if (vhu_unlikely(vq->nfree == 0))
            break;
        addr = __atomic_load_n(&pd->addr, __ATOMIC_RELAXED);
        len = __atomic_load_n(&pd->len, __ATOMIC_RELAXED);
        id = vq_load16(&pd->id);
        if (vhu_unlikely(id >= vq->num || !vq_single_cached(vq, flags, addr, len))) {
            /* the general walk: takes it, or breaks the queue with the reason */
            if ((out[n] = vq_packed_pop(vq)) == NULL)
                break;
            n++;
            continue;
        }
        out[n++] = vq_take_single(vq, flags, addr, len, id,
                                  pos_of(vq->last_avail, vq->avail_wrap));
        vq_packed_advance(&vq->last_avail, &vq->avail_wrap, 1, vq->num);
    }
    if (n && vq->event_idx && !vq->notify_off)
        vq_store16(&vq->dev_event->off_wrap, pos_of(vq->last_avail, vq->avail_wrap));
    return n;
}

bool vq_packed_has_work(const struct vhu_vq *vq)
{
    return desc_is_avail(vq_load16(&vq->pdesc[vq->last_avail].flags), vq->avail_wrap);
}

uint16_t vq_packed_used_pos(const struct vhu_vq *vq)
{
    uint16_t idx = vq->used_idx;
    bool wrap = vq->used_wrap;

    for (unsigned i = 0; i < vq->nstaged; i++)
        vq_packed_advance(&idx, &wrap, vq->shadow[i].ndesc, vq->num);
    return pos_of(idx, wrap);
}

/* The staged entries become visible (descriptors, the first one's flags last; the inflight
 * region; the dirty log). The notification window from signalled stays open for
 * vq_flush_now(). */
void vq_packed_publish(struct vhu_vq *vq)
{
    uint16_t head = vq->used_idx, idx = vq->used_idx, head_flags = 0;
    bool wrap = vq->used_wrap;
    unsigned n;

    for (unsigned i = 0; i < vq->nstaged; i++) {
        const struct vq_shadow_used *s = &vq->shadow[i];
        struct vhu_vring_packed_desc *d = &vq->pdesc[idx];
        /* virtio 2.8.1: a used descriptor has AVAIL == USED == the device's wrap counter; WRITE
         * says the length is meaningful. */
        uint16_t flags = (uint16_t)((wrap ? VQ_PACKED_AVAIL_BIT | VQ_PACKED_USED_BIT : 0) |
                                    (s->len ? VHU_VRING_DESC_F_WRITE : 0));
        /* In order (virtio 1.3 2.8.9): the read-only chains right after a read-only one share
         * its used descriptor, which carries the last one's buffer id; the driver skips to the
         * slot after that chain (vq_split_close_run() says why only read-only chains). */
        bool first = i == 0;

        if (vq->in_order && s->readonly) {
            while (i + 1 < vq->nstaged && vq->shadow[i + 1].readonly) {
                vq_packed_advance(&idx, &wrap, s->ndesc, vq->num);
                s = &vq->shadow[++i];
            }
        }
        if (first) {
            vq_store32(&d->len, s->len);
            vq_store16(&d->id, s->id);
            head_flags = flags;
        } else {
            /* len, id and flags are the descriptor's last 8 bytes: one store, so the line the
             * driver is polling changes hands once per descriptor, not three times. */
            vq_store64(&d->len, (uint64_t)s->len | (uint64_t)s->id << 32 |
                                    (uint64_t)flags << 48);
        }
        vq_packed_advance(&idx, &wrap, s->ndesc, vq->num);
    }
    if (vq->pifl)
        vq_pifl_stage(vq, idx, wrap);
    /* Everything above must be visible before the first descriptor turns used. */
    vhu_smp_wmb();
    vq_store16(&vq->pdesc[head].flags, head_flags);
    vq->used_idx = idx;
    vq->used_wrap = wrap;
    n = (unsigned)(idx - head + (idx <= head ? vq->num : 0));
    if (vhu_unlikely(vq->log_ring))
        vq_log_packed_used(vq, head, n);
    if (vq->pifl)
        vq_pifl_publish(vq);
    vq->nstaged = 0;
    vq->unsignalled += n;
}

/* After vq_flush_now()'s barrier: true when the driver wants an interrupt for the n slots
 * published from old to used_idx (virtio 2.8.10). */
bool vq_packed_need_notify(struct vhu_vq *vq, uint16_t old, uint32_t n)
{
    uint16_t ev = vq_load16(&vq->drv_event->flags);

    if (ev == VHU_VRING_PACKED_EVENT_FLAG_DISABLE)
        return false;
    if (ev == VHU_VRING_PACKED_EVENT_FLAG_DESC && vq->event_idx) {
        if (n >= vq->num) /* a whole lap or more since the last decision: passed any event */
            return true;
        return vq_packed_need_event(vq_load16(&vq->drv_event->off_wrap), old, vq->used_idx,
                                    vq->used_wrap, vq->num);
    }
    return true;
}

void vq_packed_rewind(struct vhu_vq *vq, uint32_t pos, unsigned slot)
{
    if (vq->pifl)
        vq_pifl_release(vq, vq->ifl_head[slot]);
    vq->last_avail = (uint16_t)(pos & 0x7fff);
    vq->avail_wrap = (pos & VQ_WRAP_BIT) != 0;
}

void vq_packed_set_notify(struct vhu_vq *vq, bool on)
{
    dev_event_write(vq, on);
}
