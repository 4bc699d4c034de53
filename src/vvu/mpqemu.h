/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_VVU_MPQEMU_H
#define VHU_VVU_MPQEMU_H

/*
 * A bus adapter serving a struct vhu_pcidev to QEMU's multi-process proxy
 * (`-device x-pci-proxy-dev,fd=N`, QEMU 6.0 .. 7.2 and later): QEMU holds one end of a connected
 * AF_UNIX stream socket, we hold the other. QEMU forwards the guest's config-space and BAR
 * accesses as messages and waits for each reply on its vCPU thread; it shares the guest's RAM
 * (SYNC_SYSMEM: memfds + guest-physical ranges) and, with KVM only, hands over an INTx irqfd.
 *
 * What the adapter does with the device:
 *   - BAR registers (config 0x10..0x27) and the CardBus CIS pointer (0x28) are the adapter's:
 *     QEMU sizes BARs by writing all-ones through the socket, and later sends BAR accesses as
 *     guest-physical addresses, so the adapter keeps the base addresses the guest programs.
 *     Every BAR is presented as a 32-bit memory BAR (QEMU's proxy registers BARs 32-bit; the
 *     upper half of a 64-bit BAR reads 0), so BARs must be smaller than 4 GiB. The model sees
 *     the rest of config space.
 *   - Every BAR access goes through the socket (no part of a BAR can be mapped by QEMU).
 *   - SYNC_SYSMEM becomes a vhu_mem_table of guest-physical addresses: ops->set_dma.
 *   - pd->bus_ops->irq writes the INTx irqfd (under TCG QEMU never reads it: no interrupts).
 *   - A protocol violation (bad size, fd count, command, field) is logged once and ends the
 *     connection; so does EOF. Then the model gets set_dma(NULL) + reset and on_close runs.
 *
 * Threads: all on the loop given to vhu_mpqemu_new(), like the model.
 */
#include <stdint.h>

#include "vhu/loop.h"
#include "vvu/pcidev.h"

struct vhu_mpqemu;

/* Serve pd over fd (a connected AF_UNIX stream socket; taken, closed on failure too). Sets
 * pd->bus_ops/bus. Fails with -EINVAL for a pcidev the proxy cannot present (I/O BARs, BARs of
 * 4 GiB or more, a config size other than 256/4096). */
int vhu_mpqemu_new(struct vhu_loop *loop, struct vhu_pcidev *pd, int fd, struct vhu_mpqemu **out);
/* Stop serving (the model gets set_dma(NULL) + reset if the connection was still up) and free.
 * on_close is not called. Callable from inside on_close. */
void vhu_mpqemu_free(struct vhu_mpqemu *m);
/* Called once when the connection ends (EOF or a protocol violation): QEMU went away. */
void vhu_mpqemu_set_on_close(struct vhu_mpqemu *m, void (*cb)(void *), void *opaque);

/* Counters (tests, `vhud` statistics). */
struct vhu_mpqemu_stats {
    uint64_t cfg_reads, cfg_writes;
    uint64_t bar_reads, bar_writes;
    uint64_t bar_misses;   /* BAR accesses at an address in no BAR: all-ones / ignored */
    uint64_t sysmem_syncs;
    uint64_t resets;
    uint64_t irqs;         /* pd->bus_ops->irq calls that wrote the irqfd */
};
void vhu_mpqemu_get_stats(const struct vhu_mpqemu *m, struct vhu_mpqemu_stats *st);

/*
 * ---- the wire (QEMU 7.2 include/hw/remote/mpqemu-link.h, x86-64 host layout) ----------------
 * Each message: a 16-byte header, `size` bytes of payload, fds (SCM_RIGHTS) with the header.
 * Requests QEMU waits on (CFGREAD/CFGWRITE/BAR_READ/BAR_WRITE/DEVICE_RESET) are answered with
 * RET carrying a u64 (UINT64_MAX: error); SYNC_SYSMEM and SET_IRQFD have no reply.
 * Host byte order throughout (QEMU and we share the host).
 */
#define VHU_MPQEMU_MAX_FDS 8

enum vhu_mpqemu_cmd {
    VHU_MPQEMU_SYNC_SYSMEM = 0,
    VHU_MPQEMU_RET = 1,
    VHU_MPQEMU_PCI_CFGWRITE = 2,
    VHU_MPQEMU_PCI_CFGREAD = 3,
    VHU_MPQEMU_BAR_WRITE = 4,
    VHU_MPQEMU_BAR_READ = 5,
    VHU_MPQEMU_SET_IRQFD = 6,
    VHU_MPQEMU_DEVICE_RESET = 7,
    VHU_MPQEMU_CMD_MAX = 8,
};

struct vhu_mpqemu_hdr {
    int32_t cmd;
    uint32_t pad;      /* alignment of the size_t that follows */
    uint64_t size;     /* payload bytes */
};

struct vhu_mpqemu_sysmem {    /* SYNC_SYSMEM: entry i describes fds[i], i < number of fds */
    uint64_t gpas[VHU_MPQEMU_MAX_FDS];
    uint64_t sizes[VHU_MPQEMU_MAX_FDS];
    int64_t offsets[VHU_MPQEMU_MAX_FDS];  /* off_t: where gpas[i] is in fds[i] */
};

struct vhu_mpqemu_cfg {       /* PCI_CFGREAD / PCI_CFGWRITE */
    uint32_t addr;
    uint32_t val;
    int32_t len;
};

struct vhu_mpqemu_bar {       /* BAR_READ / BAR_WRITE */
    uint64_t addr;            /* guest-physical (memory) or port (I/O) address */
    uint64_t val;
    uint32_t size;            /* 1, 2, 4 or 8 */
    uint8_t memory;           /* bool: memory (1) or I/O space (0) */
    uint8_t pad[3];
};

/* The largest payload QEMU accepts (its union): anything bigger has lost the framing. */
#define VHU_MPQEMU_PAYLOAD_MAX sizeof(struct vhu_mpqemu_sysmem)

_Static_assert(sizeof(struct vhu_mpqemu_hdr) == 16, "mpqemu header");
_Static_assert(sizeof(struct vhu_mpqemu_sysmem) == 192, "SyncSysmemMsg");
_Static_assert(sizeof(struct vhu_mpqemu_cfg) == 12, "PciConfDataMsg");
_Static_assert(sizeof(struct vhu_mpqemu_bar) == 24, "BarAccessMsg");

#endif
