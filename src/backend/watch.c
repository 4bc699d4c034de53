/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The device's own fds (an io_uring's completion eventfd, a tap) watched on its ring's owner
 * thread: vhu_dev_watch() of vhu/device.h. These are the device's fds, never a transport's.
 */
#include <errno.h>

#include "backend_internal.h"
#include "vhu/util.h"

void vhu_dev_watches_init(struct vhu_dev_watches *w)
{
    for (unsigned k = 0; k < VHU_DEV_WATCHES; k++)
        w->slot[k].fd = -1;
}

static void dev_watch_cb(int fd, uint32_t events, void *opaque)
{
    struct vhu_dev_watch_slot *w = opaque;

    (void)fd;
    (void)events;
    w->cb(w->opaque);
}

VHU_EXPORT int vhu_dev_watch(struct vhu_vq *vq, int fd, vhu_dev_watch_fn *cb, void *opaque)
{
    struct vhu_core_ring *r = vhu_vq_core(vq);

    if (!r || fd < 0 || !cb)
        return -EINVAL;
    for (unsigned k = 0; k < VHU_DEV_WATCHES; k++) {
        struct vhu_dev_watch_slot *w = &r->watches.slot[k];
        if (w->fd >= 0)
            continue;
        int ret = vhu_loop_add(r->loop, fd, VHU_LOOP_IN, dev_watch_cb, w);
        if (ret < 0)
            return ret;
        w->fd = fd;
        w->cb = cb;
        w->opaque = opaque;
        return 0;
    }
    return -ENOSPC;
}

VHU_EXPORT void vhu_dev_unwatch(struct vhu_vq *vq, int fd)
{
    struct vhu_core_ring *r = vhu_vq_core(vq);

    if (!r || fd < 0)
        return;
    for (unsigned k = 0; k < VHU_DEV_WATCHES; k++) {
        if (r->watches.slot[k].fd == fd) {
            vhu_loop_del(r->loop, fd);
            r->watches.slot[k].fd = -1;
        }
    }
}
