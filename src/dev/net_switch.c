/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * switch: a built-in L2 learning switch joining several virtio-net devices (VM to VM).
 *
 * A frame transmitted by one guest is copied once, from its transmit buffers (guest memory)
 * into the receive buffers of the guest it is for (net_rx_deliver): no intermediate packet
 * buffer, no allocation, no lock. The switch knows which port each address lives behind
 * (below); broadcast, multicast and unknown unicast go to every other port (one copy each).
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
 * Address table: open addressing (linear probing, deletion by backward shift) of SW_FDB_SIZE
 * slots, filled to 3/4 at most; an address that does not fit is not learnt (counted in
 * fdb_full), nothing already in the table is ever pushed out by it.
 *
 * Source addresses (the table is also the switch's idea of who may send as whom):
 *   - each port's device MAC (its config space) is its own from the start: pinned, never ages,
 *     never moves;
 *   - besides, a port may use up to `learn` more addresses (vhu_net_switch_opts; default 1:
 *     QEMU gives its guest a MAC of its own over vhost-user, which the device never sees),
 *     learnt from its first frames;
 *   - any other source is dropped and counted (spoofed): an address another port owns (a
 *     spoofer cannot take a victim's unicast), a multicast or zero source, an address beyond
 *     the port's quota (a port sending from made-up addresses cannot fill the table and keep
 *     everybody flooding).
 * A learnt address unused for `age_seconds` (default 300) is forgotten, and so are a port's
 * learnt addresses when its last queue stops (its link went down: the VM is gone or reset); a
 * guest whose address changed waits for the old one to age unless its quota has room.
 *
 * Time: one CLOCK_MONOTONIC_COARSE read per burst (at its first frame), in whole seconds; the
 * table is swept for aged addresses at most once a second, at the start of a burst.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net_port.h"
#include "vhu/log.h"
#include "vhu/util.h"

#define SW_FDB_SIZE 4096 /* power of two */
#define SW_FDB_MASK (SW_FDB_SIZE - 1)
#define SW_FDB_MAX (SW_FDB_SIZE / 4 * 3)
#define SW_NO_PORT 0xffu
#define SW_AGE_DEFAULT 300 /* seconds */

struct sw_fdb_entry {
    uint64_t mac;   /* 48-bit address; 0 = free slot (00:00:00:00:00:00 is never learnt) */
    uint32_t seen;  /* switch time (s) of the last frame from it */
    uint8_t port;
    bool pinned;    /* the port's device MAC */
};

struct sw_port;

struct vhu_net_switch {
    struct sw_port *ports[VHU_NET_SWITCH_MAX_PORTS];
    unsigned nports;
    bool have_owner;
    pthread_t owner;                       /* the thread running every queue */
    struct net_queue *dirty;               /* receive queues written in the current burst */
    unsigned fdb_used;
    unsigned learn;                        /* addresses a port may learn besides its own */
    uint32_t age;                          /* seconds */
    uint32_t now;                          /* switch time (s), read at a burst's first frame */
    bool now_valid;                        /* now was read in this burst */
    uint32_t last_sweep;
    struct vhu_net_switch_stats stats;     /* single writer: the owner thread */
    struct sw_fdb_entry fdb[SW_FDB_SIZE];
};

struct sw_port {
    struct net_port p; /* must be first */
    struct vhu_net_switch *sw;
    uint8_t id;
    unsigned learned;  /* its addresses in the table, the pinned one aside */
    unsigned running;  /* its started queues */
};

/* Per receive queue: its place in the switch's list of queues to flush. */
struct sw_rxq {
    struct net_queue *next_dirty;
    bool dirty;
};

int64_t net_switch_test_clock_offset;

static inline uint64_t mac_load(const uint8_t *m)
{
    return (uint64_t)m[0] | (uint64_t)m[1] << 8 | (uint64_t)m[2] << 16 | (uint64_t)m[3] << 24 |
           (uint64_t)m[4] << 32 | (uint64_t)m[5] << 40;
}

static inline unsigned fdb_hash(uint64_t mac)
{
    return (unsigned)((mac * 0x9e3779b97f4a7c15ULL) >> 52) & SW_FDB_MASK;
}

static struct sw_fdb_entry *fdb_slot(struct vhu_net_switch *sw, uint64_t mac)
{
    unsigned i = fdb_hash(mac);

    while (sw->fdb[i].mac && sw->fdb[i].mac != mac)
        i = (i + 1) & SW_FDB_MASK;
    return &sw->fdb[i]; /* the entry, or the free slot where it would go */
}

static bool fdb_live(const struct vhu_net_switch *sw, const struct sw_fdb_entry *e)
{
    return e->pinned || sw->now - e->seen < sw->age;
}

/* The port a destination lives behind, or SW_NO_PORT (unknown or aged: flood). */
static unsigned fdb_lookup(struct vhu_net_switch *sw, uint64_t mac)
{
    const struct sw_fdb_entry *e = fdb_slot(sw, mac);

    return e->mac && fdb_live(sw, e) ? e->port : SW_NO_PORT;
}

/* Empty slot i, moving later entries of its cluster back so that every lookup still finds
 * them (linear probing without tombstones). */
static void fdb_delete_at(struct vhu_net_switch *sw, unsigned i)
{
    const struct sw_fdb_entry *e = &sw->fdb[i];

    if (!e->pinned)
        sw->ports[e->port]->learned--;
    for (unsigned j = (i + 1) & SW_FDB_MASK; sw->fdb[j].mac; j = (j + 1) & SW_FDB_MASK) {
        unsigned home = fdb_hash(sw->fdb[j].mac);
        /* the entry at j may fill the hole at i when i lies between its home and j */
        if (((j - home) & SW_FDB_MASK) >= ((j - i) & SW_FDB_MASK)) {
            sw->fdb[i] = sw->fdb[j];
            i = j;
        }
    }
    sw->fdb[i] = (struct sw_fdb_entry){0};
    sw->fdb_used--;
}

enum fdb_drop { DROP_AGED, DROP_PORT_LEARNT, DROP_PORT_ALL };

/*
 * Delete the aged learnt entries, or those of one port (learnt only, or every one). A deletion
 * may move a later entry into the slot just emptied: that slot is looked at again; entries
 * moved back across the wrap were looked at already.
 */
static unsigned fdb_drop(struct vhu_net_switch *sw, enum fdb_drop what, uint8_t port)
{
    unsigned n = 0;

    for (unsigned i = 0; i < SW_FDB_SIZE;) {
        const struct sw_fdb_entry *e = &sw->fdb[i];
        bool drop = e->mac && (what == DROP_AGED ? !fdb_live(sw, e)
                               : e->port == port && (what == DROP_PORT_ALL || !e->pinned));
        if (drop) {
            fdb_delete_at(sw, i);
            n++;
        } else {
            i++;
        }
    }
    return n;
}

/* A burst's first frame: read the clock; at most once a second, forget aged addresses. */
static void sw_tick(struct vhu_net_switch *sw)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    sw->now = (uint32_t)(ts.tv_sec + net_switch_test_clock_offset);
    sw->now_valid = true;
    if (sw->now != sw->last_sweep) {
        sw->last_sweep = sw->now;
        net_stat_add(&sw->stats.aged, fdb_drop(sw, DROP_AGED, 0));
    }
}

/* May port sp send from src (learning it if it may)? */
static bool src_ok(struct vhu_net_switch *sw, struct sw_port *sp, const uint8_t *a)
{
    uint64_t src = mac_load(a);
    struct sw_fdb_entry *e;

    if ((a[0] & 1) || !src)
        return false; /* a multicast or zero source is nobody's */
    e = fdb_slot(sw, src);
    if (e->mac && e->port == sp->id) {
        if (e->seen != sw->now)
            e->seen = sw->now;
        return true;
    }
    if (e->mac && fdb_live(sw, e))
        return false; /* another port's */
    if (sp->learned >= sw->learn)
        return false; /* its quota is full */
    if (e->mac) { /* another port's, aged: it moves here */
        sw->ports[e->port]->learned--;
    } else {
        if (sw->fdb_used >= SW_FDB_MAX) {
            net_stat_add(&sw->stats.fdb_full, 1);
            return false;
        }
        e->mac = src;
        sw->fdb_used++;
    }
    e->port = sp->id;
    e->seen = sw->now;
    e->pinned = false;
    sp->learned++;
    net_stat_add(&sw->stats.learned, 1);
    return true;
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
    unsigned to;

    (void)hdr;
    if (!sw->now_valid)
        sw_tick(sw);
    vhu_iov_to_buf(iov, n, 0, a, sizeof(a)); /* the device passes frames of >= 14 bytes */
    if (!src_ok(sw, sp, a + 6)) {
        net_stat_add(&sw->stats.spoofed, 1);
        return NET_TX_DROP;
    }
    to = (a[0] & 1) ? SW_NO_PORT : fdb_lookup(sw, mac_load(a));
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
    sw->now_valid = false; /* the next burst reads the clock again */
    sw->dirty = NULL;
    while (q) {
        struct sw_rxq *sq = q->port_priv;
        net_rx_flush(q);
        q = sq->next_dirty;
        sq->next_dirty = NULL;
        sq->dirty = false;
    }
}

static int switch_queue_start(struct net_port *p, struct net_queue *q)
{
    struct sw_port *sp = (struct sw_port *)p;
    struct vhu_net_switch *sw = sp->sw;
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
    sp->running++;
    return 0;
}

/* On the switch's thread. The last queue of a port stopping is its link going down: its learnt
 * addresses are forgotten (the next guest behind it may have others). */
static void switch_queue_stop(struct net_port *p, struct net_queue *q)
{
    struct sw_port *sp = (struct sw_port *)p;

    /* Never on the dirty list here: the list is emptied at the end of every burst. */
    free(q->port_priv);
    q->port_priv = NULL;
    if (sp->running && --sp->running == 0)
        fdb_drop(sp->sw, DROP_PORT_LEARNT, sp->id);
}

static void switch_destroy(struct net_port *p)
{
    struct sw_port *sp = (struct sw_port *)p;
    struct vhu_net_switch *sw = sp->sw;

    fdb_drop(sw, DROP_PORT_ALL, sp->id);
    sw->ports[sp->id] = NULL;
    sw->nports--;
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
    /* the device's MAC is the port's own: pinned (a random one when none was given) */
    uint64_t mac = mac_load(net_mac(nd));
    struct sw_fdb_entry *e = fdb_slot(sw, mac);
    if (e->mac && e->pinned) {
        vhu_err("net switch: MAC %02x:%02x:%02x:%02x:%02x:%02x is already port %u's",
                net_mac(nd)[0], net_mac(nd)[1], net_mac(nd)[2], net_mac(nd)[3], net_mac(nd)[4],
                net_mac(nd)[5], e->port);
        return -EADDRINUSE;
    }
    if (!e->mac && sw->fdb_used >= SW_FDB_MAX) {
        vhu_err("net switch: address table full");
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
    if (e->mac) /* learnt by another port: the device's owner takes it */
        sw->ports[e->port]->learned--;
    else
        sw->fdb_used++;
    *e = (struct sw_fdb_entry){.mac = mac, .port = sp->id, .pinned = true};
    *out = &sp->p;
    return 0;
}

VHU_EXPORT int vhu_net_switch_new_opts(const struct vhu_net_switch_opts *opts,
                                       struct vhu_net_switch **out)
{
    struct vhu_net_switch_opts o = opts ? *opts : (struct vhu_net_switch_opts){0};
    struct vhu_net_switch *sw;

    if (o.learn > VHU_NET_SWITCH_MAX_LEARN && o.learn != VHU_NET_SWITCH_LEARN_NONE) {
        vhu_err("net switch: learn %u: at most %u addresses per port", o.learn,
                VHU_NET_SWITCH_MAX_LEARN);
        return -EINVAL;
    }
    sw = calloc(1, sizeof(*sw));
    if (!sw)
        return -ENOMEM;
    sw->learn = o.learn == VHU_NET_SWITCH_LEARN_NONE ? 0 : o.learn ? o.learn : 1;
    sw->age = o.age_seconds ? o.age_seconds : SW_AGE_DEFAULT;
    *out = sw;
    return 0;
}

VHU_EXPORT int vhu_net_switch_new(struct vhu_net_switch **out)
{
    return vhu_net_switch_new_opts(NULL, out);
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
    st->spoofed = __atomic_load_n(&sw->stats.spoofed, __ATOMIC_RELAXED);
    st->aged = __atomic_load_n(&sw->stats.aged, __ATOMIC_RELAXED);
    st->fdb_full = __atomic_load_n(&sw->stats.fdb_full, __ATOMIC_RELAXED);
}
