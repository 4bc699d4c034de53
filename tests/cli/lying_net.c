/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * A vhost-user-net backend that misbehaves in one chosen way, for checking that vhuctl net
 * reports it and stops cleanly (tests/cli/vhuctl-net.sh). Serves one connection on SOCKET,
 * exits when the frontend leaves (or after 30 s).
 *
 *   lying_net SOCKET MODE
 *     short   every receive buffer comes back with 5 bytes (less than the 12-byte header)
 *     nbufs   MRG_RXBUF offered; num_buffers 60000 in the first receive buffer
 *     long    a 2000-byte frame in each receive buffer (the MTU is 1500)
 *     gso     gso_type TCPV4 although no offload was negotiated
 *     stall   transmitted frames are never completed, receive buffers never used
 *     flood   transmitted frames are never completed, every receive buffer gets a frame
 *     nov1    VIRTIO_F_VERSION_1 not offered
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vhu/backend.h"
#include "vhu/dev/net.h"
#include "vhu/device.h"
#include "vhu/log.h"
#include "vhu/loop.h"
#include "vhu/transport.h"
#include "vhu/util.h"
#include "vhu/virtio.h"

enum mode { M_SHORT, M_NBUFS, M_LONG, M_GSO, M_STALL, M_FLOOD, M_NOV1 };
static const char *const mode_names[] = {"short", "nbufs", "long", "gso", "stall", "flood",
                                         "nov1"};

struct lying_dev {
    struct vhu_device dev; /* must be first */
    enum mode mode;
};

/* One receive buffer, filled the way the mode lies; returns the used length to report. */
static uint32_t fill_rx(enum mode m, struct vhu_vq_elem *e)
{
    struct vhu_virtio_net_hdr_v1 h = {.num_buffers = 1};
    uint8_t frame[2000];
    uint32_t flen = 64;

    memset(frame, 0xab, sizeof(frame));
    switch (m) {
    case M_SHORT: return (uint32_t)VHU_MIN(e->in_len, (uint64_t)5);
    case M_NBUFS: h.num_buffers = 60000; break;
    case M_LONG: flen = sizeof(frame); break;
    case M_GSO: h.gso_type = VHU_VIRTIO_NET_HDR_GSO_TCPV4; break;
    default: break;
    }
    const struct iovec *in = e->iov + e->out_num;
    size_t n = vhu_iov_from_buf(in, e->in_num, 0, &h, sizeof(h));
    n += vhu_iov_from_buf(in, e->in_num, sizeof(h), frame, flen);
    return (uint32_t)n;
}

static void lying_notify(struct vhu_device *dev, struct vhu_vq *vq)
{
    enum mode m = ((struct lying_dev *)dev)->mode;
    bool rx = vhu_vq_index(vq) == 0;
    struct vhu_vq_elem *e;

    if (m == M_STALL || (m == M_FLOOD && !rx))
        return; /* transmitted frames stay in the ring forever */
    do {
        vhu_vq_disable_notify(vq);
        while ((e = vhu_vq_pop(vq)) != NULL)
            vhu_vq_push(vq, e, rx ? fill_rx(m, e) : 0);
        vhu_vq_flush(vq);
    } while (!vhu_vq_broken(vq) && vhu_vq_enable_notify(vq));
}

static void lying_reset(struct vhu_device *dev)
{
    (void)dev;
}

static void lying_destroy(struct vhu_device *dev)
{
    free(dev);
}

static const struct vhu_device_ops lying_ops = {
    .queue_notify = lying_notify,
    .reset = lying_reset,
    .destroy = lying_destroy,
};

static void on_disconnect(void *opaque, int err)
{
    (void)err;
    vhu_loop_stop(opaque);
}

int main(int argc, char **argv)
{
    struct lying_dev *ld;
    struct vhu_loop *loop = NULL;
    struct vhu_backend *b = NULL;
    struct vhu_unix *u = NULL;
    int m = -1, r;

    for (int i = 0; argc == 3 && i < (int)VHU_ARRAY_SIZE(mode_names); i++)
        if (strcmp(argv[2], mode_names[i]) == 0)
            m = i;
    if (m < 0) {
        fprintf(stderr, "usage: lying_net SOCKET short|nbufs|long|gso|stall|flood|nov1\n");
        return 2;
    }
    alarm(30);
    vhu_log_set_sink(vhu_log_stderr_sink, NULL, VHU_LOG_WARN);
    ld = calloc(1, sizeof(*ld));
    if (!ld)
        return 1;
    ld->mode = (enum mode)m;
    ld->dev = (struct vhu_device){
        .ops = &lying_ops,
        .name = "net",
        .virtio_id = VHU_VIRTIO_ID_NET,
        .features = vhu_feature(VHU_VIRTIO_F_RING_PACKED) | vhu_feature(VHU_VIRTIO_RING_F_EVENT_IDX) |
                    vhu_feature(VHU_VIRTIO_RING_F_INDIRECT_DESC) |
                    (m == M_NOV1 ? 0 : vhu_feature(VHU_VIRTIO_F_VERSION_1)) |
                    (m == M_NBUFS ? vhu_feature(VHU_VIRTIO_NET_F_MRG_RXBUF) : 0),
        .num_queues = 2,
        .queue_num_reply = 1,
        .max_queue_size = 1024,
        .elem_size = sizeof(struct vhu_vq_elem),
        .max_segs = 16,
    };
    r = vhu_loop_new(&loop);
    if (r == 0)
        r = vhu_backend_new(&ld->dev, loop, &b);
    else
        free(ld);
    if (r == 0) {
        struct vhu_unix_opts uo = {.path = argv[1], .fd = -1};
        r = vhu_unix_new(b, loop, &uo, &u);
    }
    if (r == 0) {
        vhu_unix_set_on_disconnect(u, on_disconnect, loop);
        r = vhu_loop_run(loop);
    }
    if (r < 0)
        fprintf(stderr, "lying_net: %s\n", strerror(-r));
    vhu_unix_free(u);
    vhu_backend_free(b);
    if (loop)
        vhu_loop_free(loop);
    return r < 0 ? 1 : 0;
}
