/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tap port: the host's network through a Linux tap device with virtio-net headers
 * (IFF_VNET_HDR, header size 12 = struct virtio_net_hdr_v1). One tap queue per queue pair
 * (IFF_MULTI_QUEUE when there are several), used only by the thread owning that pair.
 *
 * Transmit: one writev() of the header and the frame straight from guest memory. Receive: the
 * tap fd is watched on the receive queue's thread; each frame is read into a per-queue buffer
 * and copied once into the guest's buffers. No offloads are offered yet: the tap is not asked
 * for any (TUNSETOFFLOAD), so it hands us complete, checksummed frames.
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
    int *fds; /* one per pair */
};

struct tap_rxq {
    struct net_queue *q;
    int fd;
    uint8_t buf[sizeof(struct virtio_net_hdr_v1) + NET_MAX_FRAME];
};

static int tap_open(const char *name, bool multi_queue)
{
    struct ifreq ifr;
    int hdr = (int)sizeof(struct virtio_net_hdr_v1);
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC), r;

    if (fd < 0)
        return -errno;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (multi_queue ? IFF_MULTI_QUEUE : 0);
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

static enum net_tx_result tap_tx(struct net_port *p, struct net_queue *txq,
                                 const struct virtio_net_hdr_v1 *hdr, const struct iovec *iov,
                                 unsigned n, uint32_t len)
{
    struct tap_port *t = (struct tap_port *)p;
    struct iovec v[TAP_MAX_SEGS + 1];
    struct virtio_net_hdr_v1 h = *hdr;

    (void)len;
    if (n > TAP_MAX_SEGS)
        return NET_TX_DROP;
    h.num_buffers = 0;
    v[0] = (struct iovec){&h, sizeof(h)};
    memcpy(v + 1, iov, n * sizeof(*iov));
    /* A full tap queue (EAGAIN) drops the frame, as a NIC with a full ring would. */
    if (writev(t->fds[txq->index / 2], v, (int)n + 1) < 0)
        return NET_TX_DROP;
    return NET_TX_DONE;
}

static void tap_readable(void *opaque)
{
    struct tap_rxq *rq = opaque;
    unsigned done = 0;

    while (done < NET_BUDGET) {
        ssize_t n = read(rq->fd, rq->buf, sizeof(rq->buf));
        if (n < 0)
            break; /* EAGAIN: drained */
        if ((size_t)n <= sizeof(struct virtio_net_hdr_v1) + NET_ETH_HLEN)
            continue;
        struct virtio_net_hdr_v1 *h = (struct virtio_net_hdr_v1 *)(void *)rq->buf;
        /* No offloads were negotiated with the tap or the guest (§5.1.6.4.1: DATA_VALID needs
         * GUEST_CSUM): deliver a plain header. */
        memset(h, 0, sizeof(*h));
        struct iovec v = {rq->buf + sizeof(*h), (size_t)n - sizeof(*h)};
        int r = net_rx_deliver(rq->q, h, &v, 1, (uint32_t)v.iov_len);
        if (r == -ENOBUFS)
            net_stat_drop(rq->q, false); /* the guest posted no buffers: the frame is lost */
        else if (r == -EIO)
            break;
        if (++done % NET_BURST == 0)
            vhu_vq_flush(rq->q->vq);
    }
    vhu_vq_flush(rq->q->vq);
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
    rq->fd = t->fds[q->index / 2];
    r = vhu_dev_watch(q->vq, rq->fd, tap_readable, rq);
    if (r < 0) {
        free(rq);
        return r;
    }
    q->port_priv = rq;
    return 0;
}

static void tap_queue_stop(struct net_port *p, struct net_queue *q)
{
    struct tap_rxq *rq = q->port_priv;

    (void)p;
    if (!q->rx || !rq)
        return;
    vhu_dev_unwatch(q->vq, rq->fd);
    free(rq);
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

static const struct net_port_ops tap_ops = {
    .name = "tap",
    .queue_start = tap_queue_start,
    .queue_stop = tap_queue_stop,
    .tx = tap_tx,
    .destroy = tap_free,
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
