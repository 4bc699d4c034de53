/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The message tables (expanded from VHU_MSG_LIST / VHU_BACKEND_MSG_LIST) and the validator every
 * message goes through before a handler sees it. Everything here is pure: no fds are touched, no
 * I/O, no logging; the caller logs `why` once and drops the connection.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/vhost_user.h"
#include "vhu/util.h"

/* Wire sizes, pinned: a change here is a protocol break (vhost-user.rst "Message Specification"). */
_Static_assert(sizeof(struct vhost_user_hdr) == 12, "header");
_Static_assert(sizeof(struct vhost_vring_state) == 8, "vring state");
_Static_assert(sizeof(struct vhost_vring_addr) == 40, "vring addr");
_Static_assert(sizeof(struct vhost_user_memory_region) == VHOST_USER_REGION_SIZE, "region");
_Static_assert(sizeof(struct vhost_user_memory) == 8 + 8 * 32, "memory table");
_Static_assert(sizeof(struct vhost_user_mem_reg) == 40, "single region");
_Static_assert(sizeof(struct vhost_user_log) == 16, "log");
_Static_assert(sizeof(struct vhost_iotlb_msg) == 32, "iotlb (QEMU sends the unpacked kernel struct)");
_Static_assert(sizeof(struct vhost_user_config) == VHOST_USER_CONFIG_HDR_SIZE + 256, "config");
_Static_assert(sizeof(struct vhost_user_inflight) == 24, "inflight (QEMU's struct is unpacked)");
_Static_assert(sizeof(struct vhost_user_vring_area) == 24, "vring area");
_Static_assert(sizeof(struct vhost_user_transfer_state) == 8, "transfer state");
_Static_assert(sizeof(struct vhost_user_mmap) == 40, "mmap");
_Static_assert(sizeof(union vhost_user_payload) == 4096, "payload union");
_Static_assert(offsetof(struct vhost_user_vring_area, u64) == 0, "VRING fds policy reads u64 at 0");
_Static_assert(offsetof(struct vhost_user_config, region) == VHOST_USER_CONFIG_HDR_SIZE, "config");
_Static_assert(VHOST_USER_XEN_REGION_SIZE * VHOST_MEMORY_BASELINE_NREGIONS + 8 <=
                   sizeof(union vhost_user_payload),
               "a XEN_MMAP memory table fits the payload");

/* Every row's protocol feature is a real bit (or -1). */
#define X(name, id, pl, fds, reply, pf) \
    _Static_assert((pf) >= -1 && (pf) < VHOST_USER_PROTOCOL_F_NBITS, #name " feature bit");
VHU_MSG_LIST(X)
VHU_BACKEND_MSG_LIST(X)
#undef X

/* Indexed by id; a hole (name == NULL) is an unknown id. Duplicate ids trip -Woverride-init. */
#define X(n, i, pl, f, r, pf)                                                                   \
    [i] = {.name = #n, .id = i, .payload = VHU_PL_##pl, .fds = VHU_FDS_##f, .always_reply = r, \
           .pfeature = pf},
static const struct vhu_msg_info msg_table[VHOST_USER_MAX_REQUEST] = {VHU_MSG_LIST(X)};
static const struct vhu_msg_info backend_msg_table[VHOST_USER_BACKEND_MAX_REQUEST] = {
    VHU_BACKEND_MSG_LIST(X)};
#undef X

static const struct vhu_msg_info *lookup(const struct vhu_msg_info *table, size_t n, uint32_t id)
{
    if (id >= n || !table[id].name)
        return NULL;
    return &table[id];
}

VHU_EXPORT const struct vhu_msg_info *vhu_msg_info(uint32_t id)
{
    return lookup(msg_table, VHU_ARRAY_SIZE(msg_table), id);
}

VHU_EXPORT const struct vhu_msg_info *vhu_backend_msg_info(uint32_t id)
{
    return lookup(backend_msg_table, VHU_ARRAY_SIZE(backend_msg_table), id);
}

VHU_EXPORT const char *vhu_msg_name(uint32_t id)
{
    const struct vhu_msg_info *info = vhu_msg_info(id);

    return info ? info->name : "UNKNOWN";
}

/* One static reason per protocol feature, so the log line names the missing bit. */
#define PF(name) [VHOST_USER_PROTOCOL_F_##name] = "protocol feature " #name " not negotiated"
static const char *const pf_missing[VHOST_USER_PROTOCOL_F_NBITS] = {
    PF(MQ),
    PF(LOG_SHMFD),
    PF(RARP),
    PF(REPLY_ACK),
    PF(NET_MTU),
    PF(BACKEND_REQ),
    PF(CROSS_ENDIAN),
    PF(CRYPTO_SESSION),
    PF(PAGEFAULT),
    PF(CONFIG),
    PF(BACKEND_SEND_FD),
    PF(HOST_NOTIFIER),
    PF(INFLIGHT_SHMFD),
    PF(RESET_DEVICE),
    PF(INBAND_NOTIFICATIONS),
    PF(CONFIGURE_MEM_SLOTS),
    PF(STATUS),
    PF(XEN_MMAP),
    PF(SHARED_OBJECT),
    PF(DEVICE_STATE),
    PF(GET_VRING_BASE_INFLIGHT),
    PF(GPA_ADDRESSES),
    PF(SHMEM),
    PF(GET_VRING_BASE_SKIP_DRAIN),
};
#undef PF

static bool has_pf(const struct vhu_msg_ctx *ctx, int bit)
{
    return bit >= 0 && bit < 64 && (ctx->protocol_features & VHU_BIT(bit)) != 0;
}

VHU_EXPORT uint32_t vhu_msg_region_size(const struct vhu_msg_ctx *ctx)
{
    /* vhost-user.rst "Memory region description": XEN_MMAP appends xen mmap flags + domid. */
    return has_pf(ctx, VHOST_USER_PROTOCOL_F_XEN_MMAP) ? VHOST_USER_XEN_REGION_SIZE
                                                       : VHOST_USER_REGION_SIZE;
}

#define FAIL(err, reason)   \
    do {                    \
        *why = (reason);    \
        return -(err);      \
    } while (0)

/* Exact payload size of the fixed-size kinds; 0 for NONE; UINT32_MAX for the variable kinds. */
static uint32_t fixed_size(enum vhu_payload pl, const struct vhu_msg_ctx *ctx)
{
    switch (pl) {
    case VHU_PL_NONE:
        return 0;
    case VHU_PL_U64:
        return sizeof(uint64_t);
    case VHU_PL_STATE:
        return sizeof(struct vhost_vring_state);
    case VHU_PL_ADDR:
        return sizeof(struct vhost_vring_addr);
    case VHU_PL_MEMREG:
        return sizeof(uint64_t) + vhu_msg_region_size(ctx);
    case VHU_PL_LOG:
        return sizeof(struct vhost_user_log);
    case VHU_PL_IOTLB:
        return sizeof(struct vhost_iotlb_msg);
    case VHU_PL_INFLIGHT:
        return sizeof(struct vhost_user_inflight);
    case VHU_PL_AREA:
        return sizeof(struct vhost_user_vring_area);
    case VHU_PL_UUID:
        return 16;
    case VHU_PL_TRANSFER:
        return sizeof(struct vhost_user_transfer_state);
    case VHU_PL_MMAP:
        return sizeof(struct vhost_user_mmap);
    case VHU_PL_MEMORY:
    case VHU_PL_CONFIG:
    case VHU_PL_ANY:
        break;
    }
    return UINT32_MAX;
}

/* Payload size for the kind; *nregions gets the memory table's region count. */
static int check_size(const struct vhu_msg *m, const struct vhu_msg_info *info,
                      const struct vhu_msg_ctx *ctx, uint32_t *nregions, const char **why)
{
    uint32_t size = m->hdr.size;
    uint32_t want = fixed_size(info->payload, ctx);

    if (size > sizeof(m->payload))
        FAIL(EINVAL, "payload larger than any message");
    switch (info->payload) {
    case VHU_PL_MEMORY: {
        /*
         * vhost-user.rst SET_MEM_TABLE: up to 8 regions, one fd each. QEMU sends only the regions
         * in use (hdr.size = 8 + n * region) and refuses to send a table with no fd-backed
         * region, so 0 regions is never meaningful: removing memory is REM_MEM_REG's job.
         */
        const struct vhost_user_memory *mem = &m->payload.memory;
        if (size < offsetof(struct vhost_user_memory, regions))
            FAIL(EINVAL, "memory table shorter than its header");
        if (mem->nregions == 0)
            FAIL(EINVAL, "memory table with no regions");
        if (mem->nregions > VHOST_MEMORY_BASELINE_NREGIONS)
            FAIL(EINVAL, "memory table with more than 8 regions");
        if (size != offsetof(struct vhost_user_memory, regions) +
                        mem->nregions * vhu_msg_region_size(ctx))
            FAIL(EINVAL, "memory table size does not match nregions");
        *nregions = mem->nregions;
        return 0;
    }
    case VHU_PL_CONFIG: {
        const struct vhost_user_config *cfg = &m->payload.config;
        if (size < VHOST_USER_CONFIG_HDR_SIZE)
            FAIL(EINVAL, "config payload shorter than its header");
        if (cfg->size > VHOST_USER_MAX_CONFIG_SIZE)
            FAIL(EINVAL, "config size above 256");
        if ((uint64_t)cfg->offset + cfg->size > VHOST_USER_MAX_CONFIG_SIZE)
            FAIL(EINVAL, "config offset + size beyond 256");
        if (size != VHOST_USER_CONFIG_HDR_SIZE + cfg->size)
            FAIL(EINVAL, "config size does not match payload size");
        return 0;
    }
    case VHU_PL_ANY:
        return 0; /* bounded by the union above; the handler parses it */
    default:
        if (size != want)
            FAIL(EINVAL, "wrong payload size for this request");
        return 0;
    }
}

/* An fd-less transport: resources replace the fds of memory regions and vring notifiers; the
 * other fds have no equivalent, so their requests cannot be served. */
static int check_fdless(const struct vhu_msg *m, const struct vhu_msg_info *info, const char **why)
{
    if (m->nfds != 0)
        FAIL(EBADF, "fds on a transport that carries none");
    if (info->fds == VHU_FDS_ONE && info->id != VHOST_USER_ADD_MEM_REG)
        FAIL(EBADF, "request needs an fd this transport cannot carry");
    return 0;
}

static int check_fds(const struct vhu_msg *m, const struct vhu_msg_info *info,
                     const struct vhu_msg_ctx *ctx, uint32_t nregions, const char **why)
{
    unsigned n = m->nfds;

    if (ctx->fdless)
        return check_fdless(m, info, why);
    switch (info->fds) {
    case VHU_FDS_NONE:
        if (n != 0)
            FAIL(EBADF, "fds sent with a request that takes none");
        break;
    case VHU_FDS_ONE:
        if (n != 1)
            FAIL(EBADF, "request needs exactly one fd");
        break;
    case VHU_FDS_OPT:
        if (n > 1)
            FAIL(EBADF, "request takes at most one fd");
        break;
    case VHU_FDS_VRING:
        /* vhost-user.rst SET_VRING_KICK: bit 8 set when there is no fd in the ancillary data. */
        if (m->payload.u64 & VHOST_USER_VRING_NOFD_MASK) {
            if (n != 0)
                FAIL(EBADF, "fd sent with the NOFD flag set");
        } else if (n != 1) {
            FAIL(EBADF, "vring fd missing (and NOFD flag clear)");
        }
        break;
    case VHU_FDS_MEMTABLE:
        if (n != nregions)
            FAIL(EBADF, "memory table fd count does not match nregions");
        break;
    case VHU_FDS_ANY:
        break;
    }
    return 0;
}

static int check_vring(const struct vhu_msg *m, const struct vhu_msg_info *info,
                       const struct vhu_msg_ctx *ctx, const char **why)
{
    uint64_t index;

    if (info->fds == VHU_FDS_VRING) {
        /* Bits 0-7 index, bit 8 NOFD, the rest reserved. */
        uint64_t v = m->payload.u64;
        if (v & ~(uint64_t)(VHOST_USER_VRING_IDX_MASK | VHOST_USER_VRING_NOFD_MASK))
            FAIL(EINVAL, "reserved bits set in the vring u64");
        index = v & VHOST_USER_VRING_IDX_MASK;
    } else if (info->payload == VHU_PL_STATE) {
        index = m->payload.state.index;
    } else if (info->payload == VHU_PL_ADDR) {
        index = m->payload.addr.index;
    } else {
        return 0;
    }
    if (index >= ctx->num_queues)
        FAIL(ERANGE, "vring index out of range");
    return 0;
}

static int validate(const struct vhu_msg_info *info, const struct vhu_msg *m,
                    const struct vhu_msg_ctx *ctx, const char **why)
{
    uint32_t nregions = 0;
    int r;

    if (!info)
        FAIL(ENOSYS, "unknown request");
    if ((m->hdr.flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION)
        FAIL(EPROTO, "unsupported protocol version");
    if (m->hdr.flags & VHOST_USER_REPLY_MASK)
        FAIL(EPROTO, "reply flag set on a request");
    if (info->pfeature >= 0 && !has_pf(ctx, info->pfeature))
        FAIL(EPERM, pf_missing[info->pfeature] ? pf_missing[info->pfeature]
                                               : "required protocol feature not negotiated");
    if (m->nfds > VHOST_USER_MAX_FDS)
        FAIL(EBADF, "more than 8 fds");
    r = check_size(m, info, ctx, &nregions, why);
    if (r < 0)
        return r;
    r = check_fds(m, info, ctx, nregions, why);
    if (r < 0)
        return r;
    return check_vring(m, info, ctx, why);
}

VHU_EXPORT int vhu_msg_validate(const struct vhu_msg *m, const struct vhu_msg_ctx *ctx,
                                const char **why)
{
    return validate(vhu_msg_info(m->hdr.request), m, ctx, why);
}

VHU_EXPORT int vhu_backend_msg_validate(const struct vhu_msg *m, const struct vhu_msg_ctx *ctx,
                                        const char **why)
{
    return validate(vhu_backend_msg_info(m->hdr.request), m, ctx, why);
}
