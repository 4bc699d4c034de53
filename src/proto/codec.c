/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vhost-user messages over a connected AF_UNIX stream socket, fds in SCM_RIGHTS.
 *
 * vhost-user.rst "Communication": the front-end attaches fds to the sendmsg that carries the first
 * header byte, so a receiver only looks for them on the first recvmsg of a message; fds on any
 * later chunk are refused.
 *
 * Receiving is a resumable state machine (vhu_msg_recv_step): it reads what is queued and never
 * blocks, keeping a partial message (and the fds that came with its header) in the caller's
 * struct until the rest arrives, so an event loop serves a peer that sends one byte a second
 * without waiting for it. vhu_msg_recv and vhu_msg_recv_timeout wrap it for callers that wait,
 * with a deadline for the whole message, never one per chunk (a peer dribbling a byte just
 * before each per-chunk timeout could hold the caller for hours). Sending also never blocks in
 * the kernel: a full socket buffer is waited for, at most IO_TIMEOUT_MS for the whole message.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "proto/vhost_user.h"
#include "util/sock.h"
#include "vhu/util.h"

#define IO_TIMEOUT_MS 1000

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

/*
 * One recvmsg of at most len bytes into buf, never blocking. first: nothing of this message was
 * read yet (the only chunk that may carry fds). Returns the byte count (> 0), -EAGAIN, or an error
 * (received fds stay in m: the caller closes them).
 */
static ssize_t recv_chunk(int sock, void *buf, size_t len, struct vhu_msg *m, bool first)
{
    unsigned had = m->nfds;
    ssize_t n = vhu_sock_recv_fds(sock, buf, len, m->fds, VHOST_USER_MAX_FDS, &m->nfds);

    if (n == -ECONNRESET && !first)
        return -EPIPE; /* the stream ended inside a message */
    if (n > 0 && m->nfds != had && !first)
        return -EBADMSG;
    return n;
}

/* The message is lost: close every fd it brought (the first chunk's too), start afresh. */
static int rx_fail(struct vhu_msg *m, struct vhu_msg_rx *rx, int err)
{
    vhu_msg_close_fds(m);
    rx->got = 0;
    return err;
}

VHU_EXPORT int vhu_msg_recv_step(int sock, struct vhu_msg *m, struct vhu_msg_rx *rx)
{
    const size_t hdr = sizeof(m->hdr);

    if (rx->got == 0)
        reset_fds(m);
    for (;;) {
        size_t want;
        uint8_t *at;
        if (rx->got < hdr) {
            want = hdr - rx->got;
            at = (uint8_t *)&m->hdr + rx->got;
        } else {
            /* Refuse before reading: the rest of the stream cannot be trusted, the caller drops
             * it. */
            if (m->hdr.size > sizeof(m->payload))
                return rx_fail(m, rx, -EMSGSIZE);
            want = hdr + m->hdr.size - rx->got;
            at = (uint8_t *)&m->payload + (rx->got - hdr);
        }
        if (want == 0) {
            rx->got = 0; /* whole: the next call starts the next message */
            return 0;
        }
        ssize_t n = recv_chunk(sock, at, want, m, rx->got == 0);
        if (n == -EAGAIN)
            return -EAGAIN; /* the partial message and its fds stay in m */
        if (n < 0)
            return rx_fail(m, rx, (int)n);
        rx->got += (size_t)n;
    }
}

VHU_EXPORT void vhu_msg_rx_abort(struct vhu_msg *m, struct vhu_msg_rx *rx)
{
    if (rx->got == 0)
        return; /* no partial message: whatever m holds is a whole one, the caller's */
    vhu_msg_close_fds(m);
    rx->got = 0;
}

/* Step until a whole message, waiting for more until deadline_ns (0: none). */
static int recv_until(int sock, struct vhu_msg *m, struct vhu_msg_rx *rx, uint64_t deadline_ns)
{
    for (;;) {
        int r = vhu_msg_recv_step(sock, m, rx);
        if (r != -EAGAIN)
            return r;
        r = vhu_sock_wait(sock, POLLIN, deadline_ns);
        if (r < 0) {
            vhu_msg_rx_abort(m, rx);
            return r;
        }
    }
}

VHU_EXPORT int vhu_msg_recv(int sock, struct vhu_msg *m)
{
    struct vhu_msg_rx rx = {0};
    int fl = fcntl(sock, F_GETFL);
    int r = vhu_msg_recv_step(sock, m, &rx);

    if (r != -EAGAIN)
        return r;
    /* Nothing queued: a non-blocking socket says so, a blocking one waits for a start. */
    if (rx.got == 0 && fl >= 0 && (fl & O_NONBLOCK))
        return -EAGAIN;
    while (rx.got == 0) {
        r = vhu_sock_wait(sock, POLLIN, 0);
        if (r == 0)
            r = vhu_msg_recv_step(sock, m, &rx);
        if (r != -EAGAIN)
            return r;
    }
    /* A message has started: the rest within IO_TIMEOUT_MS in total, however it dribbles. */
    return recv_until(sock, m, &rx, vhu_sock_deadline(IO_TIMEOUT_MS));
}

VHU_EXPORT int vhu_msg_recv_timeout(int sock, struct vhu_msg *m, int timeout_ms)
{
    struct vhu_msg_rx rx = {0};

    return recv_until(sock, m, &rx, vhu_sock_deadline(timeout_ms));
}

VHU_EXPORT int vhu_msg_send(int sock, const struct vhu_msg *m)
{
    struct iovec iov[2] = {
        {.iov_base = (void *)&m->hdr, .iov_len = sizeof(m->hdr)},
        {.iov_base = (void *)&m->payload, .iov_len = m->hdr.size},
    };

    if (m->hdr.size > sizeof(m->payload) || m->nfds > VHOST_USER_MAX_FDS)
        return -EINVAL;
    return vhu_sock_send_fds(sock, iov, m->hdr.size ? 2 : 1, m->fds, m->nfds, IO_TIMEOUT_MS);
}
