/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vhu_vq_pop_burst() against vhu_vq_pop(): two device queues in one guest are offered the same
 * chains (single descriptors in the data region, in the ring region, across the two adjacent
 * regions whose host memory is not contiguous, zero-length ones, chains, indirect tables), one
 * popped chain by chain, the other in bursts of varying size. Every element must come out the
 * same (id, descriptor count, segments, lengths), the used entries must come back the same, and
 * both rings must end at the same position (and, with EVENT_IDX, ask for kicks at the same one),
 * lap after lap, split and packed. The malicious
 * single descriptors a burst takes on its own path are in test_vq_chain.
 */
#include "vq/vq_internal.h"
#include "vq_testlib.h"
#include "vhu_test.h"

#define NUM 16
#define COOKIE(n) ((void *)(uintptr_t)(n))

static uint32_t rnd(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* The segments of chain kind k (n_out + n_in of them), all in guest memory. */
static unsigned chain_segs(uint32_t k, uint64_t data, uint64_t ring_buf, uint64_t cross,
                           struct vhu_vqd_seg *s, unsigned *n_out)
{
    switch (k % 7) {
    case 0: /* one readable descriptor, data region */
        s[0] = (struct vhu_vqd_seg){data, 64 + k % 64};
        *n_out = 1;
        return 1;
    case 1: /* one writable descriptor, data region */
        s[0] = (struct vhu_vqd_seg){data + 256, 1 + k % 200};
        *n_out = 0;
        return 1;
    case 2: /* one writable descriptor in the ring region: another cached region */
        s[0] = (struct vhu_vqd_seg){ring_buf, 32};
        *n_out = 0;
        return 1;
    case 3: /* one descriptor across R0/R1: two host segments */
        s[0] = (struct vhu_vqd_seg){cross, 64};
        *n_out = k & 8 ? 1 : 0;
        return 1;
    case 4: /* a zero-length descriptor */
        s[0] = (struct vhu_vqd_seg){data + 512, 0};
        *n_out = 0;
        return 1;
    case 5: /* header + data + status, as a blk driver posts them */
        s[0] = (struct vhu_vqd_seg){data + 600, 16};
        s[1] = (struct vhu_vqd_seg){data + 1024, 512};
        s[2] = (struct vhu_vqd_seg){data + 700, 1};
        *n_out = 1;
        return 3;
    default: /* readable then writable */
        s[0] = (struct vhu_vqd_seg){data + 800, 12};
        s[1] = (struct vhu_vqd_seg){data + 2048, 1500};
        *n_out = 1;
        return 2;
    }
}

/* Split: the device's avail_event, the 16 bits after the used ring's entries. */
static uint16_t avail_event(const struct pair *p)
{
    uint16_t v;

    memcpy(&v, &p->q->used->ring[NUM], sizeof(v));
    return v;
}

static int same_elem(const struct vhu_vq_elem *a, const struct vhu_vq_elem *b)
{
    if (a->id != b->id || a->ndesc != b->ndesc || a->out_num != b->out_num ||
        a->in_num != b->in_num || a->out_len != b->out_len || a->in_len != b->in_len)
        return -__LINE__;
    for (unsigned i = 0; i < a->out_num + a->in_num; i++)
        if (a->iov[i].iov_base != b->iov[i].iov_base || a->iov[i].iov_len != b->iov[i].iov_len)
            return -__LINE__;
    return 0;
}

static int burst_vs_pop(bool packed, bool indirect, unsigned rounds)
{
    struct guest g;
    struct pair a, b;
    struct pair_opts o = {.num = NUM, .packed = packed, .indirect = indirect,
                          .ind_max = indirect ? 4 : 0, .event_idx = true};
    struct vhu_vq_elem *ea[NUM], *eb[NUM];
    uint64_t data, ring_buf, cross;
    uint32_t seed = packed ? 0x1234567u : 0x89abcdeu;
    unsigned fast = 0;
    int r = 0;

    if (guest_init(&g) < 0 || pair_init(&a, &g, &o) < 0 || pair_init(&b, &g, &o) < 0)
        return -__LINE__;
    data = data_alloc(&g, 4096);
    ring_buf = ring_alloc(&g, 64);
    cross = G_R1 - 32;
    for (unsigned round = 0; round < rounds && !r; round++) {
        unsigned n = 0, na = 0, nb = 0;

        /* the same chains into both rings, until one is full or 1..NUM are in */
        for (unsigned want = 1 + rnd(&seed) % NUM; n < want; n++) {
            struct vhu_vqd_seg s[3];
            unsigned n_out, ns = chain_segs(rnd(&seed), data, ring_buf, cross, s, &n_out);
            int ra = vhu_vqd_add(a.d, s, n_out, ns - n_out, COOKIE(n + 1));
            int rb = vhu_vqd_add(b.d, s, n_out, ns - n_out, COOKIE(n + 1));
            if (ra != rb)
                r = -__LINE__;
            if (ra < 0)
                break;
        }
        vhu_vqd_kick_prepare(a.d);
        vhu_vqd_kick_prepare(b.d);
        while (na < NUM && (ea[na] = vhu_vq_pop(a.q)) != NULL)
            na++;
        for (;;) {
            unsigned max = 1 + rnd(&seed) % NUM, got;
            if (max > NUM - nb)
                max = NUM - nb;
            got = max ? vhu_vq_pop_burst(b.q, eb + nb, max) : 0;
            if (got > max)
                return -__LINE__;
            nb += got;
            if (!got)
                break;
        }
        if (na != n || nb != n)
            r = -__LINE__;
        /* EVENT_IDX: the device's kick position follows the pops, burst or not */
        if (packed && a.q->dev_event->off_wrap != b.q->dev_event->off_wrap)
            r = -__LINE__;
        if (!packed && avail_event(&a) != avail_event(&b))
            r = -__LINE__;
        for (unsigned i = 0; i < n && !r; i++) {
            r = same_elem(ea[i], eb[i]);
            fast += ea[i]->ndesc == 1 && ea[i]->out_num + ea[i]->in_num == 1;
        }
        /* complete both the same way, in a scrambled order, and compare what the driver gets:
         * a one by one, b through vhu_vq_push_burst() in groups of random size (written NULL
         * when the whole group wrote nothing) */
        for (unsigned j = 0; j < n && !r;) {
            struct vhu_vq_elem *grp[8];
            uint32_t wg[8];
            unsigned ng = 0, want = 1 + rnd(&seed) % 8;
            bool any = false;
            for (; ng < want && j < n; ng++, j++) {
                unsigned k = (j * 5 + round) % n;
                while (ea[k] == NULL)
                    k = (k + 1) % n;
                uint32_t w = ea[k]->in_len ? (uint32_t)(round % (ea[k]->in_len + 1)) : 0;
                if (round % 3 == 0)
                    w += 7; /* more than some chains hold: clamped, by both */
                vhu_vq_push(a.q, ea[k], w);
                grp[ng] = eb[k];
                wg[ng] = w;
                any |= w != 0;
                ea[k] = eb[k] = NULL;
            }
            vhu_vq_push_burst(b.q, grp, any ? wg : NULL, ng);
        }
        {
            struct vhu_vq_counters ca, cb;
            vhu_vq_get_counters(a.q, &ca);
            vhu_vq_get_counters(b.q, &cb);
            if (ca.used != cb.used || ca.out_bytes != cb.out_bytes || ca.in_bytes != cb.in_bytes)
                r = -__LINE__;
        }
        vhu_vq_flush(a.q);
        vhu_vq_flush(b.q);
        for (;;) {
            uint32_t la = 0, lb = 0;
            void *ca = vhu_vqd_get_used(a.d, &la), *cb = vhu_vqd_get_used(b.d, &lb);
            if (ca != cb || la != lb) {
                r = -__LINE__;
                break;
            }
            if (!ca)
                break;
        }
        if (!r && (vhu_vq_get_base(a.q) != vhu_vq_get_base(b.q) ||
                   vhu_vqd_num_free(b.d) != NUM || vhu_vq_inflight(b.q) != 0))
            r = -__LINE__;
    }
    if (!r && (a.errors || b.errors || vhu_vq_broken(b.q)))
        r = -__LINE__;
    if (!r && fast < rounds) /* the burst's own path was exercised, many times over */
        r = -__LINE__;
    pair_fini(&a);
    pair_fini(&b);
    guest_fini(&g);
    return r;
}

TEST(burst_matches_pop_split)
{
    ASSERT_EQ(burst_vs_pop(false, false, 3000), 0);
}

TEST(burst_matches_pop_packed)
{
    ASSERT_EQ(burst_vs_pop(true, false, 3000), 0);
}

TEST(burst_matches_pop_packed_indirect)
{
    ASSERT_EQ(burst_vs_pop(true, true, 3000), 0);
}

TEST(burst_matches_pop_split_indirect)
{
    ASSERT_EQ(burst_vs_pop(false, true, 3000), 0);
}

/* A burst takes what the ring holds, up to max; the chains come back in ring order. */
TEST(burst_takes_what_is_there)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = NUM, .packed = true};
    struct vhu_vq_elem *e[NUM];
    struct vhu_vqd_seg s = {0, 64};
    uint32_t len;

    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    s.addr = data_alloc(&g, 64);
    for (unsigned i = 0; i < NUM; i++)
        ASSERT_OK(vhu_vqd_add(p.d, &s, 1, 0, COOKIE(i + 1)));
    vhu_vqd_kick_prepare(p.d);
    ASSERT_EQ(vhu_vq_pop_burst(p.q, e, 5), 5);
    ASSERT_EQ(vhu_vq_pop_burst(p.q, e + 5, NUM), NUM - 5);
    ASSERT_EQ(vhu_vq_pop_burst(p.q, e, NUM), 0); /* ring empty */
    for (unsigned i = 0; i < NUM; i++)
        vhu_vq_push(p.q, e[i], 0);
    vhu_vq_flush(p.q);
    for (unsigned i = 0; i < NUM; i++)
        ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(i + 1));
    ASSERT(vhu_vqd_get_used(p.d, &len) == NULL);
    ASSERT_EQ(p.errors, 0);
    pair_fini(&p);
    guest_fini(&g);
}

/*
 * vhu_vq_push_burst() checks every element as vhu_vq_push() does: one not in flight (pushed
 * already, or not from this queue) is refused with an error and skipped, the others complete;
 * on a broken queue the elements are only recycled (the rings are not written again).
 */
static void push_burst_hostile(bool packed)
{
    struct guest g;
    struct pair p, q;
    struct pair_opts o = {.num = NUM, .packed = packed};
    struct vhu_vq_elem *e[4], *x, *grp[4];
    struct vhu_vqd_seg s = {0, 64};
    struct vhu_vq_counters c;
    uint32_t len, w[4] = {9, 9, 9, 9};

    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    ASSERT_OK(pair_init(&q, &g, &o));
    s.addr = data_alloc(&g, 64);
    for (unsigned i = 0; i < 4; i++)
        ASSERT_OK(vhu_vqd_add(p.d, &s, 0, 1, COOKIE(i + 1)));
    ASSERT_OK(vhu_vqd_add(q.d, &s, 0, 1, COOKIE(9)));
    vhu_vqd_kick_prepare(p.d);
    vhu_vqd_kick_prepare(q.d);
    ASSERT_EQ(vhu_vq_pop_burst(p.q, e, 4), 4);
    ASSERT_EQ(vhu_vq_pop_burst(q.q, &x, 1), 1);
    vhu_vq_push(p.q, e[1], 0);
    /* e[1] again (completed already) and x (q's) among p's own */
    grp[0] = e[0];
    grp[1] = e[1];
    grp[2] = x;
    grp[3] = e[2];
    vhu_vq_push_burst(p.q, grp, w, 4);
    vhu_vq_flush(p.q);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(2));
    ASSERT_EQ(len, 0);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(1));
    ASSERT_EQ(len, 9);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(3));
    ASSERT(vhu_vqd_get_used(p.d, &len) == NULL);
    ASSERT_EQ(vhu_vq_inflight(p.q), 1);
    vhu_vq_get_counters(p.q, &c);
    ASSERT_EQ(c.used, 3);
    ASSERT_EQ(c.in_bytes, 18);
    ASSERT(!vhu_vq_broken(p.q));
    /* broken: e[3] is recycled, nothing reaches the ring */
    vhu_vq_break(p.q, "test");
    vhu_vq_push_burst(p.q, &e[3], NULL, 1);
    vhu_vq_flush(p.q);
    ASSERT(vhu_vqd_get_used(p.d, &len) == NULL);
    ASSERT_EQ(vhu_vq_inflight(p.q), 0);
    vhu_vq_push(q.q, x, 0);
    vhu_vq_flush(q.q);
    ASSERT(vhu_vqd_get_used(q.d, &len) == COOKIE(9));
    pair_fini(&p);
    pair_fini(&q);
    guest_fini(&g);
}

TEST(push_burst_skips_elements_not_in_flight_split) { push_burst_hostile(false); }
TEST(push_burst_skips_elements_not_in_flight_packed) { push_burst_hostile(true); }
