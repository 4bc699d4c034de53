/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_DAEMON_VHUD_VVU_H
#define VHU_DAEMON_VHUD_VVU_H

/* `vhud vvu ...`: argv[1] is "vvu". Returns the process exit status (0, 1 runtime, 2 usage). */
int vhud_vvu_main(int argc, char **argv);

#include "vhu/loop.h"

/* Shared with vhud.c: block SIGTERM/SIGINT/SIGUSR1 into a signalfd served by cb on a new loop,
 * ignore SIGPIPE. 0 or -errno. */
int vhud_loop_with_signals(struct vhu_loop **loop, vhu_loop_cb *cb, void *opaque, int *sfd);

#endif
