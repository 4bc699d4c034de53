/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Private to libvhu (not exported): what the ring code needs from a table beyond the public
 * translations.
 */
#ifndef VHU_MEM_INTERNAL_H
#define VHU_MEM_INTERNAL_H

#include "vhu/mem.h"

/* The region holding guest-physical address gpa, or NULL (t may be NULL). The region lives as
 * long as the table. */
const struct vhu_mem_region *vhu_mem_gpa_region(const struct vhu_mem_table *t, uint64_t gpa);

/* The region whose host mapping holds p (length 1), or NULL: a linear scan, for dirty logging
 * (not the request path). A host address that two regions share (one frontend mapping its
 * memory at two guest addresses) gives the one lowest in guest-physical order. */
const struct vhu_mem_region *vhu_mem_host_region(const struct vhu_mem_table *t, const void *p);

#endif
