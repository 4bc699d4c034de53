/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * A test driver: the driver side of one device, over one of two paths into the device core.
 *
 *   - TDRV_VHOST_USER: the frontend library over the in-process loopback (every step a
 *     vhost-user message, rings addressed by the frontend's virtual addresses, eventfds);
 *   - TDRV_CORE: the device core's typed calls alone (vhu/core.h): no message, no fd. Guest
 *     memory is a plain anonymous buffer registered as host-pointer regions at VHU_FE_GPA_BASE,
 *     rings are given as guest-physical addresses, kick sources are NULL (polled: by the ring's
 *     worker, or by vhu_core_poll() in tdrv_wait()), call and error sinks are callback
 *     notifiers that count signals.
 *
 * The calls mirror what the device tests use from struct vhu_fe; the same test body runs over
 * both paths (TDRV_TEST()).
 */
#ifndef VHU_TDRV_H
#define VHU_TDRV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vhu/backend.h"
#include "vhu/core.h"
#include "vhu/frontend.h"
#include "vhu/loop.h"
#include "vhu/vqd.h"
#include "vhu_test.h"

enum tdrv_path {
    TDRV_VHOST_USER,
    TDRV_CORE,
};

/* The fields of struct vhu_fe_opts the device tests use, with the same meaning. */
struct tdrv_opts {
    uint64_t features;          /* wanted; the result is (wanted + ring/version bits) & offered */
    uint16_t num_queues;
    uint16_t queue_size;
    bool packed;
    bool event_idx;
    bool indirect;
    size_t mem_size;            /* default 16 MiB */
    unsigned mem_regions;       /* >= 1 */
    bool queue_pairs;           /* vhost-user: GET_QUEUE_NUM counts pairs (net) */
    uint64_t protocol_features; /* vhost-user only */
};

struct tdrv;

/* The path TDRV_TEST() bodies run over (TDRV_VHOST_USER outside them). */
extern enum tdrv_path tdrv_path;
const char *tdrv_path_name(enum tdrv_path p);

/* Attach a driver to backend b (whose control loop is loop). The core path creates the core
 * here; free the driver before the backend. */
int tdrv_new(enum tdrv_path p, struct vhu_backend *b, struct vhu_loop *loop, struct tdrv **out);
void tdrv_free(struct tdrv *d);
/* A test bench's end, each part optional: the driver, then the backend (which destroys its
 * device) or, without one, the device alone, then the loop. */
void tdrv_teardown(struct tdrv *d, struct vhu_backend *b, struct vhu_device *dev,
                   struct vhu_loop *loop);
enum tdrv_path tdrv_kind(const struct tdrv *d);
/* The underlying frontend (vhost-user path) or core (core path); NULL on the other path. */
struct vhu_fe *tdrv_fe(struct tdrv *d);
struct vhu_core *tdrv_core(struct tdrv *d);

/* Negotiate, set up memory and rings, start them (as vhu_fe_start()). */
int tdrv_start(struct tdrv *d, const struct tdrv_opts *o);
/* Stop every ring, keeping the device (GET_VRING_BASE / vhu_core_ring_stop()). */
int tdrv_stop(struct tdrv *d);

uint64_t tdrv_features(const struct tdrv *d);         /* negotiated */
uint64_t tdrv_backend_features(const struct tdrv *d); /* offered */
unsigned tdrv_num_queues(const struct tdrv *d);

/* Bump allocator in guest memory: a pointer, *gpa its guest physical address. */
void *tdrv_alloc(struct tdrv *d, size_t size, size_t align, uint64_t *gpa);
struct vhu_vqd *tdrv_vqd(struct tdrv *d, unsigned q);
/* Publish; on the vhost-user path also kick if the device wants one (the core path has no
 * kick source: the ring is polled). */
int tdrv_kick(struct tdrv *d, unsigned q);
/* Wait until q's call sink is signalled (signals since the last wait count) or -ETIMEDOUT. */
int tdrv_wait(struct tdrv *d, unsigned q, int timeout_ms);
/* Submit a chain, kick, wait for it; the written length or -errno. */
int tdrv_request(struct tdrv *d, unsigned q, const struct vhu_vqd_seg *segs, unsigned n_out,
                 unsigned n_in, int timeout_ms);
/* One round of the device side without waiting (the loop once; the core path polls too). */
void tdrv_progress(struct tdrv *d);
/* Enable or disable a running ring (SET_VRING_ENABLE / vhu_core_ring_enable()). */
int tdrv_enable(struct tdrv *d, unsigned q, bool on);

int tdrv_get_config(struct tdrv *d, uint32_t off, void *buf, uint32_t len);
int tdrv_set_config(struct tdrv *d, uint32_t off, const void *buf, uint32_t len);
int tdrv_get_status(struct tdrv *d, uint8_t *status);
int tdrv_set_status(struct tdrv *d, uint8_t status);
int tdrv_reset(struct tdrv *d);

/* Core path: the guest memory arena (at guest physical VHU_FE_GPA_BASE) and its size; NULL on
 * the vhost-user path. */
uint8_t *tdrv_mem(struct tdrv *d, size_t *size);

/* Core path: call / error sink signals counted on q so far (0 on the vhost-user path). */
unsigned tdrv_calls(const struct tdrv *d, unsigned q);
unsigned tdrv_errors(const struct tdrv *d, unsigned q);

/*
 * A test body run once per path: registers "vhost-user/name" and "core/name", each running the
 * body with tdrv_path set. Tests about vhost-user messages stay plain TEST()s.
 */
#define TDRV_TEST(name)                                                                      \
    static void tdrv_body_##name(void);                                                      \
    static void tdrv_vu_##name(void) { tdrv_run_on(TDRV_VHOST_USER, tdrv_body_##name); }     \
    static void tdrv_core_##name(void) { tdrv_run_on(TDRV_CORE, tdrv_body_##name); }         \
    __attribute__((constructor)) static void tdrv_register_##name(void)                      \
    {                                                                                        \
        if (vhu_ntests + 2 <= VHU_TEST_MAX) {                                                \
            vhu_tests[vhu_ntests++] =                                                        \
                (struct vhu_test_case){"vhost-user/" #name, tdrv_vu_##name};                 \
            vhu_tests[vhu_ntests++] = (struct vhu_test_case){"core/" #name, tdrv_core_##name}; \
        }                                                                                    \
    }                                                                                        \
    static void tdrv_body_##name(void)

/* A test body run on the core path only ("core/name"). */
#define CORE_TEST(name)                                                                      \
    static void tdrv_body_##name(void);                                                      \
    static void tdrv_core_##name(void) { tdrv_run_on(TDRV_CORE, tdrv_body_##name); }         \
    __attribute__((constructor)) static void tdrv_register_##name(void)                      \
    {                                                                                        \
        if (vhu_ntests < VHU_TEST_MAX)                                                       \
            vhu_tests[vhu_ntests++] = (struct vhu_test_case){"core/" #name, tdrv_core_##name}; \
    }                                                                                        \
    static void tdrv_body_##name(void)

void tdrv_run_on(enum tdrv_path p, void (*body)(void));

/* Library logs to stderr with VHU_TEST_VERBOSE set, else nowhere (call from a constructor). */
void tdrv_log_setup(void);

#endif
