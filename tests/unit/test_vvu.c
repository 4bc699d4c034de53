/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The virtio-vhost-user driver end to end, in one process and on one thread: a real device
 * (rng, blk) behind a vhu backend served by the driver (transport/vvu/driver.c), the VVU device
 * model (vvu_dev) reached through the in-process PCI bus (harness/pci_direct), and a real
 * frontend (the frontend library) on the device's unix socket. The frontend's waits run the
 * loop the device and the driver share.
 *
 * A wrapper bus sits between the driver and pci_direct: it can take the interrupts and io fds
 * away (the guest-userspace case: polling, doorbells by register writes), lie about the
 * capabilities, and it tells the test where the driver's rings are, so the test can play a
 * device that lies in the rxq used ring.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fe_pump.h"
#include "frontend/fe_msg.h"
#include "pci_direct.h"
#include "proto/vvu.h"
#include "vhu/backend.h"
#include "vhu/dev/blk.h"
#include "vhu/dev/rng.h"
#include "vhu/fe/blk.h"
#include "vhu/log.h"
#include "vhu/loop.h"
#include "vhu/transport.h"
#include "vhu/util.h"
#include "vhu/virtio.h"
#include "vhu_test.h"
#include "vvu/vfio_user_server.h"
#include "vvu/vvu_dev.h"

/* ---- the wrapper bus ----------------------------------------------------------------------- */

enum lie {
    LIE_NONE,
    LIE_CAP_LOOP,     /* the first capability points back at itself */
    LIE_NO_BAR0,      /* BAR0 (the registers) reads as absent */
    LIE_CAP_LEN,      /* a vendor capability longer than config space */
};

struct wrap {
    struct vhu_pci pci;
    struct vhu_pci *in;
    bool no_irq, no_iofd;
    enum lie lie;
    void *dma;          /* the driver's (single) DMA allocation */
    uint64_t dma_iova;
    int rxq_irq;        /* the driver's copy of the rxq vector's eventfd */
    /* config_generation reads return what the device had when this was set: the driver's
     * look at the status always comes "just before" the device's change */
    bool gen_frozen;
    uint8_t gen_value;
};

static struct wrap *wrap_of(struct vhu_pci *p)
{
    return VHU_CONTAINER_OF(p, struct wrap, pci);
}

static int w_cfg_read(struct vhu_pci *p, uint32_t off, void *buf, uint32_t len)
{
    struct wrap *w = wrap_of(p);
    uint8_t first = 0;
    int r = w->in->ops->cfg_read(w->in, off, buf, len);

    w->in->ops->cfg_read(w->in, 0x34, &first, 1);
    if (r == 0 && w->lie == LIE_CAP_LOOP && off == first + 1u && len == 1)
        *(uint8_t *)buf = first;
    if (r == 0 && w->lie == LIE_CAP_LEN && off == first + 2u && len == 1)
        *(uint8_t *)buf = 0xfc;
    return r;
}

static int w_cfg_write(struct vhu_pci *p, uint32_t off, const void *buf, uint32_t len)
{
    return wrap_of(p)->in->ops->cfg_write(wrap_of(p)->in, off, buf, len);
}

/* where config_generation sits in BAR0 */
#define GEN_OFF (VVU_COMMON_OFF + offsetof(struct vvu_common_cfg, config_generation))

/* BAR accesses through any wrapper so far (a refused device must see none). */
static unsigned bar_accesses;

static int w_bar_read(struct vhu_pci *p, unsigned bar, uint64_t off, void *buf, uint32_t len)
{
    struct wrap *w = wrap_of(p);
    int r;

    bar_accesses++;
    r = w->in->ops->bar_read(w->in, bar, off, buf, len);
    if (r == 0 && w->gen_frozen && bar == VVU_BAR_REGS && len == 1 && off == GEN_OFF)
        *(uint8_t *)buf = w->gen_value;
    return r;
}

static int w_bar_write(struct vhu_pci *p, unsigned bar, uint64_t off, const void *buf,
                       uint32_t len)
{
    bar_accesses++;
    return wrap_of(p)->in->ops->bar_write(wrap_of(p)->in, bar, off, buf, len);
}

static uint64_t w_bar_size(struct vhu_pci *p, unsigned bar)
{
    struct wrap *w = wrap_of(p);

    return w->lie == LIE_NO_BAR0 && bar == VVU_BAR_REGS ? 0 : w->in->ops->bar_size(w->in, bar);
}

static int w_bar_map(struct vhu_pci *p, unsigned bar, uint64_t off, uint64_t len, void **host)
{
    return wrap_of(p)->in->ops->bar_map(wrap_of(p)->in, bar, off, len, host);
}

static void w_bar_unmap(struct vhu_pci *p, void *host, uint64_t len)
{
    wrap_of(p)->in->ops->bar_unmap(wrap_of(p)->in, host, len);
}

static int w_io_fd(struct vhu_pci *p, unsigned bar, uint64_t off, uint32_t size, int *fd)
{
    struct wrap *w = wrap_of(p);

    return w->no_iofd ? -ENOTSUP : w->in->ops->io_fd(w->in, bar, off, size, fd);
}

static int w_irq_fds(struct vhu_pci *p, unsigned n, int *fds)
{
    struct wrap *w = wrap_of(p);
    int r;

    if (w->no_irq)
        return -ENOTSUP;
    r = w->in->ops->irq_fds(w->in, n, fds);
    if (r == 0 && n > VVU_RXQ + 1)
        w->rxq_irq = fds[1];
    return r;
}

static int w_dma_alloc(struct vhu_pci *p, size_t len, void **host, uint64_t *iova)
{
    struct wrap *w = wrap_of(p);
    int r = w->in->ops->dma_alloc(w->in, len, host, iova);

    if (r == 0 && !w->dma) {
        w->dma = *host;
        w->dma_iova = *iova;
    }
    return r;
}

static void w_dma_free(struct vhu_pci *p, void *host, size_t len)
{
    wrap_of(p)->in->ops->dma_free(wrap_of(p)->in, host, len);
}

static int w_reset(struct vhu_pci *p)
{
    return wrap_of(p)->in->ops->reset(wrap_of(p)->in);
}

static void w_free(struct vhu_pci *p)
{
    struct wrap *w = wrap_of(p);

    w->in->ops->free(w->in);
    free(w);
}

static const struct vhu_pci_ops wrap_ops = {
    .cfg_read = w_cfg_read,
    .cfg_write = w_cfg_write,
    .bar_read = w_bar_read,
    .bar_write = w_bar_write,
    .bar_size = w_bar_size,
    .bar_map = w_bar_map,
    .bar_unmap = w_bar_unmap,
    .io_fd = w_io_fd,
    .irq_fds = w_irq_fds,
    .dma_alloc = w_dma_alloc,
    .dma_free = w_dma_free,
    .reset = w_reset,
    .free = w_free,
};

/* ---- the setup ----------------------------------------------------------------------------- */

enum kind { RNG, BLK };

struct tv {
    char dir[32], path[64], file[64];
    struct vhu_loop *loop;
    struct vvu_dev *dev;
    struct vhu_device *d;
    struct vhu_backend *b;
    struct vhu_vvu *vvu;
    struct wrap *w;          /* owned by vvu */
    bool no_irq, no_iofd;
};

static void pump(struct tv *t, int ms)
{
    vhu_loop_run_once(t->loop, ms);
}

static void pump_hook(void *opaque)
{
    pump(opaque, 0);
}

/* Pump until cond holds (at most 2 s). */
#define PUMP_UNTIL(t, cond)                                                                   \
    do {                                                                                      \
        for (int i__ = 0; i__ < 400 && !(cond); i__++)                                        \
            pump(t, 5);                                                                       \
    } while (0)

static int driver_up(struct tv *t, enum lie lie)
{
    struct vhu_pci *in;
    int r = vhu_pci_direct_open(vvu_dev_pci(t->dev), &in);

    if (r < 0)
        return r;
    t->w = calloc(1, sizeof(*t->w));
    if (!t->w) {
        in->ops->free(in);
        return -ENOMEM;
    }
    t->w->pci.ops = &wrap_ops;
    t->w->in = in;
    t->w->no_irq = t->no_irq;
    t->w->no_iofd = t->no_iofd;
    t->w->lie = lie;
    t->w->rxq_irq = -1;
    snprintf(t->w->pci.name, sizeof(t->w->pci.name), "test-vvu");
    r = vhu_vvu_new_pci(t->b, t->loop, &t->w->pci, &t->vvu);
    if (r < 0) {
        t->vvu = NULL;
        t->w = NULL;
    }
    return r;
}

static int tv_up(struct tv *t, enum kind kind, unsigned nq, bool no_irq)
{
    struct vvu_dev_opts o;
    int r;

    memset(t, 0, sizeof(*t));
    t->no_irq = t->no_iofd = no_irq;
    snprintf(t->dir, sizeof(t->dir), "/tmp/vhu-vvu-XXXXXX");
    if (!vhu_test_mkdtemp(t->dir))
        return -errno;
    snprintf(t->path, sizeof(t->path), "%s/fe.sock", t->dir);
    vvu_dev_opts_default(&o);
    o.max_vhost_queues = 8;
    o.shm_size = 64 << 20;
    o.socket_path = t->path;
    r = vhu_loop_new(&t->loop);
    if (r == 0)
        r = vvu_dev_new(t->loop, &o, &t->dev);
    if (r == 0 && kind == RNG) {
        struct vhu_rng_opts ro = {0};
        r = vhu_rng_new(&ro, &t->d);
    } else if (r == 0) {
        struct vhu_blk_opts bo = {.num_queues = (uint16_t)nq, .engine = VHU_BLK_ENGINE_SYNC};
        int fd;
        snprintf(t->file, sizeof(t->file), "%s/disk.img", t->dir);
        fd = open(t->file, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        r = fd < 0 || ftruncate(fd, 4 << 20) < 0 ? -EIO : 0;
        if (fd >= 0)
            close(fd);
        bo.path = t->file;
        if (r == 0)
            r = vhu_blk_new(&bo, &t->d);
    }
    if (r == 0)
        r = vhu_backend_new(t->d, t->loop, &t->b);
    if (r == 0)
        r = driver_up(t, LIE_NONE);
    return r;
}

static void tv_down(struct tv *t)
{
    vhu_vvu_free(t->vvu);
    if (t->b)
        vhu_backend_free(t->b);
    else if (t->d)
        t->d->ops->destroy(t->d);
    vvu_dev_free(t->dev);
    if (t->loop)
        vhu_loop_free(t->loop);
    if (t->file[0])
        unlink(t->file);
    rmdir(t->dir);
}

/* From now on the driver reads a config generation that never changes. */
static void gen_freeze(struct tv *t)
{
    struct vhu_pci *in = t->w->in;

    in->ops->bar_read(in, VVU_BAR_REGS, GEN_OFF, &t->w->gen_value, 1);
    t->w->gen_frozen = true;
}

/* ---- the frontend -------------------------------------------------------------------------- */

/* A frontend on the device's socket, once the driver serves it (*fd: its socket, borrowed). */
static struct vhu_fe *fe_open(struct tv *t, int *fd)
{
    struct vhu_fe *fe = NULL;

    PUMP_UNTIL(t, !vhu_vvu_frontend_up(t->vvu));
    if (vhu_test_fe_pump_connect(t->path, pump_hook, t, &fe, fd) < 0)
        return NULL;
    PUMP_UNTIL(t, vhu_vvu_frontend_up(t->vvu));
    return fe;
}

/* The frontend's socket was closed by the device. */
static bool fe_dropped(struct tv *t, int fd)
{
    for (int i = 0; i < 400; i++) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        char b;
        if (poll(&p, 1, 0) == 1 && recv(fd, &b, 1, MSG_DONTWAIT) == 0)
            return true;
        pump(t, 5);
    }
    return false;
}

static struct vhu_vvu_stats stats(const struct tv *t)
{
    struct vhu_vvu_stats s;

    vhu_vvu_get_stats(t->vvu, &s);
    return s;
}

/* rng: n requests of 64 bytes on queue 0 complete with 64 random bytes. */
static int rng_works(struct vhu_fe *fe, unsigned n)
{
    uint64_t gpa;
    uint8_t *buf = vhu_fe_alloc(fe, 64, 64, &gpa);
    struct vhu_vqd_seg seg = {.addr = gpa, .len = 64};

    if (!buf)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        static const uint8_t zero[64];
        int r;

        memset(buf, 0, 64);
        r = vhu_fe_request(fe, 0, &seg, 0, 1, 2000);
        if (r != 64)
            return r < 0 ? r : -EIO;
        if (memcmp(buf, zero, 64) == 0)
            return -EIO;
    }
    return 0;
}

static int rng_start(struct vhu_fe *fe, bool packed)
{
    struct vhu_fe_opts fo = {.num_queues = 1, .queue_size = 64, .packed = packed,
                             .event_idx = true, .mem_size = 1 << 20};

    return vhu_fe_start(fe, &fo);
}

/* An rng served through the driver with a started frontend (*fd: its socket). */
static int rng_serving(struct tv *t, struct vhu_fe **fe, int *fd)
{
    int r = tv_up(t, RNG, 1, false);

    *fe = r == 0 ? fe_open(t, fd) : NULL;
    if (r == 0 && !*fe)
        r = -ENOTCONN;
    if (r == 0)
        r = rng_start(*fe, false);
    if (r == 0)
        r = rng_works(*fe, 1);
    return r;
}

/* A fresh frontend gets through negotiation and served requests. */
static int fresh_rng(struct tv *t)
{
    struct vhu_fe *fe = fe_open(t, NULL);
    int r;

    if (!fe)
        return -ENOTCONN;
    r = rng_start(fe, false);
    if (r == 0)
        r = rng_works(fe, 3);
    vhu_fe_free(fe);
    return r;
}

/* ---- tests --------------------------------------------------------------------------------- */

/* The validator's fd-less mode: no fds, resource-backed fd policies accepted, the others refused. */
TEST(fdless_validation)
{
    struct vhu_msg_ctx ctx = {.num_queues = 2, .fdless = true,
                              .protocol_features = VVU_PROTOCOL_FEATURES_RELAYED};
    const char *why;
    struct vhu_msg m;

    memset(&m, 0, sizeof(m));
    for (unsigned i = 0; i < VHOST_USER_MAX_FDS; i++)
        m.fds[i] = -1;
    vhu_msg_init(&m, VHOST_USER_SET_VRING_CALL, VHOST_USER_VERSION, 8);
    m.payload.u64 = 1;
    ASSERT_OK(vhu_msg_validate(&m, &ctx, &why));
    m.nfds = 1;
    ASSERT_ERR(-EBADF, vhu_msg_validate(&m, &ctx, &why));
    m.nfds = 0;
    vhu_msg_init(&m, VHOST_USER_SET_MEM_TABLE, VHOST_USER_VERSION,
                 8 + sizeof(struct vhost_user_memory_region));
    m.payload.memory.nregions = 1;
    ASSERT_OK(vhu_msg_validate(&m, &ctx, &why));
    vhu_msg_init(&m, VHOST_USER_ADD_MEM_REG, VHOST_USER_VERSION,
                 sizeof(struct vhost_user_mem_reg));
    ASSERT_OK(vhu_msg_validate(&m, &ctx, &why));
    vhu_msg_init(&m, VHOST_USER_SET_LOG_FD, VHOST_USER_VERSION, 0);
    ASSERT_ERR(-EBADF, vhu_msg_validate(&m, &ctx, &why));
    vhu_msg_init(&m, VHOST_USER_GPU_SET_SOCKET, VHOST_USER_VERSION, 0);
    ASSERT_ERR(-EBADF, vhu_msg_validate(&m, &ctx, &why));
    /* what needs a feature a fd-less transport never offers stays refused for that */
    vhu_msg_init(&m, VHOST_USER_SET_BACKEND_REQ_FD, VHOST_USER_VERSION, 0);
    ASSERT_ERR(-EPERM, vhu_msg_validate(&m, &ctx, &why));
    /* and the AF_UNIX rules are unchanged */
    ctx.fdless = false;
    vhu_msg_init(&m, VHOST_USER_SET_VRING_CALL, VHOST_USER_VERSION, 8);
    m.payload.u64 = 1;
    ASSERT_ERR(-EBADF, vhu_msg_validate(&m, &ctx, &why));
}

static void rng_session(bool no_irq, bool packed)
{
    struct tv t;
    struct vhu_fe *fe;

    ASSERT_OK(tv_up(&t, RNG, 1, no_irq));
    ASSERT_EQ(stats(&t).polled, no_irq);
    fe = fe_open(&t, NULL);
    ASSERT(fe);
    ASSERT(vhu_vvu_frontend_up(t.vvu));
    ASSERT_OK(rng_start(fe, packed));
    /* only what can cross without fds was offered */
    ASSERT(vhu_fe_protocol_features(fe) != 0);
    ASSERT_EQ(vhu_fe_protocol_features(fe) & ~VVU_PROTOCOL_FEATURES_RELAYED, 0);
    ASSERT_OK(rng_works(fe, 5));
    ASSERT(stats(&t).messages >= 8);
    /* the frontend goes: the session ends, the next frontend is served */
    vhu_fe_free(fe);
    PUMP_UNTIL(&t, !vhu_vvu_frontend_up(t.vvu));
    ASSERT(!vhu_vvu_frontend_up(t.vvu));
    ASSERT_OK(fresh_rng(&t));
    ASSERT_EQ(stats(&t).sessions, 2);
    ASSERT_EQ(stats(&t).frontend_errors, 0);
    ASSERT_EQ(stats(&t).device_errors, 0);
    tv_down(&t);
}

TEST(rng_split_msix) { rng_session(false, false); }
TEST(rng_packed_msix) { rng_session(false, true); }
TEST(rng_split_polled) { rng_session(true, false); }
TEST(rng_packed_polled) { rng_session(true, true); }

/* blk, 2 queues: writes through each queue reach the file, reads give them back. */
static void blk_session(bool no_irq, bool packed)
{
    struct vhu_fe_opts fo = {.features = vhu_fe_blk_features(), .num_queues = 2,
                             .queue_size = 64, .packed = packed, .event_idx = true,
                             .mem_size = 4 << 20};
    const uint32_t len = 65536;
    struct vhu_fe_blk_info info;
    struct vhu_fe_blk_cpl c;
    struct tv t;
    struct vhu_fe *fe;
    uint8_t *wbuf, *rbuf, *disk;
    uint64_t wgpa, rgpa;
    int fd;

    ASSERT_OK(tv_up(&t, BLK, 2, no_irq));
    fe = fe_open(&t, NULL);
    ASSERT(fe);
    ASSERT_OK(vhu_fe_start(fe, &fo));
    ASSERT_EQ(vhu_fe_num_queues(fe), 2);
    ASSERT_OK(vhu_fe_blk_get_info(fe, &info));
    ASSERT_EQ(info.capacity, (4u << 20) / 512);
    wbuf = vhu_fe_alloc(fe, len, 4096, &wgpa);
    rbuf = vhu_fe_alloc(fe, len, 4096, &rgpa);
    disk = malloc(len);
    ASSERT(wbuf && rbuf && disk);
    fd = open(t.file, O_RDONLY | O_CLOEXEC);
    ASSERT(fd >= 0);
    for (unsigned q = 0; q < 2; q++) {
        struct vhu_fe_blk *blk;
        uint64_t sector = 64 + q * 1024;

        ASSERT_OK(vhu_fe_blk_new(fe, &info, q, 4, &blk));
        for (uint32_t i = 0; i < len; i++)
            wbuf[i] = (uint8_t)(i * 7 + q * 31 + (i >> 10));
        memset(rbuf, 0, len);
        ASSERT_OK(vhu_fe_blk_write(blk, sector, wgpa, len, (void *)1));
        ASSERT_OK(vhu_fe_blk_kick(blk));
        ASSERT_EQ(vhu_fe_blk_reap_wait(blk, &c, 1, 2000), 1);
        ASSERT_EQ(c.status, 0);
        ASSERT_OK(vhu_fe_blk_read(blk, sector, rgpa, len, (void *)2));
        ASSERT_OK(vhu_fe_blk_kick(blk));
        ASSERT_EQ(vhu_fe_blk_reap_wait(blk, &c, 1, 2000), 1);
        ASSERT_EQ(c.status, 0);
        ASSERT(memcmp(wbuf, rbuf, len) == 0);
        ASSERT_EQ(pread(fd, disk, len, (off_t)sector * 512), len);
        ASSERT(memcmp(wbuf, disk, len) == 0);
        vhu_fe_blk_free(blk);
    }
    close(fd);
    free(disk);
    vhu_fe_free(fe);
    tv_down(&t);
}

TEST(blk_split_2q_msix) { blk_session(false, false); }
TEST(blk_packed_2q_msix) { blk_session(false, true); }
TEST(blk_split_2q_polled) { blk_session(true, false); }

/* The driver (backend) restarts: the device drops the frontend; a new one is served. */
TEST(driver_restart)
{
    struct vvu_dev_stats ds;
    struct vhu_fe *fe;
    struct tv t;
    int fd;

    ASSERT_OK(rng_serving(&t, &fe, &fd));
    vhu_vvu_free(t.vvu);
    t.vvu = NULL;
    ASSERT(fe_dropped(&t, fd));
    vhu_fe_free(fe);
    ASSERT_OK(driver_up(&t, LIE_NONE));
    ASSERT_OK(fresh_rng(&t));
    vvu_dev_stats(t.dev, &ds);
    ASSERT_EQ(ds.frontend_sessions, 2);
    tv_down(&t);
}

/* A frontend message the session refuses: that frontend is dropped, the next one served. */
TEST(frontend_bad_message)
{
    struct vhu_msg m, reply;
    struct vhu_fe *fe;
    struct tv t;
    int fd;

    ASSERT_OK(rng_serving(&t, &fe, &fd));
    memset(&m, 0, sizeof(m));
    vhu_msg_init(&m, VHOST_USER_SET_VRING_NUM, VHOST_USER_VERSION, sizeof(m.payload.state));
    m.payload.state.index = 0;
    m.payload.state.num = 70000; /* larger than any ring */
    vhu_fe_raw(fe, &m, &reply);
    ASSERT(fe_dropped(&t, fd));
    PUMP_UNTIL(&t, stats(&t).frontend_errors == 1);
    ASSERT_EQ(stats(&t).frontend_errors, 1);
    vhu_fe_free(fe);
    ASSERT_OK(fresh_rng(&t));
    ASSERT_EQ(stats(&t).device_errors, 0);
    tv_down(&t);
}

/*
 * Polling, a frontend that talks at once: the first message can be on rxq before the driver
 * has seen the status change that announced its frontend (the tick read the generation just
 * before the device bumped it). Frozen generation reads make that the rule: the driver must
 * take the message in hand as the sign to look at the whole status, not drop it for want of a
 * session (the frontend would wait for its reply forever: QEMU does, at startup).
 */
TEST(polled_first_message_before_status)
{
    struct vhu_fe *fe = NULL;
    struct tv t;

    ASSERT_OK(tv_up(&t, RNG, 1, true));
    PUMP_UNTIL(&t, !vhu_vvu_frontend_up(t.vvu));
    gen_freeze(&t);
    ASSERT_OK(vhu_test_fe_pump_connect(t.path, pump_hook, &t, &fe, NULL));
    vhu_fe_set_reply_timeout(fe, 1000);
    /* no wait for the driver's session: GET_FEATURES goes out now */
    ASSERT_OK(rng_start(fe, false));
    ASSERT_OK(rng_works(fe, 3));
    ASSERT_EQ(stats(&t).dropped, 0);
    ASSERT_EQ(stats(&t).sessions, 1);
    vhu_fe_free(fe);
    tv_down(&t);
}

/* The test plays a device that lies in the rxq used ring. */
static void lying_used(struct tv *t, uint32_t id, uint32_t len, uint32_t hdr_size)
{
    struct vhu_pci *p = &t->w->pci;
    uint32_t lo = 0, hi = 0, num = 0, sel = VVU_RXQ;
    struct vhu_vring_used *used;
    uint16_t idx;

    p->ops->bar_write(p, VVU_BAR_REGS, VVU_COMMON_OFF + offsetof(struct vvu_common_cfg,
                                                                 queue_select), &sel, 2);
    p->ops->bar_read(p, VVU_BAR_REGS, VVU_COMMON_OFF + offsetof(struct vvu_common_cfg,
                                                                queue_size), &num, 2);
    p->ops->bar_read(p, VVU_BAR_REGS, VVU_COMMON_OFF + offsetof(struct vvu_common_cfg,
                                                                queue_device_lo), &lo, 4);
    p->ops->bar_read(p, VVU_BAR_REGS, VVU_COMMON_OFF + offsetof(struct vvu_common_cfg,
                                                                queue_device_hi), &hi, 4);
    used = (void *)((uint8_t *)t->w->dma + ((((uint64_t)hi << 32) | lo) - t->w->dma_iova));
    /* the buffer the entry names gets a header that claims hdr_size */
    if (id < num) {
        struct vhost_user_hdr h = {.request = VHOST_USER_GET_FEATURES,
                                   .flags = VHOST_USER_VERSION, .size = hdr_size};
        struct vhu_vring_desc *desc;

        lo = hi = 0;
        p->ops->bar_read(p, VVU_BAR_REGS, VVU_COMMON_OFF + offsetof(struct vvu_common_cfg,
                                                                    queue_desc_lo), &lo, 4);
        p->ops->bar_read(p, VVU_BAR_REGS, VVU_COMMON_OFF + offsetof(struct vvu_common_cfg,
                                                                    queue_desc_hi), &hi, 4);
        desc = (void *)((uint8_t *)t->w->dma + ((((uint64_t)hi << 32) | lo) - t->w->dma_iova));
        memcpy((uint8_t *)t->w->dma + (desc[id].addr - t->w->dma_iova), &h, sizeof(h));
    }
    idx = used->idx;
    used->ring[idx % num].id = id;
    used->ring[idx % num].len = len;
    __atomic_store_n(&used->idx, (uint16_t)(idx + 1), __ATOMIC_RELEASE);
    /* and raises the rxq vector */
    vhu_eventfd_signal(t->w->rxq_irq);
}

static void hostile_case(uint32_t id, uint32_t len, uint32_t hdr_size, unsigned n)
{
    struct vhu_fe *fe;
    struct tv t;
    int fd;

    ASSERT_OK(rng_serving(&t, &fe, &fd));
    lying_used(&t, id, len, hdr_size);
    PUMP_UNTIL(&t, stats(&t).device_errors == 1);
    ASSERT_EQ(stats(&t).device_errors, 1);
    /* the reset dropped the frontend; the device is served again */
    ASSERT(fe_dropped(&t, fd));
    vhu_fe_free(fe);
    for (unsigned i = 0; i < n; i++)
        ASSERT_OK(fresh_rng(&t));
    ASSERT_EQ(stats(&t).device_errors, 1);
    tv_down(&t);
}

TEST(hostile_used_len_short) { hostile_case(0, 5, 0, 1); }
TEST(hostile_used_len_mismatch) { hostile_case(1, 40, 100, 1); }
TEST(hostile_used_len_huge) { hostile_case(2, VVU_MSG_MAX + 1, 4097, 1); }
TEST(hostile_used_id) { hostile_case(500, 12, 0, 2); }

/* A device whose capabilities lie is refused at creation, without a leak, and without a
 * register access: not even a reset through a window that failed its checks (fuzz_vvu_driver
 * found the driver writing device_status at an offset the device made up, then waiting 1 s). */
static void lying_caps(enum lie lie)
{
    struct tv t;
    unsigned before;

    ASSERT_OK(tv_up(&t, RNG, 1, false));
    vhu_vvu_free(t.vvu);
    t.vvu = NULL;
    before = bar_accesses;
    ASSERT(driver_up(&t, lie) < 0);
    ASSERT(!t.vvu);
    ASSERT_EQ(bar_accesses, before);
    ASSERT_OK(driver_up(&t, LIE_NONE));
    ASSERT_OK(fresh_rng(&t));
    tv_down(&t);
}

TEST(caps_loop) { lying_caps(LIE_CAP_LOOP); }
TEST(caps_no_bar) { lying_caps(LIE_NO_BAR0); }
TEST(caps_len) { lying_caps(LIE_CAP_LEN); }

/* Over vfio-user: the device and its vfio-user server on a thread of their own (the client's
 * register accesses wait for the server), the driver spec-opened as vhud --vvu does it. */
struct dev_thread {
    struct vhu_loop *loop;
    volatile bool stop;
};

static void *dev_thread_run(void *arg)
{
    struct dev_thread *dt = arg;

    while (!dt->stop)
        vhu_loop_run_once(dt->loop, 10);
    return NULL;
}

TEST(rng_over_vfio_user)
{
    struct vhu_rng_opts ro = {0};
    struct dev_thread dt = {0};
    struct vhu_vfu_server *srv;
    struct vvu_dev_opts o;
    char spec[96], vsock[64];
    struct vhu_fe *fe;
    pthread_t th;
    struct tv t;

    memset(&t, 0, sizeof(t));
    snprintf(t.dir, sizeof(t.dir), "/tmp/vhu-vvu-XXXXXX");
    ASSERT(vhu_test_mkdtemp(t.dir));
    snprintf(t.path, sizeof(t.path), "%s/fe.sock", t.dir);
    snprintf(vsock, sizeof(vsock), "%s/vfu.sock", t.dir);
    snprintf(spec, sizeof(spec), "vfio-user:%s", vsock);
    vvu_dev_opts_default(&o);
    o.max_vhost_queues = 8;
    o.shm_size = 64 << 20;
    o.socket_path = t.path;
    ASSERT_OK(vhu_loop_new(&dt.loop));
    ASSERT_OK(vvu_dev_new(dt.loop, &o, &t.dev));
    ASSERT_OK(vhu_vfu_server_new(dt.loop, vvu_dev_pci(t.dev), vsock, &srv));
    ASSERT_OK(pthread_create(&th, NULL, dev_thread_run, &dt));
    ASSERT_OK(vhu_loop_new(&t.loop));
    ASSERT_OK(vhu_rng_new(&ro, &t.d));
    ASSERT_OK(vhu_backend_new(t.d, t.loop, &t.b));
    ASSERT_OK(vhu_vvu_new(t.b, t.loop, spec, &t.vvu));
    ASSERT(!stats(&t).polled);
    fe = fe_open(&t, NULL);
    ASSERT(fe);
    ASSERT_OK(rng_start(fe, false));
    ASSERT_OK(rng_works(fe, 5));
    vhu_fe_free(fe);
    ASSERT_OK(fresh_rng(&t));
    ASSERT_EQ(stats(&t).sessions, 2);
    vhu_vvu_free(t.vvu);
    t.vvu = NULL;
    dt.stop = true;
    pthread_join(th, NULL);
    vhu_vfu_server_free(srv);
    vvu_dev_free(t.dev);
    t.dev = NULL;
    vhu_loop_free(dt.loop);
    tv_down(&t);
}

__attribute__((constructor)) static void log_setup(void)
{
    if (getenv("VHU_TEST_LOG"))
        vhu_log_set_sink(vhu_log_stderr_sink, NULL, VHU_LOG_DEBUG);
}
