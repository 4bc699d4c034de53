/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Device-side virtqueue: the object, its element pool, hooks, and the public entry points that
 * dispatch to the split (split.c) or packed (packed.c) ring code.
 */
#include <errno.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "vhu/log.h"
#include "vq_internal.h"

VHU_EXPORT int vhu_vq_new(unsigned index, size_t elem_size, unsigned max_segs, struct vhu_vq **out)
{
    struct vhu_vq *vq;

    if (!out || elem_size < sizeof(struct vhu_vq_elem) || max_segs == 0 ||
        elem_size > (1u << 20) || max_segs > 65536)
        return -EINVAL;
    vq = calloc(1, sizeof(*vq));
    if (!vq)
        return -ENOMEM;
    vq->index = index;
    vq->elem_size = elem_size;
    vq->max_segs = max_segs;
    vq->stride = VHU_ALIGN_UP(elem_size, alignof(max_align_t));
    /*
     * Each slot's iovecs start on a cache line, an odd number of lines after the previous
     * slot's: with max_segs a power of two (net's 64: 1 KiB) the first lines of the slots in
     * flight would otherwise share a few L1 sets and evict each other on every pop.
     */
    size_t lines = VHU_ALIGN_UP((size_t)max_segs * sizeof(struct iovec), (size_t)64) / 64;
    vq->iov_stride = (lines | 1) * 64 / sizeof(struct iovec);
    *out = vq;
    return 0;
}

static void pool_free(struct vhu_vq *vq)
{
    free(vq->pool);
    free(vq->iovs);
    free(vq->free_slots);
    free(vq->pop_pos);
    free(vq->busy);
    free(vq->shadow);
    free(vq->resubmit);
    free(vq->resubmit_keys);
    free(vq->ifl_next);
    free(vq->ifl_last);
    free(vq->ifl_head);
    free(vq->ifl_mark);
    vq->resubmit = NULL;
    vq->resubmit_keys = NULL;
    vq->ifl_next = vq->ifl_last = vq->ifl_head = NULL;
    vq->ifl_mark = NULL;
    vq->nresubmit = vq->resubmit_pos = 0;
    vq->pool = NULL;
    vq->iovs = NULL;
    vq->free_slots = NULL;
    vq->pop_pos = NULL;
    vq->busy = NULL;
    vq->shadow = NULL;
    vq->nfree = 0;
    vq->inflight = 0;
}

static int pool_alloc(struct vhu_vq *vq, uint16_t num)
{
    vq->pool = calloc(num, vq->stride);
    vq->iovs = aligned_alloc(64, (size_t)num * vq->iov_stride * sizeof(*vq->iovs));
    if (vq->iovs)
        memset(vq->iovs, 0, (size_t)num * vq->iov_stride * sizeof(*vq->iovs));
    vq->free_slots = calloc(num, sizeof(*vq->free_slots));
    vq->pop_pos = calloc(num, sizeof(*vq->pop_pos));
    vq->busy = calloc(num, sizeof(*vq->busy));
    vq->shadow = vq->packed ? calloc(num, sizeof(*vq->shadow)) : NULL;
    vq->resubmit = calloc(num, sizeof(*vq->resubmit));
    /* inflight recovery sorts a private copy of the region; packed tracking keeps its links */
    bool keys = vq->ifl_area != NULL, links = keys && vq->packed;
    vq->resubmit_keys = keys ? calloc(num, sizeof(*vq->resubmit_keys)) : NULL;
    if (links) {
        vq->ifl_next = calloc(num, sizeof(*vq->ifl_next));
        vq->ifl_last = calloc(num, sizeof(*vq->ifl_last));
        vq->ifl_head = calloc(num, sizeof(*vq->ifl_head));
        vq->ifl_mark = calloc(num, sizeof(*vq->ifl_mark));
    }
    if (!vq->pool || !vq->iovs || !vq->free_slots || !vq->pop_pos || !vq->busy ||
        !vq->resubmit || (vq->packed && !vq->shadow) || (keys && !vq->resubmit_keys) ||
        (links && (!vq->ifl_next || !vq->ifl_last || !vq->ifl_head || !vq->ifl_mark))) {
        pool_free(vq);
        return -ENOMEM;
    }
    /* Hand out low slots first (the stack pops from the top). */
    for (unsigned i = 0; i < num; i++)
        vq->free_slots[i] = (uint16_t)(num - 1 - i);
    vq->nfree = num;
    return 0;
}

VHU_EXPORT void vhu_vq_free(struct vhu_vq *vq)
{
    if (!vq)
        return;
    pool_free(vq);
    free(vq);
}

static bool aligned(const void *p, size_t a)
{
    return ((uintptr_t)p & (a - 1)) == 0;
}

/* virtio 2.7 / 2.8: ring sizes and the alignment each part needs. */
static int config_check(const struct vhu_vq_config *cfg)
{
    if (cfg->num == 0 || cfg->num > VHU_VQ_MAX_SIZE)
        return -EINVAL;
    if (!cfg->packed && (cfg->num & (cfg->num - 1)))
        return -EINVAL;
    if (!cfg->desc || !cfg->driver || !cfg->device)
        return -EINVAL;
    if (!aligned(cfg->desc, 16))
        return -EINVAL;
    if (!aligned(cfg->driver, cfg->packed ? 4 : 2) || !aligned(cfg->device, 4))
        return -EINVAL;
    return 0;
}

VHU_EXPORT int vhu_vq_start(struct vhu_vq *vq, const struct vhu_vq_config *cfg,
                            const struct vhu_mem_table *mem)
{
    int r;

    if (!vq || !cfg || !mem)
        return -EINVAL;
    if (vq->started)
        return -EBUSY;
    r = config_check(cfg);
    if (r < 0)
        return r;
    if (cfg->packed && ((vq->base & 0x7fff) >= cfg->num || ((vq->base >> 16) & 0x7fff) >= cfg->num))
        return -EINVAL;
    vq->num = cfg->num;
    vq->packed = cfg->packed;
    vq->event_idx = cfg->event_idx;
    vq->indirect = cfg->indirect;
    vq->in_order = cfg->in_order;
    r = pool_alloc(vq, cfg->num);
    if (r < 0)
        return r;
    vq_set_mem(vq, mem);
    vq->desc = cfg->desc;
    if (cfg->packed) {
        vq->drv_event = cfg->driver;
        vq->dev_event = cfg->device;
        vq->avail = NULL;
        vq->used = NULL;
    } else {
        vq->avail = cfg->driver;
        vq->used = cfg->device;
        vq->drv_event = vq->dev_event = NULL;
    }
    /* A (re)started ring is a fresh ring: a previous break does not carry over. */
    vq->broken = false;
    vq->break_reason = NULL;
    vq->notify_off = false;
    vq->polling = false;
    vq->nstaged = 0;
    vq->unsignalled = 0;
    vq->run_n = 0;
    vq->log_ring_req = cfg->log_ring;
    vq->desc_gpa = cfg->desc_gpa;
    vq->device_gpa = cfg->device_gpa;
    vq->log_ring = vq->log && cfg->log_ring;
    vq->ifl = cfg->packed ? NULL : vq->ifl_area;
    vq->pifl = cfg->packed ? vq->ifl_area : NULL;
    if (cfg->packed) {
        vq_packed_start(vq);
    } else {
        vq_split_start(vq);
    }
    vq->started = true;
    return 0;
}

VHU_EXPORT void vhu_vq_stop(struct vhu_vq *vq)
{
    if (!vq || !vq->started)
        return;
    /* Entries already pushed belong to the driver: publish them before letting go. */
    vhu_vq_flush(vq);
    /* Event areas written since the last flush (avail_event follows pops): the frontend syncs
     * the log once more after it stopped the rings. */
    if (vhu_unlikely(vq->log_ring) && !vq->broken)
        vq_log_ring_areas(vq);
    vq->base = vhu_vq_get_base(vq);
    vq->started = false;
    vq->log_ring = false;
    pool_free(vq);
    vq->desc = NULL;
    vq->avail = NULL;
    vq->used = NULL;
    vq->drv_event = vq->dev_event = NULL;
    vq_set_mem(vq, NULL);
}

VHU_EXPORT bool vhu_vq_started(const struct vhu_vq *vq)
{
    return vq && vq->started;
}

VHU_EXPORT void vhu_vq_set_mem(struct vhu_vq *vq, const struct vhu_mem_table *mem)
{
    if (vq)
        vq_set_mem(vq, mem);
}

VHU_EXPORT int vhu_vq_set_base(struct vhu_vq *vq, uint32_t base)
{
    if (!vq)
        return -EINVAL;
    if (vq->started)
        return -EBUSY;
    vq->base = base;
    return 0;
}

VHU_EXPORT uint32_t vhu_vq_get_base(const struct vhu_vq *vq)
{
    uint32_t avail;

    if (!vq)
        return 0;
    if (!vq->started)
        return vq->base;
    if (!vq->packed)
        return vq->last_avail;
    avail = vq->last_avail | (vq->avail_wrap ? VQ_WRAP_BIT : 0);
    return avail | ((uint32_t)vq_packed_used_pos(vq) << 16);
}

VHU_EXPORT void vhu_vq_set_hooks(struct vhu_vq *vq, const struct vhu_vq_hooks *hooks)
{
    if (!vq)
        return;
    if (hooks)
        vq->hooks = *hooks;
    else
        memset(&vq->hooks, 0, sizeof(vq->hooks));
}

VHU_EXPORT void vhu_vq_set_call(struct vhu_vq *vq, struct vhu_notifier *call)
{
    if (vq)
        vq->call = call;
}

VHU_EXPORT struct vhu_notifier *vhu_vq_call(const struct vhu_vq *vq)
{
    return vq ? vq->call : NULL;
}

VHU_EXPORT unsigned vhu_vq_index(const struct vhu_vq *vq)
{
    return vq ? vq->index : 0;
}

VHU_EXPORT uint16_t vhu_vq_num(const struct vhu_vq *vq)
{
    return vq && vq->started ? vq->num : 0;
}

/* Either layout fits: the area is sized before the driver has chosen one (QEMU asks for the
 * buffer before it sends the features). */
VHU_EXPORT size_t vhu_vq_inflight_region_size(uint16_t num)
{
    size_t split = sizeof(struct vq_inflight_split) + (size_t)num * sizeof(struct vq_inflight_desc);
    size_t packed =
        sizeof(struct vq_inflight_packed) + (size_t)num * sizeof(struct vq_inflight_pdesc);

    return VHU_ALIGN_UP(split > packed ? split : packed, (size_t)64);
}

VHU_EXPORT size_t vhu_vq_inflight_split_size(uint16_t num)
{
    return VHU_ALIGN_UP(sizeof(struct vq_inflight_split) +
                            (size_t)num * sizeof(struct vq_inflight_desc),
                        (size_t)64);
}

VHU_EXPORT void vhu_vq_set_inflight_region(struct vhu_vq *vq, void *region)
{
    if (vq && !vq->started)
        vq->ifl_area = region;
}

/* Oldest first; equal counters (only a frontend that wrote the region makes them) by index. */
int vq_resubmit_cmp(const void *a, const void *b)
{
    const struct vq_resubmit_key *x = a, *y = b;

    if (x->counter != y->counter)
        return x->counter < y->counter ? -1 : 1;
    return (x->head > y->head) - (x->head < y->head);
}

VHU_EXPORT unsigned vhu_vq_resubmitted(const struct vhu_vq *vq)
{
    return vq ? vq->nresubmit : 0;
}

VHU_EXPORT void vhu_vq_set_core(struct vhu_vq *vq, void *core)
{
    vq->core = core;
}

VHU_EXPORT void *vhu_vq_core(const struct vhu_vq *vq)
{
    return vq->core;
}

VHU_EXPORT void vhu_vq_set_priv(struct vhu_vq *vq, void *priv)
{
    if (vq)
        vq->priv = priv;
}

VHU_EXPORT void *vhu_vq_priv(const struct vhu_vq *vq)
{
    return vq ? vq->priv : NULL;
}

/* ---- errors ---- */

VHU_EXPORT void vhu_vq_break(struct vhu_vq *vq, const char *why)
{
    if (!vq || vq->broken)
        return;
    vq->broken = true;
    vq->cnt.breaks++;
    vq->break_reason = why ? why : "unspecified error";
    vhu_err_rl("vq %u: %s; queue stopped", vq->index, vq->break_reason);
    /* Entries published without a decision stay where the driver sees them, and no flush
     * follows on a broken queue: tell it (needlessly, at worst). */
    if (vq->started && vq->unsignalled) {
        vq->unsignalled = 0;
        vq_do_notify(vq);
    }
    if (vq->hooks.error)
        vq->hooks.error(vq, vq->hooks.opaque);
}

VHU_EXPORT void vhu_vq_count_error(struct vhu_vq *vq)
{
    vq->cnt.errors++;
}

VHU_EXPORT void vhu_vq_get_counters(const struct vhu_vq *vq, struct vhu_vq_counters *out)
{
    const uint64_t *src = (const uint64_t *)(const void *)&vq->cnt;
    uint64_t *dst = (uint64_t *)(void *)out;

    /* word by word, relaxed: the owner thread may be adding to them right now */
    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

VHU_EXPORT bool vhu_vq_broken(const struct vhu_vq *vq)
{
    return vq && vq->broken;
}

VHU_EXPORT const char *vhu_vq_break_reason(const struct vhu_vq *vq)
{
    return vq && vq->broken ? vq->break_reason : NULL;
}

VHU_EXPORT unsigned vhu_vq_inflight(const struct vhu_vq *vq)
{
    return vq && vq->started ? vq->inflight : 0;
}

/* ---- data path ---- */

VHU_EXPORT struct vhu_vq_elem *vhu_vq_pop(struct vhu_vq *vq)
{
    if (vhu_unlikely(!vq->started || vq->broken))
        return NULL;
    return vq->packed ? vq_packed_pop(vq) : vq_split_pop(vq);
}

VHU_EXPORT unsigned vhu_vq_pop_burst(struct vhu_vq *vq, struct vhu_vq_elem **out, unsigned max)
{
    if (vhu_unlikely(!vq->started || vq->broken))
        return 0;
    return vq->packed ? vq_packed_pop_burst(vq, out, max) : vq_split_pop_burst(vq, out, max);
}

/* The slot of an element being pushed, or -1 (logged) when it is not in flight. */
static inline int push_slot(const struct vhu_vq *vq, const struct vhu_vq_elem *elem)
{
    int slot = vq_elem_slot(vq, elem);

    if (vhu_unlikely(slot < 0))
        vhu_err_rl("vq %u: push of an element that is not in flight", vq->index);
    return slot;
}

/* Never report more than the chain can hold: the driver would treat it as a fault. */
static inline uint32_t push_clamp(const struct vhu_vq_elem *elem, uint32_t written)
{
    return written > elem->in_len ? (uint32_t)elem->in_len : written;
}

/* Stage elem's used entry (written already clamped) on a ring that is not broken. */
static inline void push_stage(struct vhu_vq *vq, struct vhu_vq_elem *elem, uint32_t written)
{
    if (vq->packed)
        vq_packed_push(vq, elem, written);
    else
        vq_split_push(vq, elem, written);
}

VHU_EXPORT void vhu_vq_push(struct vhu_vq *vq, struct vhu_vq_elem *elem, uint32_t written)
{
    int slot;

    if (vhu_unlikely(!vq->started))
        return;
    slot = push_slot(vq, elem);
    if (vhu_unlikely(slot < 0))
        return;
    /* A broken queue's rings are not touched again; just recycle the element. */
    if (vhu_likely(!vq->broken)) {
        written = push_clamp(elem, written);
        if (vhu_unlikely(vq->log_data))
            vq_log_elem(vq, elem, 0, written);
        push_stage(vq, elem, written);
        vq->cnt.used++;
        vq->cnt.out_bytes += elem->out_len;
        vq->cnt.in_bytes += written;
    }
    vq_elem_release(vq, (unsigned)slot);
}

VHU_EXPORT void vhu_vq_push_burst(struct vhu_vq *vq, struct vhu_vq_elem *const *elems,
                                  const uint32_t *written, unsigned n)
{
    uint64_t out_bytes = 0, in_bytes = 0;
    unsigned done = 0;

    /* the rare cases element by element, as vhu_vq_push() handles them */
    if (vhu_unlikely(!vq->started || vq->broken || vq->log_data)) {
        for (unsigned i = 0; i < n; i++)
            vhu_vq_push(vq, elems[i], written ? written[i] : 0);
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        struct vhu_vq_elem *elem = elems[i];
        int slot = push_slot(vq, elem);
        uint32_t w;

        if (vhu_unlikely(slot < 0))
            continue;
        w = push_clamp(elem, written ? written[i] : 0);
        push_stage(vq, elem, w); /* no dirty log here: that case went element by element */
        in_bytes += w;
        out_bytes += elem->out_len;
        done++;
        vq_elem_release(vq, (unsigned)slot);
    }
    vq->cnt.used += done;
    vq->cnt.out_bytes += out_bytes;
    vq->cnt.in_bytes += in_bytes;
}

/*
 * Unpop works in LIFO order only: the element must be the most recently popped one still out
 * (several unpops in reverse pop order are fine). The ring position then rolls back so the same
 * chain is popped again. For any other element the ring cannot be rewound without losing the
 * chains popped after it; it is completed with 0 bytes written instead (the driver gets its
 * buffer back) and an error is logged, since that is a device bug.
 */
VHU_EXPORT void vhu_vq_unpop(struct vhu_vq *vq, struct vhu_vq_elem *elem)
{
    uint32_t cur;
    int slot;

    if (vhu_unlikely(!vq->started))
        return;
    slot = vq_elem_slot(vq, elem);
    if (vhu_unlikely(slot < 0)) {
        vhu_err_rl("vq %u: unpop of an element that is not in flight", vq->index);
        return;
    }
    if (vq->broken) {
        vq_elem_release(vq, (unsigned)slot);
        return;
    }
    if (vq->packed) {
        uint32_t p = vq->pop_pos[slot];
        uint16_t pos = (uint16_t)(p & 0x7fff);
        bool wrap = (p & VQ_WRAP_BIT) != 0;
        uint32_t after = (uint32_t)pos + elem->ndesc;
        if (after >= vq->num) {
            after -= vq->num;
            wrap = !wrap;
        }
        cur = vq->last_avail | (vq->avail_wrap ? VQ_WRAP_BIT : 0);
        if (!(p & VQ_POS_RESUBMITTED) && cur == (after | (wrap ? VQ_WRAP_BIT : 0))) {
            vq_packed_rewind(vq, p, (unsigned)slot);
            vq_elem_release(vq, (unsigned)slot);
            return;
        }
    } else if ((uint16_t)(vq->pop_pos[slot] + 1) == vq->last_avail) {
        vq_split_rewind(vq, vq->pop_pos[slot], elem->id);
        vq_elem_release(vq, (unsigned)slot);
        return;
    }
    vhu_err_rl("vq %u: unpop out of order; completing the element with 0 bytes", vq->index);
    vhu_vq_push(vq, elem, 0);
}

static void publish_staged(struct vhu_vq *vq)
{
    if (vq->packed)
        vq_packed_publish(vq);
    else
        vq_split_publish(vq);
}

void vq_flush_now(struct vhu_vq *vq)
{
    uint16_t old = vq->signalled;
    uint32_t n;

    if (vq->nstaged)
        publish_staged(vq);
    if (vhu_unlikely(vq->log_ring))
        vq_log_done(vq); /* once per decision, not per publish */
    n = vq->unsignalled;
    vq->signalled = vq->used_idx;
    vq->unsignalled = 0;
    /* Order the index (split) or flags (packed) stores before reading the driver's suppression
     * state (virtio 2.7.10, 2.8.10). */
    vhu_smp_mb();
    if (vq->packed ? vq_packed_need_notify(vq, old, n) : vq_split_need_notify(vq, old))
        vq_do_notify(vq);
}

VHU_EXPORT void vhu_vq_publish(struct vhu_vq *vq)
{
    if (vhu_unlikely(!vq->started || vq->broken) || vq->nstaged == 0)
        return;
    /* A ring's worth published without a decision is decided now: the window stays shorter
     * than a lap and than split's 16-bit index space. */
    if (vhu_unlikely(vq->unsignalled >= vq->num))
        vq_flush_now(vq);
    else
        publish_staged(vq);
}

VHU_EXPORT void vhu_vq_flush(struct vhu_vq *vq)
{
    if (vhu_unlikely(!vq->started || vq->broken) || (vq->nstaged == 0 && vq->unsignalled == 0))
        return;
    vq_flush_now(vq);
}

void vq_do_notify(struct vhu_vq *vq)
{
    vq->cnt.calls++;
    if (vq->hooks.notify)
        vq->hooks.notify(vq, vq->hooks.opaque);
    else
        vhu_notifier_signal(vq->call);
}

VHU_EXPORT void vhu_vq_notify(struct vhu_vq *vq)
{
    if (vq)
        vq_do_notify(vq);
}

VHU_EXPORT void vhu_vq_disable_notify(struct vhu_vq *vq)
{
    if (!vq->started || vq->broken || vq->notify_off)
        return;
    vq->notify_off = true;
    if (vq->packed)
        vq_packed_set_notify(vq, false);
    else
        vq_split_set_notify(vq, false);
}

VHU_EXPORT bool vhu_vq_enable_notify(struct vhu_vq *vq)
{
    if (!vq->started || vq->broken || vq->polling)
        return false;
    vq->notify_off = false;
    if (vq->packed)
        vq_packed_set_notify(vq, true);
    else
        vq_split_set_notify(vq, true);
    /* The driver may have added a buffer after our last look but before it could see the
     * enable: full barrier between publishing the enable and re-reading the ring. */
    vhu_smp_mb();
    return vhu_vq_has_work(vq);
}

VHU_EXPORT bool vhu_vq_set_polling(struct vhu_vq *vq, bool on)
{
    if (on) {
        if (!vq->polling) {
            vq->polling = true;
            vhu_vq_disable_notify(vq);
        }
        return false;
    }
    if (!vq->polling)
        return false;
    vq->polling = false;
    return vhu_vq_enable_notify(vq);
}

VHU_EXPORT bool vhu_vq_polled(const struct vhu_vq *vq)
{
    return vq->polling;
}

VHU_EXPORT bool vhu_vq_has_work(const struct vhu_vq *vq)
{
    if (!vq->started || vq->broken)
        return false;
    return vq->packed ? vq_packed_has_work(vq) : vq_split_has_work(vq);
}
