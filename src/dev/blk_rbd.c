/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The Ceph RBD store: an RBD image through librbd's asynchronous calls (rbd_aio_readv, _writev,
 * _flush, _write_zeroes), straight from and to the guest's iovecs.
 *
 * librbd runs each completion callback on one of its own threads. The callback must not touch
 * the device (the queue belongs to its owner thread), so it only records the result and hands the
 * operation over:
 *
 *   - every queue context has a fixed array of operation slots (as many as the virtqueue has
 *     entries: a request has at most one store operation outstanding), taken from and returned
 *     to a free list by the owner thread alone: no allocation of ours per request;
 *   - a finished slot is pushed onto the context's "done" stack, a lock-free multi-producer /
 *     single-consumer Treiber stack: producers (librbd threads, possibly several) CAS the head;
 *     the consumer (the owner thread) takes the whole stack at once with one atomic exchange and
 *     never pops a single node, so the ABA problem of Treiber pops cannot arise; it reverses the
 *     list to complete in arrival order;
 *   - the producer whose push found the stack empty writes the context's eventfd (watched with
 *     vhu_dev_watch() on the owner thread); pushes onto a non-empty stack need no wakeup, since
 *     the consumer drains the eventfd BEFORE it takes the stack, and so sees every node pushed
 *     before its exchange, and a wakeup for every node pushed after it. One eventfd write per
 *     burst of completions, no lock anywhere on the path;
 *   - a counter of callbacks still running lets qctx_free() wait for the last one to leave
 *     (it may be between its push and its eventfd write when the slot is already reaped).
 *
 * librbd itself allocates an AioCompletion per operation (rbd_aio_create_completion): that
 * allocation is librbd's API, not avoidable from outside.
 *
 * Mapping: a write with dsync is a write followed by rbd_aio_flush (RBD has no FUA); the flush
 * is issued by the owner thread when the write is reaped. FALLOC_FL_PUNCH_HOLE (DISCARD, and
 * WRITE_ZEROES with UNMAP) is rbd_aio_write_zeroes without flags, which deallocates whole
 * objects and zeroes partial ones (rbd_aio_discard may leave partial objects as they were, with
 * rbd_skip_partial_discard, so it is not a valid zeroing); FALLOC_FL_ZERO_RANGE (WRITE_ZEROES
 * without UNMAP: the device SHOULD NOT deallocate) is rbd_aio_write_zeroes with
 * RBD_WRITE_ZEROES_FLAG_THICK_PROVISION.
 *
 * The image spec: POOL/IMAGE, POOL/NAMESPACE/IMAGE, either with @SNAP for a snapshot, which
 * opens read-only.
 */
#include <errno.h>
#include <linux/falloc.h>
#include <limits.h>
#include <poll.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blk_store.h"
#include "vhu/log.h"
#include "vhu/util.h"

#define RBD_SPEC_MAX 512

struct rbd_store {
    struct blk_store st; /* must be first */
    rados_t cluster;
    rados_ioctx_t io;
    rbd_image_t img;
};

enum rbd_kind { OP_READ, OP_WRITE, OP_WRITE_SYNC, OP_FLUSH, OP_ZEROES };

struct rbd_qctx;

struct rbd_op {
    struct rbd_op *next; /* free list (owner thread) or done stack (producers, then owner) */
    struct rbd_qctx *q;
    void *cookie;
    rbd_completion_t c;
    int64_t res;
    uint64_t len;        /* bytes a read or write transfers: its result on success */
    enum rbd_kind kind;
};

struct rbd_qctx {
    struct rbd_store *rs;
    blk_store_done_fn *done;
    int efd;
    unsigned outstanding; /* owner thread: slots taken */
    struct rbd_op *free;  /* owner thread */
    /* Shared with librbd's threads, on their own cache line. */
    _Alignas(64) struct rbd_op *done_head;
    unsigned cb_running;
    _Alignas(64) struct rbd_op ops[];
};

/* ---- librbd's threads ---- */

static void rbd_cb(rbd_completion_t c, void *arg)
{
    struct rbd_op *op = arg;
    struct rbd_qctx *q = op->q; /* op may be reused once pushed: read q first */
    struct rbd_op *head;

    __atomic_add_fetch(&q->cb_running, 1, __ATOMIC_ACQUIRE);
    op->res = rbd_aio_get_return_value(c);
    head = __atomic_load_n(&q->done_head, __ATOMIC_RELAXED);
    do
        op->next = head;
    while (!__atomic_compare_exchange_n(&q->done_head, &head, op, true, __ATOMIC_RELEASE,
                                        __ATOMIC_RELAXED));
    if (!head)
        vhu_eventfd_signal(q->efd);
    __atomic_sub_fetch(&q->cb_running, 1, __ATOMIC_RELEASE);
}

/* ---- the owner thread ---- */

static struct rbd_op *op_get(struct rbd_qctx *q, void *cookie, enum rbd_kind kind, uint64_t len)
{
    struct rbd_op *op = q->free;
    int r;

    if (!op)
        return NULL;
    r = rbd_aio_create_completion(op, rbd_cb, &op->c);
    if (r < 0)
        return NULL;
    q->free = op->next;
    q->outstanding++;
    op->cookie = cookie;
    op->kind = kind;
    op->len = len;
    return op;
}

static void op_put(struct rbd_qctx *q, struct rbd_op *op)
{
    if (op->c)
        rbd_aio_release(op->c);
    op->c = NULL;
    op->next = q->free;
    q->free = op;
    q->outstanding--;
}

/* r: what an rbd_aio_* call returned; on failure the slot goes back, no callback. */
static int op_issued(struct rbd_qctx *q, struct rbd_op *op, int r)
{
    if (r < 0) {
        op_put(q, op);
        return r;
    }
    return 0;
}

static int rs_qctx_new(struct blk_store *st, unsigned depth, blk_store_done_fn *done,
                        struct blk_qctx **out)
{
    struct rbd_qctx *q;

    if (!depth)
        depth = 1;
    q = aligned_alloc(64, VHU_ALIGN_UP(sizeof(*q) + depth * sizeof(struct rbd_op), 64));
    if (!q)
        return -ENOMEM;
    memset(q, 0, sizeof(*q) + depth * sizeof(struct rbd_op));
    q->rs = (struct rbd_store *)st;
    q->done = done;
    q->efd = vhu_eventfd_new();
    if (q->efd < 0) {
        int r = q->efd;
        free(q);
        return r;
    }
    for (unsigned i = depth; i-- > 0;) {
        q->ops[i].q = q;
        q->ops[i].next = q->free;
        q->free = &q->ops[i];
    }
    *out = (struct blk_qctx *)q;
    return 0;
}

static int rs_qctx_fd(const struct blk_qctx *bq)
{
    return ((const struct rbd_qctx *)bq)->efd;
}

static int rs_readv(struct blk_qctx *bq, const struct iovec *iov, unsigned n, uint64_t off,
                     void *cookie)
{
    struct rbd_qctx *q = (struct rbd_qctx *)bq;
    struct rbd_op *op;

    if (n > IOV_MAX)
        return -EINVAL;
    op = op_get(q, cookie, OP_READ, vhu_iov_size(iov, n));
    if (!op)
        return -EBUSY;
    return op_issued(q, op, rbd_aio_readv(q->rs->img, iov, (int)n, off, op->c));
}

static int rs_writev(struct blk_qctx *bq, const struct iovec *iov, unsigned n, uint64_t off,
                      bool dsync, void *cookie)
{
    struct rbd_qctx *q = (struct rbd_qctx *)bq;
    struct rbd_op *op;

    if (n > IOV_MAX)
        return -EINVAL;
    op = op_get(q, cookie, dsync ? OP_WRITE_SYNC : OP_WRITE, vhu_iov_size(iov, n));
    if (!op)
        return -EBUSY;
    return op_issued(q, op, rbd_aio_writev(q->rs->img, iov, (int)n, off, op->c));
}

static int rs_flush(struct blk_qctx *bq, void *cookie)
{
    struct rbd_qctx *q = (struct rbd_qctx *)bq;
    struct rbd_op *op = op_get(q, cookie, OP_FLUSH, 0);

    if (!op)
        return -EBUSY;
    return op_issued(q, op, rbd_aio_flush(q->rs->img, op->c));
}

static int rs_fallocate(struct blk_qctx *bq, int mode, uint64_t off, uint64_t len, void *cookie)
{
    struct rbd_qctx *q = (struct rbd_qctx *)bq;
    int flags;
    struct rbd_op *op;

    if (mode & FALLOC_FL_PUNCH_HOLE)
        flags = 0;
    else if (mode & FALLOC_FL_ZERO_RANGE)
        flags = RBD_WRITE_ZEROES_FLAG_THICK_PROVISION;
    else
        return -EOPNOTSUPP;
    op = op_get(q, cookie, OP_ZEROES, 0);
    if (!op)
        return -EBUSY;
    return op_issued(q, op, rbd_aio_write_zeroes(q->rs->img, off, len, op->c, flags, 0));
}

/* One finished operation: its result to the device, or the flush a dsync write still needs. */
static void op_finish(struct rbd_qctx *q, struct rbd_op *op)
{
    void *cookie = op->cookie;
    int64_t res = op->res;
    int out;

    if (op->kind == OP_WRITE_SYNC && res >= 0) {
        int r;

        /* the same slot carries the flush; the write's completion goes */
        rbd_aio_release(op->c);
        op->c = NULL;
        op->kind = OP_WRITE;
        r = rbd_aio_create_completion(op, rbd_cb, &op->c);
        if (r < 0)
            op->c = NULL;
        else if ((r = rbd_aio_flush(q->rs->img, op->c)) == 0)
            return; /* completes as a write when the flush does */
        res = r;
    }
    if (res < 0)
        out = res < -4095 ? -EIO : (int)res;
    else if (op->kind == OP_READ || op->kind == OP_WRITE || op->kind == OP_WRITE_SYNC)
        out = op->len > INT_MAX ? INT_MAX : (int)op->len;
    else
        out = 0;
    op_put(q, op);
    q->done(cookie, out);
}

/* Take the whole done stack, reverse it (arrival order), complete each. A callback may queue
 * more: it takes free slots, which were returned before it runs. */
static unsigned rs_reap(struct blk_qctx *bq)
{
    struct rbd_qctx *q = (struct rbd_qctx *)bq;
    struct rbd_op *list = __atomic_exchange_n(&q->done_head, NULL, __ATOMIC_ACQUIRE);
    struct rbd_op *fifo = NULL;
    unsigned n = 0;

    while (list) {
        struct rbd_op *next = list->next;
        list->next = fifo;
        fifo = list;
        list = next;
    }
    while (fifo) {
        struct rbd_op *next = fifo->next;
        op_finish(q, fifo);
        fifo = next;
        n++;
    }
    return n;
}

static int rs_submit(struct blk_qctx *bq)
{
    (void)bq; /* every rbd_aio_* call is already on its way */
    return 0;
}

static int rs_wait(struct blk_qctx *bq)
{
    struct rbd_qctx *q = (struct rbd_qctx *)bq;
    struct pollfd p = {.fd = q->efd, .events = POLLIN};

    if (!q->outstanding)
        return 0;
    while (!__atomic_load_n(&q->done_head, __ATOMIC_ACQUIRE)) {
        int r = poll(&p, 1, -1);
        if (r < 0 && errno != EINTR)
            return -errno;
        vhu_eventfd_drain(q->efd);
    }
    rs_reap(bq);
    return 0;
}

/* Nothing of librbd may still point here: wait out whatever is in flight (its results are
 * dropped: the device has stopped caring), then the last callback's exit. */
static void rs_qctx_free(struct blk_qctx *bq)
{
    struct rbd_qctx *q = (struct rbd_qctx *)bq;

    if (!q)
        return;
    while (q->outstanding) {
        struct pollfd p = {.fd = q->efd, .events = POLLIN};
        struct rbd_op *list;

        if (poll(&p, 1, 1000) < 0 && errno != EINTR)
            break;
        vhu_eventfd_drain(q->efd);
        list = __atomic_exchange_n(&q->done_head, NULL, __ATOMIC_ACQUIRE);
        while (list) {
            struct rbd_op *next = list->next;
            op_put(q, list);
            list = next;
        }
    }
    while (__atomic_load_n(&q->cb_running, __ATOMIC_ACQUIRE))
        sched_yield();
    vhu_fd_close(&q->efd);
    free(q);
}

static void rbd_close_store(struct blk_store *st)
{
    struct rbd_store *rs = (struct rbd_store *)st;

    if (!rs)
        return;
    if (rs->img)
        rbd_close(rs->img);
    if (rs->io)
        rados_ioctx_destroy(rs->io);
    if (rs->cluster)
        rados_shutdown(rs->cluster);
    free(rs);
}

static const struct blk_store_ops rbd_ops = {
    .qctx_new = rs_qctx_new,
    .qctx_free = rs_qctx_free,
    .qctx_fd = rs_qctx_fd,
    .readv = rs_readv,
    .writev = rs_writev,
    .flush = rs_flush,
    .fallocate = rs_fallocate,
    .submit = rs_submit,
    .reap = rs_reap,
    .wait = rs_wait,
    .close = rbd_close_store,
};

/* POOL/IMAGE[@SNAP] or POOL/NAMESPACE/IMAGE[@SNAP], split in place; every part non-empty. */
int blk_rbd_parse_spec(char *s, char **pool, char **ns, char **image, char **snap)
{
    char *at = strchr(s, '@'), *a, *b;

    *snap = NULL;
    if (at) {
        *at = '\0';
        *snap = at + 1;
        if (!**snap || strchr(*snap, '@'))
            return -EINVAL;
    }
    a = strchr(s, '/');
    if (!a || a == s)
        return -EINVAL;
    *a++ = '\0';
    b = strchr(a, '/');
    if (b) {
        *b++ = '\0';
        if (!*a || !*b || strchr(b, '/'))
            return -EINVAL;
        *ns = a;
        *image = b;
    } else {
        if (!*a)
            return -EINVAL;
        *ns = NULL;
        *image = a;
    }
    *pool = s;
    return 0;
}

int blk_rbd_open(const char *spec, const char *conf, const char *id, bool read_only,
                 struct blk_store **out)
{
    char buf[RBD_SPEC_MAX], name[128];
    char *pool, *ns, *image, *snap;
    struct rbd_store *rs;
    uint64_t size;
    const char *what;
    int r;

    if (!spec || strlen(spec) >= sizeof(buf) || (id && (!*id || strlen(id) > 100)))
        return -EINVAL;
    strcpy(buf, spec);
    if (blk_rbd_parse_spec(buf, &pool, &ns, &image, &snap) < 0) {
        vhu_err("blk: rbd image '%s' is not POOL/IMAGE[@SNAP] or POOL/NAMESPACE/IMAGE[@SNAP]",
                spec);
        return -EINVAL;
    }
    rs = calloc(1, sizeof(*rs));
    if (!rs)
        return -ENOMEM;
    rs->st.ops = &rbd_ops;
    rs->st.engine = "rbd";
    rs->st.read_only = read_only || snap;
    rs->st.can_unmap = true;
    snprintf(name, sizeof(name), "client.%s", id ? id : "admin");

    what = "rados_create2";
    r = rados_create2(&rs->cluster, "ceph", name, 0);
    if (r < 0) {
        rs->cluster = NULL;
        goto fail;
    }
    /* A monitor that is not there would otherwise hold the daemon's start for 300 s; a
     * configuration file may say otherwise. */
    rados_conf_set(rs->cluster, "client_mount_timeout", "30");
    what = "reading the Ceph configuration";
    r = rados_conf_read_file(rs->cluster, conf);
    if (r < 0 && conf)
        goto fail;
    rados_conf_parse_env(rs->cluster, NULL); /* CEPH_ARGS */
    what = "connecting to the Ceph cluster";
    r = rados_connect(rs->cluster);
    if (r < 0)
        goto fail;
    what = "opening the pool";
    r = rados_ioctx_create(rs->cluster, pool, &rs->io);
    if (r < 0) {
        rs->io = NULL;
        goto fail;
    }
    if (ns)
        rados_ioctx_set_namespace(rs->io, ns);
    what = "opening the image";
    if (rs->st.read_only)
        r = rbd_open_read_only(rs->io, image, &rs->img, snap);
    else
        r = rbd_open(rs->io, image, &rs->img, NULL);
    if (r < 0) {
        rs->img = NULL;
        goto fail;
    }
    what = "reading the image size";
    r = rbd_get_size(rs->img, &size);
    if (r < 0)
        goto fail;
    rs->st.size = size;
    *out = &rs->st;
    return 0;

fail:
    vhu_err("blk: rbd %s: %s failed: %s", spec, what, strerror(-r));
    rbd_close_store(&rs->st);
    return r;
}
