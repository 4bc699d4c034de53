/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_TRANSPORT_VHOST_USER_DECODER_H
#define VHU_TRANSPORT_VHOST_USER_DECODER_H

/*
 * The vhost-user decoder: one frontend connection's protocol state (a "session") over one device
 * core. A vhost-user transport (AF_UNIX, the in-process loopback; virtio-vhost-user's rxq/txq
 * later) reads messages and feeds them here; the decoder validates each against the message
 * table, turns fds into memory mappings and notifiers, makes the typed core calls, and answers
 * through the transport's send op.
 */
#ifdef VHU_CORE_BUILD
#error "the device core must not include transport headers: transports call the core, not the other way"
#endif
#include "proto/vhost_user.h"
#include "vhu/backend.h"

struct vhu_session;

/* How a session talks back to its frontend. */
struct vhu_session_transport_ops {
    const char *name;
    /* Send a reply (or, on the backend channel, a request). Returns 0 or -errno. */
    int (*send)(void *conn, const struct vhu_msg *m);
};

/*
 * A transport creates a session when a frontend connects, feeds it every message with
 * vhu_session_dispatch(), and ends it on disconnect or when dispatch fails (the connection must
 * then be closed). One session per backend at a time (-EBUSY).
 */
int vhu_session_new(struct vhu_backend *b, const struct vhu_session_transport_ops *ops, void *conn,
                    struct vhu_session **out);
void vhu_session_end(struct vhu_session *s);
/*
 * Validate and handle one message; the session takes every fd of m (closing what it does not
 * keep). Returns 0, or -errno when the connection must be dropped (the reason was logged).
 */
int vhu_session_dispatch(struct vhu_session *s, struct vhu_msg *m);

#endif
