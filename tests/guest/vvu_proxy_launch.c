/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Start QEMU with a PCI function served by another process: connect to that process's AF_UNIX
 * socket and exec QEMU with the connected socket inherited as `-device x-pci-proxy-dev,fd=N`.
 *
 *   VVU_PROXY_SOCK=PATH [VVU_QEMU=qemu-system-x86_64] vvu_proxy_launch [QEMU ARGS...]
 *
 * Environment rather than arguments, so tests/guest/lib.sh can run it as its $QEMU.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    const char *path = getenv("VVU_PROXY_SOCK"), *qemu = getenv("VVU_QEMU");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char dev[64];
    char **args;
    int fd;

    if (!qemu || !*qemu)
        qemu = "qemu-system-x86_64";
    if (!path || strlen(path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "vvu_proxy_launch: set VVU_PROXY_SOCK to the device's socket path\n");
        return 2;
    }
    strcpy(sa.sun_path, path);
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
