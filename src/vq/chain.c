/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The part of the chain walker both ring layouts share: turning one validated descriptor into
 * iovecs, and opening indirect tables. Every check here is against a local copy of the
 * descriptor; the guest can change its memory at any moment and we must not care.
 */
#include <string.h>

#include "vq_internal.h"

void *vq_gpa_to_host_slow(struct vhu_vq *vq, uint64_t gpa, uint64_t *len)
{
    const struct vhu_mem_region *r = vhu_mem_gpa_region(vq->mem, gpa);

    if (!r)
        return NULL;
    vq_cache_region(vq, r);
    return vq_gpa_to_host(vq, gpa, len);
}

/* virtio 2.7.5.3.1 / 2.8.7.1: what a descriptor pointing to an indirect table must look like. */
const char *vq_indirect_open(struct vhu_vq *vq, const struct vq_desc *d, unsigned *n,
                             const void **table)
{
    uint64_t len = d->len;

    if (!vq->indirect)
        return "indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC";
    if (d->flags & VHU_VRING_DESC_F_NEXT)
        return "indirect descriptor with the NEXT flag";
    if (d->len == 0)
        return "empty indirect table";
    if (d->len % sizeof(struct vhu_vring_desc))
        return "indirect table length is not a multiple of 16";
    if (d->len / sizeof(struct vhu_vring_desc) > VHU_VQ_MAX_SIZE)
        return "indirect table longer than the largest ring";
    if (d->addr + len - 1 < d->addr)
        return "indirect table address wraps around";
    *n = d->len / (unsigned)sizeof(struct vhu_vring_desc);
    /* Fast path: the whole table in one region (and aligned, so entries can be loaded directly).
     * Otherwise entries are copied piecewise, and every piece must translate. */
    *table = vq_gpa_to_host(vq, d->addr, &len);
    if (!*table)
        return "indirect table is not in guest memory";
    if (len != d->len || ((uintptr_t)*table & 7))
        *table = NULL;
    return NULL;
}

/* Copy n bytes from guest address gpa, possibly spanning regions. */
static bool guest_copy(const struct vhu_mem_table *mem, uint64_t gpa, void *dst, size_t n)
{
    uint8_t *out = dst;

    while (n) {
        uint64_t len = n;
        const void *p = vhu_mem_gpa_to_host(mem, gpa, &len);
        if (!p || len == 0)
            return false;
        memcpy(out, p, (size_t)len);
        out += len;
        gpa += len;
        n -= (size_t)len;
    }
    return true;
}

bool vq_indirect_read(struct vhu_vq *vq, uint64_t addr, unsigned i, const void *table,
                      struct vq_desc *out)
{
    struct vhu_vring_desc raw;
    const void *src = table ? (const struct vhu_vring_desc *)table + i : (const void *)&raw;

    if (!table) {
        if (!guest_copy(vq->mem, addr + (uint64_t)i * sizeof(raw), &raw, sizeof(raw)))
            return false;
        /* The copy is ours; keep the compiler from re-reading guest memory instead of it. */
        __asm__ __volatile__("" ::: "memory");
    }
    /* Indirect tables use the ring's own descriptor layout (virtio 2.7.5.3 / 2.8.7). */
    if (vq->packed)
        vq_pdesc_read(out, src);
    else
        vq_desc_read(out, src);
    return true;
}
