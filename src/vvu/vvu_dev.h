/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_VVU_DEV_H
#define VHU_VVU_DEV_H

/*
 * The virtio-vhost-user device model: a PCI function (struct vhu_pcidev, vvu/pcidev.h) with the
 * register layout of proto/vvu.h, relaying one frontend's vhost-user session at a time to the
 * driver behind the bus (rxq: frontend messages, txq: the driver's replies; memory through the
 * shared-memory BAR, kicks as notification vectors, calls as doorbells).
 *
 * Threads: everything (the pcidev ops, the frontend socket, kick fds, the reconnect timer) runs
 * on the one loop given to vvu_dev_new().
 */
#include <stdbool.h>
#include <stdint.h>

#include "vhu/loop.h"
#include "vvu/pcidev.h"

struct vvu_dev;

struct vvu_dev_opts {
    uint16_t pci_device_id;     /* VVU_PCI_DEVICE_ID */
    uint16_t virtio_id;         /* VVU_VIRTIO_DEVICE_ID (the PCI subsystem id) */
    unsigned max_vhost_queues;  /* 1..VVU_MAX_VHOST_QUEUES: doorbells, notifications, vrings */
    uint64_t shm_size;          /* BAR2 size: a power of two >= 4096 */
    uint8_t uuid[16];
    /* The frontend: a path to listen on (or to connect to with client), or socket_fd >= 0, a
     * listening AF_UNIX stream socket the caller keeps (the device uses a dup of it). */
    const char *socket_path;
    int socket_fd;
    bool client;                /* connect to socket_path instead of listening */
    unsigned reconnect_ms;      /* client: retry this often (0: one try per session start) */
};

/* IDs from vvu.h, 64 queues, shm 1 GiB, a random uuid, no socket (socket_fd -1). */
void vvu_dev_opts_default(struct vvu_dev_opts *o);

/* A listening socket is bound at once (so frontends may connect early; they are accepted once
 * the driver is up); a client connects only while the driver is up. */
int vvu_dev_new(struct vhu_loop *loop, const struct vvu_dev_opts *o, struct vvu_dev **out);
/* The PCI function to hand to a bus adapter (valid until vvu_dev_free). */
struct vhu_pcidev *vvu_dev_pci(struct vvu_dev *d);

struct vvu_dev_stats {
    uint64_t msgs_to_driver;       /* frontend messages put on rxq */
    uint64_t msgs_to_frontend;     /* replies from txq sent to the frontend */
    uint64_t dropped_backend_reqs; /* txq messages without the REPLY flag (no backend channel) */
    uint64_t bad_accesses;         /* register accesses and txq messages refused as invalid */
    uint64_t frontend_sessions;    /* frontends connected so far */
    uint64_t kicks_relayed;        /* frontend kicks seen (raised as notifications) */
};
void vvu_dev_stats(const struct vvu_dev *d, struct vvu_dev_stats *s);

/* Disconnects the frontend, closes every fd, removes the socket path it bound. */
void vvu_dev_free(struct vvu_dev *d);

#endif
