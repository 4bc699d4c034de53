/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_MEM_H
#define VHU_MEM_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Guest memory as the device sees it. A region maps guest physical addresses [gpa, gpa+size) to
 * host memory, and also records the frontend's own virtual address of the region (uva), which
 * vhost-user uses for ring addresses. A table is immutable once built: SET_MEM_TABLE, ADD_MEM_REG
 * and REM_MEM_REG build a new table and swap it in; a holder keeps a reference for as long as it
 * uses pointers from it; a region is unmapped when its last table is freed.
 */

#define VHU_MEM_MAX_SLOTS 509 /* what GET_MAX_MEM_SLOTS reports (QEMU's own limit) */

/*
 * A frontend's file mapped shared and read-write (guest memory, an inflight buffer). A file that
 * can be sealed must be sealed against shrinking (F_SEAL_SHRINK), else it is refused (-EPERM);
 * a file that cannot be sealed (hugetlbfs, tmpfs or disk files, memfds made without
 * MFD_ALLOW_SEALING) is accepted, and a SIGBUS from touching it after the frontend shrank it is
 * absorbed: the part past the new end reads as zeroes (src/mem/guard.c).
 */
struct vhu_mem_mapping {
    void *base;   /* NULL: nothing mapped */
    uint64_t len;
    int guard;    /* its slot in the SIGBUS guard; -1: sealed, needs none */
};

/* Map [offset, offset+len) of fd (offset page-aligned; the range must lie inside a regular
 * file). The fd is not kept. */
int vhu_mem_map_fd(int fd, uint64_t offset, uint64_t len, struct vhu_mem_mapping *m);
/* Unmap (nothing when m->base is NULL); logs once if the frontend shrank the file under it. */
void vhu_mem_unmap_fd(struct vhu_mem_mapping *m);

struct vhu_mem_region {
    uint64_t gpa;
    uint64_t size;
    uint64_t uva;
    uint8_t *host;       /* host address of gpa */
    /* private */
    struct vhu_mem_mapping map; /* base NULL when the caller owns the memory */
    uint64_t mmap_offset;
    unsigned refs;       /* tables holding this region (atomic) */
    void (*release)(void *opaque, void *host, uint64_t size);
    void *release_opaque;
};

struct vhu_mem_table {
    unsigned refs; /* atomic */
    unsigned nregions;
    struct vhu_mem_region *by_gpa[VHU_MEM_MAX_SLOTS]; /* sorted by gpa */
    struct vhu_mem_region *by_uva[VHU_MEM_MAX_SLOTS]; /* sorted by uva */
};

/* Description of one region as a frontend sends it. */
struct vhu_mem_region_desc {
    uint64_t gpa;
    uint64_t size;
    uint64_t uva;
    uint64_t mmap_offset;
    int fd;     /* mapped with MAP_SHARED at mmap_offset; the fd is not kept */
    void *host; /* or: memory the caller already has (fd == -1); never unmapped by vhu */
    /* Optional, with host: called once the region is freed (its last table let go, or it never
     * got into one), on the thread that dropped it: the owner may unmap the window then. */
    void (*release)(void *opaque, void *host, uint64_t size);
    void *release_opaque;
};

/* Map one region (vhu_mem_map_fd from offset 0, so mmap_offset needs no alignment). Refuses
 * zero size, address wrap-around, offsets past the file and unsealed sealable files. */
int vhu_mem_region_map(const struct vhu_mem_region_desc *d, struct vhu_mem_region **out);
/* Drop a region not (yet) in any table. */
void vhu_mem_region_free(struct vhu_mem_region *r);

/* An empty table. */
int vhu_mem_table_new_empty(struct vhu_mem_table **out);
/*
 * A table of n regions. Takes over the regions on success (the caller forgets them); on failure
 * the caller still owns them. Refuses overlap in gpa or uva space and more than 509 regions.
 */
int vhu_mem_table_new(struct vhu_mem_region **regions, unsigned n, struct vhu_mem_table **out);
/* old + r; takes r on success. Refuses overlap and a full table (-ENOSPC). */
int vhu_mem_table_add(const struct vhu_mem_table *old, struct vhu_mem_region *r,
                      struct vhu_mem_table **out);
/* old - the region matching exactly (gpa, size, uva); -ENOENT when none matches. */
int vhu_mem_table_remove(const struct vhu_mem_table *old, uint64_t gpa, uint64_t size,
                         uint64_t uva, struct vhu_mem_table **out);

struct vhu_mem_table *vhu_mem_table_get(struct vhu_mem_table *t);
void vhu_mem_table_put(struct vhu_mem_table *t);

/*
 * Translate [addr, addr+*len) to a host pointer. On return *len holds how many bytes are
 * contiguous in host memory from there (at most the input). NULL when addr is in no region.
 */
void *vhu_mem_gpa_to_host(const struct vhu_mem_table *t, uint64_t gpa, uint64_t *len);
void *vhu_mem_uva_to_host(const struct vhu_mem_table *t, uint64_t uva, uint64_t *len);
/* Whole range in one region, or NULL. */
void *vhu_mem_gpa_range(const struct vhu_mem_table *t, uint64_t gpa, uint64_t len);
void *vhu_mem_uva_range(const struct vhu_mem_table *t, uint64_t uva, uint64_t len);
/* The guest-physical address of a frontend virtual address (false when it is in no region). */
bool vhu_mem_uva_to_gpa(const struct vhu_mem_table *t, uint64_t uva, uint64_t *gpa);
/* One past the highest guest-physical address in the table (0 when it is empty). */
uint64_t vhu_mem_gpa_end(const struct vhu_mem_table *t);

#endif
