/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_PROTO_VFIO_USER_H
#define VHU_PROTO_VFIO_USER_H

/*
 * vfio-user wire format (QEMU docs/interop/vfio-user.rst, protocol 0.x): a 16-byte header, then a
 * command's payload; fds in SCM_RIGHTS with the first byte. Host endianness. The region, irq and
 * flag constants are linux/vfio.h's (the protocol reuses the VFIO ioctl ABI); the structs are
 * spelt out here because some differ from their ioctl twins (device info has no cap_offset).
 */
#include <linux/vfio.h>
#include <stddef.h>
#include <stdint.h>

#ifdef VHU_DEVICE_BUILD
#error "proto/vfio_user.h is not part of the device API"
#endif

/* Commands (vfio-user.rst "Commands"). */
enum {
    VFU_CMD_VERSION = 1,
    VFU_CMD_DMA_MAP = 2,
    VFU_CMD_DMA_UNMAP = 3,
    VFU_CMD_DEVICE_GET_INFO = 4,
    VFU_CMD_DEVICE_GET_REGION_INFO = 5,
    VFU_CMD_DEVICE_GET_REGION_IO_FDS = 6,
    VFU_CMD_DEVICE_GET_IRQ_INFO = 7,
    VFU_CMD_DEVICE_SET_IRQS = 8,
    VFU_CMD_REGION_READ = 9,
    VFU_CMD_REGION_WRITE = 10,
    VFU_CMD_DMA_READ = 11,
    VFU_CMD_DMA_WRITE = 12,
    VFU_CMD_DEVICE_RESET = 13,
    VFU_CMD_REGION_WRITE_MULTI = 15,
    VFU_CMD_DEVICE_FEATURE = 16,
    VFU_CMD_MIG_DATA_READ = 17,
    VFU_CMD_MIG_DATA_WRITE = 18,
};

struct vfu_hdr {
    uint16_t msg_id;
    uint16_t cmd;
    uint32_t size;   /* the whole message, header included */
    uint32_t flags;  /* VFU_F_* */
    uint32_t error;  /* errno, in a reply with VFU_F_ERROR */
};
#define VFU_F_TYPE_MASK 0xfu
#define VFU_F_TYPE_COMMAND 0x0u
#define VFU_F_TYPE_REPLY 0x1u
#define VFU_F_NO_REPLY (1u << 4)
#define VFU_F_ERROR (1u << 5)

/* What vhu speaks: 0.1. */
#define VFU_VERSION_MAJOR 0
#define VFU_VERSION_MINOR 1
struct vfu_version {
    uint16_t major;
    uint16_t minor;
    /* then optional JSON, NUL-terminated: {"capabilities": {...}} */
};
/* Defaults of absent capabilities (vfio-user.rst "Version"). */
#define VFU_DEFAULT_MAX_FDS 1
#define VFU_DEFAULT_MAX_DATA_XFER (1u << 20)
#define VFU_DEFAULT_PGSIZES 4096ull

struct vfu_dma_map {
    uint32_t argsz;
    uint32_t flags;    /* VFU_DMA_READ | VFU_DMA_WRITE */
    uint64_t offset;   /* in the fd */
    uint64_t addr;
    uint64_t size;
};
#define VFU_DMA_READ (1u << 0)
#define VFU_DMA_WRITE (1u << 1)

struct vfu_dma_unmap {
    uint32_t argsz;
    uint32_t flags;    /* VFU_DMA_UNMAP_ALL, or 0 */
    uint64_t addr;
    uint64_t size;
};
#define VFU_DMA_UNMAP_ALL (1u << 1) /* VFIO_DMA_UNMAP_FLAG_ALL: addr and size 0 */

struct vfu_device_info {
    uint32_t argsz;
    uint32_t flags;    /* VFIO_DEVICE_FLAGS_RESET | VFIO_DEVICE_FLAGS_PCI */
    uint32_t num_regions;
    uint32_t num_irqs;
};

/* Same layout as struct vfio_region_info; capabilities follow at cap_offset. */
struct vfu_region_info {
    uint32_t argsz;
    uint32_t flags;    /* VFIO_REGION_INFO_FLAG_* */
    uint32_t index;
    uint32_t cap_offset;
    uint64_t size;
    uint64_t offset;   /* mmap offset of the region in the fd sent with the reply */
};

/* Capability header + the sparse mmap capability (linux/vfio.h layouts). */
struct vfu_cap_hdr {
    uint16_t id;       /* VFIO_REGION_INFO_CAP_SPARSE_MMAP */
    uint16_t version;  /* 1 */
    uint32_t next;     /* from the start of the region info; 0: last */
};
struct vfu_cap_sparse {
    struct vfu_cap_hdr hdr;
    uint32_t nr_areas;
    uint32_t reserved;
    /* then nr_areas struct vfu_sparse_area */
};
struct vfu_sparse_area {
    uint64_t offset;   /* in the region; the mmap offset is region offset + this */
    uint64_t size;
};

struct vfu_io_fds {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t count;
    /* then count struct vfu_io_fd */
};
struct vfu_io_fd {
    uint64_t offset;
    uint64_t size;
    uint32_t fd_index;
    uint32_t type;     /* VFU_IO_FD_IOEVENTFD */
    uint32_t flags;    /* KVM_IOEVENTFD_FLAG_*; vhu sends 0 (no datamatch) */
    uint32_t padding;
    uint64_t datamatch;
};
#define VFU_IO_FD_IOEVENTFD 0u
#define VFU_IO_FD_IOREGIONFD 1u

/* Same layout as struct vfio_irq_info. */
struct vfu_irq_info {
    uint32_t argsz;
    uint32_t flags;    /* VFIO_IRQ_INFO_* */
    uint32_t index;    /* VFIO_PCI_*_IRQ_INDEX */
    uint32_t count;
};

/* Same layout as struct vfio_irq_set; count bools follow with DATA_BOOL. */
struct vfu_irq_set {
    uint32_t argsz;
    uint32_t flags;    /* one VFIO_IRQ_SET_DATA_* | one VFIO_IRQ_SET_ACTION_* */
    uint32_t index;
    uint32_t start;
    uint32_t count;
};

/* REGION_READ / REGION_WRITE request and reply; data follows (write request, read reply). */
struct vfu_region_access {
    uint64_t offset;
    uint32_t region;
    uint32_t count;
};

_Static_assert(sizeof(struct vfu_hdr) == 16, "vfio-user header");
_Static_assert(sizeof(struct vfu_dma_map) == 32, "DMA_MAP payload");
_Static_assert(sizeof(struct vfu_dma_unmap) == 24, "DMA_UNMAP payload");
_Static_assert(sizeof(struct vfu_region_info) == 32, "region info");
_Static_assert(sizeof(struct vfu_cap_sparse) == 16, "sparse mmap cap");
_Static_assert(sizeof(struct vfu_io_fd) == 40, "io fd sub-region");
_Static_assert(sizeof(struct vfu_irq_set) == 20, "irq set");
_Static_assert(sizeof(struct vfu_region_access) == 16, "region access");
_Static_assert(VFIO_PCI_NUM_REGIONS == 9 && VFIO_PCI_NUM_IRQS == 5, "vfio-pci indexes");

/* vhu's limits, as both ends announce them in VERSION. */
#define VFU_MAX_FDS 64                      /* fds per message we accept (VHU_SOCK_MAX_FDS) */
#define VFU_MAX_DATA_XFER (1u << 20)         /* REGION_READ/WRITE count */
/* The largest payload vhu receives: a region access with a full data transfer. */
#define VFU_MAX_PAYLOAD (sizeof(struct vfu_region_access) + VFU_MAX_DATA_XFER)
#define VFU_MAX_MSG (sizeof(struct vfu_hdr) + VFU_MAX_PAYLOAD)

/* Receive state: one message (header + payload in buf) and its fds. */
struct vfu_rx {
    uint8_t *buf;     /* cap bytes, the caller's */
    size_t cap;
    size_t got;       /* bytes of the current message read so far */
    int fds[VFU_MAX_FDS];
    unsigned nfds;
};

/* Ready rx over buf (no fds). */
void vfu_rx_init(struct vfu_rx *rx, uint8_t *buf, size_t cap);
static inline const struct vfu_hdr *vfu_rx_hdr(const struct vfu_rx *rx)
{
    return (const struct vfu_hdr *)rx->buf;
}
static inline size_t vfu_rx_payload_len(const struct vfu_rx *rx)
{
    return vfu_rx_hdr(rx)->size - sizeof(struct vfu_hdr);
}
static inline uint8_t *vfu_rx_payload(const struct vfu_rx *rx)
{
    return rx->buf + sizeof(struct vfu_hdr);
}
/* Close the fds rx holds and forget any partial message. */
void vfu_rx_reset(struct vfu_rx *rx);

/*
 * Read what is queued of one message, never blocking. 0: a whole message is in rx (header size
 * checked: 16 <= size <= cap; fds only with its first byte); the next call starts the next one.
 * -EAGAIN: partial, call again when readable. -ECONNRESET: the peer closed between messages.
 * Other errors (-EMSGSIZE, -EBADMSG: too many fds or fds past the first chunk, -EPIPE: closed
 * inside a message) mean the stream is lost. On every error rx holds no fds.
 */
int vfu_recv_step(int sock, struct vfu_rx *rx);
/* Step until a whole message or the deadline (ms; whole message, however it dribbles). */
int vfu_recv_timeout(int sock, struct vfu_rx *rx, int timeout_ms);

/* Send header (size filled in) + payload + fds (with the first byte), 1 s for the whole. */
int vfu_send(int sock, struct vfu_hdr *h, const void *payload, size_t len, const void *data,
             size_t data_len, const int *fds, unsigned nfds);

/* VERSION capabilities (vfio-user.rst "Version"); absent ones take the spec's defaults. */
struct vfu_caps {
    uint32_t max_msg_fds;
    uint32_t max_data_xfer_size;
    uint32_t max_dma_maps;
    uint64_t pgsizes;
};
#define VFU_CAPS_DEFAULT                                                                       \
    ((struct vfu_caps){.max_msg_fds = VFU_DEFAULT_MAX_FDS,                                     \
                       .max_data_xfer_size = VFU_DEFAULT_MAX_DATA_XFER,                        \
                       .max_dma_maps = 65535, .pgsizes = VFU_DEFAULT_PGSIZES})
/*
 * Parse the version data (len bytes after major/minor; 0: none). It must be a NUL-terminated
 * JSON object; "capabilities", if present, an object whose known members are non-negative
 * integers in range. Unknown members are ignored. -EINVAL on anything malformed.
 */
int vfu_caps_parse(const void *data, size_t len, struct vfu_caps *out);
/* Format {"capabilities":{...}} into buf with its NUL; returns the length with the NUL, or
 * -ENOSPC. */
int vfu_caps_format(const struct vfu_caps *c, char *buf, size_t cap);

/* The name of a command, for messages ("REGION_READ"; "?" for unknown). */
const char *vfu_cmd_name(unsigned cmd);

#endif
