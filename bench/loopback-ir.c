/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * A deterministic request loop for instruction-count A/Bs (valgrind --tool=callgrind): one
 * thread runs a frontend (the library's driver side) and a real device (blk on the null store,
 * or net with a sink port) over the in-process vhost-user loopback, so every kick goes through
 * the transport, the device core, the device and the ring code, with no scheduler in the
 * measurement. Same binary, same inputs: the same instruction count, run after run.
 *
 *   loopback-ir blk|net split|packed [REQUESTS] [BATCH]
 *
 * Prints the requests completed. Divide callgrind's total by REQUESTS (setup is the same for
 * both builds, and small: bench/ir-ab.sh subtracts a run of 0 requests). Built only against the
 * public API that every vhu version since the loopback transport has had, so the same file
 * compiles against an older tree for the A side.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vhu/backend.h"
#include "vhu/dev/blk.h"
#include "vhu/dev/net.h"
#include "vhu/frontend.h"
#include "vhu/log.h"
#include "vhu/loop.h"
#include "vhu/loopback.h"
#include "vhu/util.h"

#define FEATURE_VERSION_1 32
#define FEATURE_RING_PACKED 34
#define FEATURE_EVENT_IDX 29
#define NET_HDR_LEN 12

static void quiet(enum vhu_log_level lvl, const char *msg, void *opaque)
{
    (void)opaque;
    if (lvl == VHU_LOG_ERROR)
        fprintf(stderr, "vhu: %s\n", msg);
}

static int die(const char *what, int r)
{
    fprintf(stderr, "loopback-ir: %s: %s\n", what, strerror(r < 0 ? -r : r));
    return 1;
}

int main(int argc, char **argv)
{
    bool net, packed;
    unsigned requests = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 0) : 100000;
    unsigned batch = argc > 4 ? (unsigned)strtoul(argv[4], NULL, 0) : 32;
    struct vhu_device *dev;
    struct vhu_loop *loop;
    struct vhu_backend *b;
    struct vhu_fe *fe;
    uint8_t *buf;
    uint64_t gpa;
    unsigned q, done = 0;
    int r;

    if (argc < 3 || (strcmp(argv[1], "blk") && strcmp(argv[1], "net")) ||
        (strcmp(argv[2], "split") && strcmp(argv[2], "packed")) || batch == 0 || batch > 128) {
        fprintf(stderr, "usage: loopback-ir blk|net split|packed [REQUESTS] [BATCH<=128]\n");
        return 2;
    }
    net = strcmp(argv[1], "net") == 0;
    packed = strcmp(argv[2], "packed") == 0;
    vhu_log_set_sink(quiet, NULL, VHU_LOG_ERROR);
    if (net) {
        struct vhu_net_opts no = {.port = VHU_NET_PORT_SINK};
        r = vhu_net_new(&no, &dev);
        q = 1; /* transmitq 0 */
    } else {
        struct vhu_blk_opts bo = {.null_size = 1ULL << 30};
        r = vhu_blk_new(&bo, &dev);
        q = 0;
    }
    if (r < 0)
        return die("device", r);
    if ((r = vhu_loop_new(&loop)) < 0 || (r = vhu_backend_new(dev, loop, &b)) < 0 ||
        (r = vhu_loopback_connect(b, loop, &fe)) < 0)
        return die("setup", r);
    struct vhu_fe_opts o = {
        .features = VHU_BIT(FEATURE_VERSION_1) | VHU_BIT(FEATURE_EVENT_IDX) |
                    (packed ? VHU_BIT(FEATURE_RING_PACKED) : 0),
        .num_queues = (uint16_t)(q + 1),
        .queue_size = 256,
        .packed = packed,
        .event_idx = true,
        .mem_size = 4 << 20,
        .queue_pairs = net,
    };
    if ((r = vhu_fe_start(fe, &o)) < 0)
        return die("start", r);
    /* Per request: blk: a 16-byte header, 4 KiB of data, a status byte; net: a header + 64-byte
     * frame. Buffers are reused; only the device's view of them matters here. */
    buf = vhu_fe_alloc(fe, 128 * 4096 + 128 * 64, 4096, &gpa);
    if (!buf)
        return die("alloc", -ENOMEM);
    memset(buf, 0, 128 * 4096 + 128 * 64);
    struct vhu_vqd *vqd = vhu_fe_vqd(fe, q);
    while (done < requests) {
        unsigned n = VHU_MIN(batch, requests - done), got = 0;
        for (unsigned i = 0; i < n; i++) {
            uint64_t meta = gpa + 128 * 4096 + i * 64;
            if (net) {
                struct vhu_vqd_seg seg = {meta, NET_HDR_LEN + 64};
                r = vhu_vqd_add(vqd, &seg, 1, 0, (void *)(uintptr_t)(i + 1));
            } else {
                struct vhu_vqd_seg segs[3] = {{meta, 16}, {gpa + i * 4096, 4096}, {meta + 16, 1}};
                r = vhu_vqd_add(vqd, segs, 1, 2, (void *)(uintptr_t)(i + 1));
            }
            if (r < 0)
                return die("add", r);
        }
        if ((r = vhu_fe_kick(fe, q)) < 0)
            return die("kick", r);
        while (got < n) {
            uint32_t len;
            if (vhu_vqd_get_used(vqd, &len)) {
                got++;
                continue;
            }
            if ((r = vhu_fe_wait(fe, q, 5000)) < 0)
                return die("wait", r);
        }
        done += n;
    }
    printf("%u\n", done);
    vhu_fe_free(fe);
    vhu_backend_free(b);
    vhu_loop_free(loop);
    return 0;
}
