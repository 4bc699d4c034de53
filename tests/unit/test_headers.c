/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Public headers: every header under include/vhu compiles together with the kernel's virtio uapi
 * headers (here the kernel's first; test_headers_vhu_first.c includes them the other way round),
 * and vhu's spec structs have the sizes and offsets of the VIRTIO 1.3 specification. Most checks
 * are static: the file does not build when a layout or a value drifts.
 */
#include <linux/vhost.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>
#include <stddef.h>

#include "vhu/backend.h"
#include "vhu/dev/blk.h"
#include "vhu/dev/net.h"
#include "vhu/dev/rng.h"
#include "vhu/device.h"
#include "vhu/frontend.h"
#include "vhu/log.h"
#include "vhu/loop.h"
#include "vhu/loopback.h"
#include "vhu/mem.h"
#include "vhu/transport.h"
#include "vhu/util.h"
#include "vhu/virtio.h"
#include "vhu/vq.h"
#include "vhu_test.h"

#define OFF(type, field, off) _Static_assert(offsetof(type, field) == (off), #type "." #field)
#define SIZE(type, size) _Static_assert(sizeof(type) == (size), "sizeof " #type)
/* vhu's field sits where the kernel's does. */
#define SAME(vtype, ktype, field)                                                                \
    _Static_assert(offsetof(vtype, field) == offsetof(ktype, field), #vtype "." #field)
#define SAME_VALUE(name) _Static_assert(VHU_##name == name, #name)

/* Split ring (§2.7). */
SIZE(struct vhu_vring_desc, 16);
OFF(struct vhu_vring_desc, addr, 0);
OFF(struct vhu_vring_desc, len, 8);
OFF(struct vhu_vring_desc, flags, 12);
OFF(struct vhu_vring_desc, next, 14);
SIZE(struct vhu_vring_avail, 4);
OFF(struct vhu_vring_avail, idx, 2);
OFF(struct vhu_vring_avail, ring, 4);
SIZE(struct vhu_vring_used_elem, 8);
OFF(struct vhu_vring_used_elem, len, 4);
SIZE(struct vhu_vring_used, 4);
OFF(struct vhu_vring_used, idx, 2);
OFF(struct vhu_vring_used, ring, 4);
SIZE(struct vhu_vring_desc, sizeof(struct vring_desc));
SAME(struct vhu_vring_desc, struct vring_desc, next);
SIZE(struct vhu_vring_used_elem, sizeof(struct vring_used_elem));

/* Packed ring (§2.8). */
SIZE(struct vhu_vring_packed_desc, 16);
OFF(struct vhu_vring_packed_desc, addr, 0);
OFF(struct vhu_vring_packed_desc, len, 8);
OFF(struct vhu_vring_packed_desc, id, 12);
OFF(struct vhu_vring_packed_desc, flags, 14);
SIZE(struct vhu_vring_packed_desc_event, 4);
OFF(struct vhu_vring_packed_desc_event, flags, 2);
SIZE(struct vhu_vring_packed_desc, sizeof(struct vring_packed_desc));
SAME(struct vhu_vring_packed_desc, struct vring_packed_desc, id);
SAME(struct vhu_vring_packed_desc, struct vring_packed_desc, flags);
SIZE(struct vhu_vring_packed_desc_event, sizeof(struct vring_packed_desc_event));

/* virtio-blk (§5.2.4, §5.2.6): every field where the specification puts it. */
SIZE(struct vhu_virtio_blk_config, 96);
OFF(struct vhu_virtio_blk_config, capacity, 0);
OFF(struct vhu_virtio_blk_config, size_max, 8);
OFF(struct vhu_virtio_blk_config, seg_max, 12);
OFF(struct vhu_virtio_blk_config, geometry, 16);
OFF(struct vhu_virtio_blk_config, blk_size, 20);
OFF(struct vhu_virtio_blk_config, topology, 24);
OFF(struct vhu_virtio_blk_config, writeback, 32);
OFF(struct vhu_virtio_blk_config, num_queues, 34);
OFF(struct vhu_virtio_blk_config, max_discard_sectors, 36);
OFF(struct vhu_virtio_blk_config, max_discard_seg, 40);
OFF(struct vhu_virtio_blk_config, discard_sector_alignment, 44);
OFF(struct vhu_virtio_blk_config, max_write_zeroes_sectors, 48);
OFF(struct vhu_virtio_blk_config, max_write_zeroes_seg, 52);
OFF(struct vhu_virtio_blk_config, write_zeroes_may_unmap, 56);
OFF(struct vhu_virtio_blk_config, max_secure_erase_sectors, 60);
OFF(struct vhu_virtio_blk_config, max_secure_erase_seg, 64);
OFF(struct vhu_virtio_blk_config, secure_erase_sector_alignment, 68);
OFF(struct vhu_virtio_blk_config, zoned, 72);
SIZE(struct vhu_virtio_blk_geometry, 4);
SIZE(struct vhu_virtio_blk_topology, 8);
OFF(struct vhu_virtio_blk_topology, opt_io_size, 4);
SIZE(struct vhu_virtio_blk_zoned_characteristics, 24);
OFF(struct vhu_virtio_blk_zoned_characteristics, model, 20);
SAME(struct vhu_virtio_blk_config, struct virtio_blk_config, num_queues);
SAME(struct vhu_virtio_blk_config, struct virtio_blk_config, write_zeroes_may_unmap);
SAME(struct vhu_virtio_blk_config, struct virtio_blk_config, secure_erase_sector_alignment);
SIZE(struct vhu_virtio_blk_outhdr, 16);
OFF(struct vhu_virtio_blk_outhdr, ioprio, 4);
OFF(struct vhu_virtio_blk_outhdr, sector, 8);
SIZE(struct vhu_virtio_blk_outhdr, sizeof(struct virtio_blk_outhdr));
SIZE(struct vhu_virtio_blk_discard_write_zeroes, 16);
OFF(struct vhu_virtio_blk_discard_write_zeroes, num_sectors, 8);
OFF(struct vhu_virtio_blk_discard_write_zeroes, flags, 12);
SIZE(struct vhu_virtio_blk_discard_write_zeroes, sizeof(struct virtio_blk_discard_write_zeroes));

/* virtio-net (§5.1.4 up to mtu, §5.1.6). */
SIZE(struct vhu_virtio_net_config, 12);
OFF(struct vhu_virtio_net_config, status, 6);
OFF(struct vhu_virtio_net_config, max_virtqueue_pairs, 8);
OFF(struct vhu_virtio_net_config, mtu, 10);
SAME(struct vhu_virtio_net_config, struct virtio_net_config, mtu);
SIZE(struct vhu_virtio_net_hdr_v1, 12);
OFF(struct vhu_virtio_net_hdr_v1, hdr_len, 2);
OFF(struct vhu_virtio_net_hdr_v1, gso_size, 4);
OFF(struct vhu_virtio_net_hdr_v1, csum_start, 6);
OFF(struct vhu_virtio_net_hdr_v1, csum_offset, 8);
OFF(struct vhu_virtio_net_hdr_v1, num_buffers, 10);
SIZE(struct vhu_virtio_net_hdr_v1, sizeof(struct virtio_net_hdr_v1));
SAME(struct vhu_virtio_net_hdr_v1, struct virtio_net_hdr_v1, num_buffers);

/* Values the kernel's headers define too. */
SAME_VALUE(VIRTIO_F_NOTIFY_ON_EMPTY);
SAME_VALUE(VIRTIO_F_ANY_LAYOUT);
SAME_VALUE(VIRTIO_RING_F_INDIRECT_DESC);
SAME_VALUE(VIRTIO_RING_F_EVENT_IDX);
SAME_VALUE(VIRTIO_F_VERSION_1);
SAME_VALUE(VIRTIO_F_ACCESS_PLATFORM);
SAME_VALUE(VIRTIO_F_RING_PACKED);
SAME_VALUE(VIRTIO_F_IN_ORDER);
SAME_VALUE(VIRTIO_F_ORDER_PLATFORM);
SAME_VALUE(VIRTIO_F_SR_IOV);
#ifdef VIRTIO_F_NOTIFICATION_DATA
SAME_VALUE(VIRTIO_F_NOTIFICATION_DATA);
#endif
#ifdef VIRTIO_F_RING_RESET
SAME_VALUE(VIRTIO_F_RING_RESET);
#endif
SAME_VALUE(VIRTIO_CONFIG_S_ACKNOWLEDGE);
SAME_VALUE(VIRTIO_CONFIG_S_DRIVER);
SAME_VALUE(VIRTIO_CONFIG_S_DRIVER_OK);
SAME_VALUE(VIRTIO_CONFIG_S_FEATURES_OK);
SAME_VALUE(VIRTIO_CONFIG_S_NEEDS_RESET);
SAME_VALUE(VIRTIO_CONFIG_S_FAILED);
SAME_VALUE(VIRTIO_ID_NET);
SAME_VALUE(VIRTIO_ID_BLOCK);
SAME_VALUE(VIRTIO_ID_CONSOLE);
SAME_VALUE(VIRTIO_ID_RNG);
SAME_VALUE(VRING_DESC_F_NEXT);
SAME_VALUE(VRING_DESC_F_WRITE);
SAME_VALUE(VRING_DESC_F_INDIRECT);
SAME_VALUE(VRING_USED_F_NO_NOTIFY);
SAME_VALUE(VRING_AVAIL_F_NO_INTERRUPT);
SAME_VALUE(VRING_PACKED_DESC_F_AVAIL);
SAME_VALUE(VRING_PACKED_DESC_F_USED);
SAME_VALUE(VRING_PACKED_EVENT_FLAG_ENABLE);
SAME_VALUE(VRING_PACKED_EVENT_FLAG_DISABLE);
SAME_VALUE(VRING_PACKED_EVENT_FLAG_DESC);
SAME_VALUE(VRING_PACKED_EVENT_F_WRAP_CTR);
SAME_VALUE(VIRTIO_BLK_F_SIZE_MAX);
SAME_VALUE(VIRTIO_BLK_F_SEG_MAX);
SAME_VALUE(VIRTIO_BLK_F_GEOMETRY);
SAME_VALUE(VIRTIO_BLK_F_RO);
SAME_VALUE(VIRTIO_BLK_F_BLK_SIZE);
SAME_VALUE(VIRTIO_BLK_F_FLUSH);
SAME_VALUE(VIRTIO_BLK_F_TOPOLOGY);
SAME_VALUE(VIRTIO_BLK_F_CONFIG_WCE);
SAME_VALUE(VIRTIO_BLK_F_MQ);
SAME_VALUE(VIRTIO_BLK_F_DISCARD);
SAME_VALUE(VIRTIO_BLK_F_WRITE_ZEROES);
SAME_VALUE(VIRTIO_BLK_T_IN);
SAME_VALUE(VIRTIO_BLK_T_OUT);
SAME_VALUE(VIRTIO_BLK_T_FLUSH);
SAME_VALUE(VIRTIO_BLK_T_GET_ID);
#ifdef VIRTIO_BLK_T_GET_LIFETIME
SAME_VALUE(VIRTIO_BLK_T_GET_LIFETIME);
#endif
SAME_VALUE(VIRTIO_BLK_T_DISCARD);
SAME_VALUE(VIRTIO_BLK_T_WRITE_ZEROES);
#ifdef VIRTIO_BLK_T_SECURE_ERASE
SAME_VALUE(VIRTIO_BLK_T_SECURE_ERASE);
#endif
SAME_VALUE(VIRTIO_BLK_S_OK);
SAME_VALUE(VIRTIO_BLK_S_IOERR);
SAME_VALUE(VIRTIO_BLK_S_UNSUPP);
SAME_VALUE(VIRTIO_BLK_ID_BYTES);
SAME_VALUE(VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
SAME_VALUE(VIRTIO_NET_F_CSUM);
SAME_VALUE(VIRTIO_NET_F_GUEST_CSUM);
SAME_VALUE(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS);
SAME_VALUE(VIRTIO_NET_F_MTU);
SAME_VALUE(VIRTIO_NET_F_MAC);
SAME_VALUE(VIRTIO_NET_F_GUEST_TSO4);
SAME_VALUE(VIRTIO_NET_F_GUEST_TSO6);
SAME_VALUE(VIRTIO_NET_F_GUEST_ECN);
SAME_VALUE(VIRTIO_NET_F_GUEST_UFO);
SAME_VALUE(VIRTIO_NET_F_HOST_TSO4);
SAME_VALUE(VIRTIO_NET_F_HOST_TSO6);
SAME_VALUE(VIRTIO_NET_F_HOST_ECN);
SAME_VALUE(VIRTIO_NET_F_HOST_UFO);
SAME_VALUE(VIRTIO_NET_F_MRG_RXBUF);
SAME_VALUE(VIRTIO_NET_F_STATUS);
SAME_VALUE(VIRTIO_NET_F_CTRL_VQ);
SAME_VALUE(VIRTIO_NET_F_GUEST_ANNOUNCE);
SAME_VALUE(VIRTIO_NET_F_MQ);
SAME_VALUE(VIRTIO_NET_S_LINK_UP);
SAME_VALUE(VIRTIO_NET_S_ANNOUNCE);
SAME_VALUE(VIRTIO_NET_HDR_F_NEEDS_CSUM);
SAME_VALUE(VIRTIO_NET_HDR_F_DATA_VALID);
SAME_VALUE(VIRTIO_NET_HDR_F_RSC_INFO);
SAME_VALUE(VIRTIO_NET_HDR_GSO_NONE);
SAME_VALUE(VIRTIO_NET_HDR_GSO_TCPV4);
SAME_VALUE(VIRTIO_NET_HDR_GSO_UDP);
SAME_VALUE(VIRTIO_NET_HDR_GSO_TCPV6);
SAME_VALUE(VIRTIO_NET_HDR_GSO_ECN);

/* The other translation unit, where vhu's headers come first. */
int vhu_headers_vhu_first(void);

TEST(vhu_headers_first_compiles)
{
    ASSERT_EQ(vhu_headers_vhu_first(), 16);
}

/* vhu's event-index test agrees with the kernel's for every distance around a wrap. */
TEST(need_event_matches_kernel)
{
    for (unsigned old = 0xfff0; old < 0x10010; old++)
        for (unsigned n = 0; n < 40; n++)
            for (unsigned e = 0; e < 48; e++) {
                uint16_t o16 = (uint16_t)old, n16 = (uint16_t)(old + n);
                uint16_t e16 = (uint16_t)(old + e - 4);
                ASSERT_EQ(vhu_vring_need_event(e16, n16, o16), vring_need_event(e16, n16, o16));
            }
}

/* The ring part sizes vhu computes are the kernel's (split: no padding between parts). */
TEST(ring_part_sizes)
{
    for (unsigned num = 1; num <= 32768; num *= 2) {
        ASSERT_EQ(vhu_split_desc_size((uint16_t)num), num * sizeof(struct vring_desc));
        ASSERT_EQ(vhu_split_avail_size((uint16_t)num),
                  offsetof(struct vring_avail, ring) + (num + 1) * sizeof(__virtio16));
        ASSERT_EQ(vhu_split_used_size((uint16_t)num),
                  offsetof(struct vring_used, ring) + num * sizeof(struct vring_used_elem) + 2);
        ASSERT_EQ(vhu_packed_desc_size((uint16_t)num), num * sizeof(struct vring_packed_desc));
    }
    ASSERT_EQ(VHU_PACKED_EVENT_SIZE, sizeof(struct vring_packed_desc_event));
}
