/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_FRONTEND_H
#define VHU_FRONTEND_H

/*
 * The frontend library: the driver side of vhost-user, usable against any vhost-user backend
 * (vhud, DPDK, qemu-storage-daemon...). It negotiates, backs "guest" memory with a memfd it
 * shares with the backend, drives split or packed rings through struct vhu_vqd, kicks and waits
 * for calls. Calls are synchronous; one thread uses one struct vhu_fe.
 *
 * Addresses: guest physical address = offset in the memfd arena (+ VHU_FE_GPA_BASE); ring
 * addresses are sent as this process's virtual addresses, as QEMU does.
 */
#ifdef VHU_DEVICE_BUILD
#error "device models must not include frontend headers"
#endif
#ifdef VHU_CORE_BUILD
#error "the device core must not include frontend headers: transports call the core, not the other way"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vhu/vqd.h"
#include "vhu/vq.h"

#define VHU_FE_GPA_BASE 0x100000ULL

struct vhu_fe;

/* Connect to a backend listening on an AF_UNIX socket. */
int vhu_fe_connect(const char *path, struct vhu_fe **out);
/* Use an already connected AF_UNIX stream socket (e.g. accepted from a backend that connects,
 * or one end of a socketpair). The frontend owns fd from then on, even on failure. */
int vhu_fe_connect_fd(int fd, struct vhu_fe **out);
void vhu_fe_free(struct vhu_fe *fe);

/*
 * While waiting for a call, the frontend runs this hook (if set) instead of sleeping: the
 * in-process loopback uses it to run the backend's loop in the same thread.
 */
void vhu_fe_set_poll_hook(struct vhu_fe *fe, void (*hook)(void *opaque), void *opaque);

/*
 * Every request that expects a reply waits for it at most this long (default
 * VHU_FE_REPLY_TIMEOUT_MS; 0: as long as it takes), then fails with -ETIMEDOUT. After a timeout
 * the connection is out of step (a late reply would answer the wrong request): every later
 * request fails with -ENOTCONN; free the frontend and connect again.
 */
#define VHU_FE_REPLY_TIMEOUT_MS 5000
void vhu_fe_set_reply_timeout(struct vhu_fe *fe, unsigned timeout_ms);

struct vhu_fe_opts {
    uint64_t features;      /* virtio features wanted; the result is features & offered
                               (VIRTIO_F_IN_ORDER is always asked for) */
    uint16_t num_queues;    /* queues to start (<= GET_QUEUE_NUM when MQ is offered) */
    uint16_t queue_size;    /* ring size */
    bool packed;            /* ask for VIRTIO_F_RING_PACKED */
    bool event_idx;         /* ask for VIRTIO_RING_F_EVENT_IDX */
    bool indirect;          /* ask for VIRTIO_RING_F_INDIRECT_DESC (and use it) */
    size_t mem_size;        /* bytes of shared memory (rings + buffers) */
    unsigned mem_regions;   /* split the memory into this many regions (>= 1) */
    bool queue_pairs;       /* GET_QUEUE_NUM counts rx/tx pairs (vhost-user-net backends) */
    uint64_t protocol_features; /* protocol features to ask for on top of those the library
                                   uses itself (tests that drive more with vhu_fe_raw) */
    bool inflight;          /* INFLIGHT_SHMFD: get the backend's inflight buffer before the
                               queues start and keep it for vhu_fe_reconnect() */
};

/*
 * Everything up to running queues: GET_FEATURES, GET/SET_PROTOCOL_FEATURES, SET_OWNER,
 * GET_QUEUE_NUM, SET_FEATURES, SET_MEM_TABLE (or ADD_MEM_REG per region when
 * CONFIGURE_MEM_SLOTS is offered), then per queue NUM/ADDR/BASE/CALL/KICK/ENABLE, and last
 * SET_STATUS with DRIVER_OK when the STATUS protocol feature was negotiated.
 */
int vhu_fe_start(struct vhu_fe *fe, const struct vhu_fe_opts *opts);
/*
 * The backend is gone without a stop (a crash) and `from`, a frontend fresh from
 * vhu_fe_connect*() or vhu_loopback_connect(), is connected to its successor: fe takes that
 * connection (from is freed) and sets the successor up with its memory, rings, notifiers and
 * inflight buffer, the way QEMU reconnects. Requests in flight stay in flight: a backend with
 * inflight tracking completes them.
 */
int vhu_fe_reconnect(struct vhu_fe *fe, struct vhu_fe *from);
/* The inflight buffer's fd (borrowed; -1 without one) and its size. */
int vhu_fe_inflight_fd(const struct vhu_fe *fe, uint64_t *size);
/*
 * Dirty logging, the way QEMU drives it around a migration: SET_LOG_BASE with fd (a memfd of
 * size bytes, sealed against shrinking; the caller keeps it; -1: keep the current log), then
 * SET_FEATURES with or without VHOST_F_LOG_ALL, then every ring's addresses with or without
 * the log flag. Needs LOG_SHMFD (opts.protocol_features) and a backend offering LOG_ALL
 * (-ENOTSUP otherwise).
 */
int vhu_fe_set_log(struct vhu_fe *fe, int fd, uint64_t size, bool on);
/*
 * Device-state transfer (DEVICE_STATE; opts.protocol_features): save the backend's device state
 * into buf (returns its length; -ENOSPC when len is too small) or load a saved one into another
 * backend (-EIO when the backend refuses it). With the queues stopped (vhu_fe_stop()), as in a
 * migration.
 */
int vhu_fe_save_state(struct vhu_fe *fe, void *buf, size_t len);
int vhu_fe_load_state(struct vhu_fe *fe, const void *buf, size_t len);
/* Stop every queue (GET_VRING_BASE), keeping the connection. */
int vhu_fe_stop(struct vhu_fe *fe);

uint64_t vhu_fe_features(const struct vhu_fe *fe);          /* negotiated virtio features */
uint64_t vhu_fe_protocol_features(const struct vhu_fe *fe); /* negotiated protocol features */
uint64_t vhu_fe_backend_features(const struct vhu_fe *fe);  /* what the backend offered */
unsigned vhu_fe_num_queues(const struct vhu_fe *fe);

/* Bump allocator in the shared arena; returns a pointer, *gpa its guest physical address. */
void *vhu_fe_alloc(struct vhu_fe *fe, size_t size, size_t align, uint64_t *gpa);
/*
 * Data path and threads: between vhu_fe_start() and vhu_fe_stop(), vhu_fe_vqd(), vhu_fe_kick(),
 * vhu_fe_wait() and vhu_fe_request() touch only queue q's own state, so different queues may be
 * driven from different threads (one thread per queue; a queue and its vqd belong to one
 * thread). Everything else (start, stop, alloc, config, status, raw) stays on one thread and
 * must not run concurrently with the data path.
 */
struct vhu_vqd *vhu_fe_vqd(struct vhu_fe *fe, unsigned q);
/* Publish and kick if the backend wants one. */
int vhu_fe_kick(struct vhu_fe *fe, unsigned q);
/* Wait until the backend signals q's call fd or timeout_ms passes (-ETIMEDOUT). */
int vhu_fe_wait(struct vhu_fe *fe, unsigned q, int timeout_ms);
/* Notifications on queue q so far: kicks sent (vhu_fe_kick() calls that wrote the kick fd) and
 * calls received (the call fd's count, summed each time vhu_fe_wait() drains it). Read it on
 * the queue's thread or after that thread is done. 0, or -EINVAL for q out of range. */
struct vhu_fe_queue_stats {
    uint64_t kicks;
    uint64_t calls;
};
int vhu_fe_queue_stats(const struct vhu_fe *fe, unsigned q, struct vhu_fe_queue_stats *st);
/* Submit a chain, kick, wait for it to complete; returns the written length or -errno. */
int vhu_fe_request(struct vhu_fe *fe, unsigned q, const struct vhu_vqd_seg *segs, unsigned n_out,
                   unsigned n_in, int timeout_ms);

int vhu_fe_get_config(struct vhu_fe *fe, uint32_t off, void *buf, uint32_t len);
int vhu_fe_set_config(struct vhu_fe *fe, uint32_t off, const void *buf, uint32_t len);
int vhu_fe_get_status(struct vhu_fe *fe, uint8_t *status);
int vhu_fe_set_status(struct vhu_fe *fe, uint8_t status);
int vhu_fe_reset_device(struct vhu_fe *fe);

#endif
