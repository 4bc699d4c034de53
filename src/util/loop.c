/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "vhu/loop.h"
#include "vhu/util.h"

/*
 * Watches live in a list; epoll carries a pointer to the watch. A watch removed during dispatch is
 * only marked dead and freed after the round, so a callback may remove any watch, itself included.
 */
struct vhu_watch {
    int fd;
    bool dead;
    vhu_loop_cb *cb;
    void *opaque;
    struct vhu_watch *next;
};

struct vhu_loop {
    int epfd;
    bool stop;
    int dispatching;
    struct vhu_watch *watches;
};

static uint32_t to_epoll(uint32_t ev)
{
    uint32_t e = 0;

    if (ev & VHU_LOOP_IN)
        e |= EPOLLIN;
    if (ev & VHU_LOOP_OUT)
        e |= EPOLLOUT;
    if (ev & VHU_LOOP_EDGE)
        e |= EPOLLET;
    return e;
}

static uint32_t from_epoll(uint32_t e)
{
    uint32_t ev = 0;

    if (e & EPOLLIN)
        ev |= VHU_LOOP_IN;
    if (e & EPOLLOUT)
        ev |= VHU_LOOP_OUT;
    if (e & EPOLLERR)
        ev |= VHU_LOOP_ERR;
    if (e & (EPOLLHUP | EPOLLRDHUP))
        ev |= VHU_LOOP_HUP;
    return ev;
}

VHU_EXPORT int vhu_loop_new(struct vhu_loop **out)
{
    struct vhu_loop *loop = calloc(1, sizeof(*loop));

    if (!loop)
        return -ENOMEM;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        int err = -errno;
        free(loop);
        return err;
    }
    *out = loop;
    return 0;
}

static void reap(struct vhu_loop *loop)
{
    struct vhu_watch **pp = &loop->watches;

    while (*pp) {
        struct vhu_watch *w = *pp;
        if (w->dead) {
            *pp = w->next;
            free(w);
        } else {
            pp = &w->next;
        }
    }
}

VHU_EXPORT void vhu_loop_free(struct vhu_loop *loop)
{
    if (!loop)
        return;
    for (struct vhu_watch *w = loop->watches; w; w = w->next)
        w->dead = true;
    reap(loop);
    vhu_fd_close(&loop->epfd);
    free(loop);
}

static struct vhu_watch *find(struct vhu_loop *loop, int fd)
{
    for (struct vhu_watch *w = loop->watches; w; w = w->next) {
        if (!w->dead && w->fd == fd)
            return w;
    }
    return NULL;
}

VHU_EXPORT int vhu_loop_add(struct vhu_loop *loop, int fd, uint32_t events, vhu_loop_cb *cb,
                            void *opaque)
{
    struct epoll_event ev = {.events = to_epoll(events)};
    struct vhu_watch *w;

    if (fd < 0 || !cb)
        return -EINVAL;
    if (find(loop, fd))
        return -EEXIST;
    w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->fd = fd;
    w->cb = cb;
    w->opaque = opaque;
    ev.data.ptr = w;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int err = -errno;
        free(w);
        return err;
    }
    w->next = loop->watches;
    loop->watches = w;
    return 0;
}

VHU_EXPORT int vhu_loop_mod(struct vhu_loop *loop, int fd, uint32_t events)
{
    struct vhu_watch *w = find(loop, fd);
    struct epoll_event ev = {.events = to_epoll(events)};

    if (!w)
        return -ENOENT;
    ev.data.ptr = w;
    return epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

VHU_EXPORT int vhu_loop_del(struct vhu_loop *loop, int fd)
{
    struct vhu_watch *w = find(loop, fd);

    if (!w)
        return -ENOENT;
    /* The fd may already be closed by its owner; EBADF/ENOENT from epoll are harmless then. */
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
    w->dead = true;
    if (!loop->dispatching)
        reap(loop);
    return 0;
}

VHU_EXPORT int vhu_loop_run_once(struct vhu_loop *loop, int timeout_ms)
{
    struct epoll_event evs[32];
    int n = epoll_wait(loop->epfd, evs, VHU_ARRAY_SIZE(evs), timeout_ms);
    int ran = 0;

    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    loop->dispatching++;
    for (int i = 0; i < n; i++) {
        struct vhu_watch *w = evs[i].data.ptr;
        if (w->dead)
            continue;
        w->cb(w->fd, from_epoll(evs[i].events), w->opaque);
        ran++;
    }
    loop->dispatching--;
    if (!loop->dispatching)
        reap(loop);
    return ran;
}

VHU_EXPORT int vhu_loop_run(struct vhu_loop *loop)
{
    loop->stop = false;
    while (!loop->stop) {
        int r = vhu_loop_run_once(loop, -1);
        if (r < 0)
            return r;
    }
    return 0;
}

VHU_EXPORT void vhu_loop_stop(struct vhu_loop *loop)
{
    loop->stop = true;
}

VHU_EXPORT int vhu_loop_fd(const struct vhu_loop *loop)
{
    return loop->epfd;
}
