/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sock.h"
#include "vhu/log.h"
#include "vhu/util.h"

/* Control buffer for VHU_SOCK_MAX_FDS fds, aligned for struct cmsghdr. */
union sock_cmsg {
    char buf[CMSG_SPACE(sizeof(int) * VHU_SOCK_MAX_FDS)];
    struct cmsghdr align;
};

uint64_t vhu_sock_deadline(int ms)
{
    return ms < 0 ? 0 : vhu_now_ns() + (uint64_t)ms * 1000000ull;
}

int vhu_sock_wait(int sock, short events, uint64_t deadline_ns)
{
    struct pollfd p = {.fd = sock, .events = events};

    for (;;) {
        int ms = -1;
        if (deadline_ns) {
            uint64_t now = vhu_now_ns();
            if (now >= deadline_ns)
                return -ETIMEDOUT;
            ms = (int)VHU_MIN((deadline_ns - now + 999999) / 1000000, (uint64_t)INT32_MAX);
        }
        int r = poll(&p, 1, ms);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
}

/*
 * Move the SCM_RIGHTS fds of mh into fds[*nfds .. max). Any that do not fit: all of this call's
 * are closed (none is left half-owned) and false is returned.
 */
static bool take_fds(struct msghdr *mh, int *fds, unsigned max, unsigned *nfds)
{
    unsigned first = *nfds;
    bool fit = true;

    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char *data = CMSG_DATA(c);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, data + i * sizeof(int), sizeof(fd));
            if (*nfds < max) {
                fds[(*nfds)++] = fd;
            } else {
                close(fd);
                fit = false;
            }
        }
    }
    if (!fit) {
        while (*nfds > first)
            vhu_fd_close(&fds[--(*nfds)]);
    }
    return fit;
}

ssize_t vhu_sock_recv_fds(int sock, void *buf, size_t len, int *fds, unsigned max, unsigned *nfds)
{
    for (;;) {
        union sock_cmsg ctl;
        struct iovec iov = {.iov_base = buf, .iov_len = len};
        struct msghdr mh = {
            .msg_iov = &iov,
            .msg_iovlen = 1,
            .msg_control = ctl.buf,
            .msg_controllen = sizeof(ctl.buf),
        };
        ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }
        bool fit = mh.msg_controllen ? take_fds(&mh, fds, max, nfds) : true;
        /* More fds than a message may carry: the kernel or we dropped some, the message is lost. */
        if ((mh.msg_flags & MSG_CTRUNC) || !fit)
            return -EBADMSG;
        return n == 0 ? -ECONNRESET : n;
    }
}

int vhu_sock_send_fds(int sock, const struct iovec *iov_in, unsigned niov, const int *fds,
                      unsigned nfds, int timeout_ms)
{
    union sock_cmsg ctl;
    struct iovec iov[4];
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = niov};
    size_t left = 0;
    uint64_t deadline = 0;

    if (niov > VHU_ARRAY_SIZE(iov) || nfds > VHU_SOCK_MAX_FDS)
        return -EINVAL;
    for (unsigned i = 0; i < niov; i++) {
        iov[i] = iov_in[i];
        left += iov[i].iov_len;
    }
    if (nfds) {
        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    while (left) {
        ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!deadline)
                    deadline = vhu_sock_deadline(timeout_ms);
                int r = vhu_sock_wait(sock, POLLOUT, deadline);
                if (r < 0)
                    return r;
                continue;
            }
            return -errno;
        }
        /* The fds went with the first byte; the rest is plain data. */
        mh.msg_control = NULL;
        mh.msg_controllen = 0;
        left -= (size_t)n;
        for (size_t done = (size_t)n; done && mh.msg_iovlen;) {
            struct iovec *v = mh.msg_iov;
            if (done < v->iov_len) {
                v->iov_base = (char *)v->iov_base + done;
                v->iov_len -= done;
                break;
            }
            done -= v->iov_len;
            mh.msg_iov++;
            mh.msg_iovlen--;
        }
    }
    return 0;
}

int vhu_sock_addr(const char *path, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa->sun_path))
        return -ENAMETOOLONG;
    strcpy(sa->sun_path, path);
    return 0;
}

/*
 * Make room for our socket at path. Nothing there: fine. A socket nobody answers on (connect is
 * refused: a killed run's leftover) is removed. Anything else is refused, never removed: a file
 * that is not a socket (the path names the wrong file), or a socket someone answers on (another
 * server is serving it).
 */
static int clear_path(const char *path, const struct sockaddr_un *sa)
{
    struct stat st, again;
    int probe, r;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode)) {
        vhu_err("%s exists and is not a socket: refusing to replace it", path);
        return -EEXIST;
    }
    probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (probe < 0)
        return -errno;
    r = connect(probe, (const struct sockaddr *)sa, sizeof(*sa)) < 0 ? -errno : 0;
    close(probe);
    if (r == 0 || r == -EAGAIN) { /* accepted, or a full backlog: someone listens */
        vhu_err("%s is in use: another server is listening on it", path);
        return -EADDRINUSE;
    }
    if (r != -ECONNREFUSED) {
        vhu_err("%s: cannot tell whether the socket there is stale (%s): leaving it", path,
                strerror(-r));
        return r;
    }
    /* Stale. Remove it only if it is still the file we probed. */
    if (lstat(path, &again) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (again.st_dev != st.st_dev || again.st_ino != st.st_ino)
        return -EADDRINUSE;
    vhu_info("%s: removing a stale socket", path);
    return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

/*
 * Bind and listen on a temporary name beside path, then rename it into place: whoever sees the
 * socket at path (a frontend, a script waiting for it) can connect at once. Binding path itself
 * makes the file appear before listen(), and a connect in between is refused. Falls back to
 * that when the temporary name does not fit in sun_path.
 */
static int bind_listen(int fd, const char *path, const struct sockaddr_un *sa, int backlog,
                       struct stat *st)
{
    struct sockaddr_un tmp = {.sun_family = AF_UNIX};
    int n = snprintf(tmp.sun_path, sizeof(tmp.sun_path), "%s.%d.tmp", path, (int)getpid());
    bool renamed = n > 0 && (size_t)n < sizeof(tmp.sun_path);
    int r;

    if (renamed)
        unlink(tmp.sun_path); /* our own pid's leftover, if any */
    else
        tmp = *sa;
    if (bind(fd, (struct sockaddr *)&tmp, sizeof(tmp)) < 0) {
        r = -errno; /* nothing of ours at tmp to remove */
    } else {
        r = lstat(tmp.sun_path, st) < 0 || listen(fd, backlog) < 0 ? -errno : 0;
        if (r == 0 && renamed &&
            renameat2(AT_FDCWD, tmp.sun_path, AT_FDCWD, path, RENAME_NOREPLACE) < 0)
            r = errno == EEXIST ? -EADDRINUSE : -errno;
        if (r < 0)
            unlink(tmp.sun_path);
    }
    if (r == -EADDRINUSE) /* someone took the path since we looked */
        vhu_err("%s is in use: another process created it first", path);
    return r;
}

int vhu_sock_listen_path(const char *path, int backlog, int *fd_out, struct vhu_sock_path *own)
{
    struct sockaddr_un sa;
    struct stat st;
    int fd, r = vhu_sock_addr(path, &sa);

    if (r < 0)
        return r;
    r = clear_path(path, &sa);
    if (r < 0)
        return r;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    r = bind_listen(fd, path, &sa, backlog, &st);
    /* Ours from here: remember which file it is, to remove only that one at exit. */
    if (r == 0 && !(own->path = strdup(path))) {
        unlink(path);
        r = -ENOMEM;
    }
    if (r < 0) {
        close(fd);
        return r;
    }
    own->dev = st.st_dev;
    own->ino = st.st_ino;
    *fd_out = fd;
    return 0;
}

void vhu_sock_path_release(struct vhu_sock_path *own)
{
    struct stat st;

    if (!own->path)
        return;
    if (lstat(own->path, &st) == 0) {
        if (S_ISSOCK(st.st_mode) && st.st_dev == own->dev && st.st_ino == own->ino)
            unlink(own->path);
        else
            vhu_info("%s is another process's now: leaving it", own->path);
    }
    free(own->path);
    own->path = NULL;
}
