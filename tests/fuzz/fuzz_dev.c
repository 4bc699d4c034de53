/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Fuzz target: the devices' request paths (blk over the null store, net over the reflect, sink
 * and source ports, rng), driven through the device core's typed calls by the test driver
 * (tests/harness/tdrv.h, core path: rings in a plain buffer, polled, callback sinks). The
 * rings themselves are well formed (the driver side of vhu builds them; fuzz_vq covers hostile
 * rings); what the input controls is what a hostile guest puts in them: the negotiated
 * features, ring size and layout, and chains of segments whose addresses and lengths are its
 * own (in a data area it fills, or anywhere: the rings, past memory, wrapping) carrying request
 * bytes (blk headers, virtio-net headers, frames), plus config writes, ring enable/disable,
 * stop/restart of rings, and device reset. Segments the device writes are in guest memory only
 * (ASan checks the arena's bounds through the mapping's guard: see below). Input format:
 * docs/security.md; the seeds: tests/fuzz/mkcorpus.py.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "tdrv.h"
#include "vhu/dev/blk.h"
#include "vhu/dev/net.h"
#include "vhu/dev/rng.h"

#define MEM_SIZE (1u << 20)
#define DATA_SIZE 0x10000u
#define MAX_SEGS 8

struct fz {
    struct vhu_loop *loop;
    struct vhu_backend *b;
    struct tdrv *d;
    uint8_t *data;     /* the data area, in guest memory */
    uint64_t data_gpa;
    unsigned nq;
    unsigned outstanding[16];
};

static char cookie;

static int dev_new(struct fin *f, struct vhu_device **dev, unsigned *nq)
{
    uint8_t kind = fin_u8(f);
    uint8_t opt = fin_u8(f);

    switch (kind % 5) {
    case 0:
    case 1: { /* blk: the null store; 1 or 2 queues, 512 or 4096 bytes per block, ro or rw */
        struct vhu_blk_opts o = {.null_size = (uint64_t)1 << 20,
                                 .num_queues = (uint16_t)(1 + (opt & 1)),
                                 .blk_size = (opt & 2) ? 4096 : 512,
                                 .read_only = opt & 4,
                                 .writethrough = opt & 8,
                                 .serial = (opt & 16) ? &"fuzz-serial-0123456789"[2] : NULL,
                                 .seg_max = (opt & 32) ? 3 : 0};
        *nq = o.num_queues;
        return vhu_blk_new(&o, dev);
    }
    case 2:
    case 3: { /* net: reflect, sink, source; mtu default or small */
        static const enum vhu_net_port_kind ports[] = {VHU_NET_PORT_REFLECT, VHU_NET_PORT_SINK,
                                                       VHU_NET_PORT_SOURCE, VHU_NET_PORT_REFLECT};
        struct vhu_net_opts o = {.port = ports[opt & 3],
                                 .source_size = 60 + (opt >> 4) * 90,
                                 .mtu = (opt & 4) ? 576 : 0};
        *nq = 2;
        return vhu_net_new(&o, dev);
    }
    default:
        *nq = 1;
        return vhu_rng_new(&(struct vhu_rng_opts){0}, dev);
    }
}

/* Reap every used chain (the driver side validates ids and lengths). */
static void reap(struct fz *z)
{
    for (unsigned q = 0; q < z->nq; q++) {
        struct vhu_vqd *vqd = tdrv_vqd(z->d, q);
        uint32_t len;

        if (!vqd)
            continue;
        while (vhu_vqd_get_used(vqd, &len))
            if (z->outstanding[q])
                z->outstanding[q]--;
        /* a chain the device used twice, or never: the driver sees a bad id and breaks */
    }
}

static void submit(struct fz *z, struct fin *f)
{
    uint8_t sel = fin_u8(f);
    unsigned q = (sel & 15) % z->nq;
    unsigned n_out = (sel >> 4) & 3, n_in = (sel >> 6) & 3;
    struct vhu_vqd_seg segs[MAX_SEGS];
    struct vhu_vqd *vqd = tdrv_vqd(z->d, q);

    if (!vqd || n_out + n_in == 0)
        return;
    for (unsigned i = 0; i < n_out + n_in; i++) {
        uint8_t k = fin_u8(f);

        if (k & 0x80) { /* anywhere: a guest-physical address of the input's choosing */
            segs[i].addr = fin_u64(f);
            segs[i].len = fin_u32(f);
            if (k & 0x40) /* near the arena: in it, across its end, before it */
                segs[i].addr = VHU_FE_GPA_BASE + (segs[i].addr % (MEM_SIZE + 0x2000)) - 0x1000;
        } else { /* in the data area */
            uint32_t off = fin_u16(f) % DATA_SIZE;
            uint32_t len = fin_u16(f);

            if (len > DATA_SIZE - off)
                len = DATA_SIZE - off;
            segs[i].addr = z->data_gpa + off;
            segs[i].len = len;
        }
    }
    if (vhu_vqd_add(vqd, segs, n_out, n_in, &cookie) == 0)
        z->outstanding[q]++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fin f = {data, size};
    struct fz z = {0};
    struct vhu_device *dev = NULL;
    struct tdrv_opts o = {0};
    unsigned steps = 0;
    uint8_t flags, qs;

    if (dev_new(&f, &dev, &z.nq) < 0)
        return 0;
    if (vhu_loop_new(&z.loop) < 0 || vhu_backend_new(dev, z.loop, &z.b) < 0)
        abort();
    dev = NULL; /* the backend owns it */
    if (tdrv_new(TDRV_CORE, z.b, z.loop, &z.d) < 0)
        abort();
    flags = fin_u8(&f);
    qs = fin_u8(&f);
    o.features = fin_u64(&f);
    o.num_queues = (uint16_t)z.nq;
    o.packed = flags & 1;
    o.event_idx = flags & 2;
    o.indirect = flags & 4;
    o.mem_regions = 1 + ((flags >> 3) & 3);
    o.mem_size = MEM_SIZE;
    o.queue_size = o.packed ? (uint16_t)(qs % 128 + 1) : (uint16_t)(1u << (qs % 8));
    if (tdrv_start(z.d, &o) < 0)
        goto out;
    z.data = tdrv_alloc(z.d, DATA_SIZE, 4096, &z.data_gpa);
    if (!z.data)
        abort();
    while (fin_left(&f) && steps++ < 1024) {
        uint8_t op = fin_u8(&f);

        switch (op % 10) {
        case 0: { /* the guest writes request bytes into the data area */
            uint32_t off = fin_u16(&f) % DATA_SIZE;
            uint32_t len = fin_u8(&f) + 1u;

            if (len > DATA_SIZE - off)
                len = DATA_SIZE - off;
            fin_bytes(&f, z.data + off, len);
            break;
        }
        case 1:
        case 2:
        case 3:
            submit(&z, &f);
            break;
        case 4: /* publish and let the device run */
            for (unsigned q = 0; q < z.nq; q++)
                tdrv_kick(z.d, q);
            tdrv_progress(z.d);
            reap(&z);
            break;
        case 5: { /* config space */
            uint8_t buf[64];
            uint32_t off = fin_u8(&f) % 80, len = fin_u8(&f) % 65;

            if (op & 0x80) {
                fin_bytes(&f, buf, len);
                (void)tdrv_set_config(z.d, off, buf, len);
            } else {
                (void)tdrv_get_config(z.d, off, buf, len);
            }
            break;
        }
        case 6: /* disable / enable a ring */
            (void)tdrv_enable(z.d, fin_u8(&f) % z.nq, op & 0x80);
            break;
        case 7: { /* stop a ring and start it again where the driver is */
            unsigned q = fin_u8(&f) % z.nq;
            struct vhu_core *c = tdrv_core(z.d);
            uint32_t base;

            if (vhu_core_ring_stop(c, q, &base) == 0) {
                (void)vhu_core_ring_set_base(c, q, vhu_vqd_base(tdrv_vqd(z.d, q)));
                (void)vhu_core_ring_start(c, q);
                (void)vhu_core_ring_enable(c, q, true);
            }
            break;
        }
        case 8: { /* status writes (a driver's reset among them) */
            (void)tdrv_set_status(z.d, fin_u8(&f));
            break;
        }
        case 9:
            tdrv_progress(z.d);
            reap(&z);
            break;
        }
    }
    /* let the device finish what it can */
    for (unsigned q = 0; q < z.nq; q++)
        tdrv_kick(z.d, q);
    for (int i = 0; i < 4; i++)
        tdrv_progress(z.d);
    reap(&z);
out:
    tdrv_teardown(z.d, z.b, dev, z.loop);
    return 0;
}
