/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The VVU device: the pcidev ops, BAR0 registers, MSI-X table storage and the two virtqueues.
 * Config space is vvu_cfg.c, the frontend vvu_relay.c, the shared-memory window vvu_window.c.
 *
 * Everything the bus peer sends is untrusted: an access outside a register, of a width the
 * register does not have, or a value the register cannot take is ignored (reads: all-ones) and
 * counted in stats.bad_accesses, never fatal. A ring the driver placed outside DMA memory marks
 * the device NEEDS_RESET (virtio 1.x 2.1.2) and raises a config interrupt.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vhu/log.h"
#include "vhu/util.h"
#include "vhu/virtio.h"
#include "vvu_internal.h"

#define VVU_DEVICE_FEATURES \
    (vhu_feature(VHU_VIRTIO_F_VERSION_1) | vhu_feature(VVU_F_FRONTEND_ACK))

/* ---- interrupts ------------------------------------------------------------------------------ */

void vvu_irq(struct vvu_dev *d, uint16_t vector)
{
    if (vector == VVU_NO_VECTOR || vector >= d->pci.msix_vectors)
        return;
    if (d->pci.bus_ops && d->pci.bus_ops->irq)
        d->pci.bus_ops->irq(d->pci.bus, vector);
}

void vvu_layout_changed(struct vvu_dev *d)
{
    if (d->pci.bus_ops && d->pci.bus_ops->layout_changed)
        d->pci.bus_ops->layout_changed(d->pci.bus);
}

void vvu_config_irq(struct vvu_dev *d)
{
    d->isr |= 2;
    vvu_irq(d, d->msix_config);
}

static void needs_reset(struct vvu_dev *d, const char *why)
{
    if (d->status & VHU_VIRTIO_CONFIG_S_NEEDS_RESET)
        return;
    vhu_err_rl("vvu: device needs reset: %s", why);
    d->status |= VHU_VIRTIO_CONFIG_S_NEEDS_RESET;
    vvu_config_irq(d);
}

void vvu_set_frontend_up(struct vvu_dev *d, bool up)
{
    uint32_t s = up ? (d->vstatus | VVU_S_FRONTEND_UP) : (d->vstatus & ~VVU_S_FRONTEND_UP);

    if (s == d->vstatus)
        return;
    d->vstatus = s;
    d->generation++;
    vvu_config_irq(d);
}

/* ---- virtqueues ------------------------------------------------------------------------------ */

static void vq_notify_hook(struct vhu_vq *vq, void *opaque)
{
    struct vvu_dev *d = opaque;

    d->isr |= 1;
    vvu_irq(d, d->q[vhu_vq_index(vq)].msix_vector);
}

static void vq_error_hook(struct vhu_vq *vq, void *opaque)
{
    struct vvu_dev *d = opaque;
    const char *why = vhu_vq_break_reason(vq);

    needs_reset(d, why ? why : "queue broken");
}

/* Translate q's rings in the DMA table and start it at base. */
static int queue_start(struct vvu_dev *d, unsigned qi, uint32_t base)
{
    struct vvu_queue *q = &d->q[qi];
    struct vhu_vq_config c = {.num = q->size};
    uint64_t n = q->size;

    if (!d->dma)
        return -EFAULT;
    if (n == 0 || n > VVU_QUEUE_MAX_SIZE || (n & (n - 1)))
        return -EINVAL;
    /* virtio 1.x 2.7: descriptor table 16 * n, available ring 6 + 2 * n, used ring 6 + 8 * n */
    c.desc = vhu_mem_gpa_range(d->dma, q->desc, 16 * n);
    c.driver = vhu_mem_gpa_range(d->dma, q->driver, 6 + 2 * n);
    c.device = vhu_mem_gpa_range(d->dma, q->device, 6 + 8 * n);
    if (!c.desc || !c.driver || !c.device)
        return -EFAULT;
    vhu_vq_set_base(q->vq, base);
    return vhu_vq_start(q->vq, &c, d->dma);
}

static void queues_start(struct vvu_dev *d)
{
    for (unsigned i = 0; i < VVU_NUM_VQS; i++) {
        if (!d->q[i].enabled || vhu_vq_started(d->q[i].vq))
            continue;
        if (queue_start(d, i, 0) < 0) {
            needs_reset(d, i == VVU_RXQ ? "rxq rings outside DMA memory or bad size"
                                        : "txq rings outside DMA memory or bad size");
            return;
        }
    }
}

static void queues_stop(struct vvu_dev *d)
{
    for (unsigned i = 0; i < VVU_NUM_VQS; i++)
        vhu_vq_stop(d->q[i].vq);
}

static void queue_reset(struct vvu_queue *q)
{
    vhu_vq_stop(q->vq);
    vhu_vq_set_base(q->vq, 0);
    q->size = VVU_QUEUE_MAX_SIZE;
    q->msix_vector = VVU_NO_VECTOR;
    q->enabled = false;
    q->desc = q->driver = q->device = 0;
}

bool vvu_driver_ok(const struct vvu_dev *d)
{
    return (d->status & VHU_VIRTIO_CONFIG_S_DRIVER_OK) &&
           !(d->status & VHU_VIRTIO_CONFIG_S_NEEDS_RESET);
}

int vvu_rxq_put(struct vvu_dev *d, const struct vhost_user_hdr *h, const void *payload)
{
    uint32_t len = (uint32_t)sizeof(*h) + h->size;
    struct vhu_vq *vq = d->q[VVU_RXQ].vq;
    struct vhu_vq_elem *e;

    if (!vvu_driver_ok(d) || !vhu_vq_started(vq) || vhu_vq_broken(vq))
        return 0;
    e = vhu_vq_pop(vq);
    if (!e)
        return vhu_vq_broken(vq) ? -EIO : 0;
    if (e->out_num != 0 || e->in_len < len) {
        vhu_vq_push(vq, e, 0);
        vhu_vq_break(vq, "rxq buffer not writable or smaller than VVU_MSG_MAX");
        return -EIO;
    }
    vhu_iov_from_buf(e->iov, e->in_num, 0, h, sizeof(*h));
    vhu_iov_from_buf(e->iov, e->in_num, sizeof(*h), payload, h->size);
    vhu_vq_push(vq, e, len);
    vhu_vq_flush(vq);
    d->stats.msgs_to_driver++;
    return 1;
}

/* txq: the driver's messages for the frontend (virtio-vhost-user: replies only). */
static void txq_process(struct vvu_dev *d)
{
    struct vhu_vq *vq = d->q[VVU_TXQ].vq;
    struct vhu_vq_elem *e;

    if (!vvu_driver_ok(d) || !vhu_vq_started(vq))
        return;
    while ((e = vhu_vq_pop(vq)) != NULL) {
        struct vhost_user_hdr h;
        uint64_t len = e->out_len;

        if (len < sizeof(h) || len > VVU_MSG_MAX) {
            vhu_err_rl("vvu: txq message of %llu bytes dropped", (unsigned long long)len);
            d->stats.bad_accesses++;
        } else {
            vhu_iov_to_buf(e->iov, e->out_num, 0, d->txbuf, len);
            memcpy(&h, d->txbuf, sizeof(h));
            if (h.size != len - sizeof(h)) {
                vhu_err_rl("vvu: txq message size %u in %llu bytes dropped", h.size,
                           (unsigned long long)len);
                d->stats.bad_accesses++;
            } else if (!(h.flags & VHOST_USER_REPLY_MASK)) {
                vhu_err_rl("vvu: txq request %u dropped: no backend channel", h.request);
                d->stats.dropped_backend_reqs++;
            } else {
                vvu_relay_reply(d, d->txbuf, (uint32_t)len);
            }
        }
        vhu_vq_push(vq, e, 0);
    }
    vhu_vq_flush(vq);
}

/* ---- reset ----------------------------------------------------------------------------------- */

/* Device reset (device_status 0), or with bus a function-level reset: DMA memory, config space
 * and MSI-X table too. */
void vvu_reset(struct vvu_dev *d, bool bus)
{
    for (unsigned i = 0; i < VVU_NUM_VQS; i++)
        queue_reset(&d->q[i]);
    d->status = 0;
    d->dfselect = d->gfselect = 0;
    d->driver_features = 0;
    d->msix_config = VVU_NO_VECTOR;
    d->queue_select = 0;
    d->isr = 0;
    d->vstatus &= ~VVU_S_BACKEND_UP;
    d->await_ack = false;
    d->notif_select = 0;
    for (unsigned i = 0; i < d->opts.max_vhost_queues; i++)
        d->vrings[i].vector = VVU_NO_VECTOR;
    vvu_relay_update(d);
    if (bus) {
        vhu_mem_table_put(d->dma);
        d->dma = NULL;
        vvu_cfg_reset(d);
        for (unsigned v = 0; v < d->pci.msix_vectors; v++) {
            memset(d->msix_table + 16 * v, 0, 16);
            d->msix_table[16 * v + 12] = 1; /* vector control: masked */
        }
    }
}

/* ---- common cfg ------------------------------------------------------------------------------ */

static void common_snapshot(const struct vvu_dev *d, struct vvu_common_cfg *c)
{
    const struct vvu_queue *q = d->queue_select < VVU_NUM_VQS ? &d->q[d->queue_select] : NULL;

    memset(c, 0, sizeof(*c));
    c->device_feature_select = d->dfselect;
    c->device_feature = d->dfselect < 2 ? (uint32_t)(VVU_DEVICE_FEATURES >> (32 * d->dfselect)) : 0;
    c->driver_feature_select = d->gfselect;
    c->driver_feature = d->gfselect < 2 ? (uint32_t)(d->driver_features >> (32 * d->gfselect)) : 0;
    c->msix_config = d->msix_config;
    c->num_queues = VVU_NUM_VQS;
    c->device_status = d->status;
    c->config_generation = d->generation;
    c->queue_select = d->queue_select;
    if (q) {
        c->queue_size = q->size;
        c->queue_msix_vector = q->msix_vector;
        c->queue_enable = q->enabled;
        c->queue_notify_off = d->queue_select;
        c->queue_desc_lo = (uint32_t)q->desc;
        c->queue_desc_hi = (uint32_t)(q->desc >> 32);
        c->queue_driver_lo = (uint32_t)q->driver;
        c->queue_driver_hi = (uint32_t)(q->driver >> 32);
        c->queue_device_lo = (uint32_t)q->device;
        c->queue_device_hi = (uint32_t)(q->device >> 32);
    }
}

/* A vector the device can use, else VVU_NO_VECTOR (virtio 1.x 4.1.5.1.2: reads back NO_VECTOR
 * when the device cannot map it). */
static uint16_t vector_ok(const struct vvu_dev *d, uint32_t v)
{
    return v < d->pci.msix_vectors ? (uint16_t)v : VVU_NO_VECTOR;
}

static void set_status(struct vvu_dev *d, uint8_t v)
{
    uint8_t old = d->status;

    if (v == 0) {
        vvu_reset(d, false);
        return;
    }
    /* virtio 1.x 2.1.1: the driver never clears bits; NEEDS_RESET is the device's own. */
    v = (uint8_t)((v & ~VHU_VIRTIO_CONFIG_S_NEEDS_RESET) | (old & VHU_VIRTIO_CONFIG_S_NEEDS_RESET));
    if ((v & VHU_VIRTIO_CONFIG_S_FEATURES_OK) && !(old & VHU_VIRTIO_CONFIG_S_FEATURES_OK)) {
        /* virtio 1.x 3.1.1: FEATURES_OK only for a subset of the offer with VERSION_1. */
        if ((d->driver_features & ~VVU_DEVICE_FEATURES) ||
            !vhu_has_feature(d->driver_features, VHU_VIRTIO_F_VERSION_1))
            v &= (uint8_t)~VHU_VIRTIO_CONFIG_S_FEATURES_OK;
    }
    if ((v & VHU_VIRTIO_CONFIG_S_DRIVER_OK) && !(v & VHU_VIRTIO_CONFIG_S_FEATURES_OK)) {
        d->stats.bad_accesses++;
        v &= (uint8_t)~VHU_VIRTIO_CONFIG_S_DRIVER_OK;
    }
    d->status = v;
    if ((v & VHU_VIRTIO_CONFIG_S_DRIVER_OK) && !(old & VHU_VIRTIO_CONFIG_S_DRIVER_OK))
        queues_start(d);
    else if (!(v & VHU_VIRTIO_CONFIG_S_DRIVER_OK))
        queues_stop(d);
    vvu_relay_update(d);
}

static bool queue_write(struct vvu_dev *d, unsigned off, uint32_t v)
{
    struct vvu_queue *q;
    uint64_t *addr;

    if (d->queue_select >= VVU_NUM_VQS)
        return false;
    q = &d->q[d->queue_select];
    if (off == offsetof(struct vvu_common_cfg, queue_msix_vector)) {
        q->msix_vector = vector_ok(d, v);
        return true;
    }
    if (off == offsetof(struct vvu_common_cfg, queue_enable)) {
        /* virtio 1.x 4.1.4.3.2: the driver only ever writes 1 (no RING_RESET offered). */
        if (v != 1 || q->enabled)
            return v == 1;
        q->enabled = true;
        if (d->status & VHU_VIRTIO_CONFIG_S_DRIVER_OK)
            queues_start(d);
        return true;
    }
    if (q->enabled)
        return false;   /* size and addresses are fixed once enabled */
    switch (off) {
    case offsetof(struct vvu_common_cfg, queue_size):
        if (v == 0 || v > VVU_QUEUE_MAX_SIZE || (v & (v - 1)))
            return false;
        q->size = (uint16_t)v;
        return true;
    case offsetof(struct vvu_common_cfg, queue_desc_lo):
    case offsetof(struct vvu_common_cfg, queue_desc_hi):
        addr = &q->desc;
        break;
    case offsetof(struct vvu_common_cfg, queue_driver_lo):
    case offsetof(struct vvu_common_cfg, queue_driver_hi):
        addr = &q->driver;
        break;
    case offsetof(struct vvu_common_cfg, queue_device_lo):
    case offsetof(struct vvu_common_cfg, queue_device_hi):
        addr = &q->device;
        break;
    default:
        return false;
    }
    /* the _lo halves sit at multiples of 8, the _hi halves 4 bytes after */
    if (off & 4)
        *addr = (*addr & 0xffffffffull) | (uint64_t)v << 32;
    else
        *addr = (*addr & ~0xffffffffull) | v;
    return true;
}

_Static_assert(offsetof(struct vvu_common_cfg, queue_desc_lo) % 8 == 0 &&
                   offsetof(struct vvu_common_cfg, queue_driver_lo) % 8 == 0 &&
                   offsetof(struct vvu_common_cfg, queue_device_lo) % 8 == 0,
               "queue_write tells the halves apart by bit 2 of the offset");

/* One whole field written with its natural width. */
static bool common_field_write(struct vvu_dev *d, unsigned off, uint32_t v)
{
    switch (off) {
    case offsetof(struct vvu_common_cfg, device_feature_select):
        d->dfselect = v;
        return true;
    case offsetof(struct vvu_common_cfg, driver_feature_select):
        d->gfselect = v;
        return true;
    case offsetof(struct vvu_common_cfg, driver_feature):
        if (d->gfselect >= 2 || (d->status & VHU_VIRTIO_CONFIG_S_FEATURES_OK))
            return false;
        d->driver_features &= ~(0xffffffffull << (32 * d->gfselect));
        d->driver_features |= (uint64_t)v << (32 * d->gfselect);
        return true;
    case offsetof(struct vvu_common_cfg, msix_config):
        d->msix_config = vector_ok(d, v);
        return true;
    case offsetof(struct vvu_common_cfg, device_status):
        set_status(d, (uint8_t)v);
        return true;
    case offsetof(struct vvu_common_cfg, queue_select):
        d->queue_select = (uint16_t)v;
        if (v >= VVU_NUM_VQS)
            d->stats.bad_accesses++;
        return true;
    case offsetof(struct vvu_common_cfg, device_feature):
    case offsetof(struct vvu_common_cfg, num_queues):
    case offsetof(struct vvu_common_cfg, config_generation):
    case offsetof(struct vvu_common_cfg, queue_notify_off):
        return false;   /* read-only */
    }
    return queue_write(d, off, v);
}

static unsigned common_field_size(unsigned off)
{
    static const uint8_t sizes[VVU_COMMON_LEN] = {
        [offsetof(struct vvu_common_cfg, device_feature_select)] = 4,
        [offsetof(struct vvu_common_cfg, device_feature)] = 4,
        [offsetof(struct vvu_common_cfg, driver_feature_select)] = 4,
        [offsetof(struct vvu_common_cfg, driver_feature)] = 4,
        [offsetof(struct vvu_common_cfg, msix_config)] = 2,
        [offsetof(struct vvu_common_cfg, num_queues)] = 2,
        [offsetof(struct vvu_common_cfg, device_status)] = 1,
        [offsetof(struct vvu_common_cfg, config_generation)] = 1,
        [offsetof(struct vvu_common_cfg, queue_select)] = 2,
        [offsetof(struct vvu_common_cfg, queue_size)] = 2,
        [offsetof(struct vvu_common_cfg, queue_msix_vector)] = 2,
        [offsetof(struct vvu_common_cfg, queue_enable)] = 2,
        [offsetof(struct vvu_common_cfg, queue_notify_off)] = 2,
        [offsetof(struct vvu_common_cfg, queue_desc_lo)] = 4,
        [offsetof(struct vvu_common_cfg, queue_desc_hi)] = 4,
        [offsetof(struct vvu_common_cfg, queue_driver_lo)] = 4,
        [offsetof(struct vvu_common_cfg, queue_driver_hi)] = 4,
        [offsetof(struct vvu_common_cfg, queue_device_lo)] = 4,
        [offsetof(struct vvu_common_cfg, queue_device_hi)] = 4,
    };

    return off < VVU_COMMON_LEN ? sizes[off] : 0;
}

/* A write covers whole fields (an 8-byte write may set desc_lo and desc_hi together). */
static void common_write(struct vvu_dev *d, unsigned off, const uint8_t *buf, uint32_t len)
{
    while (len) {
        unsigned sz = common_field_size(off);
        uint32_t v = 0;

        if (sz == 0 || sz > len) {
            d->stats.bad_accesses++;
            return;
        }
        memcpy(&v, buf, sz);    /* little-endian host */
        if (!common_field_write(d, off, v))
            d->stats.bad_accesses++;
        off += sz;
        buf += sz;
        len -= sz;
    }
}

/* ---- BAR0 ------------------------------------------------------------------------------------ */

static void devcfg_read(struct vvu_dev *d, unsigned off, void *buf, uint32_t len)
{
    struct vvu_config c = {.status = d->vstatus, .max_vhost_queues = d->opts.max_vhost_queues};

    memcpy(c.uuid, d->opts.uuid, sizeof(c.uuid));
    memcpy(buf, (uint8_t *)&c + off, len);
}

static void devcfg_write(struct vvu_dev *d, unsigned off, const uint8_t *buf, uint32_t len)
{
    uint32_t s = d->vstatus;
    uint8_t *sb = (uint8_t *)&s;
    bool was;

    if (off >= sizeof(uint32_t) || len > sizeof(uint32_t) - off) {
        d->stats.bad_accesses++;
        return;
    }
    memcpy(sb + off, buf, len);
    /* Only BACKEND_UP is the driver's; FRONTEND_UP and the rest stay as they are. */
    was = d->vstatus & VVU_S_BACKEND_UP;
    if (s & ~VVU_S_BACKEND_UP & ~d->vstatus)
        d->stats.bad_accesses++;
    d->vstatus = (d->vstatus & ~VVU_S_BACKEND_UP) | (s & VVU_S_BACKEND_UP);
    if (was != (bool)(d->vstatus & VVU_S_BACKEND_UP))
        vvu_relay_update(d);
}

static void notification_read(struct vvu_dev *d, unsigned off, void *buf, uint32_t len)
{
    struct vvu_notification_cfg c = {.notification_select = d->notif_select};

    c.notification_msix_vector = d->notif_select < d->opts.max_vhost_queues
                                     ? d->vrings[d->notif_select].vector
                                     : VVU_NO_VECTOR;
    memcpy(buf, (uint8_t *)&c + off, len);
}

static void notification_write(struct vvu_dev *d, unsigned off, const uint8_t *buf, uint32_t len)
{
    uint16_t v;

    /* 16-bit fields; a 32-bit write sets both, select first */
    if ((off != 0 && off != 2) || (len != 2 && !(len == 4 && off == 0))) {
        d->stats.bad_accesses++;
        return;
    }
    for (; len; off += 2, buf += 2, len -= 2) {
        memcpy(&v, buf, 2);
        if (off == 0 && v >= d->opts.max_vhost_queues) {
            vhu_err_rl("vvu: notification_select %u >= max_vhost_queues %u ignored", v,
                       d->opts.max_vhost_queues);
            d->stats.bad_accesses++;
        } else if (off == 0) {
            d->notif_select = v;
        } else {
            d->vrings[d->notif_select].vector = vector_ok(d, v);
        }
    }
}

static bool in_range(uint64_t off, uint32_t len, uint64_t start, uint64_t size)
{
    return off >= start && off - start < size && len <= size - (off - start);
}

static void regs_read(struct vvu_dev *d, uint64_t off, void *buf, uint32_t len)
{
    if (in_range(off, len, VVU_COMMON_OFF, VVU_COMMON_LEN)) {
        struct vvu_common_cfg c;

        common_snapshot(d, &c);
        memcpy(buf, (uint8_t *)&c + (off - VVU_COMMON_OFF), len);
    } else if (off == VVU_ISR_OFF) {
        /* virtio 1.x 4.1.4.5: reading clears */
        memset(buf, 0, len);
        *(uint8_t *)buf = d->isr;
        d->isr = 0;
    } else if (in_range(off, len, VVU_DEVCFG_OFF, VVU_DEVCFG_LEN)) {
        devcfg_read(d, (unsigned)(off - VVU_DEVCFG_OFF), buf, len);
    } else if (in_range(off, len, VVU_NOTIFICATION_OFF, VVU_NOTIFICATION_LEN)) {
        notification_read(d, (unsigned)(off - VVU_NOTIFICATION_OFF), buf, len);
    } else if (in_range(off, len, VVU_NOTIFY_OFF, VVU_NOTIFY_LEN) ||
               in_range(off, len, VVU_DOORBELL_OFF, VVU_DOORBELL_MULT * d->opts.max_vhost_queues)) {
        memset(buf, 0, len);   /* write-only registers */
    } else {
        d->stats.bad_accesses++;
        memset(buf, 0xff, len);
    }
}

static void regs_write(struct vvu_dev *d, uint64_t off, const void *buf, uint32_t len)
{
    if (in_range(off, len, VVU_COMMON_OFF, VVU_COMMON_LEN)) {
        common_write(d, (unsigned)(off - VVU_COMMON_OFF), buf, len);
        vvu_relay_update(d);
    } else if (in_range(off, len, VVU_DEVCFG_OFF, VVU_DEVCFG_LEN)) {
        devcfg_write(d, (unsigned)(off - VVU_DEVCFG_OFF), buf, len);
    } else if (in_range(off, len, VVU_NOTIFICATION_OFF, VVU_NOTIFICATION_LEN)) {
        notification_write(d, (unsigned)(off - VVU_NOTIFICATION_OFF), buf, len);
    } else if (in_range(off, len, VVU_NOTIFY_OFF, VVU_NOTIFY_LEN) && len <= 4) {
        unsigned q = (unsigned)(off - VVU_NOTIFY_OFF) / VVU_NOTIFY_MULT;

        if (q == VVU_RXQ)
            vvu_relay_rx_ready(d);
        else
            txq_process(d);
        vvu_relay_update(d);    /* a broken queue ends the session */
    } else if (in_range(off, len, VVU_DOORBELL_OFF, VVU_DOORBELL_MULT * d->opts.max_vhost_queues) &&
               len <= 4) {
        vvu_relay_doorbell(d, (unsigned)(off - VVU_DOORBELL_OFF) / VVU_DOORBELL_MULT);
    } else {
        vhu_err_rl("vvu: BAR0 write of %u bytes at 0x%llx ignored", len, (unsigned long long)off);
        d->stats.bad_accesses++;
    }
}

/* ---- BAR1: MSI-X table and PBA --------------------------------------------------------------- */

/* The table is stored for the bus peer to read back; delivery (and masking) is the adapter's:
 * vvu_irq() hands it the vector. The PBA reads as zeroes (nothing is held pending here). */
static void msix_access(struct vvu_dev *d, uint64_t off, void *buf, uint32_t len, bool write)
{
    uint64_t tsize = 16ull * d->pci.msix_vectors;

    if (off < tsize && len <= tsize - off && (len == 4 || len == 8) && !(off & (len - 1))) {
        if (write)
            memcpy(d->msix_table + off, buf, len);
        else
            memcpy(buf, d->msix_table + off, len);
        return;
    }
    if (!write && off >= d->pci.msix_pba_off) {
        memset(buf, 0, len);
        return;
    }
    d->stats.bad_accesses++;
    if (!write)
        memset(buf, 0xff, len);
}

/* ---- pcidev ops ------------------------------------------------------------------------------ */

static bool access_ok(struct vvu_dev *d, unsigned bar, uint64_t off, uint32_t len)
{
    if (bar >= VHU_PCIDEV_NUM_BARS || (len != 1 && len != 2 && len != 4 && len != 8) ||
        !in_range(off, len, 0, d->pci.bars[bar].size)) {
        d->stats.bad_accesses++;
        return false;
    }
    return true;
}

/* One BAR access; reads of nothing are all-ones, writes to nothing are dropped (both counted). */
static void bar_access(struct vvu_dev *d, unsigned bar, uint64_t off, void *buf, uint32_t len,
                       bool write)
{
    void *p;

    if (!access_ok(d, bar, off, len))
        goto bad;
    switch (bar) {
    case VVU_BAR_REGS:
        if (write)
            regs_write(d, off, buf, len);
        else
            regs_read(d, off, buf, len);
        return;
    case VVU_BAR_MSIX:
        msix_access(d, off, buf, len, write);
        return;
    case VVU_BAR_SHM:
        p = vvu_window_host(d, off, len);
        if (!p)
            break;
        if (write)
            memcpy(p, buf, len);
        else
            memcpy(buf, p, len);
        return;
    }
    d->stats.bad_accesses++;
bad:
    if (!write)
        memset(buf, 0xff, len);
}

static void pd_bar_read(void *dev, unsigned bar, uint64_t off, void *buf, uint32_t len)
{
    bar_access(dev, bar, off, buf, len, false);
}

static void pd_bar_write(void *dev, unsigned bar, uint64_t off, const void *buf, uint32_t len)
{
    /* not written through: write accesses only read buf */
    bar_access(dev, bar, off, (void *)buf, len, true);
}

static int pd_bar_mmap(void *dev, unsigned bar, uint64_t *file_off, struct vhu_pcidev_area *areas,
                       unsigned max, unsigned *n)
{
    struct vvu_dev *d = dev;

    if (bar != VVU_BAR_SHM)
        return -ENOENT;
    return vvu_window_mmap(d, file_off, areas, max, n);
}

static int pd_io_fds(void *dev, unsigned bar, struct vhu_pcidev_iofd *out, unsigned max)
{
    struct vvu_dev *d = dev;

    if (bar != VVU_BAR_REGS)
        return 0;
    return vvu_relay_io_fds(d, out, max);
}

static void pd_set_dma(void *dev, struct vhu_mem_table *t)
{
    struct vvu_dev *d = dev;
    struct vhu_mem_table *old = d->dma;

    d->dma = t;
    /* Running rings point into the old table: place them again in the new one (same position). */
    for (unsigned i = 0; i < VVU_NUM_VQS; i++) {
        struct vhu_vq *vq = d->q[i].vq;
        uint32_t base;

        if (!vhu_vq_started(vq))
            continue;
        base = vhu_vq_get_base(vq);
        vhu_vq_stop(vq);
        if (queue_start(d, i, base) < 0)
            needs_reset(d, "DMA memory of a running queue went away");
    }
    vhu_mem_table_put(old);
    vvu_relay_update(d);
}

static void pd_reset(void *dev)
{
    vvu_reset(dev, true);
}

static const struct vhu_pcidev_ops vvu_pcidev_ops = {
    .cfg_read = vvu_cfg_read,
    .cfg_write = vvu_cfg_write,
    .bar_read = pd_bar_read,
    .bar_write = pd_bar_write,
    .bar_mmap = pd_bar_mmap,
    .io_fds = pd_io_fds,
    .set_dma = pd_set_dma,
    .reset = pd_reset,
};

/* ---- lifecycle ------------------------------------------------------------------------------- */

void vvu_dev_opts_default(struct vvu_dev_opts *o)
{
    int fd;

    memset(o, 0, sizeof(*o));
    o->pci_device_id = VVU_PCI_DEVICE_ID;
    o->virtio_id = VVU_VIRTIO_DEVICE_ID;
    o->max_vhost_queues = VVU_DEFAULT_VHOST_QUEUES;
    o->shm_size = 1ull << 30;
    o->socket_fd = -1;
    fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, o->uuid, sizeof(o->uuid)) != (ssize_t)sizeof(o->uuid)) {
        uint64_t t = vhu_now_ns();
        memcpy(o->uuid, &t, sizeof(t));
    }
    if (fd >= 0)
        close(fd);
    /* RFC 4122 version 4 */
    o->uuid[6] = (uint8_t)((o->uuid[6] & 0x0f) | 0x40);
    o->uuid[8] = (uint8_t)((o->uuid[8] & 0x3f) | 0x80);
}

static int opts_check(const struct vvu_dev_opts *o)
{
    if (o->max_vhost_queues == 0 || o->max_vhost_queues > VVU_MAX_VHOST_QUEUES) {
        vhu_err("vvu: max_vhost_queues must be 1..%u", VVU_MAX_VHOST_QUEUES);
        return -EINVAL;
    }
    if (o->shm_size < 4096 || (o->shm_size & (o->shm_size - 1))) {
        vhu_err("vvu: shm_size must be a power of two >= 4096");
        return -EINVAL;
    }
    if (!o->socket_path && o->socket_fd < 0) {
        vhu_err("vvu: a frontend socket path or fd is needed");
        return -EINVAL;
    }
    if (o->client && !o->socket_path) {
        vhu_err("vvu: client mode needs a socket path");
        return -EINVAL;
    }
    return 0;
}

static void pci_init(struct vvu_dev *d)
{
    struct vhu_pcidev *p = &d->pci;

    p->ops = &vvu_pcidev_ops;
    p->dev = d;
    p->cfg_size = VVU_CFG_SPACE_SIZE;
    p->bars[VVU_BAR_REGS] = (struct vhu_pcidev_bar){VVU_BAR_REGS_SIZE, VHU_PCIDEV_BAR_MEM};
    p->bars[VVU_BAR_MSIX] = (struct vhu_pcidev_bar){VVU_BAR_MSIX_SIZE, VHU_PCIDEV_BAR_MEM};
    p->bars[VVU_BAR_SHM] = (struct vhu_pcidev_bar){
        d->opts.shm_size, VHU_PCIDEV_BAR_MEM | VHU_PCIDEV_BAR_64 | VHU_PCIDEV_BAR_PREFETCH};
    p->msix_vectors = VVU_MSIX_VECTORS(d->opts.max_vhost_queues);
    p->msix_bar = VVU_BAR_MSIX;
    p->msix_table_off = VVU_MSIX_TABLE_OFF;
    p->msix_pba_off = VVU_MSIX_PBA_OFF;
}

int vvu_dev_new(struct vhu_loop *loop, const struct vvu_dev_opts *o, struct vvu_dev **out)
{
    struct vhu_vq_hooks hooks = {.notify = vq_notify_hook, .error = vq_error_hook};
    struct vvu_dev *d;
    int r;

    if (!loop || !o || !out)
        return -EINVAL;
    r = opts_check(o);
    if (r < 0)
        return r;
    d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->loop = loop;
    d->opts = *o;
    d->listen_fd = d->fe_fd = d->timer_fd = -1;
    vvu_window_init(&d->win);
    pci_init(d);
    d->socket_path = o->socket_path ? strdup(o->socket_path) : NULL;
    d->opts.socket_path = d->socket_path;
    d->vrings = calloc(o->max_vhost_queues, sizeof(*d->vrings));
    d->msix_table = calloc(d->pci.msix_vectors, 16);
    d->rx_msg = calloc(1, sizeof(*d->rx_msg));
    d->tx_msg = calloc(1, sizeof(*d->tx_msg));
    d->txbuf = malloc(VVU_MSG_MAX);
    if ((o->socket_path && !d->socket_path) || !d->vrings || !d->msix_table || !d->rx_msg ||
        !d->tx_msg || !d->txbuf) {
        r = -ENOMEM;
        goto fail;
    }
    for (unsigned i = 0; i < o->max_vhost_queues; i++)
        d->vrings[i] = (struct vvu_vring){d, i, -1, -1, -1, VVU_NO_VECTOR};
    for (unsigned i = 0; i < VHOST_USER_MAX_FDS; i++)
        d->rx_msg->fds[i] = -1;
    for (unsigned i = 0; i < VVU_NUM_VQS; i++) {
        r = vhu_vq_new(i, sizeof(struct vhu_vq_elem), VVU_VQ_MAX_SEGS, &d->q[i].vq);
        if (r < 0)
            goto fail;
        vhu_vq_set_hooks(d->q[i].vq, &(struct vhu_vq_hooks){hooks.notify, hooks.error, d});
    }
    r = vvu_relay_init(d);
    if (r < 0)
        goto fail;
    vvu_reset(d, true);
    *out = d;
    return 0;
fail:
    vvu_dev_free(d);
    return r;
}

struct vhu_pcidev *vvu_dev_pci(struct vvu_dev *d)
{
    return &d->pci;
}

void vvu_dev_stats(const struct vvu_dev *d, struct vvu_dev_stats *s)
{
    *s = d->stats;
}

void vvu_dev_free(struct vvu_dev *d)
{
    if (!d)
        return;
    vvu_relay_fini(d);
    for (unsigned i = 0; i < VVU_NUM_VQS; i++)
        vhu_vq_free(d->q[i].vq);
    vhu_mem_table_put(d->dma);
    free(d->vrings);
    free(d->msix_table);
    free(d->rx_msg);
    free(d->tx_msg);
    free(d->txbuf);
    free(d->socket_path);
    free(d);
}
