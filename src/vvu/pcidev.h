/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_VVU_PCIDEV_H
#define VHU_VVU_PCIDEV_H

/*
 * An emulated PCI function in a process of ours, served to a VM (or to a vfio-user client) by a
 * bus adapter. The device model (the VVU device, src/vvu/vvu_dev.c) implements the ops; a bus
 * adapter (vfio-user server: src/vvu/vfio_user_server.c; QEMU 7.2's multi-process proxy:
 * src/vvu/mpqemu.c) decodes its wire and calls them. The model is written once; adapters never
 * look inside it.
 *
 * Threads: everything runs on the one loop thread the device and its adapter share.
 * Untrusted input: offsets and lengths come from the bus peer; the model checks them (a bad
 * access reads as all-ones / is ignored and counted, never crashes), the adapter checks its own
 * wire (lengths, indexes) before calling.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vhu/mem.h"

#define VHU_PCIDEV_NUM_BARS 6

enum vhu_pcidev_bar_flags {
    VHU_PCIDEV_BAR_MEM = 1u << 0,      /* memory BAR (I/O BARs are not used) */
    VHU_PCIDEV_BAR_64 = 1u << 1,       /* 64-bit: takes this BAR and the next */
    VHU_PCIDEV_BAR_PREFETCH = 1u << 2,
};

struct vhu_pcidev_bar {
    uint64_t size;   /* 0: BAR not implemented; else a power of two >= 4096 */
    uint32_t flags;  /* VHU_PCIDEV_BAR_* */
};

/* A part of a BAR the peer may map directly: BAR [off, off + len) is file [file_off + off, ...). */
struct vhu_pcidev_area {
    uint64_t off;
    uint64_t len;
};

/* A register that is a pure doorbell: any write of `size` bytes at BAR offset `off` has the
 * same effect as writing 1 (8 bytes) to `fd`, an eventfd. */
struct vhu_pcidev_iofd {
    unsigned bar;
    uint64_t off;
    uint32_t size;
    int fd;          /* a dup the caller owns */
};

/* What the adapter gives the model. */
struct vhu_pcidev_bus_ops {
    /* Deliver MSI-X vector v (the adapter knows how: an eventfd from the peer, a message, or
     * nothing when the bus has no interrupts). Must not block. */
    void (*irq)(void *bus, unsigned vector);
    /* The mappable areas or the io fds changed (the shared-memory window got a new backing
     * file): adapters that pushed them to the peer push again; others ignore it. Optional. */
    void (*layout_changed)(void *bus);
};

struct vhu_pcidev_ops {
    /* Config space: off + len <= cfg_size, len 1, 2 or 4 (adapters split longer accesses). */
    void (*cfg_read)(void *dev, uint32_t off, void *buf, uint32_t len);
    void (*cfg_write)(void *dev, uint32_t off, const void *buf, uint32_t len);
    /* BAR accesses: len 1, 2, 4 or 8 within the BAR; anything else reads as 0xff.., is ignored. */
    void (*bar_read)(void *dev, unsigned bar, uint64_t off, void *buf, uint32_t len);
    void (*bar_write)(void *dev, unsigned bar, uint64_t off, const void *buf, uint32_t len);
    /*
     * The mappable parts of a BAR right now: returns a dup'ed fd (the caller closes it) and
     * fills up to max areas (count in *n), or -ENOENT when nothing of the BAR is mappable.
     */
    int (*bar_mmap)(void *dev, unsigned bar, uint64_t *file_off, struct vhu_pcidev_area *areas,
                    unsigned max, unsigned *n);
    /* Doorbell registers as eventfds (dup'ed): fills up to max, returns the count (>= 0). */
    int (*io_fds)(void *dev, unsigned bar, struct vhu_pcidev_iofd *out, unsigned max);
    /* The memory the device may access by DMA (the driver's rings and buffers), as a table of
     * bus addresses; the model takes the reference. NULL: no DMA memory (bus reset). */
    void (*set_dma)(void *dev, struct vhu_mem_table *t);
    /* Function-level reset (the bus peer went away, or asked for it). */
    void (*reset)(void *dev);
};

struct vhu_pcidev {
    const struct vhu_pcidev_ops *ops;
    void *dev;                                  /* the model's object */
    uint32_t cfg_size;                          /* 256 (conventional) or 4096 */
    struct vhu_pcidev_bar bars[VHU_PCIDEV_NUM_BARS];
    unsigned msix_vectors;                      /* MSI-X table size; 0: none */
    unsigned msix_bar;                          /* where the table and PBA live */
    uint64_t msix_table_off, msix_pba_off;
    /* Set by the adapter before the model may raise anything. */
    const struct vhu_pcidev_bus_ops *bus_ops;
    void *bus;
};

#endif
