/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_TRANSPORT_VVU_PCI_H
#define VHU_TRANSPORT_VVU_PCI_H

/*
 * How the virtio-vhost-user driver (src/transport/vvu/driver.c) reaches its PCI device. Three
 * implementations:
 *   - vfio-user client (pci_vfio_user.c): a host process talks to `vhud vvu --vfio-user` over
 *     its socket: regions by message or mmap of sparse areas, ioeventfds, MSI-X eventfds,
 *     DMA memory shared by DMA_MAP;
 *   - Linux guest userspace (pci_sysfs.c): inside the backend VM, BARs through sysfs
 *     resourceN mmap, config through the config file, DMA memory from hugepages with physical
 *     addresses from /proc/self/pagemap; no interrupts (the driver polls);
 *   - in-process (tests): calls a struct vhu_pcidev's ops directly.
 * The driver runs on one thread (its loop); so do these ops. Every op returns 0 or -errno.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vhu_pci {
    const struct vhu_pci_ops *ops;
    void *priv;
    char name[64];  /* for messages: "vfio-user:/run/vvu0.sock", "pci:0000:00:04.0" */
};

struct vhu_pci_ops {
    /* Config space accesses of 1, 2 or 4 bytes. */
    int (*cfg_read)(struct vhu_pci *p, uint32_t off, void *buf, uint32_t len);
    int (*cfg_write)(struct vhu_pci *p, uint32_t off, const void *buf, uint32_t len);
    /* Register accesses (1, 2, 4, 8 bytes) in a BAR. */
    int (*bar_read)(struct vhu_pci *p, unsigned bar, uint64_t off, void *buf, uint32_t len);
    int (*bar_write)(struct vhu_pci *p, unsigned bar, uint64_t off, const void *buf, uint32_t len);
    /* Size of a BAR (0: absent). */
    uint64_t (*bar_size)(struct vhu_pci *p, unsigned bar);
    /*
     * Map BAR [off, off + len) into this process for direct loads and stores (the shared-memory
     * window). The mapping stays valid until bar_unmap, even if the device's backing changes
     * after (the old pages stay mapped). -ENOTSUP/-ENOENT: that range cannot be mapped now.
     * Implementations re-read the device's mappable layout on each call (it changes when the
     * frontend's memory table does).
     */
    int (*bar_map)(struct vhu_pci *p, unsigned bar, uint64_t off, uint64_t len, void **host);
    void (*bar_unmap)(struct vhu_pci *p, void *host, uint64_t len);
    /*
     * An eventfd equivalent to writing `size` bytes at BAR `off` (a doorbell), a dup the caller
     * owns; -ENOTSUP when writes must go through bar_write. Re-queried by the driver whenever
     * the frontend's call fd may have changed (after each SET_VRING_CALL).
     */
    int (*io_fd)(struct vhu_pci *p, unsigned bar, uint64_t off, uint32_t size, int *fd);
    /*
     * Interrupts: eventfds for MSI-X vectors [0, n) (the caller owns the fds), or -ENOTSUP when
     * the bus has none (the driver polls).
     */
    int (*irq_fds)(struct vhu_pci *p, unsigned n, int *fds);
    /* DMA memory the device can read and write: *host for the driver, *iova for the device. */
    int (*dma_alloc)(struct vhu_pci *p, size_t len, void **host, uint64_t *iova);
    void (*dma_free)(struct vhu_pci *p, void *host, size_t len);
    /* Function-level reset. */
    int (*reset)(struct vhu_pci *p);
    /* Release everything (after this the device sees the driver gone). */
    void (*free)(struct vhu_pci *p);
};

/* Open a device by its spec: "vfio-user:PATH" or "pci:DDDD:BB:DD.F". */
int vhu_pci_open(const char *spec, struct vhu_pci **out);
int vhu_pci_vfio_user_open(const char *path, struct vhu_pci **out);
int vhu_pci_sysfs_open(const char *bdf, struct vhu_pci **out);

#endif
