/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHUCTL_NET_H
#define VHUCTL_NET_H

#include <stdio.h>

/*
 * `vhuctl net send|recv|bench ...`: virtio-net driver side over the frontend library.
 * argv[0] is "net". Returns the process exit status (0 ok, 1 failure, 2 usage).
 */
int vhuctl_net_main(int argc, char **argv);
void vhuctl_net_usage(FILE *f);

#endif
