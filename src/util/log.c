/* SPDX-License-Identifier: BSD-3-Clause */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "vhu/log.h"
#include "vhu/util.h"

static vhu_log_sink_fn *g_sink;
static void *g_sink_opaque;
static enum vhu_log_level g_max_level = VHU_LOG_INFO;

VHU_EXPORT void vhu_log_set_sink(vhu_log_sink_fn *fn, void *opaque, enum vhu_log_level max_level)
{
    g_sink = fn;
    g_sink_opaque = opaque;
    g_max_level = max_level;
}

VHU_EXPORT void vhu_log_stderr_sink(enum vhu_log_level level, const char *msg, void *opaque)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    (void)opaque;
    fprintf(stderr, "vhu: %s: %s\n", names[level <= VHU_LOG_DEBUG ? level : VHU_LOG_DEBUG], msg);
}

VHU_EXPORT bool vhu_log_enabled(enum vhu_log_level level)
{
    return g_sink != NULL && level <= g_max_level;
}

VHU_EXPORT void vhu_vlogf(enum vhu_log_level level, const char *fmt, va_list ap)
{
    char buf[512];

    if (!vhu_log_enabled(level))
        return;
    vsnprintf(buf, sizeof(buf), fmt, ap);
    g_sink(level, buf, g_sink_opaque);
}

VHU_EXPORT void vhu_logf(enum vhu_log_level level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vhu_vlogf(level, fmt, ap);
    va_end(ap);
}

VHU_EXPORT bool vhu_ratelimit_ok(struct vhu_ratelimit *rl)
{
    unsigned long long now = vhu_now_ns() / 1000000ULL;

    if (rl->window_start_ms == 0 || now - rl->window_start_ms >= rl->interval_ms) {
        if (rl->suppressed)
            vhu_logf(VHU_LOG_WARN, "%u similar messages suppressed", rl->suppressed);
        rl->window_start_ms = now ? now : 1;
        rl->printed = 0;
        rl->suppressed = 0;
    }
    if (rl->printed < rl->burst) {
        rl->printed++;
        return true;
    }
    rl->suppressed++;
    return false;
}
