/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHUCTL_CONTROL_H
#define VHUCTL_CONTROL_H
#include <stdio.h>

/* vhuctl --control PATH COMMAND...: argv[0] is COMMAND. Returns the exit status. */
int vhuctl_control_main(const char *path, int argc, char **argv);
void vhuctl_control_usage(FILE *f);

#endif
