/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * PCI config space of the VVU function: a type 0 header, BARs per proto/vvu.h, the virtio
 * vendor capabilities (virtio 1.x 4.1.4 plus the VVU ones) and MSI-X.
 *
 * Config space is a byte array plus a mask of the bits the bus peer may write. BAR sizing falls
 * out of the mask: the address bits below the BAR size are read-only zeroes, so writing all-ones
 * reads back the size mask with the type bits (PCI Local Bus 3.0, 6.2.5.1).
 */
#include <string.h>

#include "vhu/log.h"
#include "vhu/util.h"
#include "vvu_internal.h"

/* PCI header offsets (PCI Local Bus 3.0, 6.1). */
#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_REVISION_ID 0x08
#define PCI_CLASS_PROG 0x09
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID 0x2e
#define PCI_CAPABILITY_LIST 0x34
#define PCI_INTERRUPT_LINE 0x3c

#define PCI_COMMAND_MEMORY 0x0002
#define PCI_COMMAND_MASTER 0x0004
#define PCI_COMMAND_INTX_DISABLE 0x0400
#define PCI_STATUS_CAP_LIST 0x0010

#define PCI_BAR_MEM_TYPE_64 0x04
#define PCI_BAR_MEM_PREFETCH 0x08

#define PCI_CAP_ID_VNDR 0x09
#define PCI_CAP_ID_MSIX 0x11
#define PCI_MSIX_FLAGS 2          /* message control */
#define PCI_MSIX_FLAGS_ENABLE 0x8000
#define PCI_MSIX_FLAGS_MASKALL 0x4000

#define CAPS_START 0x40

/* struct virtio_pci_cfg_cap: the cap, then the data window (virtio 1.x 4.1.4.9). */
#define PCICFG_DATA 16

static void put8(struct vvu_dev *d, unsigned off, uint8_t v)
{
    d->cfg[off] = v;
}

static void put16(struct vvu_dev *d, unsigned off, uint16_t v)
{
    d->cfg[off] = (uint8_t)v;
    d->cfg[off + 1] = (uint8_t)(v >> 8);
}

static void put32(struct vvu_dev *d, unsigned off, uint32_t v)
{
    put16(d, off, (uint16_t)v);
    put16(d, off + 2, (uint16_t)(v >> 16));
}

static uint32_t get32(const struct vvu_dev *d, unsigned off)
{
    return (uint32_t)d->cfg[off] | (uint32_t)d->cfg[off + 1] << 8 |
           (uint32_t)d->cfg[off + 2] << 16 | (uint32_t)d->cfg[off + 3] << 24;
}

static void wmask32(struct vvu_dev *d, unsigned off, uint32_t m)
{
    for (unsigned i = 0; i < 4; i++)
        d->wmask[off + i] = (uint8_t)(m >> (8 * i));
}

/* Append a capability of len bytes after *prev; returns its offset. */
static unsigned cap_add(struct vvu_dev *d, unsigned *prev, unsigned *next, uint8_t id, unsigned len)
{
    unsigned off = *next;

    put8(d, off, id);
    put8(d, off + 1, 0);
    if (*prev)
        put8(d, *prev + 1, (uint8_t)off);
    else
        put8(d, PCI_CAPABILITY_LIST, (uint8_t)off);
    *prev = off;
    *next = VHU_ALIGN_UP(off + len, 4u);
    return off;
}

/* A virtio vendor capability (struct virtio_pci_cap) pointing into a BAR; extra bytes follow. */
static unsigned vcap_add(struct vvu_dev *d, unsigned *prev, unsigned *next, uint8_t type,
                         uint8_t bar, uint32_t offset, uint32_t length, unsigned extra)
{
    unsigned off = cap_add(d, prev, next, PCI_CAP_ID_VNDR, sizeof(struct vvu_pci_cap) + extra);

    put8(d, off + 2, (uint8_t)(sizeof(struct vvu_pci_cap) + extra));
    put8(d, off + 3, type);
    put8(d, off + 4, bar);
    put8(d, off + 5, 0);
    put32(d, off + 8, offset);
    put32(d, off + 12, length);
    return off;
}

static void bars_init(struct vvu_dev *d)
{
    for (unsigned i = 0; i < VHU_PCIDEV_NUM_BARS; i++) {
        const struct vhu_pcidev_bar *b = &d->pci.bars[i];
        unsigned reg = PCI_BAR0 + 4 * i;
        uint32_t type = 0;

        if (!b->size)
            continue;
        if (b->flags & VHU_PCIDEV_BAR_64)
            type |= PCI_BAR_MEM_TYPE_64;
        if (b->flags & VHU_PCIDEV_BAR_PREFETCH)
            type |= PCI_BAR_MEM_PREFETCH;
        put32(d, reg, type);
        wmask32(d, reg, (uint32_t)~(b->size - 1) & ~0xfu);
        if (b->flags & VHU_PCIDEV_BAR_64) {
            put32(d, reg + 4, 0);
            wmask32(d, reg + 4, (uint32_t)(~(b->size - 1) >> 32));
            i++;
        }
    }
}

void vvu_cfg_init(struct vvu_dev *d)
{
    unsigned prev = 0, next = CAPS_START, off;
    unsigned nvec = d->pci.msix_vectors;

    memset(d->cfg, 0, sizeof(d->cfg));
    memset(d->wmask, 0, sizeof(d->wmask));
    put16(d, PCI_VENDOR_ID, VVU_PCI_VENDOR_ID);
    put16(d, PCI_DEVICE_ID, d->opts.pci_device_id);
    put16(d, PCI_STATUS, PCI_STATUS_CAP_LIST);
    put8(d, PCI_REVISION_ID, VVU_PCI_REVISION);
    put8(d, PCI_CLASS_PROG, 0);
    put16(d, PCI_CLASS_PROG + 1, VVU_PCI_CLASS);
    put8(d, PCI_HEADER_TYPE, 0);
    put16(d, PCI_SUBSYSTEM_VENDOR_ID, VVU_PCI_VENDOR_ID);
    put16(d, PCI_SUBSYSTEM_ID, d->opts.virtio_id);
    put16(d, PCI_COMMAND, 0);
    d->wmask[PCI_COMMAND] = PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
    d->wmask[PCI_COMMAND + 1] = PCI_COMMAND_INTX_DISABLE >> 8;
    d->wmask[PCI_INTERRUPT_LINE] = 0xff;
    bars_init(d);

    vcap_add(d, &prev, &next, VVU_PCI_CAP_COMMON_CFG, VVU_BAR_REGS, VVU_COMMON_OFF,
             VVU_COMMON_LEN, 0);
    off = vcap_add(d, &prev, &next, VVU_PCI_CAP_NOTIFY_CFG, VVU_BAR_REGS, VVU_NOTIFY_OFF,
                   VVU_NOTIFY_LEN, 4);
    put32(d, off + 16, VVU_NOTIFY_MULT);
    vcap_add(d, &prev, &next, VVU_PCI_CAP_ISR_CFG, VVU_BAR_REGS, VVU_ISR_OFF, VVU_ISR_LEN, 0);
    vcap_add(d, &prev, &next, VVU_PCI_CAP_DEVICE_CFG, VVU_BAR_REGS, VVU_DEVCFG_OFF,
             VVU_DEVCFG_LEN, 0);
    /* pci_cfg: bar, offset and length are the driver's to set; data is the window. */
    off = vcap_add(d, &prev, &next, VVU_PCI_CAP_PCI_CFG, 0, 0, 0, 4);
    d->pcicfg_cap = (uint8_t)off;
    d->wmask[off + 4] = 0xff;
    wmask32(d, off + 8, 0xffffffffu);
    wmask32(d, off + 12, 0xffffffffu);
    off = vcap_add(d, &prev, &next, VVU_PCI_CAP_DOORBELL_CFG, VVU_BAR_REGS, VVU_DOORBELL_OFF,
                   VVU_DOORBELL_MULT * d->opts.max_vhost_queues, 4);
    put32(d, off + 16, VVU_DOORBELL_MULT);
    vcap_add(d, &prev, &next, VVU_PCI_CAP_NOTIFICATION_CFG, VVU_BAR_REGS, VVU_NOTIFICATION_OFF,
             VVU_NOTIFICATION_LEN, 0);
    off = vcap_add(d, &prev, &next, VVU_PCI_CAP_SHARED_MEMORY_CFG, VVU_BAR_SHM, 0,
                   (uint32_t)d->opts.shm_size, 8);
    put32(d, off + 16, 0);
    put32(d, off + 20, (uint32_t)(d->opts.shm_size >> 32));

    /* MSI-X (PCI Local Bus 3.0, 6.8.2): table size - 1, table and PBA in BAR1. */
    off = cap_add(d, &prev, &next, PCI_CAP_ID_MSIX, 12);
    d->msix_cap = (uint8_t)off;
    put16(d, off + PCI_MSIX_FLAGS, (uint16_t)(nvec - 1));
    d->wmask[off + PCI_MSIX_FLAGS + 1] = (PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL) >> 8;
    put32(d, off + 4, (uint32_t)d->pci.msix_table_off | d->pci.msix_bar);
    put32(d, off + 8, (uint32_t)d->pci.msix_pba_off | d->pci.msix_bar);
}

void vvu_cfg_reset(struct vvu_dev *d)
{
    vvu_cfg_init(d);
}

/* The pci_cfg data window: an access of cap.length bytes at cap.offset of cap.bar
 * (virtio 1.x 4.1.4.9.1: lengths 1, 2, 4; the offset aligned to it). */
static bool pcicfg_window(struct vvu_dev *d, unsigned *bar, uint32_t *off, uint32_t *len)
{
    unsigned c = d->pcicfg_cap;

    *bar = d->cfg[c + 4];
    *off = get32(d, c + 8);
    *len = get32(d, c + 12);
    if (*bar >= VHU_PCIDEV_NUM_BARS || (*len != 1 && *len != 2 && *len != 4) ||
        (*off & (*len - 1))) {
        d->stats.bad_accesses++;
        return false;
    }
    return true;
}

static bool in_pcicfg_data(const struct vvu_dev *d, uint32_t off, uint32_t len)
{
    uint32_t start = d->pcicfg_cap + PCICFG_DATA;

    return off < start + 4 && off + len > start;
}

void vvu_cfg_read(void *dev, uint32_t off, void *buf, uint32_t len)
{
    struct vvu_dev *d = dev;

    if ((len != 1 && len != 2 && len != 4) || off >= VVU_CFG_SPACE_SIZE ||
        len > VVU_CFG_SPACE_SIZE - off) {
        d->stats.bad_accesses++;
        memset(buf, 0xff, len);
        return;
    }
    if (in_pcicfg_data(d, off, len)) {
        uint32_t boff, blen;
        unsigned bar;
        uint8_t v[4] = {0};

        if (off == (uint32_t)d->pcicfg_cap + PCICFG_DATA && pcicfg_window(d, &bar, &boff, &blen) &&
            len >= blen) {
            d->pci.ops->bar_read(d, bar, boff, v, blen);
            memcpy(buf, v, len);
        } else {
            memset(buf, 0, len);
        }
        return;
    }
    memcpy(buf, d->cfg + off, len);
}

void vvu_cfg_write(void *dev, uint32_t off, const void *buf, uint32_t len)
{
    struct vvu_dev *d = dev;
    const uint8_t *p = buf;

    if ((len != 1 && len != 2 && len != 4) || off >= VVU_CFG_SPACE_SIZE ||
        len > VVU_CFG_SPACE_SIZE - off) {
        d->stats.bad_accesses++;
        return;
    }
    if (in_pcicfg_data(d, off, len)) {
        uint32_t boff, blen;
        unsigned bar;

        if (off == (uint32_t)d->pcicfg_cap + PCICFG_DATA && pcicfg_window(d, &bar, &boff, &blen) &&
            len >= blen)
            d->pci.ops->bar_write(d, bar, boff, buf, blen);
        return;
    }
    for (uint32_t i = 0; i < len; i++) {
        uint8_t m = d->wmask[off + i];

        d->cfg[off + i] = (uint8_t)((d->cfg[off + i] & ~m) | (p[i] & m));
    }
}
