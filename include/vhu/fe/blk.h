/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_FE_BLK_H
#define VHU_FE_BLK_H

/*
 * virtio-blk driver (VIRTIO 1.3 §5.2) over the frontend library: one struct vhu_fe_blk drives
 * one request queue of a started struct vhu_fe. Requests carry a caller cookie and complete
 * asynchronously: submit (any number), vhu_fe_blk_kick(), then reap completions by polling
 * (vhu_fe_blk_reap) or by sleeping on the queue's call eventfd (vhu_fe_blk_wait).
 *
 * Every request's header and status byte live in shared memory carved out once at creation
 * (depth requests in flight at most); submit and reap neither allocate nor log. Data buffers
 * are the caller's, given by guest physical address in the frontend's arena (vhu_fe_alloc).
 * A driver belongs to one thread, as its queue does (see vhu_fe_vqd()).
 *
 * Functions return >= 0 or -errno.
 */
#ifdef VHU_DEVICE_BUILD
#error "device models must not include frontend headers"
#endif

#include <stdbool.h>
#include <stdint.h>

#include "vhu/frontend.h"

#define VHU_FE_BLK_SECTOR 512u
#define VHU_FE_BLK_ID_BYTES 20u
#define VHU_FE_BLK_MAX_SEGS 128u /* data segments the driver puts in one request at most */

/* What the device told us: negotiated features and struct virtio_blk_config (§5.2.4). Fields
 * of features that were not negotiated are 0 (blk_size: 512). */
struct vhu_fe_blk_info {
    uint64_t features;     /* negotiated virtio features */
    uint64_t capacity;     /* 512-byte sectors */
    uint32_t size_max;     /* largest data segment (0: no limit) */
    uint32_t seg_max;      /* data segments per request (0: no limit) */
    uint32_t blk_size;     /* logical block size, a power of two >= 512 */
    uint16_t num_queues;   /* config num_queues (0 when the config space is too short) */
    uint8_t writeback;
    uint32_t max_discard_sectors, max_discard_seg;
    uint32_t max_write_zeroes_sectors, max_write_zeroes_seg;
    uint32_t config_len;   /* bytes of config space the backend answered (60, 36 or 8) */
};

/* The virtio-blk feature bits this driver understands (ask for them in vhu_fe_opts.features). */
uint64_t vhu_fe_blk_features(void);
/* Read the config space of a started device (GET_CONFIG; backends that answer only a prefix
 * are asked again for a shorter one). */
int vhu_fe_blk_get_info(struct vhu_fe *fe, struct vhu_fe_blk_info *info);
/* Largest data bytes one request may carry when no segment exceeds seg_cap bytes. */
uint64_t vhu_fe_blk_max_request(const struct vhu_fe_blk_info *info, uint32_t seg_cap);

struct vhu_fe_blk;

/* Drive queue q of fe, at most depth requests in flight (0: the ring size; more than the ring
 * holds is cut to it). Callbacks (used-buffer notifications) start disabled. */
int vhu_fe_blk_new(struct vhu_fe *fe, const struct vhu_fe_blk_info *info, unsigned q,
                   unsigned depth, struct vhu_fe_blk **out);
void vhu_fe_blk_free(struct vhu_fe_blk *blk);
unsigned vhu_fe_blk_depth(const struct vhu_fe_blk *blk);
unsigned vhu_fe_blk_inflight(const struct vhu_fe_blk *blk);

/*
 * Submit one request; it goes to the device at the next vhu_fe_blk_kick(). len bytes at the
 * guest physical address gpa, split into segments of 4 KiB (more when seg_max asks for it).
 * 0, or -EBUSY (depth requests in flight), -ENOSPC (ring full: kick and reap first), -E2BIG
 * (size_max x seg_max cannot carry len), -EINVAL, -EIO (the queue is broken).
 */
int vhu_fe_blk_read(struct vhu_fe_blk *blk, uint64_t sector, uint64_t gpa, uint32_t len,
                    void *cookie);
int vhu_fe_blk_write(struct vhu_fe_blk *blk, uint64_t sector, uint64_t gpa, uint32_t len,
                     void *cookie);
int vhu_fe_blk_flush(struct vhu_fe_blk *blk, void *cookie);
/* 20 bytes of device id, NUL-padded (§5.2.6.1), into gpa. */
int vhu_fe_blk_get_id(struct vhu_fe_blk *blk, uint64_t gpa, void *cookie);
/* One range; the range descriptor lives in the request's own shared memory. */
int vhu_fe_blk_discard(struct vhu_fe_blk *blk, uint64_t sector, uint32_t num_sectors,
                       void *cookie);
int vhu_fe_blk_write_zeroes(struct vhu_fe_blk *blk, uint64_t sector, uint32_t num_sectors,
                            bool unmap, void *cookie);
/* Publish what was submitted and notify the device if it wants a notification. */
int vhu_fe_blk_kick(struct vhu_fe_blk *blk);

struct vhu_fe_blk_cpl {
    void *cookie;
    /* VIRTIO_BLK_S_OK (0), _IOERR (1), _UNSUPP (2), another byte the device wrote, or -EPROTO
     * when the used length is impossible (no status byte, or more than the request's
     * device-writable bytes). */
    int status;
    uint32_t bytes;    /* data bytes the device wrote (reads, get_id): used length - 1 */
    uint32_t used_len; /* the used length as the device reported it */
    uint32_t writable; /* the request's device-writable bytes, status byte included */
};

/* Poll mode: up to max completions, without waiting. -EPROTO when nothing completed and the
 * device broke the ring (a bad id or length in the used ring): the queue is dead. */
int vhu_fe_blk_reap(struct vhu_fe_blk *blk, struct vhu_fe_blk_cpl *cpl, unsigned max);
/* Event mode: enable callbacks and sleep on the call eventfd until the device signals or
 * timeout_ms passes. 1 if completions were already pending (no sleep), 0 after a signal,
 * -ETIMEDOUT. Callbacks are disabled again on return. */
int vhu_fe_blk_wait(struct vhu_fe_blk *blk, int timeout_ms);
/* Reap, waiting up to timeout_ms for at least one completion: the count, -ETIMEDOUT or
 * -EPROTO. */
int vhu_fe_blk_reap_wait(struct vhu_fe_blk *blk, struct vhu_fe_blk_cpl *cpl, unsigned max,
                         int timeout_ms);

#endif
