/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * proto layer: the codec over a socketpair. Every payload kind with 0/1/8 fds, fds that work and
 * are CLOEXEC, more than 8 fds, oversized and truncated messages, EOF, header and payload split
 * across writes (blocking and non-blocking), partial writes, and no fd leaked on any error path.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proto/vhost_user.h"
#include "vhu/util.h"
#include "vhu_test.h"

static int pair(int sv[2])
{
    return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ? -errno : 0;
}

static bool is_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFD);

    return fl >= 0 && (fl & FD_CLOEXEC);
}

static bool fd_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

/* sendmsg of raw bytes with any number of fds (the codec refuses more than 8). */
static ssize_t raw_send(int sock, const void *buf, size_t len, const int *fds, unsigned nfds)
{
    char ctl[CMSG_SPACE(sizeof(int) * 16)] __attribute__((aligned(8)));
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

    if (nfds) {
        memset(ctl, 0, sizeof(ctl));
        mh.msg_control = ctl;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    return sendmsg(sock, &mh, MSG_NOSIGNAL);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static void close_all(int *fds, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        vhu_fd_close(&fds[i]);
}

/* A payload size per kind (the codec does not care about kinds: this covers the sizes). */
static uint32_t kind_wire_size(enum vhu_payload pl)
{
    switch (pl) {
    case VHU_PL_NONE:
        return 0;
    case VHU_PL_U64:
    case VHU_PL_STATE:
    case VHU_PL_TRANSFER:
        return 8;
    case VHU_PL_ADDR:
    case VHU_PL_MEMREG:
    case VHU_PL_MMAP:
        return 40;
    case VHU_PL_MEMORY:
        return 8 + 2 * 32;
    case VHU_PL_LOG:
    case VHU_PL_UUID:
        return 16;
    case VHU_PL_IOTLB:
        return 32;
    case VHU_PL_CONFIG:
        return 12 + 256;
    case VHU_PL_INFLIGHT:
    case VHU_PL_AREA:
        return 24;
    case VHU_PL_ANY:
        return 4096;
    }
    return 0;
}

/* Send one message of payload kind `pl` with `nf` eventfds, receive it, check it whole. */
static void round_trip(enum vhu_payload pl, unsigned nf)
{
    int sv[2] = {-1, -1}, efds[VHOST_USER_MAX_FDS];
    struct vhu_msg out, in;
    uint32_t size = kind_wire_size(pl);
    int base = vhu_fd_count_self();

    ASSERT_OK(pair(sv));
    vhu_msg_init(&out, 7 + (uint32_t)pl, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, size);
    for (uint32_t i = 0; i < size; i++)
        out.payload.raw[i] = (uint8_t)(i * 7 + (uint32_t)pl + 1);
    for (unsigned i = 0; i < nf; i++) {
        efds[i] = vhu_eventfd_new();
        ASSERT(efds[i] >= 0);
        out.fds[i] = efds[i];
    }
    out.nfds = nf;
    memset(&in, 0xa5, sizeof(in));

    ASSERT_OK(vhu_msg_send(sv[0], &out));
    ASSERT_OK(vhu_msg_recv(sv[1], &in));
    ASSERT_EQ(in.hdr.request, out.hdr.request);
    ASSERT_EQ(in.hdr.flags, out.hdr.flags);
    ASSERT_EQ(in.hdr.size, size);
    ASSERT(memcmp(&in.payload, &out.payload, size) == 0);
    ASSERT_EQ(in.nfds, nf);
    for (unsigned i = nf; i < VHOST_USER_MAX_FDS; i++)
        ASSERT_EQ(in.fds[i], -1);
    for (unsigned i = 0; i < nf; i++) {
        /* A new descriptor for the same eventfd, CLOEXEC. */
        ASSERT(in.fds[i] >= 0 && in.fds[i] != efds[i]);
        ASSERT(is_cloexec(in.fds[i]));
        ASSERT_OK(vhu_eventfd_signal(efds[i]));
        ASSERT_OK(vhu_eventfd_signal(efds[i]));
        ASSERT_EQ(vhu_eventfd_drain(in.fds[i]), 2);
        ASSERT_OK(vhu_eventfd_signal(in.fds[i]));
        ASSERT_EQ(vhu_eventfd_drain(efds[i]), 1);
    }
    vhu_msg_close_fds(&in);
    /* Nothing else queued. */
    ASSERT_OK(vhu_fd_set_nonblock(sv[1], true));
    ASSERT_ERR(-EAGAIN, vhu_msg_recv(sv[1], &in));
    ASSERT_EQ(in.nfds, 0);

    close_all(efds, nf);
    close_all(sv, 2);
    ASSERT_EQ(vhu_fd_count_self(), base);
}

TEST(codec_round_trip_every_kind)
{
    static const enum vhu_payload kinds[] = {
        VHU_PL_NONE,   VHU_PL_U64,      VHU_PL_STATE, VHU_PL_ADDR,     VHU_PL_MEMORY,
        VHU_PL_MEMREG, VHU_PL_LOG,      VHU_PL_IOTLB, VHU_PL_CONFIG,   VHU_PL_INFLIGHT,
        VHU_PL_AREA,   VHU_PL_UUID,     VHU_PL_TRANSFER, VHU_PL_MMAP, VHU_PL_ANY,
    };
    static const unsigned nfds[] = {0, 1, VHOST_USER_MAX_FDS};

    for (size_t k = 0; k < VHU_ARRAY_SIZE(kinds); k++) {
        for (size_t f = 0; f < VHU_ARRAY_SIZE(nfds); f++) {
            round_trip(kinds[k], nfds[f]);
            if (vhu_test_failed) {
                fprintf(stderr, "  (payload kind %d, %u fds)\n", (int)kinds[k], nfds[f]);
                return;
            }
        }
    }
}

TEST(codec_pipe_fds_work)
{
    int sv[2], p[2];
    struct vhu_msg m;
    char c = 0;

    ASSERT_OK(pair(sv));
    ASSERT(pipe2(p, O_CLOEXEC) == 0);
    vhu_msg_init(&m, VHOST_USER_SET_LOG_FD, VHOST_USER_VERSION, 0);
    m.fds[0] = p[1];
    m.nfds = 1;
    ASSERT_OK(vhu_msg_send(sv[0], &m));
    ASSERT_OK(vhu_msg_recv(sv[1], &m));
    ASSERT_EQ(m.nfds, 1);
    ASSERT(is_cloexec(m.fds[0]));
    vhu_fd_close(&p[1]);
    ASSERT_EQ(write(m.fds[0], "x", 1), 1);
    vhu_msg_close_fds(&m);
    ASSERT_EQ(read(p[0], &c, 1), 1);
    ASSERT_EQ(c, 'x');
    /* The received write end was the last one: EOF now. */
    ASSERT_EQ(read(p[0], &c, 1), 0);
    vhu_fd_close(&p[0]);
    close_all(sv, 2);
}

TEST(codec_back_to_back)
{
    int sv[2], efd = vhu_eventfd_new();
    struct vhu_msg m;

    ASSERT(efd >= 0);
    ASSERT_OK(pair(sv));
    /* Two messages queued; the second's fd must not be read with the first. */
    vhu_msg_init(&m, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, 0);
    ASSERT_OK(vhu_msg_send(sv[0], &m));
    vhu_msg_init(&m, VHOST_USER_SET_VRING_CALL, VHOST_USER_VERSION, 8);
    m.payload.u64 = 1;
    m.fds[0] = efd;
    m.nfds = 1;
    ASSERT_OK(vhu_msg_send(sv[0], &m));
    ASSERT_OK(vhu_msg_recv(sv[1], &m));
    ASSERT_EQ(m.hdr.request, VHOST_USER_GET_FEATURES);
    ASSERT_EQ(m.nfds, 0);
    ASSERT_OK(vhu_msg_recv(sv[1], &m));
    ASSERT_EQ(m.hdr.request, VHOST_USER_SET_VRING_CALL);
    ASSERT_EQ(m.payload.u64, 1);
    ASSERT_EQ(m.nfds, 1);
    vhu_msg_close_fds(&m);
    vhu_fd_close(&efd);
    close_all(sv, 2);
}

TEST(codec_oversized_payload)
{
    int sv[2], efds[2] = {vhu_eventfd_new(), vhu_eventfd_new()};
    struct vhost_user_hdr h = {.request = VHOST_USER_SET_FEATURES, .flags = 1, .size = 4097};
    struct vhu_msg m;
    int before;

    ASSERT(efds[0] >= 0 && efds[1] >= 0);
    ASSERT_OK(pair(sv));
    /* Non-blocking, so a codec that waited for the payload would fail instead of hanging. */
    ASSERT_OK(vhu_fd_set_nonblock(sv[1], true));
    before = vhu_fd_count_self();
    ASSERT_EQ(raw_send(sv[0], &h, sizeof(h), efds, 2), (ssize_t)sizeof(h));
    ASSERT_ERR(-EMSGSIZE, vhu_msg_recv(sv[1], &m));
    ASSERT_EQ(m.nfds, 0);
    ASSERT_EQ(vhu_fd_count_self(), before);

    h.size = UINT32_MAX;
    ASSERT_EQ(raw_send(sv[0], &h, sizeof(h), efds, 1), (ssize_t)sizeof(h));
    ASSERT_ERR(-EMSGSIZE, vhu_msg_recv(sv[1], &m));
    ASSERT_EQ(vhu_fd_count_self(), before);
    close_all(efds, 2);
    close_all(sv, 2);
}

TEST(codec_too_many_fds)
{
    int sv[2], efds[12];
    struct vhost_user_hdr h = {.request = VHOST_USER_SET_OWNER, .flags = 1, .size = 0};
    struct vhu_msg m;
    int before;

    for (unsigned i = 0; i < VHU_ARRAY_SIZE(efds); i++) {
        efds[i] = vhu_eventfd_new();
        ASSERT(efds[i] >= 0);
    }
    ASSERT_OK(pair(sv));
    before = vhu_fd_count_self();
    /* 8 is the limit and fits. */
    ASSERT_EQ(raw_send(sv[0], &h, sizeof(h), efds, 8), (ssize_t)sizeof(h));
    ASSERT_OK(vhu_msg_recv(sv[1], &m));
    ASSERT_EQ(m.nfds, 8);
    vhu_msg_close_fds(&m);
    ASSERT_EQ(vhu_fd_count_self(), before);
    /* 9 and 12: control data truncated, every received fd closed. */
    ASSERT_EQ(raw_send(sv[0], &h, sizeof(h), efds, 9), (ssize_t)sizeof(h));
    ASSERT_ERR(-EBADMSG, vhu_msg_recv(sv[1], &m));
    ASSERT_EQ(m.nfds, 0);
    ASSERT_EQ(vhu_fd_count_self(), before);
    ASSERT_EQ(raw_send(sv[0], &h, sizeof(h), efds, 12), (ssize_t)sizeof(h));
    ASSERT_ERR(-EBADMSG, vhu_msg_recv(sv[1], &m));
    ASSERT_EQ(vhu_fd_count_self(), before);
    close_all(efds, VHU_ARRAY_SIZE(efds));
    close_all(sv, 2);
}

TEST(codec_fds_after_first_chunk)
{
    int sv[2], efd = vhu_eventfd_new();
    struct vhost_user_hdr h = {.request = VHOST_USER_SET_FEATURES, .flags = 1, .size = 8};
    uint64_t v = 0;
    struct vhu_msg m;
    int before;

    ASSERT(efd >= 0);
    ASSERT_OK(pair(sv));
    before = vhu_fd_count_self();
    ASSERT_EQ(raw_send(sv[0], &h, sizeof(h), NULL, 0), (ssize_t)sizeof(h));
    ASSERT_EQ(raw_send(sv[0], &v, sizeof(v), &efd, 1), (ssize_t)sizeof(v));
    ASSERT_ERR(-EBADMSG, vhu_msg_recv(sv[1], &m));
    ASSERT_EQ(vhu_fd_count_self(), before);
    vhu_fd_close(&efd);
    close_all(sv, 2);
}

TEST(codec_eof)
{
    int sv[2];
    struct vhu_msg m;

    ASSERT_OK(pair(sv));
    vhu_fd_close(&sv[0]);
    ASSERT_ERR(-ECONNRESET, vhu_msg_recv(sv[1], &m));
    ASSERT_EQ(m.nfds, 0);
    /* Non-blocking: same answer. */
    ASSERT_OK(vhu_fd_set_nonblock(sv[1], true));
    ASSERT_ERR(-ECONNRESET, vhu_msg_recv(sv[1], &m));
    vhu_fd_close(&sv[1]);
}

TEST(codec_truncated)
{
    int sv[2], efd = vhu_eventfd_new();
    struct vhost_user_hdr h = {.request = VHOST_USER_SET_FEATURES, .flags = 1, .size = 8};
    struct vhu_msg m;
    int before;

    ASSERT(efd >= 0);
    /* EOF inside the payload, the message carried an fd: -EPIPE, fd closed. */
    ASSERT_OK(pair(sv));
    before = vhu_fd_count_self();
    ASSERT_EQ(raw_send(sv[0], &h, sizeof(h), &efd, 1), (ssize_t)sizeof(h));
    ASSERT_EQ(raw_send(sv[0], "abcd", 4, NULL, 0), 4);
    vhu_fd_close(&sv[0]);
    ASSERT_ERR(-EPIPE, vhu_msg_recv(sv[1], &m));
    ASSERT_EQ(m.nfds, 0);
    ASSERT_EQ(vhu_fd_count_self(), before - 1);
    vhu_fd_close(&sv[1]);

    /* EOF inside the header. */
    ASSERT_OK(pair(sv));
    before = vhu_fd_count_self();
    ASSERT_EQ(raw_send(sv[0], &h, 6, &efd, 1), 6);
    vhu_fd_close(&sv[0]);
    ASSERT_ERR(-EPIPE, vhu_msg_recv(sv[1], &m));
    ASSERT_EQ(vhu_fd_count_self(), before - 1);
    vhu_fd_close(&sv[1]);
    vhu_fd_close(&efd);
}

TEST(codec_nonblocking_empty)
{
    int sv[2];
    struct vhu_msg m;

    ASSERT_OK(pair(sv));
    ASSERT_OK(vhu_fd_set_nonblock(sv[1], true));
    memset(&m, 0x5a, sizeof(m));
    ASSERT_ERR(-EAGAIN, vhu_msg_recv(sv[1], &m));
    ASSERT_EQ(m.nfds, 0);
    for (unsigned i = 0; i < VHOST_USER_MAX_FDS; i++)
        ASSERT_EQ(m.fds[i], -1);
    /* Nothing was consumed: a message sent now arrives whole. */
    vhu_msg_init(&m, VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, 8);
    m.payload.u64 = 0x1122334455667788ull;
    ASSERT_OK(vhu_msg_send(sv[0], &m));
    memset(&m, 0, sizeof(m));
    ASSERT_OK(vhu_msg_recv(sv[1], &m));
    ASSERT_EQ(m.hdr.request, VHOST_USER_SET_FEATURES);
    ASSERT_EQ(m.payload.u64, 0x1122334455667788ull);
    close_all(sv, 2);
}

TEST(codec_nonblocking_stall_times_out)
{
    int sv[2], efd = vhu_eventfd_new();
    struct vhost_user_hdr h = {.request = VHOST_USER_SET_FEATURES, .flags = 1, .size = 8};
    struct vhu_msg m;
    uint64_t t0;
    int before;

    ASSERT(efd >= 0);
    ASSERT_OK(pair(sv));
    ASSERT_OK(vhu_fd_set_nonblock(sv[1], true));
    before = vhu_fd_count_self();
    ASSERT_EQ(raw_send(sv[0], &h, 4, &efd, 1), 4);
    t0 = vhu_now_ns();
    ASSERT_ERR(-ETIMEDOUT, vhu_msg_recv(sv[1], &m));
    ASSERT(vhu_now_ns() - t0 >= 900000000ull);
    ASSERT_EQ(vhu_fd_count_self(), before);
    vhu_fd_close(&efd);
    close_all(sv, 2);
}

/* The event loop's reader: a message arriving a few bytes at a time is resumed on each step,
 * its header's fds kept with it; a partial message abandoned closes them. */
TEST(codec_step_resumes)
{
    struct {
        struct vhost_user_hdr h;
        uint64_t v;
    } __attribute__((packed)) wire = {{VHOST_USER_SET_VRING_CALL, 1, 8}, 0x0123456789abcdefull};
    const size_t cuts[] = {3, 7, 12, 13, 20};
    int sv[2], efds[2] = {vhu_eventfd_new(), vhu_eventfd_new()};
    struct vhu_msg_rx rx = {0};
    struct vhu_msg m;
    size_t off = 0;
    int before;

    ASSERT(efds[0] >= 0 && efds[1] >= 0);
    ASSERT_OK(pair(sv));
    before = vhu_fd_count_self();
    ASSERT_ERR(-EAGAIN, vhu_msg_recv_step(sv[1], &m, &rx)); /* nothing yet */
    for (size_t i = 0; i < VHU_ARRAY_SIZE(cuts); i++) {
        ASSERT_EQ(raw_send(sv[0], (uint8_t *)&wire + off, cuts[i] - off, i ? NULL : efds,
                           i ? 0 : 2),
                  (ssize_t)(cuts[i] - off));
        off = cuts[i];
        int r = vhu_msg_recv_step(sv[1], &m, &rx);
        if (i + 1 < VHU_ARRAY_SIZE(cuts)) {
            ASSERT_ERR(-EAGAIN, r);
            ASSERT_EQ(m.nfds, 2);
            ASSERT_EQ(rx.got, off);
        } else {
            ASSERT_OK(r);
        }
    }
    ASSERT_EQ(rx.got, 0);
    ASSERT_EQ(m.hdr.request, VHOST_USER_SET_VRING_CALL);
    ASSERT_EQ(m.payload.u64, 0x0123456789abcdefull);
    ASSERT_EQ(m.nfds, 2);
    vhu_msg_rx_abort(&m, &rx); /* a whole message is the caller's: untouched */
    ASSERT(fd_open(m.fds[0]) && fd_open(m.fds[1]));
    vhu_msg_close_fds(&m);
    ASSERT_EQ(vhu_fd_count_self(), before);

    /* Stopped after 15 bytes: abandoned, its fds go. */
    ASSERT_EQ(raw_send(sv[0], &wire, 15, efds, 2), 15);
    ASSERT_ERR(-EAGAIN, vhu_msg_recv_step(sv[1], &m, &rx));
    ASSERT_EQ(vhu_fd_count_self(), before + 2);
    vhu_msg_rx_abort(&m, &rx);
    ASSERT_EQ(rx.got, 0);
    ASSERT_EQ(vhu_fd_count_self(), before);
    close_all(efds, 2);
    close_all(sv, 2);
}

/* One byte every 200 ms: the waiting readers give up on the whole message, not per byte. */
struct dribbler {
    int sock;
    unsigned pause_ms;
};

static void *dribble_main(void *opaque)
{
    struct dribbler *d = opaque;
    struct vhost_user_hdr h = {.request = VHOST_USER_SET_FEATURES, .flags = 1, .size = 8};
    uint8_t buf[20] = {0};

    memcpy(buf, &h, sizeof(h));
    for (unsigned i = 0; i < sizeof(buf); i++) {
        if (raw_send(d->sock, buf + i, 1, NULL, 0) != 1)
            break;
        sleep_ms(d->pause_ms);
    }
    return NULL;
}

TEST(codec_recv_whole_message_deadline)
{
    int sv[2];
    struct dribbler d = {.pause_ms = 200};
    struct vhu_msg m;
    pthread_t t;
    uint64_t t0, ms;

    for (int timed = 0; timed < 2; timed++) {
        ASSERT_OK(pair(sv));
        d.sock = sv[0];
        ASSERT_EQ(pthread_create(&t, NULL, dribble_main, &d), 0);
        t0 = vhu_now_ns();
        int r = timed ? vhu_msg_recv_timeout(sv[1], &m, 500) : vhu_msg_recv(sv[1], &m);
        ms = (vhu_now_ns() - t0) / 1000000;
        shutdown(sv[1], SHUT_RDWR); /* the writer stops */
        pthread_join(t, NULL);
        close_all(sv, 2);
        ASSERT_ERR(-ETIMEDOUT, r);
        if (ms > (timed ? 900u : 1500u))
            FAIL_AT("%s gave up after %llu ms", timed ? "recv_timeout(500)" : "recv",
                    (unsigned long long)ms);
    }
}

/* A writer thread that sends the bytes of one message in chunks with pauses between them. */
struct chunk_writer {
    int sock;
    const uint8_t *buf;
    size_t cuts[4]; /* chunk ends, ascending; the last is the total */
    unsigned ncuts;
    const int *fds; /* attached to the first chunk */
    unsigned nfds;
    unsigned pause_ms;
    int err;
};

static void *chunk_writer_main(void *opaque)
{
    struct chunk_writer *w = opaque;
    size_t off = 0;

    for (unsigned i = 0; i < w->ncuts; i++) {
        size_t len = w->cuts[i] - off;
        if (raw_send(w->sock, w->buf + off, len, i == 0 ? w->fds : NULL, i == 0 ? w->nfds : 0) !=
            (ssize_t)len) {
            w->err = errno;
            break;
        }
        off = w->cuts[i];
        if (i + 1 < w->ncuts)
            sleep_ms(w->pause_ms);
    }
    return NULL;
}

/* Header (+ payload) of a SET_MEM_TABLE with 2 regions sent in the given chunks. */
static void split_case(const size_t *cuts, unsigned ncuts, bool nonblocking)
{
    struct {
        struct vhost_user_hdr h;
        struct vhost_user_memory_region r[2];
        uint64_t nreg;
    } __attribute__((packed)) wire;
    uint8_t buf[sizeof(wire)];
    int sv[2], efds[2] = {vhu_eventfd_new(), vhu_eventfd_new()};
    struct chunk_writer w = {.ncuts = ncuts, .fds = efds, .nfds = 2, .pause_ms = 50};
    struct vhu_msg m;
    pthread_t t;
    int before, r;

    ASSERT(efds[0] >= 0 && efds[1] >= 0);
    /* payload: nregions, padding, 2 regions */
    memset(&wire, 0, sizeof(wire));
    wire.h.request = VHOST_USER_SET_MEM_TABLE;
    wire.h.flags = VHOST_USER_VERSION;
    wire.h.size = 8 + 2 * 32;
    memcpy(buf, &wire.h, 12);
    uint32_t nreg[2] = {2, 0};
    memcpy(buf + 12, nreg, 8);
    for (unsigned i = 0; i < 64; i++)
        buf[20 + i] = (uint8_t)(i + 1);
    ASSERT_EQ(cuts[ncuts - 1], 12 + 72);

    ASSERT_OK(pair(sv));
    if (nonblocking)
        ASSERT_OK(vhu_fd_set_nonblock(sv[1], true));
    before = vhu_fd_count_self();
    w.sock = sv[0];
    w.buf = buf;
    for (unsigned i = 0; i < ncuts; i++)
        w.cuts[i] = cuts[i];
    ASSERT_EQ(pthread_create(&t, NULL, chunk_writer_main, &w), 0);
    if (nonblocking) {
        /* Wait for the first chunk, as an event loop would. */
        struct pollfd p = {.fd = sv[1], .events = POLLIN};
        ASSERT_EQ(poll(&p, 1, 5000), 1);
    }
    r = vhu_msg_recv(sv[1], &m);
    pthread_join(t, NULL);
    ASSERT_EQ(w.err, 0);
    ASSERT_OK(r);
    ASSERT_EQ(m.hdr.request, VHOST_USER_SET_MEM_TABLE);
    ASSERT_EQ(m.hdr.size, 72);
    ASSERT_EQ(m.payload.memory.nregions, 2);
    ASSERT(memcmp(m.payload.memory.regions, buf + 20, 64) == 0);
    ASSERT_EQ(m.nfds, 2);
    ASSERT(is_cloexec(m.fds[0]) && is_cloexec(m.fds[1]));
    ASSERT_OK(vhu_eventfd_signal(efds[1]));
    ASSERT_EQ(vhu_eventfd_drain(m.fds[1]), 1);
    vhu_msg_close_fds(&m);
    close_all(efds, 2);
    close_all(sv, 2);
    ASSERT_EQ(vhu_fd_count_self(), before - 4);
}

TEST(codec_header_split)
{
    const size_t cuts[] = {5, 12 + 72};

    split_case(cuts, 2, false);
}

TEST(codec_header_split_nonblocking)
{
    const size_t cuts[] = {5, 9, 12 + 72};

    split_case(cuts, 3, true);
}

TEST(codec_payload_split)
{
    const size_t cuts[] = {12 + 3, 12 + 40, 12 + 72};

    split_case(cuts, 3, false);
}

TEST(codec_payload_split_nonblocking)
{
    const size_t cuts[] = {12, 12 + 1, 12 + 72};

    split_case(cuts, 3, true);
}

/* A slow reader against a non-blocking writer with a small send buffer: partial writes. */
struct slow_reader {
    int sock;
    unsigned count;
    unsigned ok;
};

static void *slow_reader_main(void *opaque)
{
    struct slow_reader *r = opaque;
    struct vhu_msg m;

    sleep_ms(100);
    for (unsigned i = 0; i < r->count; i++) {
        if (vhu_msg_recv(r->sock, &m) < 0)
            break;
        bool good = m.hdr.request == VHOST_USER_CREATE_CRYPTO_SESSION && m.hdr.size == 4096;
        for (unsigned j = 0; good && j < 4096; j++)
            good = m.payload.raw[j] == (uint8_t)(i + j);
        good = good && m.nfds == (i % 3 != 2 ? 1u : 0u);
        vhu_msg_close_fds(&m);
        if (good)
            r->ok++;
    }
    return NULL;
}

TEST(codec_send_partial_writes)
{
    int sv[2], efd = vhu_eventfd_new(), sndbuf = 4096;
    struct slow_reader rd = {.count = 24};
    struct vhu_msg m;
    pthread_t t;
    int before;

    ASSERT(efd >= 0);
    ASSERT_OK(pair(sv));
    ASSERT(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) == 0);
    ASSERT_OK(vhu_fd_set_nonblock(sv[0], true));
    before = vhu_fd_count_self();
    rd.sock = sv[1];
    ASSERT_EQ(pthread_create(&t, NULL, slow_reader_main, &rd), 0);
    for (unsigned i = 0; i < rd.count; i++) {
        vhu_msg_init(&m, VHOST_USER_CREATE_CRYPTO_SESSION, VHOST_USER_VERSION, 4096);
        for (unsigned j = 0; j < 4096; j++)
            m.payload.raw[j] = (uint8_t)(i + j);
        if (i % 3 != 2) {
            m.fds[0] = efd;
            m.nfds = 1;
        }
        int r = vhu_msg_send(sv[0], &m);
        if (r < 0) {
            pthread_join(t, NULL);
            FAIL_AT("send %u: %d", i, r);
        }
    }
    pthread_join(t, NULL);
    ASSERT_EQ(rd.ok, rd.count);
    ASSERT_EQ(vhu_fd_count_self(), before);
    vhu_fd_close(&efd);
    close_all(sv, 2);
}

TEST(codec_send_errors)
{
    int sv[2];
    struct vhu_msg m;

    ASSERT_OK(pair(sv));
    vhu_msg_init(&m, VHOST_USER_SET_OWNER, VHOST_USER_VERSION, 0);
    m.nfds = VHOST_USER_MAX_FDS + 1;
    ASSERT_ERR(-EINVAL, vhu_msg_send(sv[0], &m));
    m.nfds = 0;
    m.hdr.size = 4097;
    ASSERT_ERR(-EINVAL, vhu_msg_send(sv[0], &m));
    /* Nothing was written by the refused sends. */
    ASSERT_OK(vhu_fd_set_nonblock(sv[1], true));
    ASSERT_ERR(-EAGAIN, vhu_msg_recv(sv[1], &m));
    /* Peer gone: -EPIPE, and no SIGPIPE (the test would die). */
    vhu_fd_close(&sv[1]);
    vhu_msg_init(&m, VHOST_USER_SET_OWNER, VHOST_USER_VERSION, 0);
    ASSERT_ERR(-EPIPE, vhu_msg_send(sv[0], &m));
    /* A closed fd in the message. */
    ASSERT_OK(pair(sv));
    m.fds[0] = sv[1];
    m.nfds = 1;
    vhu_fd_close(&sv[1]);
    ASSERT_ERR(-EBADF, vhu_msg_send(sv[0], &m));
    vhu_fd_close(&sv[0]);
}

TEST(msg_init_and_close_fds)
{
    struct vhu_msg m;
    int a = vhu_eventfd_new(), b = vhu_eventfd_new();

    ASSERT(a >= 0 && b >= 0);
    memset(&m, 0xff, sizeof(m));
    vhu_msg_init(&m, VHOST_USER_GET_CONFIG, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK, 12 + 8);
    ASSERT_EQ(m.hdr.request, VHOST_USER_GET_CONFIG);
    ASSERT_EQ(m.hdr.flags, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK);
    ASSERT_EQ(m.hdr.size, 20);
    for (unsigned i = 0; i < 20; i++)
        ASSERT_EQ(m.payload.raw[i], 0);
    ASSERT_EQ(m.nfds, 0);
    for (unsigned i = 0; i < VHOST_USER_MAX_FDS; i++)
        ASSERT_EQ(m.fds[i], -1);
    /* An oversized init must not write past the union. */
    vhu_msg_init(&m, 1, 1, UINT32_MAX);
    ASSERT_EQ(m.hdr.size, UINT32_MAX);

    /* close_fds closes the message's fds (nfds of them), skips taken slots, leaves the rest. */
    vhu_msg_init(&m, 1, 1, 0);
    m.fds[0] = a;
    m.fds[1] = -1; /* taken by a handler */
    m.fds[2] = b;  /* beyond nfds: not the message's */
    m.nfds = 2;
    vhu_msg_close_fds(&m);
    ASSERT_EQ(m.nfds, 0);
    ASSERT_EQ(m.fds[0], -1);
    ASSERT(!fd_open(a));
    ASSERT(fd_open(b));
    ASSERT_EQ(m.fds[2], b);
    vhu_msg_close_fds(&m); /* idempotent */
    ASSERT(fd_open(b));
    vhu_fd_close(&b);
}
