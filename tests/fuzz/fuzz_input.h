/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The fuzz targets' input reader: the fuzzer's bytes consumed front to back. Past the end every
 * read returns zeros, so any input is a complete (if short) program.
 */
#ifndef VHU_FUZZ_INPUT_H
#define VHU_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct fin {
    const uint8_t *p;
    size_t n;
};

static inline size_t fin_left(const struct fin *f) { return f->n; }

/* Copy up to len bytes into dst, zero-filling what the input does not have. */
static inline void fin_bytes(struct fin *f, void *dst, size_t len)
{
    size_t k = len < f->n ? len : f->n;

    memcpy(dst, f->p, k);
    memset((uint8_t *)dst + k, 0, len - k);
    f->p += k;
    f->n -= k;
}

/* fin_u8 .. fin_u64: the next bytes, native endian (the targets run where they are built). */
#define FIN_INT(bits)                                                                       \
    static inline uint##bits##_t fin_u##bits(struct fin *f)                                 \
    {                                                                                       \
        uint##bits##_t v;                                                                   \
        fin_bytes(f, &v, sizeof(v));                                                        \
        return v;                                                                           \
    }
FIN_INT(8)
FIN_INT(16)
FIN_INT(32)
FIN_INT(64)
#undef FIN_INT

/* The library's log lines are formatted (so their arguments are exercised) and dropped, unless
 * FUZZ_VERBOSE is set: a fuzz run would drown in "bad descriptor" lines. */
#include <stdlib.h>
#include "vhu/log.h"
static inline void fuzz_log_drop(enum vhu_log_level level, const char *msg, void *opaque)
{
    (void)level, (void)msg, (void)opaque;
}

/* libFuzzer calls this once before the first input (each target includes this header once). */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    if (getenv("FUZZ_VERBOSE"))
        vhu_log_set_sink(vhu_log_stderr_sink, NULL, VHU_LOG_DEBUG);
    else
        vhu_log_set_sink(fuzz_log_drop, NULL, VHU_LOG_DEBUG);
    return 0;
}

#endif
