/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * virtio-blk on the Ceph RBD store (src/dev/blk_rbd.c), each test over both paths of the test
 * driver, against a real one-node cluster: tests/unit/rbd-run.sh starts it (tests/ceph-lib.sh),
 * exports CEPH_CONF and VHU_TEST_RBD_POOL, runs this, and stops it. Without them every test
 * SKIPs. Each test makes its own image; what the device wrote is checked with librbd directly.
 * Covers data integrity over two queues, many requests in flight (completions from librbd's
 * threads through the lock-free done stack), FLUSH and writethrough writes (write + flush),
 * DISCARD / WRITE_ZEROES, a read-only snapshot, and bad image specs.
 */
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "vhu/backend.h"
#include "vhu/dev/blk.h"
#include "vhu/device.h"
#include "vhu/frontend.h"
#include "vhu/loop.h"
#include "vhu/util.h"
#include "tdrv.h"
#include "../../src/dev/blk_store.h"
#include "vhu_test.h"

#define DISK_SIZE (16u << 20)
#define DATA_MAX (1u << 20)

static rados_t cluster;
static rados_ioctx_t ioctx;
static const char *pool;

static void drop_cluster(void)
{
    rados_ioctx_destroy(ioctx);
    rados_shutdown(cluster);
}

/* The test's own connection (to make images and check them); SKIP without a cluster. */
static void need_cluster(void)
{
    pool = getenv("VHU_TEST_RBD_POOL");
    if (!pool || !getenv("CEPH_CONF"))
        SKIP("no Ceph cluster: run through tests/unit/rbd-run.sh (VHU_TEST_RBD_POOL, CEPH_CONF)");
    if (ioctx)
        return;
    ASSERT_OK(rados_create(&cluster, NULL));
    ASSERT_OK(rados_conf_read_file(cluster, getenv("CEPH_CONF")));
    ASSERT_OK(rados_connect(cluster));
    ASSERT_OK(rados_ioctx_create(cluster, pool, &ioctx));
    atexit(drop_cluster);
}

struct tb {
    char image[64], spec[160];
    struct vhu_loop *loop;
    struct vhu_backend *b;
    struct tdrv *d;
    struct vhu_device *dev;
    uint8_t *hdr, *status, *data;
    uint64_t hdr_gpa, status_gpa, data_gpa;
};

static void new_image(struct tb *t)
{
    static unsigned n;
    int order = 22;

    snprintf(t->image, sizeof(t->image), "t%d-%u-%s", (int)getpid(), n++,
             tdrv_path_name(tdrv_path));
    for (char *c = t->image; *c; c++)
        if (*c == '/' || *c == '@')
            *c = '_';
    ASSERT_OK(rbd_create(ioctx, t->image, DISK_SIZE, &order));
    snprintf(t->spec, sizeof(t->spec), "%s/%s", pool, t->image);
}

/* The device on spec (t->spec unless given), and a driver with 2 queues of 64. */
static int tb_up(struct tb *t, const struct vhu_blk_opts *bo_in, const char *spec)
{
    struct vhu_blk_opts bo = *bo_in;
    int r;

    bo.rbd = spec ? spec : t->spec;
    bo.rbd_conf = getenv("CEPH_CONF");
    if (!bo.num_queues)
        bo.num_queues = 2;
    r = vhu_blk_new(&bo, &t->dev);
    if (r < 0)
        return r;
    r = vhu_loop_new(&t->loop);
    if (r == 0)
        r = vhu_backend_new(t->dev, t->loop, &t->b);
    if (r == 0)
        r = vhu_backend_set_workers(t->b, 2, 0);
    if (r == 0)
        r = tdrv_new(tdrv_path, t->b, t->loop, &t->d);
    if (r < 0)
        return r;
    struct tdrv_opts fo = {
        .features = vhu_feature(VHU_VIRTIO_BLK_F_SEG_MAX) | vhu_feature(VHU_VIRTIO_BLK_F_BLK_SIZE) |
                    vhu_feature(VHU_VIRTIO_BLK_F_FLUSH) | vhu_feature(VHU_VIRTIO_BLK_F_CONFIG_WCE) |
                    vhu_feature(VHU_VIRTIO_BLK_F_MQ) | vhu_feature(VHU_VIRTIO_BLK_F_DISCARD) |
                    vhu_feature(VHU_VIRTIO_BLK_F_WRITE_ZEROES) | vhu_feature(VHU_VIRTIO_BLK_F_RO),
        .num_queues = bo.num_queues,
        .queue_size = 64,
        .event_idx = true,
        .indirect = true,
        .mem_size = 8 << 20,
    };
    r = tdrv_start(t->d, &fo);
    if (r < 0)
        return r;
    t->hdr = tdrv_alloc(t->d, 64 * 16, 64, &t->hdr_gpa);
    t->status = tdrv_alloc(t->d, 64, 64, &t->status_gpa);
    t->data = tdrv_alloc(t->d, DATA_MAX, 4096, &t->data_gpa);
    return t->hdr && t->status && t->data ? 0 : -ENOMEM;
}

static void tb_down(struct tb *t, bool remove)
{
    tdrv_teardown(t->d, t->b, t->dev, t->loop);
    if (remove && t->image[0])
        rbd_remove(ioctx, t->image);
}

#define BLK_TEST_RQ_TIMEOUT_MS 10000
#include "blk_testlib.h"

/* What the image holds at off, read with librbd (another client than the device). */
static bool image_matches(const char *image, const char *snap, uint64_t off, const uint8_t *want,
                          size_t n)
{
    rbd_image_t img;
    uint8_t *buf = malloc(n);
    bool ok = false;

    if (buf && rbd_open_read_only(ioctx, image, &img, snap) == 0) {
        ok = rbd_read(img, off, n, (char *)buf) == (ssize_t)n && memcmp(buf, want, n) == 0;
        rbd_close(img);
    }
    free(buf);
    return ok;
}

static bool image_zero(const char *image, uint64_t off, size_t n)
{
    uint8_t *z = calloc(1, n);
    bool ok = z && image_matches(image, NULL, off, z, n);

    free(z);
    return ok;
}

/* ------------------------------------------------------------------------------------------ */

TDRV_TEST(rbd_integrity_two_queues)
{
    struct tb t;
    uint8_t st, *want = malloc(DATA_MAX);

    need_cluster();
    ASSERT(want);
    new_image(&t);
    ASSERT_OK(tb_up(&t, &(struct vhu_blk_opts){0}, NULL));
    ASSERT_EQ(vhu_blk_capacity(t.dev), DISK_SIZE / 512);
    ASSERT(strcmp(vhu_blk_engine_name(t.dev), "rbd") == 0);
    ASSERT(!vhu_has_feature(tdrv_features(t.d), VHU_VIRTIO_BLK_F_RO));
    static const struct { uint64_t sector; uint32_t len; unsigned nseg; } cases[] = {
        {0, 512, 1}, {1, 4096, 3}, {100, 65536, 16}, {8191, 4096 + 512, 2},
        {4096, DATA_MAX, 32}, {DISK_SIZE / 512 - 8, 4096, 2},
    };
    for (unsigned i = 0; i < VHU_ARRAY_SIZE(cases); i++) {
        unsigned wq = i % 2;
        pattern(want, cases[i].len, i + 1);
        memcpy(t.data, want, cases[i].len);
        ASSERT_EQ(rq(&t, wq, VHU_VIRTIO_BLK_T_OUT, cases[i].sector, cases[i].len, false,
                     cases[i].nseg, &st), 1);
        ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
        memset(t.data, 0, cases[i].len);
        ASSERT_EQ(rq(&t, 1 - wq, VHU_VIRTIO_BLK_T_IN, cases[i].sector, cases[i].len, true,
                     cases[i].nseg, &st), (int)cases[i].len + 1);
        ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
        ASSERT(memcmp(t.data, want, cases[i].len) == 0);
    }
    /* what the device acknowledged after a FLUSH, another client reads */
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_FLUSH, 0, 0, false, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    pattern(want, DATA_MAX, 5);
    ASSERT(image_matches(t.image, NULL, 4096 * 512, want, DATA_MAX));
    /* past the end: IOERR, nothing sent to librbd */
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_IN, DISK_SIZE / 512 - 1, 1024, true, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_IOERR);
    tb_down(&t, true);
    free(want);
}

/* 48 writes in flight at once on one queue (completions come back on librbd's threads, in any
 * order), then the ring stops while some may be outstanding: every one completes. */
TDRV_TEST(rbd_many_in_flight)
{
    enum { N = 48 };
    struct tb t;
    uint8_t *st;
    uint64_t st_gpa;

    need_cluster();
    new_image(&t);
    ASSERT_OK(tb_up(&t, &(struct vhu_blk_opts){.num_queues = 1}, NULL));
    st = tdrv_alloc(t.d, N, 1, &st_gpa);
    ASSERT(st);
    pattern(t.data, N * 16384, 6);
    struct vhu_vqd *vqd = tdrv_vqd(t.d, 0);
    for (unsigned i = 0; i < N; i++) {
        struct vhu_virtio_blk_outhdr h = {.type = VHU_VIRTIO_BLK_T_OUT, .sector = i * 32};
        memcpy(t.hdr + i * 16, &h, 16);
        st[i] = 0xee;
        struct vhu_vqd_seg s[3] = {{t.hdr_gpa + i * 16, 16}, {t.data_gpa + i * 16384, 16384},
                                   {st_gpa + i, 1}};
        ASSERT_OK(vhu_vqd_add(vqd, s, 2, 1, &st[i]));
    }
    ASSERT_OK(tdrv_kick(t.d, 0));
    unsigned done = 0;
    uint64_t deadline = vhu_now_ns() + 10000000000ull;
    while (done < N && vhu_now_ns() < deadline) {
        uint32_t len;
        if (vhu_vqd_get_used(vqd, &len)) {
            ASSERT_EQ(len, 1);
            done++;
            if (done == N / 2)
                break; /* stop the ring with the rest possibly in flight */
            continue;
        }
        vhu_vqd_enable_cb(vqd);
        tdrv_wait(t.d, 0, 100);
    }
    ASSERT_OK(tdrv_stop(t.d)); /* queue_stop waits for the rest */
    uint32_t len;
    while (vhu_vqd_get_used(vqd, &len))
        done++;
    ASSERT_EQ(done, N);
    for (unsigned i = 0; i < N; i++)
        ASSERT_EQ(st[i], VHU_VIRTIO_BLK_S_OK);
    ASSERT(image_matches(t.image, NULL, 0, t.data, N * 16384));
    tb_down(&t, true);
}

/* Writethrough (writeback 0): every write is a write + flush; the guest may switch. */
TDRV_TEST(rbd_writethrough_and_flush)
{
    struct tb t;
    uint8_t st, wb = 0, want[8192];

    need_cluster();
    new_image(&t);
    ASSERT_OK(tb_up(&t, &(struct vhu_blk_opts){.writethrough = true}, NULL));
    ASSERT_OK(tdrv_get_config(t.d, offsetof(struct vhu_virtio_blk_config, writeback), &wb, 1));
    ASSERT_EQ(wb, 0);
    pattern(want, sizeof(want), 12);
    memcpy(t.data, want, sizeof(want));
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_OUT, 64, sizeof(want), false, 2, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    ASSERT(image_matches(t.image, NULL, 64 * 512, want, sizeof(want)));
    wb = 1;
    ASSERT_OK(tdrv_set_config(t.d, offsetof(struct vhu_virtio_blk_config, writeback), &wb, 1));
    pattern(want, sizeof(want), 13);
    memcpy(t.data, want, sizeof(want));
    ASSERT_EQ(rq(&t, 1, VHU_VIRTIO_BLK_T_OUT, 64, sizeof(want), false, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    ASSERT_EQ(rq(&t, 1, VHU_VIRTIO_BLK_T_FLUSH, 0, 0, false, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    ASSERT(image_matches(t.image, NULL, 64 * 512, want, sizeof(want)));
    tb_down(&t, true);
}

TDRV_TEST(rbd_discard_write_zeroes)
{
    struct tb t;
    uint8_t st;
    struct vhu_virtio_blk_config c;

    need_cluster();
    new_image(&t);
    ASSERT_OK(tb_up(&t, &(struct vhu_blk_opts){0}, NULL));
    ASSERT(vhu_has_feature(tdrv_features(t.d), VHU_VIRTIO_BLK_F_DISCARD));
    ASSERT(vhu_has_feature(tdrv_features(t.d), VHU_VIRTIO_BLK_F_WRITE_ZEROES));
    ASSERT_OK(tdrv_get_config(t.d, 0, &c, sizeof(c)));
    ASSERT_EQ(c.write_zeroes_may_unmap, 1);
    /* 10 MiB of data across three 4 MiB objects */
    for (unsigned i = 0; i < 10; i++) {
        pattern(t.data, DATA_MAX, 20 + i);
        ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_OUT, i * 2048, DATA_MAX, false, 4, &st), 1);
        ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    }
    /* DISCARD of a partial-object range: reads back zeroes (not left as it was) */
    struct vhu_virtio_blk_discard_write_zeroes d[3] = {{.sector = 128, .num_sectors = 128}};
    ASSERT_EQ(dwz(&t, VHU_VIRTIO_BLK_T_DISCARD, d, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    ASSERT(image_zero(t.image, 128 * 512, 128 * 512));
    ASSERT(!image_zero(t.image, 256 * 512, 512));
    ASSERT(!image_zero(t.image, 127 * 512, 512));
    /* WRITE_ZEROES without UNMAP, three ranges (one empty) */
    d[0] = (struct vhu_virtio_blk_discard_write_zeroes){.sector = 300, .num_sectors = 8};
    d[1] = (struct vhu_virtio_blk_discard_write_zeroes){.sector = 400, .num_sectors = 1};
    d[2] = (struct vhu_virtio_blk_discard_write_zeroes){.sector = 500, .num_sectors = 0};
    ASSERT_EQ(dwz(&t, VHU_VIRTIO_BLK_T_WRITE_ZEROES, d, 3, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    ASSERT(image_zero(t.image, 300 * 512, 8 * 512));
    ASSERT(image_zero(t.image, 400 * 512, 512));
    ASSERT(!image_zero(t.image, 308 * 512, 512));
    ASSERT(!image_zero(t.image, 500 * 512, 512));
    /* WRITE_ZEROES with UNMAP over a whole object and a part of the next */
    d[0] = (struct vhu_virtio_blk_discard_write_zeroes){.sector = 8192, .num_sectors = 8192 + 64,
                                                    .flags = VHU_VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP};
    ASSERT_EQ(dwz(&t, VHU_VIRTIO_BLK_T_WRITE_ZEROES, d, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    ASSERT(image_zero(t.image, 8192 * 512, (8192 + 64) * 512));
    ASSERT(!image_zero(t.image, (8192 * 2 + 64) * 512, 512));
    ASSERT(!image_zero(t.image, 8191 * 512, 512));
    /* read back through the device too */
    ASSERT_EQ(rq(&t, 1, VHU_VIRTIO_BLK_T_IN, 8192, 65536, true, 1, &st), 65536 + 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    for (unsigned i = 0; i < 65536; i++)
        ASSERT_EQ(t.data[i], 0);
    tb_down(&t, true);
}

/* POOL/IMAGE@SNAP: read-only (F_RO, no DISCARD), the snapshot's data, writes refused. */
TDRV_TEST(rbd_read_only_snapshot)
{
    struct tb t, s;
    uint8_t st, want[4096], now[4096];
    char spec[200];

    need_cluster();
    new_image(&t);
    ASSERT_OK(tb_up(&t, &(struct vhu_blk_opts){0}, NULL));
    pattern(want, sizeof(want), 31);
    memcpy(t.data, want, sizeof(want));
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_OUT, 8, sizeof(want), false, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_FLUSH, 0, 0, false, 1, &st), 1);
    tb_down(&t, false); /* closes the image: the snapshot below sees all of it */

    rbd_image_t img;
    ASSERT_OK(rbd_open(ioctx, t.image, &img, NULL));
    ASSERT_OK(rbd_snap_create(img, "s1"));
    pattern(now, sizeof(now), 32);
    ASSERT_EQ(rbd_write(img, 8 * 512, sizeof(now), (const char *)now), (ssize_t)sizeof(now));
    ASSERT_OK(rbd_close(img));

    snprintf(spec, sizeof(spec), "%s/%s@s1", pool, t.image);
    memset(&s, 0, sizeof(s));
    ASSERT_OK(tb_up(&s, &(struct vhu_blk_opts){0}, spec));
    ASSERT(vhu_has_feature(tdrv_features(s.d), VHU_VIRTIO_BLK_F_RO));
    ASSERT(!vhu_has_feature(tdrv_backend_features(s.d), VHU_VIRTIO_BLK_F_DISCARD));
    ASSERT_EQ(rq(&s, 1, VHU_VIRTIO_BLK_T_IN, 8, sizeof(want), true, 1, &st),
              (int)sizeof(want) + 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    ASSERT(memcmp(s.data, want, sizeof(want)) == 0); /* the snapshot, not the image now */
    ASSERT_EQ(rq(&s, 0, VHU_VIRTIO_BLK_T_OUT, 8, 4096, false, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_IOERR);
    tb_down(&s, false);
    ASSERT(image_matches(t.image, NULL, 8 * 512, now, sizeof(now))); /* untouched */
    ASSERT(image_matches(t.image, "s1", 8 * 512, want, sizeof(want)));

    ASSERT_OK(rbd_open(ioctx, t.image, &img, NULL));
    ASSERT_OK(rbd_snap_remove(img, "s1"));
    ASSERT_OK(rbd_close(img));
    ASSERT_OK(rbd_remove(ioctx, t.image));
}

TEST(rbd_bad_specs)
{
    struct vhu_device *dev;
    char b[64], *p, *n, *i, *s;

    /* the parser alone */
    strcpy(b, "pool/img@snap");
    ASSERT_OK(blk_rbd_parse_spec(b, &p, &n, &i, &s));
    ASSERT(strcmp(p, "pool") == 0 && !n && strcmp(i, "img") == 0 && strcmp(s, "snap") == 0);
    strcpy(b, "pool/ns/img");
    ASSERT_OK(blk_rbd_parse_spec(b, &p, &n, &i, &s));
    ASSERT(strcmp(n, "ns") == 0 && strcmp(i, "img") == 0 && !s);
    static const char *bad[] = {"", "img", "/img", "pool/", "pool//img", "pool/img@",
                                "pool/a/b/c", "pool/img@s@t", "@s", "pool/ns/"};
    for (unsigned k = 0; k < VHU_ARRAY_SIZE(bad); k++) {
        strcpy(b, bad[k]);
        ASSERT_ERR(-EINVAL, blk_rbd_parse_spec(b, &p, &n, &i, &s));
        ASSERT_ERR(-EINVAL, vhu_blk_new(&(struct vhu_blk_opts){.rbd = bad[k]}, &dev));
    }
    need_cluster();
    /* a missing image, a missing pool: the error, nothing leaks (ASan) */
    char spec[128];
    snprintf(spec, sizeof(spec), "%s/no-such-image", pool);
    ASSERT_ERR(-ENOENT, vhu_blk_new(&(struct vhu_blk_opts){.rbd = spec,
                                                           .rbd_conf = getenv("CEPH_CONF")},
                                    &dev));
    ASSERT_ERR(-ENOENT, vhu_blk_new(&(struct vhu_blk_opts){.rbd = "no-such-pool/img",
                                                           .rbd_conf = getenv("CEPH_CONF")},
                                    &dev));
}
