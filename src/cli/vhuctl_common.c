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
        if (vhu_arg_size(arg, &v) < 0 || v == 0 || v > RING_MAX) {
            fprintf(stderr, "vhuctl: bad value '%s' for --queue-size (1..%u)\n", arg, RING_MAX);
            return -EINVAL;
        }
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

int vhuctl_bad_value(char *const *argv)
{
    /* "--opt VALUE": the option is the word before; "--opt=VALUE": the word up to '=' */
    const char *word = argv[optind - 1], *eq;
    int len;

    if (optarg == word && optind >= 2) {
        word = argv[optind - 2];
        len = (int)strlen(word);
    } else {
        eq = strchr(word, '=');
        len = eq ? (int)(eq - word) : (int)strlen(word);
    }
    fprintf(stderr, "vhuctl: bad value '%s' for %.*s\n", optarg, len, word);
    return -EINVAL;
}

/*
 * vhost-user has no message for the virtio device ID (GET_CONFIG needs a negotiated CONFIG
 * protocol feature and tells sizes apart at best), so the type is told by the device feature
 * bits: virtio-rng defines none, and has no config space (no CONFIG protocol feature, which
 * blk and net backends offer: a backend with neither is taken for rng only when its protocol
 * features were negotiated, else it is not told); virtio-net backends offer bits no virtio-blk backend does
 * (MRG_RXBUF 15, STATUS 16, CTRL_VQ 17, GUEST_ANNOUNCE 21, MQ 22: blk's 15..17 are LIFETIME,
 * SECURE_ERASE and ZONED, which vhost-user-blk backends do not offer); virtio-blk backends
 * offer some of SIZE_MAX 1, SEG_MAX 2, BLK_SIZE 6, FLUSH 9, TOPOLOGY 10, CONFIG_WCE 11,
 * DISCARD 13, WRITE_ZEROES 14 (VIRTIO 1.3 §5.1.3, §5.2.3).
 */
const char *vhuctl_device_type(uint64_t backend_features, uint64_t protocol_features)
{
    const uint64_t dev = backend_features & ((1ULL << 24) - 1);
    const uint64_t net_only = (1ULL << 15) | (1ULL << 16) | (1ULL << 17) | (1ULL << 21) |
                              (1ULL << 22);
    const uint64_t blk = (1ULL << 1) | (1ULL << 2) | (1ULL << 6) | (1ULL << 9) | (1ULL << 10) |
                         (1ULL << 11) | (1ULL << 13) | (1ULL << 14);

    if (dev == 0)
        return protocol_features && !(protocol_features & (1ULL << 9)) ? "rng" : NULL;
    if (dev & net_only)
        return "net";
    return dev & blk ? "blk" : NULL;
}

/*
 * A backend of another device type than the command drives: say which (-ENODEV), else 0.
 * "rng" is told by what a backend lacks, which a bare net device may lack too: it is final
 * for blk (which cannot work without a config space) and otherwise explains a failed start.
 */
static int check_device_type(const struct vhuctl_ring_opts *ro, const struct vhu_fe *fe,
                             bool started)
{
    uint64_t f = vhu_fe_backend_features(fe);
    const char *type = vhuctl_device_type(f, vhu_fe_protocol_features(fe));

    if (f == 0 || !ro->device || !type || strcmp(type, ro->device) == 0) /* 0: no GET_FEATURES */
        return 0;
    if (started && strcmp(type, "rng") == 0 && strcmp(ro->device, "blk") != 0)
        return 0;
    fprintf(stderr, "vhuctl: %s serves a%s %s device, not %s (told by the device feature bits "
            "it offers: 0x%06llx)\n", ro->socket_path, strcmp(type, "rng") ? "" : "n", type,
            ro->device, (unsigned long long)(f & ((1ULL << 24) - 1)));
    return -ENODEV;
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
    /* the features came first: a failure may be the wrong device type (more queues, say) */
    if (check_device_type(ro, *out, r == 0) < 0) {
        vhu_fe_free(*out);
        *out = NULL;
        return -ENODEV;
    }
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
