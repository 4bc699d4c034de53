/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The device core through its typed calls alone (vhu/core.h), with what no vhost-user message
 * can say: rings at host addresses outside guest memory, call and error sinks that are plain
 * callbacks (counted with EVENT_IDX on and off), a polled ring spun by its worker with no kick
 * ever sent, a kick source of the test's own notifier type, NEEDS_RESET and the error sink on a
 * bad descriptor, new addresses for a running ring, and the inflight region refused while a
 * ring tracks into it. The device is virtio-rng (every request completes inside queue_notify).
 */
#include <sched.h>
#include <stdlib.h>

#include "rng_bench.h"
#include "vhu/dev/net.h"
#include "vhu/mem.h"
#include "vhu/notifier.h"
#include "vhu/util.h"
#include "vhu/virtio.h"
#include "vhu_test.h"

#define QSZ 16

static struct tdrv_opts one_queue(bool packed, bool event_idx)
{
    return (struct tdrv_opts){.num_queues = 1, .queue_size = QSZ, .packed = packed,
                              .event_idx = event_idx, .mem_size = 1 << 20};
}

/* Make one device-writable buffer available (published, no kick: there is no kick source). */
static int post(struct vhu_vqd *vqd, uint64_t gpa, uint32_t len, void *cookie)
{
    struct vhu_vqd_seg s = {gpa, len};
    int r = vhu_vqd_add(vqd, &s, 0, 1, cookie);

    if (r == 0)
        vhu_vqd_kick_prepare(vqd);
    return r;
}

/* The next used entry of vqd within 2 s: the core polled (control-thread rings) or not (a
 * worker spins the ring). NULL on timeout or a broken ring. */
static void *reap(struct rng_bench *t, struct vhu_vqd *vqd, bool poll_core, uint32_t *len)
{
    uint64_t deadline = vhu_now_ns() + 2000000000ull;

    while (vhu_now_ns() < deadline && !vhu_vqd_broken(vqd)) {
        void *c = vhu_vqd_get_used(vqd, len);
        if (c)
            return c;
        if (poll_core)
            vhu_core_poll(tdrv_core(t->d));
        else
            sched_yield();
    }
    return NULL;
}

/* One request of len bytes at gpa, completed and filled (not all zero). */
static bool one_request(struct rng_bench *t, struct vhu_vqd *vqd, uint8_t *buf, uint64_t gpa,
                        uint32_t len, bool poll_core)
{
    uint32_t got = 0;
    unsigned zeros = 0;

    memset(buf, 0, len);
    if (post(vqd, gpa, len, buf) < 0 || reap(t, vqd, poll_core, &got) != buf || got != len)
        return false;
    for (uint32_t i = 0; i < len; i++)
        zeros += buf[i] == 0;
    return zeros < len / 4;
}

/* The rng on the core path, its ring running (o: one_queue(packed, event_idx)), and a buffer of
 * bufsz bytes in guest memory. */
static int core_up(struct rng_bench *t, unsigned workers, const struct tdrv_opts *o,
                   struct vhu_core **c, struct vhu_vqd **vqd, uint8_t **buf, uint64_t *gpa,
                   size_t bufsz)
{
    int r = rng_up(t, TDRV_CORE, workers, o);

    if (r < 0)
        return r;
    *c = tdrv_core(t->d);
    *vqd = tdrv_vqd(t->d, 0);
    *buf = tdrv_alloc(t->d, bufsz, 64, gpa);
    return *buf ? 0 : -ENOMEM;
}

/* ---- a ring outside guest memory, given as host pointers -------------------------------- */

static void run_host_ring(bool packed)
{
    struct tdrv_opts o = one_queue(packed, true);
    struct rng_bench t;
    struct vhu_vqd *vqd;
    uint32_t base = 99;
    uint64_t gpa;

    ASSERT_OK(rng_up(&t, TDRV_CORE, 0, &o));
    struct vhu_core *c = tdrv_core(t.d);
    uint8_t *buf = tdrv_alloc(t.d, 64, 64, &gpa);
    ASSERT(buf);
    ASSERT_OK(vhu_core_ring_stop(c, 0, &base)); /* the driver's own ring is retired */
    ASSERT_EQ(base, vhu_vqd_base(tdrv_vqd(t.d, 0))); /* at its start: nothing was posted */
    size_t sz = VHU_ALIGN_UP(vhu_vqd_ring_size(QSZ, packed), (size_t)4096);
    void *ring = aligned_alloc(4096, sz);
    ASSERT(ring);
    struct vhu_vqd_config cfg = {
        .num = QSZ,
        .packed = packed,
        .event_idx = vhu_has_feature(tdrv_features(t.d), VHU_VIRTIO_RING_F_EVENT_IDX),
        .ring = ring,
        .ring_addr = (uint64_t)(uintptr_t)ring, /* the device's address: a host pointer */
    };
    ASSERT_OK(vhu_vqd_new(&cfg, &vqd));
    struct vhu_ring_addr ra = {.space = VHU_ADDR_GPA};
    vhu_vqd_addrs(vqd, &ra.desc, &ra.driver, &ra.device);
    /* as guest-physical addresses these are nowhere in the memory table */
    ASSERT_OK(vhu_core_ring_set_addr(c, 0, &ra));
    ASSERT_ERR(-EFAULT, vhu_core_ring_start(c, 0));
    ra.space = VHU_ADDR_HOST;
    ASSERT_OK(vhu_core_ring_set_addr(c, 0, &ra));
    ASSERT_OK(vhu_core_ring_set_base(c, 0, vhu_vqd_base(vqd)));
    ASSERT_OK(vhu_core_ring_start(c, 0));
    /* buffers stay guest-physical; 40 requests wrap the 16-entry ring */
    for (unsigned i = 0; i < 40; i++)
        ASSERT(one_request(&t, vqd, buf, gpa, 64, true));
    ASSERT_OK(vhu_core_ring_stop(c, 0, &base));
    ASSERT_EQ(base, vhu_vqd_base(vqd)); /* 40 on, wrap counters included */
    ASSERT_EQ(vhu_rng_bytes_served(t.dev), 40 * 64);
    rng_down(&t);
    vhu_vqd_free(vqd);
    free(ring);
}

CORE_TEST(ring_at_host_addresses_split) { run_host_ring(false); }
CORE_TEST(ring_at_host_addresses_packed) { run_host_ring(true); }

/* ---- call sink: a callback, counted ----------------------------------------------------- */

/*
 * Four requests used before the driver reaps any: without EVENT_IDX each flush signals; with it
 * only the first crosses used_event. Interrupts off: none. On again: the next one signals.
 */
static void run_call_counts(bool packed, bool event_idx)
{
    struct tdrv_opts o = one_queue(packed, event_idx);
    struct rng_bench t;
    uint64_t gpa;
    uint32_t len;

    struct vhu_core *c;
    struct vhu_vqd *vqd;
    uint8_t *buf;
    ASSERT_OK(core_up(&t, 0, &o, &c, &vqd, &buf, &gpa, 4 * 64));
    ASSERT_EQ(vhu_has_feature(tdrv_features(t.d), VHU_VIRTIO_RING_F_EVENT_IDX), event_idx);
    ASSERT_EQ(tdrv_calls(t.d, 0), 0);
    ASSERT(!vhu_vqd_enable_cb(vqd));
    for (unsigned i = 0; i < 4; i++) {
        ASSERT_OK(post(vqd, gpa + i * 64, 64, buf + i * 64));
        ASSERT_EQ(vhu_core_poll(c), 1);
    }
    ASSERT_EQ(tdrv_calls(t.d, 0), event_idx ? 1 : 4);
    for (unsigned i = 0; i < 4; i++)
        ASSERT(vhu_vqd_get_used(vqd, &len) == buf + i * 64);

    unsigned calls = tdrv_calls(t.d, 0);
    vhu_vqd_disable_cb(vqd);
    for (unsigned i = 0; i < 4; i++)
        ASSERT(one_request(&t, vqd, buf, gpa, 64, true));
    ASSERT_EQ(tdrv_calls(t.d, 0), calls);

    ASSERT(!vhu_vqd_enable_cb(vqd));
    ASSERT(one_request(&t, vqd, buf, gpa, 64, true));
    ASSERT_EQ(tdrv_calls(t.d, 0), calls + 1);
    ASSERT_EQ(tdrv_errors(t.d, 0), 0);
    rng_down(&t);
}

CORE_TEST(call_sink_counts_split) { run_call_counts(false, false); }
CORE_TEST(call_sink_counts_split_event_idx) { run_call_counts(false, true); }
CORE_TEST(call_sink_counts_packed) { run_call_counts(true, false); }
CORE_TEST(call_sink_counts_packed_event_idx) { run_call_counts(true, true); }

/* ---- a polled ring on a worker: progress with no kick ever sent --------------------------- */

/*
 * The driver only publishes; kick_prepare() tells how often the device asked for a kick. A
 * split ring with EVENT_IDX asks once, for the first buffer after it starts: the ring publishes
 * avail_event = its position at start, and turning notifications off for polling only stops
 * moving it (as vhost does); no kick source exists to carry that kick anyway.
 */
static void run_polled_worker(bool packed, bool event_idx)
{
    struct tdrv_opts o = one_queue(packed, event_idx);
    struct vhu_backend_stats st;
    struct rng_bench t;
    unsigned wanted = 0;
    uint32_t len;
    uint64_t gpa;

    struct vhu_core *c;
    struct vhu_vqd *vqd;
    uint8_t *buf;
    ASSERT_OK(core_up(&t, 1, &o, &c, &vqd, &buf, &gpa, 64));
    for (unsigned i = 0; i < 50; i++) {
        struct vhu_vqd_seg s = {gpa, 64};
        memset(buf, 0, 64);
        ASSERT_OK(vhu_vqd_add(vqd, &s, 0, 1, buf));
        wanted += vhu_vqd_kick_prepare(vqd);
        /* the control thread does not own the ring: only the worker can have done this */
        ASSERT_EQ(vhu_core_poll(c), 0);
        ASSERT(reap(&t, vqd, false, &len) == buf);
        ASSERT_EQ(len, 64);
    }
    ASSERT(wanted <= (!packed && event_idx ? 1u : 0u));
    vhu_backend_get_stats(t.b, &st);
    ASSERT_EQ(st.kicks, 0);
    ASSERT_EQ(st.messages, 0);
    ASSERT_EQ(vhu_rng_bytes_served(t.dev), 50 * 64);
    ASSERT(tdrv_calls(t.d, 0) > 0); /* the call sink ran on the worker */
    rng_down(&t);
}

CORE_TEST(polled_ring_on_worker_split) { run_polled_worker(false, false); }
CORE_TEST(polled_ring_on_worker_split_event_idx) { run_polled_worker(false, true); }
CORE_TEST(polled_ring_on_worker_packed) { run_polled_worker(true, false); }
CORE_TEST(polled_ring_on_worker_packed_event_idx) { run_polled_worker(true, true); }

/* ---- a kick source of the test's own kind ----------------------------------------------- */

/* A doorbell the test rings itself: watch() records the callback, tk_ring() calls it (on the
 * loop's thread, which here is the test's). */
struct test_kick {
    struct vhu_notifier n;
    struct vhu_loop *loop;
    vhu_notifier_fn *cb;
    void *opaque;
};

static unsigned tk_watches, tk_unwatches, tk_destroyed;

static int tk_watch(struct vhu_notifier *n, struct vhu_loop *loop, vhu_notifier_fn *cb,
                    void *opaque)
{
    struct test_kick *k = (struct test_kick *)n;

    k->loop = loop;
    k->cb = cb;
    k->opaque = opaque;
    tk_watches++;
    return 0;
}

static void tk_unwatch(struct vhu_notifier *n, struct vhu_loop *loop)
{
    struct test_kick *k = (struct test_kick *)n;

    if (loop == k->loop)
        k->cb = NULL;
    tk_unwatches++;
}

static void tk_destroy(struct vhu_notifier *n)
{
    tk_destroyed++;
    free(n);
}

static const struct vhu_notifier_ops tk_ops = {
    .name = "test-doorbell",
    .watch = tk_watch,
    .unwatch = tk_unwatch,
    .destroy = tk_destroy,
};

static void tk_ring(struct test_kick *k)
{
    if (k->cb)
        k->cb(k->opaque);
}

CORE_TEST(kick_source_of_its_own_kind)
{
    struct tdrv_opts o = one_queue(false, false);
    struct vhu_backend_stats st;
    struct rng_bench t;
    uint32_t len;
    uint64_t gpa;

    tk_watches = tk_unwatches = tk_destroyed = 0;
    struct vhu_core *c;
    struct vhu_vqd *vqd;
    uint8_t *buf;
    ASSERT_OK(core_up(&t, 0, &o, &c, &vqd, &buf, &gpa, 64));
    struct test_kick *k = calloc(1, sizeof(*k));
    ASSERT(k);
    k->n.ops = &tk_ops;
    ASSERT(vhu_notifier_watchable(&k->n));
    /* handed to the running (polled) ring: watched on the ring's loop from now on */
    ASSERT_OK(vhu_core_ring_set_kick(c, 0, &k->n));
    ASSERT_EQ(tk_watches, 1);
    ASSERT(k->loop == t.loop);
    for (unsigned i = 0; i < 3; i++) {
        struct vhu_vqd_seg s = {gpa, 64};
        ASSERT_OK(vhu_vqd_add(vqd, &s, 0, 1, buf));
        ASSERT(vhu_vqd_kick_prepare(vqd)); /* a kicked ring asks for kicks */
        for (int j = 0; j < 3; j++)
            vhu_loop_run_once(t.loop, 0);
        ASSERT(vhu_vqd_get_used(vqd, &len) == NULL); /* nothing happens until the doorbell */
        tk_ring(k);
        ASSERT(vhu_vqd_get_used(vqd, &len) == buf);
        ASSERT_EQ(len, 64);
    }
    vhu_backend_get_stats(t.b, &st);
    ASSERT_EQ(st.kicks, 3);
    /* across a stop and a start the same source is watched again */
    ASSERT_OK(vhu_core_ring_stop(c, 0, NULL));
    ASSERT_EQ(tk_unwatches, 1);
    ASSERT_OK(vhu_core_ring_start(c, 0));
    ASSERT_EQ(tk_watches, 2);
    ASSERT_OK(post(vqd, gpa, 64, buf));
    vhu_loop_run_once(t.loop, 0);
    ASSERT(vhu_vqd_get_used(vqd, &len) == NULL); /* polled by no one */
    tk_ring(k);
    ASSERT(vhu_vqd_get_used(vqd, &len) == buf);
    /* replaced by "no source": unwatched and destroyed by the core; the ring is polled again */
    ASSERT_OK(vhu_core_ring_set_kick(c, 0, NULL));
    ASSERT_EQ(tk_unwatches, 2);
    ASSERT_EQ(tk_destroyed, 1);
    ASSERT(one_request(&t, vqd, buf, gpa, 64, true));
    rng_down(&t);
}

/* ---- a bad descriptor: NEEDS_RESET and the error sink ----------------------------------- */

CORE_TEST(bad_descriptor_needs_reset_and_err_sink)
{
    for (unsigned kase = 0; kase < 3; kase++) {
        struct tdrv_opts o = one_queue(kase == 2, true);
        struct rng_bench t;
        uint8_t status = 0xff;
        uint64_t gpa;
        uint32_t len;

        struct vhu_core *c;
        struct vhu_vqd *vqd;
        uint8_t *buf;
        ASSERT_OK(core_up(&t, 0, &o, &c, &vqd, &buf, &gpa, 64));
        ASSERT(one_request(&t, vqd, buf, gpa, 64, true));
        ASSERT_OK(tdrv_get_status(t.d, &status));
        ASSERT(!(status & VHU_VIRTIO_CONFIG_S_NEEDS_RESET));
        ASSERT(status & VHU_VIRTIO_CONFIG_S_DRIVER_OK);
        ASSERT_EQ(tdrv_errors(t.d, 0), 0);
        struct vhu_vqd_seg s = {gpa, 16};
        if (kase == 0) /* a device-readable buffer for the rng */
            ASSERT_OK(vhu_vqd_add(vqd, &s, 1, 0, buf));
        else /* a buffer outside guest memory (below it), split and packed */
            ASSERT_OK(post(vqd, VHU_FE_GPA_BASE - 4096, 64, buf));
        vhu_vqd_kick_prepare(vqd);
        vhu_core_poll(c);
        ASSERT(vhu_vqd_get_used(vqd, &len) == NULL);
        ASSERT_OK(tdrv_get_status(t.d, &status));
        ASSERT(status & VHU_VIRTIO_CONFIG_S_NEEDS_RESET);
        ASSERT(status & VHU_VIRTIO_CONFIG_S_DRIVER_OK); /* added to, not replacing, the status */
        ASSERT_EQ(tdrv_errors(t.d, 0), 1);
        /* the broken ring is not processed any more */
        ASSERT_OK(post(vqd, gpa, 64, buf + 1));
        ASSERT_EQ(vhu_core_poll(c), 0);
        ASSERT_EQ(tdrv_errors(t.d, 0), 1);
        /* a reset clears it */
        vhu_core_reset(c);
        ASSERT_EQ(vhu_core_status(c), 0);
        rng_down(&t);
    }
}

/* ---- new addresses for a running ring --------------------------------------------------- */

#define ALIAS_GPA 0x40000000ull

/* The arena mapped a second time at ALIAS_GPA (same host memory, other guest addresses). */
static int alias_table(struct tdrv *d, bool with_base, struct vhu_mem_table **out)
{
    size_t size;
    uint8_t *mem = tdrv_mem(d, &size);
    struct vhu_mem_region *r[2];
    unsigned n = 0;
    int ret = 0;

    if (with_base)
        ret = vhu_mem_region_map(&(struct vhu_mem_region_desc){.gpa = VHU_FE_GPA_BASE,
                                     .size = size, .uva = (uintptr_t)mem, .fd = -1,
                                     .host = mem}, &r[n++]);
    if (ret == 0)
        ret = vhu_mem_region_map(&(struct vhu_mem_region_desc){.gpa = ALIAS_GPA, .size = size,
                                     .uva = (uintptr_t)mem + size, .fd = -1, .host = mem},
                                 &r[n++]);
    if (ret == 0)
        ret = vhu_mem_table_new(r, n, out);
    return ret;
}

/* vqd's ring areas as guest-physical addresses in the alias. */
static struct vhu_ring_addr alias_addrs(const struct vhu_vqd *vqd)
{
    const uint64_t delta = ALIAS_GPA - VHU_FE_GPA_BASE;
    struct vhu_ring_addr ra = {.space = VHU_ADDR_GPA};

    vhu_vqd_addrs(vqd, &ra.desc, &ra.driver, &ra.device);
    ra.desc += delta;
    ra.driver += delta;
    ra.device += delta;
    return ra;
}

CORE_TEST(set_addr_on_a_running_ring)
{
    const uint64_t delta = ALIAS_GPA - VHU_FE_GPA_BASE;
    struct tdrv_opts o = one_queue(false, true); /* no indirect tables: they stay at gpa */
    struct vhu_mem_table *t2;
    struct rng_bench t;
    uint32_t base = 0;
    uint64_t gpa;

    struct vhu_core *c;
    struct vhu_vqd *vqd;
    uint8_t *buf;
    ASSERT_OK(core_up(&t, 0, &o, &c, &vqd, &buf, &gpa, 64));
    ASSERT_OK(alias_table(t.d, true, &t2));
    ASSERT_OK(vhu_core_set_mem(c, t2));
    for (unsigned i = 0; i < 5; i++)
        ASSERT(one_request(&t, vqd, buf, gpa, 64, true));
    /* the same ring, now through the alias: re-translated in place, position kept */
    struct vhu_ring_addr ra = alias_addrs(vqd);
    ASSERT_OK(vhu_core_ring_set_addr(c, 0, &ra));
    ASSERT(vhu_core_ring_started(c, 0));
    /* the first mapping goes: the ring only translates through the alias now */
    ASSERT_OK(alias_table(t.d, false, &t2));
    ASSERT_OK(vhu_core_set_mem(c, t2));
    ASSERT(vhu_core_ring_started(c, 0));
    for (unsigned i = 0; i < 5; i++)
        ASSERT(one_request(&t, vqd, buf, gpa + delta, 64, true));
    /* addresses that no longer translate: refused, and the ring stops where it was */
    vhu_vqd_addrs(vqd, &ra.desc, &ra.driver, &ra.device);
    ASSERT_ERR(-EFAULT, vhu_core_ring_set_addr(c, 0, &ra));
    ASSERT(!vhu_core_ring_started(c, 0));
    ASSERT_OK(vhu_core_ring_stop(c, 0, &base));
    ASSERT_EQ(base, 10);
    ASSERT_EQ(vhu_rng_bytes_served(t.dev), 10 * 64);
    rng_down(&t);
}

/* ---- the inflight region ---------------------------------------------------------------- */

CORE_TEST(set_inflight_refused_while_a_ring_tracks)
{
    struct tdrv_opts o = one_queue(false, true);
    size_t sz = vhu_core_inflight_region_size(QSZ);
    void *r1 = calloc(1, sz), *r2 = calloc(1, sz);
    struct rng_bench t;
    uint64_t gpa;

    ASSERT(r1 && r2);
    struct vhu_core *c;
    struct vhu_vqd *vqd;
    uint8_t *buf;
    ASSERT_OK(core_up(&t, 0, &o, &c, &vqd, &buf, &gpa, 64));
    ASSERT_ERR(-EINVAL, vhu_core_set_inflight(c, r1, 2, QSZ)); /* rng has one queue */
    /* the ring started before any region: it does not track, so regions come and go */
    ASSERT_OK(vhu_core_set_inflight(c, r1, 1, QSZ));
    ASSERT_OK(vhu_core_set_inflight(c, r2, 1, QSZ));
    /* restarted, it takes its area in r2 */
    ASSERT_OK(vhu_core_ring_stop(c, 0, NULL));
    ASSERT_OK(vhu_core_ring_start(c, 0));
    ASSERT_ERR(-EBUSY, vhu_core_set_inflight(c, r1, 1, QSZ));
    ASSERT_ERR(-EBUSY, vhu_core_set_inflight(c, NULL, 0, 0));
    for (unsigned i = 0; i < 20; i++)
        ASSERT(one_request(&t, vqd, buf, gpa, 64, true));
    /* stopped, it lets go */
    ASSERT_OK(vhu_core_ring_stop(c, 0, NULL));
    ASSERT_OK(vhu_core_set_inflight(c, NULL, 0, 0));
    ASSERT_OK(vhu_core_ring_start(c, 0));
    ASSERT(one_request(&t, vqd, buf, gpa, 64, true));
    ASSERT_OK(vhu_core_set_inflight(c, r1, 1, QSZ)); /* untracked ring again */
    rng_down(&t);
    free(r1);
    free(r2);
}

/* A buffer made before packed tracking (split-ring areas only, as an older vhud sized it) is
 * taken: a split ring tracks into it, a packed ring runs untracked, and a buffer smaller still
 * is refused. */
static void legacy_buffer(bool packed)
{
    struct tdrv_opts o = one_queue(packed, true);
    size_t legacy = (16 + 16 * (size_t)QSZ + 63) / 64 * 64;
    void *r1 = calloc(1, legacy);
    struct rng_bench t;
    struct vhu_core *c;
    struct vhu_vqd *vqd;
    uint8_t *buf;
    uint64_t gpa;

    ASSERT(r1);
    ASSERT(legacy < vhu_core_inflight_region_size(QSZ));
    ASSERT_OK(core_up(&t, 0, &o, &c, &vqd, &buf, &gpa, 64));
    ASSERT_ERR(-EINVAL, vhu_core_set_inflight_buffer(c, r1, legacy - 64, 1, QSZ));
    ASSERT_OK(vhu_core_set_inflight_buffer(c, r1, legacy, 1, QSZ));
    ASSERT_OK(vhu_core_ring_stop(c, 0, NULL));
    ASSERT_OK(vhu_core_ring_start(c, 0));
    for (unsigned i = 0; i < 5; i++)
        ASSERT(one_request(&t, vqd, buf, gpa, 64, true));
    /* a tracking ring holds on to its buffer */
    if (packed)
        ASSERT_OK(vhu_core_set_inflight(c, NULL, 0, 0));
    else
        ASSERT_ERR(-EBUSY, vhu_core_set_inflight(c, NULL, 0, 0));
    ASSERT_OK(vhu_core_ring_stop(c, 0, NULL));
    ASSERT_OK(vhu_core_set_inflight(c, NULL, 0, 0));
    rng_down(&t);
    free(r1);
}

CORE_TEST(legacy_inflight_buffer_split) { legacy_buffer(false); }
CORE_TEST(legacy_inflight_buffer_packed) { legacy_buffer(true); }

/* ---- the core path really is message- and fd-free --------------------------------------- */

TEST(core_path_sends_no_message_and_opens_no_fd)
{
    struct tdrv_opts o = one_queue(false, true);
    struct vhu_backend_stats st;
    struct rng_bench t;
    uint64_t gpa;

    ASSERT_OK(rng_up(&t, TDRV_CORE, 0, NULL));
    int fds = vhu_fd_count_self();
    ASSERT_OK(tdrv_start(t.d, &o));
    uint8_t *buf = tdrv_alloc(t.d, 64, 64, &gpa);
    ASSERT(buf);
    for (unsigned i = 0; i < 10; i++)
        ASSERT_EQ(tdrv_request(t.d, 0, &(struct vhu_vqd_seg){gpa, 64}, 0, 1, 2000), 64);
    ASSERT_EQ(vhu_fd_count_self(), fds);
    vhu_backend_get_stats(t.b, &st);
    ASSERT_EQ(st.messages, 0);
    ASSERT_EQ(st.sessions, 1);
    rng_down(&t);

    /* the other path, for contrast: messages and fds */
    ASSERT_OK(rng_up(&t, TDRV_VHOST_USER, 0, NULL));
    fds = vhu_fd_count_self();
    ASSERT_OK(tdrv_start(t.d, &o));
    ASSERT(vhu_fd_count_self() > fds);
    vhu_backend_get_stats(t.b, &st);
    ASSERT(st.messages > 0);
    rng_down(&t);
}

/* ---- a memory table that one ring no longer translates in ------------------------------- */

/*
 * net sink, rings 0 (receiveq) and 1 (transmitq). Ring 1 moves to the alias, ring 0 stays on
 * the first mapping; then the first mapping goes. Ring 0 fails the call and stops; ring 1, after
 * it in the table walk, must still be re-translated into the new table (and leave the old one,
 * which the core releases) and carry a frame.
 */
CORE_TEST(set_mem_a_failing_ring_leaves_the_others_running)
{
    const uint64_t delta = ALIAS_GPA - VHU_FE_GPA_BASE;
    struct tdrv_opts o = {.num_queues = 2, .queue_size = QSZ, .event_idx = true,
                          .mem_size = 1 << 20};
    struct vhu_net_opts no = {.port = VHU_NET_PORT_SINK};
    struct vhu_device *dev = NULL;
    struct vhu_backend *b = NULL;
    struct vhu_loop *loop = NULL;
    struct vhu_mem_table *t2;
    struct vhu_net_stats ns;
    struct tdrv *d = NULL;
    uint64_t gpa;
    uint32_t len;

    ASSERT_OK(vhu_net_new(&no, &dev));
    ASSERT_OK(vhu_loop_new(&loop));
    ASSERT_OK(vhu_backend_new(dev, loop, &b));
    ASSERT_OK(tdrv_new(TDRV_CORE, b, loop, &d));
    ASSERT_OK(tdrv_start(d, &o));
    struct vhu_core *c = tdrv_core(d);
    struct vhu_vqd *txq = tdrv_vqd(d, 1);
    uint8_t *buf = tdrv_alloc(d, 128, 64, &gpa);
    ASSERT(buf);
    memset(buf, 0, 128);
    memset(buf + 12, 0xab, 6); /* a unicast destination */
    ASSERT_OK(alias_table(d, true, &t2));
    ASSERT_OK(vhu_core_set_mem(c, t2));
    struct vhu_ring_addr ra = alias_addrs(txq);
    ASSERT_OK(vhu_core_ring_set_addr(c, 1, &ra));
    ASSERT_OK(alias_table(d, false, &t2));
    ASSERT(vhu_core_set_mem(c, t2) < 0); /* ring 0 is not in it */
    ASSERT(!vhu_core_ring_started(c, 0));
    ASSERT(vhu_core_ring_started(c, 1));
    ASSERT_OK(vhu_vqd_add(txq, &(struct vhu_vqd_seg){gpa + delta, 12 + 64}, 1, 0, buf));
    vhu_vqd_kick_prepare(txq);
    ASSERT_EQ(vhu_core_poll(c), 1);
    ASSERT(vhu_vqd_get_used(txq, &len) == buf);
    ASSERT_OK(vhu_net_get_stats(dev, 1, &ns));
    ASSERT_EQ(ns.packets, 1);
    ASSERT_EQ(ns.bytes, 64);
    tdrv_teardown(d, b, dev, loop);
}
