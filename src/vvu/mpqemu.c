/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * QEMU's multi-process proxy (x-pci-proxy-dev) as a bus for a struct vhu_pcidev. See mpqemu.h
 * for what the adapter does; the wire facts come from QEMU 7.2 hw/remote/{proxy.c,
 * mpqemu-link.c, proxy-memory-listener.c}.
 *
 * Receive path: non-blocking, resumable. The header is read first (its fds come with its first
 * byte: QEMU sends header, payload and fds in one sendmsg), then exactly `size` payload bytes,
 * so a read never crosses into the next message. Replies are 24 bytes; QEMU waits for each one
 * before it sends the next request, so at most one is pending: if a reply cannot be written
 * whole, reading stops until it is (a peer that does not read its replies stalls only itself).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhu/log.h"
#include "vhu/util.h"
#include "vvu/mpqemu.h"

/* Config space the adapter owns: BAR0..5 and the CardBus CIS pointer (QEMU's probe loop covers
 * PCI_NUM_REGIONS = 7 dwords from 0x10). */
#define CFG_BAR0 0x10u
#define CFG_EMU_END 0x2cu
#define CFG_BAR_MEM_PREFETCH 0x8u
#define BAR_MAX_SIZE (1ull << 31)   /* 32-bit memory BAR */

/* Leave room for more fds than allowed, so "too many" is told apart from truncation. */
#define RX_FDS_ROOM (2 * VHU_MPQEMU_MAX_FDS)

struct mpq_reply {
    struct vhu_mpqemu_hdr hdr;
    uint64_t val;
};

struct vhu_mpqemu {
    struct vhu_loop *loop;
    struct vhu_pcidev *pd;
    int fd;                 /* -1 once the connection ended */
    int irq_fd;             /* INTx irqfd from SET_IRQFD (-1: none) */
    uint32_t bar_raw[VHU_PCIDEV_NUM_BARS];  /* what the guest wrote to each BAR register */

    /* the message being received */
    struct vhu_mpqemu_hdr hdr;
    union {
        uint8_t bytes[VHU_MPQEMU_PAYLOAD_MAX];
        struct vhu_mpqemu_sysmem sysmem;
        struct vhu_mpqemu_cfg cfg;
        struct vhu_mpqemu_bar bar;
    } payload;
    size_t have;            /* bytes of the current part (header, then payload) */
    bool in_payload;
    int fds[VHU_MPQEMU_MAX_FDS];
    unsigned nfds;

    /* the reply not yet written whole */
    struct mpq_reply out;
    size_t out_off, out_len;

    void (*on_close)(void *);
    void *on_close_opaque;
    struct vhu_mpqemu_stats st;
};

static const char *const cmd_names[VHU_MPQEMU_CMD_MAX] = {
    [VHU_MPQEMU_SYNC_SYSMEM] = "SYNC_SYSMEM", [VHU_MPQEMU_RET] = "RET",
    [VHU_MPQEMU_PCI_CFGWRITE] = "PCI_CFGWRITE", [VHU_MPQEMU_PCI_CFGREAD] = "PCI_CFGREAD",
    [VHU_MPQEMU_BAR_WRITE] = "BAR_WRITE", [VHU_MPQEMU_BAR_READ] = "BAR_READ",
    [VHU_MPQEMU_SET_IRQFD] = "SET_IRQFD", [VHU_MPQEMU_DEVICE_RESET] = "DEVICE_RESET",
};

/* Payload size (exact, as QEMU sends it) and whether fds may come along, per command. */
static const struct {
    uint64_t size;
    bool fds;          /* the handler checks the count */
} rules[VHU_MPQEMU_CMD_MAX] = {
    [VHU_MPQEMU_SYNC_SYSMEM] = {sizeof(struct vhu_mpqemu_sysmem), true},
    [VHU_MPQEMU_PCI_CFGWRITE] = {sizeof(struct vhu_mpqemu_cfg), false},
    [VHU_MPQEMU_PCI_CFGREAD] = {sizeof(struct vhu_mpqemu_cfg), false},
    [VHU_MPQEMU_BAR_WRITE] = {sizeof(struct vhu_mpqemu_bar), false},
    [VHU_MPQEMU_BAR_READ] = {sizeof(struct vhu_mpqemu_bar), false},
    [VHU_MPQEMU_SET_IRQFD] = {0, true},
    [VHU_MPQEMU_DEVICE_RESET] = {0, false},
};

static const char *cmd_name(int32_t cmd)
{
    return cmd >= 0 && cmd < VHU_MPQEMU_CMD_MAX ? cmd_names[cmd] : "unknown command";
}

static void drop_fds(struct vhu_mpqemu *m)
{
    for (unsigned i = 0; i < m->nfds; i++)
        vhu_fd_close(&m->fds[i]);
    m->nfds = 0;
}

/* ---- the model's bus ops -------------------------------------------------------------------- */

static void bus_irq(void *bus, unsigned vector)
{
    struct vhu_mpqemu *m = bus;

    (void)vector; /* one INTx line: every vector asserts it */
    if (m->irq_fd >= 0 && vhu_eventfd_signal(m->irq_fd) == 0)
        m->st.irqs++;
}

static const struct vhu_pcidev_bus_ops mpq_bus_ops = {
    .irq = bus_irq,
    /* nothing of a BAR is mappable through the proxy: layout changes do not matter */
};

/* ---- connection end ------------------------------------------------------------------------- */

/* Ends the connection; the model loses its DMA memory and is reset. Returns false when the
 * connection was already down. */
static bool conn_down(struct vhu_mpqemu *m)
{
    if (m->fd < 0)
        return false;
    vhu_loop_del(m->loop, m->fd);
    vhu_fd_close(&m->fd);
    vhu_fd_close(&m->irq_fd);
    drop_fds(m);
    m->out_len = m->out_off = 0;
    m->pd->ops->set_dma(m->pd->dev, NULL);
    m->pd->ops->reset(m->pd->dev);
    return true;
}

/* The last thing an event handler does: on_close may free m. */
static void conn_closed(struct vhu_mpqemu *m)
{
    if (conn_down(m) && m->on_close)
        m->on_close(m->on_close_opaque);
}

/* ---- replies -------------------------------------------------------------------------------- */

static void on_event(int fd, uint32_t events, void *opaque);

/* 0: written (or queued: the watch now waits for OUT); -errno: the connection is broken. */
static int send_ret(struct vhu_mpqemu *m, uint64_t val)
{
    ssize_t n;

    m->out = (struct mpq_reply){.hdr = {.cmd = VHU_MPQEMU_RET, .size = sizeof(val)}, .val = val};
    m->out_off = 0;
    m->out_len = sizeof(m->out);
    do {
        n = send(m->fd, &m->out, m->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN)
        return -errno;
    if (n > 0)
        m->out_off = (size_t)n;
    if (m->out_off == m->out_len) {
        m->out_len = m->out_off = 0;
        return 0;
    }
    return vhu_loop_mod(m->loop, m->fd, VHU_LOOP_OUT);
}

/* OUT ready: finish the pending reply, then read again. */
static int flush_out(struct vhu_mpqemu *m)
{
    while (m->out_off < m->out_len) {
        ssize_t n = send(m->fd, (uint8_t *)&m->out + m->out_off, m->out_len - m->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN ? 0 : -errno;
        m->out_off += (size_t)n;
    }
    m->out_len = m->out_off = 0;
    return vhu_loop_mod(m->loop, m->fd, VHU_LOOP_IN);
}

/* ---- config space --------------------------------------------------------------------------- */

static bool bar_is_upper_half(const struct vhu_pcidev *pd, unsigned i)
{
    return i > 0 && pd->bars[i - 1].size && (pd->bars[i - 1].flags & VHU_PCIDEV_BAR_64);
}

/* What the guest reads at BAR register i (see mpqemu.h: every BAR is a 32-bit memory BAR). */
static uint32_t bar_reg(const struct vhu_mpqemu *m, unsigned i)
{
    const struct vhu_pcidev_bar *b = &m->pd->bars[i];

    if (!b->size || bar_is_upper_half(m->pd, i))
        return 0;
    return (m->bar_raw[i] & ~(uint32_t)(b->size - 1) & ~0xfu) |
           ((b->flags & VHU_PCIDEV_BAR_PREFETCH) ? CFG_BAR_MEM_PREFETCH : 0);
}

/* The guest-physical base of BAR i, 0 while unassigned. */
static uint64_t bar_base(const struct vhu_mpqemu *m, unsigned i)
{
    return bar_reg(m, i) & ~0xfu;
}

static uint8_t emu_cfg_byte(const struct vhu_mpqemu *m, uint32_t a)
{
    unsigned d = (a - CFG_BAR0) / 4;

    if (d >= VHU_PCIDEV_NUM_BARS)
        return 0; /* CardBus CIS pointer: none */
    return (uint8_t)(bar_reg(m, d) >> (8 * (a % 4)));
}

static void emu_cfg_write_byte(struct vhu_mpqemu *m, uint32_t a, uint8_t v)
{
    unsigned d = (a - CFG_BAR0) / 4, sh = 8 * (a % 4);

    if (d < VHU_PCIDEV_NUM_BARS)
        m->bar_raw[d] = (m->bar_raw[d] & ~(0xffu << sh)) | ((uint32_t)v << sh);
}

static bool cfg_is_emulated(uint32_t a)
{
    return a >= CFG_BAR0 && a < CFG_EMU_END;
}

static uint32_t cfg_read(struct vhu_mpqemu *m, uint32_t addr, uint32_t len)
{
    uint8_t buf[4] = {0};
    uint32_t v = 0;

    if (addr + len <= CFG_BAR0 || addr >= CFG_EMU_END) {
        m->pd->ops->cfg_read(m->pd->dev, addr, buf, len);
    } else {
        /* overlaps the adapter's registers: byte by byte */
        for (uint32_t i = 0; i < len; i++) {
            if (cfg_is_emulated(addr + i))
                buf[i] = emu_cfg_byte(m, addr + i);
            else
                m->pd->ops->cfg_read(m->pd->dev, addr + i, &buf[i], 1);
        }
    }
    for (uint32_t i = 0; i < len; i++)
        v |= (uint32_t)buf[i] << (8 * i);
    return v;
}

static void cfg_write(struct vhu_mpqemu *m, uint32_t addr, uint32_t val, uint32_t len)
{
    uint8_t buf[4];

    for (uint32_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(val >> (8 * i));
    if (addr + len <= CFG_BAR0 || addr >= CFG_EMU_END) {
        m->pd->ops->cfg_write(m->pd->dev, addr, buf, len);
        return;
    }
    for (uint32_t i = 0; i < len; i++) {
        if (cfg_is_emulated(addr + i))
            emu_cfg_write_byte(m, addr + i, buf[i]);
        else
            m->pd->ops->cfg_write(m->pd->dev, addr + i, &buf[i], 1);
    }
}

/* ---- message handlers: 0, or -EPROTO after logging why (the connection then ends) --------- */

static int handle_cfg(struct vhu_mpqemu *m, bool write)
{
    const struct vhu_mpqemu_cfg *c = &m->payload.cfg;
    uint32_t len = (uint32_t)c->len;

    if (c->len != 1 && c->len != 2 && c->len != 4) {
        vhu_err("mpqemu: %s: access length %d", cmd_name(m->hdr.cmd), c->len);
        return -EPROTO;
    }
    if (c->addr > m->pd->cfg_size - len) {
        vhu_err("mpqemu: %s: offset 0x%x + %u past config space (%u bytes)", cmd_name(m->hdr.cmd),
                c->addr, len, m->pd->cfg_size);
        return -EPROTO;
    }
    if (write) {
        m->st.cfg_writes++;
        cfg_write(m, c->addr, c->val, len);
        return send_ret(m, 0);
    }
    m->st.cfg_reads++;
    return send_ret(m, cfg_read(m, c->addr, len));
}

/* Which BAR holds [addr, addr + size)? VHU_PCIDEV_NUM_BARS: none. */
static unsigned bar_decode(const struct vhu_mpqemu *m, uint64_t addr, uint32_t size,
                           uint64_t *off)
{
    for (unsigned i = 0; i < VHU_PCIDEV_NUM_BARS; i++) {
        uint64_t base = bar_base(m, i), bsize = m->pd->bars[i].size;

        if (!base || addr < base || addr - base > bsize - size)
            continue;
        *off = addr - base;
        return i;
    }
    return VHU_PCIDEV_NUM_BARS;
}

static int handle_bar(struct vhu_mpqemu *m, bool write)
{
    const struct vhu_mpqemu_bar *b = &m->payload.bar;
    uint64_t off = 0, val = 0;
    unsigned bar;

    if (b->size != 1 && b->size != 2 && b->size != 4 && b->size != 8) {
        vhu_err("mpqemu: %s: access size %u", cmd_name(m->hdr.cmd), b->size);
        return -EPROTO;
    }
    if (b->memory != 1) {
        vhu_err("mpqemu: %s: I/O space access (the device has no I/O BAR)", cmd_name(m->hdr.cmd));
        return -EPROTO;
    }
    bar = bar_decode(m, b->addr, b->size, &off);
    if (bar == VHU_PCIDEV_NUM_BARS) {
        /* QEMU's and our copy of a BAR register disagree for a moment (the guest moves it):
         * not a protocol error. Reads see all-ones, writes are dropped. */
        m->st.bar_misses++;
        vhu_err_rl("mpqemu: %s at 0x%llx (%u bytes) is in no BAR", cmd_name(m->hdr.cmd),
                   (unsigned long long)b->addr, b->size);
        return send_ret(m, write ? 0 : UINT64_MAX);
    }
    if (write) {
        m->st.bar_writes++;
        memcpy(&val, &b->val, sizeof(val));
        m->pd->ops->bar_write(m->pd->dev, bar, off, &val, b->size); /* host order = LE on x86 */
        return send_ret(m, 0);
    }
    m->st.bar_reads++;
    m->pd->ops->bar_read(m->pd->dev, bar, off, &val, b->size);
    return send_ret(m, val);
}

static int handle_sysmem(struct vhu_mpqemu *m)
{
    const struct vhu_mpqemu_sysmem *s = &m->payload.sysmem;
    struct vhu_mem_region *regions[VHU_MPQEMU_MAX_FDS];
    struct vhu_mem_table *t;
    unsigned n;
    int r = 0;

    if (m->nfds == 0) {
        vhu_err("mpqemu: SYNC_SYSMEM without memory fds");
        return -EPROTO;
    }
    for (n = 0; n < m->nfds; n++) {
        struct vhu_mem_region_desc d = {
            .gpa = s->gpas[n], .size = s->sizes[n],
            .uva = s->gpas[n], /* no frontend addresses here: keep the uva space distinct */
            .mmap_offset = (uint64_t)s->offsets[n], .fd = m->fds[n],
        };

        r = s->offsets[n] < 0 ? -EINVAL : vhu_mem_region_map(&d, &regions[n]);
        if (r < 0) {
            vhu_err("mpqemu: SYNC_SYSMEM: region %u (gpa 0x%llx size 0x%llx offset %lld) "
                    "refused: %s", n, (unsigned long long)s->gpas[n],
                    (unsigned long long)s->sizes[n], (long long)s->offsets[n], strerror(-r));
            break;
        }
    }
    if (r == 0) {
        r = vhu_mem_table_new(regions, n, &t);
        if (r == 0) {
            m->st.sysmem_syncs++;
            m->pd->ops->set_dma(m->pd->dev, t); /* the model takes our reference */
            return 0;
        }
        vhu_err("mpqemu: SYNC_SYSMEM: %u regions refused: %s", n, strerror(-r));
    }
    while (n > 0)
        vhu_mem_region_free(regions[--n]);
    return -EPROTO;
}

static int handle_irqfd(struct vhu_mpqemu *m)
{
    if (m->nfds != 2) {
        vhu_err("mpqemu: SET_IRQFD with %u fds (2 expected)", m->nfds);
        return -EPROTO;
    }
    /* fds[0] asserts INTx; fds[1] is the resample notifier (level-triggered INTx with KVM),
     * which a device that never holds the line does not need. */
    vhu_fd_replace(&m->irq_fd, m->fds[0]);
    m->fds[0] = -1;
    return 0;
}

static int dispatch(struct vhu_mpqemu *m)
{
    int32_t cmd = m->hdr.cmd;

    switch (cmd) {
    case VHU_MPQEMU_SYNC_SYSMEM:
        return handle_sysmem(m);
    case VHU_MPQEMU_PCI_CFGWRITE:
    case VHU_MPQEMU_PCI_CFGREAD:
        return handle_cfg(m, cmd == VHU_MPQEMU_PCI_CFGWRITE);
    case VHU_MPQEMU_BAR_WRITE:
    case VHU_MPQEMU_BAR_READ:
        return handle_bar(m, cmd == VHU_MPQEMU_BAR_WRITE);
    case VHU_MPQEMU_SET_IRQFD:
        return handle_irqfd(m);
    case VHU_MPQEMU_DEVICE_RESET:
        m->st.resets++;
        memset(m->bar_raw, 0, sizeof(m->bar_raw)); /* QEMU clears its copy too (PCI reset) */
        m->pd->ops->reset(m->pd->dev);
        return send_ret(m, 0);
    default:
        return -EPROTO; /* unreachable: check_header refused it */
    }
}

/* Header complete: is it one QEMU could have sent? */
static int check_header(struct vhu_mpqemu *m)
{
    int32_t cmd = m->hdr.cmd;

    if (cmd < 0 || cmd >= VHU_MPQEMU_CMD_MAX || cmd == VHU_MPQEMU_RET) {
        vhu_err("mpqemu: unexpected command %d (size %llu)", cmd,
                (unsigned long long)m->hdr.size);
        /* the proxy treats a RET of UINT64_MAX as a failed request */
        send_ret(m, UINT64_MAX);
        return -EPROTO;
    }
    if (m->nfds > VHU_MPQEMU_MAX_FDS) {
        vhu_err("mpqemu: %s with %u fds (at most %u)", cmd_name(cmd), m->nfds,
                VHU_MPQEMU_MAX_FDS);
        return -EPROTO;
    }
    if (m->hdr.size != rules[cmd].size) {
        vhu_err("mpqemu: %s: payload size %llu (%llu expected)", cmd_name(cmd),
                (unsigned long long)m->hdr.size, (unsigned long long)rules[cmd].size);
        return -EPROTO;
    }
    if (m->nfds && !rules[cmd].fds) {
        vhu_err("mpqemu: %s with %u fds", cmd_name(cmd), m->nfds);
        return -EPROTO;
    }
    return 0;
}

/* ---- receive -------------------------------------------------------------------------------- */

/* Take the SCM_RIGHTS fds of one recvmsg. Every fd received is kept in m->fds or closed. */
static int take_fds(struct vhu_mpqemu *m, struct msghdr *mh)
{
    int r = 0;

    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        size_t n;
        int *fds;

        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        fds = (int *)CMSG_DATA(c);
        for (size_t i = 0; i < n; i++) {
            int fd;

            memcpy(&fd, &fds[i], sizeof(fd));
            if (m->in_payload || m->nfds >= VHU_MPQEMU_MAX_FDS) {
                close(fd);
                r = m->in_payload ? -EBADMSG : -EMSGSIZE;
                continue;
            }
            m->fds[m->nfds++] = fd;
        }
    }
    if (mh->msg_flags & MSG_CTRUNC)
        r = -EMSGSIZE;
    return r;
}

/* One recvmsg into the current part. >0: bytes; 0: EOF; -EAGAIN; other -errno. */
static ssize_t rx_step(struct vhu_mpqemu *m)
{
    union {
        char buf[CMSG_SPACE(RX_FDS_ROOM * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    uint8_t *base = m->in_payload ? m->payload.bytes : (uint8_t *)&m->hdr;
    size_t want = m->in_payload ? m->hdr.size : sizeof(m->hdr);
    struct iovec iov = {.iov_base = base + m->have, .iov_len = want - m->have};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1,
                        .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)};
    ssize_t n;
    int r;

    do {
        n = recvmsg(m->fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    r = take_fds(m, &mh);
    if (r == -EBADMSG) {
        vhu_err("mpqemu: fds arrived with the payload of %s", cmd_name(m->hdr.cmd));
        return -EPROTO;
    }
    if (r < 0) {
        vhu_err("mpqemu: more than %u fds with one message", VHU_MPQEMU_MAX_FDS);
        return -EPROTO;
    }
    return n;
}

/* Read and handle messages until the socket is empty or a reply waits to be written.
 * 0: keep going; -EPROTO: violation (logged); -ECONNRESET: EOF or socket error. */
static int rx(struct vhu_mpqemu *m)
{
    while (m->out_len == 0) {
        ssize_t n = rx_step(m);
        int r;

        if (n == -EAGAIN)
            return 0;
        if (n == -EPROTO)
            return -EPROTO;
        if (n <= 0) {
            if (n == 0 && m->in_payload)
                vhu_err("mpqemu: connection closed inside a %s message", cmd_name(m->hdr.cmd));
            else if (n == 0 && m->have)
                vhu_err("mpqemu: connection closed inside a message header");
            else if (n < 0)
                vhu_err("mpqemu: receive: %s", strerror((int)-n));
            return -ECONNRESET;
        }
        m->have += (size_t)n;
        if (!m->in_payload) {
            if (m->have < sizeof(m->hdr))
                continue;
            r = check_header(m);
            if (r < 0)
                return r;
            m->in_payload = true;
            m->have = 0;
        }
        if (m->have < m->hdr.size)
            continue;
        r = dispatch(m);
        drop_fds(m); /* what the handler did not take */
        m->have = 0;
        m->in_payload = false;
        if (r < 0)
            return r;
    }
    return 0;
}

static void on_event(int fd, uint32_t events, void *opaque)
{
    struct vhu_mpqemu *m = opaque;
    int r = 0;

    (void)fd;
    if (m->out_len && (events & (VHU_LOOP_OUT | VHU_LOOP_ERR | VHU_LOOP_HUP)))
        r = flush_out(m);
    if (r == 0 && m->out_len == 0 && (events & (VHU_LOOP_IN | VHU_LOOP_ERR | VHU_LOOP_HUP)))
        r = rx(m);
    if (r < 0)
        conn_closed(m); /* last: may free m */
}

/* ---- object --------------------------------------------------------------------------------- */

static int check_pcidev(const struct vhu_pcidev *pd)
{
    if (!pd || !pd->ops || pd->bus_ops)
        return -EINVAL;
    if (pd->cfg_size != 256 && pd->cfg_size != 4096)
        return -EINVAL;
    for (unsigned i = 0; i < VHU_PCIDEV_NUM_BARS; i++) {
        const struct vhu_pcidev_bar *b = &pd->bars[i];

        if (!b->size)
            continue;
        if (!(b->flags & VHU_PCIDEV_BAR_MEM) || b->size < 4096 || b->size > BAR_MAX_SIZE ||
            (b->size & (b->size - 1))) {
            vhu_err("mpqemu: BAR%u (size 0x%llx, flags 0x%x) cannot be presented through the "
                    "proxy (32-bit memory BARs of 4 KiB .. 2 GiB only)", i,
                    (unsigned long long)b->size, b->flags);
            return -EINVAL;
        }
        if ((b->flags & VHU_PCIDEV_BAR_64) && i + 1 >= VHU_PCIDEV_NUM_BARS)
            return -EINVAL;
    }
    return 0;
}

int vhu_mpqemu_new(struct vhu_loop *loop, struct vhu_pcidev *pd, int fd, struct vhu_mpqemu **out)
{
    struct vhu_mpqemu *m;
    struct stat sb;
    int r;

    *out = NULL;
    r = check_pcidev(pd);
    if (r == 0 && (fstat(fd, &sb) < 0 || !S_ISSOCK(sb.st_mode)))
        r = -ENOTSOCK;
    if (r == 0)
        r = vhu_fd_set_nonblock(fd, true);
    if (r < 0) {
        close(fd);
        return r;
    }
    m = calloc(1, sizeof(*m));
    if (!m) {
        close(fd);
        return -ENOMEM;
    }
    m->loop = loop;
    m->pd = pd;
    m->fd = fd;
    m->irq_fd = -1;
    for (unsigned i = 0; i < VHU_MPQEMU_MAX_FDS; i++)
        m->fds[i] = -1;
    r = vhu_loop_add(loop, fd, VHU_LOOP_IN, on_event, m);
    if (r < 0) {
        close(fd);
        free(m);
        return r;
    }
    pd->bus_ops = &mpq_bus_ops;
    pd->bus = m;
    *out = m;
    return 0;
}

void vhu_mpqemu_free(struct vhu_mpqemu *m)
{
    if (!m)
        return;
    conn_down(m);
    m->pd->bus_ops = NULL;
    m->pd->bus = NULL;
    free(m);
}

void vhu_mpqemu_set_on_close(struct vhu_mpqemu *m, void (*cb)(void *), void *opaque)
{
    m->on_close = cb;
    m->on_close_opaque = opaque;
}

void vhu_mpqemu_get_stats(const struct vhu_mpqemu *m, struct vhu_mpqemu_stats *st)
{
    *st = m->st;
}
