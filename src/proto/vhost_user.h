/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_PROTO_VHOST_USER_H
#define VHU_PROTO_VHOST_USER_H

/*
 * vhost-user wire format, from QEMU docs/interop/vhost-user.rst. Native byte order, packed as
 * the spec lays it out; every struct's size is pinned by a static assert in proto.c.
 */
#ifdef VHU_DEVICE_BUILD
#error "device models must not include protocol headers: use vhu/device.h and vhu/vq.h"
#endif
#ifdef VHU_CORE_BUILD
#error "the device core must not include the vhost-user wire header: transports decode it"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VHOST_USER_VERSION 0x1
#define VHOST_USER_VERSION_MASK 0x3
#define VHOST_USER_REPLY_MASK (1u << 2)
#define VHOST_USER_NEED_REPLY_MASK (1u << 3)

#define VHOST_USER_MAX_FDS 8
#define VHOST_USER_MAX_CONFIG_SIZE 256
#define VHOST_USER_VRING_IDX_MASK 0xffu
#define VHOST_USER_VRING_NOFD_MASK (1u << 8)
#define VHOST_VRING_F_LOG 0

/* VHOST_USER_F_PROTOCOL_FEATURES reuses a reserved virtio feature bit. */
#define VHOST_USER_F_PROTOCOL_FEATURES 30
#define VHOST_F_LOG_ALL 26

/* Protocol feature bits (vhost-user.rst "Protocol features"; bits 20-23 as renumbered in 2026). */
#define VHOST_USER_PROTOCOL_F_MQ 0
#define VHOST_USER_PROTOCOL_F_LOG_SHMFD 1
#define VHOST_USER_PROTOCOL_F_RARP 2
#define VHOST_USER_PROTOCOL_F_REPLY_ACK 3
#define VHOST_USER_PROTOCOL_F_NET_MTU 4
#define VHOST_USER_PROTOCOL_F_BACKEND_REQ 5
#define VHOST_USER_PROTOCOL_F_CROSS_ENDIAN 6
#define VHOST_USER_PROTOCOL_F_CRYPTO_SESSION 7
#define VHOST_USER_PROTOCOL_F_PAGEFAULT 8
#define VHOST_USER_PROTOCOL_F_CONFIG 9
#define VHOST_USER_PROTOCOL_F_BACKEND_SEND_FD 10
#define VHOST_USER_PROTOCOL_F_HOST_NOTIFIER 11
#define VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD 12
#define VHOST_USER_PROTOCOL_F_RESET_DEVICE 13
#define VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS 14
#define VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS 15
#define VHOST_USER_PROTOCOL_F_STATUS 16
#define VHOST_USER_PROTOCOL_F_XEN_MMAP 17
#define VHOST_USER_PROTOCOL_F_SHARED_OBJECT 18
#define VHOST_USER_PROTOCOL_F_DEVICE_STATE 19
#define VHOST_USER_PROTOCOL_F_GET_VRING_BASE_INFLIGHT 20
#define VHOST_USER_PROTOCOL_F_GPA_ADDRESSES 21
#define VHOST_USER_PROTOCOL_F_SHMEM 22
#define VHOST_USER_PROTOCOL_F_GET_VRING_BASE_SKIP_DRAIN 23
#define VHOST_USER_PROTOCOL_F_NBITS 24

/*
 * Front-end -> back-end requests, with their policy:
 *   X(name, id, payload, fds, reply, pfeature)
 * payload: expected payload kind (VHU_PL_*), checked for size before any handler runs.
 * fds:     VHU_FDS_NONE (any fd is refused), VHU_FDS_ONE (exactly one), VHU_FDS_OPT (zero or one),
 *          VHU_FDS_VRING (one unless the NOFD bit of the u64 at payload offset 0 is set: the u64
 *          of KICK/CALL/ERR and of the vring area), VHU_FDS_MEMTABLE (one per region),
 *          VHU_FDS_ANY (0..8, handler decides).
 * reply:   1 when the request always gets a reply, 0 otherwise (REPLY_ACK may add an ack).
 * pfeature: protocol feature the request needs, or -1.
 */
#define VHU_MSG_LIST(X)                                                                      \
    X(GET_FEATURES, 1, NONE, NONE, 1, -1)                                                    \
    X(SET_FEATURES, 2, U64, NONE, 0, -1)                                                     \
    X(SET_OWNER, 3, NONE, NONE, 0, -1)                                                       \
    X(RESET_OWNER, 4, NONE, NONE, 0, -1)                                                     \
    X(SET_MEM_TABLE, 5, MEMORY, MEMTABLE, 0, -1)                                             \
    X(SET_LOG_BASE, 6, LOG, ONE, 1, VHOST_USER_PROTOCOL_F_LOG_SHMFD)                        \
    X(SET_LOG_FD, 7, NONE, ONE, 0, -1)                                                       \
    X(SET_VRING_NUM, 8, STATE, NONE, 0, -1)                                                  \
    X(SET_VRING_ADDR, 9, ADDR, NONE, 0, -1)                                                  \
    X(SET_VRING_BASE, 10, STATE, NONE, 0, -1)                                                \
    X(GET_VRING_BASE, 11, STATE, NONE, 1, -1)                                                \
    X(SET_VRING_KICK, 12, U64, VRING, 0, -1)                                                 \
    X(SET_VRING_CALL, 13, U64, VRING, 0, -1)                                                 \
    X(SET_VRING_ERR, 14, U64, VRING, 0, -1)                                                  \
    X(GET_PROTOCOL_FEATURES, 15, NONE, NONE, 1, -1)                                          \
    X(SET_PROTOCOL_FEATURES, 16, U64, NONE, 0, -1)                                           \
    X(GET_QUEUE_NUM, 17, NONE, NONE, 1, VHOST_USER_PROTOCOL_F_MQ)                            \
    X(SET_VRING_ENABLE, 18, STATE, NONE, 0, -1)                                              \
    X(SEND_RARP, 19, U64, NONE, 0, VHOST_USER_PROTOCOL_F_RARP)                               \
    X(NET_SET_MTU, 20, U64, NONE, 0, VHOST_USER_PROTOCOL_F_NET_MTU)                          \
    X(SET_BACKEND_REQ_FD, 21, NONE, ONE, 0, VHOST_USER_PROTOCOL_F_BACKEND_REQ)               \
    X(IOTLB_MSG, 22, IOTLB, NONE, 0, -1)                                                     \
    X(SET_VRING_ENDIAN, 23, STATE, NONE, 0, VHOST_USER_PROTOCOL_F_CROSS_ENDIAN)              \
    X(GET_CONFIG, 24, CONFIG, NONE, 1, VHOST_USER_PROTOCOL_F_CONFIG)                         \
    X(SET_CONFIG, 25, CONFIG, NONE, 0, VHOST_USER_PROTOCOL_F_CONFIG)                         \
    X(CREATE_CRYPTO_SESSION, 26, ANY, NONE, 1, VHOST_USER_PROTOCOL_F_CRYPTO_SESSION)         \
    X(CLOSE_CRYPTO_SESSION, 27, U64, NONE, 0, VHOST_USER_PROTOCOL_F_CRYPTO_SESSION)          \
    X(POSTCOPY_ADVISE, 28, NONE, NONE, 1, VHOST_USER_PROTOCOL_F_PAGEFAULT)                   \
    X(POSTCOPY_LISTEN, 29, NONE, NONE, 0, VHOST_USER_PROTOCOL_F_PAGEFAULT)                   \
    X(POSTCOPY_END, 30, NONE, NONE, 1, VHOST_USER_PROTOCOL_F_PAGEFAULT)                      \
    X(GET_INFLIGHT_FD, 31, INFLIGHT, NONE, 1, VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD)          \
    X(SET_INFLIGHT_FD, 32, INFLIGHT, ONE, 0, VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD)           \
    X(GPU_SET_SOCKET, 33, NONE, ONE, 0, -1)                                                  \
    X(RESET_DEVICE, 34, NONE, NONE, 0, VHOST_USER_PROTOCOL_F_RESET_DEVICE)                   \
    X(VRING_KICK, 35, STATE, NONE, 0, VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS)            \
    X(GET_MAX_MEM_SLOTS, 36, NONE, NONE, 1, VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS)       \
    X(ADD_MEM_REG, 37, MEMREG, ONE, 0, VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS)            \
    X(REM_MEM_REG, 38, MEMREG, OPT, 0, VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS)            \
    X(SET_STATUS, 39, U64, NONE, 0, VHOST_USER_PROTOCOL_F_STATUS)                            \
    X(GET_STATUS, 40, NONE, NONE, 1, VHOST_USER_PROTOCOL_F_STATUS)                           \
    X(GET_SHARED_OBJECT, 41, UUID, NONE, 1, VHOST_USER_PROTOCOL_F_SHARED_OBJECT)             \
    X(SET_DEVICE_STATE_FD, 42, TRANSFER, ONE, 1, VHOST_USER_PROTOCOL_F_DEVICE_STATE)         \
    X(CHECK_DEVICE_STATE, 43, NONE, NONE, 1, VHOST_USER_PROTOCOL_F_DEVICE_STATE)             \
    X(GET_SHMEM_CONFIG, 44, NONE, NONE, 1, VHOST_USER_PROTOCOL_F_SHMEM)                      \
    X(GET_VRING_BASE_SKIP_DRAIN, 45, STATE, NONE, 1,                                         \
      VHOST_USER_PROTOCOL_F_GET_VRING_BASE_SKIP_DRAIN)

/* Back-end -> front-end requests (on the SET_BACKEND_REQ_FD socket). */
#define VHU_BACKEND_MSG_LIST(X)                                                              \
    X(BACKEND_IOTLB_MSG, 1, IOTLB, NONE, 0, -1)                                              \
    X(BACKEND_CONFIG_CHANGE_MSG, 2, NONE, NONE, 0, VHOST_USER_PROTOCOL_F_CONFIG)             \
    X(BACKEND_VRING_HOST_NOTIFIER_MSG, 3, AREA, VRING, 0,                                    \
      VHOST_USER_PROTOCOL_F_HOST_NOTIFIER)                                                   \
    X(BACKEND_VRING_CALL, 4, STATE, NONE, 0, VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS)     \
    X(BACKEND_VRING_ERR, 5, STATE, NONE, 0, VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS)      \
    X(BACKEND_SHARED_OBJECT_ADD, 6, UUID, NONE, 0, VHOST_USER_PROTOCOL_F_SHARED_OBJECT)      \
    X(BACKEND_SHARED_OBJECT_REMOVE, 7, UUID, NONE, 0, VHOST_USER_PROTOCOL_F_SHARED_OBJECT)   \
    X(BACKEND_SHARED_OBJECT_LOOKUP, 8, UUID, NONE, 1, VHOST_USER_PROTOCOL_F_SHARED_OBJECT)   \
    X(BACKEND_SHMEM_MAP, 9, MMAP, ONE, 0, VHOST_USER_PROTOCOL_F_SHMEM)                       \
    X(BACKEND_SHMEM_UNMAP, 10, MMAP, NONE, 0, VHOST_USER_PROTOCOL_F_SHMEM)

enum vhu_msg_id {
#define X(name, id, pl, fds, reply, pf) VHOST_USER_##name = id,
    VHU_MSG_LIST(X)
#undef X
    VHOST_USER_MAX_REQUEST
};

enum vhu_backend_msg_id {
#define X(name, id, pl, fds, reply, pf) VHOST_USER_##name = id,
    VHU_BACKEND_MSG_LIST(X)
#undef X
    VHOST_USER_BACKEND_MAX_REQUEST
};

/* Payload kinds. */
enum vhu_payload {
    VHU_PL_NONE,     /* size 0 */
    VHU_PL_U64,      /* 8 */
    VHU_PL_STATE,    /* struct vhost_vring_state */
    VHU_PL_ADDR,     /* struct vhost_vring_addr */
    VHU_PL_MEMORY,   /* struct vhost_user_memory header + nregions regions */
    VHU_PL_MEMREG,   /* struct vhost_user_mem_reg (padding u64 + region) */
    VHU_PL_LOG,      /* struct vhost_user_log */
    VHU_PL_IOTLB,    /* struct vhost_iotlb_msg */
    VHU_PL_CONFIG,   /* struct vhost_user_config header + size bytes */
    VHU_PL_INFLIGHT, /* struct vhost_user_inflight */
    VHU_PL_AREA,     /* struct vhost_user_vring_area */
    VHU_PL_UUID,     /* 16 bytes */
    VHU_PL_TRANSFER, /* struct vhost_user_transfer_state */
    VHU_PL_MMAP,     /* struct vhost_user_mmap */
    VHU_PL_ANY,      /* variable; handler validates */
};

enum vhu_fds_policy {
    VHU_FDS_NONE,
    VHU_FDS_ONE,
    VHU_FDS_OPT,
    VHU_FDS_VRING,
    VHU_FDS_MEMTABLE,
    VHU_FDS_ANY,
};

struct vhost_user_hdr {
    uint32_t request;
    uint32_t flags;
    uint32_t size;
} __attribute__((packed));

struct vhost_vring_state {
    uint32_t index;
    uint32_t num;
} __attribute__((packed));

struct vhost_vring_addr {
    uint32_t index;
    uint32_t flags;
    uint64_t desc_user_addr;
    uint64_t used_user_addr;
    uint64_t avail_user_addr;
    uint64_t log_guest_addr;
} __attribute__((packed));

struct vhost_user_memory_region {
    uint64_t guest_phys_addr;
    uint64_t memory_size;
    uint64_t userspace_addr;
    uint64_t mmap_offset;
} __attribute__((packed));

/*
 * With VHOST_USER_PROTOCOL_F_XEN_MMAP every region description (in SET_MEM_TABLE and in
 * ADD/REM_MEM_REG) grows by two u32s (xen mmap flags, domid): regions are then
 * VHOST_USER_XEN_REGION_SIZE bytes apart and regions[] above must not be indexed directly; use
 * vhu_msg_region_size() for the stride.
 */
#define VHOST_USER_REGION_SIZE 32u
#define VHOST_USER_XEN_REGION_SIZE 40u

#define VHOST_MEMORY_BASELINE_NREGIONS 8
struct vhost_user_memory {
    uint32_t nregions;
    uint32_t padding;
    struct vhost_user_memory_region regions[VHOST_MEMORY_BASELINE_NREGIONS];
} __attribute__((packed));

struct vhost_user_mem_reg {
    uint64_t padding;
    struct vhost_user_memory_region region;
} __attribute__((packed));

struct vhost_user_log {
    uint64_t mmap_size;
    uint64_t mmap_offset;
} __attribute__((packed));

#define VHOST_IOTLB_MISS 1
#define VHOST_IOTLB_UPDATE 2
#define VHOST_IOTLB_INVALIDATE 3
#define VHOST_IOTLB_ACCESS_FAIL 4
struct vhost_iotlb_msg {
    uint64_t iova;
    uint64_t size;
    uint64_t uaddr;
    uint8_t perm;
    uint8_t type;
    /*
     * QEMU and DPDK embed the kernel's unpacked struct vhost_iotlb_msg (linux/vhost_types.h) in
     * the payload union and send hdr.size = sizeof = 32: the spec's field list omits this tail
     * padding, the wire carries it. Spelled out so the size is 32 on every ABI.
     */
    uint8_t padding[6];
} __attribute__((packed));

#define VHOST_SET_CONFIG_TYPE_FRONTEND 0
#define VHOST_SET_CONFIG_TYPE_MIGRATION 1
struct vhost_user_config {
    uint32_t offset;
    uint32_t size;
    uint32_t flags;
    uint8_t region[VHOST_USER_MAX_CONFIG_SIZE];
} __attribute__((packed));
#define VHOST_USER_CONFIG_HDR_SIZE 12u

struct vhost_user_inflight {
    uint64_t mmap_size;
    uint64_t mmap_offset;
    uint16_t num_queues;
    uint16_t queue_size;
    /*
     * QEMU's VhostUserInflight (hw/virtio/vhost-user.c) is not packed: sizeof = 24 on 64-bit
     * hosts and QEMU sends hdr.size = sizeof(msg.payload.inflight); DPDK and rust-vmm match it.
     */
    uint32_t padding;
} __attribute__((packed));

struct vhost_user_vring_area {
    uint64_t u64;
    uint64_t size;
    uint64_t offset;
} __attribute__((packed));

struct vhost_user_transfer_state {
    uint32_t direction;
    uint32_t phase;
} __attribute__((packed));

struct vhost_user_mmap {
    uint8_t shmid;
    uint8_t padding[7];
    uint64_t fd_offset;
    uint64_t shm_offset;
    uint64_t len;
    uint64_t flags;
} __attribute__((packed));

union vhost_user_payload {
    uint64_t u64;
    struct vhost_vring_state state;
    struct vhost_vring_addr addr;
    struct vhost_user_memory memory;
    struct vhost_user_mem_reg memreg;
    struct vhost_user_log log;
    struct vhost_iotlb_msg iotlb;
    struct vhost_user_config config;
    struct vhost_user_inflight inflight;
    struct vhost_user_vring_area area;
    uint8_t uuid[16];
    struct vhost_user_transfer_state transfer;
    struct vhost_user_mmap mmap;
    uint8_t raw[4096]; /* largest payload accepted: anything bigger is refused */
};

/* A message with the fds that came with it. fds[i] == -1 once a handler took it. */
struct vhu_msg {
    struct vhost_user_hdr hdr;
    union vhost_user_payload payload;
    int fds[VHOST_USER_MAX_FDS];
    unsigned nfds;
};

/* Per-request policy (one row of VHU_MSG_LIST). */
struct vhu_msg_info {
    const char *name;
    uint32_t id;
    enum vhu_payload payload;
    enum vhu_fds_policy fds;
    bool always_reply;
    int pfeature; /* -1: none */
};

/* Row for a front-end request id, NULL when unknown. */
const struct vhu_msg_info *vhu_msg_info(uint32_t id);
/* Row for a back-end request id, NULL when unknown. */
const struct vhu_msg_info *vhu_backend_msg_info(uint32_t id);
/* Name for logs ("SET_MEM_TABLE", or "UNKNOWN"). */
const char *vhu_msg_name(uint32_t id);

/* What the validator needs to know about the session. */
struct vhu_msg_ctx {
    uint64_t protocol_features; /* negotiated (acked) protocol features */
    uint32_t num_queues;        /* vring indexes must be below this */
    /* The transport carries no fds (virtio-vhost-user: the device turned them into resources
     * before relaying). Every message must come without fds, the fd policies only say what the
     * fd would have been, and a request whose fd has no fd-less equivalent (policy ONE except
     * ADD_MEM_REG: a log, backend channel, inflight, GPU or state-transfer fd) is refused. */
    bool fdless;
};

/*
 * The one choke point. Checks, before any handler runs: known id, version bits, the payload size
 * for the kind (exact, or the variable kinds' internal sizes: memory nregions <= 8 and fds ==
 * nregions; config size <= 256 and hdr.size == 12 + size), fds against the fds policy, the queue
 * index of vring messages (state/addr index, u64 low byte for KICK/CALL/ERR) below num_queues,
 * and the required protocol feature. Returns 0 or -errno; on error *why names the reason (a static
 * string, for the log line). Errors, in the order they are checked:
 *   -ENOSYS  unknown request id
 *   -EPROTO  version bits != 1, or the REPLY flag set on a request
 *   -EPERM   the row's protocol feature is not negotiated
 *   -EINVAL  payload size wrong for its kind, bad memory table / config header, or reserved bits
 *            set in a vring u64
 *   -EBADF   fd count does not match the fds policy (or more than VHOST_USER_MAX_FDS); with
 *            ctx->fdless: any fd, or a request that cannot work without one
 *   -ERANGE  vring index >= ctx->num_queues
 * Validation never touches the fds themselves (the caller closes them on error).
 */
int vhu_msg_validate(const struct vhu_msg *m, const struct vhu_msg_ctx *ctx, const char **why);
/* Same for a back-end -> front-end request received by a frontend. */
int vhu_backend_msg_validate(const struct vhu_msg *m, const struct vhu_msg_ctx *ctx,
                             const char **why);
/* Bytes between region descriptions: 32, or 40 when XEN_MMAP is negotiated. */
uint32_t vhu_msg_region_size(const struct vhu_msg_ctx *ctx);

/*
 * Codec over a connected AF_UNIX stream socket. Receiving reads one whole message (header with
 * its fds, then payload), refusing a payload larger than the union (-EMSGSIZE, before reading
 * it) and truncated control data or fds after the first chunk (-EBADMSG); received fds are
 * CLOEXEC. Errors: -ECONNRESET on EOF before a header, -EPIPE on EOF inside a message, or -errno;
 * on error no fd of the message is left open.
 *
 * vhu_msg_recv_step is the event loop's reader: it reads what is queued and never blocks.
 * Returns 0 when m holds a whole message (rx is ready for the next one), -EAGAIN when more is
 * to come (the partial message and its fds wait in m and rx: call again with both on the next
 * readable event), or an error. A connection that ends with a message partial calls
 * vhu_msg_rx_abort, which closes the fds the partial message brought (it leaves a whole message
 * alone). rx starts zeroed.
 */
struct vhu_msg_rx {
    size_t got; /* bytes of the current message read so far; 0 between messages */
};
int vhu_msg_recv_step(int sock, struct vhu_msg *m, struct vhu_msg_rx *rx);
void vhu_msg_rx_abort(struct vhu_msg *m, struct vhu_msg_rx *rx);
/*
 * Waiting readers. vhu_msg_recv: on a non-blocking socket with nothing queued -EAGAIN having
 * consumed nothing, on a blocking one wait for a message to start; once started, the whole
 * message within 1 s in total, else -ETIMEDOUT. vhu_msg_recv_timeout: the whole message within
 * timeout_ms (< 0: no limit), else -ETIMEDOUT; a timeout inside a message leaves the stream out
 * of step (drop the connection).
 */
int vhu_msg_recv(int sock, struct vhu_msg *m);
int vhu_msg_recv_timeout(int sock, struct vhu_msg *m, int timeout_ms);
/* Write header + hdr.size payload bytes with m->nfds fds attached to the first byte; a full
 * socket buffer is waited for at most 1 s for the whole message (-ETIMEDOUT). */
int vhu_msg_send(int sock, const struct vhu_msg *m);
/* Close every fd still in the message (sets them to -1, nfds to 0). */
void vhu_msg_close_fds(struct vhu_msg *m);
/* Build a header-only message / helpers for common payloads. */
void vhu_msg_init(struct vhu_msg *m, uint32_t request, uint32_t flags, uint32_t size);

#endif
