/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The built-in L2 switch (VHU_NET_PORT_SWITCH): three net devices on one switch, each driven by
 * its own frontend over the loopback transport, all on one loop (the switch's one thread).
 * Covers flooding of broadcast and unknown unicast, learning, unicast to one port only, mixed
 * rings (split sender, packed receiver, mergeable buffers), a receiver without buffers (the
 * frame is dropped, the sender is not held back), headers cleaned on the way, hairpin drops,
 * address-table overflow, and a port leaving while the others keep switching.
 */
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
static int sw_up_on(struct sw_bench *s, bool worker)
{
    int r;

    memset(s, 0, sizeof(*s));
    r = vhu_loop_new(&s->loop);
    if (r == 0)
        r = vhu_net_switch_new(&s->sw);
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
    /* a broadcast from 0 reaches 1 and 2, not 0; 0's address is learnt */
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
    /* 0 -> 2 now known (learnt from its flood), 0 -> 1 too */
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
    ASSERT_EQ(swstats(&s).learned, 3);
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
    ASSERT_OK(send_one(&s, 0, f, 1514, NULL)); /* unknown yet: flooded, 2 has no buffers */
    ASSERT_EQ(collect(&s.t[1], 0, 4, 5000, bufs, lens), 3);
    memcpy(&h, bufs[0], HDR);
    ASSERT_EQ(h.num_buffers, 3);
    ASSERT_EQ(lens[0] + lens[1] + lens[2], HDR + 1514);
    ASSERT(memcmp(bufs[0] + HDR, f, 500) == 0);
    ASSERT(memcmp(bufs[1], f + 500, 512) == 0);
    ASSERT(memcmp(bufs[2], f + 1012, 502) == 0);
    ASSERT_EQ(swstats(&s).drops, 1); /* port 2: no buffers */
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
    frame_to(f, 64, bcast, mac_of[1], 0); /* learn 1 */
    ASSERT_OK(send_one(&s, 1, f, 64, NULL));
    ASSERT_EQ(collect(&s.t[2], 0, 1, 5000, NULL, NULL), 1);
    for (unsigned i = 0; i < 50; i++) {
        frame_to(f, 64, mac_of[i % 2 ? 1 : 2], mac_of[0], i);
        ASSERT_OK(tx_add(&s.t[0], 1, NULL, f, 64, 1));
    }
    ASSERT_OK(tdrv_kick(s.t[0].d, 1));
    ASSERT_EQ(collect(&s.t[0], 1, 50, 5000, NULL, NULL), 50); /* all transmitted */
    /* port 2 never sent, so the 25 for it are flooded: they reach 2, and their copies for 1
     * are lost like the 25 unicast to 1; plus the first broadcast's copy for port 0 */
    ASSERT_EQ(collect(&s.t[2], 0, 25, 5000, NULL, NULL), 25);
    ASSERT_EQ(swstats(&s).drops, 51);
    ASSERT_EQ(stats(&s.t[0], 1).packets, 50);
    sw_down(&s);
}

/* Made-up source addresses fill the table: it is emptied and switching goes on. */
TEST(fdb_overflow)
{
    struct sw_bench s;
    uint8_t f[60], src[6] = {0x02, 0x77, 0, 0, 0, 0};
    const unsigned n = 3200, burst = 100;

    ASSERT_OK(sw_up(&s));
    for (unsigned i = 0; i < n; i += burst) {
        for (unsigned j = i; j < i + burst; j++) {
            src[4] = (uint8_t)(j >> 8);
            src[5] = (uint8_t)j;
            frame_to(f, 60, mac_of[2], src, j);
            ASSERT_OK(tx_add(&s.t[0], 1, NULL, f, 60, 1));
        }
        ASSERT_OK(tdrv_kick(s.t[0].d, 1));
        ASSERT_EQ(collect(&s.t[0], 1, burst, 5000, NULL, NULL), burst);
    }
    ASSERT(swstats(&s).fdb_flushes >= 1);
    ASSERT(swstats(&s).learned >= n);
    /* still switching: 2 learns, 0 -> 2 unicast */
    ASSERT_OK(rx_post(&s.t[2], 0, 2048, 2, 1, NULL));
    ASSERT_OK(tdrv_kick(s.t[2].d, 0));
    frame_to(f, 60, bcast, mac_of[2], 0);
    ASSERT_OK(send_one(&s, 2, f, 60, NULL));
    uint64_t uni = swstats(&s).unicast;
    frame_to(f, 60, mac_of[2], mac_of[0], 1);
    ASSERT_OK(send_one(&s, 0, f, 60, NULL));
    ASSERT(got_frame(&s, 2, f, 60));
    ASSERT_EQ(swstats(&s).unicast, uni + 1);
    sw_down(&s);
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
