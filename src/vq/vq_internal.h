/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Private to src/vq/: the device-side queue object, its element pool, and the helpers the split
 * and packed ring code share. One owner thread per queue, so nothing here locks.
 *
 * Guest memory is hostile and concurrently modified. Every field the driver writes is read with a
 * volatile or atomic load, exactly once, into a local; validation runs on the local copy only.
 */
#ifndef VHU_VQ_INTERNAL_H
#define VHU_VQ_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#include "mem/mem_internal.h"
#include "vhu/mem.h"
#include "vhu/util.h"
#include "vhu/virtio.h"
#include "vq_core.h"
#include "vhu/vqd.h"

#define VQ_PACKED_AVAIL_BIT (1u << VHU_VRING_PACKED_DESC_F_AVAIL)
#define VQ_PACKED_USED_BIT (1u << VHU_VRING_PACKED_DESC_F_USED)
#define VQ_WRAP_BIT (1u << VHU_VRING_PACKED_EVENT_F_WRAP_CTR)

/* vhost-user.rst "Inflight I/O tracking", split layout (our own: only we read it back). */
struct vq_inflight_desc {
    uint8_t inflight;
    uint8_t padding[5];
    uint16_t next;
    uint64_t counter;
};

struct vq_inflight_split {
    uint64_t features;
    uint16_t version;
    uint16_t desc_num;
    uint16_t last_batch_head;
    uint16_t used_idx;
    struct vq_inflight_desc desc[];
};
#define VQ_INFLIGHT_VERSION 1

/*
 * vhost-user.rst "Inflight I/O tracking", packed layout. Each popped chain takes entries from a
 * free list, one per descriptor (the descriptors are copied: the ring slots they came from are
 * overwritten by used entries and new buffers long before an out-of-order chain completes); the
 * head entry carries the chain's length, its last entry and the pop counter. The old_* fields
 * are the state as of the last published batch, what a successor rolls back to.
 */
struct vq_inflight_pdesc {
    uint8_t inflight;
    uint8_t padding;
    uint16_t next;
    uint16_t last;
    uint16_t num;
    uint64_t counter;
    uint16_t id;
    uint16_t flags;
    uint32_t len;
    uint64_t addr;
};

struct vq_inflight_packed {
    uint64_t features;
    uint16_t version;
    uint16_t desc_num;
    uint16_t free_head;
    uint16_t old_free_head;
    uint16_t used_idx;
    uint16_t old_used_idx;
    uint8_t used_wrap_counter;
    uint8_t old_used_wrap_counter;
    uint8_t padding[7];
    struct vq_inflight_pdesc desc[];
};
_Static_assert(sizeof(struct vq_inflight_pdesc) == 32, "DescStatePacked is 32 bytes");
_Static_assert(sizeof(struct vq_inflight_packed) == 32, "QueueRegionPacked header is 32 bytes");

/* One in-flight entry of the region, copied out once for sorting. */
struct vq_resubmit_key {
    uint64_t counter;
    uint16_t head;
    uint16_t ndesc; /* packed: the chain's entries, as validated at recovery */
};

/* A used entry staged by vhu_vq_push() on a packed ring, written out by vhu_vq_flush(). */
struct vq_shadow_used {
    uint16_t id;
    uint16_t ndesc;
    uint32_t len;
    uint16_t ifl_head; /* packed tracking: the chain's head entry in the region */
    bool readonly;     /* no writable descriptor: in order, its used entry may be skipped */
};

/* pop_pos of a packed chain popped from the inflight region: unpop cannot rewind it. */
#define VQ_POS_RESUBMITTED (1u << 16)

struct vhu_vq {
    /* --- hot: ring state --- */
    uint16_t num;
    uint16_t last_avail;   /* split: free-running avail index; packed: ring slot */
    uint16_t shadow_avail; /* split: last avail->idx read */
    uint16_t used_idx;     /* split: free-running used index (staged); packed: next slot to write */
    uint16_t signalled;    /* used index at the previous flush (notification window start) */
    uint32_t unsignalled;  /* entries (packed: ring slots) published since then, not decided on */
    bool avail_wrap;       /* packed */
    bool used_wrap;        /* packed: wrap counter of used_idx */
    bool packed;
    bool event_idx;
    bool indirect;
    bool notify_off;       /* vhu_vq_disable_notify() in effect */
    bool polling;          /* a busy-poller watches the ring: enable_notify leaves kicks off */
    bool started;
    bool broken;
    unsigned nstaged;      /* pushes since the last flush */
    bool in_order;         /* VIRTIO_F_IN_ORDER: runs of read-only chains share one entry */
    uint16_t run_id;       /* split, in order: id of the open run's last chain */
    unsigned run_n;        /* split, in order: chains in the open run (its entry not written) */
    bool log_data;         /* dirty logging of buffer writes (VHOST_F_LOG_ALL) */
    bool log_ring;         /* dirty logging of ring writes */

    union {
        struct vhu_vring_desc *desc;
        struct vhu_vring_packed_desc *pdesc;
    };
    struct vhu_vring_avail *avail;                  /* split */
    struct vhu_vring_used *used;                    /* split */
    struct vhu_vring_packed_desc_event *drv_event;  /* packed: driver writes, device reads */
    struct vhu_vring_packed_desc_event *dev_event;  /* packed: device writes, driver reads */
    const struct vhu_mem_table *mem;
    /* the region the last translation found (tc_size 0: none); reset with mem */
    uint64_t tc_gpa;
    uint64_t tc_size;
    uint8_t *tc_host;
    uint8_t *log;          /* dirty bitmap (vhu_vq_set_log) */
    uint64_t log_pages;    /* pages it covers */

    /* --- element pool: num elements, allocated at start --- */
    uint8_t *pool;          /* num * stride bytes */
    size_t stride;          /* elem_size rounded up for alignment */
    struct iovec *iovs;     /* num * iov_stride */
    size_t iov_stride;      /* iovecs per slot: max_segs, padded to an odd number of lines */
    uint16_t *free_slots;   /* stack of free pool slots */
    unsigned nfree;
    uint32_t *pop_pos;      /* per slot: ring position before the pop (for unpop) */
    uint8_t *busy;          /* per slot: popped and not yet pushed */
    struct vq_shadow_used *shadow; /* packed: num staged used entries */
    unsigned inflight;

    /* --- cold --- */
    size_t elem_size;
    unsigned max_segs;
    unsigned index;
    uint32_t base;          /* position set by vhu_vq_set_base() */
    struct vhu_notifier *call; /* borrowed from the core */
    struct vhu_vq_hooks hooks;
    void *priv;
    void *core;
    /* inflight tracking */
    void *ifl_area;        /* set while stopped; taken by the layout at start */
    struct vq_inflight_split *ifl;   /* split */
    struct vq_inflight_packed *pifl; /* packed */
    uint64_t ifl_counter;
    /* packed: private copies of the region's links, so the data path never reads back memory
     * the frontend can write; the region only receives them */
    uint16_t *ifl_next;    /* num entries: free-list / chain links */
    uint16_t *ifl_last;    /* num entries: a head entry's last entry */
    uint16_t *ifl_head;    /* per pool slot: the head entry of the popped chain */
    uint8_t *ifl_mark;     /* num entries: recovery scratch */
    uint16_t ifl_free;     /* free-list head (num: empty) */
    uint16_t *resubmit;    /* heads to pop first, oldest first */
    struct vq_resubmit_key *resubmit_keys; /* private copy of the region, for sorting */
    unsigned nresubmit;
    unsigned resubmit_pos;
    const char *break_reason;
    /* dirty logging, cold part */
    bool log_all;          /* vhu_vq_log.all */
    bool log_ring_req;     /* started with log_ring */
    bool log_overflow;     /* a write past the bitmap was reported */
    uint64_t desc_gpa;
    uint64_t device_gpa;
    struct vhu_notifier *log_call;
    struct vhu_vq_counters cnt; /* owner thread only; read racily (vhu_vq_get_counters) */
};

/* ---- pool ---- */

static inline struct vhu_vq_elem *vq_slot_elem(struct vhu_vq *vq, unsigned slot)
{
    return (struct vhu_vq_elem *)(void *)(vq->pool + (size_t)slot * vq->stride);
}

/* Slot of an element, or -1 when elem is not one of ours or not popped (a caller bug). */
static inline int vq_elem_slot(const struct vhu_vq *vq, const struct vhu_vq_elem *elem)
{
    unsigned slot;

    if (!vq->pool || !elem)
        return -1;
    /* The slot recorded at pop, checked against the pool: no division on the hot path. */
    slot = elem->slot;
    if (slot >= vq->num || !vq->busy[slot] ||
        (const void *)(vq->pool + (size_t)slot * vq->stride) != (const void *)elem)
        return -1;
    return (int)slot;
}

/* Take a pool slot; the caller checked nfree > 0. */
static inline struct vhu_vq_elem *vq_elem_get(struct vhu_vq *vq, unsigned *slot_out)
{
    unsigned slot = vq->free_slots[--vq->nfree];
    struct vhu_vq_elem *e = vq_slot_elem(vq, slot);

    e->iov = vq->iovs + (size_t)slot * vq->iov_stride;
    e->slot = (uint16_t)slot;
    e->out_num = e->in_num = 0;
    e->out_len = e->in_len = 0;
    *slot_out = slot;
    return e;
}

static inline void vq_elem_put(struct vhu_vq *vq, unsigned slot)
{
    vq->free_slots[vq->nfree++] = (uint16_t)slot;
}

/* Mark a popped slot busy. */
static inline void vq_elem_commit(struct vhu_vq *vq, unsigned slot, uint32_t pos)
{
    vq->busy[slot] = 1;
    vq->pop_pos[slot] = pos;
    vq->inflight++;
}

static inline void vq_elem_release(struct vhu_vq *vq, unsigned slot)
{
    vq->busy[slot] = 0;
    vq->inflight--;
    vq_elem_put(vq, slot);
}

/* ---- guest-shared memory access: each load happens exactly once ---- */

static inline uint8_t vq_load8(const uint8_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void vq_store8(uint8_t *p, uint8_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

static inline uint64_t vq_load64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline uint16_t vq_load16(const uint16_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline uint16_t vq_load16_acquire(const uint16_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void vq_store16(uint16_t *p, uint16_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

static inline void vq_store16_release(uint16_t *p, uint16_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline void vq_store32(uint32_t *p, uint32_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

/* Eight little-endian bytes at once, single-copy atomic; p is 8-byte aligned (virtio rings are
 * little-endian, and so are the hosts vhu builds for). */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "vhu assumes a little-endian host");
static inline void vq_store64(void *p, uint64_t v)
{
    __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELAXED);
}

/* One descriptor, read once. Split and packed descriptors share size and the addr/len words but
 * not the order of the last two fields. */
struct vq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next; /* split: next index; packed: buffer id */
};

static inline void vq_desc_read(struct vq_desc *d, const void *src)
{
    const volatile struct vhu_vring_desc *v = src;

    d->addr = v->addr;
    d->len = v->len;
    d->flags = v->flags;
    d->next = v->next;
}

static inline void vq_pdesc_read(struct vq_desc *d, const void *src)
{
    const volatile struct vhu_vring_packed_desc *v = src;

    d->addr = v->addr;
    d->len = v->len;
    d->flags = v->flags;
    d->next = v->id;
}

/* ---- guest memory ---- */

void *vq_gpa_to_host_slow(struct vhu_vq *vq, uint64_t gpa, uint64_t *len);

static inline void vq_cache_region(struct vhu_vq *vq, const struct vhu_mem_region *r)
{
    vq->tc_gpa = r->gpa;
    vq->tc_size = r->size;
    vq->tc_host = r->host;
}

/* vhu_mem_gpa_to_host() on the ring's table, through a one-region cache: buffers of a ring
 * nearly always lie in the region the previous one did. With *len >= 1, a pointer comes back
 * with *len >= 1. */
static inline void *vq_gpa_to_host(struct vhu_vq *vq, uint64_t gpa, uint64_t *len)
{
    uint64_t off = gpa - vq->tc_gpa;

    if (vhu_likely(off < vq->tc_size)) {
        if (*len > vq->tc_size - off)
            *len = vq->tc_size - off;
        return vq->tc_host + off;
    }
    return vq_gpa_to_host_slow(vq, gpa, len);
}

/* The burst pops' test for a chain they take themselves: one plain, non-empty descriptor whose
 * buffer lies wholly in the cached region (so one segment, no wrap-around). */
static inline bool vq_single_cached(const struct vhu_vq *vq, uint16_t flags, uint64_t addr,
                                    uint32_t len)
{
    uint64_t off = addr - vq->tc_gpa;

    return !(flags & (VHU_VRING_DESC_F_NEXT | VHU_VRING_DESC_F_INDIRECT)) && len != 0 &&
           off < vq->tc_size && len <= vq->tc_size - off;
}

/* Take such a chain into a pool element (the pool is not empty), popped at ring position pos. */
static inline struct vhu_vq_elem *vq_take_single(struct vhu_vq *vq, uint16_t flags, uint64_t addr,
                                                 uint32_t len, uint16_t id, uint32_t pos)
{
    unsigned slot;
    struct vhu_vq_elem *e = vq_elem_get(vq, &slot);

    e->iov[0].iov_base = vq->tc_host + (addr - vq->tc_gpa);
    e->iov[0].iov_len = len;
    if (flags & VHU_VRING_DESC_F_WRITE) {
        e->in_num = 1;
        e->in_len = len;
    } else {
        e->out_num = 1;
        e->out_len = len;
    }
    e->ndesc = 1;
    e->id = id;
    vq_elem_commit(vq, slot, pos);
    return e;
}

/* A new table (or none): forget the cached region. */
static inline void vq_set_mem(struct vhu_vq *vq, const struct vhu_mem_table *mem)
{
    vq->mem = mem;
    vq->tc_gpa = 0;
    vq->tc_size = 0;
    vq->tc_host = NULL;
}

/* ---- chain walker (chain.c) ---- */

/* Accumulates one chain's segments into an element. */
struct vq_walk {
    struct vhu_vq *vq;
    struct vhu_vq_elem *elem;
    bool seen_write;
};

/* Add one (already copied) data descriptor: translate, split at region boundaries, check
 * ordering and limits. Returns NULL on success, else a reason string. Inline: it runs once per
 * descriptor. */
static inline __attribute__((always_inline)) const char *vq_walk_add(struct vq_walk *w, const struct vq_desc *d)
{
    struct vhu_vq_elem *e = w->elem;
    bool write = (d->flags & VHU_VRING_DESC_F_WRITE) != 0;
    uint64_t addr = d->addr, left = d->len;
    unsigned nseg = e->out_num + e->in_num;

    /* virtio "The Virtqueue Descriptor Table" (split) / "Scatter-Gather Support" (packed):
     * writable descriptors come after all readable ones. */
    if (write)
        w->seen_write = true;
    else if (w->seen_write)
        return "readable descriptor after a writable one";
    if (left == 0)
        return NULL; /* nothing to map; still counted against the chain length by the caller */
    if (addr + left - 1 < addr)
        return "descriptor address wraps around";
    /* The used length is 32 bits wide; so is every sum we report. */
    if (write ? e->in_len + left > UINT32_MAX : e->out_len + left > UINT32_MAX)
        return "chain length exceeds 4 GiB";

    while (left) {
        uint64_t len = left;
        void *p;

        if (vhu_unlikely(nseg >= w->vq->max_segs))
            return "chain has more segments than max_segs";
        p = vq_gpa_to_host(w->vq, addr, &len); /* len >= 1 when p is not NULL */
        if (vhu_unlikely(!p))
            return "descriptor address is not in guest memory";
        e->iov[nseg].iov_base = p;
        e->iov[nseg].iov_len = (size_t)len;
        nseg++;
        addr += len;
        left -= len;
    }
    if (write) {
        e->in_num = nseg - e->out_num;
        e->in_len += d->len;
    } else {
        e->out_num = nseg; /* no writable segment yet, so every segment so far is readable */
        e->out_len += d->len;
    }
    return NULL;
}

/*
 * Validate an indirect descriptor and locate its table. On success *n is its entry count and
 * *table a host pointer to it when it is contiguous in host memory, else NULL (read entries with
 * vq_indirect_read()). Returns NULL on success, else a reason string.
 */
const char *vq_indirect_open(struct vhu_vq *vq, const struct vq_desc *d, unsigned *n,
                             const void **table);
/* Entry i of an indirect table at guest address addr (slow path for tables spanning regions). */
bool vq_indirect_read(struct vhu_vq *vq, uint64_t addr, unsigned i, const void *table,
                      struct vq_desc *out);

/* ---- per-layout entry points (split.c / packed.c) ---- */

struct vhu_vq_elem *vq_split_pop(struct vhu_vq *vq);
unsigned vq_split_pop_burst(struct vhu_vq *vq, struct vhu_vq_elem **out, unsigned max);
void vq_split_publish(struct vhu_vq *vq);
bool vq_split_need_notify(struct vhu_vq *vq, uint16_t old);
void vq_split_rewind(struct vhu_vq *vq, uint32_t pos, uint16_t head);
void vq_split_set_notify(struct vhu_vq *vq, bool on);
bool vq_split_has_work(const struct vhu_vq *vq);
void vq_split_start(struct vhu_vq *vq);

struct vhu_vq_elem *vq_packed_pop(struct vhu_vq *vq);
unsigned vq_packed_pop_burst(struct vhu_vq *vq, struct vhu_vq_elem **out, unsigned max);
void vq_packed_publish(struct vhu_vq *vq);
bool vq_packed_need_notify(struct vhu_vq *vq, uint16_t old, uint32_t n);
void vq_packed_rewind(struct vhu_vq *vq, uint32_t pos, unsigned slot);
void vq_packed_set_notify(struct vhu_vq *vq, bool on);
bool vq_packed_has_work(const struct vhu_vq *vq);
void vq_packed_start(struct vhu_vq *vq);
/* packed_inflight.c: recovery at start, recording at pop, release at flush / unpop. */
void vq_pifl_start(struct vhu_vq *vq);
struct vhu_vq_elem *vq_pifl_pop_resubmit(struct vhu_vq *vq);
bool vq_pifl_record(struct vhu_vq *vq, unsigned slot, uint16_t pos, uint16_t ndesc);
void vq_pifl_release(struct vhu_vq *vq, uint16_t head);
void vq_pifl_stage(struct vhu_vq *vq, uint16_t used_idx, bool used_wrap);
void vq_pifl_publish(struct vhu_vq *vq);
/* packed.c's chain walker over a descriptor source (the ring or the region). */
const char *vq_packed_walk_indirect(struct vhu_vq *vq, struct vq_walk *w,
                                    const struct vq_desc *ind);
int vq_resubmit_cmp(const void *a, const void *b);
/* Used position (slot | wrap << 15) after the staged entries are written. */
uint16_t vq_packed_used_pos(const struct vhu_vq *vq);

/* Run the notify hook (or signal the call sink). */
void vq_do_notify(struct vhu_vq *vq);
/* Publish what is staged, then decide (and notify) for everything published since the last
 * decision. The queue is started and not broken. */
void vq_flush_now(struct vhu_vq *vq);

/* Write the used element for ring position idx: id and len in one store (the ring is only
 * 4-byte aligned, hence memcpy); the driver reads them only after used->idx, which flush
 * publishes behind a write barrier. */
static inline void vq_split_write_used(struct vhu_vq *vq, uint16_t idx, uint16_t id, uint32_t len)
{
    uint64_t v = (uint64_t)id | (uint64_t)len << 32;

    memcpy(&vq->used->ring[idx & (vq->num - 1)], &v, sizeof(v));
}

/*
 * In order (virtio 1.3 2.7.9): the open run of chains without writable descriptors gets its
 * one used element, at the run's first position, with the id of its last chain; the driver
 * skips the others (used->idx counts them all). A skipped buffer counts as fully written,
 * which for such a chain is exactly its 0 bytes; a chain with writable descriptors always gets
 * its own element, with its length, even when 0 bytes were written (a driver's in-order receive
 * path reads every element's length, as DPDK's does).
 */
static inline void vq_split_close_run(struct vhu_vq *vq)
{
    vq_split_write_used(vq, (uint16_t)(vq->used_idx - vq->run_n), vq->run_id, 0);
    vq->run_n = 0;
}

/* Stage a used entry (vhu_vq_push; inline: once per request). Split: into the used ring. */
static inline void vq_split_push(struct vhu_vq *vq, struct vhu_vq_elem *elem, uint32_t len)
{
    if (vq->in_order && elem->in_len == 0) {
        /* nothing written yet: the run's element goes out when it closes */
        vq->run_id = elem->id;
        vq->run_n++;
    } else {
        if (vq->run_n)
            vq_split_close_run(vq);
        vq_split_write_used(vq, vq->used_idx, elem->id, len);
    }
    if (vq->ifl) {
        vq->ifl->desc[elem->id].next = vq->ifl->last_batch_head;
        vq->ifl->last_batch_head = elem->id;
    }
    vq->used_idx++;
    vq->nstaged++;
}

/* Packed: into the shadow array; flush writes the descriptors. */
static inline void vq_packed_push(struct vhu_vq *vq, struct vhu_vq_elem *elem, uint32_t len)
{
    struct vq_shadow_used *s;

    /* More completions than ring slots between flushes only happens when the driver re-offers
     * buffers it never got back; keep the shadow array bounded anyway. */
    if (vhu_unlikely(vq->nstaged == vq->num))
        vq_flush_now(vq);
    s = &vq->shadow[vq->nstaged++];
    s->id = elem->id;
    s->ndesc = elem->ndesc;
    s->len = len;
    s->ifl_head = vq->pifl ? vq->ifl_head[elem->slot] : 0;
    s->readonly = elem->in_len == 0;
}

/* ---- shared ring arithmetic ---- */

/* Advance a packed ring position by n (n <= num). */
static inline void vq_packed_advance(uint16_t *idx, bool *wrap, unsigned n, uint16_t num)
{
    unsigned v = (unsigned)*idx + n;

    if (v >= num) {
        v -= num;
        *wrap = !*wrap;
    }
    *idx = (uint16_t)v;
}

/*
 * virtio 2.8.10 / 2.8.14: packed-ring event suppression with EVENT_IDX. The other side asked to be
 * notified when the ring entry at offset `off` with wrap counter `wrap` is written. Positions
 * old..new (ring offsets, new_wrap the wrap counter after new) were just written. Move all three
 * onto one 16-bit line, a lap of `num` long, and reuse vring_need_event().
 */
static inline bool vq_packed_need_event(uint16_t off_wrap, uint16_t old_pos, uint16_t new_pos,
                                        bool new_wrap, uint16_t num)
{
    uint16_t off = off_wrap & (uint16_t)~VQ_WRAP_BIT;
    bool wrap = (off_wrap & VQ_WRAP_BIT) != 0;

    if (new_pos <= old_pos) /* the window crossed the end of the ring */
        old_pos = (uint16_t)(old_pos - num);
    if (wrap != new_wrap) /* the event refers to the previous lap */
        off = (uint16_t)(off - num);
    return vhu_vring_need_event(off, new_pos, old_pos);
}

/* ---- dirty logging (log.c) ---- */

/* Mark the pages of [gpa, gpa+len) dirty; the caller checked that logging is on. */
void vq_log_range(struct vhu_vq *vq, uint64_t gpa, uint64_t len);
/* The first `written` bytes of elem's writable segments (push, when log_data). */
void vq_log_elem(struct vhu_vq *vq, const struct vhu_vq_elem *elem, uint64_t off, uint64_t len);
/* Ring areas written by a flush: split used entries [from, to) (free-running indexes) plus
 * the used header and avail_event; packed descriptors [from, from+n) plus the device event
 * area. The log call is vq_log_done(), once per flush. */
void vq_log_split_used(struct vhu_vq *vq, uint16_t from, uint16_t to);
void vq_log_packed_used(struct vhu_vq *vq, uint16_t from, unsigned n);
/* The frontend is told the log changed (the SET_LOG_FD eventfd, when it gave one). */
void vq_log_done(struct vhu_vq *vq);
/* Everything the device writes in the ring areas outside flushes (stop). */
void vq_log_ring_areas(struct vhu_vq *vq);

#endif
