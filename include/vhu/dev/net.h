/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_DEV_NET_H
#define VHU_DEV_NET_H

#include <stdint.h>

#include "vhu/device.h"

/*
 * virtio-net (VIRTIO 1.3 §5.1) as served over vhost-user: the frontend (QEMU) keeps the control
 * queue, so the device has receive/transmit pairs only: queue 2k is receiveq k, 2k+1 transmitq k.
 * Where the packets go is a port: reflect, sink or source (see enum vhu_net_port_kind).
 */

/* Feature bits (§5.1.3). */
#define VHU_VIRTIO_NET_F_CSUM 0
#define VHU_VIRTIO_NET_F_GUEST_CSUM 1
#define VHU_VIRTIO_NET_F_CTRL_GUEST_OFFLOADS 2
#define VHU_VIRTIO_NET_F_MTU 3
#define VHU_VIRTIO_NET_F_MAC 5
#define VHU_VIRTIO_NET_F_GUEST_TSO4 7
#define VHU_VIRTIO_NET_F_GUEST_TSO6 8
#define VHU_VIRTIO_NET_F_GUEST_ECN 9
#define VHU_VIRTIO_NET_F_GUEST_UFO 10
#define VHU_VIRTIO_NET_F_HOST_TSO4 11
#define VHU_VIRTIO_NET_F_HOST_TSO6 12
#define VHU_VIRTIO_NET_F_HOST_ECN 13
#define VHU_VIRTIO_NET_F_HOST_UFO 14
#define VHU_VIRTIO_NET_F_MRG_RXBUF 15
#define VHU_VIRTIO_NET_F_STATUS 16
#define VHU_VIRTIO_NET_F_CTRL_VQ 17
#define VHU_VIRTIO_NET_F_GUEST_ANNOUNCE 21
#define VHU_VIRTIO_NET_F_MQ 22

/* config.status (§5.1.4). */
#define VHU_VIRTIO_NET_S_LINK_UP 1
#define VHU_VIRTIO_NET_S_ANNOUNCE 2

/* virtio_net_hdr flags and gso_type (§5.1.6). */
#define VHU_VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define VHU_VIRTIO_NET_HDR_F_DATA_VALID 2
#define VHU_VIRTIO_NET_HDR_F_RSC_INFO 4
#define VHU_VIRTIO_NET_HDR_GSO_NONE 0
#define VHU_VIRTIO_NET_HDR_GSO_TCPV4 1
#define VHU_VIRTIO_NET_HDR_GSO_UDP 3
#define VHU_VIRTIO_NET_HDR_GSO_TCPV6 4
#define VHU_VIRTIO_NET_HDR_GSO_ECN 0x80

#define VHU_NET_SWITCH_MAX_PORTS 64
#define VHU_VIRTIO_NET_MAX_QUEUE_PAIRS 128 /* what vhu offers at most (§5.1.4 allows 0x8000) */

/* §5.1.4, up to and including mtu; little-endian, vhu runs on little-endian hosts only. */
struct vhu_virtio_net_config {
    uint8_t mac[6];
    uint16_t status;
    uint16_t max_virtqueue_pairs;
    uint16_t mtu;
};

/* §5.1.6: with VIRTIO_F_VERSION_1 every packet starts with these 12 bytes. */
struct vhu_virtio_net_hdr_v1 {
    uint8_t flags;
    uint8_t gso_type;
    uint16_t hdr_len;
    uint16_t gso_size;
    uint16_t csum_start;
    uint16_t csum_offset;
    uint16_t num_buffers;
};

_Static_assert(sizeof(struct vhu_virtio_net_config) == 12, "virtio_net_config layout");
_Static_assert(sizeof(struct vhu_virtio_net_hdr_v1) == 12, "virtio_net_hdr_v1 layout");

enum vhu_net_port_kind {
    /* Each transmitted frame comes back on the receive queue of the same pair, source and
     * destination MACs swapped. Offloads pass through. Both queues of a pair must be owned by
     * one thread (vhud: at most one worker; see docs). When the receive queue has no room the
     * frame stays in the transmit ring (backpressure), so nothing is dropped for lack of
     * buffers; frames too big for a non-mergeable buffer are dropped and counted. */
    VHU_NET_PORT_REFLECT,
    /* Counts and drops transmitted frames; posts nothing to the receive queues. */
    VHU_NET_PORT_SINK,
    /* Fills posted receive buffers with source_size-byte frames, as fast as they come. */
    VHU_NET_PORT_SOURCE,
    /* The host's network: a Linux tap device named tap_name (created if missing, one tap queue
     * per pair), with virtio-net headers; checksum and TSO offloads pass through both ways. */
    VHU_NET_PORT_TAP,
    /* A port of a built-in L2 learning switch (opts.sw) joining several net devices (who may
     * send from which address: vhu_net_switch_opts): each frame is copied once, from the
     * sender's transmit buffers straight into the receiver's receive buffers; broadcast, multicast and unknown destinations are flooded. A receiver
     * without posted buffers loses the frame (counted), as on a real switch: one slow or
     * hostile guest never stalls the others. No offloads are offered (a frame must be valid for
     * every receiver). Every queue of every device of one switch must run on one thread (a
     * queue starting elsewhere is refused), and devices join and leave the switch (created,
     * destroyed) only while none of its queues runs: vhud creates them all, then serves, and
     * ends every session before destroying any. */
    VHU_NET_PORT_SWITCH,
};

struct vhu_net_switch;

/*
 * Source addresses (a guest must not take another's traffic, nor fill the address table): each
 * port's device MAC is its own from the start; a port may use `learn` more addresses, learnt
 * from its first frames and forgotten after age_seconds without a frame (or when the port's
 * queues all stop); a frame from any other source is dropped and counted (spoofed).
 */
#define VHU_NET_SWITCH_MAX_LEARN 1024u
#define VHU_NET_SWITCH_LEARN_NONE 0xffffffffu /* learn: only the device's MAC */

/* Every field's zero value is the default. */
struct vhu_net_switch_opts {
    /* Addresses a port may use besides its device's MAC: 0: 1 (QEMU gives a guest on vhost-user
     * a MAC of its own, which the device never sees); VHU_NET_SWITCH_LEARN_NONE: none; at most
     * VHU_NET_SWITCH_MAX_LEARN (guests bridging others: containers, nested VMs). */
    uint32_t learn;
    uint32_t age_seconds; /* 0: 300 */
};

/* An empty switch; devices join it with vhu_net_new(port = VHU_NET_PORT_SWITCH, sw = it).
 * Two devices of one switch must have different MACs. -EINVAL: learn out of range. */
int vhu_net_switch_new_opts(const struct vhu_net_switch_opts *opts, struct vhu_net_switch **out);
/* With the default options. */
int vhu_net_switch_new(struct vhu_net_switch **out);
/* Only after every device of the switch was destroyed. */
void vhu_net_switch_free(struct vhu_net_switch *sw);

struct vhu_net_switch_stats {
    uint64_t unicast;   /* frames sent to one known port */
    uint64_t flooded;   /* frames sent to every other port (broadcast, multicast, unknown) */
    uint64_t copies;    /* frames written into a receiver's buffers */
    uint64_t drops;     /* deliveries lost: receiver without buffers or not running */
    uint64_t learned;   /* addresses learnt (or moved from a port whose entry aged) */
    uint64_t spoofed;   /* frames dropped for their source address: another port's, beyond
                         * the sender's quota, multicast or zero */
    uint64_t aged;      /* learnt addresses forgotten after age_seconds without a frame */
    uint64_t fdb_full;  /* addresses not learnt: the table was full (frame dropped) */
};
void vhu_net_switch_get_stats(const struct vhu_net_switch *sw, struct vhu_net_switch_stats *st);

/* Every field's zero value is the default. */
struct vhu_net_opts {
    enum vhu_net_port_kind port;
    uint32_t source_size;    /* SOURCE: frame bytes (Ethernet header included), 60..mtu+14 */
    const char *tap_name;    /* TAP: interface name */
    struct vhu_net_switch *sw; /* SWITCH: the switch to join (at most VHU_NET_SWITCH_MAX_PORTS) */
    uint8_t mac[6];          /* all zero: a random locally administered address */
    uint16_t mtu;            /* 0: 1500; 68..65521 */
    uint16_t queue_pairs;    /* 0: 1; at most VHU_VIRTIO_NET_MAX_QUEUE_PAIRS */
    uint16_t max_queue_size; /* 0: 1024 */
};

int vhu_net_new(const struct vhu_net_opts *opts, struct vhu_device **out);

/*
 * Counters of queue q (2k: receiveq k, 2k+1: transmitq k), kept across ring restarts.
 * packets/bytes: frames delivered (rx) or taken from the driver (tx), Ethernet bytes without
 * the virtio header. drops: frames lost on that queue (rx: no room in a non-mergeable buffer,
 * receive queue not running; tx: the port refused them or they were malformed). errors: the
 * malformed ones among the drops (tx chain shorter than the header, runt frame). gso: the
 * GSO frames among the packets (header gso_type other than NONE: TSO offloads at work).
 */
struct vhu_net_stats {
    uint64_t packets;
    uint64_t bytes;
    uint64_t drops;
    uint64_t errors;
    uint64_t gso;
};
int vhu_net_get_stats(const struct vhu_device *dev, unsigned q, struct vhu_net_stats *st);
/* The MAC address in config space. */
void vhu_net_get_mac(const struct vhu_device *dev, uint8_t mac[6]);

#endif
