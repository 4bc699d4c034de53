/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_CORE_H
#define VHU_CORE_H

/*
 * The device core: one served device instance, driven by typed calls. A transport (the
 * vhost-user decoder, a virtio-vhost-user or vfio-user device model, VDUSE, a test) turns what
 * its driver says into these calls; the core knows no message, no wire struct and no fd.
 *
 *   - memory: a struct vhu_mem_table the transport built from regions it mapped (an fd + offset,
 *     or a host window it already owns); the core takes the reference;
 *   - rings: size, addresses (guest-physical, frontend-virtual or host pointers, as the transport
 *     says), position, kick source, call and error sinks (struct vhu_notifier), start, stop,
 *     enable;
 *   - features, config space, device status, reset, the inflight region.
 *
 * Threads: every call is made on the control thread (the loop given to vhu_backend_new()), or
 * on the ring's owner thread inside vhu_core_ring_exec(). A call that changes a running ring
 * runs on the ring's owner thread (the calling thread waits), so the data path takes no lock.
 * Calls return 0 (or a value) or -errno; a refused call changes nothing and logs why once.
 */
#ifdef VHU_DEVICE_BUILD
#error "device models must not include the core header: they see vhu/device.h"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vhu/backend.h"
#include "vhu/mem.h"
#include "vhu/notifier.h"

struct vhu_core;

/* One core per backend at a time (-EBUSY otherwise). Rings start stopped, disabled, with no
 * notifiers; memory is an empty table; features, status and config as after a reset. */
int vhu_core_new(struct vhu_backend *b, struct vhu_core **out);
/* Stops every ring (the device finishes its requests), resets the device, frees the notifiers,
 * drops the memory table. */
void vhu_core_free(struct vhu_core *c);
struct vhu_device *vhu_core_device(const struct vhu_core *c);
struct vhu_backend *vhu_core_backend(const struct vhu_core *c);
unsigned vhu_core_num_queues(const struct vhu_core *c);

/*
 * Services of the transport serving this core, for calls that go the other way (every member
 * optional). Called on the control thread.
 */
struct vhu_core_transport {
    /* Tell the driver its config space changed: 0 sent, -ENOTSUP cannot, -errno failed. */
    int (*config_changed)(void *opaque);
    /* The transport's own negotiated features (vhost-user: protocol features), for reports. */
    uint64_t (*negotiated)(void *opaque);
    void *opaque;
};
void vhu_core_set_transport(struct vhu_core *c, const struct vhu_core_transport *t);
/* The device changed its config space: the transport tells the driver (-EINVAL: the device
 * has none; -ENOTSUP: no transport service). */
int vhu_core_config_changed(struct vhu_core *c);

/* ---- features, config, status ---- */

/* Device features offered (virtio feature bits, the ring features included). */
uint64_t vhu_core_features(const struct vhu_core *c);
/* The driver's choice: a subset of the offer (-EINVAL otherwise), passed to the device. */
int vhu_core_set_features(struct vhu_core *c, uint64_t features);
uint64_t vhu_core_acked_features(const struct vhu_core *c);
/* Config space: [off, off+len) must lie inside the device's config_size (-EINVAL). A device
 * without a set_config op refuses writes (-EPERM). */
int vhu_core_get_config(struct vhu_core *c, uint32_t off, void *buf, uint32_t len);
int vhu_core_set_config(struct vhu_core *c, uint32_t off, const void *buf, uint32_t len);
/* The device status byte (virtio 2.1); the core adds NEEDS_RESET when a ring breaks. */
uint8_t vhu_core_status(const struct vhu_core *c);
void vhu_core_set_status(struct vhu_core *c, uint8_t status);
/* Device reset: every ring stopped and forgotten (size, addresses, position, notifiers), the
 * features and status cleared, the device's reset op. The memory table stays. */
void vhu_core_reset(struct vhu_core *c);

/* ---- memory ---- */

/* Swap in a new table (takes the reference t holds): running rings are re-translated on their
 * threads before the old table is released. A ring that no longer translates fails the call
 * (it is stopped; the other rings are still re-translated). */
int vhu_core_set_mem(struct vhu_core *c, struct vhu_mem_table *t);
/* The current table (borrowed; valid until the next vhu_core_set_mem()), e.g. to derive the next
 * one with vhu_mem_table_add()/_remove(). */
const struct vhu_mem_table *vhu_core_mem(const struct vhu_core *c);

/* ---- rings ---- */

enum vhu_addr_space {
    VHU_ADDR_GPA,  /* guest physical: translated through the table's gpa index */
    VHU_ADDR_UVA,  /* the frontend's virtual addresses (vhost-user sends these) */
    VHU_ADDR_HOST, /* host pointers the transport already translated (and keeps mapped) */
};

struct vhu_ring_addr {
    enum vhu_addr_space space;
    uint64_t desc;   /* descriptor table / packed descriptor ring */
    uint64_t driver; /* split: avail ring; packed: driver event suppression area */
    uint64_t device; /* split: used ring; packed: device event suppression area */
};

/* Size and position may only change while the ring is stopped (-EBUSY). num: 1..max_queue_size
 * of the device; a split ring's must be a power of two (checked at start). */
int vhu_core_ring_set_num(struct vhu_core *c, unsigned q, uint16_t num);
/* Position in vhost-user's VRING_BASE encoding (vhu_vq_set_base()). */
int vhu_core_ring_set_base(struct vhu_core *c, unsigned q, uint32_t base);
/* On a running ring the areas are re-translated in place (position kept). */
int vhu_core_ring_set_addr(struct vhu_core *c, unsigned q, const struct vhu_ring_addr *a);
/*
 * Notifiers: the core takes n (and frees the one it replaces, after the ring's thread has
 * stopped using it). Kick source NULL or not watchable: the ring is polled — by the owning
 * worker, which then never sleeps while the ring runs, or, for rings the control thread owns,
 * by vhu_core_poll(). A new call sink on a running ring is signalled once (an interrupt raised
 * on the old sink in between would otherwise be lost).
 */
int vhu_core_ring_set_kick(struct vhu_core *c, unsigned q, struct vhu_notifier *kick);
int vhu_core_ring_set_call(struct vhu_core *c, unsigned q, struct vhu_notifier *call);
int vhu_core_ring_set_err(struct vhu_core *c, unsigned q, struct vhu_notifier *err);
/*
 * Start: translate the areas, start at the position set (or where the last stop left it), start
 * the device's queue, watch the kick source, and process what is already available. Refused
 * (-EINVAL / -EFAULT, logged) without size or addresses, or when an area is not in memory. A
 * started ring is first stopped.
 */
int vhu_core_ring_start(struct vhu_core *c, unsigned q);
/* Stop (the device completes or drops its requests first); *base gets the position. A stopped
 * ring answers its last position. */
int vhu_core_ring_stop(struct vhu_core *c, unsigned q, uint32_t *base);
/* Enabled rings are processed; a disabled running ring keeps its position and is not. */
int vhu_core_ring_enable(struct vhu_core *c, unsigned q, bool on);
bool vhu_core_ring_started(const struct vhu_core *c, unsigned q);
/* Run fn(arg) on q's owner thread (now, if the caller is that thread) and return its result.
 * Core calls inside fn about ring q run directly. */
int vhu_core_ring_exec(struct vhu_core *c, unsigned q, int (*fn)(void *arg), void *arg);

/* Process every started, enabled ring that the control thread owns and that has buffers
 * available; returns how many rings had work. For polled rings without workers, and tests. */
unsigned vhu_core_poll(struct vhu_core *c);

/*
 * Inflight tracking (split and packed rings) and device state (docs/recovery.md): region, size
 * bytes, holds nqueues per-ring areas of vhu_core_inflight_region_size(qsize) bytes each and,
 * when size reaches vhu_core_inflight_size(), the device-state area after them; it lives in
 * memory the transport keeps mapped (and shares with its driver) until it attaches another or
 * frees the core. NULL detaches. Rings take their area when they start; while a running ring
 * tracks into the current region it cannot be replaced (-EBUSY). Rings larger than qsize are not
 * tracked (logged). A region whose state area holds a valid state loads it into the device; an
 * invalid one is ignored with one message.
 */
size_t vhu_core_inflight_region_size(uint16_t qsize);
/* Bytes a transport allocates for a fresh region: the ring areas plus the device-state area. */
size_t vhu_core_inflight_size(const struct vhu_core *c, uint16_t nqueues, uint16_t qsize);
/* Whether this device can take a region of nqueues areas for rings of qsize (0, or -EINVAL
 * logged): a transport checks before it allocates the region. */
int vhu_core_inflight_check(const struct vhu_core *c, uint16_t nqueues, uint16_t qsize);
int vhu_core_set_inflight_buffer(struct vhu_core *c, void *region, size_t size,
                                 uint16_t nqueues, uint16_t qsize);
/* The same for a region of exactly nqueues ring areas: no device-state area (libvhu 0.1). */
int vhu_core_set_inflight(struct vhu_core *c, void *region, uint16_t nqueues, uint16_t qsize);

#endif
