/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <stdlib.h>

#include "backend_internal.h"
#include "vhu/log.h"
#include "vhu/util.h"
#include "worker.h"

/* Protocol features the core implements for every device, plus those the device's ops call for. */
static uint64_t core_protocol_features(const struct vhu_device *dev)
{
    uint64_t pf = vhu_feature(VHOST_USER_PROTOCOL_F_MQ) |
                  vhu_feature(VHOST_USER_PROTOCOL_F_REPLY_ACK) |
                  vhu_feature(VHOST_USER_PROTOCOL_F_BACKEND_REQ) |
                  vhu_feature(VHOST_USER_PROTOCOL_F_BACKEND_SEND_FD) |
                  vhu_feature(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS) |
                  vhu_feature(VHOST_USER_PROTOCOL_F_RESET_DEVICE) |
                  vhu_feature(VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD) |
                  vhu_feature(VHOST_USER_PROTOCOL_F_STATUS);

    if (dev->config_size)
        pf |= vhu_feature(VHOST_USER_PROTOCOL_F_CONFIG);
    /* Device-specific messages: offered only to devices that handle them. */
    if (dev->ops->announce)
        pf |= vhu_feature(VHOST_USER_PROTOCOL_F_RARP);
    if (dev->ops->set_mtu)
        pf |= vhu_feature(VHOST_USER_PROTOCOL_F_NET_MTU);
    return pf;
}

VHU_EXPORT int vhu_backend_new(struct vhu_device *dev, struct vhu_loop *loop,
                               struct vhu_backend **out)
{
    struct vhu_backend *b;

    if (!dev || !dev->ops || !dev->ops->queue_notify || !loop || dev->num_queues == 0 ||
        dev->num_queues > 256 || dev->max_queue_size == 0 ||
        dev->max_queue_size > VHU_VQ_MAX_SIZE || dev->elem_size < sizeof(struct vhu_vq_elem) ||
        dev->max_segs == 0 || dev->config_size > VHOST_USER_MAX_CONFIG_SIZE)
        return -EINVAL;
    b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->dev = dev;
    b->loop = loop;
    b->protocol_features = core_protocol_features(dev);
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

    for (unsigned i = 0; i < bw->nowned; i++) {
        struct vhu_session_vq *svq = bw->owned[i];
        if (sleep) {
            /* every ring, disabled ones too: one enabled later must have its kicks back */
            bool work = vhu_vq_set_polling(svq->vq, false);
            found |= work && svq->enabled;
            continue;
        }
        if (!svq->enabled || vhu_vq_broken(svq->vq))
            continue;
        vhu_vq_set_polling(svq->vq, true);
        if (vhu_vq_has_work(svq->vq)) {
            svq->s->dev->ops->queue_notify(svq->s->dev, svq->vq);
            found = true;
        }
    }
    return found;
}

void vhu_backend_worker_own(struct vhu_session_vq *svq)
{
    struct vhu_backend_worker *bw = svq->bw;

    if (bw && bw->nowned < VHU_ARRAY_SIZE(bw->owned))
        bw->owned[bw->nowned++] = svq;
}

void vhu_backend_worker_disown(struct vhu_session_vq *svq)
{
    struct vhu_backend_worker *bw = svq->bw;

    if (!bw)
        return;
    for (unsigned i = 0; i < bw->nowned; i++) {
        if (bw->owned[i] == svq) {
            bw->owned[i] = bw->owned[--bw->nowned];
            return;
        }
    }
}

VHU_EXPORT int vhu_backend_set_workers(struct vhu_backend *b, unsigned nworkers, unsigned poll_us)
{
    if (b->session || nworkers > 64)
        return -EBUSY;
    workers_free(b);
    if (nworkers == 0)
        return 0;
    b->workers = calloc(nworkers, sizeof(*b->workers));
    if (!b->workers)
        return -ENOMEM;
    b->poll_us = poll_us;
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

VHU_EXPORT int vhu_backend_share_workers(struct vhu_backend *b, struct vhu_backend *from)
{
    if (b->session || b == from || from->workers_shared)
        return -EBUSY;
    workers_free(b);
    b->workers = from->workers;
    b->nworkers = from->nworkers;
    b->poll_us = from->poll_us;
    b->workers_shared = b->nworkers != 0;
    return 0;
}

VHU_EXPORT void vhu_backend_free(struct vhu_backend *b)
{
    if (!b)
        return;
    vhu_session_end(b->session);
    workers_free(b);
    if (b->dev->ops->destroy)
        b->dev->ops->destroy(b->dev);
    free(b);
}

VHU_EXPORT struct vhu_device *vhu_backend_device(const struct vhu_backend *b)
{
    return b->dev;
}

VHU_EXPORT uint64_t vhu_backend_protocol_features(const struct vhu_backend *b)
{
    return b->protocol_features;
}

VHU_EXPORT int vhu_backend_limit_protocol_features(struct vhu_backend *b, uint64_t mask)
{
    if (b->session)
        return -EBUSY;
    b->protocol_features = core_protocol_features(b->dev) & mask;
    return 0;
}

VHU_EXPORT void vhu_backend_get_stats(const struct vhu_backend *b, struct vhu_backend_stats *st)
{
    *st = b->stats;
}
