/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vhuctl_common.h"

int vhuctl_args_rest(int argc, char **argv, const char *socket_path)
{
    if (optind < argc) {
        fprintf(stderr, "vhuctl: unexpected argument '%s'\n", argv[optind]);
        return -EINVAL;
    }
    if (!socket_path) {
        fprintf(stderr, "vhuctl: --socket-path is required\n");
        return -EINVAL;
    }
    return 0;
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

int vhuctl_fe_open(const char *path, const struct vhu_fe_opts *fo, const char *what,
                   struct vhu_fe **out)
{
    int r = vhu_fe_connect(path, out);

    if (r < 0) {
        *out = NULL;
        fprintf(stderr, "vhuctl: connect %s: %s\n", path, strerror(-r));
        return r;
    }
    r = vhu_fe_start(*out, fo);
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
