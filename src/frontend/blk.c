/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * virtio-blk driver over the frontend library (VIRTIO 1.3 §5.2): requests are a 16-byte header
 * (device-readable), data segments, and a status byte (device-writable). Each of the depth
 * request slots owns 64 bytes of shared memory for its header, its discard/write-zeroes range
 * and its status byte, carved out once at creation.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vhu/fe/blk.h"
#include "vhu/util.h"
#include "vhu/virtio.h"

/* virtio-blk bits and layouts (§5.2.3, §5.2.6); private names, the device headers stay theirs */
enum {
    F_SIZE_MAX = 1, F_SEG_MAX = 2, F_GEOMETRY = 4, F_RO = 5, F_BLK_SIZE = 6, F_FLUSH = 9,
    F_TOPOLOGY = 10, F_CONFIG_WCE = 11, F_MQ = 12, F_DISCARD = 13, F_WRITE_ZEROES = 14,
};
enum { T_IN = 0, T_OUT = 1, T_FLUSH = 4, T_GET_ID = 8, T_DISCARD = 11, T_WRITE_ZEROES = 13 };

struct req_hdr {
    uint32_t type;
    uint32_t ioprio;
    uint64_t sector;
};

struct req_range {
    uint64_t sector;
    uint32_t num_sectors;
    uint32_t flags; /* bit 0: unmap (write zeroes) */
};

#define SLOT_BYTES 64 /* header at 0, range at 16, status at 32 */

struct slot {
    void *cookie;
    uint8_t *shm;      /* SLOT_BYTES in the arena */
    uint64_t gpa;
    uint32_t writable; /* device-writable bytes, the status byte included */
};

struct vhu_fe_blk {
    struct vhu_fe *fe;
    struct vhu_vqd *vqd;
    unsigned q;
    unsigned depth;
    unsigned nfree;
    uint32_t size_max, seg_max; /* seg_max capped to VHU_FE_BLK_MAX_SEGS */
    struct slot **free;
    struct slot *slots;
};

VHU_EXPORT uint64_t vhu_fe_blk_features(void)
{
    return vhu_feature(F_SIZE_MAX) | vhu_feature(F_SEG_MAX) | vhu_feature(F_GEOMETRY) |
           vhu_feature(F_RO) | vhu_feature(F_BLK_SIZE) | vhu_feature(F_FLUSH) |
           vhu_feature(F_TOPOLOGY) | vhu_feature(F_CONFIG_WCE) | vhu_feature(F_MQ) |
           vhu_feature(F_DISCARD) | vhu_feature(F_WRITE_ZEROES);
}

static uint32_t cfg_le32(const uint8_t *c, unsigned off)
{
    uint32_t v;
    memcpy(&v, c + off, 4);
    return le32toh(v);
}

VHU_EXPORT int vhu_fe_blk_get_info(struct vhu_fe *fe, struct vhu_fe_blk_info *info)
{
    /* Offsets in virtio_blk_config: up to write_zeroes_may_unmap + padding (60), up to
     * num_queues (36), just the capacity (8). Backends answer only sizes they know. */
    static const uint32_t lens[] = {60, 36, 8};
    uint8_t c[64];
    uint64_t f = vhu_fe_features(fe), cap;
    int r = -EIO;

    memset(info, 0, sizeof(*info));
    info->features = f;
    for (unsigned i = 0; i < VHU_ARRAY_SIZE(lens); i++) {
        memset(c, 0, sizeof(c));
        r = vhu_fe_get_config(fe, 0, c, lens[i]);
        if (r == 0) {
            info->config_len = lens[i];
            break;
        }
    }
    if (r < 0)
        return r;
    memcpy(&cap, c, 8);
    info->capacity = le64toh(cap);
    info->size_max = vhu_has_feature(f, F_SIZE_MAX) ? cfg_le32(c, 8) : 0;
    info->seg_max = vhu_has_feature(f, F_SEG_MAX) ? cfg_le32(c, 12) : 0;
    info->blk_size = vhu_has_feature(f, F_BLK_SIZE) ? cfg_le32(c, 20) : VHU_FE_BLK_SECTOR;
    if (info->config_len >= 36) {
        uint16_t nq;
        memcpy(&nq, c + 34, 2);
        info->writeback = c[32];
        info->num_queues = vhu_has_feature(f, F_MQ) ? le16toh(nq) : 1;
    }
    if (info->config_len >= 60) {
        info->max_discard_sectors = cfg_le32(c, 36);
        info->max_discard_seg = cfg_le32(c, 40);
        info->max_write_zeroes_sectors = cfg_le32(c, 48);
        info->max_write_zeroes_seg = cfg_le32(c, 52);
    }
    if (info->blk_size < VHU_FE_BLK_SECTOR || (info->blk_size & (info->blk_size - 1)))
        info->blk_size = VHU_FE_BLK_SECTOR;
    return 0;
}

static uint32_t nseg_max(uint32_t seg_max)
{
    return seg_max ? VHU_MIN(seg_max, VHU_FE_BLK_MAX_SEGS) : VHU_FE_BLK_MAX_SEGS;
}

VHU_EXPORT uint64_t vhu_fe_blk_max_request(const struct vhu_fe_blk_info *info, uint32_t seg_cap)
{
    uint32_t seg = info->size_max ? VHU_MIN(info->size_max, seg_cap) : seg_cap;

    seg &= ~(VHU_FE_BLK_SECTOR - 1);
    return (uint64_t)seg * nseg_max(info->seg_max);
}

VHU_EXPORT int vhu_fe_blk_new(struct vhu_fe *fe, const struct vhu_fe_blk_info *info, unsigned q,
                              unsigned depth, struct vhu_fe_blk **out)
{
    struct vhu_vqd *vqd = vhu_fe_vqd(fe, q);
    struct vhu_fe_blk *b;
    uint8_t *shm;
    uint64_t gpa;

    *out = NULL;
    if (!vqd || !info)
        return -EINVAL;
    if (depth == 0 || depth > vhu_vqd_num_free(vqd))
        depth = vhu_vqd_num_free(vqd);
    if (depth == 0)
        return -ENOSPC;
    shm = vhu_fe_alloc(fe, (size_t)depth * SLOT_BYTES, SLOT_BYTES, &gpa);
    if (!shm)
        return -ENOMEM;
    b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->slots = calloc(depth, sizeof(*b->slots));
    b->free = calloc(depth, sizeof(*b->free));
    if (!b->slots || !b->free) {
        vhu_fe_blk_free(b);
        return -ENOMEM;
    }
    b->fe = fe;
    b->vqd = vqd;
    b->q = q;
    b->depth = depth;
    b->size_max = info->size_max;
    b->seg_max = nseg_max(info->seg_max);
    for (unsigned i = 0; i < depth; i++) {
        b->slots[i].shm = shm + (size_t)i * SLOT_BYTES;
        b->slots[i].gpa = gpa + (uint64_t)i * SLOT_BYTES;
        b->free[depth - 1 - i] = &b->slots[i];
    }
    b->nfree = depth;
    vhu_vqd_disable_cb(vqd);
    *out = b;
    return 0;
}

VHU_EXPORT void vhu_fe_blk_free(struct vhu_fe_blk *b)
{
    if (!b)
        return;
    free(b->slots);
    free(b->free);
    free(b);
}

VHU_EXPORT unsigned vhu_fe_blk_depth(const struct vhu_fe_blk *b) { return b->depth; }
VHU_EXPORT unsigned vhu_fe_blk_inflight(const struct vhu_fe_blk *b) { return b->depth - b->nfree; }

/*
 * Build and add the chain: header (readable), data in segments of at most 4 KiB (a guest's
 * pages) while seg_max allows, else bigger ones up to size_max, the status byte (writable).
 */
static int submit(struct vhu_fe_blk *b, uint32_t type, uint64_t sector, uint64_t data_gpa,
                  uint32_t len, bool data_in, void *cookie)
{
    struct vhu_vqd_seg segs[VHU_FE_BLK_MAX_SEGS + 2];
    uint32_t seg = 4096;
    unsigned n = 0, nd = 0, n_out;
    struct slot *s;
    struct req_hdr *h;
    int r;

    if (b->nfree == 0)
        return -EBUSY;
    if (b->size_max && b->size_max < seg)
        seg = b->size_max;
    while (len && (len + seg - 1) / seg > b->seg_max) {
        seg *= 2;
        if (b->size_max && seg > b->size_max)
            return -E2BIG;
    }
    s = b->free[b->nfree - 1];
    h = (struct req_hdr *)s->shm;
    h->type = htole32(type);
    h->ioprio = 0;
    h->sector = htole64(sector);
    s->shm[32] = 0xff;
    segs[n++] = (struct vhu_vqd_seg){.addr = s->gpa, .len = sizeof(*h)};
    for (uint32_t off = 0; off < len; off += seg, nd++)
        segs[n++] = (struct vhu_vqd_seg){.addr = data_gpa + off, .len = VHU_MIN(seg, len - off)};
    n_out = data_in ? 1 : 1 + nd;
    segs[n++] = (struct vhu_vqd_seg){.addr = s->gpa + 32, .len = 1};
    r = vhu_vqd_add(b->vqd, segs, n_out, n - n_out, s);
    if (r < 0)
        return r;
    s->cookie = cookie;
    s->writable = (data_in ? len : 0) + 1;
    b->nfree--;
    return 0;
}

VHU_EXPORT int vhu_fe_blk_read(struct vhu_fe_blk *b, uint64_t sector, uint64_t gpa, uint32_t len,
                               void *cookie)
{
    return submit(b, T_IN, sector, gpa, len, true, cookie);
}

VHU_EXPORT int vhu_fe_blk_write(struct vhu_fe_blk *b, uint64_t sector, uint64_t gpa,
                                uint32_t len, void *cookie)
{
    return submit(b, T_OUT, sector, gpa, len, false, cookie);
}

VHU_EXPORT int vhu_fe_blk_flush(struct vhu_fe_blk *b, void *cookie)
{
    return submit(b, T_FLUSH, 0, 0, 0, false, cookie);
}

VHU_EXPORT int vhu_fe_blk_get_id(struct vhu_fe_blk *b, uint64_t gpa, void *cookie)
{
    return submit(b, T_GET_ID, 0, gpa, VHU_FE_BLK_ID_BYTES, true, cookie);
}

static int ranged(struct vhu_fe_blk *b, uint32_t type, uint64_t sector, uint32_t num,
                  uint32_t flags, void *cookie)
{
    struct slot *s;
    struct req_range rg = {.sector = htole64(sector), .num_sectors = htole32(num),
                           .flags = htole32(flags)};

    if (b->nfree == 0)
        return -EBUSY;
    s = b->free[b->nfree - 1]; /* the slot submit() takes */
    memcpy(s->shm + 16, &rg, sizeof(rg));
    return submit(b, type, 0, s->gpa + 16, sizeof(rg), false, cookie);
}

VHU_EXPORT int vhu_fe_blk_discard(struct vhu_fe_blk *b, uint64_t sector, uint32_t num_sectors,
                                  void *cookie)
{
    return ranged(b, T_DISCARD, sector, num_sectors, 0, cookie);
}

VHU_EXPORT int vhu_fe_blk_write_zeroes(struct vhu_fe_blk *b, uint64_t sector,
                                       uint32_t num_sectors, bool unmap, void *cookie)
{
    return ranged(b, T_WRITE_ZEROES, sector, num_sectors, unmap ? 1 : 0, cookie);
}

VHU_EXPORT int vhu_fe_blk_kick(struct vhu_fe_blk *b)
{
    return vhu_fe_kick(b->fe, b->q);
}

VHU_EXPORT int vhu_fe_blk_reap(struct vhu_fe_blk *b, struct vhu_fe_blk_cpl *cpl, unsigned max)
{
    unsigned n = 0;
    uint32_t len;
    struct slot *s;

    while (n < max && (s = vhu_vqd_get_used(b->vqd, &len)) != NULL) {
        struct vhu_fe_blk_cpl *c = &cpl[n++];
        c->cookie = s->cookie;
        c->used_len = len;
        c->writable = s->writable;
        c->bytes = len ? len - 1 : 0;
        c->status = len < 1 || len > s->writable ? -EPROTO : s->shm[32];
        b->free[b->nfree++] = s;
    }
    if (n == 0 && vhu_vqd_broken(b->vqd))
        return -EPROTO;
    return (int)n;
}

VHU_EXPORT int vhu_fe_blk_wait(struct vhu_fe_blk *b, int timeout_ms)
{
    int r;

    if (vhu_vqd_enable_cb(b->vqd)) {
        vhu_vqd_disable_cb(b->vqd);
        return 1;
    }
    r = vhu_fe_wait(b->fe, b->q, timeout_ms);
    vhu_vqd_disable_cb(b->vqd);
    return r;
}

VHU_EXPORT int vhu_fe_blk_reap_wait(struct vhu_fe_blk *b, struct vhu_fe_blk_cpl *cpl,
                                    unsigned max, int timeout_ms)
{
    uint64_t deadline = vhu_now_ns() + (uint64_t)timeout_ms * 1000000ULL;

    for (;;) {
        int r = vhu_fe_blk_reap(b, cpl, max);
        if (r != 0)
            return r;
        uint64_t now = vhu_now_ns();
        if (now >= deadline)
            return -ETIMEDOUT;
        r = vhu_fe_blk_wait(b, (int)VHU_MIN((deadline - now) / 1000000ULL + 1, 100ULL));
        if (r < 0 && r != -ETIMEDOUT)
            return r;
    }
}
