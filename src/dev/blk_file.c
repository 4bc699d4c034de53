/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The file store: a regular file or a block device, with one of two engines. Both read and write
 * the guest's iovecs directly: no bounce buffer.
 *
 * io_uring: one ring per queue, sized to the virtqueue (each request has at most one operation
 * outstanding, so the submission queue never runs out and the completion queue, twice as deep,
 * never overflows). Completions raise an eventfd registered with the ring; the device watches it
 * on the queue's owner thread.
 *
 * sync: each operation is one system call on the queue's thread, completed before the queueing
 * call returns (like the null store). Right for files in memory (tmpfs, ramfs) whose reads
 * cannot be issued without blocking (no RWF_NOWAIT): io_uring hands every such read to an io-wq
 * kernel thread, a thread switch per request that costs more than the copy itself. Wrong for
 * anything that waits on a device: the queue's thread waits with it.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <limits.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "blk_store.h"
#include "vhu/log.h"
#include "vhu/util.h"

struct file_store {
    struct blk_store st; /* must be first */
    int fd;
};

struct file_qctx {
    struct file_store *fs;
    struct io_uring ring;
    int efd;
    blk_store_done_fn *done;
};

static int file_qctx_new(struct blk_store *st, unsigned depth, blk_store_done_fn *done,
                         struct blk_qctx **out)
{
    struct file_qctx *q = calloc(1, sizeof(*q));
    int r;

    if (!q)
        return -ENOMEM;
    q->fs = (struct file_store *)st;
    q->done = done;
    q->efd = vhu_eventfd_new();
    if (q->efd < 0) {
        r = q->efd;
        free(q);
        return r;
    }
    r = io_uring_queue_init(depth ? depth : 1, &q->ring, 0);
    if (r < 0) {
        vhu_fd_close(&q->efd);
        free(q);
        return r;
    }
    r = io_uring_register_eventfd(&q->ring, q->efd);
    if (r < 0) {
        io_uring_queue_exit(&q->ring);
        vhu_fd_close(&q->efd);
        free(q);
        return r;
    }
    *out = (struct blk_qctx *)q;
    return 0;
}

static void file_qctx_free(struct blk_qctx *bq)
{
    struct file_qctx *q = (struct file_qctx *)bq;

    if (!q)
        return;
    io_uring_queue_exit(&q->ring);
    vhu_fd_close(&q->efd);
    free(q);
}

static int file_qctx_fd(const struct blk_qctx *bq)
{
    return ((const struct file_qctx *)bq)->efd;
}

/* The ring is as deep as the virtqueue, so this only submits early if a caller queued more than
 * one operation per request. */
static struct io_uring_sqe *get_sqe(struct file_qctx *q)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);

    if (!sqe) {
        io_uring_submit(&q->ring);
        sqe = io_uring_get_sqe(&q->ring);
        if (!sqe)
            return NULL;
    }
    return sqe;
}

static int file_readv(struct blk_qctx *bq, const struct iovec *iov, unsigned n, uint64_t off,
                      void *cookie)
{
    struct file_qctx *q = (struct file_qctx *)bq;
    struct io_uring_sqe *sqe = get_sqe(q);

    if (!sqe)
        return -EBUSY;
    io_uring_prep_readv(sqe, q->fs->fd, iov, n, off);
    io_uring_sqe_set_data(sqe, cookie);
    return 0;
}

static int file_writev(struct blk_qctx *bq, const struct iovec *iov, unsigned n, uint64_t off,
                       bool dsync, void *cookie)
{
    struct file_qctx *q = (struct file_qctx *)bq;
    struct io_uring_sqe *sqe = get_sqe(q);

    if (!sqe)
        return -EBUSY;
    /* RWF_DSYNC: the write completes once it is durable, like pwritev2(..., RWF_DSYNC). */
    io_uring_prep_writev2(sqe, q->fs->fd, iov, n, off, dsync ? RWF_DSYNC : 0);
    io_uring_sqe_set_data(sqe, cookie);
    return 0;
}

static int file_flush(struct blk_qctx *bq, void *cookie)
{
    struct file_qctx *q = (struct file_qctx *)bq;
    struct io_uring_sqe *sqe = get_sqe(q);

    if (!sqe)
        return -EBUSY;
    io_uring_prep_fsync(sqe, q->fs->fd, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data(sqe, cookie);
    return 0;
}

static int file_fallocate(struct blk_qctx *bq, int mode, uint64_t off, uint64_t len, void *cookie)
{
    struct file_qctx *q = (struct file_qctx *)bq;
    struct io_uring_sqe *sqe = get_sqe(q);

    if (!sqe)
        return -EBUSY;
    io_uring_prep_fallocate(sqe, q->fs->fd, mode, (off_t)off, (off_t)len);
    io_uring_sqe_set_data(sqe, cookie);
    return 0;
}

static int file_submit(struct blk_qctx *bq)
{
    struct file_qctx *q = (struct file_qctx *)bq;
    int r;

    if (!io_uring_sq_ready(&q->ring))
        return 0;
    do
        r = io_uring_submit(&q->ring);
    while (r == -EINTR);
    /* -EAGAIN/-EBUSY: the entries stay queued and go with the next submit (or wait). */
    return r < 0 ? r : 0;
}

/* Each CQE is consumed before its callback runs, so a callback may queue and submit more. */
static unsigned file_reap(struct blk_qctx *bq)
{
    struct file_qctx *q = (struct file_qctx *)bq;
    struct io_uring_cqe *cqe;
    unsigned n = 0;

    while (io_uring_peek_cqe(&q->ring, &cqe) == 0) {
        void *cookie = io_uring_cqe_get_data(cqe);
        int res = cqe->res;

        io_uring_cqe_seen(&q->ring, cqe);
        q->done(cookie, res);
        n++;
    }
    return n;
}

static int file_wait(struct blk_qctx *bq)
{
    struct file_qctx *q = (struct file_qctx *)bq;
    struct io_uring_cqe *cqe;
    int r;

    do
        r = io_uring_submit_and_wait(&q->ring, 1);
    while (r == -EINTR);
    if (r < 0 && r != -EAGAIN && r != -EBUSY)
        return r;
    do
        r = io_uring_wait_cqe(&q->ring, &cqe);
    while (r == -EINTR);
    if (r < 0)
        return r;
    file_reap(bq);
    return 0;
}

/* ---- the sync engine ---- */

struct sync_qctx {
    struct file_store *fs;
    blk_store_done_fn *done;
};

static int sync_qctx_new(struct blk_store *st, unsigned depth, blk_store_done_fn *done,
                         struct blk_qctx **out)
{
    struct sync_qctx *q = calloc(1, sizeof(*q));

    (void)depth;
    if (!q)
        return -ENOMEM;
    q->fs = (struct file_store *)st;
    q->done = done;
    *out = (struct blk_qctx *)q;
    return 0;
}

static void sync_qctx_free(struct blk_qctx *bq)
{
    free(bq);
}

static ssize_t rw_once(int fd, const struct iovec *iov, unsigned n, uint64_t off, bool write,
                       int flags)
{
    ssize_t r;

    do
        r = write ? pwritev2(fd, iov, (int)n, (off_t)off, flags)
                  : preadv2(fd, iov, (int)n, (off_t)off, flags);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

/* The whole vector in one call; a short transfer goes on a segment at a time until it is whole,
 * fails, or meets the end of the file (the caller sees the short count). */
static int sync_rw(struct sync_qctx *q, const struct iovec *iov, unsigned n, uint64_t off,
                   bool write, int flags)
{
    size_t want = vhu_iov_size(iov, n), done;
    ssize_t r = n > IOV_MAX ? -EINVAL : rw_once(q->fs->fd, iov, n, off, write, flags);

    if (r < 0)
        return (int)r;
    done = (size_t)r;
    while (done < want && r > 0) {
        size_t skip = done;
        unsigned i = 0;

        while (skip >= iov[i].iov_len)
            skip -= iov[i++].iov_len;
        struct iovec rest = {(uint8_t *)iov[i].iov_base + skip, iov[i].iov_len - skip};
        r = rw_once(q->fs->fd, &rest, 1, off + done, write, flags);
        if (r < 0)
            return (int)r;
        done += (size_t)r;
    }
    return done > INT_MAX ? INT_MAX : (int)done;
}

static int sync_readv(struct blk_qctx *bq, const struct iovec *iov, unsigned n, uint64_t off,
                      void *cookie)
{
    struct sync_qctx *q = (struct sync_qctx *)bq;

    q->done(cookie, sync_rw(q, iov, n, off, false, 0));
    return 0;
}

static int sync_writev(struct blk_qctx *bq, const struct iovec *iov, unsigned n, uint64_t off,
                       bool dsync, void *cookie)
{
    struct sync_qctx *q = (struct sync_qctx *)bq;

    q->done(cookie, sync_rw(q, iov, n, off, true, dsync ? RWF_DSYNC : 0));
    return 0;
}

static int sync_flush(struct blk_qctx *bq, void *cookie)
{
    struct sync_qctx *q = (struct sync_qctx *)bq;

    q->done(cookie, fdatasync(q->fs->fd) < 0 ? -errno : 0);
    return 0;
}

static int sync_fallocate(struct blk_qctx *bq, int mode, uint64_t off, uint64_t len, void *cookie)
{
    struct sync_qctx *q = (struct sync_qctx *)bq;
    int r;

    do
        r = fallocate(q->fs->fd, mode, (off_t)off, (off_t)len) < 0 ? -errno : 0;
    while (r == -EINTR);
    q->done(cookie, r);
    return 0;
}

static void file_close(struct blk_store *st)
{
    struct file_store *fs = (struct file_store *)st;

    if (!fs)
        return;
    vhu_fd_close(&fs->fd);
    free(fs);
}

/*
 * A regular file grows with ftruncate (sparse: no blocks are written); a read-only one only if
 * something else already made it that long. A block device cannot be grown from here: the
 * new size must be what the device has become (an LV extended, say).
 */
static int file_resize(struct blk_store *st, uint64_t size)
{
    struct file_store *fs = (struct file_store *)st;
    struct stat sb;

    if (size > INT64_MAX)
        return -EFBIG;
    if (st->is_bdev) {
        uint64_t have;

        if (ioctl(fs->fd, BLKGETSIZE64, &have) < 0)
            return -errno;
        return size <= have ? 0 : -ENOSPC;
    }
    if (fstat(fs->fd, &sb) < 0)
        return -errno;
    if ((uint64_t)sb.st_size >= size)
        return 0;
    if (st->read_only)
        return -EROFS;
    return ftruncate(fs->fd, (off_t)size) < 0 ? -errno : 0;
}

static const struct blk_store_ops file_ops = {
    .qctx_new = file_qctx_new,
    .qctx_free = file_qctx_free,
    .qctx_fd = file_qctx_fd,
    .readv = file_readv,
    .writev = file_writev,
    .flush = file_flush,
    .fallocate = file_fallocate,
    .submit = file_submit,
    .reap = file_reap,
    .wait = file_wait,
    .close = file_close,
    .resize = file_resize,
};

static const struct blk_store_ops sync_ops = {
    .qctx_new = sync_qctx_new,
    .qctx_free = sync_qctx_free,
    .readv = sync_readv,
    .writev = sync_writev,
    .flush = sync_flush,
    .fallocate = sync_fallocate,
    .close = file_close,
    .resize = file_resize,
};

/*
 * auto: sync for a regular file on a memory file system (tmpfs, ramfs) that refuses RWF_NOWAIT
 * reads; io_uring for everything else, block devices included. With RWF_NOWAIT, io_uring reads
 * the page cache inline and its one submission per batch wins.
 */
static enum vhu_blk_engine pick_engine(int fd, const struct stat *sb)
{
    struct statfs sf;
    char c;
    struct iovec one = {&c, 1};

    if (!S_ISREG(sb->st_mode) || fstatfs(fd, &sf) < 0 ||
        (sf.f_type != TMPFS_MAGIC && sf.f_type != RAMFS_MAGIC))
        return VHU_BLK_ENGINE_IO_URING;
    if (preadv2(fd, &one, 1, 0, RWF_NOWAIT) < 0 && errno == EOPNOTSUPP)
        return VHU_BLK_ENGINE_SYNC;
    return VHU_BLK_ENGINE_IO_URING;
}

int blk_file_open(const char *path, bool read_only, bool direct, enum vhu_blk_engine engine,
                  struct blk_store **out)
{
    struct file_store *fs;
    struct stat sb;
    int flags = O_CLOEXEC | (read_only ? O_RDONLY : O_RDWR) | (direct ? O_DIRECT : 0);
    int r;

    if (!path || !*path)
        return -EINVAL;
    fs = calloc(1, sizeof(*fs));
    if (!fs)
        return -ENOMEM;
    fs->st.ops = &file_ops;
    fs->st.engine = "io_uring";
    fs->st.read_only = read_only;
    fs->fd = open(path, flags);
    if (fs->fd < 0) {
        r = -errno;
        goto fail;
    }
    if (fstat(fs->fd, &sb) < 0) {
        r = -errno;
        goto fail;
    }
    if (S_ISBLK(sb.st_mode)) {
        uint64_t size;
        unsigned int pbs = 0;

        if (ioctl(fs->fd, BLKGETSIZE64, &size) < 0) {
            r = -errno;
            goto fail;
        }
        if (ioctl(fs->fd, BLKPBSZGET, &pbs) == 0)
            fs->st.phys_block_size = pbs;
        fs->st.size = size;
        fs->st.is_bdev = true;
        /* Whether the device deallocates on WRITE_ZEROES with unmap is not known from here;
         * §5.2.6.2 asks for 0 when it cannot, so claim nothing. */
        fs->st.can_unmap = false;
    } else if (S_ISREG(sb.st_mode)) {
        fs->st.size = (uint64_t)sb.st_size;
        fs->st.can_unmap = true; /* FALLOC_FL_PUNCH_HOLE deallocates */
    } else {
        r = -EINVAL;
        vhu_err("blk: %s is neither a regular file nor a block device", path);
        goto fail;
    }
    if (engine == VHU_BLK_ENGINE_AUTO)
        engine = pick_engine(fs->fd, &sb);
    if (engine == VHU_BLK_ENGINE_SYNC) {
        fs->st.ops = &sync_ops;
        fs->st.engine = "sync";
    }
    *out = &fs->st;
    return 0;

fail:
    vhu_fd_close(&fs->fd);
    free(fs);
    return r;
}
