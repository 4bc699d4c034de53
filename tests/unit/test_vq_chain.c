/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Malicious descriptor chains, written by hand into the rings. Each one must break only the queue
 * it was offered on: pop returns NULL (now and later), the error hook runs exactly once, the
 * reason names the fault, and a second queue on other rings in the same guest keeps working.
 * Run under ASan/UBSan to prove no out-of-bounds access happens on the way.
 */
#include <sys/mman.h>

#include "vq/vq_internal.h"
#include "vq_testlib.h"
#include "vhu_test.h"

#define NUM 8

struct rig {
    struct guest g;
    struct pair v; /* victim */
    struct pair b; /* bystander */
    struct vhu_vring_desc *desc;
    struct vhu_vring_avail *avail;
    struct vhu_vring_packed_desc *pdesc;
    uint64_t buf;  /* 4 KiB of valid data buffer */
    uint64_t tbl;  /* room for an indirect table */
};

static int rig_init(struct rig *r, bool packed, bool indirect, unsigned max_segs)
{
    struct pair_opts vo = {.num = NUM, .packed = packed, .indirect = indirect,
                           .max_segs = max_segs, .index = 3};
    struct pair_opts bo = {.num = NUM, .packed = packed, .indirect = true, .index = 4};
    int ret;

    if ((ret = guest_init(&r->g)) < 0 || (ret = pair_init(&r->v, &r->g, &vo)) < 0 ||
        (ret = pair_init(&r->b, &r->g, &bo)) < 0)
        return ret;
    r->desc = gh(&r->g, r->v.ring_gpa);
    r->pdesc = gh(&r->g, r->v.ring_gpa);
    r->avail = gh(&r->g, r->v.ring_gpa + 16 * NUM);
    r->buf = data_alloc(&r->g, 4096);
    r->tbl = data_alloc(&r->g, 16 * 64);
    return 0;
}

static void rig_fini(struct rig *r)
{
    pair_fini(&r->v);
    pair_fini(&r->b);
    guest_fini(&r->g);
}

static void put(struct rig *r, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
                uint16_t next)
{
    r->desc[i] = (struct vhu_vring_desc){.addr = addr, .len = len, .flags = flags, .next = next};
}

static void put_tbl(struct rig *r, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
                    uint16_t next)
{
    struct vhu_vring_desc d = {.addr = addr, .len = len, .flags = flags, .next = next};
    gwrite(&r->g, r->tbl + 16 * i, &d, sizeof(d));
}

/* Split: make head available (first lap). */
static void publish(struct rig *r, uint16_t head)
{
    r->avail->ring[r->avail->idx % NUM] = head;
    __atomic_store_n(&r->avail->idx, (uint16_t)(r->avail->idx + 1), __ATOMIC_RELEASE);
}

/* Packed: a descriptor in the first lap (wrap counter 1: AVAIL set, USED clear). */
static void pput(struct rig *r, unsigned slot, uint64_t addr, uint32_t len, uint16_t id,
                 uint16_t flags)
{
    r->pdesc[slot].addr = addr;
    r->pdesc[slot].len = len;
    r->pdesc[slot].id = id;
    __atomic_store_n(&r->pdesc[slot].flags, (uint16_t)(flags | VQ_PACKED_AVAIL_BIT),
                     __ATOMIC_RELEASE);
}

/* Returns 0 when the victim broke cleanly for `why` and the bystander is unaffected. */
static int check_broken(struct rig *r, const char *why)
{
    const char *got;

    if (vhu_vq_pop(r->v.q) != NULL)
        return -__LINE__;
    if (!vhu_vq_broken(r->v.q) || r->v.errors != 1)
        return -__LINE__;
    got = vhu_vq_break_reason(r->v.q);
    if (!got || !strstr(got, why)) {
        fprintf(stderr, "  reason: \"%s\", expected \"%s\"\n", got ? got : "(none)", why);
        return -__LINE__;
    }
    /* Stays broken and quiet; the error hook does not run again. */
    if (vhu_vq_pop(r->v.q) != NULL || vhu_vq_has_work(r->v.q) || r->v.errors != 1)
        return -__LINE__;
    vhu_vq_flush(r->v.q);
    if (r->v.notifies != 0 || vhu_vq_inflight(r->v.q) != 0)
        return -__LINE__;
    /* The other queue in the same guest still works. */
    for (unsigned i = 0; i < 20; i++)
        if (pair_roundtrip(&r->b, 64, 64, 32, i) != 0)
            return -__LINE__;
    if (vhu_vq_broken(r->b.q) || r->b.errors != 0)
        return -__LINE__;
    return 0;
}

#define SPLIT_CASE(name, indirect, max_segs, why, ...)                                         \
    TEST(name)                                                                                 \
    {                                                                                          \
        struct rig r;                                                                          \
        ASSERT_OK(rig_init(&r, false, indirect, max_segs));                                    \
        __VA_ARGS__;                                                                           \
        ASSERT_EQ(check_broken(&r, why), 0);                                                   \
        rig_fini(&r);                                                                          \
    }

#define PACKED_CASE(name, indirect, max_segs, why, ...)                                        \
    TEST(name)                                                                                 \
    {                                                                                          \
        struct rig r;                                                                          \
        ASSERT_OK(rig_init(&r, true, indirect, max_segs));                                     \
        __VA_ARGS__;                                                                           \
        ASSERT_EQ(check_broken(&r, why), 0);                                                   \
        rig_fini(&r);                                                                          \
    }

/* ---- split: direct chains ---- */

SPLIT_CASE(split_loop_two, false, 64, "loops",
           put(&r, 0, r.buf, 8, VHU_VRING_DESC_F_NEXT, 1);
           put(&r, 1, r.buf, 8, VHU_VRING_DESC_F_NEXT, 0);
           publish(&r, 0))

SPLIT_CASE(split_self_loop, false, 64, "loops",
           put(&r, 2, r.buf, 0, VHU_VRING_DESC_F_NEXT, 2);
           publish(&r, 2))

SPLIT_CASE(split_next_out_of_range, false, 64, "index out of range",
           put(&r, 0, r.buf, 8, VHU_VRING_DESC_F_NEXT, NUM);
           publish(&r, 0))

SPLIT_CASE(split_addr_unmapped, false, 64, "not in guest memory",
           put(&r, 0, G_GAP + 0x100, 8, 0, 0);
           publish(&r, 0))

SPLIT_CASE(split_addr_below_memory, false, 64, "not in guest memory",
           put(&r, 0, 0x1000, 8, 0, 0);
           publish(&r, 0))

SPLIT_CASE(split_addr_wraps, false, 64, "wraps",
           put(&r, 0, UINT64_MAX - 4, 16, 0, 0);
           publish(&r, 0))

SPLIT_CASE(split_len_crosses_region_end, false, 64, "not in guest memory",
           put(&r, 0, G_R2 + G_RSIZE - 8, 16, VHU_VRING_DESC_F_WRITE, 0);
           publish(&r, 0))

/* The ring caches the region of the last translation: an address just past it, or below it,
 * must still miss and be looked up (and here, refused). */
SPLIT_CASE(split_addr_past_cached_region, false, 64, "not in guest memory",
           put(&r, 0, G_R1 + G_RSIZE - 8, 8, VHU_VRING_DESC_F_NEXT, 1);
           put(&r, 1, G_GAP, 8, 0, 0);
           publish(&r, 0))

SPLIT_CASE(split_addr_below_cached_region, false, 64, "not in guest memory",
           put(&r, 0, G_R0, 8, VHU_VRING_DESC_F_NEXT, 1);
           put(&r, 1, G_R0 - 8, 8, 0, 0);
           publish(&r, 0))

SPLIT_CASE(split_readable_after_writable, false, 64, "readable descriptor after a writable",
           put(&r, 0, r.buf, 8, VHU_VRING_DESC_F_WRITE | VHU_VRING_DESC_F_NEXT, 1);
           put(&r, 1, r.buf + 8, 8, 0, 0);
           publish(&r, 0))

SPLIT_CASE(split_too_many_segments, false, 4, "max_segs",
           for (unsigned i = 0; i < 5; i++)
               put(&r, i, r.buf + 8 * i, 8, i < 4 ? VHU_VRING_DESC_F_NEXT : 0, (uint16_t)(i + 1));
           publish(&r, 0))

/* One descriptor across the R0/R1 boundary is two segments. */
SPLIT_CASE(split_region_split_exceeds_max_segs, false, 1, "max_segs",
           put(&r, 0, G_R1 - 8, 16, 0, 0);
           publish(&r, 0))

SPLIT_CASE(split_avail_idx_jump, false, 64, "more than num",
           put(&r, 0, r.buf, 8, 0, 0);
           r.avail->ring[0] = 0;
           r.avail->idx = NUM + 1)

SPLIT_CASE(split_head_out_of_range, false, 64, "head index out of range",
           publish(&r, NUM))

SPLIT_CASE(split_head_far_out_of_range, false, 64, "head index out of range",
           publish(&r, 0xffff))

/* ---- split: indirect ---- */

SPLIT_CASE(split_indirect_not_negotiated, false, 64, "without VIRTIO_RING_F_INDIRECT_DESC",
           put_tbl(&r, 0, r.buf, 8, 0, 0);
           put(&r, 0, r.tbl, 16, VHU_VRING_DESC_F_INDIRECT, 0);
           publish(&r, 0))

SPLIT_CASE(split_indirect_len_zero, true, 64, "empty indirect table",
           put(&r, 0, r.tbl, 0, VHU_VRING_DESC_F_INDIRECT, 0);
           publish(&r, 0))

SPLIT_CASE(split_indirect_len_not_multiple, true, 64, "multiple of 16",
           put_tbl(&r, 0, r.buf, 8, 0, 0);
           put(&r, 0, r.tbl, 24, VHU_VRING_DESC_F_INDIRECT, 0);
           publish(&r, 0))

SPLIT_CASE(split_indirect_too_long, true, 64, "longer than the largest ring",
           put(&r, 0, r.tbl, 16 * (VHU_VQ_MAX_SIZE + 1), VHU_VRING_DESC_F_INDIRECT, 0);
           publish(&r, 0))

SPLIT_CASE(split_indirect_with_next, true, 64, "NEXT",
           put_tbl(&r, 0, r.buf, 8, 0, 0);
           put(&r, 0, r.tbl, 16, VHU_VRING_DESC_F_INDIRECT | VHU_VRING_DESC_F_NEXT, 1);
           put(&r, 1, r.buf, 8, VHU_VRING_DESC_F_WRITE, 0);
           publish(&r, 0))

SPLIT_CASE(split_indirect_nested, true, 64, "nested indirect",
           put_tbl(&r, 0, r.buf, 8, VHU_VRING_DESC_F_NEXT, 1);
           put_tbl(&r, 1, r.tbl, 32, VHU_VRING_DESC_F_INDIRECT, 0);
           put(&r, 0, r.tbl, 32, VHU_VRING_DESC_F_INDIRECT, 0);
           publish(&r, 0))

SPLIT_CASE(split_indirect_table_unmapped, true, 64, "indirect table is not in guest memory",
           put(&r, 0, G_GAP, 32, VHU_VRING_DESC_F_INDIRECT, 0);
           publish(&r, 0))

/* The table starts in R2 and runs into the gap after it. */
SPLIT_CASE(split_indirect_table_runs_off_memory, true, 64, "indirect table is not in guest memory",
           put(&r, 0, G_R2 + G_RSIZE - 16, 32, VHU_VRING_DESC_F_INDIRECT, 0);
           *(struct vhu_vring_desc *)gh(&r.g, G_R2 + G_RSIZE - 16) =
               (struct vhu_vring_desc){.addr = r.buf, .len = 8, .flags = VHU_VRING_DESC_F_NEXT, .next = 1};
           publish(&r, 0))

SPLIT_CASE(split_indirect_table_addr_wraps, true, 64, "wraps",
           put(&r, 0, UINT64_MAX - 15, 32, VHU_VRING_DESC_F_INDIRECT, 0);
           publish(&r, 0))

SPLIT_CASE(split_indirect_loop, true, 64, "loops",
           put_tbl(&r, 0, r.buf, 8, VHU_VRING_DESC_F_NEXT, 1);
           put_tbl(&r, 1, r.buf, 8, VHU_VRING_DESC_F_NEXT, 0);
           put(&r, 0, r.tbl, 32, VHU_VRING_DESC_F_INDIRECT, 0);
           publish(&r, 0))

SPLIT_CASE(split_indirect_next_out_of_range, true, 64, "index out of range",
           put_tbl(&r, 0, r.buf, 8, VHU_VRING_DESC_F_NEXT, 2);
           put_tbl(&r, 1, r.buf, 8, 0, 0);
           put(&r, 0, r.tbl, 32, VHU_VRING_DESC_F_INDIRECT, 0);
           publish(&r, 0))

SPLIT_CASE(split_indirect_inside_chain, true, 64, "indirect descriptor inside a chain",
           put_tbl(&r, 0, r.buf, 8, 0, 0);
           put(&r, 0, r.buf, 8, VHU_VRING_DESC_F_NEXT, 1);
           put(&r, 1, r.tbl, 16, VHU_VRING_DESC_F_INDIRECT, 0);
           publish(&r, 0))

SPLIT_CASE(split_indirect_too_many_segments, true, 4, "max_segs",
           for (unsigned i = 0; i < 5; i++)
               put_tbl(&r, i, r.buf + 8 * i, 8, i < 4 ? VHU_VRING_DESC_F_NEXT : 0, (uint16_t)(i + 1));
           put(&r, 0, r.tbl, 5 * 16, VHU_VRING_DESC_F_INDIRECT, 0);
           publish(&r, 0))

SPLIT_CASE(split_indirect_readable_after_writable, true, 64, "readable descriptor after",
           put_tbl(&r, 0, r.buf, 8, VHU_VRING_DESC_F_WRITE | VHU_VRING_DESC_F_NEXT, 1);
           put_tbl(&r, 1, r.buf, 8, 0, 0);
           put(&r, 0, r.tbl, 32, VHU_VRING_DESC_F_INDIRECT, 0);
           publish(&r, 0))

/* Sums past 32 bits: needs more than 4 GiB of guest memory, so map (never touch) a reservation. */
TEST(split_length_over_4g)
{
    const uint64_t big = 5ULL << 30, big_gpa = 1ULL << 32;
    struct vhu_mem_region *rs[4];
    struct vhu_mem_table *t;
    struct rig r;
    void *res;

    res = mmap(NULL, big, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (res == MAP_FAILED)
        SKIP("cannot reserve 5 GiB of address space");
    ASSERT_OK(rig_init(&r, false, false, 64));
    for (unsigned i = 0; i < 3; i++)
        rs[i] = r.g.mem->by_gpa[i];
    {
        struct vhu_mem_region_desc d = {.gpa = big_gpa, .size = big, .uva = 1ULL << 40, .fd = -1,
                                        .host = res};
        ASSERT_OK(vhu_mem_region_map(&d, &rs[3]));
    }
    ASSERT_OK(vhu_mem_table_new(rs, 4, &t));
    vhu_vq_set_mem(r.v.q, t);
    put(&r, 0, big_gpa, UINT32_MAX, VHU_VRING_DESC_F_NEXT, 1);
    put(&r, 1, big_gpa, 2, 0, 0);
    publish(&r, 0);
    ASSERT_EQ(check_broken(&r, "exceeds 4 GiB"), 0);
    rig_fini(&r);
    vhu_mem_table_put(t);
    munmap(res, big);
}

/* Not an attack: an indirect table that straddles two regions must still be read correctly. */
TEST(split_indirect_table_spanning_regions_ok)
{
    struct rig r;
    struct vhu_vq_elem *e;
    uint64_t tbl = G_R1 - 24; /* entry 1 straddles R0 | R1 */

    ASSERT_OK(rig_init(&r, false, true, 64));
    {
        struct vhu_vring_desc t[3] = {
            {.addr = r.buf, .len = 8, .flags = VHU_VRING_DESC_F_NEXT, .next = 1},
            {.addr = r.buf + 8, .len = 16, .flags = VHU_VRING_DESC_F_NEXT | VHU_VRING_DESC_F_WRITE,
             .next = 2},
            {.addr = r.buf + 24, .len = 32, .flags = VHU_VRING_DESC_F_WRITE, .next = 0},
        };
        gwrite(&r.g, tbl, t, sizeof(t));
    }
    put(&r, 0, tbl, 48, VHU_VRING_DESC_F_INDIRECT, 0);
    publish(&r, 0);
    e = vhu_vq_pop(r.v.q);
    ASSERT(e != NULL);
    ASSERT_EQ(e->out_num, 1);
    ASSERT_EQ(e->in_num, 2);
    ASSERT_EQ(e->out_len, 8);
    ASSERT_EQ(e->in_len, 48);
    ASSERT(e->iov[1].iov_base == gh(&r.g, r.buf + 8));
    vhu_vq_push(r.v.q, e, 48);
    vhu_vq_flush(r.v.q);
    ASSERT(!vhu_vq_broken(r.v.q));
    ASSERT_EQ(r.v.errors, 0);
    rig_fini(&r);
}

/* A device that calls vhu_vq_break() itself gets the same treatment. */
SPLIT_CASE(split_device_breaks_queue, false, 64, "device says no",
           vhu_vq_break(r.v.q, "device says no"))

/* ---- packed ---- */

PACKED_CASE(packed_buffer_id_out_of_range, false, 64, "buffer id out of range",
            pput(&r, 0, r.buf, 8, NUM, VHU_VRING_DESC_F_WRITE))

PACKED_CASE(packed_buffer_id_far_out_of_range, false, 64, "buffer id out of range",
            pput(&r, 1, r.buf, 8, 0xffff, 0); /* the id is in the last descriptor */
            pput(&r, 0, r.buf, 8, 0, VHU_VRING_DESC_F_NEXT))

PACKED_CASE(packed_chain_longer_than_ring, false, 64, "longer than the ring",
            for (unsigned i = NUM; i-- > 0;)
                pput(&r, i, r.buf, 8, 0, VHU_VRING_DESC_F_NEXT))

PACKED_CASE(packed_readable_after_writable, false, 64, "readable descriptor after",
            pput(&r, 1, r.buf, 8, 0, 0);
            pput(&r, 0, r.buf, 8, 0, VHU_VRING_DESC_F_WRITE | VHU_VRING_DESC_F_NEXT))

PACKED_CASE(packed_addr_unmapped, false, 64, "not in guest memory",
            pput(&r, 0, G_GAP + 64, 8, 0, 0))

PACKED_CASE(packed_len_crosses_region_end, false, 64, "not in guest memory",
            pput(&r, 0, G_R2 + G_RSIZE - 4, 8, 0, VHU_VRING_DESC_F_WRITE))

PACKED_CASE(packed_too_many_segments, false, 2, "max_segs",
            pput(&r, 2, r.buf, 8, 0, 0);
            pput(&r, 1, r.buf, 8, 0, VHU_VRING_DESC_F_NEXT);
            pput(&r, 0, r.buf, 8, 0, VHU_VRING_DESC_F_NEXT))

PACKED_CASE(packed_indirect_not_negotiated, false, 64, "without VIRTIO_RING_F_INDIRECT_DESC",
            pput(&r, 0, r.tbl, 16, 0, VHU_VRING_DESC_F_INDIRECT))

PACKED_CASE(packed_indirect_with_next, true, 64, "NEXT",
            pput(&r, 1, r.buf, 8, 0, 0);
            pput(&r, 0, r.tbl, 16, 0, VHU_VRING_DESC_F_INDIRECT | VHU_VRING_DESC_F_NEXT))

PACKED_CASE(packed_indirect_len_not_multiple, true, 64, "multiple of 16",
            pput(&r, 0, r.tbl, 20, 0, VHU_VRING_DESC_F_INDIRECT))

PACKED_CASE(packed_indirect_len_zero, true, 64, "empty indirect table",
            pput(&r, 0, r.tbl, 0, 0, VHU_VRING_DESC_F_INDIRECT))

PACKED_CASE(packed_indirect_nested, true, 64, "nested indirect",
            struct vhu_vring_packed_desc t[2] = {
                {.addr = r.buf, .len = 8},
                {.addr = r.tbl, .len = 32, .flags = VHU_VRING_DESC_F_INDIRECT},
            };
            gwrite(&r.g, r.tbl, t, sizeof(t));
            pput(&r, 0, r.tbl, 32, 0, VHU_VRING_DESC_F_INDIRECT))

PACKED_CASE(packed_indirect_table_unmapped, true, 64, "indirect table is not in guest memory",
            pput(&r, 0, G_GAP + 0x1000, 32, 0, VHU_VRING_DESC_F_INDIRECT))

PACKED_CASE(packed_indirect_readable_after_writable, true, 64, "readable descriptor after",
            struct vhu_vring_packed_desc t[2] = {
                {.addr = r.buf, .len = 8, .flags = VHU_VRING_DESC_F_WRITE},
                {.addr = r.buf, .len = 8},
            };
            gwrite(&r.g, r.tbl, t, sizeof(t));
            pput(&r, 0, r.tbl, 32, 0, VHU_VRING_DESC_F_INDIRECT))

/* A packed indirect table is a plain array: NEXT in its entries means nothing, all are used. */
TEST(packed_indirect_ignores_next_in_table)
{
    struct rig r;
    struct vhu_vq_elem *e;
    struct vhu_vring_packed_desc t[3] = {
        {.addr = 0, .len = 8, .flags = VHU_VRING_DESC_F_NEXT},
        {.addr = 0, .len = 8, .flags = VHU_VRING_DESC_F_WRITE},
        {.addr = 0, .len = 8, .flags = VHU_VRING_DESC_F_WRITE | VHU_VRING_DESC_F_NEXT},
    };

    ASSERT_OK(rig_init(&r, true, true, 64));
    for (unsigned i = 0; i < 3; i++)
        t[i].addr = r.buf + 8 * i;
    gwrite(&r.g, r.tbl, t, sizeof(t));
    pput(&r, 0, r.tbl, sizeof(t), 5, VHU_VRING_DESC_F_INDIRECT);
    e = vhu_vq_pop(r.v.q);
    ASSERT(e != NULL);
    ASSERT_EQ(e->id, 5);
    ASSERT_EQ(e->ndesc, 1);
    ASSERT_EQ(e->out_num, 1);
    ASSERT_EQ(e->in_num, 2);
    vhu_vq_push(r.v.q, e, 0);
    vhu_vq_flush(r.v.q);
    ASSERT_EQ(r.v.errors, 0);
    rig_fini(&r);
}

/* ---- vhu_vq_pop_burst(): a bad single descriptor after good ones ---- */

/* Three good single descriptors are offered, then the bad one: the burst hands out the three
 * good chains (descriptors 0-2, 64 bytes at buf + 64 * i, readable (packed) or writable
 * (split)), stops, and the queue breaks for the bad one's reason. */
static int burst_check(struct rig *r, bool packed, const char *why)
{
    struct vhu_vq_elem *e[NUM];
    unsigned n = vhu_vq_pop_burst(r->v.q, e, NUM);

    if (n != 3)
        return -__LINE__;
    for (unsigned i = 0; i < n; i++)
        if (e[i]->id != i || e[i]->out_num != packed || e[i]->in_num != !packed ||
            e[i]->out_len + e[i]->in_len != 64 ||
            e[i]->iov[0].iov_base != gh(&r->g, r->buf + 64 * i))
            return -__LINE__;
    if (vhu_vq_pop_burst(r->v.q, e + n, NUM - n) != 0)
        return -__LINE__;
    for (unsigned i = 0; i < n; i++)
        vhu_vq_push(r->v.q, e[i], 0); /* recycled: the queue is broken */
    return check_broken(r, why);
}

/* Packed: slots 0-2 good, slot 3 bad. */
static int burst_case(const char *why, uint64_t addr, uint32_t len, uint16_t id)
{
    struct rig r;
    int ret;

    if (rig_init(&r, true, false, 64) < 0)
        return -__LINE__;
    for (unsigned i = 0; i < 3; i++)
        pput(&r, i, r.buf + 64 * i, 64, (uint16_t)i, 0);
    pput(&r, 3, addr, len, id, 0);
    ret = burst_check(&r, true, why);
    rig_fini(&r);
    return ret;
}

TEST(packed_burst_id_out_of_range)
{
    ASSERT_EQ(burst_case("buffer id out of range", G_R2, 64, NUM), 0);
}

TEST(packed_burst_address_in_gap)
{
    ASSERT_EQ(burst_case("not in guest memory", G_GAP + 64, 64, 3), 0);
}

TEST(packed_burst_buffer_runs_past_region)
{
    ASSERT_EQ(burst_case("not in guest memory", G_R2 + G_RSIZE - 16, 64, 3), 0);
}

TEST(packed_burst_address_wraps)
{
    ASSERT_EQ(burst_case("wraps", UINT64_MAX - 15, 64, 3), 0);
}

/* Split: heads 0-2 good, the fourth head (or its descriptor 3) bad. */
static int split_burst_case(const char *why, uint16_t head, uint64_t addr, uint32_t len)
{
    struct rig r;
    int ret;

    if (rig_init(&r, false, false, 64) < 0)
        return -__LINE__;
    for (uint16_t i = 0; i < 3; i++) {
        put(&r, i, r.buf + 64 * i, 64, VHU_VRING_DESC_F_WRITE, 0);
        publish(&r, i);
    }
    put(&r, 3, addr, len, 0, 0);
    publish(&r, head);
    ret = burst_check(&r, false, why);
    rig_fini(&r);
    return ret;
}

TEST(split_burst_head_out_of_range)
{
    ASSERT_EQ(split_burst_case("head index out of range", NUM, G_R2, 64), 0);
}

/* far outside the table: read only after the bound check (ASan sees the table's end) */
TEST(split_burst_head_far_out_of_range)
{
    ASSERT_EQ(split_burst_case("head index out of range", 0xffff, G_R2, 64), 0);
}

TEST(split_burst_address_in_gap)
{
    ASSERT_EQ(split_burst_case("not in guest memory", 3, G_GAP + 64, 64), 0);
}

TEST(split_burst_buffer_runs_past_region)
{
    ASSERT_EQ(split_burst_case("not in guest memory", 3, G_R2 + G_RSIZE - 16, 64), 0);
}
