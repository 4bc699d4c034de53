/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Fuzz target: the virtio-vhost-user device model (src/vvu/vvu_dev.c and friends) as a hostile
 * driver drives it, through its struct vhu_pcidev ops directly (no bus adapter): config-space
 * reads and writes, BAR reads and writes at any offset and width, the rxq/txq rings placed in
 * a DMA buffer the input also writes (descriptors, ring indexes, txq message bytes, buffer
 * addresses and lengths anywhere), notify writes, DMA table swaps and withdrawals, function
 * resets; and a frontend on the device's socket (a connected AF_UNIX stream the harness
 * writes: header and payload bytes from the input, no fds; replies are read and dropped).
 *
 * Input: one byte of device options (max_vhost_queues, shm size), then steps, each an op byte
 * and its operands (see step()); past the end of the input every read is zero. After the steps
 * the device must still serve: a function reset, a clean bring-up, a fresh frontend's message
 * must reach rxq. Findings: a sanitizer report, a device that no longer serves, an fd count
 * that grew once everything is freed. The seeds: tests/fuzz/mkcorpus.py.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz_bus.h"
#include "fuzz_input.h"
#include "proto/vvu.h"
#include "vhu/loop.h"
#include "vhu/mem.h"
#include "vhu/util.h"
#include "vhu/virtio.h"
#include "vvu/vvu_dev.h"

/* DMA memory: two split rings of up to 256 entries, then 8 rx and 8 tx buffers. */
#define DMA_GPA 0x100000ull
#define DMA_SIZE 0x16000u
#define RING_DESC(q) ((q) * 0x2000u)
#define RING_AVAIL(q) ((q) * 0x2000u + 0x1000u)
#define RING_USED(q) ((q) * 0x2000u + 0x1400u)
#define BUF_STRIDE 0x1100u
#define NBUFS 8
#define BUF_OFF(q, i) (0x4000u + ((q) * NBUFS + (i)) * BUF_STRIDE)
#define MAX_STEPS 512

struct fz {
    struct vhu_loop *loop;
    struct vvu_dev *dev;
    struct vhu_pcidev *pd;
    uint8_t *dma;
    struct vhu_mem_table *table;   /* ours; the device gets references */
    int lfd;                       /* the listening socket the device serves */
    struct fz_fe fe;               /* the frontend */
    uint16_t qsize;
    uint16_t avail[VVU_NUM_VQS];   /* the driver's next avail index */
    uint64_t irqs;
};

static void bus_irq(void *bus, unsigned vector)
{
    struct fz *z = bus;

    (void)vector;
    z->irqs++;
}

/* What a bus adapter does when the layout changes: ask again, close what it got. */
static void bus_layout_changed(void *bus)
{
    struct fz *z = bus;
    struct vhu_pcidev_area areas[4];
    struct vhu_pcidev_iofd iofds[8];
    uint64_t file_off;
    unsigned n;
    int fd, k;

    fd = z->pd->ops->bar_mmap(z->pd->dev, VVU_BAR_SHM, &file_off, areas, 4, &n);
    if (fd >= 0)
        close(fd);
    k = z->pd->ops->io_fds(z->pd->dev, VVU_BAR_REGS, iofds, 8);
    for (int i = 0; i < k; i++)
        close(iofds[i].fd);
}

static const struct vhu_pcidev_bus_ops bus_ops = {bus_irq, bus_layout_changed};

/* ---- the driver's side -------------------------------------------------------------------- */

static void regw(struct fz *z, uint64_t off, uint64_t v, uint32_t len)
{
    z->pd->ops->bar_write(z->pd->dev, VVU_BAR_REGS, off, &v, len);
}

#define COMMON(f) (VVU_COMMON_OFF + offsetof(struct vvu_common_cfg, f))

static void notify(struct fz *z, unsigned q)
{
    regw(z, VVU_NOTIFY_OFF + VVU_NOTIFY_MULT * q, q, 2);
}

/* A driver's bring-up: reset, features, both rings (size, addresses: ours or the input's),
 * vectors, DRIVER_OK, BACKEND_UP. */
static void drv_up(struct fz *z, struct fin *f)
{
    uint8_t fl = fin_u8(f);
    const uint8_t s = VHU_VIRTIO_CONFIG_S_ACKNOWLEDGE | VHU_VIRTIO_CONFIG_S_DRIVER;

    z->qsize = (uint16_t)(1u << (fl % 9));
    regw(z, COMMON(device_status), 0, 1);
    regw(z, COMMON(device_status), s, 1);
    regw(z, COMMON(driver_feature_select), 1, 4);
    regw(z, COMMON(driver_feature), (fl & 0x10) ? fin_u32(f) : 1, 4);
    regw(z, COMMON(device_status), s | VHU_VIRTIO_CONFIG_S_FEATURES_OK, 1);
    regw(z, COMMON(msix_config), fl & 0x20 ? VVU_NO_VECTOR : 0, 2);
    memset(z->dma, 0, 0x4000);
    for (unsigned q = 0; q < VVU_NUM_VQS; q++) {
        uint64_t desc = DMA_GPA + RING_DESC(q), drv = DMA_GPA + RING_AVAIL(q);
        uint64_t dev = DMA_GPA + RING_USED(q);

        if (fl & 0x40) { /* hostile placement: anywhere near or in DMA memory */
            desc = DMA_GPA - 0x1000 + fin_u32(f) % (DMA_SIZE + 0x2000);
            drv = DMA_GPA - 0x1000 + fin_u32(f) % (DMA_SIZE + 0x2000);
            dev = DMA_GPA - 0x1000 + fin_u32(f) % (DMA_SIZE + 0x2000);
        }
        regw(z, COMMON(queue_select), q, 2);
        regw(z, COMMON(queue_size), z->qsize, 2);
        regw(z, COMMON(queue_desc_lo), desc, 8);
        regw(z, COMMON(queue_driver_lo), drv, 8);
        regw(z, COMMON(queue_device_lo), dev, 8);
        regw(z, COMMON(queue_msix_vector), 1 + q, 2);
        regw(z, COMMON(queue_enable), 1, 2);
        z->avail[q] = 0;
    }
    regw(z, COMMON(device_status), s | VHU_VIRTIO_CONFIG_S_FEATURES_OK |
                                       VHU_VIRTIO_CONFIG_S_DRIVER_OK, 1);
    if (!(fl & 0x80))
        regw(z, VVU_DEVCFG_OFF + offsetof(struct vvu_config, status), VVU_S_BACKEND_UP, 4);
}

/* Make descriptor id of ring q available: {addr, len, flags}. */
static void ring_add(struct fz *z, unsigned q, uint64_t addr, uint32_t len, uint16_t flags)
{
    uint16_t n = z->qsize ? z->qsize : 1;
    uint16_t id = z->avail[q] % n;
    uint8_t *desc = z->dma + RING_DESC(q) + 16u * id;
    uint8_t *avail = z->dma + RING_AVAIL(q);
    uint16_t next = 0;

    memcpy(desc, &addr, 8);
    memcpy(desc + 8, &len, 4);
    memcpy(desc + 12, &flags, 2);
    memcpy(desc + 14, &next, 2);
    memcpy(avail + 4 + 2u * id, &id, 2);
    z->avail[q]++;
    memcpy(avail + 2, &z->avail[q], 2);
}

/* Post rx buffers: ours, or of the input's address / length / flags. */
static void rx_post(struct fz *z, struct fin *f)
{
    uint8_t k = fin_u8(f);

    for (unsigned i = 0; i < (k & 7u) + 1; i++) {
        uint64_t addr = DMA_GPA + BUF_OFF(0, i);
        uint32_t len = VVU_MSG_MAX;
        uint16_t flags = 2; /* VRING_DESC_F_WRITE */

        if (k & 0x80) {
            addr = DMA_GPA - 0x1000 + fin_u32(f) % (DMA_SIZE + 0x2000);
            len = fin_u16(f);
            flags = fin_u8(f) & 7;
        }
        ring_add(z, VVU_RXQ, addr, len, flags);
    }
    if (!(k & 0x40))
        notify(z, VVU_RXQ);
}

/* One txq message: a header the input shapes (or a consistent reply), its bytes, a notify. */
static void tx_send(struct fz *z, struct fin *f)
{
    uint8_t k = fin_u8(f);
    uint32_t len = fin_u16(f) % (VVU_MSG_MAX + 16u);
    uint8_t *buf = z->dma + BUF_OFF(1, k & 7u);
    struct vhost_user_hdr h;

    if (len > BUF_STRIDE)
        len = BUF_STRIDE;
    fin_bytes(f, buf, len);
    if (!(k & 0x80) && len >= sizeof(h)) { /* consistent header: a reply of len bytes */
        memcpy(&h, buf, sizeof(h));
        h.flags = VHOST_USER_VERSION | VHOST_USER_REPLY_MASK;
        h.size = len - (uint32_t)sizeof(h);
        memcpy(buf, &h, sizeof(h));
    }
    ring_add(z, VVU_TXQ, DMA_GPA + BUF_OFF(1, k & 7u), (k & 0x40) ? fin_u32(f) : len, 0);
    notify(z, VVU_TXQ);
}

/* ---- steps ------------------------------------------------------------------------------- */

static const uint64_t reg_bases[8] = {VVU_COMMON_OFF, VVU_ISR_OFF, VVU_DEVCFG_OFF, VVU_NOTIFY_OFF,
                                      VVU_NOTIFICATION_OFF, VVU_DOORBELL_OFF, 0x3f00, 0};

static void bar_op(struct fz *z, struct fin *f, uint8_t op)
{
    uint8_t sel = fin_u8(f), buf[16];
    unsigned bar = (sel & 7u) < 3 ? sel & 7u : (sel & 7u) - 3u; /* 0..2 mostly, 3..4 too */
    uint32_t len = (sel & 0x80) ? fin_u8(f) % 17u : 1u << ((sel >> 3) & 3u);
    uint64_t off;

    if (op & 0x80)
        off = fin_u64(f);
    else if (bar == VVU_BAR_REGS)
        off = reg_bases[((sel >> 5) & 3u) | ((op >> 4) & 4u)] + fin_u8(f);
    else
        off = fin_u16(f);
    if (op & 0x10) {
        fin_bytes(f, buf, sizeof(buf));
        z->pd->ops->bar_write(z->pd->dev, bar, off, buf, len);
    } else {
        z->pd->ops->bar_read(z->pd->dev, bar, off, buf, len);
    }
}

static void cfg_op(struct fz *z, struct fin *f, uint8_t op)
{
    uint32_t len = 1u << (fin_u8(f) % 3u);
    uint32_t off = fin_u8(f) % z->pd->cfg_size;
    uint32_t v = 0;

    if (off + len > z->pd->cfg_size) /* the contract: adapters split and bound accesses */
        off = z->pd->cfg_size - len;
    if (op & 0x10) {
        v = fin_u32(f);
        z->pd->ops->cfg_write(z->pd->dev, off, &v, len);
    } else {
        z->pd->ops->cfg_read(z->pd->dev, off, &v, len);
    }
}

static void dma_op(struct fz *z, struct fin *f, uint8_t op)
{
    switch ((op >> 4) & 3u) {
    case 0: { /* the driver writes anywhere in DMA memory */
        uint32_t off = fin_u16(f) % DMA_SIZE, len = fin_u8(f) + 1u;

        fin_bytes(f, z->dma + off, len < DMA_SIZE - off ? len : DMA_SIZE - off);
        break;
    }
    case 1: /* the bus withdraws DMA memory */
        z->pd->ops->set_dma(z->pd->dev, NULL);
        break;
    case 2: /* the same memory again (a new table reference) */
        z->pd->ops->set_dma(z->pd->dev, vhu_mem_table_get(z->table));
        break;
    case 3: /* function-level reset: the bus peer went away */
        z->pd->ops->reset(z->pd->dev);
        break;
    }
}

static void step(struct fz *z, struct fin *f)
{
    uint8_t op = fin_u8(f);

    switch (op & 15u) {
    case 0:
        cfg_op(z, f, op);
        break;
    case 1:
    case 2:
        bar_op(z, f, op);
        break;
    case 3:
        dma_op(z, f, op);
        break;
    case 4:
        drv_up(z, f);
        break;
    case 5:
    case 6:
        rx_post(z, f);
        break;
    case 7:
    case 8:
        tx_send(z, f);
        break;
    case 9:
        notify(z, fin_u8(f) % 3u);
        break;
    case 10:
    case 11:
        fz_fe_send(&z->fe, f);
        vhu_loop_run_once(z->loop, 0);
        break;
    case 12:
        fz_fe_drain(&z->fe);
        if (op & 0x10)
            fz_fe_close(&z->fe);
        else
            (void)fz_fe_connect(&z->fe);
        break;
    case 13:
        bus_layout_changed(z);
        break;
    default:
        vhu_loop_run_once(z->loop, 0);
        fz_fe_drain(&z->fe);
        break;
    }
}

/* After whatever the input did: reset, bring up cleanly, a fresh frontend's GET_FEATURES must
 * reach rxq. */
static void check_serves(struct fz *z)
{
    static const uint8_t up[] = {4};
    struct fin f = {up, sizeof(up)};
    struct vhost_user_hdr h = {VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, 0};
    uint16_t used = 0;

    fz_fe_close(&z->fe);
    z->pd->ops->reset(z->pd->dev);
    z->pd->ops->set_dma(z->pd->dev, vhu_mem_table_get(z->table));
    drv_up(z, &f);                   /* 16 entries, our rings, BACKEND_UP */
    for (unsigned i = 0; i < NBUFS; i++)
        ring_add(z, VVU_RXQ, DMA_GPA + BUF_OFF(0, i), VVU_MSG_MAX, 2);
    notify(z, VVU_RXQ);
    /* connections of the input's that wait in the backlog are accepted (and end) first */
    for (int i = 0; i < 64 && used == 0; i++) {
        if (z->fe.fd < 0 && fz_fe_connect(&z->fe) &&
            send(z->fe.fd, &h, sizeof(h), MSG_NOSIGNAL) != (ssize_t)sizeof(h))
            abort();
        vhu_loop_run_once(z->loop, 0);
        memcpy(&used, z->dma + RING_USED(VVU_RXQ) + 2, 2);
    }
    if (used == 0) {
        fprintf(stderr, "fuzz_vvu_dev: the device no longer serves a frontend\n");
        abort();
    }
}

static int setup(struct fz *z, uint8_t opt)
{
    struct vhu_mem_region_desc rd = {.gpa = DMA_GPA, .uva = DMA_GPA, .size = DMA_SIZE, .fd = -1};
    struct vhu_mem_region *r;

    z->fe.fd = z->lfd = -1;
    z->dma = calloc(1, DMA_SIZE);
    if (!z->dma)
        return -1;
    rd.host = z->dma;
    if (vhu_mem_region_map(&rd, &r) < 0)
        return -1;
    if (vhu_mem_table_new(&r, 1, &z->table) < 0) {
        vhu_mem_region_free(r);
        return -1;
    }
    if (vhu_loop_new(&z->loop) < 0)
        return -1;
    z->dev = fz_vvu_new(z->loop, opt, &z->lfd, &z->fe);
    z->pd = vvu_dev_pci(z->dev);
    z->pd->bus_ops = &bus_ops;
    z->pd->bus = z;
    z->pd->ops->set_dma(z->pd->dev, vhu_mem_table_get(z->table));
    return 0;
}

static void teardown(struct fz *z)
{
    fz_fe_close(&z->fe);
    vvu_dev_free(z->dev);
    vhu_loop_free(z->loop);
    if (z->lfd >= 0)
        close(z->lfd);
    vhu_mem_table_put(z->table);
    free(z->dma);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fin f = {data, size};
    struct fz z = {0};
    unsigned steps = 0;
    int fds_before = vhu_fd_count_self();

    if (setup(&z, fin_u8(&f)) < 0)
        abort();
    while (fin_left(&f) && steps++ < MAX_STEPS)
        step(&z, &f);
    vhu_loop_run_once(z.loop, 0);
    check_serves(&z);
    teardown(&z);
    fz_fd_check("fuzz_vvu_dev", fds_before);
    return 0;
}
