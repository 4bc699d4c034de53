/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_UTIL_SOCK_H
#define VHU_UTIL_SOCK_H

/*
 * AF_UNIX stream helpers shared by the message codecs (vhost-user, vfio-user) and the listening
 * transports: fds in SCM_RIGHTS, sends and waits with a deadline, a listening socket at a path
 * that never removes a file it should not.
 */
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>

#ifdef VHU_DEVICE_BUILD
#error "util/sock.h is not part of the device API"
#endif

/* The most fds one recvmsg takes; more are closed and the read fails (-EBADMSG). */
#define VHU_SOCK_MAX_FDS 64

/* Monotonic deadline ms from now; 0 (no deadline) when ms < 0. */
uint64_t vhu_sock_deadline(int ms);
/* Wait until sock is ready for `events` (POLLIN/POLLOUT), until deadline_ns (0: none). */
int vhu_sock_wait(int sock, short events, uint64_t deadline_ns);

/*
 * One recvmsg of at most len bytes, never blocking. Received fds (CLOEXEC) are appended to
 * fds[*nfds .. max); when they do not fit (or the kernel truncated them) every one of this call is
 * closed and -EBADMSG returned (the fds already in fds[] stay the caller's). Returns the byte
 * count (> 0), -EAGAIN, -ECONNRESET on end of stream, or -errno.
 */
ssize_t vhu_sock_recv_fds(int sock, void *buf, size_t len, int *fds, unsigned max, unsigned *nfds);

/*
 * Send all of iov (nothing in it is modified), the fds with the first byte. Never blocks in the
 * kernel: a full socket buffer is waited for, at most timeout_ms for the whole message.
 */
int vhu_sock_send_fds(int sock, const struct iovec *iov, unsigned niov, const int *fds,
                      unsigned nfds, int timeout_ms);

/* sockaddr_un for path; -ENAMETOOLONG when it does not fit. */
int vhu_sock_addr(const char *path, struct sockaddr_un *sa);

/* A socket file we created: removed at release only if the file there is still that one. */
struct vhu_sock_path {
    char *path;
    dev_t dev;
    ino_t ino;
};

/*
 * Listen at path (non-blocking, CLOEXEC). A stale socket there (connect refused) is removed;
 * anything else (not a socket: -EEXIST; someone listening: -EADDRINUSE) is refused and left
 * alone, with a message.
 */
int vhu_sock_listen_path(const char *path, int backlog, int *fd, struct vhu_sock_path *own);
/* Unlink own->path if the file there is still ours; free the name. */
void vhu_sock_path_release(struct vhu_sock_path *own);

#endif
