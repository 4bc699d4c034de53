/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Shared by the vq unit tests: a fake guest (one host buffer exposed as several memory regions,
 * with a gap and an adjacent pair whose host memory is NOT contiguous), and a driver queue
 * (struct vhu_vqd) paired with a device queue (struct vhu_vq) on the same rings.
 *
 * Guest physical layout:
 *   R0 [0x100000, 0x140000)  host offset 0x00000   rings and indirect tables
 *   R1 [0x140000, 0x180000)  host offset 0x50000   adjacent to R0 in gpa space, not in host space
 *   gap [0x180000, 0x200000)
 *   R2 [0x200000, 0x240000)  host offset 0xa0000   data buffers
 * Helpers return bool/int so the TEST body can ASSERT on them (ASSERT returns from the function
 * it is in).
 */
#ifndef VQ_TESTLIB_H
#define VQ_TESTLIB_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vhu/mem.h"
#include "vhu/util.h"
#include "vhu/vq.h"
#include "vhu/vqd.h"
#include "vq/vq_core.h"

#define G_R0 0x100000ULL
#define G_R1 0x140000ULL
#define G_GAP 0x180000ULL
#define G_R2 0x200000ULL
#define G_RSIZE 0x40000ULL
#define G_HOST_SIZE 0xf0000ULL

struct guest {
    uint8_t *host;
    struct vhu_mem_table *mem;
    uint64_t next_ring; /* bump allocators */
    uint64_t next_data;
};

static inline int guest_init(struct guest *g)
{
    static const struct {
        uint64_t gpa, off;
    } map[] = {{G_R0, 0}, {G_R1, 0x50000}, {G_R2, 0xa0000}};
    struct vhu_mem_region *rs[3];
    int r;

    memset(g, 0, sizeof(*g));
    g->host = aligned_alloc(4096, G_HOST_SIZE);
    if (!g->host)
        return -ENOMEM;
    memset(g->host, 0, G_HOST_SIZE);
    for (unsigned i = 0; i < 3; i++) {
        struct vhu_mem_region_desc d = {.gpa = map[i].gpa, .size = G_RSIZE,
                                        .uva = 0x7f0000000000ULL + map[i].gpa, .fd = -1,
                                        .host = g->host + map[i].off};
        r = vhu_mem_region_map(&d, &rs[i]);
        if (r < 0)
            return r;
    }
    r = vhu_mem_table_new(rs, 3, &g->mem);
    if (r < 0)
        return r;
    g->next_ring = G_R0;
    g->next_data = G_R2;
    return 0;
}

static inline void guest_fini(struct guest *g)
{
    vhu_mem_table_put(g->mem);
    free(g->host);
    memset(g, 0, sizeof(*g));
}

/* Host address of a guest address, computed independently of the memory table under test. */
static inline void *gh(struct guest *g, uint64_t gpa)
{
    if (gpa >= G_R0 && gpa < G_R0 + G_RSIZE)
        return g->host + (gpa - G_R0);
    if (gpa >= G_R1 && gpa < G_R1 + G_RSIZE)
        return g->host + 0x50000 + (gpa - G_R1);
    if (gpa >= G_R2 && gpa < G_R2 + G_RSIZE)
        return g->host + 0xa0000 + (gpa - G_R2);
    return NULL;
}

static inline uint64_t ring_alloc(struct guest *g, uint64_t size)
{
    uint64_t a = VHU_ALIGN_UP(g->next_ring, 4096ULL);
    g->next_ring = a + size;
    return a;
}

static inline uint64_t data_alloc(struct guest *g, uint64_t size)
{
    uint64_t a = VHU_ALIGN_UP(g->next_data, 64ULL);
    g->next_data = a + size;
    return a;
}

/* Copy to/from guest memory, crossing regions like a driver with its own page tables would. */
static inline void gwrite(struct guest *g, uint64_t gpa, const void *src, size_t n)
{
    const uint8_t *s = src;
    for (size_t i = 0; i < n; i++)
        *(uint8_t *)gh(g, gpa + i) = s[i];
}

static inline void gread(struct guest *g, uint64_t gpa, void *dst, size_t n)
{
    uint8_t *d = dst;
    for (size_t i = 0; i < n; i++)
        d[i] = *(uint8_t *)gh(g, gpa + i);
}

struct pair_opts {
    uint16_t num;
    bool packed;
    bool event_idx;
    bool indirect;      /* device accepts indirect descriptors */
    uint16_t ind_max;   /* driver uses indirect tables of this size (0: never) */
    unsigned max_segs;  /* 0: 64 */
    unsigned index;
    bool in_order;      /* VIRTIO_F_IN_ORDER negotiated (device and driver side) */
    bool log_ring;      /* dirty logging of the ring areas once a log is set */
};

struct pair {
    struct guest *g;
    struct pair_opts o;
    struct vhu_vqd *d;
    struct vhu_vq *q;
    struct vhu_vq_config cfg;
    uint64_t ring_gpa;
    unsigned notifies;
    unsigned errors;
};

static inline void pair_notify(struct vhu_vq *vq, void *opaque)
{
    (void)vq;
    ((struct pair *)opaque)->notifies++;
}

static inline void pair_error(struct vhu_vq *vq, void *opaque)
{
    (void)vq;
    ((struct pair *)opaque)->errors++;
}

/* Device side on the rings the driver side laid out (addresses translated through the table). */
static inline int pair_start_device(struct pair *p, uint32_t base)
{
    struct vhu_vq_hooks hooks = {.notify = pair_notify, .error = pair_error, .opaque = p};
    uint64_t da, aa, ua;
    uint16_t num = p->o.num;
    int r;

    vhu_vqd_addrs(p->d, &da, &aa, &ua);
    p->cfg = (struct vhu_vq_config){.num = num, .packed = p->o.packed,
                                    .event_idx = p->o.event_idx, .indirect = p->o.indirect,
                                    .in_order = p->o.in_order, .log_ring = p->o.log_ring,
                                    .desc_gpa = da, .device_gpa = ua};
    p->cfg.desc = vhu_mem_gpa_range(p->g->mem, da, 16ULL * num);
    p->cfg.driver = vhu_mem_gpa_range(p->g->mem, aa, p->o.packed ? 4 : 6 + 2ULL * num + 2);
    p->cfg.device = vhu_mem_gpa_range(p->g->mem, ua, p->o.packed ? 4 : 6 + 8ULL * num + 2);
    if (!p->cfg.desc || !p->cfg.driver || !p->cfg.device)
        return -EFAULT;
    r = vhu_vq_new(p->o.index, sizeof(struct vhu_vq_elem), p->o.max_segs ? p->o.max_segs : 64,
                   &p->q);
    if (r < 0)
        return r;
    vhu_vq_set_hooks(p->q, &hooks);
    r = vhu_vq_set_base(p->q, base);
    if (r < 0)
        return r;
    return vhu_vq_start(p->q, &p->cfg, p->g->mem);
}

/* A new device side for p (the previous one already freed) that tracks into an inflight region,
 * started at base: what a backend restarted after a crash does. */
static inline int pair_start_tracked(struct pair *p, void *region, uint32_t base)
{
    struct vhu_vq_hooks hooks = {.notify = pair_notify, .error = pair_error, .opaque = p};
    int r = vhu_vq_new(p->o.index, sizeof(struct vhu_vq_elem), 16, &p->q);

    if (r < 0)
        return r;
    vhu_vq_set_hooks(p->q, &hooks);
    vhu_vq_set_inflight_region(p->q, region);
    vhu_vq_set_base(p->q, base);
    return vhu_vq_start(p->q, &p->cfg, p->g->mem);
}

static inline int pair_init(struct pair *p, struct guest *g, const struct pair_opts *o)
{
    struct vhu_vqd_config dc = {.num = o->num, .packed = o->packed, .event_idx = o->event_idx,
                                .in_order = o->in_order};
    int r;

    memset(p, 0, sizeof(*p));
    p->g = g;
    p->o = *o;
    p->ring_gpa = ring_alloc(g, vhu_vqd_ring_size(o->num, o->packed));
    dc.ring = gh(g, p->ring_gpa);
    dc.ring_addr = p->ring_gpa;
    if (o->ind_max) {
        uint64_t ind = ring_alloc(g, (uint64_t)o->num * o->ind_max * 16);
        dc.indirect = gh(g, ind);
        dc.indirect_addr = ind;
        dc.indirect_max = o->ind_max;
    }
    r = vhu_vqd_new(&dc, &p->d);
    if (r < 0)
        return r;
    return pair_start_device(p, vhu_vqd_base(p->d));
}

static inline void pair_fini(struct pair *p)
{
    vhu_vq_free(p->q);
    vhu_vqd_free(p->d);
    p->q = NULL;
    p->d = NULL;
}

/* One 8-byte writable buffer made available, with cookie c. */
static inline int pair_add_small(struct pair *p, uintptr_t c)
{
    struct vhu_vqd_seg s = {data_alloc(p->g, 8), 8};

    return vhu_vqd_add(p->d, &s, 0, 1, (void *)c);
}

/* A guest, a pair with options o, and n 8-byte writable buffers made available (cookies 1..n). */
static inline int pair_setup_small(struct guest *g, struct pair *p, const struct pair_opts *o,
                                   unsigned n)
{
    int r = guest_init(g);

    if (r < 0 || (r = pair_init(p, g, o)) < 0)
        return r;
    for (unsigned i = 0; i < n; i++)
        if ((r = pair_add_small(p, i + 1)) < 0)
            return r;
    vhu_vqd_kick_prepare(p->d);
    return 0;
}

/* The device pops up to n chains and completes each with 1 byte, then flushes (or only
 * publishes, flush false). */
static inline void pair_complete(struct pair *p, unsigned n, bool flush)
{
    for (unsigned i = 0; i < n; i++) {
        struct vhu_vq_elem *e = vhu_vq_pop(p->q);
        if (e)
            vhu_vq_push(p->q, e, 1);
    }
    if (flush)
        vhu_vq_flush(p->q);
    else
        vhu_vq_publish(p->q);
}

/*
 * One full round trip: a request of `out` readable bytes (filled with seed-derived bytes) and
 * `in` writable bytes, split into segments of at most seg bytes. The device checks what it reads
 * and writes a pattern; the driver checks it got its cookie, the length and the pattern.
 * Returns 0 or a negative line number of the first mismatch.
 */
static inline int pair_roundtrip(struct pair *p, uint32_t out, uint32_t in, uint32_t seg,
                                 unsigned seed)
{
    struct vhu_vqd_seg segs[64];
    unsigned ns = 0, n_out, n_in;
    uint64_t mark = p->g->next_data;
    uint64_t obuf = data_alloc(p->g, out), ibuf = data_alloc(p->g, in);
    uint8_t tmp[4096];
    struct vhu_vq_elem *e;
    uint32_t len = 0;
    void *c;

    if (out > sizeof(tmp) || in > sizeof(tmp))
        return -__LINE__;
    for (uint32_t i = 0; i < out; i++)
        tmp[i] = (uint8_t)(seed * 7 + i);
    gwrite(p->g, obuf, tmp, out);
    for (uint32_t off = 0; off < out; off += seg)
        segs[ns++] = (struct vhu_vqd_seg){obuf + off, VHU_MIN(seg, out - off)};
    n_out = ns;
    for (uint32_t off = 0; off < in; off += seg)
        segs[ns++] = (struct vhu_vqd_seg){ibuf + off, VHU_MIN(seg, in - off)};
    n_in = ns - n_out;
    if (vhu_vqd_add(p->d, segs, n_out, n_in, (void *)(uintptr_t)(seed + 1)) < 0)
        return -__LINE__;
    vhu_vqd_kick_prepare(p->d);
    e = vhu_vq_pop(p->q);
    if (!e || e->out_len != out || e->in_len != in)
        return -__LINE__;
    if (vhu_iov_to_buf(e->iov, e->out_num, 0, tmp, out) != out)
        return -__LINE__;
    for (uint32_t i = 0; i < out; i++)
        if (tmp[i] != (uint8_t)(seed * 7 + i))
            return -__LINE__;
    for (uint32_t i = 0; i < in; i++)
        tmp[i] = (uint8_t)(seed * 13 + i);
    if (vhu_iov_from_buf(e->iov + e->out_num, e->in_num, 0, tmp, in) != in)
        return -__LINE__;
    vhu_vq_push(p->q, e, in);
    vhu_vq_flush(p->q);
    c = vhu_vqd_get_used(p->d, &len);
    if (c != (void *)(uintptr_t)(seed + 1) || len != in)
        return -__LINE__;
    memset(tmp, 0, in);
    gread(p->g, ibuf, tmp, in);
    for (uint32_t i = 0; i < in; i++)
        if (tmp[i] != (uint8_t)(seed * 13 + i))
            return -__LINE__;
    p->g->next_data = mark; /* buffers are free again */
    return 0;
}

#endif
