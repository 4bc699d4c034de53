/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHUD_SD_H
#define VHUD_SD_H

#include "vhu/loop.h"

/*
 * systemd integration of vhud (libsystemd; without it, built with -Dsystemd=disabled, every call
 * is a no-op and no socket is ever inherited):
 *  - socket activation (sd_listen_fds(3): LISTEN_FDS/LISTEN_PID, fds from 3 on);
 *  - readiness and shutdown for Type=notify (sd_notify(3): READY=1, STOPPING=1);
 *  - the watchdog: WATCHDOG=1 from the control loop every WATCHDOG_USEC / 2, so a control
 *    thread that stops turning is restarted by systemd.
 * None of it needs systemd as PID 1: only the environment variables of the protocols.
 */

/*
 * The socket systemd passed (the environment is cleared, so children inherit nothing): -1 when
 * the process is not socket-activated, the fd when it got exactly one stream socket, -2 after
 * printing why it cannot use what it got (prog names the command in the message).
 */
int vhud_sd_listen_fd(const char *prog);

/* Serving: READY=1 with STATUS=status, and the watchdog timer on loop when systemd asked for
 * one. 0 or -errno (the timer could not be set up; logged). */
int vhud_sd_ready(struct vhu_loop *loop, const char *status);

/* Shutting down: STOPPING=1, the watchdog timer removed from loop and closed. */
void vhud_sd_stopping(struct vhu_loop *loop);

#endif
