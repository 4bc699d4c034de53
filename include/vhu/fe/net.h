/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_FE_NET_H
#define VHU_FE_NET_H

/*
 * virtio-net driver (VIRTIO 1.3 §5.1) over the frontend library: a transmit queue and a receive
 * queue object per queue pair k (queue 2k receives, 2k+1 transmits) of a started struct vhu_fe.
 * Every frame carries the 12-byte virtio-net header of VIRTIO_F_VERSION_1.
 *
 * Buffers are carved out of the shared arena once, at queue creation: transmit buffers are
 * handed out (vhu_fe_net_tx_buf), filled in place and sent without a copy, and keep their bytes
 * between uses; receive buffers are posted at creation and again once a frame was delivered.
 * With VIRTIO_NET_F_MRG_RXBUF a received frame may span num_buffers buffers. What the backend
 * returns is checked: bad ids and lengths in the used ring break the queue (-EPROTO), and so do
 * a header shorter than 12 bytes or an impossible num_buffers; frames with a bad length or
 * offload flags nobody negotiated are delivered flagged. Nothing on the data path allocates or
 * logs. A queue object belongs to one thread. Functions return >= 0 or -errno.
 */
#ifdef VHU_DEVICE_BUILD
#error "device models must not include frontend headers"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vhu/frontend.h"

#define VHU_FE_NET_HDR_LEN 12u
#define VHU_FE_NET_ETH_HLEN 14u
#define VHU_FE_NET_DEFAULT_MTU 1500u

struct vhu_virtio_net_hdr_v1; /* vhu/dev/net.h */

/* Negotiated features and the config space (when the backend has one: DPDK does not). */
struct vhu_fe_net_info {
    uint64_t features;
    bool mrg_rxbuf;       /* VIRTIO_NET_F_MRG_RXBUF negotiated */
    bool has_config;      /* GET_CONFIG answered */
    bool link_down;       /* VIRTIO_NET_F_STATUS negotiated and the link reported down */
    uint8_t mac[6];       /* config mac (zero without a config space) */
    uint16_t max_pairs;   /* config max_virtqueue_pairs */
    uint16_t mtu;         /* config mtu with VIRTIO_NET_F_MTU (>= 68), else 1500 */
    uint32_t max_frame;   /* mtu + 14: the largest frame accepted on receive */
};

/* The virtio-net feature bits this driver understands: MTU, MAC, STATUS, MQ, MRG_RXBUF. */
uint64_t vhu_fe_net_features(void);
/* -ENOTSUP when VIRTIO_F_VERSION_1 was not negotiated (the 12-byte header is all we speak). */
int vhu_fe_net_get_info(struct vhu_fe *fe, struct vhu_fe_net_info *info);
/* Arena bytes n buffers of len bytes take (for vhu_fe_opts.mem_size). */
size_t vhu_fe_net_bufs_mem(unsigned n, uint32_t len);

/* A transmit buffer: data is the virtio-net header, then room for cap frame bytes. */
struct vhu_fe_net_buf {
    uint8_t *data;
    uint64_t gpa;
    uint32_t cap;
};

struct vhu_fe_net_txq;
struct vhu_fe_net_rxq;

/* Transmit queue of pair: nbufs buffers (0: the ring size) of frame_cap frame bytes each;
 * their headers start zeroed (no offloads). */
int vhu_fe_net_txq_new(struct vhu_fe *fe, unsigned pair, unsigned nbufs, uint32_t frame_cap,
                       struct vhu_fe_net_txq **out);
void vhu_fe_net_txq_free(struct vhu_fe_net_txq *t);
/* A free buffer (its bytes as last written), or NULL when all are in flight. */
struct vhu_fe_net_buf *vhu_fe_net_tx_buf(struct vhu_fe_net_txq *t);
/* Give back a buffer that will not be sent. */
void vhu_fe_net_tx_release(struct vhu_fe_net_txq *t, struct vhu_fe_net_buf *b);
/* Queue the header and len frame bytes of b (hdr NULL: leave the header in b as it is). 0, or
 * -ENOSPC (the ring is full: b stays the caller's), -EINVAL (len > cap), -EIO (broken). */
int vhu_fe_net_tx_send(struct vhu_fe_net_txq *t, struct vhu_fe_net_buf *b, uint32_t len,
                       const struct vhu_virtio_net_hdr_v1 *hdr);
int vhu_fe_net_tx_kick(struct vhu_fe_net_txq *t);
/* Take back the buffers the backend consumed: how many, or -EPROTO (the ring is broken). */
int vhu_fe_net_tx_reclaim(struct vhu_fe_net_txq *t);
unsigned vhu_fe_net_tx_free_bufs(const struct vhu_fe_net_txq *t);
/* Event mode: as vhu_fe_blk_wait(). */
int vhu_fe_net_txq_wait(struct vhu_fe_net_txq *t, int timeout_ms);
bool vhu_fe_net_txq_broken(const struct vhu_fe_net_txq *t);

/* One received frame, as handed to the poll callback: valid during the callback only. */
struct vhu_fe_net_rx_seg {
    const uint8_t *data;
    uint32_t len;
};

#define VHU_FE_NET_RX_BAD_LEN 1u /* frame shorter than 14 bytes or longer than max_frame */
#define VHU_FE_NET_RX_BAD_HDR 2u /* offload flags / gso_type set, or num_buffers > 1 without
                                    MRG_RXBUF: nothing of that was negotiated */

struct vhu_fe_net_rx_frame {
    const struct vhu_virtio_net_hdr_v1 *hdr; /* as the device wrote it */
    const struct vhu_fe_net_rx_seg *segs; /* the frame's bytes, header excluded */
    unsigned nsegs;
    uint32_t len;                        /* frame bytes */
    uint16_t num_buffers;                /* the header's field */
    unsigned flags;                      /* VHU_FE_NET_RX_* */
};

typedef void vhu_fe_net_rx_fn(void *opaque, const struct vhu_fe_net_rx_frame *f);

struct vhu_fe_net_rxq_stats {
    uint64_t frames;
    uint64_t bytes;     /* frame bytes */
    uint64_t bufs;      /* buffers used */
    uint64_t nb_zero;   /* frames with num_buffers 0 without MRG_RXBUF (tolerated: VIRTIO 1.x
                           says 1, some backends leave it alone) */
};

/* Receive queue of pair: nbufs buffers (0: the ring size) of buf_len bytes (header included;
 * without MRG_RXBUF it must hold 12 + max_frame). Posts them all and kicks. */
int vhu_fe_net_rxq_new(struct vhu_fe *fe, const struct vhu_fe_net_info *info, unsigned pair,
                       unsigned nbufs, uint32_t buf_len, struct vhu_fe_net_rxq **out);
void vhu_fe_net_rxq_free(struct vhu_fe_net_rxq *q);
/*
 * Deliver up to max_frames complete frames to fn, post their buffers again and kick. Returns
 * the frames delivered, or -EPROTO: the backend broke the ring (vhu_fe_net_rxq_broken) or sent
 * an impossible header (vhu_fe_net_rxq_error says what); the queue then stays dead.
 */
int vhu_fe_net_rx_poll(struct vhu_fe_net_rxq *q, unsigned max_frames, vhu_fe_net_rx_fn *fn,
                       void *opaque);
int vhu_fe_net_rxq_wait(struct vhu_fe_net_rxq *q, int timeout_ms);
bool vhu_fe_net_rxq_broken(const struct vhu_fe_net_rxq *q);
/* What made the queue fail ("" if nothing did). */
const char *vhu_fe_net_rxq_error(const struct vhu_fe_net_rxq *q);
unsigned vhu_fe_net_rxq_nbufs(const struct vhu_fe_net_rxq *q);
uint32_t vhu_fe_net_rxq_buf_len(const struct vhu_fe_net_rxq *q);
void vhu_fe_net_rxq_get_stats(const struct vhu_fe_net_rxq *q, struct vhu_fe_net_rxq_stats *st);

#endif
