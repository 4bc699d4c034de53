/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_DEV_RNG_H
#define VHU_DEV_RNG_H

#include <stdint.h>

#include "vhu/device.h"

/* virtio-rng (VIRTIO 1.3 §5.4): one request queue, no config space, entropy from getrandom(2). */
struct vhu_rng_opts {
    uint16_t max_queue_size; /* 0: 1024 */
};

int vhu_rng_new(const struct vhu_rng_opts *opts, struct vhu_device **out);
/* Bytes handed to the driver so far. */
uint64_t vhu_rng_bytes_served(const struct vhu_device *dev);

#endif
