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

/*
 * virtio-vhost-user (VVU): the backend side. The backend is served through a VVU PCI device
 * instead of a socket: the frontend's messages arrive on the device's rxq (without fds: memory
 * is in the device's shared-memory BAR, kicks are interrupt vectors or polled, calls are
 * doorbell registers) and replies go out on its txq. One frontend session at a time; when the
 * device reports the frontend gone the session ends and the next one is served.
 *
 * spec: "vfio-user:PATH" (a `vhud vvu --vfio-user PATH` device) or "pci:DDDD:BB:DD.F" (the
 * device as seen from Linux userspace inside a VM: sysfs, no interrupts, polled).
 */
struct vhu_vvu;
struct vhu_pci;

int vhu_vvu_new(struct vhu_backend *b, struct vhu_loop *loop, const char *spec,
                struct vhu_vvu **out);
/* Same over an opened device (src/transport/vvu/pci.h); takes pci, also on failure. */
int vhu_vvu_new_pci(struct vhu_backend *b, struct vhu_loop *loop, struct vhu_pci *pci,
                    struct vhu_vvu **out);
/* Ends the session, resets the device (the device drops its frontend) and releases it. */
void vhu_vvu_free(struct vhu_vvu *v);
/* True while a frontend session is served. */
bool vhu_vvu_frontend_up(const struct vhu_vvu *v);

struct vhu_vvu_stats {
    uint64_t sessions;        /* frontend sessions started */
    uint64_t messages;        /* rxq messages dispatched */
    uint64_t dropped;         /* rxq messages that arrived with no session to take them */
    uint64_t frontend_errors; /* sessions ended by a bad frontend message */
    uint64_t device_errors;   /* device resets after the device broke the contract */
    bool polled;              /* no interrupts: rxq, txq and status are polled */
};
void vhu_vvu_get_stats(const struct vhu_vvu *v, struct vhu_vvu_stats *st);

#endif
