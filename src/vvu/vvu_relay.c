/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The frontend side of the VVU device: one vhost-user session at a time, served only while the
 * driver is up (DRIVER_OK and VVU_S_BACKEND_UP). Each frontend message is validated (the
 * protocol's one choke point, vhu_msg_validate), its fds are turned into device resources per
 * the relay contract of proto/vvu.h (window regions, kick watches, call doorbells), and then it
 * goes on rxq as is. Without an rxq buffer the one message is held and the socket is not read
 * until the driver posts buffers: backpressure, no queue.
 *
 * A frontend that misbehaves (malformed message, an fd the device cannot relay, memory it cannot
 * show in the window) is disconnected; the device serves the next one.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "vhu/log.h"
#include "vhu/util.h"
#include "vvu_internal.h"

/* Messages read per readable event before the loop serves others (level-triggered: the rest
 * is read on the next round). */
#define RX_BURST 32

static void fe_readable(int fd, uint32_t events, void *opaque);
static void client_connect(struct vvu_dev *d);

/* ---- vring fds ------------------------------------------------------------------------------- */

static void kick_event(int fd, uint32_t events, void *opaque)
{
    struct vvu_vring *v = opaque;

    vhu_eventfd_drain(fd);
    v->d->stats.kicks_relayed++;
    vvu_irq(v->d, v->vector);
}

static void kick_set(struct vvu_dev *d, struct vvu_vring *v, int fd)
{
    if (v->kick >= 0)
        vhu_loop_del(d->loop, v->kick);
    vhu_fd_replace(&v->kick, fd);
    if (fd >= 0 && vhu_loop_add(d->loop, fd, VHU_LOOP_IN, kick_event, v) < 0) {
        vhu_err("vvu: cannot watch the kick fd of vring %u", v->index);
        vhu_fd_close(&v->kick);
    }
}

static void vrings_clear(struct vvu_dev *d)
{
    bool calls = false;

    for (unsigned i = 0; i < d->opts.max_vhost_queues; i++) {
        struct vvu_vring *v = &d->vrings[i];

        calls |= v->call >= 0;
        kick_set(d, v, -1);
        vhu_fd_close(&v->call);
        vhu_fd_close(&v->err);
    }
    if (calls)
        vvu_layout_changed(d);
}

void vvu_relay_doorbell(struct vvu_dev *d, unsigned i)
{
    if (i < d->opts.max_vhost_queues && d->vrings[i].call >= 0)
        vhu_eventfd_signal(d->vrings[i].call);
}

int vvu_relay_io_fds(struct vvu_dev *d, struct vhu_pcidev_iofd *out, unsigned max)
{
    unsigned n = 0;

    for (unsigned i = 0; i < d->opts.max_vhost_queues && n < max; i++) {
        int fd;

        if (d->vrings[i].call < 0)
            continue;
        fd = fcntl(d->vrings[i].call, F_DUPFD_CLOEXEC, 0);
        if (fd < 0) {
            int err = -errno;
            while (n)
                vhu_fd_close(&out[--n].fd);
            return err;
        }
        out[n++] = (struct vhu_pcidev_iofd){VVU_BAR_REGS, VVU_DOORBELL_OFF + VVU_DOORBELL_MULT * i,
                                            4, fd};
    }
    return (int)n;
}

/* ---- connection ------------------------------------------------------------------------------ */

static void listen_watch(struct vvu_dev *d, bool on);

/* A new frontend may be taken: the driver serves, and has acked the last one's going (vvu.h,
 * VVU_F_FRONTEND_ACK; await_ack stays false without it). */
static bool takes_frontend(const struct vvu_dev *d)
{
    return d->serving && !d->await_ack;
}

static void timer_arm(struct vvu_dev *d, unsigned ms)
{
    struct itimerspec its = {.it_value = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L}};

    if (d->timer_fd >= 0)
        timerfd_settime(d->timer_fd, 0, &its, NULL);
}

void vvu_relay_disconnect(struct vvu_dev *d, const char *why)
{
    if (d->fe_fd < 0)
        return;
    vhu_info("vvu: frontend disconnected: %s", why);
    if (!d->held)
        vhu_loop_del(d->loop, d->fe_fd);
    vhu_fd_close(&d->fe_fd);
    vhu_msg_rx_abort(d->rx_msg, &d->rx);
    vhu_msg_close_fds(d->rx_msg);
    d->held = false;
    d->proto_features = 0;
    vrings_clear(d);
    vvu_window_clear(d);
    vvu_set_frontend_up(d, false);
    /* vvu.h: the next frontend waits for the driver's BACKEND_UP (vvu_relay_update) */
    if (vhu_has_feature(d->driver_features, VVU_F_FRONTEND_ACK))
        d->await_ack = true;
    if (takes_frontend(d)) {
        if (d->opts.client && d->opts.reconnect_ms)
            timer_arm(d, d->opts.reconnect_ms);
        listen_watch(d, true);
    }
}

static void fe_attach(struct vvu_dev *d, int fd)
{
    if (vhu_loop_add(d->loop, fd, VHU_LOOP_IN, fe_readable, d) < 0) {
        vhu_err("vvu: cannot watch the frontend socket");
        close(fd);
        return;
    }
    d->fe_fd = fd;
    d->rx.got = 0;
    d->held = false;
    /* QEMU negotiates protocol features once per device, not per connection: reconnecting
     * after a backend restart it goes straight to SET_FEATURES, the memory table, the rings
     * and GET_STATUS under what it agreed before. That can only be a subset of what this
     * device lets through, so a connection runs with that set until a new handshake. */
    d->proto_features = VVU_PROTOCOL_FEATURES_RELAYED;
    d->proto_acked = false;
    d->stats.frontend_sessions++;
    listen_watch(d, false);
    vhu_info("vvu: frontend connected");
    vvu_set_frontend_up(d, true);
}

static void listen_event(int fd, uint32_t events, void *opaque)
{
    struct vvu_dev *d = opaque;
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

    if (c < 0) {
        if (errno != EAGAIN && errno != EINTR)
            vhu_err_rl("vvu: accept: %s", strerror(errno));
        return;
    }
    if (d->fe_fd >= 0 || !takes_frontend(d)) {
        close(c);
        return;
    }
    fe_attach(d, c);
}

static void listen_watch(struct vvu_dev *d, bool on)
{
    if (d->listen_fd < 0 || d->listen_watched == on)
        return;
    if (on && vhu_loop_add(d->loop, d->listen_fd, VHU_LOOP_IN, listen_event, d) < 0) {
        vhu_err("vvu: cannot watch the listening socket");
        return;
    }
    if (!on)
        vhu_loop_del(d->loop, d->listen_fd);
    d->listen_watched = on;
}

static int unix_addr(const char *path, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa->sun_path)) {
        vhu_err("vvu: socket path too long: %s", path);
        return -ENAMETOOLONG;
    }
    strcpy(sa->sun_path, path);
    return 0;
}

static void client_connect(struct vvu_dev *d)
{
    struct sockaddr_un sa;
    int fd;

    if (d->fe_fd >= 0 || !takes_frontend(d) || unix_addr(d->socket_path, &sa) < 0)
        return;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        fe_attach(d, fd);
        return;
    }
    vhu_dbg("vvu: connect %s: %s", d->socket_path, strerror(errno));
    if (fd >= 0)
        close(fd);
    if (d->opts.reconnect_ms)
        timer_arm(d, d->opts.reconnect_ms);
}

static void timer_event(int fd, uint32_t events, void *opaque)
{
    uint64_t n;

    if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        return;
    client_connect(opaque);
}

void vvu_relay_update(struct vvu_dev *d)
{
    bool want = vvu_driver_ok(d) && (d->vstatus & VVU_S_BACKEND_UP);

    if (want == d->serving)
        return;
    d->serving = want;
    if (want) {
        d->await_ack = false; /* BACKEND_UP raised (again): the driver is done with the last one */
        if (d->opts.client)
            client_connect(d);
        else
            listen_watch(d, true);
        return;
    }
    timer_arm(d, 0);
    listen_watch(d, false);
    vvu_relay_disconnect(d, "the driver stopped serving");
}

/* ---- messages -------------------------------------------------------------------------------- */

/* Take the one fd of a vring message (or -1 with NOFD); an eventfd is required. */
static int vring_fd(struct vhu_msg *m, bool need_eventfd, int *fd)
{
    *fd = -1;
    if (m->payload.u64 & VHOST_USER_VRING_NOFD_MASK)
        return 0;
    if (need_eventfd && vhu_fd_is_eventfd(m->fds[0]) != 1)
        return -EINVAL;
    *fd = m->fds[0];
    m->fds[0] = -1;
    return 0;
}

/* Apply a frontend message to the device's resources: 0, or -errno with *why set. */
static int fe_apply(struct vvu_dev *d, struct vhu_msg *m, const char **why)
{
    struct vhu_msg_ctx ctx = {.protocol_features = d->proto_features,
                              .num_queues = d->opts.max_vhost_queues};
    struct vvu_vring *v;
    int r, fd;

    r = vhu_msg_validate(m, &ctx, why);
    if (r < 0)
        return r;
    *why = "the device cannot relay it";
    switch (m->hdr.request) {
    case VHOST_USER_GET_FEATURES:
        /* a full handshake starts here: protocol features are off until it sets them */
        if (!d->proto_acked)
            d->proto_features = 0;
        return 0;
    case VHOST_USER_SET_PROTOCOL_FEATURES:
        if (m->payload.u64 & ~VVU_PROTOCOL_FEATURES_RELAYED) {
            *why = "protocol features the device does not offer";
            return -EPERM;
        }
        d->proto_features = m->payload.u64;
        d->proto_acked = true;
        return 0;
    case VHOST_USER_SET_MEM_TABLE:
        *why = "memory the window cannot show";
        return vvu_window_set(d, m->payload.memory.regions, m->fds, m->payload.memory.nregions);
    case VHOST_USER_ADD_MEM_REG:
        *why = "memory the window cannot show";
        return vvu_window_add(d, &m->payload.memreg.region, m->fds[0]);
    case VHOST_USER_REM_MEM_REG:
        vvu_window_remove(d, &m->payload.memreg.region);
        return 0;
    case VHOST_USER_SET_VRING_KICK:
    case VHOST_USER_SET_VRING_CALL:
    case VHOST_USER_SET_VRING_ERR:
        v = &d->vrings[m->payload.u64 & VHOST_USER_VRING_IDX_MASK];
        *why = "not an eventfd";
        if (vring_fd(m, m->hdr.request != VHOST_USER_SET_VRING_ERR, &fd) < 0)
            return -EINVAL;
        if (m->hdr.request == VHOST_USER_SET_VRING_KICK) {
            kick_set(d, v, fd);
        } else if (m->hdr.request == VHOST_USER_SET_VRING_CALL) {
            vhu_fd_replace(&v->call, fd);
            vvu_layout_changed(d);
        } else {
            vhu_fd_replace(&v->err, fd);
        }
        return 0;
    case VHOST_USER_SET_LOG_BASE:
    case VHOST_USER_SET_LOG_FD:
    case VHOST_USER_SET_BACKEND_REQ_FD:
    case VHOST_USER_SET_INFLIGHT_FD:
    case VHOST_USER_GPU_SET_SOCKET:
    case VHOST_USER_SET_DEVICE_STATE_FD:
        return -EPERM;
    }
    /* Every other message the validator let through carries no fd; refuse one that does. */
    return m->nfds ? -EPERM : 0;
}

/* One whole message from the frontend: apply, then deliver or hold. false: disconnected. */
static bool fe_message(struct vvu_dev *d)
{
    struct vhu_msg *m = d->rx_msg;
    const char *why = NULL;
    int r = fe_apply(d, m, &why);

    vhu_msg_close_fds(m);
    if (r < 0) {
        vhu_err("vvu: frontend %s refused (%s): disconnecting", vhu_msg_name(m->hdr.request),
                why ? why : strerror(-r));
        vvu_relay_disconnect(d, "bad message");
        return false;
    }
    r = vvu_rxq_put(d, &m->hdr, &m->payload);
    if (r < 0) {
        vvu_relay_disconnect(d, "rxq broken");
        return false;
    }
    if (r == 0) {
        /* backpressure: hold this one and stop reading until rxq has buffers */
        d->held = true;
        vhu_loop_del(d->loop, d->fe_fd);
        return false;
    }
    return true;
}

static void fe_read(struct vvu_dev *d)
{
    for (unsigned i = 0; i < RX_BURST && d->fe_fd >= 0 && !d->held; i++) {
        int r = vhu_msg_recv_step(d->fe_fd, d->rx_msg, &d->rx);

        if (r == -EAGAIN)
            return;
        if (r < 0) {
            if (r != -ECONNRESET)
                vhu_err("vvu: frontend message: %s", strerror(-r));
            vvu_relay_disconnect(d, r == -ECONNRESET ? "end of stream" : "receive error");
            return;
        }
        if (!fe_message(d))
            return;
    }
}

static void fe_readable(int fd, uint32_t events, void *opaque)
{
    fe_read(opaque);
}

void vvu_relay_rx_ready(struct vvu_dev *d)
{
    struct vhu_msg *m = d->rx_msg;
    int r;

    if (d->fe_fd < 0 || !d->held)
        return;
    r = vvu_rxq_put(d, &m->hdr, &m->payload);
    if (r < 0) {
        vvu_relay_disconnect(d, "rxq broken");
        return;
    }
    if (r == 0)
        return;
    d->held = false;
    if (vhu_loop_add(d->loop, d->fe_fd, VHU_LOOP_IN, fe_readable, d) < 0) {
        vvu_relay_disconnect(d, "cannot watch the socket");
        return;
    }
    fe_read(d);
}

void vvu_relay_reply(struct vvu_dev *d, uint8_t *msg, uint32_t len)
{
    struct vhu_msg *m = d->tx_msg;
    int r;

    if (d->fe_fd < 0) {
        vhu_dbg("vvu: reply without a frontend dropped");
        return;
    }
    memcpy(&m->hdr, msg, sizeof(m->hdr));
    memcpy(&m->payload, msg + sizeof(m->hdr), len - sizeof(m->hdr));
    m->nfds = 0;
    /* The relay contract: only relayed protocol features reach the frontend; memory slots are
     * bounded by the window's region array. */
    if (m->hdr.size == sizeof(uint64_t)) {
        if (m->hdr.request == VHOST_USER_GET_PROTOCOL_FEATURES)
            m->payload.u64 &= VVU_PROTOCOL_FEATURES_RELAYED;
        else if (m->hdr.request == VHOST_USER_GET_MAX_MEM_SLOTS)
            m->payload.u64 = VHU_MIN(m->payload.u64, (uint64_t)VVU_MAX_MEM_SLOTS);
    }
    r = vhu_msg_send(d->fe_fd, m);
    if (r < 0) {
        vhu_err("vvu: reply %s to the frontend: %s", vhu_msg_name(m->hdr.request), strerror(-r));
        vvu_relay_disconnect(d, "send error");
        return;
    }
    d->stats.msgs_to_frontend++;
}

/* ---- setup ----------------------------------------------------------------------------------- */

static int listen_path(struct vvu_dev *d)
{
    struct sockaddr_un sa;
    struct stat st;
    int fd, r = unix_addr(d->socket_path, &sa);

    if (r < 0)
        return r;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    /* a socket left by an earlier run: replace it (anything else at the path is kept) */
    if (lstat(d->socket_path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(d->socket_path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
        r = -errno;
        vhu_err("vvu: listen on %s: %s", d->socket_path, strerror(-r));
        close(fd);
        return r;
    }
    d->listen_fd = fd;
    d->unlink_path = true;
    return 0;
}

int vvu_relay_init(struct vvu_dev *d)
{
    if (d->opts.client) {
        d->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (d->timer_fd < 0)
            return -errno;
        if (vhu_loop_add(d->loop, d->timer_fd, VHU_LOOP_IN, timer_event, d) < 0) {
            vhu_fd_close(&d->timer_fd);
            return -EIO;
        }
        return 0;
    }
    if (d->opts.socket_fd >= 0) {
        d->listen_fd = fcntl(d->opts.socket_fd, F_DUPFD_CLOEXEC, 0);
        if (d->listen_fd < 0)
            return -errno;
        return vhu_fd_set_nonblock(d->listen_fd, true);
    }
    return listen_path(d);
}

void vvu_relay_fini(struct vvu_dev *d)
{
    /* the bus adapter may be gone already: nothing is raised from here on */
    d->pci.bus_ops = NULL;
    d->serving = false;
    vvu_relay_disconnect(d, "device freed");
    listen_watch(d, false);
    vhu_fd_close(&d->listen_fd);
    if (d->unlink_path)
        unlink(d->socket_path);
    if (d->timer_fd >= 0)
        vhu_loop_del(d->loop, d->timer_fd);
    vhu_fd_close(&d->timer_fd);
    if (d->vrings)
        vrings_clear(d);
    vvu_window_clear(d);
}
