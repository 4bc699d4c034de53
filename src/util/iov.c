/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include "vhu/util.h"

VHU_EXPORT size_t vhu_iov_size(const struct iovec *iov, unsigned n)
{
    size_t s = 0;

    for (unsigned i = 0; i < n; i++)
        s += iov[i].iov_len;
    return s;
}

static size_t iov_copy(const struct iovec *iov, unsigned n, size_t off, void *buf, size_t len,
                       bool to_buf)
{
    size_t done = 0;

    for (unsigned i = 0; i < n && done < len; i++) {
        if (off >= iov[i].iov_len) {
            off -= iov[i].iov_len;
            continue;
        }
        size_t chunk = VHU_MIN(iov[i].iov_len - off, len - done);
        char *p = (char *)iov[i].iov_base + off;
        if (to_buf)
            memcpy((char *)buf + done, p, chunk);
        else
            memcpy(p, (const char *)buf + done, chunk);
        done += chunk;
        off = 0;
    }
    return done;
}

VHU_EXPORT size_t vhu_iov_to_buf(const struct iovec *iov, unsigned n, size_t off, void *buf,
                                 size_t len)
{
    return iov_copy(iov, n, off, buf, len, true);
}

VHU_EXPORT size_t vhu_iov_from_buf(const struct iovec *iov, unsigned n, size_t off,
                                   const void *buf, size_t len)
{
    return iov_copy(iov, n, off, (void *)buf, len, false);
}
