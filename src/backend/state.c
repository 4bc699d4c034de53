/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Device state that survives the backend process (docs/recovery.md, "Device state").
 *
 * The area follows the ring areas of the inflight region, which the frontend keeps across
 * backend restarts. It holds two slots; each save writes the older one (magic cleared first,
 * set last), so a crash in the middle of a save leaves the previous state intact. A successor
 * takes the valid slot with the higher sequence number. Everything read back is copied once and
 * checked (magic, version, header size, device id, size, CRC) before the device sees it, and the
 * device checks its values again: the frontend, or a dying predecessor, could have left anything
 * there.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend_internal.h"
#include "vhu/log.h"
#include "vhu/util.h"

#define STATE_MAGIC 0x53554856u /* "VHUS" */
#define STATE_VERSION 1

struct state_hdr {
    uint32_t magic;
    uint16_t version;
    uint16_t hdr_size;
    uint32_t virtio_id;
    uint32_t size;      /* payload bytes */
    uint64_t seq;       /* the newer valid slot wins */
    uint32_t crc;       /* CRC-32 of the header (this field zero) and the payload */
    uint32_t reserved;
};
_Static_assert(sizeof(struct state_hdr) == 32, "state slot header is 32 bytes");

static size_t slot_size(const struct vhu_device *dev)
{
    return sizeof(struct state_hdr) + VHU_ALIGN_UP(dev->state_size, (size_t)32);
}

size_t vhu_core_state_area_size(const struct vhu_device *dev)
{
    return dev->state_size ? VHU_ALIGN_UP(2 * slot_size(dev), (size_t)64) : 0;
}

/* CRC-32 (IEEE, reflected); a few hundred bytes on a config write, no table needed. */
static uint32_t crc32_update(uint32_t crc, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    crc = ~crc;
    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
    }
    return ~crc;
}

static uint32_t state_crc(const struct state_hdr *h, const void *payload)
{
    struct state_hdr t = *h;

    t.crc = 0;
    return crc32_update(crc32_update(0, &t, sizeof(t)), payload, h->size);
}

/* Copy slot i out of shared memory into h and buf (once), and say why it is not a valid state
 * for dev, or NULL. An all-zero slot (a fresh region) is reported as "". */
/* A frame's header (already copied out of shared memory), before its payload is looked at. */
static const char *hdr_check(const struct vhu_device *dev, const struct state_hdr *h)
{
    if (h->magic != STATE_MAGIC)
        return "bad magic";
    if (h->version != STATE_VERSION || h->hdr_size != sizeof(*h))
        return "unknown version";
    if (h->virtio_id != dev->virtio_id)
        return "saved by another kind of device";
    if (h->size == 0 || h->size > dev->state_size)
        return "bad size";
    return NULL;
}

/* Header and payload for n bytes of state at buf. */
static void hdr_fill(const struct vhu_device *dev, struct state_hdr *h, const void *buf, int n,
                     uint64_t seq)
{
    *h = (struct state_hdr){
        .magic = STATE_MAGIC,
        .version = STATE_VERSION,
        .hdr_size = sizeof(*h),
        .virtio_id = dev->virtio_id,
        .size = (uint32_t)n,
        .seq = seq,
    };
    h->crc = state_crc(h, buf);
}

static const char *slot_read(const struct vhu_core *c, unsigned i, struct state_hdr *h, void *buf)
{
    const struct vhu_device *dev = c->dev;
    const uint8_t *slot = c->state_area + i * slot_size(dev);
    const char *why;

    memcpy(h, slot, sizeof(*h));
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (h->magic == 0 && h->seq == 0)
        return "";
    if ((why = hdr_check(dev, h)) != NULL)
        return why;
    memcpy(buf, slot + sizeof(*h), h->size);
    if (state_crc(h, buf) != h->crc)
        return "checksum mismatch";
    return NULL;
}

/* Load the newest valid slot into the device; false if there was none (or it was refused).
 * prev: the save this core made or loaded last (the same buffer handed back: no news). */
static bool state_load(struct vhu_core *c, uint64_t prev)
{
    struct vhu_device *dev = c->dev;
    struct state_hdr h[2];
    const char *why[2];
    uint8_t *buf[2];
    bool loaded = false;
    int best = -1;

    buf[0] = malloc(dev->state_size);
    buf[1] = malloc(dev->state_size);
    if (!buf[0] || !buf[1]) {
        free(buf[0]);
        free(buf[1]);
        vhu_err("device state: out of memory; not restored");
        return false;
    }
    for (unsigned i = 0; i < 2; i++) {
        why[i] = slot_read(c, i, &h[i], buf[i]);
        if (!why[i] && (best < 0 || h[i].seq > h[best].seq))
            best = (int)i;
    }
    if (best >= 0) {
        int r = dev->ops->state_load(dev, buf[best], h[best].size);
        if (r == 0) {
            c->state_seq = h[best].seq;
            c->state_slot = (unsigned)best;
            vhu_logf(h[best].seq == prev ? VHU_LOG_DEBUG : VHU_LOG_INFO,
                     "%s: device state restored from the inflight buffer (%u bytes, save %llu)",
                     dev->name, h[best].size, (unsigned long long)h[best].seq);
            loaded = true;
        } else {
            vhu_err("%s: device state in the inflight buffer refused by the device; ignored",
                    dev->name);
        }
    } else if (*why[0] || *why[1]) {
        vhu_err("%s: device state in the inflight buffer ignored (%s)", dev->name,
                *why[0] ? why[0] : why[1]);
    }
    free(buf[0]);
    free(buf[1]);
    return loaded;
}

void vhu_core_state_attach(struct vhu_core *c, uint8_t *area)
{
    uint64_t prev = c->state_seq;

    c->state_area = area;
    c->state_seq = 0;
    c->state_slot = 1; /* the first save goes to slot 0 */
    if (!area)
        return;
    /* Nothing valid to restore: record what the device has now, so a successor starts from
     * what the guest sees, and the area holds a valid state from here on. */
    if (!state_load(c, prev))
        vhu_core_state_save(c);
}

void vhu_core_state_save(struct vhu_core *c)
{
    struct vhu_device *dev = c->dev;
    uint8_t buf[VHU_DEVICE_STATE_MAX];
    struct state_hdr h = {0};
    uint8_t *slot;
    int n;

    if (!c->state_area || !dev->state_size)
        return;
    n = dev->ops->state_save(dev, buf, dev->state_size);
    if (n <= 0 || (size_t)n > dev->state_size) {
        if (n < 0)
            vhu_err("%s: device state not saved: %s", dev->name, strerror(-n));
        return;
    }
    /* The slot that does not hold the newest state. */
    slot = c->state_area + (c->state_slot ^ 1) * slot_size(dev);
    hdr_fill(dev, &h, buf, n, c->state_seq + 1);
    __atomic_store_n((uint32_t *)(void *)slot, 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    memcpy(slot + sizeof(h), buf, (size_t)n);
    memcpy(slot + sizeof(h.magic), (const uint8_t *)&h + sizeof(h.magic),
           sizeof(h) - sizeof(h.magic));
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_store_n((uint32_t *)(void *)slot, STATE_MAGIC, __ATOMIC_RELAXED);
    c->state_seq = h.seq;
    c->state_slot ^= 1;
}

/* ---- transfer (live migration): the same frame, through the transport ---- */

VHU_EXPORT size_t vhu_core_state_size(const struct vhu_core *c)
{
    return c->dev->state_size ? sizeof(struct state_hdr) + c->dev->state_size : 0;
}

VHU_EXPORT int vhu_core_state_export(struct vhu_core *c, void *buf, size_t len)
{
    struct vhu_device *dev = c->dev;
    uint8_t *out = buf;
    struct state_hdr h;
    int n;

    if (!dev->state_size)
        return -ENOTSUP;
    if (len < vhu_core_state_size(c))
        return -ENOSPC;
    n = dev->ops->state_save(dev, out + sizeof(h), dev->state_size);
    if (n <= 0 || (size_t)n > dev->state_size) {
        vhu_err("%s: device state cannot be saved: %s", dev->name,
                strerror(n < 0 ? -n : EINVAL));
        return n < 0 ? n : -EINVAL;
    }
    hdr_fill(dev, &h, out + sizeof(h), n, 0);
    memcpy(out, &h, sizeof(h));
    return (int)sizeof(h) + n;
}

VHU_EXPORT int vhu_core_state_import(struct vhu_core *c, const void *buf, size_t len)
{
    struct vhu_device *dev = c->dev;
    const uint8_t *in = buf;
    const char *why = NULL;
    struct state_hdr h;
    int r;

    if (!dev->state_size)
        return -ENOTSUP;
    if (len < sizeof(h)) {
        why = "shorter than its header";
    } else {
        memcpy(&h, in, sizeof(h));
        why = hdr_check(dev, &h);
        if (!why && len != sizeof(h) + h.size)
            why = "length does not match its header";
        if (!why && state_crc(&h, in + sizeof(h)) != h.crc)
            why = "checksum mismatch";
    }
    if (why) {
        vhu_err("%s: device state from the frontend refused (%s); the device keeps its own",
                dev->name, why);
        return -EINVAL;
    }
    r = dev->ops->state_load(dev, in + sizeof(h), h.size);
    if (r < 0) {
        vhu_err("%s: device state from the frontend refused by the device", dev->name);
        return r;
    }
    vhu_info("%s: device state loaded from the frontend (%u bytes)", dev->name, h.size);
    vhu_core_state_save(c); /* a crash from here on restores this state */
    return 0;
}
