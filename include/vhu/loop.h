/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_LOOP_H
#define VHU_LOOP_H

#include <stdint.h>

/*
 * A small epoll loop. The library core never requires it: every object exposes its fd and a
 * dispatch function, so a program may embed vhu in its own loop. vhud and the tests use this one.
 * Handlers may add and remove watches (including their own) from inside a callback.
 */
struct vhu_loop;

#define VHU_LOOP_IN 0x1u
#define VHU_LOOP_OUT 0x4u
#define VHU_LOOP_ERR 0x8u
#define VHU_LOOP_HUP 0x10u
/* With VHU_LOOP_IN: report each new arrival once (EPOLLET) instead of while the fd stays
 * readable. For an eventfd that only ever counts wake-ups (a ring's kick), the handler then need
 * not read it: one system call less per wake-up. */
#define VHU_LOOP_EDGE 0x20u

typedef void vhu_loop_cb(int fd, uint32_t events, void *opaque);

int vhu_loop_new(struct vhu_loop **out);
void vhu_loop_free(struct vhu_loop *loop);
int vhu_loop_add(struct vhu_loop *loop, int fd, uint32_t events, vhu_loop_cb *cb, void *opaque);
int vhu_loop_mod(struct vhu_loop *loop, int fd, uint32_t events);
int vhu_loop_del(struct vhu_loop *loop, int fd);
/* Run one round: wait up to timeout_ms (-1 forever) and dispatch. Returns callbacks run or -errno. */
int vhu_loop_run_once(struct vhu_loop *loop, int timeout_ms);
/* Run until vhu_loop_stop() (callable from a callback or a signal-driven eventfd handler). */
int vhu_loop_run(struct vhu_loop *loop);
void vhu_loop_stop(struct vhu_loop *loop);
int vhu_loop_fd(const struct vhu_loop *loop);

#endif
