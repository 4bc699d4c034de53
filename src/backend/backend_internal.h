/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_BACKEND_INTERNAL_H
#define VHU_BACKEND_INTERNAL_H

#include "proto/vhost_user.h"
#include "vhu/backend.h"
#include "vhu/mem.h"

struct vhu_worker;
struct vhu_session_vq;

/* A worker thread as the backend sees it: the queues it owns, for busy-polling. Only the worker
 * thread itself reads or changes `owned` (through vhu_worker_call()). */
struct vhu_backend_worker {
    struct vhu_worker *w;
    struct vhu_session_vq *owned[256];
    unsigned nowned;
};

/* A device's fd watch (vhu_dev_watch). */
struct vhu_session_watch {
    int fd;
    void (*cb)(void *opaque);
    void *opaque;
};
#define VHU_SESSION_VQ_WATCHES 4

/* Per-queue state the session keeps beside the ring itself. */
struct vhu_session_vq {
    struct vhu_session *s;
    struct vhu_vq *vq;
    struct vhu_backend_worker *bw; /* owner thread, or NULL: the control thread */
    struct vhu_loop *loop;         /* the owner's loop */
    struct vhu_session_watch watches[VHU_SESSION_VQ_WATCHES];
    bool want_enabled;
    uint16_t num;
    bool addr_set;
    struct vhost_vring_addr addr;
    uint32_t base;
    int kick_fd;
    int call_fd;
    int err_fd;
    bool kick_nofd; /* the frontend polls instead of kicking */
    bool started;   /* SET_VRING_KICK received, until GET_VRING_BASE */
    bool enabled;   /* SET_VRING_ENABLE 1 (or no protocol features) */
    bool watched;   /* kick_fd is in the loop */
};

struct vhu_backend {
    struct vhu_device *dev;
    struct vhu_loop *loop;
    struct vhu_session *session;
    uint64_t protocol_features; /* offered */
    struct vhu_backend_stats stats;
    unsigned nworkers;
    unsigned poll_us;
    struct vhu_backend_worker *workers;
    bool workers_shared; /* borrowed from another backend (vhu_backend_share_workers) */
};

/* Called on the owner thread when a ring starts / stops (busy-poll bookkeeping). */
void vhu_backend_worker_own(struct vhu_session_vq *svq);
void vhu_backend_worker_disown(struct vhu_session_vq *svq);

struct vhu_session {
    struct vhu_backend *b;
    struct vhu_device *dev;
    const struct vhu_session_transport_ops *ops;
    void *conn;
    uint64_t features;          /* acked virtio features */
    uint64_t protocol_features; /* acked protocol features */
    bool protocol_features_acked; /* SET_PROTOCOL_FEATURES seen */
    bool features_set;
    bool owner;
    uint8_t status;
    struct vhu_mem_table *mem;
    int backend_req_fd;
    /* inflight buffer (GET/SET_INFLIGHT_FD): one region per queue, sized for ifl_qsize */
    uint8_t *ifl_map;
    size_t ifl_size;
    uint16_t ifl_queues;
    uint16_t ifl_qsize;
    unsigned nvqs;
    struct vhu_session_vq *vqs;
    struct vhu_msg reply;
};

#endif
