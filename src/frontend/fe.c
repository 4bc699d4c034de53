/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The frontend core: the driver side of vhost-user. Mirrors what QEMU does for a vhost-user
 * device, without a VM: the "guest memory" is a memfd this process maps and shares.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fe_msg.h"
#include "vhu/log.h"
#include "vhu/util.h"

struct vhu_fe_queue {
    struct vhu_vqd *vqd;
    int kick_fd;
    int call_fd;
    uint32_t base;   /* the base last sent: what a frontend knows of a packed ring after a crash */
    uint64_t kicks;  /* kick eventfd writes */
    uint64_t calls;  /* call eventfd signals consumed by vhu_fe_wait() */
};

struct vhu_fe {
    const struct vhu_fe_conn_ops *ops;
    void *conn;
    uint64_t backend_features;
    uint64_t features;
    uint64_t backend_pf;
    uint64_t pf;
    uint32_t max_queues;
    unsigned nq;
    struct vhu_fe_queue *q;
    int memfd;
    uint8_t *mem;
    size_t mem_size;
    size_t mem_used;
    void (*hook)(void *opaque);
    void *hook_opaque;
    unsigned reply_timeout_ms; /* 0: wait as long as it takes */
    bool out_of_step;          /* a reply timed out: a late one would answer the wrong request */
    unsigned mem_regions;
    uint16_t queue_size;
    bool queue_pairs;
    bool logging;              /* vhu_fe_set_log(on): LOG_ALL and the rings' log flag */
    /* the inflight buffer (opts.inflight): kept across backends, as QEMU keeps it */
    int ifl_fd;
    struct vhost_user_inflight ifl;
    struct vhu_msg msg;
    struct vhu_msg reply;
};

/* ---------------------------------------------------------------------------------------- */
/* AF_UNIX connection                                                                        */
/* ---------------------------------------------------------------------------------------- */

struct unix_conn {
    int fd;
};

static int unix_send(void *conn, const struct vhu_msg *m)
{
    return vhu_msg_send(((struct unix_conn *)conn)->fd, m);
}

static int unix_recv(void *conn, struct vhu_msg *m, int timeout_ms)
{
    return vhu_msg_recv_timeout(((struct unix_conn *)conn)->fd, m, timeout_ms);
}

static void unix_close(void *conn)
{
    struct unix_conn *c = conn;

    vhu_fd_close(&c->fd);
    free(c);
}

static const struct vhu_fe_conn_ops unix_conn_ops = {
    .send = unix_send,
    .recv = unix_recv,
    .close = unix_close,
};

VHU_EXPORT int vhu_fe_connect_fd(int fd, struct vhu_fe **out)
{
    struct unix_conn *c = calloc(1, sizeof(*c));
    int r;

    if (!c) {
        close(fd);
        return -ENOMEM;
    }
    c->fd = fd;
    r = vhu_fe_new(&unix_conn_ops, c, out);
    if (r < 0)
        unix_close(c);
    return r;
}

VHU_EXPORT int vhu_fe_connect(const char *path, struct vhu_fe **out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct unix_conn *c;
    int r;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        r = -errno;
        unix_close(c);
        return r;
    }
    r = vhu_fe_new(&unix_conn_ops, c, out);
    if (r < 0)
        unix_close(c);
    return r;
}

/* ---------------------------------------------------------------------------------------- */
/* Messages                                                                                  */
/* ---------------------------------------------------------------------------------------- */

VHU_EXPORT int vhu_fe_new(const struct vhu_fe_conn_ops *ops, void *conn, struct vhu_fe **out)
{
    struct vhu_fe *fe = calloc(1, sizeof(*fe));

    if (!fe)
        return -ENOMEM;
    fe->ops = ops;
    fe->conn = conn;
    fe->memfd = -1;
    fe->ifl_fd = -1;
    fe->reply_timeout_ms = VHU_FE_REPLY_TIMEOUT_MS;
    *out = fe;
    return 0;
}

VHU_EXPORT void vhu_fe_set_poll_hook(struct vhu_fe *fe, void (*hook)(void *opaque), void *opaque)
{
    fe->hook = hook;
    fe->hook_opaque = opaque;
}

static bool has_pf(const struct vhu_fe *fe, unsigned bit)
{
    return vhu_has_feature(fe->pf, bit);
}

VHU_EXPORT void vhu_fe_set_reply_timeout(struct vhu_fe *fe, unsigned timeout_ms)
{
    fe->reply_timeout_ms = timeout_ms;
}

/* How many fds the reply to request may carry: only GET_INFLIGHT_FD's brings one (the inflight
 * region, the caller's from then on). */
static unsigned reply_fds_allowed(uint32_t request)
{
    return request == VHOST_USER_GET_INFLIGHT_FD ? 1 : 0;
}

VHU_EXPORT int vhu_fe_raw(struct vhu_fe *fe, struct vhu_msg *m, struct vhu_msg *reply)
{
    const struct vhu_msg_info *info = vhu_msg_info(m->hdr.request);
    bool want_reply = (info && info->always_reply) || (m->hdr.flags & VHOST_USER_NEED_REPLY_MASK);
    int r;

    if (fe->out_of_step)
        return -ENOTCONN;
    r = fe->ops->send(fe->conn, m);
    if (r < 0 || !want_reply)
        return r;
    r = fe->ops->recv(fe->conn, reply,
                      fe->reply_timeout_ms ? (int)VHU_MIN(fe->reply_timeout_ms, (unsigned)INT32_MAX)
                                           : -1);
    if (r == -ETIMEDOUT) {
        vhu_err("no reply to %s within %u ms", vhu_msg_name(m->hdr.request),
                fe->reply_timeout_ms);
        fe->out_of_step = true;
    }
    if (r < 0)
        return r;
    if (reply->hdr.request != m->hdr.request || !(reply->hdr.flags & VHOST_USER_REPLY_MASK)) {
        vhu_msg_close_fds(reply);
        return -EPROTO;
    }
    if (reply->nfds > reply_fds_allowed(reply->hdr.request)) {
        vhu_err("reply to %s carries %u fds: refused", vhu_msg_name(m->hdr.request), reply->nfds);
        vhu_msg_close_fds(reply);
        return -EPROTO;
    }
    return 0;
}

/*
 * Send a request. For requests that always reply, the reply lands in fe->reply; for the rest,
 * REPLY_ACK (when negotiated) turns a backend failure into -EIO here.
 */
static int fe_call(struct vhu_fe *fe, uint32_t req, const void *payload, uint32_t size,
                   const int *fds, unsigned nfds)
{
    const struct vhu_msg_info *info = vhu_msg_info(req);
    uint32_t flags = VHOST_USER_VERSION;
    int r;

    if (!info->always_reply && has_pf(fe, VHOST_USER_PROTOCOL_F_REPLY_ACK))
        flags |= VHOST_USER_NEED_REPLY_MASK;
    vhu_msg_init(&fe->msg, req, flags, size);
    if (size)
        memcpy(&fe->msg.payload, payload, size);
    for (unsigned i = 0; i < nfds; i++)
        fe->msg.fds[i] = fds[i];
    fe->msg.nfds = nfds;
    r = vhu_fe_raw(fe, &fe->msg, &fe->reply);
    fe->msg.nfds = 0; /* the fds belong to the caller */
    if (r < 0)
        return r;
    if (!info->always_reply && (flags & VHOST_USER_NEED_REPLY_MASK)) {
        if (fe->reply.hdr.size != 8)
            return -EPROTO;
        if (fe->reply.payload.u64 != 0)
            return -EIO;
    }
    return 0;
}

static int fe_get_u64(struct vhu_fe *fe, uint32_t req, uint64_t *v)
{
    int r = fe_call(fe, req, NULL, 0, NULL, 0);

    if (r < 0)
        return r;
    if (fe->reply.hdr.size != 8)
        return -EPROTO;
    *v = fe->reply.payload.u64;
    return 0;
}

static int fe_set_u64(struct vhu_fe *fe, uint32_t req, uint64_t v, const int *fds, unsigned nfds)
{
    return fe_call(fe, req, &v, sizeof(v), fds, nfds);
}

static int fe_state(struct vhu_fe *fe, uint32_t req, uint32_t index, uint32_t num)
{
    struct vhost_vring_state st = {.index = index, .num = num};

    return fe_call(fe, req, &st, sizeof(st), NULL, 0);
}

/* ---------------------------------------------------------------------------------------- */
/* Memory                                                                                    */
/* ---------------------------------------------------------------------------------------- */

static int mem_send(struct vhu_fe *fe);
static int queue_send(struct vhu_fe *fe, unsigned i);

static int mem_setup(struct vhu_fe *fe, size_t size, unsigned nregions)
{
    int r;

    if (nregions == 0)
        nregions = 1;
    size = VHU_ALIGN_UP(size, (size_t)4096 * nregions);
    /* Sealed against resizing, as QEMU's memory-backend-memfd does: a backend (vhud among
     * them) refuses a sealable memfd that could shrink under its mapping. */
    r = vhu_memfd_new_sealed("vhu-fe", size);
    if (r < 0)
        return r;
    fe->memfd = r;
    fe->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fe->memfd, 0);
    if (fe->mem == MAP_FAILED) {
        fe->mem = NULL;
        return -errno;
    }
    fe->mem_size = size;
    fe->mem_used = 0;
    fe->mem_regions = nregions;
    return mem_send(fe);
}

/* The memory table, as regions of the one memfd (again after a reconnect). */
static int mem_send(struct vhu_fe *fe)
{
    unsigned nregions = fe->mem_regions;
    size_t chunk = fe->mem_size / nregions;
    int r;

    if (has_pf(fe, VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS)) {
        uint64_t slots;
        r = fe_get_u64(fe, VHOST_USER_GET_MAX_MEM_SLOTS, &slots);
        if (r < 0)
            return r;
        if (slots < nregions)
            return -ENOSPC;
        for (unsigned i = 0; i < nregions; i++) {
            struct vhost_user_mem_reg reg = {
                .region = {
                    .guest_phys_addr = VHU_FE_GPA_BASE + i * chunk,
                    .memory_size = chunk,
                    .userspace_addr = (uint64_t)(uintptr_t)(fe->mem + i * chunk),
                    .mmap_offset = i * chunk,
                },
            };
            r = fe_call(fe, VHOST_USER_ADD_MEM_REG, &reg, sizeof(reg), &fe->memfd, 1);
            if (r < 0)
                return r;
        }
        return 0;
    }

    struct vhost_user_memory mt = {.nregions = nregions};
    int fds[VHOST_MEMORY_BASELINE_NREGIONS];
    if (nregions > VHOST_MEMORY_BASELINE_NREGIONS)
        return -ENOSPC;
    for (unsigned i = 0; i < nregions; i++) {
        mt.regions[i].guest_phys_addr = VHU_FE_GPA_BASE + i * chunk;
        mt.regions[i].memory_size = chunk;
        mt.regions[i].userspace_addr = (uint64_t)(uintptr_t)(fe->mem + i * chunk);
        mt.regions[i].mmap_offset = i * chunk;
        fds[i] = fe->memfd;
    }
    return fe_call(fe, VHOST_USER_SET_MEM_TABLE, &mt,
                   8 + nregions * sizeof(struct vhost_user_memory_region), fds, nregions);
}

VHU_EXPORT void *vhu_fe_alloc(struct vhu_fe *fe, size_t size, size_t align, uint64_t *gpa)
{
    size_t off;

    if (!fe->mem || align == 0 || (align & (align - 1)))
        return NULL;
    off = VHU_ALIGN_UP(fe->mem_used, align);
    if (off > fe->mem_size || size > fe->mem_size - off)
        return NULL;
    fe->mem_used = off + size;
    if (gpa)
        *gpa = VHU_FE_GPA_BASE + off;
    return fe->mem + off;
}

static uint64_t gpa_to_uva(const struct vhu_fe *fe, uint64_t gpa)
{
    return (uint64_t)(uintptr_t)(fe->mem + (gpa - VHU_FE_GPA_BASE));
}

/* ---------------------------------------------------------------------------------------- */
/* Start / stop                                                                              */
/* ---------------------------------------------------------------------------------------- */

static int queue_setup(struct vhu_fe *fe, unsigned i, const struct vhu_fe_opts *o)
{
    struct vhu_fe_queue *q = &fe->q[i];
    struct vhu_vqd_config cfg = {
        .num = o->queue_size,
        .packed = vhu_has_feature(fe->features, VHU_VIRTIO_F_RING_PACKED),
        .event_idx = vhu_has_feature(fe->features, VHU_VIRTIO_RING_F_EVENT_IDX),
        .in_order = vhu_has_feature(fe->features, VHU_VIRTIO_F_IN_ORDER),
    };
    int r;

    cfg.ring = vhu_fe_alloc(fe, vhu_vqd_ring_size(cfg.num, cfg.packed), 4096, &cfg.ring_addr);
    if (!cfg.ring)
        return -ENOMEM;
    if (vhu_has_feature(fe->features, VHU_VIRTIO_RING_F_INDIRECT_DESC)) {
        cfg.indirect_max = 16;
        cfg.indirect = vhu_fe_alloc(fe, (size_t)cfg.num * cfg.indirect_max * 16, 16,
                                    &cfg.indirect_addr);
        if (!cfg.indirect)
            return -ENOMEM;
    }
    r = vhu_vqd_new(&cfg, &q->vqd);
    if (r < 0)
        return r;
    q->kick_fd = vhu_eventfd_new();
    q->call_fd = vhu_eventfd_new();
    if (q->kick_fd < 0 || q->call_fd < 0)
        return -EMFILE;

    q->base = vhu_vqd_base(q->vqd);
    return queue_send(fe, i);
}

/* SET_VRING_ADDR's payload for queue i. */
static void vring_addr(struct vhu_fe *fe, unsigned i, struct vhost_vring_addr *addr)
{
    uint64_t d, a, u;

    vhu_vqd_addrs(fe->q[i].vqd, &d, &a, &u);
    *addr = (struct vhost_vring_addr){
        .index = i,
        /* vhost-user.rst "Migration": the used ring is logged at its guest address. */
        .flags = fe->logging ? 1u << VHOST_VRING_F_LOG : 0,
        .desc_user_addr = gpa_to_uva(fe, d),
        .avail_user_addr = gpa_to_uva(fe, a),
        .used_user_addr = gpa_to_uva(fe, u),
        .log_guest_addr = u,
    };
}

/* A queue's messages: size, addresses, base, notifiers, enable (again after a reconnect). */
static int queue_send(struct vhu_fe *fe, unsigned i)
{
    struct vhu_fe_queue *q = &fe->q[i];
    struct vhost_vring_addr addr;
    int r;

    vring_addr(fe, i, &addr);
    if ((r = fe_state(fe, VHOST_USER_SET_VRING_NUM, i, fe->queue_size)) < 0 ||
        (r = fe_call(fe, VHOST_USER_SET_VRING_ADDR, &addr, sizeof(addr), NULL, 0)) < 0 ||
        (r = fe_state(fe, VHOST_USER_SET_VRING_BASE, i, q->base)) < 0 ||
        (r = fe_set_u64(fe, VHOST_USER_SET_VRING_CALL, i, &q->call_fd, 1)) < 0 ||
        (r = fe_set_u64(fe, VHOST_USER_SET_VRING_KICK, i, &q->kick_fd, 1)) < 0)
        return r;
    if (vhu_has_feature(fe->features, VHOST_USER_F_PROTOCOL_FEATURES))
        r = fe_state(fe, VHOST_USER_SET_VRING_ENABLE, i, 1);
    return r;
}

/* GET_FEATURES, GET/SET_PROTOCOL_FEATURES (pf_wanted & offered), SET_OWNER, GET_QUEUE_NUM. */
static int negotiate(struct vhu_fe *fe, uint64_t pf_wanted, bool queue_pairs)
{
    int r = fe_get_u64(fe, VHOST_USER_GET_FEATURES, &fe->backend_features);

    if (r < 0)
        return r;
    if (vhu_has_feature(fe->backend_features, VHOST_USER_F_PROTOCOL_FEATURES)) {
        r = fe_get_u64(fe, VHOST_USER_GET_PROTOCOL_FEATURES, &fe->backend_pf);
        if (r < 0)
            return r;
        uint64_t pf = fe->backend_pf & pf_wanted;
        r = fe_set_u64(fe, VHOST_USER_SET_PROTOCOL_FEATURES, pf, NULL, 0);
        if (r < 0)
            return r;
        fe->pf = pf;
    }
    r = fe_call(fe, VHOST_USER_SET_OWNER, NULL, 0, NULL, 0);
    if (r < 0)
        return r;
    fe->max_queues = 1;
    if (has_pf(fe, VHOST_USER_PROTOCOL_F_MQ)) {
        uint64_t n;
        r = fe_get_u64(fe, VHOST_USER_GET_QUEUE_NUM, &n);
        if (r < 0)
            return r;
        if (queue_pairs)
            n *= 2;
        fe->max_queues = n > 0xffff ? 0xffff : (uint32_t)n;
    }
    return 0;
}

/* Backends that track the device status (DPDK with PROTOCOL_F_STATUS) start the data path at
 * DRIVER_OK, as a driver sets it once its queues are live (virtio 1.3 §3.1.1). */
static int driver_ok(struct vhu_fe *fe)
{
    if (!has_pf(fe, VHOST_USER_PROTOCOL_F_STATUS))
        return 0;
    return fe_set_u64(fe, VHOST_USER_SET_STATUS,
                      VHU_VIRTIO_CONFIG_S_ACKNOWLEDGE | VHU_VIRTIO_CONFIG_S_DRIVER |
                          VHU_VIRTIO_CONFIG_S_FEATURES_OK | VHU_VIRTIO_CONFIG_S_DRIVER_OK,
                      NULL, 0);
}

static int inflight_set(struct vhu_fe *fe)
{
    return fe_call(fe, VHOST_USER_SET_INFLIGHT_FD, &fe->ifl, sizeof(fe->ifl), &fe->ifl_fd, 1);
}

/* GET_INFLIGHT_FD for every queue, kept for the life of the frontend, then SET_INFLIGHT_FD. */
static int inflight_get(struct vhu_fe *fe)
{
    struct vhost_user_inflight in = {.num_queues = (uint16_t)fe->nq, .queue_size = fe->queue_size};
    int r = fe_call(fe, VHOST_USER_GET_INFLIGHT_FD, &in, sizeof(in), NULL, 0);

    if (r < 0)
        return r;
    if (fe->reply.nfds != 1 || fe->reply.hdr.size != sizeof(in) ||
        fe->reply.payload.inflight.mmap_size == 0) {
        vhu_err("GET_INFLIGHT_FD: a reply without its buffer");
        return -EPROTO;
    }
    fe->ifl = fe->reply.payload.inflight;
    fe->ifl_fd = fe->reply.fds[0];
    fe->reply.fds[0] = -1;
    fe->reply.nfds = 0;
    return inflight_set(fe);
}

VHU_EXPORT int vhu_fe_start(struct vhu_fe *fe, const struct vhu_fe_opts *o)
{
    const uint64_t pf_wanted = vhu_feature(VHOST_USER_PROTOCOL_F_MQ) |
                               vhu_feature(VHOST_USER_PROTOCOL_F_REPLY_ACK) |
                               vhu_feature(VHOST_USER_PROTOCOL_F_CONFIG) |
                               vhu_feature(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS) |
                               vhu_feature(VHOST_USER_PROTOCOL_F_RESET_DEVICE) |
                               vhu_feature(VHOST_USER_PROTOCOL_F_STATUS);
    uint64_t want, pf = pf_wanted | o->protocol_features;
    int r;

    if (o->num_queues == 0 || o->queue_size == 0 || fe->q)
        return -EINVAL;
    if (o->inflight)
        pf |= vhu_feature(VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD);
    r = negotiate(fe, pf, o->queue_pairs);
    if (r < 0)
        return r;
    if (o->num_queues > fe->max_queues) {
        vhu_err("backend supports %u queues, %u requested", fe->max_queues, o->num_queues);
        return -EINVAL;
    }

    want = o->features | vhu_feature(VHU_VIRTIO_F_VERSION_1) |
           vhu_feature(VHOST_USER_F_PROTOCOL_FEATURES);
    if (o->packed)
        want |= vhu_feature(VHU_VIRTIO_F_RING_PACKED);
    if (o->event_idx)
        want |= vhu_feature(VHU_VIRTIO_RING_F_EVENT_IDX);
    if (o->indirect)
        want |= vhu_feature(VHU_VIRTIO_RING_F_INDIRECT_DESC);
    /* vhu_vqd takes batched in-order completions, with every frontend path: each chain takes
     * the next ring slots (an indirect chain one of them, its table stays per head). */
    want |= vhu_feature(VHU_VIRTIO_F_IN_ORDER);
    fe->features = want & fe->backend_features;
    if (o->packed && !vhu_has_feature(fe->features, VHU_VIRTIO_F_RING_PACKED)) {
        vhu_err("backend does not offer packed rings");
        return -ENOTSUP;
    }
    if (o->inflight && !has_pf(fe, VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD)) {
        vhu_err("backend does not offer inflight tracking");
        return -ENOTSUP;
    }
    r = fe_set_u64(fe, VHOST_USER_SET_FEATURES, fe->features, NULL, 0);
    if (r < 0)
        return r;
    r = mem_setup(fe, o->mem_size ? o->mem_size : (size_t)16 << 20, o->mem_regions);
    if (r < 0)
        return r;
    fe->queue_size = o->queue_size;
    fe->queue_pairs = o->queue_pairs;
    fe->q = calloc(o->num_queues, sizeof(*fe->q));
    if (!fe->q)
        return -ENOMEM;
    fe->nq = o->num_queues;
    if (o->inflight && (r = inflight_get(fe)) < 0)
        return r;
    for (unsigned i = 0; i < fe->nq; i++)
        fe->q[i].kick_fd = fe->q[i].call_fd = -1;
    for (unsigned i = 0; i < fe->nq; i++) {
        r = queue_setup(fe, i, o);
        if (r < 0)
            return r;
    }
    return driver_ok(fe);
}

/*
 * The backend went away (a crash: nothing was stopped) and `from` is connected to its successor:
 * take over that connection and set the successor up with the same memory, rings, notifiers and
 * inflight buffer, as QEMU does on reconnect. A split ring restarts at the used index in guest
 * memory; a packed ring at the base last sent (a frontend has nothing better after a crash: the
 * inflight buffer tells the backend where the ring really is).
 */
VHU_EXPORT int vhu_fe_reconnect(struct vhu_fe *fe, struct vhu_fe *from)
{
    uint64_t offered;
    int r;

    if (!fe->q || !from || from->q || from->mem)
        return -EINVAL;
    if (fe->ops && fe->ops->close)
        fe->ops->close(fe->conn);
    fe->ops = from->ops;
    fe->conn = from->conn;
    fe->hook = from->hook;
    fe->hook_opaque = from->hook_opaque;
    from->ops = NULL;
    vhu_fe_free(from);
    fe->out_of_step = false;
    offered = fe->backend_features;
    r = negotiate(fe, fe->pf, fe->queue_pairs);
    if (r < 0)
        return r;
    if ((fe->backend_features & fe->features) != fe->features || fe->nq > fe->max_queues) {
        vhu_err("the new backend offers less than the old one (features 0x%llx, was 0x%llx)",
                (unsigned long long)fe->backend_features, (unsigned long long)offered);
        return -ENOTSUP;
    }
    if ((r = fe_set_u64(fe, VHOST_USER_SET_FEATURES, fe->features, NULL, 0)) < 0 ||
        (r = mem_send(fe)) < 0)
        return r;
    if (fe->ifl_fd >= 0 && (r = inflight_set(fe)) < 0)
        return r;
    for (unsigned i = 0; i < fe->nq; i++) {
        struct vhu_fe_queue *q = &fe->q[i];
        if (!vhu_has_feature(fe->features, VHU_VIRTIO_F_RING_PACKED)) {
            uint64_t d, a, u;
            vhu_vqd_addrs(q->vqd, &d, &a, &u);
            q->base = ((const struct vhu_vring_used *)(const void *)(fe->mem +
                                                                     (u - VHU_FE_GPA_BASE)))
                          ->idx;
        }
        r = queue_send(fe, i);
        if (r < 0)
            return r;
    }
    return driver_ok(fe);
}

/* What QEMU's vhost does when a migration starts or ends (vhost_dev_set_log): the log first,
 * then LOG_ALL in the features, then every ring's addresses again with the log flag. */
VHU_EXPORT int vhu_fe_set_log(struct vhu_fe *fe, int fd, uint64_t size, bool on)
{
    struct vhost_user_log l = {.mmap_size = size, .mmap_offset = 0};
    uint64_t f;
    int r;

    if (!fe->q || !has_pf(fe, VHOST_USER_PROTOCOL_F_LOG_SHMFD) ||
        !vhu_has_feature(fe->backend_features, VHOST_F_LOG_ALL))
        return -ENOTSUP;
    if (fd >= 0 && (r = fe_call(fe, VHOST_USER_SET_LOG_BASE, &l, sizeof(l), &fd, 1)) < 0)
        return r;
    f = on ? fe->features | vhu_feature(VHOST_F_LOG_ALL) : fe->features;
    if ((r = fe_set_u64(fe, VHOST_USER_SET_FEATURES, f, NULL, 0)) < 0)
        return r;
    fe->logging = on;
    for (unsigned i = 0; i < fe->nq; i++) {
        struct vhost_vring_addr addr;

        vring_addr(fe, i, &addr);
        if ((r = fe_call(fe, VHOST_USER_SET_VRING_ADDR, &addr, sizeof(addr), NULL, 0)) < 0)
            return r;
    }
    return 0;
}

/* vhost-user.rst "Migrating back-end state": SET_DEVICE_STATE_FD with one end of a pipe (the
 * backend answers "no fd of its own", bit 8), the transfer, then CHECK_DEVICE_STATE. */
static int state_transfer(struct vhu_fe *fe, uint32_t direction, int fd)
{
    struct vhost_user_transfer_state t = {.direction = direction, .phase = 0};
    int r;

    if (!has_pf(fe, VHOST_USER_PROTOCOL_F_DEVICE_STATE))
        return -ENOTSUP;
    r = fe_call(fe, VHOST_USER_SET_DEVICE_STATE_FD, &t, sizeof(t), &fd, 1);
    if (r < 0)
        return r;
    if (fe->reply.hdr.size != 8)
        return -EPROTO;
    if (fe->reply.payload.u64 & 0xff)
        return -EIO;
    return (fe->reply.payload.u64 & (1u << 8)) ? 0 : -EPROTO; /* we take no backend fd */
}

static int state_check(struct vhu_fe *fe)
{
    uint64_t v;
    int r = fe_get_u64(fe, VHOST_USER_CHECK_DEVICE_STATE, &v);

    return r < 0 ? r : v ? -EIO : 0;
}

VHU_EXPORT int vhu_fe_save_state(struct vhu_fe *fe, void *buf, size_t len)
{
    int p[2], r;
    size_t got = 0;

    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    r = state_transfer(fe, 0, p[1]);
    close(p[1]);
    while (r == 0) {
        ssize_t n = read(p[0], (uint8_t *)buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            r = -errno;
        else if (n == 0)
            break;
        else if ((got += (size_t)n) == len)
            r = -ENOSPC;
    }
    close(p[0]);
    if (r == 0)
        r = state_check(fe);
    return r < 0 ? r : (int)got;
}

VHU_EXPORT int vhu_fe_load_state(struct vhu_fe *fe, const void *buf, size_t len)
{
    int p[2], r;

    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    r = state_transfer(fe, 1, p[0]);
    close(p[0]);
    /* a device state fits a pipe's buffer: written in one go, closed for the backend's EOF */
    if (r == 0 && write(p[1], buf, len) != (ssize_t)len)
        r = -EIO;
    close(p[1]);
    return r < 0 ? r : state_check(fe);
}

VHU_EXPORT int vhu_fe_stop(struct vhu_fe *fe)
{
    for (unsigned i = 0; i < fe->nq; i++) {
        struct vhost_vring_state st = {.index = i};
        int r = fe_call(fe, VHOST_USER_GET_VRING_BASE, &st, sizeof(st), NULL, 0);
        if (r < 0)
            return r;
    }
    return 0;
}

VHU_EXPORT void vhu_fe_free(struct vhu_fe *fe)
{
    if (!fe)
        return;
    if (fe->ops && fe->ops->close)
        fe->ops->close(fe->conn);
    for (unsigned i = 0; i < fe->nq; i++) {
        vhu_vqd_free(fe->q[i].vqd);
        vhu_fd_close(&fe->q[i].kick_fd);
        vhu_fd_close(&fe->q[i].call_fd);
    }
    free(fe->q);
    if (fe->mem)
        munmap(fe->mem, fe->mem_size);
    vhu_fd_close(&fe->memfd);
    vhu_fd_close(&fe->ifl_fd);
    free(fe);
}

VHU_EXPORT int vhu_fe_inflight_fd(const struct vhu_fe *fe, uint64_t *size)
{
    if (size)
        *size = fe->ifl_fd >= 0 ? fe->ifl.mmap_size : 0;
    return fe->ifl_fd;
}

VHU_EXPORT uint64_t vhu_fe_features(const struct vhu_fe *fe) { return fe->features; }
VHU_EXPORT uint64_t vhu_fe_protocol_features(const struct vhu_fe *fe) { return fe->pf; }
VHU_EXPORT uint64_t vhu_fe_backend_features(const struct vhu_fe *fe) { return fe->backend_features; }
VHU_EXPORT unsigned vhu_fe_num_queues(const struct vhu_fe *fe) { return fe->nq; }

VHU_EXPORT struct vhu_vqd *vhu_fe_vqd(struct vhu_fe *fe, unsigned q)
{
    return q < fe->nq ? fe->q[q].vqd : NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Data path                                                                                 */
/* ---------------------------------------------------------------------------------------- */

VHU_EXPORT int vhu_fe_kick(struct vhu_fe *fe, unsigned q)
{
    if (q >= fe->nq)
        return -EINVAL;
    if (vhu_vqd_kick_prepare(fe->q[q].vqd)) {
        int r = vhu_eventfd_signal(fe->q[q].kick_fd);
        if (r == 0)
            fe->q[q].kicks++;
        return r;
    }
    return 0;
}

VHU_EXPORT int vhu_fe_queue_stats(const struct vhu_fe *fe, unsigned q,
                                  struct vhu_fe_queue_stats *st)
{
    if (q >= fe->nq)
        return -EINVAL;
    st->kicks = fe->q[q].kicks;
    st->calls = fe->q[q].calls;
    return 0;
}

VHU_EXPORT int vhu_fe_wait(struct vhu_fe *fe, unsigned q, int timeout_ms)
{
    uint64_t deadline = vhu_now_ns() + (uint64_t)timeout_ms * 1000000ULL;
    struct pollfd pfd;

    if (q >= fe->nq)
        return -EINVAL;
    pfd.fd = fe->q[q].call_fd;
    pfd.events = POLLIN;
    for (;;) {
        if (fe->hook)
            fe->hook(fe->hook_opaque);
        int r = poll(&pfd, 1, fe->hook ? 0 : 10);
        if (r > 0) {
            /* the eventfd's count: every signal since the last drain, coalesced ones too */
            fe->q[q].calls += vhu_eventfd_drain(pfd.fd);
            return 0;
        }
        if (r < 0 && errno != EINTR)
            return -errno;
        if (vhu_now_ns() >= deadline)
            return -ETIMEDOUT;
    }
}

VHU_EXPORT int vhu_fe_request(struct vhu_fe *fe, unsigned q, const struct vhu_vqd_seg *segs,
                              unsigned n_out, unsigned n_in, int timeout_ms)
{
    uint64_t deadline = vhu_now_ns() + (uint64_t)timeout_ms * 1000000ULL;
    static char cookie;
    struct vhu_vqd *vqd;
    uint32_t len;
    int r;

    if (q >= fe->nq)
        return -EINVAL;
    vqd = fe->q[q].vqd;
    r = vhu_vqd_add(vqd, segs, n_out, n_in, &cookie);
    if (r < 0)
        return r;
    r = vhu_fe_kick(fe, q);
    if (r < 0)
        return r;
    for (;;) {
        void *c = vhu_vqd_get_used(vqd, &len);
        if (c)
            return c == &cookie ? (int)len : -EPROTO;
        if (vhu_vqd_broken(vqd))
            return -EPROTO;
        vhu_vqd_enable_cb(vqd);
        if (vhu_now_ns() >= deadline)
            return -ETIMEDOUT;
        r = vhu_fe_wait(fe, q, 100);
        if (r < 0 && r != -ETIMEDOUT)
            return r;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Config and status                                                                         */
/* ---------------------------------------------------------------------------------------- */

VHU_EXPORT int vhu_fe_get_config(struct vhu_fe *fe, uint32_t off, void *buf, uint32_t len)
{
    struct vhost_user_config c = {.offset = off, .size = len};
    int r;

    if (len > VHOST_USER_MAX_CONFIG_SIZE)
        return -EINVAL;
    if (!has_pf(fe, VHOST_USER_PROTOCOL_F_CONFIG))
        return -ENOTSUP;
    r = fe_call(fe, VHOST_USER_GET_CONFIG, &c, VHOST_USER_CONFIG_HDR_SIZE + len, NULL, 0);
    if (r < 0)
        return r;
    if (fe->reply.hdr.size != VHOST_USER_CONFIG_HDR_SIZE + len)
        return -EIO; /* an empty reply is the backend's way to say no */
    memcpy(buf, fe->reply.payload.config.region, len);
    return 0;
}

VHU_EXPORT int vhu_fe_set_config(struct vhu_fe *fe, uint32_t off, const void *buf, uint32_t len)
{
    struct vhost_user_config c = {.offset = off, .size = len};

    if (len > VHOST_USER_MAX_CONFIG_SIZE)
        return -EINVAL;
    if (!has_pf(fe, VHOST_USER_PROTOCOL_F_CONFIG))
        return -ENOTSUP;
    memcpy(c.region, buf, len);
    return fe_call(fe, VHOST_USER_SET_CONFIG, &c, VHOST_USER_CONFIG_HDR_SIZE + len, NULL, 0);
}

VHU_EXPORT int vhu_fe_get_status(struct vhu_fe *fe, uint8_t *status)
{
    uint64_t v;
    int r;

    if (!has_pf(fe, VHOST_USER_PROTOCOL_F_STATUS))
        return -ENOTSUP;
    r = fe_get_u64(fe, VHOST_USER_GET_STATUS, &v);
    if (r == 0)
        *status = (uint8_t)v;
    return r;
}

VHU_EXPORT int vhu_fe_set_status(struct vhu_fe *fe, uint8_t status)
{
    if (!has_pf(fe, VHOST_USER_PROTOCOL_F_STATUS))
        return -ENOTSUP;
    return fe_set_u64(fe, VHOST_USER_SET_STATUS, status, NULL, 0);
}

VHU_EXPORT int vhu_fe_reset_device(struct vhu_fe *fe)
{
    if (!has_pf(fe, VHOST_USER_PROTOCOL_F_RESET_DEVICE))
        return -ENOTSUP;
    return fe_call(fe, VHOST_USER_RESET_DEVICE, NULL, 0, NULL, 0);
}
