/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vhud vvu: the virtio-vhost-user device as a process. It terminates a frontend VM's vhost-user
 * connection (the frontend connects to --socket-path, or listens there with --client) and
 * presents the VVU PCI device (src/vvu) to a backend driver over a bus:
 *   --vfio-user PATH   a vfio-user server on PATH (a host process with `--vvu vfio-user:PATH`,
 *                      or a QEMU >= 10.1 backend VM with -device vfio-user-pci,socket=PATH)
 *   --mpqemu-fd FD     QEMU 7.2's multi-process proxy: FD is our end of the socket whose other
 *                      end a backend VM's `-device x-pci-proxy-dev,fd=N` holds
 * It is not a device type of vhud's table: it serves no virtio device itself, it relays one.
 * Exit status as vhud's: 0 after SIGTERM/SIGINT, 1 runtime error, 2 usage error.
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
#include "proto/vvu.h"
#include "vhu/log.h"
#include "vhu/loop.h"
#include "vhu/util.h"
#include "vhud_sd.h"
#include "vhud_vvu.h"
#include "vvu/mpqemu.h"
#include "vvu/vfio_user_server.h"
#include "vvu/vvu_dev.h"

static void vvu_usage(FILE *f)
{
    fprintf(f,
            "usage: vhud vvu (--socket-path PATH | --fd FD) (--vfio-user PATH | --mpqemu-fd FD)\n"
            "                [options]\n"
            "\n"
            "A virtio-vhost-user device: a frontend's vhost-user session, relayed to a backend\n"
            "that drives this PCI device (vhud DEVICE --vvu ..., possibly inside another VM).\n"
            "\n"
            "frontend side:\n"
            "  --socket-path PATH   listen on PATH for the frontend (QEMU connects)\n"
            "  --fd FD              an inherited socket (listening or connected) instead\n"
            "  --client             connect to PATH instead (QEMU listens: server=on)\n"
            "  --reconnect-ms N     with --client: retry every N ms (default 1000)\n"
            "bus (exactly one):\n"
            "  --vfio-user PATH     serve the device as a vfio-user server on PATH\n"
            "  --mpqemu-fd FD       serve it to QEMU 7.2's x-pci-proxy-dev over the socket FD\n"
            "device:\n"
            "  --max-queues N       vhost vrings the backend may serve (doorbells and\n"
            "                       notifications; default %u, at most %u)\n"
            "  --shm-size SIZE      the shared-memory BAR window: a power of two, at least the\n"
            "                       frontend's memory (default 1G; K/M/G/T suffixes)\n"
            "  --pci-device-id ID   PCI device ID (default 0x%04x; drafts also used 0x1016)\n"
            "  --virtio-id N        virtio device ID (default %u)\n"
            "  -v, --verbose        debug logging\n"
            "  -h, --help           this text\n"
            "\n"
            "exit status: 0 after SIGTERM/SIGINT, 1 runtime error, 2 usage error\n",
            VVU_DEFAULT_VHOST_QUEUES, VVU_MAX_VHOST_QUEUES, VVU_PCI_DEVICE_ID,
            VVU_VIRTIO_DEVICE_ID);
}

struct vvu_daemon {
    struct vhu_loop *loop;
    struct vvu_dev *dev;
};

static void vvu_print_stats(const struct vvu_dev *dev)
{
    struct vvu_dev_stats st;

    vvu_dev_stats(dev, &st);
    vhu_info("vvu: frontend sessions=%llu msgs to driver=%llu to frontend=%llu kicks relayed=%llu"
             " dropped backend requests=%llu bad accesses=%llu",
             (unsigned long long)st.frontend_sessions, (unsigned long long)st.msgs_to_driver,
             (unsigned long long)st.msgs_to_frontend, (unsigned long long)st.kicks_relayed,
             (unsigned long long)st.dropped_backend_reqs, (unsigned long long)st.bad_accesses);
}

static void vvu_signal_cb(int fd, uint32_t events, void *opaque)
{
    struct vvu_daemon *d = opaque;
    struct signalfd_siginfo si;

    (void)events;
    if (read(fd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        return;
    if (si.ssi_signo == SIGUSR1) {
        vvu_print_stats(d->dev);
        return;
    }
    vhu_info("signal %u: shutting down", si.ssi_signo);
    vhu_loop_stop(d->loop);
}

static void vvu_bus_closed(void *opaque)
{
    struct vvu_daemon *d = opaque;

    vhu_info("vvu: the backend VM's QEMU closed the proxy socket: shutting down");
    vhu_loop_stop(d->loop);
}

/* A number option: 0, or -1 after saying which option is wrong. */
static int vvu_uint_opt(const char *name, const char *arg, uint64_t min, uint64_t max,
                        uint64_t *out)
{
    if (vhu_arg_uint(arg, max, out) < 0 || *out < min) {
        fprintf(stderr, "vhud vvu: bad --%s '%s' (%llu..%llu)\n", name, arg,
                (unsigned long long)min, (unsigned long long)max);
        return -1;
    }
    return 0;
}

int vhud_vvu_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"socket-path", required_argument, NULL, 's'},
        {"fd", required_argument, NULL, 'f'},
        {"client", no_argument, NULL, 'c'},
        {"reconnect-ms", required_argument, NULL, 'r'},
        {"vfio-user", required_argument, NULL, 'u'},
        {"mpqemu-fd", required_argument, NULL, 'm'},
        {"max-queues", required_argument, NULL, 'q'},
        {"shm-size", required_argument, NULL, 'S'},
        {"pci-device-id", required_argument, NULL, 'D'},
        {"virtio-id", required_argument, NULL, 'V'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct vvu_dev_opts o;
    const char *vfu_path = NULL;
    int mpqemu_fd = -1, verbose = 0, sfd = -1, c, r;
    struct vvu_daemon d = {0};
    struct vhu_vfu_server *vfu = NULL;
    struct vhu_mpqemu *mpq = NULL;
    uint64_t v;

    vvu_dev_opts_default(&o);
    o.reconnect_ms = 1000;
    optind = 2;
    while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        switch (c) {
        case 's': o.socket_path = optarg; break;
        case 'f':
            if (vvu_uint_opt("fd", optarg, 0, 1 << 20, &v) < 0)
                return 2;
            o.socket_fd = (int)v;
            break;
        case 'c': o.client = true; break;
        case 'r':
            if (vvu_uint_opt("reconnect-ms", optarg, 0, 3600000, &v) < 0)
                return 2;
            o.reconnect_ms = (unsigned)v;
            break;
        case 'u': vfu_path = optarg; break;
        case 'm':
            if (vvu_uint_opt("mpqemu-fd", optarg, 0, 1 << 20, &v) < 0)
                return 2;
            mpqemu_fd = (int)v;
            break;
        case 'q':
            if (vvu_uint_opt("max-queues", optarg, 1, VVU_MAX_VHOST_QUEUES, &v) < 0)
                return 2;
            o.max_vhost_queues = (unsigned)v;
            break;
        case 'S':
            if (vhu_arg_size(optarg, &v) < 0 || v < 4096 || (v & (v - 1)) != 0) {
                fprintf(stderr, "vhud vvu: bad --shm-size '%s' (a power of two, >= 4K)\n",
                        optarg);
                return 2;
            }
            o.shm_size = v;
            break;
        case 'D':
            if (vvu_uint_opt("pci-device-id", optarg, 1, 0xfffe, &v) < 0)
                return 2;
            o.pci_device_id = (uint16_t)v;
            break;
        case 'V':
            if (vvu_uint_opt("virtio-id", optarg, 1, 0xffff, &v) < 0)
                return 2;
            o.virtio_id = (uint16_t)v;
            break;
        case 'v': verbose++; break;
        case 'h': vvu_usage(stdout); return 0;
        default: return 2; /* getopt named the option: nothing follows its line */
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vhud vvu: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if ((o.socket_path == NULL) == (o.socket_fd < 0)) {
        fprintf(stderr, "vhud vvu: exactly one of --socket-path and --fd is required\n");
        return 2;
    }
    if (o.client && !o.socket_path) {
        fprintf(stderr, "vhud vvu: --client needs --socket-path\n");
        return 2;
    }
    if ((vfu_path == NULL) == (mpqemu_fd < 0)) {
        fprintf(stderr, "vhud vvu: exactly one of --vfio-user and --mpqemu-fd is required\n");
        return 2;
    }

    vhu_log_set_sink(vhu_log_stderr_sink, NULL, verbose ? VHU_LOG_DEBUG : VHU_LOG_INFO);
    r = vhud_loop_with_signals(&d.loop, vvu_signal_cb, &d, &sfd);
    if (r == 0)
        r = vvu_dev_new(d.loop, &o, &d.dev);
    if (r == 0 && vfu_path)
        r = vhu_vfu_server_new(d.loop, vvu_dev_pci(d.dev), vfu_path, &vfu);
    if (r == 0 && mpqemu_fd >= 0) {
        r = vhu_mpqemu_new(d.loop, vvu_dev_pci(d.dev), mpqemu_fd, &mpq);
        if (r == 0)
            vhu_mpqemu_set_on_close(mpq, vvu_bus_closed, &d);
    }
    if (r < 0) {
        fprintf(stderr, "vhud vvu: cannot start: %s\n", strerror(-r));
    } else {
        vhu_info("vvu device ready: frontend on %s%s, bus %s %s",
                 o.socket_path ? o.socket_path : "inherited fd", o.client ? " (client)" : "",
                 vfu_path ? "vfio-user" : "mpqemu", vfu_path ? vfu_path : "fd");
        r = vhud_sd_ready(d.loop, "serving a virtio-vhost-user device");
        if (r == 0)
            r = vhu_loop_run(d.loop);
        vvu_print_stats(d.dev);
        vhud_sd_stopping(d.loop);
    }
    /* The bus first (it holds the device's pcidev), then the device. */
    if (vfu)
        vhu_vfu_server_free(vfu);
    if (mpq)
        vhu_mpqemu_free(mpq);
    if (d.dev)
        vvu_dev_free(d.dev);
    if (d.loop)
        vhu_loop_free(d.loop);
    vhu_fd_close(&sfd);
    return r < 0 ? 1 : 0;
}
