/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vfio-user server for a struct vhu_pcidev. Each command is one handler: it checks the payload
 * (sizes, indexes, offsets, fd count) before the function is called, takes the fds it keeps (slot
 * set to -1; the dispatcher closes the rest) and writes its reply payload into the connection's
 * transmit buffer. Nothing on the access path (REGION_READ/WRITE, interrupts) allocates or logs.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto/vfio_user.h"
#include "util/sock.h"
#include "vfio_user_server.h"
#include "vhu/log.h"
#include "vhu/util.h"

#define MAX_AREAS 16                /* sparse mmap areas per BAR */
#define MAX_IO_FDS 16               /* io fds per GET_REGION_IO_FDS reply */
#define MAX_MSIX_VECTORS 2048       /* PCI's MSI-X table limit */
#define TX_CAP (sizeof(struct vfu_region_access) + VFU_MAX_DATA_XFER)

_Static_assert(TX_CAP >= sizeof(struct vfu_io_fds) + MAX_IO_FDS * sizeof(struct vfu_io_fd),
               "io fds reply fits the transmit buffer");

struct vfu_irq {
    int fd;        /* the client's eventfd for this MSI-X vector; -1: none */
    bool masked;   /* by SET_IRQS ACTION_MASK */
    bool pending;  /* raised while masked */
};

struct vhu_vfu_server {
    struct vhu_loop *loop;
    struct vhu_pcidev *pd;
    struct vhu_sock_path own;
    int listen_fd;
    int conn_fd;
    bool negotiated;           /* VERSION done on this connection */
    struct vfu_caps peer;      /* the client's capabilities */
    struct vfu_rx rx;
    uint8_t *rxbuf;            /* VFU_MAX_MSG */
    uint8_t *tx;               /* TX_CAP: the reply payload */
    struct vhu_mem_table *dma; /* the client's DMA_MAPs (our reference); NULL: none */
    struct vfu_irq *irqs;      /* pd->msix_vectors */
    const char *why;           /* the reason a handler refused, for the one log line */
};

/* A handler's reply: len bytes of s->tx, fds to send (ours, closed after the send). */
struct vfu_reply {
    size_t len;
    int fds[MAX_IO_FDS];
    unsigned nfds;
    bool hang_up;              /* close the connection after the reply */
};

static int refuse(struct vhu_vfu_server *s, int err, const char *why)
{
    s->why = why;
    return err;
}

/*
 * The fixed part of a request that starts with argsz (every one but the region accesses and
 * VERSION), copied out of the receive buffer: the payload and argsz must both cover it.
 */
static int take_req(struct vhu_vfu_server *s, const void *req, size_t len, void *in, size_t size)
{
    uint32_t argsz;

    if (len < size)
        return refuse(s, -EINVAL, "payload shorter than the request structure");
    memcpy(in, req, size);
    memcpy(&argsz, in, sizeof(argsz));
    if (argsz < size)
        return refuse(s, -EINVAL, "argsz below the request structure");
    return 0;
}

/* ---- the function's side -------------------------------------------------------------------- */

static void bus_irq(void *bus, unsigned vector)
{
    struct vhu_vfu_server *s = bus;

    if (vector >= s->pd->msix_vectors || s->irqs[vector].fd < 0)
        return;
    if (s->irqs[vector].masked)
        s->irqs[vector].pending = true;
    else
        vhu_eventfd_signal(s->irqs[vector].fd);
}

static void bus_layout_changed(void *bus)
{
    /* Nothing pushed: GET_REGION_INFO and GET_REGION_IO_FDS ask the function every time. */
    (void)bus;
}

static const struct vhu_pcidev_bus_ops bus_ops = {
    .irq = bus_irq,
    .layout_changed = bus_layout_changed,
};

static void publish_dma(struct vhu_vfu_server *s, struct vhu_mem_table *t)
{
    struct vhu_mem_table *old = s->dma;

    s->dma = t;
    if (s->pd->ops->set_dma)
        s->pd->ops->set_dma(s->pd->dev, t ? vhu_mem_table_get(t) : NULL);
    if (old)
        vhu_mem_table_put(old);
}

static void irqs_release(struct vhu_vfu_server *s, unsigned start, unsigned count)
{
    for (unsigned i = start; i < start + count; i++) {
        vhu_fd_close(&s->irqs[i].fd);
        s->irqs[i].masked = s->irqs[i].pending = false;
    }
}

/* ---- regions -------------------------------------------------------------------------------- */

static uint64_t region_size(const struct vhu_vfu_server *s, uint32_t index)
{
    if (index < VHU_PCIDEV_NUM_BARS)
        return s->pd->bars[index].size;
    if (index == VFIO_PCI_CONFIG_REGION_INDEX)
        return s->pd->cfg_size;
    return 0;
}

/*
 * Region access split into naturally aligned pieces of 8, 4, 2 or 1 bytes (4 at most in config
 * space), the sizes a register access has. The caller checked [off, off + count) is inside.
 */
static void region_access(struct vhu_vfu_server *s, uint32_t index, uint64_t off, uint8_t *buf,
                          uint32_t count, bool write)
{
    const struct vhu_pcidev_ops *ops = s->pd->ops;
    void *dev = s->pd->dev;
    bool cfg = index == VFIO_PCI_CONFIG_REGION_INDEX;

    while (count) {
        uint32_t w = cfg ? 4 : 8;
        while (w > count || (off & (w - 1)))
            w >>= 1;
        if (cfg && write)
            ops->cfg_write(dev, (uint32_t)off, buf, w);
        else if (cfg)
            ops->cfg_read(dev, (uint32_t)off, buf, w);
        else if (write)
            ops->bar_write(dev, index, off, buf, w);
        else
            ops->bar_read(dev, index, off, buf, w);
        off += w;
        buf += w;
        count -= w;
    }
}

/* The checks REGION_READ and REGION_WRITE share; data_len is what follows the access header. */
static int access_check(struct vhu_vfu_server *s, const void *req, size_t len, bool write,
                        struct vfu_region_access *a)
{
    if (len < sizeof(*a))
        return refuse(s, -EINVAL, "payload shorter than the access header");
    memcpy(a, req, sizeof(*a));
    if (a->region >= VFIO_PCI_NUM_REGIONS)
        return refuse(s, -EINVAL, "no such region");
    if (a->count > VFU_MAX_DATA_XFER)
        return refuse(s, -E2BIG, "count above max_data_xfer_size");
    if (len != sizeof(*a) + (write ? a->count : 0))
        return refuse(s, -EINVAL, "payload size does not match count");
    uint64_t size = region_size(s, a->region);
    if (a->offset > size || a->count > size - a->offset)
        return refuse(s, -EINVAL, "access beyond the region");
    return 0;
}

static int h_region_read(struct vhu_vfu_server *s, const void *req, size_t len, struct vfu_reply *rep)
{
    struct vfu_region_access a;
    int r = access_check(s, req, len, false, &a);

    if (r < 0)
        return r;
    memcpy(s->tx, &a, sizeof(a));
    region_access(s, a.region, a.offset, s->tx + sizeof(a), a.count, false);
    rep->len = sizeof(a) + a.count;
    return 0;
}

static int h_region_write(struct vhu_vfu_server *s, const void *req, size_t len, struct vfu_reply *rep)
{
    struct vfu_region_access a;
    int r = access_check(s, req, len, true, &a);

    if (r < 0)
        return r;
    /* The receive buffer is ours until the next message: write straight from it. */
    region_access(s, a.region, a.offset, (uint8_t *)req + sizeof(a), a.count, true);
    memcpy(s->tx, &a, sizeof(a));
    rep->len = sizeof(a);
    return 0;
}

/* The function's mappable areas of a BAR, checked against the BAR: fd, or -errno. */
static int bar_areas(struct vhu_vfu_server *s, unsigned bar, uint64_t *file_off,
                     struct vhu_pcidev_area *areas, unsigned *n)
{
    uint64_t size = s->pd->bars[bar].size;
    int fd;

    if (!s->pd->ops->bar_mmap || size == 0)
        return -ENOENT;
    *n = 0;
    fd = s->pd->ops->bar_mmap(s->pd->dev, bar, file_off, areas, MAX_AREAS, n);
    if (fd < 0)
        return fd;
    bool ok = *n >= 1 && *n <= MAX_AREAS;
    for (unsigned i = 0; ok && i < *n; i++) {
        ok = areas[i].len && areas[i].off <= size && areas[i].len <= size - areas[i].off &&
             areas[i].off <= UINT64_MAX - *file_off;
    }
    if (!ok) {
        vhu_err_rl("vfio-user: the device's mappable areas of BAR%u lie outside it: not offered",
                   bar);
        close(fd);
        return -EIO;
    }
    return fd;
}

static int h_region_info(struct vhu_vfu_server *s, const void *req, size_t len, struct vfu_reply *rep)
{
    struct vfu_region_info in, *out = (struct vfu_region_info *)s->tx;
    struct vhu_pcidev_area areas[MAX_AREAS];
    uint64_t file_off = 0;
    unsigned n = 0;
    int fd = -ENOENT;

    int r = take_req(s, req, len, &in, sizeof(in));

    if (r < 0)
        return r;
    if (in.index >= VFIO_PCI_NUM_REGIONS)
        return refuse(s, -EINVAL, "no such region");
    memset(out, 0, sizeof(*out));
    out->argsz = sizeof(*out);
    out->index = in.index;
    out->size = region_size(s, in.index);
    if (out->size)
        out->flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
    rep->len = sizeof(*out);
    /* Asked afresh each time: the window's backing follows the frontend's memory. */
    if (in.index < VHU_PCIDEV_NUM_BARS && s->peer.max_msg_fds >= 1)
        fd = bar_areas(s, in.index, &file_off, areas, &n);
    if (fd < 0)
        return 0;
    size_t need = sizeof(*out) + sizeof(struct vfu_cap_sparse) + n * sizeof(struct vfu_sparse_area);
    out->flags |= VFIO_REGION_INFO_FLAG_MMAP | VFIO_REGION_INFO_FLAG_CAPS;
    out->offset = file_off;
    out->argsz = (uint32_t)need;
    if (in.argsz < need) { /* the client asks again with room for the capability */
        close(fd);
        return 0;
    }
    struct vfu_cap_sparse cap = {
        .hdr = {.id = VFIO_REGION_INFO_CAP_SPARSE_MMAP, .version = 1, .next = 0},
        .nr_areas = n,
    };
    uint8_t *p = s->tx + sizeof(*out);
    out->cap_offset = sizeof(*out);
    memcpy(p, &cap, sizeof(cap));
    p += sizeof(cap);
    for (unsigned i = 0; i < n; i++) {
        struct vfu_sparse_area a = {.offset = areas[i].off, .size = areas[i].len};
        memcpy(p + i * sizeof(a), &a, sizeof(a));
    }
    rep->fds[rep->nfds++] = fd;
    rep->len = need;
    return 0;
}

static int h_region_io_fds(struct vhu_vfu_server *s, const void *req, size_t len,
                           struct vfu_reply *rep)
{
    struct vfu_io_fds in, *out = (struct vfu_io_fds *)s->tx;
    struct vhu_pcidev_iofd io[MAX_IO_FDS];
    unsigned max = VHU_MIN(s->peer.max_msg_fds, (uint32_t)MAX_IO_FDS);
    int n = 0, r = take_req(s, req, len, &in, sizeof(in));

    if (r < 0)
        return r;
    if (in.flags)
        return refuse(s, -EINVAL, "flags must be 0");
    if (in.index >= VFIO_PCI_NUM_REGIONS)
        return refuse(s, -EINVAL, "no such region");
    if (in.index < VHU_PCIDEV_NUM_BARS && s->pd->bars[in.index].size && s->pd->ops->io_fds && max)
        n = s->pd->ops->io_fds(s->pd->dev, in.index, io, max);
    if (n < 0 || (unsigned)n > max) {
        vhu_err_rl("vfio-user: the device failed to list the io fds of region %u", in.index);
        n = 0; /* (a count above max would be a device bug; it gave us no fds we could trust) */
    }
    uint64_t size = region_size(s, in.index);
    bool ok = true;
    for (int i = 0; i < n; i++) {
        ok = ok && io[i].fd >= 0 && io[i].bar == in.index && io[i].off <= size &&
             io[i].size <= size - io[i].off &&
             (io[i].size == 1 || io[i].size == 2 || io[i].size == 4 || io[i].size == 8);
    }
    size_t need = sizeof(*out) + (size_t)n * sizeof(struct vfu_io_fd);
    *out = (struct vfu_io_fds){.argsz = (uint32_t)need, .index = in.index, .count = (uint32_t)n};
    rep->len = sizeof(*out);
    if (!ok || in.argsz < need) {
        if (!ok)
            vhu_err_rl("vfio-user: the device's io fds of region %u are not valid doorbells",
                       in.index);
        for (int i = 0; i < n; i++) {
            if (io[i].fd >= 0)
                close(io[i].fd);
        }
        if (!ok)
            *out = (struct vfu_io_fds){.argsz = sizeof(*out), .index = in.index};
        return 0;
    }
    for (int i = 0; i < n; i++) {
        struct vfu_io_fd e = {
            .offset = io[i].off,
            .size = io[i].size,
            .fd_index = (uint32_t)i,
            .type = VFU_IO_FD_IOEVENTFD,
        };
        memcpy(s->tx + sizeof(*out) + (size_t)i * sizeof(e), &e, sizeof(e));
        rep->fds[rep->nfds++] = io[i].fd;
    }
    rep->len = need;
    return 0;
}

/* ---- device, interrupts --------------------------------------------------------------------- */

static int h_device_info(struct vhu_vfu_server *s, const void *req, size_t len, struct vfu_reply *rep)
{
    struct vfu_device_info in;

    int r = take_req(s, req, len, &in, sizeof(in));

    if (r < 0)
        return r;
    struct vfu_device_info out = {
        .argsz = sizeof(out),
        .flags = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET,
        .num_regions = VFIO_PCI_NUM_REGIONS,
        .num_irqs = VFIO_PCI_NUM_IRQS,
    };
    memcpy(s->tx, &out, sizeof(out));
    rep->len = sizeof(out);
    return 0;
}

static int h_irq_info(struct vhu_vfu_server *s, const void *req, size_t len, struct vfu_reply *rep)
{
    struct vfu_irq_info in;

    int r = take_req(s, req, len, &in, sizeof(in));

    if (r < 0)
        return r;
    if (in.index >= VFIO_PCI_NUM_IRQS)
        return refuse(s, -EINVAL, "no such interrupt type");
    struct vfu_irq_info out = {.argsz = sizeof(out), .index = in.index};
    /* MSI-X only: the function has no INTx pin, no MSI capability, no error or request irq. */
    if (in.index == VFIO_PCI_MSIX_IRQ_INDEX && s->pd->msix_vectors) {
        out.flags = VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE;
        out.count = s->pd->msix_vectors;
    }
    memcpy(s->tx, &out, sizeof(out));
    rep->len = sizeof(out);
    return 0;
}

/* One action on one vector of a SET_IRQS (DATA_NONE or a true DATA_BOOL). */
static void irq_action(struct vhu_vfu_server *s, uint32_t action, unsigned v)
{
    struct vfu_irq *q = &s->irqs[v];

    switch (action) {
    case VFIO_IRQ_SET_ACTION_MASK:
        q->masked = true;
        break;
    case VFIO_IRQ_SET_ACTION_UNMASK:
        q->masked = false;
        if (q->pending && q->fd >= 0)
            vhu_eventfd_signal(q->fd);
        q->pending = false;
        break;
    default: /* TRIGGER: the client raises the vector itself */
        bus_irq(s, v);
        break;
    }
}

static int irq_set_eventfds(struct vhu_vfu_server *s, const struct vfu_irq_set *in)
{
    struct vfu_rx *rx = &s->rx;

    if (in->flags & (VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK))
        return refuse(s, -EINVAL, "mask/unmask eventfds are not supported");
    if (rx->nfds && rx->nfds != in->count)
        return refuse(s, -EINVAL, "fd count differs from count");
    for (unsigned i = 0; i < rx->nfds; i++) {
        if (vhu_fd_is_eventfd(rx->fds[i]) != 1)
            return refuse(s, -EINVAL, "an interrupt fd is not an eventfd");
    }
    for (unsigned i = 0; i < rx->nfds; i++) {
        /* Shared with the client: non-blocking, so raising a vector never waits. */
        if (vhu_fd_set_nonblock(rx->fds[i], true) < 0)
            return refuse(s, -EINVAL, "cannot make an interrupt eventfd non-blocking");
    }
    /* No fds: de-assign the range. */
    irqs_release(s, in->start, in->count);
    for (unsigned i = 0; i < rx->nfds; i++) {
        s->irqs[in->start + i].fd = rx->fds[i];
        rx->fds[i] = -1;
    }
    return 0;
}

static int h_set_irqs(struct vhu_vfu_server *s, const void *req, size_t len, struct vfu_reply *rep)
{
    const uint32_t data_mask = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL |
                               VFIO_IRQ_SET_DATA_EVENTFD;
    const uint32_t action_mask = VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK |
                                 VFIO_IRQ_SET_ACTION_TRIGGER;
    struct vfu_irq_set in;
    int r = take_req(s, req, len, &in, sizeof(in));

    if (r < 0)
        return r;
    uint32_t data = in.flags & data_mask, action = in.flags & action_mask;
    if ((in.flags & ~(data_mask | action_mask)) || __builtin_popcount(data) != 1 ||
        __builtin_popcount(action) != 1)
        return refuse(s, -EINVAL, "flags: not one data and one action flag");
    if (in.index >= VFIO_PCI_NUM_IRQS)
        return refuse(s, -EINVAL, "no such interrupt type");
    if (data != VFIO_IRQ_SET_DATA_EVENTFD && s->rx.nfds)
        return refuse(s, -EINVAL, "fds without DATA_EVENTFD");
    /* Disable all of an index: start and count 0, DATA_NONE. */
    if (in.count == 0) {
        if (in.start || data != VFIO_IRQ_SET_DATA_NONE)
            return refuse(s, -EINVAL, "count 0 needs start 0 and DATA_NONE");
        if (in.index == VFIO_PCI_MSIX_IRQ_INDEX && action == VFIO_IRQ_SET_ACTION_TRIGGER)
            irqs_release(s, 0, s->pd->msix_vectors);
        return 0;
    }
    if (in.index != VFIO_PCI_MSIX_IRQ_INDEX)
        return refuse(s, -EINVAL, "the function has MSI-X interrupts only");
    if (in.start >= s->pd->msix_vectors || in.count > s->pd->msix_vectors - in.start)
        return refuse(s, -EINVAL, "vectors beyond the MSI-X table");
    if (data == VFIO_IRQ_SET_DATA_EVENTFD)
        return irq_set_eventfds(s, &in);
    const uint8_t *bools = (const uint8_t *)req + sizeof(in);
    if (data == VFIO_IRQ_SET_DATA_BOOL && len - sizeof(in) < in.count)
        return refuse(s, -EINVAL, "DATA_BOOL array shorter than count");
    for (uint32_t i = 0; i < in.count; i++) {
        if (data == VFIO_IRQ_SET_DATA_NONE || bools[i])
            irq_action(s, action, in.start + i);
    }
    return 0;
}

static int h_reset(struct vhu_vfu_server *s, const void *req, size_t len, struct vfu_reply *rep)
{
    if (len)
        return refuse(s, -EINVAL, "DEVICE_RESET has no payload");
    s->pd->ops->reset(s->pd->dev);
    return 0;
}

/* ---- DMA ------------------------------------------------------------------------------------ */

static bool dma_overlaps(const struct vhu_mem_table *t, uint64_t addr, uint64_t size)
{
    for (unsigned i = 0; t && i < t->nregions; i++) {
        const struct vhu_mem_region *r = t->by_gpa[i];
        if (addr < r->gpa + r->size && r->gpa < addr + size)
            return true;
    }
    return false;
}

static int h_dma_map(struct vhu_vfu_server *s, const void *req, size_t len, struct vfu_reply *rep)
{
    const uint64_t page = VFU_DEFAULT_PGSIZES;
    struct vfu_dma_map in;
    struct vhu_mem_region *region;
    struct vhu_mem_table *t;
    int r = take_req(s, req, len, &in, sizeof(in));

    if (r < 0)
        return r;
    if ((in.flags & ~(VFU_DMA_READ | VFU_DMA_WRITE)) || !(in.flags & VFU_DMA_READ))
        return refuse(s, -EINVAL, "flags: unknown bits, or not readable");
    if (s->rx.nfds != 1)
        return refuse(s, -ENOTSUP, "DMA without an fd (DMA_READ/DMA_WRITE) is not supported");
    if (in.size == 0 || in.addr > UINT64_MAX - in.size || ((in.addr | in.size) & (page - 1)))
        return refuse(s, -EINVAL, "address or size not page-aligned, zero or wrapping");
    if (dma_overlaps(s->dma, in.addr, in.size))
        return refuse(s, -EEXIST, "overlaps a mapped range");
    struct vhu_mem_region_desc d = {
        .gpa = in.addr, .size = in.size, .uva = in.addr, .mmap_offset = in.offset,
        .fd = s->rx.fds[0],
    };
    r = vhu_mem_region_map(&d, &region);
    if (r < 0)
        return refuse(s, r, "cannot map the fd (range beyond the file, or not mappable)");
    /* Read-only for the device when the client says so (its own pages stay writable). */
    if (!(in.flags & VFU_DMA_WRITE) && region->map.base &&
        mprotect(region->map.base, region->map.len, PROT_READ) < 0) {
        vhu_mem_region_free(region);
        return refuse(s, -errno, "cannot make the mapping read-only");
    }
    r = s->dma ? vhu_mem_table_add(s->dma, region, &t) : vhu_mem_table_new(&region, 1, &t);
    if (r < 0) {
        vhu_mem_region_free(region);
        return refuse(s, r == -ENOSPC ? -ENOSPC : r, "cannot add the range to the DMA table");
    }
    publish_dma(s, t);
    return 0;
}

static int h_dma_unmap(struct vhu_vfu_server *s, const void *req, size_t len, struct vfu_reply *rep)
{
    struct vfu_dma_unmap in;
    struct vhu_mem_table *t;

    int r = take_req(s, req, len, &in, sizeof(in));

    if (r < 0)
        return r;
    if (in.flags & ~VFU_DMA_UNMAP_ALL)
        return refuse(s, -EINVAL, "flags: unknown bits");
    if (in.flags & VFU_DMA_UNMAP_ALL) {
        if (in.addr || in.size)
            return refuse(s, -EINVAL, "UNMAP_ALL with an address or size");
        publish_dma(s, NULL);
    } else {
        r = s->dma ? vhu_mem_table_remove(s->dma, in.addr, in.size, in.addr, &t) : -ENOENT;
        if (r < 0)
            return refuse(s, r, "no mapping matches address and size exactly");
        publish_dma(s, t);
    }
    in.argsz = sizeof(in);
    memcpy(s->tx, &in, sizeof(in));
    rep->len = sizeof(in);
    return 0;
}

/* ---- version -------------------------------------------------------------------------------- */

static int h_version(struct vhu_vfu_server *s, const void *req, size_t len, struct vfu_reply *rep)
{
    const struct vfu_caps ours = {
        .max_msg_fds = VFU_MAX_FDS,
        .max_data_xfer_size = VFU_MAX_DATA_XFER,
        .max_dma_maps = VHU_MEM_MAX_SLOTS,
        .pgsizes = VFU_DEFAULT_PGSIZES,
    };
    struct vfu_version in, out;
    struct vfu_caps peer;
    int n;

    if (len < sizeof(in))
        return refuse(s, -EINVAL, "payload shorter than major and minor");
    if (s->negotiated)
        return refuse(s, -EINVAL, "the version was negotiated already");
    memcpy(&in, req, sizeof(in));
    if (in.major != VFU_VERSION_MAJOR) {
        rep->hang_up = true; /* vfio-user.rst: the server closes the connection */
        return refuse(s, -ENOTSUP, "unsupported major version");
    }
    if (vfu_caps_parse((const uint8_t *)req + sizeof(in), len - sizeof(in), &peer) < 0)
        return refuse(s, -EINVAL, "malformed JSON capabilities");
    out.major = VFU_VERSION_MAJOR;
    out.minor = VHU_MIN(in.minor, (uint16_t)VFU_VERSION_MINOR);
    memcpy(s->tx, &out, sizeof(out));
    n = vfu_caps_format(&ours, (char *)s->tx + sizeof(out), TX_CAP - sizeof(out));
    if (n < 0)
        return n;
    s->peer = peer;
    s->negotiated = true;
    rep->len = sizeof(out) + (size_t)n;
    return 0;
}

/* ---- the connection ------------------------------------------------------------------------- */

typedef int vfu_handler(struct vhu_vfu_server *s, const void *req, size_t len,
                        struct vfu_reply *rep);

/* Per command: the handler and the most fds it accepts. */
static const struct {
    vfu_handler *fn;
    unsigned max_fds;
} handlers[] = {
    [VFU_CMD_VERSION] = {h_version, 0},
    [VFU_CMD_DMA_MAP] = {h_dma_map, 1},
    [VFU_CMD_DMA_UNMAP] = {h_dma_unmap, 0},
    [VFU_CMD_DEVICE_GET_INFO] = {h_device_info, 0},
    [VFU_CMD_DEVICE_GET_REGION_INFO] = {h_region_info, 0},
    [VFU_CMD_DEVICE_GET_REGION_IO_FDS] = {h_region_io_fds, 0},
    [VFU_CMD_DEVICE_GET_IRQ_INFO] = {h_irq_info, 0},
    [VFU_CMD_DEVICE_SET_IRQS] = {h_set_irqs, VFU_MAX_FDS},
    [VFU_CMD_REGION_READ] = {h_region_read, 0},
    [VFU_CMD_REGION_WRITE] = {h_region_write, 0},
    [VFU_CMD_DEVICE_RESET] = {h_reset, 0},
};

static void listen_cb(int fd, uint32_t events, void *opaque);

static void conn_close(struct vhu_vfu_server *s, int err)
{
    if (s->conn_fd < 0)
        return;
    vhu_loop_del(s->loop, s->conn_fd);
    vhu_fd_close(&s->conn_fd);
    vfu_rx_reset(&s->rx);
    /* The function first (it stops using DMA memory and vectors), then what the client gave. */
    s->pd->ops->reset(s->pd->dev);
    if (s->dma || s->pd->ops->set_dma)
        publish_dma(s, NULL);
    irqs_release(s, 0, s->pd->msix_vectors);
    s->negotiated = false;
    s->peer = VFU_CAPS_DEFAULT;
    if (err)
        vhu_warn("vfio-user: client connection closed: %s", strerror(-err));
    else
        vhu_info("vfio-user: client disconnected");
    /* Serve the next client, waiting in the backlog. */
    if (s->listen_fd >= 0 && vhu_loop_add(s->loop, s->listen_fd, VHU_LOOP_IN, listen_cb, s) < 0)
        vhu_err("vfio-user: cannot watch the listening socket: no further client is served");
}

static void send_reply(struct vhu_vfu_server *s, const struct vfu_hdr *req, int err,
                       struct vfu_reply *rep)
{
    struct vfu_hdr h = {
        .msg_id = req->msg_id,
        .cmd = req->cmd,
        .flags = VFU_F_TYPE_REPLY | (err ? VFU_F_ERROR : 0),
        .error = (uint32_t)-err,
    };
    int r = err ? vfu_send(s->conn_fd, &h, NULL, 0, NULL, 0, NULL, 0)
                : vfu_send(s->conn_fd, &h, s->tx, rep->len, NULL, 0, rep->fds, rep->nfds);

    if (r < 0 && !rep->hang_up) {
        vhu_err_rl("vfio-user: cannot send the %s reply: %s", vfu_cmd_name(req->cmd),
                   strerror(-r));
        rep->hang_up = true;
    }
}

static void handle_msg(struct vhu_vfu_server *s)
{
    const struct vfu_hdr req = *vfu_rx_hdr(&s->rx);
    struct vfu_reply rep = {0};
    int err;

    if ((req.flags & VFU_F_TYPE_MASK) != VFU_F_TYPE_COMMAND) {
        vhu_err_rl("vfio-user: a reply (%s) from the client, which was asked nothing: "
                   "disconnecting", vfu_cmd_name(req.cmd));
        conn_close(s, -EPROTO);
        return;
    }
    s->why = NULL;
    if (req.cmd >= VHU_ARRAY_SIZE(handlers) || !handlers[req.cmd].fn)
        err = refuse(s, -ENOSYS, "unknown or unsupported command");
    else if (!s->negotiated && req.cmd != VFU_CMD_VERSION)
        err = refuse(s, -EPROTO, "VERSION must come first");
    else if (s->rx.nfds > handlers[req.cmd].max_fds)
        err = refuse(s, -EINVAL, "more fds than the command takes");
    else
        err = handlers[req.cmd].fn(s, vfu_rx_payload(&s->rx), vfu_rx_payload_len(&s->rx), &rep);
    vfu_rx_reset(&s->rx); /* the fds no handler took */
    if (err < 0)
        vhu_err_rl("vfio-user: %s (id %u) refused: %s (%s)", vfu_cmd_name(req.cmd), req.msg_id,
                   s->why ? s->why : "device error", strerror(-err));
    if (!(req.flags & VFU_F_NO_REPLY))
        send_reply(s, &req, err, &rep);
    for (unsigned i = 0; i < rep.nfds; i++)
        vhu_fd_close(&rep.fds[i]);
    if (rep.hang_up)
        conn_close(s, err ? err : -EPIPE);
}

static void conn_cb(int fd, uint32_t events, void *opaque)
{
    struct vhu_vfu_server *s = opaque;
    int r = vfu_recv_step(fd, &s->rx);

    (void)events;
    if (r == -EAGAIN)
        return;
    if (r == -ECONNRESET) {
        conn_close(s, 0);
        return;
    }
    if (r < 0) {
        vhu_err_rl("vfio-user: dropping the client: cannot frame a message: %s", strerror(-r));
        conn_close(s, r);
        return;
    }
    handle_msg(s);
}

static void listen_cb(int fd, uint32_t events, void *opaque)
{
    struct vhu_vfu_server *s = opaque;
    int c;

    (void)events;
    if (s->conn_fd >= 0)
        return; /* not watched while a client is served; the next one waits in the backlog */
    c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0) {
        if (errno != EAGAIN && errno != EINTR)
            vhu_warn("vfio-user: accept: %s", strerror(errno));
        return;
    }
    if (vhu_loop_add(s->loop, c, VHU_LOOP_IN, conn_cb, s) < 0) {
        vhu_err("vfio-user: cannot watch the client connection");
        close(c);
        return;
    }
    s->conn_fd = c;
    vhu_loop_del(s->loop, s->listen_fd);
    vhu_info("vfio-user: client connected");
}

int vhu_vfu_server_new(struct vhu_loop *loop, struct vhu_pcidev *pd, const char *path,
                       struct vhu_vfu_server **out)
{
    struct vhu_vfu_server *s;
    int r;

    if (!pd->ops || !pd->ops->cfg_read || !pd->ops->cfg_write || !pd->ops->bar_read ||
        !pd->ops->bar_write || !pd->ops->reset || pd->msix_vectors > MAX_MSIX_VECTORS ||
        (pd->cfg_size != 256 && pd->cfg_size != 4096))
        return -EINVAL;
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->loop = loop;
    s->pd = pd;
    s->listen_fd = s->conn_fd = -1;
    s->peer = VFU_CAPS_DEFAULT;
    s->rxbuf = malloc(VFU_MAX_MSG);
    s->tx = malloc(TX_CAP);
    s->irqs = calloc(VHU_MAX(pd->msix_vectors, 1u), sizeof(*s->irqs));
    if (!s->rxbuf || !s->tx || !s->irqs) {
        r = -ENOMEM;
        goto fail;
    }
    vfu_rx_init(&s->rx, s->rxbuf, VFU_MAX_MSG);
    for (unsigned i = 0; i < pd->msix_vectors; i++)
        s->irqs[i].fd = -1;
    r = vhu_sock_listen_path(path, 1, &s->listen_fd, &s->own);
    if (r == 0)
        r = vhu_loop_add(loop, s->listen_fd, VHU_LOOP_IN, listen_cb, s);
    if (r < 0)
        goto fail;
    pd->bus_ops = &bus_ops;
    pd->bus = s;
    *out = s;
    return 0;
fail:
    vhu_fd_close(&s->listen_fd);
    vhu_sock_path_release(&s->own);
    free(s->irqs);
    free(s->tx);
    free(s->rxbuf);
    free(s);
    return r;
}

void vhu_vfu_server_free(struct vhu_vfu_server *s)
{
    if (!s)
        return;
    int lfd = s->listen_fd;
    s->listen_fd = -1; /* conn_close: do not watch it again */
    conn_close(s, 0);
    if (lfd >= 0) {
        vhu_loop_del(s->loop, lfd);
        close(lfd);
    }
    vhu_sock_path_release(&s->own);
    s->pd->bus_ops = NULL;
    s->pd->bus = NULL;
    free(s->irqs);
    free(s->tx);
    free(s->rxbuf);
    free(s);
}

bool vhu_vfu_server_connected(const struct vhu_vfu_server *s)
{
    return s->conn_fd >= 0;
}
