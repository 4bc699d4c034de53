/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Fuzz target: the x-pci-proxy-dev bus adapter (src/vvu/mpqemu.c) serving the real VVU device
 * (vvu_dev_pci), against a hostile "QEMU" on the other end of its socketpair: raw messages (any
 * command, a size that lies, any bytes) and shaped ones (a header with the size QEMU would use,
 * the input's payload), config-space and BAR accesses at the BAR addresses the input programs,
 * SYNC_SYSMEM and SET_IRQFD with fds from a fixed set the harness made (two memfds, four
 * eventfds), writes into those memfds (the guest's RAM: the device's rings live there once
 * synced), and a new connection after the adapter hung up. One thread: the adapter's loop runs
 * once (timeout 0) after each message; replies (RET) are read and dropped.
 *
 * Input: one byte of device options, then steps (an op byte and its operands: see step()).
 * Findings: a sanitizer report, an fd count that grew once everything is freed. The seeds:
 * tests/fuzz/mkcorpus.py.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_bus.h"
#include "fuzz_input.h"
#include "vvu/mpqemu.h"

#define MAX_STEPS 256
/* Where the input's BAR accesses go: BAR i at BAR_BASE(i) once config space says so. */
#define BAR_BASE(i) (0xe0000000ull + (uint64_t)(i) * 0x01000000ull)

struct fz {
    struct vhu_loop *loop;
    struct vvu_dev *dev;
    struct vhu_mpqemu *m;
    struct fz_fds fds;
    int qemu;          /* our end of the socketpair, or -1 */
    bool closed;       /* the adapter ended the connection */
};

static void on_close(void *opaque)
{
    ((struct fz *)opaque)->closed = true;
}

static void connect_adapter(struct fz *z)
{
    int sv[2];

    vhu_mpqemu_free(z->m);
    z->m = NULL;
    if (z->qemu >= 0)
        close(z->qemu);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
        abort();
    z->qemu = sv[0];
    z->closed = false;
    if (vhu_mpqemu_new(z->loop, vvu_dev_pci(z->dev), sv[1], &z->m) < 0)
        abort();
    vhu_mpqemu_set_on_close(z->m, on_close, z);
}

static void pump(struct fz *z)
{
    vhu_loop_run_once(z->loop, 0);
    (void)fz_drain(z->qemu);
}

static void send_msg(struct fz *z, const void *buf, size_t len, uint8_t fdsel)
{
    int fds[FZ_NFDS];
    unsigned n = fz_fds_pick(&z->fds, fdsel, fds);

    (void)fz_send(z->qemu, buf, len, fds, n);
    pump(z);
}

/* A header QEMU would send for cmd (the payload size its command has), then payload. */
static void shaped(struct fz *z, int32_t cmd, const void *payload, uint64_t len, uint8_t fdsel)
{
    uint8_t buf[sizeof(struct vhu_mpqemu_hdr) + VHU_MPQEMU_PAYLOAD_MAX];
    struct vhu_mpqemu_hdr h = {.cmd = cmd, .size = len};

    memcpy(buf, &h, sizeof(h));
    memcpy(buf + sizeof(h), payload, len);
    send_msg(z, buf, sizeof(h) + len, fdsel);
}

static uint64_t payload_size(int32_t cmd)
{
    switch (cmd) {
    case VHU_MPQEMU_SYNC_SYSMEM:
        return sizeof(struct vhu_mpqemu_sysmem);
    case VHU_MPQEMU_PCI_CFGWRITE:
    case VHU_MPQEMU_PCI_CFGREAD:
        return sizeof(struct vhu_mpqemu_cfg);
    case VHU_MPQEMU_BAR_WRITE:
    case VHU_MPQEMU_BAR_READ:
        return sizeof(struct vhu_mpqemu_bar);
    default:
        return 0;
    }
}

static void cfg_access(struct fz *z, struct fin *f, uint8_t op)
{
    struct vhu_mpqemu_cfg c;
    uint8_t sel = fin_u8(f);

    c.len = (sel & 0x80) ? (int32_t)fin_u32(f) : 1 << ((sel & 3u) % 3u);
    c.addr = (sel & 0x40) ? fin_u32(f) : fin_u8(f);
    c.val = (op & 0x10) ? fin_u32(f) : 0;
    shaped(z, (op & 0x10) ? VHU_MPQEMU_PCI_CFGWRITE : VHU_MPQEMU_PCI_CFGREAD, &c, sizeof(c), 0);
}

static void bar_access(struct fz *z, struct fin *f, uint8_t op)
{
    struct vhu_mpqemu_bar b = {.memory = 1};
    uint8_t sel = fin_u8(f);

    b.size = (sel & 0x80) ? fin_u32(f) : 1u << ((sel >> 3) & 3u);
    b.addr = (sel & 0x40) ? fin_u64(f) : BAR_BASE(sel & 7u) + fin_u16(f);
    b.val = (op & 0x10) ? fin_u64(f) : 0;
    if (sel & 0x20)
        b.memory = fin_u8(f);
    shaped(z, (op & 0x10) ? VHU_MPQEMU_BAR_WRITE : VHU_MPQEMU_BAR_READ, &b, sizeof(b), 0);
}

static void step(struct fz *z, struct fin *f)
{
    uint8_t op = fin_u8(f);

    if (z->closed && !(op & 0x80))
        connect_adapter(z); /* QEMU starts again (the input may also talk to the dead one) */
    switch (op & 7u) {
    case 0: { /* shaped: the input's command and payload, the size QEMU would send */
        uint8_t payload[VHU_MPQEMU_PAYLOAD_MAX];
        int32_t cmd = fin_u8(f) % (VHU_MPQEMU_CMD_MAX + 1);
        uint8_t fdsel = fin_u8(f);
        uint64_t len = payload_size(cmd);

        fin_bytes(f, payload, len);
        shaped(z, cmd, payload, len, fdsel);
        break;
    }
    case 1:
        cfg_access(z, f, op);
        break;
    case 2:
    case 3:
        bar_access(z, f, op);
        break;
    case 4: { /* raw: the input's header (its size may lie), then bytes */
        uint8_t buf[sizeof(struct vhu_mpqemu_hdr) + 256];
        uint8_t fdsel = fin_u8(f);
        size_t len = sizeof(struct vhu_mpqemu_hdr) + fin_u8(f);

        fin_bytes(f, buf, len);
        send_msg(z, buf, len, fdsel);
        break;
    }
    case 5: /* the guest writes its RAM */
        fz_memfd_write(&z->fds, op & 0x08, f);
        break;
    case 6: /* QEMU goes away and comes back */
        connect_adapter(z);
        break;
    default:
        pump(z);
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fin f = {data, size};
    struct fz z = {.qemu = -1};
    struct fz_fe fe;
    unsigned steps = 0;
    int lfd, fds_before = vhu_fd_count_self();

    if (vhu_loop_new(&z.loop) < 0)
        abort();
    z.dev = fz_vvu_new(z.loop, fin_u8(&f), &lfd, &fe);
    fz_fds_open(&z.fds);
    connect_adapter(&z);
    while (fin_left(&f) && steps++ < MAX_STEPS)
        step(&z, &f);
    pump(&z);
    if (getenv("FUZZ_VERBOSE")) {
        struct vhu_mpqemu_stats st;
        struct vvu_dev_stats ds;

        vhu_mpqemu_get_stats(z.m, &st);
        vvu_dev_stats(z.dev, &ds);
        fprintf(stderr, "fuzz_mpqemu: cfg %llu/%llu bar %llu/%llu misses %llu syncs %llu "
                "resets %llu irqs %llu; device: bad accesses %llu\n",
                (unsigned long long)st.cfg_reads, (unsigned long long)st.cfg_writes,
                (unsigned long long)st.bar_reads, (unsigned long long)st.bar_writes,
                (unsigned long long)st.bar_misses, (unsigned long long)st.sysmem_syncs,
                (unsigned long long)st.resets, (unsigned long long)st.irqs,
                (unsigned long long)ds.bad_accesses);
    }
    vhu_mpqemu_free(z.m);
    close(z.qemu);
    vvu_dev_free(z.dev);
    vhu_loop_free(z.loop);
    close(lfd);
    fz_fds_close(&z.fds);
    fz_fd_check("fuzz_mpqemu", fds_before);
    return 0;
}
