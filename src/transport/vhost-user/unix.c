/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vhost-user over AF_UNIX stream sockets. The backend listens (server) or connects (client,
 * retrying on a timer); each connection gets one backend session. A malformed message ends that
 * connection only; the listener keeps accepting.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "decoder.h"
#include "util/sock.h"
#include "vhu/log.h"
#include "vhu/transport.h"
#include "vhu/util.h"

struct vhu_unix {
    struct vhu_backend *b;
    struct vhu_loop *loop;
    struct vhu_sock_path own; /* the socket file we created (unlinked on free, if still ours) */
    char *connect_path;   /* client mode */
    unsigned reconnect_ms;
    int listen_fd;
    int conn_fd;
    int timer_fd;         /* client reconnect timer */
    struct vhu_session *session;
    struct vhu_msg msg;   /* receive buffer (large: not on the stack); may hold a partial
                           * message and its fds between readable events */
    struct vhu_msg_rx rx; /* how far msg got */
    void (*on_disconnect)(void *opaque, int err);
    void *on_disconnect_opaque;
};

static int conn_send(void *conn, const struct vhu_msg *m)
{
    struct vhu_unix *u = conn;

    return vhu_msg_send(u->conn_fd, m);
}

static const struct vhu_session_transport_ops unix_session_ops = {
    .name = "vhost-user-unix",
    .send = conn_send,
};

static void arm_reconnect(struct vhu_unix *u);

static void conn_close(struct vhu_unix *u, int err)
{
    if (u->conn_fd < 0)
        return;
    vhu_loop_del(u->loop, u->conn_fd);
    vhu_msg_rx_abort(&u->msg, &u->rx); /* the fds of a message cut short */
    vhu_session_end(u->session);
    u->session = NULL;
    vhu_fd_close(&u->conn_fd);
    if (err)
        vhu_warn("frontend connection closed: %s", strerror(-err));
    else
        vhu_info("frontend disconnected");
    if (u->connect_path)
        arm_reconnect(u);
    if (u->on_disconnect)
        u->on_disconnect(u->on_disconnect_opaque, err);
}

/* Readable: read what is queued, never waiting for the rest of a message (a peer dribbling one
 * byte a second holds only its own connection, not the control thread). */
static void conn_cb(int fd, uint32_t events, void *opaque)
{
    struct vhu_unix *u = opaque;
    int r = vhu_msg_recv_step(fd, &u->msg, &u->rx);

    (void)events;
    if (r == -EAGAIN)
        return;
    if (r == -ECONNRESET) {
        conn_close(u, 0);
        return;
    }
    if (r < 0) {
        vhu_err("dropping connection: cannot read a message: %s", strerror(-r));
        conn_close(u, r);
        return;
    }
    r = vhu_session_dispatch(u->session, &u->msg);
    if (r < 0)
        conn_close(u, r);
}

static int conn_attach(struct vhu_unix *u, int fd)
{
    int r = vhu_fd_set_nonblock(fd, true);

    if (r == 0)
        r = vhu_session_new(u->b, &unix_session_ops, u, &u->session);
    if (r < 0) {
        close(fd);
        return r;
    }
    u->conn_fd = fd;
    r = vhu_loop_add(u->loop, fd, VHU_LOOP_IN, conn_cb, u);
    if (r < 0) {
        vhu_session_end(u->session);
        u->session = NULL;
        vhu_fd_close(&u->conn_fd);
        return r;
    }
    vhu_info("frontend connected");
    return 0;
}

static void listen_cb(int fd, uint32_t events, void *opaque)
{
    struct vhu_unix *u = opaque;
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);

    (void)events;
    if (c < 0) {
        if (errno != EAGAIN && errno != EINTR)
            vhu_warn("accept: %s", strerror(errno));
        return;
    }
    if (u->conn_fd >= 0) {
        vhu_warn("refusing a second frontend connection while one is active");
        close(c);
        return;
    }
    int r = conn_attach(u, c);
    if (r < 0)
        vhu_err("cannot serve the new connection: %s", strerror(-r));
}

static int try_connect(struct vhu_unix *u)
{
    struct sockaddr_un sa;
    int fd, r = vhu_sock_addr(u->connect_path, &sa);

    if (r < 0)
        return r;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    return conn_attach(u, fd);
}

static void timer_cb(int fd, uint32_t events, void *opaque)
{
    struct vhu_unix *u = opaque;
    int r;

    (void)events;
    vhu_eventfd_drain(fd); /* a timerfd reads like an eventfd: one u64 */
    if (u->conn_fd >= 0)
        return;
    r = try_connect(u);
    if (r < 0) {
        vhu_dbg("connect %s: %s", u->connect_path, strerror(-r));
        arm_reconnect(u);
    }
}

static void arm_reconnect(struct vhu_unix *u)
{
    struct itimerspec its = {0};

    if (u->timer_fd < 0 || u->reconnect_ms == 0)
        return;
    its.it_value.tv_sec = u->reconnect_ms / 1000;
    its.it_value.tv_nsec = (long)(u->reconnect_ms % 1000) * 1000000L;
    timerfd_settime(u->timer_fd, 0, &its, NULL);
}

static bool is_listening(int fd)
{
    int on = 0;
    socklen_t len = sizeof(on);

    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on;
}

VHU_EXPORT int vhu_unix_new(struct vhu_backend *b, struct vhu_loop *loop,
                            const struct vhu_unix_opts *opts, struct vhu_unix **out)
{
    struct vhu_unix *u;
    int r = 0;

    if ((opts->path == NULL) == (opts->fd < 0))
        return -EINVAL; /* exactly one of path and fd */
    if (opts->client && !opts->path)
        return -EINVAL;
    u = calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    u->b = b;
    u->loop = loop;
    u->listen_fd = u->conn_fd = u->timer_fd = -1;
    u->reconnect_ms = opts->reconnect_ms;
    if (opts->fd >= 0) {
        if (is_listening(opts->fd)) {
            u->listen_fd = opts->fd;
            r = vhu_fd_set_nonblock(u->listen_fd, true);
        } else {
            r = conn_attach(u, opts->fd);
        }
    } else if (opts->client) {
        u->connect_path = strdup(opts->path);
        u->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (!u->connect_path || u->timer_fd < 0)
            r = -ENOMEM;
        if (r == 0)
            r = vhu_loop_add(loop, u->timer_fd, VHU_LOOP_IN, timer_cb, u);
        if (r == 0) {
            r = try_connect(u);
            if (r < 0 && u->reconnect_ms) {
                vhu_info("%s: %s; retrying every %u ms", opts->path, strerror(-r),
                         u->reconnect_ms);
                arm_reconnect(u);
                r = 0;
            }
        }
    } else {
        r = vhu_sock_listen_path(opts->path, 4, &u->listen_fd, &u->own);
    }
    if (r == 0 && u->listen_fd >= 0)
        r = vhu_loop_add(loop, u->listen_fd, VHU_LOOP_IN, listen_cb, u);
    if (r < 0) {
        vhu_unix_free(u);
        return r;
    }
    *out = u;
    return 0;
}

VHU_EXPORT void vhu_unix_free(struct vhu_unix *u)
{
    if (!u)
        return;
    u->on_disconnect = NULL;
    free(u->connect_path);
    u->connect_path = NULL; /* no reconnect from conn_close */
    conn_close(u, 0);
    if (u->listen_fd >= 0) {
        vhu_loop_del(u->loop, u->listen_fd);
        vhu_fd_close(&u->listen_fd);
    }
    if (u->timer_fd >= 0) {
        vhu_loop_del(u->loop, u->timer_fd);
        vhu_fd_close(&u->timer_fd);
    }
    vhu_sock_path_release(&u->own);
    free(u);
}

VHU_EXPORT bool vhu_unix_connected(const struct vhu_unix *u)
{
    return u->conn_fd >= 0;
}

VHU_EXPORT void vhu_unix_set_on_disconnect(struct vhu_unix *u, void (*cb)(void *opaque, int err),
                                           void *opaque)
{
    u->on_disconnect = cb;
    u->on_disconnect_opaque = opaque;
}
