/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Fuzz target: the driver side of the rings (struct vhu_vqd, src/vq/vqd*.c: what the frontend
 * library and vhuctl use) against a hostile device (a backend that lies about used ids and
 * lengths, or scribbles over the rings). The input chooses the ring (split/packed, EVENT_IDX,
 * indirect tables, size), then a program: the driver adds chains (readable and writable
 * segments of input-chosen lengths) and publishes them; the "device" completes entries of its
 * choosing (split: used ring entries and the used index; packed: descriptors with an id,
 * length and flags, wrap counter right or wrong) or writes raw bytes anywhere in the ring
 * memory; the driver reaps, toggles interrupts. Whatever the device does, vhu_vqd_get_used()
 * may only return a cookie that is in flight, once, with a length no larger than the chain's
 * writable bytes (or break the queue): anything else aborts. Input format: docs/security.md;
 * the seeds: tests/fuzz/mkcorpus.py.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "vhu/vqd.h"

#define RING_ADDR 0x100000ull
#define INDIRECT_MAX 8

struct tok {
    bool out;
    uint32_t in_len;
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fin f = {data, size};
    uint8_t flags = fin_u8(&f), nsel = fin_u8(&f);
    struct vhu_vqd_config c = {.packed = flags & 1, .event_idx = flags & 2};
    struct vhu_vqd *vqd = NULL;
    struct tok *tok = NULL;
    uint8_t *ring = NULL, *ind = NULL;
    uint64_t a_desc, a_drv, a_dev;
    size_t ring_size;
    unsigned steps = 0, next_tok = 0;
    uint16_t used_idx = 0;

    c.num = c.packed ? (uint16_t)(nsel % 64 + 1) : (uint16_t)(1u << (nsel % 7));
    ring_size = vhu_vqd_ring_size(c.num, c.packed);
    ring = aligned_alloc(4096, (ring_size + 4095) & ~(size_t)4095);
    tok = calloc(c.num * 4u, sizeof(*tok));
    if (!ring || !tok)
        goto out;
    c.ring = ring;
    c.ring_addr = RING_ADDR;
    if (flags & 4) {
        ind = calloc(c.num, INDIRECT_MAX * 16);
        if (!ind)
            goto out;
        c.indirect = ind;
        c.indirect_addr = 0x200000;
        c.indirect_max = INDIRECT_MAX;
    }
    if (vhu_vqd_new(&c, &vqd) < 0)
        goto out;
    vhu_vqd_addrs(vqd, &a_desc, &a_drv, &a_dev);
    if (a_desc - RING_ADDR >= ring_size || a_dev - RING_ADDR >= ring_size)
        abort();
    while (fin_left(&f) && steps++ < 2048) {
        uint8_t op = fin_u8(&f);

        switch (op % 8) {
        case 0:
        case 1: { /* the driver adds a chain */
            struct vhu_vqd_seg segs[INDIRECT_MAX];
            unsigned n_out = (op >> 3) & 3, n_in = (op >> 5) & 7;
            uint32_t in_len = 0;
            struct tok *t = &tok[next_tok];

            if (n_out + n_in > INDIRECT_MAX || t->out)
                break;
            for (unsigned i = 0; i < n_out + n_in; i++) {
                segs[i] = (struct vhu_vqd_seg){0x300000 + i * 0x1000, fin_u16(&f)};
                if (i >= n_out)
                    in_len += segs[i].len;
            }
            if (vhu_vqd_add(vqd, segs, n_out, n_in, t) == 0) {
                t->out = true;
                t->in_len = in_len;
                next_tok = (next_tok + 1) % (c.num * 4u);
            }
            break;
        }
        case 2:
            (void)vhu_vqd_kick_prepare(vqd);
            break;
        case 3: { /* the device completes an entry of its choosing */
            uint16_t id = fin_u16(&f);
            uint32_t len = fin_u32(&f);

            if (c.packed) {
                uint16_t slot = fin_u16(&f) % c.num;
                uint16_t fl = (op & 0x80) ? fin_u16(&f)
                                          : (uint16_t)((op & 0x40) ? 0x8080 : 0); /* AVAIL|USED */
                uint8_t *d = ring + (a_desc - RING_ADDR) + (size_t)slot * 16;

                memcpy(d + 8, &len, 4);
                memcpy(d + 12, &id, 2);
                __atomic_store_n((uint16_t *)(d + 14), fl, __ATOMIC_RELEASE);
            } else {
                uint8_t *u = ring + (a_dev - RING_ADDR);
                uint32_t id32 = (op & 0x80) ? fin_u32(&f) : id;

                memcpy(u + 4 + (size_t)(used_idx % c.num) * 8, &id32, 4);
                memcpy(u + 8 + (size_t)(used_idx % c.num) * 8, &len, 4);
                used_idx = (op & 0x40) ? fin_u16(&f) : (uint16_t)(used_idx + 1);
                __atomic_store_n((uint16_t *)(u + 2), used_idx, __ATOMIC_RELEASE);
            }
            break;
        }
        case 4: { /* the device scribbles on the ring memory */
            uint32_t off = fin_u16(&f) % ring_size;
            uint32_t len = fin_u8(&f) % 32 + 1;

            if (len > ring_size - off)
                len = (uint32_t)(ring_size - off);
            fin_bytes(&f, ring + off, len);
            break;
        }
        case 5: { /* the driver reaps */
            uint32_t len;
            struct tok *t;

            while ((t = vhu_vqd_get_used(vqd, &len))) {
                if (t < tok || t >= tok + c.num * 4u || !t->out)
                    abort(); /* a cookie not in flight */
                if (len > t->in_len)
                    abort(); /* more written than the chain holds */
                t->out = false;
            }
            break;
        }
        case 6:
            vhu_vqd_disable_cb(vqd);
            break;
        case 7:
            (void)vhu_vqd_enable_cb(vqd);
            (void)vhu_vqd_num_free(vqd);
            (void)vhu_vqd_base(vqd);
            break;
        }
    }
out:
    vhu_vqd_free(vqd);
    free(ind);
    free(tok);
    free(ring);
    return 0;
}
