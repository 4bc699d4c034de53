/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_BACKEND_INTERNAL_H
#define VHU_BACKEND_INTERNAL_H

/* The backend and device core's private state. No wire struct and no fd lives here: the core
 * sees notifiers, memory tables and typed calls only (vhu/core.h). */
#include "vhu/backend.h"
#include "vhu/core.h"
#include "vhu/mem.h"
#include "vhu/notifier.h"
#include "vq/vq_core.h"
#include "watch.h"

struct vhu_worker;
struct vhu_core_ring;

/* A worker thread as the backend sees it: the rings it owns, for busy-polling. Only the worker
 * thread itself reads or changes `owned` and `npolled` (through vhu_worker_call()). */
struct vhu_backend_worker {
    struct vhu_worker *w;
    struct vhu_core_ring *owned[256];
    unsigned nowned;
    unsigned npolled; /* owned rings without a kick source: the worker never sleeps */
};


/* Per-ring state the core keeps beside the ring itself. */
struct vhu_core_ring {
    struct vhu_core *c;
    struct vhu_vq *vq;
    struct vhu_backend_worker *bw; /* owner thread, or NULL: the control thread */
    struct vhu_loop *loop;         /* the owner's loop */
    struct vhu_dev_watches watches; /* the device's own fds on this ring's thread (watch.h) */
    uint16_t num;
    bool addr_set;
    struct vhu_ring_addr addr;
    uint32_t base;
    struct vhu_notifier *kick; /* NULL or not watchable: polled */
    struct vhu_notifier *call;
    struct vhu_notifier *err;
    bool started; /* until stop */
    bool enabled;
    bool watched; /* kick is watched in loop */
    bool polled;  /* started without a watchable kick source */
    bool tracks;  /* started with an inflight area */
    /* owner thread only, read racily by vhu_backend_get_queue_stats() */
    uint64_t kicks;     /* kick notifications handled */
    uint64_t poll_runs; /* a poller found work and ran the device */
};

struct vhu_backend {
    struct vhu_device *dev;
    struct vhu_loop *loop;
    struct vhu_core *core;
    struct vhu_backend_stats stats; /* kicks: of the cores already freed */
    struct vhu_queue_stats *qtotal; /* per queue: the counters of the cores already freed */
    unsigned nworkers;
    struct vhu_backend_worker *workers;
    bool workers_shared; /* borrowed from another backend (vhu_backend_share_workers) */
    /* Transport settings kept per backend (numbers only; the transport interprets them). */
    struct vhu_backend_transport_opts topts;
};

struct vhu_core {
    struct vhu_backend *b;
    struct vhu_device *dev;
    uint8_t status; /* atomic: a worker adds NEEDS_RESET */
    struct vhu_mem_table *mem;
    /* inflight region (borrowed from the transport): ifl_queues areas for rings of ifl_qsize */
    uint8_t *ifl_region;
    uint16_t ifl_queues;
    uint16_t ifl_qsize;
    size_t ifl_stride;   /* bytes per queue area */
    /* device-state area inside the region (state.c), NULL when the region has none */
    uint8_t *state_area;
    uint64_t state_seq;  /* sequence number of the newest slot written or loaded */
    unsigned state_slot; /* the slot holding it (0 or 1) */
    unsigned nrings;
    struct vhu_core_ring *rings;
    /* dirty log (borrowed from the transport), the LOG_ALL switch and the log notifier */
    uint8_t *log;
    uint64_t log_size;
    bool log_all;
    struct vhu_notifier *log_call;
    struct vhu_core_transport transport; /* the transport's services (config change...) */
};

/* state.c: the device-state area after the ring areas of the inflight region. */
size_t vhu_core_state_area_size(const struct vhu_device *dev);
void vhu_core_state_attach(struct vhu_core *c, uint8_t *area);
void vhu_core_state_save(struct vhu_core *c);

/* A core ends: its rings' counters go into the backend's totals (control thread, rings
 * stopped). */
void vhu_backend_core_done(struct vhu_backend *b, const struct vhu_core *c);

/* Called on the owner thread when a ring starts / stops (busy-poll bookkeeping). */
void vhu_backend_worker_own(struct vhu_core_ring *r);
void vhu_backend_worker_disown(struct vhu_core_ring *r);
bool vhu_backend_worker_is_current(const struct vhu_backend_worker *bw);

#endif
