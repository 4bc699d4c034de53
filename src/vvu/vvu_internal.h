/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Private to src/vvu: the VVU device object shared by its files:
 *   vvu_dev.c     lifecycle, the pcidev ops, BAR0 registers (common cfg, ISR, device cfg,
 *                 notify, notification cfg, doorbells), BAR1 (MSI-X), rxq/txq
 *   vvu_cfg.c     PCI config space: header, BAR sizing, capabilities, pci_cfg window
 *   vvu_relay.c   the frontend: socket, message checks and fd stripping, kicks and calls
 *   vvu_window.c  the shared-memory window (BAR2): the frontend's regions, one backing file
 * All of it runs on the device's loop thread.
 */
#ifndef VHU_VVU_INTERNAL_H
#define VHU_VVU_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/vhost_user.h"
#include "proto/vvu.h"
#include "vhu/loop.h"
#include "vhu/mem.h"
#include "vq/vq_core.h"
#include "vvu/pcidev.h"
#include "vvu/vvu_dev.h"

#define VVU_QUEUE_MAX_SIZE 256
#define VVU_VQ_MAX_SEGS 16
/* Memory slots the relay accepts (GET_MAX_MEM_SLOTS replies are capped to this). */
#define VVU_MAX_MEM_SLOTS 32

/* One of rxq/txq as the driver configures it through common cfg. */
struct vvu_queue {
    uint16_t size;
    uint16_t msix_vector;
    bool enabled;
    uint64_t desc, driver, device;
    struct vhu_vq *vq;      /* running when vhu_vq_started() */
};

/* A frontend region as it appears in the window: window offset == file offset. */
struct vvu_win_region {
    uint64_t gpa, size, uva;
    uint64_t off;                 /* mmap_offset: where it starts in the window */
    uint64_t map_off, map_len;    /* page-aligned extent, mapped in this process */
    struct vhu_mem_mapping map;
};

struct vvu_window {
    int fd;                       /* the one file behind every region; -1: none */
    dev_t st_dev;
    ino_t st_ino;
    unsigned n;
    struct vvu_win_region r[VVU_MAX_MEM_SLOTS];
};

struct vvu_dev;

/* A frontend vring's fds (kept by the device; the driver sees notifications and doorbells). */
struct vvu_vring {
    struct vvu_dev *d;
    unsigned index;
    int kick, call, err;
    uint16_t vector;              /* notification_msix_vector */
};

struct vvu_dev {
    struct vhu_loop *loop;
    struct vvu_dev_opts opts;
    char *socket_path;            /* our copy */
    struct vhu_pcidev pci;
    struct vvu_dev_stats stats;

    /* PCI config space and what of it the bus peer may write (vvu_cfg.c). */
    uint8_t cfg[VVU_CFG_SPACE_SIZE];
    uint8_t wmask[VVU_CFG_SPACE_SIZE];
    uint8_t pcicfg_cap;           /* offset of the pci_cfg (5) capability */
    uint8_t msix_cap;
    uint8_t *msix_table;          /* 16 bytes per vector */

    /* virtio common cfg */
    uint32_t dfselect, gfselect;
    uint64_t driver_features;
    uint16_t msix_config;
    uint8_t status;
    uint8_t generation;
    uint16_t queue_select;
    uint8_t isr;
    struct vvu_queue q[VVU_NUM_VQS];
    struct vhu_mem_table *dma;

    /* device cfg and notification cfg */
    uint32_t vstatus;             /* VVU_S_* */
    uint16_t notif_select;
    struct vvu_vring *vrings;     /* max_vhost_queues */

    /* frontend (vvu_relay.c) */
    bool serving;                 /* DRIVER_OK and BACKEND_UP */
    bool await_ack;               /* VVU_F_FRONTEND_ACK: a frontend went, the driver has not
                                     raised BACKEND_UP since: no new frontend yet */
    int listen_fd, fe_fd, timer_fd;
    bool listen_watched, unlink_path;
    struct vhu_msg *rx_msg;       /* the message being read, or held for want of a buffer */
    struct vhu_msg_rx rx;
    bool held;
    uint64_t proto_features;      /* what the frontend set (a subset of RELAYED) */
    bool proto_acked;             /* SET_PROTOCOL_FEATURES seen on this connection */
    uint8_t *txbuf;               /* VVU_MSG_MAX */
    struct vhu_msg *tx_msg;
    struct vvu_window win;
};

/* vvu_dev.c */
void vvu_irq(struct vvu_dev *d, uint16_t vector);
void vvu_config_irq(struct vvu_dev *d);
/* The mappable window or the doorbell fds changed: tell the bus adapter. */
void vvu_layout_changed(struct vvu_dev *d);
void vvu_set_frontend_up(struct vvu_dev *d, bool up);
/* Put a message (header, then hdr->size bytes of payload) in one rxq buffer: 1 delivered,
 * 0 no buffer (hold it), <0 rxq broken. */
int vvu_rxq_put(struct vvu_dev *d, const struct vhost_user_hdr *h, const void *payload);
void vvu_reset(struct vvu_dev *d, bool bus);
/* DRIVER_OK set and NEEDS_RESET not. */
bool vvu_driver_ok(const struct vvu_dev *d);

/* vvu_cfg.c */
void vvu_cfg_init(struct vvu_dev *d);
void vvu_cfg_reset(struct vvu_dev *d);
void vvu_cfg_read(void *dev, uint32_t off, void *buf, uint32_t len);
void vvu_cfg_write(void *dev, uint32_t off, const void *buf, uint32_t len);

/* vvu_relay.c */
int vvu_relay_init(struct vvu_dev *d);
void vvu_relay_fini(struct vvu_dev *d);
/* Serve (or stop serving) the frontend as DRIVER_OK and BACKEND_UP say. */
void vvu_relay_update(struct vvu_dev *d);
void vvu_relay_disconnect(struct vvu_dev *d, const char *why);
/* rxq got buffers: deliver the held message and read on. */
void vvu_relay_rx_ready(struct vvu_dev *d);
/* A reply from txq on its way to the frontend. */
void vvu_relay_reply(struct vvu_dev *d, uint8_t *msg, uint32_t len);
void vvu_relay_doorbell(struct vvu_dev *d, unsigned i);
int vvu_relay_io_fds(struct vvu_dev *d, struct vhu_pcidev_iofd *out, unsigned max);

/* vvu_window.c */
void vvu_window_init(struct vvu_window *w);
void vvu_window_clear(struct vvu_dev *d);
/* The regions of a SET_MEM_TABLE (replacing all) / an ADD_MEM_REG / a REM_MEM_REG. The fds stay
 * the caller's (the window keeps a dup). 0 or -errno with the reason logged. */
int vvu_window_set(struct vvu_dev *d, const struct vhost_user_memory_region *r, const int *fds,
                   unsigned n);
int vvu_window_add(struct vvu_dev *d, const struct vhost_user_memory_region *r, int fd);
void vvu_window_remove(struct vvu_dev *d, const struct vhost_user_memory_region *r);
int vvu_window_mmap(struct vvu_dev *d, uint64_t *file_off, struct vhu_pcidev_area *areas,
                    unsigned max, unsigned *n);
/* Host pointer for window [off, off + len), inside one region, or NULL. */
void *vvu_window_host(struct vvu_dev *d, uint64_t off, uint32_t len);

#endif
