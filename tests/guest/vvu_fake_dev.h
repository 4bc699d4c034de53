/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Register layout of the fake PCI device the vvu-proxy-smoke test serves to a guest through
 * QEMU's x-pci-proxy-dev (tests/guest/vvu_fake_dev.c) and probes from inside it
 * (tests/guest/vvu_pci_probe.c). BAR0, 4 KiB, 32-bit memory; all registers little-endian.
 */
#ifndef VVU_FAKE_DEV_H
#define VVU_FAKE_DEV_H

#define FAKE_BAR_SIZE 0x1000
#define FAKE_REG_MAGIC 0x00      /* ro u32 */
#define FAKE_MAGIC 0x30555656u   /* "VVU0" */
#define FAKE_REG_SCRATCH 0x04    /* rw u32 (any width inside it) */
#define FAKE_REG_SCRATCH64 0x08  /* rw u64 */
#define FAKE_REG_DMA_ADDR 0x10   /* rw u64: guest-physical address */
#define FAKE_REG_DMA_LEN 0x18    /* rw u32: bytes, multiple of 4 */
#define FAKE_REG_DMA_SEED 0x1c   /* rw u32 */
#define FAKE_REG_CMD 0x20        /* wo u32: FAKE_CMD_* (runs at once) */
#define FAKE_REG_STATUS 0x24     /* ro u32: FAKE_ST_* of the last command */
#define FAKE_REG_RESULT 0x28     /* ro u32: checksum of FAKE_CMD_DMA_READ */
#define FAKE_REG_ACCESSES 0x2c   /* ro u32: BAR accesses served so far */

#define FAKE_CMD_DMA_WRITE 1     /* device writes fake_pattern(seed) to [addr, addr + len) */
#define FAKE_CMD_DMA_READ 2      /* device reads [addr, addr + len): RESULT = fake_sum() */
#define FAKE_CMD_IRQ 3           /* device raises its interrupt (INTx through the irqfd) */

#define FAKE_ST_IDLE 0
#define FAKE_ST_DONE 1
#define FAKE_ST_BAD_ADDR 2       /* range not in guest memory the device can reach */
#define FAKE_ST_BAD_CMD 3

#include <stdint.h>

/* Word i of the pattern for seed s. */
static inline uint32_t fake_pattern(uint32_t seed, uint32_t i)
{
    uint32_t x = seed ^ (i * 0x9e3779b9u);

    x ^= x >> 16;
    x *= 0x7feb352du;
    return x ^ (x >> 15);
}

/* Checksum of n words (order-sensitive). */
static inline uint32_t fake_sum(const uint32_t *w, uint32_t n)
{
    uint32_t h = 2166136261u;

    for (uint32_t i = 0; i < n; i++)
        h = (h ^ w[i]) * 16777619u;
    return h;
}

#endif
