/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#ifdef VHUD_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "vhu/log.h"
#include "vhu/util.h"
#include "vhud_sd.h"

#ifdef VHUD_HAVE_SYSTEMD

static int watchdog_fd = -1;

int vhud_sd_listen_fd(const char *prog)
{
    int n = sd_listen_fds(1);

    if (n == 0)
        return -1;
    if (n < 0) {
        fprintf(stderr, "%s: socket activation: %s\n", prog, strerror(-n));
        return -2;
    }
    if (n != 1) {
        fprintf(stderr, "%s: socket activation passed %d sockets; one vhost-user socket "
                        "expected (one ListenStream= in the .socket unit)\n", prog, n);
        return -2;
    }
    /* A listening socket (Accept=no) or a connected one (Accept=yes): vhu_unix serves both. */
    if (sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, -1, NULL, 0) <= 0) {
        fprintf(stderr, "%s: socket activation: fd %d is not a UNIX stream socket\n", prog,
                SD_LISTEN_FDS_START);
        return -2;
    }
    return SD_LISTEN_FDS_START;
}

static void watchdog_cb(int fd, uint32_t events, void *opaque)
{
    uint64_t expirations;

    (void)events;
    (void)opaque;
    if (read(fd, &expirations, sizeof(expirations)) == (ssize_t)sizeof(expirations))
        sd_notify(0, "WATCHDOG=1");
}

int vhud_sd_ready(struct vhu_loop *loop, const char *status)
{
    uint64_t usec = 0;
    struct itimerspec its = {{0}};
    int r;

    sd_notifyf(0, "READY=1\nSTATUS=%s", status);
    if (sd_watchdog_enabled(1, &usec) <= 0 || usec == 0)
        return 0;
    /* sd_watchdog_enabled(3): ping at half the interval. */
    usec /= 2;
    its.it_interval.tv_sec = (time_t)(usec / 1000000);
    its.it_interval.tv_nsec = (long)(usec % 1000000) * 1000;
    if (its.it_interval.tv_sec == 0 && its.it_interval.tv_nsec == 0)
        its.it_interval.tv_nsec = 1000;
    its.it_value = its.it_interval;
    watchdog_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (watchdog_fd < 0 || timerfd_settime(watchdog_fd, 0, &its, NULL) < 0) {
        r = -errno;
        vhu_fd_close(&watchdog_fd);
        vhu_err("systemd watchdog: cannot set up its timer: %s", strerror(-r));
        return r;
    }
    r = vhu_loop_add(loop, watchdog_fd, VHU_LOOP_IN, watchdog_cb, NULL);
    if (r < 0) {
        vhu_fd_close(&watchdog_fd);
        vhu_err("systemd watchdog: %s", strerror(-r));
        return r;
    }
    sd_notify(0, "WATCHDOG=1");
    return 0;
}

void vhud_sd_stopping(struct vhu_loop *loop)
{
    sd_notify(0, "STOPPING=1");
    if (watchdog_fd >= 0) {
        vhu_loop_del(loop, watchdog_fd);
        vhu_fd_close(&watchdog_fd);
    }
}

#else /* !VHUD_HAVE_SYSTEMD */

int vhud_sd_listen_fd(const char *prog)
{
    (void)prog;
    return -1;
}

int vhud_sd_ready(struct vhu_loop *loop, const char *status)
{
    (void)loop;
    (void)status;
    return 0;
}

void vhud_sd_stopping(struct vhu_loop *loop)
{
    (void)loop;
}

#endif
