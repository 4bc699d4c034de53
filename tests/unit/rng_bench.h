/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Shared by the virtio-rng and device-core tests: the rng device in a backend (optionally with
 * worker threads), driven over one path of the test driver (tdrv.h).
 */
#ifndef RNG_BENCH_H
#define RNG_BENCH_H

#include <string.h>

#include "tdrv.h"
#include "vhu/backend.h"
#include "vhu/dev/rng.h"
#include "vhu/loop.h"

struct rng_bench {
    struct vhu_loop *loop;
    struct vhu_backend *b;
    struct vhu_device *dev;
    struct tdrv *d;
};

/* Up to the running rings (o == NULL: only the driver is attached, nothing negotiated). */
static inline int rng_up(struct rng_bench *t, enum tdrv_path p, unsigned workers,
                         const struct tdrv_opts *o)
{
    int r;

    memset(t, 0, sizeof(*t));
    r = vhu_rng_new(NULL, &t->dev);
    if (r == 0)
        r = vhu_loop_new(&t->loop);
    if (r == 0)
        r = vhu_backend_new(t->dev, t->loop, &t->b);
    if (r == 0 && workers)
        r = vhu_backend_set_workers(t->b, workers, 0);
    if (r == 0)
        r = tdrv_new(p, t->b, t->loop, &t->d);
    if (r == 0 && o)
        r = tdrv_start(t->d, o);
    return r;
}

static inline void rng_down(struct rng_bench *t)
{
    tdrv_teardown(t->d, t->b, t->dev, t->loop);
}

__attribute__((constructor)) static void rng_setup_log(void)
{
    tdrv_log_setup();
}

#endif
