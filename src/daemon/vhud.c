/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vhud: serves one vhost-user device per process, following the "Backend program conventions"
 * of vhost-user.rst: --socket-path or --fd, --print-capabilities, no daemonizing, clean exit on
 * SIGTERM/SIGINT (the socket file is removed). Or through a virtio-vhost-user device instead of
 * a socket: --vvu vfio-user:PATH | pci:DDDD:BB:DD.F. Run as vhud-TYPE (the installed links the
 * vhost-user.json descriptors name) it is `vhud TYPE`. Under systemd (vhud_sd.c): the socket of
 * a .socket unit when no endpoint is given, Type=notify readiness, the watchdog.
 * Exit status: 0 after SIGTERM/SIGINT, 1 runtime error, 2 usage error (one line naming it).
 *
 *   vhud rng --socket-path PATH [--client [--reconnect-ms N]] [--queue-size N] [-v]
 *   vhud net --socket-path PATH (--tap NAME | --reflect | --sink | --source SIZE) [--mac M] [--mtu N]
 *            [--queue-pairs N]
 *   vhud switch --port PATH --port PATH ... [--learn N] [--age S]
 *            (one net device per PATH, joined by an L2 switch)
 *
 * Net devices print their counters on SIGUSR1 and when vhud exits.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
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
#include "vhud_ctl.h"
#include "vhud_report.h"
#include "vhud_sd.h"
#include "vhud_vvu.h"

/* The options every device type shares. */
struct daemon_opts {
    const char *socket_path;
    int fd;
    bool activated;         /* fd is the socket systemd passed (LISTEN_FDS) */
    const char *vvu;        /* --vvu SPEC: served through a virtio-vhost-user device */
    bool client;
    unsigned reconnect_ms;
    unsigned queue_size;
    bool no_mem_slots;
    unsigned workers;
    bool workers_set;
    unsigned poll_us;     /* --poll-us: a fixed window */
    unsigned poll_max_us; /* --poll-max-us: an adaptive one */
    bool poll_set;        /* either was given */
    int verbose;
};

/* One served device: vhud serves one, `vhud switch` one per port. */
struct served {
    const char *path;
    struct vhu_device *dev;
    struct vhu_backend *backend;
    struct vhu_unix *transport;
    struct vhu_vvu *vvu;
};

/* One device instance: a type, its options and what it serves (one device, or one per port
 * of a switch). The command line's, and those added over the control socket. */
struct instance {
    struct vhu_loop *loop;
    const struct daemon_opts *o; /* &opts */
    struct daemon_opts opts;
    const struct device_type *type;
    struct served *srv;
    unsigned n;
    void *priv;        /* the type's own (switch: its struct vhu_net_switch) */
    char *id;          /* its name on the control socket */
    char **args;       /* control socket: the option strings the options point into */
    unsigned nargs;
    const char **paths; /* the socket paths of a type with ports (copied) */
    struct instance *next;
};

/* Where usage errors go: stderr, or a control request's error reply (m_device_add()). */
static FILE *uerr;

/* A device type's own command-line option. Another type's option is refused by name
 * ("--tap is a net option"), not as an unknown one. */
struct type_option {
    const char *name;
    int has_arg;              /* no_argument or required_argument */
    int (*parse)(const char *arg); /* 0, or -1 after printing why (vhud exits 2) */
};

/* One row of device_types (see there how to add one). Every field but name, json_type, summary
 * and create may be left zero. */
struct device_type {
    const char *name;      /* vhud NAME */
    const char *json_type; /* vhost-user.json VHostUserBackendType, for --print-capabilities */
    /* vhost-user.json: the features member of its VHostUserBackendCapabilities branch (a
     * NULL-ended list), NULL when the schema gives the type no branch (no features member) */
    const char *const *caps_features;
    const char *summary;   /* its line in the --help device list */
    int (*create)(const struct instance *d, struct vhu_device **out);
    const struct type_option *options; /* its options, ended by an empty row */
    const struct type_option *more_options; /* another type's it takes too (switch: net's) */
    void (*help)(FILE *f);  /* its "NAME options:" section of `vhud NAME --help` */
    const char *synopsis;   /* an extra usage line of its own */
    unsigned queue_size;    /* the device's largest ring when --queue-size is not given, for
                             * --help (0: not listed) */
    unsigned workers;       /* --workers when not given */
    unsigned poll_max_us;   /* --poll-max-us when neither polling option is given */
    bool share_workers;     /* devices after the first run on the first one's workers */
    /* Checks after parsing (0, or -1 after printing why: vhud exits 2), after the common
     * ones: one of --socket-path, --fd and --vvu (or a socket from systemd), --client only
     * with --socket-path; a type with ports checks its endpoints itself. */
    int (*check)(const struct daemon_opts *o);
    /* The socket paths of the devices it serves (returns how many); NULL: one device on
     * --socket-path or --fd. */
    unsigned (*ports)(const char *const **paths);
    int (*setup)(struct instance *d);     /* before the devices are created: 0 or -errno */
    void (*teardown)(struct instance *d); /* after they are destroyed */
    void (*ready)(const struct instance *d); /* log that it serves; NULL: ready_line() */
    void (*stats)(const struct instance *d); /* counters, on SIGUSR1 and on exit */
};

/* Where the device is served, for the ready line and systemd's STATUS=. */
static const char *endpoint_name(const struct instance *d)
{
    if (d->type->ports)
        return "its ports";
    if (d->o->vvu)
        return d->o->vvu;
    if (d->o->socket_path)
        return d->o->socket_path;
    return d->o->activated ? "the socket systemd passed" : "inherited fd";
}

/* The one-device ready line ("rng device ready on PATH"). */
static void ready_line(const struct instance *d)
{
    vhu_info("%s device ready on %s%s%s", d->type->name, d->o->vvu ? "virtio-vhost-user " : "",
             endpoint_name(d), d->o->client ? " (client)" : "");
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

/* ---- rng ---- */

static int create_rng(const struct instance *d, struct vhu_device **out)
{
    struct vhu_rng_opts ro = {.max_queue_size = (uint16_t)d->o->queue_size};

    return vhu_rng_new(&ro, out);
}

/* ---- blk ---- */

static struct {
    const char *file;
    const char *file_opt; /* --file or --blk-file, for messages */
    uint64_t null_size;
    bool read_only;
    bool direct;
    int engine; /* enum vhu_blk_engine */
    bool writethrough;
    const char *serial;
    unsigned num_queues;
    unsigned blk_size;
    unsigned seg_max;
    const char *rbd, *ceph_conf, *ceph_id;
    const char *nbd;
    unsigned nbd_timeout_ms;
} blk;

static int create_blk(const struct instance *d, struct vhu_device **out)
{
    const struct daemon_opts *o = d->o;
    struct vhu_blk_opts bo = {
        .path = blk.file,
        .null_size = blk.null_size,
        .read_only = blk.read_only,
        .direct = blk.direct,
        .engine = (enum vhu_blk_engine)blk.engine,
        .writethrough = blk.writethrough,
        .serial = blk.serial,
        .num_queues = (uint16_t)blk.num_queues,
        .max_queue_size = (uint16_t)o->queue_size,
        .seg_max = blk.seg_max,
        .blk_size = blk.blk_size,
        .rbd = blk.rbd,
        .rbd_conf = blk.ceph_conf,
        .rbd_id = blk.ceph_id,
        .nbd_uri = blk.nbd,
        .nbd_timeout_ms = blk.nbd_timeout_ms,
    };

    return vhu_blk_new(&bo, out);
}

/* One backing store, named by the options given; the Ceph options only with --rbd. */
static int blk_check(const struct daemon_opts *o)
{
    const char *given[4];
    unsigned n = 0;

    if (blk.file)
        given[n++] = blk.file_opt;
    if (blk.nbd)
        given[n++] = "--nbd";
    if (blk.null_size)
        given[n++] = "--null";
    if (blk.rbd)
        given[n++] = "--rbd";
    if (n == 0) {
        fprintf(uerr, "vhud blk: no backing store: give --file PATH (or --blk-file PATH), "
                      "--nbd URI, --null SIZE or --rbd POOL/IMAGE\n");
        return -1;
    }
    if (n > 1) {
        fprintf(uerr, "vhud blk: %s and %s exclude each other (one backing store)\n",
                given[0], given[1]);
        return -1;
    }
    if (!blk.rbd && (blk.ceph_conf || blk.ceph_id)) {
        fprintf(uerr, "vhud blk: %s goes with --rbd\n", blk.ceph_conf ? "--ceph-conf" : "--id");
        return -1;
    }
    return 0;
}

static int blk_file(const char *arg)
{
    blk.file = arg;
    blk.file_opt = "--file";
    return 0;
}

/* vhost-user.rst "vhost-user-blk": the convention's name of --file (capability blk-file). */
static int blk_blk_file(const char *arg)
{
    blk.file = arg;
    blk.file_opt = "--blk-file";
    return 0;
}

static int blk_null(const char *arg)
{
    if (vhu_arg_size(arg, &blk.null_size) < 0 || blk.null_size == 0) {
        fprintf(uerr, "vhud: bad --null size '%s'\n", arg);
        return -1;
    }
    return 0;
}

static int blk_rbd(const char *arg)
{
    if (!vhu_blk_has_rbd()) {
        fprintf(uerr, "vhud: --rbd: this vhud is built without the RBD store (librbd-dev)\n");
        return -1;
    }
    blk.rbd = arg;
    return 0;
}

static int blk_ceph_conf(const char *arg)
{
    blk.ceph_conf = arg;
    return 0;
}

static int blk_ceph_id(const char *arg)
{
    blk.ceph_id = arg;
    return 0;
}

static int blk_read_only(const char *arg)
{
    blk.read_only = true;
    return 0;
}

static int blk_direct(const char *arg)
{
    blk.direct = true;
    return 0;
}

static int blk_engine(const char *arg)
{
    if (strcmp(arg, "auto") == 0)
        blk.engine = VHU_BLK_ENGINE_AUTO;
    else if (strcmp(arg, "io_uring") == 0)
        blk.engine = VHU_BLK_ENGINE_IO_URING;
    else if (strcmp(arg, "sync") == 0)
        blk.engine = VHU_BLK_ENGINE_SYNC;
    else {
        fprintf(uerr, "vhud: bad --engine '%s' (auto, io_uring or sync)\n", arg);
        return -1;
    }
    return 0;
}

static int blk_writethrough(const char *arg)
{
    blk.writethrough = true;
    return 0;
}

static int blk_serial(const char *arg)
{
    blk.serial = arg;
    return 0;
}

static int blk_num_queues(const char *arg)
{
    if (parse_uint(arg, 256, &blk.num_queues) < 0 || blk.num_queues == 0) {
        fprintf(uerr, "vhud: bad --num-queues '%s' (1..256)\n", arg);
        return -1;
    }
    return 0;
}

static int blk_blk_size(const char *arg)
{
    if (parse_uint(arg, 4096, &blk.blk_size) < 0) {
        fprintf(uerr, "vhud: bad --blk-size '%s'\n", arg);
        return -1;
    }
    return 0;
}

static int blk_seg_max(const char *arg)
{
    if (parse_uint(arg, 1022, &blk.seg_max) < 0) {
        fprintf(uerr, "vhud: bad --seg-max '%s'\n", arg);
        return -1;
    }
    return 0;
}

static int blk_nbd(const char *arg)
{
    blk.nbd = arg;
    return 0;
}

static int blk_nbd_timeout(const char *arg)
{
    if (parse_uint(arg, 86400, &blk.nbd_timeout_ms) < 0 || blk.nbd_timeout_ms == 0) {
        fprintf(uerr, "vhud: bad --nbd-timeout '%s' (seconds, 1..86400)\n", arg);
        return -1;
    }
    blk.nbd_timeout_ms *= 1000;
    return 0;
}

static const struct type_option blk_options[] = {
    {"nbd", required_argument, blk_nbd},
    {"nbd-timeout", required_argument, blk_nbd_timeout},
    {"file", required_argument, blk_file},
    {"blk-file", required_argument, blk_blk_file},
    {"null", required_argument, blk_null},
    {"rbd", required_argument, blk_rbd},
    {"ceph-conf", required_argument, blk_ceph_conf},
    {"id", required_argument, blk_ceph_id},
    {"read-only", no_argument, blk_read_only},
    {"direct", no_argument, blk_direct},
    {"engine", required_argument, blk_engine},
    {"writethrough", no_argument, blk_writethrough},
    {"serial", required_argument, blk_serial},
    {"num-queues", required_argument, blk_num_queues},
    {"blk-size", required_argument, blk_blk_size},
    {"seg-max", required_argument, blk_seg_max},
    {NULL, 0, NULL},
};

static void blk_help(FILE *f)
{
    fprintf(f,
            "  --file PATH          backing file or block device (--blk-file PATH: the same,\n"
            "                       as vhost-user.rst's backend conventions name it)\n"
            "  --nbd URI            an NBD export through libnbd: nbd://HOST[:PORT]/NAME or\n"
            "                       nbd+unix:///NAME?socket=PATH; size and read-only from the\n"
            "                       server; a connection per queue (more than one queue needs\n"
            "                       a server with multi-conn); reconnects when the server goes\n"
            "  --nbd-timeout S      NBD: fail a request with an I/O error once it has waited S\n"
            "                       seconds for the server to come back or answer (default 30)\n"
            "  --null SIZE          no backing store, SIZE bytes (K/M/G suffixes; benchmarks)\n"
            "  --rbd POOL/IMAGE     a Ceph RBD image through librbd (asynchronous); also\n"
            "                       POOL/NAMESPACE/IMAGE; IMAGE@SNAP serves a snapshot read-only%s\n"
            "  --ceph-conf PATH     ceph.conf for --rbd (default: $CEPH_CONF, /etc/ceph/ceph.conf)\n"
            "  --id NAME            Ceph client name for --rbd, without 'client.' (default admin)\n"
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
            "stores in this build: file (io_uring, sync), null, nbd%s\n",
            vhu_blk_has_rbd() ? "" : " (not in this build)", vhu_blk_has_rbd() ? ", rbd" : "");
}

static void blk_ready(const struct instance *d)
{
    ready_line(d);
    vhu_info("blk: %s engine", vhu_blk_engine_name(d->srv[0].dev));
}

/* ---- net ---- */

static struct {
    int port; /* enum vhu_net_port_kind, -1: not given */
    const char *port_opt; /* the option that gave it, for messages */
    unsigned source_size;
    const char *tap_name;
    uint8_t mac[6];
    unsigned mtu;
    unsigned queue_pairs;
} net = {.port = -1};

/* The options of a net device, but the port's kind. */
static void net_opts(const struct daemon_opts *o, struct vhu_net_opts *no)
{
    *no = (struct vhu_net_opts){
        .port = (enum vhu_net_port_kind)net.port,
        .source_size = net.source_size,
        .tap_name = net.tap_name,
        .mtu = (uint16_t)net.mtu,
        .queue_pairs = (uint16_t)net.queue_pairs,
        .max_queue_size = (uint16_t)o->queue_size,
    };
    memcpy(no->mac, net.mac, sizeof(no->mac));
}

static int create_net(const struct instance *d, struct vhu_device **out)
{
    struct vhu_net_opts no;

    net_opts(d->o, &no);
    return vhu_net_new(&no, out);
}

static int net_check(const struct daemon_opts *o)
{
    if (net.port < 0) {
        fprintf(uerr, "vhud net: no port: give --tap NAME, --reflect, --sink or --source SIZE\n");
        return -1;
    }
    return 0;
}

/* The port: one of --tap, --reflect, --sink, --source (given again: the last value wins). */
static int net_set_port(int kind, const char *opt)
{
    if (net.port >= 0 && strcmp(net.port_opt, opt) != 0) {
        fprintf(uerr, "vhud: %s and %s exclude each other (one port)\n", net.port_opt, opt);
        return -1;
    }
    net.port = kind;
    net.port_opt = opt;
    return 0;
}

static int net_reflect(const char *arg)
{
    return net_set_port(VHU_NET_PORT_REFLECT, "--reflect");
}

static int net_sink(const char *arg)
{
    return net_set_port(VHU_NET_PORT_SINK, "--sink");
}

static int net_source(const char *arg)
{
    if (parse_uint(arg, 65535, &net.source_size) < 0) {
        fprintf(uerr, "vhud: bad --source size '%s'\n", arg);
        return -1;
    }
    return net_set_port(VHU_NET_PORT_SOURCE, "--source");
}

static int net_mac(const char *arg)
{
    if (sscanf(arg, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx%c", &net.mac[0], &net.mac[1], &net.mac[2],
               &net.mac[3], &net.mac[4], &net.mac[5], &(char){0}) != 6) {
        fprintf(uerr, "vhud: bad --mac '%s'\n", arg);
        return -1;
    }
    return 0;
}

static int net_mtu(const char *arg)
{
    if (parse_uint(arg, 65535, &net.mtu) < 0) {
        fprintf(uerr, "vhud: bad --mtu '%s'\n", arg);
        return -1;
    }
    return 0;
}

static int net_queue_pairs(const char *arg)
{
    if (parse_uint(arg, VHU_VIRTIO_NET_MAX_QUEUE_PAIRS, &net.queue_pairs) < 0 ||
        net.queue_pairs == 0) {
        fprintf(uerr, "vhud: bad --queue-pairs '%s' (1..%u)\n", arg,
                VHU_VIRTIO_NET_MAX_QUEUE_PAIRS);
        return -1;
    }
    return 0;
}

static int net_tap(const char *arg)
{
    net.tap_name = arg;
    return net_set_port(VHU_NET_PORT_TAP, "--tap");
}

static const struct type_option net_options[] = {
    {"reflect", no_argument, net_reflect},
    {"sink", no_argument, net_sink},
    {"source", required_argument, net_source},
    {"mac", required_argument, net_mac},
    {"mtu", required_argument, net_mtu},
    {"queue-pairs", required_argument, net_queue_pairs},
    {"tap", required_argument, net_tap},
    {NULL, 0, NULL},
};

static void net_help(FILE *f)
{
    fprintf(f,
            "  --tap NAME | --reflect | --sink | --source SIZE\n"
            "                       port: a Linux tap device | frames come back MAC-swapped |\n"
            "                       are counted and dropped | SIZE-byte frames fill every\n"
            "                       receive buffer\n"
            "  --mac XX:XX:XX:XX:XX:XX  (default: random, locally administered)\n"
            "  --mtu N              (default 1500)   --queue-pairs N   (default 1)\n");
}

/* One line per device and direction (tests read the GSO counts off them). */
static void net_stats(const struct instance *d)
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
}

/* ---- switch: net devices, one per --port, joined by an L2 switch ---- */

static struct {
    const char *ports[VHU_NET_SWITCH_MAX_PORTS]; /* one socket path per port */
    unsigned nports;
    struct vhu_net_switch_opts opts;
} sw;

static int create_switch_port(const struct instance *d, struct vhu_device **out)
{
    struct vhu_net_opts no;

    net_opts(d->o, &no);
    no.port = VHU_NET_PORT_SWITCH;
    no.sw = d->priv;
    return vhu_net_new(&no, out);
}

static int switch_port(const char *arg)
{
    if (sw.nports == VHU_NET_SWITCH_MAX_PORTS) {
        fprintf(uerr, "vhud: at most %u --port\n", VHU_NET_SWITCH_MAX_PORTS);
        return -1;
    }
    sw.ports[sw.nports++] = arg;
    return 0;
}

static int switch_learn(const char *arg)
{
    unsigned v = 0;

    if (parse_uint(arg, VHU_NET_SWITCH_MAX_LEARN, &v) < 0) {
        fprintf(uerr, "vhud: bad --learn '%s' (0 to %u)\n", arg, VHU_NET_SWITCH_MAX_LEARN);
        return -1;
    }
    sw.opts.learn = v ? v : VHU_NET_SWITCH_LEARN_NONE;
    return 0;
}

static int switch_age(const char *arg)
{
    unsigned v = 0;

    if (parse_uint(arg, 86400, &v) < 0 || v == 0) {
        fprintf(uerr, "vhud: bad --age '%s' (1 to 86400 seconds)\n", arg);
        return -1;
    }
    sw.opts.age_seconds = v;
    return 0;
}

static const struct type_option switch_options[] = {
    {"port", required_argument, switch_port},
    {"learn", required_argument, switch_learn},
    {"age", required_argument, switch_age},
    {NULL, 0, NULL},
};

static void switch_help(FILE *f)
{
    fprintf(f,
            "  --port PATH          a net device listening on PATH (2 to %u of them); frames\n"
            "                       go from guest to guest with one copy; every port runs on\n"
            "                       one thread: the control thread, or with --workers 1 and/or\n"
            "                       --poll-us N / --poll-max-us N one (busy-polling) worker\n"
            "  --learn N            source addresses a port may use besides its device's MAC,\n"
            "                       learnt from its first frames (default 1: the MAC QEMU gives\n"
            "                       the guest; 0: only the device's; at most %u); frames from\n"
            "                       any other source (another port's, say) are dropped\n"
            "  --age SECONDS        a learnt address unused this long is forgotten (default 300)\n"
            "  --mtu N, --queue-pairs N  as for net, for every port (each port gets a random\n"
            "                       MAC; no --mac)\n",
            VHU_NET_SWITCH_MAX_PORTS, VHU_NET_SWITCH_MAX_LEARN);
}

static int switch_check(const struct daemon_opts *o)
{
    static const uint8_t no_mac[6];

    const char *stray = o->socket_path ? "--socket-path" : o->fd >= 0 ? "--fd"
                        : o->vvu ? "--vvu" : o->client ? "--client" : net.port_opt;

    if (stray) {
        fprintf(uerr, "vhud switch: %s does not apply: each port is a socket of its own "
                      "(--port PATH) joined to the switch\n", stray);
        return -1;
    }
    if (sw.nports < 2) {
        fprintf(uerr, "vhud switch: --port PATH is needed at least twice (%u given)\n",
                sw.nports);
        return -1;
    }
    if (memcmp(net.mac, no_mac, sizeof(no_mac)) != 0) {
        fprintf(uerr, "vhud switch: --mac would give every port one address (each port gets "
                      "a random one)\n");
        return -1;
    }
    if (o->workers > 1) {
        fprintf(uerr, "vhud switch: every port runs on one thread: --workers 0 or 1\n");
        return -1;
    }
    return 0;
}

static unsigned switch_ports(const char *const **paths)
{
    *paths = sw.ports;
    return sw.nports;
}

static int switch_setup(struct instance *d)
{
    struct vhu_net_switch *s;
    int r = vhu_net_switch_new_opts(&sw.opts, &s);

    if (r == 0)
        d->priv = s;
    return r;
}

static void switch_teardown(struct instance *d)
{
    vhu_net_switch_free(d->priv);
    d->priv = NULL;
}

static void switch_ready(const struct instance *d)
{
    vhu_info("switch ready: %u ports", d->n);
}

static void switch_stats(const struct instance *d)
{
    struct vhu_net_switch_stats st;

    net_stats(d);
    if (!d->priv)
        return;
    vhu_net_switch_get_stats(d->priv, &st);
    vhu_info("switch: unicast=%llu flooded=%llu copies=%llu drops=%llu learned=%llu"
             " spoofed=%llu aged=%llu fdb_full=%llu",
             (unsigned long long)st.unicast, (unsigned long long)st.flooded,
             (unsigned long long)st.copies, (unsigned long long)st.drops,
             (unsigned long long)st.learned, (unsigned long long)st.spoofed,
             (unsigned long long)st.aged, (unsigned long long)st.fdb_full);
}

/*
 * The device types, one row each; the code after the table names no device. Adding a type
 * ("console", say):
 *  1. #include its vhu/dev/ header (vhud links every device library) and write its create
 *     function: the common options (o->queue_size 0: the device's own default) and its own state;
 *  2. if it has options: a static struct for their values, one parse function per option, a
 *     type_option array, and a help function printing the lines of its "console options:";
 *  3. one row below: name, json_type (vhost-user.json), summary, create, and only what differs
 *     from the defaults: options/help, queue_size for --help, default workers, hooks (several
 *     devices: ports and share_workers; own checks, setup/teardown, ready line, counters).
 * usage(), option parsing, --print-capabilities, serving and shutdown then pick it up.
 */
static const char *const blk_caps[] = {"read-only", "blk-file", NULL};

static const struct device_type device_types[] = {
    {
        .name = "rng",
        .json_type = "rng",
        .summary = "virtio-rng: entropy from getrandom(2)",
        .create = create_rng,
        .queue_size = 1024,
    },
    {
        .name = "blk",
        .json_type = "block",
        .caps_features = blk_caps, /* vhost-user.json VHostUserBackendBlockFeature */
        .summary = "virtio-blk: a file or block device through io_uring, an NBD export, a Ceph RBD image, or --null",
        .create = create_blk,
        .options = blk_options,
        .help = blk_help,
        .check = blk_check,
        .queue_size = 256,
        .workers = 1, /* queue work off the control thread unless told otherwise */
        .poll_max_us = 32, /* adaptive, as QEMU's iothreads poll by default (32768 ns) */
        .ready = blk_ready,
    },
    {
        .name = "net",
        .json_type = "net",
        .summary = "virtio-net: rx/tx queue pairs to a port (tap, reflect, sink, source)",
        .create = create_net,
        .options = net_options,
        .help = net_help,
        .check = net_check,
        .queue_size = 1024,
        .workers = 1,      /* as blk: queue work off the control thread, */
        .poll_max_us = 32, /* polling adaptively (a reflect port is 10x what it is without) */
        .stats = net_stats,
    },
    {
        .name = "switch",
        .json_type = "net",
        .summary = "virtio-net devices, one per --port PATH, joined by an L2 switch",
        .create = create_switch_port,
        .options = switch_options,
        .more_options = net_options, /* --mac, --mtu, --queue-pairs */
        .help = switch_help,
        .synopsis = "vhud switch --port PATH --port PATH... [--learn N] [--age S] [net options]",
        .share_workers = true, /* one switch thread */
        .check = switch_check,
        .ports = switch_ports,
        .setup = switch_setup,
        .teardown = switch_teardown,
        .ready = switch_ready,
        .stats = switch_stats,
    },
};

/* ---- the daemon: no device named below ---- */

static char prog[40] = "vhud"; /* "vhud TYPE" (or "vhud-TYPE") in messages */

/* Errors the library logged: a start failure it explained needs no second line of ours. */
static unsigned logged_errors;

static void log_sink(enum vhu_log_level level, const char *msg, void *opaque)
{
    if (level == VHU_LOG_ERROR)
        __atomic_add_fetch(&logged_errors, 1, __ATOMIC_RELAXED);
    vhu_log_stderr_sink(level, msg, opaque);
}

static const struct device_type *type_by_name(const char *name)
{
    for (size_t i = 0; i < VHU_ARRAY_SIZE(device_types); i++) {
        if (strcmp(name, device_types[i].name) == 0)
            return &device_types[i];
    }
    return NULL;
}

/* Run as vhud-TYPE (the links the vhost-user.json descriptors name): `vhud TYPE`. */
static const struct device_type *type_by_argv0(const char *argv0)
{
    const char *base = strrchr(argv0, '/');

    base = base ? base + 1 : argv0;
    return strncmp(base, "vhud-", 5) == 0 ? type_by_name(base + 5) : NULL;
}

/* The --queue-size defaults of the device types, equal ones grouped: "rng, net 1024; blk 256". */
static void queue_size_defaults(FILE *f)
{
    const char *sep = " ";

    for (size_t i = 0; i < VHU_ARRAY_SIZE(device_types); i++) {
        unsigned qs = device_types[i].queue_size;
        bool listed = qs == 0;

        for (size_t j = 0; j < i && !listed; j++)
            listed = device_types[j].queue_size == qs;
        if (listed)
            continue;
        fputs(sep, f);
        sep = "; ";
        for (size_t j = i, n = 0; j < VHU_ARRAY_SIZE(device_types); j++) {
            if (device_types[j].queue_size == qs)
                fprintf(f, "%s%s", n++ ? ", " : "", device_types[j].name);
        }
        fprintf(f, " %u", qs);
    }
}

/* The options every device type takes (t NULL: vhud --help); a type with ports has no single
 * endpoint. */
static void common_help(FILE *f, const struct device_type *t)
{
    if (!t || !t->ports)
        fprintf(f,
                "  --socket-path PATH   listen on PATH (the frontend connects)\n"
                "  --fd FD              serve an inherited socket (listening or connected)\n"
                "  --vvu SPEC           serve through a virtio-vhost-user device instead of a\n"
                "                       socket: vfio-user:PATH (a `vhud vvu` device's vfio-user\n"
                "                       socket) or pci:DDDD:BB:DD.F (inside a VM, via sysfs; polled)\n"
                "                       [,shm=DDDD:BB:DD.F] (the window read through that\n"
                "                       function's BAR 2, e.g. ivshmem-plain on the same file)\n"
                "                       none of the three: the socket systemd passed (LISTEN_FDS)\n"
                "  --client             connect to PATH instead (the frontend listens)\n"
                "  --reconnect-ms N     with --client: retry every N ms after a disconnect\n");
    fprintf(f, "  --queue-size N       largest ring accepted (default:");
    if (t && t->queue_size)
        fprintf(f, " %u", t->queue_size);
    else
        queue_size_defaults(f);
    fprintf(f,
            ")\n"
            "  --workers N          data-plane threads; queue i runs on worker i %% N\n"
            "                       (default %u%s)\n"
            "  --poll-us N          workers busy-poll their rings for N us before sleeping\n"
            "  --poll-max-us N      workers busy-poll for an adaptive window of at most N us:\n"
            "                       it grows while the driver's requests arrive within it\n"
            "                       and closes while they do not (default %u%s)\n"
            "  --no-mem-slots       do not offer CONFIGURE_MEM_SLOTS (QEMU 7.2 forgets the\n"
            "                       memory of a vhost-user-rng device when it reconnects)\n"
            "  --control PATH       also serve a JSON-RPC control socket at PATH (this device's\n"
            "                       id there is its type's name)\n"
            "  --print-capabilities print the vhost-user.json capabilities and exit\n"
            "  -v, --verbose        debug logging\n"
            "  -h, --help           this text\n",
            t ? t->workers : 0, t && t->workers ? "" : ": queues run on the control thread",
            t ? t->poll_max_us : 0, t && t->poll_max_us ? " with workers" : ": no polling");
}

/* vhud --help: the devices and the common options. */
static void usage(FILE *f)
{
    fprintf(f, "usage: vhud DEVICE (--socket-path PATH | --fd FD | --vvu SPEC) [options]\n");
    for (size_t i = 0; i < VHU_ARRAY_SIZE(device_types); i++) {
        if (device_types[i].synopsis)
            fprintf(f, "       %s\n", device_types[i].synopsis);
    }
    fprintf(f,
            "       vhud DEVICE --print-capabilities\n"
            "       vhud DEVICE --help   the device's own options\n"
            "       vhud vvu (--socket-path PATH | --fd FD) (--vfio-user PATH | --mpqemu-fd FD)\n"
            "                  a virtio-vhost-user device (vhud vvu --help)\n"
            "       vhud --control PATH [-v]\n"
            "                  no device yet: they are added over the JSON-RPC control socket\n"
            "                  (vhuctl --control PATH device-add ...; vhud(8) CONTROL SOCKET)\n"
            "\n"
            "Serves one vhost-user device until SIGTERM; run as vhud-DEVICE (the links the\n"
            "vhost-user.json descriptors name) it is `vhud DEVICE`. With --control PATH, also\n"
            "the devices added at run time.\n"
            "\n"
            "devices:\n");
    for (size_t i = 0; i < VHU_ARRAY_SIZE(device_types); i++)
        fprintf(f, "  %-8s %s\n", device_types[i].name, device_types[i].summary);
    fprintf(f, "\ncommon options:\n");
    common_help(f, NULL);
    fprintf(f, "\nexit status: 0 after SIGTERM/SIGINT, 1 runtime error, 2 usage error\n");
}

/* vhud TYPE --help: that type's options and the common ones. */
static void type_usage(FILE *f, const struct device_type *t)
{
    if (t->synopsis)
        fprintf(f, "usage: %s\n", t->synopsis);
    else
        fprintf(f, "usage: vhud %s (--socket-path PATH | --fd FD | --vvu SPEC) [options]\n",
                t->name);
    fprintf(f, "       vhud %s --print-capabilities\n\n%s\n", t->name, t->summary);
    if (t->help) {
        fprintf(f, "\n%s options:\n", t->name);
        t->help(f);
    }
    fprintf(f, "\ncommon options:\n");
    common_help(f, t);
    fprintf(f, "\nexit status: 0 after SIGTERM/SIGINT, 1 runtime error, 2 usage error\n");
}

/* vhost-user.json VHostUserBackendCapabilities: the type, and the features member only for a
 * type whose union branch has one (block's VHostUserBackendCapabilitiesBlock). */
static void print_capabilities(const struct device_type *t)
{
    printf("{\n  \"type\": \"%s\"", t->json_type);
    if (t->caps_features) {
        printf(",\n  \"features\": [");
        for (size_t i = 0; t->caps_features[i]; i++)
            printf("%s\n    \"%s\"", i ? "," : "", t->caps_features[i]);
        printf("\n  ]");
    }
    printf("\n}\n");
}

static void on_disconnect(void *opaque, int err)
{
    struct vhu_loop *loop = opaque;

    (void)err;
    vhu_loop_stop(loop); /* --fd with a connected socket: nothing more to serve */
}

/* The daemon: its loop, the devices it serves, the control socket. */
static struct {
    struct vhu_loop *loop;
    struct instance *instances;
    struct vhud_ctl *ctl;
    enum vhu_log_level level;
} vhud;

static void signal_cb(int fd, uint32_t events, void *opaque)
{
    struct signalfd_siginfo si;

    (void)events;
    (void)opaque;
    if (read(fd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        return;
    if (si.ssi_signo == SIGUSR1) {
        for (struct instance *d = vhud.instances; d; d = d->next) {
            if (d->type->stats)
                d->type->stats(d);
        }
        return;
    }
    vhu_info("signal %u: shutting down", si.ssi_signo);
    vhu_loop_stop(vhud.loop);
}

/* Device, backend and transport of one served device. */
static int serve_one(struct instance *d, struct served *sv)
{
    const struct daemon_opts *o = d->o;
    const struct device_type *type = d->type;
    unsigned workers = o->workers_set ? o->workers : type->workers;
    unsigned poll_max_us = o->poll_set ? o->poll_max_us : workers ? type->poll_max_us : 0;
    unsigned errors = __atomic_load_n(&logged_errors, __ATOMIC_RELAXED);
    int r = type->create(d, &sv->dev);

    if (r < 0) {
        /* On stderr the device's own message names what is wrong (the file, the server, ...);
         * a control reply (uerr a memstream) does not carry the log, so it says it here. */
        if (uerr != stderr || __atomic_load_n(&logged_errors, __ATOMIC_RELAXED) == errors)
            fprintf(uerr, "%s: cannot create the device: %s\n", prog, strerror(-r));
        return r;
    }
    r = vhu_backend_new(sv->dev, d->loop, &sv->backend);
    if (r < 0) {
        if (sv->dev->ops->destroy)
            sv->dev->ops->destroy(sv->dev);
        sv->dev = NULL;
    }
    /* a device after the first of a type that shares workers runs on the first one's, polling
     * as they were set up */
    bool shares = sv != d->srv && type->share_workers;
    if (r == 0 && shares)
        r = vhu_backend_share_workers(sv->backend, d->srv[0].backend);
    else if (r == 0 && (workers || o->poll_us || poll_max_us))
        r = vhu_backend_set_workers(sv->backend, workers ? workers : 1, o->poll_us);
    if (r == 0 && poll_max_us && !shares)
        r = vhu_backend_set_poll(sv->backend, VHU_POLL_ADAPTIVE, poll_max_us);
    if (r == 0 && o->no_mem_slots)
        r = vhu_backend_limit_protocol_features(
            sv->backend, ~vhu_feature(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS));
    if (r == 0 && o->vvu) {
        r = vhu_vvu_new(sv->backend, d->loop, o->vvu, &sv->vvu);
    } else if (r == 0) {
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
        fprintf(uerr, "%s: cannot start on %s: %s\n", prog,
                o->vvu ? o->vvu : sv->path ? sv->path : "the given fd", strerror(-r));
    return r;
}

/* The session first: it stops the rings before the backend goes. */
static void served_stop(struct served *sv)
{
    vhu_unix_free(sv->transport);
    sv->transport = NULL;
    vhu_vvu_free(sv->vvu);
    sv->vvu = NULL;
}

static void served_free(struct served *sv)
{
    served_stop(sv);
    if (sv->backend)
        vhu_backend_free(sv->backend); /* destroys the device too */
    else if (sv->dev && sv->dev->ops->destroy)
        sv->dev->ops->destroy(sv->dev);
    *sv = (struct served){0};
}

/* Every session first (a switch's ports write into each other's rings), then the devices, the
 * first last: it owns the workers the others may share; then the type's own state. */
static void instance_free(struct instance *d)
{
    if (!d)
        return;
    for (unsigned i = 0; d->srv && i < d->n; i++)
        served_stop(&d->srv[i]);
    for (unsigned i = d->srv ? d->n : 0; i-- > 0;)
        served_free(&d->srv[i]);
    free(d->srv);
    if (d->priv && d->type->teardown)
        d->type->teardown(d);
    for (unsigned i = 0; i < d->nargs; i++)
        free(d->args[i]);
    free(d->args);
    free(d->paths);
    free(d->id);
    free(d);
}

/* Create and serve d's devices (its options parsed and checked): 0, or -errno after saying why
 * on uerr (d is then freed by the caller). */
static int instance_start(struct instance *d)
{
    const struct device_type *type = d->type;
    const char *const *paths = &d->opts.socket_path;
    int r = 0;

    d->o = &d->opts;
    d->loop = vhud.loop;
    if (type->ports) {
        /* the parser's table is reused by the next device: keep a copy */
        d->n = type->ports(&paths);
        d->paths = calloc(d->n, sizeof(*d->paths));
        if (!d->paths)
            return -ENOMEM;
        memcpy(d->paths, paths, d->n * sizeof(*paths));
        paths = d->paths;
    } else {
        d->n = 1;
    }
    d->srv = calloc(d->n, sizeof(*d->srv));
    if (!d->srv)
        r = -ENOMEM;
    if (r == 0 && type->setup)
        r = type->setup(d);
    if (r < 0)
        fprintf(uerr, "%s: cannot start: %s\n", prog, strerror(-r));
    for (unsigned i = 0; r == 0 && i < d->n; i++) {
        d->srv[i].path = paths[i];
        r = serve_one(d, &d->srv[i]);
    }
    if (r == 0 && type->ready)
        type->ready(d);
    else if (r == 0)
        ready_line(d);
    return r;
}

/* Every type's options are in getopt's table (val TYPE_OPT + index), so another type's option
 * is refused by name rather than as unknown. */
#define TYPE_OPT 1000
#define MAX_TYPE_OPTS 64

struct type_option_ref {
    const struct device_type *type;
    const struct type_option *opt;
};

/* Whether type takes opt: its own, or one of its more_options. */
static bool type_takes(const struct device_type *type, const struct type_option *opt)
{
    const struct type_option *tables[] = {type->options, type->more_options};

    for (size_t i = 0; i < VHU_ARRAY_SIZE(tables); i++) {
        for (const struct type_option *to = tables[i]; to && to->name; to++) {
            if (to == opt)
                return true;
        }
    }
    return false;
}

/* The common options before and after the devices' (the order getopt lists the candidates of
 * an ambiguous abbreviation in, such as --w or --p). */
static const struct option common_first[] = {
    {"socket-path", required_argument, NULL, 's'},
    {"fd", required_argument, NULL, 'f'},
    {"vvu", required_argument, NULL, 'V'},
    {"client", no_argument, NULL, 'c'},
    {"reconnect-ms", required_argument, NULL, 'r'},
    {"queue-size", required_argument, NULL, 'q'},
    {"no-mem-slots", no_argument, NULL, 'm'},
    {"poll-us", required_argument, NULL, 'P'},
    {"poll-max-us", required_argument, NULL, 'A'},
};
static const struct option common_last[] = {
    {"workers", required_argument, NULL, 'w'},
    {"print-capabilities", no_argument, NULL, 'p'},
    {"control", required_argument, NULL, 'C'},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
};

/* getopt's table: the common options and every type's (built once). */
static struct {
    struct option longopts[VHU_ARRAY_SIZE(common_first) + MAX_TYPE_OPTS +
                           VHU_ARRAY_SIZE(common_last) + 1];
    struct type_option_ref refs[MAX_TYPE_OPTS];
    size_t nrefs;
} opt_table;

static void opt_table_init(void)
{
    struct option *lo = opt_table.longopts;
    size_t n = 0;

    memcpy(lo, common_first, sizeof(common_first));
    lo += VHU_ARRAY_SIZE(common_first);
    for (size_t i = 0; i < VHU_ARRAY_SIZE(device_types); i++) {
        for (const struct type_option *to = device_types[i].options; to && to->name; to++) {
            if (n == MAX_TYPE_OPTS) {
                fprintf(stderr, "vhud: more than %d device options\n", MAX_TYPE_OPTS);
                exit(2);
            }
            opt_table.refs[n] = (struct type_option_ref){.type = &device_types[i], .opt = to};
            lo[n] = (struct option){to->name, to->has_arg, NULL, TYPE_OPT + (int)n};
            n++;
        }
    }
    memcpy(lo + n, common_last, sizeof(common_last));
    opt_table.nrefs = n;
}

/* After parsing: the endpoint (one of them, named when two are given), then the type's own. */
static int check_opts(const struct daemon_opts *o, const struct device_type *type)
{
    if (!type->ports) {
        const char *given[3];
        unsigned n = 0;

        if (o->socket_path)
            given[n++] = "--socket-path";
        if (o->fd >= 0)
            given[n++] = "--fd";
        if (o->vvu)
            given[n++] = "--vvu";
        if (n == 0) {
            fprintf(uerr, "%s: no endpoint: give --socket-path PATH, --fd FD or --vvu SPEC "
                          "(or start it socket-activated)\n", prog);
            return -1;
        }
        if (n > 1) {
            fprintf(uerr, "%s: %s and %s exclude each other\n", prog, given[0], given[1]);
            return -1;
        }
        if (o->client && !o->socket_path) {
            fprintf(uerr, "%s: --client needs --socket-path\n", prog);
            return -1;
        }
    }
    return type->check ? type->check(o) : 0;
}

/* A number option of the common ones: 0, or -1 after naming it. */
static int common_uint(const char *name, const char *arg, unsigned min, unsigned max,
                       unsigned *out)
{
    if (parse_uint(arg, max, out) < 0 || *out < min) {
        fprintf(uerr, "%s: bad --%s '%s' (%u..%u)\n", prog, name, arg, min, max);
        return -1;
    }
    return 0;
}

/* The parsers' state for the next device (the control socket adds several in one process). */
static void type_state_reset(void)
{
    memset(&blk, 0, sizeof(blk));
    memset(&net, 0, sizeof(net));
    net.port = -1;
    memset(&sw, 0, sizeof(sw));
}

enum { PARSE_OK, PARSE_EXIT, PARSE_USAGE };

/*
 * Options of a type from argv[optind..] (optind set by the caller) into o and the type's parser
 * state; --control into *control (NULL: not taken). PARSE_EXIT: --help or --print-capabilities
 * printed (exit 0); PARSE_USAGE: an error went to uerr (exit 2).
 */
static int parse_opts(int argc, char **argv, const struct device_type *type,
                      struct daemon_opts *o, const char **control)
{
    int c;
    unsigned v;

    /* getopt's own message names an unknown option or a missing value: nothing follows it */
    while ((c = getopt_long(argc, argv, "vh", opt_table.longopts, NULL)) != -1) {
        switch (c) {
        case 's': o->socket_path = optarg; break;
        case 'V': o->vvu = optarg; break;
        case 'f':
            if (common_uint("fd", optarg, 0, 1 << 20, &v) < 0)
                return PARSE_USAGE;
            o->fd = (int)v;
            break;
        case 'c': o->client = true; break;
        case 'r':
            if (common_uint("reconnect-ms", optarg, 0, 3600000, &o->reconnect_ms) < 0)
                return PARSE_USAGE;
            break;
        case 'q':
            if (common_uint("queue-size", optarg, 1, 32768, &o->queue_size) < 0)
                return PARSE_USAGE;
            break;
        case 'm': o->no_mem_slots = true; break;
        case 'w':
            if (common_uint("workers", optarg, 0, 64, &o->workers) < 0)
                return PARSE_USAGE;
            o->workers_set = true;
            break;
        case 'P':
        case 'A':
            if (o->poll_set) {
                fprintf(uerr, "%s: give one of --poll-us and --poll-max-us, once\n", prog);
                return PARSE_USAGE;
            }
            if (common_uint(c == 'P' ? "poll-us" : "poll-max-us", optarg, 0, VHU_POLL_MAX_US,
                            c == 'P' ? &o->poll_us : &o->poll_max_us) < 0)
                return PARSE_USAGE;
            o->poll_set = true;
            break;
        case 'C':
            if (!control) {
                fprintf(uerr, "%s: --control is vhud's, not a device's\n", prog);
                return PARSE_USAGE;
            }
            *control = optarg;
            break;
        case 'p': print_capabilities(type); return PARSE_EXIT; /* an abbreviation of it */
        case 'v': o->verbose++; break;
        case 'h': type_usage(stdout, type); return PARSE_EXIT;
        default:
            if (c < TYPE_OPT || c >= TYPE_OPT + (int)opt_table.nrefs)
                return PARSE_USAGE;
            if (!type_takes(type, opt_table.refs[c - TYPE_OPT].opt)) {
                fprintf(uerr, "%s: --%s is a %s option (%s --help lists %s's)\n", prog,
                        opt_table.refs[c - TYPE_OPT].opt->name,
                        opt_table.refs[c - TYPE_OPT].type->name, prog, type->name);
                return PARSE_USAGE;
            }
            if (opt_table.refs[c - TYPE_OPT].opt->parse(optarg) < 0)
                return PARSE_USAGE;
            break;
        }
    }
    if (optind < argc) {
        fprintf(uerr, "%s: unexpected argument '%s'\n", prog, argv[optind]);
        return PARSE_USAGE;
    }
    return PARSE_OK;
}

/* ---- the control socket's methods (vhud_ctl.c serves them) ---- */

#define MAX_INSTANCES 64
#define MAX_ID_LEN 64
#define MAX_ADD_ARGS 160

static struct instance *instance_find(const char *id)
{
    for (struct instance *d = vhud.instances; d; d = d->next) {
        if (strcmp(d->id, id) == 0)
            return d;
    }
    return NULL;
}

/* The "id" parameter naming an existing device. */
static struct instance *param_instance(struct json_object *params, struct vhud_ctl_error *e)
{
    const char *id = NULL;
    struct instance *d;

    if (vhud_ctl_param_string(params, "id", true, &id, e) < 0)
        return NULL;
    d = instance_find(id);
    if (!d)
        vhud_ctl_fail(e, VHUD_CTL_EFAIL, ENOENT, "no device '%.64s'", id);
    return d;
}

/* The options a device takes over the control socket: every option of its type, and the common
 * ones but --fd (a number in vhud's fd table means nothing to a client), --help,
 * --print-capabilities, --verbose (log-level) and --control. */
static const struct option *add_option(const struct device_type *type, const char *name)
{
    static const char *const refused[] = {"fd", "print-capabilities", "control", "verbose",
                                          "help"};

    for (const struct option *lo = opt_table.longopts; lo->name; lo++) {
        if (strcmp(lo->name, name) != 0)
            continue;
        if (lo->val >= TYPE_OPT)
            return type_takes(type, opt_table.refs[lo->val - TYPE_OPT].opt) ? lo : NULL;
        for (size_t i = 0; i < VHU_ARRAY_SIZE(refused); i++) {
            if (strcmp(refused[i], name) == 0)
                return NULL;
        }
        return lo;
    }
    return NULL;
}

static int add_arg(struct instance *d, struct vhud_ctl_error *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int add_arg(struct instance *d, struct vhud_ctl_error *e, const char *fmt, ...)
{
    va_list ap;
    char *s;
    int n;

    if (d->nargs == MAX_ADD_ARGS)
        return vhud_ctl_fail(e, VHUD_CTL_EPARAMS, E2BIG, "too many options");
    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        return vhud_ctl_fail(e, VHUD_CTL_EINTERNAL, ENOMEM, "out of memory");
    d->args[d->nargs++] = s;
    return 0;
}

/* One option value as the command line would give it: "--name" or "--name=VALUE". */
static int add_value(struct instance *d, const struct option *lo, struct json_object *v,
                     struct vhud_ctl_error *e)
{
    if (lo->has_arg == no_argument) {
        if (!json_object_is_type(v, json_type_boolean))
            return vhud_ctl_fail(e, VHUD_CTL_EPARAMS, EINVAL, "'%s' takes true or false",
                                 lo->name);
        return json_object_get_boolean(v) ? add_arg(d, e, "--%s", lo->name) : 0;
    }
    if (json_object_is_type(v, json_type_string))
        return add_arg(d, e, "--%s=%s", lo->name, json_object_get_string(v));
    if (json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0 &&
        json_object_get_uint64(v) < UINT64_MAX)
        return add_arg(d, e, "--%s=%llu", lo->name,
                       (unsigned long long)json_object_get_uint64(v));
    return vhud_ctl_fail(e, VHUD_CTL_EPARAMS, EINVAL,
                         "'%s' takes a string or a non-negative integer", lo->name);
}

/* The params of device-add as the argument vector of `vhud TYPE ...`. */
static int add_args(struct instance *d, struct json_object *params, struct vhud_ctl_error *e)
{
    d->args = calloc(MAX_ADD_ARGS, sizeof(*d->args));
    if (!d->args)
        return vhud_ctl_fail(e, VHUD_CTL_EINTERNAL, ENOMEM, "out of memory");
    if (add_arg(d, e, "%s", d->type->name) < 0)
        return -1;
    json_object_object_foreach(params, key, val) {
        const struct option *lo;

        if (strcmp(key, "id") == 0 || strcmp(key, "type") == 0)
            continue;
        lo = add_option(d->type, key);
        if (!lo)
            return vhud_ctl_fail(e, VHUD_CTL_EPARAMS, EINVAL, "%s takes no option '%.64s'",
                                 d->type->name, key);
        if (!json_object_is_type(val, json_type_array)) {
            if (add_value(d, lo, val, e) < 0)
                return -1;
            continue;
        }
        /* a repeated option (switch: port) */
        for (size_t i = 0; i < json_object_array_length(val); i++) {
            if (add_value(d, lo, json_object_array_get_idx(val, i), e) < 0)
                return -1;
        }
    }
    return 0;
}

/* An id is a name a shell and a log line take as is. */
static bool id_ok(const char *id)
{
    size_t n = strlen(id);

    if (n == 0 || n > MAX_ID_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

/* What the parser or the device said on uerr, as the reply's message. */
static int add_failed(struct vhud_ctl_error *e, int code, int err, char *text)
{
    size_t n = text ? strlen(text) : 0;

    while (n && text[n - 1] == '\n')
        text[--n] = '\0';
    return vhud_ctl_fail(e, code, err, "%s", n ? text : "device-add failed");
}

/* device-add {"id", "type", option: value...}: the options of `vhud TYPE`, by their long
 * names; flags take true/false, values strings or integers, a repeated option an array. */
static int m_device_add(void *opaque, struct json_object *params, struct json_object **result,
                        struct vhud_ctl_error *e)
{
    const char *id = NULL, *tname = NULL;
    const struct device_type *type;
    struct instance *d;
    char saved_prog[sizeof(prog)];
    char *text = NULL;
    size_t text_len = 0;
    unsigned count = 0;
    int r;

    (void)opaque;
    if (vhud_ctl_param_string(params, "id", true, &id, e) < 0 ||
        vhud_ctl_param_string(params, "type", true, &tname, e) < 0)
        return -1;
    if (!id_ok(id))
        return vhud_ctl_fail(e, VHUD_CTL_EPARAMS, EINVAL,
                             "id: 1 to %d characters of A-Z a-z 0-9 - _ .", MAX_ID_LEN);
    type = type_by_name(tname);
    if (!type)
        return vhud_ctl_fail(e, VHUD_CTL_EPARAMS, EINVAL, "unknown device type '%.32s'", tname);
    if (instance_find(id))
        return vhud_ctl_fail(e, VHUD_CTL_EFAIL, EEXIST, "device '%s' exists", id);
    for (d = vhud.instances; d; d = d->next)
        count++;
    if (count >= MAX_INSTANCES)
        return vhud_ctl_fail(e, VHUD_CTL_EFAIL, ENOSPC, "at most %d devices", MAX_INSTANCES);
    d = calloc(1, sizeof(*d));
    if (!d || !(d->id = strdup(id))) {
        free(d);
        return vhud_ctl_fail(e, VHUD_CTL_EINTERNAL, ENOMEM, "out of memory");
    }
    d->type = type;
    d->opts = (struct daemon_opts){.fd = -1, .reconnect_ms = 1000};
    if (add_args(d, params, e) < 0) {
        instance_free(d);
        return -1;
    }
    /* The command line's parser, its messages into the reply. */
    uerr = open_memstream(&text, &text_len);
    if (!uerr) {
        uerr = stderr;
        instance_free(d);
        return vhud_ctl_fail(e, VHUD_CTL_EINTERNAL, ENOMEM, "out of memory");
    }
    memcpy(saved_prog, prog, sizeof(prog));
    snprintf(prog, sizeof(prog), "%s", type->name);
    type_state_reset();
    optind = 0; /* glibc: start over */
    opterr = 0;
    r = parse_opts((int)d->nargs, d->args, type, &d->opts, NULL);
    if (r == PARSE_OK && check_opts(&d->opts, type) < 0)
        r = PARSE_USAGE;
    if (r == PARSE_OK && instance_start(d) < 0)
        r = -1;
    opterr = 1;
    memcpy(prog, saved_prog, sizeof(prog));
    fclose(uerr);
    uerr = stderr;
    if (r != PARSE_OK) {
        if (r == PARSE_USAGE && !text_len)
            add_failed(e, VHUD_CTL_EPARAMS, EINVAL, NULL);
        else
            add_failed(e, r == PARSE_USAGE ? VHUD_CTL_EPARAMS : VHUD_CTL_EFAIL,
                       r == PARSE_USAGE ? EINVAL : EIO, text);
        free(text);
        instance_free(d);
        return -1;
    }
    free(text);
    d->next = vhud.instances;
    vhud.instances = d;
    *result = json_object_new_object();
    json_object_object_add(*result, "id", json_object_new_string(d->id));
    json_object_object_add(*result, "type", json_object_new_string(type->name));
    return 0;
}

static int m_device_remove(void *opaque, struct json_object *params, struct json_object **result,
                           struct vhud_ctl_error *e)
{
    static const char *const names[] = {"id", NULL};
    struct instance *d;

    (void)opaque;
    if (vhud_ctl_param_only(params, names, e) < 0 || !(d = param_instance(params, e)))
        return -1;
    for (struct instance **p = &vhud.instances; *p; p = &(*p)->next) {
        if (*p == d) {
            *p = d->next;
            break;
        }
    }
    *result = json_object_new_object();
    json_object_object_add(*result, "id", json_object_new_string(d->id));
    vhu_info("%s %s removed", d->type->name, d->id);
    instance_free(d);
    return 0;
}

/* One device: id, type and a report per served port (one, or a switch's). */
static struct json_object *instance_report(const struct instance *d, bool stats)
{
    struct json_object *o = json_object_new_object();
    struct json_object *ports = json_object_new_array();

    json_object_object_add(o, "id", json_object_new_string(d->id));
    json_object_object_add(o, "type", json_object_new_string(d->type->name));
    for (unsigned i = 0; i < d->n; i++) {
        const struct served *sv = &d->srv[i];
        bool up = sv->transport ? vhu_unix_connected(sv->transport)
                  : sv->vvu     ? vhu_vvu_frontend_up(sv->vvu)
                                : false;

        json_object_array_add(ports, vhud_report_port(sv->path ? sv->path : endpoint_name(d),
                                                      up, sv->backend, stats));
    }
    json_object_object_add(o, "ports", ports);
    if (d->type->ports && d->priv && stats) {
        struct vhu_net_switch_stats st;
        struct json_object *s = json_object_new_object();

        vhu_net_switch_get_stats(d->priv, &st);
        json_object_object_add(s, "unicast", json_object_new_uint64(st.unicast));
        json_object_object_add(s, "flooded", json_object_new_uint64(st.flooded));
        json_object_object_add(s, "drops", json_object_new_uint64(st.drops));
        json_object_object_add(s, "spoofed", json_object_new_uint64(st.spoofed));
        json_object_object_add(s, "learned", json_object_new_uint64(st.learned));
        json_object_object_add(o, "switch", s);
    }
    return o;
}

/* device-list / stats {["id"]}: every device, or the one named. */
static int report(struct json_object *params, struct json_object **result,
                  struct vhud_ctl_error *e, bool stats)
{
    static const char *const names[] = {"id", NULL};
    struct json_object *list;
    const struct instance *one = NULL;

    if (vhud_ctl_param_only(params, names, e) < 0)
        return -1;
    if (json_object_object_get_ex(params, "id", NULL) && !(one = param_instance(params, e)))
        return -1;
    list = json_object_new_array();
    for (const struct instance *d = vhud.instances; d; d = d->next) {
        if (!one || d == one)
            json_object_array_add(list, instance_report(d, stats));
    }
    *result = json_object_new_object();
    json_object_object_add(*result, "devices", list);
    return 0;
}

static int m_device_list(void *opaque, struct json_object *params, struct json_object **result,
                         struct vhud_ctl_error *e)
{
    (void)opaque;
    return report(params, result, e, false);
}

static int m_stats(void *opaque, struct json_object *params, struct json_object **result,
                   struct vhud_ctl_error *e)
{
    (void)opaque;
    return report(params, result, e, true);
}

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* log-level {["level"]}: set it (error, warn, info, debug); answers the level in force. */
static int m_log_level(void *opaque, struct json_object *params, struct json_object **result,
                       struct vhud_ctl_error *e)
{
    static const char *const names[] = {"level", NULL};
    const char *level = NULL;

    (void)opaque;
    if (vhud_ctl_param_only(params, names, e) < 0 ||
        vhud_ctl_param_string(params, "level", false, &level, e) < 0)
        return -1;
    if (level) {
        size_t i = 0;

        while (i < VHU_ARRAY_SIZE(level_names) && strcmp(level_names[i], level) != 0)
            i++;
        if (i == VHU_ARRAY_SIZE(level_names))
            return vhud_ctl_fail(e, VHUD_CTL_EPARAMS, EINVAL,
                                 "level: error, warn, info or debug");
        vhud.level = (enum vhu_log_level)i;
        vhu_log_set_sink(log_sink, NULL, vhud.level);
    }
    *result = json_object_new_object();
    json_object_object_add(*result, "level", json_object_new_string(level_names[vhud.level]));
    return 0;
}

/* blk-resize {"id", "size"}: size in bytes, or a string with a K/M/G/T suffix. Grow only. */
static int m_blk_resize(void *opaque, struct json_object *params, struct json_object **result,
                        struct vhud_ctl_error *e)
{
    static const char *const names[] = {"id", "size", NULL};
    struct json_object *v;
    const char *why = NULL;
    struct instance *d;
    uint64_t size = 0;
    int r;

    (void)opaque;
    if (vhud_ctl_param_only(params, names, e) < 0 || !(d = param_instance(params, e)))
        return -1;
    if (d->type->create != create_blk)
        return vhud_ctl_fail(e, VHUD_CTL_EFAIL, ENOTSUP, "'%s' is a %s device, not blk",
                             d->id, d->type->name);
    if (json_object_object_get_ex(params, "size", &v) && json_object_is_type(v, json_type_string)) {
        if (vhu_arg_size(json_object_get_string(v), &size) < 0)
            return vhud_ctl_fail(e, VHUD_CTL_EPARAMS, EINVAL, "bad size '%.32s'",
                                 json_object_get_string(v));
    } else if (vhud_ctl_param_u64(params, "size", true, INT64_MAX, &size, e) < 0) {
        return -1;
    }
    r = vhu_blk_resize(d->srv[0].dev, size);
    if (r == -EINVAL)
        return vhud_ctl_fail(e, VHUD_CTL_EFAIL, EINVAL,
                             "size %llu: not a multiple of the block size, or smaller than "
                             "the disk (%llu bytes; it only grows)", (unsigned long long)size,
                             (unsigned long long)vhu_blk_capacity(d->srv[0].dev) * 512);
    if (r < 0)
        return vhud_ctl_fail(e, VHUD_CTL_EFAIL, -r, "resize to %llu bytes: %s",
                             (unsigned long long)size, strerror(-r));
    r = vhu_backend_config_changed(d->srv[0].backend);
    if (r == -ENOTCONN)
        why = "no driver connected (the next one reads the new size)";
    else if (r == -ENOTSUP)
        why = "the frontend negotiated no backend channel with CONFIG (BACKEND_REQ)";
    else if (r < 0)
        why = strerror(-r);
    if (why)
        vhu_warn("blk %s resized; the driver was not told: %s", d->id, why);
    *result = json_object_new_object();
    json_object_object_add(*result, "id", json_object_new_string(d->id));
    json_object_object_add(*result, "size",
                           json_object_new_uint64(vhu_blk_capacity(d->srv[0].dev) * 512));
    json_object_object_add(*result, "notified", json_object_new_boolean(r == 0));
    if (why)
        json_object_object_add(*result, "reason", json_object_new_string(why));
    return 0;
}

static const struct vhud_ctl_method control_methods[] = {
    {"device-add", m_device_add},
    {"device-remove", m_device_remove},
    {"device-list", m_device_list},
    {"stats", m_stats},
    {"log-level", m_log_level},
    {"blk-resize", m_blk_resize},
    {NULL, NULL},
};

/* Blocks the signals a vhud process handles (SIGTERM, SIGINT, SIGUSR1: read from a signalfd
 * that cb serves on the loop), ignores SIGPIPE and makes the loop. vhud vvu uses it too. */
int vhud_loop_with_signals(struct vhu_loop **loop, vhu_loop_cb *cb, void *opaque, int *sfd)
{
    sigset_t mask;
    int r;

    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGUSR1);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    r = vhu_loop_new(loop);
    if (r == 0) {
        *sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        r = *sfd < 0 ? -errno : vhu_loop_add(*loop, *sfd, VHU_LOOP_IN, cb, opaque);
    }
    return r;
}

/* `vhud --control PATH [-v]`: a daemon with no device yet. */
static int parse_empty(int argc, char **argv, const char **control, int *verbose)
{
    static const struct option lo[] = {
        {"control", required_argument, NULL, 'C'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    while ((c = getopt_long(argc, argv, "vh", lo, NULL)) != -1) {
        switch (c) {
        case 'C': *control = optarg; break;
        case 'v': (*verbose)++; break;
        case 'h': usage(stdout); return PARSE_EXIT;
        default: return PARSE_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vhud: unexpected argument '%s' (devices come first: vhud DEVICE ... "
                        "--control PATH)\n", argv[optind]);
        return PARSE_USAGE;
    }
    return PARSE_OK;
}

int main(int argc, char **argv)
{
    const struct device_type *type = type_by_argv0(argv[0]);
    struct instance *d = NULL;
    const char *control = NULL;
    char status[160];
    int first = 1, sfd = -1, r, verbose = 0;

    uerr = stderr;
    opt_table_init();
    if (!type) {
        const char *arg = argc >= 2 ? argv[1] : NULL;

        /* Not a device type: the virtio-vhost-user device relays a frontend to another backend. */
        if (arg && strcmp(arg, "vvu") == 0)
            return vhud_vvu_main(argc, argv);
        if (arg && (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)) {
            usage(stdout);
            return 0;
        }
        if (!arg) {
            usage(stderr);
            return 2;
        }
        if (strncmp(arg, "--control", 9) == 0 || strcmp(arg, "-v") == 0 ||
            strcmp(arg, "--verbose") == 0) {
            r = parse_empty(argc, argv, &control, &verbose);
            if (r != PARSE_OK)
                return r == PARSE_EXIT ? 0 : 2;
            if (!control) {
                fprintf(stderr, "vhud: give a device (vhud DEVICE ...) or --control PATH\n");
                return 2;
            }
        } else if (arg[0] == '-') {
            /* Capabilities and options are per device type: `vhud rng --print-capabilities`. */
            fprintf(stderr, "vhud: the device comes first: vhud DEVICE %s ... (vhud --help)\n",
                    arg);
            return 2;
        } else {
            type = type_by_name(arg);
            if (!type) {
                fprintf(stderr, "vhud: unknown device '%s' (vhud --help lists them)\n", arg);
                return 2;
            }
            first = 2;
            snprintf(prog, sizeof(prog), "vhud %s", type->name);
        }
    } else {
        snprintf(prog, sizeof(prog), "vhud-%s", type->name);
    }
    if (type) {
        /* vhost-user.rst: with --print-capabilities every other option is ignored. */
        for (int i = first; i < argc && strcmp(argv[i], "--") != 0; i++) {
            if (strcmp(argv[i], "--print-capabilities") == 0) {
                print_capabilities(type);
                return 0;
            }
        }
        d = calloc(1, sizeof(*d));
        if (!d)
            return 1;
        d->type = type;
        d->opts = (struct daemon_opts){.fd = -1, .reconnect_ms = 1000};
        optind = first;
        r = parse_opts(argc, argv, type, &d->opts, &control);
        if (r == PARSE_OK && !type->ports && !d->opts.socket_path && d->opts.fd < 0 &&
            !d->opts.vvu) {
            /* No endpoint given: systemd's socket (a .socket unit), if any. */
            d->opts.fd = vhud_sd_listen_fd(prog);
            if (d->opts.fd == -2) {
                free(d);
                return 1;
            }
            d->opts.activated = d->opts.fd >= 0;
        }
        if (r == PARSE_OK && check_opts(&d->opts, type) < 0)
            r = PARSE_USAGE;
        if (r != PARSE_OK) {
            free(d);
            return r == PARSE_EXIT ? 0 : 2;
        }
        verbose = d->opts.verbose;
        d->id = strdup(type->name);
        if (!d->id) {
            free(d);
            return 1;
        }
    }

    vhud.level = verbose ? VHU_LOG_DEBUG : VHU_LOG_INFO;
    vhu_log_set_sink(log_sink, NULL, vhud.level);
    r = vhud_loop_with_signals(&vhud.loop, signal_cb, NULL, &sfd);
    if (r < 0)
        fprintf(stderr, "%s: cannot start: %s\n", prog, strerror(-r));
    if (r == 0 && d) {
        r = instance_start(d);
        if (r == 0) {
            vhud.instances = d;
            d = NULL;
        }
    }
    if (r == 0 && control) {
        r = vhud_ctl_new(vhud.loop, control, control_methods, NULL, &vhud.ctl);
        if (r < 0)
            fprintf(stderr, "%s: cannot listen on --control %s: %s\n", prog, control,
                    strerror(-r));
        else
            vhu_info("control socket ready on %s", control);
    }
    if (r == 0) {
        if (vhud.instances)
            snprintf(status, sizeof(status), "serving %s on %s", vhud.instances->type->name,
                     endpoint_name(vhud.instances));
        else
            snprintf(status, sizeof(status), "control socket %s", control);
        r = vhud_sd_ready(vhud.loop, status);
    }
    if (r == 0) {
        r = vhu_loop_run(vhud.loop);
        for (struct instance *i = vhud.instances; i; i = i->next) {
            if (i->type->stats)
                i->type->stats(i);
        }
    }
    if (vhud.loop)
        vhud_sd_stopping(vhud.loop);
    vhud_ctl_free(vhud.ctl);
    instance_free(d);
    while (vhud.instances) {
        struct instance *i = vhud.instances;

        vhud.instances = i->next;
        instance_free(i);
    }
    if (vhud.loop)
        vhu_loop_free(vhud.loop);
    vhu_fd_close(&sfd);
    return r < 0 ? 1 : 0;
}
