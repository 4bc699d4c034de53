/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * virtio-net ports that need nothing outside the process: reflect, sink, source.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "net_port.h"
#include "vhu/util.h"
#include "vhu/virtio.h"

/* ------------------------------------------------------------------------------------------ */
/* reflect: transmitq k -> receiveq k, MACs swapped                                            */
/* ------------------------------------------------------------------------------------------ */

/*
 * The offloads of a transmitted frame reach the receiver as they are (both sides are virtio:
 * a partial checksum or a GSO frame is valid on receive, §5.1.6.4), but only if the driver
 * accepted them on receive (net_hdr_rx_ok); otherwise the frame is dropped (vhu does not
 * checksum or segment).
 */
static enum net_tx_result reflect_tx(struct net_port *p, struct net_queue *txq,
                                     const struct vhu_virtio_net_hdr_v1 *hdr,
                                     const struct iovec *iov, unsigned n, uint32_t len)
{
    struct net_queue *rxq = net_queue_get(p->nd, txq->index - 1);
    struct vhu_virtio_net_hdr_v1 h = {
        .flags = hdr->flags & VHU_VIRTIO_NET_HDR_F_NEEDS_CSUM,
        .gso_type = hdr->gso_type,
        .hdr_len = hdr->hdr_len,
        .gso_size = hdr->gso_size,
        .csum_start = hdr->csum_start,
        .csum_offset = hdr->csum_offset,
    };
    int r;

    if (!rxq || !net_hdr_rx_ok(net_acked_features(p->nd), hdr))
        return NET_TX_DROP;
    r = net_rx_deliver_swapped(rxq, &h, iov, n, len); /* len >= 14: net.c checked */
    if (r == -ENOBUFS)
        return NET_TX_BLOCKED;
    return NET_TX_DONE; /* delivered, or dropped and counted on the receive queue */
}

/* The burst's frames go to the pair's receive queue: take its buffers for all of them now. */
static void reflect_tx_begin(struct net_port *p, struct net_queue *txq, unsigned n)
{
    struct net_queue *rxq = net_queue_get(p->nd, txq->index - 1);

    if (rxq)
        net_rx_prefetch(rxq, n);
}

static unsigned reflect_tx_bulk(struct net_port *p, struct net_queue *txq,
                                struct vhu_vq_elem **b, unsigned n)
{
    struct net_queue *rxq = net_queue_get(p->nd, txq->index - 1);

    return rxq ? net_rx_reflect_bulk(txq, rxq, b, n) : 0;
}

static void reflect_tx_flush(struct net_port *p, struct net_queue *txq)
{
    struct net_queue *rxq = net_queue_get(p->nd, txq->index - 1);

    if (rxq)
        net_rx_flush(rxq);
}

static void port_free(struct net_port *p)
{
    free(p);
}

/* Frames come back to the driver that sent them: testpmd io against reflect, 64 B, ran 3.6-4.6
 * Mpps flushing every 16 frames against 1.3-3.6 every 32 (docs/performance.md): the driver
 * takes the first half while the device copies the second. */
#define REFLECT_TX_BURST 16

static const struct net_port_ops reflect_ops = {
    .name = "reflect",
    .tx_burst = REFLECT_TX_BURST,
    .features = VHU_BIT(VHU_VIRTIO_NET_F_CSUM) | VHU_BIT(VHU_VIRTIO_NET_F_GUEST_CSUM) |
                VHU_BIT(VHU_VIRTIO_NET_F_HOST_TSO4) | VHU_BIT(VHU_VIRTIO_NET_F_HOST_TSO6) |
                VHU_BIT(VHU_VIRTIO_NET_F_GUEST_TSO4) | VHU_BIT(VHU_VIRTIO_NET_F_GUEST_TSO6),
    .tx = reflect_tx,
    .tx_begin = reflect_tx_begin,
    .tx_bulk = reflect_tx_bulk,
    .tx_flush = reflect_tx_flush,
    .destroy = port_free,
};

static int port_new(struct net_dev *nd, const struct net_port_ops *ops, size_t size,
                    struct net_port **out)
{
    struct net_port *p = calloc(1, size);

    if (!p)
        return -ENOMEM;
    p->ops = ops;
    p->nd = nd;
    *out = p;
    return 0;
}

int net_port_reflect_new(struct net_dev *nd, struct net_port **out)
{
    return port_new(nd, &reflect_ops, sizeof(struct net_port), out);
}

/* ------------------------------------------------------------------------------------------ */
/* sink: the device counts transmitted frames and completes them (tx == NULL)                   */
/* ------------------------------------------------------------------------------------------ */

static const struct net_port_ops sink_ops = {
    .name = "sink",
    .destroy = port_free,
};

int net_port_sink_new(struct net_dev *nd, struct net_port **out)
{
    return port_new(nd, &sink_ops, sizeof(struct net_port), out);
}

/* ------------------------------------------------------------------------------------------ */
/* source: every posted receive buffer gets a frame                                            */
/* ------------------------------------------------------------------------------------------ */

#define SOURCE_ETHERTYPE 0x88b5 /* IEEE 802 local experimental */

struct source_port {
    struct net_port p; /* must be first */
    uint32_t size;
    uint8_t *frame;
};

/* Driven by receive kicks: fill buffers until none is left or the budget is used, a burst of
 * chains taken at a time. */
static unsigned source_rx_kick(struct net_port *p, struct net_queue *rxq, unsigned budget)
{
    struct source_port *s = (struct source_port *)p;
    static const struct vhu_virtio_net_hdr_v1 h;
    struct iovec v = {s->frame, s->size};
    unsigned done = 0;

    while (done < budget) {
        unsigned n = VHU_MIN(budget - done, NET_BURST), k = 0;

        net_rx_prefetch(rxq, n);
        while (k < n) {
            k += net_rx_fill_bulk(rxq, s->frame, s->size, n - k);
            if (k == n || net_rx_deliver(rxq, &h, &v, 1, s->size) != 0)
                break;
            k++;
        }
        net_rx_flush(rxq);
        done += k;
        if (k < n)
            break; /* no buffers, a chain too small (dropped once per kick), or broken */
    }
    return done;
}

static void source_free(struct net_port *p)
{
    free(((struct source_port *)p)->frame);
    free(p);
}

static const struct net_port_ops source_ops = {
    .name = "source",
    .rx_kick = source_rx_kick,
    .destroy = source_free,
};

int net_port_source_new(struct net_dev *nd, uint32_t size, struct net_port **out)
{
    struct net_port *p;
    struct source_port *s;
    int r = port_new(nd, &source_ops, sizeof(struct source_port), &p);

    if (r < 0)
        return r;
    s = (struct source_port *)p;
    s->size = size;
    s->frame = malloc(size);
    if (!s->frame) {
        free(s);
        return -ENOMEM;
    }
    /* To the device's own address (the driver accepts it without promiscuous mode), from a
     * locally administered one, then a counting pattern. */
    memcpy(s->frame, net_mac(nd), 6);
    memcpy(s->frame + 6, "\x02\x00\x00\x00\x00\x02", 6);
    s->frame[12] = SOURCE_ETHERTYPE >> 8;
    s->frame[13] = SOURCE_ETHERTYPE & 0xff;
    for (uint32_t i = NET_ETH_HLEN; i < size; i++)
        s->frame[i] = (uint8_t)i;
    *out = p;
    return 0;
}
