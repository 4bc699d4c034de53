/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vhuctl net: a virtio-net driver (VIRTIO 1.3 §5.1) over the frontend library, with no VM.
 * Works against any vhost-user-net backend (vhud net, DPDK's net_vhost, ...). Queue pairs
 * 0..N-1 are started (--queue-pairs, default 1): queue 2k is receiveq k, 2k+1 transmitq k, and
 * each pair is driven by a thread of its own. Every frame carries the 12-byte
 * struct virtio_net_hdr_v1, so VIRTIO_F_VERSION_1 is required.
 *
 *   vhuctl net send --socket-path S --count N [--size BYTES] [--dst-mac M] ...
 *       N frames (Ethernet header, ethertype 0x88b5, magic, sequence number, fixed pattern)
 *       posted in bursts on the transmit queue; done when the backend consumed all of them.
 *   vhuctl net recv --socket-path S --count N [--timeout-ms T] ...
 *       posts receive buffers, counts N frames, checks each header (num_buffers, no offload
 *       flags) and length.
 *   vhuctl net bench --socket-path S --mode tx|rx|rxtx [--size BYTES] [--seconds S] ...
 *       tx: send for S seconds; rx: receive for S seconds (the backend is a source); rxtx: send
 *       and receive what the backend reflects, checking every frame (MACs, sequence, payload).
 *       Prints "RESULT mode=... mpps=..." lines.
 * All three take the ring options (--packed, --queue-size N, --no-indirect, --no-event-idx).
 * Times and rates are over the active interval: from the loop turn that moved the first frame to
 * the last frame moved, so a receiver started before its sender (or left running after it) does
 * not count its idle time.
 *
 * Data path: every buffer is carved out of the shared arena once (vhu_fe_alloc); sending a
 * frame writes its sequence number and adds one descriptor; kicks go out once per burst.
 */
#include <endian.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "vhu/dev/net.h"
#include "vhu/fe/net.h"
#include "vhu/frontend.h"
#include "vhu/log.h"
#include "vhu/util.h"
#include "vhu/virtio.h"
#include "vhuctl_common.h"
#include "vhuctl_net.h"

#define NET_HDR sizeof(struct vhu_virtio_net_hdr_v1)
#define ETH_HLEN 14
#define ETH_MIN_FRAME 60   /* without FCS */
#define ETH_MAX_FRAME 1514 /* MTU 1500 */
#define NET_DEF_MTU 1500
#define FRAME_ETHERTYPE 0x88b5 /* IEEE 802 local experimental */
#define FRAME_MAGIC "vhuN"
#define FRAME_SEQ_OFF (ETH_HLEN + 4)
#define FRAME_HEAD (FRAME_SEQ_OFF + 8) /* header, magic, sequence: checked field by field */
#define MAX_PAIRS 64
#define WAIT_SLICE_MS 100
#define RX_BUF_DEFAULT 2048 /* what the arena reserves per receive buffer without --rx-buf */

enum mac_check { MACS_SWAPPED, MACS_UNCHANGED, MACS_ANY };

struct net_opts {
    struct vhuctl_ring_opts ring;
    uint64_t count;
    unsigned size;
    bool poll;
    bool no_mrg;
    unsigned pairs;
    unsigned rx_buf;      /* bytes per receive buffer (0: header + largest frame) */
    unsigned burst;
    unsigned timeout_ms;  /* give up when nothing moves for this long */
    double seconds;
    const char *mode;
    enum mac_check macs;
    uint8_t dst[6];
    int verbose;
};

struct netdev {
    struct vhu_fe *fe;
    struct vhu_fe_net_info info;
    uint64_t features;
    bool mrg;
    uint16_t mtu;
    uint32_t max_frame; /* largest frame accepted on receive (Ethernet header included) */
};

/* One frame's bytes as sent; what a reflected frame must look like. */
struct frame_spec {
    uint8_t dst[6];
    uint8_t src[6];
    uint32_t size;
    enum mac_check macs;
    uint8_t ref[ETH_MAX_FRAME];
};

struct txq {
    struct vhu_fe_net_txq *t;
    unsigned q;    /* transmitq k: queue 2k + 1 */
    uint32_t size; /* frame bytes */
    uint64_t seq;  /* frames added so far = the next sequence number */
    uint64_t done; /* frames the backend has consumed */
};

struct rxq {
    struct vhu_fe_net_rxq *r;
    unsigned q;        /* receiveq k: queue 2k */
    unsigned nbufs;
    uint32_t buf_len;
    bool mrg;
    uint32_t max_frame;
    const struct frame_spec *spec; /* NULL: check header and length only */
    const struct txq *tx;          /* rxtx: sequence numbers below tx->seq are valid */
    uint8_t head[FRAME_HEAD];      /* the first bytes of the frame being checked */
    bool bad_data;
    /* counters */
    uint64_t pkts, bytes, bad_len, bad_hdrs, bad_payload, reordered, expect_seq;
    bool warned_nb_zero;
    int fatal;
};

/* ---------------------------------------------------------------------------------------- */
/* Options                                                                                   */
/* ---------------------------------------------------------------------------------------- */

void vhuctl_net_usage(FILE *f)
{
    fprintf(f,
            "net send | recv | bench: frames through a virtio-net device\n"
            "  vhuctl net send --socket-path PATH --count N [--size BYTES] [--dst-mac MAC]\n"
            "  vhuctl net recv --socket-path PATH --count N [--timeout-ms T]\n"
            "  vhuctl net bench --socket-path PATH --mode tx|rx|rxtx [--size BYTES]\n"
            "                   [--seconds S] [--burst N] [--poll] [--macs M]\n"
            "\n"
            "net options (queue pair k: queue 2k receives, queue 2k+1 transmits):\n"
            "  --size BYTES     frame size with the 14-byte Ethernet header, 60..1514 (default 64)\n"
            "  --count N        frames to send / receive\n"
            "  --dst-mac MAC    destination of sent frames (default ff:ff:ff:ff:ff:ff)\n"
            "  --queue-pairs N  use pairs 0..N-1, one thread each, --count shared out\n"
            "                   (default 1; more need VIRTIO_NET_F_MQ)\n"
            "  --burst N        frames added per kick (default 32)\n"
            "  --rx-buf BYTES   receive buffer size (default 2048, or without MRG_RXBUF the\n"
            "                   12-byte header + MTU + 14 if larger)\n"
            "  --timeout-ms T   fail when nothing moves for T ms (default 5000)\n"
            "  --poll           spin on the used rings instead of sleeping on the call eventfds\n"
            "  --no-mrg-rxbuf   do not negotiate VIRTIO_NET_F_MRG_RXBUF\n"
            "  bench: --mode tx (send), rx (the backend is a source), rxtx (the backend\n"
            "         reflects: every frame must come back intact); --seconds S (default 5);\n"
            "         --macs swapped|unchanged|any: the reflected frame's addresses (default\n"
            "         swapped, as vhud --reflect; a plain forwarder such as testpmd io mode\n"
            "         leaves them unchanged)\n");
}

static int parse_mac(const char *s, uint8_t mac[6])
{
    unsigned v[6];
    int n = 0;

    if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%n", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &n) !=
            6 || s[n] != '\0')
        return -EINVAL;
    for (unsigned i = 0; i < 6; i++)
        mac[i] = (uint8_t)v[i];
    return 0;
}

static int parse_net_opts(int argc, char **argv, struct net_opts *o)
{
    static const struct option longopts[] = {
        {"no-mrg-rxbuf", no_argument, NULL, 'M'}, /* before --no-indirect, as getopt lists them */
        VHUCTL_RING_LONGOPTS,
        {"count", required_argument, NULL, 'n'},
        {"size", required_argument, NULL, 'z'},
        {"dst-mac", required_argument, NULL, 'm'},
        {"queue-pairs", required_argument, NULL, 'Q'},
        {"burst", required_argument, NULL, 'b'},
        {"rx-buf", required_argument, NULL, 'r'},
        {"timeout-ms", required_argument, NULL, 'T'},
        {"poll", no_argument, NULL, 'P'},
        {"mode", required_argument, NULL, 'o'},
        {"seconds", required_argument, NULL, 't'},
        {"macs", required_argument, NULL, 'a'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    int c, r;

    while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        r = vhuctl_ring_opt(&o->ring, c, optarg);
        if (r < 0)
            return r;
        if (r > 0)
            continue;
        switch (c) {
        case 'n':
            if (vhu_arg_size(optarg, &o->count) < 0 || o->count == 0 || o->count > (1ULL << 48))
                goto bad;
            break;
        case 'z':
            if (vhu_arg_uint(optarg, ETH_MAX_FRAME, &v) < 0 || v < ETH_MIN_FRAME)
                goto bad;
            o->size = (unsigned)v;
            break;
        case 'm':
            if (parse_mac(optarg, o->dst) < 0)
                goto bad;
            break;
        case 'Q':
            if (vhu_arg_uint(optarg, MAX_PAIRS, &v) < 0 || v == 0)
                goto bad;
            o->pairs = (unsigned)v;
            break;
        case 'b':
            if (vhu_arg_uint(optarg, 32768, &v) < 0 || v == 0)
                goto bad;
            o->burst = (unsigned)v;
            break;
        case 'r':
            if (vhu_arg_size(optarg, &v) < 0 || v < NET_HDR + 2 || v > 65536)
                goto bad;
            o->rx_buf = (unsigned)v;
            break;
        case 'T':
            if (vhu_arg_uint(optarg, 3600 * 1000, &v) < 0 || v == 0)
                goto bad;
            o->timeout_ms = (unsigned)v;
            break;
        case 'P': o->poll = true; break;
        case 'M': o->no_mrg = true; break;
        case 'o':
            if (strcmp(optarg, "tx") && strcmp(optarg, "rx") && strcmp(optarg, "rxtx"))
                goto bad;
            o->mode = optarg;
            break;
        case 't':
            if (vhuctl_arg_seconds(optarg, &o->seconds) < 0)
                goto bad;
            break;
        case 'a':
            if (strcmp(optarg, "swapped") == 0)
                o->macs = MACS_SWAPPED;
            else if (strcmp(optarg, "unchanged") == 0)
                o->macs = MACS_UNCHANGED;
            else if (strcmp(optarg, "any") == 0)
                o->macs = MACS_ANY;
            else
                goto bad;
            break;
        case 'v': o->verbose++; break;
        case 'h': vhuctl_net_usage(stdout); vhuctl_ring_usage(stdout); exit(0);
        default: return -EINVAL; /* getopt named the option: nothing follows its line */
        }
    }
    return vhuctl_args_rest(argc, argv, &o->ring);
bad:
    return vhuctl_bad_value(argv);
}

/* ---------------------------------------------------------------------------------------- */
/* Device setup                                                                              */
/* ---------------------------------------------------------------------------------------- */

/* Receive buffer size: --rx-buf; else 2 KiB, or without MRG_RXBUF at least room for the
 * header and the largest frame. */
static uint32_t rx_buf_len(const struct net_opts *o, const struct netdev *d)
{
    if (o->rx_buf)
        return o->rx_buf;
    if (d->mrg)
        return RX_BUF_DEFAULT;
    return VHU_MAX((uint32_t)NET_HDR + d->max_frame, (uint32_t)RX_BUF_DEFAULT);
}

/*
 * Connect, negotiate and start queue pair 0; read the config space when the backend has one.
 * Memory: both rings, and `bufs` bytes the caller will carve buffers from.
 */
static int net_open(const struct net_opts *o, size_t bufs, struct netdev *d)
{
    const uint64_t want = vhu_fe_net_features() &
                          ~(o->no_mrg ? vhu_feature(VHU_VIRTIO_NET_F_MRG_RXBUF) : 0);
    size_t ring = vhu_vqd_ring_size((uint16_t)o->ring.queue_size, o->ring.packed) +
                  (size_t)o->ring.queue_size * 16 * 16 + 8192;
    struct vhu_fe_opts fo = {
        .features = want,
        .num_queues = (uint16_t)(2 * o->pairs),
        .mem_size = 2 * o->pairs * ring + bufs + (1u << 20),
        .mem_regions = 1,
        .queue_pairs = true,
    };
    char what[48];
    int r;

    memset(d, 0, sizeof(*d));
    if (o->pairs == 1)
        snprintf(what, sizeof(what), "queue pair 0");
    else
        snprintf(what, sizeof(what), "queue pairs 0..%u (VIRTIO_NET_F_MQ)", o->pairs - 1);
    r = vhuctl_fe_open(&o->ring, &fo, what, &d->fe);
    if (r < 0)
        return r;
    d->features = vhu_fe_features(d->fe);
    if (vhu_fe_net_get_info(d->fe, &d->info) == -ENOTSUP) {
        fprintf(stderr, "vhuctl: the backend does not offer VIRTIO_F_VERSION_1 (features 0x%"
                PRIx64 "); vhuctl net only speaks the 12-byte virtio 1.x header\n",
                vhu_fe_backend_features(d->fe));
        r = -ENOTSUP;
        goto fail;
    }
    if (o->pairs > 1 && !vhu_has_feature(d->features, VHU_VIRTIO_NET_F_MQ)) {
        fprintf(stderr, "vhuctl: --queue-pairs %u needs VIRTIO_NET_F_MQ, not offered\n",
                o->pairs);
        r = -ENOTSUP;
        goto fail;
    }
    d->mrg = d->info.mrg_rxbuf;
    d->mtu = d->info.mtu;
    if (d->info.link_down)
        fprintf(stderr, "vhuctl: warning: the device reports its link down\n");
    d->max_frame = d->info.max_frame;
    if (o->size > d->max_frame) {
        fprintf(stderr, "vhuctl: --size %u exceeds the device's MTU %u + 14\n", o->size, d->mtu);
        r = -EINVAL;
        goto fail;
    }
    if (!d->mrg && rx_buf_len(o, d) < NET_HDR + d->max_frame) {
        fprintf(stderr, "vhuctl: --rx-buf %u cannot hold a %u-byte frame without MRG_RXBUF\n",
                rx_buf_len(o, d), d->max_frame);
        r = -EINVAL;
        goto fail;
    }
    if (rx_buf_len(o, d) > (o->rx_buf ? o->rx_buf : RX_BUF_DEFAULT)) {
        fprintf(stderr, "vhuctl: the device's MTU %u needs --rx-buf %u (or MRG_RXBUF)\n",
                d->mtu, rx_buf_len(o, d));
        r = -EINVAL;
        goto fail;
    }
    if (o->verbose)
        fprintf(stderr, "vhuctl: features 0x%" PRIx64 " (backend 0x%" PRIx64 "), mtu %u, %s\n",
                d->features, vhu_fe_backend_features(d->fe), d->mtu,
                d->mrg ? "mergeable rx buffers" : "one rx buffer per frame");
    return 0;
fail:
    vhu_fe_free(d->fe);
    d->fe = NULL;
    return r;
}

/* ---------------------------------------------------------------------------------------- */
/* Frames                                                                                    */
/* ---------------------------------------------------------------------------------------- */

/* Frames go out from the device's MAC when it has one (VIRTIO_NET_F_MAC: a switch port only
 * takes frames from its own addresses), else from a fixed locally administered one. */
static void spec_init(struct frame_spec *s, const struct net_opts *o, const struct netdev *d)
{
    static const uint8_t fixed[6] = {0x02, 0x76, 0x68, 0x75, 0x00, 0x01};
    const uint8_t *mac = d->info.mac;
    bool use_dev = vhu_has_feature(d->features, VHU_VIRTIO_NET_F_MAC) && d->info.has_config &&
                   !(mac[0] & 1) && memcmp(mac, "\0\0\0\0\0\0", 6) != 0;

    memset(s, 0, sizeof(*s));
    memcpy(s->dst, o->dst, 6);
    memcpy(s->src, use_dev ? mac : fixed, 6);
    s->size = o->size;
    s->macs = o->macs;
    memcpy(s->ref, s->dst, 6);
    memcpy(s->ref + 6, s->src, 6);
    s->ref[12] = FRAME_ETHERTYPE >> 8;
    s->ref[13] = FRAME_ETHERTYPE & 0xff;
    memcpy(s->ref + ETH_HLEN, FRAME_MAGIC, 4);
    for (unsigned i = FRAME_HEAD; i < sizeof(s->ref); i++)
        s->ref[i] = (uint8_t)(i * 7 + 0x5a);
}

static void put_seq(uint8_t *frame, uint64_t seq)
{
    uint64_t le = htole64(seq);
    memcpy(frame + FRAME_SEQ_OFF, &le, sizeof(le));
}

static uint64_t get_seq(const uint8_t *frame)
{
    uint64_t le;
    memcpy(&le, frame + FRAME_SEQ_OFF, sizeof(le));
    return le64toh(le);
}

/* ---------------------------------------------------------------------------------------- */
/* Transmit queue                                                                            */
/* ---------------------------------------------------------------------------------------- */

static int txq_init(struct txq *t, struct netdev *d, unsigned pair, unsigned n,
                    const struct frame_spec *s)
{
    struct vhu_fe_net_buf *b;
    int r;

    memset(t, 0, sizeof(*t));
    t->q = 2 * pair + 1;
    t->size = s->size;
    r = vhu_fe_net_txq_new(d->fe, pair, n, s->size, &t->t);
    if (r < 0) {
        fprintf(stderr, "vhuctl: cannot set up %s: %s\n",
                r == -ENOMEM ? "transmit buffers" : "the transmit queue",
                r == -ENOMEM ? "shared memory exhausted" : strerror(-r));
        return r;
    }
    /* every buffer holds the frame once and for all; sending writes its sequence number */
    struct vhu_fe_net_buf **all = calloc(n, sizeof(*all));
    unsigned got = 0;
    if (!all)
        return -ENOMEM;
    while (got < n && (b = vhu_fe_net_tx_buf(t->t)) != NULL) {
        memcpy(b->data + NET_HDR, s->ref, s->size);
        all[got++] = b;
    }
    while (got)
        vhu_fe_net_tx_release(t->t, all[--got]);
    free(all);
    return 0;
}

static void txq_free(struct txq *t)
{
    vhu_fe_net_txq_free(t->t);
    t->t = NULL;
}

/* Take back what the backend consumed; returns how many. */
static unsigned txq_reclaim(struct txq *t)
{
    int n = vhu_fe_net_tx_reclaim(t->t);

    if (n <= 0) /* a broken ring is reported by broken() */
        return 0;
    t->done += (unsigned)n;
    return (unsigned)n;
}

/* Add up to max frames, kicking once per burst; returns how many were added or -errno. */
static int txq_send(struct txq *t, uint64_t max, unsigned burst)
{
    struct vhu_fe_net_buf *b;
    uint64_t added = 0;
    unsigned in_burst = 0;
    int r;

    while (added < max && (b = vhu_fe_net_tx_buf(t->t)) != NULL) {
        put_seq(b->data + NET_HDR, t->seq);
        r = vhu_fe_net_tx_send(t->t, b, t->size, NULL);
        if (r < 0) {
            vhu_fe_net_tx_release(t->t, b);
            if (r == -ENOSPC)
                break;
            return r;
        }
        t->seq++;
        added++;
        if (++in_burst == burst) {
            vhu_fe_net_tx_kick(t->t);
            in_burst = 0;
        }
    }
    if (in_burst)
        vhu_fe_net_tx_kick(t->t);
    return (int)added;
}

/* ---------------------------------------------------------------------------------------- */
/* Receive queue                                                                             */
/* ---------------------------------------------------------------------------------------- */

static int rxq_init(struct rxq *q, struct netdev *d, unsigned pair, unsigned n,
                    uint32_t buf_len)
{
    int r;

    memset(q, 0, sizeof(*q));
    q->q = 2 * pair;
    q->nbufs = n;
    q->buf_len = buf_len;
    q->mrg = d->mrg;
    q->max_frame = d->max_frame;
    r = vhu_fe_net_rxq_new(d->fe, &d->info, pair, n, buf_len, &q->r);
    if (r < 0)
        fprintf(stderr, "vhuctl: cannot post the receive buffers: %s\n",
                r == -ENOMEM ? "shared memory exhausted" : strerror(-r));
    return r;
}

static void rxq_free(struct rxq *q)
{
    vhu_fe_net_rxq_free(q->r);
    q->r = NULL;
}

/* Frame bytes [off, off + n) arrived in p. */
static void rx_data(struct rxq *q, uint32_t off, const uint8_t *p, uint32_t n)
{
    const struct frame_spec *s = q->spec;

    while (n && off < FRAME_HEAD) {
        q->head[off++] = *p++;
        n--;
    }
    if (!n)
        return;
    if (off >= s->size || n > s->size - off || memcmp(p, s->ref + off, n) != 0)
        q->bad_data = true;
}

static bool macs_ok(const struct frame_spec *s, const uint8_t *f)
{
    bool swapped = memcmp(f, s->src, 6) == 0 && memcmp(f + 6, s->dst, 6) == 0;
    bool same = memcmp(f, s->dst, 6) == 0 && memcmp(f + 6, s->src, 6) == 0;

    switch (s->macs) {
    case MACS_SWAPPED: return swapped;
    case MACS_UNCHANGED: return same;
    default: return swapped || same;
    }
}

/* The driver delivered a frame: check it against what was sent. */
static void rx_frame(void *opaque, const struct vhu_fe_net_rx_frame *f)
{
    struct rxq *q = opaque;
    const struct frame_spec *s = q->spec;
    bool bad = false;

    /* §5.1.6.4: without MRG_RXBUF a frame takes one buffer and num_buffers is 1. Some
     * backends (DPDK 22.11) leave the field alone then; drivers ignore it: tolerated. */
    if (!q->mrg && f->num_buffers == 0 && !q->warned_nb_zero) {
        q->warned_nb_zero = true;
        fprintf(stderr, "vhuctl: warning: the backend leaves num_buffers 0 without"
                " MRG_RXBUF (VIRTIO 1.x says 1); tolerated\n");
    }
    if ((f->flags & VHU_FE_NET_RX_BAD_HDR) && q->bad_hdrs == 0)
        fprintf(stderr, "vhuctl: frame %" PRIu64 ": header flags 0x%x gso_type %u"
                " num_buffers %u (no offloads were negotiated%s)\n", q->pkts + 1,
                f->hdr->flags, f->hdr->gso_type, f->num_buffers,
                q->mrg ? "" : ", nor MRG_RXBUF");
    q->pkts++;
    q->bytes += f->len;
    if (f->flags & VHU_FE_NET_RX_BAD_LEN) {
        if (q->bad_len++ == 0)
            fprintf(stderr, "vhuctl: frame %" PRIu64 ": %u bytes (valid: 14..%u)\n", q->pkts,
                    f->len, q->max_frame);
        return;
    }
    if (f->flags & VHU_FE_NET_RX_BAD_HDR)
        q->bad_hdrs++;
    if (!s)
        return;
    q->bad_data = false;
    for (uint32_t i = 0, off = 0; i < f->nsegs; off += f->segs[i++].len)
        rx_data(q, off, f->segs[i].data, f->segs[i].len);
    if (f->len != s->size || q->bad_data || !macs_ok(s, q->head) ||
        q->head[12] != (FRAME_ETHERTYPE >> 8) || q->head[13] != (FRAME_ETHERTYPE & 0xff) ||
        memcmp(q->head + ETH_HLEN, FRAME_MAGIC, 4) != 0)
        bad = true;
    uint64_t seq = get_seq(q->head);
    if (!bad && q->tx && seq >= q->tx->seq)
        bad = true; /* never sent */
    if (bad) {
        if (q->bad_payload++ == 0)
            fprintf(stderr, "vhuctl: frame %" PRIu64 " (%u bytes, sequence %" PRIu64 ") is"
                    " not a frame sent (%u bytes, addresses %s, sequence below %" PRIu64
                    ", pattern intact)\n", q->pkts, f->len, seq, s->size,
                    s->macs == MACS_SWAPPED ? "swapped" :
                    s->macs == MACS_UNCHANGED ? "unchanged" : "swapped or not",
                    q->tx ? q->tx->seq : 0);
        return;
    }
    if (seq != q->expect_seq)
        q->reordered++;
    q->expect_seq = seq + 1;
}

/* Deliver what arrived (the driver posts the buffers again); returns how many frames. */
static unsigned rxq_poll(struct rxq *q, uint64_t max_frames)
{
    uint64_t room = max_frames > q->pkts ? max_frames - q->pkts : 0;
    int n;

    if (q->fatal || room == 0)
        return 0;
    n = vhu_fe_net_rx_poll(q->r, (unsigned)VHU_MIN(room, (uint64_t)UINT32_MAX), rx_frame, q);
    if (n >= 0)
        return (unsigned)n;
    if (!vhu_fe_net_rxq_broken(q->r)) {
        fprintf(stderr, "vhuctl: receive queue: %s (after %" PRIu64 " frames); giving up\n",
                vhu_fe_net_rxq_error(q->r), q->pkts);
        q->fatal = -EPROTO;
    }
    return 0; /* a broken ring is reported by broken() */
}

/* ---------------------------------------------------------------------------------------- */
/* The loop                                                                                  */
/* ---------------------------------------------------------------------------------------- */

struct run {
    const struct net_opts *o;
    struct vhu_fe *fe;
    struct txq *tx;         /* NULL: nothing to send */
    struct rxq *rx;         /* NULL: nothing to receive */
    uint64_t tx_limit;      /* frames to send */
    uint64_t rx_limit;      /* frames to receive (rx only) */
    uint64_t stop_ns;       /* 0 or when to stop sending / receiving (bench) */
    unsigned max_inflight;  /* rxtx: frames sent and not back yet */
    bool rx_discard;        /* send: receive only to keep a reflecting backend going */
    uint64_t t_first;       /* 0, or the start of the loop turn that first moved a frame */
    uint64_t t_last;        /* when the last frame moved */
    pthread_t thread;
    int err;
};

/* "queue 3 (transmitq 1)" */
static const char *vq_name(unsigned q, char *buf, size_t len)
{
    snprintf(buf, len, "queue %u (%s %u)", q, q % 2 ? "transmitq" : "receiveq", q / 2);
    return buf;
}

static bool broken(const struct run *r)
{
    bool dead[2] = {r->rx && vhu_fe_net_rxq_broken(r->rx->r),
                    r->tx && vhu_fe_net_txq_broken(r->tx->t)};
    char name[48];

    for (unsigned i = 0; i < 2; i++) {
        if (dead[i]) {
            fprintf(stderr, "vhuctl: the backend broke %s (see the message above); stopping\n",
                    vq_name(i ? r->tx->q : r->rx->q, name, sizeof(name)));
            return true;
        }
    }
    return false;
}

/* Drive one queue pair. Returns 0 when the run is complete, -errno on failure (message
 * printed). Pairs run in threads of their own: nothing here is shared between pairs. */
static int run_loop(struct run *r)
{
    const struct net_opts *o = r->o;
    struct txq *tx = r->tx;
    struct rxq *rx = r->rx;
    uint64_t idle_ns = (uint64_t)o->timeout_ms * 1000000ULL, last_progress;
    bool rxtx = tx && rx && !r->rx_discard;
    char name[48];

    r->t_first = 0;
    r->t_last = last_progress = vhu_now_ns();
    for (;;) {
        unsigned moved = 0, discarded = 0;
        /* until the first frame moves, when this turn began: a receiver's wait for the first
         * frame is not part of the rate */
        uint64_t turn = r->t_first ? 0 : vhu_now_ns(), now;
        bool sending = false;

        if (tx)
            moved += txq_reclaim(tx);
        if (rx) {
            unsigned n = rxq_poll(rx, tx ? UINT64_MAX : r->rx_limit);
            if (rx->fatal)
                return rx->fatal;
            /* frames only dropped are no progress: a backend that stalls transmit while it
             * floods receive must still time out */
            if (r->rx_discard)
                discarded = n;
            else
                moved += n;
        }
        now = vhu_now_ns();
        if (moved)
            r->t_last = now;
        if (tx && tx->seq < r->tx_limit && (!r->stop_ns || now < r->stop_ns)) {
            uint64_t room = r->tx_limit - tx->seq;
            if (rxtx) {
                uint64_t out = tx->seq - rx->pkts;
                room = out >= r->max_inflight ? 0 : VHU_MIN(room, r->max_inflight - out);
            }
            sending = true;
            int n = txq_send(tx, room, o->burst);
            if (n < 0) {
                fprintf(stderr, "vhuctl: cannot add a frame: %s\n", strerror(-n));
                return n;
            }
            moved += (unsigned)n;
        }
        if (moved && !r->t_first)
            r->t_first = turn;
        if (broken(r))
            return -EPROTO;
        if (rxtx) {
            if (!sending && tx->done == tx->seq && rx->pkts >= tx->seq)
                return 0;
        } else if (tx) {
            if (!sending && tx->done == tx->seq)
                return 0;
        } else if (rx->pkts >= r->rx_limit || (r->stop_ns && now >= r->stop_ns)) {
            return 0;
        }
        if (moved) {
            last_progress = now;
            continue;
        }
        if (discarded)
            continue;
        if (now - last_progress >= idle_ns) {
            unsigned pair = rx ? rx->q / 2 : tx->q / 2;
            if (rxtx)
                fprintf(stderr, "vhuctl: pair %u: nothing moved for %u ms: %" PRIu64 " frames"
                        " sent, %" PRIu64 " consumed, %" PRIu64 " came back\n", pair,
                        o->timeout_ms, tx->seq, tx->done, rx->pkts);
            else if (tx)
                fprintf(stderr, "vhuctl: pair %u: nothing moved for %u ms: the backend consumed %"
                        PRIu64 " of %" PRIu64 " frames\n", pair, o->timeout_ms, tx->done,
                        tx->seq);
            else
                fprintf(stderr, "vhuctl: pair %u: timeout: %" PRIu64 " of %" PRIu64 " frames"
                        " arrived (nothing for %u ms)\n", pair, rx->pkts, r->rx_limit,
                        o->timeout_ms);
            return -ETIMEDOUT;
        }
        if (o->poll)
            continue;
        /* Event mode: sleep on the queue that holds us back. */
        bool on_tx = !rx || (tx && (r->rx_discard || vhu_fe_net_tx_free_bufs(tx->t) == 0 ||
                                    rx->pkts >= tx->seq));
        unsigned q = on_tx ? tx->q : rx->q;
        int ms = WAIT_SLICE_MS;
        if (r->stop_ns && now < r->stop_ns && (r->stop_ns - now) / 1000000 < (uint64_t)ms)
            ms = (int)((r->stop_ns - now) / 1000000) + 1;
        int w = on_tx ? vhu_fe_net_txq_wait(tx->t, ms) : vhu_fe_net_rxq_wait(rx->r, ms);
        if (w < 0 && w != -ETIMEDOUT) {
            fprintf(stderr, "vhuctl: waiting on %s: %s\n", vq_name(q, name, sizeof(name)),
                    strerror(-w));
            return w;
        }
    }
}

static double mpps(uint64_t pkts, double secs)
{
    return secs > 0 ? (double)pkts / secs / 1e6 : 0.0;
}

static double cpu_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---------------------------------------------------------------------------------------- */
/* Commands                                                                                  */
/* ---------------------------------------------------------------------------------------- */

struct session {
    struct netdev d;
    struct frame_spec spec;
    unsigned pairs;
    struct txq tx[MAX_PAIRS];
    struct rxq rx[MAX_PAIRS];
    struct run run[MAX_PAIRS];
    bool have_tx, have_rx;
};

/* Open the device and set up the queues of every pair the command uses. */
static int session_open(struct session *s, const struct net_opts *o, bool use_tx, bool use_rx)
{
    unsigned n = o->ring.queue_size;
    size_t bytes = (use_tx ? vhu_fe_net_bufs_mem(n, (uint32_t)NET_HDR + o->size) : 0) +
                   (use_rx ? vhu_fe_net_bufs_mem(n, o->rx_buf ? o->rx_buf : RX_BUF_DEFAULT) : 0);
    int r;

    memset(s, 0, sizeof(*s));
    s->pairs = o->pairs;
    r = net_open(o, bytes * o->pairs, &s->d);
    if (r < 0)
        return r;
    spec_init(&s->spec, o, &s->d);
    s->have_tx = use_tx;
    s->have_rx = use_rx;
    for (unsigned k = 0; k < s->pairs; k++) {
        if (use_tx && (r = txq_init(&s->tx[k], &s->d, k, n, &s->spec)) < 0)
            return r;
        if (use_rx && (r = rxq_init(&s->rx[k], &s->d, k, n, rx_buf_len(o, &s->d))) < 0)
            return r;
        s->run[k] = (struct run){.o = o, .fe = s->d.fe, .tx = use_tx ? &s->tx[k] : NULL,
                                 .rx = use_rx ? &s->rx[k] : NULL};
    }
    return 0;
}

static void session_close(struct session *s)
{
    vhuctl_fe_close(&s->d.fe);
    for (unsigned k = 0; k < s->pairs; k++) {
        if (s->have_tx)
            txq_free(&s->tx[k]);
        if (s->have_rx)
            rxq_free(&s->rx[k]);
    }
}

static void *run_thread(void *arg)
{
    struct run *r = arg;

    r->err = run_loop(r);
    return NULL;
}

/* Totals over the pairs. */
struct totals {
    uint64_t tx_done, rx_pkts, rx_bytes, rx_bufs, reordered;
    uint64_t bad_len, bad_hdrs, bad_payload;
    double secs;
};

/* Run every pair (one thread each when there are several); 0 when all completed. */
static int run_pairs(struct session *s, struct totals *t)
{
    uint64_t t0 = UINT64_MAX, t1 = 0;
    unsigned started = 0;
    int err = 0;

    if (s->pairs == 1) {
        run_thread(&s->run[0]);
        started = 1;
    } else {
        for (; started < s->pairs; started++) {
            int r = pthread_create(&s->run[started].thread, NULL, run_thread, &s->run[started]);
            if (r) {
                fprintf(stderr, "vhuctl: pthread_create: %s\n", strerror(r));
                err = -r;
                break;
            }
        }
        for (unsigned k = 0; k < started; k++)
            pthread_join(s->run[k].thread, NULL);
    }
    memset(t, 0, sizeof(*t));
    for (unsigned k = 0; k < started; k++) {
        const struct run *r = &s->run[k];
        if (r->err && !err)
            err = r->err;
        if (r->t_first) { /* a pair that moved nothing has no active interval */
            t0 = VHU_MIN(t0, r->t_first);
            t1 = VHU_MAX(t1, r->t_last);
        }
        if (r->tx)
            t->tx_done += r->tx->done;
        if (r->rx) {
            t->rx_pkts += r->rx->pkts;
            t->rx_bytes += r->rx->bytes;
            struct vhu_fe_net_rxq_stats st;
            vhu_fe_net_rxq_get_stats(r->rx->r, &st);
            t->rx_bufs += st.bufs;
            t->reordered += r->rx->reordered;
            t->bad_len += r->rx->bad_len;
            t->bad_hdrs += r->rx->bad_hdrs;
            t->bad_payload += r->rx->bad_payload;
        }
    }
    t->secs = t1 > t0 ? (double)(t1 - t0) / 1e9 : 0;
    return err;
}

/* count frames shared out over the pairs */
static uint64_t share(uint64_t count, unsigned pairs, unsigned k)
{
    return count / pairs + (k < count % pairs ? 1 : 0);
}

static const char *ring_name(const struct net_opts *o)
{
    return o->ring.packed ? "packed" : "split";
}

static uint64_t rx_errors(const struct totals *t)
{
    return t->bad_len + t->bad_hdrs + t->bad_payload;
}

static int report_rx_errors(const struct totals *t)
{
    if (!rx_errors(t))
        return 0;
    fprintf(stderr, "vhuctl: %" PRIu64 " bad frames: %" PRIu64 " bad length, %" PRIu64
            " bad header (num_buffers / offload flags), %" PRIu64 " not as sent\n",
            rx_errors(t), t->bad_len, t->bad_hdrs, t->bad_payload);
    return 1;
}

static int cmd_send(const struct net_opts *o)
{
    struct session *s = calloc(1, sizeof(*s));
    struct totals t;
    int rc = 1;

    /* Receive buffers are posted too, as any driver does: a backend that reflects (vhud
     * --reflect holds transmitted frames until they can be delivered) keeps going. What
     * comes back is counted and dropped. */
    if (!s || session_open(s, o, true, true) < 0)
        goto out;
    for (unsigned k = 0; k < s->pairs; k++) {
        s->run[k].tx_limit = share(o->count, s->pairs, k);
        s->run[k].rx_discard = true;
    }
    if (run_pairs(s, &t) < 0)
        goto out;
    printf("sent %" PRIu64 " packets, %" PRIu64 " bytes, %.3f s, %.3f Mpps (%u-byte frames, %s"
           " ring, %u pair%s; %" PRIu64 " frames came back, dropped)\n", t.tx_done,
           t.tx_done * o->size, t.secs, mpps(t.tx_done, t.secs), o->size, ring_name(o),
           s->pairs, s->pairs > 1 ? "s" : "", t.rx_pkts);
    rc = 0;
out:
    if (s)
        session_close(s);
    free(s);
    return rc;
}

static int cmd_recv(const struct net_opts *o)
{
    struct session *s = calloc(1, sizeof(*s));
    struct totals t;
    int rc = 1, r;

    if (!s || session_open(s, o, false, true) < 0)
        goto out;
    for (unsigned k = 0; k < s->pairs; k++)
        s->run[k].rx_limit = share(o->count, s->pairs, k);
    r = run_pairs(s, &t);
    printf("received %" PRIu64 " packets, %" PRIu64 " bytes, %.3f s, %.3f Mpps (%" PRIu64
           " buffers, %s ring, %s, %u pair%s)\n", t.rx_pkts, t.rx_bytes, t.secs,
           mpps(t.rx_pkts, t.secs), t.rx_bufs, ring_name(o),
           s->d.mrg ? "mergeable buffers" : "one buffer a frame", s->pairs,
           s->pairs > 1 ? "s" : "");
    rc = r < 0 ? 1 : report_rx_errors(&t);
out:
    if (s)
        session_close(s);
    free(s);
    return rc;
}

static int cmd_bench(const struct net_opts *o)
{
    bool use_tx = strcmp(o->mode, "rx") != 0, use_rx = strcmp(o->mode, "tx") != 0;
    struct session *s = calloc(1, sizeof(*s));
    struct totals t;
    int rc = 1, r;

    if (!s || session_open(s, o, use_tx, use_rx) < 0)
        goto out;
    uint64_t stop = vhu_now_ns() + (uint64_t)(o->seconds * 1e9);
    for (unsigned k = 0; k < s->pairs; k++) {
        struct run *run = &s->run[k];
        run->tx_limit = UINT64_MAX;
        run->rx_limit = UINT64_MAX;
        run->stop_ns = stop;
        if (use_tx && use_rx) {
            uint32_t buf = s->rx[k].buf_len;
            uint32_t per = (uint32_t)((NET_HDR + o->size + buf - 1) / buf);
            s->rx[k].spec = &s->spec;
            s->rx[k].tx = &s->tx[k];
            run->max_inflight = VHU_MAX(s->rx[k].nbufs / per, 1u);
        }
    }
    double cpu0 = cpu_now();
    r = run_pairs(s, &t);
    double cpu = cpu_now() - cpu0;
    uint64_t pkts = use_rx ? t.rx_pkts : t.tx_done;

    if (use_tx)
        printf("tx: %" PRIu64 " frames consumed, %.3f Mpps, %.2f Gbit/s\n", t.tx_done,
               mpps(t.tx_done, t.secs),
               t.secs > 0 ? (double)t.tx_done * o->size * 8 / t.secs / 1e9 : 0);
    if (use_rx)
        printf("rx: %" PRIu64 " frames received, %.3f Mpps, %.2f Gbit/s\n", t.rx_pkts,
               mpps(t.rx_pkts, t.secs), t.secs > 0 ? (double)t.rx_bytes * 8 / t.secs / 1e9 : 0);
    printf("RESULT mode=%s size=%u ring=%s wait=%s pairs=%u burst=%u qsize=%u pkts=%" PRIu64
           " secs=%.3f mpps=%.3f", o->mode, o->size, ring_name(o), o->poll ? "poll" : "event",
           s->pairs, o->burst, o->ring.queue_size, pkts, t.secs, mpps(pkts, t.secs));
    if (use_tx && use_rx)
        printf(" tx_pkts=%" PRIu64 " tx_mpps=%.3f rx_pkts=%" PRIu64 " rx_mpps=%.3f reordered=%"
               PRIu64, t.tx_done, mpps(t.tx_done, t.secs), t.rx_pkts, mpps(t.rx_pkts, t.secs),
               t.reordered);
    printf(" errors=%" PRIu64 " cpu_ns_per_pkt=%.1f\n", rx_errors(&t),
           pkts ? cpu * 1e9 / (double)pkts : 0.0);
    fflush(stdout);
    rc = r < 0 || pkts == 0 ? 1 : 0;
    if (pkts == 0 && r == 0)
        fprintf(stderr, "vhuctl: no frame moved\n");
    if (report_rx_errors(&t))
        rc = 1;
out:
    if (s)
        session_close(s);
    free(s);
    return rc;
}

int vhuctl_net_main(int argc, char **argv)
{
    struct net_opts o = {
        .ring = {.queue_size = 256},
        .size = 64,
        .pairs = 1,
        .burst = 32,
        .timeout_ms = 5000,
        .seconds = 5,
        .macs = MACS_SWAPPED,
        .dst = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
    };
    const char *sub = argc > 1 ? argv[1] : "";

    o.ring.device = "net";
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        vhuctl_net_usage(stdout);
        vhuctl_ring_usage(stdout);
        return 0;
    }
    if (strcmp(sub, "send") && strcmp(sub, "recv") && strcmp(sub, "bench")) {
        fprintf(stderr, "vhuctl net: %s%s%s: send, recv or bench (vhuctl net --help)\n",
                *sub ? "unknown subcommand '" : "no subcommand", sub, *sub ? "'" : "");
        return 2;
    }
    optind = 2;
    if (parse_net_opts(argc, argv, &o) < 0)
        return 2;
    if (strcmp(sub, "bench") == 0 ? !o.mode : o.count == 0) {
        fprintf(stderr, "vhuctl: net %s needs %s\n", sub,
                strcmp(sub, "bench") == 0 ? "--mode tx|rx|rxtx" : "--count N");
        return 2;
    }
    vhu_log_set_sink(vhu_log_stderr_sink, NULL, o.verbose ? VHU_LOG_DEBUG : VHU_LOG_WARN);
    if (strcmp(sub, "send") == 0)
        return cmd_send(&o);
    if (strcmp(sub, "recv") == 0)
        return cmd_recv(&o);
    return cmd_bench(&o);
}
