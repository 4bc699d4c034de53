/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <stdlib.h>

#include "backend_internal.h"
#include "vhu/log.h"
#include "vhu/util.h"
#include "worker.h"

VHU_EXPORT int vhu_backend_new(struct vhu_device *dev, struct vhu_loop *loop,
                               struct vhu_backend **out)
{
    struct vhu_backend *b;

    if (!dev || !dev->ops || !dev->ops->queue_notify || !loop || dev->num_queues == 0 ||
        dev->num_queues > 256 || dev->max_queue_size == 0 ||
        dev->max_queue_size > VHU_VQ_MAX_SIZE || dev->elem_size < sizeof(struct vhu_vq_elem) ||
        dev->max_segs == 0 || dev->config_size > VHU_CONFIG_MAX_SIZE ||
        dev->state_size > VHU_DEVICE_STATE_MAX ||
        (dev->state_size && (!dev->ops->state_save || !dev->ops->state_load)))
        return -EINVAL;
    b = calloc(1, sizeof(*b));
    if (b)
        b->qtotal = calloc(dev->num_queues, sizeof(*b->qtotal));
    if (!b || !b->qtotal) {
        free(b);
        return -ENOMEM;
    }
    b->dev = dev;
    b->loop = loop;
    b->topts.vu_protocol_mask = UINT64_MAX;
    *out = b;
    return 0;
}

static void workers_free(struct vhu_backend *b)
{
    if (b->workers_shared) {
        b->workers_shared = false;
        b->workers = NULL;
        b->nworkers = 0;
        return;
    }
    for (unsigned i = 0; i < b->nworkers; i++)
        vhu_worker_free(b->workers[i].w);
    free(b->workers);
    b->workers = NULL;
    b->nworkers = 0;
}

/*
 * Busy-poll: run every ring this worker owns that has buffers waiting, kicks off meanwhile.
 * sleep: the worker is about to block: kicks back on, true if a ring got work meanwhile.
 */
static bool worker_poll(void *opaque, bool sleep)
{
    struct vhu_backend_worker *bw = opaque;
    bool found = false;

    /* A ring with no kick source is only ever polled: its worker does not sleep while it runs
     * (and leaves the other rings' kicks off). */
    if (sleep && bw->npolled)
        return true;
    for (unsigned i = 0; i < bw->nowned; i++) {
        struct vhu_core_ring *r = bw->owned[i];
        if (sleep) {
            /* every ring, disabled ones too: one enabled later must have its kicks back */
            bool work = vhu_vq_set_polling(r->vq, false);
            found |= work && r->enabled;
            continue;
        }
        if (!r->enabled || vhu_vq_broken(r->vq))
            continue;
        vhu_vq_set_polling(r->vq, true);
        if (vhu_vq_has_work(r->vq)) {
            r->poll_runs++;
            r->c->dev->ops->queue_notify(r->c->dev, r->vq);
            found = true;
        }
    }
    return found;
}

void vhu_backend_worker_own(struct vhu_core_ring *r)
{
    struct vhu_backend_worker *bw = r->bw;

    if (!bw || bw->nowned >= VHU_ARRAY_SIZE(bw->owned))
        return;
    bw->owned[bw->nowned++] = r;
    if (r->polled && bw->npolled++ == 0)
        vhu_worker_set_spin(bw->w, true);
}

void vhu_backend_worker_disown(struct vhu_core_ring *r)
{
    struct vhu_backend_worker *bw = r->bw;

    if (!bw)
        return;
    for (unsigned i = 0; i < bw->nowned; i++) {
        if (bw->owned[i] == r) {
            bw->owned[i] = bw->owned[--bw->nowned];
            if (r->polled && --bw->npolled == 0)
                vhu_worker_set_spin(bw->w, false);
            return;
        }
    }
}

bool vhu_backend_worker_is_current(const struct vhu_backend_worker *bw)
{
    return bw && vhu_worker_is_current(bw->w);
}

VHU_EXPORT int vhu_backend_set_workers(struct vhu_backend *b, unsigned nworkers, unsigned poll_us)
{
    if (b->core)
        return -EBUSY;
    if (nworkers > 64 || poll_us > VHU_POLL_MAX_US)
        return -EINVAL;
    workers_free(b);
    if (nworkers == 0)
        return 0;
    b->workers = calloc(nworkers, sizeof(*b->workers));
    if (!b->workers)
        return -ENOMEM;
    for (unsigned i = 0; i < nworkers; i++) {
        int r = vhu_worker_new(i, poll_us, worker_poll, &b->workers[i], &b->workers[i].w);
        if (r < 0) {
            b->nworkers = i;
            workers_free(b);
            return r;
        }
        b->nworkers = i + 1;
    }
    return 0;
}

VHU_EXPORT int vhu_backend_set_poll(struct vhu_backend *b, enum vhu_poll_mode mode,
                                    unsigned max_us)
{
    if (b->core || b->workers_shared)
        return -EBUSY;
    if ((mode != VHU_POLL_FIXED && mode != VHU_POLL_ADAPTIVE) || max_us > VHU_POLL_MAX_US)
        return -EINVAL;
    if (!b->nworkers)
        return max_us ? -ENOENT : 0;
    for (unsigned i = 0; i < b->nworkers; i++) {
        int r = vhu_worker_set_poll(b->workers[i].w, mode == VHU_POLL_ADAPTIVE, max_us);
        if (r < 0)
            return r;
    }
    return 0;
}

VHU_EXPORT int vhu_backend_get_worker_stats(const struct vhu_backend *b, unsigned i,
                                            struct vhu_worker_stats *st)
{
    *st = (struct vhu_worker_stats){0};
    if (i >= b->nworkers)
        return -EINVAL;
    vhu_worker_get_poll_stats(b->workers[i].w, st);
    return 0;
}

VHU_EXPORT int vhu_backend_share_workers(struct vhu_backend *b, struct vhu_backend *from)
{
    if (b->core || b == from || from->workers_shared)
        return -EBUSY;
    workers_free(b);
    b->workers = from->workers;
    b->nworkers = from->nworkers;
    b->workers_shared = b->nworkers != 0;
    return 0;
}

VHU_EXPORT void vhu_backend_free(struct vhu_backend *b)
{
    if (!b)
        return;
    vhu_core_free(b->core);
    workers_free(b);
    if (b->dev->ops->destroy)
        b->dev->ops->destroy(b->dev);
    free(b->qtotal);
    free(b);
}

VHU_EXPORT struct vhu_device *vhu_backend_device(const struct vhu_backend *b)
{
    return b->dev;
}

VHU_EXPORT int vhu_backend_set_transport_opts(struct vhu_backend *b,
                                              const struct vhu_backend_transport_opts *o)
{
    if (b->core)
        return -EBUSY;
    b->topts = *o;
    return 0;
}

VHU_EXPORT const struct vhu_backend_transport_opts *
vhu_backend_transport_opts(const struct vhu_backend *b)
{
    return &b->topts;
}

VHU_EXPORT void vhu_backend_count_message(struct vhu_backend *b)
{
    b->stats.messages++;
}

VHU_EXPORT void vhu_backend_count_failure(struct vhu_backend *b)
{
    b->stats.sessions_failed++;
}

static uint64_t racy_u64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

VHU_EXPORT void vhu_backend_get_stats(const struct vhu_backend *b, struct vhu_backend_stats *st)
{
    *st = b->stats;
    for (unsigned i = 0; b->core && i < b->core->nrings; i++)
        st->kicks += racy_u64(&b->core->rings[i].kicks);
}

VHU_EXPORT int vhu_backend_get_session(const struct vhu_backend *b,
                                       struct vhu_backend_session *s)
{
    const struct vhu_core *c = b->core;

    *s = (struct vhu_backend_session){.num_queues = b->dev->num_queues};
    if (!c)
        return 0;
    s->active = true;
    s->features = b->dev->acked_features;
    s->status = __atomic_load_n(&c->status, __ATOMIC_RELAXED);
    if (c->transport.negotiated)
        s->transport_features = c->transport.negotiated(c->transport.opaque);
    return 0;
}

/* A ring's counters (racy reads: its owner may be adding to them). */
static void ring_counters(const struct vhu_core_ring *r, struct vhu_queue_stats *st)
{
    struct vhu_vq_counters vc;

    vhu_vq_get_counters(r->vq, &vc);
    st->requests = vc.used;
    st->out_bytes = vc.out_bytes;
    st->in_bytes = vc.in_bytes;
    st->calls = vc.calls;
    st->errors = vc.errors;
    st->breaks = vc.breaks;
    st->kicks = racy_u64(&r->kicks);
    st->poll_runs = racy_u64(&r->poll_runs);
}

static void counters_add(struct vhu_queue_stats *to, const struct vhu_queue_stats *from)
{
    to->requests += from->requests;
    to->out_bytes += from->out_bytes;
    to->in_bytes += from->in_bytes;
    to->kicks += from->kicks;
    to->calls += from->calls;
    to->poll_runs += from->poll_runs;
    to->errors += from->errors;
    to->breaks += from->breaks;
}

void vhu_backend_core_done(struct vhu_backend *b, const struct vhu_core *c)
{
    for (unsigned i = 0; i < c->nrings; i++) {
        struct vhu_queue_stats st = {0};

        if (!c->rings[i].vq)
            continue;
        ring_counters(&c->rings[i], &st);
        counters_add(&b->qtotal[i], &st);
        b->stats.kicks += st.kicks;
    }
}

VHU_EXPORT int vhu_backend_get_queue_stats(const struct vhu_backend *b, unsigned q,
                                           struct vhu_queue_stats *st)
{
    const struct vhu_core_ring *r;
    struct vhu_queue_stats cur = {0};

    *st = (struct vhu_queue_stats){0};
    if (q >= b->dev->num_queues)
        return -EINVAL;
    *st = b->qtotal[q];
    if (!b->core)
        return 0;
    r = &b->core->rings[q];
    /* control-thread state (started, enabled, num change only through core calls made here) */
    st->started = r->started;
    st->enabled = r->enabled;
    st->polled = r->polled;
    st->broken = vhu_vq_broken(r->vq);
    st->num = r->num;
    ring_counters(r, &cur);
    counters_add(st, &cur);
    return 0;
}

VHU_EXPORT int vhu_backend_config_changed(struct vhu_backend *b)
{
    return b->core ? vhu_core_config_changed(b->core) : -ENOTCONN;
}

VHU_EXPORT unsigned vhu_backend_workers(const struct vhu_backend *b)
{
    return b->nworkers;
}
