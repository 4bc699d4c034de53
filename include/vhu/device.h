/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_DEVICE_H
#define VHU_DEVICE_H

/*
 * The device API: what a device model implements, and all it may see. A device model includes
 * only this header, vhu/vq.h, vhu/virtio.h, vhu/util.h and vhu/log.h; it never sees a transport
 * or the vhost-user protocol (the build compiles devices with VHU_DEVICE_BUILD, which turns
 * those headers into errors). The same device runs over every transport.
 */
#include <stddef.h>
#include <stdint.h>

#include "vhu/vq.h"

struct vhu_device;

/* Largest config space a device may declare (the vhost-user GET_CONFIG limit). */
#define VHU_CONFIG_MAX_SIZE 256

/* Called by the core, never concurrently for one device, except queue_notify, which runs on the
 * thread owning that queue. Return -errno on failure. */
struct vhu_device_ops {
    /* The driver accepted these features (subset of vhu_device.features). */
    int (*set_features)(struct vhu_device *dev, uint64_t features);
    /* Read len bytes of config space at off (bounds already checked against config_size). */
    int (*get_config)(struct vhu_device *dev, void *buf, uint32_t off, uint32_t len);
    /* Driver write to config space; NULL = config space is read-only (writes refused). */
    int (*set_config)(struct vhu_device *dev, const void *buf, uint32_t off, uint32_t len);
    /* A queue is about to run / has stopped (optional). */
    int (*queue_start)(struct vhu_device *dev, struct vhu_vq *vq);
    void (*queue_stop)(struct vhu_device *dev, struct vhu_vq *vq);
    /* The driver made buffers available on vq: pop, process, push, flush. */
    void (*queue_notify)(struct vhu_device *dev, struct vhu_vq *vq);
    /* Back to the initial state (device reset, frontend disconnect). */
    void (*reset)(struct vhu_device *dev);
    /* Free everything (optional). */
    void (*destroy)(struct vhu_device *dev);
    /* Queues that must share a thread return the same group (optional; default: the queue
     * index). A worker owns group % nworkers. net: q / 2, so a pair's rx and tx stay together. */
    unsigned (*queue_group)(struct vhu_device *dev, unsigned q);
    /* Optional (net). The frontend asks the device to announce the guest's MAC on the network
     * (SEND_RARP, after a migration, for guests without GUEST_ANNOUNCE). Runs on the control
     * thread: the device hands the work to the thread owning the queue it uses. The core offers
     * the protocol feature RARP only to devices that set this op. */
    int (*announce)(struct vhu_device *dev, const uint8_t mac[6]);
    /* Optional (net). The MTU the frontend advises the guest (NET_SET_MTU, any u64 value):
     * -EINVAL if the device cannot carry it. The core offers the protocol feature NET_MTU only to
     * devices that set this op. */
    int (*set_mtu)(struct vhu_device *dev, uint64_t mtu);
    /*
     * Optional: device state that must outlive the process (what the guest set, or what the
     * device chose and the guest has seen), at most vhu_device.state_size bytes, in a format the
     * device owns and versions. The core keeps it where the transport can hand it to a successor
     * (vhost-user: inside the inflight buffer, docs/recovery.md) and saves it after every change
     * the guest makes through the core (a config write); a successor loads it before the rings
     * start. state_save writes at most len bytes and returns how many (or -errno); state_load
     * gets exactly what a save wrote, from memory another party could have written: it checks
     * every value and returns -EINVAL, changing nothing, for anything it would not accept.
     * Both run on the control thread.
     */
    int (*state_save)(struct vhu_device *dev, void *buf, size_t len);
    int (*state_load)(struct vhu_device *dev, const void *buf, size_t len);
};

/*
 * A device instance. The device model fills this in (usually embedded at the head of its own
 * state) and hands it to a backend. All fields are read by the core after creation.
 */
struct vhu_device {
    const struct vhu_device_ops *ops;
    const char *name;         /* "rng", "blk", ... (for logs and --print-capabilities) */
    uint32_t virtio_id;       /* VHU_VIRTIO_ID_* */
    uint64_t features;        /* virtio feature bits offered, ring features included */
    uint16_t num_queues;      /* queues the device supports */
    uint16_t queue_num_reply; /* GET_QUEUE_NUM answer if not num_queues (net: queue pairs) */
    uint16_t max_queue_size;  /* largest ring accepted (<= VHU_VQ_MAX_SIZE) */
    uint32_t config_size;     /* bytes of config space (0: none; <= VHU_CONFIG_MAX_SIZE) */
    size_t elem_size;         /* size of the request struct embedding struct vhu_vq_elem */
    unsigned max_segs;        /* segments one request may have */
    uint64_t acked_features;  /* written by the core before set_features() */
    size_t state_size;        /* largest state_save() (0: no state; <= VHU_DEVICE_STATE_MAX) */
};

/* Largest device state the core keeps for a device. */
#define VHU_DEVICE_STATE_MAX 4096

/*
 * Services the core gives a device, callable only on the thread that owns vq (inside
 * queue_start, queue_notify, or a watch callback of that queue). A device with asynchronous
 * completions (io_uring, a tap fd) watches its completion fd here, so the completion runs on
 * the queue's owner thread and can push/flush without locks. Watches are removed by the device
 * in queue_stop at the latest.
 */
typedef void vhu_dev_watch_fn(void *opaque);
int vhu_dev_watch(struct vhu_vq *vq, int fd, vhu_dev_watch_fn *cb, void *opaque);
void vhu_dev_unwatch(struct vhu_vq *vq, int fd);

#endif
