/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Stand-in for vvu/pci.c while no PCI access implementation is built (meson picks this file only
 * when pci.c is absent): every spec is refused.
 */
#include <errno.h>

#include "transport/vvu/pci.h"
#include "vhu/log.h"
#include "vhu/util.h"

VHU_EXPORT int vhu_pci_open(const char *spec, struct vhu_pci **out)
{
    (void)out;
    vhu_err("%s: this build has no virtio-vhost-user PCI access (vfio-user, sysfs)", spec);
    return -ENOTSUP;
}
