/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "vhuctl_common.h"

#define RING_MAX 32768 /* VIRTIO 1.3 §2.7: a packed ring holds at most 2^15 descriptors */

int vhuctl_ring_opt(struct vhuctl_ring_opts *ro, int c, const char *arg)
{
    uint64_t v;

    switch (c) {
    case VHUCTL_OPT_SOCKET_PATH: ro->socket_path = arg; return 1;
    case VHUCTL_OPT_PACKED: ro->packed = true; return 1;
    case VHUCTL_OPT_NO_INDIRECT: ro->no_indirect = true; return 1;
    case VHUCTL_OPT_NO_EVENT_IDX: ro->no_event_idx = true; return 1;
    case VHUCTL_OPT_QUEUE_SIZE:
        if (vhu_arg_size(arg, &v) < 0 || v == 0 || v > RING_MAX)
            return vhuctl_bad_value(arg);
        ro->queue_size = (unsigned)v;
        return 1;
    default: return 0;
    }
}

void vhuctl_ring_usage(FILE *f)
{
    fprintf(f,
            "\n"
            "connection and ring options (every command; info uses only --socket-path):\n"
            "  --socket-path PATH  the backend's vhost-user socket (required)\n"
            "  --queue-size N   ring size, 1..32768, K suffix taken (default 256)\n"
            "  --packed         packed rings (default split)\n"
            "  --no-indirect    do not negotiate indirect descriptors\n"
            "  --no-event-idx   do not negotiate EVENT_IDX\n");
}

int vhuctl_need_socket(const struct vhuctl_ring_opts *ro)
{
    if (!ro->socket_path) {
        fprintf(stderr, "vhuctl: --socket-path is required\n");
        return -EINVAL;
    }
    return 0;
}

int vhuctl_args_rest(int argc, char **argv, const struct vhuctl_ring_opts *ro)
{
    if (optind < argc) {
        fprintf(stderr, "vhuctl: unexpected argument '%s'\n", argv[optind]);
        return -EINVAL;
    }
    return vhuctl_need_socket(ro);
}

int vhuctl_bad_value(const char *arg)
{
    fprintf(stderr, "vhuctl: bad value '%s'\n", arg);
    return -EINVAL;
}

int vhuctl_arg_seconds(const char *s, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !(v > 0) || v > 86400)
        return -EINVAL;
    *out = v;
    return 0;
}

void vhuctl_ring_fe_opts(const struct vhuctl_ring_opts *ro, struct vhu_fe_opts *fo)
{
    fo->queue_size = (uint16_t)ro->queue_size;
    fo->packed = ro->packed;
    fo->event_idx = !ro->no_event_idx;
    fo->indirect = !ro->no_indirect;
}

int vhuctl_fe_open(const struct vhuctl_ring_opts *ro, const struct vhu_fe_opts *fo,
                   const char *what, struct vhu_fe **out)
{
    struct vhu_fe_opts ring = *fo;
    int r = vhu_fe_connect(ro->socket_path, out);

    if (r < 0) {
        *out = NULL;
        fprintf(stderr, "vhuctl: connect %s: %s\n", ro->socket_path, strerror(-r));
        return r;
    }
    vhuctl_ring_fe_opts(ro, &ring);
    r = vhu_fe_start(*out, &ring);
    if (r < 0) {
        fprintf(stderr, "vhuctl: cannot start %s: %s\n", what, strerror(-r));
        vhu_fe_free(*out);
        *out = NULL;
    }
    return r;
}

void vhuctl_fe_close(struct vhu_fe **fe)
{
    if (*fe) {
        vhu_fe_stop(*fe);
        vhu_fe_free(*fe);
    }
    *fe = NULL;
}
