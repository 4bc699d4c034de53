/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The built-in L2 switch (VHU_NET_PORT_SWITCH): three net devices on one switch, each driven by
 * its own frontend over the loopback transport, all on one loop (the switch's one thread).
 * Covers flooding of broadcast and unknown unicast, unicast to one port only, mixed rings (split
 * sender, packed receiver, mergeable buffers), a receiver without buffers (the frame is dropped,
 * the sender is not held back), headers cleaned on the way, hairpin drops, source addresses
 * (each port's device MAC pinned, a quota of learnt ones: spoofed sources dropped, a port
 * sending from random addresses evicts nobody, aging with an injected clock, a stopped port's
 * addresses forgotten), and a port leaving while the others keep switching.
 */
#include "dev/net_port.h" /* the switch's clock hook */
#include "net_testlib.h"
#include "vhu_test.h"

#define NPORTS 3

struct sw_bench {
    struct vhu_loop *loop;
    struct vhu_net_switch *sw;
    struct tb t[NPORTS];
    bool up[NPORTS];
};

static const uint8_t mac_of[NPORTS][6] = {
    {0x02, 0, 0, 0, 0, 0xa1},
    {0x02, 0, 0, 0, 0, 0xb2},
    {0x02, 0, 0, 0, 0, 0xc3},
};
static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

/*
 * Port 0 split, port 1 packed with mergeable buffers, port 2 split with mergeable buffers.
 * worker: every port on port 0's worker thread (vhu_backend_share_workers) instead of the loop.
 */
static int sw_up_with(struct sw_bench *s, bool worker, const struct vhu_net_switch_opts *so)
{
    int r;

    memset(s, 0, sizeof(*s));
    r = vhu_loop_new(&s->loop);
    if (r == 0)
        r = vhu_net_switch_new_opts(so, &s->sw);
    for (unsigned i = 0; r == 0 && i < NPORTS; i++) {
        struct tb_opts o = {
            .net = {.port = VHU_NET_PORT_SWITCH, .sw = s->sw},
            .packed = i == 1,
            .mrg = i != 0,
            .loop = s->loop,
            .workers = worker ? 1 : 0,
            .share_from = worker && i ? s->t[0].b : NULL,
        };
        memcpy(o.net.mac, mac_of[i], 6);
        r = tb_up(&s->t[i], &o);
        s->up[i] = true;
    }
    return r;
}

static int sw_up_on(struct sw_bench *s, bool worker)
{
    return sw_up_with(s, worker, NULL);
}

static int sw_up(struct sw_bench *s)
{
    return sw_up_on(s, false);
}

static void sw_port_down(struct sw_bench *s, unsigned i)
{
    if (s->up[i])
        tb_down(&s->t[i]);
    s->up[i] = false;
}

static void sw_down(struct sw_bench *s)
{
    /* every session first (ports write into each other's rings), then the devices, port 0
     * last: it owns any shared worker */
    for (unsigned i = 0; i < NPORTS; i++) {
        if (s->up[i]) {
            tdrv_free(s->t[i].d);
            s->t[i].d = NULL;
        }
    }
    for (unsigned i = NPORTS; i-- > 0;)
        sw_port_down(s, i);
    vhu_net_switch_free(s->sw);
    vhu_loop_free(s->loop);
}

static void frame_to(uint8_t *f, uint32_t len, const uint8_t *dst, const uint8_t *src, unsigned seed)
{
    memcpy(f, dst, 6);
    memcpy(f + 6, src, 6);
    f[12] = 0x88;
    f[13] = 0xb5;
    for (uint32_t i = 14; i < len; i++)
        f[i] = (uint8_t)(seed * 13 + i);
}

/* Port `from` transmits one frame and gets its chain back. */
static int send_one(struct sw_bench *s, unsigned from, const uint8_t *frame, uint32_t len,
                    const struct vhu_virtio_net_hdr_v1 *h)
{
    int r = tx_add(&s->t[from], 1, h, frame, len, 2);

    if (r == 0)
        r = tdrv_kick(s->t[from].d, 1);
    if (r == 0 && collect(&s->t[from], 1, 1, 5000, NULL, NULL) != 1)
        r = -ETIMEDOUT;
    return r;
}

static struct vhu_net_switch_stats swstats(struct sw_bench *s)
{
    struct vhu_net_switch_stats st;

    vhu_net_switch_get_stats(s->sw, &st);
    return st;
}

/* The one frame port i received must be `frame` (len bytes) with a clean header. */
static bool got_frame(struct sw_bench *s, unsigned i, const uint8_t *frame, uint32_t len)
{
    uint8_t *buf = NULL;
    uint32_t used = 0;
    struct vhu_virtio_net_hdr_v1 h;

    if (collect(&s->t[i], 0, 1, 5000, &buf, &used) != 1 || used != HDR + len)
        return false;
    memcpy(&h, buf, HDR);
    return h.flags == 0 && h.gso_type == 0 && h.num_buffers == 1 &&
           memcmp(buf + HDR, frame, len) == 0;
}

static bool got_nothing(struct sw_bench *s, unsigned i)
{
    return collect(&s->t[i], 0, 1, 50, NULL, NULL) == 0;
}

static void flood_learn_unicast(bool worker)
{
    struct sw_bench s;
    uint8_t f[1514];
    struct vhu_virtio_net_hdr_v1 dirty = {.flags = VHU_VIRTIO_NET_HDR_F_NEEDS_CSUM,
                                      .gso_type = VHU_VIRTIO_NET_HDR_GSO_TCPV4,
                                      .gso_size = 1000,
                                      .csum_start = 34,
                                      .csum_offset = 16};

    ASSERT_OK(sw_up_on(&s, worker));
    for (unsigned i = 0; i < NPORTS; i++) {
        ASSERT_OK(rx_post(&s.t[i], 0, 2048, 8, 1, NULL));
        ASSERT_OK(tdrv_kick(s.t[i].d, 0));
    }
    /* a broadcast from 0 reaches 1 and 2, not 0 (every device's MAC is known from the start) */
    frame_to(f, 60, bcast, mac_of[0], 1);
    ASSERT_OK(send_one(&s, 0, f, 60, NULL));
    ASSERT(got_frame(&s, 1, f, 60));
    ASSERT(got_frame(&s, 2, f, 60));
    ASSERT(got_nothing(&s, 0));
    ASSERT_EQ(swstats(&s).flooded, 1);
    ASSERT_EQ(swstats(&s).copies, 2);
    /* 1 -> 0 is known: only 0 gets it; the sender's stray offload header is not passed on */
    frame_to(f, 1514, mac_of[0], mac_of[1], 2);
    ASSERT_OK(send_one(&s, 1, f, 1514, &dirty));
    ASSERT(got_frame(&s, 0, f, 1514));
    ASSERT(got_nothing(&s, 2));
    ASSERT_EQ(swstats(&s).unicast, 1);
    /* 2 -> unknown address: flooded to 0 and 1 */
    static const uint8_t nobody[6] = {0x02, 9, 9, 9, 9, 9};
    frame_to(f, 100, nobody, mac_of[2], 3);
    ASSERT_OK(send_one(&s, 2, f, 100, NULL));
    ASSERT(got_frame(&s, 0, f, 100));
    ASSERT(got_frame(&s, 1, f, 100));
    /* 0 -> 2: known, unicast */
    frame_to(f, 200, mac_of[2], mac_of[0], 4);
    ASSERT_OK(send_one(&s, 0, f, 200, NULL));
    ASSERT(got_frame(&s, 2, f, 200));
    ASSERT(got_nothing(&s, 1));
    /* hairpin: to a station behind the sender's own port is dropped, counted on its tx */
    frame_to(f, 60, mac_of[0], mac_of[0], 5);
    ASSERT_OK(send_one(&s, 0, f, 60, NULL));
    ASSERT(got_nothing(&s, 0));
    ASSERT_EQ(stats(&s.t[0], 1).drops, 1);
    ASSERT_EQ(swstats(&s).unicast, 2);
    ASSERT_EQ(swstats(&s).learned, 0); /* the devices' own MACs are pinned, not learnt */
    ASSERT_EQ(swstats(&s).spoofed, 0);
    ASSERT_EQ(swstats(&s).drops, 0);
    /* device counters: port 0 received 2 frames, transmitted 2 (+1 dropped) */
    ASSERT_EQ(stats(&s.t[0], 0).packets, 2);
    ASSERT_EQ(stats(&s.t[0], 1).packets, 2);
    sw_down(&s);
}

TEST(flood_learn_unicast) { flood_learn_unicast(false); }
/* every port on one shared worker thread, as `vhud switch --workers 1` */
TEST(flood_learn_unicast_shared_worker) { flood_learn_unicast(true); }

/* A big frame into small mergeable buffers of a packed ring: it spans chains. */
TEST(mergeable_receiver)
{
    struct sw_bench s;
    uint8_t f[1514], *bufs[4];
    uint32_t lens[4];
    struct vhu_virtio_net_hdr_v1 h;

    ASSERT_OK(sw_up(&s));
    ASSERT_OK(rx_post(&s.t[1], 0, 512, 4, 1, NULL));
    ASSERT_OK(tdrv_kick(s.t[1].d, 0));
    frame_to(f, 1514, mac_of[1], mac_of[0], 7);
    ASSERT_OK(send_one(&s, 0, f, 1514, NULL)); /* port 1's MAC: unicast */
    ASSERT_EQ(collect(&s.t[1], 0, 4, 5000, bufs, lens), 3);
    memcpy(&h, bufs[0], HDR);
    ASSERT_EQ(h.num_buffers, 3);
    ASSERT_EQ(lens[0] + lens[1] + lens[2], HDR + 1514);
    ASSERT(memcmp(bufs[0] + HDR, f, 500) == 0);
    ASSERT(memcmp(bufs[1], f + 500, 512) == 0);
    ASSERT(memcmp(bufs[2], f + 1012, 502) == 0);
    ASSERT_EQ(swstats(&s).unicast, 1);
    ASSERT_EQ(swstats(&s).drops, 0);
    sw_down(&s);
}

/* A receiver that posts nothing loses frames; the sender keeps going. */
TEST(full_receiver_drops_not_stalls)
{
    struct sw_bench s;
    uint8_t f[64];

    ASSERT_OK(sw_up(&s));
    ASSERT_OK(rx_post(&s.t[2], 0, 2048, 64, 1, NULL));
    ASSERT_OK(tdrv_kick(s.t[2].d, 0));
    frame_to(f, 64, bcast, mac_of[1], 0);
    ASSERT_OK(send_one(&s, 1, f, 64, NULL));
    ASSERT_EQ(collect(&s.t[2], 0, 1, 5000, NULL, NULL), 1);
    for (unsigned i = 0; i < 50; i++) {
        frame_to(f, 64, mac_of[i % 2 ? 1 : 2], mac_of[0], i);
        ASSERT_OK(tx_add(&s.t[0], 1, NULL, f, 64, 1));
    }
    ASSERT_OK(tdrv_kick(s.t[0].d, 1));
    ASSERT_EQ(collect(&s.t[0], 1, 50, 5000, NULL, NULL), 50); /* all transmitted */
    /* the 25 unicast to 2 reach it, the 25 unicast to 1 are lost; plus the first broadcast's
     * copy for port 0 */
    ASSERT_EQ(collect(&s.t[2], 0, 25, 5000, NULL, NULL), 25);
    ASSERT_EQ(swstats(&s).drops, 26);
    ASSERT_EQ(stats(&s.t[0], 1).packets, 50);
    sw_down(&s);
}

/* Port `from` transmits count frames from made-up source addresses (02:77+from:...), in
 * bursts. */
static void send_random_sources(struct sw_bench *s, unsigned from, unsigned count,
                                const uint8_t *dst)
{
    uint8_t f[60], src[6] = {0x02, (uint8_t)(0x77 + from), 0, 0, 0, 0};
    const unsigned burst = 100;

    for (unsigned i = 0; i < count; i += burst) {
        for (unsigned j = i; j < i + burst; j++) {
            src[3] = (uint8_t)(j >> 16);
            src[4] = (uint8_t)(j >> 8);
            src[5] = (uint8_t)j;
            frame_to(f, 60, dst, src, j);
            ASSERT_OK(tx_add(&s->t[from], 1, NULL, f, 60, 1));
        }
        ASSERT_OK(tdrv_kick(s->t[from].d, 1));
        ASSERT_EQ(collect(&s->t[from], 1, burst, 5000, NULL, NULL), burst);
    }
}

/* An address of port 2's guest that is not its device's MAC (QEMU gives guests their own). */
static const uint8_t guest_mac2[6] = {0x52, 0x54, 0, 0x12, 0x34, 0x56};

/* Post receive buffers on every port. */
static void post_all(struct sw_bench *s, unsigned count)
{
    for (unsigned i = 0; i < NPORTS; i++) {
        ASSERT_OK(rx_post(&s->t[i], 0, 2048, count, 1, NULL));
        ASSERT_OK(tdrv_kick(s->t[i].d, 0));
    }
}

/* Port 2's guest broadcasts from its own address (learnt): ports 0 and 1 get it. */
static void guest2_says_hello(struct sw_bench *s)
{
    uint8_t f[60];

    frame_to(f, 60, bcast, guest_mac2, 1);
    ASSERT_OK(send_one(s, 2, f, 60, NULL));
    ASSERT_EQ(collect(&s->t[0], 0, 1, 5000, NULL, NULL), 1);
    ASSERT_EQ(collect(&s->t[1], 0, 1, 5000, NULL, NULL), 1);
}

/* A frame from port `from` to dst must reach port `to` alone, as unicast. */
static void expect_unicast(struct sw_bench *s, unsigned from, const uint8_t *dst, unsigned to,
                           unsigned seed)
{
    uint8_t f[60];
    uint64_t uni = swstats(s).unicast;

    frame_to(f, 60, dst, mac_of[from], seed);
    ASSERT_OK(send_one(s, from, f, 60, NULL));
    ASSERT(got_frame(s, to, f, 60));
    for (unsigned i = 0; i < NPORTS; i++)
        if (i != to && i != from)
            ASSERT(got_nothing(s, i));
    ASSERT_EQ(swstats(s).unicast, uni + 1);
}

/* A guest sending as another port's device MAC, or as another guest's learnt address, steals
 * nothing: its frames are dropped and counted, the victim's unicast still goes to the victim. */
TEST(spoofed_source_does_not_steal_unicast)
{
    struct sw_bench s;
    uint8_t f[60];

    ASSERT_OK(sw_up(&s));
    post_all(&s, 16);
    guest2_says_hello(&s); /* port 2's guest uses an address of its own: learnt (quota: one) */
    ASSERT_EQ(swstats(&s).learned, 1);
    /* port 0 sends as port 1's device MAC, as port 2's guest address, and from a multicast
     * and the zero address: each dropped before it goes anywhere */
    static const uint8_t mcast[6] = {0x03, 0, 0, 0, 0, 1}, zero[6];
    const uint8_t *fake[4] = {mac_of[1], guest_mac2, mcast, zero};
    for (unsigned i = 0; i < 4; i++) {
        frame_to(f, 60, bcast, fake[i], 2 + i);
        ASSERT_OK(send_one(&s, 0, f, 60, NULL));
        ASSERT(got_nothing(&s, 1));
        ASSERT(got_nothing(&s, 2));
    }
    ASSERT_EQ(swstats(&s).spoofed, 4);
    ASSERT_EQ(stats(&s.t[0], 1).drops, 4);
    ASSERT_EQ(swstats(&s).flooded, 1);
    /* the victims' unicast still reaches them alone */
    expect_unicast(&s, 0, mac_of[1], 1, 10);
    expect_unicast(&s, 1, guest_mac2, 2, 11);
    expect_unicast(&s, 0, mac_of[2], 2, 12);
    /* port 0's quota is one: its first address of its own is learnt, a second one is not */
    static const uint8_t own0[6] = {0x52, 0x54, 0, 0, 0, 0xa0}, own0b[6] = {0x52, 0x54, 0, 0, 0, 0xa1};
    frame_to(f, 60, mac_of[1], own0, 13);
    ASSERT_OK(send_one(&s, 0, f, 60, NULL));
    ASSERT(got_frame(&s, 1, f, 60));
    frame_to(f, 60, mac_of[1], own0b, 14);
    ASSERT_OK(send_one(&s, 0, f, 60, NULL));
    ASSERT(got_nothing(&s, 1));
    ASSERT_EQ(swstats(&s).spoofed, 5);
    ASSERT_EQ(swstats(&s).learned, 2);
    sw_down(&s);
}

/* A port sending from thousands of made-up addresses (more than the table holds) evicts nobody:
 * everything past its quota is dropped, the others' addresses stay, nothing floods. */
TEST(random_sources_cannot_evict_others)
{
    struct sw_bench s;

    ASSERT_OK(sw_up(&s));
    post_all(&s, 8);
    guest2_says_hello(&s);
    send_random_sources(&s, 0, 5000, mac_of[1]);
    /* the first one took port 0's one learnt slot (and went to port 1); the rest dropped */
    ASSERT_EQ(collect(&s.t[1], 0, 2, 200, NULL, NULL), 1);
    ASSERT_EQ(swstats(&s).spoofed, 4999);
    ASSERT_EQ(swstats(&s).learned, 2);
    ASSERT_EQ(swstats(&s).fdb_full, 0);
    uint64_t flooded = swstats(&s).flooded;
    expect_unicast(&s, 1, guest_mac2, 2, 2);
    expect_unicast(&s, 1, mac_of[2], 2, 3);
    expect_unicast(&s, 2, mac_of[1], 1, 4);
    ASSERT_EQ(swstats(&s).flooded, flooded);
    sw_down(&s);
}

/* A quota wider than the table: the table fills, what does not fit is refused (counted), and
 * nothing in it is pushed out. */
TEST(table_full_refuses_evicts_nothing)
{
    struct vhu_net_switch_opts so = {.learn = VHU_NET_SWITCH_MAX_LEARN};
    struct sw_bench s;

    ASSERT_OK(sw_up_with(&s, false, &so));
    post_all(&s, 8);
    guest2_says_hello(&s);
    /* 3 quotas of 1024 > the 3072 - 4 free entries: the ports fill the table */
    for (unsigned i = 0; i < NPORTS; i++) /* to the sender's own MAC: hairpin, delivered nowhere */
        send_random_sources(&s, i, 1100, mac_of[i]);
    /* 4 + 1024 + 1024 entries, then 1020 of port 2's fit; its last 80 find the table full */
    ASSERT_EQ(swstats(&s).fdb_full, 80);
    ASSERT_EQ(swstats(&s).learned, 3072 - 3);
    expect_unicast(&s, 0, guest_mac2, 2, 2);
    expect_unicast(&s, 1, mac_of[0], 0, 3);
    sw_down(&s);
}

/* Aging (the clock injected): a learnt address unused for age_seconds is forgotten, and
 * another port may then use it; pinned device MACs never age. */
TEST(learnt_addresses_age)
{
    struct vhu_net_switch_opts so = {.age_seconds = 300};
    struct sw_bench s;
    uint8_t f[60];

    net_switch_test_clock_offset = 0;
    ASSERT_OK(sw_up_with(&s, false, &so));
    post_all(&s, 16);
    guest2_says_hello(&s);
    /* 200 s on: still port 2's (port 0 cannot take it), and port 2 uses it again */
    net_switch_test_clock_offset = 200;
    frame_to(f, 60, mac_of[1], guest_mac2, 2);
    ASSERT_OK(send_one(&s, 0, f, 60, NULL));
    ASSERT(got_nothing(&s, 1));
    ASSERT_EQ(swstats(&s).spoofed, 1);
    frame_to(f, 60, mac_of[1], guest_mac2, 3);
    ASSERT_OK(send_one(&s, 2, f, 60, NULL));
    ASSERT(got_frame(&s, 1, f, 60));
    /* 450 s: 250 s since port 2's last frame, kept */
    net_switch_test_clock_offset = 450;
    expect_unicast(&s, 1, guest_mac2, 2, 4);
    ASSERT_EQ(swstats(&s).aged, 0);
    /* 510 s: 310 s, forgotten: a frame to it floods; device MACs are still known */
    net_switch_test_clock_offset = 510;
    uint64_t flooded = swstats(&s).flooded;
    frame_to(f, 60, guest_mac2, mac_of[1], 5);
    ASSERT_OK(send_one(&s, 1, f, 60, NULL));
    ASSERT(got_frame(&s, 0, f, 60));
    ASSERT(got_frame(&s, 2, f, 60));
    ASSERT_EQ(swstats(&s).flooded, flooded + 1);
    ASSERT_EQ(swstats(&s).aged, 1);
    expect_unicast(&s, 1, mac_of[2], 2, 6);
    /* the guest moved behind port 0: its address is port 0's now */
    frame_to(f, 60, mac_of[1], guest_mac2, 7);
    ASSERT_OK(send_one(&s, 0, f, 60, NULL));
    ASSERT(got_frame(&s, 1, f, 60));
    expect_unicast(&s, 1, guest_mac2, 0, 8);
    /* and port 2, its quota free again, may learn another */
    static const uint8_t other2[6] = {0x52, 0x54, 0, 0x12, 0x34, 0x57};
    frame_to(f, 60, mac_of[1], other2, 9);
    ASSERT_OK(send_one(&s, 2, f, 60, NULL));
    ASSERT(got_frame(&s, 1, f, 60));
    ASSERT_EQ(swstats(&s).learned, 3);
    sw_down(&s);
    net_switch_test_clock_offset = 0;
}

/* learn = none: only the device's MAC may send. A port whose rings all stop forgets what it
 * learnt (the next guest behind it may use another address). */
TEST(pinned_only_and_forget_on_stop)
{
    struct vhu_net_switch_opts none = {.learn = VHU_NET_SWITCH_LEARN_NONE};
    struct sw_bench s;
    uint8_t f[60];

    ASSERT_OK(sw_up_with(&s, false, &none));
    post_all(&s, 8);
    frame_to(f, 60, mac_of[1], guest_mac2, 1);
    ASSERT_OK(send_one(&s, 2, f, 60, NULL));
    ASSERT(got_nothing(&s, 1));
    ASSERT_EQ(swstats(&s).spoofed, 1);
    expect_unicast(&s, 2, mac_of[1], 1, 2);
    sw_down(&s);

    ASSERT_OK(sw_up(&s));
    post_all(&s, 8);
    frame_to(f, 60, mac_of[1], guest_mac2, 3);
    ASSERT_OK(send_one(&s, 2, f, 60, NULL));
    ASSERT(got_frame(&s, 1, f, 60));
    ASSERT_OK(tdrv_stop(s.t[2].d)); /* port 2's link goes down */
    frame_to(f, 60, mac_of[1], guest_mac2, 4);
    ASSERT_OK(send_one(&s, 0, f, 60, NULL)); /* free again: port 0 may learn it */
    ASSERT(got_frame(&s, 1, f, 60));
    ASSERT_EQ(swstats(&s).spoofed, 0);
    ASSERT_EQ(swstats(&s).learned, 2);
    sw_down(&s);
}

/* Two devices of one switch with one MAC: the second is refused. */
TEST(duplicate_device_mac_refused)
{
    struct vhu_net_switch *sw;
    struct vhu_device *a = NULL, *b = NULL;
    struct vhu_net_opts o = {.port = VHU_NET_PORT_SWITCH, .mac = {0x02, 1, 2, 3, 4, 5}};

    ASSERT_OK(vhu_net_switch_new(&sw));
    o.sw = sw;
    ASSERT_OK(vhu_net_new(&o, &a));
    ASSERT(vhu_net_new(&o, &b) < 0);
    a->ops->destroy(a);
    vhu_net_switch_free(sw);
    ASSERT_ERR(-EINVAL, vhu_net_switch_new_opts(&(struct vhu_net_switch_opts){.learn = 5000}, &sw));
}

/* A port leaves (its device is destroyed): its addresses are forgotten, the rest goes on. */
TEST(port_leaves)
{
    struct sw_bench s;
    uint8_t f[60];

    ASSERT_OK(sw_up(&s));
    for (unsigned i = 0; i < 2; i++) {
        ASSERT_OK(rx_post(&s.t[i], 0, 2048, 4, 1, NULL));
        ASSERT_OK(tdrv_kick(s.t[i].d, 0));
    }
    frame_to(f, 60, bcast, mac_of[2], 0);
    ASSERT_OK(send_one(&s, 2, f, 60, NULL));
    ASSERT_EQ(collect(&s.t[0], 0, 1, 5000, NULL, NULL), 1);
    ASSERT_EQ(collect(&s.t[1], 0, 1, 5000, NULL, NULL), 1);
    sw_port_down(&s, 2);
    /* to 2's old address: unknown now, flooded to 1 only */
    uint64_t flooded = swstats(&s).flooded;
    frame_to(f, 60, mac_of[2], mac_of[0], 1);
    ASSERT_OK(send_one(&s, 0, f, 60, NULL));
    ASSERT(got_frame(&s, 1, f, 60));
    ASSERT_EQ(swstats(&s).flooded, flooded + 1);
    frame_to(f, 60, mac_of[0], mac_of[1], 2);
    ASSERT_OK(send_one(&s, 1, f, 60, NULL));
    ASSERT(got_frame(&s, 0, f, 60));
    sw_down(&s);
}

/* Ports of one switch on two threads: the second thread's queues are refused. */
TEST(one_thread_only)
{
    struct vhu_loop *loop;
    struct vhu_net_switch *sw;
    struct tb a, b;
    struct tb_opts oa = {.net = {.port = VHU_NET_PORT_SWITCH}}, ob = oa;

    ASSERT_OK(vhu_loop_new(&loop));
    ASSERT_OK(vhu_net_switch_new(&sw));
    oa.net.sw = ob.net.sw = sw;
    oa.loop = loop;
    ob.workers = 1; /* b's queues run on a worker thread */
    ASSERT_OK(tb_up(&a, &oa));
    ASSERT(tb_up(&b, &ob) < 0); /* the backend refuses to start b's rings */
    tb_down(&b);
    tb_down(&a);
    vhu_net_switch_free(sw);
    vhu_loop_free(loop);
}

TEST(new_refuses_switch_without_switch)
{
    struct vhu_net_opts o = {.port = VHU_NET_PORT_SWITCH};
    struct vhu_device *dev = NULL;

    ASSERT_ERR(-EINVAL, vhu_net_new(&o, &dev));
}
