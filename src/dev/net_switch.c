/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * switch: a built-in L2 learning switch joining several virtio-net devices (VM to VM).
 *
 * A frame transmitted by one guest is copied once, from its transmit buffers (guest memory)
 * into the receive buffers of the guest it is for (net_rx_deliver): no intermediate packet
 * buffer, no allocation, no lock. The switch learns which port each source address lives
 * behind; broadcast, multicast and unknown unicast go to every other port (one copy each).
 *
 * Threads: every device of a switch runs on one thread (checked when a queue starts), so the
 * address table, the port list and the receive queues of other devices are touched without
 * locks. vhud runs the switch on its control thread.
 *
 * Full receivers: the frame is dropped for that receiver and counted. Holding the sender back
 * instead (as reflect does) would let one guest that never posts buffers stall everybody's
 * traffic; a switch drops, and TCP recovers.
 *
 * Headers: the switch offers no offloads, so the drivers send plain frames; whatever header a
 * sender writes, the receiver gets a clean one (flags, GSO fields zero).
 *
 * Address table: open addressing (linear probing) of VHU_SW_FDB_SIZE slots, filled to 3/4 at
 * most; when a guest floods it with made-up source addresses it is emptied and relearnt
 * (counted in fdb_flushes). Entries never age out; a station that moves is relearnt from its
 * next frame.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "net_port.h"
#include "vhu/log.h"
#include "vhu/util.h"

#define SW_FDB_SIZE 4096 /* power of two */
#define SW_FDB_MAX (SW_FDB_SIZE / 4 * 3)
#define SW_NO_PORT 0xffu

struct sw_fdb_entry {
    uint64_t mac;  /* 48-bit address; 0 = free slot (00:00:00:00:00:00 is never learnt) */
    uint8_t port;
};

struct sw_port;

struct vhu_net_switch {
    struct sw_port *ports[VHU_NET_SWITCH_MAX_PORTS];
    unsigned nports;
    bool have_owner;
    pthread_t owner;                       /* the thread running every queue */
    struct net_queue *dirty;               /* receive queues written in the current burst */
    unsigned fdb_used;
    struct vhu_net_switch_stats stats;     /* single writer: the owner thread */
    struct sw_fdb_entry fdb[SW_FDB_SIZE];
};

struct sw_port {
    struct net_port p; /* must be first */
    struct vhu_net_switch *sw;
    uint8_t id;
};

/* Per receive queue: its place in the switch's list of queues to flush. */
struct sw_rxq {
    struct net_queue *next_dirty;
    bool dirty;
};

static inline uint64_t mac_load(const uint8_t *m)
{
    return (uint64_t)m[0] | (uint64_t)m[1] << 8 | (uint64_t)m[2] << 16 | (uint64_t)m[3] << 24 |
           (uint64_t)m[4] << 32 | (uint64_t)m[5] << 40;
}

static inline unsigned fdb_hash(uint64_t mac)
{
    return (unsigned)((mac * 0x9e3779b97f4a7c15ULL) >> 52) & (SW_FDB_SIZE - 1);
}

static struct sw_fdb_entry *fdb_slot(struct vhu_net_switch *sw, uint64_t mac)
{
    unsigned i = fdb_hash(mac);

    while (sw->fdb[i].mac && sw->fdb[i].mac != mac)
        i = (i + 1) & (SW_FDB_SIZE - 1);
    return &sw->fdb[i]; /* the entry, or the free slot where it would go */
}

static unsigned fdb_lookup(struct vhu_net_switch *sw, uint64_t mac)
{
    const struct sw_fdb_entry *e = fdb_slot(sw, mac);

    return e->mac ? e->port : SW_NO_PORT;
}

static void fdb_learn(struct vhu_net_switch *sw, uint64_t mac, uint8_t port)
{
    struct sw_fdb_entry *e = fdb_slot(sw, mac);

    if (e->mac) {
        if (e->port != port) { /* the station moved */
            e->port = port;
            net_stat_add(&sw->stats.learned, 1);
        }
        return;
    }
    if (sw->fdb_used >= SW_FDB_MAX) {
        memset(sw->fdb, 0, sizeof(sw->fdb));
        sw->fdb_used = 0;
        net_stat_add(&sw->stats.fdb_flushes, 1);
        e = fdb_slot(sw, mac);
    }
    e->mac = mac;
    e->port = port;
    sw->fdb_used++;
    net_stat_add(&sw->stats.learned, 1);
}

/* Drop every entry of one port (it left): rebuild the table from the others. */
static void fdb_forget_port(struct vhu_net_switch *sw, uint8_t port)
{
    struct sw_fdb_entry *old = malloc(sizeof(sw->fdb));
    unsigned i;

    if (!old) { /* no memory: forget everything, flooding relearns */
        memset(sw->fdb, 0, sizeof(sw->fdb));
        sw->fdb_used = 0;
        return;
    }
    memcpy(old, sw->fdb, sizeof(sw->fdb));
    memset(sw->fdb, 0, sizeof(sw->fdb));
    sw->fdb_used = 0;
    for (i = 0; i < SW_FDB_SIZE; i++) {
        if (old[i].mac && old[i].port != port) {
            *fdb_slot(sw, old[i].mac) = old[i];
            sw->fdb_used++;
        }
    }
    free(old);
}

/* The receive queue of port d for a frame from transmit queue txq: the same pair number when
 * d has it running (a flow keeps its order), else pair 0. */
static struct net_queue *dest_rxq(const struct sw_port *d, const struct net_queue *txq)
{
    struct net_dev *nd = d->p.nd;
    unsigned pair = (txq->index / 2) % net_pairs(nd);
    struct net_queue *q = net_queue_get(nd, 2 * pair);

    return q ? q : net_queue_get(nd, 0);
}

static void deliver(struct vhu_net_switch *sw, const struct sw_port *d,
                    const struct net_queue *txq, const struct vhu_virtio_net_hdr_v1 *h,
                    const struct iovec *iov, unsigned n, uint32_t len)
{
    struct net_queue *rxq = dest_rxq(d, txq);
    struct sw_rxq *sq;

    /* Not running, or no room (-ENOBUFS: the device does not count that one; the rest it did) */
    if (!rxq || net_rx_deliver(rxq, h, iov, n, len) < 0) {
        net_stat_add(&sw->stats.drops, 1);
        return;
    }
    net_stat_add(&sw->stats.copies, 1);
    sq = rxq->port_priv;
    if (!sq->dirty) {
        sq->dirty = true;
        sq->next_dirty = sw->dirty;
        sw->dirty = rxq;
    }
}

static enum net_tx_result switch_tx(struct net_port *p, struct net_queue *txq,
                                    const struct vhu_virtio_net_hdr_v1 *hdr,
                                    const struct iovec *iov, unsigned n, uint32_t len)
{
    struct sw_port *sp = (struct sw_port *)p;
    struct vhu_net_switch *sw = sp->sw;
    static const struct vhu_virtio_net_hdr_v1 clean;
    uint8_t a[12];
    uint64_t dst, src;
    unsigned to;

    (void)hdr;
    vhu_iov_to_buf(iov, n, 0, a, sizeof(a)); /* the device passes frames of >= 14 bytes */
    dst = mac_load(a);
    src = mac_load(a + 6);
    if (!(a[6] & 1) && src)
        fdb_learn(sw, src, sp->id);
    to = (a[0] & 1) ? SW_NO_PORT : fdb_lookup(sw, dst);
    if (to == sp->id)
        return NET_TX_DROP; /* for a station on the sender's own side: nothing to do */
    if (to != SW_NO_PORT && sw->ports[to]) {
        net_stat_add(&sw->stats.unicast, 1);
        deliver(sw, sw->ports[to], txq, &clean, iov, n, len);
        return NET_TX_DONE;
    }
    net_stat_add(&sw->stats.flooded, 1);
    for (unsigned i = 0; i < VHU_NET_SWITCH_MAX_PORTS; i++) {
        if (sw->ports[i] && i != sp->id)
            deliver(sw, sw->ports[i], txq, &clean, iov, n, len);
    }
    return NET_TX_DONE;
}

/* End of a burst: one used-ring flush (and at most one interrupt) per receive queue written. */
static void switch_tx_flush(struct net_port *p, struct net_queue *txq)
{
    struct vhu_net_switch *sw = ((struct sw_port *)p)->sw;
    struct net_queue *q = sw->dirty;

    (void)txq;
    sw->dirty = NULL;
    while (q) {
        struct sw_rxq *sq = q->port_priv;
        vhu_vq_flush(q->vq);
        q = sq->next_dirty;
        sq->next_dirty = NULL;
        sq->dirty = false;
    }
}

static int switch_queue_start(struct net_port *p, struct net_queue *q)
{
    struct vhu_net_switch *sw = ((struct sw_port *)p)->sw;
    pthread_t self = pthread_self();

    if (!sw->have_owner) {
        sw->owner = self;
        sw->have_owner = true;
    } else if (!pthread_equal(sw->owner, self)) {
        vhu_err("net switch: every port of a switch must run on one thread");
        return -EXDEV;
    }
    if (q->rx) {
        q->port_priv = calloc(1, sizeof(struct sw_rxq));
        if (!q->port_priv)
            return -ENOMEM;
    }
    return 0;
}

static void switch_queue_stop(struct net_port *p, struct net_queue *q)
{
    (void)p;
    /* Never on the dirty list here: the list is emptied at the end of every burst. */
    free(q->port_priv);
    q->port_priv = NULL;
}

static void switch_destroy(struct net_port *p)
{
    struct sw_port *sp = (struct sw_port *)p;
    struct vhu_net_switch *sw = sp->sw;

    sw->ports[sp->id] = NULL;
    sw->nports--;
    fdb_forget_port(sw, sp->id);
    free(sp);
}

static const struct net_port_ops switch_ops = {
    .name = "switch",
    .queue_start = switch_queue_start,
    .queue_stop = switch_queue_stop,
    .tx = switch_tx,
    .tx_flush = switch_tx_flush,
    .destroy = switch_destroy,
};

int net_port_switch_new(struct net_dev *nd, struct vhu_net_switch *sw, struct net_port **out)
{
    struct sw_port *sp;
    unsigned id = 0;

    while (id < VHU_NET_SWITCH_MAX_PORTS && sw->ports[id])
        id++;
    if (id == VHU_NET_SWITCH_MAX_PORTS) {
        vhu_err("net switch: all %u ports are taken", VHU_NET_SWITCH_MAX_PORTS);
        return -ENOSPC;
    }
    sp = calloc(1, sizeof(*sp));
    if (!sp)
        return -ENOMEM;
    sp->p.ops = &switch_ops;
    sp->p.nd = nd;
    sp->sw = sw;
    sp->id = (uint8_t)id;
    sw->ports[id] = sp;
    sw->nports++;
    *out = &sp->p;
    return 0;
}

VHU_EXPORT int vhu_net_switch_new(struct vhu_net_switch **out)
{
    struct vhu_net_switch *sw = calloc(1, sizeof(*sw));

    if (!sw)
        return -ENOMEM;
    *out = sw;
    return 0;
}

VHU_EXPORT void vhu_net_switch_free(struct vhu_net_switch *sw)
{
    if (!sw)
        return;
    if (sw->nports) { /* their ports point here: leak it rather than leave them dangling */
        vhu_err("net switch: not freed, %u devices still attached", sw->nports);
        return;
    }
    free(sw);
}

VHU_EXPORT void vhu_net_switch_get_stats(const struct vhu_net_switch *sw,
                                         struct vhu_net_switch_stats *st)
{
    st->unicast = __atomic_load_n(&sw->stats.unicast, __ATOMIC_RELAXED);
    st->flooded = __atomic_load_n(&sw->stats.flooded, __ATOMIC_RELAXED);
    st->copies = __atomic_load_n(&sw->stats.copies, __ATOMIC_RELAXED);
    st->drops = __atomic_load_n(&sw->stats.drops, __ATOMIC_RELAXED);
    st->learned = __atomic_load_n(&sw->stats.learned, __ATOMIC_RELAXED);
    st->fdb_flushes = __atomic_load_n(&sw->stats.fdb_flushes, __ATOMIC_RELAXED);
}
