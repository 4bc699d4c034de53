/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * virtio-net device model: the real device and backend core in one process, each device test run
 * over both paths of the test driver (tdrv.h: "vhost-user/" over the loopback transport, "core/"
 * through the core's typed calls alone); the test is the virtio-net driver (headers and frames
 * built in frontend memory). Covers config space and features, the sink (split/packed, indirect
 * and event-idx on and off, headers spanning segments), reflect (MACs swapped, payload intact,
 * num_buffers, mergeable buffers, non-mergeable drops, backpressure, offload rules), the source
 * (budget and rescheduling), two queue pairs, and malformed chains; GSO counters, the tap's
 * feature -> TUNSETOFFLOAD mapping, the header offload rules, SEND_RARP (the announce frame on the
 * transmit side: sink counts it, reflect returns it) and NET_SET_MTU.
 */
#include <linux/if_tun.h>
#include <unistd.h>

#include "dev/net_port.h"
#include "frontend/fe_msg.h"
#include "net_testlib.h"
#include "vhu_test.h"

/* ------------------------------------------------------------------------------------------ */

TDRV_TEST(config_and_features)
{
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_SINK,
                                .mac = {0x02, 1, 2, 3, 4, 5},
                                .mtu = 9000,
                                .queue_pairs = 3}};
    struct tb t;
    struct vhu_virtio_net_config c;

    ASSERT_OK(tb_up(&t, &o));
    ASSERT_EQ(t.dev->num_queues, 6);
    ASSERT_OK(tdrv_get_config(t.d, 0, &c, sizeof(c)));
    ASSERT(memcmp(c.mac, o.net.mac, 6) == 0);
    ASSERT_EQ(c.status, VHU_VIRTIO_NET_S_LINK_UP);
    ASSERT_EQ(c.max_virtqueue_pairs, 3);
    ASSERT_EQ(c.mtu, 9000);
    uint64_t f = tdrv_backend_features(t.d);
    ASSERT(vhu_has_feature(f, VHU_VIRTIO_NET_F_MRG_RXBUF));
    ASSERT(vhu_has_feature(f, VHU_VIRTIO_NET_F_MQ));
    ASSERT(vhu_has_feature(f, VHU_VIRTIO_NET_F_GUEST_ANNOUNCE));
    ASSERT(vhu_has_feature(f, VHU_VIRTIO_F_RING_PACKED));
    ASSERT(!vhu_has_feature(f, VHU_VIRTIO_NET_F_CSUM)); /* the sink carries no offloads */
    ASSERT(!vhu_has_feature(f, VHU_VIRTIO_NET_F_CTRL_VQ));
    tb_down(&t);

    struct vhu_device *d;
    struct vhu_net_opts ro = {.port = VHU_NET_PORT_REFLECT};
    ASSERT_OK(vhu_net_new(&ro, &d));
    ASSERT(vhu_has_feature(d->features, VHU_VIRTIO_NET_F_CSUM));
    ASSERT(vhu_has_feature(d->features, VHU_VIRTIO_NET_F_GUEST_TSO4));
    uint8_t mac[6];
    vhu_net_get_mac(d, mac);
    ASSERT((mac[0] & 3) == 2); /* random, unicast, locally administered */
    d->ops->destroy(d);
}

TEST(new_refuses_bad_options)
{
    struct vhu_device *d;
    struct vhu_net_opts bad[] = {
        {.port = VHU_NET_PORT_SOURCE, .source_size = 20},
        {.port = VHU_NET_PORT_SOURCE, .source_size = 1515},
        {.port = VHU_NET_PORT_SINK, .mtu = 67},
        {.port = VHU_NET_PORT_SINK, .queue_pairs = VHU_VIRTIO_NET_MAX_QUEUE_PAIRS + 1},
        {.port = VHU_NET_PORT_SINK, .mac = {1, 2, 3, 4, 5, 6}}, /* multicast */
        {.port = (enum vhu_net_port_kind)42},
    };

    for (size_t i = 0; i < VHU_ARRAY_SIZE(bad); i++)
        ASSERT_ERR(-EINVAL, vhu_net_new(&bad[i], &d));
}

static void run_sink(bool packed, bool indirect, bool event_idx)
{
    enum { N = 200 };
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_SINK}, .packed = packed,
                        .no_indirect = !indirect, .no_event_idx = !event_idx};
    struct tb t;
    uint8_t frame[1514];
    uint64_t bytes = 0;
    unsigned done = 0, sent = 0;

    ASSERT_OK(tb_up(&t, &o));
    while (sent < N) {
        unsigned batch = 0;
        while (sent < N && batch < 30) { /* 4 descriptors each without indirect */
            uint32_t len = 60 + (sent * 37) % 1455;
            make_frame(frame, len, sent);
            ASSERT_OK(tx_add(&t, 1, NULL, frame, len, 1 + sent % 4));
            bytes += len;
            sent++;
            batch++;
        }
        ASSERT_OK(tdrv_kick(t.d, 1));
        uint32_t lens[100];
        unsigned got = collect(&t, 1, batch, 5000, NULL, lens);
        ASSERT_EQ(got, batch);
        for (unsigned i = 0; i < got; i++)
            ASSERT_EQ(lens[i], 0);
        done += got;
    }
    struct vhu_net_stats s = stats(&t, 1);
    ASSERT_EQ(done, N);
    ASSERT_EQ(s.packets, N);
    ASSERT_EQ(s.bytes, bytes);
    ASSERT_EQ(s.drops, 0);
    tb_down(&t);
}

TDRV_TEST(sink_split) { run_sink(false, true, true); }
TDRV_TEST(sink_split_no_indirect_no_event_idx) { run_sink(false, false, false); }
TDRV_TEST(sink_packed) { run_sink(true, true, true); }
TDRV_TEST(sink_packed_no_indirect_no_event_idx) { run_sink(true, false, false); }

/* A frame sent on transmitq 2k+1 comes back on receiveq 2k: MACs swapped, payload intact. */
static void run_reflect(bool packed, bool mrg)
{
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_REFLECT}, .packed = packed, .mrg = mrg};
    struct tb t;
    uint8_t frame[1514], *bufs[4], *got[4];
    uint32_t lens[4];

    ASSERT_OK(tb_up(&t, &o));
    ASSERT_OK(rx_post(&t, 0, 2048, 4, 2, bufs));
    ASSERT_OK(tdrv_kick(t.d, 0));
    for (unsigned i = 0; i < 4; i++) {
        uint32_t len = i == 3 ? 1514 : 64 + i * 100;
        make_frame(frame, len, i);
        ASSERT_OK(tx_add(&t, 1, NULL, frame, len, 1 + i));
        ASSERT_OK(tdrv_kick(t.d, 1));
        ASSERT_EQ(collect(&t, 1, 1, 5000, NULL, NULL), 1);
        ASSERT_EQ(collect(&t, 0, 1, 5000, got, lens), 1);
        ASSERT(got[0] == bufs[i]);
        ASSERT_EQ(lens[0], HDR + len);
        struct vhu_virtio_net_hdr_v1 h;
        memcpy(&h, got[0], HDR);
        ASSERT_EQ(h.num_buffers, 1);
        ASSERT_EQ(h.flags, 0);
        ASSERT_EQ(h.gso_type, 0);
        ASSERT(memcmp(got[0] + HDR, frame + 6, 6) == 0);
        ASSERT(memcmp(got[0] + HDR + 6, frame, 6) == 0);
        ASSERT(memcmp(got[0] + HDR + 12, frame + 12, len - 12) == 0);
    }
    struct vhu_net_stats rx = stats(&t, 0), tx = stats(&t, 1);
    ASSERT_EQ(tx.packets, 4);
    ASSERT_EQ(rx.packets, 4);
    ASSERT_EQ(rx.bytes, tx.bytes);
    ASSERT_EQ(rx.drops + tx.drops, 0);
    tb_down(&t);
}

TDRV_TEST(reflect_split) { run_reflect(false, false); }
TDRV_TEST(reflect_packed) { run_reflect(true, false); }
TDRV_TEST(reflect_split_mergeable) { run_reflect(false, true); }
TDRV_TEST(reflect_packed_mergeable) { run_reflect(true, true); }

/* One kick with more frames than reflect handles between two flushes (and more than a whole
 * burst): every frame comes back once, in order, into the buffers in posting order. */
static void run_reflect_many(bool packed)
{
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_REFLECT}, .packed = packed, .mrg = true};
    struct tb t;
    enum { N = 45 };
    uint8_t frame[200], *bufs[N], *got[N];
    uint32_t lens[N];

    ASSERT_OK(tb_up(&t, &o));
    ASSERT_OK(rx_post(&t, 0, 512, N, 1, bufs));
    ASSERT_OK(tdrv_kick(t.d, 0));
    for (unsigned i = 0; i < N; i++) {
        make_frame(frame, 60 + i, i);
        ASSERT_OK(tx_add(&t, 1, NULL, frame, 60 + i, 1));
    }
    ASSERT_OK(tdrv_kick(t.d, 1));
    ASSERT_EQ(collect(&t, 1, N, 5000, NULL, NULL), N);
    ASSERT_EQ(collect(&t, 0, N, 5000, got, lens), N);
    for (unsigned i = 0; i < N; i++) {
        make_frame(frame, 60 + i, i);
        ASSERT(got[i] == bufs[i]);
        ASSERT_EQ(lens[i], HDR + 60 + i);
        ASSERT(memcmp(got[i] + HDR + 12, frame + 12, 60 + i - 12) == 0);
    }
    ASSERT_EQ(stats(&t, 0).packets, N);
    ASSERT_EQ(stats(&t, 0).drops + stats(&t, 1).drops, 0);
    tb_down(&t);
}

TDRV_TEST(reflect_many_frames_one_kick_split) { run_reflect_many(false); }
TDRV_TEST(reflect_many_frames_one_kick_packed) { run_reflect_many(true); }

/*
 * reflect takes plain frames on a short path (net_rx_reflect_bulk: one descriptor, or a 12-byte
 * header descriptor and the frame; no offload; one receive descriptor that holds it) and leaves
 * everything else to the general one, frame by frame, inside the same burst. One kick of frames
 * in random layouts (those two, a header split over descriptors, NEEDS_CSUM), onto receive
 * chains in random layouts (one descriptor, two, too small for the frame: merged): every frame
 * must come back once, in order, with its header and swapped addresses, whichever path took it.
 */
/*
 * The next packet in used receive chains got[*used..nrx) (lens: their used lengths): its header
 * into h, its num_buffers chains gathered into pkt (cap bytes), *used moved past them. Returns
 * the packet's length (header included), or 0 when num_buffers is 0, names more chains than
 * are there, or the chains overflow pkt.
 */
static size_t rx_gather(uint8_t *const *got, const uint32_t *lens, unsigned nrx, unsigned *used,
                        struct vhu_virtio_net_hdr_v1 *h, uint8_t *pkt, size_t cap)
{
    size_t off = 0;

    memcpy(h, got[*used], HDR);
    if (h->num_buffers < 1 || *used + h->num_buffers > nrx)
        return 0;
    for (unsigned k = 0; k < h->num_buffers; k++, (*used)++) {
        if (off + lens[*used] > cap)
            return 0;
        memcpy(pkt + off, got[*used], lens[*used]);
        off += lens[*used];
    }
    return off;
}

static int tx_add_hdr_desc(struct tb *t, const struct vhu_virtio_net_hdr_v1 *h,
                           const uint8_t *frame, uint32_t len)
{
    uint64_t gpa;
    uint8_t *b = alloc(t, HDR + len, &gpa);
    struct vhu_vqd_seg s[2] = {{gpa, HDR}, {gpa + HDR, len}};

    if (!b)
        return -ENOMEM;
    memcpy(b, h, HDR);
    memcpy(b + HDR, frame, len);
    return vhu_vqd_add(tdrv_vqd(t->d, 1), s, 2, 0, b);
}

static void run_reflect_mixed(bool packed, uint32_t seed)
{
    enum { N = 70, NBUF = 200 };
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_REFLECT}, .packed = packed, .mrg = true,
                        .queue_size = 256,
                        .extra_features = vhu_feature(VHU_VIRTIO_NET_F_CSUM) |
                                          vhu_feature(VHU_VIRTIO_NET_F_GUEST_CSUM) |
                                          vhu_feature(VHU_VIRTIO_NET_F_HOST_TSO4)};
    struct tb t;
    static uint8_t frames[N][400], *got[NBUF];
    static uint32_t flen[N], lens[NBUF];
    static bool csum[N], gso[N];
    unsigned ngso = 0;
    uint8_t pkt[HDR + 400];
    unsigned used = 0, nrx = 0;
    uint64_t bytes = 0;

    ASSERT_OK(tb_up(&t, &o));
    for (unsigned c = 0; c < NBUF; c++) {
        seed = seed * 1103515245u + 12345u;
        switch ((seed >> 16) % 4) {
        case 0: ASSERT_OK(rx_post(&t, 0, 96, 1, 1, NULL)); break; /* merged with the next */
        case 1: ASSERT_OK(rx_post(&t, 0, 1024, 1, 2, NULL)); break;
        default: ASSERT_OK(rx_post(&t, 0, 1024, 1, 1, NULL)); break;
        }
    }
    ASSERT_OK(tdrv_kick(t.d, 0));
    for (unsigned i = 0; i < N; i++) {
        struct vhu_virtio_net_hdr_v1 h = {0};
        seed = seed * 1103515245u + 12345u;
        flen[i] = 60 + (seed >> 8) % 340;
        make_frame(frames[i], flen[i], i);
        csum[i] = (seed >> 20) % 5 == 0;
        if (csum[i])
            h = (struct vhu_virtio_net_hdr_v1){.flags = VHU_VIRTIO_NET_HDR_F_NEEDS_CSUM,
                                               .csum_start = 34, .csum_offset = 6};
        /* GSO the driver did not accept on receive (no GUEST_TSO4): reflect drops it */
        gso[i] = (seed >> 28) % 6 == 0;
        if (gso[i]) {
            h.gso_type = VHU_VIRTIO_NET_HDR_GSO_TCPV4;
            h.gso_size = 1448;
            ngso++;
        }
        switch ((seed >> 24) % 5) {
        case 0: ASSERT_OK(tx_add_hdr_desc(&t, &h, frames[i], flen[i])); break;
        case 1: ASSERT_OK(tx_add(&t, 1, &h, frames[i], flen[i], 3)); break;
        case 2: ASSERT_OK(tx_add(&t, 1, &h, frames[i], flen[i], 2)); break; /* 5 | 7 + frame */
        default: ASSERT_OK(tx_add(&t, 1, &h, frames[i], flen[i], 1)); break;
        }
        if (!gso[i])
            bytes += flen[i];
    }
    ASSERT_OK(tdrv_kick(t.d, 1));
    ASSERT_EQ(collect(&t, 1, N, 5000, NULL, NULL), N);
    nrx = collect(&t, 0, NBUF, 500, got, lens);
    for (unsigned i = 0; i < N; i++) {
        struct vhu_virtio_net_hdr_v1 h;
        if (gso[i])
            continue;
        ASSERT(used < nrx);
        ASSERT_EQ(rx_gather(got, lens, nrx, &used, &h, pkt, sizeof(pkt)), HDR + flen[i]);
        ASSERT_EQ(h.flags, csum[i] ? VHU_VIRTIO_NET_HDR_F_NEEDS_CSUM : 0);
        ASSERT_EQ(h.gso_type, 0);
        ASSERT_EQ(h.csum_start, csum[i] ? 34 : 0);
        ASSERT_EQ(h.csum_offset, csum[i] ? 6 : 0);
        ASSERT(memcmp(pkt + HDR, frames[i] + 6, 6) == 0);
        ASSERT(memcmp(pkt + HDR + 6, frames[i], 6) == 0);
        ASSERT(memcmp(pkt + HDR + 12, frames[i] + 12, flen[i] - 12) == 0);
    }
    ASSERT_EQ(used, nrx);
    struct vhu_net_stats rx = stats(&t, 0), tx = stats(&t, 1);
    ASSERT_EQ(tx.packets, N - ngso);
    ASSERT_EQ(rx.packets, N - ngso);
    ASSERT_EQ(tx.bytes, bytes);
    ASSERT_EQ(rx.bytes, bytes);
    ASSERT_EQ(tx.drops, ngso);
    ASSERT_EQ(rx.drops, 0);
    tb_down(&t);
}

TDRV_TEST(reflect_mixed_layouts_split)
{
    for (uint32_t seed = 1; seed <= 4; seed++)
        run_reflect_mixed(false, seed);
}

TDRV_TEST(reflect_mixed_layouts_packed)
{
    for (uint32_t seed = 1; seed <= 4; seed++)
        run_reflect_mixed(true, seed);
}

/*
 * A guest may hand reflect a receive buffer that overlaps the frame it transmits (found by
 * tests/fuzz/fuzz_dev: memcpy with overlapping ranges, undefined behaviour, an ASan report). The
 * copy must behave as memmove: here the receive buffer starts 8 bytes before the transmit chain,
 * so header and swapped addresses land on the transmit header (already read) and the frame is
 * copied 8 bytes down over itself.
 */
TDRV_TEST(reflect_overlapping_buffers)
{
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_REFLECT}, .no_indirect = true};
    struct tb t;
    const uint32_t len = 300;
    uint8_t frame[300], want[300];
    uint64_t gpa;
    uint32_t lens[1];
    uint8_t *got[1];

    ASSERT_OK(tb_up(&t, &o));
    uint8_t *area = alloc(&t, 4096, &gpa);
    ASSERT(area);
    make_frame(frame, len, 7);
    memset(area, 0, HDR);
    memcpy(area + 64 + HDR, frame, len); /* the transmit chain: header + frame at area + 64 */
    memcpy(want, frame + 6, 6);
    memcpy(want + 6, frame, 6);
    memcpy(want + 12, frame + 12, len - 12);
    ASSERT_OK(vhu_vqd_add(tdrv_vqd(t.d, 0), &(struct vhu_vqd_seg){gpa + 56, 2048}, 0, 1, area));
    ASSERT_OK(tdrv_kick(t.d, 0));
    ASSERT_OK(vhu_vqd_add(tdrv_vqd(t.d, 1), &(struct vhu_vqd_seg){gpa + 64, HDR + len}, 1, 0,
                          area + 1));
    ASSERT_OK(tdrv_kick(t.d, 1));
    ASSERT_EQ(collect(&t, 1, 1, 5000, NULL, NULL), 1);
    ASSERT_EQ(collect(&t, 0, 1, 5000, got, lens), 1);
    ASSERT(got[0] == area);
    ASSERT_EQ(lens[0], HDR + len);
    ASSERT(memcmp(area + 56 + HDR, want, len) == 0);
    tb_down(&t);
}

/* MRG_RXBUF: a 1514-byte frame + header over 512-byte chains takes three of them. */
static void run_mergeable_small(bool packed)
{
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_REFLECT}, .packed = packed, .mrg = true};
    struct tb t;
    uint8_t frame[1514], *bufs[4], *got[4], out[1536];
    uint32_t lens[4];

    ASSERT_OK(tb_up(&t, &o));
    ASSERT_OK(rx_post(&t, 0, 512, 4, 1, bufs));
    ASSERT_OK(tdrv_kick(t.d, 0));
    make_frame(frame, sizeof(frame), 9);
    ASSERT_OK(tx_add(&t, 1, NULL, frame, sizeof(frame), 3));
    ASSERT_OK(tdrv_kick(t.d, 1));
    ASSERT_EQ(collect(&t, 1, 1, 5000, NULL, NULL), 1);
    ASSERT_EQ(collect(&t, 0, 4, 300, got, lens), 3);
    ASSERT_EQ(lens[0], 512);
    ASSERT_EQ(lens[1], 512);
    ASSERT_EQ(lens[2], HDR + 1514 - 1024);
    for (unsigned i = 0; i < 3; i++) {
        ASSERT(got[i] == bufs[i]);
        memcpy(out + 512 * i, got[i], lens[i]);
    }
    struct vhu_virtio_net_hdr_v1 h;
    memcpy(&h, out, HDR);
    ASSERT_EQ(h.num_buffers, 3);
    ASSERT(memcmp(out + HDR, frame + 6, 6) == 0);
    ASSERT(memcmp(out + HDR + 6, frame, 6) == 0);
    ASSERT(memcmp(out + HDR + 12, frame + 12, sizeof(frame) - 12) == 0);
    /* the fourth chain is still there: a small frame lands in it */
    make_frame(frame, 100, 1);
    ASSERT_OK(tx_add(&t, 1, NULL, frame, 100, 1));
    ASSERT_OK(tdrv_kick(t.d, 1));
    ASSERT_EQ(collect(&t, 0, 1, 5000, got, lens), 1);
    ASSERT(got[0] == bufs[3]);
    ASSERT_EQ(lens[0], HDR + 100);
    memcpy(&h, got[0], HDR);
    ASSERT_EQ(h.num_buffers, 1);
    ASSERT_EQ(stats(&t, 0).packets, 2);
    tb_down(&t);
}

TDRV_TEST(mergeable_small_buffers_split) { run_mergeable_small(false); }
TDRV_TEST(mergeable_small_buffers_packed) { run_mergeable_small(true); }

/*
 * Receive chains are taken ahead for a transmit burst (one per frame), and a mergeable packet
 * needs more: it goes on with chains popped past them, and when the ring runs dry a packet
 * holding chains of both kinds gives them all back in order (ahead ones to the burst, the
 * others to the ring) and waits. Every frame must land whole, in posting order.
 */
static void run_mergeable_past_burst(bool packed)
{
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_REFLECT}, .packed = packed, .mrg = true};
    struct tb t;
    uint8_t frame[1200], out[1536], *bufs[8], *got[8];
    uint32_t lens[8];
    struct vhu_virtio_net_hdr_v1 h;

    ASSERT_OK(tb_up(&t, &o));
    /* burst 1: one frame over three chains, two posted: one taken ahead, one popped past it,
     * then none; both go back and the frame waits */
    ASSERT_OK(rx_post(&t, 0, 512, 2, 1, bufs));
    ASSERT_OK(tdrv_kick(t.d, 0));
    make_frame(frame, 1200, 1);
    ASSERT_OK(tx_add(&t, 1, NULL, frame, 1200, 1));
    ASSERT_OK(tdrv_kick(t.d, 1));
    ASSERT_EQ(collect(&t, 1, 1, 100, NULL, NULL), 0);
    ASSERT_EQ(collect(&t, 0, 1, 50, NULL, NULL), 0);
    ASSERT_OK(rx_post(&t, 0, 512, 3, 1, bufs + 2));
    ASSERT_OK(tdrv_kick(t.d, 0));
    ASSERT_EQ(collect(&t, 1, 1, 5000, NULL, NULL), 1);
    ASSERT_EQ(collect(&t, 0, 3, 5000, got, lens), 3);
    for (unsigned i = 0; i < 3; i++) {
        ASSERT(got[i] == bufs[i]);
        memcpy(out + 512 * i, got[i], lens[i]);
    }
    ASSERT_EQ(lens[2], HDR + 1200 - 1024);
    memcpy(&h, out, HDR);
    ASSERT_EQ(h.num_buffers, 3);
    ASSERT(memcmp(out + HDR + 12, frame + 12, 1200 - 12) == 0);
    /* burst 2: two frames over two chains each, two chains left (both taken ahead by frame
     * 2): frame 3 pops past them, finds none and waits for two more */
    for (unsigned i = 2; i < 4; i++) {
        make_frame(frame, 1000, i);
        ASSERT_OK(tx_add(&t, 1, NULL, frame, 1000, 1));
    }
    ASSERT_OK(tdrv_kick(t.d, 1));
    ASSERT_EQ(collect(&t, 1, 2, 200, NULL, NULL), 1);
    ASSERT_EQ(collect(&t, 0, 2, 5000, got, lens), 2);
    ASSERT(got[0] == bufs[3] && got[1] == bufs[4]);
    ASSERT_OK(rx_post(&t, 0, 512, 2, 1, bufs + 5));
    ASSERT_OK(tdrv_kick(t.d, 0));
    ASSERT_EQ(collect(&t, 1, 1, 5000, NULL, NULL), 1);
    ASSERT_EQ(collect(&t, 0, 2, 5000, got, lens), 2);
    ASSERT(got[0] == bufs[5] && got[1] == bufs[6]);
    memcpy(out, got[0], lens[0]);
    memcpy(out + lens[0], got[1], lens[1]);
    memcpy(&h, out, HDR);
    ASSERT_EQ(h.num_buffers, 2);
    ASSERT(memcmp(out + HDR + 12, frame + 12, 1000 - 12) == 0);
    ASSERT_EQ(stats(&t, 0).packets, 3);
    ASSERT_EQ(stats(&t, 0).drops + stats(&t, 1).drops, 0);
    tb_down(&t);
}

TDRV_TEST(mergeable_past_burst_split) { run_mergeable_past_burst(false); }
TDRV_TEST(mergeable_past_burst_packed) { run_mergeable_past_burst(true); }

/* Without MRG_RXBUF one chain must hold the packet: too small, the frame is dropped and the
 * chain stays for the next one. */
TDRV_TEST(non_mergeable_too_small_drops)
{
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_REFLECT}};
    struct tb t;
    uint8_t frame[1514], *bufs[1], *got[1];
    uint32_t lens[1];

    ASSERT_OK(tb_up(&t, &o));
    ASSERT_OK(rx_post(&t, 0, 512, 1, 1, bufs));
    ASSERT_OK(tdrv_kick(t.d, 0));
    make_frame(frame, sizeof(frame), 2);
    ASSERT_OK(tx_add(&t, 1, NULL, frame, sizeof(frame), 1));
    ASSERT_OK(tdrv_kick(t.d, 1));
    ASSERT_EQ(collect(&t, 1, 1, 5000, NULL, NULL), 1);
    ASSERT_EQ(collect(&t, 0, 1, 100, NULL, NULL), 0);
    ASSERT_EQ(stats(&t, 0).drops, 1);
    ASSERT_EQ(stats(&t, 0).packets, 0);
    make_frame(frame, 400, 3);
    ASSERT_OK(tx_add(&t, 1, NULL, frame, 400, 1));
    ASSERT_OK(tdrv_kick(t.d, 1));
    ASSERT_EQ(collect(&t, 0, 1, 5000, got, lens), 1);
    ASSERT(got[0] == bufs[0]);
    ASSERT_EQ(lens[0], HDR + 400);
    ASSERT_EQ(stats(&t, 0).packets, 1);
    tb_down(&t);
}

/* The same inside a burst: the chain taken ahead for the dropped frame goes back to the burst
 * (not to the ring, behind the chain taken ahead after it), and the next frame lands in it. */
TDRV_TEST(non_mergeable_drop_inside_a_burst)
{
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_REFLECT}};
    struct tb t;
    uint8_t frame[1514], *bufs[2], *got[2];
    uint32_t lens[2];

    ASSERT_OK(tb_up(&t, &o));
    ASSERT_OK(rx_post(&t, 0, 512, 2, 1, bufs));
    ASSERT_OK(tdrv_kick(t.d, 0));
    make_frame(frame, sizeof(frame), 2);
    ASSERT_OK(tx_add(&t, 1, NULL, frame, sizeof(frame), 1));
    make_frame(frame, 400, 3);
    ASSERT_OK(tx_add(&t, 1, NULL, frame, 400, 1));
    ASSERT_OK(tdrv_kick(t.d, 1));
    ASSERT_EQ(collect(&t, 1, 2, 5000, NULL, NULL), 2);
    ASSERT_EQ(collect(&t, 0, 2, 200, got, lens), 1);
    ASSERT(got[0] == bufs[0]);
    ASSERT_EQ(lens[0], HDR + 400);
    ASSERT(memcmp(got[0] + HDR + 12, frame + 12, 400 - 12) == 0);
    ASSERT_EQ(stats(&t, 0).drops, 1);
    make_frame(frame, 300, 4);
    ASSERT_OK(tx_add(&t, 1, NULL, frame, 300, 1));
    ASSERT_OK(tdrv_kick(t.d, 1));
    ASSERT_EQ(collect(&t, 0, 1, 5000, got, lens), 1);
    ASSERT(got[0] == bufs[1]);
    ASSERT_EQ(lens[0], HDR + 300);
    ASSERT_EQ(stats(&t, 0).packets, 2);
    tb_down(&t);
}

/* No receive buffers: the transmitted frame waits in its ring; posting buffers releases it. */
/* short: frames and chains reflect takes on its burst path (one descriptor each), which runs out
 * of chains taken ahead in the middle of the burst */
static void run_backpressure(bool packed, bool short_path)
{
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_REFLECT}, .packed = packed, .mrg = true};
    struct tb t;
    uint8_t frame[1000], *got[8];
    uint32_t lens[8];

    ASSERT_OK(tb_up(&t, &o));
    for (unsigned i = 0; i < 8; i++) {
        make_frame(frame, sizeof(frame), i);
        ASSERT_OK(tx_add(&t, 1, NULL, frame, sizeof(frame), short_path ? 1 : 2));
    }
    ASSERT_OK(tdrv_kick(t.d, 1));
    ASSERT_EQ(collect(&t, 1, 8, 100, NULL, NULL), 0);
    /* room for three frames (two 512-byte chains each, or one 2048-byte one), then the rest */
    if (short_path)
        ASSERT_OK(rx_post(&t, 0, 2048, 3, 1, NULL));
    else
        ASSERT_OK(rx_post(&t, 0, 512, 6, 1, NULL));
    ASSERT_OK(tdrv_kick(t.d, 0));
    ASSERT_EQ(collect(&t, 1, 8, 200, NULL, NULL), 3);
    ASSERT_EQ(collect(&t, 0, 6, 500, got, lens), short_path ? 3 : 6);
    for (unsigned i = 0; short_path && i < 3; i++) {
        make_frame(frame, sizeof(frame), i);
        ASSERT_EQ(lens[i], HDR + sizeof(frame));
        ASSERT(memcmp(got[i] + HDR + 12, frame + 12, sizeof(frame) - 12) == 0);
    }
    ASSERT_OK(rx_post(&t, 0, 2048, 5, 1, NULL));
    ASSERT_OK(tdrv_kick(t.d, 0));
    ASSERT_EQ(collect(&t, 1, 5, 5000, NULL, NULL), 5);
    ASSERT_EQ(collect(&t, 0, 5, 5000, got, lens), 5);
    for (unsigned i = 0; i < 5; i++) {
        make_frame(frame, sizeof(frame), 3 + i);
        ASSERT_EQ(lens[i], HDR + sizeof(frame));
        ASSERT(memcmp(got[i] + HDR + 12, frame + 12, sizeof(frame) - 12) == 0);
    }
    ASSERT_EQ(stats(&t, 0).packets, 8);
    ASSERT_EQ(stats(&t, 0).drops + stats(&t, 1).drops, 0);
    tb_down(&t);
}

TDRV_TEST(reflect_backpressure_split) { run_backpressure(false, false); }
TDRV_TEST(reflect_backpressure_packed) { run_backpressure(true, false); }
TDRV_TEST(reflect_backpressure_short_path_split) { run_backpressure(false, true); }
TDRV_TEST(reflect_backpressure_short_path_packed) { run_backpressure(true, true); }

/* Offloads pass through when the driver accepted them on receive, else the frame drops. */
TDRV_TEST(reflect_offloads)
{
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_REFLECT},
                        .extra_features = vhu_feature(VHU_VIRTIO_NET_F_CSUM) |
                                          vhu_feature(VHU_VIRTIO_NET_F_GUEST_CSUM) |
                                          vhu_feature(VHU_VIRTIO_NET_F_HOST_TSO4)};
    struct tb t;
    uint8_t frame[1514], *got[1];
    uint32_t lens[1];

    ASSERT_OK(tb_up(&t, &o));
    ASSERT_OK(rx_post(&t, 0, 2048, 2, 1, NULL));
    ASSERT_OK(tdrv_kick(t.d, 0));
    make_frame(frame, sizeof(frame), 5);
    struct vhu_virtio_net_hdr_v1 h = {.flags = VHU_VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 34,
                                  .csum_offset = 16};
    ASSERT_OK(tx_add(&t, 1, &h, frame, sizeof(frame), 1));
    ASSERT_OK(tdrv_kick(t.d, 1));
    ASSERT_EQ(collect(&t, 0, 1, 5000, got, lens), 1);
    struct vhu_virtio_net_hdr_v1 r;
    memcpy(&r, got[0], HDR);
    ASSERT_EQ(r.flags, VHU_VIRTIO_NET_HDR_F_NEEDS_CSUM);
    ASSERT_EQ(r.csum_start, 34);
    ASSERT_EQ(r.csum_offset, 16);
    /* GSO without GUEST_TSO4: dropped */
    h.gso_type = VHU_VIRTIO_NET_HDR_GSO_TCPV4;
    h.gso_size = 1448;
    ASSERT_OK(tx_add(&t, 1, &h, frame, sizeof(frame), 1));
    ASSERT_OK(tdrv_kick(t.d, 1));
    ASSERT_EQ(collect(&t, 1, 2, 5000, NULL, NULL), 2);
    ASSERT_EQ(collect(&t, 0, 1, 100, NULL, NULL), 0);
    ASSERT_EQ(stats(&t, 1).drops, 1);
    tb_down(&t);
}

/* The source fills every posted buffer, well past one call's budget (rescheduling). */
static void run_source(bool packed, bool mrg)
{
    enum { N = 600, SIZE = 1000 };
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_SOURCE, .source_size = SIZE,
                                .mac = {0x02, 9, 8, 7, 6, 5}},
                        .packed = packed, .mrg = mrg, .queue_size = 1024};
    struct tb t;
    static uint8_t *got[N];
    static uint32_t lens[N];

    ASSERT_OK(tb_up(&t, &o));
    ASSERT_OK(rx_post(&t, 0, 1536, N, 1, NULL));
    ASSERT_OK(tdrv_kick(t.d, 0));
    ASSERT_EQ(collect(&t, 0, N, 5000, got, lens), N);
    for (unsigned i = 0; i < N; i++) {
        ASSERT_EQ(lens[i], HDR + SIZE);
        struct vhu_virtio_net_hdr_v1 h;
        memcpy(&h, got[i], HDR);
        ASSERT_EQ(h.num_buffers, 1);
        ASSERT(memcmp(got[i] + HDR, o.net.mac, 6) == 0);
        ASSERT_EQ(got[i][HDR + 12], 0x88);
        ASSERT_EQ(got[i][HDR + 13], 0xb5);
        ASSERT_EQ(got[i][HDR + SIZE - 1], (uint8_t)(SIZE - 1));
    }
    ASSERT_EQ(stats(&t, 0).packets, N);
    ASSERT_EQ(stats(&t, 0).bytes, (uint64_t)N * SIZE);
    /* more buffers later: filled on their kick */
    ASSERT_OK(rx_post(&t, 0, 1536, 10, 1, NULL));
    ASSERT_OK(tdrv_kick(t.d, 0));
    ASSERT_EQ(collect(&t, 0, 10, 5000, NULL, NULL), 10);
    tb_down(&t);
}

/*
 * source fills chains whose first segment holds the packet on a short path (net_rx_fill_bulk) and
 * hands the others to the general one inside the same burst: chains in random layouts (one
 * segment, a first segment too small for the packet, whole chains too small: merged) must each
 * get exactly the packet, num_buffers telling how many chains it took.
 */
static void run_source_mixed(bool packed, uint32_t seed)
{
    enum { SIZE = 200, NBUF = 120 };
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_SOURCE, .source_size = SIZE,
                                .mac = {0x02, 9, 8, 7, 6, 5}},
                        .packed = packed, .mrg = true, .queue_size = 256};
    struct tb t;
    static uint8_t *got[NBUF];
    static uint32_t lens[NBUF];
    uint8_t pkt[HDR + SIZE], first[HDR + SIZE];
    unsigned nrx, used = 0, npkt = 0;

    ASSERT_OK(tb_up(&t, &o));
    for (unsigned c = 0; c < NBUF; c++) {
        seed = seed * 1103515245u + 12345u;
        switch ((seed >> 16) % 4) {
        case 0: ASSERT_OK(rx_post(&t, 0, 64, 1, 1, NULL)); break;  /* merged */
        case 1: ASSERT_OK(rx_post(&t, 0, 400, 1, 4, NULL)); break; /* 100 + 100 + ... */
        default: ASSERT_OK(rx_post(&t, 0, 1024, 1, 1, NULL)); break;
        }
    }
    ASSERT_OK(tdrv_kick(t.d, 0));
    nrx = collect(&t, 0, NBUF, 2000, got, lens);
    while (used < nrx) {
        struct vhu_virtio_net_hdr_v1 h;
        /* every used chain belongs to a whole packet (a packet short of chains gave its own
         * back: they are not used) */
        ASSERT_EQ(rx_gather(got, lens, nrx, &used, &h, pkt, sizeof(pkt)), HDR + SIZE);
        ASSERT_EQ(h.flags, 0);
        ASSERT_EQ(h.gso_type, 0);
        if (!npkt++)
            memcpy(first, pkt, sizeof(pkt));
        /* every field but num_buffers as in the first packet, the frame the same */
        ASSERT(memcmp(pkt, first, HDR - 2) == 0);
        ASSERT(memcmp(pkt + HDR, first + HDR, SIZE) == 0);
        ASSERT(memcmp(pkt + HDR, o.net.mac, 6) == 0);
        ASSERT_EQ(pkt[HDR + SIZE - 1], (uint8_t)(SIZE - 1));
    }
    ASSERT_EQ(used, nrx);
    ASSERT(npkt > NBUF / 3);
    ASSERT_EQ(stats(&t, 0).packets, npkt);
    ASSERT_EQ(stats(&t, 0).bytes, (uint64_t)npkt * SIZE);
    ASSERT_EQ(stats(&t, 0).drops, 0);
    tb_down(&t);
}

TDRV_TEST(source_mixed_layouts_split)
{
    for (uint32_t seed = 1; seed <= 4; seed++)
        run_source_mixed(false, seed);
}

TDRV_TEST(source_mixed_layouts_packed)
{
    for (uint32_t seed = 1; seed <= 4; seed++)
        run_source_mixed(true, seed);
}

TDRV_TEST(source_split) { run_source(false, false); }
TDRV_TEST(source_packed_mergeable) { run_source(true, true); }

/*
 * The receive header is not stored when the buffer already holds it (the line stays shared
 * with the driver), so every byte of it must be compared: buffers laid out as DPDK's mbufs
 * (the header ends where a cache line ends, the frame starts on the next), their header
 * areas holding garbage, the very header vhud writes, and that header with one byte off in
 * its last four (csum_offset, num_buffers). Each must come back with exactly the right header.
 */
static void run_source_header_store(bool packed)
{
    enum { SIZE = 64, NBUF = 5 };
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_SOURCE, .source_size = SIZE,
                                .mac = {0x02, 9, 8, 7, 6, 5}},
                        .packed = packed, .mrg = true, .queue_size = 64};
    const struct vhu_virtio_net_hdr_v1 want = {.num_buffers = 1};
    struct tb t;
    uint8_t *hdrs[NBUF], *got[NBUF];
    uint32_t lens[NBUF];

    ASSERT_OK(tb_up(&t, &o));
    for (unsigned i = 0; i < NBUF; i++) {
        uint64_t gpa;
        uint8_t *b = alloc(&t, 64 + 256, &gpa);
        struct vhu_vqd_seg seg = {gpa + 64 - HDR, 256};

        ASSERT(b);
        hdrs[i] = b + 64 - HDR;
        memset(b, 0xee, 64 + 256);
        if (i > 0)
            memcpy(hdrs[i], &want, HDR);
        if (i == 2)
            hdrs[i][10] = 7; /* num_buffers 7 */
        if (i == 3)
            hdrs[i][8] = 1; /* csum_offset 1 */
        if (i == 4)
            hdrs[i][0] = VHU_VIRTIO_NET_HDR_F_NEEDS_CSUM;
        ASSERT_OK(vhu_vqd_add(tdrv_vqd(t.d, 0), &seg, 0, 1, hdrs[i]));
    }
    ASSERT_OK(tdrv_kick(t.d, 0));
    ASSERT_EQ(collect(&t, 0, NBUF, 5000, got, lens), NBUF);
    for (unsigned i = 0; i < NBUF; i++) {
        ASSERT(got[i] == hdrs[i]);
        ASSERT_EQ(lens[i], HDR + SIZE);
        ASSERT(memcmp(got[i], &want, HDR) == 0);
        ASSERT(memcmp(got[i] + HDR, o.net.mac, 6) == 0);
    }
    tb_down(&t);
}

TDRV_TEST(source_header_store) { run_source_header_store(false); }
TDRV_TEST(source_header_store_packed) { run_source_header_store(true); }

static void two_queue_pairs(unsigned workers)
{
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_REFLECT, .queue_pairs = 2}, .mrg = true,
                        .workers = workers};
    struct tb t;
    uint8_t frame[300], *got[2];
    uint32_t lens[2];

    ASSERT_OK(tb_up(&t, &o));
    ASSERT_EQ(tdrv_num_queues(t.d), 4);
    ASSERT_OK(rx_post(&t, 0, 2048, 1, 1, NULL));
    ASSERT_OK(rx_post(&t, 2, 2048, 2, 1, NULL));
    ASSERT_OK(tdrv_kick(t.d, 0));
    ASSERT_OK(tdrv_kick(t.d, 2));
    make_frame(frame, sizeof(frame), 1);
    ASSERT_OK(tx_add(&t, 3, NULL, frame, 200, 1));
    ASSERT_OK(tx_add(&t, 3, NULL, frame, 300, 1));
    ASSERT_OK(tdrv_kick(t.d, 3));
    ASSERT_EQ(collect(&t, 2, 2, 5000, got, lens), 2);
    ASSERT_EQ(lens[0], HDR + 200);
    ASSERT_EQ(lens[1], HDR + 300);
    ASSERT_EQ(collect(&t, 0, 1, 100, NULL, NULL), 0);
    ASSERT_OK(tx_add(&t, 1, NULL, frame, 100, 1));
    ASSERT_OK(tdrv_kick(t.d, 1));
    ASSERT_EQ(collect(&t, 0, 1, 5000, got, lens), 1);
    ASSERT_EQ(lens[0], HDR + 100);
    ASSERT_EQ(stats(&t, 0).packets, 1);
    ASSERT_EQ(stats(&t, 1).packets, 1);
    ASSERT_EQ(stats(&t, 2).packets, 2);
    ASSERT_EQ(stats(&t, 3).packets, 2);
    ASSERT_EQ(stats(&t, 3).bytes, 500);
    ASSERT_ERR(-EINVAL, vhu_net_get_stats(t.dev, 4, &(struct vhu_net_stats){0}));
    tb_down(&t);
}

TDRV_TEST(two_queue_pairs) { two_queue_pairs(0); }

/*
 * A busy-polling worker (split and packed, event idx on and off): traffic flows while it polls,
 * after the poll window ends (the worker sleeps: kicks must be back on), and on a transmitq
 * disabled while the worker polled and enabled again after it slept.
 */
static void polled(bool packed, bool event_idx)
{
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_REFLECT}, .mrg = true, .packed = packed,
                        .workers = 1, .poll_us = 2000, .no_event_idx = !event_idx};
    struct tb t;
    uint8_t frame[200];

    ASSERT_OK(tb_up(&t, &o));
    ASSERT_OK(rx_post(&t, 0, 2048, 64, 1, NULL));
    ASSERT_OK(tdrv_kick(t.d, 0));
    for (unsigned round = 0; round < 3; round++) {
        for (unsigned i = 0; i < 8; i++) {
            make_frame(frame, sizeof(frame), i);
            ASSERT_OK(tx_add(&t, 1, NULL, frame, sizeof(frame), 1));
        }
        ASSERT_OK(tdrv_kick(t.d, 1)); /* kicks only if the device asks for one */
        ASSERT_EQ(collect(&t, 1, 8, 5000, NULL, NULL), 8);
        ASSERT_EQ(collect(&t, 0, 8, 5000, NULL, NULL), 8);
        if (round == 1) {
            /* transmitq disabled while the worker still polls, enabled after it slept */
            ASSERT_OK(tdrv_enable(t.d, 1, false));
            usleep(10000);
            ASSERT_OK(tdrv_enable(t.d, 1, true));
        }
        usleep(10000); /* past the poll window: the worker sleeps, kicks are needed again */
    }
    ASSERT_EQ(stats(&t, 1).packets, 24);
    ASSERT_EQ(stats(&t, 0).packets, 24);
    tb_down(&t);
}

TDRV_TEST(polled_split) { polled(false, true); }
TDRV_TEST(polled_split_no_event_idx) { polled(false, false); }
TDRV_TEST(polled_packed) { polled(true, true); }
TDRV_TEST(polled_packed_no_event_idx) { polled(true, false); }
/* Each pair on its own worker thread: rx and tx of a pair stay together (queue_group). */
TDRV_TEST(two_queue_pairs_two_workers) { two_queue_pairs(2); }

/* A transmit chain shorter than the header (or a runt frame) is completed, dropped, counted. */
TDRV_TEST(malformed_tx_dropped_and_counted)
{
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_SINK}};
    struct tb t;
    uint64_t gpa;
    uint8_t *b, frame[100];
    uint8_t status = 0;

    ASSERT_OK(tb_up(&t, &o));
    b = alloc(&t, 64, &gpa);
    ASSERT(b);
    struct vhu_vqd_seg s8 = {gpa, 8};
    struct vhu_vqd_seg s20 = {gpa, HDR + 8};
    ASSERT_OK(vhu_vqd_add(tdrv_vqd(t.d, 1), &s8, 1, 0, b));
    ASSERT_OK(vhu_vqd_add(tdrv_vqd(t.d, 1), &s20, 1, 0, b + 1));
    make_frame(frame, sizeof(frame), 0);
    ASSERT_OK(tx_add(&t, 1, NULL, frame, sizeof(frame), 2));
    ASSERT_OK(tdrv_kick(t.d, 1));
    ASSERT_EQ(collect(&t, 1, 3, 5000, NULL, NULL), 3);
    struct vhu_net_stats st = stats(&t, 1);
    ASSERT_EQ(st.drops, 2);
    ASSERT_EQ(st.errors, 2);
    ASSERT_EQ(st.packets, 1);
    ASSERT_EQ(st.bytes, sizeof(frame));
    ASSERT_OK(tdrv_get_status(t.d, &status));
    ASSERT(!(status & VHU_VIRTIO_CONFIG_S_NEEDS_RESET));
    tb_down(&t);
}

/* A receive chain with a readable descriptor breaks that receive queue only. */
TDRV_TEST(rx_readable_breaks_only_that_queue)
{
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_SOURCE, .source_size = 200,
                                .queue_pairs = 2}};
    struct tb t;
    uint64_t gpa;
    uint8_t *b, status = 0;

    ASSERT_OK(tb_up(&t, &o));
    b = alloc(&t, 4096, &gpa);
    ASSERT(b);
    struct vhu_vqd_seg s[2] = {{gpa, 16}, {gpa + 64, 2048}};
    ASSERT_OK(vhu_vqd_add(tdrv_vqd(t.d, 0), s, 1, 1, b));
    ASSERT_OK(tdrv_kick(t.d, 0));
    ASSERT_EQ(collect(&t, 0, 1, 200, NULL, NULL), 0);
    ASSERT_OK(tdrv_get_status(t.d, &status));
    ASSERT(status & VHU_VIRTIO_CONFIG_S_NEEDS_RESET);
    /* pair 1 runs on */
    ASSERT_OK(rx_post(&t, 2, 1024, 3, 1, NULL));
    ASSERT_OK(tdrv_kick(t.d, 2));
    ASSERT_EQ(collect(&t, 2, 3, 5000, NULL, NULL), 3);
    ASSERT_EQ(stats(&t, 2).packets, 3);
    tb_down(&t);
}

/* A receive buffer smaller than the header is a driver error too (§5.1.6.3.1). */
TDRV_TEST(rx_buffer_smaller_than_header_breaks)
{
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_SOURCE, .source_size = 60}, .mrg = true};
    struct tb t;
    uint8_t status = 0;

    ASSERT_OK(tb_up(&t, &o));
    ASSERT_OK(rx_post(&t, 0, 8, 2, 1, NULL));
    ASSERT_OK(tdrv_kick(t.d, 0));
    ASSERT_EQ(collect(&t, 0, 1, 200, NULL, NULL), 0);
    ASSERT_OK(tdrv_get_status(t.d, &status));
    ASSERT(status & VHU_VIRTIO_CONFIG_S_NEEDS_RESET);
    tb_down(&t);
}

/*
 * reflect's short path must not take a receive chain with no writable segment (one zero-length
 * descriptor): its element slot still holds the iovec of the buffer it carried before (the
 * first frame's), which must not be written again. The chain breaks the queue, as on the
 * general path, and the frame is not delivered anywhere.
 */
TDRV_TEST(reflect_zero_length_rx_chain_breaks)
{
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_REFLECT}, .no_indirect = true};
    struct tb t;
    uint8_t frame[100], *bufs[1], *got[2];
    uint32_t lens[2];
    uint8_t status = 0;
    uint64_t gpa;

    ASSERT_OK(tb_up(&t, &o));
    ASSERT_OK(rx_post(&t, 0, 1024, 1, 1, bufs));
    ASSERT_OK(tdrv_kick(t.d, 0));
    make_frame(frame, sizeof(frame), 1);
    ASSERT_OK(tx_add(&t, 1, NULL, frame, sizeof(frame), 1));
    ASSERT_OK(tdrv_kick(t.d, 1));
    ASSERT_EQ(collect(&t, 0, 1, 5000, got, lens), 1);
    ASSERT_EQ(collect(&t, 1, 1, 5000, NULL, NULL), 1);
    memset(bufs[0], 0xee, 1024);
    uint8_t *zero = alloc(&t, 64, &gpa);
    ASSERT(zero);
    ASSERT_OK(vhu_vqd_add(tdrv_vqd(t.d, 0), &(struct vhu_vqd_seg){gpa, 0}, 0, 1, zero));
    ASSERT_OK(tdrv_kick(t.d, 0));
    make_frame(frame, sizeof(frame), 2);
    ASSERT_OK(tx_add(&t, 1, NULL, frame, sizeof(frame), 1));
    ASSERT_OK(tdrv_kick(t.d, 1));
    ASSERT_EQ(collect(&t, 0, 1, 200, got, lens), 0);
    ASSERT_OK(tdrv_get_status(t.d, &status));
    ASSERT(status & VHU_VIRTIO_CONFIG_S_NEEDS_RESET);
    for (unsigned i = 0; i < 1024; i++)
        ASSERT_EQ(bufs[0][i], 0xee);
    tb_down(&t);
}

/* GSO frames are counted on both queues they cross (reflect with TSO accepted both ways). */
TDRV_TEST(gso_frames_counted)
{
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_REFLECT}, .mrg = true,
                        .extra_features = vhu_feature(VHU_VIRTIO_NET_F_CSUM) |
                                          vhu_feature(VHU_VIRTIO_NET_F_GUEST_CSUM) |
                                          vhu_feature(VHU_VIRTIO_NET_F_HOST_TSO4) |
                                          vhu_feature(VHU_VIRTIO_NET_F_GUEST_TSO4)};
    struct tb t;
    static uint8_t frame[20000];
    uint8_t *got[16];
    uint32_t lens[16];

    ASSERT_OK(tb_up(&t, &o));
    ASSERT_OK(rx_post(&t, 0, 4096, 16, 1, NULL));
    ASSERT_OK(tdrv_kick(t.d, 0));
    make_frame(frame, sizeof(frame), 9);
    struct vhu_virtio_net_hdr_v1 h = {.flags = VHU_VIRTIO_NET_HDR_F_NEEDS_CSUM,
                                  .gso_type = VHU_VIRTIO_NET_HDR_GSO_TCPV4, .hdr_len = 54,
                                  .gso_size = 1448, .csum_start = 34, .csum_offset = 16};
    ASSERT_OK(tx_add(&t, 1, &h, frame, sizeof(frame), 1));
    ASSERT_OK(tx_add(&t, 1, NULL, frame, 1000, 1));
    ASSERT_OK(tdrv_kick(t.d, 1));
    ASSERT_EQ(collect(&t, 1, 2, 5000, NULL, NULL), 2);
    /* 20012 bytes over 4096-byte chains: 5 of them, then one for the small frame */
    ASSERT_EQ(collect(&t, 0, 6, 5000, got, lens), 6);
    struct vhu_virtio_net_hdr_v1 r;
    memcpy(&r, got[0], HDR);
    ASSERT_EQ(r.num_buffers, 5);
    ASSERT_EQ(r.gso_type, VHU_VIRTIO_NET_HDR_GSO_TCPV4);
    ASSERT_EQ(r.gso_size, 1448);
    struct vhu_net_stats rx = stats(&t, 0), tx = stats(&t, 1);
    ASSERT_EQ(tx.packets, 2);
    ASSERT_EQ(tx.gso, 1);
    ASSERT_EQ(rx.packets, 2);
    ASSERT_EQ(rx.gso, 1);
    ASSERT_EQ(rx.bytes, sizeof(frame) + 1000);
    tb_down(&t);
}

/* tap: TUNSETOFFLOAD gets exactly the receive offloads the driver accepted (TSO needs CSUM). */
TEST(tap_offloads_mapping)
{
    const uint64_t csum = vhu_feature(VHU_VIRTIO_NET_F_GUEST_CSUM);
    const uint64_t t4 = vhu_feature(VHU_VIRTIO_NET_F_GUEST_TSO4);
    const uint64_t t6 = vhu_feature(VHU_VIRTIO_NET_F_GUEST_TSO6);
    const uint64_t host = vhu_feature(VHU_VIRTIO_NET_F_CSUM) | vhu_feature(VHU_VIRTIO_NET_F_HOST_TSO4) |
                          vhu_feature(VHU_VIRTIO_NET_F_HOST_TSO6);

    ASSERT_EQ(net_tap_offloads(0), 0);
    ASSERT_EQ(net_tap_offloads(host), 0); /* transmit offloads say nothing about receive */
    ASSERT_EQ(net_tap_offloads(csum), TUN_F_CSUM);
    ASSERT_EQ(net_tap_offloads(csum | t4), TUN_F_CSUM | TUN_F_TSO4);
    ASSERT_EQ(net_tap_offloads(csum | t6), TUN_F_CSUM | TUN_F_TSO6);
    ASSERT_EQ(net_tap_offloads(csum | t4 | t6 | host), TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6);
    /* TSO without GUEST_CSUM (QEMU csum=off,guest_csum=off still offers GUEST_TSO4/6): none */
    ASSERT_EQ(net_tap_offloads(t4 | t6), 0);
    /* never ECN or UFO: not offered */
    ASSERT_EQ(net_tap_offloads(~0ull) & (TUN_F_TSO_ECN | TUN_F_UFO), 0);
}

/* Header rules: what a received header may carry, what a transmitted one may ask for. */
TEST(offload_header_rules)
{
    const uint64_t all = vhu_feature(VHU_VIRTIO_NET_F_CSUM) | vhu_feature(VHU_VIRTIO_NET_F_GUEST_CSUM) |
                         vhu_feature(VHU_VIRTIO_NET_F_HOST_TSO4) | vhu_feature(VHU_VIRTIO_NET_F_HOST_TSO6) |
                         vhu_feature(VHU_VIRTIO_NET_F_GUEST_TSO4) |
                         vhu_feature(VHU_VIRTIO_NET_F_GUEST_TSO6);
    struct vhu_virtio_net_hdr_v1 plain = {0}, csum = {.flags = VHU_VIRTIO_NET_HDR_F_NEEDS_CSUM};
    struct vhu_virtio_net_hdr_v1 tso4 = {.flags = VHU_VIRTIO_NET_HDR_F_NEEDS_CSUM,
                                     .gso_type = VHU_VIRTIO_NET_HDR_GSO_TCPV4};
    struct vhu_virtio_net_hdr_v1 tso6 = tso4, ecn = tso4, udp = tso4, bad = tso4;

    tso6.gso_type = VHU_VIRTIO_NET_HDR_GSO_TCPV6;
    ecn.gso_type |= VHU_VIRTIO_NET_HDR_GSO_ECN;
    udp.gso_type = VHU_VIRTIO_NET_HDR_GSO_UDP;
    bad.gso_type = 2;
    ASSERT(net_hdr_rx_ok(0, &plain) && net_hdr_tx_ok(0, &plain));
    ASSERT(!net_hdr_rx_ok(0, &csum) && !net_hdr_tx_ok(0, &csum));
    ASSERT(net_hdr_rx_ok(all, &csum) && net_hdr_tx_ok(all, &csum));
    ASSERT(net_hdr_rx_ok(all, &tso4) && net_hdr_tx_ok(all, &tso4));
    ASSERT(net_hdr_rx_ok(all, &tso6) && net_hdr_tx_ok(all, &tso6));
    /* receive TSO4 accepted, transmit not: only the receive side may carry it */
    uint64_t rx4 = vhu_feature(VHU_VIRTIO_NET_F_GUEST_CSUM) | vhu_feature(VHU_VIRTIO_NET_F_GUEST_TSO4);
    ASSERT(net_hdr_rx_ok(rx4, &tso4) && !net_hdr_tx_ok(rx4, &tso4));
    ASSERT(!net_hdr_rx_ok(rx4, &tso6));
    /* ECN, UDP (UFO) and unknown GSO types: never with what vhu offers */
    ASSERT(!net_hdr_rx_ok(all, &ecn) && !net_hdr_tx_ok(all, &ecn));
    ASSERT(!net_hdr_rx_ok(all, &udp) && !net_hdr_tx_ok(all, &udp));
    ASSERT(!net_hdr_rx_ok(~0ull, &bad) && !net_hdr_tx_ok(~0ull, &bad));
}

/* ---- SEND_RARP and NET_SET_MTU ------------------------------------------------------------ */

/* vhost-user only: SEND_RARP, NET_SET_MTU and the protocol features that offer them are
 * vhost-user messages (raw, with vhu_fe_raw), with no typed call in the core. */

#define NET_PF (VHU_BIT(VHOST_USER_PROTOCOL_F_RARP) | VHU_BIT(VHOST_USER_PROTOCOL_F_NET_MTU))

static const uint8_t moved_mac[6] = {0x52, 0x54, 0x00, 0xab, 0xcd, 0xef};

static int send_rarp(struct tb *t, const uint8_t mac[6], bool ack, uint64_t *ack_val)
{
    struct vhu_msg m, reply;
    int r;

    vhu_msg_init(&m, VHOST_USER_SEND_RARP,
                 VHOST_USER_VERSION | (ack ? VHOST_USER_NEED_REPLY_MASK : 0), 8);
    m.payload.u64 = 0;
    memcpy(&m.payload.u64, mac, 6);
    r = vhu_fe_raw(tdrv_fe(t->d), &m, &reply);
    if (r == 0 && ack)
        *ack_val = reply.payload.u64;
    return r;
}

static int set_mtu(struct tb *t, uint64_t mtu, uint64_t *ack_val)
{
    struct vhu_msg m, reply;
    int r;

    vhu_msg_init(&m, VHOST_USER_NET_SET_MTU, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, 8);
    m.payload.u64 = mtu;
    r = vhu_fe_raw(tdrv_fe(t->d), &m, &reply);
    if (r == 0)
        *ack_val = reply.payload.u64;
    return r;
}

/* Wait until queue q counted want packets (the backend runs in the frontend's waits). */
static bool wait_packets(struct tb *t, unsigned q, uint64_t want)
{
    for (int i = 0; i < 250 && stats(t, q).packets < want; i++)
        tdrv_wait(t->d, q, 20);
    return stats(t, q).packets == want;
}

/* The RARP frame as a switch port sees it (RFC 903 request reverse). */
static void check_rarp(const uint8_t *f, const uint8_t *dst, const uint8_t *src)
{
    static const uint8_t head[] = {0x80, 0x35, 0, 1, 8, 0, 6, 4, 0, 3};
    static const uint8_t zero[4];

    ASSERT(memcmp(f, dst, 6) == 0);
    ASSERT(memcmp(f + 6, src, 6) == 0);
    ASSERT(memcmp(f + 12, head, sizeof(head)) == 0);
    ASSERT(memcmp(f + 22, moved_mac, 6) == 0);
    ASSERT(memcmp(f + 28, zero, 4) == 0);
    ASSERT(memcmp(f + 32, moved_mac, 6) == 0);
    ASSERT(memcmp(f + 38, zero, 4) == 0);
}

TEST(protocol_features_rarp_mtu_offered)
{
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_SINK}, .protocol_features = NET_PF};
    struct tb t;

    ASSERT_OK(tb_up(&t, &o));
    ASSERT((vhu_backend_protocol_features(t.b) & NET_PF) == NET_PF);
    ASSERT((vhu_fe_protocol_features(tdrv_fe(t.d)) & NET_PF) == NET_PF);
    tb_down(&t);
}

/* sink: the announce goes out on transmitq 0 and is counted there (60 bytes), also from a
 * worker thread that owns the queue while the message arrives on the control thread. */
static void run_rarp_sink(unsigned workers)
{
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_SINK}, .protocol_features = NET_PF,
                        .workers = workers};
    struct tb t;
    uint64_t ack = 9;

    ASSERT_OK(tb_up(&t, &o));
    ASSERT_OK(send_rarp(&t, moved_mac, true, &ack));
    ASSERT_EQ(ack, 0);
    ASSERT(wait_packets(&t, 1, 1));
    ASSERT_EQ(stats(&t, 1).bytes, 60);
    ASSERT_OK(send_rarp(&t, moved_mac, false, NULL));
    ASSERT(wait_packets(&t, 1, 2));
    ASSERT_EQ(stats(&t, 0).packets, 0);
    tb_down(&t);
}

TEST(rarp_sink) { run_rarp_sink(0); }
TEST(rarp_sink_worker) { run_rarp_sink(1); }

/* reflect: the announce comes back on receiveq 0, as a transmitted frame would (MACs swapped). */
TEST(rarp_reflect)
{
    static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_REFLECT}, .protocol_features = NET_PF};
    struct tb t;
    uint8_t *got[1];
    uint32_t lens[1];

    ASSERT_OK(tb_up(&t, &o));
    ASSERT_OK(rx_post(&t, 0, 2048, 1, 1, NULL));
    ASSERT_OK(tdrv_kick(t.d, 0));
    ASSERT_OK(send_rarp(&t, moved_mac, false, NULL));
    ASSERT_EQ(collect(&t, 0, 1, 5000, got, lens), 1);
    ASSERT_EQ(lens[0], HDR + 60);
    struct vhu_virtio_net_hdr_v1 h;
    memcpy(&h, got[0], HDR);
    ASSERT_EQ(h.num_buffers, 1);
    ASSERT_EQ(h.flags, 0);
    ASSERT_EQ(h.gso_type, 0);
    check_rarp(got[0] + HDR, moved_mac, bcast); /* reflected: destination and source swapped */
    ASSERT_EQ(stats(&t, 1).packets, 1);
    ASSERT_EQ(stats(&t, 0).packets, 1);
    tb_down(&t);
}

/* An announce sent while transmitq 0 is stopped goes out when it starts again. */
TEST(rarp_before_queue_start)
{
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_SINK}, .protocol_features = NET_PF};
    struct vhu_msg m, reply;
    struct tb t;

    ASSERT_OK(tb_up(&t, &o));
    vhu_msg_init(&m, VHOST_USER_GET_VRING_BASE, VHOST_USER_VERSION, 8);
    m.payload.state = (struct vhost_vring_state){.index = 1};
    ASSERT_OK(vhu_fe_raw(tdrv_fe(t.d), &m, &reply));
    ASSERT_OK(send_rarp(&t, moved_mac, false, NULL));
    for (int i = 0; i < 5; i++)
        vhu_loop_run_once(t.loop, 0);
    ASSERT_EQ(stats(&t, 1).packets, 0);
    /* the ring starts again (a new kick fd): the announce goes out */
    int kfd = vhu_eventfd_new();
    ASSERT(kfd >= 0);
    vhu_msg_init(&m, VHOST_USER_SET_VRING_KICK, VHOST_USER_VERSION, 8);
    m.payload.u64 = 1;
    m.fds[0] = kfd;
    m.nfds = 1;
    ASSERT_OK(vhu_fe_raw(tdrv_fe(t.d), &m, &reply));
    ASSERT(wait_packets(&t, 1, 1));
    ASSERT_EQ(stats(&t, 1).bytes, 60);
    close(kfd);
    tb_down(&t);
}

/* A multicast or zero MAC is refused and ends the session. */
TEST(rarp_bad_mac_drops_session)
{
    static const uint8_t mcast[6] = {0x01, 0x00, 0x5e, 0, 0, 1}, zero[6];
    const uint8_t *bad[] = {mcast, zero};

    for (unsigned i = 0; i < 2; i++) {
        struct tb_opts o = {.net = {.port = VHU_NET_PORT_SINK}, .protocol_features = NET_PF};
        struct tb t;
        uint64_t ack = 0;
        ASSERT_OK(tb_up(&t, &o));
        int r = send_rarp(&t, bad[i], true, &ack);
        ASSERT(r < 0 || ack != 0);
        ASSERT_EQ(stats(&t, 1).packets, 0);
        tb_down(&t);
    }
}

/* NET_SET_MTU: acked 0 for 68..65521 and reported in config space until a reset; anything else
 * is acked non-zero and ends the session. */
TEST(net_set_mtu)
{
    static const uint64_t bad[] = {0, 67, 65522, 65535, 65536, 1ull << 32 | 1500};
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_SINK}, .protocol_features = NET_PF};
    struct vhu_virtio_net_config c;
    struct tb t;
    uint64_t ack = 9;

    ASSERT_OK(tb_up(&t, &o));
    ASSERT_OK(set_mtu(&t, 9000, &ack));
    ASSERT_EQ(ack, 0);
    ASSERT_OK(tdrv_get_config(t.d, 0, &c, sizeof(c)));
    ASSERT_EQ(c.mtu, 9000);
    ASSERT_OK(set_mtu(&t, 68, &ack));
    ASSERT_EQ(ack, 0);
    ASSERT_OK(set_mtu(&t, 65521, &ack));
    ASSERT_EQ(ack, 0);
    ASSERT_OK(tdrv_get_config(t.d, 0, &c, sizeof(c)));
    ASSERT_EQ(c.mtu, 65521);
    ASSERT_OK(tdrv_reset(t.d));
    ASSERT_OK(tdrv_get_config(t.d, 0, &c, sizeof(c)));
    ASSERT_EQ(c.mtu, 1500);
    tb_down(&t);

    for (size_t i = 0; i < VHU_ARRAY_SIZE(bad); i++) {
        ASSERT_OK(tb_up(&t, &o));
        ack = 0;
        int r = set_mtu(&t, bad[i], &ack);
        ASSERT(r < 0 || ack != 0);
        /* the session is gone */
        ASSERT(tdrv_get_config(t.d, 0, &c, sizeof(c)) < 0);
        tb_down(&t);
    }
}
