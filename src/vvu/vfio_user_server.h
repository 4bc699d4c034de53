/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_VVU_VFIO_USER_SERVER_H
#define VHU_VVU_VFIO_USER_SERVER_H

/*
 * A vfio-user server (QEMU docs/interop/vfio-user.rst, protocol 0.1) for one emulated PCI function
 * (vvu/pcidev.h): QEMU's vfio-user-pci device, or vhu's own driver (transport/vvu/
 * pci_vfio_user.c), reaches the function over an AF_UNIX socket.
 *
 * One client at a time: while one is connected the listening socket is not watched, so the next
 * client waits in the backlog and is served once the first leaves. A client leaving resets the
 * function (ops->reset), withdraws its DMA memory (ops->set_dma(NULL)) and closes every fd it
 * gave. Every message is checked before the function sees it; a bad one gets an error reply (a
 * message that cannot be framed ends the connection), never more.
 *
 * Everything runs on `loop`'s thread, the function's too.
 */
#include "vhu/loop.h"
#include "vvu/pcidev.h"

struct vhu_vfu_server;

/*
 * Listen on path (a stale socket there is replaced; anything else that exists is refused, never
 * removed) and serve pd. Sets pd->bus_ops / pd->bus. pd must outlive the server.
 */
int vhu_vfu_server_new(struct vhu_loop *loop, struct vhu_pcidev *pd, const char *path,
                       struct vhu_vfu_server **out);
/* Disconnect the client (as if it left), stop listening, remove our socket file. NULL: nothing. */
void vhu_vfu_server_free(struct vhu_vfu_server *s);
/* A client is connected. */
bool vhu_vfu_server_connected(const struct vhu_vfu_server *s);

#endif
