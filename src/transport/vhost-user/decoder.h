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
#include "vhu/mem.h"
#include "vhu/notifier.h"

struct vhu_session;

/* What a vring notifier is for (SET_VRING_KICK / CALL / ERR). */
enum vhu_session_notifier_kind {
    VHU_SESSION_KICK,
    VHU_SESSION_CALL,
    VHU_SESSION_ERR,
};

/* How a session talks back to its frontend. */
struct vhu_session_transport_ops {
    const char *name;
    /* Send a reply (or, on the backend channel, a request). Returns 0 or -errno. An fd-less
     * transport is never asked to send fds. */
    int (*send)(void *conn, const struct vhu_msg *m);

    /*
     * Fd-less transports (virtio-vhost-user: the messages come without fds; the relay turned
     * them into resources the transport reaches by other means). Messages must then carry no
     * fds, those whose fd has no resource equivalent are refused, and the protocol features
     * offered are the backend's & fdless_protocol_mask (it must leave out every feature whose
     * messages need an fd: LOG_SHMFD, BACKEND_REQ, INFLIGHT_SHMFD, ...).
     */
    bool fdless;
    uint64_t fdless_protocol_mask;
    /* The mapped region for a SET_MEM_TABLE / ADD_MEM_REG region description: a `.host`
     * region (with a release hook if the window must be unmapped once the core lets go).
     * Returns 0 or -errno (logged by the transport). */
    int (*region)(void *conn, const struct vhost_user_memory_region *r,
                  struct vhu_mem_region **out);
    /* The notifier for vring q's kick source / call sink / error sink; nofd: the frontend sent
     * none (VHOST_USER_VRING_NOFD_MASK). *out = NULL: none (a NULL kick source: the ring is
     * polled, see vhu_session_poll()). Called on the control thread. Returns 0 or -errno. */
    int (*ring_notifier)(void *conn, enum vhu_session_notifier_kind kind, unsigned q, bool nofd,
                         struct vhu_notifier **out);
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
/* Serve the polled rings the control thread owns (an fd-less transport's rings without a kick
 * source); returns how many had work (vhu_core_poll()). */
unsigned vhu_session_poll(struct vhu_session *s);

#endif
