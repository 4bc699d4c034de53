/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * wakeup: the two costs that bound a backend and a driver on two CPUs of this machine.
 *
 *   bench/wakeup [--cpus A,B] [--iters N]
 *
 * line:    one cache line bounced between a thread on CPU A and one on CPU B, both spinning: the
 *          time one store takes to reach the other CPU (half a round trip). Every used entry, avail
 *          index and descriptor a ring hands over costs at least this much.
 * eventfd: the same ping-pong through two eventfds with blocking reads: the time from write(2)
 *          on one CPU until the thread sleeping in read(2) on the other runs. Every kick or call
 *          that finds its peer asleep costs this (on a VM: an IPI, often a VM exit and entry).
 *
 * Prints one line per measurement, median of 5 rounds of N round trips each:
 *   RESULT what=line ns_one_way=... rounds=...
 *   RESULT what=eventfd us_one_way=... rounds=...
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 5

static int cpu_a = 0, cpu_b = 1;
static long iters = 200000;
static _Alignas(64) uint64_t line[8];
static int efd_ping = -1, efd_pong = -1;

static void die(const char *what)
{
    fprintf(stderr, "wakeup: %s: %s\n", what, strerror(errno));
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void pin(int cpu)
{
    cpu_set_t set;

    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    errno = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    if (errno)
        die("pthread_setaffinity_np");
}

static void *line_peer(void *arg)
{
    (void)arg;
    pin(cpu_b);
    for (long i = 0; i < iters; i++) {
        while (__atomic_load_n(&line[0], __ATOMIC_ACQUIRE) != (uint64_t)(2 * i + 1))
            ;
        __atomic_store_n(&line[0], (uint64_t)(2 * i + 2), __ATOMIC_RELEASE);
    }
    return NULL;
}

static void efd_put(int fd)
{
    uint64_t v = 1;

    if (write(fd, &v, sizeof(v)) != sizeof(v))
        die("eventfd write");
}

static void efd_get(int fd)
{
    uint64_t v;

    if (read(fd, &v, sizeof(v)) != sizeof(v))
        die("eventfd read");
}

static void *efd_peer(void *arg)
{
    (void)arg;
    pin(cpu_b);
    for (long i = 0; i < iters; i++) {
        efd_get(efd_ping);
        efd_put(efd_pong);
    }
    return NULL;
}

/* One round: N round trips; returns the one-way time in ns. */
static double round_line(void)
{
    pthread_t t;
    uint64_t t0;

    __atomic_store_n(&line[0], 0, __ATOMIC_RELEASE);
    if ((errno = pthread_create(&t, NULL, line_peer, NULL)) != 0)
        die("pthread_create");
    pin(cpu_a);
    t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        __atomic_store_n(&line[0], (uint64_t)(2 * i + 1), __ATOMIC_RELEASE);
        while (__atomic_load_n(&line[0], __ATOMIC_ACQUIRE) != (uint64_t)(2 * i + 2))
            ;
    }
    t0 = now_ns() - t0;
    pthread_join(t, NULL);
    return (double)t0 / (double)iters / 2;
}

static double round_eventfd(void)
{
    pthread_t t;
    uint64_t t0;

    if ((errno = pthread_create(&t, NULL, efd_peer, NULL)) != 0)
        die("pthread_create");
    pin(cpu_a);
    t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        efd_put(efd_ping);
        efd_get(efd_pong);
    }
    t0 = now_ns() - t0;
    pthread_join(t, NULL);
    return (double)t0 / (double)iters / 2;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double median_of(double (*round_fn)(void), double *all)
{
    double v[ROUNDS];

    for (int i = 0; i < ROUNDS; i++)
        all[i] = v[i] = round_fn();
    qsort(v, ROUNDS, sizeof(v[0]), cmp_double);
    return v[ROUNDS / 2];
}

static void usage(FILE *f)
{
    fprintf(f, "usage: wakeup [--cpus A,B] [--iters N]\n"
               "  one-way cache-line transfer and eventfd wake-up time between CPUs A and B\n"
               "  (default 0,1; N round trips per round, 5 rounds, median)\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"cpus", required_argument, NULL, 'c'},
        {"iters", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    double all[ROUNDS], m;
    int c;

    while ((c = getopt_long(argc, argv, "c:n:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (sscanf(optarg, "%d,%d", &cpu_a, &cpu_b) != 2 || cpu_a < 0 || cpu_b < 0 ||
                cpu_a == cpu_b) {
                fprintf(stderr, "wakeup: --cpus wants two different CPUs, A,B\n");
                return 2;
            }
            break;
        case 'n':
            iters = strtol(optarg, NULL, 10);
            if (iters < 1000 || iters > 100000000) {
                fprintf(stderr, "wakeup: --iters wants 1000..100000000\n");
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    efd_ping = eventfd(0, EFD_CLOEXEC);
    efd_pong = eventfd(0, EFD_CLOEXEC);
    if (efd_ping < 0 || efd_pong < 0)
        die("eventfd");

    m = median_of(round_line, all);
    printf("RESULT what=line cpus=%d,%d ns_one_way=%.1f rounds=%.1f,%.1f,%.1f,%.1f,%.1f\n", cpu_a,
           cpu_b, m, all[0], all[1], all[2], all[3], all[4]);
    /* the sleeping side needs fewer round trips for a stable number */
    iters = iters / 10 > 1000 ? iters / 10 : 1000;
    m = median_of(round_eventfd, all);
    printf("RESULT what=eventfd cpus=%d,%d us_one_way=%.2f rounds=%.2f,%.2f,%.2f,%.2f,%.2f\n",
           cpu_a, cpu_b, m / 1000, all[0] / 1000, all[1] / 1000, all[2] / 1000, all[3] / 1000,
           all[4] / 1000);
    return 0;
}
