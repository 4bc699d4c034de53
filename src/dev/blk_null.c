/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The null store: no backing at all, for measuring the device and ring path alone. Every
 * operation succeeds at once, inside the queueing call. Reads leave the guest's buffers as they
 * were (they are NOT zero-filled: touching the data would measure memset, not the device), and
 * writes are dropped. Never use it for data anyone wants back.
 */
#include <errno.h>
#include <linux/falloc.h>
#include <limits.h>
#include <stdlib.h>

#include "blk_store.h"
#include "vhu/util.h"

struct null_qctx {
    blk_store_done_fn *done;
};

struct blk_null_test_hooks blk_null_test_hooks;

/* Every operation completes here, inside its queueing call. */
static void complete(struct blk_qctx *bq, void *cookie, int res)
{
    struct blk_null_test_hooks *h = &blk_null_test_hooks;

    if (__builtin_expect(h->on, 0)) {
        if (++h->depth > h->max_depth)
            h->max_depth = h->depth;
        ((struct null_qctx *)bq)->done(cookie, res);
        h->depth--;
        return;
    }
    ((struct null_qctx *)bq)->done(cookie, res);
}

static int null_qctx_new(struct blk_store *st, unsigned depth, blk_store_done_fn *done,
                         struct blk_qctx **out)
{
    struct null_qctx *q = calloc(1, sizeof(*q));

    (void)st;
    (void)depth;
    if (!q)
        return -ENOMEM;
    q->done = done;
    *out = (struct blk_qctx *)q;
    return 0;
}

static void null_qctx_free(struct blk_qctx *q)
{
    free(q);
}

/* Report the whole transfer, as a read or write that went through would. */
static void complete_rw(struct blk_qctx *bq, const struct iovec *iov, unsigned n, void *cookie)
{
    size_t len = vhu_iov_size(iov, n);

    complete(bq, cookie, len > INT_MAX ? INT_MAX : (int)len);
}

static int null_readv(struct blk_qctx *bq, const struct iovec *iov, unsigned n, uint64_t off,
                      void *cookie)
{
    (void)off;
    complete_rw(bq, iov, n, cookie);
    return 0;
}

static int null_writev(struct blk_qctx *bq, const struct iovec *iov, unsigned n, uint64_t off,
                       bool dsync, void *cookie)
{
    (void)off;
    (void)dsync;
    if (__builtin_expect(blk_null_test_hooks.on, 0))
        blk_null_test_hooks.written += vhu_iov_size(iov, n);
    complete_rw(bq, iov, n, cookie);
    return 0;
}

static int null_flush(struct blk_qctx *bq, void *cookie)
{
    complete(bq, cookie, 0);
    return 0;
}

static int null_fallocate(struct blk_qctx *bq, int mode, uint64_t off, uint64_t len, void *cookie)
{
    (void)off;
    (void)len;
    if (blk_null_test_hooks.no_zero_range && (mode & FALLOC_FL_ZERO_RANGE))
        complete(bq, cookie, -EOPNOTSUPP);
    else
        complete(bq, cookie, 0);
    return 0;
}

static void null_close(struct blk_store *st)
{
    free(st);
}

static int null_resize(struct blk_store *st, uint64_t size)
{
    st->size = size;
    return 0;
}

static const struct blk_store_ops null_ops = {
    .qctx_new = null_qctx_new,
    .qctx_free = null_qctx_free,
    .readv = null_readv,
    .writev = null_writev,
    .flush = null_flush,
    .fallocate = null_fallocate,
    .close = null_close,
    .resize = null_resize,
};

int blk_null_open(uint64_t size, bool read_only, struct blk_store **out)
{
    struct blk_store *st = calloc(1, sizeof(*st));

    if (!st)
        return -ENOMEM;
    st->ops = &null_ops;
    st->engine = "null";
    st->size = size;
    st->read_only = read_only;
    st->can_unmap = false; /* nothing is ever allocated, so nothing is deallocated either */
    *out = st;
    return 0;
}
