/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Fuzz target: the vfio-user server (src/vvu/vfio_user_server.c) serving the real VVU device
 * (vvu_dev_pci), against a hostile client on its socket: raw messages (any header: id,
 * command, size that lies, flags, error; any payload) and shaped ones (a consistent header
 * around the input's command and payload; region reads and writes of any region, offset and
 * count), fds from a fixed set the harness made (two memfds, four eventfds) attached as the
 * input says, writes into those memfds (the client's DMA memory: the device's rings live
 * there once mapped), reconnects. One thread: the server's loop runs once (timeout 0) after
 * each message, and the client reads and drops what comes back (closing the fds it carries).
 *
 * Input: one byte of device options, one byte of flags (bit 0: start with a VERSION
 * handshake), then steps (an op byte and its operands: see step()). Findings: a sanitizer
 * report, an fd count that grew once everything is freed. The seeds: tests/fuzz/mkcorpus.py.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_bus.h"
#include "fuzz_input.h"
#include "proto/vfio_user.h"
#include "vvu/vfio_user_server.h"

#define MAX_STEPS 256
#define MAX_PAYLOAD 4096u

struct fz {
    struct vhu_loop *loop;
    struct vvu_dev *dev;
    struct vhu_vfu_server *srv;
    struct fz_fds fds;
    char path[64];
    int lfd;           /* the device's frontend socket (not used by this target) */
    int cl;            /* the client, or -1 */
    uint16_t msg_id;
    uint8_t buf[sizeof(struct vfu_hdr) + sizeof(struct vfu_region_access) + MAX_PAYLOAD];
};

static char dir[32];

static void dir_remove(void)
{
    rmdir(dir);
}

static void client_close(struct fz *z)
{
    if (z->cl >= 0)
        close(z->cl);
    z->cl = -1;
}

/* false: the backlog is full (the server has not seen an earlier client leave yet) */
static bool client_connect(struct fz *z)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    if (z->cl >= 0)
        return true;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", z->path);
    z->cl = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (z->cl < 0)
        abort();
    if (connect(z->cl, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        client_close(z);
    vhu_loop_run_once(z->loop, 0);
    return z->cl >= 0;
}

/* Let the server run, read its replies; a server that hung up gets a new client. */
static void pump(struct fz *z)
{
    vhu_loop_run_once(z->loop, 0);
    if (z->cl >= 0 && !fz_drain(z->cl))
        client_close(z);
}

/* Send header + payload (the header's size as given) with the fds fdsel picks. */
static void send_msg(struct fz *z, const struct vfu_hdr *h, size_t payload_len, uint8_t fdsel)
{
    int fds[FZ_NFDS];
    unsigned n = fz_fds_pick(&z->fds, fdsel, fds);

    if (!client_connect(z))
        return;
    memcpy(z->buf, h, sizeof(*h));
    if (!fz_send(z->cl, z->buf, sizeof(*h) + payload_len, fds, n))
        client_close(z);
    pump(z);
}

static void shaped(struct fz *z, uint16_t cmd, uint32_t flags, size_t len, uint8_t fdsel)
{
    struct vfu_hdr h = {.msg_id = z->msg_id++, .cmd = cmd,
                        .size = (uint32_t)(sizeof(h) + len), .flags = flags};

    send_msg(z, &h, len, fdsel);
}

static void version(struct fz *z)
{
    static const char caps[] = "{\"capabilities\":{\"max_msg_fds\":8,\"pgsizes\":4096}}";
    struct vfu_version v = {VFU_VERSION_MAJOR, VFU_VERSION_MINOR};

    memcpy(z->buf + sizeof(struct vfu_hdr), &v, sizeof(v));
    memcpy(z->buf + sizeof(struct vfu_hdr) + sizeof(v), caps, sizeof(caps));
    shaped(z, VFU_CMD_VERSION, VFU_F_TYPE_COMMAND, sizeof(v) + sizeof(caps), 0);
}

/* A region access with a consistent size: region, offset, count, data for a write. */
static void region_access(struct fz *z, struct fin *f, uint8_t op)
{
    static const uint64_t bases[8] = {0, 0x800, 0x1000, 0x1800, 0x2000, 0x3000, 0x8000, 0};
    struct vfu_region_access a;
    uint8_t sel = fin_u8(f);
    bool write = op & 0x10;

    a.region = (sel & 0x80) ? fin_u8(f) : (sel & 3u) == 3 ? VFIO_PCI_CONFIG_REGION_INDEX
                                                          : sel & 3u;
    a.offset = (sel & 0x40) ? fin_u64(f) : bases[(sel >> 2) & 7u] + fin_u8(f);
    a.count = (sel & 0x20) ? fin_u16(f) % (MAX_PAYLOAD + 1) : 1u << (op >> 5 & 3u);
    memcpy(z->buf + sizeof(struct vfu_hdr), &a, sizeof(a));
    if (write)
        fin_bytes(f, z->buf + sizeof(struct vfu_hdr) + sizeof(a), a.count);
    shaped(z, write ? VFU_CMD_REGION_WRITE : VFU_CMD_REGION_READ, VFU_F_TYPE_COMMAND,
           sizeof(a) + (write ? a.count : 0), 0);
}

static void step(struct fz *z, struct fin *f)
{
    uint8_t op = fin_u8(f);

    switch (op & 7u) {
    case 0:
    case 1: { /* shaped: the input's command and payload, a header that fits */
        uint16_t cmd = fin_u8(f) % 20u;
        uint8_t fdsel = fin_u8(f);
        uint32_t len = fin_u16(f) % (MAX_PAYLOAD + 1);
        uint32_t flags = (op & 0x08) ? VFU_F_NO_REPLY : 0;

        if (op & 0x10)
            flags |= fin_u32(f);
        fin_bytes(f, z->buf + sizeof(struct vfu_hdr), len);
        shaped(z, cmd, flags, len, fdsel);
        break;
    }
    case 2:
        region_access(z, f, op);
        break;
    case 3: { /* raw: the input's header (its size may lie), then bytes */
        struct vfu_hdr h;
        uint8_t fdsel = fin_u8(f);
        uint32_t len = fin_u16(f) % (MAX_PAYLOAD + 1);

        fin_bytes(f, &h, sizeof(h));
        fin_bytes(f, z->buf + sizeof(h), len);
        send_msg(z, &h, len, fdsel);
        break;
    }
    case 4: /* the client writes its DMA memory */
        fz_memfd_write(&z->fds, op & 0x08, f);
        break;
    case 5: /* the client goes away (the device is reset), another comes */
        client_close(z);
        pump(z);
        (void)client_connect(z);
        if (op & 0x08)
            version(z);
        break;
    case 6: /* let the server run */
        pump(z);
        break;
    default: /* a VERSION (a second one is refused) */
        version(z);
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned seq;
    struct fin f = {data, size};
    struct fz *z = calloc(1, sizeof(*z));
    struct fz_fe fe;
    unsigned steps = 0;
    int fds_before = vhu_fd_count_self();
    uint8_t opt, flags;

    if (!z)
        abort();
    if (!dir[0]) {
        snprintf(dir, sizeof(dir), "/tmp/vhu-fuzz-vfu-XXXXXX");
        if (!mkdtemp(dir))
            abort();
        atexit(dir_remove);
    }
    snprintf(z->path, sizeof(z->path), "%s/%u.sock", dir, seq++);
    z->cl = -1;
    opt = fin_u8(&f);
    flags = fin_u8(&f);
    if (vhu_loop_new(&z->loop) < 0)
        abort();
    z->dev = fz_vvu_new(z->loop, opt, &z->lfd, &fe);
    if (vhu_vfu_server_new(z->loop, vvu_dev_pci(z->dev), z->path, &z->srv) < 0)
        abort();
    fz_fds_open(&z->fds);
    if (flags & 1)
        version(z);
    while (fin_left(&f) && steps++ < MAX_STEPS)
        step(z, &f);
    pump(z);
    client_close(z);
    pump(z);
    vhu_vfu_server_free(z->srv);
    vvu_dev_free(z->dev);
    vhu_loop_free(z->loop);
    close(z->lfd);
    fz_fds_close(&z->fds);
    free(z);
    fz_fd_check("fuzz_vfu_server", fds_before);
    return 0;
}
