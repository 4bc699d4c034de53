/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_UTIL_H
#define VHU_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifndef VHU_EXPORT
#define VHU_EXPORT __attribute__((visibility("default")))
#endif

#define VHU_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define VHU_MIN(a, b) ((a) < (b) ? (a) : (b))
#define VHU_MAX(a, b) ((a) > (b) ? (a) : (b))
#define VHU_ALIGN_UP(x, a) (((x) + (a) - 1) & ~((__typeof__(x))(a) - 1))
#define VHU_BIT(n) (1ULL << (n))
#define VHU_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))
#define vhu_likely(x) __builtin_expect(!!(x), 1)
#define vhu_unlikely(x) __builtin_expect(!!(x), 0)

/* Memory barriers for shared rings (virtio 2.7.13: the driver and device run concurrently). */
#define vhu_smp_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define vhu_smp_rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define vhu_smp_wmb() __atomic_thread_fence(__ATOMIC_RELEASE)

/*
 * Fds: every fd is CLOEXEC and every slot starts as -1. vhu_fd_replace() stores a new value and
 * closes the old one; vhu_fd_close() closes and sets -1. Both keep errno.
 */
void vhu_fd_close(int *slot);
void vhu_fd_replace(int *slot, int fd);
int vhu_fd_set_nonblock(int fd, bool on);
/* eventfd helpers: signal adds 1; drain reads and returns the counter (0 if none). */
int vhu_eventfd_new(void);
int vhu_eventfd_signal(int fd);
uint64_t vhu_eventfd_drain(int fd);
/* A memfd of size bytes sealed against shrinking and growing (and further sealing), the way a
 * peer that maps it wants it (vhu_mem_map_fd refuses a sealable memfd that could shrink). */
int vhu_memfd_new_sealed(const char *name, uint64_t size);
/* What fd is, as /proc/self/fd names it ("pipe:[123]", "anon_inode:[eventfd]", a path);
 * "?" when it cannot be read. */
void vhu_fd_describe(int fd, char *buf, size_t len);
/* 1: fd is an eventfd; 0: it is something else; -errno: cannot tell (fd closed, no /proc). */
int vhu_fd_is_eventfd(int fd);
/* Number of open fds of this process (for leak tests). */
int vhu_fd_count_self(void);

/* iovec helpers: copy between iovecs and flat buffers; return bytes copied. */
size_t vhu_iov_size(const struct iovec *iov, unsigned n);
size_t vhu_iov_to_buf(const struct iovec *iov, unsigned n, size_t off, void *buf, size_t len);
size_t vhu_iov_from_buf(const struct iovec *iov, unsigned n, size_t off, const void *buf, size_t len);
/* vhu_iov_to_buf(iov, n, 0, buf, len) for a small request header of constant len: inline when
 * the first segment holds all of it, as drivers lay requests out. Guest memory is copied once:
 * the barrier keeps the compiler from reading it again in place of buf. */
static inline size_t vhu_iov_to_buf_head(const struct iovec *iov, unsigned n, void *buf,
                                         size_t len)
{
    if (n && iov[0].iov_len >= len) {
        __builtin_memcpy(buf, iov[0].iov_base, len);
        __asm__ __volatile__("" ::: "memory");
        return len;
    }
    return vhu_iov_to_buf(iov, n, 0, buf, len);
}

/* Monotonic clock in nanoseconds. */
uint64_t vhu_now_ns(void);

#endif
