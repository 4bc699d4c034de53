/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The null store: no backing at all, for measuring the device and ring path alone. Every
 * operation succeeds at once, inside the queueing call. Reads leave the guest's buffers as they
 * were (they are NOT zero-filled: touching the data would measure memset, not the device), and
 * writes are dropped. Never use it for data anyone wants back.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "blk_store.h"
#include "vhu/util.h"

struct null_qctx {
    blk_store_done_fn *done;
};

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

    ((struct null_qctx *)bq)->done(cookie, len > INT_MAX ? INT_MAX : (int)len);
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
    complete_rw(bq, iov, n, cookie);
    return 0;
}

static int null_flush(struct blk_qctx *bq, void *cookie)
{
    ((struct null_qctx *)bq)->done(cookie, 0);
    return 0;
}

static int null_fallocate(struct blk_qctx *bq, int mode, uint64_t off, uint64_t len, void *cookie)
{
    (void)mode;
    (void)off;
    (void)len;
    ((struct null_qctx *)bq)->done(cookie, 0);
    return 0;
}

static void null_close(struct blk_store *st)
{
    free(st);
}

static const struct blk_store_ops null_ops = {
    .qctx_new = null_qctx_new,
    .qctx_free = null_qctx_free,
    .readv = null_readv,
    .writev = null_writev,
    .flush = null_flush,
    .fallocate = null_fallocate,
    .close = null_close,
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
