/* SPDX-License-Identifier: BSD-3-Clause */
/* test_headers.c with the include order reversed: vhu's public headers, then the kernel's. */
#include "vhu/backend.h"
#include "vhu/dev/blk.h"
#include "vhu/dev/net.h"
#include "vhu/dev/rng.h"
#include "vhu/device.h"
#include "vhu/frontend.h"
#include "vhu/log.h"
#include "vhu/loop.h"
#include "vhu/loopback.h"
#include "vhu/mem.h"
#include "vhu/transport.h"
#include "vhu/util.h"
#include "vhu/virtio.h"
#include "vhu/vq.h"

#include <linux/vhost.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>

int vhu_headers_vhu_first(void);

int vhu_headers_vhu_first(void)
{
    /* Both spellings side by side. */
    struct vhu_vring_desc v = {0};
    struct vring_desc k = {0};

    return (int)(sizeof(v) + sizeof(k)) / 2;
}
