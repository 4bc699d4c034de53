/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * A tiny test harness: each test file is one executable; TEST() functions register themselves;
 * main() runs them all (or the ones named on the command line) and prints "N passed, N failed".
 * Exit 0 on success, 1 on failure, 77 when every test skipped.
 */
#ifndef VHU_TEST_H
#define VHU_TEST_H

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vhu_test_case {
    const char *name;
    void (*fn)(void);
};

#define VHU_TEST_MAX 256
extern struct vhu_test_case vhu_tests[VHU_TEST_MAX];
extern int vhu_ntests;
extern int vhu_test_failed;  /* current test failed */
extern int vhu_test_skipped; /* current test skipped */

/* mkdtemp(tmpl), and the directory is the harness's: after the last test main() removes it with
 * whatever is left in it, first printing its *.log files to stderr when a test failed; with
 * VHU_KEEP_TMP=1 it stays (and main says where). Returns tmpl, or NULL (errno) as mkdtemp. */
char *vhu_test_mkdtemp(char *tmpl);

/* This test program's scratch directory, $TMPDIR/vhu-PROGRAM-XXXXXX (TMPDIR default /tmp), made
 * on first use with vhu_test_mkdtemp: files left in it by a failed test go with it. */
const char *vhu_test_tmpdir(void);

#define TEST(name)                                                                   \
    static void test_##name(void);                                                   \
    __attribute__((constructor)) static void register_##name(void)                   \
    {                                                                                \
        if (vhu_ntests < VHU_TEST_MAX)                                               \
            vhu_tests[vhu_ntests++] = (struct vhu_test_case){#name, test_##name};    \
    }                                                                                \
    static void test_##name(void)

#define FAIL_AT(...)                                                                 \
    do {                                                                             \
        fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                            \
        fprintf(stderr, __VA_ARGS__);                                                \
        fprintf(stderr, "\n");                                                       \
        vhu_test_failed = 1;                                                         \
        return;                                                                      \
    } while (0)

#define ASSERT(c)                                                                    \
    do {                                                                             \
        if (!(c))                                                                    \
            FAIL_AT("assertion failed: %s", #c);                                     \
    } while (0)

#define ASSERT_EQ(a, b)                                                              \
    do {                                                                             \
        long long a__ = (long long)(a), b__ = (long long)(b);                        \
        if (a__ != b__)                                                              \
            FAIL_AT("%s == %s: %lld != %lld", #a, #b, a__, b__);                     \
    } while (0)

#define ASSERT_OK(e)                                                                 \
    do {                                                                             \
        long long r__ = (long long)(e);                                              \
        if (r__ < 0)                                                                 \
            FAIL_AT("%s failed: %lld (%s)", #e, r__, strerror((int)-r__));           \
    } while (0)

#define ASSERT_ERR(err, e)                                                           \
    do {                                                                             \
        long long r__ = (long long)(e);                                              \
        if (r__ != (long long)(err))                                                 \
            FAIL_AT("%s: expected %lld, got %lld", #e, (long long)(err), r__);       \
    } while (0)

#define SKIP(...)                                                                    \
    do {                                                                             \
        fprintf(stderr, "  SKIP: ");                                                 \
        fprintf(stderr, __VA_ARGS__);                                                \
        fprintf(stderr, "\n");                                                       \
        vhu_test_skipped = 1;                                                        \
        return;                                                                      \
    } while (0)

#endif
