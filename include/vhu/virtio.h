/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_VIRTIO_H
#define VHU_VIRTIO_H

#include <stdbool.h>
#include <stdint.h>

/* Feature bits, spelled as in the VIRTIO 1.3 specification (6 Reserved Feature Bits). */
#define VHU_VIRTIO_F_NOTIFY_ON_EMPTY 24
#define VHU_VIRTIO_F_ANY_LAYOUT 27
#define VHU_VIRTIO_RING_F_INDIRECT_DESC 28
#define VHU_VIRTIO_RING_F_EVENT_IDX 29
#define VHU_VIRTIO_F_VERSION_1 32
#define VHU_VIRTIO_F_ACCESS_PLATFORM 33
#define VHU_VIRTIO_F_RING_PACKED 34
#define VHU_VIRTIO_F_IN_ORDER 35
#define VHU_VIRTIO_F_ORDER_PLATFORM 36
#define VHU_VIRTIO_F_SR_IOV 37
#define VHU_VIRTIO_F_NOTIFICATION_DATA 38
#define VHU_VIRTIO_F_RING_RESET 40

/* Device status bits (virtio 2.1). */
#define VHU_VIRTIO_CONFIG_S_ACKNOWLEDGE 1
#define VHU_VIRTIO_CONFIG_S_DRIVER 2
#define VHU_VIRTIO_CONFIG_S_DRIVER_OK 4
#define VHU_VIRTIO_CONFIG_S_FEATURES_OK 8
#define VHU_VIRTIO_CONFIG_S_NEEDS_RESET 0x40
#define VHU_VIRTIO_CONFIG_S_FAILED 0x80

/* Device ids (virtio 5). */
#define VHU_VIRTIO_ID_NET 1
#define VHU_VIRTIO_ID_BLOCK 2
#define VHU_VIRTIO_ID_CONSOLE 3
#define VHU_VIRTIO_ID_RNG 4

/* Typed feature test: never `features & BIT_NUMBER`. */
static inline bool vhu_has_feature(uint64_t features, unsigned bit)
{
    return bit < 64 && (features & (1ULL << bit)) != 0;
}

static inline uint64_t vhu_feature(unsigned bit)
{
    return 1ULL << bit;
}

/* Split ring layout (virtio 2.7). */
#define VHU_VRING_DESC_F_NEXT 1
#define VHU_VRING_DESC_F_WRITE 2
#define VHU_VRING_DESC_F_INDIRECT 4
#define VHU_VRING_USED_F_NO_NOTIFY 1
#define VHU_VRING_AVAIL_F_NO_INTERRUPT 1

struct vhu_vring_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct vhu_vring_avail {
    uint16_t flags;
    uint16_t idx;
    uint16_t ring[]; /* followed by used_event */
};

struct vhu_vring_used_elem {
    uint32_t id;
    uint32_t len;
};

struct vhu_vring_used {
    uint16_t flags;
    uint16_t idx;
    struct vhu_vring_used_elem ring[]; /* followed by avail_event */
};

/* Packed ring layout (virtio 2.8). */
#define VHU_VRING_PACKED_DESC_F_AVAIL 7
#define VHU_VRING_PACKED_DESC_F_USED 15
#define VHU_VRING_PACKED_EVENT_FLAG_ENABLE 0x0
#define VHU_VRING_PACKED_EVENT_FLAG_DISABLE 0x1
#define VHU_VRING_PACKED_EVENT_FLAG_DESC 0x2
#define VHU_VRING_PACKED_EVENT_F_WRAP_CTR 15

struct vhu_vring_packed_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t id;
    uint16_t flags;
};

struct vhu_vring_packed_desc_event {
    uint16_t off_wrap;
    uint16_t flags;
};

/* virtio 2.7.10: vring_need_event(). */
static inline bool vhu_vring_need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx)
{
    return (uint16_t)(new_idx - event_idx - 1) < (uint16_t)(new_idx - old_idx);
}

/* Ring sizes in bytes (virtio 2.7 "Virtqueue Part Sizes"). */
static inline uint64_t vhu_split_desc_size(uint16_t num) { return 16ULL * num; }
static inline uint64_t vhu_split_avail_size(uint16_t num) { return 6ULL + 2ULL * num; }
static inline uint64_t vhu_split_used_size(uint16_t num) { return 6ULL + 8ULL * num; }
static inline uint64_t vhu_packed_desc_size(uint16_t num) { return 16ULL * num; }
#define VHU_PACKED_EVENT_SIZE 4ULL

#endif
