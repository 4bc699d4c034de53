/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "args.h"

static int parse(const char *s, uint64_t max, bool suffix, uint64_t *out)
{
    char *end;
    unsigned long long v;
    unsigned shift = 0;

    errno = 0;
    if (*s == '-')
        return -EINVAL; /* strtoull would quietly negate it */
    v = strtoull(s, &end, 0);
    if (errno || end == s)
        return -EINVAL;
    if (suffix) {
        switch (*end) {
        case 'k': case 'K': shift = 10; end++; break;
        case 'm': case 'M': shift = 20; end++; break;
        case 'g': case 'G': shift = 30; end++; break;
        case 't': case 'T': shift = 40; end++; break;
        default: break;
        }
    }
    if (*end != '\0' || v > (UINT64_MAX >> shift) || ((uint64_t)v << shift) > max)
        return -EINVAL;
    *out = (uint64_t)v << shift;
    return 0;
}

int vhu_arg_uint(const char *s, uint64_t max, uint64_t *out)
{
    return parse(s, max, false, out);
}

int vhu_arg_size(const char *s, uint64_t *out)
{
    return parse(s, UINT64_MAX, true, out);
}
