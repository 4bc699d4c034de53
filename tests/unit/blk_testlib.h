/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Request helpers shared by the blk unit tests (test_blk.c, test_blk_rbd.c). Include after the
 * test's own `struct tb`, which must hold: struct tdrv *d; uint8_t *hdr, *status, *data (hdr:
 * 16 bytes per queue, status: 1 byte per queue, in the shared arena); uint64_t hdr_gpa,
 * status_gpa, data_gpa. BLK_TEST_RQ_TIMEOUT_MS (default 5000) bounds each request.
 */
#ifndef VHU_TESTS_BLK_TESTLIB_H
#define VHU_TESTS_BLK_TESTLIB_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "vhu/dev/blk.h"
#include "tdrv.h"

#ifndef BLK_TEST_RQ_TIMEOUT_MS
#define BLK_TEST_RQ_TIMEOUT_MS 5000
#endif

/*
 * One request: the header, then len data bytes at data_gpa in nseg segments (device-writable
 * when writable), then the status byte. Returns the used length (or -errno); *st the status.
 */
static inline int rq_at(struct tb *t, unsigned q, uint32_t type, uint64_t sector,
                        uint64_t data_gpa, uint32_t len, bool writable, unsigned nseg, uint8_t *st)
{
    struct vhu_virtio_blk_outhdr h = {.type = type, .sector = sector};
    struct vhu_vqd_seg segs[40];
    unsigned k = 0, nd = 0;

    /* each queue its own header and status (queues may run on different worker threads) */
    uint8_t *status = t->status + q;

    memcpy(t->hdr + q * 16, &h, sizeof(h));
    *status = 0xee;
    segs[k++] = (struct vhu_vqd_seg){t->hdr_gpa + q * 16, sizeof(h)};
    if (len) {
        uint32_t per = len / nseg, off = 0;
        for (unsigned i = 0; i < nseg; i++) {
            uint32_t l = i + 1 == nseg ? len - off : per;
            segs[k++] = (struct vhu_vqd_seg){data_gpa + off, l};
            off += l;
            nd++;
        }
    }
    segs[k++] = (struct vhu_vqd_seg){t->status_gpa + q, 1};
    int r = tdrv_request(t->d, q, segs, writable ? 1 : 1 + nd, writable ? nd + 1 : 1,
                         BLK_TEST_RQ_TIMEOUT_MS);
    *st = *status;
    return r;
}

static inline int rq(struct tb *t, unsigned q, uint32_t type, uint64_t sector, uint32_t len,
                     bool writable, unsigned nseg, uint8_t *st)
{
    return rq_at(t, q, type, sector, t->data_gpa, len, writable, nseg, st);
}

static inline void pattern(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 9));
}

/* DISCARD / WRITE_ZEROES requests: count ranges of {sector, num, flags} in t.data. */
static inline int dwz(struct tb *t, uint32_t type,
                      const struct vhu_virtio_blk_discard_write_zeroes *d, unsigned n, uint8_t *st)
{
    memcpy(t->data, d, n * sizeof(*d));
    return rq(t, 0, type, 0, (uint32_t)(n * sizeof(*d)), false, 1, st);
}

#endif
