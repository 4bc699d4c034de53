/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * virtio-blk device model: the real device and backend core in one process, on temporary files,
 * each device test run over both paths of the test driver (tdrv.h: "vhost-user/" over the loopback
 * transport, "core/" through the core's typed calls alone). Covers config space and features, data
 * integrity (through the device and with pread on the file) for split and packed rings,
 * multi-segment chains and two queues, FLUSH, GET_ID, DISCARD / WRITE_ZEROES (holes and zeroes),
 * read-only disks, every malformed-request rule, backing failures, batches completing across a
 * ring stop, and the null store.
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <sched.h>
#include <unistd.h>

#include "vhu/backend.h"
#include "vhu/dev/blk.h"
#include "vhu/device.h"
#include "vhu/frontend.h"
#include "vhu/log.h"
#include "vhu/loop.h"
#include "vhu/loopback.h"
#include "vhu/util.h"
#include "tdrv.h"
#include "../../src/dev/blk_store.h" /* the null store's test hooks */
#include "vhu_test.h"

#define DISK_SIZE (4u << 20)
#define DATA_MAX (1u << 20)

/* A disk file, a device on it, and a frontend talking to it. */
struct tb {
    char path[128];
    struct vhu_loop *loop;
    struct vhu_backend *b;
    struct tdrv *d; /* over the path the test runs on (tdrv_path) */
    struct vhu_device *dev;
    /* request buffers in the shared arena */
    uint8_t *hdr, *status, *data; /* hdr: 16 bytes per queue; status: 1 byte per queue */
    uint64_t hdr_gpa, status_gpa, data_gpa;
    /* the NBD variants (tb_server): a server on path, the device on its export */
    pid_t srv;
    char sock[128], uri[192];
    char log[160]; /* nbdkit: logfile=... of its log filter (the commands it received) */
};

static int make_file(char *path, size_t pathsz, const char *dir, uint64_t size)
{
    int fd;

    snprintf(path, pathsz, "%s/vhu-blk-XXXXXX", dir);
    fd = mkstemp(path);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)size) < 0) {
        int e = -errno;
        close(fd);
        unlink(path);
        return e;
    }
    close(fd);
    return 0;
}

/* the harness's scratch dir under $TMPDIR: what a failed test leaves there goes at exit */
static const char *tmpdir(void)
{
    return vhu_test_tmpdir();
}

struct tb_opts {
    struct vhu_blk_opts blk;
    bool packed;
    uint16_t num_queues;
    uint16_t queue_size;
    const char *dir;      /* where the disk file goes (default tmpdir(), under $TMPDIR) */
    uint64_t file_size;   /* default DISK_SIZE; 0 with blk.null_size: no file */
    unsigned workers;     /* backend data-plane threads (0: the control loop) */
    unsigned poll_us;
    unsigned poll_max_us; /* adaptive polling (vhu_backend_set_poll) */
    bool no_event_idx;    /* a driver without VIRTIO_F_EVENT_IDX: a call per flush */
};

/* Which server the NBD variants put between the device and the disk file (see the NBD section). */
enum tb_server { SRV_NONE, SRV_QEMU_NBD, SRV_QEMU_NBD_RO, SRV_QEMU_NBD_SINGLE, SRV_NBDKIT_MEMORY };
static enum tb_server tb_server;
static int nbd_up(struct tb *t, struct vhu_blk_opts *bo);
static void nbd_down(struct tb *t);

static int tb_up(struct tb *t, const struct tb_opts *o)
{
    struct vhu_blk_opts bo = o->blk;
    int r;

    memset(t, 0, sizeof(*t));
    if (!bo.null_size) {
        r = make_file(t->path, sizeof(t->path), o->dir ? o->dir : tmpdir(),
                      o->file_size ? o->file_size : DISK_SIZE);
        if (r < 0)
            return r;
        bo.path = t->path;
    }
    t->srv = -1;
    if (tb_server != SRV_NONE && (r = nbd_up(t, &bo)) < 0)
        return r;
    tb_server = SRV_NONE; /* one bench per NBD_RUN, even when an ASSERT ends the test early */
    r = vhu_blk_new(&bo, &t->dev);
    if (r < 0)
        return r;
    r = vhu_loop_new(&t->loop);
    if (r == 0)
        r = vhu_backend_new(t->dev, t->loop, &t->b);
    if (r == 0 && o->workers)
        r = vhu_backend_set_workers(t->b, o->workers, o->poll_us);
    if (r == 0 && o->poll_max_us)
        r = vhu_backend_set_poll(t->b, VHU_POLL_ADAPTIVE, o->poll_max_us);
    if (r == 0)
        r = tdrv_new(tdrv_path, t->b, t->loop, &t->d);
    if (r < 0)
        return r;
    struct tdrv_opts fo = {
        .features = vhu_feature(VHU_VIRTIO_BLK_F_SIZE_MAX) | vhu_feature(VHU_VIRTIO_BLK_F_SEG_MAX) |
                    vhu_feature(VHU_VIRTIO_BLK_F_BLK_SIZE) | vhu_feature(VHU_VIRTIO_BLK_F_TOPOLOGY) |
                    vhu_feature(VHU_VIRTIO_BLK_F_FLUSH) | vhu_feature(VHU_VIRTIO_BLK_F_CONFIG_WCE) |
                    vhu_feature(VHU_VIRTIO_BLK_F_MQ) | vhu_feature(VHU_VIRTIO_BLK_F_DISCARD) |
                    vhu_feature(VHU_VIRTIO_BLK_F_WRITE_ZEROES) | vhu_feature(VHU_VIRTIO_BLK_F_RO),
        .num_queues = o->num_queues ? o->num_queues : 1,
        .queue_size = o->queue_size ? o->queue_size : 64,
        .packed = o->packed,
        .event_idx = !o->no_event_idx,
        .indirect = true,
        .mem_size = 8 << 20,
    };
    r = tdrv_start(t->d, &fo);
    if (r < 0)
        return r;
    t->hdr = tdrv_alloc(t->d, 64, 64, &t->hdr_gpa);
    t->status = tdrv_alloc(t->d, 64, 64, &t->status_gpa);
    t->data = tdrv_alloc(t->d, DATA_MAX, 4096, &t->data_gpa);
    return t->hdr && t->status && t->data ? 0 : -ENOMEM;
}

static void tb_down(struct tb *t)
{
    tdrv_teardown(t->d, t->b, t->dev, t->loop);
    nbd_down(t);
    if (t->path[0])
        unlink(t->path);
}

#include "blk_testlib.h"

static bool file_matches(const char *path, uint64_t off, const uint8_t *want, size_t n)
{
    uint8_t *buf = malloc(n);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    bool ok = buf && fd >= 0 && pread(fd, buf, n, (off_t)off) == (ssize_t)n &&
              memcmp(buf, want, n) == 0;

    if (fd >= 0)
        close(fd);
    free(buf);
    return ok;
}

static bool file_zero(const char *path, uint64_t off, size_t n)
{
    uint8_t *z = calloc(1, n);
    bool ok = z && file_matches(path, off, z, n);

    free(z);
    return ok;
}

/* ------------------------------------------------------------------------------------------ */

TDRV_TEST(config_space)
{
    struct tb_opts o = {.num_queues = 2, .blk = {.num_queues = 2, .seg_max = 30}};
    struct vhu_virtio_blk_config c;
    struct tb t;

    ASSERT_OK(tb_up(&t, &o));
    uint64_t f = tdrv_backend_features(t.d);
    ASSERT(vhu_has_feature(f, VHU_VIRTIO_BLK_F_FLUSH));
    ASSERT(vhu_has_feature(f, VHU_VIRTIO_BLK_F_CONFIG_WCE));
    ASSERT(vhu_has_feature(f, VHU_VIRTIO_BLK_F_MQ));
    ASSERT(vhu_has_feature(f, VHU_VIRTIO_BLK_F_DISCARD));
    ASSERT(vhu_has_feature(f, VHU_VIRTIO_BLK_F_WRITE_ZEROES));
    ASSERT(vhu_has_feature(f, VHU_VIRTIO_BLK_F_SEG_MAX));
    ASSERT(vhu_has_feature(f, VHU_VIRTIO_BLK_F_SIZE_MAX));
    ASSERT(vhu_has_feature(f, VHU_VIRTIO_BLK_F_BLK_SIZE));
    ASSERT(vhu_has_feature(f, VHU_VIRTIO_BLK_F_TOPOLOGY));
    ASSERT(vhu_has_feature(f, VHU_VIRTIO_F_RING_PACKED));
    ASSERT(vhu_has_feature(f, VHU_VIRTIO_RING_F_EVENT_IDX));
    ASSERT(!vhu_has_feature(f, VHU_VIRTIO_BLK_F_RO));
    ASSERT(!vhu_has_feature(f, VHU_VIRTIO_BLK_F_GEOMETRY));
    ASSERT_EQ(tdrv_num_queues(t.d), 2);

    ASSERT_OK(tdrv_get_config(t.d, 0, &c, sizeof(c)));
    ASSERT_EQ(c.capacity, DISK_SIZE / 512);
    ASSERT_EQ(vhu_blk_capacity(t.dev), DISK_SIZE / 512);
    ASSERT_EQ(c.seg_max, 30);
    ASSERT(c.size_max >= 4096);
    ASSERT_EQ(c.blk_size, 512);
    ASSERT_EQ(c.geometry.cylinders, 0);
    ASSERT_EQ(c.topology.physical_block_exp, 0);
    ASSERT_EQ(c.topology.min_io_size, 1);
    ASSERT_EQ(c.writeback, 1);
    ASSERT_EQ(c.num_queues, 2);
    ASSERT(c.max_discard_sectors > 0);
    ASSERT(c.max_discard_seg > 1);
    ASSERT_EQ(c.discard_sector_alignment, 1);
    ASSERT(c.max_write_zeroes_sectors > 0);
    ASSERT(c.max_write_zeroes_seg > 1);
    ASSERT_EQ(c.write_zeroes_may_unmap, 1);
    /* a partial read at an offset (what a driver's virtio_cread does) */
    uint16_t nq = 0;
    ASSERT_OK(tdrv_get_config(t.d, offsetof(struct vhu_virtio_blk_config, num_queues), &nq, 2));
    ASSERT_EQ(nq, 2);

    /* the guest switches the cache to writethrough; writes keep working (RWF_DSYNC) */
    uint8_t wb = 0, st;
    ASSERT_OK(tdrv_set_config(t.d, offsetof(struct vhu_virtio_blk_config, writeback), &wb, 1));
    ASSERT_OK(tdrv_get_config(t.d, offsetof(struct vhu_virtio_blk_config, writeback), &wb, 1));
    ASSERT_EQ(wb, 0);
    pattern(t.data, 8192, 5);
    ASSERT_EQ(rq(&t, 1, VHU_VIRTIO_BLK_T_OUT, 16, 8192, false, 2, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    ASSERT(file_matches(t.path, 16 * 512, t.data, 8192));
    /* a reset restores the configured cache mode */
    ASSERT_OK(tdrv_reset(t.d));
    ASSERT_OK(tdrv_get_config(t.d, offsetof(struct vhu_virtio_blk_config, writeback), &wb, 1));
    ASSERT_EQ(wb, 1);
    /* any other config write is refused (the backend drops the session) */
    uint64_t cap = 1;
    ASSERT(tdrv_set_config(t.d, 0, &cap, sizeof(cap)) < 0);
    tb_down(&t);
}

TDRV_TEST(config_writethrough_4k_readonly)
{
    struct tb_opts o = {.blk = {.read_only = true, .writethrough = true, .blk_size = 4096}};
    struct vhu_virtio_blk_config c;
    struct tb t;

    ASSERT_OK(tb_up(&t, &o));
    uint64_t f = tdrv_backend_features(t.d);
    ASSERT(vhu_has_feature(f, VHU_VIRTIO_BLK_F_RO));
    ASSERT(!vhu_has_feature(f, VHU_VIRTIO_BLK_F_DISCARD));
    ASSERT(!vhu_has_feature(f, VHU_VIRTIO_BLK_F_WRITE_ZEROES));
    ASSERT(vhu_has_feature(tdrv_features(t.d), VHU_VIRTIO_BLK_F_RO));
    ASSERT_OK(tdrv_get_config(t.d, 0, &c, sizeof(c)));
    ASSERT_EQ(c.writeback, 0);
    ASSERT_EQ(c.blk_size, 4096);
    ASSERT_EQ(c.seg_max, 126);
    ASSERT_EQ(c.max_discard_seg, 0);
    tb_down(&t);
}

TEST(new_refuses_bad_options)
{
    struct vhu_device *dev;
    char path[128];

    ASSERT_ERR(-ENOENT, vhu_blk_new(&(struct vhu_blk_opts){.path = "/nonexistent/disk"}, &dev));
    ASSERT_ERR(-EINVAL, vhu_blk_new(&(struct vhu_blk_opts){.path = NULL}, &dev));
    ASSERT_ERR(-EINVAL, vhu_blk_new(&(struct vhu_blk_opts){.null_size = 4096, .blk_size = 1024},
                                    &dev));
    ASSERT_ERR(-EINVAL, vhu_blk_new(&(struct vhu_blk_opts){.null_size = 4096,
                                                           .serial = "123456789012345678901"},
                                    &dev));
    ASSERT_ERR(-EINVAL, vhu_blk_new(&(struct vhu_blk_opts){.null_size = 4096, .seg_max = 5000},
                                    &dev));
    ASSERT_ERR(-EINVAL, vhu_blk_new(&(struct vhu_blk_opts){.null_size = 1000}, &dev));
    ASSERT_ERR(-EINVAL, vhu_blk_new(&(struct vhu_blk_opts){.null_size = 4096 + 512,
                                                           .blk_size = 4096},
                                    &dev));
    ASSERT_ERR(-EINVAL, vhu_blk_new(&(struct vhu_blk_opts){.path = "/dev/null"}, &dev));
    /* a file whose size is not a multiple of 512 */
    ASSERT_OK(make_file(path, sizeof(path), tmpdir(), 4096 + 100));
    int r = vhu_blk_new(&(struct vhu_blk_opts){.path = path}, &dev);
    unlink(path);
    ASSERT_ERR(-EINVAL, r);
}

/* Write through one queue, read back through the other, compare with the file too. */
static void run_integrity(bool packed, unsigned workers, unsigned poll_us,
                          enum vhu_blk_engine engine)
{
    struct tb_opts o = {.packed = packed, .num_queues = 2, .queue_size = 64,
                        .workers = workers, .poll_us = poll_us,
                        .blk = {.num_queues = 2, .engine = engine}};
    uint8_t *want = malloc(DATA_MAX);
    struct tb t;
    uint8_t st;

    ASSERT(want);
    ASSERT_OK(tb_up(&t, &o));
    ASSERT_EQ(vhu_has_feature(tdrv_features(t.d), VHU_VIRTIO_F_RING_PACKED), packed);
    /* chains of up to 16 descriptors go indirect, longer ones direct (the frontend's limit) */
    static const struct { uint64_t sector; uint32_t len; unsigned nseg; } cases[] = {
        {0, 512, 1},      {1, 4096, 3},   {100, 65536, 16}, {2000, 512 * 7, 7},
        {4096, DATA_MAX, 32}, {DISK_SIZE / 512 - 8, 4096, 2}, {3, 1024, 2},
    };
    for (unsigned i = 0; i < VHU_ARRAY_SIZE(cases); i++) {
        unsigned wq = i % 2, rqn = 1 - wq;
        pattern(want, cases[i].len, i + 1);
        memcpy(t.data, want, cases[i].len);
        ASSERT_EQ(rq(&t, wq, VHU_VIRTIO_BLK_T_OUT, cases[i].sector, cases[i].len, false,
                     cases[i].nseg, &st), 1);
        ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
        ASSERT(file_matches(t.path, cases[i].sector * 512, want, cases[i].len));
        memset(t.data, 0, cases[i].len);
        ASSERT_EQ(rq(&t, rqn, VHU_VIRTIO_BLK_T_IN, cases[i].sector, cases[i].len, true,
                     cases[i].nseg, &st), (int)cases[i].len + 1);
        ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
        ASSERT(memcmp(t.data, want, cases[i].len) == 0);
    }

    /* the header and the data in one readable segment; the data and the status in one
     * writable segment (VIRTIO_F_ANY_LAYOUT, implied by VERSION_1) */
    uint64_t gpa;
    uint8_t *buf = tdrv_alloc(t.d, 16 + 2048, 64, &gpa);
    ASSERT(buf);
    struct vhu_virtio_blk_outhdr h = {.type = VHU_VIRTIO_BLK_T_OUT, .sector = 50};
    memcpy(buf, &h, 16);
    pattern(buf + 16, 2048, 77);
    memcpy(want, buf + 16, 2048);
    struct vhu_vqd_seg one[2] = {{gpa, 16 + 2048}, {t.status_gpa, 1}};
    *t.status = 0xee;
    ASSERT_EQ(tdrv_request(t.d, 0, one, 1, 1, 5000), 1);
    ASSERT_EQ(*t.status, VHU_VIRTIO_BLK_S_OK);
    ASSERT(file_matches(t.path, 50 * 512, want, 2048));
    h.type = VHU_VIRTIO_BLK_T_IN;
    memcpy(t.hdr, &h, 16);
    memset(buf, 0xee, 2048 + 1);
    struct vhu_vqd_seg two[2] = {{t.hdr_gpa, 16}, {gpa, 2048 + 1}};
    ASSERT_EQ(tdrv_request(t.d, 1, two, 1, 1, 5000), 2048 + 1);
    ASSERT(memcmp(buf, want, 2048) == 0);
    ASSERT_EQ(buf[2048], VHU_VIRTIO_BLK_S_OK);
    /* the header split over two segments, zero-length segments around */
    struct vhu_vqd_seg split[5] = {{t.hdr_gpa, 5}, {t.hdr_gpa + 5, 11}, {t.data_gpa, 0},
                                   {t.data_gpa, 512}, {t.status_gpa, 1}};
    memset(t.data, 0, 512);
    ASSERT_EQ(tdrv_request(t.d, 0, split, 2, 3, 5000), 512 + 1);
    ASSERT_EQ(*t.status, VHU_VIRTIO_BLK_S_OK);
    ASSERT(memcmp(t.data, want, 512) == 0);
    tb_down(&t);
    free(want);
}

TDRV_TEST(integrity_split) { run_integrity(false, 0, 0, VHU_BLK_ENGINE_IO_URING); }
TDRV_TEST(integrity_packed) { run_integrity(true, 0, 0, VHU_BLK_ENGINE_IO_URING); }
/* each queue on its own worker thread: completions arrive through that worker's loop */
TDRV_TEST(integrity_split_2_workers) { run_integrity(false, 2, 0, VHU_BLK_ENGINE_IO_URING); }
TDRV_TEST(integrity_packed_2_workers_poll) { run_integrity(true, 2, 50, VHU_BLK_ENGINE_IO_URING); }
/*
 * Adaptive polling follows the driver. A driver that answers at once keeps the window open
 * (hits); one that waits 2 ms, far past the 500 us window, closes it within four stretches,
 * and the probes of the closed window back off (a dozen stretches of 150 poll at all); back at
 * once, a probe finds the driver and the window opens again. Every request still completes.
 * The worker and the driver run on two different CPUs: on one CPU a polling worker keeps the
 * driver from running, its probes rightly miss and the window stays closed.
 */
static bool two_cpus(const cpu_set_t *all, int *a, int *b)
{
    *a = *b = -1;
    for (int i = 0; i < CPU_SETSIZE && *b < 0; i++) {
        if (CPU_ISSET(i, all))
            *(*a < 0 ? a : b) = i;
    }
    return *b >= 0;
}

static void pin_to(int cpu)
{
    cpu_set_t s;

    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    sched_setaffinity(0, sizeof(s), &s);
}
static bool reads(struct tb *t, unsigned n, unsigned gap_us)
{
    uint8_t st;

    for (unsigned i = 0; i < n; i++) {
        if (rq(t, 0, VHU_VIRTIO_BLK_T_IN, i % 64, 512, true, 1, &st) != 513 ||
            st != VHU_VIRTIO_BLK_S_OK)
            return false;
        if (gap_us)
            usleep(gap_us);
    }
    return true;
}

static void run_adaptive_poll(bool packed, const cpu_set_t *all);

/* the test pins this thread: whatever it ends with, later tests get every CPU back */
static void adaptive_poll(bool packed)
{
    cpu_set_t all;

    if (sched_getaffinity(0, sizeof(all), &all) < 0)
        SKIP("sched_getaffinity: %s", strerror(errno));
    run_adaptive_poll(packed, &all);
    sched_setaffinity(0, sizeof(all), &all);
}
static void run_adaptive_poll_split(void) { adaptive_poll(false); }
static void run_adaptive_poll_packed(void) { adaptive_poll(true); }

static void run_adaptive_poll(bool packed, const cpu_set_t *all)
{
    struct tb_opts o = {.packed = packed, .workers = 1, .poll_max_us = 500,
                        .blk = {.null_size = 1 << 20}};
    struct vhu_worker_stats a, b, c;
    int cpu_w, cpu_d;
    struct tb t;

    if (!two_cpus(all, &cpu_w, &cpu_d))
        SKIP("one CPU: the polling worker would keep the driver from running");
    pin_to(cpu_w); /* the worker thread inherits it */
    int r = tb_up(&t, &o);
    pin_to(cpu_d);
    ASSERT_OK(r);
    ASSERT_EQ(vhu_backend_workers(t.b), 1);
    ASSERT_OK(vhu_backend_get_worker_stats(t.b, 0, &a));
    ASSERT_ERR(-EINVAL, vhu_backend_get_worker_stats(t.b, 1, &b));
    ASSERT_ERR(-EBUSY, vhu_backend_set_poll(t.b, VHU_POLL_FIXED, 10)); /* a core exists */
    ASSERT(reads(&t, 400, 0));
    ASSERT_OK(vhu_backend_get_worker_stats(t.b, 0, &b));
    /* open: the driver came back within it (the stretch under way may end as a miss if this
     * thread is preempted, so not necessarily at the maximum) */
    ASSERT(b.poll_window_ns >= 500000 / 4);
    ASSERT(b.poll_hits - a.poll_hits >= 200);

    ASSERT(reads(&t, 150, 2000));
    ASSERT_OK(vhu_backend_get_worker_stats(t.b, 0, &c));
    ASSERT_EQ(c.poll_window_ns, 0); /* closed */
    ASSERT(c.sleeps - b.sleeps >= 150);
    uint64_t polled = c.poll_hits + c.poll_misses - b.poll_hits - b.poll_misses;
    ASSERT(polled >= 4 && polled <= 20);
    ASSERT(c.poll_probes - b.poll_probes >= 4 && c.poll_probes - b.poll_probes <= 16);

    ASSERT(reads(&t, 800, 0));
    ASSERT_OK(vhu_backend_get_worker_stats(t.b, 0, &b));
    ASSERT(b.poll_window_ns >= 500000 / 4); /* open again */
    ASSERT(b.poll_hits - c.poll_hits >= 400);
    tb_down(&t);
}

/* vhost-user only: the core path's rings have no kick source, and a worker spins them */
TEST(adaptive_poll_follows_the_driver_split) { tdrv_run_on(TDRV_VHOST_USER, run_adaptive_poll_split); }
TEST(adaptive_poll_follows_the_driver_packed) { tdrv_run_on(TDRV_VHOST_USER, run_adaptive_poll_packed); }

/* vhu_backend_set_poll's refusals, before any core */
TEST(set_poll_refusals)
{
    struct vhu_blk_opts bo = {.null_size = 1 << 20};
    struct vhu_device *dev;
    struct vhu_loop *loop;
    struct vhu_backend *b, *b2;

    ASSERT_OK(vhu_blk_new(&bo, &dev));
    ASSERT_OK(vhu_loop_new(&loop));
    ASSERT_OK(vhu_backend_new(dev, loop, &b));
    ASSERT_OK(vhu_backend_set_poll(b, VHU_POLL_ADAPTIVE, 0)); /* nothing to do */
    ASSERT_ERR(-ENOENT, vhu_backend_set_poll(b, VHU_POLL_ADAPTIVE, 32)); /* no workers */
    ASSERT_ERR(-EINVAL, vhu_backend_set_workers(b, 1, VHU_POLL_MAX_US + 1));
    ASSERT_OK(vhu_backend_set_workers(b, 2, 0));
    ASSERT_ERR(-EINVAL, vhu_backend_set_poll(b, VHU_POLL_ADAPTIVE, VHU_POLL_MAX_US + 1));
    ASSERT_ERR(-EINVAL, vhu_backend_set_poll(b, (enum vhu_poll_mode)7, 32));
    ASSERT_OK(vhu_backend_set_poll(b, VHU_POLL_ADAPTIVE, 32));
    struct vhu_worker_stats ws;
    ASSERT_OK(vhu_backend_get_worker_stats(b, 1, &ws));
    /* at most one idle stretch has run since (the call woke the worker): 32 or 16 us */
    ASSERT(ws.poll_window_ns == 32000 || ws.poll_window_ns == 16000);
    ASSERT_OK(vhu_backend_set_poll(b, VHU_POLL_FIXED, 7));
    ASSERT_OK(vhu_backend_get_worker_stats(b, 0, &ws));
    ASSERT_EQ(ws.poll_window_ns, 7000);
    struct vhu_device *dev2;
    ASSERT_OK(vhu_blk_new(&bo, &dev2));
    ASSERT_OK(vhu_backend_new(dev2, loop, &b2));
    ASSERT_OK(vhu_backend_share_workers(b2, b));
    ASSERT_ERR(-EBUSY, vhu_backend_set_poll(b2, VHU_POLL_ADAPTIVE, 32)); /* b's to set */
    ASSERT_EQ(vhu_backend_workers(b2), 2);
    vhu_backend_free(b2);
    vhu_backend_free(b);
    vhu_loop_free(loop);
}

/* the sync engine: every request completes inside the pop loop */
TDRV_TEST(integrity_split_sync) { run_integrity(false, 0, 0, VHU_BLK_ENGINE_SYNC); }
TDRV_TEST(integrity_packed_2_workers_poll_sync) { run_integrity(true, 2, 50, VHU_BLK_ENGINE_SYNC); }

/* Which engine runs: as asked, or for auto, sync only on a memory file system that refuses
 * non-blocking reads (tmpfs here, on kernels without RWF_NOWAIT for shmem). */
TEST(engine_choice)
{
    struct vhu_device *dev;
    char path[128];
    struct tb t;

    ASSERT_ERR(-EINVAL, vhu_blk_new(&(struct vhu_blk_opts){.null_size = 1 << 20,
                                                           .engine = VHU_BLK_ENGINE_SYNC + 1},
                                    &dev));
    ASSERT_OK(vhu_blk_new(&(struct vhu_blk_opts){.null_size = 1 << 20}, &dev));
    ASSERT(strcmp(vhu_blk_engine_name(dev), "null") == 0);
    dev->ops->destroy(dev);

    static const struct { enum vhu_blk_engine e; const char *name; } asked[] = {
        {VHU_BLK_ENGINE_IO_URING, "io_uring"}, {VHU_BLK_ENGINE_SYNC, "sync"}};
    for (unsigned i = 0; i < VHU_ARRAY_SIZE(asked); i++) {
        struct tb_opts o = {.blk = {.engine = asked[i].e}};
        ASSERT_OK(tb_up(&t, &o));
        ASSERT(strcmp(vhu_blk_engine_name(t.dev), asked[i].name) == 0);
        tb_down(&t);
    }

    struct statfs sf;
    bool tmp_mem = statfs(tmpdir(), &sf) == 0 && sf.f_type == 0x01021994; /* TMPFS_MAGIC */
    ASSERT_OK(make_file(path, sizeof(path), tmpdir(), 4096));
    ASSERT_OK(vhu_blk_new(&(struct vhu_blk_opts){.path = path}, &dev));
    if (!tmp_mem)
        ASSERT(strcmp(vhu_blk_engine_name(dev), "io_uring") == 0);
    dev->ops->destroy(dev);
    unlink(path);

    if (statfs("/dev/shm", &sf) < 0 || sf.f_type != 0x01021994)
        SKIP("no tmpfs at /dev/shm");
    ASSERT_OK(make_file(path, sizeof(path), "/dev/shm", 4096));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char c;
    struct iovec one = {&c, 1};
    bool nowait = fd >= 0 && (preadv2(fd, &one, 1, 0, RWF_NOWAIT) >= 0 || errno != EOPNOTSUPP);
    if (fd >= 0)
        close(fd);
    ASSERT_OK(vhu_blk_new(&(struct vhu_blk_opts){.path = path}, &dev));
    ASSERT(strcmp(vhu_blk_engine_name(dev), nowait ? "io_uring" : "sync") == 0);
    dev->ops->destroy(dev);
    unlink(path);
}

TDRV_TEST(flush_and_get_id)
{
    struct tb_opts o = {.blk = {.serial = "vhu-serial-123456789"}}; /* exactly 20 bytes */
    struct tb t;
    uint8_t st;

    ASSERT_OK(tb_up(&t, &o));
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_FLUSH, 0, 0, false, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    memset(t.data, 0xff, 64);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_GET_ID, 0, VHU_VIRTIO_BLK_ID_BYTES, true, 1, &st), 21);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    ASSERT(memcmp(t.data, "vhu-serial-123456789", 20) == 0);
    ASSERT_EQ(t.data[20], 0xff); /* no terminator when it is 20 bytes long */
    /* a shorter buffer gets a prefix */
    memset(t.data, 0xff, 64);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_GET_ID, 0, 8, true, 1, &st), 9);
    ASSERT(memcmp(t.data, "vhu-seri", 8) == 0);
    ASSERT_EQ(t.data[8], 0xff);
    tb_down(&t);

    struct tb_opts o2 = {.blk = {.serial = "abc"}};
    ASSERT_OK(tb_up(&t, &o2));
    memset(t.data, 0xff, 64);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_GET_ID, 0, VHU_VIRTIO_BLK_ID_BYTES, true, 2, &st), 21);
    ASSERT(memcmp(t.data, "abc\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 20) == 0); /* NUL-padded */
    tb_down(&t);
}

static bool is_hole(const char *path, uint64_t off)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    off_t h = fd >= 0 ? lseek(fd, (off_t)off, SEEK_HOLE) : -1;

    if (fd >= 0)
        close(fd);
    return h == (off_t)off;
}

static void fill_disk(struct tb *t, uint64_t sector, uint32_t len)
{
    uint8_t st;

    pattern(t->data, len, 9);
    if (rq(t, 0, VHU_VIRTIO_BLK_T_OUT, sector, len, false, 1, &st) != 1 || st != VHU_VIRTIO_BLK_S_OK)
        vhu_test_failed = 1;
}

static void run_dwz(const char *dir, bool expect_holes, enum vhu_blk_engine engine)
{
    struct tb_opts o = {.dir = dir, .blk = {.engine = engine}};
    struct tb t;
    uint8_t st;

    ASSERT_OK(tb_up(&t, &o));
    fill_disk(&t, 0, DATA_MAX);
    ASSERT(!vhu_test_failed);
    int fd = open(t.path, O_RDONLY | O_CLOEXEC);
    ASSERT(fd >= 0);
    fsync(fd); /* allocate blocks, so a punched hole shows */
    close(fd);
    ASSERT(!is_hole(t.path, 64 * 1024));

    /* DISCARD: the range is deallocated (reads return zeroes on a file) */
    struct vhu_virtio_blk_discard_write_zeroes d[3] = {{.sector = 128, .num_sectors = 128}};
    ASSERT_EQ(dwz(&t, VHU_VIRTIO_BLK_T_DISCARD, d, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    ASSERT(file_zero(t.path, 128 * 512, 128 * 512));
    if (expect_holes)
        ASSERT(is_hole(t.path, 128 * 512));
    ASSERT(!file_zero(t.path, 256 * 512, 512)); /* the neighbour is untouched */

    /* WRITE_ZEROES without UNMAP, three ranges: zeroes, allocation kept */
    d[0] = (struct vhu_virtio_blk_discard_write_zeroes){.sector = 300, .num_sectors = 8};
    d[1] = (struct vhu_virtio_blk_discard_write_zeroes){.sector = 400, .num_sectors = 1};
    d[2] = (struct vhu_virtio_blk_discard_write_zeroes){.sector = 500, .num_sectors = 0};
    ASSERT_EQ(dwz(&t, VHU_VIRTIO_BLK_T_WRITE_ZEROES, d, 3, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    ASSERT(file_zero(t.path, 300 * 512, 8 * 512));
    ASSERT(file_zero(t.path, 400 * 512, 512));
    ASSERT(!file_zero(t.path, 308 * 512, 512));
    ASSERT(!file_zero(t.path, 401 * 512, 512));
    ASSERT(!file_zero(t.path, 500 * 512, 512));

    /* WRITE_ZEROES with UNMAP: zeroes, deallocated */
    d[0] = (struct vhu_virtio_blk_discard_write_zeroes){.sector = 1024, .num_sectors = 256,
                                                    .flags = VHU_VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP};
    ASSERT_EQ(dwz(&t, VHU_VIRTIO_BLK_T_WRITE_ZEROES, d, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    ASSERT(file_zero(t.path, 1024 * 512, 256 * 512));
    if (expect_holes)
        ASSERT(is_hole(t.path, 1024 * 512));

    /* §5.2.6.2: UNMAP on a discard, or an unknown flag: UNSUPP */
    d[0] = (struct vhu_virtio_blk_discard_write_zeroes){.sector = 0, .num_sectors = 8,
                                                    .flags = VHU_VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP};
    ASSERT_EQ(dwz(&t, VHU_VIRTIO_BLK_T_DISCARD, d, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_UNSUPP);
    d[0].flags = 2;
    ASSERT_EQ(dwz(&t, VHU_VIRTIO_BLK_T_WRITE_ZEROES, d, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_UNSUPP);
    ASSERT(!file_zero(t.path, 0, 512));
    /* past the end, overflowing, too long, too many ranges, ragged array, no ranges: IOERR */
    struct vhu_virtio_blk_config c;
    ASSERT_OK(tdrv_get_config(t.d, 0, &c, sizeof(c)));
    d[0] = (struct vhu_virtio_blk_discard_write_zeroes){.sector = DISK_SIZE / 512 - 1,
                                                    .num_sectors = 2};
    ASSERT_EQ(dwz(&t, VHU_VIRTIO_BLK_T_WRITE_ZEROES, d, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_IOERR);
    d[0] = (struct vhu_virtio_blk_discard_write_zeroes){.sector = UINT64_MAX - 1, .num_sectors = 4};
    ASSERT_EQ(dwz(&t, VHU_VIRTIO_BLK_T_DISCARD, d, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_IOERR);
    d[0] = (struct vhu_virtio_blk_discard_write_zeroes){.sector = 0,
                                                    .num_sectors = c.max_discard_sectors + 1};
    ASSERT_EQ(dwz(&t, VHU_VIRTIO_BLK_T_DISCARD, d, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_IOERR);
    struct vhu_virtio_blk_discard_write_zeroes many[64] = {{.sector = 0, .num_sectors = 1}};
    ASSERT(c.max_discard_seg < 64);
    ASSERT_EQ(dwz(&t, VHU_VIRTIO_BLK_T_DISCARD, many, c.max_discard_seg + 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_IOERR);
    memset(t.data, 0, 24);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_DISCARD, 0, 24, false, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_IOERR);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_DISCARD, 0, 0, false, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_IOERR);
    ASSERT(!file_zero(t.path, 0, 512));
    tb_down(&t);
}

TDRV_TEST(discard_write_zeroes) { run_dwz(tmpdir(), true, VHU_BLK_ENGINE_IO_URING); }
TDRV_TEST(discard_write_zeroes_sync) { run_dwz(tmpdir(), true, VHU_BLK_ENGINE_SYNC); }

/* tmpfs has no FALLOC_FL_ZERO_RANGE: WRITE_ZEROES falls back to writing zeroes. */
TDRV_TEST(write_zeroes_fallback_tmpfs)
{
    struct statfs sf;

    if (statfs("/dev/shm", &sf) < 0 || sf.f_type != 0x01021994 /* TMPFS_MAGIC */)
        SKIP("no tmpfs at /dev/shm");
    run_dwz("/dev/shm", false, VHU_BLK_ENGINE_AUTO);
}

TDRV_TEST(read_only_refuses_writes)
{
    struct tb_opts o = {.blk = {.read_only = true}};
    struct tb t;
    uint8_t st;

    ASSERT_OK(tb_up(&t, &o));
    pattern(t.data, 4096, 3);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_OUT, 0, 4096, false, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_IOERR);
    ASSERT(file_zero(t.path, 0, 4096)); /* nothing written */
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_IN, 0, 4096, true, 1, &st), 4097);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    struct vhu_virtio_blk_discard_write_zeroes d = {.sector = 0, .num_sectors = 8};
    ASSERT_EQ(dwz(&t, VHU_VIRTIO_BLK_T_DISCARD, &d, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_UNSUPP); /* not offered */
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_FLUSH, 0, 0, false, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    tb_down(&t);
}

TDRV_TEST(malformed_requests_get_a_status)
{
    struct tb_opts o = {.blk = {.serial = "x"}};
    struct tb t;
    uint8_t st;
    const uint64_t cap = DISK_SIZE / 512;

    ASSERT_OK(tb_up(&t, &o));
    /* past capacity, straddling the end, overflowing sector * 512 + len */
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_IN, cap, 512, true, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_IOERR);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_OUT, cap - 1, 1024, false, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_IOERR);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_IN, UINT64_MAX / 512 + 1, 512, true, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_IOERR);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_OUT, UINT64_MAX, 512, false, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_IOERR);
    /* the last sector itself is fine */
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_IN, cap - 1, 512, true, 1, &st), 513);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    /* a length that is not a multiple of the block size */
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_IN, 0, 100, true, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_IOERR);
    /* data in the wrong direction */
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_IN, 0, 512, false, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_IOERR);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_OUT, 0, 512, true, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_IOERR);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_GET_ID, 0, 20, false, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_IOERR);
    /* unsupported types */
    ASSERT_EQ(rq(&t, 0, 0x55, 0, 0, false, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_UNSUPP);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_GET_LIFETIME, 0, 16, true, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_UNSUPP);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_SECURE_ERASE, 0, 16, false, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_UNSUPP);
    /* a short header (8 readable bytes), and no header at all */
    struct vhu_vqd_seg shorth[2] = {{t.hdr_gpa, 8}, {t.status_gpa, 1}};
    *t.status = 0xee;
    ASSERT_EQ(tdrv_request(t.d, 0, shorth, 1, 1, 5000), 1);
    ASSERT_EQ(*t.status, VHU_VIRTIO_BLK_S_IOERR);
    struct vhu_vqd_seg noh[1] = {{t.status_gpa, 1}};
    *t.status = 0xee;
    ASSERT_EQ(tdrv_request(t.d, 0, noh, 0, 1, 5000), 1);
    ASSERT_EQ(*t.status, VHU_VIRTIO_BLK_S_IOERR);
    /* the status is the LAST writable byte, even after zero-length segments */
    struct vhu_virtio_blk_outhdr h = {.type = VHU_VIRTIO_BLK_T_GET_ID};
    memcpy(t.hdr, &h, 16);
    memset(t.data, 0xff, 64);
    struct vhu_vqd_seg tail[4] = {{t.hdr_gpa, 16}, {t.data_gpa, 20}, {t.status_gpa, 1},
                                  {t.status_gpa + 1, 0}};
    ASSERT_EQ(tdrv_request(t.d, 0, tail, 1, 3, 5000), 21);
    ASSERT_EQ(*t.status, VHU_VIRTIO_BLK_S_OK);
    ASSERT_EQ(t.data[0], 'x');
    /* the queue still works */
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_IN, 0, 512, true, 1, &st), 513);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    uint8_t dev_status = 0;
    ASSERT_OK(tdrv_get_status(t.d, &dev_status));
    ASSERT(!(dev_status & VHU_VIRTIO_CONFIG_S_NEEDS_RESET));
    tb_down(&t);
}

TDRV_TEST(block_size_4096)
{
    struct tb_opts o = {.blk = {.blk_size = 4096}};
    struct tb t;
    uint8_t st;

    ASSERT_OK(tb_up(&t, &o));
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_IN, 0, 512, true, 1, &st), 1); /* shorter than a block */
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_IOERR);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_IN, 4, 4096, true, 1, &st), 1); /* misaligned sector */
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_IOERR);
    pattern(t.data, 8192, 4);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_OUT, 8, 8192, false, 2, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    ASSERT(file_matches(t.path, 4096, t.data, 8192));
    struct vhu_virtio_blk_discard_write_zeroes d = {.sector = 9, .num_sectors = 8};
    ASSERT_EQ(dwz(&t, VHU_VIRTIO_BLK_T_WRITE_ZEROES, &d, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_IOERR); /* misaligned range */
    tb_down(&t);
}

/* No writable byte for the status: the queue breaks (NEEDS_RESET); the other queue runs on. */
TDRV_TEST(missing_status_breaks_only_that_queue)
{
    struct tb_opts o = {.num_queues = 2, .blk = {.num_queues = 2}};
    struct tb t;
    uint8_t st, dev_status = 0;

    ASSERT_OK(tb_up(&t, &o));
    struct vhu_virtio_blk_outhdr h = {.type = VHU_VIRTIO_BLK_T_OUT};
    memcpy(t.hdr, &h, 16);
    struct vhu_vqd_seg ro[2] = {{t.hdr_gpa, 16}, {t.data_gpa, 512}};
    ASSERT(tdrv_request(t.d, 0, ro, 2, 0, 300) < 0);
    ASSERT_OK(tdrv_get_status(t.d, &dev_status));
    ASSERT(dev_status & VHU_VIRTIO_CONFIG_S_NEEDS_RESET);
    ASSERT(file_zero(t.path, 0, 512));
    pattern(t.data, 4096, 1);
    ASSERT_EQ(rq(&t, 1, VHU_VIRTIO_BLK_T_OUT, 8, 4096, false, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    ASSERT(file_matches(t.path, 8 * 512, t.data, 4096));
    tb_down(&t);
}

/* A failing backing operation fails that request and nothing else. */
static void run_backing_failure(enum vhu_blk_engine engine)
{
    struct tb_opts o = {.blk = {.engine = engine}};
    struct tb t;
    uint8_t st;

    ASSERT_OK(tb_up(&t, &o));
    /* the file shrinks under the device: reads past the new end come back short */
    ASSERT_OK(truncate(t.path, DISK_SIZE / 2) == 0 ? 0 : -errno);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_IN, DISK_SIZE / 512 - 8, 4096, true, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_IOERR);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_IN, 0, 4096, true, 2, &st), 4097);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    tb_down(&t);

    /* O_DIRECT with a guest buffer the file system cannot take: EINVAL from the kernel */
    struct tb_opts od = {.blk = {.direct = true, .engine = engine}};
    int r = tb_up(&t, &od);
    if (r == -EINVAL) {
        tb_down(&t);
        SKIP("no O_DIRECT in %s", tmpdir());
    }
    ASSERT_OK(r);
    pattern(t.data, 8192, 2);
    ASSERT_EQ(rq_at(&t, 0, VHU_VIRTIO_BLK_T_OUT, 0, t.data_gpa + 1, 4096, false, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_IOERR);
    ASSERT(file_zero(t.path, 0, 4096));
    /* aligned buffers work */
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_OUT, 8, 8192, false, 2, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    ASSERT(file_matches(t.path, 4096, t.data, 8192));
    memset(t.data, 0, 8192);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_IN, 8, 8192, true, 1, &st), 8193);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    tb_down(&t);
}

TDRV_TEST(backing_failure_is_ioerr) { run_backing_failure(VHU_BLK_ENGINE_IO_URING); }
TDRV_TEST(backing_failure_is_ioerr_sync) { run_backing_failure(VHU_BLK_ENGINE_SYNC); }

/*
 * Many requests at once: one kick pops them all into one io_uring batch; then the ring is
 * stopped (GET_VRING_BASE) while they are in flight, and every one still completes.
 */
static void run_batch(bool packed)
{
    enum { N = 48 };
    struct tb_opts o = {.packed = packed, .queue_size = 64};
    struct tb t;
    struct {
        uint8_t *hdr, *st;
        uint64_t hdr_gpa, st_gpa;
    } b[N];

    ASSERT_OK(tb_up(&t, &o));
    pattern(t.data, N * 4096, 6);
    struct vhu_vqd *vqd = tdrv_vqd(t.d, 0);
    for (unsigned i = 0; i < N; i++) {
        b[i].hdr = tdrv_alloc(t.d, 16, 16, &b[i].hdr_gpa);
        b[i].st = tdrv_alloc(t.d, 1, 1, &b[i].st_gpa);
        ASSERT(b[i].hdr && b[i].st);
        struct vhu_virtio_blk_outhdr h = {.type = VHU_VIRTIO_BLK_T_OUT, .sector = i * 8};
        memcpy(b[i].hdr, &h, 16);
        *b[i].st = 0xee;
        struct vhu_vqd_seg s[3] = {{b[i].hdr_gpa, 16}, {t.data_gpa + i * 4096, 4096},
                                   {b[i].st_gpa, 1}};
        ASSERT_OK(vhu_vqd_add(vqd, s, 2, 1, &b[i]));
    }
    ASSERT_OK(tdrv_kick(t.d, 0));
    tdrv_progress(t.d); /* the backend pops and submits them all */
    ASSERT_OK(tdrv_stop(t.d)); /* queue_stop waits for every one */
    unsigned done = 0;
    uint32_t len;
    void *c;
    while ((c = vhu_vqd_get_used(vqd, &len)) != NULL) {
        ASSERT_EQ(len, 1);
        done++;
    }
    ASSERT_EQ(done, N);
    for (unsigned i = 0; i < N; i++)
        ASSERT_EQ(*b[i].st, VHU_VIRTIO_BLK_S_OK);
    ASSERT(file_matches(t.path, 0, t.data, N * 4096));
    tb_down(&t);
}

TDRV_TEST(batch_stop_with_requests_in_flight_split) { run_batch(false); }
TDRV_TEST(batch_stop_with_requests_in_flight_packed) { run_batch(true); }

/*
 * A full ring, round after round: every element of the pool is in flight at once, so the device
 * stops popping (kicks off) until completions return elements, then must pick up the next round
 * by itself.
 */
static void run_full_ring(bool packed)
{
    enum { QSZ = 8, ROUNDS = 12 };
    struct tb_opts o = {.packed = packed, .queue_size = QSZ};
    struct tb t;
    uint8_t *hdr, *st;
    uint64_t hdr_gpa, st_gpa;

    ASSERT_OK(tb_up(&t, &o));
    hdr = tdrv_alloc(t.d, QSZ * 16, 16, &hdr_gpa);
    st = tdrv_alloc(t.d, QSZ, 1, &st_gpa);
    ASSERT(hdr && st);
    struct vhu_vqd *vqd = tdrv_vqd(t.d, 0);
    for (unsigned round = 0; round < ROUNDS; round++) {
        pattern(t.data, QSZ * 4096, round);
        for (unsigned i = 0; i < QSZ; i++) {
            struct vhu_virtio_blk_outhdr h = {.type = VHU_VIRTIO_BLK_T_OUT,
                                          .sector = (round * QSZ + i) * 8};
            memcpy(hdr + i * 16, &h, 16);
            st[i] = 0xee;
            struct vhu_vqd_seg s[3] = {{hdr_gpa + i * 16, 16}, {t.data_gpa + i * 4096, 4096},
                                       {st_gpa + i, 1}};
            ASSERT_OK(vhu_vqd_add(vqd, s, 2, 1, hdr + i * 16));
        }
        ASSERT_OK(tdrv_kick(t.d, 0));
        unsigned done = 0;
        uint64_t deadline = vhu_now_ns() + 5000000000ull;
        while (done < QSZ && vhu_now_ns() < deadline) {
            uint32_t len;
            if (vhu_vqd_get_used(vqd, &len)) {
                ASSERT_EQ(len, 1);
                done++;
                continue;
            }
            vhu_vqd_enable_cb(vqd);
            tdrv_wait(t.d, 0, 100);
        }
        ASSERT_EQ(done, QSZ);
        for (unsigned i = 0; i < QSZ; i++)
            ASSERT_EQ(st[i], VHU_VIRTIO_BLK_S_OK);
        ASSERT(file_matches(t.path, (uint64_t)round * QSZ * 4096, t.data, QSZ * 4096));
    }
    tb_down(&t);
}

TDRV_TEST(full_ring_rounds_split) { run_full_ring(false); }
TDRV_TEST(full_ring_rounds_packed) { run_full_ring(true); }

/*
 * A batch that completes inline (the null store) is published as it goes, not only once the ring
 * is empty: the driver can take back the first requests while the device handles the rest. Seen
 * from a driver without EVENT_IDX, which is called for every flush: 32 requests in one kick
 * bring more than one call (one per 8 requests; before, one for the whole batch).
 */
static void run_batch_published_as_it_goes(bool packed)
{
    enum { N = 32 };
    struct tb_opts o = {.packed = packed, .queue_size = 64, .no_event_idx = true,
                        .blk = {.null_size = 1ull << 30}};
    struct tb t;
    uint8_t *hdr, *st;
    uint64_t hdr_gpa, st_gpa;

    ASSERT_OK(tb_up(&t, &o));
    ASSERT_EQ(tdrv_features(t.d) & vhu_feature(VHU_VIRTIO_RING_F_EVENT_IDX), 0);
    hdr = tdrv_alloc(t.d, N * 16, 16, &hdr_gpa);
    st = tdrv_alloc(t.d, N, 1, &st_gpa);
    ASSERT(hdr && st);
    struct vhu_vqd *vqd = tdrv_vqd(t.d, 0);
    for (unsigned i = 0; i < N; i++) {
        struct vhu_virtio_blk_outhdr h = {.type = VHU_VIRTIO_BLK_T_IN, .sector = i * 8};
        memcpy(hdr + i * 16, &h, 16);
        st[i] = 0xee;
        struct vhu_vqd_seg s[3] = {{hdr_gpa + i * 16, 16}, {t.data_gpa + i * 4096, 4096},
                                   {st_gpa + i, 1}};
        ASSERT_OK(vhu_vqd_add(vqd, s, 1, 2, hdr + i * 16));
    }
    unsigned calls0 = tdrv_calls(t.d, 0);
    ASSERT_OK(tdrv_kick(t.d, 0));
    unsigned done = 0;
    uint64_t deadline = vhu_now_ns() + 5000000000ull;
    while (done < N && vhu_now_ns() < deadline) {
        uint32_t len;
        void *c = vhu_vqd_get_used(vqd, &len);
        if (c) {
            ASSERT(c == hdr + done * 16); /* in order: the null store completes inline */
            ASSERT_EQ(len, 4097);
            done++;
            continue;
        }
        tdrv_wait(t.d, 0, 100);
    }
    ASSERT_EQ(done, N);
    for (unsigned i = 0; i < N; i++)
        ASSERT_EQ(st[i], VHU_VIRTIO_BLK_S_OK);
    /* the call count is seen on the core path only (vhost-user: the frontend's eventfd) */
    if (tdrv_kind(t.d) == TDRV_CORE)
        ASSERT(tdrv_calls(t.d, 0) - calls0 >= N / 8);
    tb_down(&t);
}

TDRV_TEST(batch_published_as_it_goes_split) { run_batch_published_as_it_goes(false); }
TDRV_TEST(batch_published_as_it_goes_packed) { run_batch_published_as_it_goes(true); }

TDRV_TEST(null_store)
{
    struct tb_opts o = {.num_queues = 2, .blk = {.null_size = 1ull << 40, .num_queues = 2}};
    struct vhu_virtio_blk_config c;
    struct tb t;
    uint8_t st;

    ASSERT_OK(tb_up(&t, &o));
    ASSERT_OK(tdrv_get_config(t.d, 0, &c, sizeof(c)));
    ASSERT_EQ(c.capacity, (1ull << 40) / 512);
    ASSERT_EQ(c.write_zeroes_may_unmap, 0);
    for (unsigned i = 0; i < 100; i++) {
        ASSERT_EQ(rq(&t, i % 2, VHU_VIRTIO_BLK_T_OUT, i * 1000, 65536, false, 4, &st), 1);
        ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
        ASSERT_EQ(rq(&t, i % 2, VHU_VIRTIO_BLK_T_IN, i * 1000, 65536, true, 4, &st), 65537);
        ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    }
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_FLUSH, 0, 0, false, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    struct vhu_virtio_blk_discard_write_zeroes d = {.sector = 8, .num_sectors = 8};
    ASSERT_EQ(dwz(&t, VHU_VIRTIO_BLK_T_WRITE_ZEROES, &d, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_IN, c.capacity, 512, true, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_IOERR);
    tb_down(&t);
}

/*
 * WRITE_ZEROES of the largest size the device allows (max_write_zeroes_seg ranges of
 * max_write_zeroes_sectors: 32 GiB, 32768 writes of 1 MiB) on a synchronous store without
 * FALLOC_FL_ZERO_RANGE (the null store with its test hook), writethrough so a flush follows:
 * every step completes inside its queueing call, and none may be queued from inside the previous
 * one's completion (the stack would grow with the request's size, under the guest's control).
 */
TDRV_TEST(write_zeroes_largest_sync_store_flat_stack)
{
    struct tb_opts o = {.blk = {.null_size = 64ull << 30, .writethrough = true}};
    struct vhu_virtio_blk_discard_write_zeroes d[64];
    struct vhu_virtio_blk_config c;
    struct tb t;
    uint8_t st;

    blk_null_test_hooks = (struct blk_null_test_hooks){.on = true, .no_zero_range = true};
    ASSERT_OK(tb_up(&t, &o));
    ASSERT_OK(tdrv_get_config(t.d, 0, &c, sizeof(c)));
    ASSERT(c.max_write_zeroes_seg >= 1 && c.max_write_zeroes_seg <= VHU_ARRAY_SIZE(d));
    ASSERT((uint64_t)c.max_write_zeroes_seg * c.max_write_zeroes_sectors <= c.capacity);
    for (uint32_t i = 0; i < c.max_write_zeroes_seg; i++)
        d[i] = (struct vhu_virtio_blk_discard_write_zeroes){
            .sector = (uint64_t)i * c.max_write_zeroes_sectors,
            .num_sectors = c.max_write_zeroes_sectors};
    ASSERT_EQ(dwz(&t, VHU_VIRTIO_BLK_T_WRITE_ZEROES, d, c.max_write_zeroes_seg, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    /* every byte went through the store as written zeroes, one operation at a time */
    ASSERT_EQ(blk_null_test_hooks.written,
              (uint64_t)c.max_write_zeroes_seg * c.max_write_zeroes_sectors * 512);
    ASSERT_EQ(blk_null_test_hooks.max_depth, 1);
    ASSERT_EQ(blk_null_test_hooks.depth, 0);
    /* the device goes on serving */
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_IN, 0, 512, true, 1, &st), 513);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    tb_down(&t);
    blk_null_test_hooks = (struct blk_null_test_hooks){0};
}

/* The written-zeroes loop on a real file (sync engine on tmpfs: no ZERO_RANGE), ranges of many
 * 1 MiB chunks with a tail, writethrough: zeroes where asked, the neighbours intact. */
TDRV_TEST(write_zeroes_written_sync_tmpfs_multichunk)
{
    struct tb_opts o = {.dir = "/dev/shm", .blk = {.engine = VHU_BLK_ENGINE_SYNC,
                                                   .writethrough = true}};
    struct statfs sf;
    struct tb t;
    uint8_t st;

    if (statfs("/dev/shm", &sf) < 0 || sf.f_type != 0x01021994 /* TMPFS_MAGIC */)
        SKIP("no tmpfs at /dev/shm");
    ASSERT_OK(tb_up(&t, &o));
    for (uint32_t off = 0; off < DISK_SIZE; off += DATA_MAX)
        fill_disk(&t, off / 512, DATA_MAX);
    ASSERT(!vhu_test_failed);
    struct vhu_virtio_blk_discard_write_zeroes d[2] = {
        {.sector = 1, .num_sectors = 2 * 2048 + 3},  /* 2 MiB + 1.5 KiB: two chunks and a tail */
        {.sector = 6000, .num_sectors = 1024},        /* 512 KiB: a tail alone */
    };
    ASSERT_EQ(dwz(&t, VHU_VIRTIO_BLK_T_WRITE_ZEROES, d, 2, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    ASSERT(file_zero(t.path, 512, (2 * 2048 + 3) * 512));
    ASSERT(file_zero(t.path, 6000 * 512, 1024 * 512));
    ASSERT(!file_zero(t.path, 0, 512));
    ASSERT(!file_zero(t.path, (2 * 2048 + 4) * 512, 512));
    ASSERT(!file_zero(t.path, 5999 * 512, 512));
    ASSERT(!file_zero(t.path, 7024 * 512, 512));
    tb_down(&t);
}

/* Open and close many times: no fd leaks (io_uring fds, eventfds, the file). */
TDRV_TEST(no_fd_leak)
{
    int before = vhu_fd_count_self();
    struct tb t;
    uint8_t st;

    for (int i = 0; i < 5; i++) {
        struct tb_opts o = {.num_queues = 2, .blk = {.num_queues = 2}};
        ASSERT_OK(tb_up(&t, &o));
        ASSERT_EQ(rq(&t, 1, VHU_VIRTIO_BLK_T_IN, 0, 512, true, 1, &st), 513);
        tb_down(&t);
    }
    ASSERT_EQ(vhu_fd_count_self(), before);
}

/* ------------------------------------------------------------------------------------------ */
/* The NBD store: the same device over qemu-nbd (on the disk file, so file checks still hold)  */
/* and nbdkit's memory plugin, servers started here on a UNIX socket.                          */
/* ------------------------------------------------------------------------------------------ */

static bool have_prog(const char *name)
{
    const char *path = getenv("PATH");
    char buf[512];

    for (const char *p = path ? path : "/usr/bin:/bin"; p && *p;) {
        const char *c = strchr(p, ':');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, p, name);
        if (access(buf, X_OK) == 0)
            return true;
        p = c ? c + 1 : NULL;
    }
    return false;
}

static const char *server_prog(enum tb_server s)
{
    return s == SRV_NBDKIT_MEMORY ? "nbdkit" : "qemu-nbd";
}

/* The server, after delay_ms, in a child process of its own (its stderr stays ours). */
static pid_t nbd_spawn(const struct tb *t, enum tb_server s, unsigned delay_ms)
{
    pid_t pid = fork();

    if (pid != 0)
        return pid;
    if (delay_ms)
        usleep(delay_ms * 1000);
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) { /* quiet: the readiness probes make servers complain of broken pipes */
        dup2(devnull, 1);
        if (!getenv("VHU_TEST_VERBOSE"))
            dup2(devnull, 2);
    }
    switch (s) {
    case SRV_NBDKIT_MEMORY:
        execlp("nbdkit", "nbdkit", "-f", "-U", t->sock, "--filter=log", "memory", "4M",
               t->log, (char *)NULL);
        break;
    case SRV_QEMU_NBD_RO:
        execlp("qemu-nbd", "qemu-nbd", "-f", "raw", "-t", "-r", "--shared=8", "-k", t->sock,
               t->path, (char *)NULL);
        break;
    case SRV_QEMU_NBD_SINGLE:
        execlp("qemu-nbd", "qemu-nbd", "-f", "raw", "-t", "-k", t->sock, t->path, (char *)NULL);
        break;
    default:
        execlp("qemu-nbd", "qemu-nbd", "-f", "raw", "-t", "--shared=8", "--discard=unmap", "-k",
               t->sock, t->path, (char *)NULL);
        break;
    }
    _exit(127);
}

/* The socket accepts connections (up to 5 s). */
static int nbd_wait_ready(const struct tb *t)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};

    if (strlen(t->sock) >= sizeof(a.sun_path))
        return -ENAMETOOLONG;
    memcpy(a.sun_path, t->sock, strlen(t->sock) + 1);
    for (int i = 0; i < 500; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int r = fd >= 0 ? connect(fd, (struct sockaddr *)&a, sizeof(a)) : -1;

        if (fd >= 0)
            close(fd);
        if (r == 0)
            return 0;
        if (waitpid(t->srv, NULL, WNOHANG) == t->srv)
            return -ECHILD;
        usleep(10000);
    }
    return -ETIMEDOUT;
}

static int nbd_up(struct tb *t, struct vhu_blk_opts *bo)
{
    snprintf(t->sock, sizeof(t->sock), "%s/vhu-nbd-%d-%p.sock", tmpdir(), (int)getpid(),
             (void *)t);
    snprintf(t->uri, sizeof(t->uri), "nbd+unix:///?socket=%s", t->sock);
    snprintf(t->log, sizeof(t->log), "logfile=%s.log", t->sock);
    unlink(t->sock);
    unlink(t->log + 8);
    t->srv = nbd_spawn(t, tb_server, 0);
    if (t->srv < 0)
        return -errno;
    int r = nbd_wait_ready(t);
    if (r < 0)
        return r;
    bo->nbd_uri = t->uri;
    bo->path = NULL;
    return 0;
}

static void nbd_kill(struct tb *t, int sig)
{
    if (t->srv > 0) {
        kill(t->srv, sig);
        waitpid(t->srv, NULL, 0);
    }
    t->srv = -1;
}

static void nbd_down(struct tb *t)
{
    nbd_kill(t, SIGTERM);
    if (t->sock[0]) {
        unlink(t->sock);
        unlink(t->log + 8);
    }
}

/* How many commands named cmd ("Trim", "Zero") nbdkit's log shows answered ("...Zero id=.."). */
static int nbdkit_count(const struct tb *t, const char *cmd)
{
    FILE *f = fopen(t->log + 8, "r");
    char line[512], word[32];
    int n = 0;

    snprintf(word, sizeof(word), " ...%s ", cmd);
    while (f && fgets(line, sizeof(line), f))
        n += strstr(line, word) != NULL;
    if (f)
        fclose(f);
    return n;
}

/* Run body with the device on server s; SKIP (loudly) when the server program is missing. */
#define NBD_RUN(s, body)                                                                   \
    do {                                                                                   \
        if (!have_prog(server_prog(s)))                                                    \
            SKIP("NBD store untested: no %s (apt-get install %s)", server_prog(s),         \
                 s == SRV_NBDKIT_MEMORY ? "nbdkit" : "qemu-utils");                        \
        tb_server = (s);                                                                   \
        body;                                                                              \
        tb_server = SRV_NONE;                                                              \
    } while (0)

/* Two queues (multi-conn), split and packed, multi-segment chains up to 1 MiB: the file. */
TDRV_TEST(nbd_integrity_split) { NBD_RUN(SRV_QEMU_NBD, run_integrity(false, 0, 0, 0)); }
TDRV_TEST(nbd_integrity_packed_2_workers)
{
    NBD_RUN(SRV_QEMU_NBD, run_integrity(true, 2, 0, 0));
}
/* DISCARD is a trim (qemu-nbd --discard=unmap punches a hole), WRITE_ZEROES a write-zeroes;
 * a trim never stands in for WRITE_ZEROES with UNMAP (trimmed ranges need not read as zeroes) */
TDRV_TEST(nbd_discard_write_zeroes)
{
    NBD_RUN(SRV_QEMU_NBD, run_dwz(tmpdir(), false, 0));
}

TDRV_TEST(nbd_flush_fua_writethrough)
{
    struct tb_opts o = {.blk = {.writethrough = true}};
    struct tb t;
    uint8_t st;

    NBD_RUN(SRV_QEMU_NBD, ASSERT_OK(tb_up(&t, &o)));
    ASSERT(strcmp(vhu_blk_engine_name(t.dev), "nbd") == 0);
    ASSERT_EQ(vhu_blk_capacity(t.dev), DISK_SIZE / 512);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_FLUSH, 0, 0, false, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    pattern(t.data, 8192, 5);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_OUT, 16, 8192, false, 4, &st), 1); /* FUA */
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    uint8_t want[8192];
    pattern(want, sizeof(want), 5);
    ASSERT(file_matches(t.path, 16 * 512, want, sizeof(want)));
    tb_down(&t);
}

/* The export is read-only on the server: the device is, whatever it was asked. */
TDRV_TEST(nbd_read_only_export)
{
    struct tb_opts o = {0};
    struct tb t;
    uint8_t st;

    NBD_RUN(SRV_QEMU_NBD_RO, ASSERT_OK(tb_up(&t, &o)));
    ASSERT(vhu_has_feature(tdrv_features(t.d), VHU_VIRTIO_BLK_F_RO));
    ASSERT(!vhu_has_feature(tdrv_features(t.d), VHU_VIRTIO_BLK_F_DISCARD));
    pattern(t.data, 4096, 3);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_OUT, 0, 4096, false, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_IOERR);
    ASSERT(file_zero(t.path, 0, 4096));
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_IN, 0, 4096, true, 2, &st), 4097);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    tb_down(&t);
}

/* nbdkit's memory plugin: write, read back, zero, discard, over two queues. */
TDRV_TEST(nbd_nbdkit_memory)
{
    struct tb_opts o = {.num_queues = 2, .blk = {.num_queues = 2}};
    uint8_t *want = malloc(DATA_MAX);
    struct tb t;
    uint8_t st;

    ASSERT(want);
    NBD_RUN(SRV_NBDKIT_MEMORY, ASSERT_OK(tb_up(&t, &o)));
    ASSERT_EQ(vhu_blk_capacity(t.dev), (4u << 20) / 512);
    pattern(want, DATA_MAX, 11);
    memcpy(t.data, want, DATA_MAX);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_OUT, 8, DATA_MAX, false, 32, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    memset(t.data, 0, DATA_MAX);
    ASSERT_EQ(rq(&t, 1, VHU_VIRTIO_BLK_T_IN, 8, DATA_MAX, true, 7, &st), (int)DATA_MAX + 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    ASSERT(memcmp(t.data, want, DATA_MAX) == 0);
    struct vhu_virtio_blk_discard_write_zeroes d = {.sector = 8, .num_sectors = 16,
                                                    .flags = VHU_VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP};
    ASSERT_EQ(dwz(&t, VHU_VIRTIO_BLK_T_WRITE_ZEROES, &d, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    /* WRITE_ZEROES, UNMAP or not, is an NBD write-zeroes, never a trim (which need not zero) */
    ASSERT_EQ(nbdkit_count(&t, "Zero"), 1);
    ASSERT_EQ(nbdkit_count(&t, "Trim"), 0);
    d = (struct vhu_virtio_blk_discard_write_zeroes){.sector = 64, .num_sectors = 8};
    ASSERT_EQ(dwz(&t, VHU_VIRTIO_BLK_T_DISCARD, &d, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    ASSERT_EQ(nbdkit_count(&t, "Trim"), 1);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_IN, 8, 16 * 512 + 512, true, 1, &st), 16 * 512 + 513);
    for (unsigned i = 0; i < 16 * 512; i++)
        ASSERT_EQ(t.data[i], 0);
    ASSERT(memcmp(t.data + 16 * 512, want + 16 * 512, 512) == 0);
    tb_down(&t);
    free(want);
}

/* More than one queue needs multi-conn: qemu-nbd without --shared does not advertise it. */
TEST(nbd_multi_queue_needs_multi_conn)
{
    struct tb t;
    struct vhu_blk_opts bo = {.num_queues = 2};

    if (!have_prog("qemu-nbd"))
        SKIP("NBD store untested: no qemu-nbd (apt-get install qemu-utils)");
    memset(&t, 0, sizeof(t));
    ASSERT_OK(make_file(t.path, sizeof(t.path), tmpdir(), DISK_SIZE));
    tb_server = SRV_QEMU_NBD_SINGLE;
    ASSERT_OK(nbd_up(&t, &bo));
    ASSERT_ERR(-EINVAL, vhu_blk_new(&bo, &t.dev));
    bo.num_queues = 1;
    ASSERT_OK(vhu_blk_new(&bo, &t.dev)); /* the probe connection is closed again: one client */
    t.dev->ops->destroy(t.dev);
    nbd_down(&t);
    unlink(t.path);
    /* nothing listening: a clear error, not a hang */
    ASSERT(vhu_blk_new(&(struct vhu_blk_opts){.nbd_uri = "nbd+unix:///?socket=/nonexistent/s"},
                       &t.dev) < 0);
}

/* The server killed and restarted: a request issued meanwhile waits, then completes on the new
 * connection; what was written before is there. */
TDRV_TEST(nbd_server_restart_retries)
{
    struct tb_opts o = {.blk = {.nbd_timeout_ms = 10000}};
    struct tb t;
    uint8_t st;
    uint8_t want[4096];

    NBD_RUN(SRV_QEMU_NBD, ASSERT_OK(tb_up(&t, &o)));
    pattern(t.data, 4096, 21);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_OUT, 0, 4096, false, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    nbd_kill(&t, SIGKILL);
    t.srv = nbd_spawn(&t, SRV_QEMU_NBD, 300);
    ASSERT(t.srv > 0);
    pattern(t.data, 4096, 22);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_OUT, 8, 4096, false, 2, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    pattern(want, 4096, 22);
    ASSERT(file_matches(t.path, 8 * 512, want, 4096));
    memset(t.data, 0, 4096);
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_IN, 0, 4096, true, 1, &st), 4097);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_OK);
    pattern(want, 4096, 21);
    ASSERT(memcmp(t.data, want, 4096) == 0);
    tb_down(&t);
}

/* The server gone for good: the request fails after the timeout (1 s), not before, not never. */
TDRV_TEST(nbd_server_gone_times_out)
{
    struct tb_opts o = {.blk = {.nbd_timeout_ms = 1000}};
    struct tb t;
    uint8_t st;

    NBD_RUN(SRV_QEMU_NBD, ASSERT_OK(tb_up(&t, &o)));
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_IN, 0, 512, true, 1, &st), 513);
    nbd_kill(&t, SIGKILL);
    uint64_t t0 = vhu_now_ns();
    ASSERT_EQ(rq(&t, 0, VHU_VIRTIO_BLK_T_IN, 0, 512, true, 1, &st), 1);
    ASSERT_EQ(st, VHU_VIRTIO_BLK_S_IOERR);
    uint64_t ms = (vhu_now_ns() - t0) / 1000000;
    ASSERT(ms >= 900 && ms < 4000);
    tb_down(&t);
}

/* Devices on NBD come and go without leaking fds (sockets, epoll, timers). */
TDRV_TEST(nbd_no_fd_leak)
{
    struct tb t;
    uint8_t st;

    if (!have_prog("qemu-nbd"))
        SKIP("NBD store untested: no qemu-nbd (apt-get install qemu-utils)");
    int before = vhu_fd_count_self();
    for (int i = 0; i < 3; i++) {
        struct tb_opts o = {.num_queues = 2, .blk = {.num_queues = 2}};
        NBD_RUN(SRV_QEMU_NBD, ASSERT_OK(tb_up(&t, &o)));
        ASSERT_EQ(rq(&t, 1, VHU_VIRTIO_BLK_T_IN, 0, 512, true, 1, &st), 513);
        tb_down(&t);
    }
    ASSERT_EQ(vhu_fd_count_self(), before);
}

__attribute__((constructor)) static void setup_log(void)
{
    tdrv_log_setup();
}
