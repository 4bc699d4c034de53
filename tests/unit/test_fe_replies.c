/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The frontend library against a hostile backend (a thread on the other end of a socketpair):
 * fds pushed with replies are closed, not kept (the process's fd count stays at its baseline),
 * and a backend that stops answering, or answers a byte at a time, costs the reply timeout and
 * no more (-ETIMEDOUT), after which the connection is refused as out of step.
 */
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "frontend/fe_msg.h"
#include "vhu/frontend.h"
#include "vhu/util.h"
#include "vhu_test.h"

enum mode {
    M_EXTRA_FDS, /* every reply carries 8 eventfds */
    M_SILENT,    /* reads requests, never answers */
    M_DRIBBLE,   /* answers one byte every 100 ms */
    M_INFLIGHT,  /* honest GET_INFLIGHT_FD replies with 1 fd, then one with 2 */
};

struct backend {
    int sock;
    enum mode mode;
    pthread_t thread;
    int pool[VHOST_USER_MAX_FDS]; /* the fds replies carry (copies of these arrive) */
};

/* Fds of this process that are not the test's plumbing: the connection's two ends and the
 * backend's pool are open for the whole life of a backend. */
#define PLUMBING (2 + VHOST_USER_MAX_FDS)

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static void reply_with_fds(struct backend *b, const struct vhu_msg *req, unsigned nfds)
{
    struct vhu_msg r;

    vhu_msg_init(&r, req->hdr.request, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK, 8);
    if (req->hdr.request == VHOST_USER_GET_INFLIGHT_FD)
        vhu_msg_init(&r, req->hdr.request, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK,
                     sizeof(struct vhost_user_inflight));
    for (unsigned i = 0; i < nfds; i++)
        r.fds[i] = b->pool[i];
    r.nfds = nfds;
    vhu_msg_send(b->sock, &r);
}

static void *backend_main(void *opaque)
{
    struct backend *b = opaque;
    unsigned n = 0;
    struct vhu_msg m;

    /* Serve until the frontend closes its end (the test's watchdog: 3 s of silence at most). */
    while (vhu_msg_recv(b->sock, &m) == 0) {
        vhu_msg_close_fds(&m);
        n++;
        switch (b->mode) {
        case M_EXTRA_FDS:
            reply_with_fds(b, &m, VHOST_USER_MAX_FDS);
            break;
        case M_SILENT: {
            /* Until the frontend hangs up; after 3 s a frontend still waiting sees the end (the
             * test fails rather than hangs). */
            struct pollfd p = {.fd = b->sock, .events = POLLIN};
            poll(&p, 1, 3000);
            shutdown(b->sock, SHUT_RDWR);
            return NULL;
        }
        case M_DRIBBLE: {
            struct vhost_user_hdr h = {m.hdr.request, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK,
                                       8};
            uint8_t buf[20] = {0};
            memcpy(buf, &h, sizeof(h));
            for (unsigned i = 0; i < sizeof(buf); i++) {
                if (send(b->sock, buf + i, 1, MSG_NOSIGNAL) != 1)
                    return NULL;
                sleep_ms(100);
            }
            break;
        }
        case M_INFLIGHT:
            reply_with_fds(b, &m, n == 1 ? 1 : 2);
            break;
        }
    }
    return NULL;
}

static int backend_start(struct backend *b, enum mode mode, struct vhu_fe **fe)
{
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    b->sock = sv[1];
    b->mode = mode;
    for (unsigned i = 0; i < VHOST_USER_MAX_FDS; i++)
        b->pool[i] = vhu_eventfd_new();
    if (pthread_create(&b->thread, NULL, backend_main, b) != 0) {
        close(sv[0]);
        close(sv[1]);
        return -EAGAIN;
    }
    return vhu_fe_connect_fd(sv[0], fe);
}

static void backend_stop(struct backend *b, struct vhu_fe *fe)
{
    vhu_fe_free(fe); /* closes the frontend's end: the backend's recv ends */
    pthread_join(b->thread, NULL);
    vhu_fd_close(&b->sock);
    for (unsigned i = 0; i < VHOST_USER_MAX_FDS; i++)
        vhu_fd_close(&b->pool[i]);
}

static int get_u64(struct vhu_fe *fe, uint32_t req)
{
    struct vhu_msg m, reply;

    vhu_msg_init(&m, req, VHOST_USER_VERSION, 0);
    return vhu_fe_raw(fe, &m, &reply);
}

TEST(reply_fds_closed)
{
    int before = vhu_fd_count_self();
    struct vhu_fe_opts o = {.num_queues = 1, .queue_size = 16};
    struct backend b;
    struct vhu_fe *fe;

    ASSERT_OK(backend_start(&b, M_EXTRA_FDS, &fe));
    for (int i = 0; i < 16; i++)
        ASSERT_ERR(-EPROTO, get_u64(fe, VHOST_USER_GET_FEATURES));
    /* The typed calls refuse the same replies. */
    ASSERT_ERR(-EPROTO, vhu_fe_start(fe, &o));
    /* Nothing from the replies stayed. */
    ASSERT_EQ(vhu_fd_count_self(), before + PLUMBING);
    backend_stop(&b, fe);
    ASSERT_EQ(vhu_fd_count_self(), before);
}

TEST(inflight_reply_keeps_its_one_fd)
{
    int before = vhu_fd_count_self();
    struct vhost_user_inflight in = {.num_queues = 1, .queue_size = 16};
    struct vhu_msg m, reply;
    struct backend b;
    struct vhu_fe *fe;

    ASSERT_OK(backend_start(&b, M_INFLIGHT, &fe));
    vhu_msg_init(&m, VHOST_USER_GET_INFLIGHT_FD, VHOST_USER_VERSION, sizeof(in));
    memcpy(&m.payload, &in, sizeof(in));
    ASSERT_OK(vhu_fe_raw(fe, &m, &reply));
    ASSERT_EQ(reply.nfds, 1);
    ASSERT_EQ(vhu_fd_count_self(), before + PLUMBING + 1); /* the caller's to keep */
    vhu_msg_close_fds(&reply);
    /* Two fds: refused, both closed. */
    ASSERT_ERR(-EPROTO, vhu_fe_raw(fe, &m, &reply));
    ASSERT_EQ(vhu_fd_count_self(), before + PLUMBING);
    backend_stop(&b, fe);
    ASSERT_EQ(vhu_fd_count_self(), before);
}

/* One call against a backend in the given mode, the reply timeout set; *ms: how long it took,
 * *again: a second call right after. */
static int timed_call(enum mode mode, unsigned timeout_ms, bool start, uint64_t *ms, int *again)
{
    struct vhu_fe_opts o = {.num_queues = 1, .queue_size = 16};
    struct backend b;
    struct vhu_fe *fe;
    int r = backend_start(&b, mode, &fe);

    if (r < 0)
        return r;
    vhu_fe_set_reply_timeout(fe, timeout_ms);
    uint64_t t0 = vhu_now_ns();
    r = start ? vhu_fe_start(fe, &o) : get_u64(fe, VHOST_USER_GET_FEATURES);
    *ms = (vhu_now_ns() - t0) / 1000000;
    *again = get_u64(fe, VHOST_USER_GET_FEATURES);
    backend_stop(&b, fe);
    return r;
}

/* A backend that never answers: -ETIMEDOUT after the timeout set, then -ENOTCONN. */
TEST(silent_backend_times_out)
{
    uint64_t ms;
    int again;

    ASSERT_ERR(-ETIMEDOUT, timed_call(M_SILENT, 300, true, &ms, &again));
    if (ms < 250 || ms > 1500)
        FAIL_AT("timed out after %llu ms, want about 300", (unsigned long long)ms);
    ASSERT_ERR(-ENOTCONN, again);
}

/* A reply dribbled a byte every 100 ms (2 s for the 20 bytes): the timeout is for the whole
 * reply, not per byte. */
TEST(dribbling_backend_times_out)
{
    uint64_t ms;
    int again;

    ASSERT_ERR(-ETIMEDOUT, timed_call(M_DRIBBLE, 500, false, &ms, &again));
    if (ms > 1200)
        FAIL_AT("timed out after %llu ms, want about 500", (unsigned long long)ms);
    ASSERT_ERR(-ENOTCONN, again);
}
