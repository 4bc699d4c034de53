/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_LOG_H
#define VHU_LOG_H

#include <stdarg.h>
#include <stdbool.h>

/* The library never prints by itself: every line goes through a sink set by the caller. */
enum vhu_log_level {
    VHU_LOG_ERROR = 0,
    VHU_LOG_WARN = 1,
    VHU_LOG_INFO = 2,
    VHU_LOG_DEBUG = 3,
};

typedef void vhu_log_sink_fn(enum vhu_log_level level, const char *msg, void *opaque);

/* Install a sink (NULL silences the library) and the most verbose level it wants. */
void vhu_log_set_sink(vhu_log_sink_fn *fn, void *opaque, enum vhu_log_level max_level);
/* A ready-made sink writing "vhu: LEVEL: msg\n" to stderr. */
void vhu_log_stderr_sink(enum vhu_log_level level, const char *msg, void *opaque);

bool vhu_log_enabled(enum vhu_log_level level);
void vhu_logf(enum vhu_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void vhu_vlogf(enum vhu_log_level level, const char *fmt, va_list ap);

/*
 * Rate limit for guest-triggerable messages: at most `burst` lines per `interval_ms`, then one
 * "N messages suppressed" line when the window reopens.
 */
struct vhu_ratelimit {
    unsigned burst;
    unsigned interval_ms;
    unsigned printed;
    unsigned suppressed;
    unsigned long long window_start_ms;
};
#define VHU_RATELIMIT_INIT(b, ms) { .burst = (b), .interval_ms = (ms) }
bool vhu_ratelimit_ok(struct vhu_ratelimit *rl);

#define vhu_err(...) vhu_logf(VHU_LOG_ERROR, __VA_ARGS__)
#define vhu_warn(...) vhu_logf(VHU_LOG_WARN, __VA_ARGS__)
#define vhu_info(...) vhu_logf(VHU_LOG_INFO, __VA_ARGS__)
#define vhu_dbg(...)                                  \
    do {                                              \
        if (vhu_log_enabled(VHU_LOG_DEBUG))           \
            vhu_logf(VHU_LOG_DEBUG, __VA_ARGS__);     \
    } while (0)

/* Guest-triggerable error: one line, rate-limited per call site. */
#define vhu_err_rl(...)                                                     \
    do {                                                                    \
        static struct vhu_ratelimit vhu_rl__ = VHU_RATELIMIT_INIT(10, 5000); \
        if (vhu_ratelimit_ok(&vhu_rl__))                                    \
            vhu_logf(VHU_LOG_ERROR, __VA_ARGS__);                           \
    } while (0)

#endif
