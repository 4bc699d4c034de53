/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fe_pump.h"
#include "frontend/fe_msg.h"
#include "vhu/util.h"

struct pump_conn {
    int fd;
    void (*pump)(void *opaque);
    void *opaque;
};

static int pc_send(void *conn, const struct vhu_msg *m)
{
    return vhu_msg_send(((struct pump_conn *)conn)->fd, m);
}

/* Once the reply has started to arrive it is read whole (the backend wrote it in one go). */
static int pc_recv(void *conn, struct vhu_msg *m, int timeout_ms)
{
    struct pump_conn *c = conn;
    uint64_t end = vhu_now_ns() + (uint64_t)(timeout_ms < 0 ? 5000 : timeout_ms) * 1000000ull;

    while (vhu_now_ns() < end) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, 0) == 1)
            return vhu_msg_recv_timeout(c->fd, m, 1000);
        c->pump(c->opaque);
    }
    return -ETIMEDOUT;
}

static void pc_close(void *conn)
{
    struct pump_conn *c = conn;

    vhu_fd_close(&c->fd);
    free(c);
}

static const struct vhu_fe_conn_ops pump_conn_ops = {pc_send, pc_recv, pc_close};

int vhu_test_fe_pump_connect(const char *path, void (*pump)(void *opaque), void *opaque,
                             struct vhu_fe **out, int *fd)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct pump_conn *c = calloc(1, sizeof(*c));
    int r;

    if (!c)
        return -ENOMEM;
    c->pump = pump;
    c->opaque = opaque;
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    r = c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
    if (r < 0) {
        pc_close(c);
        return r;
    }
    if (fd)
        *fd = c->fd;
    r = vhu_fe_new(&pump_conn_ops, c, out);
    if (r < 0) {
        pc_close(c);
        return r;
    }
    vhu_fe_set_poll_hook(*out, pump, opaque);
    return 0;
}
