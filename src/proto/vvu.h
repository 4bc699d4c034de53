/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_PROTO_VVU_H
#define VHU_PROTO_VVU_H

/*
 * virtio-vhost-user (VVU): the PCI device through which a backend (a driver, possibly inside
 * another VM) serves a frontend's vhost-user devices. This header is the register layout vhu's
 * device (src/vvu, `vhud vvu`) implements and vhu's driver (src/transport/vvu) expects. Facts
 * from the virtio spec draft "Vhost-user Device Backend" (virtio-dev 2018-2020) and the QEMU RFC
 * device; where the drafts leave a value open (IDs, offsets, sizes) the choice is vhu's and is
 * documented in docs/vvu.md. All fields little-endian.
 *
 * Summary of the device:
 *   virtqueue 0 (rxq): device -> driver, the frontend's vhost-user messages, one per buffer
 *   virtqueue 1 (txq): driver -> device, replies (VHOST_USER_REPLY_MASK set) for the frontend
 *   no fds cross: memory regions appear in the shared-memory BAR window, a frontend's kick of
 *   vring i becomes notification i (an MSI-X vector, or polling), doorbell i writes the
 *   frontend's call eventfd of vring i.
 */
#include <stdint.h>

#include "proto/vhost_user.h"

/* ---- identities (options of `vhud vvu`; these are the defaults) ---------------------------- */
#define VVU_PCI_VENDOR_ID 0x1af4      /* Red Hat, Inc. (virtio) */
#define VVU_PCI_DEVICE_ID 0x1017      /* the QEMU RFC's value; the 2020 draft used 0x1016 */
#define VVU_VIRTIO_DEVICE_ID 43       /* "vhost-user device backend" in the drafts */
#define VVU_PCI_CLASS 0x0780          /* communication controller, other */
#define VVU_PCI_REVISION 1            /* virtio 1.x modern-only */

/* ---- config space -------------------------------------------------------------------------- */
#define VVU_CFG_SPACE_SIZE 256        /* conventional PCI config space */

/* virtio-pci vendor capability types (virtio 1.x 4.1.4) and the VVU extensions */
#define VVU_PCI_CAP_COMMON_CFG 1
#define VVU_PCI_CAP_NOTIFY_CFG 2
#define VVU_PCI_CAP_ISR_CFG 3
#define VVU_PCI_CAP_DEVICE_CFG 4
#define VVU_PCI_CAP_PCI_CFG 5
#define VVU_PCI_CAP_DOORBELL_CFG 6      /* + le32 doorbell_off_multiplier */
#define VVU_PCI_CAP_NOTIFICATION_CFG 7  /* notification_select / notification_msix_vector */
#define VVU_PCI_CAP_SHARED_MEMORY_CFG 8 /* 64-bit cap (offset_hi, length_hi): the window */

/* struct virtio_pci_cap (16 bytes), as found at a vendor capability (cap_vndr 0x09). */
struct vvu_pci_cap {
    uint8_t cap_vndr;   /* 0x09 */
    uint8_t cap_next;
    uint8_t cap_len;
    uint8_t cfg_type;   /* VVU_PCI_CAP_* */
    uint8_t bar;
    uint8_t id;
    uint8_t padding[2];
    uint32_t offset;    /* within the BAR */
    uint32_t length;
};
/* cfg_type 2 and 6 append a le32 multiplier; cfg_type 8 appends le32 offset_hi, le32 length_hi. */

/* ---- BAR layout (vhu's choice) ------------------------------------------------------------- */
/* BAR0: 32-bit memory, registers. */
#define VVU_BAR_REGS 0
#define VVU_BAR_REGS_SIZE 0x4000
#define VVU_COMMON_OFF 0x0000            /* struct virtio_pci_common_cfg, 0x38 bytes */
#define VVU_COMMON_LEN 0x0038
#define VVU_ISR_OFF 0x0800               /* 1 byte, read-to-clear: bit 0 queue, bit 1 config */
#define VVU_ISR_LEN 0x0001
#define VVU_DEVCFG_OFF 0x1000            /* struct vvu_config */
#define VVU_DEVCFG_LEN 0x0018
#define VVU_NOTIFY_OFF 0x1800            /* rxq/txq notify: NOTIFY_OFF + queue_notify_off * 4 */
#define VVU_NOTIFY_MULT 4
#define VVU_NOTIFY_LEN 0x0008
#define VVU_NOTIFICATION_OFF 0x2000      /* struct vvu_notification_cfg */
#define VVU_NOTIFICATION_LEN 0x0004
#define VVU_DOORBELL_OFF 0x3000          /* doorbell i at DOORBELL_OFF + i * DOORBELL_MULT */
#define VVU_DOORBELL_MULT 4
/* BAR1: 32-bit memory, MSI-X table (16 bytes per vector) and PBA. */
#define VVU_BAR_MSIX 1
#define VVU_BAR_MSIX_SIZE 0x10000
#define VVU_MSIX_TABLE_OFF 0x0000
#define VVU_MSIX_PBA_OFF 0x8000
/* BAR2 (+BAR3): 64-bit prefetchable memory, the shared-memory window. Its size is fixed when
 * the device is created (`vhud vvu --shm-size`, a power of two). */
#define VVU_BAR_SHM 2

/* Limits. */
#define VVU_MAX_VHOST_QUEUES 1024        /* doorbells fit BAR0: 0x3000 + 1024 * 4 = 0x4000 */
#define VVU_DEFAULT_VHOST_QUEUES 64
#define VVU_NUM_VQS 2                    /* rxq, txq */
#define VVU_RXQ 0
#define VVU_TXQ 1
/* MSI-X vectors: enough for config + rxq + txq + one per vhost vring. */
#define VVU_MSIX_VECTORS(max_vhost_queues) (3u + (max_vhost_queues))
#define VVU_NO_VECTOR 0xffff

/* One relayed message: the 12-byte vhost-user header plus its payload, at most this much. A
 * driver posts rxq buffers of this size. */
#define VVU_MSG_MAX (12u + 4096u)

/* ---- device config (BAR0 + VVU_DEVCFG_OFF) ------------------------------------------------- */
struct vvu_config {
    uint32_t status;            /* VVU_S_* */
    uint32_t max_vhost_queues;  /* doorbells and notifications available */
    uint8_t uuid[16];           /* identifies the device (stable per `vhud vvu` instance) */
};
#define VVU_S_BACKEND_UP (1u << 0)   /* set/cleared by the driver */
#define VVU_S_FRONTEND_UP (1u << 1)  /* set/cleared by the device; a change raises a config
                                        interrupt (ISR bit 1, msix_config vector) */

/*
 * Device feature bit 0, VVU_F_FRONTEND_ACK: after a frontend goes, the device takes the next one
 * only once the driver has cleared and set VVU_S_BACKEND_UP again, its sign that it has taken
 * (or dropped) every message the old frontend left on rxq. Without it a frontend that connects
 * at once could get the old one's leftovers in its session (the rxq carries no session tag).
 */
#define VVU_F_FRONTEND_ACK 0

/* ---- notification cfg (BAR0 + VVU_NOTIFICATION_OFF) ---------------------------------------- */
struct vvu_notification_cfg {
    uint16_t notification_select;       /* vring index, < max_vhost_queues */
    uint16_t notification_msix_vector;  /* vector raised on the frontend's kick of that vring,
                                           VVU_NO_VECTOR: none (the driver polls) */
};

/* ---- virtio 1.x common cfg (BAR0 + VVU_COMMON_OFF) ----------------------------------------- */
struct vvu_common_cfg {
    uint32_t device_feature_select;
    uint32_t device_feature;
    uint32_t driver_feature_select;
    uint32_t driver_feature;
    uint16_t msix_config;
    uint16_t num_queues;
    uint8_t device_status;
    uint8_t config_generation;
    uint16_t queue_select;
    uint16_t queue_size;
    uint16_t queue_msix_vector;
    uint16_t queue_enable;
    uint16_t queue_notify_off;
    uint32_t queue_desc_lo;
    uint32_t queue_desc_hi;
    uint32_t queue_driver_lo;
    uint32_t queue_driver_hi;
    uint32_t queue_device_lo;
    uint32_t queue_device_hi;
};
_Static_assert(sizeof(struct vvu_common_cfg) == VVU_COMMON_LEN, "virtio_pci_common_cfg layout");
_Static_assert(sizeof(struct vvu_config) == VVU_DEVCFG_LEN, "vvu config layout");

/*
 * ---- the relay contract -----------------------------------------------------------------------
 * What the device does to a frontend message before it goes on rxq, and what a driver does:
 *  - fds never cross. SET_MEM_TABLE / ADD_MEM_REG / REM_MEM_REG: each region's mmap_offset is
 *    rewritten to the offset in the shared-memory window (BAR2) where the region's first byte
 *    is; the driver maps window[mmap_offset, +memory_size). (vhu's device places regions backed
 *    by one file at their file offsets: the window is that file.)
 *  - SET_VRING_KICK i: the u64 (index, VHOST_USER_VRING_NOFD_MASK) is kept; the kick reaches the
 *    driver as notification i. SET_VRING_CALL i: doorbell i signals the frontend's call fd (a
 *    write of any value). SET_VRING_ERR: the device keeps the fd; no driver-side resource.
 *  - Protocol features whose messages need an fd the device cannot turn into a resource
 *    (LOG_SHMFD, BACKEND_REQ, BACKEND_SEND_FD, INFLIGHT_SHMFD, HOST_NOTIFIER, PAGEFAULT,
 *    INBAND_NOTIFICATIONS, DEVICE_STATE, SHARED_OBJECT, SHMEM, ...) are removed from the
 *    GET_PROTOCOL_FEATURES reply on its way to the frontend: VVU_PROTOCOL_FEATURES_RELAYED
 *    is what may pass. A frontend that sends such a message anyway is disconnected.
 *  - Resources change when the frontend's message reaches the device, before the driver sees
 *    the message.
 *  - txq: a message with VHOST_USER_REPLY_MASK goes to the frontend; anything else (a backend
 *    request: this version has no backend channel) is dropped and counted.
 *  - The device serves the frontend socket only while the driver has DRIVER_OK and
 *    VVU_S_BACKEND_UP set; clearing either (or a device reset) disconnects the frontend.
 *    Frontend disconnect clears VVU_S_FRONTEND_UP and raises a config interrupt; the driver
 *    ends its session (rings stop, memory unmapped) and waits for the next one. With
 *    VVU_F_FRONTEND_ACK the driver then drops what is left on rxq and clears and sets
 *    VVU_S_BACKEND_UP; only then is the next frontend taken.
 */
#define VVU_PROTOCOL_FEATURES_RELAYED                                                           \
    ((1ull << VHOST_USER_PROTOCOL_F_MQ) | (1ull << VHOST_USER_PROTOCOL_F_RARP) |              \
     (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK) | (1ull << VHOST_USER_PROTOCOL_F_NET_MTU) |    \
     (1ull << VHOST_USER_PROTOCOL_F_CONFIG) | (1ull << VHOST_USER_PROTOCOL_F_RESET_DEVICE) |  \
     (1ull << VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS) |                                    \
     (1ull << VHOST_USER_PROTOCOL_F_STATUS))

#endif
