/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_NET_PORT_H
#define VHU_NET_PORT_H

/*
 * virtio-net internals: the "port" interface (where packets go) and the services the device
 * (net.c) gives ports. The device owns the rings: it parses transmit chains and hands each
 * frame to the port as iovecs straight in guest memory; a port delivers frames to a receive
 * queue through net_rx_deliver() (one copy) or, for ports that fill guest buffers themselves
 * (a tap's readv), net_rx_reserve() + net_rx_commit().
 *
 * Threads: every port callback runs on the thread owning the queue it is given. A port that
 * writes a receive queue from a transmit callback (reflect) needs both queues of the pair on one
 * thread. Ports with their own fd (tap) watch it with vhu_dev_watch() on the receive queue in
 * rx_start and unwatch it in rx_stop; a switch joins devices whose queues live on different
 * threads, so it hands frames across through its own per-port queues, not through these calls.
 */
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vhu/dev/net.h"
#include "vhu/virtio.h"
#include "vhu/vq.h"

#define NET_HDR_LEN ((uint32_t)sizeof(struct vhu_virtio_net_hdr_v1))
#define NET_BURST 32           /* chains popped between two flushes */
#define NET_BUDGET 256         /* packets per queue per notify call; the rest is rescheduled */
#define NET_RX_MAX_CHAINS 256  /* receive chains one packet may use (mergeable) */
#define NET_MAX_FRAME 65550u   /* largest Ethernet frame we take (GSO: 64 KiB + headers) */
#define NET_ETH_HLEN 14

struct net_dev;
struct net_port;

/* One started queue (receive or transmit), owned by the queue's thread. */
struct net_queue {
    struct net_dev *nd;
    struct vhu_vq *vq;
    unsigned index;
    bool rx;
    bool mrg;            /* MRG_RXBUF negotiated (rx) */
    unsigned max_chains; /* rx: chains one packet may take (1 without MRG_RXBUF) */
    bool tx_blocked;     /* tx: a frame waits for room in the pair's receive queue */
    int resched_fd;      /* eventfd: the budget ran out, come back after the others */
    void *port_priv;     /* the port's per-queue state */
    struct vhu_vq_elem *resv[NET_RX_MAX_CHAINS];
    /* rx: chains popped ahead for a burst (net_rx_prefetch), taken in order by the packets of
     * the burst; ahead[ahead_pos..ahead_n) are still unused, given back by net_rx_flush. */
    struct vhu_vq_elem *ahead[NET_BURST];
    unsigned ahead_pos, ahead_n;
};

/* What a port answers for one transmitted frame. */
enum net_tx_result {
    NET_TX_DONE,    /* consumed (sent, reflected, counted) */
    NET_TX_DROP,    /* dropped; counted as a tx drop */
    NET_TX_BLOCKED, /* no room downstream now: keep the chain in the ring, retry on rx kick */
};

struct net_port_ops {
    const char *name;
    /* Transmit frames popped and handled between two flushes (0: NET_BURST). A port that hands
     * every frame back to the driver at once (reflect) flushes smaller bursts, so the driver
     * works on one part while the device works on the next. */
    unsigned tx_burst;
    /* Offload features the port can carry (CSUM, GUEST_CSUM, HOST/GUEST_TSO*). */
    uint64_t features;
    /* Optional: per-queue setup / teardown, on the queue's thread. */
    int (*queue_start)(struct net_port *p, struct net_queue *q);
    void (*queue_stop)(struct net_port *p, struct net_queue *q);
    /* One frame from transmit queue txq: hdr copied out of guest memory, frame = len bytes in
     * n iovecs of guest memory (valid until the chain is pushed, after this call). NULL: the
     * device drops every frame (counted as tx packets, not drops: a sink). */
    enum net_tx_result (*tx)(struct net_port *p, struct net_queue *txq,
                             const struct vhu_virtio_net_hdr_v1 *hdr, const struct iovec *iov,
                             unsigned n, uint32_t len);
    /* Optional: a transmit burst of n frames starts (tx() follows for each); a port that
     * delivers them to a receive queue takes its buffers ahead here (net_rx_prefetch). */
    void (*tx_begin)(struct net_port *p, struct net_queue *txq, unsigned n);
    /* Optional: the frames at the front of a popped burst b[0..n) that the port takes on a
     * short path, each completed (pushed) here; stops at the first it leaves to tx(), which
     * the device then hands to tx() before offering the rest here again. Returns how many it
     * took (0..n). Between tx_begin and tx_flush, like tx(). */
    unsigned (*tx_bulk)(struct net_port *p, struct net_queue *txq, struct vhu_vq_elem **b,
                        unsigned n);
    /* End of a transmit burst: flush what tx() staged elsewhere (reflect: the receive ring). */
    void (*tx_flush)(struct net_port *p, struct net_queue *txq);
    /* The driver posted receive buffers on rxq (its kick, or a rescheduled run). Returns the
     * packets delivered, at most budget (== budget: the device reschedules the rest). */
    unsigned (*rx_kick)(struct net_port *p, struct net_queue *rxq, unsigned budget);
    void (*destroy)(struct net_port *p);
    /* Optional: the driver accepted these features (SET_FEATURES; 0 on reset). Control thread,
     * while queues may run. tap: the offloads the tap may hand us (TUNSETOFFLOAD). */
    int (*set_features)(struct net_port *p, uint64_t acked);
};

struct net_port {
    const struct net_port_ops *ops;
    struct net_dev *nd;
};

int net_port_reflect_new(struct net_dev *nd, struct net_port **out);
int net_port_sink_new(struct net_dev *nd, struct net_port **out);
int net_port_source_new(struct net_dev *nd, uint32_t size, struct net_port **out);
int net_port_tap_new(struct net_dev *nd, const char *name, unsigned pairs, struct net_port **out);
int net_port_switch_new(struct net_dev *nd, struct vhu_net_switch *sw, struct net_port **out);
/* Test hook (tests/unit/test_net_switch.c): seconds added to the switch's clock; 0 otherwise. */
extern int64_t net_switch_test_clock_offset;

/* tap: the TUNSETOFFLOAD flags (TUN_F_*) for the receive offloads the driver accepted. */
unsigned net_tap_offloads(uint64_t acked);

/*
 * Offload rules for headers, per packet. A received packet's header may carry only what the
 * driver accepted (§5.1.6.4: NEEDS_CSUM needs GUEST_CSUM, GSO needs GUEST_TSO4/6/UFO, the ECN
 * bit GUEST_ECN). A transmitted one only what the driver accepted of the device's offer
 * (§5.1.6.2: CSUM, HOST_TSO4/6/UFO, HOST_ECN). vhu offers no ECN and no UFO.
 */
static inline bool net_hdr_ok(uint64_t acked, const struct vhu_virtio_net_hdr_v1 *h, bool rx)
{
    unsigned csum = rx ? VHU_VIRTIO_NET_F_GUEST_CSUM : VHU_VIRTIO_NET_F_CSUM;
    unsigned ecn = rx ? VHU_VIRTIO_NET_F_GUEST_ECN : VHU_VIRTIO_NET_F_HOST_ECN;
    unsigned tso4 = rx ? VHU_VIRTIO_NET_F_GUEST_TSO4 : VHU_VIRTIO_NET_F_HOST_TSO4;
    unsigned tso6 = rx ? VHU_VIRTIO_NET_F_GUEST_TSO6 : VHU_VIRTIO_NET_F_HOST_TSO6;
    unsigned ufo = rx ? VHU_VIRTIO_NET_F_GUEST_UFO : VHU_VIRTIO_NET_F_HOST_UFO;

    if ((h->flags & VHU_VIRTIO_NET_HDR_F_NEEDS_CSUM) && !vhu_has_feature(acked, csum))
        return false;
    if ((h->gso_type & VHU_VIRTIO_NET_HDR_GSO_ECN) && !vhu_has_feature(acked, ecn))
        return false;
    switch (h->gso_type & (uint8_t)~VHU_VIRTIO_NET_HDR_GSO_ECN) {
    case VHU_VIRTIO_NET_HDR_GSO_NONE: return true;
    case VHU_VIRTIO_NET_HDR_GSO_TCPV4: return vhu_has_feature(acked, tso4);
    case VHU_VIRTIO_NET_HDR_GSO_TCPV6: return vhu_has_feature(acked, tso6);
    case VHU_VIRTIO_NET_HDR_GSO_UDP: return vhu_has_feature(acked, ufo);
    default: return false;
    }
}

static inline bool net_hdr_rx_ok(uint64_t acked, const struct vhu_virtio_net_hdr_v1 *h)
{
    return net_hdr_ok(acked, h, true);
}

static inline bool net_hdr_tx_ok(uint64_t acked, const struct vhu_virtio_net_hdr_v1 *h)
{
    return net_hdr_ok(acked, h, false);
}

/* ---- services of net.c to ports --------------------------------------------------------- */

/* The queue object of queue index i when it is started, else NULL (owner thread only). */
struct net_queue *net_queue_get(struct net_dev *nd, unsigned i);
uint64_t net_acked_features(const struct net_dev *nd);
unsigned net_pairs(const struct net_dev *nd);
const uint8_t *net_mac(const struct net_dev *nd);

/* Receive chains held for one packet. */
struct net_rx_resv {
    unsigned n;
    unsigned ahead; /* the first `ahead` of the n came from the queue's ahead chains */
    uint64_t cap;   /* writable bytes in the chains */
};

/*
 * A burst of about n packets is coming to rxq: pop up to n receive chains (at most NET_BURST)
 * now, so their ring and descriptor reads overlap instead of coming one packet at a time; the
 * packets then take them in order. Every port that calls it ends the burst with
 * net_rx_flush(), on the same call, which gives the chains not used back to the ring.
 */
void net_rx_prefetch(struct net_queue *rxq, unsigned n);
/* End of a receive burst: unused chains taken ahead go back to the ring, used entries are
 * published (and the driver notified as it asked). */
void net_rx_flush(struct net_queue *rxq);

/*
 * Take receive chains with room for need bytes (virtio header included): one chain unless
 * MRG_RXBUF. -ENOBUFS: not enough buffers posted (nothing taken); -EMSGSIZE: the packet can
 * never fit (non-mergeable chain too small, more than NET_RX_MAX_CHAINS; nothing taken, chains
 * left in the ring); -EIO: the ring broke (a chain with readable descriptors, §5.1.6.3.1).
 */
int net_rx_reserve(struct net_queue *rxq, uint64_t need, struct net_rx_resv *rv);
/* The first written bytes of the reserved chains are a packet of len bytes (header
 * included; the header's num_buffers is set here): push the chains used, return the others. */
void net_rx_commit(struct net_queue *rxq, struct net_rx_resv *rv, uint64_t len);
/* Give every reserved chain back. */
void net_rx_cancel(struct net_queue *rxq, struct net_rx_resv *rv);
/*
 * Copy one frame (hdr + len bytes in n iovecs) into rxq's buffers and push them (no flush).
 * Counts delivery (packets/bytes) and -EMSGSIZE / -EIO drops on rxq; -ENOBUFS is left to the
 * caller (wait or drop).
 */
int net_rx_deliver(struct net_queue *rxq, const struct vhu_virtio_net_hdr_v1 *hdr,
                   const struct iovec *iov, unsigned n, uint32_t len);
/* The same with the frame's destination and source addresses exchanged (reflect); -EINVAL (a
 * drop, counted) for a frame shorter than the two addresses. */
int net_rx_deliver_swapped(struct net_queue *rxq, const struct vhu_virtio_net_hdr_v1 *hdr,
                           const struct iovec *iov, unsigned n, uint32_t len);
/*
 * source's short path: copies of one frame of len bytes (device memory, no offload header) into
 * up to n of rxq's chains taken ahead (net_rx_prefetch), each into a chain whose first writable
 * segment holds it; pushed and counted. Stops at the first chain that is anything else (left to
 * net_rx_deliver()). Returns how many it filled.
 */
unsigned net_rx_fill_bulk(struct net_queue *rxq, const void *frame, uint32_t len, unsigned n);
/*
 * reflect's short path: the transmit chains at the front of b[0..n) that are a plain frame (no
 * offload in the header; header and frame in one descriptor, or a 12-byte header descriptor and
 * the frame in the next) go to rxq's chains taken ahead (net_rx_prefetch), each into one
 * writable descriptor that holds it, addresses exchanged; both chains are pushed and the
 * packets counted on both queues. Stops at the first frame or receive chain that is anything
 * else (left to net_rx_deliver_swapped()). Returns how many it forwarded.
 */
unsigned net_rx_reflect_bulk(struct net_queue *txq, struct net_queue *rxq,
                             struct vhu_vq_elem **b, unsigned n);
/* Counters, owner thread only. */
void net_stat_drop(struct net_queue *q, bool error);

/* A counter with one writer (its thread) and readers elsewhere: a relaxed load and store, no
 * locked instruction. */
static inline void net_stat_add(uint64_t *c, uint64_t v)
{
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

#endif
