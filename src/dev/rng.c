/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * virtio-rng (VIRTIO 1.3 §5.4): the smallest real device, and the one to copy when writing a new
 * one. Everything a device needs is here:
 *
 *   1. a state struct with struct vhu_device at its head;
 *   2. a request struct with struct vhu_vq_elem at its head, whose size goes into elem_size so
 *      the queue's element pool has room for it (rng needs nothing more per request);
 *   3. queue_notify(): pop every available chain, fill it, push it, flush once per batch;
 *   4. reset() and destroy().
 *
 * It includes only the device API. It never sees a socket or a vhost-user message, so it runs
 * unchanged over every transport the core supports.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

#include "vhu/dev/rng.h"
#include "vhu/device.h"
#include "vhu/log.h"
#include "vhu/util.h"
#include "vhu/virtio.h"
#include "vhu/vq.h"

struct rng_dev {
    struct vhu_device dev; /* must be first */
    uint64_t bytes_served;
};

struct rng_req {
    struct vhu_vq_elem elem; /* must be first */
};

/* §5.4.6: the device fills a device-writable buffer with random bytes; the buffer is the whole
 * request. A chain with readable descriptors is a driver error (§5.4.6.1: the driver MUST NOT
 * place device-readable buffers in the queue). Returns bytes written. */
static uint32_t fill(struct vhu_vq_elem *e)
{
    uint64_t written = 0;

    for (uint32_t i = e->out_num; i < e->out_num + e->in_num; i++) {
        uint8_t *p = e->iov[i].iov_base;
        size_t left = e->iov[i].iov_len;
        while (left) {
            ssize_t n = getrandom(p, left, 0);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return (uint32_t)written; /* hand out what we have; never a partial lie */
            }
            p += n;
            left -= (size_t)n;
            written += (uint64_t)n;
        }
    }
    return written > UINT32_MAX ? UINT32_MAX : (uint32_t)written;
}

static void rng_queue_notify(struct vhu_device *dev, struct vhu_vq *vq)
{
    struct rng_dev *rng = (struct rng_dev *)dev;
    struct vhu_vq_elem *e;

    /* Keep kicks off while draining; re-enable and re-check before returning so a buffer added
     * in between is not left waiting (the "enable, barrier, re-check" idiom). */
    do {
        vhu_vq_disable_notify(vq);
        while ((e = vhu_vq_pop(vq)) != NULL) {
            uint32_t len = 0;
            if (e->out_num) {
                /* A driver bug or a hostile guest: stop this queue, nothing else. */
                vhu_vq_break(vq, "rng request with device-readable buffers");
                break;
            }
            len = fill(e);
            rng->bytes_served += len;
            vhu_vq_push(vq, e, len);
        }
        vhu_vq_flush(vq);
    } while (!vhu_vq_broken(vq) && vhu_vq_enable_notify(vq));
}

static void rng_reset(struct vhu_device *dev)
{
    (void)dev; /* no state survives a reset */
}

static void rng_destroy(struct vhu_device *dev)
{
    free(dev);
}

static const struct vhu_device_ops rng_ops = {
    .queue_notify = rng_queue_notify,
    .reset = rng_reset,
    .destroy = rng_destroy,
};

VHU_EXPORT int vhu_rng_new(const struct vhu_rng_opts *opts, struct vhu_device **out)
{
    struct rng_dev *rng = calloc(1, sizeof(*rng));
    uint16_t qsz = opts && opts->max_queue_size ? opts->max_queue_size : 1024;

    if (!rng)
        return -ENOMEM;
    rng->dev = (struct vhu_device){
        .ops = &rng_ops,
        .name = "rng",
        .virtio_id = VHU_VIRTIO_ID_RNG,
        .features = vhu_feature(VHU_VIRTIO_F_VERSION_1) | vhu_feature(VHU_VIRTIO_RING_F_INDIRECT_DESC) |
                    vhu_feature(VHU_VIRTIO_RING_F_EVENT_IDX) | vhu_feature(VHU_VIRTIO_F_RING_PACKED),
        .num_queues = 1,
        .max_queue_size = qsz,
        .config_size = 0,
        .elem_size = sizeof(struct rng_req),
        .max_segs = 64,
    };
    *out = &rng->dev;
    return 0;
}

VHU_EXPORT uint64_t vhu_rng_bytes_served(const struct vhu_device *dev)
{
    return ((const struct rng_dev *)dev)->bytes_served;
}
