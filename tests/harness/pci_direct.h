/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_TEST_PCI_DIRECT_H
#define VHU_TEST_PCI_DIRECT_H

/*
 * An in-process struct vhu_pci (transport/vvu/pci.h) over a struct vhu_pcidev (vvu/pcidev.h):
 * what a driver test uses to reach a device model without a bus. Config and BAR accesses call
 * the model's ops; bar_map maps the file bar_mmap gives; io_fd comes from io_fds; irq_fds makes
 * eventfds the model's irq writes; dma_alloc takes memfd-backed memory and hands the model the
 * table of it (bus addresses 1 MiB-aligned, increasing from 1 MiB: deterministic); free resets
 * the model (which drops its DMA table). Everything runs on the caller's thread.
 */
#include "transport/vvu/pci.h"
#include "vvu/pcidev.h"

int vhu_pci_direct_open(struct vhu_pcidev *pd, struct vhu_pci **out);

#endif
