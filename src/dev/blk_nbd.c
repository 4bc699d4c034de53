/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The NBD store: a disk on an NBD server, through libnbd's asynchronous API.
 *
 * One connection per queue, driven by the queue's own thread: each queue context has an epoll
 * instance holding the connection's socket (in the direction libnbd asks for), a retry timer and
 * a periodic tick; the device watches that one epoll fd (qctx_fd) with vhu_dev_watch(), so the
 * fd it watches stays the same across reconnects. No thread of our own, no thread per request.
 *
 * libnbd reads and writes one contiguous buffer per command: an operation on an iovec becomes
 * one command per run of contiguous segments (at most NBD_CHUNK_MAX bytes each) and completes
 * when all of them have. Command callbacks only record results; the device's completion callback
 * runs from reap(), outside libnbd.
 *
 * Several queues need several connections; the NBD protocol makes writes on one connection
 * visible to (and flushes on one connection cover) the others only if the server advertises
 * multi-conn. Without it, a device with more than one queue is refused at open.
 *
 * Costs on the data path: libnbd allocates a record per command and takes its handle lock per
 * call (nbd_aio_*, and nbd_aio_get_fd/get_direction once per batch to keep the epoll
 * registration in step); nothing of ours allocates or logs per request. A tick per queue
 * (timeout / 4, at most 1 s apart) checks for timeouts, also when idle.
 *
 * Server loss: the connection's commands in flight go back to the wait list, the queue
 * reconnects with a doubling backoff (NBD_RETRY_MIN_MS .. NBD_RETRY_MAX_MS) and reissues them
 * whole. Every command we send is safe to repeat: a read, a write of the same bytes to the same
 * place, a write-zeroes, a trim, a flush; and a request is not acknowledged to the guest until
 * it completed on some connection, so nothing acknowledged is lost (virtio gives requests in
 * flight together no order, so repeating one cannot reorder it against another). An operation
 * that has not completed within the timeout (from when it was first queued) fails with EIO;
 * a connection whose oldest command is older than the timeout is considered hung and replaced.
 * Stopping a queue (vhost-user GET_VRING_BASE, shutdown) waits for its requests, so with the
 * server gone it waits until they time out.
 */
#include <errno.h>
#include <fcntl.h>
#include <libnbd.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "blk_store.h"
#include "vhu/log.h"
#include "vhu/util.h"

#define NBD_CHUNK_MAX (4u << 20)  /* bytes per command: below every server's maximum (32 MiB) */
#define NBD_RETRY_MIN_MS 20
#define NBD_RETRY_MAX_MS 1000
#define NBD_DEF_TIMEOUT_MS 30000
#define NBD_TICK_MAX_MS 1000

struct nbd_store {
    struct blk_store st; /* must be first */
    char *uri;
    uint32_t timeout_ms;
    uint32_t chunk_max; /* bytes per command: NBD_CHUNK_MAX or the server's maximum block size */
    bool can_flush, can_fua, can_trim, can_zero;
};

enum nbd_op_kind { OP_READ, OP_WRITE, OP_FLUSH, OP_TRIM, OP_ZERO };

struct nbd_op {
    struct nbd_op *prev, *next; /* on the wait, issued or done list, or free */
    struct nbd_qctx *q;
    void *cookie;
    const struct iovec *iov;
    unsigned n;
    uint8_t kind;
    bool fua;         /* write: durable on completion */
    bool flush_after; /* write with dsync on a server without FUA: flush once written */
    uint64_t off, len;
    uint64_t t_first; /* ns: first queued (the timeout counts from here) */
    uint64_t t_issue; /* ns: issued on the current connection */
    unsigned pending; /* commands of this op in flight */
    int err;          /* first error of those commands, 0 */
};

struct nbd_list {
    struct nbd_op head;
};

enum nbd_conn { CONN_DOWN, CONN_CONNECTING, CONN_UP };

struct nbd_qctx {
    struct nbd_store *ns;
    blk_store_done_fn *done;
    struct nbd_handle *h;
    int sock;         /* the fd registered for h, -1 */
    uint32_t sock_ev; /* its epoll events */
    int epfd, retry_fd, tick_fd, kick_fd;
    enum nbd_conn conn;
    unsigned retry_ms;
    bool in_reap;
    bool logged_down;
    uint64_t t_conn;  /* ns: the connection under way started */
    struct nbd_list wait, issued, fin;
    struct nbd_op *free_ops;
    struct nbd_op *ops;
    unsigned depth;
};

/* ---- lists ---- */

static void list_init(struct nbd_list *l)
{
    l->head.next = l->head.prev = &l->head;
}

static bool list_empty(const struct nbd_list *l)
{
    return l->head.next == &l->head;
}

static void list_del(struct nbd_op *o)
{
    o->prev->next = o->next;
    o->next->prev = o->prev;
    o->next = o->prev = o;
}

static void list_add_tail(struct nbd_list *l, struct nbd_op *o)
{
    o->prev = l->head.prev;
    o->next = &l->head;
    l->head.prev->next = o;
    l->head.prev = o;
}

/* ---- epoll and timers ---- */

static void arm_timer(int fd, unsigned ms, bool periodic)
{
    struct itimerspec its = {0};

    its.it_value.tv_sec = ms / 1000;
    its.it_value.tv_nsec = (long)(ms % 1000) * 1000000L;
    if (periodic)
        its.it_interval = its.it_value;
    timerfd_settime(fd, 0, &its, NULL);
}

static void sock_unwatch(struct nbd_qctx *q)
{
    if (q->sock >= 0)
        epoll_ctl(q->epfd, EPOLL_CTL_DEL, q->sock, NULL);
    q->sock = -1;
    q->sock_ev = 0;
}

/* Register the handle's fd in the direction libnbd waits for; a syscall only on a change. */
static void sock_update(struct nbd_qctx *q)
{
    int fd = q->h ? nbd_aio_get_fd(q->h) : -1;
    unsigned dir = fd >= 0 ? nbd_aio_get_direction(q->h) : 0;
    uint32_t ev = ((dir & LIBNBD_AIO_DIRECTION_READ) ? EPOLLIN : 0) |
                  ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? EPOLLOUT : 0);
    struct epoll_event e = {.events = ev, .data.fd = fd};

    if (fd == q->sock && ev == q->sock_ev)
        return;
    if (fd != q->sock)
        sock_unwatch(q);
    if (fd < 0)
        return;
    if (epoll_ctl(q->epfd, q->sock == fd ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &e) == 0) {
        q->sock = fd;
        q->sock_ev = ev;
    }
}

/* ---- completion ---- */

static int st_cb(void *user_data, int *error)
{
    struct nbd_op *o = user_data;
    struct nbd_qctx *q = o->q;

    if (*error && !o->err)
        o->err = *error;
    if (--o->pending == 0) {
        list_del(o);
        list_add_tail(&q->fin, o);
        if (!q->in_reap) /* completed inside a queueing call: make sure reap() runs */
            vhu_eventfd_signal(q->kick_fd);
    }
    return 1; /* retire the command */
}

static void op_fail(struct nbd_qctx *q, struct nbd_op *o, int err)
{
    list_del(o);
    o->err = err;
    o->pending = 0;
    list_add_tail(&q->fin, o);
    if (!q->in_reap)
        vhu_eventfd_signal(q->kick_fd);
}

static bool conn_ok(struct nbd_qctx *q)
{
    return q->conn == CONN_UP && q->h && !nbd_aio_is_dead(q->h) && !nbd_aio_is_closed(q->h);
}

/* ---- issuing ---- */

/* Queue every command of o on the connection. 0, or -errno with none queued (o untouched). */
static int op_issue(struct nbd_qctx *q, struct nbd_op *o)
{
    const struct nbd_store *ns = q->ns;
    nbd_completion_callback cb = {.callback = st_cb, .user_data = o};
    int64_t c = 0;

    o->pending = 1; /* a guard: no completion runs the op while it is being issued */
    o->err = 0;
    o->t_issue = vhu_now_ns();
    list_del(o);
    list_add_tail(&q->issued, o);
    switch (o->kind) {
    case OP_FLUSH:
        o->pending++;
        c = nbd_aio_flush(q->h, cb, 0);
        break;
    case OP_TRIM:
        o->pending++;
        c = nbd_aio_trim(q->h, o->len, o->off, cb, 0);
        break;
    case OP_ZERO:
        o->pending++;
        c = nbd_aio_zero(q->h, o->len, o->off, cb, 0);
        break;
    default: {
        uint64_t off = o->off;
        uint32_t fl = o->kind == OP_WRITE && o->fua ? LIBNBD_CMD_FLAG_FUA : 0;

        for (unsigned i = 0; i < o->n && c >= 0;) {
            uint8_t *base = o->iov[i].iov_base;
            size_t len = o->iov[i].iov_len;

            /* runs of segments contiguous in our address space go as one command */
            while (++i < o->n && base + len == o->iov[i].iov_base &&
                   len + o->iov[i].iov_len <= ns->chunk_max)
                len += o->iov[i].iov_len;
            for (size_t done = 0; done < len && c >= 0;) {
                size_t l = VHU_MIN(len - done, (size_t)ns->chunk_max);

                o->pending++;
                c = o->kind == OP_READ ? nbd_aio_pread(q->h, base + done, l, off, cb, 0)
                                       : nbd_aio_pwrite(q->h, base + done, l, off, cb, fl);
                done += l;
                off += l;
            }
        }
        break;
    }
    }
    if (c < 0) {
        int e = nbd_get_errno();

        o->pending--; /* the command that was not queued */
        if (!o->err)
            o->err = e ? e : EIO;
    }
    /* drop the guard */
    if (--o->pending == 0) {
        list_del(o);
        list_add_tail(&q->fin, o);
        if (!q->in_reap)
            vhu_eventfd_signal(q->kick_fd);
    }
    return 0;
}

static void conn_lost(struct nbd_qctx *q, const char *why);

/* Issue what waits, if the connection is up. */
static void issue_waiting(struct nbd_qctx *q)
{
    while (!list_empty(&q->wait) && conn_ok(q))
        op_issue(q, q->wait.head.next);
    if (q->conn == CONN_UP && !conn_ok(q))
        conn_lost(q, nbd_get_error());
}

static struct nbd_op *op_new(struct nbd_qctx *q, enum nbd_op_kind kind, uint64_t off,
                             uint64_t len, void *cookie)
{
    struct nbd_op *o = q->free_ops;

    if (!o)
        return NULL;
    q->free_ops = o->next;
    memset(o, 0, sizeof(*o));
    o->next = o->prev = o;
    o->q = q;
    o->kind = (uint8_t)kind;
    o->off = off;
    o->len = len;
    o->cookie = cookie;
    o->t_first = vhu_now_ns();
    return o;
}

static int op_start(struct nbd_qctx *q, struct nbd_op *o)
{
    list_add_tail(&q->wait, o);
    if (q->conn == CONN_UP)
        issue_waiting(q);
    return 0;
}

/* ---- connection ---- */

static void retry_later(struct nbd_qctx *q)
{
    q->conn = CONN_DOWN;
    arm_timer(q->retry_fd, q->retry_ms, false);
    q->retry_ms = VHU_MIN(q->retry_ms * 2, (unsigned)NBD_RETRY_MAX_MS);
}

static void handle_drop(struct nbd_qctx *q)
{
    sock_unwatch(q);
    if (q->h)
        nbd_close(q->h); /* runs no callbacks: their ops are requeued by the caller */
    q->h = NULL;
}

/* The connection is gone (or hung): everything on it waits for the next one. */
static void conn_lost(struct nbd_qctx *q, const char *why)
{
    unsigned n = 0;

    handle_drop(q);
    /* completions recorded with errors because the connection died: retry them too */
    for (struct nbd_op *o = q->fin.head.next, *nx; o != &q->fin.head; o = nx) {
        nx = o->next;
        if (o->err && o->err != EINVAL && o->err != EROFS && o->err != ETIMEDOUT) {
            list_del(o);
            list_add_tail(&q->wait, o);
            n++;
        }
    }
    while (!list_empty(&q->issued)) {
        struct nbd_op *o = q->issued.head.next;
        list_del(o);
        list_add_tail(&q->wait, o);
        n++;
    }
    if (!q->logged_down || n)
        vhu_warn("blk nbd: connection to %s lost (%s); reconnecting, %u requests in flight to"
                 " retry", q->ns->uri, why ? why : "unknown error", n);
    q->logged_down = true;
    q->retry_ms = NBD_RETRY_MIN_MS;
    retry_later(q);
}

static void conn_start(struct nbd_qctx *q)
{
    q->h = nbd_create();
    /* Simple replies: a read's reply is one header and the data (a structured reply adds a
     * chunk header and a terminating chunk: more receive calls per read). Nothing here needs
     * structured replies (no block status, no DF). */
    if (q->h)
        nbd_set_request_structured_replies(q->h, false);
    if (!q->h || nbd_aio_connect_uri(q->h, q->ns->uri) < 0) {
        handle_drop(q);
        retry_later(q);
        return;
    }
    q->conn = CONN_CONNECTING;
    q->t_conn = vhu_now_ns();
    sock_update(q);
}

static bool same_export(struct nbd_qctx *q)
{
    struct nbd_store *ns = q->ns;
    int64_t size = nbd_get_size(q->h);

    if (size < 0 || (uint64_t)size != ns->st.size ||
        (!ns->st.read_only && nbd_is_read_only(q->h) == 1)) {
        vhu_err("blk nbd: %s came back different (size %lld, read-only %d)", ns->uri,
                (long long)size, nbd_is_read_only(q->h));
        return false;
    }
    return true;
}

/* Advance a connection under way; called when its fd is ready. */
static void conn_progress(struct nbd_qctx *q)
{
    if (nbd_aio_is_ready(q->h)) {
        if (!same_export(q)) {
            handle_drop(q);
            retry_later(q);
            return;
        }
        if (q->logged_down)
            vhu_warn("blk nbd: reconnected to %s", q->ns->uri);
        q->logged_down = false;
        q->conn = CONN_UP;
        q->retry_ms = NBD_RETRY_MIN_MS;
        issue_waiting(q);
    } else if (nbd_aio_is_dead(q->h) || nbd_aio_is_closed(q->h)) {
        handle_drop(q);
        retry_later(q);
    }
}

/* Fail what has waited past the timeout; declare a connection hung whose oldest command has. */
static void check_timeouts(struct nbd_qctx *q)
{
    uint64_t now = vhu_now_ns(), lim = (uint64_t)q->ns->timeout_ms * 1000000u;

    for (struct nbd_op *o = q->wait.head.next, *nx; o != &q->wait.head; o = nx) {
        nx = o->next;
        if (now - o->t_first >= lim)
            op_fail(q, o, ETIMEDOUT);
    }
    if (q->conn == CONN_CONNECTING && now - q->t_conn >= lim) { /* accepted, never answered */
        handle_drop(q);
        retry_later(q);
    }
    if (q->conn == CONN_UP && !list_empty(&q->issued) &&
        now - q->issued.head.next->t_issue >= lim)
        conn_lost(q, "no reply within the timeout");
}

/* ---- store operations ---- */

static void st_qctx_free(struct blk_qctx *bq);

static int st_qctx_new(struct blk_store *st, unsigned depth, blk_store_done_fn *done,
                        struct blk_qctx **out)
{
    struct nbd_store *ns = (struct nbd_store *)st;
    struct nbd_qctx *q = calloc(1, sizeof(*q));
    unsigned tick = VHU_MIN((unsigned)NBD_TICK_MAX_MS, VHU_MAX(ns->timeout_ms / 4, 10u));
    struct epoll_event e = {.events = EPOLLIN};

    if (!q)
        return -ENOMEM;
    q->ns = ns;
    q->done = done;
    q->sock = -1;
    q->epfd = q->retry_fd = q->tick_fd = q->kick_fd = -1;
    q->depth = depth ? depth : 1;
    q->retry_ms = NBD_RETRY_MIN_MS;
    list_init(&q->wait);
    list_init(&q->issued);
    list_init(&q->fin);
    q->ops = calloc(q->depth, sizeof(*q->ops));
    q->epfd = epoll_create1(EPOLL_CLOEXEC);
    q->retry_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    q->tick_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    q->kick_fd = vhu_eventfd_new();
    if (!q->ops || q->epfd < 0 || q->retry_fd < 0 || q->tick_fd < 0 || q->kick_fd < 0)
        goto fail;
    for (unsigned i = 0; i < q->depth; i++) {
        q->ops[i].next = q->free_ops;
        q->free_ops = &q->ops[i];
    }
    e.data.fd = q->retry_fd;
    if (epoll_ctl(q->epfd, EPOLL_CTL_ADD, q->retry_fd, &e) < 0)
        goto fail;
    e.data.fd = q->tick_fd;
    if (epoll_ctl(q->epfd, EPOLL_CTL_ADD, q->tick_fd, &e) < 0)
        goto fail;
    e.data.fd = q->kick_fd;
    if (epoll_ctl(q->epfd, EPOLL_CTL_ADD, q->kick_fd, &e) < 0)
        goto fail;
    arm_timer(q->tick_fd, tick, true);
    conn_start(q);
    *out = (struct blk_qctx *)q;
    return 0;
fail:
    st_qctx_free((struct blk_qctx *)q);
    return -ENOMEM;
}

static void st_qctx_free(struct blk_qctx *bq)
{
    struct nbd_qctx *q = (struct nbd_qctx *)bq;

    if (!q)
        return;
    handle_drop(q);
    vhu_fd_close(&q->epfd);
    vhu_fd_close(&q->retry_fd);
    vhu_fd_close(&q->tick_fd);
    vhu_fd_close(&q->kick_fd);
    free(q->ops);
    free(q);
}

static int st_qctx_fd(const struct blk_qctx *bq)
{
    return ((const struct nbd_qctx *)bq)->epfd;
}

static int st_readv(struct blk_qctx *bq, const struct iovec *iov, unsigned n, uint64_t off,
                     void *cookie)
{
    struct nbd_qctx *q = (struct nbd_qctx *)bq;
    struct nbd_op *o = op_new(q, OP_READ, off, vhu_iov_size(iov, n), cookie);

    if (!o)
        return -EBUSY;
    o->iov = iov;
    o->n = n;
    return op_start(q, o);
}

static int st_writev(struct blk_qctx *bq, const struct iovec *iov, unsigned n, uint64_t off,
                      bool dsync, void *cookie)
{
    struct nbd_qctx *q = (struct nbd_qctx *)bq;
    struct nbd_op *o;

    if (q->ns->st.read_only)
        return -EROFS;
    o = op_new(q, OP_WRITE, off, vhu_iov_size(iov, n), cookie);
    if (!o)
        return -EBUSY;
    o->iov = iov;
    o->n = n;
    o->fua = dsync && q->ns->can_fua;
    o->flush_after = dsync && !q->ns->can_fua && q->ns->can_flush;
    return op_start(q, o);
}

static int st_flush(struct blk_qctx *bq, void *cookie)
{
    struct nbd_qctx *q = (struct nbd_qctx *)bq;
    struct nbd_op *o;

    if (!q->ns->can_flush) { /* the server has no cache to flush: writes are durable */
        q->done(cookie, 0);
        return 0;
    }
    o = op_new(q, OP_FLUSH, 0, 0, cookie);
    if (!o)
        return -EBUSY;
    return op_start(q, o);
}

/* PUNCH_HOLE is a trim: DISCARD only, since a trimmed range need not read back as zeroes
 * (punch_not_zero keeps WRITE_ZEROES with UNMAP off it); ZERO_RANGE is a write-zeroes, which
 * the server may carry out by deallocating (no NBD_CMD_FLAG_NO_HOLE). */
static int st_fallocate(struct blk_qctx *bq, int mode, uint64_t off, uint64_t len, void *cookie)
{
    struct nbd_qctx *q = (struct nbd_qctx *)bq;
    bool trim = mode & FALLOC_FL_PUNCH_HOLE;
    struct nbd_op *o;

    if (q->ns->st.read_only)
        return -EROFS;
    if (trim ? !q->ns->can_trim : !(mode & FALLOC_FL_ZERO_RANGE) || !q->ns->can_zero) {
        q->done(cookie, -EOPNOTSUPP);
        return 0;
    }
    o = op_new(q, trim ? OP_TRIM : OP_ZERO, off, len, cookie);
    if (!o)
        return -EBUSY;
    return op_start(q, o);
}

static int st_submit(struct blk_qctx *bq)
{
    struct nbd_qctx *q = (struct nbd_qctx *)bq;

    if (q->conn != CONN_DOWN)
        sock_update(q);
    return 0;
}

/* Run the device's callbacks for finished operations (outside libnbd). */
static unsigned run_done(struct nbd_qctx *q)
{
    unsigned n = 0;

    while (!list_empty(&q->fin)) {
        struct nbd_op *o = q->fin.head.next;
        void *cookie = o->cookie;
        int res;

        list_del(o);
        if (!o->err && o->flush_after) { /* FUA by hand: the data, then a flush */
            o->flush_after = false;
            o->kind = OP_FLUSH;
            list_add_tail(&q->wait, o);
            issue_waiting(q);
            continue;
        }
        if (o->err)
            res = -o->err;
        else
            res = o->kind == OP_READ || o->kind == OP_WRITE ? (int)VHU_MIN(o->len, (uint64_t)INT_MAX)
                                                             : 0;
        if (o->err == ETIMEDOUT)
            res = -EIO;
        o->next = q->free_ops;
        q->free_ops = o;
        q->done(cookie, res);
        n++;
    }
    return n;
}

static unsigned st_reap(struct blk_qctx *bq)
{
    struct nbd_qctx *q = (struct nbd_qctx *)bq;
    struct epoll_event ev[4];
    unsigned n = 0;
    int k;

    q->in_reap = true;
    k = epoll_wait(q->epfd, ev, VHU_ARRAY_SIZE(ev), 0);
    for (int i = 0; i < k; i++) {
        int fd = ev[i].data.fd;

        if (fd == q->kick_fd) {
            vhu_eventfd_drain(fd);
        } else if (fd == q->tick_fd) {
            vhu_eventfd_drain(fd);
            check_timeouts(q);
        } else if (fd == q->retry_fd) {
            vhu_eventfd_drain(fd);
            check_timeouts(q);
            if (q->conn == CONN_DOWN)
                conn_start(q);
        } else if (fd == q->sock && q->h) {
            int r = 0;

            if (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                r = nbd_aio_notify_read(q->h);
            if (r >= 0 && (ev[i].events & EPOLLOUT))
                r = nbd_aio_notify_write(q->h);
            if (q->conn == CONN_CONNECTING)
                conn_progress(q);
            else if (r < 0 || !conn_ok(q))
                conn_lost(q, r < 0 ? nbd_get_error() : "the server closed it");
        }
    }
    n = run_done(q);
    if (q->conn != CONN_DOWN)
        sock_update(q);
    q->in_reap = false;
    return n;
}

static int st_wait(struct blk_qctx *bq)
{
    struct nbd_qctx *q = (struct nbd_qctx *)bq;
    struct epoll_event ev;
    int r;

    if (!list_empty(&q->fin)) {
        st_reap(bq);
        return 0;
    }
    do
        r = epoll_wait(q->epfd, &ev, 1, -1);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    st_reap(bq);
    return 0;
}

static void st_store_close(struct blk_store *st)
{
    struct nbd_store *ns = (struct nbd_store *)st;

    free(ns->uri);
    free(ns);
}

static const struct blk_store_ops nbd_ops = {
    .qctx_new = st_qctx_new,
    .qctx_free = st_qctx_free,
    .qctx_fd = st_qctx_fd,
    .readv = st_readv,
    .writev = st_writev,
    .flush = st_flush,
    .fallocate = st_fallocate,
    .submit = st_submit,
    .reap = st_reap,
    .wait = st_wait,
    .close = st_store_close,
};

/*
 * Connect once (blocking, at open) to learn the export: size, read-only, what it can do. The
 * connection is closed again: servers that take one client at a time (qemu-nbd without
 * --shared) then accept the queue's own.
 */
int blk_nbd_open(const char *uri, bool read_only, unsigned num_queues, uint32_t timeout_ms,
                 struct blk_store **out)
{
    struct nbd_handle *h = nbd_create();
    struct nbd_store *ns = NULL;
    int64_t size;
    int r = -EIO;

    if (!h)
        return -ENOMEM;
    if (nbd_connect_uri(h, uri) < 0) {
        r = nbd_get_errno() ? -nbd_get_errno() : -EIO;
        vhu_err("blk nbd: cannot connect to %s: %s", uri, nbd_get_error());
        goto out;
    }
    size = nbd_get_size(h);
    if (size < 0) {
        vhu_err("blk nbd: %s: no size: %s", uri, nbd_get_error());
        goto out;
    }
    if (num_queues > 1 && nbd_can_multi_conn(h) != 1) {
        vhu_err("blk nbd: %s does not advertise multi-conn: one connection per queue would not"
                " be consistent; use --num-queues 1 (qemu-nbd: --shared=N)", uri);
        r = -EINVAL;
        goto out;
    }
    ns = calloc(1, sizeof(*ns));
    if (!ns || !(ns->uri = strdup(uri))) {
        free(ns);
        ns = NULL;
        r = -ENOMEM;
        goto out;
    }
    ns->st.ops = &nbd_ops;
    ns->st.engine = "nbd";
    ns->st.size = (uint64_t)size;
    ns->st.read_only = read_only || nbd_is_read_only(h) == 1;
    ns->st.can_unmap = false;
    ns->st.punch_not_zero = true;
    ns->st.fd_not_eventfd = true;
    ns->st.phys_block_size = 0;
    ns->timeout_ms = timeout_ms ? timeout_ms : NBD_DEF_TIMEOUT_MS;
    ns->can_flush = nbd_can_flush(h) == 1;
    ns->can_fua = nbd_can_fua(h) == 1;
    ns->can_trim = nbd_can_trim(h) == 1;
    ns->can_zero = nbd_can_zero(h) == 1;
    {
        int64_t pref = nbd_get_block_size(h, LIBNBD_SIZE_PREFERRED);
        int64_t max = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);
        int64_t min = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);

        if (pref > 512 && pref <= 65536 && !(pref & (pref - 1)))
            ns->st.phys_block_size = (uint32_t)pref;
        ns->chunk_max = NBD_CHUNK_MAX;
        /* a server limit below 64 KiB is not worth serving a guest from (and not seen) */
        if (max >= 65536 && max < NBD_CHUNK_MAX)
            ns->chunk_max = (uint32_t)(max & ~(int64_t)4095);
        if (min > 512 || (max > 0 && max < 65536)) {
            vhu_err("blk nbd: %s wants block sizes %lld..%lld bytes: not supported (a guest"
                    " sends 512-byte-aligned requests up to 1 MiB per segment)", uri,
                    (long long)min, (long long)max);
            r = -EINVAL;
            free(ns->uri);
            free(ns);
            goto out;
        }
    }
    nbd_shutdown(h, 0);
    *out = &ns->st;
    r = 0;
out:
    nbd_close(h);
    return r;
}
