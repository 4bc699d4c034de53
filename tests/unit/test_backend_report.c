/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * What vhud's control socket reads and asks of a backend (issue 14, item 4):
 *   - per-queue counters (requests, bytes both ways, kicks, calls, ring breaks) over both test
 *     driver paths, kept across sessions, and the session report (acked features);
 *   - a config change reaches a vhost-user frontend as BACKEND_CONFIG_CHANGE_MSG on the backend
 *     channel, only with BACKEND_REQ + CONFIG negotiated and a channel given; a frontend that
 *     does not read the channel gets -EAGAIN, never a blocked caller;
 *   - vhu_blk_resize(): grows file and capacity, refuses shrinks, misaligned sizes and growing
 *     a read-only file.
 */
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rng_bench.h"
#include "transport/vhost-user/decoder.h"
#include "vhu/dev/blk.h"
#include "vhu/util.h"
#include "vhu/virtio.h"
#include "vhu_test.h"

static void run_counters(bool packed)
{
    struct tdrv_opts o = {.num_queues = 1, .queue_size = 32, .packed = packed,
                          .event_idx = false, .indirect = true, .mem_size = 1 << 20};
    struct vhu_backend_session s;
    struct vhu_queue_stats st;
    struct rng_bench t;
    uint64_t gpa;
    uint8_t *buf;

    ASSERT_OK(rng_up(&t, tdrv_path, 0, &o));
    ASSERT_OK(vhu_backend_get_session(t.b, &s));
    ASSERT(s.active);
    ASSERT_EQ(s.num_queues, 1);
    ASSERT(vhu_has_feature(s.features, VHU_VIRTIO_F_VERSION_1));
    buf = tdrv_alloc(t.d, 256, 64, &gpa);
    ASSERT(buf);
    for (int i = 0; i < 10; i++) {
        struct vhu_vqd_seg seg = {gpa, 200};
        ASSERT_EQ(tdrv_request(t.d, 0, &seg, 0, 1, 2000), 200);
    }
    ASSERT_OK(vhu_backend_get_queue_stats(t.b, 0, &st));
    ASSERT(st.started && st.enabled && !st.broken);
    ASSERT_EQ(st.num, 32);
    ASSERT_EQ(st.requests, 10);
    ASSERT_EQ(st.in_bytes, 2000);
    ASSERT_EQ(st.out_bytes, 0);
    ASSERT_EQ(st.calls, 10); /* no EVENT_IDX: every flush interrupts */
    ASSERT_EQ(st.errors, 0);
    ASSERT_EQ(st.breaks, 0);
    if (tdrv_kind(t.d) == TDRV_VHOST_USER)
        ASSERT(st.kicks >= 1);
    /* a readable buffer breaks the ring: counted */
    struct vhu_vqd_seg bad = {gpa, 16};
    ASSERT(tdrv_request(t.d, 0, &bad, 1, 0, 300) < 0);
    ASSERT_OK(vhu_backend_get_queue_stats(t.b, 0, &st));
    ASSERT(st.broken);
    ASSERT_EQ(st.breaks, 1);
    ASSERT_EQ(st.errors, 0);
    ASSERT_EQ(vhu_backend_get_queue_stats(t.b, 1, &st), -EINVAL);
    /* the session ends: its counters stay in the totals, the state goes */
    tdrv_free(t.d);
    t.d = NULL;
    ASSERT_OK(vhu_backend_get_session(t.b, &s));
    ASSERT(!s.active);
    ASSERT_OK(vhu_backend_get_queue_stats(t.b, 0, &st));
    ASSERT(!st.started && !st.broken);
    ASSERT_EQ(st.requests, 10);
    ASSERT_EQ(st.in_bytes, 2000);
    ASSERT_EQ(st.breaks, 1);
    ASSERT_EQ(vhu_backend_config_changed(t.b), -ENOTCONN);
    rng_down(&t);
}

TDRV_TEST(counters_split) { run_counters(false); }
TDRV_TEST(counters_packed) { run_counters(true); }

/* ---- the backend channel ---- */

static int fake_send(void *conn, const struct vhu_msg *m)
{
    (void)conn;
    (void)m;
    return 0;
}

static const struct vhu_session_transport_ops fake_ops = {.name = "test", .send = fake_send};

static int send_u64(struct vhu_session *s, uint32_t req, uint64_t v)
{
    struct vhu_msg m;

    vhu_msg_init(&m, req, VHOST_USER_VERSION, sizeof(uint64_t));
    m.payload.u64 = v;
    return vhu_session_dispatch(s, &m);
}

static int send_fd(struct vhu_session *s, uint32_t req, int fd)
{
    struct vhu_msg m;

    vhu_msg_init(&m, req, VHOST_USER_VERSION, 0);
    m.fds[0] = fd;
    m.nfds = 1;
    return vhu_session_dispatch(s, &m);
}

struct chan {
    char path[128];
    struct vhu_loop *loop;
    struct vhu_device *dev;
    struct vhu_backend *b;
    struct vhu_session *s;
    int peer; /* the frontend's end of the backend channel */
};

static int chan_up(struct chan *c, uint64_t pf)
{
    struct vhu_blk_opts bo = {.null_size = 1 << 20};
    int sp[2] = {-1, -1}, r;

    memset(c, 0, sizeof(*c));
    c->peer = -1;
    r = vhu_blk_new(&bo, &c->dev);
    if (r == 0)
        r = vhu_loop_new(&c->loop);
    if (r == 0)
        r = vhu_backend_new(c->dev, c->loop, &c->b);
    if (r == 0)
        r = vhu_session_new(c->b, &fake_ops, NULL, &c->s);
    if (r == 0)
        r = send_u64(c->s, VHOST_USER_SET_PROTOCOL_FEATURES, pf);
    if (r == 0 && (pf & vhu_feature(VHOST_USER_PROTOCOL_F_BACKEND_REQ))) {
        r = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0 ? -errno : 0;
        if (r == 0)
            r = send_fd(c->s, VHOST_USER_SET_BACKEND_REQ_FD, sp[0]); /* taken */
        c->peer = sp[1];
    }
    return r;
}

static void chan_down(struct chan *c)
{
    vhu_session_end(c->s);
    if (c->b)
        vhu_backend_free(c->b);
    else if (c->dev)
        c->dev->ops->destroy(c->dev);
    vhu_loop_free(c->loop);
    vhu_fd_close(&c->peer);
}

TEST(config_change_message)
{
    uint64_t pf = vhu_feature(VHOST_USER_PROTOCOL_F_BACKEND_REQ) |
                  vhu_feature(VHOST_USER_PROTOCOL_F_CONFIG);
    struct vhost_user_hdr h;
    struct vhu_backend_session s;
    struct chan c;
    int r = 0, n;

    ASSERT_OK(chan_up(&c, pf));
    ASSERT_OK(vhu_backend_get_session(c.b, &s));
    ASSERT_EQ(s.transport_features, pf);
    ASSERT_OK(vhu_blk_resize(c.dev, 2 << 20));
    ASSERT_EQ(vhu_blk_capacity(c.dev), 4096);
    ASSERT_OK(vhu_backend_config_changed(c.b));
    ASSERT_EQ(recv(c.peer, &h, sizeof(h), MSG_DONTWAIT), (ssize_t)sizeof(h));
    ASSERT_EQ(h.request, VHOST_USER_BACKEND_CONFIG_CHANGE_MSG);
    ASSERT_EQ(h.flags, VHOST_USER_VERSION); /* no NEED_REPLY: nobody waits for an answer */
    ASSERT_EQ(h.size, 0);
    /* a frontend that never reads its channel: -EAGAIN once the socket is full, no blocking */
    for (n = 0; n < 1000000 && r == 0; n++)
        r = vhu_backend_config_changed(c.b);
    ASSERT_EQ(r, -EAGAIN);
    ASSERT(n > 1);
    chan_down(&c);
}

TEST(config_change_needs_channel_and_features)
{
    struct chan c;

    /* BACKEND_REQ without CONFIG */
    ASSERT_OK(chan_up(&c, vhu_feature(VHOST_USER_PROTOCOL_F_BACKEND_REQ)));
    ASSERT_EQ(vhu_backend_config_changed(c.b), -ENOTSUP);
    chan_down(&c);
    /* CONFIG, no channel */
    ASSERT_OK(chan_up(&c, vhu_feature(VHOST_USER_PROTOCOL_F_CONFIG)));
    ASSERT_EQ(vhu_backend_config_changed(c.b), -ENOTSUP);
    vhu_session_end(c.s);
    c.s = NULL;
    ASSERT_EQ(vhu_backend_config_changed(c.b), -ENOTCONN);
    chan_down(&c);
}

/* ---- vhu_blk_resize ---- */

static int temp_file(char *path, size_t len, uint64_t size)
{
    const char *dir = vhu_test_tmpdir();
    int fd, r;

    snprintf(path, len, "%s/vhu-resize-XXXXXX", dir);
    fd = mkstemp(path);
    if (fd < 0)
        return -errno;
    r = ftruncate(fd, (off_t)size) < 0 ? -errno : 0;
    close(fd);
    return r;
}

static uint64_t file_size(const char *path)
{
    struct stat sb;

    return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

TEST(blk_resize_file)
{
    struct vhu_blk_opts bo = {.blk_size = 4096};
    struct vhu_device *dev = NULL;
    char path[160];

    ASSERT_OK(temp_file(path, sizeof(path), 1 << 20));
    bo.path = path;
    ASSERT_OK(vhu_blk_new(&bo, &dev));
    ASSERT_EQ(vhu_blk_resize(dev, 1 << 20), 0); /* the same size: nothing to do */
    ASSERT_EQ(vhu_blk_resize(dev, (1 << 20) + 512), -EINVAL); /* not a block multiple */
    ASSERT_EQ(vhu_blk_resize(dev, 1 << 19), -EINVAL); /* shrink */
    ASSERT_OK(vhu_blk_resize(dev, 3 << 20));
    ASSERT_EQ(vhu_blk_capacity(dev), (3 << 20) / 512);
    ASSERT_EQ(file_size(path), 3 << 20);
    dev->ops->destroy(dev);
    /* read-only: only a file something else already grew */
    bo.read_only = true;
    ASSERT_OK(vhu_blk_new(&bo, &dev));
    ASSERT_EQ(vhu_blk_resize(dev, 4 << 20), -EROFS);
    ASSERT_EQ(truncate(path, 4 << 20), 0);
    ASSERT_OK(vhu_blk_resize(dev, 4 << 20));
    ASSERT_EQ(vhu_blk_capacity(dev), (4 << 20) / 512);
    dev->ops->destroy(dev);
    unlink(path);
}
