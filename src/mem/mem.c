/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vhu/log.h"
#include "vhu/mem.h"
#include "vhu/util.h"
#include "mem_internal.h"

static bool range_wraps(uint64_t start, uint64_t len)
{
    return len == 0 || start + len - 1 < start;
}

VHU_EXPORT int vhu_mem_region_map(const struct vhu_mem_region_desc *d, struct vhu_mem_region **out)
{
    struct vhu_mem_region *r;

    if (range_wraps(d->gpa, d->size) || range_wraps(d->uva, d->size))
        return -EINVAL;
    r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->gpa = d->gpa;
    r->size = d->size;
    r->uva = d->uva;
    r->mmap_offset = d->mmap_offset;
    r->map.guard = -1;
    if (d->fd < 0) {
        if (!d->host) {
            free(r);
            return -EINVAL;
        }
        r->host = d->host;
        r->release = d->release;
        r->release_opaque = d->release_opaque;
    } else {
        /* Map from offset 0 so the mmap offset needs no page alignment (QEMU sends any). */
        int err = range_wraps(d->mmap_offset, d->size)
                      ? -EINVAL
                      : vhu_mem_map_fd(d->fd, 0, d->mmap_offset + d->size, &r->map);
        if (err < 0) {
            free(r);
            return err;
        }
        r->host = (uint8_t *)r->map.base + d->mmap_offset;
    }
    *out = r;
    return 0;
}

VHU_EXPORT void vhu_mem_region_free(struct vhu_mem_region *r)
{
    if (!r)
        return;
    vhu_mem_unmap_fd(&r->map);
    if (r->release)
        r->release(r->release_opaque, r->host, r->size);
    free(r);
}

static void region_get(struct vhu_mem_region *r)
{
    __atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
}

static void region_put(struct vhu_mem_region *r)
{
    if (__atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0)
        vhu_mem_region_free(r);
}

static int cmp_gpa(const void *a, const void *b)
{
    const struct vhu_mem_region *x = *(struct vhu_mem_region *const *)a;
    const struct vhu_mem_region *y = *(struct vhu_mem_region *const *)b;

    return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

static int cmp_uva(const void *a, const void *b)
{
    const struct vhu_mem_region *x = *(struct vhu_mem_region *const *)a;
    const struct vhu_mem_region *y = *(struct vhu_mem_region *const *)b;

    return x->uva < y->uva ? -1 : x->uva > y->uva;
}

/* Sorts both indexes and refuses overlap in either address space (vhost-user.rst: regions must
 * not overlap). Does not take references. */
static int table_build(struct vhu_mem_table *t, struct vhu_mem_region **regions, unsigned n)
{
    if (n > VHU_MEM_MAX_SLOTS)
        return -ENOSPC;
    memcpy(t->by_gpa, regions, n * sizeof(*regions));
    memcpy(t->by_uva, regions, n * sizeof(*regions));
    qsort(t->by_gpa, n, sizeof(*regions), cmp_gpa);
    qsort(t->by_uva, n, sizeof(*regions), cmp_uva);
    for (unsigned i = 1; i < n; i++) {
        const struct vhu_mem_region *p = t->by_gpa[i - 1], *q = t->by_gpa[i];
        if (p->gpa + p->size - 1 >= q->gpa)
            return -EINVAL;
        p = t->by_uva[i - 1];
        q = t->by_uva[i];
        if (p->uva + p->size - 1 >= q->uva)
            return -EINVAL;
    }
    t->nregions = n;
    t->refs = 1;
    return 0;
}

VHU_EXPORT int vhu_mem_table_new_empty(struct vhu_mem_table **out)
{
    struct vhu_mem_table *t = calloc(1, sizeof(*t));

    if (!t)
        return -ENOMEM;
    t->refs = 1;
    *out = t;
    return 0;
}

VHU_EXPORT int vhu_mem_table_new(struct vhu_mem_region **regions, unsigned n,
                                 struct vhu_mem_table **out)
{
    struct vhu_mem_table *t = calloc(1, sizeof(*t));
    int r;

    if (!t)
        return -ENOMEM;
    r = table_build(t, regions, n);
    if (r < 0) {
        free(t);
        return r;
    }
    for (unsigned i = 0; i < n; i++)
        region_get(regions[i]);
    *out = t;
    return 0;
}

VHU_EXPORT int vhu_mem_table_add(const struct vhu_mem_table *old, struct vhu_mem_region *r,
                                 struct vhu_mem_table **out)
{
    struct vhu_mem_region **list;
    unsigned n = old ? old->nregions : 0;
    int ret;

    if (n >= VHU_MEM_MAX_SLOTS)
        return -ENOSPC;
    list = malloc((n + 1) * sizeof(*list));
    if (!list)
        return -ENOMEM;
    if (n)
        memcpy(list, old->by_gpa, n * sizeof(*list));
    list[n] = r;
    ret = vhu_mem_table_new(list, n + 1, out);
    free(list);
    return ret;
}

VHU_EXPORT int vhu_mem_table_remove(const struct vhu_mem_table *old, uint64_t gpa, uint64_t size,
                                    uint64_t uva, struct vhu_mem_table **out)
{
    struct vhu_mem_region **list;
    unsigned n = 0;
    bool found = false;
    int ret;

    if (!old)
        return -ENOENT;
    list = malloc((old->nregions ? old->nregions : 1) * sizeof(*list));
    if (!list)
        return -ENOMEM;
    for (unsigned i = 0; i < old->nregions; i++) {
        struct vhu_mem_region *r = old->by_gpa[i];
        if (!found && r->gpa == gpa && r->size == size && r->uva == uva) {
            found = true;
            continue;
        }
        list[n++] = r;
    }
    ret = found ? vhu_mem_table_new(list, n, out) : -ENOENT;
    free(list);
    return ret;
}

VHU_EXPORT struct vhu_mem_table *vhu_mem_table_get(struct vhu_mem_table *t)
{
    if (t)
        __atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
    return t;
}

VHU_EXPORT void vhu_mem_table_put(struct vhu_mem_table *t)
{
    if (!t || __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (unsigned i = 0; i < t->nregions; i++)
        region_put(t->by_gpa[i]);
    free(t);
}

/* Binary search for the region whose [start, start+size) holds addr. */
static struct vhu_mem_region *lookup(struct vhu_mem_region *const *idx, unsigned n, uint64_t addr,
                                     bool by_uva)
{
    unsigned lo = 0, hi = n;

    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        struct vhu_mem_region *r = idx[mid];
        uint64_t start = by_uva ? r->uva : r->gpa;
        if (addr < start)
            hi = mid;
        else if (addr - start >= r->size)
            lo = mid + 1;
        else
            return r;
    }
    return NULL;
}

static void *translate(const struct vhu_mem_table *t, uint64_t addr, uint64_t *len, bool by_uva)
{
    struct vhu_mem_region *r;
    uint64_t off;

    if (!t)
        return NULL;
    r = lookup(by_uva ? t->by_uva : t->by_gpa, t->nregions, addr, by_uva);
    if (!r)
        return NULL;
    off = addr - (by_uva ? r->uva : r->gpa);
    if (*len > r->size - off)
        *len = r->size - off;
    return r->host + off;
}

const struct vhu_mem_region *vhu_mem_gpa_region(const struct vhu_mem_table *t, uint64_t gpa)
{
    return t ? lookup(t->by_gpa, t->nregions, gpa, false) : NULL;
}

const struct vhu_mem_region *vhu_mem_host_region(const struct vhu_mem_table *t, const void *p)
{
    for (unsigned i = 0; t && i < t->nregions; i++) {
        const struct vhu_mem_region *r = t->by_gpa[i];
        if ((uintptr_t)p >= (uintptr_t)r->host && (uintptr_t)p - (uintptr_t)r->host < r->size)
            return r;
    }
    return NULL;
}

VHU_EXPORT void *vhu_mem_gpa_to_host(const struct vhu_mem_table *t, uint64_t gpa, uint64_t *len)
{
    return translate(t, gpa, len, false);
}

VHU_EXPORT void *vhu_mem_uva_to_host(const struct vhu_mem_table *t, uint64_t uva, uint64_t *len)
{
    return translate(t, uva, len, true);
}

static void *range(const struct vhu_mem_table *t, uint64_t addr, uint64_t len, bool by_uva)
{
    uint64_t got = len;
    void *p;

    if (range_wraps(addr, len))
        return NULL;
    p = translate(t, addr, &got, by_uva);
    return (p && got == len) ? p : NULL;
}

VHU_EXPORT void *vhu_mem_gpa_range(const struct vhu_mem_table *t, uint64_t gpa, uint64_t len)
{
    return range(t, gpa, len, false);
}

VHU_EXPORT void *vhu_mem_uva_range(const struct vhu_mem_table *t, uint64_t uva, uint64_t len)
{
    return range(t, uva, len, true);
}

VHU_EXPORT bool vhu_mem_uva_to_gpa(const struct vhu_mem_table *t, uint64_t uva, uint64_t *gpa)
{
    const struct vhu_mem_region *r = t ? lookup(t->by_uva, t->nregions, uva, true) : NULL;

    if (!r)
        return false;
    *gpa = r->gpa + (uva - r->uva);
    return true;
}

VHU_EXPORT uint64_t vhu_mem_gpa_end(const struct vhu_mem_table *t)
{
    const struct vhu_mem_region *r;

    if (!t || t->nregions == 0)
        return 0;
    r = t->by_gpa[t->nregions - 1]; /* sorted and disjoint: the last one ends highest */
    return r->gpa + r->size;
}
