/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pci_direct.h"
#include "vhu/mem.h"
#include "vhu/util.h"

#define DMA_IOVA_BASE 0x100000ull
#define DMA_IOVA_ALIGN 0x100000ull
#define MAX_IRQS 2048
#define MAX_AREAS 64

struct pci_direct {
    struct vhu_pci pci;
    struct vhu_pcidev *pd;
    struct vhu_pcidev_bus_ops bus_ops;
    int irq[MAX_IRQS];
    unsigned nirq;
    struct vhu_mem_table *dma;    /* ours; the model gets references */
    uint64_t next_iova;
};

static struct pci_direct *to_direct(struct vhu_pci *p)
{
    return p->priv;
}

static void direct_irq(void *bus, unsigned vector)
{
    struct pci_direct *x = bus;

    if (vector < x->nirq && x->irq[vector] >= 0)
        vhu_eventfd_signal(x->irq[vector]);
}

static bool cfg_ok(struct pci_direct *x, uint32_t off, uint32_t len)
{
    return (len == 1 || len == 2 || len == 4) && off < x->pd->cfg_size &&
           len <= x->pd->cfg_size - off;
}

static int direct_cfg_read(struct vhu_pci *p, uint32_t off, void *buf, uint32_t len)
{
    struct pci_direct *x = to_direct(p);

    if (!cfg_ok(x, off, len))
        return -EINVAL;
    x->pd->ops->cfg_read(x->pd->dev, off, buf, len);
    return 0;
}

static int direct_cfg_write(struct vhu_pci *p, uint32_t off, const void *buf, uint32_t len)
{
    struct pci_direct *x = to_direct(p);

    if (!cfg_ok(x, off, len))
        return -EINVAL;
    x->pd->ops->cfg_write(x->pd->dev, off, buf, len);
    return 0;
}

static bool bar_ok(struct pci_direct *x, unsigned bar, uint64_t off, uint64_t len)
{
    return bar < VHU_PCIDEV_NUM_BARS && off < x->pd->bars[bar].size &&
           len <= x->pd->bars[bar].size - off;
}

static int direct_bar_read(struct vhu_pci *p, unsigned bar, uint64_t off, void *buf, uint32_t len)
{
    struct pci_direct *x = to_direct(p);

    if ((len != 1 && len != 2 && len != 4 && len != 8) || !bar_ok(x, bar, off, len))
        return -EINVAL;
    x->pd->ops->bar_read(x->pd->dev, bar, off, buf, len);
    return 0;
}

static int direct_bar_write(struct vhu_pci *p, unsigned bar, uint64_t off, const void *buf,
                            uint32_t len)
{
    struct pci_direct *x = to_direct(p);

    if ((len != 1 && len != 2 && len != 4 && len != 8) || !bar_ok(x, bar, off, len))
        return -EINVAL;
    x->pd->ops->bar_write(x->pd->dev, bar, off, buf, len);
    return 0;
}

static uint64_t direct_bar_size(struct vhu_pci *p, unsigned bar)
{
    struct pci_direct *x = to_direct(p);

    return bar < VHU_PCIDEV_NUM_BARS ? x->pd->bars[bar].size : 0;
}

static int direct_bar_map(struct vhu_pci *p, unsigned bar, uint64_t off, uint64_t len, void **host)
{
    struct pci_direct *x = to_direct(p);
    struct vhu_pcidev_area areas[MAX_AREAS];
    uint64_t file_off;
    unsigned n = 0;
    int fd, r;

    if (len == 0 || !bar_ok(x, bar, off, len) || !x->pd->ops->bar_mmap)
        return -EINVAL;
    fd = x->pd->ops->bar_mmap(x->pd->dev, bar, &file_off, areas, MAX_AREAS, &n);
    if (fd < 0)
        return fd;
    /* [off, off + len) must be covered by the mappable areas (adjacent areas join up) */
    for (uint64_t pos = off, end = off + len; pos < end;) {
        uint64_t next = pos;
        for (unsigned i = 0; i < n; i++) {
            if (pos >= areas[i].off && pos - areas[i].off < areas[i].len)
                next = VHU_MAX(next, areas[i].off + areas[i].len);
        }
        if (next == pos) {
            close(fd);
            return -ENOENT;
        }
        pos = next;
    }
    if ((off & (uint64_t)(sysconf(_SC_PAGESIZE) - 1)) != 0) {
        r = -EINVAL;
    } else {
        void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)(file_off + off));
        r = m == MAP_FAILED ? -errno : 0;
        if (r == 0)
            *host = m;
    }
    close(fd);
    return r;
}

static void direct_bar_unmap(struct vhu_pci *p, void *host, uint64_t len)
{
    if (host)
        munmap(host, len);
}

static int direct_io_fd(struct vhu_pci *p, unsigned bar, uint64_t off, uint32_t size, int *fd)
{
    struct pci_direct *x = to_direct(p);
    struct vhu_pcidev_iofd *v;
    int n, r = -ENOTSUP;

    if (!x->pd->ops->io_fds)
        return -ENOTSUP;
    v = calloc(MAX_IRQS, sizeof(*v));
    if (!v)
        return -ENOMEM;
    n = x->pd->ops->io_fds(x->pd->dev, bar, v, MAX_IRQS);
    for (int i = 0; i < n; i++) {
        if (r == -ENOTSUP && v[i].bar == bar && v[i].off == off && size <= v[i].size) {
            *fd = v[i].fd;
            r = 0;
        } else {
            close(v[i].fd);
        }
    }
    free(v);
    return n < 0 ? n : r;
}

static int direct_irq_fds(struct vhu_pci *p, unsigned n, int *fds)
{
    struct pci_direct *x = to_direct(p);

    if (n > MAX_IRQS)
        return -EINVAL;
    for (unsigned i = 0; i < x->nirq; i++)
        vhu_fd_close(&x->irq[i]);
    x->nirq = 0;
    for (unsigned i = 0; i < n; i++) {
        int fd = vhu_eventfd_new();

        if (fd < 0 || (fds[i] = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
            int err = fd < 0 ? fd : -errno;
            if (fd >= 0)
                close(fd);
            while (i)
                vhu_fd_close(&fds[--i]);
            while (x->nirq)
                vhu_fd_close(&x->irq[--x->nirq]);
            return err;
        }
        x->irq[x->nirq++] = fd;
    }
    return 0;
}

static void give_dma(struct pci_direct *x)
{
    if (x->pd->ops->set_dma)
        x->pd->ops->set_dma(x->pd->dev, x->dma ? vhu_mem_table_get(x->dma) : NULL);
}

static int direct_dma_alloc(struct vhu_pci *p, size_t len, void **host, uint64_t *iova)
{
    struct pci_direct *x = to_direct(p);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    struct vhu_mem_region_desc rd = {.fd = -1};
    struct vhu_mem_region *r;
    struct vhu_mem_table *t;
    void *m;
    int fd, err;

    if (len == 0)
        return -EINVAL;
    len = VHU_ALIGN_UP(len, page);
    fd = memfd_create("pci-direct-dma", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)len) < 0) {
        err = -errno;
        close(fd);
        return err;
    }
    m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return -errno;
    /* the device reaches the same pages through the table (as a bus would: its own view) */
    rd.gpa = x->next_iova;
    rd.uva = x->next_iova;
    rd.size = len;
    rd.host = m;
    err = vhu_mem_region_map(&rd, &r);
    if (err == 0) {
        err = vhu_mem_table_add(x->dma, r, &t);
        if (err < 0)
            vhu_mem_region_free(r);
    }
    if (err < 0) {
        munmap(m, len);
        return err;
    }
    vhu_mem_table_put(x->dma);
    x->dma = t;
    *host = m;
    *iova = x->next_iova;
    x->next_iova = VHU_ALIGN_UP(x->next_iova + len, DMA_IOVA_ALIGN);
    give_dma(x);
    return 0;
}

static void direct_dma_free(struct vhu_pci *p, void *host, size_t len)
{
    struct pci_direct *x = to_direct(p);
    struct vhu_mem_table *t;

    for (unsigned i = 0; i < x->dma->nregions; i++) {
        const struct vhu_mem_region *r = x->dma->by_gpa[i];

        if (r->host != host)
            continue;
        if (vhu_mem_table_remove(x->dma, r->gpa, r->size, r->uva, &t) == 0) {
            vhu_mem_table_put(x->dma);
            x->dma = t;
            give_dma(x);
        }
        break;
    }
    munmap(host, VHU_ALIGN_UP(len, (size_t)sysconf(_SC_PAGESIZE)));
}

static int direct_reset(struct vhu_pci *p)
{
    struct pci_direct *x = to_direct(p);

    x->pd->ops->reset(x->pd->dev);
    give_dma(x);    /* a function-level reset leaves the bus's DMA mapping as it was */
    return 0;
}

static void direct_free(struct vhu_pci *p)
{
    struct pci_direct *x = to_direct(p);

    x->pd->ops->reset(x->pd->dev);
    x->pd->bus_ops = NULL;
    x->pd->bus = NULL;
    for (unsigned i = 0; i < x->nirq; i++)
        vhu_fd_close(&x->irq[i]);
    /* DMA memory the driver did not free (the model dropped its references at reset) */
    for (unsigned i = 0; i < x->dma->nregions; i++)
        munmap(x->dma->by_gpa[i]->host, x->dma->by_gpa[i]->size);
    vhu_mem_table_put(x->dma);
    free(x);
}

static const struct vhu_pci_ops direct_ops = {
    .cfg_read = direct_cfg_read,
    .cfg_write = direct_cfg_write,
    .bar_read = direct_bar_read,
    .bar_write = direct_bar_write,
    .bar_size = direct_bar_size,
    .bar_map = direct_bar_map,
    .bar_unmap = direct_bar_unmap,
    .io_fd = direct_io_fd,
    .irq_fds = direct_irq_fds,
    .dma_alloc = direct_dma_alloc,
    .dma_free = direct_dma_free,
    .reset = direct_reset,
    .free = direct_free,
};

int vhu_pci_direct_open(struct vhu_pcidev *pd, struct vhu_pci **out)
{
    struct pci_direct *x;
    int r;

    if (!pd || !pd->ops || !out)
        return -EINVAL;
    x = calloc(1, sizeof(*x));
    if (!x)
        return -ENOMEM;
    r = vhu_mem_table_new_empty(&x->dma);
    if (r < 0) {
        free(x);
        return r;
    }
    x->pd = pd;
    x->next_iova = DMA_IOVA_BASE;
    x->bus_ops.irq = direct_irq;
    x->pci.ops = &direct_ops;
    x->pci.priv = x;
    snprintf(x->pci.name, sizeof(x->pci.name), "direct");
    pd->bus_ops = &x->bus_ops;
    pd->bus = x;
    *out = &x->pci;
    return 0;
}
