/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Shared by the virtio-net tests: a test bench (struct tb) of the real net device and backend
 * driven in one process over either path of the test driver (tdrv.h: vhost-user loopback or the
 * core's typed calls), and the driver-side helpers that build transmit chains, post receive
 * buffers and collect used entries in guest memory.
 */
#ifndef NET_TESTLIB_H
#define NET_TESTLIB_H

#include <errno.h>
#include <string.h>

#include "vhu/backend.h"
#include "vhu/dev/net.h"
#include "vhu/device.h"
#include "vhu/frontend.h"
#include "vhu/log.h"
#include "vhu/loop.h"
#include "vhu/loopback.h"
#include "vhu/util.h"
#include "vhu/virtio.h"
#include "tdrv.h"

#define HDR 12u

struct tb {
    bool own_loop;
    struct vhu_loop *loop;
    struct vhu_backend *b;
    struct tdrv *d; /* over the path the test runs on (tdrv_path) */
    struct vhu_device *dev;
};

struct tb_opts {
    struct vhu_net_opts net;
    bool packed, no_event_idx, no_indirect, mrg;
    uint64_t extra_features;
    uint16_t queue_size;
    unsigned workers; /* backend worker threads (0: the loop) */
    unsigned poll_us; /* workers busy-poll for this long after work */
    struct vhu_loop *loop; /* a loop shared with other test benches (switch); NULL: own */
    uint64_t protocol_features; /* asked for on top of the library's own */
    struct vhu_backend *share_from; /* run on that backend's workers (net switch) */
};

static inline int tb_up(struct tb *t, const struct tb_opts *o)
{
    int r;

    memset(t, 0, sizeof(*t));
    r = vhu_net_new(&o->net, &t->dev);
    if (r < 0)
        return r;
    t->own_loop = !o->loop;
    t->loop = o->loop;
    r = o->loop ? 0 : vhu_loop_new(&t->loop);
    if (r == 0)
        r = vhu_backend_new(t->dev, t->loop, &t->b);
    if (r == 0 && o->share_from)
        r = vhu_backend_share_workers(t->b, o->share_from);
    else if (r == 0 && o->workers)
        r = vhu_backend_set_workers(t->b, o->workers, o->poll_us);
    if (r == 0)
        r = tdrv_new(tdrv_path, t->b, t->loop, &t->d);
    if (r < 0)
        return r;
    struct tdrv_opts fo = {
        .features = vhu_feature(VHU_VIRTIO_NET_F_MAC) | vhu_feature(VHU_VIRTIO_NET_F_MTU) |
                    vhu_feature(VHU_VIRTIO_NET_F_STATUS) | vhu_feature(VHU_VIRTIO_NET_F_MQ) |
                    (o->mrg ? vhu_feature(VHU_VIRTIO_NET_F_MRG_RXBUF) : 0) | o->extra_features,
        .num_queues = (uint16_t)(2 * (o->net.queue_pairs ? o->net.queue_pairs : 1)),
        .queue_size = o->queue_size ? o->queue_size : 128,
        .packed = o->packed,
        .event_idx = !o->no_event_idx,
        .indirect = !o->no_indirect,
        .mem_size = 16 << 20,
        .queue_pairs = true,
        .protocol_features = o->protocol_features,
    };
    return tdrv_start(t->d, &fo);
}

static inline void tb_down(struct tb *t)
{
    tdrv_teardown(t->d, t->b, t->dev, t->own_loop ? t->loop : NULL);
}

static inline void *alloc(struct tb *t, size_t n, uint64_t *gpa)
{
    return tdrv_alloc(t->d, n, 64, gpa);
}

/* An Ethernet frame: dst, src, ethertype 0x0800, payload pattern seeded by seed. */
static inline void make_frame(uint8_t *f, uint32_t len, unsigned seed)
{
    static const uint8_t dst[6] = {0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee};
    static const uint8_t src[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};

    memcpy(f, dst, 6);
    memcpy(f + 6, src, 6);
    f[12] = 0x08;
    f[13] = 0x00;
    for (uint32_t i = 14; i < len; i++)
        f[i] = (uint8_t)(seed * 31 + i * 7);
}

/*
 * Queue one transmit chain at b (guest address gpa, HDR + len bytes): the header h (NULL: a zero
 * one) then the frame, in nseg segments (nseg >= 2 puts the header boundary mid-segment: 5 bytes,
 * then 7 + part of the frame, ...).
 */
static inline int tx_add_at(struct tb *t, unsigned q, uint8_t *b, uint64_t gpa,
                            const struct vhu_virtio_net_hdr_v1 *h, const uint8_t *frame,
                            uint32_t len, unsigned nseg)
{
    struct vhu_vqd_seg s[8];
    uint32_t total = HDR + len, off = 0;
    struct vhu_virtio_net_hdr_v1 zero = {0};

    memcpy(b, h ? h : &zero, HDR);
    memcpy(b + HDR, frame, len);
    if (nseg <= 1) {
        s[0] = (struct vhu_vqd_seg){gpa, total};
        nseg = 1;
    } else {
        s[0] = (struct vhu_vqd_seg){gpa, 5};
        off = 5;
        for (unsigned i = 1; i < nseg; i++) {
            uint32_t l = i + 1 == nseg ? total - off : (total - 5) / (nseg - 1);
            s[i] = (struct vhu_vqd_seg){gpa + off, l};
            off += l;
        }
    }
    return vhu_vqd_add(tdrv_vqd(t->d, q), s, nseg, 0, b);
}

/* The same in a buffer of its own from the bump allocator. */
static inline int tx_add(struct tb *t, unsigned q, const struct vhu_virtio_net_hdr_v1 *h,
                  const uint8_t *frame, uint32_t len, unsigned nseg)
{
    uint64_t gpa;
    uint8_t *b = alloc(t, HDR + len, &gpa);

    return b ? tx_add_at(t, q, b, gpa, h, frame, len, nseg) : -ENOMEM;
}

/* Post count receive chains of size bytes (in nseg segments each); cookies are the buffers. */
static inline int rx_post(struct tb *t, unsigned q, uint32_t size, unsigned count, unsigned nseg,
                   uint8_t **bufs)
{
    for (unsigned c = 0; c < count; c++) {
        uint64_t gpa;
        uint8_t *b = alloc(t, size, &gpa);
        struct vhu_vqd_seg s[8];
        uint32_t per = size / nseg, off = 0;
        if (!b)
            return -ENOMEM;
        memset(b, 0xee, size);
        for (unsigned i = 0; i < nseg; i++) {
            uint32_t l = i + 1 == nseg ? size - off : per;
            s[i] = (struct vhu_vqd_seg){gpa + off, l};
            off += l;
        }
        int r = vhu_vqd_add(tdrv_vqd(t->d, q), s, 0, nseg, b);
        if (r < 0)
            return r;
        if (bufs)
            bufs[c] = b;
    }
    return 0;
}

/* Wait for up to want used entries on q (timeout_ms in total); returns how many came. */
static inline unsigned collect(struct tb *t, unsigned q, unsigned want, int timeout_ms, uint8_t **cookies,
                        uint32_t *lens)
{
    struct vhu_vqd *vqd = tdrv_vqd(t->d, q);
    uint64_t deadline = vhu_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    unsigned got = 0;

    while (got < want) {
        uint32_t len;
        void *c = vhu_vqd_get_used(vqd, &len);
        if (c) {
            if (cookies)
                cookies[got] = c;
            if (lens)
                lens[got] = len;
            got++;
            continue;
        }
        if (vhu_now_ns() >= deadline)
            break;
        vhu_vqd_enable_cb(vqd);
        tdrv_wait(t->d, q, 20);
    }
    return got;
}

static inline struct vhu_net_stats stats(struct tb *t, unsigned q)
{
    struct vhu_net_stats s = {0};

    vhu_net_get_stats(t->dev, q, &s);
    return s;
}

#endif
