/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHUCTL_COMMON_H
#define VHUCTL_COMMON_H

#include "vhu/frontend.h"

/* What the vhuctl device commands (vhuctl_blk.c, vhuctl_net.c) share. Each prints its error. */

/* After getopt_long: refuse leftover arguments and a missing --socket-path. 0 or -EINVAL. */
int vhuctl_args_rest(int argc, char **argv, const char *socket_path);
/* "bad value" for an option argument; returns -EINVAL. */
int vhuctl_bad_value(const char *arg);
/* A duration in seconds, > 0 and at most a day. 0 or -EINVAL. */
int vhuctl_arg_seconds(const char *s, double *out);
/* Connect to path and start the queues of fo; what names them in the error message. */
int vhuctl_fe_open(const char *path, const struct vhu_fe_opts *fo, const char *what,
                   struct vhu_fe **out);
/* Stop the queues (GET_VRING_BASE) and free; *fe becomes NULL. */
void vhuctl_fe_close(struct vhu_fe **fe);

#endif
