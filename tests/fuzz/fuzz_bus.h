/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * What the virtio-vhost-user fuzz targets share: the VVU device they drive (with a frontend
 * socket nobody has to create a file for), the fixed set of fds a bus peer may attach (memfds
 * for DMA memory, eventfds for interrupts), and the peer's end of a socket: send with fds,
 * read and drop replies (closing the fds they carry).
 */
#ifndef VHU_FUZZ_BUS_H
#define VHU_FUZZ_BUS_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz_input.h"
#include "proto/vhost_user.h"
#include "vhu/loop.h"
#include "vhu/util.h"
#include "vvu/vvu_dev.h"

/* The fds a peer may attach: two memfds (64 KiB and 1 MiB, F_SEAL_SHRINK), four eventfds. */
#define FZ_NFDS 6
#define FZ_MEMFD_SMALL 0x10000u
#define FZ_MEMFD_LARGE 0x100000u

struct fz_fds {
    int fd[FZ_NFDS];
};

static inline int fz_memfd(size_t size)
{
    int fd = memfd_create("vhu-fuzz", MFD_CLOEXEC | MFD_ALLOW_SEALING);

    if (fd < 0 || ftruncate(fd, (off_t)size) < 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0)
        abort();
    return fd;
}

static inline void fz_fds_open(struct fz_fds *s)
{
    s->fd[0] = fz_memfd(FZ_MEMFD_SMALL);
    s->fd[1] = fz_memfd(FZ_MEMFD_LARGE);
    for (unsigned i = 2; i < FZ_NFDS; i++)
        if ((s->fd[i] = vhu_eventfd_new()) < 0)
            abort();
}

static inline void fz_fds_close(struct fz_fds *s)
{
    for (unsigned i = 0; i < FZ_NFDS; i++)
        close(s->fd[i]);
}

/* The fds selected by the low FZ_NFDS bits of sel, in order; returns how many. */
static inline unsigned fz_fds_pick(const struct fz_fds *s, uint8_t sel, int *out)
{
    unsigned n = 0;

    for (unsigned i = 0; i < FZ_NFDS; i++)
        if (sel & (1u << i))
            out[n++] = s->fd[i];
    return n;
}

/* The input writes into a memfd (the peer's side of its DMA memory): offset, length, bytes. */
static inline void fz_memfd_write(const struct fz_fds *s, bool large, struct fin *f)
{
    size_t size = large ? FZ_MEMFD_LARGE : FZ_MEMFD_SMALL;
    uint32_t off = fin_u32(f) % (uint32_t)size, len = fin_u8(f) + 1u;
    uint8_t buf[256];

    fin_bytes(f, buf, len);
    if (len > size - off)
        len = (uint32_t)(size - off);
    if (pwrite(s->fd[large], buf, len, off) < 0)
        abort();
}

/* One message, fds with its first byte; false: the socket is gone (or full). */
static inline bool fz_send(int sock, const void *buf, size_t len, const int *fds, unsigned nfds)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * FZ_NFDS)];
        struct cmsghdr align;
    } u;
    struct iovec iov = {(void *)buf, len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

    if (nfds) {
        struct cmsghdr *c;

        memset(&u, 0, sizeof(u));
        mh.msg_control = u.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    return sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0;
}

/* Read whatever the other side sent, close the fds it carried; false: end of stream. */
static inline bool fz_drain(int sock)
{
    static uint8_t buf[1u << 16];
    union {
        char buf[CMSG_SPACE(sizeof(int) * 64)];
        struct cmsghdr align;
    } u;

    for (;;) {
        struct iovec iov = {buf, sizeof(buf)};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                            .msg_controllen = sizeof(u.buf)};
        ssize_t r = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

        if (r < 0)
            return errno == EAGAIN || errno == EINTR;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
                int fd;

                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                close(fd);
            }
        }
        if (r == 0)
            return false;
    }
}

/* A vhost-user frontend of the VVU device: raw bytes on a stream socket, no fds. */
struct fz_fe {
    int fd;                       /* -1: not connected */
    struct sockaddr_un sa;        /* the device's socket */
    socklen_t salen;
};

static inline void fz_fe_close(struct fz_fe *fe)
{
    if (fe->fd >= 0)
        close(fe->fd);
    fe->fd = -1;
}

/* Connected (false: the backlog is full of the input's earlier connections). */
static inline bool fz_fe_connect(struct fz_fe *fe)
{
    if (fe->fd >= 0)
        return true;
    fe->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fe->fd < 0)
        abort();
    if (connect(fe->fd, (struct sockaddr *)&fe->sa, fe->salen) < 0)
        fz_fe_close(fe);
    return fe->fd >= 0;
}

/* Read and drop the replies; the device hanging up closes our end. */
static inline void fz_fe_drain(struct fz_fe *fe)
{
    if (fe->fd >= 0 && !fz_drain(fe->fd))
        fz_fe_close(fe);
}

/* A frontend message: header (any request, flags, size) and up to 4096 + 64 payload bytes. */
static inline void fz_fe_send(struct fz_fe *fe, struct fin *f)
{
    uint8_t buf[sizeof(struct vhost_user_hdr) + 4096 + 64];
    struct vhost_user_hdr h;
    uint8_t k = fin_u8(f);
    uint32_t n;

    if (!fz_fe_connect(fe))
        return;
    h.request = (k & 0x80) ? fin_u32(f) : fin_u8(f) % 64u;
    h.flags = (k & 0x40) ? fin_u32(f) : VHOST_USER_VERSION | ((k & 1u) << 3);
    n = fin_u16(f) % (4096u + 64u);
    h.size = (k & 0x20) ? fin_u32(f) : n;
    memcpy(buf, &h, sizeof(h));
    fin_bytes(f, buf + sizeof(h), n);
    if (send(fe->fd, buf, sizeof(h) + n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        fz_fe_close(fe);
}

/*
 * The VVU device on loop, its frontend socket a listening socket in the abstract namespace
 * (no file; unique per call: fe is set up to connect there, not connected). *lfd is the
 * caller's to close after the device is freed. opt: max_vhost_queues (bits 0-2) and the
 * shared-memory window's size (bits 3-5).
 */
static inline struct vvu_dev *fz_vvu_new(struct vhu_loop *loop, uint8_t opt, int *lfd,
                                         struct fz_fe *fe)
{
    static unsigned seq;
    struct sockaddr_un *sa = &fe->sa;
    struct vvu_dev_opts o;
    struct vvu_dev *d;
    int n;

    fe->fd = -1;
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    n = snprintf(sa->sun_path + 1, sizeof(sa->sun_path) - 1, "vhu-fuzz-vvu-%d-%u",
                 (int)getpid(), seq++);
    fe->salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    *lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (*lfd < 0 || bind(*lfd, (struct sockaddr *)sa, fe->salen) < 0 || listen(*lfd, 8) < 0)
        abort();
    vvu_dev_opts_default(&o);
    o.max_vhost_queues = 1u + (opt & 7u);
    o.shm_size = 4096ull << ((opt >> 3) & 7u);
    o.socket_fd = *lfd;
    memset(o.uuid, 0, sizeof(o.uuid));   /* deterministic */
    if (vvu_dev_new(loop, &o, &d) < 0)
        abort();
    return d;
}

/* The process's fds, for the leak check at the end of an input. */
static inline void fz_fd_check(const char *target, int before)
{
    int after = vhu_fd_count_self();

    if (after != before) {
        fprintf(stderr, "%s: fd leak: %d fds before, %d after\n", target, before, after);
        abort();
    }
}

#endif
