/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * virtio-net driver over the frontend library (VIRTIO 1.3 §5.1): transmit and receive queues
 * with preallocated buffers, the virtio-net header, mergeable receive buffers, and checks of
 * everything the backend hands back.
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vhu/dev/net.h"
#include "vhu/fe/net.h"
#include "vhu/util.h"
#include "vhu/virtio.h"

struct vhu_fe_net_txq {
    struct vhu_fe *fe;
    struct vhu_vqd *vqd;
    unsigned q;
    struct vhu_fe_net_buf *bufs;
    struct vhu_fe_net_buf **free;
    unsigned nbufs, nfree;
};

struct vhu_fe_net_rxq {
    struct vhu_fe *fe;
    struct vhu_vqd *vqd;
    unsigned q;
    bool mrg;
    uint32_t max_frame;
    uint32_t buf_len;
    unsigned nbufs;
    struct vhu_fe_net_buf *bufs;
    struct vhu_fe_net_buf **done;  /* buffers of delivered frames, to post again */
    unsigned ndone;
    /* the frame being assembled */
    struct vhu_fe_net_buf **fbufs; /* its buffers so far */
    struct vhu_fe_net_rx_seg *segs;
    struct vhu_fe_net_rx_frame f;
    unsigned pend;                 /* buffers still to come */
    struct vhu_fe_net_rxq_stats st;
    bool failed;
    char err[128];
};

VHU_EXPORT uint64_t vhu_fe_net_features(void)
{
    return vhu_feature(VHU_VIRTIO_NET_F_MTU) | vhu_feature(VHU_VIRTIO_NET_F_MAC) |
           vhu_feature(VHU_VIRTIO_NET_F_STATUS) | vhu_feature(VHU_VIRTIO_NET_F_MQ) |
           vhu_feature(VHU_VIRTIO_NET_F_MRG_RXBUF);
}

VHU_EXPORT int vhu_fe_net_get_info(struct vhu_fe *fe, struct vhu_fe_net_info *info)
{
    struct vhu_virtio_net_config cfg;
    uint64_t f = vhu_fe_features(fe);

    memset(info, 0, sizeof(*info));
    info->features = f;
    if (!vhu_has_feature(f, VHU_VIRTIO_F_VERSION_1))
        return -ENOTSUP;
    info->mrg_rxbuf = vhu_has_feature(f, VHU_VIRTIO_NET_F_MRG_RXBUF);
    info->mtu = VHU_FE_NET_DEFAULT_MTU;
    /* Backends without VHOST_USER_PROTOCOL_F_CONFIG (DPDK) have no readable config space. */
    if (vhu_fe_get_config(fe, 0, &cfg, sizeof(cfg)) == 0) {
        info->has_config = true;
        memcpy(info->mac, cfg.mac, 6);
        info->max_pairs = le16toh(cfg.max_virtqueue_pairs);
        if (vhu_has_feature(f, VHU_VIRTIO_NET_F_MTU) && le16toh(cfg.mtu) >= 68)
            info->mtu = le16toh(cfg.mtu);
        info->link_down = vhu_has_feature(f, VHU_VIRTIO_NET_F_STATUS) &&
                          !(le16toh(cfg.status) & VHU_VIRTIO_NET_S_LINK_UP);
    }
    info->max_frame = (uint32_t)info->mtu + VHU_FE_NET_ETH_HLEN;
    return 0;
}

VHU_EXPORT size_t vhu_fe_net_bufs_mem(unsigned n, uint32_t len)
{
    return (size_t)n * VHU_ALIGN_UP((size_t)len, 64) + 4096;
}

static int bufs_alloc(struct vhu_fe *fe, unsigned n, uint32_t len, struct vhu_fe_net_buf **out)
{
    struct vhu_fe_net_buf *b = calloc(n, sizeof(*b));

    if (!b)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        b[i].data = vhu_fe_alloc(fe, len, 64, &b[i].gpa);
        if (!b[i].data) {
            free(b);
            return -ENOMEM;
        }
        memset(b[i].data, 0, VHU_FE_NET_HDR_LEN);
        b[i].cap = len - VHU_FE_NET_HDR_LEN;
    }
    *out = b;
    return 0;
}

/* The queue's ring, and nbufs (0: the ring size). */
static struct vhu_vqd *queue(struct vhu_fe *fe, unsigned q, unsigned *nbufs)
{
    struct vhu_vqd *vqd = vhu_fe_vqd(fe, q);

    if (vqd && *nbufs == 0)
        *nbufs = vhu_vqd_num_free(vqd);
    return vqd && *nbufs ? vqd : NULL;
}

/* Event mode on one ring: 1 if used entries are pending, else sleep on the call eventfd. */
static int wait_ring(struct vhu_fe *fe, struct vhu_vqd *vqd, unsigned q, int timeout_ms)
{
    int r;

    if (vhu_vqd_enable_cb(vqd)) {
        vhu_vqd_disable_cb(vqd);
        return 1;
    }
    r = vhu_fe_wait(fe, q, timeout_ms);
    vhu_vqd_disable_cb(vqd);
    return r;
}

/* ---------------------------------------------------------------------------------------- */
/* Transmit                                                                                  */
/* ---------------------------------------------------------------------------------------- */

VHU_EXPORT int vhu_fe_net_txq_new(struct vhu_fe *fe, unsigned pair, unsigned nbufs,
                                  uint32_t frame_cap, struct vhu_fe_net_txq **out)
{
    struct vhu_vqd *vqd = queue(fe, 2 * pair + 1, &nbufs);
    struct vhu_fe_net_txq *t;
    int r;

    *out = NULL;
    if (!vqd || frame_cap == 0 || frame_cap > 65536)
        return -EINVAL;
    t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->fe = fe;
    t->vqd = vqd;
    t->q = 2 * pair + 1;
    r = bufs_alloc(fe, nbufs, VHU_FE_NET_HDR_LEN + frame_cap, &t->bufs);
    if (r == 0 && !(t->free = calloc(nbufs, sizeof(*t->free))))
        r = -ENOMEM;
    if (r < 0) {
        vhu_fe_net_txq_free(t);
        return r;
    }
    for (unsigned i = 0; i < nbufs; i++)
        t->free[i] = &t->bufs[i];
    t->nbufs = t->nfree = nbufs;
    vhu_vqd_disable_cb(vqd);
    *out = t;
    return 0;
}

VHU_EXPORT void vhu_fe_net_txq_free(struct vhu_fe_net_txq *t)
{
    if (!t)
        return;
    free(t->bufs);
    free(t->free);
    free(t);
}

VHU_EXPORT struct vhu_fe_net_buf *vhu_fe_net_tx_buf(struct vhu_fe_net_txq *t)
{
    return t->nfree ? t->free[--t->nfree] : NULL;
}

VHU_EXPORT void vhu_fe_net_tx_release(struct vhu_fe_net_txq *t, struct vhu_fe_net_buf *b)
{
    t->free[t->nfree++] = b;
}

VHU_EXPORT int vhu_fe_net_tx_send(struct vhu_fe_net_txq *t, struct vhu_fe_net_buf *b,
                                  uint32_t len, const struct vhu_virtio_net_hdr_v1 *hdr)
{
    struct vhu_vqd_seg seg = {.addr = b->gpa, .len = VHU_FE_NET_HDR_LEN + len};

    if (len > b->cap)
        return -EINVAL;
    if (hdr)
        memcpy(b->data, hdr, VHU_FE_NET_HDR_LEN);
    return vhu_vqd_add(t->vqd, &seg, 1, 0, b);
}

VHU_EXPORT int vhu_fe_net_tx_kick(struct vhu_fe_net_txq *t)
{
    return vhu_fe_kick(t->fe, t->q);
}

VHU_EXPORT int vhu_fe_net_tx_reclaim(struct vhu_fe_net_txq *t)
{
    struct vhu_fe_net_buf *b;
    int n = 0;

    while ((b = vhu_vqd_get_used(t->vqd, NULL)) != NULL) {
        t->free[t->nfree++] = b;
        n++;
    }
    return n == 0 && vhu_vqd_broken(t->vqd) ? -EPROTO : n;
}

VHU_EXPORT unsigned vhu_fe_net_tx_free_bufs(const struct vhu_fe_net_txq *t) { return t->nfree; }

VHU_EXPORT int vhu_fe_net_txq_wait(struct vhu_fe_net_txq *t, int timeout_ms)
{
    return wait_ring(t->fe, t->vqd, t->q, timeout_ms);
}

VHU_EXPORT bool vhu_fe_net_txq_broken(const struct vhu_fe_net_txq *t)
{
    return vhu_vqd_broken(t->vqd);
}

/* ---------------------------------------------------------------------------------------- */
/* Receive                                                                                   */
/* ---------------------------------------------------------------------------------------- */

static int rx_post(struct vhu_fe_net_rxq *q, struct vhu_fe_net_buf *b)
{
    struct vhu_vqd_seg seg = {.addr = b->gpa, .len = q->buf_len};

    /* the device may write fewer header bytes than it claims: start from a clean header */
    memset(b->data, 0, VHU_FE_NET_HDR_LEN);
    return vhu_vqd_add(q->vqd, &seg, 0, 1, b);
}

VHU_EXPORT int vhu_fe_net_rxq_new(struct vhu_fe *fe, const struct vhu_fe_net_info *info,
                                  unsigned pair, unsigned nbufs, uint32_t buf_len,
                                  struct vhu_fe_net_rxq **out)
{
    struct vhu_vqd *vqd = queue(fe, 2 * pair, &nbufs);
    struct vhu_fe_net_rxq *q;
    int r;

    *out = NULL;
    if (!vqd || buf_len < VHU_FE_NET_HDR_LEN + 2 || buf_len > 65536 ||
        (!info->mrg_rxbuf && buf_len < VHU_FE_NET_HDR_LEN + info->max_frame))
        return -EINVAL;
    q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->fe = fe;
    q->vqd = vqd;
    q->q = 2 * pair;
    q->mrg = info->mrg_rxbuf;
    q->max_frame = info->max_frame;
    q->buf_len = buf_len;
    q->nbufs = nbufs;
    r = bufs_alloc(fe, nbufs, buf_len, &q->bufs);
    if (r == 0) {
        q->done = calloc(nbufs, sizeof(*q->done));
        q->fbufs = calloc(nbufs, sizeof(*q->fbufs));
        q->segs = calloc(nbufs, sizeof(*q->segs));
        if (!q->done || !q->fbufs || !q->segs)
            r = -ENOMEM;
    }
    for (unsigned i = 0; r == 0 && i < nbufs; i++)
        r = rx_post(q, &q->bufs[i]);
    if (r < 0) {
        vhu_fe_net_rxq_free(q);
        return r;
    }
    q->f.segs = q->segs;
    vhu_vqd_disable_cb(vqd);
    vhu_fe_kick(fe, q->q);
    *out = q;
    return 0;
}

VHU_EXPORT void vhu_fe_net_rxq_free(struct vhu_fe_net_rxq *q)
{
    if (!q)
        return;
    free(q->bufs);
    free(q->done);
    free(q->fbufs);
    free(q->segs);
    free(q);
}

static int rx_fail(struct vhu_fe_net_rxq *q, const char *fmt, unsigned a, unsigned b)
{
    q->failed = true;
    snprintf(q->err, sizeof(q->err), fmt, a, b);
    return -EPROTO;
}

/* One used buffer of len bytes; 1 when it completed a frame. */
static int rx_buffer(struct vhu_fe_net_rxq *q, struct vhu_fe_net_buf *b, uint32_t len)
{
    const uint8_t *p = b->data;
    struct vhu_fe_net_rx_frame *f = &q->f;

    q->st.bufs++;
    if (q->pend == 0) {
        const struct vhu_virtio_net_hdr_v1 *h = (const void *)p;
        unsigned nb;

        if (len < VHU_FE_NET_HDR_LEN)
            return rx_fail(q, "used length %u is shorter than the %u-byte virtio-net header",
                           len, VHU_FE_NET_HDR_LEN);
        nb = le16toh(h->num_buffers);
        if (q->mrg && (nb == 0 || nb > q->nbufs))
            return rx_fail(q, "num_buffers %u with %u receive buffers posted", nb, q->nbufs);
        if (!q->mrg && nb == 0)
            q->st.nb_zero++;
        f->hdr = h;
        f->num_buffers = (uint16_t)nb;
        f->flags = (!q->mrg && nb > 1) || h->flags != 0 || h->gso_type != 0
                       ? VHU_FE_NET_RX_BAD_HDR : 0;
        f->nsegs = 0;
        f->len = 0;
        q->pend = q->mrg ? nb : 1;
        p += VHU_FE_NET_HDR_LEN;
        len -= VHU_FE_NET_HDR_LEN;
    }
    q->fbufs[f->nsegs] = b;
    q->segs[f->nsegs++] = (struct vhu_fe_net_rx_seg){.data = p, .len = len};
    f->len += len;
    if (--q->pend)
        return 0;
    if (f->len < VHU_FE_NET_ETH_HLEN || f->len > q->max_frame)
        f->flags |= VHU_FE_NET_RX_BAD_LEN;
    q->st.frames++;
    q->st.bytes += f->len;
    return 1;
}

VHU_EXPORT int vhu_fe_net_rx_poll(struct vhu_fe_net_rxq *q, unsigned max_frames,
                                  vhu_fe_net_rx_fn *fn, void *opaque)
{
    struct vhu_fe_net_buf *b;
    unsigned frames = 0;
    uint32_t len;
    int r = 0;

    if (q->failed)
        return -EPROTO;
    while (frames < max_frames && (b = vhu_vqd_get_used(q->vqd, &len)) != NULL) {
        r = rx_buffer(q, b, len);
        if (r < 0)
            break;
        if (r == 0)
            continue;
        fn(opaque, &q->f);
        for (unsigned i = 0; i < q->f.nsegs; i++)
            q->done[q->ndone++] = q->fbufs[i];
        frames++;
    }
    for (unsigned i = 0; i < q->ndone && !q->failed; i++) {
        int e = rx_post(q, q->done[i]);
        if (e < 0) { /* only a broken ring refuses a buffer it just gave back */
            q->failed = true;
            snprintf(q->err, sizeof(q->err), "cannot post a receive buffer again: %s",
                     strerror(-e));
            r = -EPROTO;
        }
    }
    if (q->ndone)
        vhu_fe_kick(q->fe, q->q);
    q->ndone = 0;
    if (r < 0 || (frames == 0 && vhu_vqd_broken(q->vqd)))
        return -EPROTO;
    return (int)frames;
}

VHU_EXPORT int vhu_fe_net_rxq_wait(struct vhu_fe_net_rxq *q, int timeout_ms)
{
    return wait_ring(q->fe, q->vqd, q->q, timeout_ms);
}

VHU_EXPORT bool vhu_fe_net_rxq_broken(const struct vhu_fe_net_rxq *q)
{
    return vhu_vqd_broken(q->vqd);
}

VHU_EXPORT const char *vhu_fe_net_rxq_error(const struct vhu_fe_net_rxq *q) { return q->err; }
VHU_EXPORT unsigned vhu_fe_net_rxq_nbufs(const struct vhu_fe_net_rxq *q) { return q->nbufs; }
VHU_EXPORT uint32_t vhu_fe_net_rxq_buf_len(const struct vhu_fe_net_rxq *q) { return q->buf_len; }

VHU_EXPORT void vhu_fe_net_rxq_get_stats(const struct vhu_fe_net_rxq *q,
                                         struct vhu_fe_net_rxq_stats *st)
{
    *st = q->st;
}
