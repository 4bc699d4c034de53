/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Fuzz target: the vhost-user decoder and session (src/transport/vhost-user/decoder.c) over a
 * real device (rng, blk over the null store, net with the sink port), as a hostile frontend
 * drives it: a *sequence* of messages, each with real fds. Per message the input gives the
 * request (one of the known ids, or any 32-bit value), flags, payload size and bytes (at most
 * the payload union, as the AF_UNIX codec enforces), and an fd selector: how many fds and of
 * which kind, created here for the message (eventfds, some already signalled so a kick fires;
 * memfds of 64 KiB or 1 MiB whose first bytes the input writes, to be mapped as guest memory;
 * one end of a socketpair, for the backend channel). The session owns every fd it is given.
 * Replies go to a send op that checks them and drops them. The control loop runs between
 * messages (kicks, device completions). When dispatch says the connection must be dropped,
 * the session ends and a new one starts with the rest of the input (a reconnect). At the end
 * everything is torn down and the process's fd count must be back where it was: a grown count
 * is a leaked fd, and the target aborts. Input format: docs/security.md; the seeds:
 * tests/fuzz/mkcorpus.py.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_input.h"
#include "transport/vhost-user/decoder.h"
#include "vhu/dev/blk.h"
#include "vhu/dev/net.h"
#include "vhu/dev/rng.h"
#include "vhu/loop.h"
#include "vhu/util.h"

struct fz {
    int peers[VHOST_USER_MAX_FDS * 4]; /* our ends of socketpairs handed out */
    unsigned npeers;
    unsigned replies;
};

static int capture_send(void *conn, const struct vhu_msg *m)
{
    struct fz *z = conn;

    /* A reply the session builds must be one the codec can send. */
    if (m->hdr.size > sizeof(m->payload) || m->nfds > VHOST_USER_MAX_FDS)
        abort();
    z->replies++;
    return 0;
}

static const struct vhu_session_transport_ops capture_ops = {.name = "fuzz", .send = capture_send};

static int dev_new(uint8_t kind, struct vhu_device **dev)
{
    switch (kind % 3) {
    case 0:
        return vhu_rng_new(&(struct vhu_rng_opts){0}, dev);
    case 1:
        return vhu_blk_new(&(struct vhu_blk_opts){.null_size = 1 << 20, .num_queues = 2}, dev);
    default:
        return vhu_net_new(&(struct vhu_net_opts){.port = VHU_NET_PORT_SINK, .queue_pairs = 2},
                           dev);
    }
}

/* One fd of the kind k, or -1. */
static int make_fd(struct fz *z, struct fin *f, uint8_t k)
{
    int fd = -1, sv[2];

    switch (k & 3) {
    case 0:
    case 1: /* eventfd; with bit 2, already signalled */
        fd = eventfd((k & 4) ? 1 : 0, EFD_CLOEXEC | EFD_NONBLOCK);
        break;
    case 2: { /* memfd: guest memory, the input writes its first bytes */
        size_t size = (k & 4) ? (size_t)1 << 20 : (size_t)64 << 10;
        uint8_t n = fin_u8(f);
        uint8_t buf[256];

        fd = memfd_create("fuzz-mem", MFD_CLOEXEC);
        if (fd < 0)
            break;
        if (ftruncate(fd, (off_t)size) < 0) {
            close(fd);
            return -1;
        }
        fin_bytes(f, buf, n);
        if (n && pwrite(fd, buf, n, (off_t)fin_u16(f) * 16) != n) {
            close(fd);
            return -1;
        }
        break;
    }
    case 3: /* a socketpair: the backend channel */
        if (z->npeers == VHU_ARRAY_SIZE(z->peers) ||
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
            break;
        z->peers[z->npeers++] = sv[0];
        fd = sv[1];
        break;
    }
    return fd;
}

static void msg_read(struct fz *z, struct fin *f, struct vhu_msg *m)
{
    uint8_t req = fin_u8(f), fl = fin_u8(f), nsel = fin_u8(f);
    uint16_t size = fin_u16(f);

    memset(m, 0, sizeof(*m));
    /* mostly a known request; with the top bit any value */
    m->hdr.request = (req & 0x80) ? fin_u32(f) : (uint32_t)(req % 46);
    /* mostly version 1 (with or without NEED_REPLY); with bit 7 the input's own flags */
    m->hdr.flags = (fl & 0x80) ? fin_u32(f) : (VHOST_USER_VERSION | ((fl & 1) ? VHOST_USER_NEED_REPLY_MASK : 0));
    m->hdr.size = size % (sizeof(m->payload) + 1);
    fin_bytes(f, &m->payload, m->hdr.size);
    for (unsigned i = 0; i < VHOST_USER_MAX_FDS; i++)
        m->fds[i] = -1;
    /* fd count: mostly 0 or 1, up to VHOST_USER_MAX_FDS */
    unsigned n = (nsel & 0x80) ? (nsel & 7) + 1u : (nsel & 1);
    for (unsigned i = 0; i < n; i++) {
        int fd = make_fd(z, f, i == 0 ? (uint8_t)(nsel >> 1) : fin_u8(f));
        if (fd >= 0)
            m->fds[m->nfds++] = fd;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fin f = {data, size};
    struct fz z = {0};
    struct vhu_device *dev = NULL;
    struct vhu_loop *loop = NULL;
    struct vhu_backend *b = NULL;
    struct vhu_session *s = NULL;
    unsigned steps = 0;
    int fds_before;

    fds_before = vhu_fd_count_self();
    if (dev_new(fin_u8(&f), &dev) < 0)
        abort();
    if (vhu_loop_new(&loop) < 0 || vhu_backend_new(dev, loop, &b) < 0)
        abort();
    while (fin_left(&f) && steps++ < 256) {
        struct vhu_msg m;

        if (!s && vhu_session_new(b, &capture_ops, &z, &s) < 0)
            abort();
        msg_read(&z, &f, &m);
        if (vhu_session_dispatch(s, &m) < 0) {
            /* the transport closes the connection */
            vhu_session_end(s);
            s = NULL;
        }
        vhu_loop_run_once(loop, 0);
    }
    if (s)
        vhu_session_end(s);
    vhu_loop_run_once(loop, 0);
    vhu_backend_free(b); /* and the device */
    vhu_loop_free(loop);
    for (unsigned i = 0; i < z.npeers; i++)
        close(z.peers[i]);
    int fds_after = vhu_fd_count_self();
    if (fds_after != fds_before) {
        fprintf(stderr, "fuzz_session: fd leak: %d fds before, %d after\n", fds_before, fds_after);
        abort();
    }
    return 0;
}
