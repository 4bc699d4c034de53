/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * virtio-vhost-user, the driver (backend) side: a vhu backend served through a VVU PCI device.
 * The frontend's vhost-user messages arrive on rxq, one per buffer, and go to the same decoder
 * as AF_UNIX's (an fd-less session: src/transport/vhost-user/decoder.h); replies go out on txq
 * from preallocated buffers. What the fds were, the device turned into resources (proto/vvu.h,
 * the relay contract): memory regions are windows of the shared-memory BAR, a vring's kick is an
 * interrupt vector (or nothing: polled), its call is a doorbell register.
 *
 * Everything runs on the loop's thread. The device is not trusted: a used length that does not
 * match the message in the buffer, a broken ring or a device asking for a reset ends the session
 * and resets the device; a bad frontend message ends the session and makes the device drop that
 * frontend (BACKEND_UP cleared and set again).
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "driver_internal.h"
#include "transport/vhost-user/decoder.h"
#include "vhu/log.h"
#include "vhu/util.h"
#include "vhu/virtio.h"

/* Polling period without interrupts (and for rings without a kick source). */
#define VVU_POLL_NS 1000000L
/* Polling: every this many ticks the whole status is read, not just the generation. */
#define VVU_FULL_LOOK_TICKS 64u
/* Device errors in a row (no good message between them) before the driver gives up. */
#define VVU_MAX_BAD_STREAK 8u

static void *cookie_of(unsigned i)
{
    return (void *)(uintptr_t)(i + 1); /* never NULL */
}

static unsigned index_of(void *cookie)
{
    return (unsigned)((uintptr_t)cookie - 1);
}

/* ---------------------------------------------------------------------------------------- */
/* Polling                                                                                    */
/* ---------------------------------------------------------------------------------------- */

/* Tick while there is no interrupt for something that needs watching. */
static void update_tick(struct vhu_vvu *v)
{
    bool want = !v->dead && (v->nirq == 0 || v->polled_rings);
    struct itimerspec its = {0};

    if (want == v->ticking || v->timer_fd < 0)
        return;
    if (want) {
        its.it_value.tv_nsec = VVU_POLL_NS;
        its.it_interval.tv_nsec = VVU_POLL_NS;
    }
    if (timerfd_settime(v->timer_fd, 0, &its, NULL) == 0)
        v->ticking = want;
}

/* ---------------------------------------------------------------------------------------- */
/* Resources for the decoder                                                                  */
/* ---------------------------------------------------------------------------------------- */

/* The core let go of a region: its window can go. */
static void region_release(void *opaque, void *host, uint64_t size)
{
    struct vhu_vvu *v = opaque;

    v->pci->ops->bar_unmap(v->pci, host, size);
    v->mapped--;
}

/* vvu.h: the device rewrote mmap_offset to where the region starts in the shared-memory
 * window. */
static int conn_region(void *conn, const struct vhost_user_memory_region *wr,
                       struct vhu_mem_region **out)
{
    struct vhu_vvu *v = conn;
    uint64_t off = wr->mmap_offset, size = wr->memory_size;
    struct vhu_mem_region_desc d = {
        .gpa = wr->guest_phys_addr,
        .size = size,
        .uva = wr->userspace_addr,
        .mmap_offset = off,
        .fd = -1,
        .release = region_release,
        .release_opaque = v,
    };
    int r;

    if (size == 0 || off > v->shm.len || size > v->shm.len - off) {
        vhu_err("%s: region gpa 0x%llx (0x%llx bytes at window offset 0x%llx) is outside the "
                "shared-memory window (0x%llx bytes)",
                v->pci->name, (unsigned long long)d.gpa, (unsigned long long)size,
                (unsigned long long)off, (unsigned long long)v->shm.len);
        return -EINVAL;
    }
    r = v->pci->ops->bar_map(v->pci, v->shm.bar, v->shm.off + off, size, &d.host);
    if (r < 0) {
        vhu_err("%s: cannot map window offset 0x%llx (0x%llx bytes): %s", v->pci->name,
                (unsigned long long)off, (unsigned long long)size, strerror(-r));
        return r;
    }
    r = vhu_mem_region_map(&d, out);
    if (r < 0) {
        vhu_err("%s: region gpa 0x%llx size 0x%llx refused: %s", v->pci->name,
                (unsigned long long)d.gpa, (unsigned long long)size, strerror(-r));
        v->pci->ops->bar_unmap(v->pci, d.host, size);
        return r;
    }
    v->mapped++;
    return 0;
}

/*
 * Vring i's call sink when the bus has no io fd for its doorbell: a register write from the
 * ring's owner thread. Only valid where bar_write is a plain MMIO store (pci_sysfs: a volatile
 * store into the BAR mapping, no lock, no allocation), which is also the only bus without io
 * fds; a bus whose bar_write is a message (vfio-user) must give io fds.
 */
static void doorbell_ring(void *opaque)
{
    const struct vvu_doorbell *d = opaque;
    struct vhu_vvu *v = d->v;
    uint32_t one = htole32(1);

    v->pci->ops->bar_write(v->pci, v->doorbell.bar, v->doorbell.off + d->off, &one, 4);
}

/* vvu.h: doorbell i signals the frontend's call fd of vring i. The device decides per
 * SET_VRING_CALL whether that register has an io fd, so it is asked each time. */
static int call_sink(struct vhu_vvu *v, unsigned q, struct vhu_notifier **out)
{
    uint64_t off = (uint64_t)q * v->doorbell.mult;
    int fd = -1, r;

    if (off > v->doorbell.len || v->doorbell.len - off < 4) {
        vhu_err("%s: vring %u's doorbell is outside the doorbell window", v->pci->name, q);
        return -EINVAL;
    }
    r = v->pci->ops->io_fd(v->pci, v->doorbell.bar, v->doorbell.off + off, 4, &fd);
    if (r == 0)
        return vhu_notifier_eventfd_new(fd, out);
    if (r != -ENOTSUP) {
        vhu_err("%s: vring %u: no io fd for its doorbell: %s", v->pci->name, q, strerror(-r));
        return r;
    }
    v->doorbells[q] = (struct vvu_doorbell){.v = v, .off = off};
    return vhu_notifier_callback_new(doorbell_ring, &v->doorbells[q], out);
}

static int conn_ring_notifier(void *conn, enum vhu_session_notifier_kind kind, unsigned q,
                              bool nofd, struct vhu_notifier **out)
{
    struct vhu_vvu *v = conn;
    int fd;

    *out = NULL;
    if (q >= v->nvrings) {
        vhu_err("%s: vring %u: the device has notifications for %u vrings", v->pci->name, q,
                v->nvrings);
        return -ERANGE;
    }
    switch (kind) {
    case VHU_SESSION_KICK:
        /* vvu.h: the frontend's kick of vring q raises vector 3 + q (vring_vectors()). */
        if (nofd || VVU_DRV_VEC_VRING0 + q >= v->nirq) {
            v->polled_rings = true;
            update_tick(v);
            return 0;
        }
        fd = fcntl(v->irq_fds[VVU_DRV_VEC_VRING0 + q], F_DUPFD_CLOEXEC, 0);
        return fd < 0 ? -errno : vhu_notifier_eventfd_new(fd, out);
    case VHU_SESSION_CALL:
        return nofd ? 0 : call_sink(v, q, out);
    case VHU_SESSION_ERR:
        return 0; /* the device keeps the frontend's error fd; no driver-side resource */
    }
    return -EINVAL;
}

/* ---------------------------------------------------------------------------------------- */
/* txq: replies                                                                               */
/* ---------------------------------------------------------------------------------------- */

static void tx_reap(struct vhu_vvu *v)
{
    uint32_t len;
    void *c;

    while ((c = vhu_vqd_get_used(v->txq.vqd, &len)))
        v->tx_free[v->ntx_free++] = (uint16_t)index_of(c);
}

static int conn_send(void *conn, const struct vhu_msg *m)
{
    struct vhu_vvu *v = conn;
    uint32_t len = (uint32_t)sizeof(m->hdr) + m->hdr.size;
    struct vhu_vqd_seg seg;
    unsigned i;
    int r;

    if (m->hdr.size > VVU_MSG_MAX - sizeof(m->hdr))
        return -EMSGSIZE;
    tx_reap(v);
    if (vhu_vqd_broken(v->txq.vqd))
        return -EIO;
    if (v->ntx_free == 0) {
        vhu_err("%s: txq full: the device does not take replies", v->pci->name);
        return -ENOBUFS;
    }
    i = v->tx_free[--v->ntx_free];
    memcpy(v->txq.bufs + (size_t)i * VVU_MSG_MAX, &m->hdr, sizeof(m->hdr));
    memcpy(v->txq.bufs + (size_t)i * VVU_MSG_MAX + sizeof(m->hdr), &m->payload, m->hdr.size);
    seg.addr = v->txq.bufs_iova + (uint64_t)i * VVU_MSG_MAX;
    seg.len = len;
    r = vhu_vqd_add(v->txq.vqd, &seg, 1, 0, cookie_of(i));
    if (r < 0) {
        v->tx_free[v->ntx_free++] = (uint16_t)i;
        return r;
    }
    if (vhu_vqd_kick_prepare(v->txq.vqd))
        r = vvu_notify_queue(v, VVU_TXQ);
    return r;
}

static const struct vhu_session_transport_ops vvu_session_ops = {
    .name = "virtio-vhost-user",
    .send = conn_send,
    .fdless = true,
    .fdless_protocol_mask = VVU_PROTOCOL_FEATURES_RELAYED,
    .region = conn_region,
    .ring_notifier = conn_ring_notifier,
};

/* ---------------------------------------------------------------------------------------- */
/* Sessions                                                                                   */
/* ---------------------------------------------------------------------------------------- */

static void session_start(struct vhu_vvu *v)
{
    int r;

    if (v->start_failed)
        return;
    r = vhu_session_new(v->b, &vvu_session_ops, v, &v->session);
    if (r < 0) {
        vhu_err("%s: cannot serve the frontend: %s", v->pci->name, strerror(-r));
        v->session = NULL;
        v->start_failed = true; /* until the device reports another frontend */
        return;
    }
    v->stats.sessions++;
    vhu_info("%s: frontend connected", v->pci->name);
}

/* The rings stop and the regions' windows are unmapped (the core lets go of them here). */
static void session_stop(struct vhu_vvu *v, const char *why)
{
    if (!v->session)
        return;
    vhu_session_end(v->session);
    v->session = NULL;
    v->polled_rings = false;
    update_tick(v);
    if (why)
        vhu_info("%s: %s", v->pci->name, why);
    if (v->mapped)
        vhu_err("%s: %u windows still mapped after the session", v->pci->name, v->mapped);
}

/* Give the rx buffers that hold messages back to the device, unread. */
static void rx_drop_all(struct vhu_vvu *v)
{
    bool posted = false;
    uint32_t len;
    void *c;

    while ((c = vhu_vqd_get_used(v->rxq.vqd, &len))) {
        v->stats.dropped++;
        posted = vvu_rx_post(v, index_of(c)) == 0 || posted;
    }
    if (posted && vhu_vqd_kick_prepare(v->rxq.vqd))
        vvu_notify_queue(v, VVU_RXQ);
}

/* BACKEND_UP cleared (the device drops its frontend, if it still has one), what is on rxq given
 * back unread, BACKEND_UP set again (the device may take the next frontend). */
static void backend_bounce(struct vhu_vvu *v)
{
    vvu_set_backend_up(v, false);
    rx_drop_all(v);
    vvu_set_backend_up(v, true);
}

/* The frontend sent something the session refused: end it, and have the device drop that
 * frontend (vvu.h: clearing BACKEND_UP disconnects it) along with what it still queued. */
static void frontend_drop(struct vhu_vvu *v)
{
    session_stop(v, "frontend dropped after a bad message");
    v->stats.frontend_errors++;
    backend_bounce(v);
    v->cfg_gen = (uint8_t)vvu_rd(v, &v->common, offsetof(struct vvu_common_cfg,
                                                           config_generation), 1);
}

/* The device broke the contract (or stopped answering): start over with a reset. */
static void device_recover(struct vhu_vvu *v)
{
    session_stop(v, NULL);
    v->stats.device_errors++;
    if (++v->bad_streak > VVU_MAX_BAD_STREAK || vvu_device_init(v) < 0) {
        vhu_err("%s: the device keeps failing: no longer served", v->pci->name);
        v->dead = true;
        vvu_device_reset(v);
    } else {
        vhu_warn("%s: device reset after an error", v->pci->name);
    }
    v->start_failed = false;
    update_tick(v);
}

/*
 * The device's status: a frontend that came or went (config generation: it also changes when
 * one went and another came between two looks). Register reads can be slow (a message on
 * vfio-user, a trap to the VMM in a guest), so unless `full` only the generation is read, and
 * the rest when it changed: a FRONTEND_UP change bumps it; NEEDS_RESET comes with a config
 * interrupt, or the periodic full look of the polling tick.
 */
static int check_status(struct vhu_vvu *v, bool full)
{
    uint8_t gen = (uint8_t)vvu_rd(v, &v->common,
                                  offsetof(struct vvu_common_cfg, config_generation), 1);
    uint8_t st;
    uint32_t vst;
    bool up;

    if (!full && !v->io_err && gen == v->cfg_gen)
        return 0;
    st = (uint8_t)vvu_rd(v, &v->common, offsetof(struct vvu_common_cfg, device_status), 1);
    vst = vvu_rd(v, &v->devcfg, offsetof(struct vvu_config, status), 4);
    up = vst & VVU_S_FRONTEND_UP;
    if (v->io_err) {
        vhu_err_rl("%s: cannot read the device status: %s", v->pci->name, strerror(-v->io_err));
        return v->io_err;
    }
    if ((st & VHU_VIRTIO_CONFIG_S_NEEDS_RESET) || !(st & VHU_VIRTIO_CONFIG_S_DRIVER_OK)) {
        vhu_err_rl("%s: the device needs a reset (status 0x%x)", v->pci->name, st);
        return -EIO;
    }
    if (gen != v->cfg_gen) {
        v->cfg_gen = gen;
        v->start_failed = false;
        session_stop(v, up ? "frontend replaced" : "frontend disconnected");
        /* vvu.h, VVU_F_FRONTEND_ACK: the bounce is the ack of the frontend's going; everything
         * on rxq from then on is the next frontend's */
        if (!up && v->frontend_ack)
            backend_bounce(v);
    } else if (!up) {
        session_stop(v, "frontend disconnected");
    }
    if (up && !v->session)
        session_start(v);
    return 0;
}

/* A used rx buffer: exactly one message, header + hdr.size bytes (vvu.h). */
static int rx_take(struct vhu_vvu *v, const uint8_t *buf, uint32_t len)
{
    struct vhost_user_hdr hdr;

    if (len >= sizeof(hdr))
        memcpy(&hdr, buf, sizeof(hdr));
    if (len < sizeof(hdr) || len > VVU_MSG_MAX || hdr.size != len - sizeof(hdr)) {
        vhu_err_rl("%s: rxq buffer of %u bytes does not hold one message (header says %u)",
                   v->pci->name, len, len >= sizeof(hdr) ? hdr.size : 0);
        return -EPROTO;
    }
    v->msg.hdr = hdr;
    memcpy(&v->msg.payload, buf + sizeof(hdr), hdr.size);
    v->msg.nfds = 0;
    return 0;
}

static int process_rx(struct vhu_vvu *v)
{
    bool posted = false;
    uint32_t len;
    void *c;
    int r;

    while ((c = vhu_vqd_get_used(v->rxq.vqd, &len))) {
        unsigned i = index_of(c);

        r = rx_take(v, v->rxq.bufs + (size_t)i * VVU_MSG_MAX, len);
        /* The message is copied out: the buffer goes back at once. */
        if (vvu_rx_post(v, i) < 0 || r < 0)
            return -EPROTO;
        posted = true;
        /*
         * Whose message is it? The device changes the status (generation) before it queues a
         * new frontend's first message, but the look at the status that started this service
         * may have come just before that change (polling: a tick is not ordered with the
         * device's work). So the status is looked at again once the message is in hand: the
         * generation for a session that may have been replaced, everything when there is no
         * session yet. A message that still finds none is stale: its frontend is gone.
         */
        r = check_status(v, !v->session);
        if (r < 0)
            return r;
        if (!v->session) {
            v->stats.dropped++;
            continue;
        }
        v->stats.messages++;
        r = vhu_session_dispatch(v->session, &v->msg);
        if (r < 0 && vhu_vqd_broken(v->txq.vqd))
            return -EPROTO;
        if (r < 0)
            frontend_drop(v);
        else
            v->bad_streak = 0;
    }
    if (vhu_vqd_broken(v->rxq.vqd))
        return -EPROTO;
    if (posted && vhu_vqd_kick_prepare(v->rxq.vqd))
        vvu_notify_queue(v, VVU_RXQ);
    return v->io_err;
}

/* Whatever woke us (an interrupt, the tick): status first, so that the messages of a new
 * frontend find its session. */
static void service(struct vhu_vvu *v, bool full)
{
    int r;

    if (v->dead)
        return;
    v->io_err = 0;
    r = check_status(v, full);
    if (r == 0)
        r = process_rx(v);
    if (r == 0) {
        tx_reap(v);
        r = vhu_vqd_broken(v->txq.vqd) ? -EPROTO : 0;
    }
    if (r < 0)
        device_recover(v);
}

static void irq_cb(int fd, uint32_t events, void *opaque)
{
    struct vhu_vvu *v = opaque;

    (void)events;
    vhu_eventfd_drain(fd);
    service(v, v->nirq && fd == v->irq_fds[VVU_DRV_VEC_CONFIG]);
}

static void tick_cb(int fd, uint32_t events, void *opaque)
{
    struct vhu_vvu *v = opaque;
    uint64_t n = vhu_eventfd_drain(fd); /* a timerfd reads like an eventfd: expirations */

    v->ticks += n ? n : 1;
    service(v, v->ticks >= VVU_FULL_LOOK_TICKS);
    if (v->ticks >= VVU_FULL_LOOK_TICKS)
        v->ticks = 0;
    if (v->session && v->polled_rings)
        vhu_session_poll(v->session);
}

/* ---------------------------------------------------------------------------------------- */
/* Lifetime                                                                                   */
/* ---------------------------------------------------------------------------------------- */

static int watch_events(struct vhu_vvu *v)
{
    int r = 0;

    v->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (v->timer_fd < 0)
        return -errno;
    r = vhu_loop_add(v->loop, v->timer_fd, VHU_LOOP_IN, tick_cb, v);
    if (r < 0) {
        vhu_fd_close(&v->timer_fd);
        return r;
    }
    /* config, rxq and txq vectors; the vrings' belong to the core's kick sources */
    for (unsigned i = 0; i < VVU_DRV_VEC_VRING0 && i < v->nirq && r == 0; i++) {
        r = vhu_loop_add(v->loop, v->irq_fds[i], VHU_LOOP_IN, irq_cb, v);
        if (r == 0)
            v->irq_watched = i + 1;
    }
    return r;
}

static void unwatch_events(struct vhu_vvu *v)
{
    for (unsigned i = 0; i < v->irq_watched; i++)
        vhu_loop_del(v->loop, v->irq_fds[i]);
    v->irq_watched = 0;
    if (v->timer_fd >= 0) {
        vhu_loop_del(v->loop, v->timer_fd);
        vhu_fd_close(&v->timer_fd);
    }
}

VHU_EXPORT int vhu_vvu_new_pci(struct vhu_backend *b, struct vhu_loop *loop, struct vhu_pci *pci,
                               struct vhu_vvu **out)
{
    unsigned nq = vhu_backend_device(b)->num_queues;
    struct vhu_vvu *v = calloc(1, sizeof(*v));
    int r;

    if (!v) {
        pci->ops->free(pci);
        return -ENOMEM;
    }
    v->b = b;
    v->loop = loop;
    v->pci = pci;
    v->timer_fd = -1;
    for (unsigned i = 0; i < VHOST_USER_MAX_FDS; i++)
        v->msg.fds[i] = -1;
    r = vvu_caps_parse(v);
    if (r == 0) {
        v->max_vhost_queues = vvu_rd(v, &v->devcfg, offsetof(struct vvu_config,
                                                             max_vhost_queues), 4);
        r = v->io_err;
    }
    if (r == 0) {
        v->nvrings = VHU_MIN(VHU_MIN(nq, v->max_vhost_queues), VVU_MAX_VHOST_QUEUES);
        if (v->nvrings < nq)
            vhu_warn("%s: the device serves %u vrings, the %s device has %u", pci->name,
                     v->nvrings, vhu_backend_device(b)->name, nq);
        v->doorbells = calloc(VHU_MAX(v->nvrings, 1u), sizeof(*v->doorbells));
        v->tx_free = calloc(VVU_DRV_QUEUE_SIZE, sizeof(*v->tx_free));
        r = v->doorbells && v->tx_free ? vvu_dma_setup(v) : -ENOMEM;
    }
    if (r == 0) {
        vvu_irqs_setup(v);
        r = watch_events(v);
    }
    if (r == 0)
        r = vvu_device_init(v);
    if (r < 0) {
        vhu_vvu_free(v);
        return r;
    }
    v->stats.polled = v->nirq == 0;
    vhu_info("%s: virtio-vhost-user device up (%u vrings, %s)", pci->name, v->nvrings,
             v->nirq ? "MSI-X" : "polled");
    update_tick(v);
    service(v, true);
    *out = v;
    return 0;
}

VHU_EXPORT int vhu_vvu_new(struct vhu_backend *b, struct vhu_loop *loop, const char *spec,
                           struct vhu_vvu **out)
{
    struct vhu_pci *pci;
    int r = vhu_pci_open(spec, &pci);

    if (r < 0) {
        vhu_err("%s: cannot open the device: %s", spec, strerror(-r));
        return r;
    }
    return vhu_vvu_new_pci(b, loop, pci, out);
}

VHU_EXPORT void vhu_vvu_free(struct vhu_vvu *v)
{
    if (!v)
        return;
    session_stop(v, NULL);
    /* The device stops using the rings and drops its frontend before the memory goes. */
    if (v->common.len) {
        v->io_err = 0;
        vvu_device_reset(v);
    }
    unwatch_events(v);
    for (unsigned i = 0; i < v->nirq; i++)
        close(v->irq_fds[i]);
    free(v->irq_fds);
    vhu_vqd_free(v->rxq.vqd);
    vhu_vqd_free(v->txq.vqd);
    if (v->dma)
        v->pci->ops->dma_free(v->pci, v->dma, v->dma_len);
    v->pci->ops->free(v->pci);
    free(v->doorbells);
    free(v->tx_free);
    free(v);
}

VHU_EXPORT bool vhu_vvu_frontend_up(const struct vhu_vvu *v)
{
    return v->session != NULL;
}

VHU_EXPORT void vhu_vvu_get_stats(const struct vhu_vvu *v, struct vhu_vvu_stats *st)
{
    *st = v->stats;
}
