/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The two ends of QEMU's multi-process proxy socket (`-device x-pci-proxy-dev,fd=N`).
 *
 * QEMU's end: connect to the device process's AF_UNIX socket and exec QEMU with the connected
 * socket inherited as `-device x-pci-proxy-dev,fd=N`:
 *
 *   VVU_PROXY_SOCK=PATH [VVU_QEMU=qemu-system-x86_64] vvu_proxy_launch [QEMU ARGS...]
 *
 * Environment rather than arguments, so tests/guest/lib.sh can run it as its $QEMU.
 *
 * The device's end, for a program that takes an already connected socket (`vhud vvu
 * --mpqemu-fd FD`):
 *
 *   vvu_proxy_launch --listen PATH [--timeout SECS] -- PROGRAM [ARGS...]
 *
 * listens on PATH (which must not exist), accepts one connection (QEMU's, through the first
 * form), removes PATH and execs PROGRAM ARGS... --mpqemu-fd N with the accepted socket as N, the
 * only descriptor it passes on beyond stdio. The exec keeps the process id, so the caller's $! is
 * the program's. No connection within SECS (default 60): exit 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int set_path(struct sockaddr_un *sa, const char *path)
{
    if (!path || !*path || strlen(path) >= sizeof(sa->sun_path)) {
        fprintf(stderr, "vvu_proxy_launch: bad or too long socket path '%s'\n",
                path ? path : "");
        return -1;
    }
    sa->sun_family = AF_UNIX;
    strcpy(sa->sun_path, path);
    return 0;
}

/* Accept one connection on a fresh listening socket at path: the connected fd, or -1. */
static int accept_one(const char *path, int timeout_s)
{
    struct sockaddr_un sa = {0};
    struct pollfd pfd = {.events = POLLIN};
    int lfd, fd = -1, r;

    if (set_path(&sa, path) < 0)
        return -1;
    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, "vvu_proxy_launch: bind %s: %s\n", path, strerror(errno));
        if (lfd >= 0)
            close(lfd);
        return -1;
    }
    if (listen(lfd, 1) < 0) {
        fprintf(stderr, "vvu_proxy_launch: listen %s: %s\n", path, strerror(errno));
        goto out;
    }
    pfd.fd = lfd;
    do
        r = poll(&pfd, 1, timeout_s * 1000);
    while (r < 0 && errno == EINTR);
    if (r <= 0) {
        fprintf(stderr, "vvu_proxy_launch: %s: %s\n", path,
                r == 0 ? "nobody connected in time" : strerror(errno));
        goto out;
    }
    /* no CLOEXEC: the program inherits it */
    fd = accept4(lfd, NULL, NULL, 0);
    if (fd < 0)
        fprintf(stderr, "vvu_proxy_launch: accept %s: %s\n", path, strerror(errno));
out:
    close(lfd);
    unlink(path);
    return fd;
}

static int listen_main(int argc, char **argv)
{
    const char *path = argv[2];
    int timeout_s = 60, first, fd;
    char fdarg[16];
    char **args;

    first = 3;
    if (argc > 4 && strcmp(argv[3], "--timeout") == 0) {
        timeout_s = atoi(argv[4]);
        first = 5;
    }
    if (first >= argc || strcmp(argv[first], "--") != 0 || first + 1 >= argc ||
        timeout_s <= 0 || timeout_s > 3600) {
        fprintf(stderr, "usage: vvu_proxy_launch --listen PATH [--timeout SECS] -- PROGRAM "
                        "[ARGS...]\n");
        return 2;
    }
    first++;
    fd = accept_one(path, timeout_s);
    if (fd < 0)
        return 1;
    snprintf(fdarg, sizeof(fdarg), "%d", fd);
    args = calloc((size_t)(argc - first) + 3, sizeof(*args));
    if (!args) {
        close(fd);
        return 1;
    }
    for (int i = first; i < argc; i++)
        args[i - first] = argv[i];
    args[argc - first] = "--mpqemu-fd";
    args[argc - first + 1] = fdarg;
    execvp(args[0], args);
    fprintf(stderr, "vvu_proxy_launch: exec %s: %s\n", args[0], strerror(errno));
    close(fd);
    free(args);
    return 127;
}

int main(int argc, char **argv)
{
    const char *path = getenv("VVU_PROXY_SOCK"), *qemu = getenv("VVU_QEMU");
    struct sockaddr_un sa = {0};
    char dev[64];
    char **args;
    int fd;

    if (argc >= 3 && strcmp(argv[1], "--listen") == 0)
        return listen_main(argc, argv);
    if (!qemu || !*qemu)
        qemu = "qemu-system-x86_64";
    if (!path) {
        fprintf(stderr, "vvu_proxy_launch: set VVU_PROXY_SOCK to the device's socket path\n");
        return 2;
    }
    if (set_path(&sa, path) < 0)
        return 2;
    fd = socket(AF_UNIX, SOCK_STREAM, 0); /* no CLOEXEC: QEMU inherits it */
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, "vvu_proxy_launch: connect %s: %s\n", path, strerror(errno));
        return 1;
    }
    snprintf(dev, sizeof(dev), "x-pci-proxy-dev,id=vvu0,fd=%d", fd);
    args = calloc((size_t)argc + 3, sizeof(*args));
    if (!args)
        return 1;
    args[0] = (char *)qemu;
    for (int i = 1; i < argc; i++)
        args[i] = argv[i];
    args[argc] = "-device";
    args[argc + 1] = dev;
    execvp(qemu, args);
    fprintf(stderr, "vvu_proxy_launch: exec %s: %s\n", qemu, strerror(errno));
    return 127;
}
