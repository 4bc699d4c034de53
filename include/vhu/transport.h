/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_TRANSPORT_H
#define VHU_TRANSPORT_H

/*
 * Transports carry a backend's sessions. vhost-user over AF_UNIX: the backend listens (server,
 * the default; QEMU connects) or connects (client, with reconnect; QEMU listens with server=on),
 * or serves an already connected/listening fd (--fd). One frontend at a time: a connection that
 * arrives while a session is up is refused and closed.
 */
#ifdef VHU_DEVICE_BUILD
#error "device models must not include transport headers"
#endif
#ifdef VHU_CORE_BUILD
#error "the device core must not include transport headers: transports call the core, not the other way"
#endif

#include <stdbool.h>

#include "vhu/backend.h"
#include "vhu/loop.h"

struct vhu_unix;

/*
 * vhost-user protocol features a backend offers: by default every one the decoder implements
 * for this device (RARP and NET_MTU only for devices with those ops). Limit the offer to
 * default & mask before a frontend connects (-EBUSY after).
 */
uint64_t vhu_backend_protocol_features(const struct vhu_backend *b);
int vhu_backend_limit_protocol_features(struct vhu_backend *b, uint64_t mask);

struct vhu_unix_opts {
    const char *path;        /* socket path (server: created, removed on free) */
    int fd;                  /* or an fd: a listening socket, or a connected one; -1 if unused */
    bool client;             /* connect to path instead of listening */
    unsigned reconnect_ms;   /* client: retry period after a failed connect or a disconnect
                                (0: do not reconnect) */
};

int vhu_unix_new(struct vhu_backend *b, struct vhu_loop *loop, const struct vhu_unix_opts *opts,
                 struct vhu_unix **out);
/* Ends any session, closes the sockets, unlinks the path it created. */
void vhu_unix_free(struct vhu_unix *u);
/* True while a frontend is connected. */
bool vhu_unix_connected(const struct vhu_unix *u);
/* Called when a session ends (err = 0: clean disconnect, -errno: protocol error). */
void vhu_unix_set_on_disconnect(struct vhu_unix *u, void (*cb)(void *opaque, int err),
                                void *opaque);

#endif
