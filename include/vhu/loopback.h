/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_LOOPBACK_H
#define VHU_LOOPBACK_H

#ifdef VHU_DEVICE_BUILD
#error "device models must not include transport headers"
#endif
#ifdef VHU_CORE_BUILD
#error "the device core must not include transport headers: transports call the core, not the other way"
#endif

#include "vhu/backend.h"
#include "vhu/transport.h"
#include "vhu/frontend.h"
#include "vhu/loop.h"

/*
 * In-process loopback transport: a frontend connected to backend b with no socket, in the same
 * thread. The frontend runs b's loop (kick eventfds) while it waits. vhu_fe_free() ends the
 * session. A protocol error ends the backend side; the frontend then sees -ECONNRESET.
 */
int vhu_loopback_connect(struct vhu_backend *b, struct vhu_loop *loop, struct vhu_fe **out);

#endif
