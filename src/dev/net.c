/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * virtio-net (VIRTIO 1.3 §5.1), device side, as served over vhost-user: receive/transmit queue
 * pairs (queue 2k = receiveq k, 2k+1 = transmitq k; the frontend keeps the control queue).
 * Rings, headers, buffers and counters live here; where packets go is a port (net_port.h).
 *
 * Transmit (§5.1.6.2): pop up to NET_BURST chains, copy the 12-byte header out (it may span
 * segments), hand the frame to the port as iovecs in guest memory, push, flush once per burst.
 * Receive (§5.1.6.3-4): a packet takes one chain, or with MRG_RXBUF as many as it needs
 * (num_buffers in the first header); it is copied once and each chain pushed with its length.
 * Every queue handles at most NET_BUDGET packets per call; the rest is rescheduled through a
 * per-queue eventfd, so a busy queue does not starve the others sharing its thread.
 *
 * Both directions complete chains in the order they were popped (leftovers are unpopped, newest
 * first), so the device offers VIRTIO_F_IN_ORDER: the ring then writes one used entry for a run
 * of transmit chains instead of one per frame (receive chains keep one each, with its length).
 *
 * Per packet: no allocation, no lock, no log line. A transmit chain too short for the header
 * is dropped and counted; a receive chain with readable descriptors (or smaller than the
 * header) breaks that queue only.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "net_port.h"
#include "vhu/dev/net.h"
#include "vhu/device.h"
#include "vhu/log.h"
#include "vhu/util.h"
#include "vhu/virtio.h"
#include "vhu/vq.h"

#define NET_DEF_QUEUE_SIZE 1024
#define NET_DEF_MTU 1500
#define NET_MAX_SEGS 64
#define NET_MIN_MTU 68
#define NET_MAX_MTU (NET_MAX_FRAME - NET_ETH_HLEN - 15) /* 65521 */

struct net_dev {
    struct vhu_device dev; /* must be first */
    struct net_port *port;
    uint8_t mac[6];
    bool mac_random;              /* no --mac: the device chose it (state: kept across restarts) */
    uint16_t mtu;                 /* in config space: the option, or NET_SET_MTU's value */
    uint16_t opt_mtu;             /* the option (back to it on reset) */
    uint16_t pairs;
    /* SEND_RARP: the MAC to announce in bits 0-47, bit 48 set while one is pending; written by
     * the control thread, taken (exchanged with 0) by transmitq 0's thread, woken through
     * announce_fd. */
    uint64_t announce;
    int announce_fd;
    struct net_queue **q;         /* [num_queues], set by each queue's owner thread */
    struct vhu_net_stats *stats;  /* [num_queues]; one writer each, readers use atomics */
};

/* ------------------------------------------------------------------------------------------ */
/* Counters                                                                                    */
/* ------------------------------------------------------------------------------------------ */

static void stat_pkt(struct net_queue *q, uint64_t bytes)
{
    struct vhu_net_stats *s = &q->nd->stats[q->index];

    net_stat_add(&s->packets, 1);
    net_stat_add(&s->bytes, bytes);
}

static void stat_gso(struct net_queue *q, const struct vhu_virtio_net_hdr_v1 *h)
{
    if (h->gso_type != VHU_VIRTIO_NET_HDR_GSO_NONE)
        net_stat_add(&q->nd->stats[q->index].gso, 1);
}

void net_stat_drop(struct net_queue *q, bool error)
{
    struct vhu_net_stats *s = &q->nd->stats[q->index];

    net_stat_add(&s->drops, 1);
    if (error)
        net_stat_add(&s->errors, 1);
}

struct net_queue *net_queue_get(struct net_dev *nd, unsigned i)
{
    return i < nd->dev.num_queues ? nd->q[i] : NULL;
}

uint64_t net_acked_features(const struct net_dev *nd)
{
    return nd->dev.acked_features;
}

unsigned net_pairs(const struct net_dev *nd)
{
    return nd->pairs;
}

const uint8_t *net_mac(const struct net_dev *nd)
{
    return nd->mac;
}

/* ------------------------------------------------------------------------------------------ */
/* Receive buffers                                                                             */
/* ------------------------------------------------------------------------------------------ */

/* A popped chain back to the ring (callers go newest first: unpop rewinds the ring only in
 * LIFO order); a broken ring just recycles it. */
static void rx_unpop(struct net_queue *rxq, struct vhu_vq_elem *e, bool broken)
{
    if (broken)
        vhu_vq_push(rxq->vq, e, 0);
    else
        vhu_vq_unpop(rxq->vq, e);
}

/* The chains of rv from index `from` on go back, newest first: to the ring when popped
 * directly, to the ahead chains they came from otherwise. */
static void rx_giveback(struct net_queue *rxq, struct net_rx_resv *rv, unsigned from)
{
    bool broken = vhu_vq_broken(rxq->vq);

    while (rv->n > from) {
        struct vhu_vq_elem *e = rxq->resv[--rv->n];
        if (rv->n < rv->ahead) {
            rxq->ahead_pos--; /* ahead[ahead_pos] is e: taken last, given back first */
            rv->ahead--;
        } else {
            rx_unpop(rxq, e, broken);
        }
    }
}

void net_rx_cancel(struct net_queue *rxq, struct net_rx_resv *rv)
{
    rx_giveback(rxq, rv, 0);
    rv->cap = 0;
}

/*
 * Receive buffers are lines the driver's CPU last held (from the buffer's previous packet):
 * every first store into one waits for the line to be taken from that CPU, and the stores of
 * a burst queue up behind each such wait. PREFETCHW requests the lines for writing at once,
 * so the waits of a burst overlap (source 64 B: about 2x the packet rate, docs/performance.md).
 * A read prefetch (what __builtin_prefetch(p, 1) compiles to without -mprfchw) did not help.
 *
 * The one exception is a header alone in its line (it ends where a line ends: DPDK's layout,
 * the header in the mbuf headroom, the frame from the next line on). Its bytes are usually the
 * ones already there (no offload, num_buffers 1: what the previous packet in that buffer got),
 * and rx_copy_flat() then does not write them: the line stays shared, and the driver's read of
 * num_buffers hits its own cache. DPDK's vhost library and virtio PMD skip unchanged header
 * fields for the same reason. That line gets a read prefetch (for the compare).
 */
#define NET_CACHE_LINE 64u
static bool have_prefetchw;
static pthread_once_t prefetchw_once = PTHREAD_ONCE_INIT;

static void detect_prefetchw(void)
{
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;

    /* CPUID 8000_0001h ECX bit 8: PRFCHW (Linux's 3dnowprefetch) */
    if (__get_cpuid(0x80000001u, &a, &b, &c, &d))
        have_prefetchw = (c >> 8) & 1;
#endif
}

static inline void prefetch_w(const void *p)
{
#if defined(__x86_64__) || defined(__i386__)
    if (vhu_likely(have_prefetchw))
        __asm__ volatile("prefetchw %0" : : "m"(*(const volatile char *)p));
#else
    __builtin_prefetch(p, 1);
#endif
}

void net_rx_prefetch(struct net_queue *rxq, unsigned n)
{
    unsigned k = 0;

    if (rxq->ahead_pos < rxq->ahead_n)
        return; /* the last burst's chains are not used up */
    n = vhu_vq_pop_burst(rxq->vq, rxq->ahead, VHU_MIN(n, NET_BURST));
    for (; k < n; k++) {
        struct vhu_vq_elem *e = rxq->ahead[k];
        if (e->in_num) {
            const uint8_t *d = e->iov[e->out_num].iov_base;
            /* the header and a 64-byte frame: two lines at most */
            if (((uintptr_t)d + NET_HDR_LEN) % NET_CACHE_LINE == 0)
                __builtin_prefetch(d, 0);
            else
                prefetch_w(d);
            prefetch_w(d + 64);
        }
    }
    rxq->ahead_pos = 0;
    rxq->ahead_n = k;
}

/* Unused ahead chains back to the ring, newest first (nothing was popped after them: direct
 * pops happen only once they are used up). */
static void rx_release_ahead(struct net_queue *rxq)
{
    bool broken = vhu_vq_broken(rxq->vq);

    while (rxq->ahead_n > rxq->ahead_pos)
        rx_unpop(rxq, rxq->ahead[--rxq->ahead_n], broken);
    rxq->ahead_pos = rxq->ahead_n = 0;
}

void net_rx_flush(struct net_queue *rxq)
{
    rx_release_ahead(rxq);
    vhu_vq_flush(rxq->vq);
}

static struct vhu_vq_elem *rx_take(struct net_queue *rxq, struct net_rx_resv *rv)
{
    if (rxq->ahead_pos < rxq->ahead_n) {
        rv->ahead++;
        return rxq->ahead[rxq->ahead_pos++];
    }
    return vhu_vq_pop(rxq->vq);
}

int net_rx_reserve(struct net_queue *rxq, uint64_t need, struct net_rx_resv *rv)
{
    unsigned max = rxq->max_chains;
    struct vhu_vq_elem *e;

    rv->n = 0;
    rv->ahead = 0;
    rv->cap = 0;
    while (rv->cap < need) {
        if (rv->n == max) {
            net_rx_cancel(rxq, rv);
            return -EMSGSIZE;
        }
        e = rx_take(rxq, rv);
        if (!e) {
            net_rx_cancel(rxq, rv);
            return vhu_vq_broken(rxq->vq) ? -EIO : -ENOBUFS;
        }
        rxq->resv[rv->n++] = e;
        /* §5.1.6.3.1: receive buffers are device-writable only, each at least a header
         * (mergeable; a non-mergeable one holds the whole packet, so at least a header too). */
        if (e->out_num || e->in_len < NET_HDR_LEN) {
            vhu_vq_break(rxq->vq, e->out_num ? "net: receive chain with readable descriptors"
                                             : "net: receive buffer smaller than the header");
            net_rx_cancel(rxq, rv);
            return -EIO;
        }
        rv->cap += e->in_len;
    }
    return 0;
}

/* Push the chains holding len bytes, give the rest back. */
static void rx_push(struct net_queue *rxq, struct net_rx_resv *rv, uint64_t len, unsigned used)
{
    rx_giveback(rxq, rv, used); /* leftovers were taken last: they go back first */
    for (unsigned i = 0; i < used; i++) {
        struct vhu_vq_elem *e = rxq->resv[i];
        uint32_t w = (uint32_t)VHU_MIN(e->in_len, len);
        vhu_vq_push(rxq->vq, e, w);
        len -= w;
    }
    rv->n = 0;
}

static unsigned chains_for(const struct net_queue *rxq, const struct net_rx_resv *rv,
                           uint64_t len)
{
    uint64_t cap = 0;
    unsigned i = 0;

    while (i < rv->n && cap < len)
        cap += rxq->resv[i++]->in_len;
    return i ? i : 1;
}

void net_rx_commit(struct net_queue *rxq, struct net_rx_resv *rv, uint64_t len)
{
    unsigned used = chains_for(rxq, rv, len);
    struct vhu_vq_elem *e = rxq->resv[0];
    uint16_t nb = (uint16_t)used;

    if (!rv->n)
        return;
    vhu_iov_from_buf(e->iov + e->out_num, e->in_num,
                     offsetof(struct vhu_virtio_net_hdr_v1, num_buffers), &nb, sizeof(nb));
    stat_pkt(rxq, len > NET_HDR_LEN ? len - NET_HDR_LEN : 0);
    rx_push(rxq, rv, len, used);
}

/* Copy header + frame into the writable segments of the reserved chains, in order. */
static void rx_copy(struct net_queue *rxq, const struct net_rx_resv *rv, const void *hdr,
                    const struct iovec *iov, unsigned n, uint32_t len)
{
    const uint8_t *hp = hdr;
    size_t hleft = NET_HDR_LEN, sleft = len, soff = 0;
    unsigned si = 0;

    for (unsigned k = 0; k < rv->n; k++) {
        struct vhu_vq_elem *e = rxq->resv[k];
        for (uint32_t j = e->out_num; j < e->out_num + e->in_num; j++) {
            uint8_t *d = e->iov[j].iov_base;
            size_t dl = e->iov[j].iov_len;
            while (dl && (hleft || sleft)) {
                size_t c;
                if (hleft) {
                    c = VHU_MIN(dl, hleft);
                    memcpy(d, hp, c);
                    hp += c;
                    hleft -= c;
                } else {
                    while (si < n && soff == iov[si].iov_len) {
                        si++;
                        soff = 0;
                    }
                    if (si == n)
                        return;
                    c = VHU_MIN(VHU_MIN(dl, iov[si].iov_len - soff), sleft);
                    /* guest memory to guest memory: the guest may overlap the two */
                    memmove(d, (const uint8_t *)iov[si].iov_base + soff, c);
                    soff += c;
                    sleft -= c;
                }
                d += c;
                dl -= c;
            }
            if (!hleft && !sleft)
                return;
        }
    }
}

/* hdr at d, unless d already holds it: no store into a line the driver may still share. The
 * guest may change its buffer meanwhile; what it then reads is its own doing. */
static inline void hdr_store(uint8_t *d, const void *hdr)
{
    uint64_t a, b;
    uint32_t c, e;

    _Static_assert(NET_HDR_LEN == 12, "header compare: 8 + 4 bytes");
    memcpy(&a, d, 8);
    memcpy(&b, hdr, 8);
    memcpy(&c, d + 8, 4);
    memcpy(&e, (const uint8_t *)hdr + 8, 4);
    if (a != b || c != e)
        memcpy(d, hdr, NET_HDR_LEN);
}

/* The frame's first 12 bytes (its two addresses) read as two words, before anything is copied
 * (the guest may overlap the receive buffer with the frame), to be stored exchanged after. */
struct mac_swap {
    uint64_t a; /* dst[0..5] src[0..1] */
    uint64_t b; /* dst[4..5] src[0..5] */
};

static inline void mac_swap_store(uint8_t *f, const struct mac_swap *m)
{
    uint64_t lo = (m->b >> 16) | (m->a << 48); /* src[0..5] dst[0..1] */
    uint32_t hi = (uint32_t)(m->a >> 16);      /* dst[2..5] */

    memcpy(f, &lo, 8);
    memcpy(f + 8, &hi, 4);
}

/* The common small case: one chain whose first writable segment holds the whole packet. One
 * fixed-size header store (none if the header is already there) and one copy per frame
 * segment, no segment walking. With swap, the frame's addresses come out exchanged (reflect):
 * read from the source first, stored over the copy after (no load of what was just stored, which
 * would wait for the line). */
static bool rx_copy_flat(struct net_queue *rxq, const struct net_rx_resv *rv, const void *hdr,
                         const struct iovec *iov, unsigned n, uint64_t total, bool swap)
{
    const struct vhu_vq_elem *e = rxq->resv[0];
    struct mac_swap m = {0, 0};
    uint8_t *d, *f;

    if (rv->n != 1 || e->iov[e->out_num].iov_len < total)
        return false;
    if (swap) {
        if (!n || iov[0].iov_len < 12)
            return false;
        memcpy(&m.a, iov[0].iov_base, 8);
        memcpy(&m.b, (const uint8_t *)iov[0].iov_base + 4, 8);
    }
    d = e->iov[e->out_num].iov_base;
    hdr_store(d, hdr);
    f = d += NET_HDR_LEN;
    total -= NET_HDR_LEN;
    for (unsigned i = 0; i < n && total; i++) {
        size_t c = VHU_MIN(iov[i].iov_len, total);
        /* guest memory to guest memory: the guest may overlap the two */
        memmove(d, iov[i].iov_base, c);
        d += c;
        total -= c;
    }
    if (swap)
        mac_swap_store(f, &m);
    return true;
}

/* rx_copy() of a frame (12 bytes at least) with its addresses exchanged: the addresses, copied
 * out and exchanged, then the rest of the frame straight from its segments. */
static void rx_copy_swapped(struct net_queue *rxq, const struct net_rx_resv *rv, const void *hdr,
                            const struct iovec *iov, unsigned n, uint32_t len)
{
    struct iovec v[NET_MAX_SEGS + 1];
    uint8_t in[12], macs[12];
    size_t skip = sizeof(macs);
    unsigned k = 1;

    vhu_iov_to_buf(iov, n, 0, in, sizeof(in));
    memcpy(macs, in + 6, 6);
    memcpy(macs + 6, in, 6);
    v[0] = (struct iovec){macs, sizeof(macs)};
    for (unsigned i = 0; i < n && k < VHU_ARRAY_SIZE(v); i++) {
        if (iov[i].iov_len <= skip) {
            skip -= iov[i].iov_len;
            continue;
        }
        v[k++] = (struct iovec){(uint8_t *)iov[i].iov_base + skip, iov[i].iov_len - skip};
        skip = 0;
    }
    rx_copy(rxq, rv, hdr, v, k, len);
}

static int rx_deliver(struct net_queue *rxq, const struct vhu_virtio_net_hdr_v1 *hdr,
                      const struct iovec *iov, unsigned n, uint32_t len, bool swap)
{
    struct vhu_virtio_net_hdr_v1 h = *hdr;
    struct net_rx_resv rv;
    uint64_t total = (uint64_t)NET_HDR_LEN + len;
    int r = net_rx_reserve(rxq, total, &rv);

    if (r < 0) {
        if (r != -ENOBUFS)
            net_stat_drop(rxq, false);
        return r;
    }
    /* Every reserved chain is needed (reserve stops as soon as there is room). §5.1.6.4:
     * num_buffers is 1 without MRG_RXBUF. */
    h.num_buffers = (uint16_t)rv.n;
    if (!rx_copy_flat(rxq, &rv, &h, iov, n, total, swap)) {
        if (swap)
            rx_copy_swapped(rxq, &rv, &h, iov, n, len);
        else
            rx_copy(rxq, &rv, &h, iov, n, len);
    }
    stat_pkt(rxq, len);
    stat_gso(rxq, &h);
    rx_push(rxq, &rv, total, rv.n);
    return 0;
}

int net_rx_deliver(struct net_queue *rxq, const struct vhu_virtio_net_hdr_v1 *hdr,
                   const struct iovec *iov, unsigned n, uint32_t len)
{
    return rx_deliver(rxq, hdr, iov, n, len, false);
}

int net_rx_deliver_swapped(struct net_queue *rxq, const struct vhu_virtio_net_hdr_v1 *hdr,
                           const struct iovec *iov, unsigned n, uint32_t len)
{
    if (len < 12) {
        net_stat_drop(rxq, true);
        return -EINVAL;
    }
    return rx_deliver(rxq, hdr, iov, n, len, true);
}

/*
 * The burst paths' receive chain: its first segment, when the chain is writable only and that
 * segment holds need bytes; NULL for anything else (bad chains included: net_rx_reserve() judges
 * those; a chain with no segment has a stale iov[0]).
 */
static inline uint8_t *rx_flat_room(const struct vhu_vq_elem *r, uint64_t need)
{
    if (r->out_num || !r->in_num || r->iov[0].iov_len < need)
        return NULL;
    return r->iov[0].iov_base;
}

/* The burst paths' end: the k chains taken from ahead[pos0] complete with wr[] bytes each, and
 * the k packets (bytes without headers) are counted on rxq. */
static void rx_bulk_done(struct net_queue *rxq, unsigned pos0, const uint32_t *wr, unsigned k,
                         uint64_t bytes)
{
    struct vhu_net_stats *rs = &rxq->nd->stats[rxq->index];

    vhu_vq_push_burst(rxq->vq, rxq->ahead + pos0, wr, k);
    net_stat_add(&rs->packets, k);
    net_stat_add(&rs->bytes, bytes);
}

unsigned net_rx_fill_bulk(struct net_queue *rxq, const void *frame, uint32_t len, unsigned n)
{
    uint8_t hdr[NET_HDR_LEN] = {0};
    uint16_t nb = 1; /* one chain: §5.1.6.4 */
    unsigned k = 0, pos0 = rxq->ahead_pos;
    uint32_t wr[NET_BURST];

    n = VHU_MIN(n, NET_BURST);
    memcpy(hdr + offsetof(struct vhu_virtio_net_hdr_v1, num_buffers), &nb, sizeof(nb));
    for (; k < n && rxq->ahead_pos < rxq->ahead_n; k++) {
        uint8_t *d = rx_flat_room(rxq->ahead[rxq->ahead_pos], (uint64_t)NET_HDR_LEN + len);

        if (!d)
            break;
        hdr_store(d, hdr);
        memcpy(d + NET_HDR_LEN, frame, len);
        rxq->ahead_pos++;
        wr[k] = NET_HDR_LEN + len;
    }
    if (k)
        rx_bulk_done(rxq, pos0, wr, k, (uint64_t)k * len);
    return k;
}

unsigned net_rx_reflect_bulk(struct net_queue *txq, struct net_queue *rxq,
                             struct vhu_vq_elem **b, unsigned n)
{
    unsigned k = 0, pos0 = rxq->ahead_pos;
    uint32_t wr[NET_BURST];
    uint64_t bytes = 0;

    n = VHU_MIN(n, NET_BURST);
    for (; k < n && rxq->ahead_pos < rxq->ahead_n; k++) {
        struct vhu_vq_elem *t = b[k];
        const uint8_t *s = t->iov[0].iov_base, *f;
        uint8_t hdr[NET_HDR_LEN];
        uint16_t nb = 1; /* one chain: §5.1.6.4 */
        struct mac_swap m;
        uint32_t len;
        uint8_t *d;

        /* the frame: §5.1.6.2, header then frame, device-readable only; tx_one's bounds */
        if (t->in_num || t->out_len < NET_HDR_LEN + NET_ETH_HLEN ||
            t->out_len > NET_HDR_LEN + NET_MAX_FRAME)
            break;
        len = (uint32_t)(t->out_len - NET_HDR_LEN);
        if (t->out_num == 1)
            f = s + NET_HDR_LEN;
        else if (t->out_num == 2 && t->iov[0].iov_len == NET_HDR_LEN)
            f = t->iov[1].iov_base;
        else
            break;
        d = rx_flat_room(rxq->ahead[rxq->ahead_pos], (uint64_t)NET_HDR_LEN + len);
        if (!d)
            break;
        /* the header read once; no offload: what reflect_tx() would pass on, num_buffers 1 */
        memcpy(hdr, s, NET_HDR_LEN);
        if (hdr[offsetof(struct vhu_virtio_net_hdr_v1, flags)] ||
            hdr[offsetof(struct vhu_virtio_net_hdr_v1, gso_type)])
            break;
        memcpy(hdr + offsetof(struct vhu_virtio_net_hdr_v1, num_buffers), &nb, sizeof(nb));
        /* rx_copy_flat()'s order: addresses from the source, header, frame, addresses */
        memcpy(&m.a, f, 8);
        memcpy(&m.b, f + 4, 8);
        hdr_store(d, hdr);
        memmove(d + NET_HDR_LEN, f, len); /* guest memory to guest memory: may overlap */
        mac_swap_store(d + NET_HDR_LEN, &m);
        rxq->ahead_pos++;
        wr[k] = NET_HDR_LEN + len;
        bytes += len;
    }
    if (k) {
        struct vhu_net_stats *ts = &txq->nd->stats[txq->index];
        rx_bulk_done(rxq, pos0, wr, k, bytes);
        vhu_vq_push_burst(txq->vq, b, NULL, k);
        net_stat_add(&ts->packets, k);
        net_stat_add(&ts->bytes, bytes);
    }
    return k;
}

/* ------------------------------------------------------------------------------------------ */
/* Transmit                                                                                    */
/* ------------------------------------------------------------------------------------------ */

static void resched(struct net_queue *q)
{
    /* A busy-polled ring is run again while it has work; an eventfd write per budget would be a
     * syscall per 256 packets for nothing. */
    if (vhu_vq_polled(q->vq))
        return;
    vhu_eventfd_signal(q->resched_fd);
}

/* One transmit chain: §5.1.6.2, a header then the frame, all device-readable. */
static enum net_tx_result tx_one(struct net_queue *q, struct vhu_vq_elem *e)
{
    struct net_port *p = q->nd->port;
    struct vhu_virtio_net_hdr_v1 hdr;
    size_t skip = NET_HDR_LEN;
    uint32_t i = 0, len;
    enum net_tx_result res;

    if (e->in_num || e->out_len < NET_HDR_LEN + NET_ETH_HLEN ||
        e->out_len > NET_HDR_LEN + NET_MAX_FRAME) {
        net_stat_drop(q, true);
        return NET_TX_DONE;
    }
    len = (uint32_t)(e->out_len - NET_HDR_LEN);
    /* A sink counts the frame by its length: it reads no line of the buffer (the driver's CPU
     * keeps them all). */
    if (!p->ops->tx) {
        stat_pkt(q, len);
        return NET_TX_DONE;
    }
    /* Copy the header out once: the guest may rewrite its memory meanwhile. */
    vhu_iov_to_buf_head(e->iov, e->out_num, &hdr, sizeof(hdr));
    while (i < e->out_num && e->iov[i].iov_len <= skip)
        skip -= e->iov[i++].iov_len;
    e->iov[i].iov_base = (uint8_t *)e->iov[i].iov_base + skip; /* i < out_num: frame >= 14 */
    e->iov[i].iov_len -= skip;
    res = p->ops->tx(p, q, &hdr, e->iov + i, e->out_num - i, len);
    if (res == NET_TX_DONE) {
        stat_pkt(q, len);
        stat_gso(q, &hdr);
    } else if (res == NET_TX_DROP) {
        net_stat_drop(q, false);
    }
    return res;
}

/*
 * The announce frame for SEND_RARP: a RARP "request reverse" (RFC 903, ethertype 0x8035,
 * opcode 3) from mac to the broadcast address, sender and target hardware address mac, no
 * protocol addresses, padded to the 60-byte minimum.
 */
#define NET_RARP_LEN 60

static void rarp_frame(uint8_t f[NET_RARP_LEN], const uint8_t mac[6])
{
    static const uint8_t head[] = {0x80, 0x35, /* RARP */
                                   0x00, 0x01, /* hardware: Ethernet */
                                   0x08, 0x00, /* protocol: IPv4 */
                                   6, 4,       /* address lengths */
                                   0x00, 0x03}; /* request reverse */

    memset(f, 0, NET_RARP_LEN);
    memset(f, 0xff, 6);
    memcpy(f + 6, mac, 6);
    memcpy(f + 12, head, sizeof(head));
    memcpy(f + 22, mac, 6); /* sender hardware address; sender protocol address 0 */
    memcpy(f + 32, mac, 6); /* target hardware address; target protocol address 0 */
}

/* On transmitq 0's thread: send a pending announce as if the driver had transmitted it (as a
 * switch port sees it: the network learns where the guest is now). */
static void announce_send(struct net_queue *q)
{
    uint64_t v = __atomic_exchange_n(&q->nd->announce, 0, __ATOMIC_ACQ_REL);
    struct net_port *p = q->nd->port;
    static const struct vhu_virtio_net_hdr_v1 hdr;
    uint8_t mac[6], f[NET_RARP_LEN];
    struct iovec iov = {f, sizeof(f)};
    enum net_tx_result res = NET_TX_DONE;

    if (!(v & VHU_BIT(48)))
        return;
    for (unsigned i = 0; i < 6; i++)
        mac[i] = (uint8_t)(v >> (8 * i));
    rarp_frame(f, mac);
    if (p->ops->tx)
        res = p->ops->tx(p, q, &hdr, &iov, 1, sizeof(f));
    if (p->ops->tx_flush)
        p->ops->tx_flush(p, q);
    if (res == NET_TX_DONE)
        stat_pkt(q, sizeof(f));
    else /* dropped, or no room downstream: an announce is not worth holding the queue for */
        net_stat_drop(q, false);
}

static void on_announce(void *opaque)
{
    struct net_queue *q = opaque;

    vhu_eventfd_drain(q->nd->announce_fd);
    announce_send(q);
}

enum run_end { RUN_EMPTY, RUN_BUDGET, RUN_BLOCKED };

static enum run_end tx_run(struct net_queue *q, unsigned *budget)
{
    struct net_port *p = q->nd->port;
    struct vhu_vq *vq = q->vq;
    enum run_end end = RUN_EMPTY;
    unsigned burst = p->ops->tx_burst ? VHU_MIN(p->ops->tx_burst, NET_BURST) : NET_BURST;

    for (;;) {
        struct vhu_vq_elem *b[NET_BURST];
        unsigned n = 0, done = 0;

        /* Pop the burst first and start loading every buffer's first two lines (header and
         * frame start, just written by the driver on another CPU): the misses overlap instead
         * of coming one by one. Not for a sink, which reads neither. */
        n = vhu_vq_pop_burst(vq, b, VHU_MIN(burst, *budget));
        for (unsigned i = 0; i < n && p->ops->tx; i++) {
            if (b[i]->out_num) {
                const uint8_t *f = b[i]->iov[0].iov_base;
                __builtin_prefetch(f);
                __builtin_prefetch(f + 64);
            }
        }
        if (n && p->ops->tx_begin)
            p->ops->tx_begin(p, q, n);
        for (; done < n; done++) {
            if (p->ops->tx_bulk) {
                done += p->ops->tx_bulk(p, q, b + done, n - done);
                if (done == n)
                    break;
            }
            if (tx_one(q, b[done]) == NET_TX_BLOCKED) {
                /* back into the ring, newest first: unpop rewinds in LIFO order only */
                for (unsigned k = n; k-- > done;)
                    vhu_vq_unpop(vq, b[k]);
                end = RUN_BLOCKED;
                break;
            }
            vhu_vq_push(vq, b[done], 0);
        }
        *budget -= done;
        if (p->ops->tx_flush)
            p->ops->tx_flush(p, q);
        vhu_vq_flush(vq);
        if (end == RUN_BLOCKED)
            return end;
        if (!*budget)
            return RUN_BUDGET;
        if (n < burst)
            return RUN_EMPTY;
    }
}

static void tx_process(struct net_queue *q)
{
    struct vhu_vq *vq = q->vq;
    unsigned budget = NET_BUDGET;
    bool retried = false;

    for (;;) {
        unsigned before = budget;
        q->tx_blocked = false;
        vhu_vq_disable_notify(vq);
        switch (tx_run(q, &budget)) {
        case RUN_BUDGET:
            resched(q);
            return;
        case RUN_BLOCKED: {
            /* Backpressure: the frame stays in the ring with kicks off; the receive queue's
             * next kick resumes us. Enable that kick, then look once more ("enable, barrier,
             * re-check"): buffers posted in between would not be kicked for. */
            struct net_queue *rxq = net_queue_get(q->nd, q->index - 1);
            q->tx_blocked = true;
            if (budget != before)
                retried = false;
            if (retried || !rxq || !vhu_vq_enable_notify(rxq->vq))
                return;
            retried = true;
            continue;
        }
        case RUN_EMPTY:
        default:
            break;
        }
        if (vhu_vq_broken(vq) || !vhu_vq_enable_notify(vq))
            return;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Receive                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static void rx_process(struct net_queue *q)
{
    struct net_port *p = q->nd->port;
    struct net_queue *txq = net_queue_get(q->nd, q->index + 1);
    unsigned budget = NET_BUDGET;
    bool enabled = false;

    /* New buffers: a transmit queue of this pair waiting for room goes on. */
    if (txq && txq->tx_blocked)
        tx_process(txq);
    if (!p->ops->rx_kick)
        return; /* buffers wait for the port (reflect: the next transmitted frame) */
    for (;;) {
        if (!enabled)
            vhu_vq_disable_notify(q->vq);
        unsigned done = p->ops->rx_kick(p, q, budget);
        net_rx_flush(q);
        budget -= VHU_MIN(done, budget);
        if (!budget) {
            resched(q);
            return;
        }
        if (vhu_vq_broken(q->vq) || (enabled && !done))
            return;
        if (!vhu_vq_enable_notify(q->vq))
            return;
        /* Buffers are there. If this round used none (a packet needs more chains than are
         * posted), look once more with kicks on, then wait for the next kick. */
        enabled = !done;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Queues                                                                                      */
/* ------------------------------------------------------------------------------------------ */

static void net_queue_notify(struct vhu_device *dev, struct vhu_vq *vq)
{
    struct net_queue *q = vhu_vq_priv(vq);

    (void)dev;
    if (!q)
        return;
    if (q->rx)
        rx_process(q);
    else
        tx_process(q);
}

static void on_resched(void *opaque)
{
    struct net_queue *q = opaque;

    vhu_eventfd_drain(q->resched_fd);
    if (vhu_vq_broken(q->vq))
        return;
    if (q->rx)
        rx_process(q);
    else
        tx_process(q);
}

static void queue_free(struct net_queue *q)
{
    if (q->index == 1)
        vhu_dev_unwatch(q->vq, q->nd->announce_fd);
    if (q->resched_fd >= 0) {
        vhu_dev_unwatch(q->vq, q->resched_fd);
        vhu_fd_close(&q->resched_fd);
    }
    vhu_vq_set_priv(q->vq, NULL);
    free(q);
}

static int net_queue_start(struct vhu_device *dev, struct vhu_vq *vq)
{
    struct net_dev *nd = (struct net_dev *)dev;
    unsigned idx = vhu_vq_index(vq);
    struct net_queue *q;
    int r;

    if (idx >= dev->num_queues)
        return -EINVAL;
    q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->nd = nd;
    q->vq = vq;
    q->index = idx;
    q->rx = idx % 2 == 0;
    q->mrg = vhu_has_feature(dev->acked_features, VHU_VIRTIO_NET_F_MRG_RXBUF);
    q->max_chains = q->mrg ? VHU_MIN(NET_RX_MAX_CHAINS, (unsigned)vhu_vq_num(vq)) : 1;
    q->resched_fd = vhu_eventfd_new();
    if (q->resched_fd < 0) {
        r = q->resched_fd;
        free(q);
        return r;
    }
    r = vhu_dev_watch(vq, q->resched_fd, on_resched, q);
    if (r < 0) {
        vhu_fd_close(&q->resched_fd);
        free(q);
        return r;
    }
    vhu_vq_set_priv(vq, q);
    /* transmitq 0 sends announces (one pending before the start runs as soon as it starts) */
    if (idx == 1 && (r = vhu_dev_watch(vq, nd->announce_fd, on_announce, q)) < 0) {
        queue_free(q);
        return r;
    }
    if (nd->port->ops->queue_start) {
        r = nd->port->ops->queue_start(nd->port, q);
        if (r < 0) {
            vhu_err("net: queue %u: port %s refused it: %s", idx, nd->port->ops->name,
                    strerror(-r));
            queue_free(q);
            return r;
        }
    }
    nd->q[idx] = q;
    return 0;
}

static void net_queue_stop(struct vhu_device *dev, struct vhu_vq *vq)
{
    struct net_dev *nd = (struct net_dev *)dev;
    struct net_queue *q = vhu_vq_priv(vq);

    if (!q)
        return;
    if (nd->port->ops->queue_stop)
        nd->port->ops->queue_stop(nd->port, q);
    nd->q[q->index] = NULL;
    /* A transmit queue waiting for this receive queue now drops instead: wake it. */
    if (q->rx) {
        struct net_queue *txq = net_queue_get(nd, q->index + 1);
        if (txq && txq->tx_blocked)
            resched(txq);
        net_rx_flush(q); /* chains still taken ahead go back, then the used entries go out */
    } else {
        vhu_vq_flush(vq);
    }
    queue_free(q);
}

/* ------------------------------------------------------------------------------------------ */
/* Config space, features, lifecycle                                                           */
/* ------------------------------------------------------------------------------------------ */

static int net_get_config(struct vhu_device *dev, void *buf, uint32_t off, uint32_t len)
{
    const struct net_dev *nd = (const struct net_dev *)dev;
    struct vhu_virtio_net_config c = {
        .status = VHU_VIRTIO_NET_S_LINK_UP,
        .max_virtqueue_pairs = nd->pairs,
        .mtu = nd->mtu,
    };

    memcpy(c.mac, nd->mac, sizeof(c.mac));
    memcpy(buf, (const uint8_t *)&c + off, len);
    return 0;
}

static int net_set_features(struct vhu_device *dev, uint64_t features)
{
    struct net_dev *nd = (struct net_dev *)dev;

    if (nd->port->ops->set_features)
        return nd->port->ops->set_features(nd->port, features);
    return 0;
}

/* SEND_RARP (control thread): transmitq 0's thread sends it, now or when the queue starts. */
static int net_announce(struct vhu_device *dev, const uint8_t mac[6])
{
    struct net_dev *nd = (struct net_dev *)dev;
    uint64_t v = VHU_BIT(48);

    for (unsigned i = 0; i < 6; i++)
        v |= (uint64_t)mac[i] << (8 * i);
    __atomic_store_n(&nd->announce, v, __ATOMIC_RELEASE);
    return vhu_eventfd_signal(nd->announce_fd) < 0 ? -EIO : 0;
}

/* NET_SET_MTU: what the frontend tells the guest; config space reports it from now on. */
static int net_set_mtu(struct vhu_device *dev, uint64_t mtu)
{
    struct net_dev *nd = (struct net_dev *)dev;

    if (mtu < NET_MIN_MTU || mtu > NET_MAX_MTU)
        return -EINVAL;
    nd->mtu = (uint16_t)mtu;
    return 0;
}

static void net_reset(struct vhu_device *dev)
{
    struct net_dev *nd = (struct net_dev *)dev;

    /* Queues are stopped first; counters survive on purpose. */
    nd->mtu = nd->opt_mtu;
    __atomic_store_n(&nd->announce, 0, __ATOMIC_RELAXED);
    vhu_eventfd_drain(nd->announce_fd);
    if (nd->port->ops->set_features)
        nd->port->ops->set_features(nd->port, 0);
}

/*
 * Device state (device.h): the MAC the device chose when none was configured; the guest has read
 * it from config space, so a restarted device keeps it. (vhu's net has no control queue: the
 * guest sets neither a MAC nor a queue-pair count through the device.) Version 1: byte 0
 * version, byte 1 zero, bytes 2-7 the MAC.
 */
#define NET_STATE_VERSION 1
#define NET_STATE_SIZE 8

static int net_state_save(struct vhu_device *dev, void *buf, size_t len)
{
    struct net_dev *nd = (struct net_dev *)dev;
    uint8_t st[NET_STATE_SIZE] = {NET_STATE_VERSION};

    if (len < sizeof(st))
        return -ENOSPC;
    memcpy(st + 2, nd->mac, 6);
    memcpy(buf, st, sizeof(st));
    return (int)sizeof(st);
}

static int net_state_load(struct vhu_device *dev, const void *buf, size_t len)
{
    struct net_dev *nd = (struct net_dev *)dev;
    static const uint8_t zero_mac[6];
    const uint8_t *st = buf;

    if (len != NET_STATE_SIZE || st[0] != NET_STATE_VERSION || st[1] != 0 || (st[2] & 1) ||
        memcmp(st + 2, zero_mac, 6) == 0)
        return -EINVAL;
    if (memcmp(st + 2, nd->mac, 6) == 0)
        return 0;
    /* A configured MAC, or a switch port (its MAC is pinned in the switch), stays as it is. */
    if (!nd->mac_random) {
        vhu_info("net: saved MAC %02x:%02x:%02x:%02x:%02x:%02x not taken: the configured one stays",
                 st[2], st[3], st[4], st[5], st[6], st[7]);
        return 0;
    }
    memcpy(nd->mac, st + 2, 6);
    vhu_info("net: MAC %02x:%02x:%02x:%02x:%02x:%02x (restored)", st[2], st[3], st[4], st[5],
             st[6], st[7]);
    return 0;
}

static void net_destroy(struct vhu_device *dev)
{
    struct net_dev *nd = (struct net_dev *)dev;

    if (nd->port)
        nd->port->ops->destroy(nd->port);
    vhu_fd_close(&nd->announce_fd);
    free(nd->q);
    free(nd->stats);
    free(nd);
}

/* receiveq k and transmitq k share a thread: reflect and the rx backpressure path write one
 * from the other's handler. */
static unsigned net_queue_group(struct vhu_device *dev, unsigned q)
{
    (void)dev;
    return q / 2;
}

static const struct vhu_device_ops net_ops = {
    .queue_group = net_queue_group,
    .set_features = net_set_features,
    .announce = net_announce,
    .set_mtu = net_set_mtu,
    .get_config = net_get_config,
    .queue_start = net_queue_start,
    .queue_stop = net_queue_stop,
    .queue_notify = net_queue_notify,
    .reset = net_reset,
    .destroy = net_destroy,
    .state_save = net_state_save,
    .state_load = net_state_load,
};

VHU_EXPORT int vhu_net_new(const struct vhu_net_opts *opts, struct vhu_device **out)
{
    struct vhu_net_opts o = opts ? *opts : (struct vhu_net_opts){.port = VHU_NET_PORT_SINK};
    static const uint8_t zero_mac[6];
    struct net_dev *nd;
    int r;

    if (!o.mtu)
        o.mtu = NET_DEF_MTU;
    if (!o.queue_pairs)
        o.queue_pairs = 1;
    if (!o.max_queue_size)
        o.max_queue_size = NET_DEF_QUEUE_SIZE;
    if (o.mtu < NET_MIN_MTU || o.mtu > NET_MAX_MTU ||
        o.queue_pairs > VHU_VIRTIO_NET_MAX_QUEUE_PAIRS || o.max_queue_size > VHU_VQ_MAX_SIZE ||
        (o.mac[0] & 1) ||
        (o.port == VHU_NET_PORT_SOURCE &&
         (o.source_size < 60 || o.source_size > (uint32_t)o.mtu + NET_ETH_HLEN))) {
        vhu_err("net: invalid options (mtu 68..65521, queue pairs <= %u, unicast mac,"
                " source size 60..mtu+14)", VHU_VIRTIO_NET_MAX_QUEUE_PAIRS);
        return -EINVAL;
    }
    pthread_once(&prefetchw_once, detect_prefetchw);
    nd = calloc(1, sizeof(*nd));
    if (!nd)
        return -ENOMEM;
    nd->pairs = o.queue_pairs;
    nd->mtu = nd->opt_mtu = o.mtu;
    nd->dev.num_queues = (uint16_t)(2 * o.queue_pairs);
    nd->q = calloc(nd->dev.num_queues, sizeof(*nd->q));
    nd->stats = calloc(nd->dev.num_queues, sizeof(*nd->stats));
    nd->announce_fd = vhu_eventfd_new();
    if (!nd->q || !nd->stats || nd->announce_fd < 0) {
        net_destroy(&nd->dev);
        return -ENOMEM;
    }
    if (memcmp(o.mac, zero_mac, 6) != 0) {
        memcpy(nd->mac, o.mac, 6);
    } else {
        if (getrandom(nd->mac, 6, 0) != 6)
            memcpy(nd->mac, "\x02\x00\x00\x00\x00\x01", 6);
        nd->mac[0] = (uint8_t)((nd->mac[0] & 0xfe) | 0x02); /* unicast, locally administered */
        nd->mac_random = o.port != VHU_NET_PORT_SWITCH; /* a switch pins its port's MAC */
    }
    switch (o.port) {
    case VHU_NET_PORT_REFLECT: r = net_port_reflect_new(nd, &nd->port); break;
    case VHU_NET_PORT_SINK: r = net_port_sink_new(nd, &nd->port); break;
    case VHU_NET_PORT_SOURCE: r = net_port_source_new(nd, o.source_size, &nd->port); break;
    case VHU_NET_PORT_TAP: r = net_port_tap_new(nd, o.tap_name, o.queue_pairs, &nd->port); break;
    case VHU_NET_PORT_SWITCH: r = o.sw ? net_port_switch_new(nd, o.sw, &nd->port) : -EINVAL; break;
    default: r = -EINVAL; break;
    }
    if (r < 0) {
        net_destroy(&nd->dev);
        return r;
    }
    nd->dev = (struct vhu_device){
        .ops = &net_ops,
        .name = "net",
        .virtio_id = VHU_VIRTIO_ID_NET,
        .features = vhu_feature(VHU_VIRTIO_F_VERSION_1) | vhu_feature(VHU_VIRTIO_F_RING_PACKED) |
                    vhu_feature(VHU_VIRTIO_RING_F_INDIRECT_DESC) |
                    vhu_feature(VHU_VIRTIO_RING_F_EVENT_IDX) |
                    vhu_feature(VHU_VIRTIO_F_IN_ORDER) |
                    vhu_feature(VHU_VIRTIO_NET_F_MRG_RXBUF) | vhu_feature(VHU_VIRTIO_NET_F_MQ) |
                    vhu_feature(VHU_VIRTIO_NET_F_MTU) | vhu_feature(VHU_VIRTIO_NET_F_MAC) |
                    vhu_feature(VHU_VIRTIO_NET_F_STATUS) |
                    vhu_feature(VHU_VIRTIO_NET_F_GUEST_ANNOUNCE) | nd->port->ops->features,
        .num_queues = (uint16_t)(2 * o.queue_pairs),
        .queue_num_reply = (uint16_t)o.queue_pairs,
        .max_queue_size = o.max_queue_size,
        .config_size = sizeof(struct vhu_virtio_net_config),
        .elem_size = sizeof(struct vhu_vq_elem),
        .max_segs = NET_MAX_SEGS,
        .state_size = NET_STATE_SIZE,
    };
    *out = &nd->dev;
    return 0;
}

VHU_EXPORT int vhu_net_get_stats(const struct vhu_device *dev, unsigned q,
                                 struct vhu_net_stats *st)
{
    const struct net_dev *nd = (const struct net_dev *)dev;

    if (q >= dev->num_queues)
        return -EINVAL;
    st->packets = __atomic_load_n(&nd->stats[q].packets, __ATOMIC_RELAXED);
    st->bytes = __atomic_load_n(&nd->stats[q].bytes, __ATOMIC_RELAXED);
    st->drops = __atomic_load_n(&nd->stats[q].drops, __ATOMIC_RELAXED);
    st->errors = __atomic_load_n(&nd->stats[q].errors, __ATOMIC_RELAXED);
    st->gso = __atomic_load_n(&nd->stats[q].gso, __ATOMIC_RELAXED);
    return 0;
}

VHU_EXPORT void vhu_net_get_mac(const struct vhu_device *dev, uint8_t mac[6])
{
    memcpy(mac, ((const struct net_dev *)dev)->mac, 6);
}
