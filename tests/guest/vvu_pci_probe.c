/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Runs inside the backend VM (static, busybox initramfs): opens the fake device of
 * vvu_fake_dev.c through src/transport/vvu/pci_sysfs.c and checks IDs, register accesses of
 * every width, DMA both ways into hugepage memory, and refusals; measures a BAR read's round
 * trip. Prints one line per check: "PASS name [detail]", "FAIL name detail", "INFO name detail".
 *
 *   vvu_pci_probe BDF [READS]      exit 0 iff nothing failed
 *   vvu_pci_probe BDF irq          only ask the device to raise its interrupt
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/vvu.h"
#include "transport/vvu/pci.h"
#include "vhu/log.h"
#include "vvu_fake_dev.h"

static int failures;

#define CHECK(name, cond, ...)                                                  \
    do {                                                                        \
        if (cond) {                                                             \
            printf("PASS %s\n", name);                                          \
        } else {                                                                \
            failures++;                                                         \
            printf("FAIL %s ", name);                                           \
            printf(__VA_ARGS__);                                                \
            printf("\n");                                                       \
        }                                                                       \
        fflush(stdout);                                                         \
    } while (0)

static struct vhu_pci *pci;

static uint64_t rd(uint64_t off, uint32_t len)
{
    uint64_t v = 0;

    if (pci->ops->bar_read(pci, 0, off, &v, len) < 0)
        return ~0ull;
    return v;
}

static int wr(uint64_t off, uint64_t v, uint32_t len)
{
    return pci->ops->bar_write(pci, 0, off, &v, len);
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void check_ids(void)
{
    uint16_t vid = 0, did = 0, cmd = 0;

    pci->ops->cfg_read(pci, 0, &vid, 2);
    pci->ops->cfg_read(pci, 2, &did, 2);
    pci->ops->cfg_read(pci, 4, &cmd, 2);
    CHECK("config-ids", vid == VVU_PCI_VENDOR_ID && did == VVU_PCI_DEVICE_ID,
          "%04x:%04x", vid, did);
    CHECK("config-command", (cmd & 0x6) == 0x6, "command 0x%04x (memory + bus master wanted)",
          cmd);
    CHECK("bar0-size", pci->ops->bar_size(pci, 0) == FAKE_BAR_SIZE, "%llu",
          (unsigned long long)pci->ops->bar_size(pci, 0));
    CHECK("bar1-absent", pci->ops->bar_size(pci, 1) == 0, "%llu",
          (unsigned long long)pci->ops->bar_size(pci, 1));
}

static void check_registers(void)
{
    uint64_t v;

    CHECK("reg-magic", rd(FAKE_REG_MAGIC, 4) == FAKE_MAGIC, "0x%llx",
          (unsigned long long)rd(FAKE_REG_MAGIC, 4));
    wr(FAKE_REG_SCRATCH, 0xa5a55a5a, 4);
    CHECK("reg-rw32", rd(FAKE_REG_SCRATCH, 4) == 0xa5a55a5a, "0x%llx",
          (unsigned long long)rd(FAKE_REG_SCRATCH, 4));
    wr(FAKE_REG_SCRATCH + 1, 0x11, 1);
    wr(FAKE_REG_SCRATCH + 2, 0x3322, 2);
    v = rd(FAKE_REG_SCRATCH, 4);
    CHECK("reg-rw8-16", v == 0x3322115a && rd(FAKE_REG_SCRATCH + 3, 1) == 0x33, "0x%llx",
          (unsigned long long)v);
    wr(FAKE_REG_SCRATCH64, 0x0123456789abcdefull, 8);
    CHECK("reg-rw64", rd(FAKE_REG_SCRATCH64, 8) == 0x0123456789abcdefull, "0x%llx",
          (unsigned long long)rd(FAKE_REG_SCRATCH64, 8));
    wr(FAKE_REG_MAGIC, 0, 4);
    CHECK("reg-readonly", rd(FAKE_REG_MAGIC, 4) == FAKE_MAGIC, "magic changed");
    CHECK("reg-refusals", pci->ops->bar_read(pci, 0, FAKE_BAR_SIZE, &v, 4) < 0 &&
                              pci->ops->bar_read(pci, 0, 2, &v, 4) < 0 &&
                              pci->ops->bar_read(pci, 0, 0, &v, 3) < 0 &&
                              pci->ops->bar_read(pci, 1, 0, &v, 4) < 0,
          "an out-of-range, misaligned, odd-sized or absent-BAR access was not refused");
}

static void measure_reads(unsigned n)
{
    uint64_t t0, t1, bad = 0;

    t0 = now_ns();
    for (unsigned i = 0; i < n; i++)
        bad += rd(FAKE_REG_MAGIC, 4) != FAKE_MAGIC;
    t1 = now_ns();
    printf("INFO bar-read-roundtrip %u reads in %llu us: %llu ns each%s\n", n,
           (unsigned long long)(t1 - t0) / 1000, (unsigned long long)(t1 - t0) / (n ? n : 1),
           bad ? " (SOME WRONG)" : "");
    CHECK("bar-read-loop", bad == 0, "%llu of %u reads wrong", (unsigned long long)bad, n);
}

static uint32_t run(uint64_t addr, uint32_t len, uint32_t seed, uint32_t cmd)
{
    wr(FAKE_REG_DMA_ADDR, addr, 8);
    wr(FAKE_REG_DMA_LEN, len, 4);
    wr(FAKE_REG_DMA_SEED, seed, 4);
    wr(FAKE_REG_CMD, cmd, 4);
    return (uint32_t)rd(FAKE_REG_STATUS, 4);
}

static void check_dma(void)
{
    const uint32_t len = 64 * 1024, seed = 0x5eed1234;
    uint32_t *w, st, bad = 0, first = 0;
    uint64_t iova = 0;
    void *host = NULL, *host2 = NULL;
    uint64_t iova2 = 0;
    int r;

    r = pci->ops->dma_alloc(pci, len, &host, &iova);
    CHECK("dma-alloc", r == 0, "dma_alloc: %s", strerror(-r));
    if (r < 0)
        return;
    printf("INFO dma-buffer host %p iova 0x%llx\n", host, (unsigned long long)iova);
    r = pci->ops->dma_alloc(pci, 4096, &host2, &iova2);
    CHECK("dma-alloc-second", r == 0 && iova2 == iova + len, "second allocation at 0x%llx",
          (unsigned long long)iova2);
    CHECK("dma-alloc-too-big", pci->ops->dma_alloc(pci, (4u << 20), &host2, &iova2) < 0,
          "a 4 MiB allocation did not fail");

    /* device -> guest memory */
    w = host;
    memset(w, 0, len);
    st = run(iova, len, seed, FAKE_CMD_DMA_WRITE);
    for (uint32_t i = 0; i < len / 4; i++) {
        if (w[i] != fake_pattern(seed, i)) {
            if (!bad)
                first = i;
            bad++;
        }
    }
    CHECK("dma-write", st == FAKE_ST_DONE && bad == 0,
          "status %u, %u of %u words wrong (first at word %u: 0x%08x, expected 0x%08x)", st, bad,
          len / 4, first, w[first], fake_pattern(seed, first));

    /* guest memory -> device */
    for (uint32_t i = 0; i < len / 4; i++)
        w[i] = fake_pattern(~seed, i);
    st = run(iova, len, 0, FAKE_CMD_DMA_READ);
    CHECK("dma-read", st == FAKE_ST_DONE && (uint32_t)rd(FAKE_REG_RESULT, 4) == fake_sum(w, len / 4),
          "status %u, checksum 0x%08x, expected 0x%08x", st, (uint32_t)rd(FAKE_REG_RESULT, 4),
          fake_sum(w, len / 4));

    /* the device refuses addresses outside guest RAM */
    st = run(0xfffffff000000000ull, 4096, seed, FAKE_CMD_DMA_WRITE);
    CHECK("dma-bad-address", st == FAKE_ST_BAD_ADDR, "status %u", st);
    pci->ops->dma_free(pci, host2, 4096);
    pci->ops->dma_free(pci, host, len);
}

int main(int argc, char **argv)
{
    bool irq_only = argc > 2 && strcmp(argv[2], "irq") == 0;
    unsigned reads = argc > 2 && !irq_only ? (unsigned)strtoul(argv[2], NULL, 0) : 2000;
    uint64_t t0;
    int r;

    if (argc < 2) {
        fprintf(stderr, "usage: %s BDF [READS]\n", argv[0]);
        return 2;
    }
    vhu_log_set_sink(vhu_log_stderr_sink, NULL, VHU_LOG_INFO);
    t0 = now_ns();
    r = vhu_pci_sysfs_open(argv[1], &pci);
    CHECK("open", r == 0, "vhu_pci_sysfs_open(%s): %s", argv[1], strerror(-r));
    if (r < 0)
        return 1;
    if (irq_only) {
        CHECK("irq-raised", wr(FAKE_REG_CMD, FAKE_CMD_IRQ, 4) == 0 &&
                                rd(FAKE_REG_STATUS, 4) == FAKE_ST_DONE, "device refused");
        pci->ops->free(pci);
        return failures ? 1 : 0;
    }
    printf("INFO open-time %llu us\n", (unsigned long long)(now_ns() - t0) / 1000);
    check_ids();
    check_registers();
    measure_reads(reads);
    check_dma();
    r = pci->ops->reset(pci);
    CHECK("reset", r == 0, "reset: %s", strerror(-r));
    printf("INFO device-accesses %llu\n", (unsigned long long)rd(FAKE_REG_ACCESSES, 4));
    pci->ops->free(pci);
    return failures ? 1 : 0;
}
