/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vhuctl blk: a virtio-blk driver (VIRTIO 1.3 §5.2) over the frontend library, with no VM.
 * Works against any vhost-user-blk backend (vhud blk, qemu-storage-daemon, ...).
 *
 *   vhuctl blk verify --socket-path S [--queues N] [--bytes N] [--offset N]
 *                     [--chunk N] [--seed N]
 *       negotiates, reads the config space, GET_ID, writes a seeded sector-tagged pattern over
 *       [offset, offset+bytes), reads it back with another request size, compares; FLUSH,
 *       an out-of-range read, WRITE_ZEROES and DISCARD when offered. A read-only device
 *       (VIRTIO_BLK_F_RO) must refuse a write; the region is then only read.
 *   vhuctl blk bench --socket-path S [--rw randread|randwrite|read|write] [--bs N] [--iodepth N]
 *                    [--queues N] [--runtime SEC] [--poll] [--size N]
 *       one thread per queue keeps iodepth requests in flight; event mode sleeps on the call
 *       eventfd, poll mode spins on the used ring. Prints one line
 *       "RESULT rw=... iops=... p50_us=... p99_us=... kicks=... calls=..." (latency from
 *       per-request timestamps, log-linear histogram, no allocation per request).
 * Both take the ring options (--packed, --queue-size N, --no-indirect, --no-event-idx).
 */
#include <endian.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "args.h"
#include "vhu/fe/blk.h"
#include "vhu/frontend.h"
#include "vhu/log.h"
#include "vhu/util.h"
#include "vhu/virtio.h"
#include "vhuctl_blk.h"
#include "vhuctl_common.h"

/* virtio-blk feature bits the reports name (VIRTIO 1.3 §5.2.3) and status bytes (§5.2.6). */
#define VB_F_RO 5
#define VB_F_FLUSH 9
#define VB_F_MQ 12
#define VB_F_DISCARD 13
#define VB_F_WRITE_ZEROES 14

#define VB_S_OK 0
#define VB_S_IOERR 1
#define VB_S_UNSUPP 2
#define VB_ID_BYTES VHU_FE_BLK_ID_BYTES
/* bench, event mode: kick after every this many resubmissions, not only once per reaped batch */
#define BENCH_KICK_EVERY 4
#define VB_SECTOR VHU_FE_BLK_SECTOR

/* What verify asks the driver for (bench calls the driver directly). */
enum vb_op { OP_READ, OP_WRITE, OP_FLUSH, OP_GET_ID, OP_DISCARD, OP_WRITE_ZEROES };

struct blk_opts {
    struct vhuctl_ring_opts ring;
    unsigned queues;
    uint64_t bytes;   /* verify: region length (0: min(4 MiB, capacity)) */
    uint64_t offset;  /* verify: region start */
    unsigned chunk;   /* verify: bytes per write request */
    uint64_t seed;
    const char *rw;
    unsigned bs;
    unsigned iodepth;
    double runtime;
    bool poll;
    bool force;       /* verify: write a disk that is not empty */
    uint64_t size;    /* bench: bytes of the device used (0: all) */
    int verbose;
};

struct blkdev {
    struct vhu_fe *fe;
    struct vhu_fe_blk_info info;
    uint64_t features;
    unsigned nq;
    struct vhu_fe_blk *drv[256]; /* verify: one driver of depth 1 per queue */
};

static bool has(const struct blkdev *d, unsigned bit)
{
    return vhu_has_feature(d->features, bit);
}

/* ---------------------------------------------------------------------------------------- */
/* Options                                                                                   */
/* ---------------------------------------------------------------------------------------- */

void vhuctl_blk_usage(FILE *f)
{
    fprintf(f,
            "blk verify: checks a virtio-blk device end to end. It WRITES THE DISK: a seeded\n"
            "pattern over [offset, offset+bytes), read back and compared; then FLUSH, an\n"
            "out-of-range read, WRITE_ZEROES and DISCARD when offered. On a disk that is not\n"
            "empty it refuses to start without --force.\n"
            "  vhuctl blk verify --socket-path PATH [--queues N] [--bytes N] [--offset N]\n"
            "                    [--chunk N] [--seed N] [--force]\n"
            "blk bench: I/O rates and latency (writes the disk with --rw randwrite|write)\n"
            "  vhuctl blk bench --socket-path PATH [--rw randread|randwrite|read|write]\n"
            "                   [--bs N] [--iodepth N] [--queues N] [--runtime SEC] [--poll]\n"
            "                   [--size N]\n"
            "\n"
            "blk options (sizes take K/M/G suffixes):\n"
            "  --queues N       queues to use (default 1; >1 needs VIRTIO_BLK_F_MQ)\n"
            "  verify: --bytes N (default min(4M, disk)), --offset N (default 0),\n"
            "          --chunk N (bytes per write, default 64K), --seed N (default 1),\n"
            "          --force (write even though the disk is not empty: its first 4 KiB or\n"
            "          the region's first sectors hold data other than zeros or an earlier\n"
            "          verify's pattern)\n"
            "  bench:  --rw MODE (default randread), --bs N (default 4096), --iodepth N per queue\n"
            "          (default 1), --runtime SEC (default 5), --poll (spin on the used ring\n"
            "          instead of sleeping on the call eventfd), --size N (bytes of the disk\n"
            "          to address, default all)\n");
}

static int parse_blk_opts(int argc, char **argv, struct blk_opts *o)
{
    static const struct option longopts[] = {
        {"queues", required_argument, NULL, 'Q'}, /* before --queue-size, as getopt lists them */
        VHUCTL_RING_LONGOPTS,
        {"bytes", required_argument, NULL, 'b'},
        {"offset", required_argument, NULL, 'o'},
        {"chunk", required_argument, NULL, 'c'},
        {"seed", required_argument, NULL, 'S'},
        {"rw", required_argument, NULL, 'r'},
        {"bs", required_argument, NULL, 'B'},
        {"iodepth", required_argument, NULL, 'd'},
        {"runtime", required_argument, NULL, 't'},
        {"poll", no_argument, NULL, 'P'},
        {"force", no_argument, NULL, 'F'},
        {"size", required_argument, NULL, 'z'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    int c, r;

    while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        r = vhuctl_ring_opt(&o->ring, c, optarg);
        if (r < 0)
            return r;
        if (r > 0)
            continue;
        switch (c) {
        case 'Q':
            if (vhu_arg_size(optarg, &v) < 0 || v == 0 || v > 256)
                goto bad;
            o->queues = (unsigned)v;
            break;
        case 'b':
            if (vhu_arg_size(optarg, &o->bytes) < 0 || o->bytes % VB_SECTOR)
                goto bad;
            break;
        case 'o':
            if (vhu_arg_size(optarg, &o->offset) < 0 || o->offset % VB_SECTOR)
                goto bad;
            break;
        case 'c':
            if (vhu_arg_size(optarg, &v) < 0 || v == 0 || v % VB_SECTOR || v > (64u << 20))
                goto bad;
            o->chunk = (unsigned)v;
            break;
        case 'S':
            if (vhu_arg_size(optarg, &o->seed) < 0)
                goto bad;
            break;
        case 'r':
            if (strcmp(optarg, "randread") && strcmp(optarg, "randwrite") &&
                strcmp(optarg, "read") && strcmp(optarg, "write"))
                goto bad;
            o->rw = optarg;
            break;
        case 'B':
            if (vhu_arg_size(optarg, &v) < 0 || v == 0 || v % VB_SECTOR || v > (16u << 20))
                goto bad;
            o->bs = (unsigned)v;
            break;
        case 'd':
            if (vhu_arg_size(optarg, &v) < 0 || v == 0 || v > 4096)
                goto bad;
            o->iodepth = (unsigned)v;
            break;
        case 't':
            if (vhuctl_arg_seconds(optarg, &o->runtime) < 0)
                goto bad;
            break;
        case 'P': o->poll = true; break;
        case 'F': o->force = true; break;
        case 'z':
            if (vhu_arg_size(optarg, &o->size) < 0 || o->size % VB_SECTOR)
                goto bad;
            break;
        case 'v': o->verbose++; break;
        case 'h': vhuctl_blk_usage(stdout); vhuctl_ring_usage(stdout); exit(0);
        default: return -EINVAL; /* getopt named the option: nothing follows its line */
        }
    }
    return vhuctl_args_rest(argc, argv, &o->ring);
bad:
    return vhuctl_bad_value(argv);
}

/* ---------------------------------------------------------------------------------------- */
/* Device setup                                                                              */
/* ---------------------------------------------------------------------------------------- */

/* Connect, negotiate, start o->queues queues, read struct virtio_blk_config (§5.2.4). */
static int blk_open(const struct blk_opts *o, size_t mem_size, struct blkdev *d)
{
    struct vhu_fe_opts fo = {
        .features = vhu_fe_blk_features(),
        .num_queues = (uint16_t)o->queues,
        .mem_size = mem_size,
        .mem_regions = 1,
    };
    char what[40];
    int r;

    memset(d, 0, sizeof(*d));
    snprintf(what, sizeof(what), "the device (%u queue%s)", o->queues, o->queues > 1 ? "s" : "");
    r = vhuctl_fe_open(&o->ring, &fo, what, &d->fe);
    if (r < 0)
        return r;
    d->features = vhu_fe_features(d->fe);
    d->nq = vhu_fe_num_queues(d->fe);
    if (o->queues > 1 && !has(d, VB_F_MQ)) {
        fprintf(stderr, "vhuctl: %u queues requested but VIRTIO_BLK_F_MQ was not offered\n",
                o->queues);
        r = -ENOTSUP;
        goto fail;
    }
    r = vhu_fe_blk_get_info(d->fe, &d->info);
    if (r < 0) {
        fprintf(stderr, "vhuctl: GET_CONFIG failed: %s\n", strerror(-r));
        goto fail;
    }
    return 0;
fail:
    vhu_fe_free(d->fe);
    d->fe = NULL;
    return r;
}

static void blk_close(struct blkdev *d)
{
    for (unsigned q = 0; q < VHU_ARRAY_SIZE(d->drv); q++)
        vhu_fe_blk_free(d->drv[q]);
    memset(d->drv, 0, sizeof(d->drv));
    vhuctl_fe_close(&d->fe);
}

/* ---------------------------------------------------------------------------------------- */
/* verify                                                                                    */
/* ---------------------------------------------------------------------------------------- */

struct vbuf {
    uint8_t *data;
    uint64_t data_gpa;
    uint32_t data_cap;
};

static const char *status_name(int s)
{
    switch (s) {
    case VB_S_OK: return "OK";
    case VB_S_IOERR: return "IOERR";
    case VB_S_UNSUPP: return "UNSUPP";
    default: return "bad status";
    }
}

/* One synchronous request on queue q; returns the status byte (0..255) or -errno. */
static int blk_sync(struct blkdev *d, unsigned q, struct vbuf *b, enum vb_op op, uint64_t sector,
                    uint32_t len)
{
    struct vhu_fe_blk_cpl c;
    int r;

    if ((op == OP_READ || op == OP_WRITE) && len > b->data_cap)
        return -E2BIG;
    if (!d->drv[q] && (r = vhu_fe_blk_new(d->fe, &d->info, q, 1, &d->drv[q])) < 0)
        return r;
    struct vhu_fe_blk *k = d->drv[q];
    switch (op) {
    case OP_READ: r = vhu_fe_blk_read(k, sector, b->data_gpa, len, b); break;
    case OP_WRITE: r = vhu_fe_blk_write(k, sector, b->data_gpa, len, b); break;
    case OP_FLUSH: r = vhu_fe_blk_flush(k, b); break;
    case OP_GET_ID: r = vhu_fe_blk_get_id(k, b->data_gpa, b); break;
    case OP_DISCARD: r = vhu_fe_blk_discard(k, sector, len, b); break;
    default: r = vhu_fe_blk_write_zeroes(k, sector, len, false, b); break;
    }
    if (r == 0)
        r = vhu_fe_blk_kick(k);
    if (r == 0)
        r = vhu_fe_blk_reap_wait(k, &c, 1, 10000);
    if (r < 0)
        return r;
    if (c.status == -EPROTO) {
        fprintf(stderr, "vhuctl: device reports %u bytes written for a request with %u writable "
                "bytes\n", c.used_len, c.writable);
        return -EPROTO;
    }
    return c.status;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Sector-tagged pattern: "VHUBLK\0\0", sector, seed, then seeded pseudo-random words. */
static void pattern_sector(uint8_t *p, uint64_t sector, uint64_t seed)
{
    uint64_t x = seed * 0x100000001B3ULL ^ sector, w[VB_SECTOR / 8];

    memcpy(&w[0], "VHUBLK\0", 8);
    w[1] = htole64(sector);
    w[2] = htole64(seed);
    for (unsigned i = 3; i < VB_SECTOR / 8; i++)
        w[i] = splitmix64(&x);
    memcpy(p, w, VB_SECTOR);
}

static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001B3ULL;
    return h;
}

/*
 * Whether verify may write the disk without --force: "empty" means the first 4 KiB (partition
 * tables, boot sectors, superblocks such as ext4's at 1 KiB and XFS's at 0, a swap signature)
 * and the first 4 KiB of the region it writes hold only zeros or sectors of an earlier
 * verify's pattern (so verify may run again). Over vhost-user a disk is only what reads
 * return; a partly used disk whose first sectors are zero is not detected. Returns 0 (empty),
 * 1 (not: *sector is the first that holds data) or a negative errno / virtio status > 1.
 */
static int verify_disk_empty(struct blkdev *d, struct vbuf *b, uint64_t first, uint64_t *sector)
{
    const uint64_t starts[2] = {0, first};
    static const uint8_t zero[VB_SECTOR];

    for (unsigned i = 0; i < 2; i++) {
        uint32_t n = (uint32_t)VHU_MIN((uint64_t)8, d->info.capacity - starts[i]);
        int st;

        if (i == 1 && first < 8)
            break;
        st = blk_sync(d, 0, b, OP_READ, starts[i], n * VB_SECTOR);
        if (st != VB_S_OK)
            return st < 0 ? st : st + 1;
        for (uint32_t s = 0; s < n; s++) {
            const uint8_t *p = b->data + (size_t)s * VB_SECTOR;
            if (memcmp(p, zero, VB_SECTOR) != 0 && memcmp(p, "VHUBLK\0", 8) != 0) {
                *sector = starts[i] + s;
                return 1;
            }
        }
    }
    return 0;
}

/* Write the pattern over [first, first+count) sectors in chunk-byte requests, round robin. */
static int verify_write(struct blkdev *d, struct vbuf *b, uint64_t first, uint64_t count,
                        uint32_t chunk, uint64_t seed, uint64_t *reqs)
{
    uint64_t s = first, end = first + count;

    while (s < end) {
        uint32_t n = (uint32_t)VHU_MIN((uint64_t)chunk / VB_SECTOR, end - s);
        for (uint32_t i = 0; i < n; i++)
            pattern_sector(b->data + (size_t)i * VB_SECTOR, s + i, seed);
        int st = blk_sync(d, (unsigned)(*reqs % d->nq), b, OP_WRITE, s, n * VB_SECTOR);
        (*reqs)++;
        if (st != VB_S_OK) {
            fprintf(stderr, "verify: write of %u sectors at sector %" PRIu64 " failed: %s\n", n,
                    s, st < 0 ? strerror(-st) : status_name(st));
            return -EIO;
        }
        s += n;
    }
    return 0;
}

/* Read back and compare (zero: expect zeroes instead of the pattern). */
static int verify_read(struct blkdev *d, struct vbuf *b, uint64_t first, uint64_t count,
                       uint32_t chunk, uint64_t seed, bool zero, uint64_t *reqs,
                       uint64_t *mismatches)
{
    uint8_t want[VB_SECTOR];
    uint64_t s = first, end = first + count;

    while (s < end) {
        uint32_t n = (uint32_t)VHU_MIN((uint64_t)chunk / VB_SECTOR, end - s);
        memset(b->data, 0xa5, (size_t)n * VB_SECTOR);
        int st = blk_sync(d, (unsigned)(*reqs % d->nq), b, OP_READ, s, n * VB_SECTOR);
        (*reqs)++;
        if (st != VB_S_OK) {
            fprintf(stderr, "verify: read of %u sectors at sector %" PRIu64 " failed: %s\n", n,
                    s, st < 0 ? strerror(-st) : status_name(st));
            return -EIO;
        }
        for (uint32_t i = 0; i < n; i++) {
            if (zero)
                memset(want, 0, sizeof(want));
            else
                pattern_sector(want, s + i, seed);
            if (memcmp(want, b->data + (size_t)i * VB_SECTOR, VB_SECTOR) != 0) {
                if (*mismatches < 5) {
                    uint64_t tag;
                    memcpy(&tag, b->data + (size_t)i * VB_SECTOR + 8, 8);
                    fprintf(stderr, "verify: sector %" PRIu64 " differs (holds the tag of "
                            "sector %" PRIu64 ")\n", s + i, le64toh(tag));
                }
                (*mismatches)++;
            }
        }
        s += n;
    }
    return 0;
}

static int cmd_verify(const struct blk_opts *o)
{
    struct blkdev d;
    struct vbuf b;
    uint64_t first, count, reqs = 0, mism = 0, t0;
    uint32_t chunk, rchunk;
    int r, st, fails = 0;
    size_t mem = (size_t)o->chunk * 2 + ((size_t)o->queues << 20) + (4u << 20);

    if (blk_open(o, mem, &d) < 0)
        return 1;
    printf("blk: %s, %u queue%s, %s ring, features offered 0x%" PRIx64 " negotiated 0x%" PRIx64
           " protocol 0x%" PRIx64 "\n", o->ring.socket_path, d.nq, d.nq > 1 ? "s" : "",
           o->ring.packed ? "packed" : "split", vhu_fe_backend_features(d.fe), d.features,
           vhu_fe_protocol_features(d.fe));
    printf("config (%u bytes): capacity %" PRIu64 " sectors (%.1f MiB) blk_size %u size_max %u "
           "seg_max %u num_queues %u writeback %u%s%s%s%s\n", d.info.config_len, d.info.capacity,
           (double)d.info.capacity * VB_SECTOR / 1048576.0, d.info.blk_size, d.info.size_max, d.info.seg_max,
           d.info.num_queues, d.info.writeback, has(&d, VB_F_RO) ? " RO" : "",
           has(&d, VB_F_FLUSH) ? " FLUSH" : "", has(&d, VB_F_DISCARD) ? " DISCARD" : "",
           has(&d, VB_F_WRITE_ZEROES) ? " WRITE_ZEROES" : "");
    if (has(&d, VB_F_MQ) && d.info.num_queues && d.nq > d.info.num_queues) {
        fprintf(stderr, "verify: using %u queues but the config space says %u\n", d.nq,
                d.info.num_queues);
        fails++;
    }

    chunk = (uint32_t)VHU_MIN((uint64_t)o->chunk, vhu_fe_blk_max_request(&d.info, 1u << 20));
    chunk &= ~(VB_SECTOR - 1);
    if (chunk == 0) {
        fprintf(stderr, "verify: the device's size_max/seg_max allow no request\n");
        blk_close(&d);
        return 1;
    }
    b.data = vhu_fe_alloc(d.fe, VHU_MAX(chunk, 4096u), 4096, &b.data_gpa);
    b.data_cap = VHU_MAX(chunk, 4096u);
    if (!b.data) {
        fprintf(stderr, "verify: shared memory exhausted\n");
        blk_close(&d);
        return 1;
    }

    /* GET_ID: 20 bytes, NUL-padded (§5.2.6.1). */
    memset(b.data, 0, VB_ID_BYTES);
    st = blk_sync(&d, 0, &b, OP_GET_ID, 0, VB_ID_BYTES);
    if (st == VB_S_OK)
        printf("get_id: \"%.*s\"\n", VB_ID_BYTES, (char *)b.data);
    else if (st == VB_S_UNSUPP)
        printf("get_id: unsupported by the device\n");
    else {
        fprintf(stderr, "verify: GET_ID failed: %s\n", st < 0 ? strerror(-st) : status_name(st));
        fails++;
    }

    first = o->offset / VB_SECTOR;
    if (first >= d.info.capacity) {
        fprintf(stderr, "verify: --offset is past the end of the disk\n");
        blk_close(&d);
        return 1;
    }
    count = o->bytes ? o->bytes / VB_SECTOR : VHU_MIN((uint64_t)8192, d.info.capacity - first);
    if (count > d.info.capacity - first) {
        fprintf(stderr, "verify: region (%" PRIu64 " sectors at %" PRIu64 ") exceeds the disk "
                "(%" PRIu64 " sectors)\n", count, first, d.info.capacity);
        blk_close(&d);
        return 1;
    }
    /* read back with another request size so a chunk-aligned bug cannot hide */
    rchunk = chunk > VB_SECTOR ? ((chunk / 2 + chunk / 4) & ~(VB_SECTOR - 1)) : chunk;
    if (rchunk == 0)
        rchunk = VB_SECTOR;

    if (!has(&d, VB_F_RO)) {
        uint64_t used = 0;

        st = verify_disk_empty(&d, &b, first, &used);
        if (st == 1 && !o->force) {
            fprintf(stderr, "verify: the disk is not empty (sector %" PRIu64 " holds data) and "
                    "verify overwrites %" PRIu64 " bytes at offset %" PRIu64 ": --force to do "
                    "it anyway\n", used, count * VB_SECTOR, first * VB_SECTOR);
            blk_close(&d);
            return 1;
        }
        if (st < 0 || st > 1) {
            fprintf(stderr, "verify: reading the first sectors failed: %s\n",
                    st < 0 ? strerror(-st) : status_name(st - 1));
            blk_close(&d);
            return 1;
        }
        printf("verify: writes %" PRIu64 " bytes at offset %" PRIu64 " of the disk%s\n",
               count * VB_SECTOR, first * VB_SECTOR,
               st == 1 ? " (not empty: --force given)" : "");
    }
    t0 = vhu_now_ns();
    if (has(&d, VB_F_RO)) {
        memset(b.data, 0x5a, VB_SECTOR);
        st = blk_sync(&d, 0, &b, OP_WRITE, first, VB_SECTOR);
        if (st == VB_S_OK) {
            fprintf(stderr, "verify: read-only device accepted a write\n");
            fails++;
        } else {
            printf("read-only: write refused (%s)\n", st < 0 ? strerror(-st) : status_name(st));
        }
        uint64_t h = 0xcbf29ce484222325ULL, s = first;
        while (s < first + count) {
            uint32_t n = (uint32_t)VHU_MIN((uint64_t)chunk / VB_SECTOR, first + count - s);
            st = blk_sync(&d, (unsigned)(reqs++ % d.nq), &b, OP_READ, s, n * VB_SECTOR);
            if (st != VB_S_OK) {
                fprintf(stderr, "verify: read at sector %" PRIu64 " failed: %s\n", s,
                        st < 0 ? strerror(-st) : status_name(st));
                fails++;
                break;
            }
            h = fnv1a(h, b.data, (size_t)n * VB_SECTOR);
            s += n;
        }
        printf("read: %" PRIu64 " sectors at sector %" PRIu64 ", fnv1a64 %016" PRIx64 "\n",
               count, first, h);
    } else {
        r = verify_write(&d, &b, first, count, chunk, o->seed, &reqs);
        if (r == 0)
            r = verify_read(&d, &b, first, count, rchunk, o->seed, false, &reqs, &mism);
        double secs = (double)(vhu_now_ns() - t0) / 1e9;
        if (r < 0 || mism) {
            fprintf(stderr, "verify: pattern check FAILED (%" PRIu64 " sectors differ)\n", mism);
            fails++;
        } else {
            printf("pattern: wrote %" PRIu64 " sectors at sector %" PRIu64 " in %u-byte "
                   "requests, read back in %u-byte requests, all match (seed %" PRIu64 ", %"
                   PRIu64 " requests over %u queue%s, %.3f s)\n", count, first, chunk, rchunk,
                   o->seed, reqs, d.nq, d.nq > 1 ? "s" : "", secs);
        }
    }

    if (has(&d, VB_F_FLUSH)) {
        st = blk_sync(&d, 0, &b, OP_FLUSH, 0, 0);
        if (st == VB_S_OK)
            printf("flush: OK\n");
        else {
            fprintf(stderr, "verify: FLUSH failed: %s\n", st < 0 ? strerror(-st) : status_name(st));
            fails++;
        }
    } else {
        printf("flush: VIRTIO_BLK_F_FLUSH not offered\n");
    }

    /* A read past the end must fail (§5.2.6.2: IOERR). */
    st = blk_sync(&d, 0, &b, OP_READ, d.info.capacity, VB_SECTOR);
    if (st == VB_S_OK) {
        fprintf(stderr, "verify: a read at sector %" PRIu64 " (the capacity) succeeded\n",
                d.info.capacity);
        fails++;
    } else if (st < 0) {
        fprintf(stderr, "verify: out-of-range read: %s\n", strerror(-st));
        fails++;
    } else {
        printf("out-of-range read: refused (%s)\n", status_name(st));
    }

    /* WRITE_ZEROES then DISCARD on the region's first sectors; the pattern is restored. */
    uint32_t zn = (uint32_t)VHU_MIN(count, (uint64_t)16);
    static const struct {
        unsigned bit;
        enum vb_op type;
        const char *name;
    } ranged[] = {{VB_F_WRITE_ZEROES, OP_WRITE_ZEROES, "write_zeroes"},
                  {VB_F_DISCARD, OP_DISCARD, "discard"}};
    for (unsigned i = 0; i < VHU_ARRAY_SIZE(ranged) && !has(&d, VB_F_RO) && fails == 0; i++) {
        if (!has(&d, ranged[i].bit)) {
            printf("%s: not offered\n", ranged[i].name);
            continue;
        }
        st = blk_sync(&d, 0, &b, ranged[i].type, first, zn);
        if (st != VB_S_OK) {
            fprintf(stderr, "verify: %s of %u sectors failed: %s\n", ranged[i].name, zn,
                    st < 0 ? strerror(-st) : status_name(st));
            fails++;
            break;
        }
        if (ranged[i].type == OP_WRITE_ZEROES) {
            r = verify_read(&d, &b, first, zn, chunk, 0, true, &reqs, &mism);
            if (r < 0 || mism) {
                fprintf(stderr, "verify: sectors not zero after write_zeroes\n");
                fails++;
                break;
            }
        }
        r = verify_write(&d, &b, first, zn, chunk, o->seed, &reqs);
        if (r == 0)
            r = verify_read(&d, &b, first, count, rchunk, o->seed, false, &reqs, &mism);
        if (r < 0 || mism) {
            fprintf(stderr, "verify: pattern not restored after %s\n", ranged[i].name);
            fails++;
            break;
        }
        printf("%s: %u sectors OK%s, pattern restored\n", ranged[i].name, zn,
               ranged[i].type == OP_WRITE_ZEROES ? " (read back as zeroes)" : "");
    }
    if (fails == 0 && !has(&d, VB_F_RO) && has(&d, VB_F_FLUSH) &&
        blk_sync(&d, 0, &b, OP_FLUSH, 0, 0) != VB_S_OK) {
        fprintf(stderr, "verify: final FLUSH failed\n");
        fails++;
    }

    blk_close(&d);
    if (fails) {
        printf("verify: FAILED (%d check%s)\n", fails, fails > 1 ? "s" : "");
        return 1;
    }
    printf("verify: OK\n");
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* bench                                                                                     */
/* ---------------------------------------------------------------------------------------- */

/* Log-linear latency histogram in ns: exact below 128, then 64 buckets per power of two
 * (under 1.6 % error). */
#define HIST_SUB_BITS 6
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS ((64 - HIST_SUB_BITS + 1) * HIST_SUB)

static unsigned hist_bucket(uint64_t v)
{
    if (v < 2 * HIST_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - HIST_SUB_BITS;
    return (shift + 1) * HIST_SUB + (unsigned)((v >> shift) & (HIST_SUB - 1));
}

static uint64_t hist_value(unsigned b)
{
    if (b < 2 * HIST_SUB)
        return b;
    unsigned shift = b / HIST_SUB - 1;
    uint64_t low = (uint64_t)(HIST_SUB + b % HIST_SUB) << shift;
    return low + ((1ULL << shift) >> 1);
}

static uint64_t hist_percentile(const uint64_t *h, uint64_t total, double p)
{
    uint64_t want = (uint64_t)((double)total * p + 0.5), acc = 0;

    if (want == 0)
        want = 1;
    for (unsigned b = 0; b < HIST_BUCKETS; b++) {
        acc += h[b];
        if (acc >= want)
            return hist_value(b);
    }
    return 0;
}

struct slot {
    uint64_t data_gpa;
    uint64_t t0;
};

struct worker {
    struct blkdev *d;
    const struct blk_opts *o;
    unsigned q;
    bool write;
    bool random;
    uint64_t nblocks;   /* bs-sized blocks addressed */
    uint64_t cursor;    /* sequential: next block */
    uint64_t rng;
    struct slot *slots;
    struct vhu_fe_blk *drv;
    pthread_t thread;
    /* results */
    uint64_t ios, errors, lat_sum, lat_max;
    uint64_t t_start, t_end;
    int err;
    uint64_t hist[HIST_BUCKETS];
};

static atomic_bool bench_go;

static uint64_t next_block(struct worker *w)
{
    if (w->random) {
        uint64_t x = w->rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        w->rng = x;
        return (x * 0x2545F4914F6CDD1DULL) % w->nblocks;
    }
    uint64_t b = w->cursor;
    w->cursor = (w->cursor + 1) % w->nblocks;
    return b;
}

/* now: the submission time (one clock read per batch of completions, not per request) */
static int submit(struct worker *w, struct slot *s, uint64_t now)
{
    uint64_t sector = next_block(w) * (w->o->bs / VB_SECTOR);

    s->t0 = now;
    return w->write ? vhu_fe_blk_write(w->drv, sector, s->data_gpa, w->o->bs, s)
                    : vhu_fe_blk_read(w->drv, sector, s->data_gpa, w->o->bs, s);
}

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    struct vhu_fe_blk_cpl cpl[64];
    uint64_t runtime_ns = (uint64_t)(w->o->runtime * 1e9), now, end, inflight = 0;
    bool stopping = false;
    int r;

    while (!atomic_load(&bench_go))
        ;
    w->t_start = now = vhu_now_ns();
    end = w->t_start + runtime_ns;
    for (unsigned i = 0; i < w->o->iodepth; i++) {
        r = submit(w, &w->slots[i], now);
        if (r < 0) {
            w->err = r;
            return NULL;
        }
        inflight++;
    }
    vhu_fe_blk_kick(w->drv);

    for (;;) {
        unsigned done = 0, added = 0;
        int n;

        while ((n = vhu_fe_blk_reap(w->drv, cpl, VHU_ARRAY_SIZE(cpl))) > 0) {
            /* one clock read for the batch: each completion was seen now (a read per request
             * cost a fifth of the client's CPU at QD32) */
            now = vhu_now_ns();
            for (int i = 0; i < n; i++) {
                struct slot *s = cpl[i].cookie;
                uint64_t lat = now - s->t0;
                w->hist[hist_bucket(lat)]++;
                w->lat_sum += lat;
                if (lat > w->lat_max)
                    w->lat_max = lat;
                w->ios++;
                if (cpl[i].status != VB_S_OK)
                    w->errors++;
                inflight--;
                done++;
                if (!stopping) {
                    r = submit(w, s, now);
                    if (r < 0) {
                        w->err = r;
                        return NULL;
                    }
                    inflight++;
                    /* Event mode: a device that went to sleep starts waking up (a few us in
                     * a VM) while the rest of the batch is still being resubmitted; with
                     * EVENT_IDX the kicks after the first are suppressed until it sleeps
                     * again. Polling, the index is published once per batch: every kick
                     * publishes it, and a polling device would take smaller batches. */
                    if (++added % BENCH_KICK_EVERY == 0 && !w->o->poll)
                        vhu_fe_blk_kick(w->drv);
                }
            }
        }
        if (added)
            vhu_fe_blk_kick(w->drv);
        if (n < 0) {
            w->err = n;
            return NULL;
        }
        if (done)
            w->t_end = now;
        else
            now = vhu_now_ns();
        if (!stopping && now >= end)
            stopping = true;
        if (stopping && inflight == 0)
            break;
        if (stopping && now >= end + 10000000000ULL) {
            w->err = -ETIMEDOUT;
            return NULL;
        }
        if (done || w->o->poll)
            continue;
        /* event mode: sleep on the call eventfd */
        r = vhu_fe_blk_wait(w->drv, 100);
        if (r < 0 && r != -ETIMEDOUT) {
            w->err = r;
            return NULL;
        }
    }
    return NULL;
}

static double cpu_seconds(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int cmd_bench(const struct blk_opts *o)
{
    struct blkdev d;
    struct worker *w = NULL;
    uint64_t *hist = NULL;
    bool write = strcmp(o->rw, "randread") && strcmp(o->rw, "read");
    bool random = strncmp(o->rw, "rand", 4) == 0;
    size_t per_q = (size_t)o->iodepth * (VHU_ALIGN_UP((size_t)o->bs, 4096) + 64) + (1u << 20);
    unsigned started = 0;
    int rc = 1, r;

    if (o->iodepth > o->ring.queue_size) {
        fprintf(stderr, "bench: --iodepth %u exceeds --queue-size %u\n", o->iodepth,
                o->ring.queue_size);
        return 2;
    }
    if (blk_open(o, per_q * o->queues + (2u << 20), &d) < 0)
        return 1;
    if (write && has(&d, VB_F_RO)) {
        fprintf(stderr, "bench: the device is read-only\n");
        goto out;
    }
    if (o->bs > vhu_fe_blk_max_request(&d.info, o->bs)) {
        fprintf(stderr, "bench: --bs %u exceeds what size_max %u x seg_max %u allow\n", o->bs,
                d.info.size_max, d.info.seg_max);
        goto out;
    }
    uint64_t bytes = o->size ? VHU_MIN(o->size, d.info.capacity * VB_SECTOR) : d.info.capacity * VB_SECTOR;
    uint64_t nblocks = bytes / o->bs;
    if (nblocks == 0) {
        fprintf(stderr, "bench: the disk (%" PRIu64 " bytes) is smaller than --bs\n", bytes);
        goto out;
    }
    if (!has(&d, VHU_VIRTIO_RING_F_INDIRECT_DESC) && o->iodepth * (2 + (o->bs + 4095) / 4096) >
                                                     o->ring.queue_size)
        fprintf(stderr, "bench: warning: without indirect descriptors the ring (%u) may not "
                "hold %u requests\n", o->ring.queue_size, o->iodepth);

    w = calloc(o->queues, sizeof(*w));
    hist = calloc(HIST_BUCKETS, sizeof(*hist));
    if (!w || !hist)
        goto out;
    for (unsigned q = 0; q < o->queues; q++) {
        w[q].d = &d;
        w[q].o = o;
        w[q].q = q;
        w[q].write = write;
        w[q].random = random;
        w[q].nblocks = nblocks;
        w[q].cursor = nblocks * q / o->queues;
        w[q].rng = 0x9E3779B97F4A7C15ULL * (q + 1) ^ (o->seed | 1);
        w[q].slots = calloc(o->iodepth, sizeof(*w[q].slots));
        if (!w[q].slots)
            goto out;
        r = vhu_fe_blk_new(d.fe, &d.info, q, o->iodepth, &w[q].drv);
        if (r < 0) {
            fprintf(stderr, "bench: queue %u: %s\n", q, strerror(-r));
            goto out;
        }
        for (unsigned i = 0; i < o->iodepth; i++) {
            struct slot *s = &w[q].slots[i];
            uint8_t *data = vhu_fe_alloc(d.fe, o->bs, 4096, &s->data_gpa);
            if (!data) {
                fprintf(stderr, "bench: shared memory exhausted\n");
                goto out;
            }
            memset(data, (int)(0x11 * (i + 1)), o->bs);
        }
    }

    atomic_store(&bench_go, false);
    for (; started < o->queues; started++) {
        r = pthread_create(&w[started].thread, NULL, worker_run, &w[started]);
        if (r) {
            fprintf(stderr, "bench: pthread_create: %s\n", strerror(r));
            break;
        }
    }
    double cpu0 = cpu_seconds();
    atomic_store(&bench_go, true);
    for (unsigned q = 0; q < started; q++)
        pthread_join(w[q].thread, NULL);
    double cpu = cpu_seconds() - cpu0;
    if (started < o->queues)
        goto out;

    uint64_t ios = 0, errors = 0, lat_sum = 0, lat_max = 0, t_start = UINT64_MAX, t_end = 0;
    for (unsigned q = 0; q < o->queues; q++) {
        if (w[q].err) {
            fprintf(stderr, "bench: queue %u: %s\n", q, strerror(-w[q].err));
            goto out;
        }
        ios += w[q].ios;
        errors += w[q].errors;
        lat_sum += w[q].lat_sum;
        lat_max = VHU_MAX(lat_max, w[q].lat_max);
        t_start = VHU_MIN(t_start, w[q].t_start);
        t_end = VHU_MAX(t_end, w[q].t_end);
        for (unsigned b = 0; b < HIST_BUCKETS; b++)
            hist[b] += w[q].hist[b];
    }
    uint64_t kicks = 0, calls = 0;
    for (unsigned q = 0; q < o->queues; q++) {
        struct vhu_fe_queue_stats st;
        if (vhu_fe_queue_stats(d.fe, q, &st) == 0) {
            kicks += st.kicks;
            calls += st.calls;
        }
    }
    double secs = t_end > t_start ? (double)(t_end - t_start) / 1e9 : 0;
    if (ios == 0 || secs <= 0) {
        fprintf(stderr, "bench: no request completed\n");
        goto out;
    }
    printf("RESULT rw=%s bs=%u iodepth=%u queues=%u mode=%s ring=%s ios=%" PRIu64
           " secs=%.3f iops=%.0f mbps=%.1f lat_avg_us=%.2f p50_us=%.2f p99_us=%.2f"
           " p999_us=%.2f max_us=%.2f client_cpu_us_per_io=%.3f errors=%" PRIu64
           " kicks=%" PRIu64 " calls=%" PRIu64 "\n",
           o->rw, o->bs, o->iodepth, o->queues, o->poll ? "poll" : "event",
           o->ring.packed ? "packed" : "split", ios, secs, (double)ios / secs,
           (double)ios * o->bs / secs / 1e6, (double)lat_sum / (double)ios / 1e3,
           (double)hist_percentile(hist, ios, 0.50) / 1e3,
           (double)hist_percentile(hist, ios, 0.99) / 1e3,
           (double)hist_percentile(hist, ios, 0.999) / 1e3, (double)lat_max / 1e3,
           cpu * 1e6 / (double)ios, errors, kicks, calls);
    fflush(stdout);
    rc = errors ? 1 : 0;
    if (errors)
        fprintf(stderr, "bench: %" PRIu64 " requests completed with an error status\n", errors);
out:
    if (w)
        for (unsigned q = 0; q < o->queues; q++) {
            free(w[q].slots);
            vhu_fe_blk_free(w[q].drv);
        }
    free(w);
    free(hist);
    blk_close(&d);
    return rc;
}

int vhuctl_blk_main(int argc, char **argv)
{
    struct blk_opts o = {
        .ring = {.queue_size = 256},
        .queues = 1,
        .chunk = 64 * 1024,
        .seed = 1,
        .rw = "randread",
        .bs = 4096,
        .iodepth = 1,
        .runtime = 5,
    };
    const char *sub = argc > 1 ? argv[1] : "";

    o.ring.device = "blk";
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        vhuctl_blk_usage(stdout);
        vhuctl_ring_usage(stdout);
        return 0;
    }
    if (strcmp(sub, "verify") && strcmp(sub, "bench")) {
        fprintf(stderr, "vhuctl blk: %s%s%s: verify or bench (vhuctl blk --help)\n",
                *sub ? "unknown subcommand '" : "no subcommand", sub, *sub ? "'" : "");
        return 2;
    }
    optind = 2;
    if (parse_blk_opts(argc, argv, &o) < 0)
        return 2;
    vhu_log_set_sink(vhu_log_stderr_sink, NULL, o.verbose ? VHU_LOG_DEBUG : VHU_LOG_WARN);
    return strcmp(sub, "verify") == 0 ? cmd_verify(&o) : cmd_bench(&o);
}
