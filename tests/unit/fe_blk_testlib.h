/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Devices for the tests that move a device between backends through the loopback frontend
 * (test_recovery.c: crash and restart; test_migration.c: migration): a one-queue test device,
 * and a null-store blk device with its write-cache mode as the frontend sees it.
 */
#ifndef VHU_TESTS_FE_BLK_TESTLIB_H
#define VHU_TESTS_FE_BLK_TESTLIB_H

#include <stddef.h>
#include <stdint.h>

#include "vhu/dev/blk.h"
#include "vhu/device.h"
#include "vhu/frontend.h"
#include "vhu/vq.h"

/* One queue of up to 256, split or packed, EVENT_IDX, plain elements of up to 8 segments. */
static inline struct vhu_device test_device(const struct vhu_device_ops *ops, const char *name)
{
    return (struct vhu_device){
        .ops = ops,
        .name = name,
        .virtio_id = 0xfffe,
        .features = vhu_feature(VHU_VIRTIO_F_VERSION_1) | vhu_feature(VHU_VIRTIO_F_RING_PACKED) |
                    vhu_feature(VHU_VIRTIO_RING_F_EVENT_IDX),
        .num_queues = 1,
        .max_queue_size = 256,
        .elem_size = sizeof(struct vhu_vq_elem),
        .max_segs = 8,
    };
}

/* A 1 MiB blk device on the null store, or NULL. */
static inline struct vhu_device *blk_null(void)
{
    struct vhu_blk_opts bo = {.null_size = 1 << 20};
    struct vhu_device *dev = NULL;

    return vhu_blk_new(&bo, &dev) < 0 ? NULL : dev;
}

/* Config `writeback` (virtio 5.2.4): 1 write-back, 0 write-through; 0xfe when unreadable. */
static inline uint8_t blk_writeback(struct vhu_fe *fe)
{
    uint8_t v = 0xff;

    if (vhu_fe_get_config(fe, offsetof(struct vhu_virtio_blk_config, writeback), &v, 1) < 0)
        return 0xfe;
    return v;
}

#endif
