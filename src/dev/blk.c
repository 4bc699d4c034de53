/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * virtio-blk (VIRTIO 1.3 §5.2), device side: request parsing and validation, config space,
 * features. The data moves through a backing store (blk_store.h): the file store (io_uring, one
 * ring per queue, completions on the queue's owner thread through vhu_dev_watch()), an NBD export
 * (blk_nbd.c: libnbd, a connection per queue on the queue's thread) or the null store.
 *
 * A request (§5.2.6) is a 16-byte readable header {type, ioprio, sector}, then data, then one
 * writable status byte: the last writable byte of the chain, wherever the driver's segments put
 * the boundaries (the header and the data may share a segment; the header may span several).
 * Every malformed request is answered with a status; only a chain with no writable byte at all
 * (nowhere to put the status) breaks the queue.
 *
 * Per request, no allocation and no log line on the success path; a request has at most one
 * backing operation outstanding at a time (DISCARD/WRITE_ZEROES ranges go one after the other),
 * so a ring as deep as the virtqueue always has room.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>

#include "blk_store.h"
#include "vhu/dev/blk.h"
#include "vhu/device.h"
#include "vhu/log.h"
#include "vhu/util.h"
#include "vhu/virtio.h"
#include "vhu/vq.h"

#define BLK_DEF_QUEUE_SIZE 256
#define BLK_DEF_SEG_MAX 126
#define BLK_MAX_SEG_MAX 1022            /* + header + status = UIO_MAXIOV, what readv takes */
#define BLK_SIZE_MAX (1u << 20)         /* size_max: largest segment the driver should build */
#define BLK_MAX_DWZ_SEG 16              /* max_discard_seg, max_write_zeroes_seg */
#define BLK_MAX_DWZ_SECTORS (1u << 22)  /* 2 GiB per DISCARD / WRITE_ZEROES range */
#define BLK_MAX_RW_BYTES 0x7ffff000u    /* Linux's MAX_RW_COUNT: longer transfers come back short */
#define BLK_ZERO_CHUNK 65536u
#define BLK_FLUSH_EVERY 8               /* requests handled between two flushes of a batch */

struct blk_dev {
    struct vhu_device dev; /* must be first */
    struct blk_store *st;
    uint64_t capacity; /* 512-byte sectors; grows on the control thread (vhu_blk_resize),
                        * read once per request by the queue threads (relaxed atomics) */
    uint32_t blk_size;
    uint32_t seg_max;
    bool wce_default;
    uint8_t wce; /* the writeback field; written by set_config, read on queue threads (atomics) */
    char serial[VHU_VIRTIO_BLK_ID_BYTES];
};

/* One queue's state, owned by the queue's thread. */
struct blk_queue {
    struct blk_dev *bd;
    struct vhu_vq *vq;
    struct blk_qctx *io;
    int efd;          /* completion eventfd, -1 for synchronous stores */
    unsigned inflight; /* requests popped and not pushed */
    bool starved;     /* stopped popping with the element pool empty */
};

/* How the current DISCARD / WRITE_ZEROES range is being carried out. */
enum dwz_mode {
    DWZ_PUNCH, /* FALLOC_FL_PUNCH_HOLE: deallocate (reads return zeroes afterwards) */
    DWZ_ZERO,  /* FALLOC_FL_ZERO_RANGE: zero, keep allocated */
    DWZ_WRITE, /* write zeroes from a static buffer: stores without ZERO_RANGE (tmpfs) */
    DWZ_SYNC,  /* all ranges done; writethrough: make them durable */
};

struct blk_req {
    struct vhu_vq_elem elem; /* must be first */
    struct blk_queue *q;
    uint8_t *status;         /* the guest's status byte */
    struct iovec *data;      /* data segments: elem.iov trimmed of header and status */
    unsigned ndata;
    uint64_t data_len;
    uint32_t written;        /* data bytes written for the driver (IN, GET_ID) */
    uint32_t type;
    uint64_t sector;         /* IN / OUT, for error messages */
    /* DISCARD / WRITE_ZEROES: the ranges, copied out of guest memory once (§5.2.6) */
    uint8_t ndwz, idwz;
    uint8_t mode;            /* enum dwz_mode */
    bool sync_after;
    uint64_t zero_pos;       /* DWZ_WRITE: bytes of the current range done */
    uint32_t zero_chunk;     /* DWZ_WRITE: bytes in flight */
    struct iovec zero_tail;
    bool issuing;            /* inside dwz_issue(): a completion only records its result */
    bool step_done;          /* the step dwz_issue() queued completed already, with step_res */
    int step_res;
    struct vhu_virtio_blk_discard_write_zeroes dwz[BLK_MAX_DWZ_SEG];
};

/* Read by the kernel only. Aligned for O_DIRECT. */
static uint8_t zero_buf[BLK_ZERO_CHUNK] __attribute__((aligned(4096)));
#define ZI {zero_buf, BLK_ZERO_CHUNK}
static struct iovec zero_iov[16] = {ZI, ZI, ZI, ZI, ZI, ZI, ZI, ZI,
                                    ZI, ZI, ZI, ZI, ZI, ZI, ZI, ZI};
#undef ZI

static void blk_process(struct blk_queue *q);

/* ------------------------------------------------------------------------------------------ */
/* Cache mode                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/*
 * §5.2.6 / §5.2.6.2 (write stability): a completed write must already be durable when the driver
 * negotiated CONFIG_WCE and writeback is 0, or when it negotiated neither CONFIG_WCE nor FLUSH
 * (it then has no way to ask for a flush). A device configured writethrough stays writethrough
 * even if the driver negotiates FLUSH alone: more durable than asked is always allowed.
 */
static bool writethrough(const struct blk_dev *bd)
{
    uint64_t f = bd->dev.acked_features;

    if (!__atomic_load_n(&bd->wce, __ATOMIC_RELAXED))
        return true;
    return !vhu_has_feature(f, VHU_VIRTIO_BLK_F_CONFIG_WCE) && !vhu_has_feature(f, VHU_VIRTIO_BLK_F_FLUSH);
}

/* ------------------------------------------------------------------------------------------ */
/* Completion                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/*
 * The used length counts the data written for the driver plus the status byte (the driver reads
 * the status from the byte itself, §5.2.6; len is what Linux and QEMU use for accounting).
 */
static void finish(struct blk_req *r, uint8_t status)
{
    struct blk_queue *q = r->q;
    uint32_t written = status == VHU_VIRTIO_BLK_S_OK ? r->written : 0;

    *r->status = status;
    if (status != VHU_VIRTIO_BLK_S_OK)
        vhu_vq_count_error(q->vq);
    q->inflight--;
    /* Dirty logging: the push logs the first written + 1 bytes. The status byte is the last
     * writable one, and a failed request may have written part of its data. */
    if (status != VHU_VIRTIO_BLK_S_OK)
        vhu_vq_log_write(q->vq, &r->elem, 0, r->elem.in_len);
    else if ((uint64_t)written + 1 < r->elem.in_len)
        vhu_vq_log_write(q->vq, &r->elem, r->elem.in_len - 1, 1);
    vhu_vq_push(q->vq, &r->elem, written + 1);
}

/*
 * A DISCARD / WRITE_ZEROES request is a sequence of steps, one store operation each: per range a
 * hole punch, a ZERO_RANGE, or 1 MiB writes of zeroes (up to 2048 per 2 GiB range, 32768 for a
 * request of 16 ranges), then a flush in writethrough mode. dwz_run() issues them in a loop. A
 * synchronous store completes a step inside the queueing call: its callback then only records
 * the result (r->issuing is set) and the loop takes the next step, so the stack stays as deep
 * for 32768 steps as for one, whatever the store does. An asynchronous step's callback comes
 * later, from reap(), and resumes the loop there.
 */

/* Moves to the next non-empty range, or to the final flush. true: a step to issue; false: the
 * request is finished. */
static bool dwz_next_range(struct blk_req *r)
{
    do
        r->idwz++;
    while (r->idwz < r->ndwz && r->dwz[r->idwz].num_sectors == 0); /* empty ranges: done */
    if (r->idwz < r->ndwz) {
        const struct vhu_virtio_blk_discard_write_zeroes *d = &r->dwz[r->idwz];
        r->mode = (r->type == VHU_VIRTIO_BLK_T_DISCARD ||
                   ((d->flags & VHU_VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) &&
                    !r->q->bd->st->punch_not_zero))
                      ? DWZ_PUNCH
                      : DWZ_ZERO;
        r->zero_pos = 0;
        return true;
    }
    if (r->sync_after) {
        r->mode = DWZ_SYNC;
        return true;
    }
    finish(r, VHU_VIRTIO_BLK_S_OK);
    return false;
}

/*
 * One step finished with res: true when another step is to be issued (r->mode says which),
 * false when the request is finished. A store that cannot punch holes makes DISCARD a successful
 * no-op (§5.2.6.2: the device MAY deallocate) and WRITE_ZEROES with UNMAP a plain zeroing; one
 * that cannot zero a range gets zeroes written.
 */
static bool dwz_done(struct blk_req *r, int res)
{
    const struct vhu_virtio_blk_discard_write_zeroes *d = &r->dwz[r->idwz];

    switch (r->mode) {
    case DWZ_PUNCH:
        if (res == -EOPNOTSUPP && r->type == VHU_VIRTIO_BLK_T_DISCARD) {
            res = 0;
        } else if (res == -EOPNOTSUPP) {
            r->mode = DWZ_ZERO;
            return true;
        }
        break;
    case DWZ_ZERO:
        if (res == -EOPNOTSUPP) {
            r->mode = DWZ_WRITE;
            r->zero_pos = 0;
            return true;
        }
        break;
    case DWZ_WRITE:
        if (res >= 0 && (uint32_t)res != r->zero_chunk)
            res = -EIO;
        if (res >= 0) {
            r->zero_pos += r->zero_chunk;
            if (r->zero_pos < (uint64_t)d->num_sectors * VHU_VIRTIO_BLK_SECTOR_SIZE)
                return true;
        }
        break;
    case DWZ_SYNC:
    default:
        finish(r, res < 0 ? VHU_VIRTIO_BLK_S_IOERR : VHU_VIRTIO_BLK_S_OK);
        return false;
    }
    if (res < 0) {
        vhu_err_rl("blk: %s of %u sectors at %llu failed: %s",
                   r->type == VHU_VIRTIO_BLK_T_DISCARD ? "discard" : "write zeroes", d->num_sectors,
                   (unsigned long long)d->sector, strerror(-res));
        finish(r, VHU_VIRTIO_BLK_S_IOERR);
        return false;
    }
    return dwz_next_range(r);
}

/* Queue the step r->mode names. 0: queued (or already completed), -errno: not queued. */
static int dwz_issue(struct blk_req *r)
{
    struct blk_queue *q = r->q;
    const struct blk_store_ops *ops = q->bd->st->ops;
    const struct vhu_virtio_blk_discard_write_zeroes *d = &r->dwz[r->idwz];
    uint64_t off = d->sector * VHU_VIRTIO_BLK_SECTOR_SIZE;
    uint64_t len = (uint64_t)d->num_sectors * VHU_VIRTIO_BLK_SECTOR_SIZE;

    switch (r->mode) {
    case DWZ_PUNCH:
        return ops->fallocate(q->io, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len, r);
    case DWZ_ZERO:
        return ops->fallocate(q->io, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len, r);
    case DWZ_WRITE: {
        uint64_t left = len - r->zero_pos;
        /* Ranges are multiples of blk_size, so each chunk is too (O_DIRECT). */
        if (left >= BLK_ZERO_CHUNK) {
            unsigned n = (unsigned)VHU_MIN(left / BLK_ZERO_CHUNK, VHU_ARRAY_SIZE(zero_iov));
            r->zero_chunk = n * BLK_ZERO_CHUNK;
            return ops->writev(q->io, zero_iov, n, off + r->zero_pos, false, r);
        }
        r->zero_chunk = (uint32_t)left;
        r->zero_tail = (struct iovec){zero_buf, (size_t)left};
        return ops->writev(q->io, &r->zero_tail, 1, off + r->zero_pos, false, r);
    }
    case DWZ_SYNC:
    default:
        return ops->flush(q->io, r);
    }
}

/* Issue steps while there are some and the store completes them at once (see above). */
static void dwz_run(struct blk_req *r, bool more)
{
    while (more) {
        int rc;

        r->issuing = true;
        r->step_done = false;
        rc = dwz_issue(r);
        r->issuing = false;
        if (rc < 0) {
            finish(r, VHU_VIRTIO_BLK_S_IOERR);
            return;
        }
        if (!r->step_done)
            return; /* under way: the store's callback resumes the loop */
        more = dwz_done(r, r->step_res);
    }
}

/* A step's completion, from the store. */
static void dwz_complete(struct blk_req *r, int res)
{
    if (r->issuing) {
        /* completed inside dwz_issue(): dwz_run() goes on, without nesting a level */
        r->step_res = res;
        r->step_done = true;
        return;
    }
    dwz_run(r, dwz_done(r, res));
}

/* The store's completion callback (the queue's thread). */
static void req_done(void *cookie, int res)
{
    struct blk_req *r = cookie;

    switch (r->type) {
    case VHU_VIRTIO_BLK_T_IN:
    case VHU_VIRTIO_BLK_T_OUT:
        /* A short transfer is a failure too: the file shrank under us, or the medium is full. */
        if (res < 0 || (uint64_t)res != r->data_len) {
            vhu_err_rl("blk: %s of %llu bytes at sector %llu: %s",
                       r->type == VHU_VIRTIO_BLK_T_IN ? "read" : "write",
                       (unsigned long long)r->data_len,
                       (unsigned long long)r->sector,
                       res < 0 ? strerror(-res) : "short transfer");
            finish(r, VHU_VIRTIO_BLK_S_IOERR);
        } else {
            finish(r, VHU_VIRTIO_BLK_S_OK);
        }
        break;
    case VHU_VIRTIO_BLK_T_FLUSH:
        if (res < 0)
            vhu_err_rl("blk: flush failed: %s", strerror(-res));
        finish(r, res < 0 ? VHU_VIRTIO_BLK_S_IOERR : VHU_VIRTIO_BLK_S_OK);
        break;
    default:
        dwz_complete(r, res);
        break;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Parsing                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* §5.2.6: the status is the last writable byte. Trims it off the writable segments; false when
 * the chain has no writable byte. */
static bool take_status(struct blk_req *r)
{
    struct vhu_vq_elem *e = &r->elem;
    struct iovec *w = e->iov + e->out_num;

    for (uint32_t i = e->in_num; i-- > 0;) {
        if (!w[i].iov_len)
            continue;
        r->status = (uint8_t *)w[i].iov_base + w[i].iov_len - 1;
        w[i].iov_len--;
        r->ndata = w[i].iov_len ? i + 1 : i;
        r->data = w;
        r->data_len = e->in_len - 1;
        return true;
    }
    return false;
}

/* Readable data: the readable segments minus the 16 header bytes (which may end mid-segment). */
static void readable_data(struct blk_req *r, struct iovec **iov, unsigned *n, uint64_t *len)
{
    struct vhu_vq_elem *e = &r->elem;
    size_t skip = sizeof(struct vhu_virtio_blk_outhdr);
    uint32_t i = 0;

    while (i < e->out_num && e->iov[i].iov_len <= skip)
        skip -= e->iov[i++].iov_len;
    if (i < e->out_num) {
        e->iov[i].iov_base = (uint8_t *)e->iov[i].iov_base + skip;
        e->iov[i].iov_len -= skip;
    }
    *iov = e->iov + i;
    *n = e->out_num - i;
    *len = e->out_len - sizeof(struct vhu_virtio_blk_outhdr);
}

/* sector and len (bytes) inside the disk, aligned to the logical block size. */
static bool range_ok(const struct blk_dev *bd, uint64_t sector, uint64_t len)
{
    uint64_t cap = __atomic_load_n(&bd->capacity, __ATOMIC_RELAXED);

    if (len % bd->blk_size || sector % (bd->blk_size / VHU_VIRTIO_BLK_SECTOR_SIZE))
        return false;
    return sector <= cap && len / VHU_VIRTIO_BLK_SECTOR_SIZE <= cap - sector;
}

static uint8_t start_rw(struct blk_req *r, uint64_t sector, struct iovec *rd, unsigned nrd,
                        uint64_t rd_len)
{
    struct blk_queue *q = r->q;
    struct blk_dev *bd = q->bd;
    const struct blk_store_ops *ops = bd->st->ops;
    int rc;

    if (r->type == VHU_VIRTIO_BLK_T_IN) {
        if (rd_len) {
            vhu_err_rl("blk: read request with %llu readable data bytes",
                       (unsigned long long)rd_len);
            return VHU_VIRTIO_BLK_S_IOERR;
        }
    } else {
        /* §5.2.6.2: a write to a read-only device fails, and nothing is written. */
        if (bd->st->read_only)
            return VHU_VIRTIO_BLK_S_IOERR;
        if (r->data_len) {
            vhu_err_rl("blk: write request with %llu writable data bytes",
                       (unsigned long long)r->data_len);
            return VHU_VIRTIO_BLK_S_IOERR;
        }
        r->data = rd;
        r->ndata = nrd;
        r->data_len = rd_len;
    }
    if (!range_ok(bd, sector, r->data_len) || r->data_len > BLK_MAX_RW_BYTES) {
        vhu_err_rl("blk: %llu bytes at sector %llu: outside the disk or misaligned",
                   (unsigned long long)r->data_len, (unsigned long long)sector);
        return VHU_VIRTIO_BLK_S_IOERR;
    }
    if (!r->data_len)
        return VHU_VIRTIO_BLK_S_OK;
    r->sector = sector;
    if (r->type == VHU_VIRTIO_BLK_T_IN) {
        r->written = (uint32_t)r->data_len;
        rc = ops->readv(q->io, r->data, r->ndata, sector * VHU_VIRTIO_BLK_SECTOR_SIZE, r);
    } else {
        rc = ops->writev(q->io, r->data, r->ndata, sector * VHU_VIRTIO_BLK_SECTOR_SIZE,
                         writethrough(bd), r);
    }
    return rc < 0 ? VHU_VIRTIO_BLK_S_IOERR : 0xff;
}

static uint8_t start_dwz(struct blk_req *r, const struct iovec *rd, unsigned nrd, uint64_t rd_len)
{
    struct blk_dev *bd = r->q->bd;
    bool discard = r->type == VHU_VIRTIO_BLK_T_DISCARD;
    unsigned feature = discard ? VHU_VIRTIO_BLK_F_DISCARD : VHU_VIRTIO_BLK_F_WRITE_ZEROES;
    size_t n = rd_len / sizeof(r->dwz[0]);

    if (!vhu_has_feature(bd->dev.acked_features, feature))
        return VHU_VIRTIO_BLK_S_UNSUPP;
    if (bd->st->read_only)
        return VHU_VIRTIO_BLK_S_IOERR;
    /* §5.2.6: data is an array of 16-byte ranges, at most max_*_seg of them, nothing writable */
    if (r->data_len || !n || rd_len % sizeof(r->dwz[0]) || n > BLK_MAX_DWZ_SEG) {
        vhu_err_rl("blk: %s request with %llu readable, %llu writable data bytes",
                   discard ? "discard" : "write zeroes", (unsigned long long)rd_len,
                   (unsigned long long)r->data_len);
        return VHU_VIRTIO_BLK_S_IOERR;
    }
    vhu_iov_to_buf(rd, nrd, 0, r->dwz, n * sizeof(r->dwz[0]));
    for (size_t i = 0; i < n; i++) {
        const struct vhu_virtio_blk_discard_write_zeroes *d = &r->dwz[i];
        /* §5.2.6.2: unknown flags, or UNMAP on a discard, are UNSUPP. */
        if (d->flags & ~(uint32_t)VHU_VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP ||
            (discard && d->flags))
            return VHU_VIRTIO_BLK_S_UNSUPP;
        if (d->num_sectors > BLK_MAX_DWZ_SECTORS ||
            !range_ok(bd, d->sector, (uint64_t)d->num_sectors * VHU_VIRTIO_BLK_SECTOR_SIZE)) {
            vhu_err_rl("blk: %s of %u sectors at %llu: outside the disk, misaligned or too long",
                       discard ? "discard" : "write zeroes", d->num_sectors,
                       (unsigned long long)d->sector);
            return VHU_VIRTIO_BLK_S_IOERR;
        }
    }
    r->ndwz = (uint8_t)n;
    r->idwz = (uint8_t)-1;
    r->sync_after = writethrough(bd);
    /* dwz_next_range() advances to range 0 (or finishes, if all are empty). */
    dwz_run(r, dwz_next_range(r));
    return 0xff;
}

/*
 * Parse and start one request. Returns a status to complete it with now, or 0xff when the
 * request is under way (its completion callback will finish it).
 */
static uint8_t start(struct blk_req *r)
{
    struct blk_dev *bd = r->q->bd;
    struct vhu_virtio_blk_outhdr hdr;
    struct iovec *rd;
    unsigned nrd;
    uint64_t rd_len;

    if (r->elem.out_len < sizeof(hdr)) {
        vhu_err_rl("blk: request header is %llu bytes, not 16",
                   (unsigned long long)r->elem.out_len);
        return VHU_VIRTIO_BLK_S_IOERR;
    }
    /* Copy the header out once: the guest may rewrite its memory meanwhile. */
    vhu_iov_to_buf_head(r->elem.iov, r->elem.out_num, &hdr, sizeof(hdr));
    readable_data(r, &rd, &nrd, &rd_len);
    r->type = hdr.type;

    switch (hdr.type) {
    case VHU_VIRTIO_BLK_T_IN:
    case VHU_VIRTIO_BLK_T_OUT:
        return start_rw(r, hdr.sector, rd, nrd, rd_len);
    case VHU_VIRTIO_BLK_T_FLUSH:
        /* §5.2.6.1: the driver sets sector 0 and SHOULD NOT send data; both are ignored. */
        return bd->st->ops->flush(r->q->io, r) < 0 ? VHU_VIRTIO_BLK_S_IOERR : 0xff;
    case VHU_VIRTIO_BLK_T_GET_ID: {
        /* §5.2.6: up to 20 bytes, NUL-padded, no terminator when it is 20 long. */
        if (rd_len)
            return VHU_VIRTIO_BLK_S_IOERR;
        r->written = (uint32_t)vhu_iov_from_buf(r->data, r->ndata, 0, bd->serial,
                                                VHU_MIN(r->data_len, sizeof(bd->serial)));
        return VHU_VIRTIO_BLK_S_OK;
    }
    case VHU_VIRTIO_BLK_T_DISCARD:
    case VHU_VIRTIO_BLK_T_WRITE_ZEROES:
        return start_dwz(r, rd, nrd, rd_len);
    default:
        /* §5.2.6.2: GET_LIFETIME, SECURE_ERASE, zoned and unknown requests: not offered. */
        return VHU_VIRTIO_BLK_S_UNSUPP;
    }
}

static void handle(struct blk_queue *q, struct blk_req *r)
{
    uint8_t status;

    r->q = q;
    r->written = 0;
    if (!take_status(r)) {
        /* Nowhere to report anything: a driver bug or a hostile guest. This queue only. */
        vhu_vq_break(q->vq, "blk request without a writable status byte");
        vhu_vq_push(q->vq, &r->elem, 0); /* recycles the element */
        return;
    }
    q->inflight++;
    status = start(r);
    if (status != 0xff)
        finish(r, status);
}

/* ------------------------------------------------------------------------------------------ */
/* Queues                                                                                      */
/* ------------------------------------------------------------------------------------------ */

static void blk_process(struct blk_queue *q)
{
    const struct blk_store_ops *ops = q->bd->st->ops;
    struct vhu_vq *vq = q->vq;
    struct vhu_vq_elem *e;

    do {
        unsigned n = 0;

        vhu_vq_disable_notify(vq);
        while ((e = vhu_vq_pop(vq)) != NULL) {
            handle(q, (struct blk_req *)e);
            /* What completed inline is published at once, not once the ring is empty: a
             * driver that takes completions as they come keeps finding some, so it neither
             * sleeps nor waits for the whole batch, and posts new requests while the rest of
             * this one is handled. Publishing is a store; the decision to notify (a full
             * barrier, a read of the driver's event) is taken every few requests and at the
             * end. No-ops while nothing is staged (asynchronous store). */
            if (++n % BLK_FLUSH_EVERY == 0)
                vhu_vq_flush(vq);
            else
                vhu_vq_publish(vq);
        }
        if (ops->submit)
            ops->submit(q->io);
        vhu_vq_flush(vq);
        /* Every element is out: more work cannot be popped until completions return some;
         * the completion handler comes back here (and kicks stay off until then). */
        if (q->inflight >= vhu_vq_num(vq)) {
            q->starved = true;
            return;
        }
    } while (!vhu_vq_broken(vq) && vhu_vq_enable_notify(vq));
}

static void blk_queue_notify(struct vhu_device *dev, struct vhu_vq *vq)
{
    struct blk_queue *q = vhu_vq_priv(vq);

    (void)dev;
    if (q)
        blk_process(q);
}

/* The store's eventfd fired: complete what finished, publish once. */
static void on_completion(void *opaque)
{
    struct blk_queue *q = opaque;
    const struct blk_store_ops *ops = q->bd->st->ops;

    if (!q->bd->st->fd_not_eventfd)
        vhu_eventfd_drain(q->efd);
    ops->reap(q->io);
    ops->submit(q->io); /* next steps of DISCARD / WRITE_ZEROES */
    vhu_vq_flush(q->vq);
    if (q->starved && q->inflight < vhu_vq_num(q->vq)) {
        q->starved = false;
        blk_process(q);
    }
}

static void queue_free(struct blk_queue *q)
{
    if (q->efd >= 0)
        vhu_dev_unwatch(q->vq, q->efd);
    if (q->io)
        q->bd->st->ops->qctx_free(q->io);
    vhu_vq_set_priv(q->vq, NULL);
    free(q);
}

static int blk_queue_start(struct vhu_device *dev, struct vhu_vq *vq)
{
    struct blk_dev *bd = (struct blk_dev *)dev;
    struct blk_queue *q = calloc(1, sizeof(*q));
    int r;

    if (!q)
        return -ENOMEM;
    q->bd = bd;
    q->vq = vq;
    q->efd = -1;
    r = bd->st->ops->qctx_new(bd->st, vhu_vq_num(vq), req_done, &q->io);
    if (r < 0) {
        vhu_err("blk: queue %u: cannot set up I/O: %s", vhu_vq_index(vq), strerror(-r));
        free(q);
        return r;
    }
    int fd = bd->st->ops->qctx_fd ? bd->st->ops->qctx_fd(q->io) : -1;
    if (fd >= 0) {
        r = vhu_dev_watch(vq, fd, on_completion, q);
        if (r < 0) {
            vhu_err("blk: queue %u: cannot watch completions: %s", vhu_vq_index(vq),
                    strerror(-r));
            queue_free(q);
            return r;
        }
        q->efd = fd;
    }
    vhu_vq_set_priv(vq, q);
    return 0;
}

/* Everything in flight completes (and is pushed) before the ring stops. */
static void blk_queue_stop(struct vhu_device *dev, struct vhu_vq *vq)
{
    struct blk_queue *q = vhu_vq_priv(vq);

    (void)dev;
    if (!q)
        return;
    while (q->inflight && q->bd->st->ops->wait) { /* synchronous stores have none in flight */
        int r = q->bd->st->ops->wait(q->io);
        if (r < 0) {
            vhu_err("blk: queue %u: %u requests lost waiting for completions: %s",
                    vhu_vq_index(vq), q->inflight, strerror(-r));
            break;
        }
    }
    vhu_vq_flush(vq);
    queue_free(q);
}

/* ------------------------------------------------------------------------------------------ */
/* Config space, features, lifecycle                                                           */
/* ------------------------------------------------------------------------------------------ */

static void fill_config(const struct blk_dev *bd, struct vhu_virtio_blk_config *c)
{
    uint32_t lbs_sectors = bd->blk_size / VHU_VIRTIO_BLK_SECTOR_SIZE;
    uint32_t pbs = bd->st->phys_block_size;
    uint8_t exp = 0;

    while (pbs > bd->blk_size && (bd->blk_size << (exp + 1)) <= pbs && exp < 16)
        exp++;
    memset(c, 0, sizeof(*c));
    c->capacity = __atomic_load_n(&bd->capacity, __ATOMIC_RELAXED);
    c->size_max = BLK_SIZE_MAX;
    c->seg_max = bd->seg_max;
    c->blk_size = bd->blk_size;
    c->topology.physical_block_exp = exp;
    c->topology.min_io_size = 1;
    c->writeback = __atomic_load_n(&bd->wce, __ATOMIC_RELAXED);
    c->num_queues = bd->dev.num_queues;
    if (!bd->st->read_only) {
        c->max_discard_sectors = BLK_MAX_DWZ_SECTORS;
        c->max_discard_seg = BLK_MAX_DWZ_SEG;
        c->discard_sector_alignment = lbs_sectors;
        c->max_write_zeroes_sectors = BLK_MAX_DWZ_SECTORS;
        c->max_write_zeroes_seg = BLK_MAX_DWZ_SEG;
        c->write_zeroes_may_unmap = bd->st->can_unmap;
    }
}

static int blk_get_config(struct vhu_device *dev, void *buf, uint32_t off, uint32_t len)
{
    struct vhu_virtio_blk_config c;

    fill_config((struct blk_dev *)dev, &c);
    memcpy(buf, (const uint8_t *)&c + off, len);
    return 0;
}

/* §5.2.5: only the writeback field is writable, and only with CONFIG_WCE negotiated. */
static int blk_set_config(struct vhu_device *dev, const void *buf, uint32_t off, uint32_t len)
{
    struct blk_dev *bd = (struct blk_dev *)dev;
    uint8_t v;

    if (off != offsetof(struct vhu_virtio_blk_config, writeback) || len != 1 ||
        !vhu_has_feature(dev->acked_features, VHU_VIRTIO_BLK_F_CONFIG_WCE)) {
        vhu_err_rl("blk: config write of %u bytes at %u refused", len, off);
        return -EINVAL;
    }
    memcpy(&v, buf, 1);
    if (v > 1) {
        vhu_err_rl("blk: writeback %u is neither 0 nor 1", v);
        return -EINVAL;
    }
    static struct vhu_ratelimit rl = VHU_RATELIMIT_INIT(10, 5000);
    if (__atomic_exchange_n(&bd->wce, v, __ATOMIC_RELAXED) != v && vhu_ratelimit_ok(&rl))
        vhu_info("blk: the guest set the write cache to %s", v ? "write back" : "write through");
    return 0;
}

/*
 * Device state (device.h state_save/state_load): what the guest set through config space, the
 * write-cache mode. Layout, version 1: byte 0 version, byte 1 writeback (0 or 1), bytes 2-7 zero.
 */
#define BLK_STATE_VERSION 1
#define BLK_STATE_SIZE 8

static int blk_state_save(struct vhu_device *dev, void *buf, size_t len)
{
    struct blk_dev *bd = (struct blk_dev *)dev;
    uint8_t st[BLK_STATE_SIZE] = {BLK_STATE_VERSION, __atomic_load_n(&bd->wce, __ATOMIC_RELAXED)};

    if (len < sizeof(st))
        return -ENOSPC;
    memcpy(buf, st, sizeof(st));
    return (int)sizeof(st);
}

static int blk_state_load(struct vhu_device *dev, const void *buf, size_t len)
{
    struct blk_dev *bd = (struct blk_dev *)dev;
    static const uint8_t zero[BLK_STATE_SIZE - 2];
    const uint8_t *st = buf;

    if (len != BLK_STATE_SIZE || st[0] != BLK_STATE_VERSION || st[1] > 1 ||
        memcmp(st + 2, zero, sizeof(zero)) != 0)
        return -EINVAL;
    if (__atomic_exchange_n(&bd->wce, st[1], __ATOMIC_RELAXED) != st[1])
        vhu_info("blk: write cache %s (restored)", st[1] ? "write back" : "write through");
    return 0;
}

static void blk_reset(struct vhu_device *dev)
{
    struct blk_dev *bd = (struct blk_dev *)dev;

    __atomic_store_n(&bd->wce, bd->wce_default, __ATOMIC_RELAXED);
}

static void blk_destroy(struct vhu_device *dev)
{
    struct blk_dev *bd = (struct blk_dev *)dev;

    if (bd->st)
        bd->st->ops->close(bd->st);
    free(bd);
}

static const struct vhu_device_ops blk_ops = {
    .get_config = blk_get_config,
    .set_config = blk_set_config,
    .queue_start = blk_queue_start,
    .queue_stop = blk_queue_stop,
    .queue_notify = blk_queue_notify,
    .reset = blk_reset,
    .destroy = blk_destroy,
    .state_save = blk_state_save,
    .state_load = blk_state_load,
};

VHU_EXPORT bool vhu_blk_has_rbd(void)
{
#ifdef VHU_HAVE_RBD
    return true;
#else
    return false;
#endif
}

static int open_rbd(const struct vhu_blk_opts *o, struct blk_store **st)
{
#ifdef VHU_HAVE_RBD
    return blk_rbd_open(o->rbd, o->rbd_conf, o->rbd_id, o->read_only, st);
#else
    (void)o;
    (void)st;
    vhu_err("blk: this vhu is built without the RBD store (librbd-dev, meson -Drbd=enabled)");
    return -ENOTSUP;
#endif
}

VHU_EXPORT int vhu_blk_new(const struct vhu_blk_opts *opts, struct vhu_device **out)
{
    struct vhu_blk_opts o = opts ? *opts : (struct vhu_blk_opts){0};
    struct blk_dev *bd;
    uint64_t features;
    int r;

    if (!o.num_queues)
        o.num_queues = 1;
    if (!o.max_queue_size)
        o.max_queue_size = BLK_DEF_QUEUE_SIZE;
    if (!o.seg_max)
        o.seg_max = BLK_DEF_SEG_MAX;
    if (!o.blk_size)
        o.blk_size = VHU_VIRTIO_BLK_SECTOR_SIZE;
    if (o.max_queue_size > VHU_VQ_MAX_SIZE || o.seg_max > BLK_MAX_SEG_MAX ||
        (o.blk_size != 512 && o.blk_size != 4096) ||
        (o.serial && strlen(o.serial) > VHU_VIRTIO_BLK_ID_BYTES) || o.engine > VHU_BLK_ENGINE_SYNC) {
        vhu_err("blk: invalid options (queue size <= %u, seg_max <= %u, block size 512 or 4096,"
                " serial <= 20 bytes, a known engine)", VHU_VQ_MAX_SIZE, BLK_MAX_SEG_MAX);
        return -EINVAL;
    }
    bd = calloc(1, sizeof(*bd));
    if (!bd)
        return -ENOMEM;
    if (o.rbd)
        r = open_rbd(&o, &bd->st);
    else if (o.null_size)
        r = blk_null_open(o.null_size, o.read_only, &bd->st);
    else if (o.nbd_uri)
        r = blk_nbd_open(o.nbd_uri, o.read_only, o.num_queues, o.nbd_timeout_ms, &bd->st);
    else
        r = blk_file_open(o.path, o.read_only, o.direct, o.engine, &bd->st);
    if (r < 0) {
        vhu_err("blk: cannot open %s: %s",
                o.rbd           ? o.rbd
                : o.null_size ? "the null store"
                : o.nbd_uri   ? o.nbd_uri
                : o.path      ? o.path
                              : "(no path)",
                strerror(-r));
        free(bd);
        return r;
    }
    if (bd->st->size % o.blk_size) {
        vhu_err("blk: size %llu is not a multiple of the block size %u",
                (unsigned long long)bd->st->size, o.blk_size);
        blk_destroy(&bd->dev);
        return -EINVAL;
    }
    bd->capacity = bd->st->size / VHU_VIRTIO_BLK_SECTOR_SIZE;
    bd->blk_size = o.blk_size;
    bd->seg_max = o.seg_max;
    bd->wce_default = !o.writethrough;
    bd->wce = bd->wce_default;
    if (o.serial)
        memcpy(bd->serial, o.serial, strlen(o.serial)); /* NUL-padded by calloc */

    features = vhu_feature(VHU_VIRTIO_F_VERSION_1) | vhu_feature(VHU_VIRTIO_F_RING_PACKED) |
               vhu_feature(VHU_VIRTIO_RING_F_INDIRECT_DESC) | vhu_feature(VHU_VIRTIO_RING_F_EVENT_IDX) |
               vhu_feature(VHU_VIRTIO_BLK_F_SIZE_MAX) | vhu_feature(VHU_VIRTIO_BLK_F_SEG_MAX) |
               vhu_feature(VHU_VIRTIO_BLK_F_BLK_SIZE) | vhu_feature(VHU_VIRTIO_BLK_F_TOPOLOGY) |
               vhu_feature(VHU_VIRTIO_BLK_F_FLUSH) | vhu_feature(VHU_VIRTIO_BLK_F_CONFIG_WCE) |
               vhu_feature(VHU_VIRTIO_BLK_F_MQ);
    /* §5.2.3: RO for a read-only disk; DISCARD and WRITE_ZEROES only where writes go. The store
     * decides (the options, an NBD export read-only on the server, an RBD snapshot). */
    if (bd->st->read_only)
        features |= vhu_feature(VHU_VIRTIO_BLK_F_RO);
    else
        features |= vhu_feature(VHU_VIRTIO_BLK_F_DISCARD) | vhu_feature(VHU_VIRTIO_BLK_F_WRITE_ZEROES);

    bd->dev = (struct vhu_device){
        .ops = &blk_ops,
        .name = "blk",
        .virtio_id = VHU_VIRTIO_ID_BLOCK,
        .features = features,
        .num_queues = o.num_queues,
        .max_queue_size = o.max_queue_size,
        .config_size = sizeof(struct vhu_virtio_blk_config),
        .elem_size = sizeof(struct blk_req),
        /* seg_max data segments + header + status (§5.2.4: seg_max counts data only) */
        .max_segs = o.seg_max + 2,
        .state_size = BLK_STATE_SIZE,
    };
    *out = &bd->dev;
    return 0;
}

VHU_EXPORT uint64_t vhu_blk_capacity(const struct vhu_device *dev)
{
    return __atomic_load_n(&((const struct blk_dev *)dev)->capacity, __ATOMIC_RELAXED);
}

/*
 * Grow only: a shrink would pull the disk from under requests in flight and data the guest
 * still thinks it has. The store grows first, then the capacity is published (release: a
 * queue thread that sees the new capacity also sees a store that long).
 */
VHU_EXPORT int vhu_blk_resize(struct vhu_device *dev, uint64_t size)
{
    struct blk_dev *bd = (struct blk_dev *)dev;
    uint64_t cur = (uint64_t)vhu_blk_capacity(dev) * VHU_VIRTIO_BLK_SECTOR_SIZE;
    int r;

    if (dev->virtio_id != VHU_VIRTIO_ID_BLOCK || size % bd->blk_size)
        return -EINVAL;
    if (size == cur)
        return 0;
    if (size < cur)
        return -EINVAL;
    if (!bd->st->ops->resize)
        return -ENOTSUP;
    r = bd->st->ops->resize(bd->st, size);
    if (r < 0)
        return r;
    bd->st->size = size;
    __atomic_store_n(&bd->capacity, size / VHU_VIRTIO_BLK_SECTOR_SIZE, __ATOMIC_RELEASE);
    vhu_info("blk: resized to %llu bytes", (unsigned long long)size);
    return 0;
}

VHU_EXPORT const char *vhu_blk_engine_name(const struct vhu_device *dev)
{
    return ((const struct blk_dev *)dev)->st->engine;
}
