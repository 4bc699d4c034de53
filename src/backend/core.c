/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The device core: one served device instance behind typed calls (vhu/core.h). Transports
 * decode their driver's requests into these calls; the core owns the rings, the memory table
 * reference, the notifiers and the device status, and hands every change to a running ring to
 * the thread that owns it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend_internal.h"
#include "vhu/log.h"
#include "vhu/util.h"
#include "vhu/virtio.h"
#include "worker.h"

static struct vhu_core_ring *ring_at(struct vhu_core *c, unsigned q)
{
    return q < c->nrings ? &c->rings[q] : NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Rings, on their owner thread                                                               */
/* ---------------------------------------------------------------------------------------- */

/*
 * Everything that touches a ring runs on the thread that owns it: the control thread when there
 * are no workers, else the owning worker (the caller waits). The op_* functions are those
 * owner-side bodies.
 */
static int on_owner(struct vhu_core_ring *r, int (*fn)(void *), void *arg)
{
    if (r->bw)
        return vhu_worker_call(r->bw->w, fn, arg);
    return fn(arg);
}

static bool ring_runnable(const struct vhu_core_ring *r)
{
    return r->started && r->enabled && !vhu_vq_broken(r->vq);
}

static void kick_cb(void *opaque)
{
    struct vhu_core_ring *r = opaque;
    struct vhu_core *c = r->c;

    r->kicks++;
    if (ring_runnable(r))
        c->dev->ops->queue_notify(c->dev, r->vq);
}

static void vq_error_hook(struct vhu_vq *vq, void *opaque)
{
    struct vhu_core_ring *r = opaque;

    /* virtio 2.1.2: a device that hit an error it cannot recover from sets NEEDS_RESET. */
    __atomic_fetch_or(&r->c->status, VHU_VIRTIO_CONFIG_S_NEEDS_RESET, __ATOMIC_RELAXED);
    vhu_notifier_signal(r->err);
    vhu_err("queue %u stopped after a driver error; other queues keep running",
            vhu_vq_index(vq));
}

static void unwatch_kick(struct vhu_core_ring *r)
{
    if (r->watched) {
        r->kick->ops->unwatch(r->kick, r->loop);
        r->watched = false;
    }
}

static void *translate(const struct vhu_core *c, enum vhu_addr_space space, uint64_t addr,
                       uint64_t len)
{
    switch (space) {
    case VHU_ADDR_GPA:
        return vhu_mem_gpa_range(c->mem, addr, len);
    case VHU_ADDR_UVA:
        return vhu_mem_uva_range(c->mem, addr, len);
    case VHU_ADDR_HOST:
        return (void *)(uintptr_t)addr;
    }
    return NULL;
}

/* The log settings a ring takes (on its owner thread). */
static void ring_apply_log(struct vhu_core *c, struct vhu_core_ring *r)
{
    struct vhu_vq_log l = {
        .bitmap = c->log, .size = c->log_size, .all = c->log_all, .call = c->log_call};

    vhu_vq_set_log(r->vq, &l);
}

/* Guest-physical addresses of the areas whose writes a logging ring logs: the device area at
 * the address the transport gave for the log, the descriptor area (packed rings write used
 * descriptors there) through the table. */
static int ring_log_gpas(struct vhu_core *c, struct vhu_core_ring *r, unsigned idx, uint64_t dsz,
                         uint64_t usz, struct vhu_vq_config *cfg)
{
    bool desc_ok = false;

    if (r->addr.space == VHU_ADDR_GPA) {
        cfg->desc_gpa = r->addr.desc;
        desc_ok = true;
    } else if (r->addr.space == VHU_ADDR_UVA) {
        desc_ok = vhu_mem_uva_to_gpa(c->mem, r->addr.desc, &cfg->desc_gpa);
    }
    cfg->device_gpa = r->addr.log_device;
    if (!desc_ok || !vhu_mem_gpa_range(c->mem, cfg->desc_gpa, dsz) ||
        !vhu_mem_gpa_range(c->mem, cfg->device_gpa, usz)) {
        vhu_err("queue %u: ring logging asked for, but the log address 0x%llx (or the "
                "descriptor area) is not in guest memory",
                idx, (unsigned long long)cfg->device_gpa);
        return -EFAULT;
    }
    cfg->log_ring = true;
    return 0;
}

/* Translate the ring areas and start the ring and the device's queue. */
static int vq_start(struct vhu_core *c, struct vhu_core_ring *r)
{
    bool packed = vhu_has_feature(c->dev->acked_features, VHU_VIRTIO_F_RING_PACKED);
    uint16_t num = r->num;
    struct vhu_vq_config cfg = {
        .num = num,
        .packed = packed,
        .event_idx = vhu_has_feature(c->dev->acked_features, VHU_VIRTIO_RING_F_EVENT_IDX),
        .indirect = vhu_has_feature(c->dev->acked_features, VHU_VIRTIO_RING_F_INDIRECT_DESC),
        .in_order = vhu_has_feature(c->dev->acked_features, VHU_VIRTIO_F_IN_ORDER),
    };
    uint64_t dsz = packed ? vhu_packed_desc_size(num) : vhu_split_desc_size(num);
    uint64_t asz = packed ? VHU_PACKED_EVENT_SIZE : vhu_split_avail_size(num);
    uint64_t usz = packed ? VHU_PACKED_EVENT_SIZE : vhu_split_used_size(num);
    unsigned idx = (unsigned)(r - c->rings);
    int ret;

    if (num == 0 || !r->addr_set) {
        vhu_err("queue %u: started before its size and addresses were set", idx);
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
    cfg.desc = translate(c, r->addr.space, r->addr.desc, dsz);
    cfg.driver = translate(c, r->addr.space, r->addr.driver, asz);
    cfg.device = translate(c, r->addr.space, r->addr.device, usz);
    if (!cfg.desc || !cfg.driver || !cfg.device) {
        vhu_err("queue %u: ring addresses are outside the memory table%s", idx,
                c->mem->nregions ? ""
                                 : " (it is empty: a frontend that reconnects without resending"
                                   " its memory needs vhud --no-mem-slots)");
        return -EFAULT;
    }
    if (r->addr.log && (ret = ring_log_gpas(c, r, idx, dsz, usz, &cfg)) < 0)
        return ret;
    ring_apply_log(c, r);
    vhu_vq_set_inflight_region(r->vq, NULL);
    r->tracks = false;
    if (c->ifl_region && idx < c->ifl_queues) {
        if (num > c->ifl_qsize) {
            vhu_warn("queue %u: ring of %u is larger than the inflight buffer's %u: untracked",
                     idx, num, c->ifl_qsize);
        } else if (packed && c->ifl_stride < vhu_vq_inflight_region_size(num)) {
            vhu_warn("queue %u: the inflight buffer has split-ring areas only: packed ring "
                     "untracked until the device is reset", idx);
        } else {
            vhu_vq_set_inflight_region(r->vq, c->ifl_region + (size_t)idx * c->ifl_stride);
            r->tracks = true;
        }
    }
    ret = vhu_vq_set_base(r->vq, r->base);
    if (ret == 0)
        ret = vhu_vq_start(r->vq, &cfg, c->mem);
    if (ret < 0) {
        r->tracks = false;
        vhu_err("queue %u: cannot start: %s", idx, strerror(-ret));
        return ret;
    }
    vhu_vq_set_call(r->vq, r->call);
    if (c->dev->ops->queue_start) {
        ret = c->dev->ops->queue_start(c->dev, r->vq);
        if (ret < 0) {
            vhu_vq_stop(r->vq);
            r->tracks = false;
            vhu_err("queue %u: device refused to start it: %s", idx, strerror(-ret));
            return ret;
        }
    }
    r->started = true;
    r->polled = !vhu_notifier_watchable(r->kick);
    /* A polled ring never wants kicks: its owner looks at it. */
    if (r->polled)
        vhu_vq_set_polling(r->vq, true);
    vhu_backend_worker_own(r);
    if (vhu_vq_resubmitted(r->vq))
        vhu_info("queue %u: resubmitting %u requests left in flight by the previous backend",
                 idx, vhu_vq_resubmitted(r->vq));
    return 0;
}

static void vq_stop(struct vhu_core *c, struct vhu_core_ring *r)
{
    unwatch_kick(r);
    if (!r->started)
        return;
    vhu_backend_worker_disown(r);
    if (c->dev->ops->queue_stop)
        c->dev->ops->queue_stop(c->dev, r->vq);
    /* A device must complete (or drop) every request in queue_stop: the rings go away. */
    if (vhu_vq_inflight(r->vq))
        vhu_err("queue %u: device stopped with %u requests still in flight",
                (unsigned)(r - c->rings), vhu_vq_inflight(r->vq));
    r->base = vhu_vq_get_base(r->vq);
    vhu_vq_stop(r->vq);
    r->started = false;
    r->polled = false;
    r->tracks = false;
}

static int watch_kick(struct vhu_core_ring *r)
{
    int ret;

    if (r->watched || !vhu_notifier_watchable(r->kick))
        return 0;
    ret = r->kick->ops->watch(r->kick, r->loop, kick_cb, r);
    if (ret == 0)
        r->watched = true;
    return ret;
}

/* Process buffers made available before the ring started (the vhost-user spec asks back-ends
 * not to rely on a kick after SET_VRING_KICK; other transports alike). */
static void vq_run(struct vhu_core *c, struct vhu_core_ring *r)
{
    if (ring_runnable(r))
        c->dev->ops->queue_notify(c->dev, r->vq);
}

static int op_start(void *arg)
{
    struct vhu_core_ring *r = arg;
    struct vhu_core *c = r->c;
    int ret;

    vq_stop(c, r);
    ret = vq_start(c, r);
    if (ret < 0)
        return ret;
    ret = watch_kick(r);
    if (ret < 0) {
        vq_stop(c, r);
        return ret;
    }
    vq_run(c, r);
    return 0;
}

static int op_stop(void *arg)
{
    struct vhu_core_ring *r = arg;

    vq_stop(r->c, r);
    return 0;
}

/* Re-translate a running ring's areas (new memory table, new addresses), keeping its position
 * and its kick watch. */
static int op_restart(void *arg)
{
    struct vhu_core_ring *r = arg;
    struct vhu_core *c = r->c;
    bool watched = r->watched;
    int ret;

    if (!r->started)
        return 0;
    /* vq_stop() has the device finish its in-flight requests (queue_stop) before the rings and
     * the old memory table are let go. */
    r->watched = false; /* keep the kick watch across the restart */
    vq_stop(c, r);
    r->watched = watched;
    ret = vq_start(c, r);
    if (ret < 0)
        unwatch_kick(r);
    return ret;
}

struct notifier_swap {
    struct vhu_core_ring *r;
    struct vhu_notifier *n;
};

static int op_set_kick(void *arg)
{
    struct notifier_swap *sw = arg;
    struct vhu_core_ring *r = sw->r;
    struct vhu_notifier *old = r->kick;
    bool was_polled = r->polled;
    int ret = 0;

    unwatch_kick(r);
    r->kick = sw->n;
    sw->n = old; /* the caller frees it */
    if (r->started) {
        /* from polled to kicked or back: the busy-poll bookkeeping follows */
        vhu_backend_worker_disown(r);
        r->polled = !vhu_notifier_watchable(r->kick);
        vhu_vq_set_polling(r->vq, r->polled);
        vhu_backend_worker_own(r);
        ret = watch_kick(r);
        if (was_polled && !r->polled)
            vq_run(r->c, r);
    }
    return ret;
}

static int op_set_call(void *arg)
{
    struct notifier_swap *sw = arg;
    struct vhu_core_ring *r = sw->r;
    struct vhu_notifier *old = r->call;

    r->call = sw->n;
    sw->n = old;
    vhu_vq_set_call(r->vq, r->call);
    /* QEMU swaps call fds after SET_VRING_ENABLE; an interrupt raised on the old sink in
     * between would be lost, so signal the new one once. */
    if (r->started)
        vhu_notifier_signal(r->call);
    return 0;
}

static int op_set_err(void *arg)
{
    struct notifier_swap *sw = arg;
    struct vhu_notifier *old = sw->r->err;

    sw->r->err = sw->n;
    sw->n = old;
    return 0;
}

struct enable_arg {
    struct vhu_core_ring *r;
    bool on;
};

static int op_enable(void *arg)
{
    struct enable_arg *e = arg;

    e->r->enabled = e->on;
    if (e->on)
        vq_run(e->r->c, e->r);
    return 0;
}

static void ring_stop(struct vhu_core_ring *r)
{
    on_owner(r, op_stop, r);
}

static void ring_swap(struct vhu_core_ring *r, int (*op)(void *), struct vhu_notifier *n, int *ret)
{
    struct notifier_swap sw = {.r = r, .n = n};

    *ret = on_owner(r, op, &sw);
    vhu_notifier_free(sw.n); /* the one replaced: the owner no longer uses it */
}

/* Forget everything about a ring (reset, end of the core). */
static void ring_forget(struct vhu_core_ring *r)
{
    int ret;

    ring_stop(r);
    ring_swap(r, op_set_kick, NULL, &ret);
    ring_swap(r, op_set_call, NULL, &ret);
    ring_swap(r, op_set_err, NULL, &ret);
    r->num = 0;
    r->addr_set = false;
    r->base = 0;
    r->enabled = false;
}

/* ---------------------------------------------------------------------------------------- */
/* Typed calls                                                                                */
/* ---------------------------------------------------------------------------------------- */

#define RING_OR_FAIL(c, q, r)                                                                  \
    struct vhu_core_ring *r = ring_at((c), (q));                                               \
    if (!r) {                                                                                  \
        vhu_err("queue %u: the device has %u queues", (q), (c)->nrings);                       \
        return -EINVAL;                                                                        \
    }

VHU_EXPORT int vhu_core_ring_set_num(struct vhu_core *c, unsigned q, uint16_t num)
{
    RING_OR_FAIL(c, q, r);
    if (r->started) {
        vhu_err("queue %u: size changed while it runs", q);
        return -EBUSY;
    }
    if (num == 0 || num > c->dev->max_queue_size) {
        vhu_err("queue %u: size %u outside 1..%u", q, num, c->dev->max_queue_size);
        return -EINVAL;
    }
    r->num = num;
    return 0;
}

VHU_EXPORT int vhu_core_ring_set_base(struct vhu_core *c, unsigned q, uint32_t base)
{
    RING_OR_FAIL(c, q, r);
    if (r->started) {
        vhu_err("queue %u: position changed while it runs", q);
        return -EBUSY;
    }
    r->base = base;
    return 0;
}

struct set_addr_arg {
    struct vhu_core_ring *r;
    const struct vhu_ring_addr *a;
};

static int op_set_addr(void *arg)
{
    struct set_addr_arg *sa = arg;

    sa->r->addr = *sa->a;
    sa->r->addr_set = true;
    /* A running ring picks the new areas up at once (vhost-user's logging toggle sends them
     * again): re-translated on its thread, between two bursts. */
    return op_restart(sa->r);
}

VHU_EXPORT int vhu_core_ring_set_addr(struct vhu_core *c, unsigned q, const struct vhu_ring_addr *a)
{
    RING_OR_FAIL(c, q, r);
    struct set_addr_arg sa = {.r = r, .a = a};

    if (a->space != VHU_ADDR_GPA && a->space != VHU_ADDR_UVA && a->space != VHU_ADDR_HOST) {
        vhu_err("queue %u: unknown address space %d", q, (int)a->space);
        return -EINVAL;
    }
    return on_owner(r, op_set_addr, &sa);
}

/* Hand n to ring q through op (on the ring's thread); the notifier replaced is freed. */
static int ring_set_notifier(struct vhu_core *c, unsigned q, int (*op)(void *),
                             struct vhu_notifier *n)
{
    struct vhu_core_ring *r = ring_at(c, q);
    int ret;

    if (!r) {
        vhu_notifier_free(n);
        return -EINVAL;
    }
    ring_swap(r, op, n, &ret);
    return ret;
}

VHU_EXPORT int vhu_core_ring_set_kick(struct vhu_core *c, unsigned q, struct vhu_notifier *kick)
{
    return ring_set_notifier(c, q, op_set_kick, kick);
}

VHU_EXPORT int vhu_core_ring_set_call(struct vhu_core *c, unsigned q, struct vhu_notifier *call)
{
    return ring_set_notifier(c, q, op_set_call, call);
}

VHU_EXPORT int vhu_core_ring_set_err(struct vhu_core *c, unsigned q, struct vhu_notifier *err)
{
    return ring_set_notifier(c, q, op_set_err, err);
}

VHU_EXPORT int vhu_core_ring_start(struct vhu_core *c, unsigned q)
{
    RING_OR_FAIL(c, q, r);
    return on_owner(r, op_start, r);
}

VHU_EXPORT int vhu_core_ring_stop(struct vhu_core *c, unsigned q, uint32_t *base)
{
    RING_OR_FAIL(c, q, r);
    ring_stop(r);
    if (base)
        *base = r->base;
    return 0;
}

VHU_EXPORT int vhu_core_ring_enable(struct vhu_core *c, unsigned q, bool on)
{
    RING_OR_FAIL(c, q, r);
    struct enable_arg e = {.r = r, .on = on};

    return on_owner(r, op_enable, &e);
}

VHU_EXPORT bool vhu_core_ring_started(const struct vhu_core *c, unsigned q)
{
    return q < c->nrings && c->rings[q].started;
}

VHU_EXPORT int vhu_core_ring_exec(struct vhu_core *c, unsigned q, int (*fn)(void *arg), void *arg)
{
    RING_OR_FAIL(c, q, r);
    return on_owner(r, fn, arg);
}

VHU_EXPORT unsigned vhu_core_poll(struct vhu_core *c)
{
    unsigned n = 0;

    for (unsigned i = 0; i < c->nrings; i++) {
        struct vhu_core_ring *r = &c->rings[i];
        if (r->bw || !ring_runnable(r) || !vhu_vq_has_work(r->vq))
            continue;
        r->poll_runs++;
        c->dev->ops->queue_notify(c->dev, r->vq);
        n++;
    }
    return n;
}

VHU_EXPORT uint64_t vhu_core_features(const struct vhu_core *c)
{
    return c->dev->features;
}

VHU_EXPORT int vhu_core_set_features(struct vhu_core *c, uint64_t features)
{
    uint64_t unknown = features & ~c->dev->features;
    int ret;

    if (unknown) {
        vhu_err("features 0x%llx were not offered", (unsigned long long)unknown);
        return -EINVAL;
    }
    c->dev->acked_features = features;
    if (c->dev->ops->set_features) {
        ret = c->dev->ops->set_features(c->dev, features);
        if (ret < 0) {
            vhu_err("the device refused features 0x%llx", (unsigned long long)features);
            return ret;
        }
    }
    return 0;
}

VHU_EXPORT uint64_t vhu_core_acked_features(const struct vhu_core *c)
{
    return c->dev->acked_features;
}

static bool config_range_ok(const struct vhu_core *c, uint32_t off, uint32_t len)
{
    return (uint64_t)off + len <= c->dev->config_size;
}

VHU_EXPORT int vhu_core_get_config(struct vhu_core *c, uint32_t off, void *buf, uint32_t len)
{
    if (!config_range_ok(c, off, len) || !c->dev->ops->get_config)
        return -EINVAL;
    return c->dev->ops->get_config(c->dev, buf, off, len);
}

VHU_EXPORT int vhu_core_set_config(struct vhu_core *c, uint32_t off, const void *buf,
                                   uint32_t len)
{
    if (!config_range_ok(c, off, len))
        return -EINVAL;
    if (!c->dev->ops->set_config)
        return -EPERM;
    int r = c->dev->ops->set_config(c->dev, buf, off, len);
    if (r == 0)
        vhu_core_state_save(c); /* the guest changed something a successor must know */
    return r;
}

VHU_EXPORT uint8_t vhu_core_status(const struct vhu_core *c)
{
    return __atomic_load_n(&c->status, __ATOMIC_RELAXED);
}

VHU_EXPORT void vhu_core_set_status(struct vhu_core *c, uint8_t status)
{
    __atomic_store_n(&c->status, status, __ATOMIC_RELAXED);
}

VHU_EXPORT void vhu_core_reset(struct vhu_core *c)
{
    for (unsigned i = 0; i < c->nrings; i++)
        ring_forget(&c->rings[i]);
    c->dev->acked_features = 0;
    vhu_core_set_status(c, 0);
    vhu_core_set_log_all(c, false);
    if (c->dev->ops->reset)
        c->dev->ops->reset(c->dev);
}

/* Whether a bitmap of size bytes covers every page of t. */
static bool log_covers(const struct vhu_mem_table *t, uint64_t size)
{
    uint64_t end = vhu_mem_gpa_end(t);
    uint64_t pages = end / VHU_LOG_PAGE + (end % VHU_LOG_PAGE != 0);

    return size >= pages / 8 + (pages % 8 != 0);
}

/* The memory table changed under running rings: re-translate their areas. */
VHU_EXPORT int vhu_core_set_mem(struct vhu_core *c, struct vhu_mem_table *t)
{
    struct vhu_mem_table *old = c->mem;
    int ret = 0;

    if (c->log && !log_covers(t, c->log_size))
        vhu_warn("the new memory table reaches past the dirty log: writes there are not logged");

    c->mem = t;
    /* Every ring, even after one fails: a running ring left out would keep translating through
     * the old table, released below. A ring that fails is stopped; the first error is returned. */
    for (unsigned i = 0; i < c->nrings; i++) {
        int r = on_owner(&c->rings[i], op_restart, &c->rings[i]);
        if (r < 0 && ret == 0)
            ret = r;
    }
    vhu_mem_table_put(old);
    return ret;
}

VHU_EXPORT const struct vhu_mem_table *vhu_core_mem(const struct vhu_core *c)
{
    return c->mem;
}

static int op_apply_log(void *arg)
{
    struct vhu_core_ring *r = arg;

    ring_apply_log(r->c, r);
    return 0;
}

static void log_apply_all(struct vhu_core *c)
{
    for (unsigned i = 0; i < c->nrings; i++)
        on_owner(&c->rings[i], op_apply_log, &c->rings[i]);
}

VHU_EXPORT int vhu_core_set_log(struct vhu_core *c, void *bitmap, uint64_t size)
{
    if (bitmap && (size == 0 || !log_covers(c->mem, size))) {
        vhu_err("dirty log of %llu bytes does not cover guest memory up to 0x%llx",
                (unsigned long long)size, (unsigned long long)vhu_mem_gpa_end(c->mem));
        return -EINVAL;
    }
    c->log = bitmap;
    c->log_size = bitmap ? size : 0;
    log_apply_all(c);
    return 0;
}

VHU_EXPORT void vhu_core_set_log_all(struct vhu_core *c, bool on)
{
    if (c->log_all == on)
        return;
    c->log_all = on;
    log_apply_all(c);
}

VHU_EXPORT void vhu_core_set_log_notifier(struct vhu_core *c, struct vhu_notifier *n)
{
    struct vhu_notifier *old = c->log_call;

    c->log_call = n;
    log_apply_all(c);
    vhu_notifier_free(old); /* no ring uses it any more */
}

VHU_EXPORT size_t vhu_core_inflight_region_size(uint16_t qsize)
{
    return vhu_vq_inflight_region_size(qsize);
}

VHU_EXPORT int vhu_core_inflight_check(const struct vhu_core *c, uint16_t nqueues, uint16_t qsize)
{
    if (nqueues == 0 || nqueues > c->nrings || qsize == 0 || qsize > c->dev->max_queue_size) {
        vhu_err("inflight buffer for %u queues of %u: device has %u queues of at most %u",
                nqueues, qsize, c->nrings, c->dev->max_queue_size);
        return -EINVAL;
    }
    return 0;
}

VHU_EXPORT size_t vhu_core_inflight_size(const struct vhu_core *c, uint16_t nqueues,
                                        uint16_t qsize)
{
    return (size_t)nqueues * vhu_vq_inflight_region_size(qsize) +
           vhu_core_state_area_size(c->dev);
}

VHU_EXPORT int vhu_core_set_inflight(struct vhu_core *c, void *region, uint16_t nqueues,
                                     uint16_t qsize)
{
    return vhu_core_set_inflight_buffer(c, region,
                                        region ? (size_t)nqueues * vhu_vq_inflight_region_size(qsize)
                                               : 0,
                                        nqueues, qsize);
}

VHU_EXPORT int vhu_core_set_inflight_buffer(struct vhu_core *c, void *region, size_t size,
                                            uint16_t nqueues, uint16_t qsize)
{
    size_t stride = region ? vhu_vq_inflight_region_size(qsize) : 0;
    size_t rings = (size_t)nqueues * stride;

    if (region && vhu_core_inflight_check(c, nqueues, qsize) < 0)
        return -EINVAL;
    if (region && size < rings) {
        /* A buffer an older vhud made (split-ring areas only) still carries the requests it
         * had in flight: take it for split rings, without device state. */
        stride = vhu_vq_inflight_split_size(qsize);
        rings = (size_t)nqueues * stride;
        if (size < rings) {
            vhu_err("inflight buffer of %zu bytes is smaller than its %zu bytes of ring areas",
                    size, rings);
            return -EINVAL;
        }
        vhu_warn("inflight buffer with split-ring areas only (made by an older backend): packed "
                 "rings untracked and no device state until the device is reset");
    }
    for (unsigned i = 0; i < c->nrings; i++) {
        if (c->rings[i].tracks) {
            vhu_err("inflight buffer replaced while queue %u tracks into it", i);
            return -EBUSY;
        }
    }
    c->ifl_region = region;
    c->ifl_queues = region ? nqueues : 0;
    c->ifl_qsize = region ? qsize : 0;
    c->ifl_stride = stride;
    /* The state area follows the ring areas; a region made without one (another backend's, or
     * for a device without state) carries no state. */
    vhu_core_state_attach(c, region && stride == vhu_vq_inflight_region_size(qsize) &&
                                     size - rings >= vhu_core_state_area_size(c->dev) &&
                                     vhu_core_state_area_size(c->dev)
                                 ? (uint8_t *)region + rings
                                 : NULL);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Lifetime                                                                                   */
/* ---------------------------------------------------------------------------------------- */

VHU_EXPORT int vhu_core_new(struct vhu_backend *b, struct vhu_core **out)
{
    struct vhu_device *dev = b->dev;
    struct vhu_core *c;
    int ret;

    if (b->core)
        return -EBUSY;
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->b = b;
    c->dev = dev;
    c->nrings = dev->num_queues;
    c->rings = calloc(c->nrings, sizeof(*c->rings));
    ret = c->rings ? vhu_mem_table_new_empty(&c->mem) : -ENOMEM;
    for (unsigned i = 0; ret == 0 && i < c->nrings; i++) {
        struct vhu_core_ring *r = &c->rings[i];
        struct vhu_vq_hooks hooks = {.error = vq_error_hook, .opaque = r};
        unsigned group = dev->ops->queue_group ? dev->ops->queue_group(dev, i) : i;

        r->c = c;
        r->bw = b->nworkers ? &b->workers[group % b->nworkers] : NULL;
        r->loop = r->bw ? vhu_worker_loop(r->bw->w) : b->loop;
        vhu_dev_watches_init(&r->watches);
        ret = vhu_vq_new(i, dev->elem_size, dev->max_segs, &r->vq);
        if (ret == 0) {
            vhu_vq_set_hooks(r->vq, &hooks);
            vhu_vq_set_core(r->vq, r);
        }
    }
    b->core = c; /* on failure, let free() take what was built */
    if (ret < 0) {
        vhu_core_free(c);
        return ret;
    }
    b->stats.sessions++;
    *out = c;
    return 0;
}

VHU_EXPORT void vhu_core_free(struct vhu_core *c)
{
    if (!c)
        return;
    if (c->rings) {
        for (unsigned i = 0; i < c->nrings; i++) {
            if (c->rings[i].vq)
                ring_forget(&c->rings[i]);
        }
        vhu_backend_core_done(c->b, c); /* the rings are stopped: no owner adds any more */
        for (unsigned i = 0; i < c->nrings; i++)
            vhu_vq_free(c->rings[i].vq);
    }
    if (c->dev->ops->reset)
        c->dev->ops->reset(c->dev);
    c->dev->acked_features = 0;
    vhu_mem_table_put(c->mem);
    vhu_notifier_free(c->log_call);
    free(c->rings);
    if (c->b->core == c)
        c->b->core = NULL;
    free(c);
}

VHU_EXPORT void vhu_core_set_transport(struct vhu_core *c, const struct vhu_core_transport *t)
{
    c->transport = t ? *t : (struct vhu_core_transport){0};
}

VHU_EXPORT int vhu_core_config_changed(struct vhu_core *c)
{
    if (!c->dev->config_size)
        return -EINVAL;
    if (!c->transport.config_changed)
        return -ENOTSUP;
    return c->transport.config_changed(c->transport.opaque);
}

VHU_EXPORT struct vhu_device *vhu_core_device(const struct vhu_core *c)
{
    return c->dev;
}

VHU_EXPORT struct vhu_backend *vhu_core_backend(const struct vhu_core *c)
{
    return c->b;
}

VHU_EXPORT unsigned vhu_core_num_queues(const struct vhu_core *c)
{
    return c->nrings;
}
