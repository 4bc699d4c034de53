/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * VIRTIO_F_IN_ORDER on the device side, split and packed, seen from a driver written from the
 * spec (virtio 1.3 2.7.9 / 2.8.9 "In-order use of descriptors") instead of vhu's vqd: buffers go
 * out in ring order; a used entry with id X completes every outstanding buffer up to and
 * including X, at the position of the first of them; the buffers it skips count as fully used.
 *
 * Checked: a run of buffers without writable descriptors (transmit buffers) shares one entry
 * (the run's first position, the last buffer's id) and the skipped positions are left untouched;
 * a buffer with writable descriptors gets its own entry with its length, 0 included; runs across the ring end and 16-bit index wrap (split) / wrap counters (packed, ring
 * sizes that are not powers of two); EVENT_IDX windows; every byte the device changes in the ring
 * areas lies on a page it logged; inflight tracking releases every chain of a run; without
 * IN_ORDER nothing changes.
 */
#include "vq/vq_internal.h"
#include "vq_testlib.h"
#include "vhu_test.h"

#define IOD_MAX 64  /* outstanding buffers: >= the largest ring here */
#define DESC_LEN 16 /* every descriptor: 16 bytes */

struct iod_buf {
    uint16_t id;    /* split: head index; packed: buffer id (the head slot, as DPDK's driver) */
    uint16_t ndesc;
    uint32_t in_len;
    unsigned cookie;
};

struct iod_done {
    unsigned cookie;
    uint32_t len;
};

/* The in-order driver. */
struct iod {
    struct pair *p;
    uint16_t num;
    bool packed;
    uint16_t avail;     /* split: free-running avail index; packed: next slot to fill */
    bool avail_wrap;    /* packed */
    uint16_t next_desc; /* split: next table entry, in ring order */
    uint16_t used;      /* split: free-running index of the next used entry; packed: its slot */
    bool used_wrap;     /* packed */
    unsigned free;      /* descriptors the driver owns */
    unsigned cookies;   /* next cookie */
    struct iod_buf q[IOD_MAX];
    unsigned qhead, qn;
    uint64_t data;      /* what every descriptor points at */
};

static void iod_init(struct iod *d, struct pair *p)
{
    memset(d, 0, sizeof(*d));
    d->p = p;
    d->num = p->o.num;
    d->packed = p->o.packed;
    d->avail_wrap = d->used_wrap = true;
    d->free = d->num;
    d->data = data_alloc(p->g, DESC_LEN);
}

static struct vhu_vring_avail *iod_avail(const struct iod *d)
{
    return d->p->cfg.driver;
}

static struct vhu_vring_used *iod_used(const struct iod *d)
{
    return d->p->cfg.device;
}

/* A buffer of nout readable then nin writable descriptors; false when the ring is full. */
static bool iod_add(struct iod *d, unsigned nout, unsigned nin)
{
    unsigned n = nout + nin;
    struct iod_buf *b;

    if (n == 0 || n > d->free || d->qn == IOD_MAX)
        return false;
    b = &d->q[(d->qhead + d->qn++) % IOD_MAX];
    *b = (struct iod_buf){.ndesc = (uint16_t)n, .in_len = nin * DESC_LEN, .cookie = d->cookies++};
    d->free -= n;
    if (!d->packed) {
        struct vhu_vring_desc *t = d->p->cfg.desc;
        b->id = d->next_desc;
        for (unsigned k = 0; k < n; k++) {
            unsigned i = d->next_desc;
            d->next_desc = (uint16_t)((i + 1) % d->num);
            t[i] = (struct vhu_vring_desc){
                .addr = d->data, .len = DESC_LEN,
                .flags = (uint16_t)((k >= nout ? VHU_VRING_DESC_F_WRITE : 0) |
                                    (k + 1 < n ? VHU_VRING_DESC_F_NEXT : 0)),
                .next = d->next_desc};
        }
        iod_avail(d)->ring[d->avail % d->num] = b->id;
        d->avail++;
        __atomic_store_n(&iod_avail(d)->idx, d->avail, __ATOMIC_RELEASE);
        return true;
    }
    struct vhu_vring_packed_desc *r = d->p->cfg.desc;
    uint16_t head = d->avail, head_flags = 0;
    b->id = head;
    for (unsigned k = 0; k < n; k++) {
        uint16_t flags = (uint16_t)((d->avail_wrap ? VQ_PACKED_AVAIL_BIT : VQ_PACKED_USED_BIT) |
                                    (k >= nout ? VHU_VRING_DESC_F_WRITE : 0) |
                                    (k + 1 < n ? VHU_VRING_DESC_F_NEXT : 0));
        r[d->avail].addr = d->data;
        r[d->avail].len = DESC_LEN;
        r[d->avail].id = head;
        if (k == 0)
            head_flags = flags;
        else
            r[d->avail].flags = flags;
        if (++d->avail == d->num) {
            d->avail = 0;
            d->avail_wrap = !d->avail_wrap;
        }
    }
    __atomic_store_n(&r[head].flags, head_flags, __ATOMIC_RELEASE);
    return true;
}

/* Complete outstanding buffers up to the one with id `id`, which gets `len` (the others: their
 * whole writable length). Returns how many, or a negative line when id is not outstanding or
 * (split) the run reaches past the published index `limit`. */
static int iod_complete_to(struct iod *d, uint16_t id, uint32_t len, struct iod_done *out,
                           unsigned *nout, unsigned max, uint16_t limit)
{
    for (;;) {
        struct iod_buf *b;

        if (d->qn == 0 || *nout == max)
            return -__LINE__;
        if (!d->packed && d->used == limit)
            return -__LINE__;
        b = &d->q[d->qhead];
        d->qhead = (d->qhead + 1) % IOD_MAX;
        d->qn--;
        d->free += b->ndesc;
        if (d->packed) {
            unsigned u = d->used + b->ndesc;
            if (u >= d->num) {
                u -= d->num;
                d->used_wrap = !d->used_wrap;
            }
            d->used = (uint16_t)u;
        } else {
            d->used++;
        }
        out[*nout].cookie = b->cookie;
        out[*nout].len = b->id == id ? len : b->in_len;
        if (b->id == id && len > b->in_len)
            return -__LINE__;
        ++*nout;
        if (b->id == id)
            return 0;
    }
}

/* Everything the device has published since the last call, in completion order: the count, or
 * a negative line number on a protocol violation. */
static int iod_get(struct iod *d, struct iod_done *out, unsigned max)
{
    unsigned n = 0;
    int r;

    if (!d->packed) {
        uint16_t idx = __atomic_load_n(&iod_used(d)->idx, __ATOMIC_ACQUIRE);
        if ((uint16_t)(idx - d->used) > d->qn)
            return -__LINE__;
        while (d->used != idx) {
            struct vhu_vring_used_elem e = iod_used(d)->ring[d->used % d->num];
            if ((r = iod_complete_to(d, (uint16_t)e.id, e.len, out, &n, max, idx)) < 0)
                return r;
        }
        return (int)n;
    }
    struct vhu_vring_packed_desc *ring = d->p->cfg.desc;
    for (;;) {
        struct vhu_vring_packed_desc *u = &ring[d->used];
        uint16_t f = __atomic_load_n(&u->flags, __ATOMIC_ACQUIRE);
        if (((f & VQ_PACKED_AVAIL_BIT) != 0) != d->used_wrap ||
            ((f & VQ_PACKED_USED_BIT) != 0) != d->used_wrap)
            return (int)n;
        if ((r = iod_complete_to(d, u->id, (f & VHU_VRING_DESC_F_WRITE) ? u->len : 0, out, &n,
                                 max, 0)) < 0)
            return r;
    }
}

/* ---- device side helpers ---- */

struct dev {
    struct vhu_vq_elem *e[IOD_MAX]; /* popped, not yet pushed, oldest first */
    unsigned head, n;
};

static unsigned dev_pop(struct pair *p, struct dev *v, unsigned max)
{
    unsigned got = 0;
    struct vhu_vq_elem *e;

    while (got < max && v->n < IOD_MAX && (e = vhu_vq_pop(p->q)) != NULL) {
        v->e[(v->head + v->n++) % IOD_MAX] = e;
        got++;
    }
    return got;
}

/* Push the oldest popped element with `len` bytes written. */
static void dev_push(struct pair *p, struct dev *v, uint32_t len)
{
    vhu_vq_push(p->q, v->e[v->head], len);
    v->head = (v->head + 1) % IOD_MAX;
    v->n--;
}

/* The driver makes n buffers of nout + nin descriptors available and the device pops them. */
static int add_pop(struct pair *p, struct iod *d, struct dev *v, unsigned n, unsigned nout,
                   unsigned nin)
{
    for (unsigned i = 0; i < n; i++)
        if (!iod_add(d, nout, nin))
            return -__LINE__;
    return dev_pop(p, v, n) == n ? 0 : -__LINE__;
}

/* The device pushes its n oldest elements with len bytes each, then flushes. */
static void push_flush(struct pair *p, struct dev *v, unsigned n, uint32_t len)
{
    while (n--)
        dev_push(p, v, len);
    vhu_vq_flush(p->q);
}

static int setup(struct guest *g, struct pair *p, struct iod *d, uint16_t num, bool packed,
                 bool event_idx, bool in_order)
{
    struct pair_opts o = {.num = num, .packed = packed, .event_idx = event_idx,
                          .in_order = in_order, .log_ring = true};
    int r;

    if ((r = guest_init(g)) < 0 || (r = pair_init(p, g, &o)) < 0)
        return r;
    iod_init(d, p);
    return 0;
}

static void teardown(struct guest *g, struct pair *p)
{
    pair_fini(p);
    guest_fini(g);
}

/* ---- split ---- */

/* Fill the used ring with a pattern no entry can have (id 0xa5a5 >= num). */
static void poison_used(struct iod *d)
{
    memset(iod_used(d)->ring, 0xa5, sizeof(struct vhu_vring_used_elem) * d->num);
}

static bool poisoned(const struct iod *d, uint16_t idx)
{
    const struct vhu_vring_used_elem *e = &iod_used(d)->ring[idx % d->num];
    return e->id == 0xa5a5a5a5u && e->len == 0xa5a5a5a5u;
}

TEST(split_run_of_zero_lengths_is_one_entry)
{
    struct guest g;
    struct pair p;
    struct iod d;
    struct dev v = {0};
    struct iod_done done[8];

    ASSERT_OK(setup(&g, &p, &d, 8, false, false, true));
    poison_used(&d);
    for (unsigned i = 0; i < 5; i++)
        ASSERT(iod_add(&d, 1 + i % 2, 0)); /* 1, 2, 1, 2, 1 descriptors: heads 0 1 3 4 6 */
    ASSERT_EQ(dev_pop(&p, &v, 8), 5);
    for (unsigned i = 0; i < 5; i++)
        dev_push(&p, &v, 0);
    ASSERT(poisoned(&d, 0)); /* nothing is written before the flush */
    vhu_vq_flush(p.q);
    ASSERT_EQ(iod_used(&d)->idx, 5);
    ASSERT_EQ(iod_used(&d)->ring[0].id, 6); /* the last buffer's head, at the first position */
    ASSERT_EQ(iod_used(&d)->ring[0].len, 0);
    for (uint16_t i = 1; i < 8; i++)
        ASSERT(poisoned(&d, i));
    ASSERT_EQ(p.notifies, 1);
    ASSERT_EQ(iod_get(&d, done, 8), 5);
    for (unsigned i = 0; i < 5; i++)
        ASSERT_EQ(done[i].cookie, i);
    ASSERT_EQ(d.free, 8);
    ASSERT_EQ(vhu_vq_inflight(p.q), 0);
    ASSERT_EQ(p.errors, 0);
    teardown(&g, &p);
}

/* Buffers R R W R R R W R (R: one readable descriptor, W: one writable), W completed with 5 and
 * with 0 bytes: entries at 0 (run of 2), 2 (5 bytes), 3 (run of 3), 6 (0 bytes, its own), 7
 * (run of 1); positions 1, 4 and 5 are skipped. */
TEST(split_writable_buffers_get_their_own_entries)
{
    static const uint32_t lens[8] = {0, 0, 5, 0, 0, 0, 0, 0};
    static const bool writable[8] = {false, false, true, false, false, false, true, false};
    struct guest g;
    struct pair p;
    struct iod d;
    struct dev v = {0};
    struct iod_done done[8];

    ASSERT_OK(setup(&g, &p, &d, 8, false, false, true));
    poison_used(&d);
    for (unsigned i = 0; i < 8; i++)
        ASSERT_OK(add_pop(&p, &d, &v, 1, !writable[i], writable[i]));
    for (unsigned i = 0; i < 8; i++)
        dev_push(&p, &v, lens[i]);
    vhu_vq_flush(p.q);
    ASSERT_EQ(iod_used(&d)->idx, 8);
    static const struct {
        uint16_t pos;
        uint32_t id, len;
    } want[] = {{0, 1, 0}, {2, 2, 5}, {3, 5, 0}, {6, 6, 0}, {7, 7, 0}};
    for (unsigned i = 0; i < VHU_ARRAY_SIZE(want); i++) {
        ASSERT_EQ(iod_used(&d)->ring[want[i].pos].id, want[i].id);
        ASSERT_EQ(iod_used(&d)->ring[want[i].pos].len, want[i].len);
    }
    ASSERT(poisoned(&d, 1) && poisoned(&d, 4) && poisoned(&d, 5));
    ASSERT_EQ(iod_get(&d, done, 8), 8);
    for (unsigned i = 0; i < 8; i++) {
        ASSERT_EQ(done[i].cookie, i);
        ASSERT_EQ(done[i].len, lens[i]);
    }
    ASSERT_EQ(p.errors, 0);
    teardown(&g, &p);
}

/* used_event inside a run that is written as one entry still notifies: the index crossed it. */
TEST(split_event_idx_window_covers_skipped_entries)
{
    struct guest g;
    struct pair p;
    struct iod d;
    struct dev v = {0};
    struct iod_done done[8];
    uint16_t *used_event;

    ASSERT_OK(setup(&g, &p, &d, 8, false, true, true));
    used_event = &iod_avail(&d)->ring[8];
    ASSERT_OK(add_pop(&p, &d, &v, 8, 1, 0));
    *used_event = 2; /* written in the middle of the 0..4 run */
    push_flush(&p, &v, 4, 0);
    ASSERT_EQ(p.notifies, 1);
    *used_event = 7; /* 4..6 does not reach it */
    push_flush(&p, &v, 2, 0);
    ASSERT_EQ(p.notifies, 1);
    push_flush(&p, &v, 2, 0); /* 6..8 does */
    ASSERT_EQ(p.notifies, 2);
    ASSERT_EQ(iod_get(&d, done, 8), 8);
    ASSERT_EQ(p.errors, 0);
    teardown(&g, &p);
}

/* ---- packed ---- */

static bool desc_used(const struct iod *d, uint16_t slot, bool wrap)
{
    const struct vhu_vring_packed_desc *r = d->p->cfg.desc;
    uint16_t f = r[slot].flags;
    return ((f & VQ_PACKED_AVAIL_BIT) != 0) == wrap && ((f & VQ_PACKED_USED_BIT) != 0) == wrap;
}

TEST(packed_run_of_zero_lengths_is_one_descriptor)
{
    struct guest g;
    struct pair p;
    struct iod d;
    struct dev v = {0};
    struct iod_done done[8];
    struct vhu_vring_packed_desc *r, before[8];

    ASSERT_OK(setup(&g, &p, &d, 8, true, false, true));
    r = p.cfg.desc;
    ASSERT(iod_add(&d, 1, 0)); /* slot 0 */
    ASSERT(iod_add(&d, 2, 0)); /* slots 1-2 */
    ASSERT(iod_add(&d, 1, 0)); /* slot 3 */
    memcpy(before, r, sizeof(before));
    ASSERT_EQ(dev_pop(&p, &v, 8), 3);
    for (unsigned i = 0; i < 3; i++)
        dev_push(&p, &v, 0);
    vhu_vq_flush(p.q);
    ASSERT(desc_used(&d, 0, true));
    ASSERT_EQ(r[0].id, 3); /* the last buffer's id */
    ASSERT_EQ(r[0].flags & VHU_VRING_DESC_F_WRITE, 0);
    ASSERT(memcmp(&r[1], &before[1], 3 * sizeof(r[0])) == 0); /* skipped slots untouched */
    ASSERT_EQ(vhu_vq_get_base(p.q), 0x80048004u);
    ASSERT_EQ(iod_get(&d, done, 8), 3);
    for (unsigned i = 0; i < 3; i++)
        ASSERT_EQ(done[i].cookie, i);
    ASSERT_EQ(d.used, 4);
    ASSERT_EQ(d.free, 8);
    ASSERT_EQ(p.errors, 0);
    teardown(&g, &p);
}

/* Buffers R R W R R (one descriptor each, W completed with 5 bytes) at slots 5 6 7 | 0 1 (a
 * ring of 8, second lap): descriptors at 5 (run of 2, id 6), 7 (5 bytes), 0 (run of 2 across
 * the end, id 1). */
TEST(packed_writable_buffers_and_runs_across_the_end)
{
    static const uint32_t lens[5] = {0, 0, 5, 0, 0};
    struct guest g;
    struct pair p;
    struct iod d;
    struct dev v = {0};
    struct iod_done done[8];
    struct vhu_vring_packed_desc *r;

    ASSERT_OK(setup(&g, &p, &d, 8, true, false, true));
    r = p.cfg.desc;
    ASSERT_OK(add_pop(&p, &d, &v, 5, 0, 1)); /* move to slot 5 */
    push_flush(&p, &v, 5, 1);
    ASSERT_EQ(iod_get(&d, done, 8), 5);
    for (unsigned i = 0; i < 5; i++)
        ASSERT_OK(add_pop(&p, &d, &v, 1, !lens[i], !!lens[i]));
    for (unsigned i = 0; i < 5; i++)
        dev_push(&p, &v, lens[i]);
    vhu_vq_flush(p.q);
    ASSERT(desc_used(&d, 5, true) && r[5].id == 6);
    ASSERT(desc_used(&d, 7, true) && r[7].id == 7 && r[7].len == 5);
    ASSERT(desc_used(&d, 0, false) && r[0].id == 1);
    ASSERT(!desc_used(&d, 6, true) && !desc_used(&d, 1, false));
    ASSERT_EQ(vhu_vq_get_base(p.q), 0x00020002u);
    ASSERT_EQ(iod_get(&d, done, 8), 5);
    for (unsigned i = 0; i < 5; i++) {
        ASSERT_EQ(done[i].cookie, 5 + i);
        ASSERT_EQ(done[i].len, lens[i]);
    }
    ASSERT_EQ(p.errors, 0);
    teardown(&g, &p);
}

/* Driver event suppression with a descriptor position: a run written as one descriptor notifies
 * when the position lies anywhere inside it. */
TEST(packed_event_idx_window_covers_skipped_slots)
{
    struct guest g;
    struct pair p;
    struct iod d;
    struct dev v = {0};
    struct iod_done done[8];
    struct vhu_vring_packed_desc_event *drv;

    ASSERT_OK(setup(&g, &p, &d, 8, true, true, true));
    drv = p.cfg.driver;
    ASSERT_OK(add_pop(&p, &d, &v, 6, 1, 0));
    drv->flags = VHU_VRING_PACKED_EVENT_FLAG_DESC;
    drv->off_wrap = 2 | VQ_WRAP_BIT; /* inside the 0..3 run */
    push_flush(&p, &v, 3, 0);
    ASSERT_EQ(p.notifies, 1);
    drv->off_wrap = 5 | VQ_WRAP_BIT; /* 3..5 stops short of it */
    push_flush(&p, &v, 2, 0);
    ASSERT_EQ(p.notifies, 1);
    push_flush(&p, &v, 1, 0);
    ASSERT_EQ(p.notifies, 2);
    ASSERT_EQ(iod_get(&d, done, 8), 6);
    ASSERT_EQ(p.errors, 0);
    teardown(&g, &p);
}

/* Without IN_ORDER every completion keeps its entry. */
static void without_in_order(bool packed)
{
    struct guest g;
    struct pair p;
    struct iod d;
    struct dev v = {0};

    ASSERT_OK(setup(&g, &p, &d, 8, packed, false, false));
    if (!packed)
        poison_used(&d);
    ASSERT_OK(add_pop(&p, &d, &v, 3, 1, 0));
    push_flush(&p, &v, 3, 0);
    for (uint16_t i = 0; i < 3; i++)
        ASSERT(packed ? desc_used(&d, i, true) : iod_used(&d)->ring[i].id == i);
    teardown(&g, &p);
}

TEST(split_without_in_order_writes_every_entry) { without_in_order(false); }
TEST(packed_without_in_order_writes_every_descriptor) { without_in_order(true); }

/* ---- both: a long random run ---- */

static uint32_t rnd(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 16;
}

/* Pages of the ring areas the device changed since `snap` were all logged. */
static int changes_logged(const struct pair *p, const uint8_t *snap, size_t size,
                          const uint8_t *bitmap)
{
    const uint8_t *now = gh(p->g, p->ring_gpa);

    for (size_t i = 0; i < size; i++) {
        uint64_t page = (p->ring_gpa + i) / 4096;
        if (now[i] != snap[i] && !(bitmap[page / 8] & (1u << (page % 8))))
            return -1;
    }
    return 0;
}

/*
 * Random buffers (1-3 descriptors, readable, writable or both), a device that pops some, pushes
 * the oldest ones with 0 bytes or a length (writable ones too get 0 bytes now and then), and
 * flushes now and then; the driver takes what is
 * published at random points. Every cookie comes back once, in order, with its length; every
 * ring change is logged; split: every flush notified exactly when used_event was crossed.
 */
static int soak(uint16_t num, bool packed, bool event_idx, uint32_t seed, unsigned iters)
{
    static uint8_t snap[16384];
    uint8_t bitmap[128];
    struct vhu_vq_log lg = {.bitmap = bitmap, .size = sizeof(bitmap)};
    struct guest g;
    struct pair p;
    struct iod d;
    struct dev v = {0};
    struct iod_done done[IOD_MAX];
    uint32_t expect_len[IOD_MAX], s = seed;
    unsigned next_cookie = 0, notifies = 0;
    size_t ring_size = vhu_vqd_ring_size(num, packed);
    int r = 0;

    if (ring_size > sizeof(snap) || (r = setup(&g, &p, &d, num, packed, event_idx, true)) < 0)
        return r ? r : -__LINE__;
    vhu_vq_set_log(p.q, &lg);
    for (unsigned it = 0; it < iters && r == 0; it++) {
        for (unsigned k = rnd(&s) % 4; k--;) {
            unsigned nout = rnd(&s) % 3, nin = rnd(&s) % 3;
            if (!iod_add(&d, nout + nin ? nout : 1, nin))
                break;
        }
        memcpy(snap, gh(&g, p.ring_gpa), ring_size);
        memset(bitmap, 0, sizeof(bitmap));
        dev_pop(&p, &v, rnd(&s) % 6);
        for (unsigned k = rnd(&s) % (v.n + 1); k--;) {
            struct vhu_vq_elem *e = v.e[v.head];
            uint32_t len = (rnd(&s) % 3 == 0 && e->in_len) ? 1 + rnd(&s) % (uint32_t)e->in_len : 0;
            expect_len[(next_cookie++) % IOD_MAX] = len;
            dev_push(&p, &v, len);
        }
        if (rnd(&s) % 3) {
            /* a flush with nothing staged writes nothing and logs nothing: the event area
             * the pops moved is logged by the next flush that publishes, or by stop */
            bool staged = p.q->nstaged != 0;
            uint16_t old = 0, ue = 0;
            if (!packed) {
                old = iod_used(&d)->idx;
                ue = iod_avail(&d)->ring[num];
            }
            vhu_vq_flush(p.q);
            if (staged && changes_logged(&p, snap, ring_size, bitmap) < 0) {
                fprintf(stderr, "  iteration %u: a ring change was not logged\n", it);
                r = -__LINE__;
            }
            if (!packed) {
                uint16_t now = iod_used(&d)->idx;
                bool want = event_idx ? vhu_vring_need_event(ue, now, old) : now != old;
                notifies += want;
                if (p.notifies != notifies) {
                    fprintf(stderr, "  iteration %u: notified %u times, expected %u\n", it,
                            p.notifies, notifies);
                    r = -__LINE__;
                }
            }
        }
        if (rnd(&s) % 2) {
            unsigned first = d.cookies - d.qn; /* the oldest outstanding cookie */
            int n = iod_get(&d, done, IOD_MAX);
            if (n < 0) {
                fprintf(stderr, "  iteration %u: driver saw a bad used entry (line %d)\n", it, -n);
                r = n;
            }
            for (int i = 0; i < n && r == 0; i++) {
                if (done[i].cookie != first + (unsigned)i ||
                    done[i].len != expect_len[done[i].cookie % IOD_MAX]) {
                    fprintf(stderr, "  iteration %u: completion %u/%u wrong\n", it,
                            done[i].cookie, first + i);
                    r = -__LINE__;
                }
            }
            if (!packed && event_idx) /* ask for the next one, as Linux does */
                iod_avail(&d)->ring[num] = d.used;
        }
    }
    if (r == 0 && (p.errors || vhu_vq_broken(p.q)))
        r = -__LINE__;
    /* drain: the device completes everything, the driver gets it all back */
    while (r == 0 && v.n) {
        dev_push(&p, &v, 0);
        expect_len[(next_cookie++) % IOD_MAX] = 0;
    }
    if (r == 0) {
        vhu_vq_flush(p.q);
        if (iod_get(&d, done, IOD_MAX) < 0 || vhu_vq_pop(p.q) != NULL) /* pop: none left */
            r = -__LINE__;
    }
    teardown(&g, &p);
    return r;
}

TEST(split_soak_num8) { ASSERT_EQ(soak(8, false, false, 1, 70000), 0); }
TEST(split_soak_num4_event_idx) { ASSERT_EQ(soak(4, false, true, 2, 70000), 0); }
TEST(split_soak_num32_event_idx) { ASSERT_EQ(soak(32, false, true, 3, 40000), 0); }
TEST(packed_soak_num8) { ASSERT_EQ(soak(8, true, false, 4, 70000), 0); }
TEST(packed_soak_num5_event_idx) { ASSERT_EQ(soak(5, true, true, 5, 70000), 0); }
TEST(packed_soak_num7) { ASSERT_EQ(soak(7, true, false, 6, 70000), 0); }

/* ---- dirty log: a run written at the ring's last slot, on a ring spanning pages ---- */

static void log_across_the_end(bool packed)
{
    uint8_t bitmap[128];
    struct vhu_vq_log lg = {.bitmap = bitmap, .size = sizeof(bitmap)};
    const uint16_t num = 1024;
    struct guest g;
    struct pair p;
    struct iod d;
    struct dev v = {0};
    struct iod_done done[8];
    uint64_t da, drv, ua, slot_gpa;

    ASSERT_OK(setup(&g, &p, &d, num, packed, false, true));
    vhu_vqd_addrs(p.d, &da, &drv, &ua);
    vhu_vq_set_log(p.q, &lg);
    for (unsigned i = 0; i + 1 < num; i++) { /* one buffer at a time up to the last slot */
        ASSERT_OK(add_pop(&p, &d, &v, 1, 1, 0));
        push_flush(&p, &v, 1, 0);
        ASSERT_EQ(iod_get(&d, done, 8), 1);
    }
    ASSERT_OK(add_pop(&p, &d, &v, 4, 1, 0)); /* slots 1023, 0, 1, 2 */
    memset(bitmap, 0, sizeof(bitmap));
    push_flush(&p, &v, 4, 0);
    /* the one entry written: slot 1023 of the used ring / descriptor ring */
    slot_gpa = packed ? da + 16ULL * 1023 : ua + 4 + 8ULL * 1023;
    ASSERT(bitmap[slot_gpa / 4096 / 8] & (1u << (slot_gpa / 4096 % 8)));
    if (!packed) /* and used->idx */
        ASSERT(bitmap[ua / 4096 / 8] & (1u << (ua / 4096 % 8)));
    ASSERT_EQ(iod_get(&d, done, 8), 4);
    ASSERT_EQ(p.errors, 0);
    teardown(&g, &p);
}

TEST(split_log_run_across_the_end) { log_across_the_end(false); }
TEST(packed_log_run_across_the_end) { log_across_the_end(true); }

/* ---- inflight tracking: a run of chains written as one entry is released as a whole ---- */

static void inflight_run(bool packed)
{
    static uint8_t region[8192] __attribute__((aligned(64)));
    struct guest g;
    struct pair p;
    struct iod d;
    struct dev v = {0};
    struct iod_done done[8];
    uint32_t base;

    ASSERT(vhu_vq_inflight_region_size(8) <= sizeof(region));
    memset(region, 0, sizeof(region));
    ASSERT_OK(setup(&g, &p, &d, 8, packed, false, true));
    base = vhu_vq_get_base(p.q);
    vhu_vq_free(p.q);
    ASSERT_OK(pair_start_tracked(&p, region, base));
    ASSERT_OK(add_pop(&p, &d, &v, 5, 1, 0));
    push_flush(&p, &v, 3, 0); /* a run of 3; two stay in flight */
    ASSERT_EQ(iod_get(&d, done, 8), 3);
    /* the backend dies; its successor resubmits exactly the two still in flight */
    vhu_vq_free(p.q);
    ASSERT_OK(pair_start_tracked(&p, region, packed ? base : iod_used(&d)->idx));
    ASSERT_EQ(vhu_vq_resubmitted(p.q), 2);
    v = (struct dev){0};
    ASSERT_EQ(dev_pop(&p, &v, 8), 2);
    push_flush(&p, &v, 2, 0);
    ASSERT_EQ(iod_get(&d, done, 8), 2);
    ASSERT_EQ(done[0].cookie, 3);
    ASSERT_EQ(done[1].cookie, 4);
    ASSERT_EQ(vhu_vq_pop(p.q), NULL);
    ASSERT_EQ(p.errors, 0);
    teardown(&g, &p);
}

TEST(split_inflight_run_released) { inflight_run(false); }
TEST(packed_inflight_run_released) { inflight_run(true); }
