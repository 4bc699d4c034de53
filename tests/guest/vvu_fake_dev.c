/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * A fake PCI function served to a QEMU 7.2 guest through x-pci-proxy-dev by vhu's mpqemu
 * adapter: the VVU IDs in config space, one 4 KiB register BAR (vvu_fake_dev.h) with a DMA
 * engine that writes a pattern to / reads a checksum from guest memory at an address the guest
 * gives. For tests/guest/vvu-proxy-smoke.sh.
 *
 *   vvu_fake_dev --socket PATH [--bad-pattern]
 *
 * Listens on PATH, serves the first connection (vvu_proxy_launch connects it and hands it to
 * QEMU), exits when QEMU goes away: 0, after printing its counters. --bad-pattern makes the
 * device corrupt one word of every DMA write (the test must then fail).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "proto/vvu.h"
#include "vhu/log.h"
#include "vhu/loop.h"
#include "vhu/mem.h"
#include "vhu/util.h"
#include "vvu/mpqemu.h"
#include "vvu_fake_dev.h"

#define CFG_COMMAND 0x04
#define CFG_INT_LINE 0x3c

struct fake {
    struct vhu_pcidev pd;
    uint8_t cfg[256];
    uint8_t wmask[256];        /* config bits the guest may write */
    uint8_t regs[FAKE_BAR_SIZE];
    struct vhu_mem_table *dma;
    bool bad_pattern;
    uint32_t accesses;
    unsigned dma_writes, dma_reads, irqs, resets;
    struct vhu_loop *loop;
};

static uint32_t reg32(const struct fake *f, unsigned off)
{
    uint32_t v;

    memcpy(&v, &f->regs[off], 4);
    return v;
}

static void set_reg32(struct fake *f, unsigned off, uint32_t v)
{
    memcpy(&f->regs[off], &v, 4);
}

static void cfg_init(struct fake *f)
{
    static const struct {
        unsigned off, len;
        uint32_t val;
    } init[] = {
        {0x00, 2, VVU_PCI_VENDOR_ID}, {0x02, 2, VVU_PCI_DEVICE_ID},
        {0x08, 1, VVU_PCI_REVISION}, {0x09, 1, 0x00}, {0x0a, 2, VVU_PCI_CLASS},
        {0x2c, 2, VVU_PCI_VENDOR_ID}, {0x2e, 2, 0x0001},  /* subsystem */
        {0x3d, 1, 0x01},                                    /* INTA# */
    };

    memset(f->cfg, 0, sizeof(f->cfg));
    for (size_t i = 0; i < VHU_ARRAY_SIZE(init); i++)
        for (unsigned b = 0; b < init[i].len; b++)
            f->cfg[init[i].off + b] = (uint8_t)(init[i].val >> (8 * b));
    memset(f->wmask, 0, sizeof(f->wmask));
    f->wmask[CFG_COMMAND] = 0x46;      /* memory, bus master, parity */
    f->wmask[CFG_COMMAND + 1] = 0x05;  /* SERR, INTx disable */
    f->wmask[0x0c] = 0xff;             /* cache line size */
    f->wmask[0x0d] = 0xff;             /* latency timer */
    f->wmask[CFG_INT_LINE] = 0xff;
}

static void fake_cfg_read(void *dev, uint32_t off, void *buf, uint32_t len)
{
    struct fake *f = dev;

    memcpy(buf, &f->cfg[off], len);
}

static void fake_cfg_write(void *dev, uint32_t off, const void *buf, uint32_t len)
{
    struct fake *f = dev;
    const uint8_t *b = buf;

    for (uint32_t i = 0; i < len; i++)
        f->cfg[off + i] = (uint8_t)((f->cfg[off + i] & ~f->wmask[off + i]) |
                                    (b[i] & f->wmask[off + i]));
}

/* The guest's buffer, if the device may reach all of it (one region: contiguous). */
static uint32_t *dma_buf(struct fake *f, uint64_t *addr, uint32_t *len)
{
    uint64_t a;

    memcpy(&a, &f->regs[FAKE_REG_DMA_ADDR], 8);
    *addr = a;
    *len = reg32(f, FAKE_REG_DMA_LEN);
    if (!f->dma || !*len || *len % 4 || !(f->cfg[CFG_COMMAND] & 0x4)) /* bus master off */
        return NULL;
    return vhu_mem_gpa_range(f->dma, a, *len);
}

static void run_cmd(struct fake *f, uint32_t cmd)
{
    uint32_t seed = reg32(f, FAKE_REG_DMA_SEED), len, *w, st = FAKE_ST_DONE;
    uint64_t addr;

    switch (cmd) {
    case FAKE_CMD_DMA_WRITE:
    case FAKE_CMD_DMA_READ:
        w = dma_buf(f, &addr, &len);
        if (!w) {
            st = FAKE_ST_BAD_ADDR;
            break;
        }
        if (cmd == FAKE_CMD_DMA_WRITE) {
            for (uint32_t i = 0; i < len / 4; i++)
                w[i] = fake_pattern(seed, i);
            if (f->bad_pattern)
                w[len / 8] ^= 0x100;
            f->dma_writes++;
        } else {
            set_reg32(f, FAKE_REG_RESULT, fake_sum(w, len / 4));
            f->dma_reads++;
        }
        break;
    case FAKE_CMD_IRQ:
        f->irqs++;
        f->cfg[0x06] |= 0x08; /* status: interrupt pending (what INTx masking reads) */
        if (f->pd.bus_ops && f->pd.bus_ops->irq)
            f->pd.bus_ops->irq(f->pd.bus, 0);
        break;
    default:
        st = FAKE_ST_BAD_CMD;
        break;
    }
    set_reg32(f, FAKE_REG_STATUS, st);
}

static bool reg_ok(uint64_t off, uint32_t len)
{
    return (len == 1 || len == 2 || len == 4 || len == 8) && off <= FAKE_BAR_SIZE - len;
}

static void fake_bar_read(void *dev, unsigned bar, uint64_t off, void *buf, uint32_t len)
{
    struct fake *f = dev;

    f->accesses++;
    set_reg32(f, FAKE_REG_ACCESSES, f->accesses);
    if (bar != 0 || !reg_ok(off, len)) {
        memset(buf, 0xff, len < 8 ? len : 8);
        return;
    }
    memcpy(buf, &f->regs[off], len);
}

static void fake_bar_write(void *dev, unsigned bar, uint64_t off, const void *buf, uint32_t len)
{
    struct fake *f = dev;
    uint32_t cmd = 0;

    f->accesses++;
    set_reg32(f, FAKE_REG_ACCESSES, f->accesses);
    if (bar != 0 || !reg_ok(off, len))
        return;
    if (off == FAKE_REG_CMD && len == 4) {
        memcpy(&cmd, buf, 4);
        run_cmd(f, cmd);
        return;
    }
    /* read-only: magic, status, result, counter */
    if (off < FAKE_REG_SCRATCH || (off + len > FAKE_REG_CMD && off < FAKE_REG_ACCESSES + 4))
        return;
    memcpy(&f->regs[off], buf, len);
}

static void fake_set_dma(void *dev, struct vhu_mem_table *t)
{
    struct fake *f = dev;

    if (f->dma)
        vhu_mem_table_put(f->dma);
    f->dma = t;
    if (t)
        fprintf(stderr, "vvu_fake_dev: guest memory: %u regions\n", t->nregions);
}

static void fake_reset(void *dev)
{
    struct fake *f = dev;

    f->resets++;
    memset(f->regs, 0, sizeof(f->regs));
    set_reg32(f, FAKE_REG_MAGIC, FAKE_MAGIC);
    f->cfg[CFG_COMMAND] = 0;
    f->cfg[CFG_COMMAND + 1] = 0;
    f->cfg[0x06] &= (uint8_t)~0x08;
}

static const struct vhu_pcidev_ops fake_ops = {
    .cfg_read = fake_cfg_read, .cfg_write = fake_cfg_write,
    .bar_read = fake_bar_read, .bar_write = fake_bar_write,
    .set_dma = fake_set_dma, .reset = fake_reset,
};

/* ---- serving -------------------------------------------------------------------------------- */

static int listen_fd = -1;
static struct vhu_mpqemu *conn;

static void on_close(void *opaque)
{
    struct fake *f = opaque;

    fprintf(stderr, "vvu_fake_dev: QEMU went away\n");
    vhu_loop_stop(f->loop);
}

static void on_accept(int fd, uint32_t events, void *opaque)
{
    struct fake *f = opaque;
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    int r;

    (void)events;
    if (c < 0)
        return;
    vhu_loop_del(f->loop, fd); /* one QEMU per run */
    r = vhu_mpqemu_new(f->loop, &f->pd, c, &conn);
    if (r < 0) {
        fprintf(stderr, "vvu_fake_dev: vhu_mpqemu_new: %s\n", strerror(-r));
        vhu_loop_stop(f->loop);
        return;
    }
    vhu_mpqemu_set_on_close(conn, on_close, f);
    fprintf(stderr, "vvu_fake_dev: QEMU connected\n");
}

static int listen_on(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 's'},
        {"bad-pattern", no_argument, NULL, 'b'},
        {NULL, 0, NULL, 0},
    };
    static struct fake f;
    struct vhu_mpqemu_stats st = {0};
    const char *path = NULL;
    int c;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's': path = optarg; break;
        case 'b': f.bad_pattern = true; break;
        default: return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "usage: %s --socket PATH [--bad-pattern]\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    vhu_log_set_sink(vhu_log_stderr_sink, NULL, VHU_LOG_INFO);
    cfg_init(&f);
    fake_reset(&f);
    f.resets = 0;
    f.pd = (struct vhu_pcidev){
        .ops = &fake_ops, .dev = &f, .cfg_size = VVU_CFG_SPACE_SIZE,
        .bars = {[0] = {FAKE_BAR_SIZE, VHU_PCIDEV_BAR_MEM}},
    };
    if (vhu_loop_new(&f.loop) < 0)
        return 1;
    listen_fd = listen_on(path);
    if (listen_fd < 0) {
        fprintf(stderr, "vvu_fake_dev: listen on %s: %s\n", path, strerror(-listen_fd));
        return 1;
    }
    vhu_loop_add(f.loop, listen_fd, VHU_LOOP_IN, on_accept, &f);
    fprintf(stderr, "vvu_fake_dev: listening on %s%s\n", path,
            f.bad_pattern ? " (corrupting DMA writes)" : "");
    vhu_loop_run(f.loop);
    if (conn)
        vhu_mpqemu_get_stats(conn, &st);
    fprintf(stderr,
            "vvu_fake_dev: cfg %llu reads %llu writes; bar %llu reads %llu writes %llu misses; "
            "sysmem syncs %llu; resets %llu; dma writes %u reads %u; irqs %u raised, "
            "%llu written to an irqfd\n",
            (unsigned long long)st.cfg_reads, (unsigned long long)st.cfg_writes,
            (unsigned long long)st.bar_reads, (unsigned long long)st.bar_writes,
            (unsigned long long)st.bar_misses, (unsigned long long)st.sysmem_syncs,
            (unsigned long long)st.resets, f.dma_writes, f.dma_reads, f.irqs,
            (unsigned long long)st.irqs);
    vhu_mpqemu_free(conn);
    if (f.dma)
        vhu_mem_table_put(f.dma);
    close(listen_fd);
    unlink(path);
    vhu_loop_free(f.loop);
    return 0;
}
