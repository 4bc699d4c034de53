/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vfio-user messages over a connected AF_UNIX stream socket. Receiving is resumable and never
 * blocks (an event loop serves a peer that dribbles a message without waiting for it); the fds
 * of a message come with its first byte only, as the vhost-user codec requires too.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "proto/vfio_user.h"
#include "util/sock.h"
#include "vhu/util.h"

#define SEND_TIMEOUT_MS 1000

_Static_assert(VFU_MAX_FDS <= VHU_SOCK_MAX_FDS, "socket helper takes VFU_MAX_FDS");

void vfu_rx_init(struct vfu_rx *rx, uint8_t *buf, size_t cap)
{
    rx->buf = buf;
    rx->cap = cap;
    rx->got = 0;
    rx->nfds = 0;
    for (unsigned i = 0; i < VFU_MAX_FDS; i++)
        rx->fds[i] = -1;
}

void vfu_rx_reset(struct vfu_rx *rx)
{
    for (unsigned i = 0; i < rx->nfds; i++)
        vhu_fd_close(&rx->fds[i]);
    rx->nfds = 0;
    rx->got = 0;
}

static int rx_fail(struct vfu_rx *rx, int err)
{
    vfu_rx_reset(rx);
    return err;
}

int vfu_recv_step(int sock, struct vfu_rx *rx)
{
    const size_t hdr = sizeof(struct vfu_hdr);

    if (rx->got == 0)
        vfu_rx_reset(rx); /* the previous message's fds were the caller's to take */
    for (;;) {
        size_t want;
        if (rx->got < hdr) {
            want = hdr - rx->got;
        } else {
            uint32_t size = vfu_rx_hdr(rx)->size;
            /* Refuse before reading on: the rest of the stream cannot be framed. */
            if (size < hdr)
                return rx_fail(rx, -EBADMSG);
            if (size > rx->cap)
                return rx_fail(rx, -EMSGSIZE);
            want = size - rx->got;
        }
        if (want == 0) {
            rx->got = 0; /* whole: fds and buffer are the caller's until the next call */
            return 0;
        }
        unsigned had = rx->nfds;
        ssize_t n = vhu_sock_recv_fds(sock, rx->buf + rx->got, want, rx->fds, VFU_MAX_FDS,
                                      &rx->nfds);
        if (n == -EAGAIN)
            return -EAGAIN; /* the partial message and its fds stay in rx */
        if (n == -ECONNRESET && rx->got)
            n = -EPIPE;
        if (n > 0 && rx->nfds != had && rx->got)
            n = -EBADMSG;
        if (n < 0)
            return rx_fail(rx, (int)n);
        rx->got += (size_t)n;
    }
}

int vfu_recv_timeout(int sock, struct vfu_rx *rx, int timeout_ms)
{
    uint64_t deadline = vhu_sock_deadline(timeout_ms);

    for (;;) {
        int r = vfu_recv_step(sock, rx);
        if (r != -EAGAIN)
            return r;
        r = vhu_sock_wait(sock, POLLIN, deadline);
        if (r < 0)
            return rx_fail(rx, r);
    }
}

int vfu_send(int sock, struct vfu_hdr *h, const void *payload, size_t len, const void *data,
             size_t data_len, const int *fds, unsigned nfds)
{
    struct iovec iov[3] = {
        {.iov_base = h, .iov_len = sizeof(*h)},
        {.iov_base = (void *)payload, .iov_len = len},
        {.iov_base = (void *)data, .iov_len = data_len},
    };
    size_t total = sizeof(*h) + len + data_len;

    if (total > UINT32_MAX || nfds > VFU_MAX_FDS)
        return -EINVAL;
    h->size = (uint32_t)total;
    return vhu_sock_send_fds(sock, iov, data_len ? 3 : len ? 2 : 1, fds, nfds, SEND_TIMEOUT_MS);
}

const char *vfu_cmd_name(unsigned cmd)
{
    static const char *const names[] = {
        [VFU_CMD_VERSION] = "VERSION",
        [VFU_CMD_DMA_MAP] = "DMA_MAP",
        [VFU_CMD_DMA_UNMAP] = "DMA_UNMAP",
        [VFU_CMD_DEVICE_GET_INFO] = "DEVICE_GET_INFO",
        [VFU_CMD_DEVICE_GET_REGION_INFO] = "DEVICE_GET_REGION_INFO",
        [VFU_CMD_DEVICE_GET_REGION_IO_FDS] = "DEVICE_GET_REGION_IO_FDS",
        [VFU_CMD_DEVICE_GET_IRQ_INFO] = "DEVICE_GET_IRQ_INFO",
        [VFU_CMD_DEVICE_SET_IRQS] = "DEVICE_SET_IRQS",
        [VFU_CMD_REGION_READ] = "REGION_READ",
        [VFU_CMD_REGION_WRITE] = "REGION_WRITE",
        [VFU_CMD_DMA_READ] = "DMA_READ",
        [VFU_CMD_DMA_WRITE] = "DMA_WRITE",
        [VFU_CMD_DEVICE_RESET] = "DEVICE_RESET",
        [VFU_CMD_REGION_WRITE_MULTI] = "REGION_WRITE_MULTI",
        [VFU_CMD_DEVICE_FEATURE] = "DEVICE_FEATURE",
        [VFU_CMD_MIG_DATA_READ] = "MIG_DATA_READ",
        [VFU_CMD_MIG_DATA_WRITE] = "MIG_DATA_WRITE",
    };

    return cmd < VHU_ARRAY_SIZE(names) && names[cmd] ? names[cmd] : "?";
}

/* A capability member: an integer in [min, max], or absent (keeps *v). */
static int cap_u64(json_object *caps, const char *name, uint64_t min, uint64_t max, uint64_t *v)
{
    json_object *o;

    if (!json_object_object_get_ex(caps, name, &o))
        return 0;
    if (!json_object_is_type(o, json_type_int))
        return -EINVAL;
    /* json-c keeps integers as int64 or uint64: read both ways to refuse negatives. */
    int64_t s = json_object_get_int64(o);
    uint64_t u = json_object_get_uint64(o);
    if (s < 0 || u < min || u > max)
        return -EINVAL;
    *v = u;
    return 0;
}

int vfu_caps_parse(const void *data, size_t len, struct vfu_caps *out)
{
    struct vfu_caps c = VFU_CAPS_DEFAULT;
    json_tokener *tok;
    json_object *root, *caps;
    uint64_t fds = c.max_msg_fds, xfer = c.max_data_xfer_size, maps = c.max_dma_maps;
    int r = 0;

    if (len == 0) {
        *out = c;
        return 0;
    }
    /* Data is a string with its terminating NUL: nothing after it, nothing missing. */
    if (len > INT32_MAX || memchr(data, '\0', len) != (const char *)data + len - 1)
        return -EINVAL;
    tok = json_tokener_new();
    if (!tok)
        return -ENOMEM;
    root = json_tokener_parse_ex(tok, data, (int)len - 1);
    if (!root || json_tokener_get_error(tok) != json_tokener_success ||
        json_tokener_get_parse_end(tok) != len - 1 || !json_object_is_type(root, json_type_object))
        r = -EINVAL;
    json_tokener_free(tok);
    if (r == 0 && json_object_object_get_ex(root, "capabilities", &caps)) {
        if (!json_object_is_type(caps, json_type_object))
            r = -EINVAL;
        if (r == 0)
            r = cap_u64(caps, "max_msg_fds", 0, 253, &fds);
        if (r == 0)
            r = cap_u64(caps, "max_data_xfer_size", 1, UINT32_MAX, &xfer);
        if (r == 0)
            r = cap_u64(caps, "max_dma_maps", 0, UINT32_MAX, &maps);
        if (r == 0)
            r = cap_u64(caps, "pgsizes", 1, UINT64_MAX, &c.pgsizes);
    }
    json_object_put(root);
    if (r < 0)
        return r;
    c.max_msg_fds = (uint32_t)fds;
    c.max_data_xfer_size = (uint32_t)xfer;
    c.max_dma_maps = (uint32_t)maps;
    *out = c;
    return 0;
}

int vfu_caps_format(const struct vfu_caps *c, char *buf, size_t cap)
{
    int n = snprintf(buf, cap,
                     "{\"capabilities\":{\"max_msg_fds\":%u,\"max_data_xfer_size\":%u,"
                     "\"max_dma_maps\":%u,\"pgsizes\":%llu}}",
                     c->max_msg_fds, c->max_data_xfer_size, c->max_dma_maps,
                     (unsigned long long)c->pgsizes);

    return n < 0 || (size_t)n >= cap ? -ENOSPC : n + 1;
}
