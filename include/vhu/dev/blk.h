/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_DEV_BLK_H
#define VHU_DEV_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "vhu/device.h"

/*
 * virtio-blk (VIRTIO 1.3 §5.2): a block device backed by a regular file or a block device (reads
 * and writes go straight between the guest's buffers and the file through io_uring, one ring per
 * queue), or by the null store (no backing at all, for benchmarks).
 */

/* Feature bits (§5.2.3). */
#define VHU_VIRTIO_BLK_F_SIZE_MAX 1
#define VHU_VIRTIO_BLK_F_SEG_MAX 2
#define VHU_VIRTIO_BLK_F_GEOMETRY 4
#define VHU_VIRTIO_BLK_F_RO 5
#define VHU_VIRTIO_BLK_F_BLK_SIZE 6
#define VHU_VIRTIO_BLK_F_FLUSH 9
#define VHU_VIRTIO_BLK_F_TOPOLOGY 10
#define VHU_VIRTIO_BLK_F_CONFIG_WCE 11
#define VHU_VIRTIO_BLK_F_MQ 12
#define VHU_VIRTIO_BLK_F_DISCARD 13
#define VHU_VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types (§5.2.6). */
#define VHU_VIRTIO_BLK_T_IN 0
#define VHU_VIRTIO_BLK_T_OUT 1
#define VHU_VIRTIO_BLK_T_FLUSH 4
#define VHU_VIRTIO_BLK_T_GET_ID 8
#define VHU_VIRTIO_BLK_T_GET_LIFETIME 10
#define VHU_VIRTIO_BLK_T_DISCARD 11
#define VHU_VIRTIO_BLK_T_WRITE_ZEROES 13
#define VHU_VIRTIO_BLK_T_SECURE_ERASE 14

/* Status byte values (§5.2.6). */
#define VHU_VIRTIO_BLK_S_OK 0
#define VHU_VIRTIO_BLK_S_IOERR 1
#define VHU_VIRTIO_BLK_S_UNSUPP 2

#define VHU_VIRTIO_BLK_ID_BYTES 20
#define VHU_VIRTIO_BLK_SECTOR_SIZE 512
#define VHU_VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP 1

/* Every field little-endian on the wire (§5.2.4); vhu runs on little-endian hosts only. */
struct vhu_virtio_blk_geometry {
    uint16_t cylinders;
    uint8_t heads;
    uint8_t sectors;
};

struct vhu_virtio_blk_topology {
    uint8_t physical_block_exp; /* logical blocks per physical block (log2) */
    uint8_t alignment_offset;   /* offset of the first aligned logical block */
    uint16_t min_io_size;       /* suggested minimum I/O size, in logical blocks */
    uint32_t opt_io_size;       /* optimal sustained I/O size, in logical blocks */
};

struct vhu_virtio_blk_zoned_characteristics {
    uint32_t zone_sectors;
    uint32_t max_open_zones;
    uint32_t max_active_zones;
    uint32_t max_append_sectors;
    uint32_t write_granularity;
    uint8_t model;
    uint8_t unused2[3];
};

/* §5.2.4: the whole layout; fields of features the device does not offer read as zero. */
struct vhu_virtio_blk_config {
    uint64_t capacity; /* in 512-byte sectors, whatever blk_size is */
    uint32_t size_max;
    uint32_t seg_max;
    struct vhu_virtio_blk_geometry geometry;
    uint32_t blk_size;
    struct vhu_virtio_blk_topology topology;
    uint8_t writeback;
    uint8_t unused0;
    uint16_t num_queues;
    uint32_t max_discard_sectors;
    uint32_t max_discard_seg;
    uint32_t discard_sector_alignment;
    uint32_t max_write_zeroes_sectors;
    uint32_t max_write_zeroes_seg;
    uint8_t write_zeroes_may_unmap;
    uint8_t unused1[3];
    uint32_t max_secure_erase_sectors;
    uint32_t max_secure_erase_seg;
    uint32_t secure_erase_sector_alignment;
    struct vhu_virtio_blk_zoned_characteristics zoned;
};

/* §5.2.6: the 16 readable bytes every request starts with. */
struct vhu_virtio_blk_outhdr {
    uint32_t type;
    uint32_t ioprio; /* "reserved" in the spec */
    uint64_t sector;
};

/* §5.2.6: one range of a DISCARD or WRITE_ZEROES request. */
struct vhu_virtio_blk_discard_write_zeroes {
    uint64_t sector;
    uint32_t num_sectors;
    uint32_t flags;
};

_Static_assert(sizeof(struct vhu_virtio_blk_config) == 96, "virtio_blk_config layout");
_Static_assert(sizeof(struct vhu_virtio_blk_outhdr) == 16, "virtio_blk_outhdr layout");
_Static_assert(sizeof(struct vhu_virtio_blk_discard_write_zeroes) == 16, "dwz layout");

/* How a file store does its I/O. */
enum vhu_blk_engine {
    VHU_BLK_ENGINE_AUTO = 0, /* sync for memory-backed files without non-blocking reads, else
                              * io_uring */
    VHU_BLK_ENGINE_IO_URING, /* io_uring, batched submissions, completions through an eventfd */
    VHU_BLK_ENGINE_SYNC,     /* one system call per operation on the queue's thread */
};

/* Every field's zero value is the default. */
struct vhu_blk_opts {
    const char *path;        /* regular file or block device (ignored when null_size > 0) */
    uint64_t null_size;      /* > 0: the null store of this many bytes instead of a file */
    bool read_only;          /* open O_RDONLY, offer VIRTIO_BLK_F_RO, refuse writes */
    bool direct;             /* O_DIRECT: guest buffers must then be aligned for the file */
    enum vhu_blk_engine engine;
    bool writethrough;       /* initial writeback field 0 (default: 1, a writeback cache) */
    const char *serial;      /* GET_ID string, at most 20 bytes; NULL: empty */
    uint16_t num_queues;     /* 0: 1 */
    uint16_t max_queue_size; /* 0: 256 */
    uint32_t seg_max;        /* data segments per request; 0: 126; at most 1022 */
    uint32_t blk_size;       /* logical block size, 512 or 4096; 0: 512 */
    /* Ceph RBD store instead of a file (when vhu is built with librbd, else -ENOTSUP):
     * "POOL/IMAGE", "POOL/NAMESPACE/IMAGE", "...@SNAP" (a snapshot: read-only). */
    const char *rbd;
    const char *rbd_conf;    /* ceph.conf path; NULL: Ceph's default search ($CEPH_CONF first) */
    const char *rbd_id;      /* client name without "client."; NULL: admin */
    /* An NBD export instead of a file (when non-NULL and null_size is 0): nbd://host[:port]/name
     * or nbd+unix:///name?socket=PATH, through libnbd. Size and read-only come from the server;
     * more than one queue needs a server that advertises multi-conn. */
    const char *nbd_uri;
    /* NBD: a request not completed this long after it was queued (the server gone and not back,
     * or not answering) fails with an I/O error; meanwhile the queue reconnects and retries.
     * 0: 30000. */
    uint32_t nbd_timeout_ms;
};

/* Whether this build has the RBD store (vhu_blk_opts.rbd). */
bool vhu_blk_has_rbd(void);

/*
 * Open the backing store and build the device. The size must be a multiple of blk_size (and so
 * of 512). -EINVAL for bad options, -errno from open/fstat/ioctl.
 */
int vhu_blk_new(const struct vhu_blk_opts *opts, struct vhu_device **out);
/* Capacity in 512-byte sectors. */
uint64_t vhu_blk_capacity(const struct vhu_device *dev);
/*
 * Grow the disk to size bytes (a multiple of the block size) while it runs: a file is extended
 * (sparse), the null store just grows, a block device must already be that large; NBD and RBD
 * cannot (-ENOTSUP). Shrinking is refused (-EINVAL); the same size is a no-op. The config
 * space's capacity changes at once; the driver learns it through
 * vhu_backend_config_changed(). Control thread.
 */
int vhu_blk_resize(struct vhu_device *dev, uint64_t size);
/* The engine a device's store runs: "io_uring", "sync", "null" for the null store, "nbd",
 * "rbd". */
const char *vhu_blk_engine_name(const struct vhu_device *dev);

#endif
