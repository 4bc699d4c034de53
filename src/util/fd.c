/* SPDX-License-Identifier: BSD-3-Clause */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vhu/util.h"

VHU_EXPORT void vhu_fd_close(int *slot)
{
    int saved = errno;

    if (*slot >= 0)
        close(*slot);
    *slot = -1;
    errno = saved;
}

VHU_EXPORT void vhu_fd_replace(int *slot, int fd)
{
    if (*slot == fd)
        return;
    vhu_fd_close(slot);
    *slot = fd;
}

VHU_EXPORT int vhu_fd_set_nonblock(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0)
        return -errno;
    fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    if (fcntl(fd, F_SETFL, fl) < 0)
        return -errno;
    return 0;
}

VHU_EXPORT int vhu_eventfd_new(void)
{
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

    return fd < 0 ? -errno : fd;
}

VHU_EXPORT int vhu_eventfd_signal(int fd)
{
    uint64_t one = 1;

    for (;;) {
        ssize_t r = write(fd, &one, sizeof(one));
        if (r == (ssize_t)sizeof(one))
            return 0;
        if (r < 0 && errno == EINTR)
            continue;
        /* EAGAIN means the counter is saturated: the peer has a wake-up pending anyway. */
        if (r < 0 && errno == EAGAIN)
            return 0;
        return r < 0 ? -errno : -EIO;
    }
}

VHU_EXPORT uint64_t vhu_eventfd_drain(int fd)
{
    uint64_t v = 0;

    for (;;) {
        ssize_t r = read(fd, &v, sizeof(v));
        if (r < 0 && errno == EINTR)
            continue;
        return r == (ssize_t)sizeof(v) ? v : 0;
    }
}

VHU_EXPORT int vhu_memfd_new_sealed(const char *name, uint64_t size)
{
    int fd, r;

    if (size > INT64_MAX)
        return -EINVAL;
    fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)size) < 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

static ssize_t fd_link(int fd, char *buf, size_t len)
{
    char path[40];
    ssize_t n;

    if (len == 0)
        return -EINVAL;
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    n = readlink(path, buf, len - 1);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    return n;
}

VHU_EXPORT void vhu_fd_describe(int fd, char *buf, size_t len)
{
    if (len && fd_link(fd, buf, len) < 0)
        snprintf(buf, len, "?");
}

/* The kernel names the file of every eventfd "[eventfd]" on the anonymous inode (fs/eventfd.c,
 * anon_inode_getfile), and no other file has that link: a pipe is "pipe:[N]", a socket
 * "socket:[N]", a memfd "/memfd:NAME (deleted)", timerfd/signalfd/epoll "anon_inode:[...]"
 * with their own names; a file in a file system reads as its absolute path ("/..."). (The inode's
 * mode is no help: anonymous inodes have had no file type bits, and newer kernels call them
 * regular files.) */
VHU_EXPORT int vhu_fd_is_eventfd(int fd)
{
    char buf[32];
    ssize_t n = fd_link(fd, buf, sizeof(buf));

    if (n < 0)
        return (int)n;
    return strcmp(buf, "anon_inode:[eventfd]") == 0;
}

VHU_EXPORT int vhu_fd_count_self(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    int n = 0;

    if (!d)
        return -errno;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n - 1; /* the directory stream's own fd */
}

VHU_EXPORT uint64_t vhu_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}
