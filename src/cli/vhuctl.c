/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vhuctl: drives vhost-user devices through the frontend library, with no VM.
 *
 *   vhuctl info --socket-path S                   (features and the device type)
 *   vhuctl rng read --socket-path S [--bytes N] [--chunk N] [--out FILE] [--hex]
 *   vhuctl blk verify|bench --socket-path S ...   (vhuctl_blk.c)
 *   vhuctl net send|recv|bench --socket-path S ... (vhuctl_net.c)
 *   vhuctl --control PATH device-add|device-remove|list|stats|log-level|blk-resize|call ...
 *                                                 (vhud's control socket: vhuctl_control.c)
 *
 * rng read, blk and net also take the ring options --packed, --queue-size N, --no-indirect
 * and --no-event-idx; vhuctl_common.c parses them for all.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "vhu/frontend.h"
#include "vhu/log.h"
#include "vhu/util.h"
#include "vhu/virtio.h"
#include "vhuctl_blk.h"
#include "vhuctl_common.h"
#include "vhuctl_control.h"
#include "vhuctl_net.h"

struct ctl_opts {
    struct vhuctl_ring_opts ring;
    uint64_t bytes;
    unsigned chunk;
    bool split_only;
    const char *out;
    bool hex;
    int verbose;
};

static void info_usage(FILE *f)
{
    fprintf(f,
            "info: what the backend offers: features, protocol features, the device type\n"
            "  vhuctl info --socket-path PATH\n");
}

static void rng_usage(FILE *f)
{
    fprintf(f,
            "rng read: entropy from a virtio-rng device\n"
            "  vhuctl rng read --socket-path PATH [--bytes N] [--chunk N] [--out FILE] [--hex]\n"
            "\n"
            "rng read options:\n"
            "  --bytes N        bytes to read (default 64)\n"
            "  --chunk N        bytes per request (default 4096)\n"
            "  --out FILE       write the bytes to FILE ('-' for stdout)\n"
            "  --hex            print the first 64 bytes in hex\n"
            "  -v, --verbose    library debug logging\n");
}

static const char exit_status[] =
    "\nexit status: 0 success, 1 failure (connection, device, a check), 2 usage error\n";

/* vhuctl --help: every command, grouped. */
static void usage(FILE *f)
{
    fprintf(f,
            "usage: vhuctl COMMAND [SUBCOMMAND] --socket-path PATH [options]\n"
            "       vhuctl --control PATH COMMAND [args]   a running vhud --control\n"
            "       vhuctl COMMAND --help   one command's help\n"
            "Drives a vhost-user backend as a VM's driver would, with no VM; or controls a\n"
            "running vhud through its control socket.\n"
            "\n");
    info_usage(f);
    fprintf(f, "\n");
    rng_usage(f);
    fprintf(f, "\n");
    vhuctl_blk_usage(f);
    fprintf(f, "\n");
    vhuctl_net_usage(f);
    vhuctl_ring_usage(f);
    fprintf(f, "\n");
    vhuctl_control_usage(f);
    fputs(exit_status, f);
}

/* vhuctl info|rng --help */
static void command_usage(FILE *f, void (*section)(FILE *f))
{
    section(f);
    vhuctl_ring_usage(f);
    fputs(exit_status, f);
}

static int parse_opts(int argc, char **argv, struct ctl_opts *o)
{
    static const struct option longopts[] = {
        VHUCTL_RING_LONGOPTS,
        {"bytes", required_argument, NULL, 'b'},
        {"chunk", required_argument, NULL, 'c'},
        {"out", required_argument, NULL, 'o'},
        {"hex", no_argument, NULL, 'x'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    int c, r;

    while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        r = vhuctl_ring_opt(&o->ring, c, optarg);
        if (r < 0)
            return r;
        if (r > 0)
            continue;
        switch (c) {
        case 'b':
            if (vhu_arg_uint(optarg, UINT64_MAX / 2, &o->bytes) < 0)
                goto bad;
            break;
        case 'c':
            if (vhu_arg_uint(optarg, 1 << 20, &v) < 0 || v == 0)
                goto bad;
            o->chunk = (unsigned)v;
            break;
        case 'o': o->out = optarg; break;
        case 'x': o->hex = true; break;
        case 'v': o->verbose++; break;
        case 'h': command_usage(stdout, o->ring.device ? rng_usage : info_usage); exit(0);
        default: return -EINVAL; /* getopt named the option: nothing follows its line */
        }
    }
    /* leftover arguments are ignored here, as they always were for info and rng read */
    return vhuctl_need_socket(&o->ring);
bad:
    return vhuctl_bad_value(argv);
}

struct bit_name {
    unsigned bit;
    const char *name;
};

static const struct bit_name virtio_bits[] = {
    {VHU_VIRTIO_RING_F_INDIRECT_DESC, "INDIRECT_DESC"}, {VHU_VIRTIO_RING_F_EVENT_IDX, "EVENT_IDX"},
    {30, "PROTOCOL_FEATURES"}, {VHU_VIRTIO_F_VERSION_1, "VERSION_1"},
    {VHU_VIRTIO_F_ACCESS_PLATFORM, "ACCESS_PLATFORM"}, {VHU_VIRTIO_F_RING_PACKED, "RING_PACKED"},
    {VHU_VIRTIO_F_IN_ORDER, "IN_ORDER"}, {VHU_VIRTIO_F_NOTIFICATION_DATA, "NOTIFICATION_DATA"},
};

/* vhost-user.rst protocol feature bits 0..23 */
static const char *const protocol_names[] = {
    "MQ", "LOG_SHMFD", "RARP", "REPLY_ACK", "NET_MTU", "BACKEND_REQ", "CROSS_ENDIAN",
    "CRYPTO_SESSION", "PAGEFAULT", "CONFIG", "BACKEND_SEND_FD", "HOST_NOTIFIER",
    "INFLIGHT_SHMFD", "RESET_DEVICE", "INBAND_NOTIFICATIONS", "CONFIGURE_MEM_SLOTS", "STATUS",
    "XEN_MMAP", "SHARED_OBJECT", "DEVICE_STATE", "GET_VRING_BASE_INFLIGHT", "GPA_ADDRESSES",
    "SHMEM", "GET_VRING_BASE_SKIP_DRAIN",
};

static void print_features(const char *what, uint64_t f, bool protocol)
{
    printf("%-22s 0x%016" PRIx64, what, f);
    for (unsigned b = 0; b < 64; b++) {
        const char *name = NULL;
        if (!vhu_has_feature(f, b))
            continue;
        if (protocol && b < VHU_ARRAY_SIZE(protocol_names))
            name = protocol_names[b];
        for (size_t i = 0; !protocol && i < VHU_ARRAY_SIZE(virtio_bits); i++)
            if (virtio_bits[i].bit == b)
                name = virtio_bits[i].name;
        if (name)
            printf(" %s", name);
        else
            printf(" bit%u", b);
    }
    printf("\n");
}

static int cmd_info(const struct ctl_opts *o)
{
    struct vhu_fe *fe;
    struct vhu_fe_opts fo = {.num_queues = 1, .queue_size = 64, .mem_size = 1 << 20,
                             .event_idx = true, .indirect = true};
    const char *type;
    int r = vhu_fe_connect(o->ring.socket_path, &fe);

    if (r < 0) {
        fprintf(stderr, "vhuctl: connect %s: %s\n", o->ring.socket_path, strerror(-r));
        return 1;
    }
    r = vhu_fe_start(fe, &fo);
    if (r < 0) {
        fprintf(stderr, "vhuctl: negotiation failed: %s\n", strerror(-r));
        vhu_fe_free(fe);
        return 1;
    }
    type = vhuctl_device_type(vhu_fe_backend_features(fe), vhu_fe_protocol_features(fe));
    printf("%-22s %s\n", "device type", type ? type : "unknown (by its feature bits)");
    print_features("backend features", vhu_fe_backend_features(fe), false);
    print_features("negotiated features", vhu_fe_features(fe), false);
    print_features("protocol features", vhu_fe_protocol_features(fe), true);
    vhu_fe_free(fe);
    return 0;
}

static int cmd_rng_read(const struct ctl_opts *o)
{
    const struct vhu_fe_opts fo = {.num_queues = 1, .mem_size = (size_t)8 << 20};
    struct vhu_fe *fe;
    FILE *out = NULL;
    uint8_t *buf, first[64];
    uint64_t gpa, got = 0, reqs = 0, t0;
    size_t nfirst = 0;
    int r = vhuctl_fe_open(&o->ring, &fo, "the device", &fe);

    if (r < 0)
        return 1;
    buf = vhu_fe_alloc(fe, o->chunk, 64, &gpa);
    if (!buf) {
        r = -ENOMEM;
        fprintf(stderr, "vhuctl: --chunk %u does not fit the shared memory\n", o->chunk);
        goto out;
    }
    if (o->out) {
        out = strcmp(o->out, "-") == 0 ? stdout : fopen(o->out, "wb");
        if (!out) {
            r = -errno;
            fprintf(stderr, "vhuctl: %s: %s\n", o->out, strerror(errno));
            goto out;
        }
    }
    t0 = vhu_now_ns();
    while (got < o->bytes) {
        uint64_t want = o->bytes - got < o->chunk ? o->bytes - got : o->chunk;
        struct vhu_vqd_seg seg = {.addr = gpa, .len = (uint32_t)want};

        r = vhu_fe_request(fe, 0, &seg, 0, 1, 5000);
        if (r < 0) {
            fprintf(stderr, "vhuctl: request failed: %s\n", strerror(-r));
            goto out;
        }
        if ((uint64_t)r > want) {
            fprintf(stderr, "vhuctl: device claims %d bytes written into a %" PRIu64
                    "-byte buffer\n", r, want);
            r = -EPROTO;
            goto out;
        }
        if (out && fwrite(buf, 1, (size_t)r, out) != (size_t)r) {
            r = -EIO;
            goto out;
        }
        while (nfirst < sizeof(first) && nfirst < got + (uint64_t)r) {
            first[nfirst] = buf[nfirst - got];
            nfirst++;
        }
        got += (uint64_t)r;
        reqs++;
        if (r == 0) {
            fprintf(stderr, "vhuctl: device returned an empty buffer\n");
            r = -EIO;
            goto out;
        }
    }
    double secs = (double)(vhu_now_ns() - t0) / 1e9;
    fprintf(out == stdout ? stderr : stdout,
            "rng: read %" PRIu64 " bytes in %" PRIu64 " requests over a %s ring of %u in %.3f s"
            " (%.1f MB/s)\n",
            got, reqs, o->ring.packed ? "packed" : "split", o->ring.queue_size, secs,
            secs > 0 ? (double)got / secs / 1e6 : 0.0);
    if (o->hex) {
        for (size_t i = 0; i < nfirst; i++)
            printf("%02x%s", first[i], (i % 32 == 31 || i + 1 == nfirst) ? "\n" : "");
    }
    r = 0;
out:
    if (out && out != stdout)
        fclose(out);
    vhu_fe_free(fe);
    return r < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    struct ctl_opts o = {.ring = {.queue_size = 256}, .bytes = 64, .chunk = 4096};
    const char *cmd = argc > 1 ? argv[1] : "";
    const char *sub = argc > 2 ? argv[2] : "";

    signal(SIGPIPE, SIG_IGN);
    if (strcmp(cmd, "--control") == 0) {
        if (argc < 3) {
            fprintf(stderr, "vhuctl: --control needs the socket PATH (vhuctl --help)\n");
            return 2;
        }
        return vhuctl_control_main(argv[2], argc - 3, argv + 3);
    }
    if (strncmp(cmd, "--control=", 10) == 0)
        return vhuctl_control_main(cmd + 10, argc - 2, argv + 2);
    if (strcmp(cmd, "info") == 0) {
        optind = 2;
        if (parse_opts(argc, argv, &o) < 0)
            return 2;
        vhu_log_set_sink(vhu_log_stderr_sink, NULL, o.verbose ? VHU_LOG_DEBUG : VHU_LOG_WARN);
        return cmd_info(&o);
    }
    if (strcmp(cmd, "rng") == 0 && (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0)) {
        command_usage(stdout, rng_usage);
        return 0;
    }
    if (strcmp(cmd, "rng") == 0 && strcmp(sub, "read") == 0) {
        o.ring.device = "rng";
        optind = 3;
        if (parse_opts(argc, argv, &o) < 0)
            return 2;
        vhu_log_set_sink(vhu_log_stderr_sink, NULL, o.verbose ? VHU_LOG_DEBUG : VHU_LOG_WARN);
        return cmd_rng_read(&o);
    }
    if (strcmp(cmd, "blk") == 0)
        return vhuctl_blk_main(argc - 1, argv + 1);
    if (strcmp(cmd, "net") == 0)
        return vhuctl_net_main(argc - 1, argv + 1);
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "rng") == 0)
        fprintf(stderr, "vhuctl rng: %s%s%s: read (vhuctl rng --help)\n",
                *sub ? "unknown subcommand '" : "no subcommand", sub, *sub ? "'" : "");
    else if (*cmd)
        fprintf(stderr, "vhuctl: unknown command '%s' (vhuctl --help)\n", cmd);
    else
        usage(stderr);
    return 2;
}
