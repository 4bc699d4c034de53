/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tap port: the host's network through a Linux tap device with virtio-net headers
 * (IFF_VNET_HDR, header size 12 = struct virtio_net_hdr_v1: the tap's header has the virtio
 * layout, num_buffers included). One tap queue per queue pair (IFF_MULTI_QUEUE when there are
 * several), used only by the thread owning that pair.
 *
 * Offloads: checksum and TSO both ways (CSUM, GUEST_CSUM, HOST_TSO4/6, GUEST_TSO4/6; no ECN, no
 * UFO). The header passes through unchanged in both directions. Transmit: the tap takes
 * whatever the driver may send (partial checksums, GSO frames), checked against what the driver
 * accepted. Receive: the tap is told (TUNSETOFFLOAD) exactly the receive offloads the driver
 * accepted, so the kernel checksums and segments everything else; a header that still asks for
 * more (frames queued before a feature change) is dropped.
 *
 * Transmit: one writev() of the header and the frame straight from guest memory. Receive: the
 * tap fd is watched on the receive queue's thread; each frame (up to a 64 KiB GSO frame) is read
 * into a per-queue buffer and copied once into the guest's buffers (several chains with
 * MRG_RXBUF). When the guest has not posted room for it, the frame waits in the buffer and the
 * tap fd is not watched until the driver's next receive kick: the tap's own queue (and the
 * kernel's drops when it is full) is the backpressure, a GSO frame is never lost for want of a
 * few buffers.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "net_port.h"
#include "vhu/device.h"
#include "vhu/log.h"
#include "vhu/util.h"

#define TAP_MAX_SEGS 128

struct tap_port {
    struct net_port p; /* must be first */
    unsigned pairs;
    int *fds;       /* one per pair */
    uint64_t acked; /* driver features (atomic: set on the control thread, read by queues) */
};

struct tap_rxq {
    struct net_queue *q;
    struct tap_port *t;
    int fd;
    bool watched;     /* the tap fd is in the queue's loop */
    uint32_t pending; /* bytes in buf waiting for receive buffers (0: none) */
    /* one byte more than the largest frame: a read that fills it was too big */
    uint8_t buf[sizeof(struct vhu_virtio_net_hdr_v1) + NET_MAX_FRAME + 1];
};

unsigned net_tap_offloads(uint64_t acked)
{
    unsigned off = 0;

    /* The kernel takes TSO only with CSUM (and the spec makes GUEST_TSO* depend on GUEST_CSUM;
     * a driver that accepts them alone gets neither). */
    if (!vhu_has_feature(acked, VHU_VIRTIO_NET_F_GUEST_CSUM))
        return 0;
    off |= TUN_F_CSUM;
    if (vhu_has_feature(acked, VHU_VIRTIO_NET_F_GUEST_TSO4))
        off |= TUN_F_TSO4;
    if (vhu_has_feature(acked, VHU_VIRTIO_NET_F_GUEST_TSO6))
        off |= TUN_F_TSO6;
    return off;
}

static int tap_open(const char *name, bool multi_queue)
{
    struct ifreq ifr;
    int hdr = (int)sizeof(struct vhu_virtio_net_hdr_v1);
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC), r;

    if (fd < 0)
        return -errno;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (multi_queue ? IFF_MULTI_QUEUE : 0);
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    /* A persistent tap keeps its offloads across opens: none until a driver accepts some. */
    if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 ||
        ioctl(fd, TUNSETOFFLOAD, 0ul) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

static enum net_tx_result tap_tx(struct net_port *p, struct net_queue *txq,
                                 const struct vhu_virtio_net_hdr_v1 *hdr, const struct iovec *iov,
                                 unsigned n, uint32_t len)
{
    struct tap_port *t = (struct tap_port *)p;
    struct iovec v[TAP_MAX_SEGS + 1];
    struct vhu_virtio_net_hdr_v1 h = *hdr;

    (void)len;
    if (n > TAP_MAX_SEGS || !net_hdr_tx_ok(__atomic_load_n(&t->acked, __ATOMIC_RELAXED), hdr))
        return NET_TX_DROP;
    h.flags &= VHU_VIRTIO_NET_HDR_F_NEEDS_CSUM; /* the only transmit flag (§5.1.6.2) */
    h.num_buffers = 0;
    v[0] = (struct iovec){&h, sizeof(h)};
    memcpy(v + 1, iov, n * sizeof(*iov));
    /* A full tap queue (EAGAIN) drops the frame, as a NIC with a full ring would. */
    if (writev(t->fds[txq->index / 2], v, (int)n + 1) < 0)
        return NET_TX_DROP;
    return NET_TX_DONE;
}

/* The header the tap gave us, as the driver may see it; false: drop the frame. */
static bool rx_hdr_fix(uint64_t acked, struct vhu_virtio_net_hdr_v1 *h)
{
    if (!net_hdr_rx_ok(acked, h))
        return false;
    /* §5.1.6.4.1: without GUEST_CSUM the flags are zero (no DATA_VALID either). */
    if (!vhu_has_feature(acked, VHU_VIRTIO_NET_F_GUEST_CSUM))
        h->flags = 0;
    h->flags &= VHU_VIRTIO_NET_HDR_F_NEEDS_CSUM | VHU_VIRTIO_NET_HDR_F_DATA_VALID;
    return true;
}

/* Deliver the frame in buf (header + frame, n bytes). -ENOBUFS: not enough receive buffers
 * posted, the frame stays; -EIO: the ring broke; else done (delivered or dropped and counted). */
static int rx_one(struct tap_rxq *rq, uint64_t acked, uint32_t n)
{
    struct vhu_virtio_net_hdr_v1 *h = (struct vhu_virtio_net_hdr_v1 *)(void *)rq->buf;
    struct iovec v = {rq->buf + sizeof(*h), n - sizeof(*h)};
    int r;

    if (n < sizeof(*h) + NET_ETH_HLEN || n > sizeof(*h) + NET_MAX_FRAME || !rx_hdr_fix(acked, h)) {
        net_stat_drop(rq->q, false);
        return 0;
    }
    r = net_rx_deliver(rq->q, h, &v, 1, (uint32_t)v.iov_len);
    return r == -ENOBUFS || r == -EIO ? r : 0;
}

/* Stop reading the tap until the driver posts buffers (tap_rx_kick), keeping the frame. */
static void rx_block(struct tap_rxq *rq, uint32_t n)
{
    rq->pending = n;
    if (rq->watched) {
        vhu_dev_unwatch(rq->q->vq, rq->fd);
        rq->watched = false;
    }
}

/* Read and deliver up to budget frames; returns how many were taken from the tap. */
static unsigned rx_run(struct tap_rxq *rq, unsigned budget)
{
    uint64_t acked = __atomic_load_n(&rq->t->acked, __ATOMIC_RELAXED);
    unsigned done = 0;

    while (done < budget) {
        ssize_t n = read(rq->fd, rq->buf, sizeof(rq->buf));
        if (n < 0)
            break; /* EAGAIN: drained */
        int r = rx_one(rq, acked, (uint32_t)n);
        if (r == -ENOBUFS) {
            rx_block(rq, (uint32_t)n);
            break;
        }
        if (r == -EIO)
            break;
        if (++done % NET_BURST == 0)
            net_rx_flush(rq->q);
    }
    net_rx_flush(rq->q);
    return done;
}

static void tap_readable(void *opaque)
{
    rx_run(opaque, NET_BUDGET);
}

/* The driver posted receive buffers: a waiting frame goes first, then the tap is read again. */
static unsigned tap_rx_kick(struct net_port *p, struct net_queue *rxq, unsigned budget)
{
    struct tap_rxq *rq = rxq->port_priv;
    uint64_t acked;
    int r;

    (void)p;
    if (!rq || !rq->pending)
        return 0;
    acked = __atomic_load_n(&rq->t->acked, __ATOMIC_RELAXED);
    r = rx_one(rq, acked, rq->pending);
    if (r == -ENOBUFS)
        return 0; /* still not enough: wait for the next kick */
    rq->pending = 0;
    if (r == 0 && vhu_dev_watch(rxq->vq, rq->fd, tap_readable, rq) == 0)
        rq->watched = true;
    return 1 + (budget > 1 && rq->watched ? rx_run(rq, budget - 1) : 0);
}

static int tap_queue_start(struct net_port *p, struct net_queue *q)
{
    struct tap_port *t = (struct tap_port *)p;
    struct tap_rxq *rq;
    int r;

    if (!q->rx)
        return 0;
    rq = calloc(1, sizeof(*rq));
    if (!rq)
        return -ENOMEM;
    rq->q = q;
    rq->t = t;
    rq->fd = t->fds[q->index / 2];
    r = vhu_dev_watch(q->vq, rq->fd, tap_readable, rq);
    if (r < 0) {
        free(rq);
        return r;
    }
    rq->watched = true;
    q->port_priv = rq;
    return 0;
}

static void tap_queue_stop(struct net_port *p, struct net_queue *q)
{
    struct tap_rxq *rq = q->port_priv;

    (void)p;
    if (!q->rx || !rq)
        return;
    if (rq->watched)
        vhu_dev_unwatch(q->vq, rq->fd);
    free(rq); /* a frame waiting for buffers is lost with the ring */
    q->port_priv = NULL;
}

static void tap_free(struct net_port *p)
{
    struct tap_port *t = (struct tap_port *)p;

    for (unsigned i = 0; i < t->pairs; i++)
        vhu_fd_close(&t->fds[i]);
    free(t->fds);
    free(t);
}

/* SET_FEATURES (0 on reset): the tap may hand us exactly the receive offloads accepted. */
static int tap_set_features(struct net_port *p, uint64_t acked)
{
    struct tap_port *t = (struct tap_port *)p;
    unsigned long off = net_tap_offloads(acked);

    __atomic_store_n(&t->acked, acked, __ATOMIC_RELAXED);
    for (unsigned i = 0; i < t->pairs; i++) {
        if (ioctl(t->fds[i], TUNSETOFFLOAD, off) < 0) {
            int r = -errno;
            vhu_err("net: tap: TUNSETOFFLOAD 0x%lx: %s", off, strerror(-r));
            return r;
        }
    }
    return 0;
}

static const struct net_port_ops tap_ops = {
    .name = "tap",
    .features = VHU_BIT(VHU_VIRTIO_NET_F_CSUM) | VHU_BIT(VHU_VIRTIO_NET_F_GUEST_CSUM) |
                VHU_BIT(VHU_VIRTIO_NET_F_HOST_TSO4) | VHU_BIT(VHU_VIRTIO_NET_F_HOST_TSO6) |
                VHU_BIT(VHU_VIRTIO_NET_F_GUEST_TSO4) | VHU_BIT(VHU_VIRTIO_NET_F_GUEST_TSO6),
    .queue_start = tap_queue_start,
    .queue_stop = tap_queue_stop,
    .tx = tap_tx,
    .rx_kick = tap_rx_kick,
    .destroy = tap_free,
    .set_features = tap_set_features,
};

int net_port_tap_new(struct net_dev *nd, const char *name, unsigned pairs, struct net_port **out)
{
    struct tap_port *t = calloc(1, sizeof(*t));

    if (!t)
        return -ENOMEM;
    t->p.ops = &tap_ops;
    t->p.nd = nd;
    t->fds = malloc(pairs * sizeof(*t->fds));
    if (!t->fds || !name || strlen(name) >= IFNAMSIZ) {
        free(t->fds);
        free(t);
        return -EINVAL;
    }
    for (unsigned i = 0; i < pairs; i++) {
        int fd = tap_open(name, pairs > 1);
        if (fd < 0) {
            vhu_err("net: tap %s: %s", name, strerror(-fd));
            t->pairs = i;
            tap_free(&t->p);
            return fd;
        }
        t->fds[i] = fd;
    }
    t->pairs = pairs;
    *out = &t->p;
    return 0;
}
