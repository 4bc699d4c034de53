/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <string.h>

#include "pci.h"
#include "vhu/log.h"

/* A driver's device by its spec: "vfio-user:PATH" (a vfio-user server) or "pci:DDDD:BB:DD.F"
 * (a PCI function of this machine, through sysfs: a backend inside a VM). */

int vhu_pci_open(const char *spec, struct vhu_pci **out)
{
    static const char vfu[] = "vfio-user:", sysfs[] = "pci:";

    if (strncmp(spec, vfu, sizeof(vfu) - 1) == 0 && spec[sizeof(vfu) - 1])
        return vhu_pci_vfio_user_open(spec + sizeof(vfu) - 1, out);
    if (strncmp(spec, sysfs, sizeof(sysfs) - 1) == 0 && spec[sizeof(sysfs) - 1])
        return vhu_pci_sysfs_open(spec + sizeof(sysfs) - 1, out);
    vhu_err("%s: not a device spec (vfio-user:PATH or pci:DDDD:BB:DD.F)", spec);
    return -EINVAL;
}
