/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The driver's PCI device over vfio-user (QEMU docs/interop/vfio-user.rst): a client of one
 * server socket (`vhud vvu --vfio-user PATH`, or any vfio-user server of the VVU function).
 * Synchronous: one request, then its reply within REPLY_TIMEOUT_MS; a server that breaks the
 * protocol or stops answering fails that call and every later one (-ENOTCONN), never hangs the
 * driver. Every reply is checked (id, command, size, error, fds) before anything in it is used.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pci.h"
#include "proto/vfio_user.h"
#include "util/sock.h"
#include "vhu/log.h"
#include "vhu/util.h"

#define REPLY_TIMEOUT_MS 5000
#define NUM_BARS 6                     /* BAR0..5: region indexes 0..5 */
#define DMA_IOVA_BASE 0x100000000ull  /* where the iova allocator starts (any non-zero page) */
#define MAX_MAPS 64                    /* BAR mappings and DMA buffers, each */
#define MAX_CLIENT_FDS 16              /* fds we accept per reply (announced in VERSION) */
#define RX_CAP (sizeof(struct vfu_hdr) + sizeof(struct vfu_region_access) + 4096)

struct vfu_map {
    void *host;      /* what the caller got */
    size_t len;      /* what the caller passes back */
    void *base;      /* the mmap */
    size_t maplen;
    uint64_t iova;   /* DMA buffers */
};

struct vfu_client {
    struct vhu_pci pci;
    int sock;                    /* -1 once the connection is lost */
    uint16_t next_id;
    struct vfu_caps server;
    uint64_t region_size[VFIO_PCI_NUM_REGIONS];
    unsigned msix_count;
    struct vfu_rx rx;
    uint8_t rxbuf[RX_CAP];
    struct vfu_map bars[MAX_MAPS];
    struct vfu_map dma[MAX_MAPS];
};

static struct vfu_client *to_client(struct vhu_pci *p)
{
    return p->priv;
}

static void lose(struct vfu_client *c, int err, const char *what)
{
    vhu_err("%s: %s: %s; the device is unreachable from now on", c->pci.name, what,
            strerror(-err));
    vhu_fd_close(&c->sock);
}

/*
 * One request and its reply. The reply payload is left in c->rx (at most RX_CAP), its fds too
 * (closed by the next call unless taken). Returns the reply payload length or -errno (the server's
 * error for an error reply).
 */
static int call(struct vfu_client *c, uint16_t cmd, const void *req, size_t len, const void *data,
                size_t data_len, const int *fds, unsigned nfds)
{
    struct vfu_hdr h = {.msg_id = c->next_id++, .cmd = cmd, .flags = VFU_F_TYPE_COMMAND};
    int r;

    if (c->sock < 0)
        return -ENOTCONN;
    vfu_rx_reset(&c->rx);
    r = vfu_send(c->sock, &h, req, len, data, data_len, fds, nfds);
    if (r < 0) {
        lose(c, r, "cannot send a request");
        return -ENOTCONN;
    }
    r = vfu_recv_timeout(c->sock, &c->rx, REPLY_TIMEOUT_MS);
    if (r < 0) {
        lose(c, r, r == -ETIMEDOUT ? "no reply in time" : "cannot read a reply");
        return r == -ETIMEDOUT ? -ETIMEDOUT : -ENOTCONN;
    }
    const struct vfu_hdr *rh = vfu_rx_hdr(&c->rx);
    if ((rh->flags & VFU_F_TYPE_MASK) != VFU_F_TYPE_REPLY || rh->msg_id != h.msg_id ||
        rh->cmd != cmd || c->rx.nfds > MAX_CLIENT_FDS) {
        vfu_rx_reset(&c->rx);
        lose(c, -EPROTO, "a reply that answers something else");
        return -ENOTCONN;
    }
    if (rh->flags & VFU_F_ERROR) {
        vfu_rx_reset(&c->rx);
        return rh->error && rh->error < 4096 ? -(int)rh->error : -EIO;
    }
    return (int)vfu_rx_payload_len(&c->rx);
}

/* call() for requests whose reply has at least `min` bytes and no fds. */
static int call_fixed(struct vfu_client *c, uint16_t cmd, const void *req, size_t len,
                      const int *fds, unsigned nfds, size_t min)
{
    int r = call(c, cmd, req, len, NULL, 0, fds, nfds);

    if (r >= 0 && ((size_t)r < min || c->rx.nfds)) {
        vfu_rx_reset(&c->rx);
        vhu_err("%s: %s: malformed reply", c->pci.name, vfu_cmd_name(cmd));
        return -EPROTO;
    }
    return r;
}

/* ---- regions ------------------------------------------------------------------------------- */

static int region_rw(struct vfu_client *c, uint32_t index, uint64_t off, void *buf, uint32_t len,
                     bool write)
{
    struct vfu_region_access a = {.offset = off, .region = index, .count = len};
    uint16_t cmd = write ? VFU_CMD_REGION_WRITE : VFU_CMD_REGION_READ;
    int r;

    if (index >= VFIO_PCI_NUM_REGIONS || off > c->region_size[index] ||
        len > c->region_size[index] - off)
        return -EINVAL;
    r = call(c, cmd, &a, sizeof(a), write ? buf : NULL, write ? len : 0, NULL, 0);
    if (r < 0)
        return r;
    size_t want = sizeof(a) + (write ? 0 : len);
    struct vfu_region_access got;
    memcpy(&got, vfu_rx_payload(&c->rx), VHU_MIN((size_t)r, sizeof(got)));
    if ((size_t)r != want || c->rx.nfds || got.offset != off || got.region != index ||
        got.count != len) {
        vfu_rx_reset(&c->rx);
        vhu_err("%s: %s: malformed reply", c->pci.name, vfu_cmd_name(cmd));
        return -EPROTO;
    }
    if (!write)
        memcpy(buf, vfu_rx_payload(&c->rx) + sizeof(a), len);
    return 0;
}

static bool reg_len(uint32_t len, uint32_t max)
{
    return len == 1 || len == 2 || len == 4 || (len == 8 && max == 8);
}

static int cfg_read(struct vhu_pci *p, uint32_t off, void *buf, uint32_t len)
{
    if (!reg_len(len, 4))
        return -EINVAL;
    return region_rw(to_client(p), VFIO_PCI_CONFIG_REGION_INDEX, off, buf, len, false);
}

static int cfg_write(struct vhu_pci *p, uint32_t off, const void *buf, uint32_t len)
{
    if (!reg_len(len, 4))
        return -EINVAL;
    return region_rw(to_client(p), VFIO_PCI_CONFIG_REGION_INDEX, off, (void *)buf, len, true);
}

static int bar_read(struct vhu_pci *p, unsigned bar, uint64_t off, void *buf, uint32_t len)
{
    if (bar >= NUM_BARS || !reg_len(len, 8))
        return -EINVAL;
    return region_rw(to_client(p), bar, off, buf, len, false);
}

static int bar_write(struct vhu_pci *p, unsigned bar, uint64_t off, const void *buf, uint32_t len)
{
    if (bar >= NUM_BARS || !reg_len(len, 8))
        return -EINVAL;
    return region_rw(to_client(p), bar, off, (void *)buf, len, true);
}

static uint64_t bar_size(struct vhu_pci *p, unsigned bar)
{
    return bar < NUM_BARS ? to_client(p)->region_size[bar] : 0;
}

/* GET_REGION_INFO into c->rx; the reply's info copied to *info. */
static int region_info(struct vfu_client *c, uint32_t index, uint32_t argsz,
                       struct vfu_region_info *info)
{
    struct vfu_region_info req = {.argsz = argsz, .index = index};
    int r = call(c, VFU_CMD_DEVICE_GET_REGION_INFO, &req, sizeof(req), NULL, 0, NULL, 0);

    if (r < 0)
        return r;
    if ((size_t)r < sizeof(*info) || c->rx.nfds > 1) {
        vfu_rx_reset(&c->rx);
        vhu_err("%s: GET_REGION_INFO %u: malformed reply", c->pci.name, index);
        return -EPROTO;
    }
    memcpy(info, vfu_rx_payload(&c->rx), sizeof(*info));
    if (info->index != index || info->argsz < sizeof(*info)) {
        vfu_rx_reset(&c->rx);
        vhu_err("%s: GET_REGION_INFO %u: malformed reply", c->pci.name, index);
        return -EPROTO;
    }
    return r;
}

/*
 * Does the sparse mmap capability in reply[0, len) cover [off, off + size) of the region
 * (possibly with several adjacent areas)? No capability: the whole region is mappable.
 */
static bool sparse_covers(const uint8_t *reply, size_t len, const struct vfu_region_info *info,
                          uint64_t off, uint64_t size)
{
    uint32_t at = (info->flags & VFIO_REGION_INFO_FLAG_CAPS) ? info->cap_offset : 0;
    unsigned hops = 0;

    while (at) {
        struct vfu_cap_hdr h;
        if (at < sizeof(*info) || at > len || len - at < sizeof(h) || ++hops > 16)
            return false;
        memcpy(&h, reply + at, sizeof(h));
        if (h.id == VFIO_REGION_INFO_CAP_SPARSE_MMAP)
            break;
        at = h.next;
    }
    if (!at)
        return off <= info->size && size <= info->size - off;
    struct vfu_cap_sparse cap;
    if (len - at < sizeof(cap))
        return false;
    memcpy(&cap, reply + at, sizeof(cap));
    if (cap.nr_areas > (len - at - sizeof(cap)) / sizeof(struct vfu_sparse_area))
        return false;
    const uint8_t *areas = reply + at + sizeof(cap);
    /* Walk forward: each step finds an area holding `cur`; the file is linear across areas. */
    for (uint64_t cur = off, end = off + size; cur < end;) {
        bool found = false;
        for (uint32_t i = 0; i < cap.nr_areas && !found; i++) {
            struct vfu_sparse_area a;
            memcpy(&a, areas + i * sizeof(a), sizeof(a));
            if (a.offset <= cur && a.size > cur - a.offset && a.offset + a.size > a.offset &&
                a.offset + a.size <= info->size) {
                cur = a.offset + a.size;
                found = true;
            }
        }
        if (!found)
            return false;
    }
    return true;
}

static struct vfu_map *map_slot(struct vfu_map *maps, const void *host)
{
    for (unsigned i = 0; i < MAX_MAPS; i++) {
        if (maps[i].host == host)
            return &maps[i];
    }
    return NULL;
}

static int bar_map(struct vhu_pci *p, unsigned bar, uint64_t off, uint64_t len, void **host)
{
    struct vfu_client *c = to_client(p);
    const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    struct vfu_region_info info;
    struct vfu_map *m = map_slot(c->bars, NULL);
    int r;

    if (bar >= NUM_BARS || len == 0 || off > c->region_size[bar] ||
        len > c->region_size[bar] - off)
        return -EINVAL;
    if (!m)
        return -ENOMEM;
    r = region_info(c, bar, RX_CAP - sizeof(struct vfu_hdr), &info);
    if (r < 0)
        return r;
    uint64_t file = info.offset + off, delta = file & (page - 1);
    void *base = MAP_FAILED;
    if (!(info.flags & VFIO_REGION_INFO_FLAG_MMAP) || c->rx.nfds != 1 ||
        info.argsz > (uint32_t)r || info.size != c->region_size[bar] ||
        !sparse_covers(vfu_rx_payload(&c->rx), (size_t)r, &info, off, len))
        r = -ENOTSUP;
    else if (info.offset > INT64_MAX - off)
        r = -EPROTO;
    else
        base = mmap(NULL, len + delta, PROT_READ | PROT_WRITE, MAP_SHARED, c->rx.fds[0],
                    (off_t)(file - delta));
    if (r >= 0 && base == MAP_FAILED)
        r = -errno;
    vfu_rx_reset(&c->rx);
    if (r < 0)
        return r;
    *m = (struct vfu_map){.host = (uint8_t *)base + delta, .len = len, .base = base,
                          .maplen = len + delta};
    *host = m->host;
    return 0;
}

static void bar_unmap(struct vhu_pci *p, void *host, uint64_t len)
{
    struct vfu_map *m = host ? map_slot(to_client(p)->bars, host) : NULL;

    if (!m || m->len != len)
        return;
    munmap(m->base, m->maplen);
    *m = (struct vfu_map){0};
}

static int io_fd(struct vhu_pci *p, unsigned bar, uint64_t off, uint32_t size, int *fd)
{
    struct vfu_client *c = to_client(p);
    struct vfu_io_fds req = {.argsz = RX_CAP - sizeof(struct vfu_hdr), .index = bar}, got;
    int r;

    if (bar >= NUM_BARS)
        return -EINVAL;
    r = call(c, VFU_CMD_DEVICE_GET_REGION_IO_FDS, &req, sizeof(req), NULL, 0, NULL, 0);
    if (r < 0)
        return r == -EINVAL || r == -ENOSYS ? -ENOTSUP : r;
    if ((size_t)r < sizeof(got))
        goto bad;
    memcpy(&got, vfu_rx_payload(&c->rx), sizeof(got));
    if (got.index != bar || got.count > ((size_t)r - sizeof(got)) / sizeof(struct vfu_io_fd))
        goto bad;
    for (uint32_t i = 0; i < got.count; i++) {
        struct vfu_io_fd e;
        memcpy(&e, vfu_rx_payload(&c->rx) + sizeof(got) + i * sizeof(e), sizeof(e));
        if (e.fd_index >= c->rx.nfds)
            goto bad;
        if (e.type != VFU_IO_FD_IOEVENTFD || e.flags || e.offset != off || e.size != size)
            continue;
        *fd = c->rx.fds[e.fd_index];
        c->rx.fds[e.fd_index] = -1;
        vfu_rx_reset(&c->rx);
        return 0;
    }
    vfu_rx_reset(&c->rx);
    return -ENOTSUP;
bad:
    vfu_rx_reset(&c->rx);
    vhu_err("%s: GET_REGION_IO_FDS: malformed reply", c->pci.name);
    return -EPROTO;
}

static int irq_fds(struct vhu_pci *p, unsigned n, int *fds)
{
    struct vfu_client *c = to_client(p);
    unsigned per = VHU_MIN(c->server.max_msg_fds, (uint32_t)VFU_MAX_FDS);
    unsigned made = 0;
    int r = 0;

    if (c->msix_count == 0 || per == 0)
        return -ENOTSUP;
    if (n == 0 || n > c->msix_count)
        return -EINVAL;
    for (; made < n; made++) {
        fds[made] = vhu_eventfd_new();
        if (fds[made] < 0) {
            r = fds[made];
            goto fail;
        }
    }
    for (unsigned start = 0; start < n; start += per) {
        struct vfu_irq_set set = {
            .argsz = sizeof(set),
            .flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
            .index = VFIO_PCI_MSIX_IRQ_INDEX,
            .start = start,
            .count = VHU_MIN(per, n - start),
        };
        r = call_fixed(c, VFU_CMD_DEVICE_SET_IRQS, &set, sizeof(set), fds + start, set.count, 0);
        if (r < 0)
            goto fail;
    }
    return 0;
fail:
    while (made)
        vhu_fd_close(&fds[--made]);
    return r;
}

/* ---- DMA memory ---------------------------------------------------------------------------- */

/* The lowest free iova range of len bytes (first fit over the live buffers). */
static uint64_t iova_alloc(const struct vfu_client *c, uint64_t len)
{
    uint64_t at = DMA_IOVA_BASE;

    for (bool moved = true; moved;) {
        moved = false;
        for (unsigned i = 0; i < MAX_MAPS; i++) {
            const struct vfu_map *m = &c->dma[i];
            if (m->host && at < m->iova + m->maplen && m->iova < at + len) {
                at = m->iova + m->maplen;
                moved = true;
            }
        }
    }
    return at;
}

static int dma_alloc(struct vhu_pci *p, size_t len, void **host, uint64_t *iova)
{
    struct vfu_client *c = to_client(p);
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    struct vfu_map *m = map_slot(c->dma, NULL);
    size_t maplen = VHU_ALIGN_UP(len, page);
    void *base;
    int fd, r;

    if (len == 0 || maplen < len)
        return -EINVAL;
    if (!m)
        return -ENOMEM;
    /* Sealed against shrinking: the server maps it without a SIGBUS guard (vhu_mem_map_fd). */
    fd = vhu_memfd_new_sealed("vhu-vvu-dma", maplen);
    if (fd < 0)
        return fd;
    base = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        r = -errno;
        close(fd);
        return r;
    }
    struct vfu_dma_map map = {
        .argsz = sizeof(map),
        .flags = VFU_DMA_READ | VFU_DMA_WRITE,
        .addr = iova_alloc(c, maplen),
        .size = maplen,
    };
    r = call_fixed(c, VFU_CMD_DMA_MAP, &map, sizeof(map), &fd, 1, 0);
    close(fd);
    if (r < 0) {
        munmap(base, maplen);
        return r;
    }
    *m = (struct vfu_map){.host = base, .len = len, .base = base, .maplen = maplen,
                          .iova = map.addr};
    *host = base;
    *iova = map.addr;
    return 0;
}

static void dma_free(struct vhu_pci *p, void *host, size_t len)
{
    struct vfu_client *c = to_client(p);
    struct vfu_map *m = host ? map_slot(c->dma, host) : NULL;

    if (!m || m->len != len)
        return;
    struct vfu_dma_unmap req = {.argsz = sizeof(req), .addr = m->iova, .size = m->maplen};
    /* The server keeps the memory only while the connection lives: unmap ours either way. */
    int r = call_fixed(c, VFU_CMD_DMA_UNMAP, &req, sizeof(req), NULL, 0, 0);
    if (r < 0 && r != -ENOTCONN)
        vhu_err("%s: DMA_UNMAP of iova 0x%llx: %s", c->pci.name, (unsigned long long)m->iova,
                strerror(-r));
    munmap(m->base, m->maplen);
    *m = (struct vfu_map){0};
}

static int reset(struct vhu_pci *p)
{
    int r = call_fixed(to_client(p), VFU_CMD_DEVICE_RESET, NULL, 0, NULL, 0, 0);

    return r < 0 ? r : 0;
}

static void client_free(struct vhu_pci *p)
{
    struct vfu_client *c = to_client(p);

    if (!c)
        return;
    vhu_fd_close(&c->sock);
    vfu_rx_reset(&c->rx);
    for (unsigned i = 0; i < MAX_MAPS; i++) {
        if (c->bars[i].host)
            munmap(c->bars[i].base, c->bars[i].maplen);
        if (c->dma[i].host)
            munmap(c->dma[i].base, c->dma[i].maplen);
    }
    free(c);
}

static const struct vhu_pci_ops vfu_pci_ops = {
    .cfg_read = cfg_read,
    .cfg_write = cfg_write,
    .bar_read = bar_read,
    .bar_write = bar_write,
    .bar_size = bar_size,
    .bar_map = bar_map,
    .bar_unmap = bar_unmap,
    .io_fd = io_fd,
    .irq_fds = irq_fds,
    .dma_alloc = dma_alloc,
    .dma_free = dma_free,
    .reset = reset,
    .free = client_free,
};

/* ---- setup --------------------------------------------------------------------------------- */

static int negotiate(struct vfu_client *c)
{
    const struct vfu_caps ours = {
        .max_msg_fds = MAX_CLIENT_FDS,
        .max_data_xfer_size = RX_CAP - sizeof(struct vfu_hdr) - sizeof(struct vfu_region_access),
        .max_dma_maps = MAX_MAPS,
        .pgsizes = VFU_DEFAULT_PGSIZES,
    };
    struct {
        struct vfu_version v;
        char json[256];
    } req = {.v = {.major = VFU_VERSION_MAJOR, .minor = VFU_VERSION_MINOR}};
    struct vfu_version got;
    int n = vfu_caps_format(&ours, req.json, sizeof(req.json));
    int r;

    if (n < 0)
        return n;
    r = call_fixed(c, VFU_CMD_VERSION, &req, sizeof(req.v) + (size_t)n, NULL, 0, sizeof(got));
    if (r < 0)
        return r;
    memcpy(&got, vfu_rx_payload(&c->rx), sizeof(got));
    if (got.major != VFU_VERSION_MAJOR || got.minor > VFU_VERSION_MINOR ||
        vfu_caps_parse(vfu_rx_payload(&c->rx) + sizeof(got), (size_t)r - sizeof(got),
                       &c->server) < 0) {
        vhu_err("%s: the server answers VERSION with %u.%u or malformed capabilities",
                c->pci.name, got.major, got.minor);
        return -EPROTO;
    }
    return 0;
}

static int discover(struct vfu_client *c)
{
    struct vfu_device_info info = {.argsz = sizeof(info)};
    struct vfu_irq_info irq = {.argsz = sizeof(irq), .index = VFIO_PCI_MSIX_IRQ_INDEX};
    int r = call_fixed(c, VFU_CMD_DEVICE_GET_INFO, &info, sizeof(info), NULL, 0, sizeof(info));

    if (r < 0)
        return r;
    memcpy(&info, vfu_rx_payload(&c->rx), sizeof(info));
    if (!(info.flags & VFIO_DEVICE_FLAGS_PCI) || info.num_regions < VFIO_PCI_NUM_REGIONS ||
        info.num_irqs <= VFIO_PCI_MSIX_IRQ_INDEX) {
        vhu_err("%s: not a vfio-user PCI device (flags 0x%x, %u regions, %u irq types)",
                c->pci.name, info.flags, info.num_regions, info.num_irqs);
        return -ENODEV;
    }
    for (uint32_t i = 0; i < VFIO_PCI_NUM_REGIONS; i++) {
        struct vfu_region_info ri;
        r = region_info(c, i, sizeof(ri), &ri);
        if (r < 0)
            return r;
        c->region_size[i] = ri.size;
    }
    vfu_rx_reset(&c->rx);
    r = call_fixed(c, VFU_CMD_DEVICE_GET_IRQ_INFO, &irq, sizeof(irq), NULL, 0, sizeof(irq));
    if (r < 0)
        return r;
    memcpy(&irq, vfu_rx_payload(&c->rx), sizeof(irq));
    if (irq.index != VFIO_PCI_MSIX_IRQ_INDEX)
        return -EPROTO;
    c->msix_count = (irq.flags & VFIO_IRQ_INFO_EVENTFD) ? irq.count : 0;
    return 0;
}

int vhu_pci_vfio_user_open(const char *path, struct vhu_pci **out)
{
    struct sockaddr_un sa;
    struct vfu_client *c;
    int r = vhu_sock_addr(path, &sa);

    if (r < 0)
        return r;
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->pci.ops = &vfu_pci_ops;
    c->pci.priv = c;
    snprintf(c->pci.name, sizeof(c->pci.name), "vfio-user:%s", path);
    vfu_rx_init(&c->rx, c->rxbuf, sizeof(c->rxbuf));
    c->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->sock < 0 || connect(c->sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        r = -errno;
        vhu_err("%s: cannot connect: %s", c->pci.name, strerror(-r));
    }
    if (r == 0)
        r = negotiate(c);
    if (r == 0)
        r = discover(c);
    if (r < 0) {
        client_free(&c->pci);
        return r;
    }
    *out = &c->pci;
    return 0;
}
