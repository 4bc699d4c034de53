/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_CLI_ARGS_H
#define VHU_CLI_ARGS_H

#include <stdint.h>

/* Command-line number parsing shared by vhud and vhuctl. Both return 0 or -EINVAL. */

/* A whole decimal/hex/octal number no larger than max. */
int vhu_arg_uint(const char *s, uint64_t max, uint64_t *out);
/* A byte count with an optional K/M/G/T suffix (powers of 1024): "4096", "64K", "1G". */
int vhu_arg_size(const char *s, uint64_t *out);

#endif
