/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_BACKEND_WATCH_H
#define VHU_BACKEND_WATCH_H

/* A ring's slots for the device's own fds (vhu_dev_watch() of vhu/device.h): an io_uring's
 * completion eventfd, a tap. Device fds, never a transport's. */
#define VHU_DEV_WATCHES 4

struct vhu_dev_watches {
    struct vhu_dev_watch_slot {
        int fd;
        void (*cb)(void *opaque);
        void *opaque;
    } slot[VHU_DEV_WATCHES];
};

void vhu_dev_watches_init(struct vhu_dev_watches *w);

#endif
