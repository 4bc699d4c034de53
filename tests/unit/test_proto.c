/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * proto layer: the message tables and the validator (one test per table row, generated from the
 * list, plus the variable-size payloads). The codec is in test_proto_codec.c. Expected sizes and
 * errors are written out here from the spec, not taken from the code under test.
 */
#include <fcntl.h>
#include <stdbool.h>

#include "proto/vhost_user.h"
#include "vhu/util.h"
#include "vhu_test.h"

#define NQ 2 /* queues in the validation context */

/* ---------------------------------------------------------------------------------------- */
/* Helpers                                                                                    */
/* ---------------------------------------------------------------------------------------- */

enum vring_ref { NOT_VRING, VRING_INDEX, VRING_U64 };

/* Which messages address a vring, and how (vhost-user.rst, per message). */
static enum vring_ref vring_ref(uint32_t id, bool backend)
{
    if (backend) {
        switch (id) {
        case VHOST_USER_BACKEND_VRING_CALL:
        case VHOST_USER_BACKEND_VRING_ERR:
            return VRING_INDEX;
        case VHOST_USER_BACKEND_VRING_HOST_NOTIFIER_MSG:
            return VRING_U64;
        default:
            return NOT_VRING;
        }
    }
    switch (id) {
    case VHOST_USER_SET_VRING_NUM:
    case VHOST_USER_SET_VRING_ADDR:
    case VHOST_USER_SET_VRING_BASE:
    case VHOST_USER_GET_VRING_BASE:
    case VHOST_USER_SET_VRING_ENABLE:
    case VHOST_USER_SET_VRING_ENDIAN:
    case VHOST_USER_VRING_KICK:
    case VHOST_USER_GET_VRING_BASE_SKIP_DRAIN:
        return VRING_INDEX;
    case VHOST_USER_SET_VRING_KICK:
    case VHOST_USER_SET_VRING_CALL:
    case VHOST_USER_SET_VRING_ERR:
        return VRING_U64;
    default:
        return NOT_VRING;
    }
}

/* On-wire payload size of a well-formed message of each kind (what QEMU sends). */
static uint32_t good_size(enum vhu_payload pl)
{
    switch (pl) {
    case VHU_PL_NONE:
        return 0;
    case VHU_PL_U64:
    case VHU_PL_STATE:
    case VHU_PL_TRANSFER:
        return 8;
    case VHU_PL_ADDR:
    case VHU_PL_MEMREG:
    case VHU_PL_MMAP:
        return 40;
    case VHU_PL_MEMORY:
        return 8 + 2 * 32; /* two regions */
    case VHU_PL_LOG:
    case VHU_PL_UUID:
        return 16;
    case VHU_PL_IOTLB:
        return 32;
    case VHU_PL_CONFIG:
        return 12 + 4;
    case VHU_PL_INFLIGHT:
    case VHU_PL_AREA:
        return 24;
    case VHU_PL_ANY:
        return 64;
    }
    return 0;
}

static unsigned good_nfds(enum vhu_fds_policy f)
{
    switch (f) {
    case VHU_FDS_ONE:
    case VHU_FDS_OPT:
    case VHU_FDS_VRING:
        return 1;
    case VHU_FDS_MEMTABLE:
        return 2;
    case VHU_FDS_NONE:
    case VHU_FDS_ANY:
        break;
    }
    return 0;
}

/* A well-formed message for a row. The fds are fake numbers: validation never touches them. */
static void make_valid(const struct vhu_msg_info *info, bool backend, struct vhu_msg *m)
{
    memset(m, 0, sizeof(*m));
    m->hdr.request = info->id;
    m->hdr.flags = VHOST_USER_VERSION;
    m->hdr.size = good_size(info->payload);
    switch (info->payload) {
    case VHU_PL_MEMORY:
        m->payload.memory.nregions = 2;
        for (int i = 0; i < 2; i++) {
            m->payload.memory.regions[i].guest_phys_addr = 0x100000ull * (uint64_t)i;
            m->payload.memory.regions[i].memory_size = 0x100000;
            m->payload.memory.regions[i].userspace_addr = 0x7f0000000000ull + 0x100000ull * i;
        }
        break;
    case VHU_PL_CONFIG:
        m->payload.config.offset = 0;
        m->payload.config.size = 4;
        break;
    case VHU_PL_STATE:
        m->payload.state.index = NQ - 1;
        break;
    case VHU_PL_ADDR:
        m->payload.addr.index = NQ - 1;
        break;
    case VHU_PL_U64:
    case VHU_PL_AREA:
        m->payload.u64 = vring_ref(info->id, backend) == VRING_U64 ? NQ - 1 : 0x1234;
        break;
    default:
        break;
    }
    for (unsigned i = 0; i < VHOST_USER_MAX_FDS; i++)
        m->fds[i] = -1;
    m->nfds = good_nfds(info->fds);
    for (unsigned i = 0; i < m->nfds; i++)
        m->fds[i] = 900 + (int)i;
}

static void set_index(struct vhu_msg *m, enum vhu_payload pl, uint32_t index)
{
    if (pl == VHU_PL_ADDR)
        m->payload.addr.index = index;
    else
        m->payload.state.index = index;
}

typedef int validate_fn(const struct vhu_msg *m, const struct vhu_msg_ctx *ctx, const char **why);

/* Expect `err` from validation, with a reason. */
#define EXPECT_INVALID(v, m, ctx, err)                  \
    do {                                                \
        const char *why_ = NULL;                        \
        ASSERT_ERR(-(err), (v)((m), (ctx), &why_));     \
        ASSERT(why_ != NULL && why_[0] != '\0');        \
    } while (0)

#define EXPECT_VALID(v, m, ctx)                         \
    do {                                                \
        const char *why_ = NULL;                        \
        int r_ = (v)((m), (ctx), &why_);                \
        if (r_ != 0)                                    \
            FAIL_AT("expected valid, got %d (%s)", r_, why_ ? why_ : "?"); \
    } while (0)

/*
 * The whole policy of one row: the table entry matches the list, a well-formed message passes,
 * and every way of breaking it fails with the documented errno.
 */
static void check_row(uint32_t id, bool backend, const char *name, enum vhu_payload pl,
                      enum vhu_fds_policy fdp, bool reply, int pf)
{
    const struct vhu_msg_info *info = backend ? vhu_backend_msg_info(id) : vhu_msg_info(id);
    validate_fn *v = backend ? vhu_backend_msg_validate : vhu_msg_validate;
    struct vhu_msg_ctx ctx = {.protocol_features = pf >= 0 ? VHU_BIT(pf) : 0, .num_queues = NQ};
    struct vhu_msg_ctx c2;
    struct vhu_msg m;
    uint32_t good;
    unsigned nf;

    ASSERT(info != NULL);
    ASSERT_EQ(info->id, id);
    ASSERT(strcmp(info->name, name) == 0);
    ASSERT_EQ(info->payload, pl);
    ASSERT_EQ(info->fds, fdp);
    ASSERT_EQ(info->always_reply, reply);
    ASSERT_EQ(info->pfeature, pf);
    if (!backend)
        ASSERT(strcmp(vhu_msg_name(id), name) == 0);

    /* Well formed, with exactly the row's feature (and with every feature). */
    make_valid(info, backend, &m);
    EXPECT_VALID(v, &m, &ctx);
    c2 = ctx;
    c2.protocol_features = ~0ull & ~VHU_BIT(VHOST_USER_PROTOCOL_F_XEN_MMAP);
    EXPECT_VALID(v, &m, &c2);
    m.hdr.flags |= VHOST_USER_NEED_REPLY_MASK;
    EXPECT_VALID(v, &m, &ctx);

    /* Header flags. */
    m.hdr.flags = 0;
    EXPECT_INVALID(v, &m, &ctx, EPROTO);
    m.hdr.flags = 2;
    EXPECT_INVALID(v, &m, &ctx, EPROTO);
    m.hdr.flags = 3;
    EXPECT_INVALID(v, &m, &ctx, EPROTO);
    m.hdr.flags = VHOST_USER_VERSION | VHOST_USER_REPLY_MASK;
    EXPECT_INVALID(v, &m, &ctx, EPROTO);
    m.hdr.flags = VHOST_USER_VERSION;

    /* Protocol feature. */
    if (pf >= 0) {
        const char *why = NULL;
        c2 = ctx;
        c2.protocol_features = ~VHU_BIT(pf);
        ASSERT_ERR(-EPERM, v(&m, &c2, &why));
        ASSERT(why != NULL && strstr(why, "not negotiated") != NULL);
        c2.protocol_features = 0;
        EXPECT_INVALID(v, &m, &c2, EPERM);
    } else {
        c2 = ctx;
        c2.protocol_features = 0;
        EXPECT_VALID(v, &m, &c2);
    }

    /* Payload size. */
    good = m.hdr.size;
    if (pl == VHU_PL_ANY) {
        m.hdr.size = 4096;
        EXPECT_VALID(v, &m, &ctx);
        m.hdr.size = 0;
        EXPECT_VALID(v, &m, &ctx);
        m.hdr.size = 4097;
        EXPECT_INVALID(v, &m, &ctx, EINVAL);
    } else {
        const uint32_t bad[] = {good + 1, good ? good - 1 : 1, good ? 0 : 8, 4096, 4097,
                                UINT32_MAX};
        for (size_t i = 0; i < VHU_ARRAY_SIZE(bad); i++) {
            m.hdr.size = bad[i];
            EXPECT_INVALID(v, &m, &ctx, EINVAL);
        }
    }
    m.hdr.size = good;
    EXPECT_VALID(v, &m, &ctx);

    /* Fds. */
    nf = m.nfds;
    if (fdp != VHU_FDS_ANY) {
        m.nfds = nf + 1; /* one too many; for NONE: an fd where none belongs */
        m.fds[nf] = 950;
        EXPECT_INVALID(v, &m, &ctx, EBADF);
    }
    if (fdp == VHU_FDS_ONE || fdp == VHU_FDS_VRING || fdp == VHU_FDS_MEMTABLE) {
        m.nfds = nf - 1;
        EXPECT_INVALID(v, &m, &ctx, EBADF);
    }
    if (fdp == VHU_FDS_OPT || fdp == VHU_FDS_ANY) {
        m.nfds = 0;
        EXPECT_VALID(v, &m, &ctx);
    }
    m.nfds = VHOST_USER_MAX_FDS + 1;
    EXPECT_INVALID(v, &m, &ctx, EBADF);
    m.nfds = UINT32_MAX;
    EXPECT_INVALID(v, &m, &ctx, EBADF);
    make_valid(info, backend, &m);

    /* Queue index. */
    switch (vring_ref(id, backend)) {
    case VRING_INDEX:
        ASSERT(pl == VHU_PL_STATE || pl == VHU_PL_ADDR);
        set_index(&m, pl, NQ);
        EXPECT_INVALID(v, &m, &ctx, ERANGE);
        set_index(&m, pl, UINT32_MAX);
        EXPECT_INVALID(v, &m, &ctx, ERANGE);
        set_index(&m, pl, 0);
        EXPECT_VALID(v, &m, &ctx);
        c2 = ctx;
        c2.num_queues = 0;
        EXPECT_INVALID(v, &m, &c2, ERANGE);
        break;
    case VRING_U64:
        ASSERT_EQ(fdp, VHU_FDS_VRING);
        m.payload.u64 = NQ;
        EXPECT_INVALID(v, &m, &ctx, ERANGE);
        m.payload.u64 = 0xff;
        EXPECT_INVALID(v, &m, &ctx, ERANGE);
        m.payload.u64 = 0;
        EXPECT_VALID(v, &m, &ctx);
        /* NOFD: no fd allowed, index still checked. */
        m.payload.u64 = VHOST_USER_VRING_NOFD_MASK | 1;
        m.nfds = 0;
        EXPECT_VALID(v, &m, &ctx);
        m.payload.u64 = VHOST_USER_VRING_NOFD_MASK | NQ;
        EXPECT_INVALID(v, &m, &ctx, ERANGE);
        m.payload.u64 = VHOST_USER_VRING_NOFD_MASK | 1;
        m.nfds = 1;
        EXPECT_INVALID(v, &m, &ctx, EBADF);
        /* Reserved bits above NOFD. */
        m.payload.u64 = 1 | (1ull << 9);
        EXPECT_INVALID(v, &m, &ctx, EINVAL);
        m.payload.u64 = 1 | (1ull << 63);
        EXPECT_INVALID(v, &m, &ctx, EINVAL);
        break;
    case NOT_VRING:
        /* A message that addresses no vring ignores num_queues. */
        c2 = ctx;
        c2.num_queues = 0;
        EXPECT_VALID(v, &m, &c2);
        break;
    }
}

/* One test per row of each table, generated from the list itself. */
#define X(n, id, pl, fds, reply, pf)                                                     \
    TEST(row_##n)                                                                        \
    {                                                                                    \
        check_row(id, false, #n, VHU_PL_##pl, VHU_FDS_##fds, reply, pf);                 \
    }
VHU_MSG_LIST(X)
#undef X
#define X(n, id, pl, fds, reply, pf)                                                     \
    TEST(row_##n)                                                                        \
    {                                                                                    \
        check_row(id, true, #n, VHU_PL_##pl, VHU_FDS_##fds, reply, pf);                  \
    }
VHU_BACKEND_MSG_LIST(X)
#undef X

/* ---------------------------------------------------------------------------------------- */
/* Tables                                                                                     */
/* ---------------------------------------------------------------------------------------- */

TEST(table_lookup)
{
    struct vhu_msg m;
    struct vhu_msg_ctx ctx = {.protocol_features = ~0ull, .num_queues = NQ};

    ASSERT(vhu_msg_info(0) == NULL);
    ASSERT(vhu_msg_info(46) == NULL);
    ASSERT(vhu_msg_info(UINT32_MAX) == NULL);
    ASSERT(vhu_backend_msg_info(0) == NULL);
    ASSERT(vhu_backend_msg_info(11) == NULL);
    ASSERT(strcmp(vhu_msg_name(5), "SET_MEM_TABLE") == 0);
    ASSERT(strcmp(vhu_msg_name(0), "UNKNOWN") == 0);
    ASSERT(strcmp(vhu_msg_name(1000), "UNKNOWN") == 0);
    /* Every id 1..45 and 1..10 is defined (no holes in the spec's numbering). */
    for (uint32_t id = 1; id < 46; id++)
        ASSERT(vhu_msg_info(id) != NULL && vhu_msg_info(id)->id == id);
    for (uint32_t id = 1; id < 11; id++)
        ASSERT(vhu_backend_msg_info(id) != NULL && vhu_backend_msg_info(id)->id == id);

    vhu_msg_init(&m, 0, VHOST_USER_VERSION, 0);
    EXPECT_INVALID(vhu_msg_validate, &m, &ctx, ENOSYS);
    m.hdr.request = 46;
    EXPECT_INVALID(vhu_msg_validate, &m, &ctx, ENOSYS);
    m.hdr.request = 11;
    EXPECT_INVALID(vhu_backend_msg_validate, &m, &ctx, ENOSYS);
    m.hdr.request = 0xdeadbeef;
    EXPECT_INVALID(vhu_backend_msg_validate, &m, &ctx, ENOSYS);
}

/* Rows whose policy the spec decides in a way that is easy to get wrong. */
TEST(table_spec_facts)
{
    /* vhost-user.rst "Communication": requests that always reply. */
    const uint32_t replies[] = {VHOST_USER_GET_FEATURES, VHOST_USER_GET_PROTOCOL_FEATURES,
                                VHOST_USER_GET_VRING_BASE, VHOST_USER_GET_VRING_BASE_SKIP_DRAIN,
                                VHOST_USER_SET_LOG_BASE, VHOST_USER_GET_INFLIGHT_FD};

    for (size_t i = 0; i < VHU_ARRAY_SIZE(replies); i++)
        ASSERT(vhu_msg_info(replies[i])->always_reply);
    ASSERT(!vhu_msg_info(VHOST_USER_SET_VRING_KICK)->always_reply);
    /* REM_MEM_REG: no fd SHOULD be sent, one MAY be (and is closed). */
    ASSERT_EQ(vhu_msg_info(VHOST_USER_REM_MEM_REG)->fds, VHU_FDS_OPT);
    /* Host notifier: bit 8 of the area's u64 is the invalid-fd flag, as for KICK/CALL/ERR. */
    ASSERT_EQ(vhu_backend_msg_info(VHOST_USER_BACKEND_VRING_HOST_NOTIFIER_MSG)->fds,
              VHU_FDS_VRING);
    /* GET/SET_PROTOCOL_FEATURES are gated by virtio bit 30, not by a protocol feature. */
    ASSERT_EQ(vhu_msg_info(VHOST_USER_GET_PROTOCOL_FEATURES)->pfeature, -1);
    ASSERT_EQ(vhu_msg_info(VHOST_USER_SET_PROTOCOL_FEATURES)->pfeature, -1);
    /* Every STATE/ADDR request addresses a vring (the validator relies on it). */
    for (uint32_t id = 1; id < VHOST_USER_MAX_REQUEST; id++) {
        enum vhu_payload pl = vhu_msg_info(id)->payload;
        ASSERT_EQ(pl == VHU_PL_STATE || pl == VHU_PL_ADDR, vring_ref(id, false) == VRING_INDEX);
        ASSERT_EQ(vhu_msg_info(id)->fds == VHU_FDS_VRING, vring_ref(id, false) == VRING_U64);
    }
    for (uint32_t id = 1; id < VHOST_USER_BACKEND_MAX_REQUEST; id++) {
        enum vhu_payload pl = vhu_backend_msg_info(id)->payload;
        ASSERT_EQ(pl == VHU_PL_STATE, vring_ref(id, true) == VRING_INDEX);
    }
}

TEST(wire_layout)
{
    ASSERT_EQ(sizeof(struct vhost_user_hdr), 12);
    ASSERT_EQ(sizeof(struct vhost_iotlb_msg), 32);
    ASSERT_EQ(offsetof(struct vhost_iotlb_msg, perm), 24);
    ASSERT_EQ(offsetof(struct vhost_iotlb_msg, type), 25);
    ASSERT_EQ(sizeof(struct vhost_user_inflight), 24);
    ASSERT_EQ(offsetof(struct vhost_user_inflight, num_queues), 16);
    ASSERT_EQ(offsetof(struct vhost_user_inflight, queue_size), 18);
    ASSERT_EQ(offsetof(struct vhost_user_memory, regions), 8);
    ASSERT_EQ(offsetof(struct vhost_user_mem_reg, region), 8);
    ASSERT_EQ(offsetof(struct vhost_user_config, region), 12);
    ASSERT_EQ(offsetof(struct vhost_user_mmap, fd_offset), 8);
    ASSERT_EQ(offsetof(struct vhost_vring_addr, desc_user_addr), 8);
    ASSERT_EQ(offsetof(struct vhost_vring_addr, log_guest_addr), 32);
    ASSERT_EQ(sizeof(union vhost_user_payload), 4096);
}

/* ---------------------------------------------------------------------------------------- */
/* Variable-size payloads                                                                     */
/* ---------------------------------------------------------------------------------------- */

static void mem_table(struct vhu_msg *m, uint32_t nregions, uint32_t stride, unsigned nfds)
{
    vhu_msg_init(m, VHOST_USER_SET_MEM_TABLE, VHOST_USER_VERSION, 8 + nregions * stride);
    m->payload.memory.nregions = nregions;
    m->nfds = nfds;
    for (unsigned i = 0; i < nfds; i++)
        m->fds[i] = 900 + (int)i;
}

TEST(memtable)
{
    struct vhu_msg_ctx ctx = {.num_queues = NQ};
    struct vhu_msg m;

    for (uint32_t n = 1; n <= 8; n++) {
        mem_table(&m, n, 32, n);
        EXPECT_VALID(vhu_msg_validate, &m, &ctx);
    }
    mem_table(&m, 0, 32, 0);
    EXPECT_INVALID(vhu_msg_validate, &m, &ctx, EINVAL);
    mem_table(&m, 9, 32, 8);
    EXPECT_INVALID(vhu_msg_validate, &m, &ctx, EINVAL);
    mem_table(&m, UINT32_MAX, 32, 8);
    m.hdr.size = 8 + 8 * 32;
    EXPECT_INVALID(vhu_msg_validate, &m, &ctx, EINVAL);
    /* hdr.size must be exactly the regions in use. */
    mem_table(&m, 2, 32, 2);
    m.hdr.size = 8 + 3 * 32;
    EXPECT_INVALID(vhu_msg_validate, &m, &ctx, EINVAL);
    m.hdr.size = 8 + 8 * 32; /* the whole struct, as some old frontends might */
    EXPECT_INVALID(vhu_msg_validate, &m, &ctx, EINVAL);
    m.hdr.size = 4; /* not even the header */
    EXPECT_INVALID(vhu_msg_validate, &m, &ctx, EINVAL);
    /* One fd per region. */
    mem_table(&m, 2, 32, 1);
    EXPECT_INVALID(vhu_msg_validate, &m, &ctx, EBADF);
    mem_table(&m, 2, 32, 3);
    EXPECT_INVALID(vhu_msg_validate, &m, &ctx, EBADF);
    mem_table(&m, 2, 32, 0);
    EXPECT_INVALID(vhu_msg_validate, &m, &ctx, EBADF);
}

TEST(memtable_xen_mmap)
{
    struct vhu_msg_ctx ctx = {.num_queues = NQ};
    struct vhu_msg_ctx xen = {
        .protocol_features = VHU_BIT(VHOST_USER_PROTOCOL_F_XEN_MMAP) |
                             VHU_BIT(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS),
        .num_queues = NQ,
    };
    struct vhu_msg m;

    ASSERT_EQ(vhu_msg_region_size(&ctx), 32);
    ASSERT_EQ(vhu_msg_region_size(&xen), 40);
    /* vhost-user.rst: with XEN_MMAP each region carries xen mmap flags and domid. */
    mem_table(&m, 3, 40, 3);
    EXPECT_VALID(vhu_msg_validate, &m, &xen);
    EXPECT_INVALID(vhu_msg_validate, &m, &ctx, EINVAL);
    mem_table(&m, 3, 32, 3);
    EXPECT_INVALID(vhu_msg_validate, &m, &xen, EINVAL);
    mem_table(&m, 8, 40, 8);
    EXPECT_VALID(vhu_msg_validate, &m, &xen);

    vhu_msg_init(&m, VHOST_USER_ADD_MEM_REG, VHOST_USER_VERSION, 48);
    m.nfds = 1;
    m.fds[0] = 900;
    EXPECT_VALID(vhu_msg_validate, &m, &xen);
    m.hdr.size = 40;
    EXPECT_INVALID(vhu_msg_validate, &m, &xen, EINVAL);
}

static void config_msg(struct vhu_msg *m, uint32_t offset, uint32_t size, uint32_t hdr_size)
{
    vhu_msg_init(m, VHOST_USER_SET_CONFIG, VHOST_USER_VERSION, hdr_size);
    m->payload.config.offset = offset;
    m->payload.config.size = size;
}

TEST(config)
{
    struct vhu_msg_ctx ctx = {.protocol_features = VHU_BIT(VHOST_USER_PROTOCOL_F_CONFIG),
                              .num_queues = NQ};
    struct vhu_msg m;

    config_msg(&m, 0, 256, 12 + 256);
    EXPECT_VALID(vhu_msg_validate, &m, &ctx);
    config_msg(&m, 252, 4, 16);
    EXPECT_VALID(vhu_msg_validate, &m, &ctx);
    config_msg(&m, 0, 0, 12);
    EXPECT_VALID(vhu_msg_validate, &m, &ctx);
    m.hdr.request = VHOST_USER_GET_CONFIG;
    EXPECT_VALID(vhu_msg_validate, &m, &ctx);

    config_msg(&m, 0, 257, 12 + 257);
    EXPECT_INVALID(vhu_msg_validate, &m, &ctx, EINVAL);
    config_msg(&m, 253, 4, 16);
    EXPECT_INVALID(vhu_msg_validate, &m, &ctx, EINVAL);
    /* offset + size wraps in 32 bits. */
    config_msg(&m, UINT32_MAX - 3, 8, 20);
    EXPECT_INVALID(vhu_msg_validate, &m, &ctx, EINVAL);
    config_msg(&m, 0, UINT32_MAX, 20);
    EXPECT_INVALID(vhu_msg_validate, &m, &ctx, EINVAL);
    /* hdr.size must be 12 + size. */
    config_msg(&m, 0, 4, 17);
    EXPECT_INVALID(vhu_msg_validate, &m, &ctx, EINVAL);
    config_msg(&m, 0, 8, 16);
    EXPECT_INVALID(vhu_msg_validate, &m, &ctx, EINVAL);
    config_msg(&m, 0, 0, 11);
    EXPECT_INVALID(vhu_msg_validate, &m, &ctx, EINVAL);
    config_msg(&m, 0, 0, 0);
    EXPECT_INVALID(vhu_msg_validate, &m, &ctx, EINVAL);
}

TEST(vring_kick_u64)
{
    struct vhu_msg_ctx ctx = {.num_queues = 256};
    struct vhu_msg m;

    vhu_msg_init(&m, VHOST_USER_SET_VRING_KICK, VHOST_USER_VERSION, 8);
    m.payload.u64 = 255;
    m.nfds = 1;
    m.fds[0] = 900;
    EXPECT_VALID(vhu_msg_validate, &m, &ctx);
    /* NOFD with an fd. */
    m.payload.u64 = VHOST_USER_VRING_NOFD_MASK | 3;
    EXPECT_INVALID(vhu_msg_validate, &m, &ctx, EBADF);
    m.nfds = 0;
    EXPECT_VALID(vhu_msg_validate, &m, &ctx);
    /* No NOFD and no fd. */
    m.payload.u64 = 3;
    EXPECT_INVALID(vhu_msg_validate, &m, &ctx, EBADF);
    /* Stray high bits, with and without an fd. */
    for (unsigned bit = 9; bit < 64; bit++) {
        m.payload.u64 = 3 | VHOST_USER_VRING_NOFD_MASK | (1ull << bit);
        m.nfds = 0;
        EXPECT_INVALID(vhu_msg_validate, &m, &ctx, EINVAL);
        m.payload.u64 = 3 | (1ull << bit);
        m.nfds = 1;
        EXPECT_INVALID(vhu_msg_validate, &m, &ctx, EINVAL);
    }
}

TEST(validate_leaves_fds_alone)
{
    struct vhu_msg_ctx ctx = {.num_queues = NQ};
    struct vhu_msg m;
    int efd = vhu_eventfd_new();

    ASSERT(efd >= 0);
    vhu_msg_init(&m, VHOST_USER_SET_OWNER, VHOST_USER_VERSION, 0);
    m.fds[0] = efd;
    m.nfds = 1;
    EXPECT_INVALID(vhu_msg_validate, &m, &ctx, EBADF);
    ASSERT_EQ(m.nfds, 1);
    ASSERT_EQ(m.fds[0], efd);
    ASSERT(fcntl(efd, F_GETFD) >= 0);
    vhu_msg_close_fds(&m);
    ASSERT_EQ(m.nfds, 0);
    ASSERT_EQ(m.fds[0], -1);
    ASSERT(fcntl(efd, F_GETFD) < 0 && errno == EBADF);
}
