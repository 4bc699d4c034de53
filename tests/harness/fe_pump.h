/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_TEST_FE_PUMP_H
#define VHU_TEST_FE_PUMP_H

/*
 * A frontend (the frontend library) on an AF_UNIX socket whose every wait — for a reply, for a
 * call — runs pump(opaque) instead of sleeping: for tests whose backend side (a device model, a
 * driver, their loop) runs on the test's own thread.
 */
#include "vhu/frontend.h"

/* Connect to path; *fd (optional) gets the socket, borrowed (it closes with the frontend). */
int vhu_test_fe_pump_connect(const char *path, void (*pump)(void *opaque), void *opaque,
                             struct vhu_fe **out, int *fd);

#endif
