/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <stdlib.h>

#include "backend_internal.h"
#include "vhu/log.h"
#include "vhu/util.h"

/* Protocol features the core implements for every device. */
static uint64_t core_protocol_features(const struct vhu_device *dev)
{
    uint64_t pf = vhu_feature(VHOST_USER_PROTOCOL_F_MQ) |
                  vhu_feature(VHOST_USER_PROTOCOL_F_REPLY_ACK) |
                  vhu_feature(VHOST_USER_PROTOCOL_F_BACKEND_REQ) |
                  vhu_feature(VHOST_USER_PROTOCOL_F_BACKEND_SEND_FD) |
                  vhu_feature(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS) |
                  vhu_feature(VHOST_USER_PROTOCOL_F_RESET_DEVICE) |
                  vhu_feature(VHOST_USER_PROTOCOL_F_STATUS);

    if (dev->config_size)
        pf |= vhu_feature(VHOST_USER_PROTOCOL_F_CONFIG);
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

VHU_EXPORT void vhu_backend_free(struct vhu_backend *b)
{
    if (!b)
        return;
    vhu_session_end(b->session);
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
