/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "vhu/log.h"
#include "vhu/util.h"
#include "worker.h"

#define POLL_LOOP_EVERY 32 /* busy-poll rounds per look at the loop's fds */

struct vhu_worker {
    unsigned id;
    unsigned poll_us;
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

static void *worker_main(void *arg)
{
    struct vhu_worker *w = arg;
    char name[16];

    snprintf(name, sizeof(name), "vhu-worker%u", w->id);
    pthread_setname_np(pthread_self(), name);
    while (!w->quit) {
        if ((w->poll_us == 0 && !w->spin) || !w->poll) {
            vhu_loop_run_once(w->loop, -1);
            continue;
        }
        /* Busy-poll the rings for poll_us after the last work found, then sleep on the fds.
         * The loop's fds (control calls, device watches) are looked at every few rounds only:
         * an epoll_wait per round would cost more than the rings themselves. */
        uint64_t until = 0; /* 0: the idle stretch starts at the next idle round */
        unsigned round = 0;
        while (!w->quit) {
            if (++round % POLL_LOOP_EVERY == 0)
                vhu_loop_run_once(w->loop, 0);
            if (w->poll(w->poll_opaque, false)) {
                until = 0; /* busy rounds read no clock */
                continue;
            }
            uint64_t now = vhu_now_ns();
            if (!until)
                until = now + (uint64_t)w->poll_us * 1000;
            else if (now >= until && !w->poll(w->poll_opaque, true))
                break;
        }
        if (!w->quit)
            vhu_loop_run_once(w->loop, -1);
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
    w->poll_us = poll_us;
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
