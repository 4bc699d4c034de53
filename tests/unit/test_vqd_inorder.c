/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * VIRTIO_F_IN_ORDER on the driver side (struct vhu_vqd), split and packed, against the real
 * device side (struct vhu_vq) on the same rings: a run of read-only chains the device completes
 * with one used entry comes back from vhu_vqd_get_used() one buffer per call, in order, the
 * skipped ones with len 0 and the last with the entry's length; writable chains come back one
 * by one with their lengths; split chains take consecutive table entries (x -> x+1, wrapping to
 * 0); packed buffer ids are head slots. A device that writes a used entry naming a buffer that
 * is not in flight, was never published, or lies past the used index breaks the queue; random
 * device writes never crash it.
 */
#include "vq/vq_internal.h"
#include "vq_testlib.h"
#include "vhu_test.h"

#define NBUF 64    /* cookies: tok[i % NBUF] */
#define SEG_LEN 16 /* every segment */

struct t {
    struct guest g;
    struct pair p;
    uint64_t data;
    int tok[NBUF];
    bool live[NBUF];                /* cookie handed to vhu_vqd_add and not returned */
    unsigned added;                 /* next cookie */
    struct vhu_vq_elem *e[NBUF];    /* device: popped, not pushed, oldest first */
    unsigned eh, en;
};

static int setup(struct t *t, uint16_t num, bool packed, uint16_t ind_max)
{
    struct pair_opts o = {.num = num, .packed = packed, .in_order = true,
                          .indirect = ind_max != 0, .ind_max = ind_max};
    int r;

    memset(t, 0, sizeof(*t));
    if ((r = guest_init(&t->g)) < 0 || (r = pair_init(&t->p, &t->g, &o)) < 0)
        return r;
    t->data = data_alloc(&t->g, 4 * SEG_LEN);
    return 0;
}

static void teardown(struct t *t)
{
    pair_fini(&t->p);
    guest_fini(&t->g);
}

/* A chain of nout readable then nin writable segments; its cookie is tok[added % NBUF]. */
static int drv_add(struct t *t, unsigned nout, unsigned nin)
{
    struct vhu_vqd_seg segs[4];
    unsigned c = t->added % NBUF;
    int r;

    for (unsigned k = 0; k < nout + nin && k < 4; k++)
        segs[k] = (struct vhu_vqd_seg){t->data + (uint64_t)k * SEG_LEN, SEG_LEN};
    r = vhu_vqd_add(t->p.d, segs, nout, nin, &t->tok[c]);
    if (r == 0) {
        t->live[c] = true;
        t->added++;
    }
    return r;
}

/* The device pops everything published; returns how many. */
static unsigned dev_pop_all(struct t *t)
{
    struct vhu_vq_elem *e;
    unsigned n = 0;

    while (t->en < NBUF && (e = vhu_vq_pop(t->p.q)) != NULL) {
        t->e[(t->eh + t->en++) % NBUF] = e;
        n++;
    }
    return n;
}

/* The device pushes its oldest popped element with len bytes written. */
static void dev_push(struct t *t, uint32_t len)
{
    vhu_vq_push(t->p.q, t->e[t->eh], len);
    t->eh = (t->eh + 1) % NBUF;
    t->en--;
}

/* Add chains (nout[i], nin[i]), publish, the device pops them all, pushes them with lens[i]
 * and flushes. */
static int round_trip_push(struct t *t, unsigned n, const unsigned *nout, const unsigned *nin,
                           const uint32_t *lens)
{
    for (unsigned i = 0; i < n; i++)
        if (drv_add(t, nout[i], nin[i]) < 0)
            return -__LINE__;
    vhu_vqd_kick_prepare(t->p.d);
    if (dev_pop_all(t) != n)
        return -__LINE__;
    for (unsigned i = 0; i < n; i++)
        dev_push(t, lens[i]);
    vhu_vq_flush(t->p.q);
    return 0;
}

/* The driver gets n buffers back, cookies first.. in order with lens[i], then nothing. */
static int drv_expect(struct t *t, unsigned first, unsigned n, const uint32_t *lens)
{
    for (unsigned i = 0; i < n; i++) {
        uint32_t len = 0xdead;
        void *c = vhu_vqd_get_used(t->p.d, &len);
        if (c != &t->tok[(first + i) % NBUF]) {
            fprintf(stderr, "  buffer %u of %u: cookie %td, expected %u\n", i, n,
                    c ? (int *)c - t->tok : -1, (first + i) % NBUF);
            return -__LINE__;
        }
        if (len != lens[i]) {
            fprintf(stderr, "  buffer %u of %u: len %u, expected %u\n", i, n, len, lens[i]);
            return -__LINE__;
        }
        t->live[(first + i) % NBUF] = false;
    }
    if (vhu_vqd_get_used(t->p.d, NULL) != NULL || vhu_vqd_broken(t->p.d))
        return -__LINE__;
    return 0;
}

static struct vhu_vring_used *used_ring(struct t *t)
{
    return t->p.cfg.device;
}

static struct vhu_vring_packed_desc *pring(struct t *t)
{
    return t->p.cfg.desc;
}

static bool pslot_used(struct t *t, uint16_t slot, bool wrap)
{
    uint16_t f = pring(t)[slot].flags;

    return ((f & VQ_PACKED_AVAIL_BIT) != 0) == wrap && ((f & VQ_PACKED_USED_BIT) != 0) == wrap;
}

/* ---- (a) a run of read-only chains: one used entry, every cookie back ---- */

/* Chains of 1, 2, 1, 2, 1 readable descriptors (7 slots of 8: heads 0 1 3 4 6), three rounds
 * so the second and third cross the ring end. */
static void read_only_run(bool packed)
{
    static const unsigned nout[5] = {1, 2, 1, 2, 1}, nin[5] = {0};
    static const uint32_t zero[5] = {0};
    struct t t;

    ASSERT_OK(setup(&t, 8, packed, 0));
    if (!packed)
        memset(used_ring(&t)->ring, 0xa5, 8 * sizeof(struct vhu_vring_used_elem));
    for (unsigned round = 0; round < 3; round++) {
        ASSERT_OK(round_trip_push(&t, 5, nout, nin, zero));
        if (round == 0 && !packed) {
            ASSERT_EQ(used_ring(&t)->idx, 5);
            ASSERT_EQ(used_ring(&t)->ring[0].id, 6); /* the last chain's head, once */
            ASSERT_EQ(used_ring(&t)->ring[0].len, 0);
            for (unsigned i = 1; i < 5; i++)
                ASSERT_EQ(used_ring(&t)->ring[i].id, 0xa5a5a5a5u);
        }
        if (round == 0 && packed) {
            ASSERT(pslot_used(&t, 0, true));
            ASSERT_EQ(pring(&t)[0].id, 6); /* the last buffer's id: its head slot */
            ASSERT(!pslot_used(&t, 1, true) && !pslot_used(&t, 3, true));
        }
        ASSERT_OK(drv_expect(&t, round * 5, 5, zero));
        ASSERT_EQ(vhu_vqd_num_free(t.p.d), 8);
    }
    ASSERT_EQ(t.p.errors, 0);
    teardown(&t);
}

TEST(split_read_only_run_one_entry_every_cookie) { read_only_run(false); }
TEST(packed_read_only_run_one_descriptor_every_cookie) { read_only_run(true); }

/* Laps of n chains (nout[i], nin[i]) the device completes with lens[i]; after the device's
 * flush in every lap, check(t, lap, used index before the lap) looks at what it wrote; the
 * driver then gets every buffer back in order with its length. */
static int laps(bool packed, unsigned rounds, unsigned n, const unsigned *nout, const unsigned *nin,
                const uint32_t *lens, bool (*check)(struct t *t, unsigned lap, uint16_t old))
{
    struct t t;
    int r = setup(&t, 8, packed, 0);

    for (unsigned lap = 0; r == 0 && lap < rounds; lap++) {
        uint16_t old = packed ? 0 : used_ring(&t)->idx;
        if ((r = round_trip_push(&t, n, nout, nin, lens)) == 0 && !check(&t, lap, old))
            r = -__LINE__;
        if (r == 0)
            r = drv_expect(&t, lap * n, n, lens);
    }
    if (r == 0 && t.p.errors)
        r = -__LINE__;
    teardown(&t);
    return r;
}

/* ---- (b) writable chains: one entry each, with its length ---- */

static const unsigned wr_nout[4] = {0, 1, 0, 1}, wr_nin[4] = {1, 1, 2, 1};
static const uint32_t wr_lens[4] = {3, 0, 2 * SEG_LEN, SEG_LEN};

/* split: four entries a lap (7 slots a lap: the laps cross the end) */
static bool four_entries(struct t *t, unsigned lap, uint16_t old)
{
    (void)lap;
    return t->p.o.packed || (uint16_t)(used_ring(t)->idx - old) == 4;
}

TEST(split_writable_chains_one_by_one)
{
    ASSERT_OK(laps(false, 4, 4, wr_nout, wr_nin, wr_lens, four_entries));
}

TEST(packed_writable_chains_one_by_one)
{
    ASSERT_OK(laps(true, 4, 4, wr_nout, wr_nin, wr_lens, four_entries));
}

/* ---- (c) a mix ---- */

/* R R W R R R W R (one descriptor each; W written with 5 and 0 bytes), three laps of a ring of
 * 8: the device writes entries for the runs 0-1, 3-5 and 7 and for both W. */
static const unsigned mix_nout[8] = {1, 1, 0, 1, 1, 1, 0, 1}, mix_nin[8] = {0, 0, 1, 0, 0, 0, 1, 0};
static const uint32_t mix_lens[8] = {0, 0, 5, 0, 0, 0, 0, 0};

/* packed, first lap: descriptors at 0 (id 1), 2, 3 (id 5), 6, 7; 1, 4 and 5 skipped */
static bool mixed_entries(struct t *t, unsigned lap, uint16_t old)
{
    (void)old;
    return lap || !t->p.o.packed ||
           (pring(t)[0].id == 1 && pring(t)[3].id == 5 && !pslot_used(t, 1, true) &&
            !pslot_used(t, 4, true) && !pslot_used(t, 5, true));
}

TEST(split_mixed_runs_and_writable)
{
    ASSERT_OK(laps(false, 3, 8, mix_nout, mix_nin, mix_lens, mixed_entries));
}

TEST(packed_mixed_runs_and_writable)
{
    ASSERT_OK(laps(true, 3, 8, mix_nout, mix_nin, mix_lens, mixed_entries));
}

/* A device may end a batch with a writable buffer (the spec allows it; vhu's does not do it):
 * the skipped buffers get 0, the named one the entry's length. Written by hand. */
static void batch_ending_writable(bool packed)
{
    static const uint32_t lens[3] = {0, 0, 9};
    struct t t;

    ASSERT_OK(setup(&t, 8, packed, 0));
    ASSERT_OK(drv_add(&t, 1, 0));
    ASSERT_OK(drv_add(&t, 1, 0));
    ASSERT_OK(drv_add(&t, 0, 1)); /* head / id 2 */
    vhu_vqd_kick_prepare(t.p.d);
    if (packed) {
        pring(&t)[0].id = 2;
        pring(&t)[0].len = 9;
        __atomic_store_n(&pring(&t)[0].flags,
                         VQ_PACKED_AVAIL_BIT | VQ_PACKED_USED_BIT | VHU_VRING_DESC_F_WRITE,
                         __ATOMIC_RELEASE);
    } else {
        used_ring(&t)->ring[0] = (struct vhu_vring_used_elem){.id = 2, .len = 9};
        __atomic_store_n(&used_ring(&t)->idx, 3, __ATOMIC_RELEASE);
    }
    ASSERT(vhu_vqd_enable_cb(t.p.d));
    ASSERT_OK(drv_expect(&t, 0, 3, lens));
    ASSERT_EQ(vhu_vqd_num_free(t.p.d), 8);
    teardown(&t);
}

TEST(split_batch_ending_with_a_writable_buffer) { batch_ending_writable(false); }
TEST(packed_batch_ending_with_a_writable_buffer) { batch_ending_writable(true); }

/* ---- (d) split: table entries in ring order ---- */

TEST(split_chains_take_consecutive_entries_and_wrap)
{
    static const uint16_t rd = VHU_VRING_DESC_F_NEXT, wr = VHU_VRING_DESC_F_WRITE;
    static const uint32_t zero[2] = {0}, twenty[1] = {20}, one[1] = {0};
    struct vhu_vring_desc *d;
    struct vhu_vring_avail *a;
    struct vhu_vq_elem *e;
    struct t t;

    ASSERT_OK(setup(&t, 8, false, 0));
    d = t.p.cfg.desc;
    a = t.p.cfg.driver;
    ASSERT_OK(drv_add(&t, 3, 0)); /* 0 1 2 */
    ASSERT_OK(drv_add(&t, 2, 1)); /* 3 4 5 */
    ASSERT_EQ(a->ring[0], 0);
    ASSERT_EQ(a->ring[1], 3);
    for (unsigned i = 0; i < 6; i++)
        ASSERT_EQ(d[i].next, i + 1);
    ASSERT(d[0].flags == rd && d[1].flags == rd && d[2].flags == 0);
    ASSERT(d[3].flags == rd && d[4].flags == rd && d[5].flags == wr);
    vhu_vqd_kick_prepare(t.p.d);
    ASSERT_EQ(dev_pop_all(&t), 2);
    dev_push(&t, 0);
    dev_push(&t, 0);
    vhu_vq_flush(t.p.q);
    ASSERT_OK(drv_expect(&t, 0, 2, zero));
    /* The next chain goes on at 6 and wraps to 0 (no LIFO reuse of 3-5 or 0-2). */
    ASSERT_OK(drv_add(&t, 1, 2));
    ASSERT_EQ(a->ring[2], 6);
    ASSERT(d[6].next == 7 && d[6].flags == rd);
    ASSERT(d[7].next == 0 && d[7].flags == (rd | wr));
    ASSERT(d[0].flags == wr && d[0].next == 1);
    ASSERT_OK(drv_add(&t, 1, 0));
    ASSERT_EQ(a->ring[3], 1);
    vhu_vqd_kick_prepare(t.p.d);
    ASSERT_EQ(dev_pop_all(&t), 2);
    e = t.e[t.eh];
    ASSERT(e->out_num == 1 && e->in_num == 2 && e->in_len == 2 * SEG_LEN);
    dev_push(&t, 20);
    vhu_vq_flush(t.p.q);
    ASSERT_OK(drv_expect(&t, 2, 1, twenty));
    dev_push(&t, 0);
    vhu_vq_flush(t.p.q);
    ASSERT_OK(drv_expect(&t, 3, 1, one));
    ASSERT_EQ(t.p.errors, 0);
    teardown(&t);
}

/* An indirect chain takes one table entry; the run R, indirect R R R, R is one used entry. */
TEST(split_indirect_chain_takes_one_entry)
{
    static const unsigned nout[3] = {1, 3, 1}, nin[3] = {0};
    static const uint32_t zero[3] = {0};
    struct vhu_vring_avail *a;
    struct t t;

    ASSERT_OK(setup(&t, 8, false, 4));
    a = t.p.cfg.driver;
    ASSERT_OK(round_trip_push(&t, 3, nout, nin, zero));
    ASSERT(a->ring[0] == 0 && a->ring[1] == 1 && a->ring[2] == 2);
    ASSERT_EQ(used_ring(&t)->idx, 3);
    ASSERT_EQ(used_ring(&t)->ring[0].id, 2);
    ASSERT_OK(drv_expect(&t, 0, 3, zero));
    ASSERT_EQ(vhu_vqd_num_free(t.p.d), 8);
    ASSERT_EQ(t.p.errors, 0);
    teardown(&t);
}

/* ---- (e) a hostile device ---- */

enum hostile {
    NOT_IN_FLIGHT,   /* an id that is no buffer's head / id */
    OUT_OF_RANGE,    /* an id >= num */
    NOT_PUBLISHED,   /* a buffer added but never made available */
    PAST_USED_INDEX, /* split: a batch of 3 with used->idx saying 1 */
    TOO_LONG,        /* more bytes than the named buffer holds */
};

static void hostile_entry(bool packed, enum hostile h)
{
    uint16_t id;
    uint32_t len = h == TOO_LONG ? 5 : 0, got = 7;
    struct t t;

    ASSERT_OK(setup(&t, 8, packed, 0));
    ASSERT_OK(drv_add(&t, 2, 0)); /* slots 0-1 */
    ASSERT_OK(drv_add(&t, 1, 0)); /* slot 2 */
    ASSERT_OK(drv_add(&t, 1, 0)); /* slot 3 */
    vhu_vqd_kick_prepare(t.p.d);
    ASSERT_OK(drv_add(&t, 1, 0)); /* slot 4: added, not published */
    id = h == NOT_IN_FLIGHT ? 1 : h == OUT_OF_RANGE ? 100 : h == NOT_PUBLISHED ? 4 : 3;
    if (packed) {
        pring(&t)[0].id = id;
        pring(&t)[0].len = len;
        __atomic_store_n(&pring(&t)[0].flags,
                         VQ_PACKED_AVAIL_BIT | VQ_PACKED_USED_BIT |
                             (len ? VHU_VRING_DESC_F_WRITE : 0),
                         __ATOMIC_RELEASE);
    } else {
        used_ring(&t)->ring[0] = (struct vhu_vring_used_elem){.id = id, .len = len};
        __atomic_store_n(&used_ring(&t)->idx, h == PAST_USED_INDEX ? 1 : 3, __ATOMIC_RELEASE);
    }
    ASSERT(vhu_vqd_get_used(t.p.d, &got) == NULL);
    ASSERT(vhu_vqd_broken(t.p.d));
    ASSERT_EQ(got, 7);
    ASSERT_ERR(-EIO, drv_add(&t, 1, 0));
    ASSERT(vhu_vqd_get_used(t.p.d, &got) == NULL);
    teardown(&t);
}

TEST(split_hostile_id_not_in_flight) { hostile_entry(false, NOT_IN_FLIGHT); }
TEST(split_hostile_id_out_of_range) { hostile_entry(false, OUT_OF_RANGE); }
TEST(split_hostile_id_never_made_available) { hostile_entry(false, NOT_PUBLISHED); }
TEST(split_hostile_batch_past_the_used_index) { hostile_entry(false, PAST_USED_INDEX); }
TEST(split_hostile_length) { hostile_entry(false, TOO_LONG); }
TEST(packed_hostile_id_not_in_flight) { hostile_entry(true, NOT_IN_FLIGHT); }
TEST(packed_hostile_id_out_of_range) { hostile_entry(true, OUT_OF_RANGE); }
TEST(packed_hostile_id_never_made_available) { hostile_entry(true, NOT_PUBLISHED); }

static uint32_t rnd(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 16;
}

/*
 * A device that writes garbage: random used indexes, ids, lengths and flags. vhu_vqd either
 * returns a cookie it has in flight (each once) with no more than it holds, or breaks; it never
 * crashes, overflows (run it under ASan/UBSan) or counts more free slots than the ring has.
 */
static void garbage(bool packed, uint16_t num)
{
    unsigned returned = 0, broke = 0;

    for (uint32_t seed = 1; seed <= 300; seed++) {
        uint32_t s = seed;
        struct t t;

        ASSERT_OK(setup(&t, num, packed, seed % 3 ? 0 : 4));
        for (unsigned it = 0; it < 40 && !vhu_vqd_broken(t.p.d); it++) {
            for (unsigned k = rnd(&s) % 4; k--;) {
                unsigned nout = rnd(&s) % 3, nin = rnd(&s) % 3;
                if (drv_add(&t, nout + nin ? nout : 1, nin) < 0)
                    break;
            }
            if (rnd(&s) % 2)
                vhu_vqd_kick_prepare(t.p.d);
            for (unsigned k = rnd(&s) % 3; k--;) {
                uint16_t slot = (uint16_t)(rnd(&s) % num);
                uint32_t id = rnd(&s) % (num + 2u), len = rnd(&s) % 40;
                if (packed) {
                    pring(&t)[slot].id = (uint16_t)id;
                    pring(&t)[slot].len = len;
                    pring(&t)[slot].flags = (uint16_t)rnd(&s);
                } else {
                    used_ring(&t)->ring[slot] = (struct vhu_vring_used_elem){id, len};
                    if (rnd(&s) % 2)
                        used_ring(&t)->idx = (uint16_t)(used_ring(&t)->idx + rnd(&s) % 5);
                }
            }
            for (unsigned k = rnd(&s) % 12; k--;) {
                uint32_t len = 0;
                int *c = vhu_vqd_get_used(t.p.d, &len);
                if (!c)
                    break;
                ASSERT(c >= t.tok && c < t.tok + NBUF && t.live[c - t.tok]);
                ASSERT(len <= 2 * SEG_LEN);
                t.live[c - t.tok] = false;
                returned++;
            }
            ASSERT(vhu_vqd_num_free(t.p.d) <= num);
        }
        broke += vhu_vqd_broken(t.p.d);
        teardown(&t);
    }
    /* the garbage both got buffers back and broke queues */
    fprintf(stderr, "  %u buffers returned, %u of 300 queues broken\n", returned, broke);
    ASSERT(returned > 0 && broke > 0);
}

TEST(split_garbage_from_the_device_never_crashes) { garbage(false, 8); }
TEST(packed_garbage_from_the_device_never_crashes) { garbage(true, 7); }
