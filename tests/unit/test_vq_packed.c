/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Packed virtqueue: driver side and device side on the same ring. Wrap counters (including ring
 * sizes that are not powers of two), used positions advancing by each chain's descriptor count
 * under out-of-order completion, batched used descriptors, indirect tables, event suppression
 * (ENABLE/DISABLE/DESC with off_wrap), base encoding, unpop.
 */
#include "vq/vq_internal.h"
#include "vq_testlib.h"
#include "vhu_test.h"

#define COOKIE(n) ((void *)(uintptr_t)(n))
#define W15 0x8000u

TEST(packed_need_event_arithmetic)
{
    /* num = 8. off_wrap: slot | wrap << 15 of the entry the other side wants to hear about. */
    static const struct {
        uint16_t off_wrap, old, new_pos;
        bool new_wrap, want;
    } cases[] = {
        {1 | W15, 0, 3, 1, true},   /* inside the window, same lap */
        {3 | W15, 0, 3, 1, false},  /* == new: not written yet */
        {0 | W15, 0, 3, 1, true},   /* == old */
        {3, 2, 5, 1, false},        /* previous lap: long past */
        {7 | W15, 6, 2, 0, true},   /* window crosses the end: tail of the previous lap */
        {1, 6, 2, 0, true},         /* ... head of the new lap */
        {2, 6, 2, 0, false},
        {5 | W15, 6, 2, 0, false},  /* just before the window */
        {3 | W15, 3, 3, 0, true},   /* a full lap: old itself */
        {2, 3, 3, 0, true},
        {3, 3, 3, 0, false},
    };

    for (unsigned i = 0; i < VHU_ARRAY_SIZE(cases); i++) {
        if (vq_packed_need_event(cases[i].off_wrap, cases[i].old, cases[i].new_pos,
                                 cases[i].new_wrap, 8) != cases[i].want)
            FAIL_AT("case %u", i);
    }
}

TEST(packed_roundtrip_basic)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8, .packed = true};
    struct vhu_vring_packed_desc *ring;

    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    ring = gh(&g, p.ring_gpa);
    ASSERT_EQ(vhu_vq_get_base(p.q), 0x80008000u); /* both wrap counters start at 1 */
    ASSERT(vhu_vq_pop(p.q) == NULL);
    ASSERT_EQ(pair_roundtrip(&p, 100, 200, 64, 1), 0); /* 2 + 4 descriptors */
    /* One used descriptor at slot 0, AVAIL == USED == 1, WRITE since len > 0. */
    ASSERT_EQ(ring[0].flags & (VQ_PACKED_AVAIL_BIT | VQ_PACKED_USED_BIT | VHU_VRING_DESC_F_WRITE),
              VQ_PACKED_AVAIL_BIT | VQ_PACKED_USED_BIT | VHU_VRING_DESC_F_WRITE);
    ASSERT_EQ(ring[0].len, 200);
    ASSERT_EQ(vhu_vq_get_base(p.q), 0x80068006u);
    ASSERT_EQ(pair_roundtrip(&p, 0, 1, 64, 2), 0);
    ASSERT_EQ(pair_roundtrip(&p, 300, 0, 100, 3), 0); /* crosses the ring end */
    ASSERT_EQ(vhu_vq_get_base(p.q), 0x00020002u);     /* slot 2, wrap counters 0 */
    ASSERT_EQ(vhu_vqd_base(p.d), vhu_vq_get_base(p.q));
    ASSERT_EQ(vhu_vqd_num_free(p.d), 8);
    ASSERT_EQ(p.errors, 0);
    pair_fini(&p);
    guest_fini(&g);
}

static unsigned nsegs(uint32_t len, uint32_t seg)
{
    return (len + seg - 1) / seg;
}

static int wrap_run(uint16_t num, uint32_t seg, unsigned iters)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = num, .packed = true};
    uint64_t slots = 0;
    uint32_t want;
    int r;

    if ((r = guest_init(&g)) < 0 || (r = pair_init(&p, &g, &o)) < 0)
        return r;
    for (unsigned i = 0; i < iters && r == 0; i++) {
        uint32_t out = i % (2 * seg + 1), in = 1 + (i * 7) % (2 * seg);
        r = pair_roundtrip(&p, out, in, seg, i);
        if (r)
            fprintf(stderr, "  iteration %u failed at line %d\n", i, -r);
        slots += nsegs(out, seg) + nsegs(in, seg);
    }
    want = (uint32_t)(slots % num) | ((slots / num) % 2 ? 0 : W15);
    want |= want << 16;
    if (r == 0 && (vhu_vq_get_base(p.q) != want || vhu_vqd_base(p.d) != want))
        r = -1;
    if (r == 0 && (vhu_vqd_num_free(p.d) != num || vhu_vq_inflight(p.q) || p.errors))
        r = -2;
    pair_fini(&p);
    guest_fini(&g);
    return r;
}

TEST(packed_wraparound_num4)
{
    ASSERT_EQ(wrap_run(4, 64, 70000), 0);
}

TEST(packed_wraparound_num5)
{
    ASSERT_EQ(wrap_run(5, 64, 70000), 0);
}

TEST(packed_wraparound_num8)
{
    ASSERT_EQ(wrap_run(8, 32, 70000), 0);
}

/* Chains of 1..3 descriptors completed in scrambled order on a ring of 13: the used position
 * must advance by each chain's descriptor count, and the driver must follow it. */
TEST(packed_out_of_order_varying_chains)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 13, .packed = true};
    struct vhu_vq_elem *els[13];
    uint64_t bufs[13];
    unsigned seen[13];

    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    for (unsigned k = 0; k < 13; k++)
        bufs[k] = data_alloc(&g, 32);
    for (unsigned round = 0; round < 5000; round++) {
        unsigned n = 0, got = 0;

        /* Add chains until the ring is full: 1 readable tag + 0..2 writable segments. */
        for (;;) {
            unsigned nin = (round + n) % 3;
            struct vhu_vqd_seg s[3] = {{bufs[n], 4}, {bufs[n] + 8, 8}, {bufs[n] + 16, 8}};
            uint32_t tag = round * 16 + n;
            if (n == 13 || vhu_vqd_num_free(p.d) < 1 + nin)
                break;
            gwrite(&g, bufs[n], &tag, 4);
            ASSERT_OK(vhu_vqd_add(p.d, s, 1, nin, COOKIE(n + 1)));
            n++;
        }
        vhu_vqd_kick_prepare(p.d);
        for (unsigned k = 0; k < n; k++) {
            els[k] = vhu_vq_pop(p.q);
            ASSERT(els[k] != NULL);
            ASSERT_EQ(els[k]->ndesc, 1 + (round + k) % 3);
        }
        ASSERT(vhu_vq_pop(p.q) == NULL);
        for (unsigned j = 0; j < n; j++) {
            unsigned zig = (j & 1) ? n - 1 - j / 2 : j / 2;
            unsigned k = (round & 1) ? (n - 1 - (j + round) % n) : (zig + round) % n;
            uint32_t tag, wlen;
            ASSERT(els[k] != NULL);
            ASSERT_EQ(vhu_iov_to_buf(els[k]->iov, els[k]->out_num, 0, &tag, 4), 4);
            wlen = els[k]->in_num ? 1 + tag % (uint32_t)els[k]->in_len : 0;
            vhu_iov_from_buf(els[k]->iov + els[k]->out_num, els[k]->in_num, 0, &tag,
                             VHU_MIN(wlen, 4));
            vhu_vq_push(p.q, els[k], wlen);
            els[k] = NULL;
            if ((j + round) % 4 == 3)
                vhu_vq_flush(p.q);
        }
        vhu_vq_flush(p.q);
        memset(seen, 0, sizeof(seen));
        for (;;) {
            uint32_t len, tag = 0, want;
            void *c = vhu_vqd_get_used(p.d, &len);
            if (!c)
                break;
            unsigned k = (unsigned)(uintptr_t)c - 1;
            ASSERT(k < n);
            seen[k]++;
            want = round * 16 + k;
            ASSERT_EQ(len, (round + k) % 3 ? 1 + want % (8 * ((round + k) % 3)) : 0);
            gread(&g, bufs[k] + 8, &tag, VHU_MIN(len, 4));
            ASSERT_EQ(tag, len >= 4 ? want : (len ? want & ((1u << (8 * len)) - 1) : 0));
            got++;
        }
        ASSERT_EQ(got, n);
        for (unsigned k = 0; k < n; k++)
            ASSERT_EQ(seen[k], 1);
        ASSERT_EQ(vhu_vqd_num_free(p.d), 13);
        ASSERT_EQ(vhu_vqd_base(p.d), vhu_vq_get_base(p.q));
    }
    ASSERT_EQ(p.errors, 0);
    pair_fini(&p);
    guest_fini(&g);
}

/* Used descriptors become visible only at flush, all at once, at positions advanced by ndesc. */
TEST(packed_flush_publishes_batch)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8, .packed = true};
    struct vhu_vring_packed_desc *ring;
    struct vhu_vqd_seg s[3];
    struct vhu_vq_elem *a, *b;
    uint32_t len;

    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    ring = gh(&g, p.ring_gpa);
    for (unsigned k = 0; k < 3; k++)
        s[k] = (struct vhu_vqd_seg){data_alloc(&g, 8), 8};
    ASSERT_OK(vhu_vqd_add(p.d, s, 0, 3, COOKIE(1))); /* slots 0-2 */
    ASSERT_OK(vhu_vqd_add(p.d, s, 0, 1, COOKIE(2))); /* slot 3 */
    /* Not published until kick_prepare: the first head's flags are held back. */
    ASSERT(vhu_vq_pop(p.q) == NULL);
    vhu_vqd_kick_prepare(p.d);
    a = vhu_vq_pop(p.q);
    b = vhu_vq_pop(p.q);
    ASSERT(a && b);
    ASSERT_EQ(a->ndesc, 3);
    ASSERT_EQ(b->ndesc, 1);
    vhu_vq_push(p.q, b, 5); /* out of order: b's entry goes to slot 0 */
    vhu_vq_push(p.q, a, 24); /* a's to slot 1 */
    ASSERT(vhu_vqd_get_used(p.d, &len) == NULL);
    ASSERT_EQ(ring[0].flags & VQ_PACKED_USED_BIT, 0);
    ASSERT_EQ(vhu_vq_get_base(p.q) >> 16, 4 | W15); /* staged entries count for the base */
    vhu_vq_flush(p.q);
    ASSERT_EQ(ring[0].id, 1); /* buffer ids: a = 0, b = 1 */
    ASSERT_EQ(ring[1].id, 0);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(2));
    ASSERT_EQ(len, 5);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(1));
    ASSERT_EQ(len, 24);
    ASSERT(vhu_vqd_get_used(p.d, &len) == NULL);
    ASSERT_EQ(vhu_vqd_base(p.d), (4 | W15) * 0x10001u);
    ASSERT_EQ(p.notifies, 1);
    pair_fini(&p);
    guest_fini(&g);
}

TEST(packed_indirect)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 4, .packed = true, .indirect = true, .ind_max = 8};
    struct vhu_vring_packed_desc *ring;
    struct vhu_vqd_seg s[6];
    struct vhu_vq_elem *e;
    uint64_t buf;
    uint32_t len;

    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    ring = gh(&g, p.ring_gpa);
    buf = data_alloc(&g, 6 * 32);
    for (unsigned k = 0; k < 6; k++) {
        s[k] = (struct vhu_vqd_seg){buf + 32 * k, 32};
        memset(gh(&g, buf + 32 * k), (int)k, 32);
    }
    ASSERT_OK(vhu_vqd_add(p.d, s, 2, 4, COOKIE(7)));
    ASSERT_EQ(vhu_vqd_num_free(p.d), 3);
    vhu_vqd_kick_prepare(p.d);
    ASSERT(ring[0].flags & VHU_VRING_DESC_F_INDIRECT);
    e = vhu_vq_pop(p.q);
    ASSERT(e != NULL);
    ASSERT_EQ(e->ndesc, 1);
    ASSERT_EQ(e->out_num, 2);
    ASSERT_EQ(e->in_num, 4);
    ASSERT_EQ(((uint8_t *)e->iov[1].iov_base)[0], 1);
    memset(e->iov[5].iov_base, 0xab, 32);
    vhu_vq_push(p.q, e, 128);
    vhu_vq_flush(p.q);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(7));
    ASSERT_EQ(len, 128);
    ASSERT_EQ(*(uint8_t *)gh(&g, buf + 5 * 32), 0xab);
    ASSERT_EQ(vhu_vq_get_base(p.q), (1 | W15) * 0x10001u);
    for (unsigned i = 0; i < 3000; i++)
        ASSERT_EQ(pair_roundtrip(&p, 40 + i % 50, 30 + i % 70, 32, i), 0);
    ASSERT_EQ(vhu_vqd_base(p.d), vhu_vq_get_base(p.q));
    ASSERT_EQ(p.errors, 0);
    pair_fini(&p);
    guest_fini(&g);
}

#define dev_complete(p, n) pair_complete(p, n, true)

TEST(packed_event_idx_device_side)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8, .packed = true, .event_idx = true};
    struct vhu_vring_packed_desc_event *drv;
    uint32_t len;

    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    drv = gh(&g, p.ring_gpa + 16 * 8);
    ASSERT_EQ(drv->flags, VHU_VRING_PACKED_EVENT_FLAG_DESC);
    for (unsigned i = 0; i < 8; i++)
        ASSERT_OK(pair_add_small(&p, i + 1));
    vhu_vqd_kick_prepare(p.d);

    dev_complete(&p, 1); /* writes slot 0: the driver asked for slot 0 */
    ASSERT_EQ(p.notifies, 1);
    dev_complete(&p, 1); /* slot 1: the driver has not moved its event */
    ASSERT_EQ(p.notifies, 1);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(1));
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(2));
    ASSERT_EQ(drv->off_wrap, 2 | W15);
    dev_complete(&p, 1);
    ASSERT_EQ(p.notifies, 2);
    vhu_vqd_disable_cb(p.d);
    ASSERT_EQ(drv->flags, VHU_VRING_PACKED_EVENT_FLAG_DISABLE);
    dev_complete(&p, 1);
    ASSERT_EQ(p.notifies, 2);
    ASSERT(vhu_vqd_enable_cb(p.d));
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(3));
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(4));
    ASSERT(!vhu_vqd_enable_cb(p.d));
    drv->off_wrap = 5 | W15;
    dev_complete(&p, 2); /* slots 4, 5 */
    ASSERT_EQ(p.notifies, 3);
    drv->off_wrap = 1; /* slot 1 of the next lap */
    dev_complete(&p, 2); /* slots 6, 7: not there yet */
    ASSERT_EQ(p.notifies, 3);
    for (unsigned i = 5; i <= 8; i++)
        ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(i));
    ASSERT_EQ(drv->off_wrap, 0); /* slot 0, wrap counter 0 */
    ASSERT_OK(pair_add_small(&p, 9));
    ASSERT_OK(pair_add_small(&p, 10));
    vhu_vqd_kick_prepare(p.d);
    dev_complete(&p, 2); /* slots 0, 1 of lap 2: crosses the event */
    ASSERT_EQ(p.notifies, 4);
    ASSERT_EQ(p.errors, 0);
    pair_fini(&p);
    guest_fini(&g);
}

#define dev_publish(p, n) pair_complete(p, n, false)

/* vhu_vq_publish() shows descriptors without deciding; the next flush decides for every slot
 * published since the previous decision, a window longer than a lap included. */
TEST(packed_publish_shows_entries_and_flush_notifies_for_them)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8, .packed = true, .event_idx = true};
    struct vhu_vring_packed_desc_event *drv;
    uint32_t len;

    ASSERT_OK(pair_setup_small(&g, &p, &o, 8));
    drv = gh(&g, p.ring_gpa + 16 * 8);

    dev_publish(&p, 2); /* slots 0, 1: the driver asked for slot 0; no decision yet */
    ASSERT_EQ(p.notifies, 0);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(1)); /* visible all the same */
    vhu_vq_flush(p.q);
    ASSERT_EQ(p.notifies, 1);
    vhu_vq_flush(p.q);
    ASSERT_EQ(p.notifies, 1);

    /* A crossing in the published part counts when a push closes the window. */
    drv->off_wrap = 2 | W15;
    dev_publish(&p, 1);  /* slot 2 */
    dev_complete(&p, 1); /* slot 3: the window is [2, 4) */
    ASSERT_EQ(p.notifies, 2);

    /* More than a lap published before a decision: an event early in it still counts. */
    drv->off_wrap = 6 | W15; /* slot 6 of this lap */
    dev_publish(&p, 4);      /* slots 4-7, the lap ends */
    for (unsigned i = 2; i <= 8; i++)
        ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(i));
    drv->off_wrap = 6 | W15; /* consuming moved it; the driver puts it back */
    for (unsigned i = 9; i <= 13; i++)
        ASSERT_OK(pair_add_small(&p, i));
    vhu_vqd_kick_prepare(p.d);
    dev_publish(&p, 5); /* slots 0-4 of the next lap: 9 slots since the decision */
    ASSERT_EQ(p.notifies, 2);
    vhu_vq_flush(p.q);
    ASSERT_EQ(p.notifies, 3);
    ASSERT_EQ(p.errors, 0);
    pair_fini(&p);
    guest_fini(&g);
}

TEST(packed_event_idx_driver_side)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8, .packed = true, .event_idx = true};
    struct vhu_vring_packed_desc_event *dev;
    struct vhu_vq_elem *e;

    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    dev = gh(&g, p.ring_gpa + 16 * 8 + 4);
    ASSERT_EQ(dev->flags, VHU_VRING_PACKED_EVENT_FLAG_DESC);
    ASSERT(!vhu_vqd_kick_prepare(p.d));
    ASSERT_OK(pair_add_small(&p, 1));
    ASSERT(vhu_vqd_kick_prepare(p.d));
    ASSERT_OK(pair_add_small(&p, 2));
    ASSERT(!vhu_vqd_kick_prepare(p.d));
    dev_complete(&p, 2);
    ASSERT_EQ(dev->off_wrap, 2 | W15);
    ASSERT_OK(pair_add_small(&p, 3));
    ASSERT(vhu_vqd_kick_prepare(p.d));
    vhu_vq_disable_notify(p.q);
    ASSERT_EQ(dev->flags, VHU_VRING_PACKED_EVENT_FLAG_DISABLE);
    e = vhu_vq_pop(p.q);
    ASSERT(e != NULL);
    vhu_vq_push(p.q, e, 0);
    ASSERT_OK(pair_add_small(&p, 4));
    ASSERT(!vhu_vqd_kick_prepare(p.d));
    ASSERT(vhu_vq_enable_notify(p.q));
    ASSERT_EQ(dev->flags, VHU_VRING_PACKED_EVENT_FLAG_DESC);
    dev_complete(&p, 1);
    ASSERT(!vhu_vq_enable_notify(p.q));
    ASSERT_OK(pair_add_small(&p, 5));
    ASSERT(vhu_vqd_kick_prepare(p.d));
    ASSERT_EQ(p.errors, 0);
    pair_fini(&p);
    guest_fini(&g);
}

TEST(packed_flags_without_event_idx)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8, .packed = true};
    uint32_t len;

    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    ASSERT_OK(pair_add_small(&p, 1));
    ASSERT(vhu_vqd_kick_prepare(p.d));
    vhu_vq_disable_notify(p.q);
    ASSERT_OK(pair_add_small(&p, 2));
    ASSERT(!vhu_vqd_kick_prepare(p.d));
    ASSERT(vhu_vq_enable_notify(p.q));
    ASSERT_OK(pair_add_small(&p, 3));
    ASSERT(vhu_vqd_kick_prepare(p.d));
    vhu_vqd_disable_cb(p.d);
    dev_complete(&p, 1);
    ASSERT_EQ(p.notifies, 0);
    ASSERT(vhu_vqd_enable_cb(p.d));
    dev_complete(&p, 1);
    dev_complete(&p, 1);
    ASSERT_EQ(p.notifies, 2);
    for (unsigned i = 1; i <= 3; i++)
        ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(i));
    pair_fini(&p);
    guest_fini(&g);
}

TEST(packed_base_save_restore)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 5, .packed = true};
    struct vhu_vq_elem *e;
    uint32_t base, len;

    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    for (unsigned i = 0; i < 7; i++) /* 7 chains of 2 descriptors: 14 slots, wrap counter 1->0->1 */
        ASSERT_EQ(pair_roundtrip(&p, 8, 8, 64, i), 0);
    ASSERT_EQ(vhu_vq_get_base(p.q), (4 | W15) * 0x10001u);
    for (unsigned i = 0; i < 3; i++)
        ASSERT_OK(pair_add_small(&p, 100 + i));
    vhu_vqd_kick_prepare(p.d);
    e = vhu_vq_pop(p.q);
    ASSERT(e != NULL);
    vhu_vq_push(p.q, e, 3);
    base = vhu_vq_get_base(p.q);
    ASSERT_EQ(base, 0u | (0u << 16)); /* slot 0 of lap 3 (wrap 0) for both */
    vhu_vq_stop(p.q);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(100));
    vhu_vq_free(p.q);
    p.q = NULL;
    ASSERT_OK(pair_start_device(&p, base));
    dev_complete(&p, 3);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(101));
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(102));
    ASSERT(vhu_vqd_get_used(p.d, &len) == NULL);
    for (unsigned i = 0; i < 50; i++)
        ASSERT_EQ(pair_roundtrip(&p, 8, 70, 64, i), 0);
    ASSERT_EQ(vhu_vqd_base(p.d), vhu_vq_get_base(p.q));
    ASSERT_EQ(p.errors, 0);
    pair_fini(&p);
    guest_fini(&g);
}

/* Unpop rolls last_avail and its wrap counter back across the end of the ring. */
TEST(packed_unpop_across_wrap)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 5, .packed = true};
    struct vhu_vqd_seg s[3];
    struct vhu_vq_elem *a, *b;
    uint32_t before, mid, len;
    uint16_t id;

    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    for (unsigned i = 0; i < 4; i++) /* move to slot 4 */
        ASSERT_EQ(pair_roundtrip(&p, 0, 8, 64, i), 0);
    for (unsigned k = 0; k < 3; k++)
        s[k] = (struct vhu_vqd_seg){data_alloc(&g, 8), 8};
    ASSERT_OK(vhu_vqd_add(p.d, s, 1, 2, COOKIE(1))); /* slots 4, 0, 1 */
    ASSERT_OK(vhu_vqd_add(p.d, s, 0, 1, COOKIE(2))); /* slot 2 */
    vhu_vqd_kick_prepare(p.d);
    before = vhu_vq_get_base(p.q);
    ASSERT_EQ(before & 0xffff, 4 | W15);
    a = vhu_vq_pop(p.q);
    ASSERT(a && a->ndesc == 3);
    id = a->id;
    mid = vhu_vq_get_base(p.q);
    ASSERT_EQ(mid & 0xffff, 2); /* wrapped: counter 0 */
    b = vhu_vq_pop(p.q);
    ASSERT(b != NULL);
    vhu_vq_unpop(p.q, b);
    ASSERT_EQ(vhu_vq_get_base(p.q), mid);
    vhu_vq_unpop(p.q, a);
    ASSERT_EQ(vhu_vq_get_base(p.q), before);
    ASSERT_EQ(vhu_vq_inflight(p.q), 0);
    a = vhu_vq_pop(p.q);
    ASSERT(a != NULL);
    ASSERT_EQ(a->id, id);
    ASSERT_EQ(a->ndesc, 3);
    ASSERT_EQ(a->out_num, 1);
    ASSERT_EQ(a->in_num, 2);
    vhu_vq_push(p.q, a, 16);
    dev_complete(&p, 1);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(1));
    ASSERT_EQ(len, 16);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(2));
    ASSERT_EQ(vhu_vqd_base(p.d), vhu_vq_get_base(p.q));
    pair_fini(&p);
    guest_fini(&g);
}

static int lying_device(unsigned how)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8, .packed = true};
    struct vhu_vring_packed_desc *ring;
    uint32_t len;
    int r = 0;

    if (guest_init(&g) < 0 || pair_init(&p, &g, &o) < 0)
        return -1;
    ring = gh(&g, p.ring_gpa);
    pair_add_small(&p, 1);
    pair_add_small(&p, 2);
    vhu_vqd_kick_prepare(p.d);
    switch (how) {
    case 0: /* id not in flight */
        ring[0].id = 5;
        ring[0].len = 0;
        break;
    case 1: /* id out of range */
        ring[0].id = 200;
        ring[0].len = 0;
        break;
    case 2: /* longer than the buffer */
        ring[0].id = 0;
        ring[0].len = 9;
        break;
    }
    ring[0].flags = (uint16_t)(VQ_PACKED_AVAIL_BIT | VQ_PACKED_USED_BIT | VHU_VRING_DESC_F_WRITE);
    if (vhu_vqd_get_used(p.d, &len) != NULL || !vhu_vqd_broken(p.d) ||
        vhu_vqd_enable_cb(p.d))
        r = -2;
    pair_fini(&p);
    guest_fini(&g);
    return r;
}

TEST(packed_driver_refuses_lying_device)
{
    for (unsigned how = 0; how < 3; how++)
        if (lying_device(how) != 0)
            FAIL_AT("case %u not refused", how);
}
