/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vublk-client: a minimal vhost-user-blk frontend that follows the specifications literally,
 * written without libvhu or any vhu header (libc and the kernel's virtio/vhost uapi headers
 * only), so that it is a second view of a backend besides `vhuctl blk bench`.
 *
 *   vublk-client --socket-path SOCK [--rw randread] [--bs 4096] [--qd 1] [--seconds 5] [--poll]
 *
 * The session is the one QEMU opens (docs/interop/vhost-user.rst): GET_FEATURES,
 * GET_PROTOCOL_FEATURES / SET_PROTOCOL_FEATURES (MQ, REPLY_ACK and CONFIG, each only if
 * offered), SET_OWNER, GET_QUEUE_NUM (with MQ), GET_CONFIG, SET_FEATURES, SET_MEM_TABLE with one
 * memfd region holding rings and buffers, then for queue 0 SET_VRING_NUM / ADDR / BASE / KICK /
 * CALL and SET_VRING_ENABLE. With REPLY_ACK every request that has no reply of its own asks for
 * one, and a non-zero ack is an error.
 *
 * I/O on one split ring, one thread (virtio 1.1 2.6 and 5.2): each request is three descriptors
 * (header, data, status; a flush has no data descriptor), never indirect; slot i owns
 * descriptors 3i..3i+2. Descriptor addresses are guest-physical (the region's GPA base is not
 * its user address, so a backend that mixes the two address spaces fails). Notifications as
 * negotiated: with VIRTIO_RING_F_EVENT_IDX the driver writes used_event before it sleeps and
 * reads avail_event before it kicks (2.6.7, 2.6.10); without it, VRING_AVAIL_F_NO_INTERRUPT is set
 * while the driver is not waiting and a kick is skipped when the device sets
 * VRING_USED_F_NO_NOTIFY. Every completion must carry VIRTIO_BLK_S_OK and the used length the
 * request wrote (data + status byte for a read, the status byte otherwise).
 *
 * --verify writes a pattern and reads it back (every 8-byte word a function of the seed, its
 * byte offset on the disk and the block's write generation): mixed (default) interleaves random
 * writes and reads of blocks not in flight for --seconds and checks every read of a block it
 * wrote; write fills the region once; read checks a region filled earlier by write with the
 * same seed (so a test can change the disk in between and see the check fail).
 *
 * Output: a human summary, then one line
 *   RESULT iops=... lat_avg_us=... kicks=... calls=... cpu_client_us_per_io=... ios=... ...
 * Exit 0 on success (SIGINT/SIGTERM end a timed run early: in-flight requests are drained and the
 * partial result printed), 1 on any error, 2 on a usage error.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <linux/vhost_types.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

/* vhost-user.rst, "Front-end message types" */
enum {
    VU_GET_FEATURES = 1,
    VU_SET_FEATURES = 2,
    VU_SET_OWNER = 3,
    VU_SET_MEM_TABLE = 5,
    VU_SET_VRING_NUM = 8,
    VU_SET_VRING_ADDR = 9,
    VU_SET_VRING_BASE = 10,
    VU_GET_VRING_BASE = 11,
    VU_SET_VRING_KICK = 12,
    VU_SET_VRING_CALL = 13,
    VU_GET_PROTOCOL_FEATURES = 15,
    VU_SET_PROTOCOL_FEATURES = 16,
    VU_GET_QUEUE_NUM = 17,
    VU_SET_VRING_ENABLE = 18,
    VU_GET_CONFIG = 24,
};

static const char *const vu_names[] = {
    [VU_GET_FEATURES] = "GET_FEATURES",
    [VU_SET_FEATURES] = "SET_FEATURES",
    [VU_SET_OWNER] = "SET_OWNER",
    [VU_SET_MEM_TABLE] = "SET_MEM_TABLE",
    [VU_SET_VRING_NUM] = "SET_VRING_NUM",
    [VU_SET_VRING_ADDR] = "SET_VRING_ADDR",
    [VU_SET_VRING_BASE] = "SET_VRING_BASE",
    [VU_GET_VRING_BASE] = "GET_VRING_BASE",
    [VU_SET_VRING_KICK] = "SET_VRING_KICK",
    [VU_SET_VRING_CALL] = "SET_VRING_CALL",
    [VU_GET_PROTOCOL_FEATURES] = "GET_PROTOCOL_FEATURES",
    [VU_SET_PROTOCOL_FEATURES] = "SET_PROTOCOL_FEATURES",
    [VU_GET_QUEUE_NUM] = "GET_QUEUE_NUM",
    [VU_SET_VRING_ENABLE] = "SET_VRING_ENABLE",
    [VU_GET_CONFIG] = "GET_CONFIG",
};

#define VU_VERSION 0x1u
#define VU_FLAG_REPLY (1u << 2)
#define VU_FLAG_NEED_REPLY (1u << 3)
#define VU_HDR_SIZE 12u
#define VU_F_PROTOCOL_FEATURES 30
#define VU_PF_MQ 0
#define VU_PF_REPLY_ACK 3
#define VU_PF_CONFIG 9
#define VU_REPLY_TIMEOUT_S 10

/* QEMU 7.2's virtio_blk_config ends at unused1: ask for no more than such a backend holds */
#define BLK_CONFIG_SIZE (offsetof(struct virtio_blk_config, unused1) + 3)
#define BLK_SECTOR 512u
#define GPA_BASE 0x100000000ull /* descriptors' guest-physical addresses start here */
#define PAGE 4096u
#define STALL_NS (10ull * 1000000000ull)

#define BIT(n) (1ull << (n))

struct vu_region {
    uint64_t gpa;
    uint64_t size;
    uint64_t uva;
    uint64_t mmap_offset;
};

struct vu_msg {
    uint32_t request;
    uint32_t flags;
    uint32_t size;
    union {
        uint64_t u64;
        struct vhost_vring_state state;
        struct vhost_vring_addr addr;
        struct {
            uint32_t nregions;
            uint32_t padding;
            struct vu_region regions[8];
        } mem;
        struct {
            uint32_t offset;
            uint32_t size;
            uint32_t flags;
            uint8_t region[256];
        } config;
    } p;
} __attribute__((packed));

enum verify { VERIFY_OFF, VERIFY_MIXED, VERIFY_WRITE, VERIFY_READ };
static const char *const verify_names[] = {"off", "mixed", "write", "read"};

struct opts {
    const char *sock;
    unsigned qsize, qd, bs;
    const char *rw;
    bool write, random;
    double seconds;
    bool poll, no_event_idx;
    enum verify verify;
    uint64_t seed, size;
};

/* one request: descriptors 3i (header), 3i+1 (data), 3i+2 (status) */
struct slot {
    struct virtio_blk_outhdr *hdr;
    uint8_t *status;
    uint8_t *data;
    uint64_t hdr_gpa, status_gpa, data_gpa;
    uint64_t t0, block;
    uint32_t type, gen;
    bool busy;
};

struct ring {
    unsigned qsize;
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
    uint16_t *used_event;  /* avail->ring[qsize] (2.6.6) */
    uint16_t *avail_event; /* after used->ring[qsize] (2.6.8) */
    uint16_t avail_idx;    /* next free avail slot (the driver's shadow) */
    uint16_t published;    /* avail->idx as last published */
    uint16_t last_used;    /* next used entry to read */
    uint16_t event_base;   /* poll mode: last_used when used_event was pushed away */
    bool event_idx, event_set;
    int kickfd, callfd;
};

#define HIST_SUB 64
#define HIST_N (HIST_SUB + 58 * HIST_SUB)

struct stats {
    uint64_t ios, kicks, calls, verified, lat_sum, lat_max;
    uint32_t hist[HIST_N];
};

struct client {
    struct opts o;
    int sock;
    bool reply_ack;
    uint64_t features, capacity; /* negotiated; bytes */
    uint32_t blk_size;
    uint8_t *mem;
    size_t mem_size;
    struct ring r;
    struct slot *slots;
    unsigned inflight;
    uint64_t nblocks, next_block, rng;
    uint32_t *gen;  /* verify: the write generation of each block (0: never written) */
    uint8_t *busy;  /* verify mixed: block has a request in flight */
    struct stats st;
};

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    va_start(ap, fmt);
    fputs("vublk-client: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static const char *vu_name(uint32_t req)
{
    if (req < sizeof(vu_names) / sizeof(vu_names[0]) && vu_names[req])
        return vu_names[req];
    return "?";
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- vhost-user messages ---- */

static void vu_send(struct client *c, struct vu_msg *m, int fd)
{
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {.iov_base = m, .iov_len = VU_HDR_SIZE + m->size};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    ssize_t n;

    if (fd >= 0) {
        struct cmsghdr *cm;

        memset(&u, 0, sizeof(u));
        mh.msg_control = u.buf;
        mh.msg_controllen = sizeof(u.buf);
        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    }
    do
        n = sendmsg(c->sock, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR && !stop_signal);
    if (n < 0)
        die("sending %s: %s", vu_name(m->request), stop_signal ? "interrupted" : strerror(errno));
    if ((size_t)n != iov.iov_len)
        die("sending %s: short write (%zd of %zu bytes)", vu_name(m->request), n, iov.iov_len);
}

static void recv_all(struct client *c, void *buf, size_t len, uint32_t req)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = recv(c->sock, (char *)buf + got, len - got, 0);

        if (n == 0)
            die("waiting for the reply to %s: the backend closed the connection", vu_name(req));
        if (n < 0 && errno == EINTR && !stop_signal)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            die("no reply to %s within %d s", vu_name(req), VU_REPLY_TIMEOUT_S);
        if (n < 0)
            die("waiting for the reply to %s: %s", vu_name(req),
                stop_signal ? "interrupted" : strerror(errno));
        got += (size_t)n;
    }
}

/* the reply to REQ, with a payload of exactly SIZE bytes */
static void vu_recv(struct client *c, uint32_t req, struct vu_msg *m, uint32_t size)
{
    recv_all(c, m, VU_HDR_SIZE, req);
    if (m->request != req)
        die("expected the reply to %s, got message %u", vu_name(req), m->request);
    if ((m->flags & 3u) != VU_VERSION || !(m->flags & VU_FLAG_REPLY))
        die("reply to %s: flags 0x%x (want version 1 and the reply bit)", vu_name(req), m->flags);
    if (m->size > sizeof(m->p))
        die("reply to %s: payload of %u bytes, at most %zu expected", vu_name(req), m->size,
            sizeof(m->p));
    recv_all(c, &m->p, m->size, req);
    if (m->size != size)
        die("reply to %s: payload of %u bytes, %u expected", vu_name(req), m->size, size);
}

/* a request with no reply of its own; with REPLY_ACK it asks for the ack and checks it */
static void vu_request(struct client *c, uint32_t req, const void *payload, uint32_t size, int fd)
{
    struct vu_msg m = {.request = req, .flags = VU_VERSION, .size = size};

    if (size)
        memcpy(&m.p, payload, size);
    if (c->reply_ack)
        m.flags |= VU_FLAG_NEED_REPLY;
    vu_send(c, &m, fd);
    if (!c->reply_ack)
        return;
    vu_recv(c, req, &m, sizeof(uint64_t));
    if (m.p.u64)
        die("the backend refused %s (REPLY_ACK %" PRIu64 ")", vu_name(req), (uint64_t)m.p.u64);
}

static uint64_t vu_get_u64(struct client *c, uint32_t req)
{
    struct vu_msg m = {.request = req, .flags = VU_VERSION};

    vu_send(c, &m, -1);
    vu_recv(c, req, &m, sizeof(uint64_t));
    return m.p.u64;
}

static void vu_set_u64(struct client *c, uint32_t req, uint64_t v)
{
    vu_request(c, req, &v, sizeof(v), -1);
}

static void vu_set_state(struct client *c, uint32_t req, unsigned index, unsigned num)
{
    struct vhost_vring_state s = {.index = index, .num = num};

    vu_request(c, req, &s, sizeof(s), -1);
}

static void connect_socket(struct client *c)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct timeval tv = {.tv_sec = VU_REPLY_TIMEOUT_S};

    if (strlen(c->o.sock) >= sizeof(sa.sun_path))
        die("socket path too long: %s", c->o.sock);
    strcpy(sa.sun_path, c->o.sock);
    c->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->sock < 0)
        die("socket: %s", strerror(errno));
    if (connect(c->sock, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        die("cannot connect to %s: %s", c->o.sock, strerror(errno));
    if (setsockopt(c->sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
        die("SO_RCVTIMEO: %s", strerror(errno));
}

/* ---- session setup ---- */

static void negotiate(struct client *c)
{
    uint64_t offered = vu_get_u64(c, VU_GET_FEATURES), want;

    if (!(offered & BIT(VIRTIO_F_VERSION_1)))
        die("the backend does not offer VIRTIO_F_VERSION_1 (features 0x%" PRIx64 ")", offered);
    if (offered & BIT(VU_F_PROTOCOL_FEATURES)) {
        uint64_t pf = vu_get_u64(c, VU_GET_PROTOCOL_FEATURES);
        uint64_t use = pf & (BIT(VU_PF_MQ) | BIT(VU_PF_REPLY_ACK) | BIT(VU_PF_CONFIG));

        vu_set_u64(c, VU_SET_PROTOCOL_FEATURES, use);
        c->reply_ack = use & BIT(VU_PF_REPLY_ACK);
        vu_request(c, VU_SET_OWNER, NULL, 0, -1);
        if (use & BIT(VU_PF_MQ)) {
            uint64_t n = vu_get_u64(c, VU_GET_QUEUE_NUM);

            if (n < 1)
                die("GET_QUEUE_NUM: the backend has %" PRIu64 " queues", n);
        }
        if (use & BIT(VU_PF_CONFIG)) {
            struct vu_msg m = {.request = VU_GET_CONFIG, .flags = VU_VERSION,
                               .size = 12 + BLK_CONFIG_SIZE};
            struct virtio_blk_config cfg;

            m.p.config.offset = 0;
            m.p.config.size = BLK_CONFIG_SIZE;
            vu_send(c, &m, -1);
            vu_recv(c, VU_GET_CONFIG, &m, 12 + BLK_CONFIG_SIZE);
            if (m.p.config.offset != 0 || m.p.config.size != BLK_CONFIG_SIZE)
                die("GET_CONFIG: reply for offset %u size %u, asked 0 and %zu",
                    m.p.config.offset, m.p.config.size, BLK_CONFIG_SIZE);
            memcpy(&cfg, m.p.config.region, BLK_CONFIG_SIZE);
            if (le64toh(cfg.capacity) > UINT64_MAX / BLK_SECTOR)
                die("GET_CONFIG: capacity of %" PRIu64 " sectors", (uint64_t)le64toh(cfg.capacity));
            c->capacity = le64toh(cfg.capacity) * BLK_SECTOR;
            if (offered & BIT(VIRTIO_BLK_F_BLK_SIZE))
                c->blk_size = le32toh(cfg.blk_size);
            /* qemu-storage-daemon 7.2 offers SIZE_MAX with size_max 0: read 0 as no limit,
             * as Linux does (it raises a segment size below a page to a page) */
            if ((offered & BIT(VIRTIO_BLK_F_SIZE_MAX)) && cfg.size_max &&
                le32toh(cfg.size_max) < c->o.bs)
                die("--bs %u is larger than the device's size_max %u (one data descriptor)",
                    c->o.bs, le32toh(cfg.size_max));
        }
    } else {
        vu_request(c, VU_SET_OWNER, NULL, 0, -1);
    }
    if (!c->capacity) {
        if (!c->o.size)
            die("the backend offers no CONFIG protocol feature: give --size BYTES");
        c->capacity = c->o.size;
    }

    want = BIT(VIRTIO_F_VERSION_1);
    want |= offered & (BIT(VIRTIO_BLK_F_FLUSH) | BIT(VU_F_PROTOCOL_FEATURES) |
                       BIT(VIRTIO_BLK_F_BLK_SIZE) | BIT(VIRTIO_BLK_F_SIZE_MAX) |
                       BIT(VIRTIO_BLK_F_RO));
    if (!c->o.no_event_idx)
        want |= offered & BIT(VIRTIO_RING_F_EVENT_IDX);
    vu_set_u64(c, VU_SET_FEATURES, want);
    c->features = want;
    c->r.event_idx = want & BIT(VIRTIO_RING_F_EVENT_IDX);
    if ((want & BIT(VIRTIO_BLK_F_RO)) && (c->o.write || c->o.verify == VERIFY_MIXED ||
                                          c->o.verify == VERIFY_WRITE))
        die("the device is read-only (VIRTIO_BLK_F_RO) and this run writes");
}

static size_t align_up(size_t v, size_t a)
{
    return (v + a - 1) / a * a;
}

/*
 * One memfd: descriptor table, available ring (with used_event), used ring (with avail_event,
 * on its own page as a legacy guest lays it out), then per slot a 32-byte header + status
 * block, then the data buffers, each page-aligned.
 */
static void setup_memory(struct client *c)
{
    unsigned qs = c->o.qsize, i;
    size_t avail_off = 16 * (size_t)qs, used_off, reqs_off, data_off, stride;
    struct vu_msg m;
    int fd;

    used_off = align_up(avail_off + 6 + 2 * (size_t)qs, PAGE);
    reqs_off = align_up(used_off + 6 + 8 * (size_t)qs, PAGE);
    data_off = align_up(reqs_off + 32 * (size_t)c->o.qd, PAGE);
    stride = align_up(c->o.bs, PAGE);
    c->mem_size = data_off + stride * c->o.qd;

    fd = memfd_create("vublk-client", MFD_CLOEXEC);
    if (fd < 0)
        die("memfd_create: %s", strerror(errno));
    if (ftruncate(fd, (off_t)c->mem_size) < 0)
        die("ftruncate memfd to %zu bytes: %s", c->mem_size, strerror(errno));
    c->mem = mmap(NULL, c->mem_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (c->mem == MAP_FAILED)
        die("mmap %zu bytes: %s", c->mem_size, strerror(errno));

    c->r.qsize = qs;
    c->r.desc = (struct vring_desc *)c->mem;
    c->r.avail = (struct vring_avail *)(c->mem + avail_off);
    c->r.used = (struct vring_used *)(c->mem + used_off);
    c->r.used_event = &c->r.avail->ring[qs];
    c->r.avail_event = (uint16_t *)&c->r.used->ring[qs];

    c->slots = calloc(c->o.qd, sizeof(*c->slots));
    if (!c->slots)
        die("out of memory");
    for (i = 0; i < c->o.qd; i++) {
        struct slot *s = &c->slots[i];
        size_t h = reqs_off + 32 * (size_t)i, d = data_off + stride * i;

        s->hdr = (struct virtio_blk_outhdr *)(c->mem + h);
        s->status = c->mem + h + 16;
        s->data = c->mem + d;
        s->hdr_gpa = GPA_BASE + h;
        s->status_gpa = GPA_BASE + h + 16;
        s->data_gpa = GPA_BASE + d;
    }

    memset(&m.p.mem, 0, sizeof(m.p.mem));
    m.p.mem.nregions = 1;
    m.p.mem.regions[0] = (struct vu_region){.gpa = GPA_BASE, .size = c->mem_size,
                                            .uva = (uint64_t)(uintptr_t)c->mem};
    vu_request(c, VU_SET_MEM_TABLE, &m.p.mem, 8 + sizeof(struct vu_region), fd);
    close(fd);
}

static int new_eventfd(void)
{
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

    if (fd < 0)
        die("eventfd: %s", strerror(errno));
    return fd;
}

static void setup_queue(struct client *c)
{
    struct ring *r = &c->r;
    struct vhost_vring_addr a = {
        .index = 0,
        .desc_user_addr = (uint64_t)(uintptr_t)r->desc,
        .used_user_addr = (uint64_t)(uintptr_t)r->used,
        .avail_user_addr = (uint64_t)(uintptr_t)r->avail,
    };
    uint64_t v;

    /* no interrupt wanted until the driver waits for one */
    if (r->event_idx)
        *r->used_event = htole16((uint16_t)0x8000);
    else
        r->avail->flags = htole16(VRING_AVAIL_F_NO_INTERRUPT);
    r->event_set = r->event_idx;

    vu_set_state(c, VU_SET_VRING_NUM, 0, r->qsize);
    vu_request(c, VU_SET_VRING_ADDR, &a, sizeof(a), -1);
    vu_set_state(c, VU_SET_VRING_BASE, 0, 0);
    r->kickfd = new_eventfd();
    v = 0;
    vu_request(c, VU_SET_VRING_KICK, &v, sizeof(v), r->kickfd);
    r->callfd = new_eventfd();
    vu_request(c, VU_SET_VRING_CALL, &v, sizeof(v), r->callfd);
    if (c->features & BIT(VU_F_PROTOCOL_FEATURES))
        vu_set_state(c, VU_SET_VRING_ENABLE, 0, 1);
}

/* ---- the split ring, driver side ---- */

/* make the new available entries visible, then notify if the device asked for it */
static void ring_publish(struct client *c)
{
    struct ring *r = &c->r;
    uint16_t old = r->published, new = r->avail_idx;
    bool kick;

    if (old == new)
        return;
    /* 2.6.13: descriptors and ring entries before idx; idx before reading the device's flag */
    __atomic_store_n(&r->avail->idx, htole16(new), __ATOMIC_RELEASE);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    r->published = new;
    if (r->event_idx) {
        uint16_t ev = le16toh(__atomic_load_n(r->avail_event, __ATOMIC_RELAXED));

        kick = (uint16_t)(new - ev - 1) < (uint16_t)(new - old);
    } else {
        kick = !(le16toh(__atomic_load_n(&r->used->flags, __ATOMIC_RELAXED)) &
                 VRING_USED_F_NO_NOTIFY);
    }
    if (kick) {
        uint64_t one = 1;

        if (write(r->kickfd, &one, sizeof(one)) != sizeof(one))
            die("kick: %s", strerror(errno));
        c->st.kicks++;
    }
}

/* poll mode and between waits: ask for no used-buffer notification */
static void ring_quiet(struct ring *r)
{
    if (!r->event_idx) {
        if (!(r->avail->flags & htole16(VRING_AVAIL_F_NO_INTERRUPT)))
            r->avail->flags = htole16(VRING_AVAIL_F_NO_INTERRUPT);
        return;
    }
    /* used_event half the index space ahead: refreshed long before the device can reach it */
    if (r->event_set && (uint16_t)(r->last_used - r->event_base) < 0x4000)
        return;
    __atomic_store_n(r->used_event, htole16((uint16_t)(r->last_used + 0x8000)), __ATOMIC_RELAXED);
    r->event_base = r->last_used;
    r->event_set = true;
}

/* ask for a notification at the next used entry; true if one is already there */
static bool ring_arm(struct ring *r)
{
    if (r->event_idx) {
        /* one-shot (2.6.10): once the device passes it, the next ring_quiet() need not write */
        __atomic_store_n(r->used_event, htole16(r->last_used), __ATOMIC_RELAXED);
        r->event_base = r->last_used;
        r->event_set = true;
    } else {
        r->avail->flags = 0;
    }
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return le16toh(__atomic_load_n(&r->used->idx, __ATOMIC_ACQUIRE)) != r->last_used;
}

/* ---- workload ---- */

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static uint64_t pattern_word(uint64_t seed, uint64_t off, uint32_t gen)
{
    /* splitmix64's finalizer over seed, byte offset and generation */
    uint64_t z = seed ^ (off * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)gen << 40);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void pattern_fill(const struct client *c, struct slot *s)
{
    uint64_t base = s->block * c->o.bs;
    unsigned i;

    for (i = 0; i < c->o.bs; i += 8) {
        uint64_t w = htole64(pattern_word(c->o.seed, base + i, s->gen));

        memcpy(s->data + i, &w, 8);
    }
}

static void pattern_check(struct client *c, const struct slot *s)
{
    uint64_t base = s->block * c->o.bs;
    unsigned i;

    for (i = 0; i < c->o.bs; i += 8) {
        uint64_t want = htole64(pattern_word(c->o.seed, base + i, s->gen)), got;

        memcpy(&got, s->data + i, 8);
        if (got != want)
            die("verify: bad data at disk byte %" PRIu64 " (block %" PRIu64 ", write generation"
                " %u): read 0x%016" PRIx64 ", expected 0x%016" PRIx64,
                base + i, s->block, s->gen, (uint64_t)le64toh(got), (uint64_t)le64toh(want));
    }
    c->st.verified++;
}

/* the next request's type and block; false when the workload has no more */
static bool next_op(struct client *c, uint32_t *type, uint64_t *block)
{
    unsigned tries;

    switch (c->o.verify) {
    case VERIFY_WRITE:
    case VERIFY_READ:
        if (c->next_block >= c->nblocks)
            return false;
        *type = c->o.verify == VERIFY_WRITE ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
        *block = c->next_block++;
        return true;
    case VERIFY_MIXED:
        *type = rng_next(&c->rng) & 1 ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
        /* never two requests on one block at once: the read's expected data is then known */
        for (tries = 0; tries < 1000; tries++) {
            *block = rng_next(&c->rng) % c->nblocks;
            if (!c->busy[*block])
                return true;
        }
        die("verify: no idle block found in %" PRIu64 " blocks", c->nblocks);
    case VERIFY_OFF:
        break;
    }
    *type = c->o.write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
    if (c->o.random) {
        *block = rng_next(&c->rng) % c->nblocks;
    } else {
        *block = c->next_block++;
        if (c->next_block == c->nblocks)
            c->next_block = 0;
    }
    return true;
}

static void set_desc(struct vring_desc *d, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
    d->addr = htole64(addr);
    d->len = htole32(len);
    d->flags = htole16(flags);
    d->next = htole16(next);
}

/* put slot I's request on the available ring (published later by ring_publish) */
static void submit(struct client *c, unsigned i, uint32_t type, uint64_t block, uint64_t t0)
{
    struct ring *r = &c->r;
    struct slot *s = &c->slots[i];
    uint16_t head = (uint16_t)(3 * i);

    s->type = type;
    s->block = block;
    s->t0 = t0;
    s->busy = true;
    s->hdr->type = htole32(type);
    s->hdr->ioprio = 0;
    s->hdr->sector = htole64(block * (c->o.bs / BLK_SECTOR));
    *s->status = 0xff; /* not a status: a device that never writes it is caught */
    if (type == VIRTIO_BLK_T_FLUSH) {
        set_desc(&r->desc[head], s->hdr_gpa, sizeof(*s->hdr), VRING_DESC_F_NEXT, head + 2);
    } else {
        set_desc(&r->desc[head], s->hdr_gpa, sizeof(*s->hdr), VRING_DESC_F_NEXT, head + 1);
        set_desc(&r->desc[head + 1], s->data_gpa, c->o.bs,
                 VRING_DESC_F_NEXT | (type == VIRTIO_BLK_T_IN ? VRING_DESC_F_WRITE : 0), head + 2);
    }
    set_desc(&r->desc[head + 2], s->status_gpa, 1, VRING_DESC_F_WRITE, 0);
    if (c->o.verify != VERIFY_OFF && type != VIRTIO_BLK_T_FLUSH) {
        if (type == VIRTIO_BLK_T_OUT) {
            s->gen = c->o.verify == VERIFY_MIXED ? ++c->gen[block] : 1;
            pattern_fill(c, s);
        } else {
            s->gen = c->o.verify == VERIFY_MIXED ? c->gen[block] : 1;
        }
        if (c->busy)
            c->busy[block] = 1;
    }
    r->avail->ring[r->avail_idx % r->qsize] = htole16(head);
    r->avail_idx++;
    c->inflight++;
}

/* every idle slot gets the workload's next request; false if the workload has ended */
static bool fill(struct client *c, uint64_t t0)
{
    unsigned i;
    uint32_t type;
    uint64_t block;

    for (i = 0; i < c->o.qd && c->inflight < c->o.qd; i++) {
        if (c->slots[i].busy)
            continue;
        if (!next_op(c, &type, &block))
            return false;
        submit(c, i, type, block, t0);
    }
    return true;
}

static void hist_add(struct stats *st, uint64_t ns)
{
    unsigned b;

    if (ns < 2 * HIST_SUB) {
        b = (unsigned)ns;
    } else {
        unsigned e = 63 - (unsigned)__builtin_clzll(ns); /* >= 7 */

        b = HIST_SUB + (e - 6) * HIST_SUB + (unsigned)((ns >> (e - 6)) & (HIST_SUB - 1));
        if (b >= HIST_N)
            b = HIST_N - 1;
    }
    st->hist[b]++;
    st->lat_sum += ns;
    if (ns > st->lat_max)
        st->lat_max = ns;
}

/* the middle of the bucket holding the Q-quantile, in µs */
static double hist_quantile(const struct stats *st, double q)
{
    uint64_t want = (uint64_t)(q * (double)st->ios), seen = 0;
    unsigned b;

    for (b = 0; b < HIST_N; b++) {
        seen += st->hist[b];
        if (seen > want && st->hist[b])
            break;
    }
    if (b >= HIST_N)
        return 0;
    if (b < 2 * HIST_SUB)
        return b / 1000.0;
    {
        unsigned e = (b - HIST_SUB) / HIST_SUB + 6, m = (b - HIST_SUB) % HIST_SUB;
        uint64_t lo = (uint64_t)(HIST_SUB + m) << (e - 6);

        return ((double)lo + (double)(1ull << (e - 6)) / 2) / 1000.0;
    }
}

static const char *status_name(uint8_t st)
{
    switch (st) {
    case VIRTIO_BLK_S_IOERR:
        return "VIRTIO_BLK_S_IOERR";
    case VIRTIO_BLK_S_UNSUPP:
        return "VIRTIO_BLK_S_UNSUPP";
    case 0xff:
        return "never written by the device";
    default:
        return "not a virtio-blk status";
    }
}

static const char *type_name(uint32_t type)
{
    return type == VIRTIO_BLK_T_IN ? "read" : type == VIRTIO_BLK_T_OUT ? "write" : "flush";
}

/* take what the device put on the used ring; returns the number of completions */
static unsigned reap(struct client *c)
{
    struct ring *r = &c->r;
    uint16_t idx = le16toh(__atomic_load_n(&r->used->idx, __ATOMIC_ACQUIRE));
    uint16_t n = (uint16_t)(idx - r->last_used);
    uint64_t t1;
    unsigned k;

    if (!n)
        return 0;
    if (n > c->inflight)
        die("the device moved used idx from %u to %u with %u requests in flight", r->last_used,
            idx, c->inflight);
    t1 = now_ns();
    for (k = 0; k < n; k++) {
        struct vring_used_elem *e = &r->used->ring[r->last_used % r->qsize];
        uint32_t id = le32toh(e->id), len = le32toh(e->len), want;
        struct slot *s;

        if (id % 3 || id / 3 >= c->o.qd || !c->slots[id / 3].busy)
            die("used entry %u names descriptor %u, which heads no request in flight",
                r->last_used, id);
        s = &c->slots[id / 3];
        want = s->type == VIRTIO_BLK_T_IN ? c->o.bs + 1 : 1;
        if (*s->status != VIRTIO_BLK_S_OK)
            die("%s of block %" PRIu64 " (sector %" PRIu64 "): status %u (%s)", type_name(s->type),
                s->block, s->block * (c->o.bs / BLK_SECTOR), *s->status, status_name(*s->status));
        if (len != want)
            die("%s of block %" PRIu64 ": used len %u, the request wrote %u bytes "
                "(virtio 2.6.8: len is the bytes written into the buffer)",
                type_name(s->type), s->block, len, want);
        if (c->o.verify != VERIFY_OFF && s->type == VIRTIO_BLK_T_IN && s->gen)
            pattern_check(c, s);
        if (c->busy)
            c->busy[s->block] = 0;
        s->busy = false;
        c->inflight--;
        if (s->type != VIRTIO_BLK_T_FLUSH) {
            c->st.ios++;
            hist_add(&c->st, t1 - s->t0);
        }
        r->last_used++;
    }
    return n;
}

static uint64_t drain_callfd(struct client *c)
{
    uint64_t v = 0;

    if (read(c->r.callfd, &v, sizeof(v)) == sizeof(v))
        return v;
    return 0;
}

/* sleep until the device signals the call eventfd (or TIMEOUT_NS passes) */
static void wait_call(struct client *c, uint64_t timeout_ns)
{
    struct pollfd p = {.fd = c->r.callfd, .events = POLLIN};
    int ms = (int)(timeout_ns / 1000000) + 1;

    if (!ring_arm(&c->r)) {
        if (poll(&p, 1, ms) < 0 && errno != EINTR)
            die("poll on the call eventfd: %s", strerror(errno));
        c->st.calls += drain_callfd(c);
    }
    ring_quiet(&c->r);
}

/*
 * The run: keep every slot busy until the deadline (or the workload's end), then drain.
 * Returns the seconds from the first submission to the last completion.
 */
static double run(struct client *c)
{
    uint64_t t_start = now_ns(), deadline, last_progress = t_start, now = t_start;
    bool stopping = false;

    deadline = t_start + (uint64_t)(c->o.seconds * 1e9);
    if (!fill(c, now))
        stopping = true;
    ring_publish(c);
    while (c->inflight || !stopping) {
        unsigned got = reap(c);

        now = now_ns();
        if (!stopping && (stop_signal || (c->o.verify != VERIFY_WRITE &&
                                          c->o.verify != VERIFY_READ && now >= deadline)))
            stopping = true;
        if (!stopping && got) {
            if (!fill(c, now))
                stopping = true;
            ring_publish(c);
        }
        if (got) {
            last_progress = now;
            if (c->o.poll)
                ring_quiet(&c->r);
            continue;
        }
        if (!c->inflight)
            break;
        if (now - last_progress > STALL_NS)
            die("%u requests in flight and no completion for %llu s: the backend stalled "
                "(a lost notification?)", c->inflight, STALL_NS / 1000000000ull);
        if (!c->o.poll)
            wait_call(c, stopping ? STALL_NS : (deadline > now ? deadline - now : 0) + 1000000);
    }
    return (double)(now - t_start) / 1e9;
}

/* the write cache to stable storage (verify write), if the device has one */
static void flush(struct client *c)
{
    uint64_t t0 = now_ns();

    if (!(c->features & BIT(VIRTIO_BLK_F_FLUSH)))
        return;
    submit(c, 0, VIRTIO_BLK_T_FLUSH, 0, t0);
    ring_publish(c);
    while (c->inflight) {
        if (reap(c))
            break;
        if (now_ns() - t0 > STALL_NS)
            die("flush: no completion in %llu s", STALL_NS / 1000000000ull);
        if (!c->o.poll)
            wait_call(c, STALL_NS);
    }
}

/* ---- command line ---- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vublk-client --socket-path PATH [options]\n"
            "A vhost-user-blk frontend (split ring, 3 descriptors per request, no indirect).\n"
            "  -s, --socket-path PATH  the backend's socket (it listens)\n"
            "  --rw MODE               read | write | randread | randwrite (default randread)\n"
            "  --bs N                  bytes per request, a multiple of 512 (default 4096)\n"
            "  --qd N                  requests in flight, 1..qsize/3 (default 1; --iodepth)\n"
            "  --qsize N               ring size, a power of 2 up to 32768 (default 256)\n"
            "  --seconds S             run time (default 5; --runtime)\n"
            "  --size N                bytes of the disk to use (default all; mixed verify:\n"
            "                          16M at most); needed if the backend has no CONFIG\n"
            "  --poll                  busy-poll the used ring (default: sleep on the call fd)\n"
            "  --no-event-idx          do not negotiate VIRTIO_RING_F_EVENT_IDX\n"
            "  --verify[=KIND]         mixed (default): random writes and reads, every read of\n"
            "                          a written block checked; write: fill --size with the\n"
            "                          pattern; read: check a region filled by write\n"
            "  --seed N                pattern and offset seed (default 1)\n"
            "  -h, --help              this text\n"
            "exit status: 0 ok, 1 error (bad status, used len or data; protocol error), 2 usage\n");
}

static void __attribute__((noreturn, format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("vublk-client: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (--help for usage)\n", stderr);
    va_end(ap);
    exit(2);
}

/* a byte count: digits with an optional K, M or G suffix */
static uint64_t parse_size(const char *opt, const char *s)
{
    char *end;
    unsigned long long v;
    unsigned shift = 0;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (end == s || errno || *s == '-')
        usage_error("%s: not a number: '%s'", opt, s);
    if (*end == 'K' || *end == 'k')
        shift = 10;
    else if (*end == 'M' || *end == 'm')
        shift = 20;
    else if (*end == 'G' || *end == 'g')
        shift = 30;
    if (shift)
        end++;
    if (*end)
        usage_error("%s: not a number: '%s'", opt, s);
    if (v > (UINT64_MAX >> shift))
        usage_error("%s: too large: '%s'", opt, s);
    return (uint64_t)v << shift;
}

static unsigned parse_uint(const char *opt, const char *s, unsigned max)
{
    uint64_t v = parse_size(opt, s);

    if (v > max)
        usage_error("%s: at most %u: '%s'", opt, max, s);
    return (unsigned)v;
}

static void parse_args(struct opts *o, int argc, char **argv)
{
    enum { O_RW = 256, O_BS, O_QD, O_QSIZE, O_SECONDS, O_SIZE, O_POLL, O_NOEVI, O_VERIFY, O_SEED };
    static const struct option lo[] = {
        {"socket-path", required_argument, NULL, 's'}, {"rw", required_argument, NULL, O_RW},
        {"bs", required_argument, NULL, O_BS},         {"qd", required_argument, NULL, O_QD},
        {"iodepth", required_argument, NULL, O_QD},    {"qsize", required_argument, NULL, O_QSIZE},
        {"seconds", required_argument, NULL, O_SECONDS},
        {"runtime", required_argument, NULL, O_SECONDS},
        {"size", required_argument, NULL, O_SIZE},     {"poll", no_argument, NULL, O_POLL},
        {"no-event-idx", no_argument, NULL, O_NOEVI},
        {"verify", optional_argument, NULL, O_VERIFY}, {"seed", required_argument, NULL, O_SEED},
        {"help", no_argument, NULL, 'h'},              {NULL, 0, NULL, 0},
    };
    char *end;
    int ch;

    *o = (struct opts){.qsize = 256, .qd = 1, .bs = 4096, .rw = "randread", .random = true,
                       .seconds = 5, .seed = 1};
    while ((ch = getopt_long(argc, argv, "s:h", lo, NULL)) != -1) {
        switch (ch) {
        case 's':
            o->sock = optarg;
            break;
        case O_RW:
            o->rw = optarg;
            if (!strcmp(optarg, "read") || !strcmp(optarg, "randread"))
                o->write = false;
            else if (!strcmp(optarg, "write") || !strcmp(optarg, "randwrite"))
                o->write = true;
            else
                usage_error("--rw: read, write, randread or randwrite, not '%s'", optarg);
            o->random = !strncmp(optarg, "rand", 4);
            break;
        case O_BS:
            o->bs = parse_uint("--bs", optarg, 1u << 24);
            break;
        case O_QD:
            o->qd = parse_uint("--qd", optarg, 32768);
            break;
        case O_QSIZE:
            o->qsize = parse_uint("--qsize", optarg, 32768);
            break;
        case O_SECONDS:
            errno = 0;
            o->seconds = strtod(optarg, &end);
            if (end == optarg || *end || errno || !(o->seconds > 0) || o->seconds > 1e6)
                usage_error("--seconds: a number of seconds in (0, 1e6], not '%s'", optarg);
            break;
        case O_SIZE:
            o->size = parse_size("--size", optarg);
            break;
        case O_POLL:
            o->poll = true;
            break;
        case O_NOEVI:
            o->no_event_idx = true;
            break;
        case O_VERIFY:
            if (!optarg || !strcmp(optarg, "mixed"))
                o->verify = VERIFY_MIXED;
            else if (!strcmp(optarg, "write"))
                o->verify = VERIFY_WRITE;
            else if (!strcmp(optarg, "read"))
                o->verify = VERIFY_READ;
            else
                usage_error("--verify: mixed, write or read, not '%s'", optarg);
            break;
        case O_SEED:
            o->seed = parse_size("--seed", optarg);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage_error("unknown option");
        }
    }
    if (optind < argc)
        usage_error("unexpected argument '%s'", argv[optind]);
    if (!o->sock)
        usage_error("--socket-path is required");
    if (o->qsize < 4 || (o->qsize & (o->qsize - 1)))
        usage_error("--qsize: a power of 2 from 4 to 32768, not %u", o->qsize);
    if (o->qd < 1 || o->qd > o->qsize / 3)
        usage_error("--qd: 1..%u (qsize/3: three descriptors per request), not %u",
                    o->qsize / 3, o->qd);
    if (!o->bs || o->bs % BLK_SECTOR)
        usage_error("--bs: a multiple of %u, not %u", BLK_SECTOR, o->bs);
    if (o->verify != VERIFY_OFF)
        o->write = false;
}

/* the part of the disk the workload covers, in blocks of --bs */
static void setup_workload(struct client *c)
{
    uint64_t size = c->o.size;

    if (c->blk_size && (c->blk_size % BLK_SECTOR || c->o.bs % c->blk_size))
        die("--bs %u is not a multiple of the device's block size %u", c->o.bs, c->blk_size);
    if (!size) {
        size = c->capacity;
        if (c->o.verify == VERIFY_MIXED && size > (16u << 20))
            size = 16u << 20;
    }
    if (size > c->capacity)
        die("--size %" PRIu64 " is larger than the disk (%" PRIu64 " bytes)", size, c->capacity);
    c->nblocks = size / c->o.bs;
    if (!c->nblocks)
        die("the disk (%" PRIu64 " bytes) holds no block of --bs %u", size, c->o.bs);
    if (c->o.verify == VERIFY_MIXED) {
        if (c->nblocks < 2ull * c->o.qd)
            die("--verify: %" PRIu64 " blocks is too few for --qd %u", c->nblocks, c->o.qd);
        c->gen = calloc(c->nblocks, sizeof(*c->gen));
        c->busy = calloc(c->nblocks, 1);
        if (!c->gen || !c->busy)
            die("out of memory for %" PRIu64 " blocks", c->nblocks);
    }
    c->rng = c->o.seed * 0x9E3779B97F4A7C15ull + 1;
}

static void features_str(uint64_t f, char *buf, size_t len)
{
    static const struct { int bit; const char *name; } names[] = {
        {VIRTIO_F_VERSION_1, "VERSION_1"},    {VIRTIO_RING_F_EVENT_IDX, "EVENT_IDX"},
        {VIRTIO_BLK_F_FLUSH, "FLUSH"},        {VIRTIO_BLK_F_BLK_SIZE, "BLK_SIZE"},
        {VIRTIO_BLK_F_SIZE_MAX, "SIZE_MAX"},  {VIRTIO_BLK_F_RO, "RO"},
        {VU_F_PROTOCOL_FEATURES, "PROTOCOL_FEATURES"},
    };
    size_t i, n = 0;

    buf[0] = 0;
    for (i = 0; i < sizeof(names) / sizeof(names[0]) && n < len; i++)
        if (f & BIT(names[i].bit))
            n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? " " : "", names[i].name);
}

static void report(struct client *c, double secs, double cpu_us)
{
    const struct stats *st = &c->st;
    double ios = (double)st->ios, iops = secs > 0 ? ios / secs : 0;
    double lat = st->ios ? (double)st->lat_sum / ios / 1000.0 : 0;
    double cpu = st->ios ? cpu_us / ios : 0;
    const char *rw = c->o.verify != VERIFY_OFF ? "verify" : c->o.rw;
    char feat[160];

    features_str(c->features, feat, sizeof(feat));
    printf("vublk-client: %s, %" PRIu64 " bytes, block size %u; features %s; queue 0 of %u "
           "entries\n",
           c->o.sock, c->capacity, c->blk_size ? c->blk_size : BLK_SECTOR, feat, c->o.qsize);
    printf("  %s bs=%u qd=%u %s: %" PRIu64 " I/Os in %.3f s = %.0f IOPS, %.1f MB/s%s\n", rw,
           c->o.bs, c->o.qd, c->o.poll ? "poll" : "event", st->ios, secs, iops,
           iops * c->o.bs / 1e6, stop_signal ? " (interrupted)" : "");
    printf("  latency avg %.1f us, p50 %.1f, p99 %.1f, max %.1f; kicks %.3f/io, calls %.3f/io;"
           " client CPU %.2f us/io\n",
           lat, hist_quantile(st, 0.5), hist_quantile(st, 0.99), st->lat_max / 1000.0,
           st->ios ? st->kicks / ios : 0, st->ios ? st->calls / ios : 0, cpu);
    if (c->o.verify == VERIFY_WRITE)
        printf("  verify write: %" PRIu64 " blocks of the pattern written (seed %" PRIu64 ")\n",
               st->ios, c->o.seed);
    else if (c->o.verify != VERIFY_OFF)
        printf("  verify %s: %" PRIu64 " reads compared, all matched\n",
               verify_names[c->o.verify], st->verified);
    printf("RESULT iops=%.0f lat_avg_us=%.2f kicks=%" PRIu64 " calls=%" PRIu64
           " cpu_client_us_per_io=%.3f ios=%" PRIu64 " secs=%.3f rw=%s bs=%u qd=%u mode=%s"
           " event_idx=%d p50_us=%.2f p99_us=%.2f max_us=%.2f verify=%s verified=%" PRIu64
           " errors=0\n",
           iops, lat, st->kicks, st->calls, cpu, st->ios, secs, rw, c->o.bs, c->o.qd,
           c->o.poll ? "poll" : "event", c->r.event_idx, hist_quantile(st, 0.5),
           hist_quantile(st, 0.99), st->lat_max / 1000.0, verify_names[c->o.verify], st->verified);
    fflush(stdout);
}

static double cpu_time_us(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec * 1e6 + (double)ru.ru_stime.tv_usec;
}

int main(int argc, char **argv)
{
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESETHAND};
    struct client c = {.sock = -1};
    struct vu_msg m;
    double secs, cpu0;

    parse_args(&c.o, argc, argv);
    /* no SA_RESTART: a signal interrupts poll() and recv(); a second one kills */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    connect_socket(&c);
    negotiate(&c);
    setup_workload(&c);
    setup_memory(&c);
    setup_queue(&c);

    if (stop_signal)
        die("interrupted during setup");
    cpu0 = cpu_time_us();
    secs = run(&c);
    if (c.o.verify == VERIFY_WRITE && !stop_signal)
        flush(&c);
    c.st.calls += drain_callfd(&c);
    report(&c, secs, cpu_time_us() - cpu0);
    if ((c.o.verify == VERIFY_WRITE || c.o.verify == VERIFY_READ) && c.next_block < c.nblocks)
        die("verify %s: interrupted after %" PRIu64 " of %" PRIu64 " blocks",
            verify_names[c.o.verify], c.next_block, c.nblocks);

    /* 2.6 / vhost-user "Ring states": GET_VRING_BASE stops the ring and returns the next
     * available index the device would have read: every request was consumed */
    m = (struct vu_msg){.request = VU_GET_VRING_BASE, .flags = VU_VERSION,
                        .size = sizeof(struct vhost_vring_state)};
    m.p.state.index = 0;
    vu_send(&c, &m, -1);
    vu_recv(&c, VU_GET_VRING_BASE, &m, sizeof(struct vhost_vring_state));
    if (m.p.state.index != 0 || m.p.state.num != c.r.avail_idx)
        die("GET_VRING_BASE: queue %u at %u, the driver made %u entries available",
            m.p.state.index, m.p.state.num, c.r.avail_idx);
    close(c.sock);
    close(c.r.kickfd);
    close(c.r.callfd);
    munmap(c.mem, c.mem_size);
    free(c.slots);
    free(c.gen);
    free(c.busy);
    return 0;
}
