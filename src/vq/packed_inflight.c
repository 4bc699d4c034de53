/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Inflight tracking for packed rings (vhost-user.rst "Inflight I/O tracking", packed layout).
 *
 * While running, the region is written, never read back: the links of the free list and of the
 * recorded chains are kept in private arrays (ifl_next, ifl_last), so a frontend scribbling on
 * the region cannot steer the data path. It is read at start only, where every index, count and
 * link is checked before anything is resubmitted; a region that does not hold together is
 * refused with one message and the ring starts afresh from the frontend's base.
 *
 * Crash consistency: a pop records the chain's descriptors, then its head (length, last entry,
 * counter), then sets the head in flight, then moves free_head and old_free_head. A flush puts
 * the batch's chains back on the free list and records the new used position (free_head,
 * used_idx, used_wrap_counter), publishes the used descriptors, clears the heads' inflight flags
 * and only then copies the state into the old_* fields. A successor that finds the two sets
 * different looks at the ring to tell whether the batch reached the driver, commits or rolls
 * back, and resubmits every head still in flight and not free, oldest first.
 */
#include <stdlib.h>
#include <string.h>

#include "vhu/log.h"
#include "vq_internal.h"

#define MARK_FREE 1
#define MARK_CHAIN 2

/* Write the free list and positions into both the current and the old_* fields. */
static void write_state(struct vhu_vq *vq)
{
    struct vq_inflight_packed *r = vq->pifl;

    vq_store16(&r->free_head, vq->ifl_free);
    vq_store16(&r->used_idx, vq->used_idx);
    vq_store8(&r->used_wrap_counter, vq->used_wrap);
    vhu_smp_wmb();
    vq_store16(&r->old_free_head, vq->ifl_free);
    vq_store16(&r->old_used_idx, vq->used_idx);
    vq_store8(&r->old_used_wrap_counter, vq->used_wrap);
}

/* A region that describes nothing (fresh from GET_INFLIGHT_FD, another ring size, or refused):
 * every entry free, positions from the frontend's base. */
static void init_region(struct vhu_vq *vq)
{
    struct vq_inflight_packed *r = vq->pifl;

    memset(r->desc, 0, sizeof(r->desc[0]) * vq->num);
    for (uint16_t i = 0; i < vq->num; i++) {
        vq->ifl_next[i] = (uint16_t)(i + 1);
        r->desc[i].next = (uint16_t)(i + 1);
    }
    vq->ifl_free = 0;
    r->features = 0;
    r->desc_num = vq->num;
    write_state(vq);
    vhu_smp_wmb();
    vq_store16(&r->version, VQ_INFLIGHT_VERSION);
}

/*
 * Read the region once, check it, and queue its in-flight chains. Returns NULL or why the region
 * was refused (then nothing was queued and the caller starts afresh).
 */
static const char *recover(struct vhu_vq *vq)
{
    struct vq_inflight_packed *r = vq->pifl;
    const uint16_t num = vq->num;
    uint16_t used = vq_load16(&r->used_idx), oused = vq_load16(&r->old_used_idx);
    uint16_t fh = vq_load16(&r->free_head), ofh = vq_load16(&r->old_free_head);
    uint8_t uw = vq_load8(&r->used_wrap_counter), ouw = vq_load8(&r->old_used_wrap_counter);
    unsigned total = 0, n = 0;
    uint16_t free = num;
    bool wrap;

    if (used >= num || oused >= num || uw > 1 || ouw > 1 || fh > num || ofh > num)
        return "positions out of range";
    if (used != oused || uw != ouw) {
        /* A batch was being published. Its first used descriptor went to old_used_idx: if that
         * slot no longer looks available for the old lap, the driver got the batch: commit. */
        uint16_t f = vq_load16(&vq->pdesc[oused].flags) & (VQ_PACKED_AVAIL_BIT | VQ_PACKED_USED_BIT);
        uint16_t avail = ouw ? VQ_PACKED_AVAIL_BIT : VQ_PACKED_USED_BIT;
        if (f != avail) {
            ofh = fh;
            oused = used;
            ouw = uw;
        }
    }
    memset(vq->ifl_mark, 0, num);
    for (unsigned i = ofh, k = 0; i < num; i = vq_load16(&r->desc[i].next)) {
        if (++k > num || vq->ifl_mark[i])
            return "free list loops";
        vq->ifl_mark[i] = MARK_FREE;
    }
    for (uint16_t i = 0; i < num; i++) {
        struct vq_resubmit_key *key = &vq->resubmit_keys[n];
        uint16_t cnt, last, e = i;

        if (vq->ifl_mark[i] || !vq_load8(&r->desc[i].inflight))
            continue;
        cnt = vq_load16(&r->desc[i].num);
        last = vq_load16(&r->desc[i].last);
        if (cnt == 0 || cnt > num - total)
            return "more descriptors in flight than the ring holds";
        for (unsigned k = 0; k < cnt; k++) {
            if (e >= num || vq->ifl_mark[e])
                return "chains overlap or leave the region";
            vq->ifl_mark[e] = MARK_CHAIN;
            if (k + 1 < cnt) {
                vq->ifl_next[e] = vq_load16(&r->desc[e].next);
                e = vq->ifl_next[e];
            }
        }
        if (e != last)
            return "a chain does not end at its last entry";
        vq->ifl_last[i] = last;
        key->counter = vq_load64(&r->desc[i].counter);
        key->head = i;
        key->ndesc = cnt;
        total += cnt;
        n++;
    }
    /* The region holds together: rebuild the free list from everything not in flight (entries
     * a crash left between lists come back), and record the rolled-back state. */
    for (unsigned i = num; i-- > 0;) {
        if (vq->ifl_mark[i] == MARK_CHAIN)
            continue;
        vq->ifl_next[i] = free;
        vq_store16(&r->desc[i].next, free);
        vq_store8(&r->desc[i].inflight, 0);
        free = (uint16_t)i;
    }
    vq->ifl_free = free;
    vq->used_idx = oused;
    vq->used_wrap = ouw != 0;
    write_state(vq);

    qsort(vq->resubmit_keys, n, sizeof(vq->resubmit_keys[0]), vq_resubmit_cmp);
    vq->nresubmit = n;
    for (unsigned k = 0; k < n; k++) {
        uint64_t c = vq->resubmit_keys[k].counter;
        if (c >= vq->ifl_counter && c != UINT64_MAX)
            vq->ifl_counter = c + 1;
    }
    /* Chains are taken from the ring in order: the avail position is the used position plus
     * every descriptor still in flight. A frontend's base after a crash is stale for packed
     * rings (there is no used index in guest memory to resync from), so the region decides. */
    vq->last_avail = oused;
    wrap = ouw != 0;
    vq_packed_advance(&vq->last_avail, &wrap, total, num);
    vq->avail_wrap = wrap;
    return NULL;
}

void vq_pifl_start(struct vhu_vq *vq)
{
    struct vq_inflight_packed *r = vq->pifl;
    uint16_t version = vq_load16(&r->version), desc_num = vq_load16(&r->desc_num);
    const char *why;

    vq->nresubmit = vq->resubmit_pos = 0;
    vq->ifl_counter = 1;
    if (version == VQ_INFLIGHT_VERSION && desc_num == vq->num) {
        why = recover(vq);
        if (!why)
            return;
        vhu_err("vq %u: inflight region refused (%s); nothing is resubmitted", vq->index, why);
    } else if (version != 0 && version != VQ_INFLIGHT_VERSION) {
        vhu_err("vq %u: inflight region of unknown version %u refused", vq->index, version);
    }
    init_region(vq);
}

/* Copy the chain just walked at ring position pos (ndesc descriptors) into free entries. False
 * when the free list runs out: the driver offered more descriptors than the ring holds. */
bool vq_pifl_record(struct vhu_vq *vq, unsigned slot, uint16_t pos, uint16_t ndesc)
{
    struct vq_inflight_packed *r = vq->pifl;
    uint16_t h = vq->ifl_free, e = h, last = h;
    struct vq_desc d;

    for (unsigned k = 0; k < ndesc; k++) {
        struct vq_inflight_pdesc *x;
        unsigned p = pos + k;

        if (e >= vq->num)
            return false;
        if (p >= vq->num)
            p -= vq->num;
        vq_pdesc_read(&d, &vq->pdesc[p]);
        x = &r->desc[e];
        x->addr = d.addr;
        x->len = d.len;
        x->flags = d.flags;
        x->id = d.next;
        last = e;
        e = vq->ifl_next[e];
    }
    r->desc[h].num = ndesc;
    r->desc[h].last = last;
    r->desc[h].counter = vq->ifl_counter++;
    vq->ifl_last[h] = last;
    vq->ifl_head[slot] = h;
    __atomic_store_n(&r->desc[h].inflight, 1, __ATOMIC_RELEASE);
    vq->ifl_free = e;
    vq_store16_release(&r->free_head, e);
    vq_store16(&r->old_free_head, e);
    return true;
}

/* Chain at head back on the free list (private links and the region's). */
static void link_free(struct vhu_vq *vq, uint16_t head)
{
    uint16_t last = vq->ifl_last[head];

    vq->ifl_next[last] = vq->ifl_free;
    vq_store16(&vq->pifl->desc[last].next, vq->ifl_free);
    vq->ifl_free = head;
}

/* Unpop: the chain is available again, not in flight. */
void vq_pifl_release(struct vhu_vq *vq, uint16_t head)
{
    struct vq_inflight_packed *r = vq->pifl;

    link_free(vq, head);
    vq_store16(&r->free_head, vq->ifl_free);
    vhu_smp_wmb();
    vq_store8(&r->desc[head].inflight, 0);
    vq_store16(&r->old_free_head, vq->ifl_free);
}

/* Before the staged batch is published: its chains go back on the free list, and the current
 * (not old_) fields say where the used position will be. */
void vq_pifl_stage(struct vhu_vq *vq, uint16_t used_idx, bool used_wrap)
{
    struct vq_inflight_packed *r = vq->pifl;

    for (unsigned i = 0; i < vq->nstaged; i++)
        link_free(vq, vq->shadow[i].ifl_head);
    vq_store16(&r->free_head, vq->ifl_free);
    vq_store16(&r->used_idx, used_idx);
    vq_store8(&r->used_wrap_counter, used_wrap);
}

/* After the batch is published (vq->used_idx/used_wrap updated): its heads are no longer in
 * flight, and the old_* fields catch up. */
void vq_pifl_publish(struct vhu_vq *vq)
{
    struct vq_inflight_packed *r = vq->pifl;

    for (unsigned i = 0; i < vq->nstaged; i++)
        vq_store8(&r->desc[vq->shadow[i].ifl_head].inflight, 0);
    vhu_smp_wmb();
    vq_store16(&r->old_free_head, vq->ifl_free);
    vq_store16(&r->old_used_idx, vq->used_idx);
    vq_store8(&r->old_used_wrap_counter, vq->used_wrap);
}

/* Pop the next chain recorded in flight by the previous backend, from the region's copy of its
 * descriptors (the ring slots are long reused). Links come from the private copy recovery made;
 * the descriptors are read once each and walked like any other chain. */
struct vhu_vq_elem *vq_pifl_pop_resubmit(struct vhu_vq *vq)
{
    const struct vq_resubmit_key *key = &vq->resubmit_keys[vq->resubmit_pos];
    struct vhu_vq_elem *e;
    struct vq_walk w;
    const char *why = NULL;
    uint16_t idx = key->head, id = 0;
    unsigned slot;

    if (vhu_unlikely(vq->nfree == 0))
        return NULL;
    e = vq_elem_get(vq, &slot);
    w = (struct vq_walk){.vq = vq, .elem = e};
    for (unsigned k = 0; k < key->ndesc && !why; k++) {
        const volatile struct vq_inflight_pdesc *x = &vq->pifl->desc[idx];
        struct vq_desc d = {.addr = x->addr, .len = x->len, .flags = x->flags, .next = x->id};

        id = d.next;
        if (d.flags & VHU_VRING_DESC_F_INDIRECT)
            why = key->ndesc != 1 ? "indirect descriptor inside a chain"
                                  : vq_packed_walk_indirect(vq, &w, &d);
        else
            why = vq_walk_add(&w, &d);
        idx = vq->ifl_next[idx];
    }
    if (!why && id >= vq->num)
        why = "buffer id out of range";
    if (vhu_unlikely(why != NULL)) {
        vq_elem_put(vq, slot);
        vhu_vq_break(vq, why);
        return NULL;
    }
    e->id = id;
    e->ndesc = key->ndesc;
    vq->ifl_head[slot] = key->head;
    vq_elem_commit(vq, slot, VQ_POS_RESUBMITTED);
    vq->resubmit_pos++;
    return e;
}
