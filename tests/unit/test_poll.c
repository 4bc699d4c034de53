/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * A worker's busy-poll window (backend/worker.h, struct vhu_poll_adapt) step by step: the fixed
 * window never moves; the adaptive one halves on each miss and closes under max/8, doubles on
 * hits, and a closed one is probed with the full window after 1, 2, 4 ... 256 stretches.
 */
#include "backend/worker.h"
#include "vhu/util.h"
#include "vhu_test.h"

#define MAX 32000u

/* Run stretches until one is given a window; the number of closed (0) stretches before it. */
static unsigned until_probe(struct vhu_poll_adapt *a, uint32_t *win)
{
    unsigned closed = 0;

    while ((*win = vhu_poll_adapt_window(a)) == 0 && closed < 100000)
        closed++;
    return closed;
}

TEST(fixed_window_never_moves)
{
    struct vhu_poll_adapt a;

    vhu_poll_adapt_init(&a, false, MAX);
    for (int i = 0; i < 100; i++) {
        ASSERT_EQ(vhu_poll_adapt_window(&a), MAX);
        vhu_poll_adapt_result(&a, i % 3 == 0);
    }
    ASSERT_EQ(vhu_poll_adapt_window(&a), MAX);
    vhu_poll_adapt_init(&a, false, 0);
    ASSERT_EQ(vhu_poll_adapt_window(&a), 0);
    /* adaptive with no maximum: never polls, never probes */
    vhu_poll_adapt_init(&a, true, 0);
    for (int i = 0; i < 1000; i++)
        ASSERT_EQ(vhu_poll_adapt_window(&a), 0);
}

TEST(misses_close_the_window_and_probes_back_off)
{
    struct vhu_poll_adapt a;
    uint32_t win;

    vhu_poll_adapt_init(&a, true, MAX);
    /* opens at the maximum; each miss halves it; under max/8 it closes */
    static const uint32_t seq[] = {MAX, MAX / 2, MAX / 4, MAX / 8};
    for (unsigned i = 0; i < VHU_ARRAY_SIZE(seq); i++) {
        ASSERT_EQ(vhu_poll_adapt_window(&a), seq[i]);
        vhu_poll_adapt_result(&a, false);
    }
    /* closed: the next stretch is a probe at the maximum, then 1, 3, 7 ... closed stretches
     * between probes while they miss, at most 255 */
    static const unsigned gaps[] = {0, 1, 3, 7, 15, 31, 63, 127, 255, 255, 255};
    for (unsigned i = 0; i < VHU_ARRAY_SIZE(gaps); i++) {
        ASSERT_EQ(until_probe(&a, &win), gaps[i]);
        ASSERT_EQ(win, MAX);
        vhu_poll_adapt_result(&a, false);
    }
}

TEST(a_probe_that_hits_reopens_the_window)
{
    struct vhu_poll_adapt a;
    uint32_t win;

    vhu_poll_adapt_init(&a, true, MAX);
    for (int i = 0; i < 4; i++) {
        vhu_poll_adapt_window(&a);
        vhu_poll_adapt_result(&a, false);
    }
    for (int i = 0; i < 6; i++) { /* back off to 31 closed stretches between probes */
        until_probe(&a, &win);
        vhu_poll_adapt_result(&a, false);
    }
    ASSERT_EQ(until_probe(&a, &win), 63);
    vhu_poll_adapt_result(&a, true);
    /* open at the maximum again, and a later close probes at once again */
    ASSERT_EQ(vhu_poll_adapt_window(&a), MAX);
    vhu_poll_adapt_result(&a, true);
    ASSERT_EQ(vhu_poll_adapt_window(&a), MAX);
    vhu_poll_adapt_result(&a, false);
    for (int i = 0; i < 3; i++) { /* MAX/2, MAX/4, MAX/8: the fourth miss closes it */
        ASSERT(vhu_poll_adapt_window(&a) > 0);
        vhu_poll_adapt_result(&a, false);
    }
    ASSERT_EQ(until_probe(&a, &win), 0); /* probed at once, the backoff reset by the hit */
    ASSERT_EQ(win, MAX);
    vhu_poll_adapt_result(&a, false);
    ASSERT_EQ(until_probe(&a, &win), 1);
}

TEST(hits_grow_the_window_back_to_the_maximum)
{
    struct vhu_poll_adapt a;

    vhu_poll_adapt_init(&a, true, MAX);
    for (int i = 0; i < 3; i++) { /* MAX -> MAX/8 */
        vhu_poll_adapt_window(&a);
        vhu_poll_adapt_result(&a, false);
    }
    static const uint32_t seq[] = {MAX / 8, MAX / 4, MAX / 2, MAX, MAX};
    for (unsigned i = 0; i < VHU_ARRAY_SIZE(seq); i++) {
        ASSERT_EQ(vhu_poll_adapt_window(&a), seq[i]);
        vhu_poll_adapt_result(&a, true);
    }
    /* a maximum that is not a power of two: doubling stops at it */
    vhu_poll_adapt_init(&a, true, 50000);
    vhu_poll_adapt_window(&a);
    vhu_poll_adapt_result(&a, false); /* 25000 */
    vhu_poll_adapt_window(&a);
    vhu_poll_adapt_result(&a, false); /* 12500 */
    vhu_poll_adapt_window(&a);
    vhu_poll_adapt_result(&a, true); /* 25000 */
    ASSERT_EQ(vhu_poll_adapt_window(&a), 25000);
    vhu_poll_adapt_result(&a, true);
    ASSERT_EQ(vhu_poll_adapt_window(&a), 50000);
}

/* A hit and a miss alternating (a driver that answers within the window every other time)
 * keeps the window open: polling pays half the time. */
TEST(alternating_hits_keep_the_window_open)
{
    struct vhu_poll_adapt a;

    vhu_poll_adapt_init(&a, true, MAX);
    for (int i = 0; i < 1000; i++) {
        ASSERT(vhu_poll_adapt_window(&a) >= MAX / 2);
        vhu_poll_adapt_result(&a, i % 2 == 0);
    }
}
