/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Fuzz target: the virtio-vhost-user driver (src/transport/vvu: capability walk, bring-up,
 * rxq/txq, sessions) against a hostile DEVICE. The device is the real VVU device model behind
 * an in-process bus (tests/harness/pci_direct.c) wrapped in a struct vhu_pci that lies as the
 * input says: any config-space or register read may return the input's bytes, all-ones, zero
 * or fail, any write may fail, BAR sizes may be anything, DMA allocation, mapping, io fds,
 * interrupts and reset may fail; and the input scribbles over the driver's DMA memory (the
 * rxq/txq used rings the device writes, the rx buffers' message bytes) while a frontend on the
 * device's socket sends messages (header and payload bytes from the input, no fds). An rng
 * device sits behind the driver. One thread, two loops (the device's; the driver's and its
 * backend's), each run once (timeout 0) when a step says so.
 *
 * Input: one byte of device options, then the byte stream both the lies (one byte per bus
 * operation: >= 0xe0 lies, see lie()) and the steps (see step()) read from, interleaved as the
 * driver makes its accesses. Findings: a sanitizer report, an fd count that grew once
 * everything is freed. The seeds: tests/fuzz/mkcorpus.py.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>

#include "fuzz_bus.h"
#include "fuzz_input.h"
#include "pci_direct.h"
#include "proto/vvu.h"
#include "vhu/backend.h"
#include "vhu/dev/rng.h"
#include "vhu/transport.h"

#define MAX_STEPS 256
#define MAX_DMA 4
/* Lies per input: the driver sleeps 1 ms per status read while it waits for a reset to
 * complete, so a device that keeps lying there would make every input slow (not a finding:
 * the wait is bounded). */
#define MAX_LIES 64

struct liar {
    struct vhu_pci pci;
    struct vhu_pci *in;        /* the honest bus to the device */
    struct fin *f;
    unsigned lies;
    struct {
        uint8_t *host;
        size_t len;
    } dma[MAX_DMA];
};

static struct liar *liar_of(struct vhu_pci *p)
{
    return p->priv;
}

/* One byte per operation: below 0xe0 the device is honest; else what it does instead. */
enum lie_kind { HONEST, LIE_INPUT, LIE_ONES, LIE_ZERO, LIE_FAIL };

static enum lie_kind lie(struct liar *l)
{
    uint8_t b = fin_u8(l->f);

    if (b < 0xe0 || l->lies >= MAX_LIES)
        return HONEST;
    l->lies++;
    return (enum lie_kind)(1 + (b & 3u));
}

/* A read: the honest value, or the lie's. */
static int lie_read(struct liar *l, int honest_r, void *buf, uint32_t len)
{
    switch (lie(l)) {
    case HONEST:
        return honest_r;
    case LIE_INPUT:
        fin_bytes(l->f, buf, len);
        return 0;
    case LIE_ONES:
        memset(buf, 0xff, len);
        return 0;
    case LIE_ZERO:
        memset(buf, 0, len);
        return 0;
    default:
        return -EIO;
    }
}

static int l_cfg_read(struct vhu_pci *p, uint32_t off, void *buf, uint32_t len)
{
    struct liar *l = liar_of(p);

    return lie_read(l, l->in->ops->cfg_read(l->in, off, buf, len), buf, len);
}

static int l_cfg_write(struct vhu_pci *p, uint32_t off, const void *buf, uint32_t len)
{
    struct liar *l = liar_of(p);

    return lie(l) == HONEST ? l->in->ops->cfg_write(l->in, off, buf, len) : -EIO;
}

static int l_bar_read(struct vhu_pci *p, unsigned bar, uint64_t off, void *buf, uint32_t len)
{
    struct liar *l = liar_of(p);

    return lie_read(l, l->in->ops->bar_read(l->in, bar, off, buf, len), buf, len);
}

static int l_bar_write(struct vhu_pci *p, unsigned bar, uint64_t off, const void *buf,
                       uint32_t len)
{
    struct liar *l = liar_of(p);

    return lie(l) == HONEST ? l->in->ops->bar_write(l->in, bar, off, buf, len) : -EIO;
}

static uint64_t l_bar_size(struct vhu_pci *p, unsigned bar)
{
    struct liar *l = liar_of(p);
    uint64_t size = l->in->ops->bar_size(l->in, bar);

    return lie_read(l, 0, &size, sizeof(size)) < 0 ? 0 : size;
}

static int l_bar_map(struct vhu_pci *p, unsigned bar, uint64_t off, uint64_t len, void **host)
{
    struct liar *l = liar_of(p);

    return lie(l) == HONEST ? l->in->ops->bar_map(l->in, bar, off, len, host) : -ENOTSUP;
}

static void l_bar_unmap(struct vhu_pci *p, void *host, uint64_t len)
{
    struct liar *l = liar_of(p);

    l->in->ops->bar_unmap(l->in, host, len);
}

static int l_io_fd(struct vhu_pci *p, unsigned bar, uint64_t off, uint32_t size, int *fd)
{
    struct liar *l = liar_of(p);

    return lie(l) == HONEST ? l->in->ops->io_fd(l->in, bar, off, size, fd) : -ENOTSUP;
}

static int l_irq_fds(struct vhu_pci *p, unsigned n, int *fds)
{
    struct liar *l = liar_of(p);

    return lie(l) == HONEST ? l->in->ops->irq_fds(l->in, n, fds) : -ENOTSUP;
}

static int l_dma_alloc(struct vhu_pci *p, size_t len, void **host, uint64_t *iova)
{
    struct liar *l = liar_of(p);
    int r;

    if (lie(l) != HONEST)
        return -ENOMEM;
    r = l->in->ops->dma_alloc(l->in, len, host, iova);
    for (unsigned i = 0; r == 0 && i < MAX_DMA; i++) {
        if (!l->dma[i].host) {
            l->dma[i].host = *host;
            l->dma[i].len = len;
            break;
        }
    }
    return r;
}

static void l_dma_free(struct vhu_pci *p, void *host, size_t len)
{
    struct liar *l = liar_of(p);

    for (unsigned i = 0; i < MAX_DMA; i++)
        if (l->dma[i].host == host)
            l->dma[i].host = NULL;
    l->in->ops->dma_free(l->in, host, len);
}

static int l_reset(struct vhu_pci *p)
{
    struct liar *l = liar_of(p);
    int r = l->in->ops->reset(l->in);

    return lie(l) == HONEST ? r : -EIO;
}

static void l_free(struct vhu_pci *p)
{
    struct liar *l = liar_of(p);

    l->in->ops->free(l->in);
    free(l);
}

static const struct vhu_pci_ops liar_ops = {
    .cfg_read = l_cfg_read,
    .cfg_write = l_cfg_write,
    .bar_read = l_bar_read,
    .bar_write = l_bar_write,
    .bar_size = l_bar_size,
    .bar_map = l_bar_map,
    .bar_unmap = l_bar_unmap,
    .io_fd = l_io_fd,
    .irq_fds = l_irq_fds,
    .dma_alloc = l_dma_alloc,
    .dma_free = l_dma_free,
    .reset = l_reset,
    .free = l_free,
};

/*
 * The driver waits for a reset in steps of 1 ms, at most 1 s (vvu_device_reset()); a device that
 * lies about device_status or the common window's place makes it wait the whole second, again
 * on the way out. Bounded, so not a finding, but it would slow the fuzzer to a crawl: waits of
 * up to 1 ms return at once here (the loop's bound stays); longer ones (libFuzzer's own) sleep.
 */
int nanosleep(const struct timespec *req, struct timespec *rem)
{
    if (req && req->tv_sec == 0 && req->tv_nsec <= 1000000)
        return 0;
    return (int)syscall(SYS_nanosleep, req, rem);
}

/* ---- steps ------------------------------------------------------------------------------- */

struct fz {
    struct vhu_loop *loop;     /* the device's */
    struct vhu_loop *dloop;    /* the driver's and its backend's: run apart, so the input
                                * decides what the device does before the driver looks */
    struct vvu_dev *dev;
    struct vhu_backend *b;
    struct vhu_vvu *vvu;
    struct liar *l;            /* owned by vvu */
    struct fz_fe fe;
};

/*
 * The device writes the driver's DMA memory as it likes: anywhere, or aimed (the first
 * allocation is rxq's ring, txq's ring, then 64 rx and 64 tx buffers of VVU_MSG_MAX: see
 * vvu_dma_setup()) at a ring (used index, used entries' ids and lengths) or at a buffer (the
 * message bytes the driver is about to read).
 */
static void dma_scribble(struct fz *z, struct fin *f)
{
    const size_t nbufs = 64, bufs = nbufs * VVU_MSG_MAX;
    uint8_t sel = fin_u8(f);
    uint32_t off = fin_u32(f), len = fin_u8(f) + 1u;
    uint8_t *dma = z->l->dma[0].host, buf[256];
    size_t dma_len = z->l->dma[0].len, ring, base = 0, span = dma_len;

    fin_bytes(f, buf, len);
    if (!dma || dma_len <= 2 * bufs)
        return;
    ring = (dma_len - 2 * bufs) / 2;
    switch (sel & 3u) {
    case 1: /* rxq's or txq's ring */
        base = (sel & 4u) ? ring : 0;
        span = ring;
        break;
    case 2: /* an rx or tx buffer */
        base = 2 * ring + ((sel & 4u) ? bufs : 0) + (sel >> 3) % nbufs * VVU_MSG_MAX;
        span = VVU_MSG_MAX;
        break;
    }
    off %= (uint32_t)span;
    if (len > span - off)
        len = (uint32_t)(span - off);
    memcpy(dma + base + off, buf, len);
}

static void step(struct fz *z, struct fin *f)
{
    uint8_t op = fin_u8(f);

    switch (op & 7u) {
    case 1:
    case 2:
        fz_fe_send(&z->fe, f);
        break;
    case 3:
        dma_scribble(z, f);
        break;
    case 4:
        fz_fe_drain(&z->fe);
        if (op & 0x10)
            fz_fe_close(&z->fe);
        break;
    case 5: /* the device alone */
        vhu_loop_run_once(z->loop, 0);
        break;
    case 6: /* the driver alone */
        vhu_loop_run_once(z->dloop, 0);
        break;
    default: /* both (0: also the padding a seed puts where the bring-up's accesses read) */
        vhu_loop_run_once(z->loop, 0);
        vhu_loop_run_once(z->dloop, 0);
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fin f = {data, size};
    struct fz z = {0};
    struct vhu_device *d;
    struct vhu_pci *in;
    unsigned steps = 0;
    int lfd, fds_before = vhu_fd_count_self();

    if (vhu_loop_new(&z.loop) < 0 || vhu_loop_new(&z.dloop) < 0)
        abort();
    z.dev = fz_vvu_new(z.loop, fin_u8(&f), &lfd, &z.fe);
    if (vhu_rng_new(&(struct vhu_rng_opts){0}, &d) < 0 || vhu_backend_new(d, z.dloop, &z.b) < 0 ||
        vhu_pci_direct_open(vvu_dev_pci(z.dev), &in) < 0)
        abort();
    z.l = calloc(1, sizeof(*z.l));
    if (!z.l)
        abort();
    z.l->pci.ops = &liar_ops;
    z.l->pci.priv = z.l;
    z.l->in = in;
    z.l->f = &f;
    snprintf(z.l->pci.name, sizeof(z.l->pci.name), "fuzz-liar");
    if (vhu_vvu_new_pci(z.b, z.dloop, &z.l->pci, &z.vvu) == 0) {
        if (getenv("FUZZ_VERBOSE"))
            fprintf(stderr, "fuzz_vvu_driver: bring-up read %zu input bytes\n", size - f.n);
        while (fin_left(&f) && steps++ < MAX_STEPS)
            step(&z, &f);
        vhu_vvu_free(z.vvu);
    }
    fz_fe_close(&z.fe);
    vhu_backend_free(z.b);
    vvu_dev_free(z.dev);
    vhu_loop_free(z.dloop);
    vhu_loop_free(z.loop);
    close(lfd);
    fz_fd_check("fuzz_vvu_driver", fds_before);
    return 0;
}
