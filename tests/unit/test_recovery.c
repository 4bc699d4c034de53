/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Backend crash and restart through the loopback frontend, split and packed: the frontend keeps
 * its memory, rings and the inflight buffer (as QEMU does) and reconnects to a new backend. The
 * first backend parks requests and completes some out of order, then dies; the second resubmits
 * exactly the unfinished ones, in order, and the frontend sees every request complete once.
 * Device state: blk's write-cache mode set by the guest survives the crash; a state area that
 * was scribbled on is ignored with one message and the device keeps its defaults; net keeps the
 * MAC it generated (the guest has read it).
 */
#include <stddef.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vhu/backend.h"
#include "vhu/dev/blk.h"
#include "vhu/dev/net.h"
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
#define NREQ 6 /* 3 chains of 2 and 3 of 3 descriptors: 15 of the ring's 16 */

/* ---- a device that parks requests until the test completes them ---- */

struct park_dev {
    struct vhu_device dev;
    struct vhu_vq *vq;
    struct vhu_vq_elem *parked[QSZ];
    unsigned nparked;
    unsigned dropped;
};

static void park_notify(struct vhu_device *dev, struct vhu_vq *vq)
{
    struct park_dev *p = (struct park_dev *)dev;
    struct vhu_vq_elem *e;

    p->vq = vq;
    while (p->nparked < QSZ && (e = vhu_vq_pop(vq)) != NULL)
        p->parked[p->nparked++] = e;
}

/* Echo the request's payload into its reply buffer and complete it. */
static void park_complete(struct park_dev *p, unsigned i)
{
    struct vhu_vq_elem *e = p->parked[i];
    uint8_t tmp[64];
    size_t n = vhu_iov_to_buf(e->iov, e->out_num, 0, tmp, sizeof(tmp));
    size_t w = vhu_iov_from_buf(e->iov + e->out_num, e->in_num, 0, tmp, n);

    vhu_vq_push(p->vq, e, (uint32_t)w);
    p->parked[i] = p->parked[--p->nparked];
}

/* The backend is going away: parked requests are dropped, not completed (a crash). */
static void park_stop(struct vhu_device *dev, struct vhu_vq *vq)
{
    struct park_dev *p = (struct park_dev *)dev;

    (void)vq;
    p->dropped += p->nparked;
    p->nparked = 0;
}

static const struct vhu_device_ops park_ops = {
    .queue_notify = park_notify,
    .queue_stop = park_stop,
};

static void park_init(struct park_dev *p)
{
    memset(p, 0, sizeof(*p));
    p->dev = test_device(&park_ops, "park");
}

/* ---- a backend behind the loopback transport ---- */

struct rig {
    struct vhu_loop *loop;
    struct vhu_backend *b;
};

static struct vhu_fe *rig_up(struct rig *r, struct vhu_device *dev)
{
    struct vhu_fe *fe = NULL;

    memset(r, 0, sizeof(*r));
    if (vhu_loop_new(&r->loop) < 0 || vhu_backend_new(dev, r->loop, &r->b) < 0 ||
        vhu_loopback_connect(r->b, r->loop, &fe) < 0)
        return NULL;
    return fe;
}

static void rig_down(struct rig *r)
{
    vhu_backend_free(r->b);
    vhu_loop_free(r->loop);
}

static void settle(struct rig *r)
{
    for (int i = 0; i < 20; i++)
        vhu_loop_run_once(r->loop, 1);
}

static char log_buf[512];
static unsigned log_errors;

static void log_capture(enum vhu_log_level level, const char *msg, void *opaque)
{
    (void)opaque;
    if (level == VHU_LOG_ERROR) {
        snprintf(log_buf, sizeof(log_buf), "%s", msg);
        log_errors++;
    }
}

static void crash_restart(bool packed)
{
    struct vhu_fe_opts o = {.num_queues = 1, .queue_size = QSZ, .packed = packed,
                            .mem_size = 1 << 20, .inflight = true};
    struct park_dev d1, d2;
    struct rig r1, r2;
    struct vhu_fe *fe, *fe2;
    uint8_t *req[NREQ], *rep[NREQ];
    uint64_t req_gpa[NREQ], rep_gpa[NREQ];
    unsigned done = 0;
    uint32_t len;
    void *c;

    park_init(&d1);
    fe = rig_up(&r1, &d1.dev);
    ASSERT(fe);
    ASSERT_OK(vhu_fe_start(fe, &o));
    struct vhu_vqd *vqd = vhu_fe_vqd(fe, 0);
    for (unsigned i = 0; i < NREQ; i++) {
        req[i] = vhu_fe_alloc(fe, 16, 16, &req_gpa[i]);
        rep[i] = vhu_fe_alloc(fe, 16, 16, &rep_gpa[i]);
        snprintf((char *)req[i], 16, "request %u", i);
        /* every other request in two readable pieces: chains of 2 and 3 descriptors */
        struct vhu_vqd_seg s[3] = {{req_gpa[i], 8}, {req_gpa[i] + 8, 8}, {rep_gpa[i], 16}};
        if (i & 1)
            ASSERT_OK(vhu_vqd_add(vqd, s, 2, 1, (void *)(uintptr_t)(i + 1)));
        else
            ASSERT_OK(vhu_vqd_add(vqd, (struct vhu_vqd_seg[]){{req_gpa[i], 16}, {rep_gpa[i], 16}},
                                  1, 1, (void *)(uintptr_t)(i + 1)));
    }
    ASSERT_OK(vhu_fe_kick(fe, 0));
    settle(&r1);
    ASSERT_EQ(d1.nparked, NREQ);
    /* the first backend completes requests 5 and 2 (out of order), then dies */
    for (unsigned want = 5;; want = 2) {
        for (unsigned i = 0; i < d1.nparked; i++) {
            char tmp[16] = {0};
            vhu_iov_to_buf(d1.parked[i]->iov, d1.parked[i]->out_num, 0, tmp, sizeof(tmp));
            if ((unsigned)(tmp[8] - '0') == want) {
                park_complete(&d1, i);
                break;
            }
        }
        if (want == 2)
            break;
    }
    vhu_vq_flush(d1.vq);
    while ((c = vhu_vqd_get_used(vqd, &len)) != NULL)
        done |= 1u << ((uintptr_t)c - 1);
    ASSERT_EQ(done, (1u << 5) | (1u << 2));

    /* crash: the first backend's session ends with 4 requests parked, never completed */
    park_init(&d2);
    fe2 = rig_up(&r2, &d2.dev);
    ASSERT(fe2);
    ASSERT_OK(vhu_fe_reconnect(fe, fe2));
    ASSERT_EQ(d1.dropped, NREQ - 2);
    rig_down(&r1);
    ASSERT_OK(vhu_fe_kick(fe, 0)); /* QEMU kicks after a reconnect, too */
    settle(&r2);
    /* exactly the unfinished ones, oldest first */
    ASSERT_EQ(d2.nparked, NREQ - 2);
    unsigned expect[] = {0, 1, 3, 4};
    for (unsigned k = 0; k < d2.nparked; k++) {
        char tmp[16] = {0};
        vhu_iov_to_buf(d2.parked[k]->iov, d2.parked[k]->out_num, 0, tmp, sizeof(tmp));
        if ((unsigned)(tmp[8] - '0') != expect[k])
            FAIL_AT("resubmission %u is %s", k, tmp);
    }
    while (d2.nparked)
        park_complete(&d2, 0);
    vhu_vq_flush(d2.vq);
    settle(&r2);
    while ((c = vhu_vqd_get_used(vqd, &len)) != NULL) {
        unsigned i = (unsigned)((uintptr_t)c - 1);
        ASSERT(!(done & (1u << i)));
        done |= 1u << i;
        ASSERT_EQ(len, 16);
        ASSERT(memcmp(rep[i], req[i], 16) == 0);
    }
    ASSERT_EQ(done, (1u << NREQ) - 1);
    ASSERT_EQ(d2.dropped, 0);
    vhu_fe_free(fe);
    rig_down(&r2);
}

TEST(split_backend_crash_resubmits_unfinished_in_order) { crash_restart(false); }
TEST(packed_backend_crash_resubmits_unfinished_in_order) { crash_restart(true); }

/* ---- device state: blk's write-cache mode ---- */

/* The guest switches to write-through; the backend crashes; the new one starts write-through.
 * With spoil, the state area is scribbled on before the restart: ignored, one message,
 * defaults. */
static void blk_state(bool packed, bool spoil)
{
    struct vhu_fe_opts o = {.num_queues = 1, .queue_size = QSZ, .packed = packed,
                            .mem_size = 1 << 20, .inflight = true,
                            .features = vhu_feature(VHU_VIRTIO_BLK_F_CONFIG_WCE) |
                                        vhu_feature(VHU_VIRTIO_BLK_F_FLUSH)};
    struct vhu_device *d1 = blk_null(), *d2 = blk_null();
    const uint8_t wt = 0;
    struct rig r1, r2;
    struct vhu_fe *fe, *fe2;
    uint64_t size;

    ASSERT(d1 && d2);
    fe = rig_up(&r1, d1);
    ASSERT(fe);
    ASSERT_OK(vhu_fe_start(fe, &o));
    ASSERT_EQ(blk_writeback(fe), 1);
    ASSERT_OK(vhu_fe_set_config(fe, offsetof(struct vhu_virtio_blk_config, writeback), &wt, 1));
    ASSERT_EQ(blk_writeback(fe), 0);
    if (spoil) {
        int fd = vhu_fe_inflight_fd(fe, &size);
        ASSERT(fd >= 0 && size > 64);
        uint8_t *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ASSERT(m != MAP_FAILED);
        /* the state area is the tail: flip bytes in the payload of both slots */
        for (uint64_t i = size - 128; i < size; i += 7)
            m[i] ^= 0x5a;
        munmap(m, size);
    }
    fe2 = rig_up(&r2, d2);
    ASSERT(fe2);
    log_errors = 0;
    vhu_log_set_sink(log_capture, NULL, VHU_LOG_DEBUG);
    ASSERT_OK(vhu_fe_reconnect(fe, fe2));
    vhu_log_set_sink(vhu_log_stderr_sink, NULL, VHU_LOG_INFO);
    rig_down(&r1);
    if (spoil) {
        ASSERT_EQ(log_errors, 1);
        ASSERT(strstr(log_buf, "device state in the inflight buffer ignored") != NULL);
        ASSERT_EQ(blk_writeback(fe), 1); /* the default: nothing trusted */
    } else {
        ASSERT_EQ(log_errors, 0);
        ASSERT_EQ(blk_writeback(fe), 0); /* the guest's choice survived */
    }
    vhu_fe_free(fe);
    rig_down(&r2);
}

TEST(blk_write_cache_survives_crash_split) { blk_state(false, false); }
TEST(blk_write_cache_survives_crash_packed) { blk_state(true, false); }
TEST(blk_spoiled_state_ignored) { blk_state(false, true); }

/* ---- device state: net's generated MAC ---- */

TEST(net_generated_mac_survives_crash)
{
    struct vhu_net_opts no = {.port = VHU_NET_PORT_SINK};
    struct vhu_fe_opts o = {.num_queues = 2, .queue_size = QSZ, .mem_size = 1 << 20,
                            .inflight = true, .queue_pairs = true};
    struct vhu_device *d1 = NULL, *d2 = NULL;
    uint8_t mac1[6], mac2[6], seen[6];
    struct rig r1, r2;
    struct vhu_fe *fe, *fe2;

    ASSERT_OK(vhu_net_new(&no, &d1));
    ASSERT_OK(vhu_net_new(&no, &d2));
    vhu_net_get_mac(d1, mac1);
    vhu_net_get_mac(d2, mac2);
    ASSERT(memcmp(mac1, mac2, 6) != 0); /* two random MACs */
    fe = rig_up(&r1, d1);
    ASSERT(fe);
    ASSERT_OK(vhu_fe_start(fe, &o));
    fe2 = rig_up(&r2, d2);
    ASSERT(fe2);
    ASSERT_OK(vhu_fe_reconnect(fe, fe2));
    rig_down(&r1);
    ASSERT_OK(vhu_fe_get_config(fe, offsetof(struct vhu_virtio_net_config, mac), seen, 6));
    ASSERT(memcmp(seen, mac1, 6) == 0); /* the successor answers with the MAC the guest knows */
    vhu_fe_free(fe);
    rig_down(&r2);
}
