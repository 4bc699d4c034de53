/* SPDX-License-Identifier: BSD-3-Clause */
/* The notifier kinds every transport can use: eventfd and callback. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "vhu/notifier.h"
#include "vhu/util.h"

struct efd_notifier {
    struct vhu_notifier n;
    int fd;
    bool watched;
    vhu_notifier_fn *cb;
    void *opaque;
};

static void efd_signal(struct vhu_notifier *n)
{
    vhu_eventfd_signal(VHU_CONTAINER_OF(n, struct efd_notifier, n)->fd);
}

static void efd_loop_cb(int fd, uint32_t events, void *opaque)
{
    struct efd_notifier *e = opaque;

    (void)fd;
    (void)events;
    e->cb(e->opaque);
}

/* Edge-triggered and never read: every kick written since the last wait wakes the watcher
 * once, and a wake-up costs the epoll_wait alone. The counter cannot fill up from kicks
 * (2^64 - 2 of them); a peer that writes a huge value only blocks its own further kicks. We
 * never write to a kick source, so its fill level can never block us. */
static int efd_watch(struct vhu_notifier *n, struct vhu_loop *loop, vhu_notifier_fn *cb,
                     void *opaque)
{
    struct efd_notifier *e = VHU_CONTAINER_OF(n, struct efd_notifier, n);
    int r;

    if (e->watched)
        return -EBUSY;
    e->cb = cb;
    e->opaque = opaque;
    r = vhu_loop_add(loop, e->fd, VHU_LOOP_IN | VHU_LOOP_EDGE, efd_loop_cb, e);
    if (r == 0)
        e->watched = true;
    return r;
}

static void efd_unwatch(struct vhu_notifier *n, struct vhu_loop *loop)
{
    struct efd_notifier *e = VHU_CONTAINER_OF(n, struct efd_notifier, n);

    if (e->watched)
        vhu_loop_del(loop, e->fd);
    e->watched = false;
}

static void efd_destroy(struct vhu_notifier *n)
{
    struct efd_notifier *e = VHU_CONTAINER_OF(n, struct efd_notifier, n);

    vhu_fd_close(&e->fd);
    free(e);
}

static const struct vhu_notifier_ops efd_ops = {
    .name = "eventfd",
    .signal = efd_signal,
    .watch = efd_watch,
    .unwatch = efd_unwatch,
    .destroy = efd_destroy,
};

/*
 * The fd comes from the other side (vhost-user's SET_VRING_KICK/CALL/ERR) and is used on the
 * ring's owner thread, which must never block on a peer. So it must be an eventfd (a pipe nobody
 * reads, or a socket, blocks a writer once full) and it is made non-blocking: a blocking eventfd
 * whose counter sits at its maximum blocks a write until the peer reads. O_NONBLOCK is a flag of
 * the file description, which the sender shares (SCM_RIGHTS duplicates it): we change it for
 * the frontend too. That costs a real frontend nothing: QEMU's event notifiers
 * (util/event_notifier-posix.c) and DPDK virtio-user's kick/call fds (virtio_user_dev.c) are
 * created with EFD_NONBLOCK already, and so are vhu's own (vhu_eventfd_new).
 */
static int efd_prepare(int fd)
{
    int r = vhu_fd_is_eventfd(fd);

    if (r == 0)
        return -EINVAL;
    if (r < 0)
        return r;
    return vhu_fd_set_nonblock(fd, true);
}

VHU_EXPORT int vhu_notifier_eventfd_new(int fd, struct vhu_notifier **out)
{
    struct efd_notifier *e;
    int r;

    if (fd < 0)
        return -EBADF;
    r = efd_prepare(fd);
    e = r == 0 ? calloc(1, sizeof(*e)) : NULL;
    if (!e) {
        close(fd);
        return r < 0 ? r : -ENOMEM;
    }
    e->n.ops = &efd_ops;
    e->fd = fd;
    *out = &e->n;
    return 0;
}

struct cb_notifier {
    struct vhu_notifier n;
    vhu_notifier_fn *fn;
    void *opaque;
};

static void cb_signal(struct vhu_notifier *n)
{
    struct cb_notifier *c = VHU_CONTAINER_OF(n, struct cb_notifier, n);

    c->fn(c->opaque);
}

static void cb_destroy(struct vhu_notifier *n)
{
    free(VHU_CONTAINER_OF(n, struct cb_notifier, n));
}

static const struct vhu_notifier_ops cb_ops = {
    .name = "callback",
    .signal = cb_signal,
    .destroy = cb_destroy,
};

VHU_EXPORT int vhu_notifier_callback_new(vhu_notifier_fn *fn, void *opaque,
                                         struct vhu_notifier **out)
{
    struct cb_notifier *c;

    if (!fn)
        return -EINVAL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->n.ops = &cb_ops;
    c->fn = fn;
    c->opaque = opaque;
    *out = &c->n;
    return 0;
}

VHU_EXPORT void vhu_notifier_free(struct vhu_notifier *n)
{
    if (n && n->ops->destroy)
        n->ops->destroy(n);
}
