/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The VVU device model driven by hand: the test is the driver (through pci_direct: config space,
 * BARs, DMA memory, MSI-X eventfds; rings with vhu/vqd.h) and the frontend (the frontend
 * library's message API over the device's unix socket), all on one thread: the frontend's
 * "wait for a reply" runs the device's loop and the driver's service routine.
 */
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "frontend/fe_msg.h"
#include "pci_direct.h"
#include "proto/vvu.h"
#include "vhu/log.h"
#include "vhu/loop.h"
#include "vhu/util.h"
#include "vhu/virtio.h"
#include "vhu/vqd.h"
#include "vhu_test.h"
#include "vvu/vvu_dev.h"

#define QSIZE 16
#define NRXBUF 8
#define NTXBUF 8
#define MAXQ 8
#define CFG_VEC 0
#define RXQ_VEC 1
#define TXQ_VEC 2
#define NOTIF_VEC 3

struct ring {
    struct vhu_vqd *vqd;
    void *ring;
    uint64_t ring_iova;
    uint8_t *bufs;
    uint64_t bufs_iova;
    unsigned nbufs;
    size_t rlen, blen;
};

struct drv {
    char dir[32], path[64];
    struct vhu_loop *loop;
    struct vvu_dev *dev;
    struct vhu_pci *pci;
    int irq[VVU_MSIX_VECTORS(MAXQ)];
    unsigned nvec;
    struct ring rx, tx;
    bool tx_busy[NTXBUF];
    /* what arrived on rxq */
    unsigned nmsgs;
    uint8_t last[VVU_MSG_MAX];
    uint32_t last_len;
    /* how the driver answers requests that want a reply */
    uint64_t reply_u64;
    bool auto_reply;
    bool ack;           /* negotiate VVU_F_FRONTEND_ACK */
};

struct fe_conn {
    int fd;
    struct drv *drv;
};

/* ---- driver side --------------------------------------------------------------------------- */

static int rd(struct drv *x, uint64_t off, void *v, uint32_t len)
{
    return x->pci->ops->bar_read(x->pci, VVU_BAR_REGS, off, v, len);
}

static int wr(struct drv *x, uint64_t off, uint64_t v, uint32_t len)
{
    return x->pci->ops->bar_write(x->pci, VVU_BAR_REGS, off, &v, len);
}

static uint64_t rdv(struct drv *x, uint64_t off, uint32_t len)
{
    uint64_t v = 0;

    rd(x, off, &v, len);
    return v;
}

#define COMMON(f) (VVU_COMMON_OFF + offsetof(struct vvu_common_cfg, f))
#define CSIZE(f) ((uint32_t)sizeof(((struct vvu_common_cfg *)0)->f))
#define CRD(x, f) rdv(x, COMMON(f), CSIZE(f))
#define CWR(x, f, v) wr(x, COMMON(f), v, CSIZE(f))

static uint32_t cfg32(struct drv *x, uint32_t off)
{
    uint32_t v = 0;

    x->pci->ops->cfg_read(x->pci, off, &v, 4);
    return v;
}

static uint8_t cfg8(struct drv *x, uint32_t off)
{
    uint8_t v = 0;

    x->pci->ops->cfg_read(x->pci, off, &v, 1);
    return v;
}

/* An eventfd fired (and is drained)? */
static bool fired(int fd)
{
    return vhu_eventfd_drain(fd) != 0;
}

static void pump(struct drv *x, int ms);

static int ring_init(struct drv *x, struct ring *r, unsigned nbufs, size_t blen)
{
    struct vhu_vqd_config c = {.num = QSIZE};
    int e;

    r->rlen = vhu_vqd_ring_size(QSIZE, false);
    r->nbufs = nbufs;
    r->blen = blen;
    e = x->pci->ops->dma_alloc(x->pci, r->rlen, &r->ring, &r->ring_iova);
    if (e < 0)
        return e;
    e = x->pci->ops->dma_alloc(x->pci, nbufs * blen, (void **)&r->bufs, &r->bufs_iova);
    if (e < 0)
        return e;
    c.ring = r->ring;
    c.ring_addr = r->ring_iova;
    return vhu_vqd_new(&c, &r->vqd);
}

static void ring_fini(struct drv *x, struct ring *r)
{
    vhu_vqd_free(r->vqd);
    if (r->bufs)
        x->pci->ops->dma_free(x->pci, r->bufs, r->nbufs * r->blen);
    if (r->ring)
        x->pci->ops->dma_free(x->pci, r->ring, r->rlen);
    memset(r, 0, sizeof(*r));
}

static void queue_setup(struct drv *x, unsigned q, struct ring *r, uint16_t vec)
{
    uint64_t desc, drv, dev;

    vhu_vqd_addrs(r->vqd, &desc, &drv, &dev);
    CWR(x, queue_select, q);
    CWR(x, queue_size, QSIZE);
    wr(x, COMMON(queue_desc_lo), desc, 8);   /* both halves in one access */
    CWR(x, queue_driver_lo, (uint32_t)drv);
    CWR(x, queue_driver_hi, drv >> 32);
    CWR(x, queue_device_lo, (uint32_t)dev);
    CWR(x, queue_device_hi, dev >> 32);
    CWR(x, queue_msix_vector, vec);
    CWR(x, queue_enable, 1);
}

static void rx_post(struct drv *x, unsigned i)
{
    struct vhu_vqd_seg s = {x->rx.bufs_iova + i * x->rx.blen, (uint32_t)x->rx.blen};

    vhu_vqd_add(x->rx.vqd, &s, 0, 1, x->rx.bufs + i * x->rx.blen);
}

static void notify(struct drv *x, unsigned q)
{
    wr(x, VVU_NOTIFY_OFF + VVU_NOTIFY_MULT * q, q, 2);
}

static void set_backend_up(struct drv *x, bool up)
{
    wr(x, VVU_DEVCFG_OFF + offsetof(struct vvu_config, status), up ? VVU_S_BACKEND_UP : 0, 4);
}

static uint32_t vvu_status(struct drv *x)
{
    return (uint32_t)rdv(x, VVU_DEVCFG_OFF + offsetof(struct vvu_config, status), 4);
}

/* Put a message on txq (whatever its contents). */
static int tx_send(struct drv *x, const void *msg, uint32_t len)
{
    for (unsigned i = 0; i < NTXBUF; i++) {
        struct vhu_vqd_seg s = {x->tx.bufs_iova + i * x->tx.blen, len};
        if (x->tx_busy[i])
            continue;
        if (len > x->tx.blen)
            return -EMSGSIZE;
        memcpy(x->tx.bufs + i * x->tx.blen, msg, len);
        x->tx_busy[i] = true;
        vhu_vqd_add(x->tx.vqd, &s, 1, 0, &x->tx_busy[i]);
        vhu_vqd_kick_prepare(x->tx.vqd);
        notify(x, VVU_TXQ);
        return 0;
    }
    return -ENOSPC;
}

static void reply_to(struct drv *x, const struct vhost_user_hdr *h)
{
    struct {
        struct vhost_user_hdr h;
        uint64_t u64;
    } __attribute__((packed)) r = {{h->request, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK, 8},
                                   x->reply_u64};

    tx_send(x, &r, sizeof(r));
}

/* What a driver's service routine does: reap rxq (answer what wants an answer), recycle rxq and
 * txq buffers. */
static void drv_service(struct drv *x)
{
    uint32_t len;
    void *c;
    bool posted = false;

    if (!x->rx.vqd || !x->tx.vqd)
        return;
    while ((c = vhu_vqd_get_used(x->tx.vqd, &len)) != NULL)
        *(bool *)c = false;
    while ((c = vhu_vqd_get_used(x->rx.vqd, &len)) != NULL) {
        struct vhost_user_hdr h;
        const struct vhu_msg_info *info;

        x->nmsgs++;
        x->last_len = VHU_MIN(len, (uint32_t)VVU_MSG_MAX);
        memcpy(x->last, c, x->last_len);
        memcpy(&h, c, sizeof(h));
        info = vhu_msg_info(h.request);
        if (x->auto_reply && info && (info->always_reply || (h.flags & VHOST_USER_NEED_REPLY_MASK)))
            reply_to(x, &h);
        rx_post(x, (unsigned)(((uint8_t *)c - x->rx.bufs) / x->rx.blen));
        posted = true;
    }
    if (posted) {
        vhu_vqd_kick_prepare(x->rx.vqd);
        notify(x, VVU_RXQ);
    }
}

static void pump(struct drv *x, int ms)
{
    vhu_loop_run_once(x->loop, ms);
    drv_service(x);
}

/* Walk the capability list: every cap of vvu.h where vvu.h says. */
static int check_caps(struct drv *x)
{
    unsigned seen = 0, msix = 0;

    for (uint8_t p = cfg8(x, 0x34); p; p = cfg8(x, p + 1u)) {
        uint8_t id = cfg8(x, p);
        if (id == 0x11) {
            uint32_t w0 = cfg32(x, p);
            msix = ((w0 >> 16) & 0x7ff) + 1;
            if (cfg32(x, p + 4u) != VVU_BAR_MSIX || cfg32(x, p + 8u) != (VVU_MSIX_PBA_OFF | VVU_BAR_MSIX))
                return -1;
            continue;
        }
        if (id != 0x09)
            return -2;
        uint8_t type = cfg8(x, p + 3u), bar = cfg8(x, p + 4u);
        uint32_t off = cfg32(x, p + 8u);
        seen |= 1u << type;
        switch (type) {
        case VVU_PCI_CAP_COMMON_CFG:
            if (bar != 0 || off != VVU_COMMON_OFF)
                return -3;
            break;
        case VVU_PCI_CAP_NOTIFY_CFG:
            if (off != VVU_NOTIFY_OFF || cfg32(x, p + 16u) != VVU_NOTIFY_MULT)
                return -4;
            break;
        case VVU_PCI_CAP_DOORBELL_CFG:
            if (off != VVU_DOORBELL_OFF || cfg32(x, p + 16u) != VVU_DOORBELL_MULT)
                return -5;
            break;
        case VVU_PCI_CAP_SHARED_MEMORY_CFG:
            if (bar != VVU_BAR_SHM || cfg8(x, p + 2u) != 24 ||
                ((uint64_t)cfg32(x, p + 20u) << 32 | cfg32(x, p + 12u)) != (1ull << 24))
                return -6;
            break;
        }
    }
    if (seen != 0x1fe || msix != VVU_MSIX_VECTORS(MAXQ))
        return -7;
    return 0;
}

/* Device up to DRIVER_OK with rxq/txq running, BACKEND_UP set. */
static int drv_start(struct drv *x)
{
    x->nvec = VVU_MSIX_VECTORS(MAXQ);
    if (x->pci->ops->irq_fds(x->pci, x->nvec, x->irq) < 0)
        return -1;
    CWR(x, device_status, 0);
    CWR(x, device_status, VHU_VIRTIO_CONFIG_S_ACKNOWLEDGE | VHU_VIRTIO_CONFIG_S_DRIVER);
    CWR(x, device_feature_select, 1);
    if (CRD(x, device_feature) != 1)
        return -2;
    CWR(x, driver_feature_select, 1);
    CWR(x, driver_feature, 1);
    if (x->ack) {
        CWR(x, device_feature_select, 0);
        if (!(CRD(x, device_feature) & (1u << VVU_F_FRONTEND_ACK)))
            return -2;
        CWR(x, driver_feature_select, 0);
        CWR(x, driver_feature, 1u << VVU_F_FRONTEND_ACK);
    }
    CWR(x, device_status, VHU_VIRTIO_CONFIG_S_ACKNOWLEDGE | VHU_VIRTIO_CONFIG_S_DRIVER |
                              VHU_VIRTIO_CONFIG_S_FEATURES_OK);
    if (!(CRD(x, device_status) & VHU_VIRTIO_CONFIG_S_FEATURES_OK))
        return -3;
    if (CRD(x, num_queues) != 2)
        return -4;
    CWR(x, msix_config, CFG_VEC);
    if (!x->rx.vqd && (ring_init(x, &x->rx, NRXBUF, VVU_MSG_MAX) < 0 ||
                       ring_init(x, &x->tx, NTXBUF, VVU_MSG_MAX) < 0))
        return -5;
    queue_setup(x, VVU_RXQ, &x->rx, RXQ_VEC);
    queue_setup(x, VVU_TXQ, &x->tx, TXQ_VEC);
    CWR(x, device_status, VHU_VIRTIO_CONFIG_S_ACKNOWLEDGE | VHU_VIRTIO_CONFIG_S_DRIVER |
                              VHU_VIRTIO_CONFIG_S_FEATURES_OK | VHU_VIRTIO_CONFIG_S_DRIVER_OK);
    for (unsigned i = 0; i < NRXBUF; i++)
        rx_post(x, i);
    vhu_vqd_kick_prepare(x->rx.vqd);
    notify(x, VVU_RXQ);
    set_backend_up(x, true);
    return 0;
}

/* After a reset: fresh driver rings on the same DMA memory, fresh vectors, start again. */
static int drv_restart(struct drv *x)
{
    struct vhu_vqd_config c = {.num = QSIZE, .ring = x->rx.ring, .ring_addr = x->rx.ring_iova};

    vhu_vqd_free(x->rx.vqd);
    vhu_vqd_free(x->tx.vqd);
    x->rx.vqd = x->tx.vqd = NULL;
    if (vhu_vqd_new(&c, &x->rx.vqd) < 0)
        return -1;
    c.ring = x->tx.ring;
    c.ring_addr = x->tx.ring_iova;
    if (vhu_vqd_new(&c, &x->tx.vqd) < 0)
        return -1;
    for (unsigned i = 0; i < x->nvec; i++)
        vhu_fd_close(&x->irq[i]);
    memset(x->tx_busy, 0, sizeof(x->tx_busy));
    return drv_start(x);
}

enum sock_mode { SOCK_PATH, SOCK_FD, SOCK_CLIENT };

static int drv_open_mode(struct drv *x, enum sock_mode mode, int *lfd);

static int drv_open(struct drv *x)
{
    return drv_open_mode(x, SOCK_PATH, NULL);
}

static int listen_at(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* SOCK_FD: the device serves a listening socket the test made (*lfd, the test's to close);
 * SOCK_CLIENT: the device connects to *lfd's path, the test accepts. */
static int drv_open_mode(struct drv *x, enum sock_mode mode, int *lfd)
{
    struct vvu_dev_opts o;

    memset(x, 0, sizeof(*x));
    for (unsigned i = 0; i < VHU_ARRAY_SIZE(x->irq); i++)
        x->irq[i] = -1;
    x->auto_reply = true;
    x->reply_u64 = 0x1234;
    snprintf(x->dir, sizeof(x->dir), "/tmp/vhu-vvu-dev-XXXXXX");
    if (!vhu_test_mkdtemp(x->dir))
        return -1;
    snprintf(x->path, sizeof(x->path), "%s/fe.sock", x->dir);
    vvu_dev_opts_default(&o);
    o.max_vhost_queues = MAXQ;
    o.shm_size = 1ull << 24;
    o.socket_path = x->path;
    if (mode != SOCK_PATH) {
        *lfd = listen_at(x->path);
        if (*lfd < 0)
            return -3;
    }
    if (mode == SOCK_FD) {
        o.socket_path = NULL;
        o.socket_fd = *lfd;
    }
    o.client = mode == SOCK_CLIENT;
    o.reconnect_ms = 20;
    if (vhu_loop_new(&x->loop) < 0 || vvu_dev_new(x->loop, &o, &x->dev) < 0 ||
        vhu_pci_direct_open(vvu_dev_pci(x->dev), &x->pci) < 0)
        return -2;
    return 0;
}

static void drv_close(struct drv *x)
{
    if (x->pci) {
        ring_fini(x, &x->rx);
        ring_fini(x, &x->tx);
        x->pci->ops->free(x->pci);
    }
    for (unsigned i = 0; i < x->nvec; i++)
        vhu_fd_close(&x->irq[i]);
    vvu_dev_free(x->dev);
    vhu_loop_free(x->loop);
    unlink(x->path);
    rmdir(x->dir);
}

/* ---- frontend side ------------------------------------------------------------------------- */

static int conn_send(void *conn, const struct vhu_msg *m)
{
    return vhu_msg_send(((struct fe_conn *)conn)->fd, m);
}

/* Waiting for a reply runs the device and the driver. */
static int conn_recv(void *conn, struct vhu_msg *m, int timeout_ms)
{
    struct fe_conn *c = conn;
    uint64_t end = vhu_now_ns() + 2000000000ull;

    while (vhu_now_ns() < end) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, 0) == 1)
            return vhu_msg_recv_timeout(c->fd, m, 1000);
        pump(c->drv, 5);
    }
    return -ETIMEDOUT;
}

static void conn_close(void *conn)
{
    struct fe_conn *c = conn;

    vhu_fd_close(&c->fd);
    free(c);
}

static const struct vhu_fe_conn_ops conn_ops = {conn_send, conn_recv, conn_close};

static int sock_connect(struct drv *x)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", x->path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static bool frontend_down(struct drv *x);

/* A frontend connected (and accepted: FRONTEND_UP) once the previous one is gone. */
static struct vhu_fe *fe_open(struct drv *x, int *fd_out)
{
    struct fe_conn *c;
    struct vhu_fe *fe = NULL;

    if (!frontend_down(x))
        return NULL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->drv = x;
    c->fd = sock_connect(x);
    if (c->fd < 0 || vhu_fe_new(&conn_ops, c, &fe) < 0) {
        if (c->fd >= 0)
            close(c->fd);
        free(c);
        return NULL;
    }
    for (int i = 0; i < 100 && !(vvu_status(x) & VVU_S_FRONTEND_UP); i++)
        pump(x, 5);
    if (fd_out)
        *fd_out = c->fd;
    return fe;
}

static int fe_get_u64(struct vhu_fe *fe, uint32_t req, uint64_t *v)
{
    struct vhu_msg m, reply;
    int r;

    vhu_msg_init(&m, req, VHOST_USER_VERSION, 0);
    r = vhu_fe_raw(fe, &m, &reply);
    if (r < 0)
        return r;
    if (reply.hdr.size != 8)
        return -EPROTO;
    *v = reply.payload.u64;
    return 0;
}

static int fe_set_u64(struct vhu_fe *fe, uint32_t req, uint64_t v, int fd)
{
    struct vhu_msg m, reply;

    vhu_msg_init(&m, req, VHOST_USER_VERSION, 8);
    m.payload.u64 = v;
    if (fd >= 0) {
        m.fds[0] = fd;
        m.nfds = 1;
    }
    return vhu_fe_raw(fe, &m, &reply);
}

/* Pump until the driver has seen n messages in total (or give up). */
static bool wait_msgs(struct drv *x, unsigned n)
{
    for (int i = 0; i < 200 && x->nmsgs < n; i++)
        pump(x, 5);
    return x->nmsgs >= n;
}

/* The device hung up on fd (EOF seen)? */
static bool hung_up(struct drv *x, int fd)
{
    for (int i = 0; i < 100; i++) {
        char c;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 0) == 1 && recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK) == 0)
            return true;
        pump(x, 5);
    }
    return false;
}

static bool frontend_down(struct drv *x)
{
    for (int i = 0; i < 100 && (vvu_status(x) & VVU_S_FRONTEND_UP); i++)
        pump(x, 5);
    return !(vvu_status(x) & VVU_S_FRONTEND_UP);
}

/* A fresh frontend connects and gets a reply: the device still serves. */
static int fresh_frontend_works(struct drv *x)
{
    struct vhu_fe *fe;
    uint64_t v = 0;
    int r;

    if (!frontend_down(x))
        return -1;
    fe = fe_open(x, NULL);
    if (!fe)
        return -2;
    x->reply_u64 = 0xabcd;
    r = fe_get_u64(fe, VHOST_USER_GET_FEATURES, &v);
    vhu_fe_free(fe);
    if (r < 0)
        return r;
    return v == 0xabcd ? 0 : -3;
}

#define SETUP(x)                                                                     \
    int fds_before__ = vhu_fd_count_self();                                          \
    struct drv x;                                                                    \
    ASSERT_EQ(drv_open(&x), 0);                                                      \
    ASSERT_EQ(drv_start(&x), 0)

#define TEARDOWN(x)                                                                  \
    do {                                                                             \
        drv_close(&x);                                                               \
        ASSERT_EQ(vhu_fd_count_self(), fds_before__);                                \
    } while (0)

/* ---- tests --------------------------------------------------------------------------------- */

TEST(config_space)
{
    int fds_before__ = vhu_fd_count_self();
    struct drv x;
    uint32_t v, ones = 0xffffffffu;

    ASSERT_EQ(drv_open(&x), 0);
    ASSERT_EQ(cfg32(&x, 0), VVU_PCI_VENDOR_ID | (uint32_t)VVU_PCI_DEVICE_ID << 16);
    ASSERT_EQ(cfg32(&x, 8) >> 8, VVU_PCI_CLASS << 8);
    ASSERT_EQ(cfg8(&x, 8), VVU_PCI_REVISION);
    ASSERT_EQ(check_caps(&x), 0);
    /* BAR sizing: all-ones reads back the size mask with the type bits */
    x.pci->ops->cfg_write(x.pci, 0x10, &ones, 4);
    ASSERT_EQ(cfg32(&x, 0x10), ~(uint32_t)(VVU_BAR_REGS_SIZE - 1));
    x.pci->ops->cfg_write(x.pci, 0x14, &ones, 4);
    ASSERT_EQ(cfg32(&x, 0x14), ~(uint32_t)(VVU_BAR_MSIX_SIZE - 1));
    x.pci->ops->cfg_write(x.pci, 0x18, &ones, 4);
    x.pci->ops->cfg_write(x.pci, 0x1c, &ones, 4);
    ASSERT_EQ(cfg32(&x, 0x18), ~(uint32_t)((1u << 24) - 1) | 0xc);
    ASSERT_EQ(cfg32(&x, 0x1c), 0xffffffffu);
    ASSERT_EQ(cfg32(&x, 0x20), 0);
    v = 0xfebf0000;
    x.pci->ops->cfg_write(x.pci, 0x10, &v, 4);
    ASSERT_EQ(cfg32(&x, 0x10), 0xfebf0000);
    /* command: memory + bus master kept, the rest read-only */
    v = 0xffff;
    x.pci->ops->cfg_write(x.pci, 4, &v, 2);
    ASSERT_EQ(cfg32(&x, 4) & 0xffff, 0x0406);
    /* the pci_cfg window: BAR0 common cfg num_queues through config space */
    for (uint8_t p = cfg8(&x, 0x34); p; p = cfg8(&x, p + 1u)) {
        if (cfg8(&x, p) != 0x09 || cfg8(&x, p + 3u) != VVU_PCI_CAP_PCI_CFG)
            continue;
        uint8_t bar = 0;
        uint32_t off = COMMON(num_queues), len = 2;
        x.pci->ops->cfg_write(x.pci, p + 4u, &bar, 1);
        x.pci->ops->cfg_write(x.pci, p + 8u, &off, 4);
        x.pci->ops->cfg_write(x.pci, p + 12u, &len, 4);
        ASSERT_EQ(cfg32(&x, p + 16u) & 0xffff, 2);
    }
    /* device cfg: max_vhost_queues */
    ASSERT_EQ(rdv(&x, VVU_DEVCFG_OFF + 4, 4), MAXQ);
    /* FEATURES_OK refused for features not offered */
    CWR(&x, driver_feature_select, 0);
    CWR(&x, driver_feature, 1);
    CWR(&x, device_status, VHU_VIRTIO_CONFIG_S_FEATURES_OK);
    ASSERT_EQ(CRD(&x, device_status) & VHU_VIRTIO_CONFIG_S_FEATURES_OK, 0);
    TEARDOWN(x);
}

TEST(relay_replies)
{
    SETUP(x);
    struct vhu_fe *fe = fe_open(&x, NULL);
    uint64_t v = 0;

    ASSERT(fe);
    ASSERT(vvu_status(&x) & VVU_S_FRONTEND_UP);
    ASSERT(fired(x.irq[CFG_VEC]));
    /* GET_FEATURES arrives on rxq, the driver's reply reaches the frontend */
    x.reply_u64 = 0x140000000ull;
    ASSERT_OK(fe_get_u64(fe, VHOST_USER_GET_FEATURES, &v));
    ASSERT_EQ(v, 0x140000000ull);
    ASSERT_EQ(x.last_len, 12);
    ASSERT_EQ(((struct vhost_user_hdr *)x.last)->request, VHOST_USER_GET_FEATURES);
    ASSERT(fired(x.irq[RXQ_VEC]));
    ASSERT(fired(x.irq[TXQ_VEC]));
    /* the protocol features reply is masked to what the relay can carry */
    x.reply_u64 = ~0ull;
    ASSERT_OK(fe_get_u64(fe, VHOST_USER_GET_PROTOCOL_FEATURES, &v));
    ASSERT_EQ(v, VVU_PROTOCOL_FEATURES_RELAYED);
    ASSERT_OK(fe_set_u64(fe, VHOST_USER_SET_PROTOCOL_FEATURES, VVU_PROTOCOL_FEATURES_RELAYED, -1));
    ASSERT(wait_msgs(&x, 3));
    x.reply_u64 = 509;
    ASSERT_OK(fe_get_u64(fe, VHOST_USER_GET_MAX_MEM_SLOTS, &v));
    ASSERT_EQ(v, 32);
    struct vvu_dev_stats s;
    vvu_dev_stats(x.dev, &s);
    ASSERT_EQ(s.msgs_to_driver, 4);
    ASSERT_EQ(s.msgs_to_frontend, 3);
    ASSERT_EQ(s.frontend_sessions, 1);
    vhu_fe_free(fe);
    ASSERT(frontend_down(&x));
    ASSERT(fired(x.irq[CFG_VEC]));
    ASSERT_OK(fresh_frontend_works(&x));
    TEARDOWN(x);
}

static int memfd_sized(size_t len)
{
    int fd = memfd_create("vvu-test-mem", MFD_CLOEXEC | MFD_ALLOW_SEALING);

    if (fd < 0 || ftruncate(fd, (off_t)len) < 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0)
        return -1;
    return fd;
}

static void mem_table_msg(struct vhu_msg *m, int fd1, int fd2)
{
    vhu_msg_init(m, VHOST_USER_SET_MEM_TABLE, VHOST_USER_VERSION, 8 + 2 * 32);
    m->payload.memory.nregions = 2;
    m->payload.memory.regions[0] = (struct vhost_user_memory_region){0, 1 << 20, 0x7f0000000000, 0};
    m->payload.memory.regions[1] =
        (struct vhost_user_memory_region){1 << 20, 1 << 20, 0x7f0000100000, 1 << 20};
    m->fds[0] = fd1;
    m->fds[1] = fd2;
    m->nfds = 2;
}

TEST(mem_table_window)
{
    SETUP(x);
    int mfd = memfd_sized(2 << 20);
    struct vhu_fe *fe = fe_open(&x, NULL);
    struct vhu_msg m, reply;
    struct vhost_user_memory mem;
    void *win = NULL;
    uint8_t *file;
    uint32_t v = 0;

    ASSERT(fe && mfd >= 0);
    file = mmap(NULL, 2 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    ASSERT(file != MAP_FAILED);
    mem_table_msg(&m, mfd, mfd);
    ASSERT_OK(vhu_fe_raw(fe, &m, &reply));
    ASSERT(wait_msgs(&x, 1));
    /* on rxq as sent: mmap_offset is the window offset */
    ASSERT_EQ(x.last_len, 12 + 8 + 64);
    memcpy(&mem, x.last + 12, 8 + 64);
    ASSERT_EQ(mem.nregions, 2);
    ASSERT_EQ(mem.regions[1].mmap_offset, 1 << 20);
    /* the window maps the file */
    ASSERT_OK(x.pci->ops->bar_map(x.pci, VVU_BAR_SHM, 0, 2 << 20, &win));
    ((uint8_t *)win)[(1 << 20) + 5] = 0x5a;
    ASSERT_EQ(file[(1 << 20) + 5], 0x5a);
    file[100] = 0xa5;
    ASSERT_EQ(((uint8_t *)win)[100], 0xa5);
    /* and so do BAR2 accesses through the device */
    ASSERT_OK(x.pci->ops->bar_read(x.pci, VVU_BAR_SHM, 100, &v, 1));
    ASSERT_EQ(v, 0xa5);
    v = 0x77;
    ASSERT_OK(x.pci->ops->bar_write(x.pci, VVU_BAR_SHM, 200, &v, 4));
    ASSERT_EQ(file[200], 0x77);
    x.pci->ops->bar_unmap(x.pci, win, 2 << 20);
    munmap(file, 2 << 20);
    close(mfd);
    vhu_fe_free(fe);
    ASSERT(frontend_down(&x));
    /* window gone with the frontend */
    ASSERT_ERR(-ENOENT, x.pci->ops->bar_map(x.pci, VVU_BAR_SHM, 0, 4096, &win));
    TEARDOWN(x);
}

TEST(kicks_and_doorbells)
{
    SETUP(x);
    int kick = vhu_eventfd_new(), call = vhu_eventfd_new(), iofd = -1;
    struct vhu_fe *fe = fe_open(&x, NULL);
    struct vvu_dev_stats s;

    ASSERT(fe && kick >= 0 && call >= 0);
    ASSERT_OK(fe_set_u64(fe, VHOST_USER_SET_VRING_KICK, 1, kick));
    ASSERT_OK(fe_set_u64(fe, VHOST_USER_SET_VRING_CALL, 1, call));
    ASSERT(wait_msgs(&x, 2));
    /* the fd is not relayed: the message is */
    ASSERT_EQ(x.last_len, 20);
    /* kick -> notification vector */
    wr(&x, VVU_NOTIFICATION_OFF, 1, 2);
    wr(&x, VVU_NOTIFICATION_OFF + 2, NOTIF_VEC + 1, 2);
    ASSERT_EQ(rdv(&x, VVU_NOTIFICATION_OFF + 2, 2), NOTIF_VEC + 1);
    vhu_eventfd_signal(kick);
    for (int i = 0; i < 20 && !fired(x.irq[NOTIF_VEC + 1]); i++)
        pump(&x, 5);
    vvu_dev_stats(x.dev, &s);
    ASSERT_EQ(s.kicks_relayed, 1);
    /* doorbell -> call fd, by a register write of any width and by the io fd */
    wr(&x, VVU_DOORBELL_OFF + VVU_DOORBELL_MULT * 1, 0, 1);
    ASSERT(fired(call));
    wr(&x, VVU_DOORBELL_OFF + VVU_DOORBELL_MULT * 1, 7, 4);
    ASSERT(fired(call));
    ASSERT_OK(x.pci->ops->io_fd(x.pci, VVU_BAR_REGS, VVU_DOORBELL_OFF + VVU_DOORBELL_MULT * 1, 4,
                                &iofd));
    vhu_eventfd_signal(iofd);
    ASSERT(fired(call));
    close(iofd);
    /* no call fd on vring 0: no io fd for it */
    ASSERT_ERR(-ENOTSUP, x.pci->ops->io_fd(x.pci, VVU_BAR_REGS, VVU_DOORBELL_OFF, 4, &iofd));
    vhu_fe_free(fe);
    close(kick);
    close(call);
    ASSERT(frontend_down(&x));
    TEARDOWN(x);
}

TEST(backend_down_disconnects)
{
    SETUP(x);
    int fd;
    struct vhu_fe *fe = fe_open(&x, &fd);

    ASSERT(fe);
    ASSERT(vvu_status(&x) & VVU_S_FRONTEND_UP);
    fired(x.irq[CFG_VEC]);
    set_backend_up(&x, false);
    ASSERT(hung_up(&x, fd));
    ASSERT_EQ(vvu_status(&x) & VVU_S_FRONTEND_UP, 0);
    ASSERT(fired(x.irq[CFG_VEC]));
    vhu_fe_free(fe);
    /* not served while down: a frontend waits in the backlog until BACKEND_UP */
    fd = sock_connect(&x);
    ASSERT(fd >= 0);
    pump(&x, 10);
    ASSERT_EQ(vvu_status(&x) & VVU_S_FRONTEND_UP, 0);
    set_backend_up(&x, true);
    pump(&x, 10);
    ASSERT(vvu_status(&x) & VVU_S_FRONTEND_UP);
    close(fd);
    ASSERT_OK(fresh_frontend_works(&x));
    /* a device reset also ends the session */
    struct vhu_fe *fe2 = fe_open(&x, &fd);
    ASSERT(fe2);
    CWR(&x, device_status, 0);
    ASSERT(hung_up(&x, fd));
    vhu_fe_free(fe2);
    TEARDOWN(x);
}

TEST(bad_register_accesses)
{
    SETUP(x);
    struct vvu_dev_stats s0, s1;
    int call = vhu_eventfd_new();
    struct vhu_fe *fe = fe_open(&x, NULL);

    ASSERT(fe);
    ASSERT_OK(fe_set_u64(fe, VHOST_USER_SET_VRING_CALL, MAXQ - 1, call));
    ASSERT(wait_msgs(&x, 1));
    vvu_dev_stats(x.dev, &s0);
    /* doorbell past max_vhost_queues */
    wr(&x, VVU_DOORBELL_OFF + VVU_DOORBELL_MULT * MAXQ, 1, 4);
    wr(&x, VVU_DOORBELL_OFF + VVU_DOORBELL_MULT * (MAXQ - 1), 1, 8);
    ASSERT(!fired(call));
    /* notification_select out of range: ignored */
    wr(&x, VVU_NOTIFICATION_OFF, 2, 2);
    wr(&x, VVU_NOTIFICATION_OFF, MAXQ, 2);
    ASSERT_EQ(rdv(&x, VVU_NOTIFICATION_OFF, 2), 2);
    /* queue_select out of range: the queue fields read 0, writes go nowhere */
    CWR(&x, queue_select, 7);
    ASSERT_EQ(CRD(&x, queue_size), 0);
    CWR(&x, queue_size, 8);
    CWR(&x, queue_enable, 1);
    ASSERT_EQ(CRD(&x, queue_enable), 0);
    CWR(&x, queue_select, 0);
    ASSERT_EQ(CRD(&x, queue_size), QSIZE);
    /* FRONTEND_UP is the device's */
    wr(&x, VVU_DEVCFG_OFF, VVU_S_BACKEND_UP, 4);
    ASSERT(vvu_status(&x) & VVU_S_FRONTEND_UP);
    fe_set_u64(fe, VHOST_USER_SET_VRING_CALL, (MAXQ - 1) | VHOST_USER_VRING_NOFD_MASK, -1);
    ASSERT(wait_msgs(&x, 2));
    wr(&x, VVU_DEVCFG_OFF, VVU_S_BACKEND_UP | VVU_S_FRONTEND_UP, 4);
    wr(&x, VVU_DEVCFG_OFF, VVU_S_FRONTEND_UP | VVU_S_BACKEND_UP, 4);
    ASSERT(vvu_status(&x) & VVU_S_FRONTEND_UP);
    /* out of any register, odd widths, past the BAR */
    ASSERT_EQ(rdv(&x, 0x0f00, 4), 0xffffffffu);
    wr(&x, VVU_COMMON_OFF + 1, 0, 2);
    vvu_dev_stats(x.dev, &s1);
    ASSERT(s1.bad_accesses >= s0.bad_accesses + 8);
    /* read-only fields */
    CWR(&x, num_queues, 9);
    ASSERT_EQ(CRD(&x, num_queues), 2);
    vhu_fe_free(fe);
    close(call);
    ASSERT_OK(fresh_frontend_works(&x));
    TEARDOWN(x);
}

TEST(bad_txq_messages)
{
    SETUP(x);
    struct vhu_fe *fe = fe_open(&x, NULL);
    struct vvu_dev_stats s;
    uint8_t big[VVU_MSG_MAX + 16] = {0};
    struct vhost_user_hdr h = {VHOST_USER_GET_FEATURES, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK, 8};
    uint64_t v;

    ASSERT(fe);
    x.tx.blen = sizeof(big);   /* the buffers are VVU_MSG_MAX: two of them make room */
    /* oversized: header says 4108 bytes follow and they do */
    h.size = sizeof(big) - 12;
    memcpy(big, &h, sizeof(h));
    x.tx.blen = VVU_MSG_MAX;
    {
        struct vhu_vqd_seg segs[2] = {{x.tx.bufs_iova, VVU_MSG_MAX},
                                      {x.tx.bufs_iova + VVU_MSG_MAX, 16}};
        memcpy(x.tx.bufs, big, VVU_MSG_MAX);
        x.tx_busy[0] = x.tx_busy[1] = true;
        vhu_vqd_add(x.tx.vqd, segs, 2, 0, &x.tx_busy[0]);
        vhu_vqd_kick_prepare(x.tx.vqd);
        notify(&x, VVU_TXQ);
        pump(&x, 0);
        x.tx_busy[1] = false;
    }
    /* size mismatch */
    h.size = 16;
    memcpy(big, &h, sizeof(h));
    ASSERT_OK(tx_send(&x, big, 12 + 8));
    /* short of a header */
    ASSERT_OK(tx_send(&x, big, 6));
    /* not a reply */
    h.size = 8;
    h.flags = VHOST_USER_VERSION;
    memcpy(big, &h, sizeof(h));
    ASSERT_OK(tx_send(&x, big, 12 + 8));
    pump(&x, 0);
    vvu_dev_stats(x.dev, &s);
    ASSERT_EQ(s.bad_accesses, 3);
    ASSERT_EQ(s.dropped_backend_reqs, 1);
    ASSERT_EQ(s.msgs_to_frontend, 0);
    /* the session goes on */
    x.reply_u64 = 42;
    ASSERT_OK(fe_get_u64(fe, VHOST_USER_GET_FEATURES, &v));
    ASSERT_EQ(v, 42);
    vhu_fe_free(fe);
    ASSERT_OK(fresh_frontend_works(&x));
    TEARDOWN(x);
}

TEST(rings_outside_dma)
{
    int fds_before__ = vhu_fd_count_self();
    struct drv x;

    ASSERT_EQ(drv_open(&x), 0);
    ASSERT_EQ(drv_start(&x), 0);
    fired(x.irq[CFG_VEC]);
    /* again, with rxq's used ring far outside DMA memory */
    CWR(&x, device_status, 0);
    CWR(&x, device_status, VHU_VIRTIO_CONFIG_S_ACKNOWLEDGE | VHU_VIRTIO_CONFIG_S_DRIVER);
    CWR(&x, driver_feature_select, 1);
    CWR(&x, driver_feature, 1);
    CWR(&x, device_status, VHU_VIRTIO_CONFIG_S_ACKNOWLEDGE | VHU_VIRTIO_CONFIG_S_DRIVER |
                               VHU_VIRTIO_CONFIG_S_FEATURES_OK);
    CWR(&x, msix_config, CFG_VEC);
    CWR(&x, queue_select, VVU_RXQ);
    CWR(&x, queue_device_lo, 0x10000000);
    CWR(&x, queue_device_hi, 0x7);
    CWR(&x, queue_enable, 1);
    CWR(&x, device_status, VHU_VIRTIO_CONFIG_S_ACKNOWLEDGE | VHU_VIRTIO_CONFIG_S_DRIVER |
                               VHU_VIRTIO_CONFIG_S_FEATURES_OK | VHU_VIRTIO_CONFIG_S_DRIVER_OK);
    ASSERT(CRD(&x, device_status) & VHU_VIRTIO_CONFIG_S_NEEDS_RESET);
    ASSERT(fired(x.irq[CFG_VEC]));
    set_backend_up(&x, true);
    /* not served while NEEDS_RESET */
    int fd = sock_connect(&x);
    pump(&x, 10);
    ASSERT_EQ(vvu_status(&x) & VVU_S_FRONTEND_UP, 0);
    close(fd);
    pump(&x, 10);
    /* a reset and a proper start: serving again (the stale connection is dropped) */
    ASSERT_EQ(drv_restart(&x), 0);
    ASSERT_OK(fresh_frontend_works(&x));
    TEARDOWN(x);
}

static void expect_disconnect(struct drv *x, struct vhu_msg *m, bool raw_oversized)
{
    int fd;
    struct vhu_fe *fe = fe_open(x, &fd);
    struct vhu_msg reply;

    ASSERT(fe);
    if (raw_oversized) {
        struct vhost_user_hdr h = {VHOST_USER_SET_CONFIG, VHOST_USER_VERSION, 5000};
        ASSERT_EQ(send(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
    } else {
        vhu_fe_raw(fe, m, &reply);
    }
    ASSERT(hung_up(x, fd));
    ASSERT(frontend_down(x));
    vhu_fe_free(fe);
    ASSERT_OK(fresh_frontend_works(x));
}

TEST(bad_frontends)
{
    SETUP(x);
    struct vhu_msg m;
    int fd1 = memfd_sized(2 << 20), fd2 = memfd_sized(2 << 20);

    ASSERT(fd1 >= 0 && fd2 >= 0);
    /* a message larger than VVU_MSG_MAX */
    expect_disconnect(&x, NULL, true);
    /* SET_LOG_BASE: its fd cannot be relayed (LOG_SHMFD is not even offered) */
    vhu_msg_init(&m, VHOST_USER_SET_LOG_BASE, VHOST_USER_VERSION, sizeof(struct vhost_user_log));
    m.fds[0] = fd1;
    m.nfds = 1;
    expect_disconnect(&x, &m, false);
    /* regions from two files */
    mem_table_msg(&m, fd1, fd2);
    expect_disconnect(&x, &m, false);
    /* a region past the window */
    mem_table_msg(&m, fd1, fd1);
    m.payload.memory.regions[1].mmap_offset = 1ull << 24;
    expect_disconnect(&x, &m, false);
    /* protocol features outside the relayed set */
    vhu_msg_init(&m, VHOST_USER_SET_PROTOCOL_FEATURES, VHOST_USER_VERSION, 8);
    m.payload.u64 = 1ull << VHOST_USER_PROTOCOL_F_BACKEND_REQ;
    expect_disconnect(&x, &m, false);
    /* a kick index past max_vhost_queues */
    vhu_msg_init(&m, VHOST_USER_SET_VRING_KICK, VHOST_USER_VERSION, 8);
    m.payload.u64 = MAXQ | VHOST_USER_VRING_NOFD_MASK;
    expect_disconnect(&x, &m, false);
    /* a kick fd that is not an eventfd */
    vhu_msg_init(&m, VHOST_USER_SET_VRING_KICK, VHOST_USER_VERSION, 8);
    m.fds[0] = fd1;
    m.nfds = 1;
    expect_disconnect(&x, &m, false);
    close(fd1);
    close(fd2);
    struct vvu_dev_stats s;
    vvu_dev_stats(x.dev, &s);
    ASSERT_EQ(s.frontend_sessions, 14);
    TEARDOWN(x);
}

/* No rxq buffer: the message is held, the socket not read; posting buffers delivers it. */
TEST(backpressure)
{
    SETUP(x);
    struct vhu_fe *fe = fe_open(&x, NULL);

    ASSERT(fe);
    x.auto_reply = false;
    for (unsigned i = 0; i < NRXBUF + 3; i++)
        ASSERT_OK(fe_set_u64(fe, VHOST_USER_SET_FEATURES, i, -1));
    /* the driver does not recycle: only NRXBUF arrive */
    for (int i = 0; i < 20; i++)
        vhu_loop_run_once(x.loop, 5);
    {
        uint32_t len;
        unsigned n = 0;
        while (vhu_vqd_get_used(x.rx.vqd, &len))
            n++;
        ASSERT_EQ(n, NRXBUF);
        for (unsigned i = 0; i < NRXBUF; i++)
            rx_post(&x, i);
        vhu_vqd_kick_prepare(x.rx.vqd);
        notify(&x, VVU_RXQ);
    }
    x.nmsgs = 0;
    ASSERT(wait_msgs(&x, 3));
    ASSERT_EQ(x.nmsgs, 3);
    ASSERT_EQ(((uint64_t *)(x.last + 12))[0], NRXBUF + 2);
    vhu_fe_free(fe);
    x.auto_reply = true;
    ASSERT_OK(fresh_frontend_works(&x));
    TEARDOWN(x);
}

/* The device as a client: it connects once the driver is up, and again after the frontend
 * hangs up (reconnect_ms). */
TEST(client_reconnects)
{
    int fds_before__ = vhu_fd_count_self();
    struct drv x;
    int lfd = -1, c = -1;

    ASSERT_EQ(drv_open_mode(&x, SOCK_CLIENT, &lfd), 0);
    pump(&x, 30);
    ASSERT(accept4(lfd, NULL, NULL, SOCK_CLOEXEC) < 0);   /* not before the driver is up */
    ASSERT_EQ(drv_start(&x), 0);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 100 && (c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0; i++)
            pump(&x, 5);
        ASSERT(c >= 0);
        ASSERT(vvu_status(&x) & VVU_S_FRONTEND_UP);
        struct fe_conn *fc = calloc(1, sizeof(*fc));
        struct vhu_fe *fe;
        uint64_t v = 0;
        fc->fd = c;
        fc->drv = &x;
        ASSERT_OK(vhu_fe_new(&conn_ops, fc, &fe));
        x.reply_u64 = 7 + (uint64_t)round;
        ASSERT_OK(fe_get_u64(fe, VHOST_USER_GET_FEATURES, &v));
        ASSERT_EQ(v, 7 + (uint64_t)round);
        vhu_fe_free(fe);
        ASSERT(frontend_down(&x));
    }
    close(lfd);
    TEARDOWN(x);
}

/*
 * A frontend leaves a message on rxq and goes; the next one connects at once and asks. Only the
 * device runs meanwhile (the driver has not looked). With VVU_F_FRONTEND_ACK the next frontend
 * is taken only after the driver has cleared and set BACKEND_UP, so all that rxq holds until
 * then is the old frontend's; without it the device takes the next one at once, and the two
 * frontends' messages could sit on rxq together with nothing to tell them apart.
 */
static void next_frontend(bool ack)
{
    int fds_before__ = vhu_fd_count_self();
    struct vhu_msg m, reply;
    struct vhu_fe *fe;
    struct drv x;
    unsigned n = 0;
    uint32_t len;
    void *c;
    int b;

    ASSERT_EQ(drv_open(&x), 0);
    x.ack = ack;
    ASSERT_EQ(drv_start(&x), 0);
    fe = fe_open(&x, NULL);
    ASSERT(fe);
    ASSERT_OK(fe_set_u64(fe, VHOST_USER_SET_FEATURES, 0x1234, -1)); /* no reply wanted */
    vhu_fe_free(fe);
    for (int i = 0; i < 100 && (vvu_status(&x) & VVU_S_FRONTEND_UP); i++)
        vhu_loop_run_once(x.loop, 5);
    ASSERT(!(vvu_status(&x) & VVU_S_FRONTEND_UP));
    b = sock_connect(&x);
    ASSERT(b >= 0);
    vhu_msg_init(&m, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, 0);
    ASSERT_OK(vhu_msg_send(b, &m));
    for (int i = 0; i < 20; i++)
        vhu_loop_run_once(x.loop, 5);
    if (!ack) {
        /* taken at once: its message is on rxq right behind the old one's */
        ASSERT(vvu_status(&x) & VVU_S_FRONTEND_UP);
        close(b);
        ASSERT(frontend_down(&x));
        TEARDOWN(x);
        return;
    }
    ASSERT(!(vvu_status(&x) & VVU_S_FRONTEND_UP));
    /* rxq holds the old frontend's message and nothing else */
    while ((c = vhu_vqd_get_used(x.rx.vqd, &len)) != NULL) {
        struct vhost_user_hdr h;
        memcpy(&h, c, sizeof(h));
        ASSERT_EQ(h.request, VHOST_USER_SET_FEATURES);
        rx_post(&x, (unsigned)(((uint8_t *)c - x.rx.bufs) / x.rx.blen));
        n++;
    }
    ASSERT_EQ(n, 1);
    vhu_vqd_kick_prepare(x.rx.vqd);
    notify(&x, VVU_RXQ);
    /* the driver is done with it: the next frontend is taken and answered */
    set_backend_up(&x, false);
    set_backend_up(&x, true);
    x.auto_reply = true;
    x.reply_u64 = 0x77;
    for (int i = 0; i < 200; i++) {
        struct pollfd p = {.fd = b, .events = POLLIN};
        if (poll(&p, 1, 0) == 1)
            break;
        pump(&x, 5);
    }
    ASSERT(vvu_status(&x) & VVU_S_FRONTEND_UP);
    ASSERT_OK(vhu_msg_recv_timeout(b, &reply, 1000));
    ASSERT_EQ(reply.hdr.request, VHOST_USER_GET_FEATURES);
    ASSERT_EQ(reply.payload.u64, 0x77);
    close(b);
    ASSERT(frontend_down(&x));
    set_backend_up(&x, false); /* this driver's ack: nothing was left */
    set_backend_up(&x, true);
    ASSERT_OK(fresh_frontend_works(&x));
    TEARDOWN(x);
}

TEST(next_frontend_after_ack) { next_frontend(true); }
TEST(next_frontend_without_ack) { next_frontend(false); }

/* A listening socket given by fd. */
TEST(socket_fd)
{
    int fds_before__ = vhu_fd_count_self();
    struct drv x;
    int lfd = -1;

    ASSERT_EQ(drv_open_mode(&x, SOCK_FD, &lfd), 0);
    ASSERT_EQ(drv_start(&x), 0);
    ASSERT_OK(fresh_frontend_works(&x));
    close(lfd);
    TEARDOWN(x);
}

static void mem_reg_msg(struct vhu_msg *m, uint32_t req, uint64_t off, int fd)
{
    vhu_msg_init(m, req, VHOST_USER_VERSION, sizeof(struct vhost_user_mem_reg));
    m->payload.memreg.region =
        (struct vhost_user_memory_region){off, 1 << 20, 0x7f0000000000 + off, off};
    if (fd >= 0) {
        m->fds[0] = fd;
        m->nfds = 1;
    }
}

TEST(add_rem_regions)
{
    SETUP(x);
    int mfd = memfd_sized(4 << 20), other = memfd_sized(1 << 20);
    struct vhu_fe *fe = fe_open(&x, NULL);
    struct vhu_msg m, reply;
    void *win = NULL;
    int fd;

    ASSERT(fe && mfd >= 0 && other >= 0);
    ASSERT_OK(fe_set_u64(fe, VHOST_USER_SET_PROTOCOL_FEATURES, VVU_PROTOCOL_FEATURES_RELAYED, -1));
    mem_reg_msg(&m, VHOST_USER_ADD_MEM_REG, 0, mfd);
    ASSERT_OK(vhu_fe_raw(fe, &m, &reply));
    mem_reg_msg(&m, VHOST_USER_ADD_MEM_REG, 2 << 20, mfd);
    ASSERT_OK(vhu_fe_raw(fe, &m, &reply));
    ASSERT(wait_msgs(&x, 3));
    ASSERT_OK(x.pci->ops->bar_map(x.pci, VVU_BAR_SHM, 2 << 20, 1 << 20, &win));
    x.pci->ops->bar_unmap(x.pci, win, 1 << 20);
    /* not the hole between them */
    ASSERT_ERR(-ENOENT, x.pci->ops->bar_map(x.pci, VVU_BAR_SHM, 1 << 20, 1 << 20, &win));
    mem_reg_msg(&m, VHOST_USER_REM_MEM_REG, 2 << 20, -1);
    ASSERT_OK(vhu_fe_raw(fe, &m, &reply));
    ASSERT(wait_msgs(&x, 4));
    ASSERT_ERR(-ENOENT, x.pci->ops->bar_map(x.pci, VVU_BAR_SHM, 2 << 20, 1 << 20, &win));
    ASSERT_OK(x.pci->ops->bar_map(x.pci, VVU_BAR_SHM, 0, 1 << 20, &win));
    x.pci->ops->bar_unmap(x.pci, win, 1 << 20);
    /* a region of another file while the window shows this one: disconnected */
    fd = -1;
    vhu_fe_free(fe);
    fe = fe_open(&x, &fd);
    ASSERT(fe);
    ASSERT_OK(fe_set_u64(fe, VHOST_USER_SET_PROTOCOL_FEATURES, VVU_PROTOCOL_FEATURES_RELAYED, -1));
    mem_reg_msg(&m, VHOST_USER_ADD_MEM_REG, 0, mfd);
    ASSERT_OK(vhu_fe_raw(fe, &m, &reply));
    mem_reg_msg(&m, VHOST_USER_ADD_MEM_REG, 1 << 20, other);
    m.payload.memreg.region.mmap_offset = 0;
    ASSERT_OK(vhu_fe_raw(fe, &m, &reply));
    ASSERT(hung_up(&x, fd));
    vhu_fe_free(fe);
    close(mfd);
    close(other);
    ASSERT_OK(fresh_frontend_works(&x));
    TEARDOWN(x);
}

/* An rxq buffer outside DMA memory breaks rxq: NEEDS_RESET, config interrupt, the frontend is
 * let go; a reset and a new start serve again. */
TEST(rxq_buffer_outside_dma)
{
    SETUP(x);
    int fd;
    struct vhu_fe *fe = fe_open(&x, &fd);
    struct vhu_vqd_seg bad = {0x7000000000ull, VVU_MSG_MAX};
    uint32_t len;

    ASSERT(fe);
    fired(x.irq[CFG_VEC]);
    /* take back the posted buffers, post one bad one */
    x.auto_reply = false;
    ASSERT_OK(fe_set_u64(fe, VHOST_USER_SET_FEATURES, 0, -1));
    for (unsigned i = 0; i < NRXBUF - 1; i++)
        ASSERT_OK(fe_set_u64(fe, VHOST_USER_SET_FEATURES, i, -1));
    for (int i = 0; i < 20; i++)
        vhu_loop_run_once(x.loop, 2);
    while (vhu_vqd_get_used(x.rx.vqd, &len))
        ;
    vhu_vqd_add(x.rx.vqd, &bad, 0, 1, &bad);
    vhu_vqd_kick_prepare(x.rx.vqd);
    ASSERT_OK(fe_set_u64(fe, VHOST_USER_SET_FEATURES, 1, -1));
    notify(&x, VVU_RXQ);
    ASSERT(hung_up(&x, fd));
    ASSERT(CRD(&x, device_status) & VHU_VIRTIO_CONFIG_S_NEEDS_RESET);
    ASSERT(fired(x.irq[CFG_VEC]));
    vhu_fe_free(fe);
    ASSERT(frontend_down(&x));
    x.auto_reply = true;
    ASSERT_EQ(drv_restart(&x), 0);
    ASSERT_OK(fresh_frontend_works(&x));
    TEARDOWN(x);
}

__attribute__((constructor)) static void log_setup(void)
{
    if (getenv("VHU_TEST_LOG"))
        vhu_log_set_sink(vhu_log_stderr_sink, NULL, VHU_LOG_DEBUG);
}
