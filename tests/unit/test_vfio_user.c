/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The vfio-user server (vvu/vfio_user_server.c) and the driver's vfio-user PCI client
 * (transport/vvu/pci_vfio_user.c) against each other in one process, serving a fake PCI function
 * written here; then raw malformed messages on the socket, each of which must get an error reply
 * or a clean disconnect, after which the server still serves a fresh client.
 *
 * The server's loop runs in a thread; the test thread looks at the fake function only after a
 * reply (the server changed it before replying) or through atomics.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "proto/vfio_user.h"
#include "transport/vvu/pci.h"
#include "vhu/log.h"
#include "vhu/loop.h"
#include "vhu/util.h"
#include "vhu_test.h"
#include "vvu/vfio_user_server.h"

/* ---- the fake function ---------------------------------------------------------------------- */

#define CFG_RW_START 0x40     /* config bytes [0x40, 0x80) are writable */
#define CFG_RW_END 0x80
#define BAR0_SIZE 0x1000
#define REG_IRQ 0x100         /* write a vector number: the function raises it */
#define REG_KICK 0x200        /* 4-byte doorbell: kick_fd */
#define BAR2_SIZE 0x10000
#define AREA_OFF 0x1000       /* BAR2 [0x1000, 0x3000) is mappable: the memfd at the same offset */
#define AREA_LEN 0x2000
#define SHM_LEN 0x4000
#define VECTORS 4

struct fake {
    struct vhu_pcidev pd;
    uint8_t cfg[256];
    uint8_t bar0[BAR0_SIZE];
    int shm_fd;
    uint8_t *shm;
    int kick_fd;
    struct vhu_mem_table *dma;
    atomic_uint resets;
    atomic_uint dma_sets;
    unsigned last_len;         /* width of the last BAR0 access */
    unsigned accesses;         /* BAR0 accesses */
};

static void f_cfg_read(void *dev, uint32_t off, void *buf, uint32_t len)
{
    struct fake *f = dev;

    memcpy(buf, f->cfg + off, len);
}

static void f_cfg_write(void *dev, uint32_t off, const void *buf, uint32_t len)
{
    struct fake *f = dev;

    for (uint32_t i = 0; i < len; i++) {
        if (off + i >= CFG_RW_START && off + i < CFG_RW_END)
            f->cfg[off + i] = ((const uint8_t *)buf)[i];
    }
}

static void f_bar_read(void *dev, unsigned bar, uint64_t off, void *buf, uint32_t len)
{
    struct fake *f = dev;

    if (bar == 0) {
        f->last_len = len;
        f->accesses++;
        memcpy(buf, f->bar0 + off, len);
    } else if (bar == 2 && off >= AREA_OFF && off + len <= AREA_OFF + AREA_LEN) {
        memcpy(buf, f->shm + off, len);
    } else {
        memset(buf, 0xff, len);
    }
}

static void f_bar_write(void *dev, unsigned bar, uint64_t off, const void *buf, uint32_t len)
{
    struct fake *f = dev;

    if (bar == 0) {
        f->last_len = len;
        f->accesses++;
        memcpy(f->bar0 + off, buf, len);
        if (off == REG_IRQ && len == 4) {
            uint32_t v;
            memcpy(&v, buf, 4);
            f->pd.bus_ops->irq(f->pd.bus, v);
        }
        if (off == REG_KICK)
            vhu_eventfd_signal(f->kick_fd);
    } else if (bar == 2 && off >= AREA_OFF && off + len <= AREA_OFF + AREA_LEN) {
        memcpy(f->shm + off, buf, len);
    }
}

static int f_bar_mmap(void *dev, unsigned bar, uint64_t *file_off, struct vhu_pcidev_area *areas,
                      unsigned max, unsigned *n)
{
    struct fake *f = dev;

    if (bar != 2 || max < 1)
        return -ENOENT;
    *file_off = 0;
    areas[0] = (struct vhu_pcidev_area){.off = AREA_OFF, .len = AREA_LEN};
    *n = 1;
    return fcntl(f->shm_fd, F_DUPFD_CLOEXEC, 0);
}

static int f_io_fds(void *dev, unsigned bar, struct vhu_pcidev_iofd *out, unsigned max)
{
    struct fake *f = dev;

    if (bar != 0 || max < 1)
        return 0;
    out[0] = (struct vhu_pcidev_iofd){.bar = 0, .off = REG_KICK, .size = 4,
                                      .fd = fcntl(f->kick_fd, F_DUPFD_CLOEXEC, 0)};
    return 1;
}

static void f_set_dma(void *dev, struct vhu_mem_table *t)
{
    struct fake *f = dev;

    if (f->dma)
        vhu_mem_table_put(f->dma);
    f->dma = t;
    atomic_fetch_add(&f->dma_sets, 1);
}

static void f_reset(void *dev)
{
    struct fake *f = dev;

    atomic_fetch_add(&f->resets, 1);
}

static const struct vhu_pcidev_ops fake_ops = {
    .cfg_read = f_cfg_read,
    .cfg_write = f_cfg_write,
    .bar_read = f_bar_read,
    .bar_write = f_bar_write,
    .bar_mmap = f_bar_mmap,
    .io_fds = f_io_fds,
    .set_dma = f_set_dma,
    .reset = f_reset,
};

static int fake_init(struct fake *f)
{
    memset(f, 0, sizeof(*f));
    f->pd = (struct vhu_pcidev){
        .ops = &fake_ops,
        .dev = f,
        .cfg_size = 256,
        .bars = {[0] = {BAR0_SIZE, VHU_PCIDEV_BAR_MEM},
                 [2] = {BAR2_SIZE, VHU_PCIDEV_BAR_MEM | VHU_PCIDEV_BAR_64}},
        .msix_vectors = VECTORS,
        .msix_bar = 0,
    };
    f->cfg[0] = 0xf4, f->cfg[1] = 0x1a, f->cfg[2] = 0x17, f->cfg[3] = 0x10;
    f->kick_fd = vhu_eventfd_new();
    f->shm_fd = memfd_create("fake-shm", MFD_CLOEXEC);
    if (f->kick_fd < 0 || f->shm_fd < 0 || ftruncate(f->shm_fd, SHM_LEN) < 0)
        return -1;
    f->shm = mmap(NULL, SHM_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, f->shm_fd, 0);
    return f->shm == MAP_FAILED ? -1 : 0;
}

static void fake_fini(struct fake *f)
{
    if (f->dma)
        vhu_mem_table_put(f->dma);
    munmap(f->shm, SHM_LEN);
    close(f->shm_fd);
    close(f->kick_fd);
}

/* ---- the server in a thread ----------------------------------------------------------------- */

struct srv {
    struct fake f;
    struct vhu_loop *loop;
    struct vhu_vfu_server *s;
    int stop_fd;
    pthread_t thread;
    char path[64];
};

static void stop_cb(int fd, uint32_t events, void *opaque)
{
    vhu_eventfd_drain(fd);
    vhu_loop_stop(opaque);
}

static void *srv_main(void *arg)
{
    struct srv *v = arg;

    vhu_loop_run(v->loop);
    return NULL;
}

static int srv_start(struct srv *v)
{
    memset(v, 0, sizeof(*v));
    snprintf(v->path, sizeof(v->path), "/tmp/vhu-vfu-test-%d.sock", getpid());
    if (fake_init(&v->f) < 0 || vhu_loop_new(&v->loop) < 0)
        return -1;
    v->stop_fd = vhu_eventfd_new();
    if (v->stop_fd < 0 || vhu_loop_add(v->loop, v->stop_fd, VHU_LOOP_IN, stop_cb, v->loop) < 0)
        return -1;
    if (vhu_vfu_server_new(v->loop, &v->f.pd, v->path, &v->s) < 0)
        return -1;
    return pthread_create(&v->thread, NULL, srv_main, v) ? -1 : 0;
}

static void srv_stop(struct srv *v)
{
    vhu_eventfd_signal(v->stop_fd);
    pthread_join(v->thread, NULL);
    vhu_vfu_server_free(v->s);
    vhu_loop_del(v->loop, v->stop_fd);
    close(v->stop_fd);
    vhu_loop_free(v->loop);
    fake_fini(&v->f);
}

/* Wait (up to 2 s) until the function was reset `n` times in all: the server saw a disconnect. */
static bool wait_resets(struct fake *f, unsigned n)
{
    for (int i = 0; i < 2000; i++) {
        if (atomic_load(&f->resets) >= n)
            return true;
        usleep(1000);
    }
    return false;
}

/* Start the server and connect the driver's client to it. */
static int srv_start_client(struct srv *v, struct vhu_pci **p)
{
    *p = NULL;
    return srv_start(v) < 0 ? -1 : vhu_pci_vfio_user_open(v->path, p);
}

/* The client leaves; true when the server saw it (`resets` resets of the function in all). */
static bool srv_stop_client(struct srv *v, struct vhu_pci *p, unsigned resets)
{
    p->ops->free(p);
    bool seen = wait_resets(&v->f, resets);
    srv_stop(v);
    return seen;
}

static bool readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    return poll(&p, 1, ms) == 1;
}

/* ---- the client against the server ---------------------------------------------------------- */

TEST(config_and_registers)
{
    struct srv v;
    struct vhu_pci *p = NULL;
    uint8_t b8[8];
    uint32_t u32;
    uint16_t u16;

    ASSERT_OK(srv_start(&v));
    ASSERT_ERR(-EINVAL, vhu_pci_open("bogus", &p));
    char spec[80];
    snprintf(spec, sizeof(spec), "vfio-user:%s", v.path);
    ASSERT_OK(vhu_pci_open(spec, &p));
    /* an address no machine has: the sysfs path fails before anything is touched */
    ASSERT_ERR(-ENOENT, vhu_pci_open("pci:ffff:ff:1f.7", &(struct vhu_pci *){NULL}));
    /* the window's mirror: malformed specs are refused before sysfs is touched */
    ASSERT_ERR(-EINVAL, vhu_pci_open("pci:ffff:ff:1f.7,shm", &(struct vhu_pci *){NULL}));
    ASSERT_ERR(-EINVAL, vhu_pci_open("pci:ffff:ff:1f.7,mem=ffff:ff:1f.6", &(struct vhu_pci *){NULL}));
    ASSERT_ERR(-EINVAL, vhu_pci_open("pci:ffff:ff:1f.7x,shm=ffff:ff:1f.6", &(struct vhu_pci *){NULL}));
    ASSERT_ERR(-ENOENT, vhu_pci_open("pci:ffff:ff:1f.7,shm=ffff:ff:1f.6", &(struct vhu_pci *){NULL}));

    /* config space */
    ASSERT_OK(p->ops->cfg_read(p, 0, &u16, 2));
    ASSERT_EQ(u16, 0x1af4);
    ASSERT_OK(p->ops->cfg_read(p, 0, &u32, 4));
    ASSERT_EQ(u32, 0x10171af4);
    u32 = 0xdeadbeef;
    ASSERT_OK(p->ops->cfg_write(p, 0x40, &u32, 4));
    u32 = 0;
    ASSERT_OK(p->ops->cfg_read(p, 0x40, &u32, 4));
    ASSERT_EQ(u32, 0xdeadbeef);
    ASSERT_ERR(-EINVAL, p->ops->cfg_read(p, 254, &u32, 4));
    ASSERT_ERR(-EINVAL, p->ops->cfg_read(p, 0, b8, 8));

    /* BAR sizes from the region infos */
    ASSERT_EQ(p->ops->bar_size(p, 0), BAR0_SIZE);
    ASSERT_EQ(p->ops->bar_size(p, 1), 0);
    ASSERT_EQ(p->ops->bar_size(p, 2), BAR2_SIZE);
    ASSERT_EQ(p->ops->bar_size(p, 6), 0);

    /* every width, one access of that width on the function */
    for (uint32_t w = 1; w <= 8; w *= 2) {
        uint64_t val = 0x1122334455667788ull >> (8 * (8 - w)), got = 0;
        uint64_t off = 0x10 * w;
        ASSERT_OK(p->ops->bar_write(p, 0, off, &val, w));
        ASSERT_EQ(v.f.last_len, w);
        ASSERT(memcmp(v.f.bar0 + off, &val, w) == 0);
        ASSERT_OK(p->ops->bar_read(p, 0, off, &got, w));
        ASSERT_EQ(v.f.last_len, w);
        ASSERT_EQ(got, val);
    }
    ASSERT_ERR(-EINVAL, p->ops->bar_read(p, 0, BAR0_SIZE - 4, b8, 8));
    ASSERT_ERR(-EINVAL, p->ops->bar_read(p, 0, 0, b8, 3));
    ASSERT_ERR(-EINVAL, p->ops->bar_read(p, 1, 0, b8, 4));

    /* reset, then the driver leaves: the server resets the function again and drops its DMA */
    ASSERT_OK(p->ops->reset(p));
    ASSERT_EQ(atomic_load(&v.f.resets), 1);
    ASSERT(srv_stop_client(&v, p, 2));
}

TEST(mmap_area_shared_both_ways)
{
    struct srv v;
    struct vhu_pci *p = NULL;
    void *host = NULL;
    uint64_t val = 0x0123456789abcdefull, got = 0;

    ASSERT_OK(srv_start_client(&v, &p));
    ASSERT_OK(p->ops->bar_map(p, 2, AREA_OFF + 0x100, 0x1000, &host));
    /* the client's stores reach the function's memory, and the function's its loads */
    memcpy(host, &val, 8);
    ASSERT(memcmp(v.f.shm + AREA_OFF + 0x100, &val, 8) == 0);
    ASSERT_OK(p->ops->bar_read(p, 2, AREA_OFF + 0x100, &got, 8));
    ASSERT_EQ(got, val);
    val = ~val;
    ASSERT_OK(p->ops->bar_write(p, 2, AREA_OFF + 0x108, &val, 8));
    ASSERT(memcmp((uint8_t *)host + 8, &val, 8) == 0);
    p->ops->bar_unmap(p, host, 0x1000);
    /* not covered by an area, not mappable at all, out of the BAR */
    ASSERT_ERR(-ENOTSUP, p->ops->bar_map(p, 2, 0, 0x2000, &host));
    ASSERT_ERR(-ENOTSUP, p->ops->bar_map(p, 2, AREA_OFF + AREA_LEN - 0x1000, 0x2000, &host));
    ASSERT_ERR(-ENOTSUP, p->ops->bar_map(p, 0, 0, 0x1000, &host));
    ASSERT_ERR(-EINVAL, p->ops->bar_map(p, 2, BAR2_SIZE, 0x1000, &host));
    ASSERT(srv_stop_client(&v, p, 1));
}

TEST(io_fd_and_irqs)
{
    struct srv v;
    struct vhu_pci *p = NULL;
    int kick = -1, irq[VECTORS];
    uint32_t one = 1, vec = 2;

    ASSERT_OK(srv_start_client(&v, &p));
    ASSERT_OK(p->ops->io_fd(p, 0, REG_KICK, 4, &kick));
    ASSERT_ERR(-ENOTSUP, p->ops->io_fd(p, 0, REG_KICK + 4, 4, &(int){-1}));
    ASSERT_ERR(-ENOTSUP, p->ops->io_fd(p, 0, REG_KICK, 2, &(int){-1}));
    ASSERT_OK(vhu_eventfd_signal(kick));
    ASSERT_EQ(vhu_eventfd_drain(v.f.kick_fd), 1);
    /* the same doorbell by message */
    ASSERT_OK(p->ops->bar_write(p, 0, REG_KICK, &one, 4));
    ASSERT_EQ(vhu_eventfd_drain(v.f.kick_fd), 1);
    close(kick);

    ASSERT_ERR(-EINVAL, p->ops->irq_fds(p, VECTORS + 1, irq));
    ASSERT_OK(p->ops->irq_fds(p, VECTORS, irq));
    ASSERT_OK(p->ops->bar_write(p, 0, REG_IRQ, &vec, 4));
    ASSERT(readable(irq[2], 1000));
    ASSERT_EQ(vhu_eventfd_drain(irq[2]), 1);
    for (int i = 0; i < VECTORS; i++)
        ASSERT_EQ(vhu_eventfd_drain(irq[i]), 0);
    /* a vector beyond the table is ignored */
    vec = 77;
    ASSERT_OK(p->ops->bar_write(p, 0, REG_IRQ, &vec, 4));
    for (int i = 0; i < VECTORS; i++)
        close(irq[i]);
    ASSERT(srv_stop_client(&v, p, 1));
}

TEST(dma_memory_reaches_the_function)
{
    struct srv v;
    struct vhu_pci *p = NULL;
    void *h1 = NULL, *h2 = NULL;
    uint64_t iova1 = 0, iova2 = 0;

    ASSERT_OK(srv_start_client(&v, &p));
    ASSERT_OK(p->ops->dma_alloc(p, 10000, &h1, &iova1));
    ASSERT_OK(p->ops->dma_alloc(p, 4096, &h2, &iova2));
    ASSERT(iova1 != iova2);
    ASSERT(v.f.dma != NULL);
    ASSERT_EQ(v.f.dma->nregions, 2);
    uint8_t *d1 = vhu_mem_gpa_range(v.f.dma, iova1, 10000);
    uint8_t *d2 = vhu_mem_gpa_range(v.f.dma, iova2, 4096);
    ASSERT(d1 && d2);
    memset(h1, 0x5a, 10000);
    ASSERT_EQ(d1[9999], 0x5a);
    d2[17] = 0xa5; /* the function writes, the driver sees it */
    ASSERT_EQ(((uint8_t *)h2)[17], 0xa5);
    p->ops->dma_free(p, h1, 10000);
    ASSERT_EQ(v.f.dma->nregions, 1);
    ASSERT(vhu_mem_gpa_range(v.f.dma, iova1, 1) == NULL);
    /* the freed range is reused */
    ASSERT_OK(p->ops->dma_alloc(p, 8192, &h1, &iova1));
    ASSERT(vhu_mem_gpa_range(v.f.dma, iova1, 8192) != NULL);
    p->ops->free(p); /* leaves h1, h2 allocated: the client unmaps them */
    ASSERT(wait_resets(&v.f, 1));
    usleep(10000);
    ASSERT(v.f.dma == NULL);
    srv_stop(&v);
}

TEST(listen_path_rules)
{
    struct fake f;
    struct vhu_loop *loop;
    struct vhu_vfu_server *s = NULL;
    char path[64];
    struct stat st;

    snprintf(path, sizeof(path), "/tmp/vhu-vfu-path-%d", getpid());
    ASSERT_OK(fake_init(&f));
    ASSERT_OK(vhu_loop_new(&loop));
    /* a regular file is never replaced */
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    ASSERT(fd >= 0);
    close(fd);
    ASSERT_ERR(-EEXIST, vhu_vfu_server_new(loop, &f.pd, path, &s));
    ASSERT(lstat(path, &st) == 0 && S_ISREG(st.st_mode));
    unlink(path);
    /* a stale socket is */
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    close(fd);
    ASSERT_OK(vhu_vfu_server_new(loop, &f.pd, path, &s));
    /* a live one is not */
    struct vhu_vfu_server *s2 = NULL;
    ASSERT_ERR(-EADDRINUSE, vhu_vfu_server_new(loop, &f.pd, path, &s2));
    vhu_vfu_server_free(s);
    ASSERT(lstat(path, &st) < 0);
    vhu_loop_free(loop);
    fake_fini(&f);
}

/* A server that accepts and never answers: the client gives up after its reply timeout. */
TEST(hung_server_times_out)
{
    char path[64];
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct vhu_pci *p = NULL;

    snprintf(path, sizeof(path), "/tmp/vhu-vfu-hung-%d", getpid());
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    unlink(path);
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(l >= 0 && bind(l, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(l, 1) == 0);
    uint64_t t0 = vhu_now_ns();
    ASSERT_ERR(-ETIMEDOUT, vhu_pci_vfio_user_open(path, &p));
    ASSERT(vhu_now_ns() - t0 < 8000000000ull);
    close(l);
    unlink(path);
}

/* ---- raw messages --------------------------------------------------------------------------- */

struct raw {
    int sock;
    uint16_t id;
    struct vfu_rx rx;
    uint8_t buf[8192];
};

static int raw_open(struct raw *r, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    vfu_rx_init(&r->rx, r->buf, sizeof(r->buf));
    r->id = 100;
    r->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (r->sock < 0 || connect(r->sock, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return -errno;
    return 0;
}

static void raw_close(struct raw *r)
{
    vfu_rx_reset(&r->rx);
    close(r->sock);
}

/* The reply to id: 0 or -error; -ECONNRESET when the server hung up. Payload in r->rx. */
static int raw_reply(struct raw *r, uint16_t id, uint16_t cmd)
{
    int e = vfu_recv_timeout(r->sock, &r->rx, 2000);

    if (e < 0)
        return e;
    const struct vfu_hdr *h = vfu_rx_hdr(&r->rx);
    if (h->msg_id != id || h->cmd != cmd || (h->flags & VFU_F_TYPE_MASK) != VFU_F_TYPE_REPLY)
        return -EPROTO;
    return (h->flags & VFU_F_ERROR) ? -(int)h->error : 0;
}

static int raw_call_flags(struct raw *r, uint16_t cmd, uint32_t flags, const void *p, size_t len,
                          const int *fds, unsigned nfds)
{
    struct vfu_hdr h = {.msg_id = ++r->id, .cmd = cmd, .flags = flags};
    int e = vfu_send(r->sock, &h, p, len, NULL, 0, fds, nfds);

    return e < 0 ? e : raw_reply(r, h.msg_id, cmd);
}

static int raw_call(struct raw *r, uint16_t cmd, const void *p, size_t len, const int *fds,
                    unsigned nfds)
{
    return raw_call_flags(r, cmd, 0, p, len, fds, nfds);
}

static int raw_version(struct raw *r, const char *json)
{
    uint8_t req[512] = {0};
    size_t len = 4;

    if (json) {
        memcpy(req + 4, json, strlen(json) + 1);
        len += strlen(json) + 1;
    }
    return raw_call(r, VFU_CMD_VERSION, req, len, NULL, 0);
}

/* Raw bytes, no framing help. */
static void raw_write(struct raw *r, const void *p, size_t len)
{
    if (write(r->sock, p, len) != (ssize_t)len)
        fprintf(stderr, "  raw write short\n");
}

/* A sealed memfd of len bytes. */
static int memfd_sealed(size_t len)
{
    int fd = memfd_create("t", MFD_CLOEXEC | MFD_ALLOW_SEALING);

    if (fd >= 0 && (ftruncate(fd, (off_t)len) < 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A fresh client still gets full service. */
static bool fresh_client_works(struct srv *v)
{
    struct vhu_pci *p = NULL;
    uint32_t id = 0;
    bool ok = vhu_pci_vfio_user_open(v->path, &p) == 0 && p->ops->cfg_read(p, 0, &id, 4) == 0 &&
              id == 0x10171af4;

    if (p)
        p->ops->free(p);
    return ok;
}

TEST(malformed_framing_disconnects)
{
    struct srv v;
    struct raw r;
    unsigned resets = 0;
    int fds_before = vhu_fd_count_self();

    ASSERT_OK(srv_start(&v));

    /* a truncated header, then the client leaves */
    ASSERT_OK(raw_open(&r, v.path));
    raw_write(&r, "\x01\x00\x01\x00\x20\x00", 6);
    raw_close(&r);
    ASSERT(wait_resets(&v.f, ++resets));

    /* a header claiming less than itself */
    ASSERT_OK(raw_open(&r, v.path));
    struct vfu_hdr h = {.msg_id = 1, .cmd = VFU_CMD_VERSION, .size = 8};
    raw_write(&r, &h, sizeof(h));
    ASSERT_ERR(-ECONNRESET, raw_reply(&r, 1, VFU_CMD_VERSION));
    raw_close(&r);
    ASSERT(wait_resets(&v.f, ++resets));

    /* a size far past anything the server takes */
    ASSERT_OK(raw_open(&r, v.path));
    h.size = 0x7fffffff;
    raw_write(&r, &h, sizeof(h));
    ASSERT_ERR(-ECONNRESET, raw_reply(&r, 1, VFU_CMD_VERSION));
    raw_close(&r);
    ASSERT(wait_resets(&v.f, ++resets));

    /* more fds in one message than any message may carry */
    ASSERT_OK(raw_open(&r, v.path));
    ASSERT_OK(raw_version(&r, NULL));
    int many[VFU_MAX_FDS + 6];
    for (unsigned i = 0; i < VHU_ARRAY_SIZE(many); i++)
        many[i] = vhu_eventfd_new();
    struct vfu_hdr hm = {.msg_id = 9, .cmd = VFU_CMD_DEVICE_SET_IRQS, .size = 16};
    struct iovec iov = {.iov_base = &hm, .iov_len = sizeof(hm)};
    union {
        char buf[CMSG_SPACE(sizeof(many))];
        struct cmsghdr align;
    } ctl;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                        .msg_controllen = sizeof(ctl.buf)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(many));
    memcpy(CMSG_DATA(c), many, sizeof(many));
    ASSERT(sendmsg(r.sock, &mh, 0) == sizeof(hm));
    for (unsigned i = 0; i < VHU_ARRAY_SIZE(many); i++)
        close(many[i]);
    ASSERT_ERR(-ECONNRESET, raw_reply(&r, 9, VFU_CMD_DEVICE_SET_IRQS));
    raw_close(&r);
    ASSERT(wait_resets(&v.f, ++resets));

    /* a reply from the client, and a major version the server does not speak */
    ASSERT_OK(raw_open(&r, v.path));
    ASSERT_OK(raw_version(&r, NULL));
    struct vfu_hdr hr = {.msg_id = 3, .cmd = VFU_CMD_DEVICE_RESET, .flags = VFU_F_TYPE_REPLY};
    ASSERT_OK(vfu_send(r.sock, &hr, NULL, 0, NULL, 0, NULL, 0));
    ASSERT_ERR(-ECONNRESET, raw_reply(&r, 3, VFU_CMD_DEVICE_RESET));
    raw_close(&r);
    ASSERT(wait_resets(&v.f, ++resets));
    ASSERT_OK(raw_open(&r, v.path));
    uint16_t v1[2] = {1, 0};
    ASSERT_ERR(-ENOTSUP, raw_call(&r, VFU_CMD_VERSION, v1, sizeof(v1), NULL, 0));
    ASSERT_ERR(-ECONNRESET, raw_reply(&r, 0, 0));
    raw_close(&r);
    ASSERT(wait_resets(&v.f, ++resets));

    ASSERT(fresh_client_works(&v));
    ASSERT(wait_resets(&v.f, ++resets));
    srv_stop(&v);
    ASSERT_EQ(vhu_fd_count_self(), fds_before);
}

TEST(malformed_commands_get_errors)
{
    struct srv v;
    struct raw r;
    int fds_before = vhu_fd_count_self();

    ASSERT_OK(srv_start(&v));
    ASSERT_OK(raw_open(&r, v.path));

    /* before VERSION; bad JSON; then a good VERSION on the same connection */
    struct vfu_device_info di = {.argsz = sizeof(di)};
    ASSERT_ERR(-EPROTO, raw_call(&r, VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di), NULL, 0));
    static const char *const bad_json[] = {
        "{", "[1]", "{\"capabilities\":3}", "{\"capabilities\":{\"max_msg_fds\":-1}}",
        "{\"capabilities\":{\"max_data_xfer_size\":1.5}}", "{} trailing", "",
    };
    for (unsigned i = 0; i < VHU_ARRAY_SIZE(bad_json); i++)
        ASSERT_ERR(-EINVAL, raw_version(&r, bad_json[i]));
    uint8_t nonul[6] = {0, 0, 0, 0, '{', '}'}; /* JSON without its NUL */
    ASSERT_ERR(-EINVAL, raw_call(&r, VFU_CMD_VERSION, nonul, sizeof(nonul), NULL, 0));
    ASSERT_ERR(-EINVAL, raw_call(&r, VFU_CMD_VERSION, nonul, 2, NULL, 0));
    ASSERT_OK(raw_version(&r, "{\"capabilities\":{\"max_msg_fds\":8,\"pgsizes\":4096}}"));
    struct vfu_caps caps;
    ASSERT_OK(vfu_caps_parse(vfu_rx_payload(&r.rx) + 4, vfu_rx_payload_len(&r.rx) - 4, &caps));
    ASSERT_EQ(caps.max_msg_fds, VFU_MAX_FDS);
    ASSERT_EQ(caps.max_data_xfer_size, VFU_MAX_DATA_XFER);
    ASSERT_ERR(-EINVAL, raw_version(&r, NULL)); /* once per connection */

    /* unknown and unsupported commands; NO_REPLY is honoured even for errors */
    ASSERT_ERR(-ENOSYS, raw_call(&r, 99, NULL, 0, NULL, 0));
    ASSERT_ERR(-ENOSYS, raw_call(&r, VFU_CMD_DMA_READ, NULL, 0, NULL, 0));
    struct vfu_hdr nr = {.msg_id = 50, .cmd = 99, .flags = VFU_F_NO_REPLY};
    ASSERT_OK(vfu_send(r.sock, &nr, NULL, 0, NULL, 0, NULL, 0));
    ASSERT_OK(raw_call(&r, VFU_CMD_DEVICE_GET_INFO, &di, sizeof(di), NULL, 0)); /* next id */
    ASSERT_ERR(-EINVAL, raw_call(&r, VFU_CMD_DEVICE_GET_INFO, &di, 8, NULL, 0));

    /* region indexes, bounds, sizes */
    struct vfu_region_info ri = {.argsz = sizeof(ri), .index = 99};
    ASSERT_ERR(-EINVAL, raw_call(&r, VFU_CMD_DEVICE_GET_REGION_INFO, &ri, sizeof(ri), NULL, 0));
    struct vfu_region_access a = {.offset = 0, .region = 99, .count = 4};
    ASSERT_ERR(-EINVAL, raw_call(&r, VFU_CMD_REGION_READ, &a, sizeof(a), NULL, 0));
    a = (struct vfu_region_access){.offset = BAR0_SIZE - 4, .region = 0, .count = 8};
    ASSERT_ERR(-EINVAL, raw_call(&r, VFU_CMD_REGION_READ, &a, sizeof(a), NULL, 0));
    a = (struct vfu_region_access){.offset = UINT64_MAX - 2, .region = 0, .count = 8};
    ASSERT_ERR(-EINVAL, raw_call(&r, VFU_CMD_REGION_READ, &a, sizeof(a), NULL, 0));
    a = (struct vfu_region_access){.offset = 0, .region = 1, .count = 1}; /* absent BAR */
    ASSERT_ERR(-EINVAL, raw_call(&r, VFU_CMD_REGION_READ, &a, sizeof(a), NULL, 0));
    a = (struct vfu_region_access){.offset = 0, .region = 0, .count = VFU_MAX_DATA_XFER + 1};
    ASSERT_ERR(-E2BIG, raw_call(&r, VFU_CMD_REGION_READ, &a, sizeof(a), NULL, 0));
    a = (struct vfu_region_access){.offset = 0, .region = 0, .count = 8}; /* says 8, carries 4 */
    uint8_t wr[sizeof(a) + 4];
    memcpy(wr, &a, sizeof(a));
    ASSERT_ERR(-EINVAL, raw_call(&r, VFU_CMD_REGION_WRITE, wr, sizeof(wr), NULL, 0));
    /* a 7-byte unaligned read is split into aligned accesses and still answered whole */
    a = (struct vfu_region_access){.offset = 1, .region = 0, .count = 7};
    memset(v.f.bar0, 0x3c, 8);
    ASSERT_OK(raw_call(&r, VFU_CMD_REGION_READ, &a, sizeof(a), NULL, 0));
    ASSERT_EQ(vfu_rx_payload_len(&r.rx), sizeof(a) + 7);
    ASSERT_EQ(vfu_rx_payload(&r.rx)[sizeof(a) + 6], 0x3c);
    ASSERT_EQ(v.f.last_len, 4); /* 1 + 2 + 4 */

    /* fds where none belong */
    int e1 = vhu_eventfd_new(), e2 = vhu_eventfd_new();
    int two[2] = {e1, e2};
    a = (struct vfu_region_access){.offset = 0, .region = 0, .count = 4};
    ASSERT_ERR(-EINVAL, raw_call(&r, VFU_CMD_REGION_READ, &a, sizeof(a), two, 2));

    /* SET_IRQS: more fds than vectors, fds not matching count, beyond the table, not eventfds,
     * INTx */
    struct vfu_irq_set is = {.argsz = sizeof(is),
                             .flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
                             .index = VFIO_PCI_MSIX_IRQ_INDEX, .start = 0, .count = 1};
    ASSERT_ERR(-EINVAL, raw_call(&r, VFU_CMD_DEVICE_SET_IRQS, &is, sizeof(is), two, 2));
    is.start = VECTORS - 1, is.count = 2;
    ASSERT_ERR(-EINVAL, raw_call(&r, VFU_CMD_DEVICE_SET_IRQS, &is, sizeof(is), two, 2));
    int pfd[2];
    ASSERT(pipe2(pfd, O_CLOEXEC) == 0);
    is.start = 0, is.count = 1;
    ASSERT_ERR(-EINVAL, raw_call(&r, VFU_CMD_DEVICE_SET_IRQS, &is, sizeof(is), pfd, 1));
    close(pfd[0]), close(pfd[1]);
    is.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER;
    ASSERT_ERR(-EINVAL, raw_call(&r, VFU_CMD_DEVICE_SET_IRQS, &is, sizeof(is), NULL, 0));
    is = (struct vfu_irq_set){.argsz = sizeof(is),
                              .flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
                              .index = VFIO_PCI_INTX_IRQ_INDEX, .count = 1};
    ASSERT_ERR(-EINVAL, raw_call(&r, VFU_CMD_DEVICE_SET_IRQS, &is, sizeof(is), NULL, 0));
    is.count = 0; /* disabling INTx is fine */
    ASSERT_OK(raw_call(&r, VFU_CMD_DEVICE_SET_IRQS, &is, sizeof(is), NULL, 0));

    /* mask / unmask: a vector raised while masked fires on unmask */
    is = (struct vfu_irq_set){.argsz = sizeof(is),
                              .flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
                              .index = VFIO_PCI_MSIX_IRQ_INDEX, .start = 1, .count = 2};
    ASSERT_OK(raw_call(&r, VFU_CMD_DEVICE_SET_IRQS, &is, sizeof(is), two, 2));
    is.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK, is.count = 1;
    ASSERT_OK(raw_call(&r, VFU_CMD_DEVICE_SET_IRQS, &is, sizeof(is), NULL, 0));
    uint8_t raise[sizeof(a) + 4];
    uint32_t vec1 = 1;
    a = (struct vfu_region_access){.offset = REG_IRQ, .region = 0, .count = 4};
    memcpy(raise, &a, sizeof(a));
    memcpy(raise + sizeof(a), &vec1, 4);
    ASSERT_OK(raw_call(&r, VFU_CMD_REGION_WRITE, raise, sizeof(raise), NULL, 0));
    ASSERT_EQ(vhu_eventfd_drain(e1), 0);
    is.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK;
    ASSERT_OK(raw_call(&r, VFU_CMD_DEVICE_SET_IRQS, &is, sizeof(is), NULL, 0));
    ASSERT_EQ(vhu_eventfd_drain(e1), 1);
    /* the client triggers vector 2 itself, with DATA_BOOL */
    struct {
        struct vfu_irq_set s;
        uint8_t b[2];
    } bset = {{.argsz = sizeof(bset), .flags = VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER,
               .index = VFIO_PCI_MSIX_IRQ_INDEX, .start = 1, .count = 2}, {0, 1}};
    ASSERT_OK(raw_call(&r, VFU_CMD_DEVICE_SET_IRQS, &bset, sizeof(bset), NULL, 0));
    ASSERT_EQ(vhu_eventfd_drain(e1), 0);
    ASSERT_EQ(vhu_eventfd_drain(e2), 1);
    ASSERT_ERR(-EINVAL, raw_call(&r, VFU_CMD_DEVICE_SET_IRQS, &bset, sizeof(bset.s) + 1, NULL, 0));
    close(e1), close(e2);

    /* DMA_MAP: without fd, overlapping, huge, unaligned, unsealed; DMA_UNMAP not exact */
    int mfd = memfd_sealed(0x4000);
    ASSERT(mfd >= 0);
    struct vfu_dma_map m = {.argsz = sizeof(m), .flags = VFU_DMA_READ | VFU_DMA_WRITE,
                            .addr = 0x100000, .size = 0x2000};
    ASSERT_ERR(-ENOTSUP, raw_call(&r, VFU_CMD_DMA_MAP, &m, sizeof(m), NULL, 0));
    ASSERT_OK(raw_call(&r, VFU_CMD_DMA_MAP, &m, sizeof(m), &mfd, 1));
    ASSERT(v.f.dma && v.f.dma->nregions == 1);
    m.addr = 0x101000;
    ASSERT_ERR(-EEXIST, raw_call(&r, VFU_CMD_DMA_MAP, &m, sizeof(m), &mfd, 1));
    m.addr = 0x200000, m.size = 1ull << 40;
    ASSERT_ERR(-EINVAL, raw_call(&r, VFU_CMD_DMA_MAP, &m, sizeof(m), &mfd, 1));
    m.size = UINT64_MAX & ~0xfffull;
    ASSERT_ERR(-EINVAL, raw_call(&r, VFU_CMD_DMA_MAP, &m, sizeof(m), &mfd, 1));
    m.size = 0x1000, m.offset = 0x3000; /* read-only, inside the file */
    m.flags = VFU_DMA_READ;
    ASSERT_OK(raw_call(&r, VFU_CMD_DMA_MAP, &m, sizeof(m), &mfd, 1));
    m.addr = 0x300800;
    ASSERT_ERR(-EINVAL, raw_call(&r, VFU_CMD_DMA_MAP, &m, sizeof(m), &mfd, 1));
    m.addr = 0x300000, m.flags = 0x80 | VFU_DMA_READ;
    ASSERT_ERR(-EINVAL, raw_call(&r, VFU_CMD_DMA_MAP, &m, sizeof(m), &mfd, 1));
    int unsealed = memfd_create("u", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    ASSERT(unsealed >= 0 && ftruncate(unsealed, 0x1000) == 0);
    m.flags = VFU_DMA_READ, m.offset = 0;
    ASSERT_ERR(-EPERM, raw_call(&r, VFU_CMD_DMA_MAP, &m, sizeof(m), &unsealed, 1));
    close(unsealed);
    ASSERT_ERR(-EINVAL, raw_call(&r, VFU_CMD_DMA_MAP, &m, sizeof(m) - 8, &mfd, 1));
    ASSERT_EQ(v.f.dma->nregions, 2);
    struct vfu_dma_unmap um = {.argsz = sizeof(um), .addr = 0x100000, .size = 0x1000};
    ASSERT_ERR(-ENOENT, raw_call(&r, VFU_CMD_DMA_UNMAP, &um, sizeof(um), NULL, 0));
    um.size = 0x2000;
    ASSERT_OK(raw_call(&r, VFU_CMD_DMA_UNMAP, &um, sizeof(um), NULL, 0));
    ASSERT_EQ(vfu_rx_payload_len(&r.rx), sizeof(um));
    ASSERT_EQ(v.f.dma->nregions, 1);
    um = (struct vfu_dma_unmap){.argsz = sizeof(um), .flags = VFU_DMA_UNMAP_ALL};
    ASSERT_OK(raw_call(&r, VFU_CMD_DMA_UNMAP, &um, sizeof(um), NULL, 0));
    ASSERT(v.f.dma == NULL);
    close(mfd);

    /* GET_REGION_INFO with argsz too small for the capability: the size needed, no fd */
    ri = (struct vfu_region_info){.argsz = sizeof(ri), .index = 2};
    ASSERT_OK(raw_call(&r, VFU_CMD_DEVICE_GET_REGION_INFO, &ri, sizeof(ri), NULL, 0));
    memcpy(&ri, vfu_rx_payload(&r.rx), sizeof(ri));
    ASSERT(ri.argsz > sizeof(ri) && (ri.flags & VFIO_REGION_INFO_FLAG_MMAP));
    ASSERT_EQ(r.rx.nfds, 0);
    struct vfu_io_fds iq = {.argsz = sizeof(iq), .index = 0};
    ASSERT_OK(raw_call(&r, VFU_CMD_DEVICE_GET_REGION_IO_FDS, &iq, sizeof(iq), NULL, 0));
    memcpy(&iq, vfu_rx_payload(&r.rx), sizeof(iq));
    ASSERT_EQ(iq.count, 1);
    ASSERT_EQ(r.rx.nfds, 0);
    iq = (struct vfu_io_fds){.argsz = sizeof(iq), .index = 42};
    ASSERT_ERR(-EINVAL, raw_call(&r, VFU_CMD_DEVICE_GET_REGION_IO_FDS, &iq, sizeof(iq), NULL, 0));
    struct vfu_irq_info ii = {.argsz = sizeof(ii), .index = 7};
    ASSERT_ERR(-EINVAL, raw_call(&r, VFU_CMD_DEVICE_GET_IRQ_INFO, &ii, sizeof(ii), NULL, 0));
    ASSERT_ERR(-EINVAL, raw_call(&r, VFU_CMD_DEVICE_RESET, &ii, 4, NULL, 0));

    raw_close(&r);
    ASSERT(wait_resets(&v.f, 1));
    ASSERT(v.f.dma == NULL);
    ASSERT(fresh_client_works(&v));
    ASSERT(wait_resets(&v.f, 2));
    srv_stop(&v);
    ASSERT_EQ(vhu_fd_count_self(), fds_before);
}

/* While one client is served, the next waits; it is served once the first leaves. */
TEST(one_client_at_a_time)
{
    struct srv v;
    struct raw a, b;

    ASSERT_OK(srv_start(&v));
    ASSERT_OK(raw_open(&a, v.path));
    ASSERT_OK(raw_version(&a, NULL));
    ASSERT_OK(raw_open(&b, v.path));
    struct vfu_hdr h = {.msg_id = 7, .cmd = VFU_CMD_VERSION};
    uint16_t ver[2] = {0, 1};
    ASSERT_OK(vfu_send(b.sock, &h, ver, sizeof(ver), NULL, 0, NULL, 0));
    ASSERT(!readable(b.sock, 200));
    raw_close(&a);
    ASSERT_OK(raw_reply(&b, 7, VFU_CMD_VERSION));
    raw_close(&b);
    ASSERT(wait_resets(&v.f, 2));
    srv_stop(&v);
}

__attribute__((constructor)) static void log_setup(void)
{
    if (getenv("VFU_TEST_LOG"))
        vhu_log_set_sink(vhu_log_stderr_sink, NULL, VHU_LOG_DEBUG);
}
