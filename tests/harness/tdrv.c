/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The test driver (tdrv.h): one driver-side API over two paths into the device core. The
 * vhost-user path is the frontend library over the loopback; the core path below makes typed
 * calls only: no message, no file descriptor (guest memory is an anonymous mapping, notifiers
 * are callbacks or absent).
 */
#include <errno.h>
#include <stdint.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "frontend/fe_msg.h"
#include "tdrv.h"
#include "vhu/log.h"
#include "vhu/loopback.h"
#include "vhu/mem.h"
#include "vhu/notifier.h"
#include "vhu/util.h"
#include "vhu/virtio.h"

#define TDRV_INDIRECT_MAX 16

enum tdrv_path tdrv_path = TDRV_VHOST_USER;

struct tdrv_queue {
    struct vhu_vqd *vqd;
    unsigned calls; /* atomic: the call sink runs on the ring's owner thread */
    unsigned errs;  /* atomic */
    unsigned seen;  /* calls already consumed by tdrv_wait() */
};

struct tdrv {
    enum tdrv_path path;
    struct vhu_backend *b;
    struct vhu_loop *loop;
    /* vhost-user path */
    struct vhu_fe *fe;
    /* core path */
    struct vhu_core *core;
    uint64_t features;
    uint64_t offered;
    unsigned nq;
    struct tdrv_queue *q;
    uint8_t *mem;
    size_t mem_size;
    size_t mem_used;
};

const char *tdrv_path_name(enum tdrv_path p)
{
    return p == TDRV_CORE ? "core" : "vhost-user";
}

void tdrv_run_on(enum tdrv_path p, void (*body)(void))
{
    tdrv_path = p;
    body();
    tdrv_path = TDRV_VHOST_USER;
}

int tdrv_new(enum tdrv_path p, struct vhu_backend *b, struct vhu_loop *loop, struct tdrv **out)
{
    struct tdrv *d = calloc(1, sizeof(*d));
    int r;

    if (!d)
        return -ENOMEM;
    d->path = p;
    d->b = b;
    d->loop = loop;
    if (p == TDRV_CORE)
        r = vhu_core_new(b, &d->core);
    else
        r = vhu_loopback_connect(b, loop, &d->fe);
    if (r < 0) {
        free(d);
        return r;
    }
    *out = d;
    return 0;
}

void tdrv_free(struct tdrv *d)
{
    if (!d)
        return;
    if (d->path == TDRV_VHOST_USER) {
        vhu_fe_free(d->fe);
        free(d);
        return;
    }
    /* the core first: its rings stop (the device finishes its requests) while memory exists */
    vhu_core_free(d->core);
    for (unsigned i = 0; i < d->nq; i++)
        vhu_vqd_free(d->q[i].vqd);
    free(d->q);
    if (d->mem)
        munmap(d->mem, d->mem_size);
    free(d);
}

void tdrv_teardown(struct tdrv *d, struct vhu_backend *b, struct vhu_device *dev,
                   struct vhu_loop *loop)
{
    tdrv_free(d);
    if (b)
        vhu_backend_free(b);
    else if (dev && dev->ops->destroy)
        dev->ops->destroy(dev);
    if (loop)
        vhu_loop_free(loop);
}

enum tdrv_path tdrv_kind(const struct tdrv *d) { return d->path; }
struct vhu_fe *tdrv_fe(struct tdrv *d) { return d->fe; }
struct vhu_core *tdrv_core(struct tdrv *d) { return d->core; }

/* ---- core path: memory and rings ---------------------------------------------------------- */

static int core_mem_setup(struct tdrv *d, size_t size, unsigned nregions)
{
    struct vhu_mem_region *regs[16];
    struct vhu_mem_table *t;
    size_t chunk;
    unsigned n = 0;
    int r = 0;

    if (nregions == 0)
        nregions = 1;
    if (nregions > VHU_ARRAY_SIZE(regs))
        return -ENOSPC;
    size = VHU_ALIGN_UP(size, (size_t)4096 * nregions);
    chunk = size / nregions;
    d->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (d->mem == MAP_FAILED) {
        d->mem = NULL;
        return -errno;
    }
    d->mem_size = size;
    d->mem_used = 0;
    for (; n < nregions && r == 0; n++) {
        struct vhu_mem_region_desc rd = {
            .gpa = VHU_FE_GPA_BASE + n * chunk,
            .size = chunk,
            .uva = (uint64_t)(uintptr_t)(d->mem + n * chunk),
            .fd = -1,
            .host = d->mem + n * chunk,
        };
        r = vhu_mem_region_map(&rd, &regs[n]);
    }
    if (r < 0)
        n--; /* the last one failed */
    if (r == 0)
        r = vhu_mem_table_new(regs, n, &t);
    if (r < 0) {
        for (unsigned i = 0; i < n; i++)
            vhu_mem_region_free(regs[i]);
        return r;
    }
    return vhu_core_set_mem(d->core, t);
}

static void count_signal(void *opaque)
{
    __atomic_add_fetch((unsigned *)opaque, 1, __ATOMIC_RELEASE);
}

/* A ring and, with INDIRECT_DESC, its indirect tables (16 descriptors per chain, as the
 * frontend library uses) in one 4 KiB-aligned piece of guest memory. */
static int core_vqd_new(struct tdrv *d, uint16_t num, struct vhu_vqd **out)
{
    const bool packed = vhu_has_feature(d->features, VHU_VIRTIO_F_RING_PACKED);
    const size_t ring = VHU_ALIGN_UP(vhu_vqd_ring_size(num, packed), (size_t)16);
    const size_t tables = vhu_has_feature(d->features, VHU_VIRTIO_RING_F_INDIRECT_DESC)
                              ? (size_t)num * TDRV_INDIRECT_MAX * 16
                              : 0;
    uint64_t gpa;
    uint8_t *p = tdrv_alloc(d, ring + tables, 4096, &gpa);

    if (!p)
        return -ENOMEM;
    return vhu_vqd_new(&(struct vhu_vqd_config){
                           .num = num,
                           .packed = packed,
                           .event_idx = vhu_has_feature(d->features, VHU_VIRTIO_RING_F_EVENT_IDX),
                           .ring = p,
                           .ring_addr = gpa,
                           .indirect = tables ? p + ring : NULL,
                           .indirect_addr = tables ? gpa + ring : 0,
                           .indirect_max = tables ? TDRV_INDIRECT_MAX : 0,
                       },
                       out);
}

static int core_queue_setup(struct tdrv *d, unsigned i, const struct tdrv_opts *o)
{
    struct tdrv_queue *q = &d->q[i];
    struct vhu_ring_addr ra = {.space = VHU_ADDR_GPA};
    struct vhu_notifier *call, *err;
    int r = core_vqd_new(d, o->queue_size, &q->vqd);

    if (r < 0)
        return r;
    vhu_vqd_addrs(q->vqd, &ra.desc, &ra.driver, &ra.device);
    if ((r = vhu_core_ring_set_num(d->core, i, o->queue_size)) < 0 ||
        (r = vhu_core_ring_set_addr(d->core, i, &ra)) < 0 ||
        (r = vhu_core_ring_set_base(d->core, i, vhu_vqd_base(q->vqd))) < 0)
        return r;
    if ((r = vhu_notifier_callback_new(count_signal, &q->calls, &call)) < 0)
        return r;
    if ((r = vhu_core_ring_set_call(d->core, i, call)) < 0)
        return r;
    if ((r = vhu_notifier_callback_new(count_signal, &q->errs, &err)) < 0)
        return r;
    if ((r = vhu_core_ring_set_err(d->core, i, err)) < 0)
        return r;
    /* no kick source: the ring is polled */
    if ((r = vhu_core_ring_start(d->core, i)) < 0)
        return r;
    return vhu_core_ring_enable(d->core, i, true);
}

static int core_start(struct tdrv *d, const struct tdrv_opts *o)
{
    const uint8_t s_drv = VHU_VIRTIO_CONFIG_S_ACKNOWLEDGE | VHU_VIRTIO_CONFIG_S_DRIVER;
    uint64_t want;
    int r;

    d->offered = vhu_core_features(d->core);
    if (o->num_queues > vhu_core_num_queues(d->core))
        return -EINVAL;
    /* what the frontend library asks for, less its vhost-user bit (PROTOCOL_FEATURES) */
    want = o->features | vhu_feature(VHU_VIRTIO_F_VERSION_1) |
           (o->packed ? vhu_feature(VHU_VIRTIO_F_RING_PACKED) : 0) |
           (o->event_idx ? vhu_feature(VHU_VIRTIO_RING_F_EVENT_IDX) : 0) |
           (o->indirect ? vhu_feature(VHU_VIRTIO_RING_F_INDIRECT_DESC) : 0);
    d->features = want & d->offered;
    if (o->packed && !vhu_has_feature(d->features, VHU_VIRTIO_F_RING_PACKED))
        return -ENOTSUP;
    vhu_core_set_status(d->core, s_drv);
    r = vhu_core_set_features(d->core, d->features);
    if (r < 0)
        return r;
    vhu_core_set_status(d->core, s_drv | VHU_VIRTIO_CONFIG_S_FEATURES_OK);
    r = core_mem_setup(d, o->mem_size ? o->mem_size : (size_t)16 << 20, o->mem_regions);
    if (r < 0)
        return r;
    d->q = calloc(o->num_queues, sizeof(*d->q));
    if (!d->q)
        return -ENOMEM;
    d->nq = o->num_queues;
    for (unsigned i = 0; i < d->nq; i++) {
        r = core_queue_setup(d, i, o);
        if (r < 0)
            return r;
    }
    vhu_core_set_status(d->core,
                        s_drv | VHU_VIRTIO_CONFIG_S_FEATURES_OK | VHU_VIRTIO_CONFIG_S_DRIVER_OK);
    return 0;
}

/* ---- both paths ---------------------------------------------------------------------------- */

int tdrv_start(struct tdrv *d, const struct tdrv_opts *o)
{
    if (o->num_queues == 0 || o->queue_size == 0)
        return -EINVAL;
    if (d->path == TDRV_CORE) {
        if (d->q)
            return -EINVAL;
        return core_start(d, o);
    }
    struct vhu_fe_opts fo = {
        .features = o->features,
        .num_queues = o->num_queues,
        .queue_size = o->queue_size,
        .packed = o->packed,
        .event_idx = o->event_idx,
        .indirect = o->indirect,
        .mem_size = o->mem_size,
        .mem_regions = o->mem_regions,
        .queue_pairs = o->queue_pairs,
        .protocol_features = o->protocol_features,
    };
    return vhu_fe_start(d->fe, &fo);
}

int tdrv_stop(struct tdrv *d)
{
    if (d->path == TDRV_VHOST_USER)
        return vhu_fe_stop(d->fe);
    for (unsigned i = 0; i < d->nq; i++) {
        int r = vhu_core_ring_stop(d->core, i, NULL);
        if (r < 0)
            return r;
    }
    return 0;
}

uint64_t tdrv_features(const struct tdrv *d)
{
    return d->path == TDRV_CORE ? d->features : vhu_fe_features(d->fe);
}

uint64_t tdrv_backend_features(const struct tdrv *d)
{
    return d->path == TDRV_CORE ? vhu_core_features(d->core) : vhu_fe_backend_features(d->fe);
}

unsigned tdrv_num_queues(const struct tdrv *d)
{
    return d->path == TDRV_CORE ? d->nq : vhu_fe_num_queues(d->fe);
}

void *tdrv_alloc(struct tdrv *d, size_t size, size_t align, uint64_t *gpa)
{
    if (d->path == TDRV_VHOST_USER)
        return vhu_fe_alloc(d->fe, size, align, gpa);
    /* bump allocation in the arena; gpa = VHU_FE_GPA_BASE + offset, as the frontend's */
    bool pow2 = align && !(align & (align - 1));
    size_t start = pow2 ? VHU_ALIGN_UP(d->mem_used, align) : SIZE_MAX;

    if (!d->mem || start > d->mem_size || d->mem_size - start < size)
        return NULL;
    d->mem_used = start + size;
    if (gpa)
        *gpa = VHU_FE_GPA_BASE + start;
    return d->mem + start;
}

struct vhu_vqd *tdrv_vqd(struct tdrv *d, unsigned q)
{
    if (d->path == TDRV_VHOST_USER)
        return vhu_fe_vqd(d->fe, q);
    return q < d->nq ? d->q[q].vqd : NULL;
}

int tdrv_kick(struct tdrv *d, unsigned q)
{
    if (d->path == TDRV_VHOST_USER)
        return vhu_fe_kick(d->fe, q);
    if (q >= d->nq)
        return -EINVAL;
    /* publish; a polled ring never asks for a kick, and there is nothing to kick with */
    vhu_vqd_kick_prepare(d->q[q].vqd);
    return 0;
}

void tdrv_progress(struct tdrv *d)
{
    if (d->path == TDRV_CORE)
        vhu_core_poll(d->core);
    vhu_loop_run_once(d->loop, 0);
}

int tdrv_wait(struct tdrv *d, unsigned q, int timeout_ms)
{
    uint64_t deadline = vhu_now_ns() + (uint64_t)timeout_ms * 1000000ULL;

    if (d->path == TDRV_VHOST_USER)
        return vhu_fe_wait(d->fe, q, timeout_ms);
    if (q >= d->nq)
        return -EINVAL;
    for (;;) {
        /* rings the control thread owns are polled here; a worker spins its own, and device
         * completions (blk's io_uring eventfd, net's reschedule) arrive through the loop */
        unsigned work = vhu_core_poll(d->core);
        int ev = vhu_loop_run_once(d->loop, 0);
        unsigned n = __atomic_load_n(&d->q[q].calls, __ATOMIC_ACQUIRE);

        if (n != d->q[q].seen) {
            d->q[q].seen = n;
            return 0;
        }
        if (vhu_now_ns() >= deadline)
            return -ETIMEDOUT;
        if (work == 0 && ev <= 0)
            sched_yield();
    }
}

int tdrv_request(struct tdrv *d, unsigned q, const struct vhu_vqd_seg *segs, unsigned n_out,
                 unsigned n_in, int timeout_ms)
{
    uint64_t deadline = vhu_now_ns() + (uint64_t)timeout_ms * 1000000ULL;
    struct vhu_vqd *vqd = tdrv_vqd(d, q);
    static char cookie;
    void *used = NULL;
    uint32_t len = 0;
    int r;

    if (d->path == TDRV_VHOST_USER)
        return vhu_fe_request(d->fe, q, segs, n_out, n_in, timeout_ms);
    if (!vqd)
        return -EINVAL;
    r = vhu_vqd_add(vqd, segs, n_out, n_in, &cookie);
    if (r == 0)
        r = tdrv_kick(d, q);
    /* reap, else re-arm the call and wait for it in slices until the deadline */
    while (r == 0 && !(used = vhu_vqd_get_used(vqd, &len)) && !vhu_vqd_broken(vqd)) {
        vhu_vqd_enable_cb(vqd);
        if (vhu_now_ns() >= deadline)
            return -ETIMEDOUT;
        r = tdrv_wait(d, q, 100);
        if (r == -ETIMEDOUT)
            r = 0;
    }
    if (r < 0)
        return r;
    return used == &cookie ? (int)len : -EPROTO; /* a broken ring or a stranger's chain */
}

int tdrv_enable(struct tdrv *d, unsigned q, bool on)
{
    if (d->path == TDRV_CORE)
        return vhu_core_ring_enable(d->core, q, on);
    struct vhu_msg m;
    vhu_msg_init(&m, VHOST_USER_SET_VRING_ENABLE, VHOST_USER_VERSION,
                 sizeof(struct vhost_vring_state));
    m.payload.state = (struct vhost_vring_state){.index = q, .num = on};
    return vhu_fe_raw(d->fe, &m, NULL);
}

int tdrv_get_config(struct tdrv *d, uint32_t off, void *buf, uint32_t len)
{
    if (d->path == TDRV_CORE)
        return vhu_core_get_config(d->core, off, buf, len);
    return vhu_fe_get_config(d->fe, off, buf, len);
}

int tdrv_set_config(struct tdrv *d, uint32_t off, const void *buf, uint32_t len)
{
    if (d->path == TDRV_CORE)
        return vhu_core_set_config(d->core, off, buf, len);
    return vhu_fe_set_config(d->fe, off, buf, len);
}

int tdrv_get_status(struct tdrv *d, uint8_t *status)
{
    if (d->path == TDRV_CORE) {
        *status = vhu_core_status(d->core);
        return 0;
    }
    return vhu_fe_get_status(d->fe, status);
}

int tdrv_set_status(struct tdrv *d, uint8_t status)
{
    if (d->path == TDRV_CORE) {
        vhu_core_set_status(d->core, status);
        return 0;
    }
    return vhu_fe_set_status(d->fe, status);
}

int tdrv_reset(struct tdrv *d)
{
    if (d->path == TDRV_CORE) {
        vhu_core_reset(d->core);
        return 0;
    }
    return vhu_fe_reset_device(d->fe);
}

unsigned tdrv_calls(const struct tdrv *d, unsigned q)
{
    return d->path == TDRV_CORE && q < d->nq ? __atomic_load_n(&d->q[q].calls, __ATOMIC_ACQUIRE)
                                             : 0;
}

unsigned tdrv_errors(const struct tdrv *d, unsigned q)
{
    return d->path == TDRV_CORE && q < d->nq ? __atomic_load_n(&d->q[q].errs, __ATOMIC_ACQUIRE)
                                             : 0;
}

uint8_t *tdrv_mem(struct tdrv *d, size_t *size)
{
    if (size)
        *size = d->mem_size;
    return d->mem;
}

static void quiet_sink(enum vhu_log_level l, const char *msg, void *o)
{
    (void)l;
    (void)msg;
    (void)o;
}

void tdrv_log_setup(void)
{
    vhu_log_set_sink(getenv("VHU_TEST_VERBOSE") ? vhu_log_stderr_sink : quiet_sink, NULL,
                     VHU_LOG_DEBUG);
}
