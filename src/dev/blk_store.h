/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_DEV_BLK_STORE_H
#define VHU_DEV_BLK_STORE_H

/*
 * Backing stores of the blk device (internal to src/dev). A store is opened once per device; each
 * queue gets its own context (a file store: one io_uring sized to the ring, with an eventfd the
 * device watches on the queue's owner thread). Operations are queued with the request's pointer
 * as cookie; submit() hands the batch to the kernel at once; reap() calls the completion callback
 * for everything finished. A context is used by one thread only.
 *
 * Completion result: >= 0 success (bytes transferred for read/write), -errno failure. A store may
 * complete an operation before the queueing call returns (the null store always does): the
 * callback then runs inside it.
 */
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vhu/dev/blk.h"

struct blk_store;
struct blk_qctx;

typedef void blk_store_done_fn(void *cookie, int res);

struct blk_store_ops {
    /* depth: most operations outstanding at once (the ring size). */
    int (*qctx_new)(struct blk_store *st, unsigned depth, blk_store_done_fn *done,
                    struct blk_qctx **out);
    void (*qctx_free)(struct blk_qctx *q);
    /* The eventfd to watch for completions (drain it, then reap). */
    int (*qctx_fd)(const struct blk_qctx *q);

    /* Queue an operation. 0: queued (or already completed), -errno: not queued, no callback. */
    int (*readv)(struct blk_qctx *q, const struct iovec *iov, unsigned n, uint64_t off,
                 void *cookie);
    /* dsync: complete only once the data is durable (RWF_DSYNC). */
    int (*writev)(struct blk_qctx *q, const struct iovec *iov, unsigned n, uint64_t off,
                  bool dsync, void *cookie);
    int (*flush)(struct blk_qctx *q, void *cookie);
    /* fallocate(2) mode bits (FALLOC_FL_*) on [off, off + len). */
    int (*fallocate)(struct blk_qctx *q, int mode, uint64_t off, uint64_t len, void *cookie);

    /* A synchronous store (every operation completes inside its queueing call) leaves
     * qctx_fd, submit, reap and wait NULL. */
    /* Hand everything queued to the kernel (one syscall per batch). */
    int (*submit)(struct blk_qctx *q);
    /* Complete whatever has finished, without blocking; returns how many. */
    unsigned (*reap)(struct blk_qctx *q);
    /* Block until at least one operation finishes, then reap. */
    int (*wait)(struct blk_qctx *q);

    void (*close)(struct blk_store *st);
    /* Optional: make the store size bytes long (larger than st->size; the device checked),
     * on the control thread while queues run. NULL: the store cannot grow (-ENOTSUP). */
    int (*resize)(struct blk_store *st, uint64_t size);
};

struct blk_store {
    const struct blk_store_ops *ops;
    const char *engine;        /* "io_uring", "sync", "null", "nbd", "rbd" */
    uint64_t size;             /* bytes */
    bool read_only;
    bool is_bdev;              /* a block device: fallocate modes mean something else */
    bool can_unmap;            /* deallocating a range is possible (write_zeroes_may_unmap) */
    bool fd_not_eventfd;       /* qctx_fd is no eventfd to drain (the NBD store's epoll fd,
                                * which reap() clears) */
    bool punch_not_zero;       /* a punched range need not read back as zeroes (an NBD trim):
                                * WRITE_ZEROES with UNMAP then zeroes instead of punching */
    uint32_t phys_block_size;  /* bytes; 0: unknown */
};

/* engine: VHU_BLK_ENGINE_* (vhu/dev/blk.h); auto picks one from the file (blk_file.c). */
int blk_file_open(const char *path, bool read_only, bool direct, enum vhu_blk_engine engine,
                  struct blk_store **out);
int blk_null_open(uint64_t size, bool read_only, struct blk_store **out);
/* An NBD export (blk_nbd.c): uri as libnbd's nbd_connect_uri takes it; timeout_ms 0: 30 s. */
int blk_nbd_open(const char *uri, bool read_only, unsigned num_queues, uint32_t timeout_ms,
                 struct blk_store **out);
/* Ceph RBD (blk_rbd.c, built with librbd): spec POOL/IMAGE[@SNAP] or POOL/NAMESPACE/IMAGE[@SNAP];
 * a snapshot opens read-only. conf: a ceph.conf (NULL: Ceph's default search, $CEPH_CONF
 * first); id: the client name without "client." (NULL: admin). */
int blk_rbd_open(const char *spec, const char *conf, const char *id, bool read_only,
                 struct blk_store **out);
/* Splits spec in place; -EINVAL unless every part is non-empty. ns and snap may come back NULL. */
int blk_rbd_parse_spec(char *spec, char **pool, char **ns, char **image, char **snap);

/*
 * Test hooks of the null store (tests/unit/test_blk.c), all zero in production, where they cost
 * one untaken branch per operation. Set them before the device is built, with one queue thread.
 */
struct blk_null_test_hooks {
    bool on;            /* count the fields below */
    bool no_zero_range; /* FALLOC_FL_ZERO_RANGE fails with -EOPNOTSUPP (as on tmpfs): WRITE_ZEROES
                         * then writes its zeroes through the store */
    unsigned depth;     /* store operations running now */
    unsigned max_depth; /* the most ever nested: > 1 when a completion callback queued the next
                         * operation from inside the store */
    uint64_t written;   /* bytes written */
};
extern struct blk_null_test_hooks blk_null_test_hooks;

#endif
