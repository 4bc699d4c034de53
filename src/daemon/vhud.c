/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vhud: serves one vhost-user device per process, following the "Backend program conventions"
 * of vhost-user.rst: --socket-path or --fd, --print-capabilities, no daemonizing, clean exit on
 * SIGTERM/SIGINT (the socket file is removed).
 *
 *   vhud rng --socket-path PATH [--client [--reconnect-ms N]] [--queue-size N] [-v]
 *   vhud net --socket-path PATH (--tap NAME | --reflect | --sink | --source SIZE) [--mac M] [--mtu N]
 *            [--queue-pairs N]
 *   vhud switch --port PATH --port PATH ...   (one net device per PATH, joined by an L2 switch)
 *
 * Net devices print their counters on SIGUSR1 and when vhud exits.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "args.h"
#include "proto/vhost_user.h"
#include "vhu/backend.h"
#include "vhu/dev/blk.h"
#include "vhu/dev/net.h"
#include "vhu/dev/rng.h"
#include "vhu/log.h"
#include "vhu/loop.h"
#include "vhu/transport.h"
#include "vhu/util.h"

struct daemon_opts {
    const char *socket_path;
    int fd;
    bool client;
    unsigned reconnect_ms;
    unsigned queue_size;
    bool no_mem_slots;
    unsigned workers;
    bool workers_set;
    unsigned poll_us;
    /* blk */
    const char *file;
    uint64_t null_size;
    bool read_only;
    bool direct;
    int engine;            /* enum vhu_blk_engine */
    bool writethrough;
    const char *serial;
    unsigned num_queues;
    unsigned blk_size;
    unsigned seg_max;
    /* net */
    int net_port;          /* enum vhu_net_port_kind, -1: not given */
    unsigned source_size;
    const char *tap_name;
    uint8_t mac[6];
    unsigned mtu;
    unsigned queue_pairs;
    const char *ports[VHU_NET_SWITCH_MAX_PORTS]; /* switch: one socket path per port */
    unsigned nports;
    struct vhu_net_switch *sw;
    int verbose;
};

/* One row per device type: how to build it from the common options. */
struct device_type {
    const char *name;
    const char *json_type; /* vhost-user.json VHostUserBackendType */
    const char *summary;
    int (*create)(const struct daemon_opts *o, struct vhu_device **out);
};

static int create_rng(const struct daemon_opts *o, struct vhu_device **out)
{
    struct vhu_rng_opts ro = {.max_queue_size = (uint16_t)o->queue_size};

    return vhu_rng_new(&ro, out);
}

static int create_blk(const struct daemon_opts *o, struct vhu_device **out)
{
    struct vhu_blk_opts bo = {
        .path = o->file,
        .null_size = o->null_size,
        .read_only = o->read_only,
        .direct = o->direct,
        .engine = (enum vhu_blk_engine)o->engine,
        .writethrough = o->writethrough,
        .serial = o->serial,
        .num_queues = (uint16_t)o->num_queues,
        .max_queue_size = (uint16_t)o->queue_size,
        .seg_max = o->seg_max,
        .blk_size = o->blk_size,
    };

    if ((o->file == NULL) == (o->null_size == 0)) {
        fprintf(stderr, "vhud blk: exactly one of --file and --null is required\n");
        return -EINVAL;
    }
    return vhu_blk_new(&bo, out);
}

static int create_net(const struct daemon_opts *o, struct vhu_device **out)
{
    struct vhu_net_opts no = {
        .port = (enum vhu_net_port_kind)o->net_port,
        .source_size = o->source_size,
        .tap_name = o->tap_name,
        .mtu = (uint16_t)o->mtu,
        .queue_pairs = (uint16_t)o->queue_pairs,
        .max_queue_size = (uint16_t)o->queue_size,
        .sw = o->sw,
    };

    if (o->sw)
        no.port = VHU_NET_PORT_SWITCH;
    else if (o->net_port < 0) {
        fprintf(stderr, "vhud net: one of --tap NAME, --reflect, --sink, --source SIZE is required\n");
        return -EINVAL;
    }
    memcpy(no.mac, o->mac, sizeof(no.mac));
    return vhu_net_new(&no, out);
}

/* On exit, net: one line per queue with its counters (tests read the GSO counts off them). */
static const struct device_type device_types[] = {
    {"rng", "rng", "virtio-rng: entropy from getrandom(2)", create_rng},
    {"blk", "block", "virtio-blk: a file or block device through io_uring, or --null", create_blk},
    {"net", "net", "virtio-net: rx/tx queue pairs to a port (tap, reflect, sink, source)", create_net},
    {"switch", "net", "virtio-net devices, one per --port PATH, joined by an L2 switch", create_net},
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vhud DEVICE (--socket-path PATH | --fd FD) [options]\n"
            "       vhud switch --port PATH --port PATH... [net options]\n"
            "       vhud DEVICE --print-capabilities\n"
            "\n"
            "devices:\n");
    for (size_t i = 0; i < VHU_ARRAY_SIZE(device_types); i++)
        fprintf(f, "  %-8s %s\n", device_types[i].name, device_types[i].summary);
    fprintf(f,
            "\n"
            "options:\n"
            "  --socket-path PATH   listen on PATH (the frontend connects)\n"
            "  --fd FD              serve an inherited socket (listening or connected)\n"
            "  --client             connect to PATH instead (the frontend listens)\n"
            "  --reconnect-ms N     with --client: retry every N ms after a disconnect\n"
            "  --queue-size N       largest ring accepted (default: rng, net 1024; blk 256)\n"
            "  --workers N          data-plane threads; queue i runs on worker i %% N\n"
            "                       (default 0: queues run on the control thread)\n"
            "  --poll-us N          workers busy-poll their rings for N us before sleeping\n"
            "  --no-mem-slots       do not offer CONFIGURE_MEM_SLOTS (QEMU 7.2 forgets the\n"
            "                       memory of a vhost-user-rng device when it reconnects)\n"
            "\n"
            "blk options:\n"
            "  --file PATH          backing file or block device\n"
            "  --null SIZE          no backing store, SIZE bytes (K/M/G suffixes; benchmarks)\n"
            "  --read-only          offer VIRTIO_BLK_F_RO and refuse writes\n"
            "  --direct             open the backing file with O_DIRECT\n"
            "  --engine E           auto (default) | io_uring | sync: auto takes sync, one\n"
            "                       system call per request on the queue's thread, for files\n"
            "                       in memory (tmpfs) without non-blocking reads, else io_uring\n"
            "  --writethrough       start with the write cache off (the guest may switch it)\n"
            "  --serial ID          GET_ID string (up to 20 bytes)\n"
            "  --num-queues N       request queues (default 1); blk defaults to --workers 1\n"
            "  --blk-size N         logical block size, 512 or 4096\n"
            "  --seg-max N          data segments per request (default 126)\n"
            "\n"
            "net options:\n"
            "  --tap NAME | --reflect | --sink | --source SIZE\n"
            "                       port: a Linux tap device | frames come back MAC-swapped |\n"
            "                       are counted and dropped | SIZE-byte frames fill every\n"
            "                       receive buffer\n"
            "  --mac XX:XX:XX:XX:XX:XX  (default: random, locally administered)\n"
            "  --mtu N              (default 1500)   --queue-pairs N   (default 1)\n"
            "\n"
            "switch options:\n"
            "  --port PATH          a net device listening on PATH (2 to %u of them); frames\n"
            "                       go from guest to guest with one copy; every port runs on\n"
            "                       one thread: the control thread, or with --workers 1 and/or\n"
            "                       --poll-us N one (busy-polling) worker\n"
            "\n"
            "  --print-capabilities print the vhost-user.json capabilities and exit\n"
            "  -v, --verbose        debug logging\n"
            "  -h, --help           this text\n",
            VHU_NET_SWITCH_MAX_PORTS);
}

/* One served device: vhud serves one, `vhud switch` one per port. */
struct served {
    const char *path;
    struct vhu_device *dev;
    struct vhu_backend *backend;
    struct vhu_unix *transport;
};

struct daemon {
    struct vhu_loop *loop;
    const struct daemon_opts *o;
    struct served *srv;
    unsigned n;
};

static void on_disconnect(void *opaque, int err)
{
    struct vhu_loop *loop = opaque;

    (void)err;
    vhu_loop_stop(loop); /* --fd with a connected socket: nothing more to serve */
}

/* Net counters, one line per device and direction (SIGUSR1 and exit). */
static void print_net_stats(const struct daemon *d)
{
    for (unsigned i = 0; i < d->n; i++) {
        const struct vhu_device *dev = d->srv[i].dev;
        struct vhu_net_stats t[2] = {{0}};

        if (!dev || dev->virtio_id != VHU_VIRTIO_ID_NET)
            continue;
        for (unsigned q = 0; q < dev->num_queues; q++) {
            struct vhu_net_stats st;
            if (vhu_net_get_stats(dev, q, &st) < 0)
                continue;
            t[q % 2].packets += st.packets;
            t[q % 2].bytes += st.bytes;
            t[q % 2].drops += st.drops;
            t[q % 2].errors += st.errors;
            t[q % 2].gso += st.gso;
        }
        vhu_info("net %s: rx packets=%llu bytes=%llu drops=%llu errors=%llu gso=%llu;"
                 " tx packets=%llu bytes=%llu drops=%llu errors=%llu gso=%llu",
                 d->srv[i].path ? d->srv[i].path : "fd", (unsigned long long)t[0].packets,
                 (unsigned long long)t[0].bytes, (unsigned long long)t[0].drops,
                 (unsigned long long)t[0].errors, (unsigned long long)t[0].gso,
                 (unsigned long long)t[1].packets, (unsigned long long)t[1].bytes,
                 (unsigned long long)t[1].drops, (unsigned long long)t[1].errors,
                 (unsigned long long)t[1].gso);
    }
    if (d->o->sw) {
        struct vhu_net_switch_stats st;
        vhu_net_switch_get_stats(d->o->sw, &st);
        vhu_info("switch: unicast=%llu flooded=%llu copies=%llu drops=%llu learned=%llu"
                 " fdb_flushes=%llu",
                 (unsigned long long)st.unicast, (unsigned long long)st.flooded,
                 (unsigned long long)st.copies, (unsigned long long)st.drops,
                 (unsigned long long)st.learned, (unsigned long long)st.fdb_flushes);
    }
}

static void signal_cb(int fd, uint32_t events, void *opaque)
{
    struct daemon *d = opaque;
    struct signalfd_siginfo si;

    (void)events;
    if (read(fd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        return;
    if (si.ssi_signo == SIGUSR1) {
        print_net_stats(d);
        return;
    }
    vhu_info("signal %u: shutting down", si.ssi_signo);
    vhu_loop_stop(d->loop);
}

/* Device, backend and transport of one served device. */
static int serve_one(struct daemon *d, const struct device_type *type, struct served *sv)
{
    const struct daemon_opts *o = d->o;
    unsigned workers = o->workers;
    int r = type->create(o, &sv->dev);

    if (r == 0) {
        r = vhu_backend_new(sv->dev, d->loop, &sv->backend);
        if (r < 0 && sv->dev->ops->destroy)
            sv->dev->ops->destroy(sv->dev);
        if (r < 0)
            sv->dev = NULL;
    }
    /* blk: queue work off the control thread unless told otherwise */
    if (!o->workers_set && strcmp(type->name, "blk") == 0)
        workers = 1;
    if (r == 0 && sv != d->srv && o->sw)
        r = vhu_backend_share_workers(sv->backend, d->srv[0].backend); /* one switch thread */
    else if (r == 0 && (workers || o->poll_us))
        r = vhu_backend_set_workers(sv->backend, workers ? workers : 1, o->poll_us);
    if (r == 0 && o->no_mem_slots)
        r = vhu_backend_limit_protocol_features(
            sv->backend, ~vhu_feature(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS));
    if (r == 0) {
        struct vhu_unix_opts uo = {
            .path = sv->path,
            .fd = sv->path ? -1 : o->fd,
            .client = o->client,
            .reconnect_ms = o->client ? o->reconnect_ms : 0,
        };
        r = vhu_unix_new(sv->backend, d->loop, &uo, &sv->transport);
        if (r == 0 && uo.fd >= 0 && vhu_unix_connected(sv->transport))
            vhu_unix_set_on_disconnect(sv->transport, on_disconnect, d->loop);
    }
    if (r < 0)
        fprintf(stderr, "vhud: cannot start %s on %s: %s\n", type->name,
                sv->path ? sv->path : "the given fd", strerror(-r));
    return r;
}

static void served_free(struct served *sv)
{
    vhu_unix_free(sv->transport);
    if (sv->backend)
        vhu_backend_free(sv->backend); /* destroys the device too */
    else if (sv->dev && sv->dev->ops->destroy)
        sv->dev->ops->destroy(sv->dev);
    *sv = (struct served){0};
}

/* An unsigned option value no larger than max (vhu_arg_uint into an unsigned). */
static int parse_uint(const char *s, unsigned max, unsigned *out)
{
    uint64_t v;
    int r = vhu_arg_uint(s, max, &v);

    if (r == 0)
        *out = (unsigned)v;
    return r;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"socket-path", required_argument, NULL, 's'},
        {"fd", required_argument, NULL, 'f'},
        {"client", no_argument, NULL, 'c'},
        {"reconnect-ms", required_argument, NULL, 'r'},
        {"queue-size", required_argument, NULL, 'q'},
        {"no-mem-slots", no_argument, NULL, 'm'},
        {"file", required_argument, NULL, 'F'},
        {"null", required_argument, NULL, 'N'},
        {"read-only", no_argument, NULL, 'R'},
        {"direct", no_argument, NULL, 'D'},
        {"engine", required_argument, NULL, 'E'},
        {"writethrough", no_argument, NULL, 'T'},
        {"serial", required_argument, NULL, 'S'},
        {"num-queues", required_argument, NULL, 'n'},
        {"blk-size", required_argument, NULL, 'B'},
        {"seg-max", required_argument, NULL, 'G'},
        {"workers", required_argument, NULL, 'w'},
        {"poll-us", required_argument, NULL, 'P'},
        {"reflect", no_argument, NULL, 1000},
        {"sink", no_argument, NULL, 1001},
        {"source", required_argument, NULL, 1002},
        {"mac", required_argument, NULL, 1003},
        {"mtu", required_argument, NULL, 1004},
        {"queue-pairs", required_argument, NULL, 1005},
        {"tap", required_argument, NULL, 1006},
        {"port", required_argument, NULL, 1007},
        {"print-capabilities", no_argument, NULL, 'p'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct daemon_opts o = {.fd = -1, .reconnect_ms = 1000, .queue_size = 0, .net_port = -1};
    const struct device_type *type = NULL;
    bool print_caps = false;
    struct daemon d = {0};
    sigset_t mask;
    int sfd = -1, c, r;
    unsigned v;

    if (argc < 2 || argv[1][0] == '-') {
        /* Capabilities are per device type: `vhud rng --print-capabilities`. */
        usage(argc >= 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr);
        return argc >= 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    for (size_t i = 0; i < VHU_ARRAY_SIZE(device_types); i++) {
        if (strcmp(argv[1], device_types[i].name) == 0)
            type = &device_types[i];
    }
    if (!type) {
        fprintf(stderr, "vhud: unknown device '%s'\n", argv[1]);
        usage(stderr);
        return 2;
    }
    optind = 2;
    while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        switch (c) {
        case 's': o.socket_path = optarg; break;
        case 'f':
            if (parse_uint(optarg, 1 << 20, &v) < 0) {
                fprintf(stderr, "vhud: bad --fd '%s'\n", optarg);
                return 2;
            }
            o.fd = (int)v;
            break;
        case 'c': o.client = true; break;
        case 'r':
            if (parse_uint(optarg, 3600000, &o.reconnect_ms) < 0) {
                fprintf(stderr, "vhud: bad --reconnect-ms '%s'\n", optarg);
                return 2;
            }
            break;
        case 'q':
            if (parse_uint(optarg, 32768, &o.queue_size) < 0 || o.queue_size == 0) {
                fprintf(stderr, "vhud: bad --queue-size '%s'\n", optarg);
                return 2;
            }
            break;
        case 'm': o.no_mem_slots = true; break;
        case 'w':
            if (parse_uint(optarg, 64, &o.workers) < 0) {
                fprintf(stderr, "vhud: bad --workers '%s' (0..64)\n", optarg);
                return 2;
            }
            o.workers_set = true;
            break;
        case 'F': o.file = optarg; break;
        case 'N':
            if (vhu_arg_size(optarg, &o.null_size) < 0 || o.null_size == 0) {
                fprintf(stderr, "vhud: bad --null size '%s'\n", optarg);
                return 2;
            }
            break;
        case 'R': o.read_only = true; break;
        case 'D': o.direct = true; break;
        case 'E':
            if (strcmp(optarg, "auto") == 0)
                o.engine = VHU_BLK_ENGINE_AUTO;
            else if (strcmp(optarg, "io_uring") == 0)
                o.engine = VHU_BLK_ENGINE_IO_URING;
            else if (strcmp(optarg, "sync") == 0)
                o.engine = VHU_BLK_ENGINE_SYNC;
            else {
                fprintf(stderr, "vhud: bad --engine '%s' (auto, io_uring or sync)\n", optarg);
                return 2;
            }
            break;
        case 'T': o.writethrough = true; break;
        case 'S': o.serial = optarg; break;
        case 'n':
            if (parse_uint(optarg, 256, &o.num_queues) < 0 || o.num_queues == 0) {
                fprintf(stderr, "vhud: bad --num-queues '%s' (1..256)\n", optarg);
                return 2;
            }
            break;
        case 'B':
            if (parse_uint(optarg, 4096, &o.blk_size) < 0) {
                fprintf(stderr, "vhud: bad --blk-size '%s'\n", optarg);
                return 2;
            }
            break;
        case 'G':
            if (parse_uint(optarg, 1022, &o.seg_max) < 0) {
                fprintf(stderr, "vhud: bad --seg-max '%s'\n", optarg);
                return 2;
            }
            break;
        case 'P':
            if (parse_uint(optarg, 1000000, &o.poll_us) < 0) {
                fprintf(stderr, "vhud: bad --poll-us '%s'\n", optarg);
                return 2;
            }
            break;
        case 1000: o.net_port = VHU_NET_PORT_REFLECT; break;
        case 1006:
            o.net_port = VHU_NET_PORT_TAP;
            o.tap_name = optarg;
            break;
        case 1001: o.net_port = VHU_NET_PORT_SINK; break;
        case 1002:
            if (parse_uint(optarg, 65535, &o.source_size) < 0) {
                fprintf(stderr, "vhud: bad --source size '%s'\n", optarg);
                return 2;
            }
            o.net_port = VHU_NET_PORT_SOURCE;
            break;
        case 1003:
            if (sscanf(optarg, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx%c", &o.mac[0], &o.mac[1],
                       &o.mac[2], &o.mac[3], &o.mac[4], &o.mac[5], &(char){0}) != 6) {
                fprintf(stderr, "vhud: bad --mac '%s'\n", optarg);
                return 2;
            }
            break;
        case 1004:
            if (parse_uint(optarg, 65535, &o.mtu) < 0) {
                fprintf(stderr, "vhud: bad --mtu '%s'\n", optarg);
                return 2;
            }
            break;
        case 1005:
            if (parse_uint(optarg, VHU_VIRTIO_NET_MAX_QUEUE_PAIRS, &o.queue_pairs) < 0 ||
                o.queue_pairs == 0) {
                fprintf(stderr, "vhud: bad --queue-pairs '%s' (1..%u)\n", optarg,
                        VHU_VIRTIO_NET_MAX_QUEUE_PAIRS);
                return 2;
            }
            break;
        case 1007:
            if (o.nports == VHU_NET_SWITCH_MAX_PORTS) {
                fprintf(stderr, "vhud: at most %u --port\n", VHU_NET_SWITCH_MAX_PORTS);
                return 2;
            }
            o.ports[o.nports++] = optarg;
            break;
        case 'p': print_caps = true; break;
        case 'v': o.verbose++; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (print_caps) {
        /* vhost-user.json: the type and the optional features this backend program has. */
        printf("{\n  \"type\": \"%s\",\n  \"features\": []\n}\n", type->json_type);
        return 0;
    }
    if (strcmp(type->name, "switch") == 0) {
        if (o.nports < 2 || o.socket_path || o.fd >= 0 || o.client || o.net_port >= 0) {
            fprintf(stderr, "vhud switch: needs --port PATH at least twice (and no "
                            "--socket-path, --fd, --client or net port option)\n");
            return 2;
        }
        if (o.workers > 1) {
            fprintf(stderr, "vhud switch: every port runs on one thread: --workers 0 or 1\n");
            return 2;
        }
    } else {
        if (o.nports) {
            fprintf(stderr, "vhud: --port is a switch option\n");
            return 2;
        }
        if ((o.socket_path == NULL) == (o.fd < 0)) {
            fprintf(stderr, "vhud: exactly one of --socket-path and --fd is required\n");
            return 2;
        }
        if (o.client && !o.socket_path) {
            fprintf(stderr, "vhud: --client needs --socket-path\n");
            return 2;
        }
    }

    vhu_log_set_sink(vhu_log_stderr_sink, NULL, o.verbose ? VHU_LOG_DEBUG : VHU_LOG_INFO);
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGUSR1);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    d.o = &o;
    d.n = o.nports ? o.nports : 1;
    d.srv = calloc(d.n, sizeof(*d.srv));
    r = d.srv ? vhu_loop_new(&d.loop) : -ENOMEM;
    if (r == 0) {
        sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        r = sfd < 0 ? -errno : vhu_loop_add(d.loop, sfd, VHU_LOOP_IN, signal_cb, &d);
    }
    if (r == 0 && o.nports)
        r = vhu_net_switch_new(&o.sw);
    if (r < 0)
        fprintf(stderr, "vhud: cannot start: %s\n", strerror(-r));
    for (unsigned i = 0; r == 0 && i < d.n; i++) {
        d.srv[i].path = o.nports ? o.ports[i] : o.socket_path;
        r = serve_one(&d, type, &d.srv[i]);
    }
    if (r == 0) {
        if (o.nports)
            vhu_info("switch ready: %u ports", o.nports);
        else
            vhu_info("%s device ready on %s%s", type->name,
                     o.socket_path ? o.socket_path : "inherited fd", o.client ? " (client)" : "");
        if (strcmp(type->name, "blk") == 0)
            vhu_info("blk: %s engine", vhu_blk_engine_name(d.srv[0].dev));
        r = vhu_loop_run(d.loop);
        print_net_stats(&d);
    }
    /* Every session first (a switch's ports write into each other's rings), then the devices,
     * port 0 last: it owns the workers the other ports share. */
    for (unsigned i = 0; d.srv && i < d.n; i++) {
        vhu_unix_free(d.srv[i].transport);
        d.srv[i].transport = NULL;
    }
    for (unsigned i = d.srv ? d.n : 0; i-- > 0;)
        served_free(&d.srv[i]);
    free(d.srv);
    vhu_net_switch_free(o.sw);
    if (d.loop)
        vhu_loop_free(d.loop);
    vhu_fd_close(&sfd);
    return r < 0 ? 1 : 0;
}
