/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Driver-side virtqueue: ring layout, construction, and the public entry points. The ring code
 * itself is in vqd_split.c and vqd_packed.c.
 *
 * Layout inside the caller's ring memory:
 *   split:  descriptor table | avail ring + used_event | (4 KiB aligned) used ring + avail_event
 *   packed: descriptor ring | driver event suppression | device event suppression
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vhu/log.h"
#include "vqd_internal.h"

static uint64_t split_used_off(uint16_t num)
{
    return VHU_ALIGN_UP(vhu_split_desc_size(num) + vhu_split_avail_size(num) + 2, 4096ULL);
}

VHU_EXPORT size_t vhu_vqd_ring_size(uint16_t num, bool packed)
{
    if (packed)
        return (size_t)(vhu_packed_desc_size(num) + 2 * VHU_PACKED_EVENT_SIZE);
    return (size_t)(split_used_off(num) + vhu_split_used_size(num) + 2);
}

static int config_check(const struct vhu_vqd_config *cfg)
{
    if (cfg->num == 0 || cfg->num > VHU_VQ_MAX_SIZE || !cfg->ring)
        return -EINVAL;
    if (!cfg->packed && (cfg->num & (cfg->num - 1)))
        return -EINVAL;
    if (((uintptr_t)cfg->ring & 15) || (cfg->ring_addr & 15))
        return -EINVAL;
    if (cfg->indirect && (cfg->indirect_max == 0 || ((uintptr_t)cfg->indirect & 15)))
        return -EINVAL;
    return 0;
}

VHU_EXPORT int vhu_vqd_new(const struct vhu_vqd_config *cfg, struct vhu_vqd **out)
{
    struct vhu_vqd *vqd;
    uint8_t *ring;
    int r;

    if (!cfg || !out)
        return -EINVAL;
    r = config_check(cfg);
    if (r < 0)
        return r;
    vqd = calloc(1, sizeof(*vqd));
    if (!vqd)
        return -ENOMEM;
    vqd->next = calloc(cfg->num, sizeof(*vqd->next));
    vqd->ndesc = calloc(cfg->num, sizeof(*vqd->ndesc));
    vqd->in_len = calloc(cfg->num, sizeof(*vqd->in_len));
    vqd->cookie = calloc(cfg->num, sizeof(*vqd->cookie));
    if (!vqd->next || !vqd->ndesc || !vqd->in_len || !vqd->cookie) {
        vhu_vqd_free(vqd);
        return -ENOMEM;
    }
    vqd->num = cfg->num;
    vqd->packed = cfg->packed;
    vqd->event_idx = cfg->event_idx;
    vqd->in_order = cfg->in_order;
    vqd->num_free = cfg->num;
    if (cfg->indirect) {
        vqd->ind = cfg->indirect;
        vqd->ind_addr = cfg->indirect_addr;
        vqd->ind_max = cfg->indirect_max;
    }
    ring = cfg->ring;
    memset(ring, 0, vhu_vqd_ring_size(cfg->num, cfg->packed));
    vqd->desc = (struct vhu_vring_desc *)(void *)ring;
    vqd->desc_addr = cfg->ring_addr;
    if (cfg->packed) {
        uint64_t off = vhu_packed_desc_size(cfg->num);
        vqd->drv_event = (struct vhu_vring_packed_desc_event *)(void *)(ring + off);
        vqd->dev_event = (struct vhu_vring_packed_desc_event *)(void *)(ring + off + 4);
        vqd->driver_addr = cfg->ring_addr + off;
        vqd->device_addr = cfg->ring_addr + off + 4;
        vqd_packed_init(vqd);
    } else {
        uint64_t aoff = vhu_split_desc_size(cfg->num), uoff = split_used_off(cfg->num);
        vqd->avail = (struct vhu_vring_avail *)(void *)(ring + aoff);
        vqd->used = (struct vhu_vring_used *)(void *)(ring + uoff);
        vqd->driver_addr = cfg->ring_addr + aoff;
        vqd->device_addr = cfg->ring_addr + uoff;
        vqd_split_init(vqd);
    }
    *out = vqd;
    return 0;
}

VHU_EXPORT void vhu_vqd_free(struct vhu_vqd *vqd)
{
    if (!vqd)
        return;
    free(vqd->next);
    free(vqd->ndesc);
    free(vqd->in_len);
    free(vqd->cookie);
    free(vqd);
}

VHU_EXPORT void vhu_vqd_addrs(const struct vhu_vqd *vqd, uint64_t *desc, uint64_t *driver,
                              uint64_t *device)
{
    if (desc)
        *desc = vqd->desc_addr;
    if (driver)
        *driver = vqd->driver_addr;
    if (device)
        *device = vqd->device_addr;
}

void vqd_fail(struct vhu_vqd *vqd, const char *why)
{
    if (vqd->broken)
        return;
    vqd->broken = true;
    vhu_err_rl("driver queue: %s; queue stopped", why);
}

/*
 * In order (virtio 1.3 2.7.9 / 2.8.9): a used entry naming buffer `id` completes every buffer
 * made available before it. Walks the buffers in flight from the oldest, `oldest` (each takes
 * ndesc consecutive slots), over at most `limit` of them (those the device can have seen) to
 * find id; sets up the batch and returns its size, or 0 with the queue broken when id is not
 * there or len is more than the buffer holds.
 */
int vqd_inorder_batch(struct vhu_vqd *vqd, uint16_t oldest, uint32_t id, uint32_t len,
                      unsigned limit)
{
    unsigned s = oldest;

    for (unsigned k = 1; k <= limit; k++) {
        if (s == id) {
            if (len > vqd->in_len[id]) {
                vqd_fail(vqd, "device wrote more than the buffer holds");
                return 0;
            }
            vqd->batch_left = (uint16_t)k;
            vqd->batch_len = len;
            return (int)k;
        }
        s = (s + vqd->ndesc[s]) % vqd->num;
    }
    vqd_fail(vqd, "device used a buffer id that is not in flight in order");
    return 0;
}

VHU_EXPORT int vhu_vqd_add(struct vhu_vqd *vqd, const struct vhu_vqd_seg *segs, unsigned n_out,
                           unsigned n_in, void *cookie)
{
    unsigned n = n_out + n_in;

    if (vhu_unlikely(vqd->broken))
        return -EIO;
    /* A NULL cookie could not be told apart from "nothing used" by vhu_vqd_get_used(). */
    if (n == 0 || n < n_out || !segs || !cookie)
        return -EINVAL;
    return vqd->packed ? vqd_packed_add(vqd, segs, n_out, n_in, cookie)
                       : vqd_split_add(vqd, segs, n_out, n_in, cookie);
}

VHU_EXPORT bool vhu_vqd_kick_prepare(struct vhu_vqd *vqd)
{
    if (vhu_unlikely(vqd->broken))
        return false;
    return vqd->packed ? vqd_packed_kick_prepare(vqd) : vqd_split_kick_prepare(vqd);
}

VHU_EXPORT void *vhu_vqd_get_used(struct vhu_vqd *vqd, uint32_t *len)
{
    uint32_t dummy;

    if (vhu_unlikely(vqd->broken))
        return NULL;
    return vqd->packed ? vqd_packed_get_used(vqd, len ? len : &dummy)
                       : vqd_split_get_used(vqd, len ? len : &dummy);
}

VHU_EXPORT void vhu_vqd_disable_cb(struct vhu_vqd *vqd)
{
    vqd->cb_off = true;
    if (vqd->packed)
        vqd_packed_set_cb(vqd, false);
    else
        vqd_split_set_cb(vqd, false);
}

VHU_EXPORT bool vhu_vqd_enable_cb(struct vhu_vqd *vqd)
{
    vqd->cb_off = false;
    if (vqd->packed)
        vqd_packed_set_cb(vqd, true);
    else
        vqd_split_set_cb(vqd, true);
    /* Publish the enable before looking at the ring again, or an entry used in between could
     * go unnoticed with no interrupt coming. */
    vhu_smp_mb();
    if (vqd->broken)
        return false;
    if (vqd->batch_left)
        return true;
    return vqd->packed ? vqd_packed_more_used(vqd) : vqd_split_more_used(vqd);
}

VHU_EXPORT unsigned vhu_vqd_num_free(const struct vhu_vqd *vqd)
{
    return vqd->num_free;
}

VHU_EXPORT bool vhu_vqd_broken(const struct vhu_vqd *vqd)
{
    return vqd->broken;
}

/* Exact when nothing is in flight; otherwise the device restarts at the oldest unused buffer. */
VHU_EXPORT uint32_t vhu_vqd_base(const struct vhu_vqd *vqd)
{
    uint32_t pos;

    if (!vqd->packed)
        return vqd->last_used;
    pos = vqd->last_used | (vqd->used_wrap ? VQ_WRAP_BIT : 0);
    return pos | pos << 16;
}
