/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Live migration through the loopback frontend.
 *
 * Dirty logging, split and packed, with and without EVENT_IDX: the frontend attaches a log as
 * QEMU does when a migration starts (SET_LOG_BASE, LOG_ALL, the rings' log flag); after a request
 * exactly the pages the device wrote are marked — the written buffer pages and the ring pages
 * (split: used header, the used entry, avail_event; packed: the written-back descriptor, the
 * device event area), never a readable buffer's — and nothing at all while LOG_ALL is off.
 *
 * The same for the real net device (net_testlib.h): the unit-level proof for net that the guest
 * test cannot give (docs/recovery.md). Frames received (the reflect port; split and packed,
 * mergeable buffers on and off, EVENT_IDX on and off) log exactly the receive buffers' written
 * bytes (the header with num_buffers alone on a page in the first buffer of a mergeable packet,
 * the frame across pages, buffers and segments) and the rings' written parts (split: used
 * flags+idx, elements and avail_event, each on a page of its own; packed: the used descriptors,
 * the device event area); never an unwritten buffer tail, an unused buffer, a transmit buffer or
 * avail_event without EVENT_IDX. Frames sent (the sink) log the transmitq's ring only. Nothing is
 * logged while LOG_ALL is clear, before and after. A difference is reported page by page, with
 * what lies on the page.
 *
 * Hostile SET_LOG_BASE messages (a log too small for guest memory, an unsealed memfd, an
 * unaligned or out-of-file offset, an empty log) are refused with one message, the connection
 * dropped, nothing leaked. Device-state transfer (DEVICE_STATE): blk's write-cache mode moves
 * from one backend to another through the frontend's pipes; a damaged, truncated or foreign
 * frame is refused and changes nothing.
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
#include "net_testlib.h"
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

/* A sealed log memfd of LOG_BYTES (*fd), mapped; NULL on failure. */
static uint8_t *log_open(int *fd)
{
    void *p;

    *fd = log_memfd(LOG_BYTES, true);
    if (*fd < 0)
        return NULL;
    p = mmap(NULL, LOG_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
    if (p == MAP_FAILED) {
        close(*fd);
        *fd = -1;
        return NULL;
    }
    return p;
}

static void log_close(uint8_t *log, int fd)
{
    munmap(log, LOG_BYTES);
    close(fd);
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

    log = log_open(&fd);
    ASSERT(log != NULL);

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
    log_close(log, fd);
}

TEST(split_logs_exactly_the_written_pages) { logged_pages(false, false); }
TEST(split_event_idx_logs_avail_event) { logged_pages(false, true); }
TEST(packed_logs_exactly_the_written_pages) { logged_pages(true, false); }
TEST(packed_event_idx_logs_exactly_the_written_pages) { logged_pages(true, true); }

/* ---- the real net device: receive and transmit under the log ---- */

/*
 * Rings of 1024: a split ring's used ring starts a page (the frontend's layout), so its header,
 * the elements of slots 512..1023 and avail_event lie on three different pages and each of them
 * must be logged for its own sake. WARM frames go through every ring before the log is switched
 * on, so that the next used elements are on that middle page.
 */
#define NET_QSZ 1024
#define WARM 520
#define FRAME 1514u

/* A range of guest memory: device-written (its pages must be logged) or not (its pages must stay
 * clear; the test gives it pages of its own). */
struct area {
    const char *who, *what;
    uint64_t gpa, len;
    bool written;
};

struct expect {
    struct area a[16];
    unsigned n;
};

static void expect_add(struct expect *x, const char *who, const char *what, uint64_t gpa,
                       uint64_t len, bool written)
{
    if (x->n < VHU_ARRAY_SIZE(x->a))
        x->a[x->n++] = (struct area){who, what, gpa, len, written};
}

static bool area_on_page(const struct area *a, uint64_t page)
{
    return a->len && page >= a->gpa / PAGE && page <= (a->gpa + a->len - 1) / PAGE;
}

/*
 * The log holds exactly the pages of the written areas. A difference is reported page by page
 * with the areas on that page; an unwritten area sharing a page with a written one is a mistake
 * in the test's layout.
 */
static void check_log(const uint8_t *log, const struct expect *x)
{
    uint8_t want[LOG_BYTES] = {0};
    unsigned bad = 0;

    ASSERT(x->n < VHU_ARRAY_SIZE(x->a));
    for (unsigned i = 0; i < x->n; i++)
        if (x->a[i].written)
            mark(want, x->a[i].gpa, x->a[i].len);
    for (unsigned i = 0; i < x->n; i++) {
        const struct area *a = &x->a[i];
        for (uint64_t p = a->gpa / PAGE; !a->written && area_on_page(a, p); p++)
            if (want[p / 8] & (1u << (p % 8)))
                FAIL_AT("layout: %s %s shares page 0x%llx with a written area", a->who, a->what,
                        (unsigned long long)p);
    }
    for (uint64_t p = 0; p < 8ull * LOG_BYTES; p++) {
        bool got = log[p / 8] & (1u << (p % 8)), exp = want[p / 8] & (1u << (p % 8));
        if (got == exp)
            continue;
        fprintf(stderr, "  page at gpa 0x%llx: %s", (unsigned long long)(p * PAGE),
                exp ? "written, not logged" : "logged, not written");
        for (unsigned i = 0; i < x->n; i++)
            if (area_on_page(&x->a[i], p))
                fprintf(stderr, " [%s %s]", x->a[i].who, x->a[i].what);
        fprintf(stderr, "\n");
        bad++;
    }
    if (bad)
        FAIL_AT("%u pages of the log differ from what the device wrote", bad);
}

static void check_log_empty(const uint8_t *log)
{
    struct expect none = {.n = 0};

    check_log(log, &none);
}

/*
 * What a flush of n chains completed from used position `from` writes into queue q's rings
 * (single-descriptor chains: a chain of several segments goes out indirect).
 *   split (virtio 2.7.8): flags + idx, the n used elements, avail_event with EVENT_IDX;
 *   packed (2.8): the n descriptors written back, the device event suppression area.
 */
static void expect_used(struct expect *x, struct tb *t, unsigned q, unsigned from, unsigned n)
{
    const char *who = q % 2 ? "tx ring" : "rx ring";
    uint64_t f = tdrv_features(t->d), d, a, u, elems, ev;
    bool event_idx = vhu_has_feature(f, VHU_VIRTIO_RING_F_EVENT_IDX);

    vhu_vqd_addrs(tdrv_vqd(t->d, q), &d, &a, &u);
    if (vhu_has_feature(f, VHU_VIRTIO_F_RING_PACKED)) {
        expect_add(x, who, "used descriptors", d + 16ull * (from % NET_QSZ), 16ull * n, true);
        expect_add(x, who, "device event area", u, 4, true);
        return;
    }
    elems = u + 4 + 8ull * (from % NET_QSZ);
    ev = u + 4 + 8ull * NET_QSZ;
    /* each on a page of its own (see NET_QSZ), or the test proves less than it says */
    ASSERT(u / PAGE != elems / PAGE && elems / PAGE != ev / PAGE);
    ASSERT((elems + 8ull * n - 1) / PAGE == elems / PAGE);
    expect_add(x, who, "used flags+idx", u, 4, true);
    expect_add(x, who, "used elements", elems, 8ull * n, true);
    expect_add(x, who, event_idx ? "avail_event" : "avail_event (no EVENT_IDX: never written)",
               ev, 2, event_idx);
    expect_add(x, who, "descriptor table (the driver's)", d, 16ull * NET_QSZ, false);
}

static bool untouched(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0xee)
            return false;
    return true;
}

/* n small frames sent on transmitq 0 (reflect: received on receiveq 0 too), all completed. */
static void net_traffic(struct tb *t, unsigned n, bool reflect)
{
    uint8_t frame[60];

    if (reflect) {
        ASSERT_OK(rx_post(t, 0, 2048, n, 1, NULL));
        ASSERT_OK(tdrv_kick(t->d, 0));
    }
    for (unsigned i = 0; i < n; i++) {
        make_frame(frame, sizeof(frame), i);
        ASSERT_OK(tx_add(t, 1, NULL, frame, sizeof(frame), 1));
    }
    ASSERT_OK(tdrv_kick(t->d, 1));
    ASSERT_EQ(collect(t, 1, n, 5000, NULL, NULL), n);
    if (reflect)
        ASSERT_EQ(collect(t, 0, n, 5000, NULL, NULL), n);
}

/* A net device behind the loopback frontend with rings of NET_QSZ, and its log. */
struct net_run {
    struct tb t;
    uint8_t *log;
    int fd;
    bool reflect;
};

/*
 * The device on `port` with the log attached and LOG_ALL clear, as before a migration: WARM
 * frames log nothing. Then the migration starts (LOG_ALL and the rings' log flag set, the log
 * cleared). False when the bench could not be set up.
 */
static bool net_begin(struct net_run *n, enum vhu_net_port_kind port, bool packed, bool mrg,
                      bool event_idx)
{
    struct tb_opts o = {.net = {.port = port}, .packed = packed, .mrg = mrg,
                        .no_event_idx = !event_idx, .queue_size = NET_QSZ,
                        .protocol_features = vhu_feature(VHOST_USER_PROTOCOL_F_LOG_SHMFD)};

    n->reflect = port == VHU_NET_PORT_REFLECT;
    n->log = log_open(&n->fd);
    if (!n->log)
        return false;
    if (tb_up(&n->t, &o) < 0 || vhu_fe_set_log(tdrv_fe(n->t.d), n->fd, LOG_BYTES, false) < 0) {
        log_close(n->log, n->fd);
        return false;
    }
    net_traffic(&n->t, WARM, n->reflect);
    check_log_empty(n->log);
    if (vhu_fe_set_log(tdrv_fe(n->t.d), -1, 0, true) < 0) {
        tb_down(&n->t);
        log_close(n->log, n->fd);
        return false;
    }
    memset(n->log, 0, LOG_BYTES);
    return true;
}

/* The migration ends (LOG_ALL clear again): one more frame logs nothing. Frees the bench. */
static void net_end(struct net_run *n)
{
    int r = vhu_fe_set_log(tdrv_fe(n->t.d), -1, 0, false);

    memset(n->log, 0, LOG_BYTES);
    if (r == 0) {
        net_traffic(&n->t, 1, n->reflect);
        check_log_empty(n->log);
    }
    tb_down(&n->t);
    log_close(n->log, n->fd);
    ASSERT_OK(r);
}

/*
 * Receive under the log: reflect returns a FRAME-byte frame sent on transmitq 0 into receive
 * buffers placed in an 8-page region R, the transmit buffer on page 7 (read only: never logged).
 *   mergeable: buffer 1 (1024 bytes) at the end of page 0, header alone on page 0 (num_buffers:
 *   2), frame on page 1; buffer 2 ends its 502 written bytes at the end of page 2, its unwritten
 *   tail alone on page 3; buffer 3 on page 5, never used.
 *   not mergeable: one chain (indirect) of two segments, 112 bytes at the end of page 0 (header
 *   and 100 bytes of frame), then 2 pages whose first 1414 bytes end page 3: the unwritten rest
 *   fills pages 4 and 5.
 * Before (LOG_ALL clear, WARM frames) and after (LOG_ALL cleared again) nothing is logged.
 */
static void net_rx_logged(bool packed, bool mrg, bool event_idx)
{
    struct net_run n;
    struct tb *t = &n.t;
    struct expect x = {.n = 0};
    struct vhu_virtio_net_hdr_v1 h;
    uint8_t *r, frame[FRAME], *got[3];
    uint32_t lens[3];
    uint64_t g;

    ASSERT(net_begin(&n, VHU_NET_PORT_REFLECT, packed, mrg, event_idx));
    r = tdrv_alloc(t->d, 8 * PAGE, PAGE, &g);
    ASSERT(r != NULL);
    memset(r, 0xee, 8 * PAGE);
    if (mrg) {
        const uint32_t rest = HDR + FRAME - 1024; /* in buffer 2 */
        struct vhu_vqd_seg s[3] = {{g + PAGE - HDR, 1024}, {g + 3 * PAGE - rest, 1024},
                                   {g + 5 * PAGE, 1024}};
        for (unsigned i = 0; i < 3; i++)
            ASSERT_OK(vhu_vqd_add(tdrv_vqd(t->d, 0), &s[i], 0, 1, r + (s[i].addr - g)));
        expect_add(&x, "rx buffer 1", "header (num_buffers)", s[0].addr, HDR, true);
        expect_add(&x, "rx buffer 1", "frame", s[0].addr + HDR, 1024 - HDR, true);
        expect_add(&x, "rx buffer 2", "frame", s[1].addr, rest, true);
        expect_add(&x, "rx buffer 2", "unwritten tail", s[1].addr + rest, 1024 - rest, false);
        expect_add(&x, "rx buffer 3", "never used", s[2].addr, 1024, false);
    } else {
        struct vhu_vqd_seg s[2] = {{g + PAGE - 112, 112}, {g + 4 * PAGE - 1414, 2 * PAGE}};
        ASSERT_OK(vhu_vqd_add(tdrv_vqd(t->d, 0), s, 0, 2, r + PAGE - 112));
        expect_add(&x, "rx segment 1", "header + frame start", s[0].addr, 112, true);
        expect_add(&x, "rx segment 2", "frame end", s[1].addr, 1414, true);
        expect_add(&x, "rx segment 2", "unwritten tail", s[1].addr + 1414, 2 * PAGE - 1414,
                   false);
    }
    ASSERT_OK(tdrv_kick(t->d, 0));
    make_frame(frame, FRAME, 77);
    ASSERT_OK(tx_add_at(t, 1, r + 7 * PAGE, g + 7 * PAGE, NULL, frame, FRAME, 1));
    expect_add(&x, "tx buffer", "header + frame (readable)", g + 7 * PAGE, HDR + FRAME, false);
    expect_used(&x, t, 0, WARM, mrg ? 2 : 1);
    expect_used(&x, t, 1, WARM, 1);
    ASSERT_OK(tdrv_kick(t->d, 1));
    ASSERT_EQ(collect(t, 1, 1, 5000, NULL, NULL), 1);
    ASSERT_EQ(collect(t, 0, mrg ? 2 : 1, 5000, got, lens), mrg ? 2 : 1);
    check_log(n.log, &x);

    /* what the device wrote is what the areas say */
    memcpy(&h, mrg ? r + PAGE - HDR : r + PAGE - 112, HDR);
    ASSERT_EQ(h.num_buffers, mrg ? 2 : 1);
    if (mrg) {
        ASSERT_EQ(lens[0], 1024);
        ASSERT_EQ(lens[1], HDR + FRAME - 1024);
        ASSERT(untouched(r + 3 * PAGE, 1024 - lens[1]) && untouched(r + 5 * PAGE, 1024));
    } else {
        ASSERT_EQ(lens[0], HDR + FRAME);
        ASSERT(untouched(r + 4 * PAGE, 2 * PAGE - 1414));
    }

    net_end(&n);
}

TEST(net_rx_split_mergeable_logs_exactly_the_written_pages) { net_rx_logged(false, true, true); }
TEST(net_rx_split_mergeable_no_event_idx) { net_rx_logged(false, true, false); }
TEST(net_rx_split_logs_exactly_the_written_pages) { net_rx_logged(false, false, true); }
TEST(net_rx_split_no_event_idx) { net_rx_logged(false, false, false); }
TEST(net_rx_packed_mergeable_logs_exactly_the_written_pages) { net_rx_logged(true, true, true); }
TEST(net_rx_packed_mergeable_no_event_idx) { net_rx_logged(true, true, false); }
TEST(net_rx_packed_logs_exactly_the_written_pages) { net_rx_logged(true, false, true); }
TEST(net_rx_packed_no_event_idx) { net_rx_logged(true, false, false); }

/*
 * Transmit under the log (the sink): two frames, one in a segment across a page boundary, one in
 * three segments (indirect); the device writes only the transmitq's used ring, never a buffer.
 */
static void net_tx_logged(bool packed, bool event_idx)
{
    struct net_run n;
    struct tb *t = &n.t;
    struct expect x = {.n = 0};
    uint8_t *r, frame[FRAME];
    uint64_t g;

    ASSERT(net_begin(&n, VHU_NET_PORT_SINK, packed, false, event_idx));
    r = tdrv_alloc(t->d, 6 * PAGE, PAGE, &g);
    ASSERT(r != NULL);
    make_frame(frame, FRAME, 5);
    ASSERT_OK(tx_add_at(t, 1, r + 2 * PAGE - 700, g + 2 * PAGE - 700, NULL, frame, FRAME, 1));
    ASSERT_OK(tx_add_at(t, 1, r + 5 * PAGE - 900, g + 5 * PAGE - 900, NULL, frame, FRAME, 3));
    expect_add(&x, "tx buffer 1", "(readable)", g + 2 * PAGE - 700, HDR + FRAME, false);
    expect_add(&x, "tx buffer 2", "(readable, 3 segments)", g + 5 * PAGE - 900, HDR + FRAME,
               false);
    expect_used(&x, t, 1, WARM, 2);
    ASSERT_OK(tdrv_kick(t->d, 1));
    ASSERT_EQ(collect(t, 1, 2, 5000, NULL, NULL), 2);
    ASSERT_EQ(stats(t, 1).packets, WARM + 2);
    check_log(n.log, &x);
    net_end(&n);
}

TEST(net_tx_split_logs_only_the_used_ring) { net_tx_logged(false, true); }
TEST(net_tx_split_no_event_idx) { net_tx_logged(false, false); }
TEST(net_tx_packed_logs_only_the_used_descriptors) { net_tx_logged(true, true); }
TEST(net_tx_packed_no_event_idx) { net_tx_logged(true, false); }

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
