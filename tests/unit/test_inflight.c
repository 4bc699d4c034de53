/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Inflight tracking at the ring level, split and packed: a device that dies mid-request (no stop,
 * no flush) is replaced by one given the same region, which resubmits exactly the chains popped
 * and not completed, oldest first; a crash in the middle of publishing a batch, either side of
 * the driver-visible store; a seeded soak of random pops, out-of-order completions and crashes,
 * where every request completes exactly once; and regions a frontend scribbled on, refused
 * with one message or walked safely.
 */
#include "vhu/log.h"
#include "vq/vq_internal.h"
#include "vq_testlib.h"
#include "vhu_test.h"

#define COOKIE(n) ((void *)(uintptr_t)(n))
#define NUM 8
#define MAXC 4096

static uint8_t region[65536] __attribute__((aligned(64)));

static char log_buf[512];
static unsigned log_lines;

static void log_capture(enum vhu_log_level level, const char *msg, void *opaque)
{
    (void)opaque;
    if (level > VHU_LOG_WARN)
        return;
    snprintf(log_buf, sizeof(log_buf), "%s", msg);
    log_lines++;
}

/* (Re)start the device side of p tracking into region, as a new backend would. */
static int start_tracked(struct pair *p, uint32_t base)
{
    vhu_vq_free(p->q);
    p->q = NULL;
    return pair_start_tracked(p, region, base);
}

/* What a frontend hands a restarted backend: QEMU resyncs a split ring to its used index; for a
 * packed ring it has nothing to resync from and sends the base it last knew (here: the first). */
static uint32_t restart_base(struct pair *p, uint32_t first_base)
{
    if (p->o.packed)
        return first_base;
    return ((const struct vhu_vring_used *)p->cfg.device)->idx;
}

static int add_req(struct pair *p, unsigned cookie, unsigned nseg)
{
    struct vhu_vqd_seg s[3];

    for (unsigned i = 0; i < nseg; i++)
        s[i] = (struct vhu_vqd_seg){data_alloc(p->g, 16), 16};
    return vhu_vqd_add(p->d, s, nseg - 1, 1, COOKIE(cookie));
}

static void setup(struct guest *g, struct pair *p, bool packed, uint32_t *first_base)
{
    memset(region, 0, sizeof(region));
    ASSERT(vhu_vq_inflight_region_size(NUM) <= sizeof(region));
    ASSERT_OK(guest_init(g));
    ASSERT_OK(pair_init(p, g, &(struct pair_opts){.num = NUM, .packed = packed}));
    *first_base = vhu_vqd_base(p->d);
    ASSERT_OK(start_tracked(p, *first_base));
}

/* setup(), then n requests added (nseg descriptors each; 0: 1, 2, 3, 1, ...) and popped into e. */
static void setup_popped(struct guest *g, struct pair *p, bool packed, uint32_t *base0,
                         struct vhu_vq_elem **e, unsigned n, unsigned nseg)
{
    setup(g, p, packed, base0);
    for (unsigned i = 0; i < n; i++)
        ASSERT_OK(add_req(p, i + 1, nseg ? nseg : 1 + i % 3));
    vhu_vqd_kick_prepare(p->d);
    for (unsigned i = 0; i < n; i++) {
        e[i] = vhu_vq_pop(p->q);
        ASSERT(e[i]);
    }
}

/* Reap every used entry into the cookie set *seen; false when a cookie comes back twice. */
static bool reap_once(struct pair *p, unsigned *seen)
{
    uint32_t len;
    void *c;

    while ((c = vhu_vqd_get_used(p->d, &len)) != NULL) {
        unsigned bit = 1u << (unsigned)(uintptr_t)c;
        if (*seen & bit)
            return false;
        *seen |= bit;
    }
    return true;
}

/* The end of a scenario: positions agree with the driver's, no queue error, all freed. */
static void finish(struct pair *p, struct guest *g)
{
    ASSERT_EQ(vhu_vq_get_base(p->q), vhu_vqd_base(p->d));
    ASSERT_EQ(p->errors, 0);
    pair_fini(p);
    guest_fini(g);
}

/* Cookie of a used entry the driver reaped, or 0. */
static unsigned reap(struct pair *p)
{
    uint32_t len;
    void *c = vhu_vqd_get_used(p->d, &len);

    return (unsigned)(uintptr_t)c;
}

static void crash_resubmits(bool packed)
{
    struct vhu_vq_elem *e[4];
    struct guest g;
    struct pair p;
    uint32_t base0;
    unsigned seen = 0;

    setup_popped(&g, &p, packed, &base0, e, 4, 0); /* 1, 2, 3, 1 descriptors */
    ASSERT(!vhu_test_failed);
    vhu_vq_push(p.q, e[3], 1);
    vhu_vq_push(p.q, e[1], 1);
    vhu_vq_flush(p.q);
    uint16_t lost0 = e[0]->id, lost2 = e[2]->id, nd0 = e[0]->ndesc, nd2 = e[2]->ndesc;

    /* The backend dies: no stop, no flush. */
    ASSERT_OK(start_tracked(&p, restart_base(&p, base0)));
    ASSERT_EQ(vhu_vq_resubmitted(p.q), 2);
    struct vhu_vq_elem *a = vhu_vq_pop(p.q), *b = vhu_vq_pop(p.q);
    ASSERT(a && b);
    ASSERT_EQ(a->id, lost0); /* oldest first */
    ASSERT_EQ(b->id, lost2);
    ASSERT_EQ(a->ndesc, nd0);
    ASSERT_EQ(b->ndesc, nd2);
    ASSERT_EQ(b->out_num, 2); /* the chain as the driver built it */
    ASSERT(vhu_vq_pop(p.q) == NULL); /* the completed ones are not redone */
    vhu_vq_push(p.q, b, 1);
    vhu_vq_push(p.q, a, 1);
    vhu_vq_flush(p.q);
    ASSERT(reap_once(&p, &seen));
    ASSERT_EQ(seen, 0x1e); /* cookies 1..4, each once */
    /* New work flows through the ring as usual, and the positions agree with the driver's. */
    for (unsigned i = 0; i < 3; i++)
        ASSERT_EQ(pair_roundtrip(&p, 16, 16, 16, i), 0);
    finish(&p, &g);
}

TEST(split_crash_resubmits_unfinished_in_order) { crash_resubmits(false); }
TEST(packed_crash_resubmits_unfinished_in_order) { crash_resubmits(true); }

/*
 * Packed: a crash while a batch is being published. The region's old_* fields and the heads'
 * inflight flags are put back as they were before the flush; if the driver-visible store had
 * happened (commit), nothing is resubmitted; if the ring slot is put back too (the store had not
 * happened), the batch is resubmitted.
 */
static void packed_half_batch(bool published)
{
    struct vq_inflight_packed *r = (void *)region;
    struct vhu_vq_elem *e[3];
    struct vhu_vring_packed_desc slot0;
    struct guest g;
    struct pair p;
    uint32_t base0;
    unsigned seen = 0;

    setup_popped(&g, &p, true, &base0, e, 3, 2);
    ASSERT(!vhu_test_failed);
    uint16_t h0 = r->free_head, ofh = r->old_free_head, ou = r->old_used_idx;
    uint8_t ow = r->old_used_wrap_counter;
    uint16_t heads[2] = {0, 2}; /* chains take entries 0-1, 2-3, 4-5 */
    (void)h0;
    memcpy(&slot0, gh(&g, p.ring_gpa), sizeof(slot0));
    vhu_vq_push(p.q, e[1], 1);
    vhu_vq_push(p.q, e[0], 1);
    vhu_vq_flush(p.q);
    /* Undo what came after the store (and, for "not published", the store itself). */
    r->old_free_head = ofh;
    r->old_used_idx = ou;
    r->old_used_wrap_counter = ow;
    r->desc[heads[0]].inflight = 1;
    r->desc[heads[1]].inflight = 1;
    if (!published)
        memcpy(gh(&g, p.ring_gpa), &slot0, sizeof(slot0));

    ASSERT_OK(start_tracked(&p, base0));
    ASSERT_EQ(vhu_vq_resubmitted(p.q), published ? 1 : 3);
    struct vhu_vq_elem *x;
    while ((x = vhu_vq_pop(p.q)) != NULL)
        vhu_vq_push(p.q, x, 1);
    vhu_vq_flush(p.q);
    ASSERT(reap_once(&p, &seen));
    ASSERT_EQ(seen, 0xe);
    finish(&p, &g);
}

TEST(packed_crash_after_publish_commits) { packed_half_batch(true); }
TEST(packed_crash_before_publish_rolls_back) { packed_half_batch(false); }

/*
 * Seeded soak: random chain lengths, random pops, completions in random order, crashes at
 * random points between calls. Every request completes exactly once; after each crash the new
 * device resubmits exactly what was out, in pop order.
 */
static int soak(bool packed, unsigned seed, unsigned iters)
{
    static uint8_t done[MAXC];
    struct vhu_vq_elem *out[NUM];
    unsigned nout = 0, next = 1, crashes = 0;
    struct guest g;
    struct pair p;
    uint32_t base0;

    memset(done, 0, sizeof(done));
    srand(seed);
    setup(&g, &p, packed, &base0);
    if (vhu_test_failed)
        return -__LINE__;
    for (unsigned it = 0; it < iters; it++) {
        unsigned c, k;

        /* driver adds what fits */
        while (next < MAXC && add_req(&p, next, 1 + (unsigned)rand() % 3) == 0)
            next++;
        vhu_vqd_kick_prepare(p.d);
        k = (unsigned)rand() % (NUM + 1);
        while (k-- && nout < NUM && (out[nout] = vhu_vq_pop(p.q)) != NULL)
            nout++;
        k = nout ? (unsigned)rand() % (nout + 1) : 0;
        while (k--) {
            unsigned i = (unsigned)rand() % nout;
            vhu_vq_push(p.q, out[i], 1);
            out[i] = out[--nout];
        }
        vhu_vq_flush(p.q);
        while ((c = reap(&p)) != 0) {
            if (c >= MAXC || done[c]++)
                return -__LINE__;
        }
        if (rand() % 3 == 0) {
            uint16_t ids[NUM];
            unsigned n = nout;
            /* out[] is no longer in pop order after the swaps: collect by the region's order */
            for (unsigned i = 0; i < nout; i++)
                ids[i] = out[i]->id;
            if (start_tracked(&p, restart_base(&p, base0)) < 0 || vhu_vq_resubmitted(p.q) != n)
                return -__LINE__;
            crashes++;
            nout = 0;
            for (unsigned i = 0; i < n; i++) {
                bool found = false;
                out[nout] = vhu_vq_pop(p.q);
                if (!out[nout])
                    return -__LINE__;
                for (unsigned j = 0; j < n; j++)
                    found |= ids[j] == out[nout]->id;
                if (!found)
                    return -__LINE__;
                nout++;
            }
        }
        if (p.errors)
            return -__LINE__;
    }
    /* drain */
    for (unsigned i = 0; i < nout; i++)
        vhu_vq_push(p.q, out[i], 1);
    for (struct vhu_vq_elem *x; (x = vhu_vq_pop(p.q)) != NULL;)
        vhu_vq_push(p.q, x, 1);
    vhu_vq_flush(p.q);
    for (unsigned c; (c = reap(&p)) != 0;) {
        if (c >= MAXC || done[c]++)
            return -__LINE__;
    }
    for (unsigned c = 1; c < next; c++)
        if (done[c] != 1)
            return -__LINE__;
    if (crashes == 0 || vhu_vq_get_base(p.q) != vhu_vqd_base(p.d))
        return -__LINE__;
    pair_fini(&p);
    guest_fini(&g);
    return 0;
}

TEST(split_crash_soak)
{
    for (unsigned s = 1; s <= 20; s++) {
        int r = soak(false, s, 200);
        if (r != 0)
            FAIL_AT("seed %u: line %d", s, -r);
    }
}

TEST(packed_crash_soak)
{
    for (unsigned s = 1; s <= 20; s++) {
        int r = soak(true, s, 200);
        if (r != 0)
            FAIL_AT("seed %u: line %d", s, -r);
    }
}

/* Unpop with tracking: the unpopped chain is back in the ring, not in flight; after a crash only
 * the chain really out is resubmitted, and the unpopped one comes from the ring, once. */
static void unpop_then_crash(bool packed)
{
    struct vhu_vq_elem *e[3];
    struct guest g;
    struct pair p;
    uint32_t base0;
    unsigned seen = 0;

    setup_popped(&g, &p, packed, &base0, e, 3, 2);
    ASSERT(!vhu_test_failed);
    uint16_t kept = e[1]->id;
    vhu_vq_unpop(p.q, e[2]);
    vhu_vq_push(p.q, e[0], 1);
    vhu_vq_flush(p.q);
    ASSERT_OK(start_tracked(&p, restart_base(&p, base0)));
    ASSERT_EQ(vhu_vq_resubmitted(p.q), 1);
    struct vhu_vq_elem *a = vhu_vq_pop(p.q), *b = vhu_vq_pop(p.q);
    ASSERT(a && b);
    ASSERT_EQ(a->id, kept);
    ASSERT(vhu_vq_pop(p.q) == NULL);
    vhu_vq_push(p.q, b, 1);
    vhu_vq_push(p.q, a, 1);
    vhu_vq_flush(p.q);
    ASSERT(reap_once(&p, &seen));
    ASSERT_EQ(seen, 0xe);
    finish(&p, &g);
}

TEST(split_unpop_then_crash) { unpop_then_crash(false); }
TEST(packed_unpop_then_crash) { unpop_then_crash(true); }

/* Packed regions that do not hold together: refused with one message, the ring starts from its
 * base with nothing resubmitted and keeps working. */
static void refused(void (*spoil)(struct vq_inflight_packed *r), const char *why)
{
    struct vq_inflight_packed *r = (void *)region;
    struct vhu_vq_elem *e[3];
    struct guest g;
    struct pair p;
    uint32_t base0;

    setup_popped(&g, &p, true, &base0, e, 3, 2);
    ASSERT(!vhu_test_failed);
    spoil(r);
    log_lines = 0;
    log_buf[0] = 0;
    vhu_log_set_sink(log_capture, NULL, VHU_LOG_DEBUG);
    ASSERT_OK(start_tracked(&p, base0));
    vhu_log_set_sink(vhu_log_stderr_sink, NULL, VHU_LOG_INFO);
    ASSERT_EQ(vhu_vq_resubmitted(p.q), 0);
    ASSERT_EQ(log_lines, 1);
    if (!strstr(log_buf, why))
        FAIL_AT("log: %s", log_buf);
    ASSERT(!vhu_vq_broken(p.q));
    ASSERT_EQ(r->version, 1); /* re-initialised */
    pair_fini(&p);
    guest_fini(&g);
}

static void spoil_loop(struct vq_inflight_packed *r) { r->desc[7].next = 6; r->desc[6].next = 7; }
static void spoil_pos(struct vq_inflight_packed *r) { r->used_idx = r->old_used_idx = NUM; }
static void spoil_overlap(struct vq_inflight_packed *r) { r->desc[2].next = 1; }
static void spoil_last(struct vq_inflight_packed *r) { r->desc[0].last = 5; }
static void spoil_count(struct vq_inflight_packed *r) { r->desc[4].num = NUM; }
static void spoil_wrap(struct vq_inflight_packed *r) { r->old_used_wrap_counter = 7; }

TEST(packed_region_free_list_loop_refused) { refused(spoil_loop, "free list loops"); }
TEST(packed_region_positions_refused) { refused(spoil_pos, "positions out of range"); }
TEST(packed_region_overlap_refused) { refused(spoil_overlap, "overlap"); }
TEST(packed_region_bad_last_refused) { refused(spoil_last, "last entry"); }
TEST(packed_region_count_refused) { refused(spoil_count, "more descriptors"); }
TEST(packed_region_wrap_refused) { refused(spoil_wrap, "positions out of range"); }

static void spoil_version(struct vq_inflight_packed *r) { r->version = 0x7777; }
TEST(packed_region_unknown_version_refused) { refused(spoil_version, "unknown version"); }

/* Seeded garbage behind a valid-looking header, both layouts: start never fails, pops give
 * valid chains or break the queue, nothing is read out of bounds (ASan). */
TEST(garbage_regions_never_trusted)
{
    for (unsigned s = 1; s <= 200; s++) {
        bool packed = s & 1;
        struct guest g;
        struct pair p;
        uint32_t base0;

        setup(&g, &p, packed, &base0);
        srand(s);
        for (size_t i = 0; i < vhu_vq_inflight_region_size(NUM); i++)
            region[i] = (uint8_t)(rand() % 4 == 0 ? rand() : rand() % (NUM + 2));
        region[8] = 1; /* version 1, desc_num NUM: parsed as ours */
        region[9] = 0;
        region[10] = NUM;
        region[11] = 0;
        vhu_log_set_sink(log_capture, NULL, VHU_LOG_DEBUG);
        ASSERT_OK(start_tracked(&p, base0));
        for (int i = 0; i < 2 * NUM; i++) {
            struct vhu_vq_elem *x = vhu_vq_pop(p.q);
            if (!x)
                break;
            vhu_vq_push(p.q, x, 0);
        }
        vhu_vq_flush(p.q);
        vhu_log_set_sink(vhu_log_stderr_sink, NULL, VHU_LOG_INFO);
        pair_fini(&p);
        guest_fini(&g);
        if (vhu_test_failed)
            FAIL_AT("seed %u", s);
    }
}
