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

/* How the frontend reaches a backend. recv blocks for the next message from the backend. */
struct vhu_fe_conn_ops {
    int (*send)(void *conn, const struct vhu_msg *m);
    int (*recv)(void *conn, struct vhu_msg *m);
    void (*close)(void *conn);
};

int vhu_fe_new(const struct vhu_fe_conn_ops *ops, void *conn, struct vhu_fe **out);
/* Send a raw message and, if it expects one, read the reply (tests and fuzzers). */
int vhu_fe_raw(struct vhu_fe *fe, struct vhu_msg *m, struct vhu_msg *reply);

#endif
