/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHUCTL_COMMON_H
#define VHUCTL_COMMON_H

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>

#include "vhu/frontend.h"

/* What the vhuctl commands (vhuctl.c, vhuctl_blk.c, vhuctl_net.c) share. Each prints its error. */

/*
 * The connection and ring options every command takes (info uses only the socket path). The
 * command sets its defaults (queue_size) before parsing; vhuctl_fe_open() applies the rest.
 */
struct vhuctl_ring_opts {
    const char *socket_path; /* --socket-path PATH (required) */
    unsigned queue_size;     /* --queue-size N, 1..32768 */
    bool packed;             /* --packed */
    bool no_indirect;        /* --no-indirect */
    bool no_event_idx;       /* --no-event-idx */
    const char *device;      /* the device type the command drives ("blk"): another is named */
};

/* getopt_long values of the ring options: above any character a command uses for its own. */
enum {
    VHUCTL_OPT_SOCKET_PATH = 0x100,
    VHUCTL_OPT_QUEUE_SIZE,
    VHUCTL_OPT_PACKED,
    VHUCTL_OPT_NO_INDIRECT,
    VHUCTL_OPT_NO_EVENT_IDX,
};

/* The ring options' entries for each command's struct option table. */
#define VHUCTL_RING_LONGOPTS                                              \
    {"socket-path", required_argument, NULL, VHUCTL_OPT_SOCKET_PATH},     \
    {"packed", no_argument, NULL, VHUCTL_OPT_PACKED},                     \
    {"queue-size", required_argument, NULL, VHUCTL_OPT_QUEUE_SIZE},       \
    {"no-indirect", no_argument, NULL, VHUCTL_OPT_NO_INDIRECT},           \
    {"no-event-idx", no_argument, NULL, VHUCTL_OPT_NO_EVENT_IDX}

/*
 * Called with each getopt_long() result before the command's own switch: 1 when c was a ring
 * option (taken into ro), 0 when it is not one, -EINVAL (printed) for a bad value.
 */
int vhuctl_ring_opt(struct vhuctl_ring_opts *ro, int c, const char *arg);
/* The ring options' lines of the usage text. */
void vhuctl_ring_usage(FILE *f);
/* Missing --socket-path: print it and return -EINVAL; else 0. */
int vhuctl_need_socket(const struct vhuctl_ring_opts *ro);
/* After getopt_long: refuse leftover arguments, then a missing --socket-path. 0 or -EINVAL. */
int vhuctl_args_rest(int argc, char **argv, const struct vhuctl_ring_opts *ro);
/* "bad value 'ARG' for --OPTION", the option as getopt_long just matched it in argv (optind,
 * optarg); returns -EINVAL. */
int vhuctl_bad_value(char *const *argv);
/*
 * The device type a backend serves ("rng", "blk", "net"), told by the device feature bits
 * (0..23) it offers and (rng: none, and no config space) the negotiated protocol features
 * (VHOST_USER_PROTOCOL_F_CONFIG, bit 9); NULL when they do not tell.
 */
const char *vhuctl_device_type(uint64_t backend_features, uint64_t protocol_features);
/* A duration in seconds, > 0 and at most a day. 0 or -EINVAL. */
int vhuctl_arg_seconds(const char *s, double *out);
/* fo's queue_size, packed, event_idx and indirect as ro says. */
void vhuctl_ring_fe_opts(const struct vhuctl_ring_opts *ro, struct vhu_fe_opts *fo);
/*
 * Connect to ro's socket and start the queues of fo with ro's ring (vhuctl_ring_fe_opts);
 * what names them in the error message.
 */
int vhuctl_fe_open(const struct vhuctl_ring_opts *ro, const struct vhu_fe_opts *fo,
                   const char *what, struct vhu_fe **out);
/* Stop the queues (GET_VRING_BASE) and free; *fe becomes NULL. */
void vhuctl_fe_close(struct vhu_fe **fe);

#endif
