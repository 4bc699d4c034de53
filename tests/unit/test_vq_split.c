/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Split virtqueue: the driver side (vhu_vqd) and the device side (vhu_vq) on the same rings in
 * one fake guest. Round trips, segments split at region boundaries, 16-bit index wrap-around,
 * out-of-order completion, indirect tables, EVENT_IDX and flag-based suppression in both
 * directions, ring base save/restore, unpop, a driver that refuses a lying device, a new memory
 * table replacing the ring's cached region, dirty logging at the right guest pages, and inflight
 * tracking (resubmission after a crash, unpopped chains not in flight, a frontend writing the
 * region during recovery: qsort/qsort_r are interposed below).
 */
#include <fcntl.h>
#include "vhu/log.h"
#include "vq_testlib.h"
#include "vhu_test.h"

#define COOKIE(n) ((void *)(uintptr_t)(n))

TEST(need_event_arithmetic)
{
    /* virtio 2.7.10: notify iff event_idx is in [old, new), modulo 2^16. */
    static const struct {
        uint16_t ev, new_idx, old;
        bool want;
    } cases[] = {
        {0, 1, 0, true},            /* the first entry crosses event 0 */
        {0, 2, 1, false},           /* event already behind the window */
        {5, 6, 5, true},
        {5, 5, 4, false},           /* event == new: not reached yet */
        {5, 10, 0, true},           /* inside a batch */
        {10, 10, 0, false},
        {9, 10, 0, true},
        {1, 1, 1, false},           /* empty window */
        {0xffff, 0, 0xfffe, true},  /* window wraps through 0 */
        {0xffff, 0xffff, 0xfffe, false},
        {0, 1, 0xffff, true},
        {0xfffe, 2, 0xfff0, true},
        {3, 2, 0xfff0, false},      /* event after the wrapped window */
        {0xffef, 2, 0xfff0, false}, /* event just before it */
        {0xfff0, 2, 0xfff0, true},  /* event == old */
        {0x8000, 0x8001, 0x7fff, true},
        {0x7ffe, 0x8001, 0x7fff, false},
    };

    for (unsigned i = 0; i < VHU_ARRAY_SIZE(cases); i++) {
        if (vhu_vring_need_event(cases[i].ev, cases[i].new_idx, cases[i].old) != cases[i].want)
            FAIL_AT("case %u: ev=%#x new=%#x old=%#x", i, cases[i].ev, cases[i].new_idx,
                    cases[i].old);
    }
}

TEST(roundtrip_basic)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8};

    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    ASSERT_EQ(vhu_vq_num(p.q), 8);
    ASSERT(vhu_vq_started(p.q));
    ASSERT(!vhu_vq_has_work(p.q));
    ASSERT(vhu_vq_pop(p.q) == NULL);
    ASSERT_EQ(pair_roundtrip(&p, 100, 200, 64, 1), 0);
    ASSERT_EQ(pair_roundtrip(&p, 0, 1, 64, 2), 0);   /* write-only */
    ASSERT_EQ(pair_roundtrip(&p, 300, 0, 100, 3), 0); /* read-only */
    ASSERT_EQ(vhu_vqd_num_free(p.d), 8);
    ASSERT_EQ(vhu_vq_inflight(p.q), 0);
    ASSERT(p.notifies >= 3);
    ASSERT_EQ(p.errors, 0);
    pair_fini(&p);
    guest_fini(&g);
}

/* A descriptor crossing from R0 into R1 (adjacent in gpa, apart in host memory) must become two
 * iovecs, each pointing at the right host bytes. */
TEST(segment_spans_regions)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8};
    struct vhu_vqd_seg s;
    struct vhu_vq_elem *e;
    uint8_t buf[256], back[256];
    uint32_t len;

    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    for (unsigned i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i ^ 0x5a);
    gwrite(&g, G_R1 - 128, buf, sizeof(buf));

    s = (struct vhu_vqd_seg){G_R1 - 128, 256};
    ASSERT_OK(vhu_vqd_add(p.d, &s, 1, 0, COOKIE(1)));
    vhu_vqd_kick_prepare(p.d);
    e = vhu_vq_pop(p.q);
    ASSERT(e != NULL);
    ASSERT_EQ(e->out_num, 2);
    ASSERT_EQ(e->in_num, 0);
    ASSERT_EQ(e->out_len, 256);
    ASSERT(e->iov[0].iov_base == g.host + 0x40000 - 128);
    ASSERT_EQ(e->iov[0].iov_len, 128);
    ASSERT(e->iov[1].iov_base == g.host + 0x50000);
    ASSERT_EQ(e->iov[1].iov_len, 128);
    ASSERT_EQ(vhu_iov_to_buf(e->iov, e->out_num, 0, back, sizeof(back)), 256);
    ASSERT(memcmp(buf, back, sizeof(buf)) == 0);
    vhu_vq_push(p.q, e, 0);
    vhu_vq_flush(p.q);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(1));
    ASSERT_EQ(len, 0);

    /* Writable, crossing the same boundary. */
    memset(gh(&g, G_R1 - 100), 0, 100);
    memset(gh(&g, G_R1), 0, 100);
    s = (struct vhu_vqd_seg){G_R1 - 100, 200};
    ASSERT_OK(vhu_vqd_add(p.d, &s, 0, 1, COOKIE(2)));
    vhu_vqd_kick_prepare(p.d);
    e = vhu_vq_pop(p.q);
    ASSERT(e != NULL);
    ASSERT_EQ(e->out_num, 0);
    ASSERT_EQ(e->in_num, 2);
    ASSERT_EQ(vhu_iov_from_buf(e->iov, 2, 0, buf, 200), 200);
    vhu_vq_push(p.q, e, 200);
    vhu_vq_flush(p.q);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(2));
    ASSERT_EQ(len, 200);
    gread(&g, G_R1 - 100, back, 200);
    ASSERT(memcmp(buf, back, 200) == 0);
    pair_fini(&p);
    guest_fini(&g);
}

/* A new memory table takes effect at once: the region the ring cached from the old table (the
 * same guest address, other host memory now) is not used again. */
TEST(new_table_replaces_cached_region)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8};
    struct vhu_mem_region *rs[3];
    struct vhu_mem_table *t;
    struct vhu_vqd_seg s;
    struct vhu_vq_elem *e;
    uint64_t buf;
    uint8_t *alt;
    uint32_t len;

    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    buf = data_alloc(&g, 64);
    s = (struct vhu_vqd_seg){buf, 64};
    ASSERT_OK(vhu_vqd_add(p.d, &s, 1, 0, COOKIE(1)));
    vhu_vqd_kick_prepare(p.d);
    e = vhu_vq_pop(p.q);
    ASSERT(e != NULL);
    ASSERT(e->iov[0].iov_base == gh(&g, buf));
    vhu_vq_push(p.q, e, 0);
    vhu_vq_flush(p.q);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(1));

    /* the same layout, but R2 now backed by other memory */
    alt = aligned_alloc(4096, G_RSIZE);
    ASSERT(alt != NULL);
    for (unsigned i = 0; i < 3; i++) {
        const struct vhu_mem_region *old = g.mem->by_gpa[i];
        struct vhu_mem_region_desc d = {.gpa = old->gpa, .size = old->size, .uva = old->uva,
                                        .fd = -1, .host = i == 2 ? alt : old->host};
        ASSERT_OK(vhu_mem_region_map(&d, &rs[i]));
    }
    ASSERT_OK(vhu_mem_table_new(rs, 3, &t));
    vhu_vq_set_mem(p.q, t);
    ASSERT_OK(vhu_vqd_add(p.d, &s, 1, 0, COOKIE(2)));
    vhu_vqd_kick_prepare(p.d);
    e = vhu_vq_pop(p.q);
    ASSERT(e != NULL);
    ASSERT(e->iov[0].iov_base == alt + (buf - G_R2));
    vhu_vq_push(p.q, e, 0);
    vhu_vq_flush(p.q);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(2));
    ASSERT_EQ(p.errors, 0);
    pair_fini(&p);
    vhu_mem_table_put(t);
    free(alt);
    guest_fini(&g);
}

/* Dirty logging of buffer writes: elements keep no guest addresses, the log derives them from
 * the host addresses at push, in whichever region each segment lies, also for an element popped
 * before logging started. */
TEST(log_marks_guest_pages_of_written_segments)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8};
    struct vhu_vqd_seg s[2] = {{G_R1 - 100, 300}, {G_R2 + 0x3000 - 8, 64}};
    struct vhu_vq_elem *e;
    uint8_t bitmap[128] = {0}, want[128] = {0};
    struct vhu_vq_log lg = {.bitmap = bitmap, .size = sizeof(bitmap), .all = true};
    uint32_t len;

    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    ASSERT_OK(vhu_vqd_add(p.d, s, 0, 2, COOKIE(1)));
    vhu_vqd_kick_prepare(p.d);
    e = vhu_vq_pop(p.q);
    ASSERT(e != NULL);
    ASSERT_EQ(e->in_num, 3); /* the first one split at G_R1 */
    vhu_vq_set_log(p.q, &lg);
    /* the device wrote all of the first buffer and 8 bytes of the second: pages 0x13f, 0x140,
     * 0x202 */
    vhu_vq_push(p.q, e, 308);
    vhu_vq_flush(p.q);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(1));
    for (uint64_t page = 0; page < sizeof(bitmap) * 8; page++)
        if (page == (G_R1 - 100) / 4096 || page == G_R1 / 4096 || page == (G_R2 + 0x3000 - 8) / 4096)
            want[page / 8] |= (uint8_t)(1u << (page % 8));
    ASSERT(memcmp(bitmap, want, sizeof(bitmap)) == 0);

    /* a device's own write elsewhere in the buffer: 4 bytes at offset 300 + 40 (page 0x203) */
    ASSERT_OK(vhu_vqd_add(p.d, s, 0, 2, COOKIE(2)));
    vhu_vqd_kick_prepare(p.d);
    e = vhu_vq_pop(p.q);
    ASSERT(e != NULL);
    memset(bitmap, 0, sizeof(bitmap));
    vhu_vq_log_write(p.q, e, 340, 4);
    memset(want, 0, sizeof(want));
    want[(G_R2 + 0x3000) / 4096 / 8] |= (uint8_t)(1u << ((G_R2 + 0x3000) / 4096 % 8));
    ASSERT(memcmp(bitmap, want, sizeof(bitmap)) == 0);
    vhu_vq_set_log(p.q, NULL);
    vhu_vq_push(p.q, e, 0);
    vhu_vq_flush(p.q);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(2));
    ASSERT_EQ(p.errors, 0);
    pair_fini(&p);
    guest_fini(&g);
}

static int wrap_run(uint16_t num, uint32_t seg, unsigned iters)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = num};
    int r;

    if ((r = guest_init(&g)) < 0 || (r = pair_init(&p, &g, &o)) < 0)
        return r;
    for (unsigned i = 0; i < iters && r == 0; i++) {
        /* at most 2 readable + 2 writable segments of seg bytes: fits num >= 4 */
        uint32_t out = i % (2 * seg + 1), in = 1 + (i * 7) % (2 * seg);
        r = pair_roundtrip(&p, out, in, seg, i);
        if (r)
            fprintf(stderr, "  iteration %u failed at line %d\n", i, -r);
    }
    if (r == 0 && (vhu_vqd_num_free(p.d) != num || vhu_vq_inflight(p.q) != 0 || p.errors))
        r = -1;
    /* The free-running indices really did wrap: 16 bits of iters. */
    if (r == 0 && vhu_vq_get_base(p.q) != (uint16_t)iters)
        r = -2;
    pair_fini(&p);
    guest_fini(&g);
    return r;
}

TEST(wraparound_num4)
{
    ASSERT_EQ(wrap_run(4, 64, 70000), 0);
}

TEST(wraparound_num8)
{
    ASSERT_EQ(wrap_run(8, 32, 70000), 0);
}

/* Fill the ring, complete in a scrambled order with varying lengths, many rounds (wraps too). */
TEST(out_of_order_completion)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 16}; /* up to 8 chains of 2 descriptors */
    struct vhu_vq_elem *els[8];
    uint64_t bufs[8];
    unsigned seen[8];

    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    for (unsigned k = 0; k < 8; k++)
        bufs[k] = data_alloc(&g, 16);
    for (unsigned round = 0; round < 10000; round++) {
        unsigned n = 1 + round % 8, got = 0;

        for (unsigned k = 0; k < n; k++) {
            struct vhu_vqd_seg s[2] = {{bufs[k], 4}, {bufs[k] + 4, 8}};
            uint32_t tag = round * 8 + k;
            gwrite(&g, bufs[k], &tag, 4);
            ASSERT_OK(vhu_vqd_add(p.d, s, 1, 1, COOKIE(k + 1)));
        }
        vhu_vqd_kick_prepare(p.d);
        for (unsigned k = 0; k < n; k++) {
            els[k] = vhu_vq_pop(p.q);
            ASSERT(els[k] != NULL);
        }
        ASSERT(vhu_vq_pop(p.q) == NULL);
        ASSERT_EQ(vhu_vq_inflight(p.q), n);
        for (unsigned j = 0; j < n; j++) {
            /* visit order: a reversed rotation or a rotated zig-zag, depending on the round */
            unsigned zig = (j & 1) ? n - 1 - j / 2 : j / 2;
            unsigned k = (round & 1) ? (n - 1 - (j + round) % n) : (zig + round) % n;
            uint32_t tag, wlen;
            if (k >= n || !els[k])
                continue;
            ASSERT_EQ(vhu_iov_to_buf(els[k]->iov, els[k]->out_num, 0, &tag, 4), 4);
            wlen = 1 + tag % 8;
            vhu_iov_from_buf(els[k]->iov + els[k]->out_num, els[k]->in_num, 0, &tag,
                             VHU_MIN(wlen, 4));
            vhu_vq_push(p.q, els[k], wlen);
            els[k] = NULL;
            if (j % 3 == 2)
                vhu_vq_flush(p.q);
        }
        for (unsigned k = 0; k < n; k++)
            ASSERT(els[k] == NULL); /* the permutation visited everything */
        vhu_vq_flush(p.q);
        memset(seen, 0, sizeof(seen));
        for (;;) {
            uint32_t len, tag, want;
            void *c = vhu_vqd_get_used(p.d, &len);
            if (!c)
                break;
            unsigned k = (unsigned)(uintptr_t)c - 1;
            ASSERT(k < n);
            seen[k]++;
            want = round * 8 + k;
            ASSERT_EQ(len, 1 + want % 8);
            tag = 0;
            gread(&g, bufs[k] + 4, &tag, VHU_MIN(len, 4));
            ASSERT_EQ(tag, len >= 4 ? want : (want & ((1u << (8 * len)) - 1)));
            got++;
        }
        ASSERT_EQ(got, n);
        for (unsigned k = 0; k < n; k++)
            ASSERT_EQ(seen[k], 1);
        ASSERT_EQ(vhu_vqd_num_free(p.d), 16);
    }
    ASSERT_EQ(p.errors, 0);
    pair_fini(&p);
    guest_fini(&g);
}

TEST(indirect_chains)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 4, .indirect = true, .ind_max = 8};
    struct vhu_vqd_seg s[6];
    struct vhu_vq_elem *e;
    struct vhu_vring_desc *ring;
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
    /* Six segments on a ring of four: only possible as one indirect descriptor. */
    ASSERT_OK(vhu_vqd_add(p.d, s, 3, 3, COOKIE(9)));
    ASSERT_EQ(vhu_vqd_num_free(p.d), 3);
    ASSERT(ring[0].flags & VHU_VRING_DESC_F_INDIRECT);
    ASSERT_EQ(ring[0].len, 6 * 16);
    vhu_vqd_kick_prepare(p.d);
    e = vhu_vq_pop(p.q);
    ASSERT(e != NULL);
    ASSERT_EQ(e->ndesc, 1);
    ASSERT_EQ(e->out_num, 3);
    ASSERT_EQ(e->in_num, 3);
    ASSERT_EQ(e->out_len, 96);
    ASSERT_EQ(e->in_len, 96);
    ASSERT_EQ(((uint8_t *)e->iov[2].iov_base)[5], 2);
    memset(e->iov[5].iov_base, 0xee, 32);
    vhu_vq_push(p.q, e, 96);
    vhu_vq_flush(p.q);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(9));
    ASSERT_EQ(len, 96);
    ASSERT_EQ(*(uint8_t *)gh(&g, buf + 5 * 32 + 31), 0xee);
    ASSERT_EQ(vhu_vqd_num_free(p.d), 4);
    /* A single segment is never worth a table. */
    ASSERT_OK(vhu_vqd_add(p.d, s, 1, 0, COOKIE(1)));
    ASSERT(!(ring[0].flags & VHU_VRING_DESC_F_INDIRECT)); /* head 0 was freed and reused */
    vhu_vqd_kick_prepare(p.d);
    e = vhu_vq_pop(p.q);
    ASSERT(e && e->out_num == 1);
    vhu_vq_push(p.q, e, 0);
    vhu_vq_flush(p.q);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(1));
    /* And many more, through index wrap-around. */
    for (unsigned i = 0; i < 3000; i++)
        ASSERT_EQ(pair_roundtrip(&p, 40 + i % 50, 30 + i % 70, 32, i), 0);
    ASSERT_EQ(p.errors, 0);
    pair_fini(&p);
    guest_fini(&g);
}

#define dev_complete(p, n) pair_complete(p, n, true)

TEST(event_idx_device_notifies_when_used_event_crossed)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8, .event_idx = true};
    struct vhu_vring_avail *avail;
    uint32_t len;

    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    avail = gh(&g, p.ring_gpa + 16 * 8);
    for (unsigned i = 0; i < 8; i++)
        ASSERT_OK(pair_add_small(&p, i + 1));
    vhu_vqd_kick_prepare(p.d);

    dev_complete(&p, 1); /* used 0 -> 1 crosses used_event 0 */
    ASSERT_EQ(p.notifies, 1);
    dev_complete(&p, 1); /* 1 -> 2: the driver has not consumed, used_event still 0 */
    ASSERT_EQ(p.notifies, 1);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(1));
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(2));
    ASSERT_EQ(avail->ring[8], 2); /* used_event follows consumption */
    dev_complete(&p, 1);          /* 2 -> 3 */
    ASSERT_EQ(p.notifies, 2);

    vhu_vqd_disable_cb(p.d);
    dev_complete(&p, 1); /* 3 -> 4 */
    ASSERT_EQ(p.notifies, 2);
    ASSERT(vhu_vqd_enable_cb(p.d)); /* entries are pending: the caller must look */
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(3));
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(4));
    ASSERT(!vhu_vqd_enable_cb(p.d));

    /* A batch notifies when it crosses the event index anywhere inside it. */
    avail->ring[8] = 5;
    dev_complete(&p, 2); /* 4 -> 6 crosses 5 */
    ASSERT_EQ(p.notifies, 3);
    avail->ring[8] = 9;
    dev_complete(&p, 2); /* 6 -> 8: 9 not reached */
    ASSERT_EQ(p.notifies, 3);
    /* A flush with nothing pushed never notifies. */
    vhu_vq_flush(p.q);
    ASSERT_EQ(p.notifies, 3);
    ASSERT_EQ(p.errors, 0);
    pair_fini(&p);
    guest_fini(&g);
}

#define dev_publish(p, n) pair_complete(p, n, false)

/* vhu_vq_publish() shows entries without deciding; the next flush decides for everything
 * published since the previous decision. */
TEST(publish_shows_entries_and_flush_notifies_for_them)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8, .event_idx = true};
    struct vhu_vring_avail *avail;
    uint32_t len;

    ASSERT_OK(pair_setup_small(&g, &p, &o, 8));
    avail = gh(&g, p.ring_gpa + 16 * 8);

    dev_publish(&p, 1); /* 0 -> 1 crosses used_event 0, but no decision yet */
    ASSERT_EQ(p.notifies, 0);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(1)); /* visible all the same */
    dev_publish(&p, 2); /* 1 -> 3 */
    ASSERT_EQ(p.notifies, 0);
    vhu_vq_flush(p.q); /* nothing staged: decides on [0, 3), which crossed 0 and 1 */
    ASSERT_EQ(p.notifies, 1);
    vhu_vq_flush(p.q); /* decided already */
    ASSERT_EQ(p.notifies, 1);

    /* A crossing in the published part of a window counts when a push closes it. */
    avail->ring[8] = 3;
    dev_publish(&p, 1); /* 3 -> 4 crosses 3 */
    dev_complete(&p, 1); /* 4 -> 5: the flush's window is [3, 5) */
    ASSERT_EQ(p.notifies, 2);

    /* Nothing crossed: no notification. */
    avail->ring[8] = 7;
    dev_publish(&p, 1); /* 5 -> 6 */
    vhu_vq_flush(p.q);
    ASSERT_EQ(p.notifies, 2);
    for (unsigned i = 2; i <= 6; i++)
        ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(i));
    ASSERT_EQ(p.errors, 0);
    pair_fini(&p);
    guest_fini(&g);
}

/* Without EVENT_IDX the decision is the driver's flag, taken at flush time. */
TEST(publish_then_flush_without_event_idx)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8};
    uint32_t len;

    ASSERT_OK(pair_setup_small(&g, &p, &o, 4));
    dev_publish(&p, 2); /* interrupts on while published ... */
    ASSERT_EQ(p.notifies, 0);
    vhu_vqd_disable_cb(p.d); /* ... off when the flush decides */
    vhu_vq_flush(p.q);
    ASSERT_EQ(p.notifies, 0);
    dev_publish(&p, 2); /* and the other way round */
    ASSERT(vhu_vqd_enable_cb(p.d));
    vhu_vq_flush(p.q);
    ASSERT_EQ(p.notifies, 1);
    for (unsigned i = 1; i <= 4; i++)
        ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(i));
    pair_fini(&p);
    guest_fini(&g);
}

/* A ring's worth published without a decision: the next publish decides. */
TEST(publish_after_a_ring_of_publishes_decides)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8, .event_idx = true};
    uint32_t len;

    ASSERT_OK(pair_setup_small(&g, &p, &o, 8));
    for (unsigned i = 0; i < 8; i++)
        dev_publish(&p, 1);
    ASSERT_EQ(p.notifies, 0);
    for (unsigned i = 1; i <= 8; i++)
        ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(i)); /* used_event follows: 8 */
    ASSERT_OK(pair_add_small(&p, 9));
    vhu_vqd_kick_prepare(p.d);
    dev_publish(&p, 1); /* 8 -> 9 crosses 8; the window [0, 9) is decided here */
    ASSERT_EQ(p.notifies, 1);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(9));
    vhu_vq_flush(p.q);
    ASSERT_EQ(p.notifies, 1);
    ASSERT_EQ(p.errors, 0);
    pair_fini(&p);
    guest_fini(&g);
}

/* No flush follows on a broken queue: what was published is notified when it breaks. */
TEST(break_notifies_for_published_entries)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8, .event_idx = true};
    uint32_t len;

    ASSERT_OK(pair_setup_small(&g, &p, &o, 2));
    dev_publish(&p, 1);
    ASSERT_EQ(p.notifies, 0);
    vhu_vq_break(p.q, "test");
    ASSERT_EQ(p.notifies, 1);
    vhu_vq_flush(p.q);
    ASSERT_EQ(p.notifies, 1);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(1));
    pair_fini(&p);
    guest_fini(&g);
}

TEST(event_idx_driver_kicks_when_avail_event_crossed)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8, .event_idx = true};
    struct vhu_vq_elem *e;

    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    ASSERT(!vhu_vqd_kick_prepare(p.d)); /* nothing added */
    ASSERT_OK(pair_add_small(&p, 1));
    ASSERT(vhu_vqd_kick_prepare(p.d)); /* 0 -> 1 crosses avail_event 0 */
    ASSERT_OK(pair_add_small(&p, 2));
    ASSERT(!vhu_vqd_kick_prepare(p.d)); /* device has not looked since */
    dev_complete(&p, 2);                /* pops advance avail_event to 2 */
    ASSERT_OK(pair_add_small(&p, 3));
    ASSERT(vhu_vqd_kick_prepare(p.d));

    vhu_vq_disable_notify(p.q);
    e = vhu_vq_pop(p.q); /* avail_event stays at 2 while disabled */
    ASSERT(e != NULL);
    vhu_vq_push(p.q, e, 0);
    ASSERT_OK(pair_add_small(&p, 4));
    ASSERT(!vhu_vqd_kick_prepare(p.d));
    ASSERT(vhu_vq_enable_notify(p.q)); /* re-check finds the buffer added meanwhile */
    dev_complete(&p, 1);
    ASSERT(!vhu_vq_enable_notify(p.q));
    ASSERT_OK(pair_add_small(&p, 5));
    ASSERT(vhu_vqd_kick_prepare(p.d));
    ASSERT_EQ(p.errors, 0);
    pair_fini(&p);
    guest_fini(&g);
}

TEST(flag_based_suppression)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8};
    uint32_t len;

    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    ASSERT_OK(pair_add_small(&p, 1));
    ASSERT(vhu_vqd_kick_prepare(p.d));
    vhu_vq_disable_notify(p.q); /* used->flags = NO_NOTIFY */
    ASSERT_OK(pair_add_small(&p, 2));
    ASSERT(!vhu_vqd_kick_prepare(p.d));
    ASSERT(vhu_vq_enable_notify(p.q));
    ASSERT_OK(pair_add_small(&p, 3));
    ASSERT(vhu_vqd_kick_prepare(p.d));

    vhu_vqd_disable_cb(p.d); /* avail->flags = NO_INTERRUPT */
    dev_complete(&p, 1);
    ASSERT_EQ(p.notifies, 0);
    ASSERT(vhu_vqd_enable_cb(p.d));
    dev_complete(&p, 1);
    ASSERT_EQ(p.notifies, 1);
    dev_complete(&p, 1);
    ASSERT_EQ(p.notifies, 2); /* without EVENT_IDX every flush notifies */
    for (unsigned i = 1; i <= 3; i++)
        ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(i));
    pair_fini(&p);
    guest_fini(&g);
}

/* Without a notify hook the ring signals its call sink (an eventfd notifier here). */
TEST(default_notify_signals_call_sink)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8};
    struct vhu_vq_hooks hooks = {0};
    struct vhu_notifier *call;
    int fd = vhu_eventfd_new();

    ASSERT(fd >= 0);
    ASSERT_OK(vhu_notifier_eventfd_new(fcntl(fd, F_DUPFD_CLOEXEC, 0), &call));
    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    vhu_vq_set_hooks(p.q, &hooks);
    vhu_vq_set_call(p.q, call);
    ASSERT(vhu_vq_call(p.q) == call);
    ASSERT_EQ(pair_roundtrip(&p, 10, 10, 64, 1), 0);
    ASSERT_EQ(vhu_eventfd_drain(fd), 1);
    vhu_vq_notify(p.q);
    ASSERT_EQ(vhu_eventfd_drain(fd), 1);
    vhu_vq_set_call(p.q, NULL);
    ASSERT_EQ(pair_roundtrip(&p, 10, 10, 64, 2), 0);
    ASSERT_EQ(vhu_eventfd_drain(fd), 0);
    vhu_notifier_free(call);
    vhu_fd_close(&fd);
    pair_fini(&p);
    guest_fini(&g);
}

/* GET_VRING_BASE / SET_VRING_BASE: stop with buffers still available, restart a fresh device at
 * the saved base, and nothing is lost or repeated. */
TEST(base_save_restore)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8};
    struct vhu_vq_elem *e;
    uint32_t base, len;

    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    for (unsigned i = 0; i < 13; i++)
        ASSERT_EQ(pair_roundtrip(&p, 8, 8, 64, i), 0);
    ASSERT_EQ(vhu_vqd_base(p.d), 13);
    for (unsigned i = 0; i < 3; i++)
        ASSERT_OK(pair_add_small(&p, 100 + i));
    vhu_vqd_kick_prepare(p.d);
    e = vhu_vq_pop(p.q);
    ASSERT(e != NULL);
    vhu_vq_push(p.q, e, 3);
    ASSERT_ERR(-EBUSY, vhu_vq_set_base(p.q, 0));
    base = vhu_vq_get_base(p.q);
    ASSERT_EQ(base, 14);
    vhu_vq_stop(p.q); /* publishes the staged entry */
    ASSERT(!vhu_vq_started(p.q));
    ASSERT_EQ(vhu_vq_get_base(p.q), 14);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(100));
    ASSERT_EQ(len, 3);
    vhu_vq_free(p.q);
    p.q = NULL;

    ASSERT_OK(pair_start_device(&p, base));
    e = vhu_vq_pop(p.q);
    ASSERT(e != NULL);
    vhu_vq_push(p.q, e, 1);
    e = vhu_vq_pop(p.q);
    ASSERT(e != NULL);
    vhu_vq_push(p.q, e, 2);
    ASSERT(vhu_vq_pop(p.q) == NULL);
    vhu_vq_flush(p.q);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(101));
    ASSERT_EQ(len, 1);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(102));
    ASSERT_EQ(len, 2);
    ASSERT(vhu_vqd_get_used(p.d, &len) == NULL);
    for (unsigned i = 0; i < 20; i++)
        ASSERT_EQ(pair_roundtrip(&p, 8, 8, 64, i), 0);
    ASSERT_EQ(vhu_vq_get_base(p.q), 36);
    ASSERT_EQ(vhu_vqd_base(p.d), 36);

    /* Restarting the same object works too (stop, start). */
    vhu_vq_stop(p.q);
    ASSERT_OK(vhu_vq_start(p.q, &p.cfg, g.mem));
    ASSERT_EQ(pair_roundtrip(&p, 8, 8, 64, 99), 0);
    ASSERT_EQ(p.errors, 0);
    pair_fini(&p);
    guest_fini(&g);
}

/* The driver gets cookies 1..n back in that order and nothing else, no queue error; then both
 * sides go. */
static void used_in_order_then_fini(struct pair *p, struct guest *g, unsigned n)
{
    uint32_t len;

    for (unsigned i = 1; i <= n; i++)
        ASSERT(vhu_vqd_get_used(p->d, &len) == COOKIE(i));
    ASSERT(vhu_vqd_get_used(p->d, &len) == NULL);
    ASSERT_EQ(p->errors, 0);
    pair_fini(p);
    guest_fini(g);
}

TEST(unpop_lifo_repops_same_chains)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8};
    struct vhu_vq_elem *a, *b, *c;
    uint16_t ida, idb;

    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    for (unsigned i = 1; i <= 3; i++)
        ASSERT_OK(pair_add_small(&p, i));
    vhu_vqd_kick_prepare(p.d);
    a = vhu_vq_pop(p.q);
    b = vhu_vq_pop(p.q);
    ASSERT(a && b);
    ida = a->id;
    idb = b->id;
    ASSERT_EQ(vhu_vq_inflight(p.q), 2);
    vhu_vq_unpop(p.q, b);
    vhu_vq_unpop(p.q, a);
    ASSERT_EQ(vhu_vq_inflight(p.q), 0);
    ASSERT(vhu_vq_has_work(p.q));
    a = vhu_vq_pop(p.q);
    b = vhu_vq_pop(p.q);
    c = vhu_vq_pop(p.q);
    ASSERT(a && b && c);
    ASSERT_EQ(a->id, ida);
    ASSERT_EQ(b->id, idb);
    ASSERT(vhu_vq_pop(p.q) == NULL);
    vhu_vq_push(p.q, a, 1);
    vhu_vq_push(p.q, b, 1);
    vhu_vq_push(p.q, c, 1);
    vhu_vq_flush(p.q);
    used_in_order_then_fini(&p, &g, 3);
}

TEST(unpop_out_of_order_completes_with_zero)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8};
    struct vhu_vq_elem *a, *b;
    uint32_t len = 99;

    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    for (unsigned i = 1; i <= 2; i++)
        ASSERT_OK(pair_add_small(&p, i));
    vhu_vqd_kick_prepare(p.d);
    a = vhu_vq_pop(p.q);
    b = vhu_vq_pop(p.q);
    ASSERT(a && b);
    vhu_vq_unpop(p.q, a); /* not the most recent: cannot rewind */
    ASSERT_EQ(vhu_vq_inflight(p.q), 1);
    ASSERT(vhu_vq_pop(p.q) == NULL);
    vhu_vq_push(p.q, b, 1);
    vhu_vq_flush(p.q);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(1));
    ASSERT_EQ(len, 0);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(2));
    ASSERT_EQ(len, 1);
    ASSERT(!vhu_vq_broken(p.q));
    pair_fini(&p);
    guest_fini(&g);
}

TEST(push_validates_element)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8};
    struct vhu_vq_elem fake = {0}, *e;
    uint32_t len;

    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    ASSERT_OK(pair_add_small(&p, 1));
    vhu_vqd_kick_prepare(p.d);
    e = vhu_vq_pop(p.q);
    ASSERT(e != NULL);
    vhu_vq_push(p.q, &fake, 1);      /* not ours: ignored */
    vhu_vq_push(p.q, e, 1000);       /* more than the chain holds: clamped to in_len */
    vhu_vq_push(p.q, e, 1);          /* double push: ignored */
    vhu_vq_flush(p.q);
    ASSERT(vhu_vqd_get_used(p.d, &len) == COOKIE(1));
    ASSERT_EQ(len, 8);
    ASSERT(vhu_vqd_get_used(p.d, &len) == NULL);
    ASSERT(!vhu_vqd_broken(p.d));
    ASSERT_EQ(vhu_vq_inflight(p.q), 0);
    pair_fini(&p);
    guest_fini(&g);
}

TEST(config_validation)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8};
    struct vhu_vq_config c;
    struct vhu_vq *q;
    struct vhu_vqd *d;
    struct vhu_vqd_config dc = {.num = 6};

    ASSERT_ERR(-EINVAL, vhu_vq_new(0, sizeof(struct vhu_vq_elem) - 1, 4, &q));
    ASSERT_ERR(-EINVAL, vhu_vq_new(0, sizeof(struct vhu_vq_elem), 0, &q));
    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    ASSERT_ERR(-EBUSY, vhu_vq_start(p.q, &p.cfg, g.mem));
    ASSERT_OK(vhu_vq_new(1, 64, 4, &q));
    c = p.cfg;
    c.num = 6; /* split rings are powers of two */
    ASSERT_ERR(-EINVAL, vhu_vq_start(q, &c, g.mem));
    c = p.cfg;
    c.num = 0;
    ASSERT_ERR(-EINVAL, vhu_vq_start(q, &c, g.mem));
    c = p.cfg;
    c.desc = (uint8_t *)c.desc + 2; /* misaligned */
    ASSERT_ERR(-EINVAL, vhu_vq_start(q, &c, g.mem));
    c = p.cfg;
    c.packed = true;
    ASSERT_OK(vhu_vq_set_base(q, 9)); /* packed base beyond the ring */
    ASSERT_ERR(-EINVAL, vhu_vq_start(q, &c, g.mem));
    ASSERT(!vhu_vq_started(q));
    ASSERT(vhu_vq_pop(q) == NULL);
    vhu_vq_free(q);

    dc.ring = gh(&g, ring_alloc(&g, 8192));
    ASSERT_ERR(-EINVAL, vhu_vqd_new(&dc, &d));
    dc.num = 8;
    dc.ring = (uint8_t *)dc.ring + 4;
    ASSERT_ERR(-EINVAL, vhu_vqd_new(&dc, &d));
    pair_fini(&p);
    guest_fini(&g);
}

TEST(vqd_add_errors)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 4};
    struct vhu_vqd_seg s[5];

    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    for (unsigned i = 0; i < 5; i++)
        s[i] = (struct vhu_vqd_seg){data_alloc(&g, 8), 8};
    ASSERT_ERR(-EINVAL, vhu_vqd_add(p.d, s, 0, 0, COOKIE(1)));
    ASSERT_ERR(-EINVAL, vhu_vqd_add(p.d, s, 1, 0, NULL));
    ASSERT_ERR(-EINVAL, vhu_vqd_add(p.d, s, 3, 2, COOKIE(1))); /* longer than the ring */
    ASSERT_OK(vhu_vqd_add(p.d, s, 2, 1, COOKIE(1)));
    ASSERT_ERR(-ENOSPC, vhu_vqd_add(p.d, s, 1, 1, COOKIE(2)));
    ASSERT_OK(vhu_vqd_add(p.d, s, 1, 0, COOKIE(2)));
    ASSERT_EQ(vhu_vqd_num_free(p.d), 0);
    ASSERT_ERR(-ENOSPC, vhu_vqd_add(p.d, s, 1, 0, COOKIE(3)));
    pair_fini(&p);
    guest_fini(&g);
}

/* The driver side trusts the device no more than the device trusts the driver. */
static int lying_device(unsigned how)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8};
    struct vhu_vring_used *used;
    uint32_t len;
    int r = 0;

    if (guest_init(&g) < 0 || pair_init(&p, &g, &o) < 0)
        return -1;
    used = gh(&g, p.ring_gpa + 4096);
    pair_add_small(&p, 1);
    pair_add_small(&p, 2);
    vhu_vqd_kick_prepare(p.d);
    switch (how) {
    case 0: /* id of a descriptor that is not a head in flight (head 0 uses desc 0 only) */
        used->ring[0] = (struct vhu_vring_used_elem){.id = 5, .len = 0};
        used->idx = 1;
        break;
    case 1: /* id out of range */
        used->ring[0] = (struct vhu_vring_used_elem){.id = 8, .len = 0};
        used->idx = 1;
        break;
    case 2: /* more bytes than the buffer holds */
        used->ring[0] = (struct vhu_vring_used_elem){.id = 0, .len = 9};
        used->idx = 1;
        break;
    case 3: /* more used entries than the ring holds */
        used->idx = 9;
        break;
    case 4: /* the same id twice */
        used->ring[0] = (struct vhu_vring_used_elem){.id = 0, .len = 8};
        used->ring[1] = (struct vhu_vring_used_elem){.id = 0, .len = 8};
        used->idx = 2;
        if (vhu_vqd_get_used(p.d, &len) != COOKIE(1))
            r = -2;
        break;
    }
    if (r == 0 && (vhu_vqd_get_used(p.d, &len) != NULL || !vhu_vqd_broken(p.d) ||
                   vhu_vqd_get_used(p.d, &len) != NULL ||
                   vhu_vqd_add(p.d, NULL, 0, 0, NULL) != -EIO))
        r = -3;
    pair_fini(&p);
    guest_fini(&g);
    return r;
}

TEST(driver_refuses_lying_device)
{
    for (unsigned how = 0; how < 5; how++)
        if (lying_device(how) != 0)
            FAIL_AT("case %u not refused", how);
}

static char log_buf[512];
static unsigned log_lines;

static void log_capture(enum vhu_log_level level, const char *msg, void *opaque)
{
    (void)level;
    (void)opaque;
    snprintf(log_buf, sizeof(log_buf), "%s", msg);
    log_lines++;
}

TEST(break_logs_once_with_queue_index)
{
    struct guest g;
    struct pair p;
    struct pair_opts o = {.num = 8, .index = 42};
    struct vhu_vring_avail *avail;

    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    vhu_log_set_sink(log_capture, NULL, VHU_LOG_DEBUG);
    avail = gh(&g, p.ring_gpa + 16 * 8);
    avail->ring[0] = 8; /* head index out of range */
    avail->idx = 1;
    ASSERT(vhu_vq_pop(p.q) == NULL);
    ASSERT(vhu_vq_pop(p.q) == NULL);
    vhu_vq_break(p.q, "again");
    vhu_log_set_sink(NULL, NULL, VHU_LOG_ERROR);
    ASSERT(vhu_vq_broken(p.q));
    ASSERT_EQ(p.errors, 1);
    ASSERT_EQ(log_lines, 1);
    ASSERT(strstr(log_buf, "vq 42") != NULL);
    ASSERT(strstr(log_buf, "head index out of range") != NULL);
    ASSERT(strstr(vhu_vq_break_reason(p.q), "head index") != NULL);
    /* A broken queue stays quiet: no work, no notifications, pushes are dropped. */
    ASSERT(!vhu_vq_has_work(p.q));
    ASSERT(!vhu_vq_enable_notify(p.q));
    pair_fini(&p);
    guest_fini(&g);
}

/* ------------------------------------------------------------------------------------------ */
/* Inflight tracking (vhost-user "Inflight I/O tracking"): a crashed device's successor pops     */
/* exactly the chains that were popped and not completed, oldest first.                          */
/* ------------------------------------------------------------------------------------------ */

static uint16_t used_idx_of(struct pair *p)
{
    return ((const struct vhu_vring_used *)p->cfg.device)->idx;
}

TEST(inflight_resubmits_after_crash)
{
    struct pair_opts o = {.num = 8};
    static uint8_t region[4096] __attribute__((aligned(64)));
    struct vhu_vq_elem *e[4];
    struct guest g;
    struct pair p;
    uint64_t buf;
    uint32_t len;
    static int cookies[6];

    ASSERT(vhu_vq_inflight_region_size(8) <= sizeof(region));
    memset(region, 0, sizeof(region));
    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    vhu_vq_free(p.q); /* restart the device side with tracking on */
    ASSERT_OK(pair_start_tracked(&p, region, vhu_vqd_base(p.d)));
    buf = data_alloc(&g, 4096);
    for (int i = 0; i < 4; i++) {
        struct vhu_vqd_seg s = {buf + (uint64_t)i * 64, 64};
        ASSERT_OK(vhu_vqd_add(p.d, &s, 0, 1, &cookies[i]));
    }
    vhu_vqd_kick_prepare(p.d);
    for (int i = 0; i < 4; i++) {
        e[i] = vhu_vq_pop(p.q);
        ASSERT(e[i]);
    }
    vhu_vq_push(p.q, e[3], 1);
    vhu_vq_push(p.q, e[1], 1);
    vhu_vq_flush(p.q);
    uint16_t lost0 = e[0]->id, lost2 = e[2]->id;

    /* The backend dies: no stop, no flush. The frontend (like QEMU) restarts the ring at the
     * used index, with the same inflight buffer. */
    vhu_vq_free(p.q);
    ASSERT_OK(pair_start_tracked(&p, region, used_idx_of(&p)));
    ASSERT_EQ(vhu_vq_resubmitted(p.q), 2);
    struct vhu_vq_elem *a = vhu_vq_pop(p.q), *b = vhu_vq_pop(p.q);
    ASSERT(a && b);
    ASSERT_EQ(a->id, lost0); /* oldest first */
    ASSERT_EQ(b->id, lost2);
    ASSERT(vhu_vq_pop(p.q) == NULL); /* nothing else: the completed ones are not redone */
    vhu_vq_push(p.q, a, 1);
    vhu_vq_push(p.q, b, 1);
    vhu_vq_flush(p.q);
    int seen = 0;
    void *c;
    while ((c = vhu_vqd_get_used(p.d, &len)) != NULL)
        seen |= 1 << (int)((int *)c - cookies);
    ASSERT_EQ(seen, 0xf); /* every request completed exactly once overall */

    /* New work after the recovery goes through the avail ring as usual. */
    struct vhu_vqd_seg s = {buf, 64};
    ASSERT_OK(vhu_vqd_add(p.d, &s, 0, 1, &cookies[4]));
    vhu_vqd_kick_prepare(p.d);
    a = vhu_vq_pop(p.q);
    ASSERT(a);
    vhu_vq_push(p.q, a, 1);
    vhu_vq_flush(p.q);
    ASSERT(vhu_vqd_get_used(p.d, &len) == &cookies[4]);
    ASSERT_EQ(p.errors, 0);
    pair_fini(&p);
    guest_fini(&g);
}

/* A crash after the used index was published but before the batch's entries were cleared:
 * the successor repairs the record from last_batch_head and resubmits nothing. */
TEST(inflight_repairs_half_recorded_batch)
{
    struct pair_opts o = {.num = 8};
    static uint8_t region[4096] __attribute__((aligned(64)));
    struct vhu_vq_elem *e[2];
    struct guest g;
    struct pair p;
    static int cookies[2];

    memset(region, 0, sizeof(region));
    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    vhu_vq_free(p.q);
    ASSERT_OK(pair_start_tracked(&p, region, vhu_vqd_base(p.d)));
    uint64_t buf = data_alloc(&g, 256);
    for (int i = 0; i < 2; i++) {
        struct vhu_vqd_seg s = {buf + (uint64_t)i * 64, 64};
        ASSERT_OK(vhu_vqd_add(p.d, &s, 0, 1, &cookies[i]));
    }
    vhu_vqd_kick_prepare(p.d);
    e[0] = vhu_vq_pop(p.q);
    e[1] = vhu_vq_pop(p.q);
    ASSERT(e[0] && e[1]);
    uint16_t ids[2] = {e[0]->id, e[1]->id};
    vhu_vq_push(p.q, e[0], 1);
    vhu_vq_push(p.q, e[1], 1);
    vhu_vq_flush(p.q);
    vhu_vq_free(p.q);
    /* Undo what the flush did after publishing used->idx (layout: 16-byte header with
     * used_idx at offset 14; 16-byte entries, inflight flag first). */
    uint16_t used_idx;
    memcpy(&used_idx, region + 14, 2);
    used_idx = (uint16_t)(used_idx - 2);
    memcpy(region + 14, &used_idx, 2);
    region[16 + 16 * ids[0]] = 1;
    region[16 + 16 * ids[1]] = 1;

    ASSERT_OK(pair_start_tracked(&p, region, used_idx_of(&p)));
    ASSERT_EQ(vhu_vq_resubmitted(p.q), 0);
    ASSERT(vhu_vq_pop(p.q) == NULL);
    ASSERT_EQ(region[16 + 16 * ids[0]], 0);
    pair_fini(&p);
    guest_fini(&g);
}

/* The frontend owns the buffer and may scribble on it: indexes are bounded, chains walked. */
TEST(inflight_hostile_region)
{
    struct pair_opts o = {.num = 8};
    static uint8_t region[4096] __attribute__((aligned(64)));
    struct guest g;
    struct pair p;

    memset(region, 0xff, sizeof(region));
    /* version 1, desc_num 8, so the record is "ours" and gets parsed */
    region[8] = 1; region[9] = 0; region[10] = 8; region[11] = 0;
    ASSERT_OK(guest_init(&g));
    ASSERT_OK(pair_init(&p, &g, &o));
    vhu_vq_free(p.q);
    ASSERT_OK(pair_start_tracked(&p, region, vhu_vqd_base(p.d)));
    /* every entry claims to be in flight, with garbage descriptors behind it: popping must
     * either produce a valid chain or break this queue, never crash */
    for (int i = 0; i < 16; i++)
        if (!vhu_vq_pop(p.q))
            break;
    pair_fini(&p);
    guest_fini(&g);
}

/* A guest and a pair (8 entries) tracking in region (zeroed), n chains (cookies 1..n) added and
 * popped into e[], in pop order. */
static void tracked_popped(struct pair *p, struct guest *g, uint8_t *region, unsigned n,
                           struct vhu_vq_elem **e)
{
    memset(region, 0, 4096);
    ASSERT_OK(guest_init(g));
    ASSERT_OK(pair_init(p, g, &(struct pair_opts){.num = 8}));
    vhu_vq_free(p->q);
    ASSERT_OK(pair_start_tracked(p, region, vhu_vqd_base(p->d)));
    for (unsigned i = 1; i <= n; i++)
        ASSERT_OK(pair_add_small(p, i));
    vhu_vqd_kick_prepare(p->d);
    for (unsigned i = 0; i < n; i++) {
        e[i] = vhu_vq_pop(p->q);
        ASSERT(e[i]);
    }
}

/* Pop, unpop, stop, start with the same region: the unpopped chain went back to the avail ring,
 * so it is not in flight. The restart resubmits only what really was in flight, and every chain
 * is popped exactly once: the unpopped one from the avail ring. */
TEST(inflight_unpop_is_not_in_flight)
{
    static uint8_t region[4096] __attribute__((aligned(64)));
    struct vhu_vq_elem *e[3];
    struct guest g;
    struct pair p;

    tracked_popped(&p, &g, region, 3, e);
    ASSERT(!vhu_test_failed);
    uint16_t kept = e[1]->id, back = e[2]->id;
    vhu_vq_unpop(p.q, e[2]);
    ASSERT_EQ(region[16 + 16 * back], 0); /* no longer marked in flight */
    vhu_vq_push(p.q, e[0], 1);
    vhu_vq_flush(p.q);

    vhu_vq_stop(p.q); /* e[1] is still out (a device that lost it, or a crash) */
    ASSERT_OK(vhu_vq_start(p.q, &p.cfg, g.mem));
    ASSERT_EQ(vhu_vq_resubmitted(p.q), 1);
    struct vhu_vq_elem *a = vhu_vq_pop(p.q), *b = vhu_vq_pop(p.q);
    ASSERT(a && b);
    ASSERT_EQ(a->id, kept); /* resubmitted */
    ASSERT_EQ(b->id, back); /* from the avail ring, once */
    ASSERT(vhu_vq_pop(p.q) == NULL);
    vhu_vq_push(p.q, a, 1);
    vhu_vq_push(p.q, b, 1);
    vhu_vq_flush(p.q);
    used_in_order_then_fini(&p, &g, 3);
}

/*
 * The frontend writes the inflight region while the device recovers from it. This binary's
 * qsort and qsort_r stand in for libc's: armed, they let the first comparison run, then write
 * the region as a frontend would (every counter of the recorded chains reversed), then finish
 * with an insertion sort on the caller's comparator. A sort whose comparator reads the region
 * sees the order change under it; one that sorts a private copy cannot.
 */
static uint8_t *scribble_region;
static const uint16_t *scribble_heads;
static unsigned scribble_n, scribbles;

static void scribble(void)
{
    if (!scribble_region)
        return;
    for (unsigned i = 0; i < scribble_n; i++) {
        uint64_t c = 1000 - i; /* newest first now */
        memcpy(scribble_region + 16 + 16 * scribble_heads[i] + 8, &c, sizeof(c));
    }
    scribble_region = NULL;
    scribbles++;
}

static void insertion_sort(void *base, size_t n, size_t size,
                           int (*cmp)(const void *, const void *, void *), void *arg,
                           int (*cmp2)(const void *, const void *))
{
    uint8_t *b = base, tmp[64];

    if (size > sizeof(tmp))
        abort();
    for (size_t i = 1; i < n; i++) {
        if (i == 1)
            (void)(cmp ? cmp(b, b + size, arg) : cmp2(b, b + size));
        if (i == 1)
            scribble();
        memcpy(tmp, b + i * size, size);
        size_t j = i;
        while (j > 0 && (cmp ? cmp(b + (j - 1) * size, tmp, arg) : cmp2(b + (j - 1) * size, tmp)) > 0) {
            memcpy(b + j * size, b + (j - 1) * size, size);
            j--;
        }
        memcpy(b + j * size, tmp, size);
    }
}

void qsort_r(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *, void *),
             void *arg)
{
    insertion_sort(base, n, size, cmp, arg, NULL);
}

void qsort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    insertion_sort(base, n, size, NULL, NULL, cmp);
}

/* Pops 4 chains with tracking on, then the backend "crashes" (no completion); returns their
 * heads in pop order. */
static void pop4_and_crash(struct pair *p, struct guest *g, uint8_t *region, uint16_t ids[4])
{
    struct vhu_vq_elem *e[4];

    tracked_popped(p, g, region, 4, e);
    if (vhu_test_failed)
        return;
    for (int i = 0; i < 4; i++)
        ids[i] = e[i]->id;
    vhu_vq_free(p->q);
}

TEST(inflight_sort_ignores_region_writes_during_recovery)
{
    static uint8_t region[4096] __attribute__((aligned(64)));
    struct guest g;
    struct pair p;
    uint16_t ids[4];

    pop4_and_crash(&p, &g, region, ids);
    ASSERT(!vhu_test_failed);
    scribble_region = region;
    scribble_heads = ids;
    scribble_n = 4;
    scribbles = 0;
    ASSERT_OK(pair_start_tracked(&p, region, used_idx_of(&p)));
    ASSERT_EQ(scribbles, 1); /* the frontend did write during the sort */
    ASSERT_EQ(vhu_vq_resubmitted(p.q), 4);
    for (int i = 0; i < 4; i++) { /* the order recorded before the write: oldest first */
        struct vhu_vq_elem *e = vhu_vq_pop(p.q);
        ASSERT(e);
        ASSERT_EQ(e->id, ids[i]);
    }
    ASSERT(vhu_vq_pop(p.q) == NULL);
    pair_fini(&p);
    guest_fini(&g);
}

/* Duplicate and extreme counters and garbage flags (a frontend wrote them): each marked chain
 * is resubmitted once, equal counters in index order, the largest last, and new pops go on
 * with a sane counter. */
TEST(inflight_garbage_counters_bounded_resubmit)
{
    static uint8_t region[4096] __attribute__((aligned(64)));
    struct guest g;
    struct pair p;
    uint16_t ids[4], sorted[4];
    uint64_t same = 7, max = UINT64_MAX;

    pop4_and_crash(&p, &g, region, ids);
    ASSERT(!vhu_test_failed);
    for (int i = 0; i < 4; i++) {
        region[16 + 16 * ids[i]] = 0xff; /* "in flight", any non-zero value */
        memcpy(region + 16 + 16 * ids[i] + 8, i == 3 ? &max : &same, 8);
    }
    /* expected: the three 7s by head index, then the UINT64_MAX one */
    unsigned n = 0;
    for (uint16_t h = 0; h < 8; h++)
        for (int i = 0; i < 4; i++)
            if (ids[i] == h && i != 3)
                sorted[n++] = h;
    sorted[n++] = ids[3];
    ASSERT_OK(pair_start_tracked(&p, region, used_idx_of(&p)));
    ASSERT_EQ(vhu_vq_resubmitted(p.q), 4);
    struct vhu_vq_elem *e[4];
    for (int i = 0; i < 4; i++) {
        e[i] = vhu_vq_pop(p.q);
        ASSERT(e[i]);
        ASSERT_EQ(e[i]->id, sorted[i]);
    }
    ASSERT(vhu_vq_pop(p.q) == NULL);
    for (int i = 0; i < 4; i++)
        vhu_vq_push(p.q, e[i], 1);
    vhu_vq_flush(p.q);
    /* new work: recorded with the counter after the largest sane one */
    ASSERT_OK(pair_add_small(&p, 5));
    vhu_vqd_kick_prepare(p.d);
    struct vhu_vq_elem *a = vhu_vq_pop(p.q);
    ASSERT(a);
    uint64_t c;
    memcpy(&c, region + 16 + 16 * a->id + 8, 8);
    ASSERT_EQ(c, 8);
    ASSERT_EQ(p.errors, 0);
    pair_fini(&p);
    guest_fini(&g);
}
