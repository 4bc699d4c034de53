/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The vhost-user decoder: one frontend connection's protocol state over a device core. Every
 * message goes through vhu_session_dispatch(), which validates it against the message table
 * (VHU_MSG_LIST, src/proto) before any handler runs; a handler turns the message into typed core
 * calls (vhu/core.h): fds become memory mappings and notifiers here, and nowhere else. The
 * dispatcher answers what must be answered and closes every fd a handler did not take.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "decoder.h"
#include "vhu/core.h"
#include "vhu/device.h"
#include "vhu/log.h"
#include "vhu/transport.h"
#include "vhu/util.h"
#include "vhu/virtio.h"

struct vhu_session {
    struct vhu_backend *b;
    struct vhu_core *core;
    struct vhu_device *dev;
    const struct vhu_session_transport_ops *ops;
    void *conn;
    uint64_t offered_pf;          /* protocol features offered */
    uint64_t protocol_features;   /* acked protocol features */
    bool protocol_features_acked; /* SET_PROTOCOL_FEATURES seen */
    int backend_req_fd;
    /* inflight buffer (GET/SET_INFLIGHT_FD), mapped here and lent to the core */
    struct vhu_mem_mapping ifl;
    /* dirty log (SET_LOG_BASE), mapped here and lent to the core */
    struct vhu_mem_mapping log;
    /* device-state transfer (SET_DEVICE_STATE_FD): a LOAD's pipe, read at CHECK_DEVICE_STATE;
     * the outcome CHECK_DEVICE_STATE reports */
    int state_fd;
    int state_result;
    /* fd-less transports: the notifier resolved for the vring message being handled (on the
     * control thread, before the handler runs on the ring's), taken like a received fd */
    struct vhu_notifier *res_notifier;
    struct vhu_msg reply;
};

/* Handler result: < 0 drop the connection; 0 done (no reply payload); 1 s->reply is filled. */
typedef int vhu_handler_fn(struct vhu_session *s, struct vhu_msg *m);

/* The decoder's message table: who handles a request, and where. `ring`: the handler runs on
 * the thread owning the ring the message names (the core's calls inside then need no handoff
 * of their own); the validator has checked that ring index. */
struct vhu_handler {
    vhu_handler_fn *fn;
    bool ring;
};

static bool has_pf(const struct vhu_session *s, unsigned bit)
{
    return vhu_has_feature(s->protocol_features, bit);
}

static int take_fd(struct vhu_msg *m)
{
    int fd = m->fds[0];

    m->fds[0] = -1;
    return fd;
}

/* The ring a message names (only for payloads that name one; the validator checked it). */
static unsigned msg_ring(const struct vhu_msg *m, enum vhu_payload pl)
{
    switch (pl) {
    case VHU_PL_STATE:
        return m->payload.state.index;
    case VHU_PL_ADDR:
        return m->payload.addr.index;
    case VHU_PL_U64:
        return (unsigned)(m->payload.u64 & VHOST_USER_VRING_IDX_MASK);
    default:
        return 0;
    }
}

/* A notifier for the fd a SET_VRING_KICK/CALL/ERR carries, or NULL with VRING_NOFD; on an
 * fd-less transport the one resolved before the handler ran. */
static int msg_notifier(struct vhu_session *s, struct vhu_msg *m, struct vhu_notifier **out)
{
    char what[64];
    int r;

    *out = NULL;
    if (s->ops->fdless) {
        *out = s->res_notifier;
        s->res_notifier = NULL;
        return 0;
    }
    if (m->payload.u64 & VHOST_USER_VRING_NOFD_MASK)
        return 0;
    /* An eventfd, made non-blocking (vhu_notifier_eventfd_new says why): the ring's owner
     * thread signals it and must never wait for the frontend to read. */
    vhu_fd_describe(m->fds[0], what, sizeof(what));
    r = vhu_notifier_eventfd_new(take_fd(m), out);
    if (r == -EINVAL)
        vhu_err("%s: queue %u: the fd is %s, not an eventfd", vhu_msg_name(m->hdr.request),
                (unsigned)(m->payload.u64 & VHOST_USER_VRING_IDX_MASK), what);
    else if (r < 0)
        vhu_err("%s: queue %u: cannot use the fd (%s)", vhu_msg_name(m->hdr.request),
                (unsigned)(m->payload.u64 & VHOST_USER_VRING_IDX_MASK), strerror(-r));
    return r;
}

/* Protocol features the decoder implements for every device, plus those the device's ops call
 * for. */
static uint64_t default_protocol_features(const struct vhu_device *dev)
{
    uint64_t pf = vhu_feature(VHOST_USER_PROTOCOL_F_MQ) |
                  vhu_feature(VHOST_USER_PROTOCOL_F_REPLY_ACK) |
                  vhu_feature(VHOST_USER_PROTOCOL_F_BACKEND_REQ) |
                  vhu_feature(VHOST_USER_PROTOCOL_F_BACKEND_SEND_FD) |
                  vhu_feature(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS) |
                  vhu_feature(VHOST_USER_PROTOCOL_F_RESET_DEVICE) |
                  vhu_feature(VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD) |
                  vhu_feature(VHOST_USER_PROTOCOL_F_STATUS) |
                  vhu_feature(VHOST_USER_PROTOCOL_F_LOG_SHMFD);

    if (dev->config_size)
        pf |= vhu_feature(VHOST_USER_PROTOCOL_F_CONFIG);
    /* Device-specific messages: offered only to devices that handle them. */
    if (dev->ops->announce)
        pf |= vhu_feature(VHOST_USER_PROTOCOL_F_RARP);
    if (dev->ops->set_mtu)
        pf |= vhu_feature(VHOST_USER_PROTOCOL_F_NET_MTU);
    if (dev->state_size)
        pf |= vhu_feature(VHOST_USER_PROTOCOL_F_DEVICE_STATE);
    return pf;
}

VHU_EXPORT uint64_t vhu_backend_protocol_features(const struct vhu_backend *b)
{
    return default_protocol_features(vhu_backend_device(b)) &
           vhu_backend_transport_opts(b)->vu_protocol_mask;
}

VHU_EXPORT int vhu_backend_limit_protocol_features(struct vhu_backend *b, uint64_t mask)
{
    struct vhu_backend_transport_opts o = *vhu_backend_transport_opts(b);

    o.vu_protocol_mask = mask;
    return vhu_backend_set_transport_opts(b, &o);
}

/* ---------------------------------------------------------------------------------------- */
/* Handlers                                                                                   */
/* ---------------------------------------------------------------------------------------- */

static int reply_u64(struct vhu_session *s, struct vhu_msg *m, uint64_t v)
{
    vhu_msg_init(&s->reply, m->hdr.request, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK, 8);
    s->reply.payload.u64 = v;
    return 1;
}

static int reply_state(struct vhu_session *s, struct vhu_msg *m, uint32_t index, uint32_t num)
{
    vhu_msg_init(&s->reply, m->hdr.request, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK,
                 sizeof(struct vhost_vring_state));
    s->reply.payload.state.index = index;
    s->reply.payload.state.num = num;
    return 1;
}

/* Dirty logging (LOG_ALL) goes with the shared-memory log: vhu has no other kind. */
static uint64_t offered_features(const struct vhu_session *s)
{
    return vhu_core_features(s->core) | vhu_feature(VHOST_USER_F_PROTOCOL_FEATURES) |
           (vhu_has_feature(s->offered_pf, VHOST_USER_PROTOCOL_F_LOG_SHMFD)
                ? vhu_feature(VHOST_F_LOG_ALL)
                : 0);
}

static int h_get_features(struct vhu_session *s, struct vhu_msg *m)
{
    /* A full handshake starts here: protocol features are off until SET_PROTOCOL_FEATURES.
     * (QEMU asks for features again later in the same session; that changes nothing.) */
    if (!s->protocol_features_acked)
        s->protocol_features = 0;
    return reply_u64(s, m, offered_features(s));
}

static int h_set_features(struct vhu_session *s, struct vhu_msg *m)
{
    uint64_t f = m->payload.u64;
    uint64_t unknown = f & ~offered_features(s);
    int r;

    if (unknown) {
        vhu_err("SET_FEATURES: features 0x%llx were not offered", (unsigned long long)unknown);
        return -EINVAL;
    }
    /* Both bits are vhost-user's, not the device's: LOG_ALL becomes the core's log switch. */
    r = vhu_core_set_features(s->core, f & ~(vhu_feature(VHOST_USER_F_PROTOCOL_FEATURES) |
                                             vhu_feature(VHOST_F_LOG_ALL)));
    if (r < 0)
        return r;
    vhu_core_set_log_all(s->core, vhu_has_feature(f, VHOST_F_LOG_ALL));
    /* Without protocol features rings are enabled as soon as features are set. */
    if (!vhu_has_feature(f, VHOST_USER_F_PROTOCOL_FEATURES)) {
        for (unsigned i = 0; i < vhu_core_num_queues(s->core); i++)
            vhu_core_ring_enable(s->core, i, true);
    }
    return 0;
}

static int h_set_owner(struct vhu_session *s, struct vhu_msg *m)
{
    (void)s;
    (void)m;
    return 0;
}

static int h_reset(struct vhu_session *s, struct vhu_msg *m)
{
    (void)m;
    vhu_core_reset(s->core);
    return 0;
}

static int map_region(struct vhu_session *s, const struct vhost_user_memory_region *wr, int fd,
                      struct vhu_mem_region **out)
{
    struct vhu_mem_region_desc d = {
        .gpa = wr->guest_phys_addr,
        .size = wr->memory_size,
        .uva = wr->userspace_addr,
        .mmap_offset = wr->mmap_offset,
        .fd = fd,
    };
    int r;

    if (s->ops->fdless)
        return s->ops->region(s->conn, wr, out); /* the transport says why it failed */
    r = vhu_mem_region_map(&d, out);

    if (r < 0)
        vhu_err("cannot map region gpa 0x%llx size 0x%llx offset 0x%llx: %s",
                (unsigned long long)d.gpa, (unsigned long long)d.size,
                (unsigned long long)d.mmap_offset, strerror(-r));
    return r;
}

static int h_set_mem_table(struct vhu_session *s, struct vhu_msg *m)
{
    const struct vhost_user_memory *mt = &m->payload.memory;
    struct vhu_mem_region *regions[VHOST_MEMORY_BASELINE_NREGIONS];
    struct vhu_mem_table *t;
    unsigned n = 0;
    int r = 0;

    for (; n < mt->nregions; n++) {
        r = map_region(s, &mt->regions[n], m->fds[n], &regions[n]);
        if (r < 0)
            break;
    }
    if (r == 0) {
        r = vhu_mem_table_new(regions, n, &t);
        if (r < 0)
            vhu_err("SET_MEM_TABLE: regions overlap or wrap");
    }
    if (r < 0) {
        for (unsigned i = 0; i < n; i++)
            vhu_mem_region_free(regions[i]);
        return r;
    }
    /* The mappings keep the memory; the fds are closed by the dispatcher. */
    return vhu_core_set_mem(s->core, t);
}

static int h_get_max_mem_slots(struct vhu_session *s, struct vhu_msg *m)
{
    return reply_u64(s, m, VHU_MEM_MAX_SLOTS);
}

static int h_add_mem_reg(struct vhu_session *s, struct vhu_msg *m)
{
    struct vhu_mem_region *reg;
    struct vhu_mem_table *t;
    int r = map_region(s, &m->payload.memreg.region, m->fds[0], &reg);

    if (r < 0)
        return r;
    r = vhu_mem_table_add(vhu_core_mem(s->core), reg, &t);
    if (r < 0) {
        vhu_err("ADD_MEM_REG: region overlaps another or the table is full (%s)", strerror(-r));
        vhu_mem_region_free(reg);
        return r;
    }
    return vhu_core_set_mem(s->core, t);
}

static int h_rem_mem_reg(struct vhu_session *s, struct vhu_msg *m)
{
    const struct vhost_user_memory_region *wr = &m->payload.memreg.region;
    struct vhu_mem_table *t;
    int r = vhu_mem_table_remove(vhu_core_mem(s->core), wr->guest_phys_addr, wr->memory_size,
                                 wr->userspace_addr, &t);

    if (r < 0) {
        vhu_err("REM_MEM_REG: no region at gpa 0x%llx size 0x%llx",
                (unsigned long long)wr->guest_phys_addr, (unsigned long long)wr->memory_size);
        return r;
    }
    return vhu_core_set_mem(s->core, t);
}

static int h_set_vring_num(struct vhu_session *s, struct vhu_msg *m)
{
    uint32_t num = m->payload.state.num;

    if (num > UINT16_MAX) {
        vhu_err("SET_VRING_NUM: size %u outside 1..%u", num, s->dev->max_queue_size);
        return -EINVAL;
    }
    return vhu_core_ring_set_num(s->core, m->payload.state.index, (uint16_t)num);
}

static int h_set_vring_addr(struct vhu_session *s, struct vhu_msg *m)
{
    const struct vhost_vring_addr *wa = &m->payload.addr;
    /* QEMU sends its own virtual addresses (GPA_ADDRESSES is not offered). */
    struct vhu_ring_addr a = {
        .space = VHU_ADDR_UVA,
        .desc = wa->desc_user_addr,
        .driver = wa->avail_user_addr,
        .device = wa->used_user_addr,
        /* vhost-user.rst "Migration": the used ring is logged at log_guest_addr when the ring's
         * VHOST_VRING_F_LOG flag is set. */
        .log = (wa->flags & (1u << VHOST_VRING_F_LOG)) != 0,
        .log_device = wa->log_guest_addr,
    };

    return vhu_core_ring_set_addr(s->core, wa->index, &a);
}

static int h_set_vring_base(struct vhu_session *s, struct vhu_msg *m)
{
    return vhu_core_ring_set_base(s->core, m->payload.state.index, m->payload.state.num);
}

static int h_get_vring_base(struct vhu_session *s, struct vhu_msg *m)
{
    uint32_t idx = m->payload.state.index;
    uint32_t base = 0;

    /* vhost-user.rst: GET_VRING_BASE stops the ring; the kick fd is no longer used. */
    vhu_core_ring_stop(s->core, idx, &base);
    vhu_core_ring_set_kick(s->core, idx, NULL);
    return reply_state(s, m, idx, base);
}

static int h_set_vring_kick(struct vhu_session *s, struct vhu_msg *m)
{
    unsigned idx = (unsigned)(m->payload.u64 & VHOST_USER_VRING_IDX_MASK);
    struct vhu_notifier *kick;
    int r;

    vhu_core_ring_stop(s->core, idx, NULL);
    r = msg_notifier(s, m, &kick);
    if (r == 0)
        r = vhu_core_ring_set_kick(s->core, idx, kick);
    if (r < 0)
        return r;
    /* An fd-less transport's ring without a kick source is polled (vhu_session_poll()). */
    if (!kick && !s->ops->fdless) {
        vhu_err("queue %u: polling mode (no kick fd) is not supported", idx);
        return -ENOTSUP;
    }
    return vhu_core_ring_start(s->core, idx);
}

/* SET_VRING_CALL / SET_VRING_ERR: the fd (or none) becomes the ring's call or error sink. */
static int set_sink(struct vhu_session *s, struct vhu_msg *m,
                    int (*set)(struct vhu_core *, unsigned, struct vhu_notifier *))
{
    struct vhu_notifier *n;
    int r = msg_notifier(s, m, &n);

    if (r < 0)
        return r;
    return set(s->core, (unsigned)(m->payload.u64 & VHOST_USER_VRING_IDX_MASK), n);
}

static int h_set_vring_call(struct vhu_session *s, struct vhu_msg *m)
{
    return set_sink(s, m, vhu_core_ring_set_call);
}

static int h_set_vring_err(struct vhu_session *s, struct vhu_msg *m)
{
    return set_sink(s, m, vhu_core_ring_set_err);
}

static int h_get_protocol_features(struct vhu_session *s, struct vhu_msg *m)
{
    return reply_u64(s, m, s->offered_pf);
}

static int h_set_protocol_features(struct vhu_session *s, struct vhu_msg *m)
{
    uint64_t unknown = m->payload.u64 & ~s->offered_pf;

    if (unknown) {
        vhu_err("SET_PROTOCOL_FEATURES: 0x%llx were not offered", (unsigned long long)unknown);
        return -EINVAL;
    }
    s->protocol_features = m->payload.u64;
    s->protocol_features_acked = true;
    return 0;
}

static int h_get_queue_num(struct vhu_session *s, struct vhu_msg *m)
{
    /* QEMU's vhost-user-net reads this as queue pairs, other devices as queues. */
    return reply_u64(s, m, s->dev->queue_num_reply ? s->dev->queue_num_reply : s->dev->num_queues);
}

static int h_set_vring_enable(struct vhu_session *s, struct vhu_msg *m)
{
    uint32_t on = m->payload.state.num;

    if (on > 1) {
        vhu_err("SET_VRING_ENABLE: %u is neither 0 nor 1", on);
        return -EINVAL;
    }
    return vhu_core_ring_enable(s->core, m->payload.state.index, on);
}

/* Lend a freshly mapped buffer to the core; on success the old one is unmapped, on failure the
 * new one. */
static int inflight_attach(struct vhu_session *s, struct vhu_mem_mapping *map,
                           const struct vhost_user_inflight *in)
{
    int r = vhu_core_set_inflight_buffer(s->core, map->base, map->len, in->num_queues,
                                         in->queue_size);

    if (r < 0) {
        vhu_mem_unmap_fd(map);
        return r;
    }
    vhu_mem_unmap_fd(&s->ifl);
    s->ifl = *map;
    return 0;
}

/* The core's bounds, checked before anything is allocated or mapped for the buffer. */
static int inflight_check(struct vhu_session *s, const struct vhost_user_inflight *in)
{
    return vhu_core_inflight_check(s->core, in->num_queues, in->queue_size);
}

/* vhost-user.rst GET_INFLIGHT_FD: the back-end allocates the buffer and shares it; the front-end
 * keeps it across back-end restarts and hands it back with SET_INFLIGHT_FD. */
static int h_get_inflight_fd(struct vhu_session *s, struct vhu_msg *m)
{
    const struct vhost_user_inflight *in = &m->payload.inflight;
    struct vhost_user_inflight *out = &s->reply.payload.inflight;
    struct vhu_mem_mapping map;
    size_t size;
    int fd, r = inflight_check(s, in);

    if (r < 0)
        return r;
    /* The ring areas and, after them, the device-state area (docs/recovery.md). */
    size = vhu_core_inflight_size(s->core, in->num_queues, in->queue_size);
    /* Sealed before it is shared: the frontend can neither shrink it under our mapping nor
     * grow it, and hands the same fd back with SET_INFLIGHT_FD. */
    fd = vhu_memfd_new_sealed("vhu-inflight", size);
    if (fd < 0)
        return fd;
    r = vhu_mem_map_fd(fd, 0, size, &map);
    if (r == 0)
        r = inflight_attach(s, &map, in);
    if (r < 0) {
        close(fd);
        return r;
    }
    vhu_msg_init(&s->reply, m->hdr.request, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK,
                 m->hdr.size);
    *out = *in;
    out->mmap_size = size;
    out->mmap_offset = 0;
    s->reply.fds[0] = fd; /* closed by the dispatcher after sending */
    s->reply.nfds = 1;
    return 1;
}

static int h_set_inflight_fd(struct vhu_session *s, struct vhu_msg *m)
{
    const struct vhost_user_inflight *in = &m->payload.inflight;
    struct vhu_mem_mapping map;
    int r = inflight_check(s, in);

    if (r < 0)
        return r;
    /* The core checks the size against what the queues need (vhu_core_set_inflight_buffer). */
    if (in->mmap_size == 0 || in->mmap_size > (1ULL << 32) ||
        (r = vhu_mem_map_fd(m->fds[0], in->mmap_offset, in->mmap_size, &map)) < 0) {
        vhu_err("SET_INFLIGHT_FD: buffer of %llu bytes at %llu cannot be mapped (%s)",
                (unsigned long long)in->mmap_size, (unsigned long long)in->mmap_offset,
                strerror(r < 0 ? -r : EINVAL));
        return r < 0 ? r : -EINVAL;
    }
    return inflight_attach(s, &map, in);
}

/* The log covers at most 2^47 pages (512 TiB of guest memory); anything larger is a lie. */
#define LOG_MAX_BYTES (1ULL << 44)

/* vhost-user.rst SET_LOG_BASE (with LOG_SHMFD): the dirty bitmap the frontend reads while it
 * migrates, an fd + offset + size; sized to cover guest memory, sealed like every memfd we map.
 * The reply (an empty one, as QEMU reads it) says the new log is in use: the frontend frees the
 * old one after it. */
static int h_set_log_base(struct vhu_session *s, struct vhu_msg *m)
{
    const struct vhost_user_log *l = &m->payload.log;
    struct vhu_mem_mapping map;
    int r = 0; /* only read when the map was tried (GCC with ASan cannot tell) */

    if (s->ops->fdless)
        return -ENOTSUP;
    if (l->mmap_size == 0 || l->mmap_size > LOG_MAX_BYTES ||
        (r = vhu_mem_map_fd(m->fds[0], l->mmap_offset, l->mmap_size, &map)) < 0) {
        vhu_err("SET_LOG_BASE: log of %llu bytes at offset %llu is too large, empty or cannot "
                "be mapped (%s)",
                (unsigned long long)l->mmap_size, (unsigned long long)l->mmap_offset,
                strerror(l->mmap_size == 0 || l->mmap_size > LOG_MAX_BYTES ? EINVAL : -r));
        return -EINVAL;
    }
    /* Tests only (tests/guest/migrate.sh proves a backend that logs nothing fails a migration):
     * VHU_TEST_DIRTY_LOG_OFF=1 accepts the log and never writes it. */
    if (getenv("VHU_TEST_DIRTY_LOG_OFF")) {
        vhu_warn("SET_LOG_BASE: VHU_TEST_DIRTY_LOG_OFF is set: nothing will be logged");
        r = vhu_core_set_log(s->core, NULL, 0);
    } else {
        r = vhu_core_set_log(s->core, map.base, map.len);
    }
    if (r < 0) {
        vhu_mem_unmap_fd(&map);
        return r;
    }
    vhu_mem_unmap_fd(&s->log); /* no ring uses it any more */
    s->log = map;
    vhu_info("dirty log attached: %llu bytes (a migration is starting)",
             (unsigned long long)map.len);
    vhu_msg_init(&s->reply, m->hdr.request, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK, 0);
    return 1;
}

/* vhost-user.rst SET_LOG_FD: an eventfd signalled when the log has been modified. */
static int h_set_log_fd(struct vhu_session *s, struct vhu_msg *m)
{
    struct vhu_notifier *n;
    char what[64];
    int r;

    if (s->ops->fdless)
        return -ENOTSUP;
    vhu_fd_describe(m->fds[0], what, sizeof(what));
    r = vhu_notifier_eventfd_new(take_fd(m), &n);
    if (r < 0) {
        vhu_err("SET_LOG_FD: the fd is %s, not a usable eventfd (%s)", what, strerror(-r));
        return r;
    }
    vhu_core_set_log_notifier(s->core, n);
    return 0;
}

/* vhost-user.rst SET_DEVICE_STATE_FD reply: bits 0-7 an error, bit 8 "no fd of the back-end's
 * own" (we always use the front-end's). */
#define STATE_REPLY_NOFD (1u << 8)
enum { STATE_SAVE = 0, STATE_LOAD = 1, STATE_PHASE_STOPPED = 0 };

/* Write all of buf to a pipe the frontend reads; it holds far more than a device state. */
static int write_all(int fd, const uint8_t *buf, size_t len)
{
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * vhost-user.rst "Migrating back-end state" (DEVICE_STATE): SAVE writes the device's state
 * frame (vhu_core_state_export) into the frontend's pipe at once and closes it (the frontend
 * reads to EOF); LOAD keeps the pipe, which the frontend fills and closes before
 * CHECK_DEVICE_STATE, where it is read and imported. Only the STOPPED phase exists.
 */
static int h_set_device_state_fd(struct vhu_session *s, struct vhu_msg *m)
{
    const struct vhost_user_transfer_state *t = &m->payload.transfer;
    uint8_t buf[VHU_DEVICE_STATE_MAX + 64];
    int fd, n;

    if (s->ops->fdless)
        return -ENOTSUP;
    vhu_fd_close(&s->state_fd);
    if (t->phase != STATE_PHASE_STOPPED || t->direction > STATE_LOAD) {
        vhu_err("SET_DEVICE_STATE_FD: direction %u phase %u not supported", t->direction,
                t->phase);
        s->state_result = -EINVAL;
        return reply_u64(s, m, STATE_REPLY_NOFD | EINVAL);
    }
    fd = take_fd(m);
    if (t->direction == STATE_LOAD) {
        s->state_fd = fd;
        s->state_result = 0;
        return reply_u64(s, m, STATE_REPLY_NOFD);
    }
    n = vhu_core_state_export(s->core, buf, sizeof(buf));
    /* never wait for the frontend: a pipe it left full fails the transfer instead */
    s->state_result = n < 0 ? n : vhu_fd_set_nonblock(fd, true);
    if (s->state_result == 0)
        s->state_result = write_all(fd, buf, (size_t)n);
    if (n >= 0 && s->state_result < 0)
        vhu_err("SET_DEVICE_STATE_FD: cannot write the state: %s", strerror(-s->state_result));
    close(fd); /* EOF for the frontend */
    return reply_u64(s, m, STATE_REPLY_NOFD);
}

/* Read a LOAD's pipe to EOF without waiting: the frontend closed it before asking. */
static int read_state(int fd, uint8_t *buf, size_t cap, size_t *len)
{
    int r = vhu_fd_set_nonblock(fd, true);

    *len = 0;
    while (r == 0) {
        ssize_t n = read(fd, buf + *len, cap - *len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN ? -EPIPE : -errno; /* still open: the frontend is not done */
        if (n == 0)
            return 0;
        *len += (size_t)n;
        if (*len == cap)
            return -EFBIG;
    }
    return r;
}

static int h_check_device_state(struct vhu_session *s, struct vhu_msg *m)
{
    uint8_t buf[VHU_DEVICE_STATE_MAX + 64];
    size_t len;
    int r = s->state_result;

    if (s->ops->fdless)
        return -ENOTSUP;
    if (r == 0 && s->state_fd >= 0) {
        r = read_state(s->state_fd, buf, sizeof(buf), &len);
        if (r < 0)
            vhu_err("CHECK_DEVICE_STATE: the state cannot be read: %s", strerror(-r));
        else
            r = vhu_core_state_import(s->core, buf, len);
        vhu_fd_close(&s->state_fd);
    }
    s->state_result = 0;
    /* vhost-user.rst: 0 for success, anything else for a failed transfer. */
    return reply_u64(s, m, r < 0 ? 1 : 0);
}

/* vhost-user.rst SEND_RARP: the first 6 bytes of the u64 are the guest's MAC. */
static int h_send_rarp(struct vhu_session *s, struct vhu_msg *m)
{
    static const uint8_t zero[6];
    uint8_t mac[6];

    memcpy(mac, &m->payload.u64, sizeof(mac));
    if (!s->dev->ops->announce)
        return -ENOTSUP;
    if ((mac[0] & 1) || memcmp(mac, zero, sizeof(mac)) == 0) {
        vhu_err("SEND_RARP: %02x:%02x:%02x:%02x:%02x:%02x is not a unicast address", mac[0],
                mac[1], mac[2], mac[3], mac[4], mac[5]);
        return -EINVAL;
    }
    return s->dev->ops->announce(s->dev, mac);
}

/* vhost-user.rst NET_SET_MTU: with REPLY_ACK the ack says whether the MTU is valid. QEMU sends it
 * before SET_FEATURES of the same start, so VIRTIO_NET_F_MTU is not required to be acked yet. */
static int h_net_set_mtu(struct vhu_session *s, struct vhu_msg *m)
{
    int r;

    if (!s->dev->ops->set_mtu)
        return -ENOTSUP;
    r = s->dev->ops->set_mtu(s->dev, m->payload.u64);
    if (r < 0)
        vhu_err("NET_SET_MTU: the device cannot carry an MTU of %llu",
                (unsigned long long)m->payload.u64);
    return r;
}

/* The backend channel (BACKEND_REQ): vhu sends BACKEND_CONFIG_CHANGE_MSG on it
 * (session_config_changed()). */
static int h_set_backend_req_fd(struct vhu_session *s, struct vhu_msg *m)
{
    vhu_fd_replace(&s->backend_req_fd, take_fd(m));
    return 0;
}

static int h_get_config(struct vhu_session *s, struct vhu_msg *m)
{
    const struct vhost_user_config *c = &m->payload.config;
    struct vhost_user_config *rc = &s->reply.payload.config;
    uint32_t hdr_size = m->hdr.size;

    vhu_msg_init(&s->reply, m->hdr.request, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK,
                 hdr_size);
    rc->offset = c->offset;
    rc->size = c->size;
    rc->flags = c->flags;
    memset(rc->region, 0, c->size);
    /* vhost-user.rst: an empty reply payload tells the front-end the read failed. */
    if (vhu_core_get_config(s->core, c->offset, rc->region, c->size) < 0) {
        vhu_warn("GET_CONFIG offset %u size %u refused (config space is %u bytes)", c->offset,
                 c->size, s->dev->config_size);
        s->reply.hdr.size = 0;
    }
    return 1;
}

static int h_set_config(struct vhu_session *s, struct vhu_msg *m)
{
    const struct vhost_user_config *c = &m->payload.config;
    int r = vhu_core_set_config(s->core, c->offset, c->region, c->size);

    if (r == -EINVAL || r == -EPERM)
        vhu_err("SET_CONFIG offset %u size %u refused", c->offset, c->size);
    return r;
}

static int h_set_status(struct vhu_session *s, struct vhu_msg *m)
{
    if (m->payload.u64 > 0xff) {
        vhu_err("SET_STATUS: 0x%llx is not a status byte", (unsigned long long)m->payload.u64);
        return -EINVAL;
    }
    vhu_core_set_status(s->core, (uint8_t)m->payload.u64);
    return 0;
}

static int h_get_status(struct vhu_session *s, struct vhu_msg *m)
{
    return reply_u64(s, m, vhu_core_status(s->core));
}

#define CTL(fn) {fn, false}
#define RING(fn) {fn, true}
static const struct vhu_handler handlers[VHOST_USER_MAX_REQUEST] = {
    [VHOST_USER_GET_FEATURES] = CTL(h_get_features),
    [VHOST_USER_SET_FEATURES] = CTL(h_set_features),
    [VHOST_USER_SET_OWNER] = CTL(h_set_owner),
    [VHOST_USER_RESET_OWNER] = CTL(h_reset),
    [VHOST_USER_SET_MEM_TABLE] = CTL(h_set_mem_table),
    [VHOST_USER_SET_LOG_BASE] = CTL(h_set_log_base),
    [VHOST_USER_SET_LOG_FD] = CTL(h_set_log_fd),
    [VHOST_USER_SET_VRING_NUM] = CTL(h_set_vring_num),
    [VHOST_USER_SET_VRING_ADDR] = RING(h_set_vring_addr),
    [VHOST_USER_SET_VRING_BASE] = CTL(h_set_vring_base),
    [VHOST_USER_GET_VRING_BASE] = RING(h_get_vring_base),
    [VHOST_USER_SET_VRING_KICK] = RING(h_set_vring_kick),
    [VHOST_USER_SET_VRING_CALL] = RING(h_set_vring_call),
    [VHOST_USER_SET_VRING_ERR] = RING(h_set_vring_err),
    [VHOST_USER_GET_PROTOCOL_FEATURES] = CTL(h_get_protocol_features),
    [VHOST_USER_SET_PROTOCOL_FEATURES] = CTL(h_set_protocol_features),
    [VHOST_USER_GET_QUEUE_NUM] = CTL(h_get_queue_num),
    [VHOST_USER_SET_VRING_ENABLE] = RING(h_set_vring_enable),
    [VHOST_USER_SEND_RARP] = CTL(h_send_rarp),
    [VHOST_USER_NET_SET_MTU] = CTL(h_net_set_mtu),
    [VHOST_USER_SET_BACKEND_REQ_FD] = CTL(h_set_backend_req_fd),
    [VHOST_USER_GET_CONFIG] = CTL(h_get_config),
    [VHOST_USER_SET_CONFIG] = CTL(h_set_config),
    [VHOST_USER_RESET_DEVICE] = CTL(h_reset),
    [VHOST_USER_GET_MAX_MEM_SLOTS] = CTL(h_get_max_mem_slots),
    [VHOST_USER_ADD_MEM_REG] = CTL(h_add_mem_reg),
    [VHOST_USER_REM_MEM_REG] = CTL(h_rem_mem_reg),
    [VHOST_USER_SET_STATUS] = CTL(h_set_status),
    [VHOST_USER_GET_INFLIGHT_FD] = CTL(h_get_inflight_fd),
    [VHOST_USER_SET_INFLIGHT_FD] = CTL(h_set_inflight_fd),
    [VHOST_USER_GET_STATUS] = CTL(h_get_status),
    [VHOST_USER_SET_DEVICE_STATE_FD] = CTL(h_set_device_state_fd),
    [VHOST_USER_CHECK_DEVICE_STATE] = CTL(h_check_device_state),
};
#undef CTL
#undef RING

/* ---------------------------------------------------------------------------------------- */
/* Dispatch                                                                                   */
/* ---------------------------------------------------------------------------------------- */

static int send_reply(struct vhu_session *s)
{
    int r = s->ops->fdless && s->reply.nfds ? -EBADF : s->ops->send(s->conn, &s->reply);

    vhu_msg_close_fds(&s->reply); /* fds sent with a reply are the peer's copies now */
    if (r < 0)
        vhu_err("cannot send reply to %s: %s", vhu_msg_name(s->reply.hdr.request), strerror(-r));
    return r;
}

struct ring_call {
    struct vhu_session *s;
    struct vhu_msg *m;
    vhu_handler_fn *fn;
};

/* Fd-less transports: the resource that stands for a vring message's fd, made on the control
 * thread (the transport's device is reached from there only). */
static int resolve_notifier(struct vhu_session *s, struct vhu_msg *m)
{
    enum vhu_session_notifier_kind kind;
    uint64_t v = m->payload.u64;

    switch (m->hdr.request) {
    case VHOST_USER_SET_VRING_KICK:
        kind = VHU_SESSION_KICK;
        break;
    case VHOST_USER_SET_VRING_CALL:
        kind = VHU_SESSION_CALL;
        break;
    case VHOST_USER_SET_VRING_ERR:
        kind = VHU_SESSION_ERR;
        break;
    default:
        return -ENOTSUP;
    }
    return s->ops->ring_notifier(s->conn, kind, (unsigned)(v & VHOST_USER_VRING_IDX_MASK),
                                 (v & VHOST_USER_VRING_NOFD_MASK) != 0, &s->res_notifier);
}

static int run_on_ring(void *arg)
{
    struct ring_call *rc = arg;

    return rc->fn(rc->s, rc->m);
}

static int dispatch(struct vhu_session *s, struct vhu_msg *m)
{
    const struct vhu_msg_info *info;
    const struct vhu_handler *h;
    struct vhu_msg_ctx ctx = {
        .protocol_features = s->protocol_features,
        .num_queues = vhu_core_num_queues(s->core),
        .fdless = s->ops->fdless,
    };
    const char *why = "invalid";
    bool need_ack;
    int r;

    vhu_backend_count_message(s->b);
    r = vhu_msg_validate(m, &ctx, &why);
    if (r < 0) {
        vhu_err("dropping connection: %s (request %u, %u bytes, %u fds): %s",
                vhu_msg_name(m->hdr.request), m->hdr.request, m->hdr.size, m->nfds, why);
        vhu_msg_close_fds(m);
        return r;
    }
    info = vhu_msg_info(m->hdr.request);
    h = &handlers[m->hdr.request];
    vhu_dbg("<- %s", info->name);
    if (!h->fn) {
        vhu_err("dropping connection: %s is not supported", info->name);
        vhu_msg_close_fds(m);
        return -ENOTSUP;
    }
    r = 0;
    if (s->ops->fdless && info->fds == VHU_FDS_VRING)
        r = resolve_notifier(s, m);
    if (r < 0) {
        /* refused like a bad fd: fall through to the ack and the drop */
    } else if (h->ring) {
        struct ring_call rc = {.s = s, .m = m, .fn = h->fn};
        r = vhu_core_ring_exec(s->core, msg_ring(m, info->payload), run_on_ring, &rc);
    } else {
        r = h->fn(s, m);
    }
    vhu_msg_close_fds(m);
    vhu_notifier_free(s->res_notifier); /* what the handler did not take */
    s->res_notifier = NULL;
    need_ack = !info->always_reply && (m->hdr.flags & VHOST_USER_NEED_REPLY_MASK) &&
               has_pf(s, VHOST_USER_PROTOCOL_F_REPLY_ACK);
    if (need_ack) {
        /* vhost-user.rst REPLY_ACK: zero for success, non-zero for failure. */
        reply_u64(s, m, r < 0 ? 1 : 0);
        int sr = send_reply(s);
        if (sr < 0 && r >= 0)
            r = sr;
    } else if (r == 1) {
        r = send_reply(s);
    }
    if (r < 0) {
        if (r != -ENOTSUP)
            vhu_err("dropping connection after failed %s: %s", info->name, strerror(-r));
        return r;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Backend channel requests                                                                   */
/* ---------------------------------------------------------------------------------------- */

/*
 * vhost-user.rst VHOST_USER_BACKEND_CONFIG_CHANGE_MSG: no payload; the frontend then reads the
 * config space again (GET_CONFIG on the main channel) and tells its guest. Sent from the control
 * thread without blocking and without NEED_REPLY (a reply would have to be waited for, and the
 * frontend answers the GET_CONFIG it sends meanwhile through us): a frontend that does not read
 * its channel gets -EAGAIN, never a stalled daemon.
 */
static int session_config_changed(void *opaque)
{
    struct vhu_session *s = opaque;
    struct vhost_user_hdr h = {
        .request = VHOST_USER_BACKEND_CONFIG_CHANGE_MSG,
        .flags = VHOST_USER_VERSION,
        .size = 0,
    };
    ssize_t n;

    if (s->backend_req_fd < 0 || !has_pf(s, VHOST_USER_PROTOCOL_F_BACKEND_REQ) ||
        !has_pf(s, VHOST_USER_PROTOCOL_F_CONFIG))
        return -ENOTSUP;
    do {
        n = send(s->backend_req_fd, &h, sizeof(h), MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof(h))
        return 0;
    if (n >= 0) {
        /* a partial header: the channel's framing is lost, never use it again */
        vhu_err("backend channel: short write of CONFIG_CHANGE_MSG; channel closed");
        vhu_fd_close(&s->backend_req_fd);
        return -EIO;
    }
    return -errno;
}

static uint64_t session_negotiated(void *opaque)
{
    const struct vhu_session *s = opaque;

    /* before SET_PROTOCOL_FEATURES: the offer (what a reconnecting QEMU goes on with) */
    return s->protocol_features;
}

/* ---------------------------------------------------------------------------------------- */
/* Session lifetime                                                                           */
/* ---------------------------------------------------------------------------------------- */

int vhu_session_new(struct vhu_backend *b, const struct vhu_session_transport_ops *ops, void *conn,
                    struct vhu_session **out)
{
    struct vhu_session *s = calloc(1, sizeof(*s));
    int r;

    if (!s)
        return -ENOMEM;
    r = vhu_core_new(b, &s->core);
    if (r < 0) {
        free(s);
        return r;
    }
    s->b = b;
    s->dev = vhu_core_device(s->core);
    s->ops = ops;
    s->conn = conn;
    s->backend_req_fd = -1;
    s->ifl.guard = -1;
    s->log.guard = -1;
    s->state_fd = -1;
    s->offered_pf = vhu_backend_protocol_features(b);
    if (ops->fdless)
        s->offered_pf &= ops->fdless_protocol_mask;
    /*
     * QEMU negotiates features once per device, not once per connection: after a backend
     * restart it reconnects and goes straight to SET_FEATURES / SET_MEM_TABLE / rings, using the
     * protocol features the previous backend instance agreed to. Those can only be ones we offer,
     * so a session that has not (yet) seen GET_FEATURES runs with the offered set.
     */
    s->protocol_features = s->offered_pf;
    vhu_core_set_transport(s->core, &(struct vhu_core_transport){
        .config_changed = session_config_changed,
        .negotiated = session_negotiated,
        .opaque = s,
    });
    *out = s;
    return 0;
}

void vhu_session_end(struct vhu_session *s)
{
    if (!s)
        return;
    /* The rings stop (and let go of the inflight buffer) before it is unmapped. */
    vhu_core_free(s->core);
    vhu_mem_unmap_fd(&s->ifl);
    vhu_mem_unmap_fd(&s->log);
    vhu_fd_close(&s->state_fd);
    vhu_fd_close(&s->backend_req_fd);
    free(s);
}

unsigned vhu_session_poll(struct vhu_session *s)
{
    return vhu_core_poll(s->core);
}

int vhu_session_dispatch(struct vhu_session *s, struct vhu_msg *m)
{
    int r = dispatch(s, m);

    if (r < 0)
        vhu_backend_count_failure(s->b); /* the transport ends the session */
    return r;
}
