/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "vhu/backend.h"
#include "vhu/log.h"
#include "vhu/util.h"
#include "worker.h"

#define POLL_LOOP_EVERY 32   /* busy-poll rounds per look at the loop's fds */
#define POLL_PROBE_MAX 256   /* a closed window is probed at least once per this many stretches */
#define POLL_SPIN_NS 1000000 /* the window while a polled ring makes the worker spin */

struct vhu_worker {
    unsigned id;
    struct vhu_poll_adapt pa; /* worker thread only */
    struct vhu_worker_stats pst; /* worker thread adds, others read racily */
    vhu_worker_poll_fn *poll;
    void *poll_opaque;
    struct vhu_loop *loop;
    pthread_t thread;
    bool running;
    int wake_fd;          /* control -> worker doorbell (an eventfd of its own loop) */
    pthread_mutex_t lock; /* guards the call slot only: control path, never per request */
    pthread_cond_t done_cond;
    int (*call_fn)(void *arg);
    void *call_arg;
    int call_ret;
    bool call_done;
    bool quit;
    bool spin; /* worker thread only */
};

static void call_cb(int fd, uint32_t events, void *opaque)
{
    struct vhu_worker *w = opaque;
    int (*fn)(void *);
    void *arg;

    (void)events;
    vhu_eventfd_drain(fd);
    pthread_mutex_lock(&w->lock);
    fn = w->call_fn;
    arg = w->call_arg;
    pthread_mutex_unlock(&w->lock);
    if (!fn)
        return;
    int r = fn(arg);
    pthread_mutex_lock(&w->lock);
    w->call_fn = NULL;
    w->call_ret = r;
    w->call_done = true;
    pthread_cond_signal(&w->done_cond);
    pthread_mutex_unlock(&w->lock);
}

static int quit_fn(void *arg)
{
    struct vhu_worker *w = arg;

    w->quit = true;
    return 0;
}

void vhu_poll_adapt_init(struct vhu_poll_adapt *a, bool adaptive, uint32_t max_ns)
{
    *a = (struct vhu_poll_adapt){
        .max_ns = max_ns,
        .win_ns = max_ns,
        .probe_every = 1,
        .adaptive = adaptive && max_ns,
    };
}

uint32_t vhu_poll_adapt_window(struct vhu_poll_adapt *a)
{
    if (!a->adaptive || a->win_ns)
        return a->win_ns;
    if (++a->since_probe < a->probe_every)
        return 0;
    a->since_probe = 0;
    a->probing = true;
    return a->max_ns;
}

void vhu_poll_adapt_result(struct vhu_poll_adapt *a, bool hit)
{
    if (!a->adaptive)
        return;
    if (hit) {
        a->win_ns = a->win_ns && a->win_ns < a->max_ns / 2 ? a->win_ns * 2 : a->max_ns;
        a->probe_every = 1;
    } else if (a->probing) {
        if (a->probe_every < POLL_PROBE_MAX)
            a->probe_every *= 2;
    } else {
        a->win_ns /= 2;
        if (a->win_ns < a->max_ns / 8) {
            a->win_ns = 0;
            a->since_probe = 0;
        }
    }
    a->probing = false;
}

static void stat_add(uint64_t *c)
{
    __atomic_store_n(c, *c + 1, __ATOMIC_RELAXED);
}

/* The idle stretch polled a window of the rule's (not a spin) and ended: hit or slept. */
static void stretch_end(struct vhu_worker *w, bool hit)
{
    if (w->pa.probing)
        stat_add(&w->pst.poll_probes);
    stat_add(hit ? &w->pst.poll_hits : &w->pst.poll_misses);
    vhu_poll_adapt_result(&w->pa, hit);
    __atomic_store_n(&w->pst.poll_window_ns, w->pa.win_ns, __ATOMIC_RELAXED);
}

/* On the worker (or before it runs): a new rule, its window published for the stats. */
static void poll_reset(struct vhu_worker *w, bool adaptive, uint32_t max_ns)
{
    vhu_poll_adapt_init(&w->pa, adaptive, max_ns);
    __atomic_store_n(&w->pst.poll_window_ns, w->pa.win_ns, __ATOMIC_RELAXED);
}

static void sleep_once(struct vhu_worker *w)
{
    stat_add(&w->pst.sleeps);
    vhu_loop_run_once(w->loop, -1);
}

static void *worker_main(void *arg)
{
    struct vhu_worker *w = arg;
    char name[16];

    snprintf(name, sizeof(name), "vhu-worker%u", w->id);
    pthread_setname_np(pthread_self(), name);
    while (!w->quit) {
        if ((w->pa.max_ns == 0 && !w->spin) || !w->poll) {
            sleep_once(w);
            continue;
        }
        /* Busy-poll the rings for a window after the last work found, then sleep on the fds.
         * The loop's fds (control calls, device watches) are looked at every few rounds only:
         * an epoll_wait per round would cost more than the rings themselves. */
        uint64_t until = 0; /* 0: the idle stretch starts at the next idle round */
        bool adapt = false; /* the stretch under way has a window of the rule's (not a spin) */
        unsigned round = 0;
        while (!w->quit) {
            if (++round % POLL_LOOP_EVERY == 0)
                vhu_loop_run_once(w->loop, 0);
            if (w->poll(w->poll_opaque, false)) {
                if (adapt)
                    stretch_end(w, true);
                until = 0; /* busy rounds read no clock */
                adapt = false;
                continue;
            }
            uint64_t now = vhu_now_ns();
            if (!until) {
                adapt = !w->spin;
                uint32_t win = adapt ? vhu_poll_adapt_window(&w->pa) : POLL_SPIN_NS;
                if (win) {
                    until = now + win;
                    continue;
                }
                adapt = false;
            } else if (now < until) {
                continue;
            }
            /* the window is over (or closed): kicks back on, one last look, then sleep */
            bool late = w->poll(w->poll_opaque, true);
            if (adapt)
                stretch_end(w, late);
            until = 0;
            adapt = false;
            if (!late)
                break;
        }
        if (!w->quit)
            sleep_once(w);
    }
    return NULL;
}

int vhu_worker_new(unsigned id, unsigned poll_us, vhu_worker_poll_fn *poll, void *poll_opaque,
                   struct vhu_worker **out)
{
    struct vhu_worker *w = calloc(1, sizeof(*w));
    int r;

    if (!w)
        return -ENOMEM;
    w->id = id;
    poll_reset(w, false, poll_us * 1000u);
    w->poll = poll;
    w->poll_opaque = poll_opaque;
    w->wake_fd = vhu_eventfd_new();
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->done_cond, NULL);
    r = w->wake_fd < 0 ? w->wake_fd : vhu_loop_new(&w->loop);
    if (r == 0)
        r = vhu_loop_add(w->loop, w->wake_fd, VHU_LOOP_IN, call_cb, w);
    if (r == 0) {
        r = -pthread_create(&w->thread, NULL, worker_main, w);
        w->running = r == 0;
    }
    if (r < 0) {
        vhu_worker_free(w);
        return r;
    }
    *out = w;
    return 0;
}

bool vhu_worker_is_current(const struct vhu_worker *w)
{
    return w->running && pthread_equal(pthread_self(), w->thread);
}

void vhu_worker_set_spin(struct vhu_worker *w, bool on)
{
    w->spin = on;
}

struct set_poll_args {
    struct vhu_worker *w;
    bool adaptive;
    uint32_t max_ns;
};

static int set_poll_fn(void *arg)
{
    struct set_poll_args *a = arg;

    poll_reset(a->w, a->adaptive, a->max_ns);
    return 0;
}

int vhu_worker_set_poll(struct vhu_worker *w, bool adaptive, unsigned max_us)
{
    struct set_poll_args a = {w, adaptive, 0};

    if (max_us > VHU_POLL_MAX_US)
        return -EINVAL;
    a.max_ns = max_us * 1000u;
    return vhu_worker_call(w, set_poll_fn, &a);
}

void vhu_worker_get_poll_stats(const struct vhu_worker *w, struct vhu_worker_stats *st)
{
    st->poll_window_ns = __atomic_load_n(&w->pst.poll_window_ns, __ATOMIC_RELAXED);
    st->poll_hits = __atomic_load_n(&w->pst.poll_hits, __ATOMIC_RELAXED);
    st->poll_misses = __atomic_load_n(&w->pst.poll_misses, __ATOMIC_RELAXED);
    st->poll_probes = __atomic_load_n(&w->pst.poll_probes, __ATOMIC_RELAXED);
    st->sleeps = __atomic_load_n(&w->pst.sleeps, __ATOMIC_RELAXED);
}

int vhu_worker_call(struct vhu_worker *w, int (*fn)(void *arg), void *arg)
{
    int r;

    if (vhu_worker_is_current(w))
        return fn(arg);
    pthread_mutex_lock(&w->lock);
    w->call_fn = fn;
    w->call_arg = arg;
    w->call_done = false;
    pthread_mutex_unlock(&w->lock);
    vhu_eventfd_signal(w->wake_fd);
    pthread_mutex_lock(&w->lock);
    while (!w->call_done)
        pthread_cond_wait(&w->done_cond, &w->lock);
    r = w->call_ret;
    pthread_mutex_unlock(&w->lock);
    return r;
}

void vhu_worker_free(struct vhu_worker *w)
{
    if (!w)
        return;
    if (w->running) {
        vhu_worker_call(w, quit_fn, w);
        pthread_join(w->thread, NULL);
    }
    if (w->loop)
        vhu_loop_free(w->loop);
    vhu_fd_close(&w->wake_fd);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->done_cond);
    free(w);
}

struct vhu_loop *vhu_worker_loop(struct vhu_worker *w)
{
    return w->loop;
}
