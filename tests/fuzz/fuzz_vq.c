/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Fuzz target: the device side of the split and packed ring walkers (src/vq), as a hostile guest
 * drives them. Guest memory is three regions of host buffers (two adjacent in guest-physical
 * space, so chains may straddle a region boundary; one apart), each its own heap allocation so
 * ASan sees any access past a region. The input chooses the ring layout (split/packed,
 * EVENT_IDX, INDIRECT, size, base, where the three areas sit, optionally an inflight region
 * with its contents) and then a program of steps: guest writes anywhere in guest memory (the
 * guest changes the rings while the device walks them), pop, push, flush, unpop, notification
 * suppression, stop + restart at a new base. Every popped chain's segments are read (device-
 * readable) or written (device-writable) in full, so a segment that escapes guest memory is an
 * ASan report. Input format: docs/security.md; the seeds: tests/fuzz/mkcorpus.py.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "vq/vq_core.h"

#define NREG 3
static const uint64_t reg_gpa[NREG] = {0x0, 0x10000, 0x100000};
static const uint64_t reg_size[NREG] = {0x10000, 0x1000, 0x4000};
#define MAX_OUT 512

struct fz {
    uint8_t *host[NREG];
    struct vhu_mem_table *mem;
    struct vhu_vq *vq;
    struct vhu_vq_elem *out[MAX_OUT];
    unsigned nout;
    unsigned errors;
    volatile uint8_t sink;
};

static void on_error(struct vhu_vq *vq, void *opaque)
{
    (void)vq;
    ((struct fz *)opaque)->errors++;
}

static void on_notify(struct vhu_vq *vq, void *opaque)
{
    (void)vq, (void)opaque;
}

static int mem_setup(struct fz *z)
{
    struct vhu_mem_region *regs[NREG] = {0};
    unsigned i;
    int r;

    for (i = 0; i < NREG; i++) {
        z->host[i] = calloc(1, reg_size[i]);
        if (!z->host[i])
            return -1;
        r = vhu_mem_region_map(&(struct vhu_mem_region_desc){.gpa = reg_gpa[i],
                                                             .size = reg_size[i],
                                                             .uva = 0x7f0000000000ull + reg_gpa[i],
                                                             .fd = -1, .host = z->host[i]},
                               &regs[i]);
        if (r < 0)
            abort();
    }
    if (vhu_mem_table_new(regs, NREG, &z->mem) < 0)
        abort();
    return 0;
}

/* Read every readable byte and write every writable one, as a device would. */
static void touch(struct fz *z, const struct vhu_vq_elem *e)
{
    uint64_t out = 0, in = 0;
    uint8_t acc = 0;

    for (uint32_t i = 0; i < e->out_num + e->in_num; i++) {
        uint8_t *b = e->iov[i].iov_base;
        size_t len = e->iov[i].iov_len;

        if (i < e->out_num) {
            for (size_t k = 0; k < len; k++)
                acc ^= b[k];
            out += len;
        } else {
            memset(b, 0xa5, len);
            in += len;
        }
    }
    if (out != e->out_len || in != e->in_len)
        abort(); /* the element's totals disagree with its segments */
    z->sink = acc;
}

static void guest_write(struct fz *z, struct fin *f)
{
    unsigned reg = fin_u8(f) % NREG;
    uint32_t off = fin_u16(f);
    uint32_t len = fin_u8(f) + 1u;

    off %= reg_size[reg];
    if (len > reg_size[reg] - off)
        len = reg_size[reg] - off;
    fin_bytes(f, z->host[reg] + off, len);
}

/* Translate a guest-physical area for the ring (the device core does this in vhu). */
static void *area(struct fz *z, uint16_t off, unsigned align, size_t len)
{
    uint64_t gpa = (uint64_t)off & ~(uint64_t)(align - 1);

    return vhu_mem_gpa_range(z->mem, gpa, len);
}

static int start(struct fz *z, struct fin *f, void *inflight)
{
    uint8_t flags = fin_u8(f);
    uint8_t nsel = fin_u8(f);
    uint32_t base = fin_u32(f);
    uint16_t doff = fin_u16(f), aoff = fin_u16(f), uoff = fin_u16(f);
    struct vhu_vq_config c = {.packed = flags & 1, .event_idx = flags & 2, .indirect = flags & 4};

    if (c.packed) {
        c.num = (uint16_t)(nsel + 1);
        c.desc = area(z, doff, 16, (size_t)16 * c.num);
        c.driver = area(z, aoff, 4, 4);
        c.device = area(z, uoff, 4, 4);
        base &= 0x7fff7fff;
        base = ((base & 0x7fff) % c.num) | (base & 0x8000) |
               ((((base >> 16) & 0x7fff) % c.num) << 16) | (base & 0x80000000u);
    } else {
        c.num = (uint16_t)(1u << (nsel % 9));
        c.desc = area(z, doff, 16, (size_t)16 * c.num);
        c.driver = area(z, aoff, 2, 6 + 2u * c.num);
        c.device = area(z, uoff, 4, 6 + 8u * c.num);
        base &= 0xffff;
    }
    if (!c.desc || !c.driver || !c.device)
        return -1;
    if (vhu_vq_set_base(z->vq, base) < 0)
        return -1;
    if (inflight && !c.packed && (flags & 8)) {
        /* Sized for the largest ring this target makes, as the device core sizes it for the
         * largest queue (a restart may grow the ring). */
        size_t n = vhu_vq_inflight_region_size(c.num);
        void *p = calloc(1, vhu_vq_inflight_region_size(256));

        if (!p)
            return -1;
        fin_bytes(f, p, n);
        memcpy(inflight, &p, sizeof(p));
        vhu_vq_set_inflight_region(z->vq, p);
    }
    if (vhu_vq_start(z->vq, &c, z->mem) < 0)
        return -1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fin f = {data, size};
    struct fz z = {0};
    void *inflight = NULL;
    struct vhu_vq_hooks hooks = {.notify = on_notify, .error = on_error, .opaque = &z};
    unsigned steps = 0;

    if (mem_setup(&z) < 0)
        goto out;
    if (vhu_vq_new(0, sizeof(struct vhu_vq_elem) + 8, 64, &z.vq) < 0)
        abort();
    vhu_vq_set_hooks(z.vq, &hooks);
    if (start(&z, &f, &inflight) < 0)
        goto out;
    while (fin_left(&f) && steps++ < 4096) {
        uint8_t op = fin_u8(&f);
        struct vhu_vq_elem *e;

        switch (op % 10) {
        case 0:
            guest_write(&z, &f);
            break;
        case 2: { /* a burst of up to 16 (its own path for single descriptors) */
            struct vhu_vq_elem *b[16];
            unsigned max = 1u + fin_u8(&f) % 16u, n = vhu_vq_pop_burst(z.vq, b, max);
            if (n > max || z.nout + n > MAX_OUT)
                abort(); /* more than asked for, or more out than any ring size allows */
            for (unsigned i = 0; i < n; i++) {
                touch(&z, b[i]);
                z.out[z.nout++] = b[i];
            }
            break;
        }
        case 1:
            e = vhu_vq_pop(z.vq);
            if (!e)
                break;
            touch(&z, e);
            if (z.nout == MAX_OUT)
                abort(); /* more elements out than any ring size allows */
            z.out[z.nout++] = e;
            break;
        case 3: { /* push one element out, chosen by the input; or a burst of up to 8 */
            if (!z.nout)
                break;
            uint8_t how = fin_u8(&f);
            if (how & 0x80) {
                struct vhu_vq_elem *g[8];
                uint32_t w[8];
                unsigned n = 0, want = 1u + (how & 7u);
                while (n < want && z.nout) {
                    unsigned i = fin_u8(&f) % z.nout;
                    g[n] = z.out[i];
                    z.out[i] = z.out[--z.nout];
                    w[n++] = fin_u32(&f);
                }
                vhu_vq_push_burst(z.vq, g, (how & 0x40) ? NULL : w, n);
                break;
            }
            unsigned i = how % z.nout;
            e = z.out[i];
            z.out[i] = z.out[--z.nout];
            vhu_vq_push(z.vq, e, fin_u32(&f));
            break;
        }
        case 4: /* a flush, or a publish that leaves the decision to a later flush */
            if ((op / 10) & 1)
                vhu_vq_publish(z.vq);
            else
                vhu_vq_flush(z.vq);
            break;
        case 5: /* unpop the most recent element */
            if (z.nout)
                vhu_vq_unpop(z.vq, z.out[--z.nout]);
            break;
        case 6:
            vhu_vq_disable_notify(z.vq);
            break;
        case 7:
            (void)vhu_vq_enable_notify(z.vq);
            (void)vhu_vq_has_work(z.vq);
            break;
        case 8: /* the owner stops the ring and starts it again elsewhere */
            vhu_vq_stop(z.vq);
            z.nout = 0; /* popped elements are forgotten by stop */
            (void)vhu_vq_get_base(z.vq);
            if (start(&z, &f, NULL) < 0)
                goto out;
            break;
        case 9:
            (void)vhu_vq_set_polling(z.vq, fin_u8(&f) & 1);
            break;
        }
    }
    /* Drain: push everything back, flush. */
    while (z.nout)
        vhu_vq_push(z.vq, z.out[--z.nout], 0);
    vhu_vq_flush(z.vq);
out:
    if (z.vq) {
        vhu_vq_stop(z.vq);
        vhu_vq_free(z.vq);
    }
    free(inflight);
    if (z.mem)
        vhu_mem_table_put(z.mem);
    for (unsigned i = 0; i < NREG; i++)
        free(z.host[i]);
    return 0;
}
