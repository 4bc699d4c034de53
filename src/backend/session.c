/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The backend session: one frontend connection's state machine. Every message goes through
 * vhu_session_dispatch(), which validates it against the message table before any handler runs,
 * answers what must be answered, and closes every fd a handler did not take.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend_internal.h"
#include "worker.h"
#include "vhu/log.h"
#include "vhu/util.h"
#include "vhu/virtio.h"
#include "vhu/vq.h"

/* Handler result: < 0 drop the connection; 0 done (no reply payload); 1 s->reply is filled. */
typedef int vhu_handler_fn(struct vhu_session *s, struct vhu_msg *m);

static bool has_pf(const struct vhu_session *s, unsigned bit)
{
    return vhu_has_feature(s->protocol_features, bit);
}

static struct vhu_session_vq *msg_vq(struct vhu_session *s, uint32_t index)
{
    /* The validator has checked index < nvqs. */
    return &s->vqs[index & VHOST_USER_VRING_IDX_MASK];
}

static int take_fd(struct vhu_msg *m)
{
    int fd = m->fds[0];

    m->fds[0] = -1;
    return fd;
}

/* ---------------------------------------------------------------------------------------- */
/* Rings                                                                                      */
/* ---------------------------------------------------------------------------------------- */

static void kick_cb(int fd, uint32_t events, void *opaque)
{
    struct vhu_session_vq *svq = opaque;
    struct vhu_session *s = svq->s;

    (void)fd;
    (void)events;
    /* Edge-triggered (watch_kick): every kick written since the last wait wakes us once, and the
     * counter is never read. It cannot fill up from kicks (2^64 - 2 of them); a frontend that
     * writes a huge value only blocks its own further kicks. */
    __atomic_add_fetch(&s->b->stats.kicks, 1, __ATOMIC_RELAXED);
    if (svq->started && svq->enabled && !vhu_vq_broken(svq->vq))
        s->dev->ops->queue_notify(s->dev, svq->vq);
}

static void vq_error_hook(struct vhu_vq *vq, void *opaque)
{
    struct vhu_session_vq *svq = opaque;

    /* virtio 2.1.2: a device that hit an error it cannot recover from sets NEEDS_RESET. */
    __atomic_fetch_or(&svq->s->status, VHU_VIRTIO_CONFIG_S_NEEDS_RESET, __ATOMIC_RELAXED);
    if (svq->err_fd >= 0)
        vhu_eventfd_signal(svq->err_fd);
    vhu_err("queue %u stopped after a driver error; other queues keep running",
            vhu_vq_index(vq));
}

static void unwatch_kick(struct vhu_session_vq *svq)
{
    if (svq->watched) {
        vhu_loop_del(svq->loop, svq->kick_fd);
        svq->watched = false;
    }
}

/* Translate the ring addresses (frontend virtual addresses) and start the ring. */
static int vq_start(struct vhu_session *s, struct vhu_session_vq *svq)
{
    bool packed = vhu_has_feature(s->features, VHU_VIRTIO_F_RING_PACKED);
    uint16_t num = svq->num;
    struct vhu_vq_config cfg = {
        .num = num,
        .packed = packed,
        .event_idx = vhu_has_feature(s->features, VHU_VIRTIO_RING_F_EVENT_IDX),
        .indirect = vhu_has_feature(s->features, VHU_VIRTIO_RING_F_INDIRECT_DESC),
    };
    uint64_t dsz = packed ? vhu_packed_desc_size(num) : vhu_split_desc_size(num);
    uint64_t asz = packed ? VHU_PACKED_EVENT_SIZE : vhu_split_avail_size(num);
    uint64_t usz = packed ? VHU_PACKED_EVENT_SIZE : vhu_split_used_size(num);
    unsigned idx = (unsigned)(svq - s->vqs);
    int r;

    if (num == 0 || !svq->addr_set) {
        vhu_err("queue %u: kick before size and addresses were set", idx);
        return -EINVAL;
    }
    if (!packed && (num & (num - 1))) {
        vhu_err("queue %u: split ring size %u is not a power of two", idx, num);
        return -EINVAL;
    }
    /* Event-idx adds used_event / avail_event after the rings (virtio 2.7.10). */
    if (!packed && cfg.event_idx) {
        asz += 2;
        usz += 2;
    }
    cfg.desc = vhu_mem_uva_range(s->mem, svq->addr.desc_user_addr, dsz);
    cfg.driver = vhu_mem_uva_range(s->mem, svq->addr.avail_user_addr, asz);
    cfg.device = vhu_mem_uva_range(s->mem, svq->addr.used_user_addr, usz);
    if (!cfg.desc || !cfg.driver || !cfg.device) {
        vhu_err("queue %u: ring addresses are outside the memory table%s", idx,
                s->mem->nregions ? ""
                                 : " (it is empty: a frontend that reconnects without resending"
                                   " its memory needs vhud --no-mem-slots)");
        return -EFAULT;
    }
    vhu_vq_set_inflight_region(svq->vq, NULL);
    if (s->ifl_map && idx < s->ifl_queues && !packed) {
        if (num <= s->ifl_qsize)
            vhu_vq_set_inflight_region(svq->vq, s->ifl_map + (size_t)idx *
                                                    vhu_vq_inflight_region_size(s->ifl_qsize));
        else
            vhu_warn("queue %u: ring of %u is larger than the inflight buffer's %u: untracked",
                     idx, num, s->ifl_qsize);
    }
    r = vhu_vq_set_base(svq->vq, svq->base);
    if (r == 0)
        r = vhu_vq_start(svq->vq, &cfg, s->mem);
    if (r < 0) {
        vhu_err("queue %u: cannot start: %s", idx, strerror(-r));
        return r;
    }
    vhu_vq_set_call_fd(svq->vq, svq->call_fd);
    if (s->dev->ops->queue_start) {
        r = s->dev->ops->queue_start(s->dev, svq->vq);
        if (r < 0) {
            vhu_vq_stop(svq->vq);
            vhu_err("queue %u: device refused to start it: %s", idx, strerror(-r));
            return r;
        }
    }
    svq->started = true;
    vhu_backend_worker_own(svq);
    if (vhu_vq_resubmitted(svq->vq))
        vhu_info("queue %u: resubmitting %u requests left in flight by the previous backend",
                 idx, vhu_vq_resubmitted(svq->vq));
    return 0;
}

static void vq_stop(struct vhu_session *s, struct vhu_session_vq *svq)
{
    unwatch_kick(svq);
    if (!svq->started)
        return;
    vhu_backend_worker_disown(svq);
    if (s->dev->ops->queue_stop)
        s->dev->ops->queue_stop(s->dev, svq->vq);
    /* A device must complete (or drop) every request in queue_stop: the rings go away. */
    if (vhu_vq_inflight(svq->vq))
        vhu_err("queue %u: device stopped with %u requests still in flight",
                (unsigned)(svq - s->vqs), vhu_vq_inflight(svq->vq));
    svq->base = vhu_vq_get_base(svq->vq);
    vhu_vq_stop(svq->vq);
    svq->started = false;
}

/* Process buffers made available before the ring started (the spec asks back-ends not to rely
 * on a kick after SET_VRING_KICK). */
static void vq_run(struct vhu_session *s, struct vhu_session_vq *svq)
{
    if (svq->started && svq->enabled && !vhu_vq_broken(svq->vq))
        s->dev->ops->queue_notify(s->dev, svq->vq);
}

/*
 * Everything that touches a ring runs on the thread that owns it: the control thread when there
 * are no workers, else the owning worker through vhu_worker_call() (the control thread waits).
 * The op_* functions below are those owner-side bodies.
 */
static int on_owner(struct vhu_session_vq *svq, int (*fn)(void *), void *arg)
{
    if (svq->bw)
        return vhu_worker_call(svq->bw->w, fn, arg);
    return fn(arg);
}

static int op_start(void *arg)
{
    struct vhu_session_vq *svq = arg;
    struct vhu_session *s = svq->s;
    int r = vq_start(s, svq);

    if (r < 0)
        return r;
    r = vhu_loop_add(svq->loop, svq->kick_fd, VHU_LOOP_IN | VHU_LOOP_EDGE, kick_cb, svq);
    if (r < 0) {
        vq_stop(s, svq);
        return r;
    }
    svq->watched = true;
    vq_run(s, svq);
    return 0;
}

static int op_stop(void *arg)
{
    struct vhu_session_vq *svq = arg;

    vq_stop(svq->s, svq);
    return 0;
}

/* Re-translate a running ring's addresses (new memory table, new SET_VRING_ADDR), keeping its
 * position and its kick watch. */
static int op_restart(void *arg)
{
    struct vhu_session_vq *svq = arg;
    struct vhu_session *s = svq->s;
    bool watched = svq->watched;
    int r;

    if (!svq->started)
        return 0;
    /* vq_stop() has the device finish its in-flight requests (queue_stop) before the rings and
     * the old memory table are let go. */
    svq->watched = false; /* keep the kick watch across the restart */
    vq_stop(s, svq);
    svq->watched = watched;
    r = vq_start(s, svq);
    if (r < 0)
        unwatch_kick(svq);
    return r;
}

static int op_set_call(void *arg)
{
    struct vhu_session_vq *svq = arg;

    vhu_vq_set_call_fd(svq->vq, svq->call_fd);
    /* QEMU swaps call fds after SET_VRING_ENABLE; an interrupt raised on the old fd in between
     * would be lost, so signal the new one once. */
    if (svq->started && svq->call_fd >= 0)
        vhu_eventfd_signal(svq->call_fd);
    return 0;
}

static int op_enable(void *arg)
{
    struct vhu_session_vq *svq = arg;

    svq->enabled = svq->want_enabled;
    if (svq->enabled)
        vq_run(svq->s, svq);
    return 0;
}

static void ring_stop(struct vhu_session_vq *svq)
{
    on_owner(svq, op_stop, svq);
}

/* The memory table changed under running rings: re-translate their addresses. */
static int vqs_remap(struct vhu_session *s)
{
    for (unsigned i = 0; i < s->nvqs; i++) {
        int r = on_owner(&s->vqs[i], op_restart, &s->vqs[i]);
        if (r < 0)
            return r;
    }
    return 0;
}

static void vqs_stop_all(struct vhu_session *s)
{
    for (unsigned i = 0; i < s->nvqs; i++)
        ring_stop(&s->vqs[i]);
}

static void vqs_reset_all(struct vhu_session *s)
{
    vqs_stop_all(s);
    for (unsigned i = 0; i < s->nvqs; i++) {
        struct vhu_session_vq *svq = &s->vqs[i];
        vhu_fd_close(&svq->kick_fd);
        vhu_vq_set_call_fd(svq->vq, -1); /* the ring is stopped: no other thread uses it */
        vhu_fd_close(&svq->call_fd);
        vhu_fd_close(&svq->err_fd);
        svq->num = 0;
        svq->addr_set = false;
        svq->base = 0;
        svq->enabled = false;
        svq->kick_nofd = false;
    }
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

static uint64_t offered_features(const struct vhu_session *s)
{
    return s->dev->features | vhu_feature(VHOST_USER_F_PROTOCOL_FEATURES);
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
    s->features = f;
    s->features_set = true;
    s->dev->acked_features = f & ~vhu_feature(VHOST_USER_F_PROTOCOL_FEATURES);
    if (s->dev->ops->set_features) {
        r = s->dev->ops->set_features(s->dev, s->dev->acked_features);
        if (r < 0) {
            vhu_err("SET_FEATURES: device refused 0x%llx", (unsigned long long)f);
            return r;
        }
    }
    /* Without protocol features rings are enabled as soon as features are set. */
    if (!vhu_has_feature(f, VHOST_USER_F_PROTOCOL_FEATURES)) {
        for (unsigned i = 0; i < s->nvqs; i++)
            s->vqs[i].enabled = true;
    }
    return 0;
}

static int h_set_owner(struct vhu_session *s, struct vhu_msg *m)
{
    (void)m;
    s->owner = true;
    return 0;
}

static int h_reset(struct vhu_session *s, struct vhu_msg *m)
{
    (void)m;
    vqs_reset_all(s);
    s->features = 0;
    s->features_set = false;
    s->dev->acked_features = 0;
    s->status = 0;
    if (s->dev->ops->reset)
        s->dev->ops->reset(s->dev);
    return 0;
}

static int set_mem(struct vhu_session *s, struct vhu_mem_table *t)
{
    struct vhu_mem_table *old = s->mem;

    s->mem = t;
    int r = vqs_remap(s);
    vhu_mem_table_put(old);
    return r;
}

static int map_region(const struct vhost_user_memory_region *wr, int fd,
                      struct vhu_mem_region **out)
{
    struct vhu_mem_region_desc d = {
        .gpa = wr->guest_phys_addr,
        .size = wr->memory_size,
        .uva = wr->userspace_addr,
        .mmap_offset = wr->mmap_offset,
        .fd = fd,
    };
    int r = vhu_mem_region_map(&d, out);

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
        r = map_region(&mt->regions[n], m->fds[n], &regions[n]);
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
    return set_mem(s, t);
}

static int h_get_max_mem_slots(struct vhu_session *s, struct vhu_msg *m)
{
    return reply_u64(s, m, VHU_MEM_MAX_SLOTS);
}

static int h_add_mem_reg(struct vhu_session *s, struct vhu_msg *m)
{
    struct vhu_mem_region *reg;
    struct vhu_mem_table *t;
    int r = map_region(&m->payload.memreg.region, m->fds[0], &reg);

    if (r < 0)
        return r;
    r = vhu_mem_table_add(s->mem, reg, &t);
    if (r < 0) {
        vhu_err("ADD_MEM_REG: region overlaps another or the table is full (%s)", strerror(-r));
        vhu_mem_region_free(reg);
        return r;
    }
    return set_mem(s, t);
}

static int h_rem_mem_reg(struct vhu_session *s, struct vhu_msg *m)
{
    const struct vhost_user_memory_region *wr = &m->payload.memreg.region;
    struct vhu_mem_table *t;
    int r = vhu_mem_table_remove(s->mem, wr->guest_phys_addr, wr->memory_size,
                                 wr->userspace_addr, &t);

    if (r < 0) {
        vhu_err("REM_MEM_REG: no region at gpa 0x%llx size 0x%llx",
                (unsigned long long)wr->guest_phys_addr, (unsigned long long)wr->memory_size);
        return r;
    }
    return set_mem(s, t);
}

static int h_set_vring_num(struct vhu_session *s, struct vhu_msg *m)
{
    struct vhu_session_vq *svq = msg_vq(s, m->payload.state.index);
    uint32_t num = m->payload.state.num;

    if (svq->started) {
        vhu_err("SET_VRING_NUM on running queue %u", m->payload.state.index);
        return -EBUSY;
    }
    if (num == 0 || num > s->dev->max_queue_size) {
        vhu_err("SET_VRING_NUM: size %u outside 1..%u", num, s->dev->max_queue_size);
        return -EINVAL;
    }
    svq->num = (uint16_t)num;
    return 0;
}

static int h_set_vring_addr(struct vhu_session *s, struct vhu_msg *m)
{
    struct vhu_session_vq *svq = msg_vq(s, m->payload.addr.index);

    svq->addr = m->payload.addr;
    svq->addr_set = true;
    /* Addresses changed on a running ring (logging toggled): re-translate them. */
    return on_owner(svq, op_restart, svq);
}

static int h_set_vring_base(struct vhu_session *s, struct vhu_msg *m)
{
    struct vhu_session_vq *svq = msg_vq(s, m->payload.state.index);

    if (svq->started) {
        vhu_err("SET_VRING_BASE on running queue %u", m->payload.state.index);
        return -EBUSY;
    }
    svq->base = m->payload.state.num;
    return 0;
}

static int h_get_vring_base(struct vhu_session *s, struct vhu_msg *m)
{
    uint32_t idx = m->payload.state.index;
    struct vhu_session_vq *svq = msg_vq(s, idx);

    /* vhost-user.rst: GET_VRING_BASE stops the ring; the kick fd is no longer used. */
    ring_stop(svq);
    vhu_fd_close(&svq->kick_fd);
    return reply_state(s, m, idx, svq->base);
}

static int h_set_vring_kick(struct vhu_session *s, struct vhu_msg *m)
{
    struct vhu_session_vq *svq = msg_vq(s, (uint32_t)m->payload.u64);

    ring_stop(svq);
    svq->kick_nofd = (m->payload.u64 & VHOST_USER_VRING_NOFD_MASK) != 0;
    vhu_fd_replace(&svq->kick_fd, svq->kick_nofd ? -1 : take_fd(m));
    if (svq->kick_nofd) {
        vhu_err("queue %u: polling mode (no kick fd) is not supported",
                (unsigned)(m->payload.u64 & VHOST_USER_VRING_IDX_MASK));
        return -ENOTSUP;
    }
    return on_owner(svq, op_start, svq);
}

static int h_set_vring_call(struct vhu_session *s, struct vhu_msg *m)
{
    struct vhu_session_vq *svq = msg_vq(s, (uint32_t)m->payload.u64);
    bool nofd = (m->payload.u64 & VHOST_USER_VRING_NOFD_MASK) != 0;

    int old = svq->call_fd;

    svq->call_fd = nofd ? -1 : take_fd(m);
    on_owner(svq, op_set_call, svq);
    vhu_fd_close(&old); /* only after the owner stopped using it */
    return 0;
}

static int h_set_vring_err(struct vhu_session *s, struct vhu_msg *m)
{
    struct vhu_session_vq *svq = msg_vq(s, (uint32_t)m->payload.u64);
    bool nofd = (m->payload.u64 & VHOST_USER_VRING_NOFD_MASK) != 0;

    vhu_fd_replace(&svq->err_fd, nofd ? -1 : take_fd(m));
    return 0;
}

static int h_get_protocol_features(struct vhu_session *s, struct vhu_msg *m)
{
    return reply_u64(s, m, s->b->protocol_features);
}

static int h_set_protocol_features(struct vhu_session *s, struct vhu_msg *m)
{
    uint64_t unknown = m->payload.u64 & ~s->b->protocol_features;

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
    struct vhu_session_vq *svq = msg_vq(s, m->payload.state.index);
    uint32_t on = m->payload.state.num;

    if (on > 1) {
        vhu_err("SET_VRING_ENABLE: %u is neither 0 nor 1", on);
        return -EINVAL;
    }
    svq->want_enabled = on;
    return on_owner(svq, op_enable, svq);
}

static void inflight_unmap(struct vhu_session *s)
{
    if (s->ifl_map)
        munmap(s->ifl_map, s->ifl_size);
    s->ifl_map = NULL;
    s->ifl_size = 0;
    s->ifl_queues = s->ifl_qsize = 0;
}

static int inflight_check(struct vhu_session *s, const struct vhost_user_inflight *in)
{
    if (in->num_queues == 0 || in->num_queues > s->nvqs || in->queue_size == 0 ||
        in->queue_size > s->dev->max_queue_size) {
        vhu_err("inflight buffer for %u queues of %u: device has %u queues of at most %u",
                in->num_queues, in->queue_size, s->nvqs, s->dev->max_queue_size);
        return -EINVAL;
    }
    return 0;
}

/* vhost-user.rst GET_INFLIGHT_FD: the back-end allocates the buffer and shares it; the front-end
 * keeps it across back-end restarts and hands it back with SET_INFLIGHT_FD. */
static int h_get_inflight_fd(struct vhu_session *s, struct vhu_msg *m)
{
    const struct vhost_user_inflight *in = &m->payload.inflight;
    struct vhost_user_inflight *out = &s->reply.payload.inflight;
    size_t size;
    int fd, r = inflight_check(s, in);
    void *p;

    if (r < 0)
        return r;
    size = in->num_queues * vhu_vq_inflight_region_size(in->queue_size);
    fd = memfd_create("vhu-inflight", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)size) < 0 ||
        (p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED) {
        r = -errno;
        close(fd);
        return r;
    }
    inflight_unmap(s);
    s->ifl_map = p;
    s->ifl_size = size;
    s->ifl_queues = in->num_queues;
    s->ifl_qsize = in->queue_size;
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
    size_t need;
    struct stat st;
    void *p;
    int r = inflight_check(s, in);

    if (r < 0)
        return r;
    need = in->num_queues * vhu_vq_inflight_region_size(in->queue_size);
    if (in->mmap_size < need || in->mmap_size > (1ULL << 32) ||
        in->mmap_offset > UINT64_MAX - in->mmap_size || fstat(m->fds[0], &st) < 0 ||
        in->mmap_offset + in->mmap_size > (uint64_t)st.st_size || (in->mmap_offset & 4095)) {
        vhu_err("SET_INFLIGHT_FD: buffer of %llu bytes at %llu does not fit (need %zu)",
                (unsigned long long)in->mmap_size, (unsigned long long)in->mmap_offset, need);
        return -EINVAL;
    }
    p = mmap(NULL, in->mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, m->fds[0],
             (off_t)in->mmap_offset);
    if (p == MAP_FAILED)
        return -errno;
    inflight_unmap(s);
    s->ifl_map = p;
    s->ifl_size = in->mmap_size;
    s->ifl_queues = in->num_queues;
    s->ifl_qsize = in->queue_size;
    return 0;
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
    if ((uint64_t)c->offset + c->size > s->dev->config_size || !s->dev->ops->get_config ||
        s->dev->ops->get_config(s->dev, rc->region, c->offset, c->size) < 0) {
        vhu_warn("GET_CONFIG offset %u size %u refused (config space is %u bytes)", c->offset,
                 c->size, s->dev->config_size);
        s->reply.hdr.size = 0;
    }
    return 1;
}

static int h_set_config(struct vhu_session *s, struct vhu_msg *m)
{
    const struct vhost_user_config *c = &m->payload.config;

    if ((uint64_t)c->offset + c->size > s->dev->config_size || !s->dev->ops->set_config) {
        vhu_err("SET_CONFIG offset %u size %u refused", c->offset, c->size);
        return -EINVAL;
    }
    return s->dev->ops->set_config(s->dev, c->region, c->offset, c->size);
}

static int h_set_status(struct vhu_session *s, struct vhu_msg *m)
{
    if (m->payload.u64 > 0xff) {
        vhu_err("SET_STATUS: 0x%llx is not a status byte", (unsigned long long)m->payload.u64);
        return -EINVAL;
    }
    __atomic_store_n(&s->status, (uint8_t)m->payload.u64, __ATOMIC_RELAXED);
    return 0;
}

static int h_get_status(struct vhu_session *s, struct vhu_msg *m)
{
    return reply_u64(s, m, __atomic_load_n(&s->status, __ATOMIC_RELAXED));
}

static vhu_handler_fn *const handlers[VHOST_USER_MAX_REQUEST] = {
    [VHOST_USER_GET_FEATURES] = h_get_features,
    [VHOST_USER_SET_FEATURES] = h_set_features,
    [VHOST_USER_SET_OWNER] = h_set_owner,
    [VHOST_USER_RESET_OWNER] = h_reset,
    [VHOST_USER_SET_MEM_TABLE] = h_set_mem_table,
    [VHOST_USER_SET_VRING_NUM] = h_set_vring_num,
    [VHOST_USER_SET_VRING_ADDR] = h_set_vring_addr,
    [VHOST_USER_SET_VRING_BASE] = h_set_vring_base,
    [VHOST_USER_GET_VRING_BASE] = h_get_vring_base,
    [VHOST_USER_SET_VRING_KICK] = h_set_vring_kick,
    [VHOST_USER_SET_VRING_CALL] = h_set_vring_call,
    [VHOST_USER_SET_VRING_ERR] = h_set_vring_err,
    [VHOST_USER_GET_PROTOCOL_FEATURES] = h_get_protocol_features,
    [VHOST_USER_SET_PROTOCOL_FEATURES] = h_set_protocol_features,
    [VHOST_USER_GET_QUEUE_NUM] = h_get_queue_num,
    [VHOST_USER_SET_VRING_ENABLE] = h_set_vring_enable,
    [VHOST_USER_SEND_RARP] = h_send_rarp,
    [VHOST_USER_NET_SET_MTU] = h_net_set_mtu,
    [VHOST_USER_SET_BACKEND_REQ_FD] = h_set_backend_req_fd,
    [VHOST_USER_GET_CONFIG] = h_get_config,
    [VHOST_USER_SET_CONFIG] = h_set_config,
    [VHOST_USER_RESET_DEVICE] = h_reset,
    [VHOST_USER_GET_MAX_MEM_SLOTS] = h_get_max_mem_slots,
    [VHOST_USER_ADD_MEM_REG] = h_add_mem_reg,
    [VHOST_USER_REM_MEM_REG] = h_rem_mem_reg,
    [VHOST_USER_SET_STATUS] = h_set_status,
    [VHOST_USER_GET_INFLIGHT_FD] = h_get_inflight_fd,
    [VHOST_USER_SET_INFLIGHT_FD] = h_set_inflight_fd,
    [VHOST_USER_GET_STATUS] = h_get_status,
};

/* ---------------------------------------------------------------------------------------- */
/* Dispatch                                                                                   */
/* ---------------------------------------------------------------------------------------- */

static int send_reply(struct vhu_session *s)
{
    int r = s->ops->send(s->conn, &s->reply);

    vhu_msg_close_fds(&s->reply); /* fds sent with a reply are the peer's copies now */
    if (r < 0)
        vhu_err("cannot send reply to %s: %s", vhu_msg_name(s->reply.hdr.request), strerror(-r));
    return r;
}

static int dispatch(struct vhu_session *s, struct vhu_msg *m)
{
    const struct vhu_msg_info *info;
    struct vhu_msg_ctx ctx = {
        .protocol_features = s->protocol_features,
        .num_queues = s->nvqs,
    };
    const char *why = "invalid";
    bool need_ack;
    int r;

    s->b->stats.messages++;
    r = vhu_msg_validate(m, &ctx, &why);
    if (r < 0) {
        vhu_err("dropping connection: %s (request %u, %u bytes, %u fds): %s",
                vhu_msg_name(m->hdr.request), m->hdr.request, m->hdr.size, m->nfds, why);
        vhu_msg_close_fds(m);
        return r;
    }
    info = vhu_msg_info(m->hdr.request);
    vhu_dbg("<- %s", info->name);
    if (!handlers[m->hdr.request]) {
        vhu_err("dropping connection: %s is not supported", info->name);
        vhu_msg_close_fds(m);
        return -ENOTSUP;
    }
    r = handlers[m->hdr.request](s, m);
    vhu_msg_close_fds(m);
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
/* Session lifetime                                                                           */
/* ---------------------------------------------------------------------------------------- */

VHU_EXPORT int vhu_session_new(struct vhu_backend *b, const struct vhu_session_transport_ops *ops,
                               void *conn, struct vhu_session **out)
{
    struct vhu_device *dev = b->dev;
    struct vhu_session *s;
    int r;

    if (b->session)
        return -EBUSY;
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->b = b;
    s->dev = dev;
    s->ops = ops;
    s->conn = conn;
    s->backend_req_fd = -1;
    /*
     * QEMU negotiates features once per device, not once per connection: after a backend
     * restart it reconnects and goes straight to SET_FEATURES / SET_MEM_TABLE / rings, using the
     * protocol features the previous backend instance agreed to. Those can only be ones we offer,
     * so a session that has not (yet) seen GET_FEATURES runs with the offered set.
     */
    s->protocol_features = b->protocol_features;
    s->nvqs = dev->num_queues;
    s->vqs = calloc(s->nvqs, sizeof(*s->vqs));
    r = s->vqs ? vhu_mem_table_new_empty(&s->mem) : -ENOMEM;
    for (unsigned i = 0; r == 0 && i < s->nvqs; i++) {
        struct vhu_session_vq *svq = &s->vqs[i];
        struct vhu_vq_hooks hooks = {.error = vq_error_hook, .opaque = svq};

        svq->s = s;
        svq->kick_fd = svq->call_fd = svq->err_fd = -1;
        unsigned group = dev->ops->queue_group ? dev->ops->queue_group(dev, i) : i;
        svq->bw = b->nworkers ? &b->workers[group % b->nworkers] : NULL;
        svq->loop = svq->bw ? vhu_worker_loop(svq->bw->w) : b->loop;
        for (unsigned k = 0; k < VHU_SESSION_VQ_WATCHES; k++)
            svq->watches[k].fd = -1;
        r = vhu_vq_new(i, dev->elem_size, dev->max_segs, &svq->vq);
        if (r == 0) {
            vhu_vq_set_hooks(svq->vq, &hooks);
            vhu_vq_set_core(svq->vq, svq);
        }
    }
    if (r < 0) {
        b->session = s; /* let end() free what was built */
        vhu_session_end(s);
        return r;
    }
    b->session = s;
    b->stats.sessions++;
    *out = s;
    return 0;
}

VHU_EXPORT void vhu_session_end(struct vhu_session *s)
{
    if (!s)
        return;
    if (s->vqs) {
        vqs_reset_all(s);
        for (unsigned i = 0; i < s->nvqs; i++)
            vhu_vq_free(s->vqs[i].vq);
    }
    if (s->dev->ops->reset)
        s->dev->ops->reset(s->dev);
    s->dev->acked_features = 0;
    vhu_mem_table_put(s->mem);
    inflight_unmap(s);
    vhu_fd_close(&s->backend_req_fd);
    free(s->vqs);
    if (s->b->session == s)
        s->b->session = NULL;
    free(s);
}

/* ---------------------------------------------------------------------------------------- */
/* Services for devices (vhu/device.h)                                                       */
/* ---------------------------------------------------------------------------------------- */

static void dev_watch_cb(int fd, uint32_t events, void *opaque)
{
    struct vhu_session_watch *w = opaque;

    (void)fd;
    (void)events;
    w->cb(w->opaque);
}

VHU_EXPORT int vhu_dev_watch(struct vhu_vq *vq, int fd, vhu_dev_watch_fn *cb, void *opaque)
{
    struct vhu_session_vq *svq = vhu_vq_core(vq);

    if (!svq || fd < 0 || !cb)
        return -EINVAL;
    for (unsigned k = 0; k < VHU_SESSION_VQ_WATCHES; k++) {
        struct vhu_session_watch *w = &svq->watches[k];
        if (w->fd >= 0)
            continue;
        int r = vhu_loop_add(svq->loop, fd, VHU_LOOP_IN, dev_watch_cb, w);
        if (r < 0)
            return r;
        w->fd = fd;
        w->cb = cb;
        w->opaque = opaque;
        return 0;
    }
    return -ENOSPC;
}

VHU_EXPORT void vhu_dev_unwatch(struct vhu_vq *vq, int fd)
{
    struct vhu_session_vq *svq = vhu_vq_core(vq);

    if (!svq || fd < 0)
        return;
    for (unsigned k = 0; k < VHU_SESSION_VQ_WATCHES; k++) {
        if (svq->watches[k].fd == fd) {
            vhu_loop_del(svq->loop, fd);
            svq->watches[k].fd = -1;
        }
    }
}

VHU_EXPORT int vhu_session_dispatch(struct vhu_session *s, struct vhu_msg *m)
{
    int r = dispatch(s, m);

    if (r < 0)
        s->b->stats.sessions_failed++; /* the transport ends the session */
    return r;
}
