/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_FRONTEND_FE_MSG_H
#define VHU_FRONTEND_FE_MSG_H

/*
 * The frontend library at the message level, for vhu's own transports and tests (the wire
 * header, src/proto/vhost_user.h, is not installed): a frontend over any message carrier, and
 * raw messages.
 */
#include "proto/vhost_user.h"
#include "vhu/frontend.h"

/* How the frontend reaches a backend. recv waits for the next message from the backend, at
 * most timeout_ms (< 0: no limit; -ETIMEDOUT). */
struct vhu_fe_conn_ops {
    int (*send)(void *conn, const struct vhu_msg *m);
    int (*recv)(void *conn, struct vhu_msg *m, int timeout_ms);
    void (*close)(void *conn);
};

int vhu_fe_new(const struct vhu_fe_conn_ops *ops, void *conn, struct vhu_fe **out);
/* Send a raw message and, if it expects one, read the reply (tests and fuzzers). A reply may
 * carry an fd only for GET_INFLIGHT_FD (one, then the caller's); any other fd is closed and the
 * reply refused with -EPROTO. */
int vhu_fe_raw(struct vhu_fe *fe, struct vhu_msg *m, struct vhu_msg *reply);

#endif
