/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Dirty logging for live migration (vhost-user.rst "Migration", the vhost-net log format): while
 * the frontend migrates, every page the device writes in guest memory gets its bit set in a
 * bitmap shared with the frontend, which clears bits as it copies pages. A bit must be set after
 * the write it stands for is visible (the frontend clears, then copies: a bit set early could be
 * cleared and the page copied before our write lands), hence the barrier before each batch.
 *
 * Cost: the data path tests one flag per push and one per flush; all of this runs only while a
 * migration is in progress. Buffers are logged at push (the element is recycled right after),
 * ring areas once per flush.
 */
#include "vhu/log.h"
#include "vq_internal.h"

static void log_overflow(struct vhu_vq *vq, uint64_t page)
{
    if (vq->log_overflow)
        return;
    vq->log_overflow = true;
    vhu_err("vq %u: write to guest page 0x%llx lies past the dirty log (%llu pages): not logged",
            vq->index, (unsigned long long)page, (unsigned long long)vq->log_pages);
}

void vq_log_range(struct vhu_vq *vq, uint64_t gpa, uint64_t len)
{
    uint64_t page, last;

    if (len == 0)
        return;
    page = gpa / VHU_LOG_PAGE;
    last = (gpa + len - 1) / VHU_LOG_PAGE; /* chain walk and ring setup checked for wrap */
    if (vhu_unlikely(last >= vq->log_pages)) {
        log_overflow(vq, last);
        if (page >= vq->log_pages)
            return;
        last = vq->log_pages - 1;
    }
    for (; page <= last; page++) {
        uint8_t *b = &vq->log[page / 8], bit = (uint8_t)(1u << (page % 8));
        /* Read first: a page written again and again costs no locked operation while its bit is
         * still set. */
        if (!(__atomic_load_n(b, __ATOMIC_RELAXED) & bit))
            __atomic_fetch_or(b, bit, __ATOMIC_RELAXED);
    }
}

/*
 * The guest-physical address of p, a host address inside one of the ring's buffers. Elements
 * keep no guest addresses (the request path would pay for them with logging off); the chain
 * walker split every segment at region boundaries, so each lies in one region of the table:
 * the one the ring translated last, nearly always. False when p is in no region (the frontend
 * removed that memory while the request was in flight).
 */
static bool host_to_gpa(struct vhu_vq *vq, const void *p, uint64_t *gpa)
{
    uint64_t off = (uint64_t)((uintptr_t)p - (uintptr_t)vq->tc_host);

    if (off >= vq->tc_size) {
        const struct vhu_mem_region *r = vhu_mem_host_region(vq->mem, p);
        if (!r)
            return false;
        vq_cache_region(vq, r);
        off = (uint64_t)((uintptr_t)p - (uintptr_t)r->host);
    }
    *gpa = vq->tc_gpa + off;
    return true;
}

void vq_log_elem(struct vhu_vq *vq, const struct vhu_vq_elem *elem, uint64_t off, uint64_t len)
{
    uint64_t gpa;

    /* The device's writes into the buffer come before the bits (see the top of the file). */
    vhu_smp_wmb();
    for (uint32_t i = elem->out_num; len && i < elem->out_num + elem->in_num; i++) {
        uint64_t seg = elem->iov[i].iov_len, n;

        if (off >= seg) {
            off -= seg;
            continue;
        }
        n = seg - off < len ? seg - off : len;
        if (vhu_likely(host_to_gpa(vq, (const uint8_t *)elem->iov[i].iov_base + off, &gpa)))
            vq_log_range(vq, gpa, n);
        else
            vhu_err_rl("vq %u: a buffer written is no longer in guest memory: not logged",
                       vq->index);
        len -= n;
        off = 0;
    }
}

VHU_EXPORT void vhu_vq_log_write(struct vhu_vq *vq, const struct vhu_vq_elem *elem, uint64_t off,
                                 uint64_t len)
{
    if (vhu_unlikely(vq && vq->log_data) && vq_elem_slot(vq, elem) >= 0)
        vq_log_elem(vq, elem, off, len);
}

void vq_log_done(struct vhu_vq *vq)
{
    /* vhost-user.rst: the optional SET_LOG_FD eventfd tells the frontend the log changed. */
    if (vq->log_call)
        vhu_notifier_signal(vq->log_call);
}

/* A range of ring entries of `size` bytes each at base, slots [from, from+n) modulo num. */
static void log_entries(struct vhu_vq *vq, uint64_t base, size_t size, unsigned from, unsigned n)
{
    if (n >= vq->num) {
        vq_log_range(vq, base, (uint64_t)vq->num * size);
        return;
    }
    if (from + n <= vq->num) {
        vq_log_range(vq, base + (uint64_t)from * size, (uint64_t)n * size);
        return;
    }
    vq_log_range(vq, base + (uint64_t)from * size, (uint64_t)(vq->num - from) * size);
    vq_log_range(vq, base, (uint64_t)(from + n - vq->num) * size);
}

/* virtio 2.7.8: flags and idx, then num used elements, then avail_event (EVENT_IDX). */
void vq_log_split_used(struct vhu_vq *vq, uint16_t from, uint16_t to)
{
    uint64_t ring = vq->device_gpa + offsetof(struct vhu_vring_used, ring);

    vhu_smp_wmb();
    vq_log_range(vq, vq->device_gpa, offsetof(struct vhu_vring_used, ring));
    log_entries(vq, ring, sizeof(struct vhu_vring_used_elem), from & (vq->num - 1),
                (uint16_t)(to - from));
    if (vq->event_idx)
        vq_log_range(vq, ring + (uint64_t)vq->num * sizeof(struct vhu_vring_used_elem), 2);
}

/* virtio 2.8: used descriptors are written back into the descriptor ring. */
void vq_log_packed_used(struct vhu_vq *vq, uint16_t from, unsigned n)
{
    vhu_smp_wmb();
    log_entries(vq, vq->desc_gpa, sizeof(struct vhu_vring_packed_desc), from, n);
    vq_log_range(vq, vq->device_gpa, sizeof(struct vhu_vring_packed_desc_event));
}

void vq_log_ring_areas(struct vhu_vq *vq)
{
    uint64_t len = vq->packed ? sizeof(struct vhu_vring_packed_desc_event)
                              : vhu_split_used_size(vq->num); /* with avail_event */

    vhu_smp_wmb();
    vq_log_range(vq, vq->device_gpa, len);
    vq_log_done(vq);
}

VHU_EXPORT void vhu_vq_set_log(struct vhu_vq *vq, const struct vhu_vq_log *log)
{
    bool on = log && log->bitmap && log->size;

    vq->log = on ? log->bitmap : NULL;
    vq->log_pages = on ? log->size * 8 : 0;
    vq->log_all = on && log->all;
    vq->log_call = on ? log->call : NULL;
    vq->log_overflow = false;
    vq->log_data = vq->log_all;
    vq->log_ring = on && vq->log_ring_req;
}
