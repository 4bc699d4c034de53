/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The frontend library's device drivers (vhu/fe/blk.h, vhu/fe/net.h) against the real vhu
 * devices over the in-process loopback transport: blk data integrity through several requests
 * in flight, flush, get-id, write-zeroes and discard, error statuses and the depth bound; net
 * frames sent and reflected back intact, with and without mergeable receive buffers; split and
 * packed rings.
 */
#include <fcntl.h>
#include <unistd.h>

#include "net_testlib.h"
#include "vhu/dev/blk.h"
#include "vhu/fe/blk.h"
#include "vhu/fe/net.h"
#include "vhu_test.h"

/* ---------------------------------------------------------------------------------------- */
/* blk                                                                                       */
/* ---------------------------------------------------------------------------------------- */

struct bb {
    char path[128];
    struct vhu_loop *loop;
    struct vhu_backend *b;
    struct vhu_fe *fe;
    struct vhu_device *dev;
    struct vhu_fe_blk_info info;
    struct vhu_fe_blk *drv;
    uint8_t *buf;
    uint64_t buf_gpa;
};

static int bb_up(struct bb *t, bool packed, bool read_only, unsigned depth)
{
    const char *dir = vhu_test_tmpdir();
    struct vhu_blk_opts bo = {.read_only = read_only, .serial = "fe-drivers"};
    int fd, r;

    memset(t, 0, sizeof(*t));
    snprintf(t->path, sizeof(t->path), "%s/vhu-fe-blk-XXXXXX", dir);
    fd = mkstemp(t->path);
    if (fd < 0)
        return -errno;
    r = ftruncate(fd, 4 << 20) < 0 ? -errno : 0;
    close(fd);
    if (r < 0)
        return r;
    bo.path = t->path;
    r = vhu_blk_new(&bo, &t->dev);
    if (r == 0)
        r = vhu_loop_new(&t->loop);
    if (r == 0)
        r = vhu_backend_new(t->dev, t->loop, &t->b);
    if (r == 0)
        r = vhu_loopback_connect(t->b, t->loop, &t->fe);
    if (r < 0)
        return r;
    struct vhu_fe_opts fo = {.features = vhu_fe_blk_features(), .num_queues = 1,
                             .queue_size = 64, .packed = packed, .event_idx = true,
                             .indirect = true, .mem_size = 8 << 20};
    r = vhu_fe_start(t->fe, &fo);
    if (r == 0)
        r = vhu_fe_blk_get_info(t->fe, &t->info);
    if (r == 0)
        r = vhu_fe_blk_new(t->fe, &t->info, 0, depth, &t->drv);
    if (r < 0)
        return r;
    t->buf = vhu_fe_alloc(t->fe, 1 << 20, 4096, &t->buf_gpa);
    return t->buf ? 0 : -ENOMEM;
}

static void bb_down(struct bb *t)
{
    vhu_fe_blk_free(t->drv);
    vhu_fe_free(t->fe);
    if (t->b)
        vhu_backend_free(t->b);
    else if (t->dev)
        t->dev->ops->destroy(t->dev);
    vhu_loop_free(t->loop);
    if (t->path[0])
        unlink(t->path);
}

/* Kick and reap n completions into cpl (in completion order); how many came. */
static int bb_run(struct bb *t, struct vhu_fe_blk_cpl *cpl, unsigned n)
{
    unsigned got = 0;
    int r = vhu_fe_blk_kick(t->drv);

    while (r >= 0 && got < n) {
        r = vhu_fe_blk_reap_wait(t->drv, cpl + got, n - got, 2000);
        if (r > 0)
            got += (unsigned)r;
    }
    return r < 0 ? r : (int)got;
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 9));
}

static void blk_integrity(bool packed)
{
    struct bb t;
    struct vhu_fe_blk_cpl c[8];
    const uint32_t len = 16384;

    ASSERT_OK(bb_up(&t, packed, false, 8));
    ASSERT_EQ(vhu_fe_blk_depth(t.drv), 8);
    ASSERT_EQ(t.info.capacity, (4u << 20) / 512);
    /* 4 writes in flight, each with its own cookie and data */
    for (unsigned i = 0; i < 4; i++) {
        fill(t.buf + i * len, len, i + 1);
        ASSERT_OK(vhu_fe_blk_write(t.drv, 8 + i * (len / 512), t.buf_gpa + i * len, len,
                                   (void *)(uintptr_t)(i + 1)));
    }
    ASSERT_EQ(vhu_fe_blk_inflight(t.drv), 4);
    ASSERT_EQ(bb_run(&t, c, 4), 4);
    unsigned seen = 0;
    for (unsigned i = 0; i < 4; i++) {
        ASSERT_EQ(c[i].status, VHU_VIRTIO_BLK_S_OK);
        ASSERT_EQ(c[i].bytes, 0);
        seen |= 1u << (uintptr_t)c[i].cookie;
    }
    ASSERT_EQ(seen, 0x1e);
    ASSERT_EQ(vhu_fe_blk_inflight(t.drv), 0);
    /* read all 64 KiB back in one request into another buffer, and check against the file */
    uint8_t *back = t.buf + (512 << 10);
    memset(back, 0xa5, 4 * len);
    ASSERT_OK(vhu_fe_blk_read(t.drv, 8, t.buf_gpa + (512 << 10), 4 * len, back));
    ASSERT_EQ(bb_run(&t, c, 1), 1);
    ASSERT_EQ(c[0].status, VHU_VIRTIO_BLK_S_OK);
    ASSERT(c[0].cookie == back);
    ASSERT_EQ(c[0].bytes, 4 * len);
    ASSERT(memcmp(back, t.buf, 4 * len) == 0);
    uint8_t file[512];
    int fd = open(t.path, O_RDONLY);
    ASSERT(fd >= 0);
    ASSERT_EQ(pread(fd, file, sizeof(file), 8 * 512 + len), sizeof(file));
    close(fd);
    ASSERT(memcmp(file, t.buf + len, sizeof(file)) == 0);
    bb_down(&t);
}

/* vhu_fe_queue_stats: a kick counts only when the kick fd is written, a call when it is drained */
static void fe_stats(bool packed)
{
    struct bb t;
    struct vhu_fe_blk_cpl c[1];
    struct vhu_fe_queue_stats st = {.kicks = 99, .calls = 99};

    ASSERT_OK(bb_up(&t, packed, false, 4));
    ASSERT_OK(vhu_fe_queue_stats(t.fe, 0, &st));
    ASSERT_EQ(st.kicks, 0);
    ASSERT_EQ(st.calls, 0);
    ASSERT_EQ(vhu_fe_queue_stats(t.fe, 1, &st), -EINVAL);
    ASSERT_OK(vhu_fe_blk_read(t.drv, 0, t.buf_gpa, 4096, NULL));
    ASSERT_EQ(bb_run(&t, c, 1), 1);
    ASSERT_OK(vhu_fe_queue_stats(t.fe, 0, &st));
    ASSERT_EQ(st.kicks, 1);
    ASSERT(st.calls >= 1);
    uint64_t calls = st.calls;
    /* nothing new to publish: no kick */
    ASSERT_OK(vhu_fe_blk_kick(t.drv));
    ASSERT_OK(vhu_fe_queue_stats(t.fe, 0, &st));
    ASSERT_EQ(st.kicks, 1);
    ASSERT_EQ(st.calls, calls);
    /* a second request: one more kick (the device sleeps again with kicks enabled) */
    ASSERT_OK(vhu_fe_blk_read(t.drv, 8, t.buf_gpa, 4096, NULL));
    ASSERT_EQ(bb_run(&t, c, 1), 1);
    ASSERT_OK(vhu_fe_queue_stats(t.fe, 0, &st));
    ASSERT_EQ(st.kicks, 2);
    ASSERT(st.calls > calls);
    bb_down(&t);
}

TEST(fe_stats_split) { fe_stats(false); }
TEST(fe_stats_packed) { fe_stats(true); }

TEST(blk_integrity_split) { blk_integrity(false); }
TEST(blk_integrity_packed) { blk_integrity(true); }

static void blk_commands(bool packed)
{
    struct bb t;
    struct vhu_fe_blk_cpl c[4];

    ASSERT_OK(bb_up(&t, packed, false, 4));
    /* get-id: the serial, NUL-padded */
    memset(t.buf, 0xee, 32);
    ASSERT_OK(vhu_fe_blk_get_id(t.drv, t.buf_gpa, NULL));
    ASSERT_EQ(bb_run(&t, c, 1), 1);
    ASSERT_EQ(c[0].status, VHU_VIRTIO_BLK_S_OK);
    ASSERT(memcmp(t.buf, "fe-drivers\0", 11) == 0);
    /* flush */
    ASSERT(vhu_has_feature(t.info.features, VHU_VIRTIO_BLK_F_FLUSH));
    ASSERT_OK(vhu_fe_blk_flush(t.drv, NULL));
    ASSERT_EQ(bb_run(&t, c, 1), 1);
    ASSERT_EQ(c[0].status, VHU_VIRTIO_BLK_S_OK);
    /* write a pattern, write_zeroes 8 sectors in its middle, discard others: read back */
    fill(t.buf, 32 * 512, 9);
    ASSERT_OK(vhu_fe_blk_write(t.drv, 100, t.buf_gpa, 32 * 512, NULL));
    ASSERT_EQ(bb_run(&t, c, 1), 1);
    ASSERT_EQ(c[0].status, VHU_VIRTIO_BLK_S_OK);
    ASSERT_OK(vhu_fe_blk_write_zeroes(t.drv, 104, 8, false, NULL));
    ASSERT_OK(vhu_fe_blk_discard(t.drv, 120, 8, NULL));
    ASSERT_EQ(bb_run(&t, c, 2), 2);
    ASSERT_EQ(c[0].status, VHU_VIRTIO_BLK_S_OK);
    ASSERT_EQ(c[1].status, VHU_VIRTIO_BLK_S_OK);
    uint8_t *back = t.buf + (64 << 10);
    ASSERT_OK(vhu_fe_blk_read(t.drv, 100, t.buf_gpa + (64 << 10), 32 * 512, NULL));
    ASSERT_EQ(bb_run(&t, c, 1), 1);
    ASSERT_EQ(c[0].status, VHU_VIRTIO_BLK_S_OK);
    ASSERT(memcmp(back, t.buf, 4 * 512) == 0);
    for (unsigned i = 4 * 512; i < 12 * 512; i++)
        ASSERT_EQ(back[i], 0);
    ASSERT(memcmp(back + 12 * 512, t.buf + 12 * 512, 8 * 512) == 0);
    for (unsigned i = 20 * 512; i < 28 * 512; i++) /* discarded: the file store punches holes */
        ASSERT_EQ(back[i], 0);
    ASSERT(memcmp(back + 28 * 512, t.buf + 28 * 512, 4 * 512) == 0);
    bb_down(&t);
}

TEST(blk_commands_split) { blk_commands(false); }
TEST(blk_commands_packed) { blk_commands(true); }

TEST(blk_errors)
{
    struct bb t;
    struct vhu_fe_blk_cpl c[4];

    ASSERT_OK(bb_up(&t, false, false, 2));
    /* a read past the end: IOERR */
    ASSERT_OK(vhu_fe_blk_read(t.drv, t.info.capacity, t.buf_gpa, 512, NULL));
    ASSERT_EQ(bb_run(&t, c, 1), 1);
    ASSERT_EQ(c[0].status, VHU_VIRTIO_BLK_S_IOERR);
    /* the depth bounds what is in flight */
    ASSERT_OK(vhu_fe_blk_read(t.drv, 0, t.buf_gpa, 512, NULL));
    ASSERT_OK(vhu_fe_blk_read(t.drv, 1, t.buf_gpa + 512, 512, NULL));
    ASSERT_ERR(-EBUSY, vhu_fe_blk_read(t.drv, 2, t.buf_gpa, 512, NULL));
    ASSERT_ERR(-EBUSY, vhu_fe_blk_flush(t.drv, NULL));
    ASSERT_EQ(bb_run(&t, c, 2), 2);
    /* nothing in flight: reap returns 0, a short wait times out */
    ASSERT_EQ(vhu_fe_blk_reap(t.drv, c, 4), 0);
    ASSERT_ERR(-ETIMEDOUT, vhu_fe_blk_reap_wait(t.drv, c, 4, 20));
    bb_down(&t);

    /* a read-only disk refuses writes */
    ASSERT_OK(bb_up(&t, true, true, 0));
    ASSERT_EQ(vhu_fe_blk_depth(t.drv), 64); /* 0: the ring size */
    ASSERT(vhu_has_feature(t.info.features, VHU_VIRTIO_BLK_F_RO));
    ASSERT_OK(vhu_fe_blk_write(t.drv, 0, t.buf_gpa, 512, NULL));
    ASSERT_EQ(bb_run(&t, c, 1), 1);
    ASSERT_EQ(c[0].status, VHU_VIRTIO_BLK_S_IOERR);
    bb_down(&t);
}

/* ---------------------------------------------------------------------------------------- */
/* net                                                                                       */
/* ---------------------------------------------------------------------------------------- */

struct rx_log {
    unsigned frames, multi, bad;
    uint8_t frame[64][1600];
    uint32_t len[64];
};

static void rx_collect(void *opaque, const struct vhu_fe_net_rx_frame *f)
{
    struct rx_log *l = opaque;
    uint32_t off = 0;

    if (f->flags)
        l->bad++;
    if (f->nsegs > 1)
        l->multi++;
    if (l->frames < 64 && f->len <= sizeof(l->frame[0])) {
        for (unsigned i = 0; i < f->nsegs; i++) {
            memcpy(l->frame[l->frames] + off, f->segs[i].data, f->segs[i].len);
            off += f->segs[i].len;
        }
        l->len[l->frames] = f->len;
    }
    l->frames++;
}

static void net_reflect(bool packed, bool mrg, uint32_t rx_buf)
{
    struct tb t;
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_REFLECT}, .packed = packed, .mrg = mrg};
    struct vhu_fe_net_info info;
    struct vhu_fe_net_txq *tx = NULL;
    struct vhu_fe_net_rxq *rx = NULL;
    static struct rx_log log;
    const unsigned n = 40;

    memset(&log, 0, sizeof(log));
    ASSERT_OK(tb_up(&t, &o));
    ASSERT_OK(vhu_fe_net_get_info(tdrv_fe(t.d), &info));
    ASSERT_EQ(info.mrg_rxbuf, mrg);
    ASSERT_EQ(info.max_frame, 1514);
    /* net offers IN_ORDER and the frontend acks it: transmit completions come batched */
    ASSERT(vhu_has_feature(vhu_fe_features(tdrv_fe(t.d)), VHU_VIRTIO_F_IN_ORDER));
    ASSERT_OK(vhu_fe_net_txq_new(tdrv_fe(t.d), 0, 16, 1514, &tx));
    ASSERT_OK(vhu_fe_net_rxq_new(tdrv_fe(t.d), &info, 0, 0, rx_buf, &rx));
    unsigned sent = 0, reclaimed = 0;
    uint64_t deadline = vhu_now_ns() + 3000000000ull;
    while ((log.frames < n || reclaimed < n) && vhu_now_ns() < deadline) {
        struct vhu_fe_net_buf *b;
        while (sent < n && (b = vhu_fe_net_tx_buf(tx)) != NULL) {
            uint32_t len = 60 + sent * 37;
            make_frame(b->data + VHU_FE_NET_HDR_LEN, len, sent);
            ASSERT_OK(vhu_fe_net_tx_send(tx, b, len, NULL));
            sent++;
        }
        ASSERT_OK(vhu_fe_net_tx_kick(tx));
        int r = vhu_fe_net_tx_reclaim(tx);
        ASSERT_OK(r);
        reclaimed += (unsigned)r;
        r = vhu_fe_net_rx_poll(rx, 64, rx_collect, &log);
        ASSERT_OK(r);
        if (r == 0)
            vhu_fe_net_rxq_wait(rx, 10);
    }
    ASSERT_EQ(reclaimed, n);
    ASSERT_EQ(log.frames, n);
    ASSERT_EQ(log.bad, 0);
    for (unsigned i = 0; i < n; i++) {
        uint8_t want[1600];
        uint32_t len = 60 + i * 37;
        make_frame(want, len, i);
        ASSERT_EQ(log.len[i], len);
        /* the reflector swaps the addresses */
        ASSERT(memcmp(log.frame[i], want + 6, 6) == 0);
        ASSERT(memcmp(log.frame[i] + 6, want, 6) == 0);
        ASSERT(memcmp(log.frame[i] + 12, want + 12, len - 12) == 0);
    }
    if (mrg && rx_buf < 1514)
        ASSERT(log.multi > 0); /* big frames spanned several buffers */
    else
        ASSERT_EQ(log.multi, 0);
    struct vhu_fe_net_rxq_stats st;
    vhu_fe_net_rxq_get_stats(rx, &st);
    ASSERT_EQ(st.frames, n);
    ASSERT(st.bufs >= n);
    ASSERT_EQ(vhu_fe_net_tx_free_bufs(tx), 16);
    vhu_fe_net_txq_free(tx);
    vhu_fe_net_rxq_free(rx);
    tb_down(&t);
}

TEST(net_reflect_split) { net_reflect(false, false, 2048); }
TEST(net_reflect_packed) { net_reflect(true, false, 2048); }
TEST(net_reflect_mrg_split) { net_reflect(false, true, 256); }
TEST(net_reflect_mrg_packed) { net_reflect(true, true, 256); }

TEST(net_rx_limits)
{
    struct tb t;
    struct tb_opts o = {.net = {.port = VHU_NET_PORT_SOURCE, .source_size = 100}};
    struct vhu_fe_net_info info;
    struct vhu_fe_net_rxq *rx = NULL;
    static struct rx_log log;

    memset(&log, 0, sizeof(log));
    ASSERT_OK(tb_up(&t, &o));
    ASSERT_OK(vhu_fe_net_get_info(tdrv_fe(t.d), &info));
    /* without MRG_RXBUF a buffer must hold the largest frame */
    ASSERT_ERR(-EINVAL, vhu_fe_net_rxq_new(tdrv_fe(t.d), &info, 0, 0, 1000, &rx));
    ASSERT_OK(vhu_fe_net_rxq_new(tdrv_fe(t.d), &info, 0, 8, 2048, &rx));
    ASSERT_EQ(vhu_fe_net_rxq_nbufs(rx), 8);
    /* max_frames bounds one poll; the source keeps the buffers coming back */
    uint64_t deadline = vhu_now_ns() + 3000000000ull;
    while (log.frames < 20 && vhu_now_ns() < deadline) {
        int r = vhu_fe_net_rx_poll(rx, 3, rx_collect, &log);
        ASSERT_OK(r);
        ASSERT(r <= 3);
        if (r == 0)
            vhu_fe_net_rxq_wait(rx, 10);
    }
    ASSERT(log.frames >= 20);
    ASSERT_EQ(log.len[0], 100);
    ASSERT_EQ(log.bad, 0);
    ASSERT_EQ(vhu_fe_net_rxq_error(rx)[0], '\0');
    vhu_fe_net_rxq_free(rx);
    tb_down(&t);
}

static void quiet_sink(enum vhu_log_level l, const char *msg, void *o)
{
}

__attribute__((constructor)) static void setup_log(void)
{
    vhu_log_set_sink(getenv("VHU_TEST_VERBOSE") ? vhu_log_stderr_sink : quiet_sink, NULL,
                     VHU_LOG_DEBUG);
}
