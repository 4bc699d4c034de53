/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The x-pci-proxy-dev adapter (src/vvu/mpqemu.c) against a hand-written "QEMU side" on a
 * socketpair: config space with the adapter's BAR registers, BAR accesses by guest-physical
 * address, SYNC_SYSMEM from memfds, SET_IRQFD, DEVICE_RESET, a reply the socket cannot take at
 * once, and malformed messages: each ends the connection once (on_close), resets the model and
 * leaks nothing.
 */
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vhu/log.h"
#include "vhu/loop.h"
#include "vhu/mem.h"
#include "vhu/util.h"
#include "vhu_test.h"
#include "vvu/mpqemu.h"

/* ---- a small model: config bytes, BAR0 (4 KiB) + BAR2 (64-bit, 64 KiB) as plain memory ------ */
struct model {
    uint8_t cfg[256];
    uint8_t bar0[4096];
    uint8_t bar2[65536];
    struct vhu_mem_table *dma;
    unsigned resets, set_dma_calls, bad_accesses;
};

static void m_cfg_read(void *dev, uint32_t off, void *buf, uint32_t len)
{
    struct model *md = dev;

    memcpy(buf, &md->cfg[off], len);
}

static void m_cfg_write(void *dev, uint32_t off, const void *buf, uint32_t len)
{
    struct model *md = dev;

    if (off >= 4) /* IDs are read-only */
        memcpy(&md->cfg[off], buf, len);
}

static uint8_t *m_bar(struct model *md, unsigned bar, uint64_t off, uint32_t len)
{
    if (bar == 0 && off + len <= sizeof(md->bar0))
        return &md->bar0[off];
    if (bar == 2 && off + len <= sizeof(md->bar2))
        return &md->bar2[off];
    md->bad_accesses++;
    return NULL;
}

static void m_bar_read(void *dev, unsigned bar, uint64_t off, void *buf, uint32_t len)
{
    uint8_t *p = m_bar(dev, bar, off, len);

    if (p)
        memcpy(buf, p, len);
    else
        memset(buf, 0xff, len);
}

static void m_bar_write(void *dev, unsigned bar, uint64_t off, const void *buf, uint32_t len)
{
    uint8_t *p = m_bar(dev, bar, off, len);

    if (p)
        memcpy(p, buf, len);
}

static void m_set_dma(void *dev, struct vhu_mem_table *t)
{
    struct model *md = dev;

    if (md->dma)
        vhu_mem_table_put(md->dma);
    md->dma = t;
    md->set_dma_calls++;
}

static void m_reset(void *dev)
{
    struct model *md = dev;

    md->resets++;
}

static const struct vhu_pcidev_ops model_ops = {
    .cfg_read = m_cfg_read, .cfg_write = m_cfg_write,
    .bar_read = m_bar_read, .bar_write = m_bar_write,
    .set_dma = m_set_dma, .reset = m_reset,
};

/* ---- fixture -------------------------------------------------------------------------------- */
struct fx {
    struct model md;
    struct vhu_pcidev pd;
    struct vhu_loop *loop;
    struct vhu_mpqemu *m;
    int q;              /* the QEMU side */
    unsigned closes;
    bool free_in_cb;
    int fds_before;
};

static void on_close(void *opaque)
{
    struct fx *f = opaque;

    f->closes++;
    if (f->free_in_cb) {
        vhu_mpqemu_free(f->m);
        f->m = NULL;
    }
}

static int fx_init(struct fx *f)
{
    int sv[2];

    memset(f, 0, sizeof(*f));
    f->fds_before = vhu_fd_count_self();
    f->md.cfg[0] = 0xf4; f->md.cfg[1] = 0x1a; f->md.cfg[2] = 0x17; f->md.cfg[3] = 0x10;
    f->pd = (struct vhu_pcidev){
        .ops = &model_ops, .dev = &f->md, .cfg_size = 256,
        .bars = {[0] = {4096, VHU_PCIDEV_BAR_MEM},
                 [2] = {65536, VHU_PCIDEV_BAR_MEM | VHU_PCIDEV_BAR_64 | VHU_PCIDEV_BAR_PREFETCH}},
    };
    if (vhu_loop_new(&f->loop) < 0)
        return -1;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    f->q = sv[0];
    if (vhu_mpqemu_new(f->loop, &f->pd, sv[1], &f->m) < 0)
        return -1;
    vhu_mpqemu_set_on_close(f->m, on_close, f);
    return 0;
}

/* Tear down; the process must have the fds it had before. */
static int fx_fini(struct fx *f)
{
    vhu_mpqemu_free(f->m);
    f->m = NULL;
    if (f->md.dma)
        vhu_mem_table_put(f->md.dma);
    f->md.dma = NULL;
    vhu_fd_close(&f->q);
    vhu_loop_free(f->loop);
    return vhu_fd_count_self() - f->fds_before;
}

static void pump(struct fx *f)
{
    while (vhu_loop_run_once(f->loop, 0) > 0)
        ;
}

static int qsend_raw(struct fx *f, const void *buf, size_t len, const int *fds, unsigned nfds)
{
    union {
        char b[CMSG_SPACE(32 * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

    if (nfds) {
        struct cmsghdr *c;

        mh.msg_control = ctl.b;
        mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    return sendmsg(f->q, &mh, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

/* One message as QEMU sends it: header + payload + fds in one sendmsg. */
static int qsend(struct fx *f, int32_t cmd, uint64_t size, const void *payload, size_t plen,
                 const int *fds, unsigned nfds)
{
    uint8_t buf[sizeof(struct vhu_mpqemu_hdr) + 256];
    struct vhu_mpqemu_hdr h = {.cmd = cmd, .size = size};

    memcpy(buf, &h, sizeof(h));
    if (plen)
        memcpy(buf + sizeof(h), payload, plen);
    return qsend_raw(f, buf, sizeof(h) + plen, fds, nfds);
}

/* Serve, then read one RET. -1: none (connection closed, or nothing within the pumping). */
static int qret(struct fx *f, uint64_t *val)
{
    struct {
        struct vhu_mpqemu_hdr h;
        uint64_t v;
    } r;
    size_t got = 0;

    for (int i = 0; i < 100 && got < sizeof(r); i++) {
        ssize_t n;

        pump(f);
        n = recv(f->q, (uint8_t *)&r + got, sizeof(r) - got, MSG_DONTWAIT);
        if (n == 0)
            return -1;
        if (n > 0)
            got += (size_t)n;
    }
    if (got != sizeof(r) || r.h.cmd != VHU_MPQEMU_RET || r.h.size != 8)
        return -1;
    *val = r.v;
    return 0;
}

static uint64_t cfg_rd(struct fx *f, uint32_t addr, int len)
{
    struct vhu_mpqemu_cfg c = {.addr = addr, .len = len};
    uint64_t v = 0xdead;

    if (qsend(f, VHU_MPQEMU_PCI_CFGREAD, sizeof(c), &c, sizeof(c), NULL, 0) < 0 || qret(f, &v) < 0)
        return 0xdeadbeefdeadull;
    return v;
}

static int cfg_wr(struct fx *f, uint32_t addr, uint32_t val, int len)
{
    struct vhu_mpqemu_cfg c = {.addr = addr, .val = val, .len = len};
    uint64_t v = 1;

    if (qsend(f, VHU_MPQEMU_PCI_CFGWRITE, sizeof(c), &c, sizeof(c), NULL, 0) < 0 || qret(f, &v) < 0)
        return -1;
    return v == 0 ? 0 : -1;
}

static uint64_t bar_rd(struct fx *f, uint64_t addr, uint32_t size)
{
    struct vhu_mpqemu_bar b = {.addr = addr, .size = size, .memory = 1};
    uint64_t v = 0;

    if (qsend(f, VHU_MPQEMU_BAR_READ, sizeof(b), &b, sizeof(b), NULL, 0) < 0 || qret(f, &v) < 0)
        return 0xdeadbeefdeadull;
    return v;
}

static int bar_wr(struct fx *f, uint64_t addr, uint64_t val, uint32_t size)
{
    struct vhu_mpqemu_bar b = {.addr = addr, .val = val, .size = size, .memory = 1};
    uint64_t v = 1;

    if (qsend(f, VHU_MPQEMU_BAR_WRITE, sizeof(b), &b, sizeof(b), NULL, 0) < 0 || qret(f, &v) < 0)
        return -1;
    return v == 0 ? 0 : -1;
}

/* A guest RAM file as QEMU's memory-backend-memfd makes it (sealed against shrinking). */
static int guest_ram(size_t size)
{
    int fd = memfd_create("guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);

    if (fd < 0)
        return -1;
    if (ftruncate(fd, (off_t)size) < 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- tests ---------------------------------------------------------------------------------- */

TEST(config_and_bar_registers)
{
    struct fx f;

    ASSERT_OK(fx_init(&f));
    ASSERT_EQ(cfg_rd(&f, 0, 2), 0x1af4);
    ASSERT_EQ(cfg_rd(&f, 2, 2), 0x1017);
    ASSERT_EQ(cfg_rd(&f, 0, 4), 0x10171af4);
    ASSERT_OK(cfg_wr(&f, 0x04, 0x0006, 2));   /* command: memory + bus master, to the model */
    ASSERT_EQ(f.md.cfg[4], 6);
    ASSERT_EQ(cfg_rd(&f, 0x04, 1), 6);
    /* QEMU's probe: all-ones, read the mask, write the original back */
    ASSERT_OK(cfg_wr(&f, 0x10, 0xffffffff, 4));
    ASSERT_EQ(cfg_rd(&f, 0x10, 4), 0xfffff000);
    ASSERT_OK(cfg_wr(&f, 0x18, 0xffffffff, 4));
    ASSERT_EQ(cfg_rd(&f, 0x18, 4), 0xffff0008);    /* 64 KiB, prefetchable, presented 32-bit */
    ASSERT_OK(cfg_wr(&f, 0x1c, 0xffffffff, 4));
    ASSERT_EQ(cfg_rd(&f, 0x1c, 4), 0);              /* upper half of the 64-bit BAR */
    ASSERT_OK(cfg_wr(&f, 0x14, 0xffffffff, 4));
    ASSERT_EQ(cfg_rd(&f, 0x14, 4), 0);              /* not implemented */
    ASSERT_OK(cfg_wr(&f, 0x28, 0xffffffff, 4));
    ASSERT_EQ(cfg_rd(&f, 0x28, 4), 0);              /* CardBus CIS: none */
    ASSERT_EQ(f.md.cfg[0x10], 0);                   /* the model never saw the BAR writes */
    /* the guest places BAR0 byte-wise and BAR2 with one dword */
    ASSERT_OK(cfg_wr(&f, 0x10, 0, 4));
    ASSERT_OK(cfg_wr(&f, 0x12, 0xfebf, 2));
    ASSERT_OK(cfg_wr(&f, 0x11, 0x0f, 1));           /* below the size mask: dropped */
    ASSERT_EQ(cfg_rd(&f, 0x10, 4), 0xfebf0000);
    ASSERT_EQ(cfg_rd(&f, 0x12, 2), 0xfebf);
    ASSERT_OK(cfg_wr(&f, 0x18, 0xfe000000, 4));
    ASSERT_EQ(cfg_rd(&f, 0x18, 4), 0xfe000008);
    /* an access straddling a model register (header type, BIST) and a BAR register */
    f.md.cfg[0x0e] = 0x80;
    f.md.cfg[0x0f] = 0x11;
    ASSERT_EQ(cfg_rd(&f, 0x0e, 4), 0x00001180);
    ASSERT_EQ(f.closes, 0);
    ASSERT_EQ(fx_fini(&f), 0);
}

TEST(bar_access_by_guest_physical_address)
{
    struct vhu_mpqemu_stats st;
    struct fx f;

    ASSERT_OK(fx_init(&f));
    ASSERT_OK(cfg_wr(&f, 0x10, 0xfebf0000, 4));
    ASSERT_OK(cfg_wr(&f, 0x18, 0xfe000000, 4));
    ASSERT_OK(bar_wr(&f, 0xfebf0008, 0x1122334455667788ull, 8));
    ASSERT_EQ(bar_rd(&f, 0xfebf0008, 8), 0x1122334455667788ull);
    ASSERT_EQ(bar_rd(&f, 0xfebf0008, 4), 0x55667788);
    ASSERT_EQ(bar_rd(&f, 0xfebf000c, 2), 0x3344);
    ASSERT_EQ(bar_rd(&f, 0xfebf000f, 1), 0x11);
    ASSERT_OK(bar_wr(&f, 0xfebf0ffc, 0xcafe, 4));   /* last dword of BAR0 */
    ASSERT_EQ(bar_rd(&f, 0xfebf0ffc, 4), 0xcafe);
    ASSERT_OK(bar_wr(&f, 0xfe00fff8, 0xabcdef, 8)); /* last qword of BAR2 */
    ASSERT_EQ(f.md.bar2[0xfff8], 0xef);
    /* in no BAR, or crossing a BAR's end: all-ones / dropped, the connection stays */
    ASSERT_EQ(bar_rd(&f, 0xfebf1000, 4), UINT64_MAX);
    ASSERT_EQ(bar_rd(&f, 0xfebf0ffe, 4), UINT64_MAX);
    ASSERT_OK(bar_wr(&f, 0x1000, 1, 4));
    /* moving BAR0 moves the decode */
    ASSERT_OK(cfg_wr(&f, 0x10, 0xfeb00000, 4));
    ASSERT_EQ(bar_rd(&f, 0xfeb00008, 4), 0x55667788);
    ASSERT_EQ(bar_rd(&f, 0xfebf0008, 4), UINT64_MAX);
    vhu_mpqemu_get_stats(f.m, &st);
    ASSERT_EQ(st.bar_misses, 4);
    ASSERT_EQ(f.md.bad_accesses, 0);
    ASSERT_EQ(f.closes, 0);
    ASSERT_EQ(fx_fini(&f), 0);
}

TEST(sync_sysmem_builds_gpa_table)
{
    struct vhu_mpqemu_sysmem s = {0};
    struct fx f;
    uint8_t *ram;
    int ramfd, fds[2];

    ASSERT_OK(fx_init(&f));
    ramfd = guest_ram(4 << 20);
    ASSERT(ramfd >= 0);
    ram = mmap(NULL, 4 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, ramfd, 0);
    ASSERT(ram != MAP_FAILED);
    memcpy(ram + 0x200010, "hello", 6);
    /* what the pc machine sends: low RAM, a hole, the rest; one file */
    s.gpas[0] = 0; s.sizes[0] = 0xa0000; s.offsets[0] = 0;
    s.gpas[1] = 0x100000; s.sizes[1] = 0x300000; s.offsets[1] = 0x100000;
    fds[0] = fds[1] = ramfd;
    ASSERT_OK(qsend(&f, VHU_MPQEMU_SYNC_SYSMEM, sizeof(s), &s, sizeof(s), fds, 2));
    pump(&f);
    ASSERT(f.md.dma != NULL);
    ASSERT_EQ(f.md.dma->nregions, 2);
    ASSERT(vhu_mem_gpa_range(f.md.dma, 0x200010, 6) != NULL);
    ASSERT(memcmp(vhu_mem_gpa_range(f.md.dma, 0x200010, 6), "hello", 6) == 0);
    ASSERT(vhu_mem_gpa_range(f.md.dma, 0xa0000, 1) == NULL);   /* the hole */
    ASSERT(vhu_mem_gpa_range(f.md.dma, 0x3ffffc, 4) != NULL);
    ASSERT(vhu_mem_gpa_range(f.md.dma, 0x3ffffc, 5) == NULL);
    /* the device writes, the "guest" sees it */
    memcpy(vhu_mem_gpa_range(f.md.dma, 0x1000, 4), "dma!", 4);
    ASSERT(memcmp(ram + 0x1000, "dma!", 4) == 0);
    /* a new sync replaces the table */
    s.gpas[0] = 0x100000; s.sizes[0] = 0x100000; s.offsets[0] = 0x100000;
    ASSERT_OK(qsend(&f, VHU_MPQEMU_SYNC_SYSMEM, sizeof(s), &s, sizeof(s), fds, 1));
    pump(&f);
    ASSERT_EQ(f.md.set_dma_calls, 2);
    ASSERT_EQ(f.md.dma->nregions, 1);
    ASSERT(vhu_mem_gpa_range(f.md.dma, 0x1000, 4) == NULL);
    ASSERT_EQ(cfg_rd(&f, 0, 2), 0x1af4);              /* still talking */
    munmap(ram, 4 << 20);
    close(ramfd);
    ASSERT_EQ(f.closes, 0);
    ASSERT_EQ(fx_fini(&f), 0);
    ASSERT_EQ(f.md.set_dma_calls, 3);                 /* free: set_dma(NULL) */
}

TEST(irqfd_and_reset)
{
    struct vhu_mpqemu_stats st;
    struct fx f;
    uint64_t v = 1;
    int efd[2];

    ASSERT_OK(fx_init(&f));
    f.pd.bus_ops->irq(f.pd.bus, 0);                   /* no irqfd yet: nothing */
    efd[0] = vhu_eventfd_new();
    efd[1] = vhu_eventfd_new();
    ASSERT_OK(qsend(&f, VHU_MPQEMU_SET_IRQFD, 0, NULL, 0, efd, 2));
    pump(&f);
    f.pd.bus_ops->irq(f.pd.bus, 3);
    ASSERT_EQ(vhu_eventfd_drain(efd[0]), 1);
    vhu_fd_close(&efd[0]);
    vhu_fd_close(&efd[1]);
    /* DEVICE_RESET: the model resets, BAR registers clear, RET 0 */
    ASSERT_OK(cfg_wr(&f, 0x10, 0xfebf0000, 4));
    ASSERT_OK(qsend(&f, VHU_MPQEMU_DEVICE_RESET, 0, NULL, 0, NULL, 0));
    ASSERT_OK(qret(&f, &v));
    ASSERT_EQ(v, 0);
    ASSERT_EQ(f.md.resets, 1);
    ASSERT_EQ(cfg_rd(&f, 0x10, 4), 0);
    vhu_mpqemu_get_stats(f.m, &st);
    ASSERT_EQ(st.irqs, 1);
    ASSERT_EQ(st.resets, 1);
    ASSERT_EQ(f.closes, 0);
    ASSERT_EQ(fx_fini(&f), 0);
}

/* A message dribbled a few bytes at a time is served like a whole one. */
TEST(partial_reads)
{
    struct vhu_mpqemu_hdr h = {.cmd = VHU_MPQEMU_PCI_CFGREAD, .size = sizeof(struct vhu_mpqemu_cfg)};
    struct vhu_mpqemu_cfg c = {.addr = 2, .len = 2};
    uint8_t buf[sizeof(h) + sizeof(c)];
    struct fx f;
    uint64_t v = 0;

    ASSERT_OK(fx_init(&f));
    memcpy(buf, &h, sizeof(h));
    memcpy(buf + sizeof(h), &c, sizeof(c));
    for (size_t i = 0; i < sizeof(buf); i += 5) {
        ASSERT_OK(qsend_raw(&f, buf + i, VHU_MIN(sizeof(buf) - i, 5), NULL, 0));
        pump(&f);
    }
    ASSERT_OK(qret(&f, &v));
    ASSERT_EQ(v, 0x1017);
    ASSERT_EQ(f.closes, 0);
    ASSERT_EQ(fx_fini(&f), 0);
}

/* Requests sent without reading the replies: the adapter stops reading while a reply waits for
 * room, and answers every request once the peer reads. */
TEST(replies_wait_for_room)
{
    struct vhu_mpqemu_cfg c = {.addr = 0, .len = 4};
    struct fx f;
    unsigned sent = 0, got = 0;
    int small = 4096;

    ASSERT_OK(fx_init(&f));
    ASSERT_OK(setsockopt(f.q, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)));
    ASSERT_OK(setsockopt(f.q, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)));
    ASSERT_OK(vhu_fd_set_nonblock(f.q, true));
    for (;;) {
        uint8_t buf[sizeof(struct vhu_mpqemu_hdr) + sizeof(c)];
        struct vhu_mpqemu_hdr h = {.cmd = VHU_MPQEMU_PCI_CFGREAD, .size = sizeof(c)};

        memcpy(buf, &h, sizeof(h));
        memcpy(buf + sizeof(h), &c, sizeof(c));
        pump(&f);
        if (send(f.q, buf, sizeof(buf), MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)sizeof(buf))
            break; /* both directions full (a partial send does not happen at this size) */
        sent++;
        ASSERT(sent < 1000000);
    }
    ASSERT(sent > 10);
    ASSERT_OK(vhu_fd_set_nonblock(f.q, false));
    while (got < sent) {
        uint64_t v = 0;

        if (qret(&f, &v) < 0)
            break;
        ASSERT_EQ(v, 0x10171af4);
        got++;
    }
    ASSERT_EQ(got, sent);
    ASSERT_EQ(f.closes, 0);
    ASSERT_EQ(fx_fini(&f), 0);
}

TEST(peer_closes)
{
    struct fx f;

    ASSERT_OK(fx_init(&f));
    vhu_fd_close(&f.q);
    pump(&f);
    ASSERT_EQ(f.closes, 1);
    ASSERT_EQ(f.md.resets, 1);
    ASSERT_EQ(f.md.set_dma_calls, 1);   /* set_dma(NULL) */
    ASSERT_EQ(fx_fini(&f), 0);
    ASSERT_EQ(f.md.resets, 1);          /* not again at free */
}

/* ---- malformed input: each one closes the connection once, cleanly ------------------------- */

enum bad_kind {
    BAD_SIZE_LIE,        /* CFGREAD claiming 11 bytes */
    BAD_SIZE_HUGE,       /* a size past any payload */
    BAD_TOO_MANY_FDS,    /* SYNC_SYSMEM with 9 fds */
    BAD_FDS_ON_CFG,      /* fds on a request that takes none */
    BAD_FDS_IN_PAYLOAD,  /* fds arriving with the payload, not the header */
    BAD_UNKNOWN_CMD,
    BAD_RET_CMD,         /* QEMU never sends RET */
    BAD_NEG_CMD,
    BAD_TRUNC_HDR,
    BAD_TRUNC_PAYLOAD,
    BAD_CFG_LEN,
    BAD_CFG_ADDR,
    BAD_BAR_SIZE,
    BAD_BAR_IO,
    BAD_SYSMEM_NO_FDS,
    BAD_SYSMEM_UNSEALED, /* a sealable memfd without F_SEAL_SHRINK */
    BAD_SYSMEM_OVERLAP,
    BAD_SYSMEM_PAST_EOF,
    BAD_SYSMEM_NEG_OFF,
    BAD_IRQFD_ONE_FD,
    BAD_RESET_PAYLOAD,
    BAD_COUNT,
};

static void send_bad(struct fx *f, enum bad_kind k, int ramfd, int unsealed)
{
    struct vhu_mpqemu_cfg c = {.addr = 0, .len = 4};
    struct vhu_mpqemu_bar b = {.addr = 0xfebf0000, .size = 4, .memory = 1};
    struct vhu_mpqemu_sysmem s = {.sizes = {0x100000}};
    struct vhu_mpqemu_hdr h = {.cmd = VHU_MPQEMU_PCI_CFGREAD, .size = sizeof(c)};
    int fds[9];

    for (unsigned i = 0; i < 9; i++)
        fds[i] = ramfd;
    switch (k) {
    case BAD_SIZE_LIE:
        qsend(f, VHU_MPQEMU_PCI_CFGREAD, sizeof(c) - 1, &c, sizeof(c) - 1, NULL, 0);
        break;
    case BAD_SIZE_HUGE:
        qsend(f, VHU_MPQEMU_SYNC_SYSMEM, 1ull << 40, &s, sizeof(s), fds, 1);
        break;
    case BAD_TOO_MANY_FDS:
        qsend(f, VHU_MPQEMU_SYNC_SYSMEM, sizeof(s), &s, sizeof(s), fds, 9);
        break;
    case BAD_FDS_ON_CFG:
        qsend(f, VHU_MPQEMU_PCI_CFGREAD, sizeof(c), &c, sizeof(c), fds, 1);
        break;
    case BAD_FDS_IN_PAYLOAD:
        qsend_raw(f, &h, sizeof(h), NULL, 0);
        pump(f);
        qsend_raw(f, &c, sizeof(c), fds, 1);
        break;
    case BAD_UNKNOWN_CMD:
        qsend(f, 42, 0, NULL, 0, NULL, 0);
        break;
    case BAD_RET_CMD:
        qsend(f, VHU_MPQEMU_RET, 8, &c, 8, NULL, 0);
        break;
    case BAD_NEG_CMD:
        qsend(f, -1, 0, NULL, 0, NULL, 0);
        break;
    case BAD_TRUNC_HDR:
        qsend_raw(f, &h, 9, NULL, 0);
        pump(f);
        shutdown(f->q, SHUT_WR);
        break;
    case BAD_TRUNC_PAYLOAD:
        qsend(f, VHU_MPQEMU_PCI_CFGREAD, sizeof(c), &c, 4, NULL, 0);
        pump(f);
        shutdown(f->q, SHUT_WR);
        break;
    case BAD_CFG_LEN:
        c.len = 3;
        qsend(f, VHU_MPQEMU_PCI_CFGREAD, sizeof(c), &c, sizeof(c), NULL, 0);
        break;
    case BAD_CFG_ADDR:
        c.addr = 254;
        qsend(f, VHU_MPQEMU_PCI_CFGWRITE, sizeof(c), &c, sizeof(c), NULL, 0);
        break;
    case BAD_BAR_SIZE:
        b.size = 3;
        qsend(f, VHU_MPQEMU_BAR_READ, sizeof(b), &b, sizeof(b), NULL, 0);
        break;
    case BAD_BAR_IO:
        b.memory = 0;
        qsend(f, VHU_MPQEMU_BAR_WRITE, sizeof(b), &b, sizeof(b), NULL, 0);
        break;
    case BAD_SYSMEM_NO_FDS:
        qsend(f, VHU_MPQEMU_SYNC_SYSMEM, sizeof(s), &s, sizeof(s), NULL, 0);
        break;
    case BAD_SYSMEM_UNSEALED:
        qsend(f, VHU_MPQEMU_SYNC_SYSMEM, sizeof(s), &s, sizeof(s), &unsealed, 1);
        break;
    case BAD_SYSMEM_OVERLAP:
        s.gpas[1] = 0x80000;
        s.sizes[1] = 0x1000;
        qsend(f, VHU_MPQEMU_SYNC_SYSMEM, sizeof(s), &s, sizeof(s), fds, 2);
        break;
    case BAD_SYSMEM_PAST_EOF:
        s.offsets[0] = 0x200000;
        qsend(f, VHU_MPQEMU_SYNC_SYSMEM, sizeof(s), &s, sizeof(s), fds, 1);
        break;
    case BAD_SYSMEM_NEG_OFF:
        s.offsets[0] = -4096;
        qsend(f, VHU_MPQEMU_SYNC_SYSMEM, sizeof(s), &s, sizeof(s), fds, 1);
        break;
    case BAD_IRQFD_ONE_FD:
        qsend(f, VHU_MPQEMU_SET_IRQFD, 0, NULL, 0, fds, 1);
        break;
    case BAD_RESET_PAYLOAD:
        qsend(f, VHU_MPQEMU_DEVICE_RESET, 8, &c, 8, NULL, 0);
        break;
    case BAD_COUNT:
        break;
    }
}

TEST(malformed_messages_close_cleanly)
{
    int ramfd = guest_ram(1 << 20), unsealed = memfd_create("u", MFD_CLOEXEC | MFD_ALLOW_SEALING);

    ASSERT(ramfd >= 0 && unsealed >= 0);
    ASSERT_OK(ftruncate(unsealed, 1 << 20));
    vhu_log_set_sink(NULL, NULL, VHU_LOG_ERROR); /* the refusals log; keep the output short */
    for (int k = 0; k < BAD_COUNT; k++) {
        struct fx f;
        uint64_t v = 0;

        ASSERT_OK(fx_init(&f));
        f.free_in_cb = k % 2; /* half of them free the adapter from inside on_close */
        send_bad(&f, (enum bad_kind)k, ramfd, unsealed);
        pump(&f);
        if (k == BAD_UNKNOWN_CMD || k == BAD_RET_CMD || k == BAD_NEG_CMD) {
            ASSERT_OK(qret(&f, &v));    /* the proxy's error value, then the close */
            ASSERT_EQ(v, UINT64_MAX);
        }
        ASSERT_EQ(qret(&f, &v), -1);    /* EOF: nothing more */
        if (f.closes != 1)
            FAIL_AT("bad input %d: %u closes", k, f.closes);
        ASSERT_EQ(f.md.resets, 1);
        ASSERT(f.md.dma == NULL);
        if (fx_fini(&f) != 0)
            FAIL_AT("bad input %d: fd leak", k);
    }
    vhu_log_set_sink(vhu_log_stderr_sink, NULL, VHU_LOG_INFO);
    close(ramfd);
    close(unsealed);
}

TEST(refuses_unpresentable_devices)
{
    struct vhu_pcidev pd = {.ops = &model_ops, .cfg_size = 256,
                            .bars = {[0] = {1ull << 32, VHU_PCIDEV_BAR_MEM | VHU_PCIDEV_BAR_64}}};
    struct vhu_mpqemu *m = NULL;
    struct vhu_loop *loop;
    int before = vhu_fd_count_self(), sv[2], p[2];

    ASSERT_OK(vhu_loop_new(&loop));
    vhu_log_set_sink(NULL, NULL, VHU_LOG_ERROR);
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    ASSERT_ERR(-EINVAL, vhu_mpqemu_new(loop, &pd, sv[1], &m));      /* 4 GiB BAR */
    close(sv[0]);
    pd.bars[0] = (struct vhu_pcidev_bar){4096, 0};                   /* I/O BAR */
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    ASSERT_ERR(-EINVAL, vhu_mpqemu_new(loop, &pd, sv[1], &m));
    close(sv[0]);
    pd.bars[0] = (struct vhu_pcidev_bar){4096, VHU_PCIDEV_BAR_MEM};
    ASSERT_OK(pipe2(p, O_CLOEXEC));
    ASSERT_ERR(-ENOTSOCK, vhu_mpqemu_new(loop, &pd, p[0], &m));     /* not a socket */
    close(p[1]);
    vhu_log_set_sink(vhu_log_stderr_sink, NULL, VHU_LOG_INFO);
    ASSERT(m == NULL);
    ASSERT(pd.bus_ops == NULL);
    vhu_loop_free(loop);
    ASSERT_EQ(vhu_fd_count_self() - before, 0);
}
