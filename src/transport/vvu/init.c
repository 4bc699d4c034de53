/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The virtio-vhost-user driver's bring-up: the capability list (every capability checked
 * against config space and the BAR sizes: a device that lies about its layout is refused with a
 * message, never trusted), the virtio 1.x initialisation sequence (virtio 3.1.1), rxq/txq in DMA
 * memory, interrupt vectors, and BACKEND_UP.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "driver_internal.h"
#include "vhu/log.h"
#include "vhu/util.h"
#include "vhu/virtio.h"

/* PCI config space (PCI 3.0 6.1, 6.7). */
#define PCI_COMMAND 0x04
#define PCI_COMMAND_MEMORY 0x2
#define PCI_COMMAND_MASTER 0x4
#define PCI_STATUS 0x06
#define PCI_STATUS_CAP_LIST 0x10
#define PCI_CAPABILITY_LIST 0x34
#define PCI_CAP_ID_VNDR 0x09
#define PCI_CAP_ID_MSIX 0x11
#define PCI_MSIX_FLAGS 2
#define PCI_MSIX_FLAGS_QSIZE 0x07ff
#define PCI_MSIX_FLAGS_MASKALL 0x4000
#define PCI_MSIX_FLAGS_ENABLE 0x8000
#define PCI_CAP_FIRST 0x40
/* At most this many 4-byte-aligned capabilities fit after the header: a longer walk loops. */
#define PCI_CAP_MAX ((VVU_CFG_SPACE_SIZE - PCI_CAP_FIRST) / 4)

#define COMMON(field) offsetof(struct vvu_common_cfg, field)
#define DEVCFG(field) offsetof(struct vvu_config, field)

/* ---------------------------------------------------------------------------------------- */
/* Register access                                                                            */
/* ---------------------------------------------------------------------------------------- */

static void io_fail(struct vhu_vvu *v, int r)
{
    if (v->io_err == 0)
        v->io_err = r;
}

static uint32_t le_to_cpu(const void *buf, unsigned size)
{
    uint32_t v32;
    uint16_t v16;

    switch (size) {
    case 1:
        return *(const uint8_t *)buf;
    case 2:
        memcpy(&v16, buf, 2);
        return le16toh(v16);
    default:
        memcpy(&v32, buf, 4);
        return le32toh(v32);
    }
}

static void cpu_to_le(uint32_t val, void *buf, unsigned size)
{
    uint32_t v32 = htole32(val);
    uint16_t v16 = htole16((uint16_t)val);

    if (size == 1)
        *(uint8_t *)buf = (uint8_t)val;
    else if (size == 2)
        memcpy(buf, &v16, 2);
    else
        memcpy(buf, &v32, 4);
}

static uint32_t cfg_rd(struct vhu_vvu *v, uint32_t off, unsigned size)
{
    uint8_t buf[4];
    int r = v->pci->ops->cfg_read(v->pci, off, buf, size);

    if (r < 0) {
        io_fail(v, r);
        return UINT32_MAX;
    }
    return le_to_cpu(buf, size);
}

static void cfg_wr(struct vhu_vvu *v, uint32_t off, unsigned size, uint32_t val)
{
    uint8_t buf[4];
    int r;

    cpu_to_le(val, buf, size);
    r = v->pci->ops->cfg_write(v->pci, off, buf, size);
    if (r < 0)
        io_fail(v, r);
}

uint32_t vvu_rd(struct vhu_vvu *v, const struct vvu_win *w, uint64_t off, unsigned size)
{
    uint8_t buf[4];
    int r;

    if (off > w->len || size > w->len - off) {
        io_fail(v, -EFAULT);
        return UINT32_MAX;
    }
    r = v->pci->ops->bar_read(v->pci, w->bar, w->off + off, buf, size);
    if (r < 0) {
        io_fail(v, r);
        return UINT32_MAX;
    }
    return le_to_cpu(buf, size);
}

int vvu_wr(struct vhu_vvu *v, const struct vvu_win *w, uint64_t off, unsigned size, uint32_t val)
{
    uint8_t buf[4];
    int r = -EFAULT;

    if (off <= w->len && size <= w->len - off) {
        cpu_to_le(val, buf, size);
        r = v->pci->ops->bar_write(v->pci, w->bar, w->off + off, buf, size);
    }
    if (r < 0)
        io_fail(v, r);
    return r;
}

/* ---------------------------------------------------------------------------------------- */
/* Capabilities                                                                               */
/* ---------------------------------------------------------------------------------------- */

struct cap_want {
    const char *name;
    uint8_t type;
    size_t field;       /* offsetof(struct vhu_vvu, window) */
    uint64_t min_len;
    uint8_t cap_len;    /* the capability's own size (16, 20 with a multiplier, 24 for shm) */
};

static const struct cap_want caps[] = {
    {"common", VVU_PCI_CAP_COMMON_CFG, offsetof(struct vhu_vvu, common), VVU_COMMON_LEN, 16},
    {"notify", VVU_PCI_CAP_NOTIFY_CFG, offsetof(struct vhu_vvu, notify), 2, 20},
    {"isr", VVU_PCI_CAP_ISR_CFG, offsetof(struct vhu_vvu, isr), VVU_ISR_LEN, 16},
    {"device", VVU_PCI_CAP_DEVICE_CFG, offsetof(struct vhu_vvu, devcfg), VVU_DEVCFG_LEN, 16},
    {"doorbell", VVU_PCI_CAP_DOORBELL_CFG, offsetof(struct vhu_vvu, doorbell), 4, 20},
    {"notification", VVU_PCI_CAP_NOTIFICATION_CFG, offsetof(struct vhu_vvu, notification),
     VVU_NOTIFICATION_LEN, 16},
    {"shared memory", VVU_PCI_CAP_SHARED_MEMORY_CFG, offsetof(struct vhu_vvu, shm), 4096, 24},
};

static struct vvu_win *want_win(struct vhu_vvu *v, const struct cap_want *cw)
{
    return (struct vvu_win *)((char *)v + cw->field);
}

/* One virtio vendor capability at ptr (length already bounded by config space). virtio 4.1.4:
 * the driver uses the first capability of each type it understands and ignores the rest. */
static int vendor_cap(struct vhu_vvu *v, unsigned ptr, unsigned len, uint32_t *found)
{
    uint8_t type = (uint8_t)cfg_rd(v, ptr + offsetof(struct vvu_pci_cap, cfg_type), 1);
    const struct cap_want *cw = NULL;
    struct vvu_win *w;

    for (size_t i = 0; i < VHU_ARRAY_SIZE(caps); i++) {
        if (caps[i].type == type)
            cw = &caps[i];
    }
    if (!cw || (*found & (1u << type)))
        return 0;
    if (len < cw->cap_len) {
        vhu_err("%s: %s capability at 0x%x is %u bytes, needs %u", v->pci->name, cw->name, ptr,
                len, cw->cap_len);
        return -EINVAL;
    }
    w = want_win(v, cw);
    w->bar = (uint8_t)cfg_rd(v, ptr + offsetof(struct vvu_pci_cap, bar), 1);
    w->off = cfg_rd(v, ptr + offsetof(struct vvu_pci_cap, offset), 4);
    w->len = cfg_rd(v, ptr + offsetof(struct vvu_pci_cap, length), 4);
    if (type == VVU_PCI_CAP_NOTIFY_CFG || type == VVU_PCI_CAP_DOORBELL_CFG)
        w->mult = cfg_rd(v, ptr + 16, 4);
    if (type == VVU_PCI_CAP_SHARED_MEMORY_CFG) {
        w->off |= (uint64_t)cfg_rd(v, ptr + 16, 4) << 32;
        w->len |= (uint64_t)cfg_rd(v, ptr + 20, 4) << 32;
    }
    *found |= 1u << type;
    return 0;
}

/* A window must lie inside an implemented BAR and be long enough for what is read there. */
static int win_check(struct vhu_vvu *v, const struct cap_want *cw)
{
    const struct vvu_win *w = want_win(v, cw);
    uint64_t bar_size = w->bar < 6 ? v->pci->ops->bar_size(v->pci, w->bar) : 0;

    if (bar_size == 0 || w->off > bar_size || w->len > bar_size - w->off || w->len < cw->min_len) {
        vhu_err("%s: %s capability: BAR %u [0x%llx, +0x%llx) is outside the BAR (0x%llx bytes) "
                "or shorter than 0x%llx",
                v->pci->name, cw->name, w->bar, (unsigned long long)w->off,
                (unsigned long long)w->len, (unsigned long long)bar_size,
                (unsigned long long)cw->min_len);
        return -EINVAL;
    }
    return 0;
}

static int caps_walk(struct vhu_vvu *v)
{
    uint32_t found = 0;
    unsigned ptr, n = 0;
    int r = 0;

    v->io_err = 0;
    if (!(cfg_rd(v, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST)) {
        vhu_err("%s: no capability list", v->pci->name);
        return v->io_err ? v->io_err : -ENODEV;
    }
    /* PCI 3.0 6.7: the bottom two bits of a capability pointer are reserved. */
    for (ptr = cfg_rd(v, PCI_CAPABILITY_LIST, 1) & 0xfc; ptr && r == 0 && !v->io_err;
         ptr = cfg_rd(v, ptr + 1, 1) & 0xfc) {
        unsigned id;

        if (ptr < PCI_CAP_FIRST || ptr + 4 > VVU_CFG_SPACE_SIZE || ++n > PCI_CAP_MAX) {
            vhu_err("%s: capability list broken at 0x%x (outside config space, or a loop)",
                    v->pci->name, ptr);
            return -EINVAL;
        }
        id = cfg_rd(v, ptr, 1);
        if (id == PCI_CAP_ID_VNDR) {
            unsigned len = cfg_rd(v, ptr + 2, 1);
            if (len < sizeof(struct vvu_pci_cap) || ptr + len > VVU_CFG_SPACE_SIZE) {
                vhu_err("%s: vendor capability at 0x%x has length %u", v->pci->name, ptr, len);
                return -EINVAL;
            }
            r = vendor_cap(v, ptr, len, &found);
        } else if (id == PCI_CAP_ID_MSIX && !v->msix_cap) {
            v->msix_cap = ptr;
            v->msix_size = (cfg_rd(v, ptr + PCI_MSIX_FLAGS, 2) & PCI_MSIX_FLAGS_QSIZE) + 1;
        }
    }
    if (r == 0 && v->io_err) {
        vhu_err("%s: cannot read config space: %s", v->pci->name, strerror(-v->io_err));
        r = v->io_err;
    }
    for (size_t i = 0; r == 0 && i < VHU_ARRAY_SIZE(caps); i++) {
        if (!(found & (1u << caps[i].type))) {
            vhu_err("%s: no %s capability: not a virtio-vhost-user device", v->pci->name,
                    caps[i].name);
            r = -ENODEV;
        } else {
            r = win_check(v, &caps[i]);
        }
    }
    return r;
}

int vvu_caps_parse(struct vhu_vvu *v)
{
    int r = caps_walk(v);

    /* Windows are filled as the walk finds them and checked at its end: after a failure none
     * of them is used, not even to reset the device on the way out (a register at an offset
     * the device made up, and a wait for a status that never reads 0). */
    if (r < 0) {
        for (size_t i = 0; i < VHU_ARRAY_SIZE(caps); i++)
            memset(want_win(v, &caps[i]), 0, sizeof(struct vvu_win));
    }
    return r;
}

/* ---------------------------------------------------------------------------------------- */
/* Device bring-up                                                                            */
/* ---------------------------------------------------------------------------------------- */

static uint8_t dev_status(struct vhu_vvu *v)
{
    return (uint8_t)vvu_rd(v, &v->common, COMMON(device_status), 1);
}

static void set_status(struct vhu_vvu *v, uint8_t bits)
{
    vvu_wr(v, &v->common, COMMON(device_status), 1, dev_status(v) | bits);
}

void vvu_device_reset(struct vhu_vvu *v)
{
    const struct timespec ms = {0, 1000000};

    /* virtio 4.1.4.3.2: after writing 0 the driver waits until device_status reads 0. */
    vvu_wr(v, &v->common, COMMON(device_status), 1, 0);
    for (unsigned i = 0; i < 1000 && !v->io_err && dev_status(v) != 0; i++)
        nanosleep(&ms, NULL);
}

int vvu_notify_queue(struct vhu_vvu *v, unsigned q)
{
    const struct vvu_queue *vq = q == VVU_RXQ ? &v->rxq : &v->txq;

    return vvu_wr(v, &v->notify, vq->notify_off, 2, q);
}

void vvu_set_backend_up(struct vhu_vvu *v, bool up)
{
    /* FRONTEND_UP is the device's: written as 0, ignored. */
    vvu_wr(v, &v->devcfg, DEVCFG(status), 4, up ? VVU_S_BACKEND_UP : 0);
}

int vvu_rx_post(struct vhu_vvu *v, unsigned i)
{
    struct vhu_vqd_seg seg = {
        .addr = v->rxq.bufs_iova + (uint64_t)i * VVU_MSG_MAX,
        .len = VVU_MSG_MAX,
    };

    return vhu_vqd_add(v->rxq.vqd, &seg, 0, 1, (void *)(uintptr_t)(i + 1));
}

/* Queue q: the size the device offers (capped, a power of two for the split layout), the ring
 * in DMA memory, its vector, enable. */
static int queue_setup(struct vhu_vvu *v, unsigned q, struct vvu_queue *vq, void *ring,
                       uint64_t ring_iova)
{
    struct vhu_vqd_config cfg = {.ring = ring, .ring_addr = ring_iova};
    uint64_t desc, drv, dev;
    uint16_t max, num = 1;
    int r;

    vvu_wr(v, &v->common, COMMON(queue_select), 2, q);
    max = (uint16_t)vvu_rd(v, &v->common, COMMON(queue_size), 2);
    while (num * 2u <= VHU_MIN(max, VVU_DRV_QUEUE_SIZE))
        num *= 2;
    if (max == 0 || v->io_err) {
        vhu_err("%s: queue %u is not available", v->pci->name, q);
        return v->io_err ? v->io_err : -ENODEV;
    }
    vq->notify_off = (uint64_t)vvu_rd(v, &v->common, COMMON(queue_notify_off), 2) * v->notify.mult;
    if (vq->notify_off > v->notify.len || v->notify.len - vq->notify_off < 2) {
        vhu_err("%s: queue %u's notify register is outside the notify window", v->pci->name, q);
        return -EINVAL;
    }
    cfg.num = num;
    vhu_vqd_free(vq->vqd);
    vq->vqd = NULL;
    r = vhu_vqd_new(&cfg, &vq->vqd);
    if (r < 0)
        return r;
    vq->num = num;
    vhu_vqd_addrs(vq->vqd, &desc, &drv, &dev);
    vvu_wr(v, &v->common, COMMON(queue_size), 2, num);
    vvu_wr(v, &v->common, COMMON(queue_desc_lo), 4, (uint32_t)desc);
    vvu_wr(v, &v->common, COMMON(queue_desc_hi), 4, (uint32_t)(desc >> 32));
    vvu_wr(v, &v->common, COMMON(queue_driver_lo), 4, (uint32_t)drv);
    vvu_wr(v, &v->common, COMMON(queue_driver_hi), 4, (uint32_t)(drv >> 32));
    vvu_wr(v, &v->common, COMMON(queue_device_lo), 4, (uint32_t)dev);
    vvu_wr(v, &v->common, COMMON(queue_device_hi), 4, (uint32_t)(dev >> 32));
    if (v->nirq) {
        uint16_t vec = q == VVU_RXQ ? VVU_DRV_VEC_RXQ : VVU_DRV_VEC_TXQ;
        vvu_wr(v, &v->common, COMMON(queue_msix_vector), 2, vec);
        if ((uint16_t)vvu_rd(v, &v->common, COMMON(queue_msix_vector), 2) != vec) {
            vhu_err("%s: queue %u refuses MSI-X vector %u", v->pci->name, q, vec);
            return -EIO;
        }
    }
    vvu_wr(v, &v->common, COMMON(queue_enable), 2, 1);
    return v->io_err;
}

/* Which vector the device raises when the frontend kicks vring i (none without interrupts, or
 * beyond the MSI-X table: that ring is polled). */
static void vring_vectors(struct vhu_vvu *v)
{
    for (unsigned i = 0; i < v->nvrings && !v->io_err; i++) {
        unsigned vec = VVU_DRV_VEC_VRING0 + i;
        vvu_wr(v, &v->notification, offsetof(struct vvu_notification_cfg, notification_select),
               2, i);
        vvu_wr(v, &v->notification,
               offsetof(struct vvu_notification_cfg, notification_msix_vector), 2,
               vec < v->nirq ? vec : VVU_NO_VECTOR);
    }
}

void vvu_irqs_setup(struct vhu_vvu *v)
{
    unsigned n = VVU_DRV_VEC_VRING0 + v->nvrings;
    int r;

    if (v->msix_size < VVU_DRV_VEC_VRING0)
        return;
    n = VHU_MIN(n, v->msix_size);
    v->irq_fds = calloc(n, sizeof(*v->irq_fds));
    if (!v->irq_fds)
        return;
    r = v->pci->ops->irq_fds(v->pci, n, v->irq_fds);
    if (r < 0) {
        if (r != -ENOTSUP)
            vhu_warn("%s: no interrupts (%s): polling", v->pci->name, strerror(-r));
        free(v->irq_fds);
        v->irq_fds = NULL;
        return;
    }
    v->nirq = n;
    /* PCI 3.0 6.8.2.3: MSI-X on, function not masked. */
    v->io_err = 0;
    cfg_wr(v, v->msix_cap + PCI_MSIX_FLAGS, 2,
           (cfg_rd(v, v->msix_cap + PCI_MSIX_FLAGS, 2) | PCI_MSIX_FLAGS_ENABLE) &
               ~PCI_MSIX_FLAGS_MASKALL);
}

/* Bytes of one ring in DMA memory (the largest this driver uses, page-aligned). */
static size_t ring_bytes(void)
{
    return VHU_ALIGN_UP(vhu_vqd_ring_size(VVU_DRV_QUEUE_SIZE, false), (size_t)4096);
}

/* One DMA allocation for both rings and every buffer: the rxq ring, the txq ring, the rx
 * buffers, the tx buffers (~530 KiB: fits the one 2 MiB page a guest's pci_sysfs gives). */
int vvu_dma_setup(struct vhu_vvu *v)
{
    size_t bufs = (size_t)VVU_DRV_QUEUE_SIZE * VVU_MSG_MAX;
    int r;

    v->dma_len = 2 * ring_bytes() + 2 * bufs;
    r = v->pci->ops->dma_alloc(v->pci, v->dma_len, &v->dma, &v->dma_iova);
    if (r < 0) {
        vhu_err("%s: cannot allocate %zu bytes of DMA memory: %s", v->pci->name, v->dma_len,
                strerror(-r));
        v->dma = NULL;
        return r;
    }
    v->rxq.bufs = (uint8_t *)v->dma + 2 * ring_bytes();
    v->rxq.bufs_iova = v->dma_iova + 2 * ring_bytes();
    v->txq.bufs = v->rxq.bufs + bufs;
    v->txq.bufs_iova = v->rxq.bufs_iova + bufs;
    return 0;
}

int vvu_device_init(struct vhu_vvu *v)
{
    size_t ring_sz = ring_bytes();
    uint8_t *dma = v->dma;
    uint32_t hi;
    int r;

    v->io_err = 0;
    cfg_wr(v, PCI_COMMAND, 2, cfg_rd(v, PCI_COMMAND, 2) | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    vvu_device_reset(v);
    if (v->io_err || dev_status(v) != 0) {
        vhu_err("%s: the device does not reset", v->pci->name);
        return v->io_err ? v->io_err : -EIO;
    }
    set_status(v, VHU_VIRTIO_CONFIG_S_ACKNOWLEDGE);
    set_status(v, VHU_VIRTIO_CONFIG_S_DRIVER);
    /* virtio 6.1: a modern device offers VERSION_1; that is all this driver takes. */
    vvu_wr(v, &v->common, COMMON(device_feature_select), 4, 1);
    hi = vvu_rd(v, &v->common, COMMON(device_feature), 4);
    if (v->io_err || !(hi & (1u << (VHU_VIRTIO_F_VERSION_1 - 32)))) {
        vhu_err("%s: the device does not offer VIRTIO_F_VERSION_1", v->pci->name);
        r = v->io_err ? v->io_err : -ENODEV;
        goto fail;
    }
    /* vvu.h: VVU_F_FRONTEND_ACK when offered (a device without it takes the next frontend at
     * once; the driver then cannot tell the old one's leftovers from the new one's messages) */
    vvu_wr(v, &v->common, COMMON(device_feature_select), 4, 0);
    v->frontend_ack = vvu_rd(v, &v->common, COMMON(device_feature), 4) &
                      (1u << VVU_F_FRONTEND_ACK);
    vvu_wr(v, &v->common, COMMON(driver_feature_select), 4, 0);
    vvu_wr(v, &v->common, COMMON(driver_feature), 4,
           v->frontend_ack ? 1u << VVU_F_FRONTEND_ACK : 0);
    vvu_wr(v, &v->common, COMMON(driver_feature_select), 4, 1);
    vvu_wr(v, &v->common, COMMON(driver_feature), 4, 1u << (VHU_VIRTIO_F_VERSION_1 - 32));
    set_status(v, VHU_VIRTIO_CONFIG_S_FEATURES_OK);
    if (!(dev_status(v) & VHU_VIRTIO_CONFIG_S_FEATURES_OK)) {
        vhu_err("%s: the device refuses FEATURES_OK", v->pci->name);
        r = v->io_err ? v->io_err : -ENODEV;
        goto fail;
    }
    if (v->nirq) {
        vvu_wr(v, &v->common, COMMON(msix_config), 2, VVU_DRV_VEC_CONFIG);
        if ((uint16_t)vvu_rd(v, &v->common, COMMON(msix_config), 2) != VVU_DRV_VEC_CONFIG) {
            vhu_err("%s: the device refuses the config vector", v->pci->name);
            r = -EIO;
            goto fail;
        }
    }
    if ((uint16_t)vvu_rd(v, &v->common, COMMON(num_queues), 2) < VVU_NUM_VQS) {
        vhu_err("%s: the device has fewer than 2 queues", v->pci->name);
        r = -ENODEV;
        goto fail;
    }
    r = queue_setup(v, VVU_RXQ, &v->rxq, dma, v->dma_iova);
    if (r == 0)
        r = queue_setup(v, VVU_TXQ, &v->txq, dma + ring_sz, v->dma_iova + ring_sz);
    if (r < 0)
        goto fail;
    vring_vectors(v);
    set_status(v, VHU_VIRTIO_CONFIG_S_DRIVER_OK);
    for (unsigned i = 0; i < v->rxq.num && r == 0; i++)
        r = vvu_rx_post(v, i);
    v->ntx_free = 0;
    for (unsigned i = v->txq.num; i-- > 0;)
        v->tx_free[v->ntx_free++] = (uint16_t)i;
    if (r == 0 && vhu_vqd_kick_prepare(v->rxq.vqd))
        vvu_notify_queue(v, VVU_RXQ);
    if (r == 0)
        vvu_set_backend_up(v, true);
    if (r == 0)
        r = v->io_err;
    if (r == 0 && (dev_status(v) & VHU_VIRTIO_CONFIG_S_NEEDS_RESET)) {
        vhu_err("%s: the device needs a reset right after initialisation", v->pci->name);
        r = -EIO;
    }
    if (r == 0) {
        v->cfg_gen = (uint8_t)vvu_rd(v, &v->common, COMMON(config_generation), 1);
        return v->io_err;
    }
fail:
    if (r == v->io_err)
        vhu_err("%s: register access failed during initialisation: %s", v->pci->name,
                strerror(-r));
    v->io_err = 0;
    set_status(v, VHU_VIRTIO_CONFIG_S_FAILED);
    vvu_device_reset(v);
    return r;
}
