/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * virtio-rng device model: the real device and backend core in one process, each test run over
 * both paths of the test driver (tdrv.h: "vhost-user/" over the loopback transport, "core/"
 * through the core's typed calls alone). Entropy fills every writable segment; a readable
 * buffer is a driver error that breaks the queue (NEEDS_RESET) but not the backend.
 */
#include "rng_bench.h"
#include "vhu/util.h"
#include "vhu/virtio.h"
#include "vhu_test.h"

static void run_rng(bool packed)
{
    struct tdrv_opts o = {.num_queues = 1, .queue_size = 32, .packed = packed,
                          .event_idx = true, .indirect = true, .mem_size = 1 << 20};
    struct rng_bench t;
    uint64_t gpa;
    uint8_t *buf, first[256];

    ASSERT_OK(rng_up(&t, tdrv_path, 0, &o));
    ASSERT_EQ(vhu_has_feature(tdrv_features(t.d), VHU_VIRTIO_F_RING_PACKED), packed);
    buf = tdrv_alloc(t.d, 256, 64, &gpa);
    ASSERT(buf);
    for (int i = 0; i < 100; i++) {
        struct vhu_vqd_seg segs[2] = {{gpa, 100}, {gpa + 100, 156}};
        memset(buf, 0, 256);
        ASSERT_EQ(tdrv_request(t.d, 0, segs, 0, 2, 2000), 256);
        if (i == 0)
            memcpy(first, buf, 256);
    }
    ASSERT(memcmp(first, buf, 256) != 0);
    int zeros = 0;
    for (int i = 0; i < 256; i++)
        zeros += buf[i] == 0;
    ASSERT(zeros < 16);
    ASSERT_EQ(vhu_rng_bytes_served(t.dev), 100 * 256);
    /* A device-readable buffer is a driver error: the queue breaks, the backend stays. */
    struct vhu_vqd_seg bad = {gpa, 16};
    ASSERT(tdrv_request(t.d, 0, &bad, 1, 0, 300) < 0);
    uint8_t status = 0;
    ASSERT_OK(tdrv_get_status(t.d, &status));
    ASSERT(status & VHU_VIRTIO_CONFIG_S_NEEDS_RESET);
    rng_down(&t);
}

TDRV_TEST(rng_split) { run_rng(false); }
TDRV_TEST(rng_packed) { run_rng(true); }
