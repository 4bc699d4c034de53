/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_TRANSPORT_VVU_DRIVER_INTERNAL_H
#define VHU_TRANSPORT_VVU_DRIVER_INTERNAL_H

/*
 * The virtio-vhost-user driver's state, shared by driver.c (sessions, rings, resources) and
 * init.c (capabilities, device bring-up). One object per device, used on the loop's thread.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/vvu.h"
#include "transport/vvu/pci.h"
#include "vhu/backend.h"
#include "vhu/loop.h"
#include "vhu/transport.h"
#include "vhu/vqd.h"

struct vhu_session;

/* Buffers per rxq/txq (fewer if the device offers smaller rings). Control traffic only: a
 * frontend has at most one request without a reply in flight, plus the replies it gets. */
#define VVU_DRV_QUEUE_SIZE 64u
/* Interrupt vectors before the vrings' notifications (vvu.h: config, rxq, txq). */
#define VVU_DRV_VEC_CONFIG 0u
#define VVU_DRV_VEC_RXQ 1u
#define VVU_DRV_VEC_TXQ 2u
#define VVU_DRV_VEC_VRING0 3u

/* A register window a capability describes: BAR `bar`, [off, off + len). */
struct vvu_win {
    uint8_t bar;
    uint64_t off;
    uint64_t len;
    uint32_t mult; /* notify / doorbell: bytes between consecutive registers */
};

struct vvu_queue {
    struct vhu_vqd *vqd;
    uint16_t num;
    uint64_t notify_off;   /* in the notify window */
    uint8_t *bufs;         /* num buffers of VVU_MSG_MAX bytes, in DMA memory */
    uint64_t bufs_iova;
};

/* A doorbell sink (vring i's call when the bus has no io fd): see doorbell_ring(). */
struct vvu_doorbell {
    struct vhu_vvu *v;
    uint64_t off;          /* in the doorbell window */
};

struct vhu_vvu {
    struct vhu_backend *b;
    struct vhu_loop *loop;
    struct vhu_pci *pci;
    int io_err;            /* first failed register access of the current step (sticky) */

    /* the device's layout, from its capabilities */
    struct vvu_win common, isr, devcfg, notify, doorbell, notification, shm;
    unsigned msix_cap;     /* config offset of the MSI-X capability, 0: none */
    unsigned msix_size;    /* its table size */
    uint32_t max_vhost_queues;
    unsigned nvrings;      /* vrings the backend's device can use: min(queues, max) */

    /* interrupts: vectors [0, nirq) as eventfds; nirq == 0: polled */
    int *irq_fds;
    unsigned nirq;
    unsigned irq_watched;  /* vectors [0, irq_watched) are on the loop */
    int timer_fd;          /* polling tick (no interrupts, or rings without a kick source) */
    bool ticking;
    uint64_t ticks;        /* since the last full look at the status */

    /* DMA memory: both rings, then the rx buffers, then the tx buffers */
    void *dma;
    uint64_t dma_iova;
    size_t dma_len;
    struct vvu_queue rxq, txq;
    uint16_t *tx_free;     /* stack of free tx buffer indexes */
    unsigned ntx_free;
    struct vvu_doorbell *doorbells; /* nvrings */

    /* session */
    bool dead;             /* the device could not be (re)initialised: nothing is served */
    unsigned bad_streak;   /* device errors since the last good message */
    bool frontend_ack;     /* VVU_F_FRONTEND_ACK negotiated (vvu.h) */
    bool start_failed;     /* a session could not start for this frontend (logged once) */
    bool polled_rings;     /* the session has rings without a kick source */
    uint8_t cfg_gen;
    struct vhu_session *session;
    unsigned mapped;       /* shared-memory windows mapped for the session's regions */
    struct vhu_msg msg;    /* the message being dispatched (large: not on the stack) */
    struct vhu_vvu_stats stats;
};

/* ---- init.c ---- */
/* Walk and check the capability list; fills the windows and MSI-X fields. */
int vvu_caps_parse(struct vhu_vvu *v);
/* The DMA memory for both rings and their buffers. */
int vvu_dma_setup(struct vhu_vvu *v);
/* Reset the device and bring it up: features, rxq/txq, vectors, DRIVER_OK, rx buffers posted,
 * BACKEND_UP. Leaves the device reset on failure. */
int vvu_device_init(struct vhu_vvu *v);
/* Device reset (status 0), waiting for the device to acknowledge. */
void vvu_device_reset(struct vhu_vvu *v);
/* Interrupts: try MSI-X (nirq set, irq_fds filled) or leave polled mode. */
void vvu_irqs_setup(struct vhu_vvu *v);

/* Register accesses in a window; a failure (or an access outside the window) is remembered in
 * v->io_err and reads as all-ones. */
uint32_t vvu_rd(struct vhu_vvu *v, const struct vvu_win *w, uint64_t off, unsigned size);
int vvu_wr(struct vhu_vvu *v, const struct vvu_win *w, uint64_t off, unsigned size,
           uint32_t val);
int vvu_notify_queue(struct vhu_vvu *v, unsigned q);
int vvu_rx_post(struct vhu_vvu *v, unsigned i);
void vvu_set_backend_up(struct vhu_vvu *v, bool up);

#endif
