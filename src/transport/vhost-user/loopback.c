/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The in-process loopback transport: a frontend (struct vhu_fe) wired straight to a backend
 * session in the same thread, with no socket. Messages are handed over as structs; fds are
 * duplicated on the way, as SCM_RIGHTS would, so each side owns its copies. While the frontend
 * waits for a call it runs the backend's loop, which makes loopback tests deterministic.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "decoder.h"
#include "frontend/fe_msg.h"
#include "vhu/frontend.h"
#include "vhu/log.h"
#include "vhu/loopback.h"
#include "vhu/util.h"

struct vhu_loopback {
    struct vhu_backend *b;
    struct vhu_loop *loop;
    struct vhu_session *s;
    bool dead;
    bool has_reply;
    struct vhu_msg in;    /* what the backend receives */
    struct vhu_msg reply; /* what the backend answered */
};

/* Copy a message, duplicating its fds. On failure no new fd is left open. */
static int msg_copy(struct vhu_msg *dst, const struct vhu_msg *src)
{
    if (src->hdr.size > sizeof(dst->payload) || src->nfds > VHOST_USER_MAX_FDS)
        return -EMSGSIZE;
    dst->hdr = src->hdr;
    memcpy(&dst->payload, &src->payload, src->hdr.size);
    dst->nfds = 0;
    for (unsigned i = 0; i < src->nfds; i++) {
        int fd = fcntl(src->fds[i], F_DUPFD_CLOEXEC, 0);
        if (fd < 0) {
            int err = -errno;
            vhu_msg_close_fds(dst);
            return err;
        }
        dst->fds[dst->nfds++] = fd;
    }
    for (unsigned i = dst->nfds; i < VHOST_USER_MAX_FDS; i++)
        dst->fds[i] = -1;
    return 0;
}

static int be_send(void *conn, const struct vhu_msg *m)
{
    struct vhu_loopback *lb = conn;

    if (lb->has_reply)
        vhu_msg_close_fds(&lb->reply);
    lb->has_reply = true;
    return msg_copy(&lb->reply, m);
}

static const struct vhu_session_transport_ops loopback_session_ops = {
    .name = "loopback",
    .send = be_send,
};

static int fe_send(void *conn, const struct vhu_msg *m)
{
    struct vhu_loopback *lb = conn;
    int r;

    if (lb->dead)
        return -EPIPE;
    r = msg_copy(&lb->in, m);
    if (r < 0)
        return r;
    r = vhu_session_dispatch(lb->s, &lb->in);
    if (r < 0) {
        /* A real transport would close the socket here: the frontend sees the connection go. */
        vhu_session_end(lb->s);
        lb->s = NULL;
        lb->dead = true;
    }
    return 0;
}

static int fe_recv(void *conn, struct vhu_msg *m, int timeout_ms)
{
    struct vhu_loopback *lb = conn;

    (void)timeout_ms; /* the backend answered inside fe_send, or never will */
    if (!lb->has_reply)
        return lb->dead ? -ECONNRESET : -EAGAIN;
    *m = lb->reply;
    lb->has_reply = false;
    return 0;
}

static void fe_close(void *conn)
{
    struct vhu_loopback *lb = conn;

    if (lb->has_reply)
        vhu_msg_close_fds(&lb->reply);
    vhu_session_end(lb->s);
    free(lb);
}

static const struct vhu_fe_conn_ops loopback_fe_ops = {
    .send = fe_send,
    .recv = fe_recv,
    .close = fe_close,
};

static void run_backend(void *opaque)
{
    struct vhu_loopback *lb = opaque;

    vhu_loop_run_once(lb->loop, 0);
}

VHU_EXPORT int vhu_loopback_connect(struct vhu_backend *b, struct vhu_loop *loop,
                                    struct vhu_fe **out)
{
    struct vhu_loopback *lb = calloc(1, sizeof(*lb));
    int r;

    if (!lb)
        return -ENOMEM;
    lb->b = b;
    lb->loop = loop;
    r = vhu_session_new(b, &loopback_session_ops, lb, &lb->s);
    if (r < 0) {
        free(lb);
        return r;
    }
    r = vhu_fe_new(&loopback_fe_ops, lb, out);
    if (r < 0) {
        fe_close(lb);
        return r;
    }
    vhu_fe_set_poll_hook(*out, run_backend, lb);
    return 0;
}
