/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Loopback: the real backend core and the real frontend library in one process, over the
 * in-process loopback transport. Covers negotiation, memory tables (SET_MEM_TABLE and
 * ADD_MEM_REG), split and packed rings with and without EVENT_IDX and indirect descriptors,
 * ring stop/restart with the base carried over, config/status/reset, and protocol errors.
 */
#include <sys/random.h>
#include <unistd.h>

#include "frontend/fe_msg.h"
#include "vhu/backend.h"
#include "vhu/core.h"
#include "vhu/device.h"
#include "vhu/frontend.h"
#include "vhu/log.h"
#include "vhu/loop.h"
#include "vhu/loopback.h"
#include "vhu/util.h"
#include "vhu_test.h"

/* ------------------------------------------------------------------------------------------ */
/* A test device: each request is [readable payload][writable reply]; the reply is the payload  */
/* with every byte xor 0xa5, and a 4-byte config space that the driver may write.              */
/* ------------------------------------------------------------------------------------------ */

struct xor_dev {
    struct vhu_device dev;
    uint8_t config[4];
    unsigned starts, stops, resets;
    uint64_t features_seen;
};

static void xor_notify(struct vhu_device *dev, struct vhu_vq *vq)
{
    struct vhu_vq_elem *e;
    uint8_t tmp[4096];

    do {
        vhu_vq_disable_notify(vq);
        while ((e = vhu_vq_pop(vq)) != NULL) {
            size_t n = vhu_iov_to_buf(e->iov, e->out_num, 0, tmp, sizeof(tmp));
            for (size_t i = 0; i < n; i++)
                tmp[i] ^= 0xa5;
            size_t w = vhu_iov_from_buf(e->iov + e->out_num, e->in_num, 0, tmp, n);
            vhu_vq_push(vq, e, (uint32_t)w);
        }
        vhu_vq_flush(vq);
    } while (vhu_vq_enable_notify(vq));
}

static int xor_get_config(struct vhu_device *dev, void *buf, uint32_t off, uint32_t len)
{
    memcpy(buf, ((struct xor_dev *)dev)->config + off, len);
    return 0;
}

static int xor_set_config(struct vhu_device *dev, const void *buf, uint32_t off, uint32_t len)
{
    memcpy(((struct xor_dev *)dev)->config + off, buf, len);
    return 0;
}

static int xor_start(struct vhu_device *dev, struct vhu_vq *vq)
{
    ((struct xor_dev *)dev)->starts++;
    return 0;
}

static void xor_stop(struct vhu_device *dev, struct vhu_vq *vq)
{
    ((struct xor_dev *)dev)->stops++;
}

static void xor_reset(struct vhu_device *dev)
{
    ((struct xor_dev *)dev)->resets++;
}

static int xor_set_features(struct vhu_device *dev, uint64_t f)
{
    ((struct xor_dev *)dev)->features_seen = f;
    return 0;
}

static const struct vhu_device_ops xor_ops = {
    .set_features = xor_set_features,
    .get_config = xor_get_config,
    .set_config = xor_set_config,
    .queue_start = xor_start,
    .queue_stop = xor_stop,
    .queue_notify = xor_notify,
    .reset = xor_reset,
};

static struct xor_dev xdev;

static void xor_init(void)
{
    memset(&xdev, 0, sizeof(xdev));
    xdev.dev = (struct vhu_device){
        .ops = &xor_ops,
        .name = "xor",
        .virtio_id = 0xffff,
        .features = vhu_feature(VHU_VIRTIO_F_VERSION_1) | vhu_feature(VHU_VIRTIO_RING_F_INDIRECT_DESC) |
                    vhu_feature(VHU_VIRTIO_RING_F_EVENT_IDX) | vhu_feature(VHU_VIRTIO_F_RING_PACKED),
        .num_queues = 2,
        .max_queue_size = 256,
        .config_size = sizeof(xdev.config),
        .elem_size = sizeof(struct vhu_vq_elem),
        .max_segs = 32,
    };
    memcpy(xdev.config, "\x01\x02\x03\x04", 4);
}

static unsigned rig_workers, rig_poll_us; /* backend worker threads for the next rig */

struct rig {
    struct vhu_loop *loop;
    struct vhu_backend *b;
    struct vhu_fe *fe;
};

static int rig_up(struct rig *r, struct vhu_device *dev)
{
    int ret;

    memset(r, 0, sizeof(*r));
    ret = vhu_loop_new(&r->loop);
    if (ret == 0)
        ret = vhu_backend_new(dev, r->loop, &r->b);
    if (ret == 0 && rig_workers)
        ret = vhu_backend_set_workers(r->b, rig_workers, rig_poll_us);
    if (ret == 0)
        ret = vhu_loopback_connect(r->b, r->loop, &r->fe);
    return ret;
}

static void rig_down(struct rig *r)
{
    vhu_fe_free(r->fe);
    vhu_backend_free(r->b);
    vhu_loop_free(r->loop);
}

/* Send `n` xor requests of varying shapes on queue q and check every reply. */
static int xor_traffic(struct vhu_fe *fe, unsigned q, unsigned n, unsigned nsegs)
{
    uint64_t gpa_in, gpa_out;
    uint8_t *in = vhu_fe_alloc(fe, 2048, 64, &gpa_in);
    uint8_t *out = vhu_fe_alloc(fe, 2048, 64, &gpa_out);

    if (!in || !out)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        unsigned len = 1 + (i * 37) % 1500;
        struct vhu_vqd_seg segs[16];
        unsigned k = 0, per = (len + nsegs - 1) / nsegs;

        for (unsigned j = 0; j < len; j++)
            in[j] = (uint8_t)(i + j);
        memset(out, 0, 2048);
        /* payload split into nsegs readable segments, reply into nsegs writable segments */
        for (unsigned off = 0; off < len; off += per, k++)
            segs[k] = (struct vhu_vqd_seg){gpa_in + off, VHU_MIN(per, len - off)};
        unsigned n_out = k;
        for (unsigned off = 0; off < len; off += per, k++)
            segs[k] = (struct vhu_vqd_seg){gpa_out + off, VHU_MIN(per, len - off)};
        int w = vhu_fe_request(fe, q, segs, n_out, k - n_out, 2000);
        if (w != (int)len) {
            fprintf(stderr, "  request %u: wrote %d, expected %u\n", i, w, len);
            return w < 0 ? w : -EIO;
        }
        for (unsigned j = 0; j < len; j++) {
            if (out[j] != (uint8_t)((i + j) ^ 0xa5)) {
                fprintf(stderr, "  request %u: byte %u wrong\n", i, j);
                return -EIO;
            }
        }
    }
    return 0;
}

static void run_xor(bool packed, bool event_idx, bool indirect, unsigned regions, uint16_t qsz)
{
    struct vhu_fe_opts o = {
        .num_queues = 2,
        .queue_size = qsz,
        .packed = packed,
        .event_idx = event_idx,
        .indirect = indirect,
        .mem_size = 4 << 20,
        .mem_regions = regions,
    };
    struct rig r;

    xor_init();
    ASSERT_OK(rig_up(&r, &xdev.dev));
    ASSERT_OK(vhu_fe_start(r.fe, &o));
    ASSERT_EQ(vhu_has_feature(vhu_fe_features(r.fe), VHU_VIRTIO_F_RING_PACKED), packed);
    ASSERT_EQ(vhu_has_feature(vhu_fe_features(r.fe), VHU_VIRTIO_RING_F_EVENT_IDX), event_idx);
    ASSERT_EQ(xdev.starts, 2);
    /* both queues, several chain shapes, enough requests to wrap the 16-bit indices of small
     * rings several times */
    ASSERT_OK(xor_traffic(r.fe, 0, 300, 1));
    ASSERT_OK(xor_traffic(r.fe, 1, 300, 3));
    /* without indirect descriptors a chain must fit the ring: 2 * nsegs <= qsz */
    ASSERT_OK(xor_traffic(r.fe, 0, 100, indirect ? 7 : VHU_MIN(7u, qsz / 2u)));
    rig_down(&r);
    ASSERT(xdev.resets >= 1);
}

static void count_cb(int fd, uint32_t events, void *opaque)
{
    (void)fd;
    (void)events;
    (*(unsigned *)opaque)++;
}

/* VHU_LOOP_EDGE (how kicks are watched): one call per arrival, none while the fd just stays
 * readable; level-triggered watches keep firing until drained. */
TEST(loop_edge_triggered)
{
    struct vhu_loop *loop;
    unsigned edge = 0, level = 0;
    int efd = vhu_eventfd_new(), lfd = vhu_eventfd_new();

    ASSERT(efd >= 0 && lfd >= 0);
    ASSERT_OK(vhu_loop_new(&loop));
    ASSERT_OK(vhu_loop_add(loop, efd, VHU_LOOP_IN | VHU_LOOP_EDGE, count_cb, &edge));
    ASSERT_OK(vhu_loop_add(loop, lfd, VHU_LOOP_IN, count_cb, &level));
    vhu_eventfd_signal(efd);
    vhu_eventfd_signal(efd); /* two kicks before the loop looks: one wake-up */
    vhu_eventfd_signal(lfd);
    vhu_loop_run_once(loop, 0);
    ASSERT_EQ(edge, 1u);
    ASSERT_EQ(level, 1u);
    vhu_loop_run_once(loop, 0); /* nothing new; neither fd was read */
    ASSERT_EQ(edge, 1u);
    ASSERT_EQ(level, 2u);
    vhu_eventfd_signal(efd);
    vhu_loop_run_once(loop, 0);
    ASSERT_EQ(edge, 2u);
    vhu_loop_free(loop);
    close(efd);
    close(lfd);
}

TEST(xor_split) { run_xor(false, false, false, 1, 8); }
TEST(xor_split_event_idx) { run_xor(false, true, false, 1, 16); }
TEST(xor_split_indirect_event_idx_3_regions) { run_xor(false, true, true, 3, 64); }
TEST(xor_packed) { run_xor(true, false, false, 1, 8); }
TEST(xor_packed_event_idx) { run_xor(true, true, false, 2, 13); }
TEST(xor_packed_indirect_event_idx) { run_xor(true, true, true, 1, 256); }

/* The same traffic with each queue owned by its own worker thread, event-driven and polling. */
static void run_xor_workers(unsigned workers, unsigned poll_us, bool packed)
{
    rig_workers = workers;
    rig_poll_us = poll_us;
    run_xor(packed, true, true, 2, 64);
    rig_workers = rig_poll_us = 0;
}

TEST(xor_split_2_workers) { run_xor_workers(2, 0, false); }
TEST(xor_packed_2_workers_poll) { run_xor_workers(2, 50, true); }
TEST(xor_split_1_worker_poll) { run_xor_workers(1, 20, false); }

TEST(config_status_reset)
{
    struct vhu_fe_opts o = {.num_queues = 1, .queue_size = 16, .mem_size = 1 << 20};
    struct rig r;
    uint8_t cfg[4], st = 0xff;

    xor_init();
    ASSERT_OK(rig_up(&r, &xdev.dev));
    ASSERT_OK(vhu_fe_start(r.fe, &o));
    ASSERT_OK(vhu_fe_get_config(r.fe, 0, cfg, 4));
    ASSERT(memcmp(cfg, "\x01\x02\x03\x04", 4) == 0);
    ASSERT_OK(vhu_fe_set_config(r.fe, 2, "\x09", 1));
    ASSERT_OK(vhu_fe_get_config(r.fe, 1, cfg, 3));
    ASSERT(memcmp(cfg, "\x02\x09\x04", 3) == 0);
    ASSERT_ERR(-EIO, vhu_fe_get_config(r.fe, 2, cfg, 4)); /* past the end: empty reply */
    ASSERT_OK(vhu_fe_set_status(r.fe, VHU_VIRTIO_CONFIG_S_ACKNOWLEDGE | VHU_VIRTIO_CONFIG_S_DRIVER));
    ASSERT_OK(vhu_fe_get_status(r.fe, &st));
    ASSERT_EQ(st, VHU_VIRTIO_CONFIG_S_ACKNOWLEDGE | VHU_VIRTIO_CONFIG_S_DRIVER);
    unsigned resets = xdev.resets;
    ASSERT_OK(vhu_fe_reset_device(r.fe));
    ASSERT_EQ(xdev.resets, resets + 1);
    ASSERT_OK(vhu_fe_get_status(r.fe, &st));
    ASSERT_EQ(st, 0);
    ASSERT_EQ(xdev.dev.acked_features, 0);
    rig_down(&r);
}

/* GET_VRING_BASE stops the ring and reports where it is; a ring restarted from that base picks
 * up exactly there (what QEMU does across a stop/cont or a migration). */
TEST(stop_restart_base)
{
    struct vhu_fe_opts o = {.num_queues = 1, .queue_size = 8, .mem_size = 1 << 20};
    struct vhu_msg m, reply;
    struct rig r;

    xor_init();
    ASSERT_OK(rig_up(&r, &xdev.dev));
    ASSERT_OK(vhu_fe_start(r.fe, &o));
    ASSERT_OK(xor_traffic(r.fe, 0, 11, 1));
    vhu_msg_init(&m, VHOST_USER_GET_VRING_BASE, VHOST_USER_VERSION, 8);
    m.payload.state = (struct vhost_vring_state){.index = 0};
    ASSERT_OK(vhu_fe_raw(r.fe, &m, &reply));
    ASSERT_EQ(reply.payload.state.num, 11);
    ASSERT_EQ(xdev.stops, 1);
    rig_down(&r);
}

/* Protocol errors over loopback end the session; the backend accepts a new one. */
TEST(malformed_drops_session)
{
    struct vhu_fe_opts o = {.num_queues = 1, .queue_size = 16, .mem_size = 1 << 20};
    struct vhu_msg m, reply;
    struct rig r;
    struct vhu_backend_stats st;

    xor_init();
    ASSERT_OK(rig_up(&r, &xdev.dev));
    ASSERT_OK(vhu_fe_start(r.fe, &o));
    /* queue index out of range */
    vhu_msg_init(&m, VHOST_USER_GET_VRING_BASE, VHOST_USER_VERSION, 8);
    m.payload.state = (struct vhost_vring_state){.index = 7};
    ASSERT_ERR(-ECONNRESET, vhu_fe_raw(r.fe, &m, &reply));
    vhu_fe_free(r.fe);
    /* a fresh session works */
    ASSERT_OK(vhu_loopback_connect(r.b, r.loop, &r.fe));
    ASSERT_OK(vhu_fe_start(r.fe, &o));
    ASSERT_OK(xor_traffic(r.fe, 0, 5, 2));
    vhu_backend_get_stats(r.b, &st);
    ASSERT_EQ(st.sessions, 2);
    ASSERT_EQ(st.sessions_failed, 1);
    rig_down(&r);
}

/* Features the backend did not offer are refused. */
TEST(unoffered_features_refused)
{
    struct vhu_msg m, reply;
    struct rig r;

    xor_init();
    ASSERT_OK(rig_up(&r, &xdev.dev));
    vhu_msg_init(&m, VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, 8);
    m.payload.u64 = vhu_feature(VHU_VIRTIO_F_VERSION_1) | vhu_feature(VHU_VIRTIO_F_ACCESS_PLATFORM);
    ASSERT_OK(vhu_fe_raw(r.fe, &m, &reply)); /* no reply expected */
    vhu_msg_init(&m, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, 0);
    ASSERT_ERR(-EPIPE, vhu_fe_raw(r.fe, &m, &reply)); /* the session is gone */
    rig_down(&r);
}

static void quiet_sink(enum vhu_log_level l, const char *msg, void *o)
{
    (void)l;
    (void)msg;
    (void)o;
}

__attribute__((constructor)) static void setup_log(void)
{
    vhu_log_set_sink(getenv("VHU_TEST_VERBOSE") ? vhu_log_stderr_sink : quiet_sink, NULL,
                     VHU_LOG_DEBUG);
}

/* A GET_INFLIGHT_FD request for nq queues of qs entries. */
static void get_inflight_msg(struct vhu_msg *m, uint32_t flags, uint16_t nq, uint16_t qs)
{
    vhu_msg_init(m, VHOST_USER_GET_INFLIGHT_FD, VHOST_USER_VERSION | flags,
                 sizeof(struct vhost_user_inflight));
    m->payload.inflight.num_queues = nq;
    m->payload.inflight.queue_size = qs;
}

/* GET_INFLIGHT_FD hands out a shared buffer sized for the queues; SET_INFLIGHT_FD takes one
 * back and refuses one too small for what it claims to describe. */
TEST(inflight_fd_messages)
{
    struct vhu_fe_opts o = {.num_queues = 1, .queue_size = 16, .mem_size = 1 << 20,
                            .protocol_features = VHU_BIT(VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD)};
    struct vhu_msg m, reply;
    struct rig r;

    xor_init();
    ASSERT_OK(rig_up(&r, &xdev.dev));
    ASSERT_OK(vhu_fe_start(r.fe, &o));
    get_inflight_msg(&m, 0, 2, 16);
    ASSERT_OK(vhu_fe_raw(r.fe, &m, &reply));
    ASSERT_EQ(reply.nfds, 1);
    ASSERT_EQ(reply.payload.inflight.mmap_size, 2 * vhu_core_inflight_region_size(16));
    int fd = reply.fds[0];
    ASSERT(fd >= 0);
    /* the running rings are unaffected */
    ASSERT_OK(xor_traffic(r.fe, 0, 20, 2));
    /* hand it back, but claim 64-entry queues: the buffer is too small for that */
    vhu_msg_init(&m, VHOST_USER_SET_INFLIGHT_FD, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK,
                 sizeof(struct vhost_user_inflight));
    m.payload.inflight = reply.payload.inflight;
    m.payload.inflight.queue_size = 64;
    m.fds[0] = fd;
    m.nfds = 1;
    struct vhu_msg ack;
    int rr = vhu_fe_raw(r.fe, &m, &ack);
    ASSERT(rr < 0 || ack.payload.u64 != 0); /* refused, and the session is gone */
    close(fd);
    rig_down(&r);
}

/* Issue #11 item 1: an inflight buffer a running ring tracks into is never replaced (the old
 * code unmapped it under the ring, and the ring's next pop wrote into unmapped memory).
 * GET_INFLIGHT_FD while rings run untracked is fine; once ring 0 restarts tracking into the
 * buffer, GET_INFLIGHT_FD and SET_INFLIGHT_FD are refused, and the backend serves the next
 * frontend. */
static int raw_ack(struct vhu_fe *fe, struct vhu_msg *m)
{
    struct vhu_msg ack;
    int r;

    m->hdr.flags |= VHOST_USER_NEED_REPLY_MASK;
    r = vhu_fe_raw(fe, m, &ack);
    return r < 0 ? r : (int)ack.payload.u64;
}

/* GET_VRING_BASE + SET_VRING_BASE + SET_VRING_KICK (a fresh eventfd): ring 0 restarts where it
 * stopped, taking the inflight buffer attached meanwhile. */
static int restart_ring0(struct vhu_fe *fe)
{
    struct vhu_msg m, reply;
    int r;

    vhu_msg_init(&m, VHOST_USER_GET_VRING_BASE, VHOST_USER_VERSION,
                 sizeof(struct vhost_vring_state));
    m.payload.state.index = 0;
    if ((r = vhu_fe_raw(fe, &m, &reply)) < 0)
        return r;
    vhu_msg_init(&m, VHOST_USER_SET_VRING_BASE, VHOST_USER_VERSION,
                 sizeof(struct vhost_vring_state));
    m.payload.state.index = 0;
    m.payload.state.num = reply.payload.state.num;
    if ((r = raw_ack(fe, &m)) != 0)
        return r < 0 ? r : -EIO;
    vhu_msg_init(&m, VHOST_USER_SET_VRING_KICK, VHOST_USER_VERSION, 8);
    m.payload.u64 = 0;
    m.fds[0] = vhu_eventfd_new();
    m.nfds = 1;
    r = raw_ack(fe, &m);
    close(m.fds[0]);
    return r == 0 ? 0 : r < 0 ? r : -EIO;
}

TEST(inflight_buffer_not_replaced_under_a_tracking_ring)
{
    struct vhu_fe_opts o = {.num_queues = 1, .queue_size = 16, .mem_size = 1 << 20,
                            .protocol_features = VHU_BIT(VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD)};
    struct vhu_msg m, reply;
    struct rig r;
    int base_fds = vhu_fd_count_self();

    xor_init();
    ASSERT_OK(rig_up(&r, &xdev.dev));
    ASSERT_OK(vhu_fe_start(r.fe, &o));
    get_inflight_msg(&m, 0, 1, 16);
    ASSERT_OK(vhu_fe_raw(r.fe, &m, &reply));
    ASSERT_EQ(reply.nfds, 1);
    int ifl_fd = reply.fds[0];
    struct vhost_user_inflight ifl = reply.payload.inflight;
    ASSERT_OK(restart_ring0(r.fe)); /* ring 0 now tracks into the buffer */
    /* a new buffer would unmap the one ring 0 writes into: refused, the session ends */
    get_inflight_msg(&m, VHOST_USER_NEED_REPLY_MASK, 1, 16);
    int rr = vhu_fe_raw(r.fe, &m, &reply);
    ASSERT(rr < 0 || reply.nfds == 0);
    if (rr == 0)
        vhu_msg_close_fds(&reply);
    vhu_fe_free(r.fe);
    r.fe = NULL;
    /* A new connection: SET_INFLIGHT_FD while the rings run untracked is accepted and traffic
     * flows; once ring 0 tracks into that buffer, a second SET_INFLIGHT_FD is refused. */
    ASSERT_OK(vhu_loopback_connect(r.b, r.loop, &r.fe));
    ASSERT_OK(vhu_fe_start(r.fe, &o));
    vhu_msg_init(&m, VHOST_USER_SET_INFLIGHT_FD, VHOST_USER_VERSION,
                 sizeof(struct vhost_user_inflight));
    m.payload.inflight = ifl;
    m.fds[0] = ifl_fd;
    m.nfds = 1;
    ASSERT_EQ(raw_ack(r.fe, &m), 0);
    ASSERT_OK(xor_traffic(r.fe, 0, 10, 2));
    ASSERT_OK(restart_ring0(r.fe));
    vhu_msg_init(&m, VHOST_USER_SET_INFLIGHT_FD, VHOST_USER_VERSION,
                 sizeof(struct vhost_user_inflight));
    m.payload.inflight = ifl;
    m.fds[0] = ifl_fd;
    m.nfds = 1;
    rr = raw_ack(r.fe, &m);
    ASSERT(rr != 0); /* refused (1), or the connection is already gone */
    close(ifl_fd);
    rig_down(&r);
    ASSERT_EQ(vhu_fd_count_self(), base_fds);
}

/* RARP and NET_MTU are offered only to devices that handle them (net); for any other device
 * SEND_RARP and NET_SET_MTU are refused by the validator and end the session. */
TEST(rarp_net_mtu_not_offered_without_device_ops)
{
    const uint64_t net_pf =
        VHU_BIT(VHOST_USER_PROTOCOL_F_RARP) | VHU_BIT(VHOST_USER_PROTOCOL_F_NET_MTU);
    struct vhu_fe_opts o = {.num_queues = 1, .queue_size = 16, .mem_size = 1 << 20,
                            .protocol_features = net_pf};
    const uint32_t reqs[] = {VHOST_USER_SEND_RARP, VHOST_USER_NET_SET_MTU};
    struct vhu_msg m, reply;
    struct rig r;

    for (unsigned i = 0; i < VHU_ARRAY_SIZE(reqs); i++) {
        xor_init();
        ASSERT_OK(rig_up(&r, &xdev.dev));
        ASSERT_EQ(vhu_backend_protocol_features(r.b) & net_pf, 0);
        ASSERT_OK(vhu_fe_start(r.fe, &o));
        ASSERT_EQ(vhu_fe_protocol_features(r.fe) & net_pf, 0);
        vhu_msg_init(&m, reqs[i], VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, 8);
        m.payload.u64 = reqs[i] == VHOST_USER_NET_SET_MTU ? 1500 : 0x0000563412005452ull;
        int rr = vhu_fe_raw(r.fe, &m, &reply);
        ASSERT(rr < 0); /* no ack: the session is gone */
        rig_down(&r);
    }
}
