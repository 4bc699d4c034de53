/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vhost-user messages over a connected AF_UNIX stream socket, fds in SCM_RIGHTS.
 *
 * vhost-user.rst "Communication": the front-end attaches fds to the sendmsg that carries the first
 * header byte, so a receiver only looks for them on the first recvmsg of a message; fds on any
 * later chunk are refused. Works on blocking and non-blocking sockets: on a non-blocking socket
 * with nothing queued recv returns -EAGAIN having consumed nothing; once a message has started it
 * is finished with poll() waits of at most IO_TIMEOUT_MS each (a peer stalling mid-message is
 * broken, and the connection is dropped).
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "proto/vhost_user.h"
#include "vhu/util.h"

#define IO_TIMEOUT_MS 1000

/* Control buffer for VHOST_USER_MAX_FDS fds, aligned for struct cmsghdr. */
union fd_cmsg {
    char buf[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_FDS)];
    struct cmsghdr align;
};

static void reset_fds(struct vhu_msg *m)
{
    for (unsigned i = 0; i < VHOST_USER_MAX_FDS; i++)
        m->fds[i] = -1;
    m->nfds = 0;
}

VHU_EXPORT void vhu_msg_close_fds(struct vhu_msg *m)
{
    unsigned n = VHU_MIN(m->nfds, (unsigned)VHOST_USER_MAX_FDS);

    /* Only the first nfds slots belong to the message: a sender's fds[] may hold borrowed fds. */
    for (unsigned i = 0; i < n; i++)
        vhu_fd_close(&m->fds[i]);
    m->nfds = 0;
}

VHU_EXPORT void vhu_msg_init(struct vhu_msg *m, uint32_t request, uint32_t flags, uint32_t size)
{
    m->hdr.request = request;
    m->hdr.flags = flags;
    m->hdr.size = size;
    /* Zero what will be sent, not the whole 4 KiB union. */
    memset(&m->payload, 0, VHU_MIN((size_t)size, sizeof(m->payload)));
    reset_fds(m);
}

/* Wait until sock is ready for `events`, at most IO_TIMEOUT_MS. */
static int wait_ready(int sock, short events)
{
    struct pollfd p = {.fd = sock, .events = events};

    for (;;) {
        int r = poll(&p, 1, IO_TIMEOUT_MS);
        if (r > 0)
            return 0;
        if (r == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

/*
 * Move every SCM_RIGHTS fd into m; fds beyond VHOST_USER_MAX_FDS are closed and flagged in
 * *dropped (only possible if control data other than fds ever shares the buffer). Returns the
 * count received.
 */
static unsigned take_fds(struct msghdr *mh, struct vhu_msg *m, bool *dropped)
{
    unsigned count = 0;

    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char *data = CMSG_DATA(c);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, data + i * sizeof(int), sizeof(fd));
            if (m->nfds < VHOST_USER_MAX_FDS) {
                m->fds[m->nfds++] = fd;
            } else {
                close(fd);
                *dropped = true;
            }
            count++;
        }
    }
    return count;
}

/*
 * Read exactly len bytes of the message into buf. *got counts the bytes of this message read so
 * far: at 0, EAGAIN is returned as is and EOF is a clean disconnect. Received fds go into m (the
 * caller closes them on error).
 */
static int read_full(int sock, void *buf, size_t len, struct vhu_msg *m, size_t *got)
{
    size_t off = 0;

    while (off < len) {
        union fd_cmsg ctl;
        struct iovec iov = {.iov_base = (char *)buf + off, .iov_len = len - off};
        struct msghdr mh = {
            .msg_iov = &iov,
            .msg_iovlen = 1,
            .msg_control = ctl.buf,
            .msg_controllen = sizeof(ctl.buf),
        };
        ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (*got == 0)
                    return -EAGAIN;
                int r = wait_ready(sock, POLLIN);
                if (r < 0)
                    return r;
                continue;
            }
            return -errno;
        }
        bool first = *got == 0, dropped = false;
        unsigned nfds = mh.msg_controllen ? take_fds(&mh, m, &dropped) : 0;
        /* More fds than a message may carry: the kernel or we dropped some, the message is lost. */
        if ((mh.msg_flags & MSG_CTRUNC) || dropped)
            return -EBADMSG;
        if (nfds && !first)
            return -EBADMSG;
        if (n == 0)
            return first ? -ECONNRESET : -EPIPE;
        off += (size_t)n;
        *got += (size_t)n;
    }
    return 0;
}

VHU_EXPORT int vhu_msg_recv(int sock, struct vhu_msg *m)
{
    size_t got = 0;
    int r;

    reset_fds(m);
    r = read_full(sock, &m->hdr, sizeof(m->hdr), m, &got);
    /* Refuse before reading: the rest of the stream cannot be trusted, the caller drops it. */
    if (r == 0 && m->hdr.size > sizeof(m->payload))
        r = -EMSGSIZE;
    if (r == 0 && m->hdr.size)
        r = read_full(sock, &m->payload, m->hdr.size, m, &got);
    if (r < 0)
        vhu_msg_close_fds(m);
    return r;
}

static void advance(struct msghdr *mh, size_t n)
{
    while (n && mh->msg_iovlen) {
        struct iovec *v = mh->msg_iov;
        if (n < v->iov_len) {
            v->iov_base = (char *)v->iov_base + n;
            v->iov_len -= n;
            return;
        }
        n -= v->iov_len;
        mh->msg_iov++;
        mh->msg_iovlen--;
    }
}

VHU_EXPORT int vhu_msg_send(int sock, const struct vhu_msg *m)
{
    union fd_cmsg ctl;
    struct iovec iov[2] = {
        {.iov_base = (void *)&m->hdr, .iov_len = sizeof(m->hdr)},
        {.iov_base = (void *)&m->payload, .iov_len = m->hdr.size},
    };
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = m->hdr.size ? 2 : 1};
    size_t left = sizeof(m->hdr) + m->hdr.size;

    if (m->hdr.size > sizeof(m->payload) || m->nfds > VHOST_USER_MAX_FDS)
        return -EINVAL;
    if (m->nfds) {
        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * m->nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * m->nfds);
        memcpy(CMSG_DATA(c), m->fds, sizeof(int) * m->nfds);
    }
    while (left) {
        ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                int r = wait_ready(sock, POLLOUT);
                if (r < 0)
                    return r;
                continue;
            }
            return -errno;
        }
        /* The fds went with the first byte; the rest is plain data. */
        mh.msg_control = NULL;
        mh.msg_controllen = 0;
        left -= (size_t)n;
        advance(&mh, (size_t)n);
    }
    return 0;
}
