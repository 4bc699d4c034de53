/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHUCTL_BLK_H
#define VHUCTL_BLK_H

#include <stdio.h>

/*
 * `vhuctl blk verify|bench ...`: virtio-blk driver side over the frontend library.
 * argv[0] is "blk". Returns the process exit status (0 ok, 1 failure, 2 usage).
 */
int vhuctl_blk_main(int argc, char **argv);
void vhuctl_blk_usage(FILE *f);

#endif
