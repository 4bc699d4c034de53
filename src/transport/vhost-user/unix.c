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
#include "vhu/log.h"
#include "vhu/transport.h"
#include "vhu/util.h"

struct vhu_unix {
    struct vhu_backend *b;
    struct vhu_loop *loop;
    char *path;           /* set when we created the socket file (unlinked on free) */
    dev_t path_dev;       /* which file that was: another process's file at the same path */
    ino_t path_ino;       /*   (it replaced ours) is left alone */
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

static int make_addr(const char *path, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa->sun_path))
        return -ENAMETOOLONG;
    strcpy(sa->sun_path, path);
    return 0;
}

static int try_connect(struct vhu_unix *u)
{
    struct sockaddr_un sa;
    int fd, r = make_addr(u->connect_path, &sa);

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

/*
 * Make room for our socket at path. Nothing there: fine. A socket nobody answers on (connect is
 * refused: a killed run's leftover) is removed. Anything else is refused, never removed: a file
 * that is not a socket (--socket-path pointed at the wrong file), or a socket someone answers on
 * (another backend is serving it).
 */
static int clear_path(const char *path, const struct sockaddr_un *sa)
{
    struct stat st, again;
    int probe, r;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode)) {
        vhu_err("%s exists and is not a socket: refusing to replace it", path);
        return -EEXIST;
    }
    probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (probe < 0)
        return -errno;
    r = connect(probe, (const struct sockaddr *)sa, sizeof(*sa)) < 0 ? -errno : 0;
    close(probe);
    if (r == 0 || r == -EAGAIN) { /* accepted, or a full backlog: someone listens */
        vhu_err("%s is in use: another backend is listening on it", path);
        return -EADDRINUSE;
    }
    if (r != -ECONNREFUSED) {
        vhu_err("%s: cannot tell whether the socket there is stale (%s): leaving it", path,
                strerror(-r));
        return r;
    }
    /* Stale. Remove it only if it is still the file we probed. */
    if (lstat(path, &again) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (again.st_dev != st.st_dev || again.st_ino != st.st_ino)
        return -EADDRINUSE;
    vhu_info("%s: removing a stale socket", path);
    return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

static int listen_path(struct vhu_unix *u, const char *path)
{
    struct sockaddr_un sa;
    struct stat st;
    int fd, r = make_addr(path, &sa);

    if (r < 0)
        return r;
    r = clear_path(path, &sa);
    if (r < 0)
        return r;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        r = -errno;
        close(fd);
        if (r == -EADDRINUSE) /* someone took the path since we looked */
            vhu_err("%s is in use: another process created it first", path);
        return r;
    }
    /* Ours from here: remember which file it is, to remove only that one at exit. */
    if (lstat(path, &st) < 0 || listen(fd, 4) < 0)
        r = -errno;
    else if (!(u->path = strdup(path)))
        r = -ENOMEM;
    if (r < 0) {
        unlink(path);
        close(fd);
        return r;
    }
    u->path_dev = st.st_dev;
    u->path_ino = st.st_ino;
    u->listen_fd = fd;
    return 0;
}

/* Remove our socket file, if the file at the path is still the one we created. */
static void remove_own_socket(const struct vhu_unix *u)
{
    struct stat st;

    if (lstat(u->path, &st) < 0)
        return;
    if (!S_ISSOCK(st.st_mode) || st.st_dev != u->path_dev || st.st_ino != u->path_ino) {
        vhu_info("%s is another process's now: leaving it", u->path);
        return;
    }
    unlink(u->path);
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
        r = listen_path(u, opts->path);
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
    if (u->path) {
        remove_own_socket(u);
        free(u->path);
    }
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
