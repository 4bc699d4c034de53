/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Live migration through the loopback frontend. Dirty logging, split and packed, with and without EVENT_IDX:
 * the frontend attaches a log as QEMU does when a migration starts (SET_LOG_BASE, LOG_ALL, the
 * rings' log flag); after a request exactly the pages the device wrote are marked — the
 * written buffer pages and the ring pages (split: used header, the used entry, avail_event;
 * packed: the written-back descriptor, the device event area), never a readable buffer's —
 * and nothing at all while LOG_ALL is off. Hostile SET_LOG_BASE messages (a log too small for
 * guest memory, an unsealed memfd, an unaligned or out-of-file offset, an empty log) are
 * refused with one message, the connection dropped, nothing leaked. Device-state transfer
 * (DEVICE_STATE): blk's write-cache mode moves from one backend to another through the
 * frontend's pipes; a damaged, truncated or foreign frame is refused and changes nothing.
 */
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "frontend/fe_msg.h"
#include "vhu/backend.h"
#include "vhu/dev/blk.h"
#include "vhu/device.h"
#include "vhu/frontend.h"
#include "vhu/log.h"
#include "vhu/loop.h"
#include "vhu/loopback.h"
#include "vhu/util.h"
#include "vhu/vqd.h"
#include "fe_blk_testlib.h"
#include "vhu_test.h"

#define QSZ 16
#define MEM (1u << 20)
#define LOG_BYTES 4096u /* covers 128 MiB of guest-physical space */
#define PAGE 4096u

/* ---- a device that fills every writable byte it is given ---- */

struct fill_dev {
    struct vhu_device dev;
};

static void fill_notify(struct vhu_device *dev, struct vhu_vq *vq)
{
    struct vhu_vq_elem *e;

    (void)dev;
    while ((e = vhu_vq_pop(vq)) != NULL) {
        for (uint32_t i = e->out_num; i < e->out_num + e->in_num; i++)
            memset(e->iov[i].iov_base, 0xab, e->iov[i].iov_len);
        vhu_vq_push(vq, e, (uint32_t)e->in_len);
    }
    vhu_vq_flush(vq);
}

static const struct vhu_device_ops fill_ops = {.queue_notify = fill_notify};

static void fill_init(struct fill_dev *d)
{
    d->dev = test_device(&fill_ops, "fill");
}

struct rig {
    struct fill_dev d;
    struct vhu_device *dev; /* &d.dev, or a device the rig owns */
    struct vhu_loop *loop;
    struct vhu_backend *b;
    struct vhu_fe *fe;
};

/* A backend with dev (NULL: the fill device) behind the loopback frontend, started. */
static int rig_up_dev(struct rig *r, struct vhu_device *dev, bool packed, bool event_idx)
{
    struct vhu_fe_opts o = {.num_queues = 1, .queue_size = QSZ, .packed = packed,
                            .event_idx = event_idx, .mem_size = MEM,
                            .protocol_features = vhu_feature(VHOST_USER_PROTOCOL_F_LOG_SHMFD) |
                                                 vhu_feature(VHOST_USER_PROTOCOL_F_DEVICE_STATE),
                            /* blk: the write cache the guest toggles */
                            .features = dev ? vhu_feature(VHU_VIRTIO_BLK_F_CONFIG_WCE) |
                                                  vhu_feature(VHU_VIRTIO_BLK_F_FLUSH)
                                            : 0};

    memset(r, 0, sizeof(*r));
    fill_init(&r->d);
    r->dev = dev ? dev : &r->d.dev;
    if (vhu_loop_new(&r->loop) < 0 || vhu_backend_new(r->dev, r->loop, &r->b) < 0 ||
        vhu_loopback_connect(r->b, r->loop, &r->fe) < 0)
        return -1;
    return vhu_fe_start(r->fe, &o);
}

static int rig_up(struct rig *r, bool packed, bool event_idx)
{
    return rig_up_dev(r, NULL, packed, event_idx);
}

static void rig_down(struct rig *r)
{
    vhu_fe_free(r->fe);
    vhu_backend_free(r->b);
    vhu_loop_free(r->loop);
}

static void settle(struct rig *r)
{
    for (int i = 0; i < 20; i++)
        vhu_loop_run_once(r->loop, 1);
}

static char log_buf[2048]; /* every error, one per line */
static unsigned log_errors;

static void log_capture(enum vhu_log_level level, const char *msg, void *opaque)
{
    size_t n = strlen(log_buf);

    (void)opaque;
    if (level == VHU_LOG_ERROR) {
        snprintf(log_buf + n, sizeof(log_buf) - n, "%s\n", msg);
        log_errors++;
    }
}

/* A memfd of n bytes, sealed against shrinking (as QEMU makes its log) or not. */
static int log_memfd(size_t n, bool sealed)
{
    int fd = memfd_create("test-log", MFD_ALLOW_SEALING | MFD_CLOEXEC);

    if (fd < 0 || ftruncate(fd, (off_t)n) < 0 ||
        (sealed && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* ---- expected pages ---- */

static void mark(uint8_t *want, uint64_t gpa, uint64_t len)
{
    for (uint64_t p = gpa / PAGE; p <= (gpa + len - 1) / PAGE; p++)
        want[p / 8] |= (uint8_t)(1u << (p % 8));
}

static void check_bitmap(const uint8_t *log, const uint8_t *want)
{
    for (unsigned i = 0; i < LOG_BYTES; i++) {
        if (log[i] != want[i])
            FAIL_AT("log byte %u (pages %u..%u) is 0x%02x, want 0x%02x", i, i * 8, i * 8 + 7,
                    log[i], want[i]);
    }
}

/*
 * One request: 16 readable bytes on their own page, then a writable buffer of PAGE + 200 bytes
 * starting 100 bytes before a page boundary (three pages touched).
 */
static void one_request(struct rig *r, uint64_t out_gpa, uint64_t in_gpa)
{
    struct vhu_vqd *vqd = vhu_fe_vqd(r->fe, 0);
    struct vhu_vqd_seg s[2] = {{out_gpa, 16}, {in_gpa, PAGE + 200}};
    uint32_t len = 0;

    ASSERT_OK(vhu_vqd_add(vqd, s, 1, 1, (void *)(uintptr_t)1));
    ASSERT_OK(vhu_fe_kick(r->fe, 0));
    settle(r);
    ASSERT(vhu_vqd_get_used(vqd, &len) != NULL);
    ASSERT_EQ(len, PAGE + 200);
}

static void logged_pages(bool packed, bool event_idx)
{
    struct rig r;
    uint8_t *log, want[LOG_BYTES];
    uint64_t out_gpa, in_gpa, d, a, u;
    int fd;

    ASSERT_OK(rig_up(&r, packed, event_idx));
    ASSERT(vhu_has_feature(vhu_fe_backend_features(r.fe), VHOST_F_LOG_ALL));
    /* the buffers: readable on one page, writable across two boundaries */
    vhu_fe_alloc(r.fe, PAGE, PAGE, &out_gpa);
    vhu_fe_alloc(r.fe, 4 * PAGE, PAGE, &in_gpa);
    in_gpa += PAGE - 100;
    vhu_vqd_addrs(vhu_fe_vqd(r.fe, 0), &d, &a, &u);

    fd = log_memfd(LOG_BYTES, true);
    ASSERT(fd >= 0);
    log = mmap(NULL, LOG_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ASSERT(log != MAP_FAILED);

    /* a log attached but LOG_ALL and the ring flags off: nothing is logged */
    ASSERT_OK(vhu_fe_set_log(r.fe, fd, LOG_BYTES, false));
    one_request(&r, out_gpa, in_gpa);
    memset(want, 0, sizeof(want));
    check_bitmap(log, want);

    /* migration starts: exactly the written pages */
    ASSERT_OK(vhu_fe_set_log(r.fe, -1, 0, true));
    memset(log, 0, LOG_BYTES);
    unsigned s0 = 1; /* the second request */
    one_request(&r, out_gpa, in_gpa);
    mark(want, in_gpa, PAGE + 200);
    if (packed) {
        /* chains of 2 descriptors: the second request's used descriptor is slot 2 */
        mark(want, d + 16 * ((2 * s0) % QSZ), 16);
        mark(want, u, 4); /* device event suppression area */
    } else {
        mark(want, u, 4);                      /* flags, idx */
        mark(want, u + 4 + 8 * (s0 % QSZ), 8); /* the used element */
        if (event_idx)
            mark(want, u + 4 + 8 * QSZ, 2); /* avail_event */
    }
    check_bitmap(log, want);
    ASSERT_EQ(log[out_gpa / PAGE / 8] & (1u << (out_gpa / PAGE % 8)), 0); /* readable: never */

    /* migration ends: logging off again */
    ASSERT_OK(vhu_fe_set_log(r.fe, -1, 0, false));
    memset(log, 0, LOG_BYTES);
    memset(want, 0, sizeof(want));
    one_request(&r, out_gpa, in_gpa);
    check_bitmap(log, want);

    rig_down(&r);
    munmap(log, LOG_BYTES);
    close(fd);
}

TEST(split_logs_exactly_the_written_pages) { logged_pages(false, false); }
TEST(split_event_idx_logs_avail_event) { logged_pages(false, true); }
TEST(packed_logs_exactly_the_written_pages) { logged_pages(true, false); }
TEST(packed_event_idx_logs_exactly_the_written_pages) { logged_pages(true, true); }

/* ---- hostile SET_LOG_BASE ---- */

static void refused(size_t file_size, bool sealed, uint64_t mmap_size, uint64_t mmap_offset,
                    const char *why)
{
    struct rig r;
    struct vhu_msg m, reply;
    int fd;

    ASSERT_OK(rig_up(&r, false, false));
    fd = log_memfd(file_size, sealed);
    ASSERT(fd >= 0);
    vhu_msg_init(&m, VHOST_USER_SET_LOG_BASE, VHOST_USER_VERSION, sizeof(struct vhost_user_log));
    m.payload.log.mmap_size = mmap_size;
    m.payload.log.mmap_offset = mmap_offset;
    m.fds[0] = fd;
    m.nfds = 1;
    log_errors = 0;
    log_buf[0] = 0;
    vhu_log_set_sink(log_capture, NULL, VHU_LOG_DEBUG);
    ASSERT(vhu_fe_raw(r.fe, &m, &reply) < 0); /* no reply: the backend dropped us */
    settle(&r);
    vhu_log_set_sink(vhu_log_stderr_sink, NULL, VHU_LOG_INFO);
    if (!log_errors || !strstr(log_buf, why))
        FAIL_AT("refusal not reported as '%s' (errors: '%s')", why, log_buf);
    close(fd);
    rig_down(&r);
}

/* 1 MiB of guest memory needs 256 pages: 32 bytes of log at least. */
TEST(log_base_too_small_refused) { refused(PAGE, true, 16, 0, "does not cover"); }
TEST(log_base_unsealed_refused) { refused(PAGE, false, PAGE, 0, "SET_LOG_BASE"); }
TEST(log_base_unaligned_offset_refused) { refused(2 * PAGE, true, PAGE, 100, "SET_LOG_BASE"); }
TEST(log_base_offset_past_file_refused) { refused(PAGE, true, PAGE, PAGE, "SET_LOG_BASE"); }
TEST(log_base_empty_refused) { refused(PAGE, true, 0, 0, "SET_LOG_BASE"); }

/* ---- device-state transfer ---- */

/* Source: a guest set write-through; its state, saved with the rings stopped. */
static int saved_write_through(uint8_t *buf, size_t len)
{
    struct rig r;
    uint8_t wt = 0;
    int n;

    if (rig_up_dev(&r, blk_null(), false, false) < 0 ||
        vhu_fe_set_config(r.fe, offsetof(struct vhu_virtio_blk_config, writeback), &wt, 1) < 0 ||
        vhu_fe_stop(r.fe) < 0)
        n = -1;
    else
        n = vhu_fe_save_state(r.fe, buf, len);
    rig_down(&r);
    return n;
}

/* Destination: a fresh blk (write-back) loads buf; returns the load's result, *wb the mode. */
static int load_into_fresh(const uint8_t *buf, size_t len, uint8_t *wb)
{
    struct rig r;
    int ret;

    if (rig_up_dev(&r, blk_null(), false, false) < 0 || vhu_fe_stop(r.fe) < 0) {
        rig_down(&r);
        return -1;
    }
    *wb = blk_writeback(r.fe);
    if (*wb != 1) {
        rig_down(&r);
        return -2; /* not the default to begin with */
    }
    ret = vhu_fe_load_state(r.fe, buf, len);
    *wb = blk_writeback(r.fe);
    rig_down(&r);
    return ret;
}

TEST(blk_write_cache_mode_moves_with_the_device_state)
{
    uint8_t buf[8192], wb = 0xff;
    int n = saved_write_through(buf, sizeof(buf));

    ASSERT(n > 32); /* a 32-byte frame header and the state */
    ASSERT_OK(load_into_fresh(buf, (size_t)n, &wb));
    ASSERT_EQ(wb, 0); /* write-through, as the source's guest set it */
}

static void state_refused(void (*spoil)(uint8_t *buf, int *n), const char *why)
{
    uint8_t buf[8192], wb = 0xff;
    int n = saved_write_through(buf, sizeof(buf));

    ASSERT(n > 32);
    spoil(buf, &n);
    log_errors = 0;
    log_buf[0] = 0;
    vhu_log_set_sink(log_capture, NULL, VHU_LOG_DEBUG);
    int r = load_into_fresh(buf, (size_t)n, &wb);
    vhu_log_set_sink(vhu_log_stderr_sink, NULL, VHU_LOG_INFO);
    ASSERT_EQ(r, -EIO);
    ASSERT_EQ(wb, 1); /* the device keeps its own state */
    if (!strstr(log_buf, why))
        FAIL_AT("refusal not reported as '%s' (errors: '%s')", why, log_buf);
}

static void spoil_payload(uint8_t *buf, int *n) { buf[*n - 1] ^= 0x40; }
static void spoil_truncate(uint8_t *buf, int *n) { (void)buf; *n -= 1; }
static void spoil_header(uint8_t *buf, int *n) { (void)n; buf[0] ^= 1; }
static void spoil_device(uint8_t *buf, int *n) { (void)n; buf[8] = 4; } /* virtio_id: rng */
static void spoil_short(uint8_t *buf, int *n) { (void)buf; *n = 7; }

TEST(state_with_a_flipped_bit_refused) { state_refused(spoil_payload, "checksum mismatch"); }
TEST(state_truncated_refused) { state_refused(spoil_truncate, "length does not match"); }
TEST(state_with_bad_magic_refused) { state_refused(spoil_header, "bad magic"); }
TEST(state_of_another_device_refused) { state_refused(spoil_device, "another kind of device"); }
TEST(state_shorter_than_a_header_refused) { state_refused(spoil_short, "shorter than its header"); }
