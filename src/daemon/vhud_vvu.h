/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHU_DAEMON_VHUD_VVU_H
#define VHU_DAEMON_VHUD_VVU_H

/* `vhud vvu ...`: argv[1] is "vvu". Returns the process exit status (0, 1 runtime, 2 usage). */
int vhud_vvu_main(int argc, char **argv);

#endif
